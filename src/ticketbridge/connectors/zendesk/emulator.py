"""A stateful Zendesk Support API v2 emulator on loopback.

Written from Zendesk's published API description and recorded responses (see
`shared/reference`), independently of ticketbridge's Zendesk connector, so the connector can be
tested against something that disagrees with it where the connector is wrong.

Covered: ticket create/show/update/list (incl. `external_id` lookup), comments with cursor
pagination, the cursor-based incremental ticket export, users and organizations (side-loaded
with `include=users,organizations` on ticket show, list and export; a ticket takes its
requester's organization, and CCs/followers can be set at creation), ticket fields, Zendesk's
auth, rate-limit and error dialect, and event-subscription webhooks (`zen:event-type:ticket.*`, one
per change, as Zendesk sends them) POSTed from a background thread, signed with
`X-Zendesk-Webhook-Signature` over the timestamp and the body, with drop / duplicate fault switches.
Run standalone for demos with `python -m
ticketbridge.connectors.zendesk.emulator`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import html
import json
import math
import random
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from itertools import takewhile
from typing import Any
from urllib.parse import urlencode

from ticketbridge.connectors.emulator_kit import (
    Faults,
    HTTPError,
    Request,
    Response,
    WebhookDispatcher,
    WebhookFaults,
    WebhookSender,
    basic_credentials,
)

Clock = Callable[[], datetime]
JSON = dict[str, Any]

STATUSES = ("new", "open", "pending", "hold", "solved", "closed")
PRIORITIES = ("urgent", "high", "normal", "low")
TYPES = ("problem", "incident", "question", "task")
ADVERTISED_LIMIT = 700  # Enterprise plan figure, what a real account usually reports
ACCOUNT_ID = 12514403
WEBHOOK_TIMEOUT = 10.0  # what Zendesk is reported to give a receiver
EVENT_VERSION = "2022-11-06"
# The ticket event each changed field raises (Zendesk's event-type catalogue).
FIELD_EVENTS = {
    "subject": "subject_changed", "status": "status_changed", "priority": "priority_changed",
    "type": "type_changed", "external_id": "external_id_changed", "assignee_id": "agent_assignment_changed",
    "group_id": "group_assignment_changed", "due_at": "due_date_changed", "tags": "tags_changed",
    "custom_fields": "custom_field_changed",
}

DEFAULT_CUSTOM_FIELDS: list[JSON] = [
    {"id": 360001, "type": "text", "title": "Product area"},
    {"id": 360002, "type": "tagger", "title": "Environment",
     "custom_field_options": [{"name": "Production", "value": "production"},
                              {"name": "Staging", "value": "staging"}]},
    # The ticket template's severity, chosen on the form by the customer or the agent.
    {"id": 360003, "type": "tagger", "title": "Severity",
     "custom_field_options": [{"name": f"Sev{n}", "value": f"sev{n}"} for n in range(1, 5)]},
    # The escalation fields and the L2 bug template (mappings/policy.yaml `fields:`).
    {"id": 360004, "type": "tagger", "title": "Support level",
     "custom_field_options": [{"name": "L1", "value": "L1"}, {"name": "L2", "value": "L2"}]},
    {"id": 360005, "type": "checkbox", "title": "Incident active"},
    {"id": 360006, "type": "checkbox", "title": "Incident mitigated"},
    {"id": 360007, "type": "text", "title": "RCA link"},
    {"id": 360008, "type": "text", "title": "Date observed"},
    {"id": 360009, "type": "textarea", "title": "Steps to reproduce"},
    {"id": 360011, "type": "text", "title": "Device / OS"},
    {"id": 360012, "type": "text", "title": "Browser"},
    {"id": 360013, "type": "text", "title": "Engineering issue"},
    # Written by ticketbridge's SLA clocks (read-only for agents in a real account).
    {"id": 360100, "type": "text", "title": "First response due"},
    {"id": 360101, "type": "text", "title": "Resolution due"},
    {"id": 360102, "type": "text", "title": "SLA state"},
    {"id": 360103, "type": "text", "title": "SLA severity"},
]



def sign(secret: str, timestamp: str, body: bytes) -> str:
    """`X-Zendesk-Webhook-Signature`: base64 HMAC-SHA256 of the timestamp followed by the body."""
    digest = hmac.new(secret.encode("utf-8"), timestamp.encode("utf-8") + body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def _signature_headers(secret: str, body: bytes) -> dict[str, str]:
    # Stamped when sent, from the wall clock: the receiver judges freshness by its own clock,
    # whatever clock the emulator's tickets run on.
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"X-Zendesk-Webhook-Signature": sign(secret, stamp, body),
            "X-Zendesk-Webhook-Signature-Timestamp": stamp}


def _api_via() -> JSON:
    return {"channel": "api", "source": {"from": {}, "to": {}, "rel": None}}


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_iso(value: str) -> datetime | None:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return None


def _record_invalid(field: str, description: str, error: str = "InvalidValue") -> HTTPError:
    return HTTPError(422, {"error": "RecordInvalid", "description": "Record validation errors",
                           "details": {field: [{"description": description, "error": error}]}})


def _not_found() -> HTTPError:
    return HTTPError(404, {"error": "RecordNotFound", "description": "Not found"})


def _encode_cursor(payload: JSON) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode()


def _decode_cursor(cursor: str, key: str) -> int:
    """Read back an int written by `_encode_cursor`; anything else is a client error."""
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor.encode()))[key]
        if isinstance(value, int):
            return value
    except (binascii.Error, ValueError, KeyError, TypeError):
        pass
    raise HTTPError(400, {"error": "InvalidPaginationParameter",
                          "description": "invalid cursor"})


def _html_of(text: str) -> str:
    paragraphs = "".join(f'<p dir="auto">{html.escape(p)}</p>' for p in text.split("\n\n") if p)
    return f'<div class="zd-comment" dir="auto">{paragraphs}</div>'


def _text_of(markup: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", markup)).strip()


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.arg(name)
    if raw is None or raw == "":
        return default
    try:
        return min(max(int(raw), low), high)
    except ValueError as error:
        raise HTTPError(400, {"error": "InvalidPaginationParameter",
                              "description": f"{name} must be an integer"}) from error


class ZendeskEmulator(WebhookSender):
    name = "zendesk"

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, email: str = "agent@example.com",
                 token: str = "zd-sandbox-token", rate_limit_per_minute: int | None = None,
                 faults: Faults | None = None, export_exclusion_seconds: float = 60.0,
                 clock: Clock | None = None, custom_fields: list[JSON] | None = None,
                 webhook_url: str | None = None, webhook_secret: str | None = None,
                 webhook_faults: WebhookFaults | None = None) -> None:
        self.email = email
        # Zendesk's retries are not documented well enough to copy; one attempt per event.
        self.webhooks = WebhookDispatcher("zendesk", url=webhook_url, secret=webhook_secret, faults=webhook_faults,
                                          signer=_signature_headers, timeout=WEBHOOK_TIMEOUT, attempts=1)
        self.webhook_id = "01GZ" + uuid.uuid5(uuid.NAMESPACE_URL, "ticketbridge-zendesk-webhook").hex[:22].upper()
        self.token = token
        self.export_exclusion_seconds = export_exclusion_seconds
        self.clock: Clock = clock or (lambda: datetime.now(UTC))
        self.custom_field_defs = [dict(f) for f in (custom_fields or DEFAULT_CUSTOM_FIELDS)]
        self._users: dict[int, JSON] = {}
        self._organizations: dict[int, JSON] = {}
        self._tickets: dict[int, JSON] = {}
        self._comments: dict[int, list[JSON]] = {}
        # Export position of each ticket's latest change. generated_timestamp is only
        # second-granular, so the export cursor is built on this sequence instead.
        self._change_seq: dict[int, int] = {}
        self._changed_at: dict[int, datetime] = {}
        self._seq = 0
        self._next_ticket_id = 1
        self._next_user_id = 1_000_001
        self._next_object_id = 9_000_000_001  # comments, audits and audit events share one range
        self._last_remaining = ADVERTISED_LIMIT - 1
        super().__init__(host, port, rate_limit_per_minute=rate_limit_per_minute, faults=faults)
        self.agent = self._new_user("Avery Agent", email, "admin", self.clock())

    # -- routing ---------------------------------------------------------------------------
    def routes(self) -> None:
        self.route("POST", "/api/v2/tickets", self._create_ticket)
        self.route("GET", "/api/v2/tickets", self._list_tickets)
        self.route("GET", "/api/v2/tickets/{id}", self._show_ticket)
        self.route("PUT", "/api/v2/tickets/{id}", self._update_ticket)
        self.route("GET", "/api/v2/tickets/{id}/comments", self._list_comments)
        self.route("GET", "/api/v2/incremental/tickets/cursor", self._export_cursor)
        self.route("GET", "/api/v2/users/me", self._show_me)
        self.route("GET", "/api/v2/users/{id}", self._show_user)
        self.route("GET", "/api/v2/ticket_fields", self._list_ticket_fields)

    def dispatch(self, request: Request) -> Response:
        # Clients (zenpy among them) append `.json` to every path; Zendesk treats both alike.
        if request.path.endswith(".json"):
            request.path = request.path[: -len(".json")]
        return super().dispatch(request)

    def authenticate(self, request: Request) -> Response | None:
        if basic_credentials(request) == (f"{self.email}/token", self.token):
            return None
        return Response(401, {"error": "Couldn't authenticate you"},
                        {"WWW-Authenticate": 'Basic realm="Web Password"'})

    def rate_limit_headers(self, remaining: int, reset_in: float) -> dict[str, str]:
        limit = self.budget.per_minute or ADVERTISED_LIMIT
        remaining = min(remaining, limit - 1)
        self._last_remaining = remaining
        reset = str(math.ceil(reset_in))
        return {"X-Rate-Limit": str(limit), "X-Rate-Limit-Remaining": str(remaining),
                "ratelimit-limit": str(limit), "ratelimit-remaining": str(remaining),
                "ratelimit-reset": reset}

    def rate_limited_response(self, retry_after: float) -> Response:
        return Response(429, {"error": "APIRateLimitExceeded",
                              "description": "Number of allowed API requests per minute exceeded"},
                        {"Retry-After": str(max(1, math.ceil(retry_after)))})

    def server_error_response(self) -> Response:
        return Response(503, {"error": "ServiceUnavailable",
                              "description": "Zendesk is temporarily unavailable, please try again later."})

    def not_found_response(self, request: Request) -> Response:
        return Response(404, {"error": "InvalidEndpoint", "description": "Not found"})

    # -- state primitives (callers hold self.lock) -----------------------------------------
    def _object_id(self) -> int:
        self._next_object_id += 1
        return self._next_object_id

    def _new_user(self, name: str, email: str, role: str, now: datetime) -> JSON:
        user_id = self._next_user_id
        self._next_user_id += 1
        user = {
            "id": user_id, "url": f"{self.base_url}/api/v2/users/{user_id}.json", "name": name,
            "email": email, "created_at": _iso(now), "updated_at": _iso(now), "time_zone": "UTC",
            "iana_time_zone": "Etc/UTC", "phone": None, "shared_phone_number": None, "photo": None,
            "locale_id": 1, "locale": "en-US", "organization_id": None, "role": role,
            "verified": True, "external_id": None, "tags": [], "alias": None, "active": True,
            "shared": False, "shared_agent": False, "last_login_at": None,
            "two_factor_auth_enabled": None, "signature": None, "details": None, "notes": None,
            "role_type": None, "custom_role_id": None, "moderator": role != "end-user",
            "ticket_restriction": None if role != "end-user" else "requested",
            "only_private_comments": False, "restricted_agent": False, "suspended": False,
            "default_group_id": None, "report_csv": role == "admin", "user_fields": {},
        }
        self._users[user_id] = user
        return user

    def _new_organization(self, name: str, now: datetime) -> JSON:
        org_id = self._object_id()
        organization = {
            "url": f"{self.base_url}/api/v2/organizations/{org_id}.json", "id": org_id, "name": name,
            "shared_tickets": False, "shared_comments": False, "external_id": None,
            "created_at": _iso(now), "updated_at": _iso(now), "domain_names": [], "details": None,
            "notes": None, "group_id": None, "tags": [], "organization_fields": {},
        }
        self._organizations[org_id] = organization
        return organization

    def _user_ids(self, spec: JSON, field: str) -> list[int]:
        ids = spec.get(field) or []
        if not isinstance(ids, list) or any(i not in self._users for i in ids):
            raise _record_invalid(field, f"{field}: is invalid")
        return sorted(set(ids))

    def _sideloads(self, request: Request, tickets: list[JSON]) -> JSON:
        """`?include=users,organizations`: the people and organizations the tickets name, as
        Zendesk side-loads them next to the tickets (each once)."""
        wanted = set((request.arg("include") or "").split(","))
        body: JSON = {}
        if "users" in wanted:
            ids: set[int] = set()
            for t in tickets:
                ids.update(i for i in (t.get("requester_id"), t.get("submitter_id"), t.get("assignee_id"))
                           if i is not None)
                for field in ("collaborator_ids", "follower_ids", "email_cc_ids"):
                    ids.update(t.get(field) or [])
            body["users"] = [json.loads(json.dumps(self._users[i])) for i in sorted(ids) if i in self._users]
        if "organizations" in wanted:
            org_ids = sorted({t["organization_id"] for t in tickets if t.get("organization_id") is not None})
            body["organizations"] = [json.loads(json.dumps(self._organizations[i])) for i in org_ids
                                     if i in self._organizations]
        return body

    def _end_user(self, name: str | None, email: str, now: datetime) -> JSON:
        for user in self._users.values():
            if user["email"].lower() == email.lower():
                return user
        return self._new_user(name or email.split("@")[0], email, "end-user", now)

    def _get_ticket(self, raw_id: str | int) -> JSON:
        try:
            ticket = self._tickets.get(int(raw_id))
        except ValueError:
            ticket = None
        if ticket is None:
            raise _not_found()
        return ticket

    def _touch(self, ticket: JSON, now: datetime) -> None:
        self._seq += 1
        self._change_seq[ticket["id"]] = self._seq
        self._changed_at[ticket["id"]] = now
        ticket["updated_at"] = _iso(now)
        ticket["generated_timestamp"] = int(now.timestamp())

    def _public(self, ticket: JSON) -> JSON:
        """The ticket as show/create/update return it: the export-only field left out."""
        shown = {k: v for k, v in ticket.items() if k != "generated_timestamp"}
        return json.loads(json.dumps(shown))  # a deep copy, so callers cannot edit our state

    def _exported(self, ticket: JSON) -> JSON:
        return json.loads(json.dumps(ticket))

    def _validate_enums(self, spec: JSON) -> None:
        for field, allowed in (("status", STATUSES), ("priority", PRIORITIES), ("type", TYPES)):
            value = spec.get(field)
            if value is not None and value not in allowed:
                label = field.capitalize()
                raise _record_invalid(field, f"{label}: {value} is not valid for {field}")

    def _merge_custom_fields(self, current: list[JSON], updates: Any) -> list[JSON]:
        if not isinstance(updates, list):
            raise _record_invalid("custom_fields", "Custom fields: must be a list")
        merged = [dict(f) for f in current]
        by_id = {f["id"]: f for f in merged}
        for item in updates:
            if not isinstance(item, dict) or "id" not in item:
                raise _record_invalid("custom_fields", "Custom fields: each entry needs an id")
            # Zendesk silently ignores ids that are not ticket fields of the account.
            if item["id"] in by_id:
                by_id[item["id"]]["value"] = item.get("value")
        return merged

    def _add_comment(self, ticket: JSON, spec: JSON, author_id: int, audit_id: int,
                     now: datetime) -> JSON:
        if spec.get("html_body") is not None:
            html_body = str(spec["html_body"])
            body = _text_of(html_body)
        else:
            body = str(spec.get("body") or "")
            html_body = _html_of(body)
        if not body.strip():
            raise _record_invalid("description", "Description: cannot be blank", "BlankValue")
        comment = {
            "id": self._object_id(), "type": "Comment", "author_id": author_id, "body": body,
            "html_body": html_body, "plain_body": body, "public": bool(spec.get("public", True)),
            "attachments": [], "audit_id": audit_id, "via": _api_via(), "created_at": _iso(now),
            "metadata": {"system": {"client": "ticketbridge-emulator", "ip_address": "127.0.0.1"},
                         "custom": {}},
        }
        self._comments[ticket["id"]].append(comment)
        return comment

    def _audit(self, ticket_id: int, audit_id: int, author_id: int, events: list[JSON],
               now: datetime) -> JSON:
        return {"id": audit_id, "ticket_id": ticket_id, "created_at": _iso(now), "author_id": author_id,
                "metadata": {"system": {"client": "ticketbridge-emulator", "ip_address": "127.0.0.1"},
                             "custom": {}},
                "events": events, "via": _api_via()}

    @staticmethod
    def _comment_event(comment: JSON) -> JSON:
        keys = ("id", "type", "author_id", "body", "html_body", "plain_body", "public", "attachments",
                "audit_id")
        return {k: comment[k] for k in keys}

    def _create(self, spec: JSON, author_id: int, now: datetime) -> tuple[JSON, JSON]:
        comment_spec = spec.get("comment")
        if not isinstance(comment_spec, dict) and spec.get("description"):
            comment_spec = {"body": spec["description"]}  # Zendesk accepts `description` as comment
        if not isinstance(comment_spec, dict):
            raise _record_invalid("description", "Description: cannot be blank", "BlankValue")
        self._validate_enums(spec)
        if isinstance(spec.get("requester"), dict) and spec["requester"].get("email"):
            requester_id = self._end_user(spec["requester"].get("name"), spec["requester"]["email"],
                                          now)["id"]
        elif spec.get("requester_id") is not None:
            requester_id = spec["requester_id"]
            if requester_id not in self._users:
                raise _record_invalid("requester", "Requester: is invalid")
        else:
            requester_id = author_id
        # CCs and followers may be set at creation (Zendesk takes collaborator_ids there).
        collaborators = self._user_ids(spec, "collaborator_ids")
        followers = self._user_ids(spec, "follower_ids")
        email_ccs = self._user_ids(spec, "email_cc_ids") or [
            i for i in collaborators if self._users[i]["role"] == "end-user"]
        ticket_id = self._next_ticket_id
        self._next_ticket_id += 1
        subject = spec.get("subject") or ""
        fields = [{"id": f["id"], "value": None} for f in self.custom_field_defs]
        if spec.get("custom_fields") is not None:
            fields = self._merge_custom_fields(fields, spec["custom_fields"])
        ticket: JSON = {
            "url": f"{self.base_url}/api/v2/tickets/{ticket_id}.json", "id": ticket_id,
            "external_id": spec.get("external_id"), "via": _api_via(),
            "created_at": _iso(now), "updated_at": _iso(now), "type": spec.get("type"),
            "subject": subject, "raw_subject": subject, "description": "",
            "priority": spec.get("priority"), "status": spec.get("status") or "new", "recipient": None,
            "requester_id": requester_id, "submitter_id": author_id,
            "assignee_id": spec.get("assignee_id"),
            # A ticket belongs to its requester's organization.
            "organization_id": self._users[requester_id].get("organization_id") if requester_id in self._users
            else None,
            "group_id": spec.get("group_id"), "collaborator_ids": collaborators, "follower_ids": followers,
            "email_cc_ids": email_ccs, "forum_topic_id": None, "problem_id": None, "has_incidents": False,
            "is_public": bool(comment_spec.get("public", True)), "due_at": spec.get("due_at"),
            "tags": sorted(set(spec.get("tags") or [])), "custom_fields": fields,
            "satisfaction_rating": None, "sharing_agreement_ids": [], "custom_status_id": None,
            "fields": [dict(f) for f in fields], "followup_ids": [], "ticket_form_id": None,
            "brand_id": None, "allow_channelback": False, "allow_attachments": True,
            "from_messaging_channel": False, "generated_timestamp": 0,
        }
        self._tickets[ticket_id] = ticket
        self._comments[ticket_id] = []
        audit_id = self._object_id()
        try:
            comment = self._add_comment(ticket, {**comment_spec}, comment_spec.get("author_id") or author_id,
                                        audit_id, now)
        except HTTPError:
            del self._tickets[ticket_id], self._comments[ticket_id]
            self._next_ticket_id -= 1
            raise
        ticket["description"] = comment["body"]
        self._touch(ticket, now)
        self._emit(ticket, "created", {"current": self._detail(ticket)}, author_id, now)
        events = [self._comment_event(comment)]
        for field in ("subject", "requester_id", "priority", "type", "status", "tags", "external_id",
                      "assignee_id", "group_id"):
            value = ticket[field]
            if field in ("subject", "priority", "type", "status", "requester_id") or value:
                events.append({"id": self._object_id(), "type": "Create", "field_name": field,
                               "value": str(value) if isinstance(value, int) else value})
        return ticket, self._audit(ticket_id, audit_id, author_id, events, now)

    def _update(self, ticket: JSON, spec: JSON, author_id: int, now: datetime) -> JSON:
        if ticket["status"] == "closed":
            raise HTTPError(422, {"error": "RecordInvalid", "description": "Record validation errors",
                                  "details": {"status": [{"description":
                                                          "Status: closed prevents ticket update"}]}})
        if spec.get("safe_update") and spec.get("updated_stamp") is not None:
            stamp = _parse_iso(str(spec["updated_stamp"]))
            if stamp is None or _iso(stamp) != ticket["updated_at"]:
                raise HTTPError(409, {"error": "UpdateConflict", "description":
                                      "Safe Update prevented the update due to outdated ticket data. "
                                      "Please fetch the latest ticket data and try again."})
        self._validate_enums(spec)
        changes: dict[str, Any] = {}
        for field in ("subject", "status", "priority", "type", "external_id", "assignee_id", "group_id",
                      "due_at"):
            if field in spec:
                changes[field] = spec[field]
        if "status" in changes and changes["status"] is None:
            raise _record_invalid("status", "Status: cannot be blank", "BlankValue")
        if "tags" in spec:
            changes["tags"] = sorted(set(spec["tags"] or []))
        if "custom_fields" in spec or "fields" in spec:
            changes["custom_fields"] = self._merge_custom_fields(
                ticket["custom_fields"], spec.get("custom_fields", spec.get("fields")))
        audit_id = self._object_id()
        events: list[JSON] = []
        comment_spec = spec.get("comment")
        if isinstance(comment_spec, dict):
            comment = self._add_comment(ticket, comment_spec, comment_spec.get("author_id") or author_id,
                                        audit_id, now)
            events.append(self._comment_event(comment))
        for field, value in changes.items():
            if ticket[field] == value:
                continue
            events.append({"id": self._object_id(), "type": "Change", "field_name": field,
                           "value": value, "previous_value": ticket[field]})
            ticket[field] = value
            if field == "subject":
                ticket["raw_subject"] = value
            if field == "custom_fields":
                ticket["fields"] = [dict(f) for f in value]
        if events:  # an update that changes nothing leaves the ticket and export position alone
            self._touch(ticket, now)
            self._emit_changes(ticket, events, author_id, now)
        return self._audit(ticket["id"], audit_id, author_id, events, now)

    # -- webhooks (callers hold self.lock) --------------------------------------------------
    def _detail(self, ticket: JSON) -> JSON:
        """The ticket snapshot of an event's `detail`: Zendesk's upper-case keys, ids as strings."""
        def text(value: Any) -> str | None:
            return None if value is None else str(value)

        def upper(value: Any) -> str | None:
            return None if value is None else str(value).upper()

        return {
            "id": str(ticket["id"]), "subject": ticket["subject"], "description": ticket["description"],
            "status": upper(ticket["status"]), "priority": upper(ticket["priority"]), "type": upper(ticket["type"]),
            "tags": list(ticket["tags"]), "external_id": text(ticket["external_id"]),
            "assignee_id": text(ticket["assignee_id"]), "group_id": text(ticket["group_id"]),
            "requester_id": text(ticket["requester_id"]), "submitter_id": text(ticket["submitter_id"]),
            "organization_id": text(ticket["organization_id"]), "brand_id": None, "form_id": None,
            "is_public": ticket["is_public"], "created_at": ticket["created_at"],
            "updated_at": ticket["updated_at"], "due_at": ticket["due_at"], "via": {"channel": "api_call"},
        }

    def _emit_changes(self, ticket: JSON, events: list[JSON], author_id: int, now: datetime) -> None:
        if not self.webhooks.enabled:
            return
        sequence = str(uuid.uuid4())  # groups the events of one action, as Zendesk's event.meta.sequence
        for position, change in enumerate(events, start=1):
            if change.get("type") == "Comment":
                kind = "comment_added"
                body = {"comment": {"id": str(change["id"]), "body": change["body"], "is_public": change["public"],
                                    "author": {"id": str(change["author_id"])}}}
            else:
                kind = FIELD_EVENTS.get(str(change.get("field_name")), "")
                if not kind:
                    continue
                body = {"current": change["value"], "previous": change["previous_value"]}
            body["meta"] = {"sequence": {"id": sequence, "position": position, "total": len(events)}}
            self._emit(ticket, kind, body, author_id, now)

    def _emit(self, ticket: JSON, kind: str, event: JSON, author_id: int, now: datetime) -> None:
        """Queue one event webhook, rendered now so it shows the ticket as the change left it."""
        if not self.webhooks.enabled:
            return
        event_id = str(uuid.uuid4())
        payload = {
            "account_id": ACCOUNT_ID, "detail": self._detail(ticket), "event": event, "id": event_id,
            "subject": f"zen:ticket:{ticket['id']}", "time": now.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "type": f"zen:event-type:ticket.{kind}", "zendesk_event_version": EVENT_VERSION,
        }
        body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
        headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": "Zendesk Webhook",
                   "X-Zendesk-Account-Id": str(ACCOUNT_ID), "X-Zendesk-Webhook-Id": self.webhook_id,
                   "X-Zendesk-Webhook-Invocation-Id": str(uuid.uuid4().int % 10**12)}
        self.webhooks.emit(f"ticket.{kind}", body, headers, delivery_id=event_id)

    # -- handlers --------------------------------------------------------------------------
    @staticmethod
    def _ticket_spec(request: Request) -> JSON:
        try:
            body = request.json()
        except ValueError as error:
            raise HTTPError(400, {"error": "Unprocessable Entity",
                                  "description": "Server could not parse JSON"}) from error
        if not isinstance(body, dict) or not isinstance(body.get("ticket"), dict):
            raise HTTPError(400, {"error": "InvalidParams", "description": "ticket parameter is missing"})
        return body["ticket"]

    def _create_ticket(self, request: Request) -> Response:
        ticket, audit = self._create(self._ticket_spec(request), self.agent["id"], self.clock())
        return Response(201, {"ticket": self._public(ticket), "audit": audit},
                        {"Location": ticket["url"]})

    def _show_ticket(self, request: Request) -> Response:
        ticket = self._get_ticket(request.params["id"])
        return Response(200, {"ticket": self._public(ticket), **self._sideloads(request, [ticket])})

    def _update_ticket(self, request: Request) -> Response:
        ticket = self._get_ticket(request.params["id"])
        audit = self._update(ticket, self._ticket_spec(request), self.agent["id"], self.clock())
        if not audit["events"]:
            self.noop_writes += 1
        return Response(200, {"ticket": self._public(ticket), "audit": audit})

    def _list_tickets(self, request: Request) -> Response:
        external_id = request.arg("external_id")
        tickets = sorted(self._tickets.values(), key=lambda t: t["id"])
        if external_id is not None:
            matches = [self._public(t) for t in tickets if t["external_id"] == external_id]
            return Response(200, {"tickets": matches, "next_page": None, "previous_page": None,
                                  "count": len(matches), **self._sideloads(request, matches)})
        page = _int_param(request, "page", 1, 1, 1_000_000)
        per_page = _int_param(request, "per_page", 100, 1, 100)
        chunk = tickets[(page - 1) * per_page: page * per_page]

        def page_url(number: int) -> str:
            return f"{self.base_url}/api/v2/tickets.json?" + urlencode({"page": number, "per_page": per_page})

        return Response(200, {
            "tickets": [self._public(t) for t in chunk],
            "next_page": page_url(page + 1) if page * per_page < len(tickets) else None,
            "previous_page": page_url(page - 1) if page > 1 else None,
            "count": len(tickets),
            **self._sideloads(request, chunk),
        })

    def _list_comments(self, request: Request) -> Response:
        ticket = self._get_ticket(request.params["id"])
        size = _int_param(request, "page[size]", 100, 1, 100)
        descending = request.arg("sort") == "-created_at"
        # Comment ids grow with creation time, so (created_at, id) order is id order.
        ordered = sorted(self._comments[ticket["id"]], key=lambda c: c["id"], reverse=descending)
        after, before = request.arg("page[after]"), request.arg("page[before]")
        if after:
            mark = _decode_cursor(after, "v")
            ordered = [c for c in ordered if (c["id"] < mark if descending else c["id"] > mark)]
            page, has_more = ordered[:size], len(ordered) > size
        elif before:
            mark = _decode_cursor(before, "v")
            ordered = [c for c in ordered if (c["id"] > mark if descending else c["id"] < mark)]
            page, has_more = ordered[-size:], len(ordered) > size
        else:
            page, has_more = ordered[:size], len(ordered) > size
        meta: JSON = {"has_more": has_more, "after_cursor": None, "before_cursor": None}
        links: JSON = {"prev": None, "next": None}
        if page:
            meta["after_cursor"] = _encode_cursor({"o": "created_at,id", "v": page[-1]["id"]})
            meta["before_cursor"] = _encode_cursor({"o": "created_at,id", "v": page[0]["id"]})
            base = f"{self.base_url}/api/v2/tickets/{ticket['id']}/comments.json?"
            extra = {"sort": request.arg("sort")} if request.arg("sort") else {}
            # Zendesk fills both links whenever the page has items, even on the last page
            # (see fixtures/zendesk/rest_ticket_comments_list.json); clients stop on has_more.
            links["next"] = base + urlencode({**extra, "page[after]": meta["after_cursor"],
                                              "page[size]": size})
            links["prev"] = base + urlencode({**extra, "page[before]": meta["before_cursor"],
                                              "page[size]": size})
        body: JSON = {"comments": json.loads(json.dumps(page)), "meta": meta, "links": links}
        if "users" in (request.arg("include") or "").split(","):
            # Sideloading: the authors of the page's comments, as `?include=users` returns them.
            authors = sorted({c["author_id"] for c in page})
            body["users"] = [json.loads(json.dumps(self._users[a])) for a in authors if a in self._users]
        return Response(200, body)

    def _export_cursor(self, request: Request) -> Response:
        now = self.clock()
        cutoff = now - timedelta(seconds=self.export_exclusion_seconds)
        per_page = _int_param(request, "per_page", 1000, 1, 1000)
        cursor, start_raw = request.arg("cursor"), request.arg("start_time")
        pending = sorted(self._tickets, key=lambda tid: self._change_seq[tid])
        if cursor:
            position = _decode_cursor(cursor, "seq")
            candidates = [tid for tid in pending if self._change_seq[tid] > position]
        elif start_raw is not None:
            try:
                start_time = int(start_raw)
            except ValueError as error:
                raise HTTPError(400, {"error": "InvalidPaginationParameter",
                                      "description": "start_time must be an integer"}) from error
            if start_time > cutoff.timestamp():
                raise HTTPError(422, {"error": "InvalidPaginationParameter",
                                      "description": "Too recent start_time. Use a start_time older than "
                                                     f"{self.export_exclusion_seconds:g} seconds"})
            candidates = [tid for tid in pending if self._tickets[tid]["generated_timestamp"] >= start_time]
            # Tickets before start_time are skipped for good, so the position starts below the
            # first candidate (or at the present when there is none).
            position = self._change_seq[candidates[0]] - 1 if candidates else self._seq
        else:
            raise HTTPError(400, {"error": "InvalidPaginationParameter",
                                  "description": "start_time or cursor is required"})
        # Changes inside the exclusion window are not exported yet. Stop at the first one rather
        # than skipping it: the cursor moves past everything returned, and a backdated change
        # (seed) may follow a hidden one in sequence order.
        visible = list(takewhile(lambda tid: self._changed_at[tid] <= cutoff, candidates))
        page = visible[:per_page]
        if page:
            position = self._change_seq[page[-1]]
        after_cursor = _encode_cursor({"seq": position})
        after_url = f"{self.base_url}/api/v2/incremental/tickets/cursor.json?" + urlencode(
            {"cursor": after_cursor, "per_page": per_page})
        exported = [self._exported(self._tickets[tid]) for tid in page]
        return Response(200, {
            "tickets": exported,
            "after_url": after_url, "after_cursor": after_cursor,
            "before_url": None, "before_cursor": None,
            "end_of_stream": len(visible) <= per_page,
            **self._sideloads(request, exported),
        })

    def _show_me(self, request: Request) -> Response:
        return Response(200, {"user": dict(self.agent)})

    def _show_user(self, request: Request) -> Response:
        try:
            user = self._users.get(int(request.params["id"]))
        except ValueError:
            user = None
        if user is None:
            raise _not_found()
        return Response(200, {"user": dict(user)})

    def _list_ticket_fields(self, request: Request) -> Response:
        created = _iso(datetime(2024, 1, 8, 9, 0, tzinfo=UTC))
        system = [("subject", "Subject"), ("description", "Description"), ("status", "Status"),
                  ("tickettype", "Type"), ("priority", "Priority"), ("group", "Group"),
                  ("assignee", "Assignee")]
        fields: list[JSON] = []
        for position, (kind, title) in enumerate(system, start=1):
            fields.append(self._field_json(100 + position, kind, title, position, created, removable=False))
        for offset, spec in enumerate(self.custom_field_defs, start=len(system) + 1):
            fields.append(self._field_json(spec["id"], spec.get("type", "text"), spec["title"], offset,
                                           created, removable=True,
                                           options=spec.get("custom_field_options")))
        return Response(200, {"ticket_fields": fields, "next_page": None, "previous_page": None,
                              "count": len(fields)})

    def _field_json(self, field_id: int, kind: str, title: str, position: int, created: str, *,
                    removable: bool, options: list[JSON] | None = None) -> JSON:
        field: JSON = {
            "url": f"{self.base_url}/api/v2/ticket_fields/{field_id}.json", "id": field_id, "type": kind,
            "title": title, "raw_title": title, "description": "", "raw_description": "",
            "position": position, "active": True, "required": False, "collapsed_for_agents": False,
            "regexp_for_validation": None, "title_in_portal": title, "raw_title_in_portal": title,
            "visible_in_portal": not removable, "editable_in_portal": False, "required_in_portal": False,
            "tag": None, "created_at": created, "updated_at": created, "removable": removable,
            "key": None, "agent_description": None,
        }
        if options is not None:
            field["custom_field_options"] = [
                {"id": field_id * 10 + i, "name": o["name"], "raw_name": o["name"], "value": o["value"],
                 "default": False} for i, o in enumerate(options, start=1)]
        return field

    # -- Python-level helpers for tests and demos ------------------------------------------
    def add_ticket(self, *, comments: list[JSON] | None = None, created_at: datetime | None = None,
                   **fields: Any) -> JSON:
        """Create a ticket as `POST /tickets` would, then add `comments` (dicts with `body`,
        optional `public`, `author_id`). `created_at` backdates the ticket and its comments."""
        with self.lock:
            now = created_at or self.clock()
            spec = dict(fields)
            if "comment" not in spec and "description" not in spec:
                spec["comment"] = {"body": spec.pop("body", None) or spec.get("subject") or "(no text)"}
            ticket, _ = self._create(spec, self.agent["id"], now)
            for extra in comments or []:
                self._update(ticket, {"comment": extra}, self.agent["id"], now)
            return self._exported(ticket)

    def ticket(self, ticket_id: int) -> JSON:
        """The ticket including the export-only `generated_timestamp`."""
        with self.lock:
            return self._exported(self._get_ticket(ticket_id))

    def tickets(self) -> list[JSON]:
        with self.lock:
            return [self._exported(t) for _, t in sorted(self._tickets.items())]

    def comments(self, ticket_id: int) -> list[JSON]:
        with self.lock:
            self._get_ticket(ticket_id)
            return json.loads(json.dumps(self._comments[ticket_id]))

    def update_ticket(self, ticket_id: int, **changes: Any) -> JSON:
        """Apply a `PUT /tickets/{id}` body (without the `ticket` wrapper) as the agent; raises
        `HTTPError` exactly where the API would answer with an error."""
        with self.lock:
            ticket = self._get_ticket(ticket_id)
            self._update(ticket, changes, self.agent["id"], self.clock())
            return self._exported(ticket)

    def add_comment(self, ticket_id: int, body: str, public: bool = True,
                    author_id: int | None = None) -> JSON:
        with self.lock:
            ticket = self._get_ticket(ticket_id)
            spec: JSON = {"body": body, "public": public}
            if author_id is not None:
                spec["author_id"] = author_id
            self._update(ticket, {"comment": spec}, self.agent["id"], self.clock())
            return json.loads(json.dumps(self._comments[ticket_id][-1]))

    def add_user(self, name: str, email: str, role: str = "end-user", *, phone: str | None = None,
                 organization_id: int | None = None) -> JSON:
        with self.lock:
            if role == "end-user":
                user = self._end_user(name, email, self.clock())
            else:
                user = self._new_user(name, email, role, self.clock())
            if phone is not None:
                user["phone"] = phone
            if organization_id is not None:
                if organization_id not in self._organizations:
                    raise _not_found()
                user["organization_id"] = organization_id
            return dict(user)

    def add_organization(self, name: str) -> JSON:
        with self.lock:
            return dict(self._new_organization(name, self.clock()))

    def seed(self, count: int = 24, rng_seed: int = 7) -> list[JSON]:
        """Create `count` realistic support tickets, spread over the past two weeks (so they are
        already outside the export exclusion window), with replies and internal notes."""
        rng = random.Random(rng_seed)
        with self.lock:
            now = self.clock()
            requesters = [self._end_user(name, email, now) for name, email in _SEED_PEOPLE]
            created: list[JSON] = []
            offsets = sorted((rng.uniform(1, 14 * 24) for _ in range(count)), reverse=True)
            for index, hours_ago in enumerate(offsets):
                subject, body, kind, tags = _SEED_TICKETS[index % len(_SEED_TICKETS)]
                requester = rng.choice(requesters)
                at = now - timedelta(hours=hours_ago)
                status = rng.choice(("new", "open", "open", "pending", "hold", "solved"))
                ticket, _ = self._create({
                    "subject": subject, "comment": {"body": body, "author_id": requester["id"]},
                    "requester_id": requester["id"], "type": kind, "tags": tags,
                    "priority": rng.choice((*PRIORITIES, "normal", "normal")),
                    "status": "new",
                    "custom_fields": [{"id": 360002, "value": rng.choice(("production", "staging"))}],
                }, requester["id"], at)
                if status != "new":
                    at = min(at + timedelta(minutes=rng.randint(5, 90)), now)
                    reply = rng.choice(_SEED_REPLIES)
                    self._update(ticket, {"status": status, "assignee_id": self.agent["id"],
                                          "comment": {"body": reply, "public": True}},
                                 self.agent["id"], at)
                if rng.random() < 0.4:
                    at = min(at + timedelta(minutes=rng.randint(1, 30)), now)
                    note = rng.choice(_SEED_NOTES)
                    self._update(ticket, {"comment": {"body": note, "public": False}}, self.agent["id"], at)
                created.append(self._exported(ticket))
            return created


_SEED_PEOPLE = [
    ("Maria Keller", "maria.keller@northwind.example"), ("Tom Okafor", "tom.okafor@brightlane.example"),
    ("Priya Raman", "priya.raman@fabrikam.example"), ("Lukas Brandt", "lukas.brandt@contoso.example"),
    ("Sofia Marino", "sofia.marino@tailspin.example"), ("James Whitaker", "j.whitaker@adatum.example"),
]

_SEED_TICKETS: list[tuple[str, str, str, list[str]]] = [
    ("Checkout page returns 500 for EU customers",
     "Since this morning every customer with an EU billing address gets a 500 error at checkout.", "incident",
     ["checkout", "eu", "outage"]),
    ("Password reset email never arrives",
     "I requested a reset three times in the last hour and nothing arrived, not even in spam.", "problem",
     ["auth", "email"]),
    ("Invoice PDF shows wrong VAT rate",
     "Our March invoice applies 19% VAT but we are registered in Austria (20%).", "incident",
     ["billing", "vat"]),
    ("How do I export my order history to CSV?",
     "Is there a way to download all orders from 2025 as a spreadsheet?", "question", ["export", "how-to"]),
    ("Mobile app crashes when uploading a photo",
     "The iOS app closes immediately after I pick a photo from the library. iPhone 15, iOS 18.2.",
     "problem", ["mobile", "ios", "crash"]),
    ("Please add SSO for our second domain",
     "We acquired a company and need their domain added to our SAML configuration.", "task",
     ["sso", "enterprise"]),
    ("Search results are empty for product codes with dashes",
     "Searching for 'AB-1200' returns nothing although the product exists.", "problem", ["search"]),
    ("Webhook deliveries delayed by several minutes",
     "Order webhooks reach our endpoint 5-10 minutes late since yesterday.", "incident",
     ["webhooks", "latency"]),
    ("Cannot remove a former employee from our account",
     "The delete button is greyed out for the user account of someone who left.", "question",
     ["users", "admin"]),
    ("API rate limit too low for nightly sync",
     "Our nightly import hits 429 errors after about ten minutes. Can the limit be raised?", "question",
     ["api", "rate-limit"]),
    ("Dashboard charts show no data for last week",
     "The revenue chart is blank for every day between Monday and Sunday.", "incident",
     ["dashboard", "reporting"]),
    ("Shipping label prints with cut-off address",
     "On our Zebra printer the last line of the address is missing from every label.", "problem",
     ["shipping", "printing"]),
]

_SEED_REPLIES = [
    "Thanks for reporting this. We can reproduce it and have escalated it to engineering.",
    "Could you send us a screenshot and the approximate time this happened?",
    "We deployed a fix a few minutes ago. Can you confirm it works for you now?",
    "This is expected behaviour at the moment, but I have passed your feedback to the product team.",
]

_SEED_NOTES = [
    "Linked to the engineering issue; customer is on the enterprise plan, keep them posted daily.",
    "Looks like the same root cause as last week's incident. Checking logs with the on-call engineer.",
    "Customer was promised a callback. Do not close before they confirm.",
]


def main() -> None:
    """Run a seeded emulator in the foreground, for demos and manual poking."""
    import argparse

    parser = argparse.ArgumentParser(description="Zendesk API emulator")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--tickets", type=int, default=24)
    args = parser.parse_args()
    emulator = ZendeskEmulator(port=args.port)
    emulator.seed(args.tickets)
    print(f"Zendesk emulator on {emulator.base_url} (user {emulator.email}/token, "
          f"token {emulator.token})", flush=True)
    emulator.serve_forever()


if __name__ == "__main__":
    main()
