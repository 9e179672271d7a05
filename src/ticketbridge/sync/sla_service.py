"""SLA clocks on synced tickets: history in; warnings, breaches and tracker fields out.

capture  `observe` turns each synced desk ticket into history events in the store;
decide   `compute_clocks` (pure, sync.policy.sla) rebuilds every clock from that history;
push     the due dates and state go to the ticket and its linked issues, only when they change;
commit   each warning and breach is recorded exactly once, and the earliest future one becomes
         the ticket's timer, so the engine sleeps until then instead of polling the clocks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from ..connectors.base import Connector
from ..connectors.errors import AuthError, TrackerError
from .model import AddComment, Item, Update, iso_utc, with_comment_marker
from .policy.history import MANAGED_TAGS, history_event, observe, severity_value
from .policy.policy import Policy
from .policy.sla import TicketSla, compute_clocks
from .store import Store, TicketEvent
from .workqueue import item_lock

log = structlog.get_logger(__name__)

DESK_TYPES = ("zendesk",)
RETRY_WRITE_AFTER = timedelta(minutes=1)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class SlaStats:
    warnings: list[str] = field(default_factory=list)
    breaches: list[str] = field(default_factory=list)
    fields_written: int = 0

    def merge(self, other: SlaStats) -> None:
        self.warnings += other.warnings
        self.breaches += other.breaches
        self.fields_written += other.fields_written


class SlaService:
    def __init__(self, store: Store, policy: Policy, connectors: Mapping[str, Connector],
                 tracker_types: Mapping[str, str], flows: Iterable[tuple[str, str, str]],
                 now: Callable[[], datetime] = utc_now) -> None:
        """flows: (flow name, left tracker, right tracker) for finding a ticket's linked issues."""
        self.store = store
        self.policy = policy
        self.connectors = dict(connectors)
        self.types = dict(tracker_types)
        self.flows = list(flows)
        self.now = now
        self._dirty: dict[tuple[str, str], None] = {}
        self._checked_versions = False
        self._bridge_writes: dict[tuple[str, str], dict[str, Any]] = {}

    # -- capture -------------------------------------------------------------------------------
    def is_desk(self, tracker: str) -> bool:
        return self.types.get(tracker) in DESK_TYPES

    def note_bridge_write(self, tracker: str, item_id: str, fields: Mapping[str, Any]) -> None:
        """The sync wrote these fields to a desk ticket on another tracker's behalf (origin tag)."""
        if self.is_desk(tracker) and fields:
            self._bridge_writes.setdefault((tracker, item_id), {}).update(fields)

    def observe(self, item: Item) -> None:
        if not self.is_desk(item.tracker):
            self._observe_engineering(item)
            return
        if item.comments is None:
            return
        key = (item.tracker, item.id)
        previous = self.store.sla_ticket(*key)
        observed, events = observe(self.policy, item, previous.observed if previous else None,
                                   self._bridge_writes.pop(key, None))
        self.store.record_observation(item.tracker, item.id, item.key, observed, events)
        self._dirty[key] = None

    def _observe_engineering(self, item: Item) -> None:
        """An engineering issue's severity (a label such as severity:sev3, or a field) that differs
        from what we wrote is a request to change its ticket's severity: it joins the ticket's
        history from that tracker and the ratchet decides (sla-semantics E11). Our field writer then
        sees the difference and writes the ticket's level back when the request was refused."""
        ttype = self.types.get(item.tracker, "")
        target = (self.policy.sla_fields.get(ttype) or {}).get("severity")
        claimed = read_sla_field(target, item.fields) if isinstance(target, str) else None
        if target is None or not claimed:
            return
        ref = f"{item.tracker}:{item.id}"
        for flow, left, right in self.flows:
            link = self.store.link_for(flow, "right", item.id) if right == item.tracker else None
            ticket = self.store.sla_ticket(left, link.left_id) if link is not None else None
            if link is None or ticket is None or (ticket.written.get(ref) or {}).get(target) == claimed:
                continue  # not a primary link's issue, or it still shows what we wrote
            event = TicketEvent(ref=f"severity:{ref}:{item.version}", at=item.updated_at, kind="severity",
                                value=severity_value(str(claimed), ()), source=ttype)
            self.store.record_observation(left, link.left_id, ticket.item_key, ticket.observed, [event])
            self.store.record_sla_written(left, link.left_id, ref, {target: claimed})
            self._dirty[(left, link.left_id)] = None

    # -- decide, push, commit ------------------------------------------------------------------
    def settle(self, *, timers: bool = True) -> SlaStats:
        """Evaluate every ticket observed since the last call and (`timers`) every ticket whose timer
        is due. Of several workers, each settles what it observed; one (the timers lease) the timers."""
        stats = SlaStats()
        now = self.now()
        # Swapped, not copied and cleared: the engine's threads may observe meanwhile.
        todo, self._dirty = self._dirty, {}
        if timers and not self._checked_versions:
            # Clocks computed under another policy or calendar version (an admin edited the file,
            # a holiday year rolled in) are recomputed from their history once, at start.
            self._checked_versions = True
            todo.update(dict.fromkeys((t.tracker, t.item_id) for t in self.store.sla_tickets()
                                      if (t.summary or {}).get("policy_version") != self.policy.version))
        if timers:
            todo.update(dict.fromkeys(self.store.due_sla_tickets(now)))
        for tracker, item_id in todo:
            # Evaluating writes due dates to the ticket: not while another worker syncs it.
            with self.store.locks.holding([item_lock(tracker, item_id)]) as free:
                if free:
                    stats.merge(self.evaluate(tracker, item_id, now))
                else:
                    self._dirty[(tracker, item_id)] = None  # the next settle
        return stats

    def next_wake(self) -> datetime | None:
        return self.store.next_sla_fire_at()

    def compute(self, tracker: str, item_id: str, now: datetime, *, explain: bool = False) -> TicketSla:
        history = [history_event(e) for e in self.store.ticket_events(tracker, item_id)]
        return compute_clocks(self.policy, self.types[tracker], history, now, explain=explain)

    def evaluate(self, tracker: str, item_id: str, now: datetime | None = None) -> SlaStats:
        now = now or self.now()
        stats = SlaStats()
        ticket = self.store.sla_ticket(tracker, item_id)
        if ticket is None:
            return stats
        sla = self.compute(tracker, item_id, now)
        for event in sla.events:
            alarm = event.kind in ("warning", "breach")
            # Deadline and policy changes may recur with the same label: their time tells them apart.
            threshold = event.threshold if alarm else f"{event.threshold}@{iso_utc(event.recorded_at)}"
            # An alarm is recorded when it is seen: never back-dated, even after downtime.
            recorded = max(event.recorded_at, now) if alarm else event.recorded_at
            detail = {"severity": sla.severity, "policy": sla.policy_id,
                      "nominal_recorded_at": iso_utc(event.recorded_at)}
            if not self.store.record_sla_event(tracker, item_id, event.metric, event.cycle, event.kind, threshold,
                                               event.nominal_at, recorded, detail):
                continue  # emitted before
            log.info(f"sla.{event.kind}", ticket=ticket.item_key, metric=event.metric, cycle=event.cycle,
                     threshold=threshold, nominal_at=iso_utc(event.nominal_at), severity=sla.severity)
            nominal = iso_utc(event.nominal_at)
            line = f"{ticket.item_key} {event.metric} {event.kind} {threshold} (nominally at {nominal})"
            if event.kind == "breach":
                stats.breaches.append(line)
            elif event.kind == "warning":
                stats.warnings.append(line)
        next_fire = sla.next_fire_at
        try:
            self._explain_refusals(tracker, item_id, sla, now)
            stats.fields_written += self._write_fields(tracker, item_id, ticket.written, sla)
        except AuthError:
            raise
        except TrackerError as error:
            log.warning("sla.write_failed", ticket=ticket.item_key, tracker=error.tracker, error=error.message)
            retry = now + RETRY_WRITE_AFTER
            next_fire = min(next_fire, retry) if next_fire else retry
        self.store.save_sla(tracker, item_id, summarize(sla, self.policy.version), next_fire)
        return stats

    def _write_fields(self, tracker: str, item_id: str, written: Mapping[str, Any], sla: TicketSla) -> int:
        """Write the SLA values that differ from what was last written; idempotent by construction."""
        count = 0
        values = sla_values(sla)
        targets = [(tracker, item_id, self.connectors[tracker], self.types[tracker])]
        for flow, left, right in self.flows:
            if left == tracker:
                link = self.store.link_for(flow, "left", item_id)
                if link is not None:
                    targets.append((right, link.right_id, self.connectors[right], self.types[right]))
        for target_tracker, target_id, connector, ttype in targets:
            spec = self.policy.sla_fields.get(ttype) or {}
            # A metric without a clock (no target at this severity) clears its field.
            desired: dict[str, Any] = {target: values.get(name) for name, target in spec.items()
                                       if isinstance(target, str)}
            if spec.get("tags") is True:
                desired["tags"] = sla_tags(sla)
            ref = f"{target_tracker}:{target_id}"
            last = written.get(ref) or {}
            changed = {k: v for k, v in desired.items() if last.get(k) != v}
            if not changed:
                continue
            push = {k: v for k, v in changed.items() if not k.startswith(LABEL_PREFIX)}
            if "tags" in push:
                push["tags"] = self._merged_tags(connector, target_id, changed["tags"])
            labels = {k: v for k, v in changed.items() if k.startswith(LABEL_PREFIX)}
            if labels:
                push["labels"] = self._merged_labels(connector, target_id, labels)
            connector.push(target_id, [Update(push)])
            self.store.record_sla_written(tracker, item_id, ref, changed)
            log.info("sla.fields_written", tracker=target_tracker, item=target_id, fields=sorted(changed))
            count += len(changed)
        return count

    def _explain_refusals(self, tracker: str, item_id: str, sla: TicketSla, now: datetime) -> None:
        """One internal note per severity change the ratchet refused. Posted before it is recorded,
        and looked for before it is posted, so a crash in between neither loses nor repeats it."""
        for event in sla.severity_rejected:
            label = f"{event.source}:{iso_utc(event.at)}:{event.value}"
            if any(e.kind == "severity_refused" and e.threshold == label
                   for e in self.store.sla_events(tracker, item_id)):
                continue
            connector = self.connectors[tracker]
            marker = f"ticketbridge:severity_refused/{label.replace(' ', '_')}"
            ticket = connector.with_comments(connector.fetch(item_id))
            if not any(c.mirrored_from == marker for c in ticket.comments or ()):
                allowed = ", ".join(self.policy.lower_sources) or "nobody"
                text = (f"Severity {event.value} from {event.source or 'unknown'} refused: only {allowed} may "
                        f"lower this ticket's severity ({sla.severity}). The {event.source} value was set back "
                        "and the SLA clocks did not change.")
                connector.push(item_id, [AddComment(with_comment_marker(text, marker), False, marker)])
            self.store.record_sla_event(tracker, item_id, "severity", 0, "severity_refused", label, event.at, now,
                                        {"value": event.value, "source": event.source})
            log.info("sla.severity_refused", tracker=tracker, item=item_id, value=event.value, source=event.source)

    def _merged_labels(self, connector: Connector, item_id: str, targets: Mapping[str, Any]) -> list[str]:
        # Labels are one list too: replace only the labels of our templates, keep the engineers' ones.
        labels = list(connector.fetch(item_id).fields.get("labels") or ())
        for target, value in targets.items():
            template = target[len(LABEL_PREFIX):]
            prefix = template.split("{value}")[0]
            labels = [label for label in labels if not str(label).startswith(prefix)]
            if value:
                labels.append(template.replace("{value}", str(value)))
        return labels

    def _merged_tags(self, connector: Connector, item_id: str, ours: list[str]) -> list[str]:
        # Tags are one list on Zendesk: keep the agents' tags, replace only the ones we manage.
        current = set(connector.fetch(item_id).fields.get("tags") or ())
        return sorted((current - MANAGED_TAGS) | set(ours))


# A target written "label:<prefix>{value}" is one label of the issue, e.g. "label:severity:{value}"
# keeps exactly one severity:<level> label on a GitHub issue (trackers without custom fields).
LABEL_PREFIX = "label:"


def read_sla_field(target: str, fields: Mapping[str, Any]) -> str | None:
    """The value an engineering item shows in an SLA field target (see LABEL_PREFIX)."""
    if target.startswith(LABEL_PREFIX):
        prefix = target[len(LABEL_PREFIX):].split("{value}")[0]
        found = [str(label)[len(prefix):] for label in fields.get("labels") or () if str(label).startswith(prefix)]
        return found[0] if len(found) == 1 else None
    value = fields.get(target)
    return value.get("value") if isinstance(value, dict) else None if value is None else str(value)


def sla_values(sla: TicketSla) -> dict[str, str | None]:
    """The SLA field values for the trackers: the due instant of each running clock in ISO 8601
    UTC (empty when the clock is not running: met, paused or not started), and a one-word state."""
    values: dict[str, str | None] = {"severity": sla.severity, "state": sla_state(sla)}
    for metric in dict.fromkeys(c.metric for c in sla.clocks):
        clock = sla.clock(metric)
        values[f"{metric}_due"] = iso_utc(clock.due_at) if clock is not None and clock.status == "running" else None
    return values


def sla_state(sla: TicketSla) -> str:
    live = [c for c in sla.clocks if c.status in ("running", "paused")]
    if any(c.breached for c in live) or any(c.outcome == "breached" for c in sla.clocks):
        return "breached"
    warned = {(e.metric, e.cycle) for e in sla.events if e.kind == "warning"}
    if any((c.metric, c.cycle) in warned for c in live):
        return "warning"
    if live and all(c.status == "paused" for c in live):
        return "paused"
    return "running" if live else "met"


def sla_tags(sla: TicketSla) -> list[str]:
    state = sla_state(sla)
    tags = {"breached": ["sla_breached"], "warning": ["sla_warning"], "paused": ["sla_paused"]}.get(state, [])
    return sorted([*tags, *(f for f in sla.flags if f == "needs_triage")])


def summarize(sla: TicketSla, policy_version: str) -> dict[str, Any]:
    """What the board, `sla explain` and `sla report` read without recomputing."""
    return {
        "severity": sla.severity, "flags": list(sla.flags), "policy": sla.policy_id, "state": sla_state(sla),
        "policy_version": policy_version,
        "clocks": [{
            "metric": c.metric, "cycle": c.cycle, "status": c.status, "breached": c.breached,
            "target_seconds": c.target_seconds, "target_kind": c.target_kind, "calendar": c.calendar,
            "started_at": iso_utc(c.started_at), "stopped_at": iso_utc(c.stopped_at), "due_at": iso_utc(c.due_at),
            "consumed": c.consumed, "remaining": c.remaining, "outcome": c.outcome,
            "breach_nominal_at": iso_utc(c.breach_nominal_at),
        } for c in sla.clocks],
    }
