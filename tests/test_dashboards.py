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
            triage.data.incidents.loc[triage.data.incidents["date"] == pd.Timestamp(day), "merchant_id"])
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
