"""The sync loop: capture -> normalize -> map -> decide -> push -> commit.

One pass of a flow polls both trackers from their stored cursors, decides per item with the pure
functions of `decide`, pushes through the connectors and commits each item's outcome all or nothing:
the polled items of a batch in one store transaction (see `_FlowPass._sync_page`), any other item
(a webhook's, a worker's, a retry) in one of its own. A cursor advances only after every item of its
page is committed or recorded as a failure, so a crash at any point replays work instead of losing
it; snapshots make the replay harmless, and the creation intent + marker search make it
duplicate-free.

Links are many-to-many (see store.py): processing an item syncs it with every item it is linked
to. A primary link syncs both ways; a follower link (a ticket attached to an existing engineering
item) only carries engineering -> desk. The escalation service enters through `Engine.escalate`
(create the engineering counterpart now, whatever the flow's create mode) and `Engine.attach`
(follow an existing engineering item), and runs its own timers through the `escalation` hook.

Every item is processed under its lock and the locks of its counterparts (`Store.locks`: advisory
locks on PostgreSQL), so no pair is synced by two processes at once. Several workers share the
work through the work queue: `Engine.poll_into` queues what a poll returned, `Engine.work` syncs
what a worker claimed (see workqueue.py and workers.py).
"""

from __future__ import annotations

import contextvars
import copy
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_all
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar

import structlog

from ..connectors.base import Connector
from ..connectors.errors import AuthError, NotFound, Retryable, TrackerError
from ..connectors.http import DEFAULT_TIMEOUT
from .decide import (
    SIDES,
    TRACKER_TITLES,
    Scrub,
    canon,
    comment_ops,
    decide_create,
    decide_follower,
    decide_pair,
    field_names,
)
from .mapping import FlowMapping
from .model import (
    AddComment,
    Create,
    Decision,
    Item,
    Operation,
    PushResult,
    Side,
    Transition,
    Update,
    other,
    with_comment_marker,
)
from .scrubbing import Scrubber
from .sla_service import SlaService, SlaStats
from .store import FOLLOWER, Batch, Failure, ItemCommit, Link, Store, link_stamp
from .workqueue import WorkItem, WorkQueue, item_lock

log = structlog.get_logger(__name__)
T = TypeVar("T")


@dataclass
class Flow:
    mapping: FlowMapping
    left: Connector
    right: Connector
    scrub: Scrubber | None = None  # set when the mapping says `redact: true`

    @property
    def name(self) -> str:
        return self.mapping.name

    def connector(self, side: Side) -> Connector:
        return self.left if side == "left" else self.right

    def select(self, side: Side) -> Mapping[str, Any]:
        return self.mapping.select_left if side == "left" else self.mapping.select_right

    def creates_from(self, side: Side) -> bool:
        """Whether the sync pass creates counterparts of new items on `side` by itself."""
        return self.mapping.create_left_to_right if side == "left" else self.mapping.create_right_to_left

    def scrub_for(self, desk_item: Item) -> Scrub:
        """The scrubber for text leaving `desk_item`, knowing the people on it (None: no redaction)."""
        return self.scrub.for_item(desk_item) if self.scrub is not None else None


@dataclass(frozen=True)
class Planned:
    """One item's decision, for `plan` and for tests."""

    flow: str
    side: Side
    key: str
    decision: Decision
    counterpart: str | None


@dataclass(frozen=True)
class Escalated:
    """What `Engine.escalate` did."""

    link: Link | None  # None when blocked
    created: bool  # False when the counterpart already existed (link, intent+marker search)
    blocked: str | None = None  # why nothing was created (e.g. "pii_detected: phone, email"), never the PII


@dataclass(frozen=True)
class Retried:
    """What `Engine.retry_failure` did."""

    before: Failure
    after: Failure  # the failure as it is now: resolved, or open with the latest message
    stats: PassStats

    @property
    def resolved(self) -> bool:
        return self.after.state == "resolved"

    @property
    def failed_again(self) -> bool:
        return self.after.state == "open" and (self.after.attempts, self.after.updated_at) != (
            self.before.attempts, self.before.updated_at)


class EscalationRunner(Protocol):
    """The escalation service as the engine drives it: due steps run after each pass."""

    def run(self, engine: Engine) -> list[str]:
        """Run what is due; lines describing the actions taken."""
        ...

    def next_wake(self) -> datetime | None:
        """When something falls due next (None: nothing scheduled)."""
        ...


@dataclass
class PassStats:
    items_seen: int = 0
    created: Counter[str] = field(default_factory=Counter)  # direction -> items created
    fields_pushed: Counter[str] = field(default_factory=Counter)  # direction -> field writes
    comments_mirrored: Counter[str] = field(default_factory=Counter)  # direction -> comments
    conflicts: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    halts: list[str] = field(default_factory=list)
    planned: list[Planned] = field(default_factory=list)
    sla: SlaStats = field(default_factory=SlaStats)
    escalations: list[str] = field(default_factory=list)  # actions of the escalation runner

    @property
    def writes(self) -> int:
        return sum(self.created.values()) + sum(self.fields_pushed.values()) + sum(
            self.comments_mirrored.values())

    def merge(self, other_stats: PassStats) -> None:
        self.items_seen += other_stats.items_seen
        self.created.update(other_stats.created)
        self.fields_pushed.update(other_stats.fields_pushed)
        self.comments_mirrored.update(other_stats.comments_mirrored)
        self.conflicts.extend(other_stats.conflicts)
        self.failures.extend(other_stats.failures)
        self.halts.extend(other_stats.halts)
        self.planned.extend(other_stats.planned)
        self.sla.merge(other_stats.sla)
        self.escalations.extend(other_stats.escalations)


# Seconds before a write whose answer was lost is retried: twice the HTTP read timeout, so a
# request the tracker received but answered late has landed by then (see `_FlowPass._retries`).
UNSURE_GRACE = 2 * DEFAULT_TIMEOUT[1]
# Polled items synced and committed together (see `_FlowPass._sync_page`): enough to make the
# store's cost per item small, few enough that a batch's locks are not held for long.
_BATCH = 100


class ItemBusy(Retryable):
    """Another process is syncing the item (or one of its counterparts) right now."""


def _direction(target_side: Side) -> str:
    return "left_to_right" if target_side == "right" else "right_to_left"


class Engine:
    def __init__(self, store: Store, flows: Iterable[Flow], *, dry_run: bool = False,
                 sla: SlaService | None = None, escalation: EscalationRunner | None = None,
                 lock_wait: float = 30.0, unsure_grace: float = UNSURE_GRACE, concurrency: int = 1) -> None:
        self.store = store
        self.flows = list(flows)
        self.dry_run = dry_run
        # Items synced side by side (`sync.concurrency`). Each costs several round trips to the
        # trackers, so one at a time leaves the bridge waiting on the network; a dry run stays
        # sequential, its plan in poll order.
        self.concurrency = 1 if dry_run else max(1, concurrency)
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self.unsure_grace = unsure_grace
        # How long an item another process is syncing is waited for, before it is recorded as a
        # retryable failure (and so retried by the next pass).
        self.lock_wait = lock_wait
        # SLA clocks and escalations change nothing in a dry run: they would write due dates,
        # record breaches, create issues.
        self.sla = None if dry_run else sla
        self.escalation = None if dry_run else escalation

    # -- public ----------------------------------------------------------------------------
    def sync_once(self) -> PassStats:
        total = PassStats()
        for flow in self.flows:
            total.merge(self.sync_flow(flow))
        self.settle_sla(total)
        self.run_escalations(total)
        return total

    def sync_flow(self, flow: Flow) -> PassStats:
        return self._pass(flow).run()

    def _pass(self, flow: Flow, lock_wait: float | None = None) -> _FlowPass:
        return _FlowPass(self.store, flow, self.dry_run, self.sla,
                         self.lock_wait if lock_wait is None else lock_wait, self.unsure_grace, self.pool)

    @property
    def pool(self) -> ThreadPoolExecutor | None:
        """The threads that sync items side by side; None when `concurrency` is 1. Two items are
        independent unless they are linked: each is synced under its lock and its counterparts'
        (`_FlowPass._locked`), so a pair reached from both sides at once is synced in turn."""
        if self.concurrency <= 1:
            return None
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="ticketbridge-sync")
            return self._pool

    def close(self) -> None:
        """Stop the item threads (after the items they are syncing)."""
        with self._pool_lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None

    def settle_sla(self, stats: PassStats) -> None:
        """Recompute the clocks of tickets seen in this pass and of tickets whose timer is due."""
        if self.sla is not None:
            stats.sla.merge(self.sla.settle())

    def run_escalations(self, stats: PassStats) -> None:
        """Let the escalation service act on what this pass (and its timers) made due."""
        if self.escalation is None:
            return
        try:
            stats.escalations.extend(self.escalation.run(self))
        except AuthError:
            raise
        except TrackerError as error:  # a tracker down: the service retries on its next run
            log.error("engine.escalations_failed", error=str(error))
            stats.failures.append(f"escalations: {error}")

    def escalate(self, flow: str, ticket_id: str, *, extra_fields: Mapping[str, Any] | None = None,
                 appendix: str | None = None) -> Escalated:
        """Create (or find) the engineering counterpart of desk ticket `ticket_id` through `flow`
        now, whatever the flow's create mode, idempotently.

        An existing primary link is returned; after a crash or a timeout (a creation intent is
        recorded) the counterpart is searched by its marker and adopted; otherwise it is created
        with the flow's create fields plus `extra_fields`, and `appendix` appended to the
        description, both scrubbed like everything else on a redact flow. A post-scan that still
        finds personal data blocks the creation (`blocked` says which kinds). A tracker error is
        recorded as the ticket's failure and raised, so the caller retries.
        """
        return self._pass(self._flow(flow)).escalate(ticket_id, extra_fields, appendix)

    def attach(self, flow: str, ticket_id: str, issue_ref: str) -> Link:
        """Attach desk ticket `ticket_id` as a follower of the existing engineering item
        `issue_ref` (its key: "acme/app#12", "ENG-5"), then sync that pair once. Idempotent: an
        existing link between the two (of either role) is synced and returned."""
        if self.dry_run:
            raise RuntimeError("attach writes a link; it cannot run in a dry run")
        return self._pass(self._flow(flow)).attach(ticket_id, issue_ref)

    def retry_failure(self, failure: Failure) -> Retried:
        """Replay one failed item through its flow now: fetch its current state (every change
        made since the failure, which waited behind it) and sync it, in a pass of its own. On
        success the commit resolves the failure; otherwise the failure is recorded again, with
        the tracker's new message. A dry-run engine only plans (`Retried.stats.planned`)."""
        flow_pass = self._pass(self._flow(failure.flow))
        flow_pass.retry(failure)
        self.settle_sla(flow_pass.stats)
        after = self.store.failure(failure.id) or failure
        return Retried(failure, after, flow_pass.stats)

    def _flow(self, name: str) -> Flow:
        for flow in self.flows:
            if flow.name == name:
                return flow
        raise ValueError(f"no flow named {name!r}; flows: {', '.join(f.name for f in self.flows) or '(none)'}")

    def _now(self) -> datetime:
        return self.sla.now() if self.sla is not None else datetime.now(UTC)

    def seconds_to_next_timer(self) -> float | None:
        """Until the next SLA instant or escalation step falls due (None: nothing scheduled)."""
        wakes = [self.sla.next_wake() if self.sla is not None else None,
                 self.escalation.next_wake() if self.escalation is not None else None]
        due = [wake for wake in wakes if wake is not None]
        return None if not due else (min(due) - self._now()).total_seconds()

    def run_forever(self, stop: threading.Event, intervals: Mapping[str, float],
                    on_pass: Callable[[PassStats], None] | None = None,
                    nudges: queue.Queue[tuple[str, str]] | None = None) -> None:
        """Poll each flow on the shorter interval of its two trackers until `stop` is set. Between
        polls, `(tracker, item id)` hints from the webhook receiver (`nudges`) are served at once."""
        due = {flow.name: 0.0 for flow in self.flows}
        while not stop.is_set():
            now = time.monotonic()
            for flow in self.flows:
                if now < due[flow.name]:
                    continue
                started = time.monotonic()
                try:
                    stats = self.sync_flow(flow)
                    if on_pass:
                        on_pass(stats)
                except AuthError:
                    raise
                except TrackerError as error:  # tracker down: say so, keep going, try next interval
                    log.error("engine.pass_failed", flow=flow.name, error=str(error))
                interval = min(intervals.get(flow.left.name, 60.0), intervals.get(flow.right.name, 60.0))
                # From the pass's start: a change waits at most one interval for its poll, however
                # long the passes take (a pass longer than the interval is followed at once).
                due[flow.name] = started + interval
            timers = PassStats()
            self.settle_sla(timers)  # warnings and breaches fall due between polls too
            self.run_escalations(timers)  # and escalation steps (delays, SLA-triggered rules)
            if on_pass and (timers.sla.warnings or timers.sla.breaches or timers.escalations):
                on_pass(timers)
            wait = min(due.values()) - time.monotonic()
            timer = self.seconds_to_next_timer()
            if timer is not None:
                wait = min(wait, timer)  # sleep until the next timer instant, not a fixed tick
            if nudges is None:
                stop.wait(max(wait, 0.05))
            else:
                self._serve_nudges(stop, nudges, max(wait, 0.05), on_pass)

    # -- webhooks (sync/webhooks.py) -------------------------------------------------------
    def nudge(self, tracker: str, item_id: str) -> PassStats:
        """Fetch the item a webhook named and process it, in every flow with `tracker` on a side,
        as if a poll had returned it. A failed fetch is left to the next poll, the safety net."""
        stats = PassStats()
        for flow in self.flows:
            for side in SIDES:
                if flow.connector(side).name == tracker:
                    one = self._pass(flow)
                    one._refetch(side, item_id)
                    stats.merge(one.stats)
        return stats

    def _serve_nudges(self, stop: threading.Event, nudges: queue.Queue[tuple[str, str]], timeout: float,
                      on_pass: Callable[[PassStats], None] | None) -> None:
        """Wait up to `timeout` (until the next poll), serving nudges as they come; a burst naming
        one item several times fetches it once. With the engine's threads each nudge starts as soon
        as it arrives (not after the batch before it: a webhook waits for no other item); one that
        names an item being synced runs again after it, as the item may have changed since its fetch."""

        def nudge(hint: tuple[str, str]) -> PassStats:
            try:
                return self.nudge(*hint)
            except AuthError:
                raise
            except TrackerError as error:
                log.error("engine.nudge_failed", tracker=hint[0], item=hint[1], error=str(error))
                return PassStats()

        def settle(stats: PassStats) -> None:
            self.settle_sla(stats)
            self.run_escalations(stats)
            if on_pass:
                on_pass(stats)

        pool = self.pool
        if pool is None:
            for batch in nudge_batches(stop, nudges, timeout):
                stats = PassStats()
                for hint in batch:
                    stats.merge(nudge(hint))
                settle(stats)
            return
        running: dict[tuple[str, str], Future[PassStats]] = {}
        again: set[tuple[str, str]] = set()
        deadline = time.monotonic() + timeout
        while True:
            finished = [hint for hint, future in running.items() if future.done()]
            if finished:
                stats = PassStats()
                for hint in finished:
                    stats.merge(running.pop(hint).result())
                    if hint in again:
                        again.discard(hint)
                        running[hint] = pool.submit(contextvars.copy_context().run, nudge, hint)
                settle(stats)
            left = deadline - time.monotonic()
            if stop.is_set() or left <= 0:
                if not running:
                    return
                wait_all(list(running.values()), return_when=FIRST_COMPLETED)
                continue
            for hint in next(iter(nudge_batches(stop, nudges, min(left, 0.02 if running else 0.2))), []):
                if hint in running:
                    again.add(hint)
                else:
                    running[hint] = pool.submit(contextvars.copy_context().run, nudge, hint)

    # -- several workers (workers.py) -------------------------------------------------------
    def poll_into(self, flow: Flow, work: WorkQueue) -> int:
        """Poll `flow` and queue what changed, each page with its cursor in one transaction; also
        queue what a pass recovers by itself (interrupted creations, retryable failures).
        Returns how many items were queued."""
        return self._pass(flow).poll_into(work)

    def queue_nudge(self, tracker: str, item_id: str, work: WorkQueue) -> None:
        """Queue the item a webhook named, in every flow with `tracker` on a side."""
        for flow in self.flows:
            for side in SIDES:
                if flow.connector(side).name == tracker:
                    work.add(flow.name, side, [item_id])

    def work(self, claimed: Iterable[WorkItem], work: WorkQueue) -> PassStats:
        """Sync the items this worker claimed. An item busy in another process, or whose fetch
        failed, is handed back to be claimed again shortly; the rest are finished (an item that
        fails to sync is in failures, which hold it durably)."""
        stats = PassStats()
        by_flow: dict[str, list[WorkItem]] = {}
        for one in claimed:
            by_flow.setdefault(one.flow, []).append(one)
        for name, items in by_flow.items():
            flow = next((f for f in self.flows if f.name == name), None)
            if flow is None:  # the flow left the config: its queued items have nowhere to go
                for one in items:
                    work.finish(one)
                continue
            flow_pass = self._pass(flow, lock_wait=0)

            def work_on(part: _FlowPass, one: WorkItem, name: str = name) -> None:
                side: Side = "left" if one.side == "left" else "right"
                try:
                    synced = part.work_on(side, one.item_id)
                except AuthError:
                    work.hand_back(one)
                    raise
                except TrackerError as error:
                    log.warning("engine.work_fetch_failed", flow=name, item=one.item_id, error=str(error),
                                attempts=one.attempts)
                    work.hand_back(one, delay=min(2.0 ** one.attempts, 60.0))
                    return
                if synced:
                    work.finish(one)
                else:
                    work.hand_back(one)

            flow_pass.each(work_on, items)
            stats.merge(flow_pass.stats)
        return stats


def side_by_side(pool: ThreadPoolExecutor | None, fn: Callable[[T], Any], items: Sequence[T]) -> list[Any]:
    """`fn` of every item, on `pool` when there is one, in order. Every call finishes before the
    first error (if any) is raised, so nothing is left running behind the caller's back."""
    if pool is None or len(items) < 2:
        return [fn(item) for item in items]
    # Each call runs in a copy of the caller's context, so its log lines keep the caller's bound
    # fields (a worker's name).
    futures: list[Future[Any]] = [pool.submit(contextvars.copy_context().run, fn, item) for item in items]
    wait_all(futures)
    return [future.result() for future in futures]


def nudge_batches(stop: threading.Event, nudges: queue.Queue[tuple[str, str]],
                  timeout: float) -> Iterable[list[tuple[str, str]]]:
    """Wait up to `timeout` for webhook nudges, yielding them in batches as they come; a burst
    naming one item several times yields it once."""
    deadline = time.monotonic() + timeout
    while not stop.is_set() and (left := deadline - time.monotonic()) > 0:
        try:
            batch = dict.fromkeys([nudges.get(timeout=min(left, 0.2))])
        except queue.Empty:
            continue
        while True:
            try:
                batch[nudges.get_nowait()] = None
            except queue.Empty:
                break
        yield list(batch)


class _FlowPass:
    """One pass over one flow. Holds the per-pass caches; the store holds all durable state."""

    def __init__(self, store: Store, flow: Flow, dry_run: bool, sla: SlaService | None = None,
                 lock_wait: float = 30.0, unsure_grace: float = UNSURE_GRACE,
                 pool: ThreadPoolExecutor | None = None) -> None:
        self.store = store
        self.flow = flow
        self.dry_run = dry_run
        self.sla = sla
        self.lock_wait = lock_wait
        self.unsure_grace = unsure_grace
        self.pool = pool
        self._stats_lock = threading.Lock()
        self.busy: set[tuple[Side, str]] = set()  # items another process holds (lock_wait 0 only)
        self.stats = PassStats()
        self.polled: dict[Side, dict[str, Item]] = {"left": {}, "right": {}}
        # Items with their comments, read at most once per pass; dropped when we write to them.
        self.loaded: dict[Side, dict[str, Item]] = {"left": {}, "right": {}}
        self.done: dict[Side, set[str]] = {"left": set(), "right": set()}  # items processed
        self.done_links: set[int] = set()  # pairs synced (an issue is reached from each ticket)
        # While a batch of polled items is synced: their commits, held back to be made together.
        self.batch: Batch | None = None
        # Comment refs of links whose items this part holds locked (only their commits change
        # them); emptied when the locks go. A dict of each part's own (see `_locked`).
        self.refs: dict[int, set[str]] = {}
        # Ids known this pass to match / not to match a selection only the tracker's search can
        # evaluate (Jira's JQL): what the poll returned matches, the rest is asked when needed.
        self.matched: dict[Side, set[str]] = {"left": set(), "right": set()}
        self.unmatched: dict[Side, set[str]] = {"left": set(), "right": set()}
        self.transition_fields: dict[Side, str | None] = {
            side: flow.connector(side).transition_field for side in SIDES}
        self.failed_ids = {f.item_id for f in store.failures(flow=flow.name)}
        self.held = self._held_items()  # (tracker, item id) of items waiting in failures
        self.retrying: set[tuple[Side, str]] = set()  # items this pass processes as a retry
        self.retryable: set[tuple[Side, str]] | None = None  # items with a retryable failure, when asked

    def run(self) -> PassStats:
        flow = self.flow
        log.info("engine.pass_start", flow=flow.name, dry_run=self.dry_run)
        # The engineering side is read whole first, so a pair changed on both sides is decided
        # with both current values in hand (conflicts) and without fetching the same item twice.
        right_cursor = self._read_all("right")
        self._recover()
        left_scope = flow.name
        for page in flow.left.poll(self.store.cursor(flow.left.name, left_scope), flow.select("left")):
            for item in page.items:
                self.polled["left"][item.id] = item
                self.matched["left"].add(item.id)
            self._sync_page("left", page.items)
            if page.cursor is not None and not self.dry_run:
                self.store.set_cursor(flow.left.name, left_scope, page.cursor)
        # Every changed engineering item, also those already synced with one ticket above: it
        # may be linked from other tickets too (duplicates reported by several customers).
        self._sync_page("right", list(self.polled["right"].values()))
        if right_cursor is not None and not self.dry_run:
            self.store.set_cursor(flow.right.name, flow.name, right_cursor)
        log.info("engine.pass_done", flow=flow.name, items=self.stats.items_seen, writes=self.stats.writes,
                 failures=len(self.stats.failures))
        return self.stats

    def each(self, fn: Callable[[_FlowPass, T], None], items: Sequence[T]) -> None:
        """`fn(part, item)` for every item, side by side on the engine's threads (in order without
        them). Each call gets its own part: a shallow copy of this pass sharing its caches (dicts
        and sets: one operation on them is atomic, and an item's entries are touched only under
        its lock) with stats of its own, merged afterwards so no count is lost."""
        if self.pool is None or len(items) < 2:
            for item in items:
                fn(self, item)
            return

        def one(item: T) -> None:
            part = copy.copy(self)
            part.stats = PassStats()
            try:
                fn(part, item)
            finally:
                with self._stats_lock:
                    self.stats.merge(part.stats)

        side_by_side(self.pool, one, items)

    def _sync_page(self, side: Side, items: Sequence[Item]) -> None:
        """Sync polled items, a batch of them at a time: the items of a batch are locked together,
        read under their locks in one query, synced (side by side on the engine's threads) and
        committed in one transaction (`Store.commit_batch`), so the store costs a few statements per
        batch instead of several per item. An item that shares a lock with an earlier item of its
        batch (two tickets following one issue), is held by another process, or whose links changed
        before it was locked, is synced on its own afterwards, as a webhook's or a worker's item is.
        A crash before a batch's commit loses its commits, not its changes: the cursor has not moved
        past them, and replaying a pushed item is harmless (snapshots, comment markers)."""
        for start in range(0, len(items), _BATCH):
            chunk = items[start:start + _BATCH]
            alone = self._sync_batch(side, chunk) if not self.dry_run and len(chunk) > 1 else chunk
            self.each(lambda part, item: part._process(side, item), alone)

    def _sync_batch(self, side: Side, items: Sequence[Item]) -> list[Item]:
        """Part of `_sync_page`: sync and commit what can be batched; the items left to sync alone."""
        # Before the locks, only what they need: the counterparts (no snapshots), and when each
        # link was written, to tell whether it changed before its items were locked.
        stamps = self.store.link_stamps_many(self.flow.name, side, [item.id for item in items])
        alone: list[Item] = []
        batched: dict[str, tuple[Item, list[str]]] = {}  # item id -> (item, its locks)
        taken: set[str] = set()
        for item in items:
            names = self._lock_names(side, item.id, [counterpart for _link, counterpart, _at in stamps[item.id]])
            if item.id in batched or not taken.isdisjoint(names):
                alone.append(item)
            elif item.id not in self.done[side]:
                batched[item.id] = item, names
                taken.update(names)
        locks = self.store.locks
        got = locks.try_acquire_groups([names for _item, names in batched.values()])
        held = [entry for entry, ok in zip(batched.values(), got, strict=True) if ok]
        alone += [item for (item, _names), ok in zip(batched.values(), got, strict=True) if not ok]
        try:
            fresh = self.store.links_and_refs_many(self.flow.name, side, [item.id for item, _names in held])
            ready: list[tuple[Item, list[Link], dict[int, set[str]]]] = []
            for item, _names in held:
                links, refs = fresh[item.id]
                if [link_stamp(link, side) for link in links] == stamps[item.id]:
                    ready.append((item, links, refs))
                else:  # synced elsewhere meanwhile: alone, it is read again and its new counterparts locked
                    alone.append(item)
            self.batch = Batch()
            try:
                self.each(lambda part, entry: part._sync_held(side, *entry), ready)
            finally:
                # Also when an item raised: the commits of the items synced before it are kept.
                batch, self.batch = self.batch, None
                self.store.commit_batch(batch)
        finally:
            locks.release([name for _item, names in held for name in names])
        return alone

    def _sync_held(self, side: Side, item: Item, links: list[Link], refs: dict[int, set[str]]) -> None:
        """Sync an item of a batch: its locks are held and its links and their comment refs read."""
        if item.id in self.done[side]:  # synced since the page was read (a webhook's nudge)
            return
        self.done[side].add(item.id)
        self.refs = refs
        try:
            self._process_held(side, item, links)
        finally:
            self.refs = {}

    def _read_all(self, side: Side) -> str | None:
        connector = self.flow.connector(side)
        cursor = self.store.cursor(connector.name, self.flow.name)
        last = cursor
        for page in connector.poll(cursor, self.flow.select(side)):
            for item in page.items:
                self.polled[side][item.id] = item
                self.matched[side].add(item.id)
            last = page.cursor or last
        return last

    def _recover(self) -> None:
        """Items left mid-flight: creations interrupted by a crash, failures worth retrying."""
        retries = self._retries()
        self.retrying.update(retries)  # these go ahead of the changes waiting behind them
        for side, item_id in self._interrupted():
            self._refetch(side, item_id)
        for side, item_id in retries:
            self._refetch(side, item_id)

    def _retries(self) -> list[tuple[Side, str]]:
        """Items whose failure the engine retries by itself. An unsure write (its answer was lost:
        it may still land) is retried only after `unsure_grace`, so the retry's look for the write
        sees it instead of writing it a second time."""
        settled = datetime.now(UTC) - timedelta(seconds=self.unsure_grace)
        return [(self._side_of(failure.tracker), failure.item_id)
                for failure in self.store.failures(flow=self.flow.name)
                if failure.kind == "error" and (failure.reason == "retryable"
                                                or (failure.reason == "unsure" and failure.updated_at <= settled))]

    def _interrupted(self) -> list[tuple[Side, str]]:
        return [("left" if source_side == "left" else "right", item_id)
                for _flow, source_side, item_id, _key in self.store.pending_intents(self.flow.name)]

    def _side_of(self, tracker: str) -> Side:
        return "left" if tracker == self.flow.left.name else "right"

    # -- several workers --------------------------------------------------------------------
    def poll_into(self, work: WorkQueue) -> int:
        queued = 0
        for side in ("right", "left"):
            connector = self.flow.connector(side)
            for page in connector.poll(self.store.cursor(connector.name, self.flow.name), self.flow.select(side)):
                cursor = (connector.name, self.flow.name, page.cursor) if page.cursor is not None else None
                changed = self._unseen(side, page.items)
                work.add(self.flow.name, side, changed, cursor=cursor)
                queued += len(changed)
        recover = self._interrupted() + self._retries()
        for side, item_id in recover:
            work.add(self.flow.name, side, [item_id])
        return queued + len(recover)

    def _unseen(self, side: Side, items: Sequence[Item]) -> list[str]:
        """The ids of `items` to queue: not a version every link of the item already committed,
        re-delivered by a look-back window (see `_sync_linked`). One read of links per page."""
        if not getattr(self.flow.connector(side), "dedupe_versions", False) or not items:
            return [item.id for item in items]
        links = self.store.links_for_many(self.flow.name, side, [item.id for item in items])
        return [item.id for item in items
                if item.id in self.failed_ids or not links[item.id]
                or any(link.version_on(side) != item.version for link in links[item.id])]

    def work_on(self, side: Side, item_id: str) -> bool:
        """Fetch one queued item and process it. False when another process holds it (try later).
        A fetch error goes up (the claim is handed back); a sync error becomes a failure."""
        if self.retryable is None:
            self.retryable = set(self._retries())
        if (side, item_id) in self.retryable:
            self.retrying.add((side, item_id))  # a retry goes ahead of the changes behind it
        try:
            item = self.flow.connector(side).fetch(item_id)
        except NotFound:
            return True
        self._process(side, item)
        return (side, item.id) not in self.busy

    def _refetch(self, side: Side, item_id: str) -> None:
        if item_id in self.done[side]:
            return
        try:
            item = self.flow.connector(side).fetch(item_id)
        except NotFound:
            return
        except AuthError:
            raise
        except TrackerError as error:
            log.warning("engine.recover_fetch_failed", flow=self.flow.name, item=item_id, error=str(error))
            return
        self._process(side, item)

    # -- one item --------------------------------------------------------------------------
    def _process(self, side: Side, item: Item) -> None:
        if item.id in self.done[side]:
            return
        links = self.store.links_for(self.flow.name, side, item.id)
        try:
            while True:
                with self._locked(side, item.id, links):
                    if item.id in self.done[side]:  # another thread got here first
                        return
                    fresh, refs = self.store.links_and_refs(self.flow.name, side, item.id)
                    if fresh == links:
                        self.refs = refs
                        self.done[side].add(item.id)
                        self._process_held(side, item, links)
                        return
                # Another thread or process synced the item while we waited for its locks: what we
                # read of it may predate that sync's writes (decided against the newer snapshot, it
                # would undo them), and a link made meanwhile has a counterpart to lock too.
                links = fresh
                self._forget(side, item.id)
                item = self.flow.connector(side).fetch(item.id)
        except ItemBusy as error:
            if self.lock_wait <= 0:
                self.busy.add((side, item.id))
                log.info("engine.item_busy", flow=self.flow.name, item=item.key)
            else:
                self._fail(side, item, error)
        except NotFound:
            return  # deleted meanwhile: nothing left to sync
        except AuthError:
            raise
        except TrackerError as error:  # the read again failed: the item waits in failures
            self._fail(side, item, error)

    @contextmanager
    def _locked(self, side: Side, item_id: str, links: Sequence[Link], also: Iterable[str] = ()) -> Iterator[None]:
        """Hold the item and its counterparts (those of `links`, and `also`: ids on the other side),
        waiting up to `lock_wait` for another process that holds one of them."""
        names = self._lock_names(side, item_id, [link.id_on(other(side)) for link in links] + list(also))
        locks = self.store.locks
        deadline = time.monotonic() + self.lock_wait
        while not locks.try_acquire(names):
            if time.monotonic() >= deadline:
                raise ItemBusy(self.flow.connector(side).name,
                               f"item {item_id} is being synced by another worker; tried again on the next pass")
            time.sleep(0.05)
        # Logged inside the held span, so the logged spans of two workers overlap only if theirs did.
        log.debug("engine.items_held", items=names)
        self.refs = {}  # this part's own: parts share the pass's other caches
        try:
            yield
        finally:
            log.debug("engine.items_freed", items=names)
            self.refs = {}
            locks.release(names)

    def _lock_names(self, side: Side, item_id: str, counterparts: Iterable[str]) -> list[str]:
        """The locks of an item and of its counterparts (ids on the other side)."""
        return [item_lock(self.flow.connector(side).name, item_id)] + [
            item_lock(self.flow.connector(other(side)).name, one) for one in counterparts]

    def _process_held(self, side: Side, item: Item, links: list[Link]) -> None:
        pending = [link for link in links if link.id not in self.done_links]
        if links and not pending:
            return  # every pair of this item was synced from its other side in this pass
        retried = (side, item.id) in self.retrying
        held = self._behind_failures(side, item, links, pending)
        if held is None:
            return
        self.stats.items_seen += 1
        before = (len(self.stats.failures), len(self.stats.halts))
        self._sync_item(side, item, links, held)
        if retried and not self.dry_run and (len(self.stats.failures), len(self.stats.halts)) == before:
            # The retry went through without committing anything (the item left its selection,
            # there is nothing to create): its failure is over all the same. Left open, it would be
            # retried on every pass, and hold the item's later changes back, for ever.
            failure = self.store.open_failure(self.flow.name, self.flow.connector(side).name, item.id)
            if failure is not None:
                self.store.resolve_failure(failure.id)
                log.info("engine.failure_settled", flow=self.flow.name, item=item.key, failure=failure.id)

    def _sync_item(self, side: Side, item: Item, links: list[Link], pending: list[Link]) -> None:
        """Part of `_process_held`: create the item's counterpart, or sync its pending pairs."""
        if not links:
            try:
                # creates_from first: it costs nothing, while a JQL select may cost a search.
                if not self._made_by_this_flow(side, item) and self.flow.creates_from(side) \
                        and self._in_selection(side, item):
                    self._create(side, item)
                elif self.store.has_intent(self.flow.name, side, item.id):
                    # A creation this flow's pass does not make by itself (an escalation) was
                    # interrupted: adopt the counterpart if it was made, never create it here.
                    self._create(side, item, adopt_only=True)
                # An unlinked item this flow made is a counterpart whose link commit was lost; the
                # processing of its source adopts it. It never seeds a creation of its own.
            except AuthError:
                raise
            except TrackerError as error:
                self._fail(side, item, error)
            return
        for link in pending:
            try:
                self._sync_linked(side, item, link)
            except AuthError:
                raise
            except TrackerError as error:  # one broken pair does not stop the item's other pairs
                self._fail(side, item, error)

    def _load(self, side: Side, item: Item) -> Item:
        """`item` with its comments, read once per pass."""
        cached = self.loaded[side].get(item.id)
        if cached is None:
            cached = self.loaded[side][item.id] = self.flow.connector(side).with_comments(item)
        return cached

    def _made_by_this_flow(self, side: Side, item: Item) -> bool:
        """Whether the item's marker names an item on this flow's other tracker. A marker from
        elsewhere (a Jira issue made from a Zendesk ticket, in the Jira -> ClickUp flow) makes it
        an ordinary item here, free to start the next link of a chain."""
        return item.marker is not None and item.marker.split(":", 1)[0] == self.flow.connector(other(side)).name

    def _counterpart(self, side: Side, item_id: str) -> Item:
        cached = self.loaded[side].get(item_id)
        if cached is not None:
            return cached
        polled = self.polled[side].get(item_id)
        if polled is not None:
            return self._load(side, polled)
        connector, select = self.flow.connector(side), self.flow.select(side)
        fetch_selected = getattr(connector, "fetch_selected", None)
        if fetch_selected is not None and select and item_id not in self.matched[side]:
            # One search reads the item and tells whether it still matches the side's select.
            fetched, matches = fetch_selected(item_id, select)
            (self.matched if matches else self.unmatched)[side].add(fetched.id)
        else:
            fetched = connector.fetch(item_id)
        self.loaded[side][item_id] = fetched
        return fetched

    def _forget(self, side: Side, item_id: str) -> None:
        """We wrote to the item: a later pair of this pass reads it afresh (people included)."""
        self.polled[side].pop(item_id, None)
        self.loaded[side].pop(item_id, None)

    def _sync_linked(self, side: Side, item: Item, link: Link) -> None:
        connector = self.flow.connector(side)
        if getattr(connector, "dedupe_versions", False) and link.version_on(side) == item.version \
                and item.id not in self.failed_ids:
            # The look-back window re-delivered a version we already processed. The pair is not
            # done: its other side may have changed and is still to come in this pass.
            return
        if not self._in_selection(side, item):
            self._pause(side, item, link.key_on(other(side)), [(side, item)])
            return
        item = self._load(side, item)
        if self._echo(side, item, link):
            return
        counterpart = self._counterpart(other(side), link.id_on(other(side)))
        if not self._in_selection(other(side), counterpart):
            self._pause(other(side), counterpart, item.key, [(side, item), (other(side), counterpart)])
            return
        items = {side: item, other(side): counterpart}
        self._apply_pair(items["left"], items["right"], link)

    def _echo(self, side: Side, item: Item, link: Link) -> bool:
        """Part of `_sync_linked`: whether `item` is our last write to it coming back (the pair's
        commit left this side's version unknown because we wrote to it, e.g. an issue we just
        created, read back by the next poll) and only echoes that sync: every mapped field equals
        its side of the snapshot and no comment of it is left to mirror. Then nothing can travel
        from it, and whatever changed on the other side since that sync reaches the pair through
        the other side's own poll (the source of truth), which reads this item afresh. So the
        counterpart is not read (a ticket and its comments, or an issue: one or two requests per
        pair); only this side's version is recorded, so a look-back re-delivery of it is skipped.
        An item whose version the link knows is never taken for an echo: it may come back from a
        pause (out of the selection) during which the other side changed, unseen since.
        The link is not marked done: the other side may still come in this pass (workers process
        the two sides in any order)."""
        if self.dry_run or not link.primary or link.version_on(side) is not None \
                or item.key != link.key_on(side) or item.id in self.failed_ids:
            return False
        index = 0 if side == "left" else 1
        snapshot = link.snapshot or {}
        for pair in self.flow.mapping.fields:
            name = pair.left if side == "left" else pair.right
            if pair.name not in snapshot or canon(item.fields.get(name)) != canon(snapshot[pair.name][index]):
                return False
        comments, adopted = comment_ops(self.flow.mapping, item, side, None, self._mirrored_refs(link))
        if comments or adopted:
            return False
        versions = (item.version if side == "left" else None, item.version if side == "right" else None)
        if self.batch is not None:
            self.batch.record_versions(link.id, *versions)
        else:
            self.store.record_versions(link.id, *versions)
        if self.sla is not None:
            self.sla.observe(item)
        log.debug("engine.echo_skipped", flow=self.flow.name, item=item.key, counterpart=link.key_on(other(side)))
        return True

    def _mirrored_refs(self, link: Link) -> set[str]:
        """The link's comment refs, read once while its items are locked (the caller holds them)."""
        refs = self.refs.get(link.id)
        if refs is None:
            refs = self.refs[link.id] = self.store.mirrored_refs(self.flow.name, link.id)
        return refs

    def _in_selection(self, side: Side, item: Item) -> bool:
        """Whether a linked item still matches its side's select. The mapping promises that an item
        that does not match is neither created nor updated, so a pair with a side out of its
        selection (a ticket tagged no_jira or closed, an issue without the planning label) pauses.
        A select the item's own fields answer (Zendesk, GitHub, ClickUp) costs nothing; one only
        the tracker's search answers (Jira's JQL) is known for what the poll returned, and asked
        otherwise (see `_counterpart`, which asks while reading the item)."""
        select = self.flow.select(side)
        if not select:
            return True
        connector = self.flow.connector(side)
        if not connector.selected(item, select):
            return False
        fetch_selected = getattr(connector, "fetch_selected", None)
        if fetch_selected is None or item.id in self.matched[side]:
            return True
        if item.id not in self.unmatched[side]:  # read outside the poll (a recovery, a retry)
            _, matches = fetch_selected(item.id, select)
            (self.matched if matches else self.unmatched)[side].add(item.id)
        return item.id not in self.unmatched[side]

    def _pause(self, side: Side, item: Item, counterpart_key: str, seen: list[tuple[Side, Item]]) -> None:
        """Leave a pair alone while `item` is out of its selection: nothing is written either way
        and nothing is committed, so the snapshot keeps the last agreed values and, once the item
        is selected again, what changed on either side meanwhile syncs by the usual rules. The
        pair is never unlinked and nothing is deleted."""
        log.info("engine.pair_paused", flow=self.flow.name, item=item.key, counterpart=counterpart_key,
                 reason="not_selected")
        if self.sla is not None and not self.dry_run:
            # The SLA clocks follow a desk ticket whatever the selection: a ticket closed straight
            # from open (closed is outside the selection) must still stop its clocks.
            for one_side, one in seen:
                if self.sla.is_desk(one.tracker):
                    self.sla.observe(self._load(one_side, one))

    def _apply_pair(self, left: Item, right: Item, link: Link | None,
                    intent: tuple[Side, str] | None = None) -> tuple[Link | None, str | None]:
        """Decide, push and commit one pair. (the link, or None; why it was blocked, or None)."""
        if link is not None:
            self.done_links.add(link.id)
        mirrored = self._mirrored_refs(link) if link else set()
        scrub = self.flow.scrub_for(left)
        if link is not None and not link.primary:
            decision = decide_follower(self.flow.mapping, left, right, link.snapshot, mirrored,
                                       self.transition_fields["left"])
        else:
            decision = decide_pair(self.flow.mapping, left, right, link.snapshot if link else None,
                                   mirrored, self.transition_fields, scrub)
        self._record_plan("left", left, decision, right.key)
        if decision.halt:
            self._halt(left, decision.halt.reason)
            return None, decision.halt.reason
        if self.dry_run:
            return link, None
        blocked = self._post_scan(left, decision.ops["right"], scrub)
        if blocked:
            return None, blocked
        results = {side: self._push(side, {"left": left, "right": right}[side].id, decision.ops[side])
                   for side in SIDES if decision.ops[side]}
        committed = self._commit(left, right, decision, results, intent=intent, link=link)
        return committed, None

    def _create(self, side: Side, item: Item, *, adopt_only: bool = False,
                extra_fields: Mapping[str, Any] | None = None,
                appendix: str | None = None) -> Escalated:
        flow = self.flow
        target = other(side)
        item = self._load(side, item)
        marker = f"{item.tracker}:{item.id}"
        if self.store.has_intent(flow.name, side, item.id):
            # A previous attempt may have created the counterpart before crashing: look first.
            existing = flow.connector(target).find_by_marker(marker)
            if existing is not None:
                log.info("engine.create_adopted", flow=flow.name, source=item.key, target=existing.key)
                existing = flow.connector(target).with_comments(existing)
                pair = {side: item, target: existing}
                link, blocked = self._apply_pair(pair["left"], pair["right"], None, intent=(side, item.id))
                return Escalated(link, False, blocked)
        if adopt_only:
            return Escalated(None, False, "not created: only an escalation creates in this flow")
        scrub = flow.scrub_for(item) if side == "left" else None
        decision = decide_create(flow.mapping, item, side, self.transition_fields[target], scrub,
                                 extra_fields=extra_fields, appendix=appendix)
        self._record_plan(side, item, decision, None)
        if decision.halt:
            self._halt(item, decision.halt.reason)
            return Escalated(None, False, decision.halt.reason)
        if self.dry_run:
            return Escalated(None, False, "dry run")
        if side == "left":
            blocked = self._post_scan(item, decision.ops[target], scrub)
            if blocked:
                return Escalated(None, False, blocked)
        self.store.record_intent(flow.name, side, item.id, item.key)
        result = self._push(target, None, decision.ops[target])
        created = result.item or Item(tracker=flow.connector(target).name, id=result.item_id,
                                      key=result.item_key, url="", fields={}, updated_at=item.updated_at,
                                      version="")
        pair = {side: item, target: created}
        link = self._commit(pair["left"], pair["right"], decision, {target: result}, intent=(side, item.id),
                            versions={side: item.version, target: None})
        return Escalated(link, True)

    # -- escalation entry points -------------------------------------------------------------
    def escalate(self, ticket_id: str, extra_fields: Mapping[str, Any] | None,
                 appendix: str | None) -> Escalated:
        ticket = self.flow.left.fetch(ticket_id)
        self.done["left"].add(ticket.id)
        self.loaded["left"][ticket.id] = ticket
        with self._locked("left", ticket.id, self.store.links_for(self.flow.name, "left", ticket.id)):
            link = self.store.link_for(self.flow.name, "left", ticket.id)
            if link is not None:
                self._add_labels(link, extra_fields)
                return Escalated(link, False)
            try:
                outcome = self._create("left", ticket, extra_fields=extra_fields, appendix=appendix)
            except AuthError:
                raise
            except TrackerError as error:
                self._fail("left", ticket, error)
                raise
        log.info("engine.escalated", flow=self.flow.name, ticket=ticket.key, created=outcome.created,
                 issue=outcome.link.right_key if outcome.link else None, blocked=outcome.blocked)
        return outcome

    def _add_labels(self, link: Link, extra_fields: Mapping[str, Any] | None) -> None:
        """An escalation of a ticket whose issue already exists (an auto-creating flow got there
        first) still marks it: list values (labels) it asks for are added. Other fields are left
        alone: an issue's type or title is engineering's once the issue exists."""
        lists = {name: list(value) for name, value in (extra_fields or {}).items() if isinstance(value, list | tuple)}
        if not lists or self.dry_run:
            return
        connector = self.flow.right
        issue = connector.fetch(link.right_id)
        update = {}
        for name, wanted in lists.items():
            current = list(issue.fields.get(name) or ())
            if not set(wanted) <= set(current):
                update[name] = current + [v for v in wanted if v not in current]
        if update:
            connector.push(issue.id, [Update(update)])
            log.info("engine.escalation_marked", flow=self.flow.name, issue=issue.key, fields=sorted(update))

    def attach(self, ticket_id: str, issue_ref: str) -> Link:
        ticket = self.flow.left.fetch(ticket_id)
        issue = self.flow.right.fetch(issue_ref)  # by key; the link keeps the immutable id
        self.loaded["left"][ticket.id] = ticket
        self.loaded["right"][issue.id] = issue
        with self._locked("left", ticket.id, [], also=[issue.id]):
            link = self.store.link_between(self.flow.name, ticket.id, issue.id)
            if link is None:
                # The link first, so that a halt of its first sync (an unmapped status) still leaves
                # the ticket attached; versions unknown, so the next pass looks at both once more.
                link = self.store.commit_item(ItemCommit(
                    flow=self.flow.name, left_id=ticket.id, left_key=ticket.key, right_id=issue.id,
                    right_key=issue.key, snapshot={}, role=FOLLOWER,
                    audit=[("attach", "left", {"left_key": ticket.key, "right_key": issue.key})]))
                log.info("engine.attached", flow=self.flow.name, ticket=ticket.key, issue=issue.key)
            synced, _ = self._apply_pair(ticket, issue, link)
        return synced or self.store.link_between(self.flow.name, ticket.id, issue.id) or link

    # -- redaction tripwire --------------------------------------------------------------------
    def _post_scan(self, ticket: Item, ops: tuple[Operation, ...], scrub: Scrub) -> str | None:
        """On a redact flow, the final text bound for engineering is scanned once more. Any hit
        stops the whole item: nothing is pushed, a halt is recorded and the ticket gets one
        internal note. Returns the reason ("pii_detected: email, phone"), or None when clean."""
        scan = getattr(scrub, "scan", None)
        if scan is None or not ops:
            return None
        # The back-link to the ticket itself is ours, not the customer's (its host may be an IP).
        texts = [text.replace(ticket.url, "") if ticket.url else text for text in _outgoing_texts(ops)]
        kinds = sorted({kind for text in texts for kind in scan(text)})
        if not kinds:
            return None
        reason = f"pii_detected: {', '.join(kinds)}"
        self.stats.halts.append(f"{ticket.key}: {reason}")
        log.warning("engine.pii_blocked", flow=self.flow.name, item=ticket.key, kinds=kinds)
        self.store.record_failure(self.flow.name, ticket.tracker, ticket.id, ticket.key, "halt",
                                  "pii_detected", reason)
        self._blocked_note(ticket, kinds)
        return reason

    def _blocked_note(self, ticket: Item, kinds: list[str]) -> None:
        # Keyed by flow and kinds: reprocessing the same blocked ticket never adds a second note.
        ref = f"ticketbridge:pii_blocked/{self.flow.name}/{'+'.join(kinds)}"
        if any(c.mirrored_from == ref for c in (ticket.comments or ())):
            return
        target = TRACKER_TITLES.get(self.flow.right.type, self.flow.right.name)
        text = (f"ticketbridge did not send this ticket to {target} (flow {self.flow.name}): after "
                f"redaction its text still contains personal data ({', '.join(kinds)}). Remove it from the "
                "ticket (an escalation then tries again by itself) or have an admin extend the redaction rules.")
        self._push("left", ticket.id, (AddComment(with_comment_marker(text, ref), False, ref),))

    def _push(self, side: Side, item_id: str | None, ops: tuple[Operation, ...]) -> PushResult:
        connector = self.flow.connector(side)
        if item_id is not None:
            self._forget(side, item_id)
        result = connector.push(item_id, ops)
        if self.sla is not None and item_id is not None:
            written = {k: v for op in ops if isinstance(op, Update) for k, v in op.fields.items()}
            for op in ops:
                if isinstance(op, Transition):
                    written["status"] = op.status
            self.sla.note_bridge_write(connector.name, item_id, written)
        direction = _direction(side)
        for op in ops:
            if isinstance(op, Create):
                self.stats.created[direction] += 1
            elif isinstance(op, AddComment):
                self.stats.comments_mirrored[direction] += 1
        self.stats.fields_pushed[direction] += len([n for n in field_names(
            [op for op in ops if not isinstance(op, Create)])])
        return result

    def _commit(self, left: Item, right: Item, decision: Decision, results: Mapping[Side, PushResult],
                *, intent: tuple[Side, str] | None = None,
                versions: Mapping[Side, str | None] | None = None, link: Link | None = None) -> Link | None:
        """Commit a pushed pair, whose link is `link` (None: a new one, or the pair's link if it has
        one). The link as committed; None when held back for the batch's commit (see `_sync_page`)."""
        items = {"left": left, "right": right}
        ids = {s: results[s].item_id if s in results else items[s].id for s in SIDES}
        keys = {s: results[s].item_key if s in results else items[s].key for s in SIDES}
        if versions is None:
            # A side we wrote to gets a new version from the tracker: leave it unknown so the
            # next poll looks once more (and finds nothing to do) instead of skipping it.
            versions = {s: None if decision.ops[s] else items[s].version for s in SIDES}
        trackers = {"left": self.flow.left.name, "right": self.flow.right.name}
        comment_links = list(decision.adopted_comments)
        for side, result in results.items():
            comment_links += [(src, f"{trackers[side]}:{target}") for src, target in result.comment_ids.items()]
        audit: list[tuple[str, str | None, dict[str, Any]]] = []
        for side in SIDES:
            for op in decision.ops[side]:
                audit.append((op.kind, side, _audit_detail(op, keys)))
        for conflict in decision.conflicts:
            audit.append(("conflict", conflict.winner, {
                "field": conflict.field, "left": conflict.left_value, "right": conflict.right_value,
                "winner": conflict.winner, "rule": conflict.rule, "left_key": keys["left"],
                "right_key": keys["right"]}))
            self.stats.conflicts.append(
                f"{keys['left']} <-> {keys['right']}: {conflict.field} changed on both sides "
                f"(left {conflict.left_value!r}, right {conflict.right_value!r}); "
                f"{conflict.winner} won by {conflict.rule}")
        commit = ItemCommit(
            flow=self.flow.name, left_id=ids["left"], left_key=keys["left"], right_id=ids["right"],
            right_key=keys["right"], snapshot=dict(decision.snapshot or {}),
            left_version=versions["left"], right_version=versions["right"],
            comment_links=comment_links, audit=audit,
            resolve_intent=intent,
            clear_failures=[(trackers[s], ids[s]) for s in SIDES],
            role=link.role if link else None)
        committed: Link | None = None
        if self.batch is not None and link is not None and intent is None:
            self.batch.update(link, commit)
        else:
            link = committed = self.store.commit_item(commit)
        self.held.difference_update((trackers[s], ids[s]) for s in SIDES)
        self.done_links.add(link.id)
        self.refs.pop(link.id, None)
        if self.sla is not None:
            self.sla.observe(left)
            self.sla.observe(right)
        log.info("engine.item_synced", flow=self.flow.name, left=keys["left"], right=keys["right"],
                 role=link.role, writes=decision.writes, conflicts=len(decision.conflicts))
        return committed

    # -- failures --------------------------------------------------------------------------
    def _fail(self, side: Side, item: Item, error: TrackerError) -> None:
        # Every retryable error (a rate limit, a busy item) is retried by the next pass by itself.
        reason = "retryable" if isinstance(error, Retryable) else type(error).__name__.lower()
        message = error.message
        self.stats.failures.append(f"{item.key}: {error}")
        log.warning("engine.item_failed", flow=self.flow.name, item=item.key, tracker=error.tracker,
                    status=error.status, error=message)
        self.held.add((self.flow.connector(side).name, item.id))
        if not self.dry_run:
            self.store.record_failure(self.flow.name, self.flow.connector(side).name, item.id, item.key,
                                      "error", reason, str(error))

    def _halt(self, item: Item, reason: str) -> None:
        self.stats.halts.append(f"{item.key}: {reason}")
        log.warning("engine.item_halted", flow=self.flow.name, item=item.key, reason=reason)
        self.held.add((item.tracker, item.id))
        if not self.dry_run:
            self.store.record_failure(self.flow.name, item.tracker, item.id, item.key, "halt",
                                      "unmapped_value", reason)

    def _held_items(self) -> set[tuple[str, str]]:
        """Items whose open failure holds their pairs. A PII block is the exception: its cause is
        the ticket's own text, so the ticket's next change is its retry (see `_post_scan`)."""
        return {(f.tracker, f.item_id) for f in self.store.failures(flow=self.flow.name)
                if f.reason != "pii_detected"}

    def _behind_failures(self, side: Side, item: Item, links: list[Link],
                         pending: list[Link]) -> list[Link] | None:
        """Items keep their order: while an item has an open failure, its later changes wait
        behind it. Its pairs are processed only by a retry (automatic for retryable errors,
        `ticketbridge failures retry` otherwise), which syncs the item's current state, and so
        every change made since, in one go. The pairs of `item` free to sync now, or None when
        the item itself waits."""
        if (side, item.id) in self.retrying:
            self.retrying.discard((side, item.id))
            return pending
        if (self.flow.connector(side).name, item.id) in self.held:
            log.info("engine.item_waiting", flow=self.flow.name, item=item.key, reason="open_failure")
            return None
        free = [link for link in pending
                if (self.flow.connector(other(side)).name, link.id_on(other(side))) not in self.held]
        if links and not free:
            log.info("engine.item_waiting", flow=self.flow.name, item=item.key, reason="counterpart_failure")
            return None
        return free

    def retry(self, failure: Failure) -> None:
        """Process the failed item through the flow now, from its current state."""
        side: Side = "left" if failure.tracker == self.flow.left.name else "right"
        item = self.flow.connector(side).fetch(failure.item_id)
        self.retrying.add((side, item.id))
        self._process(side, item)

    def _record_plan(self, side: Side, item: Item, decision: Decision, counterpart: str | None) -> None:
        if self.dry_run:
            self.stats.planned.append(Planned(self.flow.name, side, item.key, decision, counterpart))


def _outgoing_texts(ops: Iterable[Operation]) -> Iterable[str]:
    """Every text an operation list would write: field values (also in lists) and comment bodies."""
    for op in ops:
        if isinstance(op, AddComment):
            yield op.body
        elif isinstance(op, Create | Update):
            for value in op.fields.values():
                if isinstance(value, str):
                    yield value
                elif isinstance(value, list | tuple):
                    yield from (v for v in value if isinstance(v, str))


def _audit_detail(op: Operation, keys: Mapping[Side, str]) -> dict[str, Any]:
    detail: dict[str, Any] = {"left_key": keys["left"], "right_key": keys["right"]}
    if isinstance(op, Create):
        detail["marker"] = op.marker
        detail["fields"] = sorted(op.fields)
    elif isinstance(op, AddComment):
        detail["source"] = op.source_id
        detail["public"] = op.public
    elif hasattr(op, "fields"):
        detail["fields"] = sorted(op.fields)
    else:
        detail["status"] = getattr(op, "status", None)
    return detail
