"""Where the money went: one money outcome per transaction.

:func:`reconcile` joins the authorization log with clearing and crediting and
gives every transaction exactly one outcome of :data:`analysis.contract.OUTCOMES`
as of a moment of analysis. Everything is vectorized (array operations, one
merge), so it runs on millions of rows.

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

from .contract import APPROVED, OUTCOMES, TIMEZONE
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

_OPTIONAL_TXN_COLUMNS = ("reversal_reason", "original_txn_id")
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


def calendar_for(*dates: pd.Series) -> WorkCalendar:
    """The Chinese working calendar covering the years of ``dates`` (from 2024 at the latest).

    Examples
    --------
    >>> calendar_for(pd.Series(pd.to_datetime(["2025-05-01"]))).first_year
    2024
    """
    years = [int(d.min().year) for d in dates if d is not None and d.notna().any()]
    return china_calendar(min([_CALENDAR_FIRST_YEAR, *years]))


def _with_optional(frame: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    """``frame`` with each optional column present (missing values where the source has none)."""
    absent = [c for c in columns if c not in frame.columns]
    if not absent:
        return frame
    return frame.assign(**{c: pd.Series(pd.NA, index=frame.index, dtype="str") for c in absent})


def _cycles(transactions: pd.DataFrame, merchants: pd.DataFrame | None) -> np.ndarray:
    """Each transaction's settlement cycle from its merchant (``T1`` where unknown)."""
    if merchants is None or "settlement_cycle" not in merchants.columns:
        return np.full(len(transactions), "T1", dtype=object)
    cycle = merchants.drop_duplicates("merchant_id").set_index("merchant_id")["settlement_cycle"]
    mapped = transactions["merchant_id"].map(cycle)
    return mapped.fillna("T1").to_numpy(dtype=object)


def _settlement_columns(
    transactions: pd.DataFrame, settlements: pd.DataFrame | None
) -> pd.DataFrame:
    """The settlements row of each transaction, aligned with ``transactions`` (empty where none)."""
    cols = ["cleared_date", "credit_status", "credited_at", "return_reason"]
    if settlements is None:
        empty = pd.DataFrame(index=transactions.index)
        empty["cleared_date"] = pd.Series(pd.NaT, index=transactions.index, dtype="datetime64[us]")
        empty["credit_status"] = pd.Series(pd.NA, index=transactions.index, dtype="str")
        empty["credited_at"] = pd.Series(
            pd.NaT, index=transactions.index, dtype=f"datetime64[us, {TIMEZONE}]"
        )
        empty["return_reason"] = pd.Series(pd.NA, index=transactions.index, dtype="str")
        return empty
    srows = _with_optional(settlements, ("return_reason",))
    srows = srows.drop_duplicates("txn_id", keep="last").set_index("txn_id")[cols]
    aligned = srows.reindex(transactions["txn_id"].to_numpy())
    aligned.index = transactions.index
    return aligned


def _voided_ids(transactions: pd.DataFrame, approved: pd.Series) -> pd.Series:
    """True for transactions that an approved void cancels."""
    voids = transactions["txn_type"].eq("void") & approved
    return transactions["txn_id"].isin(transactions.loc[voids, "original_txn_id"].dropna())


def _day_on_or_before(days: pd.Series, limit: pd.Series) -> pd.Series:
    """Elementwise ``days <= limit`` on calendar days (False where either is missing)."""
    return (days <= limit).fillna(False).astype(bool)


def _approved(txns: pd.DataFrame) -> pd.Series:
    """True where the response is ``00`` and no reversal was needed (missing reversal: ``none``)."""
    reversal = txns["reversal"].fillna("none")
    return (txns["response_code"].eq(APPROVED).fillna(False) & reversal.eq("none")).astype(bool)


def _outcomes(
    txns: pd.DataFrame,
    settle: pd.DataFrame,
    deadline: pd.Series,
    as_of_day: pd.Timestamp,
) -> np.ndarray:
    """The outcome of each transaction by the module's rules (see the module docstring)."""
    approved = _approved(txns)
    reversal = txns["reversal"].fillna("none")
    status = settle["credit_status"]
    credited_day = to_business_date(settle["credited_at"])
    on_time = _day_on_or_before(credited_day, deadline) | settle["credited_at"].isna()
    conditions = [
        reversal.eq("failed"),
        reversal.eq("sent"),
        txns["response_code"].isna(),
        ~approved,
        txns["txn_type"].isin(["void", "refund"]),
        _voided_ids(txns, approved),
        status.eq("credited") & on_time,
        status.eq("credited"),
        status.eq("returned"),
        _day_on_or_before(pd.Series(as_of_day, index=deadline.index), deadline),
        status.eq("pending"),
    ]
    choices = [
        "reversal_failed",
        "reversed",
        "reversal_failed",
        "declined",
        "cancellation",
        "voided",
        "credited",
        "credited_late",
        "returned",
        "in_cycle",
        "credit_overdue",
    ]
    masks = [np.asarray(c.fillna(False), dtype=bool) for c in conditions]
    return np.select(masks, choices, default="not_cleared")


def _business_day_columns(
    business_date: pd.Series, cycles: np.ndarray, calendar: WorkCalendar
) -> tuple[pd.Series, pd.Series]:
    """Due date and credit deadline for each business date (missing dates stay missing)."""
    due = pd.Series(pd.NaT, index=business_date.index, dtype="datetime64[s]")
    deadline = due.copy()
    ok = business_date.notna().to_numpy()
    if ok.any():
        due[ok] = calendar.settlement_date(business_date[ok], cycles[ok]).to_numpy()
        deadline[ok] = calendar.credit_deadline(business_date[ok], cycles[ok]).to_numpy()
    return due, deadline


def _credit_business_days(
    business_date: pd.Series, credited_at: pd.Series, calendar: WorkCalendar
) -> pd.Series:
    """Business days from the business date to the credit day (``Int64``, missing if uncredited)."""
    out = pd.Series(pd.NA, index=business_date.index, dtype="Int64")
    ok = (credited_at.notna() & business_date.notna()).to_numpy()
    if ok.any():
        credit_day = to_business_date(credited_at[ok])
        out[ok] = calendar.business_days_between(business_date[ok], credit_day).to_numpy()
    return out


def reconcile(
    transactions: pd.DataFrame,
    settlements: pd.DataFrame | None = None,
    merchants: pd.DataFrame | None = None,
    *,
    as_of=None,
    calendar: WorkCalendar | None = None,
) -> pd.DataFrame:
    """One row per transaction (same order and index) with its money outcome.

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
    txns = _with_optional(transactions, _OPTIONAL_TXN_COLUMNS)
    settle = _settlement_columns(txns, settlements)
    as_of = latest_time(txns["timestamp"], settle["credited_at"]) if as_of is None else as_of
    as_of = to_local_time(as_of) if as_of is not None else pd.Timestamp.now(tz=TIMEZONE)
    as_of_day = as_of.tz_localize(None).normalize()

    business_date = to_business_date(txns["timestamp"])
    cycles = _cycles(txns, merchants)
    calendar = calendar or calendar_for(business_date)
    due, deadline = _business_day_columns(business_date, cycles, calendar)

    out = txns[list(RESULT_COLUMNS[:9])].copy()
    out["approved"] = _approved(txns)
    out["business_date"] = business_date
    out["settlement_cycle"] = pd.Series(cycles, index=txns.index, dtype="str")
    out["due_date"] = due
    out["deadline"] = deadline
    outcome = _outcomes(txns, settle, deadline, as_of_day)
    out["outcome"] = pd.Series(outcome, index=txns.index, dtype="str")
    out["wait_until"] = deadline.where(out["outcome"].eq("in_cycle"))
    for col in settle.columns:
        out[col] = settle[col]
    out["credit_business_days"] = _credit_business_days(
        business_date, settle["credited_at"], calendar
    )
    out["settled"] = settle["credit_status"].eq("credited").fillna(False).astype(bool)
    out["clearing_known"] = settlements is not None
    out = out[list(RESULT_COLUMNS)]
    out.attrs.update(as_of=as_of, settlements_known=settlements is not None)
    return out


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
    counts = reconciled["outcome"].value_counts().reindex(list(OUTCOMES), fill_value=0)
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
    "RESULT_COLUMNS",
    "calendar_for",
    "default_as_of",
    "latest_time",
    "outcome_counts",
    "reconcile",
    "to_local_time",
]
