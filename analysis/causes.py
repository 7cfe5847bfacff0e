"""Why each incident happened: exactly one cause of the contract's taxonomy.

:func:`classify` takes the reconciled transactions (:func:`analysis.reconcile.reconcile`)
and gives every incident — a purchase or transfer whose outcome is in
:data:`analysis.contract.INCIDENT_OUTCOMES` — one cause code of
:data:`analysis.contract.CAUSES`, a confidence (0–1), one line of evidence a
person can check, and the next step.

How it works
------------
1. **Evidence features** are the transaction-level work: one SQL step
   (:func:`analysis.evidence.incident_features_on`) joins and counts on an
   engine — link errors near a transaction on its terminal and its network
   segment, per segment-day link-error counts against the segment's usual day,
   per terminal-day reboots and batch uploads, firmware-wide reboots, bursts of
   ``91``/``96`` across segments, repeated ``A0`` responses per terminal,
   merchant-level return patterns and runs of days a terminal cleared nothing —
   and returns the incidents only. :func:`classify` runs it on a fresh
   in-memory DuckDB engine; :func:`classify_on` where the data already lives in
   an engine (DuckDB over Parquet, Spark).
2. **Rules** (:data:`RULES`) are tried in order; the first whose condition holds
   decides the cause, so every incident gets exactly one. Each rule names its
   cause, a confidence (raised or lowered by the evidence), an evidence template
   and the evidence phrases it adds. The contract's "Causes" table is the
   authority; the rules only add how much the evidence weighs.
3. Only the evidence strings and next steps are formatted row by row, for
   incidents only.

Missing optional tables narrow what can be concluded and the output says so:
without ``terminal_events`` link errors, reboots and batch uploads are unknown
(lower confidence, and a not-cleared transaction is UNKNOWN because a failed
upload cannot be told from a set-up problem); without ``settlements`` clearing
is unknown (an approved transaction past its cycle is UNKNOWN).

Examples
--------
>>> import pandas as pd
>>> from analysis.io import Dataset
>>> tz = "Asia/Shanghai"
>>> ds = Dataset(
...     merchants=pd.DataFrame({"merchant_id": ["M1"], "settlement_cycle": ["T1"]}),
...     terminals=pd.DataFrame({"terminal_id": ["K1"], "merchant_id": ["M1"],
...                             "firmware": ["1.0"], "network_segment": ["CT-PD-0001"]}),
...     transactions=pd.DataFrame({
...         "txn_id": ["A"], "terminal_id": ["K1"], "merchant_id": ["M1"],
...         "timestamp": pd.to_datetime(["2026-03-10 10:00"]).tz_localize(tz),
...         "txn_type": ["purchase"], "amount": [88.0], "response_code": ["51"],
...         "reversal": ["none"]}))
>>> row = classify(ds, as_of="2026-03-20").iloc[0]
>>> row["cause"], row["evidence"]
('INSUFFICIENT_FUNDS', 'declined 51 (insufficient funds) by the issuer')
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .contract import (
    CAUSES,
    FRAUD_POLICE_THRESHOLD,
    LINK_ERROR_EVENTS,
    OUTPUTS,
    RESPONSE_CODES,
    REVERSAL_REASON_MEANINGS,
)
from .engine import DuckDBEngine, Engine
from .engine.tables import register_dataset
from .evidence import (
    CORRUPTION_CODES,
    FEATURE_DAYS,
    WRONG_ACCOUNT_RETURNS,
    Thresholds,
    incident_feature_batches_on,
    incident_features_on,
    reconciled_for_engine,
)
from .reconcile import calendar_for, default_as_of, reconcile, to_local_time
from .workdays import WorkCalendar, to_business_date

# --------------------------------------------------------------------------------------
# Taxonomy and thresholds
# --------------------------------------------------------------------------------------

#: Decline codes whose cause the code alone decides (contract, "Causes").
DECLINE_CAUSES: dict[str, str] = {
    **dict.fromkeys(("14", "55"), "DECLINED_CARD_INFO"),
    **dict.fromkeys(("61", "65"), "DECLINED_LIMIT"),
    "51": "INSUFFICIENT_FUNDS",
    **dict.fromkeys(("54", "62", "57"), "CARD_EXPIRED_OR_RESTRICTED"),
    **dict.fromkeys(("41", "43", "59"), "FRAUD_SUSPECTED"),
    **dict.fromkeys(("13", "12", "94"), "OPERATOR_ERROR"),
    **dict.fromkeys(("03", "58", "97"), "MERCHANT_CONFIG"),
}
#: Who answered with a code that decides the cause (for the evidence line).
_DECLINED_BY = {"MERCHANT_CONFIG": "the acquirer", "OPERATOR_ERROR": "the acquirer"}
FROZEN_RETURNS = ("account_frozen", "account_closed")


def cause_table() -> pd.DataFrame:
    """The cause taxonomy for display: ``code, zh, en, meaning, next_steps``.

    Examples
    --------
    >>> cause_table().set_index("code").loc["UNKNOWN", "zh"]
    '原因不明'
    """
    return pd.DataFrame(
        [
            {
                "code": c.code,
                "zh": c.zh,
                "en": c.en,
                "meaning": c.meaning,
                "next_steps": " ".join(c.next_steps),
            }
            for c in CAUSES.values()
        ]
    )


# --------------------------------------------------------------------------------------
# Incident features (the transaction-level work: one SQL step, analysis.evidence)
# --------------------------------------------------------------------------------------


def incident_features(
    dataset,
    reconciled: pd.DataFrame,
    *,
    window_minutes: float = 10,
    thresholds: Thresholds | None = None,
) -> pd.DataFrame:
    """One row per incident with every piece of evidence the rules use.

    Runs :func:`analysis.evidence.incident_features_on` on a fresh in-memory
    DuckDB engine holding ``dataset`` and ``reconciled``.

    Parameters
    ----------
    dataset : analysis.io.Dataset
    reconciled : DataFrame
        :func:`analysis.reconcile.reconcile` of the dataset.
    window_minutes : float
        Half-width of the window around a transaction for link errors and bursts.
    thresholds : Thresholds, optional

    Returns
    -------
    DataFrame
        The incident rows of ``reconciled`` (its columns and dtypes, in its
        order) plus terminal attributes, payee bank, link-error counts,
        segment-day rates, reboots, batch uploads, bursts, merchant return
        patterns, dark runs and boolean flags.

    Examples
    --------
    >>> from analysis.io import Dataset
    >>> ds = Dataset(
    ...     merchants=pd.DataFrame({"merchant_id": ["M1"]}),
    ...     terminals=pd.DataFrame({"terminal_id": ["K1"], "merchant_id": ["M1"]}),
    ...     transactions=pd.DataFrame({
    ...         "txn_id": ["A", "B"], "terminal_id": ["K1"] * 2, "merchant_id": ["M1"] * 2,
    ...         "timestamp": pd.to_datetime(["2026-03-10 10:00", "2026-03-10 10:05"]
    ...                                     ).tz_localize("Asia/Shanghai"),
    ...         "txn_type": ["purchase"] * 2, "amount": [88.0, 9.0],
    ...         "response_code": ["A0", "30"], "reversal": ["none"] * 2}))
    >>> rec = reconcile(ds.transactions, as_of="2026-03-20")
    >>> incident_features(ds, rec)[["txn_id", "term_a0"]].values.tolist()
    [['A', 2], ['B', 2]]
    """
    with DuckDBEngine() as engine:
        register_dataset(engine, dataset, calendar_for(reconciled["business_date"]))
        engine.register_frame("reconciled", reconciled_for_engine(reconciled, dataset.transactions))
        f = incident_features_on(
            engine,
            window_minutes=window_minutes,
            thresholds=thresholds,
            has_events=dataset.terminal_events is not None,
            has_settlements=dataset.settlements is not None,
        )
    return _with_dtypes_of(f, reconciled)


def _with_dtypes_of(f: pd.DataFrame, reconciled: pd.DataFrame) -> pd.DataFrame:
    """``f`` with the dtypes (date units, string storage) of the pandas ``reconciled`` frame."""
    dtypes = {c: reconciled[c].dtype for c in reconciled.columns if c in f.columns}
    dtypes.update({c: reconciled[src].dtype for c, src in FEATURE_DAYS.items()})
    return f.astype(dtypes)


# --------------------------------------------------------------------------------------
# Evidence phrases (row by row, incidents only)
# --------------------------------------------------------------------------------------


def _day(value) -> str:
    return "" if pd.isna(value) else str(pd.Timestamp(value).date())


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


_LINK_LABELS = {
    "timeout": "timeout",
    "mac_error": "MAC error",
    "retransmit": "retransmission",
    "connection_reset": "connection reset",
}


def _ph_reversal(r: Mapping) -> str:
    reason = r["eff_reason"]
    meaning = REVERSAL_REASON_MEANINGS.get(reason, "unknown reason")
    if pd.isna(r["response_code"]) and r["reversal"] == "none":
        return "no response reached the terminal and no reversal was recorded (单边账 risk)"
    head = "no response reached the terminal; " if pd.isna(r["response_code"]) else ""
    if r["outcome"] == "reversal_failed":
        return (
            f"{head}reversal {reason} ({meaning}) never acknowledged: "
            "the card may be debited (单边账)"
        )
    return f"{head}reversal {reason} ({meaning}) sent and acknowledged"


def _ph_terminal_link(r: Mapping) -> str:
    parts = [
        _plural(int(r[f"term_{k}_near"]), _LINK_LABELS[k])
        for k in LINK_ERROR_EVENTS
        if r[f"term_{k}_near"]
    ]
    if not parts:
        return ""
    return f"{', '.join(parts)} on terminal {r['terminal_id']} within ±{r['window_minutes']:g} min"


def _ph_segment(r: Mapping) -> str:
    if not r["has_events"]:
        return ""
    seg = r["network_segment"]
    if r["seg_day_surge"]:
        return (
            f"segment {seg} at {r['seg_day_ratio']:.0f}× its usual link-error rate that day "
            f"({r['seg_day_link']} vs usual {r['seg_usual']:g})"
        )
    others = int(r["seg_link_near"] - r["term_link_near"])
    if r["seg_near_surge"] and others > 0:
        return (
            f"{_plural(int(r['seg_link_near']), 'link error')} on segment {seg} within "
            f"±{r['window_minutes']:g} min ({others} on other terminals)"
        )
    return (
        f"segment {seg}: {_plural(int(r['seg_day_link']), 'link error')} that day "
        f"(usual {r['seg_usual']:g}, no surge)"
    )


def _ph_no_events(r: Mapping) -> str:
    return "" if r["has_events"] else "no terminal_events table: link errors could not be checked"


def _ph_burst(r: Mapping) -> str:
    n = int(r["burst_segments"])
    if n < 2:
        return ""
    tail = " (issuer or switch outage)" if r["burst"] else ""
    return (
        f"91/96 purchase declines on {n} network segments within ±{r['window_minutes']:g} min{tail}"
    )


def _ph_reboot(r: Mapping) -> str:
    parts = []
    if r["term_day_reboot"]:
        parts.append(
            f"terminal {r['terminal_id']} rebooted "
            f"{_plural(int(r['term_day_reboot']), 'time')} that day"
        )
    if r["fw_outlier"]:
        parts.append(
            f"firmware {r['firmware']}: {int(r['fw_rebooted'])} of "
            f"{int(r['fw_terminals'])} terminals "
            f"rebooted ({r['fw_share']:.0%}) vs {r['fw_others_share']:.0%} on other firmware"
        )
    return "; ".join(parts)


def _ph_mac_key(r: Mapping) -> str:
    if not r["mac_key"] or r["near_link"]:
        return ""
    return (
        f"terminal {r['terminal_id']} got A0/30 {r['term_a0']} times with no link errors near: "
        "its MAC key may be out of step (sign the terminal in again)"
    )


def _ph_pattern(r: Mapping) -> str:
    if not r["m_returns"]:
        return ""
    head = (
        f"{r['txn_type']} credits of merchant {r['merchant_id']} "
        "returned for a wrong account or name"
    )
    if not r["m_pattern"]:
        return f"{r['m_returns']} of {r['m_all_credits']} {head}: no merchant-wide pattern"
    if r["m_last_return"] >= r["m_last_cleared"]:
        span = f"since {_day(r['m_first_return'])}"
    else:
        span = f"from {_day(r['m_first_return'])} to {_day(r['m_last_return'])}"
    return f"{r['m_returns']} of {r['m_credits']} {head} {span}"


def _ph_clearing(r: Mapping) -> str:
    if not r["clearing_known"] or not r["dark_days"]:
        return ""
    if r["dark_days"] == 1:
        return f"terminal {r['terminal_id']} cleared none of its purchases that day"
    return (
        f"terminal {r['terminal_id']} cleared none of its purchases on "
        f"{r['dark_days']} consecutive "
        f"active days ({_day(r['dark_start'])} to {_day(r['dark_end'])})"
    )


def _ph_uploads(r: Mapping) -> str:
    if not r["has_events"]:
        return ""
    days = f"{r['business_day']} (+{r['upload_days'] - 1} d)"
    parts = []
    if r["term_upload_failed"]:
        parts.append(
            f"batch upload failed {_plural(int(r['term_upload_failed']), 'time')} "
            f"on terminal {r['terminal_id']} around {days}"
        )
    elif r["term_upload_ok"]:
        parts.append(f"batch uploaded OK on terminal {r['terminal_id']} around {days}")
    elif r["uploads_recorded"]:
        parts.append(f"no batch upload recorded for terminal {r['terminal_id']} around {days}")
    if r["never_uploaded"]:
        parts.append(f"terminal {r['terminal_id']} has no successful batch upload in the data")
    if r["term_link_upload_days"]:
        parts.append(
            f"{_plural(int(r['term_link_upload_days']), 'link error')} on the terminal those days"
        )
    elif r["seg_surge_upload_days"]:
        parts.append(
            f"segment {r['network_segment']} far above its usual link-error rate those days"
        )
    else:
        parts.append("no link errors on the terminal those days")
    return "; ".join(parts)


def _ph_no_settlements(r: Mapping) -> str:
    return "" if r["clearing_known"] else "no settlements table: clearing and crediting unknown"


PHRASES: dict[str, Callable[[dict], str]] = {
    "reversal": _ph_reversal,
    "terminal_link": _ph_terminal_link,
    "segment": _ph_segment,
    "no_events": _ph_no_events,
    "burst": _ph_burst,
    "reboot": _ph_reboot,
    "mac_key": _ph_mac_key,
    "pattern": _ph_pattern,
    "clearing": _ph_clearing,
    "uploads": _ph_uploads,
    "no_settlements": _ph_no_settlements,
}
_LINK = ("terminal_link", "segment", "no_events")

# --------------------------------------------------------------------------------------
# Rules
# --------------------------------------------------------------------------------------

Confidence = float | Callable[[pd.DataFrame], "pd.Series | np.ndarray"]


@dataclass(frozen=True)
class Rule:
    """One way to decide a cause.

    Attributes
    ----------
    name : str
        Short id (the output's ``rule`` column), for tuning and audits.
    cause : str
        Code of :data:`analysis.contract.CAUSES`.
    when : callable
        Features → boolean Series: the incidents this rule decides.
    confidence : float or callable
        Confidence 0–1, or features → confidences.
    evidence : str
        Template of the evidence line over the feature columns (``str.format``).
    phrases : tuple of str
        Names of :data:`PHRASES` appended to the evidence where not empty.
    next_step : str, optional
        Template replacing the contract's next step for this situation.
    """

    name: str
    cause: str
    when: Callable[[pd.DataFrame], pd.Series]
    confidence: Confidence
    evidence: str
    phrases: tuple[str, ...] = ()
    next_step: str | None = None


def _declined(f: pd.DataFrame, codes=None) -> pd.Series:
    d = f["outcome"].eq("declined")
    return d & f["response_code"].isin(codes) if codes is not None else d


def _no_response(f: pd.DataFrame, reasons) -> pd.Series:
    return f["outcome"].isin(["reversed", "reversal_failed"]) & f["eff_reason"].isin(reasons)


def _returned(f: pd.DataFrame, reasons) -> pd.Series:
    return f["outcome"].eq("returned") & f["return_reason"].isin(reasons)


def _not_cleared(f: pd.DataFrame) -> pd.Series:
    return f["outcome"].eq("not_cleared") & f["clearing_known"] & f["has_events"]


def _where(mask, hi: float, lo: float) -> np.ndarray:
    return np.where(np.asarray(mask, dtype=bool), hi, lo)


_DECLINE_EVIDENCE = "declined {response_code} ({code_meaning}) by {declined_by}"
_NOT_CLEARED = "approved on {business_day} but not cleared by its deadline {deadline_day}"
_REUPLOAD = (
    "Have terminal {terminal_id} sign in again and re-upload its batch for {business_day} once "
    "the line is stable, and ask the acquirer to clear it; have the carrier check line {segment}."
)
_NOT_CLEARED_TRACE = (
    "Ask the acquirer whether the batch of terminal {terminal_id} for {business_day} arrived "
    "and have it resubmitted; the credit is past its deadline {deadline_day}."
)

RULES: tuple[Rule, ...] = (
    Rule(
        "in_cycle",
        "PROCESSING_DELAY",
        lambda f: f["outcome"].eq("in_cycle"),
        lambda f: np.where(
            ~f["clearing_known"], 0.5, _where(f["cleared_date"].notna(), 0.95, 0.85)
        ),
        "{clearing_state}; {settlement_cycle} cycle: normal processing until {wait_until_day}",
        ("no_settlements",),
    ),
    Rule(
        "decline_code",
        "",  # from DECLINE_CAUSES
        lambda f: _declined(f, tuple(DECLINE_CAUSES)),
        0.95,
        _DECLINE_EVIDENCE,
    ),
    Rule(
        "do_not_honour",
        "UNKNOWN",
        lambda f: _declined(f, ("05",)),
        0.3,
        "declined 05 (do not honour) by the issuer without a reason; the issuer's own reason "
        "for the refusal would decide it",
    ),
    Rule(
        "receiving_bank",
        "COUNTERPARTY_BANK",
        lambda f: _declined(f, ("91", "92")) & f["txn_type"].eq("transfer"),
        0.9,
        "transfer to {bank} declined {response_code} ({code_meaning})",
        ("burst",),
    ),
    Rule(
        "switch_outage",
        "SYSTEM_FAULT",
        lambda f: _declined(f, ("91", "92", "96")),
        lambda f: _where(f["burst"], 0.95, 0.8),
        "declined {response_code} ({code_meaning}) by the issuer or switch",
        ("burst",),
    ),
    Rule(
        "late_response_link",
        "NETWORK_COMMUNICATION",
        lambda f: _declined(f, ("68",)) & f["terminal_link_near"],
        lambda f: _where(f["seg_day_surge"] | f["seg_near_surge"], 0.92, 0.8),
        "declined 68 (response received too late) amid link errors on the terminal",
        _LINK,
    ),
    Rule(
        "late_response_system",
        "SYSTEM_FAULT",
        lambda f: _declined(f, ("68",)),
        lambda f: np.where(
            ~f["has_events"],
            0.5,
            np.where(f["burst"], 0.9, _where(f["seg_day_surge"] | f["seg_near_surge"], 0.6, 0.8)),
        ),
        "declined 68 (response received too late) with no link errors on terminal {terminal_id} "
        "near it: the issuer or switch answered late",
        ("burst", "segment", "no_events"),
    ),
    Rule(
        "corrupted_message",
        "NETWORK_COMMUNICATION",
        lambda f: _declined(f, CORRUPTION_CODES),
        lambda f: np.where(
            f["near_link"], 0.9, np.where(~f["has_events"], 0.6, _where(f["mac_key"], 0.5, 0.7))
        ),
        "declined {response_code} ({code_meaning}): the message was corrupted in transit",
        (*_LINK, "mac_key"),
    ),
    Rule(
        "other_code",
        "UNKNOWN",
        lambda f: _declined(f),
        0.2,
        "declined with code {response_code}, which the contract does not list; decide from the "
        "issuer's or switch's explanation of it",
    ),
    Rule(
        "no_response_link",
        "NETWORK_COMMUNICATION",
        lambda f: _no_response(f, ("98", "A0")),
        lambda f: np.where(f["near_link"], 0.92, _where(f["has_events"], 0.7, 0.65)),
        "{reversal_phrase}",
        _LINK,
    ),
    Rule(
        "terminal_fault",
        "SYSTEM_FAULT",
        lambda f: _no_response(f, ("96",)),
        lambda f: np.clip(
            0.7
            + 0.15 * (f["term_day_reboot"] > 0)
            + 0.1 * f["fw_outlier"]
            - 0.1 * ~f["has_events"],
            0,
            1,
        ),
        "{reversal_phrase}",
        ("reboot", "no_events"),
    ),
    Rule(
        "other_reversal_link",
        "NETWORK_COMMUNICATION",
        lambda f: _no_response(f, ("06",)) & f["near_link"],
        0.55,
        "{reversal_phrase}",
        _LINK,
    ),
    Rule(
        "other_reversal_reboot",
        "SYSTEM_FAULT",
        lambda f: _no_response(f, ("06",)) & (f["term_day_reboot"] > 0),
        0.55,
        "{reversal_phrase}",
        ("reboot",),
    ),
    Rule(
        "other_reversal",
        "UNKNOWN",
        lambda f: f["outcome"].isin(["reversed", "reversal_failed"]),
        0.3,
        "{reversal_phrase}; no link errors or reboots near it decide the reason",
        ("no_events",),
        "Ask the acquirer for the issuer's record of the authorization and settle any debit "
        "manually; the terminal's log would decide the reason.",
    ),
    Rule(
        "account_frozen",
        "ACCOUNT_FROZEN_OR_CLOSED",
        lambda f: _returned(f, FROZEN_RETURNS),
        0.95,
        "credit of {amount_str} returned {return_reason}",
    ),
    Rule(
        "bank_unavailable",
        "COUNTERPARTY_BANK",
        lambda f: _returned(f, ("bank_unavailable",)),
        0.85,
        "credit of {amount_str} to {bank} returned bank_unavailable",
    ),
    Rule(
        "merchant_account",
        "MERCHANT_CONFIG",
        lambda f: _returned(f, WRONG_ACCOUNT_RETURNS) & f["m_pattern"],
        0.92,
        "credit of {amount_str} returned {return_reason}",
        ("pattern",),
    ),
    Rule(
        "payee_details",
        "OPERATOR_ERROR",
        lambda f: _returned(f, WRONG_ACCOUNT_RETURNS) & f["txn_type"].eq("transfer"),
        0.8,
        "transfer credit of {amount_str} returned {return_reason}: "
        "the payee details typed were wrong",
        ("pattern",),
    ),
    Rule(
        "settlement_account",
        "MERCHANT_CONFIG",
        lambda f: _returned(f, WRONG_ACCOUNT_RETURNS),
        0.6,
        "purchase credit of {amount_str} returned {return_reason}: the settlement account on file "
        "does not take it",
        ("pattern",),
    ),
    Rule(
        "returned_other",
        "UNKNOWN",
        lambda f: f["outcome"].eq("returned"),
        0.3,
        "credit of {amount_str} returned without a known reason",
        (),
        "Ask the acquirer why the credit was returned and resend it once the account is corrected.",
    ),
    Rule(
        "late_upload",
        "NETWORK_COMMUNICATION",
        lambda f: (
            f["outcome"].eq("credited_late")
            & f["cleared_late"]
            & f["upload_failed"]
            & f["line_trouble_upload"]
        ),
        0.7,
        "credited {credited_day}, after its deadline {deadline_day}; cleared late on {cleared_day}",
        ("uploads",),
        _REUPLOAD,
    ),
    Rule(
        "credited_late",
        "SYSTEM_FAULT",
        lambda f: f["outcome"].eq("credited_late"),
        0.6,
        "credited {credited_day}, {credit_business_days} business days after {business_day}, past "
        "its deadline {deadline_day}: the bank's processing ran late",
        (),
        "No action needed for this credit: the money arrived on {credited_day}. If late credits "
        "recur, raise them with the acquirer.",
    ),
    Rule(
        "credit_overdue",
        "SYSTEM_FAULT",
        lambda f: f["outcome"].eq("credit_overdue"),
        0.7,
        "cleared {cleared_day} but still pending on {as_of_day}, past its deadline {deadline_day}: "
        "the bank's processing is stuck",
        (),
        "Contact the acquirer: the credit cleared on {cleared_day} is still pending past its "
        "deadline {deadline_day}; ask it to trace and release the credit.",
    ),
    Rule(
        "not_cleared_unknown_clearing",
        "UNKNOWN",
        lambda f: f["outcome"].eq("not_cleared") & ~f["clearing_known"],
        0.2,
        "approved on {business_day}, past its deadline {deadline_day}",
        ("no_settlements", "uploads"),
        "Supply the settlements table, or ask the acquirer whether this transaction cleared.",
    ),
    Rule(
        "not_cleared_no_events",
        "UNKNOWN",
        lambda f: f["outcome"].eq("not_cleared") & ~f["has_events"],
        0.3,
        "approved on {business_day} but not cleared by its deadline {deadline_day}; no "
        "terminal_events table: cannot tell a failed upload from a set-up problem",
        ("clearing",),
        _NOT_CLEARED_TRACE + " Supply the terminal_events table to decide the cause.",
    ),
    Rule(
        "upload_failed_link",
        "NETWORK_COMMUNICATION",
        lambda f: _not_cleared(f) & f["upload_failed"] & f["line_trouble_upload"],
        0.88,
        _NOT_CLEARED,
        ("uploads", "segment"),
        _REUPLOAD,
    ),
    Rule(
        "silent_terminal_link",
        "NETWORK_COMMUNICATION",
        lambda f: _not_cleared(f) & f["no_upload"] & f["term_trouble_upload"],
        0.6,
        _NOT_CLEARED,
        ("uploads", "segment"),
        _REUPLOAD,
    ),
    Rule(
        "never_uploads",
        "MERCHANT_CONFIG",
        lambda f: _not_cleared(f) & f["no_upload"],
        lambda f: np.where(
            f["never_clears"] | f["never_uploaded"],
            _where(f["line_trouble_upload"], 0.8, 0.92),
            0.7,
        ),
        _NOT_CLEARED + " and its batch was never uploaded",
        ("uploads", "clearing"),
    ),
    Rule(
        "upload_failed_healthy",
        "NETWORK_COMMUNICATION",
        lambda f: _not_cleared(f) & f["upload_failed"],
        0.55,
        _NOT_CLEARED,
        ("uploads", "segment"),
        _REUPLOAD,
    ),
    Rule(
        "unlogged_uploads_link",
        "NETWORK_COMMUNICATION",
        lambda f: _not_cleared(f) & ~f["uploads_recorded"] & f["line_trouble_upload"],
        0.6,
        _NOT_CLEARED + "; the events table records no batch uploads",
        ("uploads", "segment"),
        _REUPLOAD,
    ),
    Rule(
        "unlogged_uploads_dark",
        "MERCHANT_CONFIG",
        lambda f: _not_cleared(f) & ~f["uploads_recorded"] & f["never_clears"],
        0.7,
        _NOT_CLEARED + " on a healthy line; the events table records no batch uploads",
        ("clearing", "uploads"),
    ),
    Rule(
        "not_cleared_other",
        "UNKNOWN",
        lambda f: f["outcome"].eq("not_cleared"),
        0.35,
        _NOT_CLEARED + "; neither a failed upload, link errors nor a set-up problem explains it",
        ("uploads", "clearing"),
        _NOT_CLEARED_TRACE,
    ),
    Rule(
        "fallback",
        "UNKNOWN",
        lambda f: pd.Series(True, index=f.index),
        0.1,
        "outcome {outcome}: no rule decides it",
    ),
)

# --------------------------------------------------------------------------------------
# Classification
# --------------------------------------------------------------------------------------


def _assign_rules(f: pd.DataFrame, rules: tuple[Rule, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Index of the first rule that holds for each incident, and its confidence."""
    rule_idx = np.full(len(f), -1, dtype=np.int64)
    confidence = np.zeros(len(f))
    for i, rule in enumerate(rules):
        free = rule_idx < 0
        if not free.any():
            break
        hit = free & np.asarray(rule.when(f).fillna(False), dtype=bool)
        if not hit.any():
            continue
        rule_idx[hit] = i
        conf = rule.confidence(f) if callable(rule.confidence) else rule.confidence
        confidence[hit] = np.broadcast_to(np.asarray(conf, dtype=float), (len(f),))[hit]
    return rule_idx, np.clip(confidence, 0.0, 1.0)


def _display_columns(
    f: pd.DataFrame, as_of: pd.Timestamp, window_minutes: float, th: Thresholds
) -> pd.DataFrame:
    """Formatted values the evidence and next-step templates use."""
    fmt = lambda s: s.dt.strftime("%Y-%m-%d").fillna("")  # noqa: E731
    credited_day = to_business_date(f["credited_at"])
    return f.assign(
        business_day=fmt(f["business_date"]),
        deadline_day=fmt(f["deadline"]),
        wait_until_day=fmt(f["wait_until"]),
        cleared_day=fmt(f["cleared_date"]),
        credited_day=fmt(credited_day),
        as_of_day=str(as_of.date()),
        amount_str=f["amount"].map("{:,.2f}".format),
        code_meaning=f["response_code"].map(RESPONSE_CODES).fillna("unlisted code"),
        declined_by=f["response_code"].map(DECLINE_CAUSES).map(_DECLINED_BY).fillna("the issuer"),
        bank=f["payee_bank"]
        .astype(object)
        .where(
            f["payee_bank"].notna() & f["txn_type"].eq("transfer"), "the merchant's settlement bank"
        ),
        segment=f["network_segment"]
        .astype(object)
        .where(f["network_segment"].notna(), "of the terminal"),
        clearing_state=np.select(
            [f["cleared_date"].notna(), f["clearing_known"]],
            [
                "cleared " + fmt(f["cleared_date"]) + ", credit pending",
                "approved " + fmt(f["business_date"]) + ", not yet cleared",
            ],
            "approved " + fmt(f["business_date"]),
        ),
        window_minutes=window_minutes,
        upload_days=th.upload_days,
    )


class _Rows:
    """Row views over a frame whose columns are turned into lists only when a row reads them."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self._frame = frame
        self._lists: dict[str, list] = {}

    def column(self, name: str) -> list:
        if name not in self._lists:
            self._lists[name] = self._frame[name].tolist()
        return self._lists[name]

    def __iter__(self):
        return (_Row(self, i) for i in range(len(self._frame)))


class _Row(Mapping):
    """One incident's values by column name (with a few extra values set per row)."""

    __slots__ = ("_rows", "_i", "extra")

    def __init__(self, rows: _Rows, i: int) -> None:
        self._rows, self._i, self.extra = rows, i, {}

    def __getitem__(self, key: str):
        if key in self.extra:
            return self.extra[key]
        try:
            return self._rows.column(key)[self._i]
        except KeyError:
            raise KeyError(key) from None

    def __iter__(self):
        return iter(self._rows._frame.columns)

    def __len__(self) -> int:
        return len(self._rows._frame.columns)


def _next_step(row: _Row, cause: str, override: str | None) -> str:
    """The next step: the rule's own template or the contract's, filled from the row."""
    steps = CAUSES[cause].next_steps
    row.extra.update(wait_until=row["wait_until_day"], terminal=row["terminal_id"])
    text = (override or steps[0]).format_map(row)
    if cause == "FRAUD_SUSPECTED" and row["amount"] >= FRAUD_POLICE_THRESHOLD and len(steps) > 1:
        text = f"{text} {steps[1]}"
    return text


def _evidence(row: _Row, rule: Rule) -> str:
    """The evidence line: the rule's template plus its non-empty phrases."""
    parts = [rule.evidence.format_map(row)] + [PHRASES[p](row) for p in rule.phrases]
    return "; ".join(p for p in parts if p)


OUTPUT_COLUMNS = (
    *(c for c in OUTPUTS["incidents.csv"] if c != "cluster_id"),
    "cause_zh",
    "cause_en",
    "rule",
    "timestamp",
    "business_date",
    "txn_type",
    "amount",
    "response_code",
    "reversal",
    "reversal_reason",
    "return_reason",
    "network_segment",
    "payee_bank",
    "wait_until",
)


def classify(
    dataset,
    reconciled: pd.DataFrame | None = None,
    *,
    as_of=None,
    calendar: WorkCalendar | None = None,
    window_minutes: float = 10,
    thresholds: Thresholds | None = None,
    rules: tuple[Rule, ...] = RULES,
) -> pd.DataFrame:
    """One row per incident with exactly one cause, a confidence, evidence and the next step.

    Parameters
    ----------
    dataset : analysis.io.Dataset
        The typed dataset.
    reconciled : DataFrame, optional
        :func:`analysis.reconcile.reconcile` of ``dataset``; computed when omitted.
    as_of : time-like, optional
        Moment of analysis; default the reconciled frame's, else the contract's
        default (:func:`analysis.reconcile.default_as_of`).
    calendar : WorkCalendar, optional
        Used when reconciling here.
    window_minutes : float
        Half-width of the window for link errors and bursts near a transaction.
    thresholds : Thresholds, optional
        Evidence thresholds (:class:`Thresholds`).
    rules : tuple of Rule
        The ordered rules (:data:`RULES`); the first that holds decides.

    Returns
    -------
    DataFrame
        :data:`OUTPUT_COLUMNS`: ``txn_id, merchant_id, terminal_id, outcome, cause,
        confidence, evidence, next_step`` and ``cause_zh, cause_en, rule``, the
        time, business date, type, amount, codes, return reason, segment, payee
        bank and ``wait_until`` (PROCESSING_DELAY). In transaction order.

    Examples
    --------
    See the module docstring.
    """
    th = thresholds or Thresholds()
    if as_of is None:
        as_of = (
            reconciled.attrs.get("as_of") if reconciled is not None else None
        ) or default_as_of(dataset)
    as_of = to_local_time(as_of)
    if reconciled is None:
        reconciled = reconcile(
            dataset.transactions,
            dataset.settlements,
            dataset.merchants,
            as_of=as_of,
            calendar=calendar,
        )
    f = incident_features(dataset, reconciled, window_minutes=window_minutes, thresholds=th)
    return _decide(
        f,
        as_of=as_of,
        window_minutes=window_minutes,
        thresholds=th,
        rules=rules,
        has_events=dataset.terminal_events is not None,
        has_settlements=dataset.settlements is not None,
    )


def classify_on(
    engine: Engine,
    *,
    as_of,
    window_minutes: float = 10,
    thresholds: Thresholds | None = None,
    rules: tuple[Rule, ...] = RULES,
    batch_rows: int | None = 250_000,
) -> pd.DataFrame:
    """:func:`classify` for data that lives in an engine.

    Parameters
    ----------
    engine : Engine
        Holds the engine table ``reconciled`` (made by reconciliation as of
        ``as_of``) and the canonical views of the dataset
        (:func:`analysis.engine.tables.register_dataset` or
        :func:`~analysis.engine.tables.register_parquet_tables`);
        ``terminal_events`` and ``settlements`` where the dataset has them.
    as_of : time-like
        The moment the ``reconciled`` table was made for (naive means Asia/Shanghai).
    window_minutes, thresholds, rules
        As for :func:`classify`.
    batch_rows : int or None
        Incidents whose evidence is held in pandas at once (the output is the
        same whatever it is); None: all.

    Returns
    -------
    DataFrame
        As :func:`classify` (dates with the engine's units), the incidents in
        the order of ``reconciled._row`` where that column exists, else by
        time and ``txn_id``.

    Examples
    --------
    >>> from analysis.io import Dataset
    >>> from analysis.workdays import china_calendar
    >>> ds = Dataset(
    ...     merchants=pd.DataFrame({"merchant_id": ["M1"]}),
    ...     terminals=pd.DataFrame({"terminal_id": ["K1"], "merchant_id": ["M1"]}),
    ...     transactions=pd.DataFrame({
    ...         "txn_id": ["A"], "terminal_id": ["K1"], "merchant_id": ["M1"],
    ...         "timestamp": pd.to_datetime(["2026-03-10 10:00"]).tz_localize("Asia/Shanghai"),
    ...         "txn_type": ["purchase"], "amount": [88.0], "response_code": ["51"],
    ...         "reversal": ["none"]}))
    >>> rec = reconcile(ds.transactions, as_of="2026-03-20")
    >>> with DuckDBEngine() as eng:
    ...     _ = register_dataset(eng, ds, china_calendar(2026))
    ...     eng.register_frame("reconciled", reconciled_for_engine(rec, ds.transactions))
    ...     out = classify_on(eng, as_of="2026-03-20")
    >>> out["cause"].tolist()
    ['INSUFFICIENT_FUNDS']
    """
    th = thresholds or Thresholds()
    has_events, has_settlements = engine.has("terminal_events"), engine.has("settlements")
    batches = incident_feature_batches_on(
        engine,
        window_minutes=window_minutes,
        thresholds=th,
        has_events=has_events,
        has_settlements=has_settlements,
        batch_rows=batch_rows,
    )
    moment = to_local_time(as_of)
    parts = [_decide(f, as_of=moment, window_minutes=window_minutes, thresholds=th, rules=rules,
                     has_events=has_events, has_settlements=has_settlements) for f in batches]
    out = parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)
    out.attrs.update(parts[0].attrs)
    return out


def _decide(
    f: pd.DataFrame,
    *,
    as_of: pd.Timestamp,
    window_minutes: float,
    thresholds: Thresholds,
    rules: tuple[Rule, ...],
    has_events: bool,
    has_settlements: bool,
) -> pd.DataFrame:
    """Apply the rules to the incident features and format evidence and next steps."""
    rule_idx, confidence = _assign_rules(f, rules)
    f = _display_columns(f, as_of, window_minutes, thresholds)
    causes, evidence, steps = [], [], []
    for row, i in zip(_Rows(f), rule_idx, strict=True):
        rule = rules[i]
        cause = rule.cause or DECLINE_CAUSES[row["response_code"]]
        row.extra["reversal_phrase"] = (
            _ph_reversal(row) if "{reversal_phrase}" in rule.evidence else ""
        )
        causes.append(cause)
        evidence.append(_evidence(row, rule))
        steps.append(_next_step(row, cause, rule.next_step))
    f["cause"] = pd.Series(causes, index=f.index, dtype="str")
    f["confidence"] = confidence.round(3)
    f["evidence"] = pd.Series(evidence, index=f.index, dtype="str")
    f["next_step"] = pd.Series(steps, index=f.index, dtype="str")
    f["cause_zh"] = f["cause"].map({k: c.zh for k, c in CAUSES.items()}).astype("str")
    f["cause_en"] = f["cause"].map({k: c.en for k, c in CAUSES.items()}).astype("str")
    f["rule"] = pd.Series([rules[i].name for i in rule_idx], index=f.index, dtype="str")
    out = f[list(OUTPUT_COLUMNS)].reset_index(drop=True)
    out.attrs.update(as_of=as_of, terminal_events=has_events, settlements=has_settlements)
    return out


__all__ = [
    "DECLINE_CAUSES",
    "OUTPUT_COLUMNS",
    "PHRASES",
    "RULES",
    "Rule",
    "Thresholds",
    "cause_table",
    "classify",
    "classify_on",
    "incident_features",
]
