"""Shared machinery for the tracker emulators: a threaded loopback HTTP server with routing,
auth checks, a per-minute rate budget and fault switches, and outgoing webhook delivery
(`WebhookDispatcher`) with its own fault switches.

Emulators are independent implementations of each tracker's REST API, written from the specs;
they must never import a connector or the sync core. This module holds only what every fake
HTTP server needs, so each emulator module is about its tracker's API and nothing else.
"""

from __future__ import annotations

import json
import queue
import random
import re
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes
    params: dict[str, str] = field(default_factory=dict)  # from the route pattern

    def json(self) -> Any:
        if not self.body:
            return None
        return json.loads(self.body.decode("utf-8"))

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default


@dataclass
class Response:
    status: int
    body: Any = None  # JSON-serialisable, or bytes for a raw body
    headers: dict[str, str] = field(default_factory=dict)

    def encode(self) -> bytes:
        if self.body is None:
            return b""
        if isinstance(self.body, bytes):
            return self.body
        return json.dumps(self.body).encode("utf-8")


class HTTPError(Exception):
    """Raised inside a route handler to answer with the tracker's own error body."""

    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.response = Response(status, body, headers or {})


Handler = Callable[[Request], Response]


@dataclass
class Faults:
    """Fault switches, changeable while the server runs."""

    latency: float = 0.0  # seconds added to every request
    error_rate: float = 0.0  # fraction of requests answered 5xx
    timeout_rate: float = 0.0  # fraction of requests that hang past any sane client timeout
    timeout_seconds: float = 30.0
    seed: int | None = None

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)
        self._count_lock = threading.Lock()
        # What the switches did, for reliability figures (a hung request is logged with the status
        # it finally got, so the request log cannot tell).
        self.timeouts_served = 0
        self.errors_served = 0

    def roll(self, rate: float) -> bool:
        return rate > 0 and self._random.random() < rate

    def hang(self) -> str | None:
        """Roll for a timeout and count it. None, or when the caller holds the request for
        `timeout_seconds`, half and half: "before" acting on it (a write lands after the client
        gave up) or "after" (acted on; only the answer is lost)."""
        if not self.roll(self.timeout_rate):
            return None
        with self._count_lock:
            self.timeouts_served += 1
        return "before" if self._random.random() < 0.5 else "after"

    def fail(self) -> bool:
        """Roll for a 5xx and count it; the caller answers with its server error on True."""
        hit = self.roll(self.error_rate)
        if hit:
            with self._count_lock:
                self.errors_served += 1
        return hit


class RateBudget:
    """A sliding one-minute window of requests. `per_minute=None` means unlimited.

    `clock` is injectable so benchmarks can run a scaled minute.
    """

    def __init__(self, per_minute: int | None = None, window: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.window = window
        self._clock = clock
        self._hits: deque[float] = deque()
        self._lock = threading.Lock()

    def take(self) -> tuple[bool, int, float]:
        """Count one request. Returns (allowed, remaining, seconds until a slot frees)."""
        with self._lock:
            now = self._clock()
            while self._hits and self._hits[0] <= now - self.window:
                self._hits.popleft()
            if self.per_minute is None:
                self._hits.append(now)
                return True, 1_000_000, 0.0
            if len(self._hits) >= self.per_minute:
                wait = self._hits[0] + self.window - now
                return False, 0, max(wait, 0.0)
            self._hits.append(now)
            return True, self.per_minute - len(self._hits), 0.0

    def reset_in(self) -> float:
        with self._lock:
            if not self._hits:
                return 0.0
            return max(self._hits[0] + self.window - self._clock(), 0.0)


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (a timeout fault) resets its connection: expected, not worth a traceback.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class EmulatorServer:
    """Base class of every emulator. Subclasses register routes in `routes()` and implement
    `authenticate`, `rate_limited_response`, `server_error_response` in their tracker's dialect."""

    name = "emulator"

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *,
                 rate_limit_per_minute: int | None = None, faults: Faults | None = None) -> None:
        self.faults = faults or Faults()
        self.budget = RateBudget(rate_limit_per_minute)
        self.lock = threading.RLock()  # guards the emulator's state
        self.request_log: list[tuple[str, str, int]] = []  # (method, path, status)
        # API writes that changed nothing: a sync that writes a value the item already has is an echo.
        self.noop_writes = 0
        self._storm_until = 0.0
        self._storm_retry_after = 1.0
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self.routes()
        self._httpd = _QuietServer((host, port), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    # -- subclass API ----------------------------------------------------------------------
    def routes(self) -> None:
        raise NotImplementedError

    def route(self, method: str, pattern: str, handler: Handler) -> None:
        """Register `handler` for `method` and a path pattern like `/api/v2/tickets/{id}`."""
        regex = "^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern) + "/?$"
        self._routes.append((method.upper(), re.compile(regex), handler))

    def authenticate(self, request: Request) -> Response | None:
        """Return None when the request is authorised, else the tracker's 401 response."""
        return None

    def rate_limit_headers(self, remaining: int, reset_in: float) -> dict[str, str]:
        return {}

    def rate_limited_response(self, retry_after: float) -> Response:
        return Response(429, {"error": "rate limited"}, {"Retry-After": str(max(1, round(retry_after)))})

    def server_error_response(self) -> Response:
        return Response(503, {"error": "Service Unavailable"})

    def not_found_response(self, request: Request) -> Response:
        return Response(404, {"error": "Not found"})

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def host(self) -> str:
        return str(self._httpd.server_address[0])

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> Self:
        # A short poll interval keeps stop() fast; tests start and stop many servers.
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"{self.name}-emulator", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._httpd.serve_forever(poll_interval=0.2)

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def rate_limit_storm(self, seconds: float, retry_after: float = 1.0) -> None:
        """A 429 storm: for `seconds` from now every authenticated request is answered with the
        tracker's rate-limit response, telling the client to come back in `retry_after` seconds
        (`seconds=0` ends it)."""
        self._storm_retry_after = retry_after
        self._storm_until = time.monotonic() + seconds

    def storm_response(self) -> Response | None:
        """The rate-limit answer while a storm lasts, else None (subclasses with their own dispatch call it)."""
        if time.monotonic() >= self._storm_until:
            return None
        response = self.rate_limited_response(self._storm_retry_after)
        response.headers.update(self.rate_limit_headers(0, self._storm_retry_after))
        return response

    def count(self, method: str | None = None, path_prefix: str = "") -> int:
        """How many requests were answered (for tests and benchmarks)."""
        with self.lock:
            return sum(1 for m, p, _ in self.request_log
                       if (method is None or m == method) and p.startswith(path_prefix))

    # -- dispatch --------------------------------------------------------------------------
    def dispatch(self, request: Request) -> Response:
        if self.faults.latency:
            time.sleep(self.faults.latency)
        denied = self.authenticate(request)
        if denied is not None:
            return self._with_rate_headers(denied, self._remaining())
        stormed = self.storm_response()
        if stormed is not None:
            return stormed
        allowed, remaining, wait = self.budget.take()
        if not allowed:
            response = self.rate_limited_response(wait)
            response.headers.update(self.rate_limit_headers(0, wait))
            return response
        hang = self.faults.hang()
        if hang == "before":
            time.sleep(self.faults.timeout_seconds)
        if self.faults.fail():
            return self._with_rate_headers(self.server_error_response(), remaining)
        response = self._route(request)
        if hang == "after":
            time.sleep(self.faults.timeout_seconds)
        return self._with_rate_headers(response, remaining)

    def _remaining(self) -> int:
        if self.budget.per_minute is None:
            return 1_000_000
        with self.budget._lock:
            return max(self.budget.per_minute - len(self.budget._hits), 0)

    def _with_rate_headers(self, response: Response, remaining: int) -> Response:
        # Real trackers send their rate-limit headers on every response, errors included.
        for name, value in self.rate_limit_headers(remaining, self.budget.reset_in()).items():
            response.headers.setdefault(name, value)
        return response

    def _route(self, request: Request) -> Response:
        path_matched = False
        for method, regex, handler in self._routes:
            match = regex.match(request.path)
            if not match:
                continue
            path_matched = True
            if method != request.method:
                continue
            request.params = match.groupdict()
            try:
                with self.lock:
                    return handler(request)
            except HTTPError as error:
                return error.response
        if path_matched:
            return Response(405, {"error": "Method Not Allowed"})
        return self.not_found_response(request)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class _Handler(BaseHTTPRequestHandler):
            # Without this each keep-alive request waits ~40 ms on delayed ACKs.
            disable_nagle_algorithm = True
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet by default
                pass

            def _handle(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                request = Request(
                    method=self.command,
                    path=parts.path,
                    query=parse_qs(parts.query, keep_blank_values=True),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                )
                try:
                    response = server.dispatch(request)
                except Exception as error:  # an emulator bug must not kill the connection silently
                    response = Response(500, {"error": "emulator failure", "detail": repr(error)})
                payload = response.encode()
                # Logged before answering, so a client that counts requests right after its call
                # sees its own request.
                with server.lock:
                    server.request_log.append((request.method, request.path, response.status))
                try:
                    self.send_response(response.status)
                    if response.body is not None and not isinstance(response.body, bytes):
                        self.send_header("Content-Type", "application/json; charset=utf-8")
                    for name, value in response.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    if payload and self.command != "HEAD":
                        self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    return

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

        return _Handler


class WebhookSender(EmulatorServer):
    """An emulator that sends webhooks through `self.webhooks`: the dispatcher runs while the server
    does, and its switches and records are the emulator's own attributes (tests and the sandbox
    set them while the server runs)."""

    webhooks: WebhookDispatcher

    def start(self) -> Self:
        self.webhooks.start()
        return super().start()

    def serve_forever(self) -> None:
        self.webhooks.start()
        super().serve_forever()

    def stop(self) -> None:
        super().stop()
        self.webhooks.stop()

    @property
    def webhook_url(self) -> str | None:
        return self.webhooks.url

    @webhook_url.setter
    def webhook_url(self, value: str | None) -> None:
        self.webhooks.url = value

    @property
    def webhook_secret(self) -> str | None:
        return self.webhooks.secret

    @webhook_secret.setter
    def webhook_secret(self, value: str | None) -> None:
        self.webhooks.secret = value

    @property
    def webhook_faults(self) -> WebhookFaults:
        return self.webhooks.faults

    @webhook_faults.setter
    def webhook_faults(self, value: WebhookFaults) -> None:
        self.webhooks.faults = value

    @property
    def deliveries(self) -> list[Delivery]:
        """Webhook POSTs made so far (duplicates included), oldest first."""
        return self.webhooks.deliveries

    @property
    def dropped_deliveries(self) -> list[Delivery]:
        """Deliveries the drop fault swallowed."""
        return self.webhooks.dropped

    def wait_for_deliveries(self, timeout: float = 5.0) -> bool:
        """Block until every queued webhook was delivered (or dropped); False on timeout."""
        return self.webhooks.wait(timeout)


def basic_credentials(request: Request) -> tuple[str, str] | None:
    """Decode an `Authorization: Basic` header into (user, password)."""
    import base64
    import binascii

    header = request.headers.get("authorization", "")
    if not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip()).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


# -- webhook delivery ------------------------------------------------------------------------
@dataclass
class WebhookFaults:
    """Fault switches of webhook delivery, changeable while the server runs."""

    drop_rate: float = 0.0  # fraction of events never sent
    duplicate_rate: float = 0.0  # fraction of events sent twice (same delivery id, same body)
    delay: float = 0.0  # seconds the delivery thread waits before each event
    retry_delay: float = 0.05  # seconds between a tracker's attempts (shortened for tests)
    seed: int | None = None

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)

    def roll(self, rate: float) -> bool:
        return rate > 0 and self._random.random() < rate


@dataclass(frozen=True)
class Delivery:
    """One webhook event as the emulator sent it (or would have, for a dropped one)."""

    event: str
    url: str
    headers: dict[str, str]
    body: bytes
    status: int | None = None  # the receiver's last HTTP status; None when unreachable or dropped
    attempts: int = 0
    error: str | None = None
    duplicate: bool = False
    delivery_id: str = ""  # the tracker's delivery identifier, when it sends one
    action: str = ""  # GitHub's `action`; empty for trackers without one

    @property
    def payload(self) -> Any:
        return json.loads(self.body)


# (secret, body) -> the signature headers. Called at each POST, so a timestamped signature
# (Zendesk's) is as fresh as the attempt that carries it.
Signer = Callable[[str, bytes], dict[str, str]]


@dataclass(frozen=True)
class _Queued:
    generation: int
    delivery: Delivery
    secret: str | None


class WebhookDispatcher:
    """One emulator's outgoing webhooks: a queue drained by a background thread, so an API call
    that triggers an event never waits for the receiver, as on the real trackers.

    The tracker's dialect comes in as parameters: how it signs (`signer`), how many times it
    tries (`attempts`), which answers it retries (`retry`) and the header that numbers a retry.
    `reset()` starts a new generation: events queued before it are neither sent nor recorded,
    so one running server can serve many tests.
    """

    def __init__(self, name: str, *, url: str | None = None, secret: str | None = None,
                 faults: WebhookFaults | None = None, signer: Signer | None = None, timeout: float = 10.0,
                 attempts: int = 1, retry: Callable[[int | None], bool] | None = None,
                 retry_header: str | None = None) -> None:
        self.name = name
        self.url = url
        self.secret = secret
        self.faults = faults or WebhookFaults()
        self.signer = signer
        self.timeout = timeout
        self.attempts = attempts
        self.retry = retry or (lambda status: status is None or not 200 <= status < 300)
        self.retry_header = retry_header
        self._lock = threading.Lock()
        self._deliveries: list[Delivery] = []
        self._dropped: list[Delivery] = []
        self._outbox: queue.Queue[_Queued | None] = queue.Queue()
        self._pending = 0
        self._pending_changed = threading.Condition()
        self._generation = 0
        self._worker: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        if self._worker is None:
            self._worker = threading.Thread(target=self._loop, name=f"{self.name}-webhooks", daemon=True)
            self._worker.start()

    def stop(self) -> None:
        if self._worker is not None:
            self._outbox.put(None)
            self._worker.join(timeout=self.timeout * self.attempts + 1)
            self._worker = None

    def reset(self) -> None:
        """Forget every record; whatever is still queued is discarded unsent."""
        with self._lock:
            self._generation += 1
            self._deliveries = []
            self._dropped = []

    # -- producing ---------------------------------------------------------------------------
    @property
    def enabled(self) -> bool:
        return bool(self.url)

    def emit(self, event: str, body: bytes, headers: dict[str, str], *, delivery_id: str = "",
             action: str = "") -> bool:
        """Queue one event (its body already rendered); False when no URL is configured."""
        url = self.url
        if not url:
            return False
        with self._pending_changed:
            self._pending += 1
        with self._lock:
            generation = self._generation
        delivery = Delivery(event, url, dict(headers), body, delivery_id=delivery_id, action=action)
        self._outbox.put(_Queued(generation, delivery, self.secret))
        return True

    # -- records -----------------------------------------------------------------------------
    @property
    def deliveries(self) -> list[Delivery]:
        """Events sent so far (duplicates included), oldest first."""
        with self._lock:
            return list(self._deliveries)

    @property
    def dropped(self) -> list[Delivery]:
        """Events the drop fault swallowed."""
        with self._lock:
            return list(self._dropped)

    @property
    def pending(self) -> int:
        with self._pending_changed:
            return self._pending

    def wait(self, timeout: float = 5.0) -> bool:
        """Block until every queued event was delivered, given up on or dropped; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._pending_changed:
            while self._pending > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._pending_changed.wait(left)
        return True

    # -- the delivery thread -----------------------------------------------------------------
    def _current(self, generation: int) -> bool:
        with self._lock:
            return generation == self._generation

    def _record(self, generation: int, into: list[Delivery], delivery: Delivery) -> None:
        with self._lock:
            if generation == self._generation:
                into.append(delivery)

    def _loop(self) -> None:
        while True:
            item = self._outbox.get()
            if item is None:
                return
            try:
                if self._current(item.generation):
                    self._deliver(item)
            except Exception:  # a bad event must not stop every later delivery
                pass
            finally:
                with self._pending_changed:
                    self._pending -= 1
                    self._pending_changed.notify_all()

    def _deliver(self, item: _Queued) -> None:
        faults = self.faults
        if faults.delay:
            time.sleep(faults.delay)
        if faults.roll(faults.drop_rate):
            with self._lock:
                if item.generation == self._generation:
                    self._dropped.append(item.delivery)
            return
        for copy in range(2 if faults.roll(faults.duplicate_rate) else 1):
            status, error, attempts, headers = self._attempts(item)
            sent = item.delivery
            record = Delivery(sent.event, sent.url, headers, sent.body, status, attempts, error,
                              duplicate=copy > 0, delivery_id=sent.delivery_id, action=sent.action)
            self._record(item.generation, self._deliveries, record)

    def _attempts(self, item: _Queued) -> tuple[int | None, str | None, int, dict[str, str]]:
        delivery = item.delivery
        status: int | None = None
        error: str | None = None
        headers = dict(delivery.headers)
        attempts = 0
        while attempts < max(self.attempts, 1):
            attempts += 1
            headers = dict(delivery.headers)
            if item.secret and self.signer is not None:
                headers.update(self.signer(item.secret, delivery.body))
            if attempts > 1 and self.retry_header:
                headers[self.retry_header] = str(attempts - 1)
            post = urllib.request.Request(delivery.url, data=delivery.body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(post, timeout=self.timeout) as answer:
                    status, error = answer.status, None
            except urllib.error.HTTPError as failure:
                status, error = failure.code, None
            except (urllib.error.URLError, OSError) as failure:
                status, error = None, str(failure)
            if not self.retry(status) or attempts >= self.attempts:
                break
            time.sleep(self.faults.retry_delay)
        return status, error, attempts, headers
