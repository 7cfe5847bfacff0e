"""The ``pos-incidents`` command line: outputs per the contract, clear errors, no traceback."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from analysis.cli import EXIT_USER_ERROR, main
from analysis.contract import CAUSES, OUTPUTS
from analysis.io import write_tables
from builders import make_dataset


def _small_dataset(tmp_path: Path) -> Path:
    ds = make_dataset(
        transactions=[
            {"txn_id": "T1", "timestamp": "2026-03-10 10:00"},
            {"txn_id": "T2", "timestamp": "2026-03-10 11:00", "response_code": "51"},
            {"txn_id": "T3", "timestamp": "2026-03-10 12:00", "response_code": None, "reversal": "failed", "reversal_reason": "98"},
            {"txn_id": "T4", "timestamp": "2026-03-20 12:00"},
        ],
        settlements=[{"txn_id": "T1"}],
        complaints=[{"ticket_id": "C1", "opened_at": "2026-03-11 09:00", "amount": 100.0, "txn_time": "2026-03-10 12:05"}],
    )
    tables = {name: ds.table(name) for name in ("merchants", "terminals", "transactions", "settlements", "complaints")}
    path = tmp_path / "ds"
    write_tables(tables, path, fmt="csv")
    return path


def test_analyze_writes_every_contract_file(tmp_path, capsys):
    data = _small_dataset(tmp_path)
    out = tmp_path / "out"
    assert main(["analyze", str(data), "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "transactions" in printed and "rejected" in printed  # row accounting shown
    for name, cols in OUTPUTS.items():
        with open(out / name, encoding="utf-8") as fh:
            assert next(csv.reader(fh)) == list(cols), name
    assert json.loads((out / "shared_faults.json").read_text(encoding="utf-8")) == []
    incidents = pd.read_csv(out / "incidents.csv", dtype=str)
    # T1 credited on time is not an incident; T2 declined 51, T3 reversal failed, T4 still in cycle
    assert sorted(incidents["txn_id"]) == ["T2", "T3", "T4"]
    causes = dict(zip(incidents["txn_id"], incidents["cause"]))
    assert causes["T2"] == "INSUFFICIENT_FUNDS"
    assert causes["T4"] == "PROCESSING_DELAY"
    assert set(incidents["cause"]) <= set(CAUSES)
    tickets = pd.read_csv(out / "tickets.csv", dtype=str, keep_default_na=False)
    assert tickets["ticket_id"].tolist() == ["C1"]
    assert (out / "rejected").is_dir()


def test_as_of_changes_what_is_in_cycle(tmp_path):
    data = _small_dataset(tmp_path)
    early, late = tmp_path / "early", tmp_path / "late"
    assert main(["analyze", str(data), "--out", str(early), "--as-of", "2026-03-20 13:00", "--no-progress"]) == 0
    assert main(["analyze", str(data), "--out", str(late), "--as-of", "2026-04-30 18:00", "--no-progress"]) == 0
    e = pd.read_csv(early / "incidents.csv", dtype=str).set_index("txn_id")
    lt = pd.read_csv(late / "incidents.csv", dtype=str).set_index("txn_id")
    assert e.loc["T4", "outcome"] == "in_cycle"
    assert lt.loc["T4", "outcome"] == "not_cleared"


def test_missing_required_file_is_one_paragraph_exit_2(tmp_path, capsys):
    data = _small_dataset(tmp_path)
    (data / "transactions.csv").unlink()
    assert main(["analyze", str(data), "--out", str(tmp_path / "o"), "--no-progress"]) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert "transactions" in err and "Traceback" not in err


def test_console_script_prints_no_traceback_on_bad_input(tmp_path):
    data = _small_dataset(tmp_path)
    raw = (data / "merchants.csv").read_bytes()
    (data / "merchants.csv").write_bytes(raw + "M9,\xff\xfe shop,5411,31.2,121.4,x,T1\n".encode("latin-1"))
    proc = subprocess.run(
        [sys.executable, "-m", "analysis.cli", "analyze", str(data), "--out", str(tmp_path / "o"), "--no-progress"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == EXIT_USER_ERROR
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "merchants.csv" in proc.stderr


def test_causes_lists_taxonomy(capsys):
    assert main(["causes"]) == 0
    out = capsys.readouterr().out
    for code, cause in CAUSES.items():
        assert code in out and cause.zh in out


@pytest.mark.parametrize("argv", [["analyze"], ["nonsense-command"]])
def test_usage_errors_exit_nonzero_without_traceback(argv, capsys):
    assert main(argv) != 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
