"""The engine seam: DuckDB and Spark run the same step SQL to the same results."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.contract import TABLES
from analysis.engine import DuckDBEngine, open_engine
from analysis.engine.base import arrow_to_pandas
from analysis.engine.spark_engine import to_spark_sql
from analysis.engine.tables import (
    calendar_frame,
    canonical_sql,
    dates_from_days,
    day_numbers,
    register_dataset,
)
from analysis.io import load_dataset
from analysis.reconcile import calendar_for, default_as_of, reconcile, reconcile_on
from analysis.workdays import china_calendar

CASE = "data/case_study"


@pytest.fixture(scope="module")
def case():
    return load_dataset(CASE)


def test_unknown_engine_is_refused():
    with pytest.raises(ValueError, match="duckdb, spark"):
        open_engine("oracle")


def test_canonical_view_adds_absent_columns_and_local_days():
    frame = pd.DataFrame({
        "terminal_id": ["K1"],
        "timestamp": pd.to_datetime(["2026-03-01 23:30"]).tz_localize("Asia/Shanghai"),
        "event": ["timeout"],
    })
    with DuckDBEngine() as eng:
        eng.register_frame("src_terminal_events", frame)
        eng.create_view("terminal_events", canonical_sql(TABLES["terminal_events"], list(frame.columns)))
        got = eng.fetch("SELECT * FROM terminal_events")
    assert got["detail"].isna().all()
    # 23:30 in Shanghai is 15:30 UTC: the local day, not the UTC day
    assert dates_from_days(got["day"]).iloc[0] == pd.Timestamp("2026-03-01")
    assert got["t"].iloc[0] == pd.Timestamp("2026-03-01 15:30", tz="UTC").value // 10**9


def test_calendar_table_agrees_with_the_working_calendar_day_by_day():
    cal = china_calendar(2025, 2026)
    table = calendar_frame(cal).dropna()
    days = dates_from_days(table["day"])
    for cycle in ("T1", "D1", "D0"):
        want_due = day_numbers(cal.settlement_date(days.to_numpy(), cycle))
        want_deadline = day_numbers(cal.credit_deadline(days.to_numpy(), cycle))
        assert np.array_equal(table[f"due_{cycle.lower()}"].to_numpy(dtype=np.int64), want_due)
        assert np.array_equal(table[f"deadline_{cycle.lower()}"].to_numpy(dtype=np.int64), want_deadline)
    # business days between two days is a difference of the running count
    a, b = pd.Timestamp("2026-02-13"), pd.Timestamp("2026-02-25")
    upto = table.set_index(dates_from_days(table["day"]))["bdays_upto"]
    assert upto[b] - upto[a] == cal.business_days_between(a, b)


def test_spark_sql_is_transpiled_exactly():
    assert to_spark_sql("SELECT a // 2 FROM t") == "SELECT a DIV 2 FROM t"
    assert "MEDIAN" in to_spark_sql("SELECT median(x) FROM t")


def test_results_have_the_same_dtypes_whichever_arrow_layout():
    import pyarrow as pa

    table = pa.table({"s": pa.array(["a", None], pa.large_string()),
                      "n": pa.array([1, 2], pa.decimal128(38, 0))})
    frame = arrow_to_pandas(table)
    assert frame["n"].dtype == np.int64 and frame["s"].iloc[0] == "a"


def _reconciled(engine, dataset) -> pd.DataFrame:
    register_dataset(engine, dataset, calendar_for(dataset.transactions["timestamp"]))
    reconcile_on(engine, as_of=default_as_of(dataset))
    return engine.fetch("SELECT * FROM reconciled ORDER BY txn_id").reset_index(drop=True)


def test_reconcile_on_duckdb_equals_pandas_reconcile(case):
    with DuckDBEngine() as eng:
        got = _reconciled(eng, case)
    want = reconcile(case.transactions, case.settlements, case.merchants, as_of=default_as_of(case))
    want = want.sort_values("txn_id").reset_index(drop=True)
    assert got["outcome"].tolist() == want["outcome"].tolist()
    assert got["credit_business_days"].astype("Float64").equals(want["credit_business_days"].astype("Float64"))


def test_reconcile_on_spark_equals_duckdb(case, spark_engine):
    with DuckDBEngine() as eng:
        want = _reconciled(eng, case)
    got = _reconciled(spark_engine, case)
    pd.testing.assert_frame_equal(got, want, check_dtype=True)


def test_spark_close_releases_tables_and_checkpoints(spark_engine):
    """Nothing an engine stored stays in Spark's block manager after close():
    a long session (the test suite, a scheduled service) otherwise fills the driver."""
    rdds = spark_engine.spark.sparkContext._jsc.getPersistentRDDs
    before = set(rdds().keys())
    spark_engine.create_table("t_cached", "SELECT 1 AS a")
    spark_engine.create_checkpoint("t_checkpoint", "SELECT a + 1 AS b FROM t_cached")
    assert spark_engine.fetch("SELECT b FROM t_checkpoint")["b"].tolist() == [2]
    assert len(set(rdds().keys()) - before) >= 2
    spark_engine.close()
    assert set(rdds().keys()) - before == set()
