"""The ``analyze`` job: load → reconcile → classify → shared faults → fixes → tickets → outputs.

The transaction-level steps run on an engine (:mod:`analysis.engine`): DuckDB by
default, Spark with ``engine="spark"``. A loaded :class:`~analysis.io.Dataset`
is registered on the engine as it is; a directory of Parquet files is read by
the engine in place (out of core), so ``analyze`` never holds the transactions
in pandas. Whichever engine runs it, the outputs are the same.

Examples
--------
>>> from analysis.io import load_dataset            # doctest: +SKIP
>>> result = analyze(load_dataset("data/case_study"))  # doctest: +SKIP
>>> result = analyze("data/case_study", engine="spark")  # doctest: +SKIP
>>> result.write("out")                             # doctest: +SKIP
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .causes import classify_on
from .clusters import cluster_merchants
from .faults import find_shared_faults_on, shared_faults_to_json
from .fixes import evaluate_fixes_on, exclusions_from_faults, onsets_from_faults
from .contract import OUTPUTS
from .engine import Engine, open_engine
from .engine.tables import register_calendar, register_dataset
from .io import Dataset
from .reconcile import (
    calendar_for,
    default_as_of,
    default_as_of_on,
    outcome_counts_on,
    reconcile_on,
    reconciled_frame,
    to_local_time,
)
from .tickets import match_tickets_on


def parse_as_of(value: str | pd.Timestamp | None) -> pd.Timestamp | None:
    """Parse an ``--as-of`` moment; a time without offset is Asia/Shanghai local time.

    Examples
    --------
    >>> str(parse_as_of("2026-04-30 18:00"))
    '2026-04-30 18:00:00+08:00'
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return to_local_time(value)


@dataclass(frozen=True)
class AnalysisResult:
    """Everything ``analyze`` produced, ready to write or to explore.

    Attributes
    ----------
    as_of : pandas.Timestamp
        The moment of analysis.
    reconciled : DataFrame or None
        One row per transaction with its money outcome (None when the data was
        read by the engine from files: it stays there).
    incidents : DataFrame
        One row per incident with cause, confidence, evidence and next step.
    tickets : DataFrame
        One row per complaint with the matched transaction.
    clusters : DataFrame
        ``merchant_id, cluster_id``: spatial clusters of merchants (haversine DBSCAN).
    shared_faults : list of SharedFault
        Faults shared by several merchants (``analysis.faults``).
    fix_effects : DataFrame
        One row per intervention and metric (difference-in-differences against control merchants).
    outcomes : DataFrame
        Count of transactions per outcome (:func:`analysis.reconcile.outcome_counts`).
    engine : str
        The engine that ran the transaction-level steps.
    """

    as_of: pd.Timestamp
    reconciled: pd.DataFrame | None = field(repr=False)
    incidents: pd.DataFrame = field(repr=False)
    tickets: pd.DataFrame = field(repr=False)
    clusters: pd.DataFrame = field(repr=False)
    shared_faults: list = field(repr=False)
    fix_effects: pd.DataFrame = field(repr=False)
    outcomes: pd.DataFrame = field(repr=False, default=None)
    engine: str = "duckdb"

    def __repr__(self) -> str:
        return (
            f"AnalysisResult(as_of={self.as_of}, engine={self.engine}, "
            f"transactions={int(self.outcomes['count'].sum()):,}, "
            f"incidents={len(self.incidents):,}, tickets={len(self.tickets):,}, "
            f"shared_faults={len(self.shared_faults)})"
        )

    def summary(self) -> str:
        """Outcome counts and incidents by cause as plain text."""
        lines = [repr(self), "", "Outcomes:"]
        lines.append(self.outcomes.to_string())
        if len(self.incidents):
            lines += ["", "Incidents by cause:"]
            lines.append(self.incidents["cause"].value_counts().to_string())
        return "\n".join(lines)

    def write(self, out_dir: str | Path) -> list[Path]:
        """Write the contract's output files into ``out_dir``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        frames = {
            "incidents.csv": self.incidents,
            "tickets.csv": self.tickets,
            "clusters.csv": self.clusters,
            "fix_effects.csv": self.fix_effects,
        }
        written = []
        for name, frame in frames.items():
            cols = list(OUTPUTS[name])
            target = out / name
            _contract_frame(frame, cols).to_csv(target, index=False, encoding="utf-8")
            written.append(target)
        target = out / "shared_faults.json"
        target.write_text(
            json.dumps(shared_faults_to_json(self.shared_faults), ensure_ascii=False, indent=2)
            + "\n",
            encoding="utf-8",
        )
        written.append(target)
        return written


def _contract_frame(frame: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    """The contract's columns of ``frame`` in order; absent ones are empty."""
    return frame.reindex(columns=cols)


def analyze(
    source: Dataset | str | Path,
    *,
    engine: str | Engine = "duckdb",
    as_of: str | pd.Timestamp | None = None,
    seed: int = 0,
    progress: bool = False,
    engine_options: dict | None = None,
) -> AnalysisResult:
    """Reconcile, classify, find shared faults, evaluate fixes and match tickets.

    Parameters
    ----------
    source : Dataset, EngineDataset, str or Path
        A validated dataset (:func:`analysis.io.load_dataset`), one loaded on
        ``engine`` (:func:`analysis.engine.load.load_on_engine`), or a dataset
        directory that the engine loads and validates itself (out of core).
    engine : {'duckdb', 'spark'} or Engine
        Where the transaction-level steps run; an :class:`~analysis.engine.Engine`
        instance is used as it is and left open.
    as_of : str or Timestamp, optional
        Moment of analysis; default the latest time in the data (contract).
    seed : int
        Seed of the scan statistics' Monte Carlo replicas (results are reproducible).
    progress : bool
        Show a progress bar over the steps.
    engine_options : dict, optional
        Options of the engine (``memory_limit``, ``threads`` for DuckDB; ``master`` for Spark).
    """
    own = not isinstance(engine, Engine)
    eng = open_engine(engine, **(engine_options or {})) if own else engine
    try:
        return _analyze_on(eng, source, as_of=as_of, seed=seed, progress=progress)
    finally:
        if own:
            eng.close()


@dataclass(frozen=True)
class _Prepared:
    """What the steps need once the data is on the engine: the small tables in pandas."""

    merchants: pd.DataFrame
    terminals: pd.DataFrame
    complaints: pd.DataFrame | None
    interventions: pd.DataFrame | None
    moment: pd.Timestamp
    index: pd.Index | None  # the transactions' index when they are in memory


def _prepare(eng: Engine, source, as_of, progress: bool) -> _Prepared:
    """Put ``source`` on the engine (canonical views and calendar) and find the moment of analysis."""
    if isinstance(source, Dataset):
        moment = parse_as_of(as_of) or default_as_of(source)
        register_dataset(eng, source, calendar_for(source.transactions["timestamp"]))
        return _Prepared(source.merchants, source.terminals, source.complaints,
                         source.interventions, moment, source.transactions.index)
    from .engine.load import EngineDataset, load_on_engine

    loaded = source if isinstance(source, EngineDataset) else load_on_engine(eng, source, progress=progress)
    first_day = eng.scalar("SELECT min(day) FROM transactions")
    days = pd.Series([pd.Timestamp("1970-01-01") + pd.Timedelta(days=first_day or 0)])
    register_calendar(eng, calendar_for(days))
    moment = parse_as_of(as_of) or default_as_of_on(eng, loaded.complaints)
    return _Prepared(loaded.merchants, loaded.terminals, loaded.complaints,
                     loaded.interventions, moment, None)


def _analyze_on(eng: Engine, source, *, as_of, seed: int, progress: bool) -> AnalysisResult:
    from tqdm.auto import tqdm

    steps = tqdm(total=6, desc=f"analyze ({eng.name})", disable=not progress, unit="step")
    steps.set_postfix_str("load")
    data = _prepare(eng, source, as_of, progress)
    moment = data.moment
    steps.update()
    steps.set_postfix_str("reconcile")
    in_memory = data.index is not None
    reconcile_on(eng, as_of=moment, carry=("_row",) if "_row" in eng.columns("transactions") else ())
    outcomes = outcome_counts_on(eng)
    steps.update()
    steps.set_postfix_str("classify")
    incidents = classify_on(eng, as_of=moment)
    merchant_clusters = cluster_merchants(data.merchants, data.terminals)
    clusters = merchant_clusters.to_contract()
    incidents = incidents.drop(columns="cluster_id", errors="ignore").merge(
        clusters, on="merchant_id", how="left"
    )
    steps.update()
    steps.set_postfix_str("shared faults")
    shared = find_shared_faults_on(
        eng, data.merchants, data.terminals, incidents,
        clusters=merchant_clusters, as_of=moment, seed=seed,
    )
    steps.update()
    steps.set_postfix_str("fixes")
    fix_effects = _fix_effects(eng, data.interventions, moment, shared)
    steps.update()
    steps.set_postfix_str("tickets")
    if data.complaints is not None:
        tickets = match_tickets_on(eng, data.complaints, incidents)
    else:
        tickets = pd.DataFrame(columns=list(OUTPUTS["tickets.csv"]))
    steps.update()
    steps.close()
    reconciled = None
    if in_memory:  # the transactions were in pandas already: so may their outcomes be
        reconciled = reconciled_frame(eng.fetch("SELECT * FROM reconciled ORDER BY _row"), data.index)
        reconciled.attrs.update(as_of=moment, settlements_known=eng.has("settlements"))
    return AnalysisResult(
        as_of=moment,
        reconciled=reconciled,
        incidents=incidents,
        tickets=tickets,
        clusters=clusters,
        shared_faults=shared,
        fix_effects=fix_effects,
        outcomes=outcomes,
        engine=eng.name,
    )


def _fix_effects(
    eng: Engine, interventions: pd.DataFrame | None, moment: pd.Timestamp, shared: list
) -> pd.DataFrame:
    """Effect of every intervention on the contract's metrics (empty without interventions).

    Merchants of localized shared faults are never controls, and a fault's start is
    the before-period's start for the first fix on its scope.
    """
    if interventions is None or interventions.empty:
        return pd.DataFrame(columns=list(OUTPUTS["fix_effects.csv"]))
    evaluation = evaluate_fixes_on(
        eng,
        interventions,
        as_of=moment,
        exclude_merchants=exclusions_from_faults(shared),
        onsets=onsets_from_faults(shared),
    )
    return evaluation.to_contract()


__all__ = ["AnalysisResult", "analyze", "parse_as_of"]
