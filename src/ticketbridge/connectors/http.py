"""The shared HTTP base of every connector: one session, timeouts, one retry policy.

Retries live here and nowhere else. A request that fails with a `Retryable` error is tried again
with exponential back-off and jitter; a `RateLimited` error waits exactly what the tracker asked
for (Retry-After or its reset header) instead. Connectors that drive a client library (Jira
through the `jira` package) run its calls through the same `RetryPolicy`.
"""

from __future__ import annotations

import email.utils
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

import requests
import structlog
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from .errors import RateLimited, Retryable, TrackerError, Unsure, error_for_status

log = structlog.get_logger(__name__)
T = TypeVar("T")

DEFAULT_TIMEOUT = (5.0, 30.0)  # (connect, read) seconds


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait, from Retry-After (seconds or HTTP date) or a rate-limit reset header.

    Reset headers come as epoch seconds (GitHub, ClickUp) or ISO-8601 (Jira); both are handled.
    """
    now = time.time() if now is None else now
    lowered = {k.lower(): v for k, v in headers.items()}
    value = lowered.get("retry-after")
    if value:
        try:
            return max(float(value), 0.0)
        except ValueError:
            parsed = email.utils.parsedate_to_datetime(value)
            if parsed is not None:
                return max(parsed.timestamp() - now, 0.0)
    for name in ("x-ratelimit-reset", "ratelimit-reset"):
        reset = lowered.get(name)
        if not reset:
            continue
        try:
            number = float(reset)
        except ValueError:
            try:
                stamp = datetime.fromisoformat(reset.replace("Z", "+00:00"))
            except ValueError:
                continue
            if stamp.tzinfo is None:
                stamp = stamp.replace(tzinfo=UTC)
            return max(stamp.timestamp() - now, 0.0)
        # Epoch seconds are large; small numbers are "seconds from now" (Zendesk ratelimit-reset).
        return max(number - now, 0.0) if number > 1_000_000_000 else max(number, 0.0)
    return None


def error_json(response: requests.Response) -> dict[str, Any] | str:
    """An error response's JSON object, or else its text (cut short) to quote as the message.

    Each tracker's client turns the object into one line in that tracker's own words.
    """
    try:
        body = response.json()
    except ValueError:
        return (response.text or response.reason or "").strip()[:500]
    return body if isinstance(body, dict) else str(body)[:500]


# GitHub's secondary limits may answer 403 with neither header, only this in the message.
_RATE_LIMIT_TEXT = re.compile(r"rate limit|abuse detection", re.IGNORECASE)


def wait_for(status: int, headers: Mapping[str, str], message: str = "") -> float | None:
    """How long the tracker asked us to wait, for the statuses where a wait means anything.

    Reset headers ride on every response of some trackers, so they count only for a 429, or a
    403 that says the budget is spent; a 401 is never a rate limit.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    if status == 429:
        return parse_retry_after(headers)
    if status == 403 and ("retry-after" in lowered or lowered.get("x-ratelimit-remaining") == "0"
                          or _RATE_LIMIT_TEXT.search(message)):
        wait = parse_retry_after(headers)
        return 60.0 if wait is None else wait  # GitHub: with nothing to go by, wait at least a minute
    if status == 503 and "retry-after" in lowered:
        return parse_retry_after(headers)
    return None


class HttpMetrics:
    """Process-wide tallies of every tracker's HTTP traffic, for the status page and /metrics.

    Counted here, below every connector, so all trackers are covered the same way; the numbers
    live only as long as the process (Prometheus handles restarts of counters). Thread-safe:
    the status page reads while the engine and its workers write.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.responses: Counter[tuple[str, int]] = Counter()  # (tracker, status; 0 = no response)
        self.rate_limit_waits: Counter[str] = Counter()
        self.rate_limit: dict[str, dict[str, str]] = {}  # tracker -> its latest rate-limit headers

    def record(self, tracker: str, status: int, headers: Mapping[str, str] | None = None) -> None:
        with self._lock:
            self.responses[(tracker, status)] += 1
            limits = {k.lower(): v for k, v in (headers or {}).items() if "rate" in k.lower()}
            if limits:
                self.rate_limit[tracker] = limits

    def waited(self, tracker: str) -> None:
        with self._lock:
            self.rate_limit_waits[tracker] += 1

    def snapshot(self) -> tuple[dict[tuple[str, int], int], dict[str, int], dict[str, dict[str, str]]]:
        """Copies of (responses, rate-limit waits, rate-limit headers), taken together."""
        with self._lock:
            return dict(self.responses), dict(self.rate_limit_waits), {k: dict(v) for k, v in self.rate_limit.items()}


HTTP_METRICS = HttpMetrics()


class RetryPolicy:
    """Bounded retries: back-off with jitter for transient errors, the tracker's own wait for 429."""

    def __init__(self, *, attempts: int = 8, base_delay: float = 0.5, max_delay: float = 30.0,
                 max_rate_limit_wait: float = 300.0, sleep: Callable[[float], None] = time.sleep,
                 rng: random.Random | None = None) -> None:
        self.attempts = attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.max_rate_limit_wait = max_rate_limit_wait
        self.sleep = sleep
        self._rng = rng or random.Random()
        self.waits: list[float] = []  # every wait taken, for reports and tests
        self.rate_limit_waits = 0

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, RateLimited) and error.retry_after is not None:
            # The tracker said how long; a tiny jitter spreads workers that were told the same.
            delay = min(error.retry_after, self.max_rate_limit_wait) + self._rng.uniform(0, 0.05)
            self.rate_limit_waits += 1
            HTTP_METRICS.waited(error.tracker)
        else:
            delay = min(self.max_delay, self.base_delay * 2 ** (state.attempt_number - 1))
            delay = self._rng.uniform(delay / 2, delay)
        self.waits.append(delay)
        if isinstance(error, TrackerError):
            log.warning("http.retry", tracker=error.tracker, status=error.status,
                        attempt=state.attempt_number, wait=round(delay, 3), error=error.message)
        return delay

    def call(self, fn: Callable[[], T]) -> T:
        retrying = Retrying(
            retry=retry_if_exception_type(Retryable),
            stop=stop_after_attempt(self.attempts),
            wait=self._wait,
            sleep=self.sleep,
            reraise=True,
        )
        return retrying(fn)


def default_error_message(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return (response.text or response.reason or "").strip()[:500]
    return str(body)[:500]


class HttpClient:
    """A `requests` session bound to one tracker: base URL, auth, timeouts, errors, retries."""

    def __init__(self, tracker: str, base_url: str, *, auth: Any = None,
                 headers: Mapping[str, str] | None = None,
                 error_message: Callable[[requests.Response], str] = default_error_message,
                 retry: RetryPolicy | None = None,
                 timeout: tuple[float, float] = DEFAULT_TIMEOUT) -> None:
        self.tracker = tracker
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        self.session.auth = auth
        self.session.headers.update({"Accept": "application/json", "User-Agent": "ticketbridge"})
        if headers:
            self.session.headers.update(headers)
        self.error_message = error_message
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        self.stats: Counter[int] = Counter()  # responses by status code
        self.rate_limit: dict[str, str] = {}  # the latest rate-limit headers seen

    def url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else f"{self.base_url}{path}"

    def request(self, method: str, path: str, *, idempotent: bool = True, **kwargs: Any) -> requests.Response:
        """Send with retries; return the 2xx/304 response or raise a TrackerError.

        A non-idempotent request (a POST that creates something) is retried only when the tracker
        certainly did not act on it (429, connection refused): after a timeout or a 5xx it may have,
        so the error goes up and the engine's marker search decides on the next attempt.
        """
        if idempotent:
            return self.retry.call(lambda: self._send(method, path, **kwargs))
        return self.retry.call(lambda: self._send_once(method, path, **kwargs))

    def _send_once(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        try:
            return self._send(method, path, **kwargs)
        except RateLimited:
            raise
        except Retryable as error:
            if isinstance(error.__cause__, requests.ConnectionError) and not isinstance(
                    error.__cause__, requests.Timeout) and error.status is None:
                raise
            raise Unsure(error.tracker, error.message, status=error.status) from error

    def json(self, method: str, path: str, *, idempotent: bool = True, **kwargs: Any) -> Any:
        response = self.request(method, path, idempotent=idempotent, **kwargs)
        if response.status_code in (204, 304) or not response.content:
            return None
        return response.json()

    def _send(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout)
        try:
            response = self.session.request(method, self.url(path), **kwargs)
        except requests.Timeout as error:
            self.stats[0] += 1
            HTTP_METRICS.record(self.tracker, 0)
            raise Retryable(self.tracker, f"timed out: {method} {path}") from error
        except requests.ConnectionError as error:
            self.stats[0] += 1
            HTTP_METRICS.record(self.tracker, 0)
            raise Retryable(self.tracker, f"cannot connect to {self.base_url}") from error
        self.stats[response.status_code] += 1
        HTTP_METRICS.record(self.tracker, response.status_code, response.headers)
        self.rate_limit = {k: v for k, v in response.headers.items() if "rate" in k.lower()}
        if response.status_code < 400 or response.status_code == 304:
            return response
        message = self.error_message(response)
        raise error_for_status(self.tracker, response.status_code,
                               f"{method} {path} -> {response.status_code}: {message}",
                               wait_for(response.status_code, response.headers, message))

    @property
    def requests_made(self) -> int:
        return sum(self.stats.values())
