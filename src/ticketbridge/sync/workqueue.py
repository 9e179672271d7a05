"""Shared work for several `ticketbridge run` processes on one PostgreSQL database.

The work queue: one row per item that changed and waits to be synced, `(flow, side, item id)`,
unique. Pollers (one per flow at a time, see `Locks.try_lease`) and webhook receivers add rows;
every worker claims a batch with ``SELECT ... FOR UPDATE SKIP LOCKED``, so two workers never
claim the same row, and marks it with its id and a lease (`claimed_until`) that a heartbeat
renews while the worker lives. A worker that dies stops renewing: when its lease expires, the
row is claimable again and another worker takes the work over. A row that changes again while
claimed is flagged (`again`) and handed back instead of deleted when the claim finishes, so no
change is lost to a race between the poller and the worker.

A poll adds its rows and advances its cursor in one transaction: a crash loses both or keeps
both, and the cursor never runs ahead of the work it covers.

Locks: pairs of items are synced under PostgreSQL session advisory locks (one per item, taken
by whoever touches the item: a queued change, an escalation, a retry from the CLI), so no pair
is ever processed by two processes at once; the locks die with their connection, so a killed
worker holds nothing. Pollers and the timers (SLA, escalations) hold advisory-lock leases the
same way. On SQLite (one process) the locks are in-process only.

The table lives on the store's metadata (migration 0005).
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .store import Store, UTCDateTime, _insert, _now, cursors_t, metadata

DEFAULT_LEASE = 30.0  # seconds a claim lives without a heartbeat
RETRY_DELAY = 1.0  # a claim handed back (its items were busy, its fetch failed) waits this long

work_items_t = sa.Table(
    "work_items",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("flow", sa.String(100), nullable=False),
    sa.Column("side", sa.String(5), nullable=False),
    sa.Column("item_id", sa.String(255), nullable=False),
    sa.Column("enqueued_at", UTCDateTime, nullable=False),
    sa.Column("again", sa.Boolean, nullable=False),
    sa.Column("claimed_by", sa.String(255), nullable=True),
    # Claimable when null or past: a live claim's lease, or the earliest moment of a retry.
    sa.Column("claimed_until", UTCDateTime, nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.UniqueConstraint("flow", "side", "item_id", name="uq_work_items_item"),
    sa.Index("ix_work_items_claimed_until", "claimed_until"),
    sqlite_autoincrement=True,
)


@dataclass(frozen=True)
class WorkItem:
    id: int
    flow: str
    side: str
    item_id: str
    attempts: int


def worker_name() -> str:
    """host:pid, unique among the processes sharing a database."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (ValueError, PermissionError):  # not a pid of ours to judge: assume alive
        return True
    return True


class WorkQueue:
    def __init__(self, store: Store, worker: str | None = None, lease: float = DEFAULT_LEASE) -> None:
        self._engine = store.sa_engine
        self.worker = worker or worker_name()
        self.lease = timedelta(seconds=lease)

    def add(self, flow: str, side: str, item_ids: Iterable[str], *,
            cursor: tuple[str, str, str] | None = None) -> None:
        """Queue changed items; with `cursor` (tracker, scope, value), advance that cursor in the same
        transaction. An item already queued stays once; if it is claimed right now, it is flagged to
        be worked on again after the claim (the claim may have read the item before this change)."""
        ids = list(dict.fromkeys(item_ids))
        now = _now()
        with self._engine.begin() as conn:
            if ids:
                t = work_items_t
                stmt = _insert(conn, t).values([
                    {"flow": flow, "side": side, "item_id": item_id, "enqueued_at": now, "again": False,
                     "claimed_by": None, "claimed_until": None, "attempts": 0} for item_id in ids])
                conn.execute(stmt.on_conflict_do_update(
                    index_elements=["flow", "side", "item_id"], set_={"again": True},
                    where=t.c.claimed_by.is_not(None)))
            if cursor is not None:
                tracker, scope, value = cursor
                stmt = _insert(conn, cursors_t).values(tracker=tracker, scope=scope, value=value, updated_at=now)
                conn.execute(stmt.on_conflict_do_update(index_elements=["tracker", "scope"],
                                                        set_={"value": value, "updated_at": now}))

    def claim(self, limit: int = 20) -> list[WorkItem]:
        """Claim up to `limit` claimable rows, oldest first, skipping rows another worker is claiming."""
        t = work_items_t
        now = _now()
        with self._engine.begin() as conn:
            query = (sa.select(t.c.id, t.c.flow, t.c.side, t.c.item_id, t.c.attempts)
                     .where(sa.or_(t.c.claimed_until.is_(None), t.c.claimed_until < now))
                     .order_by(t.c.id).limit(limit)
                     .with_for_update(skip_locked=True))
            rows = conn.execute(query).all()
            if not rows:
                return []
            conn.execute(t.update().where(t.c.id.in_([r.id for r in rows])).values(
                claimed_by=self.worker, claimed_until=now + self.lease, again=False, attempts=t.c.attempts + 1))
        return [WorkItem(r.id, r.flow, r.side, r.item_id, r.attempts + 1) for r in rows]

    def renew(self) -> int:
        """Extend this worker's claims (the heartbeat). Returns how many it holds."""
        t = work_items_t
        with self._engine.begin() as conn:
            result = conn.execute(t.update().where(t.c.claimed_by == self.worker)
                                  .values(claimed_until=_now() + self.lease))
        return int(result.rowcount)

    def finish(self, item: WorkItem) -> None:
        """The item is synced: drop its row, unless it changed again meanwhile (then it is
        claimable at once). A claim that expired and was taken over is no longer ours to finish."""
        t = work_items_t
        ours = sa.and_(t.c.id == item.id, t.c.claimed_by == self.worker)
        with self._engine.begin() as conn:
            conn.execute(t.delete().where(ours, t.c.again.is_(False)))
            conn.execute(t.update().where(ours).values(claimed_by=None, claimed_until=None, again=False))

    def hand_back(self, item: WorkItem, delay: float = RETRY_DELAY) -> None:
        """Give the claim up for now (its items are busy, its fetch failed): claimable after `delay`."""
        t = work_items_t
        with self._engine.begin() as conn:
            conn.execute(t.update().where(t.c.id == item.id, t.c.claimed_by == self.worker)
                         .values(claimed_by=None, claimed_until=_now() + timedelta(seconds=delay)))

    def release_orphans(self) -> int:
        """Free at once the claims of workers on this host whose process is gone (a restart after a
        crash), instead of waiting for their leases. Claims of other hosts wait for their lease."""
        t = work_items_t
        host = socket.gethostname()
        with self._engine.begin() as conn:
            owners = conn.execute(sa.select(t.c.claimed_by).where(t.c.claimed_by.like(f"{host}:%")).distinct()
                                  ).scalars().all()
            dead = [owner for owner in owners if owner != self.worker and not _alive(owner.rsplit(":", 1)[1])]
            if not dead:
                return 0
            result = conn.execute(t.update().where(t.c.claimed_by.in_(dead))
                                  .values(claimed_by=None, claimed_until=None))
        return int(result.rowcount)

    def pending(self, flow: str | None = None) -> int:
        """Rows queued (claimed ones included), of one flow or all."""
        query = sa.select(sa.func.count()).select_from(work_items_t)
        if flow is not None:
            query = query.where(work_items_t.c.flow == flow)
        with self._engine.begin() as conn:
            return int(conn.execute(query).scalar_one())

    def seconds_to_claimable(self) -> float | None:
        """Until the next row can be claimed (0: one is free now; None: the queue is empty)."""
        t = work_items_t
        with self._engine.begin() as conn:
            if conn.execute(sa.select(t.c.id).where(t.c.claimed_until.is_(None)).limit(1)).first():
                return 0.0
            soonest = conn.execute(sa.select(sa.func.min(t.c.claimed_until))).scalar_one_or_none()
        return None if soonest is None else max((soonest - _now()).total_seconds(), 0.0)

    @contextmanager
    def heartbeat(self, every: float | None = None) -> Iterator[None]:
        """Renew this worker's claims in the background while the block runs."""
        stop = threading.Event()
        interval = every if every is not None else self.lease.total_seconds() / 3

        def beat() -> None:
            while not stop.wait(interval):
                try:
                    self.renew()
                except sa.exc.SQLAlchemyError:  # the database is away: the next beat tries again
                    continue

        thread = threading.Thread(target=beat, name="ticketbridge-heartbeat", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()


# -- locks ------------------------------------------------------------------------------------

class Locks:
    """Item locks and named leases: PostgreSQL session advisory locks on one dedicated connection,
    or in-process locks on SQLite. Thread-safe; a lock is held until released or the process dies."""

    def __init__(self, store: Store) -> None:
        engine = store.sa_engine
        self._mutex = threading.Lock()
        self._held: set[str] = set()
        self._conn: Connection | None = None
        self._namespace = ""
        if engine.dialect.name == "postgresql":
            conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            conn.detach()  # its own session, ended by close(), never handed to the pool with locks held
            # Advisory locks are per database, while stores may share one in separate schemas.
            self._namespace = conn.execute(sa.text("SELECT current_database() || '.' || current_schema()")
                                           ).scalar_one()
            self._conn = conn

    @property
    def shared(self) -> bool:
        """Whether other processes see these locks (PostgreSQL)."""
        return self._conn is not None

    def try_acquire(self, names: Sequence[str]) -> bool:
        """Take every lock in `names`, or none of them. Never waits, so never deadlocks."""
        return self.try_acquire_groups([names])[0]

    def try_acquire_groups(self, groups: Sequence[Sequence[str]]) -> list[bool]:
        """`try_acquire` of each group (disjoint groups: no name in two), in one round trip for them
        all: whether each group is now held, all of its names, or none of them."""
        with self._mutex:
            wanted = [[] if any(n in self._held for n in group) else list(dict.fromkeys(group)) for group in groups]
            names = [name for group in wanted for name in group]
            if len(set(names)) < len(names):
                raise ValueError("lock groups must be disjoint")
            taken = set(self._try_all(names)) if names else set()
            got = [bool(group) and taken.issuperset(group) for group in wanted]
            self._unlock_all([name for group, ok in zip(wanted, got, strict=True) if not ok
                              for name in group if name in taken])
            for group, ok in zip(wanted, got, strict=True):
                if ok:
                    self._held.update(group)
            return got

    def release(self, names: Iterable[str]) -> None:
        with self._mutex:
            held = [name for name in dict.fromkeys(names) if name in self._held]
            self._held.difference_update(held)
            self._unlock_all(held)

    def try_lease(self, name: str) -> bool:
        """Hold the lease `name` (kept until released or this process dies), or say another has it."""
        with self._mutex:
            if name in self._held:
                return True
            if not self._try_all([name]):
                return False
            self._held.add(name)
            return True

    @contextmanager
    def holding(self, names: Sequence[str]) -> Iterator[bool]:
        """`with locks.holding([...]) as got:` - got is False when another holder has one of them."""
        got = self.try_acquire(names)
        try:
            yield got
        finally:
            if got:
                self.release(names)

    def close(self) -> None:
        with self._mutex:
            self._held.clear()
            if self._conn is not None:
                self._conn.close()  # ends the session: PostgreSQL drops every lock it held
                self._conn = None

    def _try_all(self, names: list[str]) -> list[str]:
        """The names of `names` whose locks were free and are now ours: one round trip for them all
        (an item and its counterparts are taken together for every item synced)."""
        if self._conn is None:
            return names
        keys = {self._key(name): name for name in names}
        rows = self._conn.execute(_TRY_LOCKS, {"keys": list(keys)}).all()
        return [keys[key] for key, got in rows if got]

    def _unlock_all(self, names: list[str]) -> None:
        if self._conn is not None and names:
            self._conn.execute(_UNLOCK, {"keys": [self._key(name) for name in names]})

    def _key(self, name: str) -> int:
        """A signed 64-bit advisory-lock key, stable across processes and runs."""
        digest = hashlib.blake2b((self._namespace + name).encode("utf-8"), digest_size=8).digest()
        return int.from_bytes(digest, "big", signed=True)


_TRY_LOCKS = sa.text("SELECT k, pg_try_advisory_lock(k) FROM unnest(CAST(:keys AS bigint[])) AS k")
_UNLOCK = sa.text("SELECT pg_advisory_unlock(k) FROM unnest(CAST(:keys AS bigint[])) AS k")


def item_lock(tracker: str, item_id: str) -> str:
    """The lock of one tracker item, whatever the flow: two flows sharing a tracker (Zendesk -> Jira
    and Zendesk -> GitHub, or a chain through Jira) may both write to one item."""
    return f"item:{tracker}:{item_id}"
