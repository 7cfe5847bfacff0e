"""nbval runs these notebooks; make its sanitize file (a relative path in pyproject's addopts)
resolve against the project root, so `pytest notebooks/` works from any directory."""

from pathlib import Path


def pytest_configure(config):
    option = getattr(config.option, "nbval_sanitize_with", None)
    if option and not Path(option).is_absolute() and not Path(option).exists():
        config.option.nbval_sanitize_with = str(Path(config.rootpath) / option)
