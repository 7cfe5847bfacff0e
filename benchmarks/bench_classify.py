"""Classification and ticket-matching quality against the simulator's ground truth.

Runs the simulator over several seeds and fault mixes, writes each city to a
temporary Parquet dataset, loads it with the real loader, runs ``analyze`` and
compares with the truth (which only this benchmark reads):

- per-cause precision / recall / F1 over incident transactions (a transaction the
  truth calls an incident but the analysis does not, or vice versa, counts as
  class ``NOT_INCIDENT``), macro-F1 over the contract's causes present in the
  truth, and the confusion matrix;
- ticket matching: share of tickets whose matched ``txn_id`` equals the truth's
  (an unmatched ticket is correct when the truth has no transaction for it).

Targets (issue 3): macro-F1 ≥ 0.95, every cause F1 ≥ 0.90, tickets ≥ 0.95.

Usage::

    .venv/bin/python benchmarks/bench_classify.py [--seeds 5] [--mixes all]
    .venv/bin/python benchmarks/bench_classify.py --without terminal_events   # degraded data

``--without TABLE`` deletes an optional table after writing each city, to
measure how the classifier degrades (it should say UNKNOWN or lower its
confidence, not guess); the targets apply to complete datasets only.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from analysis.contract import CAUSES
from analysis.io import load_dataset
from analysis.pipeline import analyze
from analysis.simulate import (
    BankOutage,
    CityConfig,
    FaultyFirmware,
    Fix,
    FrozenAccount,
    IssuerOutage,
    MisconfiguredMerchant,
    UnstableLink,
    case_study_config,
    simulate_city,
    write_city,
)

NOT_INCIDENT = "NOT_INCIDENT"
TARGET_MACRO, TARGET_CAUSE, TARGET_TICKETS = 0.95, 0.90, 0.95


def fault_mixes(seed: int) -> dict[str, CityConfig]:
    """The cities each seed runs: the case study and mixes of other faults."""
    base = dict(seed=seed, start="2026-03-02", days=45, n_merchants=200)
    return {
        "case_study": case_study_config(seed=seed),
        "link+firmware": CityConfig(
            **base,
            faults=(
                UnstableLink(None, "2026-03-12"),
                FaultyFirmware("A8-3.5.0", "2026-03-20"),
            ),
            fixes=(Fix("network_upgrade", "network_segment", None, "2026-04-01"),),
        ),
        "config+frozen+banks": CityConfig(
            **base,
            faults=(
                MisconfiguredMerchant(None, "wrong_account", "2026-03-09"),
                MisconfiguredMerchant(None, "no_upload", "2026-03-16"),
                FrozenAccount(None, "2026-03-11"),
                BankOutage("招商银行", "2026-03-18 09:00", "2026-03-19 18:00"),
                IssuerOutage("2026-03-25 10:00", "2026-03-25 11:30"),
            ),
        ),
        "quiet": CityConfig(**base),
    }


def score(truth: pd.DataFrame, predicted: pd.DataFrame) -> pd.DataFrame:
    """Truth and predicted cause per transaction, ``NOT_INCIDENT`` where one side has none."""
    t = truth[["txn_id", "cause"]].rename(columns={"cause": "true"})
    p = predicted[["txn_id", "cause"]].rename(columns={"cause": "pred"})
    both = t.merge(p, on="txn_id", how="outer")
    return both.fillna({"true": NOT_INCIDENT, "pred": NOT_INCIDENT})


def ticket_accuracy(truth: pd.DataFrame, predicted: pd.DataFrame) -> tuple[int, int]:
    """(correct, total) tickets: matched txn_id equals the truth's (both empty counts)."""
    t = truth[["ticket_id", "txn_id"]].astype("string").fillna("")
    p = predicted[["ticket_id", "txn_id"]].astype("string").fillna("")
    both = t.merge(p, on="ticket_id", how="left", suffixes=("_true", "_pred")).fillna("")
    return int((both["txn_id_true"] == both["txn_id_pred"]).sum()), len(both)


def run(seeds: int, mixes: list[str] | None, without: list[str]) -> int:
    pairs, tickets_ok, tickets_n, rows = [], 0, 0, []
    for seed in range(1, seeds + 1):
        for name, config in fault_mixes(seed).items():
            if mixes and name not in mixes:
                continue
            t0 = time.perf_counter()
            city = simulate_city(config, full_pans=True)
            with tempfile.TemporaryDirectory() as tmp:
                write_city(city, Path(tmp) / "ds", fmt="parquet")
                for table in without:
                    (Path(tmp) / "ds" / f"{table}.parquet").unlink()
                result = analyze(load_dataset(Path(tmp) / "ds"))
            s = score(city.truth.incidents, result.incidents)
            s["mix"], s["seed"] = name, seed
            pairs.append(s)
            ok, n = ticket_accuracy(city.truth.tickets, result.tickets)
            tickets_ok, tickets_n = tickets_ok + ok, tickets_n + n
            acc = float((s["true"] == s["pred"]).mean())
            rows.append((name, seed, len(city.tables["transactions"]), len(s), acc, ok, n, time.perf_counter() - t0))
            print(f"{name:22s} seed {seed}: {rows[-1][2]:>8,} txns, {len(s):>6,} incidents, "
                  f"accuracy {acc:.4f}, tickets {ok}/{n}, {rows[-1][-1]:.1f} s", flush=True)
    allp = pd.concat(pairs, ignore_index=True)
    labels = [c for c in CAUSES if c in set(allp["true"])]
    present = labels + [NOT_INCIDENT]
    prec, rec, f1, sup = precision_recall_fscore_support(
        allp["true"], allp["pred"], labels=present, zero_division=0
    )
    table = pd.DataFrame({"precision": prec, "recall": rec, "f1": f1, "support": sup}, index=present)
    pd.set_option("display.width", 200)
    print("\nPer cause (NOT_INCIDENT = truth or analysis says no incident):")
    print(table.round(4).to_string())
    macro = float(table.loc[labels, "f1"].mean())
    print(f"\nmacro-F1 over {len(labels)} causes: {macro:.4f} (target ≥ {TARGET_MACRO})")
    worst = table.loc[labels, "f1"].idxmin()
    print(f"lowest cause F1: {worst} {table.loc[worst, 'f1']:.4f} (target ≥ {TARGET_CAUSE})")
    print(f"ticket matching: {tickets_ok}/{tickets_n} = {tickets_ok / max(tickets_n, 1):.4f} (target ≥ {TARGET_TICKETS})")
    cm = pd.DataFrame(
        confusion_matrix(allp["true"], allp["pred"], labels=present),
        index=[f"true {c}" for c in present],
        columns=[c[:8] for c in present],
    )
    print("\nConfusion matrix (rows: truth, columns: analysis):")
    print(cm.to_string())
    met = macro >= TARGET_MACRO and table.loc[labels, "f1"].min() >= TARGET_CAUSE and tickets_ok / max(tickets_n, 1) >= TARGET_TICKETS
    print("\nall targets met" if met else "\ntargets NOT met")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--mixes", nargs="*", default=None, help="subset of mixes to run")
    parser.add_argument("--without", nargs="*", default=[], help="optional tables to delete")
    args = parser.parse_args()
    np.set_printoptions(linewidth=200)
    raise SystemExit(run(args.seeds, args.mixes, args.without))


if __name__ == "__main__":
    main()
