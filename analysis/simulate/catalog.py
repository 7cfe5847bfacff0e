"""Static facts the simulated city is drawn from.

Shop types by MCC (with their amount distribution, trading hours and name
patterns), card BINs, Chinese banks, terminal models and firmware, districts,
background response-code rates and the mechanism → cause map. Pure data: no
randomness here.

Examples
--------
>>> from analysis.simulate.catalog import MCCS, BANKS
>>> MCCS[0].mcc, MCCS[0].kinds[0]
('5411', '便利超市')
>>> BANKS[0].name
'中国工商银行'
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# -- shops ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ShopType:
    """One merchant category: how common, how busy, what it sells, when it trades.

    ``median``/``sigma`` describe a log-normal purchase amount in yuan; ``rate``
    scales the city's transactions per merchant-day; ``profile`` names a
    trading-hours profile of :data:`PROFILES`; ``transfers`` says whether the
    shop offers POS transfers (便民转账).
    """

    mcc: str
    share: float
    median: float
    sigma: float
    rate: float
    profile: str
    transfers: bool
    kinds: tuple[str, ...]


MCCS: tuple[ShopType, ...] = (
    ShopType("5411", 0.17, 38.0, 0.85, 1.6, "grocery", True, ("便利超市", "超市", "生鲜超市", "便利店")),
    ShopType("5499", 0.09, 45.0, 0.70, 0.9, "grocery", True, ("水果店", "食品店", "烘焙坊", "茶叶店", "粮油店")),
    ShopType("5812", 0.20, 85.0, 0.60, 1.0, "restaurant", False,
             ("面馆", "餐厅", "小吃店", "火锅店", "饺子馆", "本帮菜馆", "酒家")),
    ShopType("5814", 0.09, 28.0, 0.50, 1.3, "restaurant", False, ("奶茶店", "咖啡馆", "快餐店", "包子铺")),
    ShopType("5311", 0.04, 220.0, 0.90, 1.4, "grocery", True, ("百货", "百货商店")),
    ShopType("5912", 0.08, 95.0, 0.80, 0.8, "daytime", True, ("大药房", "药店", "医药连锁")),
    ShopType("7011", 0.04, 420.0, 0.50, 0.5, "hotel", False, ("快捷酒店", "宾馆", "商务酒店")),
    ShopType("5541", 0.03, 320.0, 0.35, 2.0, "fuel", False, ("加油站",)),
    ShopType("5732", 0.06, 1500.0, 0.90, 0.4, "evening", False, ("数码", "电器行", "手机店")),
    ShopType("5651", 0.07, 320.0, 0.70, 0.6, "evening", False, ("服饰", "服装店", "鞋店")),
    ShopType("7230", 0.07, 110.0, 0.60, 0.6, "evening", False, ("美发", "理发店", "美容美发")),
    ShopType("5977", 0.06, 220.0, 0.70, 0.5, "evening", False, ("美妆店", "化妆品店")),
)
SUPERMARKET_MCC = "5411"

#: Trading-hours profiles: (centre hour, width in hours, weight) bumps on an
#: opening window [open, close) in hours. Hotels trade around the clock.
PROFILES: dict[str, dict] = {
    "grocery": {"open": 7.0, "close": 23.0, "bumps": ((8.5, 1.0, 0.8), (12.0, 1.2, 0.5), (18.5, 1.6, 1.2))},
    "restaurant": {"open": 10.0, "close": 22.5, "bumps": ((12.2, 0.8, 1.3), (18.7, 1.1, 1.2))},
    "daytime": {"open": 8.0, "close": 21.5, "bumps": ((10.0, 1.5, 0.8), (16.5, 2.0, 0.8))},
    "hotel": {"open": 0.0, "close": 23.5, "bumps": ((12.0, 1.5, 0.9), (21.0, 2.0, 1.0))},
    "fuel": {"open": 6.0, "close": 23.0, "bumps": ((8.0, 1.0, 1.0), (18.0, 1.2, 1.0))},
    "evening": {"open": 10.0, "close": 22.0, "bumps": ((15.0, 2.0, 0.6), (20.0, 1.5, 1.0))},
}
PROFILE_NAMES = tuple(PROFILES)
#: Weekend (and public holiday) volume factor by profile.
WEEKEND_FACTOR = {
    "grocery": 1.2, "restaurant": 1.3, "daytime": 0.9, "hotel": 1.3, "fuel": 0.9, "evening": 1.4,
}

#: First parts of shop names (字号).
NAME_PREFIXES = (
    "好邻居", "快客", "联华", "良友", "百家", "佳乐", "诚信", "鑫源", "福满", "金泰",
    "华联", "惠民", "顺发", "万家", "乐购", "如意", "兴隆", "安康", "同仁", "老街",
    "阿婆", "小杨", "老王", "张记", "李记", "和平", "东方", "新概念", "美佳", "永辉",
    "天天", "欣欣", "明珠", "锦绣", "宏达", "瑞丰", "聚福", "味之源", "江南", "沪上",
)
#: The supermarket at the centre of the reference case.
ANCHOR_NAME = "好邻居便利超市"

# -- places ---------------------------------------------------------------------------


@dataclass(frozen=True)
class District:
    """An administrative district: its centre (WGS84), exchange code and neighbourhoods."""

    name: str
    code: str
    latitude: float
    longitude: float
    neighbourhoods: tuple[str, ...]


DISTRICTS: dict[str, District] = {
    d.name: d
    for d in (
        District(
            "浦东新区", "PD", 31.2213, 121.5440,
            ("陆家嘴", "张江", "金桥", "花木", "洋泾", "塘桥", "潍坊", "北蔡", "三林", "川沙",
             "高行", "周家渡", "联洋", "源深", "上钢", "东明", "康桥", "唐镇"),
        ),
        District(
            "徐汇区", "XH", 31.1885, 121.4365,
            ("徐家汇", "田林", "漕河泾", "康健", "虹梅", "龙华", "斜土", "枫林", "长桥", "华泾"),
        ),
        District(
            "静安区", "JA", 31.2290, 121.4480,
            ("南京西路", "静安寺", "江宁", "曹家渡", "大宁", "彭浦", "临汾", "芷江西", "共和新", "天目西"),
        ),
    )
}

# -- network --------------------------------------------------------------------------

#: Carriers: (code, weight, connection kinds with weights).
CARRIERS: tuple[tuple[str, float, tuple[tuple[str, float], ...]], ...] = (
    ("CT", 0.45, (("broadband", 0.6), ("wifi", 0.3), ("dialup", 0.1))),
    ("CU", 0.30, (("broadband", 0.6), ("wifi", 0.35), ("dialup", 0.05))),
    ("CM", 0.25, (("4g", 1.0),)),
)

#: Terminal models with their firmware versions (weights within the model).
MODELS: tuple[tuple[str, float, tuple[tuple[str, float], ...]], ...] = (
    ("PAX-A920", 0.35, (("A920-2.1.07", 0.3), ("A920-2.1.09", 0.5), ("A920-2.2.01", 0.2))),
    ("LANDI-A8", 0.25, (("A8-3.4.2", 0.6), ("A8-3.5.0", 0.4))),
    ("NEWLAND-N910", 0.25, (("N910-1.8.6", 0.5), ("N910-1.9.1", 0.5))),
    ("VERIFONE-X990", 0.15, (("X990-5.0.3", 0.7), ("X990-5.1.0", 0.3))),
)
FIRMWARES: tuple[str, ...] = tuple(fw for _, _, fws in MODELS for fw, _ in fws)
MODEL_NAMES: tuple[str, ...] = tuple(m for m, _, _ in MODELS)

# -- cards and banks ------------------------------------------------------------------

#: Card BINs: (bin, length, weight). 62 UnionPay (19-digit debit, 16-digit
#: credit), 4 Visa, 5 Mastercard.
CARD_BINS: tuple[tuple[str, int, float], ...] = (
    ("622202", 19, 0.14), ("621700", 19, 0.12), ("622848", 19, 0.11), ("621661", 19, 0.07),
    ("622260", 19, 0.05), ("621799", 19, 0.05), ("622908", 18, 0.03), ("621483", 16, 0.05),
    ("625911", 16, 0.06), ("628288", 16, 0.04), ("622588", 16, 0.04), ("621226", 19, 0.02),
    ("427020", 16, 0.05), ("436742", 16, 0.03), ("404738", 16, 0.03),
    ("518710", 16, 0.04), ("524094", 16, 0.03), ("552599", 16, 0.02), ("622150", 17, 0.02),
)


@dataclass(frozen=True)
class Bank:
    """A receiving bank for transfers: name, share of transfers, account BINs (bin, length)."""

    name: str
    share: float
    bins: tuple[tuple[str, int], ...]


BANKS: tuple[Bank, ...] = (
    Bank("中国工商银行", 0.20, (("622202", 19), ("621226", 19))),
    Bank("中国建设银行", 0.17, (("621700", 19), ("436742", 19))),
    Bank("中国农业银行", 0.14, (("622848", 19), ("622845", 19))),
    Bank("中国银行", 0.11, (("621661", 19), ("621785", 19))),
    Bank("交通银行", 0.07, (("622260", 19),)),
    Bank("招商银行", 0.08, (("621483", 16), ("622588", 16))),
    Bank("中国邮政储蓄银行", 0.06, (("621799", 19),)),
    Bank("上海浦东发展银行", 0.05, (("622521", 16),)),
    Bank("兴业银行", 0.04, (("622908", 18),)),
    Bank("中信银行", 0.03, (("621771", 16),)),
    Bank("上海银行", 0.03, (("622892", 16),)),
    Bank("上海农商银行", 0.02, (("623066", 19),)),
)
BANK_NAMES: tuple[str, ...] = tuple(b.name for b in BANKS)

#: Transfer amounts: log-normal median and sigma (yuan), capped.
TRANSFER_MEDIAN, TRANSFER_SIGMA, TRANSFER_MAX = 1500.0, 1.1, 50_000.0

# -- response codes -------------------------------------------------------------------

#: Response-code vocabulary; a row's code is an index into it (-1 = no response).
CODES: tuple[str, ...] = (
    "00", "03", "05", "12", "13", "14", "30", "41", "43", "51", "54", "55", "57", "58",
    "59", "61", "62", "65", "68", "91", "92", "94", "96", "97", "A0",
)
CODE_INDEX: dict[str, int] = {c: i for i, c in enumerate(CODES)}

#: Background decline rates per attempt: code -> (purchase, transfer). Fraud
#: codes (41, 43, 59) are drawn separately with an amount-dependent rate.
BACKGROUND_DECLINES: dict[str, tuple[float, float]] = {
    "51": (0.012, 0.020), "55": (0.006, 0.008), "14": (0.0015, 0.003),
    "61": (0.0025, 0.006), "65": (0.001, 0.002),
    "54": (0.0015, 0.001), "62": (0.0005, 0.0005), "57": (0.001, 0.0015),
    "05": (0.003, 0.003),
    "13": (0.0005, 0.0008), "12": (0.0003, 0.0003), "94": (0.0005, 0.0006),
    "03": (0.00005, 0.00005), "58": (0.00005, 0.00005), "97": (0.00005, 0.00005),
    "96": (0.0003, 0.0002), "91": (0.0003, 0.0006), "92": (0.0, 0.0004), "68": (0.0002, 0.0001),
}
#: Fraud declines: base rate, amount scale (yuan), exponent, cap on the factor; split of codes.
FRAUD_BASE, FRAUD_SCALE, FRAUD_POWER, FRAUD_CAP = 0.0005, 300.0, 0.9, 20.0
FRAUD_CODES: tuple[tuple[str, float], ...] = (("41", 0.3), ("43", 0.15), ("59", 0.55))

# -- causes and mechanisms ------------------------------------------------------------

#: Cause of a decline by response code and transaction type (purchase, transfer).
CODE_CAUSES: dict[str, tuple[str, str]] = {
    "14": ("DECLINED_CARD_INFO",) * 2, "55": ("DECLINED_CARD_INFO",) * 2,
    "61": ("DECLINED_LIMIT",) * 2, "65": ("DECLINED_LIMIT",) * 2,
    "51": ("INSUFFICIENT_FUNDS",) * 2,
    "54": ("CARD_EXPIRED_OR_RESTRICTED",) * 2, "62": ("CARD_EXPIRED_OR_RESTRICTED",) * 2,
    "57": ("CARD_EXPIRED_OR_RESTRICTED",) * 2,
    "41": ("FRAUD_SUSPECTED",) * 2, "43": ("FRAUD_SUSPECTED",) * 2, "59": ("FRAUD_SUSPECTED",) * 2,
    "05": ("UNKNOWN",) * 2,
    "13": ("OPERATOR_ERROR",) * 2, "12": ("OPERATOR_ERROR",) * 2, "94": ("OPERATOR_ERROR",) * 2,
    "03": ("MERCHANT_CONFIG",) * 2, "58": ("MERCHANT_CONFIG",) * 2, "97": ("MERCHANT_CONFIG",) * 2,
    "96": ("SYSTEM_FAULT",) * 2, "68": ("SYSTEM_FAULT",) * 2,
    "91": ("SYSTEM_FAULT", "COUNTERPARTY_BANK"), "92": ("SYSTEM_FAULT", "COUNTERPARTY_BANK"),
}
#: Background mechanism label by cause (what a code drawn from the background means).
BACKGROUND_MECHANISMS: dict[str, str] = {
    "SYSTEM_FAULT": "sporadic_system",
    "COUNTERPARTY_BANK": "sporadic_counterparty",
    "MERCHANT_CONFIG": "merchant_not_set_up",
    "OPERATOR_ERROR": "operator_error",
    "UNKNOWN": "do_not_honour",
}

#: Every mechanism the simulator can record, with its cause (None: decided by the code).
MECHANISMS: dict[str, str | None] = {
    "normal": None,
    "card_decline": None,
    "do_not_honour": "UNKNOWN",
    "operator_error": "OPERATOR_ERROR",
    "merchant_not_set_up": "MERCHANT_CONFIG",
    "sporadic_system": "SYSTEM_FAULT",
    "sporadic_counterparty": "COUNTERPARTY_BANK",
    "issuer_outage": "SYSTEM_FAULT",
    "faulty_firmware": "SYSTEM_FAULT",
    "late_credit": "SYSTEM_FAULT",
    "unstable_link": "NETWORK_COMMUNICATION",
    "batch_upload_failed": "NETWORK_COMMUNICATION",
    "background_link": "NETWORK_COMMUNICATION",
    "bank_outage": "COUNTERPARTY_BANK",
    "wrong_account": "MERCHANT_CONFIG",
    "no_upload": "MERCHANT_CONFIG",
    "frozen_account": "ACCOUNT_FROZEN_OR_CLOSED",
    "sporadic_frozen": "ACCOUNT_FROZEN_OR_CLOSED",
    "payee_details_wrong": "OPERATOR_ERROR",
}
MECHANISM_NAMES: tuple[str, ...] = tuple(MECHANISMS)
MECH: dict[str, int] = {m: i for i, m in enumerate(MECHANISM_NAMES)}

#: Sporadic returns of transfer credits: reason -> (rate, mechanism).
TRANSFER_RETURNS: tuple[tuple[str, float, str], ...] = (
    ("invalid_account", 0.0015, "payee_details_wrong"),
    ("name_mismatch", 0.0010, "payee_details_wrong"),
    ("account_frozen", 0.0003, "sporadic_frozen"),
    ("account_closed", 0.0002, "sporadic_frozen"),
    ("bank_unavailable", 0.0003, "sporadic_counterparty"),
)
#: Share of approved credits that arrive after the deadline with no other evidence.
LATE_CREDIT_RATE = 0.0015

# -- the link ---------------------------------------------------------------------------

#: Kinds of link failure; the row's response code and reversal for each.
#: (name, response code or None for no response, reversal, reversal reason, corrupted, event)
LINK_KINDS: tuple[tuple[str, str | None, str, str | None, bool, str | None], ...] = (
    ("no_response_reversed", None, "sent", "98", False, "timeout"),
    ("no_response_reversal_failed", None, "failed", "98", False, "timeout"),
    ("mac_fail_reversed", "00", "sent", "A0", True, "mac_error"),
    ("mac_fail_reversal_failed", "00", "failed", "A0", True, "mac_error"),
    ("rc_a0", "A0", "none", None, True, "mac_error"),
    ("rc_30", "30", "none", None, True, None),
    ("rc_68", "68", "none", None, False, "timeout"),
)
#: Probability of each link kind on a faulty segment and in the background.
LINK_KIND_P_FAULT = np.array([0.30, 0.14, 0.12, 0.05, 0.12, 0.09, 0.18])
LINK_KIND_P_BACKGROUND = np.array([0.62, 0.22, 0.05, 0.02, 0.05, 0.04, 0.0])
#: Background link failures per attempt (sporadic, with a couple of timeouts nearby).
BACKGROUND_LINK_RATE = 0.0015
#: Link-noise events on a faulty segment: kinds and shares.
LINK_NOISE_EVENTS: tuple[tuple[str, float], ...] = (
    ("timeout", 0.4), ("connection_reset", 0.25), ("mac_error", 0.2), ("retransmit", 0.15),
)
#: Background communication noise per terminal-day (rare timeouts, reboots).
BACKGROUND_TIMEOUTS_PER_DAY = 0.01
BACKGROUND_REBOOTS_PER_DAY = 0.003

# -- the rest of the day ----------------------------------------------------------------

VOID_RATE = 0.008
REFUND_RATE = 0.005
#: Share of approved credits arriving 0, 1, 2 business days after the due date.
CREDIT_DELAY_P = np.array([0.9, 0.08, 0.02])
SETTLEMENT_CYCLE_P = (("T1", 0.85), ("D1", 0.10), ("D0", 0.05))
CYCLES: tuple[str, ...] = ("T1", "D1", "D0")
