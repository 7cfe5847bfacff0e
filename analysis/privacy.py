"""Card-number protection: masking, keyed tokens, and refusal of sensitive columns.

PCI DSS 3.4 allows at most the first six and last four digits of a PAN to be
displayed; this module masks to exactly that at the moment data is read, and
derives a keyed HMAC-SHA256 token (RFC 2104) so transactions of one card can
still be linked without the number. The key comes from the environment variable
``POS_PAN_KEY``; when unset a random key is drawn once per process, so tokens
link within one run only.

Examples
--------
>>> mask_pan("6222021234567890123")
'622202*********0123'
>>> luhn_valid("4111111111111111")
True
>>> mask_text("card 4111 1111 1111 1111 swiped twice")
'card 411111******1111 swiped twice'
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from functools import lru_cache
from typing import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

#: Environment variable holding the HMAC key for card tokens.
KEY_ENV = "POS_PAN_KEY"
MASK_CHAR = "*"
TOKEN_HEX_CHARS = 16

_SEPARATORS = re.compile(r"[\s\-]")
# Every byte the Arrow (RE2) form of _SEPARATORS can match: \s is [\t\n\f\r ] there.
_SEPARATOR_BYTES = b"\t\n\f\r -"
_HEX_DIGITS = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_HMAC_BATCH = 65_536  # values turned into Python bytes at a time
# The key of an n-digit string is its value plus the number of shorter digit strings
# (10 + 100 + ... + 10**(n-1)): one integer per string of 1 to 19 digits, below 2**64.
_MAX_KEY_DIGITS = 19
_SHORTER_DIGIT_STRINGS = pa.array([0] + [(10**n - 10) // 9 for n in range(1, _MAX_KEY_DIGITS + 1)],
                                  pa.uint64())
# A run of 13-19 digits, optionally grouped by single spaces or dashes,
# not touching other digits.
_PAN_RUN = re.compile(r"(?<![0-9])[0-9](?:[ \-]?[0-9]){12,}(?![0-9])")
_LONG_DIGIT_RUN = r"[0-9](?:[ \-]?[0-9]){12,}"
_TRACK2 = re.compile(r";?[0-9]{12,19}[=D][0-9]{4}")
_SENSITIVE_NAME = re.compile(
    r"(track_?[12]|track_?data|cvv|cvc|cvn|cav2|cid_code|card_?verification|"
    r"pin_?block|^pin$|_pin$|^pin_|pinblock|service_?code)",
    re.IGNORECASE,
)


def luhn_valid(digits: str) -> bool:
    """True when ``digits`` (only 0-9) passes the Luhn (mod 10) check."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = ord(ch) - 48
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def _mask_digits(digits: str) -> str:
    return digits[:6] + MASK_CHAR * (len(digits) - 10) + digits[-4:]


def mask_pan(value: object) -> object:
    """Mask one card or account number to first 6 + last 4 digits.

    Separators are removed and every character between the first six and the
    last four becomes ``*`` (so a value already masked keeps its mask). Short
    values (under 11 characters) keep at most their last four. Missing values
    pass through.
    """
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return value
    s = _SEPARATORS.sub("", str(value))
    if len(s) >= 11:
        return s[:6] + MASK_CHAR * (len(s) - 10) + s[-4:]
    return MASK_CHAR * max(len(s) - 4, 0) + s[-4:]


_Arrow = pa.Array | pa.ChunkedArray


def _arrow_strings(values: pd.Series | _Arrow) -> _Arrow:
    """Values as Arrow strings, without a copy where they already are (chunks are kept)."""
    arr = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(values, from_pandas=True)
    if not pa.types.is_string(arr.type) and not pa.types.is_large_string(arr.type):
        arr = pc.cast(arr, pa.string())
    return arr


def _distinct(arr: _Arrow) -> tuple[pa.Array, _Arrow]:
    """The distinct non-missing values of ``arr`` and each row's index into them.

    Missing values get a missing index, so a ``take`` through the indices keeps them
    missing. Digit strings (card numbers as they mostly come) are encoded by an
    integer key, which hashes several times faster than text; other values are
    dictionary-encoded as they are.
    """
    keys = _digit_keys(arr)
    dictionary, indices = _encode(arr if keys is None else keys)
    return (dictionary, indices) if keys is None else (_first_values(arr, indices), indices)


def _encode(arr: _Arrow) -> tuple[pa.Array, _Arrow]:
    """Arrow's dictionary encoding as (dictionary, indices), indices numbered by first appearance.

    Chunked input shares one dictionary across its chunks (the last one holds
    every value), so the indices of all chunks point into it.
    """
    enc = pc.dictionary_encode(arr)
    if isinstance(enc, pa.Array):
        return enc.dictionary, enc.indices
    if not enc.num_chunks:
        return pa.array([], arr.type), pa.chunked_array([], pa.int32())
    return enc.chunk(enc.num_chunks - 1).dictionary, pa.chunked_array([c.indices for c in enc.chunks])


def _first_values(arr: _Arrow, indices: _Arrow) -> pa.Array:
    """The value at the first row of each index (indices numbered by first appearance)."""
    codes = indices.fill_null(-1).to_numpy()
    seen = np.maximum.accumulate(codes)
    first = np.empty(len(codes), dtype=bool)
    first[:1] = codes[:1] >= 0
    np.greater(codes[1:], seen[:-1], out=first[1:])
    return take_sorted(arr, np.flatnonzero(first))


def take_sorted(values: _Arrow, rows: np.ndarray) -> pa.Array:
    """The values at increasing positions ``rows``, taken chunk by chunk.

    (Arrow's take across the chunks of a chunked array first copies them all
    into one array.)

    Examples
    --------
    >>> take_sorted(pa.chunked_array([["a", "b"], ["c"]]), np.array([1, 2])).to_pylist()
    ['b', 'c']
    """
    if isinstance(values, pa.Array):
        return values.take(pa.array(rows, pa.int64()))
    starts = np.cumsum([0] + [len(c) for c in values.chunks])
    cuts = np.searchsorted(rows, starts)
    return pa.concat_arrays([chunk.take(pa.array(rows[lo:hi] - start, pa.int64()))
                             for chunk, start, lo, hi in zip(values.chunks, starts, cuts, cuts[1:])]
                            or [pa.array([], values.type)])


def _digit_keys(arr: _Arrow) -> _Arrow | None:
    """An integer per value, equal exactly where the values are, if all are 1-19 ASCII digits.

    None when a value is empty, longer, or holds anything else; missing values
    stay missing. The key of an n-digit string is its value plus the number of
    shorter digit strings.
    """
    shortest, longest = byte_lengths(arr)
    if shortest < 1 or longest > _MAX_KEY_DIGITS:
        return None
    if any(used.min() < ord("0") or used.max() > ord("9") for used in _byte_ranges(arr)):
        return None
    chunks = arr.chunks if isinstance(arr, pa.ChunkedArray) else [arr]
    return pa.chunked_array([pc.add(pc.cast(c, pa.uint64()),
                                    pc.take(_SHORTER_DIGIT_STRINGS, pc.binary_length(c)))
                             for c in chunks], pa.uint64())


def byte_lengths(values: _Arrow) -> tuple[int, int]:
    """The shortest and longest string in UTF-8 bytes, missing ones aside ((0, 0) if none).

    A chunk at a time: the lengths never take memory for a whole column.

    Examples
    --------
    >>> byte_lengths(pa.array(["4111", None, "", "银行"]))
    (0, 6)
    """
    chunks = values.chunks if isinstance(values, pa.ChunkedArray) else [values]
    extents = [pc.min_max(pc.binary_length(chunk)).as_py() for chunk in chunks]
    extents = [e for e in extents if e["min"] is not None]
    if not extents:
        return 0, 0
    return min(e["min"] for e in extents), max(e["max"] for e in extents)


def _byte_ranges(values: _Arrow) -> Iterator[np.ndarray]:
    """The bytes behind each chunk of Arrow strings (those of missing values too), zero-copy."""
    chunks = values.chunks if isinstance(values, pa.ChunkedArray) else [values]
    width = np.dtype(np.int64 if pa.types.is_large_string(values.type) else np.int32)
    for chunk in chunks:
        offsets, data = chunk.buffers()[1:3]
        if data is None or not len(chunk):
            continue
        ends = np.frombuffer(offsets, width, len(chunk) + 1, chunk.offset * width.itemsize)
        if ends[-1] > ends[0]:
            yield np.frombuffer(data, np.uint8, int(ends[-1] - ends[0]), int(ends[0]))


def holds_any_byte(values: _Arrow, chars: bytes) -> bool:
    """True when the bytes behind Arrow strings include one of ``chars`` (a prefilter).

    The data range of each chunk is scanned at memory speed, first for its
    smallest and largest byte (digits-only data is settled there), then for each
    byte in that range. The range may hold bytes of no value, never fewer, so
    False is certain and True asks for a closer look.

    Examples
    --------
    >>> holds_any_byte(pa.array(["4111 1111", None]), b" -"), holds_any_byte(pa.array(["4111"]), b" -")
    (True, False)
    """
    for used in _byte_ranges(values):
        low, high = used.min(), used.max()
        if any(low <= c <= high and (used == c).any() for c in chars):
            return True
    return False


def _strip_separators(arr: _Arrow) -> _Arrow:
    if holds_any_byte(arr, _SEPARATOR_BYTES):
        return pc.replace_substring_regex(arr, _SEPARATORS.pattern, "")
    return arr


def _mask_pan_arrow(arr: pa.Array) -> pa.Array:
    """:func:`mask_pan` on an Arrow string array, in Arrow's compute kernels."""
    return _mask_digits_arrow(_strip_separators(arr))


def _mask_digits_arrow(arr: pa.Array) -> pa.Array:
    """:func:`_mask_pan_arrow` of values without separators.

    One pass per distinct value length (card numbers have a handful): the span
    between the first six and the last four characters is replaced by as many
    mask characters.
    """
    lengths = pc.utf8_length(arr)
    out = arr
    for length in pc.unique(lengths).drop_null().to_pylist():
        if length <= 4:
            continue
        start, stop = (6, length - 4) if length >= 11 else (0, length - 4)
        masked = pc.utf8_replace_slice(arr, start, stop, MASK_CHAR * (stop - start))
        out = pc.if_else(pc.equal(lengths, length), masked, out)
    return out


def _series_like(arr: pa.Array, values: pd.Series) -> pd.Series:
    return pd.Series(arr.to_pandas(), index=values.index, name=values.name)


def mask_pan_array(values: pd.Series | _Arrow) -> _Arrow:
    """:func:`mask_pan` over a column of card numbers, as Arrow strings.

    Each distinct number is masked once (a card repeats across transactions);
    missing values stay missing.

    Examples
    --------
    >>> mask_pan_array(pa.array(["6222021234567890123", None, "6222021234567890123"])).to_pylist()
    ['622202*********0123', None, '622202*********0123']
    """
    distinct, indices = _distinct(_arrow_strings(values))
    return pc.take(_mask_pan_arrow(distinct), indices)


def mask_pan_series(values: pd.Series) -> pd.Series:
    """Vectorized :func:`mask_pan` for a column of card numbers (missing stays missing).

    Examples
    --------
    >>> masked = mask_pan_series(pd.Series(["6222021234567890123", None]))
    >>> masked[0], bool(pd.isna(masked[1]))
    ('622202*********0123', True)
    """
    return _series_like(mask_pan_array(values), values)


@lru_cache(maxsize=1)
def _random_key() -> bytes:
    return secrets.token_bytes(32)


def pan_key() -> bytes:
    """The HMAC key: ``POS_PAN_KEY`` from the environment, else a per-process random key."""
    env = os.environ.get(KEY_ENV)
    return env.encode("utf-8") if env else _random_key()


def _token_rows(arr: pa.Array, key: bytes) -> np.ndarray:
    """HMAC-SHA256 (RFC 2104) of each value (none missing): rows of 16 hex digits as bytes.

    The keyed inner and outer hash states are computed once and copied per value,
    which is the RFC's construction without re-deriving the padded keys each time;
    the digests become hex text in one vectorized step.
    """
    block = hashlib.sha256().block_size
    k = hashlib.sha256(key).digest() if len(key) > block else key
    k = k.ljust(block, b"\0")
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in k))
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in k))
    digests = bytearray()
    for start in range(0, len(arr), _HMAC_BATCH):
        for value in arr.slice(start, _HMAC_BATCH).cast(pa.large_binary()).to_pylist():
            h = inner.copy()
            h.update(value)
            o = outer.copy()
            o.update(h.digest())
            digests += o.digest()
    head = np.frombuffer(digests, np.uint8).reshape(-1, hashlib.sha256().digest_size)
    head = head[:, :TOKEN_HEX_CHARS // 2]
    rows = np.empty((len(head), TOKEN_HEX_CHARS), np.uint8)
    rows[:, 0::2], rows[:, 1::2] = _HEX_DIGITS[head >> 4], _HEX_DIGITS[head & 0xF]
    return rows


def _take_rows(rows: np.ndarray, indices: _Arrow) -> _Arrow:
    """Strings of fixed-width byte ``rows`` picked by ``indices`` (missing stays missing)."""
    if isinstance(indices, pa.ChunkedArray):
        return pa.chunked_array([_take_rows(rows, c) for c in indices.chunks], pa.large_string())
    width, missing = rows.shape[1], indices.null_count
    if missing:
        valid = indices.is_valid().to_numpy(zero_copy_only=False)
        picked = np.take(rows, indices.drop_null().to_numpy(), axis=0)
        offsets = np.zeros(len(indices) + 1, np.int64)
        np.cumsum(np.where(valid, width, 0), out=offsets[1:])
        bitmap = pa.py_buffer(np.packbits(valid, bitorder="little"))
    else:
        picked = np.take(rows, indices.to_numpy(), axis=0)
        offsets, bitmap = np.arange(0, width * (len(indices) + 1), width, dtype=np.int64), None
    return pa.LargeStringArray.from_buffers(len(indices), pa.py_buffer(offsets),
                                            pa.py_buffer(picked), bitmap, missing)


def pan_token_series(values: pd.Series, key: bytes | None = None) -> pd.Series:
    """HMAC-SHA256 token (first 16 hex digits) of each card number, for linking.

    Computed once per distinct number; separators are ignored so ``"4111 1111…"``
    and ``"41111111…"`` link. Missing values give missing tokens.

    Examples
    --------
    >>> t = pan_token_series(pd.Series(["4111111111111111", "4111 1111 1111 1111"]), b"k")
    >>> t[0] == t[1] == hmac.new(b"k", b"4111111111111111", "sha256").hexdigest()[:16]
    True
    """
    masked, token = protect_card_column(values, key)
    return token


def protect_card_column(values: pd.Series, key: bytes | None = None) -> tuple[pd.Series, pd.Series]:
    """Masked card numbers and their tokens, computing each distinct number once.

    Parameters
    ----------
    values : Series
        Raw card or account numbers (full or already masked).
    key : bytes, optional
        HMAC key; default :func:`pan_key`.

    Returns
    -------
    masked, token : Series
        Aligned with ``values``; missing values stay missing.
    """
    masked, token = protect_card_array(values, key)
    return _series_like(masked, values), _series_like(token, values)


def protect_card_array(values: pd.Series | _Arrow,
                       key: bytes | None = None) -> tuple[_Arrow, _Arrow]:
    """:func:`protect_card_column` on Arrow strings: masked numbers and their tokens.

    Parameters
    ----------
    values : Series or pyarrow (chunked) array
        Raw card or account numbers (full or already masked).
    key : bytes, optional
        HMAC key; default :func:`pan_key`.

    Returns
    -------
    masked, token : pyarrow (chunked) arrays
        Aligned with ``values``; missing values stay missing.
    """
    key = pan_key() if key is None else key
    distinct, indices = _distinct(_arrow_strings(values))
    digits = _strip_separators(distinct)
    return (pc.take(_mask_digits_arrow(digits), indices),
            _take_rows(_token_rows(digits, key), indices))


def _mask_match(m: re.Match) -> str:
    digits = _SEPARATORS.sub("", m.group(0))
    if len(digits) > 19 or luhn_valid(digits):
        return _mask_digits(digits)
    return _mask_group_span(m.group(0))


def _mask_group_span(run: str) -> str:
    """Mask a Luhn-valid 13-19 digit span of whole groups in a grouped run (e.g. "1 4111...")."""
    parts = re.split(r"([ \-])", run)
    groups, seps = parts[0::2], parts[1::2]
    spans = sorted(
        ((i, j) for i in range(len(groups)) for j in range(i + 1, len(groups) + 1)),
        key=lambda ij: ij[0] - ij[1],
    )
    for i, j in spans:
        digits = "".join(groups[i:j])
        if 13 <= len(digits) <= 19 and luhn_valid(digits):
            head = "".join(g + sep for g, sep in zip(groups[:i], seps[:i]))
            tail = "".join(sep + g for sep, g in zip(seps[j - 1:], groups[j:]))
            return head + _mask_digits(digits) + tail
    return run


def mask_text(value: object) -> object:
    """Mask every Luhn-valid run of 13-19 digits (and any run over 19) in free text."""
    if not isinstance(value, str):
        return value
    return _PAN_RUN.sub(_mask_match, value)


def mask_text_series(values: pd.Series) -> pd.Series:
    """Vectorized :func:`mask_text`: only rows holding a long digit run are rewritten."""
    if values.empty:
        return values
    # RE2 (Arrow) prefilter: 13+ digits, optionally grouped; Python's regex only on hits
    arr = _arrow_strings(values)
    if not pc.any(pc.match_substring_regex(arr.drop_null(), _LONG_DIGIT_RUN)).as_py():
        return values  # (the regex kernel spends time on missing slots too)
    maybe = pc.match_substring_regex(arr, _LONG_DIGIT_RUN).fill_null(False)
    s = values.astype("string")
    hit = pd.Series(maybe.to_numpy(zero_copy_only=False), index=values.index)
    hit &= s.str.contains(_PAN_RUN, regex=True, na=False)
    if not hit.any():
        return values
    out = values.copy()
    if out.dtype != object:
        out = out.astype(object)
    out[hit] = [mask_text(v) for v in s[hit].tolist()]
    return out


def sensitive_column_reason(name: str, values: pd.Series | None = None) -> str | None:
    """Why a column must be refused (track data, CVV, PIN block), or None if it may be read."""
    if _SENSITIVE_NAME.search(name):
        return f"its name {name!r} suggests track data, a card verification code or a PIN block"
    if values is not None and not values.empty:
        s = values.dropna().astype("string").head(10_000)
        if len(s) and s.str.contains(_TRACK2, regex=True).any():
            return "it holds values shaped like magnetic-stripe track 2 data (PAN=YYMM...)"
    return None


__all__ = [
    "KEY_ENV",
    "luhn_valid",
    "mask_pan",
    "mask_pan_array",
    "mask_pan_series",
    "pan_key",
    "pan_token_series",
    "protect_card_column",
    "protect_card_array",
    "mask_text",
    "mask_text_series",
    "sensitive_column_reason",
]
