"""Thin Zendesk Support API v2 endpoints: URL constants and one-line methods on `HttpClient`.

Nothing here interprets tickets; `connector.py` does. Every call goes through the shared
`HttpClient`, so retries, rate-limit waits and the status -> error table live in one place.
"""

from __future__ import annotations

from typing import Any

import requests
from requests.auth import HTTPBasicAuth

from ..http import HttpClient, RetryPolicy, error_json

JSON = dict[str, Any]

ME = "/api/v2/users/me"
TICKETS = "/api/v2/tickets"
TICKET = "/api/v2/tickets/{id}"
TICKET_COMMENTS = "/api/v2/tickets/{id}/comments"
EXPORT_CURSOR = "/api/v2/incremental/tickets/cursor"

COMMENTS_PAGE_SIZE = 100  # the largest page[size] Zendesk accepts for comments
# Side-loaded with every ticket read: the requester, CC'd people and followers, and the
# organization, so that their names and addresses can be removed from text leaving the desk.
PEOPLE = "users,organizations"


def zendesk_error_message(response: requests.Response) -> str:
    """Zendesk's `{"error", "description", "details"}` as one line.

    e.g. "RecordInvalid: Record validation errors (status: Status: closed prevents ticket update)".
    Some endpoints (403s) answer `{"error": {"title", "message"}}` instead; both are handled.
    """
    body = error_json(response)
    if isinstance(body, str):
        return body
    error = body.get("error")
    if isinstance(error, dict):
        title = error.get("title") or ""
        message = error.get("message") or ""
        text = f"{title}: {message}" if title and message else str(title or message)
    else:
        text = str(error or "")
    description = body.get("description")
    if description:
        text = f"{text}: {description}" if text else str(description)
    details = _details_text(body.get("details"))
    if details:
        text = f"{text} ({details})"
    return (text or str(body))[:500]


def _details_text(details: Any) -> str:
    if not details:
        return ""
    if not isinstance(details, dict):
        return str(details)
    parts: list[str] = []
    for field, problems in details.items():
        entries = problems if isinstance(problems, list) else [problems]
        for entry in entries:
            described = entry.get("description") if isinstance(entry, dict) else entry
            parts.append(f"{field}: {described}")
    return "; ".join(parts)


class ZendeskClient:
    """One Zendesk account, authenticated with an agent's API token."""

    def __init__(self, tracker: str, base_url: str, email: str, token: str, *,
                 retry: RetryPolicy | None = None) -> None:
        # API-token Basic auth: the user is "{email}/token" (api-facts §1.1).
        self.http = HttpClient(tracker, base_url, auth=HTTPBasicAuth(f"{email}/token", token),
                                error_message=zendesk_error_message, retry=retry)

    def me(self) -> JSON:
        return dict(self.http.json("GET", ME))

    def export_tickets(self, *, cursor: str | None, start_time: int, per_page: int) -> JSON:
        params: JSON = {"cursor": cursor} if cursor else {"start_time": start_time}
        return dict(self.http.json("GET", EXPORT_CURSOR, params={**params, "per_page": per_page,
                                                                  "include": PEOPLE}))

    def ticket(self, ticket_id: str) -> JSON:
        return dict(self.http.json("GET", TICKET.format(id=ticket_id), params={"include": PEOPLE}))

    def comments_page(self, ticket_id: str, after: str | None = None) -> JSON:
        # Authors sideloaded: their role tells an agent's reply from the customer's (SLA clocks).
        params: JSON = {"page[size]": COMMENTS_PAGE_SIZE, "include": "users"}
        if after:
            params["page[after]"] = after
        return dict(self.http.json("GET", TICKET_COMMENTS.format(id=ticket_id), params=params))

    def tickets_by_external_id(self, external_id: str) -> JSON:
        return dict(self.http.json("GET", TICKETS, params={"external_id": external_id, "include": PEOPLE}))

    def create_ticket(self, ticket: JSON) -> JSON:
        return dict(self.http.json("POST", TICKETS, json={"ticket": ticket}, idempotent=False))

    def update_ticket(self, ticket_id: str, ticket: JSON, *, idempotent: bool = True) -> JSON:
        # An update carrying a comment is not idempotent: a blind retry could post it twice.
        return dict(self.http.json("PUT", TICKET.format(id=ticket_id), json={"ticket": ticket},
                                   idempotent=idempotent))

    @property
    def requests_made(self) -> int:
        return self.http.requests_made
