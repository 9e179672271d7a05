"""The worker loop's claiming (sync/workers.py `run_worker`), with a stand-in engine on SQLite.

With item threads (`sync.concurrency` > 1) a worker keeps two claimed batches of `concurrency` items
in flight, so the engine's threads start on the next batch while the last items of the previous one
still run; with one item at a time it claims `BATCH` items and syncs one batch at a time."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from ticketbridge.sync.engine import Engine, PassStats
from ticketbridge.sync.store import Store
from ticketbridge.sync.workers import BATCH, claim_plan, run_worker
from ticketbridge.sync.workqueue import WorkItem, WorkQueue


class StandInEngine:
    """What `run_worker` uses of an engine; `work` finishes what it is given and records the batches.
    With `overlap`, the first batch ends only once a second batch has started."""

    def __init__(self, store: Store, concurrency: int, stop: threading.Event, *, overlap: bool) -> None:
        self.store, self.concurrency, self.stop, self.overlap = store, concurrency, stop, overlap
        self.flows: list[Any] = []  # nothing to poll: the queue is filled by the test
        self.sla = None
        self.batches: list[list[str]] = []
        self.most_at_once = 0
        self._running = 0
        self._lock = threading.Lock()
        self._second = threading.Event()
        self.working = threading.Event()  # set once a batch has started

    def work(self, claimed: list[WorkItem], work: WorkQueue) -> PassStats:
        with self._lock:
            self.batches.append([one.item_id for one in claimed])
            number = len(self.batches)
            self._running += 1
            self.most_at_once = max(self.most_at_once, self._running)
        self.working.set()
        if number == 2:
            self._second.set()
        if self.overlap and number == 1:
            assert self._second.wait(30), "no second batch was claimed while the first was running"
        for one in claimed:
            work.finish(one)
        with self._lock:
            self._running -= 1
        if work.pending() == 0:
            self.stop.set()
        return PassStats(items_seen=len(claimed))

    def run_escalations(self, stats: PassStats) -> None:
        pass

    def seconds_to_next_timer(self) -> float | None:
        return None


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        yield s
    finally:
        s.close()


def run(store: Store, concurrency: int, items: int, *, overlap: bool) -> tuple[StandInEngine, list[PassStats]]:
    WorkQueue(store, "filler").add("f", "left", [str(n) for n in range(items)])
    stop = threading.Event()
    engine = StandInEngine(store, concurrency, stop, overlap=overlap)
    passes: list[PassStats] = []
    worker = threading.Thread(target=run_worker, args=(cast(Engine, engine), stop, {}),
                              kwargs={"worker": "w", "on_pass": passes.append}, daemon=True)
    worker.start()
    worker.join(60)
    assert not worker.is_alive(), "the worker did not stop"
    return engine, passes


def test_with_item_threads_the_next_batch_is_claimed_while_the_last_one_runs(store: Store) -> None:
    engine, passes = run(store, concurrency=8, items=40, overlap=True)
    assert engine.most_at_once == 2
    assert all(len(batch) <= 8 for batch in engine.batches)  # no more claimed than threads to start them
    synced = [item for batch in engine.batches for item in batch]
    assert sorted(synced, key=int) == [str(n) for n in range(40)]  # each item once
    assert sum(p.items_seen for p in passes) == 40
    assert WorkQueue(store, "w").pending() == 0


def test_one_item_at_a_time_syncs_one_batch_at_a_time(store: Store) -> None:
    engine, _ = run(store, concurrency=1, items=45, overlap=False)
    assert engine.most_at_once == 1
    assert [len(batch) for batch in engine.batches] == [BATCH, BATCH, 45 - 2 * BATCH]


class SlowPoll:
    """A flow whose poll returns only once the engine has started on queued work: a worker that
    polled before claiming would wait for it forever."""

    name = "f"

    def __init__(self, engine: StandInEngine) -> None:
        self.engine = engine
        self.left = self.right = type("Tracker", (), {"name": "zendesk"})()
        self.polls = 0

    def poll_into(self, work: WorkQueue) -> int:
        self.polls += 1
        if self.polls == 1:
            assert self.engine.working.wait(30), "the queued work waited for the poll"
        return 0


def test_queued_work_is_claimed_before_a_poll(store: Store) -> None:
    WorkQueue(store, "filler").add("f", "left", [str(n) for n in range(5)])
    stop = threading.Event()
    engine = StandInEngine(store, 8, stop, overlap=False)
    flow = SlowPoll(engine)
    engine.flows = [flow]
    engine.poll_into = lambda _flow, work: flow.poll_into(work)  # type: ignore[attr-defined]
    worker = threading.Thread(target=run_worker, args=(cast(Engine, engine), stop, {"zendesk": 0.05}),
                              kwargs={"worker": "w"}, daemon=True)
    worker.start()
    worker.join(60)
    assert not worker.is_alive(), "the worker did not stop"
    assert flow.polls >= 1 and engine.batches == [["0", "1", "2", "3", "4"]]


def test_claim_plan() -> None:
    assert claim_plan(1) == (1, BATCH)
    assert claim_plan(8) == (2, 8)
