"""Kulldorff's spatial and space-time scan statistics for shared POS faults.

Which merchants *near each other* have more incident transactions than chance
allows? The circular scan statistic answers with the most likely cluster, its
log-likelihood ratio (LLR) and a Monte Carlo p-value that accounts for having
looked at every circle.

References
----------
.. [1] M. Kulldorff (1997). A spatial scan statistic. *Communications in
   Statistics – Theory and Methods* 26:1481–1496.
.. [2] M. Kulldorff, W. F. Athas, E. J. Feuer, B. A. Miller, C. R. Key (1998).
   Evaluating cluster alarms: a space-time scan statistic and brain cancer in
   Los Alamos, New Mexico. *American Journal of Public Health* 88:1377–1380.
.. [3] M. Kulldorff (2001). Prospective time periodic geographical disease
   surveillance using a scan statistic. *Journal of the Royal Statistical
   Society A* 164:61–72.

Conventions (``shared/SCAN.md``, chosen so results agree with SaTScan)
-----------------------------------------------------------------------
* Latitude/longitude become 3-D points on a sphere of radius 6367 km
  (``x = R cos φ cos λ``, ``y = R cos φ sin λ``, ``z = R sin φ``). Neighbours of
  a centre are ordered by chord distance; exact distance ties are broken the way
  SaTScan breaks them, by the lesser x, then y, then z coordinate. The reported
  radius is the great-circle distance from the centre to the farthest member.
* Locations at identical coordinates always enter a window together: they are
  merged into one *site* before scanning (a window is a set of sites; members
  are reported per location).
* Windows are the prefixes of every centre's ordered neighbour list, capped by a
  share of the population at risk (inclusive: the list stops before the first
  site that would exceed the cap) and optionally by a radius in km.
* Only high-rate windows (rate inside > rate outside) with at least
  ``min_cases`` cases count; the LLR of any other window is 0.
* LLR formulas, expected counts and relative risk: :func:`llr_bernoulli`,
  :func:`llr_poisson` (``0·ln 0 = 0``).
* Null replicas keep the total number of cases C fixed: Bernoulli permutes the
  C cases over the N individuals (multivariate hypergeometric per location, or
  per location-day), Poisson distributes them multinomially by population.
  ``p = rank / (replicas + 1)`` where a replica maximum ≥ the observed LLR
  (minus a relative tolerance of 1e-9) counts against the cluster.
* Secondary clusters: as in SaTScan, the best window of every centre is kept;
  those are ranked by LLR and a window is reported when it shares no location
  with a better reported one ("no geographical overlap"). Every cluster is
  ranked against the same replica maxima.

Space-time choices
------------------
Cylinders are a circular window (as above) times a contiguous interval of days
between ``min_days`` and ``max_days`` long (default: half the study period);
prospective scans only use intervals that end on the last day. The model is the
space-time Poisson or Bernoulli scan conditioned on the total number of cases
(not the space-time permutation model): the expected count of a cylinder is
``C · population(cylinder) / population(all location-days)``, and null
replicas distribute the C cases over location-days exactly as the purely
spatial scan distributes them over locations. The spatial population cap uses
each location's population summed over the study period; days without a row
have no population and no cases. SaTScan's adjustment of prospective p-values
for earlier analyses is not made.

How the Monte Carlo is computed (exactly, and vectorized)
----------------------------------------------------------
For a chunk of centres, replica case counts (an ``(sites, days, replicas)``
integer array, 16-bit when C allows) are gathered in neighbour order and summed
cumulatively along it (and over days, then differenced for every interval), so
a few array operations give every cylinder's count in every replica. Because
the LLR of a high-rate window grows with its cases and falls with its
population, a replica's maximum can only change at cylinders whose count
reaches the smallest count that would beat the best LLR found so far for that
replica; that count is a step function of the population, tabulated per
threshold on 0.1%-wide population bins. The comparison is integer-only;
logarithms are taken only for the few cylinders that pass, so the result is the
exact maximum over all windows (``tests/test_scan.py`` checks it against a
naive loop). The one-location windows are scanned first to give every replica
a threshold; each block of counts is compared with the lowest threshold, and
the few counts that pass with their own replica's.

Replicas are drawn in blocks of 64, each from its own child of the seed's
``numpy.random.SeedSequence``, and the blocks are dealt to ``n_jobs`` forked
worker processes (processes, because the many mid-sized numpy calls would make
threads wait for the interpreter lock). Results depend on the seed only, not on
``n_jobs``, row order or memory batching. Small scans run in one process.

Examples
--------
>>> import pandas as pd
>>> locations = pd.DataFrame({
...     "merchant_id": [f"M{i:02d}" for i in range(6)],
...     "latitude": [31.20, 31.201, 31.202, 31.30, 31.31, 31.32],
...     "longitude": [121.40, 121.401, 121.40, 121.50, 121.52, 121.55],
...     "cases": [9, 8, 10, 1, 0, 1],
...     "population": [50, 50, 50, 50, 50, 50],
... })
>>> result = spatial_scan(locations, n_replicas=99, seed=1)
>>> result.clusters[0].member_ids
('M00', 'M01', 'M02')
"""

from __future__ import annotations

import dataclasses
import functools
import math
import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np
import pandas as pd

from .exceptions import DatasetError

__all__ = [
    "EARTH_RADIUS_KM",
    "ScanCluster",
    "ScanResult",
    "SpaceTimeCluster",
    "SpaceTimeResult",
    "llr_bernoulli",
    "llr_poisson",
    "space_time_scan",
    "spatial_scan",
]

#: Sphere radius used by SaTScan to turn latitude/longitude into 3-D points.
EARTH_RADIUS_KM = 6367.0

Model = Literal["bernoulli", "poisson"]
_MODELS = ("bernoulli", "poisson")

#: A replica maximum counts against a cluster when it is >= llr - tolerance.
_P_TOLERANCE = 1e-9
#: Elements (prefixes x centres x days x replicas) in one block: about the size of a core's cache.
_BLOCK_ELEMENTS = 1 << 18
#: Elements of one batch of null replicas held by a worker (sites x days x replicas; mostly one byte each).
_REPLICA_ELEMENTS = 1 << 28
#: Cylinders x replicas below which one process does all the work.
_PARALLEL_WORK = 1 << 27
#: LLR levels with a minimum-case table, for skipping cylinders of the observed data.
_LADDER = np.concatenate([[0.0], 2.0 ** np.arange(-4.0, 14.0, 0.25)])
#: Relative difference allowed between compiled and numpy LLRs of the same cylinder.
_LLR_TOLERANCE = 1e-9
#: Replicas drawn from one child of the seed.
_SEED_BLOCK = 64
#: Elements of one call to the random generator (int64 draws).
_DRAW_ELEMENTS = 1 << 23
#: Candidates (cylinder x replica) whose LLR is computed together.
_CANDIDATE_BATCH = 1 << 18
#: Bernoulli totals the hypergeometric sampler can handle exactly.
_MAX_BERNOULLI_TOTAL = 10**9 - 1


# --------------------------------------------------------------------------- log-likelihood ratios


def _xlog_ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a · ln(a / b)`` elementwise, with ``0 · ln(0 / b) = 0`` (call under ``np.errstate``)."""
    return np.where(a > 0, a * np.log(a / b), 0.0)


def _as_result(x: np.ndarray) -> np.ndarray | float:
    return float(x) if np.ndim(x) == 0 else x


def llr_bernoulli(c, n, C, N, *, high_only: bool = True) -> np.ndarray | float:
    """Bernoulli log-likelihood ratio of windows (Kulldorff 1997, eq. for the Bernoulli model).

    ``c ln(c/n) + (n−c) ln((n−c)/n) + (C−c) ln((C−c)/(N−n))
    + (N−n−C+c) ln((N−n−C+c)/(N−n)) − C ln(C/N) − (N−C) ln((N−C)/N)``,
    with ``0 · ln 0 = 0``.

    Parameters
    ----------
    c, n : array_like
        Cases and individuals (cases + controls) inside each window; ``0 <= c <= n``.
    C, N : array_like
        Cases and individuals in total; ``c <= C``, ``n - c <= N - C``.
    high_only : bool, default True
        Give 0 to windows whose rate is not higher inside than outside
        (``c/n <= (C−c)/(N−n)``), as the scan does.

    Returns
    -------
    numpy.ndarray or float
        LLR per window (a float for scalar input).

    Examples
    --------
    >>> round(llr_bernoulli(10, 50, 20, 200), 6)
    3.256969
    >>> llr_bernoulli(2, 100, 20, 200)  # rate inside 2% < outside 18%: not a high-rate window
    0.0
    """
    c, n, C, N = (np.asarray(v, dtype=float) for v in (c, n, C, N))
    nn = N - n
    with np.errstate(divide="ignore", invalid="ignore"):
        llr = (
            _xlog_ratio(c, n)
            + _xlog_ratio(n - c, n)
            + _xlog_ratio(C - c, nn)
            + _xlog_ratio(nn - (C - c), nn)
            - _xlog_ratio(C, N)
            - _xlog_ratio(N - C, N)
        )
        if high_only:
            llr = np.where(c * nn > (C - c) * n, np.maximum(llr, 0.0), 0.0)
    return _as_result(llr)


def llr_poisson(c, E, C, *, high_only: bool = True) -> np.ndarray | float:
    """Poisson log-likelihood ratio of windows (Kulldorff 1997, eq. for the Poisson model).

    ``c ln(c/E) + (C−c) ln((C−c)/(C−E))`` with ``0 · ln 0 = 0``, where ``E`` is
    the expected count under the null, ``E = C · population_inside / population_total``.

    Parameters
    ----------
    c, E : array_like
        Observed and expected cases inside each window; ``0 <= E <= C``.
    C : array_like
        Total cases.
    high_only : bool, default True
        Give 0 to windows that are not high-rate (``c <= E``).

    Returns
    -------
    numpy.ndarray or float
        LLR per window (a float for scalar input).

    Examples
    --------
    >>> round(llr_poisson(10, 5.0, 20), 6)
    2.876821
    >>> llr_poisson(3, 5.0, 20)
    0.0
    """
    c, E, C = (np.asarray(v, dtype=float) for v in (c, E, C))
    with np.errstate(divide="ignore", invalid="ignore"):
        llr = _xlog_ratio(c, E) + _xlog_ratio(C - c, C - E)
        if high_only:
            llr = np.where(c > E, np.maximum(llr, 0.0), 0.0)
    return _as_result(llr)


def _llr(model: str, c, n, C: float, N: float) -> np.ndarray | float:
    """LLR of windows with ``c`` cases and population ``n`` (Poisson: E = C·n/N)."""
    if model == "bernoulli":
        return llr_bernoulli(c, n, C, N)
    return llr_poisson(c, C * np.asarray(n, dtype=float) / N, C)


# --------------------------------------------------------------------------- geometry


def _to_xyz(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Points on the SaTScan sphere (radius 6367 km), shape (n, 3)."""
    p, l = np.radians(lat), np.radians(lon)
    return EARTH_RADIUS_KM * np.column_stack([np.cos(p) * np.cos(l), np.cos(p) * np.sin(l), np.sin(p)])


def _chord_to_km(chord: np.ndarray | float) -> np.ndarray | float:
    """Great-circle distance (km) of a chord (km) on the SaTScan sphere."""
    return 2.0 * EARTH_RADIUS_KM * np.arcsin(np.minimum(np.asarray(chord) / (2.0 * EARTH_RADIUS_KM), 1.0))


def _km_to_chord(km: float) -> float:
    return 2.0 * EARTH_RADIUS_KM * math.sin(min(km / (2.0 * EARTH_RADIUS_KM), math.pi / 2))


@dataclass(frozen=True)
class _Sites:
    """Locations merged by identical coordinates, with per-day cases and population."""

    lat: np.ndarray  # (S,)
    lon: np.ndarray  # (S,)
    xyz: np.ndarray  # (S, 3)
    members: tuple[np.ndarray, ...]  # location indices of each site, ascending
    cases: np.ndarray  # (S, T) int64
    population: np.ndarray  # (S, T) float64

    @property
    def n(self) -> int:
        return len(self.lat)


def _merge_sites(lat: np.ndarray, lon: np.ndarray, cases: np.ndarray, population: np.ndarray) -> _Sites:
    """Group locations (rows of ``cases``/``population``) that share exact coordinates."""
    key = pd.MultiIndex.from_arrays([lat, lon])
    site_of, _ = pd.factorize(key, sort=False)  # numbered by first appearance
    S = int(site_of.max()) + 1 if len(site_of) else 0
    first = np.full(S, len(lat))
    np.minimum.at(first, site_of, np.arange(len(lat)))
    order = np.argsort(site_of, kind="stable")
    bounds = np.searchsorted(site_of[order], np.arange(S + 1))
    members = tuple(order[bounds[i] : bounds[i + 1]] for i in range(S))
    agg_cases = np.zeros((S, cases.shape[1]), dtype=np.int64)
    agg_pop = np.zeros((S, cases.shape[1]), dtype=float)
    np.add.at(agg_cases, site_of, cases)
    np.add.at(agg_pop, site_of, population)
    return _Sites(lat[first], lon[first], _to_xyz(lat[first], lon[first]), members, agg_cases, agg_pop)


@dataclass(frozen=True)
class _Windows:
    """The candidate circles: for each centre site, its neighbours in scan order (valid prefixes only)."""

    neighbours: np.ndarray  # flat int32: concatenated neighbour lists
    offsets: np.ndarray  # (S + 1,): centre i owns neighbours[offsets[i]:offsets[i+1]]

    @property
    def sizes(self) -> np.ndarray:
        return np.diff(self.offsets)

    def of(self, centre: int) -> np.ndarray:
        return self.neighbours[self.offsets[centre] : self.offsets[centre + 1]]

    def block(self, centres: np.ndarray, pad: int) -> np.ndarray:
        """(K, B) neighbour matrix of ``centres`` (K = largest window), padded with ``pad``."""
        sizes = self.sizes[centres]
        out = np.full((int(sizes.max()), len(centres)), pad, dtype=np.intp)
        for j, c in enumerate(centres):
            out[: sizes[j], j] = self.of(c)
        return out


def _build_windows(xyz: np.ndarray, population: np.ndarray, max_share: float, max_radius_km: float | None,
                   n_jobs: int = 1, *, exhaustive: bool = False) -> _Windows:
    """Every centre's neighbours by chord distance (ties: lesser x, y, z), cut at the caps.

    The population cap is inclusive (``cumulative <= max_share · total``, with a
    1e-12 relative allowance for rounding); the radius cap compares great-circle
    distances with ``<=``. The centre always comes first.

    Without a radius, small windows come from each centre's nearest sites
    (:func:`_nearest_lists`) and the rest from sorting every site
    (:func:`_exhaustive_lists`, forced by ``exhaustive``); both give the same
    lists, bit for bit.
    """
    S = len(xyz)
    cap = max_share * float(population.sum()) * (1.0 + 1e-12)
    rank = np.lexsort((xyz[:, 2], xyz[:, 1], xyz[:, 0]))  # SaTScan: lesser x, then y, then z
    pts, pop = xyz[rank], population[rank]  # columns in tie-break order
    if max_radius_km is not None:
        from scipy.spatial import cKDTree

        reach = cKDTree(pts).query_ball_point(xyz, _km_to_chord(max_radius_km) * (1.0 + 1e-9) + 1e-9)
        lists = []
        for i in range(S):
            cand = np.sort(np.asarray(reach[i], dtype=np.intp))
            d2 = ((pts[cand] - xyz[i]) ** 2).sum(axis=1)
            o = np.argsort(d2, kind="stable")
            lists.append(rank[_prefix(cand[o][None], d2[o][None], pop, cap, max_radius_km)[0]])
    else:
        # the nearest-sites shortcut needs windows well under S sites, float64 coordinates whose squares
        # neither overflow nor underflow, and populations >= 0 (then it is exact; else sort every site)
        k = min(S, int(1.5 * max(max_share, 0.0) * S) + 32) if math.isfinite(max_share) else S
        scale = float(np.abs(xyz).max()) if S else 0.0
        nearest = (not exhaustive and 4 * k <= S and xyz.dtype == np.float64 and 1e-100 <= scale <= 1e100
                   and bool(np.all(pop >= 0)))
        if nearest:
            cols = _nearest_lists(pts, xyz, pop, cap, k, n_jobs)
        else:
            cols = _exhaustive_lists(pts, xyz, pop, cap, n_jobs)
        lists = cols
        for i, x in enumerate(lists):  # columns to sites, in place (the columns are freed one by one)
            lists[i] = rank[x]
    for i, lst in enumerate(lists):  # the centre itself comes first (distance 0)
        if len(lst) and lst[0] != i:
            lists[i] = np.concatenate([[i], lst[lst != i]])[: len(lst)]
    sizes = np.array([len(x) for x in lists], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    flat = np.concatenate(lists).astype(np.int32) if len(lists) else np.zeros(0, np.int32)
    return _Windows(flat, offsets)


def _exhaustive_lists(pts: np.ndarray, xyz: np.ndarray, pop: np.ndarray, cap: float, n_jobs: int,
                      centres: np.ndarray | None = None) -> list[np.ndarray]:
    """Capped neighbour lists (columns of ``pts``) of ``centres`` (default: all), sorting all sites for each.

    ``pts``/``pop`` are the sites in tie-break order, ``xyz`` in site order. A
    slab of centres at a time; slabs are dealt to ``n_jobs`` processes.
    """
    S = len(pts)
    centres = np.arange(len(xyz)) if centres is None else centres
    step = max(1, (1 << 20) // max(S, 1))

    def slabs(starts: np.ndarray) -> list[np.ndarray]:
        out = []
        for i0 in starts:
            d2 = ((pts[None, :, :] - xyz[centres[i0 : i0 + step], None, :]) ** 2).sum(axis=2)
            o = _sorted_columns(d2)
            out.extend(x.copy() for x in _prefix(o, np.take_along_axis(d2, o, axis=1), pop, cap, None))  # free o
        return out

    jobs = n_jobs if len(centres) * S >= _PARALLEL_WORK // 8 else 1
    parts = np.array_split(np.arange(0, len(centres), step), min(jobs, math.ceil(len(centres) / step)))
    return [x for part in _parallel_map(slabs, parts, jobs, _Progress(0, False)) for x in part]


def _nearest_lists(pts: np.ndarray, xyz: np.ndarray, pop: np.ndarray, cap: float, k: int,
                   n_jobs: int) -> list[np.ndarray]:
    """:func:`_exhaustive_lists` of all centres, sorting only each centre's ``k`` nearest sites.

    The k nearest (KD-tree) are ordered exactly as the full sort orders them:
    same squared distances, computed the same way, ties by column. Sites
    surely nearer than the k-th one (a 1e-9 relative and 1e-10·|coordinates|
    margin for the tree's own rounding) are all among them, so the full order
    starts with them; if the cap stops before their end, the list is the full
    computation's (populations are >= 0, so the cumulative sum never comes
    back under the cap). Other centres are retried with 2k sites, and sorted
    exhaustively once 4k would exceed S.
    """
    from scipy.spatial import cKDTree

    S = len(pts)
    tree = cKDTree(pts)
    tol = 1e-10 * float(np.abs(pts).max())
    lists: list[np.ndarray | None] = [None] * len(xyz)
    todo = np.arange(len(xyz))
    while len(todo) and 4 * k <= S:
        step = max(1, (1 << 20) // k)

        def chunks(starts: np.ndarray, k: int = k, step: int = step, todo: np.ndarray = todo) -> list[tuple]:
            return [_nearest_chunk(tree, pts, xyz, pop, cap, todo[i0 : i0 + step], k, tol) for i0 in starts]

        jobs = n_jobs if len(todo) * k >= _PARALLEL_WORK // 32 else 1
        parts = np.array_split(np.arange(0, len(todo), step), min(jobs, math.ceil(len(todo) / step)))
        missed = []
        for part in _parallel_map(chunks, parts, jobs, _Progress(0, False)):
            for centres, sizes, flat in part:  # compact: cheap to send back from a worker
                sure = sizes >= 0
                for c, lst in zip(centres[sure], np.split(flat, np.cumsum(sizes[sure])[:-1])):
                    lists[c] = lst
                missed.append(centres[~sure])
        todo = np.concatenate(missed)
        k *= 2
    if len(todo):
        for c, lst in zip(todo, _exhaustive_lists(pts, xyz, pop, cap, n_jobs, todo)):
            lists[c] = lst
    return lists


def _nearest_chunk(tree, pts: np.ndarray, xyz: np.ndarray, pop: np.ndarray, cap: float, centres: np.ndarray,
                   k: int, tol: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Capped lists of ``centres`` from their ``k`` nearest sites: (centres, sizes, concatenated lists).

    A size of -1 marks a centre whose ``k`` nearest sites may not hold its window.
    """
    dist, cand = (a.reshape(len(centres), k) for a in tree.query(xyz[centres], k=k))
    reach = dist[:, -1] * (1.0 - 1e-9) - tol  # sites with d2 <= reach² are surely candidates
    inner2 = np.where(reach > 0, reach * reach, -1.0)
    cand.sort(axis=1)  # column order, so that exact ties keep it
    d2 = ((pts[cand] - xyz[centres, None, :]) ** 2).sum(axis=2)
    o = _sorted_columns(d2)
    cand, d2 = np.take_along_axis(cand, o, axis=1), np.take_along_axis(d2, o, axis=1)
    n = (np.cumsum(pop[cand], axis=1) <= cap).sum(axis=1)
    sure = n < (d2 <= inner2[:, None]).sum(axis=1)  # the cap breaks at a site surely nearer than the k-th
    keep = np.arange(k) < np.where(sure, n, 0)[:, None]
    return centres, np.where(sure, n, -1), cand[keep]


def _sorted_columns(d2: np.ndarray) -> np.ndarray:
    """Argsort of each row; exact ties keep column order."""
    o = np.argsort(d2, axis=1)
    ties = (np.diff(np.take_along_axis(d2, o, axis=1), axis=1) == 0).any(axis=1)
    if ties.any():
        o[ties] = np.argsort(d2[ties], axis=1, kind="stable")
    return o


def _prefix(order: np.ndarray, d2: np.ndarray, pop: np.ndarray, cap: float, max_radius_km: float | None) -> list[np.ndarray]:
    """Per row, the longest prefix of ``order`` within the population cap and the radius."""
    k = (np.cumsum(pop[order], axis=1) <= cap).sum(axis=1)
    if max_radius_km is not None:
        k = np.minimum(k, (_chord_to_km(np.sqrt(d2)) <= max_radius_km * (1 + 1e-12)).sum(axis=1))
    return [row[:n] for row, n in zip(order, k)]


# --------------------------------------------------------------------------- scan design


@dataclass(frozen=True)
class _Design:
    """Everything about a scan that does not depend on which replica is scanned."""

    model: str
    sites: _Sites
    windows: _Windows
    first_day: np.ndarray  # (I,) first day of each temporal interval (spatial: [0])
    n_days: np.ndarray  # (I,) its length in days (spatial: [1])
    min_cases: int
    C: int
    N: float
    dtype: np.dtype  # unsigned counts; its max means "never"

    @property
    def T(self) -> int:
        return self.sites.cases.shape[1]

    @property
    def days(self) -> slice:
        """The days some interval covers (arrays handed to the scan hold only these)."""
        return slice(int(self.first_day.min()), int((self.first_day + self.n_days).max()))

    @property
    def interval_starts(self) -> np.ndarray:
        """First day of each interval, counted from ``days.start``."""
        return self.first_day - self.days.start

    @property
    def ends_together(self) -> bool:
        """Every interval ends on the last scanned day (prospective scans)."""
        return bool(np.all(self.first_day + self.n_days == self.days.stop))

    @functools.cached_property
    def runs(self) -> list[tuple[int, int, int, int]]:
        """Intervals as runs ``(j0, j1, d, s0)``: j0..j1-1 last d days and start on s0, s0 + 1, ..."""
        starts, d = self.interval_starts, self.n_days
        cut = np.flatnonzero((np.diff(d) != 0) | (np.diff(starts) != 1)) + 1
        bounds = np.concatenate([[0], cut, [len(d)]])
        return [(int(a), int(b), int(d[a]), int(starts[a])) for a, b in zip(bounds[:-1], bounds[1:])]

    def day_sums(self, Y: np.ndarray) -> np.ndarray:
        """What the scan reads of an (S + 1, T or scanned days, R) array: the scanned days, summed along days.

        Suffix sums when every interval ends on the last day, else prefix sums
        with a leading zero; summing over days once per site here spares doing
        it for every window (sums over sites and over days commute).
        """
        if Y.shape[1] == self.T:
            Y = Y[:, self.days]
        if self.T == 1:
            return np.ascontiguousarray(Y)
        if self.ends_together:
            out = Y.copy()
            _cumulate(out[:, ::-1], axis=1)
            return out
        return _temporal_prefix(Y)

    def padded(self, values: np.ndarray, dtype) -> np.ndarray:
        """``values`` (S, T, R) with a zero row for padding (index S), as the scan reads it (:meth:`day_sums`)."""
        out = np.zeros((self.sites.n + 1,) + values.shape[1:], dtype=dtype)
        out[:-1] = values
        return self.day_sums(out)

    @functools.cached_property
    def interval_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """``(hi, lo)``: interval ``j`` covers scanned days ``lo[j]`` to ``hi[j] - 1``."""
        lo = self.interval_starts.astype(np.intp)
        return lo + self.n_days.astype(np.intp), lo

    def llr(self, c, n):
        return _llr(self.model, c, n, self.C, self.N)

    @property
    def n_cylinders(self) -> int:
        """Windows times temporal intervals: the cylinders scanned per replica."""
        return int(self.windows.sizes.sum()) * len(self.first_day)

    @functools.cached_property
    def padded_population(self) -> np.ndarray:
        return self.padded(self.sites.population[:, :, None], float)

    @property
    def centres_per_chunk(self) -> int:
        return 32 if self.T == 1 else 8


def _intervals(T: int, min_days: int, max_days: int, prospective: bool) -> tuple[np.ndarray, np.ndarray]:
    """First day and length of every scanned interval, shortest first (prospective: ending on day T - 1)."""
    lengths = np.arange(min_days, max_days + 1)
    first = [np.array([T - d]) if prospective else np.arange(T - d + 1) for d in lengths]
    return np.concatenate(first), np.repeat(lengths, [len(f) for f in first])


def _count_dtype(C: int) -> np.dtype:
    for dt in (np.uint16, np.uint32, np.uint64):
        if C < np.iinfo(dt).max:
            return np.dtype(dt)
    raise ValueError(f"too many cases ({C})")


# --------------------------------------------------------------------------- cylinder sums


def _cumulate(x: np.ndarray, axis: int = 0) -> None:
    """In-place cumulative sum along ``axis``.

    With long rows, a loop of vectorized row additions is several times faster
    than ``np.add.accumulate`` along a leading axis; with short rows the loop's
    per-call cost dominates.
    """
    g = np.moveaxis(x, axis, 0)
    if g[0].size >= 1024:
        for k in range(1, len(g)):
            np.add(g[k], g[k - 1], out=g[k])
    else:
        np.add.accumulate(g, axis=0, out=g)


def _temporal_prefix(x: np.ndarray) -> np.ndarray:
    """Cumulative sums over days with a leading zero: (..., T, R) -> (..., T + 1, R)."""
    out = np.zeros(x.shape[:-2] + (x.shape[-2] + 1, x.shape[-1]), x.dtype)
    out[..., 1:, :] = x
    _cumulate(out[..., 1:, :], axis=-2)
    return out


def _cylinder_sums(design: _Design, Y: np.ndarray, order: np.ndarray, budget: int):
    """Cylinder totals for a chunk of centres, one block of prefixes at a time.

    Parameters
    ----------
    design : _Design
    Y : ndarray, shape (S + 1, D, R)
        Values per site and replica as :meth:`_Design.day_sums` gives them
        (C-contiguous); row S is zeros (padding).
    order : ndarray, shape (K, B)
        Neighbour sites of B centres in scan order.
    budget : int
        Elements of a block of prefixes (at least one prefix is taken).

    Yields
    ------
    (k0, j0, sums)
        ``sums[k, b, j, r]`` is the total of replica ``r`` over the first
        ``k0 + k + 1`` neighbours of centre ``b`` and interval ``j0 + j``
        (possibly a view: read it before the next one).
    """
    K, B = order.shape
    _, D, R = Y.shape
    kb = max(1, min(K, budget // (B * D * R)))
    carry = np.zeros((B, D, R), Y.dtype)
    for k0 in range(0, K, kb):
        g = np.take(Y, order[k0 : k0 + kb], axis=0)  # (m, B, D, R)
        g[0] += carry
        _cumulate(g)  # along neighbours: every window's day sums
        carry = g[-1].copy()
        if design.T == 1:  # purely spatial: the one interval is the one day
            yield k0, 0, g
        elif design.ends_together:  # suffix sums are the interval totals
            yield k0, 0, _pick(g, design.interval_starts)
        else:  # differences of prefix sums, run by run
            for j0, j1, d, s0 in design.runs:
                yield k0, j0, g[:, :, s0 + d : s0 + d + j1 - j0] - g[:, :, s0 : s0 + j1 - j0]


def _pick(g: np.ndarray, days: np.ndarray) -> np.ndarray:
    """``g[:, :, days]``, as a view when ``days`` step by +1 or -1."""
    step = int(days[1] - days[0]) if len(days) > 1 else 1
    if abs(step) == 1 and np.array_equal(np.diff(days), np.full(len(days) - 1, step)):
        stop = int(days[-1]) + step
        return g[:, :, int(days[0]) : (stop if stop >= 0 else None) : step]
    return np.take(g, days, axis=2)


def _chunk_cylinders(design: _Design, centres: np.ndarray, prefixes: int | None = None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A chunk's neighbour block (K, B) (the first ``prefixes`` windows), windows per centre, populations (K, B, I)."""
    order = design.windows.block(centres, pad=design.sites.n)[:prefixes]
    sizes = np.minimum(design.windows.sizes[centres], len(order))
    return order, sizes, _chunk_populations(design, order, np.arange(len(order))[:, None] < sizes[None, :])


def _chunk_populations(design: _Design, order: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Population of every cylinder of a chunk: (K, B, I); inf for invalid windows."""
    n = np.empty((len(order), order.shape[1], len(design.first_day)))
    for k0, j0, sums in _cylinder_sums(design, design.padded_population, order, 1 << 40):
        n[k0 : k0 + len(sums), :, j0 : j0 + sums.shape[2]] = sums[..., 0]
    n[~valid] = np.inf
    return n


# --------------------------------------------------------------------------- case thresholds


class _CaseThresholds:
    """Smallest case count that can give a window an LLR >= t, as a function of its population.

    For each case count ``c`` on a grid, ``nmax(c)`` is the largest population at
    which ``c`` cases still give ``LLR >= t`` (the LLR of a high-rate window
    falls with population and grows with cases), found by bisection. A window of
    population ``n`` therefore needs at least ``min{c : nmax(c) >= n}`` cases.
    That count is tabulated on log-spaced population bins (0.1% wide) and a
    window is given the count of its bin's lower edge. Every rounding lets more
    windows through, never fewer, so the filter cannot change a maximum.
    """

    _BIN = 1e-3  # relative width of a population bin

    def __init__(self, design: _Design):
        self.design = design
        C = design.C
        small = np.arange(design.min_cases, min(C, 256) + 1, dtype=float)
        n_big = 1 + int(100 * math.log(max(C, 256) / 256))  # about 1% apart
        big = np.floor(np.geomspace(max(256, design.min_cases), C, n_big)) if C > 256 else np.zeros(0)
        self.grid = np.unique(np.concatenate([small, big]))  # integer case counts, ascending
        pop = design.sites.population
        self.n0 = float(pop[pop > 0].min())
        n_bins = int(math.ceil(math.log(max(design.N, self.n0) / self.n0) / math.log1p(self._BIN))) + 2
        self.edges = self.n0 * np.exp(np.arange(n_bins) * math.log1p(self._BIN))
        self.edges[0] = 0.0  # the first bin also holds populations below n0
        self.never = np.iinfo(design.dtype).max
        self._rows: dict[float, int] = {}  # level -> row of self.tables
        self.tables = np.empty((0, len(self.edges) + 1), design.dtype)

    @staticmethod
    def levels(t: np.ndarray) -> np.ndarray:
        """Thresholds rounded down to a multiple of 1/16 (tables exist per level)."""
        return np.floor(np.maximum(t, 0.0) * 16.0) / 16.0

    def rows(self, levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Row of each level in the returned table array (rows are only ever added)."""
        uniq, inv = np.unique(levels, return_inverse=True)
        new = [u for u in uniq.tolist() if u not in self._rows]
        if new:
            add = self._needed_at_edges(np.array(new) * (1 - 1e-9))
            self._rows.update({u: len(self.tables) + j for j, u in enumerate(new)})
            self.tables = np.concatenate([self.tables, add])
        return np.array([self._rows[u] for u in uniq.tolist()])[inv], self.tables

    def bins(self, n: np.ndarray) -> np.ndarray:
        """Population bin of each window, one bin low for safety (n = inf, an invalid window: the extra bin)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            j = np.log(n * (1.0 / self.n0)) * (1.0 / math.log1p(self._BIN)) - 1.0
        np.clip(np.floor(j, out=j), 0, len(self.edges) - 1, out=j)
        out = j.astype(np.intp)
        out[~np.isfinite(n)] = len(self.edges)
        return out

    def _needed_at_edges(self, t: np.ndarray) -> np.ndarray:
        """Minimum cases for LLR >= t per population bin, plus NEVER for invalid windows: (len(t), bins + 1)."""
        d, e = self.design, self.edges
        floor = np.clip(np.floor(d.C * e / d.N), d.min_cases, self.never)  # high-rate and min_cases
        need = np.empty((len(t), len(e)))
        for row, nmax in zip(need, self._nmax(t)):
            j = np.searchsorted(nmax, e, side="left")  # first grid count that can reach t at e
            below = np.concatenate([[self.grid[0] - 1], self.grid])  # below[j] = grid[j-1]: fails at e
            row[:] = np.where(j >= len(nmax), self.never, below[np.minimum(j, len(nmax))] + 1)
        need = np.where(t[:, None] > 0, np.maximum(need, floor), floor)
        return np.concatenate([need, np.full((len(t), 1), self.never)], axis=1).astype(d.dtype)

    def _nmax(self, t: np.ndarray) -> np.ndarray:
        """(len(t), grid): largest population at which each grid count reaches LLR >= t (-1: never)."""
        d = self.design
        c = self.grid[None, :]
        t = np.asarray(t, dtype=float)[:, None]
        hi = np.repeat(c * d.N / d.C, len(t), axis=0)  # LLR reaches 0 here (rate inside = overall rate)
        if d.model == "bernoulli":
            lo = np.repeat(c, len(t), axis=0)  # a window holds at least its cases
            ok = np.asarray(d.llr(c, lo)) >= t
        else:
            lo = np.zeros_like(hi)  # LLR -> infinity as the expected count -> 0
            ok = np.ones(hi.shape, bool)
        for _ in range(48):
            mid = 0.5 * (lo + hi)
            ge = np.asarray(d.llr(c, mid)) >= t
            lo = np.where(ge, mid, lo)
            hi = np.where(ge, hi, mid)
        nmax = np.where(ok, hi * (1 + 1e-9) + 1e-9, -1.0)
        return np.maximum.accumulate(nmax, axis=1)


# --------------------------------------------------------------------------- chunk evaluation


@dataclass(frozen=True)
class _Cutoffs:
    """Each replica's LLR threshold, as a row of minimum-case tables per population bin.

    Counts are first compared with the lowest threshold of all replicas (one
    contiguous comparison), then the few that pass with their replica's own.
    """

    rows: np.ndarray  # (R,) row of ``tables`` for each replica
    tables: np.ndarray  # (levels, bins + 1) minimum cases
    lowest: int  # row of the lowest threshold

    @classmethod
    def of(cls, best: np.ndarray, thresholds: _CaseThresholds) -> _Cutoffs:
        levels = thresholds.levels(best)
        rows, tables = thresholds.rows(levels)
        return cls(rows, tables, int(rows[np.argmin(levels)]))


class _Candidates(NamedTuple):
    """Cylinders x replicas that may beat their replica's threshold (one entry each)."""

    k: np.ndarray  # prefix index (window = first k + 1 neighbours)
    b: np.ndarray  # centre's position in the chunk
    j: np.ndarray  # temporal interval
    r: np.ndarray  # replica
    c: np.ndarray  # cases
    n: np.ndarray  # population

    @classmethod
    def concat(cls, parts: list[_Candidates]) -> _Candidates:
        return cls(*(np.concatenate(x) for x in zip(*parts)))


def _scan_chunk(
    design: _Design,
    thresholds: _CaseThresholds,
    centres: np.ndarray,
    Y: np.ndarray,
    cutoffs: _Cutoffs,
) -> Iterator[_Candidates]:
    """Find, in one chunk of centres, every cylinder and replica that may beat its threshold.

    Counts are compared with the lowest threshold of any replica, then the few
    that pass with their replica's own. Only integer comparisons are
    made here; candidates come in batches.
    """
    order, _, pops = _chunk_cylinders(design, centres)
    bins = thresholds.bins(pops)
    lowest = cutoffs.tables[cutoffs.lowest][bins]
    found: list[_Candidates] = []
    n_found = 0
    for k0, j0, sums in _cylinder_sums(design, Y, order, _BLOCK_ELEMENTS):
        k1, j1 = k0 + sums.shape[0], j0 + sums.shape[2]
        flat = _flatnonzero(sums >= lowest[k0:k1, :, j0:j1, None])
        if not flat.size:
            continue
        k, b, j, r = np.unravel_index(flat, sums.shape)
        c = sums[k, b, j, r]
        k += k0
        j += j0
        keep = c >= cutoffs.tables[cutoffs.rows[r], bins[k, b, j]]
        if keep.any():
            k, b, j, r, c = k[keep], b[keep], j[keep], r[keep], c[keep]
            found.append(_Candidates(k, b, j, r, c, pops[k, b, j]))
            n_found += len(k)
            if n_found >= _CANDIDATE_BATCH:
                yield _Candidates.concat(found)
                found, n_found = [], 0
    if found:
        yield _Candidates.concat(found)


def _flatnonzero(mask: np.ndarray) -> np.ndarray:
    """``np.flatnonzero`` of a mostly-False C-contiguous boolean array, 8 bytes at a time."""
    flat = mask.reshape(-1)
    cut = len(flat) - len(flat) % 8
    words = np.flatnonzero(flat[:cut].view(np.uint64))
    hit = np.flatnonzero(flat[:cut].reshape(-1, 8)[words]).reshape(-1)
    head = words[hit // 8] * 8 + hit % 8
    return np.concatenate([head, cut + np.flatnonzero(flat[cut:])]) if cut < len(flat) else head


class _Progress:
    """A progress bar that forked workers can advance (a shared counter); silent when disabled."""

    def __init__(self, total: int, enabled: bool):
        self.bar = None
        self.done = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc="scan", unit="chunk")
            self.done = multiprocessing.get_context("fork" if _CAN_FORK else "spawn").Value("q", 0)

    def update(self, n: int = 1) -> None:
        if self.done is not None:
            with self.done.get_lock():
                self.done.value += n

    def refresh(self) -> None:
        if self.bar is not None:
            self.bar.n = self.done.value
            self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.refresh()
            self.bar.close()


_CAN_FORK = "fork" in multiprocessing.get_all_start_methods()
_FORKED: dict[int, Callable[[Any], Any]] = {}


def _call_forked(token: int, item: Any) -> Any:
    return _FORKED[token](item)


def _parallel_map(fn: Callable[[Any], Any], items: Sequence[Any], n_jobs: int, progress: _Progress) -> list[Any]:
    """``[fn(x) for x in items]`` on up to ``n_jobs`` forked processes (they inherit ``fn``'s data).

    Worker processes, not threads: the scan makes many mid-sized numpy calls and
    threads would mostly wait for the interpreter lock. Without ``fork`` (not
    Linux/macOS), or with one job, the items are processed here, in order.
    """
    if n_jobs <= 1 or len(items) <= 1 or not _CAN_FORK or multiprocessing.current_process().daemon:
        out = []
        for item in items:
            out.append(fn(item))
            progress.refresh()
        return out
    token = id(fn)
    _FORKED[token] = fn  # set before the pool forks: workers find it by token
    try:
        ctx = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=min(n_jobs, len(items)), mp_context=ctx) as pool:
            futures = [pool.submit(_call_forked, token, item) for item in items]
            while wait(futures, timeout=0.5).not_done:
                progress.refresh()
            progress.refresh()
            return [f.result() for f in futures]
    finally:
        _FORKED.pop(token, None)


def _deal(items: Sequence[Any], n: int) -> list[list[Any]]:
    """Deal ``items`` (largest first) round-robin into ``n`` hands of similar work."""
    return [list(items[j::n]) for j in range(min(n, len(items)))]


@dataclass
class _CentreBest:
    """The best cylinder of each of a set of centres: LLR, prefix index, interval."""

    llr: np.ndarray
    k: np.ndarray
    j: np.ndarray

    @classmethod
    def empty(cls, size: int) -> _CentreBest:
        return cls(np.zeros(size), np.full(size, -1), np.full(size, -1))

    def offer(self, cand: _Candidates, llr: np.ndarray) -> None:
        """Keep, per centre, the first candidate offered with the strictly largest LLR."""
        b = cand.b
        top = np.full(len(self.llr), -np.inf)
        np.maximum.at(top, b, llr)
        hit = np.flatnonzero((llr == top[b]) & (llr > self.llr[b]))
        bb, first = np.unique(b[hit], return_index=True)
        first = hit[first]
        self.llr[bb], self.k[bb], self.j[bb] = llr[first], cand.k[first], cand.j[first]

    def update(self, centres: np.ndarray, local: _CentreBest) -> None:
        """Copy the entries of ``local``, whose positions are those of ``centres``."""
        for mine, theirs in ((self.llr, local.llr), (self.k, local.k), (self.j, local.j)):
            mine[centres] = theirs


def _observed(design: _Design, thresholds: _CaseThresholds, plan: _Plan, n_jobs: int, progress: _Progress) -> _CentreBest:
    """Best cylinder of every centre in the observed data.

    The compiled :func:`analysis.scan_kernel.centre_candidates` finds, per
    centre, the few cylinders whose LLR may be its largest; their exact LLRs
    are computed here and offered in the order :func:`_cylinder_sums` yields
    cylinders, so ties go to the same cylinder as a full numpy scan
    (:func:`_scan_chunk` with threshold 0) would choose.
    """
    from .scan_kernel import centre_candidates, narrowest

    S = design.sites.n
    Y = np.zeros((S + 1, design.days.stop - design.days.start), np.uint64)
    Y[:-1] = design.sites.cases[:, design.days]
    Y = narrowest(Y)
    ladder = np.unique(thresholds.levels(_LADDER))
    rows, tables = thresholds.rows(ladder)
    tables = np.ascontiguousarray(tables[rows])
    hi, lo = design.interval_bounds
    total = np.zeros((), design.dtype)

    def scan_hand(chunks: list[np.ndarray]) -> list[tuple[np.ndarray, _CentreBest]]:
        out = []
        for centres in chunks:
            order, sizes, pops = _chunk_cylinders(design, centres)
            found = centre_candidates(Y, total, order, sizes, hi, lo, pops, thresholds.bins(pops), tables, ladder,
                                      design.model == "poisson", float(design.C), float(design.N),
                                      _LLR_TOLERANCE)
            k, b, j, c = found[_yield_order(design, order.shape, found[:, 0], found[:, 2])].T
            cand = _Candidates(k, b, j, np.zeros_like(k), c.astype(design.dtype), pops[k, b, j])
            local = _CentreBest.empty(len(centres))
            local.offer(cand, np.asarray(design.llr(cand.c, cand.n)))
            out.append((centres, local))
            progress.update()
        return out

    best = _CentreBest.empty(design.sites.n)
    n_jobs = n_jobs if design.n_cylinders >= _PARALLEL_WORK else 1
    for hand in _parallel_map(scan_hand, _deal(plan.chunks, n_jobs), n_jobs, progress):
        for centres, local in hand:
            best.update(centres, local)
    return best


def _yield_order(design: _Design, shape: tuple[int, int], k: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Sort of cylinders ``(k, j)`` of a (K, B) chunk into the order :func:`_cylinder_sums` yields them (R = 1).

    Blocks of prefixes, then (prefix sums) runs of intervals, then prefix, then
    interval; centres do not matter (each keeps its own best).
    """
    K, B = shape
    days = 1 if design.T == 1 else design.days.stop - design.days.start + (0 if design.ends_together else 1)
    block = k // max(1, min(K, _BLOCK_ELEMENTS // (B * days)))
    if design.T == 1 or design.ends_together:
        return np.lexsort((j, k, block))
    run = np.repeat(np.arange(len(design.runs)), [j1 - j0 for j0, j1, _, _ in design.runs])
    return np.lexsort((j, k, run[j], block))


class _ReplicaBest:
    """Running maxima of some replicas, and the minimum cases per bin they imply.

    ``need[q, r]`` is the fewest cases a cylinder of population bin ``q`` needs to
    beat replica ``r``'s maximum so far (replicas contiguous, for the compiled
    kernel); only the columns of replicas whose threshold level moved are
    rewritten on a merge.
    """

    def __init__(self, R: int, thresholds: _CaseThresholds):
        self.thresholds = thresholds
        self.best = np.zeros(R)
        self.cutoffs = _Cutoffs.of(self.best, thresholds)
        self.need = np.ascontiguousarray(self.cutoffs.tables[self.cutoffs.rows].T)

    def merge(self, local: np.ndarray) -> None:
        np.maximum(self.best, local, out=self.best)
        old = self.cutoffs.rows
        self.cutoffs = _Cutoffs.of(self.best, self.thresholds)
        moved = np.flatnonzero(self.cutoffs.rows != old)
        if len(moved):
            self.need[:, moved] = self.cutoffs.tables[self.cutoffs.rows[moved]].T


def _scan_replicas(design: _Design, thresholds: _CaseThresholds, X: np.ndarray, chunks, state: _ReplicaBest,
                   progress: _Progress, prefixes: int | None = None) -> None:
    """Raise ``state``'s maxima over the windows of ``chunks`` (the first ``prefixes`` of each centre).

    The comparisons of :func:`_scan_chunk`, made by the compiled
    :func:`analysis.scan_kernel.replica_candidates` in one pass over each
    window's counts; the LLRs of the candidates it returns are computed here.
    """
    from .scan_kernel import replica_candidates, site_interval_maxima

    hi, lo = design.interval_bounds
    total = np.zeros((), design.dtype)
    # for the bound on margins as windows grow (one-site windows need none)
    site_max = site_interval_maxima(X, hi, lo) if prefixes != 1 else np.zeros((len(X), len(hi)), np.int32)
    for centres in chunks:
        order, sizes, pops = _chunk_cylinders(design, centres, prefixes)
        bins = _growing(thresholds.bins(pops))
        k, b, j, r, c = replica_candidates(X, total, order, sizes, hi, lo, bins, state.need, site_max).T
        local = np.zeros(X.shape[2])
        np.maximum.at(local, r, design.llr(c.astype(design.dtype), pops[k, b, j]))
        state.merge(local)
        progress.update()


def _growing(bins: np.ndarray) -> np.ndarray:
    """Bins (K, B, I) made nondecreasing along windows, lowering any that a later window undercuts.

    Populations grow with the window, so this only guards against rounding;
    a lower bin asks for fewer cases, so nothing is missed.
    """
    return np.ascontiguousarray(np.minimum.accumulate(bins[::-1], axis=0)[::-1])


def _replica_block_maxima(design: _Design, thresholds: _CaseThresholds, plan: _Plan, X: np.ndarray,
                          progress: _Progress) -> np.ndarray:
    """Maximum LLR of each replica in ``X`` over every window.

    The one-site windows of every centre are scanned first: they give each
    replica a threshold cheaply before the large windows are scanned.
    """
    state = _ReplicaBest(X.shape[2], thresholds)
    _scan_replicas(design, thresholds, X, plan.chunks, state, progress, prefixes=1)
    _scan_replicas(design, thresholds, X, plan.chunks, state, progress)
    return state.best


def _draw_null(design: _Design, rng: np.random.Generator, R: int) -> np.ndarray:
    """R null replicas as a padded (S + 1, scanned days, R) count array (totals fixed at C).

    Bernoulli: the C cases fall on C of the N individuals chosen without
    replacement (multivariate hypergeometric over location-days). Poisson: C
    cases are spread multinomially by population. Days no interval covers are
    pooled into one cell, whose cases are drawn but not kept.
    """
    S = design.sites.n
    inside = design.sites.population[:, design.days]
    D = inside.shape[1]
    rest = 0.0 if D == design.T else max(float(design.sites.population.sum() - inside.sum()), 0.0)
    weights = np.append(inside.ravel(), rest)
    cells = np.flatnonzero(weights > 0)
    X = np.zeros((S + 1, D, R), dtype=design.dtype)
    flat = X[:S].reshape(S * D, R)
    keep = cells < S * D
    if design.model == "bernoulli" and len(cells) >= design.C:
        # many cells, few cases: pick the C individuals (O(C)) rather than walk every cell
        ends = np.cumsum(np.rint(weights[cells]).astype(np.int64))
        for r in range(R):
            chosen = np.sort(rng.choice(int(ends[-1]), size=design.C, replace=False))
            flat[cells[keep], r] = np.diff(np.searchsorted(chosen, ends, side="left"), prepend=0)[keep]
    else:
        step = max(1, _DRAW_ELEMENTS // max(len(cells), 1))
        for r0 in range(0, R, step):
            size = min(step, R - r0)
            if design.model == "bernoulli":
                draws = rng.multivariate_hypergeometric(np.rint(weights[cells]).astype(np.int64), design.C, size=size)
            else:
                draws = rng.multinomial(design.C, weights[cells] / weights[cells].sum(), size=size)
            flat[cells[keep], r0 : r0 + size] = draws[:, keep].T
    return X


@dataclass(frozen=True)
class _Plan:
    """Centres with a window, in chunks, largest windows first; replicas in seeded blocks dealt to workers.

    Replica ``r`` belongs to block ``r // _SEED_BLOCK``, drawn from its own
    child of the seed's ``SeedSequence``: the replicas, hence the results, do
    not depend on the number of workers or on memory batching.
    """

    chunks: list[np.ndarray]
    hands: list[list[list[tuple[int, int, np.random.SeedSequence]]]]  # worker -> batch -> blocks

    @classmethod
    def of(cls, design: _Design, n_replicas: int, seed, n_jobs: int) -> _Plan:
        per = design.centres_per_chunk
        sizes = design.windows.sizes
        centres = np.flatnonzero(sizes > 0)
        centres = centres[np.argsort(-sizes[centres], kind="stable")]
        chunks = [centres[i : i + per] for i in range(0, len(centres), per)]
        root = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
        starts = list(range(0, n_replicas, _SEED_BLOCK))
        blocks = [(r0, min(r0 + _SEED_BLOCK, n_replicas), ss) for r0, ss in zip(starts, root.spawn(len(starts)))]
        S, T = design.sites.cases.shape
        most = max(1, _REPLICA_ELEMENTS // ((S + 1) * T * _SEED_BLOCK))  # blocks held at once
        hands = []
        for part in np.array_split(np.arange(len(blocks)), min(max(n_jobs, 1), max(len(blocks), 1))):
            mine = [blocks[j] for j in part]
            batches = np.array_split(np.arange(len(mine)), max(1, math.ceil(len(mine) / most)))  # even sizes
            hands.append([[mine[j] for j in batch] for batch in batches if len(batch)])
        return cls(chunks, [h for h in hands if h])

    def n_tasks(self) -> int:
        return len(self.chunks) * (1 + 2 * sum(len(h) for h in self.hands))


def _replica_maxima(design: _Design, thresholds: _CaseThresholds, plan: _Plan, n_jobs: int,
                    progress: _Progress) -> np.ndarray:
    """Maximum LLR of each null replica, over exactly the windows scanned in the data.

    Each worker draws its own blocks of replicas and scans them, a batch at a time.
    """

    from .scan_kernel import narrowest

    def scan_hand(batches) -> np.ndarray:
        out = []
        for batch in batches:
            # each block in the narrowest type that holds its counts (the kernel accumulates in design.dtype)
            drawn = [narrowest(_draw_null(design, np.random.default_rng(ss), r1 - r0)) for r0, r1, ss in batch]
            X = np.concatenate(drawn, axis=2, dtype=np.result_type(*drawn))
            del drawn
            out.append(_replica_block_maxima(design, thresholds, plan, X, progress))
        return np.concatenate(out)

    if not plan.hands:
        return np.zeros(0)
    return np.concatenate(_parallel_map(scan_hand, plan.hands, n_jobs, progress))


# --------------------------------------------------------------------------- results


@dataclass(frozen=True, repr=False)
class ScanCluster:
    """One circular cluster found by :func:`spatial_scan`.

    Attributes
    ----------
    rank : int
        1 for the most likely cluster, 2, 3, ... for secondary clusters.
    centre_id : Any
        Id of the location the circle is centred on.
    member_ids : tuple
        Ids of the locations inside, nearest the centre first.
    radius_km : float
        Great-circle distance from the centre to the farthest member.
    cases : int
        Observed cases inside.
    expected : float
        Expected cases inside under the null, ``C · population / total population``.
    population : float
        Population inside (Bernoulli: cases + controls).
    relative_risk : float
        ``(cases / expected) / ((C − cases) / (C − expected))``.
    llr : float
        Log-likelihood ratio.
    p_value : float
        Monte Carlo p-value against the replicas' maxima (NaN without replicas).
    centre_latitude, centre_longitude : float
        Coordinates of the centre, in degrees.
    """

    rank: int
    centre_id: Any
    member_ids: tuple
    radius_km: float
    cases: int
    expected: float
    population: float
    relative_risk: float
    llr: float
    p_value: float
    centre_latitude: float
    centre_longitude: float

    @property
    def n_locations(self) -> int:
        return len(self.member_ids)

    def _fields(self) -> str:
        return (
            f"rank={self.rank}, centre_id={self.centre_id!r}, n_locations={self.n_locations}, "
            f"radius_km={self.radius_km:.3f}, cases={self.cases}, expected={self.expected:.2f}, "
            f"relative_risk={self.relative_risk:.2f}, llr={self.llr:.4f}, p_value={self.p_value:.4g}"
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._fields()})"

    def to_dict(self) -> dict[str, Any]:
        """The cluster as a flat dict, ``member_ids`` joined by spaces (one CSV cell)."""
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["n_locations"] = self.n_locations
        d["member_ids"] = " ".join(map(str, self.member_ids))
        return d


@dataclass(frozen=True, repr=False)
class SpaceTimeCluster(ScanCluster):
    """A cylinder found by :func:`space_time_scan`: a :class:`ScanCluster` plus its days.

    Attributes
    ----------
    start, end : pandas.Timestamp
        First and last day of the cluster (inclusive).
    ongoing : bool
        The cluster reaches the last day of the data (prospective scans only
        report such clusters: "still going on").
    """

    start: pd.Timestamp
    end: pd.Timestamp
    ongoing: bool

    @property
    def n_days(self) -> int:
        return int((self.end - self.start).days) + 1

    def _fields(self) -> str:
        end = "ongoing" if self.ongoing else f"{self.end:%Y-%m-%d}"
        return f"{super()._fields()}, start={self.start:%Y-%m-%d}, end={end}"

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d["n_days"] = self.n_days
        return d


@dataclass(frozen=True, repr=False, eq=False)
class ScanResult:
    """Outcome of :func:`spatial_scan`.

    Attributes
    ----------
    clusters : tuple of ScanCluster
        Most likely cluster first, then secondary clusters sharing no location
        with a better one; empty when no high-rate window has enough cases.
    replica_max_llr : numpy.ndarray
        Maximum LLR of each null replica (read-only).
    n_replicas : int
    model : {'bernoulli', 'poisson'}
    locations : pandas.DataFrame
        ``id, latitude, longitude, cases, population`` per location (sorted by id).
    max_population_share, max_radius_km, min_cases
        The window limits used.
    """

    clusters: tuple[ScanCluster, ...]
    replica_max_llr: np.ndarray
    n_replicas: int
    model: str
    locations: pd.DataFrame
    max_population_share: float
    max_radius_km: float | None
    min_cases: int

    _title = "Spatial scan"

    @property
    def most_likely(self) -> ScanCluster | None:
        """The most likely cluster, or None."""
        return self.clusters[0] if self.clusters else None

    @property
    def p_value(self) -> float:
        """p-value of the most likely cluster (NaN when there is none or no replicas)."""
        return self.clusters[0].p_value if self.clusters else float("nan")

    @property
    def total_cases(self) -> int:
        return int(self.locations["cases"].sum())

    @property
    def total_population(self) -> float:
        return float(self.locations["population"].sum())

    def __repr__(self) -> str:
        head = (
            f"{type(self).__name__}(model={self.model!r}, n_locations={len(self.locations)}, "
            f"n_replicas={self.n_replicas}, n_clusters={len(self.clusters)}"
        )
        if not self.clusters:
            return head + ", most_likely=None)"
        return head + f", most_likely={self.clusters[0]!r})"

    def to_frame(self) -> pd.DataFrame:
        """One row per cluster (rank, centre, members, radius, cases, expected, RR, LLR, p)."""
        rows = [c.to_dict() for c in self.clusters]
        return pd.DataFrame(rows, columns=list(rows[0]) if rows else None)

    def _limits(self) -> str:
        parts = [f"windows up to {self.max_population_share:.0%} of the population"]
        if self.max_radius_km is not None:
            parts.append(f"radius <= {self.max_radius_km:g} km")
        parts.append(f"at least {self.min_cases} cases")
        return ", ".join(parts)

    def summary(self) -> str:
        """A short plain-text report: data, limits, and a table of clusters."""
        lines = [
            f"{self._title} statistic (Kulldorff), {self.model} model",
            f"{len(self.locations)} locations, {self.total_cases:,} cases, population "
            f"{self.total_population:,.0f}; {self._limits()}; {self.n_replicas} Monte Carlo replicas",
        ]
        if not self.clusters:
            lines.append("No high-rate window with enough cases: no cluster.")
            return "\n".join(lines)
        keep = ["rank", "centre_id", "n_locations", "radius_km", "cases", "expected", "relative_risk", "llr", "p_value"]
        extra = [c for c in ("start", "end", "ongoing") if c in self.to_frame()]
        table = self.to_frame()[keep + extra].to_string(index=False, float_format=lambda v: f"{v:.4g}")
        lines.append(table)
        best = self.clusters[0]
        lines.append(f"Most likely cluster members: {', '.join(map(str, best.member_ids))}")
        return "\n".join(lines)

    def _cluster_label(self, c: ScanCluster) -> str:
        return f"cluster {c.rank}: {c.n_locations} loc., r = {c.radius_km:.2f} km, p = {c.p_value:.3g}"

    def plot(self, ax=None, *, max_clusters: int = 5):
        """Map of locations (longitude/latitude, degrees) with the clusters' circles (radius in km).

        Parameters
        ----------
        ax : matplotlib.axes.Axes, optional
            Where to draw; a new figure is created when omitted.
        max_clusters : int, default 5
            How many clusters to draw.

        Returns
        -------
        matplotlib.axes.Axes

        Examples
        --------
        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> import pandas as pd
        >>> df = pd.DataFrame({"merchant_id": list("abcd"), "latitude": [31.0, 31.001, 31.1, 31.2],
        ...                    "longitude": [121.0, 121.0, 121.1, 121.2], "cases": [5, 4, 0, 1],
        ...                    "population": [20, 20, 20, 20]})
        >>> ax = spatial_scan(df, n_replicas=9, seed=0).plot()
        >>> ax.get_xlabel()
        'longitude (°E)'
        """
        import matplotlib.pyplot as plt
        from matplotlib.patches import Ellipse

        if ax is None:
            _, ax = plt.subplots(figsize=(7, 6))
        loc = self.locations
        rate = loc["cases"] / loc["population"].where(loc["population"] > 0)
        sc = ax.scatter(loc["longitude"], loc["latitude"], c=rate, cmap="Greys", s=14, vmin=0,
                        edgecolors="0.4", linewidths=0.3, zorder=2, label=f"locations ({len(loc)})")
        ax.figure.colorbar(sc, ax=ax, label="cases / population")
        colours = plt.get_cmap("tab10")
        by_id = loc.set_index("id")
        for j, c in enumerate(self.clusters[:max_clusters]):
            colour = colours(j % 10)
            members = by_id.loc[list(c.member_ids)]
            ax.scatter(members["longitude"], members["latitude"], s=30, color=colour, zorder=3,
                       edgecolors="k", linewidths=0.4, label=self._cluster_label(c))
            kx = 111.320 * max(math.cos(math.radians(c.centre_latitude)), 1e-6)  # km per degree
            ax.add_patch(Ellipse((c.centre_longitude, c.centre_latitude), 2 * c.radius_km / kx + 1e-9,
                                 2 * c.radius_km / 110.574 + 1e-9, fill=False, color=colour, lw=1.5, zorder=4))
        lat0 = float(loc["latitude"].mean()) if len(loc) else 0.0
        ax.set_aspect(1.0 / max(math.cos(math.radians(lat0)), 1e-6), adjustable="datalim")
        ax.set_xlabel("longitude (°E)")
        ax.set_ylabel("latitude (°N)")
        p = "none" if not self.clusters else f"LLR {self.clusters[0].llr:.2f}, p = {self.p_value:.3g}"
        ax.set_title(f"{self._title} ({self.model}): most likely cluster {p}")
        ax.legend(loc="best", fontsize=7)
        return ax


@dataclass(frozen=True, repr=False, eq=False)
class SpaceTimeResult(ScanResult):
    """Outcome of :func:`space_time_scan`: a :class:`ScanResult` whose clusters are cylinders.

    Attributes
    ----------
    start, end : pandas.Timestamp
        First and last day of the study period.
    min_days, max_days : int
        Temporal window lengths scanned.
    prospective : bool
        Whether only intervals ending on the last day were scanned.
    """

    start: pd.Timestamp = pd.NaT
    end: pd.Timestamp = pd.NaT
    min_days: int = 1
    max_days: int = 1
    prospective: bool = False

    @property
    def _title(self) -> str:  # type: ignore[override]
        return "Prospective space-time scan" if self.prospective else "Space-time scan"

    def _limits(self) -> str:
        return (
            f"{super()._limits()}; {self.start:%Y-%m-%d} to {self.end:%Y-%m-%d}, "
            f"{self.min_days}-{self.max_days} days"
        )

    def _cluster_label(self, c: ScanCluster) -> str:
        end = "ongoing" if c.ongoing else f"{c.end:%m-%d}"  # type: ignore[attr-defined]
        return f"{super()._cluster_label(c)}, {c.start:%m-%d} to {end}"  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- input checks


def _need_columns(df: pd.DataFrame, columns: Iterable[str], table: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DatasetError(
            f"{table}: expected columns {list(columns)}, missing {missing} (found {list(df.columns)}); "
            "rename them or pass the *_col arguments",
            column=missing[0],
        )


def _numeric(df: pd.DataFrame, col: str, table: str, *, integer: bool) -> np.ndarray:
    x = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(x) | (x < 0)
    if integer:
        bad |= x != np.round(x)
    if bad.any():
        kind = "non-negative integers" if integer else "non-negative numbers"
        raise DatasetError(
            f"{table}: expected {kind}, found {int(bad.sum())} bad values (first: {df[col].iloc[np.argmax(bad)]!r}); "
            "fix or drop those rows",
            column=col,
        )
    return x


def _coordinates(df: pd.DataFrame, lat_col: str, lon_col: str, table: str) -> tuple[np.ndarray, np.ndarray]:
    out = []
    for col, bound in ((lat_col, 90.0), (lon_col, 180.0)):
        x = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float)
        bad = ~(np.abs(x) <= bound)
        if bad.any():
            raise DatasetError(
                f"{table}: expected WGS84 degrees in [-{bound:g}, {bound:g}], found {int(bad.sum())} "
                "missing or out-of-range values; fix or drop those rows",
                column=col,
            )
        out.append(x)
    return out[0], out[1]


def _at_risk(df: pd.DataFrame, model: str, cases: np.ndarray, population_col: str, controls_col: str,
             expected_col: str, table: str) -> np.ndarray:
    """Population at risk per row: Bernoulli N = cases + controls; Poisson population or expected."""
    if model == "bernoulli":
        if population_col in df.columns:
            n = _numeric(df, population_col, table, integer=True)
            if controls_col in df.columns and not np.array_equal(n, cases + _numeric(df, controls_col, table, integer=True)):
                raise DatasetError(f"{table}: {population_col} must equal cases + {controls_col}; "
                                   "give one of the two columns", column=population_col)
        elif controls_col in df.columns:
            n = cases + _numeric(df, controls_col, table, integer=True)
        else:
            raise DatasetError(f"{table}: the Bernoulli model needs {population_col!r} (all transactions) "
                               f"or {controls_col!r} (transactions without incident); found {list(df.columns)}",
                               column=population_col)
        if (cases > n).any():
            raise DatasetError(f"{table}: cases must not exceed {population_col} (all transactions); "
                               f"found {int((cases > n).sum())} rows with more", column=population_col)
        return n
    col = population_col if population_col in df.columns else expected_col
    if col not in df.columns:
        raise DatasetError(f"{table}: the Poisson model needs {population_col!r} or {expected_col!r}; "
                           f"found {list(df.columns)}", column=population_col)
    n = _numeric(df, col, table, integer=False)
    if ((n == 0) & (cases > 0)).any():
        raise DatasetError(f"{table}: rows with cases but zero {col}; a Poisson window needs population "
                           "wherever there are cases", column=col)
    return n


def _check_options(model: str, max_population_share: float, max_radius_km: float | None, n_replicas: int,
                   min_cases: int, n_secondary: int) -> None:
    if model not in _MODELS:
        raise ValueError(f"model must be 'bernoulli' or 'poisson', got {model!r}")
    if not 0 < max_population_share <= 1:
        raise ValueError(f"max_population_share must be in (0, 1], got {max_population_share!r}")
    if max_radius_km is not None and not max_radius_km >= 0:
        raise ValueError(f"max_radius_km must be None or >= 0, got {max_radius_km!r}")
    if int(n_replicas) != n_replicas or n_replicas < 0:
        raise ValueError(f"n_replicas must be a non-negative integer, got {n_replicas!r}")
    if int(min_cases) != min_cases or min_cases < 1:
        raise ValueError(f"min_cases must be a positive integer, got {min_cases!r}")
    if int(n_secondary) != n_secondary or n_secondary < 0:
        raise ValueError(f"n_secondary must be a non-negative integer, got {n_secondary!r}")


def _n_jobs(n_jobs: int | None) -> int:
    if n_jobs is None:
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except AttributeError:  # pragma: no cover - not Linux
            return max(1, os.cpu_count() or 1)
    if int(n_jobs) != n_jobs or n_jobs < 1:
        raise ValueError(f"n_jobs must be None or a positive integer, got {n_jobs!r}")
    return int(n_jobs)


# --------------------------------------------------------------------------- the scan


@dataclass(frozen=True)
class _Found:
    """A reported cylinder before it is dressed as a cluster."""

    centre: int
    sites: np.ndarray
    days: np.ndarray
    llr: float
    cases: int
    population: float
    p_value: float


def _scan(design: _Design, n_replicas: int, seed, n_secondary: int, n_jobs: int, progress: bool) -> tuple[list[_Found], np.ndarray]:
    """Observed best cylinders, non-overlapping clusters, and replica maxima."""
    no_window = design.windows.sizes.max(initial=0) == 0
    if design.C < design.min_cases or no_window or (design.model == "bernoulli" and design.C >= design.N):
        return [], np.zeros(0)  # no high-rate window can exist
    thresholds = _CaseThresholds(design)
    n_jobs = n_jobs if design.n_cylinders * n_replicas >= _PARALLEL_WORK else 1  # forking costs ~0.1 s
    plan = _Plan.of(design, n_replicas, seed, n_jobs)
    bar = _Progress(plan.n_tasks(), progress)
    try:
        best = _observed(design, thresholds, plan, n_jobs, bar)
        found = _select(design, best, 1 + n_secondary)
        if not found:
            return [], np.zeros(0)
        maxima = _replica_maxima(design, thresholds, plan, n_jobs, bar)
    finally:
        bar.close()
    p = [_p_value(f.llr, maxima) for f in found]
    return [dataclasses.replace(f, p_value=pv) for f, pv in zip(found, p)], maxima


def _p_value(llr: float, maxima: np.ndarray) -> float:
    if len(maxima) == 0:
        return float("nan")
    beaten = int(np.count_nonzero(maxima >= llr - _P_TOLERANCE * max(1.0, abs(llr))))
    return (1 + beaten) / (len(maxima) + 1)


def _select(design: _Design, best: _CentreBest, n_clusters: int) -> list[_Found]:
    """Centres' best cylinders by LLR (ties: lower centre), skipping any that overlap a better one."""
    used = np.zeros(design.sites.n, bool)
    out: list[_Found] = []
    for centre in np.lexsort((np.arange(design.sites.n), -best.llr)):
        if len(out) >= n_clusters or best.llr[centre] <= 0:
            break
        sites = design.windows.of(centre)[: best.k[centre] + 1]
        if used[sites].any():
            continue
        used[sites] = True
        start = int(design.first_day[best.j[centre]])
        days = np.arange(start, start + int(design.n_days[best.j[centre]]))
        cases = int(design.sites.cases[np.ix_(sites, days)].sum())
        population = float(design.sites.population[np.ix_(sites, days)].sum())
        out.append(_Found(int(centre), sites, days, float(best.llr[centre]), cases, population, float("nan")))
    return out


def _cluster_fields(design: _Design, ids: np.ndarray, f: _Found, rank: int) -> dict[str, Any]:
    sites = design.sites
    chord = np.sqrt(((sites.xyz[f.sites] - sites.xyz[f.centre]) ** 2).sum(axis=1))
    expected = design.C * f.population / design.N
    outside = (design.C - f.cases) / (design.C - expected) if design.C > expected else float("nan")
    rr = (f.cases / expected) / outside if expected > 0 and outside > 0 else float("inf")
    members = tuple(ids[j] for s in f.sites for j in sites.members[s])
    return dict(
        rank=rank,
        centre_id=ids[sites.members[f.centre][0]],
        member_ids=members,
        radius_km=float(_chord_to_km(chord.max())),
        cases=f.cases,
        expected=float(expected),
        population=f.population,
        relative_risk=float(rr),
        llr=f.llr,
        p_value=f.p_value,
        centre_latitude=float(sites.lat[f.centre]),
        centre_longitude=float(sites.lon[f.centre]),
    )


def _design(model: str, lat, lon, cases: np.ndarray, population: np.ndarray, max_population_share: float,
            max_radius_km: float | None, intervals: tuple[np.ndarray, np.ndarray], min_cases: int,
            n_jobs: int = 1) -> _Design:
    sites = _merge_sites(lat, lon, cases, population)
    C = int(sites.cases.sum())
    N = float(sites.population.sum())
    if model == "bernoulli" and N > _MAX_BERNOULLI_TOTAL:
        raise DatasetError(
            f"the Bernoulli replicas handle up to {_MAX_BERNOULLI_TOTAL:,} transactions, found {N:,.0f}; "
            "use model='poisson' (an excellent approximation when incidents are rare)"
        )
    windows = _build_windows(sites.xyz, sites.population.sum(axis=1), max_population_share, max_radius_km, n_jobs)
    return _Design(model, sites, windows, *intervals, int(min_cases), C, N,
                   _count_dtype(C))


def spatial_scan(
    locations: pd.DataFrame,
    *,
    model: Model = "bernoulli",
    id_col: str = "merchant_id",
    lat_col: str = "latitude",
    lon_col: str = "longitude",
    cases_col: str = "cases",
    population_col: str = "population",
    controls_col: str = "controls",
    expected_col: str = "expected",
    max_population_share: float = 0.5,
    max_radius_km: float | None = None,
    n_replicas: int = 999,
    seed: int | np.random.SeedSequence | None = None,
    min_cases: int = 2,
    n_secondary: int = 10,
    n_jobs: int | None = None,
    progress: bool = False,
) -> ScanResult:
    """Kulldorff's purely spatial scan statistic (Kulldorff 1997) with circular windows.

    Parameters
    ----------
    locations : pandas.DataFrame
        One row per location (merchant): id, latitude, longitude, cases
        (incident transactions) and the population at risk.
    model : {'bernoulli', 'poisson'}, default 'bernoulli'
        Bernoulli: each transaction is an incident or not; population =
        all transactions (or give ``controls`` = transactions without incident).
        Poisson: cases against a population (or covariate-adjusted
        ``expected`` counts, rescaled to sum to the total cases).
    id_col, lat_col, lon_col, cases_col, population_col, controls_col, expected_col : str
        Column names. Bernoulli uses ``population_col`` if present, else
        ``cases + controls_col``; Poisson uses ``population_col`` if present,
        else ``expected_col``.
    max_population_share : float, default 0.5
        Largest share of the total population a window may hold (inclusive).
    max_radius_km : float, optional
        Largest window radius (great-circle km from the centre), if any.
    n_replicas : int, default 999
        Monte Carlo replicas under the null; 999 gives p-values down to 0.001.
    seed : int or numpy.random.SeedSequence, optional
        Seed of the replicas; equal seeds give identical results.
    min_cases : int, default 2
        Fewest cases a cluster may have.
    n_secondary : int, default 10
        Largest number of secondary clusters reported.
    n_jobs : int, optional
        Worker processes for the Monte Carlo (default: all available CPUs;
        small scans and platforms without ``fork`` use one). Results do
        not depend on it.
    progress : bool, default False
        Show a progress bar.

    Returns
    -------
    ScanResult
        ``clusters`` (most likely first), ``replica_max_llr``, ``p_value``,
        ``summary()``, ``to_frame()`` and ``plot()``.

    Raises
    ------
    analysis.exceptions.DatasetError
        A missing column, a duplicate id, negative or non-integer counts,
        cases above the population, or coordinates out of range.
    ValueError
        An option out of range.

    Notes
    -----
    Locations are sorted by id first, so results do not depend on row order.
    Conventions, and how the exact Monte Carlo is kept fast, are in the module
    docstring (``shared/SCAN.md``).

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"merchant_id": ["a", "b", "c", "d", "e"],
    ...                    "latitude": [31.0, 31.001, 31.05, 31.1, 31.2],
    ...                    "longitude": [121.0, 121.0, 121.05, 121.1, 121.2],
    ...                    "cases": [6, 5, 1, 0, 1], "population": [30, 30, 30, 30, 30]})
    >>> r = spatial_scan(df, n_replicas=99, seed=7)
    >>> r.clusters[0].member_ids, r.clusters[0].cases
    (('a', 'b'), 11)
    """
    _check_options(model, max_population_share, max_radius_km, n_replicas, min_cases, n_secondary)
    table = "locations"
    _need_columns(locations, (id_col, lat_col, lon_col, cases_col), table)
    df = locations.sort_values(id_col, kind="stable").reset_index(drop=True)
    ids = df[id_col].to_numpy()
    dup = pd.Series(ids)[pd.Series(ids).duplicated()].unique()
    if len(dup):
        raise DatasetError(f"{table}: {id_col} must be unique, found duplicates {list(dup[:5])}; "
                           "aggregate to one row per location", column=id_col)
    lat, lon = _coordinates(df, lat_col, lon_col, table)
    cases = _numeric(df, cases_col, table, integer=True)
    population = _at_risk(df, model, cases, population_col, controls_col, expected_col, table)
    design = _design(model, lat, lon, cases[:, None].astype(np.int64), population[:, None], max_population_share,
                     max_radius_km, _intervals(1, 1, 1, False), min_cases, _n_jobs(n_jobs))
    found, maxima = _scan(design, int(n_replicas), seed, int(n_secondary), _n_jobs(n_jobs), progress)
    clusters = tuple(ScanCluster(**_cluster_fields(design, ids, f, j + 1)) for j, f in enumerate(found))
    maxima.setflags(write=False)
    frame = pd.DataFrame({"id": ids, "latitude": lat, "longitude": lon, "cases": cases.astype(np.int64),
                          "population": population})
    return ScanResult(clusters, maxima, int(n_replicas), model, frame, float(max_population_share),
                      max_radius_km, int(min_cases))


def space_time_scan(
    counts: pd.DataFrame,
    *,
    locations: pd.DataFrame | None = None,
    model: Model = "poisson",
    id_col: str = "merchant_id",
    date_col: str = "date",
    lat_col: str = "latitude",
    lon_col: str = "longitude",
    cases_col: str = "cases",
    population_col: str = "population",
    controls_col: str = "controls",
    expected_col: str = "expected",
    max_population_share: float = 0.5,
    max_radius_km: float | None = None,
    max_days: int | None = None,
    min_days: int = 1,
    prospective: bool = False,
    n_replicas: int = 999,
    seed: int | np.random.SeedSequence | None = None,
    min_cases: int = 2,
    n_secondary: int = 10,
    n_jobs: int | None = None,
    progress: bool = False,
) -> SpaceTimeResult:
    """Space-time scan statistic with cylinders (Kulldorff et al. 1998; prospective: Kulldorff 2001).

    A cylinder is a circular window (as in :func:`spatial_scan`) times a
    contiguous interval of days. Expected counts are proportional to the
    population of each location-day (Poisson) or follow from the transactions
    per location-day (Bernoulli); the replicas keep the total cases fixed.

    Parameters
    ----------
    counts : pandas.DataFrame
        One row per location and day: id, date, cases and the population at
        risk (see :func:`spatial_scan` for the columns per model). Coordinates
        come from ``lat_col``/``lon_col`` in ``counts`` or from ``locations``.
        Location-days without a row have no population and no cases.
    locations : pandas.DataFrame, optional
        id, latitude, longitude per location, when ``counts`` has no coordinates.
    model : {'poisson', 'bernoulli'}, default 'poisson'
    id_col, date_col, lat_col, lon_col, cases_col, population_col, controls_col, expected_col : str
        Column names.
    max_population_share : float, default 0.5
        Largest share of the population (summed over the study period) inside the circle.
    max_radius_km : float, optional
        Largest circle radius in km.
    max_days : int, optional
        Longest interval in days (default: half the study period, at least 1).
    min_days : int, default 1
        Shortest interval in days.
    prospective : bool, default False
        Only intervals ending on the last day (clusters still going on).
    n_replicas, seed, min_cases, n_secondary, n_jobs, progress
        As in :func:`spatial_scan`.

    Returns
    -------
    SpaceTimeResult
        Clusters with ``start``, ``end`` and ``ongoing``, plus everything a
        :class:`ScanResult` has.

    Examples
    --------
    >>> import pandas as pd
    >>> days = pd.date_range("2025-03-01", periods=10)
    >>> rows = [{"merchant_id": m, "date": d, "latitude": 31 + i / 100, "longitude": 121.0,
    ...          "cases": 4 if (i < 2 and j >= 7) else 0, "population": 100}
    ...         for i, m in enumerate("abcdef") for j, d in enumerate(days)]
    >>> r = space_time_scan(pd.DataFrame(rows), n_replicas=99, seed=3)
    >>> c = r.clusters[0]
    >>> c.member_ids, f"{c.start:%m-%d}", c.ongoing
    (('a', 'b'), '03-08', True)
    """
    _check_options(model, max_population_share, max_radius_km, n_replicas, min_cases, n_secondary)
    table = "counts"
    _need_columns(counts, (id_col, date_col, cases_col), table)
    df = counts.copy()
    df["_day"] = pd.to_datetime(df[date_col], errors="coerce").dt.normalize()
    if df["_day"].isna().any():
        raise DatasetError(f"{table}: expected dates, found {int(df['_day'].isna().sum())} unreadable values",
                           column=date_col)
    if df.duplicated([id_col, "_day"]).any():
        raise DatasetError(f"{table}: expected one row per location and day, found duplicates; aggregate them",
                           column=date_col)
    geo = _location_table(df, locations, id_col, lat_col, lon_col)
    ids = geo[id_col].to_numpy()
    lat, lon = _coordinates(geo, lat_col, lon_col, "locations")
    cases_row = _numeric(df, cases_col, table, integer=True)
    pop_row = _at_risk(df, model, cases_row, population_col, controls_col, expected_col, table)
    start, end = df["_day"].min(), df["_day"].max()
    T = int((end - start).days) + 1
    loc_idx = pd.Index(ids).get_indexer(df[id_col])
    day_idx = (df["_day"] - start).dt.days.to_numpy()
    cases = np.zeros((len(ids), T), np.int64)
    pop = np.zeros((len(ids), T))
    cases[loc_idx, day_idx] = cases_row.astype(np.int64)
    pop[loc_idx, day_idx] = pop_row
    max_days = max(1, T // 2) if max_days is None else int(max_days)
    if not 1 <= int(min_days) <= max_days <= T:
        raise ValueError(f"need 1 <= min_days <= max_days <= {T} (days in the data), got {min_days}, {max_days}")
    design = _design(model, lat, lon, cases, pop, max_population_share, max_radius_km,
                     _intervals(T, int(min_days), max_days, bool(prospective)), min_cases, _n_jobs(n_jobs))
    found, maxima = _scan(design, int(n_replicas), seed, int(n_secondary), _n_jobs(n_jobs), progress)
    dates = pd.date_range(start, end, freq="D")
    clusters = tuple(
        SpaceTimeCluster(**_cluster_fields(design, ids, f, j + 1), start=dates[f.days[0]], end=dates[f.days[-1]],
                         ongoing=bool(f.days[-1] == T - 1))
        for j, f in enumerate(found)
    )
    maxima.setflags(write=False)
    frame = pd.DataFrame({"id": ids, "latitude": lat, "longitude": lon, "cases": cases.sum(axis=1),
                          "population": pop.sum(axis=1)})
    return SpaceTimeResult(clusters, maxima, int(n_replicas), model, frame, float(max_population_share),
                           max_radius_km, int(min_cases), start, end, int(min_days), max_days, bool(prospective))


def _location_table(df: pd.DataFrame, locations: pd.DataFrame | None, id_col: str, lat_col: str,
                    lon_col: str) -> pd.DataFrame:
    """id, latitude, longitude per location in ``df``, sorted by id."""
    if locations is None:
        _need_columns(df, (lat_col, lon_col), "counts (or pass locations=)")
        geo = df[[id_col, lat_col, lon_col]].drop_duplicates()
        if geo[id_col].duplicated().any():
            raise DatasetError(f"counts: each location needs one {lat_col}/{lon_col}, found several for "
                               f"{list(geo[id_col][geo[id_col].duplicated()].unique()[:5])}", column=lat_col)
    else:
        _need_columns(locations, (id_col, lat_col, lon_col), "locations")
        if locations[id_col].duplicated().any():
            raise DatasetError(f"locations: {id_col} must be unique", column=id_col)
        missing = set(df[id_col]) - set(locations[id_col])
        if missing:
            raise DatasetError(f"locations: no coordinates for {sorted(missing)[:5]} found in counts",
                               column=id_col)
        geo = locations[locations[id_col].isin(set(df[id_col]))][[id_col, lat_col, lon_col]]
    return geo.sort_values(id_col, kind="stable").reset_index(drop=True)
