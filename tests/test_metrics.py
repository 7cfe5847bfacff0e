"""Tests of analysis.metrics: the merchant × day panel counts what the contract defines."""

from __future__ import annotations

import statistics

import numpy as np
import pandas as pd
import pytest
from builders import make_dataset

from analysis.aggregates import frames_engine
from analysis.contract import LINK_ERROR_EVENTS
from analysis.metrics import (
    ATTEMPT_TYPES,
    COUNT_COLUMNS,
    COUNTED_OUTCOMES,
    KEY,
    NOT_ARRIVED_OUTCOMES,
    TERMINAL_KEY,
    UNSETTLED_OUTCOMES,
    add_rates,
    daily_panel,
    daily_panel_on,
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


# --------------------------------------------------------------------------- the SQL step against a brute-force count


def brute_force_panel(rec: pd.DataFrame, terminals: pd.DataFrame, events: pd.DataFrame, as_of_day: pd.Timestamp,
                      level: str) -> pd.DataFrame:
    """The panel's counts row by row in plain Python (no SQL, no groupby)."""
    by_terminal = level == "terminal"
    owner = dict(zip(terminals["terminal_id"], terminals["merchant_id"]))
    rows: dict[tuple, dict] = {}

    def cell(key):
        return rows.setdefault(key, {c: 0 for c in COUNT_COLUMNS} | {"days": [], "deadlines": []})

    for r in rec.to_dict("records"):
        if r["txn_type"] not in ATTEMPT_TYPES:
            continue
        key = (r["merchant_id"], r["terminal_id"], r["business_date"]) if by_terminal else (
            r["merchant_id"], r["business_date"])
        c = cell(key)
        code = None if pd.isna(r["response_code"]) else r["response_code"]
        reason = None if pd.isna(r["reversal_reason"]) else r["reversal_reason"]
        reversal = "none" if pd.isna(r["reversal"]) else r["reversal"]
        corrupted = reason == "A0" or code in ("A0", "30")
        lost = code is None or reason == "98" or code == "68"
        unanswered = code is None and reversal == "none"
        needs = reversal in ("sent", "failed") or unanswered
        flags = {"attempts": True, "approved": bool(r["approved"]),
                 "unsettled": r["outcome"] in UNSETTLED_OUTCOMES,
                 "money_not_arrived": r["outcome"] in NOT_ARRIVED_OUTCOMES,
                 **{o: r["outcome"] == o for o in COUNTED_OUTCOMES},
                 "link_corrupted": corrupted, "link_lost": lost and not corrupted, "reversals": needs,
                 "reversals_failed": reversal == "failed" or unanswered,
                 "corrupted_reversals": corrupted and needs, "lost_reversals": lost and not corrupted and needs}
        for name, flag in flags.items():
            c[name] += int(flag)
        if not pd.isna(r["credit_business_days"]):
            c["days"].append(float(r["credit_business_days"]))
        c["deadlines"].append(r["deadline"])
    for e in events.to_dict("records"):
        if e["event"] in LINK_ERROR_EVENTS and e["terminal_id"] in owner:
            day = e["timestamp"].tz_convert("Asia/Shanghai").tz_localize(None).normalize()
            m = owner[e["terminal_id"]]
            cell((m, e["terminal_id"], day) if by_terminal else (m, day))["link_errors"] += 1
    out = []
    for key, c in rows.items():
        deadline = max(c["deadlines"]) if c["deadlines"] else pd.NaT
        out.append({**dict(zip(TERMINAL_KEY if by_terminal else KEY, key)),
                    **{k: c[k] for k in COUNT_COLUMNS},
                    "median_credit_days": statistics.median(c["days"]) if c["days"] else np.nan,
                    "deadline": deadline, "mature": bool(pd.isna(deadline) or deadline < as_of_day)})
    return pd.DataFrame(out).sort_values(list(TERMINAL_KEY if by_terminal else KEY)).reset_index(drop=True)


def random_reconciled(seed: int, n: int = 400) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """A reconcile()-shaped frame with every combination of codes, reversals and outcomes, and events."""
    rng = np.random.default_rng(seed)
    terminals = pd.DataFrame({"terminal_id": [f"K{i}" for i in range(6)], "merchant_id": ["M1", "M1", "M2", "M2", "M3",
                                                                                       "M4"],
                              "model": ["A", "B", "A", "C", "B", "A"], "firmware": ["1", "2", "1", "3", "2", "1"],
                              "network_segment": ["S1", "S1", "S2", "S2", "S3", "S3"]})
    pick = rng.integers(0, 5, n)  # K5 has no attempts
    dates = pd.Timestamp("2026-03-10") + pd.to_timedelta(rng.integers(0, 6, n), unit="D")
    stamp = (dates + pd.to_timedelta(rng.integers(0, 86400, n), unit="s")).tz_localize("Asia/Shanghai")

    def choice(values):
        return np.asarray(values, dtype=object)[rng.integers(0, len(values), n)]

    days = pd.array(rng.integers(0, 6, n), dtype="Int64")
    days[rng.random(n) < 0.4] = pd.NA
    rec = pd.DataFrame({
        "txn_id": [f"T{i:04d}" for i in range(n)], "merchant_id": terminals["merchant_id"].to_numpy()[pick],
        "terminal_id": terminals["terminal_id"].to_numpy()[pick], "timestamp": stamp,
        "txn_type": choice(["purchase", "purchase", "transfer", "void", "refund"]),
        "response_code": pd.array(choice([None, "00", "00", "A0", "30", "68", "51"]), dtype="str"),
        "reversal": pd.array(choice([None, "none", "none", "sent", "failed"]), dtype="str"),
        "reversal_reason": pd.array(choice([None, None, "A0", "98", "96"]), dtype="str"),
        "outcome": pd.array(choice(["credited", "credited_late", "in_cycle", "credit_overdue", "not_cleared",
                                    "returned", "declined", "reversed", "reversal_failed", "voided"]), dtype="str"),
        "approved": rng.random(n) < 0.6, "business_date": dates.astype("datetime64[us]"),
        "deadline": (dates + pd.to_timedelta(rng.integers(1, 25, n), unit="D")).astype("datetime64[s]"),
        "credit_business_days": days,
    })
    when = pd.Timestamp("2026-03-09 20:00") + pd.to_timedelta(rng.integers(0, 8 * 86400, 60), unit="s")
    events = pd.DataFrame({"terminal_id": rng.choice([*terminals["terminal_id"], "K-UNKNOWN"], 60),
                           "timestamp": when.tz_localize("Asia/Shanghai"),
                           "event": rng.choice(["timeout", "mac_error", "retransmit", "reboot", "batch_upload_ok"], 60)})
    return rec, terminals, events


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("level", ["merchant", "terminal"])
def test_panel_sql_equals_a_brute_force_count(seed, level):
    rec, terminals, events = random_reconciled(seed)
    as_of = pd.Timestamp("2026-03-25 10:00", tz="Asia/Shanghai")
    got = daily_panel(rec, terminals, events, as_of=as_of, level=level)
    want = brute_force_panel(rec, terminals, events, pd.Timestamp("2026-03-25"), level)
    cols = list(want.columns)
    pd.testing.assert_frame_equal(got[cols], want, check_dtype=False)
    assert got["link_errors"].sum() == events["event"].isin(LINK_ERROR_EVENTS).sum() - (
        events["terminal_id"].eq("K-UNKNOWN") & events["event"].isin(LINK_ERROR_EVENTS)).sum()


def test_dominant_terminal_ties_go_to_the_smallest_id():
    rec, terminals, _ = random_reconciled(0)
    volume = rec.loc[rec["txn_type"].isin(ATTEMPT_TYPES), "terminal_id"].value_counts()
    dom = dominant_terminals(rec, terminals)
    for merchant, group in terminals.groupby("merchant_id"):
        n = group["terminal_id"].map(volume).fillna(0)
        best = group.loc[n == n.max(), "terminal_id"].min()
        assert dom.loc[merchant, "terminal_id"] == best
    tied = pd.concat([rec.loc[rec["terminal_id"].eq("K0")], rec.loc[rec["terminal_id"].eq("K0")]
                      .assign(terminal_id="K1")])
    assert dominant_terminals(tied, terminals).loc["M1", "terminal_id"] == "K0"


def test_daily_panel_on_an_engine_needs_as_of_and_knows_without_events(dataset, reconciled):
    with frames_engine(reconciled=reconciled, terminals=dataset.terminals) as eng:
        p = daily_panel_on(eng, as_of=AS_OF)
        with pytest.raises(ValueError, match="level"):
            daily_panel_on(eng, as_of=AS_OF, level="day")
    assert not p.attrs["link_errors_known"] and p["link_errors"].eq(0).all()
    assert p.attrs["as_of"] == pd.Timestamp(AS_OF, tz="Asia/Shanghai")


def test_daily_panel_on_without_credit_days_has_the_same_counts(dataset, reconciled):
    with frames_engine(reconciled=reconciled, terminals=dataset.terminals) as eng:
        full = daily_panel_on(eng, as_of=AS_OF, level="terminal")
        counts = daily_panel_on(eng, as_of=AS_OF, level="terminal", credit_days=False)
    assert "median_credit_days" in full.columns and "median_credit_days" not in counts.columns
    pd.testing.assert_frame_equal(counts, full.drop(columns="median_credit_days"))


def test_daily_panel_on_with_some_counts_has_those_columns_equal(dataset, reconciled):
    wanted = ["unsettled", "reversed", "approved"]
    with frames_engine(reconciled=reconciled, terminals=dataset.terminals,
                       terminal_events=dataset.terminal_events) as eng:
        full = daily_panel_on(eng, as_of=AS_OF, level="terminal")
        some = daily_panel_on(eng, as_of=AS_OF, level="terminal", counts=wanted, release=True)
        with pytest.raises(ValueError, match="not count columns of the panel: nope"):
            daily_panel_on(eng, as_of=AS_OF, counts=["unsettled", "nope"])
    left_out = [c for c in COUNT_COLUMNS if c not in (*wanted, "attempts", "link_errors")]
    assert not set(left_out) & set(some.columns)
    assert {"unsettled_rate", "success_rate", "link_errors_per_100"} <= set(some.columns)
    assert "money_not_arrived_rate" not in some.columns  # its numerator was left out
    pd.testing.assert_frame_equal(some, full[list(some.columns)])
