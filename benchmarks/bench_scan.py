"""Speed and memory of analysis.scan on a simulated city (not run in CI).

Run:  .venv/bin/python benchmarks/bench_scan.py [--quick] [--jobs 2] [--only NAME]

Each case prints wall seconds, CPU seconds (this process and its worker
processes) and peak memory: the resident set size of this process and of the
largest worker process (``resource.getrusage``; tracemalloc is not used because
tracing every numpy allocation slows the scan several-fold). On a machine shared
with other work, wall time exceeds CPU time / jobs; CPU time is the figure to
compare across runs.

The city: merchants scattered around a few commercial centres (about 40 km
across), lognormal transaction volumes (median 300 over the period), incident
rate 1% with a planted cluster of 8 merchants at 3x the rate.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import pandas as pd

from analysis.scan import space_time_scan, spatial_scan


def city(n: int, seed: int = 0) -> pd.DataFrame:
    """``n`` merchants with latitude, longitude, population (transactions) and cases (incidents)."""
    rng = np.random.default_rng(seed)
    centres = np.array([[31.23, 121.47], [31.20, 121.44], [31.26, 121.52], [31.15, 121.40], [31.30, 121.38]])
    which = rng.integers(0, len(centres), n)
    lat = centres[which, 0] + rng.normal(0, 0.05, n)
    lon = centres[which, 1] + rng.normal(0, 0.06, n)
    pop = np.maximum(20, rng.lognormal(np.log(300), 0.8, n)).astype(int)
    rate = np.full(n, 0.01)
    near = np.argsort((lat - lat[0]) ** 2 + (lon - lon[0]) ** 2)[:8]
    rate[near] = 0.03
    return pd.DataFrame({"merchant_id": [f"M{i:05d}" for i in range(n)], "latitude": lat, "longitude": lon,
                         "population": pop, "cases": rng.binomial(pop, rate)})


def daily(n: int, days: int, seed: int = 0) -> pd.DataFrame:
    """Per merchant-day transactions and incidents; a planted cluster on days 20-35."""
    geo = city(n, seed)
    rng = np.random.default_rng(seed + 1)
    pop = rng.poisson(np.maximum(1, geo["population"].to_numpy() / 15)[:, None] * np.ones(days))
    rate = np.full(pop.shape, 0.01)
    near = np.argsort((geo["latitude"] - geo["latitude"][0]) ** 2 + (geo["longitude"] - geo["longitude"][0]) ** 2)[:8]
    rate[np.ix_(near, np.arange(20, 36))] = 0.03
    dates = pd.date_range("2025-03-01", periods=days)
    return pd.DataFrame({
        "merchant_id": np.repeat(geo["merchant_id"].to_numpy(), days), "date": np.tile(dates, n),
        "latitude": np.repeat(geo["latitude"].to_numpy(), days), "longitude": np.repeat(geo["longitude"].to_numpy(), days),
        "population": pop.ravel(), "cases": rng.binomial(pop, rate).ravel(),
    })


def measure(name: str, fn) -> None:
    self0, kids0 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    result = fn()
    wall = time.perf_counter() - t0
    self1, kids1 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = sum(b.ru_utime + b.ru_stime - a.ru_utime - a.ru_stime for a, b in ((self0, self1), (kids0, kids1)))
    best = result.most_likely
    print(f"{name}\n    wall {wall:6.1f} s   cpu {cpu:6.1f} s   peak RSS {self1.ru_maxrss / 1024:6.0f} MB "
          f"(largest worker {kids1.ru_maxrss / 1024:.0f} MB)\n"
          f"    most likely: {best.n_locations} locations, LLR {best.llr:.2f}, p = {best.p_value:.3f}"
          + (f", {best.start:%m-%d} to {best.end:%m-%d}" if hasattr(best, "start") else ""), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--replicas", type=int, default=999)
    ap.add_argument("--quick", action="store_true", help="smaller cases (a smoke test)")
    ap.add_argument("--only", default="", help="run the cases whose name contains this")
    a = ap.parse_args()
    n_big, n_st = (1000, 300) if a.quick else (5000, 1000)
    R, J = a.replicas, a.jobs
    spatial = city(n_big)
    st_small, st_big = daily(n_st, 60), daily(n_big, 60)
    cases = {
        f"spatial Bernoulli, {n_big} locations, {R} replicas, 50% population cap, no radius cap":
            lambda: spatial_scan(spatial, n_replicas=R, seed=1, n_jobs=J),
        f"spatial Bernoulli, {n_big} locations, {R} replicas, 50% cap, radius <= 3 km":
            lambda: spatial_scan(spatial, n_replicas=R, seed=1, n_jobs=J, max_radius_km=3),
        f"space-time Poisson, {n_st} locations x 60 days, {R} replicas, radius <= 3 km, 1-30 days":
            lambda: space_time_scan(st_small, n_replicas=R, seed=1, n_jobs=J, max_radius_km=3),
        f"space-time Bernoulli, {n_st} locations x 60 days, {R} replicas, radius <= 3 km, 1-30 days":
            lambda: space_time_scan(st_small, model="bernoulli", n_replicas=R, seed=1, n_jobs=J, max_radius_km=3),
        f"space-time Poisson, {n_big} locations x 60 days, {R} replicas, radius <= 3 km, 1-30 days":
            lambda: space_time_scan(st_big, n_replicas=R, seed=1, n_jobs=J, max_radius_km=3),
        f"prospective space-time Poisson, {n_big} locations x 60 days, {R} replicas, radius <= 3 km, 1-30 days":
            lambda: space_time_scan(st_big, n_replicas=R, seed=1, n_jobs=J, max_radius_km=3, prospective=True),
    }
    print(f"jobs={J}")
    for name, fn in cases.items():
        if a.only in name:
            measure(name, fn)


if __name__ == "__main__":
    main()
