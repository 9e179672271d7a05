"""A stateful ClickUp API v2 emulator for the task subset a sync service uses, on a loopback HTTP server.

Written from ClickUp's own v2 OpenAPI description (`shared/reference/openapi/clickup-v2.json`), the
vendor notes collected in `shared/reference/api-facts.md` (section 4) and the recorded payloads in
`shared/reference/fixtures/clickup/`, independently of the ticketbridge connector.

Covered (all under `/api/v2`):

* `GET /list/{id}` (with its statuses), `GET /list/{id}/field` (custom fields);
* tasks of a list: `GET /list/{id}/task` with `page` (0-based, 100 per page, an empty `tasks` list and
  `last_page: true` past the end), `date_updated_gt/lt`, `date_created_gt/lt`, `include_closed`,
  `subtasks`, `archived`, `order_by` (`id|created|updated|due_date`, default `created`), `reverse`,
  `statuses[]`, `assignees[]`, `tags[]`, `include_markdown_description`;
* `GET/PUT /task/{id}`, `POST /list/{id}/task`: name, description / markdown_content, status (checked
  case-insensitively against the list's statuses, stored in the list's spelling), priority 1-4 or null,
  assignees (`{"add","rem"}` on update), tags (on create; `POST/DELETE /task/{id}/tag/{name}` after),
  due/start dates (ms), parent, archived; custom fields on create;
* `POST/DELETE /task/{id}/field/{field_id}`: text, short_text, url, email, number, date (ms),
  drop_down (option id, or the option's orderindex), labels (option ids);
* comments: `GET /task/{id}/comment` (newest first, 25 per call, older ones with `start` + `start_id`),
  `POST /task/{id}/comment` (`comment_text`);
* `GET /user` (the token's user);
* ClickUp's dialect: personal tokens (`Authorization: pk_...`, no prefix) and OAuth tokens
  (`Authorization: Bearer ...`), 401 with `OAUTH_017` (no header) / `OAUTH_025` (unknown token);
  errors as `{"err", "ECODE"}`; timestamps as millisecond strings; `X-RateLimit-Limit/Remaining/Reset`
  (reset as unix seconds) on every response and 429 past the per-token, per-minute budget;
* webhooks: ClickUp's thin payload (`event`, `history_items`, `task_id`, `webhook_id`) POSTed from a
  background thread, signed with `X-Signature` = hex HMAC-SHA256(secret, body), retried up to 5 times
  on failure and then dropped (as ClickUp does), with drop / duplicate fault switches.

Choices where ClickUp's documentation is silent (see api-facts.md, UNCONFIRMED): the default order is
newest first and `reverse=true` flips it; a comment bumps the task's `date_updated`; the ECODE values
of validation errors are representative, not copied from ClickUp. Run standalone with
`python -m ticketbridge.connectors.clickup.emulator`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from ticketbridge.connectors.emulator_kit import Delivery as Delivery  # re-exported: tests and the sandbox
from ticketbridge.connectors.emulator_kit import (
    Faults,
    RateBudget,
    Request,
    Response,
    WebhookDispatcher,
    WebhookSender,
)
from ticketbridge.connectors.emulator_kit import WebhookFaults as WebhookFaults

Json = dict[str, Any]
Clock = Callable[[], datetime]

API = "/api/v2"
DEFAULT_TOKEN = "pk_100001_SANDBOXTOKENFORTICKETBRIDGEEMULATOR0"
DEFAULT_OAUTH_TOKEN = "100001_oauthSandboxTokenForTicketbridge"
TEAM_ID = "9015000001"
SPACE_ID = "90150000101"
FOLDER_ID = "90150000201"
DEFAULT_LIST_ID = "901500000301"
PAGE_SIZE = 100  # tasks per page, as ClickUp's list endpoint
COMMENTS_PER_CALL = 25
RATE_LIMIT_PER_MINUTE = 100  # Free Forever / Unlimited / Business plans
WEBHOOK_TIMEOUT = 7.0  # ClickUp counts a delivery slower than 7 s as failed
WEBHOOK_ATTEMPTS = 5  # ClickUp tries each event this often, then drops it

# (name, type, color) in ClickUp's lower-case spelling; type is open | custom | closed | done.
DEFAULT_STATUSES: tuple[tuple[str, str, str], ...] = (
    ("to do", "open", "#87909e"),
    ("in progress", "custom", "#5f55ee"),
    ("in review", "custom", "#f9d900"),
    ("complete", "closed", "#008844"),
)
# ClickUp's fixed priority scale: id -> (name, color).
PRIORITIES: dict[int, tuple[str, str]] = {
    1: ("urgent", "#f50000"), 2: ("high", "#f8ae00"), 3: ("normal", "#6fddff"), 4: ("low", "#d8d8d8"),
}
FIELD_TYPES = ("text", "short_text", "url", "email", "number", "date", "drop_down", "labels")


def sign(secret: str, body: bytes) -> str:
    """The `X-Signature` value of `body`: hex HMAC-SHA256 keyed with the webhook's secret."""
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


class ClickUpError(Exception):
    """Raised inside a handler to answer with ClickUp's `{"err", "ECODE"}` body."""

    def __init__(self, status: int, err: str, ecode: str) -> None:
        super().__init__(status, err)
        self.status, self.err, self.ecode = status, err, ecode

    def response(self) -> Response:
        return Response(self.status, {"err": self.err, "ECODE": self.ecode})


def bad_request(err: str, ecode: str = "INPUT_005") -> ClickUpError:
    return ClickUpError(400, err, ecode)


# -- state -------------------------------------------------------------------------------------

@dataclass
class Status:
    id: str
    name: str
    type: str
    color: str
    orderindex: int


@dataclass
class CustomField:
    id: str
    name: str
    type: str
    created: int
    options: list[Json] = field(default_factory=list)  # drop_down / labels: {id, name, color, orderindex}


@dataclass
class TaskList:
    id: str
    name: str
    statuses: list[Status]
    fields: list[CustomField]


@dataclass
class Comment:
    id: str
    text: str
    user: int
    date: int


@dataclass
class Task:
    id: str
    list_id: str
    name: str
    description: str
    status: str
    creator: int
    created: int
    updated: int
    priority: int | None = None
    assignees: list[int] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    due_date: int | None = None
    start_date: int | None = None
    parent: str | None = None
    archived: bool = False
    closed: int | None = None
    custom: dict[str, Any] = field(default_factory=dict)  # field id -> stored value
    comments: list[Comment] = field(default_factory=list)  # oldest first


class ClickUpEmulator(WebhookSender):
    """ClickUp's API v2 (tasks subset) on loopback. See the module docstring."""

    name = "clickup"

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, token: str = DEFAULT_TOKEN,
                 oauth_token: str = DEFAULT_OAUTH_TOKEN, rate_limit_per_minute: int = RATE_LIMIT_PER_MINUTE,
                 rate_window: float = 60.0, faults: Faults | None = None, clock: Clock | None = None,
                 webhook_url: str | None = None, webhook_secret: str | None = None,
                 webhook_events: Iterable[str] = ("*",), webhook_faults: WebhookFaults | None = None) -> None:
        self.token = token
        self.oauth_token = oauth_token
        self.clock: Clock = clock or (lambda: datetime.now(UTC))
        # ClickUp tries each event WEBHOOK_ATTEMPTS times until a 2xx answer, then drops it.
        self.webhooks = WebhookDispatcher("clickup", url=webhook_url, secret=webhook_secret, faults=webhook_faults,
                                          signer=lambda secret, body: {"X-Signature": sign(secret, body)},
                                          timeout=WEBHOOK_TIMEOUT, attempts=WEBHOOK_ATTEMPTS)
        self.webhook_events = set(webhook_events)
        self.webhook_id = str(uuid.uuid5(uuid.NAMESPACE_URL, "ticketbridge-clickup-webhook"))
        super().__init__(host, port, rate_limit_per_minute=rate_limit_per_minute, faults=faults)
        # The kit's budget holds the settings (tests shorten `budget.window`); ClickUp counts each token
        # apart, so every token gets its own budget with those settings.
        self.budget.window = rate_window
        self.reset()

    @property
    def rate_limit_per_minute(self) -> int:
        return self.budget.per_minute or RATE_LIMIT_PER_MINUTE

    def reset(self) -> None:
        """Forget every task, list change, rate-limit use, fault and webhook record (configuration stays)."""
        with self.lock:
            self.users: dict[int, Json] = {}
            for user_id, name, email, color in ((100001, "ticketbridge bot", "bot@example.com", "#7b68ee"),
                                                (100002, "Ada Planner", "ada@example.com", "#0231e8"),
                                                (100003, "Grace Builder", "grace@example.com", "#e65100")):
                self.users[user_id] = {"id": user_id, "username": name, "email": email, "color": color}
            self.api_user = 100001  # both tokens belong to this user
            self.default_user = 100002  # the author of what the Python helpers do
            self.lists: dict[str, TaskList] = {}
            self._tasks: dict[str, Task] = {}
            self._next_task = 1
            self._next_comment = 90_000_001
            self._next_history = 2_800_000_000_000_000_001
            self._last_ms = 0
            self._budgets: dict[str, RateBudget] = {}
            self._fail_next: list[tuple[int, Json]] = []
            self.noop_writes = 0
            self.webhooks.reset()
            self.request_log.clear()
            self.add_list("Planning", list_id=DEFAULT_LIST_ID, fields=[
                ("Origin", "short_text", None),
                ("Customer impact", "drop_down", ["none", "some customers", "many customers"]),
                ("Estimate (days)", "number", None),
                ("Target date", "date", None),
                ("Notes", "text", None),
            ])

    # -- kit hooks ---------------------------------------------------------------------------
    def routes(self) -> None:
        table: list[tuple[str, str, Callable[[Request], Response]]] = [
            ("GET", "/user", self._get_user),
            ("GET", "/list/{list_id}", self._get_list),
            ("GET", "/list/{list_id}/field", self._get_fields),
            ("GET", "/list/{list_id}/task", self._list_tasks),
            ("POST", "/list/{list_id}/task", self._create_task),
            ("GET", "/task/{task_id}", self._get_task),
            ("PUT", "/task/{task_id}", self._update_task),
            ("POST", "/task/{task_id}/field/{field_id}", self._set_field),
            ("DELETE", "/task/{task_id}/field/{field_id}", self._remove_field),
            ("POST", "/task/{task_id}/tag/{tag_name}", self._add_tag),
            ("DELETE", "/task/{task_id}/tag/{tag_name}", self._remove_tag),
            ("GET", "/task/{task_id}/comment", self._list_comments),
            ("POST", "/task/{task_id}/comment", self._create_comment),
        ]
        for method, pattern, handler in table:
            self.route(method, API + pattern, self._guarded(handler))

    @staticmethod
    def _guarded(handler: Callable[[Request], Response]) -> Callable[[Request], Response]:
        def run(request: Request) -> Response:
            try:
                return handler(request)
            except ClickUpError as error:
                return error.response()
        return run

    def _token_of(self, request: Request) -> str | None:
        """The token a request authenticates with, or None. Personal tokens come bare, OAuth ones as Bearer."""
        header = request.headers.get("authorization", "").strip()
        if header.startswith("pk_"):
            return header if hmac.compare_digest(header, self.token) else None
        scheme, _, credential = header.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(credential.strip(), self.oauth_token):
            return self.oauth_token
        return None

    def authenticate(self, request: Request) -> Response | None:
        if self._token_of(request) is not None:
            return None
        if not request.headers.get("authorization", "").strip():
            return Response(401, {"err": "Authorization header required", "ECODE": "OAUTH_017"})
        return Response(401, {"err": "Token invalid", "ECODE": "OAUTH_025"})

    def server_error_response(self) -> Response:
        return Response(500, {"err": "Internal server error", "ECODE": "SERVER_500"})

    def not_found_response(self, request: Request) -> Response:
        return Response(404, {"err": "Route not found", "ECODE": "APP_001"})

    def _budget(self, token: str) -> RateBudget:
        with self.lock:
            budget = self._budgets.get(token)
            if budget is None:
                budget = self._budgets[token] = RateBudget(self.budget.per_minute, window=self.budget.window)
            return budget

    def _rate_headers(self, remaining: int, reset_in: float) -> dict[str, str]:
        # X-RateLimit-Reset is a unix timestamp in seconds (api-facts 4.4).
        return {"X-RateLimit-Limit": str(self.rate_limit_per_minute), "X-RateLimit-Remaining": str(remaining),
                "X-RateLimit-Reset": str(math.ceil(time.time() + reset_in))}

    def dispatch(self, request: Request) -> Response:
        """The kit's dispatch with one budget per token, as ClickUp counts requests per token."""
        if self.faults.latency:
            time.sleep(self.faults.latency)
        token = self._token_of(request)
        if token is None:
            denied = self.authenticate(request)
            assert denied is not None
            denied.headers.update(self._rate_headers(self.rate_limit_per_minute, 0.0))
            return denied
        if self.storm_response() is not None:
            return Response(429, {"err": "Rate limit reached", "ECODE": "APP_002"},
                            self._rate_headers(0, self._storm_retry_after))
        budget = self._budget(token)
        allowed, remaining, wait = budget.take()
        if not allowed:
            return Response(429, {"err": "Rate limit reached", "ECODE": "APP_002"}, self._rate_headers(0, wait))
        headers = self._rate_headers(remaining, budget.reset_in())
        with self.lock:
            failure = self._fail_next.pop(0) if self._fail_next else None
        if failure is not None:
            status, body = failure
            return Response(status, body, headers)
        hang = self.faults.hang()
        if hang == "before":
            time.sleep(self.faults.timeout_seconds)
        if self.faults.fail():
            response = self.server_error_response()
        else:
            response = self._route(request)
            if response.status == 405:
                response = self.not_found_response(request)
            if hang == "after":
                time.sleep(self.faults.timeout_seconds)
        for name, value in headers.items():
            response.headers.setdefault(name, value)
        return response

    # -- state primitives (callers hold self.lock) -----------------------------------------
    def _now_ms(self) -> int:
        """Milliseconds, strictly increasing, so every change gets its own `date_updated`."""
        now = max(ms(self.clock()), self._last_ms + 1)
        self._last_ms = now
        return now

    def _list(self, list_id: str) -> TaskList:
        found = self.lists.get(list_id)
        if found is None:
            raise ClickUpError(404, "List not found", "SUBCAT_016")
        return found

    def _task(self, task_id: str) -> Task:
        found = self._tasks.get(task_id)
        if found is None:
            raise ClickUpError(404, "Task not found", "ITEM_013")
        return found

    def _status(self, task_list: TaskList, name: Any) -> Status:
        if not isinstance(name, str):
            raise bad_request("Status must be a string", "CRTSK_003")
        wanted = name.strip().casefold()
        for status in task_list.statuses:
            if status.name.casefold() == wanted:
                return status
        raise bad_request("Status does not exist", "CRTSK_001")

    def _field(self, task_list: TaskList, field_id: str) -> CustomField:
        for custom in task_list.fields:
            if custom.id == field_id:
                return custom
        raise bad_request("Custom field not found on this list", "FIELD_003")

    def _user_json(self, user_id: int, *, initials: bool = True) -> Json:
        user = dict(self.users.get(user_id) or {"id": user_id, "username": f"user {user_id}",
                                                  "email": f"user{user_id}@example.com", "color": "#595d66"})
        if initials:
            user["initials"] = "".join(part[0] for part in str(user["username"]).split()[:2]).upper()
        user["profilePicture"] = None
        return user

    def _history_id(self) -> str:
        self._next_history += 1
        return str(self._next_history)

    # -- custom field values ---------------------------------------------------------------------
    def _field_value(self, custom: CustomField, value: Any) -> Any:
        """A written value in the form ClickUp stores it, or a 400."""
        kind = custom.type
        if value is None:
            return None
        if kind in ("text", "short_text", "url", "email"):
            if not isinstance(value, str):
                raise bad_request(f"Value must be a string for a {kind} field", "FIELD_011")
            return value
        if kind == "number":
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                raise bad_request("Value must be a number", "FIELD_012")
            try:
                return float(value) if not isinstance(value, int) else value
            except ValueError:
                raise bad_request("Value must be a number", "FIELD_012") from None
        if kind == "date":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise bad_request("Value must be a unix time in milliseconds", "FIELD_013")
            return int(value)
        if kind == "drop_down":
            option = self._option(custom, value)
            return option["id"]
        if kind == "labels":
            if not isinstance(value, list):
                raise bad_request("Value must be an array of option ids", "FIELD_015")
            return [self._option(custom, v)["id"] for v in value]
        raise bad_request(f"Field type {kind} cannot be set here", "FIELD_016")

    @staticmethod
    def _option(custom: CustomField, value: Any) -> Json:
        # Options are addressed by their id; a drop-down also takes the option's orderindex (api-facts 4.3).
        for option in custom.options:
            if value == option["id"] or (isinstance(value, int) and not isinstance(value, bool)
                                         and value == option["orderindex"]):
                return option
        raise bad_request("Value is not a valid option of this field", "FIELD_014")

    def _field_json(self, custom: CustomField) -> Json:
        config: Json = {}
        if custom.type in ("drop_down", "labels"):
            config = {"options": [dict(o) for o in custom.options]}
            if custom.type == "drop_down":
                config = {"sorting": "manual", "new_drop_down": True, **config}
        return {"id": custom.id, "name": custom.name, "type": custom.type, "type_config": config,
                "date_created": str(custom.created), "hide_from_guests": False, "required": False}

    def _task_field_json(self, custom: CustomField, stored: Any) -> Json:
        out = self._field_json(custom)
        if stored is None:
            return out  # ClickUp leaves `value` out of an unset field
        if custom.type == "number":
            out["value"] = str(int(stored)) if float(stored).is_integer() else str(stored)
        elif custom.type == "date":
            out["value"] = str(stored)
        elif custom.type == "drop_down":
            out["value"] = next(o["orderindex"] for o in custom.options if o["id"] == stored)
        elif custom.type == "labels":
            out["value"] = list(stored)
        else:
            out["value"] = stored
        return out

    # -- JSON renderings -------------------------------------------------------------------------
    def _status_json(self, task_list: TaskList, name: str) -> Json:
        status = self._status(task_list, name)
        return {"id": status.id, "status": status.name, "color": status.color, "orderindex": status.orderindex,
                "type": status.type}

    def _task_json(self, task: Task, *, markdown: bool = False, full: bool = True) -> Json:
        task_list = self._list(task.list_id)
        priority = None
        if task.priority is not None:
            name, color = PRIORITIES[task.priority]
            priority = {"color": color, "id": str(task.priority), "orderindex": str(task.priority),
                        "priority": name}
        status = self._status(task_list, task.status)
        body: Json = {
            "id": task.id, "custom_id": None, "custom_item_id": 0, "name": task.name,
            "text_content": task.description, "description": task.description,
        }
        if markdown:
            body["markdown_description"] = task.description
        body.update({
            "status": self._status_json(task_list, task.status),
            "orderindex": f"{task.created % 100_000_000}.00000000000000000000000000000000",
            "date_created": str(task.created), "date_updated": str(task.updated),
            "date_closed": str(task.closed) if task.closed is not None else None,
            "date_done": str(task.closed) if task.closed is not None and status.type == "done" else None,
            "archived": task.archived,
            "creator": self._user_json(task.creator, initials=False),
            "assignees": [self._user_json(user) for user in task.assignees],
            "group_assignees": [],
            "watchers": [self._user_json(user) for user in dict.fromkeys([task.creator, *task.assignees])],
            "checklists": [],
            "tags": [{"name": tag, "tag_fg": "#800000", "tag_bg": "#800000", "creator": self.api_user}
                     for tag in task.tags],
            "parent": task.parent, "top_level_parent": task.parent,
            "priority": priority,
            "due_date": str(task.due_date) if task.due_date is not None else None,
            "start_date": str(task.start_date) if task.start_date is not None else None,
            "points": None, "time_estimate": None, "time_spent": 0,
            "custom_fields": [self._task_field_json(custom, task.custom.get(custom.id))
                              for custom in task_list.fields],
            "dependencies": [], "linked_tasks": [], "locations": [],
            "team_id": TEAM_ID,
            "url": f"{self.base_url}/t/{task.id}",
            "sharing": {"public": False, "public_share_expires_on": None,
                        "public_fields": ["assignees", "priority", "due_date", "content", "comments",
                                          "attachments", "customFields", "subtasks", "tags", "checklists",
                                          "coverimage"], "token": None, "seo_optimized": False},
            "permission_level": "create",
            "list": {"id": task_list.id, "name": task_list.name, "access": True},
            "project": {"id": FOLDER_ID, "name": "hidden", "hidden": True, "access": True},
            "folder": {"id": FOLDER_ID, "name": "hidden", "hidden": True, "access": True},
            "space": {"id": SPACE_ID},
        })
        if full:
            body["attachments"] = []
        return body

    def _comment_json(self, comment: Comment) -> Json:
        parts = [{"text": comment.text, "attributes": {}}, {"text": "\n", "attributes": {}}]
        return {"id": comment.id, "comment": parts,
                "comment_text": comment.text, "user": self._user_json(comment.user), "resolved": False,
                "assignee": None, "assigned_by": None, "reactions": [], "date": str(comment.date),
                "reply_count": "0"}

    def _list_json(self, task_list: TaskList) -> Json:
        count = sum(1 for task in self._tasks.values() if task.list_id == task_list.id)
        return {
            "id": task_list.id, "name": task_list.name, "deleted": False, "orderindex": 0, "content": "",
            "priority": None, "assignee": None, "task_count": count, "due_date": None, "start_date": None,
            "folder": {"id": FOLDER_ID, "name": "hidden", "hidden": True, "archived": False, "access": True},
            "space": {"id": SPACE_ID, "name": "Team Space", "archived": False, "access": True},
            "inbound_address": f"a.t.{task_list.id}.u-{self.api_user}.{uuid.uuid5(uuid.NAMESPACE_URL, task_list.id)}"
                               "@tasks.clickup.com",
            "archived": False, "override_statuses": True,
            "statuses": [{"id": s.id, "status": s.name, "orderindex": s.orderindex, "color": s.color,
                          "type": s.type, "status_group": f"subcat_{task_list.id}"} for s in task_list.statuses],
            "permission_level": "create",
        }

    # -- handlers --------------------------------------------------------------------------------
    def _body(self, request: Request) -> Json:
        try:
            body = request.json()
        except (ValueError, UnicodeDecodeError):
            raise bad_request("Invalid JSON body", "INPUT_001") from None
        if body is None:
            return {}
        if not isinstance(body, dict):
            raise bad_request("Body must be a JSON object", "INPUT_001")
        return body

    @staticmethod
    def _flag(request: Request, name: str) -> bool:
        return (request.arg(name) or "").lower() == "true"

    def _get_user(self, request: Request) -> Response:
        return Response(200, {"user": {**self._user_json(self.api_user, initials=False), "week_start_day": 1,
                                       "global_font_support": True, "timezone": "Etc/UTC"}})

    def _get_list(self, request: Request) -> Response:
        return Response(200, self._list_json(self._list(request.params["list_id"])))

    def _get_fields(self, request: Request) -> Response:
        task_list = self._list(request.params["list_id"])
        return Response(200, {"fields": [self._field_json(custom) for custom in task_list.fields]})

    def _int_arg(self, request: Request, name: str) -> int | None:
        value = request.arg(name)
        if value is None or value == "":
            return None
        try:
            return int(value)
        except ValueError:
            raise bad_request(f"{name} must be an integer", "INPUT_002") from None

    def _list_tasks(self, request: Request) -> Response:
        task_list = self._list(request.params["list_id"])
        page = self._int_arg(request, "page") or 0
        if page < 0:
            raise bad_request("page must be 0 or more", "INPUT_002")
        bounds = {name: self._int_arg(request, name) for name in (
            "date_updated_gt", "date_updated_lt", "date_created_gt", "date_created_lt")}
        include_closed, subtasks = self._flag(request, "include_closed"), self._flag(request, "subtasks")
        archived = self._flag(request, "archived")
        statuses = {s.casefold() for s in request.query.get("statuses[]", []) + request.query.get("statuses", [])}
        assignees = set(request.query.get("assignees[]", []) + request.query.get("assignees", []))
        tags = set(request.query.get("tags[]", []) + request.query.get("tags", []))
        order_by = request.arg("order_by") or "created"
        keys: dict[str, Callable[[Task], Any]] = {
            "id": lambda t: t.id, "created": lambda t: t.created, "updated": lambda t: t.updated,
            "due_date": lambda t: (t.due_date is None, t.due_date or 0)}
        if order_by not in keys:
            raise bad_request("order_by must be one of id, created, updated, due_date", "INPUT_003")

        def wanted(task: Task) -> bool:
            status = self._status(task_list, task.status)
            if task.archived != archived:
                return False
            if status.type in ("closed", "done") and not include_closed and status.name.casefold() not in statuses:
                return False
            if task.parent is not None and not subtasks:
                return False
            if statuses and status.name.casefold() not in statuses:
                return False
            if assignees and not assignees & {str(a) for a in task.assignees}:
                return False
            if tags and not tags & set(task.tags):
                return False
            for name, limit in bounds.items():
                if limit is None:
                    continue
                value = task.updated if name.startswith("date_updated") else task.created
                if (name.endswith("_gt") and not value > limit) or (name.endswith("_lt") and not value < limit):
                    return False
            return True

        found = [task for task in self._tasks.values() if task.list_id == task_list.id and wanted(task)]
        # Newest first by default (UNCONFIRMED at ClickUp); reverse=true flips it. Ties by id, stable.
        found.sort(key=lambda t: (keys[order_by](t), t.id), reverse=not self._flag(request, "reverse"))
        start = page * PAGE_SIZE
        chunk = found[start:start + PAGE_SIZE]
        markdown = self._flag(request, "include_markdown_description")
        return Response(200, {"tasks": [self._task_json(task, markdown=markdown, full=False) for task in chunk],
                              "last_page": start + PAGE_SIZE >= len(found)})

    def _get_task(self, request: Request) -> Response:
        task = self._task(request.params["task_id"])
        return Response(200, self._task_json(task, markdown=self._flag(request, "include_markdown_description")))

    def _create_task(self, request: Request) -> Response:
        task_list = self._list(request.params["list_id"])
        task = self._create(task_list, self._body(request), self.api_user)
        return Response(200, self._task_json(task, markdown=True, full=False))

    def _update_task(self, request: Request) -> Response:
        task = self._task(request.params["task_id"])
        if not self._update(task, self._body(request), self.api_user):
            self.noop_writes += 1  # a write of values the task already has: an echo, for the demo report
        return Response(200, self._task_json(task, markdown=True, full=False))

    def _set_field(self, request: Request) -> Response:
        task = self._task(request.params["task_id"])
        body = self._body(request)
        if "value" not in body:
            raise bad_request("Value is required", "FIELD_010")
        if not self._write_field(task, request.params["field_id"], body["value"], self.api_user):
            self.noop_writes += 1
        return Response(200, {})

    def _remove_field(self, request: Request) -> Response:
        task = self._task(request.params["task_id"])
        if not self._write_field(task, request.params["field_id"], None, self.api_user):
            self.noop_writes += 1
        return Response(200, {})

    def _add_tag(self, request: Request) -> Response:
        task = self._task(request.params["task_id"])
        if not self._set_tags(task, [*task.tags, unquote(request.params["tag_name"])], self.api_user):
            self.noop_writes += 1
        return Response(200, {})

    def _remove_tag(self, request: Request) -> Response:
        task = self._task(request.params["task_id"])
        name = unquote(request.params["tag_name"]).casefold()
        if not self._set_tags(task, [tag for tag in task.tags if tag.casefold() != name], self.api_user):
            self.noop_writes += 1
        return Response(200, {})

    def _list_comments(self, request: Request) -> Response:
        task = self._task(request.params["task_id"])
        newest_first = sorted(task.comments, key=lambda c: (c.date, int(c.id)), reverse=True)
        start, start_id = self._int_arg(request, "start"), request.arg("start_id")
        if (start is None) != (start_id is None):
            raise bad_request("start and start_id go together", "INPUT_004")
        if start is not None and start_id is not None:
            # Older than the last comment of the previous call (by date, then id).
            newest_first = [c for c in newest_first if (c.date, int(c.id)) < (start, int(start_id or 0))]
        return Response(200, {"comments": [self._comment_json(c) for c in newest_first[:COMMENTS_PER_CALL]]})

    def _create_comment(self, request: Request) -> Response:
        task = self._task(request.params["task_id"])
        body = self._body(request)
        text = body.get("comment_text")
        if not isinstance(text, str) or not text.strip():
            raise bad_request("Comment text required", "COMM_002")
        comment, history = self._comment(task, text, self.api_user)
        return Response(200, {"id": comment.id, "hist_id": history, "date": comment.date})

    # -- changes (shared by the API and the Python helpers) --------------------------------------
    def _create(self, task_list: TaskList, body: Json, user: int) -> Task:
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise bad_request("Task name invalid", "INPUT_005")
        status = self._status(task_list, body["status"]) if body.get("status") is not None \
            else task_list.statuses[0]
        parent = body.get("parent")
        if parent is not None and (parent not in self._tasks or self._tasks[parent].list_id != task_list.id):
            raise bad_request("Parent task must be in the same list", "ITEM_137")
        priority = self._priority(body.get("priority"))
        assignees = self._user_ids(body.get("assignees") or [])
        tags = body.get("tags") or []
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise bad_request("Tags must be an array of names", "INPUT_006")
        values: dict[str, Any] = {}
        for entry in body.get("custom_fields") or []:
            if not isinstance(entry, dict) or "id" not in entry:
                raise bad_request("Custom field entries need an id", "FIELD_010")
            custom = self._field(task_list, str(entry["id"]))
            values[custom.id] = self._field_value(custom, entry.get("value"))
        now = self._now_ms()
        task_id = f"86c{self._next_task:06x}"
        self._next_task += 1
        task = Task(id=task_id, list_id=task_list.id, name=name.strip(),
                    description=self._description(body) or "", status=status.name, creator=user, created=now,
                    updated=now, priority=priority, assignees=assignees, tags=list(dict.fromkeys(tags)),
                    due_date=self._date(body.get("due_date"), "due_date"),
                    start_date=self._date(body.get("start_date"), "start_date"), parent=parent,
                    closed=now if status.type in ("closed", "done") else None,
                    custom={k: v for k, v in values.items() if v is not None})
        self._tasks[task.id] = task
        self._emit(task, "taskCreated", user, [
            self._history(task, user, "status", {"status": None, "color": "#000000", "type": "removed",
                                                 "orderindex": -1}, self._status_after(task_list, status),
                          data={"status_type": status.type}),
            self._history(task, user, "task_creation", None, None)])
        return task

    def _update(self, task: Task, body: Json, user: int) -> bool:
        task_list = self._list(task.list_id)
        changes: list[tuple[str, str, Any, Any, Json]] = []  # (event, field, before, after, data)
        # Validate everything before changing anything: a 400 leaves the task as it was.
        new_name = body.get("name", task.name)
        if not isinstance(new_name, str) or not new_name.strip():
            raise bad_request("Task name invalid", "INPUT_005")
        status = self._status(task_list, body["status"]) if body.get("status") is not None else None
        priority = self._priority(body["priority"]) if "priority" in body else task.priority
        description = self._description(body)
        due = self._date(body["due_date"], "due_date") if "due_date" in body else task.due_date
        start = self._date(body["start_date"], "start_date") if "start_date" in body else task.start_date
        assignees = list(task.assignees)
        if "assignees" in body:
            change = body["assignees"]
            if not isinstance(change, dict):
                raise bad_request("assignees must be {\"add\": [...], \"rem\": [...]}", "INPUT_007")
            added, removed = self._user_ids(change.get("add") or []), self._user_ids(change.get("rem") or [])
            assignees = [a for a in assignees if a not in removed] + [a for a in added if a not in assignees]
        archived = body.get("archived", task.archived)
        if new_name.strip() != task.name:
            changes.append(("taskUpdated", "name", task.name, new_name.strip(), {}))
            task.name = new_name.strip()
        if description is not None and description != task.description:
            changes.append(("taskUpdated", "content", task.description, description, {}))
            task.description = description
        if status is not None and status.name != task.status:
            before = self._status(task_list, task.status)
            changes.append(("taskStatusUpdated", "status", self._status_after(task_list, before),
                            self._status_after(task_list, status), {"status_type": status.type}))
            task.status = status.name
            task.closed = self._now_ms() if status.type in ("closed", "done") else None
        if priority != task.priority:
            changes.append(("taskPriorityUpdated", "priority", self._priority_history(task.priority),
                            self._priority_history(priority), {}))
            task.priority = priority
        if due != task.due_date:
            changes.append(("taskDueDateUpdated", "due_date", _str(task.due_date), _str(due), {}))
            task.due_date = due
        if start != task.start_date:
            changes.append(("taskUpdated", "start_date", _str(task.start_date), _str(start), {}))
            task.start_date = start
        if assignees != task.assignees:
            for added_id in [a for a in assignees if a not in task.assignees]:
                changes.append(("taskAssigneeUpdated", "assignee_add", None, self._user_json(added_id), {}))
            for removed_id in [a for a in task.assignees if a not in assignees]:
                changes.append(("taskAssigneeUpdated", "assignee_rem", self._user_json(removed_id), None, {}))
            task.assignees = assignees
        if bool(archived) != task.archived:
            changes.append(("taskUpdated", "archived", task.archived, bool(archived), {}))
            task.archived = bool(archived)
        if changes:
            self._touch(task, user, changes)
        return bool(changes)

    def _touch(self, task: Task, user: int, changes: list[tuple[str, str, Any, Any, Json]]) -> None:
        task.updated = self._now_ms()
        by_event: dict[str, list[Json]] = {}
        for event, name, before, after, data in changes:
            by_event.setdefault(event, []).append(self._history(task, user, name, before, after, data=data))
        for event, items in by_event.items():
            self._emit(task, event, user, items)

    def _write_field(self, task: Task, field_id: str, value: Any, user: int) -> bool:
        custom = self._field(self._list(task.list_id), field_id)
        stored = self._field_value(custom, value)
        before = task.custom.get(custom.id)
        if stored == before:
            return False
        if stored is None:
            task.custom.pop(custom.id, None)
        else:
            task.custom[custom.id] = stored
        self._touch(task, user, [("taskUpdated", "custom_field", before, stored, {"field_id": custom.id})])
        return True

    def _set_tags(self, task: Task, tags: list[str], user: int) -> bool:
        tags = list(dict.fromkeys(tags))
        if tags == task.tags:
            return False
        changes: list[tuple[str, str, Any, Any, Json]] = []
        for tag in tags:
            if tag not in task.tags:
                changes.append(("taskTagUpdated", "tag", None, [{"name": tag}], {}))
        for tag in task.tags:
            if tag not in tags:
                changes.append(("taskTagUpdated", "tag_removed", [{"name": tag}], None, {}))
        task.tags = tags
        self._touch(task, user, changes)
        return True

    def _comment(self, task: Task, text: str, user: int) -> tuple[Comment, str]:
        self._next_comment += 1
        comment = Comment(str(self._next_comment), text, user, self._now_ms())
        task.comments.append(comment)
        task.updated = comment.date  # assumed: a comment counts as an update of its task (UNCONFIRMED)
        item = self._history(task, user, "comment", None, comment.id)
        # The webhook's comment object carries more than the REST one (see the recorded delivery).
        item["comment"] = {
            **self._comment_json(comment), "parent": task.id, "type": 1, "text_content": text,
            **dict.fromkeys(("x", "y", "image_y", "image_x", "page", "comment_number", "page_id", "page_name",
                             "view_id", "view_name", "team")),
            "new_thread_count": 0, "new_mentioned_thread_count": 0, "email_attachments": [],
            "threaded_users": [], "threaded_replies": 0, "threaded_assignees": 0,
            "threaded_assignees_members": [], "threaded_unresolved_count": 0,
            "thread_followers": [self._user_json(user)], "group_thread_followers": [], "emails": []}
        self._emit(task, "taskCommentPosted", user, [item])
        return comment, str(item["id"])

    def _description(self, body: Json) -> str | None:
        # markdown_content wins over description; " " clears it (ClickUp's documented way).
        for key in ("markdown_content", "description"):
            if key in body:
                value = body[key]
                if value is None:
                    return ""
                if not isinstance(value, str):
                    raise bad_request(f"{key} must be a string", "INPUT_008")
                return "" if value == " " else value
        return None

    @staticmethod
    def _priority(value: Any) -> int | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value not in PRIORITIES:
            raise bad_request("Priority invalid: use 1 (urgent), 2 (high), 3 (normal), 4 (low) or null",
                              "CRTSK_004")
        return value

    @staticmethod
    def _date(value: Any, name: str) -> int | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad_request(f"{name} must be a unix time in milliseconds", "INPUT_009")
        return int(value)

    def _user_ids(self, values: Any) -> list[int]:
        if not isinstance(values, list):
            raise bad_request("Assignees must be an array of user ids", "INPUT_007")
        ids = []
        for value in values:
            if isinstance(value, bool) or not isinstance(value, int) or value not in self.users:
                raise bad_request(f"Assignee {value!r} is not a member of this workspace", "ASSIGN_023")
            ids.append(value)
        return list(dict.fromkeys(ids))

    @staticmethod
    def _status_after(task_list: TaskList, status: Status) -> Json:
        return {"status": status.name, "color": status.color, "orderindex": status.orderindex, "type": status.type}

    @staticmethod
    def _priority_history(priority: int | None) -> Json | None:
        if priority is None:
            return None
        name, color = PRIORITIES[priority]
        return {"id": str(priority), "priority": name, "color": color, "orderindex": str(priority)}

    def _history(self, task: Task, user: int, name: str, before: Any, after: Any, *,
                 data: Json | None = None) -> Json:
        return {"id": self._history_id(), "type": 1, "date": str(self._last_ms or self._now_ms()), "field": name,
                "parent_id": task.list_id, "data": data or {}, "source": None,
                "user": self._user_json(user), "before": before, "after": after}

    # -- webhooks ----------------------------------------------------------------------------
    def _emit(self, task: Task, event: str, user: int, history: list[Json]) -> None:
        """Queue a delivery, rendered now so it shows the change as it happened."""
        url = self.webhook_url
        if not url or not ({"*", event} & self.webhook_events):
            return
        payload = {"event": event, "history_items": history, "task_id": task.id, "webhook_id": self.webhook_id}
        body = json.dumps(payload, separators=(",", ":")).encode("utf-8")  # compact, as ClickUp signs it
        headers = {"Content-Type": "application/json", "User-Agent": "ClickUp-Webhooks/emulator"}
        self.webhooks.emit(event, body, headers)

    # -- Python-level helpers (tests, demos) -------------------------------------------------
    def fail_next(self, count: int = 1, status: int = 500, err: str = "Internal server error",
                  ecode: str = "SERVER_500") -> None:
        """Answer the next `count` authenticated requests with `status` and ClickUp's error body."""
        with self.lock:
            self._fail_next.extend([(status, {"err": err, "ECODE": ecode})] * count)

    @contextmanager
    def _helper(self) -> Iterator[None]:
        with self.lock:
            try:
                yield
            except ClickUpError as error:
                if error.status == 404:
                    raise KeyError(error.err) from None
                raise ValueError({"err": error.err, "ECODE": error.ecode}) from None

    def add_list(self, name: str, *, list_id: str | None = None,
                 statuses: Iterable[tuple[str, str]] | None = None,
                 fields: Iterable[tuple[str, str, list[str] | None]] = ()) -> str:
        """A list with `statuses` ((name, type) pairs; default to do / in progress / in review /
        complete) and custom `fields` ((name, type, option names)). Returns its id."""
        with self.lock:
            list_id = list_id or str(int(DEFAULT_LIST_ID) + len(self.lists))
            colors = {s[0]: s[2] for s in DEFAULT_STATUSES}
            pairs = list(statuses) if statuses is not None else [(s[0], s[1]) for s in DEFAULT_STATUSES]
            created = ms(datetime(2026, 1, 5, 9, 0, tzinfo=UTC))
            custom_fields = []
            for field_name, kind, options in fields:
                if kind not in FIELD_TYPES:
                    raise ValueError(f"field type {kind!r} is not one of {FIELD_TYPES}")
                field_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"clickup-field:{list_id}:{field_name}"))
                custom_fields.append(CustomField(field_id, field_name, kind, created, [
                    {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{field_id}:{option}")), "name": option,
                     "color": None, "orderindex": index} for index, option in enumerate(options or [])]))
            self.lists[list_id] = TaskList(list_id, name, [
                Status(f"sc{list_id}_{index:08d}", status_name.lower(), kind, colors.get(status_name, "#87909e"),
                       index) for index, (status_name, kind) in enumerate(pairs)], custom_fields)
            return list_id

    def field_id(self, name: str, list_id: str = DEFAULT_LIST_ID) -> str:
        """The id of the custom field called `name` on a list."""
        with self.lock:
            return next(f.id for f in self._list(list_id).fields if f.name == name)

    def option_id(self, field_name: str, option: str, list_id: str = DEFAULT_LIST_ID) -> str:
        with self.lock:
            custom = next(f for f in self._list(list_id).fields if f.name == field_name)
            return str(next(o["id"] for o in custom.options if o["name"] == option))

    def add_task(self, name: str, description: str = "", *, list_id: str = DEFAULT_LIST_ID,
                 status: str | None = None, priority: int | None = None, assignees: Iterable[int] = (),
                 tags: Iterable[str] = (), due_date: int | None = None, parent: str | None = None,
                 custom_fields: dict[str, Any] | None = None, user: int | None = None) -> Json:
        """Create a task as a person would in ClickUp (webhooks included). `custom_fields`: field id -> value."""
        body: Json = {"name": name, "markdown_content": description, "status": status, "priority": priority,
                      "assignees": list(assignees), "tags": list(tags), "due_date": due_date, "parent": parent,
                      "custom_fields": [{"id": k, "value": v} for k, v in (custom_fields or {}).items()]}
        with self._helper():
            task = self._create(self._list(list_id), body, user or self.default_user)
            return self._task_json(task, markdown=True)

    def update_task(self, task_id: str, *, user: int | None = None, **changes: Any) -> Json:
        """Apply a PUT /task body (name, markdown_content, status, priority, due_date, assignees...)."""
        with self._helper():
            task = self._task(task_id)
            self._update(task, changes, user or self.default_user)
            return self._task_json(task, markdown=True)

    def set_status(self, task_id: str, status: str, user: int | None = None) -> Json:
        return self.update_task(task_id, user=user, status=status)

    def set_field(self, task_id: str, field_id: str, value: Any, user: int | None = None) -> Json:
        with self._helper():
            task = self._task(task_id)
            self._write_field(task, field_id, value, user or self.default_user)
            return self._task_json(task, markdown=True)

    def set_tags(self, task_id: str, tags: Iterable[str], user: int | None = None) -> Json:
        with self._helper():
            task = self._task(task_id)
            self._set_tags(task, list(tags), user or self.default_user)
            return self._task_json(task, markdown=True)

    def add_comment(self, task_id: str, text: str, user: int | None = None) -> Json:
        with self._helper():
            comment, _ = self._comment(self._task(task_id), text, user or self.default_user)
            return self._comment_json(comment)

    def task(self, task_id: str) -> Json:
        with self._helper():
            return self._task_json(self._task(task_id), markdown=True)

    def tasks(self, list_id: str | None = None) -> list[Json]:
        """Every task (of one list), oldest first."""
        with self._helper():
            found = [t for t in self._tasks.values() if list_id is None or t.list_id == list_id]
            return [self._task_json(t, markdown=True) for t in sorted(found, key=lambda t: (t.created, t.id))]

    def comments(self, task_id: str) -> list[Json]:
        """A task's comments, oldest first."""
        with self._helper():
            return [self._comment_json(c) for c in self._task(task_id).comments]

    def list_json(self, list_id: str = DEFAULT_LIST_ID) -> Json:
        with self._helper():
            return self._list_json(self._list(list_id))

    def seed(self) -> list[Json]:
        """A few realistic planning tasks, for demos."""
        impact = self.field_id("Customer impact")
        created = [
            self.add_task("Q3 roadmap: EU billing rework", "Scope the VAT changes for **EU** customers.",
                          priority=2, tags=["roadmap"], custom_fields={impact: 1}),
            self.add_task("Plan CSV export of order history", "Requested by several customers.",
                          status="in progress", priority=3, assignees=[100003]),
            self.add_task("Retire the legacy pricing page", "", status="complete", priority=4),
        ]
        self.add_comment(created[0]["id"], "Finance wants this before the October close.")
        return [self.task(task["id"]) for task in created]


def _str(value: int | None) -> str | None:
    return None if value is None else str(value)


def main() -> None:
    """Run a seeded emulator in the foreground, for demos and manual poking."""
    import argparse

    parser = argparse.ArgumentParser(description="ClickUp API v2 emulator")
    parser.add_argument("--port", type=int, default=8805)
    parser.add_argument("--webhook-url", default=None)
    parser.add_argument("--webhook-secret", default=None)
    args = parser.parse_args()
    emulator = ClickUpEmulator(port=args.port, webhook_url=args.webhook_url, webhook_secret=args.webhook_secret)
    emulator.seed()
    print(f"ClickUp emulator on {emulator.base_url}{API} (Authorization: {emulator.token}; "
          f"list {DEFAULT_LIST_ID})", flush=True)
    emulator.serve_forever()


if __name__ == "__main__":
    main()
