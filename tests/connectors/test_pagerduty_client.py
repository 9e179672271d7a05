"""The PagerDuty Events API v2 client: against the emulator (round trips, retries that must not
duplicate incidents) and with `responses` mocks (a server that echoes the routing key)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import responses
from structlog.testing import capture_logs

from ticketbridge.connectors.errors import Permanent, RateLimited
from ticketbridge.connectors.http import RetryPolicy
from ticketbridge.connectors.pagerduty.client import PagerDutyClient
from ticketbridge.connectors.pagerduty.emulator import PagerDutyEmulator
from ticketbridge.logs import scrub_text

from ..clock import FakeClock

KEY = "PDINTEGRATIONKEY4ticketbridge001"
BASE = "https://events.pagerduty.example"


class NoJitter(random.Random):
    def uniform(self, a: float, b: float) -> float:
        return a


START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def policy(waits: list[float] | None = None, attempts: int = 4) -> RetryPolicy:
    return RetryPolicy(attempts=attempts, sleep=(waits if waits is not None else []).append, rng=NoJitter())


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def pd(clock: FakeClock) -> Iterator[PagerDutyEmulator]:
    with PagerDutyEmulator(routing_keys=(KEY,), clock=clock) as emulator:
        yield emulator


@pytest.fixture
def waits() -> list[float]:
    return []


@pytest.fixture
def client(pd: PagerDutyEmulator, waits: list[float]) -> PagerDutyClient:
    return PagerDutyClient(pd.base_url, KEY, retry=policy(waits))


def page(client: PagerDutyClient, dedup_key: str = "sla:zd-4711:first_reply:1", **kwargs: Any) -> str:
    kwargs.setdefault("summary", "Sev1 first reply breached on ZD #4711")
    kwargs.setdefault("source", "ticketbridge")
    kwargs.setdefault("severity", "critical")
    return client.trigger(dedup_key, **kwargs)


# -- round trips against the emulator -------------------------------------------------------------

def test_trigger_acknowledge_resolve_round_trip(pd: PagerDutyEmulator, client: PagerDutyClient,
                                                clock: FakeClock) -> None:
    key = page(client, custom_details={"ticket": 4711, "clock": "first_reply"},
               links=[{"href": "https://acme.zendesk.com/agent/tickets/4711", "text": "ZD #4711"}])
    assert key == "sla:zd-4711:first_reply:1"
    [sent] = pd.events()
    assert sent["body"] == {
        "routing_key": KEY, "event_action": "trigger", "dedup_key": key,
        "payload": {"summary": "Sev1 first reply breached on ZD #4711", "source": "ticketbridge",
                    "severity": "critical", "custom_details": {"ticket": 4711, "clock": "first_reply"}},
        "links": [{"href": "https://acme.zendesk.com/agent/tickets/4711", "text": "ZD #4711"}],
    }
    assert client.acknowledge(key) == key
    assert pd.incident(key)["status"] == "acknowledged"  # type: ignore[index]
    clock.advance(600)
    assert client.resolve(key) == key
    [incident] = pd.incidents()
    assert (incident["status"], incident["events"], incident["resolved_at"]) == (
        "resolved", 3, "2026-03-02T09:10:00Z")
    assert client.requests_made == 3


def test_trigger_after_resolve_opens_a_new_incident(pd: PagerDutyEmulator, client: PagerDutyClient) -> None:
    page(client)
    client.resolve("sla:zd-4711:first_reply:1")
    page(client)
    assert [i["status"] for i in pd.incidents()] == ["resolved", "triggered"]


def test_longest_dedup_key_is_sent_and_a_long_summary_is_cut(pd: PagerDutyEmulator, client: PagerDutyClient) -> None:
    key = "k" * 255
    assert page(client, key, summary="s" * 2000) == key
    summary = pd.incident(key)["summary"]  # type: ignore[index]
    assert len(summary) == 1024 and summary.endswith("…")


# -- retries that must not page twice -------------------------------------------------------------

def test_5xx_after_pagerduty_ingested_the_trigger_is_retried_into_the_same_incident(
        pd: PagerDutyEmulator, client: PagerDutyClient, waits: list[float]) -> None:
    pd.fail_next(status=500, processed=True)
    assert page(client) == "sla:zd-4711:first_reply:1"
    [incident] = pd.incidents()
    assert (incident["status"], incident["events"]) == ("triggered", 2)
    assert [e["outcome"] for e in pd.events()] == ["created", "deduplicated"]
    assert len(waits) == 1
    assert [status for _, _, status in pd.request_log] == [500, 202]


def test_5xx_before_ingestion_is_retried(pd: PagerDutyEmulator, client: PagerDutyClient) -> None:
    pd.fail_next(2, status=503)
    page(client)
    [incident] = pd.incidents()
    assert incident["events"] == 1
    assert [status for _, _, status in pd.request_log] == [503, 503, 202]


def test_timeout_after_ingestion_is_retried_into_the_same_incident(pd: PagerDutyEmulator,
                                                                   client: PagerDutyClient) -> None:
    client.http.timeout = (2.0, 0.5)
    pd.delay_next(1.5)
    page(client)
    [incident] = pd.incidents()
    assert incident["events"] == 2
    assert client.http.stats[0] == 1  # one attempt timed out


def test_resolve_is_retried_after_a_lost_answer(pd: PagerDutyEmulator, client: PagerDutyClient) -> None:
    page(client)
    pd.fail_next(status=500, processed=True)
    client.resolve("sla:zd-4711:first_reply:1")
    [incident] = pd.incidents()
    assert incident["status"] == "resolved"
    assert [e["outcome"] for e in pd.events()] == ["created", "resolved", "dropped"]


def test_429_waits_retry_after_then_yields_one_incident(clock: FakeClock) -> None:
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        # The policy "sleeps" by moving the emulator's clock, so the rate window really passes.
        waits.append(seconds)
        clock.advance(seconds)

    retry = RetryPolicy(attempts=3, sleep=sleep, rng=NoJitter())
    with PagerDutyEmulator(routing_keys=(KEY,), rate_limit_per_minute=1, clock=clock) as pd:
        client = PagerDutyClient(pd.base_url, KEY, retry=retry)
        page(client, "first")
        clock.advance(15)
        page(client, "second")
        assert waits == [45.0]
        assert [i["dedup_key"] for i in pd.incidents()] == ["first", "second"]
        assert [status for _, _, status in pd.request_log] == [202, 429, 202]


def test_persistent_429_ends_in_rate_limited(clock: FakeClock) -> None:
    with PagerDutyEmulator(routing_keys=(KEY,), rate_limit_per_minute=1, clock=clock) as pd:
        client = PagerDutyClient(pd.base_url, KEY, retry=policy(attempts=2))
        page(client, "first")
        with pytest.raises(RateLimited) as caught:
            page(client, "second")
        assert caught.value.retry_after == 60.0
        assert len(pd.incidents()) == 1


# -- local validation -----------------------------------------------------------------------------

@pytest.mark.parametrize(("kwargs", "message"), [
    ({"dedup_key": "k" * 256}, "dedup_key is 256 characters long; PagerDuty allows at most 255"),
    ({"dedup_key": ""}, "dedup_key must be a non-empty string"),
    ({"severity": "high"}, "severity must be one of critical, error, warning, info; got 'high'"),
    ({"severity": "Critical"}, "severity must be one of critical, error, warning, info; got 'Critical'"),
    ({"summary": "  "}, "summary must be a non-empty string"),
    ({"source": ""}, "source must be a non-empty string"),
    ({"links": [{"text": "no href"}]}, "every link needs an 'href'"),
])
def test_bad_trigger_input_is_a_value_error_before_any_request(pd: PagerDutyEmulator, client: PagerDutyClient,
                                                                kwargs: dict[str, Any], message: str) -> None:
    dedup_key = kwargs.pop("dedup_key", "sla:zd-4711:first_reply:1")
    with pytest.raises(ValueError) as caught:
        page(client, dedup_key, **kwargs)
    assert str(caught.value) == message
    assert pd.count() == 0


@pytest.mark.parametrize("method", ["acknowledge", "resolve"])
@pytest.mark.parametrize("dedup_key", ["", "x" * 256])
def test_bad_follow_up_dedup_key_is_a_value_error(pd: PagerDutyEmulator, client: PagerDutyClient,
                                                  method: str, dedup_key: str) -> None:
    with pytest.raises(ValueError, match="dedup_key"):
        getattr(client, method)(dedup_key)
    assert pd.count() == 0


def test_empty_routing_key_is_refused() -> None:
    with pytest.raises(ValueError, match="routing key is empty"):
        PagerDutyClient(BASE, "  ")


def test_400_is_permanent_and_not_retried(pd: PagerDutyEmulator, waits: list[float]) -> None:
    stranger = "UNKNOWNKEY0000000000000000000000"
    client = PagerDutyClient(pd.base_url, stranger, retry=policy(waits))
    with pytest.raises(Permanent) as caught:
        page(client)
    assert caught.value.status == 400
    assert "invalid event: Event object is invalid (Invalid routing key)" in caught.value.message
    assert stranger not in str(caught.value)
    assert waits == [] and pd.count() == 1


# -- the routing key is a secret ------------------------------------------------------------------

def test_routing_key_is_registered_as_a_secret_and_hidden_from_repr() -> None:
    secret = "REGISTEREDKEY0000000000000000001"
    client = PagerDutyClient(BASE, secret)
    assert scrub_text(f"key={secret}") == "key=***"
    assert secret not in repr(client)
    assert secret not in str(dict(client.http.session.headers))


@responses.activate
def test_routing_key_echoed_by_the_server_never_reaches_an_error_or_a_log() -> None:
    secret = "ECHOEDKEY00000000000000000000042"
    echo = {"status": "invalid event", "message": "Event object is invalid",
            "errors": [f"routing_key {secret} belongs to a disabled integration"]}
    responses.post(f"{BASE}/v2/enqueue", status=500, json={"status": "error", "message": f"failed for {secret}"})
    responses.post(f"{BASE}/v2/enqueue", status=202,
                   json={"status": "success", "message": "Event processed", "dedup_key": "k1"})
    responses.post(f"{BASE}/v2/enqueue", status=400, json=echo)
    client = PagerDutyClient(BASE, secret, retry=policy())
    with capture_logs() as logs:
        assert page(client, "k1") == "k1"  # after one retry, which logs the 500's message
        with pytest.raises(Permanent) as caught:
            client.resolve("k1")
    retried = [entry for entry in logs if entry["event"] == "http.retry"]
    assert len(retried) == 1 and "failed for ***" in retried[0]["error"]
    assert secret not in repr(logs)
    assert secret not in str(caught.value)
    assert "routing_key *** belongs to a disabled integration" in caught.value.message
    # The key did go where it belongs: the JSON body.
    assert secret.encode() in responses.calls[0].request.body  # type: ignore[operator]
