"""analysis.simulate: determinism, contract conformance, each mechanism's evidence, truth, case study."""

from __future__ import annotations

import dataclasses
import doctest
import hashlib
import importlib
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.contract import CAUSES, INCIDENT_OUTCOMES, TABLES
from analysis.privacy import luhn_valid
from analysis.simulate import (
    BankOutage,
    CityConfig,
    FaultyFirmware,
    Fix,
    FrozenAccount,
    IssuerOutage,
    MisconfiguredMerchant,
    UnstableLink,
    case_study_config,
    simulate_case_study,
    simulate_city,
    write_city,
)
from analysis.workdays import china_calendar

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"
PAN_COLUMNS = ("card_number", "payee_account")
LONG_DIGITS = re.compile(r"[0-9]{13,}")
FIRMWARE = "A920-2.1.09"
BANK = "中国农业银行"

# A small city with every fault and every fix (28 days from Monday 2026-03-02).
SINK = CityConfig(
    seed=7,
    days=28,
    n_merchants=70,
    n_neighbourhoods=4,
    txns_per_merchant_day=25,
    transfer_share=0.12,
    faults=(
        UnstableLink(None, "2026-03-06 08:00"),
        FaultyFirmware(FIRMWARE, "2026-03-05", reboots_per_day=0.8, reversal_rate=0.02),
        MisconfiguredMerchant(None, "wrong_account", "2026-03-09"),
        MisconfiguredMerchant(None, "no_upload", "2026-03-09"),
        FrozenAccount(None, "2026-03-10", closed=True),
        BankOutage(BANK, "2026-03-12 08:00", "2026-03-13 20:00"),
        IssuerOutage("2026-03-17 14:00", "2026-03-17 16:00"),
    ),
    fixes=(
        Fix("network_upgrade", "network_segment", None, "2026-03-16 02:00"),
        Fix("message_validation", "network_segment", None, "2026-03-20 02:00"),
        Fix("firmware_update", "firmware", None, "2026-03-19 03:00"),
        Fix("config_correction", "merchant", None, "2026-03-23 10:00"),
    ),
)
TINY = CityConfig(seed=3, days=6, n_merchants=20, n_neighbourhoods=2, case_segment_size=5,
                  faults=(UnstableLink(None, "2026-03-03"),),
                  fixes=(Fix("network_upgrade", "network_segment", None, "2026-03-05"),))


@pytest.fixture(scope="module")
def sink():
    return simulate_city(SINK)


@pytest.fixture(scope="module")
def joined(sink):
    """Transactions with their terminal's segment and firmware, plus local time helpers."""
    t = sink.tables
    tx = t["transactions"].merge(t["terminals"][["terminal_id", "network_segment", "firmware"]],
                                 on="terminal_id")
    tx["local"] = tx["timestamp"].dt.tz_localize(None)
    return tx


@pytest.fixture(scope="module")
def events(sink):
    t = sink.tables
    columns = ["terminal_id", "merchant_id", "network_segment", "firmware"]
    ev = t["terminal_events"].merge(t["terminals"][columns], on="terminal_id")
    ev["local"] = ev["timestamp"].dt.tz_localize(None)
    return ev


def fault(city, kind, n=0):
    return [f for f in city.truth.faults if f["kind"] == kind][n]


def at(text: str) -> pd.Timestamp:
    return pd.Timestamp(text)


def file_hashes(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


# -- API ------------------------------------------------------------------------------


def test_specs_are_frozen_with_readable_repr():
    link = UnstableLink(None, "2026-03-16")
    with pytest.raises(dataclasses.FrozenInstanceError):
        link.error_rate = 0.5
    assert repr(link).startswith("UnstableLink(segment=None, start='2026-03-16'")
    assert "CityConfig(seed=" in repr(SINK)
    with pytest.raises(ValueError, match="start"):
        UnstableLink()
    with pytest.raises(ValueError, match="mode"):
        MisconfiguredMerchant(None, "typo", "2026-03-09")
    with pytest.raises(ValueError, match="kind"):
        Fix("reboot_everything", "all", "*", "2026-03-10")


def test_simulated_city_repr_and_manifest(sink):
    text = repr(sink)
    assert text.startswith("SimulatedCity(seed=7") and "transactions=" in text
    m = sink.truth.manifest
    assert m["seed"] == 7 and m["as_of"] == "2026-03-29T23:59:59+08:00"
    assert m["faulty_segment"] == m["case_segment"]
    assert m["simulator_version"] and m["config"]["faults"][0]["kind"] == "unstable_link"
    json.dumps(m)  # JSON-ready


def test_unknown_targets_are_refused():
    with pytest.raises(ValueError, match="network segment"):
        simulate_city(dataclasses.replace(TINY, faults=(UnstableLink("CT-XX-0000", "2026-03-03"),), fixes=()))
    with pytest.raises(ValueError, match="bank"):
        mars = BankOutage("火星银行", "2026-03-03", "2026-03-04")
        simulate_city(dataclasses.replace(TINY, faults=(mars,), fixes=()))


def test_docstring_examples_run():
    import analysis.simulate as pkg

    names = ["specs", "catalog", "streams", "columns", "timeline", "city", "cards", "traffic", "scenario",
             "mechanisms", "settlement", "transactions", "events", "complaints", "truth", "engine", "casestudy"]
    for name in names:
        module = importlib.import_module(f"analysis.simulate.{name}")
        assert module.__doc__ and "Examples" in module.__doc__, name
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0, name
    assert doctest.testmod(pkg).failed == 0


# -- determinism ----------------------------------------------------------------------


def test_same_seed_gives_identical_files_and_other_seeds_differ(tmp_path):
    city = simulate_city(TINY)
    write_city(city, tmp_path / "a", tmp_path / "a_truth")
    write_city(simulate_city(TINY), tmp_path / "b", tmp_path / "b_truth")
    assert file_hashes(tmp_path / "a") == file_hashes(tmp_path / "b")
    assert file_hashes(tmp_path / "a_truth") == file_hashes(tmp_path / "b_truth")
    write_city(simulate_city(dataclasses.replace(TINY, seed=4)), tmp_path / "c")
    other = file_hashes(tmp_path / "c")
    assert all(other[name] != digest for name, digest in file_hashes(tmp_path / "a").items()
               if name not in ("interventions.parquet",))


def test_city_does_not_depend_on_faults():
    plain = simulate_city(dataclasses.replace(TINY, faults=(), fixes=()))
    faulty = simulate_city(TINY)
    for name in ("merchants", "terminals"):
        pd.testing.assert_frame_equal(plain.tables[name], faulty.tables[name])
    a, b = plain.tables["transactions"], faulty.tables["transactions"]
    assert len(a) == pytest.approx(len(b), rel=0.01)  # same attempts; voids/refunds follow outcomes


# -- the contract ---------------------------------------------------------------------


def test_tables_follow_the_contract(sink):
    assert list(sink.tables) == list(TABLES)
    for name, spec in TABLES.items():
        df = sink.tables[name]
        assert list(df.columns) == list(spec.column_names), name
        assert len(df), name
        for col in spec.columns:
            s = df[col.name]
            if not col.nullable:
                assert s.notna().all(), (name, col.name)
            if col.allowed:
                unexpected = set(s.dropna()) - set(col.allowed)
                assert not unexpected, (name, col.name, unexpected)
            if col.unique:
                assert s.is_unique, (name, col.name)
            if col.pattern:
                assert s.str.fullmatch(col.pattern).all(), (name, col.name)
            if col.kind in ("id", "text", "code", "pan"):
                assert s.dtype == "str", (name, col.name, s.dtype)
            elif col.kind == "time":
                assert str(s.dt.tz) == "Asia/Shanghai", (name, col.name)
            elif col.kind == "date":
                assert s.dtype.kind == "M" and s.dt.tz is None and (s == s.dt.normalize()).all()
            elif col.kind in ("money", "float"):
                assert s.dtype == "float64", (name, col.name)
                if col.min_value is not None:
                    assert (s > col.min_value).all() if col.min_exclusive else (s >= col.min_value).all()
                if col.max_value is not None:
                    assert (s <= col.max_value).all()
            elif col.kind == "int":
                assert s.dtype == "Int64" and (s.dropna() >= 0).all()
    txns = sink.tables["transactions"]
    assert (txns["amount"] == txns["amount"].round(2)).all()
    none = txns["reversal"].eq("none")
    assert txns.loc[none, "reversal_reason"].isna().all() and txns.loc[~none, "reversal_reason"].notna().all()
    no_answer = txns["response_code"].isna()
    assert txns.loc[no_answer, "latency_ms"].isna().all() and txns.loc[~no_answer, "latency_ms"].notna().all()
    assert txns["stan"].str.fullmatch(r"[0-9]{6}").all() and txns["rrn"].str.fullmatch(r"[0-9]{12}").all()


def test_references_hold(sink):
    t = sink.tables
    merchants = set(t["merchants"]["merchant_id"])
    owner = t["terminals"].set_index("terminal_id")["merchant_id"]
    assert set(owner) <= merchants
    txns = t["transactions"]
    assert (txns["terminal_id"].map(owner) == txns["merchant_id"]).all()
    assert set(t["settlements"]["txn_id"]) <= set(txns["txn_id"])
    assert set(t["terminal_events"]["terminal_id"]) <= set(owner.index)
    assert set(t["complaints"]["merchant_id"]) <= merchants
    # voids and refunds name an earlier approved purchase on the same terminal; voids the same day
    follow = txns[txns["original_txn_id"].notna()]
    assert set(follow["txn_type"]) == {"void", "refund"}
    orig = txns.set_index("txn_id").loc[follow["original_txn_id"]]
    assert (orig["txn_type"].to_numpy() == "purchase").all()
    assert (orig["response_code"].to_numpy() == "00").all()
    assert (orig["terminal_id"].to_numpy() == follow["terminal_id"].to_numpy()).all()
    assert (orig["card_number"].to_numpy() == follow["card_number"].to_numpy()).all()
    assert (orig["timestamp"].to_numpy() < follow["timestamp"].to_numpy()).all()
    voids = follow[follow["txn_type"] == "void"]
    void_day = voids["timestamp"].dt.date.to_numpy()
    assert (void_day == orig.loc[voids["original_txn_id"], "timestamp"].dt.date.to_numpy()).all()
    assert not set(voids["original_txn_id"]) & set(t["settlements"]["txn_id"])
    transfers = txns["txn_type"].eq("transfer")
    assert txns.loc[transfers, ["payee_bank", "payee_account"]].notna().all().all()
    assert txns.loc[~transfers, ["payee_bank", "payee_account"]].isna().all().all()
    scopes = t["interventions"]
    segs = set(t["terminals"]["network_segment"])
    assert set(scopes.loc[scopes["scope_type"] == "network_segment", "scope_value"]) <= segs


def test_card_numbers_luhn_valid_and_masked_when_written(sink, tmp_path):
    txns = sink.tables["transactions"]
    for col in PAN_COLUMNS:
        values = txns[col].dropna()
        assert values.str.fullmatch(r"[0-9]{16,19}").all()
        assert all(luhn_valid(v) for v in values.unique())
    assert txns["card_number"].str[:2].isin(["62", "42", "43", "40", "51", "52", "55"]).all()
    assert txns["card_number"].nunique() < len(txns) / 2  # repeat cardholders
    write_city(sink, tmp_path / "d", mask_pans=True)
    written = pd.read_parquet(tmp_path / "d" / "transactions.parquet")
    for col in PAN_COLUMNS:
        masked = written[col].dropna()
        assert masked.str.fullmatch(r"[0-9]{6}\*{6,9}[0-9]{4}").all()
        assert (masked.str[-4:].to_numpy() == txns[col].dropna().str[-4:].to_numpy()).all()
    masked_city = simulate_city(TINY, full_pans=False)
    assert masked_city.tables["transactions"]["card_number"].str.contains(r"\*").all()


def test_no_long_digit_runs_outside_card_columns(sink, tmp_path):
    for name, df in sink.tables.items():
        for col in df.columns:
            if col in PAN_COLUMNS or df[col].dtype.kind == "M":
                continue
            values = df[col].dropna().unique()
            text = pd.Series([repr(v) if isinstance(v, float) else str(v) for v in values], dtype=object)
            assert not text.str.contains(LONG_DIGITS).any(), (name, col)
    write_city(sink, tmp_path / "d", tmp_path / "truth", mask_pans=True)
    for path in (tmp_path / "truth").glob("*.json"):
        assert not LONG_DIGITS.search(path.read_text(encoding="utf-8")), path.name
    for name in ("incidents", "tickets"):
        df = getattr(sink.truth, name)
        assert not df.astype(str).apply(lambda s: s.str.contains(LONG_DIGITS).any()).any(), name


def test_truth_stays_out_of_the_dataset(sink, tmp_path):
    with pytest.raises(ValueError, match="outside"):
        write_city(sink, tmp_path / "d", tmp_path / "d" / "truth")
    write_city(sink, tmp_path / "d", tmp_path / "truth")
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == sorted(f"{n}.parquet" for n in TABLES)


# -- time and money -------------------------------------------------------------------


def test_nothing_happens_after_the_end(sink):
    end = pd.Timestamp("2026-03-30", tz="Asia/Shanghai")
    start = pd.Timestamp("2026-03-02", tz="Asia/Shanghai")
    t = sink.tables
    for name, col in (("transactions", "timestamp"), ("terminal_events", "timestamp"),
                      ("settlements", "credited_at"), ("complaints", "opened_at")):
        s = t[name][col].dropna()
        assert (s < end).all() and (s >= start).all(), (name, col)
    assert (t["settlements"]["cleared_date"] <= pd.Timestamp("2026-03-29")).all()


def test_clearing_and_crediting_follow_the_cycle(sink):
    cal = china_calendar()
    t = sink.tables
    txn_columns = ["txn_id", "merchant_id", "timestamp", "txn_type", "response_code"]
    s = t["settlements"].merge(t["transactions"][txn_columns], on="txn_id")
    s = s.merge(t["merchants"][["merchant_id", "settlement_cycle"]], on="merchant_id")
    assert set(s["txn_type"]) <= {"purchase", "transfer"} and (s["response_code"] == "00").all()
    day = s["timestamp"].dt.tz_localize(None).dt.normalize()
    due = pd.Series(cal.settlement_date(day.to_numpy(), s["settlement_cycle"].to_numpy()), index=s.index)
    assert (s["cleared_date"].to_numpy().astype("datetime64[D]") == due.to_numpy()).all()
    deadline = cal.credit_deadline(day.to_numpy(), s["settlement_cycle"].to_numpy())
    credited = s["credit_status"].eq("credited").to_numpy()
    credit_day = s["credited_at"].dt.tz_localize(None).dt.normalize().to_numpy().astype("datetime64[D]")
    assert (s["credited_at"].notna().to_numpy() == credited).all()
    assert (credit_day[credited] >= due.to_numpy()[credited]).all()
    assert (s.loc[credited, "credited_at"] > s.loc[credited, "timestamp"]).all()
    late = credited & (credit_day > deadline)
    late_ids = set(sink.truth.incidents.loc[sink.truth.incidents["mechanism"].eq("late_credit"), "txn_id"])
    assert set(s.loc[late, "txn_id"]) <= late_ids and late.sum() > 0
    assert (s["credit_status"].eq("returned") == s["return_reason"].notna()).all()


def test_truth_outcomes_agree_with_reconcile(sink):
    from analysis.reconcile import reconcile

    t = sink.tables
    r = reconcile(t["transactions"], t["settlements"], t["merchants"], as_of=sink.truth.manifest["as_of"])
    pt = r[r["txn_type"].isin(["purchase", "transfer"]) & r["outcome"].isin(INCIDENT_OUTCOMES)]
    truth = sink.truth.incidents.set_index("txn_id")
    assert set(pt["txn_id"]) == set(truth.index)
    assert (pt.set_index("txn_id")["outcome"] == truth.loc[pt["txn_id"], "outcome"]).all()


def test_truth_covers_every_cause(sink):
    from analysis.simulate.truth import INCIDENT_COLUMNS

    assert tuple(sink.truth.incidents.columns) == INCIDENT_COLUMNS
    counts = sink.truth.cause_counts()
    assert list(counts.index) == list(CAUSES)
    assert (counts > 0).all(), counts[counts == 0]
    inc = sink.truth.incidents
    assert inc.loc[inc["outcome"].eq("in_cycle"), "cause"].eq("PROCESSING_DELAY").all()
    assert set(inc["fault_id"]) == {""} | {f["fault_id"] for f in sink.truth.faults}


# -- mechanisms -----------------------------------------------------------------------


def _link_failure(tx: pd.DataFrame) -> pd.Series:
    code = tx["response_code"]
    return code.isna() | code.isin(["A0", "30", "68"]) | tx["reversal_reason"].isin(["98", "A0"])


def test_unstable_link_leaves_its_evidence(sink, joined, events):
    seg = sink.truth.manifest["faulty_segment"]
    pt = joined[joined["txn_type"].isin(["purchase", "transfer"])]
    on = pt["network_segment"].eq(seg)
    before = pt["local"] < at("2026-03-06 08:00")
    during = (pt["local"] >= at("2026-03-06 08:00")) & (pt["local"] < at("2026-03-16 02:00"))
    upgraded = pt["local"] >= at("2026-03-16 02:00")
    fail = _link_failure(pt)
    assert 0.025 < fail[on & during].mean() < 0.08
    assert fail[on & before].mean() < 0.01 and fail[~on].mean() < 0.005
    assert fail[on & upgraded].mean() < fail[on & during].mean() / 4
    # no response: empty code and latency, reversal 98 sent or failed
    lost = pt[on & during & pt["response_code"].isna()]
    assert len(lost) and lost["latency_ms"].isna().all() and lost["reversal_reason"].eq("98").all()
    assert set(lost["reversal"]) == {"sent", "failed"}
    assert {"A0", "30", "68"} <= set(pt.loc[on & during, "response_code"].dropna())
    # the segment's link-error events: many per terminal-day during the fault, few otherwise
    link_events = events[events["event"].isin(["timeout", "mac_error", "connection_reset", "retransmit"])]
    n_terms = sink.tables["terminals"]["network_segment"].eq(seg).sum()
    per_day = lambda mask, days: mask.sum() / n_terms / days  # noqa: E731
    seg_ev = link_events["network_segment"].eq(seg)
    during_fault = (link_events["local"] >= at("2026-03-07")) & (link_events["local"] < at("2026-03-16"))
    assert per_day(seg_ev & during_fault, 9) > 2
    assert per_day(seg_ev & (link_events["local"] < at("2026-03-06")), 4) < 0.5
    assert per_day(seg_ev & (link_events["local"] >= at("2026-03-17")), 13) < 1
    failed_batch = events[events["event"].eq("batch_upload_failed")]
    assert len(failed_batch) and failed_batch["network_segment"].eq(seg).all()


def test_failed_batch_leaves_the_days_purchases_uncleared(sink, joined, events):
    fb = events[events["event"].eq("batch_upload_failed")].assign(day=lambda e: e["local"].dt.normalize())
    ok = joined["response_code"].eq("00") & joined["reversal"].eq("none")
    approved = joined[joined["txn_type"].eq("purchase") & ok]
    approved = approved.assign(day=approved["local"].dt.normalize())
    hit = approved.merge(fb[["terminal_id", "day"]], on=["terminal_id", "day"])
    assert len(hit) and not set(hit["txn_id"]) & set(sink.tables["settlements"]["txn_id"])
    truth = sink.truth.incidents.set_index("txn_id")
    voided = set(joined.loc[joined["txn_type"].eq("void"), "original_txn_id"])
    mech = truth.loc[[i for i in hit["txn_id"] if i not in voided], "mechanism"]
    assert mech.eq("batch_upload_failed").all()


def test_message_validation_turns_corruption_into_retransmits(sink, joined, events):
    seg = sink.truth.manifest["faulty_segment"]
    on = joined["network_segment"].eq(seg)
    after = joined["local"] >= at("2026-03-20 02:00")
    corrupted = joined["response_code"].isin(["A0", "30"]) | joined["reversal_reason"].eq("A0")
    assert corrupted[on & ~after & (joined["local"] >= at("2026-03-06 08:00"))].sum() > 0
    assert corrupted[on & after].sum() == 0
    caught = events[events["detail"].str.startswith("corrupted message detected")]
    assert len(caught) and (caught["local"] >= at("2026-03-20 02:00")).all()
    assert caught["event"].eq("retransmit").all()


def test_faulty_firmware_reboots_and_reverses_96(sink, joined, events):
    on = joined["firmware"].eq(FIRMWARE)
    r96 = joined["reversal_reason"].eq("96")
    assert r96.sum() > 5 and on[r96].all()
    when = joined.loc[r96, "local"]
    assert (when >= at("2026-03-05")).all() and (when < at("2026-03-19 03:00")).all()
    assert joined.loc[r96, "response_code"].eq("00").all()
    reboots = events[events["event"].eq("reboot")]
    fw_share = sink.tables["terminals"]["firmware"].eq(FIRMWARE).mean()
    during = (reboots["local"] >= at("2026-03-05")) & (reboots["local"] < at("2026-03-19"))
    assert reboots.loc[during, "firmware"].eq(FIRMWARE).mean() > 0.8 > fw_share
    assert not (reboots["firmware"].eq(FIRMWARE) & (reboots["local"] >= at("2026-03-19 03:00"))).sum() > 2


def test_wrong_account_returns_every_credit_until_corrected(sink, joined):
    merchant = fault(sink, "misconfigured_merchant", 0)["target"]["merchant_id"]
    s = sink.tables["settlements"].merge(joined[["txn_id", "merchant_id", "txn_type", "local"]], on="txn_id")
    mine = s[s["merchant_id"].eq(merchant) & s["txn_type"].eq("purchase")]
    window = (mine["local"] >= at("2026-03-09")) & (mine["local"] < at("2026-03-23 10:00"))
    assert window.sum() > 20
    assert mine.loc[window, "return_reason"].eq("invalid_account").all()
    assert mine.loc[~window, "return_reason"].isna().all()
    others = s[~s["merchant_id"].eq(merchant) & s["txn_type"].eq("purchase")]
    assert not others["return_reason"].eq("invalid_account").any()


def test_no_upload_merchant_never_clears_and_never_uploads(sink, joined, events):
    merchant = fault(sink, "misconfigured_merchant", 1)["target"]["merchant_id"]
    mine = joined[joined["merchant_id"].eq(merchant) & joined["txn_type"].eq("purchase")]
    cleared = set(sink.tables["settlements"]["txn_id"])
    after = mine["local"] >= at("2026-03-09")
    assert after.sum() > 20 and not set(mine.loc[after, "txn_id"]) & cleared
    ok = mine["response_code"].eq("00") & mine["reversal"].eq("none")
    assert set(mine.loc[~after & ok, "txn_id"]) & cleared
    ev = events[events["merchant_id"].eq(merchant)]
    assert not (ev["local"] >= at("2026-03-09")).any()  # no batch events at all, no link errors
    assert ev["event"].eq("batch_upload_ok").any()  # it uploaded before
    inc = sink.truth.incidents
    mine = inc["merchant_id"].eq(merchant) & inc["outcome"].eq("not_cleared")
    assert mine.any() and inc.loc[mine, "cause"].eq("MERCHANT_CONFIG").all()


def test_frozen_account_returns_credits(sink, joined):
    merchant = fault(sink, "frozen_account")["target"]["merchant_id"]
    s = sink.tables["settlements"].merge(joined[["txn_id", "merchant_id", "txn_type", "local"]], on="txn_id")
    mine = s[s["merchant_id"].eq(merchant) & s["txn_type"].eq("purchase") & (s["local"] >= at("2026-03-10"))]
    assert len(mine) > 10 and mine["return_reason"].eq("account_closed").all()


def test_bank_outage_concentrates_on_its_bank(sink, joined):
    tr = joined[joined["txn_type"].eq("transfer")].merge(
        sink.tables["settlements"][["txn_id", "return_reason"]], on="txn_id", how="left")
    bad = tr["response_code"].isin(["91", "92"]) | tr["return_reason"].eq("bank_unavailable")
    window = (tr["local"] >= at("2026-03-12 08:00")) & (tr["local"] < at("2026-03-13 20:00"))
    mine = tr["payee_bank"].eq(BANK)
    assert bad[mine & window].mean() > 0.5
    assert bad[~(mine & window)].mean() < 0.01


def test_issuer_outage_is_a_city_wide_burst(sink, joined):
    p = joined[joined["txn_type"].eq("purchase")]
    window = (p["local"] >= at("2026-03-17 14:00")) & (p["local"] < at("2026-03-17 16:00"))
    burst = p["response_code"].isin(["91", "96"])
    assert burst[window].mean() > 0.3 and burst[~window].mean() < 0.002
    assert p.loc[window & burst, "network_segment"].nunique() >= 5


def test_truth_causes_follow_the_mechanisms(sink):
    inc = sink.truth.incidents
    want = {
        "unstable_link": "NETWORK_COMMUNICATION", "batch_upload_failed": "NETWORK_COMMUNICATION",
        "faulty_firmware": "SYSTEM_FAULT", "issuer_outage": "SYSTEM_FAULT", "late_credit": "SYSTEM_FAULT",
        "wrong_account": "MERCHANT_CONFIG", "no_upload": "MERCHANT_CONFIG",
        "frozen_account": "ACCOUNT_FROZEN_OR_CLOSED",
        "bank_outage": "COUNTERPARTY_BANK", "payee_details_wrong": "OPERATOR_ERROR",
    }
    settled = inc[~inc["outcome"].eq("in_cycle")]
    for mech, cause in want.items():
        assert settled.loc[settled["mechanism"].eq(mech), "cause"].eq(cause).all(), mech
        assert settled["mechanism"].eq(mech).any(), mech


def test_fix_effects_by_common_random_numbers(sink):
    from analysis.simulate.truth import FIX_EFFECT_FIELDS

    assert all(tuple(e) == FIX_EFFECT_FIELDS for e in sink.truth.fix_effects)
    effects = {e["kind"]: e for e in sink.truth.fix_effects}
    assert set(effects) == {"network_upgrade", "message_validation", "firmware_update", "config_correction"}
    up = effects["network_upgrade"]
    assert up["true_effect"] < -0.005 and up["rate_after_without_fix"] > up["rate_after"]
    assert up["true_effect"] == pytest.approx(up["rate_after"] - up["rate_after_without_fix"])
    assert effects["message_validation"]["true_effect_link_failures"] < 0
    assert effects["firmware_update"]["true_effect"] <= 0
    assert effects["config_correction"]["true_effect"] < 0
    json.dumps(sink.truth.fix_effects)
    # a fix that does nothing has exactly no effect: the draws are common
    nothing = Fix("other", "all", "*", "2026-03-04")
    noop = simulate_city(dataclasses.replace(TINY, fixes=TINY.fixes + (nothing,)))
    other = [e for e in noop.truth.fix_effects if e["kind"] == "other"][0]
    assert other["true_effect"] == 0.0 and other["true_effect_link_failures"] == 0.0


def test_complaints_look_like_tickets(sink):
    c = sink.tables["complaints"]
    tickets = sink.truth.tickets
    assert list(tickets.columns) == ["ticket_id", "txn_id", "cause"]
    assert (tickets["ticket_id"] == c["ticket_id"]).all()
    assert tickets["txn_id"].isna().sum() >= 1 and tickets["txn_id"].notna().mean() > 0.9
    m = c.assign(txn_id=tickets["txn_id"]).dropna(subset=["txn_id"]).merge(
        sink.tables["transactions"], on="txn_id", suffixes=("", "_txn"))
    assert (m["merchant_id"] == m["merchant_id_txn"]).all()
    assert (m["kind"] == np.where(m["txn_type"].eq("transfer"), "transfer_failed", "unsettled")).all()
    assert (m["opened_at"] > m["timestamp"]).all()
    assert ((m["amount"] - m["amount_txn"]).abs() <= 5.0 + 1e-9).all()
    assert (m["amount"] == m["amount_txn"]).mean() > 0.5
    gap = (m["txn_time"] - m["timestamp"]).dropna().abs()
    assert (gap <= pd.Timedelta(minutes=20)).all() and m["txn_time"].isna().any()
    assert c["description"].str.contains("[\u4e00-\u9fff]").all()
    assert set(tickets["txn_id"].dropna()) <= set(sink.truth.incidents["txn_id"])


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_load_dataset_reads_the_simulated_files(sink, tmp_path, fmt):
    io = importlib.import_module("analysis.io")
    if not hasattr(io, "load_dataset"):
        pytest.skip("analysis.io.load_dataset is not implemented yet")
    write_city(sink, tmp_path / "d", tmp_path / "truth", fmt=fmt, mask_pans=True)
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == sorted(f"{n}.{fmt}" for n in TABLES)
    ds = io.load_dataset(tmp_path / "d")
    assert len(ds.rejected) == 0
    for name in TABLES:
        assert len(ds.table(name)) == len(sink.tables[name]), name
    assert ds.transactions["card_number"].str.contains(r"\*").all()


# -- the reference case ---------------------------------------------------------------


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    d = tmp_path_factory.mktemp("case")
    city = simulate_case_study(d / "case_study", d / "case_study_truth")
    return city, d


def test_case_study_shape(case):
    city, d = case
    m = city.truth.manifest
    merchants = city.tables["merchants"].set_index("merchant_id")
    assert 200 <= len(merchants) <= 300
    market = merchants.loc[m["supermarket_merchant_id"]]
    assert "超市" in market["name"] and market["mcc"] == "5411"
    assert 8 <= len(m["case_segment_merchant_ids"]) <= 15 and m["faulty_segment"] == m["case_segment"]
    assert m["fault_start"].startswith("2026-03-16")
    fixes = city.tables["interventions"]
    assert list(fixes["kind"]) == ["network_upgrade", "message_validation"]
    assert (fixes["scope_value"] == m["faulty_segment"]).all()
    assert fixes["applied_at"].diff().iloc[1] > pd.Timedelta(hours=24)
    kinds = {f["kind"] for f in city.truth.faults}
    assert kinds == {"unstable_link", "misconfigured_merchant", "frozen_account", "bank_outage"}
    assert [f["shared"] for f in city.truth.faults if f["kind"] != "bank_outage"] == [True, False, False]
    assert (city.truth.cause_counts() > 0).all()
    tickets = city.tables["complaints"]["merchant_id"].value_counts()
    assert tickets.index[0] == m["supermarket_merchant_id"]
    assert tickets.reindex(m["case_segment_merchant_ids"]).fillna(0).sum() > tickets.sum() * 0.25
    assert 250_000 <= m["rows"]["transactions"] <= 400_000
    size = sum(p.stat().st_size for p in (d / "case_study").iterdir())
    assert size <= 20 * 2**20
    effect = city.truth.fix_effects[0]
    assert effect["kind"] == "network_upgrade" and effect["true_effect"] < -0.005


def test_committed_case_study_is_reproducible(case):
    committed = DATA / "case_study"
    if not committed.exists():
        pytest.skip("data/case_study is not committed yet")
    _, d = case
    assert file_hashes(committed) == file_hashes(d / "case_study")
    assert file_hashes(DATA / "case_study_truth") == file_hashes(d / "case_study_truth")
    manifest = json.loads((DATA / "case_study_truth" / "manifest.json").read_text(encoding="utf-8"))
    assert case_study_config().seed == manifest["seed"]
    readme = (DATA / "README.md").read_text(encoding="utf-8")  # its numbers are the committed ones
    assert f"**{manifest['incidents']:,}**" in readme and str(manifest["seed"]) in readme
    assert all(f"| {name} | {rows:,}" in readme for name, rows in manifest["rows"].items())


def test_unsettled_shortcut_equals_the_full_settlement():
    from analysis.simulate.city import build_city
    from analysis.simulate.mechanisms import apply_mechanisms
    from analysis.simulate.scenario import resolve
    from analysis.simulate.settlement import settle, unsettled
    from analysis.simulate.streams import Streams
    from analysis.simulate.timeline import build_timeline
    from analysis.simulate.traffic import draw_attempts

    streams, tl = Streams(SINK.seed), build_timeline(SINK)
    city = build_city(SINK, streams)
    scen = resolve(SINK, city, tl, streams)
    att = draw_attempts(city, tl, streams)
    for fixes in (scen.fixes, ()):
        out = apply_mechanisms(att, city, scen, tl, fixes)
        assert (unsettled(att, out, city, tl) == settle(att, out, city, tl).unsettled).all()
