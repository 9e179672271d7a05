"""The work queue and the locks several workers share (sync/workqueue.py), on SQLite and PostgreSQL.

Claims are exclusive and expire with their lease; a change arriving during a claim is not lost;
a poll's rows and its cursor commit together. The locks are shared across processes only on
PostgreSQL (separate Store objects stand for separate processes: each has its own session)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from ticketbridge.sync.store import Store
from ticketbridge.sync.workqueue import WorkQueue, item_lock

from ..pg import fresh_schema


def test_an_item_is_queued_once_and_finished_rows_are_gone(store: Store) -> None:
    work = WorkQueue(store, "w1")
    work.add("f", "left", ["1", "2", "1"])
    work.add("f", "left", ["2"])
    claimed = work.claim(10)
    assert [(c.side, c.item_id) for c in claimed] == [("left", "1"), ("left", "2")]
    assert work.claim(10) == []  # claimed rows are not claimable again
    for one in claimed:
        work.finish(one)
    assert work.pending() == 0
    assert work.seconds_to_claimable() is None


def test_a_change_during_a_claim_is_worked_on_again(store: Store) -> None:
    work = WorkQueue(store, "w1")
    work.add("f", "left", ["7"])
    [first] = work.claim()
    work.add("f", "left", ["7"])  # the poller saw a newer change while the worker syncs
    work.finish(first)
    [again] = work.claim()
    assert again.item_id == "7" and again.attempts == 2
    work.finish(again)
    assert work.pending() == 0


def test_a_poll_page_and_its_cursor_commit_together(store: Store) -> None:
    work = WorkQueue(store, "w1")
    work.add("f", "right", ["a", "b"], cursor=("jira", "f", "2026-12-02T10:00:00Z"))
    assert store.cursor("jira", "f") == "2026-12-02T10:00:00Z"
    assert work.pending() == 2


def test_an_expired_claim_is_taken_over_and_its_late_finish_changes_nothing(store: Store) -> None:
    dead = WorkQueue(store, "dead", lease=0.2)
    alive = WorkQueue(store, "alive")
    dead.add("f", "left", ["1"])
    [lost] = dead.claim()
    assert alive.claim() == []
    time.sleep(0.3)
    [taken] = alive.claim()
    assert taken.item_id == "1"
    dead.finish(lost)  # the slow worker wakes up: the row is not its to drop any more
    assert work_rows(store) == 1
    alive.finish(taken)
    assert work_rows(store) == 0


def test_claims_of_a_dead_process_on_this_host_are_freed_at_start(store: Store) -> None:
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True)
    dead = WorkQueue(store, f"{socket.gethostname()}:{finished.stdout.strip()}")
    living = WorkQueue(store, f"{socket.gethostname()}:{os.getpid()}")
    elsewhere = WorkQueue(store, "other-host:1")
    dead.add("f", "left", ["1", "2"])
    dead.claim(1)
    elsewhere.claim(1)
    fresh = WorkQueue(store, "restarted")
    assert fresh.release_orphans() == 1  # the other host's claim waits for its lease
    assert [c.item_id for c in fresh.claim()] == ["1"]
    assert living.release_orphans() == 0


def test_a_heartbeat_keeps_a_live_workers_claims(store: Store) -> None:
    busy = WorkQueue(store, "busy", lease=0.3)
    other = WorkQueue(store, "other")
    busy.add("f", "left", ["1"])
    [mine] = busy.claim()
    with busy.heartbeat(every=0.05):
        time.sleep(0.6)
        assert other.claim() == []
    busy.finish(mine)


def test_a_handed_back_claim_waits_its_delay(store: Store) -> None:
    work = WorkQueue(store, "w1")
    work.add("f", "left", ["1"])
    [one] = work.claim()
    work.hand_back(one, delay=0.3)
    assert work.claim() == []
    assert 0 < (work.seconds_to_claimable() or 0) <= 0.3
    time.sleep(0.35)
    assert [c.item_id for c in work.claim()] == ["1"]


def work_rows(store: Store) -> int:
    return WorkQueue(store).pending()


# -- several processes: PostgreSQL ---------------------------------------------------------------

@pytest.fixture
def pg_stores() -> Iterator[list[Store]]:
    """Three Store objects on one fresh PostgreSQL schema: three workers' sessions."""
    with fresh_schema() as url:
        stores = [Store.open(url) for _ in range(3)]
        try:
            yield stores
        finally:
            for one in stores:
                one.close()


@pytest.mark.postgres
def test_concurrent_claims_never_share_an_item(pg_stores: list[Store]) -> None:
    WorkQueue(pg_stores[0]).add("f", "left", [str(n) for n in range(300)])
    claimed: Counter[str] = Counter()
    mutex = threading.Lock()

    def drain(store: Store, name: str) -> None:
        work = WorkQueue(store, name)
        while batch := work.claim(7):
            with mutex:
                claimed.update(one.item_id for one in batch)
            for one in batch:
                work.finish(one)

    threads = [threading.Thread(target=drain, args=(store, f"w{n}")) for n, store in enumerate(pg_stores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(claimed) == 300 and set(claimed.values()) == {1}


@pytest.mark.postgres
def test_item_locks_exclude_other_sessions_all_or_nothing(pg_stores: list[Store]) -> None:
    a, b, c = (store.locks for store in pg_stores)
    assert a.shared
    x, y = item_lock("jira", "10001"), item_lock("zendesk", "42")
    assert a.try_acquire([x])
    assert not b.try_acquire([y, x])  # x is a's: b gets neither
    assert c.try_acquire([y])  # so y was left free
    c.release([y])
    a.release([x])
    assert b.try_acquire([y, x])


@pytest.mark.postgres
def test_a_dead_workers_lease_passes_to_the_next(pg_stores: list[Store]) -> None:
    first, second = pg_stores[0], pg_stores[1]
    assert first.locks.try_lease("poll:zendesk-jira")
    assert first.locks.try_lease("poll:zendesk-jira")  # held: asking again is harmless
    assert not second.locks.try_lease("poll:zendesk-jira")
    first.locks.close()  # the session ends as when the process is killed
    # The server releases a closed session's locks when its backend has exited: a moment later.
    deadline = time.monotonic() + 5
    while not second.locks.try_lease("poll:zendesk-jira"):
        assert time.monotonic() < deadline, "the lease was never released"
        time.sleep(0.02)


def test_on_sqlite_locks_are_per_process(tmp_path: pytest.TempPathFactory) -> None:
    store = Store.open(f"sqlite:///{tmp_path}/s.db")
    try:
        locks = store.locks
        assert not locks.shared
        assert locks.try_acquire(["item:jira:1"])
        assert not locks.try_acquire(["item:jira:1"])  # another thread of this process
        locks.release(["item:jira:1"])
        assert locks.try_acquire(["item:jira:1"])
    finally:
        store.close()


@pytest.mark.postgres
def test_lock_groups_are_each_all_or_nothing_in_one_round_trip(pg_stores: list[Store]) -> None:
    a, b, c = (store.locks for store in pg_stores)
    x, y, z, w = (item_lock("zendesk", str(n)) for n in range(4))
    assert b.try_acquire([z])
    statements: list[str] = []
    sa.event.listen(a._conn, "before_cursor_execute", lambda *args: statements.append(args[2]))
    assert a.try_acquire_groups([[x, y], [w, z]]) == [True, False]  # z is b's: a's second group is not taken
    assert len(statements) == 2  # one statement tries all four locks, one gives w back
    assert c.try_acquire([w]) and not c.try_acquire([x]) and not c.try_acquire([y])
    with pytest.raises(ValueError, match="disjoint"):
        a.try_acquire_groups([[w], [w]])


def test_on_sqlite_lock_groups_are_each_all_or_nothing(tmp_path: pytest.TempPathFactory) -> None:
    store = Store.open(f"sqlite:///{tmp_path}/s.db")
    try:
        locks = store.locks
        assert locks.try_acquire(["item:jira:3"])
        assert locks.try_acquire_groups([["item:jira:1", "item:zendesk:1"], ["item:jira:2", "item:jira:3"],
                                         ["item:jira:4"]]) == [True, False, True]
        assert locks.try_acquire(["item:jira:2"])  # the refused group took nothing
        assert not locks.try_acquire(["item:zendesk:1"])
    finally:
        store.close()
