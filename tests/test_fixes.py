"""Tests of analysis.fixes: DiD by hand, clustered SEs, bootstrap, placebos, staggered fixes,
coverage against the simulator's true effects, and the what-if model."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import statsmodels.api as sm  # noqa: E402

from analysis.contract import OUTPUTS  # noqa: E402
from analysis.fixes import (  # noqa: E402
    FixEvaluation,
    detect_onset,
    evaluate_fix,
    evaluate_fixes,
    onsets_from_faults,
    split_periods,
)
from analysis.io import Dataset  # noqa: E402
from analysis.metrics import daily_panel  # noqa: E402
from analysis.reconcile import default_as_of, reconcile  # noqa: E402
from analysis.simulate import CityConfig, Fix, UnstableLink, simulate_city  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
COUNTS = ("attempts", "approved", "unsettled", "reversal_failed", "returned", "not_cleared",
          "link_errors")


def _bench():
    spec = importlib.util.spec_from_file_location("bench_fixes", ROOT / "benchmarks" / "bench_fixes.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_panel(*, n_treated=10, n_control=30, days=30, fix_day=15, p_before=0.02, p_after=0.005,
               p_control=0.003, n_per_day=100, seed=0, start="2026-03-02"):
    """A merchant × day panel with binomial unsettled counts (all reversal failures, all mature)."""
    rng = np.random.default_rng(seed)
    merchants = [f"T{i:02d}" for i in range(n_treated)] + [f"C{i:02d}" for i in range(n_control)]
    dates = pd.date_range(start, periods=days)
    m, d = np.meshgrid(np.arange(len(merchants)), np.arange(days), indexing="ij")
    m, d = m.ravel(), d.ravel()
    treated = m < n_treated
    n = rng.poisson(n_per_day, size=len(m)) + 1
    p = np.where(treated, np.where(d >= fix_day, p_after, p_before), p_control)
    u = rng.binomial(n, p)
    frame = pd.DataFrame({
        "merchant_id": np.asarray(merchants)[m], "business_date": dates[d],
        "attempts": n, "approved": n - u, "unsettled": u, "reversal_failed": u,
        "returned": 0, "not_cleared": 0, "link_errors": rng.poisson(np.where(treated, 3, 1)),
        "mature": True, "network_segment": np.where(treated, "SEG-T", "SEG-C"),
        "model": "P1", "firmware": "1.0",
    })
    return frame


def intervention(applied="2026-03-17 01:00", scope="SEG-T", change_id="X1", kind="network_upgrade",
                 scope_type="network_segment"):
    return {"change_id": change_id, "applied_at": pd.Timestamp(applied, tz="Asia/Shanghai"),
            "scope_type": scope_type, "scope_value": scope, "kind": kind}


QUIET = dict(n_boot=0, screen_alpha=0, detect=False)


# ---------------------------------------------------------------------------------
# Difference in differences by hand
# ---------------------------------------------------------------------------------


def test_did_equals_the_hand_computed_two_by_two():
    # two treated and two control merchants, two days before and two after the fix
    rows = []
    spec = {"T1": (50, [1, 2], [0, 1]), "T2": (80, [3, 2], [1, 0]),
            "C1": (60, [1, 0], [1, 1]), "C2": (40, [0, 1], [0, 2])}
    dates = pd.date_range("2026-03-10", periods=4)
    for mid, (n, before, after) in spec.items():
        for k, day in enumerate(dates):
            u = (before + after)[k]
            rows.append({"merchant_id": mid, "business_date": day, "attempts": n + 10 * k,
                         "approved": n + 10 * k - u, "unsettled": u, "reversal_failed": u,
                         "returned": 0, "not_cleared": 0, "link_errors": 0, "mature": True,
                         "network_segment": "S-T" if mid.startswith("T") else "S-C"})
    panel = pd.DataFrame(rows)
    eff = evaluate_fix(panel, intervention("2026-03-12 01:00", "S-T"), **QUIET)

    # by hand: pooled rate = unsettled / attempts per group and period
    def pooled(prefix, post):
        sel = panel["merchant_id"].str.startswith(prefix) & ((panel["business_date"] >= dates[2]) == post)
        return panel.loc[sel, "unsettled"].sum() / panel.loc[sel, "attempts"].sum()

    hand = (pooled("T", True) - pooled("T", False)) - (pooled("C", True) - pooled("C", False))
    assert eff.effect == pytest.approx(hand, abs=1e-12)
    assert eff.before == pytest.approx(pooled("T", False), abs=1e-15)
    assert eff.after == pytest.approx(pooled("T", True), abs=1e-15)
    assert eff.control_before == pytest.approx(pooled("C", False), abs=1e-15)

    # and the weighted regression's interaction coefficient is the same number
    treated = panel["merchant_id"].str.startswith("T").to_numpy(float)
    post = (panel["business_date"] >= dates[2]).to_numpy(float)
    x = np.column_stack([np.ones(len(panel)), treated, post, treated * post])
    y = (panel["unsettled"] / panel["attempts"]).to_numpy()
    fit = sm.WLS(y, x, weights=panel["attempts"].to_numpy(float)).fit()
    assert fit.params[3] == pytest.approx(hand, abs=1e-12)
    assert eff.n_treated == 2 and eff.n_control == 2


def test_cluster_se_equals_statsmodels_and_the_hand_formula():
    panel = make_panel(n_treated=6, n_control=8, days=10, fix_day=5, seed=3)
    eff = evaluate_fix(panel, intervention("2026-03-07 01:00"), metric="success_rate", **QUIET)
    treated = panel["network_segment"].eq("SEG-T").to_numpy(float)
    post = (panel["business_date"] >= pd.Timestamp("2026-03-07")).to_numpy(float)
    x = np.column_stack([np.ones(len(panel)), treated, post, treated * post])
    y = (panel["approved"] / panel["attempts"]).to_numpy()
    w = panel["attempts"].to_numpy(float)
    groups = pd.factorize(panel["merchant_id"])[0]
    fit = sm.WLS(y, x, weights=w).fit(cov_type="cluster", cov_kwds={"groups": groups})
    assert eff.effect == pytest.approx(fit.params[3], abs=1e-12)
    assert eff.diagnostics["se_merchant_plain"] == pytest.approx(fit.bse[3], rel=1e-9)

    # hand formula: sandwich with diagonal bread over the four cells
    cell = (2 * treated + post).astype(int)
    n_c = np.bincount(cell, w, 4)
    rate = np.bincount(cell, w * y, 4) / n_c
    score = w * (y - rate[cell]) / n_c[cell] * np.array([1, -1, -1, 1])[cell]
    psi = np.bincount(groups, score)
    g, n_obs = len(psi), len(panel)
    var = g / (g - 1) * (n_obs - 1) / (n_obs - 4) * np.sum(psi**2)
    assert np.sqrt(var) == pytest.approx(fit.bse[3], rel=1e-9)


def test_resampled_counts_are_multinomial():
    from analysis.fixes import _resampled_sums

    w = _resampled_sums(np.random.default_rng(1), np.eye(5), 20_000)  # sums of unit rows: counts
    assert w.shape == (20_000, 5) and (w.sum(axis=1) == 5).all()
    n, p = 5, 1 / 5  # Multinomial(5, uniform): mean 1, variance 0.8, covariance -0.2
    assert w.mean(axis=0) == pytest.approx(np.full(5, n * p), abs=0.03)
    cov = np.cov(w.T)
    assert np.diag(cov) == pytest.approx(np.full(5, n * p * (1 - p)), abs=0.04)
    assert cov[np.triu_indices(5, 1)] == pytest.approx(np.full(10, -n * p * p), abs=0.03)


def test_resampled_sums_are_the_counts_times_the_values():
    from analysis.fixes import _resampled_sums

    values = np.array([[1.0, 0, 1, 5], [2, 0, 2, 0], [3, 0, 3, 7]])  # equal and zero columns
    got = _resampled_sums(np.random.default_rng(4), values, 50)
    counts = _resampled_sums(np.random.default_rng(4), np.eye(3), 50)
    np.testing.assert_array_equal(got, counts @ values)
    assert _resampled_sums(np.random.default_rng(4), np.zeros((0, 2)), 3).shape == (3, 2)


def test_one_draw_serves_every_metric_with_a_fixed_seed():
    from analysis.fixes import (METRICS, _component_arrays, _design_of, _resampled, _shared_resamples,
                                _sums)

    _, design, _ = _design_of(make_panel(seed=4), intervention(), detect=False)
    metrics = list(METRICS)
    shared = _shared_resamples(design, metrics, n_boot=30, seed=7)
    for metric in metrics:
        s = _sums(design.cell, *_component_arrays(design.rows, METRICS[metric]), design.merchants)
        alone = _resampled([s], 30, 7)[0]
        np.testing.assert_array_equal(shared[metric][0], alone[0])
        np.testing.assert_array_equal(shared[metric][1], alone[1])
    assert _shared_resamples(design, metrics, n_boot=30, seed=None) == {}
    assert _shared_resamples(design, metrics, n_boot=30, seed=np.random.default_rng(7)) == {}


@pytest.mark.parametrize("extra", [[], ["M|0", "M|", "M0|1"]])
def test_merchant_day_clusters_are_in_the_order_of_their_text(extra):
    from analysis.fixes import _merchant_day_clusters, _PanelKeys

    ids = ["M1", "M10", "M1a", "M1-", "M", "M2", "M1.5", "m", "Ä1", *extra]
    rng = np.random.default_rng(0)
    panel = pd.DataFrame({"merchant_id": rng.choice(ids, 400),
                          "business_date": pd.Timestamp("2026-03-01")
                          + pd.to_timedelta(rng.integers(0, 12, 400), unit="D")})
    keys = _PanelKeys.of(panel)
    assert (keys.text_rank is None) == bool(extra)
    assert list(keys.merchants[keys.merchant]) == list(panel["merchant_id"])
    got = _merchant_day_clusters(keys, keys.merchant, keys.day)
    text = (panel["merchant_id"] + "|" + panel["business_date"].astype(str)).to_numpy()
    want, _ = pd.factorize(text, sort=True)
    np.testing.assert_array_equal(got.codes, want)


def test_evaluate_fixes_equals_evaluate_fix_metric_by_metric():
    # evaluate_fixes builds one design per fix and draws the bootstrap once for all metrics
    fixes = (Fix("network_upgrade", "network_segment", None, "2026-03-20 01:30"),)
    city, ds, rec, panel = _city_panel(14, merchants=40, days=25, fixes=fixes)
    ev = evaluate_fixes(ds, rec, n_boot=49, seed=3, detect=False)
    for e in ev.effects:
        one = evaluate_fix(panel, e.change_id, interventions=ds.interventions, metric=e.metric,
                           n_boot=49, seed=3, detect=False)
        pd.testing.assert_frame_equal(one.table(), e.table(), check_exact=True)
        pd.testing.assert_frame_equal(one.daily, e.daily, check_exact=True)


def test_bootstrap_and_primary_intervals_cover_a_known_effect():
    # A percentile cluster bootstrap with 15 treated merchants under-covers (about 0.89
    # over 200 panels against the nominal 0.95); the primary interval covers 0.99.
    covered_boot, covered_primary = 0, 0
    reps = 100
    for seed in range(reps):
        panel = make_panel(n_treated=15, n_control=40, days=24, fix_day=12, p_before=0.02,
                           p_after=0.008, p_control=0.004, seed=seed)
        eff = evaluate_fix(panel, intervention("2026-03-14 01:00"), n_boot=299, seed=seed,
                           screen_alpha=0, detect=False)
        boot = eff.methods.set_index("method").loc["did_bootstrap"]
        covered_boot += boot["ci_low"] <= -0.012 <= boot["ci_high"]
        covered_primary += eff.ci_low <= -0.012 <= eff.ci_high
    assert covered_boot / reps >= 0.8
    assert covered_primary / reps >= 0.95


# ---------------------------------------------------------------------------------
# Placebos on simulated cities
# ---------------------------------------------------------------------------------


def _city_panel(seed, *, merchants=80, days=40, fault=True, fixes=()):
    faults = (UnstableLink(start="2026-03-09 08:00"),) if fault else ()
    city = simulate_city(CityConfig(seed=seed, n_merchants=merchants, n_neighbourhoods=4,
                                    days=days, faults=faults, fixes=tuple(fixes)))
    ds = Dataset(**city.tables)
    rec = reconcile(ds.transactions, ds.settlements, ds.merchants, as_of=default_as_of(ds))
    panel = daily_panel(rec, ds.terminals, ds.terminal_events, level="terminal",
                        merchants=ds.merchants)
    return city, ds, rec, panel


def test_placebo_fixes_on_untreated_segments_cover_zero():
    rng = np.random.default_rng(7)
    covered, total = 0, 0
    for seed in (101, 102):
        city, ds, rec, panel = _city_panel(seed)
        faulty = city.truth.manifest["faulty_segment"]
        volume = panel.groupby("network_segment")["attempts"].sum()
        segments = [s for s in volume.index[volume > 3000] if s != faulty]
        for k in range(10):
            seg = segments[rng.integers(len(segments))]
            day = pd.Timestamp("2026-03-02") + pd.Timedelta(days=int(rng.integers(12, 30)))
            eff = evaluate_fix(panel, intervention(f"{day.date()} 01:00", seg, f"P{k}"),
                               exclude_merchants=city.truth.faults[0]["exposed_merchant_ids"],
                               n_boot=0, seed=k)
            total += 1
            covered += bool(eff.ci_low <= 0 <= eff.ci_high)
    assert covered / total >= 0.85, f"{covered}/{total} placebo intervals cover 0"


# ---------------------------------------------------------------------------------
# Periods: staggered fixes, merged fixes, onsets
# ---------------------------------------------------------------------------------


def _table(*rows):
    return pd.DataFrame([intervention(*r) for r in rows])


def test_second_fix_before_period_starts_at_the_first():
    iv = _table(("2026-04-08 01:30", "S1", "A"), ("2026-04-15 02:00", "S1", "B", "message_validation"))
    p = split_periods(iv, first_day="2026-03-02", last_day="2026-04-30",
                      onsets={"S1": "2026-03-16 08:00"})
    assert p["A"].before == (pd.Timestamp("2026-03-16"), pd.Timestamp("2026-04-08"))
    assert p["A"].after == (pd.Timestamp("2026-04-08"), pd.Timestamp("2026-04-15"))
    assert p["B"].before == (pd.Timestamp("2026-04-08"), pd.Timestamp("2026-04-15"))
    assert p["B"].after == (pd.Timestamp("2026-04-15"), pd.Timestamp("2026-05-01"))
    assert p["B"].previous == ("A",) and p["A"].following == ("B",)
    assert not p["A"].flags and not p["B"].flags


def test_fixes_two_days_apart_are_flagged_and_evaluated_together():
    iv = _table(("2026-03-17 01:00", "SEG-T", "A"), ("2026-03-19 01:00", "SEG-T", "B", "message_validation"))
    p = split_periods(iv, first_day="2026-03-02", last_day="2026-03-31")
    assert p["A"] is p["B"] and p["A"].change_ids == ("A", "B") and "too_close" in p["A"].flags
    panel = make_panel()
    eff = evaluate_fix(panel, "B", interventions=iv, **QUIET)
    assert "too_close" in eff.flags and not eff.reliable
    assert eff.change_id == "B" and eff.evaluated_with == ("A",)
    assert "too close to separate" in eff.sentence()
    contract = FixEvaluation((eff,)).to_contract()
    assert set(contract["change_id"]) == {"A", "B"}


def test_fixes_within_24_hours_are_one_and_a_late_fix_leaves_out_its_day():
    iv = _table(("2026-03-17 01:00", "S1", "A"), ("2026-03-17 15:00", "S1", "B"),
                ("2026-03-25 14:00", "S1", "C"))
    p = split_periods(iv, first_day="2026-03-02", last_day="2026-03-31")
    assert p["A"].change_ids == ("A", "B") and not p["A"].flags
    assert p["A"].after[0] == pd.Timestamp("2026-03-18")  # B applied at 15:00: its day is transition
    assert p["C"].before == (pd.Timestamp("2026-03-18"), pd.Timestamp("2026-03-25"))
    assert p["C"].after[0] == pd.Timestamp("2026-03-26")


def test_short_after_period_is_flagged():
    iv = _table(("2026-03-30 01:00", "S1", "A"))
    p = split_periods(iv, first_day="2026-03-02", last_day="2026-03-31")
    assert "short_after" in p["A"].flags


def test_onset_detection_finds_a_step_and_ignores_noise():
    rng = np.random.default_rng(0)
    n = np.full(40, 200)
    step = pd.DataFrame({"date": pd.date_range("2026-03-01", periods=40),
                         "cases": rng.binomial(n, np.r_[np.full(12, 0.001), np.full(28, 0.02)]), "n": n})
    assert detect_onset(step) == pd.Timestamp("2026-03-13")
    false = 0
    for seed in range(20):
        flat = step.assign(cases=np.random.default_rng(seed).binomial(n, 0.01))
        false += detect_onset(flat) is not None
    assert false <= 2


def test_onsets_from_shared_faults():
    out = onsets_from_faults([{"start": "2026-03-16T08:00:00+08:00",
                               "attributes": {"network_segment": "S1"}},
                              {"start": None, "attributes": {"network_segment": "S2"}}])
    assert list(out) == ["S1"]


# ---------------------------------------------------------------------------------
# Controls, results, output
# ---------------------------------------------------------------------------------


def test_a_broken_control_merchant_is_screened_out():
    panel = make_panel(seed=5)
    broken = panel["merchant_id"].eq("C00") & (panel["business_date"] >= pd.Timestamp("2026-03-20"))
    panel.loc[broken, ["unsettled", "not_cleared"]] = panel.loc[broken, ["attempts", "attempts"]].to_numpy()
    panel.loc[broken, "reversal_failed"] = 0
    eff = evaluate_fix(panel, intervention(), n_boot=0, detect=False)
    assert any("C00" in n for n in eff.notes)
    unscreened = evaluate_fix(panel, intervention(), **QUIET)
    assert abs(eff.effect - (-0.015)) < abs(unscreened.effect - (-0.015))


def test_scope_all_has_no_controls_and_falls_back_to_its():
    panel = make_panel(n_control=0, n_treated=12)
    eff = evaluate_fix(panel, intervention(scope="*", scope_type="all"), **QUIET)
    assert eff.method == "its_segmented" and "no_controls" in eff.flags
    assert eff.ci_low < eff.effect < eff.ci_high < 0
    assert "not net of city-wide changes" in eff.sentence()


def test_sentence_summary_plot_and_contract():
    panel = make_panel(seed=2)
    eff = evaluate_fix(panel, intervention(), n_boot=199, seed=1, detect=False)
    s = eff.sentence()
    assert s.startswith("After the network upgrade on 2026-03-17 the unsettled rate on segment SEG-T fell from")
    assert "points, 95% CI" in s and "control merchants" in s and s.endswith(".")
    table = eff.table()
    assert list(table["method"]) == ["did_cluster_se", "did_bootstrap", "its_segmented"]
    text = eff.summary()
    assert text.splitlines()[0] == s and "its_segmented" in text
    ax = eff.plot()
    assert ax.get_title() and ax.get_legend() is not None and "%" in ax.get_ylabel()
    contract = FixEvaluation((eff,)).to_contract()
    assert list(contract.columns) == list(OUTPUTS["fix_effects.csv"])
    assert contract["method"].tolist() == ["did_cluster_se"]
    assert len(FixEvaluation((eff,)).to_contract(all_methods=True)) == 3


def test_evaluate_fixes_on_a_simulated_city_without_truth():
    fixes = (Fix("network_upgrade", "network_segment", None, "2026-03-24 01:30"),
             Fix("message_validation", "network_segment", None, "2026-03-31 02:00"))
    city, ds, rec, _ = _city_panel(11, fixes=fixes)
    ev = evaluate_fixes(ds, rec, n_boot=99)
    contract = ev.to_contract()
    assert len(contract) == 2 * 3
    assert set(contract["metric"]) == {"unsettled_rate", "success_rate", "link_errors_per_100"}
    first = ev.effect("CHG-001")
    assert first.effect < 0 and first.periods.before[0] >= pd.Timestamp("2026-03-09")
    assert ev.effect("CHG-002").periods.before[0] == pd.Timestamp("2026-03-24")
    links = ev.effect("CHG-001", "link_errors_per_100")
    boot = links.methods.set_index("method").loc["did_bootstrap"]
    assert links.effect < 0 and boot["ci_high"] < 0
    assert "CHG-001" in ev.summary()


def test_evaluate_fixes_without_interventions_says_so():
    city, ds, rec, _ = _city_panel(12, merchants=30, days=10, fault=False)
    ev = evaluate_fixes(Dataset(**{**city.tables, "interventions": None}), rec)
    assert ev.effects == () and "no interventions table" in ev.notes[0]
    assert ev.to_contract().empty and list(ev.to_contract().columns) == list(OUTPUTS["fix_effects.csv"])


def test_evaluate_fixes_on_an_engine_equals_the_pandas_entry_point():
    from analysis.engine import DuckDBEngine
    from analysis.contract import TABLES
    from analysis.engine.tables import canonical_sql, register_dataset
    from analysis.fixes import evaluate_fixes_on
    from analysis.reconcile import calendar_for, reconcile_on

    fixes = (Fix("network_upgrade", "network_segment", None, "2026-03-20 01:30"),)
    city, ds, rec, _ = _city_panel(13, merchants=40, days=25, fixes=fixes)
    want = evaluate_fixes(ds, rec, n_boot=49)
    with DuckDBEngine() as eng:
        register_dataset(eng, Dataset(**{**city.tables, "terminal_events": None}),
                         calendar_for(ds.transactions["timestamp"]))
        reconcile_on(eng, as_of=default_as_of(ds))
        blind = evaluate_fixes_on(eng, ds.interventions, as_of=default_as_of(ds), n_boot=49)
        eng.register_frame("src_terminal_events", ds.terminal_events)
        eng.create_view("terminal_events", canonical_sql(TABLES["terminal_events"], list(ds.terminal_events.columns)))
        got = evaluate_fixes_on(eng, ds.interventions, as_of=default_as_of(ds), n_boot=49)
    pd.testing.assert_frame_equal(got.to_contract(all_methods=True), want.to_contract(all_methods=True))
    assert "no terminal_events table" in blind.notes[0]
    assert set(blind.to_contract()["metric"]) == {"unsettled_rate", "success_rate"}


# ---------------------------------------------------------------------------------
# Coverage of the simulator's true effects (the benchmark, smaller)
# ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_intervals_cover_the_true_effects_of_simulated_fixes():
    bench = _bench()
    res = bench.run(range(22), merchants=80, days=40, n_boot=0)
    table = bench.coverage(res)
    head = table.loc[table["position"].eq("comparable (headline)")
                     & table["method"].eq("did_cluster_se")].iloc[0]
    assert head["n"] >= 22
    assert head["coverage"] >= 0.9, table.to_string()
    assert abs(head["bias"]) < 0.004


# ---------------------------------------------------------------------------------
# What if: avoided incidents of a fix not yet made
# ---------------------------------------------------------------------------------

from functools import lru_cache  # noqa: E402

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from analysis.fixes import simulate_fix  # noqa: E402

FAULT_PERIOD = ("2026-03-05", "2026-03-20")


@lru_cache(maxsize=None)
def _whatif_city(kind: str, seed: int):
    cfg = CityConfig(seed=seed, n_merchants=60, n_neighbourhoods=3, days=36,
                     faults=(UnstableLink(start="2026-03-04 08:00"),),
                     fixes=(Fix(kind, "network_segment", None, "2026-03-20 01:30"),))
    city = simulate_city(cfg)
    ds = Dataset(**city.tables)
    rec = reconcile(ds.transactions, ds.settlements, ds.merchants, as_of=default_as_of(ds))
    panel = daily_panel(rec, ds.terminals, ds.terminal_events, level="terminal")
    return city, ds, panel


def _scope(city):
    t = city.truth.fix_effects[0]["scope"]
    return (t["scope_type"], t["scope_value"])


def test_whatif_validation_predicts_the_true_effect():
    ratios, inside = [], 0
    for seed in range(3):
        city, _, panel = _whatif_city("message_validation", seed)
        w = simulate_fix(panel, _scope(city), "message_validation", period=FAULT_PERIOD)
        truth = -city.truth.fix_effects[0]["true_effect"]
        inside += w.avoided_unsettled_rate[1] <= truth <= w.avoided_unsettled_rate[2]
        ratios.append(w.avoided_incident_rate[0] / -city.truth.fix_effects[0]["true_effect_link_failures"])
    assert inside >= 2
    assert 0.5 < np.mean(ratios) < 2.0, ratios


def test_whatif_upgrade_is_in_the_ballpark_of_the_measured_effect():
    for seed in range(2):
        city, ds, panel = _whatif_city("network_upgrade", seed)
        w = simulate_fix(panel, _scope(city), "network_upgrade", period=FAULT_PERIOD, reduction=0.9)
        measured = evaluate_fix(panel, "CHG-001", interventions=ds.interventions, n_boot=0)
        eventual = -measured.diagnostics["eventual_effect"]
        assert 0.5 < w.avoided_unsettled_rate[0] / eventual < 2.0
        # the prediction's interval and the measurement's overlap
        assert w.avoided_unsettled_rate[1] <= -measured.ci_low
        # ballpark = within a factor of 2: the fault's day-to-day intensity alone moves a
        # two-week mean by ~15%, and the truth's after period is not the fitted period
        link = -city.truth.fix_effects[0]["true_effect_link_failures"]
        assert 0.5 < w.avoided_incident_rate[0] / link < 2.0
    text = w.summary()
    assert text.startswith("With the network upgrade on segment") and "fewer incidents" in text
    assert w.plot().get_xlabel().startswith("avoided unsettled rate")


def test_whatif_needs_a_known_kind_and_data():
    city, _, panel = _whatif_city("network_upgrade", 0)
    with pytest.raises(ValueError, match="models"):
        simulate_fix(panel, _scope(city), "firmware_update")
    with pytest.raises(ValueError, match="no mature attempts"):
        simulate_fix(panel, ("network_segment", "NO-SUCH"), "network_upgrade")


@settings(max_examples=25, deadline=None)
@given(a=st.floats(0.0, 0.4), b=st.floats(0.0, 0.4),
       kind=st.sampled_from(["network_upgrade", "message_validation"]))
def test_whatif_is_monotone_in_the_link_error_rate(a, b, kind):
    city, _, panel = _whatif_city("network_upgrade", 0)
    lo, hi = sorted((a, b))
    w_lo = simulate_fix(panel, _scope(city), kind, period=FAULT_PERIOD, link_error_rate=lo, n_draws=300)
    w_hi = simulate_fix(panel, _scope(city), kind, period=FAULT_PERIOD, link_error_rate=hi, n_draws=300)
    assert w_lo.avoided_unsettled_rate[0] <= w_hi.avoided_unsettled_rate[0] + 1e-12
    assert w_lo.avoided_incident_rate[0] <= w_hi.avoided_incident_rate[0] + 1e-12


@settings(max_examples=15, deadline=None)
@given(r1=st.integers(0, 5), r2=st.integers(0, 5), rate=st.floats(0.0, 0.4))
def test_whatif_is_monotone_in_retries(r1, r2, rate):
    city, _, panel = _whatif_city("network_upgrade", 0)
    lo, hi = sorted((r1, r2))
    kw = dict(period=FAULT_PERIOD, link_error_rate=rate, n_draws=300)
    w_lo = simulate_fix(panel, _scope(city), "message_validation", retries=lo, **kw)
    w_hi = simulate_fix(panel, _scope(city), "message_validation", retries=hi, **kw)
    assert w_lo.avoided_unsettled_rate[0] <= w_hi.avoided_unsettled_rate[0] + 1e-12
    assert w_lo.avoided_incident_rate[0] <= w_hi.avoided_incident_rate[0] + 1e-12


def test_doctests():
    import doctest

    import analysis.fixes as module

    assert doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE).failed == 0
