"""What the status page and /metrics show, read at request time.

Everything durable comes from the store (cursors, links, failures, SLA summaries, audit rows),
so every worker sharing a PostgreSQL store shows the same picture; HTTP traffic, rate-limit
headers and webhook deliveries are what *this* process has seen since it started.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from .. import logs
from ..connectors.http import HTTP_METRICS, HttpMetrics
from ..sync.config import Config
from ..sync.store import Failure, Link, Store, cursors_t, failures_t, links_t, sla_events_t
from ..sync.webhooks import Counters
from .urls import item_url


@dataclass(frozen=True)
class TrackerInfo:
    name: str
    type: str
    base_url: str
    poll_interval: float


@dataclass(frozen=True)
class FlowInfo:
    name: str
    left: str  # tracker names
    right: str


@dataclass(frozen=True)
class RetryOutcome:
    """What a Retry click did, in the words `ticketbridge failures retry` uses."""

    resolved: bool
    message: str


Retry = Callable[[Failure], RetryOutcome]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class StatusContext:
    """The running process's view: its store and config, its retry action, its counters."""

    store: Store
    trackers: Mapping[str, TrackerInfo]
    flows: Sequence[FlowInfo]
    retry: Retry | None = None
    webhooks: Counters | None = None
    http: HttpMetrics = field(default_factory=lambda: HTTP_METRICS)
    now: Callable[[], datetime] = utc_now
    started: float = field(default_factory=time.monotonic)

    @classmethod
    def from_config(cls, config: Config, store: Store, *, retry: Retry | None = None,
                    webhooks: Counters | None = None, now: Callable[[], datetime] = utc_now) -> StatusContext:
        trackers = {name: TrackerInfo(name, t.type, t.base_url, t.poll_interval) for name, t in config.trackers.items()}
        flows = [FlowInfo(f.name, f.mapping.left, f.mapping.right) for f in config.flows]
        return cls(store, trackers, flows, retry=retry, webhooks=webhooks, now=now)

    def url_of(self, tracker: str, item_id: str, item_key: str) -> str | None:
        info = self.trackers.get(tracker)
        return item_url(info.type, info.base_url, item_id, item_key) if info else None


# -- store reads the Store class has no method for (read-only, on its own tables) ---------------

def _connect(store: Store) -> sa.engine.Connection:
    # The Store keeps its engine private; the page only reads, in short transactions of its own.
    engine: sa.engine.Engine = store.sa_engine
    return engine.connect()


def ping(store: Store) -> None:
    """Raise unless the store answers with its schema in place (a fresh empty database does not)."""
    with _connect(store) as conn:
        conn.execute(sa.select(sa.func.count()).select_from(cursors_t)).scalar_one()


def cursor_rows(store: Store) -> dict[tuple[str, str], tuple[str, datetime]]:
    """(tracker, scope) -> (cursor value, when it was last saved)."""
    with _connect(store) as conn:
        rows = conn.execute(sa.select(cursors_t.c.tracker, cursors_t.c.scope, cursors_t.c.value,
                                      cursors_t.c.updated_at))
        return {(r.tracker, r.scope): (r.value, r.updated_at) for r in rows}


def link_counts(store: Store) -> dict[str, int]:
    with _connect(store) as conn:
        rows = conn.execute(sa.select(links_t.c.flow, sa.func.count()).group_by(links_t.c.flow))
        return {flow: int(n) for flow, n in rows}


def failure_counts(store: Store) -> list[tuple[str, str, str, int, int]]:
    """(flow, state, kind, failures, attempts summed)."""
    t = failures_t
    with _connect(store) as conn:
        rows = conn.execute(sa.select(t.c.flow, t.c.state, t.c.kind, sa.func.count(), sa.func.sum(t.c.attempts))
                            .group_by(t.c.flow, t.c.state, t.c.kind))
        return [(flow, state, kind, int(n), int(attempts or 0)) for flow, state, kind, n, attempts in rows]


def sla_event_counts(store: Store) -> dict[tuple[str, str], int]:
    """(kind, metric) -> SLA events recorded (warnings, breaches, ...)."""
    t = sla_events_t
    with _connect(store) as conn:
        rows = conn.execute(sa.select(t.c.kind, t.c.metric, sa.func.count()).group_by(t.c.kind, t.c.metric))
        return {(kind, metric): int(n) for kind, metric, n in rows}


def recent_links(store: Store, limit: int) -> list[Link]:
    """The newest links first, in one query (store.links() walks every link, oldest first). The
    snapshot column, the largest, is not read: the page shows only ids, keys and roles."""
    t = links_t
    columns = [t.c.id, t.c.flow, t.c.left_id, t.c.left_key, t.c.right_id, t.c.right_key, t.c.left_version,
               t.c.right_version, t.c.role]
    with _connect(store) as conn:
        rows = conn.execute(sa.select(*columns).order_by(t.c.id.desc()).limit(limit)).all()
    return [Link(id=r.id, flow=r.flow, left_id=r.left_id, left_key=r.left_key, right_id=r.right_id,
                 right_key=r.right_key, snapshot={}, left_version=r.left_version, right_version=r.right_version,
                 role=r.role) for r in rows]


# -- flows and trackers -------------------------------------------------------------------------

def cursor_time(value: str) -> datetime | None:
    """The instant a cursor stands for, when it is one: epoch seconds or ms, or ISO 8601."""
    text = value.strip()
    try:
        number = float(text)
    except ValueError:
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    if number > 1e12:
        number /= 1000.0
    return datetime.fromtimestamp(number, UTC) if number > 1e9 else None


@dataclass(frozen=True)
class SideHealth:
    tracker: str
    last_poll: datetime | None  # when the cursor was last saved
    poll_age: float | None  # seconds since then
    cursor_lag: float | None  # seconds between now and the instant the cursor stands for
    interval: float
    state: str  # ok | stale | never


@dataclass(frozen=True)
class FlowHealth:
    name: str
    sides: tuple[SideHealth, SideHealth]
    linked: int
    open_failures: int

    @property
    def state(self) -> str:
        states = {side.state for side in self.sides}
        if "stale" in states or "never" in states:
            return "stale" if "stale" in states else "never polled"
        return "failures" if self.open_failures else "ok"


def stale_after(interval: float) -> float:
    # Three missed polls, and never less than a minute: a slow pass is not yet an outage.
    return max(3 * interval, 60.0)


def flow_health(ctx: StatusContext) -> list[FlowHealth]:
    now = ctx.now()
    cursors = cursor_rows(ctx.store)
    linked = link_counts(ctx.store)
    open_by_flow: dict[str, int] = {}
    for flow_name, state, _kind, n, _attempts in failure_counts(ctx.store):
        if state == "open":
            open_by_flow[flow_name] = open_by_flow.get(flow_name, 0) + n
    result = []
    for flow in ctx.flows:
        sides = []
        for tracker in (flow.left, flow.right):
            interval = ctx.trackers[tracker].poll_interval if tracker in ctx.trackers else 60.0
            row = cursors.get((tracker, flow.name))
            if row is None:
                sides.append(SideHealth(tracker, None, None, None, interval, "never"))
                continue
            value, saved = row
            age = max((now - saved).total_seconds(), 0.0)
            stands_for = cursor_time(value)
            lag = max((now - stands_for).total_seconds(), 0.0) if stands_for else None
            sides.append(SideHealth(tracker, saved, age, lag, interval,
                                    "ok" if age <= stale_after(interval) else "stale"))
        result.append(FlowHealth(flow.name, (sides[0], sides[1]), linked.get(flow.name, 0),
                                 open_by_flow.get(flow.name, 0)))
    return result


_LIMIT_HEADERS = ("x-ratelimit-limit", "ratelimit-limit", "x-rate-limit")
_REMAINING_HEADERS = ("x-ratelimit-remaining", "ratelimit-remaining", "x-rate-limit-remaining")


def _first_number(headers: Mapping[str, str], names: Iterable[str]) -> float | None:
    for name in names:
        try:
            return float(headers[name])
        except (KeyError, ValueError):
            continue
    return None


@dataclass(frozen=True)
class TrackerTraffic:
    name: str
    type: str
    requests: dict[int, int]  # status -> responses (0: no response)
    rate_limit_waits: int
    limit: float | None
    remaining: float | None

    @property
    def headroom(self) -> float | None:
        """Share of the rate-limit budget left, 0..1 (None: the tracker sent no limit yet)."""
        if self.limit is None or self.remaining is None or self.limit <= 0:
            return None
        return max(0.0, min(1.0, self.remaining / self.limit))


def tracker_traffic(ctx: StatusContext) -> list[TrackerTraffic]:
    responses, waits, headers = ctx.http.snapshot()
    result = []
    for name, info in ctx.trackers.items():
        seen = headers.get(name, {})
        result.append(TrackerTraffic(
            name, info.type, {status: n for (tracker, status), n in sorted(responses.items()) if tracker == name},
            waits.get(name, 0), _first_number(seen, _LIMIT_HEADERS), _first_number(seen, _REMAINING_HEADERS)))
    return result


# -- failures, links, SLA -----------------------------------------------------------------------

@dataclass(frozen=True)
class FailureView:
    failure: Failure
    url: str | None
    message: str  # secrets masked


def open_failures(ctx: StatusContext) -> list[FailureView]:
    return [FailureView(f, ctx.url_of(f.tracker, f.item_id, f.item_key), logs.scrub_text(f.message))
            for f in ctx.store.failures(state="open")]


@dataclass(frozen=True)
class LinkView:
    link: Link
    left_tracker: str
    right_tracker: str
    left_url: str | None
    right_url: str | None


def linked_items(ctx: StatusContext, limit: int = 200) -> list[LinkView]:
    flows = {f.name: f for f in ctx.flows}
    views = []
    for link in recent_links(ctx.store, limit):
        flow = flows.get(link.flow)
        left, right = (flow.left, flow.right) if flow else ("", "")
        views.append(LinkView(link, left, right, ctx.url_of(left, link.left_id, link.left_key),
                              ctx.url_of(right, link.right_id, link.right_key)))
    return views


@dataclass(frozen=True)
class SlaClockView:
    tracker: str
    item_id: str
    item_key: str
    url: str | None
    severity: str
    metric: str
    status: str  # running | paused
    state: str  # ok | warning | breached
    due_at: datetime | None
    seconds_to_breach: float | None  # negative once breached


def _instant(text: Any) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(str(text).replace("Z", "+00:00"))


def warned_clocks(store: Store) -> set[tuple[str, str, str, int]]:
    """(tracker, item id, metric, cycle) of every clock that has warned (the SLA service records it)."""
    t = sla_events_t
    with _connect(store) as conn:
        rows = conn.execute(sa.select(t.c.tracker, t.c.item_id, t.c.metric, t.c.cycle).where(t.c.kind == "warning"))
        return {(r.tracker, r.item_id, r.metric, int(r.cycle)) for r in rows}


def sla_board(ctx: StatusContext) -> list[SlaClockView]:
    """Every running or paused clock, soonest breach first (breached ones on top)."""
    now = ctx.now()
    warned = warned_clocks(ctx.store)
    board = []
    for ticket in ctx.store.sla_tickets():
        summary = ticket.summary or {}
        for clock in summary.get("clocks", []):
            if clock.get("status") not in ("running", "paused"):
                continue
            due = _instant(clock.get("due_at"))
            left = (due - now).total_seconds() if due else None
            breached = bool(clock.get("breached")) or (left is not None and left < 0)
            key = (ticket.tracker, ticket.item_id, str(clock.get("metric")), int(clock.get("cycle") or 1))
            state = "breached" if breached else "warning" if key in warned else "ok"
            board.append(SlaClockView(ticket.tracker, ticket.item_id, ticket.item_key,
                                      ctx.url_of(ticket.tracker, ticket.item_id, ticket.item_key),
                                      str(summary.get("severity") or ""), str(clock.get("metric")),
                                      str(clock.get("status")), state, due, left))
    # Paused clocks have no due instant; they go last.
    return sorted(board, key=lambda c: (c.seconds_to_breach is None, c.seconds_to_breach or 0.0))
