"""The data contract (``shared/CONTRACT.md``) as data.

One source for the loader (what to validate), the simulator (what to write), the
classifier (which causes exist, their labels and next steps) and the docs tests.

Column kinds
------------
``id``      string identifier, leading zeros kept, never empty when required
``text``    free text (scanned for card numbers and masked)
``code``    string restricted to ``allowed`` values
``money``   yuan, float64, > 0 unless ``min_value`` says otherwise
``int``     nullable integer (``Int64``)
``float``   float64 within [min_value, max_value]
``time``    ISO 8601; naive means Asia/Shanghai; typed as tz-aware Asia/Shanghai
``date``    ``YYYY-MM-DD``; typed as naive ``datetime64`` at midnight
``pan``     a card or account number: masked at load (first 6 + last 4 at most)

Examples
--------
>>> from analysis.contract import TABLES, CAUSES
>>> TABLES["merchants"].column("mcc").pattern
'^[0-9]{4}$'
>>> CAUSES["NETWORK_COMMUNICATION"].zh
'网络通讯问题'
"""

from __future__ import annotations

from dataclasses import dataclass, field

TIMEZONE = "Asia/Shanghai"


@dataclass(frozen=True)
class Column:
    """One column of a contract table."""

    name: str
    kind: str
    required: bool = True  # the column must be present in the file
    nullable: bool = False  # empty values are allowed
    allowed: tuple[str, ...] | None = None
    unique: bool = False
    min_value: float | None = None
    max_value: float | None = None
    min_exclusive: bool = False
    pattern: str | None = None
    default: str | None = None  # value used when empty / column absent


@dataclass(frozen=True)
class Table:
    """One contract table: its columns and whether the dataset must have it."""

    name: str
    required: bool
    columns: tuple[Column, ...]
    key: str | None = None

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def required_columns(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.required)

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"table {self.name!r} has no column {name!r}")


CONNECTIONS = ("4g", "broadband", "wifi", "dialup")
SETTLEMENT_CYCLES = ("T1", "D1", "D0")
TXN_TYPES = ("purchase", "transfer", "refund", "void")
REVERSAL_STATUSES = ("none", "sent", "failed")
REVERSAL_REASONS = ("98", "A0", "96", "06")
EVENTS = (
    "timeout",
    "mac_error",
    "retransmit",
    "connection_reset",
    "batch_upload_ok",
    "batch_upload_failed",
    "reboot",
)
LINK_ERROR_EVENTS = ("timeout", "mac_error", "retransmit", "connection_reset")
CREDIT_STATUSES = ("credited", "pending", "returned")
RETURN_REASONS = (
    "account_frozen",
    "account_closed",
    "name_mismatch",
    "invalid_account",
    "bank_unavailable",
)
COMPLAINT_KINDS = ("unsettled", "transfer_failed")
SCOPE_TYPES = ("network_segment", "merchant", "terminal_model", "firmware", "all")
INTERVENTION_KINDS = (
    "network_upgrade",
    "message_validation",
    "firmware_update",
    "config_correction",
    "other",
)

_LAT = dict(min_value=-90.0, max_value=90.0)
_LON = dict(min_value=-180.0, max_value=180.0)

TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        Table(
            "merchants",
            True,
            (
                Column("merchant_id", "id", unique=True),
                Column("name", "text"),
                Column("mcc", "id", pattern=r"^[0-9]{4}$"),
                Column("latitude", "float", **_LAT),
                Column("longitude", "float", **_LON),
                Column("district", "text", required=False, nullable=True),
                Column(
                    "settlement_cycle",
                    "code",
                    required=False,
                    nullable=True,
                    allowed=SETTLEMENT_CYCLES,
                    default="T1",
                ),
            ),
            key="merchant_id",
        ),
        Table(
            "terminals",
            True,
            (
                Column("terminal_id", "id", unique=True),
                Column("merchant_id", "id"),
                Column("model", "id"),
                Column("firmware", "id"),
                Column("connection", "code", allowed=CONNECTIONS),
                Column("network_segment", "id"),
            ),
            key="terminal_id",
        ),
        Table(
            "transactions",
            True,
            (
                Column("txn_id", "id", unique=True),
                Column("terminal_id", "id"),
                Column("merchant_id", "id"),
                Column("timestamp", "time"),
                Column("txn_type", "code", allowed=TXN_TYPES),
                Column("amount", "money", min_value=0.0, min_exclusive=True),
                Column("card_number", "pan"),
                Column("response_code", "id", nullable=True),
                Column("latency_ms", "int", nullable=True, min_value=0),
                Column("reversal", "code", allowed=REVERSAL_STATUSES),
                Column(
                    "reversal_reason",
                    "code",
                    required=False,
                    nullable=True,
                    allowed=REVERSAL_REASONS,
                ),
                Column("stan", "id", required=False, nullable=True),
                Column("rrn", "id", required=False, nullable=True),
                Column("original_txn_id", "id", required=False, nullable=True),
                Column("payee_bank", "text", required=False, nullable=True),
                Column("payee_account", "pan", required=False, nullable=True),
            ),
            key="txn_id",
        ),
        Table(
            "terminal_events",
            False,
            (
                Column("terminal_id", "id"),
                Column("timestamp", "time"),
                Column("event", "code", allowed=EVENTS),
                Column("detail", "text", required=False, nullable=True),
            ),
        ),
        Table(
            "settlements",
            False,
            (
                Column("txn_id", "id", unique=True),
                Column("cleared_date", "date"),
                Column("settled_amount", "money", min_value=0.0),
                Column("credit_status", "code", allowed=CREDIT_STATUSES),
                Column("credited_at", "time", nullable=True),
                Column(
                    "return_reason",
                    "code",
                    required=False,
                    nullable=True,
                    allowed=RETURN_REASONS,
                ),
            ),
            key="txn_id",
        ),
        Table(
            "complaints",
            False,
            (
                Column("ticket_id", "id", unique=True),
                Column("opened_at", "time"),
                Column("merchant_id", "id"),
                Column("kind", "code", allowed=COMPLAINT_KINDS),
                Column("amount", "money", min_value=0.0, min_exclusive=True),
                Column("txn_time", "time", required=False, nullable=True),
                Column("description", "text", required=False, nullable=True),
            ),
            key="ticket_id",
        ),
        Table(
            "interventions",
            False,
            (
                Column("change_id", "id", unique=True),
                Column("applied_at", "time"),
                Column("scope_type", "code", allowed=SCOPE_TYPES),
                Column("scope_value", "id"),
                Column("kind", "code", allowed=INTERVENTION_KINDS),
                Column("description", "text", required=False, nullable=True),
            ),
            key="change_id",
        ),
    )
}

REQUIRED_TABLES = tuple(name for name, t in TABLES.items() if t.required)
OPTIONAL_TABLES = tuple(name for name, t in TABLES.items() if not t.required)

#: ISO 8583 field 39 codes with their UnionPay meanings (the contract's list).
RESPONSE_CODES: dict[str, str] = {
    "00": "approved",
    "03": "invalid merchant",
    "05": "do not honour",
    "12": "invalid transaction",
    "13": "invalid amount",
    "14": "invalid card number",
    "30": "format error (message arrived malformed)",
    "41": "lost card",
    "43": "stolen card",
    "51": "insufficient funds",
    "54": "expired card",
    "55": "incorrect PIN",
    "57": "transaction not permitted to cardholder",
    "58": "transaction not permitted to terminal",
    "59": "suspected fraud",
    "61": "exceeds amount limit",
    "62": "restricted card",
    "65": "exceeds frequency limit",
    "68": "response received too late",
    "91": "issuer or switch inoperative",
    "92": "cannot route to the receiving bank",
    "94": "duplicate transmission",
    "96": "system malfunction",
    "97": "terminal not registered",
    "A0": "MAC verification failed",
}
APPROVED = "00"

REVERSAL_REASON_MEANINGS: dict[str, str] = {
    "98": "no response in time",
    "A0": "response failed its MAC check",
    "96": "terminal fault after approval",
    "06": "other",
}


@dataclass(frozen=True)
class Cause:
    """One cause of the taxonomy: the code files carry, labels and next steps.

    ``next_steps`` are templates; ``{wait_until}`` is filled with a business day,
    ``{bank}`` with the counterparty bank, ``{terminal}`` with a terminal id.
    """

    code: str
    zh: str
    en: str
    meaning: str
    next_steps: tuple[str, ...] = field(default_factory=tuple)

    def __repr__(self) -> str:
        return f"Cause({self.code}: {self.en} / {self.zh})"


CAUSES: dict[str, Cause] = {
    c.code: c
    for c in (
        Cause(
            "PROCESSING_DELAY",
            "银行处理时间未到",
            "Bank processing time not yet elapsed",
            "cleared, credit still inside its cycle (T+1 up to 3 business days)",
            (
                "Wait: the credit is inside its cycle; check the status again after {wait_until}.",
            ),
        ),
        Cause(
            "DECLINED_CARD_INFO",
            "卡信息不正确",
            "Card information incorrect",
            "declined for a wrong card number or PIN (14, 55)",
            (
                "Ask the cardholder to check the card number and PIN and pay again; no money moved.",
            ),
        ),
        Cause(
            "DECLINED_LIMIT",
            "超出限额",
            "Over a limit",
            "declined for amount or frequency over a limit (61, 65)",
            (
                "Ask the cardholder to use a smaller amount or contact the issuing bank to raise the limit; no money moved.",
            ),
        ),
        Cause(
            "INSUFFICIENT_FUNDS",
            "余额不足",
            "Insufficient funds",
            "declined for insufficient funds (51)",
            ("Ask the cardholder to pay with another card or top up; no money moved.",),
        ),
        Cause(
            "CARD_EXPIRED_OR_RESTRICTED",
            "卡片过期或状态异常",
            "Card expired or restricted",
            "expired, restricted or not-permitted card (54, 62, 57)",
            (
                "Ask the cardholder to contact the issuing bank or replace the card; no money moved.",
            ),
        ),
        Cause(
            "ACCOUNT_FROZEN_OR_CLOSED",
            "账户冻结或关闭",
            "Account frozen or closed",
            "credit returned because the receiving account is frozen or closed",
            (
                "Contact the account holder's bank to unfreeze or replace the account, update the settlement details, then ask the acquirer to resend the credit.",
            ),
        ),
        Cause(
            "MERCHANT_CONFIG",
            "商户设置问题",
            "Merchant settings",
            "wrong settlement account on file, terminal or merchant not set up (03, 58, 97), or batches never uploaded on a healthy line",
            (
                "Contact the acquirer to correct the merchant's settlement account or terminal set-up, upload the pending batch, then resend.",
            ),
        ),
        Cause(
            "NETWORK_COMMUNICATION",
            "网络通讯问题",
            "Network communication",
            "the terminal-acquirer link: no response and reversal 98, corrupted messages (A0, 30), failed uploads or reversals amid link errors",
            (
                "Check the status with the acquirer; if the card was debited, the failed reversal must be settled manually. Sign the terminal in again and have the carrier check line {segment}.",
            ),
        ),
        Cause(
            "SYSTEM_FAULT",
            "系统故障",
            "System fault",
            "issuer, switch or gateway malfunction (96, 68, 91 on a purchase) or terminal software fault, independent of the local network",
            (
                "Check the status with the acquirer and retry later; if the card was debited, ask the acquirer to reconcile the transaction.",
            ),
        ),
        Cause(
            "OPERATOR_ERROR",
            "操作错误",
            "Operator error",
            "wrong payee account or name, wrong amount keyed (13), invalid void or reversal (12), duplicate submission (94)",
            ("Correct the payee details or amount and resend.",),
        ),
        Cause(
            "COUNTERPARTY_BANK",
            "对方银行问题",
            "Counterparty bank",
            "the receiving bank of a transfer was unavailable (91, 92, returned bank_unavailable)",
            ("Contact the receiving bank ({bank}) or resend after its service is restored.",),
        ),
        Cause(
            "FRAUD_SUSPECTED",
            "疑似欺诈",
            "Suspected fraud",
            "lost or stolen card, suspected fraud (41, 43, 59)",
            (
                "Do not hand over goods; keep the card if instructed and contact the issuing bank.",
                "The amount is 3,000 yuan or more: report to the police as well.",
            ),
        ),
        Cause(
            "UNKNOWN",
            "原因不明",
            "Unknown",
            "the evidence does not decide; the output says what is missing",
            ("Ask the cardholder to contact the issuing bank; supply the missing data to decide.",),
        ),
    )
}

FRAUD_POLICE_THRESHOLD = 3000.0

#: Money outcome of a transaction as of a moment (see ``analysis.reconcile``).
#: ``incident`` says whether the outcome is an incident in the contract's sense.
OUTCOMES: dict[str, tuple[str, bool]] = {
    "credited": ("approved and credited within its cycle", False),
    "credited_late": ("approved and credited after its cycle", True),
    "in_cycle": ("approved, cleared or not yet cleared, still inside its cycle", True),
    "credit_overdue": ("cleared but still pending past its cycle", True),
    "not_cleared": ("approved but not cleared past its cycle", True),
    "returned": ("credit returned (see return reason)", True),
    "declined": ("declined by the issuer, switch or acquirer (see response code)", True),
    "reversed": ("no usable response; reversal sent and acknowledged", True),
    "reversal_failed": ("reversal needed but never acknowledged (单边账 risk)", True),
    "voided": ("purchase cancelled by a void: no money was meant to move", False),
    "cancellation": ("a void or refund request itself, completed", False),
}
INCIDENT_OUTCOMES = tuple(k for k, (_, inc) in OUTCOMES.items() if inc)

#: Output files of ``pos-incidents analyze`` and their columns.
OUTPUTS: dict[str, tuple[str, ...]] = {
    "incidents.csv": (
        "txn_id",
        "merchant_id",
        "terminal_id",
        "outcome",
        "cause",
        "confidence",
        "evidence",
        "next_step",
        "cluster_id",
    ),
    "tickets.csv": ("ticket_id", "txn_id", "cause", "next_step"),
    "clusters.csv": ("merchant_id", "cluster_id"),
    "fix_effects.csv": (
        "change_id",
        "metric",
        "before",
        "after",
        "effect",
        "ci_low",
        "ci_high",
        "p_value",
        "method",
    ),
}
SHARED_FAULT_FIELDS = (
    "fault_id",
    "cause",
    "merchant_ids",
    "start",
    "end",
    "observed",
    "expected",
    "relative_risk",
    "p_value",
    "attributes",
)
