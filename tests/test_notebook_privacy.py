"""No card number in anything the project shows or ships.

* Every committed notebook's outputs, the HTML report of the bundled case and
  every file under ``data/`` hold no Luhn-valid run of 13–19 digits.
* On a small simulated city written with FULL synthetic card and account
  numbers (and a few more typed into complaint texts), neither the HTML report
  nor anything the triage dashboard shows contains one of those numbers.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import matplotlib
import pyarrow.parquet as pq
import pytest

matplotlib.use("Agg")

from analysis import analyze, load_dataset  # noqa: E402
from analysis.dashboards import ALL, TriageDashboard, ticket_html  # noqa: E402
from analysis.privacy import luhn_valid  # noqa: E402
from analysis.report import build_report  # noqa: E402
from analysis.simulate import CityConfig, simulate_city, write_city  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
DIGIT_RUN = re.compile(r"(?<![0-9])[0-9]{13,19}(?![0-9])")
#: Embedded images are base64, not text a person reads: left out of the scan.
DATA_URI = re.compile(r"data:image/[a-z+]+;base64,[A-Za-z0-9+/=\s]+")


def luhn_runs(text: str) -> list[str]:
    """Luhn-valid runs of 13–19 digits in ``text``.

    Examples
    --------
    >>> luhn_runs("card 4111111111111111, order 1234567890123")
    ['4111111111111111']
    """
    return [run for run in DIGIT_RUN.findall(DATA_URI.sub(" ", text)) if luhn_valid(run)]


def notebook_texts(path: Path) -> list[str]:
    """Every text a notebook's outputs (and its stored widget state) hold, images left out."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    texts = []
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            for key in ("text", "evalue", "traceback"):
                if key in out:
                    texts.append("".join(out[key]) if isinstance(out[key], list) else str(out[key]))
            for mime, value in out.get("data", {}).items():
                if not mime.startswith("image/"):
                    texts.append(value if isinstance(value, str) else json.dumps(value))
    state = nb.get("metadata", {}).get("widgets")
    if state:
        texts.append(json.dumps(state))
    return texts


def test_luhn_scanner_doctest():
    import doctest
    import sys

    assert doctest.testmod(sys.modules[__name__]).failed == 0


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_committed_notebook_outputs_hold_no_card_number(path):
    texts = notebook_texts(path)
    assert texts, f"{path.name} has no outputs: execute it before committing"
    found = [run for t in texts for run in luhn_runs(t)]
    assert found == [], f"{path.name}: Luhn-valid digit runs in outputs: {found[:3]}"


def test_report_html_of_the_bundled_case_holds_no_card_number():
    import nbformat

    from analysis.report import CASE_NOTEBOOK, notebook_html

    page = notebook_html(nbformat.read(CASE_NOTEBOOK, as_version=4))
    assert luhn_runs(page) == []


def _data_texts(path: Path) -> list[str]:
    """The text of a data file; for Parquet, the values (as text) holding 13 digits in a row."""
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.compute as pc

        texts = []
        for col in pq.read_table(path).columns:
            text = pc.cast(col, pa.string()) if not pa.types.is_string(col.type) else col
            hit = pc.fill_null(pc.match_substring_regex(text, r"[0-9]{13}"), False)
            texts += [v for v in pc.filter(text, hit).to_pylist() if v is not None]
        return texts
    return [path.read_text(encoding="utf-8", errors="replace")]


def test_data_directory_holds_no_card_number():
    files = [p for p in (ROOT / "data").rglob("*") if p.is_file()]
    assert files
    found = {
        p.name: runs for p in files if (runs := [r for t in _data_texts(p) for r in luhn_runs(t)])
    }
    assert found == {}, f"Luhn-valid digit runs in data/: { {k: v[:3] for k, v in found.items()} }"


# --------------------------------------------------------------------------- full PANs


@pytest.fixture(scope="module")
def full_pan_city(tmp_path_factory):
    """A small city written with full card and account numbers; some typed into complaints."""
    city = simulate_city(CityConfig(n_merchants=40, days=20, seed=20260401), full_pans=True)
    txns = city.tables["transactions"]
    pans = sorted(set(txns["card_number"].dropna()) | set(txns["payee_account"].dropna()))
    assert pans and all(luhn_valid(p) for p in pans[:50]), "the simulator should write full PANs"
    complaints = city.tables["complaints"].copy()
    typed = [f"顾客卡号 {txns['card_number'].iloc[i]}，刷卡未到账" for i in range(len(complaints))]
    complaints["description"] = complaints["description"].where(complaints.index % 2 == 1, typed)
    tables = {**city.tables, "complaints": complaints}
    data = tmp_path_factory.mktemp("full_pans") / "data"
    write_city(replace(city, tables=tables), data)
    return data, pans


def _leaks(text: str, pans: list[str]) -> list[str]:
    digits = re.sub(r"[\s\-]", "", text)
    return [p for p in pans if p in text or p in digits] + luhn_runs(text)


def test_report_shows_no_full_pan(full_pan_city, tmp_path):
    data, pans = full_pan_city
    run = build_report(data, tmp_path / "report.html", progress=False)
    html = run.html_path.read_text(encoding="utf-8")
    assert "好邻居便利超市" in html or "<h1" in html
    assert _leaks(html, pans) == []
    executed = tmp_path / "executed.ipynb"
    import nbformat

    nbformat.write(run.notebook, executed)
    assert [t for t in notebook_texts(executed) if _leaks(t, pans)] == []


def test_triage_dashboard_shows_no_full_pan(full_pan_city):
    data, pans = full_pan_city
    ds = load_dataset(data)
    dash = TriageDashboard(analyze(ds), dataset=ds)
    shown: list[str] = []

    def grab() -> None:
        shown.extend([dash.readout.value, dash.table.value, dash.ticket_view.value])
        for w in (dash.cause, dash.cluster, dash.merchant, dash.ticket):
            shown.extend(label for label, _ in w.options)

    grab()
    for _, cause in dash.cause.options[1:4]:
        dash.cause.value = cause
        grab()
    dash.cause.value = ALL
    shown.extend(ticket_html(dash.data, t) for t in dash.data.tickets["ticket_id"])
    assert any("卡号" in s for s in shown), (
        "the typed card numbers should reach the ticket view (masked)"
    )
    leaks = [s[:200] for s in shown if _leaks(s, pans)]
    assert leaks == []


def test_the_data_scan_would_find_a_card_number(tmp_path):
    import pyarrow as pa

    pq.write_table(
        pa.table({"n": [1, 2], "card_number": ["4111111111111111", None]}), tmp_path / "t.parquet"
    )
    (tmp_path / "notes.md").write_text("card 5500005555555559 seen", encoding="utf-8")
    found = [r for p in sorted(tmp_path.iterdir()) for t in _data_texts(p) for r in luhn_runs(t)]
    assert found == ["5500005555555559", "4111111111111111"]
