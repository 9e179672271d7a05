"""`ticketbridge run` as one of several workers sharing a PostgreSQL store.

Each worker runs this loop; together they split the work without a coordinator:

- the poller of a flow is whoever holds its lease (an advisory lock, `poll:<flow>`): it polls on
  the flow's interval and queues what changed (`Engine.poll_into`), less often while the flow's
  queue still holds a backlog; the others try the lease every second, so when its holder dies
  another worker polls within about a second;
- every worker claims queued items (FOR UPDATE SKIP LOCKED) and syncs them (`Engine.work`),
  renewing its claims by heartbeat; the claims of a dead worker expire after the claim lease and
  are taken over (at once by a worker starting on the same host, which sees the process is gone).
  With item threads (`sync.concurrency` > 1) it keeps two batches of `concurrency` items in flight
  (`claim_plan`), claimed before each poll, so its threads never wait for a batch's slowest item
  or for a poll;
- webhook nudges a worker receives go into the queue, so any worker may serve them;
- each worker settles the SLA clocks of what it synced; the holder of the `timers` lease also
  runs the due SLA timers and the escalation service.

See workqueue.py for the queue and the locks.
"""

from __future__ import annotations

import contextvars
import queue
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures

import structlog

from ..connectors.errors import AuthError, TrackerError
from .engine import Engine, Flow, PassStats, nudge_batches
from .workqueue import DEFAULT_LEASE, WorkQueue

log = structlog.get_logger(__name__)

LEASE_RETRY = 1.0  # seconds between tries of a lease another worker holds
BATCH = 20  # items claimed at once when items are synced one at a time (see claim_plan)
BACKLOG_POLL = 10  # while a flow's queue is not empty, it is polled every 10 intervals only


def run_worker(engine: Engine, stop: threading.Event, intervals: Mapping[str, float], *,
               worker: str | None = None, claim_lease: float = DEFAULT_LEASE,
               on_pass: Callable[[PassStats], None] | None = None,
               nudges: queue.Queue[tuple[str, str]] | None = None) -> None:
    """Work until `stop` is set. `intervals`: poll interval per tracker name."""
    work = WorkQueue(engine.store, worker, lease=claim_lease)
    locks = engine.store.locks
    polls_due = {flow.name: 0.0 for flow in engine.flows}
    last_poll: dict[str, float] = {}
    caught_up: set[str] = set()  # flows whose last poll found nothing and left nothing queued
    lanes, batch = claim_plan(engine.concurrency)
    structlog.contextvars.bind_contextvars(worker=work.worker)  # on every line this worker logs
    log.info("worker.start", flows=[f.name for f in engine.flows], claim_lease=claim_lease,
             freed=work.release_orphans(), lanes=lanes, batch=batch)
    # Claimed batches are synced on lane threads (`Engine.work`, whose items run on the engine's
    # own threads), so this loop keeps polling, and a second batch is claimed while the last items
    # of the first are still running: the engine's threads never idle waiting for a batch's slowest item.
    with work.heartbeat(), ThreadPoolExecutor(lanes, thread_name_prefix="ticketbridge-lane") as lane_pool:
        running: set[Future[PassStats]] = set()
        context = contextvars.copy_context()  # the lanes log with this worker's name too

        def fill() -> None:  # claim until every lane has a batch or nothing is left
            while len(running) < lanes and (claimed := work.claim(batch)):
                running.add(lane_pool.submit(context.copy().run, engine.work, claimed, work))

        while not stop.is_set():
            stats = PassStats()
            for done in [f for f in running if f.done()]:
                running.discard(done)
                stats.merge(done.result())  # an AuthError of a lane stops the worker here
            # The lanes are filled before a poll, which may take a while (its pages, then each item
            # checked against the store), and again after it, for what it queued.
            fill()
            for flow in engine.flows:
                _maybe_poll(engine, work, flow, intervals, polls_due, last_poll, caught_up)
            fill()
            timers = locks.try_lease("timers")
            _after(engine, stats, timers, on_pass)
            if running:  # until a batch is done (claim the next at once) or a poll falls due
                wait_futures(running, timeout=_seconds_to_poll(polls_due), return_when=FIRST_COMPLETED)
                continue
            _wait(engine, work, stop, nudges, _seconds_to_next(engine, work, polls_due, timers))
        stats = PassStats()
        for future in running:  # stopping: the batches in hand are finished first
            stats.merge(future.result())
        _after(engine, stats, False, on_pass)
    log.info("worker.stop")


def _after(engine: Engine, stats: PassStats, timers: bool,
           on_pass: Callable[[PassStats], None] | None) -> None:
    """After batches (`stats`, maybe empty): settle the SLA clocks of what was synced; with the
    `timers` lease, also the due timers and the escalation service; report the pass."""
    if engine.sla is not None:
        stats.sla.merge(engine.sla.settle(timers=timers))
    if timers:
        engine.run_escalations(stats)
    if on_pass and (stats.items_seen or stats.writes or stats.failures or stats.sla.warnings
                    or stats.sla.breaches or stats.escalations):
        on_pass(stats)


def claim_plan(concurrency: int) -> tuple[int, int]:
    """(lanes, batch): how many claimed batches a worker syncs at once, and their size. With item
    threads, two lanes of one item per thread: one batch runs while the next waits its turn, so no
    thread waits for a batch's last item and at most `concurrency` claimed items wait (a worker
    claiming more than it can start holds back items other workers could sync). Without them
    (concurrency 1), one lane of `BATCH`: items run one at a time anyway."""
    if concurrency <= 1:
        return 1, BATCH
    return 2, concurrency


def _maybe_poll(engine: Engine, work: WorkQueue, flow: Flow, intervals: Mapping[str, float],
                polls_due: dict[str, float], last_poll: dict[str, float], caught_up: set[str]) -> None:
    """Poll `flow` if it is due and this worker holds its lease."""
    if time.monotonic() < polls_due[flow.name]:
        return
    if not engine.store.locks.try_lease(f"poll:{flow.name}"):
        polls_due[flow.name] = time.monotonic() + LEASE_RETRY
        return
    interval = min(intervals.get(flow.left.name, 60.0), intervals.get(flow.right.name, 60.0))
    backlog_until = last_poll.get(flow.name, 0.0) + BACKLOG_POLL * interval
    if time.monotonic() < backlog_until and work.pending(flow.name):
        # A backlog from the last poll is still being worked off: a poll now would mostly
        # read again what is queued (look-back windows), slowing the work it waits for.
        polls_due[flow.name] = time.monotonic() + LEASE_RETRY
        return
    last_poll[flow.name] = time.monotonic()
    try:
        queued = engine.poll_into(flow, work)
        log.info("worker.polled", flow=flow.name, queued=queued)
        if queued == 0 and work.pending() == 0 and flow.name not in caught_up:
            caught_up.add(flow.name)  # said once, until the flow has work again
            log.info("worker.caught_up", flow=flow.name)
        elif queued:
            caught_up.discard(flow.name)
    except AuthError:
        raise
    except TrackerError as error:  # tracker down: the next interval tries again
        log.error("worker.poll_failed", flow=flow.name, error=str(error))
    polls_due[flow.name] = time.monotonic() + interval


def _seconds_to_poll(polls_due: Mapping[str, float]) -> float:
    return max(min(polls_due.values(), default=time.monotonic() + 60.0) - time.monotonic(), 0.05)


def _seconds_to_next(engine: Engine, work: WorkQueue, polls_due: Mapping[str, float], timers: bool) -> float:
    wait = min(polls_due.values(), default=time.monotonic() + 60.0) - time.monotonic()
    if timers and (timer := engine.seconds_to_next_timer()) is not None:
        wait = min(wait, timer)
    if (claimable := work.seconds_to_claimable()) is not None:
        wait = min(wait, claimable)
    return max(wait, 0.05)


def _wait(engine: Engine, work: WorkQueue, stop: threading.Event,
          nudges: queue.Queue[tuple[str, str]] | None, timeout: float) -> None:
    if nudges is None:
        stop.wait(timeout)
        return
    for batch in nudge_batches(stop, nudges, timeout):
        for tracker, item_id in batch:
            engine.queue_nudge(tracker, item_id, work)
        return  # claim what came in at once
