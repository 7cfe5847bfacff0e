"""analysis.clusters: spatial clusters in metres, deterministic ids, infrastructure groups."""

from __future__ import annotations

import doctest
import math
import warnings

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import analysis.clusters as clusters_mod  # noqa: E402
from analysis.clusters import (  # noqa: E402
    cluster_merchants,
    group_table,
    infrastructure_groups,
    spatial_clusters,
)
from analysis.exceptions import DatasetError  # noqa: E402

R = 6_371_008.8  # metres, the radius the module documents
LAT0, LON0 = 31.2300, 121.4700  # Shanghai, Huangpu


# ----------------------------------------------------------------- independent geometry


def great_circle_m(lat1, lon1, lat2, lon2) -> float:
    """Haversine formula written out here, independently of the module under test."""
    f1, f2 = math.radians(lat1), math.radians(lat2)
    dphi, dlmb = f2 - f1, math.radians(lon2 - lon1)
    a = math.sin(dphi / 2) ** 2 + math.cos(f1) * math.cos(f2) * math.sin(dlmb / 2) ** 2
    return 2 * R * math.asin(math.sqrt(a))


def offset(lat, lon, north_m=0.0, east_m=0.0) -> tuple[float, float]:
    """Point ``north_m`` north and then ``east_m`` east of (lat, lon), on the sphere."""
    lat2 = lat + math.degrees(north_m / R)
    lon2 = lon + math.degrees(east_m / (R * math.cos(math.radians(lat2))))
    return lat2, lon2


def merchants_at(points: dict[str, tuple[float, float]]) -> pd.DataFrame:
    return pd.DataFrame(
        [(mid, lat, lon) for mid, (lat, lon) in points.items()],
        columns=["merchant_id", "latitude", "longitude"],
    )


@pytest.fixture
def two_groups() -> pd.DataFrame:
    """Group A: 4 shops 100 m apart; group B: 3 shops 100 m apart, 5 km east; 2 loners."""
    pts = {f"A{i}": offset(LAT0, LON0, north_m=100 * i) for i in range(4)}
    b0 = offset(LAT0, LON0, east_m=5000)
    pts |= {f"B{i}": offset(*b0, east_m=100 * i) for i in range(3)}
    pts["Z1"] = offset(LAT0, LON0, north_m=-2500)
    pts["Z2"] = offset(LAT0, LON0, north_m=2500, east_m=2500)
    return merchants_at(pts)


# ----------------------------------------------------------------- spatial clusters


def test_two_tight_groups_and_loners(two_groups):
    # the fixture's geometry is what we claim it is
    a = two_groups.set_index("merchant_id")
    assert great_circle_m(*a.loc["A0"], *a.loc["A1"]) == pytest.approx(100, abs=0.01)
    assert great_circle_m(*a.loc["A0"], *a.loc["B0"]) == pytest.approx(5000, rel=1e-3)

    got = spatial_clusters(two_groups, eps_m=300, min_samples=3).to_contract()
    ids = dict(zip(got["merchant_id"], got["cluster_id"]))
    assert {ids[f"A{i}"] for i in range(4)} == {"S001"}  # larger cluster first
    assert {ids[f"B{i}"] for i in range(3)} == {"S002"}
    assert ids["Z1"] == "N-Z1" and ids["Z2"] == "N-Z2"


def test_eps_is_in_metres():
    pts = {f"P{i}": offset(LAT0, LON0, north_m=250 * i, east_m=0) for i in range(3)}
    m = merchants_at(pts)
    d01 = great_circle_m(*pts["P0"], *pts["P1"])
    d12 = great_circle_m(*pts["P1"], *pts["P2"])
    assert d01 == pytest.approx(250, abs=0.01) and d12 == pytest.approx(250, abs=0.01)

    at_300 = spatial_clusters(m, eps_m=300, min_samples=3).to_contract()["cluster_id"]
    at_200 = spatial_clusters(m, eps_m=200, min_samples=3).to_contract()["cluster_id"]
    assert set(at_300) == {"S001"}
    assert list(at_200) == ["N-P0", "N-P1", "N-P2"]


def test_eps_boundary_follows_documented_earth_radius():
    # 2 shops exactly 250 m apart along a parallel at 31°N: neighbours at 251 m, not at 249 m
    pts = {"P0": (LAT0, LON0), "P1": offset(LAT0, LON0, east_m=250)}
    d = great_circle_m(*pts["P0"], *pts["P1"])
    m = merchants_at(pts)
    near = spatial_clusters(m, eps_m=d + 1, min_samples=2).to_contract()["cluster_id"]
    far = spatial_clusters(m, eps_m=d - 1, min_samples=2).to_contract()["cluster_id"]
    assert near.nunique() == 1 and near.iloc[0] == "S001"
    assert far.tolist() == ["N-P0", "N-P1"]


def test_every_merchant_exactly_one_cluster_id(two_groups):
    mc = spatial_clusters(two_groups)
    out = mc.to_contract()
    assert list(out.columns) == ["merchant_id", "cluster_id"]
    assert sorted(out["merchant_id"]) == sorted(two_groups["merchant_id"])
    assert out["merchant_id"].is_unique and out["cluster_id"].notna().all()
    # singletons carry their own id, clustered merchants the S-id in both columns
    a = mc.assignments
    assert (a["cluster_id"].str.startswith("N-") == a["spatial_cluster"].isna()).all()


def _border_point_case() -> pd.DataFrame:
    """Two dense groups 500 m apart and one shop 250 m from a core shop of each (a border point)."""
    pts = {f"L{i}": offset(LAT0, LON0, north_m=50 * i) for i in range(3)}
    pts |= {f"R{i}": offset(LAT0, LON0, north_m=50 * i, east_m=500) for i in range(3)}
    pts["M"] = offset(LAT0, LON0, east_m=250)
    return merchants_at(pts)


@settings(max_examples=12, deadline=None)
@given(st.permutations(range(7)))
def test_ids_do_not_depend_on_row_order_border_point(order):
    m = _border_point_case()
    ref = spatial_clusters(m, eps_m=260, min_samples=3).to_contract()
    got = spatial_clusters(m.iloc[list(order)], eps_m=260, min_samples=3).to_contract()
    pd.testing.assert_frame_equal(got, ref)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # scikit-learn #33219 fallback
@settings(max_examples=12, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(0, 1500), st.floats(0, 1500)), min_size=3, max_size=25
    ),
    st.randoms(use_true_random=False),
    st.sampled_from(["dbscan", "hdbscan"]),
)
def test_ids_do_not_depend_on_row_order(offsets, rnd, method):
    m = merchants_at(
        {f"{i:03d}": offset(LAT0, LON0, north_m=n, east_m=e) for i, (n, e) in enumerate(offsets)}
    )
    shuffled = m.sample(frac=1.0, random_state=rnd.randint(0, 2**31))
    ref = spatial_clusters(m, eps_m=200, min_samples=3, method=method).to_contract()
    got = spatial_clusters(shuffled, eps_m=200, min_samples=3, method=method).to_contract()
    pd.testing.assert_frame_equal(got, ref)
    assert got["merchant_id"].is_unique and len(got) == len(m)


def test_hdbscan_survives_scikit_learn_epsilon_bug():
    # tied distances that make scikit-learn's epsilon search raise (its issue #33219)
    offsets = [(0.0, 633.0), (0.0, 633.0), (3.0, 822.0), (2.0, 1012.0),
               (0.0, 1026.0), (0.0, 1024.0)]
    m = merchants_at(
        {f"{i:03d}": offset(LAT0, LON0, north_m=n, east_m=e) for i, (n, e) in enumerate(offsets)}
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mc = spatial_clusters(m, eps_m=200, min_samples=3, method="hdbscan")
    assert mc.params["eps_applied_m"] in (0.0, 200.0)
    out = mc.to_contract()
    assert out["merchant_id"].tolist() == sorted(m["merchant_id"])
    assert out["cluster_id"].notna().all()


def test_hdbscan_finds_the_two_groups(two_groups):
    got = spatial_clusters(two_groups, eps_m=300, min_samples=3, method="hdbscan").to_contract()
    ids = dict(zip(got["merchant_id"], got["cluster_id"]))
    assert len({ids[f"A{i}"] for i in range(4)}) == 1
    assert len({ids[f"B{i}"] for i in range(3)}) == 1
    assert ids["A0"] != ids["B0"]


def test_summary_sizes_centroid_radius(two_groups):
    s = spatial_clusters(two_groups).summary()
    assert s["cluster_id"].tolist() == ["S001", "S002"]
    assert s["n_merchants"].tolist() == [4, 3]
    # group A is a 300 m north-south line: centroid in the middle, radius 150 m
    mid = offset(LAT0, LON0, north_m=150)
    assert s.loc[0, "centroid_lat"] == pytest.approx(mid[0], abs=1e-6)
    assert s.loc[0, "radius_m"] == pytest.approx(150, abs=0.5)
    assert s.loc[1, "radius_m"] == pytest.approx(100, abs=0.5)
    with_single = spatial_clusters(two_groups).summary(include_singletons=True)
    assert with_single["cluster_id"].tolist() == ["S001", "S002", "N-Z1", "N-Z2"]
    assert with_single.loc[2, "radius_m"] == 0


def test_bad_input_is_named():
    m = merchants_at({"a": (LAT0, LON0), "b": (95.0, LON0)})
    with pytest.raises(DatasetError, match="latitude.*b"):
        spatial_clusters(m)
    dup = pd.concat([m.iloc[:1], m.iloc[:1]])
    with pytest.raises(DatasetError, match="unique"):
        spatial_clusters(dup)
    with pytest.raises(DatasetError, match="longitude"):
        spatial_clusters(m.drop(columns="longitude"))
    with pytest.raises(ValueError, match="method"):
        spatial_clusters(m.iloc[:1], method="kmeans")


# ----------------------------------------------------------------- infrastructure


@pytest.fixture
def terminals() -> pd.DataFrame:
    rows = [
        # A0: two terminals on CT-1, one on CU-9 -> CT-1 dominant
        ("t1", "A0", "CT-1", "P10", "2.1", "4g"),
        ("t2", "A0", "CT-1", "P10", "2.1", "broadband"),
        ("t3", "A0", "CU-9", "X90", "1.0", "broadband"),
        # A1: a tie between CT-2 and CT-1 -> smallest value CT-1
        ("t4", "A1", "CT-2", "P10", "2.1", "wifi"),
        ("t5", "A1", "CT-1", "P10", "2.1", "4g"),
        ("t6", "A2", "CT-1", "P10", "2.1", "4g"),
        ("t7", "A3", "CT-1", "P10", "2.1", "4g"),
        ("t8", "B0", "CU-5", "X90", "1.0", "dialup"),
        ("t9", "B1", "CU-5", "X90", "1.0", "dialup"),
        ("t10", "Q9", "CU-5", "X90", "1.0", "dialup"),  # merchant not in merchants
    ]
    cols = ["terminal_id", "merchant_id", "network_segment", "model", "firmware", "connection"]
    return pd.DataFrame(rows, columns=cols)


def test_infrastructure_dominant_values(terminals, two_groups):
    g = infrastructure_groups(terminals, two_groups).set_index("merchant_id")
    assert list(g.index) == sorted(two_groups["merchant_id"])  # Q9 left out, loners kept
    assert g.loc["A0", "network_segment"] == "CT-1"
    assert g.loc["A0", "network_segments"] == ["CT-1", "CU-9"]
    assert g.loc["A0", "connection"] == "broadband"  # 2 of 3 terminals
    assert g.loc["A0", "connections"] == ["4g", "broadband"]
    assert g.loc["A0", "n_terminals"] == 3
    assert g.loc["A1", "network_segment"] == "CT-1"  # tie -> smallest value
    assert pd.isna(g.loc["Z1", "network_segment"]) and g.loc["Z1", "network_segments"] == []
    assert g.loc["Z1", "n_terminals"] == 0
    # without merchants: every merchant seen in terminals
    assert "Q9" in set(infrastructure_groups(terminals)["merchant_id"])


def test_group_tables(terminals):
    seg = group_table(terminals, "network_segment").set_index("network_segment")
    assert seg.loc["CT-1", "n_merchants"] == 4  # A0, A1, A2, A3
    assert seg.loc["CT-1", "n_terminals"] == 5
    assert seg.loc["CT-1", "merchant_ids"] == ["A0", "A1", "A2", "A3"]
    assert seg.loc["CU-5", "merchant_ids"] == ["B0", "B1", "Q9"]
    assert group_table(terminals, "network_segment")["n_merchants"].is_monotonic_decreasing


def test_cluster_merchants_joins_infrastructure(two_groups, terminals):
    mc = cluster_merchants(two_groups, terminals, eps_m=300)
    a = mc.assignments.set_index("merchant_id")
    assert list(mc.assignments.columns[:3]) == ["merchant_id", "cluster_id", "spatial_cluster"]
    assert a.loc["A0", "network_segment"] == "CT-1" and a.loc["B0", "model"] == "X90"
    assert pd.isna(a.loc["B2", "network_segment"])
    assert set(mc.groups) == {"network_segment", "model", "firmware", "connection"}
    s = mc.summary().set_index("cluster_id")
    assert s.loc["S001", "network_segment"] == "CT-1" and s.loc["S001", "segment_share"] == 1.0
    assert s.loc["S002", "network_segment"] == "CU-5"
    assert s.loc["S002", "segment_share"] == pytest.approx(2 / 3)
    # params and contract unchanged by the join
    assert mc.params["eps_m"] == 300.0
    pd.testing.assert_frame_equal(mc.to_contract(), spatial_clusters(two_groups).to_contract())


# ----------------------------------------------------------------- figure


def test_plot_by_cluster_and_by_rate(two_groups):
    mc = spatial_clusters(two_groups)
    ax = mc.plot()
    assert ax.get_title().startswith("Merchant clusters")
    assert ax.get_xlabel() == "longitude (°E)" and ax.get_ylabel() == "latitude (°N)"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "S001 (4)" in labels and "not clustered (2)" in labels
    lat0 = math.radians(two_groups["latitude"].mean())
    assert ax.get_aspect() == pytest.approx(1 / math.cos(lat0))
    plt.close(ax.figure)

    fig, ax2 = plt.subplots()
    rates = pd.Series(np.linspace(0, 0.2, len(two_groups)), index=two_groups["merchant_id"])
    assert mc.plot(ax=ax2, rates=rates) is ax2
    assert len(fig.axes) == 2  # the colour bar
    plt.close(fig)


def test_docstring_examples_run():
    assert doctest.testmod(clusters_mod, optionflags=doctest.NORMALIZE_WHITESPACE).failed == 0
