"""A stateful PagerDuty Events API v2 emulator on loopback: `POST /v2/enqueue`.

Written from PagerDuty's published Events API v2 documentation ("Send an Alert Event", "Response
Codes & Retry Logic", "Events API Rate Limits") and from error bodies users have reported, independently
of ticketbridge's PagerDuty client. Run standalone for demos with
`python -m ticketbridge.connectors.pagerduty.emulator`.

Behaviour (documented by PagerDuty unless marked *emulator choice*):

- **202** `{"status": "success", "message": "Event processed", "dedup_key": "<key>"}` for every
  accepted event. A trigger without `dedup_key` gets a generated one (32 hex digits), so it always
  opens a new incident.
- **De-duplication.** Incidents are keyed by `(routing_key, dedup_key)`. A trigger for a key with an
  open (triggered or acknowledged) incident opens nothing new: the event is appended to that incident,
  whose summary and severity stay those of the first trigger. `acknowledge` moves an open incident to
  acknowledged (a later trigger does not re-open it to triggered); `resolve` closes it. After a resolve
  the same `dedup_key` opens a *new* incident on the next trigger. An acknowledge or resolve with no
  open incident under the same routing key is accepted (202) and dropped.
- **400** `{"status": "invalid event", "message": "Event object is invalid", "errors": [...]}`, every
  problem found listed (as PagerDuty does). Checked: `routing_key`, `event_action` (trigger,
  acknowledge, resolve), `dedup_key` (string of at most 255 characters; required for acknowledge and
  resolve), and for a trigger `payload.summary` (at most 1024 characters), `payload.source`,
  `payload.severity` (critical, error, warning, info), `payload.timestamp` (ISO 8601), `links[].href`,
  `images[].src`. The wording of the messages for fields is an *emulator choice*; only the envelope
  and the routing-key messages are quoted from real responses.
- **Routing keys.** Real integration keys are 32 alphanumeric characters. The emulator accepts exactly
  the keys it was configured with (whatever their shape). Any other key is a 400: a key of the wrong
  length or with other characters gets PagerDuty's own messages ("Length of 'routing_key' is incorrect
  (should be 32 characters)", "'routing_key' cannot contain non-alphanumeric characters."); a
  well-formed key the emulator does not know gets "Invalid routing key" (what PagerDuty answers for a
  key of no integration). No response ever echoes a routing key.
- **429** when over `rate_limit_per_minute` (a sliding 60 s window; PagerDuty documents ~120 events a
  minute per integration key, the emulator counts all keys together - *emulator choice*). The event is
  not ingested. PagerDuty documents only the status; the body `{"status": "throttle event", ...}` and the
  `Retry-After` header (seconds until a slot frees) are *emulator choices*, so a client can test both
  honouring the header and its own back-off (the header can be turned off).
- **5xx**: `Faults.error_rate` answers 500 `{"status": "error", ...}` without processing; `fail_next`
  and `delay_next` inject exact, countable faults, including the one that matters for idempotency: the
  event *was* processed but the answer was an error or never arrived.
"""

from __future__ import annotations

import copy
import json
import re
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ticketbridge.connectors.emulator_kit import EmulatorServer, Faults, HTTPError, RateBudget, Request, Response

Clock = Callable[[], datetime]
JSON = dict[str, Any]

ENQUEUE = "/v2/enqueue"
EVENT_ACTIONS = ("trigger", "acknowledge", "resolve")
SEVERITIES = ("critical", "error", "warning", "info")
MAX_DEDUP_KEY = 255
MAX_SUMMARY = 1024
ROUTING_KEY_LENGTH = 32
DEFAULT_ROUTING_KEY = "R0UT1NGKEYSANDBOX000000000000000"

_ALNUM = re.compile(r"^[A-Za-z0-9]+$")


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _invalid(errors: list[str]) -> HTTPError:
    return HTTPError(400, {"status": "invalid event", "message": "Event object is invalid", "errors": errors})


@dataclass
class _InjectedFault:
    status: int | None  # None: keep the real answer
    processed: bool  # whether the event is applied before the answer is replaced
    delay: float  # seconds to hold the answer back (outside the state lock)


class PagerDutyEmulator(EmulatorServer):
    name = "pagerduty"

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *,
                 routing_keys: str | Iterable[str] = (DEFAULT_ROUTING_KEY,),
                 rate_limit_per_minute: int | None = None, faults: Faults | None = None,
                 clock: Clock | None = None, send_retry_after: bool = True) -> None:
        # A lone key would otherwise become 32 one-letter keys.
        self.routing_keys = (routing_keys,) if isinstance(routing_keys, str) else tuple(routing_keys)
        self.clock: Clock = clock or (lambda: datetime.now(UTC))
        self.send_retry_after = send_retry_after
        self._incidents: list[JSON] = []
        self._open: dict[tuple[str, str], JSON] = {}  # (routing_key, dedup_key) -> open incident
        self._events: list[JSON] = []
        self._injected: deque[_InjectedFault] = deque()
        super().__init__(host, port, rate_limit_per_minute=rate_limit_per_minute, faults=faults)
        if clock is not None:
            # One clock for timestamps and the rate window, so tests can step past a minute.
            self.budget = RateBudget(rate_limit_per_minute, clock=lambda: self.clock().timestamp())

    # -- routing and dialect -----------------------------------------------------------------
    def routes(self) -> None:
        self.route("POST", ENQUEUE, self._enqueue)

    def rate_limited_response(self, retry_after: float) -> Response:
        headers = {"Retry-After": str(max(1, round(retry_after)))} if self.send_retry_after else {}
        return Response(429, {"status": "throttle event",
                              "message": "Requests for this integration are arriving too quickly. Please retry later."},
                        headers)

    def server_error_response(self) -> Response:
        return Response(500, {"status": "error", "message": "Internal server error"})

    def not_found_response(self, request: Request) -> Response:
        return Response(404, {"status": "not found", "message": "Not found"})

    def dispatch(self, request: Request) -> Response:
        with self.lock:
            fault = self._injected.popleft() if self._injected and request.path.rstrip("/") == ENQUEUE else None
        if fault is None:
            return super().dispatch(request)
        response = super().dispatch(request) if fault.processed else None
        if fault.delay:
            time.sleep(fault.delay)  # not under self.lock: a client's retry must get through meanwhile
        if fault.status is None and response is not None:
            return response
        return Response(fault.status or 500, {"status": "error", "message": "Internal server error"})

    # -- fault injection ---------------------------------------------------------------------
    def fail_next(self, count: int = 1, *, status: int = 500, processed: bool = False) -> None:
        """Answer the next `count` enqueue requests with `status`. With `processed=True` each event is
        applied first, as when PagerDuty ingested it but the answer was lost in an error."""
        with self.lock:
            self._injected.extend(_InjectedFault(status, processed, 0.0) for _ in range(count))

    def delay_next(self, seconds: float, count: int = 1) -> None:
        """Process the next `count` enqueue requests, then hold each answer back `seconds` (to make a
        client time out on an event that did happen)."""
        with self.lock:
            self._injected.extend(_InjectedFault(None, True, seconds) for _ in range(count))

    # -- inspection (for tests and demos) ----------------------------------------------------
    def incidents(self) -> list[JSON]:
        """Every incident ever opened, oldest first: routing_key, dedup_key, status (triggered,
        acknowledged, resolved), summary, source, severity, events (count), created_at,
        acknowledged_at, resolved_at."""
        with self.lock:
            return copy.deepcopy(self._incidents)

    def incident(self, dedup_key: str, routing_key: str | None = None) -> JSON | None:
        """The most recent incident with this dedup_key (under `routing_key` if given), or None."""
        with self.lock:
            for incident in reversed(self._incidents):
                if incident["dedup_key"] == dedup_key and routing_key in (None, incident["routing_key"]):
                    return copy.deepcopy(incident)
        return None

    def events(self) -> list[JSON]:
        """Every accepted event, oldest first: routing_key, event_action, dedup_key, received_at,
        outcome (created, deduplicated, acknowledged, resolved, dropped), incident (its id or None)
        and body (the event as sent)."""
        with self.lock:
            return copy.deepcopy(self._events)

    # -- the endpoint (runs under self.lock) -------------------------------------------------
    def _enqueue(self, request: Request) -> Response:
        try:
            body = request.json()
        except (UnicodeDecodeError, ValueError) as error:
            raise _invalid(["Event object is not valid JSON"]) from error
        if not isinstance(body, dict):
            raise _invalid(["Event object must be a JSON object"])
        errors = self._check_routing_key(body.get("routing_key"))
        errors += self._check_event(body)
        if errors:
            raise _invalid(errors)
        routing_key: str = body["routing_key"]
        action: str = body["event_action"]
        dedup_key: str = body.get("dedup_key") or uuid.uuid4().hex
        now = self.clock()
        incident = self._open.get((routing_key, dedup_key))
        if action == "trigger":
            if incident is None:
                incident = self._open_incident(routing_key, dedup_key, body["payload"], now)
                outcome = "created"
            else:
                outcome = "deduplicated"
        elif incident is None:
            outcome = "dropped"  # nothing open under this key and routing key: PagerDuty drops it
        elif action == "acknowledge":
            outcome = "acknowledged"
            if incident["status"] == "triggered":
                incident["status"] = "acknowledged"
                incident["acknowledged_at"] = _iso(now)
        else:
            outcome = "resolved"
            incident["status"] = "resolved"
            incident["resolved_at"] = _iso(now)
            del self._open[(routing_key, dedup_key)]
        if incident is not None and outcome != "dropped":
            incident["events"] += 1
        self._events.append({
            "routing_key": routing_key, "event_action": action, "dedup_key": dedup_key,
            "received_at": _iso(now), "outcome": outcome,
            "incident": incident["id"] if incident is not None and outcome != "dropped" else None,
            "body": copy.deepcopy(body),
        })
        return Response(202, {"status": "success", "message": "Event processed", "dedup_key": dedup_key})

    def _open_incident(self, routing_key: str, dedup_key: str, payload: JSON, now: datetime) -> JSON:
        incident = {
            "id": len(self._incidents) + 1, "routing_key": routing_key, "dedup_key": dedup_key,
            "status": "triggered", "summary": payload["summary"], "source": payload["source"],
            "severity": payload["severity"], "events": 0, "created_at": _iso(now),
            "acknowledged_at": None, "resolved_at": None,
        }
        self._incidents.append(incident)
        self._open[(routing_key, dedup_key)] = incident
        return incident

    def _check_routing_key(self, key: Any) -> list[str]:
        # Never quote the key back: it is the integration's only credential.
        if isinstance(key, str) and key in self.routing_keys:
            return []
        if not isinstance(key, str) or not key:
            return ["'routing_key' is missing or blank"]
        errors = []
        if len(key) != ROUTING_KEY_LENGTH:
            errors.append(f"Length of 'routing_key' is incorrect (should be {ROUTING_KEY_LENGTH} characters)")
        if not _ALNUM.match(key):
            errors.append("'routing_key' cannot contain non-alphanumeric characters.")
        return errors or ["Invalid routing key"]

    def _check_event(self, body: JSON) -> list[str]:
        errors: list[str] = []
        action = body.get("event_action")
        if action is None or action == "":
            errors.append("'event_action' is missing or blank")
        elif action not in EVENT_ACTIONS:
            errors.append("'event_action' is invalid (must be one of: trigger, acknowledge, resolve)")
        dedup_key = body.get("dedup_key")
        if dedup_key is not None and not isinstance(dedup_key, str):
            errors.append("'dedup_key' must be a string")
        elif isinstance(dedup_key, str) and len(dedup_key) > MAX_DEDUP_KEY:
            errors.append(f"'dedup_key' is too long (maximum is {MAX_DEDUP_KEY} characters)")
        elif action in ("acknowledge", "resolve") and not dedup_key:
            errors.append(f"'dedup_key' is required for the '{action}' event action")
        if action == "trigger":
            errors += self._check_trigger(body)
        return errors

    def _check_trigger(self, body: JSON) -> list[str]:
        payload = body.get("payload")
        if payload is None:
            return ["'payload' is missing"]
        if not isinstance(payload, dict):
            return ["'payload' must be an object"]
        errors: list[str] = []
        for field in ("summary", "source"):
            value = payload.get(field)
            if not isinstance(value, str) or not value.strip():
                errors.append(f"'payload.{field}' is missing or blank")
        summary = payload.get("summary")
        if isinstance(summary, str) and len(summary) > MAX_SUMMARY:
            errors.append(f"'payload.summary' is too long (maximum is {MAX_SUMMARY} characters)")
        severity = payload.get("severity")
        if severity is None or severity == "":
            errors.append("'payload.severity' is missing or blank")
        elif severity not in SEVERITIES:
            errors.append("'payload.severity' is invalid (must be one of: critical, error, warning, info)")
        timestamp = payload.get("timestamp")
        if timestamp is not None and not self._is_timestamp(timestamp):
            errors.append("'payload.timestamp' is not a valid ISO 8601 timestamp")
        for field in ("component", "group", "class"):
            if payload.get(field) is not None and not isinstance(payload[field], str):
                errors.append(f"'payload.{field}' must be a string")
        errors += self._check_context(body, "links", "href")
        errors += self._check_context(body, "images", "src")
        return errors

    @staticmethod
    def _check_context(body: JSON, field: str, required: str) -> list[str]:
        items = body.get(field)
        if items is None:
            return []
        if not isinstance(items, list):
            return [f"'{field}' must be an array"]
        return [f"'{field}[{n}].{required}' is missing or blank" for n, item in enumerate(items)
                if not isinstance(item, dict) or not isinstance(item.get(required), str) or not item[required]]

    @staticmethod
    def _is_timestamp(value: Any) -> bool:
        if not isinstance(value, str):
            return False
        try:
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return False
        return True


def main() -> None:
    """Run the emulator in the foreground, for demos and manual poking."""
    import argparse

    parser = argparse.ArgumentParser(description="PagerDuty Events API v2 emulator")
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--rate-limit", type=int, default=None, help="events per minute (default unlimited)")
    args = parser.parse_args()
    emulator = PagerDutyEmulator(port=args.port, rate_limit_per_minute=args.rate_limit)
    print(f"PagerDuty emulator on {emulator.base_url}{ENQUEUE} (routing key {DEFAULT_ROUTING_KEY})", flush=True)
    print(json.dumps({"routing_key": DEFAULT_ROUTING_KEY, "event_action": "trigger", "dedup_key": "demo-1",
                      "payload": {"summary": "Demo", "source": "demo", "severity": "info"}}), flush=True)
    emulator.serve_forever()


if __name__ == "__main__":
    main()
