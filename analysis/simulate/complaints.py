"""Complaint tickets: merchants (and their customers) reporting money that did not arrive.

A share of incidents becomes a ticket — more often when the money is missing
(reversal failed, not cleared, returned) than for a plain decline, more often
for large amounts, and much more often at merchants hit again and again by a
shared fault (the case supermarket most). The reporter states the amount
(usually exact, sometimes rounded to the yuan or to 10 yuan) and an approximate
time (± up to 20 minutes, sometimes none). Descriptions are Chinese free text
naming at most the last four digits of a card or account. A few tickets match
no transaction at all. No ticket is opened after the simulation end.

Examples
--------
>>> import pandas as pd
>>> fill("转账{amount}元失败，尾号{last4}", {"amount": pd.Series(["100"]), "last4": pd.Series(["1234"])}).tolist()
['转账100元失败，尾号1234']
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pyarrow as pa

from ..contract import COMPLAINT_KINDS
from .catalog import BANK_NAMES, MCCS
from .city import City
from .columns import DAY_S, digit_strings, str_series, time_series, to_seconds, vocab_strings
from .scenario import Scenario
from .settlement import O, Money
from .specs import CityConfig
from .streams import Streams
from .timeline import Timeline
from .traffic import Attempts
from .transactions import Ledger
from .truth import CAUSE_CODES

#: Ticket probability relative to ``complaint_share`` by outcome.
OUTCOME_WEIGHT = {
    "reversal_failed": 1.0, "not_cleared": 0.9, "credit_overdue": 0.9, "returned": 0.9,
    "credited_late": 0.5, "reversed": 0.25, "in_cycle": 0.08, "declined": 0.03,
}
#: Factor on the ticket probability at merchants on a faulty segment, and at the anchor on top.
FAULT_SEGMENT_BOOST, ANCHOR_BOOST = 3.0, 2.0
MAX_P = 0.95
#: A merchant raises at most this many tickets a day (one call covers the rest).
MAX_TICKETS_PER_MERCHANT_DAY = 2

#: Description templates by (kind, situation); {amount}, {last4}, {date}, {bank} are filled in.
TEMPLATES = {
    ("unsettled", "missing"): (
        "顾客刷卡成功但款项未到账，卡号尾号{last4}",
        "{date}刷卡{amount}元，至今未收到结算款",
        "商户反映{date}的一笔{amount}元刷卡交易未到账",
    ),
    ("unsettled", "returned"): ("结算款被退回，金额{amount}元，请核实结算账户", "{date}的刷卡款{amount}元被银行退回"),
    ("unsettled", "no_answer"): (
        "收银机显示交易超时，顾客称已扣款，商户未收到钱，卡号尾号{last4}",
        "刷卡时POS机无响应，顾客卡被扣{amount}元，商户未到账",
    ),
    ("unsettled", "declined"): ("顾客刷卡被拒，金额{amount}元，卡号尾号{last4}", "POS机提示交易失败，顾客无法付款，金额{amount}元"),
    ("unsettled", "waiting"): ("{date}的刷卡款还没到账，金额{amount}元", "昨天的营业款未到账，请查询"),
    ("transfer_failed", "missing"): ("转账{amount}元显示成功，但收款方未收到，收款账号尾号{last4}", "{date}转账至{bank}，对方一直未入账"),
    ("transfer_failed", "returned"): ("转账被退回，收款账号尾号{last4}", "转账{amount}元被{bank}退回"),
    ("transfer_failed", "no_answer"): ("转账时POS机无响应，客户称已扣款{amount}元", "转账超时无结果，收款账号尾号{last4}"),
    ("transfer_failed", "declined"): ("转账{amount}元失败，收款账号尾号{last4}", "客户转账被拒，对方银行{bank}"),
    ("transfer_failed", "waiting"): ("转账{amount}元处理中，对方尚未收到",),
    ("unsettled", "orphan"): ("顾客称在本店刷卡{amount}元未到账", "商户称有一笔款项未到账，金额{amount}元"),
    ("transfer_failed", "orphan"): ("客户称转账{amount}元失败，对方未收到",),
}
SITUATION = {
    "reversal_failed": "no_answer", "reversed": "no_answer", "declined": "declined", "returned": "returned",
    "not_cleared": "missing", "credit_overdue": "missing", "credited_late": "missing", "in_cycle": "waiting",
}
_SITUATION_OF = np.array([SITUATION.get(o, "") for o in O], dtype=object)
_FIELD = re.compile(r"\{(\w+)\}")


def fill(template: str, fields: dict[str, pd.Series]) -> pd.Series:
    """Fill ``{name}`` placeholders of one template from aligned string Series."""
    parts = _FIELD.split(template)
    n = len(next(iter(fields.values())))
    out = pd.Series([""] * n, dtype=object)
    for i, part in enumerate(parts):
        out = out + (fields[part].astype(object).to_numpy() if i % 2 else part)
    return out


def _money_text(amount: np.ndarray) -> pd.Series:
    """Amounts as people write them: ``120`` for whole yuan, ``23.50`` otherwise."""
    whole = np.round(amount) == amount
    text = np.where(whole, np.char.mod("%d", np.round(amount).astype(np.int64)), np.char.mod("%.2f", amount))
    return pd.Series(text)


def _date_text(local_s: np.ndarray) -> pd.Series:
    """``3月16日`` for each time."""
    days = (local_s // DAY_S).astype("datetime64[D]")
    month = days.astype("datetime64[M]")
    m = (month.astype(np.int64) % 12 + 1).astype(str)
    d = ((days - month.astype("datetime64[D]")).astype(np.int64) + 1).astype(str)
    return pd.Series(np.char.add(np.char.add(m, "月"), np.char.add(d, "日")))


def _describe(kind: np.ndarray, situation: np.ndarray, fields: dict[str, pd.Series], rng) -> np.ndarray:
    """One description per ticket, from a template of its (kind, situation)."""
    out = np.empty(len(kind), dtype=object)
    pick = rng.random(len(kind))
    for (k, sit), templates in TEMPLATES.items():
        sel = np.flatnonzero((kind == k) & (situation == sit))
        if not len(sel):
            continue
        which = (pick[sel] * len(templates)).astype(np.int64)
        sub = {name: s.iloc[sel].reset_index(drop=True) for name, s in fields.items()}
        for t, template in enumerate(templates):
            mine = which == t
            if mine.any():
                mine_fields = {n: s[mine].reset_index(drop=True) for n, s in sub.items()}
                out[sel[mine]] = fill(template, mine_fields).to_numpy()
    return out


def _first_per_group(group: np.ndarray, u: np.ndarray, k: int) -> np.ndarray:
    """True for at most ``k`` members of each group, chosen at random by ``u``."""
    order = np.lexsort((u, group))
    g = group[order]
    start = np.maximum.accumulate(np.where(np.r_[True, g[1:] != g[:-1]], np.arange(len(g)), 0))
    keep = np.empty(len(g), dtype=bool)
    keep[order] = (np.arange(len(g)) - start) < k
    return keep


def _stated_amount(amount: np.ndarray, rng) -> np.ndarray:
    u = rng.random(len(amount))
    yuan = np.maximum(1.0, np.round(amount))
    tens = np.maximum(10.0, np.round(amount, -1))
    return np.where(u < 0.7, amount, np.where(u < 0.9, yuan, tens))


def _last4(values: pd.Series) -> np.ndarray:
    """Last four characters of each number (empty where missing)."""
    return values.str.slice(-4).astype(object).fillna("").to_numpy()


def _ticketed(config, att: Attempts, money: Money, cause, city: City, scen: Scenario, tl: Timeline, rng):
    """Which incidents become tickets, and when they are opened: (attempt rows, opened_at, outcome)."""
    weight = np.zeros(len(O))
    for name, w in OUTCOME_WEIGHT.items():
        weight[O[name]] = w
    boost = np.ones(city.n_merchants)
    for f in scen.of_kind("unstable_link"):
        boost[np.unique(city.t_merchant[f.terminals])] = FAULT_SEGMENT_BOOST
    boost[city.anchor] *= ANCHOR_BOOST

    m = att.merchant
    p = (
        config.complaint_share
        * weight[money.outcome]
        * np.where(att.transfer & (money.outcome == O["declined"]), 2.5, 1.0)
        * np.clip((att.amount / 200.0) ** 0.3, 0.5, 3.0)
        * city.m_propensity[m]
        * boost[m]
    )
    rows = np.flatnonzero((cause >= 0) & (att.draws["complain"] < np.minimum(p, MAX_P)))

    # when: soon after a failed attempt; once the credit is due for missing money
    outcome = money.outcome[rows]
    immediate = np.isin(outcome, [O["declined"], O["reversed"], O["reversal_failed"]])
    soon = att.ts[rows] + (3600 * np.exp(np.log(3.0) + rng.standard_normal(len(rows)))).astype(np.int64)
    due_s = to_seconds(money.due[rows]) + 9 * 3600 + (rng.exponential(DAY_S, len(rows))).astype(np.int64)
    opened = np.where(immediate, soon, np.maximum(due_s, att.ts[rows] + 3600))
    merchant_day = att.merchant[rows].astype(np.int64) * tl.days + tl.day_of(opened)
    first = _first_per_group(merchant_day, rng.random(len(rows)), MAX_TICKETS_PER_MERCHANT_DAY)
    keep = (opened < tl.end_s) & first
    return rows[keep], opened[keep], outcome[keep]


def _orphans(config, n_matched: int, city: City, tl: Timeline, rng) -> dict:
    """Tickets that match no transaction: merchant, opened_at, amount, transfer or not, stated time."""
    share = config.orphan_ticket_share
    n = int(round(share * n_matched / max(1e-9, 1 - share)))
    merchant = rng.choice(city.n_merchants, n, p=city.m_propensity / city.m_propensity.sum())
    opened = tl.start_s + DAY_S + rng.integers(0, max(1, tl.end_s - tl.start_s - DAY_S), n)
    median = np.array([s.median for s in MCCS])[city.m_shop[merchant]]
    amount = np.round(median * rng.lognormal(0, 0.6, n), 2)
    transfer = (rng.random(n) < 0.15) & (city.m_transfer_p[merchant] > 0)
    txn_s = opened - rng.integers(3600, 3 * DAY_S, n)
    return {"merchant": merchant, "opened": opened, "amount": amount, "transfer": transfer, "txn_s": txn_s}


def build_complaints(
    config: CityConfig,
    att: Attempts,
    money: Money,
    cause: np.ndarray,
    ledger: Ledger,
    city: City,
    scen: Scenario,
    tl: Timeline,
    streams: Streams,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ``complaints`` table and the truth ``tickets`` table (``ticket_id, txn_id, cause``)."""
    rng = streams("complaints")
    rows, opened, outcome = _ticketed(config, att, money, cause, city, scen, tl, rng)
    orphan = _orphans(config, len(rows), city, tl, rng)
    n_orphans = len(orphan["merchant"])

    n = len(rows) + n_orphans
    is_orphan = np.r_[np.zeros(len(rows), bool), np.ones(n_orphans, bool)]
    transfer = np.r_[att.transfer[rows], orphan["transfer"]]
    kind = np.asarray(COMPLAINT_KINDS, dtype=object)[transfer.astype(np.int64)]
    amount = np.r_[att.amount[rows], orphan["amount"]]
    txn_s = np.r_[att.ts[rows], orphan["txn_s"]]
    situation = np.r_[_SITUATION_OF[outcome], np.full(n_orphans, "orphan", dtype=object)]
    stated = _stated_amount(amount, rng)
    pos = ledger.position[rows]
    card_last4 = _last4(ledger.table["card_number"].iloc[pos])
    payee_last4 = _last4(ledger.table["payee_account"].iloc[pos])
    last4 = np.r_[np.where(att.transfer[rows], payee_last4, card_last4), np.full(n_orphans, "")]
    bank = np.asarray(BANK_NAMES + ("对方银行",), dtype=object)[np.r_[att.bank[rows], np.full(n_orphans, -1)]]
    fields = {
        "amount": _money_text(stated),
        "last4": pd.Series(last4, dtype=object),
        "date": _date_text(txn_s),
        "bank": pd.Series(bank),
    }
    description = _describe(kind, situation, fields, rng)

    approx = np.minimum(txn_s + rng.integers(-1200, 1201, n), tl.end_s - 1)
    no_time = rng.random(n) < 0.15
    opened_all = np.r_[opened, orphan["opened"]]
    order = np.lexsort((np.r_[pos, np.full(n_orphans, -1)], opened_all))
    ticket_ids = digit_strings(np.arange(1, n + 1), 8, prefix="TK")
    merchant_ids = city.merchants["merchant_id"].to_numpy()
    merchant = np.r_[att.merchant[rows], orphan["merchant"]][order]
    complaints = pd.DataFrame(
        {
            "ticket_id": str_series(ticket_ids),
            "opened_at": time_series(opened_all[order]),
            "merchant_id": str_series(merchant_ids[merchant]),
            "kind": str_series(kind[order]),
            "amount": stated[order],
            "txn_time": time_series(approx[order], missing=no_time[order]),
            "description": str_series(description[order]),
        }
    )
    txn_row = np.r_[pos, np.zeros(n_orphans, np.int64)][order]
    txn = ledger.txn_ids.take(pa.array(txn_row, mask=is_orphan[order]))
    cause_all = np.r_[cause[rows], np.full(n_orphans, -1)][order]
    tickets = pd.DataFrame(
        {
            "ticket_id": str_series(ticket_ids),
            "txn_id": str_series(txn),
            "cause": str_series(vocab_strings(CAUSE_CODES, cause_all)),
        }
    )
    return complaints, tickets


__all__ = ["TEMPLATES", "build_complaints", "fill"]
