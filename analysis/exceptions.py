"""User-facing errors. Each message says what was expected, what was found and how to fix it."""

from __future__ import annotations


class PosIncidentError(Exception):
    """Base class of every error meant for a user (the CLI prints it without a traceback)."""


class DatasetError(PosIncidentError):
    """A whole-file problem: missing file or column, unreadable encoding, ragged CSV, refused column.

    Parameters
    ----------
    message : str
        What was expected and what was found.
    file : str, optional
        The file concerned.
    column : str, optional
        The column concerned.
    line : int, optional
        The 1-based line number in the file (header is line 1), where one applies.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        column: str | None = None,
        line: int | None = None,
    ) -> None:
        self.file = file
        self.column = column
        self.line = line
        where = []
        if file:
            where.append(f"file {file}")
        if line is not None:
            where.append(f"line {line}")
        if column:
            where.append(f"column {column!r}")
        prefix = (", ".join(where) + ": ") if where else ""
        super().__init__(prefix + message)


class CalendarError(PosIncidentError):
    """A date outside the years whose Chinese working calendar has been announced."""
