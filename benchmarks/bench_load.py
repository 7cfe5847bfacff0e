"""Benchmark: simulate ~5 million transactions, write them as Parquet, load them back.

Prints, for each phase, the wall-clock seconds, rows per second, the process's
peak resident memory so far (``ru_maxrss``) and the CPU seconds the phase took
(user + system, all threads). Targets on 2 cores: simulate 5M transactions in
60 s or less with a peak of 3 GB or less; load (``analysis.io.load_dataset``) at
1,000,000 transaction rows per second or more with a peak of 3 GB or less. On a
shared machine compare CPU seconds and mind the load average printed with them.

Run::

    .venv/bin/python benchmarks/bench_load.py                # ~5M transactions
    .venv/bin/python benchmarks/bench_load.py --merchants 500 # a quicker run
    .venv/bin/python benchmarks/bench_load.py --skip-load     # simulate and write only
    .venv/bin/python benchmarks/bench_load.py --keep DIR      # keep the written dataset in DIR
    .venv/bin/python benchmarks/bench_load.py --load-only DIR # load a kept dataset again

Simulate and write run in this process (the peak after "write" is theirs);
load runs in a fresh process (``--load-only DIR``) so its peak is the loader's own.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.simulate import (  # noqa: E402
    BankOutage,
    CityConfig,
    FaultyFirmware,
    Fix,
    FrozenAccount,
    IssuerOutage,
    MisconfiguredMerchant,
    UnstableLink,
    simulate_city,
    write_city,
)


def config(merchants: int, days: int, rate: float, seed: int) -> CityConfig:
    """A big city with one of every fault and a fix for each fixable one."""
    return CityConfig(
        seed=seed,
        start="2026-03-02",
        days=days,
        n_merchants=merchants,
        n_neighbourhoods=max(4, merchants // 40),
        txns_per_merchant_day=rate,
        faults=(
            UnstableLink(start="2026-03-16 08:00"),
            FaultyFirmware("A920-2.1.09", "2026-03-20"),
            MisconfiguredMerchant(None, "wrong_account", "2026-04-01"),
            MisconfiguredMerchant(None, "no_upload", "2026-04-09"),
            FrozenAccount(None, "2026-04-10"),
            BankOutage("招商银行", "2026-03-25 08:00", "2026-03-26 20:00"),
            IssuerOutage("2026-04-02 12:00", "2026-04-02 13:00"),
        ),
        fixes=(
            Fix("network_upgrade", "network_segment", None, "2026-04-08 01:30"),
            Fix("message_validation", "network_segment", None, "2026-04-15 02:00"),
            Fix("firmware_update", "firmware", None, "2026-04-15 03:00"),
        ),
    )


def peak_mb() -> float:
    """Peak resident set size of this process so far, in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> tuple[float, float]:
    """User and system CPU seconds of this process so far (all its threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def report(phase: str, seconds: float, rows: int, cpu_before: tuple[float, float]) -> None:
    speed = rows / seconds
    user, system = (after - before for after, before in zip(cpu_seconds(), cpu_before))
    print(f"{phase:9s} {seconds:7.1f} s  {speed:>12,.0f} rows/s  peak {peak_mb():7,.0f} MB  ({rows:,} rows)"
          f"  cpu {user + system:.1f} s (user {user:.1f} + sys {system:.1f}),"
          f" load average {os.getloadavg()[0]:.1f}", flush=True)


def load_only(directory: Path) -> int:
    """Load a written dataset with ``analysis.io.load_dataset`` and report (the fresh-process phase)."""
    from analysis import io

    if not hasattr(io, "load_dataset"):
        print("load      skipped: analysis.io.load_dataset is not implemented yet")
        return 0
    cpu, t0 = cpu_seconds(), time.perf_counter()
    ds = io.load_dataset(directory)
    report("load", time.perf_counter() - t0, len(ds.transactions), cpu)
    print(f"{'':9s} rejected rows: {len(ds.rejected):,}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--merchants", type=int, default=2500)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--rate", type=float, default=33.0, help="attempts per merchant-day")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--skip-load", action="store_true", help="do not run analysis.io.load_dataset")
    parser.add_argument("--keep", type=Path, default=None, metavar="DIR",
                        help="write the dataset to DIR and keep it (default: a temporary directory)")
    parser.add_argument("--load-only", type=Path, default=None, metavar="DIR",
                        help="only load the dataset in DIR (written by --keep), in this process")
    args = parser.parse_args(argv)
    if args.load_only:
        return load_only(args.load_only)

    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    cfg = config(args.merchants, args.days, args.rate, args.seed)
    cpu, t0 = cpu_seconds(), time.perf_counter()
    city = simulate_city(cfg)
    n = len(city.tables["transactions"])
    report("simulate", time.perf_counter() - t0, n, cpu)

    with tempfile.TemporaryDirectory() as tmp:
        out = args.keep or Path(tmp) / "dataset"
        cpu, t0 = cpu_seconds(), time.perf_counter()
        write_city(city, out, mask_pans=False)
        report("write", time.perf_counter() - t0, n, cpu)
        size = sum(p.stat().st_size for p in out.iterdir())
        print(f"{'':9s} {size / 2**20:,.0f} MB of Parquet")
        del city
        if not args.skip_load:
            subprocess.run([sys.executable, __file__, "--load-only", str(out)], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
