"""Tests of analysis.causes: one exact cause per incident, with checkable evidence."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from builders import make_dataset

from analysis.causes import (
    DECLINE_CAUSES,
    RULES,
    _DECLINED_BY,
    _assign_rules,
    _decide,
    cause_table,
    classify,
    classify_on,
    incident_features,
)
from analysis.contract import (
    CAUSES,
    FRAUD_POLICE_THRESHOLD,
    INCIDENT_OUTCOMES,
    LINK_ERROR_EVENTS,
    RESPONSE_CODES,
    REVERSAL_REASON_MEANINGS,
)
from analysis.engine import DuckDBEngine
from analysis.engine.tables import register_dataset
from analysis.evidence import WRONG_ACCOUNT_RETURNS, Thresholds
from analysis.io import Dataset, load_dataset
from analysis.reconcile import (
    calendar_for,
    default_as_of,
    reconcile,
    reconcile_on,
    to_local_time,
)
from analysis.simulate import (
    BankOutage,
    CityConfig,
    FaultyFirmware,
    FrozenAccount,
    IssuerOutage,
    MisconfiguredMerchant,
    UnstableLink,
    simulate_city,
)
from analysis.workdays import to_business_date

ROOT = Path(__file__).resolve().parents[1]
AS_OF = "2026-03-20 12:00"


def run(ds, as_of=AS_OF, **kw):
    out = classify(ds, as_of=as_of, **kw)
    assert out["txn_id"].is_unique
    assert out["confidence"].between(0, 1).all()
    assert out["cause"].isin(list(CAUSES)).all()
    assert out["next_step"].str.len().gt(0).all()
    assert out["evidence"].str.len().gt(0).all()
    assert not out["rule"].eq("fallback").any()
    return out


def one(ds, txn_id="T0001", as_of=AS_OF, **kw):
    out = run(ds, as_of, **kw)
    hit = out[out["txn_id"].eq(txn_id)]
    assert len(hit) == 1, f"expected one row for {txn_id}, got {len(hit)}"
    return hit.iloc[0]


def events(n, event, at, terminal="TERM0001", step_s=20):
    start = pd.Timestamp(at)
    return [
        {
            "terminal_id": terminal,
            "event": event,
            "timestamp": start + pd.Timedelta(seconds=i * step_s),
        }
        for i in range(n)
    ]


# --- taxonomy ----------------------------------------------------------------------


def test_cause_table_lists_every_cause():
    table = cause_table()
    assert list(table.columns) == ["code", "zh", "en", "meaning", "next_steps"]
    assert table["code"].tolist() == list(CAUSES)
    assert table.set_index("code").loc["NETWORK_COMMUNICATION", "zh"] == "网络通讯问题"


# --- declines by code ----------------------------------------------------------------


def test_decline_codes():
    codes = sorted(DECLINE_CAUSES)
    ds = make_dataset(
        transactions=[{"txn_id": c, "response_code": c} for c in codes], settlements=[]
    )
    out = run(ds).set_index("txn_id")
    assert sorted(out.index) == codes
    for code in codes:
        row = out.loc[code]
        assert (row["outcome"], row["cause"]) == ("declined", DECLINE_CAUSES[code]), code
        assert f"declined {code}" in row["evidence"]
        assert row["confidence"] >= 0.9


def test_fraud_police_step_from_3000_yuan():
    ds = make_dataset(
        transactions=[
            {"txn_id": "BIG", "response_code": "59", "amount": 3000.0},
            {"txn_id": "SMALL", "response_code": "43", "amount": 2999.99},
        ]
    )
    out = run(ds).set_index("txn_id")
    assert (out["cause"] == "FRAUD_SUSPECTED").all()
    assert "police" in out.loc["BIG", "next_step"]
    assert "police" not in out.loc["SMALL", "next_step"]


def test_do_not_honour_alone_is_unknown_and_says_what_would_decide():
    row = one(make_dataset(transactions=[{"response_code": "05"}]))
    assert row["cause"] == "UNKNOWN"
    assert "05" in row["evidence"] and "issuer's own reason" in row["evidence"]
    assert row["confidence"] <= 0.5


def test_unlisted_code_is_unknown_with_the_code():
    row = one(make_dataset(transactions=[{"response_code": "N7"}]))
    assert row["cause"] == "UNKNOWN" and "N7" in row["evidence"]


@pytest.mark.parametrize("code", ["91", "92"])
def test_transfer_declined_by_receiving_bank(code):
    ds = make_dataset(
        transactions=[{"txn_type": "transfer", "response_code": code, "payee_bank": "招商银行"}]
    )
    row = one(ds)
    assert row["cause"] == "COUNTERPARTY_BANK"
    assert "招商银行" in row["evidence"] and "招商银行" in row["next_step"]


@pytest.mark.parametrize("code", ["91", "96"])
def test_purchase_91_96_is_system_fault(code):
    row = one(make_dataset(transactions=[{"response_code": code}]))
    assert row["cause"] == "SYSTEM_FAULT" and code in row["evidence"]


def burst_dataset(extra_txns=()):
    """91 declines on purchases of three terminals on three segments within 6 minutes."""
    terminals = [
        {"terminal_id": f"K{i}", "merchant_id": f"M{i}", "network_segment": f"SEG-{i}"}
        for i in range(4)
    ]
    txns = [
        {
            "txn_id": f"P{i}",
            "terminal_id": f"K{i}",
            "response_code": "91",
            "timestamp": f"2026-03-10 10:0{2 * i}",
        }
        for i in range(3)
    ]
    return make_dataset(
        terminals=terminals, transactions=txns + list(extra_txns), terminal_events=[]
    )


def test_burst_across_segments_names_the_count():
    row = one(burst_dataset(), "P1")
    assert row["cause"] == "SYSTEM_FAULT"
    assert "3 network segments" in row["evidence"] and "outage" in row["evidence"]
    assert row["confidence"] >= 0.9


def test_transfer_91_stays_with_the_receiving_bank_but_mentions_a_burst():
    # contract: 91 on a transfer is the receiving bank; the burst is shown for the analyst
    transfer = {
        "txn_id": "X",
        "terminal_id": "K3",
        "txn_type": "transfer",
        "response_code": "91",
        "timestamp": "2026-03-10 10:03",
        "payee_bank": "ICBC",
    }
    row = one(burst_dataset([transfer]), "X")
    assert row["cause"] == "COUNTERPARTY_BANK" and "3 network segments" in row["evidence"]


# --- 68, A0/30: network or system ------------------------------------------------------


def test_68_with_mac_errors_on_the_terminal_is_network():
    ds = make_dataset(
        transactions=[{"response_code": "68", "timestamp": "2026-03-10 10:00"}],
        terminal_events=events(11, "mac_error", "2026-03-10 09:55"),
    )
    row = one(ds)
    assert row["cause"] == "NETWORK_COMMUNICATION"
    assert "11 MAC errors on terminal TERM0001 within ±10 min" in row["evidence"]
    assert "CT-PD-0001" in row["next_step"]


def test_68_on_a_healthy_line_is_system_fault():
    ds = make_dataset(
        transactions=[{"response_code": "68", "timestamp": "2026-03-10 10:00"}],
        # link errors on the terminal, but hours away from the transaction
        terminal_events=events(2, "timeout", "2026-03-10 03:00"),
    )
    row = one(ds)
    assert row["cause"] == "SYSTEM_FAULT"
    assert (
        "68" in row["evidence"] and "no link errors on terminal TERM0001 near it" in row["evidence"]
    )


def test_68_with_only_the_segment_far_above_usual_is_system_fault_with_less_confidence():
    # the segment's usual day has 1 link error; on 03-10 another terminal has 20,
    # but the terminal that got the late answer logged none itself
    terminals = [
        {"terminal_id": "K1", "merchant_id": "M1", "network_segment": "CT-PD-0231"},
        {"terminal_id": "K2", "merchant_id": "M2", "network_segment": "CT-PD-0231"},
    ]
    ev = [e for d in range(1, 10) for e in events(1, "timeout", f"2026-03-0{d} 12:00", "K2")]
    ev += events(20, "connection_reset", "2026-03-10 17:55", "K2")
    ds = make_dataset(
        terminals=terminals,
        transactions=[
            {
                "txn_id": "A",
                "terminal_id": "K1",
                "response_code": "68",
                "timestamp": "2026-03-10 18:00",
            },
            {"txn_id": "B", "terminal_id": "K1", "timestamp": "2026-03-01 10:00"},
        ],
        settlements=[{"txn_id": "B"}],
        terminal_events=ev,
    )
    row = one(ds, "A")
    assert row["cause"] == "SYSTEM_FAULT" and row["confidence"] <= 0.6
    assert "segment CT-PD-0231 at 10× its usual link-error rate" in row["evidence"]
    assert "no link errors on terminal K1" in row["evidence"]


def test_reversal_98_with_only_segment_errors_is_network():
    terminals = [
        {"terminal_id": "K1", "merchant_id": "M1", "network_segment": "S"},
        {"terminal_id": "K2", "merchant_id": "M2", "network_segment": "S"},
    ]
    ds = make_dataset(
        terminals=terminals,
        transactions=[
            {
                "terminal_id": "K1",
                "response_code": "",
                "reversal": "sent",
                "reversal_reason": "98",
                "timestamp": "2026-03-10 18:00",
            }
        ],
        terminal_events=events(6, "timeout", "2026-03-10 17:58", "K2"),
    )
    row = one(ds)
    assert row["cause"] == "NETWORK_COMMUNICATION" and row["confidence"] >= 0.9
    assert "6 link errors on segment S within ±10 min (6 on other terminals)" in row["evidence"]


def test_68_without_terminal_events_is_system_fault_with_low_confidence():
    row = one(make_dataset(transactions=[{"response_code": "68"}]))
    assert row["cause"] == "SYSTEM_FAULT" and row["confidence"] <= 0.5
    assert "no terminal_events table" in row["evidence"]


@pytest.mark.parametrize("code", ["A0", "30"])
def test_corrupted_response_amid_link_errors_is_network(code):
    ds = make_dataset(
        transactions=[{"response_code": code, "timestamp": "2026-03-10 10:00"}],
        terminal_events=events(4, "retransmit", "2026-03-10 10:01"),
    )
    row = one(ds)
    assert row["cause"] == "NETWORK_COMMUNICATION" and row["confidence"] >= 0.85
    assert "4 retransmissions" in row["evidence"]


def test_repeated_a0_on_a_quiet_line_points_to_the_mac_key():
    txns = [
        {"txn_id": f"A{i}", "response_code": "A0", "timestamp": f"2026-03-1{i} 10:00"}
        for i in range(4)
    ]
    row = one(make_dataset(transactions=txns, terminal_events=[]), "A2")
    assert row["cause"] == "NETWORK_COMMUNICATION" and row["confidence"] <= 0.5
    assert "MAC key may be out of step" in row["evidence"] and "4 times" in row["evidence"]


# --- no response and reversals -------------------------------------------------------


@pytest.mark.parametrize("reason", ["98", "A0"])
def test_failed_reversal_amid_mac_errors_is_network(reason):
    ds = make_dataset(
        transactions=[
            {
                "response_code": "",
                "reversal": "failed",
                "reversal_reason": reason,
                "timestamp": "2026-03-10 10:00",
            }
        ],
        terminal_events=events(11, "mac_error", "2026-03-10 09:52"),
    )
    row = one(ds)
    assert row["outcome"] == "reversal_failed"
    assert row["cause"] == "NETWORK_COMMUNICATION" and row["confidence"] >= 0.9
    assert f"reversal {reason}" in row["evidence"]
    assert "11 MAC errors" in row["evidence"]


def test_reversal_98_without_link_evidence_has_lower_confidence():
    ds = make_dataset(
        transactions=[{"response_code": "", "reversal": "sent", "reversal_reason": "98"}],
        terminal_events=[],
    )
    row = one(ds)
    assert row["cause"] == "NETWORK_COMMUNICATION" and row["confidence"] < 0.8


def test_no_response_without_reversal_is_a_network_incident():
    row = one(make_dataset(transactions=[{"response_code": "", "reversal": "none"}]))
    assert row["outcome"] == "reversal_failed" and row["cause"] == "NETWORK_COMMUNICATION"
    assert "no reversal was recorded" in row["evidence"]
    assert "no terminal_events table" in row["evidence"]


def test_reversal_96_with_reboots_is_a_terminal_fault():
    terminals = [
        {"terminal_id": f"K{i}", "merchant_id": f"M{i}", "firmware": "2.0" if i < 3 else "1.0"}
        for i in range(6)
    ]
    ev = [e for i in range(3) for e in events(2, "reboot", "2026-03-10 09:00", f"K{i}")]
    ds = make_dataset(
        terminals=terminals,
        transactions=[
            {
                "txn_id": "R",
                "terminal_id": "K0",
                "response_code": "00",
                "reversal": "sent",
                "reversal_reason": "96",
                "timestamp": "2026-03-10 11:00",
            }
        ],
        terminal_events=ev,
    )
    row = one(ds, "R")
    assert row["cause"] == "SYSTEM_FAULT" and row["confidence"] >= 0.9
    assert "terminal K0 rebooted 2 times that day" in row["evidence"]
    assert "firmware 2.0: 3 of 3 terminals rebooted" in row["evidence"]


def test_reversal_96_alone_is_system_fault_with_less_confidence():
    ds = make_dataset(
        transactions=[{"reversal": "failed", "reversal_reason": "96"}], terminal_events=[]
    )
    row = one(ds)
    assert row["cause"] == "SYSTEM_FAULT" and 0.5 <= row["confidence"] < 0.8


def test_reversal_06_without_evidence_is_unknown():
    ds = make_dataset(
        transactions=[{"response_code": "", "reversal": "sent", "reversal_reason": "06"}],
        terminal_events=[],
    )
    row = one(ds)
    assert row["cause"] == "UNKNOWN" and "reversal 06" in row["evidence"]


def test_reversal_06_amid_link_errors_is_network():
    ds = make_dataset(
        transactions=[{"response_code": "", "reversal": "sent", "reversal_reason": "06"}],
        terminal_events=events(3, "timeout", "2026-03-10 09:58"),
    )
    assert one(ds)["cause"] == "NETWORK_COMMUNICATION"


# --- returned credits ----------------------------------------------------------------


@pytest.mark.parametrize("reason", ["account_frozen", "account_closed"])
def test_frozen_or_closed_account(reason):
    ds = make_dataset(
        transactions=[{}],
        settlements=[{"txn_id": "T0001", "credit_status": "returned", "return_reason": reason}],
    )
    row = one(ds)
    assert row["cause"] == "ACCOUNT_FROZEN_OR_CLOSED" and reason in row["evidence"]


def test_returned_bank_unavailable_on_a_transfer_names_the_bank():
    ds = make_dataset(
        transactions=[{"txn_type": "transfer", "payee_bank": "中国银行"}],
        settlements=[
            {"txn_id": "T0001", "credit_status": "returned", "return_reason": "bank_unavailable"}
        ],
    )
    row = one(ds)
    assert row["cause"] == "COUNTERPARTY_BANK" and "中国银行" in row["next_step"]


def returns_dataset(n_returned, n_credited, transfer_returned=False):
    """One merchant: ``n_returned`` purchases returned invalid_account, ``n_credited`` credited."""
    txns = [
        {"txn_id": f"R{i}", "amount": 128.5, "timestamp": f"2026-03-{5 + i:02d} 10:00"}
        for i in range(n_returned)
    ]
    txns += [
        {"txn_id": f"C{i}", "timestamp": f"2026-03-{5 + i:02d} 11:00"} for i in range(n_credited)
    ]
    settle = [
        {"txn_id": f"R{i}", "credit_status": "returned", "return_reason": "invalid_account"}
        for i in range(n_returned)
    ]
    settle += [{"txn_id": f"C{i}"} for i in range(n_credited)]
    if transfer_returned:
        txns.append(
            {
                "txn_id": "X",
                "txn_type": "transfer",
                "amount": 500.0,
                "timestamp": "2026-03-06 15:00",
                "payee_bank": "ICBC",
            }
        )
        settle.append(
            {"txn_id": "X", "credit_status": "returned", "return_reason": "invalid_account"}
        )
    return make_dataset(
        merchants=[{"merchant_id": "898310000123"}], transactions=txns, settlements=settle
    )


def test_all_credits_of_a_merchant_returned_is_merchant_config():
    row = one(returns_dataset(14, 0), "R3")
    assert row["cause"] == "MERCHANT_CONFIG" and row["confidence"] >= 0.9
    assert "credit of 128.50 returned invalid_account" in row["evidence"]
    assert "14 of 14 purchase credits of merchant 898310000123 returned" in row["evidence"]
    assert "since 2026-03-05" in row["evidence"]


def test_single_returned_transfer_is_operator_error():
    row = one(returns_dataset(0, 8, transfer_returned=True), "X")
    assert row["cause"] == "OPERATOR_ERROR"
    assert "returned invalid_account" in row["evidence"]


def test_returned_transfer_is_operator_error_even_when_purchase_credits_bounce():
    # purchases credit the merchant's settlement account, a transfer the payee's
    row = one(returns_dataset(5, 0, transfer_returned=True), "X")
    assert row["cause"] == "OPERATOR_ERROR"


def test_all_transfers_of_a_merchant_returned_is_merchant_config():
    txns = [
        {"txn_id": f"X{i}", "txn_type": "transfer", "timestamp": f"2026-03-0{2 + i} 10:00"}
        for i in range(4)
    ]
    settle = [
        {"txn_id": t["txn_id"], "credit_status": "returned", "return_reason": "name_mismatch"}
        for t in txns
    ]
    row = one(make_dataset(transactions=txns, settlements=settle), "X3")
    assert row["cause"] == "MERCHANT_CONFIG"
    assert "4 of 4 transfer credits of merchant M0001 returned" in row["evidence"]


def test_single_returned_purchase_is_merchant_config_with_less_confidence():
    row = one(returns_dataset(1, 8), "R0")
    assert row["cause"] == "MERCHANT_CONFIG" and row["confidence"] <= 0.7


# --- late, overdue, in cycle -------------------------------------------------------------


def test_credited_late_is_system_fault():
    ds = make_dataset(
        transactions=[{}], settlements=[{"txn_id": "T0001", "credited_at": "2026-03-17 09:00"}]
    )
    row = one(ds)
    assert row["outcome"] == "credited_late" and row["cause"] == "SYSTEM_FAULT"
    assert "2026-03-17" in row["evidence"] and "2026-03-13" in row["evidence"]


def test_credit_overdue_is_system_fault_and_asks_the_acquirer():
    ds = make_dataset(
        transactions=[{}], settlements=[{"txn_id": "T0001", "credit_status": "pending"}]
    )
    row = one(ds)
    assert row["outcome"] == "credit_overdue" and row["cause"] == "SYSTEM_FAULT"
    assert row["next_step"].startswith("Contact the acquirer")


@pytest.mark.parametrize(
    ("when", "as_of", "wait_until"),
    [
        # Fri before the Spring Festival: 调休 Sat 02-14 is the due date; 02-15..02-23 off
        ("2026-02-13 15:00", "2026-02-20 12:00", "2026-02-25"),
        # Fri 02-27: 调休 Sat 02-28 is due; then Mon 03-02, Tue 03-03
        ("2026-02-27 20:00", "2026-03-01 12:00", "2026-03-03"),
    ],
)
def test_in_cycle_waits_until_the_right_business_day(when, as_of, wait_until):
    ds = make_dataset(
        transactions=[{"timestamp": when}],
        settlements=[{"txn_id": "T0001", "credit_status": "pending"}],
    )
    row = one(ds, as_of=as_of)
    assert row["cause"] == "PROCESSING_DELAY"
    assert str(row["wait_until"].date()) == wait_until
    assert wait_until in row["next_step"] and wait_until in row["evidence"]


# --- not cleared past the cycle --------------------------------------------------------


def uploads_dataset(line_errors: bool):
    """K1 uploads daily and its merchant clears; its 03-10 purchase never cleared."""
    days = [f"2026-03-{d:02d}" for d in range(2, 10)]
    txns = [{"txn_id": f"OK{d[-2:]}", "timestamp": f"{d} 10:00"} for d in days]
    txns.append({"txn_id": "LOST", "timestamp": "2026-03-10 10:00"})
    ev = [e for d in days for e in events(1, "batch_upload_ok", f"{d} 23:00")]
    ev += events(3, "batch_upload_failed", "2026-03-10 23:00", step_s=600)
    if line_errors:
        ev += events(6, "timeout", "2026-03-10 22:50", step_s=120)
    return make_dataset(
        terminals=[{"terminal_id": "TERM0001", "merchant_id": "M0001"}],
        transactions=txns,
        settlements=[{"txn_id": t["txn_id"]} for t in txns[:-1]],
        terminal_events=ev,
    )


def test_failed_uploads_amid_link_errors_is_network():
    row = one(uploads_dataset(line_errors=True), "LOST")
    assert row["outcome"] == "not_cleared" and row["cause"] == "NETWORK_COMMUNICATION"
    assert "batch upload failed 3 times" in row["evidence"] and "6 link errors" in row["evidence"]
    assert row["confidence"] >= 0.85


def test_failed_upload_on_a_healthy_line_is_weak_network():
    row = one(uploads_dataset(line_errors=False), "LOST")
    assert row["cause"] == "NETWORK_COMMUNICATION" and row["confidence"] <= 0.6
    assert "no link errors on the terminal" in row["evidence"]


def test_silent_terminal_amid_its_own_link_errors_is_network():
    days = [f"2026-03-{d:02d}" for d in range(2, 10)]
    txns = [{"txn_id": f"OK{d[-2:]}", "timestamp": f"{d} 10:00"} for d in days]
    txns.append({"txn_id": "LOST", "timestamp": "2026-03-10 10:00"})
    ev = [e for d in days for e in events(1, "batch_upload_ok", f"{d} 23:00")]
    ev += events(5, "connection_reset", "2026-03-10 22:30", step_s=300)  # and no batch event
    ds = make_dataset(
        transactions=txns,
        settlements=[{"txn_id": t["txn_id"]} for t in txns[:-1]],
        terminal_events=ev,
    )
    row = one(ds, "LOST")
    assert row["cause"] == "NETWORK_COMMUNICATION" and row["rule"] == "silent_terminal_link"
    assert "no batch upload recorded" in row["evidence"] and "5 link errors" in row["evidence"]


def test_late_credit_after_failed_uploads_amid_link_errors_is_network():
    ds = make_dataset(
        transactions=[{"timestamp": "2026-03-10 10:00"}],
        settlements=[
            {"txn_id": "T0001", "cleared_date": "2026-03-16", "credited_at": "2026-03-17 09:00"}
        ],
        terminal_events=events(2, "batch_upload_failed", "2026-03-10 23:00")
        + events(4, "timeout", "2026-03-10 22:00"),
    )
    row = one(ds)
    assert row["outcome"] == "credited_late" and row["cause"] == "NETWORK_COMMUNICATION"
    assert "cleared late on 2026-03-16" in row["evidence"]


def never_clears_dataset():
    """Merchant M2's terminal never uploads on a healthy line; M1 next door is fine."""
    days = [f"2026-03-{d:02d}" for d in range(2, 7)]
    terminals = [
        {"terminal_id": "K1", "merchant_id": "M1"},
        {"terminal_id": "K2", "merchant_id": "M2"},
    ]
    txns = [{"txn_id": f"A{d[-1]}", "terminal_id": "K1", "timestamp": f"{d} 10:00"} for d in days]
    txns += [{"txn_id": f"B{d[-1]}", "terminal_id": "K2", "timestamp": f"{d} 11:00"} for d in days]
    ev = [e for d in days for e in events(1, "batch_upload_ok", f"{d} 23:00", "K1")]
    return make_dataset(
        terminals=terminals,
        transactions=txns,
        settlements=[{"txn_id": t["txn_id"]} for t in txns if t["terminal_id"] == "K1"],
        terminal_events=ev,
    )


def test_merchant_that_never_clears_on_a_healthy_line_is_merchant_config():
    out = run(never_clears_dataset())
    b = out[out["txn_id"].str.startswith("B")]
    assert len(b) == 5 and (b["cause"] == "MERCHANT_CONFIG").all()
    row = b.set_index("txn_id").loc["B4"]
    assert "cleared none of its purchases on 5 consecutive active days" in row["evidence"]
    assert "(2026-03-02 to 2026-03-06)" in row["evidence"]
    assert "no successful batch upload" in row["evidence"]
    assert row["confidence"] >= 0.9
    assert not out["txn_id"].str.startswith("A").any()  # credited on time: no incident


def test_not_cleared_without_terminal_events_is_degraded():
    ds = never_clears_dataset()
    ds = type(ds)(**{**ds.__dict__, "terminal_events": None})
    row = one(ds, "B4")
    assert row["cause"] == "UNKNOWN" and row["confidence"] <= 0.3
    assert (
        "no terminal_events table: cannot tell a failed upload from a set-up problem"
        in row["evidence"]
    )
    assert "terminal_events" in row["next_step"]


def test_events_without_batch_logs_and_a_dark_terminal_is_merchant_config():
    ds = never_clears_dataset()
    ds = type(ds)(**{**ds.__dict__, "terminal_events": ds.terminal_events.iloc[:0]})
    row = one(ds, "B4")
    assert row["cause"] == "MERCHANT_CONFIG" and row["rule"] == "unlogged_uploads_dark"
    assert "records no batch uploads" in row["evidence"]


def test_without_settlements_past_cycle_is_unknown():
    row = one(make_dataset(transactions=[{}]))
    assert row["outcome"] == "not_cleared" and row["cause"] == "UNKNOWN"
    assert "no settlements table" in row["evidence"] and row["confidence"] <= 0.3


def test_without_settlements_in_cycle_has_lower_confidence():
    row = one(make_dataset(transactions=[{"timestamp": "2026-03-19 10:00"}]))
    assert row["cause"] == "PROCESSING_DELAY" and row["confidence"] <= 0.5
    assert "no settlements table" in row["evidence"]


# --- which rows appear -------------------------------------------------------------------


def test_exactly_one_row_per_incident_and_none_for_non_incidents():
    ds = make_dataset(
        transactions=[
            {"txn_id": "ON_TIME"},
            {"txn_id": "VOIDED"},
            {"txn_id": "VOID", "txn_type": "void", "original_txn_id": "VOIDED"},
            {"txn_id": "REFUND", "txn_type": "refund", "original_txn_id": "ON_TIME"},
            {"txn_id": "BAD_REFUND", "txn_type": "refund", "response_code": "12"},
            {"txn_id": "DECLINED", "response_code": "51"},
            {"txn_id": "LATE"},
            {"txn_id": "WAIT", "timestamp": "2026-03-19 10:00"},
            {
                "txn_id": "LOST_LINK",
                "response_code": "",
                "reversal": "failed",
                "reversal_reason": "98",
            },
        ],
        settlements=[
            {"txn_id": "ON_TIME", "credited_at": "2026-03-11 09:00"},
            {"txn_id": "LATE", "credited_at": "2026-03-18 09:00"},
        ],
        terminal_events=[],
    )
    out = run(ds)
    assert sorted(out["txn_id"]) == ["DECLINED", "LATE", "LOST_LINK", "WAIT"]
    rec = reconcile(ds.transactions, ds.settlements, ds.merchants, as_of=AS_OF)
    expected = rec["txn_type"].isin(["purchase", "transfer"]) & rec["outcome"].isin(
        INCIDENT_OUTCOMES
    )
    assert len(out) == int(expected.sum())
    assert out["txn_id"].tolist() == rec.loc[expected, "txn_id"].tolist()  # transaction order


def test_reconciled_frame_can_be_passed_in():
    ds = make_dataset(transactions=[{"response_code": "51"}])
    rec = reconcile(ds.transactions, ds.settlements, ds.merchants, as_of=AS_OF)
    assert classify(ds, rec)["cause"].tolist() == ["INSUFFICIENT_FUNDS"]


def test_every_rule_cause_is_in_the_taxonomy():
    assert all(r.cause in CAUSES for r in RULES if r.cause)
    assert set(DECLINE_CAUSES.values()) <= set(CAUSES)


@pytest.mark.parametrize("drop, batch_rows", [(None, 250_000), (None, 2), ("terminal_events", 250_000),
                                              ("settlements", 3)])
def test_classify_on_an_engine_equals_classify(drop, batch_rows):
    ds = never_clears_dataset()
    if drop:
        ds = type(ds)(**{**ds.__dict__, drop: None})
    with DuckDBEngine() as eng:
        register_dataset(eng, ds, calendar_for(ds.transactions["timestamp"]))
        reconcile_on(eng, as_of=AS_OF, carry=("_row",))
        out = classify_on(eng, as_of=AS_OF, batch_rows=batch_rows)
    expected = classify(ds, as_of=AS_OF)
    assert len(out) == len(expected) > 3  # several batches of 2 or 3
    pd.testing.assert_frame_equal(out, expected, check_dtype=False)
    assert out.attrs == expected.attrs


# --- column-wise evidence and next steps equal the row-wise reference ------------------
#
# The reference below is the row-by-row implementation the package had before the
# evidence was built column-wise (analysis.causes._decide): display columns for every
# incident, a Mapping view per row, str.format_map of the templates and one function
# per phrase. It is kept here, and only here, to prove the column-wise text is
# byte-identical.


def _ref_display_columns(
    f: pd.DataFrame, as_of: pd.Timestamp, window_minutes: float, th: Thresholds
) -> pd.DataFrame:
    fmt = lambda s: s.dt.strftime("%Y-%m-%d").fillna("")  # noqa: E731
    credited_day = to_business_date(f["credited_at"])
    return f.assign(
        business_day=fmt(f["business_date"]),
        deadline_day=fmt(f["deadline"]),
        wait_until_day=fmt(f["wait_until"]),
        cleared_day=fmt(f["cleared_date"]),
        credited_day=fmt(credited_day),
        as_of_day=str(as_of.date()),
        amount_str=f["amount"].map("{:,.2f}".format),
        code_meaning=f["response_code"].map(RESPONSE_CODES).fillna("unlisted code"),
        declined_by=f["response_code"].map(DECLINE_CAUSES).map(_DECLINED_BY).fillna("the issuer"),
        bank=f["payee_bank"]
        .astype(object)
        .where(
            f["payee_bank"].notna() & f["txn_type"].eq("transfer"), "the merchant's settlement bank"
        ),
        segment=f["network_segment"]
        .astype(object)
        .where(f["network_segment"].notna(), "of the terminal"),
        clearing_state=np.select(
            [f["cleared_date"].notna(), f["clearing_known"]],
            [
                "cleared " + fmt(f["cleared_date"]) + ", credit pending",
                "approved " + fmt(f["business_date"]) + ", not yet cleared",
            ],
            "approved " + fmt(f["business_date"]),
        ),
        window_minutes=window_minutes,
        upload_days=th.upload_days,
    )


class _RefRows:
    def __init__(self, frame: pd.DataFrame) -> None:
        self._frame = frame
        self._lists: dict[str, list] = {}

    def column(self, name: str) -> list:
        if name not in self._lists:
            self._lists[name] = self._frame[name].tolist()
        return self._lists[name]

    def __iter__(self):
        return (_RefRow(self, i) for i in range(len(self._frame)))


class _RefRow(Mapping):
    __slots__ = ("_rows", "_i", "extra")

    def __init__(self, rows: _RefRows, i: int) -> None:
        self._rows, self._i, self.extra = rows, i, {}

    def __getitem__(self, key: str):
        if key in self.extra:
            return self.extra[key]
        try:
            return self._rows.column(key)[self._i]
        except KeyError:
            raise KeyError(key) from None

    def __iter__(self):
        return iter(self._rows._frame.columns)

    def __len__(self) -> int:
        return len(self._rows._frame.columns)


def _ref_day(value) -> str:
    return "" if pd.isna(value) else str(pd.Timestamp(value).date())


def _ref_plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


_REF_LINK_LABELS = {
    "timeout": "timeout",
    "mac_error": "MAC error",
    "retransmit": "retransmission",
    "connection_reset": "connection reset",
}


def _ref_reversal(r: Mapping) -> str:
    reason = r["eff_reason"]
    meaning = REVERSAL_REASON_MEANINGS.get(reason, "unknown reason")
    if pd.isna(r["response_code"]) and r["reversal"] == "none":
        return "no response reached the terminal and no reversal was recorded (单边账 risk)"
    head = "no response reached the terminal; " if pd.isna(r["response_code"]) else ""
    if r["outcome"] == "reversal_failed":
        return (
            f"{head}reversal {reason} ({meaning}) never acknowledged: "
            "the card may be debited (单边账)"
        )
    return f"{head}reversal {reason} ({meaning}) sent and acknowledged"


def _ref_terminal_link(r: Mapping) -> str:
    parts = [
        _ref_plural(int(r[f"term_{k}_near"]), _REF_LINK_LABELS[k])
        for k in LINK_ERROR_EVENTS
        if r[f"term_{k}_near"]
    ]
    if not parts:
        return ""
    return f"{', '.join(parts)} on terminal {r['terminal_id']} within ±{r['window_minutes']:g} min"


def _ref_segment(r: Mapping) -> str:
    if not r["has_events"]:
        return ""
    seg = r["network_segment"]
    if r["seg_day_surge"]:
        return (
            f"segment {seg} at {r['seg_day_ratio']:.0f}× its usual link-error rate that day "
            f"({r['seg_day_link']} vs usual {r['seg_usual']:g})"
        )
    others = int(r["seg_link_near"] - r["term_link_near"])
    if r["seg_near_surge"] and others > 0:
        return (
            f"{_ref_plural(int(r['seg_link_near']), 'link error')} on segment {seg} within "
            f"±{r['window_minutes']:g} min ({others} on other terminals)"
        )
    return (
        f"segment {seg}: {_ref_plural(int(r['seg_day_link']), 'link error')} that day "
        f"(usual {r['seg_usual']:g}, no surge)"
    )


def _ref_no_events(r: Mapping) -> str:
    return "" if r["has_events"] else "no terminal_events table: link errors could not be checked"


def _ref_burst(r: Mapping) -> str:
    n = int(r["burst_segments"])
    if n < 2:
        return ""
    tail = " (issuer or switch outage)" if r["burst"] else ""
    return (
        f"91/96 purchase declines on {n} network segments within "
        f"±{r['window_minutes']:g} min{tail}"
    )


def _ref_reboot(r: Mapping) -> str:
    parts = []
    if r["term_day_reboot"]:
        parts.append(
            f"terminal {r['terminal_id']} rebooted "
            f"{_ref_plural(int(r['term_day_reboot']), 'time')} that day"
        )
    if r["fw_outlier"]:
        parts.append(
            f"firmware {r['firmware']}: {int(r['fw_rebooted'])} of "
            f"{int(r['fw_terminals'])} terminals "
            f"rebooted ({r['fw_share']:.0%}) vs {r['fw_others_share']:.0%} on other firmware"
        )
    return "; ".join(parts)


def _ref_mac_key(r: Mapping) -> str:
    if not r["mac_key"] or r["near_link"]:
        return ""
    return (
        f"terminal {r['terminal_id']} got A0/30 {r['term_a0']} times with no link errors near: "
        "its MAC key may be out of step (sign the terminal in again)"
    )


def _ref_pattern(r: Mapping) -> str:
    if not r["m_returns"]:
        return ""
    head = (
        f"{r['txn_type']} credits of merchant {r['merchant_id']} "
        "returned for a wrong account or name"
    )
    if not r["m_pattern"]:
        return f"{r['m_returns']} of {r['m_all_credits']} {head}: no merchant-wide pattern"
    if r["m_last_return"] >= r["m_last_cleared"]:
        span = f"since {_ref_day(r['m_first_return'])}"
    else:
        span = f"from {_ref_day(r['m_first_return'])} to {_ref_day(r['m_last_return'])}"
    return f"{r['m_returns']} of {r['m_credits']} {head} {span}"


def _ref_clearing(r: Mapping) -> str:
    if not r["clearing_known"] or not r["dark_days"]:
        return ""
    if r["dark_days"] == 1:
        return f"terminal {r['terminal_id']} cleared none of its purchases that day"
    return (
        f"terminal {r['terminal_id']} cleared none of its purchases on "
        f"{r['dark_days']} consecutive "
        f"active days ({_ref_day(r['dark_start'])} to {_ref_day(r['dark_end'])})"
    )


def _ref_uploads(r: Mapping) -> str:
    if not r["has_events"]:
        return ""
    days = f"{r['business_day']} (+{r['upload_days'] - 1} d)"
    parts = []
    if r["term_upload_failed"]:
        parts.append(
            f"batch upload failed {_ref_plural(int(r['term_upload_failed']), 'time')} "
            f"on terminal {r['terminal_id']} around {days}"
        )
    elif r["term_upload_ok"]:
        parts.append(f"batch uploaded OK on terminal {r['terminal_id']} around {days}")
    elif r["uploads_recorded"]:
        parts.append(f"no batch upload recorded for terminal {r['terminal_id']} around {days}")
    if r["never_uploaded"]:
        parts.append(f"terminal {r['terminal_id']} has no successful batch upload in the data")
    if r["term_link_upload_days"]:
        parts.append(
            f"{_ref_plural(int(r['term_link_upload_days']), 'link error')} "
            "on the terminal those days"
        )
    elif r["seg_surge_upload_days"]:
        parts.append(
            f"segment {r['network_segment']} far above its usual link-error rate those days"
        )
    else:
        parts.append("no link errors on the terminal those days")
    return "; ".join(parts)


def _ref_no_settlements(r: Mapping) -> str:
    return "" if r["clearing_known"] else "no settlements table: clearing and crediting unknown"


_REF_PHRASES = {
    "reversal": _ref_reversal,
    "terminal_link": _ref_terminal_link,
    "segment": _ref_segment,
    "no_events": _ref_no_events,
    "burst": _ref_burst,
    "reboot": _ref_reboot,
    "mac_key": _ref_mac_key,
    "pattern": _ref_pattern,
    "clearing": _ref_clearing,
    "uploads": _ref_uploads,
    "no_settlements": _ref_no_settlements,
}


def _ref_next_step(row: _RefRow, cause: str, override: str | None) -> str:
    steps = CAUSES[cause].next_steps
    row.extra.update(wait_until=row["wait_until_day"], terminal=row["terminal_id"])
    text = (override or steps[0]).format_map(row)
    if cause == "FRAUD_SUSPECTED" and row["amount"] >= FRAUD_POLICE_THRESHOLD and len(steps) > 1:
        text = f"{text} {steps[1]}"
    return text


def _ref_evidence(row: _RefRow, rule) -> str:
    parts = [rule.evidence.format_map(row)] + [_REF_PHRASES[p](row) for p in rule.phrases]
    return "; ".join(p for p in parts if p)


def reference_texts(f: pd.DataFrame, *, as_of, window_minutes, thresholds, rules=RULES):
    """Rule, cause (code, zh, en), evidence and next step of each incident, row by row."""
    rule_idx, _ = _assign_rules(f, rules)
    f = _ref_display_columns(f, as_of, window_minutes, thresholds)
    names, causes, evidence, steps = [], [], [], []
    for row, i in zip(_RefRows(f), rule_idx, strict=True):
        rule = rules[i]
        cause = rule.cause or DECLINE_CAUSES[row["response_code"]]
        row.extra["reversal_phrase"] = (
            _ref_reversal(row) if "{reversal_phrase}" in rule.evidence else ""
        )
        names.append(rule.name)
        causes.append(cause)
        evidence.append(_ref_evidence(row, rule))
        steps.append(_ref_next_step(row, cause, rule.next_step))
    return pd.DataFrame(
        {
            "rule": names,
            "cause": causes,
            "cause_zh": [CAUSES[c].zh for c in causes],
            "cause_en": [CAUSES[c].en for c in causes],
            "evidence": evidence,
            "next_step": steps,
        }
    )


def _features(ds, as_of=AS_OF) -> tuple[pd.DataFrame, pd.Timestamp]:
    as_of = to_local_time(as_of)
    rec = reconcile(ds.transactions, ds.settlements, ds.merchants, as_of=as_of)
    return incident_features(ds, rec), as_of


def _feature_sources():
    """(name, features, as_of, has_events, has_settlements) from the case study, simulated
    cities (with and without the optional tables) and this module's hand-made datasets."""
    case = load_dataset(ROOT / "data" / "case_study")
    yield "case_study", *_features(case, default_as_of(case)), True, True
    for seed, closed in ((1, False), (2, True)):
        city = simulate_city(
            CityConfig(
                seed=seed, days=21, n_merchants=40, n_neighbourhoods=3, case_segment_size=5,
                transfer_share=0.12,
                faults=(
                    UnstableLink(None, "2026-03-06 08:00"),
                    FaultyFirmware("A920-2.1.09", "2026-03-05", reboots_per_day=0.8,
                                   reversal_rate=0.02),
                    MisconfiguredMerchant(None, "wrong_account", "2026-03-09"),
                    MisconfiguredMerchant(None, "no_upload", "2026-03-09"),
                    FrozenAccount(None, "2026-03-10", closed=closed),
                    BankOutage("中国农业银行", "2026-03-12 08:00", "2026-03-13 20:00"),
                    IssuerOutage("2026-03-17 14:00", "2026-03-17 16:00"),
                ),
            )
        )
        for drop in (None, "terminal_events", "settlements"):
            ds = Dataset(**{**city.tables, **({drop: None} if drop else {})})
            f, as_of = _features(ds, default_as_of(ds))
            has_events, has_settlements = drop != "terminal_events", drop != "settlements"
            yield f"city {seed} without {drop}", f, as_of, has_events, has_settlements
    never = never_clears_dataset()
    hand_made = {
        "uploads amid link errors": uploads_dataset(line_errors=True),
        "uploads on a healthy line": uploads_dataset(line_errors=False),
        "never clears": never,
        "never clears, no batch logs": Dataset(
            **{**never.__dict__, "terminal_events": never.terminal_events.iloc[:0]}
        ),
        "merchant returns": returns_dataset(14, 0, transfer_returned=True),
        "single return": returns_dataset(1, 8),
        "late upload": make_dataset(
            transactions=[{"timestamp": "2026-03-10 10:00"}],
            settlements=[{"txn_id": "T0001", "cleared_date": "2026-03-16",
                          "credited_at": "2026-03-17 09:00"}],
            terminal_events=events(2, "batch_upload_failed", "2026-03-10 23:00")
            + events(4, "timeout", "2026-03-10 22:00"),
        ),
        "burst": burst_dataset([{"txn_id": "X", "terminal_id": "K3", "txn_type": "transfer",
                                 "response_code": "91", "timestamp": "2026-03-10 10:03"}]),
        "reversals": make_dataset(
            transactions=[
                {"txn_id": "N", "response_code": "", "reversal": "none"},
                {"txn_id": "S", "response_code": "", "reversal": "sent", "reversal_reason": "06"},
                {"txn_id": "F", "reversal": "failed", "reversal_reason": "96"},
                {"txn_id": "L", "response_code": "68", "timestamp": "2026-03-10 10:30"},
                {"txn_id": "P", "response_code": "59", "amount": 3000.0},
                {"txn_id": "Q", "response_code": "43", "amount": 2999.99},
            ],
            terminal_events=events(3, "timeout", "2026-03-10 09:58")
            + events(1, "mac_error", "2026-03-10 10:29")
            + events(1, "reboot", "2026-03-10 08:00"),
        ),
    }
    for name, ds in hand_made.items():
        yield name, *_features(ds), ds.terminal_events is not None, ds.settlements is not None


#: Values written into a few random rows of the shuffled frames: missing and boundary values.
_EDGE_VALUES = {
    "network_segment": [float("nan"), "S-1"],
    "terminal_id": ["K-edge"],
    "response_code": [float("nan"), "59", "05"],
    "eff_reason": [None, float("nan"), "ZZ"],
    "reversal": ["none"],
    "outcome": ["mystery"],
    "return_reason": ["weird", float("nan")],
    "payee_bank": [float("nan"), "招商银行"],
    "amount": [3000.0, 2999.99, float("nan")],
    "seg_usual": [float("nan"), 0.5, 1e7],
    "seg_day_ratio": [float("inf"), float("nan"), 0.4],
    "fw_share": [float("nan"), 1.0],
    **dict.fromkeys(
        ("dark_days", "m_returns", "burst_segments", "term_day_reboot", "term_upload_failed",
         "term_upload_ok", "term_link_upload_days", "seg_link_near", "seg_day_link",
         "term_a0", *(f"term_{k}_near" for k in LINK_ERROR_EVENTS)),
        [0, 1, 2],
    ),
    **dict.fromkeys(
        ("m_first_return", "m_last_return", "m_last_cleared", "dark_start", "dark_end",
         "cleared_date", "wait_until"),
        [pd.NaT],
    ),
}


def _shuffled(base: pd.DataFrame, seed: int, n: int = 15_000) -> pd.DataFrame:
    """``n`` rows whose every column is drawn independently from ``base`` (every combination
    of values the rules and phrases branch on), with edge values in a few rows."""
    rng = np.random.default_rng(seed)
    f = pd.DataFrame(
        {c: base[c].iloc[rng.integers(0, len(base), n)].reset_index(drop=True) for c in base}
    )
    for col, values in _EDGE_VALUES.items():
        rows = np.flatnonzero(rng.random(n) < 0.03)
        picks = rng.integers(0, len(values), len(rows))
        for k, value in enumerate(values):
            f.loc[rows[picks == k], col] = value
    return f


def _edge_rows(base: pd.DataFrame) -> pd.DataFrame:
    """Rows of ``base`` changed to reach the rarest branches."""
    rev = base[
        base["outcome"].isin(["reversed", "reversal_failed"]) & base["response_code"].notna()
    ]
    pat = base[base["outcome"].eq("returned") & base["m_pattern"]
               & base["return_reason"].isin(WRONG_ACCOUNT_RETURNS)].head(2)
    return pd.concat(
        [
            rev.head(4).assign(eff_reason=[None, float("nan"), "ZZ", "98"]),
            pat.assign(m_last_cleared=pat["m_last_return"] + pd.Timedelta(days=1)),
            pat.assign(m_first_return=pd.NaT),
            pat.assign(m_last_return=pd.NaT),
        ],
        ignore_index=True,
    )


@pytest.fixture(scope="module")
def text_cases():
    """(name, new output, reference) for every source, shuffled frames and other settings."""
    sources = list(_feature_sources())
    cases = [(name, f, dict(as_of=as_of, has_events=ev, has_settlements=st))
             for name, f, as_of, ev, st in sources]
    base = pd.concat([f for _, f, *_ in sources], ignore_index=True)
    as_of = to_local_time(AS_OF)
    cases.append(("edge rows", _edge_rows(base), dict(as_of=as_of, has_events=True,
                                                      has_settlements=True)))
    for seed, window, th in ((1, 10, Thresholds()), (2, 2.5, Thresholds(upload_days=1)),
                             (3, 10.0, Thresholds(upload_days=3))):
        cases.append((f"shuffled {seed}", _shuffled(base, seed),
                      dict(as_of=as_of, has_events=True, has_settlements=True,
                           window_minutes=window, thresholds=th)))
    out = []
    for name, f, kw in cases:
        kw = {"window_minutes": 10, "thresholds": Thresholds(), **kw}
        ref = reference_texts(f, as_of=kw["as_of"], window_minutes=kw["window_minutes"],
                              thresholds=kw["thresholds"])
        columns = list(f.columns)
        out.append((name, _decide(f, rules=RULES, **kw), ref))
        assert list(f.columns) == columns  # the features are left as they were
    return out


def test_column_wise_evidence_equals_the_row_wise_reference(text_cases):
    for name, new, ref in text_cases:
        assert len(new) == len(ref), name
        for col in ref.columns:
            assert new[col].dtype == "str", (name, col)
            got, want = new[col].tolist(), ref[col].tolist()
            bad = [i for i, (a, b) in enumerate(zip(got, want, strict=True)) if a != b]
            assert not bad, (
                f"{name}, {col}, row {bad[0]} of {len(bad)} differing: "
                f"{got[bad[0]]!r} != {want[bad[0]]!r}"
            )


#: One marker (text or pattern) per phrase branch and plural / singular, for some evidence line.
_BRANCHES = (
    "no response reached the terminal and no reversal was recorded",
    "no response reached the terminal; reversal",
    "never acknowledged: the card may be debited",
    "sent and acknowledged",
    "(unknown reason)",
    "reversal None (unknown reason)",
    re.compile(r"\b1 timeout\b"),
    re.compile(r"\d timeouts\b"),
    re.compile(r"\b1 MAC error\b"),
    re.compile(r"\d retransmissions\b"),
    re.compile(r"\d connection resets?\b"),
    re.compile(r"\d (?:timeouts?|MAC errors?|retransmissions?), \d"),
    re.compile(r"segment \S+ at (?:\d+|inf|nan)× its usual link-error rate that day \(\d+ vs "),
    re.compile(r"link errors on segment \S+ within ±[\d.]+ min \(\d+ on other terminals\)"),
    re.compile(r": 1 link error that day \(usual [^,]+, no surge\)"),
    re.compile(r": \d+ link errors that day \(usual [^,]+, no surge\)"),
    "segment nan",
    "no terminal_events table: link errors could not be checked",
    re.compile(r"on \d+ network segments within ±[\d.]+ min \(issuer or switch outage\)"),
    re.compile(r"within ±2\.5 min"),
    re.compile(r"on \d+ network segments within ±10 min(?:$|;)"),
    re.compile(r"rebooted 1 time that day"),
    re.compile(r"rebooted \d+ times that day"),
    re.compile(r"that day; firmware .*: \d+ of \d+ terminals rebooted \((?:\d+|nan)%\) vs \d+%"),
    "MAC key may be out of step",
    "no merchant-wide pattern",
    re.compile(r"returned for a wrong account or name since \d{4}-"),
    re.compile(r"returned for a wrong account or name since (?:$|;)"),
    re.compile(r"returned for a wrong account or name from \d{4}-\d\d-\d\d to \d{4}-"),
    "cleared none of its purchases that day",
    re.compile(r"cleared none of its purchases on \d+ consecutive active days \(\d{4}-\d\d-\d\d "),
    re.compile(r"batch upload failed 1 time on terminal \S+ around \d{4}-\d\d-\d\d \(\+0 d\)"),
    re.compile(r"batch upload failed \d+ times on terminal \S+ around \d{4}-\d\d-\d\d \(\+2 d\)"),
    "batch uploaded OK on terminal",
    "no batch upload recorded for terminal",
    "has no successful batch upload in the data",
    re.compile(r"(?:^|; )1 link error on the terminal those days"),
    re.compile(r"\d+ link errors on the terminal those days"),
    "far above its usual link-error rate those days",
    "no link errors on the terminal those days",
    "no settlements table: clearing and crediting unknown",
    re.compile(r"^approved \d{4}-\d\d-\d\d; \S+ cycle"),  # in cycle, clearing unknown
)


#: Markers of the display values' branches (missing segment, bank, decline source, NA days).
_DISPLAY_BRANCHES = (
    "check line of the terminal",
    "to the merchant's settlement bank",
    "credit of 3,000.00",
    "by the acquirer",
    "<NA> business days after",
    "cleared 20",
    "not yet cleared",
)


def test_reference_cases_cover_every_rule_and_phrase_branch(text_cases):
    refs = pd.concat([ref for *_, ref in text_cases], ignore_index=True)
    assert set(refs["rule"]) == {r.name for r in RULES}
    evidence = refs["evidence"]
    missing = [
        b for b in _BRANCHES if not evidence.str.contains(b, regex=isinstance(b, re.Pattern)).any()
    ]
    assert not missing
    texts = evidence + " | " + refs["next_step"]
    assert not [b for b in _DISPLAY_BRANCHES if not texts.str.contains(b, regex=False).any()]
    police = CAUSES["FRAUD_SUSPECTED"].next_steps[1]
    fraud = refs["cause"].eq("FRAUD_SUSPECTED")
    assert refs.loc[fraud, "next_step"].str.endswith(police).any()
    assert not refs.loc[fraud, "next_step"].str.endswith(police).all()
