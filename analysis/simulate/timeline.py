"""The simulated period and its calendar facts, precomputed per day and cycle.

Every per-transaction date question (due date, credit deadline, the day a
credit lands) is a lookup into small ``[cycle, day]`` tables built once from
:func:`analysis.workdays.china_calendar`.

Examples
--------
>>> from analysis.simulate.specs import CityConfig
>>> tl = build_timeline(CityConfig(start="2026-04-02", days=3))
>>> [str(d) for d in tl.due[0]]          # T1 due dates around Qingming
['2026-04-03', '2026-04-07', '2026-04-07']
>>> str(tl.deadline[0, 0])
'2026-04-08'
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..workdays import PROCESSING_GRACE_BUSINESS_DAYS, WorkCalendar, china_calendar
from .catalog import CREDIT_DELAY_P, CYCLES
from .columns import DAY_S, to_seconds
from .specs import CityConfig

#: Business days after the deadline a late credit may land (1..LATE_MAX).
LATE_MAX = 4


@dataclass(frozen=True)
class Timeline:
    """The period ``[start, end)`` and per-day calendar tables.

    Attributes
    ----------
    dates : numpy.ndarray
        ``datetime64[D]`` of each simulated day.
    business : numpy.ndarray
        True where the day is a Chinese business day.
    due, deadline : numpy.ndarray
        ``[cycle, day]`` (cycle order :data:`~analysis.simulate.catalog.CYCLES`):
        the credit's due date and the last day it counts as in time.
    credit_day : numpy.ndarray
        ``[cycle, day, k]``: the due date moved k business days on (k = 0, 1, 2).
    late_day : numpy.ndarray
        ``[cycle, day, j]``: the deadline plus j + 1 business days.
    """

    start_s: int
    days: int
    calendar: WorkCalendar
    dates: np.ndarray
    business: np.ndarray
    due: np.ndarray
    deadline: np.ndarray
    credit_day: np.ndarray
    late_day: np.ndarray

    def __repr__(self) -> str:
        return f"Timeline({self.dates[0]}..{self.dates[-1]}, {self.days} days)"

    @property
    def end_s(self) -> int:
        """The end of the simulation (exclusive): midnight after the last day, local seconds."""
        return self.start_s + self.days * DAY_S

    @property
    def last_day(self) -> np.datetime64:
        """The last simulated day (the as-of day)."""
        return self.dates[-1]

    def day_of(self, local_s: np.ndarray) -> np.ndarray:
        """Index of the simulated day of each time (local seconds)."""
        return ((np.asarray(local_s) - self.start_s) // DAY_S).astype(np.int32)


def build_timeline(config: CityConfig) -> Timeline:
    """Calendar tables for the config's period (raises ``CalendarError`` outside the known years)."""
    start = config.start_date
    dates = start + np.arange(config.days).astype("timedelta64[D]")
    cal = china_calendar(min(2024, int(str(start)[:4])))
    due = np.stack([cal.settlement_date(dates, c) for c in CYCLES])
    deadline = np.stack([cal.credit_deadline(dates, c) for c in CYCLES])
    flat_due = due.ravel()
    credit = np.stack(
        [flat_due if k == 0 else cal.add_business_days(flat_due, k) for k in range(len(CREDIT_DELAY_P))],
        axis=-1,
    ).reshape(len(CYCLES), config.days, -1)
    late = np.stack(
        [cal.add_business_days(deadline.ravel(), j) for j in range(1, LATE_MAX + 1)], axis=-1
    ).reshape(len(CYCLES), config.days, -1)
    return Timeline(
        start_s=int(to_seconds(start)),
        days=config.days,
        calendar=cal,
        dates=dates,
        business=np.asarray(cal.is_business_day(dates), dtype=bool),
        due=due,
        deadline=deadline,
        credit_day=credit,
        late_day=late,
    )


assert PROCESSING_GRACE_BUSINESS_DAYS == 2  # credit_day's k = 0..2 stays within the deadline

__all__ = ["LATE_MAX", "Timeline", "build_timeline"]
