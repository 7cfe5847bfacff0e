"""What happens to each attempt: response, reversal, clearing, crediting — and why.

:func:`apply_mechanisms` is a pure function of the attempts (with their
pre-drawn uniforms), the resolved faults and a set of fixes in place. Running it
twice with different fixes gives a counterfactual with common random numbers:
only what the fix changes differs.

Precedence, from the terminal outwards
--------------------------------------
1. Background issuer answers: declines by code at small rates (fraud codes more
   likely for large amounts); sporadic ``96``/``91``/``68``; transfers ``91``/``92``.
2. Outages override them: an issuer outage (``91``/``96`` on purchases), a
   receiving bank's outage (``91``/``92`` on its transfers, or a later return).
3. The link overrides everything: on an unstable segment or sporadically,
   the request or response is lost (no response, reversal ``98`` sent or
   failed), corrupted (response fails its MAC → reversal ``A0``; ``A0``/``30``
   answers) or late (``68``). ``message_validation`` turns corrupted messages
   into detected retransmissions (the attempt then goes through normally);
   ``network_upgrade`` scales the link failure rate down.
4. Faulty firmware reverses some approved attempts (reason ``96``).
5. Clearing: a merchant that never uploads (``no_upload``) or a terminal-day
   whose batch upload failed leaves purchases uncleared; a wrong settlement
   account or a frozen account returns credits; transfers are returned now and
   then (payee details wrong, account frozen, bank unavailable); a few credits
   arrive late.

Examples
--------
>>> from analysis.simulate.catalog import CODES
>>> CODES[0]
'00'
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..contract import RETURN_REASONS, REVERSAL_REASONS, REVERSAL_STATUSES
from .catalog import (
    BACKGROUND_DECLINES,
    BACKGROUND_LINK_RATE,
    BACKGROUND_MECHANISMS,
    CODE_CAUSES,
    CODE_INDEX,
    FRAUD_BASE,
    FRAUD_CAP,
    FRAUD_CODES,
    FRAUD_POWER,
    FRAUD_SCALE,
    LATE_CREDIT_RATE,
    LINK_KIND_P_BACKGROUND,
    LINK_KIND_P_FAULT,
    LINK_KINDS,
    MECH,
    REFUND_RATE,
    TRANSFER_RETURNS,
    VOID_RATE,
)
from .city import City
from .columns import DAY_S
from .scenario import FaultInstance, FixInstance, Scenario, fixes_active
from .timeline import Timeline
from .traffic import Attempts

NONE, SENT, FAILED = (REVERSAL_STATUSES.index(s) for s in ("none", "sent", "failed"))
#: Batch states per terminal-day.
IDLE, UPLOADED, UPLOAD_FAILED, NOT_UPLOADED = 0, 1, 2, 3
#: Local time of the end-of-day batch upload window (seconds after midnight).
BATCH_AT_S = 23 * 3600 + 45 * 60

_LINK_CODE = np.array([-1 if k[1] is None else CODE_INDEX[k[1]] for k in LINK_KINDS], dtype=np.int8)
_LINK_REV = np.array([REVERSAL_STATUSES.index(k[2]) for k in LINK_KINDS], dtype=np.int8)
_LINK_REASON = np.array(
    [-1 if k[3] is None else REVERSAL_REASONS.index(k[3]) for k in LINK_KINDS], dtype=np.int8
)
_LINK_CORRUPTED = np.array([k[4] for k in LINK_KINDS])
_BG_CODES = tuple(BACKGROUND_DECLINES)
_BG_CODE_OF = np.array([CODE_INDEX[c] for c in _BG_CODES] + [CODE_INDEX["00"]], dtype=np.int8)
_BG_MECH_OF = np.array(  # [purchase/transfer, background code (last: approved)]
    [
        [MECH[BACKGROUND_MECHANISMS.get(CODE_CAUSES[c][t], "card_decline")] for c in _BG_CODES]
        + [MECH["normal"]]
        for t in (0, 1)
    ],
    dtype=np.int8,
)
_RETURN_REASON_OF = np.array([RETURN_REASONS.index(r) for r, _, _ in TRANSFER_RETURNS], dtype=np.int8)
_RETURN_MECH_OF = np.array([MECH[m] for _, _, m in TRANSFER_RETURNS], dtype=np.int8)


@dataclass(frozen=True)
class Outcome:
    """Per attempt: what the terminal saw and what clearing did, with the mechanism behind it.

    ``code`` indexes :data:`~analysis.simulate.catalog.CODES` (-1: no response);
    ``reversal`` indexes ``REVERSAL_STATUSES``; ``reason`` ``REVERSAL_REASONS``
    (-1: none); ``mech`` :data:`~analysis.simulate.catalog.MECHANISM_NAMES`;
    ``fault`` the scenario's faults (-1: background); ``link_kind``
    :data:`~analysis.simulate.catalog.LINK_KINDS` for link failures (-1 else);
    ``converted`` marks corrupted messages caught by message validation;
    ``slow`` attempts on a segment while its link fault runs. ``no_row``:
    approved but never cleared; ``return_reason`` indexes ``RETURN_REASONS``
    (-1: not returned); ``late``: credited after the deadline. ``batch`` and
    ``batch_fault`` are ``[terminal, day]`` upload states and their fault.
    """

    code: np.ndarray
    reversal: np.ndarray
    reason: np.ndarray
    mech: np.ndarray
    fault: np.ndarray
    link_kind: np.ndarray
    converted: np.ndarray
    slow: np.ndarray
    voided: np.ndarray
    refund: np.ndarray
    no_row: np.ndarray
    return_reason: np.ndarray
    late: np.ndarray
    batch: np.ndarray = field(repr=False)
    batch_fault: np.ndarray = field(repr=False)

    @property
    def approved(self) -> np.ndarray:
        """``00`` and no reversal."""
        return (self.code == CODE_INDEX["00"]) & (self.reversal == NONE)


def categorical(probs: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Index drawn by ``u`` from ``probs``; ``len(probs)`` where u falls past their sum."""
    return np.searchsorted(np.cumsum(probs), u, side="right")


def _rare_categorical(probs: np.ndarray, u: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """:func:`categorical` for rare outcomes: only rows with u below the total probability are searched."""
    out = np.full(len(u), len(probs), dtype=np.int64)
    hit = u < probs.sum()
    if rows is not None:
        hit &= rows
    out[hit] = categorical(probs, u[hit])
    return out


def _background_codes(att: Attempts, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Background response codes and their mechanisms for every attempt."""
    rates = np.array(list(BACKGROUND_DECLINES.values())) * scale  # [code, (purchase, transfer)]
    tr = att.transfer
    u = att.draws["bg"]
    which = np.where(tr, _rare_categorical(rates[:, 1], u, tr), _rare_categorical(rates[:, 0], u, ~tr))
    code = _BG_CODE_OF[which]
    mech = np.where(tr, _BG_MECH_OF[1][which], _BG_MECH_OF[0][which])
    # fraud: more likely for large amounts
    uf = att.draws["fraud"]
    maybe = np.flatnonzero(uf < FRAUD_BASE * scale * FRAUD_CAP)
    p = FRAUD_BASE * scale * np.clip((att.amount[maybe] / FRAUD_SCALE) ** FRAUD_POWER, 0.3, FRAUD_CAP)
    is_fraud = uf[maybe] < p
    fraud, p = maybe[is_fraud], p[is_fraud]
    split = np.array([w for _, w in FRAUD_CODES])
    pick = np.minimum(categorical(split / split.sum(), uf[fraud] / p), len(split) - 1)
    code[fraud] = np.array([CODE_INDEX[c] for c, _ in FRAUD_CODES], dtype=np.int8)[pick]
    mech[fraud] = MECH["card_decline"]
    return code, mech


def _network_multiplier(fixes, terminal: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """Factor on link failure rates left by the network upgrades in place."""
    mult = np.ones(len(ts), dtype=np.float32)
    for fx in fixes:
        if fx.kind == "network_upgrade":
            mult[fx.active(terminal, ts)] *= np.float32(1.0 - fx.spec.strength)
    return mult


def _effective_end(fault: FaultInstance, fixes, kind: str) -> int:
    """End of a merchant fault: its own end or the first fix of ``kind`` that covers it."""
    fixed = [fx.applied_s for fx in fixes if fx.kind == kind and (fx.terminals & fault.terminals).any()]
    return min([fault.end_s] + fixed)


def _link(att, scen, fixes, tl, quiet, scale):
    """Link failures: (failed mask, kind, from-fault mask, fault index, converted, slow)."""
    term, ts, day = att.terminal, att.ts, att.day
    hour = ((ts - tl.start_s) % DAY_S) // 3600
    rate = np.zeros(len(ts), dtype=np.float32)
    fault_of = np.full(len(ts), -1, dtype=np.int16)
    for i, f in enumerate(scen.faults):
        if f.kind != "unstable_link":
            continue
        on = np.flatnonzero(f.active(term, ts))
        rate[on] += np.float32(f.spec.error_rate) * f.intensity[day[on], hour[on]]
        fault_of[on] = i
    slow = rate > 0
    rate = np.minimum(rate, np.float32(0.5))
    mult = _network_multiplier(fixes, term, ts)
    bg_rate = np.where(quiet[term], 0.0, BACKGROUND_LINK_RATE * scale).astype(np.float32)
    u = att.draws["link"]
    from_fault = u < rate * mult
    hit = u < (rate + bg_rate) * mult
    kind = np.full(len(ts), -1, dtype=np.int8)
    for rows, probs in ((from_fault, LINK_KIND_P_FAULT), (hit & ~from_fault, LINK_KIND_P_BACKGROUND)):
        picked = categorical(probs / probs.sum(), att.draws["kind"][rows])
        kind[rows] = np.minimum(picked, len(LINK_KINDS) - 1)
    validated = fixes_active(fixes, "message_validation", term, ts)
    converted = hit & _LINK_CORRUPTED[np.maximum(kind, 0)] & validated
    failed = hit & ~converted
    return failed, kind, from_fault, fault_of, converted, slow


def _batches(att, city, scen, fixes, tl, not_uploading):
    """Upload state and fault per terminal-day (see :data:`UPLOADED` etc.)."""
    n_t, n_d = city.n_terminals, tl.days
    cell = att.terminal.astype(np.int64) * n_d + att.day
    active = np.bincount(cell, minlength=n_t * n_d).reshape(n_t, n_d) > 0
    state = np.where(active, UPLOADED, IDLE).astype(np.int8)
    fault = np.full((n_t, n_d), -1, dtype=np.int16)
    batch_s = tl.start_s + np.arange(n_d, dtype=np.int64) * DAY_S + BATCH_AT_S
    for i, f, end_s in not_uploading:
        silent = active & f.terminals[:, None] & ((batch_s >= f.start_s) & (batch_s < end_s))[None, :]
        state[silent] = NOT_UPLOADED
        fault[silent] = i
    for i, f in enumerate(scen.faults):
        if f.kind != "unstable_link":
            continue
        in_window = (batch_s >= f.start_s) & (batch_s < f.end_s)
        p = f.spec.batch_failure_rate * f.intensity[:, 23][None, :] * np.ones((n_t, 1), dtype=np.float32)
        for fx in fixes:
            if fx.kind == "network_upgrade":
                p[np.ix_(fx.terminals, batch_s >= fx.applied_s)] *= 1.0 - fx.spec.strength
        fails = (state == UPLOADED) & f.terminals[:, None] & in_window[None, :] & (att.batch_u < p)
        state[fails] = UPLOAD_FAILED
        fault[fails] = i
    return state, fault


def apply_mechanisms(
    att: Attempts,
    city: City,
    scen: Scenario,
    tl: Timeline,
    fixes: tuple[FixInstance, ...],
    *,
    scale: float = 1.0,
) -> Outcome:
    """The outcome of every attempt under ``scen``'s faults with ``fixes`` in place.

    ``scale`` multiplies every background rate (0: no noise).
    """
    term, ts, tr = att.terminal, att.ts, att.transfer
    purchase = ~tr
    n = len(ts)
    code, mech = _background_codes(att, scale)
    fault = np.full(n, -1, dtype=np.int16)
    reversal = np.zeros(n, dtype=np.int8)
    reason = np.full(n, -1, dtype=np.int8)
    u_out = att.draws["outage"]
    bank_return = np.full(n, -1, dtype=np.int16)

    for i, f in enumerate(scen.faults):
        if f.kind == "issuer_outage":
            rate = f.spec.decline_rate
            hit = purchase & f.active(term, ts) & (u_out < rate)
            code[hit] = np.where(u_out[hit] / rate < 0.6, CODE_INDEX["91"], CODE_INDEX["96"])
        elif f.kind == "bank_outage":
            rate = f.spec.decline_rate
            on = tr & (att.bank == f.bank) & f.active(term, ts)
            hit = on & (u_out < rate)
            code[hit] = np.where(u_out[hit] / rate < 0.5, CODE_INDEX["91"], CODE_INDEX["92"])
            bank_return[on & ~hit & (u_out < rate + (1 - rate) * f.spec.return_rate)] = i
        else:
            continue
        mech[hit], fault[hit] = MECH[f.kind], i

    # a configuration fault ends with a config_correction; a frozen account only with its own end
    merchant_faults = [
        (i, f, _effective_end(f, fixes, "config_correction") if f.kind == "misconfigured_merchant" else f.end_s)
        for i, f in enumerate(scen.faults)
        if f.kind in ("misconfigured_merchant", "frozen_account")
    ]
    not_uploading = [(i, f, e) for i, f, e in merchant_faults if getattr(f.spec, "mode", "") == "no_upload"]
    quiet = scen.silent_terminals(city.n_terminals)

    failed, kind, from_fault, fault_of, converted, slow = _link(att, scen, fixes, tl, quiet, scale)
    code[failed] = _LINK_CODE[kind[failed]]
    reversal[failed] = _LINK_REV[kind[failed]]
    reason[failed] = _LINK_REASON[kind[failed]]
    mech[failed] = np.where(from_fault[failed], MECH["unstable_link"], MECH["background_link"])
    fault[failed] = np.where(from_fault[failed], fault_of[failed], -1)
    link_kind = np.where(failed, kind, -1).astype(np.int8)

    approved = (code == CODE_INDEX["00"]) & (reversal == NONE)
    u_fw = att.draws["fw"]
    fw_fixed = fixes_active(fixes, "firmware_update", term, ts)
    for i, f in enumerate(scen.faults):
        if f.kind == "faulty_firmware":
            rate = f.spec.reversal_rate
            hit = approved & f.active(term, ts) & ~fw_fixed & (u_fw < rate)
            reversal[hit] = np.where(u_fw[hit] / rate < 0.6, SENT, FAILED)
            reason[hit] = REVERSAL_REASONS.index("96")
            mech[hit], fault[hit] = MECH["faulty_firmware"], i
            approved &= ~hit

    u_cancel = att.draws["cancel"]
    voided = approved & purchase & (u_cancel < VOID_RATE)
    refund = approved & purchase & ~voided & (u_cancel < VOID_RATE + REFUND_RATE)
    clearing = approved & ~voided

    batch, batch_fault = _batches(att, city, scen, fixes, tl, not_uploading)
    row_batch = batch[term, att.day]
    no_row = np.zeros(n, dtype=bool)
    for state, name in ((NOT_UPLOADED, "no_upload"), (UPLOAD_FAILED, "batch_upload_failed")):
        hit = clearing & purchase & ~no_row & (row_batch == state)
        no_row |= hit
        mech[hit], fault[hit] = MECH[name], batch_fault[term[hit], att.day[hit]]

    return_reason = np.full(n, -1, dtype=np.int8)
    for i, f, end_s in merchant_faults:
        if getattr(f.spec, "mode", "") == "no_upload":
            continue
        hit = clearing & purchase & ~no_row & f.terminals[term] & (ts >= f.start_s) & (ts < end_s)
        if f.kind == "frozen_account":
            why, name = ("account_closed" if f.spec.closed else "account_frozen"), "frozen_account"
        else:
            why, name = "invalid_account", "wrong_account"
        return_reason[hit] = RETURN_REASONS.index(why)
        mech[hit], fault[hit] = MECH[name], i

    hit = clearing & (bank_return >= 0)
    return_reason[hit] = RETURN_REASONS.index("bank_unavailable")
    mech[hit], fault[hit] = MECH["bank_outage"], bank_return[hit]

    rates = np.array([r for _, r, _ in TRANSFER_RETURNS]) * scale
    which = _rare_categorical(rates, att.draws["ret"], clearing & tr & (return_reason < 0))
    hit = which < len(rates)
    return_reason[hit] = _RETURN_REASON_OF[which[hit]]
    mech[hit] = _RETURN_MECH_OF[which[hit]]

    late = clearing & ~no_row & (return_reason < 0) & (att.draws["late"] < LATE_CREDIT_RATE * scale)
    mech[late] = MECH["late_credit"]

    return Outcome(
        code=code,
        reversal=reversal,
        reason=reason,
        mech=mech,
        fault=fault,
        link_kind=link_kind,
        converted=converted,
        slow=slow,
        voided=voided,
        refund=refund,
        no_row=no_row,
        return_reason=return_reason,
        late=late,
        batch=batch,
        batch_fault=batch_fault,
    )


__all__ = [
    "BATCH_AT_S",
    "IDLE",
    "NOT_UPLOADED",
    "UPLOADED",
    "UPLOAD_FAILED",
    "Outcome",
    "apply_mechanisms",
    "categorical",
]
