"""The ClickUp connector: per-list polling with look-back, normalization into `Item`s, writes.

Rules worth knowing (see also the tests):
- Identity: an item's id is the task id (`86c0001a`, global in a workspace); its key is the custom
  task id when the workspace uses them, else the task id.
- Fields (all native names, as a mapping file writes them):
  `name`, `description` (the task's Markdown, from `markdown_description`), `status` (the status name
  as the list spells it), `priority` (`urgent|high|normal|low` or None), `assignees` (sorted user ids
  as strings), `tags` (sorted names), `due_date` / `start_date` (ISO 8601 UTC, `2026-01-31T13:00:00Z`),
  `parent`, `list` (read only), and one `custom_fields.<field id>` per custom field of the task:
  text kinds as strings, numbers as int/float, dates as ISO 8601 UTC, a drop-down as its option *name*
  and labels as a sorted tuple of option names (names, so value tables in mapping files read as words;
  writes turn names back into option ids). Custom fields are keyed by id, not name: names can be
  renamed in ClickUp's UI and are not unique across lists.
- Polling: per list, `GET /list/{id}/task?date_updated_gt=<cursor - look-back>&include_closed=true
  &subtasks=true&order_by=created&reverse=true&page=N` until a page comes back empty (or says
  `last_page: true`). Ordering by creation keeps page boundaries still while tasks are edited during
  the scan (ordering by `updated` would move an edited task and skip another). Within one poll each
  (task id, date_updated) is yielded once; the engine drops versions it already processed
  (`dedupe_versions`), as the look-back re-delivers recent tasks. The cursor is a JSON object
  `{"<list id>": "<newest date_updated in ms>"}` (a bare ms number counts for every list); it is
  handed out only with the last page, as pages are not in `date_updated` order.
- Marker: with `marker_field` (the id of a text custom field, the recommended set-up) a task created
  by ticketbridge carries its source (`jira:10001`) in that field. Without it, the marker is a hidden
  last line of the description, `[//]: # (ticketbridge jira:10001)` (a Markdown comment: not shown),
  stripped from `description` and written back by every description update.
- Status is a plain field in ClickUp (no workflow): a `Transition` is applied as a status write.
  Statuses are checked against the list's (case-insensitively, sent in the list's spelling) before
  anything is written. Priority names map to ClickUp's 1-4.
- Comments: ClickUp v2 has no internal comments, so an internal `AddComment` is refused unless the
  connector is built with `allow_internal_comments=True`. Mirrors carry `[tb:<tracker>:<id>]`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

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
    iso_utc,
    split_comment_marker,
    with_comment_marker,
)
from ..base import Page
from ..errors import Permanent
from ..http import RetryPolicy
from .client import COMMENTS_PER_CALL, JSON, ClickUpClient

log = structlog.get_logger(__name__)

PRIORITIES = {"urgent": 1, "high": 2, "normal": 3, "low": 4}
PRIORITY_NAMES = {number: name for name, number in PRIORITIES.items()}
CUSTOM_PREFIX = "custom_fields."
WRITABLE = ("name", "description", "status", "priority", "assignees", "tags", "due_date", "start_date")
READ_ONLY = ("parent", "list", "date_created", "creator")
_MARKER = re.compile(r"^[a-z][a-z0-9_]*:\S+$")
_DESCRIPTION_MARKER = re.compile(r"(?:\r?\n){0,2}\[//\]: # \(ticketbridge ([a-z][a-z0-9_]*:[^\s)]+)\)[ \t]*(?=\r?\n|$)")
_LIST_ID = re.compile(r"^[0-9]+$")
MAX_PAGES = 10_000  # a guard against a server that ignores `page`


def parse_ms(value: Any) -> datetime | None:
    """ClickUp's millisecond timestamps (strings in responses) as aware UTC datetimes."""
    if value is None or value == "":
        return None
    return datetime.fromtimestamp(int(value) / 1000, UTC)


def to_ms(value: Any, name: str) -> int | None:
    """A date value from a mapping (ISO text, a date, a datetime or ms) as ClickUp's integer ms."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a date, not {value!r}")
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return int(moment.timestamp() * 1000)
    if isinstance(value, date):
        return int(datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp() * 1000)
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return int(text)
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{name} must be an ISO 8601 date or time, not {value!r}") from None
        return to_ms(moment, name)
    raise ValueError(f"{name} must be a date, not {type(value).__name__}")


def _iso_ms(value: Any) -> str | None:
    moment = parse_ms(value)
    return iso_utc(moment) if moment else None


def marker_line(marker: str) -> str:
    if not _MARKER.match(marker) or ")" in marker:
        raise ValueError(f"marker {marker!r} is not '<tracker>:<id>' without spaces")
    return f"[//]: # (ticketbridge {marker})"


def split_description_marker(text: str | None) -> tuple[str, str | None]:
    """(description without any ticketbridge marker line, the first marker found or None)."""
    if not text:
        return "", None
    match = _DESCRIPTION_MARKER.search(text)
    if not match:
        return text, None
    return _DESCRIPTION_MARKER.sub("", text), match.group(1)


def with_description_marker(text: str | None, marker: str | None) -> str:
    body, _ = split_description_marker(text)
    if marker is None:
        return body
    return f"{body.rstrip()}\n\n{marker_line(marker)}" if body.strip() else marker_line(marker)


def verify_signature(secret: str, body: bytes, signature: str | None) -> bool:
    """Whether `X-Signature` is the hex HMAC-SHA256 of the raw body (checked before any JSON parsing)."""
    if not signature:
        return False
    expected = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature.strip().lower())


def parse_webhook(body: bytes) -> tuple[str, str, tuple[str, ...]]:
    """(event, task id, history item ids) of a delivery. Deliveries are only hints: the engine fetches
    the task; history item ids de-duplicate repeated deliveries."""
    payload = json.loads(body)
    if not isinstance(payload, dict) or not payload.get("event") or not payload.get("task_id"):
        raise ValueError("not a ClickUp task webhook: event and task_id are required")
    history = tuple(str(item.get("id")) for item in payload.get("history_items") or [] if isinstance(item, dict))
    return str(payload["event"]), str(payload["task_id"]), history


@dataclass
class _Known:
    """What the last read of one task told us, so writes need no extra GET."""

    list_id: str
    marker: str | None
    assignees: tuple[str, ...]
    tags: tuple[str, ...]


class ClickUpConnector:
    """ClickUp tasks of one or more lists.

    `select` keys (a flow's selection for this side): `lists` (a subset of the configured lists),
    `statuses`, `tags_any`, `tags_none` (client-side tests, `selected`: a task that fails them is
    not created from, and a linked one pauses its pair; tasks are polled whatever their tags, so
    the engine also sees one come back in).
    """

    type = "clickup"
    transition_field: str | None = None  # status is a plain field in ClickUp
    dedupe_versions = True  # the look-back re-delivers recent tasks; the engine skips known id+version

    def __init__(self, name: str, base_url: str, token: str, *, lists: Sequence[str],
                 marker_field: str | None = None, retry: RetryPolicy | None = None,
                 lookback_seconds: float = 120, marker_scan_pages: int = 10,
                 allow_internal_comments: bool = False) -> None:
        if isinstance(lists, str) or not lists:
            raise ValueError(f"tracker '{name}': lists must be a non-empty list of ClickUp list ids")
        for list_id in lists:
            if not _LIST_ID.match(str(list_id)):
                raise ValueError(f"tracker '{name}': list id {list_id!r} is not a number")
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.lists: tuple[str, ...] = tuple(dict.fromkeys(str(list_id) for list_id in lists))
        self.marker_field = marker_field
        self.lookback = timedelta(seconds=lookback_seconds)
        self.marker_scan_pages = max(1, marker_scan_pages)
        self.allow_internal_comments = allow_internal_comments
        self.client = ClickUpClient(name, self.base_url, token, retry=retry)
        self._statuses: dict[str, list[str]] = {}  # list id -> status names as the list spells them
        self._fields: dict[str, dict[str, JSON]] = {}  # list id -> field id -> field definition
        self._known: dict[str, _Known] = {}

    def __repr__(self) -> str:  # never show the token
        return f"ClickUpConnector(name={self.name!r}, base_url={self.base_url!r}, lists={list(self.lists)!r})"

    @property
    def requests_made(self) -> int:
        return self.client.requests_made

    # -- metadata, cached per connector -----------------------------------------------------
    def check(self) -> None:
        """Authenticate and make sure every configured list is readable (its statuses are kept)."""
        self.client.user()
        for list_id in self.lists:
            self._list_statuses(list_id, refresh=True)

    def _list_statuses(self, list_id: str, *, refresh: bool = False) -> list[str]:
        if refresh or list_id not in self._statuses:
            body = self.client.task_list(list_id)
            self._statuses[list_id] = [str(s.get("status")) for s in body.get("statuses") or []]
        return self._statuses[list_id]

    def _list_fields(self, list_id: str) -> dict[str, JSON]:
        if list_id not in self._fields:
            self._fields[list_id] = {str(f["id"]): f for f in self.client.fields(list_id)}
        return self._fields[list_id]

    # -- reading -----------------------------------------------------------------------------
    def poll(self, cursor: str | None, select: Mapping[str, Any]) -> Iterator[Page]:
        state = self._decode_cursor(cursor)
        lists = self._selected_lists(select)
        seen: set[tuple[str, str]] = set()
        pending: list[Item] = []
        for list_id in lists:
            params: JSON = {"include_closed": "true", "subtasks": "true", "order_by": "created",
                            "reverse": "true", "include_markdown_description": "true"}
            if list_id in state:
                since = int(state[list_id]) - int(self.lookback.total_seconds() * 1000)
                params["date_updated_gt"] = max(since, 0)
            previous_ids: list[str] | None = None
            for page in range(MAX_PAGES):
                body = self.client.tasks_page(list_id, {**params, "page": page})
                tasks = [task for task in body.get("tasks") or [] if isinstance(task, dict)]
                if not tasks:
                    break
                ids = [str(task.get("id")) for task in tasks]
                if ids == previous_ids:  # a server that ignores `page` would loop forever
                    raise Permanent(self.name, f"list {list_id} answered page {page} like page {page - 1}")
                previous_ids = ids
                items = []
                for task in tasks:
                    updated = str(task.get("date_updated") or "")
                    if (str(task["id"]), updated) in seen:
                        continue
                    seen.add((str(task["id"]), updated))
                    if updated.isdigit() and int(updated) > int(state.get(list_id, "0")):
                        state[list_id] = updated
                    items.append(self.normalize(task))
                log.info("clickup.poll.page", tracker=self.name, list=list_id, page=page, items=len(items))
                if pending:
                    yield Page(pending, None)
                pending = items
                if body.get("last_page") is True:
                    break
        # The cursor rides on the last page only: pages are in creation order, not update order.
        yield Page(pending, self._encode_cursor(state))

    def _selected_lists(self, select: Mapping[str, Any]) -> tuple[str, ...]:
        wanted = select.get("lists")
        if wanted is None:
            return self.lists
        chosen = tuple(str(w) for w in ([wanted] if isinstance(wanted, str | int) else wanted))
        unknown = [w for w in chosen if w not in self.lists]
        if unknown:
            raise Permanent(self.name, f"select.lists {unknown} are not among the tracker's lists {list(self.lists)}")
        return chosen

    def _decode_cursor(self, cursor: str | None) -> dict[str, str]:
        if not cursor:
            return {}
        text = cursor.strip()
        if text.isdigit():
            return {list_id: text for list_id in self.lists}
        try:
            state = json.loads(text)
        except ValueError:
            state = None
        if not isinstance(state, dict) or not all(str(v).isdigit() for v in state.values()):
            raise Permanent(self.name, f"stored cursor {cursor!r} is not a ClickUp cursor")
        return {str(k): str(v) for k, v in state.items()}

    @staticmethod
    def _encode_cursor(state: Mapping[str, str]) -> str:
        return json.dumps(dict(state), sort_keys=True, separators=(",", ":"))

    def selected(self, item: Item, select: Mapping[str, Any]) -> bool:
        lists = select.get("lists")
        if lists is not None:
            wanted = {str(w) for w in ([lists] if isinstance(lists, str | int) else lists)}
            if str(item.fields.get("list")) not in wanted:
                return False
        statuses = select.get("statuses")
        if statuses is not None and str(item.fields.get("status", "")).casefold() not in \
                {str(s).casefold() for s in statuses}:
            return False
        tags = set(item.fields.get("tags") or ())
        tags_any = select.get("tags_any")
        if tags_any is not None and not tags & set(tags_any):
            return False
        tags_none = select.get("tags_none")
        return not (tags_none is not None and tags & set(tags_none))

    def fetch(self, item_id: str) -> Item:
        item = self.normalize(self.client.task(item_id))
        return replace(item, comments=self._comments(item_id))

    def with_comments(self, item: Item) -> Item:
        return item if item.comments is not None else replace(item, comments=self._comments(item.id))

    def _comments(self, task_id: str) -> tuple[Comment, ...]:
        """Every comment, oldest first. ClickUp answers 25 per call, newest first; older ones are asked
        for with the date and id of the last one seen."""
        raw: list[JSON] = []
        seen: set[str] = set()
        batch = self.client.comments(task_id)
        while batch:
            fresh = [c for c in batch if str(c.get("id")) not in seen]
            if not fresh:
                break
            raw.extend(fresh)
            seen.update(str(c.get("id")) for c in fresh)
            if len(batch) < COMMENTS_PER_CALL:
                break
            last = batch[-1]
            batch = self.client.comments(task_id, str(last.get("date")), str(last.get("id")))
        comments = [self.normalize_comment(c) for c in raw]
        return tuple(sorted(comments, key=lambda c: (c.created_at, c.id)))

    def find_by_marker(self, marker: str) -> Item | None:
        """The task created from `marker`, scanning each list's newest tasks (closed ones included).

        ClickUp's custom-field filter could ask for it in one request, but a scan of the most recent
        `marker_scan_pages` pages works for both marker kinds, and the task to recover is recent.
        """
        if not _MARKER.match(marker):
            return None  # we could never have written it
        for list_id in self.lists:
            params: JSON = {"include_closed": "true", "subtasks": "true", "order_by": "created",
                            "include_markdown_description": "true"}
            matches: list[Item] = []
            for page in range(self.marker_scan_pages):
                tasks = self.client.tasks_page(list_id, {**params, "page": page}).get("tasks") or []
                matches += [item for item in (self.normalize(task) for task in tasks) if item.marker == marker]
                if not tasks or matches:
                    break
            if matches:
                found = min(matches, key=lambda item: (str(item.fields.get("date_created") or ""), item.id))
                log.info("clickup.find_by_marker.found", tracker=self.name, marker=marker, task=found.id)
                return found
        return None

    # -- normalization -------------------------------------------------------------------------
    def normalize(self, task: JSON) -> Item:
        task_id = str(task["id"])
        description = task.get("markdown_description")
        if description is None:
            description = task.get("description") if task.get("description") is not None \
                else task.get("text_content")
        text, line_marker = split_description_marker(description)
        status = task.get("status")
        priority = task.get("priority")
        list_id = str((task.get("list") or {}).get("id") or self.lists[0])
        fields: dict[str, Any] = {
            "name": task.get("name"),
            "description": text or None,
            "status": status.get("status") if isinstance(status, dict) else status,
            "priority": str(priority.get("priority")) if isinstance(priority, dict) else None,
            "assignees": tuple(sorted(str(a.get("id")) for a in task.get("assignees") or []
                                      if isinstance(a, dict))),
            "tags": tuple(sorted(str(t.get("name")) for t in task.get("tags") or [] if isinstance(t, dict))),
            "due_date": _iso_ms(task.get("due_date")),
            "start_date": _iso_ms(task.get("start_date")),
            "parent": task.get("parent"),
            "list": list_id,
            "date_created": _iso_ms(task.get("date_created")),
        }
        field_marker = None
        for custom in task.get("custom_fields") or []:
            if not isinstance(custom, dict) or "id" not in custom:
                continue
            value = self._custom_value(custom)
            if self.marker_field and str(custom["id"]) == self.marker_field:
                field_marker = value if isinstance(value, str) and _MARKER.match(value) else None
                continue  # our bookkeeping, not a field to sync
            fields[CUSTOM_PREFIX + str(custom["id"])] = value
        marker = field_marker or line_marker
        updated = str(task.get("date_updated") or task.get("date_created") or "0")
        self._known[task_id] = _Known(list_id, marker, fields["assignees"], fields["tags"])
        return Item(tracker=self.name, id=task_id, key=str(task.get("custom_id") or task_id),
                    url=str(task.get("url") or ""), fields=fields,
                    updated_at=parse_ms(updated) or datetime.fromtimestamp(0, UTC), version=updated, marker=marker)

    @staticmethod
    def _custom_value(custom: JSON) -> Any:
        """A task's custom field value in its normalized form (see the module docstring)."""
        if "value" not in custom or custom["value"] is None or custom["value"] == "":
            return None
        value, kind = custom["value"], str(custom.get("type") or "")
        options = ((custom.get("type_config") or {}).get("options")) or []
        if kind in ("number", "currency"):
            number = float(value)
            return int(number) if number.is_integer() else number
        if kind == "date":
            return _iso_ms(value)
        if kind == "drop_down":
            # ClickUp reports the chosen option's orderindex (sometimes its id); we carry its name.
            option = next((o for o in options if value in (o.get("orderindex"), o.get("id"))), None)
            return str(option.get("name")) if option else value
        if kind == "labels":
            names = {str(o.get("id")): str(o.get("label") or o.get("name")) for o in options}
            return tuple(sorted(names.get(str(v), str(v)) for v in value))
        if kind == "checkbox":
            return value is True or str(value).lower() == "true"
        if isinstance(value, dict | list):
            return None  # people, relationships, locations: nothing a mapping can carry
        return value

    @staticmethod
    def normalize_comment(raw: JSON) -> Comment:
        text = raw.get("comment_text")
        if text is None:
            text = "".join(str(part.get("text") or "") for part in raw.get("comment") or [] if isinstance(part, dict))
        body, source = split_comment_marker(str(text).rstrip("\n"))
        user: JSON = raw["user"] if isinstance(raw.get("user"), dict) else {}
        return Comment(id=str(raw["id"]), body=body, public=True, author=str(user.get("username") or ""),
                       created_at=parse_ms(raw.get("date")) or datetime.fromtimestamp(0, UTC),
                       mirrored_from=source)

    # -- writes ------------------------------------------------------------------------------
    def push(self, item_id: str | None, ops: Sequence[Operation]) -> PushResult:
        """Create and/or one PUT with the plain fields, then tag and custom-field writes, then comments.

        Every value is checked (statuses against the list, priorities, dates, option names) before the
        first request, so a bad operation list writes nothing.
        """
        create, values, comments = self._plan(item_id, ops)
        created = False
        last: JSON | None = None
        if create is not None:
            list_id, payload = create
            last = self.client.create_task(list_id, payload)
            item_id = str(last["id"])
            created = True
            self.normalize(last)
            log.info("clickup.push.create", tracker=self.name, list=list_id, task=item_id,
                     marker=self._known[item_id].marker)
            values = {}  # the create body carried every value, custom fields and status included
        assert item_id is not None  # _plan refuses a missing id without a Create
        if values:
            last = self._write(item_id, values) or last
        comment_ids: dict[str, str] = {}
        for op in comments:
            body = op.body if split_comment_marker(op.body)[1] == op.source_id else \
                with_comment_marker(op.body, op.source_id)
            posted = self.client.add_comment(item_id, body)
            comment_ids[op.source_id] = str(posted["id"])
            log.info("clickup.push.comment", tracker=self.name, task=item_id, comment_id=posted.get("id"),
                     source=op.source_id)
        item = self.normalize(last) if last is not None else None
        key = item.key if item is not None else item_id
        return PushResult(item_id=item_id, item_key=key, created=created, comment_ids=comment_ids, item=item)

    def _plan(self, item_id: str | None, ops: Sequence[Operation]
              ) -> tuple[tuple[str, JSON] | None, dict[str, Any], list[AddComment]]:
        create: Create | None = None
        values: dict[str, Any] = {}
        comments: list[AddComment] = []
        for index, op in enumerate(ops):
            if isinstance(op, Create):
                if index != 0 or item_id is not None:
                    raise Permanent(self.name, "Create must be the first operation on a new item")
                create = op
            elif isinstance(op, Transition):
                values["status"] = op.status  # no workflow in ClickUp: a status is written directly
            elif isinstance(op, Update):
                values.update(self._writable(op.fields))
            elif isinstance(op, AddComment):
                if not op.public and not self.allow_internal_comments:
                    raise Permanent(self.name, f"ClickUp has no internal comments: refusing to post the "
                                               f"internal note {op.source_id} where every list member sees it")
                comments.append(op)
        if create is None:
            if item_id is None:
                raise Permanent(self.name, "push without an item id must start with Create")
            known = self._known_for(item_id)
            self._check_values(known.list_id, values)
            return None, values, comments
        fields = dict(create.fields)
        list_id = str(fields.pop("list", None) or self.lists[0])
        if list_id not in self.lists:
            raise Permanent(self.name, f"cannot create in list {list_id!r}: not among the tracker's lists "
                                       f"{list(self.lists)!r}")
        merged = {**self._writable(fields), **values}
        self._check_values(list_id, merged)
        if not merged.get("name"):
            raise Permanent(self.name, "cannot create a task without a name")
        try:
            marker_line(create.marker)
        except ValueError as error:
            raise Permanent(self.name, str(error)) from None
        payload = self._task_payload(list_id, {k: v for k, v in merged.items() if not k.startswith(CUSTOM_PREFIX)},
                                     current=None)
        description = merged.get("description")
        custom = {k[len(CUSTOM_PREFIX):]: self._field_write(list_id, k[len(CUSTOM_PREFIX):], v)
                  for k, v in merged.items() if k.startswith(CUSTOM_PREFIX)}
        if self.marker_field:
            custom[self.marker_field] = create.marker
            payload["markdown_content"] = str(description or "")
        else:
            payload["markdown_content"] = with_description_marker(str(description or ""), create.marker)
        payload["custom_fields"] = [{"id": k, "value": v} for k, v in custom.items() if v is not None]
        return (list_id, payload), merged, comments

    def _writable(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, value in fields.items():
            if name in WRITABLE or name.startswith(CUSTOM_PREFIX):
                if name == CUSTOM_PREFIX + str(self.marker_field):
                    raise Permanent(self.name, f"{name} holds ticketbridge's marker and cannot be mapped")
                out[name] = value
            elif name in READ_ONLY:
                log.warning("clickup.push.read_only_field", tracker=self.name, field=name)
            else:
                raise Permanent(self.name, f"ClickUp tasks have no writable field {name!r} (writable: "
                                           f"{', '.join(WRITABLE)}, {CUSTOM_PREFIX}<field id>)")
        return out

    def _check_values(self, list_id: str, values: Mapping[str, Any]) -> None:
        """Refuse bad values before anything is sent (each conversion raises on its own)."""
        self._task_payload(list_id, {k: v for k, v in values.items() if not k.startswith(CUSTOM_PREFIX)},
                           current=None)
        for name, value in values.items():
            if name.startswith(CUSTOM_PREFIX):
                self._field_write(list_id, name[len(CUSTOM_PREFIX):], value)

    def _task_payload(self, list_id: str, values: Mapping[str, Any], current: _Known | None) -> JSON:
        """Item values -> the task JSON ClickUp's create/update take."""
        payload: JSON = {}
        try:
            for name, value in values.items():
                if name == "name":
                    payload["name"] = "" if value is None else str(value)
                elif name == "description":
                    payload["markdown_content"] = "" if value is None else str(value)
                elif name == "status":
                    payload["status"] = self._status_name(list_id, value)
                elif name == "priority":
                    payload["priority"] = self._priority(value)
                elif name in ("due_date", "start_date"):
                    payload[name] = to_ms(value, name)
                elif name == "assignees":
                    wanted = [_user_id(v) for v in _string_list(name, value)]
                    if current is None:
                        payload["assignees"] = wanted
                    else:
                        have = [int(a) for a in current.assignees]
                        payload["assignees"] = {"add": [a for a in wanted if a not in have],
                                                "rem": [a for a in have if a not in wanted]}
                elif name == "tags":
                    payload["tags"] = _string_list(name, value)
        except ValueError as error:
            raise Permanent(self.name, str(error)) from None
        return payload

    def _status_name(self, list_id: str, value: Any) -> str:
        if value is None:
            raise ValueError("status cannot be empty")
        statuses = self._list_statuses(list_id)
        wanted = str(value).strip().casefold()
        for status in statuses:
            if status.casefold() == wanted:
                return status  # the list's own spelling
        raise ValueError(f"status {value!r} is not a status of list {list_id} (statuses: {', '.join(statuses)})")

    @staticmethod
    def _priority(value: Any) -> int | None:
        if value is None or value == "":
            return None
        if isinstance(value, int) and not isinstance(value, bool) and value in PRIORITY_NAMES:
            return value
        number = PRIORITIES.get(str(value).strip().casefold())
        if number is None:
            raise ValueError(f"priority must be one of {', '.join(PRIORITIES)}, not {value!r}")
        return number

    def _field_write(self, list_id: str, field_id: str, value: Any) -> Any:
        """A normalized custom field value as ClickUp's Set Custom Field Value takes it."""
        definition = self._list_fields(list_id).get(field_id)
        if definition is None:
            raise Permanent(self.name, f"custom field {field_id} is not a field of list {list_id}")
        if value is None or value == "" or value == ():
            return None
        kind = str(definition.get("type") or "")
        options = (definition.get("type_config") or {}).get("options") or []
        try:
            if kind in ("number", "currency"):
                return float(value) if not isinstance(value, int) or isinstance(value, bool) else value
            if kind == "date":
                return to_ms(value, f"{CUSTOM_PREFIX}{field_id}")
            if kind == "drop_down":
                return _option_id(options, value, field_id)
            if kind == "labels":
                return [_option_id(options, v, field_id) for v in _string_list(field_id, value)]
            if kind == "checkbox":
                return bool(value)
        except ValueError as error:
            raise Permanent(self.name, str(error)) from None
        return value if isinstance(value, str | int | float) else str(value)

    def _known_for(self, item_id: str) -> _Known:
        known = self._known.get(item_id)
        if known is None:
            self.normalize(self.client.task(item_id))
            known = self._known[item_id]
        return known

    def _write(self, item_id: str, values: Mapping[str, Any]) -> JSON | None:
        known = self._known_for(item_id)
        plain = {k: v for k, v in values.items() if not k.startswith(CUSTOM_PREFIX) and k != "tags"}
        last: JSON | None = None
        payload = self._task_payload(known.list_id, plain, current=known)
        if "markdown_content" in payload and not self.marker_field:
            payload["markdown_content"] = with_description_marker(payload["markdown_content"], known.marker)
        if payload.get("markdown_content") == "":
            payload["markdown_content"] = " "  # ClickUp clears a description only when sent a space
        if payload:
            last = self.client.update_task(item_id, payload)
            self.normalize(last)  # remembers the new assignees for the next add/rem
            log.info("clickup.push.update", tracker=self.name, task=item_id, fields=sorted(payload))
        if "tags" in values:
            known = self._known[item_id]
            wanted = _string_list("tags", values["tags"])
            for tag in [t for t in wanted if t not in known.tags]:
                self.client.add_tag(item_id, tag)
            for tag in [t for t in known.tags if t not in wanted]:
                self.client.remove_tag(item_id, tag)
            known.tags = tuple(sorted(wanted))
            last = None  # the task changed after the PUT's answer
        for name, value in values.items():
            if name.startswith(CUSTOM_PREFIX):
                field_id = name[len(CUSTOM_PREFIX):]
                self.client.set_field(item_id, field_id, self._field_write(known.list_id, field_id, value))
                log.info("clickup.push.custom_field", tracker=self.name, task=item_id, field=field_id)
                last = None
        return last


def _string_list(name: str, value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, tuple | list | set | frozenset):
        return sorted(str(v) for v in value)
    raise ValueError(f"{name} must be a list of strings, not {type(value).__name__}")


def _user_id(value: str) -> int:
    if not value.strip().isdigit():
        raise ValueError(f"assignees are ClickUp user ids (numbers), not {value!r}")
    return int(value)


def _option_id(options: Sequence[JSON], value: Any, field_id: str) -> str:
    """A drop-down / label option by name (case-insensitive) or id, as its id."""
    text = str(value).strip()
    for option in options:
        if text == str(option.get("id")):
            return text
    for option in options:
        if text.casefold() == str(option.get("name") or option.get("label") or "").casefold():
            return str(option["id"])
    names = ", ".join(str(o.get("name") or o.get("label")) for o in options)
    raise ValueError(f"{value!r} is not an option of custom field {field_id} (options: {names})")


__all__ = ["ClickUpConnector", "marker_line", "parse_ms", "parse_webhook", "split_description_marker",
           "to_ms", "verify_signature", "with_description_marker"]
