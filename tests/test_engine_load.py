"""analysis.engine.load: a Parquet dataset validated on an engine equals analysis.io.load_dataset.

Every test compares against the loader itself: the canonical tables fetched from
the engine (sorted) equal those of ``register_dataset(engine, load_dataset(path))``,
and the rejected rows, row accounting, notes and small pandas tables are equal.
Bad input is Parquet written on the fly (typed and all-text columns, and a
simulated city with full synthetic card numbers spoiled row by row).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analysis.engine import DuckDBEngine
from analysis.engine.load import SMALL_TABLES, load_on_engine
from analysis.engine.tables import register_dataset
from analysis.exceptions import DatasetError
from analysis.io import load_dataset
from analysis.privacy import KEY_ENV
from analysis.simulate import CityConfig, simulate_city
from analysis.workdays import china_calendar
from test_privacy import PREFIXES, SUFFIXES, assert_absent, grouped, luhn_pans, planted_tables, write_raw

CASE = "data/case_study"
KEY = b"test-key"
SHANGHAI = "Asia/Shanghai"
CALENDAR = china_calendar(2025, 2026)


# ---------------------------------------------------------------------------------
# Comparing with the loader
# ---------------------------------------------------------------------------------
def canonical(engine, name: str) -> pd.DataFrame:
    """A canonical table fetched from an engine, sorted by every column.

    ``_row`` orders the transactions as their file does: the engine keeps each
    row's number in the file (rejected rows leave gaps), the frames' their
    position, so the two are compared as ranks.
    """
    frame = engine.fetch(f"SELECT * FROM {name}")
    if "_row" in frame.columns:
        frame["_row"] = frame["_row"].rank(method="first").astype("int64") - 1
    return frame.sort_values(list(frame.columns), ignore_index=True)


def assert_same_as_loader(engine, root: Path | str, key: bytes = KEY):
    """Load ``root`` on ``engine`` and check everything equals the loader's result."""
    expected = load_dataset(root, key=key)
    got = load_on_engine(engine, root, key=key)
    pd.testing.assert_frame_equal(got.rejected, expected.rejected)
    pd.testing.assert_frame_equal(got.accounting, expected.accounting)
    assert got.notes == expected.notes
    for name in SMALL_TABLES:
        if expected.table(name) is None:
            assert getattr(got, name) is None
        else:
            pd.testing.assert_frame_equal(getattr(got, name), expected.table(name))
    assert got.tables == tuple(n for n in expected.accounting["table"])
    with DuckDBEngine() as ref:
        register_dataset(ref, expected, CALENDAR)
        for name in got.tables:
            pd.testing.assert_frame_equal(canonical(engine, name), canonical(ref, name), check_exact=True)
    return got, expected


@pytest.fixture
def duck():
    with DuckDBEngine(memory_limit="1GB") as engine:
        yield engine


def shanghai(values, naive: bool = False) -> pd.Series:
    times = pd.to_datetime(pd.Series(values), format="ISO8601", utc=True).dt.tz_convert(SHANGHAI)
    return times.dt.tz_localize(None) if naive else times


# ---------------------------------------------------------------------------------
# Datasets with every kind of bad row
# ---------------------------------------------------------------------------------
def typed_dataset(root: Path) -> Path:
    """Typed Parquet (floats, integers, timestamps with and without zone, dates) with bad rows."""
    root.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({
        "merchant_id": ["M001", "M002", "M003", "M004", "M001", "", "M007", "M008"],
        "name": ["浦东小吃店", "Corner 4111 1111 1111 1111", "Tea", "Far", "dup", "noid", "", "x"],
        "mcc": ["5812", "5411", "541", "5411", "5812", "5411", "5411", "5411\n"],
        "latitude": [31.2, 31.1, 31.3, 999.0, 31.2, 31.0, np.nan, 31.0],
        "longitude": [121.4, 121.5, 121.4, 121.5, 121.4, 121.0, 121.0, np.inf],
        "district": ["浦东", None, "", "x", None, None, None, None],
        "settlement_cycle": ["T1", None, "D0", "", "T1", "X1", "T1", "T1"],
        "owner_phone": [13800138000, 1, 2, 3, 4, 5, 6, 7],  # extra column, not text
    }).to_parquet(root / "merchants.parquet", index=False)
    pd.DataFrame({
        "terminal_id": ["10230017", "10230018", "10230019", "10230020", "10230021", "10230017", "10230022"],
        "merchant_id": ["M001", "M002", "M003", "M004", "M404", "M002", "M002"],
        "model": ["PAX"] * 7, "firmware": ["1.0"] * 7,
        "connection": pd.Categorical(["4g", "broadband", "wifi", "4g", "4g", "4g", "5g"]),  # dictionary
        "network_segment": ["CT-PD-0231"] * 7,
    }).to_parquet(root / "terminals.parquet", index=False)
    n = 16
    tx = pd.DataFrame({
        "txn_id": [f"{i:06d}" for i in range(n)], "terminal_id": ["10230017"] * n,
        "merchant_id": ["M001"] * n, "timestamp": shanghai(["2025-03-03T10:15:00+08:00"] * n),
        "txn_type": ["purchase"] * n,
        "amount": [128.5, 0.125, 0.135, 2.675] + [10.0] * 12,  # ties round to even, as numpy
        "card_number": ["4111111111111111", "4111 1111 1111 1111", "5500000000000004", "6222021234567890123",
                        "1234", "12345", "411111******1111"] + ["4111111111111111"] * 9,
        "response_code": ["00"] * n, "latency_ms": [230.0, np.nan] + [float(i) for i in range(1, 15)],
        "reversal": ["none"] * n, "reversal_reason": [None] * n, "payee_bank": [None] * n,
        "payee_account": [None] * n, "memo": ["x"] * n,
    })
    tx.loc[7, "amount"], tx.loc[8, "amount"], tx.loc[9, "amount"] = -1.0, np.nan, np.inf
    tx.loc[10, "card_number"] = ""
    tx.loc[11, ["terminal_id", "merchant_id"]] = ["10230019", "M003"]  # its merchant is rejected
    tx.loc[12, "merchant_id"] = "M002"  # terminal 10230017 belongs to M001
    tx.loc[13, "txn_id"] = "000001"  # duplicate
    tx.loc[14, ["txn_type", "amount", "reversal"]] = ["payment", 0.0, "maybe"]
    tx.loc[15, "terminal_id"] = "99999999"
    tx.loc[2, "payee_bank"] = "bank 4111-1111-1111-1111 x"
    tx.loc[3, "payee_account"] = "6222 0212 3456 7890 123"
    tx.loc[4, "reversal_reason"] = "77"
    tx.loc[5, "latency_ms"], tx.loc[6, "latency_ms"] = 2.5, -3.0
    tx.to_parquet(root / "transactions.parquet", index=False)
    pd.DataFrame({
        "txn_id": ["000000", "000001", "000011", "009999", "000000", "000003", "000004"],
        "cleared_date": pd.to_datetime(["2025-03-03"] * 5 + [None, "2025-03-04"]).date,
        "settled_amount": [128.5, 0.0, 1.0, 1.0, 1.0, 1.0, -0.001],
        "credit_status": ["credited"] + ["pending"] * 4 + ["credited", "returned"],
        "credited_at": shanghai(["2025-03-04T09:00:00+08:00"] + [None] * 6),
        "return_reason": [None] * 6 + ["bogus"],
    }).to_parquet(root / "settlements.parquet", index=False)
    pd.DataFrame({
        "terminal_id": ["10230017", "55555555", "10230019", "10230017"],
        "timestamp": shanghai(["2025-03-03 10:14", "2025-03-03 10:14", None, "2025-03-03 23:59:59.5"], naive=True),
        "event": ["timeout", "timeout", "reboot", "nope"],
        "detail": ["card 4111111111111111", None, "", "x"],
    }).to_parquet(root / "terminal_events.parquet", index=False)
    pd.DataFrame({
        "ticket_id": ["C1", "C2", "C1", "C4"], "opened_at": shanghai(["2025-03-05T09:00:00+08:00"] * 4),
        "merchant_id": ["M001", "M404", "M001", "M003"], "kind": ["unsettled"] * 4,
        "amount": [128.5, 10.0, 1.0, 0.004],
        "description": ["卡号4111-1111-1111-1111，请核实", "x", "y", "订单 1 4111111111111111"],
    }).to_parquet(root / "complaints.parquet", index=False)
    return root


def text_dataset(root: Path) -> Path:
    """Every column stored as text, numbers, times and dates included."""
    root.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"merchant_id": ["M001", "M002", "M003"], "name": ["a", "b", "c"],
                  "mcc": ["5812", " 5411", "5411"], "latitude": ["31.2", "abc", " 31 "],
                  "longitude": ["121.4", "1e1", "inf"]}).to_parquet(root / "merchants.parquet", index=False)
    pd.DataFrame({"terminal_id": ["T1", "T2"], "merchant_id": ["M001", "M002"], "model": ["X", "X"],
                  "firmware": ["1", "1"], "connection": ["4g", "4g"],
                  "network_segment": ["S", "S"]}).to_parquet(root / "terminals.parquet", index=False)
    stamps = ["2025-03-03T10:15:00+08:00", "2025-03-03 10:15:00", "yesterday", "2025-02-30T10:00:00+08:00",
              "2025-03-05T25:00:00", "", "  ", "2025-03-03T02:15:00Z", "2025-03-03", "1988-04-17 02:30:00",
              "2025-03-03T10:15:00.123456789+08:00", "20250303T101500"]
    n = len(stamps)
    pd.DataFrame({
        "txn_id": [f"X{i}" for i in range(n)], "terminal_id": ["T1"] * n, "merchant_id": ["M001"] * n,
        "timestamp": stamps, "txn_type": ["purchase"] * n,
        "amount": ["10", "ten", "-1", "1e2", "0.004", "", " 12.5 ", "nan", "inf", "1,000", "0x10", "3"],
        "card_number": ["4111111111111111"] * n, "response_code": ["00"] * n,
        "latency_ms": ["1", "2.5", "", "1e3", "-0", "x", "3", "4", "5", "6", "7", "8"],
        "reversal": ["none"] * n,
    }).to_parquet(root / "transactions.parquet", index=False)
    pd.DataFrame({
        "txn_id": ["X0", "X1", "X7", "X11", "X10"],
        "cleared_date": ["2025-03-03", "03/04/2025", "2025-3-4", "", "2025-02-30"],
        "settled_amount": ["1"] * 5, "credit_status": ["credited"] * 5,
        "credited_at": ["2025-03-04T09:00:00+08:00", None, "", "bad", "2025-03-04 09:00"],
    }).to_parquet(root / "settlements.parquet", index=False)
    return root


def spoiled_city(root: Path, seed: int = 3) -> Path:
    """A small simulated city with full card numbers and bad rows in every table."""
    config = CityConfig(seed=seed, n_merchants=30, n_neighbourhoods=3, days=10, case_segment_size=4)
    t = {k: v.copy() for k, v in simulate_city(config, full_pans=True).tables.items()}
    m, term, tx, st_, ev, cp = (t[k] for k in ("merchants", "terminals", "transactions", "settlements",
                                               "terminal_events", "complaints"))
    m.loc[1, "latitude"], m.loc[2, "mcc"], m.loc[3, "settlement_cycle"] = 999.0, "54a1", ""
    m = pd.concat([m, m.iloc[[0]].assign(name="again")], ignore_index=True)
    term.loc[0, "connection"], term.loc[1, "merchant_id"] = "5g", "M-UNKNOWN"
    term = pd.concat([term, term.iloc[[5]]], ignore_index=True)
    tx["latency_ms"] = tx["latency_ms"].astype("float64")
    bad = {"amount": [-1.0, np.nan, np.inf, 0.004], "latency_ms": [2.5, -1.0], "txn_type": ["payment"],
           "card_number": ["", None, "4111 1111-1111 1111"], "reversal_reason": ["77"],
           "terminal_id": ["99999999"], "payee_bank": ["卡号 4111111111111111"]}
    row = 10
    for col, values in bad.items():
        for v in values:
            tx.loc[row, col] = v
            row += 7
    tx.loc[row, "merchant_id"] = m.loc[5, "merchant_id"]  # not the terminal's merchant
    tx.loc[row + 3, "timestamp"] = pd.NaT
    tx = pd.concat([tx, tx.iloc[[20, 21]]], ignore_index=True)  # duplicate txn_ids
    st_.loc[0, "settled_amount"], st_.loc[1, "credit_status"], st_.loc[2, "cleared_date"] = -1.0, "bogus", pd.NaT
    st_.loc[3, "txn_id"] = tx.loc[10, "txn_id"]  # settles a rejected transaction (and repeats a key?)
    st_.loc[4, "txn_id"] = "T-UNKNOWN"
    st_ = pd.concat([st_, st_.iloc[[6]]], ignore_index=True)
    ev.loc[0, "terminal_id"], ev.loc[1, "event"], ev.loc[2, "detail"] = "55555555", "nope", "card 4111111111111111"
    ev["timestamp"] = ev["timestamp"].dt.tz_localize(None)  # naive: Shanghai wall time
    cp.loc[0, "description"] = "卡号4111-1111-1111-1111，请核实"
    cp = pd.concat([cp, cp.iloc[[1]].assign(merchant_id="M-GONE")], ignore_index=True)
    root.mkdir(parents=True, exist_ok=True)
    frames = {**t, "merchants": m, "terminals": term, "transactions": tx, "settlements": st_,
              "terminal_events": ev, "complaints": cp}
    for name, frame in frames.items():
        frame.to_parquet(root / f"{name}.parquet", index=False)
    return root


# ---------------------------------------------------------------------------------
# DuckDB equals the loader
# ---------------------------------------------------------------------------------
def test_case_study_equals_the_loader(duck):
    got, _ = assert_same_as_loader(duck, CASE)
    assert got.tables == ("merchants", "terminals", "transactions", "terminal_events", "settlements",
                          "complaints", "interventions")
    assert "transactions=276,884" in repr(got) and "rejected=0" in repr(got)
    assert "transactions.parquet" in got.summary()


def test_typed_bad_rows_equal_the_loader(duck, tmp_path):
    got, _ = assert_same_as_loader(duck, typed_dataset(tmp_path / "typed"))
    reasons = " | ".join(got.rejected["reason"])
    for text in ("duplicate txn_id '000001'", "belongs to merchant 'M001', not 'M002'",
                 "refers to a merchants row that was rejected", "expected a finite number",
                 "expected a whole number", "is not one of"):
        assert text in reasons
    amounts = duck.fetch("SELECT txn_id, amount FROM transactions ORDER BY txn_id")
    assert amounts["amount"].tolist()[:4] == [128.5, 0.12, 0.14, 2.68]  # ties to even, as numpy
    rows = duck.fetch("SELECT _row, file_line FROM src_transactions ORDER BY _row")
    rejected = got.rejected.loc[got.rejected["table"] == "transactions", "line"]
    assert (rows["_row"] + 2 == rows["file_line"]).all()  # _row: the row's number in its file
    assert set(rows["file_line"]).isdisjoint(rejected) and len(rows) + len(rejected) == 16
    assert duck.count("ld_repeats_transactions") == 1  # the duplicate txn_id, left out by the view


def test_text_columns_are_converted_like_the_loader(duck, tmp_path):
    got, _ = assert_same_as_loader(duck, text_dataset(tmp_path / "text"))
    assert any("had no UTC offset" in n for n in got.notes)


def test_spoiled_simulated_city_equals_the_loader(duck, tmp_path):
    got, _ = assert_same_as_loader(duck, spoiled_city(tmp_path / "city"))
    assert set(got.rejected["table"]) == {"merchants", "terminals", "transactions", "settlements",
                                          "terminal_events", "complaints"}
    assert "4111111111111111" not in got.rejected.to_string()


def test_csv_and_unusual_types_are_loaded_by_the_loader(duck, tmp_path):
    root = typed_dataset(tmp_path / "float_id")
    frame = pd.read_parquet(root / "terminals.parquet")
    frame["firmware"] = [1.0, 1.5, 2.0, 2.0, 2.0, 2.0, 2.0]  # floats in a text column
    frame.to_parquet(root / "terminals.parquet", index=False)
    assert_same_as_loader(duck, root)
    csv = tmp_path / "csv"
    csv.mkdir()
    for name in ("merchants", "terminals", "transactions"):
        pd.read_parquet(Path(CASE) / f"{name}.parquet").head(50).to_csv(csv / f"{name}.csv", index=False)
    with DuckDBEngine() as other:
        assert_same_as_loader(other, csv)


# ---------------------------------------------------------------------------------
# Whole-file problems: the loader's errors
# ---------------------------------------------------------------------------------
def _break(root: Path, how: str) -> None:
    path = root / "transactions.parquet"
    frame = pd.read_parquet(path)
    if how == "unreadable":
        path.write_bytes(b"this is not parquet at all")
        return
    if how == "missing column":
        frame = frame.drop(columns="amount")
    elif how == "bool amount":
        frame["amount"] = True
    elif how == "refused name":
        frame["cvv2"] = "123"
    elif how == "track 2":
        frame["memo"] = "x"
        frame.loc[3, "memo"] = "4111111111111111=25121010000012300000"
    elif how == "int times":
        frame["timestamp"] = 1
    frame.to_parquet(path, index=False)


@pytest.mark.parametrize("how", ["unreadable", "missing column", "bool amount", "refused name",
                                 "track 2", "int times"])
def test_whole_file_problems_raise_the_loaders_error(duck, tmp_path, how):
    root = typed_dataset(tmp_path / "ds")
    _break(root, how)
    with pytest.raises(DatasetError) as want:
        load_dataset(root, key=KEY)
    with pytest.raises(DatasetError) as got:
        load_on_engine(duck, root, key=KEY)
    assert str(got.value) == str(want.value)
    assert (got.value.file, got.value.column, got.value.line) == (want.value.file, want.value.column,
                                                                  want.value.line)
    assert "4111111111111111" not in str(got.value)


def test_missing_directory_and_tables_raise_like_the_loader(duck, tmp_path):
    for root in (tmp_path / "nope", typed_dataset(tmp_path / "ds")):
        if root.exists():
            (root / "terminals.parquet").unlink()
        with pytest.raises(DatasetError) as want:
            load_dataset(root)
        with pytest.raises(DatasetError) as got:
            load_on_engine(duck, root)
        assert str(got.value) == str(want.value)


# ---------------------------------------------------------------------------------
# Card numbers
# ---------------------------------------------------------------------------------
def everything_fetched(engine, ds) -> list[str]:
    """Every string the engine path exposes: all tables in the engine, frames, notes, repr."""
    texts = [repr(ds), ds.summary(), *ds.notes]
    frames = [engine.fetch(f"SELECT * FROM {n}") for n in ds.tables]
    frames += [engine.fetch(f"SELECT * FROM src_{n}") for n in ds.tables]
    frames += [f for f in (ds.merchants, ds.terminals, ds.complaints, ds.rejected) if f is not None]
    for df in frames:
        texts += [str(c) for c in df.columns] + [df.to_string()]
        texts += [str(v) for v in df.astype(object).to_numpy().ravel()]
    return texts


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pan=luhn_pans(), sep=st.sampled_from(["", " ", "-"]), prefix=st.sampled_from(PREFIXES),
       suffix=st.sampled_from(SUFFIXES))
def test_full_pan_never_reaches_the_engine_tables_or_results(tmp_path, pan, sep, prefix, suffix):
    root = write_raw(planted_tables(pan, f"{prefix}{grouped(pan, sep)}{suffix}"), tmp_path / "ds", "parquet")
    with DuckDBEngine() as engine:
        got, _ = assert_same_as_loader(engine, root)
        assert len(got.rejected) == 3
        assert_absent(pan, everything_fetched(engine, got))
        masked = engine.fetch("SELECT card_number FROM transactions")["card_number"].iloc[0]
        assert masked == pan[:6] + "*" * (len(pan) - 10) + pan[-4:]


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pan=luhn_pans())
def test_pan_is_not_in_engine_error_messages(tmp_path, pan):
    root = write_raw(planted_tables(pan, pan), tmp_path / "err", "parquet")
    path = root / "transactions.parquet"
    good = pd.read_parquet(path)
    with DuckDBEngine() as engine:
        for frame in (good.rename(columns={"memo": f"track2_{pan}"}),
                      good.assign(memo=f"{pan}=2512101")):
            frame.to_parquet(path, index=False)
            with pytest.raises(DatasetError) as err:
                load_on_engine(engine, root)
            assert_absent(pan, [str(err.value), repr(err.value.args), str(err.value.column)])


def test_card_tokens_follow_the_key_argument_then_the_environment(duck, tmp_path, monkeypatch):
    import hashlib
    import hmac

    root = typed_dataset(tmp_path / "ds")

    def tokens(**kw):
        load_on_engine(duck, root, **kw)
        return duck.fetch("SELECT txn_id, card_token FROM transactions ORDER BY txn_id")["card_token"]

    expected = hmac.new(KEY, b"4111111111111111", hashlib.sha256).hexdigest()[:16]
    assert tokens(key=KEY).iloc[0] == expected
    monkeypatch.setenv(KEY_ENV, "unit-test-key")
    from_env = hmac.new(b"unit-test-key", b"4111111111111111", hashlib.sha256).hexdigest()[:16]
    assert tokens().iloc[0] == from_env
    assert tokens().iloc[1] == from_env  # "4111 1111 1111 1111" links to the same card
    long_key = b"k" * 100  # longer than SHA-256's block: hashed first (RFC 2104)
    assert tokens(key=long_key).iloc[0] == hmac.new(long_key, b"4111111111111111",
                                                    hashlib.sha256).hexdigest()[:16]
    monkeypatch.delenv(KEY_ENV)
    assert_same_as_loader(duck, root, key=None)  # a random key per run, the loader's


# ---------------------------------------------------------------------------------
# Out of core
# ---------------------------------------------------------------------------------
def test_the_input_is_never_read_whole_into_memory(duck, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the engine path read a whole table")

    monkeypatch.setattr(pq, "read_table", refuse)
    monkeypatch.setattr("analysis.engine.load.load_dataset", refuse)
    got = load_on_engine(duck, CASE)
    assert duck.count("transactions") == 276_884 and got.rejected.empty


# The child's own high-water mark: VmHWM belongs to the address space made at exec, whereas
# ru_maxrss also keeps the parent's resident size when the child was started by vfork (as
# subprocess does) - late in a long pytest session that is the test runner's, not the loader's.
PEAK_SCRIPT = """
import json, re, resource, sys
from pathlib import Path
from analysis.engine import DuckDBEngine
from analysis.engine.load import load_on_engine
with DuckDBEngine(memory_limit="{limit}", threads=2) as eng:
    ds = load_on_engine(eng, sys.argv[1])
    n = eng.count("transactions")
status = Path("/proc/self/status")
hwm = re.search(r"VmHWM:\\s+(\\d+) kB", status.read_text()) if status.exists() else None
peak_kb = int(hwm.group(1)) if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"rows": n, "peak_mb": peak_kb / 1024}}))
"""


def test_peak_memory_stays_near_the_engine_limit(tmp_path):
    """1.1M transactions (the case study four times over) under a 300 MB DuckDB limit."""
    root = tmp_path / "big"
    root.mkdir()
    for name in ("merchants", "terminals"):
        (root / f"{name}.parquet").write_bytes((Path(CASE) / f"{name}.parquet").read_bytes())
    tx = pq.read_table(Path(CASE) / "transactions.parquet")
    with pq.ParquetWriter(root / "transactions.parquet", tx.schema) as writer:
        for k in range(4):
            suffix = pa.scalar(f"-{k}", pa.large_string())
            ids = pc.binary_join_element_wise(tx.column("txn_id"), suffix, pa.scalar("", pa.large_string()))
            writer.write_table(tx.set_column(0, "txn_id", ids), row_group_size=100_000)
    del tx
    out = subprocess.run([sys.executable, "-c", PEAK_SCRIPT.format(limit="300MB"), str(root)],
                         capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["rows"] == 4 * 276_884
    # the interpreter with pandas, pyarrow and DuckDB loaded is ~250 MB; the data is ~1 GB in pandas
    assert result["peak_mb"] < 900, result
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss > 0


# ---------------------------------------------------------------------------------
# Spark local mode
# ---------------------------------------------------------------------------------
def test_spark_equals_the_loader_on_the_case_study_and_bad_rows(spark_engine, tmp_path):
    assert_same_as_loader(spark_engine, CASE)
    assert_same_as_loader(spark_engine, typed_dataset(tmp_path / "typed"))
    assert_same_as_loader(spark_engine, text_dataset(tmp_path / "text"))
