"""The authorization log: attempts plus voids and refunds, with ids, STAN, RRN and latency.

A void cancels an approved purchase minutes later on the same terminal and card
(the purchase then never clears); a refund returns an earlier approved
purchase, days later. Rows are ordered by time; ``txn_id`` is ``T`` + 10 digits
in that order, ``stan`` a 6-digit counter per terminal, ``rrn`` 12 digits
(year digit, day of year, hour, sequence). No id has 13 or more digits.

Examples
--------
>>> from analysis.simulate.transactions import TXN_TYPE
>>> TXN_TYPE
{'purchase': 0, 'transfer': 1, 'refund': 2, 'void': 3}
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from ..contract import REVERSAL_REASONS, REVERSAL_STATUSES, TXN_TYPES
from .catalog import BANK_NAMES, CODE_INDEX, CODES
from .city import City
from .columns import DAY_S, digit_strings, large_strings, str_series, time_series, vocab_strings
from .mechanisms import Outcome
from .streams import Streams
from .timeline import Timeline
from .traffic import Attempts

TXN_TYPE = {t: i for i, t in enumerate(TXN_TYPES)}
TXN_ID_BASE = 1_000_000_000
#: Latency medians (ms) by transaction type; log-normal sigma; factor on a failing link.
LATENCY_MEDIAN_MS = np.array([420.0, 900.0, 450.0, 380.0])
LATENCY_SIGMA, SLOW_LINK_FACTOR = 0.35, 1.8
LATE_RESPONSE_MS = (30_000, 59_000)
REFUND_MAX_DAYS = 10


@dataclass(frozen=True)
class Ledger:
    """The transactions table and how attempts map onto it.

    ``position[i]`` is attempt i's row in ``table``; ``txn_ids`` the id column
    as an Arrow array (for building other tables' references).
    """

    table: pd.DataFrame
    txn_ids: pa.Array
    position: np.ndarray


def _followups(att: Attempts, out: Outcome, tl: Timeline, rng: np.random.Generator) -> dict:
    """Voids and refunds of approved purchases: source attempt, time, type and amount."""
    v = np.flatnonzero(out.voided)
    r = np.flatnonzero(out.refund)
    void_ts = att.ts[v] + 30 + rng.integers(0, 870, len(v))
    delay = rng.integers(1, REFUND_MAX_DAYS + 1, len(r))
    refund_day = (att.day[r] + delay).astype(np.int64)
    refund_ts = tl.start_s + refund_day * DAY_S + 10 * 3600 + rng.integers(0, 10 * 3600, len(r))
    full = rng.random(len(r)) < 0.7
    partial = np.maximum(0.01, np.round(att.amount[r] * rng.uniform(0.2, 0.9, len(r)), 2))
    keep = refund_ts < tl.end_s
    return {
        "src": np.concatenate([v, r[keep]]),
        "ts": np.concatenate([void_ts, refund_ts[keep]]),
        "type": np.r_[np.full(len(v), TXN_TYPE["void"]), np.full(int(keep.sum()), TXN_TYPE["refund"])],
        "amount": np.concatenate([att.amount[v], np.where(full, att.amount[r], partial)[keep]]),
    }


def _stan(terminal: np.ndarray, rng: np.random.Generator, n_terminals: int) -> np.ndarray:
    """A 6-digit system trace number counting up per terminal (rows already in time order)."""
    key = terminal.astype(np.uint16) if n_terminals <= 2**16 else terminal  # 16-bit keys sort by radix
    by_terminal = np.argsort(key, kind="stable")
    counts = np.bincount(terminal, minlength=n_terminals)
    first_row = np.cumsum(counts) - counts
    seq = np.empty(len(terminal), dtype=np.int64)
    seq[by_terminal] = np.arange(len(terminal)) - first_row[terminal[by_terminal]]
    start = rng.integers(0, 999_999, n_terminals)
    return (start[terminal] + seq) % 999_999 + 1


def _rrn(ts: np.ndarray, tl: Timeline) -> np.ndarray:
    """12-digit retrieval reference: last digit of the year, day of year, hour, 6-digit sequence."""
    dates = tl.dates
    doy = (dates - dates.astype("datetime64[Y]").astype("datetime64[D]")).astype(np.int64) + 1
    year_digit = (dates.astype("datetime64[Y]").astype(np.int64) + 1970) % 10
    head = (year_digit * 1000 + doy)[tl.day_of(ts)] * 100 + (ts % DAY_S) // 3600
    return head * 1_000_000 + np.arange(len(ts)) % 1_000_000


def time_order(ts: np.ndarray, terminal: np.ndarray, n_terminals: int) -> np.ndarray:
    """Row order by time, then terminal (one argsort on a combined key)."""
    return np.argsort(ts.astype(np.int64) * n_terminals + terminal, kind="stable")


def _latency(types, code, slow, z) -> pd.array:
    """Latency in ms where a response came: log-normal by type, slower on a failing link."""
    ms = LATENCY_MEDIAN_MS[types] * np.exp(LATENCY_SIGMA * z) * np.where(slow, SLOW_LINK_FACTOR, 1.0)
    late = code == CODE_INDEX["68"]
    lo, hi = LATE_RESPONSE_MS
    ms = np.where(late, np.clip(lo + np.abs(z) * 8000, lo, hi), ms)
    return pd.arrays.IntegerArray(np.round(ms).astype(np.int64), code < 0)


def build_transactions(att: Attempts, out: Outcome, city: City, tl: Timeline, streams: Streams) -> Ledger:
    """The contract's ``transactions`` table (see the module docstring)."""
    rng = streams("ledger")
    n = len(att)
    fu = _followups(att, out, tl, rng)
    m = len(fu["src"])
    src = np.concatenate([np.arange(n), fu["src"]])
    ts = np.concatenate([att.ts, fu["ts"]])
    terminal = att.terminal[src]
    order = time_order(ts, terminal, city.n_terminals)
    total = n + m
    position_all = np.empty(total, dtype=np.int64)
    position_all[order] = np.arange(total)

    def ordered(head: np.ndarray, tail) -> np.ndarray:
        return np.concatenate([head, np.broadcast_to(tail, (m,))])[order]

    types = ordered(np.where(att.transfer, TXN_TYPE["transfer"], TXN_TYPE["purchase"]), fu["type"])
    code = ordered(out.code, CODE_INDEX["00"])
    reversal = ordered(out.reversal, 0)
    reason = ordered(out.reason, -1)
    slow = ordered(out.slow, False)
    z = ordered(att.latency_z, rng.standard_normal(m, dtype=np.float32))
    original = ordered(np.full(n, -1), fu["src"])
    original_row = np.where(original >= 0, position_all[np.maximum(original, 0)], -1)
    ts, terminal, src = ts[order], terminal[order], src[order]

    txn_ids = digit_strings(TXN_ID_BASE + np.arange(total) + 1, 10, prefix="T")
    terminal_ids = large_strings(city.terminals["terminal_id"])
    merchant_ids = large_strings(city.merchants["merchant_id"])
    payee = att.payee[src]
    is_transfer = types == TXN_TYPE["transfer"]
    table = pd.DataFrame(
        {
            "txn_id": str_series(txn_ids),
            "terminal_id": str_series(terminal_ids.take(pa.array(terminal))),
            "merchant_id": str_series(merchant_ids.take(pa.array(att.merchant[src]))),
            "timestamp": time_series(ts),
            "txn_type": str_series(vocab_strings(TXN_TYPES, types)),
            "amount": ordered(att.amount, fu["amount"]),
            "card_number": str_series(att.cards.take(pa.array(att.card[src]))),
            "response_code": str_series(vocab_strings(CODES, code)),
            "latency_ms": _latency(types, code, slow, z),
            "reversal": str_series(vocab_strings(REVERSAL_STATUSES, reversal)),
            "reversal_reason": str_series(vocab_strings(REVERSAL_REASONS, reason)),
            "stan": str_series(digit_strings(_stan(terminal, rng, city.n_terminals), 6)),
            "rrn": str_series(digit_strings(_rrn(ts, tl), 12)),
            "original_txn_id": str_series(txn_ids.take(pa.array(original_row, mask=original_row < 0))),
            "payee_bank": str_series(vocab_strings(BANK_NAMES, np.where(is_transfer, att.bank[src], -1))),
            "payee_account": str_series(
                att.payees.take(pa.array(np.maximum(payee, 0), mask=(payee < 0) | ~is_transfer))
            ),
        }
    )
    return Ledger(table=table, txn_ids=txn_ids, position=position_all[:n])


__all__ = ["Ledger", "TXN_TYPE", "build_transactions", "time_order"]
