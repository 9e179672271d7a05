"""Escalation rules: trigger events in, planned actions (with idempotency keys) out. Pure: no I/O.

The `escalations:` section of policy.yaml says what support does when something happens to a
ticket: its severity became Sev1, its support level field changed to L2, a tag was added, or an SLA
clock warned or breached. A rule has a trigger (`on:`), an optional condition on the ticket as it is
(`if:`, a policy Condition) and actions, either directly (`do:`) or in `steps:` with delays
(`after:`) and `until:` conditions that cancel a step and every later one when they come true.

`plan()` turns one trigger event into PlannedActions. Each carries an idempotency key derived from
(rule, step, action position, ticket, trigger identity), so scanning the same event twice plans
the same keys and the outbox (sync/outbox.py) runs each action once. Executing actions is the
escalation service's job (sync/escalation_service.py).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ..durations import parse_duration
from .policy import Condition, _same, is_set

__all__ = [
    "ACTION_KINDS",
    "Action",
    "EscalationRules",
    "PlannedAction",
    "Rule",
    "Step",
    "Template",
    "TicketState",
    "TriggerEvent",
    "Until",
    "build_rules",
    "missing_fields",
    "plan",
    "render",
    "template_appendix",
]

ACTION_KINDS = ("create_issue", "comment", "set_field", "raise_priority", "attach", "page")
TRIGGER_KINDS = ("severity_became", "field_changed", "tag_added", "sla")
UNTIL_WORDS = ("clock_stopped", "ticket_solved")
SOLVED_CATEGORIES = ("resolved", "closed")
# Placeholders a comment body, page summary or dedup_key may use; checked when the policy loads.
PLACEHOLDERS = ("ticket.id", "ticket.key", "ticket.url", "severity", "rule", "metric", "cycle", "threshold",
                "created.key", "created.url", "missing_fields", "value", "field", "tag")
_PLACEHOLDER = re.compile(r"\{([a-z_]+(?:\.[a-z_]+)?)\}")
# Labels for template fields in notes and issue text; other keys are shown capitalised.
_LABELS = {"device_os": "Device/OS", "date_observed": "Date observed", "steps_to_reproduce": "Steps to reproduce"}


# --- the rule model -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Until:
    """A cancel (`until:`) or resolve (`resolve_on:`) condition: a word or a ticket condition."""

    word: str | None = None  # clock_stopped | ticket_solved
    condition: Condition | None = None
    raw: Any = None  # as written in the policy: what the outbox stores

    def __str__(self) -> str:
        return self.word or str(self.condition)

    @classmethod
    def parse(cls, entry: Any) -> Until:
        if isinstance(entry, str):
            return cls(word=entry, raw=entry)
        return cls(condition=Condition.from_data(entry), raw=entry)


@dataclass(frozen=True)
class Action:
    kind: str  # one of ACTION_KINDS
    params: Mapping[str, Any]


@dataclass(frozen=True)
class Step:
    after: int  # seconds after the trigger
    until: tuple[Until, ...]  # this step's own and every earlier step's: any one cancels it
    actions: tuple[Action, ...]


@dataclass(frozen=True)
class Trigger:
    kind: str  # one of TRIGGER_KINDS
    values: tuple[Any, ...] = ()  # levels (severity_became), `to` values (field_changed), tags
    field: str | None = None  # field_changed
    metric: str | None = None  # sla
    event: str | None = None  # sla: warning | breach
    threshold: str | None = None  # sla warning: only this threshold ("80%")


@dataclass(frozen=True)
class Rule:
    id: str
    on: Trigger
    when: Condition
    steps: tuple[Step, ...]
    optional: bool = False  # runs only where the flows it names are configured


@dataclass(frozen=True)
class Template:
    """Fields an engineering issue needs (sla-semantics 7.6); missing ones hold an escalation back."""

    name: str
    required: tuple[tuple[str, str], ...]  # (key, ticket field name or alias), in file order
    never_block: tuple[str, ...] = ("sev1", "sev2")  # levels escalated even when fields are missing

    def label(self, key: str) -> str:
        return _LABELS.get(key, key.replace("_", " ").capitalize())


@dataclass(frozen=True)
class EscalationRules:
    rules: tuple[Rule, ...] = ()
    templates: Mapping[str, Template] = field(default_factory=dict)

    def flows(self) -> tuple[str, ...]:
        """Every flow an action names (create_issue, attach)."""
        return tuple(dict.fromkeys(str(a.params["flow"]) for r in self.rules for s in r.steps for a in s.actions
                                   if "flow" in a.params))

    def field_names(self) -> tuple[str, ...]:
        """Ticket fields the rules read: history must record their changes."""
        names: list[str] = []
        for rule in self.rules:
            if rule.on.field:
                names.append(rule.on.field)
            names += rule.when.field_names()
            for step in rule.steps:
                names += [n for u in step.until if u.condition for n in u.condition.field_names()]
                for action in step.actions:
                    names += [str(action.params[k]) for k in ("field",) if k in action.params
                              and action.kind in ("attach",)]
                    names += [n for u in _resolve_on(action) if u.condition for n in u.condition.field_names()]
        for template in self.templates.values():
            names += [name for _, name in template.required]
        return tuple(dict.fromkeys(names))


# --- inputs ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TriggerEvent:
    """Something that happened to a ticket, from its history (ticket_events) or its clocks (sla_events).

    `ref` identifies the event for good: a ticket event's ref, or metric:cycle:kind:threshold of an
    SLA event. It goes into the idempotency keys, so it must not depend on when we looked."""

    ref: str
    tracker: str
    ticket_id: str
    kind: str  # severity | field | tags | sla_warning | sla_breach
    at: datetime
    field: str | None = None
    value: Any = None  # severity: level; field: value; tags: the tags now; sla: threshold
    previous: Any = None  # the value before (None: first sight)
    metric: str | None = None
    cycle: int = 0


@dataclass(frozen=True)
class TicketState:
    """The ticket as it is now, for `if:` conditions, `until:` and `resolve_on:`."""

    tracker: str
    ticket_id: str
    key: str
    url: str = ""
    facts: Mapping[str, Any] = field(default_factory=dict)  # status (category), severity, tags, fields
    clocks: Mapping[tuple[str, int], str] = field(default_factory=dict)  # (metric, cycle) -> status

    @property
    def severity(self) -> str | None:
        value = self.facts.get("severity")
        return value if isinstance(value, str) else None

    @property
    def solved(self) -> bool:
        return self.facts.get("status") in SOLVED_CATEGORIES


@dataclass(frozen=True)
class PlannedAction:
    key: str  # idempotency key: the same rule, step, action, ticket and trigger give the same key
    group: str  # the actions of one step of one trigger run in order (a comment after its create)
    position: int
    rule: str
    step: int
    kind: str
    params: Mapping[str, Any]
    tracker: str
    ticket_id: str
    ticket_key: str
    due_at: datetime
    until: tuple[Until, ...]
    context: Mapping[str, Any]  # what the placeholders and until conditions need later


# --- evaluation -----------------------------------------------------------------------------------

def idempotency_key(*parts: Any) -> str:
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:40]


def fires(trigger: Trigger, event: TriggerEvent) -> bool:
    """Whether this event is what the trigger waits for."""
    if trigger.kind == "severity_became":
        return (event.kind == "severity" and event.value in trigger.values and event.previous != event.value)
    if trigger.kind == "field_changed":
        if event.kind != "field" or event.field != trigger.field or event.value == event.previous:
            return False
        if not trigger.values:
            return is_set(event.value)
        now = any(_same(event.value, v) for v in trigger.values)
        before = event.previous is not None and any(_same(event.previous, v) for v in trigger.values)
        return now and not before
    if trigger.kind == "tag_added":
        if event.kind != "tags":
            return False
        added = set(event.value or ()) - set(event.previous or ())
        return bool(added & set(trigger.values))
    if trigger.kind == "sla":
        if event.kind != f"sla_{trigger.event}" or event.metric != trigger.metric:
            return False
        return trigger.threshold is None or event.value == trigger.threshold
    return False


def plan(rules: EscalationRules, event: TriggerEvent, ticket: TicketState) -> list[PlannedAction]:
    """The actions every matching rule asks for, with their due times (trigger time + step delay)."""
    planned: list[PlannedAction] = []
    for rule in rules.rules:
        if not fires(rule.on, event) or not rule.when.check(ticket.facts):
            continue
        context = {"rule": rule.id, "trigger": event.ref, "metric": event.metric or "", "cycle": event.cycle or 1,
                   "threshold": event.value if event.kind.startswith("sla_") else "",
                   "field": event.field or "", "value": "" if event.kind.startswith("sla_") else event.value,
                   "tag": ", ".join(sorted(set(event.value or ()) - set(event.previous or ())))
                   if event.kind == "tags" else ""}
        for number, step in enumerate(rule.steps):
            group = idempotency_key(rule.id, number, event.tracker, event.ticket_id, event.ref)
            for position, action in enumerate(step.actions):
                planned.append(PlannedAction(
                    key=idempotency_key(rule.id, number, position, event.tracker, event.ticket_id, event.ref),
                    group=group, position=position, rule=rule.id, step=number, kind=action.kind,
                    params=action.params, tracker=event.tracker, ticket_id=event.ticket_id, ticket_key=ticket.key,
                    due_at=event.at + timedelta(seconds=step.after), until=step.until, context=context))
    return planned


def holds(until: Until, ticket: TicketState, metric: str | None, cycle: int) -> bool:
    """Whether a cancel or resolve condition has come true for this ticket (and trigger clock)."""
    if until.word == "ticket_solved":
        return ticket.solved
    if until.word == "clock_stopped":
        # The trigger's own clock cycle; a rule not triggered by a clock has none to stop.
        status = ticket.clocks.get((metric or "", cycle))
        return status in ("stopped", "cancelled")
    return until.condition is not None and until.condition.check(ticket.facts)


def cancelled_by(untils: Sequence[Until], ticket: TicketState, metric: str | None, cycle: int) -> Until | None:
    return next((u for u in untils if holds(u, ticket, metric, cycle)), None)


def missing_fields(template: Template, fields: Mapping[str, Any]) -> list[str]:
    """The template keys whose ticket field has no value."""
    return [key for key, name in template.required if not is_set(fields.get(name))]


# Every flow carries these as the issue's own title and body: the appendix does not repeat them.
CARRIED_FIELDS = ("subject", "description")


def template_appendix(template: Template, fields: Mapping[str, Any]) -> str:
    """The template's values as issue text, "not provided" for the missing ones."""
    lines = []
    for key, name in template.required:
        if name in CARRIED_FIELDS:
            continue
        value = fields.get(name)
        text = ", ".join(map(str, value)) if isinstance(value, list | tuple) else str(value) if is_set(value) else ""
        lines.append(f"{template.label(key)}: {text.strip() or 'not provided'}")
    return "\n".join(lines)


def render(text: str, values: Mapping[str, Any]) -> str:
    """Fill {placeholders}; one that has no value becomes empty (the checker refused unknown ones)."""
    return _PLACEHOLDER.sub(lambda m: str(values.get(m.group(1), "") if values.get(m.group(1)) is not None
                                          else ""), text)


def placeholders(text: str) -> list[str]:
    return _PLACEHOLDER.findall(text)


def untils(raw: Any) -> tuple[Until, ...]:
    """Until conditions from their stored form (a list of words and condition mappings)."""
    return tuple(Until.parse(e) for e in _as_tuple(raw))


def _resolve_on(action: Action) -> tuple[Until, ...]:
    return untils(action.params.get("resolve_on"))


# --- building from checked YAML data ----------------------------------------------------------------

def _until(entry: Any) -> Until:
    return Until.parse(entry)


def _as_tuple(value: Any) -> tuple[Any, ...]:
    if value is None:
        return ()
    return tuple(value) if isinstance(value, list | tuple) else (value,)


def _trigger(data: Mapping[str, Any]) -> Trigger:
    if "severity_became" in data:
        return Trigger("severity_became", _as_tuple(data["severity_became"]))
    if "field_changed" in data:
        return Trigger("field_changed", _as_tuple(data.get("to")), field=data["field_changed"])
    if "tag_added" in data:
        return Trigger("tag_added", _as_tuple(data["tag_added"]))
    return Trigger("sla", metric=data["sla"], event=data.get("event", "breach"), threshold=data.get("threshold"))


def _action(data: Mapping[str, Any]) -> Action:
    (kind, params), = data.items()
    params = dict(params or {})  # kept as written (JSON-ready): the outbox stores a copy with each row
    if kind == "comment":
        params.setdefault("public", False)  # internal by default: a rule never talks to a customer by accident
    return Action(kind, params)


def build_rules(data: Mapping[str, Any]) -> EscalationRules:
    """EscalationRules from the `escalations:` and `templates:` sections of a checked policy."""
    rules = []
    for entry in data.get("escalations") or ():
        raw_steps = entry.get("steps") or [{"after": "0s", "do": entry.get("do") or []}]
        steps: list[Step] = []
        cancel: tuple[Until, ...] = ()
        for raw in raw_steps:
            # A step's until cancels it and every later step: later steps inherit the earlier ones.
            cancel = (*cancel, *(_until(u) for u in _as_tuple(raw.get("until"))))
            steps.append(Step(parse_duration(raw.get("after", 0)), cancel,
                              tuple(_action(a) for a in raw.get("do") or ())))
        rules.append(Rule(entry["id"], _trigger(entry["on"]), Condition.from_data(entry.get("if") or {}),
                          tuple(steps), bool(entry.get("optional", False))))
    templates = {}
    for name, spec in (data.get("templates") or {}).items():
        templates[name] = Template(name, tuple((str(k), str(v)) for k, v in (spec.get("required") or {}).items()),
                                   tuple(spec.get("never_block", ("sev1", "sev2"))))
    return EscalationRules(tuple(rules), templates)
