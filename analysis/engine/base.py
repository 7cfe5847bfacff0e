"""The engine seam: where the transaction-level steps run.

Every transaction-level step of ``analyze`` (loading, reconciliation, the joins
and window counts behind cause classification, the per-merchant/day aggregates)
is one SQL text in DuckDB's dialect. An :class:`Engine` runs that text: DuckDB
directly (embedded, out of core over Parquet), Spark after the text has been
transpiled with sqlglot. The steps return small pandas frames; the statistics
downstream (scan, localization, fix evaluation) work on those in pandas.

Why SQL text and not a dataframe layer (Ibis, SQLFrame): the steps are joins,
group-bys and window functions that SQL states directly; the text is what an
analyst can read, paste into a DuckDB shell or a Spark notebook and compare with
a hand-written baseline; and sqlglot's DuckDB → Spark transpiler is a single,
well-kept dependency where Ibis would put its own expression compiler (and its
backend version matrix) between the step and both engines.

Rules the step SQL follows so that both engines agree exactly: times are
integer epoch seconds (``t``) and days integer day numbers since 1970-01-01 in
Asia/Shanghai (``day``); no engine-specific functions beyond those sqlglot maps
exactly (no approximate percentiles); every ``ORDER BY`` that decides a result is
total (ties broken by an id).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pyarrow as pa

from ..contract import TIMEZONE


def normalize_arrow(table: pa.Table) -> pa.Table:
    """The same Arrow types whichever engine made ``table``.

    Strings of any layout become ``string``, whole-number decimals (DuckDB's
    ``sum`` of integers) ``int64``, timestamps microseconds.
    """
    columns = {}
    for name, col in zip(table.column_names, table.columns):
        t = col.type
        if pa.types.is_large_string(t) or pa.types.is_string_view(t) or pa.types.is_dictionary(t):
            col = col.cast(pa.string())
        elif pa.types.is_decimal(t) and t.scale == 0:
            col = col.cast(pa.int64())
        elif pa.types.is_decimal(t):
            col = col.cast(pa.float64())
        elif pa.types.is_timestamp(t):
            col = col.cast(pa.timestamp("us", tz=t.tz)) if t.tz else col.cast(pa.timestamp("us"))
        columns[name] = col
    return pa.table(columns)


def arrow_to_pandas(table: pa.Table) -> pd.DataFrame:
    """An engine's Arrow result as pandas with the same dtypes whichever engine made it.

    Types as :func:`normalize_arrow`; timestamps with a zone are shown in
    Asia/Shanghai; integer columns with nulls become nullable ``Int64``.
    """
    table = normalize_arrow(table)
    frame = table.to_pandas()
    for name in frame.columns:
        dtype = frame[name].dtype
        if isinstance(dtype, pd.DatetimeTZDtype):
            frame[name] = frame[name].dt.tz_convert(TIMEZONE)
        elif pd.api.types.is_integer_dtype(dtype) and not isinstance(dtype, pd.Int64Dtype):
            frame[name] = frame[name].astype("int64")
        elif pd.api.types.is_float_dtype(dtype) and pa.types.is_integer(table.schema.field(name).type):
            frame[name] = frame[name].astype("Int64")
    return frame


class Engine(ABC):
    """Runs the steps' SQL (DuckDB dialect) on one engine.

    Subclasses: :class:`~analysis.engine.duckdb_engine.DuckDBEngine` and
    :class:`~analysis.engine.spark_engine.SparkEngine`. Use as a context manager
    or call :meth:`close`.
    """

    #: Short name: ``"duckdb"`` or ``"spark"``.
    name: str = "engine"

    @abstractmethod
    def register_frame(self, name: str, frame: pd.DataFrame) -> None:
        """Make an in-memory table queryable under ``name``."""

    @abstractmethod
    def register_parquet(self, name: str, paths: list[Path]) -> None:
        """Make Parquet files queryable under ``name`` without reading them into memory."""

    @abstractmethod
    def create_view(self, name: str, sql: str) -> None:
        """``CREATE OR REPLACE VIEW name AS sql`` (not evaluated until used)."""

    @abstractmethod
    def create_table(self, name: str, sql: str, codes: Mapping[str, Sequence[str]] | None = None) -> None:
        """Evaluate ``sql`` once and keep the result as ``name`` (spilling to disk if large).

        ``codes`` names text columns with few known values (column → all the values
        it may hold): an engine may store them compactly (DuckDB: as ENUMs, sorted so
        that they order as text); queries and fetches see them as text.
        """

    @abstractmethod
    def fetch_arrow(self, sql: str) -> pa.Table:
        """Run a query and return its result as an Arrow table."""

    @abstractmethod
    def columns(self, name: str) -> list[str]:
        """Column names of a registered table or view."""

    @abstractmethod
    def has(self, name: str) -> bool:
        """True if ``name`` is a registered table or view."""

    def fetch(self, sql: str, *, release: bool = False) -> pd.DataFrame:
        """Run a query and return its (small) result as pandas (see :func:`arrow_to_pandas`).

        ``release``: the result is big and pandas will copy it: the engine hands its
        cache back (:meth:`spilled`) before the conversion, so the two don't add up.
        """
        table = self.fetch_arrow(sql)
        if release:
            with self.spilled():
                pass
        return arrow_to_pandas(table)

    def scalar(self, sql: str):
        """The single value a query returns (None for SQL NULL)."""
        table = normalize_arrow(self.fetch_arrow(sql))
        return table.column(0)[0].as_py() if table.num_rows else None

    def count(self, name: str) -> int:
        """Number of rows of a table or view."""
        return int(self.scalar(f"SELECT count(*) FROM {name}"))

    @contextmanager
    def spilled(self) -> Iterator[None]:
        """While inside, the engine holds as little memory as it can (its tables stay).

        For the stretches where pandas works on aggregates already fetched (the
        scan statistics, the fix estimators): an embedded engine's cache would
        otherwise sit beside them in the same process. Here: nothing to do
        (a cluster engine's memory is not in this process).
        """
        yield

    def close(self) -> None:
        """Release the engine's resources."""

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
