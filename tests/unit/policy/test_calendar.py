"""Business-time arithmetic: the sla-semantics section 8 tables as pure calendar cases, DST, properties.

Fixture calendars are built through build_calendar from their policy.yaml form, with holidays from the
`holidays` package (never hand-entered), materialised for today=2026-11-23, i.e. 2025..2028.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ticketbridge.sync.policy.calendar import (
    AlwaysOpen,
    BusinessCalendar,
    CalendarError,
    TimeCalendar,
    build_calendar,
    holiday_dates,
    load_zone,
    to_utc,
)

TODAY = date(2026, 11, 23)
H = 3600
BD = 8 * H  # one business day on BER
BERLIN = ZoneInfo("Europe/Berlin")
BER_WEEK = {day: [(time(9), time(17))] for day in range(5)}


def z(text: str) -> datetime:
    """'2026-11-20T15:30' -> aware UTC."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def source(country: str, subdiv: str | None = None, observed: bool = True) -> dict[str, Any]:
    return {"provider": "python-holidays", "country": country, "subdiv": subdiv,
            "categories": ["public"], "observed": observed}


OFFICE = {"mon-fri": ["09:00-17:00"]}
BER_BASE = {"timezone": "Europe/Berlin", "week": OFFICE, "business_day": "8h"}
SPECS: dict[str, dict[str, Any]] = {
    "BER": {"timezone": "Europe/Berlin", "week": OFFICE, "business_day": "8h",
            "holidays": {"sources": [source("DE", "BE")]}},
    "BER-SN": {"timezone": "Europe/Berlin", "week": OFFICE, "business_day": "8h",
               "holidays": {"sources": [source("DE", "SN")]}},
    "DE": {"timezone": "Europe/Berlin", "week": OFFICE, "business_day": "8h",
           "holidays": {"sources": [source("DE")]}},
    "NYC": {"timezone": "America/New_York", "week": {"mon-fri": ["08:00-18:00"]}, "business_day": "10h",
            "holidays": {"sources": [source("US")]}},
    "NYC-unobserved": {"timezone": "America/New_York", "week": {"mon-fri": ["08:00-18:00"]}, "business_day": "10h",
                       "holidays": {"sources": [source("US", observed=False)]}},
    "NIGHT": {"timezone": "Europe/Berlin", "week": {"daily": ["22:00-06:00"]}, "business_day": "8h"},
    "calendar": {"timezone": "Europe/Berlin"},  # the built-in 24/7 calendar, displayed in Berlin time
    # Test-only variants from the section 8 rows.
    "BER+1224": {**BER_BASE, "holidays": {"sources": [source("DE", "BE")], "include_dates": ["2026-12-24"]}},
    "BER+1124": {**BER_BASE, "holidays": {"sources": [source("DE", "BE")], "include_dates": [date(2026, 11, 24)]}},
    "SPLIT": {"timezone": "Europe/Berlin", "week": {"mon-fri": ["09:00-12:00", "13:00-17:00"]}, "business_day": "7h"},
    "NIGHT-XMAS": {"timezone": "Europe/Berlin", "week": {"mon-fri": ["22:00-06:00"]}, "business_day": "8h",
                   "holidays": {"include_dates": ["2026-12-25", "2026-12-26"]}},
}


@cache
def cal(name: str) -> BusinessCalendar | AlwaysOpen:
    return build_calendar(name, SPECS[name], today=TODAY)


def business(name: str) -> BusinessCalendar:
    calendar = cal(name)
    assert isinstance(calendar, BusinessCalendar)
    return calendar


# --- holiday data: the package gives the section 8 date lists ------------------------------------

BE_2026 = ["01-01", "03-08", "04-03", "04-06", "05-01", "05-14", "05-25", "10-03", "12-25", "12-26"]
BE_2027 = ["01-01", "03-08", "03-26", "03-29", "05-01", "05-06", "05-17", "10-03", "12-25", "12-26"]


def dates(year: int, days: list[str]) -> set[date]:
    return {date.fromisoformat(f"{year}-{day}") for day in days}


def test_holiday_package_gives_the_de_be_lists() -> None:
    assert holiday_dates("DE", "BE", ["public"], True, [2026]) == dates(2026, BE_2026)
    assert holiday_dates("DE", "BE", ["public"], True, [2027]) == dates(2027, BE_2027)
    ber = business("BER")
    assert dates(2026, BE_2026) | dates(2027, BE_2027) <= ber.closed_dates
    assert date(2026, 12, 24) not in ber.closed_dates  # a working day unless added as a closure


def test_subdivisions_and_observed_days() -> None:
    be = holiday_dates("DE", "BE", ["public"], True, [2026])
    sn = holiday_dates("DE", "SN", ["public"], True, [2026])
    de = holiday_dates("DE", None, ["public"], True, [2026])
    assert sn - be == {date(2026, 10, 31), date(2026, 11, 18)}  # Reformation Day, Buss- und Bettag
    assert be - sn == {date(2026, 3, 8)}  # Frauentag is Berlin only
    assert be - de == {date(2026, 3, 8)}
    us = holiday_dates("US", None, ["public"], True, [2026])
    assert {date(2026, 7, 3), date(2026, 11, 26)} <= us
    assert date(2026, 11, 27) not in us  # the Friday after Thanksgiving is a workday
    assert date(2026, 7, 3) not in holiday_dates("US", None, ["public"], False, [2026])
    # Buss- und Bettag is the Wednesday before 23 November, so 22 November itself in 2028.
    assert date(2028, 11, 22) in holiday_dates("DE", "SN", ["public"], True, [2028])


# --- section 8 tables as calendar arithmetic -------------------------------------------------------

ADVANCE_CASES = [
    # id, calendar, start (UTC), open seconds, due (UTC), due in the calendar's local time
    ("T01", "BER", "2026-11-20T15:30", 24 * H, "2026-11-25T15:30", "2026-11-25T16:30:00+01:00"),
    ("T01-warn-50%", "BER", "2026-11-20T15:30", int(0.5 * 24 * H), "2026-11-24T11:30", "2026-11-24T12:30:00+01:00"),
    ("T01-warn-75%", "BER", "2026-11-20T15:30", int(0.75 * 24 * H), "2026-11-25T09:30", "2026-11-25T10:30:00+01:00"),
    ("T01-warn-2h", "BER", "2026-11-20T15:30", 24 * H - 2 * H, "2026-11-25T13:30", "2026-11-25T14:30:00+01:00"),
    ("T02", "BER", "2026-11-24T01:10", 24 * H, "2026-11-26T16:00", "2026-11-26T17:00:00+01:00"),
    ("T03", "BER", "2026-11-20T16:00", BD, "2026-11-23T16:00", "2026-11-23T17:00:00+01:00"),
    ("T04", "BER", "2026-11-21T10:00", BD, "2026-11-23T16:00", "2026-11-23T17:00:00+01:00"),
    ("T05", "BER", "2026-12-23T09:00", 24 * H, "2026-12-29T09:00", "2026-12-29T10:00:00+01:00"),
    ("T05-closure", "BER+1224", "2026-12-23T09:00", 24 * H, "2026-12-30T09:00", "2026-12-30T10:00:00+01:00"),
    ("T06", "BER", "2026-04-02T09:00", 15 * BD, "2026-04-27T09:00", "2026-04-27T11:00:00+02:00"),
    ("T07", "BER", "2026-12-14T08:00", 30 * BD, "2027-01-26T16:00", "2027-01-26T17:00:00+01:00"),
    ("T08-BER", "BER", "2027-03-05T15:00", BD, "2027-03-09T15:00", "2027-03-09T16:00:00+01:00"),
    ("T08-DE", "DE", "2027-03-05T15:00", BD, "2027-03-08T15:00", "2027-03-08T16:00:00+01:00"),
    ("T09", "BER", "2027-03-26T09:00", BD, "2027-03-30T15:00", "2027-03-30T17:00:00+02:00"),
    ("T10", "calendar", "2026-03-29T00:30", 2 * H, "2026-03-29T02:30", "2026-03-29T04:30:00+02:00"),
    ("T11", "calendar", "2026-10-25T00:50", 15 * 60, "2026-10-25T01:05", "2026-10-25T02:05:00+01:00"),
    ("T12", "calendar", "2026-10-24T10:00", 24 * H, "2026-10-25T10:00", "2026-10-25T11:00:00+01:00"),
    ("T13", "NIGHT", "2026-10-24T19:00", 8 * H, "2026-10-25T04:00", "2026-10-25T05:00:00+01:00"),
    ("T14", "NIGHT", "2026-03-28T21:00", 8 * H, "2026-03-29T21:00", "2026-03-29T23:00:00+02:00"),
    ("T15", "NYC", "2026-03-06T22:00", 8 * H, "2026-03-09T19:00", "2026-03-09T15:00:00-04:00"),
    ("T16", "NYC", "2026-11-25T20:00", 24 * H, "2026-12-01T14:00", "2026-12-01T09:00:00-05:00"),
    ("T17", "NYC", "2026-07-02T21:00", 8 * H, "2026-07-06T19:00", "2026-07-06T15:00:00-04:00"),
    ("T17-unobserved", "NYC-unobserved", "2026-07-02T21:00", 8 * H, "2026-07-03T19:00", "2026-07-03T15:00:00-04:00"),
    ("T18-no-pause", "BER", "2026-11-02T08:00", 15 * BD, "2026-11-20T16:00", "2026-11-20T17:00:00+01:00"),
    ("T20-before-FR", "BER", "2026-11-23T08:00", 24 * H, "2026-11-25T16:00", "2026-11-25T17:00:00+01:00"),
    ("T20-before-RES", "BER", "2026-11-23T08:00", 15 * BD, "2026-12-11T16:00", "2026-12-11T17:00:00+01:00"),
    ("T20-FR", "calendar", "2026-11-23T08:00", 15 * 60, "2026-11-23T08:15", "2026-11-23T09:15:00+01:00"),
    ("T20-RES", "calendar", "2026-11-23T08:00", 2 * H, "2026-11-23T10:00", "2026-11-23T11:00:00+01:00"),
    ("E6", "SPLIT", "2026-11-23T10:30", 1 * H, "2026-11-23T12:30", "2026-11-23T13:30:00+01:00"),
    ("E7", "NIGHT-XMAS", "2026-12-24T20:00", 8 * H, "2026-12-29T03:00", "2026-12-29T04:00:00+01:00"),
    ("E13", "BER+1124", "2026-11-20T15:30", 24 * H, "2026-11-26T15:30", "2026-11-26T16:30:00+01:00"),
]


@pytest.mark.parametrize(
    ("name", "start", "seconds", "due", "local"),
    [pytest.param(*case[1:], id=case[0]) for case in ADVANCE_CASES],
)
def test_section8_advance(name: str, start: str, seconds: int, due: str, local: str) -> None:
    calendar = cal(name)
    result = calendar.advance(z(start), seconds)
    assert result == z(due)
    assert result.tzinfo is UTC
    assert result.astimezone(calendar.tz).isoformat() == local
    # The due instant is exactly where the budget is spent: the inverse of open_seconds.
    assert calendar.open_seconds(z(start), result) == seconds


def test_sev4_business_day_is_the_calendar_business_day() -> None:
    assert cal("BER").business_day == 8 * H
    assert cal("NYC").business_day == 10 * H
    # T03 expressed as a business_days target: 1 x business_day.
    ber = cal("BER")
    assert ber.business_day is not None
    assert ber.advance(z("2026-11-20T16:00"), 1 * ber.business_day) == z("2026-11-23T16:00")


def test_t02_deadline_is_closing_time_and_a_reply_then_is_met() -> None:
    ber = cal("BER")
    due = ber.advance(z("2026-11-24T01:10"), 24 * H)
    assert due == z("2026-11-26T16:00")  # Thu 17:00, not Fri 09:00
    reply = z("2026-11-26T16:00")
    assert reply <= due  # met: stopped_at <= due_at
    assert not ber.is_open(due)  # half-open: 17:00 itself is closed
    assert ber.is_open(due - timedelta(seconds=1))
    # The clock started at 02:10 only counts from 09:00.
    assert ber.open_seconds(z("2026-11-24T01:10"), z("2026-11-24T08:00")) == 0
    assert ber.next_open(z("2026-11-24T01:10")) == z("2026-11-24T08:00")


def test_t03_clock_started_at_closing_time_counts_from_the_next_opening() -> None:
    ber = cal("BER")
    assert ber.next_open(z("2026-11-20T16:00")) == z("2026-11-23T08:00")
    assert ber.advance(z("2026-11-20T16:00"), 1) == z("2026-11-23T08:00:01")


def test_t18_pause_across_days() -> None:
    for name, due in (("BER", "2026-11-25T14:00"), ("BER-SN", "2026-11-26T14:00")):
        calendar = cal(name)
        used = calendar.open_seconds(z("2026-11-02T08:00"), z("2026-11-04T12:00"))
        paused = calendar.open_seconds(z("2026-11-04T12:00"), z("2026-11-09T10:00"))
        assert (used, paused) == (20 * H, 22 * H), name
        remaining = 15 * BD - used
        assert remaining == 100 * H
        assert calendar.advance(z("2026-11-09T10:00"), remaining) == z(due), name


def test_t19_pause_on_the_24_7_calendar() -> None:
    clock = cal("calendar")
    used = clock.open_seconds(z("2026-11-23T09:00"), z("2026-11-23T09:30"))
    assert used == 30 * 60
    assert 2 * H - used == 90 * 60  # remaining while paused
    assert clock.advance(z("2026-11-23T10:15"), 2 * H - used) == z("2026-11-23T11:45")


def test_e5_pausable_business_target() -> None:
    ber = cal("BER")
    used = ber.open_seconds(z("2026-11-23T15:00"), z("2026-11-23T15:30"))
    assert used == 30 * 60
    assert ber.advance(z("2026-11-24T09:00"), 8 * H - used) == z("2026-11-25T08:30")


def test_e7_holiday_closes_the_after_midnight_part_of_a_shift() -> None:
    night = cal("NIGHT-XMAS")
    # Thu 12-24 22:00 -> Fri 12-25 06:00: only the 2 h before midnight are open.
    assert night.open_seconds(z("2026-12-24T20:00"), z("2026-12-25T05:00")) == 2 * H
    assert not night.is_open(z("2026-12-24T23:30"))  # 00:30 local on the 25th
    assert night.next_open(z("2026-12-24T23:30")) == z("2026-12-28T21:00")  # Mon 22:00 CET


def test_e13_added_closure_changes_due_and_version() -> None:
    before, after = business("BER"), business("BER+1124")
    start = z("2026-11-20T15:30")
    assert before.advance(start, 24 * H) == z("2026-11-25T15:30")
    assert after.advance(start, 24 * H) == z("2026-11-26T15:30")
    assert before.version != after.version
    # Deterministic: the same spec gives the same version (so a restart replays nothing).
    assert build_calendar("BER", SPECS["BER"], today=TODAY).version == before.version
    # A new holidays release could change the dates, so its version is part of the calendar version.
    def version(extra: str) -> str:
        return BusinessCalendar("BER", "Europe/Berlin", BER_WEEK, before.closed_dates, business_day=8 * H,
                                first_year=2025, last_year=2028, extra_version=extra).version

    assert version("holidays 0.109") == version("holidays 0.109")
    assert version("holidays 0.109") != version("holidays 0.110")


def test_24_7_calendar() -> None:
    clock = cal("calendar")
    assert isinstance(clock, AlwaysOpen)
    assert clock.business_day is None
    both: list[TimeCalendar] = [clock, business("BER")]  # both satisfy the protocol (checked by mypy)
    assert len({c.version for c in both}) == 2
    assert build_calendar("support_247", {"type": "24/7"}, today=TODAY).tz.key == "UTC"
    assert clock.is_open(z("2026-12-25T12:00"))
    assert clock.open_seconds(z("2026-10-24T22:00"), z("2026-10-25T22:00")) == 24 * H
    assert clock.open_seconds(z("2026-10-25T22:00"), z("2026-10-24T22:00")) == 0


# --- DST: business days keep their length, overnight shifts and 24/7 days do not ----------------


def local_day(tz: ZoneInfo, day: date) -> tuple[datetime, datetime]:
    start, _ = to_utc(datetime.combine(day, time()), tz)
    end, _ = to_utc(datetime.combine(day + timedelta(days=1), time()), tz)
    return start, end


def daily(tz: str, *intervals: str) -> BusinessCalendar:
    calendar = build_calendar(f"daily-{tz}", {"timezone": tz, "week": {"daily": list(intervals)}}, today=TODAY)
    assert isinstance(calendar, BusinessCalendar)
    return calendar


DST_DAYS = [
    # zone, transition date, hours in that local day, the evening a night shift spans the transition
    pytest.param("Europe/Berlin", date(2026, 3, 29), 23, date(2026, 3, 28), id="berlin-spring"),
    pytest.param("Europe/Berlin", date(2026, 10, 25), 25, date(2026, 10, 24), id="berlin-fall"),
    pytest.param("America/New_York", date(2026, 3, 8), 23, date(2026, 3, 7), id="nyc-spring"),
    pytest.param("America/New_York", date(2026, 11, 1), 25, date(2026, 10, 31), id="nyc-fall"),
    pytest.param("Australia/Sydney", date(2026, 4, 5), 25, date(2026, 4, 4), id="sydney-fall-april"),
    pytest.param("Australia/Sydney", date(2026, 10, 4), 23, date(2026, 10, 3), id="sydney-spring-october"),
]


@pytest.mark.parametrize(("tz", "day", "hours", "evening"), DST_DAYS)
def test_dst_day_lengths(tz: str, day: date, hours: int, evening: date) -> None:
    zone = load_zone(tz)
    start, end = local_day(zone, day)
    assert (end - start) // timedelta(hours=1) == hours  # the fixture really is a transition day
    # Office hours are nominal length on the transition day (transitions happen at night).
    assert daily(tz, "09:00-17:00").open_seconds(start, end) == 8 * H
    assert daily(tz, "08:00-18:00").open_seconds(start, end) == 10 * H
    # A whole-day calendar follows the real day: 23 h or 25 h.
    assert daily(tz, "00:00-24:00").open_seconds(start, end) == hours * H
    # A night shift across the transition is 7 h in spring and 9 h in autumn; the night before is 8 h.
    night = daily(tz, "22:00-06:00")
    shift_start, _ = to_utc(datetime.combine(evening, time(22)), zone)
    shift_end, _ = to_utc(datetime.combine(day, time(6)), zone)
    assert night.open_seconds(shift_start, shift_end) == (hours - 16) * H
    assert night.advance(shift_start, (hours - 16) * H) == shift_end
    normal_start, _ = to_utc(datetime.combine(evening - timedelta(days=2), time(22)), zone)
    assert night.open_seconds(normal_start, normal_start + timedelta(hours=12)) == 8 * H


@pytest.mark.parametrize(("tz", "day", "hours", "evening"), DST_DAYS)
def test_dst_24_7_targets_are_exact_utc_seconds(tz: str, day: date, hours: int, evening: date) -> None:
    clock = AlwaysOpen(tz=tz)
    start, _ = to_utc(datetime.combine(evening, time(12)), load_zone(tz))
    due = clock.advance(start, 86400)  # "1d" is exactly 86 400 s
    assert due - start == timedelta(days=1)
    # ...so the wall clock moves by 23 h or 25 h: 11:00 or 13:00 instead of 12:00.
    assert due.astimezone(clock.tz).hour == 12 + (24 - hours)


def test_gap_times_in_a_pattern_are_not_counted_twice() -> None:
    # 02:30 does not exist on 2026-03-29 in Berlin; fold=0 maps it to 03:30 CEST, past 03:00 CEST.
    calendar = daily("Europe/Berlin", "00:00-02:30", "03:00-05:00")
    start, end = local_day(BERLIN, date(2026, 3, 29))
    assert calendar.open_seconds(start, end) == 4 * H  # 00:00 CET .. 05:00 CEST, all of it open once
    normal_start, normal_end = local_day(BERLIN, date(2026, 3, 30))
    assert calendar.open_seconds(normal_start, normal_end) == 4 * H + 30 * 60


def test_zones_come_from_the_pinned_tzdata_package() -> None:
    # zoneinfo alone would prefer the OS database (older on some machines) over the pinned package.
    import tzdata

    from ticketbridge.sync.policy import calendar as module

    assert module.TZDATA_VERSION == tzdata.IANA_VERSION
    assert load_zone("Europe/Berlin") is load_zone("Europe/Berlin")
    moment = datetime(2026, 10, 25, 2, 30, fold=1, tzinfo=load_zone("Europe/Berlin"))
    assert pickle.loads(pickle.dumps(moment)) == moment  # zones read from a file do not pickle by default
    assert cal("BER").tz.key == "Europe/Berlin"


def test_to_utc_flags_nonexistent_local_times() -> None:
    assert to_utc(datetime(2026, 3, 29, 2, 30), BERLIN) == (z("2026-03-29T01:30"), True)  # E12
    assert to_utc(datetime(2026, 10, 25, 2, 30), BERLIN) == (z("2026-10-25T00:30"), False)  # first of two
    assert to_utc(datetime(2026, 10, 25, 2, 30, fold=1), BERLIN) == (z("2026-10-25T00:30"), False)
    assert to_utc(datetime(2026, 11, 23, 9), BERLIN) == (z("2026-11-23T08:00"), False)
    with pytest.raises(ValueError, match="naive local wall time"):
        to_utc(z("2026-11-23T08:00"), BERLIN)


# --- properties ------------------------------------------------------------------------------------

PROPERTY_CALENDARS = ["BER", "NYC", "NIGHT", "SPLIT"]
LO = int(z("2025-01-01T12:00").timestamp())
HI = int(z("2028-06-30T00:00").timestamp())
instants = st.integers(LO, HI).map(lambda t: datetime.fromtimestamp(t, UTC))
budgets = st.integers(0, 40 * 10 * H)  # up to 40 NYC business days: stays inside the horizon


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(PROPERTY_CALENDARS), instants, budgets, budgets)
def test_advance_properties(name: str, start: datetime, s1: int, s2: int) -> None:
    calendar = cal(name)
    due = calendar.advance(start, s1)
    assert due >= start
    assert calendar.open_seconds(start, due) == s1
    assert calendar.advance(start, s1 + s2) == calendar.advance(due, s2)
    low, high = sorted((s1, s2))
    assert calendar.advance(start, low) <= calendar.advance(start, high)
    if s1 > 0:
        assert due > calendar.next_open(start)
        assert due - start >= timedelta(seconds=s1)  # open time never outruns real time


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(PROPERTY_CALENDARS), instants, instants, instants)
def test_open_seconds_properties(name: str, a: datetime, b: datetime, c: datetime) -> None:
    calendar = cal(name)
    a, b, c = sorted((a, b, c))
    ab = calendar.open_seconds(a, b)
    assert 0 <= ab <= (b - a).total_seconds()
    assert calendar.open_seconds(a, c) == ab + calendar.open_seconds(b, c)
    assert calendar.open_seconds(c, a) == 0
    opening = calendar.next_open(a)
    assert opening >= a
    assert calendar.is_open(opening)
    assert calendar.open_seconds(a, opening) == 0



@settings(max_examples=60, deadline=None)
@given(
    st.integers(int(z("2026-01-01T00:00").timestamp()), int(z("2027-06-30T00:00").timestamp())),
    st.integers(0, 30 * BD),
    st.dates(date(2026, 1, 1), date(2027, 12, 31)),
)
def test_an_added_closure_never_makes_a_due_earlier(start_ts: int, budget: int, extra: date) -> None:
    closed = business("BER").closed_dates
    base = BusinessCalendar("BER", "Europe/Berlin", BER_WEEK, closed, first_year=2026, last_year=2028)
    more = BusinessCalendar("BER", "Europe/Berlin", BER_WEEK, closed | {extra}, first_year=2026, last_year=2028)
    start = datetime.fromtimestamp(start_ts, UTC)
    assert more.advance(start, budget) >= base.advance(start, budget)
    working_day = extra.weekday() < 5 and extra not in closed
    assert (more.version != base.version) == working_day


@given(instants, st.integers(0, 10**7))
def test_24_7_advance_is_plain_utc_addition(start: datetime, seconds: int) -> None:
    clock = cal("calendar")
    assert clock.advance(start, seconds) - start == timedelta(seconds=seconds)
    assert clock.open_seconds(start, clock.advance(start, seconds)) == seconds


# --- input handling and validation ------------------------------------------------------------------


def test_sub_second_inputs_are_truncated_and_other_zones_accepted() -> None:
    ber = cal("BER")
    start = z("2026-11-23T08:00") + timedelta(microseconds=700_000)
    assert ber.advance(start, H) == z("2026-11-23T09:00")
    assert ber.advance(start, 0) == z("2026-11-23T08:00")
    assert ber.open_seconds(start, z("2026-11-23T08:00:02")) == 2
    # Any aware zone is one instant; the answer is UTC.
    local = datetime(2026, 11, 23, 9, tzinfo=BERLIN)
    assert ber.advance(local, H) == z("2026-11-23T09:00")


def test_non_positive_budget_returns_start() -> None:
    # As in the reference algorithm: a spent budget is due at the (re)start instant.
    for calendar in (cal("BER"), cal("calendar")):
        assert calendar.advance(z("2026-11-21T10:00"), 0) == z("2026-11-21T10:00")
        assert calendar.advance(z("2026-11-21T10:00"), -600) == z("2026-11-21T10:00")


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda c: c.advance(datetime(2026, 11, 23, 9), H), id="advance"),
        pytest.param(lambda c: c.open_seconds(datetime(2026, 11, 23, 9), z("2026-11-24T00:00")), id="open_seconds"),
        pytest.param(lambda c: c.is_open(datetime(2026, 11, 23, 9)), id="is_open"),
        pytest.param(lambda c: c.next_open(datetime(2026, 11, 23, 9)), id="next_open"),
    ],
)
@pytest.mark.parametrize("name", ["BER", "calendar"])
def test_naive_datetimes_are_refused(name: str, call: Callable[[TimeCalendar], object]) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        call(cal(name))


def test_beyond_the_horizon() -> None:
    ber = cal("BER")  # materialised 2025..2028
    past = "calendar 'BER' has no data past 2028-12-31; extend holidays.materialize"
    with pytest.raises(CalendarError, match=past):
        ber.advance(z("2028-12-20T08:00"), 30 * BD)  # would end in January 2029
    with pytest.raises(CalendarError, match=past):
        ber.advance(z("2029-01-02T08:00"), H)
    with pytest.raises(CalendarError, match=past):
        ber.open_seconds(z("2028-12-01T08:00"), z("2029-01-05T08:00"))
    with pytest.raises(CalendarError, match=past):
        ber.is_open(z("2029-03-01T08:00"))
    with pytest.raises(CalendarError, match=past):
        ber.next_open(z("2028-12-31T12:00"))  # no opening left inside the horizon
    with pytest.raises(CalendarError, match="no data before 2025-01-01"):
        ber.advance(z("2024-12-30T08:00"), H)
    # The last moment is still answerable.
    assert ber.advance(z("2028-12-29T08:00"), BD) == z("2028-12-29T16:00")
    narrow = build_calendar("narrow", {**SPECS["BER"], "holidays": {"materialize": {"from_year": 0, "to_year": 0}}},
                            today=TODAY)
    with pytest.raises(CalendarError, match="no data past 2026-12-31"):
        narrow.advance(z("2026-12-30T08:00"), 3 * BD)


def week(**days: list[tuple[time, time | None]]) -> dict[int, list[tuple[time, time | None]]]:
    names = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    return {names.index(day): intervals for day, intervals in days.items()}


@pytest.mark.parametrize(
    ("pattern", "overrides", "message"),
    [
        pytest.param(week(mon=[(time(9), time(17)), (time(16), time(18))]), None,
                     r"intervals overlap: mon 09:00-17:00 and mon 16:00-18:00", id="same-day"),
        pytest.param(week(mon=[(time(22), time(6))], tue=[(time(5), time(9))]), None,
                     r"intervals overlap: mon 22:00-06:00 and tue 05:00-09:00", id="overnight-spill"),
        pytest.param(week(sun=[(time(22), time(6))], mon=[(time(5), time(9))]), None,
                     r"intervals overlap: sun 22:00-06:00 and mon 05:00-09:00", id="sunday-into-monday"),
        pytest.param(week(mon=[(time(9), time(9))], tue=[(time(8), time(10))]), None,
                     r"overlap: mon 09:00-09:00 and tue 08:00-10:00", id="24h-shift"),
        pytest.param(week(thu=[(time(9), time(17))]), {date(2026, 12, 23): [(time(22), time(10))]},
                     r"overlap: 2026-12-23 \(override\) 22:00-10:00 and 2026-12-24 \(thu\) 09:00-17:00",
                     id="override-spill"),
        pytest.param({}, None, r"has no open time", id="empty-week"),
        pytest.param(week(mon=[]), {date(2026, 1, 5): [(time(9), time(17))]}, r"has no open time", id="only-override"),
        pytest.param({7: [(time(9), time(17))]}, None, r"week keys must be weekdays", id="bad-weekday"),
        pytest.param(week(mon=[(time(9), None, None)]), None, r"expected \(from, to\)", id="bad-tuple"),  # type: ignore[list-item]
    ],
)
def test_invalid_patterns(pattern: Any, overrides: Any, message: str) -> None:
    with pytest.raises(CalendarError, match=message):
        BusinessCalendar("bad", "Europe/Berlin", pattern, overrides=overrides, first_year=2026, last_year=2027)


def test_adjacent_and_overnight_patterns_are_valid() -> None:
    calendar = BusinessCalendar(
        "rota", "Europe/Berlin",
        {day: [(time(6), time(14)), (time(14), time(22)), (time(22), time(6))] for day in range(7)},
        first_year=2026, last_year=2026,
    )
    assert calendar.open_seconds(z("2026-06-01T00:00"), z("2026-06-08T00:00")) == 7 * 24 * H


def spec_with(**changes: Any) -> dict[str, Any]:
    return {**SPECS["BER"], **changes}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        pytest.param(spec_with(week={"mon": ["09:00-25:00"]}), r"week\.mon\[0\]: bad time '25:00'", id="25:00"),
        pytest.param(spec_with(week={"mon": ["24:00-06:00"]}), r"bad time '24:00'.*24:00 only as an end",
                     id="24-start"),
        pytest.param(spec_with(week={"mon": ["09:60-17:00"]}), r"bad time '09:60'", id="minute-60"),
        pytest.param(spec_with(week={"mon": ["9-17"]}), r"bad time '9'", id="no-minutes"),
        pytest.param(spec_with(week={"mon": "09:00-17:00"}), r"expected a list", id="not-a-list"),
        pytest.param(spec_with(week={"monday": ["09:00-17:00"]}), r"bad day key 'monday'", id="day-name"),
        pytest.param(spec_with(week={"fri-mon": ["09:00-17:00"]}), r"bad day key 'fri-mon'", id="reversed-range"),
        pytest.param(spec_with(week={"mon-fri": ["09:00-17:00"], "wed": []}), r"wed is given more than once",
                     id="day-twice"),
        pytest.param(spec_with(week={"mon-fri": []}), r"has no open time", id="all-closed"),
        pytest.param(spec_with(timezone="Europe/Berlinn"), r"unknown time zone 'Europe/Berlinn'", id="bad-zone"),
        pytest.param({"week": OFFICE}, r"timezone is required", id="no-zone"),
        pytest.param(spec_with(business_day="8 hours"), r"business_day: invalid duration '8 hours'", id="bad-bd"),
        pytest.param(spec_with(holiday={}), r"unknown keys \['holiday'\]", id="typo-key"),
        pytest.param(spec_with(holidays={"sources": [{"country": "DE", "subdiv": "BE"}]}),
                     r"categories must be given", id="implicit-categories"),
        pytest.param(spec_with(holidays={"sources": [source("XX")]}), r"country='XX'", id="bad-country"),
        pytest.param(spec_with(holidays={"sources": [{**source("US"), "observed": "no"}]}),
                     r"observed must be true or false", id="observed-string"),
        pytest.param(spec_with(holidays={"sources": [source("DE", "XX")]}), r"subdivision XX", id="bad-subdiv"),
        pytest.param(spec_with(holidays={"include_dates": ["2026-12-24"], "exclude_dates": ["2026-12-24"]}),
                     r"2026-12-24 both included and excluded", id="include-and-exclude"),
        pytest.param(spec_with(holidays={"include_dates": ["24.12.2026"]}), r"bad date '24.12.2026'", id="bad-date"),
        pytest.param(spec_with(holidays={"materialize": {"from_year": 1, "to_year": 0}}), r"from_year is after",
                     id="bad-materialize"),
        pytest.param(spec_with(overrides={"2026-12-23": ["13:00-09:30", "09:00-12:00"]}), r"overlap", id="override"),
        pytest.param(spec_with(type="weekly"), r"type must be 'business' or '24/7'", id="bad-type"),
    ],
)
def test_invalid_specs(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(CalendarError, match=message):
        build_calendar("BER", spec, today=TODAY)


def test_builtin_name_cannot_carry_a_week() -> None:
    with pytest.raises(CalendarError, match="24/7 calendar"):
        build_calendar("calendar", SPECS["BER"], today=TODAY)


def test_yaml_forms_overrides_and_exclusions() -> None:
    calendar = build_calendar(
        "office",
        {
            "timezone": "Europe/Berlin",
            "week": {"mon..thu": ["09:00-17:00"], "fri": ["09:00-15:00"], "sat-sun": []},
            "holidays": {
                "sources": [source("DE", "BE")],
                "include_dates": ["2026-12-24", "2026-12-31"],
                "exclude_dates": [date(2026, 5, 1)],  # YAML gives unquoted dates as date objects
            },
            "overrides": {"2026-12-23": ["09:00-13:00"], date(2026, 12, 22): []},
        },
        today=TODAY,
    )
    def open_on(day: str) -> int:
        return calendar.open_seconds(*local_day(BERLIN, date.fromisoformat(day)))

    assert isinstance(calendar, BusinessCalendar) and calendar.business_day is None
    assert open_on("2026-11-23") == 8 * H  # Mon
    assert open_on("2026-11-27") == 6 * H  # Fri
    assert open_on("2026-11-28") == 0  # Sat
    assert open_on("2026-05-01") == 6 * H  # a public holiday (Fri) opened by exclude_dates
    assert open_on("2026-12-22") == 0  # override: closed
    assert open_on("2026-12-23") == 4 * H  # override: half day
    assert open_on("2026-12-24") == 0  # company closure
    assert open_on("2026-12-25") == 0  # public holiday
    assert open_on("2026-12-31") == 0
    assert calendar.open_seconds(z("2026-11-23T00:00"), z("2026-11-30T00:00")) == (4 * 8 + 6) * H


def test_override_keeps_the_previous_evenings_spill() -> None:
    # An override replaces the shifts starting that date; the shift from the evening before still runs.
    night = BusinessCalendar(
        "night", "Europe/Berlin", {d: [(time(22), time(6))] for d in range(7)},
        overrides={date(2026, 12, 31): []}, first_year=2026, last_year=2027,
    )
    assert night.open_seconds(z("2026-12-30T21:00"), z("2026-12-31T05:00")) == 8 * H
    assert night.open_seconds(z("2026-12-31T05:00"), z("2027-01-01T05:00")) == 0
    closed = BusinessCalendar(
        "night", "Europe/Berlin", {d: [(time(22), time(6))] for d in range(7)},
        closed_dates={date(2026, 12, 31)}, first_year=2026, last_year=2027,
    )
    assert closed.open_seconds(z("2026-12-30T21:00"), z("2026-12-31T05:00")) == 2 * H


def test_business_calendar_argument_errors() -> None:
    with pytest.raises(CalendarError, match="business_day must be a positive"):
        BusinessCalendar("x", "Europe/Berlin", BER_WEEK, business_day=0)
    with pytest.raises(CalendarError, match=r"bad year range 2027\.\.2026"):
        BusinessCalendar("x", "Europe/Berlin", BER_WEEK, first_year=2027, last_year=2026)
    with pytest.raises(CalendarError, match="expected a date"):
        BusinessCalendar("x", "Europe/Berlin", BER_WEEK, closed_dates=[datetime(2026, 12, 24)])
    with pytest.raises(CalendarError, match="expected a date, got '2026-12-24'"):
        BusinessCalendar("x", "Europe/Berlin", BER_WEEK, overrides={"2026-12-24": []})  # type: ignore[dict-item]
    with pytest.raises(CalendarError, match="whole seconds"):
        BusinessCalendar("x", "Europe/Berlin", {0: [(time(9, 0, 0, 5), time(17))]})


def test_first_night_of_the_horizon_comes_from_the_evening_before() -> None:
    night = BusinessCalendar("night", "Europe/Berlin", {d: [(time(22), time(6))] for d in range(7)},
                             first_year=2026, last_year=2026)
    # 2025-12-31 22:00 is before the horizon, but its after-midnight part is 1 Jan 2026 and counts.
    assert night.open_seconds(z("2025-12-31T23:00"), z("2026-01-01T05:00")) == 6 * H
    with pytest.raises(CalendarError, match="no data before 2026-01-01"):
        night.open_seconds(z("2025-12-31T21:00"), z("2026-01-01T05:00"))
