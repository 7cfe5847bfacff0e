"""The Chinese working calendar: business days with make-up working days (调休).

Built on the ``holidays`` package (``holidays.China``): a business day is a
Monday–Friday that is not a public holiday or a substituted day off, or a
weekend day that the State Council's notice makes a working day
(``weekend_workdays``). The State Council announces each year's schedule late in
the year before; a year whose schedule the installed ``holidays`` release does
not carry is refused with :class:`~analysis.exceptions.CalendarError` rather than
guessed.

All functions are vectorized: they take a date, a string, a ``datetime64`` array
or a pandas Series/Index and return the same shape.

Examples
--------
>>> from analysis.workdays import china_calendar
>>> cal = china_calendar()
>>> str(cal.add_business_days("2025-09-30", 1))   # National Day week
'2025-10-09'
>>> cal.is_business_day("2025-09-28")             # a make-up Sunday
True
>>> str(cal.settlement_date("2025-09-30", "T1"))
'2025-10-09'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import pandas as pd

from .exceptions import CalendarError

#: Business days allowed for normal crediting after the due date (contract:
#: "T+1 up to 3 business days counts as normal processing").
PROCESSING_GRACE_BUSINESS_DAYS = 2

_FIRST_YEAR = 2001


def _announced_last_year() -> int:
    """Last year whose make-up working days the installed ``holidays`` carries."""
    from holidays.countries.china import ChinaStaticHolidays

    return max(ChinaStaticHolidays.special_public_holidays)


@dataclass(frozen=True)
class WorkCalendar:
    """Business days of a span of whole years.

    Parameters
    ----------
    first_year, last_year : int
        Inclusive span of years covered; dates outside raise ``CalendarError``.
    business_days : numpy.ndarray
        Sorted ``datetime64[D]`` array of every business day in the span.
    """

    first_year: int
    last_year: int
    business_days: np.ndarray = field(repr=False)

    def __repr__(self) -> str:
        return (
            f"WorkCalendar(China, {self.first_year}-{self.last_year}, "
            f"{len(self.business_days)} business days)"
        )

    # -- conversion -----------------------------------------------------------------
    def _as_days(self, dates) -> tuple[np.ndarray, object]:
        """Return (datetime64[D] array, a function restoring the input's shape)."""
        if isinstance(dates, pd.Series):
            vals = dates
            if isinstance(vals.dtype, pd.DatetimeTZDtype):
                vals = vals.dt.tz_localize(None)
            arr = pd.to_datetime(vals).to_numpy().astype("datetime64[D]")

            def restore(x, idx=dates.index, name=dates.name):
                return pd.Series(x, index=idx, name=name)

        elif isinstance(dates, (np.ndarray, pd.Index, list, tuple)):
            idx = pd.DatetimeIndex(pd.to_datetime(np.asarray(dates)))
            if idx.tz is not None:
                idx = idx.tz_localize(None)
            arr = idx.to_numpy().astype("datetime64[D]")

            def restore(x):
                return x

        else:
            ts = pd.Timestamp(dates)
            if ts.tzinfo is not None:
                ts = ts.tz_localize(None)
            arr = np.array([np.datetime64(ts.date(), "D")])

            def restore(x):
                v = x[0]
                if isinstance(v, np.datetime64):
                    return pd.Timestamp(v).date()
                return v.item() if hasattr(v, "item") else v

        self._check_range(arr)
        return arr, restore

    def _check_range(self, arr: np.ndarray) -> None:
        if arr.size == 0:
            return
        valid = arr[~np.isnat(arr)]
        if valid.size == 0:
            return
        lo, hi = valid.min(), valid.max()
        first = np.datetime64(f"{self.first_year}-01-01", "D")
        last = np.datetime64(f"{self.last_year}-12-31", "D")
        if lo < first or hi > last:
            bad = lo if lo < first else hi
            raise CalendarError(
                f"date {bad} is outside the Chinese working calendar known here "
                f"({self.first_year}-{self.last_year}); the State Council announces each "
                "year's holidays and make-up working days late in the year before. "
                "Upgrade the 'holidays' package once the schedule is published."
            )

    # -- queries ----------------------------------------------------------------------
    def is_business_day(self, dates):
        """True where the date is a working day (make-up weekend days included)."""
        arr, restore = self._as_days(dates)
        pos = np.searchsorted(self.business_days, arr)
        pos = np.clip(pos, 0, len(self.business_days) - 1)
        return restore(self.business_days[pos] == arr)

    def add_business_days(self, dates, n=1):
        """The n-th business day after each date (n > 0), before it (n < 0).

        ``n == 0`` rolls a non-business day forward to the next business day.
        ``n`` may be an array of the same length as ``dates``.
        """
        arr, restore = self._as_days(dates)
        n = np.asarray(n)
        right = np.searchsorted(self.business_days, arr, side="right")
        left = np.searchsorted(self.business_days, arr, side="left")
        pos = np.where(n > 0, right + n - 1, np.where(n < 0, left + n, left))
        if np.any(pos < 0) or np.any(pos >= len(self.business_days)):
            raise CalendarError(
                f"adding {n} business days leaves the calendar span "
                f"{self.first_year}-{self.last_year}"
            )
        return restore(self.business_days[pos])

    def business_days_between(self, start, end):
        """Business days in the half-open span (start, end]; negative if end < start."""
        a, restore = self._as_days(start)
        b, _ = self._as_days(end)
        ia = np.searchsorted(self.business_days, a, side="right")
        ib = np.searchsorted(self.business_days, b, side="right")
        return restore(ib - ia)

    def settlement_date(self, business_dates, cycle="T1"):
        """The day a credit is due: T1 next business day, D1 next calendar day, D0 same day.

        ``cycle`` may be a string or an array of cycles aligned with the dates
        (empty or missing means ``T1``).
        """
        arr, restore = self._as_days(business_dates)
        cyc = np.broadcast_to(np.asarray(cycle, dtype=object), arr.shape)
        cyc = np.where(pd.isna(cyc), "T1", cyc).astype(str)
        unknown = set(np.unique(cyc)) - {"T1", "D1", "D0"}
        if unknown:
            raise ValueError(f"settlement cycle must be T1, D1 or D0, got {sorted(unknown)}")
        t1 = self.business_days[np.searchsorted(self.business_days, arr, side="right")]
        out = np.where(cyc == "T1", t1, np.where(cyc == "D1", arr + np.timedelta64(1, "D"), arr))
        return restore(out.astype("datetime64[D]"))

    def credit_deadline(self, business_dates, cycle="T1", grace=PROCESSING_GRACE_BUSINESS_DAYS):
        """Last day a credit still counts as normal processing.

        The due date (:meth:`settlement_date`) plus ``grace`` business days: for T1
        that is T+3 business days, the contract's "up to 3 business days".
        """
        due = self.settlement_date(business_dates, cycle)
        return self.add_business_days(due, grace) if grace else due


@lru_cache(maxsize=8)
def china_calendar(first_year: int = 2024, last_year: int | None = None) -> WorkCalendar:
    """The Chinese working calendar for whole years ``first_year..last_year``.

    Parameters
    ----------
    first_year : int
        First year covered (default 2024).
    last_year : int, optional
        Last year covered; default the last announced year. A year past the
        announced ones raises ``CalendarError``.

    Examples
    --------
    >>> china_calendar(2025, 2026).is_business_day("2026-02-28")  # 调休 Saturday
    True
    """
    import holidays

    announced = _announced_last_year()
    last = announced if last_year is None else last_year
    if last > announced:
        raise CalendarError(
            f"the Chinese working calendar for {last} is not in the installed 'holidays' "
            f"package (it knows up to {announced}); the State Council publishes each year's "
            "schedule late in the year before. Upgrade 'holidays' once it is announced."
        )
    if first_year < _FIRST_YEAR or first_year > last:
        raise CalendarError(f"calendar years must lie in {_FIRST_YEAR}-{announced}")
    years = list(range(first_year, last + 1))
    cn = holidays.China(years=years)
    days = pd.date_range(f"{first_year}-01-01", f"{last}-12-31", freq="D")
    dates = days.date
    weekday = days.day_of_week < 5
    holiday = np.fromiter((d in cn for d in dates), bool, len(dates))
    workday_weekend = np.fromiter((d in cn.weekend_workdays for d in dates), bool, len(dates))
    business = (weekday & ~holiday) | workday_weekend
    return WorkCalendar(first_year, last, days[business].to_numpy().astype("datetime64[D]"))


def to_business_date(timestamps: pd.Series) -> pd.Series:
    """Calendar day in Asia/Shanghai of tz-aware timestamps, as naive midnight datetimes."""
    ts = timestamps
    if isinstance(ts.dtype, pd.DatetimeTZDtype):
        ts = ts.dt.tz_convert("Asia/Shanghai").dt.tz_localize(None)
    return ts.dt.normalize()


__all__ = [
    "WorkCalendar",
    "china_calendar",
    "to_business_date",
    "PROCESSING_GRACE_BUSINESS_DAYS",
]
