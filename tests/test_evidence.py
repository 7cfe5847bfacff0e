"""Tests of analysis.evidence: the SQL evidence step against brute force, and DuckDB against Spark."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from analysis.contract import INCIDENT_OUTCOMES, LINK_ERROR_EVENTS
from analysis.engine import DuckDBEngine
from analysis.engine.spark_engine import to_spark_sql
from analysis.engine.tables import register_dataset
from analysis.evidence import (
    BURST_CODES,
    CORRUPTION_CODES,
    INCIDENT_TXN_TYPES,
    OUTAGE_CODES,
    Thresholds,
    evidence_sql,
    incident_features_on,
    quantile_position,
    reconciled_for_engine,
    staging_sql,
)
from analysis.reconcile import calendar_for, reconcile

DAY = 86400
LOCAL = 8 * 3600  # Asia/Shanghai
T0 = 1773100800  # 2026-03-10 08:00 Shanghai
CASE_STUDY = Path(__file__).resolve().parents[1] / "data" / "case_study"
EVENT_KINDS = (*LINK_ERROR_EVENTS, "reboot", "batch_upload_ok", "batch_upload_failed")
_STRINGS = (
    "txn_id", "merchant_id", "terminal_id", "txn_type", "response_code", "reversal",
    "reversal_reason", "outcome", "settlement_cycle", "credit_status", "return_reason", "payee_bank",
)
_DAYS = ("due_day", "deadline_day", "wait_until_day", "cleared_day", "credit_business_days")


def day_of(t: int) -> int:
    return (t + LOCAL) // DAY


def reconciled(rows: list[dict], *, with_row: bool = True) -> pd.DataFrame:
    """The engine table ``reconciled`` from a few rows; each row needs ``t``."""
    defaults = {
        "merchant_id": "M1", "terminal_id": "K1", "txn_type": "purchase", "amount": 1.0,
        "response_code": "05", "reversal": "none", "reversal_reason": None, "outcome": "declined",
        "approved": False, "settlement_cycle": "T1", "credit_status": None, "return_reason": None,
        "settled": False, "clearing_known": True, "payee_bank": None,
        **dict.fromkeys(_DAYS),
    }
    frame = pd.DataFrame([{**defaults, "txn_id": f"X{i:04d}", **r} for i, r in enumerate(rows)])
    frame["timestamp"] = pd.to_datetime(frame["t"], unit="s", utc=True).dt.tz_convert("Asia/Shanghai")
    frame["day"] = day_of(frame["t"])
    frame["credited_at"] = pd.Series(pd.NaT, index=frame.index, dtype="datetime64[us, Asia/Shanghai]")
    frame = frame.astype({**dict.fromkeys(_STRINGS, "str"), **dict.fromkeys(_DAYS, "Int64")})
    for col in _STRINGS:  # None stays missing
        frame[col] = frame[col].where(frame[col].ne("None"))
    if with_row:
        frame["_row"] = np.arange(len(frame), dtype=np.int64)
    return frame


def terminals(rows: list[dict]) -> pd.DataFrame:
    defaults = {"merchant_id": "M1", "network_segment": None, "firmware": "1.0", "model": "P1"}
    return pd.DataFrame([{**defaults, **r} for r in rows]).astype("str").replace("None", None)


def events(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["terminal_id", "event", "t"])
    frame = frame.astype({"terminal_id": "str", "event": "str", "t": "int64"})
    return frame.assign(day=day_of(frame["t"]))


def features(rec, terms, evs=None, *, window_minutes=10, thresholds=None, has_settlements=True):
    """incident_features_on over hand-made engine tables (``evs`` None: no terminal_events)."""
    with DuckDBEngine() as eng:
        eng.register_frame("reconciled", rec)
        eng.register_frame("terminals", terms)
        eng.register_frame("transactions", rec[["txn_id", "terminal_id", "response_code"]])
        if evs is not None:
            eng.register_frame("terminal_events", evs)
        return incident_features_on(
            eng,
            window_minutes=window_minutes,
            thresholds=thresholds,
            has_events=evs is not None,
            has_settlements=has_settlements,
        )


# --- range counts against brute force ------------------------------------------------------


def random_city(seed: int):
    """Small random tables with clustered times, duplicates, unknown and missing keys."""
    rng = np.random.default_rng(seed)
    window_s = int(rng.choice([60, 300, 600]))
    segments = ["S0", "S1", "S2", None]
    terms = terminals(
        [{"terminal_id": f"K{i}", "network_segment": segments[rng.integers(4)],
          "firmware": ["1.0", "2.0"][rng.integers(2)]} for i in range(6)]
    )
    keys = [*terms["terminal_id"], "K9", None]  # K9 is not in terminals
    centres = rng.integers(0, 3 * DAY, 6)

    def when() -> int:
        return int(T0 + rng.choice(centres) + rng.integers(-2 * window_s, 2 * window_s))

    codes = ["91", "96", "68", "92", "05", *CORRUPTION_CODES, None]
    rows = [
        {
            "terminal_id": keys[rng.integers(len(keys))],
            "t": when(),
            "response_code": codes[rng.integers(len(codes))],
            "txn_type": ["purchase", "purchase", "transfer", "refund"][rng.integers(4)],
            "outcome": ["declined", "declined", "reversed", "credited"][rng.integers(4)],
        }
        for _ in range(70)
    ]
    rows += rows[:6]  # the same transactions twice
    evs = [
        {"terminal_id": keys[rng.integers(len(keys))], "event": EVENT_KINDS[rng.integers(7)],
         "t": when()}
        for _ in range(400)
    ]
    # events exactly on the window's edges of a few transactions, and one just outside
    for r in rows[:5]:
        for dt in (-window_s, window_s, window_s + 1):
            evs.append({"terminal_id": r["terminal_id"], "event": "timeout", "t": r["t"] + dt})
    return reconciled(rows), terms, events(evs), window_s


def brute_force(rec: pd.DataFrame, terms: pd.DataFrame, evs: pd.DataFrame, window_s: int,
                upload_days: int) -> pd.DataFrame:
    """The evidence counts by looping over every incident and every event."""
    seg = dict(zip(terms["terminal_id"], terms["network_segment"]))
    seg = {k: (None if pd.isna(v) else v) for k, v in seg.items()}
    txns = rec.astype(object).where(rec.notna(), None).to_dict("records")
    evl = evs.astype(object).where(evs.notna(), None).to_dict("records")
    outage = [r for r in txns if r["outcome"] == "declined" and r["txn_type"] == "purchase"
              and r["response_code"] in OUTAGE_CODES]
    out = []
    for i in txns:
        if i["txn_type"] not in INCIDENT_TXN_TYPES or i["outcome"] not in INCIDENT_OUTCOMES:
            continue
        term, s, d = i["terminal_id"], seg.get(i["terminal_id"]), i["day"]
        near = [e for e in evl if abs(e["t"] - i["t"]) <= window_s]
        mine = [e for e in evl if term is not None and e["terminal_id"] == term]
        row = {f"term_{k}_near": sum(term is not None and e["terminal_id"] == term
                                     and e["event"] == k for e in near) for k in LINK_ERROR_EVENTS}
        row["seg_link_near"] = sum(
            s is not None and seg.get(e["terminal_id"]) == s and e["event"] in LINK_ERROR_EVENTS
            for e in near
        )
        burst = {seg.get(o["terminal_id"]) for o in outage if abs(o["t"] - i["t"]) <= window_s}
        row["burst_segments"] = len(burst - {None}) if i["response_code"] in BURST_CODES else 0
        row["term_a0"] = sum(term is not None and r["terminal_id"] == term
                             and r["response_code"] in CORRUPTION_CODES for r in txns)
        row["term_day_reboot"] = sum(e["event"] == "reboot" and e["day"] == d for e in mine)
        within = [e for e in mine if d <= e["day"] < d + upload_days]
        row["term_link_upload_days"] = sum(e["event"] in LINK_ERROR_EVENTS for e in within)
        row["term_upload_ok"] = sum(e["event"] == "batch_upload_ok" for e in within)
        row["term_upload_failed"] = sum(e["event"] == "batch_upload_failed" for e in within)
        row["term_upload_ok_ever"] = any(e["event"] == "batch_upload_ok" for e in mine)
        out.append({"txn_id": i["txn_id"], **row})
    return pd.DataFrame(out)


@pytest.mark.parametrize("seed", range(6))
def test_window_and_day_counts_match_brute_force(seed):
    rec, terms, evs, window_s = random_city(seed)
    th = Thresholds(upload_days=1 + seed % 3)
    got = features(rec, terms, evs, window_minutes=window_s / 60, thresholds=th)
    want = brute_force(rec, terms, evs, window_s, th.upload_days)
    assert len(want) > 20 and want["seg_link_near"].gt(0).any() and want["burst_segments"].gt(0).any()
    assert got["txn_id"].tolist() == want["txn_id"].tolist()  # transaction order, duplicates kept
    for col in want.columns.drop("txn_id"):
        assert got[col].tolist() == want[col].tolist(), col


def test_count_near_is_per_key_and_inclusive():
    rec = reconciled([{"terminal_id": k, "t": T0 + dt}
                      for k, dt in [("a", 100), ("a", 1000), ("b", 100), (None, 100)]])
    evs = events([{"terminal_id": k, "event": "timeout", "t": T0 + dt}
                  for k, dt in [("a", 40), ("a", 160), ("b", 161), ("a", 100)]])
    terms = terminals([{"terminal_id": "a"}, {"terminal_id": "b"}])
    got = features(rec, terms, evs, window_minutes=1)
    assert got["term_timeout_near"].tolist() == [3, 0, 0, 0]


def test_bursts_count_distinct_segments_once():
    terms = terminals([{"terminal_id": k, "network_segment": s}
                       for k, s in [("X1", "x"), ("X2", "x"), ("Y", "y"), ("Z", "z"), ("Q", None)]])
    outage = [{"terminal_id": k, "t": T0 + dt, "response_code": "91"}
              for k, dt in [("X1", -5), ("X2", 5), ("Y", 10), ("Z", 990)]]
    asks = [{"terminal_id": "Q", "t": T0 + dt, "response_code": "68"} for dt in (0, 1000)]
    got = features(reconciled(outage + asks), terms, window_minutes=0.5)
    assert got["burst_segments"].tolist()[-2:] == [2, 1]


# --- the segment's usual day --------------------------------------------------------------


def test_segment_usual_is_the_quantile_day_with_zero_days():
    day1 = T0 - 9 * DAY  # day numbers only matter relative to each other
    rec = reconciled([{"t": day1}, {"t": day1 + 4 * DAY}])
    evs = events([{"terminal_id": "K1", "event": "timeout", "t": day1 + d * DAY + i}
                  for d, i in [(0, 0), (1, 0), (4, 0), (4, 1), (4, 2), (4, 3)]])
    terms = terminals([{"terminal_id": "K1", "network_segment": "S"}])
    median = features(rec, terms, evs, thresholds=Thresholds(usual_quantile=0.5)).iloc[-1]
    assert median["seg_usual"] == 1.0  # days 1, 1, 0, 0, 4
    assert median["seg_day_link"] == 4 and median["seg_day_ratio"] == 2.5
    lower = features(rec, terms, evs).iloc[-1]  # a long fault does not become "usual"
    assert lower["seg_usual"] == 0.0 and lower["seg_day_ratio"] == 5.0


@pytest.mark.parametrize("q", [0.1, 0.25, 0.3, 0.37, 0.5, 0.9, 1.0])
def test_segment_usual_equals_numpy_quantile_exactly(q):
    rng = np.random.default_rng(7)
    terms = terminals([{"terminal_id": f"K{i}", "network_segment": f"S{i % 3}"} for i in range(5)])
    rec = reconciled([{"terminal_id": f"K{i}", "t": T0 + i * DAY} for i in range(5)])
    evs = events([{"terminal_id": f"K{rng.integers(5)}", "event": "retransmit",
                   "t": int(T0 + rng.integers(-3 * DAY, 9 * DAY))} for _ in range(300)])
    got = features(rec, terms, evs, thresholds=Thresholds(usual_quantile=q))
    span = np.arange(min(rec["day"].min(), evs["day"].min()), max(rec["day"].max(), evs["day"].max()) + 1)
    seg = evs["terminal_id"].map(dict(zip(terms["terminal_id"], terms["network_segment"])))
    for _, row in got.iterrows():
        daily = evs[seg.eq(row["network_segment"])].groupby("day").size().reindex(span, fill_value=0)
        assert row["seg_usual"] == np.quantile(daily.to_numpy(), q)


def test_quantile_position_matches_numpy():
    x = np.arange(11.0) ** 2
    for n in (1, 2, 5, 11):
        for q in (0.0, 0.1, 0.25, 0.33, 0.5, 0.75, 1.0):
            lo, hi, w = quantile_position(n, q)
            a, b = x[lo], x[hi]
            lerp = b - (b - a) * (1 - w) if w >= 0.5 else a + (b - a) * w
            assert lerp == np.quantile(x[:n], q), (n, q)


# --- merchant and terminal aggregates ------------------------------------------------------


def test_dark_runs_of_a_terminal_that_clears_nothing():
    rows = [{"t": T0 + d * DAY, "outcome": o, "cleared_day": c}
            for d, o, c in [(0, "not_cleared", None), (1, "credited", day_of(T0) + 2),
                            (3, "not_cleared", None), (5, "not_cleared", None)]]
    got = features(reconciled(rows), terminals([{"terminal_id": "K1"}]), events([]))
    assert got["dark_days"].tolist() == [1, 2, 2]
    assert got["dark_start"].dt.strftime("%m-%d").tolist() == ["03-10", "03-13", "03-13"]
    assert got["dark_end"].dt.strftime("%m-%d").tolist() == ["03-10", "03-15", "03-15"]


def test_return_patterns_per_merchant_and_type():
    returned = {"outcome": "returned", "credit_status": "returned", "return_reason": "invalid_account"}
    rows = [{"t": T0 + d * DAY, "cleared_day": day_of(T0) + d, **returned} for d in range(3)]
    rows.append({"t": T0 + 5 * DAY, "cleared_day": day_of(T0) + 5, "outcome": "credited",
                 "credit_status": "credited"})
    rows.append({"t": T0, "txn_type": "transfer", "cleared_day": day_of(T0), **returned})
    rec, terms = reconciled(rows), terminals([{"terminal_id": "K1"}])
    got = features(rec, terms).set_index("txn_id")
    purchase, transfer = got.loc["X0000"], got.loc["X0004"]
    assert (purchase["m_returns"], purchase["m_credits"], purchase["m_all_credits"]) == (3, 3, 4)
    assert purchase["m_pattern"] and not transfer["m_pattern"] and transfer["m_returns"] == 1
    assert str(purchase["m_last_cleared"].date()) == "2026-03-15"
    assert features(rec, terms, has_settlements=False)["m_returns"].eq(0).all()


def test_firmware_reboots_against_other_firmware():
    terms = terminals([{"terminal_id": f"K{i}", "firmware": "2.0" if i < 3 else "1.0"}
                       for i in range(6)])
    evs = events([{"terminal_id": f"K{i}", "event": "reboot", "t": T0} for i in range(3)])
    rec = reconciled([{"terminal_id": "K0", "t": T0 + 60}, {"terminal_id": "K3", "t": T0 + 60}])
    got = features(rec, terms, evs)
    assert got[["fw_terminals", "fw_rebooted"]].values.tolist() == [[3, 3], [3, 0]]
    assert got["fw_share"].tolist() == [1.0, 0.0] and got["fw_others_share"].tolist() == [0.0, 1.0]
    assert got["fw_outlier"].tolist() == [True, False]
    assert got["term_day_reboot"].tolist() == [1, 0]


def test_without_events_the_event_evidence_is_neutral():
    rec = reconciled([{"t": T0, "response_code": None, "reversal": "sent"}])
    got = features(rec, terminals([{"terminal_id": "K1", "network_segment": "S"}])).iloc[0]
    assert not got["has_events"] and not got["uploads_recorded"] and got["seg_usual"] == 0.0
    assert got["eff_reason"] == "98" and got["outcome"] == "declined"


def test_order_by_time_and_id_without_a_row_column():
    rows = [{"t": T0 + 50}, {"t": T0 + 10}, {"t": T0 + 10}]
    got = features(reconciled(rows, with_row=False), terminals([{"terminal_id": "K1"}]))
    assert got["txn_id"].tolist() == ["X0001", "X0002", "X0000"]


def test_every_query_transpiles_to_spark_without_approximations():
    for has_events in (True, False):
        texts = [
            *staging_sql(window_s=600, has_events=has_events, order_by="_row").values(),
            evidence_sql(window_s=600, thresholds=Thresholds(), first_day=0, last_day=30,
                         has_events=has_events, has_settlements=True),
        ]
        for sql in texts:
            spark = to_spark_sql(sql).upper()
            assert "PERCENTILE" not in spark and "APPROX" not in spark


# --- DuckDB and Spark agree ------------------------------------------------------------------


@pytest.fixture(scope="module")
def case():
    from analysis.io import load_dataset

    ds = load_dataset(CASE_STUDY)
    rec = reconcile(ds.transactions, ds.settlements, ds.merchants, as_of="2026-04-30 18:00")
    return ds, rec


def features_of_case(engine, case) -> pd.DataFrame:
    ds, rec = case
    register_dataset(engine, ds, calendar_for(rec["business_date"]))
    engine.register_frame("reconciled", reconciled_for_engine(rec, ds.transactions))
    return incident_features_on(engine, has_events=True, has_settlements=True)


def test_spark_equals_duckdb_on_the_case_study(case, spark_engine):
    with DuckDBEngine() as duck:
        expected = features_of_case(duck, case)
    assert len(expected) > 10_000 and expected["seg_day_surge"].any() and expected["burst"].any()
    assert_frame_equal(features_of_case(spark_engine, case), expected)


def test_spark_equals_duckdb_without_events(spark_engine):
    rec, terms, _, window_s = random_city(3)
    with DuckDBEngine() as duck:
        eng_frames = {"reconciled": rec, "terminals": terms,
                      "transactions": rec[["txn_id", "terminal_id", "response_code"]]}
        results = []
        for eng in (duck, spark_engine):
            for name, frame in eng_frames.items():
                eng.register_frame(name, frame)
            results.append(incident_features_on(eng, window_minutes=window_s / 60,
                                                has_events=False, has_settlements=False))
    assert_frame_equal(results[1], results[0])
