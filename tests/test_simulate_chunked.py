"""Tests of analysis.simulate.chunked: a big dataset written chunk by chunk."""

from __future__ import annotations

import dataclasses
import doctest
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import analysis.simulate.chunked as chunked
from analysis.contract import TABLES
from analysis.io import load_dataset
from analysis.simulate import CityConfig, Fix, UnstableLink, simulate_city, write_city, write_city_chunks

BASE = CityConfig(days=6, n_merchants=20, n_neighbourhoods=2, case_segment_size=5,
                  faults=(UnstableLink(None, "2026-03-03"),),
                  fixes=(Fix("network_upgrade", "network_segment", None, "2026-03-05"),))
N_CHUNKS = 3


def config_for_chunk(k: int) -> CityConfig:
    return dataclasses.replace(BASE, seed=100 + k)


def file_hashes(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("chunks")
    out = write_city_chunks(config_for_chunk, N_CHUNKS, root / "data", truth_dir=root / "truth",
                            progress=False)
    return root, out


@pytest.fixture(scope="module")
def cities():
    return [simulate_city(config_for_chunk(k), full_pans=False) for k in range(N_CHUNKS)]


def test_docstring_examples_run():
    assert doctest.testmod(chunked, optionflags=doctest.ELLIPSIS).failed == 0


def test_loads_with_nothing_rejected(written):
    _, out = written
    ds = load_dataset(out)
    assert len(ds.rejected) == 0
    assert (ds.accounting["rejected"] == 0).all()


def test_only_contract_files_and_no_scratch_left(written):
    root, out = written
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{n}.parquet" for n in TABLES)
    assert sorted(p.name for p in root.iterdir()) == ["data", "truth"]


def test_row_counts_add_up_with_one_row_group_per_chunk(written, cities):
    _, out = written
    for name in TABLES:
        meta = pq.ParquetFile(out / f"{name}.parquet").metadata
        assert meta.num_rows == sum(len(c.tables[name]) for c in cities), name
        assert meta.num_row_groups == N_CHUNKS, name


def test_ids_are_unique_across_chunks_and_carry_the_chunk_prefix(written):
    _, out = written
    for name, column in [("merchants", "merchant_id"), ("terminals", "terminal_id"),
                         ("transactions", "txn_id"), ("complaints", "ticket_id"),
                         ("interventions", "change_id")]:
        ids = pd.read_parquet(out / f"{name}.parquet", columns=[column])[column]
        assert ids.is_unique, name
        assert sorted(ids.str[:5].unique()) == ["C000-", "C001-", "C002-"], name
    segments = pd.read_parquet(out / "terminals.parquet").groupby("network_segment")["merchant_id"]
    assert (segments.agg(lambda m: m.str[:5].nunique()) == 1).all()


def test_segment_fixes_name_their_own_chunks_segment(written):
    _, out = written
    fixes = pd.read_parquet(out / "interventions.parquet")
    segments = set(pd.read_parquet(out / "terminals.parquet")["network_segment"])
    scoped = fixes[fixes["scope_type"] == "network_segment"]
    assert len(scoped) == N_CHUNKS
    assert set(scoped["scope_value"]) <= segments
    assert (scoped["scope_value"].str[:5] == scoped["change_id"].str[:5]).all()


def test_chunks_sit_apart_on_the_map(written):
    _, out = written
    m = pd.read_parquet(out / "merchants.parquet")
    centre = m.groupby(m["merchant_id"].str[:5])[["latitude", "longitude"]].mean().to_numpy()
    apart = np.hypot(*(centre[:, None, :] - centre[None, :, :]).transpose(2, 0, 1))
    assert (apart[np.triu_indices(N_CHUNKS, 1)] > 0.2).all()  # a 2 x 2 grid, 0.25 degrees apart


def test_same_schema_as_write_city_and_masked_pans(written, cities, tmp_path):
    _, out = written
    write_city(cities[0], tmp_path / "one", mask_pans=True)
    for name in TABLES:
        assert pq.read_schema(out / f"{name}.parquet").equals(
            pq.read_schema(tmp_path / "one" / f"{name}.parquet")
        ), name
    txns = pd.read_parquet(out / "transactions.parquet", columns=["card_number", "payee_account"])
    for col in txns:
        assert txns[col].dropna().str.fullmatch(r"[0-9]{6}\*{6,9}[0-9]{4}").all(), col


def test_same_seeds_give_identical_files(written, tmp_path):
    _, out = written
    again = write_city_chunks(config_for_chunk, N_CHUNKS, tmp_path / "again", progress=False)
    assert file_hashes(again) == file_hashes(out)


def test_truth_per_chunk_with_the_prefix_map(written, cities):
    root, _ = written
    chunks = json.loads((root / "truth" / "chunks.json").read_text(encoding="utf-8"))
    assert [c["id_prefix"] for c in chunks] == ["C000-", "C001-", "C002-"]
    assert [c["seed"] for c in chunks] == [100, 101, 102]
    for k, city in enumerate(cities):
        incidents = pd.read_parquet(root / "truth" / f"chunk_{k:03d}" / "incidents.parquet")
        assert incidents["txn_id"].tolist() == city.truth.incidents["txn_id"].tolist()


def test_truth_inside_the_dataset_is_refused(tmp_path):
    with pytest.raises(ValueError, match="outside"):
        write_city_chunks(config_for_chunk, 1, tmp_path / "d", truth_dir=tmp_path / "d" / "truth",
                          progress=False)


def test_an_interrupted_run_leaves_no_dataset(tmp_path):
    def failing(k: int) -> CityConfig:
        if k == 1:
            raise RuntimeError("stop")
        return config_for_chunk(k)

    with pytest.raises(RuntimeError, match="stop"):
        write_city_chunks(failing, 2, tmp_path / "d", progress=False)
    assert list((tmp_path / "d").iterdir()) == []
    assert [p.name for p in tmp_path.iterdir()] == ["d"]


def test_progress_lines_on_stderr(tmp_path, capsys):
    write_city_chunks(config_for_chunk, 1, tmp_path / "d")
    assert "chunk 1/1" in capsys.readouterr().err


def test_zero_chunks_refused(tmp_path):
    with pytest.raises(ValueError, match="at least 1"):
        write_city_chunks(config_for_chunk, 0, tmp_path / "d")
