"""Which transaction a complaint is about: one row per ticket, never a forced match.

:func:`match_tickets` pairs each complaint (``complaints`` table) with the
transaction it most likely describes and hands down that incident's cause and
next step.

Matching
--------
- **Candidates**: transactions of the ticket's merchant and kind — ``unsettled``
  (刷卡未到账) ↔ ``purchase``, ``transfer_failed`` (转账失败) ↔ ``transfer`` — made
  no later than the ticket was opened, whose amount fits the stated one, and
  - when the reporter gave ``txn_time``: within ±``time_window_minutes`` of it;
  - otherwise: within ``lookback_days`` before ``opened_at``.
- **Amount fit** (the reporter may round): exact (1.0); the stated amount is a
  whole yuan within 1 yuan (0.8); a multiple of 10 yuan within 10 yuan (0.6);
  within ``amount_tolerance`` yuan otherwise (0.4; off by default).
- **Time fit**: with ``txn_time``, 1 at the stated time falling linearly to 0.5
  at the window's edge; without it, 0.5 for a transaction just before the
  ticket falling to 0.3 at ``lookback_days`` (recency is weak evidence).
- **Score** = 0.45 × amount fit + 0.35 × time fit + 0.20 × (the transaction is
  an incident), so a complaint prefers a transaction whose money did not arrive.
- **Status**: ``matched`` when the best candidate leads the next by at least
  ``tie_margin``; ``ambiguous`` when the two best are nearly tied (``txn_id``
  left empty, the tied candidates listed in ``note``); ``unmatched`` when there
  is no candidate.
- **One ticket per transaction**: when several tickets' best candidate is the
  same transaction, the best-scoring ticket keeps it and the others drop it and
  are ranked again on what is left — unless both describe it clearly (scores at
  least ``clear_score``) and the other ticket fits no other transaction that
  well: the usual case of a merchant complaining twice about the same money,
  where both keep it.

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
>>> match_tickets(complaints, txns, incidents)[["ticket_id", "txn_id", "cause", "match_status"]].iloc[0].tolist()
['C1', 'A', 'NETWORK_COMMUNICATION', 'matched']
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: Complaint kind → the transaction type it is about.
KIND_TXN_TYPE = {"unsettled": "purchase", "transfer_failed": "transfer"}

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

_WEIGHTS = {"amount": 0.45, "time": 0.35, "incident": 0.20}
_EXACT = 0.005

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


def amount_fit(stated: pd.Series, actual: pd.Series, tolerance: float = 0.0) -> np.ndarray:
    """How well a stated amount fits the transaction's: 1 exact, 0.8 whole-yuan rounding,
    0.6 ten-yuan rounding, 0.4 within ``tolerance`` yuan, 0 no fit.

    Examples
    --------
    >>> amount_fit(pd.Series([128.5, 129.0, 130.0, 200.0]), pd.Series([128.5] * 4)).tolist()
    [1.0, 0.8, 0.6, 0.0]
    """
    s, a = stated.to_numpy(dtype=float), actual.to_numpy(dtype=float)
    diff = np.abs(s - a)
    whole = np.abs(s - np.round(s)) < _EXACT
    tens = whole & (np.round(s) % 10 == 0)
    return np.select(
        [diff <= _EXACT, whole & (diff < 1), tens & (diff < 10), diff <= tolerance],
        [1.0, 0.8, 0.6, 0.4],
        default=0.0,
    )


def time_fit(
    pairs: pd.DataFrame, window: pd.Timedelta, lookback: pd.Timedelta
) -> tuple[np.ndarray, np.ndarray]:
    """Time fit (0–1, 0 = outside) and distance of each candidate from the stated time.

    ``pairs`` needs ``timestamp`` (the transaction), ``txn_time`` (stated, may be
    missing) and ``opened_at``. The distance is to ``txn_time`` where given,
    else to ``opened_at``.
    """
    stated = pairs["txn_time"].notna().to_numpy()
    gap = (pairs["timestamp"] - pairs["txn_time"]).abs()
    age = pairs["opened_at"] - pairs["timestamp"]
    before_ticket = (age >= pd.Timedelta(0)).to_numpy()
    near = (gap <= window).fillna(False).to_numpy()
    recent = (age <= lookback).to_numpy()
    fit = np.where(
        stated,
        np.where(near, 1 - 0.5 * (gap / window).fillna(1).to_numpy(), 0.0),
        np.where(recent, 0.5 - 0.2 * (age / lookback).to_numpy(), 0.0),
    )
    fit = np.where(before_ticket, fit, 0.0)
    distance = np.where(stated, gap.dt.total_seconds().to_numpy(), age.dt.total_seconds().to_numpy())
    return fit, distance


def candidate_pairs(
    complaints: pd.DataFrame,
    transactions: pd.DataFrame,
    incident_ids: pd.Index,
    *,
    time_window_minutes: float,
    amount_tolerance: float,
    lookback_days: float,
) -> pd.DataFrame:
    """Every (ticket, transaction) pair that fits, with its fits and score.

    A merge on merchant and transaction type, then filters on amount and time.
    """
    tickets = complaints[["ticket_id", "merchant_id", "kind", "amount", "opened_at"]].assign(
        txn_time=complaints["txn_time"] if "txn_time" in complaints else pd.NaT,
        txn_type=complaints["kind"].map(KIND_TXN_TYPE),
    )
    cols = ["txn_id", "merchant_id", "txn_type", "amount", "timestamp"]
    cols += ["outcome"] if "outcome" in transactions.columns else []
    cols += ["credited_at"] if "credited_at" in transactions.columns else []
    merchants = pd.unique(tickets["merchant_id"].dropna())
    pool = transactions.loc[
        transactions["merchant_id"].isin(merchants)
        & transactions["txn_type"].isin(list(KIND_TXN_TYPE.values())),
        cols,
    ]
    pairs = tickets.rename(columns={"amount": "stated_amount"}).merge(
        pool, on=["merchant_id", "txn_type"], how="inner"
    )
    pairs["amount_fit"] = amount_fit(pairs["stated_amount"], pairs["amount"], amount_tolerance)
    pairs["time_fit"], pairs["distance_s"] = time_fit(
        pairs, pd.Timedelta(minutes=time_window_minutes), pd.Timedelta(days=lookback_days)
    )
    pairs["incident"] = pairs["txn_id"].isin(incident_ids)
    pairs = pairs[(pairs["amount_fit"] > 0) & (pairs["time_fit"] > 0)].copy()
    pairs["score"] = (
        _WEIGHTS["amount"] * pairs["amount_fit"]
        + _WEIGHTS["time"] * pairs["time_fit"]
        + _WEIGHTS["incident"] * pairs["incident"]
    ).round(4)
    return pairs.reset_index(drop=True)


def _rank(pairs: pd.DataFrame) -> pd.DataFrame:
    """Candidates ordered best first within each ticket, with their rank."""
    ordered = pairs.sort_values(
        ["ticket_id", "score", "distance_s", "txn_id"], ascending=[True, False, True, True]
    )
    return ordered.assign(rank=ordered.groupby("ticket_id").cumcount())


def _leaders(ranked: pd.DataFrame, tie_margin: float) -> pd.DataFrame:
    """Per ticket: its best candidate, the runner-up's score, and whether it leads clearly."""
    best = ranked[ranked["rank"].eq(0)].set_index("ticket_id")
    second = ranked[ranked["rank"].eq(1)].set_index("ticket_id")["score"]
    best["second_score"] = second.reindex(best.index)
    best["clear_lead"] = (best["score"] - best["second_score"].fillna(-1.0)) >= tie_margin
    return best


def _contested(leaders: pd.DataFrame, pairs: pd.DataFrame, clear_score: float) -> pd.Index:
    """Index of pairs to drop: a transaction that another ticket matches better.

    A pair (U, X) is dropped when another ticket T leads clearly with X at a
    higher score (ties go to the smaller ticket id), unless both describe X
    clearly (scores ≥ ``clear_score``), X is U's best too and U has no other
    candidate it describes clearly.
    """
    matched = leaders[leaders["clear_lead"]].reset_index()[["ticket_id", "txn_id", "score"]]
    rivals = pairs.reset_index().merge(matched, on="txn_id", suffixes=("", "_winner"))
    rivals = rivals[rivals["ticket_id"] != rivals["ticket_id_winner"]]
    loses = (rivals["score"] < rivals["score_winner"]) | (
        (rivals["score"] == rivals["score_winner"]) & (rivals["ticket_id"] > rivals["ticket_id_winner"])
    )
    u_best = rivals["ticket_id"].map(leaders["txn_id"]).eq(rivals["txn_id"])
    u_clear = rivals["score"] >= clear_score
    clear_per_ticket = pairs.loc[pairs["score"] >= clear_score].groupby("ticket_id").size()
    u_alternatives = clear_per_ticket.reindex(rivals["ticket_id"]).fillna(0).to_numpy() - u_clear
    both_clear = u_clear & (rivals["score_winner"] >= clear_score) & u_best & (u_alternatives == 0)
    return pd.Index(rivals.loc[loses & ~both_clear, "index"].unique())


def _resolve(pairs: pd.DataFrame, tie_margin: float, clear_score: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Drop contested candidates until stable; the final leaders and the dropped pairs."""
    kept = pairs
    while True:
        leaders = _leaders(_rank(kept), tie_margin)
        drop = _contested(leaders, kept, clear_score)
        if drop.empty:
            return leaders, pairs.loc[pairs.index.difference(kept.index)]
        kept = kept.drop(drop)


def _fit_words(row: pd.Series) -> str:
    """How the amount and time fit, in words."""
    amount = {1.0: "amount exact", 0.8: "amount rounded to whole yuan", 0.6: "amount rounded to 10 yuan"}
    words = amount.get(row["amount_fit"], "amount within the tolerance")
    minutes = row["distance_s"] / 60
    if pd.notna(row["txn_time"]):
        return f"{words}, {minutes:.0f} min from the stated time"
    return f"{words}, {minutes / 1440:.1f} days before the ticket (no time stated)"


def _matched_text(row: pd.Series, incidents: pd.DataFrame) -> tuple[str, str, str, str]:
    """cause, next_step, note and outcome for a ticket with a matched transaction (None = empty)."""
    fit = _fit_words(row)
    if row["txn_id"] in incidents.index:
        inc = incidents.loc[row["txn_id"]]
        outcome = inc.get("outcome", "")
        outcome = None if pd.isna(outcome) or outcome == "" else outcome
        return inc["cause"], inc["next_step"], f"{fit}; incident ({outcome or 'see incidents'})", outcome
    outcome = row.get("outcome", "")
    outcome = "" if pd.isna(outcome) else outcome
    credited = row.get("credited_at")
    credited = "" if credited is None or pd.isna(credited) else f" on {pd.Timestamp(credited).date()}"
    step = NEXT_STEP_NOT_INCIDENT.get(outcome, NEXT_STEP_NOT_INCIDENT[""]).format(credited=credited)
    note = f"{fit}; not an incident ({outcome or 'money moved as it should'})"
    return None, step, note, outcome or None


def _unmatched_note(ticket: pd.Series, dropped: pd.DataFrame, winners: pd.Series) -> str:
    """Why a ticket has no candidate left."""
    lost = dropped[dropped["ticket_id"].eq(ticket["ticket_id"])]
    if len(lost):
        ids = ", ".join(f"{t} (matched by {winners.get(t, '?')})" for t in lost["txn_id"])
        return f"its candidates are better matched by other tickets: {ids}"
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
    tie_margin: float = 0.05,
    clear_score: float = 0.85,
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
        :func:`analysis.causes.classify` output (``txn_id, cause, next_step``).
    time_window_minutes : float
        Half-width of the window around a stated ``txn_time``.
    amount_tolerance : float
        Extra slack in yuan for amounts no rounding explains (0 = off).
    lookback_days : float
        How far before ``opened_at`` to look when no time is stated.
    tie_margin : float
        Score lead the best candidate needs over the next to be ``matched``.
    clear_score : float
        Score at which two tickets may both keep the same transaction.

    Returns
    -------
    DataFrame
        :data:`OUTPUT_COLUMNS`: ``ticket_id, txn_id`` (empty unless matched),
        ``cause`` (empty when the transaction is not an incident), ``next_step``,
        ``match_score`` (0–1), ``match_status`` (``matched``, ``ambiguous``,
        ``unmatched``), ``candidates`` (how many transactions fitted), ``note``
        and ``outcome``. In the complaints' order.

    Examples
    --------
    See the module docstring.
    """
    incidents_by_id = incidents.drop_duplicates("txn_id").set_index("txn_id")
    pairs = candidate_pairs(
        complaints,
        transactions,
        incidents_by_id.index,
        time_window_minutes=time_window_minutes,
        amount_tolerance=amount_tolerance,
        lookback_days=lookback_days,
    )
    counts = pairs.groupby("ticket_id").size()
    leaders, dropped = _resolve(pairs, tie_margin, clear_score)
    ranked = _rank(pairs)
    winners = leaders.loc[leaders["clear_lead"], "txn_id"]
    winner_of = pd.Series(winners.index, index=winners.to_numpy())
    winner_of = winner_of[~winner_of.index.duplicated()]

    rows = []
    for _, ticket in complaints.iterrows():
        tid = ticket["ticket_id"]
        out = dict.fromkeys(OUTPUT_COLUMNS)
        out.update(ticket_id=tid, candidates=int(counts.get(tid, 0)), match_score=0.0)
        if tid in leaders.index and leaders.loc[tid, "clear_lead"]:
            best = leaders.loc[tid]
            cause, step, note, outcome = _matched_text(best, incidents_by_id)
            out.update(txn_id=best["txn_id"], cause=cause, next_step=step, note=note, outcome=outcome,
                       match_score=float(best["score"]), match_status="matched")
        elif tid in leaders.index:
            best = leaders.loc[tid]
            tied = ranked[ranked["ticket_id"].eq(tid) & (ranked["score"] >= best["score"] - tie_margin)]
            listed = ", ".join(f"{t} ({s:.2f})" for t, s in zip(tied["txn_id"], tied["score"]))
            out.update(next_step=NEXT_STEP_AMBIGUOUS, match_status="ambiguous",
                       match_score=float(best["score"]), note=f"nearly tied candidates: {listed}")
        else:
            out.update(next_step=NEXT_STEP_UNMATCHED, match_status="unmatched",
                       note=_unmatched_note(ticket, dropped, winner_of))
        rows.append(out)
    result = pd.DataFrame(rows, columns=list(OUTPUT_COLUMNS))
    for col in ("ticket_id", "txn_id", "cause", "next_step", "match_status", "note", "outcome"):
        result[col] = result[col].astype("str")
    result["candidates"] = result["candidates"].astype("int64")
    result["match_score"] = result["match_score"].astype(float).round(3)
    return result


__all__ = ["KIND_TXN_TYPE", "OUTPUT_COLUMNS", "amount_fit", "candidate_pairs", "match_tickets", "time_fit"]
