"""The front end's communication log (``terminal_events``).

Sources, each leaving the evidence the contract's causes rely on:

- end-of-day batches: ``batch_upload_ok`` per active terminal and day,
  ``batch_upload_failed`` where the upload failed, nothing where the merchant's
  terminals never upload;
- link failures of transactions: ``timeout`` after a lost response or a late
  ``68``, ``mac_error`` for a response failing its MAC or an ``A0``, sometimes a
  ``connection_reset``; sporadic background failures bring a couple of timeouts;
- ``retransmit`` where message validation caught a corrupted message;
- link noise on a faulty segment: many timeouts, resets, MAC errors and
  retransmits a day, in bursts, cut by a network upgrade;
- ``reboot`` on faulty firmware (spontaneous, and right after a ``96`` reversal);
- rare background timeouts and reboots everywhere else.

Examples
--------
>>> from analysis.simulate.events import EVENT
>>> EVENT["batch_upload_ok"]
4
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from ..contract import EVENTS, REVERSAL_REASONS
from .catalog import (
    BACKGROUND_REBOOTS_PER_DAY,
    BACKGROUND_TIMEOUTS_PER_DAY,
    LINK_KINDS,
    LINK_NOISE_EVENTS,
    MECH,
)
from .city import City
from .columns import DAY_S, large_strings, str_series, time_series, vocab_strings
from .mechanisms import BATCH_AT_S, UPLOAD_FAILED, UPLOADED, Outcome, categorical
from .scenario import FixInstance, Scenario, fixes_active
from .streams import Streams
from .timeline import Timeline
from .traffic import Attempts, sample_rows

EVENT = {e: i for i, e in enumerate(EVENTS)}
#: Detail texts; an event row's detail is an index into this list.
DETAILS = (
    "batch upload aborted: connection lost",  # 0
    "no response within 60 s",  # 1
    "response failed MAC check; reversal queued",  # 2
    "request failed MAC check at host",  # 3
    "response arrived after terminal timeout",  # 4
    "connection reset by peer",  # 5
    "keep-alive timeout",  # 6
    "corrupted message detected; retransmitted",  # 7
    "MAC error on inbound message",  # 8
    "message retransmitted after checksum error",  # 9
    "watchdog restart",  # 10
    "application fault after approval; restarted",  # 11
    "power cycle",  # 12
    "batch uploaded",  # 13 (the record count is appended)
)
_LINK_EVENT = np.array([-1 if k[5] is None else EVENT[k[5]] for k in LINK_KINDS], dtype=np.int8)
_LINK_DETAIL = np.array([1, 1, 2, 2, 3, -1, 4], dtype=np.int16)
_LINK_DELAY = np.array([(60, 1), (60, 1), (1, 3), (1, 3), (1, 1), (0, 1), (30, 29)])  # (from, span) seconds
_NOISE_EVENT = np.array([EVENT[e] for e, _ in LINK_NOISE_EVENTS], dtype=np.int8)
_NOISE_P = np.array([w for _, w in LINK_NOISE_EVENTS])
_NOISE_DETAIL = {"timeout": 6, "connection_reset": 5, "mac_error": 8, "retransmit": 9}
_OPEN_HOURS = (np.arange(24) >= 7) & (np.arange(24) < 23)
#: Daytime window of spontaneous events: (from, span) in seconds after midnight.
DAYTIME = (7 * 3600, 16 * 3600)


class _Log:
    """Accumulates event pieces as (terminal, time, event, detail) arrays."""

    def __init__(self) -> None:
        self.parts: list[tuple[np.ndarray, ...]] = []

    def add(self, terminal, ts, event, detail) -> None:
        n = len(terminal)
        if n:
            self.parts.append(
                (
                    np.asarray(terminal, dtype=np.int32),
                    np.asarray(ts, dtype=np.int64),
                    np.broadcast_to(np.asarray(event, dtype=np.int8), (n,)),
                    np.broadcast_to(np.asarray(detail, dtype=np.int16), (n,)),
                )
            )

    def arrays(self):
        if not self.parts:
            return (np.empty(0, np.int32), np.empty(0, np.int64), np.empty(0, np.int8), np.empty(0, np.int16))
        return tuple(np.concatenate(c) for c in zip(*self.parts))


def _at(tl: Timeline, day: np.ndarray, from_s: int, span_s: int, rng) -> np.ndarray:
    """Local times on simulated days, uniform in ``[from_s, from_s + span_s)`` after midnight."""
    return tl.start_s + day * DAY_S + from_s + rng.integers(0, span_s, len(day))


def _terminal_days(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t, d = np.nonzero(mask)
    return t.astype(np.int32), d.astype(np.int64)


def _batch_events(log: _Log, att: Attempts, out: Outcome, tl: Timeline, rng) -> np.ndarray:
    """Batch upload events; returns the record count (approved purchases) of each ``batch_upload_ok``."""
    t, d = _terminal_days(out.batch == UPLOADED)
    in_batch = out.approved & ~out.voided & ~att.transfer
    records = np.bincount(
        att.terminal.astype(np.int64) * tl.days + att.day, weights=in_batch, minlength=out.batch.size
    )[t.astype(np.int64) * tl.days + d]
    log.add(t, _at(tl, d, BATCH_AT_S, 14 * 60, rng), EVENT["batch_upload_ok"], 13)
    t, d = _terminal_days(out.batch == UPLOAD_FAILED)
    log.add(t, _at(tl, d, BATCH_AT_S, 14 * 60, rng), EVENT["batch_upload_failed"], 0)
    return records.astype(np.int64)


def _transaction_events(log: _Log, att: Attempts, out: Outcome, rng) -> None:
    """Events tied to single attempts: link failures, retransmits, firmware crashes."""
    rows = np.flatnonzero((out.link_kind >= 0) & (_LINK_EVENT[np.maximum(out.link_kind, 0)] >= 0))
    kind = out.link_kind[rows]
    delay = _LINK_DELAY[kind, 0] + rng.integers(0, 1 << 30, len(rows)) % _LINK_DELAY[kind, 1]
    log.add(att.terminal[rows], att.ts[rows] + delay, _LINK_EVENT[kind], _LINK_DETAIL[kind])

    lost = np.flatnonzero(out.link_kind >= 0)
    lost = lost[np.isin(out.link_kind[lost], [0, 1]) & (rng.random(len(lost)) < 0.3)]
    log.add(att.terminal[lost], att.ts[lost] + rng.integers(5, 56, len(lost)), EVENT["connection_reset"], 5)

    bg = np.flatnonzero((out.mech == MECH["background_link"]) & (out.link_kind >= 0))
    extra = np.repeat(bg, rng.integers(1, 3, len(bg)))
    log.add(att.terminal[extra], att.ts[extra] + rng.integers(-180, 181, len(extra)), EVENT["timeout"], 6)

    conv = np.flatnonzero(out.converted)
    log.add(att.terminal[conv], att.ts[conv] + rng.integers(1, 3, len(conv)), EVENT["retransmit"], 7)

    crash = np.flatnonzero(out.reason == REVERSAL_REASONS.index("96"))
    log.add(att.terminal[crash], att.ts[crash] + rng.integers(5, 91, len(crash)), EVENT["reboot"], 11)


def _kept_after_fixes(fixes: tuple[FixInstance, ...], terminal, ts, u) -> np.ndarray:
    """Thin link noise by the network upgrades in place at each event."""
    keep = np.ones(len(ts), dtype=bool)
    for fx in fixes:
        if fx.kind == "network_upgrade":
            keep &= ~(fx.active(terminal, ts) & (u < fx.spec.strength))
    return keep


def _noise_events(log: _Log, scen: Scenario, fixes, tl: Timeline, rng) -> None:
    """Bursts of link noise on faulty segments while the fault runs."""
    for f in scen.of_kind("unstable_link"):
        weights = f.intensity * _OPEN_HOURS[None, :]
        lam = f.spec.link_events_per_day * weights.sum(axis=1) / _OPEN_HOURS.sum()
        counts = rng.poisson(np.outer(f.terminals, lam))
        t, d = _terminal_days(counts > 0)
        reps = counts[t, d]
        t, d = np.repeat(t, reps), np.repeat(d, reps)
        cum = np.cumsum(weights / weights.sum(axis=1, keepdims=True), axis=1)
        hour = sample_rows(cum, d, rng.random(len(d)))
        ts = tl.start_s + d * DAY_S + hour.astype(np.int64) * 3600 + rng.integers(0, 3600, len(d))
        keep = (ts >= f.start_s) & (ts < f.end_s) & _kept_after_fixes(fixes, t, ts, rng.random(len(ts)))
        kind = np.minimum(categorical(_NOISE_P / _NOISE_P.sum(), rng.random(len(ts))), len(_NOISE_P) - 1)
        detail = np.array([_NOISE_DETAIL[e] for e, _ in LINK_NOISE_EVENTS], dtype=np.int16)[kind]
        log.add(t[keep], ts[keep], _NOISE_EVENT[kind][keep], detail[keep])


def _reboots(log: _Log, scen: Scenario, fixes, tl: Timeline, rng) -> None:
    """Spontaneous reboots of terminals on faulty firmware (until a firmware update)."""
    for f in scen.of_kind("faulty_firmware"):
        counts = rng.poisson(f.spec.reboots_per_day, size=(len(f.terminals), tl.days)) * f.terminals[:, None]
        t, d = _terminal_days(counts > 0)
        reps = counts[t, d]
        t, d = np.repeat(t, reps), np.repeat(d, reps)
        ts = _at(tl, d, *DAYTIME, rng)
        keep = f.active(t, ts) & ~fixes_active(fixes, "firmware_update", t, ts)
        log.add(t[keep], ts[keep], EVENT["reboot"], 10)


def _background_events(log: _Log, city: City, quiet: np.ndarray, tl: Timeline, rng, scale: float) -> None:
    """Rare timeouts and reboots anywhere (not on terminals that never upload)."""
    kinds = (("timeout", BACKGROUND_TIMEOUTS_PER_DAY, 6), ("reboot", BACKGROUND_REBOOTS_PER_DAY, 12))
    for event, rate, detail in kinds:
        hit = (rng.random((city.n_terminals, tl.days)) < rate * scale) & ~quiet[:, None]
        t, d = _terminal_days(hit)
        log.add(t, _at(tl, d, *DAYTIME, rng), EVENT[event], detail)


def build_events(
    att: Attempts,
    out: Outcome,
    city: City,
    scen: Scenario,
    tl: Timeline,
    streams: Streams,
    *,
    scale: float = 1.0,
) -> pd.DataFrame:
    """The contract's ``terminal_events`` table, in time order (see the module docstring)."""
    rng = streams("events")
    log = _Log()
    records = _batch_events(log, att, out, tl, rng)
    _transaction_events(log, att, out, rng)
    _noise_events(log, scen, scen.fixes, tl, rng)
    _reboots(log, scen, scen.fixes, tl, rng)
    _background_events(log, city, scen.silent_terminals(city.n_terminals), tl, rng, scale)

    terminal, ts, event, detail = log.arrays()
    keep = (ts >= tl.start_s) & (ts < tl.end_s)
    order = np.flatnonzero(keep)[np.lexsort((event[keep], terminal[keep], ts[keep]))]
    # the batch_upload_ok rows come first in the log: give each its record count
    details = vocab_strings(DETAILS, detail)
    if len(records):
        values, which = np.unique(records, return_inverse=True)
        counted = large_strings([f"batch uploaded: {int(c)} records" for c in values]).take(pa.array(which))
        details = pa.concat_arrays([counted, details.slice(len(records))])
    terminal_ids = large_strings(city.terminals["terminal_id"])
    return pd.DataFrame(
        {
            "terminal_id": str_series(terminal_ids.take(pa.array(terminal[order]))),
            "timestamp": time_series(ts[order]),
            "event": str_series(vocab_strings(EVENTS, event[order])),
            "detail": str_series(details.take(pa.array(order))),
        }
    )


__all__ = ["DETAILS", "EVENT", "build_events"]
