"""The shared HTTP base of every connector: one session, timeouts, one retry policy, pacing.

Retries live here and nowhere else. A request that fails with a `Retryable` error is tried again
with exponential back-off and jitter; a `RateLimited` error waits exactly what the tracker asked
for (Retry-After or its reset header) instead. Connectors that drive a client library (Jira
through the `jira` package) run its calls through the same `RetryPolicy`.

Pacing (`RateGate`) works before the wall: every response's remaining-budget header is read, and
once the budget is spent the client's later requests wait for the tracker's reset instead of
being sent to collect a 429. It sits in the session's transport adapter (`pace`), so it covers
every request of a session, the `jira` package's included.
"""

from __future__ import annotations

import email.utils
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import requests
import structlog
from requests.adapters import HTTPAdapter
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

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


# Set by `RetryPolicy` on the thread that has just slept out a rate limit, read (and cleared) by that
# thread's next pass through a `RateGate`: the gate's deadline from that very 429 is then already waited.
_rate_limit_slept = threading.local()


class RetryPolicy:
    """Bounded retries: back-off with jitter for transient errors, the tracker's own wait for 429.

    A rate limit is waited out only when the wait fits in `max_rate_limit_wait`; a longer one (a
    GitHub hourly budget spent, a whole minute's budget gone) goes up at once as `RateLimited`: the
    engine records the item as retryable and a later pass takes it, while the client's `RateGate`
    keeps every request from going out before the reset (sending early only earns another 429, and
    GitHub bans clients that keep at it).
    """

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
            _rate_limit_slept.waited = True
        else:
            delay = min(self.max_delay, self.base_delay * 2 ** (state.attempt_number - 1))
            delay = self._rng.uniform(delay / 2, delay)
        self.waits.append(delay)
        if isinstance(error, TrackerError):
            log.warning("http.retry", tracker=error.tracker, status=error.status,
                        attempt=state.attempt_number, wait=round(delay, 3), error=error.message)
        return delay

    def retries(self, error: BaseException) -> bool:
        """Worth another attempt: a transient error, or a rate limit whose wait we are willing to take."""
        if isinstance(error, RateLimited) and error.retry_after is not None:
            return error.retry_after <= self.max_rate_limit_wait
        return isinstance(error, Retryable)

    def call(self, fn: Callable[[], T]) -> T:
        _rate_limit_slept.waited = False  # a wait belongs to the call that took it
        retrying = Retrying(
            retry=retry_if_exception(self.retries),
            stop=stop_after_attempt(self.attempts),
            wait=self._wait,
            sleep=self.sleep,
            reraise=True,
        )
        return retrying(fn)


# The remaining-budget headers of the trackers (lower-cased): Zendesk's account-wide `X-Rate-Limit-Remaining`
# and, on list endpoints, `ratelimit-remaining`; Jira Cloud, GitHub and ClickUp `X-RateLimit-Remaining`.
REMAINING_HEADERS = ("x-ratelimit-remaining", "x-rate-limit-remaining", "ratelimit-remaining")
LIMIT_HEADERS = ("x-ratelimit-limit", "x-rate-limit", "ratelimit-limit")
# When the budget comes back: `x-ratelimit-reset` (GitHub and ClickUp epoch seconds, Jira ISO-8601),
# Zendesk's `ratelimit-reset` (seconds from now). Read by `parse_retry_after`.
RESET_HEADERS = ("x-ratelimit-reset", "ratelimit-reset")


@dataclass(frozen=True)
class _Budget:
    """What one response says about the rate-limit budget."""

    wait: float | None = None  # seconds until it comes back, when the response says
    remaining: int | None = None
    limit: int | None = None
    limited: bool = False  # a rate-limit answer (429, GitHub's 403): the thread's RetryPolicy sleeps it out
    status: int | None = None


def _header_int(lowered: Mapping[str, str], names: tuple[str, ...]) -> int | None:
    values = []
    for name in names:
        try:
            values.append(int(float(lowered[name])))
        except (KeyError, ValueError):
            continue
    return min(values) if values else None


class RateGate:
    """Client-side pacing from the tracker's own rate-limit headers, shared by every thread of a client.

    After each response (`after_response`) the remaining budget is read. When it is spent, i.e. the
    remaining count minus the requests of other threads still in flight (each will take a slot) is at
    most `reserve`, the gate closes until the reset the tracker announced; a 429 (or GitHub's
    rate-limit 403) closes it for the wait the tracker asked. Before each request (`before_send`) a
    thread waits for the gate to open, so once the budget is gone no thread sends into a 429: the
    tracker's reset paces them all. One lock guards one monotonic deadline (`not_before`); a later
    deadline always wins, so a stale response (sent before the budget ran out) cannot reopen it.

    `reserve` defaults to 0: the count of requests in flight already keeps a slot for each request
    another thread has sent, which is what a fixed reserve would guess at; a larger one leaves room
    for other clients on the same budget (Zendesk's is account-wide, ClickUp's per token) at the cost
    of `reserve` requests per window on a fixed-window tracker (nothing on a sliding one: the gate
    then opens as each old request leaves the window).

    A tracker that announces its reset only with the 429 (Jira Cloud: `Retry-After` and
    `X-RateLimit-Reset` come with the 429, successful responses carry only `X-RateLimit-Remaining`)
    shows its window that way: the budget spent from the start of a spell (the first request after
    the gate reopened at a reset, or the last one that found the budget whole) comes back at the
    reset the 429 names, so
    `window = reset - spell start` (never shorter than the real window: it errs on the side of
    waiting). From then on a spent budget closes the gate at `spell start + window` without a 429;
    each later 429 learns it again.

    A wait longer than the policy's `max_rate_limit_wait` is not taken: the request fails at once
    with `RateLimited`, without being sent (a pass should say "rate-limited until ..." rather than
    hang for an hour on GitHub's primary limit); the engine retries the item on a later pass.
    """

    def __init__(self, tracker: str, policy: RetryPolicy, *, reserve: int = 0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.tracker = tracker
        self.policy = policy
        self.reserve = reserve
        self.clock = clock
        self.not_before = 0.0  # clock() time before which no request goes out
        self.reason = ""  # what closed the gate last, for the log
        self.in_flight = 0
        self.window: float | None = None  # learned from a 429 when the tracker sends no reset otherwise
        self.waits: list[float] = []  # every wait taken here, for reports and tests
        # The latest deadline somebody has slept out (the gate, or RetryPolicy for its own 429). Time is
        # never earlier than that: with a real sleep it changes nothing, and with a test's instant sleep
        # it keeps the gate's clock in step with the waits taken.
        self._slept_to = 0.0
        # When the budget being spent now was last whole, as far as we know: a response showed it
        # (remaining + in flight = limit - 1), or the gate reopened at a reset. Unknown at first: a window
        # is learned only from a spell whose start we saw.
        self._spell_start: float | None = None
        self._reopened = False  # the next request to pass starts a spell
        self._left: int | None = None  # the budget left as the last response said, less what went out since
        self._reset_at: float | None = None  # when that budget comes back, if known
        self._lock = threading.Lock()
        self._own = threading.local()  # the deadline set by this thread's own 429, which RetryPolicy sleeps

    def before_send(self) -> None:
        """Wait until the gate is open (or raise RateLimited when that is too far off), then count the
        request as in flight. Every `before_send` that returns must be followed by `after_response`."""
        slept = getattr(_rate_limit_slept, "waited", False)
        own = getattr(self._own, "deadline", None)
        _rate_limit_slept.waited = self._own.deadline = None
        while True:
            with self._lock:
                if slept and own is not None and self.not_before <= own:
                    # RetryPolicy has just slept out this thread's own 429: no second wait.
                    self._slept_to = max(self._slept_to, own)
                now = self._now()
                if self.not_before <= now and self._budget_left(now):
                    self._pass(now)
                    return
                deadline, reason = self.not_before, self.reason
            delay = deadline - now
            if delay > self.policy.max_rate_limit_wait:
                raise RateLimited(self.tracker, f"rate-limit budget spent ({reason}): resets in {delay:.1f} s, "
                                  f"more than max_rate_limit_wait {self.policy.max_rate_limit_wait:g} s; "
                                  "not sent", retry_after=delay)
            log.info("http.rate_limit_wait", tracker=self.tracker, wait=round(delay, 3), reason=reason)
            HTTP_METRICS.waited(self.tracker)
            self.waits.append(delay)
            self.policy.sleep(delay)
            with self._lock:
                self._slept_to = max(self._slept_to, deadline)
            slept = False  # and look again: a later 429 or spent budget may have pushed the deadline further

    def _budget_left(self, now: float) -> bool:
        """Whether the last known budget, less what went out since, has room (under the lock); closes
        the gate when not. Threads may pass many times between two responses: this keeps them from
        sending more than the last response said was left."""
        if self._left is None or self._left > self.reserve or self._reset_at is None or self._reset_at <= now:
            return True
        self._close(self._reset_at, f"remaining {self._left} after the requests sent since")
        return False

    def _pass(self, now: float) -> None:
        """Count one request out (under the lock); the first after a closure starts a spell."""
        self.in_flight += 1
        if self._left is not None:
            self._left -= 1
        if self._reopened:
            self._spell_start, self._reopened = now, False

    def after_response(self, status: int | None, headers: Mapping[str, str] | None = None) -> None:
        """Read the budget off a response (status None: no response, only the in-flight count drops)."""
        budget = self._read(status, headers or {})
        with self._lock:
            others = self.in_flight = max(self.in_flight - 1, 0)
            now = self._now()
            if budget.limited:
                assert budget.wait is not None
                if self._spell_start is not None:
                    self.window = max(now + budget.wait - self._spell_start, budget.wait)
                deadline = self._close(now + budget.wait, f"{budget.status} from the tracker")
                self._own.deadline = deadline
                self._left = self._reset_at = None  # what is left after the wait: the next response says
                return
            if budget.remaining is None:
                return
            if budget.limit is not None and budget.remaining + others >= budget.limit - 1:
                self._spell_start = now  # the budget was whole: a spell starts here
            reason = f"remaining {budget.remaining}"
            if budget.wait is not None:
                self._reset_at = now + budget.wait
            elif self.window is not None and self._spell_start is not None:
                self._reset_at = self._spell_start + self.window
                reason += f", window {self.window:.1f} s learned from a 429"
            else:
                self._reset_at = None
            # The requests still in flight will each take a slot of what this response says is left.
            self._left = budget.remaining - others
            if self._left <= self.reserve and self._reset_at is not None:
                self._close(self._reset_at, reason)

    def _close(self, deadline: float, reason: str) -> float:
        """Keep requests back until `deadline` (under the lock); a later deadline already set wins."""
        if deadline > self.not_before:
            self.not_before, self.reason = deadline, reason
            if deadline > self._now():
                self._reopened = True
        return deadline

    def _now(self) -> float:
        return max(self.clock(), self._slept_to)

    @staticmethod
    def _read(status: int | None, headers: Mapping[str, str]) -> _Budget:
        if status is None:
            return _Budget()
        if status in (403, 429):
            wait = wait_for(status, headers)
            if wait is not None:
                return _Budget(wait=wait, limited=True, status=status)
            if status == 429:  # no wait given: the policy's back-off handles it
                return _Budget()
        lowered = {k.lower(): v for k, v in headers.items()}
        remaining = _header_int(lowered, REMAINING_HEADERS)
        if remaining is None:
            return _Budget()
        reset = parse_retry_after({name: lowered[name] for name in RESET_HEADERS if name in lowered})
        return _Budget(wait=reset, remaining=remaining, limit=_header_int(lowered, LIMIT_HEADERS), status=status)


class PacedAdapter(HTTPAdapter):
    """The transport adapter that puts every request of a session through a `RateGate`."""

    def __init__(self, gate: RateGate) -> None:
        super().__init__()
        self.gate = gate

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        self.gate.before_send()
        try:
            response = super().send(request, *args, **kwargs)
        except BaseException:
            self.gate.after_response(None)
            raise
        self.gate.after_response(response.status_code, response.headers)
        return response


def pace(session: requests.Session, gate: RateGate) -> RateGate:
    """Route every http(s) request of `session` through `gate` (also a session a library built)."""
    adapter = PacedAdapter(gate)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return gate


def default_error_message(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return (response.text or response.reason or "").strip()[:500]
    return str(body)[:500]


class HttpClient:
    """A `requests` session bound to one tracker: base URL, auth, timeouts, errors, retries, pacing."""

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
        self.gate = pace(self.session, RateGate(tracker, self.retry))  # shared by the threads using this client

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
