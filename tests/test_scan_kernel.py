"""The compiled replica kernel makes exactly the comparisons of the numpy scan path."""

from __future__ import annotations

import numpy as np
import pytest

from analysis import scan as sc
from analysis.scan_kernel import llr_approx, narrowest, replica_candidates, site_interval_maxima

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


def _need(cutoffs):
    return np.ascontiguousarray(cutoffs.tables[cutoffs.rows].T)


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
                                 _need(cutoffs),
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
                             _need(cutoffs),
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


def _numpy_observed(design):
    """Each centre's best cylinder by the full numpy scan (threshold 0), as before the kernel."""
    thresholds = sc._CaseThresholds(design)
    Y = design.padded(design.sites.cases[:, :, None], design.dtype)
    fixed = sc._Cutoffs.of(np.zeros(1), thresholds)
    best = sc._CentreBest.empty(design.sites.n)
    for centres in np.array_split(np.flatnonzero(design.windows.sizes > 0), 4):
        local = sc._CentreBest.empty(len(centres))
        for cand in sc._scan_chunk(design, thresholds, centres, Y, fixed):
            local.offer(cand, np.asarray(design.llr(cand.c, cand.n)))
        best.update(centres, local)
    return best


@pytest.mark.parametrize("trial", range(len(CASES)))
def test_observed_best_equals_the_full_numpy_scan_ties_included(trial):
    S, T, model, prospective, radius = CASES[trial]
    rng = np.random.default_rng(trial)
    lat, lon = 31 + rng.random(S) * 0.05, 121 + rng.random(S) * 0.05
    pop = rng.integers(1, 40, size=(S, T)).astype(float)
    pop[rng.random((S, T)) < 0.3] = 0.0  # empty site-days: neighbouring windows and intervals tie
    cases = rng.binomial(pop.astype(int), 0.15).astype(np.int64)
    intervals = sc._intervals(T, 1, max(1, T // 2), prospective)
    design = sc._design(model, lat, lon, cases, pop, 0.5, radius, intervals, 2)
    thresholds = sc._CaseThresholds(design)
    plan = sc._Plan.of(design, 0, 1, 1)
    got = sc._observed(design, thresholds, plan, 1, sc._Progress(0, False))
    want = _numpy_observed(design)
    np.testing.assert_array_equal(got.llr, want.llr)
    np.testing.assert_array_equal(got.k, want.k)
    np.testing.assert_array_equal(got.j, want.j)
    assert (got.llr > 0).any()


def test_compiled_llr_agrees_with_numpy():
    rng = np.random.default_rng(5)
    C, N = 300.0, 20_000.0
    n = rng.uniform(1, N / 2, 500)
    c = np.minimum(rng.poisson(C * n / N * 1.5), C)
    for poisson, model in ((True, "poisson"), (False, "bernoulli")):
        want = sc._llr(model, c, n, C, N)
        got = np.array([llr_approx(poisson, float(a), float(b), C, N) for a, b in zip(c, n)])
        high = got >= 0
        np.testing.assert_allclose(got[high], want[high], rtol=1e-12, atol=1e-12)
        assert np.all(want[~high] == 0)


def test_observed_ties_across_window_sizes_and_lengths_go_where_numpy_puts_them():
    """Window {A} over days 0-1 ties window {A, X} over day 0: numpy's order meets the shorter interval first."""
    lat = np.array([31.0, 31.001, 31.3, 31.31])  # A, X beside it, two far sites
    lon = np.array([121.0, 121.0, 121.3, 121.31])
    pop = np.array([[10.0, 10.0, 10.0], [10.0, 100.0, 0.0], [200.0, 200.0, 200.0], [200.0, 200.0, 200.0]])
    cases = np.array([[6, 6, 0], [6, 0, 0], [4, 4, 4], [4, 4, 4]])
    design = sc._design("poisson", lat, lon, cases, pop, 0.5, None, sc._intervals(3, 1, 2, False), 2)
    got = sc._observed(design, sc._CaseThresholds(design), sc._Plan.of(design, 0, 1, 1), 1, sc._Progress(0, False))
    want = _numpy_observed(design)
    a = int(np.flatnonzero(design.sites.lat == 31.0)[0])
    assert want.k[a] == 1 and design.n_days[want.j[a]] == 1  # the tie, as numpy resolves it
    np.testing.assert_array_equal([got.llr, got.k, got.j], [want.llr, want.k, want.j])


def test_replica_minima_follow_merges():
    design = _design(3, *CASES[3])
    thresholds = sc._CaseThresholds(design)
    state = sc._ReplicaBest(6, thresholds)
    rng = np.random.default_rng(0)
    for _ in range(5):
        state.merge(rng.uniform(0, 6, 6))
        np.testing.assert_array_equal(state.need, _need(state.cutoffs))


def test_grow_keeps_rows_and_makes_room():
    from analysis.scan_kernel import _grow

    a = np.arange(6, dtype=np.int64).reshape(3, 2)
    g = _grow(a, 2, 5)
    assert g.shape == (11, 2) and np.array_equal(g[:2], a[:2])
    v = _grow(np.arange(3, dtype=np.int64), 3, 1)
    assert v.shape == (7,) and np.array_equal(v[:3], [0, 1, 2])
