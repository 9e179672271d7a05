"""Bad input: fuzzed webhook requests against a real receiver, and mutated config/mapping files
through `ticketbridge validate`.

Webhooks (1,000 requests, hypothesis, derandomized): a real `WebhookServer` on a loopback port,
configured from a `webhooks:` section for all four trackers (zendesk, jira, github, clickup) with the
signing secrets read from the environment. 800 hostile requests (garbage, truncated and mutated real
payloads, random headers, missing, wrong, mangled or misplaced signatures, stale Zendesk timestamps,
oversize and chunked bodies, wrong content types and methods, unknown paths) must each get a 4xx and
queue nothing; 200 requests signed on purpose with the right secret but a malformed body must get
200/202/204/400 (413 when oversize), never a 5xx, and queue only well-formed ids. No request may
hang (client timeout). Afterwards a valid signed delivery on every route still gets 202 and
reaches the nudge queue.

Mapping files (200 mutations, seeded): the shipped mapping files and a config naming all of them
are mutated one edit at a time (a line deleted, a key duplicated, indentation changed, a wrong
type, an unknown key or status, a truncated, empty, binary or non-UTF-8 file, a tab, an unbalanced
quote or bracket, an invalid regex, a wrong enum value, ...). `ticketbridge validate` must exit 2
with a `file:line:column:` message naming the mutated file, and never print a traceback. A
mutation that leaves the files valid (exit 0) is counted apart and replaced by the next one.

Run as a script (`python -m tests.reliability.test_bad_input`) for the figures.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import io
import json
import os
import queue
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from ticketbridge import cli
from ticketbridge.sync.config import load_config
from ticketbridge.sync.webhooks import (
    Receiver,
    WebhookServer,
    clickup_signature,
    github_signature,
    jira_signature,
    zendesk_signature,
)

REPO = Path(__file__).resolve().parents[2]
MAPPINGS = REPO / "mappings"
FIXTURES = REPO.parent / "shared" / "reference" / "fixtures"
TRACKERS = ("zendesk", "jira", "github", "clickup")
SECRET_ENV = {name: f"{name.upper()}_WEBHOOK_SECRET" for name in TRACKERS}
SECRETS = {name: f"{name}-fuzz-signing-secret" for name in TRACKERS}
WRONG_SECRET = "not-the-signing-secret"
LIMIT = 64 * 1024  # max_body_bytes of the fuzzed receiver: oversize bodies stay cheap to send
HOSTILE_REQUESTS = 800
SIGNED_REQUESTS = 200
MUTATIONS = 200
SUBPROCESS_MUTATIONS = 5
TIMEOUT = 10.0  # a request without an answer in this long is a hang
RESET = 0  # "status" of an oversize upload whose 413 was lost to the connection being closed

CONFIG = """\
store:
  url: sqlite:///ticketbridge.db
trackers:
  zendesk:
    type: zendesk
    base_url: http://127.0.0.1:8801
    auth: {{email_env: ZENDESK_EMAIL, token_env: ZENDESK_API_TOKEN}}
    poll_interval: 30s
  jira:
    type: jira
    base_url: http://127.0.0.1:8802
    auth: {{email_env: JIRA_EMAIL, token_env: JIRA_API_TOKEN}}
    poll_interval: 30s
    statuses: [To Do, In Progress, In Review, Done]
    priorities: [Highest, High, Medium, Low, Lowest]
  github:
    type: github
    base_url: http://127.0.0.1:8803
    auth: {{token_env: GITHUB_TOKEN}}
    repos: [acme/app]
  clickup:
    type: clickup
    base_url: http://127.0.0.1:8805
    auth: {{token_env: CLICKUP_TOKEN}}
    list_id: "901500000301"
    marker_field: 5f0e0c7a-0000-4000-8000-000000000001
    statuses: [to do, in progress, in review, complete]
    priorities: [urgent, high, normal, low]
flows:
  - name: zendesk-jira
    mapping: mappings/zendesk-jira.yaml
  - name: jira-clickup
    mapping: mappings/jira-clickup.yaml
  - name: zendesk-github
    mapping: mappings/zendesk-github.yaml
sla:
  policy: mappings/policy.yaml
paging:
  events_url: http://127.0.0.1:8804
  routing_key_env: PAGERDUTY_ROUTING_KEY
sync:
  lookback: 2m
  batch_size: 100
log:
  format: json
webhooks:
  listen: 127.0.0.1:{port}
  max_body_bytes: {limit}
  tolerance: 5m
  trackers:
    zendesk: {{path: /hooks/zendesk, secret_env: ZENDESK_WEBHOOK_SECRET}}
    jira: {{path: /hooks/jira, secret_env: JIRA_WEBHOOK_SECRET}}
    github: {{path: /hooks/github, secret_env: GITHUB_WEBHOOK_SECRET}}
    clickup: {{secret_env: CLICKUP_WEBHOOK_SECRET}}
"""
MAPPING_FILES = ("zendesk-jira.yaml", "zendesk-github.yaml", "jira-clickup.yaml", "policy.yaml")


def write_tree(root: Path, *, port: int = 8900, limit: int = 1024 * 1024) -> Path:
    """config.yaml naming every shipped mapping file (copied to root/mappings); returns its path."""
    (root / "mappings").mkdir(parents=True, exist_ok=True)
    for name in MAPPING_FILES:
        shutil.copyfile(MAPPINGS / name, root / "mappings" / name)
    config = root / "config.yaml"
    config.write_text(CONFIG.format(port=port, limit=limit), encoding="utf-8")
    return config


# == webhooks ===================================================================================

# -- real payload shapes: the recorded deliveries when ../shared is there, the tests' own always --
def _builtin_payloads() -> dict[str, list[dict[str, Any]]]:
    return {
        "zendesk": [
            {"type": "zen:event-type:ticket.status_changed", "account_id": 12514403, "id": "2b24ef10-0001",
             "time": "2026-11-20T09:59:58Z", "zendesk_event_version": "2022-11-06", "subject": "zen:ticket:35436",
             "detail": {"id": "35436", "status": "OPEN"}, "event": {"current": "OPEN", "previous": "NEW"}},
            {"type": "zen:event-type:ticket.comment_added", "id": "2b24ef10-0002", "subject": "zen:ticket:77"},
            {"ticket_id": "35437", "status": "open"},
        ],
        "jira": [
            {"timestamp": 1536083559131, "webhookEvent": "jira:issue_updated",
             "issue_event_type_name": "issue_generic", "user": {"accountId": "5b10ac8d82e05b22cc7d4ef5"},
             "issue": {"id": "10002", "key": "ENG-7", "fields": {"summary": "Printer on fire"}},
             "changelog": {"id": "1", "items": []}},
        ],
        "github": [
            {"action": "opened", "issue": {"id": 1_000_012, "number": 12, "title": "Crash on export", "state": "open"},
             "repository": {"id": 1, "full_name": "acme/app"}, "sender": {"login": "octocat"}},
        ],
        "clickup": [
            {"event": "taskStatusUpdated", "task_id": "1vj37mc", "webhook_id": "7fa3ec74-69a8-4530-a251-8a13730bd204",
             "history_items": [{"id": "2800763136717140857", "type": 1, "date": "1642734631523", "field": "status",
                                "after": {"status": "to do"}}]},
        ],
    }


def load_payloads() -> dict[str, list[bytes]]:
    payloads = {name: [json.dumps(p).encode() for p in items] for name, items in _builtin_payloads().items()}
    for name in TRACKERS:
        folder = FIXTURES / name
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("webhook_*.json")):
            if "signature_test_vector" not in path.name:
                payloads[name].append(path.read_bytes())
    return payloads


PAYLOADS = load_payloads()
ALL_PAYLOADS = [body for name in TRACKERS for body in PAYLOADS[name]]
GITHUB_EVENTS = ["issues", "issue_comment", "ping", "pull_request", "", "x" * 300]


# -- requests ------------------------------------------------------------------------------------
@dataclass
class Req:
    kind: str  # what the strategy meant to send (for the figures)
    method: str
    path: str
    body: bytes
    headers: dict[str, str | bytes] = field(default_factory=dict)
    chunked: bool = False

    @property
    def oversize(self) -> bool:
        declared = self.headers.get("Content-Length")
        return len(self.body) > LIMIT or (isinstance(declared, str) and declared.isdigit() and int(declared) > LIMIT)

    def __repr__(self) -> str:  # hypothesis prints failing examples: keep them short
        return (f"Req({self.kind}, {self.method} {self.path}, {len(self.body)} bytes {self.body[:80]!r}, "
                f"headers={ {k: (v[:60] if isinstance(v, str | bytes) else v) for k, v in self.headers.items()} }, "
                f"chunked={self.chunked})")


def _stamp(offset: float = 0.0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=offset)).strftime("%Y-%m-%dT%H:%M:%SZ")


def signed_headers(tracker: str, body: bytes, secret: str | None = None, *, offset: float = 0.0,
                   event: str = "issues") -> dict[str, str | bytes]:
    """The headers the tracker itself would send for `body` (signed with `secret`)."""
    key = SECRETS[tracker] if secret is None else secret
    if tracker == "zendesk":
        ts = _stamp(offset)
        return {"Content-Type": "application/json", "X-Zendesk-Webhook-Signature-Timestamp": ts,
                "X-Zendesk-Webhook-Signature": zendesk_signature(key, ts, body)}
    if tracker == "jira":
        return {"Content-Type": "application/json", "X-Atlassian-Webhook-Identifier": "fuzz-jira",
                "X-Hub-Signature": jira_signature(key, body)}
    if tracker == "github":
        return {"Content-Type": "application/json", "X-GitHub-Event": event, "X-GitHub-Delivery": "fuzz-gh",
                "X-Hub-Signature-256": github_signature(key, body)}
    return {"Content-Type": "application/json", "X-Signature": clickup_signature(key, body)}


SIGNATURE_HEADERS = {"zendesk": "X-Zendesk-Webhook-Signature", "jira": "X-Hub-Signature",
                     "github": "X-Hub-Signature-256", "clickup": "X-Signature"}


def _flip(text: str, index: int) -> str:
    """`text` with one character replaced by one that differs even case-insensitively."""
    if not text:
        return "0"
    i = index % len(text)
    ch = text[i].lower()
    new = "0" if ch not in "0" else "1"
    if ch.isalpha() or ch.isdigit():
        new = "1" if ch != "1" else "2"
    return text[:i] + new + text[i + 1:]


# -- strategies ----------------------------------------------------------------------------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=15)
header_value_bytes = st.binary(max_size=80).map(
    lambda raw: bytes(b for b in raw if b == 9 or 32 <= b < 127 or b >= 128).lstrip(b" \t"))
header_names = st.sampled_from([
    "Content-Type", "X-Signature", "X-Hub-Signature", "X-Hub-Signature-256", "X-GitHub-Event",
    "X-GitHub-Delivery", "X-Atlassian-Webhook-Identifier", "X-Zendesk-Webhook-Signature",
    "X-Zendesk-Webhook-Signature-Timestamp", "X-Zendesk-Webhook-Invocation-Id", "User-Agent", "Accept",
    "Content-Encoding", "Expect", "X-Forwarded-For",
]) | st.from_regex(r"\AX-[A-Za-z0-9-]{1,20}\Z")
content_types = st.sampled_from([
    "application/json", "application/json; charset=utf-8", "application/x-www-form-urlencoded", "text/plain",
    "multipart/form-data; boundary=xyz", "application/xml", "", "garbage/;;;", "application/json; charset=latin-1",
])


@st.composite
def bodies(draw: st.DrawFn, tracker: str) -> tuple[str, bytes]:
    """(how it was made, body): garbage, random JSON, real payloads truncated or mutated, oversize."""
    pool = PAYLOADS.get(tracker) or ALL_PAYLOADS
    how = draw(st.sampled_from(["garbage", "json", "truncated", "mutated", "json-mutated", "other-tracker",
                                "empty", "oversize", "form", "valid-shape"]))
    if how == "garbage":
        return how, draw(st.binary(max_size=400))
    if how == "json":
        return how, json.dumps(draw(json_values)).encode()
    if how == "empty":
        return how, b""
    if how == "oversize":
        size = draw(st.integers(LIMIT + 1, LIMIT * 3))
        return how, (draw(st.sampled_from(pool)) + b" " * size)[: size]
    original = draw(st.sampled_from(pool))
    if how == "truncated":
        return how, original[: draw(st.integers(0, max(0, len(original) - 1)))]
    if how == "mutated":
        data = bytearray(original)
        for _ in range(draw(st.integers(1, 8))):
            op = draw(st.sampled_from(["flip", "insert", "delete"]))
            at = draw(st.integers(0, max(0, len(data) - 1)))
            if op == "flip" and data:
                data[at] = draw(st.integers(0, 255))
            elif op == "insert":
                data[at:at] = draw(st.binary(min_size=1, max_size=8))
            elif data:
                del data[at: at + draw(st.integers(1, 16))]
        return how, bytes(data)
    if how == "json-mutated":
        payload = json.loads(original)
        node = payload
        for _ in range(draw(st.integers(0, 3))):  # walk down a little, then replace or delete
            keys = list(node) if isinstance(node, dict) else []
            if not keys or not isinstance(node[keys[0]], dict):
                break
            child = node[draw(st.sampled_from(keys))]
            if not isinstance(child, dict) or not child:
                break
            node = child
        if isinstance(node, dict) and node:
            key = draw(st.sampled_from(sorted(node)))
            if draw(st.booleans()):
                del node[key]
            else:
                node[key] = draw(json_values)
        return how, json.dumps(payload).encode()
    if how == "other-tracker":
        return how, draw(st.sampled_from(ALL_PAYLOADS))
    if how == "form":
        return how, b"payload=" + quote(original.decode("utf-8", "replace")).encode()
    return how, original  # valid-shape: a real payload, unchanged


@st.composite
def hostile_requests(draw: st.DrawFn) -> Req:
    """A request the receiver must refuse with a 4xx: it never carries a valid signature for its route
    (or it is not a POST, or goes to an unknown path, or is oversize)."""
    tracker = draw(st.sampled_from(TRACKERS))
    path = f"/hooks/{tracker}"
    how, body = draw(bodies(tracker))
    headers: dict[str, str | bytes] = {}
    signing = draw(st.sampled_from(["none", "random", "wrong-secret", "other-body", "mangled", "other-scheme",
                                    "stale", "future", "bad-timestamp", "valid-but-oversize", "wrong-method",
                                    "unknown-path", "random-headers", "lying-length"]))
    kind = f"{signing}/{how}"
    method = "POST"
    if signing == "random":
        headers[SIGNATURE_HEADERS[tracker]] = draw(header_value_bytes)
        if tracker == "zendesk":
            headers["X-Zendesk-Webhook-Signature-Timestamp"] = _stamp()
    elif signing == "wrong-secret":
        headers.update(signed_headers(tracker, body, WRONG_SECRET))
    elif signing == "other-body":  # a real signature, but of another body than the one sent
        other = body + draw(st.binary(min_size=1, max_size=4)) if draw(st.booleans()) or not body else body[:-1]
        headers.update(signed_headers(tracker, other))
    elif signing == "mangled":
        headers.update(signed_headers(tracker, body))
        name = SIGNATURE_HEADERS[tracker]
        value = str(headers[name])
        headers[name] = draw(st.sampled_from([
            _flip(value, draw(st.integers(0, 200))), value[: draw(st.integers(0, max(0, len(value) - 1)))],
            value.replace("sha256=", "sha1=") if "sha256=" in value else "sha256=" + value,
            value + "00", base64.b64encode(value.encode()).decode(),
        ]))
    elif signing == "other-scheme":  # the right secret, but another tracker's way of signing
        other = draw(st.sampled_from([t for t in TRACKERS if t != tracker]))
        headers.update(signed_headers(other, body, SECRETS[tracker]))
        if tracker == "github" and other == "jira":  # same hex form; only the header name differs
            headers["X-Hub-Signature"] = headers.pop("X-Hub-Signature", "")
        if {tracker, other} == {"jira", "github"}:
            headers.pop(SIGNATURE_HEADERS[tracker], None)
    elif signing in ("stale", "future", "bad-timestamp"):
        if tracker != "zendesk":
            headers.update(signed_headers(tracker, body, WRONG_SECRET))
        else:
            offset = draw(st.floats(400, 10 * 365 * 86400))
            headers.update(signed_headers(tracker, body, offset=-offset if signing == "stale" else offset))
            if signing == "bad-timestamp":  # a signature over an unreadable timestamp
                stamp = draw(st.sampled_from(["yesterday", "", " ", "2026-13-45T00:00:00Z", "0", "9" * 40,
                                              "2026-11-20T10:00:00+99:00", "\u00e9t\u00e9"]))
                headers["X-Zendesk-Webhook-Signature-Timestamp"] = stamp.encode("latin-1")
                headers["X-Zendesk-Webhook-Signature"] = zendesk_signature(
                    SECRETS[tracker], stamp, body)
    elif signing == "valid-but-oversize":  # correctly signed, but over the limit: 413 before anything
        size = draw(st.integers(LIMIT + 1, LIMIT * 2))
        body = (body + b" " * size)[:size]
        headers.update(signed_headers(tracker, body))
    elif signing == "wrong-method":
        headers.update(signed_headers(tracker, body))
        method = draw(st.sampled_from(["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]))
    elif signing == "unknown-path":
        headers.update(signed_headers(tracker, body))
        path = draw(st.sampled_from(["/", "/hooks", "/hooks/", f"/hooks/{tracker}/", "/hooks/pagerduty",
                                     f"/hooks/{tracker.upper()}", "/hooks/../hooks/jira", "/%00", "/hooks/jira?x=1#",
                                     "/" + "a" * 2000]))
        if path == "/hooks/jira?x=1#":
            path = "/hooks/unknown?x=1"
    elif signing == "random-headers":
        headers.update(draw(st.dictionaries(header_names, header_value_bytes, max_size=6)))
        for name in SIGNATURE_HEADERS.values():  # a random value may not happen to be a signature
            if name in headers and name == SIGNATURE_HEADERS[tracker]:
                headers[name] = b"sha256=" + b"0" * 64
    elif signing == "lying-length":  # Content-Length claims more than the limit
        headers.update(signed_headers(tracker, body))
        headers["Content-Length"] = str(draw(st.integers(LIMIT + 1, 10**12)))
        body = body[:100]
    # Extra noise on top: a content type, random extra headers (never a signature header).
    if draw(st.booleans()):
        headers["Content-Type"] = draw(content_types)
    for name, value in draw(st.dictionaries(header_names, header_value_bytes, max_size=3)).items():
        if name not in SIGNATURE_HEADERS.values() and not name.lower().startswith("x-zendesk-webhook-signature"):
            headers.setdefault(name, value)
    if tracker == "github" and "X-GitHub-Event" not in headers and draw(st.booleans()):
        headers["X-GitHub-Event"] = draw(st.sampled_from(GITHUB_EVENTS))
    chunked = "Content-Length" not in headers and draw(st.integers(0, 9)) == 0
    return Req(kind, method, path, body, headers, chunked)


@st.composite
def signed_requests(draw: st.DrawFn) -> Req:
    """A request signed on purpose with the right secret, over a malformed or odd body."""
    tracker = draw(st.sampled_from(TRACKERS))
    how, body = draw(bodies(tracker))
    event = draw(st.sampled_from(GITHUB_EVENTS[:-1]))
    headers = signed_headers(tracker, body, event=event or "issues")
    if tracker == "github" and not event:
        del headers["X-GitHub-Event"]
    if how == "form" or draw(st.integers(0, 4)) == 0:
        headers["Content-Type"] = draw(content_types)
    if draw(st.booleans()):  # delivery ids: random, so duplicates and fresh ones both happen
        for name in ("X-GitHub-Delivery", "X-Atlassian-Webhook-Identifier", "X-Zendesk-Webhook-Invocation-Id"):
            headers[name] = draw(header_value_bytes)
    chunked = draw(st.integers(0, 9)) == 0
    return Req(f"signed/{how}", "POST", f"/hooks/{tracker}", body, headers, chunked)


# -- the server and a raw HTTP client ---------------------------------------------------------------
@dataclass
class Fuzzed:
    server: WebhookServer
    nudges: queue.Queue[tuple[str, str]]
    statuses: Counter[int] = field(default_factory=Counter)
    kinds: Counter[str] = field(default_factory=Counter)
    requests: int = 0
    slowest: float = 0.0
    queued: list[tuple[str, str]] = field(default_factory=list)

    def send(self, req: Req) -> int:
        """One request on its own connection; the status, or an AssertionError on a hang or a reset."""
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=TIMEOUT)
        started = time.monotonic()
        try:
            conn.putrequest(req.method, req.path, skip_accept_encoding=True)
            for name, value in req.headers.items():
                conn.putheader(name, value)
            if req.chunked:
                conn.putheader("Transfer-Encoding", "chunked")
            elif "Content-Length" not in req.headers:
                conn.putheader("Content-Length", str(len(req.body)))
            conn.endheaders()
            try:
                if req.chunked:
                    for at in range(0, len(req.body), 4096):
                        piece = req.body[at: at + 4096]
                        conn.send(f"{len(piece):X}\r\n".encode() + piece + b"\r\n")
                    conn.send(b"0\r\n\r\n")
                else:
                    conn.send(req.body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server answered (413) and closed before the whole body was sent
            try:
                answer = conn.getresponse()
                answer.read()
                status = int(answer.status)
            except (ConnectionResetError, http.client.RemoteDisconnected):
                # Refusing an oversize upload, a server may close before the client has sent it all,
                # and the kernel may then drop the answer: only acceptable for a body over the limit.
                if not req.oversize:
                    raise
                status = RESET
        except TimeoutError as error:
            raise AssertionError(f"no answer within {TIMEOUT}s (a hang): {req!r}") from error
        finally:
            conn.close()
        self.slowest = max(self.slowest, time.monotonic() - started)
        self.requests += 1
        self.statuses[status] += 1
        self.kinds[req.kind.split("/")[0]] += 1
        return status

    def drain(self) -> list[tuple[str, str]]:
        out = []
        while True:
            try:
                out.append(self.nudges.get_nowait())
            except queue.Empty:
                self.queued += out
                return out


@contextlib.contextmanager
def fuzz_server() -> Iterator[Fuzzed]:
    """The receiver as `ticketbridge run` builds it: from the config's `webhooks:` and the environment."""
    with tempfile.TemporaryDirectory() as tmp:
        config = load_config(write_tree(Path(tmp), port=0, limit=LIMIT))
        assert config.webhooks is not None and len(config.webhooks.routes) == len(TRACKERS)
        env = {SECRET_ENV[name]: SECRETS[name] for name in TRACKERS}
        nudges: queue.Queue[tuple[str, str]] = queue.Queue()
        receiver = Receiver.from_config(config.webhooks, nudges, env=env)
        with WebhookServer(receiver, config.webhooks.host, config.webhooks.port) as server:
            yield Fuzzed(server, nudges)


ITEM_ID = re.compile(r"^[A-Za-z0-9_.:/#-]{1,230}$")
FUZZ_SETTINGS = settings(deadline=None, derandomize=True, database=None, phases=[Phase.generate],
                         suppress_health_check=list(HealthCheck), print_blob=False)


def fuzz_webhooks(fuzzed: Fuzzed) -> None:
    """The 1,000 requests, then a valid delivery on every route; raises AssertionError on a violation."""

    @settings(FUZZ_SETTINGS, max_examples=HOSTILE_REQUESTS)
    @given(req=hostile_requests())
    def hostile(req: Req) -> None:
        status = fuzzed.send(req)
        assert 400 <= status < 500 or (status == RESET and req.oversize), (status, req)
        queued = fuzzed.drain()
        assert not queued, (queued, req)

    @settings(FUZZ_SETTINGS, max_examples=SIGNED_REQUESTS)
    @given(req=signed_requests())
    def signed(req: Req) -> None:
        status = fuzzed.send(req)
        allowed = {200, 202, 204, 400} | ({413, RESET} if req.oversize else set())
        assert status in allowed, (status, req)
        queued = fuzzed.drain()
        assert len(queued) == (1 if status == 202 else 0), (status, queued, req)
        for tracker, item in queued:
            assert req.path == f"/hooks/{tracker}" and ITEM_ID.match(item), (tracker, item, req)

    before = fuzzed.requests
    hostile()
    assert fuzzed.requests - before == HOSTILE_REQUESTS, fuzzed.requests
    signed()
    assert fuzzed.requests - before == HOSTILE_REQUESTS + SIGNED_REQUESTS, fuzzed.requests


def still_serving(fuzzed: Fuzzed) -> None:
    """After the fuzzing: a valid, never-seen delivery on each route is 202 and reaches the queue."""
    fuzzed.drain()
    expected = {"zendesk": "990001", "jira": "990002", "github": "acme/app#990003", "clickup": "990004x"}
    bodies = {
        "zendesk": {"type": "zen:event-type:ticket.status_changed", "id": "after-fuzz-zd",
                    "subject": "zen:ticket:990001", "detail": {"id": "990001"}},
        "jira": {"webhookEvent": "jira:issue_updated", "issue": {"id": "990002", "key": "ENG-990002"}},
        "github": {"action": "closed", "issue": {"number": 990003}, "repository": {"full_name": "acme/app"}},
        "clickup": {"event": "taskStatusUpdated", "task_id": "990004x", "webhook_id": "after-fuzz",
                    "history_items": [{"id": "after-fuzz-1"}]},
    }
    for tracker in TRACKERS:
        body = json.dumps(bodies[tracker]).encode()
        headers = signed_headers(tracker, body)
        headers.update({"X-GitHub-Delivery": "after-fuzz-gh", "X-Atlassian-Webhook-Identifier": "after-fuzz-jira"})
        status = fuzzed.send(Req("after", "POST", f"/hooks/{tracker}", body, headers))
        assert status == 202, (tracker, status)
    assert fuzzed.drain() == [(t, expected[t]) for t in TRACKERS]


def test_1000_fuzzed_webhook_requests_get_only_4xx_and_the_receiver_keeps_serving() -> None:
    with fuzz_server() as fuzzed:
        fuzz_webhooks(fuzzed)
        assert fuzzed.requests == HOSTILE_REQUESTS + SIGNED_REQUESTS == 1000
        assert not any(status >= 500 for status in fuzzed.statuses), fuzzed.statuses
        assert fuzzed.statuses[RESET] <= fuzzed.statuses[413], fuzzed.statuses  # a rare race, never the rule
        # The strategies really reach the answers they aim at, not just 401 everywhere.
        assert {400, 401, 404, 405, 413}.issubset(fuzzed.statuses), fuzzed.statuses
        assert {202, 204}.issubset(fuzzed.statuses), fuzzed.statuses
        still_serving(fuzzed)
        assert fuzzed.server.receiver.counters.accepted >= 4


# == mapping files =================================================================================

@dataclass(frozen=True)
class Mutation:
    file: str  # relative to the tree: config.yaml or mappings/<name>
    operator: str
    detail: str
    data: bytes


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def _content_lines(lines: list[str]) -> list[int]:
    return [i for i, line in enumerate(lines) if line.strip() and not line.lstrip().startswith("#")]


def _key_lines(lines: list[str]) -> list[int]:
    return [i for i in _content_lines(lines) if re.match(r"^\s*(- )?[A-Za-z_][\w-]*:", lines[i])]


def _value_lines(lines: list[str]) -> list[int]:
    return [i for i in _key_lines(lines) if re.match(r"^\s*(- )?[A-Za-z_][\w-]*:\s*[^\s#]", lines[i])]


def _set_value(line: str, value: str) -> str:
    head = re.match(r"^(\s*(- )?[A-Za-z_][\w-]*:)", line)
    assert head
    return f"{head.group(1)} {value}\n"


MutationOp = Callable[[random.Random, str], tuple[str, str | bytes] | None]


def _delete_line(rng: random.Random, text: str) -> tuple[str, str | bytes] | None:
    lines = _lines(text)
    i = rng.choice(_content_lines(lines))
    return f"line {i + 1}", "".join(lines[:i] + lines[i + 1:])


def _duplicate_key(rng: random.Random, text: str) -> tuple[str, str | bytes] | None:
    lines = _lines(text)
    candidates = [i for i in _value_lines(lines) if not lines[i].lstrip().startswith("- ")]
    i = rng.choice(candidates)
    return f"line {i + 1}", "".join([*lines[:i + 1], lines[i], *lines[i + 1:]])


def _indent(rng: random.Random, text: str) -> tuple[str, str | bytes] | None:
    lines = _lines(text)
    i = rng.choice(_content_lines(lines))
    shift = rng.choice([-4, -3, -2, -1, 1, 2, 3, 5])
    line = lines[i]
    lines[i] = line[min(-shift, len(line) - len(line.lstrip(" "))):] if shift < 0 else " " * shift + line
    return f"line {i + 1} by {shift}", "".join(lines)


WRONG_VALUES = ["[1, 2, 3]", "{a: 1}", "12345", "true", "~", "-7", "1.5e400", "2024-13-45", '""', "[]", "{}",
                "!!binary aGVsbG8=", "0x1F", "*undefined_alias", "&anchor", "!!python/object:os.system {}",
                "'" + "x" * 5000 + "'"]


def _wrong_value(rng: random.Random, text: str) -> tuple[str, str | bytes] | None:
    lines = _lines(text)
    i = rng.choice(_value_lines(lines))
    value = rng.choice(WRONG_VALUES)
    lines[i] = _set_value(lines[i], value)
    return f"line {i + 1} = {value[:20]}", "".join(lines)


def _unknown_key(rng: random.Random, text: str) -> tuple[str, str | bytes] | None:
    lines = _lines(text)
    i = rng.choice(_key_lines(lines))
    indent = re.match(r"^(\s*)(- )?", lines[i])
    assert indent
    pad = indent.group(1) + ("  " if indent.group(2) else "")
    key = rng.choice(["bogus_key", "statuss", "direction_", "Name", "secret", "password"])
    return f"after line {i + 1}: {key}", "".join([*lines[:i + 1], f"{pad}{key}: 1\n", *lines[i + 1:]])


STATUS_WORDS = ["new", "open", "pending", "hold", "solved", "closed", "To Do", "In Progress", "In Review", "Done",
                "to do", "in progress", "complete", "urgent", "high", "normal", "low", "Highest", "Medium", "Lowest"]


def _unknown_status(rng: random.Random, text: str) -> tuple[str, str | bytes] | None:
    lines = _lines(text)
    pattern = re.compile(r"(?<![\w-])(" + "|".join(re.escape(w) for w in STATUS_WORDS) + r")(?![\w-])")
    hits = [i for i in _content_lines(lines) if pattern.search(lines[i].split("#")[0])]
    if not hits:
        return None
    i = rng.choice(hits)
    found = pattern.findall(lines[i].split("#")[0])
    word = rng.choice(found)
    lines[i] = lines[i].replace(word, rng.choice(["Nonexistent", "Wont Fix", "OPEN!"]), 1)
    return f"line {i + 1}: {word}", "".join(lines)


def _truncate(rng: random.Random, text: str) -> tuple[str, str | bytes] | None:
    raw = text.encode()
    at = rng.randrange(1, len(raw))
    return f"at byte {at}", raw[:at]


def _tab(rng: random.Random, text: str) -> tuple[str, str | bytes] | None:
    lines = _lines(text)
    i = rng.choice(_content_lines(lines))
    stripped = lines[i].lstrip(" ")
    lines[i] = lines[i][: len(lines[i]) - len(stripped)] + "\t" + stripped
    return f"line {i + 1}", "".join(lines)


def _unbalanced(rng: random.Random, text: str) -> tuple[str, str | bytes] | None:
    lines = _lines(text)
    i = rng.choice(_value_lines(lines))
    opener = rng.choice(['"', "'", "[", "{", '"\\', "]", "}"])
    head, _, rest = lines[i].partition(":")
    lines[i] = f"{head}: {opener}{rest.strip()}\n"
    return f"line {i + 1} {opener!r}", "".join(lines)


def _invalid_regex(rng: random.Random, text: str) -> tuple[str, str | bytes] | None:
    lines = _lines(text)
    i = rng.choice(_value_lines(lines))
    lines[i] = _set_value(lines[i], rng.choice(["'([a-z'", "'*+?'", "'(?P<x'", "'[z-a]'", "'\\\\'"]))
    return f"line {i + 1}", "".join(lines)


ENUM_KEYS = ("direction", "conflict", "type", "format", "values", "kind", "on", "metric", "level", "version",
             "left_to_right", "right_to_left", "redact", "scrub", "mode", "visibility")


def _wrong_enum(rng: random.Random, text: str) -> tuple[str, str | bytes] | None:
    lines = _lines(text)
    hits = [i for i in _value_lines(lines) if re.match(r"^\s*(- )?(" + "|".join(ENUM_KEYS) + r"):", lines[i])]
    if not hits:
        return None
    i = rng.choice(hits)
    lines[i] = _set_value(lines[i], rng.choice(["sideways", "BOTH", "maybe", "9", "[both]"]))
    return f"line {i + 1}", "".join(lines)


def _empty(rng: random.Random, text: str) -> tuple[str, str | bytes] | None:
    return "empty", rng.choice(["", "\n", "# only a comment\n", "---\n", "~\n", "[]\n", "just text\n"])


def _binary(rng: random.Random, text: str) -> tuple[str, str | bytes] | None:
    return "binary", bytes(rng.randrange(256) for _ in range(rng.randrange(1, 600)))


def _not_utf8(rng: random.Random, text: str) -> tuple[str, str | bytes] | None:
    raw = bytearray(text.encode())
    at = rng.randrange(len(raw))
    raw[at:at] = rng.choice([b"\xff", b"\xfe\xff", b"\xc3", b"\xe9t\xe9", b"\x80\x80"])
    return f"at byte {at}", bytes(raw)


def _control_char(rng: random.Random, text: str) -> tuple[str, str | bytes] | None:
    at = rng.randrange(len(text))
    return f"at {at}", text[:at] + rng.choice(["\x00", "\x07", "\x1b", "\ufeff", "\x85"]) + text[at:]


def _deep_nesting(rng: random.Random, text: str) -> tuple[str, str | bytes] | None:
    lines = _lines(text)
    i = rng.choice(_value_lines(lines))
    depth = rng.choice([50, 200, 5000])
    lines[i] = _set_value(lines[i], "[" * depth + "]" * depth)
    return f"line {i + 1} depth {depth}", "".join(lines)


def _alias_bomb(rng: random.Random, text: str) -> tuple[str, str | bytes] | None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + n)}: &{chr(98 + n)} [{', '.join(['*' + chr(97 + n)] * 10)}]\n" for n in range(8))
    return "billion laughs", bomb + text


def _swap_lines(rng: random.Random, text: str) -> tuple[str, str | bytes] | None:
    lines = _lines(text)
    content = _content_lines(lines)
    i = rng.choice(content[:-1])
    j = content[content.index(i) + 1]
    lines[i], lines[j] = lines[j], lines[i]
    return f"lines {i + 1}<->{j + 1}", "".join(lines)


def _list_for_mapping(rng: random.Random, text: str) -> tuple[str, str | bytes] | None:
    lines = _lines(text)
    i = rng.choice(_key_lines(lines))
    head = re.match(r"^(\s*)((- )?)", lines[i])
    assert head
    lines[i] = head.group(1) + head.group(2) + "- " + lines[i][head.end():]
    return f"line {i + 1}", "".join(lines)


OPERATORS: dict[str, MutationOp] = {
    "delete-line": _delete_line, "duplicate-key": _duplicate_key, "indentation": _indent,
    "wrong-type": _wrong_value, "unknown-key": _unknown_key, "unknown-status": _unknown_status,
    "truncate": _truncate, "tab": _tab, "unbalanced": _unbalanced, "invalid-regex": _invalid_regex,
    "wrong-enum": _wrong_enum, "empty": _empty, "binary": _binary, "not-utf8": _not_utf8,
    "control-char": _control_char, "deep-nesting": _deep_nesting, "alias-bomb": _alias_bomb,
    "swap-lines": _swap_lines, "list-for-mapping": _list_for_mapping,
}
MUTATED_FILES = ("config.yaml", *(f"mappings/{name}" for name in MAPPING_FILES))


def mutations(originals: dict[str, str], seed: int = 20261202) -> Iterator[Mutation]:
    """An endless, deterministic stream of one-edit mutations of the tree's files."""
    rng = random.Random(seed)
    while True:
        file = rng.choice(MUTATED_FILES)
        name = rng.choice(sorted(OPERATORS))
        made = OPERATORS[name](rng, originals[file])
        if made is None:
            continue
        detail, data = made
        raw = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data
        if raw != originals[file].encode():
            yield Mutation(file, name, detail, raw)


@dataclass
class Outcome:
    code: int
    out: str
    err: str


def validate_in_process(config: Path) -> Outcome:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(["validate", "--config", str(config)])
        except SystemExit as exit_:  # argparse; never expected here
            code = exit_.code if isinstance(exit_.code, int) else 1
        except BaseException:
            import traceback

            traceback.print_exc(file=err)
            code = -1
    return Outcome(code, out.getvalue(), err.getvalue())


def validate_subprocess(config: Path) -> Outcome:
    exe = Path(sys.executable).with_name("ticketbridge")
    argv = [str(exe)] if exe.exists() else [sys.executable, "-m", "ticketbridge.cli"]
    done = subprocess.run([*argv, "validate", "--config", str(config)], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}, check=False)
    return Outcome(done.returncode, done.stdout, done.stderr)


def problem(mutation: Mutation, root: Path, outcome: Outcome) -> str | None:
    """What is wrong with the answer to an invalid file; None when it is right."""
    text = outcome.out + outcome.err
    if "Traceback" in text:
        return "a traceback"
    if outcome.code != 2:
        return f"exit code {outcome.code}"
    located = re.compile(re.escape(str(root / mutation.file)) + r":\d+:\d+: \S")
    if any(located.match(line) for line in outcome.err.splitlines()):
        return None
    if mutation.file == "config.yaml" and mutation.operator == "unknown-status":
        # A tracker's status list changed: the problem is where a mapping no longer matches it
        # ("'complete' is not a clickup status; allowed: ...") -- a mapping file's line.
        elsewhere = re.compile(re.escape(str(root / "mappings")) + r"/[\w.-]+\.yaml:\d+:\d+: \S")
        if any(elsewhere.match(line) for line in outcome.err.splitlines()):
            return None
    return "no file:line:column message naming the mutated file"


@dataclass
class MutationRun:
    tested: int = 0
    still_valid: int = 0
    bad: list[tuple[Mutation, str, Outcome]] = field(default_factory=list)
    operators: Counter[str] = field(default_factory=Counter)
    files: Counter[str] = field(default_factory=Counter)
    subprocess_checked: int = 0


CHUNKS = 4  # the 200 mutations as 4 seeded streams of 50: pytest-xdist spreads them over its workers
SUBPROCESS_PER_CHUNK = (2, 1, 1, 1)


def mutate_and_validate(chunk: int, count: int = MUTATIONS // CHUNKS, subprocesses: int = 1) -> MutationRun:
    """`count` invalid mutations from seeded stream `chunk`, each validated in-process; `subprocesses`
    of them also through the real `ticketbridge validate`."""
    run = MutationRun()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        config = write_tree(root)
        originals = {file: (root / file).read_text(encoding="utf-8") for file in MUTATED_FILES}
        assert validate_in_process(config).code == 0, "the unmutated tree must be valid"
        for mutation in mutations(originals, seed=20261202 + chunk):
            if run.tested == count:
                break
            target = root / mutation.file
            target.write_bytes(mutation.data)
            try:
                outcome = validate_in_process(config)
                if outcome.code == 0:  # still valid: not a test of the property; the next one replaces it
                    run.still_valid += 1
                    continue
                run.tested += 1
                run.operators[mutation.operator] += 1
                run.files[mutation.file] += 1
                wrong = problem(mutation, root, outcome)
                if wrong is None and run.subprocess_checked < subprocesses and run.tested % 7 == 0:
                    real = validate_subprocess(config)
                    run.subprocess_checked += 1
                    wrong = problem(mutation, root, real)
                    if wrong is None and real.err != outcome.err:
                        wrong = "the real entry point printed something else than main() in-process"
                    outcome = real if wrong else outcome
                if wrong:
                    run.bad.append((mutation, wrong, outcome))
            finally:
                target.write_text(originals[mutation.file], encoding="utf-8")
    return run


@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_200_mutated_mapping_files_get_exit_2_and_a_file_line_message_never_a_traceback(chunk: int) -> None:
    run = mutate_and_validate(chunk, subprocesses=SUBPROCESS_PER_CHUNK[chunk])
    assert run.tested == MUTATIONS // CHUNKS
    assert run.subprocess_checked == SUBPROCESS_PER_CHUNK[chunk]
    assert set(run.files) == set(MUTATED_FILES), run.files  # every file took its share
    assert len(run.operators) >= 12, run.operators
    assert not run.bad, "\n\n".join(
        f"{m.file} {m.operator} ({m.detail}): {why}\n{o.err[-1500:]}" for m, why, o in run.bad[:5])


# == script mode ====================================================================================

def main() -> int:
    started = time.monotonic()
    with fuzz_server() as fuzzed:
        failure = None
        try:
            fuzz_webhooks(fuzzed)
            still_serving(fuzzed)
        except AssertionError as error:
            failure = error
        print(f"webhooks: {fuzzed.requests} requests ({HOSTILE_REQUESTS} hostile, {SIGNED_REQUESTS} validly signed"
              f" with malformed bodies) + {len(TRACKERS)} valid after, in {time.monotonic() - started:.1f}s; "
              f"slowest answer {fuzzed.slowest * 1000:.0f} ms")
        print("  statuses: " + ", ".join(f"{status}: {n}" for status, n in sorted(fuzzed.statuses.items())))
        print("  request kinds: " + ", ".join(f"{kind}: {n}" for kind, n in sorted(fuzzed.kinds.items())))
        print(f"  5xx: {sum(n for s, n in fuzzed.statuses.items() if s >= 500)}; queued by signed fuzz: "
              f"{len(fuzzed.queued) - len(TRACKERS) if failure is None else len(fuzzed.queued)}; "
              f"counters: {fuzzed.server.receiver.counters}")
        print(f"  still serving after: {'yes' if failure is None else 'NO: ' + str(failure)[:500]}")
    started = time.monotonic()
    run = MutationRun()
    for chunk in range(CHUNKS):
        part = mutate_and_validate(chunk, subprocesses=SUBPROCESS_PER_CHUNK[chunk])
        run.tested += part.tested
        run.still_valid += part.still_valid
        run.subprocess_checked += part.subprocess_checked
        run.bad += part.bad
        run.operators.update(part.operators)
        run.files.update(part.files)
    print(f"mapping files: {run.tested} invalid mutations validated in {time.monotonic() - started:.1f}s "
          f"({run.still_valid} mutations were still valid and replaced; {run.subprocess_checked} also through "
          f"the real `ticketbridge validate` subprocess)")
    print("  per file: " + ", ".join(f"{f}: {n}" for f, n in sorted(run.files.items())))
    print("  per operator: " + ", ".join(f"{op}: {n}" for op, n in sorted(run.operators.items())))
    print(f"  exit 2 with file:line:column and no traceback: {run.tested - len(run.bad)} of {run.tested}")
    for mutation, why, outcome in run.bad:
        print(f"  BAD {mutation.file} {mutation.operator} ({mutation.detail}): {why}: "
              f"{(outcome.err.strip().splitlines() or [''])[-1][:300]}")
    return 0 if failure is None and not run.bad else 1


if __name__ == "__main__":
    sys.exit(main())
