"""Engines that run the transaction-level steps: DuckDB (default) and Spark.

See :mod:`analysis.engine.base` for the seam and why the steps are SQL text.

Examples
--------
>>> eng = open_engine("duckdb")
>>> eng.scalar("SELECT 40 + 2")
42
>>> eng.close()
"""

from __future__ import annotations

from .base import Engine, arrow_to_pandas
from .duckdb_engine import DuckDBEngine

#: Engine names ``open_engine`` knows.
ENGINES = ("duckdb", "spark")


def open_engine(name: str = "duckdb", **options) -> Engine:
    """A new engine by name: ``"duckdb"`` (options of :class:`DuckDBEngine`) or
    ``"spark"`` (options of :class:`~analysis.engine.spark_engine.SparkEngine`, e.g. ``master``).
    """
    if name == "duckdb":
        return DuckDBEngine(**options)
    if name == "spark":
        from .spark_engine import SparkEngine

        return SparkEngine(**options)
    raise ValueError(f"unknown engine {name!r}; choose one of {', '.join(ENGINES)}")


__all__ = ["ENGINES", "DuckDBEngine", "Engine", "arrow_to_pandas", "open_engine"]
