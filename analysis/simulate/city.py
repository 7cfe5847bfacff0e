"""The city: neighbourhoods, merchants, network segments and terminals.

Merchants sit in Gaussian blobs (a few hundred metres wide) around neighbourhood
centres of a district. Each neighbourhood has a few access-network segments that
its shops share; one neighbourhood holds the *case segment*: a small supermarket
(the anchor, MCC 5411) and its nearest neighbours on one line. Nothing here
depends on faults or fixes, so the same seed gives the same city whatever is
injected into it.

Examples
--------
>>> from analysis.simulate.specs import CityConfig
>>> from analysis.simulate.streams import Streams
>>> city = build_city(CityConfig(seed=3, n_merchants=30, n_neighbourhoods=3), Streams(3))
>>> len(city.merchants), int((city.m_segment == city.case_segment).sum())
(30, 11)
>>> city.merchants.loc[city.anchor, "name"]
'好邻居便利超市'
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .catalog import (
    CARRIERS,
    CYCLES,
    DISTRICTS,
    MCCS,
    MODELS,
    NAME_PREFIXES,
    SETTLEMENT_CYCLE_P,
    SUPERMARKET_MCC,
)
from .columns import digit_strings, str_series
from .specs import CityConfig
from .streams import Streams

#: Spread of shops around their neighbourhood centre, in degrees (~280 m).
SPREAD_LAT, SPREAD_LON = 0.0025, 0.0029
#: Spread of neighbourhood centres around the district centre, in degrees (~3 km).
NB_SPREAD_LAT, NB_SPREAD_LON = 0.025, 0.03
MERCHANT_PREFIX = "89831"


@dataclass(frozen=True)
class City:
    """Merchants and terminals as contract tables, plus aligned integer arrays.

    Merchant arrays (``m_*``) follow the rows of ``merchants``; terminal arrays
    (``t_*``) the rows of ``terminals``, where each merchant's terminals are
    contiguous from ``m_first_terminal``.
    """

    merchants: pd.DataFrame
    terminals: pd.DataFrame
    neighbourhoods: tuple[str, ...]
    segments: tuple[str, ...]
    m_shop: np.ndarray
    m_nb: np.ndarray
    m_segment: np.ndarray
    m_cycle: np.ndarray
    m_rate: np.ndarray
    m_transfer_p: np.ndarray
    m_propensity: np.ndarray
    m_first_terminal: np.ndarray
    m_n_terminals: np.ndarray
    t_merchant: np.ndarray
    t_segment: np.ndarray
    anchor: int
    case_segment: int

    def __repr__(self) -> str:
        return (
            f"City({len(self.merchants)} merchants, {len(self.terminals)} terminals, "
            f"{len(self.segments)} segments, case segment {self.segments[self.case_segment]})"
        )

    @property
    def n_merchants(self) -> int:
        return len(self.merchants)

    @property
    def n_terminals(self) -> int:
        return len(self.terminals)

    def merchant_index(self, merchant_id: str) -> int:
        """Row of ``merchant_id`` in ``merchants`` (ValueError if unknown)."""
        hits = np.flatnonzero(self.merchants["merchant_id"].to_numpy() == merchant_id)
        if not len(hits):
            raise ValueError(f"merchant {merchant_id!r} is not in the simulated city")
        return int(hits[0])

    def segment_index(self, segment: str) -> int:
        """Index of a network segment name (ValueError listing a few if unknown)."""
        try:
            return self.segments.index(segment)
        except ValueError:
            raise ValueError(
                f"network segment {segment!r} is not in the simulated city; it has e.g. "
                f"{list(self.segments[:5])} (see city.terminals.network_segment)"
            ) from None


def _weights(pairs) -> tuple[list, np.ndarray]:
    names = [p[0] for p in pairs]
    w = np.array([p[1] for p in pairs], dtype=float)
    return names, w / w.sum()


def _neighbourhood_names(district, k: int) -> tuple[str, ...]:
    base = district.neighbourhoods
    return tuple(base[i % len(base)] + ("" if i < len(base) else str(i // len(base) + 1)) for i in range(k))


def _shop_names(rng: np.random.Generator, shop: np.ndarray, nb: np.ndarray, nb_names) -> list[str]:
    """Chinese shop names: 字号 + kind, sometimes with the branch (（张江店）)."""
    prefixes = rng.integers(0, len(NAME_PREFIXES), len(shop))
    kinds = rng.random(len(shop))
    branch = rng.random(len(shop)) < 0.35
    names = []
    for i, s in enumerate(shop):
        k = MCCS[s].kinds
        name = NAME_PREFIXES[prefixes[i]] + k[int(kinds[i] * len(k))]
        names.append(name + (f"（{nb_names[nb[i]]}店）" if branch[i] else ""))
    return names


def _segments(
    rng, nb_sizes: np.ndarray, case_nb: int, code: str
) -> tuple[list[str], list[int], list[str], int]:
    """Segment names, their neighbourhood and carrier; the case segment is last."""
    carriers, cw = _weights([(c, w) for c, w, _ in CARRIERS])
    per_nb = 2 + (nb_sizes > 12) + (nb_sizes > 30)
    total = int(per_nb.sum()) + 1
    lines = rng.choice(np.arange(1, 10_000), size=total, replace=False)
    names, owner, carrier = [], [], []
    for nb, k in enumerate(per_nb):
        for c in rng.choice(len(carriers), size=k, p=cw):
            owner.append(nb)
            carrier.append(carriers[c])
    carrier.append("CT")  # the case segment: a telecom broadband line
    owner.append(case_nb)
    names = [f"{c}-{code}-{int(line):04d}" for c, line in zip(carrier, lines)]
    return names, owner, carrier, total - 1


def build_city(config: CityConfig, streams: Streams) -> City:
    """Draw the city's merchants and terminals (see the module docstring)."""
    rng = streams("city")
    district = DISTRICTS[config.district]
    n, k = config.n_merchants, config.n_neighbourhoods
    nb_names = _neighbourhood_names(district, k)

    # neighbourhoods: centres and sizes; the largest holds the case segment
    nb_lat = district.latitude + rng.normal(0, NB_SPREAD_LAT, k)
    nb_lon = district.longitude + rng.normal(0, NB_SPREAD_LON, k)
    nb_w = rng.gamma(2.5, 1.0, k)
    case_nb = int(np.argmax(nb_w))
    need = min(config.case_segment_size + 3, n)
    nb_sizes = rng.multinomial(n - need, nb_w / nb_w.sum())
    nb_sizes[case_nb] += need
    nb = np.repeat(np.arange(k), nb_sizes)

    lat = nb_lat[nb] + rng.normal(0, SPREAD_LAT, n)
    lon = nb_lon[nb] + rng.normal(0, SPREAD_LON, n)
    shop = rng.choice(len(MCCS), size=n, p=_weights([(s.mcc, s.share) for s in MCCS])[1])

    # the anchor supermarket: the case neighbourhood's shop nearest its centre
    members = np.flatnonzero(nb == case_nb)
    dist = np.hypot(lat[members] - nb_lat[case_nb], (lon[members] - nb_lon[case_nb]) * 0.85)
    anchor = int(members[np.argmin(dist)])
    shop[anchor] = next(i for i, s in enumerate(MCCS) if s.mcc == SUPERMARKET_MCC)
    d_anchor = np.hypot(lat[members] - lat[anchor], (lon[members] - lon[anchor]) * 0.85)
    case_members = members[np.argsort(d_anchor, kind="stable")[: config.case_segment_size]]

    # segments: each shop on one of its neighbourhood's lines; the case members on the case line
    seg_names, seg_nb, seg_carrier, case_seg = _segments(rng, nb_sizes, case_nb, district.code)
    seg_nb = np.array(seg_nb)
    segment = np.empty(n, dtype=np.int32)
    for j in range(k):
        own = np.flatnonzero(seg_nb[:case_seg] == j)
        idx = np.flatnonzero(nb == j)
        segment[idx] = rng.choice(own, size=len(idx), p=rng.dirichlet(np.full(len(own), 2.0)))
    segment[case_members] = case_seg

    # trade: volume, transfers, cycle, complaint propensity
    size = rng.lognormal(0, 0.5, n) / np.exp(0.125)
    size[anchor] = max(size[anchor], 1.0) * 1.5
    rate = config.txns_per_merchant_day * np.array([MCCS[s].rate for s in shop]) * size
    capable = np.array([MCCS[s].transfers for s in shop])
    share_capable = rate[capable].sum() / rate.sum() if capable.any() else 0.0
    offer_p = min(0.6, config.transfer_share / share_capable) if share_capable else 0.0
    transfer_p = np.where(capable, offer_p, 0.0)
    cycles, cw = _weights(SETTLEMENT_CYCLE_P)
    cycle = rng.choice(len(cycles), size=n, p=cw).astype(np.int8)
    cycle[anchor] = CYCLES.index("T1")
    propensity = rng.lognormal(0, 0.6, n) / np.exp(0.18)
    names = _shop_names(rng, shop, nb, nb_names)
    names[anchor] = config.anchor_name

    # merchant ids: random, unique; the table is ordered by id
    ids = rng.choice(9_000_000, size=n, replace=False) + 1_000_000
    order = np.argsort(ids)
    inv = np.empty(n, dtype=np.int64)
    inv[order] = np.arange(n)
    ids, nb, lat, lon, shop = ids[order], nb[order], lat[order], lon[order], shop[order]
    segment, rate, transfer_p = segment[order], rate[order], transfer_p[order]
    cycle, propensity = cycle[order], propensity[order]
    names = [names[i] for i in order]
    anchor = int(inv[anchor])
    merchant_ids = np.asarray(digit_strings(ids, 7, prefix=MERCHANT_PREFIX).to_pylist(), dtype=object)

    # terminals: 1-3 per merchant, busier shops have more
    second = rng.random(n) < np.clip(rate / 60, 0.15, 0.8)
    n_term = 1 + second + (rng.random(n) < np.clip(rate / 200, 0.05, 0.5))
    first = np.concatenate([[0], np.cumsum(n_term)[:-1]])
    t_merchant = np.repeat(np.arange(n), n_term)
    nt = len(t_merchant)
    model_names, mw = _weights([(m, w) for m, w, _ in MODELS])
    model = rng.choice(len(model_names), size=nt, p=mw)
    firmware = np.empty(nt, dtype=object)
    for mi, (_, _, fws) in enumerate(MODELS):
        sel = np.flatnonzero(model == mi)
        fw_names, fw_w = _weights(fws)
        firmware[sel] = np.asarray(fw_names, dtype=object)[rng.choice(len(fw_names), size=len(sel), p=fw_w)]
    t_segment = segment[t_merchant]
    connection = np.empty(nt, dtype=object)
    t_carrier = np.asarray(seg_carrier, dtype=object)[t_segment]
    for c, _, kinds in CARRIERS:
        sel = np.flatnonzero(t_carrier == c)
        kn, kw = _weights(kinds)
        connection[sel] = np.asarray(kn, dtype=object)[rng.choice(len(kn), size=len(sel), p=kw)]
    tids = rng.choice(90_000_000, size=nt, replace=False) + 10_000_000

    merchants = pd.DataFrame(
        {
            "merchant_id": str_series(merchant_ids),
            "name": str_series(names),
            "mcc": str_series([MCCS[s].mcc for s in shop]),
            "latitude": np.round(lat, 6),
            "longitude": np.round(lon, 6),
            "district": str_series([config.district] * n),
            "settlement_cycle": str_series([cycles[c] for c in cycle]),
        }
    )
    terminals = pd.DataFrame(
        {
            "terminal_id": str_series(digit_strings(tids, 8)),
            "merchant_id": str_series(merchant_ids[t_merchant]),
            "model": str_series(np.asarray(model_names, dtype=object)[model]),
            "firmware": str_series(firmware),
            "connection": str_series(connection),
            "network_segment": str_series(np.asarray(seg_names, dtype=object)[t_segment]),
        }
    )
    return City(
        merchants=merchants,
        terminals=terminals,
        neighbourhoods=nb_names,
        segments=tuple(seg_names),
        m_shop=shop,
        m_nb=nb,
        m_segment=segment,
        m_cycle=cycle,
        m_rate=rate,
        m_transfer_p=transfer_p,
        m_propensity=propensity,
        m_first_terminal=first,
        m_n_terminals=n_term,
        t_merchant=t_merchant,
        t_segment=t_segment,
        anchor=anchor,
        case_segment=case_seg,
    )


__all__ = ["City", "build_city"]
