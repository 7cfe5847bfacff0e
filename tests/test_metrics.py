"""Tests of analysis.metrics: the merchant × day panel counts what the contract defines."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from builders import make_dataset

from analysis.metrics import (
    UNSETTLED_OUTCOMES,
    add_rates,
    daily_panel,
    dominant_terminals,
    group_daily,
)
from analysis.reconcile import reconcile

AS_OF = "2026-03-30 12:00"


@pytest.fixture(scope="module")
def dataset():
    """Two merchants, three terminals, every money outcome, link events, a void and a refund."""
    t10, t11 = "2026-03-10 10:00", "2026-03-11 10:00"
    late = "2026-03-27 10:00"  # still in cycle on AS_OF
    txns = [
        {"txn_id": "A", "terminal_id": "K1", "timestamp": t10},  # credited
        {"txn_id": "B", "terminal_id": "K1", "timestamp": t10},  # not_cleared (no settlement)
        {"txn_id": "C", "terminal_id": "K1", "timestamp": t10, "response_code": None,
         "reversal": "failed", "reversal_reason": "98"},  # reversal_failed
        {"txn_id": "D", "terminal_id": "K1", "timestamp": t10, "response_code": "51"},  # declined
        {"txn_id": "E", "terminal_id": "K1", "timestamp": t10, "reversal": "sent",
         "reversal_reason": "A0"},  # reversed
        {"txn_id": "F", "terminal_id": "K1", "timestamp": t10, "txn_type": "transfer"},  # returned
        {"txn_id": "G", "terminal_id": "K2", "timestamp": t10},  # credit_overdue (pending)
        {"txn_id": "H", "terminal_id": "K2", "timestamp": t11},  # credited late
        {"txn_id": "V", "terminal_id": "K1", "timestamp": t10, "txn_type": "void",
         "original_txn_id": "A2"},
        {"txn_id": "A2", "terminal_id": "K1", "timestamp": t10},  # voided
        {"txn_id": "R", "terminal_id": "K1", "timestamp": t11, "txn_type": "refund",
         "original_txn_id": "A"},
        {"txn_id": "I", "terminal_id": "K3", "timestamp": t10},  # merchant M2, credited
        {"txn_id": "J", "terminal_id": "K3", "timestamp": late},  # in cycle
        {"txn_id": "L", "terminal_id": "K3", "timestamp": late, "response_code": None,
         "reversal": "failed", "reversal_reason": "98"},  # reversal_failed, known at once
    ]
    settlements = [
        {"txn_id": "A"}, {"txn_id": "I"},
        {"txn_id": "F", "credit_status": "returned", "return_reason": "invalid_account"},
        {"txn_id": "G", "credit_status": "pending"},
        {"txn_id": "H", "credited_at": "2026-03-25 09:00"},
    ]
    events = [
        {"terminal_id": "K1", "timestamp": "2026-03-10 09:00", "event": "timeout"},
        {"terminal_id": "K1", "timestamp": "2026-03-10 23:50", "event": "mac_error"},
        {"terminal_id": "K2", "timestamp": "2026-03-10 12:00", "event": "retransmit"},
        {"terminal_id": "K2", "timestamp": "2026-03-10 12:00", "event": "batch_upload_ok"},
        {"terminal_id": "K1", "timestamp": "2026-03-12 09:00", "event": "connection_reset"},
    ]
    terminals = [
        {"terminal_id": "K1", "merchant_id": "M1", "model": "A920", "network_segment": "S1"},
        {"terminal_id": "K2", "merchant_id": "M1", "model": "N910", "network_segment": "S1"},
        {"terminal_id": "K3", "merchant_id": "M2", "model": "A920", "network_segment": "S2"},
    ]
    return make_dataset(merchants=[{"merchant_id": "M1", "mcc": "5411"},
                                   {"merchant_id": "M2", "mcc": "5812"}],
                        terminals=terminals, transactions=txns, settlements=settlements,
                        terminal_events=events)


@pytest.fixture(scope="module")
def reconciled(dataset):
    return reconcile(dataset.transactions, dataset.settlements, dataset.merchants, as_of=AS_OF)


@pytest.fixture(scope="module")
def panel(dataset, reconciled):
    return daily_panel(reconciled, dataset.terminals, dataset.terminal_events,
                       merchants=dataset.merchants)


def row(panel, merchant, day):
    hit = panel.loc[panel["merchant_id"].eq(merchant) & panel["business_date"].eq(pd.Timestamp(day))]
    assert len(hit) == 1
    return hit.iloc[0]


def test_outcomes_are_the_ones_the_test_means(reconciled):
    got = dict(zip(reconciled["txn_id"], reconciled["outcome"]))
    assert got == {"A": "credited", "B": "not_cleared", "C": "reversal_failed", "D": "declined",
                   "E": "reversed", "F": "returned", "G": "credit_overdue", "H": "credited_late",
                   "V": "cancellation", "A2": "voided", "R": "cancellation", "I": "credited",
                   "J": "in_cycle", "L": "reversal_failed"}


def test_unsettled_counts_equal_a_direct_count(reconciled, panel):
    attempts = reconciled.loc[reconciled["txn_type"].isin(["purchase", "transfer"])]
    direct = (attempts.assign(u=attempts["outcome"].isin(UNSETTLED_OUTCOMES))
              .groupby(["merchant_id", "business_date"])["u"].sum())
    got = panel.set_index(["merchant_id", "business_date"])["unsettled"]
    pd.testing.assert_series_equal(got.loc[direct.index].astype(int), direct.astype(int),
                                   check_names=False)
    assert panel["unsettled"].sum() == direct.sum() == 4  # B, C, F and L


def test_merchant_day_columns(panel):
    r = row(panel, "M1", "2026-03-10")
    # A, B, C, D, E, F, G, A2 are attempts; the void V is not
    assert r["attempts"] == 8
    assert r["approved"] == 5  # A, B, F, G, A2
    assert r["unsettled"] == 3 and r["reversal_failed"] == 1 and r["not_cleared"] == 1
    assert r["returned"] == 1
    # credit_overdue (cleared, pending) is not unsettled by the contract but is money not arrived
    assert r["credit_overdue"] == 1
    assert r["money_not_arrived"] == 3  # B, F, G
    assert r["unsettled_rate"] == pytest.approx(3 / 8)
    assert r["money_not_arrived_rate"] == pytest.approx(3 / 5)
    assert r["success_rate"] == pytest.approx(5 / 8)
    assert r["link_errors"] == 3  # timeout, mac_error (K1) and retransmit (K2); not the upload
    assert r["link_errors_per_100"] == pytest.approx(100 * 3 / 8)
    assert r["mature"]
    assert r["network_segment"] == "S1" and r["model"] == "A920"  # K1 carries more attempts
    assert r["mcc"] == "5411"


def test_link_failures_and_reversals(panel):
    r = row(panel, "M1", "2026-03-10")
    # C: no response, reversal 98 failed (lost); E: MAC failure, reversal A0 sent (corrupted)
    assert r["link_lost"] == 1 and r["link_corrupted"] == 1
    assert r["reversals"] == 2 and r["reversals_failed"] == 1
    assert r["lost_reversals"] == 1 and r["corrupted_reversals"] == 1


def test_refund_is_not_an_attempt_and_late_credit_has_its_days(panel):
    r = row(panel, "M1", "2026-03-11")
    assert r["attempts"] == 1 and r["credited_late"] == 1
    assert r["median_credit_days"] > 3


def test_link_errors_on_a_day_without_attempts_get_a_row(panel):
    r = row(panel, "M1", "2026-03-12")
    assert r["attempts"] == 0 and r["link_errors"] == 1
    assert np.isnan(r["unsettled_rate"])


def test_immature_days_are_flagged_and_can_be_dropped(dataset, reconciled, panel):
    r = row(panel, "M2", "2026-03-27")
    assert not r["mature"] and r["in_cycle"] == 1 and r["unsettled"] == 1
    mature = daily_panel(reconciled, dataset.terminals, dataset.terminal_events, mature_only=True)
    assert mature["mature"].all() and len(mature) == len(panel) - 1


def test_terminal_level_panel_sums_to_the_merchant_panel(dataset, reconciled, panel):
    tp = daily_panel(reconciled, dataset.terminals, dataset.terminal_events, level="terminal")
    assert set(tp["terminal_id"]) == {"K1", "K2", "K3"}
    k2 = tp.loc[tp["terminal_id"].eq("K2")]
    assert k2["model"].eq("N910").all()  # each terminal's own attributes
    summed = tp.groupby(["merchant_id", "business_date"])[["attempts", "unsettled", "link_errors"]].sum()
    direct = panel.set_index(["merchant_id", "business_date"])[["attempts", "unsettled", "link_errors"]]
    pd.testing.assert_frame_equal(summed.sort_index(), direct.sort_index(), check_dtype=False)


def test_group_daily_and_rates(panel):
    g = group_daily(panel, "network_segment")
    s1 = g.loc[g["network_segment"].eq("S1") & g["date"].eq(pd.Timestamp("2026-03-10"))].iloc[0]
    assert s1["cases"] == 3 and s1["n"] == 8 and s1["rate"] == pytest.approx(3 / 8)
    total = group_daily(panel)
    assert total["cases"].sum() == panel["unsettled"].sum()
    assert add_rates(pd.DataFrame({"unsettled": [0], "attempts": [0]}))["unsettled_rate"].isna().all()


def test_dominant_terminal_and_without_events(dataset, reconciled):
    dom = dominant_terminals(reconciled, dataset.terminals)
    assert dom.loc["M1", "terminal_id"] == "K1" and dom.loc["M2", "network_segment"] == "S2"
    p = daily_panel(reconciled, dataset.terminals)
    assert p["link_errors"].eq(0).all() and not p.attrs["link_errors_known"]


def test_bad_level_is_refused(dataset, reconciled):
    with pytest.raises(ValueError, match="level"):
        daily_panel(reconciled, dataset.terminals, level="segment")


def test_doctests():
    import doctest

    import analysis.metrics as module

    assert doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE).failed == 0
