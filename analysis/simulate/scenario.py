"""Faults and fixes resolved against a city: which terminals, which times, which merchant.

A spec may leave its target open (``UnstableLink(segment=None)``,
``MisconfiguredMerchant(None, ...)``, ``Fix(..., scope_value=None, ...)``); here
it is fixed to the case segment, a merchant away from other faults, or the
target of the fault the fix acts on. Each fault gets an id ``F1``, ``F2``, ...
in config order; each fix a change id ``CHG-001``, ...

Examples
--------
>>> from analysis.simulate.specs import CityConfig, UnstableLink, Fix
>>> from analysis.simulate.streams import Streams
>>> from analysis.simulate.city import build_city
>>> from analysis.simulate.timeline import build_timeline
>>> cfg = CityConfig(seed=1, n_merchants=30, n_neighbourhoods=3, days=10,
...                  faults=(UnstableLink(start="2026-03-04"),),
...                  fixes=(Fix("network_upgrade", "network_segment", None, "2026-03-08"),))
>>> s = Streams(1); city = build_city(cfg, s)
>>> sc = resolve(cfg, city, build_timeline(cfg), s)
>>> sc.faults[0].fault_id, sc.fixes[0].scope_value == city.segments[city.case_segment]
('F1', True)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .catalog import BANK_NAMES, CYCLES, FIRMWARES, MODEL_NAMES
from .city import City
from .columns import str_series, time_series
from .specs import (
    FAULT_KINDS,
    FIX_TARGETS,
    BankOutage,
    CityConfig,
    FaultyFirmware,
    Fix,
    FrozenAccount,
    MisconfiguredMerchant,
    UnstableLink,
    local_seconds,
)
from .streams import Streams
from .timeline import Timeline

HOURS = 24


@dataclass(frozen=True)
class FaultInstance:
    """One injected fault, resolved.

    ``terminals`` is a boolean mask over the city's terminals it can touch
    (all of them for issuer and bank outages); ``segment``, ``merchant`` and
    ``bank`` are indices (-1 where not applicable); ``start_s``/``end_s`` local seconds
    (``end_s`` is the simulation end when the spec has none). ``intensity`` is a
    ``[day, hour]`` multiplier of the fault's rate (bursts; ones for most faults).
    """

    fault_id: str
    kind: str
    spec: object
    start_s: int
    end_s: int
    terminals: np.ndarray = field(repr=False)
    segment: int = -1
    merchant: int = -1
    bank: int = -1
    intensity: np.ndarray = field(default=None, repr=False)

    def active(self, terminal: np.ndarray, ts: np.ndarray) -> np.ndarray:
        """True where an event on ``terminal`` at ``ts`` falls inside the fault."""
        return self.terminals[terminal] & (ts >= self.start_s) & (ts < self.end_s)


@dataclass(frozen=True)
class FixInstance:
    """One applied fix, resolved: its change id, scope value and the terminals it covers."""

    change_id: str
    spec: Fix
    scope_value: str
    applied_s: int
    terminals: np.ndarray = field(repr=False)

    @property
    def kind(self) -> str:
        return self.spec.kind

    def active(self, terminal: np.ndarray, ts: np.ndarray) -> np.ndarray:
        """True where the fix is in place for ``terminal`` at ``ts``."""
        return self.terminals[terminal] & (ts >= self.applied_s)


@dataclass(frozen=True)
class Scenario:
    """The resolved faults and fixes of a city."""

    faults: tuple[FaultInstance, ...]
    fixes: tuple[FixInstance, ...]

    def of_kind(self, kind: str) -> list[FaultInstance]:
        """The faults of one kind (e.g. ``"unstable_link"``), in config order."""
        return [f for f in self.faults if f.kind == kind]

    def silent_terminals(self, n_terminals: int) -> np.ndarray:
        """Terminals of merchants that never upload (``no_upload``): their lines stay quiet."""
        quiet = np.zeros(n_terminals, dtype=bool)
        for f in self.of_kind("misconfigured_merchant"):
            if f.spec.mode == "no_upload":
                quiet |= f.terminals
        return quiet

    def without(self, change_id: str) -> tuple[FixInstance, ...]:
        """All fixes but one (for the counterfactual run)."""
        return tuple(f for f in self.fixes if f.change_id != change_id)


def fixes_active(
    fixes: tuple[FixInstance, ...], kind: str, terminal: np.ndarray, ts: np.ndarray
) -> np.ndarray:
    """True where any fix of ``kind`` is in place for the terminal at the time."""
    out = np.zeros(len(ts), dtype=bool)
    for fx in fixes:
        if fx.kind == kind:
            out |= fx.active(terminal, ts)
    return out


def scope_terminals(city: City, scope_type: str, scope_value: str) -> np.ndarray:
    """Boolean mask of the city's terminals a scope covers (ValueError for an unknown value).

    Examples
    --------
    >>> from analysis.simulate.specs import CityConfig
    >>> from analysis.simulate.streams import Streams
    >>> from analysis.simulate.city import build_city
    >>> city = build_city(CityConfig(seed=1, n_merchants=30, n_neighbourhoods=3), Streams(1))
    >>> int(scope_terminals(city, "all", "*").sum()) == city.n_terminals
    True
    """
    t = city.terminals
    if scope_type == "all":
        return np.ones(city.n_terminals, dtype=bool)
    if scope_type == "network_segment":
        return city.t_segment == city.segment_index(scope_value)
    if scope_type == "merchant":
        return city.t_merchant == city.merchant_index(scope_value)
    column, known = {"terminal_model": ("model", MODEL_NAMES), "firmware": ("firmware", FIRMWARES)}[
        scope_type
    ]
    if scope_value not in known:
        raise ValueError(f"{scope_type} {scope_value!r} is unknown; expected one of {list(known)}")
    return (t[column] == scope_value).to_numpy()


def _bursts(rng: np.random.Generator, days: int, sigma: float) -> np.ndarray:
    """``[day, hour]`` multipliers with mean 1: a day level times an hourly burst."""
    day = rng.lognormal(0, 0.5, days) / np.exp(0.125)
    hour = rng.lognormal(0, sigma, (days, HOURS)) / np.exp(sigma**2 / 2)
    return (day[:, None] * hour).astype(np.float32)


def _pick_merchant(city: City, excluded: set[int], rng: np.random.Generator) -> int:
    """A T1 merchant of ordinary volume (40th-80th percentile), not excluded, off the case segment."""
    ok = (city.m_cycle == CYCLES.index("T1")) & (city.m_segment != city.case_segment)
    lo, hi = np.quantile(city.m_rate, [0.4, 0.8])
    ok &= (city.m_rate >= lo) & (city.m_rate <= hi)
    ok[list(excluded)] = False
    candidates = np.flatnonzero(ok)
    if not len(candidates):
        raise ValueError("no merchant left to carry a merchant fault; use a larger city")
    return int(rng.choice(candidates))


def _fault_target(spec, city: City, excluded: set[int], rng) -> dict:
    """What a fault spec acts on: ``terminals`` mask and ``segment``/``merchant``/``bank`` indices."""
    if isinstance(spec, UnstableLink):
        seg = city.case_segment if spec.segment is None else city.segment_index(spec.segment)
        return {"terminals": city.t_segment == seg, "segment": seg}
    if isinstance(spec, FaultyFirmware):
        return {"terminals": scope_terminals(city, "firmware", spec.firmware)}
    if isinstance(spec, (MisconfiguredMerchant, FrozenAccount)):
        if spec.merchant_id is None:
            m = _pick_merchant(city, excluded, rng)
        else:
            m = city.merchant_index(spec.merchant_id)
        return {"terminals": city.t_merchant == m, "merchant": m}
    everywhere = np.ones(city.n_terminals, dtype=bool)
    if isinstance(spec, BankOutage):
        if spec.bank not in BANK_NAMES:
            raise ValueError(f"BankOutage.bank {spec.bank!r} is unknown; expected one of {list(BANK_NAMES)}")
        return {"terminals": everywhere, "bank": BANK_NAMES.index(spec.bank)}
    return {"terminals": everywhere}  # IssuerOutage


def _default_scope(spec: Fix, city: City, faults: list[FaultInstance]) -> str:
    """The scope value of a fix that left it open: the target of the fault it acts on."""
    if spec.scope_type == "all":
        return "*"
    target = FIX_TARGETS.get(spec.kind)
    fault = next((f for f in faults if f.kind == target), None)
    if fault is None:
        raise ValueError(f"{spec!r} leaves scope_value open but there is no {target} fault to take it from")
    if spec.scope_type == "network_segment":
        return city.segments[fault.segment]
    if spec.scope_type == "merchant":
        return str(city.merchants["merchant_id"].iat[fault.merchant])
    if spec.scope_type in ("firmware", "terminal_model"):
        fw = fault.spec.firmware
        if spec.scope_type == "firmware":
            return fw
        return str(city.terminals.loc[city.terminals["firmware"] == fw, "model"].iat[0])
    raise ValueError(f"cannot infer scope_value for {spec!r}")


def resolve(config: CityConfig, city: City, tl: Timeline, streams: Streams) -> Scenario:
    """Resolve the config's faults and fixes against ``city`` (see the module docstring)."""
    rng = streams("scenario")
    busy = {city.anchor}
    faults: list[FaultInstance] = []
    for spec in config.faults:  # segment faults first claim their merchants
        if isinstance(spec, UnstableLink):
            claimed = city.t_merchant[_fault_target(spec, city, busy, rng)["terminals"]]
            busy |= set(np.unique(claimed).tolist())
    for i, spec in enumerate(config.faults, start=1):
        target = _fault_target(spec, city, busy, rng)
        busy.add(target.get("merchant", city.anchor))
        end = getattr(spec, "end", None)
        faults.append(
            FaultInstance(
                fault_id=f"F{i}",
                kind=FAULT_KINDS[type(spec)],
                spec=spec,
                start_s=int(local_seconds(spec.start).astype(np.int64)),
                end_s=int(local_seconds(end).astype(np.int64)) if end else tl.end_s,
                intensity=_bursts(rng, tl.days, spec.burstiness) if isinstance(spec, UnstableLink) else None,
                **target,
            )
        )
    fixes = []
    for i, spec in enumerate(config.fixes, start=1):
        value = spec.scope_value if spec.scope_value is not None else _default_scope(spec, city, faults)
        fixes.append(
            FixInstance(
                change_id=f"CHG-{i:03d}",
                spec=spec,
                scope_value=value,
                applied_s=int(local_seconds(spec.applied_at).astype(np.int64)),
                terminals=scope_terminals(city, spec.scope_type, value),
            )
        )
    return Scenario(tuple(faults), tuple(fixes))




#: Default ``interventions.description`` by fix kind ({scope} is the scope value).
FIX_DESCRIPTIONS = {
    "network_upgrade": "运营商更换线路设备并升级接入链路（{scope}）",
    "message_validation": "前置系统启用报文完整性校验（MAC/格式）与自动重传（{scope}）",
    "firmware_update": "终端固件升级（{scope}）",
    "config_correction": "更正商户结算账户与终端参数配置（{scope}）",
    "other": "其他变更（{scope}）",
}


def interventions_table(scen: Scenario) -> pd.DataFrame:
    """The contract's ``interventions`` table: one row per fix, in config order."""
    fx = scen.fixes
    return pd.DataFrame(
        {
            "change_id": str_series([f.change_id for f in fx]),
            "applied_at": time_series(np.array([f.applied_s for f in fx], dtype=np.int64)),
            "scope_type": str_series([f.spec.scope_type for f in fx]),
            "scope_value": str_series([f.scope_value for f in fx]),
            "kind": str_series([f.kind for f in fx]),
            "description": str_series(
                [f.spec.description or FIX_DESCRIPTIONS[f.kind].format(scope=f.scope_value) for f in fx]
            ),
        }
    )


__all__ = [
    "FaultInstance",
    "FixInstance",
    "Scenario",
    "fixes_active",
    "interventions_table",
    "resolve",
    "scope_terminals",
]
