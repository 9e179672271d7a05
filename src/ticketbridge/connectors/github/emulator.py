"""A stateful GitHub REST emulator for the Issues API subset a sync service uses, on a loopback HTTP server.

Written from GitHub's OpenAPI description (`@octokit/openapi`), the webhook description
(`@octokit/openapi-webhooks`) and recorded exchanges (see `shared/reference`), independently of any
ticketbridge connector, so that a connector bug cannot hide behind a matching emulator bug.

Covered:

* issues: list (`since`, `state`, `sort`, `direction`, `labels`, `creator`, `assignee`, `per_page`,
  `page`, Link-header pagination; pull requests are listed too, with a `pull_request` key), get, create,
  update (title, body, state + state_reason, labels, assignees);
* comments: per issue (list with `since` + pagination, create), repository-wide list (`since`, `sort`),
  get and edit by id;
* labels: repository list, issue labels (list, add, replace, remove); unknown label names are created;
* `GET /rate_limit` (free, as on GitHub);
* GitHub's dialect around it: token auth (`Bearer` or `token`), ETag / `If-None-Match` and
  `Last-Modified` / `If-Modified-Since` answering 304 (not counted against the rate limit), the
  `x-ratelimit-*` headers on every response, the primary hourly limit (403 by default, or 429), a
  switch for secondary-limit 403s with `retry-after`, GitHub's error bodies;
* webhooks `issues` (opened, edited, closed, reopened, labeled, unlabeled, assigned, unassigned) and
  `issue_comment` (created, edited), POSTed from a background thread, signed with
  `X-Hub-Signature-256`, with drop / duplicate fault switches.

Link headers point at `/repositories/{id}/...`, as GitHub's do; those paths are served too. Every URL
in a response carries the emulator's own scheme, host and port. Run standalone for demos with
`python -m ticketbridge.connectors.github.emulator`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import re
import struct
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any
from urllib.parse import quote, unquote, urlencode

from ticketbridge.connectors.emulator_kit import Delivery as Delivery  # re-exported: tests and the sandbox
from ticketbridge.connectors.emulator_kit import (
    Faults,
    Request,
    Response,
    WebhookDispatcher,
    WebhookSender,
)
from ticketbridge.connectors.emulator_kit import WebhookFaults as WebhookFaults

Json = dict[str, Any]
Clock = Callable[[], datetime]

DEFAULT_TOKEN = "ghp_sandboxTokenForTheTicketbridgeEmulator0"
DEFAULT_LOGIN = "ticketbridge-bot"
DEFAULT_USER = "octocat"  # the author of what the Python helpers create: someone other than the API user
API_VERSIONS = ("2022-11-28", "2026-03-10")
DEFAULT_PER_PAGE = 30
MAX_PER_PAGE = 100
RATE_WINDOW = 3600  # seconds; GitHub's primary limit is hourly
NEW_LABEL_COLOR = "ededed"  # what GitHub gives a label created implicitly by name
WEBHOOK_TIMEOUT = 10.0  # GitHub gives a receiver 10 s to answer

DOCS = "https://docs.github.com/rest"
DOC_ISSUES = DOCS + "/issues/issues"
DOC_COMMENTS = DOCS + "/issues/comments"
DOC_LABELS = DOCS + "/issues/labels"
DOC_RATE = DOCS + "/overview/rate-limits-for-the-rest-api"

# The labels every new GitHub repository starts with.
DEFAULT_LABELS: tuple[tuple[str, str, str], ...] = (
    ("bug", "d73a4a", "Something isn't working"),
    ("documentation", "0075ca", "Improvements or additions to documentation"),
    ("duplicate", "cfd3d7", "This issue or pull request already exists"),
    ("enhancement", "a2eeef", "New feature or request"),
    ("good first issue", "7057ff", "Good for newcomers"),
    ("help wanted", "008672", "Extra attention is needed"),
    ("invalid", "e4e669", "This doesn't seem right"),
    ("question", "d876e3", "Further information is requested"),
    ("wontfix", "ffffff", "This will not be worked on"),
)

CLOSE_REASONS = ("completed", "not_planned", "duplicate")
STATE_REASONS = (*CLOSE_REASONS, "reopened")


def iso(moment: datetime) -> str:
    """GitHub's timestamp format: UTC, second precision, `Z`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(value: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def sign(secret: str, body: bytes) -> str:
    """The `X-Hub-Signature-256` value of `body`: `sha256=` + hex HMAC-SHA256 keyed with the secret."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def _signature_headers(secret: str, body: bytes) -> dict[str, str]:
    # GitHub still sends the legacy SHA-1 header next to the SHA-256 one.
    return {"X-Hub-Signature-256": sign(secret, body),
            "X-Hub-Signature": "sha1=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha1).hexdigest()}


def node_id(prefix: str, number: int) -> str:
    """An opaque GraphQL node id in the current style (`I_kwDO...`), stable for a given object."""
    return f"{prefix}_kwDO" + base64.urlsafe_b64encode(struct.pack(">Q", number)).decode().rstrip("=")


class GitHubError(Exception):
    """Raised inside a handler to answer with GitHub's error body; the route adds `documentation_url`."""

    def __init__(self, status: int, message: str, errors: list[Json] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(status, message)
        self.status = status
        self.message = message
        self.errors = errors
        self.headers = headers or {}

    def response(self, documentation_url: str) -> Response:
        return Response(self.status, error_body(self.message, documentation_url, self.status, self.errors),
                        dict(self.headers))


def error_body(message: str, documentation_url: str, status: int, errors: list[Json] | None = None) -> Json:
    body: Json = {"message": message}
    if errors is not None:
        body["errors"] = errors
    body["documentation_url"] = documentation_url
    body["status"] = str(status)
    return body


def not_found() -> GitHubError:
    return GitHubError(404, "Not Found")


def validation_failed(resource: str, field_name: str, code: str, value: Any = None) -> GitHubError:
    error: Json = {"resource": resource, "field": field_name, "code": code}
    if value is not None:
        error["value"] = value
    return GitHubError(422, "Validation Failed", [error])


# -- state -------------------------------------------------------------------------------------

@dataclass
class Label:
    id: int
    name: str
    color: str
    description: str | None
    default: bool


@dataclass
class Comment:
    id: int
    repo: str  # repository key (lower-case name)
    number: int  # issue number
    body: str
    user: str
    created: datetime
    updated: datetime


@dataclass
class Issue:
    id: int
    repo: str
    number: int
    title: str
    body: str | None
    user: str
    created: datetime
    updated: datetime
    state: str = "open"
    state_reason: str | None = None
    closed: datetime | None = None
    closed_by: str | None = None
    labels: list[Label] = field(default_factory=list)
    assignees: list[str] = field(default_factory=list)
    comments: list[int] = field(default_factory=list)  # comment ids, oldest first
    pull: bool = False


@dataclass
class Repo:
    id: int
    name: str
    created: datetime
    labels: dict[str, Label] = field(default_factory=dict)  # lower-case name -> label
    issues: dict[int, Issue] = field(default_factory=dict)
    next_number: int = 1


class GitHubEmulator(WebhookSender):
    """GitHub's REST API (issues subset) on loopback. Credentials: `Authorization: Bearer <token>`
    (or `token <token>`). See the module docstring."""

    name = "github"

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, token: str = DEFAULT_TOKEN,
                 owner: str = "acme", repos: Iterable[str] = ("app",), rate_limit_per_hour: int = 5000,
                 faults: Faults | None = None, clock: Clock | None = None, webhook_url: str | None = None,
                 webhook_secret: str | None = None, webhook_faults: WebhookFaults | None = None,
                 login: str = DEFAULT_LOGIN, collaborators: Iterable[str] = (),
                 primary_limit_status: int = 403, require_user_agent: bool = True) -> None:
        self.token = token
        self.owner = owner
        self.login = login
        self.repo_names = list(repos)
        if not self.repo_names:
            raise ValueError("at least one repository is needed")
        self.collaborators = [c for c in collaborators if c.lower() != login.lower()]
        self.rate_limit_per_hour = rate_limit_per_hour
        self.primary_limit_status = primary_limit_status
        self.require_user_agent = require_user_agent
        self.clock: Clock = clock or (lambda: datetime.now(UTC))
        # GitHub never retries a failed delivery by itself; the record is all that remains.
        self.webhooks = WebhookDispatcher("github", url=webhook_url, secret=webhook_secret, faults=webhook_faults,
                                          signer=_signature_headers, timeout=WEBHOOK_TIMEOUT, attempts=1)
        self.hook_id = 500_000_001
        self._request_seq = 0
        super().__init__(host, port, rate_limit_per_minute=None, faults=faults)
        self.reset()

    def reset(self) -> None:
        """Forget every issue, comment, label change, rate-limit use and webhook record, so one running
        server can serve many tests. Configuration (token, limits, webhook URL, faults) is kept."""
        with self.lock:
            now = self._now()
            self.users: dict[str, Json] = {}  # lower-case login -> {"login", "id", "type"}
            self._next_user_id = 9_100_001
            self._repo_by_key: dict[str, Repo] = {}
            self._next_issue_id = 3_000_000_001
            self._next_comment_id = 2_500_000_001
            self._next_label_id = 7_000_000_001
            self._comments: dict[int, Comment] = {}
            self._user(self.owner, "Organization")
            self._user(self.login)
            for index, name in enumerate(self.repo_names):
                repo = Repo(800_000_001 + index, name, now)
                for label_name, color, description in DEFAULT_LABELS:
                    repo.labels[label_name] = Label(self._label_id(), label_name, color, description, True)
                self._repo_by_key[name.lower()] = repo
            self._rate_used = 0
            self._rate_reset: int | None = None
            self._secondary_writes = 0
            self._late_writes = 0
            self._secondary_retry_after = 60
            self._secondary_status = 403
            self.webhooks.reset()
            self.request_log.clear()

    # -- kit hooks ---------------------------------------------------------------------------
    def routes(self) -> None:
        repo = "/repos/{owner}/{repo}"
        table: list[tuple[str, str, Callable[[Request], Response], str]] = [
            ("GET", "/rate_limit", self._get_rate_limit,
             DOCS + "/rate-limit/rate-limit#get-rate-limit-status-for-the-authenticated-user"),
            ("GET", repo + "/issues", self._list_issues, DOC_ISSUES + "#list-repository-issues"),
            ("POST", repo + "/issues", self._create_issue, DOC_ISSUES + "#create-an-issue"),
            # Registered before /issues/{issue_number}, which would otherwise take "comments" as a number.
            ("GET", repo + "/issues/comments", self._list_repo_comments,
             DOC_COMMENTS + "#list-issue-comments-for-a-repository"),
            ("GET", repo + "/issues/comments/{comment_id}", self._get_comment,
             DOC_COMMENTS + "#get-an-issue-comment"),
            ("PATCH", repo + "/issues/comments/{comment_id}", self._edit_comment,
             DOC_COMMENTS + "#update-an-issue-comment"),
            ("GET", repo + "/issues/{issue_number}", self._get_issue, DOC_ISSUES + "#get-an-issue"),
            ("PATCH", repo + "/issues/{issue_number}", self._update_issue, DOC_ISSUES + "#update-an-issue"),
            ("GET", repo + "/issues/{issue_number}/comments", self._list_comments,
             DOC_COMMENTS + "#list-issue-comments"),
            ("POST", repo + "/issues/{issue_number}/comments", self._create_comment,
             DOC_COMMENTS + "#create-an-issue-comment"),
            ("GET", repo + "/issues/{issue_number}/labels", self._list_issue_labels,
             DOC_LABELS + "#list-labels-for-an-issue"),
            ("POST", repo + "/issues/{issue_number}/labels", self._add_issue_labels,
             DOC_LABELS + "#add-labels-to-an-issue"),
            ("PUT", repo + "/issues/{issue_number}/labels", self._set_issue_labels,
             DOC_LABELS + "#set-labels-for-an-issue"),
            ("DELETE", repo + "/issues/{issue_number}/labels/{name}", self._remove_issue_label,
             DOC_LABELS + "#remove-a-label-from-an-issue"),
            ("GET", repo + "/labels", self._list_labels, DOC_LABELS + "#list-labels-for-a-repository"),
        ]
        for method, pattern, handler, doc in table:
            self.route(method, pattern, self._documented(handler, doc))

    @staticmethod
    def _documented(handler: Callable[[Request], Response], doc: str) -> Callable[[Request], Response]:
        def run(request: Request) -> Response:
            try:
                return handler(request)
            except GitHubError as error:
                return error.response(doc)
        return run

    def authenticate(self, request: Request) -> Response | None:
        scheme, _, credential = request.headers.get("authorization", "").strip().partition(" ")
        if scheme.lower() in ("bearer", "token") and hmac.compare_digest(credential.strip(), self.token):
            return None
        if not scheme:
            # Our repositories are private: GitHub answers 404 to anonymous callers of a private repo,
            # but 401 "Requires authentication" on endpoints that need a user, which is what a client
            # that forgot its token most needs to see.
            return Response(401, error_body("Requires authentication", DOCS, 401))
        return Response(401, error_body("Bad credentials", DOCS, 401))

    def server_error_response(self) -> Response:
        return Response(503, error_body("Service Unavailable", DOCS, 503))

    def not_found_response(self, request: Request) -> Response:
        return Response(404, error_body("Not Found", DOCS, 404))

    def dispatch(self, request: Request) -> Response:
        if self.faults.latency:
            time.sleep(self.faults.latency)
        request.path = self._canonical_path(request.path)
        denied = self.authenticate(request)
        if denied is not None:
            return self._finish(denied)
        if self.require_user_agent and not request.headers.get("user-agent"):
            return self._finish(Response(403, {
                "message": "Request forbidden by administrative rules. "
                           "Please make sure your request has a User-Agent header "
                           "(https://docs.github.com/en/rest/overview/resources-in-the-rest-api#user-agent-required)."}))
        version = request.headers.get("x-github-api-version")
        if version is not None and version not in API_VERSIONS:
            return self._finish(Response(400, error_body(
                f"Unsupported 'X-GitHub-Api-Version' header value '{version}'. "
                f"Supported versions: {', '.join(API_VERSIONS)}", DOCS + "/overview/api-versions", 400)))
        if self.storm_response() is not None:  # GitHub's storms are secondary limits: 429 + retry-after
            return self._finish(self._secondary_limited(429, max(1, math.ceil(self._storm_retry_after))))
        free = request.path == "/rate_limit"  # GitHub does not charge for it, even when limited
        writing = request.method in ("POST", "PATCH", "PUT", "DELETE")
        with self.lock:
            if not free and self._rate_state()[0] >= self.rate_limit_per_hour:
                return self._finish(self._primary_limited())
            if writing and self._secondary_writes > 0:
                self._secondary_writes -= 1
                return self._finish(self._secondary_limited())
            if not free:
                self._charge()
        hang = self.faults.hang()
        if hang == "before":
            time.sleep(self.faults.timeout_seconds)
        if self.faults.fail():
            return self._finish(self.server_error_response())
        response = self._route(request)
        if hang == "after":
            time.sleep(self.faults.timeout_seconds)
        elif writing and response.status < 300 and self._take_late_write():
            # The write is done; its answer comes after the client has given up (a timeout after
            # the issue was created: the case the creation intent + marker search exist for).
            time.sleep(self.faults.timeout_seconds)
        if response.status == 405:  # GitHub knows no "wrong method": an unrouted method is a 404
            response = self.not_found_response(request)
        if request.method == "GET" and response.status == 200:
            response = self._conditional(request, response)
            if response.status == 304 and not free:
                with self.lock:
                    self._rate_used = max(self._rate_used - 1, 0)  # a 304 is not charged
        return self._finish(response)

    # -- rate limits -------------------------------------------------------------------------
    def _rate_state(self) -> tuple[int, int]:
        """(used, reset epoch) of the current hourly window; a window starts with its first request."""
        now = self._now().timestamp()
        if self._rate_reset is not None and now >= self._rate_reset:
            self._rate_used, self._rate_reset = 0, None
        reset = self._rate_reset if self._rate_reset is not None else math.ceil(now) + RATE_WINDOW
        return self._rate_used, reset

    def _charge(self) -> None:
        self._rate_state()
        if self._rate_reset is None:
            self._rate_reset = math.ceil(self._now().timestamp()) + RATE_WINDOW
        self._rate_used += 1

    def _rate_headers(self) -> dict[str, str]:
        with self.lock:
            used, reset = self._rate_state()
        limit = self.rate_limit_per_hour
        return {"x-ratelimit-limit": str(limit), "x-ratelimit-remaining": str(max(limit - used, 0)),
                "x-ratelimit-reset": str(reset), "x-ratelimit-used": str(min(used, limit)),
                "x-ratelimit-resource": "core"}

    def _primary_limited(self) -> Response:
        user_id = self._user(self.login)["id"]
        status = self.primary_limit_status
        message = (f"API rate limit exceeded for user ID {user_id}. If you reach out to GitHub Support for "
                   f"help, please include the request ID {self._request_id()} and timestamp "
                   f"{self._now().strftime('%Y-%m-%d %H:%M:%S')} UTC.")
        return Response(status, error_body(message, DOC_RATE, status))

    def _secondary_limited(self, status: int | None = None, retry_after: int | None = None) -> Response:
        status = status or self._secondary_status
        retry_after = retry_after or self._secondary_retry_after
        message = ("You have exceeded a secondary rate limit. Please wait a few minutes before you try again. "
                   f"If you reach out to GitHub Support for help, please include the request ID "
                   f"{self._request_id()}.")
        return Response(status, error_body(message, DOC_RATE + "#about-secondary-rate-limits", status),
                        {"retry-after": str(retry_after)})

    def _finish(self, response: Response) -> Response:
        for name, value in self._rate_headers().items():
            response.headers.setdefault(name, value)
        response.headers.setdefault("X-GitHub-Media-Type", "github.v3; format=json")
        response.headers.setdefault("x-github-api-version-selected", API_VERSIONS[0])
        response.headers.setdefault("X-GitHub-Request-Id", self._request_id())
        return response

    def _request_id(self) -> str:
        with self.lock:
            self._request_seq += 1
            seq = self._request_seq
        return f"{self.port:04X}:{seq:06X}:{uuid.uuid4().hex[:7].upper()}"

    # -- conditional requests ----------------------------------------------------------------
    @staticmethod
    def _conditional(request: Request, response: Response) -> Response:
        digest = hashlib.sha256(response.encode() + response.headers.get("Link", "").encode()).hexdigest()
        etag = f'W/"{digest}"'
        response.headers["ETag"] = etag
        response.headers.setdefault("Cache-Control", "private, max-age=60, s-maxage=60")
        response.headers.setdefault("Vary", "Accept, Authorization, Cookie, X-GitHub-OTP")
        not_modified = Response(304, None, {k: v for k, v in response.headers.items()
                                            if k in ("ETag", "Last-Modified", "Cache-Control", "Vary")})
        wanted = request.headers.get("if-none-match")
        if wanted is not None:
            tags = {tag.strip().removeprefix("W/") for tag in wanted.split(",")}
            return not_modified if "*" in tags or etag.removeprefix("W/") in tags else response
        since_raw, modified_raw = request.headers.get("if-modified-since"), response.headers.get("Last-Modified")
        if since_raw and modified_raw:
            try:
                if parsedate_to_datetime(modified_raw) <= parsedate_to_datetime(since_raw):
                    return not_modified
            except (TypeError, ValueError):
                pass
        return response

    # -- paths, users, rendering -------------------------------------------------------------
    def _canonical_path(self, path: str) -> str:
        """`/repositories/{id}/...` (what GitHub's Link headers use) served as `/repos/{owner}/{repo}/...`."""
        match = re.fullmatch(r"/repositories/(\d+)(/.*)?", path)
        if match:
            with self.lock:
                repo = next((r for r in self._repo_by_key.values() if r.id == int(match.group(1))), None)
            if repo is not None:
                return f"/repos/{self.owner}/{repo.name}{match.group(2) or ''}"
        return path

    def _now(self) -> datetime:
        return self.clock().astimezone(UTC).replace(microsecond=0)

    def _user(self, login: str, kind: str = "User") -> Json:
        user = self.users.get(login.lower())
        if user is None:
            user = {"login": login, "id": self._next_user_id, "type": kind}
            self._next_user_id += 1
            self.users[login.lower()] = user
        return user

    def _label_id(self) -> int:
        self._next_label_id += 1
        return self._next_label_id

    def _user_json(self, login: str) -> Json:
        user = self._user(login)
        api = f"{self.base_url}/users/{user['login']}"
        return {
            "login": user["login"], "id": user["id"], "node_id": node_id("U", user["id"]),
            "avatar_url": f"{self.base_url}/avatars/u/{user['id']}?v=4", "gravatar_id": "", "url": api,
            "html_url": f"{self.base_url}/{user['login']}", "followers_url": f"{api}/followers",
            "following_url": api + "/following{/other_user}", "gists_url": api + "/gists{/gist_id}",
            "starred_url": api + "/starred{/owner}{/repo}", "subscriptions_url": f"{api}/subscriptions",
            "organizations_url": f"{api}/orgs", "repos_url": f"{api}/repos",
            "events_url": api + "/events{/privacy}", "received_events_url": f"{api}/received_events",
            "type": user["type"], "user_view_type": "public", "site_admin": False,
        }

    def _association(self, login: str) -> str:
        lowered = login.lower()
        if lowered == self.owner.lower():
            return "OWNER"
        if lowered == self.login.lower():
            return "MEMBER"
        if lowered in {c.lower() for c in self.collaborators}:
            return "COLLABORATOR"
        return "NONE"

    def _repo_api(self, repo: Repo) -> str:
        return f"{self.base_url}/repos/{self.owner}/{repo.name}"

    def _label_json(self, repo: Repo, label: Label) -> Json:
        return {"id": label.id, "node_id": node_id("LA", label.id),
                "url": f"{self._repo_api(repo)}/labels/{quote(label.name, safe='')}", "name": label.name,
                "color": label.color, "default": label.default, "description": label.description}

    def _reactions(self, url: str) -> Json:
        return {"url": f"{url}/reactions", "total_count": 0, "+1": 0, "-1": 0, "laugh": 0, "hooray": 0,
                "confused": 0, "heart": 0, "rocket": 0, "eyes": 0}

    def _html_issue_url(self, repo: Repo, issue: Issue) -> str:
        kind = "pull" if issue.pull else "issues"
        return f"{self.base_url}/{self.owner}/{repo.name}/{kind}/{issue.number}"

    def _issue_json(self, repo: Repo, issue: Issue) -> Json:
        url = f"{self._repo_api(repo)}/issues/{issue.number}"
        html_url = self._html_issue_url(repo, issue)
        body: Json = {
            "url": url, "repository_url": self._repo_api(repo), "labels_url": url + "/labels{/name}",
            "comments_url": f"{url}/comments", "events_url": f"{url}/events", "html_url": html_url,
            "id": issue.id, "node_id": node_id("PR" if issue.pull else "I", issue.id), "number": issue.number,
            "title": issue.title, "user": self._user_json(issue.user),
            "labels": [self._label_json(repo, label) for label in sorted(issue.labels, key=lambda x: x.name.lower())],
            "state": issue.state, "locked": False,
            "assignee": self._user_json(issue.assignees[0]) if issue.assignees else None,
            "assignees": [self._user_json(login) for login in issue.assignees],
            "milestone": None, "comments": len(issue.comments),
            "created_at": iso(issue.created), "updated_at": iso(issue.updated),
            "closed_at": iso(issue.closed) if issue.closed else None,
            "author_association": self._association(issue.user), "type": None, "active_lock_reason": None,
        }
        if issue.pull:
            pulls = f"{self._repo_api(repo)}/pulls/{issue.number}"
            body["draft"] = False
            body["pull_request"] = {"url": pulls, "html_url": html_url, "diff_url": f"{html_url}.diff",
                                    "patch_url": f"{html_url}.patch", "merged_at": None}
        else:
            body["sub_issues_summary"] = {"total": 0, "completed": 0, "percent_completed": 0}
            body["issue_dependencies_summary"] = {"blocked_by": 0, "total_blocked_by": 0, "blocking": 0,
                                                  "total_blocking": 0}
        body.update({
            "body": issue.body,
            "closed_by": self._user_json(issue.closed_by) if issue.closed_by else None,
            "reactions": self._reactions(url), "timeline_url": f"{url}/timeline",
            "performed_via_github_app": None, "state_reason": issue.state_reason,
        })
        return body

    def _comment_json(self, comment: Comment) -> Json:
        repo = self._repo_by_key[comment.repo]
        issue = repo.issues[comment.number]
        url = f"{self._repo_api(repo)}/issues/comments/{comment.id}"
        return {
            "url": url, "html_url": f"{self._html_issue_url(repo, issue)}#issuecomment-{comment.id}",
            "issue_url": f"{self._repo_api(repo)}/issues/{issue.number}", "id": comment.id,
            "node_id": node_id("IC", comment.id), "user": self._user_json(comment.user),
            "created_at": iso(comment.created), "updated_at": iso(comment.updated),
            "author_association": self._association(comment.user), "body": comment.body,
            "reactions": self._reactions(url), "performed_via_github_app": None,
        }

    def _repository_json(self, repo: Repo) -> Json:
        api = self._repo_api(repo)
        full_name = f"{self.owner}/{repo.name}"
        html = f"{self.base_url}/{full_name}"
        open_issues = sum(1 for i in repo.issues.values() if i.state == "open")
        stamp = iso(repo.created)
        return {
            "id": repo.id, "node_id": node_id("R", repo.id), "name": repo.name, "full_name": full_name,
            "private": True, "owner": self._user_json(self.owner), "html_url": html, "description": None,
            "fork": False, "url": api, "forks_url": f"{api}/forks", "keys_url": api + "/keys{/key_id}",
            "collaborators_url": api + "/collaborators{/collaborator}", "teams_url": f"{api}/teams",
            "hooks_url": f"{api}/hooks", "issue_events_url": api + "/issues/events{/number}",
            "events_url": f"{api}/events", "assignees_url": api + "/assignees{/user}",
            "branches_url": api + "/branches{/branch}", "tags_url": f"{api}/tags",
            "blobs_url": api + "/git/blobs{/sha}", "git_tags_url": api + "/git/tags{/sha}",
            "git_refs_url": api + "/git/refs{/sha}", "trees_url": api + "/git/trees{/sha}",
            "statuses_url": api + "/statuses/{sha}", "languages_url": f"{api}/languages",
            "stargazers_url": f"{api}/stargazers", "contributors_url": f"{api}/contributors",
            "subscribers_url": f"{api}/subscribers", "subscription_url": f"{api}/subscription",
            "commits_url": api + "/commits{/sha}", "git_commits_url": api + "/git/commits{/sha}",
            "comments_url": api + "/comments{/number}", "issue_comment_url": api + "/issues/comments{/number}",
            "contents_url": api + "/contents/{+path}", "compare_url": api + "/compare/{base}...{head}",
            "merges_url": f"{api}/merges", "archive_url": api + "/{archive_format}{/ref}",
            "downloads_url": f"{api}/downloads", "issues_url": api + "/issues{/number}",
            "pulls_url": api + "/pulls{/number}", "milestones_url": api + "/milestones{/number}",
            "notifications_url": api + "/notifications{?since,all,participating}",
            "labels_url": api + "/labels{/name}", "releases_url": api + "/releases{/id}",
            "deployments_url": f"{api}/deployments", "created_at": stamp, "updated_at": stamp,
            "pushed_at": stamp, "git_url": f"git://{self.host}:{self.port}/{full_name}.git",
            "ssh_url": f"ssh://git@{self.host}:{self.port}/{full_name}.git", "clone_url": f"{html}.git",
            "svn_url": html, "homepage": None, "size": 0, "stargazers_count": 0, "watchers_count": 0,
            "language": None, "has_issues": True, "has_projects": True, "has_downloads": True,
            "has_wiki": False, "has_pages": False, "has_discussions": False, "forks_count": 0,
            "mirror_url": None, "archived": False, "disabled": False, "open_issues_count": open_issues,
            "license": None, "allow_forking": False, "is_template": False, "web_commit_signoff_required": False,
            "topics": [], "visibility": "private", "forks": 0, "open_issues": open_issues, "watchers": 0,
            "default_branch": "main",
        }

    # -- lookups and request parsing ---------------------------------------------------------
    def _repo(self, request: Request) -> Repo:
        params = request.params
        repo = self._repo_by_key.get(params["repo"].lower())
        if params["owner"].lower() != self.owner.lower() or repo is None:
            raise not_found()
        return repo

    def _issue(self, repo: Repo, raw_number: str | int) -> Issue:
        try:
            issue = repo.issues.get(int(raw_number))
        except ValueError:
            issue = None
        if issue is None:
            raise not_found()
        return issue

    def _comment(self, repo: Repo, raw_id: str | int) -> Comment:
        try:
            comment = self._comments.get(int(raw_id))
        except ValueError:
            comment = None
        if comment is None or comment.repo != repo.name.lower():
            raise not_found()
        return comment

    @staticmethod
    def _body(request: Request, required: bool = True) -> Json:
        try:
            payload = request.json()
        except (ValueError, UnicodeDecodeError):
            raise GitHubError(400, "Problems parsing JSON") from None
        if payload is None and not required:
            return {}
        if not isinstance(payload, dict):
            raise GitHubError(400, "Body should be a JSON object" if payload is not None
                              else "Problems parsing JSON")
        return payload

    @staticmethod
    def _choice(request: Request, name: str, allowed: tuple[str, ...], default: str, resource: str) -> str:
        value = request.arg(name) or default
        if value not in allowed:
            raise validation_failed(resource, name, "invalid", value)
        return value

    @staticmethod
    def _since(request: Request, resource: str) -> datetime | None:
        raw = request.arg("since")
        if not raw:
            return None
        moment = parse_iso(raw)
        if moment is None:
            raise validation_failed(resource, "since", "invalid", raw)
        return moment

    def _page(self, request: Request, items: list[Any], path: str) -> tuple[list[Any], dict[str, str]]:
        """One page of `items` and GitHub's Link header (absent when everything fits on page 1)."""
        def number(name: str, default: int) -> int:
            try:
                return int(request.arg(name) or default)
            except ValueError:
                return default

        per_page = number("per_page", DEFAULT_PER_PAGE)
        per_page = DEFAULT_PER_PAGE if per_page < 1 else min(per_page, MAX_PER_PAGE)
        page = max(number("page", 1), 1)
        pages = max(math.ceil(len(items) / per_page), 1)
        chunk = items[(page - 1) * per_page: page * per_page]
        kept = [(key, value) for key, values in request.query.items() if key != "page" for value in values]

        def link(target: int, rel: str) -> str:
            return f'<{self.base_url}{path}?{urlencode([*kept, ("page", str(target))])}>; rel="{rel}"'

        links: list[str] = []
        if page > 1:
            links.append(link(page - 1, "prev"))
        if page < pages:
            links += [link(page + 1, "next"), link(pages, "last")]
        if page > 1:
            links.append(link(1, "first"))
        return chunk, ({"Link": ", ".join(links)} if links else {})

    def _actor(self) -> str:
        return self.login

    # -- state changes (callers hold self.lock) ----------------------------------------------
    def _touch(self, issue: Issue) -> None:
        issue.updated = self._now()

    def _resolve_labels(self, repo: Repo, values: Any) -> list[Label]:
        """Labels by name (strings or `{"name": ...}` objects); every name is checked before any unknown
        one is created."""
        if not isinstance(values, list):
            raise validation_failed("Issue", "labels", "invalid")
        names: list[str] = []
        for value in values:
            name = value.get("name") if isinstance(value, dict) else value
            if isinstance(name, int | float) and not isinstance(name, bool):
                name = str(name)
            if not isinstance(name, str) or not name.strip():
                raise validation_failed("Label", "name", "invalid", None if name is None else str(name))
            names.append(name.strip())
        labels: list[Label] = []
        for name in names:
            label = repo.labels.get(name.lower())
            if label is None:  # GitHub creates labels it does not know, in its neutral grey
                label = Label(self._label_id(), name, NEW_LABEL_COLOR, None, False)
                repo.labels[name.lower()] = label
            if label not in labels:
                labels.append(label)
        return labels

    def _resolve_assignees(self, values: Any) -> list[str]:
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise validation_failed("Issue", "assignees", "invalid")
        assignable = {login.lower(): login for login in (self.login, *self.collaborators)}
        resolved: list[str] = []
        for value in values:
            login = assignable.get(value.lower())
            if login is None:
                raise validation_failed("Issue", "assignees", "invalid", value)
            if login not in resolved:
                resolved.append(login)
        return resolved

    def _create(self, repo: Repo, spec: Json, actor: str, *, pull: bool = False, notify: bool = True) -> Issue:
        title = spec.get("title")
        if isinstance(title, int) and not isinstance(title, bool):
            title = str(title)
        if not isinstance(title, str) or not title.strip():
            raise validation_failed("Issue", "title", "missing_field")
        body = spec.get("body")
        if body is not None and not isinstance(body, str):
            raise validation_failed("Issue", "body", "invalid")
        assignees = spec.get("assignees") or []
        if spec.get("assignee"):
            assignees = [spec["assignee"], *assignees] if isinstance(assignees, list) else assignees
        logins = self._resolve_assignees(assignees)
        if spec.get("milestone") is not None:
            raise validation_failed("Issue", "milestone", "invalid", spec["milestone"])
        labels = self._resolve_labels(repo, spec.get("labels") or [])  # last: it may create labels
        now = self._now()
        self._next_issue_id += 1
        issue = Issue(self._next_issue_id, repo.name.lower(), repo.next_number, title, body or None, actor, now,
                      now, labels=labels, assignees=logins, pull=pull)
        repo.next_number += 1
        repo.issues[issue.number] = issue
        if not notify:
            return issue
        self._emit_issue(repo, issue, "opened", actor)
        for label in labels:
            self._emit_issue(repo, issue, "labeled", actor, label=self._label_json(repo, label))
        for login in logins:
            self._emit_issue(repo, issue, "assigned", actor, assignee=self._user_json(login))
        return issue

    def _update(self, repo: Repo, issue: Issue, spec: Json, actor: str) -> bool:
        """Apply a PATCH body. Everything is validated before anything changes. True when
        something changed."""
        events: list[tuple[str, Json]] = []
        changes: Json = {}
        title = spec.get("title")
        if isinstance(title, int) and not isinstance(title, bool):
            title = str(title)
        if title is not None and (not isinstance(title, str) or not title.strip()):
            raise validation_failed("Issue", "title", "missing_field")
        body_given = "body" in spec
        body = spec.get("body")
        if body is not None and not isinstance(body, str):
            raise validation_failed("Issue", "body", "invalid")
        body = body or None  # GitHub shows an empty description as null
        state = spec.get("state")
        if state is not None and state not in ("open", "closed"):
            raise validation_failed("Issue", "state", "invalid", str(state))
        reason = spec.get("state_reason")
        if reason is not None and reason not in STATE_REASONS:
            raise validation_failed("Issue", "state_reason", "invalid", str(reason))
        if state == "closed" and reason == "reopened":
            raise validation_failed("Issue", "state_reason", "invalid", reason)
        assignees: list[str] | None = None
        if spec.get("assignees") is not None:
            assignees = self._resolve_assignees(spec["assignees"])
        elif "assignee" in spec:
            assignees = self._resolve_assignees([spec["assignee"]] if spec["assignee"] else [])
        if spec.get("milestone") is not None:
            raise validation_failed("Issue", "milestone", "invalid", spec["milestone"])
        # Last: resolving may create labels, which must not happen for a rejected request.
        labels = self._resolve_labels(repo, spec["labels"]) if spec.get("labels") is not None else None

        if title is not None and title != issue.title:
            changes["title"] = {"from": issue.title}
            issue.title = title
        if body_given and body != issue.body:
            changes["body"] = {"from": issue.body or ""}
            issue.body = body
        if changes:
            events.append(("edited", {"changes": changes}))
        now = self._now()
        if state == "closed" and issue.state != "closed":
            issue.state, issue.state_reason = "closed", reason or "completed"
            issue.closed, issue.closed_by = now, actor
            events.append(("closed", {}))
        elif state == "open" and issue.state != "open":
            # `state_reason` only counts with a state change, and a reopened issue is "reopened".
            issue.state, issue.state_reason, issue.closed, issue.closed_by = "open", "reopened", None, None
            events.append(("reopened", {}))
        if labels is not None:
            removed = [label for label in issue.labels if label not in labels]
            added = [label for label in labels if label not in issue.labels]
            issue.labels = labels
            events += [("unlabeled", {"label": self._label_json(repo, label)}) for label in removed]
            events += [("labeled", {"label": self._label_json(repo, label)}) for label in added]
        if assignees is not None:
            removed_logins = [login for login in issue.assignees if login not in assignees]
            added_logins = [login for login in assignees if login not in issue.assignees]
            issue.assignees = assignees
            events += [("unassigned", {"assignee": self._user_json(login)}) for login in removed_logins]
            events += [("assigned", {"assignee": self._user_json(login)}) for login in added_logins]
        if events:
            self._touch(issue)
        for action, extra in events:
            self._emit_issue(repo, issue, action, actor, **extra)
        return bool(events)

    def _set_labels(self, repo: Repo, issue: Issue, labels: list[Label], actor: str) -> None:
        removed = [label for label in issue.labels if label not in labels]
        added = [label for label in labels if label not in issue.labels]
        issue.labels = labels
        if removed or added:
            self._touch(issue)
        for label in removed:
            self._emit_issue(repo, issue, "unlabeled", actor, label=self._label_json(repo, label))
        for label in added:
            self._emit_issue(repo, issue, "labeled", actor, label=self._label_json(repo, label))

    def _new_comment(self, repo: Repo, issue: Issue, body: Any, actor: str) -> Comment:
        if not isinstance(body, str) or not body.strip():
            raise validation_failed("IssueComment", "body", "missing_field")
        now = self._now()
        self._next_comment_id += 1
        comment = Comment(self._next_comment_id, repo.name.lower(), issue.number, body, actor, now, now)
        self._comments[comment.id] = comment
        issue.comments.append(comment.id)
        self._touch(issue)
        self._emit("issue_comment", "created", repo, actor, issue=self._issue_json(repo, issue),
                   comment=self._comment_json(comment))
        return comment

    def _change_comment(self, repo: Repo, comment: Comment, body: Any, actor: str) -> None:
        if not isinstance(body, str) or not body.strip():
            raise validation_failed("IssueComment", "body", "missing_field")
        if body == comment.body:
            return
        previous = comment.body
        comment.body, comment.updated = body, self._now()
        # The issue's updated_at is left alone: whether GitHub bumps it for a comment edit is not
        # documented, and a sync that relies on it would miss edits if it does not.
        issue = repo.issues[comment.number]
        self._emit("issue_comment", "edited", repo, actor, changes={"body": {"from": previous}},
                   issue=self._issue_json(repo, issue), comment=self._comment_json(comment))

    # -- handlers ----------------------------------------------------------------------------
    def _get_rate_limit(self, request: Request) -> Response:
        used, reset = self._rate_state()
        limit = self.rate_limit_per_hour
        core = {"limit": limit, "used": min(used, limit), "remaining": max(limit - used, 0), "reset": reset}
        minute = math.ceil(self._now().timestamp()) + 60
        return Response(200, {"resources": {
            "core": core,
            "search": {"limit": 30, "used": 0, "remaining": 30, "reset": minute},
            "graphql": {"limit": 5000, "used": 0, "remaining": 5000, "reset": reset},
        }, "rate": dict(core)})

    def _list_issues(self, request: Request) -> Response:
        repo = self._repo(request)
        state = self._choice(request, "state", ("open", "closed", "all"), "open", "Issue")
        sort = self._choice(request, "sort", ("created", "updated", "comments"), "created", "Issue")
        direction = self._choice(request, "direction", ("asc", "desc"), "desc", "Issue")
        since = self._since(request, "Issue")
        wanted_labels = [n.strip().lower() for n in (request.arg("labels") or "").split(",") if n.strip()]
        creator, assignee, milestone = request.arg("creator"), request.arg("assignee"), request.arg("milestone")

        def keep(issue: Issue) -> bool:
            if state != "all" and issue.state != state:
                return False
            if since is not None and issue.updated < since:
                return False
            names = {label.name.lower() for label in issue.labels}
            if any(name not in names for name in wanted_labels):
                return False
            if creator and issue.user.lower() != creator.lower():
                return False
            if assignee == "none" and issue.assignees:
                return False
            if assignee == "*" and not issue.assignees:
                return False
            if assignee not in (None, "", "none", "*") and assignee.lower() not in {
                    a.lower() for a in issue.assignees}:
                return False
            return not (milestone and milestone != "none")  # no milestones exist here

        def key(issue: Issue) -> tuple[Any, int]:
            primary: Any = {"created": issue.created, "updated": issue.updated,
                            "comments": len(issue.comments)}[sort]
            return primary, issue.number

        found = sorted((i for i in repo.issues.values() if keep(i)), key=key, reverse=direction == "desc")
        page, headers = self._page(request, found, f"/repositories/{repo.id}/issues")
        return Response(200, [self._issue_json(repo, issue) for issue in page], headers)

    def _create_issue(self, request: Request) -> Response:
        repo = self._repo(request)
        issue = self._create(repo, self._body(request), self._actor())
        body = self._issue_json(repo, issue)
        return Response(201, body, {"Location": body["url"]})

    def _get_issue(self, request: Request) -> Response:
        repo = self._repo(request)
        issue = self._issue(repo, request.params["issue_number"])
        return Response(200, self._issue_json(repo, issue),
                        {"Last-Modified": format_datetime(issue.updated, usegmt=True)})

    def _update_issue(self, request: Request) -> Response:
        repo = self._repo(request)
        issue = self._issue(repo, request.params["issue_number"])
        if not self._update(repo, issue, self._body(request, required=False), self._actor()):
            self.noop_writes += 1
        return Response(200, self._issue_json(repo, issue))

    def _list_comments(self, request: Request) -> Response:
        repo = self._repo(request)
        issue = self._issue(repo, request.params["issue_number"])
        since = self._since(request, "IssueComment")
        found = [self._comments[cid] for cid in issue.comments]
        found = [c for c in found if since is None or c.updated >= since]
        page, headers = self._page(request, found, f"/repositories/{repo.id}/issues/{issue.number}/comments")
        return Response(200, [self._comment_json(c) for c in page], headers)

    def _list_repo_comments(self, request: Request) -> Response:
        repo = self._repo(request)
        since = self._since(request, "IssueComment")
        sort = request.arg("sort")
        if sort is not None:
            sort = self._choice(request, "sort", ("created", "updated"), "created", "IssueComment")
        direction = self._choice(request, "direction", ("asc", "desc"), "desc", "IssueComment")
        found = [c for c in self._comments.values()
                 if c.repo == repo.name.lower() and (since is None or c.updated >= since)]
        if sort is None:  # without `sort` the list is in id order and `direction` is ignored
            found.sort(key=lambda c: c.id)
        else:
            found.sort(key=lambda c: (c.created if sort == "created" else c.updated, c.id),
                       reverse=direction == "desc")
        page, headers = self._page(request, found, f"/repositories/{repo.id}/issues/comments")
        return Response(200, [self._comment_json(c) for c in page], headers)

    def _create_comment(self, request: Request) -> Response:
        repo = self._repo(request)
        issue = self._issue(repo, request.params["issue_number"])
        comment = self._new_comment(repo, issue, self._body(request).get("body"), self._actor())
        body = self._comment_json(comment)
        return Response(201, body, {"Location": body["url"]})

    def _get_comment(self, request: Request) -> Response:
        repo = self._repo(request)
        comment = self._comment(repo, request.params["comment_id"])
        return Response(200, self._comment_json(comment),
                        {"Last-Modified": format_datetime(comment.updated, usegmt=True)})

    def _edit_comment(self, request: Request) -> Response:
        repo = self._repo(request)
        comment = self._comment(repo, request.params["comment_id"])
        self._change_comment(repo, comment, self._body(request).get("body"), self._actor())
        return Response(200, self._comment_json(comment))

    def _issue_labels_response(self, request: Request, repo: Repo, issue: Issue) -> Response:
        labels = sorted(issue.labels, key=lambda label: label.name.lower())
        page, headers = self._page(request, labels, f"/repositories/{repo.id}/issues/{issue.number}/labels")
        return Response(200, [self._label_json(repo, label) for label in page], headers)

    def _labels_input(self, request: Request) -> Any:
        try:
            payload = request.json()
        except (ValueError, UnicodeDecodeError):
            raise GitHubError(400, "Problems parsing JSON") from None
        if isinstance(payload, dict):
            payload = payload.get("labels")
        if isinstance(payload, str):
            payload = [payload]
        return payload if payload is not None else []

    def _list_issue_labels(self, request: Request) -> Response:
        repo = self._repo(request)
        return self._issue_labels_response(request, repo, self._issue(repo, request.params["issue_number"]))

    def _add_issue_labels(self, request: Request) -> Response:
        repo = self._repo(request)
        issue = self._issue(repo, request.params["issue_number"])
        extra = self._resolve_labels(repo, self._labels_input(request))
        self._set_labels(repo, issue, issue.labels + [label for label in extra if label not in issue.labels],
                         self._actor())
        return self._issue_labels_response(request, repo, issue)

    def _set_issue_labels(self, request: Request) -> Response:
        repo = self._repo(request)
        issue = self._issue(repo, request.params["issue_number"])
        self._set_labels(repo, issue, self._resolve_labels(repo, self._labels_input(request)), self._actor())
        return self._issue_labels_response(request, repo, issue)

    def _remove_issue_label(self, request: Request) -> Response:
        repo = self._repo(request)
        issue = self._issue(repo, request.params["issue_number"])
        name = unquote(request.params["name"]).lower()
        label = next((label for label in issue.labels if label.name.lower() == name), None)
        if label is None:
            raise GitHubError(404, "Label does not exist")
        self._set_labels(repo, issue, [other for other in issue.labels if other is not label], self._actor())
        return self._issue_labels_response(request, repo, issue)

    def _list_labels(self, request: Request) -> Response:
        repo = self._repo(request)
        labels = sorted(repo.labels.values(), key=lambda label: label.name.lower())
        page, headers = self._page(request, labels, f"/repositories/{repo.id}/labels")
        return Response(200, [self._label_json(repo, label) for label in page], headers)

    # -- webhooks ----------------------------------------------------------------------------
    def _emit_issue(self, repo: Repo, issue: Issue, action: str, actor: str, **extra: Any) -> None:
        self._emit("issues", action, repo, actor, issue=self._issue_json(repo, issue), **extra)

    def _emit(self, event: str, action: str, repo: Repo, actor: str, **parts: Any) -> None:
        """Queue a delivery. The payload is rendered now, so it shows the state at the time of the change."""
        url = self.webhook_url
        if not url:
            return
        payload: Json = {"action": action, **parts, "repository": self._repository_json(repo),
                         "organization": None, "sender": self._user_json(actor)}
        owner = self._user(self.owner)
        if owner["type"] == "Organization":
            payload["organization"] = {
                "login": owner["login"], "id": owner["id"], "node_id": node_id("O", owner["id"]),
                "url": f"{self.base_url}/orgs/{owner['login']}",
                "repos_url": f"{self.base_url}/orgs/{owner['login']}/repos",
                "events_url": f"{self.base_url}/orgs/{owner['login']}/events",
                "hooks_url": f"{self.base_url}/orgs/{owner['login']}/hooks",
                "issues_url": f"{self.base_url}/orgs/{owner['login']}/issues",
                "members_url": f"{self.base_url}/orgs/{owner['login']}/members" + "{/member}",
                "public_members_url": f"{self.base_url}/orgs/{owner['login']}/public_members" + "{/member}",
                "avatar_url": f"{self.base_url}/avatars/u/{owner['id']}?v=4", "description": None,
            }
        else:
            del payload["organization"]
        body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
        delivery_id = str(uuid.uuid4())
        headers = {
            "Content-Type": "application/json", "User-Agent": "GitHub-Hookshot/emulator",
            "X-GitHub-Event": event, "X-GitHub-Delivery": delivery_id, "X-GitHub-Hook-ID": str(self.hook_id),
            "X-GitHub-Hook-Installation-Target-Type": "repository",
            "X-GitHub-Hook-Installation-Target-ID": str(repo.id),
        }
        self.webhooks.emit(event, body, headers, delivery_id=delivery_id, action=action)

    # -- Python-level helpers (tests, demos) -------------------------------------------------
    def answer_late(self, writes: int = 1) -> None:
        """Apply the next `writes` successful POST/PATCH/PUT/DELETE requests, then hold each answer
        for `faults.timeout_seconds`: the client times out although the tracker acted."""
        with self.lock:
            self._late_writes = writes

    def _take_late_write(self) -> bool:
        with self.lock:
            if self._late_writes <= 0:
                return False
            self._late_writes -= 1
            return True

    def trigger_secondary_rate_limit(self, writes: int = 1, retry_after: int = 60, status: int = 403) -> None:
        """Answer the next `writes` POST/PATCH/PUT/DELETE requests with a secondary-rate-limit error."""
        with self.lock:
            self._secondary_writes = writes
            self._secondary_retry_after = retry_after
            self._secondary_status = status

    def add_collaborator(self, login: str) -> None:
        """Allow `login` as an assignee (author association COLLABORATOR)."""
        with self.lock:
            if login.lower() not in {c.lower() for c in self.collaborators}:
                self.collaborators.append(login)
            self._user(login)

    @contextmanager
    def _helper(self, repo_name: str) -> Iterator[Repo]:
        with self.lock:
            repo = self._repo_by_key.get(repo_name.lower())
            if repo is None:
                raise KeyError(repo_name)
            try:
                yield repo
            except GitHubError as error:
                if error.status == 404:
                    raise KeyError(error.message) from None
                raise ValueError(error_body(error.message, DOCS, error.status, error.errors)) from None

    def add_issue(self, repo: str, title: str, body: str = "", labels: Iterable[str] = (), state: str = "open",
                  user: str = DEFAULT_USER, *, assignees: Iterable[str] = (),
                  state_reason: str | None = None) -> Json:
        """Open an issue as `user` would on github.com (webhooks included); `state="closed"` closes it
        right after, with `state_reason` (default completed)."""
        with self._helper(repo) as found:
            issue = self._create(found, {"title": title, "body": body, "labels": list(labels),
                                         "assignees": list(assignees)}, user)
            if state != "open":
                self._update(found, issue, {"state": state, "state_reason": state_reason}, user)
            return self._issue_json(found, issue)

    def add_pull_request(self, repo: str, title: str, body: str = "", user: str = DEFAULT_USER) -> Json:
        """A pull request, as the issues endpoints show it (with a `pull_request` key; numbers are shared
        with issues). No `issues` webhook is sent for it, as GitHub sends `pull_request` events instead."""
        with self._helper(repo) as found:
            issue = self._create(found, {"title": title, "body": body}, user, pull=True, notify=False)
            return self._issue_json(found, issue)

    def issue(self, repo: str, number: int) -> Json:
        with self._helper(repo) as found:
            return self._issue_json(found, self._issue(found, number))

    def issues(self, repo: str) -> list[Json]:
        """Every issue and pull request of `repo`, by number."""
        with self._helper(repo) as found:
            return [self._issue_json(found, issue) for _, issue in sorted(found.issues.items())]

    def edit_issue(self, repo: str, number: int, user: str = DEFAULT_USER, **changes: Any) -> Json:
        """Apply a PATCH body (title, body, state, state_reason, labels, assignees) as `user`."""
        with self._helper(repo) as found:
            issue = self._issue(found, number)
            self._update(found, issue, changes, user)
            return self._issue_json(found, issue)

    def close(self, repo: str, number: int, state_reason: str = "completed", user: str = DEFAULT_USER) -> Json:
        return self.edit_issue(repo, number, user, state="closed", state_reason=state_reason)

    def reopen(self, repo: str, number: int, user: str = DEFAULT_USER) -> Json:
        return self.edit_issue(repo, number, user, state="open")

    def comments(self, repo: str, number: int) -> list[Json]:
        with self._helper(repo) as found:
            issue = self._issue(found, number)
            return [self._comment_json(self._comments[cid]) for cid in issue.comments]

    def add_comment(self, repo: str, number: int, body: str, user: str = DEFAULT_USER) -> Json:
        with self._helper(repo) as found:
            comment = self._new_comment(found, self._issue(found, number), body, user)
            return self._comment_json(comment)

    def edit_comment(self, repo: str, comment_id: int, body: str, user: str = DEFAULT_USER) -> Json:
        with self._helper(repo) as found:
            comment = self._comment(found, comment_id)
            self._change_comment(found, comment, body, user)
            return self._comment_json(comment)

    def labels(self, repo: str) -> list[Json]:
        with self._helper(repo) as found:
            return [self._label_json(found, label)
                    for label in sorted(found.labels.values(), key=lambda label: label.name.lower())]

    def rate_limit_remaining(self) -> int:
        with self.lock:
            return max(self.rate_limit_per_hour - self._rate_state()[0], 0)

    def seed(self, repo: str | None = None) -> list[Json]:
        """A few realistic issues, comments and a pull request, for demos."""
        name = repo or self.repo_names[0]
        created = [
            self.add_issue(name, "Checkout returns 500 for EU billing addresses",
                           "Customers with an EU address get a server error at checkout.", labels=["bug"]),
            self.add_issue(name, "Export order history as CSV", "Requested by several customers.",
                           labels=["enhancement"], user="mona"),
            self.add_issue(name, "Typo on the pricing page", "", labels=["documentation"], state="closed"),
        ]
        self.add_comment(name, created[0]["number"], "Reproduced on staging; looks like the VAT lookup.")
        self.add_pull_request(name, "Fix VAT lookup for EU addresses", user="mona")
        return [self.issue(name, issue["number"]) for issue in created]


def main() -> None:
    """Run a seeded emulator in the foreground, for demos and manual poking."""
    import argparse

    parser = argparse.ArgumentParser(description="GitHub Issues API emulator")
    parser.add_argument("--port", type=int, default=8767)
    parser.add_argument("--webhook-url", default=None)
    parser.add_argument("--webhook-secret", default=None)
    args = parser.parse_args()
    emulator = GitHubEmulator(port=args.port, webhook_url=args.webhook_url, webhook_secret=args.webhook_secret)
    emulator.seed()
    print(f"GitHub emulator on {emulator.base_url} (Authorization: Bearer {emulator.token}; "
          f"repositories {', '.join(f'{emulator.owner}/{r}' for r in emulator.repo_names)})", flush=True)
    emulator.serve_forever()


if __name__ == "__main__":
    main()
