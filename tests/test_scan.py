"""Kulldorff's spatial and space-time scan statistics (analysis.scan).

The reference values are computed here from the formulas in shared/SCAN.md with
``math.log`` on literal numbers, and the scan is checked against a naive
implementation that enumerates every centre and every window.
"""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from analysis import scan as sc
from analysis.exceptions import DatasetError
from analysis.scan import llr_bernoulli, llr_poisson, space_time_scan, spatial_scan

R_EARTH = 6367.0


# --------------------------------------------------------------------------- helpers


def _xl(a: float, b: float) -> float:
    """a ln(a/b) with 0 ln 0 = 0."""
    return 0.0 if a == 0 else a * math.log(a / b)


def _naive_llr(model: str, c: float, n: float, C: float, N: float) -> float:
    if model == "bernoulli":
        if not c * (N - n) > (C - c) * n:
            return 0.0
        return _xl(c, n) + _xl(n - c, n) + _xl(C - c, N - n) + _xl(N - n - C + c, N - n) - _xl(C, N) - _xl(N - C, N)
    E = C * n / N
    return _xl(c, E) + _xl(C - c, C - E) if c > E else 0.0


def _xyz(lat: float, lon: float) -> tuple[float, float, float]:
    p, l = math.radians(lat), math.radians(lon)
    return (R_EARTH * math.cos(p) * math.cos(l), R_EARTH * math.cos(p) * math.sin(l), R_EARTH * math.sin(p))


def _naive_windows(lat, lon, pop_total, share, radius):
    """Every (centre, members) window by the SCAN.md rules, written independently of the module."""
    L = len(lat)
    pts = [_xyz(a, b) for a, b in zip(lat, lon)]
    cap = share * sum(pop_total)
    for i in range(L):
        d2 = [sum((pts[j][a] - pts[i][a]) ** 2 for a in range(3)) for j in range(L)]
        # identical coordinates first for the centre, then by distance, ties by lesser x, y, z, then index
        order = sorted(range(L), key=lambda j: (pts[j] != pts[i], d2[j], pts[j], j))
        n = 0.0
        for pos, j in enumerate(order):
            n += pop_total[j]
            gc = 2 * R_EARTH * math.asin(min(1.0, math.sqrt(d2[j]) / (2 * R_EARTH)))
            if n > cap * (1 + 1e-12) or (radius is not None and gc > radius):
                break
            if pos + 1 < L and pts[order[pos + 1]] == pts[j]:
                continue  # identical coordinates enter together
            yield i, order[: pos + 1]


def _naive_spatial(df: pd.DataFrame, model: str, share: float = 0.5, radius=None, min_cases: int = 2):
    """All windows' (LLR, member ids), best first; locations sorted by id as the module does."""
    df = df.sort_values("merchant_id").reset_index(drop=True)
    cases, pop = df["cases"].tolist(), df["population"].tolist()
    C, N = sum(cases), sum(pop)
    out = []
    for _, members in _naive_windows(df["latitude"].tolist(), df["longitude"].tolist(), pop, share, radius):
        c = sum(cases[j] for j in members)
        if c >= min_cases:
            out.append((_naive_llr(model, c, sum(pop[j] for j in members), C, N), tuple(df["merchant_id"][members])))
    return sorted(out, key=lambda x: -x[0])


def _random_locations(rng: np.random.Generator, L: int, *, duplicates: bool = False) -> pd.DataFrame:
    lat = 31.2 + rng.random(L) * 0.08
    lon = 121.4 + rng.random(L) * 0.08
    if duplicates:
        k = rng.integers(0, L, size=L // 3)
        lat[: L // 3], lon[: L // 3] = lat[k], lon[k]
    pop = rng.integers(1, 80, size=L)
    cases = rng.binomial(pop, rng.uniform(0.02, 0.3, size=L))
    ids = [f"m{j:03d}" for j in rng.permutation(L)]
    return pd.DataFrame({"merchant_id": ids, "latitude": lat, "longitude": lon, "cases": cases, "population": pop})


def _city(rng: np.random.Generator, L: int = 200, rate: float = 0.02) -> pd.DataFrame:
    """L merchants on a jittered grid (about 300 m apart), 100-400 transactions each."""
    side = int(math.ceil(math.sqrt(L)))
    gx, gy = np.meshgrid(np.arange(side), np.arange(side))
    lat = 31.20 + gy.ravel()[:L] * 0.0027 + rng.normal(0, 0.0003, L)
    lon = 121.40 + gx.ravel()[:L] * 0.0032 + rng.normal(0, 0.0003, L)
    pop = rng.integers(100, 400, size=L)
    return pd.DataFrame({"merchant_id": [f"M{i:04d}" for i in range(L)], "latitude": lat, "longitude": lon,
                         "cases": rng.binomial(pop, rate), "population": pop})


def _plant(df: pd.DataFrame, centre: int, k: int, rate: float, rng: np.random.Generator) -> list[str]:
    """Raise the incident rate of the k merchants nearest ``centre``; return their ids."""
    d = (df["latitude"] - df["latitude"][centre]) ** 2 + ((df["longitude"] - df["longitude"][centre]) * 0.855) ** 2
    near = np.argsort(d.to_numpy(), kind="stable")[:k]
    df.loc[near, "cases"] = rng.binomial(df["population"].to_numpy()[near], rate)
    return sorted(df["merchant_id"][near])


# --------------------------------------------------------------------------- LLR formulas


def test_llr_bernoulli_matches_hand_computed_value():
    # c=10 cases among n=50 inside, C=20 among N=200 in total
    expected = (10 * math.log(10 / 50) + 40 * math.log(40 / 50) + 10 * math.log(10 / 150)
                + 140 * math.log(140 / 150) - 20 * math.log(20 / 200) - 180 * math.log(180 / 200))
    assert llr_bernoulli(10, 50, 20, 200) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(3.256969, abs=1e-6)


def test_llr_poisson_matches_hand_computed_value():
    # c=10 observed, E=5 expected, C=20 in total
    expected = 10 * math.log(10 / 5) + 10 * math.log(10 / 15)
    assert llr_poisson(10, 5.0, 20) == pytest.approx(expected, rel=1e-12)


def test_llr_zero_log_zero_edges():
    # every individual inside is a case: (n - c) ln((n - c)/n) = 0
    b1 = 5 * math.log(5 / 5) + 5 * math.log(5 / 95) + 90 * math.log(90 / 95) - 10 * math.log(10 / 100) - 90 * math.log(90 / 100)
    assert llr_bernoulli(5, 5, 10, 100) == pytest.approx(b1, rel=1e-12)
    # every case is inside: (C - c) ln(...) = 0 and the outside holds controls only
    b2 = 10 * math.log(10 / 40) + 30 * math.log(30 / 40) + 60 * math.log(60 / 60) - 10 * math.log(10 / 100) - 90 * math.log(90 / 100)
    assert llr_bernoulli(10, 40, 10, 100) == pytest.approx(b2, rel=1e-12)
    # Poisson with all cases inside: the outside term vanishes
    assert llr_poisson(8, 2.0, 8) == pytest.approx(8 * math.log(8 / 2.0), rel=1e-12)
    assert np.isfinite(llr_bernoulli(0, 10, 5, 100)) and llr_bernoulli(0, 10, 5, 100) == 0.0


def test_llr_low_rate_windows_are_excluded():
    assert llr_bernoulli(2, 100, 20, 200) == 0.0  # 2% inside < 18% outside
    assert llr_poisson(3, 5.0, 20) == 0.0
    assert llr_bernoulli(10, 100, 20, 200) == 0.0  # equal rates
    two_sided = 2 * math.log(2 / 100) + 98 * math.log(98 / 100) + 18 * math.log(18 / 100) + 82 * math.log(82 / 100) \
        - 20 * math.log(20 / 200) - 180 * math.log(180 / 200)
    assert llr_bernoulli(2, 100, 20, 200, high_only=False) == pytest.approx(two_sided, rel=1e-12)
    assert llr_poisson(3, 5.0, 20, high_only=False) == pytest.approx(3 * math.log(3 / 5) + 17 * math.log(17 / 15))


def test_llr_is_vectorized():
    c = np.array([[10, 2], [0, 20]])
    out = llr_bernoulli(c, 50, 20, 200)
    assert out.shape == (2, 2)
    assert out[0, 0] == pytest.approx(llr_bernoulli(10, 50, 20, 200))
    assert out[0, 1] == 0.0 and out[1, 0] == 0.0
    assert llr_poisson(np.arange(4), 1.5, 10).shape == (4,)


# --------------------------------------------------------------------------- agreement with a naive scan


@pytest.mark.parametrize("trial", range(24))
def test_most_likely_cluster_matches_brute_force(trial):
    rng = np.random.default_rng(trial)
    df = _random_locations(rng, int(rng.integers(3, 22)), duplicates=trial % 3 == 0)
    model = ("bernoulli", "poisson")[trial % 2]
    share = (0.5, 0.3, 0.9)[trial % 3]
    radius = (None, 3.0, 1.5)[(trial // 3) % 3]
    naive = _naive_spatial(df, model, share, radius)
    got = spatial_scan(df, model=model, max_population_share=share, max_radius_km=radius, n_replicas=0)
    if not naive or naive[0][0] == 0:
        assert got.clusters == ()
        return
    best = got.clusters[0]
    assert best.llr == pytest.approx(naive[0][0], abs=1e-9)
    tied = [set(m) for v, m in naive if v > naive[0][0] - 1e-9]
    assert set(best.member_ids) in tied


@settings(max_examples=25, deadline=None)
@given(
    L=st.integers(2, 12),
    seed=st.integers(0, 10**6),
    model=st.sampled_from(["bernoulli", "poisson"]),
    share=st.sampled_from([0.2, 0.5, 1.0]),
)
def test_brute_force_agreement_hypothesis(L, seed, model, share):
    df = _random_locations(np.random.default_rng(seed), L, duplicates=seed % 2 == 0)
    naive = _naive_spatial(df, model, share)
    got = spatial_scan(df, model=model, max_population_share=share, n_replicas=0)
    top = naive[0][0] if naive else 0.0
    assert (got.clusters[0].llr if got.clusters else 0.0) == pytest.approx(top, abs=1e-9)


def test_replica_maxima_are_exact():
    """The integer pre-filter of the Monte Carlo never changes a replica's maximum."""
    for trial, (S, T, model, prospective, radius) in enumerate(
        [(25, 1, "bernoulli", False, None), (30, 1, "poisson", False, 2.0), (12, 8, "poisson", False, None),
         (14, 9, "bernoulli", True, None), (10, 6, "bernoulli", False, 2.0)]
    ):
        rng = np.random.default_rng(trial)
        lat, lon = 31 + rng.random(S) * 0.05, 121 + rng.random(S) * 0.05
        pop = rng.integers(1, 40, size=(S, T)).astype(float)
        cases = rng.binomial(pop.astype(int), 0.1).astype(np.int64)
        intervals = sc._intervals(T, 1, max(1, T // 2), prospective)
        design = sc._design(model, lat, lon, cases, pop, 0.5, radius, intervals, 2)
        thresholds = sc._CaseThresholds(design)
        plan = sc._Plan.of(design, 150, 7, 2)  # three seed blocks on two workers
        fast = sc._replica_maxima(design, thresholds, plan, 2, sc._Progress(0, False))
        blocks = [blk for hand in plan.hands for batch in hand for blk in batch]
        X = np.concatenate([sc._draw_null(design, np.random.default_rng(ss), r1 - r0) for r0, r1, ss in blocks], axis=2)
        naive = np.zeros(150)
        for centre in range(design.sites.n):
            nb = design.windows.of(centre)
            for k in range(len(nb)):
                for s0, s_in_x, d in zip(design.first_day, design.interval_starts, design.n_days):
                    c = X[nb[: k + 1], s_in_x : s_in_x + d, :].sum(axis=(0, 1)).astype(float)  # X: scanned days
                    n = design.sites.population[nb[: k + 1], s0 : s0 + d].sum()
                    naive = np.maximum(naive, np.where(c >= 2, design.llr(c, np.full(150, n)), 0.0))
        np.testing.assert_array_equal(fast, naive)


# --------------------------------------------------------------------------- statistical behaviour


def test_planted_cluster_is_recovered():
    rng = np.random.default_rng(11)
    df = _city(rng, 200, rate=0.02)
    planted = _plant(df, centre=87, k=5, rate=0.08, rng=rng)
    result = spatial_scan(df, n_replicas=199, seed=5)
    best = result.most_likely
    assert sorted(best.member_ids) == planted
    assert best.p_value <= 0.01 and result.p_value == best.p_value
    assert best.relative_risk > 2
    assert best.expected == pytest.approx(df["cases"].sum() * best.population / df["population"].sum())
    # secondary clusters: none shares a location with a better one; LLR falls, p rises
    seen: set = set()
    for c in result.clusters:
        assert not seen & set(c.member_ids)
        seen |= set(c.member_ids)
    assert all(a.llr >= b.llr and a.p_value <= b.p_value for a, b in zip(result.clusters, result.clusters[1:]))


def test_planted_cluster_poisson():
    rng = np.random.default_rng(12)
    df = _city(rng, 150, rate=0.02)
    planted = _plant(df, centre=40, k=4, rate=0.09, rng=rng)
    result = spatial_scan(df, model="poisson", n_replicas=199, seed=1)
    assert sorted(result.most_likely.member_ids) == planted
    assert result.p_value <= 0.01


@pytest.mark.slow
def test_null_p_values_are_uniform():
    """Without a cluster, p-values are uniform: no excess of false alarms."""
    p = []
    for i in range(200):
        rng = np.random.default_rng(1000 + i)
        lat, lon = 31.2 + rng.random(30) * 0.05, 121.4 + rng.random(30) * 0.05
        pop = rng.integers(20, 80, size=30)
        model = ("bernoulli", "poisson")[i % 2]
        cases = rng.binomial(pop, 0.05) if model == "bernoulli" else rng.poisson(pop * 0.05)
        df = pd.DataFrame({"merchant_id": [f"m{j}" for j in range(30)], "latitude": lat, "longitude": lon,
                           "cases": cases, "population": pop})
        p.append(spatial_scan(df, model=model, n_replicas=99, seed=i, n_jobs=1).p_value)
    p = np.array(p)
    assert np.isfinite(p).all()
    assert stats.kstest(p, "uniform").pvalue > 0.01
    assert 0.01 <= np.mean(p <= 0.05) <= 0.10


# --------------------------------------------------------------------------- window rules


def test_identical_coordinates_enter_together():
    df = pd.DataFrame({
        "merchant_id": ["a", "b", "c", "d", "e", "f"],
        "latitude": [31.2, 31.2, 31.2005, 31.25, 31.3, 31.35],
        "longitude": [121.4, 121.4, 121.4005, 121.45, 121.5, 121.55],
        "cases": [12, 0, 1, 1, 0, 1],
        "population": [40, 40, 40, 40, 40, 40],
    })
    best = spatial_scan(df, n_replicas=0).most_likely
    assert {"a", "b"} <= set(best.member_ids)  # b has no case but shares a's coordinates
    for members in (m for _, m in _naive_spatial(df, "bernoulli")):
        assert ("a" in members) == ("b" in members)


def test_exact_distance_ties_are_broken_by_coordinates_not_added_as_a_block():
    # on the equator at longitude 0, b and c are mirror images: exactly the same chord distance from a
    df = pd.DataFrame({"merchant_id": ["a", "b", "c", "d"], "latitude": [0.0, 0.0, 0.0, 0.5],
                       "longitude": [0.0, 0.5, -0.5, 1.0], "cases": [3, 0, 3, 0], "population": [10, 10, 10, 10]})
    xyz = sc._to_xyz(df["latitude"].to_numpy(), df["longitude"].to_numpy())
    assert ((xyz[1] - xyz[0]) ** 2).sum() == ((xyz[2] - xyz[0]) ** 2).sum()
    best = spatial_scan(df, max_population_share=0.75, n_replicas=0).most_likely
    # c (lesser y) comes before b: the window {a, c} exists; a block of ties would force {a, b, c}
    assert best.member_ids == ("a", "c")
    assert [set(m) for _, m in _naive_spatial(df, "bernoulli", 0.75)][0] == {"a", "c"}


def _sites(rng: np.random.Generator, S: int, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(xyz, population) of S sites; kinds with many exact distance ties and co-located sites."""
    if kind == "city":  # clustered merchants in a ~30 km city
        hub = rng.integers(0, 5, S)
        lat = 31.2 + rng.uniform(-0.12, 0.12, 5)[hub] + rng.normal(0, 0.02, S)
        lon = 121.4 + rng.uniform(-0.12, 0.12, 5)[hub] + rng.normal(0, 0.02, S)
        xyz = sc._to_xyz(lat, lon)
    elif kind == "equator grid":  # mirror images about longitude 0 are exactly tied
        side = int(math.ceil(math.sqrt(S)))
        g = rng.permutation(side * side)[:S]
        xyz = sc._to_xyz((g // side - side // 2) * 0.002, (g % side - side // 2) * 0.002)
    elif kind == "lattice":  # integer coordinates: distances are exact integers, ties everywhere, duplicates
        side = int(rng.integers(2, 9))
        xyz = np.column_stack([np.full(S, 6367.0), rng.integers(-side, side + 1, (S, 2))]).astype(float)
    else:  # "duplicates": a third of the sites repeat others' coordinates
        lat, lon = 31.2 + rng.random(S) * 0.05, 121.4 + rng.random(S) * 0.05
        k = rng.integers(0, S, S // 3)
        lat[: S // 3], lon[: S // 3] = lat[k], lon[k]
        xyz = sc._to_xyz(lat, lon)
    pop = rng.integers(1, 80, S).astype(float)
    pop[rng.random(S) < rng.uniform(0, 0.5)] = 0.0
    if rng.random() < 0.5:
        pop[rng.integers(0, S, 3)] *= 1000.0  # a few heavy sites
    return xyz, pop


def _assert_same_windows(a: sc._Windows, b: sc._Windows) -> None:
    assert a.neighbours.dtype == b.neighbours.dtype and a.offsets.dtype == b.offsets.dtype
    np.testing.assert_array_equal(a.neighbours, b.neighbours)
    np.testing.assert_array_equal(a.offsets, b.offsets)


_SITE_KINDS = ["city", "equator grid", "lattice", "duplicates"]


@settings(max_examples=60, deadline=None)
@given(S=st.integers(2, 700), seed=st.integers(0, 10**6), kind=st.sampled_from(_SITE_KINDS),
       share=st.sampled_from([1e-3, 3e-3, 0.01, 0.03, 0.1, 0.5]))
def test_windows_from_nearest_sites_equal_sorting_every_site(S, seed, kind, share):
    xyz, pop = _sites(np.random.default_rng(seed), S, kind)
    _assert_same_windows(sc._build_windows(xyz, pop, share, None),
                         sc._build_windows(xyz, pop, share, None, exhaustive=True))


@settings(max_examples=60, deadline=None)
@given(S=st.integers(4, 400), seed=st.integers(0, 10**6), kind=st.sampled_from(_SITE_KINDS),
       share=st.sampled_from([1e-3, 0.01, 0.05, 0.2, 0.5, 1.0]), k=st.integers(1, 100))
def test_nearest_lists_are_exact_whatever_the_first_guess(S, seed, kind, share, k):
    # a small first k makes most centres retry (2k, 4k, ...) and some end in the exhaustive sort
    xyz, pop = _sites(np.random.default_rng(seed), S, kind)
    rank = np.lexsort((xyz[:, 2], xyz[:, 1], xyz[:, 0]))
    pts, p = xyz[rank], pop[rank]
    cap = share * float(pop.sum()) * (1.0 + 1e-12)
    got = sc._nearest_lists(pts, xyz, p, cap, min(k, max(1, S // 4)), 1)
    want = sc._exhaustive_lists(pts, xyz, p, cap, 1)
    assert len(got) == len(want) == S
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("kind", _SITE_KINDS)
def test_windows_of_a_large_city_equal_sorting_every_site(kind, monkeypatch):
    rng = np.random.default_rng(len(kind))
    xyz, pop = _sites(rng, 2000, kind)
    for share in (1e-3, 0.01, 0.04):
        _assert_same_windows(sc._build_windows(xyz, pop, share, None),
                             sc._build_windows(xyz, pop, share, None, exhaustive=True))
    monkeypatch.setattr(sc, "_PARALLEL_WORK", 0)  # worker processes, and the same windows
    _assert_same_windows(sc._build_windows(xyz, pop, 0.01, None, n_jobs=2),
                         sc._build_windows(xyz, pop, 0.01, None, exhaustive=True))


def test_small_windows_do_not_sort_every_site(monkeypatch):
    xyz, pop = _sites(np.random.default_rng(7), 3000, "city")
    sorted_for = []  # the centres whose windows sort every site (None: all of them)
    exhaustive = sc._exhaustive_lists

    def spy(pts, xyz, pop, cap, n_jobs, centres=None):
        sorted_for.append(centres)
        return exhaustive(pts, xyz, pop, cap, n_jobs, centres)

    monkeypatch.setattr(sc, "_exhaustive_lists", spy)
    w = sc._build_windows(xyz, pop, 0.01, None)
    assert w.sizes.max() < 100  # about 30 sites a window
    assert all(c is not None and len(c) < 30 for c in sorted_for)  # at most a few centres fall back
    sc._build_windows(xyz, pop, 0.5, None)  # half the sites a window: sorting all of them is cheaper
    assert sorted_for[-1] is None


def test_radius_and_population_caps_are_honoured():
    rng = np.random.default_rng(3)
    df = _city(rng, 150)
    planted = _plant(df, centre=70, k=12, rate=0.08, rng=rng)
    free = spatial_scan(df, n_replicas=0)
    assert set(free.most_likely.member_ids) == set(planted)
    capped = spatial_scan(df, n_replicas=0, max_radius_km=0.35)
    assert all(c.radius_km <= 0.35 for c in capped.clusters)
    assert capped.most_likely.n_locations < len(planted)
    share = spatial_scan(df, n_replicas=0, max_population_share=0.03)
    total = df["population"].sum()
    assert all(c.population <= 0.03 * total for c in share.clusters)
    # the radius is the great-circle distance from the centre to the farthest member
    m = df.set_index("merchant_id").loc[list(free.most_likely.member_ids)]
    c = df.set_index("merchant_id").loc[free.most_likely.centre_id]
    p1, p2 = np.radians(c["latitude"]), np.radians(m["latitude"].to_numpy())
    dl = np.radians(m["longitude"].to_numpy() - c["longitude"])
    gc = 2 * R_EARTH * np.arcsin(np.sqrt(np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2))
    assert free.most_likely.radius_km == pytest.approx(gc.max(), rel=1e-9)
    assert free.most_likely.member_ids[0] == free.most_likely.centre_id


def test_seed_gives_identical_results_whatever_the_workers_or_row_order(monkeypatch):
    rng = np.random.default_rng(4)
    df = _city(rng, 120)
    a = spatial_scan(df, n_replicas=199, seed=42, n_jobs=1)
    monkeypatch.setattr(sc, "_PARALLEL_WORK", 0)  # use worker processes even for this small scan
    b = spatial_scan(df.sample(frac=1.0, random_state=1), n_replicas=199, seed=42, n_jobs=3)
    np.testing.assert_array_equal(a.replica_max_llr, b.replica_max_llr)
    assert [c.to_dict() for c in a.clusters] == [c.to_dict() for c in b.clusters]
    c = spatial_scan(df, n_replicas=199, seed=43)
    assert not np.array_equal(a.replica_max_llr, c.replica_max_llr)


def test_p_value_counts_replicas_at_least_as_large():
    rng = np.random.default_rng(5)
    r = spatial_scan(_city(rng, 80), n_replicas=49, seed=0)
    best = r.most_likely
    rank = 1 + np.sum(r.replica_max_llr >= best.llr - 1e-9 * max(1, best.llr))
    assert best.p_value == rank / 50
    assert r.replica_max_llr.shape == (49,) and not r.replica_max_llr.flags.writeable


def test_bernoulli_population_or_controls_and_poisson_expected():
    rng = np.random.default_rng(6)
    df = _city(rng, 60)
    by_pop = spatial_scan(df, n_replicas=19, seed=1)
    with_controls = df.assign(controls=df["population"] - df["cases"]).drop(columns="population")
    by_controls = spatial_scan(with_controls, n_replicas=19, seed=1)
    assert by_pop.most_likely.to_dict() == by_controls.most_likely.to_dict()
    pois = spatial_scan(df, model="poisson", n_replicas=0)
    expected = df.assign(expected=df["population"] * df["cases"].sum() / df["population"].sum()).drop(columns="population")
    by_expected = spatial_scan(expected, model="poisson", n_replicas=0)
    assert by_expected.most_likely.llr == pytest.approx(pois.most_likely.llr, rel=1e-12)


def test_no_cases_gives_no_cluster():
    df = _city(np.random.default_rng(7), 30).assign(cases=0)
    r = spatial_scan(df, n_replicas=19)
    assert r.clusters == () and math.isnan(r.p_value) and r.most_likely is None
    assert "no cluster" in r.summary()


def test_bad_input_is_explained():
    df = _city(np.random.default_rng(8), 10)
    with pytest.raises(DatasetError, match="population"):
        spatial_scan(df.drop(columns="population"))
    with pytest.raises(DatasetError, match="exceed"):
        spatial_scan(df.assign(cases=df["population"] + 1))
    with pytest.raises(DatasetError, match="unique"):
        spatial_scan(pd.concat([df, df.head(1)]))
    with pytest.raises(DatasetError, match="latitude"):
        spatial_scan(df.assign(latitude=95.0))
    with pytest.raises(ValueError, match="max_population_share"):
        spatial_scan(df, max_population_share=0)
    with pytest.raises(ValueError, match="model"):
        spatial_scan(df, model="normal")


# --------------------------------------------------------------------------- space-time


def _daily(rng: np.random.Generator, L: int, days: int, rate: float = 0.01) -> pd.DataFrame:
    geo = _city(rng, L)
    dates = pd.date_range("2025-03-01", periods=days)
    pop = rng.integers(20, 60, size=(L, days))
    return pd.DataFrame({
        "merchant_id": np.repeat(geo["merchant_id"], days), "date": np.tile(dates, L),
        "latitude": np.repeat(geo["latitude"], days), "longitude": np.repeat(geo["longitude"], days),
        "cases": rng.binomial(pop, rate).ravel(), "population": pop.ravel(),
    })


def _plant_days(df: pd.DataFrame, ids: list[str], first: int, last: int, rate: float, rng) -> None:
    day = (df["date"] - df["date"].min()).dt.days
    hit = df["merchant_id"].isin(ids) & day.between(first, last)
    df.loc[hit, "cases"] = rng.binomial(df.loc[hit, "population"], rate)


def test_space_time_planted_cluster_is_recovered():
    rng = np.random.default_rng(21)
    df = _daily(rng, 64, 60)
    ids = [f"M{i:04d}" for i in (27, 28, 35, 36)]
    _plant_days(df, ids, 20, 35, 0.08, rng)
    r = space_time_scan(df, n_replicas=99, seed=2, max_radius_km=1.0)
    best = r.most_likely
    assert abs((best.start - pd.Timestamp("2025-03-21")).days) <= 2
    assert abs((best.end - pd.Timestamp("2025-04-05")).days) <= 2
    assert set(best.member_ids) & set(ids) and len(set(best.member_ids) - set(ids)) <= 1
    assert best.p_value <= 0.01 and not best.ongoing
    assert r.max_days == 30 and r.start == pd.Timestamp("2025-03-01")


def test_prospective_scan_reports_an_ongoing_cluster():
    rng = np.random.default_rng(22)
    df = _daily(rng, 49, 40)
    ids = [f"M{i:04d}" for i in (24, 25, 31)]
    _plant_days(df, ids, 32, 39, 0.09, rng)
    r = space_time_scan(df, n_replicas=99, seed=3, prospective=True, max_days=14, model="bernoulli")
    best = r.most_likely
    assert best.ongoing and best.end == df["date"].max()
    assert abs((best.start - pd.Timestamp("2025-04-02")).days) <= 2
    assert best.p_value <= 0.01
    assert all(c.ongoing for c in r.clusters)


def test_space_time_matches_brute_force():
    rng = np.random.default_rng(23)
    L, T = 7, 8
    df = _daily(rng, L, T, rate=0.05)
    for model, prospective in (("poisson", False), ("bernoulli", True)):
        r = space_time_scan(df, n_replicas=0, model=model, prospective=prospective, max_days=4)
        geo = df.drop_duplicates("merchant_id").sort_values("merchant_id")
        cases = df.pivot(index="merchant_id", columns="date", values="cases").to_numpy()
        pop = df.pivot(index="merchant_id", columns="date", values="population").to_numpy()
        C, N = cases.sum(), pop.sum()
        best = (0.0, None)
        for _, members in _naive_windows(geo["latitude"].tolist(), geo["longitude"].tolist(),
                                         pop.sum(axis=1).tolist(), 0.5, None):
            for d in range(1, 5):
                for s0 in ([T - d] if prospective else range(T - d + 1)):
                    c = cases[members, s0 : s0 + d].sum()
                    if c >= 2:
                        v = _naive_llr(model, c, pop[members, s0 : s0 + d].sum(), C, N)
                        if v > best[0] + 1e-12:
                            best = (v, (set(geo["merchant_id"].iloc[members]), s0, s0 + d - 1))
        got = r.most_likely
        assert got.llr == pytest.approx(best[0], abs=1e-9)
        first = (got.start - df["date"].min()).days
        assert (set(got.member_ids), first, first + got.n_days - 1) == best[1]


def test_space_time_with_separate_locations_table():
    rng = np.random.default_rng(24)
    df = _daily(rng, 9, 6)
    geo = df.drop_duplicates("merchant_id")[["merchant_id", "latitude", "longitude"]]
    a = space_time_scan(df, n_replicas=9, seed=1)
    b = space_time_scan(df.drop(columns=["latitude", "longitude"]), locations=geo, n_replicas=9, seed=1)
    assert repr(a) == repr(b)
    with pytest.raises(DatasetError, match="one row per location and day"):
        space_time_scan(pd.concat([df, df.head(1)]))
    with pytest.raises(ValueError, match="max_days"):
        space_time_scan(df, max_days=20)


# --------------------------------------------------------------------------- reports and figures


def test_summary_repr_and_frame():
    rng = np.random.default_rng(31)
    df = _city(rng, 100)
    _plant(df, 30, 4, 0.1, rng)
    r = spatial_scan(df, n_replicas=19, seed=0, max_radius_km=2)
    text = r.summary()
    assert "bernoulli" in text and "radius <= 2 km" in text and r.most_likely.centre_id in text
    assert repr(r).startswith("ScanResult(model='bernoulli'") and "llr=" in repr(r.most_likely)
    frame = r.to_frame()
    assert list(frame["rank"]) == list(range(1, len(r.clusters) + 1))
    assert {"centre_id", "member_ids", "radius_km", "relative_risk", "p_value"} <= set(frame.columns)


@pytest.mark.parametrize("kind", ["spatial", "space-time", "empty"])
def test_plot_has_title_units_and_legend(kind):
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(32)
    if kind == "space-time":
        r = space_time_scan(_daily(rng, 25, 10), n_replicas=9, seed=0)
    else:
        df = _city(rng, 40)
        r = spatial_scan(df.assign(cases=0) if kind == "empty" else df, n_replicas=9, seed=0)
    fig, ax = plt.subplots()
    assert r.plot(ax=ax) is ax
    assert ax.get_title() and "°" in ax.get_xlabel() and "°" in ax.get_ylabel()
    legend = ax.get_legend()
    assert legend is not None and legend.get_texts()
    if r.clusters:
        assert "km" in legend.get_texts()[1].get_text()
    plt.close(fig)
    if kind == "space-time":
        assert "to" in r.summary() and "start" in r.to_frame()
