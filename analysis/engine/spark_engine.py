"""Spark: the same step SQL past one machine (transpiled from DuckDB's dialect by sqlglot)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path

import pandas as pd
import pyarrow as pa

from .base import Engine


@lru_cache(maxsize=512)
def to_spark_sql(sql: str) -> str:
    """A step's SQL (DuckDB dialect) in Spark SQL's dialect.

    Examples
    --------
    >>> to_spark_sql("SELECT a // 2 FROM t")
    'SELECT a DIV 2 FROM t'
    """
    import sqlglot

    return sqlglot.transpile(sql, read="duckdb", write="spark")[0]


class SparkEngine(Engine):
    """Run the steps on Spark (local mode for tests, a cluster for real volumes).

    Parameters
    ----------
    master : str
        Spark master URL: ``local[2]`` (default), ``spark://host:7077``, ``yarn``.
        On a cluster the Parquet dataset must be on storage every executor can
        read (HDFS, S3, a shared file system); in-memory frames are shipped.
    app_name : str
        The application's name in Spark's UI.
    conf : dict, optional
        Extra Spark settings (``spark.executor.memory`` …).

    Notes
    -----
    The session time zone is set to Asia/Shanghai and Arrow transfer is enabled;
    results come back through Arrow (``DataFrame.toArrow``) so their dtypes match
    DuckDB's.
    """

    name = "spark"

    def __init__(self, master: str = "local[2]", *, app_name: str = "pos-incidents",
                 conf: dict[str, str] | None = None) -> None:
        from pyspark.sql import SparkSession

        builder = (
            SparkSession.builder.master(master)
            .appName(app_name)
            .config("spark.sql.session.timeZone", "Asia/Shanghai")
            .config("spark.sql.execution.arrow.pyspark.enabled", "true")
            .config("spark.sql.shuffle.partitions", "8" if master.startswith("local") else "200")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.sql.ansi.enabled", "false")
            .config("spark.sql.ui.retainedExecutions", "20")
        )
        if master.startswith("local"):  # Spark's default 1g is tight for the driver doing everything
            builder = builder.config("spark.driver.memory", "2g")
        for key, value in (conf or {}).items():
            builder = builder.config(key, value)
        self.spark = builder.getOrCreate()
        self.spark.sparkContext.setLogLevel("ERROR")
        self.master = master
        self._cached: list = []
        self._checkpoints: list[int] = []  # ids of the localCheckpoint RDDs

    def _sql(self, sql: str):
        return self.spark.sql(to_spark_sql(sql))

    def register_frame(self, name: str, frame: pd.DataFrame) -> None:
        table = frame if isinstance(frame, pa.Table) else pa.Table.from_pandas(frame, preserve_index=False)
        table = _spark_friendly(table)
        self.spark.createDataFrame(table).createOrReplaceTempView(name)

    def register_parquet(self, name: str, paths: list[Path]) -> None:
        self.spark.read.parquet(*[str(p) for p in paths]).createOrReplaceTempView(name)

    def create_view(self, name: str, sql: str) -> None:
        self._sql(sql).createOrReplaceTempView(name)

    def create_table(self, name: str, sql: str, codes: Mapping[str, Sequence[str]] | None = None) -> None:
        # ``codes``: Spark keeps the text (its columnar cache compresses it already)
        from pyspark import StorageLevel

        df = self._sql(sql).persist(StorageLevel.MEMORY_AND_DISK)
        df.count()
        self._cached.append(df)
        df.createOrReplaceTempView(name)

    def create_checkpoint(self, name: str, sql: str) -> None:
        """:meth:`create_table` with the lineage cut (``localCheckpoint``), released by :meth:`close`.

        For tables built on one another: their plans would otherwise nest ever
        deeper, and a dropped helper view would uncache every table built on it.
        """
        known = set(self._persistent_rdds())
        df = self._sql(sql).localCheckpoint(eager=True)
        # unpersisting the DataFrame leaves the checkpoint's RDD blocks in the driver:
        # keep the RDD's id to release it too
        self._checkpoints.extend(set(self._persistent_rdds()) - known)
        self._cached.append(df)
        df.createOrReplaceTempView(name)

    def _persistent_rdds(self):
        return self.spark.sparkContext._jsc.getPersistentRDDs()

    def fetch_arrow(self, sql: str) -> pa.Table:
        return self._sql(sql).toArrow()

    def columns(self, name: str) -> list[str]:
        return list(self.spark.table(name).columns)

    def has(self, name: str) -> bool:
        return bool(self.spark.catalog.tableExists(name))

    def close(self) -> None:
        for df in self._cached:
            df.unpersist()
        self._cached.clear()
        rdds = self._persistent_rdds()
        for rdd_id in self._checkpoints:
            if rdds.containsKey(rdd_id):
                rdds.get(rdd_id).unpersist(False)
        self._checkpoints.clear()

    def stop(self) -> None:
        """Stop the Spark session (a later engine starts a new one)."""
        self.close()
        self.spark.stop()

    def __repr__(self) -> str:
        return f"SparkEngine(master={self.master!r})"


def _spark_friendly(table: pa.Table) -> pa.Table:
    """Arrow types Spark accepts: large strings as strings, dictionaries decoded."""
    fields = []
    for f in table.schema:
        t = f.type
        if pa.types.is_dictionary(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
            t = pa.string()
        fields.append(pa.field(f.name, t))
    return table.cast(pa.schema(fields))
