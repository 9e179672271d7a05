"""The receiver's answer for paths that are not routes: 404, also for a route's path with a slash
added or removed (found by tests/reliability/test_bad_input.py: Starlette's default there is a 307
redirect, which is not one of the receiver's answers and which a sender would follow)."""

from __future__ import annotations

import json
import queue

import pytest
from starlette.testclient import TestClient

from ticketbridge.sync.webhooks import Receiver, TrackerRoute, github_signature

SECRET = "gh-path-test-secret"


@pytest.fixture
def client() -> TestClient:
    routes = [TrackerRoute("github", "github", "/hooks/github", SECRET),
              TrackerRoute("jira", "jira", "/hooks/jira/", "jira-path-secret")]
    return TestClient(Receiver(routes, queue.Queue()).app)


def signed(body: bytes) -> dict[str, str]:
    return {"Content-Type": "application/json", "X-GitHub-Event": "issues", "X-GitHub-Delivery": "p1",
            "X-Hub-Signature-256": github_signature(SECRET, body)}


@pytest.mark.parametrize("path", ["/hooks/github/", "/hooks/jira", "/hooks/github//", "/hooks/GITHUB"])
def test_a_route_path_with_a_slash_added_or_removed_is_404_not_a_redirect(client: TestClient, path: str) -> None:
    body = json.dumps({"action": "closed", "issue": {"number": 1}, "repository": {"full_name": "a/b"}}).encode()
    answer = client.post(path, content=body, headers=signed(body), follow_redirects=False)
    assert answer.status_code == 404


def test_the_route_itself_still_answers(client: TestClient) -> None:
    body = json.dumps({"action": "closed", "issue": {"number": 1}, "repository": {"full_name": "a/b"}}).encode()
    assert client.post("/hooks/github", content=body, headers=signed(body)).status_code == 202
