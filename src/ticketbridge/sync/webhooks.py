"""The webhook receiver: one signed route per tracker, waking the engine with the item a delivery names.

A delivery is only a hint. The receiver checks the signature the way the tracker signs, reads
which item the event is about and puts ``(tracker name, item id)`` on a thread-safe queue; the
engine (``Engine.run_forever``) fetches that item and processes it like a polled one. No tracker
is called while a request is open, so answers are quick, and polling stays the safety net: a
lost, rejected or dropped delivery loses nothing.

Answers: 202 accepted (queued); 200 a delivery already seen (same delivery id); 204 an event we
do not act on (a ping, a pull request, another event type); 400 a malformed body; 401 a missing,
wrong or (Zendesk) stale signature; 404 a path that is not a route (no redirect for a trailing
slash); 413 a body over the limit (never buffered beyond it); 405 another method than POST.

Signatures (HMAC-SHA256 keyed with the webhook secret, compared in constant time on bytes):

=========  ======================================  =========================================
tracker    header                                  value
=========  ======================================  =========================================
zendesk    X-Zendesk-Webhook-Signature             base64(HMAC(timestamp + raw body)), with
           X-Zendesk-Webhook-Signature-Timestamp   the ISO-8601 timestamp within `tolerance`
github     X-Hub-Signature-256                     "sha256=" + hex(HMAC(raw body))
jira       X-Hub-Signature                         "sha256=" + hex(HMAC(raw body)) (admin
                                                   webhooks with a secret)
clickup    X-Signature                             hex(HMAC(raw body))
=========  ======================================  =========================================

Secrets come from the environment (``webhooks.trackers.<name>.secret_env``) and are never logged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import queue
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..serving import BackgroundServer
from .config import WebhooksConfig

__all__ = [
    "DEFAULT_MAX_BODY", "DEFAULT_TOLERANCE", "Nudge", "Receiver", "TrackerRoute", "WebhookServer",
    "clickup_signature", "github_signature", "jira_signature", "zendesk_signature",
]

log = structlog.get_logger("ticketbridge.webhooks")

DEFAULT_MAX_BODY = 1024 * 1024
DEFAULT_TOLERANCE = 300.0
DEFAULT_SEEN = 10_000  # delivery ids remembered (LRU)
TYPES = ("zendesk", "jira", "github", "clickup")

Nudge = tuple[str, str]  # (tracker name, item id)

_ITEM_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
_GITHUB_REPO = re.compile(r"^(?!\.{1,2}/)[A-Za-z0-9_.-]{1,100}/(?!\.{1,2}$)[A-Za-z0-9_.-]{1,100}$")
_ZENDESK_SUBJECT = re.compile(r"^zen:ticket:([0-9]{1,20})$")


# -- signatures (also used by tests, emulators' peers and the bench) -------------------------
def _hmac(secret: str, body: bytes) -> bytes:
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest()


def zendesk_signature(secret: str, timestamp: str, body: bytes) -> str:
    """`X-Zendesk-Webhook-Signature`: base64 HMAC-SHA256 of timestamp + body, no separator."""
    return base64.b64encode(_hmac(secret, timestamp.encode("utf-8") + body)).decode("ascii")


def github_signature(secret: str, body: bytes) -> str:
    """`X-Hub-Signature-256`: "sha256=" + hex HMAC-SHA256 of the raw body."""
    return "sha256=" + _hmac(secret, body).hex()


def jira_signature(secret: str, body: bytes) -> str:
    """`X-Hub-Signature` of a Jira admin webhook with a secret (WebSub form, SHA-256)."""
    return "sha256=" + _hmac(secret, body).hex()


def clickup_signature(secret: str, body: bytes) -> str:
    """`X-Signature`: hex HMAC-SHA256 of the raw body."""
    return _hmac(secret, body).hex()


def _same(expected: str, given: str | None) -> bool:
    """Constant-time comparison on bytes (a header may hold any latin-1 text)."""
    if given is None:
        return False
    return hmac.compare_digest(expected.encode("ascii"), given.strip().encode("latin-1", "replace"))


# -- errors ----------------------------------------------------------------------------------
class _Reject(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


def _malformed(reason: str) -> _Reject:
    return _Reject(400, reason)


@dataclass(frozen=True)
class _Event:
    item_id: str | None  # None: an event we do not act on
    delivery_id: str
    kind: str


@dataclass(frozen=True)
class TrackerRoute:
    """One route: tracker name and type, URL path and signing secret (kept out of repr)."""

    tracker: str
    type: str
    path: str
    secret: str = field(repr=False)

    def __post_init__(self) -> None:
        if self.type not in TYPES:
            raise ValueError(f"webhooks: tracker type {self.type!r} is not one of {', '.join(TYPES)}")


class _Seen:
    """A bounded LRU of delivery ids, safe across threads."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._ids: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, key: tuple[str, str]) -> bool:
        """Record `key`; False when it was already there (a duplicate delivery)."""
        with self._lock:
            if key in self._ids:
                self._ids.move_to_end(key)
                return False
            self._ids[key] = None
            while len(self._ids) > self.size:
                self._ids.popitem(last=False)
            return True


@dataclass
class Counters:
    accepted: int = 0
    duplicates: int = 0
    ignored: int = 0
    rejected: int = 0
    queue_full: int = 0


class Receiver:
    """The ASGI app (`.app`) and its state: routes, the queue it feeds, the delivery ids seen."""

    def __init__(self, routes: Sequence[TrackerRoute], nudges: queue.Queue[Nudge], *,
                 max_body_bytes: int = DEFAULT_MAX_BODY, tolerance: float = DEFAULT_TOLERANCE,
                 clock: Callable[[], datetime] | None = None, seen_size: int = DEFAULT_SEEN) -> None:
        paths = [route.path for route in routes]
        if len(set(paths)) != len(paths):
            raise ValueError("webhooks: two trackers share a path")
        self.routes = tuple(routes)
        self.nudges = nudges
        self.max_body_bytes = max_body_bytes
        self.tolerance = tolerance
        self.clock = clock or (lambda: datetime.now(UTC))
        self.seen = _Seen(seen_size)
        self.counters = Counters()
        self.app = Starlette(routes=[Route(route.path, self._endpoint(route), methods=["POST"])
                                     for route in self.routes])
        # A path that is not a route is 404, also with a slash added or removed: Starlette's default
        # answer there is a 307 redirect, which a tracker would follow with the body and signature.
        self.app.router.redirect_slashes = False

    @classmethod
    def from_config(cls, config: WebhooksConfig, nudges: queue.Queue[Nudge],
                    env: Mapping[str, str] | None = None) -> Receiver:
        """Routes from `webhooks:`, secrets read from the environment now (MissingSecret otherwise)."""
        import os

        env = os.environ if env is None else env
        routes = [TrackerRoute(r.tracker, r.type, r.path, r.secret(env)) for r in config.routes]
        return cls(routes, nudges, max_body_bytes=config.max_body_bytes, tolerance=config.tolerance)

    def _endpoint(self, route: TrackerRoute) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            return await self.handle(route, request)
        return endpoint

    async def handle(self, route: TrackerRoute, request: Request) -> Response:
        try:
            body = await self._read_body(request)
            headers = request.headers
            self._verify(route, headers, body)
            try:
                event = _PARSERS[route.type](route, headers, body)
            except _Reject:
                raise
            except Exception as error:  # any shape we did not foresee is the sender's fault, not a 500
                raise _malformed(f"unreadable payload ({type(error).__name__})") from None
        except _Reject as reject:
            self.counters.rejected += 1
            log.info("webhooks.rejected", tracker=route.tracker, status=reject.status, reason=reject.reason)
            return JSONResponse({"error": reject.reason}, status_code=reject.status)
        if event.item_id is None:
            self.counters.ignored += 1
            log.debug("webhooks.ignored", tracker=route.tracker, kind=event.kind)
            return Response(status_code=204)
        if not self.seen.add((route.tracker, event.delivery_id)):
            self.counters.duplicates += 1
            log.info("webhooks.duplicate", tracker=route.tracker, item=event.item_id, delivery=event.delivery_id)
            return JSONResponse({"duplicate": True, "item": event.item_id}, status_code=200)
        try:
            self.nudges.put_nowait((route.tracker, event.item_id))
        except queue.Full:  # the engine is far behind; the next poll sees the change anyway
            self.counters.queue_full += 1
            log.warning("webhooks.queue_full", tracker=route.tracker, item=event.item_id)
        self.counters.accepted += 1
        log.info("webhooks.accepted", tracker=route.tracker, item=event.item_id, kind=event.kind,
                 delivery=event.delivery_id)
        return JSONResponse({"accepted": True, "item": event.item_id}, status_code=202)

    async def _read_body(self, request: Request) -> bytes:
        """The raw body, read chunk by chunk and never more than the limit."""
        declared = request.headers.get("content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                raise _malformed("bad Content-Length")
            if int(declared) > self.max_body_bytes:
                raise _Reject(413, f"body over {self.max_body_bytes} bytes")
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body_bytes:
                raise _Reject(413, f"body over {self.max_body_bytes} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def _verify(self, route: TrackerRoute, headers: Mapping[str, str], body: bytes) -> None:
        if route.type == "zendesk":
            stamp = headers.get("x-zendesk-webhook-signature-timestamp")
            signature = headers.get("x-zendesk-webhook-signature")
            if not stamp or not signature:
                raise _Reject(401, "missing signature")
            if not self._fresh(stamp):
                raise _Reject(401, "stale or unreadable signature timestamp")
            ok = _same(zendesk_signature(route.secret, stamp, body), signature)
        elif route.type == "github":
            ok = _same(github_signature(route.secret, body), headers.get("x-hub-signature-256"))
        elif route.type == "jira":
            ok = _same(jira_signature(route.secret, body), headers.get("x-hub-signature"))
        else:
            given = headers.get("x-signature")
            ok = _same(clickup_signature(route.secret, body), given.lower() if given else None)
        if not ok:
            raise _Reject(401, "bad signature")

    def _fresh(self, stamp: str) -> bool:
        try:
            when = datetime.fromisoformat(stamp.strip())
        except ValueError:
            return False
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return abs((self.clock() - when).total_seconds()) <= self.tolerance


# -- payloads --------------------------------------------------------------------------------
def _json(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise _malformed("body is not JSON") from None
    if not isinstance(payload, dict):
        raise _malformed("body is not a JSON object")
    return payload


def _fallback_id(route: TrackerRoute, body: bytes) -> str:
    """A delivery without an id: the same body is the same delivery (a retry)."""
    return "sha256:" + hashlib.sha256(route.tracker.encode("utf-8") + b"\0" + body).hexdigest()


def _item(value: Any, what: str) -> str:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise _malformed(f"{what} missing or not an id")
    text = str(value)
    if not _ITEM_ID.match(text):
        raise _malformed(f"{what} is not an id")
    return text


def _header_id(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    return value.strip()[:200] if value and value.strip() else None


def _zendesk(route: TrackerRoute, headers: Mapping[str, str], body: bytes) -> _Event:
    payload = _json(body)
    kind = payload.get("type")
    event_id = payload.get("id") if kind is not None else None  # an event webhook's own id
    delivery = (str(event_id)[:200] if isinstance(event_id, str | int) and str(event_id) else None) \
        or _header_id(headers, "x-zendesk-webhook-invocation-id") or _fallback_id(route, body)
    if kind is not None:  # an event-subscription webhook: fixed schema
        if not isinstance(kind, str):
            raise _malformed("type is not a string")
        if not kind.startswith("zen:event-type:ticket."):
            return _Event(None, delivery, kind)
        detail = payload.get("detail")
        if isinstance(detail, dict) and "id" in detail:
            return _Event(_digits(detail["id"], "detail.id"), delivery, kind)
        match = _ZENDESK_SUBJECT.match(str(payload.get("subject", "")))
        if not match:
            raise _malformed("a ticket event without detail.id or subject zen:ticket:<id>")
        return _Event(match.group(1), delivery, kind)
    # A trigger/automation webhook: the admin's JSON body, conventionally {"ticket_id": ...}.
    ticket = payload.get("ticket")
    value = payload.get("ticket_id", ticket.get("id") if isinstance(ticket, dict) else None)
    if value is None:
        return _Event(None, delivery, "trigger")
    return _Event(_digits(value, "ticket_id"), delivery, "trigger")


def _digits(value: Any, what: str) -> str:
    text = _item(value, what)
    if not text.isdigit():
        raise _malformed(f"{what} is not a number")
    return text


_JIRA_EVENTS = ("jira:issue_created", "jira:issue_updated", "comment_created", "comment_updated", "comment_deleted")


def _jira(route: TrackerRoute, headers: Mapping[str, str], body: bytes) -> _Event:
    payload = _json(body)
    kind = payload.get("webhookEvent")
    if not isinstance(kind, str):
        raise _malformed("webhookEvent missing")
    delivery = _header_id(headers, "x-atlassian-webhook-identifier") or _fallback_id(route, body)
    if kind not in _JIRA_EVENTS:  # deletions included: there is nothing left to fetch
        return _Event(None, delivery, kind)
    issue = payload.get("issue")
    if not isinstance(issue, dict):
        raise _malformed("issue missing")
    return _Event(_digits(issue.get("id"), "issue.id"), delivery, kind)


def _github(route: TrackerRoute, headers: Mapping[str, str], body: bytes) -> _Event:
    kind = headers.get("x-github-event")
    if not kind:
        raise _malformed("X-GitHub-Event missing")
    if headers.get("content-type", "").split(";")[0].strip() == "application/x-www-form-urlencoded" \
            and body.startswith(b"payload="):
        try:  # a hook created with content_type form (GitHub's default): payload=<json>
            form = parse_qs(body.decode("utf-8"), strict_parsing=True)
        except (UnicodeDecodeError, ValueError):
            raise _malformed("form body unreadable") from None
        body = (form.get("payload") or [""])[0].encode("utf-8")
    payload = _json(body)
    delivery = _header_id(headers, "x-github-delivery") or _fallback_id(route, body)
    if kind not in ("issues", "issue_comment"):
        return _Event(None, delivery, kind)
    action = payload.get("action")
    issue, repo = payload.get("issue"), payload.get("repository")
    if not isinstance(issue, dict) or not isinstance(repo, dict):
        raise _malformed("issue or repository missing")
    if "pull_request" in issue or (kind == "issues" and action == "deleted"):
        return _Event(None, delivery, f"{kind}.{action}")
    number, full_name = issue.get("number"), repo.get("full_name")
    if isinstance(number, bool) or not isinstance(number, int) or number <= 0:
        raise _malformed("issue.number missing")
    if not isinstance(full_name, str) or not _GITHUB_REPO.match(full_name):
        raise _malformed("repository.full_name missing")
    return _Event(f"{full_name}#{number}", delivery, f"{kind}.{action}")


def _clickup(route: TrackerRoute, headers: Mapping[str, str], body: bytes) -> _Event:
    payload = _json(body)
    kind = payload.get("event")
    if not isinstance(kind, str):
        raise _malformed("event missing")
    history = payload.get("history_items")
    ids = [str(h.get("id")) for h in history if isinstance(h, dict)] if isinstance(history, list) else []
    # ClickUp retries send the same event with the same history items.
    delivery = (f"{payload.get('webhook_id')}:{kind}:{payload.get('task_id')}:{','.join(ids)}"[:400] if ids
                else _fallback_id(route, body))
    if not kind.startswith("task") or kind == "taskDeleted":
        return _Event(None, delivery, kind)
    return _Event(_item(payload.get("task_id"), "task_id"), delivery, kind)


_PARSERS: dict[str, Callable[[TrackerRoute, Mapping[str, str], bytes], _Event]] = {
    "zendesk": _zendesk, "jira": _jira, "github": _github, "clickup": _clickup,
}


# -- the server ------------------------------------------------------------------------------
class WebhookServer(BackgroundServer):
    """The receiver on uvicorn in a background thread: `start()` returns once it listens."""

    name = "webhooks"

    def __init__(self, receiver: Receiver, host: str = "127.0.0.1", port: int = 8900) -> None:
        super().__init__(receiver.app, host, port)
        self.receiver = receiver

    def listening(self) -> None:
        log.info("webhooks.listening", host=self.host, port=self.port,
                 routes=[f"{r.tracker}={r.path}" for r in self.receiver.routes])
