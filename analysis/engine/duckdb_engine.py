"""DuckDB: the default engine, embedded and out of core over Parquet."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa

from .base import Engine


def _quote(text: str | Path) -> str:
    """An SQL string literal."""
    return "'" + str(text).replace("'", "''") + "'"


def _ident(name: str) -> str:
    """An SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


class DuckDBEngine(Engine):
    """Run the steps on an embedded DuckDB database.

    Parameters
    ----------
    memory_limit : str, optional
        DuckDB's ``memory_limit`` (e.g. ``"4GB"``); beyond it joins and
        aggregates spill to ``temp_directory``. Default DuckDB's (80% of RAM).
    threads : int, optional
        Worker threads (default: all cores).
    temp_directory : str or Path, optional
        Where to spill; default a fresh directory under the system's temp dir.

    Examples
    --------
    >>> import pandas as pd
    >>> with DuckDBEngine() as eng:
    ...     eng.register_frame("t", pd.DataFrame({"x": [1, 2, 3]}))
    ...     eng.scalar("SELECT sum(x) FROM t")
    6
    """

    name = "duckdb"

    def __init__(
        self,
        *,
        memory_limit: str | None = None,
        threads: int | None = None,
        temp_directory: str | Path | None = None,
    ) -> None:
        self._tmp = None
        if temp_directory is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="pos-incidents-duckdb-")
            temp_directory = self._tmp.name
        self.con = duckdb.connect(":memory:")
        self.con.execute(f"SET temp_directory = {_quote(Path(temp_directory))}")
        self.con.execute("SET preserve_insertion_order = false")
        self.con.execute("SET TimeZone = 'Asia/Shanghai'")
        if memory_limit:
            self.con.execute(f"SET memory_limit = '{memory_limit}'")
        if threads:
            self.con.execute(f"SET threads = {int(threads)}")
        self._frames: dict[str, pa.Table] = {}
        self.memory_limit, self.threads = memory_limit, threads or os.cpu_count()

    def register_frame(self, name: str, frame: pd.DataFrame) -> None:
        table = frame if isinstance(frame, pa.Table) else pa.Table.from_pandas(frame, preserve_index=False)
        self._frames[name] = table  # keep a reference: DuckDB scans it in place
        self.con.register(name, table)

    def register_parquet(self, name: str, paths: list[Path]) -> None:
        files = ", ".join(_quote(Path(p)) for p in paths)
        self.con.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM read_parquet([{files}])")

    def create_view(self, name: str, sql: str) -> None:
        self.con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS {sql}")

    def create_table(self, name: str, sql: str, codes: Mapping[str, Sequence[str]] | None = None) -> None:
        """``CREATE TEMP TABLE name AS sql``; ``codes`` columns stored as ENUMs (one byte a
        value, instead of 16 or more: less to write, spill and read back).

        A value outside its column's list (data not checked by the loader) makes
        DuckDB refuse the cast; the table is then made with the text as it is.

        Examples
        --------
        >>> with DuckDBEngine() as eng:
        ...     eng.create_table("t", "SELECT 'b' AS x UNION ALL SELECT 'a'", codes={"x": ["b", "a"]})
        ...     kind = eng.scalar("SELECT typeof(x) FROM t LIMIT 1")
        ...     eng.fetch("SELECT x FROM t ORDER BY x")["x"].tolist(), kind
        (['a', 'b'], "ENUM('a', 'b')")
        """
        if codes:
            casts = ", ".join(f"CAST({_ident(c)} AS ENUM({', '.join(map(_quote, sorted(set(v))))})) "
                              f"AS {_ident(c)}" for c, v in codes.items())
            try:
                self.con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS "
                                 f"SELECT * REPLACE ({casts}) FROM ({sql})")
                return
            except duckdb.ConversionException:
                pass
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {sql}")

    def fetch_arrow(self, sql: str) -> pa.Table:
        return self.con.sql(sql).to_arrow_table()

    @contextmanager
    def spilled(self, limit: str = "256MB") -> Iterator[None]:
        """Lower DuckDB's ``memory_limit`` to ``limit`` inside; the engine's limit (or DuckDB's
        default) is restored after.

        DuckDB writes the cached blocks of its tables to ``temp_directory`` and
        hands the memory back at once; later queries read them back as needed.

        Examples
        --------
        >>> with DuckDBEngine(memory_limit="1GiB") as eng:
        ...     with eng.spilled():
        ...         inside = eng.scalar("SELECT current_setting('memory_limit')")
        ...     after = eng.scalar("SELECT current_setting('memory_limit')")
        >>> inside, after
        ('244.1 MiB', '1.0 GiB')
        """
        self.con.execute(f"SET memory_limit = '{limit}'")
        try:
            yield
        finally:
            self.con.execute(f"SET memory_limit = '{self.memory_limit}'" if self.memory_limit
                             else "RESET memory_limit")

    def columns(self, name: str) -> list[str]:
        return [d[0] for d in self.con.execute(f"SELECT * FROM {name} LIMIT 0").description]

    def has(self, name: str) -> bool:
        found = self.con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE table_name = ? "
            "UNION ALL SELECT count(*) FROM duckdb_views() WHERE view_name = ?",
            [name, name],
        ).fetchall()
        return name in self._frames or any(n for (n,) in found)

    def close(self) -> None:
        self.con.close()
        self._frames.clear()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __repr__(self) -> str:
        return f"DuckDBEngine(memory_limit={self.memory_limit!r}, threads={self.threads})"
