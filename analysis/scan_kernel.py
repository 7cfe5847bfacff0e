"""The compiled inner loop of the Monte Carlo replicas of :mod:`analysis.scan`.

A replica's maximum log-likelihood ratio is found by comparing, for every
cylinder (a window of nearest neighbours over an interval of days) and every
replica, the replica's case count with the smallest count that could beat that
replica's best so far (:class:`analysis.scan._CaseThresholds`); only the rare
cylinders that pass have their LLR computed (in numpy, by the scan module).

In numpy each of these comparisons costs several passes over memory (gather,
cumulative sum, difference, comparison, search for the hits). Here one pass
does all of it: the window's day sums are accumulated neighbour by neighbour in
a buffer of ``days x replicas`` counts that stays in the processor's cache, and
each interval is one vectorized sweep over the replicas. The comparisons made
are exactly those of the numpy path (``analysis.scan._scan_chunk``), so the
candidates, and therefore the replica maxima and p-values, are the same.

Compiled with numba (``cache=True``: the machine code is kept next to this file
after the first call).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _grow(a: np.ndarray, n: int, extra: int) -> np.ndarray:  # pragma: no cover - compiled
    """``a`` with its first ``n`` rows kept and room for at least ``extra`` more."""
    bigger = np.empty((2 * a.shape[0] + extra,) + a.shape[1:], a.dtype)
    bigger[:n] = a[:n]
    return bigger


@njit(cache=True, nogil=True)
def site_interval_maxima(Y, hi, lo):  # pragma: no cover - compiled
    """Largest count of any replica at each site in each interval: (S + 1, I) int32.

    Parameters are those of :func:`replica_candidates`.
    """
    S = Y.shape[0]
    D = Y.shape[1]
    R = Y.shape[2]
    n_int = hi.shape[0]
    out = np.zeros((S, n_int), np.int32)
    cum = np.zeros((D + 1, R), np.int64)
    for s in range(S):
        for d in range(D):
            for r in range(R):
                cum[d + 1, r] = cum[d, r] + Y[s, d, r]
        for j in range(n_int):
            top = cum[hi[j]]
            bottom = cum[lo[j]]
            most = 0
            for r in range(R):
                c = top[r] - bottom[r]
                most = c if c > most else most
            out[s, j] = most
    return out


@njit(cache=True, nogil=True)
def replica_candidates(Y, total, order, sizes, hi, lo, bins, need, site_max):  # pragma: no cover - compiled
    """Cylinders and replicas whose case count reaches the replica's minimum.

    Parameters
    ----------
    Y : ndarray, shape (S + 1, D, R), unsigned integers
        Cases per site, scanned day and replica (the narrowest type that holds
        them); row S is zeros.
    total : ndarray, shape (), unsigned integers
        A zero of a type that holds any window's total (the scan's count type).
    order : ndarray, shape (K, B), integers
        The neighbour sites of B centres in scan order.
    sizes : ndarray, shape (B,)
        How many prefixes of each centre to scan.
    hi, lo : ndarray, shape (I,)
        Interval ``j`` covers days ``lo[j]`` to ``hi[j] - 1``.
    bins : ndarray, shape (K, B, I)
        Population bin of every cylinder (``_CaseThresholds.bins``),
        nondecreasing along K (windows grow).
    need : ndarray, shape (bins + 1, R)
        ``need[q, r]``: the fewest cases with which a cylinder of bin ``q`` may
        beat replica ``r``'s maximum; nondecreasing in ``q``.
    site_max : ndarray, shape (S + 1, I)
        :func:`site_interval_maxima` of ``Y``.

    Returns
    -------
    ndarray, shape (n, 5), int64
        Rows ``(k, b, j, r, c)`` with ``c >= need[bins[k, b, j], r]``, in the
        order k, j, r within each centre b.

    Notes
    -----
    The margin of a cylinder is ``max_r (cases_r - need_r)``; it holds
    candidates only if the margin is >= 0. When a window grows by one site its
    minima cannot fall (its population does not), and no replica's count rises
    by more than the site's largest count in the interval, so the margin rises
    by at most that much. A cylinder whose margin, so bounded, is still
    negative is skipped without reading the replicas; most are.
    """
    B = order.shape[1]
    D = Y.shape[1]
    R = Y.shape[2]
    n_int = hi.shape[0]
    acc = np.zeros((D + 1, R), total.dtype)  # the window's cumulative cases by day: acc[d] = days before d
    run = np.zeros(R, total.dtype)
    bound = np.zeros(n_int, np.int64)  # an upper bound of each interval's margin
    where = np.empty((1 << 14, 3), np.int64)  # candidates: (k, b, j), replica, cases
    reps = np.empty(1 << 14, np.int64)
    cases = np.empty(1 << 14, np.int64)
    n = 0
    for b in range(B):
        acc[:] = 0
        for k in range(sizes[b]):
            site = order[k, b]
            run[:] = 0
            for d in range(D):
                for r in range(R):
                    run[r] += Y[site, d, r]
                    acc[d + 1, r] += run[r]
            for j in range(n_int):
                if k > 0:
                    grown = bound[j] + site_max[site, j]
                    if grown < 0:
                        bound[j] = grown
                        continue
                floor = need[bins[k, b, j]]
                top = acc[hi[j]]
                bottom = acc[lo[j]]
                margin = np.int64(-(1 << 62))
                for r in range(R):  # branch-free, vectorized
                    m = np.int64(top[r]) - np.int64(bottom[r]) - np.int64(floor[r])
                    margin = m if m > margin else margin
                bound[j] = margin
                if margin < 0:
                    continue
                if n + R > reps.shape[0]:
                    where, reps, cases = _grow(where, n, R), _grow(reps, n, R), _grow(cases, n, R)
                first = n
                for r in range(R):  # written for every replica, kept (n advanced) for candidates
                    c = top[r] - bottom[r]
                    reps[n] = r
                    cases[n] = c
                    n += c >= floor[r]
                where[first:n, 0] = k
                where[first:n, 1] = b
                where[first:n, 2] = j
    out = np.empty((n, 5), np.int64)
    out[:, :3] = where[:n]
    out[:, 3] = reps[:n]
    out[:, 4] = cases[:n]
    return out


@njit(cache=True, nogil=True)
def _xlog(a, b):  # pragma: no cover - compiled
    return a * np.log(a / b) if a > 0 else 0.0


@njit(cache=True, nogil=True)
def llr_approx(poisson, c, n, C, N):  # pragma: no cover - compiled
    """The scan's LLR (``analysis.scan._llr``) in compiled code; equal to it up to rounding.

    Returns -1 for a window that is not high-rate.
    """
    if poisson:
        E = C * n / N
        if not c > E:
            return -1.0
        return max(_xlog(c, E) + _xlog(C - c, C - E), 0.0)
    nn = N - n
    if not c * nn > (C - c) * n:
        return -1.0
    v = (_xlog(c, n) + _xlog(n - c, n) + _xlog(C - c, nn) + _xlog(nn - (C - c), nn)
         - _xlog(C, N) - _xlog(N - C, N))
    return max(v, 0.0)


@njit(cache=True, nogil=True)
def centre_candidates(Y, total, order, sizes, hi, lo, pops, bins, tables, ladder, poisson, C, N,
                      tolerance):  # pragma: no cover - compiled
    """The cylinders of each centre whose LLR may be the centre's largest (observed data).

    Parameters
    ----------
    Y : ndarray, shape (S + 1, D)
        Cases per site and scanned day; row S is zeros.
    total, order, sizes, hi, lo, bins
        As for :func:`replica_candidates`.
    pops : ndarray, shape (K, B, I)
        Population of every cylinder.
    tables : ndarray, shape (len(ladder), bins + 1)
        Minimum cases per bin for an LLR of at least ``ladder[i]``.
    ladder : ndarray
        Increasing LLR levels, the first 0.
    poisson : bool
    C, N : float
        Total cases and population.
    tolerance : float
        Relative rounding allowance between this LLR and numpy's.

    Returns
    -------
    ndarray, shape (n, 4), int64
        Rows ``(k, b, j, c)``: every high-rate cylinder whose LLR here is within
        ``tolerance`` of the largest LLR its centre had reached when it was
        met. Whatever the exact LLRs (numpy's) are, the largest of each centre
        is among them, with all its ties.

    Notes
    -----
    A cylinder is skipped without its LLR when its cases are below the minimum
    for the highest ladder level under the centre's best so far.
    """
    B = order.shape[1]
    D = Y.shape[1]
    acc = np.zeros(D + 1, total.dtype)
    out = np.empty((1024, 4), np.int64)
    n = 0
    for b in range(B):
        acc[:] = 0
        best = 0.0
        level = 0
        for k in range(sizes[b]):
            site = order[k, b]
            run = acc[0] - acc[0]
            for d in range(D):
                run += Y[site, d]
                acc[d + 1] += run
            for j in range(hi.shape[0]):
                q = bins[k, b, j]
                c = acc[hi[j]] - acc[lo[j]]
                if c < tables[level, q]:
                    continue
                v = llr_approx(poisson, float(c), pops[k, b, j], C, N)
                if v < 0.0 or v < best - tolerance * max(best, 1.0):
                    continue
                if n == out.shape[0]:
                    out = _grow(out, n, 1)
                out[n, 0] = k
                out[n, 1] = b
                out[n, 2] = j
                out[n, 3] = c
                n += 1
                if v > best:
                    best = v
                    floor = best - 2.0 * tolerance * max(best, 1.0)
                    while level + 1 < ladder.shape[0] and ladder[level + 1] <= floor:
                        level += 1
    return out[:n]


def narrowest(counts: np.ndarray) -> np.ndarray:
    """``counts`` (unsigned) in the narrowest unsigned type that holds its largest value."""
    top = int(counts.max(initial=0))
    for dtype in (np.uint8, np.uint16, np.uint32):
        if top <= np.iinfo(dtype).max:
            return counts.astype(dtype, copy=False)
    return counts
