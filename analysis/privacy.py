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

#: Environment variable holding the HMAC key for card tokens.
KEY_ENV = "POS_PAN_KEY"
MASK_CHAR = "*"
TOKEN_HEX_CHARS = 16

_SEPARATORS = re.compile(r"[\s\-]")
# A run of 13-19 digits, optionally grouped by single spaces or dashes,
# not touching other digits.
_PAN_RUN = re.compile(r"(?<![0-9])[0-9](?:[ \-]?[0-9]){12,}(?![0-9])")
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

    Separators are removed. A value already masked keeps its mask, and any digit
    beyond the first six and the last four is masked too. Short values (under
    10 digits) keep at most their last four digits. Missing values pass through.
    """
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return value
    s = _SEPARATORS.sub("", str(value))
    if len(s) >= 11:
        head, middle, tail = s[:6], s[6:-4], s[-4:]
        return head + re.sub(r"[0-9]", MASK_CHAR, middle) + tail
    return re.sub(r"[0-9]", MASK_CHAR, s[:-4]) + s[-4:]


def mask_pan_series(values: pd.Series) -> pd.Series:
    """Vectorized :func:`mask_pan` for a column of card numbers."""
    s = values.astype("string").str.replace(_SEPARATORS, "", regex=True)
    n = s.str.len()
    out = pd.Series(pd.NA, index=values.index, dtype="string")
    long = n.fillna(0) >= 11
    if long.any():
        ls = s[long]
        middle = ls.str.slice(6, -4).str.replace(r"[0-9]", MASK_CHAR, regex=True)
        out[long] = ls.str.slice(0, 6) + middle + ls.str.slice(-4)
    short = n.notna() & ~long
    if short.any():
        ss = s[short]
        out[short] = ss.str.slice(0, -4).str.replace(r"[0-9]", MASK_CHAR, regex=True) + ss.str.slice(-4)
    return out.astype(object).where(out.notna(), None)


@lru_cache(maxsize=1)
def _random_key() -> bytes:
    return secrets.token_bytes(32)


def pan_key() -> bytes:
    """The HMAC key: ``POS_PAN_KEY`` from the environment, else a per-process random key."""
    env = os.environ.get(KEY_ENV)
    return env.encode("utf-8") if env else _random_key()


def pan_token_series(values: pd.Series, key: bytes | None = None) -> pd.Series:
    """HMAC-SHA256 token (first 16 hex digits) of each card number, for linking.

    Computed once per distinct number; separators are ignored so ``"4111 1111…"``
    and ``"41111111…"`` link. Missing values give missing tokens.
    """
    key = pan_key() if key is None else key
    s = values.astype("string").str.replace(_SEPARATORS, "", regex=True)
    codes, uniques = pd.factorize(s, use_na_sentinel=True)
    toks = np.array(
        [hmac.digest(key, u.encode("utf-8"), hashlib.sha256).hex()[:TOKEN_HEX_CHARS] for u in uniques],
        dtype=object,
    )
    out = np.full(len(codes), None, dtype=object)
    ok = codes >= 0
    out[ok] = toks[codes[ok]]
    return pd.Series(out, index=values.index, dtype=object)


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
    s = values.astype("string")
    hit = s.str.contains(_PAN_RUN, regex=True, na=False)
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
    "mask_text",
    "mask_text_series",
    "sensitive_column_reason",
]
