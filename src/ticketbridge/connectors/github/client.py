"""Thin GitHub REST endpoints (issues): URL constants and small methods on the shared `HttpClient`.

Nothing here interprets issues; `connector.py` does. Every call goes through `HttpClient`, so
retries, rate-limit waits (GitHub answers 403 or 429 with `retry-after` or
`x-ratelimit-remaining: 0` + `x-ratelimit-reset`) and the status -> error table live in one place.
List calls return a `Listing` with the `Link: rel="next"` URL and the `ETag`, because polling
follows GitHub's own page links and sends conditional requests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import requests

from ..http import HttpClient, RetryPolicy, error_json

JSON = dict[str, Any]

API_VERSION = "2022-11-28"
RATE_LIMIT = "/rate_limit"
ISSUES = "/repos/{repo}/issues"  # {repo} is "owner/name"
ISSUE = "/repos/{repo}/issues/{number}"
ISSUE_COMMENTS = "/repos/{repo}/issues/{number}/comments"

MAX_PER_PAGE = 100  # GitHub's largest per_page


def github_error_message(response: requests.Response) -> str:
    """GitHub's `{"message", "errors": [...], "documentation_url"}` as one line.

    e.g. "Validation Failed (Issue.title: missing_field)". Never includes request headers, so the
    token cannot leak through an error.
    """
    body = error_json(response)
    if isinstance(body, str):
        return body
    text = str(body.get("message") or "")
    details: list[str] = []
    for error in body.get("errors") or []:
        if isinstance(error, dict):
            where = ".".join(str(error[k]) for k in ("resource", "field") if error.get(k))
            what = error.get("message") or error.get("code") or ""
            details.append(f"{where}: {what}" if where else str(what))
        else:
            details.append(str(error))
    if details:
        text = f"{text} ({'; '.join(details)})" if text else "; ".join(details)
    return (text or str(body))[:500]


@dataclass(frozen=True)
class Listing:
    """One page of a list endpoint."""

    items: list[JSON]
    next_url: str | None  # Link rel="next", absolute; None on the last page
    etag: str | None
    not_modified: bool = False  # a 304 answer to If-None-Match: nothing changed, no body


class GitHubClient:
    """One GitHub API endpoint (github.com or GHES), authenticated with a token (PAT or app token)."""

    def __init__(self, tracker: str, base_url: str, token: str, *, retry: RetryPolicy | None = None) -> None:
        headers = {
            "Authorization": f"Bearer {token}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": API_VERSION,
        }
        self.http = HttpClient(tracker, base_url, headers=headers, error_message=github_error_message,
                               retry=retry)

    # -- reads -----------------------------------------------------------------------------
    def rate_limit(self) -> JSON:
        return dict(self.http.json("GET", RATE_LIMIT))

    def list_page(self, path_or_url: str, params: JSON | None = None, *, etag: str | None = None) -> Listing:
        """A list page: `path_or_url` is an API path (with `params`) or a Link URL (params inside)."""
        headers = {"If-None-Match": etag} if etag else None
        response = self.http.request("GET", path_or_url, params=params, headers=headers)
        if response.status_code == 304:
            return Listing(items=[], next_url=None, etag=etag, not_modified=True)
        body = response.json() if response.content else []
        if not isinstance(body, list):
            body = []
        next_url = (response.links.get("next") or {}).get("url")
        return Listing(items=[dict(item) for item in body], next_url=next_url,
                       etag=response.headers.get("ETag"))

    def issues_page(self, repo: str, params: JSON, *, etag: str | None = None) -> Listing:
        return self.list_page(ISSUES.format(repo=repo), params, etag=etag)

    def issue(self, repo: str, number: int) -> JSON:
        return dict(self.http.json("GET", ISSUE.format(repo=repo, number=number)))

    def comments_page(self, repo: str, number: int, next_url: str | None = None) -> Listing:
        if next_url:
            return self.list_page(next_url)
        return self.list_page(ISSUE_COMMENTS.format(repo=repo, number=number), {"per_page": MAX_PER_PAGE})

    # -- writes ----------------------------------------------------------------------------
    def create_issue(self, repo: str, payload: JSON) -> JSON:
        # Not idempotent: after a timeout or 5xx the issue may exist; Unsure goes up instead.
        return dict(self.http.json("POST", ISSUES.format(repo=repo), json=payload, idempotent=False))

    def update_issue(self, repo: str, number: int, payload: JSON) -> JSON:
        # PATCH sets fields to given values: repeating it is harmless.
        return dict(self.http.json("PATCH", ISSUE.format(repo=repo, number=number), json=payload))

    def add_comment(self, repo: str, number: int, body: str) -> JSON:
        return dict(self.http.json("POST", ISSUE_COMMENTS.format(repo=repo, number=number), json={"body": body},
                                   idempotent=False))

    @property
    def requests_made(self) -> int:
        return self.http.requests_made
