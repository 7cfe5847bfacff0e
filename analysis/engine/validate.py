"""The contract's row rules as SQL predicates, and their reasons worded as the loader words them.

:mod:`analysis.engine.load` validates a Parquet dataset on an engine. This module
turns each table of :data:`analysis.contract.TABLES` into one ``SELECT`` (DuckDB
dialect, run by either engine) whose columns are the typed values and one
boolean flag per rule, in the order :func:`analysis.io.load_dataset` checks them:
per column its type checks (number, finite, whole, time, date) then its rules
(empty, allowed, pattern, range); then references, the terminal's owner and
duplicate keys. :func:`reason` words a broken rule exactly as the loader does.

How a stored column is read depends on its Parquet type (:func:`column_mode`):
strings and integers give text; numbers a double; timestamps (with or without a
zone; naive = Asia/Shanghai) and dates their values. Text in a number, time or
date column is converted in Python by the loader's own pandas calls, once per
distinct value, and joined back by a SHA-256 key (``ld_map_*`` tables).

Examples
--------
>>> from analysis.contract import TABLES
>>> plan = table_plan(TABLES["terminals"], {"terminal_id": "string", "merchant_id": "string",
...     "model": "string", "firmware": "string", "connection": "string", "network_segment": "string"})
>>> [c.rule for c in plan.checks][:3]
['empty', 'empty', 'empty']
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..contract import TIMEZONE, Column, Table
from ..io import OWNERS, REFERENCES, REJECTED_COLUMNS, STRING_DTYPE, TOKEN_COLUMN
from ..privacy import mask_pan_series, mask_text, mask_text_series

#: Kinds read as text.
STRING_KINDS = ("id", "code", "text", "pan")
NUMBER_KINDS = ("money", "float", "int")
#: Prefix of every helper table or view the loader makes.
PREFIX = "ld_"
#: Column of the raw views holding the 0-based row number in the file.
ROW = "ld_row"
#: Column of the checked table: bit ``k`` is set where the row breaks check ``k``.
FLAGS = "ld_flags"
ROW_FLAGS = "ld_row_flags"  # the bits of the row rules, before references
#: File line of row 0 (the loader numbers Parquet rows like CSV lines: header = 1).
FIRST_LINE = 2
#: RE2/Java pattern of a digit run that may hold a card number (privacy's prefilter).
PAN_RUN = r"[0-9](?:[ \-]?[0-9]){12,}"
#: Track 2 data: PAN, separator, expiry.
TRACK2 = r"[0-9]{12,19}[=D][0-9]{4}"
_SEPARATORS = r"[\t\n\f\r \-]"  # RE2's \s (not \v) and the dash: what privacy strips
_INF = "CAST('Infinity' AS DOUBLE)"
_EXACT_INT = 2**53
_PATTERN_TEXT = {r"^[0-9]{4}$": "4 digits"}
_SHOW_CHARS = 60
_CROSS_ROW = ("ref", "owner", "duplicate")
# an ISO 8601 time of day followed by a UTC offset (the loader's test for naive text)
_OFFSET = r"(?:T|\s)\d{2}(?::?\d{2}){0,2}(?:[.,]\d+)?\s*(?:[Zz]|[+-]\d{2}(?::?\d{2})?)$"
#: Arrow to pandas as the loader converts: strings in pandas' default string dtype.
ARROW_PANDAS = {pa.large_string(): STRING_DTYPE, pa.string(): STRING_DTYPE}.get
_SQL_TYPES = {"money": "DOUBLE", "float": "DOUBLE", "int": "BIGINT", "time": "TIMESTAMPTZ",
              "date": "TIMESTAMP"}
_EXPECTED = {"money": "numbers (float or decimal)", "float": "numbers", "int": "integers",
             "time": "timestamps or ISO 8601 strings",
             "date": "dates (date32) or YYYY-MM-DD strings"}


class Unsupported(Exception):
    """A column type the engine path does not read like the loader (the loader reads it)."""


def quote(name: str) -> str:
    """A SQL identifier in double quotes (sqlglot turns them into Spark's backticks)."""
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


# ---------------------------------------------------------------------------------
# How a stored column is read
# ---------------------------------------------------------------------------------
def column_mode(kind: str, t: pa.DataType) -> str:
    """How a Parquet column of contract ``kind`` (``"extra"`` if not in the contract) is read.

    Returns one of ``string``, ``integer``, ``null`` (text), ``number``, ``tstz``,
    ``ts``, ``date``, ``map`` (text converted in Python) or ``any`` (an extra column
    only shown in rejected rows). Raises ``TypeError`` with the loader's expectation
    where the loader refuses the type, :class:`Unsupported` where only the loader
    reads it as it does (floats or times in text columns, nanosecond times, bytes).

    Examples
    --------
    >>> column_mode("money", pa.decimal128(12, 2)), column_mode("time", pa.string())
    ('number', 'map')
    """
    while pa.types.is_dictionary(t):
        t = t.value_type
    text = pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)
    if pa.types.is_null(t):
        return "null"
    if kind in STRING_KINDS or kind == "extra":
        if text:
            return "string"
        if pa.types.is_integer(t):
            return "integer"
        if kind == "extra" and (pa.types.is_floating(t) or pa.types.is_decimal(t) or pa.types.is_boolean(t)
                                or pa.types.is_temporal(t)):
            return "any"
        raise Unsupported(f"{t} in a text column")
    if text:
        return "map"
    if kind in NUMBER_KINDS and (pa.types.is_integer(t) or pa.types.is_decimal(t)
                                 or pa.types.is_floating(t)):
        if pa.types.is_float16(t):
            raise Unsupported("float16")
        return "number"
    if kind in ("time", "date") and pa.types.is_timestamp(t):
        if t.unit == "ns":
            raise Unsupported("nanosecond timestamps")
        return "tstz" if t.tz else "ts"
    if kind in ("time", "date") and pa.types.is_date(t):
        return "date"
    raise TypeError(f"the column is stored as {t}; expected {_EXPECTED[kind]}")


# ---------------------------------------------------------------------------------
# The plan of one table: typed values and flags
# ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Check:
    """One rule of one column: its SQL flag (TRUE = broken) and how to word it."""

    column: str
    rule: str
    flag: str
    spec: Column | None = None
    ref: object = None  # the loader's reference or owner rule


@dataclass
class TablePlan:
    """The SQL pieces of one table.

    ``levels`` are three projections, each over the one before (and the first over
    the raw view ``r`` and the value maps): the column as read, the column cleaned
    (missing NaN, infinities set aside), the typed value ``v_<column>``. The
    checks' flags are over the typed level.
    """

    spec: Table
    modes: dict[str, str]
    levels: tuple[dict[str, str], ...] = field(default_factory=lambda: ({}, {}, {}))
    checks: list[Check] = field(default_factory=list)  # in the loader's order
    masked: set[str] = field(default_factory=set)  # text columns with a mask map
    maps: dict[str, str] = field(default_factory=dict)  # column -> mask / number / time / date
    token: str | None = None  # first-level column of the stripped card number to tokenize

    @property
    def values(self) -> list[str]:
        """The typed columns, one per contract column, in contract order."""
        return [f"v_{c.name}" for c in self.spec.columns]


def map_table(table: str, column: str) -> str:
    """Name of the value map of one column."""
    return f"{PREFIX}map_{table}_{column}"


def _flag(sql: str) -> str:
    return f"COALESCE(({sql}), FALSE)"


def strip_sql(x: str) -> str:
    """SQL removing blanks and dashes from a card number (RE2's ``\\s`` and ``-``, as privacy does)."""
    return (f"CASE WHEN regexp_matches({x}, '{_SEPARATORS}') "
            f"THEN regexp_replace({x}, '{_SEPARATORS}', '', 'g') ELSE {x} END")


def mask_pan_sql(x: str) -> str:
    """SQL of :func:`analysis.privacy.mask_pan` on an already stripped value ``x``."""
    n = f"length({x})"
    tail = f"substr({x}, {n} - 3)"
    return (f"CASE WHEN {n} >= 11 THEN substr({x}, 1, 6) || repeat('*', {n} - 10) || {tail} "
            f"WHEN {n} > 4 THEN repeat('*', {n} - 4) || {tail} ELSE {x} END")


def hmac_sql(x: str) -> str:
    """SQL of the HMAC-SHA256 card token (16 hex digits) of ``x``.

    The binary columns ``ipad``/``opad`` hold the key XOR 0x36 / 0x5C (RFC 2104),
    joined from a one-row table so the key never appears in the query text.
    """
    return f"substr(sha256(opad || unhex(sha256(ipad || encode({x})))), 1, 16)"


def rint2_sql(x: str) -> str:
    """SQL of numpy's ``round(x, 2)``: ``rint(x * 100) / 100``, ties to even."""
    y = f"({x} * CAST(100 AS DOUBLE))"
    fl = f"floor({y})"
    return (f"(CASE WHEN abs({y}) >= {2**52} THEN {y} "
            f"WHEN {y} - {fl} = 0.5 THEN CASE WHEN {fl} % 2 = 0 THEN {fl} ELSE {fl} + 1 END "
            f"ELSE round({y}) END / CAST(100 AS DOUBLE))")


def table_plan(spec: Table, modes: dict[str, str], masked: set[str] = frozenset()) -> TablePlan:
    """The typed values and checks of ``spec`` for the present columns' ``modes``.

    ``modes`` maps each column in the file to :func:`column_mode`; absent
    contract columns get NULL (or their default). Text columns in ``masked``
    take their masked values from their map.
    """
    plan = TablePlan(spec, {c: m for c, m in modes.items() if c in spec.column_names}, masked=set(masked))
    for i, col in enumerate(spec.columns):
        if col.name not in modes:
            plan.levels[2][f"v_{col.name}"] = (
                literal(col.default) if col.default is not None
                else f"CAST(NULL AS {_SQL_TYPES.get(col.kind, 'VARCHAR')})")
            continue
        adder = {"money": _number, "float": _number, "int": _number,
                 "time": _time, "date": _date}.get(col.kind, _string)
        adder(plan, col, f"c{i}", f"r.{quote(col.name)}", modes[col.name])
    _cross_row_checks(plan)
    return plan


def _text_of(ref: str, mode: str) -> str:
    """The column as the loader's text (a ``map`` column is stored as text)."""
    if mode in ("string", "map"):
        return ref
    return f"CAST({ref} AS VARCHAR)" if mode == "integer" else "CAST(NULL AS VARCHAR)"


def _string(plan: TablePlan, col: Column, key: str, ref: str, mode: str) -> None:
    base, _, typed = plan.levels
    text = _text_of(ref, mode)
    if col.kind == "pan":
        base[key] = strip_sql(text)
        value = f"NULLIF({mask_pan_sql(key)}, '')"
        if (plan.spec.name, col.name) == ("transactions", "card_number"):
            plan.token = key
    else:
        if col.name in plan.masked:
            plan.maps[col.name] = "mask"
            text = f"COALESCE(m_{key}.masked, {text})"
        base[key] = text
        value = f"NULLIF({key}, '')"
    if col.default is not None:
        value = f"COALESCE({value}, {literal(col.default)})"
    typed[f"v_{col.name}"] = value
    _rules(plan, col, typed_bad=None)


def _number(plan: TablePlan, col: Column, key: str, ref: str, mode: str) -> None:
    base, clean, typed = plan.levels
    bad = []
    if mode == "map":
        plan.maps[col.name] = "number"
        base[key], base[key + "p"] = f"m_{key}.value", f"COALESCE(m_{key}.present, FALSE)"
        plan.checks.append(Check(col.name, "number", _flag(f"{key}p AND {key} IS NULL"), col))
        bad.append(plan.checks[-1].flag)
    else:
        d = f"CAST({ref} AS DOUBLE)" if mode == "number" else "CAST(NULL AS DOUBLE)"
        base[key] = f"CASE WHEN isnan({d}) THEN NULL ELSE {d} END"
    clean[key + "i"] = _flag(f"abs({key}) = {_INF}")
    clean[key + "e"] = f"CASE WHEN abs({key}) = {_INF} THEN NULL ELSE {key} END"
    plan.checks.append(Check(col.name, "finite", key + "i", col))
    bad.append(key + "i")
    e = key + "e"
    if col.kind == "int":
        clean[key + "w"] = _flag(f"abs({e}) > {_EXACT_INT} OR {e} <> floor({e})")
        plan.checks.append(Check(col.name, "whole", key + "w", col))
        bad.append(key + "w")
        typed[f"v_{col.name}"] = f"CAST(CASE WHEN {key}w THEN NULL ELSE {e} END AS BIGINT)"
    else:
        typed[f"v_{col.name}"] = rint2_sql(e) if col.kind == "money" else e
    _rules(plan, col, typed_bad=" OR ".join(bad))


def _time(plan: TablePlan, col: Column, key: str, ref: str, mode: str) -> None:
    values = {
        "tstz": ref,
        "ts": f"CAST({ref} AS TIMESTAMPTZ)",
        "date": f"CAST(CAST({ref} AS TIMESTAMP) AS TIMESTAMPTZ)",
        "map": f"make_timestamp(m_{key}.us) AT TIME ZONE 'UTC'",
    }
    _temporal(plan, col, key, mode, values.get(mode, "CAST(NULL AS TIMESTAMPTZ)"), "time")


def _date(plan: TablePlan, col: Column, key: str, ref: str, mode: str) -> None:
    values = {
        "date": f"CAST({ref} AS TIMESTAMP)",
        "tstz": f"CAST(CAST({ref} AS DATE) AS TIMESTAMP)",
        "ts": f"CAST(CAST({ref} AS DATE) AS TIMESTAMP)",
        "map": f"CAST(DATE '1970-01-01' + CAST(m_{key}.day AS INTEGER) AS TIMESTAMP)",
    }
    _temporal(plan, col, key, mode, values.get(mode, "CAST(NULL AS TIMESTAMP)"), "date")


def _temporal(plan: TablePlan, col: Column, key: str, mode: str, value: str, rule: str) -> None:
    base, _, typed = plan.levels
    base[key] = value
    bad = None
    if mode == "map":
        plan.maps[col.name] = rule
        base[key + "p"] = f"COALESCE(m_{key}.present, FALSE)"
        plan.checks.append(Check(col.name, rule, _flag(f"{key}p AND {key} IS NULL"), col))
        bad = plan.checks[-1].flag
    typed[f"v_{col.name}"] = key
    _rules(plan, col, typed_bad=bad)


def _rules(plan: TablePlan, col: Column, typed_bad: str | None) -> None:
    """Empty required values, values not allowed, wrong form, out of range."""
    v = f"v_{col.name}"
    add = plan.checks.append
    if not col.nullable:
        empty = f"{v} IS NULL" + (f" AND NOT ({typed_bad})" if typed_bad else "")
        add(Check(col.name, "empty", _flag(empty), col))
    if col.allowed is not None:
        add(Check(col.name, "allowed", _flag(f"{v} NOT IN ({', '.join(map(literal, col.allowed))})"), col))
    if col.pattern is not None:
        # the loader matches with Python's $ (the end, or before a final newline): spelled
        # out, as RE2's $ is the end only and Java's also before \r\n
        pattern = col.pattern[:-1] + r"\n?\z" if col.pattern.endswith("$") else col.pattern
        add(Check(col.name, "pattern", _flag(f"NOT regexp_matches({v}, {literal(pattern)})"), col))
    if col.min_value is not None or col.max_value is not None:
        parts = []
        if col.min_value is not None:
            parts.append(f"{v} {'<=' if col.min_exclusive else '<'} {col.min_value!r}")
        if col.max_value is not None:
            parts.append(f"{v} > {col.max_value!r}")
        add(Check(col.name, "range", _flag(" OR ".join(parts)), col))


def _cross_row_checks(plan: TablePlan) -> None:
    """References, the terminal's owner and duplicate keys, after the row rules."""
    for j, ref in enumerate(REFERENCES.get(plan.spec.name, ())):
        flag = _flag(f"c.v_{ref.column} IS NOT NULL AND p{j}.{ref.parent_column} IS NULL")
        plan.checks.append(Check(ref.column, "ref", flag, ref=ref))
    for own in OWNERS.get(plan.spec.name, ()):
        p = _owner_parent(plan, own)
        flag = _flag(f"{p}.{own.parent_key} IS NOT NULL AND c.v_{own.column} IS NOT NULL "
                     f"AND c.v_{own.column} <> {p}.{own.parent_owner}")
        plan.checks.append(Check(own.column, "owner", flag, ref=own))
    for col in plan.spec.columns:
        if col.unique and col.name in plan.modes:
            plan.checks.append(Check(col.name, "duplicate", "", col))


def _owner_parent(plan: TablePlan, own) -> str:
    """Alias of the parent join an owner rule goes through."""
    refs = [r.column for r in REFERENCES.get(plan.spec.name, ())]
    return f"p{refs.index(own.via)}"


# ---------------------------------------------------------------------------------
# The SELECT of the checked table
# ---------------------------------------------------------------------------------
def checked_sql(plan: TablePlan, raw: str, pads: str) -> str:
    """The SELECT giving each row's typed values ``v_<column>`` and broken checks :data:`FLAGS`.

    ``raw`` is the file's view (with :data:`ROW`); ``pads`` the one-row table of
    the HMAC key pads (used by ``transactions``). References and the terminal's
    owner are joined against the parents' used rows (``src_<parent>``); the
    expected owner is kept as ``owner``. Duplicates are found afterwards.
    """
    joins = []
    for i, col in enumerate(plan.spec.columns):
        kind = plan.maps.get(col.name)
        if kind is None:
            continue
        text = _text_of(f"r.{quote(col.name)}", plan.modes[col.name])
        on = (f"CASE WHEN regexp_matches({text}, {literal(PAN_RUN)}) THEN sha256({text}) END"
              if kind == "mask" else f"sha256({text})")
        joins.append(f"LEFT JOIN {map_table(plan.spec.name, col.name)} m_c{i} ON m_c{i}.h = {on}")
    sql = f"SELECT {_select({ROW: f'r.{ROW}', **plan.levels[0]})} FROM {raw} r {' '.join(joins)}"
    for level in plan.levels[1:]:
        sql = f"SELECT b.*, {_select(level)} FROM ({sql}) b" if level else sql
    final = {c: f"b.{c}" for c in [ROW, *plan.values]}
    final[ROW_FLAGS] = _bits({k: c.flag for k, c in enumerate(plan.checks) if c.rule not in _CROSS_ROW})
    tokens = ""
    if plan.token:  # each distinct card number is tokenized once
        card = plan.levels[0][plan.token]
        tokens = (f"LEFT JOIN (SELECT s, {hmac_sql('s')} AS token FROM (SELECT DISTINCT "
                  f"{card} AS s FROM {raw} r) d CROSS JOIN {pads}) tok ON tok.s = b.{plan.token}")
        final[TOKEN_COLUMN] = "tok.token"
    return _with_references(plan, f"SELECT {_select(final)} FROM ({sql}) b {tokens}")


def _select(columns: dict[str, str]) -> str:
    return ", ".join(e if e in (a, f"b.{a}") else f"{e} AS {a}" for a, e in columns.items())


def _with_references(plan: TablePlan, level2: str) -> str:
    """Level 3: the reference and owner flags against the parents' used rows join the mask."""
    joins = [f"LEFT JOIN src_{ref.parent} p{j} ON p{j}.{ref.parent_column} = c.v_{ref.column}"
             for j, ref in enumerate(REFERENCES.get(plan.spec.name, ()))]
    refs = _bits({k: c.flag for k, c in enumerate(plan.checks) if c.rule in ("ref", "owner")})
    owner = [f", {_owner_parent(plan, own)}.{own.parent_owner} AS owner"
             for own in OWNERS.get(plan.spec.name, ())]
    return (f"SELECT c.*, c.{ROW_FLAGS} + {refs} AS {FLAGS}{''.join(owner)} "
            f"FROM ({level2}) c {' '.join(joins)}")


def _bits(flags: dict[int, str]) -> str:
    """SQL of a BIGINT with bit ``k`` set where flag ``k`` holds."""
    terms = [f"CASE WHEN {f} THEN {2**k} ELSE 0 END" for k, f in flags.items()]
    return f"CAST({' + '.join(terms) or '0'} AS BIGINT)"


def broken(flags: int, k: int) -> bool:
    """Whether check ``k`` is set in a row's :data:`FLAGS` mask."""
    return bool(flags >> k & 1)


def bit_sql(column: str, k: int) -> str:
    """SQL: check ``k`` is set in the mask ``column``."""
    return f"({column} // {2**k}) % 2 = 1"


# ---------------------------------------------------------------------------------
# Reasons, worded as the loader words them
# ---------------------------------------------------------------------------------
def show(value: object) -> str:
    """A raw value for a message: masked, shortened, quoted."""
    text = mask_text(str(value))
    return repr(text if len(text) <= _SHOW_CHARS else text[:_SHOW_CHARS] + "…")


def _range_text(col: Column) -> str:
    lo, hi = col.min_value, col.max_value
    if lo is not None and hi is not None:
        return f"between {lo:g} and {hi:g}"
    if lo is not None:
        return f"{'>' if col.min_exclusive else '>='} {lo:g}"
    return f"<= {hi:g}"


def reason(check: Check, row: dict[str, object], info: dict[str, object]) -> str:
    """Why a row breaks ``check``.

    ``row`` holds the row's values as the loader reads them (card data masked);
    ``info`` what the engine found: ``line`` of the rejected parent row (``ref``),
    the expected ``owner``, the ``first`` line of a duplicate key.

    Examples
    --------
    >>> from analysis.contract import TABLES
    >>> col = TABLES["transactions"].column("amount")
    >>> reason(Check("amount", "range", "", col), {"amount": -1.0}, {})
    "'-1.0' is out of range: expected > 0"
    """
    col, v = check.spec, row.get(check.column)
    if check.rule == "ref":
        ref = check.ref
        if info.get("line") is not None:
            return (f"{show(v)} refers to a {ref.parent} row that was rejected "
                    f"({info['file']} line {info['line']})")
        return f"{show(v)} is not in {info['file']}"
    if check.rule == "owner":
        own = check.ref
        return (f"{own.via.split('_')[0]} {show(row.get(own.via))} belongs to "
                f"{own.column.split('_')[0]} {show(info['owner'])}, not {show(v)}")
    texts = {
        "number": lambda: f"expected a number, found {show(v)}",
        "finite": lambda: f"expected a finite number, found {show(v)}",
        "whole": lambda: f"expected a whole number, found {show(v)}",
        "time": lambda: ("expected an ISO 8601 time such as 2025-03-01T14:05:00+08:00, "
                         f"found {show(v)}"),
        "date": lambda: f"expected a date YYYY-MM-DD, found {show(v)}",
        "empty": lambda: "empty, but a value is required",
        "allowed": lambda: f"{show(v)} is not one of {', '.join(col.allowed)}",
        "pattern": lambda: (f"expected {_PATTERN_TEXT.get(col.pattern, f'the form {col.pattern}')}, "
                            f"found {show(v)}"),
        "range": lambda: f"{show(v)} is out of range: expected {_range_text(col)}",
        "duplicate": lambda: (f"duplicate {col.name} {show(v)}: the first row with it "
                              f"(line {info['first']}) is used"),
    }
    return texts[check.rule]()


# ---------------------------------------------------------------------------------
# Values converted in Python, once per distinct text
# ---------------------------------------------------------------------------------
def _sha256(values: list[str]) -> list[str]:
    return [hashlib.sha256(v.encode("utf-8")).hexdigest() for v in values]


def mask_map(values: list[str]) -> pa.Table:
    """Distinct texts holding a long digit run -> the masked text, where masking changes it."""
    pairs = [(v, m) for v in values if (m := mask_text(v)) != v]
    return pa.table({"h": pa.array(_sha256([v for v, _ in pairs]), pa.string()),
                     "masked": pa.array([m for _, m in pairs], pa.string())})


def _stripped(values: list[str]) -> pd.Series:
    """The loader's text cleaning: blanks stripped, blank-only values missing."""
    s = pd.Series(values, dtype=STRING_DTYPE).str.strip()
    return s.mask(s == "")


def conversion_map(kind: str, distinct: pa.Table) -> tuple[pa.Table, tuple[int, int] | None]:
    """Distinct texts of a number, time or date column -> their value, as the loader converts them.

    Returns the map (``h``, ``present``, ``value``/``us``/``day``) and, for times,
    the count of values without a UTC offset and of values read (the loader's note).
    """
    values = distinct.column("v").to_pylist()
    n = np.asarray(distinct.column("n").to_numpy(zero_copy_only=False), dtype="int64")
    text = _stripped(values)
    columns = {"h": pa.array(_sha256(values), pa.string()),
               "present": pa.array(text.notna().to_numpy(), pa.bool_())}
    counts = None
    if kind in NUMBER_KINDS:
        num = pd.to_numeric(text, errors="coerce").astype("float64")
        columns["value"] = pa.array(num.to_numpy(), pa.float64(), mask=num.isna().to_numpy())
    elif kind == "time":
        parsed = pd.to_datetime(text, format="ISO8601", utc=True, errors="coerce")
        naive = (parsed.notna() & ~text.str.contains(_OFFSET, regex=True, na=False)).to_numpy()
        vals = parsed.dt.tz_convert(TIMEZONE)
        if naive.any():
            local = parsed.dt.tz_localize(None).dt.tz_localize(TIMEZONE, ambiguous="NaT",
                                                                nonexistent="NaT")
            vals = vals.where(~naive, local)
        us = vals.dt.as_unit("us")
        columns["us"] = pa.array(us.array.asi8, pa.int64(), mask=us.isna().to_numpy())
        counts = (int(n[naive].sum()), int(n[us.notna().to_numpy()].sum()))
    else:
        dates = pd.to_datetime(text, format="%Y-%m-%d", errors="coerce").dt.normalize().dt.as_unit("us")
        columns["day"] = pa.array(np.floor_divide(dates.array.asi8, 86_400_000_000), pa.int64(),
                                  mask=dates.isna().to_numpy())
    return pa.table(columns), counts


# ---------------------------------------------------------------------------------
# Rejected rows, re-read from the file as the loader reads them
# ---------------------------------------------------------------------------------
def read_rows(file: Path, spec: Table, positions: list[int]) -> tuple[list[dict], list[dict]]:
    """The masked text of whole rows (for ``row``/``value``) and their raw values (for reasons)."""
    pf = pq.ParquetFile(file)
    starts = np.cumsum([0] + [pf.metadata.row_group(i).num_rows for i in range(pf.num_row_groups)])
    pos = np.asarray(positions, dtype="int64")
    group = np.searchsorted(starts, pos, side="right") - 1
    parts = [pf.read_row_group(int(g)).take(pa.array(pos[group == g] - starts[g]))
             for g in np.unique(group)]
    table = pa.concat_tables(parts)
    kinds = {c.name: c.kind for c in spec.columns}
    frame = pa.table([_as_read(a, kinds.get(n, "extra")) for n, a in zip(table.column_names, table.columns)],
                     names=table.column_names).to_pandas(types_mapper=ARROW_PANDAS, date_as_object=False)
    for name in frame.columns:
        kind = kinds.get(name, "extra")
        if kind == "pan":
            frame[name] = mask_pan_series(frame[name])
        elif kind in ("text", "extra"):
            frame[name] = mask_text_series(frame[name])
    raw = frame.to_dict("records")
    names = [mask_text(str(c)) for c in frame.columns]
    texts = [dict(zip(names, map(_cell_text, row))) for row in frame.astype(object).itertuples(index=False)]
    return texts, raw


def _as_read(arr: pa.ChunkedArray, kind: str) -> pa.ChunkedArray:
    """A Parquet column cast as the loader casts it for its contract kind."""
    t = arr.type
    if pa.types.is_dictionary(t):
        return _as_read(arr.cast(t.value_type), kind)
    text = pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)
    if pa.types.is_null(t) or (text and kind not in (*STRING_KINDS, "extra")):
        return arr.cast(pa.large_string())
    if kind in STRING_KINDS or kind == "extra":
        try:
            return arr.cast(pa.large_string())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return pa.chunked_array([pa.array([None if v is None else str(v) for v in arr.to_pylist()],
                                              pa.large_string())])
    if kind in NUMBER_KINDS:
        return arr.cast(pa.float64(), safe=False)
    return arr


def _cell_text(value: object) -> str | None:
    """A raw cell as masked text (None for missing)."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    return mask_text(value.isoformat() if isinstance(value, pd.Timestamp) else str(value))


def rejected_frame(entries: list[tuple]) -> pd.DataFrame:
    frame = pd.DataFrame(entries, columns=list(REJECTED_COLUMNS))
    return frame.astype({c: "int64" if c == "line" else STRING_DTYPE for c in REJECTED_COLUMNS})
