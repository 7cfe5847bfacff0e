"""Pandas frames on an engine: how the pandas entry points run the same step SQL.

The per-merchant/per-day aggregates that the statistics read are SQL steps in
DuckDB's dialect over the engine tables (``reconciled``, ``terminals``,
``merchants``, ``terminal_events``): :func:`analysis.metrics.daily_panel_on`,
:func:`analysis.faults.fault_cells_on` and
:func:`analysis.tickets.ticket_candidates_on`. When the data lives in an engine
(``analyze`` over Parquet) they run there. When it is already in pandas (tests,
notebooks, a small dataset) the pandas functions (``daily_panel``,
``find_shared_faults``, ``match_tickets``, ``evaluate_fixes``) put their frames
into a fresh in-memory DuckDB engine with :func:`frames_engine` and run the same
SQL: there is one definition of each step.

The engine table ``reconciled`` has one row per transaction with integer time
columns (``t`` epoch seconds, day numbers since 1970-01-01 in Asia/Shanghai);
:func:`engine_reconciled` gives :func:`analysis.reconcile.reconcile`'s frame that
shape. The contract tables enter through the canonical views of
:mod:`analysis.engine.tables`.

Examples
--------
>>> t = pd.to_datetime(["2026-03-10 10:00"]).tz_localize("Asia/Shanghai")
>>> rec = pd.DataFrame({"txn_id": ["A"], "timestamp": t, "business_date": t.tz_localize(None).normalize()})
>>> with frames_engine(reconciled=rec) as eng:
...     print(eng.fetch("SELECT txn_id, t, day FROM reconciled").to_string(index=False))
txn_id          t   day
     A 1773108000 20522
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import numpy as np
import pandas as pd

from .contract import TABLES, TIMEZONE
from .engine.duckdb_engine import DuckDBEngine
from .engine.tables import SHANGHAI_OFFSET_S, canonical_sql

#: Columns of the engine table ``reconciled``: name -> (kind, column of reconcile()'s frame it comes from).
#: Kinds: ``str``, ``float``, ``bool``, ``int``, ``time`` (tz-aware), ``seconds`` (epoch seconds of a time),
#: ``date`` (day number of a naive date) and ``local_day`` (Asia/Shanghai day number of a time).
RECONCILED_COLUMNS: dict[str, tuple[str, str]] = {
    "txn_id": ("str", "txn_id"),
    "merchant_id": ("str", "merchant_id"),
    "terminal_id": ("str", "terminal_id"),
    "timestamp": ("time", "timestamp"),
    "t": ("seconds", "timestamp"),
    "day": ("date", "business_date"),
    "txn_type": ("str", "txn_type"),
    "amount": ("float", "amount"),
    "response_code": ("str", "response_code"),
    "reversal": ("str", "reversal"),
    "reversal_reason": ("str", "reversal_reason"),
    "original_txn_id": ("str", "original_txn_id"),
    "payee_bank": ("str", "payee_bank"),
    "outcome": ("str", "outcome"),
    "approved": ("bool", "approved"),
    "settlement_cycle": ("str", "settlement_cycle"),
    "due_day": ("date", "due_date"),
    "deadline_day": ("date", "deadline"),
    "wait_until_day": ("date", "wait_until"),
    "cleared_day": ("date", "cleared_date"),
    "credit_status": ("str", "credit_status"),
    "credited_at": ("time", "credited_at"),
    "credited_at_day": ("local_day", "credited_at"),
    "return_reason": ("str", "return_reason"),
    "credit_business_days": ("int", "credit_business_days"),
    "settled": ("bool", "settled"),
    "clearing_known": ("bool", "clearing_known"),
}
#: Columns taken from the transactions table when the reconciled frame lacks them.
FROM_TRANSACTIONS = ("original_txn_id", "payee_bank")
_EMPTY_DTYPES = {"str": "str", "float": "float64", "bool": "boolean", "int": "Int64", "time": f"datetime64[us, {TIMEZONE}]",
                 "seconds": "Int64", "date": "Int64", "local_day": "Int64"}


def sql_string(value: str) -> str:
    """A SQL string literal.

    Examples
    --------
    >>> sql_string("it's")
    "'it''s'"
    """
    return "'" + str(value).replace("'", "''") + "'"


def sql_strings(values: Iterable[str]) -> str:
    """A parenthesized list of SQL string literals, for ``IN``.

    Examples
    --------
    >>> sql_strings(["purchase", "transfer"])
    "('purchase', 'transfer')"
    """
    return "(" + ", ".join(sql_string(v) for v in values) + ")"


def epoch_seconds(times: pd.Series) -> pd.Series:
    """Epoch seconds (floored) of times; naive ones are Asia/Shanghai local time; missing stays missing.

    Examples
    --------
    >>> epoch_seconds(pd.Series(pd.to_datetime(["2026-03-10 10:00:00.9", None]))).tolist()
    [1773108000, <NA>]
    """
    times = pd.to_datetime(times)
    if times.dt.tz is None:
        times = times.dt.tz_localize(TIMEZONE)
    values = times.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[s]")
    out = pd.Series(values.astype(np.int64), index=times.index, dtype="Int64")
    return out.mask(times.isna())


def _date_days(dates: pd.Series) -> pd.Series:
    """Day numbers of naive dates (the date part); missing stays missing."""
    dates = pd.to_datetime(dates)
    values = dates.to_numpy(dtype="datetime64[D]")
    out = pd.Series(values.astype(np.int64), index=dates.index, dtype="Int64")
    return out.mask(dates.isna())


def _column(frame: pd.DataFrame, name: str, kind: str, source: str) -> pd.Series:
    """Engine column ``name``: ``frame``'s own if it has one, else made from ``frame[source]``
    (a typed missing column when it has neither)."""
    if name in frame.columns and name != source:
        return frame[name]
    if source not in frame.columns:
        return pd.Series(None, index=frame.index, dtype=_EMPTY_DTYPES[kind])
    col = frame[source]
    if kind == "seconds":
        return epoch_seconds(col)
    if kind == "local_day":
        return (epoch_seconds(col) + SHANGHAI_OFFSET_S) // 86400
    if kind == "date":
        return _date_days(col)
    if kind == "int":
        return pd.to_numeric(col).astype("Int64")
    if kind == "time":
        times = pd.to_datetime(col)
        return times.dt.tz_localize(TIMEZONE) if times.dt.tz is None else times.dt.tz_convert(TIMEZONE)
    return col


def engine_reconciled(reconciled: pd.DataFrame, transactions: pd.DataFrame | None = None) -> pd.DataFrame:
    """:func:`analysis.reconcile.reconcile`'s frame in the shape of the engine table ``reconciled``.

    Parameters
    ----------
    reconciled : DataFrame
        reconcile()'s result, or any frame with some of its columns (a plain
        ``transactions`` table too, or the engine table fetched); absent
        columns are missing values.
    transactions : DataFrame, optional
        Where ``payee_bank`` and ``original_txn_id`` come from (by ``txn_id``)
        when ``reconciled`` lacks them.

    Returns
    -------
    DataFrame
        The columns of :data:`RECONCILED_COLUMNS`, same index as ``reconciled``.

    Examples
    --------
    >>> t = pd.to_datetime(["2026-03-10 10:00"]).tz_localize("Asia/Shanghai")
    >>> r = engine_reconciled(pd.DataFrame({"txn_id": ["A"], "timestamp": t,
    ...                                     "deadline": pd.to_datetime(["2026-03-13"])}))
    >>> r[["t", "deadline_day", "credit_business_days"]].iloc[0].tolist()
    [1773108000, 20525, <NA>]
    """
    source = reconciled
    missing = [c for c in FROM_TRANSACTIONS if c not in reconciled.columns]
    if transactions is not None and missing and "txn_id" in reconciled.columns:
        found = [c for c in missing if c in transactions.columns]
        looked_up = transactions.set_index("txn_id")[found].reindex(reconciled["txn_id"].to_numpy())
        source = reconciled.assign(**{c: looked_up[c].to_numpy() for c in found})
    return pd.DataFrame({name: _column(source, name, kind, col) for name, (kind, col) in RECONCILED_COLUMNS.items()},
                        index=reconciled.index)


@contextmanager
def frames_engine(
    *,
    reconciled: pd.DataFrame | None = None,
    transactions: pd.DataFrame | None = None,
    **tables: pd.DataFrame | None,
) -> Iterator[DuckDBEngine]:
    """A fresh in-memory DuckDB engine holding pandas frames as the engine tables the steps query.

    Parameters
    ----------
    reconciled : DataFrame, optional
        Registered as ``reconciled`` through :func:`engine_reconciled`.
    transactions : DataFrame, optional
        Only a source of ``payee_bank`` and ``original_txn_id`` for ``reconciled``.
    **tables : DataFrame or None
        Contract tables by name (``terminals``, ``merchants``, ``terminal_events``...),
        registered as ``src_<name>`` with the canonical view ``<name>`` over it
        (:func:`analysis.engine.tables.canonical_sql`); None is skipped.

    Yields
    ------
    DuckDBEngine
        Closed when the ``with`` block ends.

    Examples
    --------
    >>> terms = pd.DataFrame({"terminal_id": ["K1"], "merchant_id": ["M1"]})
    >>> with frames_engine(terminals=terms) as eng:
    ...     eng.fetch("SELECT terminal_id, network_segment FROM terminals").iloc[0].tolist()
    ['K1', nan]
    """
    unknown = sorted(set(tables) - set(TABLES))
    if unknown:
        raise ValueError(f"{', '.join(unknown)}: not a contract table; choose among {', '.join(TABLES)}")
    with DuckDBEngine() as engine:
        if reconciled is not None:
            engine.register_frame("reconciled", engine_reconciled(reconciled, transactions))
        for name, frame in tables.items():
            if frame is not None:
                engine.register_frame(f"src_{name}", frame)
                engine.create_view(name, canonical_sql(TABLES[name], list(frame.columns)))
        yield engine


__all__ = [
    "RECONCILED_COLUMNS",
    "engine_reconciled",
    "epoch_seconds",
    "frames_engine",
    "sql_string",
    "sql_strings",
]
