"""Write a very large simulated dataset chunk by chunk, never holding more than one chunk.

A big dataset is a set of independent districts: chunk ``k`` is one
:func:`~analysis.simulate.simulate_city` run of ``config_for_chunk(k)`` (give
each its own seed). Its identifiers — merchant, terminal, transaction, ticket
and change ids, and its network segments — get the prefix :func:`chunk_prefix`
(``C003-``) so they are disjoint across chunks, and its shops move to their own
cell of a grid (``spacing_deg`` apart) so districts do not overlap on the map.
Each table is appended to one Parquet file (row groups per chunk) with the
schema :func:`~analysis.simulate.write_city` writes; card numbers are masked
when simulated (``full_pans=False``), so no full PAN is written.

Faults and fixes scoped by a firmware, a terminal model or ``all`` reach every
chunk's terminals in the merged data: give every chunk the same ones (same
windows) so that the merged dataset tells one consistent story.

Examples
--------
>>> import dataclasses, tempfile
>>> from analysis.simulate import CityConfig
>>> base = CityConfig(n_merchants=15, n_neighbourhoods=2, days=3, case_segment_size=4)
>>> out = write_city_chunks(lambda k: dataclasses.replace(base, seed=k), 2,
...                         tempfile.mkdtemp() + "/big", progress=False)
>>> import pyarrow.parquet as pq
>>> pq.ParquetFile(out / "merchants.parquet").metadata.num_rows
30
"""

from __future__ import annotations

import json
import math
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..contract import TABLES
from ..io import write_tables
from .engine import _inside, simulate_city, write_truth
from .specs import CityConfig

#: Columns holding an identifier of the chunk's own (prefixed to keep chunks disjoint).
ID_COLUMNS: dict[str, tuple[str, ...]] = {
    "merchants": ("merchant_id",),
    "terminals": ("terminal_id", "merchant_id", "network_segment"),
    "transactions": ("txn_id", "terminal_id", "merchant_id", "original_txn_id"),
    "terminal_events": ("terminal_id",),
    "settlements": ("txn_id",),
    "complaints": ("ticket_id", "merchant_id"),
    "interventions": ("change_id",),
}
#: Intervention scopes whose ``scope_value`` is one of the chunk's identifiers.
PREFIXED_SCOPES = ("merchant", "network_segment")
#: Rows per Parquet row group (a chunk's table is written as one or more of them).
ROW_GROUP_ROWS = 1_000_000
PART_SUFFIX = ".partial"


def chunk_prefix(chunk: int) -> str:
    """The prefix of every identifier of chunk ``chunk``.

    Examples
    --------
    >>> chunk_prefix(3) + "T0000000001"
    'C003-T0000000001'
    """
    return f"C{chunk:03d}-"


def grid_offset(chunk: int, n_chunks: int, spacing_deg: float) -> tuple[float, float]:
    """(latitude, longitude) shift of chunk ``chunk`` on a square grid of ``n_chunks`` cells.

    Examples
    --------
    >>> grid_offset(5, 9, 0.25)
    (0.25, 0.5)
    """
    row, col = divmod(chunk, math.ceil(math.sqrt(n_chunks)))
    return row * spacing_deg, col * spacing_deg


def _prefixed(values: pa.Array, prefix: str) -> pa.Array:
    """``prefix + value`` for each string value; null stays null."""
    return pc.binary_join_element_wise(pa.scalar(prefix, values.type), values, pa.scalar("", values.type))


def disjoint_batch(name: str, batch: pa.RecordBatch, prefix: str,
                   offset: tuple[float, float] = (0.0, 0.0)) -> pa.RecordBatch:
    """A batch of a chunk's table ``name`` with its identifiers prefixed and its shops moved.

    Parameters
    ----------
    name : str
        The contract table the batch belongs to.
    batch : pyarrow.RecordBatch
        Rows of the table as written by :func:`analysis.io.write_tables`.
    prefix : str
        Prepended to every identifier of :data:`ID_COLUMNS`, and to
        ``interventions.scope_value`` for merchant and network-segment scopes.
    offset : (float, float)
        Degrees added to the merchants' latitude and longitude.

    Examples
    --------
    >>> m = pa.record_batch({"merchant_id": ["M1"], "latitude": [31.0], "longitude": [121.0]})
    >>> disjoint_batch("merchants", m, "C001-", (0.5, 0.0)).to_pylist()
    [{'merchant_id': 'C001-M1', 'latitude': 31.5, 'longitude': 121.0}]
    """
    columns = dict(zip(batch.schema.names, batch.columns))
    for c in ID_COLUMNS.get(name, ()):
        if c in columns:
            columns[c] = _prefixed(columns[c], prefix)
    if name == "merchants":
        for c, shift in zip(("latitude", "longitude"), offset):
            columns[c] = pc.round(pc.add(columns[c], shift), 6)
    if name == "interventions":
        own = pc.is_in(columns["scope_type"], pa.array(PREFIXED_SCOPES, columns["scope_type"].type))
        columns["scope_value"] = pc.if_else(own, _prefixed(columns["scope_value"], prefix),
                                            columns["scope_value"])
    return pa.RecordBatch.from_arrays(list(columns.values()), schema=batch.schema)


class _Say:
    """Per-chunk progress lines (time, peak resident memory) on stderr when asked for."""

    def __init__(self, on: bool) -> None:
        self.on, self.t0 = on, time.perf_counter()

    def __call__(self, text: str) -> None:
        if self.on:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(f"[chunks] {time.perf_counter() - self.t0:7.1f} s  peak {peak:6.0f} MB  {text}",
                  file=sys.stderr, flush=True)


class _Appender:
    """One ``ParquetWriter`` per table, created with the first chunk's schema."""

    def __init__(self, out: Path) -> None:
        self.out, self.writers = out, {}

    def append(self, name: str, path: Path, prefix: str, offset: tuple[float, float]) -> None:
        """Stream a chunk's file into the table's file, batch by batch, made disjoint."""
        source = pq.ParquetFile(path)
        writer = self.writers.get(name)
        if writer is None:
            target = self.out / f"{name}.parquet{PART_SUFFIX}"
            writer = self.writers[name] = pq.ParquetWriter(target, source.schema_arrow)
        for batch in source.iter_batches(batch_size=ROW_GROUP_ROWS):
            batch = disjoint_batch(name, batch, prefix, offset)
            writer.write_batch(batch.cast(writer.schema), row_group_size=ROW_GROUP_ROWS)

    def close(self, complete: bool) -> None:
        """Close every file: give it its final name if ``complete``, else delete it."""
        for name, writer in self.writers.items():
            writer.close()
            part = self.out / f"{name}.parquet{PART_SUFFIX}"
            if complete:
                part.replace(self.out / f"{name}.parquet")
            else:
                part.unlink()


def _write_chunk(config: CityConfig, chunk: int, scratch: Path, truth_dir: Path | None) -> int:
    """Simulate one chunk and write its tables (and truth) to ``scratch``; return its transactions."""
    city = simulate_city(config, full_pans=False)
    write_tables(city.tables, scratch, "parquet")
    if truth_dir is not None:
        write_truth(city.truth, truth_dir / f"chunk_{chunk:03d}")
    return len(city.tables["transactions"])


def write_city_chunks(
    config_for_chunk: Callable[[int], CityConfig],
    n_chunks: int,
    out_dir: str | Path,
    *,
    truth_dir: str | Path | None = None,
    spacing_deg: float = 0.25,
    progress: bool = True,
) -> Path:
    """Simulate ``n_chunks`` independent districts and write them as one Parquet dataset.

    Only one chunk is in memory at a time: a chunk is simulated, written to a
    scratch directory beside ``out_dir`` and streamed into the dataset's
    files, one ``ParquetWriter`` per table. The files get their final names
    only when every chunk is written, so an interrupted run leaves no dataset.

    Parameters
    ----------
    config_for_chunk : callable
        ``config_for_chunk(k)`` is the :class:`CityConfig` of chunk ``k``
        (0-based); give each chunk its own seed.
    n_chunks : int
    out_dir : path
        The dataset directory (``NAME.parquet`` per contract table).
    truth_dir : path, optional
        Where each chunk's ground truth goes (``chunk_003/``, identifiers as
        simulated: prefix them with :func:`chunk_prefix`), with ``chunks.json``
        listing every chunk's seed, prefix and offset. Must lie outside ``out_dir``
        and not contain it.
    spacing_deg : float
        Distance in degrees between neighbouring chunks on the map grid (0: all
        chunks on the same spot).
    progress : bool
        Print one line per chunk (time, peak memory) on stderr.

    Returns
    -------
    pathlib.Path
        ``out_dir``.

    Examples
    --------
    >>> import dataclasses, tempfile
    >>> from analysis.io import load_dataset
    >>> base = CityConfig(n_merchants=15, n_neighbourhoods=2, days=3, case_segment_size=4)
    >>> out = write_city_chunks(lambda k: dataclasses.replace(base, seed=10 + k), 2,
    ...                         tempfile.mkdtemp() + "/big", progress=False)
    >>> ds = load_dataset(out)
    >>> ds.merchants["merchant_id"].str[:5].unique().tolist()
    ['C000-', 'C001-']
    """
    if n_chunks < 1:
        raise ValueError(f"n_chunks must be at least 1, got {n_chunks}")
    out = Path(out_dir)
    truth = None if truth_dir is None else Path(truth_dir)
    if truth is not None and (_inside(truth, out) or _inside(out, truth)):
        raise ValueError(
            f"truth_dir {truth_dir} must lie outside the dataset directory {out_dir} (and not contain it)"
        )
    out.mkdir(parents=True, exist_ok=True)
    say, sink, chunks, complete = _Say(progress), _Appender(out), [], False
    try:
        for k in range(n_chunks):
            config, offset = config_for_chunk(k), grid_offset(k, n_chunks, spacing_deg)
            with tempfile.TemporaryDirectory(prefix=f".{out.name}-chunk-", dir=out.parent) as tmp:
                n = _write_chunk(config, k, Path(tmp), truth)
                for name in TABLES:
                    if (Path(tmp) / f"{name}.parquet").is_file():
                        sink.append(name, Path(tmp) / f"{name}.parquet", chunk_prefix(k), offset)
            chunks.append({"chunk": k, "seed": config.seed, "id_prefix": chunk_prefix(k),
                           "offset_deg": list(offset), "transactions": n})
            say(f"chunk {k + 1}/{n_chunks}: {n:,} transactions")
        complete = True
    finally:
        sink.close(complete)
    if truth is not None:
        (truth / "chunks.json").write_text(json.dumps(chunks, indent=2) + "\n", encoding="utf-8")
    return out


__all__ = ["ID_COLUMNS", "chunk_prefix", "disjoint_batch", "grid_offset", "write_city_chunks"]
