"""Merchant × business-day metrics: the one panel that fix evaluation and monitoring read.

:func:`daily_panel` turns the reconciled transactions (one row per transaction,
:func:`analysis.reconcile.reconcile`) and the terminals' communication log into
one row per merchant and business day. Everything above it (``fixes``,
``monitor``, dashboards) works on this small aggregate and never on
transactions again; :func:`group_daily` sums it to any grouping.

Definitions
-----------
attempts
    Purchase and transfer attempts (voids and refunds are not attempts).
approved
    Attempts approved (``00``) without a reversal.
unsettled
    The contract's numerator of the *unsettled rate*: attempts with outcome
    ``reversal_failed`` (reversal needed but never acknowledged, or no answer
    and no reversal), ``not_cleared`` (approved, no clearing row, past the
    credit deadline) or ``returned`` (credit returned). ``credit_overdue``
    (cleared, credit still *pending* past the deadline) is **not** counted: the
    contract says "approved and overdue *without clearing*", and a pending
    credit has cleared — the money is at the bank, late. It is kept as its own
    column, ``credit_overdue``, so a reader can add it. ``unsettled_rate`` is
    unsettled ÷ attempts (0–1), the contract's rate.
money_not_arrived
    The merchant's view (the complaint "刷卡未到账"): attempts the terminal showed
    as approved whose money has not arrived past the deadline — ``not_cleared``,
    ``credit_overdue`` or ``returned``; ``money_not_arrived_rate`` divides by
    ``approved``. It differs from the unsettled rate in its denominator and in
    leaving out reversal failures (the terminal did not show an approval).
success_rate
    approved ÷ attempts.
median_credit_days
    Median business days from the business date to the credit day over the
    day's credited attempts (missing when none was credited).
link_corrupted, link_lost, reversals, reversals_failed, corrupted_reversals, lost_reversals
    Link failures seen in the authorization log (:data:`LINK_FAILURE_COLUMNS`):
    what :func:`analysis.fixes.simulate_fix` models.
link_errors
    ``timeout``, ``mac_error``, ``connection_reset`` and ``retransmit`` events
    on the merchant's terminals that Shanghai calendar day;
    ``link_errors_per_100`` is 100 × link_errors ÷ attempts.
mature
    True when every attempt of the merchant-day is past its credit deadline as
    of the moment of analysis, so ``not_cleared`` can no longer grow. On an
    immature day only the outcomes known at once (``reversal_failed``; a
    ``returned`` once cleared) count, and its unsettled rate is a lower bound.
    ``daily_panel(..., mature_only=True)`` drops those days.

Examples
--------
>>> import pandas as pd
>>> from analysis.reconcile import reconcile
>>> t = pd.to_datetime(["2026-03-10 10:00", "2026-03-10 11:00"]).tz_localize("Asia/Shanghai")
>>> txns = pd.DataFrame({"txn_id": ["A", "B"], "terminal_id": ["K1", "K1"],
...     "merchant_id": ["M1", "M1"], "timestamp": t, "txn_type": ["purchase", "purchase"],
...     "amount": [10.0, 20.0], "response_code": [None, "00"], "reversal": ["failed", "none"]})
>>> terms = pd.DataFrame({"terminal_id": ["K1"], "merchant_id": ["M1"], "model": ["P1"],
...     "firmware": ["1.0"], "network_segment": ["CT-PD-0001"]})
>>> p = daily_panel(reconcile(txns, as_of="2026-03-30"), terms)
>>> print(p[["attempts", "approved", "unsettled", "unsettled_rate", "mature"]].to_string(index=False))
 attempts  approved  unsettled  unsettled_rate  mature
        2         1          2             1.0    True
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .contract import LINK_ERROR_EVENTS
from .reconcile import to_local_time
from .workdays import to_business_date

#: Transaction types that count as attempts.
ATTEMPT_TYPES = ("purchase", "transfer")
#: Outcomes counted by the contract's unsettled rate.
UNSETTLED_OUTCOMES = ("reversal_failed", "not_cleared", "returned")
#: Outcomes of approved attempts whose money has not arrived past the deadline.
NOT_ARRIVED_OUTCOMES = ("not_cleared", "credit_overdue", "returned")
#: Outcomes counted per merchant-day as their own columns.
COUNTED_OUTCOMES = (
    "reversal_failed", "not_cleared", "returned", "credit_overdue", "credited_late",
    "in_cycle", "declined", "reversed",
)
#: Response codes of a corrupted message (format error, MAC failure) and of a late response.
CORRUPTED_CODES = ("A0", "30")
LATE_CODES = ("68",)
#: Link failures and reversals per attempt: ``link_corrupted`` (reversal reason or response
#: ``A0``, response ``30``), ``link_lost`` (no response, reversal reason ``98`` or a late
#: ``68``), ``reversals`` (a reversal was needed: sent, failed, or no answer and none sent),
#: ``reversals_failed`` (not acknowledged or never sent), and the reversals among each kind.
LINK_FAILURE_COLUMNS = ("link_corrupted", "link_lost", "reversals", "reversals_failed",
                        "corrupted_reversals", "lost_reversals")
#: Infrastructure columns of the merchant's dominant terminal.
INFRA_COLUMNS = ("network_segment", "model", "firmware")
#: Count columns of the panel (summable over any grouping).
COUNT_COLUMNS = (
    "attempts", "approved", "unsettled", "money_not_arrived", *COUNTED_OUTCOMES,
    *LINK_FAILURE_COLUMNS, "link_errors",
)
#: Rates derived from the counts: name -> (numerator, denominator, scale).
RATES = {
    "unsettled_rate": ("unsettled", "attempts", 1.0),
    "money_not_arrived_rate": ("money_not_arrived", "approved", 1.0),
    "success_rate": ("approved", "attempts", 1.0),
    "link_errors_per_100": ("link_errors", "attempts", 100.0),
}
KEY = ("merchant_id", "business_date")
TERMINAL_KEY = ("merchant_id", "terminal_id", "business_date")


def _attempts(reconciled: pd.DataFrame) -> pd.DataFrame:
    """The purchase and transfer rows of ``reconciled`` with 0/1 count columns."""
    rows = reconciled.loc[reconciled["txn_type"].isin(ATTEMPT_TYPES)]
    outcome = rows["outcome"]
    counts = {"attempts": np.ones(len(rows), dtype=np.int64),
              "approved": rows["approved"].to_numpy(dtype=bool).astype(np.int64),
              "unsettled": outcome.isin(UNSETTLED_OUTCOMES).to_numpy().astype(np.int64),
              "money_not_arrived": outcome.isin(NOT_ARRIVED_OUTCOMES).to_numpy().astype(np.int64)}
    counts |= {o: outcome.eq(o).to_numpy().astype(np.int64) for o in COUNTED_OUTCOMES}
    counts |= _link_failures(rows)
    out = pd.DataFrame(counts, index=rows.index)
    out["merchant_id"] = rows["merchant_id"].to_numpy()
    out["business_date"] = rows["business_date"].to_numpy()
    out["deadline"] = pd.to_datetime(rows["deadline"]).to_numpy()
    out["credit_days"] = pd.to_numeric(rows["credit_business_days"]).astype("float64").to_numpy()
    return out


def _link_failures(rows: pd.DataFrame) -> dict[str, np.ndarray]:
    """0/1 columns of link failures and reversals per attempt (see :data:`LINK_FAILURE_COLUMNS`)."""
    code = rows["response_code"]
    no_response = code.isna().to_numpy()
    reversal = rows["reversal"].fillna("none")
    reason = rows["reversal_reason"] if "reversal_reason" in rows else pd.Series(pd.NA, index=rows.index)
    corrupted = (reason.eq("A0") | code.isin(CORRUPTED_CODES)).fillna(False).to_numpy(bool)
    lost = no_response | (reason.eq("98") | code.isin(LATE_CODES)).fillna(False).to_numpy(bool)
    unanswered = no_response & reversal.eq("none").to_numpy()
    needs = reversal.isin(["sent", "failed"]).to_numpy() | unanswered
    failed = reversal.eq("failed").to_numpy() | unanswered
    out = {"link_corrupted": corrupted, "link_lost": lost & ~corrupted, "reversals": needs,
           "reversals_failed": failed, "corrupted_reversals": corrupted & needs,
           "lost_reversals": lost & ~corrupted & needs}
    return {k: v.astype(np.int64) for k, v in out.items()}


def _link_errors(
    terminal_events: pd.DataFrame | None, terminals: pd.DataFrame, by_terminal: bool = False
) -> pd.Series:
    """Link-error events per merchant (and terminal) and Shanghai calendar day."""
    keys = list(TERMINAL_KEY if by_terminal else KEY)
    empty = pd.Series([], dtype="int64", name="link_errors", index=pd.MultiIndex.from_arrays(
        [[]] * (len(keys) - 1) + [pd.DatetimeIndex([])], names=keys))
    if terminal_events is None or not len(terminal_events):
        return empty
    ev = terminal_events.loc[terminal_events["event"].isin(LINK_ERROR_EVENTS)]
    owner = terminals.drop_duplicates("terminal_id").set_index("terminal_id")["merchant_id"]
    frame = pd.DataFrame({"merchant_id": ev["terminal_id"].map(owner).to_numpy(),
                          "terminal_id": ev["terminal_id"].to_numpy(),
                          "business_date": to_business_date(ev["timestamp"]).to_numpy()})
    frame = frame.dropna(subset=["merchant_id"])
    if not len(frame):
        return empty
    return frame.groupby(keys).size().rename("link_errors").astype("int64")


def dominant_terminals(reconciled: pd.DataFrame, terminals: pd.DataFrame) -> pd.DataFrame:
    """Each merchant's dominant terminal (most attempts; else its first) and its infrastructure.

    Returns
    -------
    DataFrame
        Index ``merchant_id``; columns ``terminal_id`` and :data:`INFRA_COLUMNS`.

    Examples
    --------
    >>> terms = pd.DataFrame({"terminal_id": ["K1", "K2"], "merchant_id": ["M1", "M1"],
    ...     "model": ["A", "B"], "firmware": ["1", "2"], "network_segment": ["S1", "S2"]})
    >>> rec = pd.DataFrame({"terminal_id": ["K2", "K2", "K1"], "txn_type": ["purchase"] * 3})
    >>> dominant_terminals(rec, terms).loc["M1", "network_segment"]
    'S2'
    """
    use = reconciled.loc[reconciled["txn_type"].isin(ATTEMPT_TYPES), "terminal_id"]
    volume = use.value_counts()
    terms = terminals.drop_duplicates("terminal_id").copy()
    terms["_n"] = terms["terminal_id"].map(volume).fillna(0).to_numpy()
    terms = terms.sort_values(["merchant_id", "_n", "terminal_id"],
                              ascending=[True, False, True], kind="stable")
    first = terms.drop_duplicates("merchant_id").set_index("merchant_id")
    cols = ["terminal_id", *[c for c in INFRA_COLUMNS if c in first.columns]]
    return first[cols]


def add_rates(counts: pd.DataFrame) -> pd.DataFrame:
    """Add :data:`RATES` to a frame of summed counts (NaN where the denominator is 0).

    Examples
    --------
    >>> add_rates(pd.DataFrame({"unsettled": [1], "attempts": [4], "approved": [3],
    ...     "money_not_arrived": [0], "link_errors": [2]}))["link_errors_per_100"].tolist()
    [50.0]
    """
    out = counts.copy()
    for name, (num, den, scale) in RATES.items():
        if num in out.columns and den in out.columns:
            d = out[den].to_numpy(dtype="float64")
            with np.errstate(invalid="ignore", divide="ignore"):
                out[name] = np.where(d > 0, scale * out[num].to_numpy(dtype="float64") / d, np.nan)
    return out


def daily_panel(
    reconciled: pd.DataFrame,
    terminals: pd.DataFrame,
    terminal_events: pd.DataFrame | None = None,
    *,
    as_of=None,
    mature_only: bool = False,
    level: str = "merchant",
    merchants: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per merchant (or terminal) and business day with counts, rates and infrastructure.

    Parameters
    ----------
    reconciled : DataFrame
        :func:`analysis.reconcile.reconcile`'s result.
    terminals : DataFrame
        The contract's ``terminals`` table (terminal → merchant, infrastructure).
    terminal_events : DataFrame, optional
        The communication log; without it ``link_errors`` is 0 and the panel's
        ``attrs["link_errors_known"]`` is False.
    as_of : time-like, optional
        The moment of analysis that decides ``mature``; default
        ``reconciled.attrs["as_of"]`` (the moment reconcile used), else the
        latest transaction.
    mature_only : bool
        Drop merchant-days that are not yet mature (see the module docstring).
    level : {'merchant', 'terminal'}
        ``'terminal'`` gives one row per terminal and day (key ``merchant_id,
        terminal_id, business_date``) with that terminal's own infrastructure:
        what a fix scoped to a terminal model or firmware needs, since a
        merchant may run terminals of several kinds.
    merchants : DataFrame, optional
        The ``merchants`` table: adds ``mcc`` (for matched controls).

    Returns
    -------
    DataFrame
        Columns ``merchant_id, business_date`` (naive midnight), the counts
        :data:`COUNT_COLUMNS`, the rates :data:`RATES` (0–1, except
        ``link_errors_per_100``), ``median_credit_days``, ``deadline`` (the
        latest credit deadline of the day's attempts), ``mature`` and the
        dominant terminal's (at terminal level: the terminal's own)
        ``network_segment, model, firmware``. A merchant-day
        without attempts appears only when it has link errors (attempts 0, rates
        NaN). Sorted by merchant and day; ``attrs`` holds ``as_of``.

    Examples
    --------
    See the module docstring.
    """
    if level not in ("merchant", "terminal"):
        raise ValueError(f"level must be 'merchant' or 'terminal', got {level!r}")
    by_terminal = level == "terminal"
    keys = list(TERMINAL_KEY if by_terminal else KEY)
    rows = _attempts(reconciled)
    if by_terminal:
        rows["terminal_id"] = reconciled.loc[rows.index, "terminal_id"].to_numpy()
    grouped = rows.groupby(keys, sort=False)
    counts = grouped[[c for c in COUNT_COLUMNS if c != "link_errors"]].sum()
    counts["median_credit_days"] = grouped["credit_days"].median()
    counts["deadline"] = grouped["deadline"].max()
    links = _link_errors(terminal_events, terminals, by_terminal)
    panel = counts.join(links, how="outer")
    panel[list(COUNT_COLUMNS)] = panel[list(COUNT_COLUMNS)].fillna(0).astype("int64")
    panel = panel.reset_index().sort_values(keys, kind="stable").reset_index(drop=True)

    moment = as_of if as_of is not None else reconciled.attrs.get("as_of")
    if moment is None:
        moment = reconciled["timestamp"].max()
    as_of_day = to_local_time(moment).tz_localize(None).normalize()
    panel["mature"] = (panel["deadline"].isna() | (panel["deadline"] < as_of_day)).astype(bool)

    if by_terminal:
        infra, unit = terminals.drop_duplicates("terminal_id").set_index("terminal_id"), "terminal_id"
    else:
        infra, unit = dominant_terminals(reconciled, terminals), "merchant_id"
    for col in INFRA_COLUMNS:
        values = infra[col] if col in infra.columns else pd.Series(dtype="str")
        panel[col] = panel[unit].map(values).astype("str")
    if merchants is not None and "mcc" in merchants.columns:
        mcc = merchants.drop_duplicates("merchant_id").set_index("merchant_id")["mcc"]
        panel["mcc"] = panel["merchant_id"].map(mcc).astype("str")
    panel = add_rates(panel)
    if mature_only:
        panel = panel.loc[panel["mature"]].reset_index(drop=True)
    panel.attrs.update(as_of=to_local_time(moment), link_errors_known=terminal_events is not None)
    return panel


def group_daily(
    panel: pd.DataFrame,
    by: str | list[str] | None = None,
    *,
    cases: str = "unsettled",
    n: str = "attempts",
) -> pd.DataFrame:
    """Sum the panel per group and business day: ``date, cases, n, rate`` (plus the group columns).

    Parameters
    ----------
    panel : DataFrame
        :func:`daily_panel`'s result (or any frame with ``business_date`` and the counts).
    by : str or list of str, optional
        Group columns (e.g. ``"network_segment"``); None sums everything.
    cases, n : str
        Count columns for the numerator and denominator.

    Examples
    --------
    >>> p = pd.DataFrame({"business_date": pd.to_datetime(["2026-03-10"] * 2),
    ...                   "network_segment": ["S1", "S1"], "unsettled": [1, 0], "attempts": [5, 5]})
    >>> print(group_daily(p, "network_segment").to_string(index=False))
    network_segment       date  cases  n  rate
                 S1 2026-03-10      1 10   0.1
    """
    cols = [] if by is None else ([by] if isinstance(by, str) else list(by))
    daily = (panel.groupby([*cols, "business_date"], sort=True, observed=True)[[cases, n]].sum()
             .reset_index().rename(columns={"business_date": "date", cases: "cases", n: "n"}))
    with np.errstate(invalid="ignore", divide="ignore"):
        daily["rate"] = np.where(daily["n"] > 0, daily["cases"] / daily["n"].where(daily["n"] > 0), np.nan)
    return daily


__all__ = [
    "ATTEMPT_TYPES",
    "COUNT_COLUMNS",
    "INFRA_COLUMNS",
    "LINK_FAILURE_COLUMNS",
    "NOT_ARRIVED_OUTCOMES",
    "RATES",
    "UNSETTLED_OUTCOMES",
    "add_rates",
    "daily_panel",
    "dominant_terminals",
    "group_daily",
]
