"""Tests of analysis.aggregates and of the aggregate steps on every engine.

The per-merchant/day steps (``daily_panel_on``, ``fault_cells_on``,
``ticket_candidates_on``) must give the same frames on DuckDB and on Spark, and
the pandas entry points (frames put into a fresh DuckDB by ``frames_engine``)
the same as the steps run on the engine's own ``reconciled`` table.
"""

from __future__ import annotations

import doctest

import numpy as np
import pandas as pd
import pytest

import analysis.aggregates as aggregates
from analysis.aggregates import RECONCILED_COLUMNS, engine_reconciled, frames_engine
from analysis.contract import INCIDENT_OUTCOMES
from analysis.engine import DuckDBEngine
from analysis.engine.tables import register_dataset
from analysis.faults import FAULT_CAUSES, fault_cells_on
from analysis.io import load_dataset
from analysis.metrics import daily_panel, daily_panel_on
from analysis.reconcile import ENGINE_COLUMNS, calendar_for, default_as_of, reconcile, reconcile_on
from analysis.tickets import ticket_candidates_on

CASE = "data/case_study"
TZ = "Asia/Shanghai"


def test_engine_reconciled_has_the_engine_tables_columns():
    assert set(RECONCILED_COLUMNS) == set(ENGINE_COLUMNS)


def test_engine_reconciled_days_and_seconds():
    rec = pd.DataFrame({
        "txn_id": ["A", "B"],
        "timestamp": pd.to_datetime(["2026-03-01 23:30", "2026-03-02 00:10"]).tz_localize(TZ),
        "business_date": pd.to_datetime(["2026-03-01", "2026-03-02"]),
        "deadline": pd.to_datetime(["2026-03-04", None]),
        "credited_at": pd.to_datetime(["2026-03-03 23:59:59", None]).tz_localize(TZ),
        "credit_business_days": [2.0, np.nan],
    })
    out = engine_reconciled(rec)
    assert list(out.columns) == list(RECONCILED_COLUMNS)
    day = (pd.Timestamp("2026-03-01") - pd.Timestamp("1970-01-01")).days
    assert out["day"].tolist() == [day, day + 1]
    assert out["t"].iloc[0] == pd.Timestamp("2026-03-01 15:30", tz="UTC").value // 10**9
    # the Shanghai day of a credit just before local midnight, not the UTC day
    assert out["credited_at_day"].iloc[0] == day + 2 and pd.isna(out["credited_at_day"].iloc[1])
    assert out["deadline_day"].tolist()[0] == day + 3 and pd.isna(out["deadline_day"].iloc[1])
    assert str(out["credit_business_days"].dtype) == "Int64"
    # absent columns are typed missing values
    assert out["outcome"].isna().all() and str(out["approved"].dtype) == "boolean"


def test_engine_reconciled_takes_payee_bank_from_transactions():
    rec = pd.DataFrame({"txn_id": ["A", "B"], "txn_type": ["transfer", "purchase"]})
    txns = pd.DataFrame({"txn_id": ["B", "A"], "payee_bank": [None, "招商银行"]})
    assert engine_reconciled(rec, txns)["payee_bank"].tolist()[0] == "招商银行"
    own = rec.assign(payee_bank=["中国银行", None])
    assert engine_reconciled(own, txns)["payee_bank"].tolist()[0] == "中国银行"


def test_engine_reconciled_keeps_the_engine_tables_own_columns():
    fetched = pd.DataFrame({"txn_id": ["A"], "t": [1773108000], "day": [20522], "deadline_day": [20525]})
    out = engine_reconciled(fetched)
    assert out[["t", "day", "deadline_day"]].iloc[0].tolist() == [1773108000, 20522, 20525]


def test_frames_engine_refuses_unknown_tables_and_closes():
    with pytest.raises(ValueError, match="not a contract table"):
        with frames_engine(shops=pd.DataFrame({"x": [1]})):
            pass
    events = pd.DataFrame({"terminal_id": ["K1"], "event": ["timeout"],
                           "timestamp": pd.to_datetime(["2026-03-01 23:30"]).tz_localize(TZ)})
    with frames_engine(terminal_events=events) as eng:
        assert eng.has("terminal_events") and not eng.has("reconciled")
        assert eng.scalar("SELECT day FROM terminal_events") == 20513


def test_sql_literals_are_escaped():
    with DuckDBEngine() as eng:
        assert eng.scalar("SELECT " + aggregates.sql_string("it's")) == "it's"
        assert eng.scalar(f"SELECT 'b' IN {aggregates.sql_strings(['a', 'b'])}") is True


def test_doctests():
    assert doctest.testmod(aggregates, optionflags=doctest.NORMALIZE_WHITESPACE).failed == 0


# --------------------------------------------------------------------------- the case study on every engine


@pytest.fixture(scope="module")
def case():
    ds = load_dataset(CASE)
    return ds, default_as_of(ds)


def _stand_in_incidents(rec: pd.DataFrame) -> pd.DataFrame:
    """Incidents with causes dealt in turn (fault causes and others), without running the classifier."""
    inc = rec.loc[rec["outcome"].isin(INCIDENT_OUTCOMES), ["txn_id"]].sort_values("txn_id")
    causes = [*FAULT_CAUSES, "UNKNOWN", "INSUFFICIENT_FUNDS"]
    return inc.assign(cause=[causes[k % len(causes)] for k in range(len(inc))]).reset_index(drop=True)


CELL_KEY = ["terminal_id", "merchant_id", "day", "payee_bank"]


def _steps(engine, dataset, moment, incidents=None) -> dict[str, pd.DataFrame]:
    """The aggregate steps on the engine's own reconciled table (as ``analyze`` runs them)."""
    register_dataset(engine, dataset, calendar_for(dataset.transactions["timestamp"]))
    reconcile_on(engine, as_of=moment)
    if incidents is None:
        incidents = _stand_in_incidents(engine.fetch("SELECT txn_id, outcome FROM reconciled"))
    cells = fault_cells_on(engine, incidents, as_of=moment)
    return {
        "merchant": daily_panel_on(engine, as_of=moment, mcc=True),
        "terminal": daily_panel_on(engine, as_of=moment, level="terminal", mature_only=True),
        "cells": cells.sort_values(CELL_KEY).reset_index(drop=True),
        "candidates": ticket_candidates_on(engine, dataset.complaints),
        "incidents": incidents,
    }


@pytest.fixture(scope="module")
def on_duckdb(case):
    ds, moment = case
    with DuckDBEngine() as eng:
        return _steps(eng, ds, moment)


@pytest.mark.slow
def test_steps_on_spark_equal_duckdb_on_the_case_study(case, on_duckdb, spark_engine):
    ds, moment = case
    try:
        got = _steps(spark_engine, ds, moment, on_duckdb["incidents"])
    finally:
        spark_engine.close()  # the session is shared: release the tables this test cached
    for name in ("merchant", "terminal", "cells", "candidates"):
        pd.testing.assert_frame_equal(got[name], on_duckdb[name], check_exact=True, obj=name)
    assert got["merchant"].attrs["link_errors_known"] and len(got["cells"]) > 1000


@pytest.mark.slow
def test_pandas_entry_points_equal_the_engine_steps(case, on_duckdb):
    ds, moment = case
    rec = reconcile(ds.transactions, ds.settlements, ds.merchants, as_of=moment)
    merchant = daily_panel(rec, ds.terminals, ds.terminal_events, as_of=moment, merchants=ds.merchants)
    pd.testing.assert_frame_equal(merchant, on_duckdb["merchant"], check_exact=True)
    with frames_engine(reconciled=rec, transactions=ds.transactions) as eng:
        cells = fault_cells_on(eng, on_duckdb["incidents"], as_of=moment)
    pd.testing.assert_frame_equal(cells.sort_values(CELL_KEY).reset_index(drop=True), on_duckdb["cells"],
                                  check_exact=True)
    # the transfers' banks come from the transactions table through engine_reconciled
    assert cells.loc[cells["transfer"], "payee_bank"].ne("(missing)").all()


def test_every_step_transpiles_to_spark_without_approximations():
    from analysis.engine.spark_engine import to_spark_sql
    from analysis.faults import fault_cells_sql
    from analysis.metrics import DOMINANT_SQL, panel_sql
    from analysis.tickets import ticket_candidates_sql

    steps = [panel_sql(level, as_of_day=20540, link_errors=True, mcc=True) for level in ("merchant", "terminal")]
    steps += [DOMINANT_SQL, fault_cells_sql(20540),
              ticket_candidates_sql(time_window_minutes=60, amount_tolerance=0, lookback_days=14)]
    spark = [to_spark_sql(sql).upper() for sql in steps]
    assert all("APPROX" not in s and "PERCENTILE" not in s for s in spark)
    assert "MEDIAN(CREDIT_BUSINESS_DAYS)" in spark[0]  # Spark's MEDIAN is exact, like DuckDB's
