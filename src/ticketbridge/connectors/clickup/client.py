"""Thin ClickUp API v2 endpoints: URL constants and one small method each, on the shared `HttpClient`.

Nothing here interprets tasks; `connector.py` does. Retries, rate-limit waits (ClickUp answers 429 with
`X-RateLimit-Reset`, a unix timestamp) and the status -> error table all live in `HttpClient`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import requests

from ..http import HttpClient, RetryPolicy, error_json

JSON = dict[str, Any]

API = "/api/v2"
USER = API + "/user"
LIST = API + "/list/{list_id}"
LIST_FIELDS = API + "/list/{list_id}/field"
LIST_TASKS = API + "/list/{list_id}/task"
TASK = API + "/task/{task_id}"
TASK_FIELD = API + "/task/{task_id}/field/{field_id}"
TASK_TAG = API + "/task/{task_id}/tag/{tag}"
TASK_COMMENTS = API + "/task/{task_id}/comment"

COMMENTS_PER_CALL = 25  # ClickUp's fixed comment page size


def clickup_error_message(response: requests.Response) -> str:
    """ClickUp's `{"err": "...", "ECODE": "..."}` as "Status does not exist (CRTSK_001)".

    Built from the body only, never the request headers, so the token cannot leak through an error.
    """
    body = error_json(response)
    if isinstance(body, str):
        return body
    err, code = body.get("err"), body.get("ECODE")
    if err is None and code is None:
        return str(body)[:500]
    return f"{err} ({code})" if code else str(err)


def authorization(token: str) -> str:
    """The Authorization header: personal tokens (`pk_...`) go bare, OAuth access tokens as Bearer."""
    token = token.strip()
    if token.startswith("pk_") or token.lower().startswith("bearer "):
        return token
    return f"Bearer {token}"


def api_root(base_url: str) -> str:
    """The host part of a ClickUp base URL: `https://api.clickup.com/api/v2` and `https://api.clickup.com`
    are both accepted, as admins copy either from ClickUp's documentation."""
    root = base_url.rstrip("/")
    for suffix in ("/api/v2", "/api"):
        if root.endswith(suffix):
            return root[: -len(suffix)]
    return root


class ClickUpClient:
    def __init__(self, tracker: str, base_url: str, token: str, *, retry: RetryPolicy | None = None) -> None:
        self.http = HttpClient(tracker, api_root(base_url), headers={"Authorization": authorization(token)},
                               error_message=clickup_error_message, retry=retry)

    # -- reads -----------------------------------------------------------------------------
    def user(self) -> JSON:
        return dict(self.http.json("GET", USER))

    def task_list(self, list_id: str) -> JSON:
        return dict(self.http.json("GET", LIST.format(list_id=list_id)))

    def fields(self, list_id: str) -> list[JSON]:
        return list(self.http.json("GET", LIST_FIELDS.format(list_id=list_id)).get("fields") or [])

    def tasks_page(self, list_id: str, params: JSON) -> JSON:
        return dict(self.http.json("GET", LIST_TASKS.format(list_id=list_id), params=params))

    def task(self, task_id: str) -> JSON:
        return dict(self.http.json("GET", TASK.format(task_id=task_id),
                                   params={"include_markdown_description": "true"}))

    def comments(self, task_id: str, start: str | None = None, start_id: str | None = None) -> list[JSON]:
        """One call's worth of comments, newest first; `start`/`start_id` ask for older ones."""
        params = {"start": start, "start_id": start_id} if start and start_id else None
        body = self.http.json("GET", TASK_COMMENTS.format(task_id=task_id), params=params)
        return list(body.get("comments") or [])

    # -- writes ----------------------------------------------------------------------------
    def create_task(self, list_id: str, payload: JSON) -> JSON:
        # Not idempotent: after a timeout or 5xx the task may exist; Unsure goes up, the marker decides.
        return dict(self.http.json("POST", LIST_TASKS.format(list_id=list_id), json=payload, idempotent=False))

    def update_task(self, task_id: str, payload: JSON) -> JSON:
        # PUT sets the given values (assignees as add/rem of ids already compared): repeating is harmless.
        return dict(self.http.json("PUT", TASK.format(task_id=task_id), json=payload))

    def set_field(self, task_id: str, field_id: str, value: Any) -> None:
        path = TASK_FIELD.format(task_id=task_id, field_id=field_id)
        if value is None:
            self.http.request("DELETE", path)
        else:
            self.http.request("POST", path, json={"value": value})

    def add_tag(self, task_id: str, tag: str) -> None:
        self.http.request("POST", TASK_TAG.format(task_id=task_id, tag=quote(tag, safe="")))

    def remove_tag(self, task_id: str, tag: str) -> None:
        self.http.request("DELETE", TASK_TAG.format(task_id=task_id, tag=quote(tag, safe="")))

    def add_comment(self, task_id: str, text: str) -> JSON:
        return dict(self.http.json("POST", TASK_COMMENTS.format(task_id=task_id),
                                   json={"comment_text": text, "notify_all": False}, idempotent=False))

    @property
    def requests_made(self) -> int:
        return self.http.requests_made
