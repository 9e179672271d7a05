"""Ticket snapshots -> history events for the SLA clocks. Pure: no I/O, no clock.

The trackers are polled, so what we see is a sequence of snapshots. Each difference from the
previous snapshot becomes an event stamped with the tracker's own clock (`updated_at`), never
with the time we happened to look; replies carry their own timestamps. Every event has a `ref`
so that seeing the same snapshot twice (a replay after a crash) records nothing new.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from ..model import Item, iso_utc
from ..store import TicketEvent
from .policy import Policy
from .sla import HistoryEvent

# Tags that ticketbridge itself sets: never history, or our own writes would look like changes.
MANAGED_TAGS = frozenset({"sla_warning", "sla_breached", "sla_paused", "needs_triage"})


def _created_at(item: Item) -> datetime:
    raw = item.fields.get("created_at")
    if isinstance(raw, str) and raw:
        return datetime.fromisoformat(raw.replace("Z", "+00:00")).astimezone(UTC)
    return item.updated_at


def observe(policy: Policy, item: Item, previous: Mapping[str, Any] | None,
            bridge_writes: Mapping[str, Any] | None = None,
            tracker_type: str = "zendesk") -> tuple[dict[str, Any], list[TicketEvent]]:
    """(values observed now, events since `previous`) for one desk ticket.

    Fields are recorded under the names the policy uses: a logical name from the policy's
    `fields:` section (incident_active) is read from the tracker's own field (custom_fields.360005),
    so the metrics and escalation rules never depend on one desk's field ids.

    `bridge_writes`: fields ticketbridge itself wrote to this ticket (from another tracker's
    change). A severity change they cause is attributed to the bridge, not to an agent, so the
    ratchet refuses a lowering that did not come from support.
    """
    at = item.updated_at
    stamp = iso_utc(at)
    text = f"{item.fields.get('subject') or ''}\n{item.fields.get('description') or ''}"
    derived = policy.derive_severity(item.fields, text)
    observed: dict[str, Any] = {
        "status": item.fields.get("status"),
        "severity": derived.level,
        "flags": list(derived.flags),
        "tags": sorted(set(item.fields.get("tags") or ()) - MANAGED_TAGS),
        "fields": {name: item.fields.get(policy.native_field(name, tracker_type)) for name in policy.watched_fields},
    }
    events: list[TicketEvent] = []
    if previous is None:
        created = _created_at(item)
        # First sight: the ticket was created as it is now, except that a status other than
        # "new" was reached at the last update (the best the snapshot tells).
        events.append(TicketEvent(ref="created", at=created, kind="created", value="new", source="zendesk"))
        events.append(TicketEvent(ref=f"severity:{iso_utc(created)}:{derived.level}", at=created, kind="severity",
                                  value=severity_value(derived.level, derived.flags), source="derived"))
        if observed["tags"]:
            events.append(TicketEvent(ref=f"tags:{iso_utc(created)}", at=created, kind="tags",
                                      value=observed["tags"], source="zendesk"))
        for name, value in observed["fields"].items():
            if value not in (None, "", False):
                events.append(TicketEvent(ref=f"field:{name}:{stamp}", at=at, kind="field", field=name,
                                          value=value, source="zendesk"))
        if observed["status"] not in (None, "new"):
            events.append(TicketEvent(ref=f"status:{stamp}:{observed['status']}", at=max(at, created),
                                      kind="status", value=observed["status"], source="zendesk"))
    else:
        if observed["status"] != previous.get("status"):
            events.append(TicketEvent(ref=f"status:{stamp}:{observed['status']}", at=at, kind="status",
                                      value=observed["status"], source="zendesk"))
        if observed["severity"] != previous.get("severity"):
            source = "bridge" if _caused_by_bridge(item, bridge_writes) else "zendesk_agent"
            events.append(TicketEvent(ref=f"severity:{stamp}:{derived.level}", at=at, kind="severity",
                                      value=severity_value(derived.level, derived.flags), source=source))
        if observed["tags"] != previous.get("tags"):
            events.append(TicketEvent(ref=f"tags:{stamp}", at=at, kind="tags", value=observed["tags"],
                                      source="zendesk"))
        before = previous.get("fields") or {}
        for name, value in observed["fields"].items():
            if value != before.get(name):
                events.append(TicketEvent(ref=f"field:{name}:{stamp}", at=at, kind="field", field=name,
                                          value=value, source="zendesk"))
    events.extend(_reply_events(item))
    return observed, events


def severity_value(level: str, flags: Sequence[str]) -> dict[str, Any]:
    """A severity event's stored value: the level and the flags its derivation added."""
    return {"level": level, "flags": list(flags)}


def history_event(event: TicketEvent) -> HistoryEvent:
    """A stored event as the clock engine takes it."""
    value, flags = event.value, ()
    if event.kind == "severity" and isinstance(value, dict):
        flags = tuple(value.get("flags") or ())
        value = value.get("level")
    return HistoryEvent(at=event.at, seq=event.seq, kind=event.kind, field=event.field, value=value,
                        public=event.public, by_agent=event.by_agent, source=event.source, flags=flags)


def _caused_by_bridge(item: Item, bridge_writes: Mapping[str, Any] | None) -> bool:
    return bool(bridge_writes) and all(item.fields.get(k) == v for k, v in (bridge_writes or {}).items())


def _reply_events(item: Item) -> Sequence[TicketEvent]:
    """Every comment, with who wrote it: only a human agent's public reply stops first response."""
    return [TicketEvent(ref=f"comment:{c.id}", at=c.created_at, kind="comment", public=c.public,
                        by_agent=c.by_agent, source="zendesk" if c.mirrored_from is None else "bridge")
            for c in item.comments or ()]
