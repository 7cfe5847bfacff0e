"""Which transaction a complaint is about: one row per ticket, never a forced match.

:func:`match_tickets` pairs each complaint (``complaints`` table) with the
transaction it most likely describes and hands down that incident's cause and
next step.

Matching
--------
- **Candidates**: transactions of the ticket's merchant and kind — ``unsettled``
  (刷卡未到账) ↔ ``purchase``, ``transfer_failed`` (转账失败) ↔ ``transfer`` — made
  no later than the ticket was opened, whose amount the stated one can come
  from, and
  - when the reporter gave ``txn_time``: within ±``time_window_minutes`` of it;
  - otherwise: within ``lookback_days`` before ``opened_at``.

  The candidates are one SQL step where the transactions live
  (:func:`ticket_candidates_on`); only they come back to pandas for the rest.
- **Likelihood** of each candidate, the product of three factors:
  - *amount*: the chance a reporter states this amount for this transaction,
    summed over the ways people state amounts (:data:`AMOUNT_MODES`: exact,
    rounded or cut to the yuan, rounded or cut to 10 yuan; a stated 20 fits a
    20.00 purchase in every way, a 24.47 one only rounded or cut to 10 yuan);
  - *time*: ``exp(-|gap| / (window / 4))`` from the stated time, or, with no
    time stated, ``exp(-age / 3 days)`` before the ticket (recent is likelier);
  - *complaint propensity* of the transaction's outcome
    (:data:`COMPLAINT_PROPENSITY`): money missing (failed reversal, not
    cleared, overdue, returned) is complained about most, a plain decline
    little, a transaction that is no incident hardly ever.
- **Share**: a candidate's likelihood over the sum of its ticket's candidates
  (the ``match_score`` of a matched ticket).
- **Status**: ``matched`` when the best candidate is at least ``tie_ratio``
  times as likely as the next; ``ambiguous`` otherwise (``txn_id`` left empty,
  the nearly tied candidates listed in ``note``); ``unmatched`` when nothing fits.
- **One ticket per transaction**: when several tickets' best candidate is the
  same transaction, the ticket that describes it best keeps it and the others
  drop it and are ranked again on what is left — unless both describe it
  clearly (shares of at least ``clear_share`` and an amount × time factor of
  at least :data:`CLEAR_FIT`), the usual case of a merchant complaining twice
  about the same money, where both keep it.

Examples
--------
>>> import pandas as pd
>>> tz = "Asia/Shanghai"
>>> complaints = pd.DataFrame({"ticket_id": ["C1"], "merchant_id": ["M1"], "kind": ["unsettled"],
...     "amount": [129.0], "opened_at": pd.to_datetime(["2026-03-12 09:00"]).tz_localize(tz),
...     "txn_time": pd.to_datetime(["2026-03-10 10:00"]).tz_localize(tz)})
>>> txns = pd.DataFrame({"txn_id": ["A", "B"], "merchant_id": ["M1", "M1"],
...     "txn_type": ["purchase", "purchase"], "amount": [128.5, 35.0],
...     "timestamp": pd.to_datetime(["2026-03-10 10:04", "2026-03-10 10:01"]).tz_localize(tz)})
>>> incidents = pd.DataFrame({"txn_id": ["A"], "cause": ["NETWORK_COMMUNICATION"],
...     "next_step": ["Check the status with the acquirer."]})
>>> out = match_tickets(complaints, txns, incidents)
>>> out[["ticket_id", "txn_id", "cause", "match_status"]].iloc[0].tolist()
['C1', 'A', 'NETWORK_COMMUNICATION', 'matched']
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from .aggregates import epoch_seconds, frames_engine
from .engine.base import Engine

#: Complaint kind → the transaction type it is about.
KIND_TXN_TYPE = {"unsettled": "purchase", "transfer_failed": "transfer"}

#: How reporters state an amount, with how often (the likelihood of each way).
AMOUNT_MODES: dict[str, float] = {
    "exact": 0.70,
    "rounded to the yuan": 0.15,
    "cut to the yuan": 0.05,
    "rounded to 10 yuan": 0.07,
    "cut to 10 yuan": 0.03,
}
#: Likelihood of an amount no rounding explains but within ``amount_tolerance``.
TOLERANCE_LIKELIHOOD = 0.01

#: Relative chance that a transaction with this outcome is complained about.
COMPLAINT_PROPENSITY: dict[str, float] = {
    "reversal_failed": 1.0,
    "not_cleared": 1.0,
    "credit_overdue": 1.0,
    "returned": 1.0,
    "credited_late": 0.5,
    "reversed": 0.3,
    "in_cycle": 0.1,
    "declined": 0.05,
}
#: A declined transfer is what "转账失败" reports: likelier than a declined purchase.
DECLINED_TRANSFER_PROPENSITY = 0.15
#: An incident whose outcome is not given.
INCIDENT_PROPENSITY = 1.0
#: A transaction that is no incident (credited in time, voided).
NOT_INCIDENT_PROPENSITY = 0.005
#: Amount × time factor at which a ticket describes a transaction clearly (with its share).
CLEAR_FIT = 0.3
#: Scale of the recency factor when no time is stated.
AGE_SCALE = pd.Timedelta(days=3)

OUTPUT_COLUMNS = (
    "ticket_id",
    "txn_id",
    "cause",
    "next_step",
    "match_score",
    "match_status",
    "candidates",
    "note",
    "outcome",
)

_CENT = 0.005

NEXT_STEP_AMBIGUOUS = (
    "Several transactions fit: ask the reporter for the receipt's reference number (RRN) or the "
    "card's last 4 digits, then match again."
)
NEXT_STEP_UNMATCHED = (
    "No transaction fits: ask the reporter for the time, the exact amount and the receipt or the "
    "card's last 4 digits."
)
NEXT_STEP_NOT_INCIDENT = {
    "credited": "The money arrived within its cycle (credited{credited}): ask the merchant to "
    "check the settlement account statement with the bank.",
    "voided": "The purchase was voided on the terminal, so no money was meant to move; if the card "
    "shows a debit, the issuing bank releases the hold.",
    "": "Not an incident: the transaction completed normally; ask the reporter to check the "
    "account statement with the bank.",
}


def amount_modes(stated: pd.Series, actual: pd.Series) -> pd.DataFrame:
    """Which ways of stating an amount turn each transaction's amount into the stated one.

    Half-way amounts count as rounded either way (half up and half to even).

    Examples
    --------
    >>> amount_modes(pd.Series([20.0, 20.0]), pd.Series([20.0, 24.47])).sum(axis=1).tolist()
    [5, 2]
    """
    s, a = stated.to_numpy(dtype=float), actual.to_numpy(dtype=float)
    diff = s - a
    whole = np.abs(s - np.round(s)) < _CENT
    tens = whole & (np.abs(np.round(s) % 10) < _CENT)
    return pd.DataFrame(
        {
            "exact": np.abs(diff) <= _CENT,
            "rounded to the yuan": whole & (np.abs(diff) <= 0.5 + _CENT),
            "cut to the yuan": whole & (diff <= _CENT) & (diff > -1 + _CENT),
            "rounded to 10 yuan": tens & (np.abs(diff) <= 5 + _CENT),
            "cut to 10 yuan": tens & (diff <= _CENT) & (diff > -10 + _CENT),
        },
        index=stated.index,
    )


def amount_likelihood(
    stated: pd.Series, actual: pd.Series, tolerance: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Chance that a reporter states ``stated`` for a transaction of ``actual`` yuan, and how.

    The sum of :data:`AMOUNT_MODES` over the ways that give the stated amount;
    :data:`TOLERANCE_LIKELIHOOD` for any other amount within ``tolerance`` yuan; 0 else.
    The second array names the likeliest way (empty where none fits).

    Examples
    --------
    >>> like, how = amount_likelihood(pd.Series([20.0, 20.0, 24.47, 24.0, 30.0]),
    ...                               pd.Series([20.0, 24.47, 24.47, 24.47, 24.47]))
    >>> like.round(2).tolist(), how[:2].tolist()
    ([1.0, 0.1, 0.7, 0.2, 0.0], ['exact', 'rounded to 10 yuan'])
    """
    modes = amount_modes(stated, actual)
    fits = modes.to_numpy()
    weights = np.array([AMOUNT_MODES[m] for m in modes.columns])
    like = fits @ weights
    near = np.abs(stated.to_numpy(dtype=float) - actual.to_numpy(dtype=float)) <= tolerance
    names = np.array(list(modes.columns), dtype=object)
    how = np.where(fits.any(axis=1), names[np.argmax(fits * weights, axis=1)], "")
    how = np.where((like == 0) & near, "within the tolerance", how)
    return np.where(like > 0, like, np.where(near, TOLERANCE_LIKELIHOOD, 0.0)), how


def time_likelihood(
    pairs: pd.DataFrame, window: pd.Timedelta, lookback: pd.Timedelta
) -> tuple[np.ndarray, np.ndarray]:
    """Time factor of each candidate (0 outside the window) and its distance in seconds.

    ``pairs`` needs ``timestamp`` (the transaction), ``txn_time`` (stated, may be
    missing) and ``opened_at``. The distance is to ``txn_time`` where given,
    else to ``opened_at``. A transaction after the ticket was opened gets 0.
    """
    stated = pairs["txn_time"].notna().to_numpy()
    gap = (pairs["timestamp"] - pairs["txn_time"]).abs()
    age = pairs["opened_at"] - pairs["timestamp"]
    gap_s = gap.dt.total_seconds().to_numpy()
    age_s = age.dt.total_seconds().to_numpy()
    near = np.where(
        gap_s <= window.total_seconds(), np.exp(-gap_s / (window.total_seconds() / 4)), 0.0
    )
    recent = np.where(
        age_s <= lookback.total_seconds(), np.exp(-age_s / AGE_SCALE.total_seconds()), 0.0
    )
    factor = np.where(stated, np.nan_to_num(near), np.nan_to_num(recent))
    factor = np.where(age_s >= 0, factor, 0.0)
    return factor, np.where(stated, gap_s, age_s)


def propensity(pairs: pd.DataFrame) -> np.ndarray:
    """Complaint propensity of each candidate by its outcome (:data:`COMPLAINT_PROPENSITY`)."""
    outcome = pairs["outcome"].astype(object)
    known = outcome.map(COMPLAINT_PROPENSITY).astype(float)
    declined_transfer = outcome.eq("declined") & pairs["txn_type"].eq("transfer")
    value = known.where(~declined_transfer, DECLINED_TRANSFER_PROPENSITY)
    value = value.where(value.notna() | ~pairs["incident"], INCIDENT_PROPENSITY)
    return value.fillna(NOT_INCIDENT_PROPENSITY).to_numpy(dtype=float)


#: Engine table of the complaints that :func:`ticket_candidates_on` registers.
TICKET_CLAIMS = "ticket_claims"


def ticket_candidates_sql(*, time_window_minutes: float, amount_tolerance: float, lookback_days: float) -> str:
    """The candidates step: transactions of a ticket's merchant and kind that roughly fit it.

    Over the engine tables ``reconciled`` and :data:`TICKET_CLAIMS` (one row per
    complaint: ``ticket_id, merchant_id, txn_type, stated_amount, opened_t,
    txn_time_t`` in epoch seconds). A transaction fits roughly when its amount is
    within 10 yuan of the stated one (or the tolerance, if larger), it was made
    no later than the ticket was opened, and it lies within the time window of
    the stated time or, with none stated, within ``lookback_days`` before the ticket.

    Examples
    --------
    >>> "ABS(x.t - c.txn_time_t) <= 3600.0" in ticket_candidates_sql(
    ...     time_window_minutes=60, amount_tolerance=0, lookback_days=14)
    True
    """
    slack = max(10.0, amount_tolerance + _CENT)
    return f"""
SELECT c.ticket_id, x.txn_id, x.amount, x.timestamp, x.t, x.outcome, x.credited_at
FROM {TICKET_CLAIMS} c
JOIN reconciled x ON x.merchant_id = c.merchant_id AND x.txn_type = c.txn_type
WHERE ABS(c.stated_amount - x.amount) < CAST({slack!r} AS DOUBLE)
  AND x.t <= c.opened_t
  AND CASE WHEN c.txn_time_t IS NULL THEN c.opened_t - x.t <= {float(lookback_days) * 86400!r}
           ELSE ABS(x.t - c.txn_time_t) <= {float(time_window_minutes) * 60!r} END"""


def _claims(complaints: pd.DataFrame) -> pd.DataFrame:
    """The complaints as :data:`TICKET_CLAIMS` rows (times as epoch seconds)."""
    stated = complaints["txn_time"] if "txn_time" in complaints else pd.Series(pd.NaT, index=complaints.index)
    return pd.DataFrame({
        "ticket_id": complaints["ticket_id"].astype("str"),
        "merchant_id": complaints["merchant_id"].astype("str"),
        "txn_type": complaints["kind"].map(KIND_TXN_TYPE).astype("str"),
        "stated_amount": complaints["amount"].astype("float64"),
        "opened_t": epoch_seconds(complaints["opened_at"]),
        "txn_time_t": epoch_seconds(stated),
    }).reset_index(drop=True)


def ticket_candidates_on(
    engine: Engine,
    complaints: pd.DataFrame,
    *,
    time_window_minutes: float = 60,
    amount_tolerance: float = 0.0,
    lookback_days: float = 14,
) -> pd.DataFrame:
    """The transactions in an engine that roughly fit each complaint (:func:`ticket_candidates_sql`).

    Parameters
    ----------
    engine : Engine
        With the table ``reconciled`` (``txn_id, merchant_id, txn_type, amount,
        timestamp, t, outcome, credited_at``; ``outcome`` and ``credited_at`` may be NULL).
    complaints : DataFrame
        The contract's ``complaints`` table (registered as :data:`TICKET_CLAIMS`).
    time_window_minutes, amount_tolerance, lookback_days
        As :func:`match_tickets`.

    Returns
    -------
    DataFrame
        ``ticket_id, txn_id, amount, timestamp, t, outcome, credited_at``, one row
        per (ticket, transaction) pair, in the complaints' order, then by time and id.

    Examples
    --------
    >>> from analysis.aggregates import frames_engine
    >>> tz = "Asia/Shanghai"
    >>> complaints = pd.DataFrame({"ticket_id": ["C1"], "merchant_id": ["M1"], "kind": ["unsettled"],
    ...     "amount": [129.0], "opened_at": pd.to_datetime(["2026-03-12 09:00"]).tz_localize(tz),
    ...     "txn_time": pd.to_datetime(["2026-03-10 10:00"]).tz_localize(tz)})
    >>> txns = pd.DataFrame({"txn_id": ["A", "B"], "merchant_id": ["M1", "M1"],
    ...     "txn_type": ["purchase", "purchase"], "amount": [128.5, 35.0],
    ...     "timestamp": pd.to_datetime(["2026-03-10 10:04", "2026-03-10 10:01"]).tz_localize(tz)})
    >>> with frames_engine(reconciled=txns) as eng:
    ...     ticket_candidates_on(eng, complaints)["txn_id"].tolist()
    ['A']
    """
    claims = _claims(complaints)
    engine.register_frame(TICKET_CLAIMS, claims)
    sql = ticket_candidates_sql(time_window_minutes=time_window_minutes, amount_tolerance=amount_tolerance,
                                lookback_days=lookback_days)
    found = engine.fetch(sql)
    order = pd.Index(claims["ticket_id"]).get_indexer(found["ticket_id"])
    found = found.assign(_order=order).sort_values(["_order", "t", "txn_id"], kind="stable")
    return found.drop(columns="_order").reset_index(drop=True)


def score_candidates(
    complaints: pd.DataFrame,
    candidates: pd.DataFrame,
    incidents: pd.DataFrame,
    *,
    time_window_minutes: float,
    amount_tolerance: float,
    lookback_days: float,
) -> pd.DataFrame:
    """Every (ticket, transaction) pair that fits, with its likelihood and share.

    Parameters
    ----------
    complaints : DataFrame
        The contract's ``complaints`` table.
    candidates : DataFrame
        :func:`ticket_candidates_on`'s pairs.
    incidents : DataFrame
        ``txn_id``, optionally ``outcome`` (it overrides the transaction's own).
    time_window_minutes, amount_tolerance, lookback_days
        As :func:`match_tickets`.
    """
    tickets = complaints[["ticket_id", "merchant_id", "kind", "amount", "opened_at"]].assign(
        txn_time=complaints["txn_time"] if "txn_time" in complaints else pd.NaT,
        txn_type=complaints["kind"].map(KIND_TXN_TYPE),
    ).rename(columns={"amount": "stated_amount"})
    pairs = candidates.merge(tickets.astype({"ticket_id": "str"}), on="ticket_id", how="left")
    by_id = incidents.drop_duplicates("txn_id").set_index("txn_id")
    pairs["incident"] = by_id.index.get_indexer(pairs["txn_id"]) >= 0
    if "outcome" in by_id:
        incident_outcome = pairs["txn_id"].map(by_id["outcome"])
        pairs["outcome"] = incident_outcome.where(incident_outcome.notna(), pairs["outcome"])
    pairs["amount_like"], pairs["amount_how"] = amount_likelihood(
        pairs["stated_amount"], pairs["amount"], amount_tolerance
    )
    pairs["time_like"], pairs["distance_s"] = time_likelihood(
        pairs, pd.Timedelta(minutes=time_window_minutes), pd.Timedelta(days=lookback_days)
    )
    pairs["fit"] = pairs["amount_like"] * pairs["time_like"]
    pairs["likelihood"] = pairs["fit"] * propensity(pairs)
    pairs = pairs[pairs["likelihood"] > 0].reset_index(drop=True)
    pairs["share"] = pairs["likelihood"] / pairs.groupby("ticket_id")["likelihood"].transform("sum")
    return pairs


def _rank(pairs: pd.DataFrame) -> pd.DataFrame:
    """Candidates ordered best first within each ticket, with their rank and share."""
    ordered = pairs.sort_values(
        ["ticket_id", "likelihood", "distance_s", "txn_id"], ascending=[True, False, True, True]
    )
    share = ordered["likelihood"] / ordered.groupby("ticket_id")["likelihood"].transform("sum")
    return ordered.assign(rank=ordered.groupby("ticket_id").cumcount(), share=share)


def _leaders(ranked: pd.DataFrame, tie_ratio: float) -> pd.DataFrame:
    """Per ticket: its best candidate, the runner-up's likelihood, and whether it leads clearly."""
    best = ranked[ranked["rank"].eq(0)].set_index("ticket_id")
    second = ranked[ranked["rank"].eq(1)].set_index("ticket_id")["likelihood"]
    best["second"] = second.reindex(best.index).fillna(0.0)
    best["clear_lead"] = best["likelihood"] >= tie_ratio * best["second"]
    return best


def _contested(leaders: pd.DataFrame, ranked: pd.DataFrame, clear_share: float) -> pd.Index:
    """Index of candidate pairs to drop: a transaction another ticket describes better.

    A pair (U, X) is dropped when another ticket T leads clearly with X and
    describes it better (higher likelihood; ties go to the smaller ticket id),
    unless both describe X clearly (shares ≥ ``clear_share`` and amount × time
    factors ≥ :data:`CLEAR_FIT`) and X is U's best too.
    """
    matched = leaders[leaders["clear_lead"]].reset_index()[
        ["ticket_id", "txn_id", "likelihood", "share", "fit"]
    ]
    rivals = ranked.reset_index().merge(matched, on="txn_id", suffixes=("", "_winner"))
    rivals = rivals[rivals["ticket_id"] != rivals["ticket_id_winner"]]
    loses = (rivals["likelihood"] < rivals["likelihood_winner"]) | (
        (rivals["likelihood"] == rivals["likelihood_winner"])
        & (rivals["ticket_id"] > rivals["ticket_id_winner"])
    )
    clear = (rivals["share"] >= clear_share) & (rivals["fit"] >= CLEAR_FIT)
    clear_winner = (rivals["share_winner"] >= clear_share) & (rivals["fit_winner"] >= CLEAR_FIT)
    both_clear = clear & clear_winner & rivals["rank"].eq(0)
    return pd.Index(rivals.loc[loses & ~both_clear, "index"].unique())


def _resolve(
    pairs: pd.DataFrame, tie_ratio: float, clear_share: float
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Drop contested candidates until stable: final ranking, leaders, and the dropped pairs."""
    kept = pairs
    while True:
        ranked = _rank(kept)
        leaders = _leaders(ranked, tie_ratio)
        drop = _contested(leaders, ranked, clear_share)
        if drop.empty:
            return ranked, leaders, pairs.loc[pairs.index.difference(kept.index)]
        kept = kept.drop(drop)


def _fit_words(row: Mapping) -> str:
    """How the amount and time fit, in words."""
    words = f"amount {row['amount_how']}"
    if pd.notna(row["txn_time"]):
        return f"{words}, {row['distance_s'] / 60:.0f} min from the stated time"
    hours = row["distance_s"] / 3600
    before = f"{hours:.1f} h" if hours < 24 else f"{hours / 24:.1f} days"
    return f"{words}, {before} before the ticket (no time stated)"


def _matched_text(row: Mapping, incidents: dict, others: int) -> dict:
    """cause, next_step, note and outcome for a ticket with a matched transaction (None = empty)."""
    fit = _fit_words(row) + (
        f"; {others} other candidate{'s' if others != 1 else ''}" if others else ""
    )
    outcome = row.get("outcome")
    outcome = None if outcome is None or pd.isna(outcome) or outcome == "" else outcome
    if row["txn_id"] in incidents:
        inc = incidents[row["txn_id"]]
        note = f"{fit}; incident ({outcome or 'see incidents'})"
        return {
            "cause": inc["cause"],
            "next_step": inc["next_step"],
            "note": note,
            "outcome": outcome,
        }
    credited = row.get("credited_at")
    credited = (
        "" if credited is None or pd.isna(credited) else f" on {pd.Timestamp(credited).date()}"
    )
    step = NEXT_STEP_NOT_INCIDENT.get(outcome or "", NEXT_STEP_NOT_INCIDENT[""]).format(
        credited=credited
    )
    note = f"{fit}; not an incident ({outcome or 'money moved as it should'})"
    return {"cause": None, "next_step": step, "note": note, "outcome": outcome}


def _listed(pairs: pd.DataFrame, word) -> dict:
    """Per ticket, its pairs worded by ``word`` and joined by commas (in the pairs' order)."""
    if pairs.empty:
        return {}
    text = pd.Series([word(r) for r in pairs.itertuples(index=False)], index=pairs.index)
    return text.groupby(pairs["ticket_id"].to_numpy(), sort=False).agg(", ".join).to_dict()


def _unmatched_note(ticket: Mapping, lost: str | None) -> str:
    """Why a ticket has no candidate left (``lost``: its candidates other tickets matched, worded)."""
    if lost:
        return f"its candidates are better matched by other tickets: {lost}"
    kind = KIND_TXN_TYPE.get(ticket["kind"], ticket["kind"])
    when = (
        f"within the time window of {pd.Timestamp(ticket['txn_time']):%Y-%m-%d %H:%M}"
        if pd.notna(ticket.get("txn_time"))
        else "in the days before the ticket"
    )
    return f"no {kind} of merchant {ticket['merchant_id']} fits {ticket['amount']:,.2f} yuan {when}"


def match_tickets(
    complaints: pd.DataFrame,
    transactions: pd.DataFrame,
    incidents: pd.DataFrame,
    *,
    time_window_minutes: float = 60,
    amount_tolerance: float = 0.0,
    lookback_days: float = 14,
    tie_ratio: float = 1.5,
    clear_share: float = 0.9,
) -> pd.DataFrame:
    """One row per complaint with the transaction it describes, its cause and next step.

    Parameters
    ----------
    complaints : DataFrame
        The contract's ``complaints`` table.
    transactions : DataFrame
        ``transactions`` (or the reconciled frame: with ``outcome`` and
        ``credited_at`` a non-incident match says what happened to the money).
    incidents : DataFrame
        :func:`analysis.causes.classify` output (``txn_id, cause, next_step``,
        optionally ``outcome``).
    time_window_minutes : float
        Half-width of the window around a stated ``txn_time``.
    amount_tolerance : float
        Extra slack in yuan for amounts no rounding explains (0 = off).
    lookback_days : float
        How far before ``opened_at`` to look when no time is stated.
    tie_ratio : float
        How many times likelier than the next the best candidate must be to be ``matched``.
    clear_share : float
        Share at which two tickets may both keep the same transaction.

    Returns
    -------
    DataFrame
        :data:`OUTPUT_COLUMNS`: ``ticket_id, txn_id`` (empty unless matched),
        ``cause`` (empty when the transaction is not an incident), ``next_step``,
        ``match_score`` (the matched candidate's share, 0–1; 0 when not matched),
        ``match_status`` (``matched``, ``ambiguous``, ``unmatched``),
        ``candidates`` (how many transactions fitted), ``note`` and ``outcome``.
        In the complaints' order.

    Examples
    --------
    See the module docstring.
    """
    with frames_engine(reconciled=transactions) as engine:
        return match_tickets_on(
            engine,
            complaints,
            incidents,
            time_window_minutes=time_window_minutes,
            amount_tolerance=amount_tolerance,
            lookback_days=lookback_days,
            tie_ratio=tie_ratio,
            clear_share=clear_share,
        )


def match_tickets_on(
    engine: Engine,
    complaints: pd.DataFrame,
    incidents: pd.DataFrame,
    *,
    time_window_minutes: float = 60,
    amount_tolerance: float = 0.0,
    lookback_days: float = 14,
    tie_ratio: float = 1.5,
    clear_share: float = 0.9,
) -> pd.DataFrame:
    """:func:`match_tickets` with the transactions in an engine (table ``reconciled``).

    Only the candidate transactions near each complaint leave the engine
    (:func:`ticket_candidates_on`); the matching runs on them in pandas.

    Parameters
    ----------
    engine : Engine
    complaints : DataFrame
        The contract's ``complaints`` table.
    incidents : DataFrame
        :func:`analysis.causes.classify` output (``txn_id, cause, next_step``, optionally ``outcome``).
    time_window_minutes, amount_tolerance, lookback_days, tie_ratio, clear_share
        As :func:`match_tickets`.

    Returns
    -------
    DataFrame
        As :func:`match_tickets`.

    Examples
    --------
    >>> from analysis.aggregates import frames_engine                  # doctest: +SKIP
    >>> with frames_engine(reconciled=rec) as eng:                     # doctest: +SKIP
    ...     tickets = match_tickets_on(eng, ds.complaints, incidents)  # doctest: +SKIP
    """
    options = dict(time_window_minutes=time_window_minutes, amount_tolerance=amount_tolerance,
                   lookback_days=lookback_days)
    candidates = ticket_candidates_on(engine, complaints, **options)
    pairs = score_candidates(complaints, candidates, incidents, **options)
    return _match(complaints, pairs, incidents, tie_ratio, clear_share)


def _match(complaints: pd.DataFrame, pairs: pd.DataFrame, incidents: pd.DataFrame, tie_ratio: float,
           clear_share: float) -> pd.DataFrame:
    """One output row per complaint from its scored candidates (:func:`match_tickets`, *Returns*).

    Every per-ticket lookup is a dictionary built once (tens of thousands of
    tickets: no per-ticket frame selection).
    """
    counts = pairs.groupby("ticket_id").size().to_dict()
    ranked, leaders, dropped = _resolve(pairs, tie_ratio, clear_share)
    winners = leaders.loc[leaders["clear_lead"], "txn_id"]
    winner_of = pd.Series(winners.index, index=winners.to_numpy())
    winner_of = winner_of[~winner_of.index.duplicated()]

    sizes = ranked.groupby("ticket_id").size().to_dict()
    best_of = leaders.to_dict("index")
    unclear = leaders.index[~leaders["clear_lead"].to_numpy(dtype=bool)]
    near = ranked[ranked["ticket_id"].isin(unclear)]
    near = near[near["likelihood"].to_numpy() * tie_ratio
                > leaders.loc[near["ticket_id"], "likelihood"].to_numpy()]
    tied = _listed(near, lambda r: f"{r.txn_id} ({r.share:.2f})")
    lost = _listed(dropped, lambda r: f"{r.txn_id} (matched by {winner_of.get(r.txn_id, '?')})")
    chosen = incidents[incidents["txn_id"].isin(pd.unique(leaders["txn_id"]))].drop_duplicates(
        "txn_id"
    )
    incidents_by_id = chosen.set_index("txn_id")[["cause", "next_step"]].to_dict("index")
    rows = []
    for ticket in complaints.to_dict("records"):
        tid = ticket["ticket_id"]
        out = dict.fromkeys(OUTPUT_COLUMNS)
        out.update(ticket_id=tid, candidates=int(counts.get(tid, 0)), match_score=0.0)
        best = best_of.get(tid)
        if best is not None and best["clear_lead"]:
            out.update(_matched_text(best, incidents_by_id, sizes[tid] - 1))
            out.update(
                txn_id=best["txn_id"], match_score=float(best["share"]), match_status="matched"
            )
        elif best is not None:
            out.update(
                next_step=NEXT_STEP_AMBIGUOUS,
                match_status="ambiguous",
                note=f"nearly tied candidates (share): {tied.get(tid, '')}",
            )
        else:
            out.update(
                next_step=NEXT_STEP_UNMATCHED,
                match_status="unmatched",
                note=_unmatched_note(ticket, lost.get(tid)),
            )
        rows.append(out)
    result = pd.DataFrame(rows, columns=list(OUTPUT_COLUMNS))
    for col in ("ticket_id", "txn_id", "cause", "next_step", "match_status", "note", "outcome"):
        result[col] = result[col].astype("str")
    result["candidates"] = result["candidates"].astype("int64")
    result["match_score"] = result["match_score"].astype(float).round(3)
    return result


__all__ = [
    "AMOUNT_MODES",
    "COMPLAINT_PROPENSITY",
    "KIND_TXN_TYPE",
    "OUTPUT_COLUMNS",
    "amount_likelihood",
    "amount_modes",
    "TICKET_CLAIMS",
    "match_tickets",
    "match_tickets_on",
    "propensity",
    "score_candidates",
    "ticket_candidates_on",
    "ticket_candidates_sql",
    "time_likelihood",
]
