"""Synthetic card and account numbers: Luhn-valid, from realistic BINs.

Examples
--------
>>> import numpy as np
>>> from analysis.privacy import luhn_valid
>>> pans = luhn_numbers(["622202", "427020"], [19, 16], np.array([0, 1, 1]), np.random.default_rng(0))
>>> [len(p) for p in pans.to_pylist()], all(luhn_valid(p) for p in pans.to_pylist())
([19, 16, 16], True)
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from .columns import matrix_strings

MAX_LEN = 19
_ZERO = ord("0")
#: Luhn's doubled-digit sums: d -> 2d, minus 9 above 9.
_DOUBLE = np.array([0, 2, 4, 6, 8, 1, 3, 5, 7, 9], dtype=np.int64)


def luhn_numbers(bins, lengths, which: np.ndarray, rng: np.random.Generator) -> pa.LargeStringArray:
    """One Luhn-valid number per entry of ``which`` (an index into ``bins``/``lengths``).

    Digits after the 6-digit BIN are uniform random; the last is the Luhn check digit.
    """
    which = np.asarray(which)
    length = np.asarray(lengths, dtype=np.int64)[which]
    digits = rng.integers(0, 10, size=(len(which), MAX_LEN), dtype=np.uint8)
    digits[:, :6] = np.array([[ord(c) - _ZERO for c in b] for b in bins], dtype=np.uint8)[which]
    for n_digits in np.unique(length):
        rows = np.flatnonzero(length == n_digits)
        payload = digits[rows, : n_digits - 1]
        # counting from the right with the check digit as 1, even positions are doubled
        doubled = (n_digits - np.arange(n_digits - 1)) % 2 == 0
        total = payload[:, ~doubled].sum(axis=1, dtype=np.int64) + _DOUBLE[payload[:, doubled]].sum(axis=1)
        digits[rows, n_digits - 1] = (10 - total % 10) % 10
    return matrix_strings(digits + np.uint8(_ZERO), length)


__all__ = ["luhn_numbers"]
