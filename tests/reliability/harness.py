"""Helpers for reliability tests that run the bridge as a real process next to in-process emulators.

- `seed_backfill`: deterministic Zendesk tickets for a backfill (fields, priorities, statuses, tags,
  public replies and internal notes), the same for a given seed on any sandbox;
- `BridgeProcess`: `ticketbridge run|sync` as a subprocess with the sandbox's credentials, its stdout
  and stderr captured to files (`tail()` for failure messages), stopped by SIGKILL or SIGTERM;
- `wait_until`: poll a predicate with a deadline;
- `jira_writes` / `last_jira_request`: progress of a backfill as the Jira emulator sees it;
- `jira_snapshot` / `zendesk_snapshot` / `compare_snapshots`: the trackers' content normalized for
  comparing two runs on two sandboxes (ids, keys, timestamps, ports and account ids stripped; the
  marker, which names the Zendesk ticket, is the identity);
- `store_report`: links, open failures and pending creation intents of a store.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ticketbridge.connectors.jira.connector import marker_from_label
from ticketbridge.sandbox import Sandbox
from ticketbridge.sync.store import Store

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
TICKETBRIDGE = VENV_BIN / "ticketbridge"

PRIORITIES = ("low", "normal", "normal", "high", "urgent")
STATUSES = ("new", "open", "open", "pending", "hold", "solved")
WORDS = ("export", "invoice", "login", "search", "billing", "report", "sync", "upload", "dashboard", "webhook",
         "timeout", "crash", "slow", "missing", "broken", "duplicate", "blank", "stale", "wrong", "late")
TAGS = ("billing", "mobile", "api", "export", "sso", "search", "eu", "vip")


def _sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + "."


def seed_backfill(sandbox: Sandbox, tickets: int, seed: int) -> None:
    """`tickets` Zendesk tickets from `random.Random(seed)`: subject, description, priority,
    status, type, tags, the environment custom field, 2-3 public replies and sometimes an internal
    note (which the zendesk-jira mapping keeps out of Jira). Identical on every sandbox."""
    rng = random.Random(seed)
    zendesk = sandbox.zendesk
    for number in range(1, tickets + 1):
        replies: list[dict[str, Any]] = [
            {"body": f"Reply {k + 1} on ticket {number}: {_sentence(rng, 8)}", "public": True}
            for k in range(rng.choice((2, 2, 3)))]
        if rng.random() < 0.3:
            replies.insert(rng.randrange(len(replies) + 1),
                           {"body": f"Internal note on ticket {number}: {_sentence(rng, 6)}", "public": False})
        zendesk.add_ticket(
            subject=f"{_sentence(rng, 4)[:-1]} #{number}",
            comment={"body": f"{_sentence(rng, 12)}\n\nSteps: {_sentence(rng, 6)}"},
            priority=rng.choice(PRIORITIES), status=rng.choice(STATUSES),
            type=rng.choice(("problem", "incident", "question", "task")),
            tags=sorted(rng.sample(TAGS, rng.randint(0, 3))),
            custom_fields=[{"id": 360002, "value": rng.choice(("production", "staging"))}],
            comments=replies)


# -- the bridge as a process ------------------------------------------------------------------------

@dataclass
class BridgeProcess:
    """One `ticketbridge` subprocess; output goes to `<log_dir>/<name>.stdout|.stderr`."""

    args: list[str]
    env: dict[str, str]
    log_dir: Path
    name: str
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0

    @classmethod
    def start(cls, args: list[str], env: Mapping[str, str], log_dir: Path, name: str) -> BridgeProcess:
        bridge = cls(list(args), {**os.environ, **env}, log_dir, name)
        log_dir.mkdir(parents=True, exist_ok=True)
        with bridge.stdout_path.open("wb") as out, bridge.stderr_path.open("wb") as err:
            bridge.proc = subprocess.Popen([str(TICKETBRIDGE), *args], env=bridge.env, stdout=out, stderr=err,
                                           stdin=subprocess.DEVNULL, cwd=REPO)
        bridge.started_at = time.monotonic()
        return bridge

    @property
    def stdout_path(self) -> Path:
        return self.log_dir / f"{self.name}.stdout"

    @property
    def stderr_path(self) -> Path:
        return self.log_dir / f"{self.name}.stderr"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> int:
        """SIGKILL (no clean-up of any kind in the bridge) and reap; the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        return self.proc.wait(timeout=30)

    def terminate(self, timeout: float = 30) -> int:
        """SIGTERM, the clean stop; SIGKILL when it does not exit within `timeout`."""
        assert self.proc is not None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return self.kill()

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        """The JSON log lines written so far, only events called `name` when given (a line cut by a
        kill is skipped)."""
        found: list[dict[str, Any]] = []
        if not self.stderr_path.exists():
            return found
        needle = f'"event": "{name}"' if name else ""
        for line in self.stderr_path.read_text(errors="replace").splitlines():
            if line.startswith("{") and needle in line:
                try:
                    found.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return found

    def last_event(self) -> dict[str, Any] | None:
        """The last complete JSON log event (cheap: reads the file's tail)."""
        try:
            with self.stderr_path.open("rb") as handle:
                handle.seek(0, os.SEEK_END)
                size = handle.tell()
                handle.seek(max(0, size - 4096))
                lines = handle.read().decode(errors="replace").splitlines()
        except FileNotFoundError:
            return None
        for line in reversed(lines):
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(event, dict) and "event" in event:
                return event
        return None

    def tail(self, lines: int = 30) -> str:
        parts = []
        for path in (self.stdout_path, self.stderr_path):
            text = path.read_text(errors="replace").splitlines()[-lines:] if path.exists() else []
            parts.append(f"--- {path} (last {len(text)} lines)\n" + "\n".join(text))
        return "\n".join(parts)


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.005,
               what: str = "condition") -> float:
    """Poll `predicate` until true; the seconds it took. TimeoutError after `timeout`."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"{what} not reached within {timeout:.0f} s")
        time.sleep(interval)
    return time.monotonic() - start


# -- progress as Jira sees it -------------------------------------------------------------------------

def is_jira_write(method: str, path: str) -> bool:
    return method in ("POST", "PUT", "DELETE") and not path.endswith("/search/jql")


def jira_writes(sandbox: Sandbox) -> int:
    """Requests that changed Jira (creations, transitions, comments, edits) so far."""
    log = sandbox.jira.request_log
    return sum(1 for method, path, _ in list(log) if is_jira_write(method, path))


class WriteCounter:
    """Incremental count of Jira writes (the request log only grows), cheap enough to poll."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.log = sandbox.jira.request_log
        self.seen = 0
        self.writes = 0

    def __call__(self) -> int:
        end = len(self.log)
        for method, path, _ in self.log[self.seen:end]:
            if is_jira_write(method, path):
                self.writes += 1
        self.seen = end
        return self.writes


def request_kind(method: str, path: str) -> str:
    if method == "POST" and path.rstrip("/").endswith("/issue"):
        return "create"
    if method == "POST" and path.endswith("/transitions"):
        return "transition"
    if method == "POST" and path.endswith("/comment"):
        return "comment"
    if method in ("PUT", "DELETE"):
        return "edit"
    return "read"


def last_jira_request(sandbox: Sandbox) -> str:
    log = sandbox.jira.request_log
    if not log:
        return "none"
    method, path, _ = log[-1]
    return request_kind(method, path)


def jira_writes_by_kind(sandbox: Sandbox) -> dict[str, int]:
    """Jira writes by kind (create, transition, comment, edit), `refused` (answered 4xx/5xx) and `noop`
    (the emulator's `noop_writes`: a write that set what was already there, an echo or a repeat)."""
    log = list(sandbox.jira.request_log)
    kinds = Counter(request_kind(method, path) for method, path, _ in log if is_jira_write(method, path))
    # A request cut off by a kill can reach the emulator half-sent and be refused (4xx): a write in
    # the request log that changed nothing.
    refused = sum(1 for method, path, status in log if is_jira_write(method, path) and status >= 400)
    return {**dict(sorted(kinds.items())), "refused": refused, "noop": sandbox.jira.noop_writes}


def requests_per_tracker(sandbox: Sandbox) -> dict[str, int]:
    return {name: len(emulator.request_log) for name, emulator in sandbox.emulators.items()
            if emulator.request_log}


# -- normalized snapshots -----------------------------------------------------------------------------

def _strip(value: Any, replacements: Mapping[str, str]) -> Any:
    text = json.dumps(value, sort_keys=True, default=str)
    for old, new in replacements.items():
        text = text.replace(old, new)
    return json.loads(text)


@dataclass
class JiraSnapshot:
    by_marker: dict[str, dict[str, Any]]  # marker -> normalized issue (the first one made)
    duplicates: dict[str, int] = field(default_factory=dict)  # marker -> issues beyond the first
    unmarked: int = 0  # issues without a marker
    total: int = 0


def jira_snapshot(sandbox: Sandbox) -> JiraSnapshot:
    """Every Jira issue by its marker label, normalized: what a reader of the issue sees (summary,
    description, status, priority, labels, type, project, custom fields, assignee, resolution,
    comments in order with body, visibility and author, entity properties), without issue ids and
    keys, timestamps or the sandbox's ports."""
    jira = sandbox.jira
    replacements = {sandbox.zendesk.base_url: "<zendesk>", sandbox.jira.base_url: "<jira>"}
    with jira.lock:
        statuses = {status.id: status.name for status in jira.statuses}
        issues = sorted(jira.issues_by_id.values(), key=lambda issue: int(issue.id))
        snapshot = JiraSnapshot({}, total=len(issues))
        for issue in issues:
            markers = [m for m in (marker_from_label(label) for label in issue.labels) if m]
            if not markers:
                snapshot.unmarked += 1
                continue
            marker = markers[0]
            normalized = _strip({
                "project": issue.project, "issuetype": issue.issuetype, "summary": issue.summary,
                "status": statuses.get(issue.status, issue.status), "priority": issue.priority,
                "description": issue.description, "labels": sorted(issue.labels), "assignee": issue.assignee,
                "resolution": issue.resolution, "custom": issue.custom, "properties": issue.properties,
                "comments": [{"author": c.author, "body": c.body, "visibility": c.visibility}
                             for c in issue.comments],
            }, replacements)
            if marker in snapshot.by_marker:
                snapshot.duplicates[marker] = snapshot.duplicates.get(marker, 0) + 1
            else:
                snapshot.by_marker[marker] = normalized
    return snapshot


def zendesk_snapshot(sandbox: Sandbox) -> dict[str, dict[str, Any]]:
    """Every Zendesk ticket normalized (fields the mapping reads or writes, comments in order)."""
    zendesk = sandbox.zendesk
    replacements = {sandbox.zendesk.base_url: "<zendesk>", sandbox.jira.base_url: "<jira>"}
    result = {}
    for ticket in zendesk.tickets():
        comments = zendesk.comments(int(ticket["id"]))
        result[f"zendesk:{ticket['id']}"] = _strip({
            key: ticket.get(key) for key in ("subject", "description", "status", "priority", "type", "tags",
                                             "custom_fields", "external_id", "assignee_id")
        } | {"comments": [{"body": c.get("body"), "public": c.get("public"), "author_id": c.get("author_id")}
                          for c in comments]}, replacements)
    return result


@dataclass
class Comparison:
    missing: list[str] = field(default_factory=list)  # in the reference, not in the run
    extra: list[str] = field(default_factory=list)  # in the run, not in the reference
    field_mismatches: list[str] = field(default_factory=list)  # "<marker> <field>: run != reference"
    comment_mismatches: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.extra or self.field_mismatches or self.comment_mismatches)


def compare_snapshots(run: Mapping[str, Mapping[str, Any]], reference: Mapping[str, Mapping[str, Any]]) -> Comparison:
    result = Comparison(missing=sorted(set(reference) - set(run)), extra=sorted(set(run) - set(reference)))
    for key in sorted(set(run) & set(reference)):
        mine, theirs = run[key], reference[key]
        for name in sorted(set(mine) | set(theirs)):
            if mine.get(name) == theirs.get(name):
                continue
            if name == "comments":
                got, want = list(mine.get(name) or []), list(theirs.get(name) or [])
                detail = f"{len(got)} comments, reference {len(want)}"
                bodies = Counter(json.dumps(c, sort_keys=True) for c in got)
                repeated = [b for b, n in bodies.items() if n > 1]
                if repeated:
                    detail += f"; repeated: {repeated[0][:160]}"
                result.comment_mismatches.append(f"{key}: {detail}")
            else:
                got_text, want_text = json.dumps(mine.get(name))[:160], json.dumps(theirs.get(name))[:160]
                result.field_mismatches.append(f"{key} {name}: {got_text} != reference {want_text}")
    return result


# -- the store ------------------------------------------------------------------------------------------

@dataclass
class StoreReport:
    links: int
    tickets_linked: int  # distinct Zendesk tickets with a link
    issues_linked: int  # distinct Jira issues with a link
    link_pairs: dict[str, str]  # "zendesk:<ticket id>" -> Jira issue id
    open_failures: list[str]
    pending_intents: list[str]


def store_report(url: str, flow: str) -> StoreReport:
    store = Store.open(url)
    try:
        links = list(store.links(flow))
        failures = [f"{f.item_key}: {f.kind}/{f.reason}: {f.message}" for f in store.failures(flow=flow)]
        intents = [f"{side}:{key}" for _flow, side, _id, key in store.pending_intents(flow)]
    finally:
        store.close()
    return StoreReport(len(links), len({link.left_id for link in links}), len({link.right_id for link in links}),
                       {f"zendesk:{link.left_id}": link.right_id for link in links}, failures, intents)


def marker_issue_ids(sandbox: Sandbox) -> dict[str, str]:
    """marker -> id of the (first) Jira issue that carries it."""
    result: dict[str, str] = {}
    with sandbox.jira.lock:
        for issue in sorted(sandbox.jira.issues_by_id.values(), key=lambda issue: int(issue.id)):
            for label in issue.labels:
                marker = marker_from_label(label)
                if marker:
                    result.setdefault(marker, issue.id)
    return result
