"""Thin Jira REST endpoints through the `jira` package (pycontribs), under our RetryPolicy.

The package's own retries are off (`max_retries=0`): every call goes through `RetryPolicy` so Jira
shares the rate-limit and back-off rules of the other trackers. Where the package would spend extra
requests (create_issue re-fetches the issue, add_comment builds a resource) we call the REST URL on
the package's session directly; the benchmark counts requests per synced item.

Never format a `JIRAError` with `str()`: its text includes the request headers, i.e. the
Authorization header. Messages are built from the response body only.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import requests
import structlog
from jira import JIRA, JIRAError

from ..errors import RateLimited, Retryable, TrackerError, Unsure, error_for_status
from ..http import HTTP_METRICS, RateGate, RetryPolicy, error_json, pace, wait_for

log = structlog.get_logger(__name__)
T = TypeVar("T")
JSON = dict[str, Any]

TIMEOUT = 30


def jira_error_message(error: JIRAError) -> str:
    """Jira's own words: `errorMessages` plus the per-field `errors` map."""
    response = error.response
    if response is None:
        return error.text or "no response"
    body = error_json(response)
    if isinstance(body, str):
        return body
    parts = [str(m) for m in body.get("errorMessages") or []]
    parts += [f"{name}: {message}" for name, message in (body.get("errors") or {}).items()]
    return "; ".join(parts) or str(body)[:500]


class JiraClient:
    def __init__(self, tracker: str, base_url: str, email: str, token: str, *,
                 retry: RetryPolicy | None = None) -> None:
        self.tracker = tracker
        self.base_url = base_url.rstrip("/")
        self._auth = (email, token)
        self.retry = retry or RetryPolicy()
        self.gate = RateGate(tracker, self.retry)  # pacing on the rate-limit headers, as HttpClient does
        self._jira: JIRA | None = None
        self.requests_made = 0

    # -- plumbing --------------------------------------------------------------------------
    @property
    def jira(self) -> JIRA:
        """Built on first use: building a connector must not touch the network.

        get_server_info=False: we never need serverInfo, and it would cost a request per process.
        """
        if self._jira is None:
            client = JIRA(server=self.base_url, basic_auth=self._auth,
                          options={"rest_api_version": "3"}, max_retries=0, timeout=TIMEOUT,
                          get_server_info=False)
            client._session.hooks["response"].append(self._count)
            pace(client._session, self.gate)  # every request the package sends goes through the gate
            self._jira = client
        return self._jira

    def _count(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        self.requests_made += 1
        HTTP_METRICS.record(self.tracker, response.status_code, response.headers)  # /metrics, status page

    def url(self, path: str) -> str:
        return f"{self.base_url}/rest/api/3/{path}"

    def call(self, what: str, fn: Callable[[], T], *, idempotent: bool = True) -> T:
        """Run `fn` under the retry policy, with Jira's failures mapped to our error tree.

        A creating call (idempotent=False) is retried only when Jira certainly did not act on it
        (429, connection refused); after a timeout or 5xx it may have, so Unsure goes up and the
        engine searches for the marker before trying again.
        """
        if idempotent:
            return self.retry.call(lambda: self._translate(what, fn))
        return self.retry.call(lambda: self._once(what, fn))

    def _once(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return self._translate(what, fn)
        except RateLimited:
            raise
        except Retryable as error:
            cause = error.__cause__
            if (isinstance(cause, requests.ConnectionError) and not isinstance(cause, requests.Timeout)
                    and error.status is None):
                raise
            raise Unsure(error.tracker, error.message, status=error.status) from error

    def _translate(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except JIRAError as error:
            status = error.status_code
            if status is None:  # "Empty Response!": nothing came back
                raise Retryable(self.tracker, f"{what}: no response") from None
            headers: Mapping[str, str] = error.response.headers if error.response is not None else {}
            raise error_for_status(self.tracker, status, f"{what} -> {status}: {jira_error_message(error)}",
                                   wait_for(status, headers)) from None
        except requests.Timeout as error:
            self.requests_made += 1  # no response, so the hook did not count it
            raise Retryable(self.tracker, f"timed out: {what}") from error
        except requests.ConnectionError as error:
            self.requests_made += 1
            raise Retryable(self.tracker, f"cannot connect to {self.base_url}") from error
        except TrackerError:
            raise

    def _get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        response = self.jira._session.get(self.url(path), params=params)
        return response.json() if response.content else None

    def _send(self, method: str, path: str, body: Any, params: Mapping[str, Any] | None = None) -> Any:
        response = self.jira._session.request(method, self.url(path), data=json.dumps(body), params=params)
        return response.json() if response.content else None

    # -- endpoints -------------------------------------------------------------------------
    def myself(self) -> JSON:
        return self.call("GET myself", lambda: dict(self.jira.myself()))

    def fields(self) -> list[JSON]:
        return self.call("GET field", lambda: list(self.jira.fields()))

    def statuses(self) -> list[JSON]:
        # jira.statuses() builds resource objects; the raw list is what we need.
        return self.call("GET status", lambda: list(self._get("status") or []))

    def search(self, jql: str, fields: Sequence[str], *, next_page_token: str | None = None,
               max_results: int = 100) -> JSON:
        body: JSON = {"jql": jql, "fields": list(fields), "maxResults": max_results}
        if next_page_token:
            body["nextPageToken"] = next_page_token
        return self.call("POST search/jql", lambda: self._send("POST", "search/jql", body) or {})

    def issue(self, issue_id: str, fields: Sequence[str]) -> JSON:
        params = {"fields": ",".join(fields)}
        return self.call(f"GET issue/{issue_id}", lambda: self._get(f"issue/{issue_id}", params) or {})

    def comments(self, issue_id: str, start_at: int, max_results: int = 100) -> JSON:
        params = {"startAt": start_at, "maxResults": max_results, "orderBy": "created"}
        return self.call(f"GET issue/{issue_id}/comment",
                         lambda: self._get(f"issue/{issue_id}/comment", params) or {})

    def create_issue(self, payload: JSON) -> JSON:
        return self.call("POST issue", lambda: self._send("POST", "issue", payload) or {}, idempotent=False)

    def edit_issue(self, issue_id: str, payload: JSON) -> None:
        self.call(f"PUT issue/{issue_id}", lambda: self._send("PUT", f"issue/{issue_id}", payload))

    def transitions(self, issue_id: str) -> list[JSON]:
        return self.call(f"GET issue/{issue_id}/transitions",
                         lambda: list(self.jira.transitions(issue_id)))

    def do_transition(self, issue_id: str, transition_id: str) -> None:
        # Not idempotent: once applied, the same transition id is refused (400, not valid from the
        # new status). After a timeout or a 5xx the connector reads the status to tell.
        self.call(f"POST issue/{issue_id}/transitions",
                  lambda: self.jira.transition_issue(issue_id, transition_id), idempotent=False)

    def add_comment(self, issue_id: str, body: JSON) -> JSON:
        return self.call(f"POST issue/{issue_id}/comment",
                         lambda: self._send("POST", f"issue/{issue_id}/comment", body) or {},
                         idempotent=False)
