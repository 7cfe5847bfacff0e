"""The compiled replica kernel makes exactly the comparisons of the numpy scan path."""

from __future__ import annotations

import numpy as np
import pytest

from analysis import scan as sc
from analysis.scan_kernel import narrowest, replica_candidates, site_interval_maxima

CASES = [  # sites, days, model, prospective, radius km
    (30, 1, "bernoulli", False, None),
    (25, 1, "poisson", False, 2.0),
    (14, 10, "poisson", False, None),
    (12, 9, "bernoulli", True, None),
    (16, 7, "bernoulli", False, 2.0),
]


def _design(trial: int, S: int, T: int, model: str, prospective: bool, radius):
    rng = np.random.default_rng(trial)
    lat, lon = 31 + rng.random(S) * 0.05, 121 + rng.random(S) * 0.05
    pop = rng.integers(1, 40, size=(S, T)).astype(float)
    cases = rng.binomial(pop.astype(int), 0.1).astype(np.int64)
    intervals = sc._intervals(T, 1, max(1, T // 2), prospective)
    return sc._design(model, lat, lon, cases, pop, 0.5, radius, intervals, 2)


@pytest.mark.parametrize("trial", range(len(CASES)))
@pytest.mark.parametrize("level", [0.0, 1.5, 4.0])
def test_kernel_candidates_equal_the_numpy_path(trial, level):
    design = _design(trial, *CASES[trial])
    thresholds = sc._CaseThresholds(design)
    rng = np.random.default_rng(100 + trial)
    R = 37
    raw = sc._draw_null(design, rng, R)
    X = design.day_sums(raw)  # what the numpy path reads
    # replicas at different thresholds, so both the lowest table and each replica's own are exercised
    cutoffs = sc._Cutoffs.of(level * rng.random(R), thresholds)
    hi, lo = design.interval_bounds
    centres = np.flatnonzero(design.windows.sizes > 0)
    seen = 0
    for chunk in np.array_split(centres, 3):
        numpy_path = sc._Candidates.concat(list(sc._scan_chunk(design, thresholds, chunk, X, cutoffs))
                                           or [sc._Candidates(*([np.zeros(0, int)] * 5), np.zeros(0))])
        order = design.windows.block(chunk, pad=design.sites.n)
        sizes = design.windows.sizes[chunk]
        valid = np.arange(len(order))[:, None] < sizes[None, :]
        bins = sc._growing(thresholds.bins(sc._chunk_populations(design, order, valid)))
        got = replica_candidates(narrowest(raw), np.zeros((), design.dtype), order, sizes, hi, lo, bins,
                                 cutoffs.coarse, sc._COARSE_BINS, cutoffs.tables, cutoffs.rows,
                                 site_interval_maxima(raw, hi, lo))
        want = np.column_stack([numpy_path.k, numpy_path.b, numpy_path.j, numpy_path.r, numpy_path.c]).astype(np.int64)
        key = np.lexsort(want.T[::-1])
        np.testing.assert_array_equal(got[np.lexsort(got.T[::-1])], want[key])
        seen += len(got)
    if level == 0.0:
        assert seen > 0  # the comparison is not vacuous


def test_kernel_reads_only_the_given_prefixes():
    design = _design(0, *CASES[0])
    thresholds = sc._CaseThresholds(design)
    X = sc._draw_null(design, np.random.default_rng(1), 5)
    cutoffs = sc._Cutoffs.of(np.zeros(5), thresholds)
    centres = np.flatnonzero(design.windows.sizes > 1)[:4]
    order = design.windows.block(centres, pad=design.sites.n)
    bins = thresholds.bins(sc._chunk_populations(design, order, np.ones(order.shape, bool)))
    hi, lo = design.interval_bounds
    one = replica_candidates(X, np.zeros((), design.dtype), order, np.ones(len(centres), np.intp), hi, lo, bins,
                             cutoffs.coarse, sc._COARSE_BINS, cutoffs.tables, cutoffs.rows,
                             site_interval_maxima(X, hi, lo))
    assert len(one) and set(one[:, 0]) == {0}


def test_narrowest_keeps_values():
    x = np.array([0, 255], np.uint32)
    assert narrowest(x).dtype == np.uint8 and narrowest(x + 1).dtype == np.uint16
    assert narrowest(np.array([70_000], np.uint64)).dtype == np.uint32
    np.testing.assert_array_equal(narrowest(x + 1), x + 1)


def test_site_interval_maxima_brute_force():
    design = _design(2, *CASES[2])
    X = sc._draw_null(design, np.random.default_rng(3), 9)
    hi, lo = design.interval_bounds
    got = site_interval_maxima(X, hi, lo)
    want = np.array([[X[s, a:z].sum(axis=0).max() for z, a in zip(hi, lo)] for s in range(len(X))])
    np.testing.assert_array_equal(got, want)


def test_growing_bins_never_rise():
    bins = np.array([[[3]], [[2]], [[5]], [[4]]])
    np.testing.assert_array_equal(sc._growing(bins).ravel(), [2, 2, 4, 4])
