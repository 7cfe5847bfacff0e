"""Tests of analysis.reconcile: one exact outcome per transaction."""

from __future__ import annotations

import pandas as pd
import pytest
from builders import make_dataset
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analysis.contract import OUTCOMES
from analysis.reconcile import default_as_of, outcome_counts, reconcile


def run(ds, as_of="2026-03-20 12:00"):
    return reconcile(ds.transactions, ds.settlements, ds.merchants, as_of=as_of)


def outcome_of(ds, txn_id="T0001", as_of="2026-03-20 12:00"):
    r = run(ds, as_of)
    return r.set_index("txn_id").loc[txn_id, "outcome"]


# --- one minimal dataset per outcome ------------------------------------------------
CASES = {
    "credited": dict(
        transactions=[{}],
        settlements=[{"txn_id": "T0001", "credited_at": "2026-03-11 09:00"}],
    ),
    "credited_late": dict(
        transactions=[{}],  # Tue 2026-03-10: due 03-11, deadline 03-13
        settlements=[{"txn_id": "T0001", "credited_at": "2026-03-16 09:00"}],
    ),
    "returned": dict(
        transactions=[{}],
        settlements=[
            {"txn_id": "T0001", "credit_status": "returned", "return_reason": "account_frozen"}
        ],
    ),
    "credit_overdue": dict(
        transactions=[{}],
        settlements=[{"txn_id": "T0001", "credit_status": "pending"}],
    ),
    "not_cleared": dict(transactions=[{}], settlements=[]),
    "declined": dict(transactions=[{"response_code": "51"}], settlements=[]),
    "reversed": dict(
        transactions=[{"response_code": "", "reversal": "sent", "reversal_reason": "98"}],
        settlements=[],
    ),
    "reversal_failed": dict(
        transactions=[{"response_code": "", "reversal": "failed", "reversal_reason": "98"}],
        settlements=[],
    ),
}


@pytest.mark.parametrize("expected", sorted(CASES))
def test_each_outcome(expected):
    assert outcome_of(make_dataset(**CASES[expected])) == expected


def test_in_cycle_pending_and_uncleared():
    ds = make_dataset(
        transactions=[{"txn_id": "P"}, {"txn_id": "U"}],
        settlements=[{"txn_id": "P", "credit_status": "pending"}],
    )
    r = run(ds, as_of="2026-03-12 18:00").set_index("txn_id")
    assert r.loc["P", "outcome"] == "in_cycle"
    assert r.loc["U", "outcome"] == "in_cycle"
    assert r.loc["P", "wait_until"] == pd.Timestamp("2026-03-13")


def test_failed_reversal_wins_over_an_approval_code():
    ds = make_dataset(
        transactions=[{"response_code": "00", "reversal": "failed", "reversal_reason": "96"}]
    )
    assert outcome_of(ds) == "reversal_failed"


def test_approved_then_reversed_is_reversed():
    ds = make_dataset(
        transactions=[{"response_code": "00", "reversal": "sent", "reversal_reason": "A0"}]
    )
    assert outcome_of(ds) == "reversed"


def test_no_response_without_reversal_is_a_failed_reversal():
    ds = make_dataset(transactions=[{"response_code": "", "reversal": "none"}])
    assert outcome_of(ds) == "reversal_failed"


def test_void_cancels_purchase():
    ds = make_dataset(
        transactions=[
            {"txn_id": "P"},
            {"txn_id": "V", "txn_type": "void", "original_txn_id": "P"},
            {"txn_id": "R", "txn_type": "refund", "original_txn_id": "X"},
        ],
        settlements=[],
    )
    r = run(ds).set_index("txn_id")["outcome"]
    assert r.to_dict() == {"P": "voided", "V": "cancellation", "R": "cancellation"}


def test_declined_void_does_not_cancel_and_is_declined():
    ds = make_dataset(
        transactions=[
            {"txn_id": "P"},
            {"txn_id": "V", "txn_type": "void", "original_txn_id": "P", "response_code": "12"},
        ],
        settlements=[{"txn_id": "P", "credited_at": "2026-03-11 09:00"}],
    )
    r = run(ds).set_index("txn_id")["outcome"]
    assert r.to_dict() == {"P": "credited", "V": "declined"}


# --- cycles across the 2026 Spring Festival ------------------------------------------
def holiday_dataset(credited_at):
    merchants = [
        {"merchant_id": m, "settlement_cycle": c}
        for m, c in (("MT1", "T1"), ("MD1", "D1"), ("MD0", "D0"))
    ]
    txns = [
        {"txn_id": m, "merchant_id": m, "terminal_id": f"TERM-{m}", "timestamp": "2026-02-13 15:00"}
        for m in ("MT1", "MD1", "MD0")
    ]
    terminals = [{"terminal_id": f"TERM-{m}", "merchant_id": m} for m in ("MT1", "MD1", "MD0")]
    settlements = [{"txn_id": m, "credited_at": credited_at} for m in ("MT1", "MD1", "MD0")]
    return make_dataset(
        merchants=merchants, terminals=terminals, transactions=txns, settlements=settlements
    )


def test_due_dates_and_deadlines_across_spring_festival():
    # Fri 2026-02-13; Sat 02-14 is a make-up working day; 02-15..02-23 holiday.
    r = run(holiday_dataset("2026-02-25 10:00")).set_index("txn_id")
    days = r[["due_date", "deadline"]].astype(str)
    assert days.loc["MT1"].tolist() == ["2026-02-14", "2026-02-25"]
    assert days.loc["MD1"].tolist() == ["2026-02-14", "2026-02-25"]
    assert days.loc["MD0"].tolist() == ["2026-02-13", "2026-02-24"]
    assert r["outcome"].to_dict() == {"MT1": "credited", "MD1": "credited", "MD0": "credited_late"}
    # (02-13, 02-25] holds the business days 02-14, 02-24 and 02-25.
    assert r["credit_business_days"].tolist() == [3, 3, 3]


def test_make_up_saturday_counts_for_t1():
    ds = make_dataset(transactions=[{"timestamp": "2026-02-27 20:00"}], settlements=[])
    r = run(ds, as_of="2026-03-01 12:00").iloc[0]
    assert str(r["due_date"].date()) == "2026-02-28"  # 调休 Saturday
    assert str(r["deadline"].date()) == "2026-03-03"
    assert r["outcome"] == "in_cycle"
    assert r["wait_until"] == pd.Timestamp("2026-03-03")


def test_as_of_moves_in_cycle_to_not_cleared():
    ds = make_dataset(transactions=[{"timestamp": "2026-02-13 15:00"}], settlements=[])
    assert outcome_of(ds, as_of="2026-02-25 23:59") == "in_cycle"
    assert outcome_of(ds, as_of="2026-02-26 00:01") == "not_cleared"


def test_business_date_is_shanghai_day():
    ds = make_dataset(transactions=[{"timestamp": "2026-03-10T16:30:00Z"}])  # 00:30 on 03-11 local
    assert str(run(ds)["business_date"].iloc[0].date()) == "2026-03-11"


def test_without_settlements_clearing_is_unknown():
    ds = make_dataset(
        transactions=[{"txn_id": "A"}, {"txn_id": "B", "timestamp": "2026-03-19 10:00"}]
    )
    r = run(ds)
    assert r.attrs["settlements_known"] is False
    assert not r["clearing_known"].any()
    assert r["outcome"].tolist() == ["not_cleared", "in_cycle"]


def test_settled_flag_and_columns():
    ds = make_dataset(**CASES["credited"])
    r = run(ds).iloc[0]
    assert bool(r["settled"]) and r["credit_status"] == "credited"
    assert r["credit_business_days"] == 1


def test_same_order_and_index():
    ds = make_dataset(transactions=[{"txn_id": t} for t in ("Z", "A", "M")], settlements=[])
    txns = ds.transactions.set_axis([10, 5, 7])
    r = reconcile(txns, ds.settlements, ds.merchants, as_of="2026-03-20")
    assert r["txn_id"].tolist() == ["Z", "A", "M"] and r.index.tolist() == [10, 5, 7]


def test_nanosecond_units_give_the_same_result():
    ds = make_dataset(**CASES["credited_late"])
    txns = ds.transactions.assign(timestamp=ds.transactions["timestamp"].dt.as_unit("ns"))
    st_ = ds.settlements.assign(
        credited_at=ds.settlements["credited_at"].dt.as_unit("ns"),
        cleared_date=ds.settlements["cleared_date"].dt.as_unit("ns"),
    )
    assert (
        reconcile(txns, st_, ds.merchants, as_of="2026-03-20")["outcome"].iloc[0] == "credited_late"
    )


def test_default_as_of_takes_the_latest_of_three_tables():
    ds = make_dataset(
        transactions=[{}],
        settlements=[{"txn_id": "T0001", "credited_at": "2026-03-11 09:00"}],
        complaints=[{"opened_at": "2026-03-15 08:00"}],
    )
    assert default_as_of(ds) == pd.Timestamp("2026-03-15 08:00", tz="Asia/Shanghai")
    r = reconcile(ds.transactions, ds.settlements)
    assert r.attrs["as_of"] == pd.Timestamp("2026-03-11 09:00", tz="Asia/Shanghai")


def test_outcome_counts_lists_every_outcome():
    ds = make_dataset(**CASES["declined"])
    counts = outcome_counts(run(ds))
    assert list(counts.index) == list(OUTCOMES)
    assert counts.loc["declined", "count"] == 1 and counts["count"].sum() == 1
    assert counts.loc["declined", "incident"] and not counts.loc["credited", "incident"]


# --- property: every transaction lands in exactly one outcome ------------------------
txn_rows = st.fixed_dictionaries(
    {
        "txn_type": st.sampled_from(["purchase", "transfer", "refund", "void"]),
        "response_code": st.sampled_from(["00", "00", "00", "", "05", "51", "91"]),
        "reversal": st.sampled_from(["none", "none", "sent", "failed"]),
        "day": st.integers(0, 40),
        "settle": st.sampled_from([None, "credited", "pending", "returned"]),
        "credit_delay": st.integers(0, 12),
        "void_target": st.integers(0, 30),
        "cycle": st.sampled_from(["T1", "D1", "D0"]),
    }
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(txn_rows, min_size=1, max_size=30), as_of_day=st.integers(0, 60))
def test_every_transaction_gets_exactly_one_outcome(rows, as_of_day):
    start = pd.Timestamp("2026-01-20 10:00")
    txns, settlements, merchants = [], [], []
    for i, r in enumerate(rows):
        tid = f"T{i:04d}"
        merchants.append({"merchant_id": f"M{i}", "settlement_cycle": r["cycle"]})
        day = start + pd.Timedelta(days=r["day"])
        txns.append(
            {
                "txn_id": tid,
                "merchant_id": f"M{i}",
                "terminal_id": f"K{i}",
                "timestamp": day,
                "txn_type": r["txn_type"],
                "response_code": r["response_code"],
                "reversal": r["reversal"],
                "original_txn_id": f"T{r['void_target']:04d}" if r["txn_type"] == "void" else None,
            }
        )
        if r["settle"]:
            settlements.append(
                {
                    "txn_id": tid,
                    "credit_status": r["settle"],
                    "credited_at": day + pd.Timedelta(days=r["credit_delay"])
                    if r["settle"] == "credited"
                    else None,
                    "return_reason": "invalid_account" if r["settle"] == "returned" else None,
                }
            )
    ds = make_dataset(merchants=merchants, transactions=txns, settlements=settlements)
    r = run(ds, as_of=start + pd.Timedelta(days=as_of_day))
    assert len(r) == len(rows)
    assert r["txn_id"].tolist() == ds.transactions["txn_id"].tolist()
    assert r["outcome"].isin(list(OUTCOMES)).all()
    assert outcome_counts(r)["count"].sum() == len(rows)
    approved = r["approved"]
    assert r.loc[~approved, "outcome"].isin(["declined", "reversed", "reversal_failed"]).all()
    assert r.loc[r["outcome"].eq("in_cycle"), "wait_until"].notna().all()
    assert r.loc[r["outcome"].ne("in_cycle"), "wait_until"].isna().all()
