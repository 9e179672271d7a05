"""Benchmark: how fast the webhook receiver answers, on a real uvicorn on a loopback port.

    .venv/bin/python bench/webhooks.py [--requests N] [--tracker github|jira|clickup|zendesk]

Sends N signed deliveries (distinct delivery ids, one keep-alive connection), then N duplicates
and N with a bad signature, and prints the answer-time percentiles of each kind and the
throughput. The issue's target is an answer within 100 ms; the receiver only verifies, parses and
queues (no tracker call), so answers are typically around a millisecond. Nothing is asserted here.
"""

from __future__ import annotations

import argparse
import http.client
import json
import queue
import statistics
import time
from datetime import UTC, datetime

from ticketbridge.logs import configure
from ticketbridge.sync.webhooks import (
    Receiver,
    TrackerRoute,
    WebhookServer,
    clickup_signature,
    github_signature,
    jira_signature,
    zendesk_signature,
)

SECRET = "bench-secret"


def delivery(tracker: str, n: int) -> tuple[bytes, dict[str, str]]:
    headers = {"Content-Type": "application/json"}
    if tracker == "github":
        body = json.dumps({"action": "edited", "issue": {"number": n % 500 + 1},
                           "repository": {"full_name": "acme/app"}}).encode()
        headers.update({"X-GitHub-Event": "issues", "X-GitHub-Delivery": f"d-{n}",
                        "X-Hub-Signature-256": github_signature(SECRET, body)})
    elif tracker == "jira":
        body = json.dumps({"webhookEvent": "jira:issue_updated", "issue": {"id": str(10000 + n % 500)}}).encode()
        headers.update({"X-Atlassian-Webhook-Identifier": f"d-{n}", "X-Hub-Signature": jira_signature(SECRET, body)})
    elif tracker == "clickup":
        body = json.dumps({"event": "taskUpdated", "task_id": f"t{n % 500}", "webhook_id": "w",
                           "history_items": [{"id": str(n)}]}).encode()
        headers["X-Signature"] = clickup_signature(SECRET, body)
    else:
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = json.dumps({"type": "zen:event-type:ticket.status_changed", "id": f"e-{n}",
                           "subject": f"zen:ticket:{n % 500 + 1}", "detail": {"id": str(n % 500 + 1)}}).encode()
        headers.update({"X-Zendesk-Webhook-Signature-Timestamp": stamp,
                        "X-Zendesk-Webhook-Signature": zendesk_signature(SECRET, stamp, body)})
    return body, headers


def run(connection: http.client.HTTPConnection, path: str, requests: list[tuple[bytes, dict[str, str]]],
        expected: int) -> list[float]:
    times = []
    for body, headers in requests:
        started = time.perf_counter()
        connection.request("POST", path, body=body, headers=headers)
        answer = connection.getresponse()
        answer.read()
        times.append(time.perf_counter() - started)
        if answer.status != expected:
            raise SystemExit(f"expected {expected}, got {answer.status}")
    return times


def describe(label: str, times: list[float]) -> str:
    ordered = sorted(times)
    p = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000  # noqa: E731
    return (f"{label:11} n={len(times):5}  p50 {p(0.5):6.2f} ms  p95 {p(0.95):6.2f} ms  p99 {p(0.99):6.2f} ms  "
            f"max {max(times) * 1000:6.2f} ms  mean {statistics.fmean(times) * 1000:6.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--tracker", choices=("github", "jira", "clickup", "zendesk"), default="github")
    args = parser.parse_args()
    configure("json", level="WARNING")  # one log line per request would measure the terminal
    nudges: queue.Queue[tuple[str, str]] = queue.Queue()
    receiver = Receiver([TrackerRoute(args.tracker, args.tracker, "/hook", SECRET)], nudges)
    with WebhookServer(receiver, "127.0.0.1", 0) as server:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        signed = [delivery(args.tracker, n) for n in range(args.requests)]
        started = time.perf_counter()
        accepted = run(connection, "/hook", signed, 202)
        wall = time.perf_counter() - started
        duplicates = run(connection, "/hook", signed, 200)
        forged = [(body, {**headers, "X-Hub-Signature-256": "sha256=00", "X-Hub-Signature": "sha256=00",
                          "X-Signature": "00", "X-Zendesk-Webhook-Signature": "AA=="}) for body, headers in signed]
        rejected = run(connection, "/hook", forged, 401)
        connection.close()
    print(f"webhook receiver ({args.tracker}), one keep-alive connection on loopback:")
    print(describe("accepted", accepted))
    print(describe("duplicate", duplicates))
    print(describe("bad sig", rejected))
    print(f"throughput  {args.requests / wall:,.0f} accepted deliveries/s; queued {nudges.qsize()} "
          f"(one per delivery id); target: every answer within 100 ms")


if __name__ == "__main__":
    main()
