"""A stateful Jira Cloud emulator: the REST API v3 subset a sync service uses (and the same routes under
v2, because the `jira` package mixes both), on a loopback HTTP server.

Written from the Atlassian OpenAPI description and recorded payloads, not from our connector, so that a
connector bug cannot hide behind a matching emulator bug. Rich text is stored as ADF and rendered as plain
(wiki) strings on v2 routes, the way Cloud serves both versions from one data model.

Webhooks (an admin webhook with a secret): `jira:issue_created`, `jira:issue_updated` (with a changelog)
and `comment_created` (which also raises `jira:issue_updated`, as in Cloud), in Cloud's v2 payload shape,
POSTed from a background thread with `X-Hub-Signature: sha256=<hex>` and an
`X-Atlassian-Webhook-Identifier` that a retry or a duplicate keeps; retried on 408/409/425/429/5xx and
connection failures; with drop / duplicate fault switches.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

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

Json = dict[str, Any]
Clock = Callable[[], datetime]

ISSUE_ID_START = 10000
WEBHOOK_TIMEOUT = 20.0  # the response timeout reported for Jira Cloud deliveries
WEBHOOK_ATTEMPTS = 4  # the first try and retries; the exact count is not published
RETRIED_STATUSES = frozenset({408, 409, 425, 429})
# Fields a comment-bearing webhook carries of its issue (Cloud's comment_created payload).
COMMENT_EVENT_FIELDS = ("summary", "issuetype", "project", "assignee", "priority", "status")
# Changelog entries leave out what every change touches.
UNLOGGED_FIELDS = frozenset({"updated", "comment", "statuscategorychangedate"})
SEARCH_MAX_RESULTS = 100
SEARCH_MAX_RESULTS_IDS_ONLY = 5000  # Jira allows far larger pages when only ids/keys are requested
COMMENTS_DEFAULT_MAX = 100
CUSTOM_FIELD_TYPES = ("string", "option", "datetime")

DEFAULT_WORKFLOW: Json = {
    # The first status is where new issues start. Categories are Jira's status category keys.
    "statuses": [
        {"name": "To Do", "category": "new"},
        {"name": "In Progress", "category": "indeterminate"},
        {"name": "In Review", "category": "indeterminate"},
        {"name": "Done", "category": "done"},
    ],
    "transitions": [
        {"name": "Start work", "from": "To Do", "to": "In Progress"},
        {"name": "Submit for review", "from": "In Progress", "to": "In Review"},
        {"name": "Request changes", "from": "In Review", "to": "In Progress"},
        {"name": "Approve", "from": "In Review", "to": "Done"},
        {"name": "Resolve", "from": "In Progress", "to": "Done"},
        {"name": "Reopen", "from": "Done", "to": "To Do"},
        {"name": "Close as won't do", "from": "To Do", "to": "Done"},
        {"name": "Stop work", "from": "In Progress", "to": "To Do"},
    ],
}

DEFAULT_CUSTOM_FIELDS: dict[str, Json] = {
    "customfield_10042": {"name": "Zendesk ticket", "type": "string"},
    "customfield_10043": {"name": "Severity", "type": "option", "options": ["Sev1", "Sev2", "Sev3", "Sev4"]},
    "customfield_10044": {"name": "First response due", "type": "datetime"},
    "customfield_10045": {"name": "Resolution due", "type": "datetime"},
    "customfield_10046": {"name": "SLA state", "type": "string"},
    "customfield_10047": {"name": "RCA due", "type": "datetime"},
}

STATUS_CATEGORIES: dict[str, Json] = {
    "new": {"id": 2, "key": "new", "colorName": "blue-gray", "name": "To Do"},
    "indeterminate": {"id": 4, "key": "indeterminate", "colorName": "yellow", "name": "In Progress"},
    "done": {"id": 3, "key": "done", "colorName": "green", "name": "Done"},
}
PRIORITIES = ("Highest", "High", "Medium", "Low", "Lowest")  # ids "1".."5", as on a new Cloud site
DEFAULT_PRIORITY = "3"
ISSUE_TYPES = ("Bug", "Task", "Story", "Incident")
RESOLUTION_DONE: Json = {"id": "10000", "name": "Done",
                         "description": "Work has been completed on this issue."}

# Fields the API returns but will not let a client write.
READ_ONLY_FIELDS = frozenset({
    "status", "resolution", "resolutiondate", "created", "updated", "comment", "statuscategorychangedate",
    "creator", "key", "id",
})
NOT_NAVIGABLE_FIELDS = frozenset({"comment"})

UNAUTHORIZED = {"errorMessages": ["Client must be authenticated to access this resource."], "errors": {}}
ISSUE_NOT_FOUND = {"errorMessages": ["Issue does not exist or you do not have permission to see it."],
                   "errors": {}}
SEARCH_REMOVED = {
    "errorMessages": [
        "The requested API has been removed. Please migrate to the /rest/api/3/search/jql API. A full "
        "migration guideline is available at https://developer.atlassian.com/changelog/#CHANGE-2046"
    ],
    "errors": {},
}
UNBOUNDED_JQL = "Unbounded JQL queries are not allowed here. Please add a search restriction to your query."
DATE_FORMATS = ("%Y-%m-%d %H:%M", "%Y/%m/%d %H:%M", "%Y-%m-%d", "%Y/%m/%d")


def sign(secret: str, body: bytes) -> str:
    """`X-Hub-Signature` of an admin webhook with a secret: "sha256=" + hex HMAC-SHA256 of the body."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def _retried(status: int | None) -> bool:
    return status is None or status in RETRIED_STATUSES or status >= 500


def error_body(messages: Sequence[str] = (), errors: Mapping[str, str] | None = None) -> Json:
    return {"errorMessages": list(messages), "errors": dict(errors or {})}


def bad_request(messages: Sequence[str] = (), errors: Mapping[str, str] | None = None) -> HTTPError:
    return HTTPError(400, error_body(messages, errors))


def format_time(moment: datetime) -> str:
    """Jira's timestamp format: ms precision, numeric offset without a colon."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def parse_time(text: str) -> datetime:
    """Accept the ISO forms clients send for datetime custom fields (with or without a colon offset)."""
    value = text.strip().replace("Z", "+00:00")
    value = re.sub(r"([+-]\d{2})(\d{2})$", r"\1:\2", value)
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


# -- Atlassian Document Format ---------------------------------------------------------------

def adf_from_text(text: str) -> Json:
    paragraphs = [
        {"type": "paragraph", "content": [{"type": "text", "text": line}] if line else []}
        for line in text.split("\n")
    ]
    return {"type": "doc", "version": 1, "content": paragraphs if text else []}


def adf_to_text(node: Any) -> str:
    """Flatten ADF to text, one line per block; good enough for v2 (wiki) responses and `~` search."""
    if not isinstance(node, dict):
        return ""
    if node.get("type") == "text":
        return str(node.get("text", ""))
    if node.get("type") == "hardBreak":
        return "\n"
    children = [adf_to_text(child) for child in node.get("content") or []]
    joiner = "\n" if node.get("type") in ("doc", "bulletList", "orderedList", "blockquote") else ""
    return joiner.join(children)


def is_adf(value: Any) -> bool:
    return (isinstance(value, dict) and value.get("type") == "doc" and value.get("version") == 1
            and isinstance(value.get("content"), list))


# -- state -----------------------------------------------------------------------------------

@dataclass
class Status:
    id: str
    name: str
    category: str  # a STATUS_CATEGORIES key


@dataclass
class Transition:
    id: str
    name: str
    source: str  # status id
    target: str  # status id


@dataclass
class Comment:
    id: str
    author: str  # accountId
    body: Json  # ADF
    created: datetime
    updated: datetime
    visibility: Json | None = None


@dataclass
class Issue:
    id: str
    key: str
    project: str  # project key
    issuetype: str  # issue type id
    summary: str
    status: str  # status id
    priority: str
    reporter: str
    created: datetime
    updated: datetime
    status_changed: datetime
    description: Json | None = None
    labels: list[str] = field(default_factory=list)
    assignee: str | None = None
    resolution: Json | None = None
    resolutiondate: datetime | None = None
    custom: dict[str, Any] = field(default_factory=dict)
    comments: list[Comment] = field(default_factory=list)
    properties: dict[str, Any] = field(default_factory=dict)

    @property
    def number(self) -> int:
        return int(self.key.rsplit("-", 1)[1])


class JiraEmulator(WebhookSender):
    """Jira Cloud on loopback. Credentials: Basic `email:token`. See the module docstring."""

    name = "jira"

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, email: str = "engineer@example.com",
                 token: str = "jira-sandbox-token", rate_limit_per_minute: int | None = None,
                 faults: Faults | None = None, projects: Iterable[str] = ("ENG",),
                 workflow: Mapping[str, Any] | None = None, clock: Clock | None = None,
                 custom_fields: Mapping[str, Mapping[str, Any]] | None = None, webhook_url: str | None = None,
                 webhook_secret: str | None = None, webhook_faults: WebhookFaults | None = None) -> None:
        self.email = email
        self.webhooks = WebhookDispatcher("jira", url=webhook_url, secret=webhook_secret, faults=webhook_faults,
                                          signer=lambda secret, body: {"X-Hub-Signature": sign(secret, body)},
                                          timeout=WEBHOOK_TIMEOUT, attempts=WEBHOOK_ATTEMPTS, retry=_retried,
                                          retry_header="X-Atlassian-Webhook-Retry")
        self._changelog_id = 10000
        self.token = token
        self.clock: Clock = clock or (lambda: datetime.now(UTC))
        self.account_id = "712020:" + str(uuid.uuid5(uuid.NAMESPACE_URL, "jira-emulator:" + email))
        self.projects: dict[str, Json] = {
            key: {"id": str(10000 + index), "key": key, "name": f"{key} project"}
            for index, key in enumerate(projects)
        }
        self.custom_fields: dict[str, Json] = {k: dict(v) for k, v in
                                               (custom_fields or DEFAULT_CUSTOM_FIELDS).items()}
        for field_id, spec in self.custom_fields.items():
            if not re.fullmatch(r"customfield_\d+", field_id) or spec.get("type") not in CUSTOM_FIELD_TYPES:
                raise ValueError(f"bad custom field definition {field_id}: {spec}")
        self.statuses, self.transitions = self._load_workflow(workflow or DEFAULT_WORKFLOW)
        self.users: dict[str, Json] = {}
        self.issues_by_id: dict[str, Issue] = {}
        self._next_issue_id = ISSUE_ID_START
        self._next_number: dict[str, int] = {}
        self._next_comment_id = 10000
        self._last_remaining = rate_limit_per_minute if rate_limit_per_minute is not None else 1_000_000
        super().__init__(host, port, rate_limit_per_minute=rate_limit_per_minute, faults=faults)
        self.reset()

    def reset(self) -> None:
        """Forget every issue, comment and extra user, so one running server can serve many tests
        (stopping a server costs up to half a second in the kit's serve_forever poll)."""
        with self.lock:
            display_name = self.email.split("@")[0].replace(".", " ").title()
            self.users = {self.account_id: {"displayName": display_name, "emailAddress": self.email}}
            self.issues_by_id = {}
            self._next_issue_id = ISSUE_ID_START
            self._next_number = dict.fromkeys(self.projects, 1)
            self._next_comment_id = 10000
            self.webhooks.reset()
            self.request_log.clear()

    # -- webhooks (callers hold self.lock) ---------------------------------------------------
    def _before(self, issue: Issue) -> tuple[Json, set[str]] | None:
        """What a change is compared with afterwards; None (nothing rendered) without a webhook."""
        if not self.webhooks.enabled:
            return None
        return self._all_fields(issue, "2"), {c.id for c in issue.comments}

    def _after(self, issue: Issue, before: tuple[Json, set[str]] | None) -> None:
        """The webhooks of a change: each new comment, then the issue update with its changelog."""
        if before is None:
            return
        fields, comment_ids = before
        for comment in issue.comments:
            if comment.id not in comment_ids:
                self._emit_comment(issue, comment)
        now = self._all_fields(issue, "2")
        items = [self._changelog_item(name, fields.get(name), value) for name, value in now.items()
                 if name not in UNLOGGED_FIELDS and fields.get(name) != value]
        if items:
            self._changelog_id += 1
            self._emit("jira:issue_updated", issue, issue_event_type_name="issue_generic",
                       changelog={"id": str(self._changelog_id), "items": items})

    @staticmethod
    def _changelog_item(name: str, before: Any, after: Any) -> Json:
        def shown(value: Any) -> tuple[str | None, str | None]:
            if isinstance(value, dict):
                return (str(value["id"]) if "id" in value else None,
                        str(value.get("name") or value.get("displayName") or value.get("value") or ""))
            if isinstance(value, list):
                return None, " ".join(str(v) for v in value)
            return None, None if value is None else str(value)

        (from_id, from_text), (to_id, to_text) = shown(before), shown(after)
        custom = name.startswith("customfield_")
        return {"field": name, "fieldtype": "custom" if custom else "jira", "fieldId": name,
                "from": from_id, "fromString": from_text, "to": to_id, "toString": to_text}

    def _emit_comment(self, issue: Issue, comment: Comment) -> None:
        self._emit("comment_created", issue, fields=COMMENT_EVENT_FIELDS, user=False,
                   comment=self._comment_json(issue, comment, "2"))
        self._emit("jira:issue_updated", issue, issue_event_type_name="issue_commented",
                   comment=self._comment_json(issue, comment, "2"))

    def _emit(self, event: str, issue: Issue, *, fields: Sequence[str] | None = None, user: bool = True,
              **parts: Any) -> None:
        """Queue one delivery, rendered now so it shows the issue as the change left it."""
        if not self.webhooks.enabled:
            return
        payload: Json = {"timestamp": int(self.clock().timestamp() * 1000), "webhookEvent": event, **parts}
        if user:
            payload["user"] = self._user_json(self.account_id, "2")
        payload["issue"] = self._issue_json(issue, "2", list(fields) if fields else None)
        body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
        identifier = str(uuid.uuid4())
        headers = {"Content-Type": "application/json; charset=utf-8",
                   "User-Agent": "Atlassian Webhook HTTP Client",
                   "X-Atlassian-Webhook-Identifier": identifier, "X-Atlassian-Webhook-Flow": "Primary"}
        self.webhooks.emit(event, body, headers, delivery_id=identifier)

    @staticmethod
    def _load_workflow(workflow: Mapping[str, Any]) -> tuple[list[Status], list[Transition]]:
        statuses = [Status(str(10000 + index), spec["name"], spec.get("category", "indeterminate"))
                    for index, spec in enumerate(workflow["statuses"])]
        by_name = {status.name: status.id for status in statuses}
        if not statuses or any(s.category not in STATUS_CATEGORIES for s in statuses):
            raise ValueError("workflow needs statuses with categories new/indeterminate/done")
        transitions = [
            # Ids 11, 21, 31... as Jira numbers the transitions of a new workflow.
            Transition(str(11 + 10 * index), spec["name"], by_name[spec["from"]], by_name[spec["to"]])
            for index, spec in enumerate(workflow["transitions"])
        ]
        return statuses, transitions

    # -- kit hooks ---------------------------------------------------------------------------
    def authenticate(self, request: Request) -> Response | None:
        if basic_credentials(request) == (self.email, self.token):
            return None
        return Response(401, UNAUTHORIZED, {"X-Seraph-LoginReason": "AUTHENTICATED_FAILED",
                                            "WWW-Authenticate": 'Basic realm="protected-area"'})

    def rate_limit_headers(self, remaining: int, reset_in: float) -> dict[str, str]:
        self._last_remaining = remaining
        limit = self.budget.per_minute
        if limit is None:  # unlimited: still send the headers clients parse, with a huge budget
            limit, remaining = 1_000_000, 1_000_000
        headers = {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": str(max(remaining, 0))}
        if remaining < limit / 5:
            headers["X-RateLimit-NearLimit"] = "true"
        return headers

    def rate_limited_response(self, retry_after: float) -> Response:
        seconds = max(1, int(retry_after + 0.999))
        reset = self.clock() + timedelta(seconds=seconds)
        return Response(429, error_body(["Rate limit exceeded."]), {
            "Retry-After": str(seconds),
            "X-RateLimit-Reset": reset.strftime("%Y-%m-%dT%H:%MZ"),
            "RateLimit-Reason": "jira-burst-based",
        })

    def server_error_response(self) -> Response:
        return Response(503, error_body(["Service unavailable"]), {"Retry-After": "1"})

    def not_found_response(self, request: Request) -> Response:
        return Response(404, error_body([f"null for uri: {self.base_url}{request.path}"]))

    # -- routes ------------------------------------------------------------------------------
    def routes(self) -> None:
        table: list[tuple[str, str, Callable[[Request, str], Response]]] = [
            ("GET", "serverInfo", self._server_info),
            ("GET", "myself", self._myself),
            ("GET", "field", self._fields),
            ("GET", "priority", self._priorities),
            ("GET", "status", self._statuses),
            ("GET", "issuetype", self._issue_types),
            ("GET", "project", self._project_list),
            ("GET", "project/{project}", self._project),
            ("POST", "issue", self._create_issue),
            ("GET", "issue/{issue}", self._get_issue),
            ("PUT", "issue/{issue}", self._edit_issue),
            ("GET", "issue/{issue}/transitions", self._get_transitions),
            ("POST", "issue/{issue}/transitions", self._do_transition),
            ("GET", "issue/{issue}/comment", self._get_comments),
            ("POST", "issue/{issue}/comment", self._add_comment),
            ("GET", "issue/{issue}/comment/{comment}", self._get_comment),
            ("GET", "issue/{issue}/properties", self._property_keys),
            ("GET", "issue/{issue}/properties/{key}", self._get_property),
            ("PUT", "issue/{issue}/properties/{key}", self._set_property),
            ("DELETE", "issue/{issue}/properties/{key}", self._delete_property),
            ("GET", "search/jql", self._search),
            ("POST", "search/jql", self._search),
            ("GET", "search", self._search_removed),
            ("POST", "search", self._search_removed),
        ]
        for method, path, handler in table:
            self.route(method, "/rest/api/{api}/" + path, self._versioned(handler))

    def _versioned(self, handler: Callable[[Request, str], Response]) -> Callable[[Request], Response]:
        def run(request: Request) -> Response:
            api = request.params.pop("api")
            if api == "latest":
                api = "2"
            if api not in ("2", "3"):
                return self.not_found_response(request)
            return handler(request, api)
        return run

    # -- URLs and rendering ------------------------------------------------------------------
    def _url(self, api: str, path: str) -> str:
        return f"{self.base_url}/rest/api/{api}/{path}"

    def _user_json(self, account_id: str, api: str) -> Json:
        user = self.users.get(account_id) or {"displayName": account_id}
        avatar = f"{self.base_url}/avatar/{account_id}"
        body: Json = {
            "self": self._url(api, f"user?accountId={account_id}"),
            "accountId": account_id,
            "avatarUrls": {size: f"{avatar}?s={size.split('x')[0]}" for size in
                           ("48x48", "24x24", "16x16", "32x32")},
            "displayName": user["displayName"],
            "active": True,
            "timeZone": "UTC",
            "accountType": "atlassian",
        }
        if user.get("emailAddress"):
            body["emailAddress"] = user["emailAddress"]
        return body

    def _status_json(self, status: Status, api: str) -> Json:
        category = STATUS_CATEGORIES[status.category]
        return {
            "self": self._url(api, f"status/{status.id}"),
            "description": "",
            "iconUrl": f"{self.base_url}/images/icons/statuses/generic.png",
            "name": status.name,
            "id": status.id,
            "statusCategory": {"self": self._url(api, f"statuscategory/{category['id']}"), **category},
        }

    def _priority_json(self, priority_id: str, api: str) -> Json:
        name = PRIORITIES[int(priority_id) - 1]
        return {"self": self._url(api, f"priority/{priority_id}"),
                "iconUrl": f"{self.base_url}/images/icons/priorities/{name.lower()}.svg",
                "name": name, "id": priority_id}

    def _issue_type_json(self, type_id: str, api: str) -> Json:
        name = ISSUE_TYPES[int(type_id) - 10001]
        return {"self": self._url(api, f"issuetype/{type_id}"), "id": type_id, "description": "",
                "iconUrl": f"{self.base_url}/images/icons/issuetypes/{name.lower()}.svg", "name": name,
                "untranslatedName": name, "subtask": False, "avatarId": 10300, "hierarchyLevel": 0}

    def _project_json(self, key: str, api: str) -> Json:
        project = self.projects[key]
        return {"self": self._url(api, f"project/{project['id']}"), **project,
                "projectTypeKey": "software", "simplified": False,
                "avatarUrls": {"48x48": f"{self.base_url}/avatar/project/{project['id']}"}}

    def _rich_text(self, value: Json | None, api: str) -> Any:
        if value is None:
            return None
        return value if api == "3" else adf_to_text(value)

    def _comment_json(self, issue: Issue, comment: Comment, api: str) -> Json:
        body: Json = {
            "self": self._url(api, f"issue/{issue.id}/comment/{comment.id}"),
            "id": comment.id,
            "author": self._user_json(comment.author, api),
            "body": self._rich_text(comment.body, api),
            "updateAuthor": self._user_json(comment.author, api),
            "created": format_time(comment.created),
            "updated": format_time(comment.updated),
            "jsdPublic": True,
        }
        if comment.visibility:
            body["visibility"] = comment.visibility
        return body

    def _status(self, status_id: str) -> Status:
        return next(s for s in self.statuses if s.id == status_id)

    def _all_fields(self, issue: Issue, api: str) -> Json:
        fields: Json = {
            "summary": issue.summary,
            "description": self._rich_text(issue.description, api),
            "status": self._status_json(self._status(issue.status), api),
            "priority": self._priority_json(issue.priority, api),
            "labels": list(issue.labels),
            "issuetype": self._issue_type_json(issue.issuetype, api),
            "project": self._project_json(issue.project, api),
            "created": format_time(issue.created),
            "updated": format_time(issue.updated),
            "statuscategorychangedate": format_time(issue.status_changed),
            "reporter": self._user_json(issue.reporter, api),
            "creator": self._user_json(issue.reporter, api),
            "assignee": self._user_json(issue.assignee, api) if issue.assignee else None,
            "resolution": ({"self": self._url(api, f"resolution/{issue.resolution['id']}"),
                            **issue.resolution} if issue.resolution else None),
            "resolutiondate": format_time(issue.resolutiondate) if issue.resolutiondate else None,
            "comment": {
                "comments": [self._comment_json(issue, c, api) for c in issue.comments],
                "self": self._url(api, f"issue/{issue.id}/comment"),
                "maxResults": len(issue.comments),
                "total": len(issue.comments),
                "startAt": 0,
            },
        }
        for field_id, spec in self.custom_fields.items():
            value = issue.custom.get(field_id)
            if value is not None and spec["type"] == "option":
                value = {"self": self._url(api, f"customFieldOption/{value['id']}"), **value}
            fields[field_id] = value
        return fields

    def _field_names(self) -> dict[str, str]:
        names = {"summary": "Summary", "description": "Description", "status": "Status",
                 "priority": "Priority", "labels": "Labels", "issuetype": "Issue Type", "project": "Project",
                 "created": "Created", "updated": "Updated",
                 "statuscategorychangedate": "Status Category Changed", "reporter": "Reporter",
                 "creator": "Creator", "assignee": "Assignee", "resolution": "Resolution",
                 "resolutiondate": "Resolved", "comment": "Comment"}
        names.update({field_id: spec["name"] for field_id, spec in self.custom_fields.items()})
        return names

    def _issue_json(self, issue: Issue, api: str, fields: Sequence[str] | None = None,
                    expand: str = "", properties: Sequence[str] = ()) -> Json:
        """Render an issue. `fields` are the requested field tokens; None means every field."""
        everything = self._all_fields(issue, api)
        wanted = resolve_fields(fields or ["*all"], list(everything),
                                [f for f in everything if f not in NOT_NAVIGABLE_FIELDS])
        if fields is not None and set(fields) <= {"id"}:
            return {"id": issue.id}  # what /search/jql answers by default: ids and nothing else
        body: Json = {
            "expand": "renderedFields,names,schema,operations,editmeta,changelog,versionedRepresentations",
            "id": issue.id,
            "self": self._url(api, f"issue/{issue.id}"),
            "key": issue.key,
            "fields": {name: everything[name] for name in wanted if name in everything},
        }
        expansions = {item.strip() for item in expand.split(",") if item.strip()}
        if "names" in expansions:
            names = self._field_names()
            body["names"] = {name: names[name] for name in body["fields"]}
        if "renderedFields" in expansions:
            body["renderedFields"] = {
                name: (f"<p>{adf_to_text(issue.description)}</p>" if name == "description"
                       and issue.description else None) for name in body["fields"]}
        if "transitions" in expansions:
            body["transitions"] = [self._transition_json(t, api) for t in self._available(issue)]
        if properties:
            wanted_all = "*all" in properties
            body["properties"] = {key: value for key, value in issue.properties.items()
                                  if wanted_all or key in properties}
        return body

    def _transition_json(self, transition: Transition, api: str) -> Json:
        return {"id": transition.id, "name": transition.name,
                "to": self._status_json(self._status(transition.target), api),
                "hasScreen": False, "isGlobal": False, "isInitial": False, "isAvailable": True,
                "isConditional": False, "isLooped": False}

    # -- lookups -----------------------------------------------------------------------------
    def _find(self, id_or_key: str) -> Issue:
        issue = self.issues_by_id.get(id_or_key)
        if issue is None:
            wanted = id_or_key.upper()
            issue = next((i for i in self.issues_by_id.values() if i.key == wanted), None)
        if issue is None:
            raise HTTPError(404, ISSUE_NOT_FOUND)
        return issue

    def _available(self, issue: Issue) -> list[Transition]:
        return [t for t in self.transitions if t.source == issue.status]

    def _priority_id(self, value: Any) -> str | None:
        if not isinstance(value, dict):
            return None
        if "id" in value and str(value["id"]) in {str(n) for n in range(1, len(PRIORITIES) + 1)}:
            return str(value["id"])
        if value.get("name") in PRIORITIES:
            return str(PRIORITIES.index(value["name"]) + 1)
        return None

    def _issue_type_id(self, value: Any) -> str | None:
        if not isinstance(value, dict):
            return None
        ids = {str(10001 + n): name for n, name in enumerate(ISSUE_TYPES)}
        if str(value.get("id")) in ids:
            return str(value["id"])
        for type_id, name in ids.items():
            if value.get("name") == name:
                return type_id
        return None

    def _project_key(self, value: Any) -> str | None:
        if not isinstance(value, dict):
            return None
        for key, project in self.projects.items():
            if value.get("key") == key or str(value.get("id")) == project["id"]:
                return key
        return None

    def _account(self, value: Any) -> tuple[bool, str | None]:
        """(valid, accountId) for a user field value: {"accountId": ...} or null."""
        if value is None:
            return True, None
        if isinstance(value, dict) and isinstance(value.get("accountId"), str) and value["accountId"]:
            self.users.setdefault(value["accountId"], {"displayName": value["accountId"]})
            return True, value["accountId"]
        return False, None

    def _rich_text_input(self, value: Any, api: str) -> tuple[bool, Json | None]:
        if value is None:
            return True, None
        if api == "3":
            return is_adf(value), value if is_adf(value) else None
        return isinstance(value, str), adf_from_text(value) if isinstance(value, str) else None

    # -- field writes ------------------------------------------------------------------------
    def _apply_fields(self, issue: Issue, values: Mapping[str, Any], api: str,
                      errors: dict[str, str]) -> None:
        """Validate and write settable fields onto `issue`, collecting Jira's per-field errors."""
        for name, value in values.items():
            if name == "project":  # only reached on edit; create resolves the project itself
                key = self._project_key(value)
                if key is None:
                    errors["project"] = "Specify a valid project ID or key"
                elif key != issue.project:
                    errors["project"] = "Issues cannot be moved between projects through this API."
            elif name == "issuetype":
                type_id = self._issue_type_id(value)
                if type_id is None:
                    errors["issuetype"] = "The issue type selected is invalid."
                else:
                    issue.issuetype = type_id
            elif name == "summary":
                if not isinstance(value, str) or not value.strip():
                    errors["summary"] = "You must specify a summary of the issue."
                elif len(value) > 255 or "\n" in value:
                    errors["summary"] = "Summary must be less than 255 characters and on one line."
                else:
                    issue.summary = value
            elif name == "description":
                ok, doc = self._rich_text_input(value, api)
                if ok:
                    issue.description = doc
                else:
                    errors["description"] = ("Operation value must be an Atlassian Document (see the "
                                             "Atlassian Document Format)" if api == "3"
                                             else "Operation value must be a string")
            elif name == "priority":
                priority = self._priority_id(value)
                if priority is None:
                    errors["priority"] = "The priority selected is invalid."
                else:
                    issue.priority = priority
            elif name == "labels":
                problem = label_problem(value)
                if problem:
                    errors["labels"] = problem
                else:
                    issue.labels = list(dict.fromkeys(value))
            elif name in ("assignee", "reporter"):
                ok, account = self._account(value)
                if not ok or (name == "reporter" and account is None):
                    errors[name] = f"Specify a valid value for {name}"
                elif name == "assignee":
                    issue.assignee = account
                else:
                    issue.reporter = account or issue.reporter
            elif name in self.custom_fields:
                ok, stored = self._custom_value(self.custom_fields[name], value)
                if ok:
                    issue.custom[name] = stored
                else:
                    errors[name] = f"Specify a valid value for {self.custom_fields[name]['name']}"
            else:
                errors[name] = (f"Field '{name}' cannot be set. It is not on the appropriate screen, "
                                "or unknown.")

    @staticmethod
    def _custom_value(spec: Mapping[str, Any], value: Any) -> tuple[bool, Any]:
        if value is None:
            return True, None
        if spec["type"] == "string":
            return isinstance(value, str) and len(value) <= 255, value
        if spec["type"] == "datetime":
            if not isinstance(value, str):
                return False, None
            try:
                return True, format_time(parse_time(value))
            except ValueError:
                return False, None
        options: list[str] = list(spec.get("options", []))
        ids = {str(10100 + index): name for index, name in enumerate(options)}
        if isinstance(value, dict):
            for option_id, name in ids.items():
                if value.get("value") == name or str(value.get("id")) == option_id:
                    return True, {"value": name, "id": option_id}
        return False, None

    def _apply_update(self, issue: Issue, update: Mapping[str, Any], api: str,
                      errors: dict[str, str]) -> None:
        """The `update` verbs: add/remove/set for labels, set for scalars, add for comments."""
        for name, operations in update.items():
            if not isinstance(operations, list):
                errors[name] = "Operations must be a list."
                continue
            for operation in operations:
                if not isinstance(operation, dict) or len(operation) != 1:
                    errors[name] = "Each operation must have exactly one verb."
                    continue
                (verb, value), = operation.items()
                if name == "labels" and verb in ("add", "remove") and isinstance(value, str):
                    if verb == "add" and label_problem([value]):
                        errors[name] = label_problem([value]) or ""
                    elif verb == "add" and value not in issue.labels:
                        issue.labels.append(value)
                    elif verb == "remove" and value in issue.labels:
                        issue.labels.remove(value)
                elif name == "comment" and verb == "add" and isinstance(value, dict):
                    ok, body = self._rich_text_input(value.get("body"), api)
                    if ok and body is not None:
                        self._new_comment(issue, body, self.account_id, value.get("visibility"))
                    else:
                        errors["comment"] = "Comment body is not valid!"
                elif verb == "set":
                    self._apply_fields(issue, {name: value}, api, errors)
                else:
                    errors[name] = f"Field '{name}' does not support the '{verb}' operation."

    def _new_comment(self, issue: Issue, body: Json, author: str, visibility: Any = None) -> Comment:
        now = self.clock()
        comment = Comment(str(self._next_comment_id), author, body, now, now,
                          visibility if isinstance(visibility, dict) else None)
        self._next_comment_id += 1
        issue.comments.append(comment)
        issue.updated = now
        return comment

    def _snapshot(self, issue: Issue) -> str:
        return json.dumps(self._all_fields(issue, "3"), sort_keys=True, default=str)

    # -- handlers: metadata ------------------------------------------------------------------
    def _server_info(self, request: Request, api: str) -> Response:
        return Response(200, {
            "baseUrl": self.base_url,
            "version": "1001.0.0-SNAPSHOT",
            "versionNumbers": [1001, 0, 0],
            "deploymentType": "Cloud",
            "buildNumber": 100204,
            "buildDate": "2022-08-12T12:59:12.000+0200",
            "serverTime": format_time(self.clock()),
            "scmInfo": "948b370c557f4bbf768b92203f3aca5d86ee9758",
            "serverTitle": "Jira",
            # Present in the recorded Cloud payload although the OpenAPI ServerInformation schema
            # (additionalProperties: false) does not list it.
            "defaultLocale": {"locale": "en_US"},
        })

    def _myself(self, request: Request, api: str) -> Response:
        body = self._user_json(self.account_id, api)
        body.update({"locale": "en_US", "groups": {"size": 1, "items": []},
                     "applicationRoles": {"size": 1, "items": []}, "expand": "groups,applicationRoles"})
        return Response(200, body)

    def _fields(self, request: Request, api: str) -> Response:
        system: list[tuple[str, str, Json, bool]] = [
            # (id, name, schema, navigable)
            ("issuekey", "Key", {}, True),
            ("summary", "Summary", {"type": "string", "system": "summary"}, True),
            ("description", "Description", {"type": "string", "system": "description"}, True),
            ("status", "Status", {"type": "status", "system": "status"}, True),
            ("priority", "Priority", {"type": "priority", "system": "priority"}, True),
            ("labels", "Labels", {"type": "array", "items": "string", "system": "labels"}, True),
            ("issuetype", "Issue Type", {"type": "issuetype", "system": "issuetype"}, True),
            ("project", "Project", {"type": "project", "system": "project"}, True),
            ("created", "Created", {"type": "datetime", "system": "created"}, True),
            ("updated", "Updated", {"type": "datetime", "system": "updated"}, True),
            ("reporter", "Reporter", {"type": "user", "system": "reporter"}, True),
            ("assignee", "Assignee", {"type": "user", "system": "assignee"}, True),
            ("resolution", "Resolution", {"type": "resolution", "system": "resolution"}, True),
            ("resolutiondate", "Resolved", {"type": "datetime", "system": "resolutiondate"}, True),
            ("comment", "Comment", {"type": "comments-page", "system": "comment"}, False),
        ]
        clause_names = {"issuekey": ["id", "issue", "issuekey", "key"], "issuetype": ["issuetype", "type"],
                        "resolutiondate": ["resolutiondate", "resolved"]}
        body: list[Json] = [
            {"id": fid, "key": fid, "name": name, "custom": False, "orderable": fid not in READ_ONLY_FIELDS,
             "navigable": navigable, "searchable": True, "clauseNames": clause_names.get(fid, [fid]),
             **({"schema": schema} if schema else {})}
            for fid, name, schema, navigable in system
        ]
        plugin = {"string": "textfield", "option": "select", "datetime": "datetime"}
        for field_id, spec in self.custom_fields.items():
            number = int(field_id.split("_")[1])
            body.append({
                "id": field_id, "key": field_id, "name": spec["name"], "untranslatedName": spec["name"],
                "custom": True, "orderable": True, "navigable": True, "searchable": True,
                "clauseNames": [f"cf[{number}]", spec["name"]],
                "schema": {"type": spec["type"], "custom":
                           f"com.atlassian.jira.plugin.system.customfieldtypes:{plugin[spec['type']]}",
                           "customId": number},
            })
        return Response(200, body)

    def _priorities(self, request: Request, api: str) -> Response:
        return Response(200, [self._priority_json(str(n), api) for n in range(1, len(PRIORITIES) + 1)])

    def _statuses(self, request: Request, api: str) -> Response:
        return Response(200, [self._status_json(status, api) for status in self.statuses])

    def _issue_types(self, request: Request, api: str) -> Response:
        return Response(200, [self._issue_type_json(str(10001 + n), api) for n in range(len(ISSUE_TYPES))])

    def _project_list(self, request: Request, api: str) -> Response:
        return Response(200, [self._project_json(key, api) for key in self.projects])

    def _project(self, request: Request, api: str) -> Response:
        ref = request.params["project"]
        key = next((k for k, p in self.projects.items() if ref in (k, p["id"])), None)
        if key is None:
            raise HTTPError(404, error_body([f"No project could be found with key '{ref}'."]))
        body = self._project_json(key, api)
        body["issueTypes"] = [self._issue_type_json(str(10001 + n), api) for n in range(len(ISSUE_TYPES))]
        return Response(200, body)

    # -- handlers: issues --------------------------------------------------------------------
    def _create_issue(self, request: Request, api: str) -> Response:
        payload = json_body(request)
        issue = self._create(payload.get("fields"), api, payload.get("properties"), payload.get("update"))
        return Response(201, {"id": issue.id, "key": issue.key, "self": self._url(api, f"issue/{issue.id}")},
                        {"Location": self._url(api, f"issue/{issue.id}")})

    def _create(self, values: Any, api: str, properties: Any = None, update: Any = None) -> Issue:
        if not isinstance(values, dict):
            raise bad_request(["Issue must have 'fields'."])
        errors: dict[str, str] = {}
        project = self._project_key(values.get("project"))
        if project is None:
            errors["project"] = "Specify a valid project ID or key"
        type_id = self._issue_type_id(values.get("issuetype"))
        if type_id is None:
            errors["issuetype"] = ("Specify an issue type" if "issuetype" not in values
                                   else "The issue type selected is invalid.")
        if "summary" not in values:
            errors["summary"] = "You must specify a summary of the issue."
        now = self.clock()
        issue = Issue(id=str(self._next_issue_id), key="", project=project or "", issuetype=type_id or "",
                      summary="", status=self.statuses[0].id, priority=DEFAULT_PRIORITY,
                      reporter=self.account_id, created=now, updated=now, status_changed=now)
        settable = {k: v for k, v in values.items() if k not in ("project", "issuetype")}
        self._apply_fields(issue, settable, api, errors)
        if isinstance(update, dict):
            self._apply_update(issue, {k: v for k, v in update.items() if k != "comment"}, api, errors)
        props = properties or []
        if not isinstance(props, list) or not all(isinstance(p, dict) and isinstance(p.get("key"), str)
                                                   for p in props):
            errors["properties"] = "Properties must be a list of {key, value} objects."
        if errors:
            raise bad_request([], errors)
        issue.key = f"{project}-{self._next_number[issue.project]}"
        self._next_number[issue.project] += 1
        self._next_issue_id += 1
        issue.properties = {p["key"]: p.get("value") for p in props}
        self.issues_by_id[issue.id] = issue
        if self.webhooks.enabled:
            self._emit("jira:issue_created", issue, issue_event_type_name="issue_created",
                       changelog={"id": str(self._changelog_id), "items": []})
        return issue

    def _get_issue(self, request: Request, api: str) -> Response:
        issue = self._find(request.params["issue"])
        fields = split_list(request.query.get("fields"))
        return Response(200, self._issue_json(issue, api, fields or None, request.arg("expand") or "",
                                              split_list(request.query.get("properties"))))

    def _edit_issue(self, request: Request, api: str) -> Response:
        issue = self._find(request.params["issue"])
        payload = json_body(request)
        if "fields" not in payload and "update" not in payload:
            raise bad_request(["one of 'fields' or 'update' required"])
        values, update = payload.get("fields") or {}, payload.get("update") or {}
        if not isinstance(values, dict) or not isinstance(update, dict):
            raise bad_request(["'fields' and 'update' must be objects"])
        errors: dict[str, str] = {}
        for name in set(values) & set(update):
            errors[name] = f"Field '{name}' cannot be set in both 'fields' and 'update'."
        if errors:
            raise bad_request([], errors)
        # Validate against a copy so a partly invalid request changes nothing, as in Jira.
        draft = Issue(**{**issue.__dict__, "labels": list(issue.labels), "custom": dict(issue.custom),
                         "comments": list(issue.comments)})
        before = self._snapshot(issue)
        hooked = self._before(issue)
        self._apply_fields(draft, values, api, errors)
        self._apply_update(draft, update, api, errors)
        if errors:
            raise bad_request([], errors)
        issue.__dict__.update(draft.__dict__)
        if self._snapshot(issue) != before:
            issue.updated = self.clock()
            self._after(issue, hooked)
        else:
            self.noop_writes += 1
        if request.arg("returnIssue") == "true":
            return Response(200, self._issue_json(issue, api))
        return Response(204)

    def _get_transitions(self, request: Request, api: str) -> Response:
        issue = self._find(request.params["issue"])
        wanted = request.arg("transitionId")
        transitions = [self._transition_json(t, api) for t in self._available(issue)
                       if wanted is None or t.id == wanted]
        if "transitions.fields" in (request.arg("expand") or ""):
            for transition in transitions:
                transition["fields"] = {}
        return Response(200, {"expand": "transitions", "transitions": transitions})

    def _do_transition(self, request: Request, api: str) -> Response:
        issue = self._find(request.params["issue"])
        payload = json_body(request)
        requested = payload.get("transition") if isinstance(payload.get("transition"), dict) else {}
        transition_id = str(requested.get("id", "")) if requested else ""
        if not transition_id:
            raise bad_request(["Missing 'transition' identifier"])
        transition = next((t for t in self._available(issue) if t.id == transition_id), None)
        if transition is None:
            raise bad_request([f"Transition id '{transition_id}' is not valid for this issue."])
        errors: dict[str, str] = {}
        values = {k: v for k, v in (payload.get("fields") or {}).items() if k != "resolution"}
        draft = Issue(**{**issue.__dict__, "labels": list(issue.labels), "custom": dict(issue.custom),
                         "comments": list(issue.comments)})
        self._apply_fields(draft, values, api, errors)
        self._apply_update(draft, payload.get("update") or {}, api, errors)
        if errors:
            raise bad_request([], errors)
        hooked = self._before(issue)
        issue.__dict__.update(draft.__dict__)
        if transition.target == issue.status and not values:
            self.noop_writes += 1  # a looped transition to where the issue already is
        self._move(issue, transition)
        self._after(issue, hooked)
        return Response(204)

    def _move(self, issue: Issue, transition: Transition) -> None:
        now = self.clock()
        old, new = self._status(issue.status), self._status(transition.target)
        issue.status = new.id
        issue.updated = now
        if old.category != new.category:
            issue.status_changed = now
        # Jira's default workflows set a resolution on entering a done status and clear it on leaving.
        if new.category == "done" and issue.resolution is None:
            issue.resolution, issue.resolutiondate = dict(RESOLUTION_DONE), now
        elif new.category != "done":
            issue.resolution, issue.resolutiondate = None, None

    # -- handlers: comments ------------------------------------------------------------------
    def _get_comments(self, request: Request, api: str) -> Response:
        issue = self._find(request.params["issue"])
        start = int_arg(request.arg("startAt"), 0, "startAt")
        limit = int_arg(request.arg("maxResults"), COMMENTS_DEFAULT_MAX, "maxResults")
        order = request.arg("orderBy") or "created"
        if order not in ("created", "+created", "-created"):
            raise bad_request([f"Invalid orderBy value '{order}'."])
        comments = sorted(issue.comments, key=lambda c: (c.created, int(c.id)), reverse=order == "-created")
        page = comments[start:start + limit] if limit > 0 else []
        return Response(200, {"comments": [self._comment_json(issue, c, api) for c in page],
                              "startAt": start, "maxResults": limit, "total": len(comments),
                              "isLast": start + len(page) >= len(comments)})

    def _add_comment(self, request: Request, api: str) -> Response:
        issue = self._find(request.params["issue"])
        payload = json_body(request)
        ok, body = self._rich_text_input(payload.get("body"), api)
        if not ok or body is None or not adf_to_text(body).strip():
            raise bad_request([], {"comment": "Comment body can not be empty!"} if ok
                              else {"comment": "Comment body is not valid!"})
        comment = self._new_comment(issue, body, self.account_id, payload.get("visibility"))
        if self.webhooks.enabled:
            self._emit_comment(issue, comment)
        url = self._url(api, f"issue/{issue.id}/comment/{comment.id}")
        return Response(201, self._comment_json(issue, comment, api), {"Location": url})

    def _get_comment(self, request: Request, api: str) -> Response:
        issue = self._find(request.params["issue"])
        comment = next((c for c in issue.comments if c.id == request.params["comment"]), None)
        if comment is None:
            raise HTTPError(404, error_body(["Can not find a comment for the id: "
                                             f"{request.params['comment']}."]))
        return Response(200, self._comment_json(issue, comment, api))

    # -- handlers: properties ----------------------------------------------------------------
    def _property_keys(self, request: Request, api: str) -> Response:
        issue = self._find(request.params["issue"])
        return Response(200, {"keys": [{"self": self._url(api, f"issue/{issue.id}/properties/{key}"),
                                        "key": key} for key in issue.properties]})

    def _get_property(self, request: Request, api: str) -> Response:
        issue = self._find(request.params["issue"])
        key = request.params["key"]
        if key not in issue.properties:
            raise HTTPError(404, error_body([f"The property with key '{key}' does not exist."]))
        return Response(200, {"key": key, "value": issue.properties[key]})

    def _set_property(self, request: Request, api: str) -> Response:
        issue = self._find(request.params["issue"])
        key = request.params["key"]
        if len(key) > 255:
            raise bad_request(["The property key cannot be longer than 255 characters."])
        if not request.body.strip() or len(request.body) > 32768:
            raise bad_request(["The property value must be non-empty JSON of at most 32768 characters."])
        created = key not in issue.properties
        issue.properties[key] = json_body(request, any_json=True)
        return Response(201 if created else 200)

    def _delete_property(self, request: Request, api: str) -> Response:
        issue = self._find(request.params["issue"])
        if issue.properties.pop(request.params["key"], None) is None:
            raise HTTPError(404, error_body([f"The property with key '{request.params['key']}' "
                                             "does not exist."]))
        return Response(204)

    # -- handlers: search --------------------------------------------------------------------
    def _search_removed(self, request: Request, api: str) -> Response:
        return Response(410, SEARCH_REMOVED)

    def _search(self, request: Request, api: str) -> Response:
        if request.method == "POST":
            payload = json_body(request)
            jql = payload.get("jql") or ""
            token = payload.get("nextPageToken")
            raw_max = payload.get("maxResults")
            fields = split_list(payload.get("fields"))
            expand = payload.get("expand") or ""
            properties = split_list(payload.get("properties"))
            if isinstance(expand, list):
                expand = ",".join(expand)
        else:
            jql = request.arg("jql") or ""
            token = request.arg("nextPageToken")
            raw_max = request.arg("maxResults")
            fields = split_list(request.query.get("fields"))
            expand = request.arg("expand") or ""
            properties = split_list(request.query.get("properties"))
        fields = fields or ["id"]  # /search/jql returns ids only unless told otherwise
        query = JqlQuery.parse(str(jql), self)
        cap = SEARCH_MAX_RESULTS_IDS_ONLY if set(fields) <= {"id", "key"} else SEARCH_MAX_RESULTS
        limit = min(int_arg(None if raw_max is None else str(raw_max), 50, "maxResults"), cap)
        if limit < 1:
            raise bad_request(["maxResults must be greater than 0."])
        digest = hashlib.sha256(query.normalized.encode()).hexdigest()[:16]
        offset = decode_token(token, digest) if token else 0
        matched = query.run(list(self.issues_by_id.values()))
        page = matched[offset:offset + limit]
        body: Json = {"issues": [self._issue_json(issue, api, fields, str(expand), properties)
                                 for issue in page]}
        if offset + limit < len(matched):
            body["nextPageToken"] = encode_token(offset + limit, digest)
            body["isLast"] = False
        else:
            body["isLast"] = True
        if "names" in str(expand):
            names = self._field_names()
            shown = {name for issue in body["issues"] for name in issue.get("fields", {})}
            body["names"] = {name: names[name] for name in sorted(shown)}
        return Response(200, body)

    # -- Python-level helpers (tests, demo) --------------------------------------------------
    def create_issue(self, **fields: Any) -> Json:
        """Create an issue as a user would. Friendly values: project="ENG", issuetype="Task",
        priority="High", description="text", assignee="<accountId>", plus raw REST field values."""
        with self.lock:
            values = self._friendly(fields)
            values.setdefault("project", {"key": next(iter(self.projects))})
            values.setdefault("issuetype", {"name": "Task"})
            try:
                issue = self._create(values, "3")
            except HTTPError as error:
                raise ValueError(error.response.body) from None
            return self._issue_json(issue, "3")

    def issue(self, id_or_key: str) -> Json:
        with self.lock:
            return self._issue_json(self._find_or_raise(id_or_key), "3")

    def issues(self) -> list[Json]:
        with self.lock:
            return [self._issue_json(issue, "3") for issue in self.issues_by_id.values()]

    def status_names(self) -> list[str]:
        return [status.name for status in self.statuses]

    def transition(self, id_or_key: str, status_name: str) -> Json:
        """Walk the workflow (shortest path of valid transitions) to `status_name`."""
        with self.lock:
            issue = self._find_or_raise(id_or_key)
            target = next((s for s in self.statuses if s.name == status_name), None)
            if target is None:
                raise ValueError(f"unknown status {status_name!r}; known: {self.status_names()}")
            path = self._path(issue.status, target.id)
            if path is None:
                current = self._status(issue.status).name
                raise ValueError(f"no workflow path from {current!r} to {status_name!r}")
            hooked = self._before(issue)
            for step in path:
                self._move(issue, step)
            self._after(issue, hooked)
            return self._issue_json(issue, "3")

    def add_comment(self, id_or_key: str, text: str, author: str | None = None) -> Json:
        """Add a comment; `author` is an accountId or display name (created on first use)."""
        with self.lock:
            issue = self._find_or_raise(id_or_key)
            account = self.account_id
            if author:
                fresh = "557058:" + str(uuid.uuid5(uuid.NAMESPACE_URL, "jira-emulator-user:" + author))
                account = next((a for a, u in self.users.items() if author in (a, u["displayName"])), fresh)
                self.users.setdefault(account, {"displayName": author})
            comment = self._new_comment(issue, adf_from_text(text), account)
            if self.webhooks.enabled:
                self._emit_comment(issue, comment)
            return self._comment_json(issue, comment, "3")

    def edit(self, id_or_key: str, **fields: Any) -> Json:
        with self.lock:
            issue = self._find_or_raise(id_or_key)
            before = self._snapshot(issue)
            errors: dict[str, str] = {}
            draft = Issue(**{**issue.__dict__, "labels": list(issue.labels), "custom": dict(issue.custom)})
            self._apply_fields(draft, self._friendly(fields), "3", errors)
            if errors:
                raise ValueError(error_body([], errors))
            hooked = self._before(issue)
            issue.__dict__.update(draft.__dict__)
            if self._snapshot(issue) != before:
                issue.updated = self.clock()
                self._after(issue, hooked)
            return self._issue_json(issue, "3")

    def _find_or_raise(self, id_or_key: str) -> Issue:
        try:
            return self._find(str(id_or_key))
        except HTTPError:
            raise KeyError(id_or_key) from None

    def _friendly(self, fields: Mapping[str, Any]) -> Json:
        values = dict(fields)
        for name in ("project",):
            if isinstance(values.get(name), str):
                values[name] = {"key": values[name]}
        for name in ("issuetype", "priority"):
            if isinstance(values.get(name), str):
                values[name] = {"name": values[name]}
        if isinstance(values.get("description"), str):
            values["description"] = adf_from_text(values["description"])
        for name in ("assignee", "reporter"):
            if isinstance(values.get(name), str):
                values[name] = {"accountId": values[name]}
        for name, spec in self.custom_fields.items():
            if spec["type"] == "option" and isinstance(values.get(name), str):
                values[name] = {"value": values[name]}
        return values

    def _path(self, source: str, target: str) -> list[Transition] | None:
        queue: deque[tuple[str, list[Transition]]] = deque([(source, [])])
        seen = {source}
        while queue:
            status, path = queue.popleft()
            if status == target:
                return path
            for step in self.transitions:
                if step.source == status and step.target not in seen:
                    seen.add(step.target)
                    queue.append((step.target, [*path, step]))
        return None


# -- request helpers -----------------------------------------------------------------------

def json_body(request: Request, any_json: bool = False) -> Any:
    try:
        payload = request.json()
    except (ValueError, UnicodeDecodeError):
        raise bad_request(["Unexpected character in the request body: it is not valid JSON."]) from None
    if any_json:
        return payload
    if payload is None:
        return {}
    if not isinstance(payload, dict):
        raise bad_request(["Can not deserialize the request body: expected a JSON object."])
    return payload


def split_list(values: Any) -> list[str]:
    """Field lists arrive repeated (`fields=a&fields=b`), comma-joined, or as a JSON array."""
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    return [part.strip() for value in values for part in str(value).split(",") if part.strip()]


def int_arg(value: str | None, default: int, name: str) -> int:
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise bad_request([f"The '{name}' parameter must be a number."]) from None


def resolve_fields(tokens: Sequence[str], all_fields: list[str], navigable: list[str]) -> list[str]:
    chosen: list[str] = []
    excluded: set[str] = set()
    for token in tokens:
        if token == "*all":
            chosen += all_fields
        elif token == "*navigable":
            chosen += navigable
        elif token.startswith("-"):
            excluded.add(token[1:])
        else:
            chosen.append(token)
    return [name for name in dict.fromkeys(chosen) if name not in excluded]


def label_problem(value: Any) -> str | None:
    if not isinstance(value, list) or not all(isinstance(label, str) for label in value):
        return "Labels must be a list of strings."
    for label in value:
        if not label or " " in label:
            return f"The label '{label}' contains spaces which is invalid."
        if len(label) > 255:
            return "The label must not exceed 255 characters."
    return None


def encode_token(offset: int, digest: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset, "q": digest}).encode()).decode().rstrip("=")


def decode_token(token: str, digest: str) -> int:
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if data["q"] == digest and isinstance(data["o"], int) and data["o"] >= 0:
            return int(data["o"])
    except (ValueError, KeyError, TypeError, binascii.Error):
        pass
    raise bad_request(["The provided next page token is invalid or does not match this query."])


# -- JQL -----------------------------------------------------------------------------------

_TOKEN = re.compile(r"""\s*(?:
    (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<op>!=|>=|<=|!~|=|>|<|~)
  | (?P<punct>[(),])
  | (?P<word>[^\s"'(),=!<>~]+)
)""", re.VERBOSE)
_KEYWORDS = {"and", "or", "not", "in", "is", "empty", "null", "order", "by", "asc", "desc"}
_RELATIVE = re.compile(r"^([+-]?)(\d+)([mhdw])$")
_EQUALITY_FIELDS = {"project", "key", "issuekey", "id", "labels", "status", "priority", "issuetype", "type",
                    "assignee", "reporter", "resolution", "statuscategory"}
_DATE_FIELDS = {"updated": "updated", "created": "created", "resolutiondate": "resolutiondate",
                "resolved": "resolutiondate"}
_TEXT_FIELDS = {"summary", "description", "text", "comment"}
_SORT_FIELDS = {"updated", "created", "key", "issuekey", "id", "priority", "status", "summary",
                "resolutiondate", "resolved"}


@dataclass
class Token:
    kind: str  # string | op | punct | word | end
    text: str
    position: int

    @property
    def word(self) -> str:
        return self.text.lower() if self.kind == "word" else ""

    @property
    def value(self) -> str:
        if self.kind == "string":
            return re.sub(r"\\(.)", r"\1", self.text[1:-1])
        return self.text


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    position = 0
    while position < len(text):
        if not text[position:].strip():
            break
        match = _TOKEN.match(text, position)
        if not match or match.end() == position:
            raise bad_request([f"Error in the JQL Query: The character '{text[position:].strip()[0]}' "
                               f"is a reserved JQL character. (line 1, character {position + 1})"])
        kind = match.lastgroup or "word"
        tokens.append(Token(kind, match.group(kind), match.start(kind)))
        position = match.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


Predicate = Callable[[Issue], bool]


class JqlQuery:
    """A recursive-descent parser for the JQL subset a sync service uses, compiled to predicates."""

    def __init__(self, text: str, emulator: JiraEmulator) -> None:
        self.text = text
        self.emulator = emulator
        self.tokens = tokenize(text)
        self.index = 0
        self.where: Predicate | None = None
        self.order: list[tuple[str, bool]] = []  # (field, descending)

    @classmethod
    def parse(cls, text: str, emulator: JiraEmulator) -> JqlQuery:
        query = cls(text, emulator)
        if query.peek.kind != "end" and query.peek.word != "order":
            query.where = query.expression()
        if query.peek.word == "order":
            query.order_by()
        if query.peek.kind != "end":
            query.fail(f"Expecting either 'OR' or 'AND' but got '{query.peek.text}'.")
        if query.where is None:
            raise bad_request([UNBOUNDED_JQL])
        return query

    @property
    def normalized(self) -> str:
        return " ".join(token.text for token in self.tokens).lower()

    @property
    def peek(self) -> Token:
        return self.tokens[self.index]

    def take(self) -> Token:
        token = self.tokens[self.index]
        self.index = min(self.index + 1, len(self.tokens) - 1)
        return token

    def fail(self, message: str) -> NoReturn:
        raise bad_request([f"Error in the JQL Query: {message} (line 1, character {self.peek.position + 1})"])

    def expect(self, text: str) -> None:
        token = self.take()
        if token.text.lower() != text:
            self.index -= 1
            self.fail(f"Expecting '{text}' but got '{token.text or '<EOF>'}'.")

    # grammar: expression := term (OR term)* ; term := factor (AND factor)* ;
    #          factor := NOT factor | '(' expression ')' | clause
    def expression(self) -> Predicate:
        parts = [self.term()]
        while self.peek.word == "or":
            self.take()
            parts.append(self.term())
        return parts[0] if len(parts) == 1 else (lambda issue: any(p(issue) for p in parts))

    def term(self) -> Predicate:
        parts = [self.factor()]
        while self.peek.word == "and":
            self.take()
            parts.append(self.factor())
        return parts[0] if len(parts) == 1 else (lambda issue: all(p(issue) for p in parts))

    def factor(self) -> Predicate:
        if self.peek.word == "not":
            self.take()
            inner = self.factor()
            return lambda issue: not inner(issue)
        if self.peek.text == "(":
            self.take()
            inner = self.expression()
            self.expect(")")
            return inner
        return self.clause()

    def operand(self) -> str:
        token = self.take()
        if token.kind not in ("string", "word") or token.word in _KEYWORDS:
            self.index -= 1
            self.fail(f"Expecting a value but got '{token.text or '<EOF>'}'.")
        return token.value

    def clause(self) -> Predicate:
        token = self.take()
        if token.kind not in ("string", "word") or token.word in _KEYWORDS:
            self.index -= 1
            self.fail(f"Expecting a field name but got '{token.text or '<EOF>'}'.")
        name = token.value.lower()
        if name not in _EQUALITY_FIELDS and name not in _DATE_FIELDS and name not in _TEXT_FIELDS:
            raise bad_request([f"Field '{token.value}' does not exist or you do not have permission "
                               "to view it."])
        negate = False
        if self.peek.word == "not":
            self.take()
            negate = True
            if self.peek.word != "in":
                self.fail("Expecting 'IN' after 'NOT'.")
        if self.peek.word == "is":
            self.take()
            if self.peek.word == "not":
                self.take()
                negate = True
            if self.take().word not in ("empty", "null"):
                self.index -= 1
                self.fail("Expecting 'EMPTY' or 'NULL'.")
            getter = self.atoms(name)
            return lambda issue: (not getter(issue)) != negate
        if self.peek.word == "in":
            self.take()
            self.expect("(")
            values = [self.operand()]
            while self.peek.text == ",":
                self.take()
                values.append(self.operand())
            self.expect(")")
            return self.membership(name, values, negate)
        op = self.take()
        if op.kind != "op":
            self.index -= 1
            self.fail(f"Expecting operator but got '{op.text or '<EOF>'}'.")
        value = self.operand()
        if op.text in ("~", "!~"):
            if name not in _TEXT_FIELDS:
                raise bad_request([f"The operator '{op.text}' is not supported by the '{name}' field."])
            needle = value.lower().strip("*")
            texts = self.texts(name)
            return lambda issue: (needle in texts(issue)) != (op.text == "!~")
        if name in _DATE_FIELDS:
            return self.date_clause(_DATE_FIELDS[name], op.text, value)
        if name == "id" and op.text in (">", ">=", "<", "<="):
            if not value.isdigit():
                self.fail(f"'{value}' is not a valid issue id.")
            number = int(value)
            return lambda issue: compare(int(issue.id), op.text, number)
        if op.text not in ("=", "!="):
            raise bad_request([f"The operator '{op.text}' is not supported by the '{name}' field."])
        return self.membership(name, [value], op.text == "!=")

    def membership(self, name: str, values: list[str], negate: bool) -> Predicate:
        if name in _DATE_FIELDS or name in _TEXT_FIELDS:
            raise bad_request([f"The operator 'in' is not supported by the '{name}' field."])
        self.check_values(name, values)
        wanted = {v.lower() for v in values}
        getter = self.atoms(name)
        return lambda issue: bool(wanted & {a.lower() for a in getter(issue)}) != negate

    def check_values(self, name: str, values: list[str]) -> None:
        """Jira rejects a query naming a project or status that does not exist."""
        emulator = self.emulator
        known: set[str] | None = None
        if name == "project":
            known = {k.lower() for k in emulator.projects} | {p["id"] for p in emulator.projects.values()} \
                | {p["name"].lower() for p in emulator.projects.values()}
        elif name == "status":
            known = {s.name.lower() for s in emulator.statuses} | {s.id for s in emulator.statuses}
        if known is not None:
            for value in values:
                if value.lower() not in known:
                    raise bad_request([f"The value '{value}' does not exist for the field '{name}'."])

    def atoms(self, name: str) -> Callable[[Issue], list[str]]:
        emulator = self.emulator

        def project(issue: Issue) -> list[str]:
            data = emulator.projects[issue.project]
            return [data["key"], data["id"], data["name"]]

        def status(issue: Issue) -> list[str]:
            current = emulator._status(issue.status)
            return [current.name, current.id]

        def category(issue: Issue) -> list[str]:
            data = STATUS_CATEGORIES[emulator._status(issue.status).category]
            return [data["key"], data["name"], str(data["id"])]

        def resolved(issue: Issue) -> list[str]:
            return [format_time(issue.resolutiondate)] if issue.resolutiondate else []

        getters: dict[str, Callable[[Issue], list[str]]] = {
            "project": project,
            "key": lambda issue: [issue.key, issue.id],
            "id": lambda issue: [issue.key, issue.id],
            "labels": lambda issue: list(issue.labels),
            "status": status,
            "statuscategory": category,
            "priority": lambda issue: [PRIORITIES[int(issue.priority) - 1], issue.priority],
            "issuetype": lambda issue: [ISSUE_TYPES[int(issue.issuetype) - 10001], issue.issuetype],
            "assignee": lambda issue: [issue.assignee] if issue.assignee else [],
            "reporter": lambda issue: [issue.reporter],
            "resolution": lambda issue: [issue.resolution["name"]] if issue.resolution else [],
            "updated": lambda issue: [format_time(issue.updated)],
            "created": lambda issue: [format_time(issue.created)],
            "resolutiondate": resolved,
            "resolved": resolved,
        }
        getters["issuekey"] = getters["key"]
        getters["type"] = getters["issuetype"]
        if name not in getters:
            raise bad_request([f"The operator 'is' is not supported by the '{name}' field."])
        return getters[name]

    def texts(self, name: str) -> Callable[[Issue], str]:
        def text(issue: Issue) -> str:
            parts: list[str] = []
            if name in ("summary", "text"):
                parts.append(issue.summary)
            if name in ("description", "text"):
                parts.append(adf_to_text(issue.description))
            if name in ("comment", "text"):
                parts.extend(adf_to_text(c.body) for c in issue.comments)
            return "\n".join(parts).lower()
        return text

    def date_clause(self, attribute: str, op: str, value: str) -> Predicate:
        moment = self.date_value(attribute, value)

        def check(issue: Issue) -> bool:
            current = getattr(issue, attribute)
            if current is None:
                return op == "!="
            # Jira compares at the stored (ms) precision against a minute-precision literal.
            return compare(current, op, moment)
        return check

    def date_value(self, attribute: str, value: str) -> datetime:
        relative = _RELATIVE.match(value.strip())
        if relative:
            sign = -1 if relative.group(1) == "-" else 1
            unit = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[relative.group(3)]
            return self.emulator.clock() + sign * timedelta(**{unit: int(relative.group(2))})
        for pattern in DATE_FORMATS:
            try:
                # Literals are read in the user's profile time zone, which is UTC for the emulated user.
                return datetime.strptime(value.strip(), pattern).replace(tzinfo=UTC)
            except ValueError:
                continue
        raise bad_request([
            f"Date value '{value}' for field '{attribute}' is invalid. Valid formats include: "
            "'yyyy/MM/dd HH:mm', 'yyyy-MM-dd HH:mm', 'yyyy/MM/dd', 'yyyy-MM-dd', or a period format "
            "e.g. '-5d', '4w 2d'."])

    def order_by(self) -> None:
        self.expect("order")
        self.expect("by")
        while True:
            token = self.take()
            name = token.value.lower()
            if token.kind not in ("string", "word") or token.word in _KEYWORDS:
                self.index -= 1
                self.fail(f"Expecting a field name but got '{token.text or '<EOF>'}'.")
            if name not in _SORT_FIELDS:
                raise bad_request([f"Not able to sort using field '{token.value}'."])
            descending = False
            if self.peek.word in ("asc", "desc"):
                descending = self.take().word == "desc"
            self.order.append((name, descending))
            if self.peek.text != ",":
                break
            self.take()
        if len(self.order) > 7:
            raise bad_request(["Error in the JQL Query: ORDER BY accepts at most 7 fields."])

    def run(self, issues: list[Issue]) -> list[Issue]:
        assert self.where is not None
        matched = [issue for issue in issues if self.where(issue)]
        # Without ORDER BY we answer in creation order; stable sorts applied last-key-first give the
        # multi-key ordering, with id as the final tie-breaker as Jira does.
        matched.sort(key=lambda issue: int(issue.id))
        for name, descending in reversed(self.order):
            matched.sort(key=self.sort_key(name), reverse=descending)
        return matched

    def sort_key(self, name: str) -> Callable[[Issue], Any]:
        emulator = self.emulator
        keys: dict[str, Callable[[Issue], Any]] = {
            "updated": lambda issue: issue.updated,
            "created": lambda issue: issue.created,
            "key": lambda issue: (issue.project, issue.number),
            "issuekey": lambda issue: (issue.project, issue.number),
            "id": lambda issue: int(issue.id),
            # Jira sorts priority by scheme order (Highest first is "DESC"), statuses by workflow order.
            "priority": lambda issue: -int(issue.priority),
            "status": lambda issue: [s.id for s in emulator.statuses].index(issue.status),
            "summary": lambda issue: issue.summary.lower(),
            "resolutiondate": lambda issue: issue.resolutiondate or datetime.min.replace(tzinfo=UTC),
            "resolved": lambda issue: issue.resolutiondate or datetime.min.replace(tzinfo=UTC),
        }
        return keys[name]


def compare(left: Any, op: str, right: Any) -> bool:
    return {
        "=": left == right, "!=": left != right, ">": left > right,
        ">=": left >= right, "<": left < right, "<=": left <= right,
    }[op]
