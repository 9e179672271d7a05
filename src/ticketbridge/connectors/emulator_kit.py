"""Shared machinery for the tracker emulators: a threaded loopback HTTP server with routing,
auth checks, a per-minute rate budget and fault switches.

Emulators are independent implementations of each tracker's REST API, written from the specs;
they must never import a connector or the sync core. This module holds only what every fake
HTTP server needs, so each emulator module is about its tracker's API and nothing else.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
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

    def roll(self, rate: float) -> bool:
        return rate > 0 and self._random.random() < rate


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
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self.routes()
        self._httpd = ThreadingHTTPServer((host, port), self._handler_class())
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
        allowed, remaining, wait = self.budget.take()
        if not allowed:
            response = self.rate_limited_response(wait)
            response.headers.update(self.rate_limit_headers(0, wait))
            return response
        if self.faults.roll(self.faults.timeout_rate):
            time.sleep(self.faults.timeout_seconds)
        if self.faults.roll(self.faults.error_rate):
            return self._with_rate_headers(self.server_error_response(), remaining)
        return self._with_rate_headers(self._route(request), remaining)

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
