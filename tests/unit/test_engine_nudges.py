"""Webhook nudges on the engine's threads: each starts as it arrives, and one naming an item being
synced runs again after it. Events, not timings, decide every assertion."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ticketbridge.sync.engine import Engine, PassStats
from ticketbridge.sync.store import Store


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    store = Store.open(f"sqlite:///{tmp_path / 'tb.db'}")
    engine = Engine(store, [], concurrency=4)
    yield engine
    engine.close()
    store.close()


def serve(engine: Engine, nudges: queue.Queue[tuple[str, str]], stop: threading.Event) -> threading.Thread:
    thread = threading.Thread(target=engine._serve_nudges, args=(stop, nudges, 30.0, None), daemon=True)
    thread.start()
    return thread


def test_a_nudge_does_not_wait_for_a_slow_one_before_it(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    release_slow, fast_done = threading.Event(), threading.Event()
    done: list[str] = []

    def nudge(tracker: str, item_id: str) -> PassStats:
        if item_id == "slow":
            assert release_slow.wait(10)
        done.append(item_id)
        if item_id == "fast":
            fast_done.set()
        return PassStats()

    monkeypatch.setattr(engine, "nudge", nudge)
    nudges: queue.Queue[tuple[str, str]] = queue.Queue()
    stop = threading.Event()
    thread = serve(engine, nudges, stop)
    nudges.put(("zendesk", "slow"))
    nudges.put(("zendesk", "fast"))
    assert fast_done.wait(10), "the second nudge waited for the first"
    assert done == ["fast"]
    release_slow.set()
    stop.set()
    thread.join(10)
    assert not thread.is_alive() and done == ["fast", "slow"]


def test_a_nudge_for_an_item_being_synced_runs_once_more_after_it(engine: Engine,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    started, release = threading.Event(), threading.Event()
    runs: list[str] = []

    def nudge(tracker: str, item_id: str) -> PassStats:
        runs.append(item_id)
        if len(runs) == 1:
            started.set()
            assert release.wait(10)
        return PassStats()

    monkeypatch.setattr(engine, "nudge", nudge)
    nudges: queue.Queue[tuple[str, str]] = queue.Queue()
    stop = threading.Event()
    thread = serve(engine, nudges, stop)
    nudges.put(("jira", "10001"))
    assert started.wait(10)
    for _ in range(3):  # a burst while it runs: one more run, not three
        nudges.put(("jira", "10001"))
    while not nudges.empty():
        threading.Event().wait(0.01)
    release.set()
    stop.set()
    thread.join(10)
    assert not thread.is_alive()
    assert runs == ["10001", "10001"]
