"""Reading and writing contract datasets.

:func:`load_dataset` reads a dataset directory (one ``NAME.csv`` or
``NAME.parquet`` per table, see ``shared/CONTRACT.md``), refuses files it cannot
trust as a whole (:class:`~analysis.exceptions.DatasetError`), rejects single bad
rows with a reason, masks card data the moment it is read and returns a typed,
frozen :class:`Dataset`. :func:`write_tables` writes tables back in either format
so that they load again unchanged; :func:`save_rejected` writes the rejected rows.

Line numbers
------------
Every rejected row carries ``line``: for CSV the 1-based line of the file where
the row starts (the header is line 1, so the first data row is line 2); for
Parquet the 1-based row number plus one, so the first row is also 2 and both
formats number rows alike.

Values
------
CSV fields are read as text (identifiers keep leading zeros); an empty field is
missing, and so is a blank-only one, and identifiers and codes lose surrounding
blanks (CSV files are often edited by hand). Parquet values are taken as stored:
only an empty string counts as missing.

Examples
--------
>>> import tempfile
>>> d = tempfile.mkdtemp()
>>> _ = write_tables({
...     "merchants": pd.DataFrame({"merchant_id": ["M1"], "name": ["小店"], "mcc": ["5411"],
...                                "latitude": [31.2], "longitude": [121.5]}),
...     "terminals": pd.DataFrame({"terminal_id": ["T1"], "merchant_id": ["M1"], "model": ["X"],
...                                "firmware": ["1.0"], "connection": ["4g"],
...                                "network_segment": ["CT-PD-0231"]}),
...     "transactions": pd.DataFrame({"txn_id": ["1"], "terminal_id": ["T1"],
...         "merchant_id": ["M1"], "timestamp": ["2025-03-01T10:00:00+08:00"],
...         "txn_type": ["purchase"], "amount": [12.5], "card_number": ["4111111111111111"],
...         "response_code": ["00"], "latency_ms": [200], "reversal": ["none"]}),
... }, d, "csv")
>>> ds = load_dataset(d)
>>> ds.transactions.loc[0, "card_number"]
'411111******1111'
>>> ds.accounting["used"].tolist()
[1, 1, 1]
"""

from __future__ import annotations

import bisect
import codecs
import csv
import io
import json
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pv
import pyarrow.parquet as pq

from .contract import TABLES, TIMEZONE, Column, Table
from .exceptions import DatasetError
from .privacy import (
    byte_lengths,
    holds_any_byte,
    mask_pan_array,
    mask_text,
    mask_text_series,
    protect_card_array,
    sensitive_column_reason,
    take_sorted,
)

REJECTED_COLUMNS = ("table", "file", "line", "column", "value", "reason", "row")
ACCOUNTING_COLUMNS = ("table", "file", "read", "used", "rejected")
FORMATS = ("csv", "parquet")
#: Column added to ``transactions``: keyed HMAC token of the raw card number.
TOKEN_COLUMN = "card_token"
#: Resolution of every time and date column.
TIME_UNIT = "us"
#: Line number of the first data row (CSV header = line 1; Parquet rows alike).
FIRST_DATA_LINE = 2

STRING_KINDS = ("id", "code", "text", "pan")
NUMBER_KINDS = ("money", "float", "int")
_TOKEN_SOURCE = ("transactions", "card_number")


def _default_string_dtype():
    """pandas' default string dtype (``str`` since pandas 3), never plain object."""
    dtype = pd.Series(["x"]).dtype
    return pd.StringDtype() if dtype == object else dtype


STRING_DTYPE = _default_string_dtype()
_PANDAS_TYPES = {pa.large_string(): STRING_DTYPE, pa.string(): STRING_DTYPE}

#: What a missing optional table means for the conclusions.
MISSING_TABLE_NOTES = {
    "terminal_events": (
        "no terminal_events table: link errors (timeouts, MAC errors, retransmits, "
        "resets), batch uploads and reboots cannot be seen; network and terminal faults "
        "rest on response codes and reversals alone"
    ),
    "settlements": (
        "no settlements table: crediting cannot be checked; approved transactions are "
        "treated as not cleared"
    ),
    "complaints": "no complaints table: there are no tickets to match to transactions",
    "interventions": "no interventions table: the effect of fixes cannot be evaluated",
}

#: What a missing optional column means, where it narrows the conclusions.
ABSENT_COLUMN_EFFECTS = {
    "reversal_reason": (
        "reversals cannot be told apart by reason (98 no response, A0 MAC failure, "
        "96 terminal fault)"
    ),
    "original_txn_id": "voids and refunds cannot be linked to the purchase they cancel",
    "return_reason": "returned credits cannot be attributed to a reason",
    "payee_bank": "failed transfers cannot be grouped by receiving bank",
}

_PATTERN_TEXT = {r"^[0-9]{4}$": "4 digits"}
# An ISO 8601 time of day followed by a UTC offset (Z, +08, +0800, +08:00).
_OFFSET = r"(?:T|\s)\d{2}(?::?\d{2}){0,2}(?:[.,]\d+)?\s*(?:[Zz]|[+-]\d{2}(?::?\d{2})?)$"
_SHOW_CHARS = 60
_MAX_EXACT_INT = 2**53  # whole numbers beyond this are not exact in float64


# ---------------------------------------------------------------------------------
# The dataset
# ---------------------------------------------------------------------------------
def _empty_rejected() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="int64" if c == "line" else STRING_DTYPE)
                         for c in REJECTED_COLUMNS})


def _empty_accounting() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="int64" if c in ("read", "used", "rejected")
                                      else STRING_DTYPE) for c in ACCOUNTING_COLUMNS})


@dataclass(frozen=True)
class Dataset:
    """One contract dataset, validated and typed.

    Attributes
    ----------
    merchants, terminals, transactions : pandas.DataFrame
        Required tables, one typed frame each (see ``analysis.contract``).
    terminal_events, settlements, complaints, interventions : pandas.DataFrame or None
        Optional tables; ``None`` where the dataset has no such file.
    rejected : pandas.DataFrame
        One row per rejected input row: ``table, file, line, column, value, reason, row``
        (``value`` and ``row`` are masked text; ``line`` as in the module docstring).
    accounting : pandas.DataFrame
        Per table read: ``table, file, read, used, rejected`` with read = used + rejected.
    source : str
        The directory the dataset was read from.
    notes : tuple of str
        What the loader wants a person to know (optional tables missing, extra
        columns ignored, defaults applied).

    String columns use pandas' default string dtype for the installed pandas,
    missing values are NA (test with ``pd.isna``). Times are tz-aware
    ``Asia/Shanghai``; dates are naive midnight ``datetime64``; money is float64;
    ``latency_ms`` is ``Int64``. ``transactions`` carries ``card_number`` already
    masked plus ``card_token`` (HMAC-SHA256, 16 hex digits).
    """

    merchants: pd.DataFrame
    terminals: pd.DataFrame
    transactions: pd.DataFrame
    terminal_events: pd.DataFrame | None = None
    settlements: pd.DataFrame | None = None
    complaints: pd.DataFrame | None = None
    interventions: pd.DataFrame | None = None
    rejected: pd.DataFrame = field(default_factory=_empty_rejected)
    accounting: pd.DataFrame = field(default_factory=_empty_accounting)
    source: str = ""
    notes: tuple[str, ...] = ()

    def table(self, name: str) -> pd.DataFrame | None:
        """The frame of a contract table by name (None for a missing optional table)."""
        if name not in TABLES:
            raise KeyError(f"no contract table {name!r}; expected one of {sorted(TABLES)}")
        return getattr(self, name)

    def has(self, name: str) -> bool:
        """True when the dataset holds the (optional) table ``name``."""
        return self.table(name) is not None

    def __repr__(self) -> str:
        parts = [
            f"{name}={len(df):,}" for name in TABLES if (df := getattr(self, name)) is not None
        ]
        return f"Dataset({self.source!r}: {', '.join(parts)}; rejected={len(self.rejected):,})"

    def summary(self) -> str:
        """The row accounting as a text table, the rejections by column, and the notes.

        Examples
        --------
        >>> print(Dataset(pd.DataFrame(), pd.DataFrame(), pd.DataFrame(),
        ...               source="demo").summary().splitlines()[0])
        Dataset demo
        """
        out = [f"Dataset {self.source}"]
        if len(self.accounting):
            out.append(self.accounting.to_string(index=False))
        if len(self.rejected):
            out += ["", "Rejected rows (see the reasons in the rejected files):"]
            counts = self.rejected.groupby(["table", "column"], sort=False).size()
            out += [f"  {t}.{c}: {n:,}" for (t, c), n in counts.items()]
        if self.notes:
            out += ["", "Notes:"] + [f"  - {n}" for n in self.notes]
        return "\n".join(out)


# ---------------------------------------------------------------------------------
# Loading: public entry point
# ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Ref:
    """``column`` of a table must name a used row of ``parent`` (its ``parent_column``)."""

    column: str
    parent: str
    parent_column: str


@dataclass(frozen=True)
class _Owner:
    """``column`` must equal the ``parent_owner`` of the parent row named by ``via``."""

    via: str
    column: str
    parent: str
    parent_key: str
    parent_owner: str


REFERENCES: dict[str, tuple[_Ref, ...]] = {
    "terminals": (_Ref("merchant_id", "merchants", "merchant_id"),),
    "transactions": (
        _Ref("terminal_id", "terminals", "terminal_id"),
        _Ref("merchant_id", "merchants", "merchant_id"),
    ),
    "terminal_events": (_Ref("terminal_id", "terminals", "terminal_id"),),
    "settlements": (_Ref("txn_id", "transactions", "txn_id"),),
    "complaints": (_Ref("merchant_id", "merchants", "merchant_id"),),
}
OWNERS: dict[str, tuple[_Owner, ...]] = {
    "transactions": (_Owner("terminal_id", "merchant_id", "terminals", "terminal_id", "merchant_id"),),
}


@dataclass
class _Source:
    """A table as read: raw Arrow columns (card data masked) plus the file line of each row."""

    table: pa.Table
    lines: np.ndarray
    notes: list[str]
    trim: bool  # strip blanks around values (CSV, often hand-edited) or take them as stored


@dataclass
class _Problem:
    """Rows (by position) whose ``column`` breaks a rule, with one reason each."""

    column: str
    positions: np.ndarray
    reasons: list[str]


@dataclass
class _Typed:
    """One contract column typed: its values (every row), row problems and notes."""

    values: pd.Series
    problems: list[_Problem]
    notes: list[str]


@dataclass
class _Checked:
    """A table after its own rules, before the rules that need its parents' used rows.

    ``columns`` holds the typed contract columns but the card column, which is
    masked and tokenized in the background (``cards``); ``lookups`` are the
    background positions of each reference column among all the parent's rows.
    """

    spec: Table
    file: Path
    src: _Source
    extra: list[str]
    columns: dict[str, _Typed]
    absent: list[Column]
    cards: Future | None
    lookups: dict[str, Future]


@dataclass
class _Loaded:
    """One table after loading: used rows, rejected rows and rejected keys."""

    name: str
    file: Path
    frame: pd.DataFrame
    rejected: pd.DataFrame
    read: int
    rejected_keys: pd.Series  # key value -> line of the first rejected row with it
    notes: list[str]
    key_rows: np.ndarray | None  # when no two rows share a key: see _key_rows


def load_dataset(path: str | Path, *, key: bytes | None = None, progress: bool = False) -> Dataset:
    """Read, validate, mask and type a contract dataset directory.

    Parameters
    ----------
    path : str or Path
        Directory holding one ``NAME.csv`` or ``NAME.parquet`` per table.
    key : bytes, optional
        HMAC key for ``card_token``; default ``POS_PAN_KEY`` or a per-run random key.
    progress : bool
        Show a progress bar over the tables.

    Returns
    -------
    Dataset
        Typed frames of the used rows, the rejected rows with reasons, the row
        accounting (read = used + rejected per table) and notes.

    Raises
    ------
    DatasetError
        A whole-file problem: missing directory, required file or column, both a
        CSV and a Parquet file for one table, non-UTF-8 bytes, a ragged CSV row,
        an unreadable Parquet file, or a column holding track data, CVV or PIN blocks.

    Examples
    --------
    >>> ds = load_dataset("data/demo")                       # doctest: +SKIP
    >>> print(ds.summary())                                  # doctest: +SKIP
    """
    from tqdm.auto import tqdm

    root = Path(path)
    if not root.is_dir():
        raise DatasetError(
            f"the dataset directory {root} does not exist or is not a directory; expected a "
            "directory with merchants, terminals and transactions as .csv or .parquet files",
            file=str(root),
        )
    files, notes = _locate_files(root)
    notes += [MISSING_TABLE_NOTES[name] for name, file in files.items() if file is None]
    present = [name for name, file in files.items() if file is not None]
    with _arrow_pool(), _background() as (reader, helper):
        reads = {name: reader.submit(_read, TABLES[name], files[name]) for name in present}
        checked: dict[str, _Checked] = {}
        for name in tqdm(present, desc="loading tables", unit="table", disable=not progress):
            checked[name] = _check_table(TABLES[name], files[name], reads.pop(name).result(),
                                         key, checked, helper)
        loaded: dict[str, _Loaded] = {}
        for name in present:
            loaded[name] = _finish_table(checked.pop(name), loaded)
    return _assemble(root, loaded, notes)


@contextmanager
def _arrow_pool() -> Iterator[None]:
    """Arrow allocates from its jemalloc pool while loading, where the build has one.

    Loading makes many large short-lived buffers; the default (mimalloc) pool
    hands their pages back to the system at once and takes fresh ones, so
    about half the load's time went to page faults. Measured with
    ``benchmarks/bench_load.py`` on 5.3M rows: 0.77–0.91M rows/s and 2.7 GB
    peak with mimalloc, 1.23–1.31M rows/s and 2.5 GB with jemalloc. The
    previous default pool is restored afterwards; buffers keep their pool.
    """
    previous = pa.default_memory_pool()
    try:
        pool = pa.jemalloc_memory_pool()
    except (NotImplementedError, pa.ArrowNotImplementedError):  # built without jemalloc
        yield
        return
    pa.set_memory_pool(pool)
    try:
        yield
    finally:
        pa.set_memory_pool(previous)


@contextmanager
def _background() -> Iterator[tuple[ThreadPoolExecutor, ThreadPoolExecutor]]:
    """Two thread pools: one reads the files in turn, one runs the long jobs.

    The long jobs (card tokens, reference lookups) and the reading release the
    GIL in Arrow's C++ or hash in C, so they run beside the checks of the main
    thread. Work not started when the loading fails is cancelled.
    """
    reader = ThreadPoolExecutor(1, thread_name_prefix="load_dataset-read")
    helper = ThreadPoolExecutor(2, thread_name_prefix="load_dataset-job")
    try:
        yield reader, helper
    finally:
        for pool in (reader, helper):
            pool.shutdown(wait=False, cancel_futures=True)


def _assemble(root: Path, loaded: dict[str, _Loaded], notes: list[str]) -> Dataset:
    """Build the Dataset (accounting checked) from the loaded tables."""
    accounting = pd.DataFrame(
        [(t.name, t.file.name, t.read, len(t.frame), len(t.rejected)) for t in loaded.values()],
        columns=list(ACCOUNTING_COLUMNS),
    ).astype({"table": STRING_DTYPE, "file": STRING_DTYPE})
    assert (accounting["read"] == accounting["used"] + accounting["rejected"]).all(), accounting
    parts = [t.rejected for t in loaded.values() if len(t.rejected)]
    rejected = pd.concat(parts, ignore_index=True) if parts else _empty_rejected()
    table_notes = [n for t in loaded.values() for n in t.notes]
    return Dataset(
        **{name: t.frame for name, t in loaded.items()},
        rejected=rejected,
        accounting=accounting,
        source=str(root),
        notes=tuple(table_notes + notes),
    )


def _locate_files(root: Path) -> tuple[dict[str, Path | None], list[str]]:
    """The file of each contract table (None if absent) and notes on ignored files."""
    files: dict[str, Path | None] = {}
    for name, spec in TABLES.items():
        found = [root / f"{name}.{fmt}" for fmt in FORMATS if (root / f"{name}.{fmt}").is_file()]
        if len(found) > 1:
            raise DatasetError(
                f"both {name}.csv and {name}.parquet exist in {root}; keep one of them so "
                "it is clear which holds the data",
                file=str(found[0]),
            )
        if not found and spec.required:
            raise DatasetError(
                f"the required table {name!r} is missing: expected {name}.csv or "
                f"{name}.parquet in {root} (required tables: merchants, terminals, transactions)",
                file=str(root / f"{name}.csv"),
            )
        files[name] = found[0] if found else None
    known = {p.name for p in files.values() if p is not None}
    others = sorted(
        p.name for p in root.iterdir()
        if p.is_file() and p.suffix in (".csv", ".parquet") and p.name not in known
    )
    notes = [f"files ignored (not contract tables): {mask_text(', '.join(others))}"] if others else []
    return files, notes


def _read(spec: Table, file: Path) -> _Source:
    return _read_csv(file) if file.suffix == ".csv" else _read_parquet(file, spec)


def _check_table(spec: Table, file: Path, src: _Source, key: bytes | None,
                 checked: dict[str, _Checked], helper: ThreadPoolExecutor) -> _Checked:
    """Refuse a bad file, mask card data and apply the rules that need this table alone.

    Starts the background jobs: card tokens and the lookup of each reference
    column among all rows of its (already checked) parent.
    """
    _refuse_sensitive(src.table, file)
    extra = _check_columns(spec, src.table.column_names, file)
    card = _TOKEN_SOURCE[1] if spec.name == _TOKEN_SOURCE[0] else None
    cards = helper.submit(protect_card_array, src.table.column(card), key) if card else None
    src.table = _protect(spec, src.table, extra, skip=card)
    columns, absent = {}, []
    for col in spec.columns:
        if col.name not in src.table.column_names:
            absent.append(col)
        elif col.name != card:
            columns[col.name] = _typed_column(col, src.table.column(col.name), src.trim, file)
    lookups = {}
    for ref in REFERENCES.get(spec.name, ()):
        parent = checked[ref.parent]
        if ref.parent_column == parent.spec.key:
            lookups[ref.column] = helper.submit(
                _index_in, columns[ref.column].values, parent.columns[ref.parent_column].values)
    return _Checked(spec, file, src, extra, columns, absent, cards, lookups)


def _finish_table(checked: _Checked, loaded: dict[str, _Loaded]) -> _Loaded:
    """Apply the rules across tables and rows, then split the used rows from the rejected."""
    spec, file, src = checked.spec, checked.file, checked.src
    typed, problems, notes, token = _typed_frame(checked)
    ref_problems, positions = _reference_problems(spec, typed, loaded, checked.lookups)
    problems += ref_problems
    bad = _bad_mask(len(typed), problems)
    distinct = {c.name: _all_distinct(typed[c.name], positions.get(c.name), bad)
                for c in spec.columns if c.unique}
    problems += _duplicate_problems(spec, typed, src.lines, bad, distinct)
    bad = _bad_mask(len(typed), problems)
    if token is not None:
        typed[TOKEN_COLUMN] = _to_pandas(token)
    frame = typed if not bad.any() else typed.loc[~bad].reset_index(drop=True)
    rejected = _rejected_frame(spec.name, file, src, problems)
    notes = src.notes + notes
    if checked.extra:
        notes.append(
            f"{file.name}: columns not in the contract were checked for card data and "
            f"ignored: {', '.join(mask_text(str(c)) for c in checked.extra)}"
        )
    assert src.table.num_rows == len(frame) + len(rejected)
    unique_key = distinct.get(spec.key, False) and spec.key not in positions
    return _Loaded(spec.name, file, frame, rejected, src.table.num_rows,
                   _rejected_keys(spec, typed, src.lines, bad), notes,
                   _key_rows(bad) if unique_key else None)


def _key_rows(bad: np.ndarray) -> np.ndarray:
    """The position among the used rows of each row (-1 if rejected), then a last -1.

    Where no two rows share a key, a key's row among all rows (-1 for none) maps
    through this to its row among the used rows, or to -1 if that row was rejected.
    """
    rows = np.full(len(bad) + 1, -1, dtype="int64")
    used = np.flatnonzero(~bad)
    rows[used] = np.arange(len(used))
    return rows


# ---------------------------------------------------------------------------------
# Reading files
# ---------------------------------------------------------------------------------
def _decode_utf8(data: bytes, file: Path) -> str:
    """The file's text; non-UTF-8 bytes raise DatasetError with line and byte offset."""
    skip = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[skip:].decode("utf-8")
    except UnicodeDecodeError as err:
        offset = err.start + skip
        line = data.count(b"\n", 0, offset) + 1
        raise DatasetError(
            f"bytes that are not UTF-8 at byte offset {offset} (line {line}); the file "
            "was probably saved in another encoding (GBK/GB18030 is common for Chinese "
            "text). Re-save it as UTF-8 (UTF-8 with BOM is accepted too)",
            file=str(file),
            line=line,
        ) from None


def _read_header(text: str, file: Path) -> list[str]:
    """Column names from the first CSV record: stripped, blanks named, duplicates refused."""
    if not text.strip():
        raise DatasetError("the file is empty; expected a header line naming the columns",
                           file=str(file), line=1)
    header = [h.strip() for h in next(csv.reader(io.StringIO(text, newline="")))]
    header = [h or f"unnamed_{i + 1}" for i, h in enumerate(header)]
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise DatasetError(
            f"the header names {', '.join(map(mask_text, dupes))} more than once; each "
            "column must appear once",
            file=str(file), line=1, column=mask_text(dupes[0]),
        )
    return header


def _csv_records(text: str):
    """Yield (start line, fields) of each non-empty CSV record, header included.

    A ``csv.Error`` is re-raised as DatasetError-ready ``ValueError(line)``.
    """
    reader = csv.reader(io.StringIO(text, newline=""))
    prev = 0
    while True:
        try:
            rec = next(reader)
        except StopIteration:
            return
        except csv.Error:
            raise ValueError(prev + 1) from None
        if rec:
            yield prev + 1, rec
        prev = reader.line_num


def _ragged_error(text: str, width: int, file: Path) -> DatasetError:
    """The DatasetError for the first record whose field count differs from the header."""
    try:
        for line, rec in _csv_records(text):
            if len(rec) != width:
                return DatasetError(
                    f"this row has {len(rec)} fields but the header has {width}; check for "
                    "an unquoted comma or a missing field (fields holding commas, quotes or "
                    "line breaks must be enclosed in double quotes)",
                    file=str(file), line=line,
                )
    except ValueError as err:
        return DatasetError("the CSV cannot be parsed here; check the quoting near this line",
                            file=str(file), line=err.args[0])
    return DatasetError("the CSV cannot be parsed; check the quoting (a quoted field "
                        "that never closes?)", file=str(file))


def _csv_lines(data: bytes, text_of: Callable[[], str], n_rows: int) -> np.ndarray:
    """The start line of each data row (fast path when records are one line each)."""
    n_lines = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
    if n_lines == n_rows + 1 and data.count(b"\r") == data.count(b"\r\n"):
        return np.arange(FIRST_DATA_LINE, n_rows + FIRST_DATA_LINE, dtype="int64")
    starts = np.fromiter((line for line, _ in _csv_records(text_of())), dtype="int64")[1:]
    if len(starts) != n_rows:  # the two parsers disagree: fall back to record order
        return np.arange(FIRST_DATA_LINE, n_rows + FIRST_DATA_LINE, dtype="int64")
    return starts


def _read_csv(file: Path) -> _Source:
    """Read a CSV file with every column as strings (empty fields are nulls)."""
    data = file.read_bytes()
    text = _decode_utf8(data, file)
    header = _read_header(text, file)
    for name in header:
        _refuse_name(name, file)
    del text  # re-decoded only on the slow paths below
    try:
        table = pv.read_csv(
            io.BytesIO(data),
            read_options=pv.ReadOptions(column_names=header, skip_rows=1),
            parse_options=pv.ParseOptions(newlines_in_values=b'"' in data),
            convert_options=pv.ConvertOptions(
                column_types={h: pa.large_string() for h in header},
                strings_can_be_null=True,
                null_values=[""],
            ),
        )
    except pa.ArrowInvalid:
        raise _ragged_error(_decode_utf8(data, file), len(header), file) from None
    lines = _csv_lines(data, lambda: _decode_utf8(data, file), table.num_rows)
    return _Source(table, lines, [], trim=True)


def _column_kinds(spec: Table) -> dict[str, str]:
    return {c.name: c.kind for c in spec.columns}


def _arrow_for_kind(arr: pa.ChunkedArray, kind: str, file: Path, name: str) -> pa.ChunkedArray:
    """Cast a Parquet column to what the loader handles for its contract kind."""
    t = arr.type
    if pa.types.is_dictionary(t):
        return _arrow_for_kind(arr.cast(t.value_type), kind, file, name)
    is_str = pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)
    if pa.types.is_null(t) or (is_str and kind not in STRING_KINDS + ("extra",)):
        return arr.cast(pa.large_string())
    if kind in STRING_KINDS or kind == "extra":
        return _arrow_text(arr, file, name)
    if kind in NUMBER_KINDS and (pa.types.is_integer(t) or pa.types.is_floating(t)
                                 or pa.types.is_decimal(t)):
        return arr.cast(pa.float64(), safe=False)
    if kind == "time" and (pa.types.is_timestamp(t) or pa.types.is_date(t)):
        return arr
    if kind == "date" and (pa.types.is_timestamp(t) or pa.types.is_date(t)):
        return arr
    expected = {"money": "numbers (float or decimal)", "float": "numbers", "int": "integers",
                "time": "timestamps or ISO 8601 strings",
                "date": "dates (date32) or YYYY-MM-DD strings"}[kind]
    raise DatasetError(f"the column is stored as {t}; expected {expected}",
                       file=str(file), column=name)


def _arrow_text(arr: pa.ChunkedArray, file: Path, name: str) -> pa.ChunkedArray:
    """A Parquet column as UTF-8 strings (numbers and times become their text)."""
    t = arr.type
    if pa.types.is_large_string(t):
        return arr
    try:
        return arr.cast(pa.large_string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        if pa.types.is_binary(t) or pa.types.is_large_binary(t):
            raise DatasetError("the column holds bytes that are not UTF-8 text; re-save it "
                               "as UTF-8 strings", file=str(file), column=name) from None
        return pa.chunked_array(
            [pa.array([None if v is None else str(v) for v in arr.to_pylist()],
                      pa.large_string())]
        )


def _read_parquet(file: Path, spec: Table) -> _Source:
    """Read a Parquet file, casting each column to what its contract kind needs."""
    try:
        table = pq.read_table(file, pre_buffer=False)  # local files: no read-ahead copies
    except (pa.ArrowException, OSError, ValueError) as err:
        raise DatasetError(
            f"the file cannot be read as Parquet ({type(err).__name__}: "
            f"{mask_text(str(err))[:200]}); re-export it, or save the table as CSV instead",
            file=str(file),
        ) from None
    kinds = _column_kinds(spec)
    names = [str(n) for n in table.column_names]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise DatasetError(f"column {dupes[0]!r} appears more than once", file=str(file),
                           column=mask_text(dupes[0]))
    arrays = [_arrow_for_kind(a, kinds.get(n, "extra"), file, n)
              for n, a in zip(names, table.columns)]
    lines = np.arange(FIRST_DATA_LINE, table.num_rows + FIRST_DATA_LINE, dtype="int64")
    notes = _parquet_zone_notes(spec, table, file)
    return _Source(pa.table(arrays, names=names), lines, notes, trim=False)


def _to_pandas(values: pa.ChunkedArray | pa.Table) -> pd.Series | pd.DataFrame:
    """Arrow values as pandas: strings in the default string dtype (no copy), dates as datetime64."""
    return values.to_pandas(types_mapper=_PANDAS_TYPES.get, date_as_object=False)


def _parquet_zone_notes(spec: Table, table: pa.Table, file: Path) -> list[str]:
    """Notes on time columns stored without a zone (read as Asia/Shanghai)."""
    notes = []
    for c in spec.columns:
        if c.kind != "time" or c.name not in table.column_names:
            continue
        arr = table.column(c.name)
        if pa.types.is_timestamp(arr.type) and arr.type.tz is None:
            n = len(arr) - arr.null_count
            notes.append(f"{file.name}: column {c.name} is stored without a time zone; its "
                         f"{n:,} values were read as {TIMEZONE} local time (the contract's rule)")
    return notes


# ---------------------------------------------------------------------------------
# Whole-file checks and masking
# ---------------------------------------------------------------------------------
def _is_text(s: pd.Series) -> bool:
    return isinstance(s.dtype, pd.StringDtype) or s.dtype == object


_TRACK2_MIN_CHARS = 17  # 12-digit PAN, separator, 4-digit expiry
_PAN_MIN_DIGITS = 13  # shortest run privacy.mask_text masks


def _max_bytes(values: pa.Array | pa.ChunkedArray) -> int:
    """Longest of Arrow strings in UTF-8 bytes (0 when empty)."""
    return byte_lengths(values)[1]


def _refuse_sensitive(table: pa.Table, file: Path) -> None:
    """Refuse the file when a column's name or values look like track data, CVV or PIN.

    Every value is checked: a track-2 value is at least 17 characters (PAN, ``=``
    or ``D``, expiry), so only such candidates go to the value check, in chunks.
    """
    for name, values in zip(table.column_names, table.columns):
        _refuse_name(str(name), file)
        if (not pa.types.is_large_string(values.type) or _max_bytes(values) < _TRACK2_MIN_CHARS
                or not holds_any_byte(values, b"=D")):
            continue
        separator = pc.or_(pc.match_substring(values, "="), pc.match_substring(values, "D"))
        cand = values.filter(pc.and_(separator, pc.greater_equal(pc.utf8_length(values),
                                                                 _TRACK2_MIN_CHARS)))
        for start in range(0, len(cand), 10_000):
            chunk = _to_pandas(cand.slice(start, 10_000))
            _refuse(sensitive_column_reason(str(name), chunk), name, file)


def _refuse_name(name: str, file: Path) -> None:
    """Refuse a column whose name says track data, CVV or PIN block."""
    _refuse(sensitive_column_reason(name), name, file)


def _refuse(reason: str | None, name: str, file: Path) -> None:
    if reason:
        raise DatasetError(
            f"the column is refused: {mask_text(reason)}. Card track data, card verification codes "
            "and PIN blocks must never be stored (PCI DSS 3.2); remove the column and "
            "load again",
            file=str(file), column=mask_text(str(name)),
        )


def _check_columns(spec: Table, columns: list[str], file: Path) -> list[str]:
    """Raise for missing required columns; return the extra (non-contract) columns."""
    missing = [c for c in spec.required_columns if c not in columns]
    if missing:
        found = ", ".join(mask_text(str(c)) for c in columns) or "no columns"
        raise DatasetError(
            f"missing required column(s) {', '.join(missing)}; the file has: {found}. "
            f"Required for {spec.name}: {', '.join(spec.required_columns)}",
            file=str(file), column=missing[0],
        )
    return [c for c in columns if c not in spec.column_names]


def _as_strings(s: pd.Series) -> pd.Series:
    return s if isinstance(s.dtype, pd.StringDtype) else s.astype(STRING_DTYPE)


def _protect(spec: Table, table: pa.Table, extra: list[str], skip: str | None) -> pa.Table:
    """The table with card and free-text columns masked (but ``skip``, masked elsewhere)."""
    kinds = _column_kinds(spec)
    for i, name in enumerate(table.column_names):
        kind = kinds.get(name, "extra")
        if kind == "pan" and name != skip:
            table = table.set_column(i, name, mask_pan_array(table.column(i)))
        elif kind in ("text", "extra"):
            table = table.set_column(i, name, _mask_text(table.column(i)))
    return table


def _mask_text(values: pa.ChunkedArray) -> pa.ChunkedArray:
    """Free text with card numbers masked (columns too short to hold one are skipped)."""
    if _max_bytes(values) < _PAN_MIN_DIGITS:
        return values
    text = _to_pandas(values)
    masked = mask_text_series(text)
    return values if masked is text else pa.array(masked.astype(STRING_DTYPE), pa.large_string())


# ---------------------------------------------------------------------------------
# Typing and row rules
# ---------------------------------------------------------------------------------
def _show(value: object) -> str:
    """A raw value for a message: masked, shortened, quoted."""
    text = mask_text(str(value))
    return repr(text if len(text) <= _SHOW_CHARS else text[:_SHOW_CHARS] + "…")


def _problem(column: str, mask: pd.Series | np.ndarray, raw: pd.Series,
             message: Callable[[object], str]) -> list[_Problem]:
    """A problem for the rows under ``mask`` (empty list when none)."""
    pos = np.flatnonzero(np.asarray(mask, dtype=bool))
    if not len(pos):
        return []
    return [_Problem(column, pos, [message(v) for v in _values_at(raw, pos)])]


def _values_at(values: pd.Series, rows: np.ndarray) -> list:
    """``values.iloc[rows].tolist()`` for increasing ``rows``; Arrow strings a chunk at a time."""
    if isinstance(values.array, pd.arrays.ArrowStringArray):
        return _to_pandas(take_sorted(pa.array(values.array), rows)).tolist()
    return values.iloc[rows].tolist()


def _strings(s: pd.Series, trim: bool = True, strip: bool = True) -> pd.Series:
    """String values with empty ones as NA.

    With ``trim`` blank-only values count as empty too and, if ``strip``, values
    lose their surrounding blanks; without it only ``""`` is empty. Values are
    copied only where they change.
    """
    s = _as_strings(s)
    if not trim and (not len(s) or byte_lengths(pa.array(s, pa.large_string()))[0] > 0):
        return s  # no empty value (told by the lengths alone)
    stripped = s.str.strip() if trim else s
    empty = (stripped == "").to_numpy()
    kept = stripped if strip else s
    return kept.mask(empty) if empty.any() else kept


def _to_number(col: Column, raw: pd.Series) -> tuple[pd.Series, list[_Problem]]:
    """float64 (or Int64 for kind int) values and the rows that are not numbers."""
    if _is_text(raw):
        text = _strings(raw)
        vals = pd.to_numeric(text, errors="coerce").astype("float64")
        problems = _problem(col.name, text.notna() & vals.isna(), raw,
                            lambda v: f"expected a number, found {_show(v)}")
    else:
        vals, problems = raw.astype("float64"), []
    inf = np.isinf(vals.to_numpy())
    problems += _problem(col.name, inf, raw, lambda v: f"expected a finite number, found {_show(v)}")
    vals = _blank(vals, inf)
    if col.kind == "int":
        frac = (vals.notna() & ((vals != np.floor(vals)) | (vals.abs() > _MAX_EXACT_INT))).to_numpy()
        problems += _problem(col.name, frac, raw, lambda v: f"expected a whole number, found {_show(v)}")
        return _blank(vals, frac).astype("Int64"), problems
    return (vals.round(2) if col.kind == "money" else vals), problems


def _blank(values: pd.Series, where: np.ndarray) -> pd.Series:
    """``values`` missing where ``where`` is True (no copy when it is nowhere)."""
    return values.mask(where) if where.any() else values


def _as_unit(times: pd.Series) -> pd.Series:
    """Times at the resolution :data:`TIME_UNIT` (no copy when they already are)."""
    return times if times.dt.unit == TIME_UNIT else times.dt.as_unit(TIME_UNIT)


def _to_time(col: Column, raw: pd.Series) -> tuple[pd.Series, list[_Problem], int]:
    """tz-aware Asia/Shanghai times, the unparseable rows and the count of naive strings."""
    naive_count = 0
    if isinstance(raw.dtype, pd.DatetimeTZDtype):
        vals, problems = raw.dt.tz_convert(TIMEZONE), []
    elif pd.api.types.is_datetime64_dtype(raw.dtype):
        vals, problems = _localize(raw), []
    else:
        text = _strings(raw)
        parsed = pd.to_datetime(text, format="ISO8601", utc=True, errors="coerce")
        naive = (parsed.notna() & ~text.str.contains(_OFFSET, regex=True, na=False)).to_numpy()
        vals = parsed.dt.tz_convert(TIMEZONE)
        if naive.any():
            naive_count = int(naive.sum())
            vals = vals.where(~naive, _localize(parsed.dt.tz_localize(None)))
        problems = _problem(
            col.name, text.notna() & vals.isna(), raw,
            lambda v: f"expected an ISO 8601 time such as 2025-03-01T14:05:00+08:00, found {_show(v)}",
        )
    return _as_unit(vals), problems, naive_count


def _localize(naive: pd.Series) -> pd.Series:
    """Naive wall-clock times read as Asia/Shanghai."""
    return naive.dt.tz_localize(TIMEZONE, ambiguous="NaT", nonexistent="NaT")


def _to_date(col: Column, raw: pd.Series) -> tuple[pd.Series, list[_Problem]]:
    """Naive midnight datetimes and the rows that are not ``YYYY-MM-DD`` dates."""
    if isinstance(raw.dtype, pd.DatetimeTZDtype):
        vals, problems = raw.dt.tz_convert(TIMEZONE).dt.tz_localize(None), []
    elif pd.api.types.is_datetime64_dtype(raw.dtype):
        vals, problems = raw, []
    else:
        text = _strings(raw)
        vals = pd.to_datetime(text, format="%Y-%m-%d", errors="coerce")
        problems = _problem(col.name, text.notna() & vals.isna(), raw,
                            lambda v: f"expected a date YYYY-MM-DD, found {_show(v)}")
    return _as_unit(vals.dt.normalize()), problems


def _range_text(col: Column) -> str:
    lo, hi = col.min_value, col.max_value
    if lo is not None and hi is not None:
        return f"between {lo:g} and {hi:g}"
    if lo is not None:
        return f"{'>' if col.min_exclusive else '>='} {lo:g}"
    return f"<= {hi:g}"


def _rule_problems(col: Column, vals: pd.Series, raw: pd.Series, type_bad: np.ndarray) -> list[_Problem]:
    """Empty required values, values not allowed, wrong form, out of range."""
    name = col.name
    present = vals.notna().to_numpy()
    problems = []
    if not col.nullable:
        problems += _problem(name, ~present & ~type_bad, raw,
                             lambda v: "empty, but a value is required")
    if col.allowed is not None:
        problems += _problem(name, present & ~vals.isin(col.allowed).to_numpy(), raw,
                             lambda v: f"{_show(v)} is not one of {', '.join(col.allowed)}")
    if col.pattern is not None:
        ok = vals.str.contains(col.pattern, regex=True, na=True).to_numpy(dtype=bool)
        form = _PATTERN_TEXT.get(col.pattern, f"the form {col.pattern}")
        problems += _problem(name, present & ~ok, raw, lambda v: f"expected {form}, found {_show(v)}")
    if col.min_value is not None or col.max_value is not None:
        x = vals.to_numpy(dtype="float64", na_value=np.nan)
        with np.errstate(invalid="ignore"):
            low = (x <= col.min_value if col.min_exclusive else x < col.min_value) \
                if col.min_value is not None else np.zeros(len(x), bool)
            high = x > col.max_value if col.max_value is not None else np.zeros(len(x), bool)
        problems += _problem(name, low | high, raw,
                             lambda v: f"{_show(v)} is out of range: expected {_range_text(col)}")
    return problems


def _convert(col: Column, raw: pd.Series, trim: bool = True) -> tuple[pd.Series, list[_Problem], int]:
    """Typed values of one column, its problems and the count of naive times."""
    if col.kind in NUMBER_KINDS:
        vals, problems = _to_number(col, raw)
    elif col.kind == "time":
        return _to_time(col, raw)
    elif col.kind == "date":
        vals, problems = _to_date(col, raw)
    else:
        vals, problems = _strings(raw, trim=trim, strip=col.kind != "text"), []
    return vals, problems, 0


def _absent(col: Column, n: int) -> pd.Series:
    """An all-missing (or default-filled) column for an optional column not in the file."""
    if col.default is not None:
        return pd.Series([col.default] * n, dtype=STRING_DTYPE)
    dtype = {"money": "float64", "float": "float64", "int": "Int64",
             "time": f"datetime64[{TIME_UNIT}, {TIMEZONE}]",
             "date": f"datetime64[{TIME_UNIT}]"}.get(col.kind, STRING_DTYPE)
    return pd.Series(pd.NA if dtype == "Int64" else None, index=range(n), dtype=dtype)


def _typed_column(col: Column, values: pa.ChunkedArray, trim: bool, file: Path) -> _Typed:
    """One contract column typed, its row problems and notes (defaults, naive times)."""
    raw = _to_pandas(values)
    vals, problems, naive = _convert(col, raw, trim)
    notes = []
    if col.default is not None and vals.isna().any():
        notes.append(f"{file.name}: {int(vals.isna().sum()):,} empty {col.name} values "
                     f"set to the default {col.default}")
        vals = vals.fillna(col.default)
    if naive:
        notes.append(f"{file.name}: {naive:,} of {int(vals.notna().sum()):,} {col.name} "
                     f"values had no UTC offset and were read as {TIMEZONE} local time "
                     "(the contract's rule)")
    problems += _rule_problems(col, vals, raw, _bad_mask(len(raw), problems))
    return _Typed(vals, problems, notes)


def _typed_frame(checked: _Checked) -> tuple[pd.DataFrame, list[_Problem], list[str],
                                             pa.ChunkedArray | None]:
    """Contract columns typed in contract order, the row problems, notes and card tokens.

    Waits for the background card job and types its (masked) column.
    """
    spec, src = checked.spec, checked.src
    columns, token = dict(checked.columns), None
    if checked.cards is not None:
        name = _TOKEN_SOURCE[1]
        masked, token = checked.cards.result()
        src.table = src.table.set_column(src.table.column_names.index(name), name, masked)
        columns[name] = _typed_column(spec.column(name), masked, src.trim, checked.file)
    n = src.table.num_rows
    frame = pd.DataFrame({c.name: columns[c.name].values if c.name in columns else _absent(c, n)
                          for c in spec.columns}, index=pd.RangeIndex(n), copy=False)
    problems = [p for c in spec.columns if c.name in columns for p in columns[c.name].problems]
    notes = [m for c in spec.columns if c.name in columns for m in columns[c.name].notes]
    return frame, problems, notes + _absent_notes(checked.absent, checked.file), token


def _absent_notes(absent: list[Column], file: Path) -> list[str]:
    """Notes on optional columns the file does not have."""
    notes = [f"{file.name}: no {c.name} column; every row uses the default {c.default}"
             for c in absent if c.default is not None]
    plain = [c.name for c in absent if c.default is None]
    if plain:
        notes.append(f"{file.name}: no optional column(s) {', '.join(plain)}; left empty")
    notes += [f"{file.name}: without {c}, {ABSENT_COLUMN_EFFECTS[c]}"
              for c in plain if c in ABSENT_COLUMN_EFFECTS]
    return notes


def _bad_mask(n: int, problems: list[_Problem]) -> np.ndarray:
    bad = np.zeros(n, dtype=bool)
    for p in problems:
        bad[p.positions] = True
    return bad


# ---------------------------------------------------------------------------------
# Cross-row rules: references and duplicates
# ---------------------------------------------------------------------------------
def _reference_problems(spec: Table, typed: pd.DataFrame, loaded: dict[str, _Loaded],
                        lookups: dict[str, Future]) -> tuple[list[_Problem], dict[str, np.ndarray]]:
    """Rows naming a parent row that is missing, rejected, or of another owner.

    Also returns, per reference column, the position of each row's parent row
    among its used rows (-1 where there is none): equal values have equal positions.
    """
    problems, positions = [], {}
    for ref in REFERENCES.get(spec.name, ()):
        parent = loaded[ref.parent]
        vals = typed[ref.column]
        at = positions[ref.column] = _parent_rows(ref, vals, parent, lookups.get(ref.column))
        missing = vals.notna().to_numpy() & (at < 0)

        def why(v, ref=ref, parent=parent):
            line = parent.rejected_keys.get(v)
            if line is not None:
                return (f"{_show(v)} refers to a {ref.parent} row that was rejected "
                        f"({parent.file.name} line {line})")
            return f"{_show(v)} is not in {parent.file.name}"

        problems += _problem(ref.column, missing, vals, why)
    for own in OWNERS.get(spec.name, ()):
        at = positions.get(own.via)
        if at is None:
            at = _index_in(typed[own.via], loaded[own.parent].frame[own.parent_key])
        problems += _owner_problems(own, typed, loaded[own.parent].frame, at)
    return problems, positions


def _owner_problems(own: _Owner, typed: pd.DataFrame, parent: pd.DataFrame,
                    at: np.ndarray) -> list[_Problem]:
    """Rows whose ``own.column`` differs from the owner of their parent row (at ``at``).

    Values are compared as their first position among the parent's owners, so
    the comparison hashes the parent's few owners instead of every row's text.
    """
    owners = parent[own.parent_owner]
    own_at = np.where(owners.notna().to_numpy(), _index_in(owners, owners), -1)
    owner_code = np.append(own_at, -1)  # at == -1 (no parent row) gives -1
    actual = typed[own.column]
    expected = owner_code[at]
    differs = (expected >= 0) & actual.notna().to_numpy() & (_index_in(actual, owners) != expected)
    pos = np.flatnonzero(differs)
    if not len(pos):
        return []
    reasons = [f"{own.via.split('_')[0]} {_show(t)} belongs to "
               f"{own.column.split('_')[0]} {_show(e)}, not {_show(a)}"
               for t, e, a in zip(_values_at(typed[own.via], pos), owners.iloc[at[pos]].tolist(),
                                  _values_at(actual, pos))]
    return [_Problem(own.column, pos, reasons)]


def _parent_rows(ref: _Ref, values: pd.Series, parent: _Loaded, lookup: Future | None) -> np.ndarray:
    """Position of each value among the parent's used rows (-1 where absent or missing).

    Uses the background lookup among all the parent's rows where the parent's key
    is unique; otherwise looks the values up among the used rows.
    """
    if lookup is not None and parent.key_rows is not None:
        return parent.key_rows[lookup.result()]
    return _index_in(values, parent.frame[ref.parent_column])


def _index_in(values: pd.Series, keys: pd.Series) -> np.ndarray:
    """Position of each value in ``keys`` (-1 where absent or missing), via Arrow hashing.

    Where the keys increase (ids in the order they were issued) and each stretch
    of values spans few of them (a log in the same order), every stretch is looked
    up among the keys between its least and greatest value only: a small hash
    table per stretch instead of one of all the keys.
    """
    vals, ks = pa.array(values, pa.large_string()), pa.array(keys, pa.large_string())
    stretches = _key_stretches(vals, keys) if _increasing(ks) else None
    if stretches is None:
        return _positions(vals, ks)
    return np.concatenate([_positions(vals.slice(start, _STRETCH), ks.slice(low, high - low), low)
                           for start, low, high in stretches] or [np.empty(0, np.int32)])


_STRETCH = 262_144  # values looked up together among the keys they span


def _key_stretches(values: pa.ChunkedArray, keys: pd.Series) -> list[tuple[int, int, int]] | None:
    """``(start, low, high)`` per stretch of values: the keys[low:high] that can match them.

    None when the stretches would span more keys in all than twice the keys, which
    a single lookup does better. ``keys`` must increase.
    """
    ordered = keys.array
    stretches = []
    for start in range(0, len(values), _STRETCH):
        extent = pc.min_max(values.slice(start, _STRETCH)).as_py()
        if extent["min"] is None:
            stretches.append((start, 0, 0))
            continue
        stretches.append((start, bisect.bisect_left(ordered, extent["min"]),
                          bisect.bisect_right(ordered, extent["max"])))
    spanned = sum(high - low for _, low, high in stretches)
    return stretches if spanned <= 2 * len(keys) else None


def _positions(values: pa.ChunkedArray, keys: pa.ChunkedArray, offset: int = 0) -> np.ndarray:
    """``offset`` plus the position of each value in ``keys``; -1 where absent or missing."""
    found = pc.index_in(values, value_set=keys, skip_nulls=True)
    if offset:
        found = pc.add(found, offset)
    return found.fill_null(-1).to_numpy()


def _all_distinct(values: pd.Series, positions: np.ndarray | None, bad: np.ndarray) -> bool:
    """True when no used row repeats a value (a cheap check before finding the repeats).

    With ``positions`` (the parent row of each value, see :func:`_reference_problems`)
    the used rows' positions are counted; otherwise every value is hashed in C++.
    """
    if positions is not None:
        used = positions[~bad & (positions >= 0)]
        return not len(used) or np.bincount(used).max() <= 1
    arr = pa.array(values, pa.large_string())
    return _increasing(arr) or len(pc.unique(arr).drop_null()) == len(arr) - arr.null_count


def _increasing(values: pa.ChunkedArray) -> bool:
    """True when every value is greater than the one before (so all differ) and none is missing.

    Logs are often written in id order; this one pass then saves hashing every value.
    """
    n = len(values)
    if values.null_count or n < 2:
        return not values.null_count
    return pc.all(pc.greater(values.slice(1), values.slice(0, n - 1))).as_py()


def _duplicate_problems(spec: Table, typed: pd.DataFrame, lines: np.ndarray, bad: np.ndarray,
                        distinct: dict[str, bool]) -> list[_Problem]:
    """Later rows repeating a unique value of an otherwise valid earlier row.

    ``distinct`` names the unique columns already known to hold no repeats.
    """
    problems = []
    for col in spec.columns:
        if not col.unique or distinct[col.name]:
            continue
        vals = typed[col.name].where(~bad)  # rejected rows do not claim their value
        dup = (vals.notna() & vals.duplicated(keep="first")).to_numpy()
        if not dup.any():
            continue
        first = pd.Series(lines[~bad], index=vals[~bad]).groupby(level=0).first()
        problems += _problem(
            col.name, dup, vals,
            lambda v, c=col.name: f"duplicate {c} {_show(v)}: the first row with it "
                                  f"(line {first[v]}) is used",
        )
    return problems


def _rejected_keys(spec: Table, typed: pd.DataFrame, lines: np.ndarray, bad: np.ndarray) -> pd.Series:
    """Key value -> line of the first rejected row with that key (for cascade reasons)."""
    if spec.key is None or not bad.any():
        return pd.Series(dtype="int64")
    keys = typed[spec.key][bad]
    s = pd.Series(lines[bad], index=keys.to_numpy())
    s = s[s.index.notna()]
    return s[~s.index.duplicated(keep="first")]


# ---------------------------------------------------------------------------------
# Rejected rows
# ---------------------------------------------------------------------------------
def _cell_text(value: object) -> str | None:
    """A raw cell as masked text (None for missing)."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    text = value.isoformat() if isinstance(value, pd.Timestamp) else str(value)
    return mask_text(text)


def _raw_rows(table: pa.Table, positions: np.ndarray) -> list[dict[str, str | None]]:
    """The masked text of whole raw rows."""
    rows = pa.table([take_sorted(c, positions) for c in table.columns], names=table.column_names)
    sub = _to_pandas(rows).astype(object)
    names = [mask_text(str(c)) for c in sub.columns]
    return [dict(zip(names, map(_cell_text, row))) for row in sub.itertuples(index=False)]


def _rejected_frame(table: str, file: Path, src: _Source, problems: list[_Problem]) -> pd.DataFrame:
    """One entry per rejected row: first bad column named, the others in the reason."""
    if not problems:
        return _empty_rejected()
    long = pd.DataFrame({
        "pos": np.concatenate([p.positions for p in problems]),
        "order": np.concatenate([np.full(len(p.positions), i) for i, p in enumerate(problems)]),
        "column": np.concatenate([[p.column] * len(p.positions) for p in problems]),
        "reason": [r for p in problems for r in p.reasons],
    }).sort_values(["pos", "order"], kind="stable")
    first = long.drop_duplicates("pos", keep="first")
    rest = long[long.duplicated("pos", keep="first")]
    also = (rest["column"] + ": " + rest["reason"]).groupby(rest["pos"]).agg("; ".join).to_dict()
    pos = first["pos"].to_numpy()
    reason = [f"{r} (also {also[p]})" if p in also else r for p, r in zip(pos, first["reason"])]
    rows = _raw_rows(src.table, pos)
    return pd.DataFrame({
        "table": table,
        "file": file.name,
        "line": src.lines[pos],
        "column": first["column"].to_numpy(),
        "value": [row.get(c) for row, c in zip(rows, first["column"])],
        "reason": reason,
        "row": [json.dumps(r, ensure_ascii=False) for r in rows],
    }).astype({c: STRING_DTYPE for c in REJECTED_COLUMNS if c != "line"})


def save_rejected(dataset: Dataset, out_dir: str | Path) -> list[Path]:
    """Write the rejected rows of each table to ``OUT_DIR/<table>.csv`` (masked text).

    Only tables with rejected rows get a file; the directory is created either way.

    Examples
    --------
    >>> save_rejected(load_dataset("data/demo"), "out/rejected")   # doctest: +SKIP
    [PosixPath('out/rejected/transactions.csv')]
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for table, rows in dataset.rejected.groupby("table", sort=False):
        rows = rows.copy()
        for c in ("value", "reason", "row"):
            rows[c] = mask_text_series(rows[c])
        target = out / f"{table}.csv"
        rows.to_csv(target, index=False, encoding="utf-8")
        written.append(target)
    return written


# ---------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------
def _as_local_times(values: pd.Series) -> pd.Series:
    """Times (naive = Asia/Shanghai, ISO 8601 strings parsed) as tz-aware Asia/Shanghai."""
    times, problems, _ = _to_time(Column(str(values.name), "time"), values)
    if problems:
        p = problems[0]
        raise ValueError(f"column {values.name}: {p.reasons[0]} (row {p.positions[0]})")
    return times


def iso_times(values: pd.Series) -> pd.Series:
    """ISO 8601 text with the UTC offset (``2025-03-01T14:05:00+08:00``), vectorized.

    Missing times give missing text. Fractional seconds appear only when present.

    Examples
    --------
    >>> iso_times(pd.Series(pd.to_datetime(["2025-03-01 14:05"]).tz_localize("Asia/Shanghai"))).tolist()
    ['2025-03-01T14:05:00+08:00']
    """
    local = _as_local_times(values)
    wall = local.dt.tz_localize(None)
    offset_min = ((wall - local.dt.tz_convert("UTC").dt.tz_localize(None))
                  / pd.Timedelta(minutes=1))
    offsets = offset_min.map({m: f"{'+' if m >= 0 else '-'}{int(abs(m)) // 60:02d}:"
                                 f"{int(abs(m)) % 60:02d}" for m in offset_min.dropna().unique()})
    offsets = offsets.astype(STRING_DTYPE)  # all-missing maps to float otherwise
    text = wall.astype(STRING_DTYPE).str.replace(" ", "T", regex=False) + offsets
    return text.where(local.notna())


def _export_frame(spec: Table, df: pd.DataFrame, fmt: str) -> pd.DataFrame:
    """The contract columns of a frame, in contract order, as written to ``fmt``."""
    frame = df[[c for c in spec.column_names if c in df.columns]].copy()
    for c in spec.columns:
        if c.name not in frame.columns:
            continue
        if c.kind == "date":
            dates = pd.to_datetime(frame[c.name])
            frame[c.name] = (dates.dt.strftime("%Y-%m-%d") if fmt == "csv"
                             else dates.dt.date.where(dates.notna(), None))
        elif c.kind == "time":
            local = _as_local_times(frame[c.name])
            frame[c.name] = iso_times(local) if fmt == "csv" else local
    return frame


def write_tables(
    tables: dict[str, pd.DataFrame], path: str | Path, fmt: str = "parquet"
) -> list[Path]:
    """Write contract tables to a dataset directory, one ``NAME.csv``/``NAME.parquet`` each.

    Timestamps are written as ISO 8601 with their offset (CSV, ``+08:00``) or as
    tz-aware Asia/Shanghai timestamps (Parquet); naive times are taken as
    Asia/Shanghai. Dates are ``YYYY-MM-DD`` (CSV) or date32 (Parquet). Only
    columns the contract names are written, in contract order; ``card_token``
    and other derived columns are left out. The files load again with
    :func:`load_dataset` to the same frames.

    Examples
    --------
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> [p.name for p in write_tables({"merchants": pd.DataFrame(
    ...     {"merchant_id": ["M1"], "name": ["a"], "mcc": ["5411"],
    ...      "latitude": [31.2], "longitude": [121.5]})}, d, "csv")]
    ['merchants.csv']
    """
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be 'parquet' or 'csv', got {fmt!r}")
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, df in tables.items():
        if df is None:
            continue
        frame = _export_frame(TABLES[name], df, fmt)
        target = out / f"{name}.{fmt}"
        if fmt == "parquet":
            frame.to_parquet(target, index=False)
        else:
            frame.to_csv(target, index=False, encoding="utf-8")
        written.append(target)
    return written


__all__ = [
    "Dataset",
    "load_dataset",
    "save_rejected",
    "write_tables",
    "iso_times",
    "REJECTED_COLUMNS",
    "ACCOUNTING_COLUMNS",
    "STRING_DTYPE",
    "TOKEN_COLUMN",
]
