"""The canonical tables every step queries, from a loaded dataset or from Parquet files.

A dataset enters an engine as raw tables ``src_<table>``: in-memory frames of
a :class:`~analysis.io.Dataset`, or Parquet files read in place. Over them,
one view per contract table (:func:`canonical_sql`) gives every contract column
(absent optional columns as NULL) plus integer time columns, so that step SQL
never does time-zone arithmetic:

- a time column ``c`` gets ``c_t`` (epoch seconds) and ``c_day`` (Asia/Shanghai
  calendar day as days since 1970-01-01); ``timestamp`` gets ``t`` and ``day``;
- a date column ``c`` gets ``c_day``.

China has kept UTC+8 without daylight saving since 1991, so the local day is
``floor((t + 8 h) / 1 day)`` on both engines.

The ``calendar`` table (:func:`calendar_frame`) carries the Chinese working
calendar of :mod:`analysis.workdays` as day numbers: business days up to each
day and each cycle's due date and credit deadline, so reconciliation is a join.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..contract import TABLES, Table
from ..workdays import WorkCalendar
from .base import Engine

#: Seconds from UTC to Asia/Shanghai local time.
SHANGHAI_OFFSET_S = 8 * 3600
_EPOCH = np.datetime64("1970-01-01", "D")
_SQL_TYPES = {"time": "TIMESTAMPTZ", "date": "DATE", "float": "DOUBLE", "money": "DOUBLE", "int": "BIGINT"}
#: Columns outside the contract that the steps use when present (the loader adds ``card_token``).
EXTRA_COLUMNS = {"transactions": ("card_token", "_row")}


def derived_names(column: str) -> tuple[str, str]:
    """Names of the epoch-seconds and day columns derived from a time column.

    Examples
    --------
    >>> derived_names("timestamp"), derived_names("credited_at")
    (('t', 'day'), ('credited_at_t', 'credited_at_day'))
    """
    return ("t", "day") if column == "timestamp" else (f"{column}_t", f"{column}_day")


def local_day_sql(seconds: str) -> str:
    """SQL of the Asia/Shanghai day number of an epoch-seconds expression."""
    return f"CAST(FLOOR(({seconds} + {SHANGHAI_OFFSET_S}) / 86400) AS INTEGER)"


def canonical_sql(spec: Table, present: list[str]) -> str:
    """The SELECT that turns raw table ``src_<name>`` into the canonical view ``<name>``.

    Parameters
    ----------
    spec : Table
        The contract's table.
    present : list of str
        Columns the raw table has.
    """
    have = set(present)
    parts = []
    for col in spec.columns:
        typ = _SQL_TYPES.get(col.kind, "VARCHAR")
        parts.append(col.name if col.name in have else f"CAST(NULL AS {typ}) AS {col.name}")
        if col.kind == "time":
            t, day = derived_names(col.name)
            seconds = f"CAST(FLOOR(epoch(CAST({col.name} AS TIMESTAMPTZ))) AS BIGINT)" if col.name in have else "CAST(NULL AS BIGINT)"
            parts += [f"{seconds} AS {t}", f"{local_day_sql(seconds)} AS {day}"]
        elif col.kind == "date":
            days = (
                f"CAST(DATE_DIFF('day', DATE '1970-01-01', CAST({col.name} AS DATE)) AS INTEGER)"
                if col.name in have
                else "CAST(NULL AS INTEGER)"
            )
            parts.append(f"{days} AS {col.name}_day")
    parts += [c for c in EXTRA_COLUMNS.get(spec.name, ()) if c in have]
    return f"SELECT {', '.join(parts)} FROM src_{spec.name}"


def day_numbers(dates) -> np.ndarray:
    """Days since 1970-01-01 of dates (callers drop missing dates first)."""
    return (np.asarray(dates, dtype="datetime64[D]") - _EPOCH).astype(np.int64)


def dates_from_days(days: pd.Series) -> pd.Series:
    """Naive midnight datetimes (``datetime64[s]``) of day numbers; missing stays missing.

    Examples
    --------
    >>> dates_from_days(pd.Series([20527, None], dtype="Int64")).isna().tolist()
    [False, True]
    >>> str(dates_from_days(pd.Series([20527])).iloc[0].date())
    '2026-03-15'
    """
    values = pd.to_numeric(days).astype("Float64").to_numpy(dtype="float64", na_value=np.nan)
    out = np.full(len(values), np.datetime64("NaT"), dtype="datetime64[s]")
    ok = ~np.isnan(values)
    out[ok] = (_EPOCH + values[ok].astype(np.int64)).astype("datetime64[s]")
    return pd.Series(out, index=days.index, name=days.name)


def calendar_frame(calendar: WorkCalendar) -> pd.DataFrame:
    """The working calendar as a table of day numbers, one row per calendar day.

    Columns: ``day``; ``bdays_upto`` (business days on or before the day, so
    ``business_days_between(a, b) = bdays_upto[b] - bdays_upto[a]``); and per
    settlement cycle ``due_<cycle>`` and ``deadline_<cycle>`` (lower case), NULL
    where the calendar's span ends first.

    Examples
    --------
    >>> from analysis.workdays import china_calendar
    >>> cal = calendar_frame(china_calendar(2025, 2026))
    >>> row = cal.loc[cal["day"] == day_numbers(["2026-02-13"])[0]].iloc[0]
    >>> str(dates_from_days(pd.Series([row["deadline_t1"]])).iloc[0].date())
    '2026-02-25'
    """
    days = pd.date_range(f"{calendar.first_year}-01-01", f"{calendar.last_year}-12-31", freq="D")
    arr = days.to_numpy().astype("datetime64[D]")
    business = calendar.business_days
    out = pd.DataFrame({"day": day_numbers(arr)})
    out["bdays_upto"] = np.searchsorted(business, arr, side="right").astype(np.int64)
    # the last days of the span have no due date or deadline inside it
    room = np.searchsorted(business, arr, side="right") + 3 <= len(business)
    for cycle in ("T1", "D1", "D0"):
        due = pd.Series(pd.NA, index=out.index, dtype="Int64")
        deadline = due.copy()
        ok = room & (arr < business[-1])
        due[ok] = day_numbers(calendar.settlement_date(arr[ok], cycle))
        deadline[ok] = day_numbers(calendar.credit_deadline(arr[ok], cycle))
        out[f"due_{cycle.lower()}"] = due
        out[f"deadline_{cycle.lower()}"] = deadline
    return out


def register_dataset(engine: Engine, dataset, calendar: WorkCalendar) -> list[str]:
    """Register a loaded :class:`~analysis.io.Dataset`'s frames and the canonical views.

    Returns the names of the contract tables now queryable.
    """
    frames = {name: dataset.table(name) for name in TABLES}
    return register_frames(engine, {k: v for k, v in frames.items() if v is not None}, calendar)


def register_frames(engine: Engine, frames: dict[str, pd.DataFrame], calendar: WorkCalendar) -> list[str]:
    """Register in-memory contract tables, their canonical views and the calendar.

    ``transactions`` gets ``_row``, its row position, so results can be put back
    in the frame's order (``reconcile_on(..., carry=("_row",))``).
    """
    for name, frame in frames.items():
        if name == "transactions":
            frame = frame.assign(_row=np.arange(len(frame), dtype=np.int64))
        engine.register_frame(f"src_{name}", frame)
        engine.create_view(name, canonical_sql(TABLES[name], list(frame.columns)))
    register_calendar(engine, calendar)
    return list(frames)


def register_calendar(engine: Engine, calendar: WorkCalendar) -> None:
    """Register the working calendar as the table ``calendar`` (:func:`calendar_frame`)."""
    engine.register_frame("calendar", calendar_frame(calendar))


def register_parquet_tables(engine: Engine, files: dict[str, list[Path]], calendar: WorkCalendar) -> list[str]:
    """Register Parquet files as raw tables and the canonical views over them."""
    names = []
    for name, paths in files.items():
        if not paths:
            continue
        engine.register_parquet(f"src_{name}", paths)
        engine.create_view(name, canonical_sql(TABLES[name], engine.columns(f"src_{name}")))
        names.append(name)
    register_calendar(engine, calendar)
    return names
