"""PagerDuty Events API v2 client: trigger, acknowledge and resolve alerts by `dedup_key`.

Used by the SLA escalation action `page` (sla-semantics §7.6): trigger when a clock breaches,
resolve on `resolve_on`. PagerDuty runs the escalation chain; this only sends events. Every call
goes through the shared `HttpClient`, so retries, Retry-After waits and the status -> error table
are the same as for the trackers.

The routing (integration) key is the only credential of the Events API and travels in the JSON
body. It is registered with `ticketbridge.logs.register_secret` (masked in every log line), kept
out of headers, URLs and `repr`, and masked in the text of any error this client raises.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import requests
import structlog

from ticketbridge.logs import MASK, register_secret

from ..http import HttpClient, RetryPolicy, error_json

JSON = dict[str, Any]
log = structlog.get_logger(__name__)

ENQUEUE = "/v2/enqueue"
SEVERITIES = ("critical", "error", "warning", "info")
MAX_DEDUP_KEY = 255  # PagerDuty's documented limit
MAX_SUMMARY = 1024  # likewise; longer summaries are cut here rather than refused (a page must go out)


def pagerduty_error_message(response: requests.Response) -> str:
    """PagerDuty's `{"status", "message", "errors"}` as one line, e.g.
    "invalid event: Event object is invalid ('payload.severity' is invalid ...)"."""
    body = error_json(response)
    if isinstance(body, str):
        return body
    text = ": ".join(str(body[k]) for k in ("status", "message") if body.get(k))
    errors = body.get("errors")
    if isinstance(errors, list) and errors:
        text = f"{text} ({'; '.join(str(e) for e in errors)})"
    return (text or str(body))[:500]


def _check_dedup_key(dedup_key: str) -> None:
    if not isinstance(dedup_key, str) or not dedup_key.strip():
        raise ValueError("dedup_key must be a non-empty string")
    if len(dedup_key) > MAX_DEDUP_KEY:
        raise ValueError(f"dedup_key is {len(dedup_key)} characters long; PagerDuty allows at most {MAX_DEDUP_KEY}")


class PagerDutyClient:
    """One Events API v2 integration (one routing key)."""

    def __init__(self, base_url: str, routing_key: str, *, retry: RetryPolicy | None = None,
                 tracker: str = "pagerduty") -> None:
        if not isinstance(routing_key, str) or not routing_key.strip():
            raise ValueError("PagerDuty routing key is empty; set the integration key of an Events API v2 integration")
        register_secret(routing_key)
        self._routing_key = routing_key

        def error_message(response: requests.Response) -> str:
            # Whatever the server put in its error body, the key never reaches an exception.
            return pagerduty_error_message(response).replace(routing_key, MASK)

        self.http = HttpClient(tracker, base_url, headers={"Content-Type": "application/json"},
                               error_message=error_message, retry=retry)

    def __repr__(self) -> str:
        return f"PagerDutyClient({self.http.base_url!r}, routing_key={MASK!r})"

    def trigger(self, dedup_key: str, summary: str, source: str, severity: str,
                custom_details: Mapping[str, Any] | None = None,
                links: Sequence[Mapping[str, str]] | None = None) -> str:
        """Open an alert (or add to the open one with this `dedup_key`); returns the dedup_key."""
        _check_dedup_key(dedup_key)
        if severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {', '.join(SEVERITIES)}; got {severity!r}")
        if not isinstance(summary, str) or not summary.strip():
            raise ValueError("summary must be a non-empty string")
        if not isinstance(source, str) or not source.strip():
            raise ValueError("source must be a non-empty string")
        if len(summary) > MAX_SUMMARY:
            summary = summary[: MAX_SUMMARY - 1] + "…"
        payload: JSON = {"summary": summary, "source": source, "severity": severity}
        if custom_details:
            payload["custom_details"] = dict(custom_details)
        event: JSON = {"event_action": "trigger", "dedup_key": dedup_key, "payload": payload}
        if links:
            for link in links:
                if not isinstance(link, Mapping) or not link.get("href"):
                    raise ValueError("every link needs an 'href'")
            event["links"] = [dict(link) for link in links]
        return self._send(event)

    def acknowledge(self, dedup_key: str) -> str:
        _check_dedup_key(dedup_key)
        return self._send({"event_action": "acknowledge", "dedup_key": dedup_key})

    def resolve(self, dedup_key: str) -> str:
        _check_dedup_key(dedup_key)
        return self._send({"event_action": "resolve", "dedup_key": dedup_key})

    def _send(self, event: JSON) -> str:
        log.debug("pagerduty.event", action=event["event_action"], dedup_key=event["dedup_key"])
        # Safe to retry after a timeout or a 5xx (idempotent=True), unlike a tracker's "create issue":
        # the event names its alert by dedup_key, so if PagerDuty did ingest the first attempt, the
        # repeat lands on the same open alert (a trigger adds a log entry, an acknowledge or resolve of
        # an already acknowledged/resolved alert changes nothing) and never opens a second incident.
        body = self.http.json("POST", ENQUEUE, json={"routing_key": self._routing_key, **event},
                              idempotent=True)
        returned = body.get("dedup_key") if isinstance(body, dict) else None
        return str(returned or event["dedup_key"])

    @property
    def requests_made(self) -> int:
        return self.http.requests_made
