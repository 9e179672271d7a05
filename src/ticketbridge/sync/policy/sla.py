"""The SLA clock engine: a ticket's history in, its clocks out (sla-semantics 7.3-7.5).

Pure: no I/O, and `now` is passed in. Every call replays the whole history with the current
policy, so a changed policy or calendar, or an event that arrived late, recomputes cleanly.

Events with the same source timestamp form one update (one Zendesk audit). Per update:
1. warnings and breaches of running clocks that fall before the update fire at their own instants;
2. the update's changes apply: status, tags, fields, severity (through the ratchet);
3. the policy is matched again; a changed severity or policy re-targets every live clock, keeping
   its started_at and pauses ("replayed from started_at"), so consumed is measured anew on the
   new target's calendar;
4. per metric: applies_when, then stop > (reopen) > start > pause;
5. thresholds the new target has already passed fire now, recorded at the update, never
   back-dated; the nominal instant is kept.
After the last update, the alarms up to `now` fire.

Events are computed as if the current policy had always applied. The caller stores them by
(metric, cycle, kind, threshold) and treats one it has not seen before as happening when it first
sees it, which covers policy edits and downtime (sla-semantics 7.4 "Timers").

The replay gives exactly the result of doing all of the above on every update, but does only the
work that can change it (100,000 tickets are recomputed in seconds): time is counted in epoch
seconds on the calendars' own arithmetic and remembered per cycle until a segment or the target
changes; an update looks only at the metrics whose facts, target, replies or thresholds it
touches; conditions are judged once per state of the facts; timers wait for the earliest pending
alarm. See _Cycle, _Replay and compute_clocks.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import groupby
from operator import itemgetter
from typing import Any, TypeVar, cast

from mypy_extensions import mypyc_attr

# policy.py is imported absolutely: the compiled build of this file (ticketbridge.compiled) lives in
# another package, next to the compiled calendar.py that `.calendar` finds there.
from ticketbridge.compiled import adopt
from ticketbridge.sync.policy.policy import Condition, Metric, Policy, PolicySpec, Target, Trigger

from .calendar import TimeCalendar

__all__ = ["Alarm", "Clock", "ClockEvent", "HistoryEvent", "TicketSla", "compute_clocks", "consumed_by", "instant_of"]

ACTIVE = ("running", "paused")
Segment = tuple[datetime, datetime | None]


@dataclass(frozen=True)
class HistoryEvent:
    at: datetime  # aware; the SOURCE timestamp (the tracker's clock), never the arrival time
    seq: int  # order within the same instant
    kind: str  # created | status | comment | severity | field | tags
    field: str | None = None  # for "field": the field name (incident_active, rca_url, ...)
    value: Any = None  # status name / severity level / field value / tags tuple
    public: bool = False  # comment: visible to the customer
    by_agent: bool = False  # comment by a human agent (not the end user, not a bot or mirror)
    source: str = ""  # severity: who changed it (zendesk_agent, jira, github, derived, ...)
    flags: tuple[str, ...] = ()  # severity: flags its derivation added (needs_triage)

    def __reduce__(self) -> tuple[type[HistoryEvent], tuple[Any, ...]]:
        # Pickle and copy through __init__: the compiled class (ticketbridge.compiled) has no
        # instance dict, and its frozen __setattr__ refuses the default way of filling one in.
        return HistoryEvent, (self.at, self.seq, self.kind, self.field, self.value, self.public, self.by_agent,
                              self.source, self.flags)


@mypyc_attr(native_class=False)  # see _frozen
@dataclass(frozen=True)
class Alarm:
    kind: str  # warning | breach
    threshold: str  # "80%", "-30m"; "due" for the breach
    at: datetime  # when it fires on the current schedule (a breach: due + grace)


@mypyc_attr(native_class=False)  # see _frozen
@dataclass(frozen=True)
class ClockEvent:
    kind: str  # warning | breach | policy_changed | deadline_changed
    metric: str
    cycle: int
    nominal_at: datetime | None  # warning/breach: the instant the threshold was (or is) reached;
    #                              deadline_changed: the new due; policy_changed: the due, if running
    recorded_at: datetime  # when it happened: never before the change that caused it
    threshold: str = ""  # "80%", "-30m", "due"; "enterprise->standard"; "sev3->sev1"
    detail: str = ""

    @property
    def key(self) -> str:
        """Stable identity for recording an event exactly once."""
        return f"{self.metric}:{self.cycle}:{self.kind}:{self.threshold}"


@mypyc_attr(native_class=False)  # see _frozen
@dataclass(frozen=True)
class Clock:
    metric: str
    cycle: int
    policy_id: str
    severity: str
    target_seconds: int
    target_kind: str
    calendar: str
    status: str  # pending_start | running | paused | stopped | cancelled
    breached: bool
    started_at: datetime | None
    stopped_at: datetime | None
    segments: tuple[Segment, ...]  # running segments; the last is open while running
    consumed: int  # seconds of the target's calendar consumed by `now`
    remaining: int  # target - consumed; negative after a breach
    due_at: datetime | None  # defined exactly when status == running
    breach_nominal_at: datetime | None
    breach_recorded_at: datetime | None
    outcome: str | None  # met | met_within_grace | breached | None
    alarms: tuple[Alarm, ...]
    why: tuple[str, ...]


@mypyc_attr(native_class=False)  # see _frozen
@dataclass(frozen=True)
class TicketSla:
    severity: str
    flags: tuple[str, ...]
    policy_id: str
    clocks: tuple[Clock, ...]  # per metric (policy order), every cycle in order
    severity_rejected: tuple[HistoryEvent, ...]
    next_fire_at: datetime | None
    events: tuple[ClockEvent, ...]

    def clock(self, metric: str) -> Clock | None:
        """The metric's current (last) cycle."""
        found = [c for c in self.clocks if c.metric == metric]
        return found[-1] if found else None


# --- time on a calendar ---------------------------------------------------------------------------

def consumed_by(calendar: TimeCalendar, segments: Iterable[Segment], at: datetime) -> int:
    """Open seconds of `calendar` inside the segments, up to `at` (an open segment runs to `at`)."""
    total = 0
    for start, end in segments:
        stop = at if end is None else min(end, at)
        if start < stop:
            total += calendar.open_seconds(start, stop)
    return total


def instant_of(calendar: TimeCalendar, segments: Sequence[Segment], need: int) -> datetime | None:
    """When consumption reaches `need` seconds: in a closed segment, or projected along the open
    last one; None if the closed segments never reach it."""
    used = 0
    for start, end in segments:
        left = need - used
        if end is None:
            return calendar.advance(start, left).astimezone(UTC)
        span = calendar.open_seconds(start, end)
        if left <= span:
            return calendar.advance(start, left).astimezone(UTC)
        used += span
    return None


def _iso(moment: datetime | None) -> str:
    if not moment:
        return "-"
    utc = moment.astimezone(UTC)
    if utc.year < 1000:  # strftime renders such years differently per platform: keep its form
        return utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    # The same text as strftime("%Y-%m-%dT%H:%M:%SZ") at under half its cost (and under format specs').
    return "%d-%02d-%02dT%02d:%02d:%02dZ" % (  # noqa: UP031
        utc.year, utc.month, utc.day, utc.hour, utc.minute, utc.second)


# The replay does its calendar arithmetic on whole UTC epoch seconds, as the calendars do inside
# (TimeCalendar.position/locate), and turns results into datetimes only where they leave it. Alarm
# instants are whole seconds, so one falls before an update at `at` (epoch second t) when it is
# < t, or == t if `at` has a fraction of a second; it falls after `at` exactly when it is > t.
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND = timedelta(seconds=1)


def _epoch(moment: datetime) -> int:
    """Whole epoch seconds, truncating like the calendars do."""
    if not moment.microsecond:
        # A whole second is an integral float well inside 2**53, so this is exact, and cheaper.
        return int(moment.timestamp())
    return (moment - _EPOCH) // _SECOND


# --- replay ---------------------------------------------------------------------------------------

_T = TypeVar("_T")


def _frozen(cls: type[_T], fields: dict[str, Any]) -> _T:
    """What cls(**fields) builds for a frozen dataclass, given every field: the same instance
    dict, without the object.__setattr__ call per field that a frozen __init__ makes (Clock has
    20 fields, and a ticket's result has a few clocks, alarms and events). The result classes stay
    Python classes when this module is compiled (mypyc_attr native_class=False), so that this works
    there too: a compiled class has no instance dict, and its dataclass __init__ runs as Python."""
    made = object.__new__(cls)
    object.__setattr__(made, "__dict__", fields)
    return made


_UNKNOWN: Any = object()  # not worked out (again) yet
Alarms = tuple[tuple[str, str, int], ...]  # (label, kind, consumed seconds), earliest first
Judgement = tuple[bool, Trigger | None, bool, Condition | None]  # Metric.judge: applies, stop, starts, pause


class _Cycle:
    """One cycle of a metric's clock while the history replays.

    It also remembers its time on a calendar (its target's), because replaying asks the same
    questions after every update (how much is consumed, when is each alarm reached) and the answers
    only change when a segment closes or opens or the calendar changes: the running totals of open
    seconds over the closed segments, the calendar position of the open segment's start and the
    instants already asked for. These are the calendar queries a full recomputation makes, each
    made once.
    """

    __slots__ = ("begins", "breach_nominal_at", "breach_recorded_at", "breached", "calendar", "closed", "counted_on",
                 "fired", "instants", "lane", "marks", "number", "open_from", "outcome", "pending", "policy_id",
                 "reopenable", "segments", "severity", "shown", "started_at", "status", "stopped_at", "target",
                 "totals", "wake", "why")

    def __init__(self, lane: _Lane, number: int, at: datetime, t: int, target: Target | None,
                 calendar: TimeCalendar | None, policy_id: str, severity: str) -> None:
        self.lane, self.number, self.started_at = lane, number, at
        self.target: Target | None = target  # None: the current level has no target (tracked, not counted)
        self.shown: Target | None = target  # the last target it had, for display
        self.calendar = calendar  # the calendar of `shown`
        self.policy_id, self.severity = policy_id, severity
        self.segments: list[Segment] = [(at, None)]
        self.marks: list[tuple[int, int | None]] = [(t, None)]  # the segments in epoch seconds
        self.closed = 0  # how many of them are closed (all but an open last one)
        self.status = "running"
        self.stopped_at: datetime | None = None
        self.reopenable = False  # stopped by a condition that can stop holding again
        self.breached = False
        self.breach_nominal_at: datetime | None = None
        self.breach_recorded_at: datetime | None = None
        self.outcome: str | None = None
        self.fired: set[str] = set()
        self.why: list[str] = []
        self.pending: Alarms = () if target is None else lane.schedule(target)  # alarms not fired yet
        self.wake: Any = _UNKNOWN  # epoch second of the first pending alarm while running; None: none left
        self.counted_on: TimeCalendar | None = None  # the calendar the remembered time is on
        self.totals: list[int] = [0]  # open seconds in the first i closed segments, as far as counted
        self.begins: list[int] = []  # calendar position of each counted closed segment's start (0 if empty)
        self.open_from: int | None = None  # calendar position of the open segment's start
        self.instants: dict[int, int | None] = {}  # consumed seconds -> epoch second it is reached

    def retargeted(self) -> None:
        schedule = () if self.target is None else self.lane.schedule(self.target)
        self.pending = tuple(a for a in schedule if a[0] not in self.fired) if self.fired else schedule
        self.wake = _UNKNOWN

    def mark_fired(self, label: str) -> None:
        self.fired.add(label)
        pending = self.pending
        # Alarms mostly fire in order.
        self.pending = pending[1:] if pending[0][0] == label else tuple(a for a in pending if a[0] != label)
        self.wake = _UNKNOWN

    # -- segments --

    def open(self, at: datetime, t: int) -> None:
        self.segments.append((at, None))
        self.marks.append((t, None))
        self.open_from, self.instants, self.wake = None, {}, _UNKNOWN

    def close(self, at: datetime, t: int) -> None:
        segments = self.segments
        if segments and segments[-1][1] is None:
            start = segments[-1][0]
            if start >= at:
                segments.pop()  # started and paused in the same update: no running time
                self.marks.pop()
            else:
                segments[-1] = (start, at)
                self.marks[-1] = (self.marks[-1][0], t)
                self.closed += 1
            self.open_from, self.instants, self.wake = None, {}, _UNKNOWN

    # -- time on a calendar: consumed_by and instant_of, remembered --

    def closed_total(self, calendar: TimeCalendar) -> int:
        """Open seconds of `calendar` in the closed segments."""
        totals = self.totals
        if calendar is self.counted_on and len(totals) > self.closed:
            return totals[-1]
        if calendar is not self.counted_on:
            self.counted_on, self.totals, self.begins, self.open_from, self.instants = calendar, [0], [], None, {}
            totals = self.totals
        while len(totals) <= self.closed:  # segments closed since: count them, in order
            start, end = self.marks[len(totals) - 1]
            assert end is not None
            if end <= start:
                self.begins.append(0)
                totals.append(totals[-1])
            else:
                finish, begin = calendar.position(end), calendar.position(start)
                self.begins.append(begin)
                totals.append(totals[-1] + finish - begin)
        return totals[-1]

    def consumed(self, calendar: TimeCalendar, at: datetime, t: int) -> int:
        """consumed_by(calendar, segments, at), for an `at` no earlier than any segment's end."""
        used = self.closed_total(calendar)
        if self.closed < len(self.marks) and self.segments[-1][0] < at:  # the open segment, up to `at`
            start = self.marks[-1][0]
            if t > start:
                end = calendar.position(t)
                if self.open_from is None:
                    self.open_from = calendar.position(start)
                used += end - self.open_from
        return used

    def instant(self, calendar: TimeCalendar, need: int) -> int | None:
        """instant_of(calendar, segments, need), in epoch seconds."""
        if calendar is self.counted_on:
            found = self.instants.get(need, _UNKNOWN)
            if found is not _UNKNOWN:
                return found
            used = self.totals[-1] if len(self.totals) > self.closed else self.closed_total(calendar)
        else:
            used = self.closed_total(calendar)
        if need <= used:  # reached in closed segment `index`: totals[index] < need <= totals[index + 1]
            index = bisect_left(self.totals, need) - 1
            result: int | None = calendar.locate(self.begins[index] + need - self.totals[index])
        elif self.closed < len(self.marks):  # projected along the open segment
            start = self.marks[-1][0]
            if self.open_from is None:
                self.open_from = calendar.position(start)
            left = need - used
            result = start if left <= 0 else calendar.locate(self.open_from + left)
        else:
            result = None
        self.instants[need] = result
        return result

    def next_alarm(self) -> int | None:
        """Epoch second of the first pending alarm (the cycle is running and counted): alarms are in
        consumption order, so their instants are in time order."""
        if self.wake is _UNKNOWN:
            if self.pending:
                calendar = self.calendar
                assert calendar is not None
                # Asking for the last alarm too keeps a clock that runs past the calendar's years an
                # error, as when every pending alarm was asked for: the last fails if any does.
                self.instant(calendar, self.pending[-1][2])
                self.wake = self.instant(calendar, self.pending[0][2])
            else:
                self.wake = None
        return self.wake


class _Lane:
    """One metric of a policy, as the replay asks about it on every update: its Metric's answers
    read once per policy (attribute reads and calls on the policy's Python objects are most of
    what a compiled replay would otherwise spend its time on)."""

    def __init__(self, metric: Metric, index: int) -> None:
        self.metric, self.name, self.index, self.bit = metric, metric.name, index, 1 << index
        self.status_only: bool = metric.status_only
        self.starts_on_created: bool = metric.starts_on_created
        self.starts_on_reply: bool = metric.starts_on_reply
        self.stops_on_reply: bool = metric.stops_on_reply
        self.listens = self.starts_on_reply or self.stops_on_reply  # a reply can start or stop it
        self.always_applies = metric.applies_when is None
        self.once, self.repeat = metric.cycles == "once", metric.cycles == "repeat"
        self.on_reopen = metric.on_reopen
        self.by_status: dict[str, Judgement] = {}
        self.schedules: dict[int, Alarms] = {}  # id(target) -> its schedule (the targets live as long as the policy)

    def judge_status(self, status: str) -> Judgement:
        found = self.by_status.get(status)
        if found is None:
            found = self.by_status[status] = self.metric.judge_status(status)
        return found

    def schedule(self, target: Target) -> Alarms:
        found = self.schedules.get(id(target))
        if found is None:
            found = self.schedules[id(target)] = self.metric.schedule(target)
        return found


class _PolicyView:
    """What the replay reads of a policy, gathered once per policy (see _view)."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy  # also keeps the ids below from being reused while the view is cached
        self.lanes = [_Lane(metric, index) for index, metric in enumerate(policy.metrics.values())]
        self.listeners = [lane for lane in self.lanes if lane.listens]
        self.readers: dict[str, int] = dict(policy.readers)
        self.match_reads: frozenset[str] = policy.match_reads
        self.levels: tuple[str, ...] = policy.levels
        # The policy's calendars are this module's TimeCalendar: when compiled, policy.py's `.calendar`
        # is the compiled calendar module too (ticketbridge.compiled adopts both or neither), though
        # mypy, checking the build, sees two modules; the cast checks it at run time there.
        self.calendars: dict[str, TimeCalendar] = {
            name: cast(TimeCalendar, calendar) for name, calendar in policy.calendars.items()}
        self.status_changes: dict[tuple[str, str], int] = {}
        # id(spec) -> per lane: level -> target
        self.targets: dict[int, list[dict[str, Target]]] = {
            id(spec): [dict(spec.targets.get(lane.name) or {}) for lane in self.lanes] for spec in policy.policies}

    def status_change_readers(self, before: str, after: str) -> int:
        key = (before, after)
        found = self.status_changes.get(key)
        if found is None:
            found = self.status_changes[key] = self.policy.status_change_readers(before, after)
        return found

    def target(self, spec: PolicySpec, lane: _Lane, severity: str | None) -> Target | None:
        by_level = self.targets.get(id(spec))
        if by_level is None:  # not one of the policy's own specs
            return spec.target(lane.name, severity)
        return by_level[lane.index].get(severity or "")


_VIEWS: dict[int, _PolicyView] = {}  # id(policy) -> its view, for the few policies in use


def _view(policy: Policy) -> _PolicyView:
    found = _VIEWS.get(id(policy))
    if found is None or found.policy is not policy:
        if len(_VIEWS) >= 16:  # policies are reloaded now and then: keep the recent ones
            _VIEWS.clear()
        found = _VIEWS[id(policy)] = _PolicyView(policy)
    return found


class _Replay:
    def __init__(self, policy: Policy, tracker_type: str, now: datetime, *, thorough: bool = False,
                 explain: bool = True) -> None:
        self.policy, self.tracker_type, self.now = policy, tracker_type, now
        # The `why` lines cost a tenth of a replay; bulk recomputation asks for them only on demand.
        self.explain = explain
        # Thorough: look at every metric on every update and skip no calendar question, as a full
        # recomputation does (for a ticket that reaches outside the calendars' years; see compute_clocks).
        self.thorough = thorough
        self.view = _view(policy)
        self.statuses = policy.status_categories.get(tracker_type, {})
        self.cycles: dict[str, list[_Cycle]] = {name: [] for name in policy.metrics}
        self.lanes = tuple(self.cycles.values())  # the same lists, in metric order (Policy.lanes)
        self.created = False
        self.status = "open"
        self.tags: tuple[str, ...] = ()
        self.fields: dict[str, Any] = {}
        self.severity: str | None = None
        self.flags: tuple[str, ...] = ()
        self.spec: PolicySpec | None = None
        self.rejected: list[HistoryEvent] = []
        self.events: list[ClockEvent] = []
        # Most updates change nothing a metric's rules look at (a reply, the same status again), and
        # the facts keep coming back to the same few states. So an update concerns a metric only when
        # a fact its conditions read changes, its live clock may need a new target, a reply it listens
        # to comes in or its running clock reaches a threshold (sets of metrics are bit masks, see
        # Policy.readers); the policy is matched again only when a fact its conditions read changes;
        # a metric whose conditions read only the status is judged by status (Metric.judge_status),
        # the others once per state of the facts they read (see judgement); and a metric steps only
        # when its judgement, its live clock's target or a reply says so.
        self.tags_changes = self.fields_changes = 0
        self.judged: dict[tuple[Any, ...], Judgement] = {}
        self.settled: list[Judgement | None] = [None] * len(policy.metrics)  # what each metric last stepped on
        self.next_wake: Any = _UNKNOWN  # epoch second of the earliest pending alarm of a running clock
        self.moments: dict[int, datetime] = {}
        self.stamps: dict[int, str] = {}
        self.days: dict[int, str] = {}

    def facts(self) -> dict[str, Any]:
        return {**self.fields, "tags": self.tags, "severity": self.severity, "status": self.status}

    def moment(self, t: int) -> datetime:
        """Epoch seconds as an aware UTC datetime (the few instants of a ticket, converted once)."""
        found = self.moments.get(t)
        if found is None:
            try:  # the same instant as _EPOCH + timedelta(seconds=t), at a fraction of its cost
                found = datetime.fromtimestamp(t, UTC)
            except (OverflowError, OSError, ValueError):
                found = _EPOCH + timedelta(seconds=t)  # outside what the platform converts: as before
            self.moments[t] = found
        return found

    def maybe(self, t: int | None) -> datetime | None:
        return None if t is None else self.moment(t)

    def stamp(self, t: int) -> str:
        """_iso of any instant within epoch second t, once per second: an update's instant is quoted
        on every clock it changes. A UTC day has 86400 seconds, so the text is the day's (worked out
        once per day) and the time of day."""
        found = self.stamps.get(t)
        if found is None:
            day, second = divmod(t, 86400)
            date = self.days.get(day)
            if date is None:
                date = self.days[day] = _iso(self.moment(day * 86400))[:-9]  # "YYYY-MM-DDT"
            hour, second = divmod(second, 3600)
            found = self.stamps[t] = "%s%02d:%02d:%02dZ" % (date, hour, second // 60, second % 60)  # noqa: UP031
        return found

    def live(self) -> list[_Cycle]:
        return [cycles[-1] for cycles in self.lanes if cycles and cycles[-1].status in ACTIVE]

    def note(self, line: str) -> None:
        """A ticket-level happening, explained on every live clock."""
        for cycle in self.live():
            cycle.why.append(line)

    # -- the updates --

    def run(self, timeline: Sequence[tuple[datetime, Any, HistoryEvent]]) -> TicketSla:
        statuses, fields = self.statuses, self.fields
        for at, group in groupby(timeline, key=_AT):
            events = list(group)
            for batch in _updates(events) if len(events) > 1 and not self.created else (events,):
                fraction = at.microsecond
                t = (at - _EPOCH) // _SECOND if fraction else int(at.timestamp())  # _epoch, inlined
                wake = self.next_wake
                if wake is _UNKNOWN:
                    wake = self.next_wake = self.earliest_alarm()
                # An alarm due at second `wake` falls before `at` if it is earlier, or the same second
                # when `at` has a fraction.
                if wake is not None and (wake < t or (wake == t and fraction)):
                    self.fire_timers(t if fraction else t - 1)
                # The update's changes.
                reply = False
                status_before, severity_before = self.status, self.severity
                changed: list[str] = []  # the tags and fields it changed
                for _, _, event in batch:  # in seq order
                    kind = event.kind
                    if kind == "comment":
                        if event.public and event.by_agent:  # only a human agent's public reply (see _effective)
                            reply = True
                    elif kind == "status":
                        value = event.value
                        status = statuses.get(value) if type(value) is str else None
                        self.status = status if status is not None else self.policy.category(self.tracker_type, value)
                    elif kind == "created":
                        self.created = True
                    elif kind == "tags":
                        self.tags = tuple(event.value or ())
                        self.tags_changes += 1
                        changed.append("tags")
                    elif kind == "field":
                        name = event.field
                        if name:
                            fields[name] = event.value
                            self.fields_changes += 1
                            changed.append(name)
                    elif kind == "severity":
                        self.change_severity(event)
                if not self.created:
                    continue
                if self.severity is None:
                    self.derive_initial()
                if (self.status == status_before and self.severity == severity_before and not changed and not reply
                        and self.spec is not None and self.next_wake is not _UNKNOWN
                        and (self.next_wake is None or self.next_wake > t) and not self.thorough):
                    continue  # quiet: nothing changed, no reply, no running clock reaches a threshold now
                self.react(at, t, status_before, severity_before, changed, reply)
        now = _epoch(self.now)
        self.fire_timers(now)  # up to `now` itself
        return self.result(now)

    def react(self, at: datetime, t: int, status_before: str, severity_before: str | None, changed: list[str],
              reply: bool) -> None:
        """Step the metrics an update concerns. The others are quiet: nothing their conditions read
        changed (so they judge as at their last step), their live clock keeps its target, no reply
        can act on them, and their running clock reaches no threshold now."""
        policy, view, lanes, status, severity = self.policy, self.view, self.lanes, self.status, self.severity
        assert severity is not None
        status_changed, severity_changed = status != status_before, severity != severity_before
        old = self.spec
        reads = view.match_reads
        if old is None or (status_changed and "status" in reads) or (severity_changed and "severity" in reads) or (
                changed and not reads.isdisjoint(changed)):
            spec = policy.match(self.facts())
            if old is not None and spec.id != old.id and self.explain:
                self.note(f"{self.stamp(t)} policy {old.id} -> {spec.id} (matches: {spec.when})")
            self.spec = spec
        else:
            spec = old
        if old is None or self.thorough:
            concerned = (1 << len(lanes)) - 1  # bit mask
        else:
            concerned = view.status_change_readers(status_before, status) if status_changed else 0
            if severity_changed:
                concerned |= view.readers.get("severity", 0)
            for name in changed:
                concerned |= view.readers.get(name, 0)
            retarget = severity_changed or spec is not old  # live clocks may get another target
            wake = self.next_wake
            due = wake is _UNKNOWN or (wake is not None and wake <= t)  # a running clock may reach a threshold
            if retarget or due:
                for lane in view.lanes:
                    cycles = lanes[lane.index]
                    # Live ones on a re-target (which includes the running ones), else the running ones.
                    if cycles and (cycles[-1].status in ACTIVE if retarget else cycles[-1].status == "running"):
                        concerned |= lane.bit
            if reply:  # it can stop a live clock or start one
                for lane in view.listeners:
                    cycles = lanes[lane.index]
                    if lane.starts_on_reply or (cycles and cycles[-1].status in ACTIVE):
                        concerned |= lane.bit
        while concerned:  # each set bit, in metric order
            bit = concerned & -concerned
            concerned ^= bit
            index = bit.bit_length() - 1
            lane = view.lanes[index]
            cycles = lanes[index]
            live = cycles[-1] if cycles and cycles[-1].status in ACTIVE else None
            judged = lane.judge_status(status) if lane.status_only else self.judgement(index)
            target = view.target(spec, lane, severity)
            if (judged != self.settled[index]
                    or (live and ((target is not live.target and target != live.target) or spec.id != live.policy_id
                                  or severity != live.severity))
                    or (reply and judged[0] and (lane.starts_on_reply or (live and lane.stops_on_reply)))):
                self.settled[index] = judged
                self.step(lane, cycles, target, judged, at, t, reply)
            elif live and live.status == "running":
                # Stepping again would decide exactly what the last step decided: it stopped,
                # reopened, started, paused and re-targeted on this very judgement and target, and a
                # reply can neither stop a clock that is not live nor start one for this metric.
                # Only time has moved: the running clock may reach a threshold exactly now (a paused
                # one has consumed nothing since its passed thresholds were caught).
                self.catch_up(live, at, t, strict=False)

    def judgement(self, index: int) -> Judgement:
        """The metric's judgement of the facts as they are now, once per state of the facts it reads:
        keyed by the status and severity if it reads them, and by how many times tags or fields
        have changed if it reads those."""
        metric = self.view.lanes[index].metric
        reads = metric.reads
        key = (index, self.status if "status" in reads else None, self.severity if "severity" in reads else None,
               self.tags_changes if "tags" in reads else None,
               self.fields_changes if not reads <= {"status", "severity", "tags"} else None)
        found = self.judged.get(key)
        if found is None:
            found = self.judged[key] = metric.judge(self.facts())
        return found

    def change_severity(self, event: HistoryEvent) -> None:
        level, old = event.value, self.severity
        # The first level is taken as given; every later one goes through the ratchet.
        accepted = level in self.policy.levels if old is None else self.policy.may_change(old, level, event.source)
        if accepted:
            self.severity, self.flags = level, tuple(event.flags)
            if old is not None and old != level and self.explain:
                self.note(f"{self.stamp(_epoch(event.at))} severity {old} -> {level} by {event.source or 'unknown'}; "
                          "target replayed from started_at")
            return
        self.rejected.append(event)
        if not self.explain:
            return
        allowed = ", ".join(self.policy.lower_sources) or "nobody"
        self.note(f"{self.stamp(_epoch(event.at))} severity {level} from {event.source or 'unknown'} refused "
                  f"(only {allowed} may lower {old})")

    def derive_initial(self) -> None:
        text = f"{self.fields.get('subject') or ''}\n{self.fields.get('description') or ''}"
        derived = self.policy.derive_severity(self.fields, text)
        self.severity, self.flags = derived.level, derived.flags

    # -- timers --

    def earliest_alarm(self) -> int | None:
        earliest = None
        for cycles in self.lanes:
            if cycles:
                cycle = cycles[-1]
                if cycle.status == "running" and cycle.target is not None:
                    first = cycle.wake if cycle.wake is not _UNKNOWN else cycle.next_alarm()
                    if first is not None and (earliest is None or first < earliest):
                        earliest = first
        return earliest

    def fire_timers(self, until: int) -> None:
        """Alarms of running clocks due by epoch second `until` fire at their own instant."""
        for cycles in self.lanes:
            cycle = cycles[-1] if cycles else None
            if cycle is None or cycle.status != "running" or cycle.target is None:
                continue
            first = cycle.next_alarm()
            if first is None or first > until:
                continue  # alarms come in instant order: none is due yet
            for label, kind, need in cycle.pending:
                at = cycle.instant(cycle.calendar, need)  # type: ignore[arg-type]
                if at is not None and at <= until:
                    self.fire(cycle, label, kind, need, self.moment(at), at)

    def fire(self, cycle: _Cycle, label: str, kind: str, need: int, recorded: datetime, t: int) -> None:
        target, calendar = cycle.target, cycle.calendar
        assert target is not None and calendar is not None
        cycle.mark_fired(label)
        self.next_wake = _UNKNOWN
        if kind == "breach":
            # Nominally the clock breached at due; grace only delays raising it.
            due = cycle.instant(calendar, target.seconds)
            nominal = self.maybe(due)
            cycle.breached = True
            cycle.breach_nominal_at, cycle.breach_recorded_at = nominal, recorded
            if self.explain:
                cycle.why.append(f"{self.stamp(t)} breached (due {'-' if due is None else self.stamp(due)})")
        else:
            nominal = self.maybe(cycle.instant(calendar, need))
        self.events.append(_frozen(ClockEvent, {
            "kind": kind, "metric": cycle.lane.name, "cycle": cycle.number, "nominal_at": nominal,
            "recorded_at": recorded, "threshold": label, "detail": ""}))

    def catch_up(self, cycle: _Cycle, at: datetime, t: int, *, strict: bool) -> None:
        """Thresholds already passed at `at` (after a re-target) fire now, recorded at `at`."""
        if cycle.target is None or (not cycle.pending and not self.thorough):
            return
        if cycle.status == "running" and cycle.wake is not _UNKNOWN and (cycle.wake is None or cycle.wake > t) and (
                cycle.wake is not None or not self.thorough):
            # A running clock's alarm has passed exactly when its instant has: none has, and the
            # timers already asked the calendar all this would (`at` is before the instant, so inside
            # the calendar's years).
            return
        consumed = cycle.consumed(cycle.calendar, at, t)  # type: ignore[arg-type]
        if not cycle.pending or cycle.pending[0][2] > consumed or (strict and cycle.pending[0][2] == consumed):
            return  # the earliest has not passed, so none has
        passed = [a for a in cycle.pending if (a[2] < consumed if strict else a[2] <= consumed)]
        breach = any(kind == "breach" for _, kind, _ in passed)
        for label, kind, need in passed:
            if breach and kind == "warning":
                cycle.mark_fired(label)  # overtaken by the breach raised at the same instant
                self.next_wake = _UNKNOWN
            else:
                self.fire(cycle, label, kind, need, at, t)

    # -- one metric --

    def step(self, lane: _Lane, cycles: list[_Cycle], target: Target | None, judged: Judgement, at: datetime,
             t: int, agent_reply: bool) -> None:
        self.next_wake = _UNKNOWN  # the clock may change
        applies, stop_state, starts, pause = judged
        current = cycles[-1] if cycles else None
        if current is not None and current.status in ACTIVE and (
                target is not current.target or self.severity != current.severity
                or self.spec is None or self.spec.id != current.policy_id):
            self.retarget(current, target, at, t)
        if not applies:
            if current is not None and current.status in ACTIVE:
                current.close(at, t)
                current.status = "cancelled"
                if self.explain:
                    current.why.append(f"{self.stamp(t)} cancelled: no longer {lane.metric.applies_when}")
            return
        stop_reply = agent_reply and lane.stops_on_reply
        if current is not None and current.status in ACTIVE and (stop_state or stop_reply):
            self.stop(current, at, t, str(stop_state or "agent_public_comment"), reopenable=stop_state is not None)
        elif (current is not None and current.status == "stopped" and current.reopenable and stop_state is None
              and lane.once):
            current = self.reopen(lane, current, target, at, t)
        if stop_state is None and (
                current is None or current.status == "cancelled"
                or (current.status == "stopped" and lane.repeat)) and (
                lane.starts_on_created or (agent_reply and lane.starts_on_reply) or starts):
            current = self.new_cycle(lane, target, at, t, len(cycles) + 1)
        if current is not None and current.status in ACTIVE:
            # Pause or resume.
            if current.status == "running" and pause is not None:
                current.close(at, t)
                current.status = "paused"
                if self.explain:
                    current.why.append(f"{self.stamp(t)} paused ({pause})")
            elif current.status == "paused" and pause is None:
                current.open(at, t)
                current.status = "running"
                if self.explain:
                    current.why.append(f"{self.stamp(t)} resumed")
            self.catch_up(current, at, t, strict=False)

    def new_cycle(self, lane: _Lane, target: Target | None, at: datetime, t: int, number: int) -> _Cycle:
        assert self.spec is not None and self.severity is not None
        calendar = None if target is None else self.view.calendars[target.calendar]
        cycle = _Cycle(lane, number, at, t, target, calendar, self.spec.id, self.severity)
        if self.explain:
            cycle.why.append(f"{self.stamp(t)} started")
        self.lanes[lane.index].append(cycle)
        return cycle

    def retarget(self, cycle: _Cycle, target: Target | None, at: datetime, t: int) -> None:
        """A severity or policy change: same started_at and pauses, new target and calendar."""
        spec, severity = self.spec, self.severity
        assert spec is not None and severity is not None
        if (target, spec.id, severity) == (cycle.target, cycle.policy_id, cycle.severity):
            return
        old_due, old_policy = self.due(cycle), cycle.policy_id
        reason = f"{cycle.severity}->{severity}" if severity != cycle.severity else f"{cycle.policy_id}->{spec.id}"
        cycle.target, cycle.policy_id, cycle.severity = target, spec.id, severity
        if target is not None:
            cycle.shown, cycle.calendar = target, self.view.calendars[target.calendar]
        cycle.retargeted()
        new_due = self.due(cycle)
        if spec.id != old_policy and cycle.shown is not None:  # hidden clocks stay quiet
            self.events.append(_frozen(ClockEvent, {
                "kind": "policy_changed", "metric": cycle.lane.name, "cycle": cycle.number,
                "nominal_at": self.maybe(new_due), "recorded_at": at, "threshold": f"{old_policy}->{spec.id}",
                "detail": ""}))
        if target is None:
            if self.explain:
                cycle.why.append(f"{self.stamp(t)} policy {spec.id} has no {cycle.lane.name} target for "
                                 f"{severity}: not counted")
            return
        if new_due != old_due and new_due is not None:
            change = (f"due {self.stamp(old_due)} -> {self.stamp(new_due)}" if old_due is not None
                      else f"due {self.stamp(new_due)}")
            self.events.append(_frozen(ClockEvent, {
                "kind": "deadline_changed", "metric": cycle.lane.name, "cycle": cycle.number,
                "nominal_at": self.moment(new_due), "recorded_at": at, "threshold": reason, "detail": change}))
            if self.explain:
                cycle.why.append(f"{self.stamp(t)} {change} ({reason}, {target})")

    def stop(self, cycle: _Cycle, at: datetime, t: int, reason: str, *, reopenable: bool) -> None:
        cycle.close(at, t)
        cycle.status, cycle.stopped_at, cycle.reopenable = "stopped", at, reopenable
        target = cycle.target
        if target is not None:
            consumed = cycle.consumed(cycle.calendar, at, t)  # type: ignore[arg-type]
            if consumed > target.seconds + target.grace and not cycle.breached:
                # Only a re-target in this same update gets here; timers caught the rest.
                self.catch_up(cycle, at, t, strict=True)
            # A stop exactly at due is met: timers at an instant run after that instant's update.
            cycle.outcome = ("breached" if cycle.breached else "met" if consumed <= target.seconds
                             else "met_within_grace")
        if self.explain:
            cycle.why.append(f"{self.stamp(t)} stopped ({reason}): {cycle.outcome or 'no target'}")

    def reopen(self, lane: _Lane, cycle: _Cycle, target: Target | None, at: datetime, t: int) -> _Cycle:
        cycle.reopenable = False
        if lane.on_reopen == "resume":
            cycle.status, cycle.stopped_at, cycle.outcome = "running", None, None
            cycle.open(at, t)
            if self.explain:
                cycle.why.append(f"{self.stamp(t)} reopened: resumed with the time already used (breach kept)")
            self.retarget(cycle, target, at, t)
            return cycle
        if lane.on_reopen == "restart":
            if self.explain:
                cycle.why.append(f"{self.stamp(t)} reopened: a new cycle starts from zero")
            return self.new_cycle(lane, target, at, t, cycle.number + 1)
        if self.explain:
            cycle.why.append(f"{self.stamp(t)} reopened: stays stopped (on_reopen: ignore)")
        return cycle

    def due(self, cycle: _Cycle) -> int | None:
        """Epoch second of the running cycle's due instant."""
        if cycle.status != "running" or cycle.target is None:
            return None
        return cycle.instant(cycle.calendar, cycle.target.seconds)  # type: ignore[arg-type]

    # -- result --

    def clock(self, cycle: _Cycle, now: int) -> Clock:
        target, calendar = cycle.target or cycle.shown, cycle.calendar
        assert target is not None and calendar is not None
        # A live clock whose level has no target (a downgrade to a level without one) shows as
        # cancelled; it keeps tracking, so raising the level again brings it back.
        status = "cancelled" if cycle.status in ACTIVE and cycle.target is None else cycle.status
        consumed = cycle.consumed(calendar, self.now, now)
        alarms = []
        for label, kind, need in cycle.lane.schedule(target):
            at = cycle.instant(calendar, need)
            if at is not None and (status == "running" or need <= consumed):
                alarms.append(_frozen(Alarm, {"kind": kind, "threshold": label, "at": self.moment(at)}))
        if self.explain:
            spec = self.policy.policy_by_id[cycle.policy_id]
            why: tuple[str, ...] = (f"policy {spec.id} (matches: {spec.when})", f"target {cycle.severity}: {target}",
                                    *cycle.why)
        else:
            why = ()
        return _frozen(Clock, {
            "metric": cycle.lane.name, "cycle": cycle.number, "policy_id": cycle.policy_id,
            "severity": cycle.severity, "target_seconds": target.seconds, "target_kind": target.kind,
            "calendar": target.calendar, "status": status, "breached": cycle.breached,
            "started_at": cycle.started_at, "stopped_at": cycle.stopped_at, "segments": tuple(cycle.segments),
            "consumed": consumed, "remaining": target.seconds - consumed,
            "due_at": self.maybe(cycle.instant(calendar, target.seconds)) if status == "running" else None,
            "breach_nominal_at": cycle.breach_nominal_at, "breach_recorded_at": cycle.breach_recorded_at,
            "outcome": cycle.outcome, "alarms": tuple(alarms), "why": why})

    def pending(self, lane: _Lane, applies: bool) -> Clock | None:
        """A clock the ticket will have once its start condition holds (e.g. rca before mitigation)."""
        assert self.spec is not None
        metric = lane.metric
        target = self.view.target(self.spec, lane, self.severity)
        if target is None or not applies:
            return None
        return _frozen(Clock, {
            "metric": metric.name, "cycle": 1, "policy_id": self.spec.id, "severity": self.severity or "",
            "target_seconds": target.seconds, "target_kind": target.kind, "calendar": target.calendar,
            "status": "pending_start", "breached": False, "started_at": None, "stopped_at": None, "segments": (),
            "consumed": 0, "remaining": target.seconds, "due_at": None, "breach_nominal_at": None,
            "breach_recorded_at": None, "outcome": None, "alarms": (),
            "why": (f"policy {self.spec.id} (matches: {self.spec.when})", f"target {self.severity}: {target}",
                    f"waiting for: {metric.waiting_for}") if self.explain else ()})

    def result(self, now: int) -> TicketSla:
        if self.spec is None:  # no "created" event yet: nothing to measure
            return TicketSla(self.severity or "", self.flags, "", (), tuple(self.rejected), None, ())
        clocks: list[Clock] = []
        for lane, cycles in zip(self.view.lanes, self.lanes, strict=True):
            for cycle in cycles:
                if cycle.shown is not None:
                    clocks.append(self.clock(cycle, now))
            if not cycles:
                applies = lane.always_applies or (
                    lane.judge_status(self.status) if lane.status_only else self.judgement(lane.index))[0]
                pending = self.pending(lane, applies)
                if pending is not None:
                    clocks.append(pending)
        upcoming = [alarm.at for clock in clocks if clock.status == "running"
                    for alarm in clock.alarms if alarm.at > self.now]
        events = sorted(self.events, key=lambda e: (e.recorded_at, e.nominal_at or e.recorded_at))
        return _frozen(TicketSla, {
            "severity": self.severity or "", "flags": self.flags, "policy_id": self.spec.id, "clocks": tuple(clocks),
            "severity_rejected": tuple(self.rejected), "next_fire_at": min(upcoming, default=None),
            "events": tuple(events)})


def _aware(moment: datetime, what: str) -> datetime:
    if not isinstance(moment, datetime) or moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} must be an aware datetime (UTC), got {moment!r}")
    return moment.astimezone(UTC)


_WHEN = itemgetter(0, 1)
_AT = itemgetter(0)
_KINDS = ("status", "severity", "created", "tags")  # always effective (see _effective)


def _effective(event: HistoryEvent) -> bool:
    """Whether the event can change anything. A comment other than a human agent's public reply, a
    field event without a field name or an unknown kind cannot, and is left out of the replay: an
    update made only of such events changes no fact and stops or starts nothing, so all it does is
    let thresholds reached exactly at its instant fire then, recorded at that instant, which the
    timers of the next update (or the final ones at `now`) do for them just as well.

    Only a human agent's public reply counts; the caller passes by_agent=False for our own SLA
    writes, mirrored comments and bots."""
    kind = event.kind
    if kind == "comment":
        return bool(event.public and event.by_agent)
    if kind == "field":
        return bool(event.field)
    return kind in _KINDS


def compute_clocks(policy: Policy, tracker_type: str, events: Sequence[HistoryEvent], now: datetime, *,
                   explain: bool = True) -> TicketSla:
    """Every SLA clock of one ticket at `now`, rebuilt from its history.

    `tracker_type` picks the status-category table (zendesk, jira, ...). Events after `now` are
    ignored. Raises ValueError for naive instants and CalendarError for a clock that runs past the
    materialised holiday years. `explain=False` leaves every Clock.why empty (bulk recomputation).
    """
    now = _aware(now, "now")
    timeline = _timeline(events, now, everything=False)
    start, end = policy.horizon
    if (timeline and _epoch(timeline[0][0]) < start) or _epoch(now) > end:
        # The ticket reaches outside a calendar's years. The replay's shortcuts skip calendar
        # questions whose answers cannot matter, but here an answer may be the CalendarError; so
        # replay every update and ask everything, in the order a full recomputation does.
        return _Replay(policy, tracker_type, now, thorough=True, explain=explain).run(
            _timeline(events, now, everything=True))
    return _Replay(policy, tracker_type, now, explain=explain).run(timeline)


def _updates(batch: list[tuple[datetime, Any, HistoryEvent]]) -> list[list[tuple[datetime, Any, HistoryEvent]]]:
    """The updates of one source instant: all its events together, except that a ticket's creation
    comes first on its own. Trackers stamp in whole seconds, so a reply posted in the ticket's
    first second shares its timestamp, yet it answers a ticket that already exists."""
    if any(e.kind == "created" for _, _, e in batch):
        first = [item for item in batch if item[2].kind != "comment"]
        rest = [item for item in batch if item[2].kind == "comment"]
        return [part for part in (first, rest) if part]
    return [batch]


def _timeline(events: Sequence[HistoryEvent], now: datetime, *, everything: bool) -> list[
        tuple[datetime, Any, HistoryEvent]]:
    """(UTC instant, seq, event) of the events up to `now` (only the effective ones unless
    `everything`), in replay order: one update per source instant, its events in seq order."""
    timeline = []
    for event in events:
        at = event.at
        if type(at) is not datetime or at.tzinfo is not UTC:  # UTC ones are aware and need no conversion
            at = _aware(at, f"event {event.kind} at")
        if at <= now and (everything or event.kind in _KINDS or _effective(event)):
            timeline.append((at, event.seq, event))
    timeline.sort(key=_WHEN)
    return timeline


# The compiled build of this module, when it is built from the current sources (ticketbridge.compiled).
IMPLEMENTATION = adopt(globals())
