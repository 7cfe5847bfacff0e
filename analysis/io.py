"""Reading and writing contract datasets.

``load_dataset`` (validated, masked loading) is implemented below ``Dataset``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .contract import TABLES

REJECTED_COLUMNS = ("table", "file", "line", "column", "value", "reason", "row")
ACCOUNTING_COLUMNS = ("table", "file", "read", "used", "rejected")


@dataclass(frozen=True)
class Dataset:
    """One contract dataset, validated and typed.

    Attributes
    ----------
    merchants, terminals, transactions : pandas.DataFrame
        Required tables, one typed frame each (see ``analysis.contract``).
    terminal_events, settlements, complaints, interventions : pandas.DataFrame or None
        Optional tables; ``None`` where the dataset has no such file.
    rejected : pandas.DataFrame
        One row per rejected input row: ``table, file, line, column, value, reason, row``
        (``value`` and ``row`` are masked text).
    accounting : pandas.DataFrame
        Per table: ``table, file, read, used, rejected`` with read = used + rejected.
    source : str
        The directory the dataset was read from.
    notes : tuple of str
        What the loader wants a person to know (optional tables missing, extra
        columns ignored, defaults applied).

    String columns use pandas' default string dtype for the installed pandas,
    missing values are NA (test with ``pd.isna``). Times are tz-aware
    ``Asia/Shanghai``; dates are naive midnight ``datetime64``; money is float64;
    ``latency_ms`` is ``Int64``. ``transactions`` carries ``card_number`` already
    masked plus ``card_token`` (HMAC-SHA256, 16 hex digits).
    """

    merchants: pd.DataFrame
    terminals: pd.DataFrame
    transactions: pd.DataFrame
    terminal_events: pd.DataFrame | None = None
    settlements: pd.DataFrame | None = None
    complaints: pd.DataFrame | None = None
    interventions: pd.DataFrame | None = None
    rejected: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=list(REJECTED_COLUMNS))
    )
    accounting: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=list(ACCOUNTING_COLUMNS))
    )
    source: str = ""
    notes: tuple[str, ...] = ()

    def table(self, name: str) -> pd.DataFrame | None:
        """The frame of a contract table by name (None for a missing optional table)."""
        if name not in TABLES:
            raise KeyError(f"no contract table {name!r}; expected one of {sorted(TABLES)}")
        return getattr(self, name)

    def has(self, name: str) -> bool:
        """True when the dataset holds the (optional) table ``name``."""
        return self.table(name) is not None

    def __repr__(self) -> str:
        parts = [
            f"{name}={len(df):,}" for name in TABLES if (df := getattr(self, name)) is not None
        ]
        return f"Dataset({self.source!r}: {', '.join(parts)}; rejected={len(self.rejected):,})"


def write_tables(
    tables: dict[str, pd.DataFrame], path: str | Path, fmt: str = "parquet"
) -> list[Path]:
    """Write contract tables to a dataset directory, one ``NAME.csv``/``NAME.parquet`` each.

    Timestamps are written as ISO 8601 with their offset (CSV) or as tz-aware
    timestamps (Parquet); dates as ``YYYY-MM-DD``. Only columns the contract
    names are written, in contract order; ``card_token`` and other derived
    columns are left out.

    Examples
    --------
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> [p.name for p in write_tables({"merchants": pd.DataFrame(
    ...     {"merchant_id": ["M1"], "name": ["a"], "mcc": ["5411"],
    ...      "latitude": [31.2], "longitude": [121.5]})}, d, "csv")]
    ['merchants.csv']
    """
    if fmt not in ("parquet", "csv"):
        raise ValueError(f"fmt must be 'parquet' or 'csv', got {fmt!r}")
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, df in tables.items():
        if df is None:
            continue
        spec = TABLES[name]
        cols = [c for c in spec.column_names if c in df.columns]
        frame = df[cols].copy()
        for c in spec.columns:
            if c.name not in frame.columns:
                continue
            if c.kind == "date":
                frame[c.name] = pd.to_datetime(frame[c.name]).dt.strftime("%Y-%m-%d")
            elif c.kind == "time" and fmt == "csv":
                s = pd.to_datetime(frame[c.name])
                frame[c.name] = s.map(lambda t: t.isoformat() if pd.notna(t) else None)
        target = out / f"{name}.{fmt}"
        if fmt == "parquet":
            frame.to_parquet(target, index=False)
        else:
            frame.to_csv(target, index=False, encoding="utf-8")
        written.append(target)
    return written
