"""The escalation outbox: every planned escalation action is a row with a unique idempotency key.

Rows are inserted by the trigger scan together with the scan cursors (ids of the last ticket and
SLA events read), in one transaction: a crash either loses both (the events are scanned again and
plan the same keys) or keeps both. Inserting a key that exists does nothing, so the same trigger
seen twice is one row, and a row runs its action once: `done` is final, a failure is retried with
back-off until `failed`.

States: pending (runs at due_at), waiting (held back, e.g. a ticket template lacks fields),
done, cancelled (an `until:` came true), failed (gave up; last_error says why).

Pages opened by `page` actions are kept in their own table until their `resolve_on` comes true.
The tables live on the store's metadata (migration 0004).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .store import (
    SlaEvent,
    Store,
    TicketEvent,
    UTCDateTime,
    _insert,
    _json_value,
    cursors_t,
    metadata,
    sla_events_t,
    ticket_events_t,
)

PENDING, WAITING, DONE, CANCELLED, FAILED = "pending", "waiting", "done", "cancelled", "failed"
OPEN_STATES = (PENDING, WAITING)
FINAL_STATES = (DONE, CANCELLED, FAILED)
CURSOR_TRACKER = "escalation"  # rows of the store's cursors table: (escalation, ticket_events|sla_events)

escalation_actions_t = sa.Table(
    "escalation_actions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("key", sa.String(64), nullable=False),
    sa.Column("group_key", sa.String(64), nullable=False),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("rule", sa.String(100), nullable=False),
    sa.Column("step", sa.Integer, nullable=False),
    sa.Column("kind", sa.String(30), nullable=False),
    sa.Column("tracker", sa.String(100), nullable=False),
    sa.Column("item_id", sa.String(255), nullable=False),
    sa.Column("item_key", sa.String(255), nullable=False),
    sa.Column("params", sa.JSON, nullable=False),
    sa.Column("context", sa.JSON, nullable=False),
    sa.Column("until", sa.JSON, nullable=False),
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("due_at", UTCDateTime, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("result", sa.JSON, nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("key", name="uq_escalation_actions_key"),
    sa.Index("ix_escalation_actions_state_due", "state", "due_at"),
    sa.Index("ix_escalation_actions_group", "group_key"),
    sqlite_autoincrement=True,
)

escalation_pages_t = sa.Table(
    "escalation_pages",
    metadata,
    sa.Column("dedup_key", sa.String(255), primary_key=True),
    sa.Column("tracker", sa.String(100), nullable=False),
    sa.Column("item_id", sa.String(255), nullable=False),
    sa.Column("action_key", sa.String(64), nullable=False),
    sa.Column("metric", sa.String(100), nullable=True),
    sa.Column("cycle", sa.Integer, nullable=False),
    sa.Column("resolve_on", sa.JSON, nullable=False),
    sa.Column("state", sa.String(20), nullable=False),  # open | resolved
    sa.Column("triggered_at", UTCDateTime, nullable=False),
    sa.Column("resolved_at", UTCDateTime, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Index("ix_escalation_pages_state", "state"),
)


@dataclass(frozen=True)
class ActionRow:
    id: int
    key: str
    group_key: str
    position: int
    rule: str
    step: int
    kind: str
    tracker: str
    item_id: str
    item_key: str
    params: dict[str, Any]
    context: dict[str, Any]
    until: list[Any]
    state: str
    due_at: datetime
    attempts: int
    last_error: str | None
    result: dict[str, Any] | None


@dataclass(frozen=True)
class NewAction:
    """A planned action as the outbox stores it (JSON-ready values)."""

    key: str
    group_key: str
    position: int
    rule: str
    step: int
    kind: str
    tracker: str
    item_id: str
    item_key: str
    params: dict[str, Any]
    context: dict[str, Any]
    until: list[Any]
    due_at: datetime


@dataclass(frozen=True)
class Page:
    dedup_key: str
    tracker: str
    item_id: str
    action_key: str
    metric: str | None
    cycle: int
    resolve_on: list[Any]
    state: str
    triggered_at: datetime
    resolved_at: datetime | None
    last_error: str | None


def _row(r: sa.Row[Any]) -> ActionRow:
    return ActionRow(id=r.id, key=r.key, group_key=r.group_key, position=r.position, rule=r.rule, step=r.step,
                     kind=r.kind, tracker=r.tracker, item_id=r.item_id, item_key=r.item_key,
                     params=dict(r.params), context=dict(r.context), until=list(r.until), state=r.state,
                     due_at=r.due_at, attempts=r.attempts, last_error=r.last_error,
                     result=dict(r.result) if r.result is not None else None)


def _page(r: sa.Row[Any]) -> Page:
    return Page(dedup_key=r.dedup_key, tracker=r.tracker, item_id=r.item_id, action_key=r.action_key,
                metric=r.metric, cycle=r.cycle, resolve_on=list(r.resolve_on), state=r.state,
                triggered_at=r.triggered_at, resolved_at=r.resolved_at, last_error=r.last_error)


def _now() -> datetime:
    return datetime.now(UTC)


class Outbox:
    def __init__(self, store: Store) -> None:
        self._engine = store.sa_engine

    # -- the trigger scan ------------------------------------------------------------------------
    def cursors(self) -> tuple[int, int]:
        """(last ticket_events id, last sla_events id) scanned."""
        with self._engine.begin() as conn:
            return self._cursor(conn, "ticket_events"), self._cursor(conn, "sla_events")

    @staticmethod
    def _cursor(conn: Connection, scope: str) -> int:
        t = cursors_t
        value = conn.execute(sa.select(t.c.value).where(t.c.tracker == CURSOR_TRACKER, t.c.scope == scope)
                             ).scalar_one_or_none()
        return int(value) if value is not None else 0

    def last_ids(self) -> tuple[int, int]:
        """(newest ticket_events id, newest sla_events id): where the history ends now."""
        with self._engine.begin() as conn:
            ticket, sla = (int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(t.c.id), 0))).scalar_one())
                           for t in (ticket_events_t, sla_events_t))
        return ticket, sla

    def start_cursors_at(self, ticket_id: int, sla_id: int, now: datetime) -> None:
        """Set the cursors and the first start's instant unless they exist: on the first start,
        rules apply from then on. Events recorded before escalations were switched on (a store that
        synced for months) must not fire a year of escalations at once."""
        with self._engine.begin() as conn:
            for scope, value in (("ticket_events", str(ticket_id)), ("sla_events", str(sla_id)),
                                 ("started", now.astimezone(UTC).isoformat())):
                if conn.execute(sa.select(cursors_t.c.value).where(
                        cursors_t.c.tracker == CURSOR_TRACKER, cursors_t.c.scope == scope)).first() is None:
                    self._set_cursor(conn, scope, value)

    def started_at(self) -> datetime | None:
        """When escalations first ran on this store (None before the first run)."""
        t = cursors_t
        with self._engine.begin() as conn:
            value = conn.execute(sa.select(t.c.value).where(t.c.tracker == CURSOR_TRACKER, t.c.scope == "started")
                                 ).scalar_one_or_none()
        return datetime.fromisoformat(value) if value else None

    @staticmethod
    def _set_cursor(conn: Connection, scope: str, value: int | str) -> None:
        stmt = _insert(conn, cursors_t).values(tracker=CURSOR_TRACKER, scope=scope, value=str(value),
                                               updated_at=_now())
        conn.execute(stmt.on_conflict_do_update(index_elements=["tracker", "scope"],
                                                set_={"value": str(value), "updated_at": _now()}))

    def ticket_events_after(self, after_id: int, limit: int = 500) -> list[tuple[str, str, TicketEvent]]:
        """(tracker, item_id, event) of the events recorded after `after_id`, in id order."""
        t = ticket_events_t
        query = sa.select(t).where(t.c.id > after_id).order_by(t.c.id).limit(limit)
        with self._engine.begin() as conn:
            return [(r.tracker, r.item_id, TicketEvent(ref=r.ref, at=r.at, kind=r.kind, field=r.field, value=r.value,
                                                       public=r.public, by_agent=r.by_agent, source=r.source,
                                                       seq=r.id)) for r in conn.execute(query)]

    def previous_value(self, tracker: str, item_id: str, event: TicketEvent) -> Any:
        """The value the same kind of event (same field) had before this one; None at first sight."""
        t = ticket_events_t
        query = (sa.select(t.c.value).where(t.c.tracker == tracker, t.c.item_id == item_id, t.c.kind == event.kind,
                                            t.c.id != event.seq,
                                            sa.or_(t.c.at < event.at, sa.and_(t.c.at == event.at,
                                                                              t.c.id < event.seq)))
                 .order_by(t.c.at.desc(), t.c.id.desc()).limit(1))
        if event.field is not None:
            query = query.where(t.c.field == event.field)
        with self._engine.begin() as conn:
            row = conn.execute(query).first()
        return row.value if row is not None else None

    def sla_events_after(self, after_id: int, limit: int = 500) -> list[tuple[int, SlaEvent]]:
        t = sla_events_t
        query = sa.select(t).where(t.c.id > after_id).order_by(t.c.id).limit(limit)
        with self._engine.begin() as conn:
            return [(r.id, SlaEvent(tracker=r.tracker, item_id=r.item_id, metric=r.metric, cycle=r.cycle, kind=r.kind,
                                    threshold=r.threshold, nominal_at=r.nominal_at, recorded_at=r.recorded_at,
                                    detail=r.detail)) for r in conn.execute(query)]

    def add(self, actions: Iterable[NewAction], *, ticket_cursor: int | None = None,
            sla_cursor: int | None = None) -> int:
        """Insert the actions (a known key is skipped) and advance the cursors, in one transaction.
        Returns how many rows are new."""
        now, added = _now(), 0
        with self._engine.begin() as conn:
            for a in actions:
                stmt = _insert(conn, escalation_actions_t).values(
                    key=a.key, group_key=a.group_key, position=a.position, rule=a.rule, step=a.step, kind=a.kind,
                    tracker=a.tracker, item_id=a.item_id, item_key=a.item_key,
                    params=_json_value(a.params, "action params"), context=_json_value(a.context, "action context"),
                    until=_json_value(a.until, "until"), state=PENDING, due_at=a.due_at, attempts=0,
                    created_at=now, updated_at=now,
                ).on_conflict_do_nothing(index_elements=["key"])
                # RETURNING, not rowcount: psycopg reports -1 rows for ON CONFLICT inserts.
                added += conn.execute(stmt.returning(escalation_actions_t.c.id)).first() is not None
            if ticket_cursor is not None:
                self._set_cursor(conn, "ticket_events", ticket_cursor)
            if sla_cursor is not None:
                self._set_cursor(conn, "sla_events", sla_cursor)
        return added

    # -- rows ----------------------------------------------------------------------------------
    def rows(self, *, states: Sequence[str] | None = None, tracker: str | None = None,
             item_id: str | None = None, group_key: str | None = None) -> list[ActionRow]:
        t = escalation_actions_t
        query = sa.select(t).order_by(t.c.id)
        if states is not None:
            query = query.where(t.c.state.in_(list(states)))
        if tracker is not None:
            query = query.where(t.c.tracker == tracker)
        if item_id is not None:
            query = query.where(t.c.item_id == item_id)
        if group_key is not None:
            query = query.where(t.c.group_key == group_key)
        with self._engine.begin() as conn:
            return [_row(r) for r in conn.execute(query)]

    def get(self, row_id: int) -> ActionRow | None:
        t = escalation_actions_t
        with self._engine.begin() as conn:
            r = conn.execute(sa.select(t).where(t.c.id == row_id)).first()
        return _row(r) if r is not None else None

    def due(self, now: datetime, limit: int = 200) -> list[ActionRow]:
        """Pending rows whose time has come, oldest first."""
        t = escalation_actions_t
        query = (sa.select(t).where(t.c.state == PENDING, t.c.due_at <= now)
                 .order_by(t.c.due_at, t.c.id).limit(limit))
        with self._engine.begin() as conn:
            return [_row(r) for r in conn.execute(query)]

    def next_due(self) -> datetime | None:
        t = escalation_actions_t
        with self._engine.begin() as conn:
            value: datetime | None = conn.execute(sa.select(sa.func.min(t.c.due_at)).where(t.c.state == PENDING)
                                                  ).scalar_one()
        return value

    def update(self, row_id: int, **values: Any) -> None:
        """Set state / due_at / attempts / last_error / result of one row."""
        if "result" in values:
            _json_value(values["result"], "action result")
        t = escalation_actions_t
        with self._engine.begin() as conn:
            conn.execute(sa.update(t).where(t.c.id == row_id).values(**values, updated_at=_now()))

    # -- pages ---------------------------------------------------------------------------------
    def open_page(self, dedup_key: str, tracker: str, item_id: str, action_key: str, metric: str | None,
                  cycle: int, resolve_on: list[Any], at: datetime) -> None:
        """Record an open page; a page under the same dedup_key is the same PagerDuty incident."""
        _json_value(resolve_on, "resolve_on")
        values = {"tracker": tracker, "item_id": item_id, "action_key": action_key, "metric": metric,
                  "cycle": cycle, "resolve_on": resolve_on, "state": "open", "triggered_at": at,
                  "resolved_at": None, "last_error": None}
        with self._engine.begin() as conn:
            stmt = _insert(conn, escalation_pages_t).values(dedup_key=dedup_key, **values)
            conn.execute(stmt.on_conflict_do_update(index_elements=["dedup_key"], set_=values))

    def pages(self, state: str | None = None) -> list[Page]:
        t = escalation_pages_t
        query = sa.select(t).order_by(t.c.triggered_at)
        if state is not None:
            query = query.where(t.c.state == state)
        with self._engine.begin() as conn:
            return [_page(r) for r in conn.execute(query)]

    def close_page(self, dedup_key: str, at: datetime) -> None:
        t = escalation_pages_t
        with self._engine.begin() as conn:
            conn.execute(sa.update(t).where(t.c.dedup_key == dedup_key)
                         .values(state="resolved", resolved_at=at, last_error=None))

    def page_error(self, dedup_key: str, message: str) -> None:
        t = escalation_pages_t
        with self._engine.begin() as conn:
            conn.execute(sa.update(t).where(t.c.dedup_key == dedup_key).values(last_error=message))
