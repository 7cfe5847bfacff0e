"""Tests of analysis.monitor: calibrated binomial CUSUM, detection, back to baseline."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from analysis.io import Dataset  # noqa: E402
from analysis.metrics import daily_panel, group_daily  # noqa: E402
from analysis.monitor import (  # noqa: E402
    back_to_baseline,
    baseline_rate,
    calibrate_h,
    cusum,
    cusum_path,
    monitor_clusters,
)
from analysis.reconcile import default_as_of, reconcile  # noqa: E402
from analysis.simulate import CityConfig, Fix, UnstableLink, simulate_city  # noqa: E402

RNG_N = np.random.default_rng(42).integers(120, 320, size=60)  # varying daily volumes


def test_in_control_false_alarm_rate_matches_the_stated_arl():
    p0, arl0 = 0.004, 100
    h, achieved = calibrate_h(RNG_N, p0, 3 * p0, arl0, n_seq=400, seed=1)
    # fresh in-control sequences, charted with restarts: alarms per day ≈ 1 / ARL
    rng = np.random.default_rng(99)
    n = rng.choice(RNG_N, size=(400, 500))
    _, _, alarm = cusum_path(rng.binomial(n, p0), n, p0, 3 * p0, h)
    rate = alarm.mean()
    assert 0.75 / arl0 < rate < 1.33 / arl0, (rate, h, achieved)
    assert 0.8 * arl0 < achieved < 1.25 * arl0


def test_a_threefold_step_is_detected_within_a_few_days():
    p0 = 0.005
    h, _ = calibrate_h(RNG_N, p0, 3 * p0, 370, seed=2)
    rng = np.random.default_rng(5)
    n = rng.choice(RNG_N, size=(500, 60))
    _, _, alarm = cusum_path(rng.binomial(n, 3 * p0), n, p0, 3 * p0, h)
    delay = np.where(alarm.any(1), alarm.argmax(1) + 1, 60)
    assert delay.mean() <= 5, delay.mean()
    assert (delay <= 10).mean() > 0.95


def test_chart_on_a_series_finds_the_step_and_its_onset():
    rng = np.random.default_rng(3)
    n = np.r_[RNG_N, RNG_N[:20]]
    p = np.r_[np.full(50, 0.004), np.full(30, 0.012)]
    daily = pd.DataFrame({"date": pd.date_range("2026-03-01", periods=80), "cases": rng.binomial(n, p),
                          "n": n})
    chart = cusum(daily, reference_period=("2026-03-01", "2026-04-10"), seed=0)
    assert chart.alarms and pd.Timestamp("2026-04-20") <= chart.alarms[0] <= pd.Timestamp("2026-04-30")
    assert abs((chart.onsets[0] - pd.Timestamp("2026-04-20")).days) <= 6
    assert 0 < chart.false_alarm_rate < 0.01
    text = chart.summary()
    assert "alarm" in text and "in-control ARL" in text
    ax = chart.plot()
    assert ax.get_ylabel() == "log-likelihood ratio"


def test_baseline_is_never_zero_and_bad_inputs_are_refused():
    d = pd.DataFrame({"date": pd.date_range("2026-03-01", periods=5), "cases": 0, "n": 100})
    p0, ref = baseline_rate(d)
    assert p0 > 0 and ref[0] == pd.Timestamp("2026-03-01")
    with pytest.raises(ValueError, match="p0"):
        cusum(d, p0=0.1, p1=0.05)


def _city(fixes, seed=21):
    cfg = CityConfig(seed=seed, n_merchants=80, n_neighbourhoods=4, days=40,
                     faults=(UnstableLink(start="2026-03-10 08:00"),), fixes=fixes)
    city = simulate_city(cfg)
    ds = Dataset(**city.tables)
    rec = reconcile(ds.transactions, ds.settlements, ds.merchants, as_of=default_as_of(ds))
    return city, daily_panel(rec, ds.terminals, ds.terminal_events)


@pytest.fixture(scope="module")
def fixed_and_broken():
    fixed = _city((Fix("network_upgrade", "network_segment", None, "2026-03-24 01:30", strength=1.0),))
    broken = _city(())
    return fixed, broken


def test_back_to_baseline_after_a_fix_but_not_while_the_fault_continues(fixed_and_broken):
    verdicts = []
    for city, panel in fixed_and_broken:
        seg = city.truth.manifest["faulty_segment"]
        rows = panel.loc[panel["network_segment"].eq(seg) & panel["mature"]]
        daily = group_daily(rows)
        chart = cusum(daily, reference_period=("2026-03-02", "2026-03-09"))
        assert chart.alarms and chart.alarms[0] <= pd.Timestamp("2026-03-14")
        verdicts.append(back_to_baseline(chart, "2026-03-24"))
    fixed, broken = verdicts
    assert fixed.back, fixed.summary()
    assert not broken.back and broken.p_value < 0.01, broken.summary()
    assert "back to baseline" in fixed.summary() and "not back" in broken.summary()
    assert bool(fixed) is True


def test_monitor_clusters_flags_the_faulty_segment_first(fixed_and_broken):
    city, panel = fixed_and_broken[1]
    table = monitor_clusters(panel, "network_segment", reference_period=("2026-03-02", "2026-03-09"),
                             arl0=370, seed=0)
    seg = city.truth.manifest["faulty_segment"]
    assert table["group"].iat[0] == seg or table.loc[table["group"].eq(seg), "n_alarms"].iat[0] == \
        table["n_alarms"].max()
    row = table.loc[table["group"].eq(seg)].iloc[0]
    assert row["first_onset"] <= pd.Timestamp("2026-03-12")
    others = table.loc[table["group"].ne(seg), "n_alarms"]
    assert others.mean() < 1.0
    assert seg in table.attrs["charts"]


def test_doctests():
    import doctest

    import analysis.monitor as module

    assert doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE).failed == 0


def test_monitor_clusters_skips_a_group_whose_rate_to_detect_reaches_one():
    days = pd.date_range("2026-03-01", periods=30)
    panel = pd.concat([
        pd.DataFrame({"merchant_id": "M1", "business_date": days, "group": "ok",
                      "unsettled": np.r_[np.ones(15, int), 4 * np.ones(15, int)], "attempts": 100,
                      "mature": True}),
        # every attempt unsettled: p0 is (almost) 1 and ratio x p0 >= 1
        pd.DataFrame({"merchant_id": "M2", "business_date": days, "group": "all bad",
                      "unsettled": 50, "attempts": 50, "mature": True}),
    ])
    table = monitor_clusters(panel, "group", reference_period=("2026-03-01", "2026-03-14"), seed=0)
    assert table["group"].tolist() == ["ok"]
    assert "all bad" in table.attrs["skipped"] and "p1" in table.attrs["skipped"]["all bad"]
