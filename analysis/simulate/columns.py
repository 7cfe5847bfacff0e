"""Build typed contract columns from numpy arrays, fast.

Strings are assembled as Arrow buffers (no Python object per row) and handed to
pandas' default string dtype; times are naive local seconds turned into
tz-aware Asia/Shanghai timestamps.

Examples
--------
>>> import numpy as np
>>> digit_strings(np.array([7, 42]), 4, prefix="T").tolist()
['T0007', 'T0042']
>>> vocab_strings(("none", "sent"), np.array([1, 0, -1])).tolist()
['sent', 'none', None]
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from ..contract import TIMEZONE

_ZERO = ord("0")
#: Naive local seconds minus this give UTC seconds (Asia/Shanghai is UTC+8, no DST since 1991).
UTC_OFFSET_S = 8 * 3600
DAY_S = 86_400


#: "00".."99" as the uint16 whose two bytes are the ASCII digits.
_DIGITS = "0123456789"
_PAIRS16 = np.array([[ord(a), ord(b)] for a in _DIGITS for b in _DIGITS], dtype=np.uint8)
_PAIRS16 = _PAIRS16.view(np.uint16).ravel()


def digit_matrix(values: np.ndarray, width: int) -> np.ndarray:
    """ASCII digits of non-negative integers, zero-padded: a ``(n, width)`` uint8 matrix."""
    v = np.asarray(values)
    v = v.astype(np.uint32 if v.size == 0 or int(v.max()) < 2**32 else np.uint64)
    pairs = (width + 1) // 2
    out = np.empty((len(v), pairs), dtype=np.uint16)
    for col in range(pairs - 1, -1, -1):  # two digits per division, written as one uint16
        out[:, col] = _PAIRS16[v % 100]
        v = v // 100
    digits = out.view(np.uint8)
    return digits[:, 1:] if width % 2 else digits


def matrix_strings(matrix: np.ndarray, lengths: np.ndarray | None = None) -> pa.LargeStringArray:
    """One string per row of an ASCII uint8 matrix, the first ``lengths[i]`` bytes of row i.

    Arrow ``large_string`` (64-bit offsets), the storage of pandas' string dtype, so
    handing the array to pandas copies nothing.
    """
    n, w = matrix.shape
    if lengths is None:
        offsets = np.arange(0, (n + 1) * w, w, dtype=np.int64)
        data = np.ascontiguousarray(matrix).reshape(-1)
    else:
        lengths = np.asarray(lengths, dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        data = matrix[np.arange(w)[None, :] < lengths[:, None]]
    return pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data))


def digit_strings(values: np.ndarray, width: int, prefix: str = "") -> pa.LargeStringArray:
    """``prefix`` followed by each value zero-padded to ``width`` digits."""
    digits = digit_matrix(values, width)
    if prefix or width % 2:
        head = np.frombuffer(prefix.encode("ascii"), dtype=np.uint8)
        full = np.empty((len(digits), len(head) + width), dtype=np.uint8)
        full[:, : len(head)] = head
        full[:, len(head) :] = digits
        digits = full
    return matrix_strings(digits)


def large_strings(values) -> pa.LargeStringArray:
    """A sequence (or a string Series) as an Arrow ``large_string`` array."""
    return pa.array(values, type=pa.large_string())


def vocab_strings(vocab, codes: np.ndarray) -> pa.Array:
    """``vocab[codes]`` as an Arrow string array; a negative code gives null."""
    codes = np.asarray(codes)
    idx = pa.array(codes.astype(np.int32), mask=codes < 0)
    return pa.array(list(vocab), type=pa.large_string()).take(idx)


def str_series(values, name: str | None = None) -> pd.Series:
    """A pandas Series of the default string dtype from an Arrow array or a sequence.

    Examples
    --------
    >>> str_series(["a", None]).dtype
    <StringDtype(na_value=nan)>
    """
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return pd.Series(pd.array(values, dtype="str"), name=name)
    return pd.Series(values, dtype="str", name=name)


def time_series(local_s: np.ndarray, missing: np.ndarray | None = None, name: str | None = None) -> pd.Series:
    """Naive local seconds as tz-aware Asia/Shanghai timestamps (microsecond unit)."""
    utc = (np.asarray(local_s, dtype=np.int64) - UTC_OFFSET_S).astype("datetime64[s]")
    utc = utc.astype("datetime64[us]")
    if missing is not None:
        utc[missing] = np.datetime64("NaT")
    s = pd.Series(utc, name=name, copy=False)
    return s.dt.tz_localize("UTC").dt.tz_convert(TIMEZONE)


def date_series(days: np.ndarray, name: str | None = None) -> pd.Series:
    """``datetime64[D]`` values as naive midnight datetimes (the contract's date type)."""
    return pd.Series(np.asarray(days).astype("datetime64[D]").astype("datetime64[us]"), name=name)


def to_seconds(day: np.datetime64 | np.ndarray) -> np.ndarray:
    """Local midnight of ``datetime64[D]`` value(s) as naive local seconds."""
    return np.asarray(day).astype("datetime64[D]").astype("datetime64[s]").astype(np.int64)


__all__ = [
    "DAY_S",
    "date_series",
    "digit_matrix",
    "digit_strings",
    "large_strings",
    "matrix_strings",
    "str_series",
    "time_series",
    "to_seconds",
    "vocab_strings",
]
