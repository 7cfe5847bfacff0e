"""analysis.localize: RiskLoc root causes of an excess incident rate."""

from __future__ import annotations

import doctest
import functools
import itertools

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import analysis.localize as localize_mod  # noqa: E402
from analysis.localize import expected_from_baseline, localize  # noqa: E402

DIMS = {
    "network_segment": [f"CT-PD-{i:04d}" for i in range(8)],
    "model": ["A", "B", "C", "D"],
    "firmware": ["2.0", "2.1", "3.0"],
    "connection": ["4g", "broadband", "wifi"],
}
BASE_RATE = 0.005


def synthetic_leaves(seed: int, effects=(), *, volume=(2000, 6000), base=BASE_RATE) -> pd.DataFrame:
    """288 leaves over 4 dims; ``effects`` = [(attributes, rate multiplier)], excesses add up.

    Expected incidents are transactions x the base rate (about 10-30 per leaf);
    observed incidents are Poisson around expected x multiplier.
    """
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(list(itertools.product(*DIMS.values())), columns=list(DIMS))
    df["transactions"] = rng.integers(*volume, len(df))
    multiplier = np.ones(len(df))
    for attributes, m in effects:
        hit = np.logical_and.reduce([df[k].to_numpy() == v for k, v in attributes.items()])
        multiplier += (m - 1) * hit
    df["expected"] = df["transactions"] * base
    df["incidents"] = rng.poisson(df["expected"] * multiplier)
    return df


def attribute_sets(loc) -> list[dict]:
    return list(loc.root_causes["attributes"])


# ----------------------------------------------------------------- recovery


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_single_value_with_ten_times_the_rate(seed):
    x = {"network_segment": "CT-PD-0003"}
    loc = localize(synthetic_leaves(seed, [(x, 10)]), list(DIMS))
    top = loc.root_causes.iloc[0]
    assert top["attributes"] == x
    assert top["root_cause"] == "network_segment=CT-PD-0003"
    assert top["rank"] == 1 and top["layer"] == 1
    assert top["score"] >= 0.5
    assert 8 < top["relative_risk"] < 12
    assert top["rate"] == pytest.approx(top["incidents"] / top["transactions"])
    assert top["baseline_rate"] == pytest.approx(BASE_RATE)
    assert top["explained_share"] > 0.9
    assert top["n_leaves"] == 36


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_two_attribute_combination(seed):
    combo = {"model": "A", "firmware": "2.1"}
    loc = localize(synthetic_leaves(seed, [(combo, 10)]), list(DIMS))
    assert loc.root_causes.iloc[0]["attributes"] == combo
    assert loc.root_causes.iloc[0]["root_cause"] == "model=A & firmware=2.1"
    assert {"model": "A"} not in attribute_sets(loc)
    assert {"firmware": "2.1"} not in attribute_sets(loc)
    # why not model=A alone: two thirds of its leaves are normal
    model = loc.scores(["model"]).set_index("root_cause")
    assert model.loc["model=A", "score"] < 0.5
    assert model.loc["model=A", "n_abnormal_leaves"] <= 24 < model.loc["model=A", "n_leaves"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_two_simultaneous_independent_root_causes(seed):
    seg, model = {"network_segment": "CT-PD-0005"}, {"model": "D"}
    loc = localize(synthetic_leaves(seed, [(seg, 5), (model, 3)]), list(DIMS))
    top2 = attribute_sets(loc)[:2]
    assert seg in top2 and model in top2
    assert loc.root_causes["explained_share"].head(2).sum() > 0.9


@pytest.mark.parametrize("seed", [10, 11, 12, 13])
def test_no_anomaly_no_root_cause(seed):
    leaves = synthetic_leaves(seed)
    loc = localize(leaves, list(DIMS))
    assert loc.root_causes.empty
    assert loc.notes  # says why nothing was found
    # the paper's method alone (no Poisson guard) finds nothing either ...
    assert localize(leaves, list(DIMS), alpha=None).root_causes.empty
    # ... because no single attribute value scores anywhere near the threshold
    best = max(loc.scores([d])["score"].max() for d in DIMS)
    assert best < 0.5


def test_poisson_guard_stops_a_lucky_sparse_leaf():
    # 3 incidents where 0.5 were expected (P = 0.014, 0.058 after Bonferroni over 4):
    # RiskLoc's score of a lone leaf reaches 0.5 on its own
    leaves = pd.DataFrame(
        {"seg": ["X", "Y", "Z", "W"], "incidents": [3, 1, 1, 2],
         "expected": [0.5, 1.2, 1.0, 2.2], "transactions": [100] * 4}
    )
    pure = localize(leaves, ["seg"], n_remove=0, alpha=None)
    assert attribute_sets(pure) == [{"seg": "X"}]
    guarded = localize(leaves, ["seg"], n_remove=0)
    assert guarded.root_causes.empty
    assert any("sparse" in n for n in guarded.notes)


def test_deficit_direction_down():
    seg = {"network_segment": "CT-PD-0001"}
    loc = localize(synthetic_leaves(3, [(seg, 0.1)]), list(DIMS), direction="down")
    assert attribute_sets(loc)[0] == seg
    assert loc.root_causes.iloc[0]["excess"] < 0
    auto = localize(synthetic_leaves(3, [(seg, 0.1)]), list(DIMS), direction="auto")
    assert auto.params["direction"] == "down"


# ----------------------------------------------------------------- invariances


@functools.lru_cache(maxsize=1)
def _two_cause_case():
    effects = [({"network_segment": "CT-PD-0002"}, 6), ({"model": "B", "firmware": "3.0"}, 5)]
    leaves = synthetic_leaves(4, effects)
    return leaves, localize(leaves, list(DIMS))


@settings(max_examples=3, deadline=None)
@given(st.randoms(use_true_random=False))
def test_row_order_does_not_matter(rnd):
    leaves, ref = _two_cause_case()
    assert len(ref.root_causes) == 2
    shuffled = leaves.sample(frac=1.0, random_state=rnd.randint(0, 2**31))
    got = localize(shuffled, list(DIMS))
    pd.testing.assert_frame_equal(got.root_causes, ref.root_causes)
    pd.testing.assert_frame_equal(got.leaves, ref.leaves)
    assert got.cutoff == ref.cutoff


def test_split_leaves_are_summed():
    leaves = synthetic_leaves(5, [({"network_segment": "CT-PD-0007"}, 10)])
    halves = pd.concat([leaves.assign(incidents=leaves["incidents"] // 2,
                                      expected=leaves["expected"] / 2,
                                      transactions=leaves["transactions"] / 2),
                        leaves.assign(incidents=leaves["incidents"] - leaves["incidents"] // 2,
                                      expected=leaves["expected"] / 2,
                                      transactions=leaves["transactions"] / 2)])
    a, b = localize(leaves, list(DIMS)), localize(halves, list(DIMS))
    pd.testing.assert_frame_equal(a.root_causes, b.root_causes)


# ----------------------------------------------------------------- hand-computed


def test_hand_computed_scores():
    """Four leaves over two dims; every number below follows the paper's formulas by hand."""
    leaves = pd.DataFrame(
        {
            "A": ["a1", "a1", "a2", "a2"],
            "B": ["b1", "b2", "b1", "b2"],
            "incidents": [30, 60, 9, 20],
            "expected": [10.0, 20.0, 10.0, 20.0],
            "transactions": [1000, 2000, 1000, 2000],
        }
    )
    loc = localize(leaves, ["A", "B"], n_remove=0, alpha=None)

    # 1. deviation d = 2 (f - v) / (f + v)
    d = [2 * (10 - 30) / 40, 2 * (20 - 60) / 80, 2 * (10 - 9) / 19, 0.0]  # -1, -1, 2/19, 0
    np.testing.assert_allclose(loc.leaves["deviation"], d)
    # 2. oriented s = -d; cutoff t = -min(s) = 2/19 (n_remove = 0); abnormal: s > t
    t = 2 / 19
    assert loc.cutoff == pytest.approx(t)
    assert loc.leaves["abnormal"].tolist() == [True, True, False, False]
    # 3. weights: abnormal min(|s|, 1); normal min(|t - s|, 1)
    np.testing.assert_allclose(loc.leaves["weight"], [1.0, 1.0, abs(t - (-2 / 19)), abs(t - 0)])
    # explanatory power (expected given at the observed volume): v - f
    np.testing.assert_allclose(loc.leaves["excess"], [20, 40, -1, 0])

    # 4. risk of A=a1: r1 = (1 + 1) / (1 + 1 + 0 + 1);
    #    ripple: k = 90 / 30 = 3, a = k f = (30, 60) = v, so r2 = 0
    rc = loc.root_causes
    assert len(rc) == 1
    top = rc.iloc[0]
    assert top["attributes"] == {"A": "a1"}
    assert top["r1"] == pytest.approx(2 / 3)
    assert top["r2"] == pytest.approx(0.0)
    assert top["score"] == pytest.approx(2 / 3)
    assert (top["incidents"], top["expected"], top["excess"]) == (90, 30, 60)
    assert top["rate"] == pytest.approx(90 / 3000) and top["baseline_rate"] == pytest.approx(0.01)
    assert top["relative_risk"] == pytest.approx(3.0)
    # share of the net excess over all leaves, 20 + 40 - 1 + 0
    assert top["explained_share"] == pytest.approx(60 / 59)
    assert loc.excess == 59 and loc.abnormal_excess == 60

    # B=b1: leaves (a1,b1) abnormal w=1 and (a2,b1) normal w=4/19
    r1 = 1 / (1 + 4 / 19 + 1)
    k = (30 + 9) / (10 + 10)
    dev_a = [2 * (k * 10 - 30) / (k * 10 + 30), 2 * (k * 10 - 9) / (k * 10 + 9)]
    r2 = np.mean(np.abs(dev_a)) / np.mean([1.0, 2 / 19])
    b = loc.scores(["B"]).set_index("root_cause")
    assert b.loc["B=b1", "r1"] == pytest.approx(r1)
    assert b.loc["B=b1", "r2"] == pytest.approx(r2)
    assert b.loc["B=b1", "score"] == pytest.approx(r1 - r2)
    assert b.loc["B=b1", "score"] == pytest.approx(-0.59812, abs=1e-5)
    # a layer-2 element on one abnormal leaf: r1 = 1 / (1 + 0 + 1), r2 = 0
    ab = loc.scores(["A", "B"]).set_index("root_cause")
    assert ab.loc["A=a1 & B=b1", "score"] == pytest.approx(0.5)


def test_rate_is_handled_through_its_fundamental_measures():
    # expected incidents refer to a forecast volume: f_a = 10 at f_b = 1000 transactions
    leaves = pd.DataFrame(
        {
            "seg": ["X", "Y", "Z"],
            "incidents": [60, 20, 10],
            "transactions": [2000, 2000, 1000],
            "expected": [10.0, 10.0, 10.0],
            "forecast_txn": [1000, 1000, 1000],
        }
    )
    loc = localize(leaves, ["seg"], expected_volume="forecast_txn", n_remove=0, alpha=None)
    lv = loc.leaves.set_index("seg")
    # volume doubled and incidents doubled (Y): the rate did not move, deviation 0
    assert lv.loc["Y", "expected"] == pytest.approx(20.0)
    assert lv.loc["Y", "deviation"] == pytest.approx(0.0)
    # X: rate 3 % against 1 %: d on the rates = d of v against f_a v_b / f_b = 2 (20 - 60) / 80
    assert lv.loc["X", "deviation"] == pytest.approx(2 * (0.010 - 0.030) / 0.040)
    assert lv.loc["X", "deviation"] == pytest.approx(2 * (20 - 60) / 80)
    # derived explanatory power [(v_a - f_a) F_b - (v_b - f_b) F_a] / [F_b (F_b + v_b - f_b)], x F_b
    F_a, F_b = 30.0, 3000.0
    ep_x = ((60 - 10) * F_b - (2000 - 1000) * F_a) / (F_b * (F_b + 2000 - 1000)) * F_b
    assert lv.loc["X", "excess"] == pytest.approx(ep_x)
    assert attribute_sets(loc) == [{"seg": "X"}]
    # the same data read as counts only would blame Y as well
    naive = localize(leaves, ["seg"], n_remove=0, alpha=None)
    assert naive.leaves.set_index("seg").loc["Y", "deviation"] < 0


# ----------------------------------------------------------------- expected from a baseline


def test_expected_from_baseline_marshall_shrinkage():
    base = pd.DataFrame(
        {
            "seg": ["big", "big", "small", "mid"],  # "big" has two days: summed
            "incidents": [250, 250, 1, 30],
            "transactions": [50_000, 50_000, 50, 2_000],
        }
    )
    cur = pd.DataFrame({"seg": ["big", "small", "mid", "new"], "transactions": [1000] * 4})
    got = expected_from_baseline(cur, base, ["seg"])
    # by hand: y = (500, 30, 1) over n = (100000, 2000, 50), sorted big, mid, small
    y, n = np.array([500, 30, 1.0]), np.array([100_000, 2_000, 50.0])
    r0 = y.sum() / n.sum()
    s2 = (n * (y / n - r0) ** 2).sum() / n.sum()
    A = s2 - r0 / n.mean()
    n0 = r0 / A
    rate = (y + n0 * r0) / (n + n0)
    g = got.set_index("seg")
    np.testing.assert_allclose(g.loc[["big", "mid", "small"], "baseline_rate"], rate)
    assert g.loc["new", "baseline_rate"] == pytest.approx(r0)
    np.testing.assert_allclose(got["expected"], got["transactions"] * got["baseline_rate"])
    # the dense leaf keeps about its own rate, the sparse one moves most of the way to r0
    assert g.loc["big", "baseline_rate"] == pytest.approx(0.005, rel=0.01)
    assert abs(g.loc["small", "baseline_rate"] - r0) < 0.5 * abs(1 / 50 - r0)
    assert list(got["seg"]) == list(cur["seg"])  # rows and order kept


def test_expected_from_baseline_limits():
    base = pd.DataFrame({"seg": ["X", "Y"], "incidents": [10, 30], "transactions": [1000, 1000]})
    cur = pd.DataFrame({"seg": ["X", "Y"], "transactions": [500, 500]})
    raw = expected_from_baseline(cur, base, ["seg"], prior_volume=0)
    pooled = expected_from_baseline(cur, base, ["seg"], prior_volume=np.inf)
    assert raw["expected"].tolist() == [5.0, 15.0]
    assert pooled["expected"].tolist() == [10.0, 10.0]
    none = base.assign(incidents=0)
    assert expected_from_baseline(cur, none, ["seg"])["expected"].tolist() == [0.125, 0.125]
    with pytest.raises(ValueError, match="no volume"):
        expected_from_baseline(cur, base.assign(transactions=0), ["seg"])


def test_baseline_then_localize_end_to_end():
    seg = {"network_segment": "CT-PD-0006"}
    baseline = synthetic_leaves(20, volume=(8000, 12000))
    # the baseline rate differs by model; the current period adds a segment fault
    mult = baseline["model"].map({"A": 1.0, "B": 2.0, "C": 1.0, "D": 0.5})
    rng = np.random.default_rng(21)
    baseline["incidents"] = rng.poisson(baseline["expected"] * mult)
    current = synthetic_leaves(22, [(seg, 6)])
    current["incidents"] = rng.poisson(
        current["expected"] * current["model"].map({"A": 1.0, "B": 2.0, "C": 1.0, "D": 0.5})
        * np.where(current["network_segment"] == seg["network_segment"], 6, 1)
    )
    leaves = expected_from_baseline(current.drop(columns="expected"), baseline, list(DIMS))
    loc = localize(leaves, list(DIMS))
    assert attribute_sets(loc) == [seg]
    # model B's usual, higher rate is part of what is expected, not a root cause
    by_model = leaves.groupby("model")["baseline_rate"].mean()
    assert by_model["B"] / by_model["A"] == pytest.approx(2.0, rel=0.1)


# ----------------------------------------------------------------- output


def test_summary_plot_and_empty_result():
    loc = localize(synthetic_leaves(0, [({"network_segment": "CT-PD-0003"}, 10)]), list(DIMS))
    text = loc.summary()
    assert "network_segment=CT-PD-0003" in text and "arXiv:2205.10004" in text
    assert list(loc.root_causes.columns[:3]) == ["rank", "root_cause", "attributes"]
    ax = loc.plot()
    assert "RiskLoc" in ax.get_title() and ax.get_xlabel() == "incidents in the period"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "expected incidents", "excess incidents (actual − expected)"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["network_segment=CT-PD-0003"]
    plt.close(ax.figure)

    empty = localize(synthetic_leaves(11), list(DIMS))
    assert "0 root causes" in empty.summary()
    ax = empty.plot()
    assert "no root cause" in ax.get_title()
    plt.close(ax.figure)


def test_bad_input_is_named():
    leaves = synthetic_leaves(0)
    with pytest.raises(ValueError, match="missing \\['expected'\\]"):
        localize(leaves.drop(columns="expected"), list(DIMS))
    with pytest.raises(ValueError, match="'incidents'.*negative"):
        localize(leaves.assign(incidents=-1), list(DIMS))
    with pytest.raises(ValueError, match="direction"):
        localize(leaves, list(DIMS), direction="sideways")
    with pytest.raises(ValueError, match="not among the dims"):
        localize(leaves, ["model"]).scores(["firmware"])


def test_docstring_examples_run():
    assert doctest.testmod(localize_mod, optionflags=doctest.NORMALIZE_WHITESPACE).failed == 0
