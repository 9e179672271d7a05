"""A sync pass commits a polled page's items in batches (`_FlowPass._sync_page`): one transaction for
a batch, and the items a batch cannot take (locked elsewhere, sharing a counterpart) synced alone,
with nothing lost either way. On the emulators, through the real connectors and the store."""

from __future__ import annotations

from typing import Any

import pytest

from ticketbridge.connectors.base import Page
from ticketbridge.connectors.errors import Permanent
from ticketbridge.sync import engine as engine_mod
from ticketbridge.sync.engine import Engine
from ticketbridge.sync.store import Batch, Store
from ticketbridge.sync.workqueue import item_lock

from .conftest import Bridge
from .test_sync import seed

FLOW = "zendesk-jira"


def jira_summary(bridge: Bridge, ticket: int) -> str:
    """The summary of the ticket's issue, less the mapping's "[ZD #n] " prefix."""
    link = bridge.store.link_for(FLOW, "left", str(ticket))
    assert link is not None
    summary = str(bridge.sandbox.jira.issue(link.right_id)["fields"]["summary"])
    assert summary.startswith(f"[ZD #{ticket}] ")
    return summary.split("] ", 1)[1]


def renamed_after_sync(bridge: Bridge, count: int, renamed: int | None = None) -> list[int]:
    """`count` tickets synced until quiet, then the first `renamed` (all by default) renamed in Zendesk."""
    ids = seed(bridge.sandbox, count)
    bridge.sync_until_quiet()
    for ticket in ids[:renamed]:
        bridge.sandbox.zendesk.update_ticket(ticket, subject=f"Renamed {ticket}")
    return ids


def record_commits(monkeypatch: pytest.MonkeyPatch) -> tuple[list[list[str]], list[str]]:
    """(the left ids of each batch committed, the left ids committed one by one), as they happen."""
    batches: list[list[str]] = []
    alone: list[str] = []
    commit_batch, commit_item = Store.commit_batch, Store.commit_item

    def batch_spy(self: Store, batch: Batch) -> None:
        if batch.updates:
            batches.append([c.left_id for _link, c, _snapshot in batch.updates])
        commit_batch(self, batch)

    def item_spy(self: Store, c: Any) -> Any:
        alone.append(c.left_id)
        return commit_item(self, c)

    monkeypatch.setattr(Store, "commit_batch", batch_spy)
    monkeypatch.setattr(Store, "commit_item", item_spy)
    return batches, alone


def test_a_polled_page_commits_its_changed_items_in_one_transaction(bridge: Bridge,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    ids = renamed_after_sync(bridge, 6, renamed=5)
    batches, alone = record_commits(monkeypatch)
    stats = bridge.sync()
    assert not stats.failures and stats.fields_pushed == {"left_to_right": 5}
    assert batches == [[str(ticket) for ticket in ids[:5]]] and alone == []
    assert [jira_summary(bridge, ticket) for ticket in ids] == [f"Renamed {t}" for t in ids[:5]] + [
        "Customer problem 5"]
    assert bridge.sync().writes == 0  # the batch's snapshots were committed: the echoes are no-ops


def test_an_item_locked_elsewhere_waits_in_failures_while_its_page_flows(bridge: Bridge) -> None:
    ids = seed(bridge.sandbox, 4)
    bridge.sync_until_quiet()
    held = bridge.store.link_for(FLOW, "left", str(ids[1]))
    assert held is not None
    for ticket in ids[:3]:
        bridge.sandbox.zendesk.update_ticket(ticket, subject=f"Changed subject of {ticket}")
    lock = [item_lock("jira", held.right_id)]
    assert bridge.store.locks.try_acquire(lock)  # as another thread syncing that issue would
    engine = Engine(bridge.store, [bridge.flow], lock_wait=0.2)
    stats = engine.sync_once()
    # The ticket waits, and so does its issue if the Jira poll returned it (it cannot be locked either).
    assert str(ids[1]) in {f.item_id for f in bridge.store.failures()} <= {str(ids[1]), held.right_id}
    assert stats.fields_pushed == {"left_to_right": 2}
    bridge.store.locks.release(lock)
    engine.sync_once()  # the retry goes through
    assert bridge.store.failures() == []
    assert [jira_summary(bridge, ticket) for ticket in ids[:3]] == [f"Changed subject of {t}" for t in ids[:3]]


def test_two_tickets_on_one_issue_are_never_synced_at_once(bridge: Bridge, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = seed(bridge.sandbox, 3)
    bridge.sync_until_quiet()
    issue = bridge.store.link_for(FLOW, "left", str(ids[0]))
    assert issue is not None
    engine = Engine(bridge.store, [bridge.flow])
    engine.attach(FLOW, str(ids[2]), issue.right_key)  # ticket 3 follows ticket 1's issue
    for ticket in ids:
        bridge.sandbox.zendesk.update_ticket(ticket, subject=f"Renamed {ticket}")
    groups: list[list[list[str]]] = []
    try_groups = bridge.store.locks.try_acquire_groups

    def spy(names: Any) -> list[bool]:
        groups.append([list(group) for group in names])
        return try_groups(names)

    monkeypatch.setattr(bridge.store.locks, "try_acquire_groups", spy)
    processed: list[str] = []
    process = engine_mod._FlowPass._process

    def process_spy(self: engine_mod._FlowPass, side: Any, item: Any) -> None:
        processed.append(item.id)
        process(self, side, item)

    monkeypatch.setattr(engine_mod._FlowPass, "_process", process_spy)
    stats = engine.sync_once()
    assert not stats.failures
    left_batch = groups[0]
    names = [name for group in left_batch for name in group]
    assert len(names) == len(set(names))  # no lock in two of a batch's groups
    assert item_lock("jira", issue.right_id) in names
    assert str(ids[2]) in processed  # the follower shared the issue's lock: synced alone, after the batch
    assert [item_lock("zendesk", str(ids[2]))] not in left_batch


def test_an_item_that_raises_keeps_the_commits_of_its_batch_before_it(bridge: Bridge,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    ids = renamed_after_sync(bridge, 4)
    push = bridge.flow.right.push

    def broken_push(item_id: str | None, ops: Any) -> Any:
        link = bridge.store.link_for(FLOW, "left", str(ids[2]))
        if link is not None and item_id == link.right_id:
            raise RuntimeError("a bug while pushing the third ticket's issue")
        return push(item_id, ops)

    monkeypatch.setattr(bridge.flow.right, "push", broken_push)
    with pytest.raises(RuntimeError, match="third ticket"):
        bridge.sync()
    committed = [link.snapshot["title"][0] if link else None
                 for link in (bridge.store.link_for(FLOW, "left", str(t)) for t in ids)]
    assert committed[:2] == [f"Renamed {ids[0]}", f"Renamed {ids[1]}"]  # pushed and committed before it
    assert committed[2:] == [f"Customer problem {n}" for n in (2, 3)]  # not synced: nothing committed
    monkeypatch.setattr(bridge.flow.right, "push", push)
    bridge.sync_until_quiet()  # the cursor stayed behind the page: the replay syncs the rest
    assert [jira_summary(bridge, ticket) for ticket in ids] == [f"Renamed {ticket}" for ticket in ids]


def test_an_item_whose_link_changed_before_its_locks_is_read_again_alone(bridge: Bridge,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    ids = renamed_after_sync(bridge, 3)
    stamps_of = bridge.store.link_stamps_many

    def stale(flow: str, side: str, item_ids: Any) -> Any:
        stamps = stamps_of(flow, side, item_ids)
        if str(ids[1]) in stamps:  # as if another process wrote the link after this read
            stamps[str(ids[1])] = [(link_id, counterpart, None) for link_id, counterpart, _at in stamps[str(ids[1])]]
        return stamps

    monkeypatch.setattr(bridge.store, "link_stamps_many", stale)
    batches, alone = record_commits(monkeypatch)
    stats = bridge.sync()
    assert not stats.failures
    assert batches == [[str(ids[0]), str(ids[2])]] and alone == [str(ids[1])]
    assert [jira_summary(bridge, ticket) for ticket in ids] == [f"Renamed {ticket}" for ticket in ids]


def test_a_pair_failing_after_its_issues_other_pair_was_synced_stays_in_failures(
        bridge: Bridge, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = seed(bridge.sandbox, 3)
    bridge.sync_until_quiet()
    first, second = (bridge.store.link_for(FLOW, "left", str(ticket)) for ticket in ids[:2])
    assert first is not None and second is not None
    engine = Engine(bridge.store, [bridge.flow])
    engine.attach(FLOW, str(ids[2]), first.right_key)  # ticket 3 follows ticket 1's issue
    bridge.sync_until_quiet()
    push = bridge.flow.left.push

    def refuse_ticket_3(item_id: str | None, ops: Any) -> Any:
        if item_id == str(ids[2]):
            raise Permanent("zendesk", "422: ticket 3 is closed for updates", status=422)
        return push(item_id, ops)

    monkeypatch.setattr(bridge.flow.left, "push", refuse_ticket_3)
    bridge.sandbox.jira.transition(first.right_key, "Done")  # both issues change: a batch of two
    bridge.sandbox.jira.transition(second.right_key, "Done")
    poll = bridge.flow.right.poll

    def in_id_order(cursor: str | None, select: Any) -> Any:
        # Ticket 3's own issue (the look-back window returns it too) shares ticket 3's lock with the
        # first issue: polled after it, it is synced alone after the batch, not the first issue.
        for page in poll(cursor, select):
            yield Page(sorted(page.items, key=lambda item: int(item.id)), page.cursor)

    monkeypatch.setattr(bridge.flow.right, "poll", in_id_order)
    batches, alone = record_commits(monkeypatch)
    stats = engine.sync_once()
    assert batches == [[str(ids[0]), str(ids[1])]] and alone == []  # the primary pairs, committed together
    assert bridge.sandbox.zendesk.ticket(ids[0])["status"] == "solved"
    failure = bridge.store.open_failure(FLOW, "jira", first.right_id)
    assert failure is not None and "ticket 3 is closed" in failure.message and stats.failures
