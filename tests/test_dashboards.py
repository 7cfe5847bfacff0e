"""Dashboards in plain pytest: set ``widget.value`` and check the readout, table and figure."""

from __future__ import annotations

import doctest
import re
from datetime import date

import matplotlib
import pandas as pd
import pytest

matplotlib.use("Agg")

from analysis import analyze, load_dataset  # noqa: E402
from analysis import dashboards as dash_mod  # noqa: E402
from analysis.dashboards import ALL, TriageDashboard, TriageParams, render_triage  # noqa: E402
from analysis.report import BUNDLED_DATASET  # noqa: E402

CAUSE = "NETWORK_COMMUNICATION"


@pytest.fixture(scope="module")
def case():
    ds = load_dataset(BUNDLED_DATASET)
    return ds, analyze(ds)


@pytest.fixture()
def triage(case):
    ds, result = case
    return TriageDashboard(result, dataset=ds)


def _count(readout: str) -> int:
    return int(re.search(r": ([\d,]+) incidents", readout).group(1).replace(",", ""))


def _table_rows(html: str) -> int:
    return html.count("<tr") - 1  # minus the header row


def test_first_view_shows_everything(triage, case):
    _, result = case
    assert triage.readout.value.startswith("Showing all causes · all merchants · ")
    assert _count(triage.readout.value) == len(result.incidents)
    assert _table_rows(triage.table.value) == triage.max_rows
    assert triage.figure.value[:4] == b"\x89PNG"


def test_cause_picker_changes_readout_table_and_figure(triage, case):
    _, result = case
    before = (triage.readout.value, triage.table.value, triage.figure.value)
    triage.cause.value = CAUSE
    readout, table, png = triage.readout.value, triage.table.value, triage.figure.value
    assert CAUSE in readout and "网络通讯问题" in readout
    assert _count(readout) == int((result.incidents["cause"] == CAUSE).sum())
    assert table != before[1] and png != before[2]
    causes = set(re.findall(r"<td>([A-Z_]{5,})</td>", table))
    assert causes == {CAUSE}
    assert "evidence" in table and "next step" in table


def test_cluster_picker_narrows_merchants(triage, case):
    _, result = case
    cluster = triage.cluster.options[1][1]
    members = set(result.clusters.loc[result.clusters["cluster_id"] == cluster, "merchant_id"])
    triage.cluster.value = cluster
    assert f"cluster {cluster}" in triage.readout.value
    picked = {v for _, v in triage.merchant.options} - {ALL}
    assert picked == members
    expected = result.incidents["merchant_id"].isin(members).sum()
    assert _count(triage.readout.value) == expected


def test_merchant_picker_and_ticket_drill_down(triage, case):
    ds, result = case
    busiest = ds.complaints["merchant_id"].value_counts().index[0]
    triage.merchant.value = busiest
    name = ds.merchants.set_index("merchant_id").at[busiest, "name"]
    assert name in triage.readout.value
    assert _count(triage.readout.value) == int((result.incidents["merchant_id"] == busiest).sum())
    tickets = [v for _, v in triage.ticket.options if v != ALL]
    assert len(tickets) == int((ds.complaints["merchant_id"] == busiest).sum())
    assert "Choose a ticket" in triage.ticket_view.value
    matched = result.tickets.set_index("ticket_id").loc[tickets, "txn_id"].dropna()
    ticket = matched.index[0]
    triage.ticket.value = ticket
    view = triage.ticket_view.value
    assert ticket in view and matched[ticket] in view
    for label in ("evidence", "next step", "description", "outcome"):
        assert f"<th>{label}</th>" in view


def test_date_range_and_empty_selection(triage):
    options = [v for _, v in triage.dates.options]
    triage.dates.value = (options[0], options[0])
    day = options[0]
    assert f"{day:%Y-%m-%d} to {day:%Y-%m-%d}" in triage.readout.value
    quiet = triage.data.merchants["merchant_id"][
        ~triage.data.merchants["merchant_id"].isin(
            triage.data.incidents.loc[
                triage.data.incidents["date"] == pd.Timestamp(day), "merchant_id"
            ]
        )
    ].iloc[0]
    triage.merchant.value = quiet
    assert _count(triage.readout.value) == 0
    assert "no incidents in this selection" in triage.table.value
    assert triage.ticket.options[0][0] == "no tickets in this selection"


def test_changing_cluster_resets_a_merchant_outside_it(triage):
    first, second = triage.cluster.options[1][1], triage.cluster.options[2][1]
    triage.cluster.value = first
    triage.merchant.value = triage.merchant.options[1][1]
    triage.cluster.value = second
    assert triage.merchant.value == ALL
    assert f"cluster {second}" in triage.readout.value


def test_render_is_pure_and_leaves_pyplot_alone(triage):
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    p = TriageParams(start=date(2026, 3, 10), end=date(2026, 4, 10), cause=CAUSE)
    a = dash_mod.figure_png(render_triage(triage.data, p))
    b = dash_mod.figure_png(render_triage(triage.data, p))
    assert a == b
    assert plt.get_fignums() == before
    fig = render_triage(triage.data, p)
    top, bottom = fig.axes
    assert top.get_title() and bottom.get_title()
    assert top.get_ylabel() == "incidents per day"
    assert "%" in bottom.get_ylabel()
    assert top.get_legend() is not None and bottom.get_legend() is not None


def test_tables_escape_and_mask():
    frame = pd.DataFrame({"evidence": ["<script>x</script> card 4111111111111111"]})
    html = dash_mod.frame_html(frame)
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "4111111111111111" not in html


def test_dashboard_displays_as_its_widget(triage):
    bundle = triage._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle


def test_doctests():
    assert doctest.testmod(dash_mod, optionflags=doctest.ELLIPSIS).failed == 0


# --------------------------------------------------------------------------- fix lab

from analysis.dashboards import FixLab, FixLabParams, render_fixlab  # noqa: E402


@pytest.fixture(scope="module")
def fixlab_base(case):
    ds, result = case
    return FixLab(ds, result)


@pytest.fixture()
def fixlab(fixlab_base):
    """A fresh lab on the shared data (its measured effects stay cached across tests)."""
    lab = fixlab_base
    p = lab.data.default_params()
    with lab._hold():
        lab.change.value = p.change_id
        lab.fix_date.value = p.fix_date
        lab.link_error_rate.value = round(100 * p.link_error_rate, 2)
        lab.upgrade.value, lab.validation.value, lab.retries.value = (
            p.upgrade,
            p.validation,
            p.retries,
        )
    lab.refresh()
    return lab


def _points(readout: str, what: str) -> float:
    return float(re.search(rf"{what}[^·]*?: ([+-]\d+\.\d+) points", readout).group(1))


def test_fixlab_starts_at_the_first_fix_with_the_observed_link_rate(fixlab, case):
    ds, _ = case
    first = ds.interventions.sort_values("applied_at").iloc[0]
    r = fixlab.readout.value
    assert r.startswith(
        f"Unsettled rate change after {first['change_id']} on {first['scope_type']} "
        f"{first['scope_value']} from {first['applied_at']:%Y-%m-%d}"
    )
    assert f"what-if ({first['kind']}" in r and "measured: " in r
    assert "What-if inputs" in fixlab.table.value and "Measured effect" in fixlab.table.value
    observed = fixlab.data.observed_link_rate(first["change_id"], fixlab.fix_date.value)
    assert fixlab.link_error_rate.value == pytest.approx(100 * observed, abs=0.006)


def test_fixlab_link_rate_slider_moves_the_prediction_only(fixlab):
    before = fixlab.readout.value, fixlab.figure.value
    predicted, measured = _points(before[0], "what-if"), _points(before[0], "measured")
    fixlab.link_error_rate.value = fixlab.link_error_rate.value / 4
    after = fixlab.readout.value
    assert f"link failures {fixlab.link_error_rate.value:.2f}% of attempts" in after
    assert abs(_points(after, "what-if")) < abs(predicted)
    assert _points(after, "measured") == measured
    assert fixlab.figure.value != before[1]


def test_fixlab_validation_and_resends(fixlab):
    fixlab.upgrade.value = False
    fixlab.validation.value = True
    one = fixlab.readout.value
    assert "what-if (message_validation, 1 resend(s)" in one
    fixlab.retries.value = 3
    three = fixlab.readout.value
    assert "3 resend(s)" in three
    assert abs(_points(three, "what-if")) >= abs(_points(one, "what-if"))
    fixlab.validation.value = False
    assert "what-if: no fix assumed" in fixlab.readout.value
    assert "What-if inputs" not in fixlab.table.value


def test_fixlab_fix_date_measures_a_placebo(fixlab):
    real = _points(fixlab.readout.value, "measured")
    html_before = fixlab.table.value
    early = fixlab.fix_date.options[len(fixlab.fix_date.options) // 4][1]
    fixlab.fix_date.value = early
    r = fixlab.readout.value
    assert f"from {early:%Y-%m-%d}" in r
    assert _points(r, "measured") != real
    assert fixlab.table.value != html_before


def test_fixlab_change_picker_resets_to_that_fix(fixlab, case):
    ds, _ = case
    second = ds.interventions.sort_values("applied_at").iloc[1]
    fixlab.change.value = second["change_id"]
    assert fixlab.fix_date.value == second["applied_at"].date()
    assert fixlab.validation.value == (second["kind"] == "message_validation")
    assert fixlab.readout.value.startswith(f"Unsettled rate change after {second['change_id']}")


def test_render_fixlab_is_pure(fixlab):
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    p = fixlab.data.default_params()
    fig = render_fixlab(fixlab.data, p)
    assert plt.get_fignums() == before
    left, right = fig.axes[:2]
    assert left.get_title() and right.get_title()
    assert "percentage points" in right.get_xlabel()
    assert right.get_legend() is not None and left.get_legend() is not None
    assert dash_mod.figure_png(fig) == dash_mod.figure_png(render_fixlab(fixlab.data, p))
    assert isinstance(p, FixLabParams) and p.kinds


def test_fixlab_needs_interventions(case):
    ds, result = case
    from dataclasses import replace

    with pytest.raises(ValueError, match="no interventions"):
        FixLab(replace(ds, interventions=None), result)


def test_fixlab_measures_what_analyze_reports(fixlab, case):
    """Same exclusions (shared-fault merchants) and onsets as analyze's fix_effects."""
    _, result = case
    reported = result.fix_effects[result.fix_effects["metric"] == "unsettled_rate"]
    assert len(reported)
    for row in reported.itertuples():
        e = fixlab.data.measured(row.change_id, fixlab.data.real_date(row.change_id))
        assert e.effect == pytest.approx(row.effect, abs=1e-12)
        assert e.ci_low == pytest.approx(row.ci_low, abs=1e-12)
        assert e.ci_high == pytest.approx(row.ci_high, abs=1e-12)
