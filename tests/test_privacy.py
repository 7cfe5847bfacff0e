"""Card data never survives loading: masking, Luhn, keyed tokens, refused columns.

The property test plants a random Luhn-valid PAN everywhere a card number can
hide (card_number, payee_account, free text, an unknown column, rejected rows,
a file that fails) and checks the full number appears in nothing the loader
returns, writes or raises.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analysis.exceptions import DatasetError
from analysis.io import Dataset, load_dataset, save_rejected
from analysis.privacy import (
    KEY_ENV,
    holds_any_byte,
    luhn_valid,
    mask_pan,
    mask_pan_array,
    mask_pan_series,
    mask_text,
    protect_card_array,
)


def luhn_check_digit(body: str) -> str:
    """The digit that makes ``body + digit`` pass the Luhn check (independent of analysis)."""
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:  # doubled once the check digit is appended
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return str(-total % 10)


@st.composite
def luhn_pans(draw) -> str:
    """Random Luhn-valid PANs of 13 to 19 digits."""
    length = draw(st.integers(13, 19))
    body = draw(st.sampled_from("3456")) + draw(
        st.text("0123456789", min_size=length - 2, max_size=length - 2)
    )
    return body + luhn_check_digit(body)


def grouped(pan: str, sep: str, size: int = 4) -> str:
    return sep.join(pan[i:i + size] for i in range(0, len(pan), size)) if sep else pan


# ---------------------------------------------------------------------------------
# Unit tests of the primitives
# ---------------------------------------------------------------------------------
@pytest.mark.parametrize("number", ["79927398713", "4111111111111111", "5500000000000004",
                                    "378282246310005", "6011111111111117"])
def test_luhn_valid_known_numbers(number):
    assert luhn_valid(number)
    assert luhn_check_digit(number[:-1]) == number[-1]


@pytest.mark.parametrize("number", ["79927398710", "4111111111111112", "1234567812345678"])
def test_luhn_invalid_numbers(number):
    assert not luhn_valid(number)


@given(luhn_pans())
@settings(max_examples=100, deadline=None)
def test_generated_pans_are_luhn_valid_and_one_digit_breaks_them(pan):
    assert 13 <= len(pan) <= 19 and luhn_valid(pan)
    wrong = pan[:-1] + str((int(pan[-1]) + 1) % 10)
    assert not luhn_valid(wrong)


@pytest.mark.parametrize("value, masked", [
    ("4111111111111111", "411111******1111"),
    ("4111 1111 1111 1111", "411111******1111"),
    ("4111-1111-1111-1111", "411111******1111"),
    ("6222021234567890123", "622202*********0123"),
    ("411111******1111", "411111******1111"),  # already masked stays masked
    ("1234567", "***4567"),
])
def test_mask_pan_keeps_first_six_and_last_four(value, masked):
    assert mask_pan(value) == masked
    assert mask_pan_series(pd.Series([value])).tolist() == [masked]


def test_mask_pan_passes_missing_values():
    assert mask_pan(None) is None
    assert pd.isna(mask_pan_series(pd.Series(["4111111111111111", None])).tolist()[1])


@pytest.mark.parametrize("text, masked", [
    ("card 4111 1111 1111 1111 swiped twice", "card 411111******1111 swiped twice"),
    ("卡号4111-1111-1111-1111，请核实", "卡号411111******1111，请核实"),
    ("订单 1 4111111111111111", "订单 1 411111******1111"),  # a loose digit before the PAN
    ("order 1234567812345678 tel 13800138000", "order 1234567812345678 tel 13800138000"),
])
def test_mask_text_masks_luhn_valid_runs_only(text, masked):
    assert mask_text(text) == masked


# ---------------------------------------------------------------------------------
# Property: a planted PAN appears nowhere after loading
# ---------------------------------------------------------------------------------
PREFIXES = ["客户反映卡号", "刷卡未到账，卡号：", "card no. ", "金额 20 ", "持卡人称 ", ""]
SUFFIXES = ["，扣款两次。", " was charged twice", "。请核实", " (请回电)", ""]

MERCHANTS = pd.DataFrame({"merchant_id": ["M001"], "name": ["浦东小吃店"], "mcc": ["5812"],
                          "latitude": ["31.23"], "longitude": ["121.47"]})
TERMINALS = pd.DataFrame({"terminal_id": ["10230017"], "merchant_id": ["M001"], "model": ["PAX"],
                          "firmware": ["3.2"], "connection": ["4g"], "network_segment": ["CT-PD-0231"]})


def planted_tables(pan: str, text: str) -> dict[str, pd.DataFrame]:
    """Tables holding ``pan`` in every place a card number may hide, one row rejected each."""
    txn = {"terminal_id": "10230017", "merchant_id": "M001", "timestamp": "2025-03-03T10:15:00+08:00",
           "txn_type": "transfer", "card_number": pan, "response_code": "00", "latency_ms": "200",
           "reversal": "none", "payee_bank": text, "payee_account": pan, "memo": text}
    complaint = {"opened_at": "2025-03-05T09:00:00+08:00", "merchant_id": "M001",
                 "kind": "transfer_failed", "description": text, "note": pan}
    return {
        "merchants": MERCHANTS,
        "terminals": TERMINALS,
        "transactions": pd.DataFrame([
            {**txn, "txn_id": "T1", "amount": "100.00"},
            {**txn, "txn_id": "T2", "amount": "not money"},  # rejected: its raw row is kept
            {**txn, "txn_id": pan, "amount": "-1"},  # rejected, PAN even in the id
        ]),
        "complaints": pd.DataFrame([
            {**complaint, "ticket_id": "C1", "amount": "100"},
            {**complaint, "ticket_id": "C2", "amount": "0"},  # rejected
        ]),
    }


def write_raw(tables: dict[str, pd.DataFrame], root: Path, fmt: str) -> Path:
    """Write frames as they are (extra columns included), unlike ``write_tables``."""
    root.mkdir(parents=True, exist_ok=True)
    for name, df in tables.items():
        if fmt == "csv":
            df.to_csv(root / f"{name}.csv", index=False)
        else:
            df.to_parquet(root / f"{name}.parquet", index=False)
    return root


def everything_text(ds: Dataset, rejected_dir: Path) -> list[str]:
    """Every string the loader exposes: cells, column names, notes, repr, summary, files."""
    texts = [repr(ds), ds.summary(), *ds.notes]
    frames = [ds.table(n) for n in ("merchants", "terminals", "transactions", "complaints")]
    for df in [*frames, ds.rejected, ds.accounting]:
        texts += [str(c) for c in df.columns]
        texts += [str(v) for v in df.astype(object).to_numpy().ravel()]
        texts.append(df.to_string())
    texts += [p.read_text(encoding="utf-8") for p in save_rejected(ds, rejected_dir)]
    return texts


def assert_absent(pan: str, texts: list[str]) -> None:
    for t in texts:
        assert pan not in t
        assert pan not in t.replace(" ", "").replace("-", "")  # grouped forms too


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pan=luhn_pans(), sep=st.sampled_from(["", " ", "-"]), prefix=st.sampled_from(PREFIXES),
       suffix=st.sampled_from(SUFFIXES), fmt=st.sampled_from(["csv", "parquet"]))
def test_full_pan_never_survives_loading(tmp_path, pan, sep, prefix, suffix, fmt):
    text = f"{prefix}{grouped(pan, sep)}{suffix}"
    root = write_raw(planted_tables(pan, text), tmp_path / f"ds-{fmt}", fmt)
    ds = load_dataset(root)
    assert len(ds.transactions) == 1 and len(ds.complaints) == 1
    assert len(ds.rejected) == 3  # the planted rows did reach the rejected frame
    assert_absent(pan, everything_text(ds, tmp_path / f"rejected-{fmt}"))
    # the masked form keeps the first six and last four digits
    assert ds.transactions["card_number"].iloc[0] == pan[:6] + "*" * (len(pan) - 10) + pan[-4:]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pan=luhn_pans())
def test_pan_is_not_in_error_messages(tmp_path, pan):
    root = write_raw(planted_tables(pan, pan), tmp_path / "err", "csv")
    path = root / "transactions.csv"
    good = path.read_text(encoding="utf-8")

    path.write_text(good + f"T9,10230017,{pan},{pan}\n", encoding="utf-8")  # ragged
    with pytest.raises(DatasetError) as ragged:
        load_dataset(root)
    assert ragged.value.line == 5

    path.write_text(good.replace("memo", f"track2_{pan}"), encoding="utf-8")  # refused name
    with pytest.raises(DatasetError) as refused:
        load_dataset(root)

    track2 = good.replace(f",{pan},00,", f",{pan}=2512101,00,", 1)
    assert track2 != good
    path.write_text(track2, encoding="utf-8")
    with pytest.raises(DatasetError) as track:  # track-2 shaped value
        load_dataset(root)

    path.write_bytes(good.encode("utf-8") + f"T9,{pan},\xff".encode("latin-1") + b"\n")
    with pytest.raises(DatasetError) as encoding:  # non-UTF-8 byte on a line with the PAN
        load_dataset(root)

    for err in (ragged, refused, track, encoding):
        assert_absent(pan, [str(err.value), repr(err.value.args), str(err.value.column)])


# ---------------------------------------------------------------------------------
# Card tokens
# ---------------------------------------------------------------------------------
def token_dataset(root: Path) -> Path:
    txn = {"terminal_id": "10230017", "merchant_id": "M001", "timestamp": "2025-03-03T10:15:00+08:00",
           "txn_type": "purchase", "amount": "10", "response_code": "00", "latency_ms": "1",
           "reversal": "none"}
    cards = ["4111111111111111", "4111 1111 1111 1111", "5500000000000004", "4111111111111111"]
    tables = {"merchants": MERCHANTS, "terminals": TERMINALS, "transactions": pd.DataFrame(
        [{**txn, "txn_id": f"T{i}", "card_number": c} for i, c in enumerate(cards)])}
    return write_raw(tables, root, "csv")


def test_card_token_is_stable_under_a_fixed_key_and_links_cards(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "unit-test-key")
    root = token_dataset(tmp_path / "ds")
    first = load_dataset(root).transactions["card_token"].tolist()
    second = load_dataset(root).transactions["card_token"].tolist()
    assert first == second
    expected = hmac.new(b"unit-test-key", b"4111111111111111", hashlib.sha256).hexdigest()[:16]
    assert first[0] == first[1] == first[3] == expected  # spaces do not split a card
    assert first[2] != first[0]


def test_key_argument_overrides_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "unit-test-key")
    root = token_dataset(tmp_path / "ds")
    env_tokens = load_dataset(root).transactions["card_token"]
    arg_tokens = load_dataset(root, key=b"other-key").transactions["card_token"]
    assert (env_tokens != arg_tokens).all()
    assert arg_tokens[0] == hmac.new(b"other-key", b"4111111111111111", hashlib.sha256).hexdigest()[:16]


def test_without_a_key_tokens_still_link_within_a_run(tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    tokens = load_dataset(token_dataset(tmp_path / "ds")).transactions["card_token"].tolist()
    assert tokens[0] == tokens[1] == tokens[3] != tokens[2]


# ---------------------------------------------------------------------------------
# Arrow forms: each distinct number once, digit strings by an integer key
# ---------------------------------------------------------------------------------
def expected_token(value: str | None, key: bytes) -> str | None:
    if value is None:
        return None
    digits = value.replace(" ", "").replace("-", "")
    return hmac.new(key, digits.encode("utf-8"), hashlib.sha256).hexdigest()[:16]


CARD_COLUMNS = {
    # digits only: the integer-key path; leading zeros and lengths keep numbers apart
    "digits": ["4111111111111111", "0123", "123", None, "0123", "6222021234567890123",
               "9999999999999999999", "4111111111111111", "7"],
    # anything else: Arrow's dictionary path
    "separators": ["4111 1111 1111 1111", "4111111111111111", "4111-1111-1111-1111", None],
    "masked": ["411111******1111", "4111111111111111", "", "12345678901234567890"],
    "missing": [None, None],
    "empty": [],
}


@pytest.mark.parametrize("name", sorted(CARD_COLUMNS))
@pytest.mark.parametrize("chunked", [False, True])
def test_protect_card_array_masks_and_tokenizes_each_value(name, chunked):
    values = CARD_COLUMNS[name]
    arr = pa.array(values, pa.large_string())
    if chunked:  # several chunks, one of them sliced
        arr = pa.chunked_array([arr.slice(0, len(values) // 2),
                                pa.array([None, *values[len(values) // 2:]], pa.large_string()).slice(1)])
    masked, token = protect_card_array(arr, b"k")
    assert masked.to_pylist() == [mask_pan(v) for v in values]
    assert token.to_pylist() == [expected_token(v, b"k") for v in values]
    assert mask_pan_array(arr).to_pylist() == masked.to_pylist()


@given(st.lists(st.one_of(st.none(), st.text("0123456789", min_size=1, max_size=19),
                          st.text("0123456789 -*", max_size=22)), max_size=30))
@settings(max_examples=100, deadline=None)
def test_card_tokens_match_hmac_for_any_numbers(values):
    masked, token = protect_card_array(pa.array(values, pa.large_string()), b"key")
    assert token.to_pylist() == [expected_token(v, b"key") for v in values]
    assert masked.to_pylist() == [mask_pan(v) for v in values]


def test_holds_any_byte_sees_only_the_values_bytes():
    arr = pa.array(["12=4", "5678", "99"], pa.large_string())
    assert holds_any_byte(arr, b"=")
    assert not holds_any_byte(arr.slice(1), b"=")  # the "=" lies before the slice
    assert not holds_any_byte(pa.array([None, ""], pa.string()), b"=")
    assert holds_any_byte(pa.chunked_array([arr.slice(1), arr.slice(0, 1)]), b"=D")


def test_take_sorted_across_chunks_equals_take():
    import numpy as np

    from analysis.privacy import take_sorted

    chunked = pa.chunked_array([["a", "b", "c"], [], ["d"], ["e", "f"]])
    rows = np.array([0, 2, 3, 5])
    assert take_sorted(chunked, rows).to_pylist() == chunked.take(pa.array(rows)).to_pylist()
    assert take_sorted(chunked, np.array([], np.int64)).to_pylist() == []
    assert take_sorted(pa.array([1, 2, 3]), np.array([1])).to_pylist() == [2]
