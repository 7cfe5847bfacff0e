"""Tests of analysis.tickets: one row per complaint, never a forced match."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from builders import make_dataset

from analysis.aggregates import frames_engine
from analysis.causes import classify
from analysis.contract import INCIDENT_OUTCOMES
from analysis.reconcile import reconcile
from analysis.tickets import (
    KIND_TXN_TYPE,
    OUTPUT_COLUMNS,
    amount_likelihood,
    match_tickets,
    match_tickets_on,
    ticket_candidates_on,
)

AS_OF = "2026-03-20 12:00"


def cheap_incidents(ds):
    """Incidents with their outcome and a stand-in cause, without running the classifier."""
    rec = reconcile(ds.transactions, ds.settlements, ds.merchants, as_of=AS_OF)
    inc = rec[
        rec["outcome"].isin(INCIDENT_OUTCOMES) & rec["txn_type"].isin(["purchase", "transfer"])
    ]
    return inc[["txn_id", "outcome"]].assign(
        cause="SYSTEM_FAULT", next_step="Check with the acquirer."
    )


def match(ds, classifier=cheap_incidents, **kw):
    incidents = classifier(ds)
    out = match_tickets(ds.complaints, ds.transactions, incidents, **kw)
    assert list(out.columns) == list(OUTPUT_COLUMNS)
    assert out["ticket_id"].tolist() == ds.complaints["ticket_id"].tolist()
    assert out["match_score"].between(0, 1).all()
    assert out["next_step"].str.len().gt(0).all()
    assert out["match_status"].isin(["matched", "ambiguous", "unmatched"]).all()
    assert out.loc[out["match_status"].ne("matched"), "txn_id"].isna().all()
    return out.set_index("ticket_id"), incidents.set_index("txn_id")


def classify_at_as_of(ds):
    return classify(ds, as_of=AS_OF)


def shop(transactions, complaints, settlements=()):
    return make_dataset(
        merchants=[{"merchant_id": "M1"}, {"merchant_id": "M2"}],
        terminals=[
            {"terminal_id": "K1", "merchant_id": "M1"},
            {"terminal_id": "K2", "merchant_id": "M2"},
        ],
        transactions=[{"terminal_id": "K1", **t} for t in transactions],
        settlements=list(settlements),
        complaints=[{"merchant_id": "M1", **c} for c in complaints],
        terminal_events=[],
    )


def test_exact_amount_and_time():
    ds = shop(
        [
            {
                "txn_id": "A",
                "amount": 128.5,
                "response_code": "51",
                "timestamp": "2026-03-10 10:00",
            },
            {"txn_id": "B", "amount": 35.0, "response_code": "51", "timestamp": "2026-03-10 10:02"},
        ],
        [{"ticket_id": "C1", "amount": 128.5, "txn_time": "2026-03-10 10:05"}],
    )
    out, _ = match(ds)
    row = out.loc["C1"]
    assert (row["txn_id"], row["match_status"], row["candidates"]) == ("A", "matched", 1)
    assert row["match_score"] >= 0.9 and "amount exact" in row["note"]


@pytest.mark.parametrize(
    ("stated", "found"), [(129.0, "A"), (128.0, "A"), (130.0, "A"), (150.0, None)]
)
def test_rounded_amounts(stated, found):
    ds = shop(
        [{"txn_id": "A", "amount": 128.5, "response_code": "05", "timestamp": "2026-03-10 10:00"}],
        [{"ticket_id": "C1", "amount": stated, "txn_time": "2026-03-10 10:20"}],
    )
    row = match(ds)[0].loc["C1"]
    assert (row["txn_id"] if pd.notna(row["txn_id"]) else None) == found


def test_exact_amount_is_likelier_than_rounded():
    like, _ = amount_likelihood(pd.Series([128.5, 129.0, 130.0, 150.0]), pd.Series([128.5] * 4))
    assert like[0] > like[1] > like[2] > like[3] == 0


def test_rounded_amount_near_the_stated_time_beats_an_exact_one_far_from_it():
    ds = shop(
        [
            {
                "txn_id": "FAR",
                "amount": 20.0,
                "response_code": "",
                "reversal": "failed",
                "timestamp": "2026-03-10 09:10",
            },
            {
                "txn_id": "NEAR",
                "amount": 24.47,
                "response_code": "",
                "reversal": "failed",
                "timestamp": "2026-03-10 10:02",
            },
        ],
        [{"ticket_id": "C1", "amount": 20.0, "txn_time": "2026-03-10 10:00"}],
    )
    row = match(ds)[0].loc["C1"]
    assert (row["txn_id"], row["match_status"]) == ("NEAR", "matched")
    assert "amount rounded to 10 yuan" in row["note"]


def test_without_txn_time_looks_before_the_ticket_and_prefers_incidents():
    ds = shop(
        [
            {"txn_id": "OK", "amount": 100.0, "timestamp": "2026-03-09 12:00"},
            {
                "txn_id": "LOST",
                "amount": 100.0,
                "timestamp": "2026-03-09 15:00",
                "response_code": "",
                "reversal": "failed",
                "reversal_reason": "98",
            },
            {
                "txn_id": "AFTER",
                "amount": 100.0,
                "response_code": "51",
                "timestamp": "2026-03-12 10:00",
            },
        ],
        [{"ticket_id": "C1", "amount": 100.0, "opened_at": "2026-03-11 09:00"}],
        settlements=[{"txn_id": "OK"}],
    )
    row = match(ds)[0].loc["C1"]
    assert (row["txn_id"], row["match_status"]) == ("LOST", "matched")
    assert row["candidates"] == 2  # AFTER came after the ticket was opened
    assert "no time stated" in row["note"]


def test_nearly_tied_pair_is_ambiguous():
    ds = shop(
        [
            {
                "txn_id": "X1",
                "amount": 100.0,
                "response_code": "91",
                "timestamp": "2026-03-10 10:00",
            },
            {
                "txn_id": "X2",
                "amount": 100.0,
                "response_code": "91",
                "timestamp": "2026-03-10 10:02",
            },
        ],
        [{"ticket_id": "C1", "amount": 100.0, "txn_time": "2026-03-10 10:01"}],
    )
    row = match(ds)[0].loc["C1"]
    assert row["match_status"] == "ambiguous" and pd.isna(row["txn_id"]) and pd.isna(row["cause"])
    assert "X1" in row["note"] and "X2" in row["note"] and row["candidates"] == 2
    assert "RRN" in row["next_step"]


def test_unmatched_never_forces_a_match():
    ds = shop(
        [
            {"txn_id": "A", "amount": 88.0, "response_code": "51", "timestamp": "2026-03-10 10:00"},
            {
                "txn_id": "B",
                "amount": 300.0,
                "response_code": "51",
                "timestamp": "2026-03-10 16:00",
            },
        ],
        [
            {"ticket_id": "C1", "amount": 300.0, "txn_time": "2026-03-10 10:00"},
            {"ticket_id": "C2", "amount": 88.0, "merchant_id": "M2"},
        ],
    )
    out, _ = match(ds)
    assert out["match_status"].tolist() == ["unmatched", "unmatched"]
    assert out["txn_id"].isna().all() and out["candidates"].tolist() == [0, 0]
    assert "merchant M1" in out.loc["C1", "note"]


def test_kind_decides_purchase_or_transfer():
    ds = shop(
        [
            {
                "txn_id": "P",
                "amount": 500.0,
                "response_code": "51",
                "timestamp": "2026-03-10 10:00",
            },
            {
                "txn_id": "T",
                "txn_type": "transfer",
                "amount": 500.0,
                "response_code": "92",
                "payee_bank": "ICBC",
                "timestamp": "2026-03-10 10:00",
            },
        ],
        [
            {
                "ticket_id": "SWIPE",
                "kind": "unsettled",
                "amount": 500.0,
                "txn_time": "2026-03-10 10:00",
            },
            {
                "ticket_id": "XFER",
                "kind": "transfer_failed",
                "amount": 500.0,
                "txn_time": "2026-03-10 10:00",
            },
        ],
    )
    out, _ = match(ds, classify_at_as_of)
    assert out.loc["SWIPE", "txn_id"] == "P" and out.loc["XFER", "txn_id"] == "T"
    assert out.loc["XFER", "cause"] == "COUNTERPARTY_BANK"


def test_inherits_cause_and_next_step():
    ds = shop(
        [{"txn_id": "F", "amount": 5000.0, "response_code": "59", "timestamp": "2026-03-10 10:00"}],
        [{"ticket_id": "C1", "amount": 5000.0, "txn_time": "2026-03-10 10:10"}],
    )
    out, incidents = match(ds, classify_at_as_of)
    assert out.loc["C1", "cause"] == "FRAUD_SUSPECTED" == incidents.loc["F", "cause"]
    assert out.loc["C1", "next_step"] == incidents.loc["F", "next_step"]
    assert "police" in out.loc["C1", "next_step"] and out.loc["C1", "outcome"] == "declined"


def test_match_to_a_credited_transaction_says_the_money_arrived():
    ds = shop(
        [{"txn_id": "OK", "amount": 60.0, "timestamp": "2026-03-10 10:00"}],
        [{"ticket_id": "C1", "amount": 60.0, "txn_time": "2026-03-10 10:00"}],
        settlements=[{"txn_id": "OK", "credited_at": "2026-03-11 09:00"}],
    )
    incidents = cheap_incidents(ds)
    rec = reconcile(ds.transactions, ds.settlements, ds.merchants, as_of=AS_OF)
    row = match_tickets(ds.complaints, rec, incidents).iloc[0]
    assert row["txn_id"] == "OK" and pd.isna(row["cause"]) and row["outcome"] == "credited"
    assert "money arrived" in row["next_step"] and "2026-03-11" in row["next_step"]
    plain = match_tickets(ds.complaints, ds.transactions, incidents).iloc[0]
    assert pd.isna(plain["cause"]) and "Not an incident" in plain["next_step"]


def test_a_transaction_goes_to_the_ticket_that_describes_it_best():
    ds = shop(
        [
            {
                "txn_id": "A",
                "amount": 100.0,
                "response_code": "96",
                "timestamp": "2026-03-10 10:00",
            },
            {
                "txn_id": "B",
                "amount": 100.0,
                "response_code": "96",
                "timestamp": "2026-03-10 10:50",
            },
        ],
        [
            {"ticket_id": "EXACT", "amount": 100.0, "txn_time": "2026-03-10 10:00"},
            {"ticket_id": "VAGUE", "amount": 100.0, "txn_time": "2026-03-10 10:15"},
        ],
    )
    out, _ = match(ds)
    assert out.loc["EXACT", "txn_id"] == "A"
    assert out.loc["VAGUE", "txn_id"] == "B"  # A is taken; B is what is left


def test_two_tickets_clearly_about_the_same_transaction_both_match():
    ds = shop(
        [{"txn_id": "A", "amount": 100.0, "response_code": "96", "timestamp": "2026-03-10 10:00"}],
        [
            {"ticket_id": "FIRST", "amount": 100.0, "txn_time": "2026-03-10 10:00"},
            {
                "ticket_id": "AGAIN",
                "amount": 100.0,
                "txn_time": "2026-03-10 10:03",
                "opened_at": "2026-03-13 09:00",
            },
        ],
    )
    out, _ = match(ds)
    assert out["txn_id"].tolist() == ["A", "A"] and (out["match_status"] == "matched").all()


def test_a_ticket_whose_only_candidate_is_taken_is_unmatched():
    ds = shop(
        [{"txn_id": "A", "amount": 96.0, "response_code": "96", "timestamp": "2026-03-10 10:00"}],
        [
            {"ticket_id": "EXACT", "amount": 96.0, "txn_time": "2026-03-10 10:00"},
            {"ticket_id": "ROUGH", "amount": 100.0, "txn_time": "2026-03-10 10:45"},
        ],
    )
    out, _ = match(ds)
    assert out.loc["EXACT", "txn_id"] == "A"
    assert (
        out.loc["ROUGH", "match_status"] == "unmatched"
        and "matched by EXACT" in out.loc["ROUGH", "note"]
    )


def test_no_complaints_gives_an_empty_frame():
    ds = shop([{"txn_id": "A"}], [])
    out = match_tickets(ds.complaints, ds.transactions, cheap_incidents(ds))
    assert out.empty and list(out.columns) == list(OUTPUT_COLUMNS)


# --------------------------------------------------------------------------- the candidates step


def brute_force_candidates(complaints, transactions, *, window_s, lookback_s, slack):
    """(ticket, transaction) pairs that roughly fit, by looping over every pair in plain Python
    (tickets in order, each one's transactions by time and id)."""
    pairs = []
    ordered = transactions.sort_values(["timestamp", "txn_id"]).to_dict("records")
    for c in complaints.to_dict("records"):
        opened = c["opened_at"].timestamp()
        stated = None if pd.isna(c["txn_time"]) else c["txn_time"].timestamp()
        for x in ordered:
            t = x["timestamp"].timestamp()
            same = x["merchant_id"] == c["merchant_id"] and x["txn_type"] == KIND_TXN_TYPE.get(c["kind"])
            near = abs(t - stated) <= window_s if stated is not None else opened - t <= lookback_s
            if same and abs(c["amount"] - x["amount"]) < slack and t <= opened and near:
                pairs.append((c["ticket_id"], x["txn_id"]))
    return pairs


def test_candidates_sql_equals_a_brute_force_search_at_the_edges():
    at = "2026-03-10 10:00"
    opened = "2026-03-12 09:00"
    txns = [
        {"txn_id": "EXACT", "amount": 100.0, "timestamp": at},
        {"txn_id": "NEAR_10", "amount": 90.01, "timestamp": at},  # 9.99 yuan off: in
        {"txn_id": "OFF_10", "amount": 110.0, "timestamp": at},  # 10 yuan off: out
        {"txn_id": "EDGE_WIN", "amount": 100.0, "timestamp": "2026-03-10 11:00"},  # 60 min: in
        {"txn_id": "PAST_WIN", "amount": 100.0, "timestamp": "2026-03-10 11:00:01"},  # out
        {"txn_id": "AT_OPEN", "amount": 50.0, "timestamp": opened},  # made when the ticket opened: in
        {"txn_id": "AFTER", "amount": 50.0, "timestamp": "2026-03-12 09:00:01"},  # out
        {"txn_id": "OLD", "amount": 50.0, "timestamp": "2026-02-26 09:00"},  # exactly 14 days before: in
        {"txn_id": "OLDER", "amount": 50.0, "timestamp": "2026-02-26 08:59:59"},  # out
        {"txn_id": "TRANSFER", "amount": 100.0, "timestamp": at, "txn_type": "transfer", "payee_bank": "中国银行"},
        {"txn_id": "OTHER_SHOP", "terminal_id": "K2", "amount": 100.0, "timestamp": at},
    ]
    ds = make_dataset(
        merchants=[{"merchant_id": "M1"}, {"merchant_id": "M2"}],
        terminals=[{"terminal_id": "K1", "merchant_id": "M1"}, {"terminal_id": "K2", "merchant_id": "M2"}],
        transactions=[{"terminal_id": "K1", **t} for t in txns],
        complaints=[
            {"ticket_id": "TIMED", "merchant_id": "M1", "amount": 100.0, "txn_time": at, "opened_at": opened},
            {"ticket_id": "UNTIMED", "merchant_id": "M1", "amount": 50.0, "opened_at": opened},
            {"ticket_id": "XFER", "merchant_id": "M1", "kind": "transfer_failed", "amount": 100.0,
             "opened_at": opened},
        ],
    )
    with frames_engine(reconciled=ds.transactions) as eng:
        got = ticket_candidates_on(eng, ds.complaints)
    want = brute_force_candidates(ds.complaints, ds.transactions, window_s=3600, lookback_s=14 * 86400, slack=10.0)
    assert list(zip(got["ticket_id"], got["txn_id"])) == want
    assert set(got["txn_id"]) == {"EXACT", "NEAR_10", "EDGE_WIN", "AT_OPEN", "OLD", "TRANSFER"}
    assert got["outcome"].isna().all()  # plain transactions: no outcome known


@pytest.mark.parametrize("seed", [0, 1])
def test_candidates_sql_equals_a_brute_force_search_on_random_tickets(seed):
    rng = np.random.default_rng(seed)
    n = 150
    start = pd.Timestamp("2026-03-01", tz="Asia/Shanghai")
    txns = pd.DataFrame({
        "txn_id": [f"T{i:03d}" for i in range(n)], "merchant_id": rng.choice(["M1", "M2"], n),
        "txn_type": rng.choice(["purchase", "transfer", "refund"], n),
        "amount": rng.choice([19.99, 20.0, 24.47, 100.0, 105.5, 3000.0], n),
        "timestamp": start + pd.to_timedelta(rng.integers(0, 20 * 86400, n), unit="s"),
    })
    m = 30
    opened = start + pd.to_timedelta(rng.integers(5 * 86400, 22 * 86400, m), unit="s")
    stated = (opened - pd.to_timedelta(rng.integers(0, 6 * 86400, m), unit="s")).to_series(index=range(m))
    stated[rng.random(m) < 0.4] = pd.NaT
    complaints = pd.DataFrame({
        "ticket_id": [f"C{i:02d}" for i in range(m)], "merchant_id": rng.choice(["M1", "M2", "M3"], m),
        "kind": rng.choice(["unsettled", "transfer_failed"], m), "amount": rng.choice([20.0, 25.0, 100.0], m),
        "opened_at": opened, "txn_time": stated.to_numpy(),
    })
    with frames_engine(reconciled=txns) as eng:
        got = ticket_candidates_on(eng, complaints, time_window_minutes=90, amount_tolerance=12.0, lookback_days=3)
    want = brute_force_candidates(complaints, txns, window_s=90 * 60, lookback_s=3 * 86400, slack=12.005)
    assert list(zip(got["ticket_id"], got["txn_id"])) == want and len(want) > 5


def test_match_tickets_on_an_engine_equals_the_pandas_entry_point():
    from analysis.engine import DuckDBEngine
    from analysis.engine.tables import register_dataset
    from analysis.reconcile import calendar_for, reconcile_on

    ds = shop(
        [{"txn_id": "A", "amount": 100.0, "response_code": "96", "timestamp": "2026-03-10 10:00"},
         {"txn_id": "B", "amount": 100.0, "timestamp": "2026-03-10 10:50"}],
        [{"ticket_id": "EXACT", "amount": 100.0, "txn_time": "2026-03-10 10:00"},
         {"ticket_id": "VAGUE", "amount": 100.0}],
        settlements=[{"txn_id": "B", "credited_at": "2026-03-11 09:00"}],
    )
    incidents = cheap_incidents(ds)
    rec = reconcile(ds.transactions, ds.settlements, ds.merchants, as_of=AS_OF)
    want = match_tickets(ds.complaints, rec, incidents)
    with DuckDBEngine() as eng:
        register_dataset(eng, ds, calendar_for(ds.transactions["timestamp"]))
        reconcile_on(eng, as_of=AS_OF)
        got = match_tickets_on(eng, ds.complaints, incidents)
    pd.testing.assert_frame_equal(got, want)
    assert got["txn_id"].tolist()[0] == "A"
