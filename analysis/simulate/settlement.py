"""Clearing and crediting, and each attempt's money outcome as of the simulation end.

Approved purchases and transfers (not voided, not held back by an upload
problem) clear on their due date — ``T1`` the next business day, ``D1`` the next
calendar day, ``D0`` the same day — and are credited 0–2 business days after it
(within :meth:`~analysis.workdays.WorkCalendar.credit_deadline`), or returned,
or late. Nothing exists after the end: a row clears only if its due date is on
or before the last day, and a credit landing later is ``pending``.

The outcome follows the contract's definitions (the same rules as
:func:`analysis.reconcile.reconcile`), as of the last simulated day.

Examples
--------
>>> from analysis.simulate.settlement import OUTCOME_NAMES, UNSETTLED
>>> [OUTCOME_NAMES[i] for i in sorted(UNSETTLED)]
['not_cleared', 'returned', 'reversal_failed']
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from ..contract import CREDIT_STATUSES, OUTCOMES, RETURN_REASONS
from .catalog import CODE_INDEX, CREDIT_DELAY_P, CYCLES, LATE_CREDIT_RATE
from .city import City
from .columns import DAY_S, date_series, str_series, time_series, vocab_strings
from .mechanisms import FAILED, NONE, SENT, Outcome
from .timeline import LATE_MAX, Timeline
from .traffic import Attempts

OUTCOME_NAMES: tuple[str, ...] = tuple(OUTCOMES)
O = {name: i for i, name in enumerate(OUTCOME_NAMES)}
#: Outcomes counted by the contract's unsettled rate.
UNSETTLED = frozenset({O["reversal_failed"], O["not_cleared"], O["returned"]})
CREDITED, PENDING, RETURNED = (CREDIT_STATUSES.index(s) for s in ("credited", "pending", "returned"))
#: Credits land in the morning: from 06:00, skewed early, up to 11:00.
CREDIT_FROM_S, CREDIT_SPAN_S = 6 * 3600, 5 * 3600
#: D0 credits land 1-4 hours after the purchase.
D0_FROM_S, D0_SPAN_S = 3600, 3 * 3600


@dataclass(frozen=True)
class Money:
    """Per attempt: clearing row (if any), credit time and status, and the money outcome.

    ``outcome`` indexes :data:`OUTCOME_NAMES`; ``status`` indexes
    ``CREDIT_STATUSES`` (-1: no settlements row); ``credited_s`` is local
    seconds (-1: not credited); ``due``/``deadline`` are ``datetime64[D]``.
    """

    outcome: np.ndarray
    has_row: np.ndarray
    status: np.ndarray
    credited_s: np.ndarray
    due: np.ndarray
    deadline: np.ndarray

    @property
    def unsettled(self) -> np.ndarray:
        """True where the contract's unsettled rate counts the attempt."""
        return np.isin(self.outcome, list(UNSETTLED))


def _cells(att: Attempts, city: City, tl: Timeline) -> tuple[np.ndarray, np.ndarray]:
    """Each attempt's settlement cycle and its flat ``[cycle, day]`` index into the timeline tables."""
    cycle = city.m_cycle[att.merchant]
    return cycle, cycle.astype(np.int64) * tl.days + att.day


def unsettled(att: Attempts, out: Outcome, city: City, tl: Timeline) -> np.ndarray:
    """The contract's unsettled flag (reversal failed, not cleared past the cycle, returned), directly.

    Equal to ``settle(...).unsettled`` without working out credit times: what a
    counterfactual run needs.
    """
    _, cell = _cells(att, city, tl)
    last = tl.last_day
    clearing = out.approved & ~out.voided
    not_cleared = clearing & out.no_row & (last > tl.deadline.reshape(-1)[cell])
    returned = clearing & ~out.no_row & (out.return_reason >= 0) & (tl.due.reshape(-1)[cell] <= last)
    no_answer_unreversed = (out.code < 0) & (out.reversal == NONE)
    return (out.reversal == FAILED) | no_answer_unreversed | not_cleared | returned


def settle(att: Attempts, out: Outcome, city: City, tl: Timeline, *, scale: float = 1.0) -> Money:
    """Clear and credit every attempt and give its outcome as of the last day."""
    cycle, cell = _cells(att, city, tl)
    due = tl.due.reshape(-1)[cell]
    deadline = tl.deadline.reshape(-1)[cell]
    last = tl.last_day

    approved = out.approved
    has_row = approved & ~out.voided & ~out.no_row & (due <= last)
    returned = has_row & (out.return_reason >= 0)

    # credit day: 0-2 business days after the due date, or 1-LATE_MAX after the deadline if late
    n_k = len(CREDIT_DELAY_P)
    u = att.draws["credit"]
    k = sum((u >= edge).astype(np.int64) for edge in np.cumsum(CREDIT_DELAY_P)[:-1])
    late_rate = max(LATE_CREDIT_RATE * scale, 1e-12)
    j = np.minimum((att.draws["late"] / late_rate * LATE_MAX).astype(np.int64), LATE_MAX - 1)
    on_time = tl.credit_day.reshape(-1)[cell * n_k + k]
    credit_day = np.where(out.late, tl.late_day.reshape(-1)[cell * LATE_MAX + j], on_time)
    tod = att.draws["tod"]
    morning = (tod**1.7 * CREDIT_SPAN_S).astype(np.int64)
    credited_s = credit_day.view(np.int64) * DAY_S + CREDIT_FROM_S + morning
    same_day = (cycle == CYCLES.index("D0")) & (k == 0) & ~out.late
    credited_s[same_day] = att.ts[same_day] + D0_FROM_S + (tod[same_day] * D0_SPAN_S).astype(np.int64)
    credited = has_row & ~returned & (credited_s < tl.end_s)
    credited_s[~credited] = -1

    status = np.full(len(att), -1, dtype=np.int8)
    status[has_row] = PENDING
    status[credited] = CREDITED
    status[returned] = RETURNED

    in_cycle = last <= deadline
    credit_date = (np.maximum(credited_s, 0) // DAY_S).view("datetime64[D]")
    outcome = np.select(
        [
            out.reversal == FAILED,
            out.reversal == SENT,
            out.code < 0,
            out.code != CODE_INDEX["00"],
            out.voided,
            credited & (credit_date <= deadline),
            credited,
            returned,
            in_cycle,
            has_row,
        ],
        [O[x] for x in ("reversal_failed", "reversed", "reversal_failed", "declined", "voided", "credited",
                        "credited_late", "returned", "in_cycle", "credit_overdue")],
        default=O["not_cleared"],
    ).astype(np.int8)
    return Money(
        outcome=outcome, has_row=has_row, status=status, credited_s=credited_s, due=due, deadline=deadline
    )


def settlements_table(
    att: Attempts, money: Money, txn_ids: pa.Array, position: np.ndarray, out: Outcome
) -> pd.DataFrame:
    """The contract's ``settlements`` table: one row per cleared attempt, in transaction order.

    ``txn_ids`` are the transactions table's ids and ``position`` each attempt's row in it.
    """
    rows = np.flatnonzero(money.has_row)
    rows = rows[np.argsort(position[rows], kind="stable")]
    credited_s = money.credited_s[rows]
    return pd.DataFrame(
        {
            "txn_id": str_series(txn_ids.take(pa.array(position[rows]))),
            "cleared_date": date_series(money.due[rows]),
            "settled_amount": att.amount[rows],
            "credit_status": str_series(vocab_strings(CREDIT_STATUSES, money.status[rows])),
            "credited_at": time_series(credited_s, missing=credited_s < 0),
            "return_reason": str_series(vocab_strings(RETURN_REASONS, out.return_reason[rows])),
        }
    )


__all__ = ["Money", "OUTCOME_NAMES", "UNSETTLED", "settle", "settlements_table", "unsettled"]
