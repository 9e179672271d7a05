"""The Zendesk connector: cursor export polling, normalization into `Item`s, coalesced writes.

Rules worth knowing (see also the tests):
- Polling uses the cursor-based incremental ticket export. The first poll starts at
  `start_time=0` (everything); later polls resume from the stored `after_cursor`.
- A ticket's description *is* its first comment in Zendesk. It syncs as the `description`
  field, so the first comment (lowest position in ascending order) is left out of `comments`.
- `description` is read-only after creation; an `Update` that names it is logged and the
  value is not written (Zendesk would ignore it anyway).
- Tickets are read with their people side-loaded (`include=users,organizations`): the
  requester's name, email and phone, the organization's name, and the names and emails of CC'd
  people and followers become `Item.people`, never a field (redaction removes them by exact match
  from text leaving the desk; a mapping cannot sync them).
- Writes are coalesced: Zendesk takes one comment per ticket update, so an `Update` and the
  `AddComment`s after it cost one PUT per comment (the first PUT also carries the fields).
  Fields that follow a `Create` before any comment ride on the create POST.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import structlog

from ...sync.model import (
    AddComment,
    Comment,
    Create,
    Item,
    Operation,
    People,
    PushResult,
    Transition,
    Update,
    split_comment_marker,
)
from ..base import Page
from ..errors import AuthError, Permanent
from ..http import RetryPolicy
from .client import JSON, ZendeskClient

log = structlog.get_logger(__name__)

CUSTOM_PREFIX = "custom_fields."
# external_id written on tickets the bridge creates: "tb:<tracker>:<id>".
_MARKER = re.compile(r"^tb:([a-z][a-z0-9_]*:\S+)$")
_PLAIN_FIELDS = ("subject", "description", "status", "priority", "type", "external_id", "assignee_id", "created_at",
                 "group_id", "requester_id", "due_at")


def _parse_time(value: str | None) -> datetime:
    if not value:
        return datetime.fromtimestamp(0, UTC)
    stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)


def _native(value: Any) -> Any:
    """A JSON value as an Item field value: lists become sorted tuples (order carries no meaning)."""
    if isinstance(value, list):
        return tuple(sorted(value, key=str))
    return value


def _api_value(value: Any) -> Any:
    return list(value) if isinstance(value, tuple | list | set | frozenset) else value


def people_of(ticket: JSON, users: Mapping[Any, JSON], organizations: Mapping[Any, JSON]) -> People:
    """The people a ticket is about, from side-loaded users and organizations. Agents on it (the
    assignee, the submitter) are not listed: they are staff, not the customer."""
    requester = users.get(ticket.get("requester_id")) or {}
    others = [users[i] for field in ("collaborator_ids", "email_cc_ids", "follower_ids")
              for i in ticket.get(field) or () if i in users]
    everyone = [requester, *others] if requester else others
    organization = organizations.get(ticket.get("organization_id")) or {}

    def values(key: str, people: list[JSON]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(str(p[key]) for p in people if p.get(key)))

    return People(names=values("name", everyone), emails=values("email", everyone),
                  phones=values("phone", [requester] if requester else []),
                  organizations=(str(organization["name"]),) if organization.get("name") else ())


def _by_id(body: JSON, key: str) -> dict[Any, JSON]:
    return {entry.get("id"): entry for entry in body.get(key) or [] if isinstance(entry, dict)}


def marker_of(external_id: Any) -> str | None:
    if not isinstance(external_id, str):
        return None
    match = _MARKER.match(external_id)
    return match.group(1) if match else None


class ZendeskConnector:
    type = "zendesk"
    transition_field: str | None = None  # status is a plain field on Zendesk
    # The cursor export never re-delivers an unchanged ticket, and second-granular updated_at
    # could make two different updates look like the same version.
    dedupe_versions = False

    def __init__(self, name: str, base_url: str, email: str, token: str, *,
                 retry: RetryPolicy | None = None, export_page_size: int = 1000) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.export_page_size = max(1, min(export_page_size, 1000))
        self.client = ZendeskClient(name, self.base_url, email, token, retry=retry)

    def __repr__(self) -> str:  # never show credentials
        return f"ZendeskConnector(name={self.name!r}, base_url={self.base_url!r})"

    @property
    def requests_made(self) -> int:
        return self.client.requests_made

    # -- reads -----------------------------------------------------------------------------
    def check(self) -> None:
        user = self.client.me().get("user") or {}
        # Zendesk answers /users/me for an unauthenticated caller with an anonymous user.
        if user.get("id") is None:
            raise AuthError(self.name, "GET /api/v2/users/me: not authenticated (anonymous user); "
                                       "check the agent email and API token", status=200)
        log.info("zendesk.check.ok", tracker=self.name, role=user.get("role"))

    def poll(self, cursor: str | None, select: Mapping[str, Any]) -> Iterator[Page]:
        # `select` is not applied here: the engine must also see linked tickets that stopped matching.
        while True:
            body = self.client.export_tickets(cursor=cursor, start_time=0, per_page=self.export_page_size)
            users, organizations = _by_id(body, "users"), _by_id(body, "organizations")
            items = [self.normalize(ticket, users, organizations) for ticket in body.get("tickets") or []]
            after = body.get("after_cursor") or cursor  # never fall back to "everything"
            end = bool(body.get("end_of_stream", True))
            log.info("zendesk.poll.page", tracker=self.name, items=len(items), end_of_stream=end)
            yield Page(items=items, cursor=after)
            if end:
                return
            if after == cursor:
                # A cursor that does not move would loop forever; the stored cursor retries next poll.
                log.warning("zendesk.poll.cursor_stuck", tracker=self.name)
                return
            cursor = after

    def selected(self, item: Item, select: Mapping[str, Any]) -> bool:
        tags = set(item.fields.get("tags") or ())
        statuses = select.get("statuses")
        if statuses is not None and item.fields.get("status") not in set(statuses):
            return False
        tags_any = select.get("tags_any")
        if tags_any is not None and not tags & set(tags_any):
            return False
        tags_none = select.get("tags_none")
        return not (tags_none is not None and tags & set(tags_none))

    def fetch(self, item_id: str) -> Item:
        body = self.client.ticket(item_id)
        item = self.normalize(body["ticket"], _by_id(body, "users"), _by_id(body, "organizations"))
        return replace(item, comments=self._comments(item_id))

    def with_comments(self, item: Item) -> Item:
        if item.comments is not None:
            return item
        # The ticket itself is as fresh as the poll that produced it; only comments are missing.
        return replace(item, comments=self._comments(item.id))

    def find_by_marker(self, marker: str) -> Item | None:
        external_id = f"tb:{marker}"
        body = self.client.tickets_by_external_id(external_id)
        tickets = body.get("tickets") or []
        # external_id is not unique on Zendesk: the oldest ticket carrying it is the one we made.
        matches = sorted((t for t in tickets if t.get("external_id") == external_id), key=lambda t: t["id"])
        if not matches:
            return None
        return self.normalize(matches[0], _by_id(body, "users"), _by_id(body, "organizations"))

    def _comments(self, ticket_id: str) -> tuple[Comment, ...]:
        raw: list[JSON] = []
        roles: dict[Any, str] = {}
        after: str | None = None
        while True:
            body = self.client.comments_page(ticket_id, after)
            raw.extend(body.get("comments") or [])
            roles.update({user.get("id"): str(user.get("role")) for user in body.get("users") or []})
            meta = body.get("meta") or {}
            next_after = meta.get("after_cursor")
            if not meta.get("has_more") or not next_after or next_after == after:
                break
            after = next_after
        # The first comment is the ticket's description, which syncs as a field.
        return tuple(self.normalize_comment(c, roles.get(c.get("author_id"))) for c in raw[1:])

    def normalize_comment(self, raw: JSON, author_role: str | None = None) -> Comment:
        body = raw.get("body") or ""
        plain = raw.get("plain_body")
        text, source = split_comment_marker(plain if plain is not None else body)
        if source is None and plain is not None:
            # plain_body is derived from the HTML; look in the raw body too, so a mangled
            # marker never makes a mirror look like an original.
            _, source = split_comment_marker(body)
        return Comment(id=str(raw["id"]), body=text, public=bool(raw.get("public", True)),
                       author=str(raw.get("author_id")), created_at=_parse_time(raw.get("created_at")),
                       mirrored_from=source, author_role=author_role)

    def normalize(self, ticket: JSON, users: Mapping[Any, JSON] | None = None,
                  organizations: Mapping[Any, JSON] | None = None) -> Item:
        """A ticket as an Item; `users`/`organizations` (side-loaded, by id) give its people."""
        ticket_id = ticket["id"]
        fields: dict[str, Any] = {name: _native(ticket.get(name)) for name in _PLAIN_FIELDS}
        fields["tags"] = tuple(sorted(ticket.get("tags") or []))
        for custom in ticket.get("custom_fields") or []:
            fields[f"{CUSTOM_PREFIX}{custom['id']}"] = _native(custom.get("value"))
        updated = ticket.get("updated_at") or ticket.get("created_at")
        return Item(tracker=self.name, id=str(ticket_id), key=f"#{ticket_id}",
                    url=f"{self.base_url}/agent/tickets/{ticket_id}", fields=fields,
                    updated_at=_parse_time(updated), version=f"{updated}",
                    marker=marker_of(ticket.get("external_id")),
                    people=people_of(ticket, users or {}, organizations or {}))

    # -- writes ----------------------------------------------------------------------------
    def push(self, item_id: str | None, ops: Sequence[Operation]) -> PushResult:
        create, batches = self._plan(item_id, ops)
        created = False
        last: JSON | None = None
        if create is not None:
            spec, marker = create
            log.info("zendesk.push.create", tracker=self.name, marker=marker)
            last = self.client.create_ticket(spec)
            item_id = str(last["ticket"]["id"])
            created = True
        assert item_id is not None  # _plan refuses a missing id without a Create
        comment_ids: dict[str, str] = {}
        for fields, comment in batches:
            spec = self._ticket_spec(fields)
            if comment is not None:
                spec["comment"] = {"body": comment.body, "public": comment.public}
            log.info("zendesk.push.update", tracker=self.name, ticket=item_id, fields=sorted(fields),
                     comment=comment.source_id if comment else None)
            last = self.client.update_ticket(item_id, spec, idempotent=comment is None)
            if comment is not None:
                found = self._created_comment_id(item_id, last, comment)
                if found is not None:
                    comment_ids[comment.source_id] = found
        item = self.normalize(last["ticket"]) if last and isinstance(last.get("ticket"), dict) else None
        return PushResult(item_id=item_id, item_key=f"#{item_id}", created=created,
                          comment_ids=comment_ids, item=item)

    def _plan(self, item_id: str | None, ops: Sequence[Operation]
              ) -> tuple[tuple[JSON, str] | None, list[tuple[dict[str, Any], AddComment | None]]]:
        """Validate the ops and group them into requests before any is sent, so a bad op list
        fails without half-applying."""
        create: tuple[JSON, str] | None = None
        create_fields: dict[str, Any] | None = None
        marker = ""
        rest = list(ops)
        if rest and isinstance(rest[0], Create):
            first = rest.pop(0)
            assert isinstance(first, Create)
            create_fields = dict(first.fields)
            marker = first.marker
        elif item_id is None:
            raise Permanent(self.name, "push without an item id must start with Create")
        batches: list[tuple[dict[str, Any], AddComment | None]] = []
        for op in rest:
            if isinstance(op, Create):
                raise Permanent(self.name, "Create must be the first operation")
            if isinstance(op, Transition):
                raise Permanent(self.name, f"Zendesk has no workflow transitions (status is a field): "
                                           f"cannot transition to {op.status!r}")
            if isinstance(op, Update):
                fields = dict(op.fields)
                if create_fields is not None and not batches:
                    create_fields.update(fields)  # rides on the create POST
                    continue
                if "description" in fields:
                    fields.pop("description")
                    log.warning("zendesk.push.description_readonly", tracker=self.name, ticket=item_id)
                if not batches:
                    batches.append(({}, None))
                batches[-1][0].update(fields)
            elif isinstance(op, AddComment):
                if batches and batches[-1][1] is None:
                    batches[-1] = (batches[-1][0], op)
                else:
                    batches.append(({}, op))
        if create_fields is not None:
            create = (self._create_spec(create_fields, marker), marker)
        # An Update left empty (it only named the read-only description) is not worth a request.
        return create, [(fields, comment) for fields, comment in batches if fields or comment]

    def _create_spec(self, fields: Mapping[str, Any], marker: str) -> JSON:
        rest = dict(fields)
        description = rest.pop("description", None)
        spec = self._ticket_spec(rest)
        subject = spec.get("subject") or ""
        # A bridge-made ticket opens with an internal note: never a public email to a requester.
        spec["comment"] = {"body": description or subject or "(no description)", "public": False}
        spec["external_id"] = f"tb:{marker}"
        return spec

    @staticmethod
    def _ticket_spec(fields: Mapping[str, Any]) -> JSON:
        """Flat Item fields -> the API's ticket shape."""
        spec: JSON = {}
        custom: list[JSON] = []
        for name, value in fields.items():
            if name.startswith(CUSTOM_PREFIX):
                raw_id = name[len(CUSTOM_PREFIX):]
                custom.append({"id": int(raw_id) if raw_id.isdigit() else raw_id, "value": _api_value(value)})
            elif name == "tags":
                spec["tags"] = sorted(value or [])
            else:
                spec[name] = _api_value(value)
        if custom:
            spec["custom_fields"] = custom
        return spec

    def _created_comment_id(self, ticket_id: str, response: JSON, comment: AddComment) -> str | None:
        events = (response.get("audit") or {}).get("events") or []
        for event in events:
            if event.get("type") in ("Comment", "VoiceComment") and event.get("id") is not None:
                return str(event["id"])
        # No audit in the answer: find our comment by the marker the engine put in its body.
        log.info("zendesk.push.comment_id_lookup", tracker=self.name, ticket=ticket_id)
        for found in reversed(self._comments(ticket_id)):
            if found.mirrored_from == comment.source_id:
                return found.id
        # The comment is posted; failing the item now would only hide that. The engine adopts the
        # mirror by its marker on the next sync.
        log.warning("zendesk.push.comment_id_missing", tracker=self.name, ticket=ticket_id,
                    source=comment.source_id)
        return None
