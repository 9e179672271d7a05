"""The engine's queue mode (Engine.poll_into / Engine.work), as several workers run it, in-process.

The three-process run on PostgreSQL with a worker killed is tests/reliability/test_workers.py."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from ticketbridge.sync.engine import Engine, PassStats
from ticketbridge.sync.store import Store
from ticketbridge.sync.workqueue import WorkQueue, item_lock

from .conftest import Bridge


def drain(engine: Engine, work: WorkQueue) -> PassStats:
    stats = PassStats()
    while claimed := work.claim(7):
        stats.merge(engine.work(claimed, work))
    return stats


def test_two_workers_share_a_poll_and_create_each_issue_once(bridge: Bridge) -> None:
    for n in range(30):
        bridge.sandbox.zendesk.add_ticket(subject=f"Export fails #{n}", priority="high")
    engine = bridge.engine
    first, second = WorkQueue(bridge.store, "first"), WorkQueue(bridge.store, "second")
    assert engine.poll_into(bridge.flow, first) == 30
    assert bridge.store.cursor("zendesk", bridge.flow.name) is not None  # committed with the rows
    stats = engine.work(first.claim(15), first)
    stats.merge(drain(engine, second))
    assert sum(stats.created.values()) == 30 and not stats.failures
    assert len(bridge.sandbox.jira.issues()) == 30
    assert bridge.store.count_links(bridge.flow.name) == 30


def test_issues_the_bridge_already_saw_are_not_queued_again(bridge: Bridge) -> None:
    bridge.sandbox.zendesk.add_ticket(subject="Login loop", priority="normal")
    engine, work = bridge.engine, WorkQueue(bridge.store, "w")
    for _ in range(3):  # create; read back the issue written to; nothing new
        engine.poll_into(bridge.flow, work)
        drain(engine, work)
    assert engine.poll_into(bridge.flow, work) == 0  # Jira's look-back re-delivers the issue, unchanged


def test_an_item_another_worker_holds_is_handed_back_then_synced(bridge: Bridge) -> None:
    ticket = bridge.sandbox.zendesk.add_ticket(subject="Invoice is blank", priority="normal")
    engine, work = bridge.engine, WorkQueue(bridge.store, "w")
    engine.poll_into(bridge.flow, work)
    other = [item_lock("zendesk", str(ticket["id"]))]
    assert bridge.store.locks.try_acquire(other)  # as if another worker were syncing the ticket
    claimed = work.claim()
    assert engine.work(claimed, work).created == {}
    assert work.pending() == 1 and work.claim() == []  # back in line, after a short delay
    bridge.store.locks.release(other)
    time.sleep(work.seconds_to_claimable() or 0)
    engine.work(work.claim(), work)
    assert work.pending() == 0 and len(bridge.sandbox.jira.issues()) == 1


def test_a_webhook_nudge_queues_the_item_in_every_flow_of_its_tracker(bridge: Bridge) -> None:
    ticket = bridge.sandbox.zendesk.add_ticket(subject="Search is slow", priority="low")
    engine, work = bridge.engine, WorkQueue(bridge.store, "w")
    engine.queue_nudge("zendesk", str(ticket["id"]), work)
    engine.queue_nudge("github", "1", work)  # no flow of this config: nothing
    [claimed] = work.claim()
    assert (claimed.flow, claimed.side, claimed.item_id) == (bridge.flow.name, "left", str(ticket["id"]))
    engine.work([claimed], work)
    assert len(bridge.sandbox.jira.issues()) == 1


def test_an_item_synced_elsewhere_while_it_waited_for_its_lock_is_read_again_not_created_twice(
        bridge: Bridge, tmp_path: Path) -> None:
    ticket = bridge.sandbox.zendesk.add_ticket(subject="Export hangs", priority="high")
    ticket_id = str(ticket["id"])
    held = [item_lock("zendesk", ticket_id)]
    assert bridge.store.locks.try_acquire(held)  # this process's other thread is syncing the ticket
    fetched = len(bridge.sandbox.zendesk.request_log)
    waiting = threading.Thread(target=bridge.engine.nudge, args=("zendesk", ticket_id))
    waiting.start()  # reads the ticket (no link yet), then waits for its lock
    while len(bridge.sandbox.zendesk.request_log) == fetched:
        time.sleep(0.01)
    time.sleep(0.2)
    # Meanwhile another process (a store of its own, so locks of its own) creates the issue.
    with Store.open(f"sqlite:///{tmp_path / 'tb.db'}") as elsewhere:
        created = Engine(elsewhere, [bridge.flow]).sync_once().created
    assert sum(created.values()) == 1
    bridge.store.locks.release(held)
    waiting.join(30)
    assert not waiting.is_alive()
    assert len(bridge.sandbox.jira.issues()) == 1 and bridge.store.count_links(bridge.flow.name) == 1
