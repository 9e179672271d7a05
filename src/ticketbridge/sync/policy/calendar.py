"""Business-time arithmetic on UTC instants (sla-semantics 7.1 and 7.7). Pure: no I/O, no clock.

A business calendar is materialised once, at construction, into sorted open intervals [start, end) in
UTC epoch seconds plus a running total of open seconds. Every query is then a binary search:
`open_seconds(a, b) = cum(b) - cum(a)` and `advance` inverts `cum`. 100 000 tickets x 3 clocks are
recomputed in seconds this way, where walking day by day per call would take minutes.

Local wall-clock time is only used to build the intervals. Each local end is mapped to UTC with
PEP 495 fold=0, so 09:00-17:00 is 8 real hours on every date while a 22:00-06:00 night shift is 9 h on
the fall-back night and 7 h on the spring-forward night.
"""

from __future__ import annotations

import hashlib
import json
import re
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

import holidays

# Absolute imports: the compiled build of this file (ticketbridge.compiled) lives in another package.
from ticketbridge.compiled import adopt
from ticketbridge.sync.durations import parse_duration
from ticketbridge.sync.policy import zones
from ticketbridge.sync.policy.zones import TZDATA_VERSION

__all__ = [
    "BUILTIN_NAME",
    "TZDATA_VERSION",
    "AlwaysOpen",
    "BusinessCalendar",
    "CalendarError",
    "TimeCalendar",
    "build_calendar",
    "holiday_dates",
    "load_zone",
    "to_utc",
]

BUILTIN_NAME = "calendar"  # the 24/7 calendar's name in policy files
DAY = 86400
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# Only for calendars built by hand (tests, fixed shift patterns); build_calendar always passes the
# years it materialised holidays for, so the horizon check guards against missing holiday data.
DEFAULT_FIRST_YEAR = 2020
DEFAULT_LAST_YEAR = 2039

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND = timedelta(seconds=1)
_ONE_DAY = timedelta(days=1)

Interval = tuple[time, time | None]


class CalendarError(ValueError):
    """An invalid calendar spec, or a question about time outside the materialised years."""


class TimeCalendar:
    """What SLA clocks need from a calendar. All instants are aware; results are aware UTC.

    The base of AlwaysOpen and BusinessCalendar (a class rather than a Protocol so that the compiled
    clock engine calls position/locate directly, see ticketbridge.compiled)."""

    name: str
    tz: ZoneInfo
    business_day: int | None
    version: str
    # The epoch seconds position() answers for (None: all); outside them it raises CalendarError.
    horizon: tuple[int, int] | None

    def advance(self, start: datetime, seconds: float) -> datetime:
        raise NotImplementedError

    def open_seconds(self, start: datetime, end: datetime) -> int:
        raise NotImplementedError

    # The same arithmetic on whole UTC epoch seconds, for the clock engine's inner loops:
    # open_seconds(a, b) == position(b) - position(a) and advance(t, s) == locate(position(t) + s).

    def position(self, t: int) -> int:
        raise NotImplementedError

    def locate(self, position: int) -> int:
        raise NotImplementedError

    def is_open(self, at: datetime) -> bool:
        raise NotImplementedError

    def next_open(self, at: datetime) -> datetime:
        raise NotImplementedError


# --- instants and zones -------------------------------------------------------------------------


def _epoch(moment: datetime) -> int:
    """Whole UTC epoch seconds, truncating sub-second input (instants have second precision)."""
    try:
        return (moment - _EPOCH) // _SECOND
    except TypeError:
        # Subtracting a naive datetime from an aware one fails; say what to do instead of that.
        raise ValueError(
            f"expected a timezone-aware datetime (UTC), got {moment!r}; "
            "naive datetimes are ambiguous, attach tzinfo=UTC or use to_utc() for local wall times"
        ) from None


def _instant(seconds: int) -> datetime:
    return _EPOCH + timedelta(seconds=seconds)


def load_zone(key: str) -> ZoneInfo:
    """The IANA zone `key`, read from the pinned `tzdata` package (see zones.load_zone)."""
    try:
        return zones.load_zone(key)
    except zones.ZoneError as exc:
        raise CalendarError(str(exc)) from exc.__cause__


def to_utc(local: datetime, tz: ZoneInfo) -> tuple[datetime, bool]:
    """Local wall time -> (aware UTC with PEP 495 fold=0, whether that wall time did not exist).

    fold=0 moves a time in the spring-forward gap forward (02:30 -> 03:30 CEST) and takes the first of
    two ambiguous times; the flag lets callers mark such input (sla-semantics E12).
    """
    if local.tzinfo is not None:
        raise ValueError(f"to_utc expects a naive local wall time, got aware {local.isoformat()}")
    wall = local.replace(fold=0)
    utc = wall.replace(tzinfo=tz).astimezone(UTC)
    # A time in the gap does not survive the round trip; naive comparison ignores fold, as wanted.
    return utc, utc.astimezone(tz).replace(tzinfo=None) != wall


# --- the 24/7 calendar --------------------------------------------------------------------------


class AlwaysOpen(TimeCalendar):
    """The built-in 24/7 calendar: open time is real elapsed time, exact UTC seconds."""

    business_day: int | None = None  # "business days" on a 24/7 clock would be a misconfiguration
    version = "24/7"  # its open time never changes; the display zone does not affect any deadline
    horizon: tuple[int, int] | None = None  # every instant has an answer

    def __init__(self, name: str = BUILTIN_NAME, tz: str = "UTC") -> None:
        self.name = name
        self.tz = load_zone(tz)

    def __repr__(self) -> str:
        return f"AlwaysOpen({self.name!r}, tz={self.tz.key!r})"

    def advance(self, start: datetime, seconds: float) -> datetime:
        begin = _epoch(start)
        # Like the reference algorithm: nothing left to spend means the due instant is now.
        return _instant(begin + max(int(seconds), 0))

    def open_seconds(self, start: datetime, end: datetime) -> int:
        return max(_epoch(end) - _epoch(start), 0)

    def position(self, t: int) -> int:
        """Open seconds from the epoch up to epoch second t: every second is open."""
        return t

    def locate(self, position: int) -> int:
        """The epoch second at which `position` open seconds have elapsed (the inverse of position)."""
        return position

    def is_open(self, at: datetime) -> bool:
        _epoch(at)  # still refuse naive input
        return True

    def next_open(self, at: datetime) -> datetime:
        return _instant(_epoch(at))


# --- business calendars -------------------------------------------------------------------------


def _seconds_of_day(value: object, what: str) -> int:
    # `object`, not `time`: the compiled build checks declared types on entry, and the caller passes
    # whatever the spec held, which this check is there to refuse with a CalendarError.
    if not isinstance(value, time) or value.tzinfo is not None or value.microsecond:
        raise CalendarError(f"{what}: expected a naive wall-clock time with whole seconds, got {value!r}")
    return value.hour * 3600 + value.minute * 60 + value.second


def _clock_text(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)  # 24:00 stays 24:00
    minutes, secs = divmod(rest, 60)
    return f"{hours:02d}:{minutes:02d}" + (f":{secs:02d}" if secs else "")


def _span_text(span: tuple[int, int]) -> str:
    return f"{_clock_text(span[0])}-{_clock_text(span[1] if span[1] <= DAY else span[1] - DAY)}"


class BusinessCalendar(TimeCalendar):
    """Open intervals from a weekly local pattern, closed local dates and per-date overrides.

    week: weekday (0=Mon..6=Sun) -> [from, to) local intervals; to=None means 24:00; to <= from is an
    overnight shift whose after-midnight part belongs to the next local date, so a closed date there
    closes it too (sla-semantics E7). An override replaces the pattern of the shifts *starting* on that
    date (the evening before still spills into it); to close a whole local date use closed_dates.
    """

    def __init__(
        self,
        name: str,
        timezone: str,
        week: Mapping[int, Sequence[Interval]],
        closed_dates: Iterable[date] = (),
        overrides: Mapping[date, Sequence[Interval]] | None = None,
        business_day: int | None = None,
        first_year: int = DEFAULT_FIRST_YEAR,
        last_year: int = DEFAULT_LAST_YEAR,
        extra_version: str = "",
    ) -> None:
        self.name = name
        self.tz = load_zone(timezone)
        if business_day is not None and (isinstance(business_day, bool) or business_day <= 0):
            raise CalendarError(f"calendar {name!r}: business_day must be a positive number of seconds")
        self.business_day = business_day
        if not 1 < first_year <= last_year < 9999:
            raise CalendarError(f"calendar {name!r}: bad year range {first_year}..{last_year}")
        self.first_year, self.last_year = first_year, last_year

        unknown_days = set(week) - set(range(7))
        if unknown_days:
            raise CalendarError(f"calendar {name!r}: week keys must be weekdays 0 (Mon) to 6 (Sun), got {unknown_days}")
        overrides = overrides or {}
        self.closed_dates = frozenset(closed_dates)
        for d in (*overrides, *self.closed_dates):
            # A datetime is a date subclass but never equal to one, so it would silently close nothing.
            if isinstance(d, datetime) or not isinstance(d, date):
                raise CalendarError(f"calendar {name!r}: expected a date, got {d!r}")
        self._week = {day: self._spans(week.get(day, ()), WEEKDAYS[day]) for day in range(7)}
        self._overrides = {d: self._spans(spans, d.isoformat()) for d, spans in overrides.items()}

        if not any(self._week.values()):
            raise CalendarError(f"calendar {name!r} has no open time: every weekday is empty")
        # Mon..Sun and Mon again, so Sunday's overnight spill into Monday is checked too.
        self._check_overlaps([(WEEKDAYS[i % 7], self._week[i % 7]) for i in range(8)], "week")
        for d in self._overrides:
            around = (d - _ONE_DAY, d, d + _ONE_DAY)
            self._check_overlaps([(self._label(x), self._pattern(x)) for x in around], f"overrides.{d}")

        self._materialize()
        self.horizon: tuple[int, int] | None = (self._lo, self._hi)
        if not self._starts:
            raise CalendarError(f"calendar {name!r} has no open time in {first_year}..{last_year}")
        digest = hashlib.sha256()
        digest.update(json.dumps([self.tz.key, TZDATA_VERSION, business_day, extra_version]).encode())
        # The intervals themselves: any change of pattern, holiday, override, zone rule or horizon shows.
        digest.update(array("q", [self._lo, self._hi, *self._starts, *self._ends]).tobytes())
        self.version = digest.hexdigest()[:16]

    def __repr__(self) -> str:
        return f"BusinessCalendar({self.name!r}, tz={self.tz.key!r}, version={self.version!r})"

    # -- construction --

    def _spans(self, intervals: Sequence[Interval], label: str) -> list[tuple[int, int]]:
        """[(start, end)] in seconds from local midnight; end > DAY for an overnight shift."""
        spans = []
        given: Sequence[Any] = intervals  # checked here, also when compiled (mypyc checks declared types)
        for item in given:
            what = f"calendar {self.name!r} {label}"
            try:
                start_t, end_t = item
            except (TypeError, ValueError):
                raise CalendarError(f"{what}: expected (from, to) times, got {item!r}") from None
            start = _seconds_of_day(start_t, what)
            end = DAY if end_t is None else _seconds_of_day(end_t, what)
            if end <= start:  # overnight; "09:00-09:00" is a 24-hour shift
                end += DAY
            spans.append((start, end))
        return sorted(spans)

    def _label(self, d: date) -> str:
        return f"{d.isoformat()} (override)" if d in self._overrides else f"{d.isoformat()} ({WEEKDAYS[d.weekday()]})"

    def _pattern(self, d: date) -> list[tuple[int, int]]:
        override = self._overrides.get(d)
        return self._week[d.weekday()] if override is None else override

    def _check_overlaps(self, days: Sequence[tuple[str, Sequence[tuple[int, int]]]], where: str) -> None:
        """Overlaps in local wall time over consecutive days, including overnight spill."""
        spans = sorted(
            (index * DAY + start, index * DAY + end, label, (start, end))
            for index, (label, pattern) in enumerate(days)
            for start, end in pattern
        )
        for first, second in pairwise(spans):
            if second[0] < first[1]:
                raise CalendarError(
                    f"calendar {self.name!r} {where}: intervals overlap: {first[2]} {_span_text(first[3])} "
                    f"and {second[2]} {_span_text(second[3])}"
                )

    def _local(self, d: date, seconds: int) -> int:
        """Epoch seconds of local wall time `seconds` after midnight of `d` (PEP 495 fold=0)."""
        d += timedelta(days=seconds // DAY)
        seconds %= DAY
        wall = datetime(d.year, d.month, d.day, seconds // 3600, seconds // 60 % 60, seconds % 60, tzinfo=self.tz)
        return (wall - _EPOCH) // _SECOND

    def _materialize(self) -> None:
        first, stop = date(self.first_year, 1, 1), date(self.last_year + 1, 1, 1)
        self._lo, self._hi = lo, hi = self._local(first, 0), self._local(stop, 0)
        closed = self.closed_dates
        pieces: list[tuple[int, int]] = []

        def keep(a: int, b: int) -> None:
            a, b = max(a, lo), min(b, hi)
            if a < b:
                pieces.append((a, b))

        d = first - _ONE_DAY  # the shift starting on 31 Dec of the year before spills into 1 Jan
        while d < stop:
            following = d + _ONE_DAY
            midnight = self._local(following, 0)
            for start, end in self._pattern(d):
                a, b = self._local(d, start), self._local(d, end)
                # Split at local midnight: each part is closed by its own date's holiday (E7).
                if d not in closed:
                    keep(a, min(b, midnight))
                if following not in closed:
                    keep(max(a, midnight), b)
            d = following

        # Union, not just sort: a wall time in the spring-forward gap maps (fold=0) past the times just
        # after the gap, so locally disjoint intervals can overlap by up to an hour in UTC.
        starts: list[int] = []
        ends: list[int] = []
        for a, b in sorted(pieces):
            if starts and a <= ends[-1]:
                ends[-1] = max(ends[-1], b)
            else:
                starts.append(a)
                ends.append(b)
        before: list[int] = []
        after: list[int] = []
        total = 0
        for a, b in zip(starts, ends, strict=True):
            before.append(total)
            total += b - a
            after.append(total)
        self._starts, self._ends = starts, ends
        self._cum_before, self._cum_after = before, after

    # -- queries --

    def _horizon_error(self, past: bool) -> CalendarError:
        if past:
            return CalendarError(
                f"calendar {self.name!r} has no data past {self.last_year}-12-31; extend holidays.materialize"
            )
        return CalendarError(
            f"calendar {self.name!r} has no data before {self.first_year}-01-01; extend holidays.materialize"
        )

    def _check(self, t: int, *, inclusive_end: bool = True) -> int:
        if t < self._lo:
            raise self._horizon_error(past=False)
        if t > self._hi or (t == self._hi and not inclusive_end):
            raise self._horizon_error(past=True)
        return t

    def _cum(self, t: int) -> int:
        """Open seconds from the start of the horizon up to t."""
        i = bisect_right(self._starts, t) - 1
        if i < 0:
            return 0
        return self._cum_before[i] + min(t, self._ends[i]) - self._starts[i]

    def advance(self, start: datetime, seconds: float) -> datetime:
        """The instant at which `seconds` of open time have elapsed from `start`.

        It can be a closing instant exactly (Thu 17:00, not Fri 09:00). A start in closed time counts
        from the next opening. seconds <= 0 gives `start` (as in the reference algorithm); fractions
        are truncated.
        """
        t = _epoch(start)
        begin = self.position(t)
        spend = int(seconds)
        if spend <= 0:
            return _instant(t)
        return _instant(self.locate(begin + spend))

    def open_seconds(self, start: datetime, end: datetime) -> int:
        """Open seconds in [start, end); 0 if end <= start."""
        a, b = _epoch(start), _epoch(end)
        if b <= a:
            return 0
        return self.position(b) - self.position(a)

    def position(self, t: int) -> int:
        """Open seconds from the start of the horizon up to epoch second t (CalendarError outside it)."""
        if t < self._lo or t > self._hi:
            self._check(t)  # raises the horizon error
        # _cum, inlined: the clock engine asks this for every segment and update.
        i = bisect_right(self._starts, t) - 1
        if i < 0:
            return 0
        return self._cum_before[i] + min(t, self._ends[i]) - self._starts[i]

    def locate(self, position: int) -> int:
        """The first epoch second at which `position` open seconds have elapsed (the inverse of position)."""
        # bisect_left: the first interval whose running total reaches the position, so an exact hit
        # returns that interval's end rather than the next opening.
        j = bisect_left(self._cum_after, position)
        if j == len(self._cum_after):
            raise self._horizon_error(past=True)
        return self._starts[j] + position - self._cum_before[j]

    def is_open(self, at: datetime) -> bool:
        t = self._check(_epoch(at), inclusive_end=False)
        i = bisect_right(self._starts, t) - 1
        return i >= 0 and t < self._ends[i]

    def next_open(self, at: datetime) -> datetime:
        """`at` (truncated to the second) if open, else the next opening."""
        t = self._check(_epoch(at), inclusive_end=False)
        i = bisect_right(self._starts, t) - 1
        if i >= 0 and t < self._ends[i]:
            return _instant(t)
        if i + 1 == len(self._starts):
            raise self._horizon_error(past=True)
        return _instant(self._starts[i + 1])


# --- holidays and the YAML form -----------------------------------------------------------------


def holiday_dates(
    country: str, subdiv: str | None, categories: Sequence[str], observed: bool, years: Iterable[int]
) -> set[date]:
    """Public-holiday dates from the `holidays` package (data only).

    categories are required: DE also has a school category and US government/unofficial ones, and a
    silent default would be a different calendar.
    """
    if isinstance(categories, str) or not categories:
        raise CalendarError(f"holidays for {country}: give categories explicitly as a list, e.g. ['public']")
    try:
        found = holidays.country_holidays(
            country, subdiv=subdiv, years=sorted(set(years)), observed=observed, categories=tuple(categories)
        )
    except (NotImplementedError, ValueError, KeyError) as exc:
        raise CalendarError(f"holidays for country={country!r} subdiv={subdiv!r}: {exc}") from exc
    return set(found.keys())


_TIME = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?")
_SPEC_KEYS = {"type", "description", "timezone", "week", "business_day", "holidays", "overrides"}
_HOLIDAY_KEYS = {"sources", "include_dates", "exclude_dates", "materialize"}
_SOURCE_KEYS = {"provider", "country", "subdiv", "categories", "observed"}


def _parse_time(text: str, where: str, *, end: bool) -> time | None:
    match = _TIME.fullmatch(text.strip())
    if match:
        hours, minutes, seconds = (int(g or 0) for g in match.groups())
        if end and (hours, minutes, seconds) == (24, 0, 0):
            return None
        if hours < 24 and minutes < 60 and seconds < 60:
            return time(hours, minutes, seconds)
    allowed = "00:00-24:00" if end else "00:00-23:59 (24:00 only as an end)"
    raise CalendarError(f"{where}: bad time {text.strip()!r}, expected HH:MM in {allowed}")


def _parse_interval(text: object, where: str) -> Interval:
    if not isinstance(text, str) or text.count("-") != 1:
        raise CalendarError(f"{where}: expected 'HH:MM-HH:MM', got {text!r}")
    start, end = text.split("-")
    start_t = _parse_time(start, where, end=False)
    assert start_t is not None  # end=False never gives 24:00
    return start_t, _parse_time(end, where, end=True)


def _parse_intervals(value: object, where: str) -> list[Interval]:
    if not isinstance(value, list | tuple):
        raise CalendarError(f"{where}: expected a list of 'HH:MM-HH:MM' strings ([] = closed), got {value!r}")
    return [_parse_interval(item, f"{where}[{i}]") for i, item in enumerate(value)]


def _parse_days(key: object, where: str) -> list[int]:
    text = str(key).strip().lower()
    if text == "daily":
        return list(range(7))
    parts = re.split(r"\s*(?:-|\.\.)\s*", text)
    if all(part in WEEKDAYS for part in parts) and len(parts) in (1, 2):
        first, last = WEEKDAYS.index(parts[0]), WEEKDAYS.index(parts[-1])
        if first <= last:
            return list(range(first, last + 1))
    raise CalendarError(f"{where}: bad day key {key!r}, expected mon..sun, a range such as 'mon-fri', or 'daily'")


def _parse_date(value: object, where: str) -> date:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value  # YAML already turns an unquoted 2026-12-24 into a date
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise CalendarError(f"{where}: bad date {value!r}, expected YYYY-MM-DD")


def _mapping(value: object, where: str, allowed: set[str]) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise CalendarError(f"{where}: expected a mapping, got {value!r}")
    unknown = set(value) - allowed
    if unknown:
        # A misspelt key (say "holiday:") would silently give a calendar without holidays.
        raise CalendarError(f"{where}: unknown keys {sorted(map(str, unknown))}; allowed: {sorted(allowed)}")
    return value


def _relative_year(value: object, default: int, where: str) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise CalendarError(f"{where}: expected a whole number of years relative to today, got {value!r}")
    return value


def build_calendar(name: str, spec: Mapping[str, Any], *, today: date) -> BusinessCalendar | AlwaysOpen:
    """A calendar from its mappings/policy.yaml form (see sla-semantics 7.2).

    `today` only chooses which years of holidays to materialise (default today.year-1 .. today.year+2).
    """
    where = f"calendar {name!r}"
    spec = _mapping(spec, where, _SPEC_KEYS)
    kind = spec.get("type", "business")
    if name == BUILTIN_NAME or kind == "24/7":
        extra = set(spec) - {"type", "description", "timezone"}
        if extra or kind not in ("24/7", "business"):
            raise CalendarError(f"{where} is a 24/7 calendar: it takes only a display timezone, not {sorted(extra)}")
        return AlwaysOpen(name, str(spec.get("timezone", "UTC")))
    if kind != "business":
        raise CalendarError(f"{where}: type must be 'business' or '24/7', got {kind!r}")

    timezone = spec.get("timezone")
    if not isinstance(timezone, str):
        raise CalendarError(f"{where}: timezone is required, e.g. 'Europe/Berlin'")
    load_zone(timezone)

    week_spec = spec.get("week")
    if not isinstance(week_spec, Mapping):
        raise CalendarError(f"{where}: week is required, e.g. {{mon-fri: ['09:00-17:00']}}")
    week: dict[int, list[Interval]] = {}
    for key, value in week_spec.items():
        intervals = _parse_intervals(value, f"{where} week.{key}")
        for day in _parse_days(key, f"{where} week"):
            if day in week:
                raise CalendarError(f"{where} week: {WEEKDAYS[day]} is given more than once (in {key!r})")
            week[day] = intervals

    business_day = None
    if spec.get("business_day") is not None:
        try:
            business_day = parse_duration(spec["business_day"])
        except ValueError as exc:
            raise CalendarError(f"{where} business_day: {exc}") from None

    hol = _mapping(spec.get("holidays"), f"{where} holidays", _HOLIDAY_KEYS)
    years = _mapping(hol.get("materialize"), f"{where} holidays.materialize", {"from_year", "to_year"})
    first_year = today.year + _relative_year(years.get("from_year"), -1, f"{where} materialize.from_year")
    last_year = today.year + _relative_year(years.get("to_year"), 2, f"{where} materialize.to_year")
    if first_year > last_year:
        raise CalendarError(f"{where} holidays.materialize: from_year is after to_year")

    closed: set[date] = set()
    sources = hol.get("sources") or []
    if not isinstance(sources, list):
        raise CalendarError(f"{where} holidays.sources: expected a list")
    for i, raw in enumerate(sources):
        source = _mapping(raw, f"{where} holidays.sources[{i}]", _SOURCE_KEYS)
        if source.get("provider", "python-holidays") != "python-holidays":
            raise CalendarError(f"{where} holidays.sources[{i}]: provider must be 'python-holidays'")
        if not isinstance(source.get("country"), str):
            raise CalendarError(f"{where} holidays.sources[{i}]: country is required, e.g. 'DE'")
        categories = source.get("categories")
        if not isinstance(categories, list) or not categories:
            raise CalendarError(f"{where} holidays.sources[{i}]: categories must be given, e.g. [public]")
        observed = source.get("observed", True)  # the package's default: US 2026-07-03 is closed
        if not isinstance(observed, bool):
            raise CalendarError(f"{where} holidays.sources[{i}]: observed must be true or false, got {observed!r}")
        closed |= holiday_dates(
            source["country"], source.get("subdiv"), categories, observed, range(first_year, last_year + 1)
        )
    include = {_parse_date(v, f"{where} holidays.include_dates") for v in hol.get("include_dates") or []}
    exclude = {_parse_date(v, f"{where} holidays.exclude_dates") for v in hol.get("exclude_dates") or []}
    if include & exclude:
        both = ", ".join(sorted(d.isoformat() for d in include & exclude))
        raise CalendarError(f"{where} holidays: {both} both included and excluded")
    closed = (closed - exclude) | include

    overrides_spec = spec.get("overrides") or {}
    if not isinstance(overrides_spec, Mapping):
        raise CalendarError(f"{where} overrides: expected a mapping of date -> intervals")
    overrides = {
        _parse_date(key, f"{where} overrides"): _parse_intervals(value, f"{where} overrides.{key}")
        for key, value in overrides_spec.items()
    }

    # The package version goes into the calendar version: new releases bring new one-off holidays.
    extra_version = json.dumps({"holidays": holidays.__version__, "sources": sources}, sort_keys=True, default=str)
    return BusinessCalendar(
        name, timezone, week, closed, overrides, business_day, first_year, last_year, extra_version
    )


# The compiled build of this module, when it is built from the current sources (ticketbridge.compiled).
IMPLEMENTATION = adopt(globals())
