"""`ticketbridge run` as one of several workers sharing a PostgreSQL store.

Each worker runs this loop; together they split the work without a coordinator:

- the poller of a flow is whoever holds its lease (an advisory lock, `poll:<flow>`): it polls on
  the flow's interval and queues what changed (`Engine.poll_into`), less often while the flow's
  queue still holds a backlog; the others try the lease every second, so when its holder dies
  another worker polls within about a second;
- every worker claims queued items (FOR UPDATE SKIP LOCKED) and syncs them (`Engine.work`),
  renewing its claims by heartbeat; the claims of a dead worker expire after the claim lease and
  are taken over (at once by a worker starting on the same host, which sees the process is gone);
- webhook nudges a worker receives go into the queue, so any worker may serve them;
- each worker settles the SLA clocks of what it synced; the holder of the `timers` lease also
  runs the due SLA timers and the escalation service.

See workqueue.py for the queue and the locks.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Mapping

import structlog

from ..connectors.errors import AuthError, TrackerError
from .engine import Engine, PassStats, nudge_batches
from .workqueue import DEFAULT_LEASE, WorkQueue

log = structlog.get_logger(__name__)

LEASE_RETRY = 1.0  # seconds between tries of a lease another worker holds
BATCH = 20  # items claimed at once
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
    structlog.contextvars.bind_contextvars(worker=work.worker)  # on every line this worker logs
    log.info("worker.start", flows=[f.name for f in engine.flows], claim_lease=claim_lease,
             freed=work.release_orphans())
    with work.heartbeat():
        while not stop.is_set():
            for flow in engine.flows:
                if time.monotonic() < polls_due[flow.name]:
                    continue
                if not locks.try_lease(f"poll:{flow.name}"):
                    polls_due[flow.name] = time.monotonic() + LEASE_RETRY
                    continue
                interval = min(intervals.get(flow.left.name, 60.0), intervals.get(flow.right.name, 60.0))
                backlog_until = last_poll.get(flow.name, 0.0) + BACKLOG_POLL * interval
                if time.monotonic() < backlog_until and work.pending(flow.name):
                    # A backlog from the last poll is still being worked off: a poll now would mostly
                    # read again what is queued (look-back windows), slowing the work it waits for.
                    polls_due[flow.name] = time.monotonic() + LEASE_RETRY
                    continue
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
            claimed = work.claim(BATCH)
            stats = engine.work(claimed, work) if claimed else PassStats()
            timers = locks.try_lease("timers")
            if engine.sla is not None:
                stats.sla.merge(engine.sla.settle(timers=timers))
            if timers:
                engine.run_escalations(stats)
            if on_pass and (claimed or stats.sla.warnings or stats.sla.breaches or stats.escalations):
                on_pass(stats)
            if claimed:
                continue  # more may be waiting: claim again at once
            _wait(engine, work, stop, nudges, _seconds_to_next(engine, work, polls_due, timers))
    log.info("worker.stop")


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
