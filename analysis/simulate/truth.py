"""Ground truth: the true cause of every incident, the faults, the true effect of each fix.

Nothing here is ever read by the analysis; :func:`analysis.simulate.write_city`
writes it to its own directory.

The true effect of a fix is computed with common random numbers: the whole
city is run again with that fix (and any fix on the same scope within 24 hours
of it) removed, every random draw unchanged, and the contract's unsettled rate
of the fix's scope after it is compared: ``true_effect = rate_after -
rate_after_without_fix``.

Examples
--------
>>> from analysis.simulate.truth import CAUSE_CODES
>>> CAUSE_CODES[0], len(CAUSE_CODES)
('PROCESSING_DELAY', 13)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa

from ..contract import CAUSES, INCIDENT_OUTCOMES, TIMEZONE
from .catalog import CODE_CAUSES, CODES, MECHANISM_NAMES, MECHANISMS
from .city import City
from .columns import str_series
from .mechanisms import Outcome, apply_mechanisms
from .scenario import FixInstance, Scenario
from .settlement import O, OUTCOME_NAMES, Money, unsettled
from .timeline import Timeline
from .traffic import Attempts

CAUSE_CODES: tuple[str, ...] = tuple(CAUSES)
#: Cause of each fault kind.
FAULT_CAUSES = {
    "unstable_link": "NETWORK_COMMUNICATION",
    "faulty_firmware": "SYSTEM_FAULT",
    "misconfigured_merchant": "MERCHANT_CONFIG",
    "frozen_account": "ACCOUNT_FROZEN_OR_CLOSED",
    "bank_outage": "COUNTERPARTY_BANK",
    "issuer_outage": "SYSTEM_FAULT",
}
SAME_SCOPE_WINDOW_S = 24 * 3600
#: Version of the simulator's model; bump when the same seed would give other data.
SIMULATOR_VERSION = "1.0"
INCIDENT_COLUMNS = ("txn_id", "merchant_id", "terminal_id", "outcome", "cause", "mechanism", "fault_id")
FIX_EFFECT_FIELDS = (
    "change_id", "kind", "scope", "applied_at", "evaluated_with", "before_from", "after_until",
    "n_before", "n_after", "rate_before", "rate_after", "rate_after_without_fix", "true_effect",
    "link_failure_rate_before", "link_failure_rate_after", "link_failure_rate_after_without_fix",
    "true_effect_link_failures",
)
_LINK_MECHS = [MECHANISM_NAMES.index(m) for m in ("unstable_link", "background_link", "batch_upload_failed")]


@dataclass(frozen=True)
class Truth:
    """The ground truth of a simulated city.

    Attributes
    ----------
    incidents : pandas.DataFrame
        One row per incident transaction: ``txn_id, merchant_id, terminal_id,
        outcome, cause, mechanism, fault_id`` (empty for background incidents).
    tickets : pandas.DataFrame
        ``ticket_id, txn_id`` (missing for a ticket with no transaction), ``cause``.
    faults : list of dict
        Each injected fault: id, kind, cause, window, target, merchants, incident count.
    fix_effects : list of dict
        Each fix: the unsettled rate of its scope before and after, after without
        the fix (common random numbers) and the true effect.
    manifest : dict
        Seed, config, as-of, supermarket, faulty segment, code version, counts.

    Examples
    --------
    >>> from analysis.simulate import CityConfig, simulate_city
    >>> truth = simulate_city(CityConfig(seed=2, n_merchants=20, n_neighbourhoods=2, days=7,
    ...                                  case_segment_size=5)).truth
    >>> list(truth.incidents.columns)
    ['txn_id', 'merchant_id', 'terminal_id', 'outcome', 'cause', 'mechanism', 'fault_id']
    >>> int(truth.cause_counts().sum()) == len(truth.incidents)
    True
    """

    incidents: pd.DataFrame
    tickets: pd.DataFrame
    faults: list = field(default_factory=list)
    fix_effects: list = field(default_factory=list)
    manifest: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        causes = self.incidents["cause"].value_counts()
        top = ", ".join(f"{c}={n:,}" for c, n in causes.head(4).items())
        return (
            f"Truth({len(self.incidents):,} incidents [{top}, ...], {len(self.tickets):,} tickets, "
            f"{len(self.faults)} faults, {len(self.fix_effects)} fixes)"
        )

    def cause_counts(self) -> pd.Series:
        """Incidents per true cause, every contract cause listed."""
        return self.incidents["cause"].value_counts().reindex(list(CAUSE_CODES), fill_value=0)


def iso(local_s: int | None) -> str | None:
    """Local seconds as ISO 8601 with the +08:00 offset (None passes through)."""
    if local_s is None:
        return None
    return pd.Timestamp(int(local_s), unit="s").tz_localize(TIMEZONE).isoformat()


def true_causes(att: Attempts, out: Outcome, money: Money) -> np.ndarray:
    """Index into :data:`CAUSE_CODES` of each attempt's true cause; -1 where no incident."""
    by_mech = np.array(
        [-1 if c is None else CAUSE_CODES.index(c) for c in MECHANISMS.values()], dtype=np.int8
    )
    by_code = np.array(
        [[CAUSE_CODES.index(CODE_CAUSES[c][t]) if c in CODE_CAUSES else -1 for c in CODES] for t in (0, 1)],
        dtype=np.int8,
    )
    cause = by_mech[out.mech]
    from_code = cause < 0
    cause[from_code] = by_code[att.transfer[from_code].astype(np.int64), np.maximum(out.code[from_code], 0)]
    cause[money.outcome == O["in_cycle"]] = CAUSE_CODES.index("PROCESSING_DELAY")
    incident = np.isin(money.outcome, [O[o] for o in INCIDENT_OUTCOMES])
    cause[~incident] = -1
    if (incident & (cause < 0)).any():  # every incident must carry a cause
        raise AssertionError("an incident without a true cause: the mechanism table is incomplete")
    return cause


def incidents_table(att, out, money, cause, ledger, city: City, scen: Scenario) -> pd.DataFrame:
    """Truth rows for every incident, in transaction order."""
    rows = np.flatnonzero(cause >= 0)
    rows = rows[np.argsort(ledger.position[rows], kind="stable")]
    pos = ledger.position[rows]
    fault_ids = [f.fault_id for f in scen.faults]
    return pd.DataFrame(
        {
            "txn_id": str_series(ledger.txn_ids.take(pa.array(pos))),
            "merchant_id": ledger.table["merchant_id"].iloc[pos].reset_index(drop=True),
            "terminal_id": ledger.table["terminal_id"].iloc[pos].reset_index(drop=True),
            "outcome": str_series(np.asarray(OUTCOME_NAMES, dtype=object)[money.outcome[rows]]),
            "cause": str_series(np.asarray(CAUSE_CODES, dtype=object)[cause[rows]]),
            "mechanism": str_series(np.asarray(MECHANISM_NAMES, dtype=object)[out.mech[rows]]),
            "fault_id": str_series(np.asarray(fault_ids + [""], dtype=object)[out.fault[rows]]),
        }
    )


def _same_scope_group(fx: FixInstance, fixes: tuple[FixInstance, ...]) -> list[FixInstance]:
    """Fixes on ``fx``'s scope within 24 hours of it: evaluated as one (the contract's rule)."""
    return [
        g for g in fixes
        if (g.spec.scope_type, g.scope_value) == (fx.spec.scope_type, fx.scope_value)
        and abs(g.applied_s - fx.applied_s) <= SAME_SCOPE_WINDOW_S
    ]


#: Decimals kept for rates in the truth files (no long digit runs in committed text).
RATE_DECIMALS = 8


def _rate(flag: np.ndarray, rows: np.ndarray) -> float | None:
    """Share of ``rows`` where ``flag`` holds (None for no rows: JSON has no NaN)."""
    return round(float(flag[rows].mean()), RATE_DECIMALS) if rows.any() else None


def _difference(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(a - b, RATE_DECIMALS)


def fix_effects(
    att: Attempts, city: City, scen: Scenario, tl: Timeline, out: Outcome, money: Money, *, scale: float = 1.0
) -> list[dict]:
    """The true effect of each fix on its scope's unsettled rate (see the module docstring).

    The *after* period runs from the fix (the earliest of its group) to the end;
    the *before* period is as long, but starts no earlier than the previous fix
    on the same scope and the simulation start. Besides the unsettled rate, the
    share of attempts hit by a link failure (lost, corrupted or late message, or
    a failed batch upload) is reported the same way.
    """
    effects = []
    for fx in scen.fixes:
        group = _same_scope_group(fx, scen.fixes)
        applied = min(g.applied_s for g in group)
        same_scope = [g.applied_s for g in scen.fixes
                      if (g.spec.scope_type, g.scope_value) == (fx.spec.scope_type, fx.scope_value)]
        earlier = [t for t in same_scope if t < applied]
        before_from = max([tl.start_s, applied - (tl.end_s - applied)] + earlier)
        scope = fx.terminals[att.terminal]
        after = scope & (att.ts >= applied)
        before = scope & (att.ts >= before_from) & (att.ts < applied)
        ids = {g.change_id for g in group}
        others = tuple(g for g in scen.fixes if g.change_id not in ids)
        cf_out = apply_mechanisms(att, city, scen, tl, others, scale=scale)
        cf_unsettled = unsettled(att, cf_out, city, tl)
        link, cf_link = np.isin(out.mech, _LINK_MECHS), np.isin(cf_out.mech, _LINK_MECHS)
        rates = {
            "rate_before": _rate(money.unsettled, before),
            "rate_after": _rate(money.unsettled, after),
            "rate_after_without_fix": _rate(cf_unsettled, after),
            "link_failure_rate_before": _rate(link, before),
            "link_failure_rate_after": _rate(link, after),
            "link_failure_rate_after_without_fix": _rate(cf_link, after),
        }
        effects.append(
            {
                "change_id": fx.change_id,
                "kind": fx.kind,
                "scope": {"scope_type": fx.spec.scope_type, "scope_value": fx.scope_value},
                "applied_at": iso(fx.applied_s),
                "evaluated_with": sorted(ids - {fx.change_id}),
                "before_from": iso(before_from),
                "after_until": iso(tl.end_s),
                "n_before": int(before.sum()),
                "n_after": int(after.sum()),
                **{k: rates[k] for k in ("rate_before", "rate_after", "rate_after_without_fix")},
                "true_effect": _difference(rates["rate_after"], rates["rate_after_without_fix"]),
                **{k: v for k, v in rates.items() if k.startswith("link")},
                "true_effect_link_failures": _difference(
                    rates["link_failure_rate_after"], rates["link_failure_rate_after_without_fix"]
                ),
            }
        )
    return effects


def faults_list(scen: Scenario, city: City, incidents: pd.DataFrame) -> list[dict]:
    """One dict per injected fault: what, where, when, whom it hit, and what fixed it."""
    out = []
    merchant_ids = city.merchants["merchant_id"].to_numpy()
    for f in scen.faults:
        hit = incidents.loc[incidents["fault_id"] == f.fault_id]
        target = {}
        if f.kind == "unstable_link":
            target["network_segment"] = city.segments[f.segment]
        elif f.kind == "faulty_firmware":
            target["firmware"] = f.spec.firmware
        elif f.merchant >= 0:
            target["merchant_id"] = str(merchant_ids[f.merchant])
        elif f.kind == "bank_outage":
            target["payee_bank"] = f.spec.bank
        else:
            target["scope"] = "all"
        city_wide = f.kind in ("bank_outage", "issuer_outage")
        exposed = [] if city_wide else np.unique(city.t_merchant[f.terminals])
        affected = sorted(hit["merchant_id"].unique().tolist())
        out.append(
            {
                "fault_id": f.fault_id,
                "kind": f.kind,
                "cause": FAULT_CAUSES[f.kind],
                "start": iso(f.start_s),
                "end": iso(f.end_s) if getattr(f.spec, "end", None) else None,
                "target": target,
                "spec": asdict(f.spec),
                "exposed_merchant_ids": sorted(str(merchant_ids[m]) for m in exposed),
                "merchant_ids": affected,
                "shared": len(affected) >= 3,
                "n_incidents": int(len(hit)),
                "incidents_by_mechanism": {
                    k: int(v) for k, v in hit["mechanism"].value_counts().sort_index().items()
                },
                "fixed_by": [fx.change_id for fx in scen.fixes if (fx.terminals & f.terminals).any()
                             and fx.kind in _FIXES_OF.get(f.kind, ())],
            }
        )
    return out


def build_manifest(
    config, city: City, scen: Scenario, tl: Timeline, tables: dict, incidents, tickets
) -> dict:
    """Provenance and key facts: seed, config, period, as-of, the case's supermarket and segment, counts."""
    from .. import __version__

    merchant_ids = city.merchants["merchant_id"].to_numpy()
    links = scen.of_kind("unstable_link")
    faulty = [city.segments[f.segment] for f in links]
    case_members = np.flatnonzero(city.m_segment == city.case_segment)
    counts = incidents["cause"].value_counts()
    return {
        "simulator_version": SIMULATOR_VERSION,
        "package_version": __version__,
        "seed": config.seed,
        "start": iso(tl.start_s),
        "end": iso(tl.end_s),
        "as_of": iso(tl.end_s - 1),
        "supermarket_merchant_id": str(merchant_ids[city.anchor]),
        "supermarket_name": str(city.merchants["name"].iat[city.anchor]),
        "case_segment": city.segments[city.case_segment],
        "case_segment_merchant_ids": [str(merchant_ids[m]) for m in case_members],
        "faulty_segment": faulty[0] if faulty else None,
        "faulty_segments": faulty,
        "fault_start": iso(links[0].start_s) if links else None,
        "rows": {name: int(len(df)) for name, df in tables.items()},
        "incidents": int(len(incidents)),
        "incidents_by_cause": {c: int(counts.get(c, 0)) for c in CAUSE_CODES},
        "tickets": {"total": int(len(tickets)), "matched": int(tickets["txn_id"].notna().sum()),
                    "unmatched": int(tickets["txn_id"].isna().sum())},
        "config": config.to_dict(),
    }


_FIXES_OF = {
    "unstable_link": ("network_upgrade", "message_validation"),
    "faulty_firmware": ("firmware_update",),
    "misconfigured_merchant": ("config_correction",),
}

__all__ = [
    "CAUSE_CODES",
    "FAULT_CAUSES",
    "SIMULATOR_VERSION",
    "Truth",
    "build_manifest",
    "fix_effects",
    "faults_list",
    "incidents_table",
    "iso",
    "true_causes",
]
