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
3. **Text**: the evidence line (the rule's template plus its :data:`PHRASES`)
   and the next step are built a column at a time (:mod:`analysis.phrasing`)
   for the incidents each rule decides, formatting only the values those
   incidents show — no Python work per incident beyond formatting values.

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

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

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
from .phrasing import (
    Frame,
    Rows,
    Texts,
    as_int,
    cases,
    concat,
    day,
    fill,
    integers,
    join,
    lookup,
    plural,
    text,
    truthy,
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
# Evidence phrases (column-wise, over the incidents one rule decides)
# --------------------------------------------------------------------------------------

_LINK_LABELS = {
    "timeout": "timeout",
    "mac_error": "MAC error",
    "retransmit": "retransmission",
    "connection_reset": "connection reset",
}


def _ph_reversal(g: Frame) -> Texts:
    silent = g["response_code"].isna().to_numpy() & truthy(g["reversal"] == "none")
    return cases(
        g,
        (silent, "no response reached the terminal and no reversal was recorded (单边账 risk)"),
        (
            truthy(g["outcome"] == "reversal_failed"),
            lambda h: _reversal(h, "never acknowledged: the card may be debited (单边账)"),
        ),
        (True, lambda h: _reversal(h, "sent and acknowledged")),
    )


def _reversal(h: Frame, fate: str) -> Texts:
    """``[no response reached the terminal; ]reversal <reason> (<meaning>) <fate>``."""
    reason = h["eff_reason"]
    meaning = lookup(reason, lambda r: REVERSAL_REASON_MEANINGS.get(r, "unknown reason"))
    head = cases(h, (h["response_code"].isna().to_numpy(), "no response reached the terminal; "))
    return concat(head, "reversal ", text(reason), " (", text(meaning), ") ", fate)


def _ph_terminal_link(g: Frame) -> Texts:
    counts = join([_link_errors(g, kind) for kind in LINK_ERROR_EVENTS], ", ")
    line = concat(
        counts, " on terminal ", text(g["terminal_id"]), " within ±", _minutes(g), " min"
    )
    return cases(g, (counts != "", line))


def _link_errors(g: Frame, kind: str) -> Texts:
    """``<n> <link error kind>[s]`` where the terminal had that kind of link error near."""
    near = f"term_{kind}_near"
    return cases(g, (truthy(g[near]), lambda h: plural(h[near], _LINK_LABELS[kind])))


def _minutes(g: Frame) -> Texts:
    return text(g["window_minutes"], "g")


def _ph_segment(g: Frame) -> Texts:
    others = g["seg_link_near"] - g["term_link_near"]
    return cases(
        g,
        (~truthy(g["has_events"]), ""),
        (truthy(g["seg_day_surge"]), _segment_surge),
        (truthy(g["seg_near_surge"]) & truthy(others >= 1), _segment_near),  # int(others) > 0
        (True, _segment_quiet),
    )


def _segment_surge(h: Frame) -> Texts:
    return concat(
        "segment ", text(h["network_segment"]), " at ", text(h["seg_day_ratio"], ".0f"),
        "× its usual link-error rate that day (", text(h["seg_day_link"]), " vs usual ",
        text(h["seg_usual"], "g"), ")",
    )


def _segment_near(h: Frame) -> Texts:
    return concat(
        plural(h["seg_link_near"], "link error"), " on segment ", text(h["network_segment"]),
        " within ±", _minutes(h), " min (", integers(h["seg_link_near"] - h["term_link_near"]),
        " on other terminals)",
    )


def _segment_quiet(h: Frame) -> Texts:
    return concat(
        "segment ", text(h["network_segment"]), ": ", plural(h["seg_day_link"], "link error"),
        " that day (usual ", text(h["seg_usual"], "g"), ", no surge)",
    )


def _ph_no_events(g: Frame) -> Texts:
    return cases(
        g, (~truthy(g["has_events"]), "no terminal_events table: link errors could not be checked")
    )


def _ph_burst(g: Frame) -> Texts:
    return cases(g, (as_int(g["burst_segments"]) >= 2, _burst))


def _burst(h: Frame) -> Texts:
    tail = cases(h, (truthy(h["burst"]), " (issuer or switch outage)"))
    return concat(
        "91/96 purchase declines on ", integers(h["burst_segments"]),
        " network segments within ±", _minutes(h), " min", tail,
    )


def _ph_reboot(g: Frame) -> Texts:
    rebooted = cases(
        g,
        (
            truthy(g["term_day_reboot"]),
            lambda h: concat(
                "terminal ", text(h["terminal_id"]), " rebooted ",
                plural(h["term_day_reboot"], "time"), " that day",
            ),
        ),
    )
    return join([rebooted, cases(g, (truthy(g["fw_outlier"]), _firmware_outlier))], "; ")


def _firmware_outlier(h: Frame) -> Texts:
    return concat(
        "firmware ", text(h["firmware"]), ": ", integers(h["fw_rebooted"]), " of ",
        integers(h["fw_terminals"]), " terminals rebooted (", text(h["fw_share"], ".0%"),
        ") vs ", text(h["fw_others_share"], ".0%"), " on other firmware",
    )


def _ph_mac_key(g: Frame) -> Texts:
    return cases(
        g,
        (
            truthy(g["mac_key"]) & ~truthy(g["near_link"]),
            lambda h: concat(
                "terminal ", text(h["terminal_id"]), " got A0/30 ", text(h["term_a0"]),
                " times with no link errors near: "
                "its MAC key may be out of step (sign the terminal in again)",
            ),
        ),
    )


def _ph_pattern(g: Frame) -> Texts:
    returns = truthy(g["m_returns"])
    return cases(
        g,
        (
            returns & ~truthy(g["m_pattern"]),
            lambda h: concat(
                text(h["m_returns"]), " of ", text(h["m_all_credits"]), " ", _pattern_head(h),
                ": no merchant-wide pattern",
            ),
        ),
        (
            returns,
            lambda h: concat(
                text(h["m_returns"]), " of ", text(h["m_credits"]), " ", _pattern_head(h), " ",
                _return_span(h),
            ),
        ),
    )


def _pattern_head(h: Frame) -> Texts:
    return concat(
        text(h["txn_type"]), " credits of merchant ", text(h["merchant_id"]),
        " returned for a wrong account or name",
    )


def _return_span(h: Frame) -> Texts:
    """``since <first>`` while the merchant's returns go on, else ``from <first> to <last>``."""
    return cases(
        h,
        (
            truthy(h["m_last_return"] >= h["m_last_cleared"]),
            lambda x: concat("since ", day(x["m_first_return"])),
        ),
        (
            True,
            lambda x: concat("from ", day(x["m_first_return"]), " to ", day(x["m_last_return"])),
        ),
    )


def _ph_clearing(g: Frame) -> Texts:
    dark = truthy(g["clearing_known"]) & truthy(g["dark_days"])
    return cases(
        g,
        (
            dark & truthy(g["dark_days"] == 1),
            lambda h: concat(
                "terminal ", text(h["terminal_id"]), " cleared none of its purchases that day"
            ),
        ),
        (
            dark,
            lambda h: concat(
                "terminal ", text(h["terminal_id"]), " cleared none of its purchases on ",
                text(h["dark_days"]), " consecutive active days (", day(h["dark_start"]), " to ",
                day(h["dark_end"]), ")",
            ),
        ),
    )


def _ph_uploads(g: Frame) -> Texts:
    return cases(g, (truthy(g["has_events"]), _uploads))


def _uploads(h: Frame) -> Texts:
    """The terminal's batch uploads around the day and its line those days."""
    uploads = cases(
        h,
        (
            truthy(h["term_upload_failed"]),
            lambda x: concat(
                "batch upload failed ", plural(x["term_upload_failed"], "time"), " on"
            ),
        ),
        (truthy(h["term_upload_ok"]), "batch uploaded OK on"),
        (truthy(h["uploads_recorded"]), "no batch upload recorded for"),
    )
    around = concat(
        uploads, " terminal ", text(h["terminal_id"]), " around ", text(h["business_day"]), " (+",
        text(h["upload_days"] - 1), " d)",
    )
    batch = cases(h, (uploads != "", around))
    never = cases(
        h,
        (
            truthy(h["never_uploaded"]),
            lambda x: concat(
                "terminal ", text(x["terminal_id"]), " has no successful batch upload in the data"
            ),
        ),
    )
    line = cases(
        h,
        (
            truthy(h["term_link_upload_days"]),
            lambda x: concat(
                plural(x["term_link_upload_days"], "link error"), " on the terminal those days"
            ),
        ),
        (
            truthy(h["seg_surge_upload_days"]),
            lambda x: concat(
                "segment ", text(x["network_segment"]),
                " far above its usual link-error rate those days",
            ),
        ),
        (True, "no link errors on the terminal those days"),
    )
    return join([batch, never, line], "; ")


def _ph_no_settlements(g: Frame) -> Texts:
    return cases(
        g, (~truthy(g["clearing_known"]), "no settlements table: clearing and crediting unknown")
    )


#: Evidence phrases by name (:attr:`Rule.phrases`). Each takes the incidents one rule
#: decides — :class:`analysis.phrasing.Rows` of the incident features with the display
#: values the templates read (as :func:`classify` builds them), or a DataFrame with the
#: same columns — and gives one phrase per incident, built a column at a time: an
#: object array of ``str``, ``""`` where the evidence has nothing to say.
PHRASES: dict[str, Callable[[Frame], Texts]] = {
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


def _display_values(
    as_of: pd.Timestamp, window_minutes: float, th: Thresholds
) -> dict[str, Callable[[Rows], pd.Series | Texts]]:
    """Formatted values the evidence and next-step templates use, by name: each computed
    from the feature columns of the incidents whose text reads it (:class:`Rows`)."""
    return {
        "business_day": lambda r: day(r["business_date"]),
        "deadline_day": lambda r: day(r["deadline"]),
        "wait_until_day": lambda r: day(r["wait_until"]),
        "cleared_day": lambda r: day(r["cleared_date"]),
        "credited_day": lambda r: day(to_business_date(r["credited_at"])),
        "as_of_day": lambda r: concat(str(as_of.date()), size=len(r)),
        "amount_str": lambda r: text(r["amount"], ",.2f"),
        "code_meaning": lambda r: lookup(
            r["response_code"], lambda c: RESPONSE_CODES.get(c, "unlisted code")
        ),
        "declined_by": lambda r: lookup(
            r["response_code"], lambda c: _DECLINED_BY.get(DECLINE_CAUSES.get(c), "the issuer")
        ),
        "bank": lambda r: r["payee_bank"]
        .astype(object)
        .where(
            r["payee_bank"].notna() & r["txn_type"].eq("transfer"), "the merchant's settlement bank"
        ),
        "segment": lambda r: r["network_segment"]
        .astype(object)
        .where(r["network_segment"].notna(), "of the terminal"),
        "clearing_state": _clearing_state,
        "window_minutes": lambda r: pd.Series(np.full(len(r), window_minutes)),
        "upload_days": lambda r: pd.Series(np.full(len(r), th.upload_days)),
    }


def _clearing_state(r: Rows) -> Texts:
    """``cleared <day>, credit pending``, ``approved <day>, not yet cleared`` or
    ``approved <day>``."""
    return cases(
        r,
        (
            r["cleared_date"].notna().to_numpy(),
            lambda h: concat("cleared ", h["cleared_day"], ", credit pending"),
        ),
        (
            truthy(r["clearing_known"]),
            lambda h: concat("approved ", h["business_day"], ", not yet cleared"),
        ),
        (True, lambda h: concat("approved ", h["business_day"])),
    )


def _causes(f: pd.DataFrame, rule_idx: np.ndarray, rules: tuple[Rule, ...]) -> np.ndarray:
    """Each incident's cause: its rule's, or for a rule without one its decline code's."""
    causes = np.array([r.cause for r in rules], dtype=object)[rule_idx]
    by_code = np.array([not r.cause for r in rules])[rule_idx]
    if by_code.any():
        codes = f["response_code"][by_code]
        decided = lookup(codes, DECLINE_CAUSES.get)
        unlisted = pd.isna(decided)
        if unlisted.any():
            raise KeyError(codes.iloc[np.flatnonzero(unlisted)[0]])
        causes[by_code] = decided
    return causes


def _evidence_and_steps(
    f: pd.DataFrame,
    display: Mapping[str, Callable[[Rows], pd.Series | Texts]],
    rule_idx: np.ndarray,
    cause_codes: np.ndarray,
    cause_names: np.ndarray,
    rules: tuple[Rule, ...],
) -> tuple[Texts, Texts]:
    """The evidence lines and next steps, built a column at a time per rule and cause."""
    evidence = np.empty(len(f), dtype=object)
    steps = np.empty(len(f), dtype=object)
    keys = pd.DataFrame({"rule": rule_idx, "cause": cause_codes})
    for (i, c), positions in keys.groupby(["rule", "cause"], sort=False).indices.items():
        rule, cause = rules[i], cause_names[c]
        reversal = _ph_reversal if "{reversal_phrase}" in rule.evidence else _no_phrase
        rows = Rows(f, positions, {**display, "reversal_phrase": reversal})
        evidence[positions] = _evidence(rows, rule)
        steps[positions] = _next_step(rows, cause, rule.next_step)
    return evidence, steps


def _no_phrase(rows: Rows) -> Texts:
    return np.full(len(rows), "", dtype=object)


#: Next-step template fields that read another value of the incidents.
_STEP_ALIASES = {"wait_until": "wait_until_day", "terminal": "terminal_id"}


def _next_step(rows: Rows, cause: str, override: str | None) -> Texts:
    """The next steps: the rule's own template or the contract's, filled from the rows."""
    steps = CAUSES[cause].next_steps
    step = fill(override or steps[0], rows, _STEP_ALIASES)
    if cause == "FRAUD_SUSPECTED" and len(steps) > 1:
        police = truthy(rows["amount"] >= FRAUD_POLICE_THRESHOLD)
        step = cases(rows, (police, concat(step, f" {steps[1]}")), (True, step))
    return step


def _evidence(rows: Rows, rule: Rule) -> Texts:
    """The evidence lines: the rule's template plus its non-empty phrases."""
    parts = [fill(rule.evidence, rows), *(PHRASES[p](rows) for p in rule.phrases)]
    return join(parts, "; ")


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
    display = _display_values(as_of, window_minutes, thresholds)
    cause_codes, cause_names = pd.factorize(_causes(f, rule_idx, rules))
    evidence, steps = _evidence_and_steps(f, display, rule_idx, cause_codes, cause_names, rules)
    out = f.assign(
        cause=_str_column(cause_names, f.index, cause_codes),
        confidence=confidence.round(3),
        evidence=_str_column(evidence, f.index),
        next_step=_str_column(steps, f.index),
        cause_zh=_str_column([CAUSES[c].zh for c in cause_names], f.index, cause_codes),
        cause_en=_str_column([CAUSES[c].en for c in cause_names], f.index, cause_codes),
        # (rule_idx -1, no rule held, names the last rule, as rules[-1] would)
        rule=_str_column([r.name for r in rules], f.index, rule_idx % max(len(rules), 1)),
    )
    out = out[list(OUTPUT_COLUMNS)].reset_index(drop=True)
    out.attrs.update(as_of=as_of, terminal_events=has_events, settlements=has_settlements)
    return out


def _str_column(
    texts: Sequence[str], index: pd.Index, codes: np.ndarray | None = None
) -> pd.Series:
    """``texts`` (or ``texts[codes]``) as a column of the default ``str`` dtype, made by Arrow."""
    values = pa.array(texts, type=pa.large_string())
    return pd.Series(values if codes is None else values.take(codes), index=index, dtype="str")


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
