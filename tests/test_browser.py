"""The notebooks in a real browser: the triage dashboard under Voila, the case study in JupyterLab.

Debian's Chromium (``apt-get install -y chromium``; ``.ci/run`` installs it) is
driven by pytest-playwright; ``playwright install`` is never run. Servers run
on free local ports; JupyterLab serves a temporary copy of the notebook so that
its autosave can never touch the committed file.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
CAUSE = "NETWORK_COMMUNICATION"
#: Seconds a server may take to start and a notebook to run (both execute the analysis).
START_TIMEOUT = 120
RUN_TIMEOUT_MS = 240_000

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="browser tests need Debian's Chromium at /usr/bin/chromium "
        "(apt-get install -y chromium; .ci/run installs it)",
    ),
]


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """pytest-playwright: launch the system Chromium, never a downloaded browser."""
    return {**browser_type_launch_args, "executable_path": str(CHROMIUM), "args": CHROMIUM_ARGS}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"server exited with {proc.returncode}:\n{log.read_text(errors='replace')}"
            )
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(
        f"server at {url} did not answer in {START_TIMEOUT} s:\n{log.read_text(errors='replace')}"
    )


class _Server:
    """A Jupyter server subprocess on a free port, stopped (only this process) on exit."""

    def __init__(
        self, args: list[str], cwd: Path, env: dict[str, str], log: Path, port: int
    ) -> None:
        self.port, self.log = port, log
        self._fh = log.open("wb")
        self.proc = subprocess.Popen(
            args, cwd=cwd, env=env, stdout=self._fh, stderr=subprocess.STDOUT
        )

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._fh.close()


def _env(tmp: Path) -> dict[str, str]:
    env = dict(
        os.environ,
        MPLBACKEND="Agg",
        JUPYTER_CONFIG_DIR=str(tmp / "config"),
        JUPYTER_RUNTIME_DIR=str(tmp / "runtime"),
    )
    env.pop("JUPYTER_TOKEN", None)
    return env


@pytest.fixture(scope="module")
def voila_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("voila")
    port = _free_port()
    server = _Server(
        [
            sys.executable,
            "-m",
            "voila",
            "--no-browser",
            "--Voila.ip=127.0.0.1",
            f"--port={port}",
            "notebooks/02_incident_triage.ipynb",
        ],
        cwd=ROOT,
        env=_env(tmp),
        log=tmp / "voila.log",
        port=port,
    )
    try:
        _wait_for(server.url(), server.proc, server.log)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def lab_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lab")
    work = tmp / "work"
    work.mkdir()
    shutil.copy(NOTEBOOKS / "01_supermarket_case_study.ipynb", work)
    port = _free_port()
    server = _Server(
        [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}",
            "--ServerApp.allow_root=True",
            "--IdentityProvider.token=",
            "--ServerApp.password=",
            f"--ServerApp.root_dir={work}",
            "--LabApp.expose_app_in_browser=True",
            "--LabApp.news_url=",
            f"--LabApp.workspaces_dir={tmp / 'workspaces'}",
        ],
        cwd=work,
        env=_env(tmp),
        log=tmp / "lab.log",
        port=port,
    )
    try:
        _wait_for(server.url("api"), server.proc, server.log)
        yield server
    finally:
        server.stop()


def test_voila_triage_cause_picker_updates_readout_and_table(voila_server, page):
    from playwright.sync_api import expect

    page.set_default_timeout(RUN_TIMEOUT_MS)
    page.goto(voila_server.url(), timeout=RUN_TIMEOUT_MS)
    readout = page.locator(".triage-readout")
    expect(readout).to_contain_text("Showing all causes", timeout=RUN_TIMEOUT_MS)
    table = page.locator(".triage-table")
    before = table.inner_text()
    option = page.locator(".triage-cause option", has_text=CAUSE).first
    page.locator(".triage-cause select").select_option(label=option.inner_text().strip())
    expect(readout).to_contain_text(f"Showing {CAUSE}", timeout=60_000)
    after = table.inner_text()
    assert after != before
    rows = table.locator("tbody tr")
    assert rows.count() > 0
    causes = {rows.nth(i).locator("td").nth(7).inner_text() for i in range(rows.count())}
    assert causes == {CAUSE}


def test_jupyterlab_renders_and_runs_the_case_study(lab_server, page):
    from playwright.sync_api import expect

    stored = nbformat.read(NOTEBOOKS / "01_supermarket_case_study.ipynb", as_version=4)
    n_images = sum(
        "image/png" in o.get("data", {})
        for c in stored.cells
        if c.cell_type == "code"
        for o in c.outputs
    )
    page.set_default_timeout(RUN_TIMEOUT_MS)
    page.goto(lab_server.url("lab/tree/01_supermarket_case_study.ipynb"), timeout=RUN_TIMEOUT_MS)
    notebook = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook")
    expect(notebook.locator("h1").first).to_contain_text("刷卡未到账", timeout=RUN_TIMEOUT_MS)
    expect(notebook.locator(".jp-RenderedImage img")).to_have_count(n_images, timeout=60_000)
    errors = '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'
    assert notebook.locator(errors).count() == 0

    # clear the outputs and run every cell in this JupyterLab's kernel: the notebook works there
    # too. Read the cells' model rather than the DOM (JupyterLab renders only visible cells).
    page.wait_for_function(
        "window.jupyterapp && window.jupyterapp.shell.currentWidget"
        " && window.jupyterapp.shell.currentWidget.sessionContext"
    )
    run = page.evaluate(_RUN_ALL)
    assert run["cleared_images"] == 0
    assert run["ok"] is True, run
    assert run["errors"] == [], run
    assert run["images"] == n_images, run
    assert run["unexecuted"] == 0, run


_RUN_ALL = """async () => {
  const app = window.jupyterapp;
  const panel = app.shell.currentWidget;
  await panel.sessionContext.ready;
  const cells = panel.content.model.cells;
  const scan = () => {
    const out = {images: 0, errors: [], unexecuted: 0};
    for (let i = 0; i < cells.length; i++) {
      const cell = cells.get(i);
      if (cell.type !== "code") continue;
      if (!cell.executionCount) out.unexecuted += 1;
      for (let j = 0; j < cell.outputs.length; j++) {
        const o = cell.outputs.get(j).toJSON();
        if (o.output_type === "error") out.errors.push(o.ename + ": " + o.evalue);
        if (o.output_type === "stream" && o.name === "stderr") out.errors.push(String(o.text));
        if (o.data && o.data["image/png"]) out.images += 1;
      }
    }
    return out;
  };
  await app.commands.execute("notebook:clear-all-cell-outputs");
  const cleared = scan().images;
  const ok = await app.commands.execute("notebook:run-all-cells");
  return {ok: ok, cleared_images: cleared, ...scan()};
}"""
