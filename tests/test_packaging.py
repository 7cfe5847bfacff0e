"""Packaging: pyproject and environment.yml agree; README's commands drive CI."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# conda-forge names that differ from PyPI names
CONDA_NAME = {}


def _req(spec: str) -> tuple[str, str]:
    m = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*(>=\s*[0-9][^,;\s]*)?.*", spec)
    assert m, f"cannot parse requirement {spec!r}"
    return m.group(1).lower().replace("_", "-"), (m.group(2) or "").replace(" ", "")


def _pyproject_requirements() -> dict[str, str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    project = data["project"]
    reqs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        reqs += extra
    return dict(_req(r) for r in reqs)


def _environment_requirements() -> dict[str, str]:
    out = {}
    in_pip = False
    text = (ROOT / "environment.yml").read_text(encoding="utf-8")
    for line in text.split("dependencies:", 1)[1].splitlines():
        stripped = line.split("#", 1)[0].rstrip()
        if re.match(r"^\s*-\s*pip:\s*$", stripped):
            in_pip = True
            continue
        m = re.match(r"^  - (\S.*)$", stripped)
        if m and not in_pip:
            name, bound = _req(m.group(1))
            # openjdk: the Java runtime pyspark needs, which pip cannot install
            if name not in ("python", "pip", "openjdk"):
                out[name] = bound
    return out


def test_environment_mirrors_pyproject():
    py = {CONDA_NAME.get(k, k): v for k, v in _pyproject_requirements().items()}
    env = _environment_requirements()
    assert env == py, (
        f"only in pyproject: {sorted(set(py.items()) - set(env.items()))}; "
        f"only in environment.yml: {sorted(set(env.items()) - set(py.items()))}"
    )
    assert all(v.startswith(">=") for v in py.values()), "every dependency needs a lower bound"


def test_environment_installs_project_editable():
    text = (ROOT / "environment.yml").read_text(encoding="utf-8")
    assert "conda-forge" in text
    assert re.search(r"- pip:\s*\n\s*- -e \.", text)


def test_pyproject_names():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert data["project"]["name"] == "pos-incident-analysis"
    assert data["project"]["scripts"]["pos-incidents"] == "analysis.cli:main"
    assert {"test", "notebooks"} <= set(data["project"]["optional-dependencies"])


def _readme_commands() -> list[str]:
    head = (ROOT / "README.md").read_text(encoding="utf-8").split("---", 1)[0]
    return [line.strip() for line in head.splitlines() if line.startswith("    ")]


def test_readme_starts_with_run_and_test_commands():
    commands = _readme_commands()
    assert len(commands) == 2
    run, test = commands
    assert "pip install" in run and "pos-incidents analyze data/case_study" in run
    assert "pip install" in test and "pytest" in test


def test_ci_runs_the_readme_test_command():
    test_command = _readme_commands()[1]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    # .ci/run may add quiet flags; compare with them removed
    normalise = lambda s: re.sub(r"\s+", " ", s.replace(" -q", "")).strip()  # noqa: E731
    assert normalise(test_command) in normalise(ci)
    assert "5" in ci and "rc" in ci  # pytest's "no tests" exit code handled
