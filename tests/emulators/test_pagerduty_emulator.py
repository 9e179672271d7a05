"""Behaviour tests for the PagerDuty Events API v2 emulator, over real HTTP on loopback."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from ticketbridge.connectors.emulator_kit import Faults
from ticketbridge.connectors.pagerduty.emulator import DEFAULT_ROUTING_KEY, PagerDutyEmulator

from ..clock import FakeClock

JSON = dict[str, Any]
KEY = DEFAULT_ROUTING_KEY
OTHER_KEY = "0THERSERV1CEKEY00000000000000000"
INVALID = {"status": "invalid event", "message": "Event object is invalid"}


START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


Post = Callable[..., requests.Response]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def pd(clock: FakeClock) -> Iterator[PagerDutyEmulator]:
    with PagerDutyEmulator(routing_keys=(KEY, OTHER_KEY), clock=clock) as emulator:
        yield emulator


@pytest.fixture
def post(pd: PagerDutyEmulator) -> Iterator[Post]:
    session = requests.Session()

    def call(body: Any = None, *, data: bytes | None = None, path: str = "/v2/enqueue") -> requests.Response:
        if data is not None:
            return session.post(pd.base_url + path, data=data, timeout=5)
        return session.post(pd.base_url + path, json=body, timeout=5)

    yield call
    session.close()


def trigger(dedup_key: Any = "zd-4711-sla", *, routing_key: str = KEY, **payload: Any) -> JSON:
    event: JSON = {"routing_key": routing_key, "event_action": "trigger",
                   "payload": {"summary": "Sev1: checkout down for EU customers (ZD #4711)",
                               "source": "ticketbridge", "severity": "critical", **payload}}
    if dedup_key is not None:
        event["dedup_key"] = dedup_key
    return event


def follow_up(action: str, dedup_key: str | None = "zd-4711-sla", *, routing_key: str = KEY) -> JSON:
    event: JSON = {"routing_key": routing_key, "event_action": action}
    if dedup_key is not None:
        event["dedup_key"] = dedup_key
    return event


def accepted(response: requests.Response, dedup_key: str) -> None:
    assert response.status_code == 202, response.text
    assert response.json() == {"status": "success", "message": "Event processed", "dedup_key": dedup_key}


def errors_of(response: requests.Response) -> list[str]:
    assert response.status_code == 400, response.text
    body = response.json()
    assert {k: body[k] for k in ("status", "message")} == INVALID
    assert set(body) == {"status", "message", "errors"}
    return list(body["errors"])


# -- accepted events ------------------------------------------------------------------------------

def test_trigger_answers_202_and_opens_an_incident(pd: PagerDutyEmulator, post: Post) -> None:
    event = trigger(component="checkout", group="eu", custom_details={"ticket": 4711},
                    timestamp="2015-07-17T08:42:58.315+0000")
    event["links"] = [{"href": "https://acme.zendesk.com/agent/tickets/4711", "text": "ZD #4711"}]
    response = post(event)
    accepted(response, "zd-4711-sla")
    assert response.headers["Content-Type"].startswith("application/json")
    assert pd.incidents() == [{
        "id": 1, "routing_key": KEY, "dedup_key": "zd-4711-sla", "status": "triggered",
        "summary": "Sev1: checkout down for EU customers (ZD #4711)", "source": "ticketbridge",
        "severity": "critical", "events": 1, "created_at": "2026-03-02T09:00:00Z",
        "acknowledged_at": None, "resolved_at": None,
    }]
    [event] = pd.events()
    assert (event["event_action"], event["outcome"], event["incident"]) == ("trigger", "created", 1)
    assert event["body"]["links"][0]["text"] == "ZD #4711"


def test_trigger_without_dedup_key_gets_a_generated_one_each_time(pd: PagerDutyEmulator, post: Post) -> None:
    first, second = post(trigger(None)), post(trigger(None))
    keys = [first.json()["dedup_key"], second.json()["dedup_key"]]
    for response, key in zip((first, second), keys, strict=True):
        accepted(response, key)
        assert re.fullmatch(r"[0-9a-f]{32}", key)
    assert keys[0] != keys[1]
    assert [i["dedup_key"] for i in pd.incidents()] == keys
    # The generated key works for the follow-up events.
    accepted(post(follow_up("resolve", keys[0])), keys[0])
    assert pd.incident(keys[0])["status"] == "resolved"  # type: ignore[index]


def test_second_trigger_with_same_dedup_key_is_deduplicated(pd: PagerDutyEmulator, post: Post,
                                                             clock: FakeClock) -> None:
    accepted(post(trigger()), "zd-4711-sla")
    clock.advance(120)
    accepted(post(trigger(summary="changed summary", severity="info")), "zd-4711-sla")
    [incident] = pd.incidents()
    assert incident["events"] == 2
    assert (incident["status"], incident["severity"]) == ("triggered", "critical")
    assert incident["summary"].startswith("Sev1: checkout down")
    assert incident["created_at"] == "2026-03-02T09:00:00Z"
    assert [e["outcome"] for e in pd.events()] == ["created", "deduplicated"]


def test_acknowledge_then_trigger_stays_acknowledged(pd: PagerDutyEmulator, post: Post, clock: FakeClock) -> None:
    post(trigger())
    clock.advance(60)
    accepted(post(follow_up("acknowledge")), "zd-4711-sla")
    post(trigger())
    incident = pd.incident("zd-4711-sla")
    assert incident is not None
    assert (incident["status"], incident["acknowledged_at"], incident["events"]) == (
        "acknowledged", "2026-03-02T09:01:00Z", 3)
    assert len(pd.incidents()) == 1


def test_resolve_closes_and_a_later_trigger_opens_a_new_incident(pd: PagerDutyEmulator, post: Post,
                                                                  clock: FakeClock) -> None:
    post(trigger())
    clock.advance(300)
    accepted(post(follow_up("resolve")), "zd-4711-sla")
    assert pd.incident("zd-4711-sla")["resolved_at"] == "2026-03-02T09:05:00Z"  # type: ignore[index]
    # A second resolve finds nothing open: accepted and dropped.
    accepted(post(follow_up("resolve")), "zd-4711-sla")
    clock.advance(60)
    accepted(post(trigger()), "zd-4711-sla")
    first, second = pd.incidents()
    assert (first["status"], first["events"]) == ("resolved", 2)
    assert (second["id"], second["status"], second["events"]) == (2, "triggered", 1)
    assert second["created_at"] == "2026-03-02T09:06:00Z"
    assert pd.incident("zd-4711-sla")["id"] == 2  # type: ignore[index]
    assert [e["outcome"] for e in pd.events()] == ["created", "resolved", "dropped", "created"]
    assert [e["incident"] for e in pd.events()] == [1, 1, None, 2]


def test_follow_up_without_open_incident_is_accepted_and_dropped(pd: PagerDutyEmulator, post: Post) -> None:
    accepted(post(follow_up("acknowledge", "never-triggered")), "never-triggered")
    accepted(post(follow_up("resolve", "never-triggered")), "never-triggered")
    assert pd.incidents() == []
    assert [e["outcome"] for e in pd.events()] == ["dropped", "dropped"]


def test_incidents_are_per_routing_key(pd: PagerDutyEmulator, post: Post) -> None:
    post(trigger())
    accepted(post(trigger(routing_key=OTHER_KEY)), "zd-4711-sla")
    assert len(pd.incidents()) == 2
    # A resolve through the other integration does not touch the first one.
    post(follow_up("resolve", routing_key=OTHER_KEY))
    assert pd.incident("zd-4711-sla", routing_key=KEY)["status"] == "triggered"  # type: ignore[index]
    assert pd.incident("zd-4711-sla", routing_key=OTHER_KEY)["status"] == "resolved"  # type: ignore[index]


def test_dedup_key_of_exactly_255_characters_is_accepted(pd: PagerDutyEmulator, post: Post) -> None:
    accepted(post(trigger("k" * 255)), "k" * 255)


def test_inspection_helpers_return_copies(pd: PagerDutyEmulator, post: Post) -> None:
    post(trigger())
    pd.incidents()[0]["status"] = "resolved"
    pd.events()[0]["outcome"] = "dropped"
    assert pd.incident("zd-4711-sla")["status"] == "triggered"  # type: ignore[index]
    assert pd.events()[0]["outcome"] == "created"
    assert pd.incident("unknown") is None


# -- invalid events -------------------------------------------------------------------------------

@pytest.mark.parametrize(("event", "expected"), [
    ({**trigger(), "event_action": "escalate"},
     ["'event_action' is invalid (must be one of: trigger, acknowledge, resolve)"]),
    ({k: v for k, v in trigger().items() if k != "event_action"}, ["'event_action' is missing or blank"]),
    ({k: v for k, v in trigger().items() if k != "payload"}, ["'payload' is missing"]),
    ({**trigger(), "payload": "checkout down"}, ["'payload' must be an object"]),
    (trigger(summary=""), ["'payload.summary' is missing or blank"]),
    (trigger(summary="x" * 1025), ["'payload.summary' is too long (maximum is 1024 characters)"]),
    (trigger(source=None), ["'payload.source' is missing or blank"]),
    (trigger(severity="high"), ["'payload.severity' is invalid (must be one of: critical, error, warning, info)"]),
    (trigger(severity=None), ["'payload.severity' is missing or blank"]),
    (trigger(timestamp="yesterday"), ["'payload.timestamp' is not a valid ISO 8601 timestamp"]),
    (trigger("k" * 256), ["'dedup_key' is too long (maximum is 255 characters)"]),
    (trigger(12345), ["'dedup_key' must be a string"]),
    ({**trigger(), "links": [{"text": "no href"}]}, ["'links[0].href' is missing or blank"]),
    ({**trigger(), "images": [{"src": "https://x.example/a.png"}, {"alt": "none"}]},
     ["'images[1].src' is missing or blank"]),
    (follow_up("acknowledge", None), ["'dedup_key' is required for the 'acknowledge' event action"]),
    (follow_up("resolve", None), ["'dedup_key' is required for the 'resolve' event action"]),
    (follow_up("resolve", ""), ["'dedup_key' is required for the 'resolve' event action"]),
    (trigger(summary="", source="", severity="urgent"),
     ["'payload.summary' is missing or blank", "'payload.source' is missing or blank",
      "'payload.severity' is invalid (must be one of: critical, error, warning, info)"]),
])
def test_invalid_events_answer_400_with_every_error(pd: PagerDutyEmulator, post: Post, event: JSON,
                                                    expected: list[str]) -> None:
    assert errors_of(post(event)) == expected
    assert pd.incidents() == [] and pd.events() == []


@pytest.mark.parametrize(("data", "expected"), [
    (b"{not json", ["Event object is not valid JSON"]),
    (b"[1, 2]", ["Event object must be a JSON object"]),
    (b"", ["Event object must be a JSON object"]),
])
def test_a_body_that_is_no_event_object_is_400(pd: PagerDutyEmulator, post: Post, data: bytes,
                                               expected: list[str]) -> None:
    assert errors_of(post(data=data)) == expected


@pytest.mark.parametrize(("routing_key", "expected"), [
    ("UNKNOWNKEY0000000000000000000000", ["Invalid routing key"]),
    ("short", ["Length of 'routing_key' is incorrect (should be 32 characters)"]),
    ("e+23rschqsESqk9Q6_-g", ["Length of 'routing_key' is incorrect (should be 32 characters)",
                              "'routing_key' cannot contain non-alphanumeric characters."]),
    ("R0UT1NG-KEY-SANDBOX-000000000000", ["'routing_key' cannot contain non-alphanumeric characters."]),
    ("", ["'routing_key' is missing or blank"]),
    (None, ["'routing_key' is missing or blank"]),
])
def test_unknown_or_malformed_routing_key_is_400_and_never_echoed(pd: PagerDutyEmulator, post: Post,
                                                                  routing_key: str | None,
                                                                  expected: list[str]) -> None:
    event = trigger()
    if routing_key is None:
        del event["routing_key"]
    else:
        event["routing_key"] = routing_key
    response = post(event)
    assert errors_of(response) == expected
    if routing_key:
        assert routing_key not in response.text
    assert pd.incidents() == []


def test_configured_keys_of_any_shape_are_accepted(clock: FakeClock) -> None:
    # Configured keys skip the shape checks (the sandbox default itself is 33 characters).
    with PagerDutyEmulator(routing_keys="test-key", clock=clock) as pd:
        response = requests.post(pd.base_url + "/v2/enqueue", json=trigger(routing_key="test-key"), timeout=5)
        accepted(response, "zd-4711-sla")
        assert pd.routing_keys == ("test-key",)
        other = requests.post(pd.base_url + "/v2/enqueue", json=trigger(routing_key=OTHER_KEY), timeout=5)
        assert errors_of(other) == ["Invalid routing key"]


def test_other_paths_and_methods(pd: PagerDutyEmulator, post: Post) -> None:
    assert post(trigger(), path="/v2/incidents").status_code == 404
    assert requests.get(pd.base_url + "/v2/enqueue", timeout=5).status_code == 405
    assert pd.events() == []


# -- rate limit and faults ------------------------------------------------------------------------

def test_over_the_budget_answers_429_with_retry_after_and_drops_the_event(clock: FakeClock) -> None:
    with PagerDutyEmulator(rate_limit_per_minute=2, clock=clock) as pd:
        url = pd.base_url + "/v2/enqueue"
        accepted(requests.post(url, json=trigger("a"), timeout=5), "a")
        clock.advance(20)
        accepted(requests.post(url, json=trigger("b"), timeout=5), "b")
        limited = requests.post(url, json=trigger("c"), timeout=5)
        assert limited.status_code == 429
        assert limited.headers["Retry-After"] == "40"  # the first slot frees 60 s after "a"
        assert limited.json()["status"] == "throttle event"
        assert [i["dedup_key"] for i in pd.incidents()] == ["a", "b"]
        clock.advance(40)
        accepted(requests.post(url, json=trigger("c"), timeout=5), "c")
        assert [e["dedup_key"] for e in pd.events()] == ["a", "b", "c"]
        assert [status for _, _, status in pd.request_log] == [202, 202, 429, 202]


def test_retry_after_can_be_left_out(clock: FakeClock) -> None:
    with PagerDutyEmulator(rate_limit_per_minute=1, clock=clock, send_retry_after=False) as pd:
        url = pd.base_url + "/v2/enqueue"
        requests.post(url, json=trigger("a"), timeout=5)
        limited = requests.post(url, json=trigger("b"), timeout=5)
        assert limited.status_code == 429
        assert "Retry-After" not in limited.headers


def test_error_rate_fault_answers_500_without_processing() -> None:
    with PagerDutyEmulator(faults=Faults(error_rate=1.0)) as pd:
        response = requests.post(pd.base_url + "/v2/enqueue", json=trigger(), timeout=5)
        assert response.status_code == 500
        assert response.json() == {"status": "error", "message": "Internal server error"}
        assert pd.incidents() == []


def test_fail_next_answers_the_status_without_processing(pd: PagerDutyEmulator, post: Post) -> None:
    pd.fail_next(2, status=502)
    assert [post(trigger()).status_code for _ in range(3)] == [502, 502, 202]
    assert len(pd.events()) == 1


def test_fail_next_processed_applies_the_event_then_errors(pd: PagerDutyEmulator, post: Post) -> None:
    pd.fail_next(status=500, processed=True)
    assert post(trigger()).status_code == 500
    [incident] = pd.incidents()
    assert (incident["status"], incident["events"]) == ("triggered", 1)


def test_delay_next_processes_then_holds_the_answer_without_blocking_others(pd: PagerDutyEmulator,
                                                                            post: Post) -> None:
    pd.delay_next(1.5)
    with pytest.raises(requests.Timeout):
        requests.post(pd.base_url + "/v2/enqueue", json=trigger(), timeout=(2, 0.3))
    # The held answer does not hold the state lock: a retry is served at once.
    started = time.monotonic()
    accepted(post(trigger()), "zd-4711-sla")
    assert time.monotonic() - started < 1.0
    [incident] = pd.incidents()
    assert incident["events"] == 2
