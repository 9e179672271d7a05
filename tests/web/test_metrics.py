"""/metrics parses as Prometheus text and follows the store: values change when it changes."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from ticketbridge.web import build_app
from ticketbridge.web.state import cursor_time

from ..e2e.conftest import Bridge
from .conftest import FLOW, context_for, fail_one

FAMILIES = {
    "ticketbridge_items_synced", "ticketbridge_operations", "ticketbridge_failures",
    "ticketbridge_failed_attempts", "ticketbridge_http_requests", "ticketbridge_rate_limit_waits",
    "ticketbridge_rate_limit_remaining", "ticketbridge_rate_limit_limit", "ticketbridge_sla_clocks",
    "ticketbridge_sla_breaches", "ticketbridge_sla_warnings", "ticketbridge_sync_lag_seconds",
    "ticketbridge_cursor_lag_seconds",
}


def scrape(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    samples = {}
    names = set()
    for family in text_string_to_metric_families(response.text):
        names.add(family.name)
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    assert names >= FAMILIES, FAMILIES - names
    return samples


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_follow_the_store(bridge: Bridge, client: TestClient) -> None:
    before = scrape(client)
    assert value(before, "ticketbridge_items_synced", flow=FLOW) == 0
    ticket = fail_one(bridge)
    after = scrape(client)
    assert value(after, "ticketbridge_items_synced", flow=FLOW) == 1
    assert value(after, "ticketbridge_operations_total", kind="create", side="right") == 1
    assert value(after, "ticketbridge_failures", flow=FLOW, state="open", kind="error") == 1
    assert value(after, "ticketbridge_failed_attempts_total", flow=FLOW, kind="error") == 1
    requests = value(after, "ticketbridge_http_requests_total", tracker="jira", status="200")
    assert requests > value(before, "ticketbridge_http_requests_total", tracker="jira", status="200")
    assert value(after, "ticketbridge_http_requests_total", tracker="jira", status="400") >= 1
    assert value(after, "ticketbridge_rate_limit_limit", tracker="jira") > 0
    assert 0 <= value(after, "ticketbridge_sync_lag_seconds", flow=FLOW, tracker="zendesk") < 60

    bridge.sandbox.zendesk.update_ticket(ticket, subject="Fixed")
    (failure,) = bridge.store.failures()
    bridge.engine.retry_failure(failure)
    resolved = scrape(client)
    assert value(resolved, "ticketbridge_failures", flow=FLOW, state="open", kind="error") == 0
    assert value(resolved, "ticketbridge_failures", flow=FLOW, state="resolved", kind="error") == 1
    assert value(resolved, "ticketbridge_operations_total", kind="update", side="right") >= 1


def test_sla_metrics_count_clocks_by_state_and_breaches(bridge: Bridge) -> None:
    store = bridge.store
    store.record_observation("zendesk", "7", "#7", {}, [])
    store.save_sla("zendesk", "7", {"severity": "sev1", "state": "breached", "clocks": [
        {"metric": "first_response", "cycle": 1, "status": "running", "breached": True,
         "due_at": "2020-01-01T00:00:00Z"}]}, None)
    store.record_sla_event("zendesk", "7", "first_response", 1, "breach", "100%", None,
                           cursor_time("2020-01-01T00:00:00Z"), {})  # type: ignore[arg-type]
    with TestClient(build_app(context_for(bridge))) as client:
        samples = scrape(client)
    assert value(samples, "ticketbridge_sla_clocks", state="breached", severity="sev1") == 1
    assert value(samples, "ticketbridge_sla_breaches_total", metric="first_response") == 1
