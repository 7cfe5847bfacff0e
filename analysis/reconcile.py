"""Where the money went: one money outcome per transaction.

:func:`reconcile` joins the authorization log with clearing and crediting and
gives every transaction exactly one outcome of :data:`analysis.contract.OUTCOMES`
as of a moment of analysis. The rules are one SQL query
(:func:`reconcile_sql`) that runs on any engine of :mod:`analysis.engine`:
:func:`reconcile_on` keeps the result in the engine (DuckDB over Parquet, Spark),
:func:`reconcile` runs it on in-memory frames and returns pandas.

Rules, in order of precedence
-----------------------------
1. ``reversal == 'failed'`` → ``reversal_failed``, whatever the response code:
   the card may have been debited while the merchant got nothing (单边账).
2. ``reversal == 'sent'`` → ``reversed`` (the reversal was acknowledged).
3. No response (empty ``response_code``) and ``reversal == 'none'`` →
   ``reversal_failed``. The terminal got no answer, so a reversal was needed;
   the log says none was sent, so the issuer may hold an approval the merchant
   never saw — the same 单边账 risk as a reversal that was never acknowledged.
   Calling it ``reversed`` would claim a reversal that never happened, and
   ``declined`` would claim an answer that never came.
4. Any other response code than ``00`` → ``declined``. This holds for voids and
   refunds too: a declined void or refund is ``declined`` (an incident outcome),
   but it is not a purchase or transfer, so the cause classifier leaves it out.
5. Approved (``00``, reversal ``none``):

   - a ``void`` or ``refund`` → ``cancellation``;
   - a purchase named by an approved void's ``original_txn_id`` → ``voided``;
   - a settlements row ``credited`` → ``credited`` when the Shanghai calendar day
     of ``credited_at`` is on or before the credit deadline, else
     ``credited_late`` (credited without a time: ``credited``);
   - ``returned`` → ``returned``;
   - ``pending`` → ``in_cycle`` while the as-of day is on or before the
     deadline, else ``credit_overdue``;
   - no settlements row → ``in_cycle`` while the as-of day is on or before the
     deadline, else ``not_cleared``.

The deadline is :meth:`~analysis.workdays.WorkCalendar.credit_deadline`: the due
date of the merchant's cycle (``T1`` next business day, ``D1`` next calendar day,
``D0`` same day) plus 2 business days — T+3 business days for ``T1``.

When ``settlements`` is ``None`` the clearing status of approved transactions is
unknown: they get ``in_cycle``/``not_cleared`` by the rule for a missing row,
the column ``clearing_known`` is False and ``result.attrs["settlements_known"]``
is False, so the classifier can lower its confidence and say why.

Examples
--------
>>> import pandas as pd
>>> txns = pd.DataFrame({
...     "txn_id": ["A", "B"], "terminal_id": ["T1", "T1"], "merchant_id": ["M1", "M1"],
...     "timestamp": pd.to_datetime(["2026-03-10 10:00", "2026-03-10 11:00"]).tz_localize(
...         "Asia/Shanghai"),
...     "txn_type": ["purchase", "purchase"], "amount": [10.0, 20.0],
...     "response_code": ["00", "51"], "reversal": ["none", "none"]})
>>> reconcile(txns, as_of="2026-03-11 12:00")["outcome"].tolist()
['in_cycle', 'declined']
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .contract import APPROVED, OUTCOMES, TABLES, TIMEZONE
from .engine.tables import dates_from_days
from .exceptions import CalendarError
from .workdays import WorkCalendar, china_calendar, to_business_date

#: Columns of :func:`reconcile`'s result, after the transaction columns it carries.
RESULT_COLUMNS = (
    "txn_id",
    "merchant_id",
    "terminal_id",
    "timestamp",
    "txn_type",
    "amount",
    "response_code",
    "reversal",
    "reversal_reason",
    "outcome",
    "approved",
    "business_date",
    "settlement_cycle",
    "due_date",
    "deadline",
    "wait_until",
    "cleared_date",
    "credit_status",
    "credited_at",
    "return_reason",
    "credit_business_days",
    "settled",
    "clearing_known",
)

_CALENDAR_FIRST_YEAR = 2024


def to_local_time(value) -> pd.Timestamp:
    """A moment as a tz-aware Asia/Shanghai timestamp (naive values are Shanghai local time).

    Examples
    --------
    >>> to_local_time("2026-03-10 10:00").isoformat()
    '2026-03-10T10:00:00+08:00'
    """
    ts = pd.Timestamp(value)
    return ts.tz_localize(TIMEZONE) if ts.tzinfo is None else ts.tz_convert(TIMEZONE)


def latest_time(*columns: pd.Series | None) -> pd.Timestamp | None:
    """The latest non-missing time over several tz-aware columns (None if all are empty).

    Examples
    --------
    >>> s = pd.Series(pd.to_datetime(["2026-03-10 10:00"]).tz_localize("Asia/Shanghai"))
    >>> latest_time(s, None).isoformat()
    '2026-03-10T10:00:00+08:00'
    """
    maxima = [c.max() for c in columns if c is not None and c.notna().any()]
    return to_local_time(max(maxima)) if maxima else None


def default_as_of(dataset) -> pd.Timestamp | None:
    """The contract's default as-of: the latest of transactions.timestamp,
    settlements.credited_at and complaints.opened_at.

    Parameters
    ----------
    dataset : analysis.io.Dataset

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> t = pd.Series(pd.to_datetime(["2026-03-10 10:00"]).tz_localize("Asia/Shanghai"))
    >>> ds = SimpleNamespace(transactions=pd.DataFrame({"timestamp": t}),
    ...                      settlements=None, complaints=None)
    >>> default_as_of(ds).isoformat()
    '2026-03-10T10:00:00+08:00'
    """
    settlements, complaints = dataset.settlements, dataset.complaints
    return latest_time(
        dataset.transactions["timestamp"],
        None if settlements is None else settlements["credited_at"],
        None if complaints is None else complaints["opened_at"],
    )


def default_as_of_on(engine, complaints: pd.DataFrame | None = None) -> pd.Timestamp | None:
    """:func:`default_as_of` of a dataset held in an engine (``complaints`` is small: pandas)."""
    maxima = [engine.scalar('SELECT max("timestamp") FROM transactions')]
    if engine.has("settlements"):
        maxima.append(engine.scalar("SELECT max(credited_at) FROM settlements"))
    found = [pd.Timestamp(m) for m in maxima if m is not None]
    series = [pd.Series(found)] if found else []
    return latest_time(*series, None if complaints is None else complaints["opened_at"])


def calendar_for(*dates: pd.Series) -> WorkCalendar:
    """The Chinese working calendar covering the years of ``dates`` (from 2024 at the latest).

    Examples
    --------
    >>> calendar_for(pd.Series(pd.to_datetime(["2025-05-01"]))).first_year
    2024
    """
    years = [int(d.min().year) for d in dates if d is not None and d.notna().any()]
    return china_calendar(min([_CALENDAR_FIRST_YEAR, *years]))


#: The outcome rules of the module docstring, in order of precedence (SQL over ``base``).
_OUTCOME_SQL = """CASE
        WHEN reversal = 'failed' THEN 'reversal_failed'
        WHEN reversal = 'sent' THEN 'reversed'
        WHEN response_code IS NULL THEN 'reversal_failed'
        WHEN NOT approved THEN 'declined'
        WHEN txn_type IN ('void', 'refund') THEN 'cancellation'
        WHEN voided THEN 'voided'
        WHEN credit_status = 'credited' AND (credited_at_day <= deadline_day OR credited_at IS NULL)
            THEN 'credited'
        WHEN credit_status = 'credited' THEN 'credited_late'
        WHEN credit_status = 'returned' THEN 'returned'
        WHEN {as_of_day} <= deadline_day THEN 'in_cycle'
        WHEN credit_status = 'pending' THEN 'credit_overdue'
        ELSE 'not_cleared'
    END"""


def reconcile_sql(as_of_day: int, *, settlements: bool, merchants: bool,
                  carry: tuple[str, ...] = ()) -> str:
    """The reconciliation step as one SQL query (DuckDB dialect) over the canonical tables.

    Reads ``transactions``, ``calendar`` and, when present, ``settlements`` and
    ``merchants`` (see :mod:`analysis.engine.tables`); gives one row per
    transaction with the columns of :data:`ENGINE_COLUMNS`. Days are day numbers.

    Parameters
    ----------
    as_of_day : int
        Day number (Asia/Shanghai) of the moment of analysis.
    settlements, merchants : bool
        Whether those tables are registered.
    carry : tuple of str
        Further ``transactions`` columns to keep in the result.
    """
    if settlements:
        settle = (
            "SELECT txn_id, cleared_date_day AS cleared_day, credit_status, credited_at, "
            "credited_at_day, return_reason FROM settlements"
        )
    else:
        settle = (
            "SELECT CAST(NULL AS VARCHAR) AS txn_id, CAST(NULL AS INTEGER) AS cleared_day, "
            "CAST(NULL AS VARCHAR) AS credit_status, CAST(NULL AS TIMESTAMPTZ) AS credited_at, "
            "CAST(NULL AS INTEGER) AS credited_at_day, CAST(NULL AS VARCHAR) AS return_reason "
            "WHERE FALSE"
        )
    cycles = (
        "SELECT merchant_id, settlement_cycle FROM merchants"
        if merchants
        else "SELECT CAST(NULL AS VARCHAR) AS merchant_id, CAST(NULL AS VARCHAR) AS settlement_cycle WHERE FALSE"
    )
    return f"""
WITH s AS ({settle}),
m AS ({cycles}),
voided AS (
    SELECT DISTINCT original_txn_id AS txn_id FROM transactions
    WHERE txn_type = 'void' AND response_code = '{APPROVED}'
      AND coalesce(reversal, 'none') = 'none' AND original_txn_id IS NOT NULL
),
tx AS (
    SELECT x.*, coalesce(x.reversal, 'none') AS reversal_,
           coalesce(x.response_code = '{APPROVED}' AND coalesce(x.reversal, 'none') = 'none', FALSE)
               AS approved,
           coalesce(m.settlement_cycle, 'T1') AS settlement_cycle
    FROM transactions x LEFT JOIN m ON x.merchant_id = m.merchant_id
),
base AS (
    SELECT tx.txn_id, tx.merchant_id, tx.terminal_id, tx."timestamp", tx.t, tx.day, tx.txn_type,
           tx.amount, tx.response_code, tx.reversal_ AS reversal, tx.reversal_reason,
           tx.original_txn_id, tx.payee_bank, tx.approved, tx.settlement_cycle,{"".join(f" tx.{c}," for c in carry)}
           CASE tx.settlement_cycle WHEN 'D1' THEN c.due_d1 WHEN 'D0' THEN c.due_d0 ELSE c.due_t1 END
               AS due_day,
           CASE tx.settlement_cycle WHEN 'D1' THEN c.deadline_d1 WHEN 'D0' THEN c.deadline_d0
               ELSE c.deadline_t1 END AS deadline_day,
           c.day IS NOT NULL AS in_calendar,
           s.cleared_day, s.credit_status, s.credited_at, s.credited_at_day, s.return_reason,
           CAST(cc.bdays_upto - c.bdays_upto AS INTEGER) AS credit_business_days,
           v.txn_id IS NOT NULL AS voided
    FROM tx
    LEFT JOIN calendar c ON c.day = tx.day
    LEFT JOIN s ON s.txn_id = tx.txn_id
    LEFT JOIN calendar cc ON cc.day = s.credited_at_day
    LEFT JOIN voided v ON v.txn_id = tx.txn_id
)
SELECT * EXCLUDE (voided, in_calendar),
       {_OUTCOME_SQL.format(as_of_day=int(as_of_day))} AS outcome,
       coalesce(credit_status = 'credited', FALSE) AS settled,
       {'TRUE' if settlements else 'FALSE'} AS clearing_known,
       (day IS NOT NULL AND (NOT in_calendar OR deadline_day IS NULL)) AS off_calendar
FROM base"""


#: Columns of the engine table ``reconciled`` (:func:`reconcile_on`).
ENGINE_COLUMNS = (
    "txn_id", "merchant_id", "terminal_id", "timestamp", "t", "day", "txn_type", "amount",
    "response_code", "reversal", "reversal_reason", "original_txn_id", "payee_bank", "approved",
    "settlement_cycle", "due_day", "deadline_day", "cleared_day", "credit_status", "credited_at",
    "credited_at_day", "return_reason", "credit_business_days", "outcome", "wait_until_day",
    "settled", "clearing_known",
)


#: Text columns of ``reconciled`` with a closed list of values (the contract's allowed
#: codes, the outcomes): an engine may store them compactly (:meth:`Engine.create_table`).
ENGINE_CODES = {
    **{c.name: c.allowed for t in ("transactions", "settlements", "merchants")
       for c in TABLES[t].columns if c.allowed and c.name in ENGINE_COLUMNS},
    "outcome": tuple(OUTCOMES),
}


def as_of_day(as_of: pd.Timestamp) -> int:
    """Day number (days since 1970-01-01) of a moment's Asia/Shanghai calendar day."""
    day = to_local_time(as_of).tz_localize(None).normalize()
    return int((day - pd.Timestamp("1970-01-01")).days)


def reconcile_on(engine, *, as_of, name: str = "reconciled", carry: tuple[str, ...] = ()) -> None:
    """Reconcile the dataset registered on ``engine`` into the engine table ``name``.

    The engine must hold the canonical ``transactions`` and ``calendar`` tables
    (:mod:`analysis.engine.tables`), and ``settlements``/``merchants`` when the
    dataset has them. Nothing is fetched: the table stays in the engine.

    Raises
    ------
    CalendarError
        When a transaction's day or credit deadline lies outside the calendar.
    """
    settlements, merchants = engine.has("settlements"), engine.has("merchants")
    sql = reconcile_sql(as_of_day(as_of), settlements=settlements, merchants=merchants, carry=carry)
    engine.create_table(f"{name}_all", sql, codes=ENGINE_CODES)
    off = engine.fetch(
        f"SELECT txn_id, day FROM {name}_all WHERE off_calendar ORDER BY day, txn_id LIMIT 1"
    )
    if len(off):
        day = dates_from_days(off["day"]).iloc[0].date()
        raise CalendarError(
            f"transaction {off['txn_id'].iloc[0]} on {day}: its day or credit deadline lies outside "
            "the working calendar (holidays.China knows the announced years only)"
        )
    engine.create_view(
        name,
        f"SELECT * EXCLUDE (off_calendar), CASE WHEN outcome = 'in_cycle' THEN deadline_day END "
        f"AS wait_until_day FROM {name}_all",
    )


def reconcile(
    transactions: pd.DataFrame,
    settlements: pd.DataFrame | None = None,
    merchants: pd.DataFrame | None = None,
    *,
    as_of=None,
    calendar: WorkCalendar | None = None,
) -> pd.DataFrame:
    """One row per transaction (same order and index) with its money outcome.

    Runs :func:`reconcile_sql` on an in-memory DuckDB engine (the same step
    ``analyze`` runs on DuckDB over Parquet or on Spark).

    Parameters
    ----------
    transactions : pandas.DataFrame
        The contract's ``transactions`` table, typed as the loader delivers it.
    settlements : pandas.DataFrame, optional
        The ``settlements`` table; ``None`` when the dataset has none (clearing
        is then unknown: see the module docstring).
    merchants : pandas.DataFrame, optional
        For each merchant's ``settlement_cycle`` (``T1`` where absent).
    as_of : time-like, optional
        The moment of analysis (naive means Asia/Shanghai); default the latest
        of ``transactions.timestamp`` and ``settlements.credited_at`` (use
        :func:`default_as_of` for the contract's default, which also looks at
        complaints).
    calendar : WorkCalendar, optional
        Default: :func:`analysis.workdays.china_calendar` covering the data.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`RESULT_COLUMNS`: the transaction's id, merchant, terminal,
        time, type, amount, response code and reversal; ``outcome`` (one of
        :data:`analysis.contract.OUTCOMES`); ``approved`` (``00`` without a
        reversal); ``business_date`` (Shanghai calendar day); ``settlement_cycle``;
        ``due_date``; ``deadline`` (last day of normal processing);
        ``wait_until`` (the deadline, for ``in_cycle`` rows only);
        ``cleared_date``, ``credit_status``, ``credited_at``, ``return_reason``
        from settlements; ``credit_business_days`` (business days from the
        business date to the credit day); ``settled`` (True when the money was
        credited); ``clearing_known`` (False when there is no settlements table).
        ``attrs`` holds ``as_of`` and ``settlements_known``.

    Examples
    --------
    >>> txns = pd.DataFrame({
    ...     "txn_id": ["A"], "terminal_id": ["T1"], "merchant_id": ["M1"],
    ...     "timestamp": pd.to_datetime(["2026-02-13 10:00"]).tz_localize("Asia/Shanghai"),
    ...     "txn_type": ["purchase"], "amount": [10.0], "response_code": ["00"],
    ...     "reversal": ["none"]})
    >>> r = reconcile(txns, as_of="2026-02-20 12:00")
    >>> r[["outcome", "due_date", "wait_until"]].astype(str).iloc[0].tolist()
    ['in_cycle', '2026-02-14', '2026-02-25']
    """
    from .engine import DuckDBEngine
    from .engine.tables import register_frames

    if settlements is not None:
        settlements = settlements.drop_duplicates("txn_id", keep="last")
    if merchants is not None:
        merchants = merchants.drop_duplicates("merchant_id")
    if as_of is None:
        as_of = latest_time(
            transactions["timestamp"], None if settlements is None else settlements["credited_at"]
        )
    as_of = to_local_time(as_of) if as_of is not None else pd.Timestamp.now(tz=TIMEZONE)
    calendar = calendar or calendar_for(to_business_date(transactions["timestamp"]))
    with DuckDBEngine(threads=2) as engine:
        tables = {"transactions": transactions, "settlements": settlements, "merchants": merchants}
        register_frames(engine, {k: _engine_ready(v) for k, v in tables.items() if v is not None}, calendar)
        reconcile_on(engine, as_of=as_of, carry=("_row",))
        rec = engine.fetch("SELECT * FROM reconciled ORDER BY _row")
    out = reconciled_frame(rec, transactions.index)
    out["clearing_known"] = settlements is not None
    out.attrs.update(as_of=as_of, settlements_known=settlements is not None)
    return out


def _engine_ready(frame: pd.DataFrame) -> pd.DataFrame:
    """A frame whose object columns of text become strings (Arrow cannot guess mixed objects)."""
    fixes = {c: frame[c].astype("str").where(frame[c].notna()) for c in frame.columns
             if frame[c].dtype == object}
    return frame.assign(**fixes) if fixes else frame


def reconciled_frame(rec: pd.DataFrame, index: pd.Index | None = None) -> pd.DataFrame:
    """The engine table ``reconciled`` (fetched) as :func:`reconcile`'s pandas result.

    Day numbers become naive midnight dates, columns are :data:`RESULT_COLUMNS`.
    """
    index = rec.index if index is None else index
    out = pd.DataFrame(index=index)
    values = {
        **{c: rec[c] for c in RESULT_COLUMNS[:9]},
        "outcome": rec["outcome"],
        "approved": rec["approved"].astype(bool),
        "business_date": dates_from_days(rec["day"]).astype("datetime64[us]"),
        "settlement_cycle": rec["settlement_cycle"],
        "due_date": dates_from_days(rec["due_day"]),
        "deadline": dates_from_days(rec["deadline_day"]),
        "wait_until": dates_from_days(rec["wait_until_day"]),
        "cleared_date": dates_from_days(rec["cleared_day"]).astype("datetime64[us]"),
        "credit_status": rec["credit_status"],
        "credited_at": rec["credited_at"],
        "return_reason": rec["return_reason"],
        "credit_business_days": rec["credit_business_days"].astype("Int64"),
        "settled": rec["settled"].astype(bool),
        "clearing_known": rec["clearing_known"].astype(bool),
    }
    for col in RESULT_COLUMNS:
        out[col] = pd.Series(values[col].array, index=index)
    return out


def outcome_counts_on(engine, name: str = "reconciled") -> pd.DataFrame:
    """:func:`outcome_counts` of the engine table ``name`` (counted in the engine)."""
    counts = engine.fetch(f"SELECT outcome, count(*) AS n FROM {name} GROUP BY outcome")
    return _outcome_table(counts.set_index("outcome")["n"])


def outcome_counts(reconciled: pd.DataFrame) -> pd.DataFrame:
    """Count of transactions per outcome, every outcome listed (zeros included).

    Returns
    -------
    pandas.DataFrame
        Index ``outcome`` in contract order; columns ``count``, ``share`` (0–1),
        ``incident`` (bool) and ``meaning``.

    Examples
    --------
    >>> outcome_counts(pd.DataFrame({"outcome": ["credited", "declined", "credited"]})).loc[
    ...     ["credited", "declined"], "count"].tolist()
    [2, 1]
    """
    return _outcome_table(reconciled["outcome"].value_counts())


def _outcome_table(counts: pd.Series) -> pd.DataFrame:
    """The outcome table of :func:`outcome_counts` from a count per outcome."""
    counts = counts.reindex(list(OUTCOMES), fill_value=0)
    total = int(counts.sum())
    table = pd.DataFrame(
        {
            "count": counts.astype("int64"),
            "share": counts / total if total else counts.astype(float),
            "incident": [OUTCOMES[o][1] for o in counts.index],
            "meaning": [OUTCOMES[o][0] for o in counts.index],
        }
    )
    table.index.name = "outcome"
    return table


__all__ = [
    "ENGINE_COLUMNS",
    "RESULT_COLUMNS",
    "reconcile_on",
    "reconcile_sql",
    "reconciled_frame",
    "calendar_for",
    "default_as_of",
    "default_as_of_on",
    "latest_time",
    "outcome_counts",
    "outcome_counts_on",
    "reconcile",
    "to_local_time",
]
