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


def test_duckdb_code_columns_are_enums_that_read_back_as_text():
    """``codes`` columns are stored as ENUMs: they sort, compare, group and fetch as the text."""
    values = pd.DataFrame({"k": [1, 2, 3, 4, 5], "x": ["void", "purchase", None, "refund", "purchase"]})
    with DuckDBEngine() as eng:
        eng.register_frame("v", values)
        eng.create_table("coded", "SELECT * FROM v", codes={"x": ("void", "refund", "purchase")})
        eng.create_table("plain", "SELECT * FROM v")
        assert eng.scalar("SELECT typeof(x) FROM coded LIMIT 1").startswith("ENUM")
        for sql in ("SELECT * FROM {} ORDER BY x NULLS LAST, k",
                    "SELECT x, count(*) AS n, max(x) OVER () AS top FROM {} GROUP BY x ORDER BY x",
                    "SELECT k FROM {} WHERE x IN ('refund', 'transfer') OR x < 'q' ORDER BY k",
                    "SELECT k, coalesce(x, 'none') || '!' AS y FROM {} ORDER BY k"):
            pd.testing.assert_frame_equal(eng.fetch(sql.format("coded")), eng.fetch(sql.format("plain")))
        # a value outside the list (data the loader did not check): the text is kept as it is
        eng.create_table("odd", "SELECT * FROM v", codes={"x": ("void",)})
        assert eng.scalar("SELECT typeof(x) FROM odd LIMIT 1") == "VARCHAR"
        pd.testing.assert_frame_equal(eng.fetch("SELECT * FROM odd ORDER BY k"), values)


def test_reconciled_codes_cover_every_value_the_loader_lets_through():
    """Each coded column of ``reconciled`` lists the contract's allowed values (and the outcomes)."""
    from analysis.contract import OUTCOMES
    from analysis.reconcile import ENGINE_CODES

    allowed = {c.name: c.allowed for t in TABLES.values() for c in t.columns if c.allowed}
    assert ENGINE_CODES["outcome"] == tuple(OUTCOMES)
    for column in ("txn_type", "reversal", "reversal_reason", "credit_status", "return_reason",
                   "settlement_cycle"):
        assert ENGINE_CODES[column] == allowed[column]


def test_fetch_with_release_gives_the_same_frame_and_keeps_the_limit():
    with DuckDBEngine(memory_limit="1GB") as eng:
        limit = eng.scalar("SELECT current_setting('memory_limit')")
        sql = "SELECT range AS i, 'x' || range AS s FROM range(1000)"
        pd.testing.assert_frame_equal(eng.fetch(sql, release=True), eng.fetch(sql))
        assert eng.scalar("SELECT current_setting('memory_limit')") == limit
