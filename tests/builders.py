"""Build typed contract frames and a ``Dataset`` from a few hand-written rows.

Tests describe a situation with the columns that matter and let the builder
fill the rest with ordinary values, typed exactly as the loader delivers them
(string dtype with missing values as NA, tz-aware Asia/Shanghai times, naive
midnight dates, float64 money, ``Int64`` latency). Column kinds come from
:data:`analysis.contract.TABLES`, so there is one typing function for every table.

Defaults
--------
- merchants: name ``Shop <id>``, mcc ``5411``, a Shanghai location,
  settlement_cycle ``T1``. Merchants referenced by other tables but not listed
  are created with these defaults.
- terminals: model ``P1``, firmware ``1.0``, connection ``4g``, network_segment
  ``CT-PD-0001``; ``merchant_id`` defaults to the only merchant when there is
  one. Terminals referenced by transactions or events but not listed are created
  (their merchant taken from the transactions).
- transactions: ``txn_id`` ``T0001``…, timestamp ``2026-03-10 10:00``,
  txn_type ``purchase``, amount 100.0, card ``622202******1234``, card_token
  ``tok``, response_code ``00``, latency 400 ms (empty when there is no
  response), reversal ``none``; ``merchant_id`` taken from the terminal and
  ``terminal_id`` from the merchant's only terminal (``TERM0001`` by default).
- settlements: cleared_date the transaction's calendar day, settled_amount its
  amount, credit_status ``credited`` with credited_at the next calendar day
  09:00 (empty unless credited).
- terminal_events: the only listed terminal (else ``TERM0001``), event
  ``timeout``; complaints: ``C0001``…, kind ``unsettled``; interventions:
  ``X0001``…, kind ``other``.

Times are strings such as ``"2026-03-10 10:00"`` read as Asia/Shanghai (or any
value :func:`pandas.to_datetime` accepts; aware values are converted).

Examples
--------
>>> ds = make_dataset(transactions=[{"amount": 12.5, "response_code": "51"}])
>>> ds.transactions[["txn_id", "merchant_id", "terminal_id", "response_code"]].iloc[0].tolist()
['T0001', 'M0001', 'TERM0001', '51']
>>> str(ds.transactions["timestamp"].dtype)
'datetime64[us, Asia/Shanghai]'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from analysis.contract import TABLES, TIMEZONE
from analysis.io import Dataset
from analysis.privacy import mask_pan_series

DEFAULT_MERCHANT = "M0001"
DEFAULT_TERMINAL = "TERM0001"
DEFAULT_TIME = "2026-03-10 10:00"

#: Constant defaults per table and column (derived defaults are filled in make_dataset).
DEFAULTS: dict[str, dict[str, object]] = {
    "merchants": {
        "mcc": "5411",
        "latitude": 31.23,
        "longitude": 121.47,
        "district": "浦东新区",
        "settlement_cycle": "T1",
    },
    "terminals": {
        "model": "P1",
        "firmware": "1.0",
        "connection": "4g",
        "network_segment": "CT-PD-0001",
    },
    "transactions": {
        "timestamp": DEFAULT_TIME,
        "txn_type": "purchase",
        "amount": 100.0,
        "card_number": "622202******1234",
        "card_token": "tok",
        "response_code": "00",
        "reversal": "none",
    },
    "settlements": {"credit_status": "credited"},
    "terminal_events": {"timestamp": DEFAULT_TIME, "event": "timeout"},
    "complaints": {"opened_at": "2026-03-12 09:00", "kind": "unsettled", "amount": 100.0},
    "interventions": {
        "applied_at": DEFAULT_TIME,
        "scope_type": "all",
        "scope_value": "*",
        "kind": "other",
    },
}

_STRING_KINDS = ("id", "text", "code", "pan")
_SEQUENCE_PREFIX = {"transactions": "T", "complaints": "C", "interventions": "X"}
_UNIT = "us"


def _as_time(values: pd.Series) -> pd.Series:
    """Times as tz-aware Asia/Shanghai; naive values are read as Shanghai local time."""
    if len(values) and isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert(TIMEZONE).dt.as_unit(_UNIT)
    parsed = [pd.Timestamp(v) if not pd.isna(v) and v != "" else pd.NaT for v in values]
    local = [
        t if pd.isna(t) else (t.tz_convert(TIMEZONE) if t.tzinfo else t.tz_localize(TIMEZONE))
        for t in parsed
    ]
    return pd.Series(pd.DatetimeIndex(local, tz=TIMEZONE), index=values.index).dt.as_unit(_UNIT)


def _as_string(values: pd.Series) -> pd.Series:
    """Strings in pandas' default string dtype; empty strings become missing."""
    out = values.astype(object).where(values.notna(), None)
    out = out.map(lambda v: None if v is None or v == "" else str(v))
    return out.astype("str")


def cast_column(values: pd.Series, kind: str) -> pd.Series:
    """Type one column by its contract kind (see :mod:`analysis.contract`)."""
    if kind in _STRING_KINDS:
        return _as_string(values)
    if kind in ("money", "float"):
        return pd.to_numeric(values, errors="raise").astype("float64")
    if kind == "int":
        return pd.to_numeric(values, errors="raise").astype("Int64")
    if kind == "time":
        return _as_time(values)
    if kind == "date":
        return pd.to_datetime(values).dt.as_unit(_UNIT).dt.normalize()
    raise ValueError(f"unknown column kind {kind!r}")


def typed_frame(table: str, rows: Sequence[Mapping] | pd.DataFrame | None) -> pd.DataFrame:
    """A frame of contract table ``table`` typed like the loader's output.

    Every contract column is present (missing values where neither the rows nor
    :data:`DEFAULTS` give one); extra columns (``card_token``) are kept as strings.
    Rows get sequence ids (``T0001``…) where the table's key is left out.

    Examples
    --------
    >>> typed_frame("merchants", [{"merchant_id": "M1"}])["settlement_cycle"].tolist()
    ['T1']
    """
    spec = TABLES[table]
    frame = pd.DataFrame(list(rows) if not isinstance(rows, pd.DataFrame) else rows)
    frame = frame.reset_index(drop=True)
    if spec.key and table in _SEQUENCE_PREFIX:
        seq = pd.Series(
            [f"{_SEQUENCE_PREFIX[table]}{i + 1:04d}" for i in range(len(frame))], dtype=object
        )
        frame[spec.key] = frame[spec.key].fillna(seq) if spec.key in frame else seq
    for name, value in DEFAULTS.get(table, {}).items():
        if name not in frame:
            frame[name] = value
        else:
            frame[name] = frame[name].astype(object).where(frame[name].notna(), value)
    for col in spec.columns:
        frame[col.name] = cast_column(
            frame[col.name] if col.name in frame else pd.Series([None] * len(frame), dtype=object),
            col.kind,
        )
    if "card_number" in frame:
        frame["card_number"] = _as_string(mask_pan_series(frame["card_number"]))
    extras = [c for c in frame.columns if c not in spec.column_names]
    for name in extras:
        frame[name] = _as_string(frame[name])
    return frame[list(spec.column_names) + extras]


def _derive_transactions(rows: list[dict], terminals: list[dict], merchants: list[dict]) -> None:
    """Fill merchant and terminal of transactions from each other, and empty latency."""
    owner = {t["terminal_id"]: t.get("merchant_id") for t in terminals}
    only_merchant = merchants[0]["merchant_id"] if len(merchants) == 1 else DEFAULT_MERCHANT
    by_merchant: dict[str, list[str]] = {}
    for t in terminals:
        by_merchant.setdefault(t.get("merchant_id"), []).append(t["terminal_id"])
    for row in rows:
        if row.get("terminal_id") is None:
            mid = row.get("merchant_id") or only_merchant
            tids = by_merchant.get(mid, [])
            row["terminal_id"] = tids[0] if len(tids) == 1 else DEFAULT_TERMINAL
        if row.get("merchant_id") is None:
            row["merchant_id"] = owner.get(row["terminal_id"]) or only_merchant
        code = row.get("response_code", "00")
        if "latency_ms" not in row:
            row["latency_ms"] = None if code in (None, "") else 400


def _derive_settlements(rows: list[dict], transactions: pd.DataFrame) -> None:
    """Default cleared date, amount and credit time from the settled transaction."""
    txns = transactions.set_index("txn_id")
    for row in rows:
        if row.get("txn_id") not in txns.index:
            continue
        txn = txns.loc[row["txn_id"]]
        day = txn["timestamp"].tz_localize(None).normalize()
        row.setdefault("cleared_date", day)
        row.setdefault("settled_amount", txn["amount"])
        status = row.get("credit_status", DEFAULTS["settlements"]["credit_status"])
        if "credited_at" not in row and status == "credited":
            cleared = pd.Timestamp(row["cleared_date"])
            row["credited_at"] = (cleared.normalize() + pd.Timedelta(hours=33)).tz_localize(
                TIMEZONE
            )


def _add_missing(rows: list[dict], key: str, wanted: Sequence[str], make: callable) -> list[dict]:
    """Append a default row for every id in ``wanted`` that ``rows`` does not hold."""
    have = {r[key] for r in rows}
    for value in dict.fromkeys(v for v in wanted if v is not None):
        if value not in have:
            rows.append(make(value))
            have.add(value)
    return rows


def make_dataset(
    merchants: Sequence[Mapping] | None = None,
    terminals: Sequence[Mapping] | None = None,
    transactions: Sequence[Mapping] | None = None,
    settlements: Sequence[Mapping] | None = None,
    terminal_events: Sequence[Mapping] | None = None,
    complaints: Sequence[Mapping] | None = None,
    interventions: Sequence[Mapping] | None = None,
    notes: tuple[str, ...] = (),
) -> Dataset:
    """A typed :class:`~analysis.io.Dataset` from minimal rows (optional tables None if not given).

    Parameters
    ----------
    merchants, terminals, transactions : sequence of dict, optional
        Rows of the required tables; referenced merchants and terminals that are
        not listed are created with defaults.
    settlements, terminal_events, complaints, interventions : sequence of dict, optional
        Rows of the optional tables; ``None`` leaves the table out of the dataset
        and ``[]`` gives an empty table.

    Examples
    --------
    >>> ds = make_dataset(transactions=[{"txn_id": "A"}], settlements=[{"txn_id": "A"}])
    >>> ds.settlements["credited_at"].iloc[0].isoformat()
    '2026-03-11T09:00:00+08:00'
    >>> ds.complaints is None
    True
    """
    m_rows = [dict(r) for r in merchants or []]
    t_rows = [dict(r) for r in terminals or []]
    x_rows = [dict(r) for r in transactions or []]
    e_rows = [dict(r) for r in terminal_events or []]
    c_rows = [dict(r) for r in complaints or []]

    if len(m_rows) == 1:
        for row in t_rows + c_rows:
            row.setdefault("merchant_id", m_rows[0]["merchant_id"])
    only_terminal = t_rows[0]["terminal_id"] if len(t_rows) == 1 else DEFAULT_TERMINAL
    for row in e_rows:
        row.setdefault("terminal_id", only_terminal)
    _derive_transactions(x_rows, t_rows, m_rows)
    t_rows = _add_missing(
        t_rows,
        "terminal_id",
        [r["terminal_id"] for r in x_rows] + [r.get("terminal_id") for r in e_rows],
        lambda tid: {
            "terminal_id": tid,
            "merchant_id": next(
                (r["merchant_id"] for r in x_rows if r["terminal_id"] == tid),
                m_rows[0]["merchant_id"] if len(m_rows) == 1 else DEFAULT_MERCHANT,
            ),
        },
    )
    m_rows = _add_missing(
        m_rows,
        "merchant_id",
        [r.get("merchant_id") for r in t_rows + x_rows + c_rows],
        lambda mid: {"merchant_id": mid},
    )
    for row in m_rows:
        row.setdefault("name", f"Shop {row['merchant_id']}")
    for row in c_rows:
        row.setdefault("merchant_id", DEFAULT_MERCHANT)

    txns = typed_frame("transactions", x_rows)
    if settlements is not None:
        s_rows = [dict(r) for r in settlements]
        _derive_settlements(s_rows, txns)
    optional = {
        "settlements": s_rows if settlements is not None else None,
        "terminal_events": e_rows if terminal_events is not None else None,
        "complaints": c_rows if complaints is not None else None,
        "interventions": interventions,
    }
    return Dataset(
        merchants=typed_frame("merchants", m_rows),
        terminals=typed_frame("terminals", t_rows),
        transactions=txns,
        **{
            name: None if rows is None else typed_frame(name, rows)
            for name, rows in optional.items()
        },
        source="tests.builders",
        notes=notes,
    )


__all__ = ["DEFAULTS", "cast_column", "make_dataset", "typed_frame"]
