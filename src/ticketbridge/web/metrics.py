"""/metrics: a Prometheus collector that reads the store and this process's counters at scrape
time, so the numbers are the store's truth (shared by every worker) rather than counters each
process would have to keep in step. Names (all prefixed `ticketbridge_`):

items_synced{flow}                            gauge    linked item pairs
operations_total{kind,side}                   counter  operations applied (audit rows: create,
                                                       update, transition, comment, conflict, attach)
failed_attempts_total{flow,kind}              counter  failed attempts (kind error|halt)
failures{flow,state,kind}                     gauge    failures by state (open|resolved|dropped)
http_requests_total{tracker,status}           counter  responses seen by this process (status 0:
                                                       no response)
rate_limit_waits_total{tracker}               counter  waits a tracker's rate limit imposed
rate_limit_remaining{tracker}                 gauge    latest remaining budget the tracker reported
rate_limit_limit{tracker}                     gauge    latest budget size the tracker reported
sla_clocks{state,severity}                    gauge    running/paused clocks by board state
                                                       (ok|warning|breached)
sla_breaches_total{metric}                    counter  SLA breaches recorded
sla_warnings_total{metric}                    counter  SLA warnings recorded
sync_lag_seconds{flow,tracker}                gauge    seconds since the flow's cursor on that
                                                       tracker was last saved (last poll)
cursor_lag_seconds{flow,tracker}              gauge    seconds between now and the instant the
                                                       cursor stands for (where it is a time)
webhook_deliveries_total{outcome}             counter  webhook deliveries by outcome
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from .state import StatusContext, failure_counts, flow_health, link_counts, sla_board, sla_event_counts, tracker_traffic

PREFIX = "ticketbridge_"


class StoreCollector(Collector):
    def __init__(self, ctx: StatusContext) -> None:
        self.ctx = ctx

    def collect(self) -> Iterator[Metric]:
        ctx = self.ctx
        store = ctx.store
        synced = GaugeMetricFamily(PREFIX + "items_synced", "Linked item pairs per flow", labels=["flow"])
        counts = link_counts(store)
        for flow in sorted({f.name for f in ctx.flows} | set(counts)):
            synced.add_metric([flow], counts.get(flow, 0))
        yield synced

        ops = CounterMetricFamily(PREFIX + "operations", "Operations applied, from the audit log",
                                  labels=["kind", "side"])
        for (kind, side), n in sorted(store.audit_counts().items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
            ops.add_metric([kind, side or ""], n)
        yield ops

        failures = GaugeMetricFamily(PREFIX + "failures", "Failures by state", labels=["flow", "state", "kind"])
        attempts = CounterMetricFamily(PREFIX + "failed_attempts", "Failed attempts", labels=["flow", "kind"])
        tried: Counter[tuple[str, str]] = Counter()
        for flow, state, kind, n, sum_attempts in failure_counts(store):
            failures.add_metric([flow, state, kind], n)
            tried[(flow, kind)] += sum_attempts
        for (flow, kind), n in sorted(tried.items()):
            attempts.add_metric([flow, kind], n)
        yield failures
        yield attempts

        yield from self._http()
        yield from self._sla()
        yield from self._lag()

        if ctx.webhooks is not None:
            hooks = CounterMetricFamily(PREFIX + "webhook_deliveries", "Webhook deliveries by outcome",
                                        labels=["outcome"])
            for outcome in ("accepted", "duplicates", "ignored", "rejected", "queue_full"):
                hooks.add_metric([outcome], getattr(ctx.webhooks, outcome))
            yield hooks

    def _http(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(PREFIX + "http_requests", "HTTP responses from trackers, by status",
                                       labels=["tracker", "status"])
        waits = CounterMetricFamily(PREFIX + "rate_limit_waits", "Waits imposed by a tracker's rate limit",
                                    labels=["tracker"])
        remaining = GaugeMetricFamily(PREFIX + "rate_limit_remaining", "Remaining rate-limit budget last reported",
                                      labels=["tracker"])
        limit = GaugeMetricFamily(PREFIX + "rate_limit_limit", "Rate-limit budget size last reported",
                                  labels=["tracker"])
        for traffic in tracker_traffic(self.ctx):
            for status, n in traffic.requests.items():
                requests.add_metric([traffic.name, str(status)], n)
            waits.add_metric([traffic.name], traffic.rate_limit_waits)
            if traffic.remaining is not None:
                remaining.add_metric([traffic.name], traffic.remaining)
            if traffic.limit is not None:
                limit.add_metric([traffic.name], traffic.limit)
        yield from (requests, waits, remaining, limit)

    def _sla(self) -> Iterator[Metric]:
        clocks = GaugeMetricFamily(PREFIX + "sla_clocks", "Running or paused SLA clocks by state",
                                   labels=["state", "severity"])
        by_state: Counter[tuple[str, str]] = Counter((c.state, c.severity) for c in sla_board(self.ctx))
        for (state, severity), n in sorted(by_state.items()):
            clocks.add_metric([state, severity], n)
        yield clocks
        events = sla_event_counts(self.ctx.store)
        for kind, name in (("breach", "sla_breaches"), ("warning", "sla_warnings")):
            family = CounterMetricFamily(PREFIX + name, f"SLA {kind} events recorded", labels=["metric"])
            for (event_kind, metric), n in sorted(events.items()):
                if event_kind == kind:
                    family.add_metric([metric], n)
            yield family

    def _lag(self) -> Iterator[Metric]:
        sync_lag = GaugeMetricFamily(PREFIX + "sync_lag_seconds", "Seconds since the flow last saved its cursor",
                                     labels=["flow", "tracker"])
        cursor_lag = GaugeMetricFamily(PREFIX + "cursor_lag_seconds",
                                       "Seconds between now and the instant the cursor stands for",
                                       labels=["flow", "tracker"])
        for flow in flow_health(self.ctx):
            for side in flow.sides:
                if side.poll_age is not None:
                    sync_lag.add_metric([flow.name, side.tracker], side.poll_age)
                if side.cursor_lag is not None:
                    cursor_lag.add_metric([flow.name, side.tracker], side.cursor_lag)
        yield from (sync_lag, cursor_lag)


def registry_for(ctx: StatusContext) -> CollectorRegistry:
    """A registry of our own (not the global one): each app, and each test, reads its own context."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(ctx))
    return registry
