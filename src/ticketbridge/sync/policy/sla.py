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
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import groupby
from typing import Any

from .calendar import TimeCalendar
from .policy import Metric, Policy, PolicySpec, Target

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


@dataclass(frozen=True)
class Alarm:
    kind: str  # warning | breach
    threshold: str  # "80%", "-30m"; "due" for the breach
    at: datetime  # when it fires on the current schedule (a breach: due + grace)


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
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else "-"


def _schedule(metric: Metric, target: Target) -> list[tuple[str, str, int]]:
    """(label, kind, consumed seconds) of every alarm of a cycle, earliest first."""
    alarms: dict[str, tuple[str, str, int]] = {}
    for threshold in metric.warn:
        at = threshold.consumed_at(target.seconds)
        if at is not None:
            alarms.setdefault(threshold.label, (threshold.label, "warning", at))
    alarms["due"] = ("due", "breach", target.seconds + target.grace)
    return sorted(alarms.values(), key=lambda a: a[2])


# --- replay ---------------------------------------------------------------------------------------

@dataclass
class _Cycle:
    metric: Metric
    number: int
    started_at: datetime
    target: Target | None  # None: the current level has no target (tracked, not counted)
    shown: Target | None  # the last target it had, for display
    policy_id: str
    severity: str
    segments: list[Segment]
    status: str = "running"
    stopped_at: datetime | None = None
    reopenable: bool = False  # stopped by a condition that can stop holding again
    breached: bool = False
    breach_nominal_at: datetime | None = None
    breach_recorded_at: datetime | None = None
    outcome: str | None = None
    fired: set[str] = field(default_factory=set)
    why: list[str] = field(default_factory=list)


class _Replay:
    def __init__(self, policy: Policy, tracker_type: str, now: datetime) -> None:
        self.policy, self.tracker_type, self.now = policy, tracker_type, now
        self.cycles: dict[str, list[_Cycle]] = {name: [] for name in policy.metrics}
        self.created = False
        self.status = "open"
        self.tags: tuple[str, ...] = ()
        self.fields: dict[str, Any] = {}
        self.severity: str | None = None
        self.flags: tuple[str, ...] = ()
        self.spec: PolicySpec | None = None
        self.rejected: list[HistoryEvent] = []
        self.events: list[ClockEvent] = []

    def facts(self) -> dict[str, Any]:
        return {**self.fields, "tags": self.tags, "severity": self.severity, "status": self.status}

    def calendar(self, target: Target) -> TimeCalendar:
        return self.policy.calendars[target.calendar]

    def live(self) -> Iterable[_Cycle]:
        return (c[-1] for c in self.cycles.values() if c and c[-1].status in ACTIVE)

    def note(self, line: str) -> None:
        """A ticket-level happening, explained on every live clock."""
        for cycle in self.live():
            cycle.why.append(line)

    # -- timers --

    def fire_timers(self, until: datetime, *, inclusive: bool) -> None:
        """Alarms of running clocks that fall before `until` (or at it) fire at their own instant."""
        for cycle in self.live():
            if cycle.status != "running" or cycle.target is None:
                continue
            for label, kind, need in _schedule(cycle.metric, cycle.target):
                if label in cycle.fired:
                    continue
                at = instant_of(self.calendar(cycle.target), cycle.segments, need)
                if at is not None and (at < until or (inclusive and at == until)):
                    self.fire(cycle, label, kind, need, at)

    def fire(self, cycle: _Cycle, label: str, kind: str, need: int, recorded: datetime) -> None:
        assert cycle.target is not None
        cycle.fired.add(label)
        calendar = self.calendar(cycle.target)
        if kind == "breach":
            # Nominally the clock breached at due; grace only delays raising it.
            nominal = instant_of(calendar, cycle.segments, cycle.target.seconds)
            cycle.breached = True
            cycle.breach_nominal_at, cycle.breach_recorded_at = nominal, recorded
            cycle.why.append(f"{_iso(recorded)} breached (due {_iso(nominal)})")
        else:
            nominal = instant_of(calendar, cycle.segments, need)
        self.events.append(ClockEvent(kind, cycle.metric.name, cycle.number, nominal, recorded, label))

    def catch_up(self, cycle: _Cycle, at: datetime, *, strict: bool) -> None:
        """Thresholds already passed at `at` (after a re-target) fire now, recorded at `at`."""
        if cycle.target is None:
            return
        consumed = consumed_by(self.calendar(cycle.target), cycle.segments, at)
        passed = [a for a in _schedule(cycle.metric, cycle.target)
                  if a[0] not in cycle.fired and (a[2] < consumed if strict else a[2] <= consumed)]
        breach = any(kind == "breach" for _, kind, _ in passed)
        for label, kind, need in passed:
            if breach and kind == "warning":
                cycle.fired.add(label)  # overtaken by the breach raised at the same instant
            else:
                self.fire(cycle, label, kind, need, at)

    # -- one update --

    def apply(self, at: datetime, batch: Sequence[HistoryEvent]) -> None:
        agent_reply = False
        for event in sorted(batch, key=lambda e: e.seq):
            if event.kind == "created":
                self.created = True
            elif event.kind == "status":
                self.status = self.policy.category(self.tracker_type, event.value)
            elif event.kind == "tags":
                self.tags = tuple(event.value or ())
            elif event.kind == "field" and event.field:
                self.fields[event.field] = event.value
            elif event.kind == "severity":
                self.change_severity(event)
            elif event.kind == "comment":
                # Only a human agent's public reply counts; the caller passes by_agent=False for
                # our own SLA writes, mirrored comments and bots.
                agent_reply = agent_reply or (event.public and event.by_agent)
        if not self.created:
            return
        if self.severity is None:
            self.derive_initial()
        spec = self.policy.match(self.facts())
        if self.spec is not None and spec.id != self.spec.id:
            self.note(f"{_iso(at)} policy {self.spec.id} -> {spec.id} (matches: {spec.when})")
        self.spec = spec
        for metric in self.policy.metrics.values():
            self.step(metric, at, agent_reply)

    def change_severity(self, event: HistoryEvent) -> None:
        level, old = event.value, self.severity
        # The first level is taken as given; every later one goes through the ratchet.
        accepted = level in self.policy.levels if old is None else self.policy.may_change(old, level, event.source)
        if accepted:
            self.severity, self.flags = level, tuple(event.flags)
            if old is not None and old != level:
                self.note(f"{_iso(event.at)} severity {old} -> {level} by {event.source or 'unknown'}; "
                          "target replayed from started_at")
            return
        self.rejected.append(event)
        allowed = ", ".join(self.policy.lower_sources) or "nobody"
        self.note(f"{_iso(event.at)} severity {level} from {event.source or 'unknown'} refused "
                  f"(only {allowed} may lower {old})")

    def derive_initial(self) -> None:
        text = f"{self.fields.get('subject') or ''}\n{self.fields.get('description') or ''}"
        derived = self.policy.derive_severity(self.fields, text)
        self.severity, self.flags = derived.level, derived.flags

    def step(self, metric: Metric, at: datetime, agent_reply: bool) -> None:
        assert self.spec is not None
        cycles = self.cycles[metric.name]
        current = cycles[-1] if cycles else None
        facts = self.facts()
        target = self.spec.target(metric.name, self.severity)
        if current is not None and current.status in ACTIVE:
            self.retarget(current, target, at)
        if metric.applies_when is not None and not metric.applies_when.holds(facts):
            if current is not None and current.status in ACTIVE:
                self.close(current, at)
                current.status = "cancelled"
                current.why.append(f"{_iso(at)} cancelled: no longer {metric.applies_when}")
            return
        stop_state = next((s for s in metric.stop if s.condition and s.condition.holds(facts)), None)
        stop_reply = agent_reply and any(s.event == "agent_public_comment" for s in metric.stop)
        if current is not None and current.status in ACTIVE and (stop_state or stop_reply):
            self.stop(current, at, str(stop_state or "agent_public_comment"), reopenable=stop_state is not None)
        elif (current is not None and current.status == "stopped" and current.reopenable and stop_state is None
              and metric.cycles == "once"):
            current = self.reopen(metric, current, target, at)
        if self.may_start(metric, current) and stop_state is None and self.start_holds(metric, facts, agent_reply):
            current = self.new_cycle(metric, target, at, len(self.cycles[metric.name]) + 1)
        if current is not None and current.status in ACTIVE:
            self.pause_or_resume(metric, current, at, facts)
            self.catch_up(current, at, strict=False)

    def may_start(self, metric: Metric, current: _Cycle | None) -> bool:
        if current is None or current.status == "cancelled":
            return True
        return current.status == "stopped" and metric.cycles == "repeat"

    def start_holds(self, metric: Metric, facts: dict[str, Any], agent_reply: bool) -> bool:
        return any(t.event == "created" or (t.event == "agent_public_comment" and agent_reply)
                   or (t.condition is not None and t.condition.holds(facts)) for t in metric.start)

    def new_cycle(self, metric: Metric, target: Target | None, at: datetime, number: int) -> _Cycle:
        assert self.spec is not None and self.severity is not None
        cycle = _Cycle(metric, number, at, target, target, self.spec.id, self.severity, [(at, None)])
        cycle.why.append(f"{_iso(at)} started")
        self.cycles[metric.name].append(cycle)
        return cycle

    def retarget(self, cycle: _Cycle, target: Target | None, at: datetime) -> None:
        """A severity or policy change: same started_at and pauses, new target and calendar."""
        assert self.spec is not None and self.severity is not None
        if (target, self.spec.id, self.severity) == (cycle.target, cycle.policy_id, cycle.severity):
            return
        old_due, old_policy = self.due(cycle), cycle.policy_id
        reason = (f"{cycle.severity}->{self.severity}" if self.severity != cycle.severity
                  else f"{cycle.policy_id}->{self.spec.id}")
        cycle.target, cycle.policy_id, cycle.severity = target, self.spec.id, self.severity
        cycle.shown = target or cycle.shown
        new_due = self.due(cycle)
        if self.spec.id != old_policy and cycle.shown is not None:  # hidden clocks stay quiet
            self.events.append(ClockEvent("policy_changed", cycle.metric.name, cycle.number, new_due, at,
                                          f"{old_policy}->{self.spec.id}"))
        if target is None:
            cycle.why.append(f"{_iso(at)} policy {self.spec.id} has no {cycle.metric.name} target for "
                             f"{self.severity}: not counted")
            return
        if new_due != old_due and new_due is not None:
            change = f"due {_iso(old_due)} -> {_iso(new_due)}" if old_due else f"due {_iso(new_due)}"
            self.events.append(ClockEvent("deadline_changed", cycle.metric.name, cycle.number, new_due, at, reason,
                                          change))
            cycle.why.append(f"{_iso(at)} {change} ({reason}, {target})")

    def stop(self, cycle: _Cycle, at: datetime, reason: str, *, reopenable: bool) -> None:
        self.close(cycle, at)
        cycle.status, cycle.stopped_at, cycle.reopenable = "stopped", at, reopenable
        if cycle.target is not None:
            consumed = consumed_by(self.calendar(cycle.target), cycle.segments, at)
            if consumed > cycle.target.seconds + cycle.target.grace and not cycle.breached:
                # Only a re-target in this same update gets here; timers caught the rest.
                self.catch_up(cycle, at, strict=True)
            # A stop exactly at due is met: timers at an instant run after that instant's update.
            cycle.outcome = ("breached" if cycle.breached else "met" if consumed <= cycle.target.seconds
                             else "met_within_grace")
        cycle.why.append(f"{_iso(at)} stopped ({reason}): {cycle.outcome or 'no target'}")

    def reopen(self, metric: Metric, cycle: _Cycle, target: Target | None, at: datetime) -> _Cycle:
        cycle.reopenable = False
        if metric.on_reopen == "resume":
            cycle.status, cycle.stopped_at, cycle.outcome = "running", None, None
            cycle.segments.append((at, None))
            cycle.why.append(f"{_iso(at)} reopened: resumed with the time already used (breach kept)")
            self.retarget(cycle, target, at)
            return cycle
        if metric.on_reopen == "restart":
            cycle.why.append(f"{_iso(at)} reopened: a new cycle starts from zero")
            return self.new_cycle(metric, target, at, cycle.number + 1)
        cycle.why.append(f"{_iso(at)} reopened: stays stopped (on_reopen: ignore)")
        return cycle

    def pause_or_resume(self, metric: Metric, cycle: _Cycle, at: datetime, facts: dict[str, Any]) -> None:
        reason = next((c for c in metric.pause if c.holds(facts)), None)
        if cycle.status == "running" and reason is not None:
            self.close(cycle, at)
            cycle.status = "paused"
            cycle.why.append(f"{_iso(at)} paused ({reason})")
        elif cycle.status == "paused" and reason is None:
            cycle.segments.append((at, None))
            cycle.status = "running"
            cycle.why.append(f"{_iso(at)} resumed")

    @staticmethod
    def close(cycle: _Cycle, at: datetime) -> None:
        if cycle.segments and cycle.segments[-1][1] is None:
            start = cycle.segments[-1][0]
            if start >= at:
                cycle.segments.pop()  # started and paused in the same update: no running time
            else:
                cycle.segments[-1] = (start, at)

    def due(self, cycle: _Cycle) -> datetime | None:
        if cycle.status != "running" or cycle.target is None:
            return None
        return instant_of(self.calendar(cycle.target), cycle.segments, cycle.target.seconds)

    # -- result --

    def clock(self, cycle: _Cycle) -> Clock:
        target = cycle.target or cycle.shown
        assert target is not None
        calendar = self.calendar(target)
        # A live clock whose level has no target (a downgrade to a level without one) shows as
        # cancelled; it keeps tracking, so raising the level again brings it back.
        status = "cancelled" if cycle.status in ACTIVE and cycle.target is None else cycle.status
        consumed = consumed_by(calendar, cycle.segments, self.now)
        alarms = []
        for label, kind, need in _schedule(cycle.metric, target):
            at = instant_of(calendar, cycle.segments, need)
            if at is not None and (status == "running" or need <= consumed):
                alarms.append(Alarm(kind, label, at))
        spec = next(p for p in self.policy.policies if p.id == cycle.policy_id)
        why = (f"policy {spec.id} (matches: {spec.when})", f"target {cycle.severity}: {target}", *cycle.why)
        return Clock(
            metric=cycle.metric.name, cycle=cycle.number, policy_id=cycle.policy_id, severity=cycle.severity,
            target_seconds=target.seconds, target_kind=target.kind, calendar=target.calendar, status=status,
            breached=cycle.breached, started_at=cycle.started_at, stopped_at=cycle.stopped_at,
            segments=tuple(cycle.segments), consumed=consumed, remaining=target.seconds - consumed,
            due_at=instant_of(calendar, cycle.segments, target.seconds) if status == "running" else None,
            breach_nominal_at=cycle.breach_nominal_at, breach_recorded_at=cycle.breach_recorded_at,
            outcome=cycle.outcome, alarms=tuple(alarms), why=why,
        )

    def pending(self, metric: Metric) -> Clock | None:
        """A clock the ticket will have once its start condition holds (e.g. rca before mitigation)."""
        assert self.spec is not None
        target = self.spec.target(metric.name, self.severity)
        if target is None or (metric.applies_when is not None and not metric.applies_when.holds(self.facts())):
            return None
        return Clock(
            metric=metric.name, cycle=1, policy_id=self.spec.id, severity=self.severity or "",
            target_seconds=target.seconds, target_kind=target.kind, calendar=target.calendar,
            status="pending_start", breached=False, started_at=None, stopped_at=None, segments=(), consumed=0,
            remaining=target.seconds, due_at=None, breach_nominal_at=None, breach_recorded_at=None, outcome=None,
            alarms=(), why=(f"policy {self.spec.id} (matches: {self.spec.when})", f"target {self.severity}: {target}",
                            f"waiting for: {' or '.join(str(t) for t in metric.start)}"),
        )

    def result(self) -> TicketSla:
        if self.spec is None:  # no "created" event yet: nothing to measure
            return TicketSla(self.severity or "", self.flags, "", (), tuple(self.rejected), None, ())
        clocks: list[Clock] = []
        for metric in self.policy.metrics.values():
            cycles = self.cycles[metric.name]
            clocks += [self.clock(c) for c in cycles if c.shown is not None]
            if not cycles:
                clocks += [c for c in (self.pending(metric),) if c is not None]
        upcoming = [alarm.at for clock in clocks if clock.status == "running"
                    for alarm in clock.alarms if alarm.at > self.now]
        events = sorted(self.events, key=lambda e: (e.recorded_at, e.nominal_at or e.recorded_at))
        return TicketSla(
            severity=self.severity or "", flags=self.flags, policy_id=self.spec.id, clocks=tuple(clocks),
            severity_rejected=tuple(self.rejected), next_fire_at=min(upcoming, default=None), events=tuple(events),
        )


def _aware(moment: datetime, what: str) -> datetime:
    if not isinstance(moment, datetime) or moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} must be an aware datetime (UTC), got {moment!r}")
    return moment.astimezone(UTC)


def compute_clocks(policy: Policy, tracker_type: str, events: Sequence[HistoryEvent], now: datetime) -> TicketSla:
    """Every SLA clock of one ticket at `now`, rebuilt from its history.

    `tracker_type` picks the status-category table (zendesk, jira, ...). Events after `now` are
    ignored. Raises ValueError for naive instants and CalendarError for a clock that runs past the
    materialised holiday years.
    """
    now = _aware(now, "now")
    ordered = sorted((e for e in events if _aware(e.at, f"event {e.kind} at") <= now),
                     key=lambda e: (_aware(e.at, "at"), e.seq))
    replay = _Replay(policy, tracker_type, now)
    for at, batch in groupby(ordered, key=lambda e: _aware(e.at, "at")):
        replay.fire_timers(at, inclusive=False)
        replay.apply(at, list(batch))
    replay.fire_timers(now, inclusive=True)
    return replay.result()
