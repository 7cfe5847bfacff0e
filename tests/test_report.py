"""The HTML report: runs the case-study notebook on any contract dataset, self-contained output."""

from __future__ import annotations

import doctest
import html
import re
from pathlib import Path

import matplotlib
import nbformat
import pytest

matplotlib.use("Agg")

from analysis import report as report_mod  # noqa: E402
from analysis.exceptions import DatasetError  # noqa: E402
from analysis.report import (  # noqa: E402
    BUNDLED_DATASET,
    CASE_NOTEBOOK,
    build_report,
    notebook_html,
    resolve_dataset_dir,
)
from analysis.simulate import CityConfig, simulate_city, write_city  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SANITIZE = ROOT / "notebooks" / "nbval_sanitize.cfg"


def _sanitizer():
    from nbval.plugin import get_sanitize_patterns

    patterns = get_sanitize_patterns(SANITIZE.read_text(encoding="utf-8"))

    def clean(text: str) -> str:
        for regex, replacement in patterns:
            text = re.sub(regex, replacement, text)
        return text

    return clean


def text_outputs(nb) -> dict[str, list[str]]:
    """Per code cell (by source), its stream and text/plain outputs, as nbval compares them;
    cells tagged nbval-ignore-output and injected parameters are left out."""
    clean = _sanitizer()
    out = {}
    for cell in nb.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if cell.cell_type != "code" or {"nbval-ignore-output", "injected-parameters"} & set(tags):
            continue
        texts = []
        for o in cell.outputs:
            if o.output_type == "stream":
                texts.append(clean(o.text))
            elif "text/plain" in o.get("data", {}):
                texts.append(clean(o.data["text/plain"]))
        out[cell.source] = texts
    return out


def test_resolve_dataset_dir_from_anywhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_dataset_dir(None) == BUNDLED_DATASET.resolve()
    assert resolve_dataset_dir("../data/case_study") == BUNDLED_DATASET.resolve()
    assert resolve_dataset_dir(str(BUNDLED_DATASET)) == BUNDLED_DATASET.resolve()
    (tmp_path / "mine").mkdir()
    assert resolve_dataset_dir("mine") == (tmp_path / "mine").resolve()
    with pytest.raises(DatasetError, match="not found"):
        resolve_dataset_dir("no/such/dir")


def test_parameters_are_injected_after_the_parameters_cell():
    nb = nbformat.read(CASE_NOTEBOOK, as_version=4)
    injected = report_mod._inject_parameters(nb, {"DATASET_DIR": "/x/y", "FOCUS_MERCHANT": "007"})
    i = next(k for k, c in enumerate(injected.cells) if "parameters" in c.metadata.get("tags", []))
    cell = injected.cells[i + 1]
    assert cell.metadata["tags"] == ["injected-parameters"]
    assert "DATASET_DIR = '/x/y'" in cell.source and "FOCUS_MERCHANT = '007'" in cell.source
    assert len(injected.cells) == len(nb.cells) + 1  # the original is untouched


def test_missing_dataset_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        build_report(tmp_path / "nothing", tmp_path / "r.html", progress=False)


def test_a_bad_dataset_is_the_loaders_error_not_a_notebook_traceback(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "merchants.csv").write_text("merchant_id\n1\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="required table 'terminals' is missing") as info:
        build_report(tmp_path / "data", tmp_path / "r.html", progress=False)
    assert "Traceback" not in str(info.value)
    assert not (tmp_path / "r.html").exists()


def test_html_is_self_contained():
    page = notebook_html(nbformat.read(CASE_NOTEBOOK, as_version=4))
    assert not re.search(r"<script[^>]+src=", page)
    assert not re.search(r"<link[^>]+href=\"https?:", page)
    assert len(re.findall(r"<img[^>]+src=\"data:image/png;base64,", page)) >= 5
    assert "rp.CaseStudy.load" not in page  # code is hidden, results shown


@pytest.mark.slow
def test_report_reproduces_the_committed_notebook(tmp_path):
    run = build_report(BUNDLED_DATASET, tmp_path / "report.html", progress=False)
    assert run.html_path.is_file()
    committed = text_outputs(nbformat.read(CASE_NOTEBOOK, as_version=4))
    fresh = text_outputs(run.notebook)
    assert list(fresh) == list(committed)
    for source, texts in committed.items():
        assert fresh[source] == texts, f"outputs of cell {source[:60]!r} differ"
    page = run.html_path.read_text(encoding="utf-8")
    printed = [
        o.text
        for c in run.notebook.cells
        if c.cell_type == "code"
        for o in c.outputs
        if o.output_type == "stream" and o.name == "stdout"
    ]
    assert len(printed) >= 5
    for text in printed:
        for line in text.strip().splitlines()[:2]:
            assert html.escape(line.strip(), quote=False) in page
    stored_images = sum(
        "image/png" in o.get("data", {})
        for c in run.notebook.cells
        if c.cell_type == "code"
        for o in c.outputs
    )
    assert len(re.findall(r"<img[^>]+src=\"data:image/png;base64,", page)) == stored_images


def test_report_on_a_dataset_with_only_the_required_tables(tmp_path):
    city = simulate_city(
        CityConfig(n_merchants=30, n_neighbourhoods=3, days=15, seed=5), full_pans=False
    )
    tables = {
        k: v for k, v in city.tables.items() if k in ("merchants", "terminals", "transactions")
    }
    data = tmp_path / "data"
    from dataclasses import replace

    write_city(replace(city, tables=tables), data, fmt="csv")
    run = build_report(data, tmp_path / "r.html", progress=False)
    page = run.html_path.read_text(encoding="utf-8")
    assert "no complaints table" in page
    assert "Traceback" not in page


def test_doctests():
    assert doctest.testmod(report_mod, optionflags=doctest.ELLIPSIS).failed == 0
