"""Escalations on synced tickets: trigger scan -> plan (pure) -> outbox -> execute.

The engine calls `run` after the SLA clocks settle on every pass and between polls, and sleeps
no longer than `next_wake`:

scan     new ticket history events (severity, field, tags) and SLA warnings/breaches since the
         stored cursors become trigger events; `escalation.plan` turns them into actions with
         idempotency keys; the outbox inserts them with the advanced cursors in one transaction.
review   an `until:` that came true cancels its step (and the later ones); an escalation held back
         by the ticket template goes on once the fields are filled in (or the ticket became Sev1/2).
execute  due rows run in order within their step: create an engineering issue (Engine.escalate,
         itself idempotent), comment, set a field, raise the priority, attach, page. A failure is
         retried with back-off and keeps the tracker's message; one bad action never stops others.
pages    open pages are resolved when their `resolve_on` comes true.

Comments we write carry a `[tb:escalation:...]` marker: they never count as a human agent's reply
for the SLA clocks (history records them as the bridge's), and a comment whose post may or may not
have landed (a timeout) is looked up by its marker before it is posted again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import structlog

from ..connectors.base import Connector
from ..connectors.errors import Permanent, TrackerError
from ..logs import scrub_text
from .model import AddComment, Update, iso_utc, with_comment_marker
from .outbox import DONE, FAILED, FINAL_STATES, OPEN_STATES, PENDING, WAITING, ActionRow, NewAction, Outbox
from .policy.escalation import (
    EscalationRules,
    PlannedAction,
    Template,
    TicketState,
    TriggerEvent,
    cancelled_by,
    missing_fields,
    plan,
    render,
    template_appendix,
    untils,
)
from .policy.policy import Policy
from .store import Store

log = structlog.get_logger(__name__)

DESK_TYPES = ("zendesk",)
RETRY_FIRST = timedelta(seconds=30)  # doubled per attempt
RETRY_MAX = timedelta(hours=1)
MAX_ATTEMPTS = 8
SCAN_BATCH = 500  # events read per transaction of the trigger scan
FIRST_START_LOOKBACK = timedelta(days=1)  # how far before the first start a trigger still counts
DEFAULT_DEDUP_KEY = "zd-{ticket.id}-{rule}-c{cycle}"
DEFAULT_SUMMARY = "{ticket.key} ({severity}): escalation {rule}"
SOLVED_STATUSES = ("solved", "closed")


def utc_now() -> datetime:
    return datetime.now(UTC)


class EscalationEngine(Protocol):
    """What the service needs of sync.engine.Engine (escalate returns an Escalated)."""

    def escalate(self, flow: str, ticket_id: str, *, extra_fields: Mapping[str, Any] | None = None,
                 appendix: str | None = None) -> Any: ...

    def attach(self, flow: str, ticket_id: str, issue_ref: str) -> Any: ...


class Pager(Protocol):
    """PagerDuty Events API v2 (connectors.pagerduty.client.PagerDutyClient)."""

    def trigger(self, dedup_key: str, summary: str, source: str, severity: str,
                custom_details: Mapping[str, Any] | None = None,
                links: Sequence[Mapping[str, str]] | None = None) -> str: ...

    def resolve(self, dedup_key: str) -> str: ...


class _Outcome:
    """What running one action came to."""

    def __init__(self, state: str, result: dict[str, Any] | None = None, line: str = "") -> None:
        self.state, self.result, self.line = state, result or {}, line


class EscalationService:
    def __init__(self, store: Store, policy: Policy, connectors: Mapping[str, Connector],
                 tracker_types: Mapping[str, str], flows: Iterable[tuple[str, str, str]], *,
                 pager: Pager | None = None, page_source: str = "ticketbridge",
                 now: Callable[[], datetime] = utc_now) -> None:
        """flows: (flow name, left tracker, right tracker) of the config."""
        self.store = store
        self.policy = policy
        self.connectors = dict(connectors)
        self.types = dict(tracker_types)
        self.flows = {name: (left, right) for name, left, right in flows}
        self.pager = pager
        self.page_source = page_source
        self.now = now
        self.outbox = Outbox(store)
        # Where the history ends as we start; stored at the first run, not here, because a dry run
        # (`ticketbridge plan`) builds this service too and must write nothing.
        self._start_ids: tuple[int, int] | None = self.outbox.last_ids()
        self.rules = self._active_rules(policy.escalation or EscalationRules())
        self._states: dict[tuple[str, str], TicketState | None] = {}  # per round: tickets as observed

    def _active_rules(self, rules: EscalationRules) -> EscalationRules:
        """Rules marked optional run only where every flow they name is configured."""
        active = []
        for rule in rules.rules:
            missing = sorted({str(a.params["flow"]) for s in rule.steps for a in s.actions
                              if "flow" in a.params and a.params["flow"] not in self.flows})
            if missing:
                log.info("escalation.rule_inactive", rule=rule.id, missing_flows=missing)
                continue
            active.append(rule)
        return EscalationRules(tuple(active), rules.templates)

    # -- the runner protocol -------------------------------------------------------------------
    def run(self, engine: EscalationEngine) -> list[str]:
        """One round: scan, review, execute, resolve pages. Lines describe the actions taken."""
        now = self.now()
        lines: list[str] = []
        if self._start_ids is not None:
            self.outbox.start_cursors_at(*self._start_ids, now)
            self._start_ids = None
        self.scan()
        self._states = {}
        lines += self.review(now)
        lines += self.execute(engine, now)
        lines += self.resolve_pages(now)
        return lines

    def next_wake(self) -> datetime | None:
        return self.outbox.next_due()

    # -- scan ----------------------------------------------------------------------------------
    def scan(self) -> int:
        """Plan the actions of every event since the cursors; returns how many rows are new."""
        added = 0
        while True:
            new, more = self._scan_batch()
            added += new
            if not more:
                return added

    def _scan_batch(self) -> tuple[int, bool]:
        """One batch of events: (rows added, whether more events may be waiting)."""
        ticket_cursor, sla_cursor = self.outbox.cursors()
        started = self.outbox.started_at()
        # The first sync of a desk reads its whole past: what happened before the first start (less
        # a day, for the incidents going on right now) is history, not a reason to act.
        horizon = started - FIRST_START_LOOKBACK if started else None
        planned: list[PlannedAction] = []
        states: dict[tuple[str, str], TicketState | None] = {}

        def state(tracker: str, item_id: str) -> TicketState | None:
            if (tracker, item_id) not in states:
                states[tracker, item_id] = self.ticket_state(tracker, item_id)
            return states[tracker, item_id]

        events = self.outbox.ticket_events_after(ticket_cursor, SCAN_BATCH)
        for tracker, item_id, event in events:
            if event.kind not in ("severity", "field", "tags") or self.types.get(tracker) not in DESK_TYPES:
                continue
            if horizon is not None and event.at < horizon:
                continue
            ticket = state(tracker, item_id)
            if ticket is None:
                continue
            previous = self.outbox.previous_value(tracker, item_id, event)
            if event.kind == "severity" and previous is not None and not self.policy.may_change(
                    str(_level(previous)), str(_level(event.value)), event.source):
                continue  # a lowering the ratchet refused: the severity did not become that
            trigger = TriggerEvent(ref=event.ref, tracker=tracker, ticket_id=item_id, kind=event.kind, at=event.at,
                                   field=event.field, value=_level(event.value) if event.kind == "severity"
                                   else event.value,
                                   previous=_level(previous) if event.kind == "severity" else previous)
            planned += plan(self.rules, trigger, ticket)
        sla_events = self.outbox.sla_events_after(sla_cursor, SCAN_BATCH)
        for _, sla in sla_events:
            if sla.kind not in ("warning", "breach") or (
                    horizon is not None and (sla.nominal_at or sla.recorded_at) < horizon):
                continue
            ticket = state(sla.tracker, sla.item_id)
            if ticket is None:
                continue
            trigger = TriggerEvent(ref=f"sla:{sla.metric}:{sla.cycle}:{sla.kind}:{sla.threshold}",
                                   tracker=sla.tracker, ticket_id=sla.item_id, kind=f"sla_{sla.kind}",
                                   at=sla.recorded_at, value=sla.threshold, metric=sla.metric, cycle=sla.cycle)
            planned += plan(self.rules, trigger, ticket)
        added = self.outbox.add(
            (_new_action(p) for p in planned),
            ticket_cursor=events[-1][2].seq if events else None,
            sla_cursor=sla_events[-1][0] if sla_events else None)
        if added:
            log.info("escalation.planned", actions=added)
        return added, len(events) == SCAN_BATCH or len(sla_events) == SCAN_BATCH

    def ticket_state(self, tracker: str, item_id: str) -> TicketState | None:
        """The ticket as the SLA service last observed it (facts under the policy's field names)."""
        ticket = self.store.sla_ticket(tracker, item_id)
        if ticket is None:
            return None
        observed, summary = ticket.observed or {}, ticket.summary or {}
        facts: dict[str, Any] = dict(observed.get("fields") or {})
        facts.update({
            "status": self.policy.category(self.types.get(tracker, ""), observed.get("status")),
            # The summary's severity has been through the ratchet; the observed one has not.
            "severity": summary.get("severity") or observed.get("severity"),
            "tags": tuple(observed.get("tags") or ()),
        })
        clocks = {(c["metric"], int(c["cycle"])): c["status"] for c in summary.get("clocks") or ()}
        return TicketState(tracker, item_id, ticket.item_key, facts=facts, clocks=clocks)

    def _state(self, tracker: str, item_id: str) -> TicketState | None:
        if (tracker, item_id) not in self._states:
            self._states[tracker, item_id] = self.ticket_state(tracker, item_id)
        return self._states[tracker, item_id]

    # -- review --------------------------------------------------------------------------------
    def review(self, now: datetime) -> list[str]:
        """Cancel rows whose until came true; release rows that no longer need to wait."""
        lines = []
        for row in self.outbox.rows(states=OPEN_STATES):
            ticket = self._state(row.tracker, row.item_id)
            if ticket is None:
                continue
            metric, cycle = row.context.get("metric") or None, int(row.context.get("cycle") or 0)
            stop = cancelled_by(untils(row.until), ticket, metric, cycle)
            if stop is None and row.kind == "page":
                # A page whose reason is already over (the clock stopped) would only wake someone up.
                stop = cancelled_by(untils(row.params.get("resolve_on")), ticket, metric, cycle)
            if stop is not None:
                self.outbox.update(row.id, state="cancelled", last_error=f"cancelled: {stop} came true")
                lines.append(f"{row.item_key} {row.rule}: {row.kind} cancelled ({stop})")
                continue
            if row.state != WAITING:
                continue
            waiting = (row.result or {}).get("waiting")
            if waiting == "template":
                template = self.rules.templates.get(str(row.params.get("template")))
                if template is None or not self._blocking(template, ticket):
                    self.outbox.update(row.id, state=PENDING, due_at=now)
            elif waiting == "edit":
                if _digest(ticket.facts) != (row.result or {}).get("facts"):
                    self.outbox.update(row.id, state=PENDING, due_at=now)
            elif waiting == "group":
                earlier = [r for r in self.outbox.rows(group_key=row.group_key) if r.position < row.position]
                if all(r.state in FINAL_STATES for r in earlier):
                    self.outbox.update(row.id, state=PENDING, due_at=now)
        return lines

    def _blocking(self, template: Template, ticket: TicketState) -> list[str]:
        """The missing template fields that hold an escalation back (none at never_block levels)."""
        if ticket.severity in template.never_block:
            return []
        return missing_fields(template, ticket.facts)

    # -- execute -------------------------------------------------------------------------------
    def execute(self, engine: EscalationEngine, now: datetime) -> list[str]:
        lines: list[str] = []
        tried: set[int] = set()
        while True:
            # A finished action releases the ones after it in its step: run those this round too.
            due = [row for row in self.outbox.due(now) if row.id not in tried]
            if not due:
                return lines
            for row in due:
                tried.add(row.id)
                lines += self._execute_row(engine, row, now)

    def _execute_row(self, engine: EscalationEngine, due: ActionRow, now: datetime) -> list[str]:
        row = self.outbox.get(due.id)  # an earlier row of this round may have changed it
        if row is None or row.state != PENDING:
            return []
        earlier = [r for r in self.outbox.rows(group_key=row.group_key) if r.position < row.position]
        blocking = [r for r in earlier if r.state not in FINAL_STATES]
        if blocking:
            # Actions of one step run in order: the note naming the created issue waits for it.
            if any(r.state == WAITING for r in blocking):
                self.outbox.update(row.id, state=WAITING, result={"waiting": "group"})
            else:
                self.outbox.update(row.id, due_at=max(now, *(r.due_at for r in blocking)))
            return []
        ticket = self._state(row.tracker, row.item_id)
        if ticket is None:  # the SLA service never recorded it (a store edited by hand?)
            return [self._failed(row, Permanent(row.tracker, f"ticket {row.item_key} is not in the store"), now,
                                 permanent=True)]
        try:
            outcome = self._run_action(engine, row, ticket, earlier, now)
        except TrackerError as error:
            return [self._failed(row, error, now, permanent=isinstance(error, Permanent))]
        except (ValueError, KeyError) as error:  # a bad value in the rule (e.g. a page severity)
            return [self._failed(row, error, now, permanent=True)]
        result = {**(row.result or {}), **outcome.result}
        if outcome.state == DONE:
            result.pop("waiting", None)
        self.outbox.update(row.id, state=outcome.state, result=result, last_error=None,
                           attempts=row.attempts + 1 if outcome.state == DONE else row.attempts)
        if outcome.state in FINAL_STATES:
            self._release_group(row, now)
        if not outcome.line:
            return []
        log.info("escalation.action", ticket=row.item_key, rule=row.rule, kind=row.kind, state=outcome.state)
        return [outcome.line]

    def _release_group(self, finished: ActionRow, now: datetime) -> None:
        """Rows of the same step that waited for this one may run now."""
        group = self.outbox.rows(group_key=finished.group_key)
        for row in group:
            if row.state == WAITING and (row.result or {}).get("waiting") == "group" and all(
                    r.state in FINAL_STATES for r in group if r.position < row.position and r.id != finished.id):
                self.outbox.update(row.id, state=PENDING, due_at=now)

    def _failed(self, row: ActionRow, error: Exception, now: datetime, *, permanent: bool) -> str:
        attempts = row.attempts + 1
        message = scrub_text(str(error))[:1000]
        if permanent or attempts >= MAX_ATTEMPTS:
            self.outbox.update(row.id, state=FAILED, attempts=attempts, last_error=message)
            self._release_group(row, now)  # one bad action does not hold back the rest of its step
            log.warning("escalation.failed", ticket=row.item_key, rule=row.rule, kind=row.kind, error=message)
            return f"{row.item_key} {row.rule}: {row.kind} failed: {message}"
        wait = min(RETRY_FIRST * 2 ** (attempts - 1), RETRY_MAX)
        self.outbox.update(row.id, attempts=attempts, last_error=message, due_at=now + wait)
        log.warning("escalation.retry", ticket=row.item_key, rule=row.rule, kind=row.kind, error=message,
                    attempt=attempts, retry_at=iso_utc(now + wait))
        return f"{row.item_key} {row.rule}: {row.kind} will be retried at {iso_utc(now + wait)}: {message}"

    def _values(self, row: ActionRow, ticket: TicketState, earlier: Sequence[ActionRow]) -> dict[str, Any]:
        """What the {placeholders} of this action's texts stand for."""
        created = next((r.result for r in earlier if r.kind == "create_issue" and r.result and r.result.get("key")),
                       None) or {}
        missing = next((r.result.get("missing_labels") for r in earlier if r.result and
                        r.result.get("missing_labels")), None) or (row.result or {}).get("missing_labels") or []
        return {"ticket.id": row.item_id, "ticket.key": row.item_key, "severity": ticket.severity or "",
                "rule": row.rule, "metric": row.context.get("metric", ""), "cycle": row.context.get("cycle", 1),
                "threshold": row.context.get("threshold", ""), "field": row.context.get("field", ""),
                "value": row.context.get("value", ""), "tag": row.context.get("tag", ""),
                "created.key": created.get("key", "(not created)"), "created.url": created.get("url", ""),
                "missing_fields": ", ".join(missing) or "none"}

    def _run_action(self, engine: EscalationEngine, row: ActionRow, ticket: TicketState,
                    earlier: Sequence[ActionRow], now: datetime) -> _Outcome:
        values = self._values(row, ticket, earlier)
        handler = getattr(self, f"_do_{row.kind}")
        outcome: _Outcome = handler(engine, row, ticket, values, now)
        return outcome

    # -- actions -------------------------------------------------------------------------------
    def _do_create_issue(self, engine: EscalationEngine, row: ActionRow, ticket: TicketState,
                         values: dict[str, Any], now: datetime) -> _Outcome:
        flow = str(row.params["flow"])
        template = self.rules.templates.get(str(row.params.get("template")))
        appendix, result = None, dict(row.result or {})
        if template is not None:
            missing = missing_fields(template, ticket.facts)
            labels = [template.label(key) for key in missing]
            if missing and ticket.severity not in template.never_block:
                if not result.get("template_note"):
                    # ONE note per held-back escalation, however many passes it waits.
                    body = (f"Escalation to engineering ({row.rule}) is waiting for the ticket template "
                            f"'{template.name}': missing {', '.join(labels)}. It continues by itself once "
                            "they are filled in.")
                    self._comment(row, f"{row.key[:24]}-template", body, public=False)
                    result["template_note"] = True
                return _Outcome(WAITING, {**result, "waiting": "template", "missing": missing,
                                          "missing_labels": labels},
                                f"{row.item_key} {row.rule}: waiting for template fields: {', '.join(labels)}")
            appendix = template_appendix(template, ticket.facts)
            result["missing_labels"] = labels
        fields = row.params.get("fields")
        escalated = engine.escalate(flow, row.item_id, extra_fields=dict(fields) if fields else None,
                                    appendix=appendix)
        if getattr(escalated, "blocked", None):
            # The engine found personal data after redaction, created nothing and left a note saying
            # so. The escalation waits for the ticket to be edited, then tries again.
            return _Outcome(WAITING, {**result, "waiting": "edit", "blocked": escalated.blocked,
                                      "facts": _digest(ticket.facts)},
                            f"{row.item_key} {row.rule}: blocked ({escalated.blocked}); waits for an edit")
        link = escalated.link
        if link is None:
            raise Permanent(flow, "the engine created no link")
        side = "right" if link.left_id == row.item_id else "left"
        issue_id, issue_key = link.id_on(side), link.key_on(side)
        result.update({"flow": flow, "id": issue_id, "key": issue_key, "created": bool(escalated.created),
                       "url": self._issue_url(flow, side, issue_id)})
        verb = "created" if escalated.created else "found"
        return _Outcome(DONE, result, f"{row.item_key} {row.rule}: {verb} {issue_key} through {flow}")

    def _issue_url(self, flow: str, side: str, issue_id: str) -> str:
        """Where an engineer opens the issue; best effort (the issue exists whether or not we learn it)."""
        trackers = self.flows.get(flow)
        connector = self.connectors.get(trackers[0 if side == "left" else 1]) if trackers else None
        if connector is None:
            return ""
        try:
            return connector.fetch(issue_id).url
        except TrackerError as error:
            log.info("escalation.issue_url_unknown", flow=flow, issue=issue_id, error=error.message)
            return ""

    def _do_comment(self, engine: EscalationEngine, row: ActionRow, ticket: TicketState,
                    values: dict[str, Any], now: datetime) -> _Outcome:
        public = bool(row.params.get("public", False))
        self._comment(row, row.key[:24], render(str(row.params["body"]), values), public=public)
        kind = "public reply" if public else "internal note"
        return _Outcome(DONE, {"comment": True}, f"{row.item_key} {row.rule}: {kind} posted")

    def _comment(self, row: ActionRow, marker: str, body: str, *, public: bool) -> None:
        """Post once: after a failed attempt (maybe posted, answer lost) look for the marker first."""
        ref = f"escalation:{marker}"
        connector = self.connectors[row.tracker]
        if row.attempts > 0:
            current = connector.fetch(row.item_id)
            if any(c.mirrored_from == ref for c in current.comments or ()):
                log.info("escalation.comment_found", ticket=row.item_key, ref=ref)
                return
        connector.push(row.item_id, [AddComment(with_comment_marker(body, ref), public, ref)])

    def _do_set_field(self, engine: EscalationEngine, row: ActionRow, ticket: TicketState,
                      values: dict[str, Any], now: datetime) -> _Outcome:
        name = str(row.params["field"])
        value = row.params.get("value")
        if isinstance(value, str):
            value = render(value, values)
        native = self.policy.native_field(name, self.types[row.tracker])
        self.connectors[row.tracker].push(row.item_id, [Update({native: value})])
        return _Outcome(DONE, {"field": native, "value": value}, f"{row.item_key} {row.rule}: {name} set to {value!r}")

    def _do_raise_priority(self, engine: EscalationEngine, row: ActionRow, ticket: TicketState,
                           values: dict[str, Any], now: datetime) -> _Outcome:
        levels = self.policy.levels
        current = ticket.severity if ticket.severity in levels else levels[-1]
        if "to" in row.params:
            target = str(row.params["to"])
        else:
            ceiling = self.policy.rank(str(row.params.get("max", levels[0])))
            target = levels[max(self.policy.rank(current) - int(row.params.get("by", 1)), ceiling)]
        if self.policy.rank(target) >= self.policy.rank(current):
            # The ratchet: an escalation raises, it never lowers (nor rewrites an equal level).
            return _Outcome(DONE, {"unchanged": current}, f"{row.item_key} {row.rule}: already {current}")
        field, value = self._severity_write(target)
        self.connectors[row.tracker].push(row.item_id, [Update({field: value})])
        return _Outcome(DONE, {"from": current, "to": target, "field": field, "value": value},
                        f"{row.item_key} {row.rule}: severity raised {current} -> {target}")

    def _severity_write(self, level: str) -> tuple[str, str]:
        """The ticket field and value that make the severity rules derive `level`: the first `from:`
        rule decides before every later one, so writing its field always takes effect."""
        for rule in self.policy.derive:
            if rule.source is None:
                continue
            value = next((k for k, v in rule.table.items() if v == level), None)
            if value is not None:
                return rule.source, value
        raise Permanent("policy", f"no severity rule (derive: from:) maps a value to {level}")

    def _do_attach(self, engine: EscalationEngine, row: ActionRow, ticket: TicketState,
                   values: dict[str, Any], now: datetime) -> _Outcome:
        name = str(row.params["field"])
        issue = ticket.facts.get(name)
        if issue in (None, "", False):
            return _Outcome(DONE, {"skipped": f"{name} is empty"}, "")
        link = engine.attach(str(row.params["flow"]), row.item_id, str(issue).strip())
        side = "right" if link.left_id == row.item_id else "left"
        return _Outcome(DONE, {"key": link.key_on(side), "id": link.id_on(side)},
                        f"{row.item_key} {row.rule}: attached to {link.key_on(side)}")

    def _do_page(self, engine: EscalationEngine, row: ActionRow, ticket: TicketState,
                 values: dict[str, Any], now: datetime) -> _Outcome:
        if self.pager is None:
            raise Permanent("paging", "paging is not configured: add a paging: section to config.yaml")
        dedup_key = render(str(row.params.get("dedup_key") or DEFAULT_DEDUP_KEY), values)
        summary = render(str(row.params.get("summary") or DEFAULT_SUMMARY), values)
        severity = str(row.params.get("severity") or "critical")
        details: dict[str, Any] = {"ticket": row.item_key, "rule": row.rule, "severity": ticket.severity or ""}
        if row.context.get("metric"):
            details.update(metric=row.context["metric"], cycle=row.context.get("cycle"))
        self.pager.trigger(dedup_key, summary, self.page_source, severity, custom_details=details)
        self.outbox.open_page(dedup_key, row.tracker, row.item_id, row.key, row.context.get("metric") or None,
                              int(row.context.get("cycle") or 0), list(row.params.get("resolve_on") or []), now)
        return _Outcome(DONE, {"dedup_key": dedup_key}, f"{row.item_key} {row.rule}: paged ({dedup_key})")

    # -- pages ---------------------------------------------------------------------------------
    def resolve_pages(self, now: datetime) -> list[str]:
        lines = []
        for page in self.outbox.pages("open"):
            ticket = self._state(page.tracker, page.item_id)
            if ticket is None or self.pager is None:
                continue
            reason = cancelled_by(untils(page.resolve_on), ticket, page.metric, page.cycle)
            if reason is None:
                continue
            try:
                self.pager.resolve(page.dedup_key)
            except TrackerError as error:  # tried again next round
                self.outbox.page_error(page.dedup_key, scrub_text(str(error))[:1000])
                continue
            self.outbox.close_page(page.dedup_key, now)
            log.info("escalation.page_resolved", ticket=ticket.key, dedup_key=page.dedup_key, reason=str(reason))
            lines.append(f"{ticket.key}: page {page.dedup_key} resolved ({reason})")
        return lines


def _level(value: Any) -> Any:
    """A severity event's value is {level, flags}: the level is what rules compare."""
    return value.get("level") if isinstance(value, dict) else value


def _new_action(p: PlannedAction) -> NewAction:
    context = dict(p.context)
    return NewAction(key=p.key, group_key=p.group, position=p.position, rule=p.rule, step=p.step, kind=p.kind,
                     tracker=p.tracker, item_id=p.ticket_id, item_key=p.ticket_key, params=dict(p.params),
                     context=context, until=[u.raw for u in p.until], due_at=p.due_at)


def _digest(facts: Mapping[str, Any]) -> str:
    """A fingerprint of the ticket's observed values: tells whether it was edited since."""
    return hashlib.sha256(json.dumps(facts, sort_keys=True, default=str).encode()).hexdigest()[:16]
