"""``analyze`` on every engine: DuckDB, Spark (local mode) and in-memory frames write the same outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from analysis.cli import main
from analysis.engine import DuckDBEngine
from analysis.io import load_dataset, write_tables
from analysis.pipeline import analyze
from analysis.simulate import (
    BankOutage,
    CityConfig,
    FaultyFirmware,
    Fix,
    MisconfiguredMerchant,
    UnstableLink,
    simulate_city,
)

CASE = Path("data/case_study")
COMPARED = ("incidents.csv", "clusters.csv", "shared_faults.json", "tickets.csv", "fix_effects.csv")


def _city(tmp_path: Path, seed: int) -> Path:
    """A small simulated city with shared faults and fixes, written as Parquet."""
    cfg = CityConfig(
        seed=seed, n_merchants=70, n_neighbourhoods=4, days=35,
        faults=(UnstableLink(start="2026-03-09 08:00"), FaultyFirmware("A920-2.1.09", "2026-03-12"),
                MisconfiguredMerchant(None, "no_upload", "2026-03-20"),
                BankOutage("招商银行", "2026-03-18 08:00", "2026-03-18 20:00")),
        fixes=(Fix("network_upgrade", "network_segment", None, "2026-03-24 01:30"),),
    )
    city = simulate_city(cfg)
    path = tmp_path / f"city{seed}"
    write_tables(city.tables, path, fmt="parquet")
    return path


def _outputs(out: Path) -> dict[str, str]:
    return {name: (out / name).read_text(encoding="utf-8") for name in COMPARED}


def _assert_same_outputs(a: Path, b: Path) -> None:
    left, right = _outputs(a), _outputs(b)
    for name in COMPARED:
        if name.endswith(".json"):
            assert json.loads(left[name]) == json.loads(right[name]), name
        else:
            pd.testing.assert_frame_equal(
                pd.read_csv(a / name, dtype=str), pd.read_csv(b / name, dtype=str), obj=name
            )


@pytest.fixture(scope="module")
def cities(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cities")
    return [CASE, _city(tmp, 3), _city(tmp, 4)]


def test_engine_instance_is_left_open_and_named_in_the_result():
    ds = load_dataset(CASE)
    with DuckDBEngine() as eng:
        result = analyze(ds, engine=eng)
        assert eng.scalar("SELECT count(*) FROM reconciled") == len(ds.transactions)
    assert result.engine == "duckdb"
    assert int(result.outcomes["count"].sum()) == len(ds.transactions)
    assert "engine=duckdb" in repr(result)


@pytest.mark.slow
def test_spark_and_duckdb_write_identical_outputs(cities, tmp_path, spark_engine):
    for data in cities:
        outs = {}
        for engine in ("duckdb", "spark"):
            out = tmp_path / f"{data.name}-{engine}"
            argv = ["analyze", str(data), "--out", str(out), "--engine", engine, "--no-progress"]
            if engine == "spark":
                argv += ["--spark-master", "local[2]"]
            assert main(argv) == 0
            outs[engine] = out
        _assert_same_outputs(outs["duckdb"], outs["spark"])


def test_unknown_engine_is_a_usage_error(capsys):
    assert main(["analyze", str(CASE), "--out", "/nonexistent", "--engine", "oracle"]) != 0
    assert "duckdb, spark" in capsys.readouterr().err
