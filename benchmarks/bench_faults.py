"""Benchmark: shared-fault detection (``analysis.faults``) on the case study and on a big simulated city.

Prints the wall-clock seconds of ``find_shared_faults`` (999 replicas), the
faults found, and how they compare with the simulator's truth (which the
analysis never reads). Targets: the case study in a few seconds, a
5,000-merchant city in about a minute, on 2 cores.

Run::

    .venv/bin/python benchmarks/bench_faults.py                    # case study, then 5,000 merchants
    .venv/bin/python benchmarks/bench_faults.py --skip-city        # case study only
    .venv/bin/python benchmarks/bench_faults.py --merchants 1000   # a quicker city

Reconciliation and classification are timed apart (they are not this module's work).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analysis.causes import classify  # noqa: E402
from analysis.clusters import cluster_merchants  # noqa: E402
from analysis.faults import find_shared_faults  # noqa: E402
from analysis.io import Dataset, load_dataset  # noqa: E402
from analysis.reconcile import calendar_for, default_as_of, reconcile  # noqa: E402
from analysis.simulate import (  # noqa: E402
    BankOutage,
    CityConfig,
    FaultyFirmware,
    FrozenAccount,
    MisconfiguredMerchant,
    UnstableLink,
    simulate_city,
)


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def prepare(ds: Dataset):
    """Reconcile and classify as ``analysis.pipeline.analyze`` does; return (reconciled, incidents, clusters)."""
    moment = default_as_of(ds)
    cal = calendar_for(ds.transactions["timestamp"])
    reconciled = reconcile(ds.transactions, ds.settlements, ds.merchants, as_of=moment, calendar=cal)
    incidents = classify(ds, reconciled, as_of=moment, calendar=cal)
    return reconciled, incidents, cluster_merchants(ds.merchants, ds.terminals)


def run(name: str, ds: Dataset, truth: list[dict], replicas: int) -> None:
    t0 = time.perf_counter()
    reconciled, incidents, clusters = prepare(ds)
    t1 = time.perf_counter()
    faults = find_shared_faults(ds, reconciled, incidents, clusters=clusters, n_replicas=replicas)
    t2 = time.perf_counter()
    print(f"{name}: {len(ds.merchants):,} merchants, {len(ds.transactions):,} transactions; "
          f"reconcile+classify {t1 - t0:.1f} s, find_shared_faults {t2 - t1:.1f} s, peak {peak_mb():,.0f} MB")
    for f in faults:
        print(f"  found {f.fault_id} {f.cause} {f.attributes} {f.start}..{f.end or 'ongoing'} "
              f"{len(f.merchant_ids)} merchants, p={f.p_value:.3g}")
    for t in (t for t in truth if t["shared"]):
        hit = next((f for f in faults if set(map(str, f.attributes.values())) & set(map(str, t["target"].values()))),
                   None)
        if hit is None:
            print(f"  MISSED {t['kind']} {t['target']}")
            continue
        true, got = set(t["merchant_ids"]), set(hit.merchant_ids)
        print(f"  truth {t['kind']} {t['target']} -> {hit.fault_id}: recall {len(true & got) / len(true):.2f}, "
              f"precision {len(true & got) / max(len(got), 1):.2f}, start {t['start'][:10]} vs {hit.start}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--merchants", type=int, default=5000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--replicas", type=int, default=999)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--skip-case", action="store_true")
    parser.add_argument("--skip-city", action="store_true")
    args = parser.parse_args(argv)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    if not args.skip_case:
        truth = json.loads((ROOT / "data/case_study_truth/faults.json").read_text(encoding="utf-8"))
        run("case study", load_dataset(ROOT / "data/case_study"), truth, args.replicas)
    if not args.skip_city:
        cfg = CityConfig(
            seed=args.seed, days=args.days, n_merchants=args.merchants,
            n_neighbourhoods=max(4, args.merchants // 20),
            faults=(
                UnstableLink(start="2026-03-09 08:00"),
                FaultyFirmware("A8-3.5.0", "2026-03-12"),
                MisconfiguredMerchant(None, "no_upload", "2026-03-16"),
                FrozenAccount(None, "2026-03-18"),
                BankOutage("招商银行", "2026-03-20 08:00", "2026-03-21 20:00"),
            ),
        )
        t0 = time.perf_counter()
        city = simulate_city(cfg, full_pans=False)
        print(f"simulated {args.merchants:,} merchants x {args.days} days in {time.perf_counter() - t0:.1f} s")
        run(f"city of {args.merchants:,}", Dataset(**city.tables, source="simulated"), city.truth.faults,
            args.replicas)
    return 0


if __name__ == "__main__":
    sys.exit(main())
