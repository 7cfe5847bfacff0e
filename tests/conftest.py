"""Fixtures shared by the test modules."""

from __future__ import annotations

import shutil

import pytest


@pytest.fixture(scope="session")
def spark_engine():
    """One Spark local-mode engine for the whole test session (starting Spark takes ~15 s).

    Skips when pyspark or a Java runtime is missing; CI (``.ci/run``) installs both.
    """
    pytest.importorskip("pyspark")
    if shutil.which("java") is None:
        pytest.skip("no Java runtime: Spark needs Java 17+ (apt-get install openjdk-17-jre-headless)")
    from analysis.engine import open_engine

    engine = open_engine("spark", master="local[2]")
    yield engine
    engine.stop()
