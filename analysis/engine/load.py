"""Load and validate a Parquet dataset directly on an engine, out of core.

:func:`load_on_engine` is :func:`analysis.io.load_dataset` run on an
:class:`~analysis.engine.base.Engine`: the same rules, rejected rows, line
numbers, reasons, masking, card tokens, accounting and notes, but the big tables
never come into pandas. Each Parquet file is read in place; the contract's rules
are SQL flags (:mod:`analysis.engine.validate`); the used rows become the engine
tables ``src_<table>`` (DuckDB spills them to disk beyond its ``memory_limit``)
with the canonical views ``<table>`` over them
(:func:`analysis.engine.tables.canonical_sql`). Only small things come back:
the rejected rows (their raw values re-read from the file by row number, so
reasons and masked rows are worded exactly as the loader words them), the row
accounting, and pandas copies of the small tables (merchants, terminals,
complaints, interventions).

Card numbers are masked and tokenized (HMAC-SHA256 in SQL, the key's pads in a
one-row table, never in the query text) before any row is stored; free text is
masked through a map of the few values holding a long digit run. CSV datasets
(small by nature), and Parquet columns whose type only the loader reads as it
does (floats or times in text columns, nanosecond times, bytes), are loaded by
:func:`~analysis.io.load_dataset` and registered as frames.

Examples
--------
>>> from analysis.engine import open_engine
>>> eng = open_engine("duckdb", memory_limit="2GB")
>>> ds = load_on_engine(eng, "data/case_study")                 # doctest: +SKIP
>>> eng.count("transactions") == ds.accounting.set_index("table").loc["transactions", "used"]
... # doctest: +SKIP
True
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..contract import TABLES, TIMEZONE, Table
from ..exceptions import DatasetError
from ..io import (
    ABSENT_COLUMN_EFFECTS,
    ACCOUNTING_COLUMNS,
    MISSING_TABLE_NOTES,
    REFERENCES,
    STRING_DTYPE,
    TOKEN_COLUMN,
    load_dataset,
)
from ..privacy import mask_text, pan_key, sensitive_column_reason
from .base import Engine
from .tables import EXTRA_COLUMNS, canonical_sql
from .validate import (
    ARROW_PANDAS,
    FIRST_LINE,
    FLAGS,
    PAN_RUN,
    PREFIX,
    ROW,
    TRACK2,
    Check,
    Unsupported,
    bit_sql,
    broken,
    checked_sql,
    column_mode,
    conversion_map,
    literal,
    map_table,
    mask_map,
    quote,
    read_rows,
    reason,
    rejected_frame,
    table_plan,
)

#: Column of ``src_<table>`` holding each used row's line in its file.
LINE_COLUMN = "file_line"
#: Column of ``src_transactions``: the row's 0-based number in its file (orders the used rows
#: as the file does; numbers of rejected rows are missing from it).
POSITION = "_row"
_FORMATS = ("csv", "parquet")
_PADS = f"{PREFIX}hmac"
_DTYPES = {"money": "float64", "float": "float64", "int": "Int64",
           "time": f"datetime64[us, {TIMEZONE}]", "date": "datetime64[us]"}
#: Tables the downstream pandas code needs whole (they are small).
SMALL_TABLES = ("merchants", "terminals", "complaints", "interventions")


@dataclass(frozen=True)
class EngineDataset:
    """A contract dataset loaded on an engine: what :class:`analysis.io.Dataset` holds,
    with the big tables left in the engine.

    Attributes
    ----------
    engine : Engine
        Holds ``src_<table>`` (used rows) and the canonical views ``<table>``.
    root : str
        The dataset directory.
    tables : tuple of str
        The contract tables present (and queryable), in contract order.
    rejected, accounting : pandas.DataFrame
        As :attr:`analysis.io.Dataset.rejected` and :attr:`~analysis.io.Dataset.accounting`.
    notes : tuple of str
        As :attr:`analysis.io.Dataset.notes`.
    merchants, terminals, complaints, interventions : pandas.DataFrame or None
        Copies of the small tables, typed as the loader types them.
    """

    engine: Engine
    root: str
    tables: tuple[str, ...]
    rejected: pd.DataFrame
    accounting: pd.DataFrame
    notes: tuple[str, ...]
    merchants: pd.DataFrame
    terminals: pd.DataFrame
    complaints: pd.DataFrame | None = None
    interventions: pd.DataFrame | None = None

    def has(self, name: str) -> bool:
        """True when the dataset holds the (optional) table ``name``."""
        return name in self.tables

    def __repr__(self) -> str:
        used = self.accounting.set_index("table")["used"]
        parts = ", ".join(f"{name}={int(used[name]):,}" for name in self.tables)
        return (f"EngineDataset({self.root!r} on {self.engine.name}: {parts}; "
                f"rejected={len(self.rejected):,})")

    def summary(self) -> str:
        """The row accounting, the rejections by column and the notes, as text."""
        out = [f"Dataset {self.root} (on {self.engine.name})", self.accounting.to_string(index=False)]
        if len(self.rejected):
            out += ["", "Rejected rows (see the reasons in the rejected files):"]
            counts = self.rejected.groupby(["table", "column"], sort=False).size()
            out += [f"  {t}.{c}: {n:,}" for (t, c), n in counts.items()]
        if self.notes:
            out += ["", "Notes:"] + [f"  - {n}" for n in self.notes]
        return "\n".join(out)


def load_on_engine(engine: Engine, path: str | Path, *, key: bytes | None = None,
                   progress: bool = False) -> EngineDataset:
    """Read, validate, mask and type a dataset directory into ``engine``.

    Parameters
    ----------
    engine : Engine
        Where the tables go (``src_<table>`` and the canonical views).
    path : str or Path
        Directory with one ``NAME.parquet`` (or ``NAME.csv``) per contract table.
    key : bytes, optional
        HMAC key for ``card_token``; default ``POS_PAN_KEY`` or a per-run random key.
    progress : bool
        Show a progress bar over the tables and steps.

    Returns
    -------
    EngineDataset
        Rejected rows, accounting and notes equal to :func:`analysis.io.load_dataset`'s.

    Raises
    ------
    DatasetError
        The loader's whole-file problems, with its messages.

    Examples
    --------
    >>> ds = load_on_engine(open_engine("duckdb"), "data/case_study")   # doctest: +SKIP
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
    schemas = _parquet_schemas(files)
    if schemas is None:
        return _delegate(engine, root, key, progress)
    key = pan_key() if key is None else key
    loaded: dict[str, _Loaded] = {}
    bar = tqdm(TABLES, desc="loading tables", unit="table", disable=not progress)
    for name in bar:
        if files[name] is None:
            notes.append(MISSING_TABLE_NOTES[name])
            continue
        loaded[name] = _TableLoader(engine, TABLES[name], files[name], schemas[name], loaded,
                                    key, bar.set_postfix_str).run()
    _drop(engine, [f"{PREFIX}rejkey_{n}" for n in loaded if engine.has(f"{PREFIX}rejkey_{n}")])
    return _assemble(engine, root, loaded, notes)


# ---------------------------------------------------------------------------------
# Files and whether the engine path reads them like the loader
# ---------------------------------------------------------------------------------
def _locate_files(root: Path) -> tuple[dict[str, Path | None], list[str]]:
    """The file of each contract table (None if absent) and the note on ignored files."""
    files: dict[str, Path | None] = {}
    for name, spec in TABLES.items():
        found = [root / f"{name}.{fmt}" for fmt in _FORMATS if (root / f"{name}.{fmt}").is_file()]
        if len(found) > 1:
            raise DatasetError(f"both {name}.csv and {name}.parquet exist in {root}; keep one of "
                               "them so it is clear which holds the data", file=str(found[0]))
        if not found and spec.required:
            raise DatasetError(
                f"the required table {name!r} is missing: expected {name}.csv or "
                f"{name}.parquet in {root} (required tables: merchants, terminals, transactions)",
                file=str(root / f"{name}.csv"),
            )
        files[name] = found[0] if found else None
    known = {p.name for p in files.values() if p is not None}
    others = sorted(p.name for p in root.iterdir()
                    if p.is_file() and p.suffix in (".csv", ".parquet") and p.name not in known)
    notes = [f"files ignored (not contract tables): {mask_text(', '.join(others))}"] if others else []
    return files, notes


def _parquet_schemas(files: dict[str, Path | None]) -> dict[str, pa.Schema] | None:
    """Each Parquet file's schema, or None when the loader must read the dataset.

    That is when a file is CSV, cannot be opened, or has a column whose type the
    engine path does not read like the loader (:class:`~.validate.Unsupported`).
    """
    schemas = {}
    for name, file in files.items():
        if file is None:
            continue
        if file.suffix != ".parquet":
            return None
        try:
            schema = pq.read_schema(file)
        except (pa.ArrowException, OSError, ValueError):
            return None
        kinds = {c.name: c.kind for c in TABLES[name].columns}
        for f in schema:
            try:
                column_mode(kinds.get(f.name, "extra"), f.type)
            except Unsupported:
                return None
            except TypeError:
                pass  # the loader's DatasetError, raised in its turn
        schemas[name] = schema
    return schemas


def _delegate(engine: Engine, root: Path, key: bytes | None, progress: bool) -> EngineDataset:
    """Load with :func:`analysis.io.load_dataset` and register its frames."""
    ds = load_dataset(root, key=key, progress=progress)
    names = []
    for name, spec in TABLES.items():
        frame = ds.table(name)
        if frame is not None:
            if POSITION in EXTRA_COLUMNS.get(name, ()):
                frame = frame.assign(**{POSITION: np.arange(len(frame), dtype=np.int64)})
            engine.register_frame(f"src_{name}", frame)
            engine.create_view(name, canonical_sql(spec, list(frame.columns)))
            names.append(name)
    return EngineDataset(engine, str(root), tuple(names), ds.rejected, ds.accounting, ds.notes,
                         **{n: ds.table(n) for n in SMALL_TABLES})


def _assemble(engine: Engine, root: Path, loaded: dict[str, "_Loaded"], notes: list[str]) -> EngineDataset:
    """The EngineDataset (accounting checked) from the loaded tables."""
    accounting = pd.DataFrame(
        [(t.name, t.file.name, t.read, t.used, len(t.rejected)) for t in loaded.values()],
        columns=list(ACCOUNTING_COLUMNS),
    ).astype({"table": STRING_DTYPE, "file": STRING_DTYPE})
    assert (accounting["read"] == accounting["used"] + accounting["rejected"]).all(), accounting
    parts = [t.rejected for t in loaded.values() if len(t.rejected)]
    rejected = pd.concat(parts, ignore_index=True) if parts else rejected_frame([])
    small = {n: _small_frame(engine, TABLES[n]) if n in loaded else None for n in SMALL_TABLES}
    return EngineDataset(engine, str(root), tuple(loaded), rejected, accounting,
                         tuple([n for t in loaded.values() for n in t.notes] + notes), **small)


def _small_frame(engine: Engine, spec: Table) -> pd.DataFrame:
    """A small table's used rows as pandas, in file order, typed as the loader types them."""
    cols = ", ".join(spec.column_names)
    frame = engine.fetch_arrow(f"SELECT {cols} FROM src_{spec.name} ORDER BY {LINE_COLUMN}")
    frame = frame.to_pandas(types_mapper=ARROW_PANDAS, date_as_object=False)
    for col in spec.columns:
        values = frame[col.name]
        if col.kind == "time":
            values = pd.to_datetime(values, utc=True).dt.tz_convert(TIMEZONE)
        frame[col.name] = values.astype(_DTYPES.get(col.kind, STRING_DTYPE))
    return frame


# ---------------------------------------------------------------------------------
# One table
# ---------------------------------------------------------------------------------
@dataclass
class _Loaded:
    name: str
    file: Path
    read: int
    used: int
    rejected: pd.DataFrame
    notes: list[str]


class _TableLoader:
    """Validate one Parquet file on the engine into ``src_<table>``."""

    def __init__(self, engine: Engine, spec: Table, file: Path, schema: pa.Schema,
                 loaded: dict[str, _Loaded], key: bytes, step) -> None:
        self.engine, self.spec, self.file, self.schema = engine, spec, file, schema
        self.loaded, self.key, self.step = loaded, key, step
        self.kinds = {c.name: c.kind for c in spec.columns}
        self.raw = f"{PREFIX}raw_{spec.name}"
        self.chk = f"{PREFIX}chk_{spec.name}"
        self.temp: list[str] = []
        self.kept: list[str] = []  # helper tables the view src_<table> reads
        self.read = pq.ParquetFile(file).metadata.num_rows

    def run(self) -> _Loaded:
        """Check the file, create ``src_<table>`` and its view, word the rejected rows."""
        try:
            return self._run()
        except BaseException:
            _drop(self.engine, self.kept)
            raise
        finally:
            _drop(self.engine, self.temp)

    def _run(self) -> _Loaded:
        name = self.spec.name
        self.step(f"{name}: checking columns")
        modes = self._modes()
        self._register_raw()
        counts = self._aggregate(modes)
        self._refuse_sensitive(counts)
        extra = self._check_columns()
        self.step(f"{name}: masking and converting text")
        masked, naive = self._maps(modes)
        plan = table_plan(self.spec, modes, masked=masked)
        if plan.token:
            self._register_pads()
        self.step(f"{name}: checking rows")
        _create_table(self.engine, self.chk, checked_sql(plan, self.raw, _PADS))
        dups = self._duplicates(plan)
        flags = self._rejected_flags(plan, dups)
        self._create_used(plan, [f[ROW] for f in flags if f[FLAGS] == 0])  # listed for a repeated key
        self._create_rejected_keys(dups)
        self.engine.create_view(name, canonical_sql(self.spec, self.engine.columns(f"src_{name}")))
        self.step(f"{name}: wording rejected rows")
        rejected = self._rejected(plan, flags)
        return _Loaded(name, self.file, self.read, self.engine.count(f"src_{name}"), rejected,
                       self._notes(counts, naive, modes, extra))

    # -- whole-file checks, in the loader's order ------------------------------
    def _modes(self) -> dict[str, str]:
        names = [str(n) for n in self.schema.names]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise DatasetError(f"column {dupes[0]!r} appears more than once", file=str(self.file),
                               column=mask_text(dupes[0]))
        modes = {}
        for f in self.schema:
            try:
                modes[f.name] = column_mode(self.kinds.get(f.name, "extra"), f.type)
            except TypeError as err:
                raise DatasetError(str(err), file=str(self.file), column=f.name) from None
        return modes

    def _register_raw(self) -> None:
        """The file as a view with each row's 0-based number (engine-specific reading)."""
        if self.engine.name == "spark":
            from pyspark.sql import functions as F

            df = self.engine.spark.read.parquet(str(self.file))
            df.select("*", F.col("_metadata.row_index").alias(ROW)).createOrReplaceTempView(self.raw)
        else:
            self.engine.create_view(self.raw, f"SELECT *, file_row_number AS {ROW} FROM read_parquet("
                                              f"{literal(str(self.file))}, file_row_number = true)")
        self.temp.append(self.raw)

    def _aggregate(self, modes: dict[str, str]) -> dict[str, object]:
        """Track-2 values per text column and the counts the notes need, in one pass."""
        parts = {}
        for i, name in enumerate(self.schema.names):
            x = f"r.{quote(name)}"
            if modes[name] in ("string", "map"):
                parts[f"t2_{i}"] = (f"bool_or(CASE WHEN length({x}) >= 17 AND (contains({x}, '=') "
                                    f"OR contains({x}, 'D')) THEN regexp_matches({x}, {literal(TRACK2)}) "
                                    "ELSE FALSE END)")
            t = self.schema.field(name).type
            if self.kinds.get(name) == "time" and pa.types.is_timestamp(t) and t.tz is None:
                parts[f"zone_{name}"] = f"count({x})"
            col = next((c for c in self.spec.columns if c.name == name), None)
            if col is not None and col.default is not None:
                text = x if modes[name] == "string" else f"CAST({x} AS VARCHAR)"
                parts[f"default_{name}"] = f"sum(CASE WHEN NULLIF({text}, '') IS NULL THEN 1 ELSE 0 END)"
        if not parts:
            return {}
        sql = f"SELECT {', '.join(f'{e} AS {a}' for a, e in parts.items())} FROM {self.raw} r"
        row = self.engine.fetch_arrow(sql).to_pylist()[0]
        return {k: (v or 0) for k, v in row.items()}

    def _refuse_sensitive(self, counts: dict[str, object]) -> None:
        track2 = sensitive_column_reason("x", pd.Series(["000000000000=0000"]))
        for i, name in enumerate(self.schema.names):
            for why in (sensitive_column_reason(name), track2 if counts.get(f"t2_{i}") else None):
                if why:
                    raise DatasetError(
                        f"the column is refused: {mask_text(why)}. Card track data, card verification "
                        "codes and PIN blocks must never be stored (PCI DSS 3.2); remove the column "
                        "and load again", file=str(self.file), column=mask_text(str(name)))

    def _check_columns(self) -> list[str]:
        columns = list(self.schema.names)
        missing = [c for c in self.spec.required_columns if c not in columns]
        if missing:
            found = ", ".join(mask_text(str(c)) for c in columns) or "no columns"
            raise DatasetError(
                f"missing required column(s) {', '.join(missing)}; the file has: {found}. "
                f"Required for {self.spec.name}: {', '.join(self.spec.required_columns)}",
                file=str(self.file), column=missing[0])
        return [c for c in columns if c not in self.spec.column_names]

    # -- value maps and keys -------------------------------------------------------
    def _maps(self, modes: dict[str, str]) -> tuple[set[str], dict[str, tuple[int, int]]]:
        """Register the value maps; return the text columns masked and naive-time counts."""
        masked, naive = set(), {}
        for col in self.spec.columns:
            mode = modes.get(col.name)
            if mode in (None, "null") or (mode != "map" and col.kind != "text"):
                continue
            text = f"r.{quote(col.name)}" if mode == "string" else f"CAST(r.{quote(col.name)} AS VARCHAR)"
            if col.kind == "text":
                values = self.engine.fetch_arrow(
                    f"SELECT DISTINCT {text} AS v FROM {self.raw} r "
                    f"WHERE regexp_matches({text}, {literal(PAN_RUN)})").column("v").to_pylist()
                frame = mask_map(values)
                if not frame.num_rows:
                    continue
                masked.add(col.name)
            else:
                distinct = self.engine.fetch_arrow(
                    f"SELECT {text} AS v, count(*) AS n FROM {self.raw} r "
                    f"WHERE {text} IS NOT NULL GROUP BY {text}")
                frame, counts = conversion_map(col.kind, distinct)
                if counts is not None:
                    naive[col.name] = counts
            name = map_table(self.spec.name, col.name)
            self.engine.register_frame(name, frame)
            self.temp.append(name)
        return masked, naive

    def _register_pads(self) -> None:
        block = hashlib.sha256().block_size
        k = (hashlib.sha256(self.key).digest() if len(self.key) > block else self.key).ljust(block, b"\0")
        pads = {"ipad": [bytes(b ^ 0x36 for b in k)], "opad": [bytes(b ^ 0x5C for b in k)]}
        self.engine.register_frame(_PADS, pa.table(pads, schema=pa.schema([("ipad", pa.binary()),
                                                                           ("opad", pa.binary())])))
        self.temp.append(_PADS)

    def _duplicates(self, plan) -> dict[str, str]:
        """Per unique column, the table of its repeated keys among valid rows and their first row."""
        dups = {}
        for col in self.spec.columns:
            if not (col.unique and col.name in plan.modes):
                continue
            name = f"{PREFIX}dup_{self.spec.name}_{col.name}"
            v, valid = f"v_{col.name}", f"{FLAGS} = 0 AND v_{col.name} IS NOT NULL"
            # Keys are grouped by their hash first (an integer: far cheaper to group
            # than millions of strings); only rows whose hash repeats are grouped by key.
            _create_table(self.engine, name, (
                f"WITH hits AS (SELECT hash({v}) AS h FROM {self.chk} WHERE {valid} "
                f"GROUP BY hash({v}) HAVING count(*) > 1) "
                f"SELECT {v} AS k, min({ROW}) AS first_row FROM {self.chk} "
                f"WHERE {valid} AND hash({v}) IN (SELECT h FROM hits) GROUP BY {v} HAVING count(*) > 1"))
            self.temp.append(name)
            dups[col.name] = name
        return dups

    def _dup_sql(self, dups: dict[str, str]) -> tuple[str, str]:
        """Joins to the duplicate tables and the SQL of "this row repeats a key"."""
        joins = " ".join(f"LEFT JOIN {t} d{i} ON d{i}.k = c.v_{c}" for i, (c, t) in enumerate(dups.items()))
        repeats = " OR ".join(f"(c.{FLAGS} = 0 AND d{i}.k IS NOT NULL AND c.{ROW} <> d{i}.first_row)"
                              for i in range(len(dups)))
        return joins, f"COALESCE({repeats}, FALSE)" if dups else "FALSE"

    def _create_used(self, plan, repeated: list[int]) -> None:
        """``src_<table>``: a view of the checked rows that break no rule and repeat no key.

        The checked table is kept as it is (no copy of millions of rows): the
        view filters on the flags and leaves out the ``repeated`` rows (valid
        rows repeating a key; a small table when there are any).
        """
        cols = [f"c.v_{c} AS {c}" for c in self.spec.column_names]
        cols += [f"c.{TOKEN_COLUMN}"] if plan.token else []
        if POSITION in EXTRA_COLUMNS.get(self.spec.name, ()):
            cols.append(f"c.{ROW} AS {POSITION}")
        cols.append(f"c.{ROW} + {FIRST_LINE} AS {LINE_COLUMN}")
        where = f"c.{FLAGS} = 0"
        if repeated:
            name = f"{PREFIX}repeats_{self.spec.name}"
            self.engine.register_frame(name, pa.table({"r": pa.array(repeated, pa.int64())}))
            self.kept.append(name)
            where += f" AND NOT EXISTS (SELECT 1 FROM {name} x WHERE x.r = c.{ROW})"
        self.kept.append(self.chk)
        self.engine.create_view(f"src_{self.spec.name}", f"SELECT {', '.join(cols)} FROM {self.chk} c WHERE {where}")

    def _create_rejected_keys(self, dups: dict[str, str]) -> None:
        """Key -> line of the first rejected row with it, for the cascade's reasons."""
        key = self.spec.key
        if not any(r.parent == self.spec.name for refs in REFERENCES.values() for r in refs):
            return
        joins, repeats = self._dup_sql(dups)
        _create_table(self.engine, f"{PREFIX}rejkey_{self.spec.name}", (
            f"SELECT c.v_{key} AS k, min(c.{ROW}) + {FIRST_LINE} AS line FROM {self.chk} c {joins} "
            f"WHERE (c.{FLAGS} <> 0 OR {repeats}) AND c.v_{key} IS NOT NULL GROUP BY c.v_{key}"))

    # -- rejected rows ---------------------------------------------------------------
    def _rejected_flags(self, plan, dups: dict[str, str]) -> list[dict]:
        """Each rejected row's number, broken rules and what their reasons need, in file order."""
        joins, repeats = self._dup_sql(dups)
        cols = [f"c.{ROW}", f"c.{FLAGS}"]
        for k, check in enumerate(plan.checks):
            if check.rule == "duplicate":
                i = list(dups).index(check.column)
                cols.append(f"COALESCE(c.{FLAGS} = 0 AND d{i}.k IS NOT NULL AND c.{ROW} <> d{i}.first_row, "
                            f"FALSE) AS dup{k}")
                cols.append(f"d{i}.first_row + {FIRST_LINE} AS first{k}")
            if check.rule == "ref":
                joins += (f" LEFT JOIN {PREFIX}rejkey_{check.ref.parent} rk{k} "
                          f"ON rk{k}.k = c.v_{check.column} AND {bit_sql(f'c.{FLAGS}', k)}")
                cols.append(f"rk{k}.line AS line{k}")
        if any(c.rule == "owner" for c in plan.checks):
            cols.append("c.owner")
        return self.engine.fetch_arrow(
            f"SELECT {', '.join(cols)} FROM {self.chk} c {joins} WHERE c.{FLAGS} <> 0 OR {repeats} "
            f"ORDER BY c.{ROW}").to_pylist()

    def _rejected(self, plan, flags: list[dict]) -> pd.DataFrame:
        """The rejected rows: broken rules from the engine, values re-read from the file."""
        if not flags:
            return rejected_frame([])
        rows, raw = read_rows(self.file, self.spec, [f[ROW] for f in flags])
        files = {n: t.file.name for n, t in self.loaded.items()}
        return rejected_frame([self._entry(plan.checks, f, rows[i], raw[i], files)
                                for i, f in enumerate(flags)])

    def _entry(self, checks: list[Check], flags: dict, row: dict, raw: dict, files: dict) -> tuple:
        problems = []
        for k, check in enumerate(checks):
            if not (flags.get(f"dup{k}") if check.rule == "duplicate" else broken(flags[FLAGS], k)):
                continue
            info = {"first": flags.get(f"first{k}"), "owner": flags.get("owner"),
                    "line": flags.get(f"line{k}"),
                    "file": files.get(getattr(check.ref, "parent", None))}
            problems.append((check.column, reason(check, raw, info)))
        (column, why), rest = problems[0], problems[1:]
        if rest:
            why += " (also " + "; ".join(f"{c}: {r}" for c, r in rest) + ")"
        value = row.get(column)
        return (self.spec.name, self.file.name, flags[ROW] + FIRST_LINE, column, value, why,
                json.dumps(row, ensure_ascii=False))

    # -- notes -------------------------------------------------------------------------
    def _notes(self, counts: dict, naive: dict, modes: dict[str, str], extra: list[str]) -> list[str]:
        """The loader's notes on this table, in its order."""
        name = self.file.name
        notes = [f"{name}: column {c} is stored without a time zone; its {counts[f'zone_{c}']:,} "
                 f"values were read as {TIMEZONE} local time (the contract's rule)"
                 for c in self.spec.column_names if f"zone_{c}" in counts]
        for col in self.spec.columns:
            if counts.get(f"default_{col.name}"):
                notes.append(f"{name}: {counts[f'default_{col.name}']:,} empty {col.name} values "
                             f"set to the default {col.default}")
            if naive.get(col.name, (0, 0))[0]:
                n, total = naive[col.name]
                notes.append(f"{name}: {n:,} of {total:,} {col.name} values had no UTC offset and were "
                             f"read as {TIMEZONE} local time (the contract's rule)")
        absent = [c for c in self.spec.columns if c.name not in modes]
        notes += [f"{name}: no {c.name} column; every row uses the default {c.default}"
                  for c in absent if c.default is not None]
        plain = [c.name for c in absent if c.default is None]
        if plain:
            notes.append(f"{name}: no optional column(s) {', '.join(plain)}; left empty")
        notes += [f"{name}: without {c}, {ABSENT_COLUMN_EFFECTS[c]}"
                  for c in plain if c in ABSENT_COLUMN_EFFECTS]
        if extra:
            notes.append(f"{name}: columns not in the contract were checked for card data and "
                         f"ignored: {', '.join(mask_text(str(c)) for c in extra)}")
        return notes


def _create_table(engine: Engine, name: str, sql: str) -> None:
    """``engine.create_table``; on Spark with the lineage cut (:meth:`SparkEngine.create_checkpoint`).

    Each table here is built on the one before; on Spark their plans would nest
    ever deeper (planning time and driver memory grow with every step) and a
    dropped helper view would uncache every table built on it.
    """
    if engine.name == "spark":
        engine.create_checkpoint(name, sql)
    else:
        engine.create_table(name, sql)


def _drop(engine: Engine, names: list[str]) -> None:
    """Forget the loader's helper tables, views and frames."""
    for name in names:
        if engine.name == "spark":
            engine.spark.catalog.dropTempView(name)
        elif name in getattr(engine, "_frames", {}):
            engine.con.unregister(name)
            engine._frames.pop(name)
        else:
            views = engine.con.execute("SELECT count(*) FROM duckdb_views() WHERE view_name = ?",
                                       [name]).fetchall()
            engine.con.execute(f"DROP {'VIEW' if views[0][0] else 'TABLE'} IF EXISTS {name}")


__all__ = ["EngineDataset", "LINE_COLUMN", "load_on_engine"]
