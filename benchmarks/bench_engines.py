"""Benchmark: ``analyze`` on 5M and 50M simulated transactions, DuckDB and Spark, vs hand-written SQL.

For each size the dataset is simulated once, chunk by chunk
(:func:`analysis.simulate.write_city_chunks`, ~5M transactions per chunk), into
``DATA_DIR/bench_engines_<size>`` and reused by later runs. Then each run goes
in a fresh child process, watched from here:

- ``baseline``: a hand-written DuckDB SQL query of the reconcile join on the
  same Parquet files (transactions LEFT JOIN merchants, the working calendar,
  settlements and approved voids; one outcome per row; outcomes counted) — the
  single-machine limit;
- ``reconcile <engine>``: the package's reconcile step to the same counts
  (Parquet files as the canonical views, ``reconcile_on``,
  ``outcome_counts_on``); its ratio to the baseline is the overhead target;
- ``load <engine>``: ``analysis.engine.load.load_on_engine`` alone (checks,
  masking, card tokens), which the baseline skips;
- ``analyze <engine>``: ``analysis.pipeline.analyze(DIR, engine=..., progress=True)``
  end to end, then ``result.write`` of the outputs.

Each run prints wall seconds, transactions per second, peak memory of
the child and all its descendants together (the Spark JVM included; proportional
set size sampled with psutil, or resident size from /proc without it), CPU seconds of the tree and the 1-minute
load average before and after (the machine may be shared), and whether its
outcome counts equal the baseline's. A run whose tree grows past
``--kill-above-gb`` is killed and reported as such.

Targets (issue 7): 5M end to end ≤ 30 s; 50M ≤ 6 min; reconcile step over the
hand-written baseline ≤ 1.5×; peak ≤ 8 GB at 50M; simulating ≤ 3 GB peak.

Run::

    .venv/bin/python benchmarks/bench_engines.py                          # 5M and 50M on DuckDB, 5M on Spark
    .venv/bin/python benchmarks/bench_engines.py --sizes 5M --engines duckdb
    .venv/bin/python benchmarks/bench_engines.py --sizes 50M --engines duckdb --steps reconcile
    .venv/bin/python benchmarks/bench_engines.py --sizes 50M --memory-limit 6GB --data-dir /data/bench
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_load import config as city_config  # noqa: E402

#: Transactions per chunk (one simulated district): ~5M, as ``bench_load`` simulates.
CHUNK_TXNS = 5_000_000
#: Transactions simulated per unit of ``txns_per_merchant_day`` by ``bench_load``'s city
#: (2,500 merchants, 60 days): measured 5,089,189 at a rate of 31.
TXNS_PER_RATE = 5_089_189 / 31
TARGETS_S = {5_000_000: 30.0, 50_000_000: 360.0}
TARGET_RATIO = 1.5
TARGET_PEAK_MB = {50_000_000: 8 * 1024}
TARGET_SIMULATE_PEAK_MB = 3 * 1024
RESULT = "RESULT "

#: The hand-written reconcile join: one outcome per transaction, outcomes counted.
#: ``{tx}`` etc. are Parquet paths; ``calendar`` is the working calendar as day numbers.
BASELINE_SQL = """
WITH tx AS (
    SELECT txn_id, merchant_id, txn_type, response_code, original_txn_id,
           coalesce(reversal, 'none') AS reversal,
           CAST(floor((epoch("timestamp") + 28800) / 86400) AS INTEGER) AS day
    FROM read_parquet({tx})
),
voided AS (
    SELECT DISTINCT original_txn_id AS txn_id FROM tx
    WHERE txn_type = 'void' AND response_code = '00' AND reversal = 'none' AND original_txn_id IS NOT NULL
),
s AS (
    SELECT txn_id, credit_status, credited_at IS NULL AS no_credit_time,
           CAST(floor((epoch(credited_at) + 28800) / 86400) AS INTEGER) AS credited_day
    FROM read_parquet({settlements})
),
m AS (SELECT merchant_id, coalesce(settlement_cycle, 'T1') AS cycle FROM read_parquet({merchants})),
j AS (
    SELECT tx.reversal, tx.response_code, tx.txn_type, s.credit_status, s.no_credit_time, s.credited_day,
           v.txn_id IS NOT NULL AS voided,
           CASE m.cycle WHEN 'D1' THEN c.deadline_d1 WHEN 'D0' THEN c.deadline_d0 ELSE c.deadline_t1 END
               AS deadline
    FROM tx
    LEFT JOIN m ON m.merchant_id = tx.merchant_id
    LEFT JOIN calendar c ON c.day = tx.day
    LEFT JOIN s ON s.txn_id = tx.txn_id
    LEFT JOIN voided v ON v.txn_id = tx.txn_id
)
SELECT CASE
        WHEN reversal = 'failed' THEN 'reversal_failed'
        WHEN reversal = 'sent' THEN 'reversed'
        WHEN response_code IS NULL THEN 'reversal_failed'
        WHEN response_code <> '00' THEN 'declined'
        WHEN txn_type IN ('void', 'refund') THEN 'cancellation'
        WHEN voided THEN 'voided'
        WHEN credit_status = 'credited' AND (no_credit_time OR credited_day <= deadline) THEN 'credited'
        WHEN credit_status = 'credited' THEN 'credited_late'
        WHEN credit_status = 'returned' THEN 'returned'
        WHEN {as_of_day} <= deadline THEN 'in_cycle'
        WHEN credit_status = 'pending' THEN 'credit_overdue'
        ELSE 'not_cleared'
    END AS outcome,
    count(*) AS n
FROM j GROUP BY ALL ORDER BY outcome
"""

#: The default as-of (latest time in the data) as an Asia/Shanghai day number.
AS_OF_SQL = """
SELECT CAST(floor((epoch(greatest(
    (SELECT max("timestamp") FROM read_parquet({tx})),
    (SELECT max(credited_at) FROM read_parquet({settlements})),
    (SELECT max(opened_at) FROM read_parquet({complaints})))) + 28800) / 86400) AS INTEGER)
"""


# -- sizes and data -----------------------------------------------------------------------


def parse_size(text: str) -> int:
    """``"5M"`` → 5,000,000; ``"500k"`` → 500,000; plain digits as they are."""
    text = text.strip().upper()
    scale = {"K": 1_000, "M": 1_000_000}.get(text[-1:], 1)
    return int(float(text.rstrip("KM")) * scale)


def size_label(n: int) -> str:
    return f"{n // 1_000_000}M" if n % 1_000_000 == 0 else f"{n // 1_000}k"


def chunk_plan(size: int) -> tuple[int, float]:
    """Number of ~5M-transaction chunks and the per-merchant-day rate that gives ``size`` in all."""
    n_chunks = max(1, math.ceil(size / CHUNK_TXNS))
    return n_chunks, size / n_chunks / TXNS_PER_RATE


def generate(size: int, directory: Path) -> dict:
    """Simulate ``size`` transactions into ``directory`` (child process)."""
    from analysis.simulate import write_city_chunks

    n_chunks, rate = chunk_plan(size)
    base = city_config(2500, 60, rate, 0)
    write_city_chunks(lambda k: dataclasses.replace(base, seed=1000 + k), n_chunks, directory)
    return {"rows": transactions_in(directory), "chunks": n_chunks}


def transactions_in(directory: Path) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(directory / "transactions.parquet").metadata.num_rows


# -- the runs (each in a child process) ---------------------------------------------------


def _quote(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def baseline(directory: Path, memory_limit: str | None) -> dict:
    """The hand-written reconcile join on DuckDB; seconds from connect to counted outcomes."""
    import duckdb

    from analysis.engine.tables import calendar_frame
    from analysis.workdays import china_calendar

    t0 = time.perf_counter()
    con = duckdb.connect(":memory:")
    if memory_limit:
        con.execute(f"SET memory_limit = '{memory_limit}'")
    con.register("calendar", calendar_frame(china_calendar(2024)))
    files = {name: _quote(directory / f"{name}.parquet")
             for name in ("merchants", "settlements", "complaints")}
    files["tx"] = _quote(directory / "transactions.parquet")
    as_of_day = con.execute(AS_OF_SQL.format(**files)).fetchone()[0]
    counts = dict(con.execute(BASELINE_SQL.format(as_of_day=as_of_day, **files)).fetchall())
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "rows": sum(counts.values()), "outcomes": counts,
            "timed": "connect + as-of + reconcile join with outcome counts"}


def _engine_options(engine: str, memory_limit: str | None, master: str) -> dict:
    options = {"master": master} if engine == "spark" else {"memory_limit": memory_limit}
    return {k: v for k, v in options.items() if v}


def _latest_t(eng) -> int:
    """Epoch seconds of the default as-of (the latest time in the data) on the canonical views."""
    return int(eng.scalar(
        "SELECT greatest((SELECT max(t) FROM transactions), (SELECT max(credited_at_t) FROM settlements), "
        "(SELECT max(opened_at_t) FROM complaints))"
    ))


def reconcile_step(directory: Path, engine: str, memory_limit: str | None, master: str) -> dict:
    """The package's reconcile step on the same files as the baseline, to the same outcome counts.

    Timed from engine start: the Parquet files as the canonical views
    (``register_parquet_tables``, no validation), ``reconcile_on`` and
    ``outcome_counts_on``.
    """
    import pandas as pd

    from analysis.contract import TABLES
    from analysis.engine import open_engine
    from analysis.engine.tables import register_parquet_tables
    from analysis.reconcile import calendar_for, outcome_counts_on, reconcile_on

    t0 = time.perf_counter()
    eng = open_engine(engine, **_engine_options(engine, memory_limit, master))
    t_open = time.perf_counter()
    files = {n: [directory / f"{n}.parquet"] for n in TABLES if (directory / f"{n}.parquet").is_file()}
    register_parquet_tables(eng, files, calendar_for(pd.Series([pd.Timestamp("2024-01-01")])))
    as_of = pd.Timestamp(_latest_t(eng), unit="s", tz="UTC").tz_convert("Asia/Shanghai")
    reconcile_on(eng, as_of=as_of)
    table = outcome_counts_on(eng)
    seconds = time.perf_counter() - t0
    counts = {k: int(v) for k, v in table["count"].items() if v}
    return {"seconds": seconds, "open_s": t_open - t0, "rows": sum(counts.values()), "outcomes": counts,
            "timed": "engine start + Parquet views + reconcile_on + outcome_counts_on"}


def load_step(directory: Path, engine: str, memory_limit: str | None, master: str) -> dict:
    """``load_on_engine`` alone (checks, masking, card tokens), timed from engine start."""
    from analysis.engine import open_engine
    from analysis.engine.load import load_on_engine

    t0 = time.perf_counter()
    eng = open_engine(engine, **_engine_options(engine, memory_limit, master))
    t_open = time.perf_counter()
    ds = load_on_engine(eng, directory, progress=True)
    seconds = time.perf_counter() - t0
    used = ds.accounting.set_index("table")["used"]
    return {"seconds": seconds, "open_s": t_open - t0, "rows": int(used["transactions"]),
            "rejected": len(ds.rejected), "timed": "engine start + load_on_engine"}


def analyze(directory: Path, engine: str, memory_limit: str | None, master: str) -> dict:
    """``analysis.pipeline.analyze`` on the directory, end to end, then the outputs written."""
    from analysis.pipeline import analyze as run

    t0 = time.perf_counter()
    result = run(directory, engine=engine, engine_options=_engine_options(engine, memory_limit, master),
                 progress=True)
    t1 = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        result.write(out)
    t2 = time.perf_counter()
    counts = {k: int(v) for k, v in result.outcomes["count"].items() if v}
    return {"seconds": t2 - t0, "analyze_s": t1 - t0, "write_s": t2 - t1, "rows": sum(counts.values()),
            "outcomes": counts, "incidents": len(result.incidents),
            "shared_faults": len(result.shared_faults),
            "timed": f"analyze(path, engine={engine!r}) + result.write"}


def child_main(argv: list[str]) -> int:
    """Entry point of a child run: print one ``RESULT {json}`` line on stdout."""
    kind, directory = argv[0], Path(argv[1])
    if kind == "generate":
        out = generate(int(argv[2]), directory)
    elif kind == "baseline":
        out = baseline(directory, argv[2] or None)
    else:
        step = {"reconcile": reconcile_step, "load": load_step, "analyze": analyze}[kind]
        out = step(directory, argv[2], argv[3] or None, argv[4])
    print(RESULT + json.dumps(out), flush=True)
    return 0


# -- watching a child ---------------------------------------------------------------------


def _proc_tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and its descendants, from /proc (shared pages counted per process)."""
    parent = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                parent[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    tree, frontier = {pid}, [pid]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parent.items() if pp == p and c not in tree]
        tree.update(kids)
        frontier += kids
    total, page = 0, os.sysconf("SC_PAGE_SIZE")
    for p in tree:
        try:
            total += int((Path("/proc") / str(p) / "statm").read_text().split()[1]) * page
        except (OSError, IndexError, ValueError):
            continue
    return total


def sample_tree(pid: int, cpu: dict[int, float]) -> int:
    """Memory of ``pid`` and all its descendants (psutil if installed, else /proc).

    With psutil this is the proportional set size (PSS): pages a forked worker
    shares with its parent (the scan's workers) are counted once, not once per
    process as a sum of resident sizes would. Also records each process's CPU
    seconds so far in ``cpu`` (by pid), so that descendants nobody waits for
    (the Spark JVM) are counted.
    """
    try:
        import psutil
    except ImportError:
        return _proc_tree_rss(pid)
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for p in procs:
        try:
            try:
                total += p.memory_full_info().pss
            except (psutil.AccessDenied, AttributeError):
                total += p.memory_info().rss
            times = p.cpu_times()
            cpu[p.pid] = times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return total


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def watch(args: list[str], kill_above_mb: float) -> dict:
    """Run ``bench_engines.py --child ARGS`` and watch its process tree.

    Returns the child's result plus ``peak_mb`` (tree), ``cpu_s`` (the larger of
    the sampled CPU seconds of the tree's processes and the rusage of the
    descendants waited for), ``wall_s``, ``load_before``/``load_after`` and
    ``killed`` when the tree grew past ``kill_above_mb``.
    """
    load_before, cpu0, t0 = os.getloadavg()[0], _children_cpu(), time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, "--child", *args], stdout=subprocess.PIPE,
                            text=True, start_new_session=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    peak, killed, cpu = 0, False, {}
    while proc.poll() is None:
        peak = max(peak, sample_tree(proc.pid, cpu))
        if peak > kill_above_mb * 2**20 and not killed:
            killed = True
            os.killpg(proc.pid, signal.SIGKILL)  # the session started for this child
        time.sleep(0.25)
    reader.join()
    found = [json.loads(line[len(RESULT):]) for line in lines if line.startswith(RESULT)]
    out = found[0] if found else {}
    out.update(peak_mb=peak / 2**20, cpu_s=max(_children_cpu() - cpu0, sum(cpu.values())),
               wall_s=time.perf_counter() - t0,
               load_before=load_before, load_after=os.getloadavg()[0], killed=killed,
               returncode=proc.returncode)
    return out


# -- report -------------------------------------------------------------------------------


def line(size: str, run: str, r: dict, note: str = "") -> str:
    if r.get("killed"):
        return f"{size:>4} {run:24s} KILLED at {r['peak_mb']:,.0f} MB after {r['wall_s']:.0f} s"
    if "seconds" not in r:
        return f"{size:>4} {run:24s} FAILED (exit {r['returncode']}) after {r['wall_s']:.0f} s"
    rate = r["rows"] / r["seconds"] if r["seconds"] else float("nan")
    return (f"{size:>4} {run:24s} {r['seconds']:8.1f} s {rate:>11,.0f} rows/s  peak {r['peak_mb']:7,.0f} MB"
            f"  CPU {r['cpu_s']:7.1f} s  load {r['load_before']:.1f}->{r['load_after']:.1f}  {note}")


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def _ratio_note(r: dict, base: dict | None, target: float | None) -> list[str]:
    """Ratio to the baseline in wall time (against ``target`` if given) and in CPU time (a steadier
    figure on a shared machine), and whether the outcome counts agree."""
    if not base or "seconds" not in base:
        return []
    ratio, cpu_ratio = r["seconds"] / base["seconds"], r["cpu_s"] / base["cpu_s"]
    judged = f" (target <= {target}x {verdict(ratio <= target)})" if target else ""
    return [f"{ratio:.1f}x baseline{judged}, CPU {cpu_ratio:.1f}x",
            "outcomes = baseline" if r["outcomes"] == base["outcomes"] else "OUTCOMES DIFFER"]


def step_note(step: str, size: int, r: dict, base: dict | None) -> str:
    """The targets and breakdown printed next to a step's figures."""
    if "seconds" not in r:
        return ""
    notes = [f"engine start {r['open_s']:.1f} s"] if "open_s" in r else []
    if step == "reconcile":
        notes += _ratio_note(r, base, TARGET_RATIO)
    elif step == "load":
        notes.append(f"{r['rejected']:,} rejected")
    else:
        if size in TARGETS_S:
            notes.append(f"target <= {TARGETS_S[size]:.0f} s {verdict(r['seconds'] <= TARGETS_S[size])}")
        notes += _ratio_note(r, base, None)
        if size in TARGET_PEAK_MB:
            notes.append(f"peak target <= {TARGET_PEAK_MB[size] / 1024:.0f} GB "
                         f"{verdict(r['peak_mb'] <= TARGET_PEAK_MB[size])}")
        notes.append(f"analyze {r['analyze_s']:.1f} s + write {r['write_s']:.1f} s, "
                     f"{r['incidents']:,} incidents, {r['shared_faults']} shared faults")
    return "; ".join(notes)


def run_size(size: int, args) -> list[str]:
    """Generate (or reuse) the dataset of ``size``; run the baseline, then each step on each engine."""
    label = size_label(size)
    directory = args.data_dir / f"bench_engines_{label}"
    limit_mb = args.kill_above_gb * 1024
    report = []

    def emit(text: str) -> None:
        print(text, flush=True)
        report.append(text)

    if (directory / "transactions.parquet").is_file():
        print(f"{label}: reusing {directory}", flush=True)
    else:
        r = watch(["generate", str(directory), str(size)], limit_mb)
        if "rows" in r:
            r["seconds"] = r["wall_s"]
        note = f"{r.get('chunks', '?')} chunks; peak target <= 3 GB {verdict(r['peak_mb'] <= TARGET_SIMULATE_PEAK_MB)}"
        emit(line(label, "simulate + write", r, note))
        if "rows" not in r:
            return report
    mb = sum(p.stat().st_size for p in directory.glob("*.parquet")) / 2**20
    print(f"{label}: {transactions_in(directory):,} transactions, {mb:,.0f} MB of Parquet in {directory}",
          flush=True)
    base = watch(["baseline", str(directory), args.memory_limit or ""], limit_mb)
    emit(line(label, "baseline (hand SQL)", base, "connect + as-of + join + outcome counts"))
    for engine in args.engines:
        if engine == "spark" and size not in args.spark_sizes:
            continue
        for step in args.steps:
            r = watch([step, str(directory), engine, args.memory_limit or "", args.spark_master], limit_mb)
            emit(line(label, f"{step} {engine}", r, step_note(step, size, r, base)))
    return report


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return child_main(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="5M,50M", help="transaction counts, e.g. 5M,50M")
    parser.add_argument("--engines", default="duckdb,spark", help="engines for the steps: duckdb,spark")
    parser.add_argument("--steps", default="reconcile,load,analyze",
                        help="steps timed on each engine: reconcile (vs the baseline), load, analyze")
    parser.add_argument("--spark-sizes", default="5M", help="sizes Spark runs on (local mode is slow)")
    parser.add_argument("--spark-master", default="local[2]")
    parser.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()),
                        help="where bench_engines_<size>/ datasets are generated once and reused")
    parser.add_argument("--memory-limit", default=None, help="DuckDB memory limit, e.g. 6GB")
    parser.add_argument("--kill-above-gb", type=float, default=12.0,
                        help="kill a run whose processes together grow past this (shared machine)")
    args = parser.parse_args(argv)
    sizes = [parse_size(s) for s in args.sizes.split(",")]
    args.spark_sizes = {parse_size(s) for s in args.spark_sizes.split(",")}
    args.engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    args.steps = [e.strip() for e in args.steps.split(",") if e.strip()]
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}; peak = child + descendants (Spark JVM), "
          f"CPU = user + system of the child tree", flush=True)
    report = []
    for size in sizes:
        report += run_size(size, args)
    print("\nsummary\n" + "\n".join(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
