"""The Jira connector: JQL polling with look-back, normalization into `Item`s, workflow-aware writes.

Rules worth knowing (see also the tests):
- Polling uses `/rest/api/3/search/jql` (the old `/search` answers 410 on Cloud) with
  `updated >= "<cursor - look-back, floored to the minute>" ORDER BY updated ASC, key ASC`. JQL dates
  have minute precision and are read in the API user's profile time zone, so the literal is written
  in that zone (`timeZone` from GET myself, read once). The look-back re-delivers recent issues; the
  engine drops those it already processed by id + version (`dedupe_versions`).
- The cursor is the newest `fields.updated` seen, exactly as Jira wrote it
  (`2026-01-31T13:05:42.123+0000`); it never moves backwards.
- Identity is the issue id, never the key (keys change when an issue moves project).
- Marker: an issue created by ticketbridge carries the label `tb-<tracker>-<id>` (tracker: `[a-z0-9_]+`,
  so the first dash after it ends it; the id is any label-safe text, dashes allowed, no spaces) and the
  entity property `ticketbridge = {"source": "<tracker>:<id>"}`. The label is what `find_by_marker`
  searches (properties are not JQL-searchable for REST-only integrations) and it is hidden from the
  `labels` field; label writes keep it.
- Status is not a field in Jira: `Transition(status)` walks the workflow. An `Update`/`Create` that
  names `status` is turned into a Transition after the write.
- A new issue's first transition costs one POST: the start status and the transitions out of it are
  learned once per project and issue type (see `_transition_new`), not read per issue.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, NoReturn
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import structlog

from ...sync.model import (
    AddComment,
    Comment,
    Create,
    Item,
    Operation,
    PushResult,
    Transition,
    Update,
    split_comment_marker,
)
from ..base import Page
from ..errors import Permanent, Unsure
from ..http import RetryPolicy
from .adf import adf_to_text, is_adf, text_to_adf
from .client import JSON, JiraClient

log = structlog.get_logger(__name__)

BASE_FIELDS = ("summary", "description", "status", "priority", "labels", "issuetype", "assignee",
               "resolution", "updated", "created", "comment", "project")
_MARKER_LABEL = re.compile(r"^tb-([a-z0-9_]+)-(\S+)$")
_MARKER = re.compile(r"^([a-z0-9_]+):(\S+)$")
_CATEGORY_RANK = {"new": 0, "indeterminate": 1, "done": 2}
# Normalized comments kept (see `JiraConnector._seen_comments`): a few MB at most.
_SEEN_COMMENTS = 20_000
MAX_TRANSITION_STEPS = 3
EPOCH_JQL = 'updated >= "1970-01-01 00:00"'  # Jira rejects unbounded JQL


def parse_time(value: str | None) -> datetime:
    """Jira timestamps (`2026-01-31T13:05:42.123+0000`) as aware UTC datetimes."""
    if not value:
        return datetime.fromtimestamp(0, UTC)
    text = re.sub(r"([+-]\d{2})(\d{2})$", r"\1:\2", value.strip().replace("Z", "+00:00"))
    stamp = datetime.fromisoformat(text)
    return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)


def marker_label(marker: str) -> str:
    match = _MARKER.match(marker)
    if not match:
        raise ValueError(f"marker {marker!r} is not '<tracker>:<id>' with a label-safe id")
    return f"tb-{match.group(1)}-{match.group(2)}"


def marker_from_label(label: str) -> str | None:
    match = _MARKER_LABEL.match(label)
    return f"{match.group(1)}:{match.group(2)}" if match else None


def _display(value: Any) -> Any:
    """An option/object value as its display value; None when it has none we can carry."""
    if isinstance(value, dict):
        if is_adf(value):
            return adf_to_text(value)
        for key in ("value", "name", "accountId", "key", "displayName"):
            if key in value and not isinstance(value[key], (dict, list)):
                return value[key]
        return None
    return value


def _custom_value(value: Any) -> tuple[bool, Any]:
    """(keep, native value) for a custom field; objects without a display value are dropped."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return True, value
    if isinstance(value, list):
        items = [_display(v) for v in value]
        return True, tuple(sorted((v for v in items if v is not None), key=str))
    shown = _display(value)
    return shown is not None, shown


def _jira_time(value: datetime) -> str:
    value = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}+0000"


class JiraConnector:
    type = "jira"
    transition_field: str | None = "status"  # status moves through workflow transitions only
    dedupe_versions = True  # the look-back re-delivers recent issues; the engine skips known id+version

    def __init__(self, name: str, base_url: str, email: str, token: str, *,
                 retry: RetryPolicy | None = None, lookback_seconds: float = 120, page_size: int = 100,
                 internal_visibility: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.lookback = timedelta(seconds=lookback_seconds)
        self.page_size = page_size
        self.internal_visibility = dict(internal_visibility) if internal_visibility else None
        self.client = JiraClient(name, self.base_url, email, token, retry=retry)
        self._field_defs: dict[str, JSON] | None = None  # custom field id -> GET field entry
        self._statuses: dict[str, str] | None = None  # status name (lower) -> category key
        self._tz: ZoneInfo | None = None
        # id -> (key, labels) from the last read, so writes need no extra GET for key / marker label.
        self._known: dict[str, tuple[str, tuple[str, ...]]] = {}
        # (project, issue type) -> (status a new issue starts in, transitions out of it), learned from
        # the first issue created of that kind (see `_transition_new`).
        self._starts: dict[str, tuple[str, list[JSON]]] = {}
        self._learning = threading.Lock()  # items are synced side by side: one issue of a kind learns
        # Comments as normalized, by (id, updated, public): an issue's whole comment list comes with
        # every read of it (each poll that sees it change, each fetch), and turning each ADF body
        # back into text again was a tenth of the sync's time (bench/core.py). An edit changes
        # `updated`, so an edited comment is normalized anew.
        self._seen_comments: dict[tuple[str, str, bool], Comment] = {}
        self._seen_comments_lock = threading.Lock()

    @property
    def requests_made(self) -> int:
        return self.client.requests_made

    # -- metadata, cached once per connector ----------------------------------------------
    def check(self) -> None:
        self._load_myself()

    def _load_myself(self) -> ZoneInfo:
        me = self.client.myself()
        try:
            self._tz = ZoneInfo(str(me.get("timeZone") or "UTC"))
        except (ZoneInfoNotFoundError, ValueError):
            log.warning("jira.timezone_unknown", tracker=self.name, time_zone=me.get("timeZone"))
            self._tz = ZoneInfo("UTC")
        return self._tz

    def _timezone(self) -> ZoneInfo:
        return self._tz if self._tz is not None else self._load_myself()

    def _custom_fields(self) -> dict[str, JSON]:
        if self._field_defs is None:
            self._field_defs = {f["id"]: f for f in self.client.fields()
                                if str(f.get("id", "")).startswith("customfield_")}
        return self._field_defs

    def _wanted_fields(self) -> list[str]:
        return [*BASE_FIELDS, *sorted(self._custom_fields())]

    # -- reading ---------------------------------------------------------------------------
    def poll(self, cursor: str | None, select: Mapping[str, Any]) -> Iterator[Page]:
        jql = self._poll_jql(cursor, select)
        fields = self._wanted_fields()
        newest, newest_text = (parse_time(cursor), cursor) if cursor else (None, None)
        token: str | None = None
        seen_tokens: set[str] = set()
        while True:
            body = self.client.search(jql, fields, next_page_token=token, max_results=self.page_size)
            items = []
            for issue in body.get("issues") or []:
                item = self.normalize(issue, with_comments=True)
                items.append(item)
                updated = (issue.get("fields") or {}).get("updated")
                if updated and (newest is None or parse_time(updated) > newest):
                    newest, newest_text = parse_time(updated), updated
            log.info("jira.poll.page", tracker=self.name, items=len(items), cursor=newest_text)
            yield Page(items, newest_text)
            token = body.get("nextPageToken")
            if not token or body.get("isLast") is True:
                return
            if token in seen_tokens:  # a server that repeats a token would loop forever
                raise Permanent(self.name, f"search/jql repeated page token {token!r}")
            seen_tokens.add(token)

    def _poll_jql(self, cursor: str | None, select: Mapping[str, Any]) -> str:
        clauses = []
        if select.get("jql"):
            clauses.append(f"({select['jql']})")
        if cursor:
            since = (parse_time(cursor) - self.lookback).astimezone(self._timezone())
            clauses.append(f'updated >= "{since.strftime("%Y-%m-%d %H:%M")}"')
        elif not clauses:
            clauses.append(EPOCH_JQL)
        return " AND ".join(clauses) + " ORDER BY updated ASC, key ASC"

    def selected(self, item: Item, select: Mapping[str, Any]) -> bool:
        # Selection is the flow's JQL, applied by the search itself; it cannot be evaluated locally.
        return True

    def fetch(self, item_id: str) -> Item:
        return self.normalize(self.client.issue(item_id, self._wanted_fields()), with_comments=True)

    def fetch_selected(self, item_id: str, select: Mapping[str, Any]) -> tuple[Item, bool]:
        """The issue and whether it still matches the flow's JQL (an engineer may have taken the
        `planning` label off). One search for the issue by id within the JQL reads it in place of
        `fetch`; only an issue that does not match costs a second read (NotFound when it is gone)."""
        if not select.get("jql"):
            return self.fetch(item_id), True
        body = self.client.search(f"({select['jql']}) AND id = {int(item_id)}", self._wanted_fields(),
                                  max_results=1)
        issues = body.get("issues") or []
        if issues:
            return self.normalize(issues[0], with_comments=True), True
        return self.fetch(item_id), False

    def with_comments(self, item: Item) -> Item:
        return item if item.comments is not None else self.fetch(item.id)

    def find_by_marker(self, marker: str) -> Item | None:
        try:
            label = marker_label(marker)
        except ValueError:
            return None  # we could never have written such a label
        body = self.client.search(f'labels = "{label}" ORDER BY created ASC', self._wanted_fields(),
                                  max_results=1)
        issues = body.get("issues") or []
        return self.normalize(issues[0], with_comments=True) if issues else None

    # -- normalization ---------------------------------------------------------------------
    def normalize(self, issue: JSON, *, with_comments: bool) -> Item:
        raw = issue.get("fields") or {}
        issue_id, key = str(issue["id"]), str(issue.get("key") or issue["id"])
        labels = [str(label) for label in raw.get("labels") or []]
        markers = [m for m in (marker_from_label(label) for label in labels) if m]
        fields: dict[str, Any] = {
            "summary": raw.get("summary"),
            "description": adf_to_text(raw["description"]) if raw.get("description") is not None else None,
            "status": _display(raw.get("status")),
            "priority": _display(raw.get("priority")),
            "labels": tuple(sorted(label for label in labels if not marker_from_label(label))),
            "issuetype": _display(raw.get("issuetype")),
            # Cloud identifies users by accountId only; Server/DC by name.
            "assignee": (raw["assignee"].get("accountId") or raw["assignee"].get("name"))
            if isinstance(raw.get("assignee"), dict) else None,
            "resolution": _display(raw.get("resolution")),
        }
        if isinstance(raw.get("project"), dict):
            fields["project"] = raw["project"].get("key")
        if raw.get("created"):
            fields["created"] = raw["created"]
        for name, value in raw.items():
            if name.startswith("customfield_"):
                keep, native = _custom_value(value)
                if keep:
                    fields[name] = native
        self._known[issue_id] = (key, tuple(labels))
        comments = self._comments(issue_id, raw.get("comment")) if with_comments else None
        updated = raw.get("updated") or ""
        return Item(tracker=self.name, id=issue_id, key=key, url=f"{self.base_url}/browse/{key}",
                    fields=fields, updated_at=parse_time(updated), version=updated,
                    comments=comments, marker=markers[0] if markers else None)

    def _comments(self, issue_id: str, page: Any) -> tuple[Comment, ...] | None:
        if not isinstance(page, dict):
            return None  # the comment field was not returned: not loaded
        raw = list(page.get("comments") or [])
        total = int(page.get("total") or len(raw))
        while len(raw) < total:  # the embedded page is truncated on busy issues
            more = self.client.comments(issue_id, start_at=len(raw))
            batch = more.get("comments") or []
            if not batch:
                break
            raw.extend(batch)
            total = int(more.get("total") or total)
        return tuple(self._comment(c) for c in raw)

    def _comment(self, raw: JSON) -> Comment:
        updated = raw.get("updated")
        key = (str(raw["id"]), str(updated), not raw.get("visibility"))
        known = self._seen_comments.get(key) if updated else None
        if known is not None:
            return known
        body, source = split_comment_marker(adf_to_text(raw.get("body")))
        author = raw.get("author") or {}
        comment = Comment(id=key[0], body=body, public=key[2],
                          author=str(author.get("displayName") or author.get("accountId") or ""),
                          created_at=parse_time(raw.get("created")), mirrored_from=source)
        if updated:
            with self._seen_comments_lock:
                if len(self._seen_comments) >= _SEEN_COMMENTS:  # the oldest go first
                    for old in list(self._seen_comments)[:_SEEN_COMMENTS // 10]:
                        del self._seen_comments[old]
                self._seen_comments[key] = comment
        return comment

    # -- writing ---------------------------------------------------------------------------
    def push(self, item_id: str | None, ops: Sequence[Operation]) -> PushResult:
        created = False
        key = ""
        comment_ids: dict[str, str] = {}
        fresh: str | None = None  # the kind of the issue just created, while it is in its start status
        for index, op in enumerate(ops):
            if isinstance(op, Create):
                if index != 0 or item_id is not None:
                    raise Permanent(self.name, "Create must be the first operation on a new item")
                item_id, key, fresh = self._create(op)
                created = True
                continue
            if item_id is None:
                raise Permanent(self.name, f"{op.kind} needs an item; the first operation must be Create")
            if isinstance(op, Update):
                self._update(item_id, op.fields)
                fresh = None if "status" in op.fields else fresh
            elif isinstance(op, Transition):
                if fresh is not None:
                    self._transition_new(item_id, op.status, fresh)
                else:
                    self._transition(item_id, op.status)
                fresh = None
            elif isinstance(op, AddComment):
                comment_ids[op.source_id] = self._add_comment(item_id, op)
        if item_id is None:
            raise Permanent(self.name, "push without an item and without Create")
        if not key:
            key = self._meta(item_id)[0]
        return PushResult(item_id=item_id, item_key=key, created=created, comment_ids=comment_ids)

    def _meta(self, item_id: str) -> tuple[str, tuple[str, ...]]:
        """(key, labels) of an issue: from the last read, or one small GET."""
        if item_id not in self._known:
            issue = self.client.issue(item_id, ["labels"])
            labels = tuple(str(label) for label in (issue.get("fields") or {}).get("labels") or [])
            self._known[item_id] = (str(issue.get("key") or item_id), labels)
        return self._known[item_id]

    def _create(self, op: Create) -> tuple[str, str, str | None]:
        """(id, key, kind) of the new issue; kind (project and issue type) is None once a status in
        the Create has moved it from its start status."""
        try:
            label = marker_label(op.marker)
        except ValueError as error:
            raise Permanent(self.name, str(error)) from None
        values = dict(op.fields)
        status = values.pop("status", None)
        payload_fields = self._to_jira(values)
        payload_fields["labels"] = sorted({*payload_fields.get("labels", []), label})
        payload = {"fields": payload_fields,
                   "properties": [{"key": "ticketbridge", "value": {"source": op.marker}}]}
        body = self.client.create_issue(payload)
        issue_id, key = str(body["id"]), str(body.get("key") or body["id"])
        self._known[issue_id] = (key, tuple(payload_fields["labels"]))
        log.info("jira.push.create", tracker=self.name, item_id=issue_id, key=key, marker=op.marker)
        kind = json.dumps([payload_fields.get("project"), payload_fields.get("issuetype")], sort_keys=True)
        if status:
            self._transition_new(issue_id, str(status), kind)
            return issue_id, key, None
        return issue_id, key, kind

    def _transition_new(self, issue_id: str, status: str, kind: str) -> None:
        """Move a just-created issue to `status`. Jira gives each project and issue type one workflow,
        so every new issue of a kind starts in the same status with the same transitions out of it:
        the first creation of a kind learns them (GET status, GET transitions: the backfill figure of
        issue 8 counts requests per synced issue), the others need no read. Nothing is sent when the
        start status is the one wanted; otherwise the learned transition is applied at once. One the
        issue refuses (400: a workflow condition, or the workflow changed meanwhile) is forgotten and
        the workflow walked as for any issue."""
        start = self._starts.get(kind)
        if start is None:
            with self._learning:
                start = self._starts.get(kind)  # learned by another thread while this one waited
                if start is None:
                    issue = self.client.issue(issue_id, ["status"])
                    current = str(((issue.get("fields") or {}).get("status") or {}).get("name", ""))
                    start = self._starts[kind] = (current, self.client.transitions(issue_id))
        current, available = start
        wanted = status.casefold()
        if current.casefold() == wanted:
            return
        direct = next((t for t in available if str((t.get("to") or {}).get("name", "")).casefold() == wanted),
                      None)
        if direct is not None:
            try:
                self._do_transition(issue_id, direct)
            except Permanent as error:
                if error.status != 400:
                    raise
                self._starts.pop(kind, None)
                log.info("jira.push.transition_relearned", tracker=self.name, item_id=issue_id, status=status)
            else:
                log.info("jira.push.transition", tracker=self.name, item_id=issue_id, status=status, steps=1)
                return
        self._transition(issue_id, status)

    def _update(self, item_id: str, values: Mapping[str, Any]) -> None:
        values = dict(values)
        status = values.pop("status", None)
        payload_fields = self._to_jira(values)
        if "labels" in payload_fields:
            key, current = self._meta(item_id)
            ours = [label for label in current if marker_from_label(label)]
            payload_fields["labels"] = sorted({*payload_fields["labels"], *ours})
            self._known[item_id] = (key, tuple(payload_fields["labels"]))
        if payload_fields:
            self.client.edit_issue(item_id, {"fields": payload_fields})
            log.info("jira.push.update", tracker=self.name, item_id=item_id, fields=sorted(payload_fields))
        if status:
            self._transition(item_id, str(status))

    def _to_jira(self, values: Mapping[str, Any]) -> JSON:
        """Native Item values -> Jira's write shapes."""
        out: JSON = {}
        for name, value in values.items():
            if name in ("project",):
                out[name] = {"key": value} if isinstance(value, str) else value
            elif name in ("issuetype", "priority", "resolution"):
                out[name] = {"name": value} if isinstance(value, str) else value
            elif name == "assignee":
                out[name] = {"accountId": value} if isinstance(value, str) else value
            elif name == "description":
                out[name] = text_to_adf(value) if isinstance(value, str) and value else (
                    value if is_adf(value) else None)
            elif name == "labels":
                out[name] = sorted(str(label) for label in (value or ()))
            elif name.startswith("customfield_"):
                out[name] = self._custom_to_jira(name, value)
            else:
                out[name] = value
        return out

    def _custom_to_jira(self, name: str, value: Any) -> Any:
        schema = (self._custom_fields().get(name) or {}).get("schema") or {}
        kind, items, plugin = schema.get("type"), schema.get("items"), str(schema.get("custom") or "")
        if value is None:
            return None
        if kind == "option":
            return value if isinstance(value, dict) else {"value": str(value)}
        if kind == "array" and items == "option":
            return [v if isinstance(v, dict) else {"value": str(v)} for v in value]
        if kind == "array":
            return list(value)
        if kind == "datetime" and isinstance(value, datetime):
            return _jira_time(value)
        if kind == "date" and isinstance(value, date):
            return value.isoformat()[:10]
        if plugin.endswith(":textarea") and isinstance(value, str):
            return text_to_adf(value)  # multi-line text fields take ADF on v3
        return value

    def _transition(self, item_id: str, status: str) -> None:
        wanted = status.casefold()
        available = self.client.transitions(item_id)
        direct = next((t for t in available if str((t.get("to") or {}).get("name", "")).casefold() == wanted),
                      None)
        if direct is not None:
            self._do_transition(item_id, direct)
            log.info("jira.push.transition", tracker=self.name, item_id=item_id, status=status, steps=1)
            return
        # No direct transition: walk, preferring steps toward the target's status category.
        issue = self.client.issue(item_id, ["status"])
        current = str(((issue.get("fields") or {}).get("status") or {}).get("name", ""))
        if current.casefold() == wanted:
            return
        categories = self._status_categories()
        start = current
        if wanted not in categories:
            self._unreachable(item_id, start, status, available)
        target_rank = _CATEGORY_RANK.get(categories[wanted], 1)
        visited = {current.casefold()}
        steps = 0
        while steps < MAX_TRANSITION_STEPS:
            distance = abs(_CATEGORY_RANK.get(categories.get(current.casefold(), ""), 1) - target_rank)
            candidates = []
            for order, transition in enumerate(available):
                to = transition.get("to") or {}
                name = str(to.get("name", ""))
                if name.casefold() in visited:
                    continue
                category = (to.get("statusCategory") or {}).get("key") or categories.get(name.casefold(), "")
                gap = abs(_CATEGORY_RANK.get(category, 1) - target_rank)
                if gap <= distance:  # never step away from the target category
                    candidates.append((gap, order, transition, name))
            if not candidates:
                break
            _, _, step, name = min(candidates, key=lambda c: (c[0], c[1]))
            self._do_transition(item_id, step)
            steps += 1
            current = name
            visited.add(name.casefold())
            if name.casefold() == wanted:
                log.info("jira.push.transition", tracker=self.name, item_id=item_id, status=status,
                         steps=steps)
                return
            available = self.client.transitions(item_id)
            direct = next((t for t in available
                           if str((t.get("to") or {}).get("name", "")).casefold() == wanted), None)
            if direct is not None:
                self._do_transition(item_id, direct)
                log.info("jira.push.transition", tracker=self.name, item_id=item_id, status=status,
                         steps=steps + 1)
                return
        self._unreachable(item_id, start, status, available, current if steps else None)

    def _do_transition(self, item_id: str, transition: JSON) -> None:
        """Apply one transition. When the answer is lost (timeout, 5xx) the status tells whether
        Jira applied it; only a transition certainly not applied goes up, to be retried."""
        try:
            self.client.do_transition(item_id, str(transition["id"]))
        except Unsure:
            issue = self.client.issue(item_id, ["status"])
            now = str(((issue.get("fields") or {}).get("status") or {}).get("name", ""))
            if now.casefold() != str((transition.get("to") or {}).get("name", "")).casefold():
                raise
            log.info("jira.push.transition_confirmed", tracker=self.name, item_id=item_id, status=now)

    def _unreachable(self, item_id: str, current: str, status: str, available: Sequence[JSON],
                     stopped_at: str | None = None) -> NoReturn:
        names = ", ".join(f"{t.get('name')} -> {(t.get('to') or {}).get('name')}" for t in available) or "none"
        log.warning("jira.push.transition_missing", tracker=self.name, item_id=item_id, current=current,
                    status=status, available=names)
        where = f" (stopped at {stopped_at!r})" if stopped_at else ""
        raise Permanent(self.name, f"no workflow path from {current!r} to {status!r}{where}; available: {names}")

    def _status_categories(self) -> dict[str, str]:
        if self._statuses is None:
            self._statuses = {str(s.get("name", "")).casefold(): str((s.get("statusCategory") or {})
                                                                      .get("key", "indeterminate"))
                              for s in self.client.statuses()}
        return self._statuses

    def _add_comment(self, item_id: str, op: AddComment) -> str:
        body: JSON = {"body": text_to_adf(op.body)}
        if not op.public and self.internal_visibility:
            body["visibility"] = dict(self.internal_visibility)
        comment = self.client.add_comment(item_id, body)
        log.info("jira.push.comment", tracker=self.name, item_id=item_id, comment_id=comment.get("id"),
                 source=op.source_id, public=op.public)
        return str(comment["id"])


__all__ = ["JiraConnector", "marker_from_label", "marker_label", "parse_time"]
