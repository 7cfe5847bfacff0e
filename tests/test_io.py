"""analysis.io: loading contract datasets (validation, masking, typing) and writing them.

Datasets are written by hand as CSV text so every expected value below is read
off the text of the test, not off the loader's output.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analysis.contract import TABLES
from analysis.exceptions import DatasetError
from analysis.io import Dataset, load_dataset, save_rejected, write_tables

KEY = b"test-key"
SHANGHAI = "Asia/Shanghai"
DEFAULT_STR = pd.Series(["x"]).dtype  # pandas' default string dtype

MERCHANTS = """\
merchant_id,name,mcc,latitude,longitude,district,settlement_cycle
M001,浦东小吃店,5812,31.2304,121.4737,浦东新区,T1
M002,Corner Shop,5411,31.1000,121.5000,,
M003,Tea House,5814,31.3000,121.4000,静安区,D0
"""
TERMINALS = """\
terminal_id,merchant_id,model,firmware,connection,network_segment
10230017,M001,PAX-A920,3.2.1,4g,CT-PD-0231
10230018,M002,PAX-A920,3.2.1,broadband,CU-XH-0102
10230019,M003,NEW-9220,1.0.4,wifi,CT-PD-0231
"""
TRANSACTIONS = """\
txn_id,terminal_id,merchant_id,timestamp,txn_type,amount,card_number,response_code,latency_ms,reversal,reversal_reason
000101,10230017,M001,2025-03-03T10:15:00+08:00,purchase,128.50,4111111111111111,00,230,none,
000102,10230018,M002,2025-03-03T02:20:00Z,transfer,5000,5500000000000004,91,,failed,98
000103,10230019,M003,2025-03-04T09:00:00+08:00,purchase,99.999,6222021234567890123,00,180,none,
"""
SETTLEMENTS = """\
txn_id,cleared_date,settled_amount,credit_status,credited_at,return_reason
000101,2025-03-03,128.50,credited,2025-03-04T09:00:00+08:00,
000103,2025-03-04,100.00,pending,,
"""
BASE = {
    "merchants": MERCHANTS,
    "terminals": TERMINALS,
    "transactions": TRANSACTIONS,
    "settlements": SETTLEMENTS,
}
#: Line of the first row appended to a base table (header = line 1, 3 rows each).
NEXT_LINE = {"merchants": 5, "terminals": 5, "transactions": 5, "settlements": 4}
GOOD_TXN = "000199,10230017,M001,2025-03-05T11:00:00+08:00,purchase,10.00,4111111111111111,00,200,none,"


def write_dataset(root: Path, tables: dict[str, str | None] | None = None, **changes) -> Path:
    """Write BASE (updated by ``tables``/``changes``; None drops a table) as CSV files."""
    root.mkdir(parents=True, exist_ok=True)
    merged = {**BASE, **(tables or {}), **changes}
    for name, text in merged.items():
        if text is not None:
            (root / f"{name}.csv").write_text(text, encoding="utf-8")
    return root


def with_rows(name: str, *rows: str) -> dict[str, str]:
    """BASE[name] with extra CSV lines appended."""
    return {name: BASE[name] + "".join(r + "\n" for r in rows)}


def rejected_of(ds: Dataset, table: str) -> pd.DataFrame:
    return ds.rejected[ds.rejected["table"] == table].reset_index(drop=True)


def counts(ds: Dataset, table: str) -> tuple[int, int, int]:
    row = ds.accounting.set_index("table").loc[table]
    return int(row["read"]), int(row["used"]), int(row["rejected"])


def load_with(tmp_path: Path, **tables: str) -> Dataset:
    return load_dataset(write_dataset(tmp_path / "ds", tables), key=KEY)


def only_rejection(ds: Dataset, table: str) -> pd.Series:
    rej = rejected_of(ds, table)
    assert len(rej) == 1, rej
    return rej.iloc[0]


# ---------------------------------------------------------------------------------
# A valid dataset
# ---------------------------------------------------------------------------------
def test_valid_dataset_loads_typed_and_accounted(tmp_path):
    ds = load_dataset(write_dataset(tmp_path), key=KEY)

    assert counts(ds, "merchants") == (3, 3, 0)
    assert counts(ds, "transactions") == (3, 3, 0)
    assert counts(ds, "settlements") == (2, 2, 0)
    assert ds.rejected.empty
    assert list(ds.rejected.columns) == ["table", "file", "line", "column", "value", "reason", "row"]
    for name in ("merchants", "terminals", "settlements"):
        assert list(ds.table(name).columns) == list(TABLES[name].column_names)
    assert list(ds.transactions.columns) == [*TABLES["transactions"].column_names, "card_token"]

    t = ds.transactions
    assert t["txn_id"].tolist() == ["000101", "000102", "000103"]  # leading zeros kept
    assert t["txn_id"].dtype == DEFAULT_STR and t["card_number"].dtype == DEFAULT_STR
    assert isinstance(t["timestamp"].dtype, pd.DatetimeTZDtype)
    assert str(t["timestamp"].dt.tz) == SHANGHAI
    # 02:20Z is 10:20 in Shanghai (UTC+8)
    assert t["timestamp"][1] == pd.Timestamp("2025-03-03 10:20", tz=SHANGHAI)
    assert t["timestamp"][0] == pd.Timestamp("2025-03-03 02:15", tz="UTC")
    assert t["amount"].dtype == "float64"
    assert t["amount"].tolist() == [128.5, 5000.0, 100.0]  # 99.999 rounds to 100.00
    assert t["latency_ms"].dtype == "Int64"
    assert t["latency_ms"][0] == 230 and pd.isna(t["latency_ms"][1])
    assert t["card_number"].tolist() == ["411111******1111", "550000******0004", "622202*********0123"]
    assert t["card_token"].str.fullmatch(r"[0-9a-f]{16}").all()
    assert t["reversal_reason"].tolist()[1] == "98" and pd.isna(t["reversal_reason"][0])
    assert t["stan"].isna().all() and t["stan"].dtype == DEFAULT_STR  # absent optional column

    m = ds.merchants
    assert m["mcc"].tolist() == ["5812", "5411", "5814"]
    assert m["settlement_cycle"].tolist() == ["T1", "T1", "D0"]  # empty -> default T1
    assert pd.isna(m["district"][1])
    assert m["latitude"].dtype == "float64"

    s = ds.settlements
    assert s["cleared_date"].dtype.kind == "M" and not isinstance(s["cleared_date"].dtype, pd.DatetimeTZDtype)
    assert s["cleared_date"].tolist() == [pd.Timestamp("2025-03-03"), pd.Timestamp("2025-03-04")]
    assert pd.isna(s["credited_at"][1])

    notes = " | ".join(ds.notes)
    assert "1 empty settlement_cycle values set to the default T1" in notes
    assert "no terminal_events table" in notes and "no complaints table" in notes
    assert "no interventions table" in notes


def test_summary_repr_and_progress(tmp_path):
    ds = load_dataset(write_dataset(tmp_path, with_rows("transactions", GOOD_TXN.replace("10.00", "-1"))),
                      key=KEY, progress=True)
    text = ds.summary()
    assert "transactions.csv" in text and "rejected" in text
    assert re.search(r"transactions\s+transactions\.csv\s+4\s+3\s+1", text)
    assert "transactions.amount: 1" in text
    assert "no complaints table" in text
    assert "transactions=3" in repr(ds) and "rejected=1" in repr(ds)


# ---------------------------------------------------------------------------------
# Round trips
# ---------------------------------------------------------------------------------
def raw_tables() -> dict[str, pd.DataFrame]:
    """The BASE dataset as raw frames (strings as in the files, full card numbers)."""
    return {
        name: pd.read_csv(pd.io.common.StringIO(text), dtype=str, keep_default_na=False)
        .replace("", None)
        for name, text in BASE.items()
    }


def test_csv_and_parquet_round_trip_give_equal_frames(tmp_path):
    tables = raw_tables()
    write_tables(tables, tmp_path / "csv", "csv")
    write_tables(tables, tmp_path / "pq", "parquet")
    from_csv = load_dataset(tmp_path / "csv", key=KEY)
    from_pq = load_dataset(tmp_path / "pq", key=KEY)
    from_text = load_dataset(write_dataset(tmp_path / "text"), key=KEY)
    for name in BASE:
        pd.testing.assert_frame_equal(from_csv.table(name), from_pq.table(name))
        pd.testing.assert_frame_equal(from_csv.table(name), from_text.table(name))


def test_loaded_frames_write_back_and_load_unchanged(tmp_path):
    first = load_dataset(write_dataset(tmp_path / "a"), key=KEY)
    for fmt in ("csv", "parquet"):
        write_tables({n: first.table(n) for n in BASE}, tmp_path / fmt, fmt)
        again = load_dataset(tmp_path / fmt, key=KEY)
        assert again.rejected.empty
        for name in BASE:
            a, b = first.table(name), again.table(name)
            if name == "transactions":
                # the file now holds masked numbers: tokens differ but still link the same rows
                assert a["card_token"].factorize()[0].tolist() == b["card_token"].factorize()[0].tolist()
                a, b = a.drop(columns="card_token"), b.drop(columns="card_token")
            pd.testing.assert_frame_equal(a, b)


def test_write_tables_csv_times_have_offset(tmp_path):
    frame = pd.DataFrame({
        "change_id": ["C1", "C2"],
        "applied_at": pd.to_datetime(["2025-03-03 02:00:00Z", None], utc=True),
        "scope_type": ["all", "all"], "scope_value": ["*", "*"], "kind": ["other", "other"],
    })
    (path,) = write_tables({"interventions": frame}, tmp_path, "csv")
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[1].startswith("C1,2025-03-03T10:00:00+08:00,")
    assert lines[2].startswith("C2,,")


def test_parquet_zone_decimal_and_date_variants_are_accepted(tmp_path):
    """Naive timestamps (= Shanghai), decimal money, date32 or string dates."""
    from decimal import Decimal

    reference = load_dataset(write_dataset(tmp_path / "csv"), key=KEY)
    root = write_dataset(tmp_path / "pq", transactions=None, settlements=None)
    tx = pd.read_csv(pd.io.common.StringIO(TRANSACTIONS), dtype=str, keep_default_na=False)
    wall = ["2025-03-03 10:15:00", "2025-03-03 10:20:00", "2025-03-04 09:00:00"]
    pq.write_table(pa.table({
        **{c: pa.array(tx[c].replace("", None)) for c in tx.columns
           if c not in ("timestamp", "amount", "latency_ms")},
        "timestamp": pa.array(pd.to_datetime(wall), pa.timestamp("ms")),  # no zone
        "amount": pa.array([Decimal("128.50"), Decimal("5000.00"), Decimal("99.999")],
                           pa.decimal128(12, 3)),
        "latency_ms": pa.array([230, None, 180], pa.int32()),
    }), root / "transactions.parquet")
    pq.write_table(pa.table({
        "txn_id": ["000101", "000103"],
        "cleared_date": pa.array(pd.to_datetime(["2025-03-03", "2025-03-04"]).date, pa.date32()),
        "settled_amount": [128.5, 100.0],
        "credit_status": ["credited", "pending"],
        "credited_at": ["2025-03-04T09:00:00+08:00", None],  # strings are fine too
        "return_reason": pa.array([None, None], pa.string()),
    }), root / "settlements.parquet")
    ds = load_dataset(root, key=KEY)
    assert ds.rejected.empty
    for name in ("transactions", "settlements"):
        pd.testing.assert_frame_equal(ds.table(name), reference.table(name), check_like=True)
    assert any("stored without a time zone" in n and "3 values" in n for n in ds.notes)


def test_parquet_rejected_rows_are_numbered_like_csv(tmp_path):
    root = write_dataset(tmp_path, transactions=None)
    tx = pd.read_csv(pd.io.common.StringIO(TRANSACTIONS), dtype=str, keep_default_na=False)
    tx.loc[1, "amount"] = "-5"  # second data row: CSV line 3
    tx.to_parquet(root / "transactions.parquet", index=False)
    row = only_rejection(load_dataset(root, key=KEY), "transactions")
    assert (row["file"], row["line"], row["column"]) == ("transactions.parquet", 3, "amount")


# ---------------------------------------------------------------------------------
# Whole-file problems
# ---------------------------------------------------------------------------------
def test_missing_required_column_raises_with_file_column_and_found(tmp_path):
    text = TRANSACTIONS.replace(",amount,", ",amt,")
    with pytest.raises(DatasetError) as err:
        load_with(tmp_path, transactions=text)
    msg = str(err.value)
    assert "transactions.csv" in msg and "amount" in msg
    assert "amt" in msg and "txn_id" in msg  # lists what was found
    assert err.value.column == "amount"


def test_missing_required_table_names_directory_and_files(tmp_path):
    root = write_dataset(tmp_path / "ds", terminals=None)
    with pytest.raises(DatasetError) as err:
        load_dataset(root)
    msg = str(err.value)
    assert "terminals.csv or terminals.parquet" in msg and str(root) in msg


def test_both_csv_and_parquet_of_one_table_raise(tmp_path):
    root = write_dataset(tmp_path)
    raw_tables()["merchants"].to_parquet(root / "merchants.parquet")
    with pytest.raises(DatasetError, match="keep one"):
        load_dataset(root)


def test_missing_directory_raises(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(tmp_path / "nope")


def test_ragged_row_raises_naming_the_line(tmp_path):
    text = TRANSACTIONS + GOOD_TXN + ",surplus\n"  # line 5 has one field too many
    with pytest.raises(DatasetError) as err:
        load_with(tmp_path, transactions=text)
    assert err.value.line == 5
    msg = str(err.value)
    assert "transactions.csv" in msg and "line 5" in msg and "12 fields" in msg and "11" in msg


def test_short_row_after_multiline_field_names_the_physical_line(tmp_path):
    text = (TRANSACTIONS.replace("reversal_reason\n", "reversal_reason,note\n")
            .replace(",\n", ",,\n").replace(",98\n", ",98,\n"))
    text += GOOD_TXN + ',"two\nlines"\n' + "000200,10230017,M001\n"  # record at line 5-6, bad at 7
    with pytest.raises(DatasetError) as err:
        load_with(tmp_path, transactions=text)
    assert err.value.line == 7 and "3 fields" in str(err.value)


def test_rejected_line_numbers_follow_multiline_fields(tmp_path):
    complaints = (
        "ticket_id,opened_at,merchant_id,kind,amount,txn_time,description\n"
        'C1,2025-03-05T09:00:00+08:00,M001,unsettled,128.50,,"第一行\n第二行"\n'
        "C2,2025-03-05T09:30:00+08:00,M001,unsettled,-3,,bad amount\n"
    )
    ds = load_with(tmp_path, complaints=complaints)
    row = only_rejection(ds, "complaints")
    assert (row["line"], row["column"]) == (4, "amount")
    assert ds.complaints["description"].tolist() == ["第一行\n第二行"]


def test_non_utf8_bytes_raise_with_line_and_advice(tmp_path):
    root = write_dataset(tmp_path)
    gbk = (MERCHANTS + "M004,杭州面馆,5812,30.2,120.1,,\n").encode("gbk")
    (root / "merchants.csv").write_bytes(gbk)
    with pytest.raises(DatasetError) as err:
        load_dataset(root)
    msg = str(err.value)
    assert "merchants.csv" in msg and "UTF-8" in msg and "re-save" in msg.lower()
    assert err.value.line == 2  # the first Chinese name is on line 2


def test_utf8_with_bom_is_accepted(tmp_path):
    root = write_dataset(tmp_path)
    (root / "merchants.csv").write_bytes(b"\xef\xbb\xbf" + MERCHANTS.encode("utf-8"))
    ds = load_dataset(root)
    assert ds.merchants["merchant_id"].tolist() == ["M001", "M002", "M003"]


def with_column(text: str, name: str, values: list[str]) -> str:
    """CSV text with one more column (one value per data row)."""
    header, *rows = text.splitlines()
    assert len(rows) == len(values)
    return "\n".join([f"{header},{name}"] + [f"{r},{v}" for r, v in zip(rows, values)]) + "\n"


@pytest.mark.parametrize("column", ["track2", "cvv2", "pin_block", "Track_Data"])
def test_sensitive_column_name_is_refused(tmp_path, column):
    with pytest.raises(DatasetError) as err:
        load_with(tmp_path, transactions=with_column(TRANSACTIONS, column, ["x", "y", "z"]))
    assert "transactions.csv" in str(err.value) and column in str(err.value)
    assert "refused" in str(err.value) and err.value.column == column


def test_track2_values_in_an_innocent_column_are_refused(tmp_path):
    memo = ["ok", "4111111111111111=25121010000012300000", "ok"]
    with pytest.raises(DatasetError) as err:
        load_with(tmp_path, transactions=with_column(TRANSACTIONS, "memo", memo))
    assert "memo" in str(err.value) and "track 2" in str(err.value)
    assert "4111111111111111" not in str(err.value)


def test_unreadable_parquet_raises(tmp_path):
    root = write_dataset(tmp_path, transactions=None)
    (root / "transactions.parquet").write_bytes(b"this is not parquet at all")
    with pytest.raises(DatasetError) as err:
        load_dataset(root)
    assert "transactions.parquet" in str(err.value) and "Parquet" in str(err.value)


def test_parquet_column_of_unusable_type_raises(tmp_path):
    root = write_dataset(tmp_path, transactions=None)
    tx = pd.read_csv(pd.io.common.StringIO(TRANSACTIONS), dtype=str)
    tx["amount"] = [True, False, True]
    tx.to_parquet(root / "transactions.parquet")
    with pytest.raises(DatasetError) as err:
        load_dataset(root)
    assert err.value.column == "amount" and "bool" in str(err.value)


# ---------------------------------------------------------------------------------
# Row-level problems: the row is rejected, the rest is used
# ---------------------------------------------------------------------------------
def test_wrong_type_rejects_the_row_with_reason(tmp_path):
    ds = load_with(tmp_path, **with_rows("transactions", GOOD_TXN.replace("10.00", "ten")))
    row = only_rejection(ds, "transactions")
    assert (row["file"], row["line"], row["column"], row["value"]) == ("transactions.csv", 5, "amount", "ten")
    assert "number" in row["reason"] and "'ten'" in row["reason"]
    assert json.loads(row["row"])["txn_id"] == "000199"
    assert counts(ds, "transactions") == (4, 3, 1)


def test_non_integer_latency_is_rejected(tmp_path):
    ds = load_with(tmp_path, **with_rows("transactions", GOOD_TXN.replace(",200,", ",2.5,")))
    row = only_rejection(ds, "transactions")
    assert row["column"] == "latency_ms" and "whole number" in row["reason"]


def test_latitude_999_is_rejected(tmp_path):
    ds = load_with(tmp_path, **with_rows("merchants", "M009,Far Away,5411,999,121.5,,"))
    row = only_rejection(ds, "merchants")
    assert (row["line"], row["column"]) == (5, "latitude")
    assert "out of range" in row["reason"] and "-90" in row["reason"] and "90" in row["reason"]
    assert "M009" not in ds.merchants["merchant_id"].tolist()


@pytest.mark.parametrize("mcc", ["541", "54111", "54a1"])
def test_mcc_must_be_four_digits(tmp_path, mcc):
    ds = load_with(tmp_path, **with_rows("merchants", f"M009,Shop,{mcc},31.0,121.0,,"))
    row = only_rejection(ds, "merchants")
    assert row["column"] == "mcc" and "4 digits" in row["reason"]


def test_value_not_allowed_is_rejected(tmp_path):
    ds = load_with(tmp_path, **with_rows("terminals", "10230020,M001,PAX,1.0,5g,CT-PD-0231"))
    row = only_rejection(ds, "terminals")
    assert row["column"] == "connection" and "'5g' is not one of 4g, broadband, wifi, dialup" == row["reason"]


def test_empty_required_value_is_rejected(tmp_path):
    ds = load_with(tmp_path, **with_rows("transactions", GOOD_TXN.replace("4111111111111111", "")))
    row = only_rejection(ds, "transactions")
    assert row["column"] == "card_number" and "required" in row["reason"]


def test_unknown_terminal_is_rejected(tmp_path):
    ds = load_with(tmp_path, **with_rows("transactions", GOOD_TXN.replace("10230017", "99999999")))
    row = only_rejection(ds, "transactions")
    assert (row["line"], row["column"], row["value"]) == (5, "terminal_id", "99999999")
    assert "not in terminals.csv" in row["reason"]


def test_terminal_of_another_merchant_is_rejected(tmp_path):
    ds = load_with(tmp_path, **with_rows("transactions", GOOD_TXN.replace(",M001,", ",M002,")))
    row = only_rejection(ds, "transactions")
    assert row["column"] == "merchant_id"
    assert row["reason"] == "terminal '10230017' belongs to merchant 'M001', not 'M002'"


def test_duplicate_id_keeps_the_first_and_rejects_the_later(tmp_path):
    dup = TRANSACTIONS.splitlines()[1].replace("128.50", "777.00")  # same txn_id 000101
    ds = load_with(tmp_path, **with_rows("transactions", dup))
    row = only_rejection(ds, "transactions")
    assert (row["line"], row["column"], row["value"]) == (5, "txn_id", "000101")
    assert "duplicate" in row["reason"] and "line 2" in row["reason"]
    kept = ds.transactions.set_index("txn_id").loc["000101", "amount"]
    assert kept == 128.5


def test_duplicate_of_a_rejected_row_is_used(tmp_path):
    bad = GOOD_TXN.replace("10.00", "-1")
    ds = load_with(tmp_path, **with_rows("transactions", bad, GOOD_TXN))
    row = only_rejection(ds, "transactions")
    assert (row["line"], row["column"]) == (5, "amount")
    assert "000199" in ds.transactions["txn_id"].tolist()


@pytest.mark.parametrize("amount", ["-12.00", "0", "0.00"])
def test_non_positive_amount_is_rejected(tmp_path, amount):
    ds = load_with(tmp_path, **with_rows("transactions", GOOD_TXN.replace("10.00", amount)))
    row = only_rejection(ds, "transactions")
    assert row["column"] == "amount" and "> 0" in row["reason"]


def test_negative_latency_is_rejected(tmp_path):
    ds = load_with(tmp_path, **with_rows("transactions", GOOD_TXN.replace(",200,", ",-4,")))
    assert only_rejection(ds, "transactions")["column"] == "latency_ms"


@pytest.mark.parametrize("stamp", ["yesterday", "2025-02-30T10:00:00+08:00", "2025-03-05T25:00:00"])
def test_unparseable_timestamp_is_rejected(tmp_path, stamp):
    ds = load_with(tmp_path, **with_rows("transactions", GOOD_TXN.replace("2025-03-05T11:00:00+08:00", stamp)))
    row = only_rejection(ds, "transactions")
    assert (row["column"], row["value"]) == ("timestamp", stamp)
    assert "ISO 8601" in row["reason"]


def test_naive_timestamp_is_read_as_shanghai_time(tmp_path):
    ds = load_with(tmp_path, **with_rows("transactions", GOOD_TXN.replace("2025-03-05T11:00:00+08:00",
                                                                          "2025-03-05 11:00:00")))
    assert ds.rejected.empty
    t = ds.transactions.set_index("txn_id")["timestamp"]
    assert t["000199"] == pd.Timestamp("2025-03-05 03:00:00", tz="UTC")  # 11:00 at UTC+8
    assert any("1 of 4 timestamp values had no UTC offset" in n for n in ds.notes)


def test_bad_date_is_rejected(tmp_path):
    ds = load_with(tmp_path, **with_rows("settlements", "000102,03/04/2025,5000,pending,,"))
    row = only_rejection(ds, "settlements")
    assert (row["line"], row["column"]) == (4, "cleared_date") and "YYYY-MM-DD" in row["reason"]


def test_several_bad_columns_give_one_entry_naming_the_first(tmp_path):
    bad = GOOD_TXN.replace("purchase", "payment").replace("10.00", "abc")
    ds = load_with(tmp_path, **with_rows("transactions", bad))
    row = only_rejection(ds, "transactions")
    assert row["column"] == "txn_type"  # contract order: txn_type comes before amount
    assert "also amount" in row["reason"]


def test_settlement_of_unknown_transaction_is_rejected(tmp_path):
    ds = load_with(tmp_path, **with_rows("settlements", "009999,2025-03-04,1.00,pending,,"))
    row = only_rejection(ds, "settlements")
    assert row["column"] == "txn_id" and "not in transactions.csv" in row["reason"]


def test_settlement_links_to_the_used_one_of_two_rows_with_its_txn_id(tmp_path):
    bad, good = GOOD_TXN.replace("10.00", "-1"), GOOD_TXN  # same txn_id 000199, first rejected
    tables = {**with_rows("transactions", bad, good),
              **with_rows("settlements", "000199,2025-03-05,10.00,pending,,")}
    ds = load_with(tmp_path, **tables)
    assert only_rejection(ds, "transactions")["line"] == 5
    assert counts(ds, "settlements") == (3, 3, 0)


@pytest.mark.parametrize("stretch", [1, 2, 1_000])
def test_references_to_increasing_ids_looked_up_in_stretches(tmp_path, monkeypatch, stretch):
    """Ids in increasing order are looked up a stretch at a time; the result is the same."""
    import analysis.io

    monkeypatch.setattr(analysis.io, "_STRETCH", stretch)
    transactions = with_rows("transactions", GOOD_TXN.replace("10.00", "-1"))  # 000199 rejected
    settlements = with_rows("settlements", "000102,2025-03-04,5000,pending,,",
                            "000150,2025-03-04,1.00,pending,,", "000199,2025-03-05,10.00,pending,,",
                            "000102,2025-03-05,5000,pending,,")
    ds = load_with(tmp_path, **transactions, **settlements)
    rej = rejected_of(ds, "settlements")
    assert rej["line"].tolist() == [5, 6, 7]
    assert "not in transactions.csv" in rej["reason"][0]
    assert "was rejected (transactions.csv line 5)" in rej["reason"][1]
    assert "duplicate txn_id '000102'" in rej["reason"][2] and "line 4" in rej["reason"][2]
    assert ds.settlements["txn_id"].tolist() == ["000101", "000103", "000102"]


def test_track2_values_in_a_parquet_column_are_refused(tmp_path):
    root = write_dataset(tmp_path, transactions=None)
    tx = pd.read_csv(pd.io.common.StringIO(TRANSACTIONS), dtype=str, keep_default_na=False)
    tx["memo"] = ["ok", "4111111111111111D25121010000012300000", None]
    tx.to_parquet(root / "transactions.parquet", index=False)
    with pytest.raises(DatasetError) as err:
        load_dataset(root, key=KEY)
    assert err.value.column == "memo" and "track 2" in str(err.value)


def test_events_and_complaints_references(tmp_path):
    events = ("terminal_id,timestamp,event,detail\n"
              "10230017,2025-03-03T10:14:00+08:00,timeout,\n"
              "55555555,2025-03-03T10:14:00+08:00,timeout,\n")
    complaints = ("ticket_id,opened_at,merchant_id,kind,amount\n"
                  "C1,2025-03-05T09:00:00+08:00,M001,unsettled,128.50\n"
                  "C2,2025-03-05T09:00:00+08:00,M404,unsettled,10\n")
    ds = load_with(tmp_path, terminal_events=events, complaints=complaints)
    assert only_rejection(ds, "terminal_events")["line"] == 3
    row = only_rejection(ds, "complaints")
    assert (row["line"], row["column"]) == (3, "merchant_id")
    assert "complaints.csv" == row["file"]


def test_cascade_rejects_transactions_of_a_rejected_terminal(tmp_path):
    terminals = TERMINALS.replace("10230019,M003,NEW-9220,1.0.4,wifi", "10230019,M003,NEW-9220,1.0.4,satellite")
    settlements = SETTLEMENTS  # settles 000103, made by the rejected terminal
    ds = load_with(tmp_path, terminals=terminals, settlements=settlements)
    assert only_rejection(ds, "terminals")["line"] == 4
    txn = only_rejection(ds, "transactions")
    assert (txn["line"], txn["column"]) == (4, "terminal_id")
    assert "rejected" in txn["reason"] and "terminals.csv line 4" in txn["reason"]
    stl = only_rejection(ds, "settlements")
    assert stl["value"] == "000103" and "transactions.csv line 4" in stl["reason"]
    assert counts(ds, "settlements") == (2, 1, 1)


def test_cascade_from_a_rejected_merchant(tmp_path):
    merchants = MERCHANTS.replace("M002,Corner Shop,5411,31.1000", "M002,Corner Shop,5411,-91")
    ds = load_with(tmp_path, merchants=merchants)
    assert only_rejection(ds, "terminals")["value"] == "M002"
    assert only_rejection(ds, "transactions")["line"] == 3


def test_missing_optional_table_gives_none_and_a_note(tmp_path):
    ds = load_with(tmp_path, settlements=None)
    assert ds.settlements is None and not ds.has("settlements")
    assert ds.complaints is None
    note = next(n for n in ds.notes if n.startswith("no settlements table"))
    assert "crediting cannot be checked" in note and "not cleared" in note
    assert "settlements" not in ds.accounting["table"].tolist()


def test_optional_columns_absent_are_added(tmp_path):
    merchants = "merchant_id,name,mcc,latitude,longitude\nM001,A,5812,31.2,121.4\n" \
                "M002,B,5411,31.1,121.5\nM003,C,5814,31.3,121.4\n"
    ds = load_with(tmp_path, merchants=merchants)
    assert ds.merchants["settlement_cycle"].tolist() == ["T1"] * 3
    assert ds.merchants["district"].isna().all()
    assert any("no settlement_cycle column" in n for n in ds.notes)
    assert any("no optional column(s) district" in n for n in ds.notes)


def test_extra_columns_are_dropped_with_a_note(tmp_path):
    merchants = with_column(MERCHANTS, "owner_phone", ["13800138000"] * 3)
    ds = load_with(tmp_path, merchants=merchants)
    assert "owner_phone" not in ds.merchants.columns
    assert any("owner_phone" in n and "ignored" in n for n in ds.notes)


def test_header_only_file_gives_an_empty_table(tmp_path):
    ds = load_with(tmp_path, settlements=SETTLEMENTS.splitlines()[0] + "\n")
    assert ds.settlements.empty and list(ds.settlements.columns) == list(TABLES["settlements"].column_names)
    assert counts(ds, "settlements") == (0, 0, 0)


def test_save_rejected_writes_one_file_per_table(tmp_path):
    ds = load_with(tmp_path, **with_rows("transactions", GOOD_TXN.replace("10.00", "-1")))
    paths = save_rejected(ds, tmp_path / "out" / "rejected")
    assert [p.name for p in paths] == ["transactions.csv"]
    saved = pd.read_csv(paths[0], dtype=str)
    assert saved["line"].tolist() == ["5"] and saved["column"].tolist() == ["amount"]
    assert "4111111111111111" not in paths[0].read_text(encoding="utf-8")


# ---------------------------------------------------------------------------------
# Property: every row is accounted for exactly once
# ---------------------------------------------------------------------------------
FAULTS = {
    "amount_text": ("amount", "abc"),
    "amount_negative": ("amount", "-3"),
    "bad_time": ("timestamp", "2025-02-30T10:00:00"),
    "unknown_terminal": ("terminal_id", "99999999"),
    "wrong_merchant": ("merchant_id", "M002"),
    "bad_type": ("txn_type", "payment"),
    "empty_card": ("card_number", ""),
    "latency_negative": ("latency_ms", "-5"),
    "bad_reversal": ("reversal", "maybe"),
}
TXN_COLUMNS = TRANSACTIONS.splitlines()[0].split(",")
row_specs = st.lists(
    st.tuples(st.sets(st.sampled_from(sorted(FAULTS)), max_size=2), st.booleans()),
    max_size=25,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(specs=row_specs)
def test_every_row_is_used_or_rejected_exactly_once(tmp_path, specs):
    good = dict(zip(TXN_COLUMNS, GOOD_TXN.split(",")))
    lines, invalid_lines, valid_ids = [], set(), []
    for i, (faults, duplicate) in enumerate(specs):
        row = {**good, "txn_id": f"X{i:04d}"}
        if duplicate:
            row["txn_id"] = "000101"  # a valid row of the base table
        for f in faults:
            col, value = FAULTS[f]
            row[col] = value
        line = NEXT_LINE["transactions"] + i
        if faults or duplicate:
            invalid_lines.add(line)
        else:
            valid_ids.append(row["txn_id"])
        lines.append(",".join(row[c] for c in TXN_COLUMNS))
    root = write_dataset(tmp_path / "prop", with_rows("transactions", *lines))
    ds = load_dataset(root, key=KEY)

    acc = ds.accounting
    assert (acc["read"] == acc["used"] + acc["rejected"]).all()
    n = 3 + len(specs)
    assert counts(ds, "transactions") == (n, n - len(invalid_lines), len(invalid_lines))
    rej = rejected_of(ds, "transactions")
    assert sorted(rej["line"]) == sorted(invalid_lines)  # each invalid row once
    assert ds.transactions["txn_id"].tolist() == ["000101", "000102", "000103", *valid_ids]


def test_csv_writer_handles_empty_and_all_missing_time_columns(tmp_path):
    from analysis.io import iso_times

    empty = pd.Series(pd.to_datetime([]).tz_localize("Asia/Shanghai"))
    assert iso_times(empty).tolist() == []
    missing = pd.Series(pd.to_datetime([None, None]).tz_localize("Asia/Shanghai"))
    assert iso_times(missing).isna().all()


def test_loading_leaves_arrows_default_memory_pool_as_it_was(tmp_path):
    from analysis.io import load_dataset

    before = pa.default_memory_pool().backend_name
    load_dataset(Path(__file__).resolve().parents[1] / "data" / "case_study")
    assert pa.default_memory_pool().backend_name == before
    with pytest.raises(Exception):
        load_dataset(tmp_path / "missing")
    assert pa.default_memory_pool().backend_name == before
