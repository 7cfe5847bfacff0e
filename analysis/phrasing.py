"""Column-wise text: ``str.format`` templates and phrases built a column at a time.

Formatting strings row by row (``template.format_map(row)`` over a mapping per
row) costs microseconds a row; on millions of incidents that is minutes. These
helpers build the same text from whole columns: each value is still formatted
with :func:`format` and its format spec, exactly as :meth:`str.format` does (so
the text is byte-identical, ``3`` for an integer, ``3.0`` for a float), but the
per-row mapping, lookups and branching are replaced by column operations and
boolean masks.

Texts are object arrays of ``str``, one per row. The rows are a
:class:`pandas.DataFrame` or a :class:`Rows` (some rows of a frame, read a
column at a time); a branch of a phrase is built only on the rows it applies to
(:func:`cases`), as an ``if`` would.

Examples
--------
>>> f = pd.DataFrame({"terminal_id": ["K1", "K2", "K3"], "reboots": [0, 1, 3]})
>>> fill("terminal {terminal_id} ({reboots:03d})", f).tolist()
['terminal K1 (000)', 'terminal K2 (001)', 'terminal K3 (003)']
>>> cases(f, (truthy(f["reboots"]), lambda r: concat(
...     "rebooted ", plural(r["reboots"], "time")))).tolist()
['', 'rebooted 1 time', 'rebooted 3 times']
"""

from __future__ import annotations

import string
from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import repeat

import numpy as np
import pandas as pd

#: One text per row: an object array of ``str``.
Texts = np.ndarray

_FORMATTER = string.Formatter()
_CONVERSIONS: dict[str | None, Callable[[object], object] | None] = {
    None: None,
    "s": str,
    "r": repr,
    "a": ascii,
}


class Rows:
    """Some rows of a frame, read a column at a time, with values derived on demand.

    ``rows[name]`` is column ``name`` of the frame at these rows or, when
    ``derived`` has ``name``, ``derived[name](rows)`` (a Series or texts) —
    computed for these rows only, the first time it is read, and kept. Every
    Series it gives has the default index, so that they align. The rows of
    :meth:`take` read what these rows have already read from them. It is the
    part of the :class:`pandas.DataFrame` interface the builders use
    (``rows[name]``, ``len(rows)``, ``rows.take(positions)``) without copying the
    columns nobody reads or formatting values for rows that do not show them.

    Parameters
    ----------
    frame : DataFrame
    positions : array of int, optional
        Positions of the rows in ``frame``; default all.
    derived : mapping of str to callable, optional
        Values computed from the rows, by name (they take precedence over columns).

    Examples
    --------
    >>> f = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})
    >>> rows = Rows(f, np.array([2, 0]), {"a2": lambda r: r["a"] * 2})
    >>> rows["b"].tolist(), len(rows), rows.take([1])["a2"].tolist()
    (['z', 'x'], 2, [2])
    """

    __slots__ = ("_frame", "_positions", "_derived", "_parent", "_in_parent", "_values")

    def __init__(
        self,
        frame: pd.DataFrame,
        positions: np.ndarray | None = None,
        derived: Mapping[str, Callable[[Rows], pd.Series | Texts]] | None = None,
    ) -> None:
        self._frame = frame
        self._positions = positions
        self._derived = derived or {}
        self._parent: Rows | None = None
        self._in_parent: np.ndarray | None = None
        self._values: dict[str, pd.Series | Texts] = {}

    def __len__(self) -> int:
        return len(self._frame) if self._positions is None else len(self._positions)

    def __getitem__(self, name: str) -> pd.Series | Texts:
        if name not in self._values:
            self._values[name] = self._read(name)
        return self._values[name]

    def _read(self, name: str) -> pd.Series | Texts:
        if self._parent is not None and name in self._parent._values:
            return _take(self._parent._values[name], self._in_parent)
        if name in self._derived:
            return self._derived[name](self)
        column = self._frame[name]
        if self._positions is None:
            return column.reset_index(drop=True)
        return _take(column, self._positions)

    def take(self, positions: Sequence[int] | np.ndarray) -> Rows:
        """The rows at ``positions`` (of these rows), like :meth:`pandas.DataFrame.take`."""
        positions = np.asarray(positions, dtype=np.int64)
        at = positions if self._positions is None else self._positions[positions]
        rows = Rows(self._frame, at, self._derived)
        rows._parent, rows._in_parent = self, positions
        return rows


def _take(values: pd.Series | Texts, positions: np.ndarray) -> pd.Series | Texts:
    """``values`` at ``positions``; a Series gets the default index (and keeps its dtype)."""
    if isinstance(values, pd.Series):
        return pd.Series(values.array.take(positions), dtype=values.dtype, copy=False)
    return values[positions]


#: What the builders read: a frame or some of its rows.
Frame = pd.DataFrame | Rows
#: A branch of :func:`cases`: where it holds, and its text, texts or builder.
Branch = tuple[np.ndarray | bool, str | Texts | Callable[[Frame], Texts]]


def text(values: pd.Series | Sequence, spec: str = "", conversion: str | None = None) -> Texts:
    """Each value as ``"{:spec}".format(value)`` (``"{!conversion:spec}"``) would write it.

    The values are those :meth:`pandas.Series.tolist` gives (Python scalars,
    ``Timestamp``, ``nan`` or ``<NA>`` for missing), as a row mapping read them.
    A column of a type whose equal values always print alike (strings,
    integers, booleans, times, floats without ``-0.0``) is formatted once per
    distinct value; texts (``str`` objects only, no spec) are returned as they
    are (the input array itself: do not change it).

    Examples
    --------
    >>> text(pd.Series([3, 4])).tolist(), text(pd.Series([3.0, float("nan")]), "g").tolist()
    (['3', '4'], ['3', 'nan'])
    >>> text(pd.Series([0.456]), ".0%").tolist(), text(pd.Series(["a"]), "", "r").tolist()
    (['46%'], ["'a'"])
    """
    convert = _CONVERSIONS[conversion]
    if spec == "" and convert is None and _is_texts(values):
        return values.to_numpy() if isinstance(values, pd.Series) else values
    if isinstance(values, pd.Series) and _distinct_values_print_alike(values):
        codes, uniques = pd.factorize(values, use_na_sentinel=False)
        return text(uniques, spec, conversion)[codes]
    items: Iterable = values.tolist() if hasattr(values, "tolist") else values
    if convert is not None:
        items = map(convert, items)
    return _array([format(v, spec) for v in items])


def _is_texts(values) -> bool:
    """True for an object array (or Series) of ``str`` only."""
    return (
        isinstance(values, np.ndarray | pd.Series)
        and values.dtype == object
        and pd.api.types.infer_dtype(values, skipna=False) == "string"
    )


def _distinct_values_print_alike(values: pd.Series) -> bool:
    """True when equal values of the column (as :func:`pandas.factorize` finds them) print alike."""
    dtype = values.dtype
    if isinstance(dtype, pd.StringDtype | pd.DatetimeTZDtype | pd.BooleanDtype):
        return True
    if dtype.kind in "biumM":
        return True
    if dtype.kind == "f":  # 0.0 and -0.0 are equal but print differently
        floats = values.to_numpy(dtype=float, na_value=np.nan)
        return not np.signbit(floats[floats == 0]).any()
    return False


def fill(template: str, rows: Frame, aliases: Mapping[str, str] | None = None) -> Texts:
    """``template.format_map(row)`` for every row, a column at a time.

    Parameters
    ----------
    template : str
        A :meth:`str.format` template whose fields are names of ``rows``
        (columns, or values a :class:`Rows` derives), with any conversion and
        format spec; no attribute, index or nested fields.
    rows : DataFrame or Rows
    aliases : mapping of str to str, optional
        Fields that read another name of ``rows``.

    Examples
    --------
    >>> f = pd.DataFrame({"code": ["51", "05"], "share": [0.5, 0.25]})
    >>> fill("{code}: {share:.0%} {{x}} {c!r}", f, {"c": "code"}).tolist()
    ["51: 50% {x} '51'", "05: 25% {x} '05'"]
    """
    aliases = aliases or {}
    pieces: list[str | Texts] = []
    for literal, field, spec, conversion in _FORMATTER.parse(template):
        if literal:
            pieces.append(literal)
        if field is not None:
            pieces.append(text(rows[aliases.get(field, field)], spec, conversion))
    return concat(*pieces, size=len(rows))


def concat(*pieces: str | Texts | Sequence[str], size: int | None = None) -> Texts:
    """The pieces joined row by row; a ``str`` piece is the same on every row.

    ``size`` (the number of rows) is needed only when every piece is a ``str``.

    Examples
    --------
    >>> concat("terminal ", np.array(["K1", "K2"], dtype=object), "!").tolist()
    ['terminal K1!', 'terminal K2!']
    >>> concat("same", size=2).tolist()
    ['same', 'same']
    """
    columns = [p for p in pieces if not isinstance(p, str)]
    if not columns:
        return np.full(size or 0, "".join(pieces), dtype=object)
    n = len(columns[0])
    lists = [
        repeat(p, n) if isinstance(p, str) else p.tolist() if isinstance(p, np.ndarray) else p
        for p in pieces
    ]
    return _array(list(map("".join, zip(*lists, strict=True))))


def join(parts: Sequence[Texts], sep: str) -> Texts:
    """``sep.join`` of each row's non-empty parts.

    Examples
    --------
    >>> a, b = np.array(["x", "", ""], dtype=object), np.array(["y", "z", ""], dtype=object)
    >>> join([a, b], "; ").tolist()
    ['x; y', 'z', '']
    """
    out = parts[0]
    for part in parts[1:]:
        add = part != ""
        if not add.any():
            continue
        out = out.copy()
        both = add & (out != "")
        out[add & ~both] = part[add & ~both]
        out[both] = concat(out[both], sep, part[both])
    return out


def cases(rows: Frame, *branches: Branch) -> Texts:
    """One text per row from the first branch whose condition holds, else ``""``.

    Like ``if``/``elif``: a branch ``(mask, then)`` applies to the rows where
    ``mask`` holds and no earlier branch did. ``then`` is a ``str``, texts for
    every row (of which the branch's are kept), or a function of the branch's
    rows (``rows.take(...)``) giving their texts, called only when some row
    takes the branch. ``True`` as the mask is ``else``.

    Examples
    --------
    >>> f = pd.DataFrame({"n": [0, 1, 5]})
    >>> cases(f, (f["n"].eq(0).to_numpy(), "none"),
    ...       (True, lambda r: concat(text(r["n"]), " seen"))).tolist()
    ['none', '1 seen', '5 seen']
    """
    out = np.full(len(rows), "", dtype=object)
    free = np.ones(len(rows), dtype=bool)
    for mask, then in branches:
        hit = free & np.asarray(mask, dtype=bool)
        if not hit.any():
            continue
        if callable(then):
            out[hit] = then(rows.take(np.flatnonzero(hit)))
        else:
            out[hit] = then if isinstance(then, str) else then[hit]
        free &= ~hit
    return out


def truthy(values: pd.Series) -> np.ndarray:
    """Each value's truth (``if value:``) as a boolean array; a missing ``pd.NA`` is false.

    Examples
    --------
    >>> truthy(pd.Series([0, 2, float("nan")])).tolist()
    [False, True, True]
    >>> truthy(pd.Series([True, pd.NA, False], dtype="boolean")).tolist()
    [True, False, False]
    """
    if isinstance(values.dtype, np.dtype) and values.dtype.kind in "biuf":
        return values.to_numpy() != 0
    return np.fromiter(
        (v is not pd.NA and bool(v) for v in values.tolist()), dtype=bool, count=len(values)
    )


def as_int(values: pd.Series) -> np.ndarray:
    """``int(value)`` of each value (truncating floats) as ``int64``."""
    return values.astype("int64").to_numpy()


def integers(values: pd.Series) -> Texts:
    """``str(int(value))`` of each value.

    Examples
    --------
    >>> integers(pd.Series([3.0, 2.9, -1.5])).tolist()
    ['3', '2', '-1']
    """
    return _digits(as_int(values))


def plural(counts: pd.Series, word: str) -> Texts:
    """``"<n> <word>"`` with ``n = int(count)`` and an ``s`` unless ``n`` is 1.

    Examples
    --------
    >>> plural(pd.Series([1, 2, 0]), "time").tolist()
    ['1 time', '2 times', '0 times']
    """
    n = as_int(counts)
    return concat(_digits(n), f" {word}", np.where(n == 1, "", "s"))


def _digits(n: np.ndarray) -> Texts:
    return _array(list(map(str, n.tolist())))


def day(values: pd.Series) -> Texts:
    """Each moment's calendar day ``YYYY-MM-DD`` (in its own zone); ``""`` when missing.

    Examples
    --------
    >>> day(pd.Series(pd.to_datetime(["2026-03-05 23:00", None]))).tolist()
    ['2026-03-05', '']
    """
    codes, uniques = pd.factorize(pd.to_datetime(values), use_na_sentinel=False)
    days = _array(["" if pd.isna(t) else str(t.date()) for t in uniques])
    return days[codes]


def lookup(values: pd.Series, mapping: Callable[[object], str]) -> Texts:
    """``mapping(value)`` of each value, called once per distinct value.

    Examples
    --------
    >>> lookup(pd.Series(["51", None, "51"], dtype="str"), {"51": "funds"}.get).tolist()
    ['funds', None, 'funds']
    """
    codes, uniques = pd.factorize(values, use_na_sentinel=False)
    out = np.empty(len(uniques), dtype=object)
    out[:] = [mapping(u) for u in uniques.tolist()]
    return out[codes]


def _array(items: list[str]) -> Texts:
    """``items`` as an object array (never split into characters or made 2-d)."""
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


__all__ = [
    "Branch",
    "Frame",
    "Rows",
    "Texts",
    "as_int",
    "cases",
    "concat",
    "day",
    "fill",
    "integers",
    "join",
    "lookup",
    "plural",
    "text",
    "truthy",
]
