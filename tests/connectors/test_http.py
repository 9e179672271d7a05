"""`HttpClient`'s pacing (`RateGate`): the tracker's remaining-budget and reset headers hold requests
back before they meet a 429, for every thread sharing a client. `responses` mocks; the clock and the
sleep are injected, so nothing here waits for real or asserts timings."""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import pytest
import responses

from ticketbridge.connectors.errors import RateLimited
from ticketbridge.connectors.http import HTTP_METRICS, HttpClient, RateGate, RetryPolicy
from ticketbridge.connectors.jira.client import JiraClient

BASE = "https://tracker.example"


class NoJitter(random.Random):
    def uniform(self, a: float, b: float) -> float:
        return a


class Clock:
    """A monotonic clock that moves only when someone sleeps on it."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.now += seconds


def client(clock: Clock, **policy: Any) -> HttpClient:
    http = HttpClient("tracker", BASE, retry=RetryPolicy(sleep=clock.sleep, rng=NoJitter(), **policy))
    http.gate.clock = clock
    return http


@responses.activate
@pytest.mark.parametrize("headers", [
    {"X-Rate-Limit": "700", "X-Rate-Limit-Remaining": "0", "ratelimit-remaining": "0", "ratelimit-reset": "30"},
    {"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "{epoch}"},
    {"x-ratelimit-limit": "5000", "x-ratelimit-remaining": "0", "x-ratelimit-reset": "{epoch}"},
], ids=["zendesk", "clickup", "github"])
def test_a_spent_budget_holds_the_next_request_until_the_reset(headers: dict[str, str]) -> None:
    epoch = str(int(time.time()) + 30)  # whole epoch seconds: 29 to 30 s ahead (less on a slow machine)
    responses.get(f"{BASE}/a", json={}, headers={k: v.format(epoch=epoch) for k, v in headers.items()})
    responses.get(f"{BASE}/b", json={})
    clock = Clock()
    http = client(clock)
    http.json("GET", "/a")
    assert clock.sleeps == [] and len(responses.calls) == 1
    waited_before = HTTP_METRICS.snapshot()[1].get("tracker", 0)
    http.json("GET", "/b")
    assert len(clock.sleeps) == 1 and 20.0 <= clock.sleeps[0] <= 30.0  # slept before /b was sent
    assert http.gate.waits == clock.sleeps and http.retry.waits == []
    assert HTTP_METRICS.snapshot()[1]["tracker"] == waited_before + 1


@responses.activate
def test_a_budget_with_room_left_sends_at_once() -> None:
    responses.get(f"{BASE}/a", json={}, headers={"X-Rate-Limit-Remaining": "3", "ratelimit-reset": "40"})
    clock = Clock()
    http = client(clock)
    for _ in range(3):
        http.json("GET", "/a")
    assert clock.sleeps == [] and len(responses.calls) == 3


@responses.activate
def test_no_rate_limit_headers_no_pacing() -> None:
    responses.get(f"{BASE}/a", json={})
    clock = Clock()
    http = client(clock)
    http.json("GET", "/a")
    http.json("GET", "/a")
    assert clock.sleeps == [] and http.gate.not_before == 0.0


@responses.activate
def test_a_429_holds_back_the_other_threads_and_its_own_thread_waits_once() -> None:
    responses.get(f"{BASE}/a", status=429, headers={"Retry-After": "2"}, json={})
    responses.get(f"{BASE}/a", json={})
    responses.get(f"{BASE}/b", json={})
    clock = Clock()
    first_sleeping, other_done = threading.Event(), threading.Event()

    def sleep(seconds: float) -> None:
        if threading.current_thread().name == "first":  # RetryPolicy's wait after the 429
            first_sleeping.set()
            other_done.wait(10)
        clock.sleep(seconds)

    http = HttpClient("tracker", BASE, retry=RetryPolicy(sleep=sleep, rng=NoJitter()))
    http.gate.clock = clock
    first = threading.Thread(target=http.json, args=("GET", "/a"), name="first")
    first.start()
    assert first_sleeping.wait(10)
    # While the first thread sleeps out its 429, another thread's request waits at the gate too.
    other = threading.Thread(target=lambda: (http.json("GET", "/b"), other_done.set()), name="other")
    other.start()
    other.join(10)
    first.join(10)
    assert [c.request.url for c in responses.calls] == [f"{BASE}/a", f"{BASE}/b", f"{BASE}/a"]
    assert http.gate.waits == [2.0]  # the other thread, before sending /b
    assert http.retry.waits == [2.0] and clock.sleeps == [2.0, 2.0]  # the first thread: once, not again at the gate


def test_threads_wait_at_a_closed_gate_and_none_sends_before_the_reset() -> None:
    clock = Clock()
    gate = RateGate("tracker", RetryPolicy(sleep=clock.sleep), clock=clock)
    gate.before_send()
    gate.after_response(429, {"Retry-After": "5"})
    sent_at: list[float] = []

    def send() -> None:
        gate.before_send()
        sent_at.append(clock())
        gate.after_response(200, {})

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(sent_at) == 4 and all(at >= 1005.0 for at in sent_at)


def test_requests_in_flight_on_other_threads_count_against_the_remaining_budget() -> None:
    clock = Clock()
    gate = RateGate("tracker", RetryPolicy(sleep=clock.sleep), clock=clock)
    for _ in range(3):  # three threads have sent
        gate.before_send()
    gate.after_response(200, {"X-RateLimit-Remaining": "2", "X-RateLimit-Reset": "2026-01-01T00:00:00Z"})
    assert gate.not_before <= clock()  # spent, but the reset is past: nothing to wait for
    gate.after_response(200, {"X-Rate-Limit-Remaining": "1", "ratelimit-reset": "3"})
    # One slot left and one request still in flight (it takes it): the budget is spent.
    assert gate.not_before == 1003.0 and gate.reason == "remaining 1"
    gate.after_response(200, {"X-Rate-Limit-Remaining": "5", "ratelimit-reset": "1"})
    assert gate.not_before == 1003.0  # a stale answer does not reopen the gate
    assert gate.in_flight == 0


@responses.activate
def test_a_reset_further_off_than_max_rate_limit_wait_fails_without_sending() -> None:
    responses.get(f"{BASE}/a", json={}, headers={"x-ratelimit-remaining": "0", "ratelimit-reset": "600"})
    clock = Clock()
    http = client(clock, max_rate_limit_wait=30)
    http.json("GET", "/a")
    with pytest.raises(RateLimited, match=r"resets in 600\.0 s") as caught:
        http.json("GET", "/a")
    assert caught.value.retry_after == 600.0
    assert len(responses.calls) == 1 and clock.sleeps == []  # not sent, not retried, not slept


@responses.activate
def test_a_429_asking_more_than_max_rate_limit_wait_goes_up_at_once_and_gates_the_next_request() -> None:
    responses.get(f"{BASE}/a", status=429, headers={"Retry-After": "120"}, json={})
    clock = Clock()
    http = client(clock, max_rate_limit_wait=30)
    with pytest.raises(RateLimited):
        http.json("GET", "/a")
    assert len(responses.calls) == 1 and clock.sleeps == []
    with pytest.raises(RateLimited, match="429 from the tracker"):
        http.json("GET", "/a")
    assert len(responses.calls) == 1


@responses.activate
def test_jira_requests_go_through_the_same_gate() -> None:
    jira = "https://acme.atlassian.net"
    responses.get(f"{jira}/rest/api/3/myself", status=429, json={"errorMessages": ["Rate limit exceeded."]},
                  headers={"Retry-After": "3", "X-RateLimit-Reset": "2026-01-01T00:00Z",
                           "RateLimit-Reason": "jira-burst-based"})
    responses.get(f"{jira}/rest/api/3/field", json=[])
    clock = Clock()
    client = JiraClient("jira", jira, "a@b.c", "token",
                        retry=RetryPolicy(attempts=1, sleep=clock.sleep, rng=NoJitter()))
    client.gate.clock = clock
    with pytest.raises(RateLimited):
        client.myself()
    assert client.fields() == []  # the `jira` package's own request waited at the gate first
    assert client.gate.waits == [3.0] and len(responses.calls) == 2


def test_without_reset_headers_the_window_is_learned_from_a_429_and_then_no_429_is_needed() -> None:
    """Jira sends its reset only with the 429: the spell from a whole budget to the 429's reset shows the window."""
    clock = Clock()
    gate = RateGate("jira", RetryPolicy(sleep=clock.sleep), clock=clock)
    gate.before_send()
    gate.after_response(200, {"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "99"})  # whole: spell starts
    clock.now += 3
    gate.before_send()
    gate.after_response(200, {"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "0"})
    assert gate.not_before == 0.0 and gate.window is None  # no reset given, nothing learned yet
    gate.before_send()
    gate.after_response(429, {"Retry-After": "15", "X-RateLimit-Reset": "2026-01-01T00:00Z"})
    assert gate.window == 18.0 and gate.not_before == 1018.0
    gate.before_send()  # another thread: waits for the reset, and starts the next spell there
    assert gate.waits == [15.0] and clock() == 1018.0
    clock.now += 2
    gate.after_response(200, {"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "0"})
    # Spent again: closed until the spell's start plus the learned window, without waiting for a 429.
    assert gate.not_before == 1018.0 + 18.0 and "learned" in gate.reason


def test_requests_sent_since_the_last_response_count_against_what_it_said_was_left() -> None:
    clock = Clock()
    gate = RateGate("zendesk", RetryPolicy(sleep=clock.sleep), clock=clock)
    gate.before_send()
    gate.after_response(200, {"X-Rate-Limit-Remaining": "2", "ratelimit-reset": "5"})
    gate.before_send()  # two threads send before any answer comes back: the two slots left
    gate.before_send()
    assert gate.waits == []
    gate.before_send()  # a third would meet a 429: it waits for the reset instead
    assert gate.waits == [5.0] and gate.in_flight == 3
