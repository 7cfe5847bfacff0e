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

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

#: Environment variable holding the HMAC key for card tokens.
KEY_ENV = "POS_PAN_KEY"
MASK_CHAR = "*"
TOKEN_HEX_CHARS = 16

_SEPARATORS = re.compile(r"[\s\-]")
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


def _arrow_strings(values: pd.Series | pa.Array) -> pa.Array:
    """Values as one Arrow string array (chunked arrays are combined)."""
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        arr = values
    else:
        arr = pa.array(values, from_pandas=True)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if not pa.types.is_string(arr.type) and not pa.types.is_large_string(arr.type):
        arr = pc.cast(arr, pa.string())
    return arr


def _strip_separators(arr: pa.Array) -> pa.Array:
    if len(arr) and pc.any(pc.match_substring_regex(arr, _SEPARATORS.pattern)).as_py():
        return pc.replace_substring_regex(arr, _SEPARATORS.pattern, "")
    return arr


def _mask_pan_arrow(arr: pa.Array) -> pa.Array:
    """:func:`mask_pan` on an Arrow string array, in Arrow's compute kernels.

    One pass per distinct value length (card numbers have a handful): the span
    between the first six and the last four characters is replaced by as many
    mask characters.
    """
    arr = _strip_separators(arr)
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


def mask_pan_series(values: pd.Series) -> pd.Series:
    """Vectorized :func:`mask_pan` for a column of card numbers (missing stays missing).

    Examples
    --------
    >>> masked = mask_pan_series(pd.Series(["6222021234567890123", None]))
    >>> masked[0], bool(pd.isna(masked[1]))
    ('622202*********0123', True)
    """
    return _series_like(_mask_pan_arrow(_arrow_strings(values)), values)


@lru_cache(maxsize=1)
def _random_key() -> bytes:
    return secrets.token_bytes(32)


def pan_key() -> bytes:
    """The HMAC key: ``POS_PAN_KEY`` from the environment, else a per-process random key."""
    env = os.environ.get(KEY_ENV)
    return env.encode("utf-8") if env else _random_key()


def _tokens(strings: list, key: bytes) -> list:
    """HMAC-SHA256 (RFC 2104) of each string, first 16 hex digits; None stays None.

    The keyed inner and outer hash states are computed once and copied per value,
    which is the RFC's construction without re-deriving the padded keys each time.
    """
    block = hashlib.sha256().block_size
    k = hashlib.sha256(key).digest() if len(key) > block else key
    k = k.ljust(block, b"\0")
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in k))
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in k))
    out = []
    for value in strings:
        if value is None:
            out.append(None)
            continue
        h = inner.copy()
        h.update(value.encode("utf-8"))
        o = outer.copy()
        o.update(h.digest())
        out.append(o.hexdigest()[:TOKEN_HEX_CHARS])
    return out


def _token_arrow(arr: pa.Array, key: bytes) -> pa.Array:
    return pa.array(_tokens(_strip_separators(arr).to_pylist(), key), pa.string())


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
    key = pan_key() if key is None else key
    enc = pc.dictionary_encode(_arrow_strings(values))
    masked = pc.take(_mask_pan_arrow(enc.dictionary), enc.indices)
    token = pc.take(_token_arrow(enc.dictionary, key), enc.indices)
    return _series_like(masked, values), _series_like(token, values)


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
    maybe = pc.match_substring_regex(arr, _LONG_DIGIT_RUN).fill_null(False)
    if not pc.any(maybe).as_py():
        return values
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
    "mask_pan_series",
    "pan_key",
    "pan_token_series",
    "protect_card_column",
    "mask_text",
    "mask_text_series",
    "sensitive_column_reason",
]
