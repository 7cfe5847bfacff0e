"""Run a simulation end to end, and write its dataset and ground truth.

Examples
--------
>>> from analysis.simulate import CityConfig, UnstableLink, simulate_city
>>> city = simulate_city(CityConfig(seed=5, n_merchants=20, n_neighbourhoods=2, days=5,
...                                 case_segment_size=5, faults=(UnstableLink(start="2026-03-03"),)))
>>> sorted(city.tables)[:3]
['complaints', 'interventions', 'merchants']
>>> city.truth.manifest["faulty_segment"] == city.truth.manifest["case_segment"]
True
"""

from __future__ import annotations

import json
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..contract import TABLES
from ..io import write_tables
from ..privacy import mask_pan_series
from .city import build_city
from .complaints import build_complaints
from .events import build_events
from .mechanisms import apply_mechanisms
from .scenario import interventions_table, resolve
from .settlement import settle, settlements_table
from .specs import CityConfig
from .streams import Streams
from .timeline import build_timeline
from .traffic import draw_attempts
from .transactions import build_transactions
from .truth import Truth, build_manifest, fix_effects, faults_list, incidents_table, true_causes

PAN_COLUMNS = ("card_number", "payee_account")
TRUTH_TABLES = ("incidents", "tickets")
TRUTH_JSON = ("faults", "fix_effects", "manifest")


@dataclass(frozen=True)
class SimulatedCity:
    """A simulated dataset and its ground truth.

    Attributes
    ----------
    config : CityConfig
    tables : dict of str to pandas.DataFrame
        The seven contract tables, typed like :class:`analysis.io.Dataset`
        (default string dtype, tz-aware Asia/Shanghai times, float64 money,
        ``Int64`` latency, dates as naive midnight datetimes).
    truth : Truth
        Incidents with their true cause, tickets with their transaction,
        faults, true fix effects and the manifest. Never part of the dataset.

    Examples
    --------
    >>> city = simulate_city(CityConfig(seed=4, n_merchants=15, n_neighbourhoods=2, days=3,
    ...                                 case_segment_size=4))
    >>> city.tables["transactions"]["timestamp"].dt.tz.key
    'Asia/Shanghai'
    >>> city.truth.manifest["supermarket_name"]
    '好邻居便利超市'
    """

    config: CityConfig
    tables: dict
    truth: Truth

    def __repr__(self) -> str:
        m = self.truth.manifest
        rows = ", ".join(f"{name}={len(df):,}" for name, df in self.tables.items())
        return (
            f"SimulatedCity(seed={self.config.seed}, {m['start'][:10]}..{self.config.end_date}: {rows}; "
            f"incidents={len(self.truth.incidents):,}, supermarket {m['supermarket_merchant_id']}, "
            f"faulty segment {m['faulty_segment']})"
        )


class _Progress:
    """Stage timing and peak memory (resident set) on stderr when asked for."""

    def __init__(self, on: bool) -> None:
        self.on, self.t0 = on, time.perf_counter()

    def __call__(self, stage: str) -> None:
        if self.on:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            elapsed = time.perf_counter() - self.t0
            print(f"[simulate] {elapsed:7.1f} s  peak {peak:6.0f} MB  {stage}", file=sys.stderr, flush=True)


def simulate_city(config: CityConfig, *, full_pans: bool = True, progress: bool = False) -> SimulatedCity:
    """Simulate a city's POS data with the config's faults and fixes.

    Parameters
    ----------
    config : CityConfig
    full_pans : bool
        True: synthetic full card and account numbers (Luhn-valid) in the
        tables; False: masked at once (first 6 + last 4).
    progress : bool
        Print the stages and their times on stderr.

    Returns
    -------
    SimulatedCity

    Examples
    --------
    >>> from analysis.simulate import CityConfig, simulate_city
    >>> c = simulate_city(CityConfig(seed=1, n_merchants=15, n_neighbourhoods=2, days=3, case_segment_size=4))
    >>> list(c.tables["transactions"].columns)[:4]
    ['txn_id', 'terminal_id', 'merchant_id', 'timestamp']
    """
    say = _Progress(progress)
    scale = config.background
    streams = Streams(config.seed)
    tl = build_timeline(config)
    city = build_city(config, streams)
    scen = resolve(config, city, tl, streams)
    say("city")
    att = draw_attempts(city, tl, streams, full_pans=full_pans)
    say(f"{len(att):,} attempts")
    out = apply_mechanisms(att, city, scen, tl, scen.fixes, scale=scale)
    money = settle(att, out, city, tl, scale=scale)
    cause = true_causes(att, out, money)
    say("mechanisms and settlement")
    effects = fix_effects(att, city, scen, tl, out, money, scale=scale)
    att.release_draws(keep=("complain",))
    say(f"{len(effects)} fix effects (counterfactual runs)")
    ledger = build_transactions(att, out, city, tl, streams)
    say(f"{len(ledger.table):,} transactions")
    tables = {
        "merchants": city.merchants,
        "terminals": city.terminals,
        "transactions": ledger.table,
        "terminal_events": build_events(att, out, city, scen, tl, streams, scale=scale),
        "settlements": settlements_table(att, money, ledger.txn_ids, ledger.position, out),
    }
    say("events and settlements")
    complaints, tickets = build_complaints(config, att, money, cause, ledger, city, scen, tl, streams)
    tables["complaints"] = complaints
    tables["interventions"] = interventions_table(scen)
    incidents = incidents_table(att, out, money, cause, ledger, city, scen)
    say("complaints and incidents")
    truth = Truth(
        incidents=incidents,
        tickets=tickets,
        faults=faults_list(scen, city, incidents),
        fix_effects=effects,
        manifest=build_manifest(config, city, scen, tl, tables, incidents, tickets),
    )
    return SimulatedCity(config=config, tables={name: tables[name] for name in TABLES}, truth=truth)


def _inside(path: Path, parent: Path) -> bool:
    path, parent = path.resolve(), parent.resolve()
    return path == parent or parent in path.parents


def masked_tables(tables: dict) -> dict:
    """The tables with ``card_number`` and ``payee_account`` masked (first 6 + last 4)."""
    txns = tables["transactions"]
    masked = txns.assign(
        **{c: pd.Series(mask_pan_series(txns[c]), index=txns.index, dtype="str") for c in PAN_COLUMNS}
    )
    return {**tables, "transactions": masked}


def write_truth(truth: Truth, truth_dir: str | Path, fmt: str = "parquet") -> list[Path]:
    """Write the ground truth: ``incidents``/``tickets`` as ``fmt``, the rest as JSON."""
    out = Path(truth_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in TRUTH_TABLES:
        df = getattr(truth, name)
        target = out / f"{name}.{fmt}"
        if fmt == "parquet":
            df.to_parquet(target, index=False)
        else:
            df.to_csv(target, index=False, encoding="utf-8")
        written.append(target)
    for name in TRUTH_JSON:
        target = out / f"{name}.json"
        text = json.dumps(getattr(truth, name), ensure_ascii=False, indent=2)
        target.write_text(text + "\n", encoding="utf-8")
        written.append(target)
    return written


def write_city(
    city: SimulatedCity,
    out_dir: str | Path,
    truth_dir: str | Path | None = None,
    fmt: str = "parquet",
    mask_pans: bool = False,
) -> None:
    """Write the dataset (one file per contract table) and, apart, the ground truth.

    Parameters
    ----------
    city : SimulatedCity
    out_dir : path
        The dataset directory (``NAME.parquet`` or ``NAME.csv`` per table).
    truth_dir : path, optional
        Where the ground truth goes; it must not be ``out_dir`` or inside it.
    fmt : {'parquet', 'csv'}
    mask_pans : bool
        Mask ``card_number`` and ``payee_account`` (first 6 + last 4) before
        writing: how committed data is stored.

    Examples
    --------
    >>> import tempfile, os
    >>> from analysis.simulate import CityConfig, simulate_city
    >>> c = simulate_city(CityConfig(seed=1, n_merchants=15, n_neighbourhoods=2, days=3, case_segment_size=4))
    >>> d = tempfile.mkdtemp()
    >>> write_city(c, d + "/data", d + "/truth", mask_pans=True)
    >>> sorted(os.listdir(d + "/truth"))
    ['faults.json', 'fix_effects.json', 'incidents.parquet', 'manifest.json', 'tickets.parquet']
    """
    out = Path(out_dir)
    if truth_dir is not None and (_inside(Path(truth_dir), out) or _inside(out, Path(truth_dir))):
        raise ValueError(
            f"truth_dir {truth_dir} must lie outside the dataset directory {out_dir} (and not contain it)"
        )
    tables = masked_tables(city.tables) if mask_pans else city.tables
    write_tables(tables, out, fmt)
    if truth_dir is not None:
        write_truth(city.truth, truth_dir, fmt)


__all__ = ["SimulatedCity", "masked_tables", "simulate_city", "write_city", "write_truth"]
