"""Purchase and transfer attempts: when, where, how much, whose card.

Counts per merchant-day are Poisson around the merchant's rate (weekends and
holidays shift it by shop type); times of day follow the shop type's trading
profile (meal peaks, commuter peaks); amounts are log-normal by MCC; cards come
from a pool where neighbours' regulars repeat; transfers go to Chinese banks'
accounts. Every uniform the fault mechanisms will need is drawn here, once per
attempt, so that a run with and without a fix sees the same numbers (common
random numbers).

Examples
--------
>>> from analysis.simulate.specs import CityConfig
>>> from analysis.simulate.streams import Streams
>>> from analysis.simulate.city import build_city
>>> from analysis.simulate.timeline import build_timeline
>>> cfg = CityConfig(seed=2, n_merchants=20, n_neighbourhoods=2, days=3, case_segment_size=5)
>>> s = Streams(2)
>>> a = draw_attempts(build_city(cfg, s), build_timeline(cfg), s, full_pans=True)
>>> len(a) > 500, bool((a.amount > 0).all()), bool((a.ts[1:] >= a.ts[:-1]).all())
(True, True, True)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ..privacy import mask_pan_series
from .cards import luhn_numbers
from .catalog import (
    BANKS,
    CARD_BINS,
    MCCS,
    PROFILE_NAMES,
    PROFILES,
    TRANSFER_MAX,
    TRANSFER_MEDIAN,
    TRANSFER_SIGMA,
    WEEKEND_FACTOR,
)
from .city import City
from .columns import DAY_S, large_strings
from .streams import Streams
from .timeline import Timeline

QUARTERS = 96
#: Uniform draws made for every attempt (see the mechanisms that use them).
DRAWS = ("bg", "fraud", "link", "kind", "outage", "fw", "ret", "late", "credit", "tod", "cancel", "complain")
LOCAL_CARD_SHARE = 0.65


@dataclass(frozen=True)
class Attempts:
    """Purchase and transfer attempts in time order, as aligned arrays.

    ``ts`` is naive local seconds; ``card`` indexes ``cards`` (the card pool);
    ``bank``/``payee`` index :data:`~analysis.simulate.catalog.BANKS` and
    ``payees`` (-1 for purchases); ``draws`` maps each name of :data:`DRAWS` to
    float32 uniforms and ``latency_z`` holds standard normals for latencies;
    ``batch_u`` is a ``[terminal, day]`` uniform for end-of-day batch uploads.
    """

    ts: np.ndarray
    day: np.ndarray
    merchant: np.ndarray
    terminal: np.ndarray
    transfer: np.ndarray
    amount: np.ndarray
    card: np.ndarray
    bank: np.ndarray
    payee: np.ndarray
    draws: dict
    latency_z: np.ndarray
    batch_u: np.ndarray
    cards: pa.LargeStringArray
    payees: pa.LargeStringArray

    def __len__(self) -> int:
        return len(self.ts)

    def __repr__(self) -> str:
        return f"Attempts({len(self):,}, transfers={int(self.transfer.sum()):,})"

    def release_draws(self, keep: tuple[str, ...] = ()) -> None:
        """Free the uniforms no later stage needs (they are large on big cities)."""
        for name in list(self.draws):
            if name not in keep:
                del self.draws[name]


def quarter_hour_weights() -> np.ndarray:
    """``[profile, quarter-hour]`` trading intensity, each row summing to 1."""
    hours = (np.arange(QUARTERS) + 0.5) / 4
    rows = []
    for name in PROFILE_NAMES:
        p = PROFILES[name]
        w = np.full(QUARTERS, 0.15)
        for centre, width, weight in p["bumps"]:
            w += weight * np.exp(-0.5 * ((hours - centre) / width) ** 2)
        w[(hours < p["open"]) | (hours >= p["close"])] = 0.0
        if name == "hotel":
            w[hours < 6] = 0.03
        rows.append(w / w.sum())
    return np.array(rows)


def sample_rows(cum: np.ndarray, row: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Column index drawn from row ``row[i]`` of the row-wise cumulative ``cum`` by ``u[i]``.

    One ``searchsorted`` over all rows at once: row r's edges are shifted by r so
    the flattened edges stay sorted.

    Examples
    --------
    >>> import numpy as np
    >>> cum = np.cumsum([[0.5, 0.5], [0.0, 1.0]], axis=1)
    >>> sample_rows(cum, np.array([0, 0, 1]), np.array([0.2, 0.7, 0.2])).tolist()
    [0, 1, 1]
    """
    k = cum.shape[1]
    edges = (cum + np.arange(cum.shape[0])[:, None]).ravel()
    idx = np.searchsorted(edges, row + np.minimum(u, np.nextafter(1, 0)), side="right")
    return (idx - row * k).astype(np.int32)


def _profiles(city: City) -> np.ndarray:
    """Each merchant's trading profile (index into :data:`PROFILE_NAMES`)."""
    return np.array([PROFILE_NAMES.index(MCCS[s].profile) for s in city.m_shop])


def _daily_counts(city: City, tl: Timeline, rng) -> np.ndarray:
    """Attempts per merchant and day: Poisson around rate x weekend factor x day noise."""
    profile = _profiles(city)
    weekend = np.array([WEEKEND_FACTOR[p] for p in PROFILE_NAMES])[profile]
    off = ~tl.business
    factor = np.where(off[None, :], weekend[:, None], 1.0)
    noise = rng.gamma(30.0, 1 / 30.0, size=factor.shape)
    return rng.poisson(city.m_rate[:, None] * factor * noise)


def _card_pool(n_cards: int, city: City, rng) -> tuple[pa.LargeStringArray, np.ndarray]:
    """Card numbers and, per neighbourhood, the start of its block of local cards."""
    bins = [b for b, _, _ in CARD_BINS]
    w = np.array([x for _, _, x in CARD_BINS])
    which = rng.choice(len(bins), n_cards, p=w / w.sum())
    pans = luhn_numbers(bins, [n for _, n, _ in CARD_BINS], which, rng)
    k = len(city.neighbourhoods)
    shares = np.bincount(city.m_nb, weights=city.m_rate, minlength=k)
    sizes = np.floor(n_cards * shares / shares.sum()).astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)])
    return pans, starts


def _payee_pool(n_payees: int, rng) -> tuple[pa.LargeStringArray, np.ndarray, np.ndarray]:
    """Receiving accounts grouped by bank: numbers, per-bank block starts and sizes."""
    share = np.array([b.share for b in BANKS])
    sizes = np.maximum(5, np.floor(n_payees * share / share.sum())).astype(np.int64)
    bank_of = np.repeat(np.arange(len(BANKS)), sizes)
    bins, lengths, first_bin = [], [], []
    for b in BANKS:
        first_bin.append(len(bins))
        bins += [x for x, _ in b.bins]
        lengths += [n for _, n in b.bins]
    n_bins = np.array([len(b.bins) for b in BANKS])
    which = np.array(first_bin)[bank_of] + rng.integers(0, n_bins[bank_of])
    return luhn_numbers(bins, lengths, which, rng), np.concatenate([[0], np.cumsum(sizes)[:-1]]), sizes


def _amounts(shop: np.ndarray, transfer: np.ndarray, rng) -> np.ndarray:
    """Log-normal amounts by MCC (transfers by their own law), rounded like real tickets.

    Purchases: 40% whole yuan, the rest to the fen (at least 0.50); transfers: 60%
    round hundreds, the rest whole yuan, at most :data:`TRANSFER_MAX`.
    """
    n = len(shop)
    table = np.array([[s.median, s.sigma] for s in MCCS] + [[TRANSFER_MEDIAN, TRANSFER_SIGMA]])
    law = np.where(transfer, len(MCCS), shop)
    amount = rng.standard_normal(n)
    amount *= table[law, 1]
    np.exp(amount, out=amount)
    amount *= table[law, 0]
    style = rng.random(n, dtype=np.float32)
    whole = np.where(transfer, style >= 0.6, style < 0.4)
    hundred = transfer & ~whole
    cents = ~transfer & ~whole
    amount[whole] = np.ceil(amount[whole])
    amount[hundred] = np.maximum(100.0, np.round(amount[hundred], -2))
    amount[cents] = np.maximum(0.5, np.round(amount[cents] * 100) / 100)
    return np.minimum(amount, TRANSFER_MAX, out=amount)


def draw_attempts(city: City, tl: Timeline, streams: Streams, *, full_pans: bool = True) -> Attempts:
    """All purchase and transfer attempts of the period (see the module docstring).

    ``full_pans=False`` masks the card and account pools (first 6 + last 4) at once.
    """
    rng = streams("traffic")
    counts = _daily_counts(city, tl, rng)
    n_days = tl.days
    cell = np.repeat(np.arange(counts.size, dtype=np.int64), counts.ravel())
    merchant = (cell // n_days).astype(np.int32)
    day = (cell % n_days).astype(np.int32)
    del cell
    n = len(merchant)

    profile = _profiles(city)[merchant]
    quarter = sample_rows(np.cumsum(quarter_hour_weights(), axis=1), profile, rng.random(n))
    second = rng.integers(0, 900, n)
    ts = tl.start_s + day.astype(np.int64) * DAY_S + quarter.astype(np.int64) * 900 + second

    # the merchant's first terminal takes 60% where it has several
    n_term = city.m_n_terminals[merchant]
    u = rng.random(n, dtype=np.float32)
    extra = np.maximum(u - 0.6, 0) / 0.4 * (n_term - 1)  # 0 for the first terminal's 60%
    local = np.where(u < 0.6, 0, 1 + extra.astype(np.int32))
    terminal = (city.m_first_terminal[merchant] + np.minimum(local, n_term - 1)).astype(np.int32)

    transfer = rng.random(n) < city.m_transfer_p[merchant]
    amount = _amounts(city.m_shop[merchant], transfer, rng)

    # cards: a pool with regulars per neighbourhood and visitors from anywhere
    n_cards = int(max(2000, n // 6))
    cards, nb_start = _card_pool(n_cards, city, rng)
    nb = city.m_nb[merchant]
    block = nb_start[nb + 1] - nb_start[nb]
    skew = rng.random(n) ** 2
    local_card = nb_start[nb] + (skew * block).astype(np.int64)
    global_card = (rng.random(n) ** 2 * n_cards).astype(np.int64)
    local = (rng.random(n) < LOCAL_CARD_SHARE) & (block > 0)
    card = np.where(local, local_card, global_card).astype(np.int32)

    # transfers: receiving bank and account
    payees, bank_start, bank_size = _payee_pool(int(max(500, transfer.sum() // 3)), rng)
    share = np.array([b.share for b in BANKS])
    sender = np.flatnonzero(transfer)
    bank = np.full(n, -1, dtype=np.int8)
    bank[sender] = rng.choice(len(BANKS), len(sender), p=share / share.sum())
    payee = np.full(n, -1, dtype=np.int64)
    b = bank[sender]
    payee[sender] = bank_start[b] + (rng.random(len(sender)) ** 1.5 * bank_size[b]).astype(np.int64)

    order = np.argsort(ts * city.n_terminals + terminal, kind="stable")
    draws = {name: streams.uniforms(f"draw:{name}", n) for name in DRAWS}
    latency_z = streams("draw:latency").standard_normal(n, dtype=np.float32)
    batch_u = streams("draw:batch").random((city.n_terminals, n_days), dtype=np.float32)
    if not full_pans:
        cards = large_strings(mask_pan_series(cards.to_pandas()))
        payees = large_strings(mask_pan_series(payees.to_pandas()))
    return Attempts(
        ts=ts[order],
        day=day[order],
        merchant=merchant[order],
        terminal=terminal[order],
        transfer=transfer[order],
        amount=amount[order],
        card=card[order],
        bank=bank[order],
        payee=payee[order].astype(np.int32),
        draws=draws,
        latency_z=latency_z,
        batch_u=batch_u,
        cards=cards,
        payees=payees,
    )


__all__ = ["Attempts", "DRAWS", "draw_attempts", "quarter_hour_weights", "sample_rows"]
