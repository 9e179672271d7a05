"""SLA policy files: load, validate (schema + semantic checks) and answer questions about the rules.

mappings/policy.yaml says how severe a ticket is (derive rules and the ratchet), which business
calendars exist, what each SLA clock measures (`metrics`: start/stop/pause conditions, warnings,
reopen and cycle behaviour) and which targets apply (`policies`: ordered, first match wins, a
catch-all last). The JSON Schema (ticketbridge/schema/policy.schema.json) checks the shape; the
checks here cover what a schema cannot know: unknown calendars, metrics and levels, durations and
warnings that do not parse, policies that can never match. The clock engine is sla.py.

`fields:` gives tracker fields logical names (support_level -> custom_fields.360004 on Zendesk) so
that metrics and escalation rules read the same on every desk; `escalations:` and `templates:` are
the escalation rules (built and evaluated by escalation.py, checked here with the rest).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import cache, cached_property
from pathlib import Path
from types import MappingProxyType
from typing import Any

import jsonschema

from ..durations import parse_duration
from ..model import iso_utc
from ..yamlsource import (
    ConfigError,
    PathT,
    Problem,
    SourceDoc,
    frozen,
    load_schema,
    read_yaml,
    schema_problems,
    sort_problems,
)
from .calendar import BUILTIN_NAME, CalendarError, TimeCalendar, build_calendar

__all__ = [
    "CATEGORIES",
    "DEFAULT_POLICY",
    "Condition",
    "Derived",
    "Due",
    "Metric",
    "Policy",
    "PolicyInputError",
    "PolicySpec",
    "Target",
    "Threshold",
    "Trigger",
    "check_policy",
    "load_policy",
]

DEFAULT_POLICY = Path("mappings/policy.yaml")
# Status categories the clocks reason about; every tracker status maps onto one of these.
CATEGORIES = ("open", "waiting_customer", "waiting_third_party", "released", "resolved", "closed")
# Things that happen at one instant (as opposed to conditions, which hold for a while).
EVENTS = ("created", "agent_public_comment")
TARGET_KINDS = ("calendar", "business", "business_days")


class PolicyInputError(ValueError):
    """A question the policy cannot answer (unknown level or metric, naive instant, bad pauses)."""


# --- values ---------------------------------------------------------------------------------------

def is_set(value: Any) -> bool:
    """A field "has a value": not missing, not empty, not false (an unticked checkbox)."""
    if value is None or value is False:
        return False
    if isinstance(value, str | list | tuple | dict | set | frozenset):
        return len(value) > 0
    return True


def field_value(facts: Mapping[str, Any], name: str) -> Any:
    """facts[name], or a dotted path into nested mappings (custom_fields.360003)."""
    if name in facts:
        return facts[name]
    if "." not in name:
        return None  # a plain name that is not there
    node: Any = facts
    for part in name.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _same(actual: Any, expected: Any) -> bool:
    # Trackers send numbers and booleans as text at times ("true", "42"); YAML gives real ones.
    if isinstance(expected, bool):
        return actual is expected or (isinstance(actual, str) and actual.strip().lower() == str(expected).lower())
    if actual == expected:
        return True
    return actual is not None and not isinstance(actual, bool) and str(actual) == str(expected)


def _always(facts: Mapping[str, Any]) -> bool:
    return True


@dataclass(frozen=True)
class Condition:
    """A condition on the ticket as it is now; every part given must hold; the empty one always holds."""

    tags_any: tuple[str, ...] = ()
    tags_none: tuple[str, ...] = ()
    severity_in: tuple[str, ...] = ()
    status_in: tuple[str, ...] = ()
    fields: tuple[tuple[str, tuple[Any, ...]], ...] = ()
    field_set: str | None = None

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Condition:
        fields = tuple((name, tuple(v) if isinstance(v, list) else (v,))
                       for name, v in (data.get("fields") or {}).items())
        return cls(tuple(data.get("tags_any") or ()), tuple(data.get("tags_none") or ()),
                   tuple(data.get("severity_in") or ()), tuple(data.get("status_in") or ()),
                   fields, data.get("field_set"))

    @property
    def always(self) -> bool:
        return self == Condition()

    def holds(self, facts: Mapping[str, Any]) -> bool:
        if self.tags_any or self.tags_none:  # most conditions are about status or fields only
            tags = set(facts.get("tags") or ())
            if self.tags_any and tags.isdisjoint(self.tags_any):
                return False
            if not tags.isdisjoint(self.tags_none):
                return False
        if self.severity_in and facts.get("severity") not in self.severity_in:
            return False
        if self.status_in and facts.get("status") not in self.status_in:
            return False
        for name, allowed in self.fields:
            actual = field_value(facts, name)
            # A multi-select field holds a list: it matches when any of its values does.
            values = actual if isinstance(actual, list | tuple | set | frozenset) else (actual,)
            if not any(_same(v, value) for v in values for value in allowed):
                return False
        return self.field_set is None or is_set(field_value(facts, self.field_set))

    @cached_property
    def check(self) -> Callable[[Mapping[str, Any]], bool]:
        """holds(), specialised once for the parts this condition has: most test a single fact, and
        the clock engine asks on every change of the facts."""
        status_in, field_set, tags_any = self.status_in, self.field_set, frozenset(self.tags_any)
        if self == Condition():
            return _always
        if self == Condition(status_in=status_in):
            return lambda facts: facts.get("status") in status_in
        if field_set is not None and self == Condition(field_set=field_set):
            return lambda facts: is_set(field_value(facts, field_set))
        if self == Condition(tags_any=self.tags_any):  # set(tags) and isdisjoint, without building the set
            return lambda facts: not tags_any.isdisjoint(facts.get("tags") or ())
        return self.holds

    def field_names(self) -> tuple[str, ...]:
        return (*(name for name, _ in self.fields), *((self.field_set,) if self.field_set else ()))

    @cached_property
    def reads(self) -> frozenset[str]:
        """The facts whose value can change whether it holds: a field path reads the whole name
        and its first part (field_value tries facts["a.b"], then facts["a"]["b"])."""
        names: set[str] = set()
        if self.tags_any or self.tags_none:
            names.add("tags")
        if self.severity_in:
            names.add("severity")
        if self.status_in:
            names.add("status")
        for name in self.field_names():
            names.update((name, name.split(".")[0]))
        return frozenset(names)

    def __str__(self) -> str:
        return self._text

    @cached_property
    def _text(self) -> str:
        # Every clock's explanation quotes its policy's condition: build the text once.
        parts = [f"{key} [{', '.join(values)}]" for key, values in (
            ("tags_any", self.tags_any), ("tags_none", self.tags_none),
            ("severity_in", self.severity_in), ("status_in", self.status_in)) if values]
        parts += [f"{name} = {' or '.join(map(str, allowed))}" for name, allowed in self.fields]
        if self.field_set:
            parts.append(f"{self.field_set} is set")
        return " and ".join(parts) or "catch-all"


@dataclass(frozen=True)
class Trigger:
    """One entry of a metric's start/stop list: an event name or a condition on the ticket."""

    event: str | None = None
    condition: Condition | None = None

    def __str__(self) -> str:
        return self.event or str(self.condition)


@dataclass(frozen=True)
class Threshold:
    """A warning: `percent` of the target consumed, or `before` seconds left before due."""

    label: str
    percent: int | None = None
    before: int | None = None

    def consumed_at(self, target: int) -> int | None:
        """Consumed seconds at which it fires; None when it cannot fire inside the target
        (a "-30m" warning on a 15-minute target would fire before the clock even started)."""
        at = target * self.percent // 100 if self.percent is not None else target - (self.before or 0)
        return at if 0 < at < target else None


@dataclass(frozen=True)
class Metric:
    """What one SLA clock measures; targets come from the matching policy."""

    name: str
    start: tuple[Trigger, ...]
    stop: tuple[Trigger, ...]
    pause: tuple[Condition, ...] = ()
    applies_when: Condition | None = None
    on_reopen: str = "ignore"  # resume | restart | ignore
    cycles: str = "once"  # once | repeat
    calendar: str | None = None  # overrides the policy's calendar for business targets
    warn: tuple[Threshold, ...] = ()

    # What the clock engine asks on every ticket update, answered once per metric.

    @cached_property
    def starts_on_created(self) -> bool:
        return any(t.event == "created" for t in self.start)

    @cached_property
    def starts_on_reply(self) -> bool:
        return any(t.event == "agent_public_comment" for t in self.start)

    @cached_property
    def stops_on_reply(self) -> bool:
        return any(t.event == "agent_public_comment" for t in self.stop)

    @cached_property
    def start_conditions(self) -> tuple[Condition, ...]:
        return tuple(t.condition for t in self.start if t.condition is not None)

    @cached_property
    def stop_conditions(self) -> tuple[Trigger, ...]:
        """The stop entries that are conditions (a stop by condition can stop holding: a reopen)."""
        return tuple(t for t in self.stop if t.condition is not None)

    def judge(self, facts: Mapping[str, Any]) -> tuple[bool, Trigger | None, bool, Condition | None]:
        """What the ticket's facts say about this clock: whether it applies, the first stop condition
        that holds, whether a start condition holds, the first pause condition that holds."""
        applies = self.applies_when is None or self.applies_when.check(facts)
        stop_state = None
        for trigger in self.stop_conditions:
            if trigger.condition and trigger.condition.check(facts):
                stop_state = trigger
                break
        starts = False
        for condition in self.start_conditions:
            if condition.check(facts):
                starts = True
                break
        pause = None
        for condition in self.pause:
            if condition.check(facts):
                pause = condition
                break
        return applies, stop_state, starts, pause

    @cached_property
    def status_only(self) -> bool:
        """Its conditions read nothing but the status, so judge() depends on the status alone."""
        return self.reads <= {"status"}

    def judge_status(self, status: str) -> tuple[bool, Trigger | None, bool, Condition | None]:
        """judge() for a status_only metric, worked out once per status category."""
        found = self._by_status.get(status)
        if found is None:
            found = self._by_status[status] = self.judge({"status": status})
        return found

    @cached_property
    def _by_status(self) -> dict[str, tuple[bool, Trigger | None, bool, Condition | None]]:
        return {}

    @cached_property
    def reads(self) -> frozenset[str]:
        """The facts its conditions read (see Condition.reads)."""
        conditions = (*self.pause, *self.start_conditions, *(t.condition for t in self.stop_conditions),
                      *((self.applies_when,) if self.applies_when is not None else ()))
        return frozenset(name for c in conditions if c is not None for name in c.reads)

    @cached_property
    def status_sets(self) -> tuple[tuple[str, ...], ...] | None:
        """The status_in lists of its conditions: a status change matters to this clock only if it
        enters or leaves one of them. None when a condition reads the status some other way."""
        conditions = [c for c in (*self.pause, *self.start_conditions, *(t.condition for t in self.stop_conditions),
                                  self.applies_when) if c is not None]
        if any("status" in (name, name.split(".")[0]) for c in conditions for name in c.field_names()):
            return None
        return tuple(c.status_in for c in conditions if c.status_in)

    def status_matters(self, before: str, after: str) -> bool:
        """Whether a status change from `before` to `after` can change what its conditions say."""
        sets = self.status_sets
        if sets is None:
            return True
        return any((before in statuses) != (after in statuses) for statuses in sets)

    @cached_property
    def waiting_for(self) -> str:
        return " or ".join(str(t) for t in self.start)

    def schedule(self, target: Target) -> tuple[tuple[str, str, int], ...]:
        """(label, kind, consumed seconds) of every alarm of a cycle on `target`, earliest first:
        the warnings that fit inside the target, then the breach at target + grace."""
        key = (target.seconds, target.grace)
        found = self._schedules.get(key)
        if found is None:
            alarms: dict[str, tuple[str, str, int]] = {}
            for threshold in self.warn:
                at = threshold.consumed_at(target.seconds)
                if at is not None:
                    alarms.setdefault(threshold.label, (threshold.label, "warning", at))
            alarms["due"] = ("due", "breach", target.seconds + target.grace)
            found = self._schedules[key] = tuple(sorted(alarms.values(), key=lambda a: a[2]))
        return found

    @cached_property
    def _schedules(self) -> dict[tuple[int, int], tuple[tuple[str, str, int], ...]]:
        return {}


@dataclass(frozen=True)
class Target:
    kind: str  # calendar | business | business_days
    seconds: int  # the budget, on `calendar`'s open time
    calendar: str  # resolved calendar name; "calendar" is the built-in 24/7 one
    grace: int = 0  # the breach is raised this much (on the same calendar) after due
    text: str = ""  # as written, for explanations

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class PolicySpec:
    id: str
    when: Condition
    calendar: str
    targets: Mapping[str, Mapping[str, Target]]  # metric -> level -> target

    def target(self, metric: str, level: str | None) -> Target | None:
        return self.targets.get(metric, {}).get(level or "")


@dataclass(frozen=True)
class Derived:
    level: str
    flags: tuple[str, ...]
    rule: str  # which rule decided, for `sla explain`


@dataclass(frozen=True)
class DeriveRule:
    source: str | None = None  # from: field name
    table: Mapping[str, str] = field(default_factory=dict)
    words: tuple[str, ...] = ()
    value: str | None = None  # level given by match_any, or the default
    flags: tuple[str, ...] = ()

    def apply(self, fields: Mapping[str, Any], text: str) -> Derived | None:
        if self.source is not None:
            raw = field_value(fields, self.source)
            if raw is None or isinstance(raw, list | tuple | dict | bool):
                return None
            key = str(raw).strip()
            # Admins type "Sev1"; a tracker may send "sev1": the case is never what they mean.
            level = self.table.get(key) or next(
                (v for k, v in self.table.items() if k.casefold() == key.casefold()), None)
            return Derived(level, self.flags, f"{self.source} = {key}") if level else None
        if self.words:
            folded = text.casefold()
            word = next((w for w in self.words if w.casefold() in folded), None)
            return Derived(str(self.value), self.flags, f"text contains '{word}'") if word else None
        return Derived(str(self.value), self.flags, "default")


@dataclass(frozen=True)
class Due:
    due_at: datetime  # aware UTC
    calendar: TimeCalendar
    target_seconds: int
    kind: str


@dataclass(frozen=True)
class Policy:
    path: str
    version: str  # content hash of the rules and of every calendar's version
    levels: tuple[str, ...]  # most severe first
    calendars: Mapping[str, TimeCalendar]  # always includes "calendar" (24/7)
    default_calendar: str
    status_categories: Mapping[str, Mapping[str, str]]  # tracker type -> status -> category
    sla_fields: Mapping[str, Mapping[str, Any]]  # tracker type -> {first_response_due: field, ...}
    policies: tuple[PolicySpec, ...]
    metrics: Mapping[str, Metric]
    derive: tuple[DeriveRule, ...]
    lower_sources: tuple[str, ...]  # who may lower severity
    watched_fields: tuple[str, ...]  # ticket fields the conditions read (history must record them)
    redaction: Mapping[str, Any] = field(default_factory=dict)  # the `redaction:` block (sync.policy.redact)
    # Logical field name -> tracker type -> native field (`fields:`), e.g. support_level -> zendesk ->
    # custom_fields.360004. History records the logical name, so conditions never see the native one.
    field_aliases: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    escalation: Any = None  # escalation.EscalationRules (`escalations:` and `templates:`)

    def native_field(self, name: str, tracker_type: str) -> str:
        """The tracker's own field behind a logical name; other names are native already."""
        return self.field_aliases.get(name, {}).get(tracker_type, name)

    def derive_severity(self, fields: Mapping[str, Any], text: str) -> Derived:
        """The first derive rule that yields a level; the last rule is always a default."""
        for rule in self.derive:
            found = rule.apply(fields, text)
            if found is not None:
                return found
        return Derived(self.levels[-1], (), "no rule matched")  # unreachable for a checked file

    def rank(self, level: str) -> int:
        """0 for the most severe level."""
        return self.levels.index(level)

    def may_change(self, old: str, new: str, source: str) -> bool:
        """The ratchet: anyone may raise (or confirm) severity, only `changes.lower` sources lower it."""
        if new not in self.levels:
            return False
        if old not in self.levels or self.rank(new) <= self.rank(old):
            return True
        return source in self.lower_sources

    def match(self, facts: Mapping[str, Any]) -> PolicySpec:
        """The first policy whose `when` holds; the checked file ends with a catch-all."""
        for spec in self.policies:
            if spec.when.check(facts):
                return spec
        return self.policies[-1]

    @cached_property
    def match_reads(self) -> frozenset[str]:
        """The facts that can change which policy matches."""
        return frozenset(name for spec in self.policies for name in spec.when.reads)

    # For the clock engine, sets of metrics are bit masks over their positions in `metrics`.

    @cached_property
    def lanes(self) -> tuple[tuple[Metric, str, int, bool], ...]:
        """Per metric, in order: (metric, name, bit, whether an agent's reply can start or stop it)."""
        return tuple((m, m.name, 1 << i, m.starts_on_reply or m.stops_on_reply)
                     for i, m in enumerate(self.metrics.values()))

    @cached_property
    def listeners(self) -> tuple[int, ...]:
        """The positions of the metrics an agent's reply can start or stop."""
        return tuple(i for i, lane in enumerate(self.lanes) if lane[3])

    @cached_property
    def readers(self) -> Mapping[str, int]:
        """Fact -> the metrics whose conditions read it."""
        found: dict[str, int] = {}
        for index, metric in enumerate(self.metrics.values()):
            for name in metric.reads:
                found[name] = found.get(name, 0) | 1 << index
        return MappingProxyType(found)

    def status_change_readers(self, before: str, after: str) -> int:
        """The metrics whose conditions can judge differently after this status change."""
        found = self._status_changes.get((before, after))
        if found is None:
            found = self._status_changes[before, after] = sum(
                1 << i for i, m in enumerate(self.metrics.values()) if m.status_matters(before, after))
        return found

    @cached_property
    def _status_changes(self) -> dict[tuple[str, str], int]:
        return {}

    @cached_property
    def horizon(self) -> tuple[int, int]:
        """The epoch seconds every calendar of the policy can answer for: the latest start and the
        earliest end of their materialised years (unbounded for 24/7 calendars)."""
        spans = [c.horizon for c in self.calendars.values() if c.horizon is not None]
        return (max((lo for lo, _ in spans), default=-(2**63)), min((hi for _, hi in spans), default=2**63))

    @cached_property
    def policy_by_id(self) -> Mapping[str, PolicySpec]:
        """The first policy of each id (ids are unique in a checked file)."""
        found: dict[str, PolicySpec] = {}
        for spec in self.policies:
            found.setdefault(spec.id, spec)
        return MappingProxyType(found)

    def metric_names(self) -> tuple[str, ...]:
        return tuple(self.metrics)

    def category(self, tracker_type: str, status: Any) -> str:
        """A tracker status -> its category. Unknown statuses count as open: a clock that keeps
        running is noticed, a clock that silently pauses is not."""
        text = "" if status is None else str(status)
        table = self.status_categories.get(tracker_type, {})
        if text in table:
            return table[text]
        return self._folded_categories(tracker_type).get(text.casefold(), text if text in CATEGORIES else "open")

    def _folded_categories(self, tracker_type: str) -> Mapping[str, str]:
        """The tracker's status table by case-folded status, built once per tracker type."""
        folded = self._folded.get(tracker_type)
        if folded is None:
            table = self.status_categories.get(tracker_type, {})
            folded = self._folded[tracker_type] = {k.casefold(): v for k, v in table.items()}
        return folded

    @cached_property
    def _folded(self) -> dict[str, dict[str, str]]:
        return {}

    def target_for(self, severity: str, metric: str, policy_id: str | None = None) -> tuple[PolicySpec, Target]:
        """The policy (by id, else the one a ticket with only this severity matches) and its target."""
        if severity not in self.levels:
            raise PolicyInputError(f"unknown severity {severity!r}; use one of: {', '.join(self.levels)}")
        if metric not in self.metrics:
            raise PolicyInputError(f"unknown metric {metric!r}; use one of: {', '.join(self.metrics)}")
        if policy_id is None:
            spec = self.match({"severity": severity, "tags": ()})
        else:
            found = [p for p in self.policies if p.id == policy_id]
            if not found:
                raise PolicyInputError(f"unknown policy {policy_id!r}; use one of: "
                                       f"{', '.join(p.id for p in self.policies)}")
            spec = found[0]
        target = spec.target(metric, severity)
        if target is None:
            levels = ", ".join(spec.targets.get(metric, {})) or "none"
            raise PolicyInputError(f"policy {spec.id!r} has no {metric} target for {severity} "
                                   f"(it has targets for: {levels})")
        return spec, target

    def due(self, severity: str, metric: str, start: datetime,
            pauses: Sequence[tuple[datetime, datetime]] = (), policy_id: str | None = None) -> Due:
        """When a clock started at `start` and paused during `pauses` is due (`ticketbridge sla due`)."""
        _, target = self.target_for(severity, metric, policy_id)
        calendar = self.calendars[target.calendar]
        resume, left = _aware(start, "start"), target.seconds
        for number, (begin, end) in enumerate(pauses, 1):
            begin, end = _aware(begin, f"pause {number} start"), _aware(end, f"pause {number} end")
            if end <= begin:
                raise PolicyInputError(f"pause {number} ends at {iso_utc(end)}, not after its start {iso_utc(begin)}")
            if begin < resume:
                after = "the start" if number == 1 else f"the end of pause {number - 1}"
                raise PolicyInputError(f"pause {number} starts at {iso_utc(begin)}, before {after} "
                                       f"({iso_utc(resume)}); give pauses in order, without overlaps")
            due_at = calendar.advance(resume, left)
            if begin >= due_at:
                raise PolicyInputError(f"pause {number} starts at {iso_utc(begin)}, not before the due instant "
                                       f"{iso_utc(due_at)}; a pause must start in [start, due)")
            left -= calendar.open_seconds(resume, begin)
            resume = end
        return Due(calendar.advance(resume, left).astimezone(UTC), calendar, target.seconds, target.kind)


def _aware(moment: datetime, what: str) -> datetime:
    if not isinstance(moment, datetime):
        raise PolicyInputError(f"{what} must be a datetime, got {moment!r}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise PolicyInputError(f"{what} {moment.isoformat()} has no UTC offset; give an instant such as "
                               f"{moment.isoformat()}+01:00")
    return moment.astimezone(UTC)


# --- loading --------------------------------------------------------------------------------------

def load_policy(path: str | Path, *, today: date | None = None, flows: Sequence[str] | None = None) -> Policy:
    """Load and check a policy file; raises ConfigError listing every problem (file:line:column)."""
    policy, problems = check_policy(path, today=today, flows=flows)
    if problems or policy is None:
        raise ConfigError(problems)
    return policy


def check_policy(path: str | Path, *, today: date | None = None,
                 flows: Sequence[str] | None = None) -> tuple[Policy | None, list[Problem]]:
    """(policy or None, problems). `today` picks the holiday years to materialise (default: today).
    `flows`: the flow names of the config, when known, so escalation actions naming another are caught."""
    doc, problems = read_yaml(path)
    if problems and doc.data is None:  # unparseable: nothing to check further
        return None, problems
    doc.data = _dates_as_text(doc.data)
    problems += schema_problems(doc, load_schema("policy.schema.json"))
    # Semantic checks run even after schema errors (guarded against odd shapes) so that an admin
    # sees everything in one pass.
    checker = _Checker(doc, today or date.today(), flows)
    problems += checker.run()
    if problems:
        return None, sort_problems(problems)
    return _build(doc, checker.calendars), []


def _dates_as_text(value: Any) -> Any:
    """YAML reads an unquoted 2026-12-24 as a date; admins should not need quotes around dates."""
    if isinstance(value, dict):
        return {k: _dates_as_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_dates_as_text(v) for v in value]
    if isinstance(value, date) and not isinstance(value, datetime):
        return value.isoformat()
    return value


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


_PERCENT = re.compile(r"(\d+)\s*%")
# CalendarError texts -> the calendar key they are about, so the message points at that line.
_CALENDAR_KEYS = (("time zone", "timezone"), ("timezone", "timezone"), ("business_day", "business_day"),
                  ("holiday", "holidays"), ("materiali", "holidays"), ("overrides", "overrides"),
                  ("week", "week"), ("overlap", "week"))


def parse_threshold(text: str) -> Threshold:
    """ "80%" or "-30m"; ValueError with the accepted forms otherwise."""
    value = text.strip()
    forms = 'write a percentage of the target consumed from 1% to 99% ("80%") or the time left before due ' \
            'with a minus sign ("-30m")'
    match = _PERCENT.fullmatch(value)
    if match:
        percent = int(match.group(1))
        if not 1 <= percent <= 99:
            raise ValueError(f"'{text}' is not a warning: {forms}; 100% and more is the breach itself")
        return Threshold(value, percent=percent)
    if value.startswith("-"):
        try:
            before = parse_duration(value[1:].strip())
        except ValueError:
            raise ValueError(f"'{text}' is not a warning: {forms}") from None
        if before > 0:
            return Threshold(value, before=before)
    raise ValueError(f"'{text}' is not a warning: {forms}")


@cache
def _calendar_shape() -> jsonschema.Draft202012Validator:
    """The schema's own rule for one calendar."""
    schema = load_schema("policy.schema.json")
    return jsonschema.Draft202012Validator({"$defs": schema["$defs"], "$ref": "#/$defs/calendar"})


class _Checker:
    """Semantic checks, also building the calendars. Every step tolerates wrong shapes: the
    schema already reported those."""

    def __init__(self, doc: SourceDoc, today: date, flows: Sequence[str] | None = None) -> None:
        self.doc, self.today, self.flows = doc, today, flows
        self.data = _dict(doc.data)
        self.problems: list[Problem] = []
        severity = _dict(self.data.get("severity"))
        self.levels = [level for level in _list(severity.get("levels")) if isinstance(level, str)]
        self.metrics = _dict(self.data.get("metrics"))
        self.defined_calendars = {BUILTIN_NAME, *_dict(self.data.get("calendars"))}
        self.calendars: dict[str, TimeCalendar] = {}

    def report(self, path: PathT, message: str, *, key: bool = False) -> None:
        self.problems.append(self.doc.problem(path, message, key=key))

    def run(self) -> list[Problem]:
        self.check_calendars()
        self.check_severity()
        self.check_metrics()
        self.check_policies()
        self.check_sla_fields()
        self.check_field_aliases()
        self.check_templates()
        self.check_escalations()
        return self.problems

    # -- references --

    def calendar_ref(self, path: PathT, name: Any) -> None:
        if isinstance(name, str) and name not in self.defined_calendars:
            known = ", ".join(sorted(self.defined_calendars))
            self.report(path, f"unknown calendar '{name}'; calendars: {known} ('calendar' is the built-in 24/7 one)")

    def level_ref(self, path: PathT, level: Any, *, key: bool = False) -> None:
        if isinstance(level, str) and self.levels and level not in self.levels:
            self.report(path, f"unknown severity level '{level}'; levels: {', '.join(self.levels)}", key=key)

    def duration(self, path: PathT, value: Any) -> int | None:
        if not isinstance(value, str):
            return None  # the schema reported it
        try:
            seconds = parse_duration(value)
        except ValueError as error:
            self.report(path, str(error))
            return None
        if seconds <= 0:
            self.report(path, f"'{value}' is zero; a target or grace must be longer than that")
            return None
        return seconds

    def condition(self, path: PathT, data: Any) -> None:
        for i, level in enumerate(_list(_dict(data).get("severity_in"))):
            self.level_ref((*path, "severity_in", i), level)

    # -- sections --

    def check_calendars(self) -> None:
        for name, spec in _dict(self.data.get("calendars")).items():
            path: PathT = ("calendars", name)
            if name == BUILTIN_NAME:
                self.report(path, "'calendar' is the built-in 24/7 calendar; give this calendar another name",
                            key=True)
                continue
            if not isinstance(spec, dict) or not _calendar_shape().is_valid(spec):
                continue  # the schema reported it; building it could fail in any way (a list as subdiv)
            try:
                self.calendars[name] = build_calendar(name, spec, today=self.today)
            except CalendarError as error:
                text = str(error)
                where = next((k for word, k in _CALENDAR_KEYS if word in text and k in spec), None)
                self.report((*path, where) if where else path, text, key=True)
        self.calendars[BUILTIN_NAME] = build_calendar(BUILTIN_NAME, {}, today=self.today)
        self.calendar_ref(("default_calendar",), self.data.get("default_calendar"))

    def check_severity(self) -> None:
        severity = _dict(self.data.get("severity"))
        seen: set[str] = set()
        for i, level in enumerate(_list(severity.get("levels"))):
            if level in seen:
                self.report(("severity", "levels", i), f"level '{level}' is listed twice")
            seen.add(level)
        rules = _list(severity.get("derive"))
        for i, rule in enumerate(rules):
            if isinstance(rule, dict):
                self.check_rule(("severity", "derive", i), rule, last=i == len(rules) - 1)

    def check_rule(self, path: PathT, rule: dict[str, Any], *, last: bool) -> None:
        kinds = [k for k in ("from", "match_any", "default") if k in rule]
        if len(kinds) != 1:
            self.report(path, "a derive rule has exactly one of: from: FIELD with map:, match_any: [words] "
                              "with value:, or default: LEVEL")
            return
        kind = kinds[0]
        needs = {"from": "map", "match_any": "value", "default": None}[kind]
        for extra in ("map", "value"):
            if extra in rule and extra != needs:
                self.report((*path, extra), f"'{extra}:' does not belong to a {kind}: rule; remove it", key=True)
        if needs and needs not in rule:
            example = "map: {Sev1: sev1}" if needs == "map" else "value: sev1"
            self.report(path, f"a {kind}: rule needs {needs}: (e.g. {example})")
        for value_key, level in _dict(rule.get("map")).items():
            self.level_ref((*path, "map", value_key), level)
        self.level_ref((*path, "value"), rule.get("value"))
        self.level_ref((*path, "default"), rule.get("default"))
        if kind == "default" and not last:
            self.report((*path, "default"), "a default: rule decides every ticket, so the rules after it "
                                            "never run; make it the last rule")
        if last and kind != "default":
            self.report(path, "the last derive rule must be a default (e.g. {default: sev3, flags: [needs_triage]}) "
                              "so that every ticket gets a severity")

    def check_metrics(self) -> None:
        for name, metric in self.metrics.items():
            if not isinstance(metric, dict):
                continue
            base: PathT = ("metrics", name)
            for key in ("start", "stop", "pause"):
                for i, entry in enumerate(_list(metric.get(key))):
                    self.condition((*base, key, i), entry)
                    if key == "stop" and entry == "created":
                        self.report((*base, key, i), "created cannot stop a clock; use agent_public_comment "
                                                     "or a condition like {status_in: [resolved, closed]}")
            self.condition((*base, "applies_when"), metric.get("applies_when"))
            self.calendar_ref((*base, "calendar"), metric.get("calendar"))
            for i, text in enumerate(_list(metric.get("warn"))):
                if isinstance(text, str):
                    try:
                        parse_threshold(text)
                    except ValueError as error:
                        self.report((*base, "warn", i), str(error))
            stops = _list(metric.get("stop"))
            if metric.get("on_reopen") in ("resume", "restart") and stops and not any(
                    isinstance(s, dict) for s in stops):
                self.report((*base, "on_reopen"), "on_reopen needs a stop condition that can end again, like "
                                                  "{status_in: [resolved, closed]}; a comment cannot be undone")

    def business_calendar(self, policy: dict[str, Any], metric: str) -> Any:
        override = _dict(self.metrics.get(metric)).get("calendar")
        return override or policy.get("calendar") or self.data.get("default_calendar")

    def check_policies(self) -> None:
        policies = _list(self.data.get("policies"))
        ids: dict[str, int] = {}
        for i, policy in enumerate(policies):
            if not isinstance(policy, dict):
                continue
            base: PathT = ("policies", i)
            pid = policy.get("id")
            if isinstance(pid, str):
                if pid in ids:
                    self.report((*base, "id"), f"policy id '{pid}' is already used by policies[{ids[pid]}]")
                ids.setdefault(pid, i)
            when = policy.get("when")
            self.condition((*base, "when"), when)
            last = i == len(policies) - 1
            if when == {} and not last:
                self.report((*base, "when"), f"policy '{pid}' matches every ticket (when: {{}}), so the policies "
                                             "after it never apply; move it to the end of the list")
            if last and isinstance(when, dict) and when:
                self.report((*base, "when"), "the last policy must be the catch-all `when: {}` so that every "
                                             "ticket gets a policy; add one at the end of the list")
            self.calendar_ref((*base, "calendar"), policy.get("calendar"))
            for metric, by_level in _dict(policy.get("targets")).items():
                path: PathT = (*base, "targets", metric)
                if metric not in self.metrics:
                    self.report(path, f"unknown metric '{metric}'; metrics: {', '.join(self.metrics)}", key=True)
                for level, target in _dict(by_level).items():
                    self.level_ref((*path, level), level, key=True)
                    if isinstance(target, dict):
                        self.check_target((*path, level), target, self.business_calendar(policy, metric))

    def check_target(self, path: PathT, target: dict[str, Any], calendar: Any) -> None:
        kinds = [k for k in TARGET_KINDS if k in target]
        if len(kinds) != 1:
            self.report(path, "a target has exactly one of calendar: DURATION (24/7), business: DURATION or "
                              "business_days: N, e.g. {business: 8h}")
        for kind in kinds:
            if kind != "business_days":
                self.duration((*path, kind), target[kind])
            elif isinstance(calendar, str) and calendar in self.calendars \
                    and self.calendars[calendar].business_day is None:  # a wrong type: the schema reported it
                self.report((*path, kind), f"calendar '{calendar}' has no business_day, so business_days cannot "
                                           "be counted; add business_day: 8h to it or use business: DURATION")
        if "grace" in target:
            self.duration((*path, "grace"), target["grace"])

    def check_sla_fields(self) -> None:
        for tracker, spec in _dict(self.data.get("sla_fields")).items():
            for key in _dict(spec):
                if key.endswith("_due") and key[:-4] not in self.metrics:
                    self.report(("sla_fields", tracker, key), f"there is no metric '{key[:-4]}'; "
                                f"<metric>_due keys: {', '.join(m + '_due' for m in self.metrics)}", key=True)


    # -- escalation (see escalation.py) --

    def check_field_aliases(self) -> None:
        for name, spec in _dict(self.data.get("fields")).items():
            if name in ("status", "severity", "tags"):
                self.report(("fields", name), f"'{name}' is a built-in fact of every ticket; give the field "
                                              "another name", key=True)
            for tracker, native in _dict(spec).items():
                if native == name:
                    self.report(("fields", name, tracker), f"'{name}' names itself; write the tracker's own "
                                                           "field, e.g. custom_fields.360004")

    def check_templates(self) -> None:
        for name, spec in _dict(self.data.get("templates")).items():
            for i, level in enumerate(_list(_dict(spec).get("never_block"))):
                self.level_ref(("templates", name, "never_block", i), level)

    def check_escalations(self) -> None:
        from .escalation import PLACEHOLDERS, UNTIL_WORDS, placeholders

        ids: dict[str, int] = {}
        templates = _dict(self.data.get("templates"))
        for i, rule in enumerate(_list(self.data.get("escalations"))):
            if not isinstance(rule, dict):
                continue
            base: PathT = ("escalations", i)
            rid = rule.get("id")
            if isinstance(rid, str):
                if rid in ids:
                    self.report((*base, "id"), f"escalation id '{rid}' is already used by escalations[{ids[rid]}]")
                ids.setdefault(rid, i)
            on = _dict(rule.get("on"))
            self.check_trigger((*base, "on"), on)
            self.condition((*base, "if"), rule.get("if"))
            if ("do" in rule) == ("steps" in rule):
                self.report(base, "an escalation has either do: [actions] or steps: [{after: 10m, do: [...]}], "
                                  "not both and not neither")
            steps = _list(rule.get("steps")) if "steps" in rule else [{"do": rule.get("do")}]
            previous = -1
            for n, step in enumerate(steps):
                step = _dict(step)
                spath: PathT = (*base, "steps", n) if "steps" in rule else base
                after = step.get("after", 0)
                seconds = 0
                if isinstance(after, str):
                    try:
                        seconds = parse_duration(after)
                    except ValueError as error:
                        self.report((*spath, "after"), str(error))
                elif isinstance(after, int):
                    seconds = after
                if seconds < previous:
                    self.report((*spath, "after"), "steps run in order: give each step an after: no shorter "
                                                   "than the step before it")
                previous = max(previous, seconds)
                untils = step.get("until")
                for j, entry in enumerate(untils if isinstance(untils, list) else [untils] if untils else []):
                    self.check_until((*spath, "until", j) if isinstance(untils, list) else (*spath, "until"),
                                     entry, on, UNTIL_WORDS)
                created = False
                do_path: PathT = (*spath, "do")
                for k, action in enumerate(_list(step.get("do"))):
                    if not isinstance(action, dict) or len(action) != 1:
                        continue  # the schema reported it
                    (kind, params), = action.items()
                    apath: PathT = (*do_path, k, kind)
                    params = _dict(params)
                    self.check_action(apath, kind, params, on, templates, created, bool(rule.get("optional")),
                                      PLACEHOLDERS, placeholders, UNTIL_WORDS)
                    created = created or kind == "create_issue"

    def check_trigger(self, path: PathT, on: dict[str, Any]) -> None:
        kinds = [k for k in ("severity_became", "field_changed", "tag_added", "sla") if k in on]
        if len(kinds) != 1:
            self.report(path, "on: needs exactly one trigger: {severity_became: sev1}, {field_changed: FIELD, "
                              "to: VALUE}, {tag_added: TAG} or {sla: METRIC, event: warning|breach}")
            return
        kind = kinds[0]
        allowed = {"severity_became": {"severity_became"}, "field_changed": {"field_changed", "to"},
                   "tag_added": {"tag_added"}, "sla": {"sla", "event", "threshold"}}[kind]
        for extra in sorted(set(on) - allowed):
            self.report((*path, extra), f"'{extra}:' does not belong to a {kind} trigger; "
                                        f"it takes: {', '.join(sorted(allowed))}", key=True)
        if kind == "severity_became":
            levels = on["severity_became"]
            for j, level in enumerate(levels if isinstance(levels, list) else [levels]):
                self.level_ref((*path, "severity_became", j) if isinstance(levels, list)
                               else (*path, "severity_became"), level)
        if kind == "sla":
            metric = on.get("sla")
            if not isinstance(metric, str):
                return  # the schema reported it
            if metric not in self.metrics:
                self.report((*path, "sla"), f"unknown metric '{metric}'; metrics: {', '.join(self.metrics)}")
                return
            threshold = on.get("threshold")
            if threshold is not None:
                warns = [w for w in _list(_dict(self.metrics.get(metric)).get("warn")) if isinstance(w, str)]
                if on.get("event", "breach") != "warning":
                    self.report((*path, "threshold"), "threshold: belongs to event: warning (a breach has none)")
                elif threshold not in warns:
                    self.report((*path, "threshold"), f"metric '{metric}' has no warning '{threshold}'; its "
                                                      f"warnings: {', '.join(warns) or 'none'}")

    def check_until(self, path: PathT, entry: Any, on: dict[str, Any], words: Sequence[str]) -> None:
        if isinstance(entry, str):
            if entry not in words:
                self.report(path, f"unknown condition '{entry}'; use {' or '.join(words)}, or a condition "
                                  "like {status_in: [resolved]}")
            elif entry == "clock_stopped" and "sla" not in on:
                self.report(path, "clock_stopped needs a rule triggered by a clock (on: {sla: METRIC, ...})")
        else:
            self.condition(path, entry)

    def check_action(self, path: PathT, kind: str, params: dict[str, Any], on: dict[str, Any],
                     templates: dict[str, Any], created: bool, optional: bool, known: Sequence[str],
                     placeholders: Callable[[str], list[str]], words: Sequence[str]) -> None:
        flow = params.get("flow")
        if isinstance(flow, str) and self.flows is not None and flow not in self.flows and not optional:
            self.report((*path, "flow"), f"unknown flow '{flow}'; flows in the config: "
                                         f"{', '.join(self.flows) or 'none'} (or mark the rule optional: true "
                                         "to run it only where that flow is configured)")
        template = params.get("template")
        if isinstance(template, str) and template not in templates:
            self.report((*path, "template"), f"unknown template '{template}'; templates: "
                                             f"{', '.join(templates) or 'none (add a templates: section)'}")
        for key in ("body", "summary", "dedup_key", "value"):
            text = params.get(key)
            if not isinstance(text, str):
                continue
            for name in placeholders(text):
                if name not in known:
                    self.report((*path, key), f"unknown placeholder {{{name}}}; placeholders: "
                                              f"{', '.join('{' + k + '}' for k in known)}")
                elif name.startswith("created.") and not created:
                    self.report((*path, key), f"{{{name}}} needs a create_issue action before this one "
                                              "in the same step")
        if kind == "raise_priority":
            if ("to" in params) == ("by" in params):
                self.report(path, "raise_priority takes to: LEVEL or by: N (with an optional max: LEVEL)")
            self.level_ref((*path, "to"), params.get("to"))
            self.level_ref((*path, "max"), params.get("max"))
        resolve_on = params.get("resolve_on")
        for j, entry in enumerate(_list(resolve_on)):
            self.check_until((*path, "resolve_on", j), entry, on, words)


# --- building (the document passed every check) ---------------------------------------------------

def _trigger(entry: Any) -> Trigger:
    return Trigger(event=entry) if isinstance(entry, str) else Trigger(condition=Condition.from_data(entry))


def _metric(name: str, data: dict[str, Any]) -> Metric:
    applies = data.get("applies_when")
    return Metric(
        name=name,
        start=tuple(_trigger(e) for e in data["start"]),
        stop=tuple(_trigger(e) for e in data["stop"]),
        pause=tuple(Condition.from_data(c) for c in data.get("pause") or ()),
        applies_when=Condition.from_data(applies) if applies is not None else None,
        on_reopen=data.get("on_reopen", "ignore"),
        cycles=data.get("cycles", "once"),
        calendar=data.get("calendar"),
        warn=tuple(parse_threshold(t) for t in data.get("warn") or ()),
    )


def _target(data: dict[str, Any], business_calendar: str, calendars: Mapping[str, TimeCalendar]) -> Target:
    grace = parse_duration(data["grace"]) if "grace" in data else 0
    suffix = f", grace {data['grace']}" if grace else ""
    if "calendar" in data:
        return Target("calendar", parse_duration(data["calendar"]), BUILTIN_NAME, grace,
                      f"{data['calendar']} calendar time{suffix}")
    if "business" in data:
        return Target("business", parse_duration(data["business"]), business_calendar, grace,
                      f"{data['business']} business time on {business_calendar}{suffix}")
    days = data["business_days"]
    per_day = calendars[business_calendar].business_day or 0
    return Target("business_days", days * per_day, business_calendar, grace,
                  f"{days} business days on {business_calendar}{suffix}")


def _derive_rule(data: dict[str, Any]) -> DeriveRule:
    flags = tuple(data.get("flags") or ())
    if "from" in data:
        return DeriveRule(source=data["from"], table=MappingProxyType({str(k): v for k, v in data["map"].items()}),
                          flags=flags)
    if "match_any" in data:
        return DeriveRule(words=tuple(data["match_any"]), value=data["value"], flags=flags)
    return DeriveRule(value=data["default"], flags=flags)


def _build(doc: SourceDoc, calendars: Mapping[str, TimeCalendar]) -> Policy:
    data: dict[str, Any] = doc.data
    metrics = {name: _metric(name, spec) for name, spec in data["metrics"].items()}
    default_calendar = data["default_calendar"]
    specs = []
    for policy in data["policies"]:
        calendar = policy.get("calendar", default_calendar)
        targets = {
            metric: MappingProxyType({
                level: _target(target, metrics[metric].calendar or calendar, calendars)
                for level, target in by_level.items()})
            for metric, by_level in policy["targets"].items()}
        specs.append(PolicySpec(policy["id"], Condition.from_data(policy["when"]), calendar,
                                MappingProxyType(targets)))
    conditions = [s.when for s in specs]
    for metric in metrics.values():
        conditions += [*metric.pause, *(t.condition for t in (*metric.start, *metric.stop) if t.condition)]
        conditions += [metric.applies_when] if metric.applies_when else []
    from .escalation import build_rules  # escalation.py builds on this module's Condition

    escalation = build_rules(data)
    # History records the fields the conditions, the escalation rules and the templates read.
    watched = tuple(dict.fromkeys([*(name for c in conditions for name in c.field_names()),
                                   *escalation.field_names()]))
    # Comments do not change the meaning, so they do not change the version (no needless replays).
    digest = hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode())
    digest.update(json.dumps(sorted((n, c.version) for n, c in calendars.items())).encode())
    severity = data["severity"]
    return Policy(
        path=doc.file,
        version=digest.hexdigest()[:16],
        levels=tuple(severity["levels"]),
        calendars=MappingProxyType(dict(calendars)),
        default_calendar=default_calendar,
        status_categories=frozen(data.get("status_categories", {})),
        sla_fields=frozen(data.get("sla_fields", {})),
        policies=tuple(specs),
        metrics=MappingProxyType(metrics),
        derive=tuple(_derive_rule(r) for r in severity["derive"]),
        lower_sources=tuple(_dict(severity.get("changes")).get("lower") or ()),
        watched_fields=watched,
        redaction=frozen(data.get("redaction", {})),
        field_aliases=frozen(data.get("fields", {})),
        escalation=escalation,
    )
