"""The sync loop: capture -> normalize -> map -> decide -> push -> commit.

One pass of a flow polls both trackers from their stored cursors, decides per item with the pure
functions of `decide`, pushes through the connectors and commits each item in one store
transaction. A cursor advances only after every item of its page is committed or recorded as a
failure, so a crash at any point replays work instead of losing it; snapshots make the replay
harmless, and the creation intent + marker search make it duplicate-free.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from ..connectors.base import Connector
from ..connectors.errors import AuthError, NotFound, TrackerError
from .decide import SIDES, Scrub, decide_create, decide_pair, field_names
from .mapping import FlowMapping
from .model import AddComment, Create, Decision, Item, Operation, PushResult, Side, Transition, Update, other
from .sla_service import SlaService, SlaStats
from .store import ItemCommit, Link, Store

log = structlog.get_logger(__name__)


@dataclass
class Flow:
    mapping: FlowMapping
    left: Connector
    right: Connector
    scrub: Scrub = None  # set when the mapping says `redact: true`

    @property
    def name(self) -> str:
        return self.mapping.name

    def connector(self, side: Side) -> Connector:
        return self.left if side == "left" else self.right

    def select(self, side: Side) -> Mapping[str, Any]:
        return self.mapping.select_left if side == "left" else self.mapping.select_right

    def creates_from(self, side: Side) -> bool:
        return self.mapping.create_left_to_right if side == "left" else self.mapping.create_right_to_left


@dataclass(frozen=True)
class Planned:
    """One item's decision, for `plan` and for tests."""

    flow: str
    side: Side
    key: str
    decision: Decision
    counterpart: str | None


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


def _direction(target_side: Side) -> str:
    return "left_to_right" if target_side == "right" else "right_to_left"


class Engine:
    def __init__(self, store: Store, flows: Iterable[Flow], *, dry_run: bool = False,
                 sla: SlaService | None = None) -> None:
        self.store = store
        self.flows = list(flows)
        self.dry_run = dry_run
        # SLA clocks change nothing in a dry run: they would write due dates and record breaches.
        self.sla = None if dry_run else sla

    # -- public ----------------------------------------------------------------------------
    def sync_once(self) -> PassStats:
        total = PassStats()
        for flow in self.flows:
            total.merge(self.sync_flow(flow))
        self.settle_sla(total)
        return total

    def sync_flow(self, flow: Flow) -> PassStats:
        return _FlowPass(self.store, flow, self.dry_run, self.sla).run()

    def settle_sla(self, stats: PassStats) -> None:
        """Recompute the clocks of tickets seen in this pass and of tickets whose timer is due."""
        if self.sla is not None:
            stats.sla.merge(self.sla.settle())

    def seconds_to_next_timer(self) -> float | None:
        if self.sla is None:
            return None
        wake = self.sla.next_wake()
        return None if wake is None else (wake - self.sla.now()).total_seconds()

    def run_forever(self, stop: threading.Event, intervals: Mapping[str, float],
                    on_pass: Callable[[PassStats], None] | None = None) -> None:
        """Poll each flow on the shorter interval of its two trackers until `stop` is set."""
        due = {flow.name: 0.0 for flow in self.flows}
        import time

        while not stop.is_set():
            now = time.monotonic()
            for flow in self.flows:
                if now < due[flow.name]:
                    continue
                try:
                    stats = self.sync_flow(flow)
                    if on_pass:
                        on_pass(stats)
                except AuthError:
                    raise
                except TrackerError as error:  # tracker down: say so, keep going, try next interval
                    log.error("engine.pass_failed", flow=flow.name, error=str(error))
                interval = min(intervals.get(flow.left.name, 60.0), intervals.get(flow.right.name, 60.0))
                due[flow.name] = time.monotonic() + interval
            timers = PassStats()
            self.settle_sla(timers)  # warnings and breaches fall due between polls too
            if on_pass and (timers.sla.warnings or timers.sla.breaches):
                on_pass(timers)
            wait = min(due.values()) - time.monotonic()
            timer = self.seconds_to_next_timer()
            if timer is not None:
                wait = min(wait, timer)  # sleep until the next SLA instant, not a fixed tick
            stop.wait(max(wait, 0.05))


class _FlowPass:
    """One pass over one flow. Holds the per-pass caches; the store holds all durable state."""

    def __init__(self, store: Store, flow: Flow, dry_run: bool, sla: SlaService | None = None) -> None:
        self.store = store
        self.flow = flow
        self.dry_run = dry_run
        self.sla = sla
        self.stats = PassStats()
        self.polled: dict[Side, dict[str, Item]] = {"left": {}, "right": {}}
        self.done: dict[Side, set[str]] = {"left": set(), "right": set()}
        self.transition_fields: dict[Side, str | None] = {
            side: flow.connector(side).transition_field for side in SIDES}
        self.failed_ids = {f.item_id for f in store.failures(flow=flow.name)}

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
                self._process("left", item)
            if page.cursor is not None and not self.dry_run:
                self.store.set_cursor(flow.left.name, left_scope, page.cursor)
        for item in list(self.polled["right"].values()):
            if item.id not in self.done["right"]:
                self._process("right", item)
        if right_cursor is not None and not self.dry_run:
            self.store.set_cursor(flow.right.name, flow.name, right_cursor)
        log.info("engine.pass_done", flow=flow.name, items=self.stats.items_seen, writes=self.stats.writes,
                 failures=len(self.stats.failures))
        return self.stats

    def _read_all(self, side: Side) -> str | None:
        connector = self.flow.connector(side)
        cursor = self.store.cursor(connector.name, self.flow.name)
        last = cursor
        for page in connector.poll(cursor, self.flow.select(side)):
            for item in page.items:
                self.polled[side][item.id] = item
            last = page.cursor or last
        return last

    def _recover(self) -> None:
        """Items left mid-flight: creations interrupted by a crash, failures worth retrying."""
        for _flow, source_side, item_id, _key in self.store.pending_intents(self.flow.name):
            self._refetch("left" if source_side == "left" else "right", item_id)
        for failure in self.store.failures(flow=self.flow.name):
            if failure.kind == "error" and failure.reason in ("retryable", "unsure"):
                self._refetch("left" if failure.tracker == self.flow.left.name else "right", failure.item_id)

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
        self.done[side].add(item.id)
        self.stats.items_seen += 1
        connector = self.flow.connector(side)
        try:
            link = self.store.link_for(self.flow.name, side, item.id)
            if link is not None:
                self._sync_linked(side, item, link)
            elif item.marker is None and connector.selected(item, self.flow.select(side)) \
                    and self.flow.creates_from(side):
                self._create(side, item)
            # An unlinked item carrying our marker is a counterpart whose link commit was lost;
            # the processing of its source adopts it. It never seeds a creation of its own.
        except AuthError:
            raise
        except TrackerError as error:
            self._fail(side, item, error)

    def _counterpart(self, side: Side, item_id: str) -> Item:
        self.done[side].add(item_id)
        connector = self.flow.connector(side)
        cached = self.polled[side].get(item_id)
        return connector.with_comments(cached) if cached is not None else connector.fetch(item_id)

    def _sync_linked(self, side: Side, item: Item, link: Link) -> None:
        connector = self.flow.connector(side)
        if getattr(connector, "dedupe_versions", False) and link.version_on(side) == item.version \
                and item.id not in self.failed_ids:
            return  # the look-back window re-delivered a version we already processed
        item = connector.with_comments(item)
        counterpart = self._counterpart(other(side), link.id_on(other(side)))
        items = {side: item, other(side): counterpart}
        self._apply_pair(items["left"], items["right"], link)

    def _apply_pair(self, left: Item, right: Item, link: Link | None,
                    intent: tuple[Side, str] | None = None) -> None:
        mirrored = self.store.mirrored_refs(self.flow.name, link.id) if link else set()
        decision = decide_pair(self.flow.mapping, left, right, link.snapshot if link else None,
                               mirrored, self.transition_fields, self.flow.scrub)
        self._record_plan("left", left, decision, right.key)
        if decision.halt:
            self._halt(left, decision.halt.reason)
            return
        if self.dry_run:
            return
        results = {side: self._push(side, {"left": left, "right": right}[side].id, decision.ops[side])
                   for side in SIDES if decision.ops[side]}
        self._commit(left, right, decision, results, intent=intent)

    def _create(self, side: Side, item: Item) -> None:
        flow = self.flow
        target = other(side)
        item = flow.connector(side).with_comments(item)
        marker = f"{item.tracker}:{item.id}"
        if self.store.has_intent(flow.name, side, item.id):
            # A previous attempt may have created the counterpart before crashing: look first.
            existing = flow.connector(target).find_by_marker(marker)
            if existing is not None:
                log.info("engine.create_adopted", flow=flow.name, source=item.key, target=existing.key)
                existing = flow.connector(target).with_comments(existing)
                pair = {side: item, target: existing}
                self._apply_pair(pair["left"], pair["right"], None, intent=(side, item.id))
                return
        decision = decide_create(flow.mapping, item, side, self.transition_fields[target], flow.scrub)
        self._record_plan(side, item, decision, None)
        if decision.halt:
            self._halt(item, decision.halt.reason)
            return
        if self.dry_run:
            return
        self.store.record_intent(flow.name, side, item.id, item.key)
        result = self._push(target, None, decision.ops[target])
        created = result.item or Item(tracker=flow.connector(target).name, id=result.item_id,
                                      key=result.item_key, url="", fields={}, updated_at=item.updated_at,
                                      version="")
        pair = {side: item, target: created}
        self._commit(pair["left"], pair["right"], decision, {target: result}, intent=(side, item.id),
                     versions={side: item.version, target: None})

    def _push(self, side: Side, item_id: str | None, ops: tuple[Operation, ...]) -> PushResult:
        connector = self.flow.connector(side)
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
                versions: Mapping[Side, str | None] | None = None) -> None:
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
        self.store.commit_item(ItemCommit(
            flow=self.flow.name, left_id=ids["left"], left_key=keys["left"], right_id=ids["right"],
            right_key=keys["right"], snapshot=dict(decision.snapshot or {}),
            left_version=versions["left"], right_version=versions["right"],
            comment_links=comment_links, audit=audit,
            resolve_intent=intent,
            clear_failures=[(trackers[s], ids[s]) for s in SIDES]))
        for side in SIDES:
            self.done[side].add(ids[side])
        if self.sla is not None:
            self.sla.observe(left)
            self.sla.observe(right)
        log.info("engine.item_synced", flow=self.flow.name, left=keys["left"], right=keys["right"],
                 writes=decision.writes, conflicts=len(decision.conflicts))

    # -- failures --------------------------------------------------------------------------
    def _fail(self, side: Side, item: Item, error: TrackerError) -> None:
        reason = type(error).__name__.lower()
        if reason == "ratelimited":
            reason = "retryable"
        message = error.message
        self.stats.failures.append(f"{item.key}: {error}")
        log.warning("engine.item_failed", flow=self.flow.name, item=item.key, tracker=error.tracker,
                    status=error.status, error=message)
        if not self.dry_run:
            self.store.record_failure(self.flow.name, self.flow.connector(side).name, item.id, item.key,
                                      "error", reason, str(error))

    def _halt(self, item: Item, reason: str) -> None:
        self.stats.halts.append(f"{item.key}: {reason}")
        log.warning("engine.item_halted", flow=self.flow.name, item=item.key, reason=reason)
        if not self.dry_run:
            self.store.record_failure(self.flow.name, item.tracker, item.id, item.key, "halt",
                                      "unmapped_value", reason)

    def _record_plan(self, side: Side, item: Item, decision: Decision, counterpart: str | None) -> None:
        if self.dry_run:
            self.stats.planned.append(Planned(self.flow.name, side, item.key, decision, counterpart))


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
