"""Three workers on one PostgreSQL store, the poller SIGKILLed mid-run: the sync converges, nothing is
duplicated, and no item is ever synced by two workers at once.

How (`workers_run`):
- Zendesk and Jira emulators run in this process (a `Sandbox`), seeded with `seed_backfill`
  (tests/reliability/harness.py): 300 tickets with fields and 2-3 replies each.
- Three `ticketbridge run` processes share a fresh PostgreSQL schema (1 s poll interval, a 3 s claim
  lease, DEBUG logs: each worker logs when it takes and frees the locks of the items it syncs).
- Once a third of the issues exist, the worker holding the poll lease is SIGKILLed: its poll lease
  (an advisory lock) dies with its session, its claimed items wait for their lease to expire.
  Once every issue exists, both sides of 60 pairs change at once (a Jira comment; a Zendesk reply and
  priority), so one poll queues both sides of each and the workers race for the pairs.
- Checked: the Jira issues equal, after normalization, those of a reference run of the same data
  and edits by one in-process engine (one issue per ticket, every field and comment once); the store
  has one link per ticket, no open failures, no creation intents, an empty work queue; another worker
  took the poll lease over; every worker synced items; and the logged lock spans of the same item by
  two workers never overlap (the killed worker's last spans run to the moment of the kill).

Also a script printing its figures:

    .venv/bin/python -m tests.reliability.test_workers [--tickets 300] [--workers 3] [--seed 11]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import logging
import random
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
import structlog

from ticketbridge.cli import open_runtime
from ticketbridge.sandbox import Sandbox
from ticketbridge.sync.config import load_config
from ticketbridge.sync.store import Store
from ticketbridge.sync.workqueue import WorkQueue

from ..pg import fresh_schema, pg_unreachable
from .harness import (
    BridgeProcess,
    compare_snapshots,
    jira_snapshot,
    marker_issue_ids,
    seed_backfill,
    store_report,
    wait_until,
)

REPO = Path(__file__).resolve().parents[2]
MAPPING = REPO / "mappings" / "zendesk-jira.yaml"
FLOW = "zendesk-jira"
TICKETS, WORKERS, EDITS, SEED = 300, 3, 60, 11


@dataclass
class Figures:
    tickets: int
    workers: int
    seconds: float = 0.0
    killed: str = ""
    killed_at_issues: int = 0
    new_poller: str = ""
    synced_by_worker: dict[str, int] = field(default_factory=dict)
    lock_spans: int = 0
    overlaps: list[str] = field(default_factory=list)
    duplicates: int = 0
    missing: int = 0
    mismatches: list[str] = field(default_factory=list)
    open_failures: list[str] = field(default_factory=list)
    queued_left: int = 0

    def lines(self) -> list[str]:
        return [
            f"tickets {self.tickets}, workers {self.workers}, wall time {self.seconds:.1f} s",
            f"killed {self.killed} (the poller) at {self.killed_at_issues} issues; poll lease taken over by "
            f"{self.new_poller or 'nobody'}",
            "items synced per worker: " + ", ".join(f"{w} {n}" for w, n in sorted(self.synced_by_worker.items())),
            f"lock spans checked {self.lock_spans}; overlapping spans of one item by two workers: "
            f"{len(self.overlaps)}",
            f"duplicates {self.duplicates}, missing {self.missing}, mismatched issues {len(self.mismatches)}, "
            f"open failures {len(self.open_failures)}, queued at convergence {self.queued_left}",
        ]


def edit_pairs(sandbox: Sandbox, seed: int, count: int) -> None:
    """Both sides of `count` pairs change at once (the same ones for the same seed): a comment on the
    Jira issue, then a reply and a new priority on the ticket. Each pair's two sides are queued by
    one poll, so two workers would sync the same pair together if the item locks did not hold."""
    rng = random.Random(seed)
    issues = marker_issue_ids(sandbox)
    chosen = sorted(rng.sample(sorted(issues), count))
    for marker in chosen:
        sandbox.jira.add_comment(issues[marker], f"Engineering: looking into {marker} now.")
    for marker in chosen:
        ticket_id = int(marker.split(":", 1)[1])
        sandbox.zendesk.add_comment(ticket_id, f"Follow-up on ticket {ticket_id}: still broken after the update.")
        sandbox.zendesk.update_ticket(ticket_id, priority=rng.choice(("low", "normal", "high", "urgent")))


def reference(workdir: Path, tickets: int, seed: int) -> dict[str, dict[str, object]]:
    """The same data and edits synced by one in-process engine on SQLite."""
    with Sandbox(port=0) as sandbox:
        seed_backfill(sandbox, tickets, seed)
        config_path = sandbox.write_config(workdir / "reference.yaml", store_url=f"sqlite:///{workdir}/ref.db",
                                           mapping=MAPPING, poll_interval="1s")
        runtime = open_runtime(load_config(config_path), sandbox.credentials())
        saved = structlog.get_config()
        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
        try:
            engine = runtime.engine()
            for edit in (False, True):
                if edit:
                    edit_pairs(sandbox, seed, min(EDITS, tickets))
                for _ in range(4):
                    if engine.sync_once().writes == 0:
                        break
        finally:
            structlog.configure(**saved)
            runtime.store.close()
        return dict(jira_snapshot(sandbox).by_marker)


def _at(event: dict[str, object]) -> datetime:
    return datetime.fromisoformat(str(event["timestamp"]))


def lock_overlaps(workers: list[BridgeProcess], killed: str, killed_at: datetime) -> tuple[int, list[str]]:
    """(spans, overlaps): the logged spans during which each worker held each item lock; two spans
    of one item by different workers must not overlap."""
    spans: dict[str, list[tuple[datetime, datetime, str]]] = defaultdict(list)
    for worker in workers:
        opened: dict[str, datetime] = {}
        for event in worker.events():
            if event.get("event") == "engine.items_held":
                for name in event["items"]:  # type: ignore[attr-defined]
                    opened[name] = _at(event)
            elif event.get("event") == "engine.items_freed":
                for name in event["items"]:  # type: ignore[attr-defined]
                    if name in opened:
                        spans[name].append((opened.pop(name), _at(event), worker.name))
        if worker.name == killed:  # held until the kill
            for name, start in opened.items():
                spans[name].append((start, killed_at, worker.name))
    overlaps = []
    for name, held in spans.items():
        held.sort()
        for (_, end, who), (start, _, next_who) in itertools.pairwise(held):
            if who != next_who and start < end:
                overlaps.append(f"{name}: {who} until {end.isoformat()}, {next_who} from {start.isoformat()}")
    return sum(len(v) for v in spans.values()), overlaps


def workers_run(workdir: Path, url: str, tickets: int = TICKETS, workers: int = WORKERS,
                seed: int = SEED) -> Figures:
    figures = Figures(tickets, workers)
    expected = reference(workdir, tickets, seed)
    start = time.monotonic()
    with Sandbox(port=0) as sandbox:
        seed_backfill(sandbox, tickets, seed)
        config_path = sandbox.write_config(workdir / "workers.yaml", store_url=url, mapping=MAPPING,
                                           poll_interval="1s")
        env = {**sandbox.credentials(), "TICKETBRIDGE_LOG_LEVEL": "DEBUG"}
        args = ["run", "--config", str(config_path), "--claim-lease", "3"]
        procs = [BridgeProcess.start(args, env, workdir / "logs", f"worker{n}") for n in range(workers)]
        try:
            wait_until(lambda: len(sandbox.jira.issues()) >= tickets // 3, 120, 0.01, "a third of the issues")
            poller = next((p for p in procs for e in p.events() if e.get("event") == "worker.polled"), None)
            assert poller is not None, "no worker polled"
            poller.kill()
            killed_at = datetime.now(UTC)
            figures.killed, figures.killed_at_issues = poller.name, len(sandbox.jira.issues())
            with Store.open(url) as store:  # the backfill done (comments included) before the edits
                backlog = WorkQueue(store)
                wait_until(lambda: len(marker_issue_ids(sandbox)) == tickets and backlog.pending() == 0,
                           120, 0.2, "the backfill")
            edit_pairs(sandbox, seed, min(EDITS, tickets))
            with Store.open(url) as store:
                queue = WorkQueue(store)
                # The same issues as the reference, and nothing left to check; else the comparison
                # below says what differs.
                # (After it, a poll may queue re-checks of items just written to: work, not a loss.)
                def converged() -> bool:
                    if jira_snapshot(sandbox).by_marker != expected:
                        return False
                    figures.queued_left = queue.pending()
                    return figures.queued_left == 0

                with contextlib.suppress(TimeoutError):
                    wait_until(converged, 180, 0.5, "convergence")
            figures.seconds = time.monotonic() - start
            snapshot = jira_snapshot(sandbox)
            figures.duplicates = sum(snapshot.duplicates.values()) + snapshot.unmarked
            comparison = compare_snapshots(snapshot.by_marker, expected)
            figures.missing = len(comparison.missing)
            figures.mismatches = comparison.field_mismatches + comparison.comment_mismatches + comparison.extra
            survivors = [p for p in procs if p is not poller]
            figures.new_poller = next((p.name for p in survivors for e in p.events()
                                       if e.get("event") == "worker.polled" and _at(e) > killed_at), "")
            for proc in survivors:
                assert proc.terminate() == 0, proc.tail()
        finally:
            for proc in procs:
                if proc.alive():
                    proc.kill()
        figures.synced_by_worker = {p.name: sum(1 for e in p.events() if e.get("event") == "engine.items_held")
                                    for p in procs}
        figures.lock_spans, figures.overlaps = lock_overlaps(procs, figures.killed, killed_at)
        report = store_report(url, FLOW)
        figures.open_failures = report.open_failures + report.pending_intents
        if report.links != tickets:
            figures.mismatches.append(f"store: {report.links} links for {tickets} tickets")
    return figures


@pytest.mark.postgres
def test_three_workers_with_one_killed_converge_without_duplicates_or_overlap(tmp_path: Path) -> None:
    with fresh_schema() as url:
        figures = workers_run(tmp_path, url)
    print("\n".join(figures.lines()))
    assert figures.duplicates == 0 and figures.missing == 0, figures.lines()
    assert figures.mismatches == [], figures.mismatches[:5]
    assert figures.open_failures == [] and figures.queued_left == 0
    assert figures.new_poller and figures.new_poller != figures.killed
    assert all(figures.synced_by_worker.values()), figures.synced_by_worker  # they shared the work
    assert figures.lock_spans >= TICKETS and figures.overlaps == [], figures.overlaps[:5]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=TICKETS)
    parser.add_argument("--workers", type=int, default=WORKERS)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    if (reason := pg_unreachable()) is not None:
        print(reason)
        return 1
    with tempfile.TemporaryDirectory() as tmp, fresh_schema() as url:
        figures = workers_run(Path(tmp), url, args.tickets, args.workers, args.seed)
    print("\n".join(figures.lines()))
    ok = not (figures.duplicates or figures.missing or figures.mismatches or figures.overlaps
              or figures.open_failures or figures.queued_left)
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
