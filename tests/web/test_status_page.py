"""The status page over a real bridge on the sandbox: a failure shows with Jira's message, links
reach both trackers, Retry needs its CSRF token and then runs the same retry as the CLI."""

from __future__ import annotations

import re

import pytest
from starlette.testclient import TestClient

from ticketbridge.web import StatusContext, build_app

from ..e2e.conftest import Bridge
from .conftest import FLOW, context_for, fail_one


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "the page carries a Retry form with its CSRF token"
    return match.group(1)


def test_page_shows_the_failure_with_jiras_message_and_links_to_both_sides(
        bridge: Bridge, client: TestClient) -> None:
    ticket = fail_one(bridge)
    (failure,) = bridge.store.failures()
    response = client.get("/")
    assert response.status_code == 200
    html = response.text
    assert f'id="failure-{failure.id}"' in html and "Summary must be less than 255 characters" in html
    assert f'action="/failures/{failure.id}/retry"' in html
    link = bridge.store.link_for(FLOW, "left", str(ticket))
    assert link is not None
    assert f'href="{bridge.sandbox.zendesk.base_url}/agent/tickets/{ticket}"' in html
    assert f'href="{bridge.sandbox.jira.base_url}/browse/{link.right_key}"' in html
    # Flow health: both cursors were saved by the passes just run.
    flows = html[html.index('id="flows"'):html.index('id="trackers"')]
    assert "zendesk-jira" in flows and "never" not in flows and "failures" in flows
    # This process's traffic, with the emulators' rate-limit headers read as headroom.
    trackers = html[html.index('id="trackers"'):html.index('id="failures"')]
    assert re.search(r"200: \d+", trackers) and "% (" in trackers
    # No framing, no scripts: the Retry button cannot be clickjacked.
    assert response.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


def test_retry_with_the_csrf_token_resolves_the_failure_once_the_cause_is_fixed(
        bridge: Bridge, client: TestClient) -> None:
    ticket = fail_one(bridge)
    (failure,) = bridge.store.failures()
    token = csrf_of(client.get("/").text)

    # The cause is still there: the retry fails again, with Jira's message on the page.
    again = client.post(f"/failures/{failure.id}/retry", data={"csrf": token})
    assert again.status_code == 200 and again.url.path == "/"
    assert "did not succeed" in again.text and "attempt 2" in again.text
    assert bridge.store.failure(failure.id).attempts == 2  # type: ignore[union-attr]

    bridge.sandbox.zendesk.update_ticket(ticket, subject="Checkout fails on Safari")
    done = client.post(f"/failures/{failure.id}/retry", data={"csrf": token},
                       headers={"Origin": "http://127.0.0.1:8950"})
    assert done.status_code == 200
    assert f"Retry of failure #{failure.id} succeeded" in done.text
    assert f'id="failure-{failure.id}"' not in done.text and "No open failures." in done.text
    assert bridge.store.failure(failure.id).state == "resolved"  # type: ignore[union-attr]
    link = bridge.store.link_for(FLOW, "left", str(ticket))
    assert link is not None
    summary = bridge.sandbox.jira.issue(link.right_id)["fields"]["summary"]
    assert summary == f"[ZD #{ticket}] Checkout fails on Safari"


@pytest.mark.parametrize("how", ["no token", "wrong token", "no cookie", "foreign origin", "null origin"])
def test_retry_without_a_valid_csrf_token_or_from_another_origin_is_refused(
        bridge: Bridge, client: TestClient, how: str) -> None:
    ticket = fail_one(bridge)
    bridge.sandbox.zendesk.update_ticket(ticket, subject="Fixed title")  # a retry would now succeed
    (failure,) = bridge.store.failures()
    token = csrf_of(client.get("/").text)
    data, headers = {"csrf": token}, {}
    if how == "no token":
        data = {}
    elif how == "wrong token":
        data = {"csrf": token[:-2] + "xx"}
    elif how == "no cookie":
        client.cookies.clear()
    elif how == "foreign origin":
        headers = {"Origin": "https://evil.example"}
    else:
        headers = {"Origin": "null"}
    response = client.post(f"/failures/{failure.id}/retry", data=data, headers=headers)
    assert response.status_code == 403
    assert bridge.store.failure(failure.id).state == "open"  # type: ignore[union-attr]
    assert bridge.store.failure(failure.id).attempts == 1  # type: ignore[union-attr]


def test_a_page_without_a_retry_action_shows_no_button(bridge: Bridge) -> None:
    fail_one(bridge)
    context = context_for(bridge)
    context.retry = None
    with TestClient(build_app(context)) as client:
        html = client.get("/").text
    assert "Summary must be less than 255 characters" in html and "<button" not in html


def test_readyz_answers_503_once_the_store_is_gone(bridge: Bridge, client: TestClient) -> None:
    assert client.get("/healthz").text == "ok"
    assert client.get("/readyz").status_code == 200
    database = bridge.config_path.parent / "tb.db"
    bridge.store.close()  # drop pooled connections, then remove the database under the running page
    for path in bridge.config_path.parent.glob("tb.db*"):
        path.unlink()
    assert not database.exists()
    response = client.get("/readyz")
    assert response.status_code == 503 and "store unreachable" in response.text
    assert client.get("/healthz").status_code == 200  # the process itself is alive


def test_every_value_on_the_page_is_escaped(bridge: Bridge, client: TestClient) -> None:
    context: StatusContext = context_for(bridge)
    bridge.store.record_failure(FLOW, "zendesk", "1", "<script>alert(1)</script>", "error", "http_400",
                                "<img src=x onerror=alert(2)>")
    with TestClient(build_app(context)) as fresh:
        html = fresh.get("/").text
    assert "<script>alert(1)" not in html and "<img src=x" not in html
    assert "&lt;img src=x onerror=alert(2)&gt;" in html
