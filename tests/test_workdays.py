"""analysis.workdays against the State Council's 2025 and 2026 holiday notices.

The schedules below are transcribed from the notices (国务院办公厅关于2025年/2026年
部分节假日安排的通知) and checked against two independent packages, ``holidays``
and ``chinesecalendar``, before the module under test is compared with them.
"""

from __future__ import annotations

import datetime as dt

import chinese_calendar
import holidays
import numpy as np
import pandas as pd
import pytest

from analysis import workdays
from analysis.exceptions import CalendarError
from analysis.workdays import china_calendar

D = dt.date

#: Days off (inclusive ranges, weekends inside included) and make-up working days.
SCHEDULE = {
    2025: {
        "off": [
            (D(2025, 1, 1), D(2025, 1, 1)),    # New Year
            (D(2025, 1, 28), D(2025, 2, 4)),   # Spring Festival
            (D(2025, 4, 4), D(2025, 4, 6)),    # Qingming
            (D(2025, 5, 1), D(2025, 5, 5)),    # Labour Day
            (D(2025, 5, 31), D(2025, 6, 2)),   # Dragon Boat
            (D(2025, 10, 1), D(2025, 10, 8)),  # National Day + Mid-Autumn
        ],
        "makeup": [D(2025, 1, 26), D(2025, 2, 8), D(2025, 4, 27), D(2025, 9, 28), D(2025, 10, 11)],
    },
    2026: {
        "off": [
            (D(2026, 1, 1), D(2026, 1, 3)),    # New Year
            (D(2026, 2, 15), D(2026, 2, 23)),  # Spring Festival
            (D(2026, 4, 4), D(2026, 4, 6)),    # Qingming
            (D(2026, 5, 1), D(2026, 5, 5)),    # Labour Day
            (D(2026, 6, 19), D(2026, 6, 21)),  # Dragon Boat
            (D(2026, 9, 25), D(2026, 9, 27)),  # Mid-Autumn
            (D(2026, 10, 1), D(2026, 10, 7)),  # National Day
        ],
        "makeup": [D(2026, 1, 4), D(2026, 2, 14), D(2026, 2, 28), D(2026, 5, 9), D(2026, 9, 20),
                   D(2026, 10, 10)],
    },
}


def days_of(year: int) -> list[dt.date]:
    return [d.date() for d in pd.date_range(f"{year}-01-01", f"{year}-12-31")]


def official_workday(day: dt.date) -> bool:
    plan = SCHEDULE[day.year]
    if day in plan["makeup"]:
        return True
    off = any(a <= day <= b for a, b in plan["off"])
    return day.weekday() < 5 and not off


@pytest.fixture(scope="module")
def cal():
    return china_calendar(2025, 2026)


# ---------------------------------------------------------------------------------
# The transcribed schedule agrees with both packages
# ---------------------------------------------------------------------------------
@pytest.mark.parametrize("year", sorted(SCHEDULE))
def test_schedule_agrees_with_chinesecalendar(year):
    for day in days_of(year):
        assert chinese_calendar.is_workday(day) == official_workday(day), day


@pytest.mark.parametrize("year", sorted(SCHEDULE))
def test_schedule_agrees_with_holidays_package(year):
    cn = holidays.China(years=year)
    for day in days_of(year):
        package = (day.weekday() < 5 and day not in cn) or day in cn.weekend_workdays
        assert package == official_workday(day), day


def test_makeup_days_are_weekend_days():
    for plan in SCHEDULE.values():
        assert all(d.weekday() >= 5 for d in plan["makeup"])


# ---------------------------------------------------------------------------------
# analysis.workdays against the schedule, day by day
# ---------------------------------------------------------------------------------
def test_every_day_of_2025_and_2026_matches_chinesecalendar(cal):
    days = [d for y in (2025, 2026) for d in days_of(y)]
    got = cal.is_business_day(pd.Series(pd.to_datetime(days)))
    expected = [chinese_calendar.is_workday(d) for d in days]
    mismatched = [d for d, g, e in zip(days, got, expected) if g != e]
    assert mismatched == []
    assert got.dtype == bool and len(got) == 730


@pytest.mark.parametrize("day, business", [
    ("2025-01-26", True),    # Sunday make-up day before Spring Festival
    ("2025-02-04", False),   # last Spring Festival day (Tuesday)
    ("2025-02-08", True),    # Saturday make-up
    ("2025-04-27", True),    # Sunday make-up before Labour Day
    ("2025-06-02", False),   # Dragon Boat Monday
    ("2025-09-28", True),    # Sunday make-up before National Day
    ("2025-10-08", False),   # last National Day holiday (Wednesday)
    ("2025-10-11", True),    # Saturday make-up after National Day
    ("2026-01-02", False),   # Friday off for New Year
    ("2026-01-04", True),    # Sunday make-up
    ("2026-02-23", False),   # Monday, last Spring Festival day
    ("2026-02-28", True),    # Saturday make-up
    ("2026-05-09", True),    # Saturday make-up after Labour Day
    ("2026-09-25", False),   # Mid-Autumn Friday
    ("2026-10-10", True),    # Saturday make-up
    ("2026-03-10", True),    # an ordinary Tuesday
    ("2026-03-14", False),   # an ordinary Saturday
])
def test_is_business_day_on_notable_days(cal, day, business):
    assert cal.is_business_day(day) is business


# ---------------------------------------------------------------------------------
# Arithmetic, worked by hand from the schedule
# ---------------------------------------------------------------------------------
@pytest.mark.parametrize("start, n, expected", [
    ("2025-09-30", 1, "2025-10-09"),   # Tue before the Oct 1-8 break -> Thu after it
    ("2025-09-26", 1, "2025-09-28"),   # Fri -> Sat off -> Sun make-up
    ("2025-01-24", 1, "2025-01-26"),   # Fri -> Sun make-up
    ("2025-01-24", 2, "2025-01-27"),   # Mon
    ("2025-01-24", 3, "2025-02-05"),   # Jan 28 - Feb 4 off -> Wed Feb 5
    ("2025-02-07", 1, "2025-02-08"),   # Fri -> Sat make-up
    ("2025-10-01", 0, "2025-10-09"),   # n = 0 rolls a holiday forward
    ("2025-10-09", 0, "2025-10-09"),   # ... and keeps a business day
    ("2025-10-09", -1, "2025-09-30"),
    ("2025-10-09", -3, "2025-09-28"),  # Sep 29 Mon, Sep 28 Sun make-up
    ("2026-02-13", 1, "2026-02-14"),   # Fri -> Sat make-up
    ("2026-02-14", 1, "2026-02-24"),   # Feb 15-23 off -> Tue Feb 24
    ("2026-12-30", 1, "2026-12-31"),
])
def test_add_business_days(cal, start, n, expected):
    assert str(cal.add_business_days(start, n)) == expected


@pytest.mark.parametrize("start, end, expected", [
    ("2025-09-30", "2025-10-09", 1),   # (start, end]: only Oct 9
    ("2025-09-26", "2025-10-09", 4),   # Sep 28, 29, 30, Oct 9
    ("2025-10-09", "2025-09-26", -4),
    ("2025-10-01", "2025-10-08", 0),
    ("2026-02-13", "2026-02-24", 2),   # Feb 14 (make-up), Feb 24
])
def test_business_days_between(cal, start, end, expected):
    assert cal.business_days_between(start, end) == expected


@pytest.mark.parametrize("day, cycle, expected", [
    ("2025-09-30", "T1", "2025-10-09"),
    ("2025-09-30", "D1", "2025-10-01"),  # next calendar day, holiday or not
    ("2025-09-30", "D0", "2025-09-30"),
    ("2025-09-27", "T1", "2025-09-28"),  # Saturday -> Sunday make-up day
    ("2026-02-13", "T1", "2026-02-14"),
    ("2026-02-14", "T1", "2026-02-24"),
])
def test_settlement_date(cal, day, cycle, expected):
    assert str(cal.settlement_date(day, cycle)) == expected


@pytest.mark.parametrize("day, cycle, expected", [
    ("2025-09-30", "T1", "2025-10-11"),  # due Oct 9, +2 business days: Oct 10, Oct 11 (make-up)
    ("2025-09-30", "D0", "2025-10-10"),  # due Sep 30, +2: Oct 9, Oct 10
    ("2026-02-13", "T1", "2026-02-25"),  # due Feb 14, +2: Feb 24, Feb 25
])
def test_credit_deadline(cal, day, cycle, expected):
    assert str(cal.credit_deadline(day, cycle)) == expected


def test_vectorized_series_keeps_index_and_accepts_aware_times(cal):
    times = pd.Series(
        pd.to_datetime(["2025-09-30 23:30", "2026-02-13 09:00", "2025-09-27 12:00"]).tz_localize("Asia/Shanghai"),
        index=[10, 20, 30], name="timestamp",
    )
    due = cal.settlement_date(times, np.array(["T1", None, "D1"], dtype=object))
    assert due.index.tolist() == [10, 20, 30] and due.name == "timestamp"
    assert [str(pd.Timestamp(d).date()) for d in due] == ["2025-10-09", "2026-02-14", "2025-09-28"]
    steps = cal.add_business_days(times, np.array([1, 1, 2]))
    assert [str(pd.Timestamp(d).date()) for d in steps] == ["2025-10-09", "2026-02-14", "2025-09-29"]
    flags = cal.is_business_day(times)
    assert flags.tolist() == [True, True, False]


def test_unknown_cycle_is_refused(cal):
    with pytest.raises(ValueError, match="T1, D1 or D0"):
        cal.settlement_date("2025-03-03", "T2")


# ---------------------------------------------------------------------------------
# Years past the announced schedule
# ---------------------------------------------------------------------------------
def test_year_past_the_announced_ones_raises():
    unannounced = workdays._announced_last_year() + 1
    with pytest.raises(CalendarError, match=str(unannounced)):
        china_calendar(2025, unannounced)
    with pytest.raises(CalendarError):
        china_calendar().is_business_day(f"{unannounced}-03-01")


def test_arithmetic_leaving_the_span_raises(cal):
    with pytest.raises(CalendarError):
        cal.add_business_days("2026-12-31", 1)
    with pytest.raises(CalendarError):
        cal.is_business_day("2024-12-31")
