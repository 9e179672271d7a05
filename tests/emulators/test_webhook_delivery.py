"""Every emulator's webhooks against the real receiver (`ticketbridge.sync.webhooks`): signed so that it
accepts them, shaped so that it names the right item, and the shared delivery faults (drop, duplicate)."""

from __future__ import annotations

import base64
import json
import queue
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ticketbridge.connectors.clickup.emulator import ClickUpEmulator
from ticketbridge.connectors.emulator_kit import EmulatorServer, WebhookDispatcher, WebhookFaults
from ticketbridge.connectors.github.emulator import GitHubEmulator
from ticketbridge.connectors.jira.emulator import JiraEmulator
from ticketbridge.connectors.zendesk.emulator import ZendeskEmulator
from ticketbridge.sandbox import Sandbox
from ticketbridge.sync.config import load_config
from ticketbridge.sync.webhooks import Receiver, TrackerRoute, WebhookServer

SECRETS = {"zendesk": "zd-hook-secret", "jira": "jira-hook-secret", "github": "gh-hook-secret",
           "clickup": "cu-hook-secret"}
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Hooks:
    server: WebhookServer
    receiver: Receiver
    nudges: queue.Queue[tuple[str, str]]

    def url(self, tracker: str) -> str:
        return f"{self.server.url}/hooks/{tracker}"

    def drain(self) -> list[tuple[str, str]]:
        got = []
        while not self.nudges.empty():
            got.append(self.nudges.get_nowait())
        return got


# One receiver per test: ClickUp's delivery ids repeat across fresh emulators (same webhook, same
# task and history ids), and a shared receiver would take the second test's events for duplicates.
@pytest.fixture
def running() -> Iterator[tuple[WebhookServer, Receiver, queue.Queue[tuple[str, str]]]]:
    nudges: queue.Queue[tuple[str, str]] = queue.Queue()
    receiver = Receiver([TrackerRoute(name, name, f"/hooks/{name}", secret) for name, secret in SECRETS.items()],
                        nudges)
    with WebhookServer(receiver, "127.0.0.1", 0) as server:
        yield server, receiver, nudges


@pytest.fixture
def hooks(running: tuple[WebhookServer, Receiver, queue.Queue[tuple[str, str]]]) -> Hooks:
    server, receiver, nudges = running
    made = Hooks(server, receiver, nudges)
    made.drain()
    return made


# Each tracker: build its emulator sending to the receiver, make one change, and the item id the
# receiver must name for it.
Change = Callable[[EmulatorServer], str]


def _zendesk_change(emulator: EmulatorServer) -> str:
    assert isinstance(emulator, ZendeskEmulator)
    return str(emulator.add_ticket(subject="Webhook me", comment={"body": "hello"})["id"])


def _jira_change(emulator: EmulatorServer) -> str:
    assert isinstance(emulator, JiraEmulator)
    return str(emulator.create_issue(summary="Webhook me")["id"])


def _github_change(emulator: EmulatorServer) -> str:
    assert isinstance(emulator, GitHubEmulator)
    number = emulator.add_issue("app", "Webhook me")["number"]
    return f"{emulator.owner}/app#{number}"


def _clickup_change(emulator: EmulatorServer) -> str:
    assert isinstance(emulator, ClickUpEmulator)
    return str(emulator.add_task("Webhook me")["id"])


CHANGES: dict[str, Change] = {"zendesk": _zendesk_change, "jira": _jira_change, "github": _github_change,
                              "clickup": _clickup_change}
EMULATORS: dict[str, type[ZendeskEmulator | JiraEmulator | GitHubEmulator | ClickUpEmulator]] = {
    "zendesk": ZendeskEmulator, "jira": JiraEmulator, "github": GitHubEmulator, "clickup": ClickUpEmulator}


def emulator_for(tracker: str, hooks: Hooks, faults: WebhookFaults | None = None, secret: str | None = None
                 ) -> ZendeskEmulator | JiraEmulator | GitHubEmulator | ClickUpEmulator:
    return EMULATORS[tracker](webhook_url=hooks.url(tracker), webhook_secret=secret or SECRETS[tracker],
                              webhook_faults=faults)


def dispatcher(emulator: EmulatorServer) -> WebhookDispatcher:
    sender = getattr(emulator, "webhooks", None)
    assert isinstance(sender, WebhookDispatcher)
    return sender


@pytest.mark.parametrize("tracker", list(CHANGES))
def test_each_emulator_sends_a_signed_webhook_the_receiver_accepts_and_turns_into_its_nudge(
        tracker: str, hooks: Hooks) -> None:
    with emulator_for(tracker, hooks) as emulator:
        item = CHANGES[tracker](emulator)
        assert dispatcher(emulator).wait(10)
        deliveries = dispatcher(emulator).deliveries
    assert deliveries, "a change sends at least one webhook"
    assert {d.status for d in deliveries} == {202}, [(d.event, d.status, d.error) for d in deliveries]
    assert set(hooks.drain()) == {(tracker, item)}


@pytest.mark.parametrize("tracker", list(CHANGES))
def test_a_webhook_signed_with_another_secret_is_refused(tracker: str, hooks: Hooks) -> None:
    with emulator_for(tracker, hooks, secret="not-the-receivers-secret") as emulator:
        CHANGES[tracker](emulator)
        assert dispatcher(emulator).wait(10)
        statuses = {d.status for d in dispatcher(emulator).deliveries}
    assert statuses == {401}
    assert hooks.drain() == []


@pytest.mark.parametrize("tracker", list(CHANGES))
def test_drop_rate_one_delivers_nothing(tracker: str, hooks: Hooks) -> None:
    with emulator_for(tracker, hooks, WebhookFaults(drop_rate=1.0)) as emulator:
        CHANGES[tracker](emulator)
        assert dispatcher(emulator).wait(10)
        assert dispatcher(emulator).deliveries == []
        assert dispatcher(emulator).dropped, "the dropped events are recorded"
    assert hooks.drain() == []


@pytest.mark.parametrize("tracker", list(CHANGES))
def test_duplicate_rate_one_delivers_each_event_twice_and_the_receiver_answers_the_copy_200(
        tracker: str, hooks: Hooks) -> None:
    with emulator_for(tracker, hooks, WebhookFaults(duplicate_rate=1.0)) as emulator:
        item = CHANGES[tracker](emulator)
        assert dispatcher(emulator).wait(10)
        deliveries = dispatcher(emulator).deliveries
    assert len(deliveries) % 2 == 0 and deliveries
    for first, copy in zip(deliveries[::2], deliveries[1::2], strict=True):
        assert (first.duplicate, copy.duplicate) == (False, True)
        assert first.body == copy.body and first.delivery_id == copy.delivery_id
        assert (first.status, copy.status) == (202, 200)
    assert set(hooks.drain()) == {(tracker, item)}


def test_zendesk_sends_one_event_per_change_as_event_subscription_webhooks(hooks: Hooks) -> None:
    with ZendeskEmulator(webhook_url=hooks.url("zendesk"), webhook_secret=SECRETS["zendesk"]) as zendesk:
        ticket = zendesk.add_ticket(subject="Printer on fire", comment={"body": "Smoke."})
        zendesk.update_ticket(ticket["id"], status="open", priority="high")
        zendesk.add_comment(ticket["id"], "An internal note", public=False)
        zendesk.update_ticket(ticket["id"], status="open")  # no change, no event
        assert zendesk.wait_for_deliveries(10)
        deliveries = zendesk.deliveries
    payloads = [d.payload for d in deliveries]
    assert [p["type"] for p in payloads] == [
        "zen:event-type:ticket.created", "zen:event-type:ticket.status_changed",
        "zen:event-type:ticket.priority_changed", "zen:event-type:ticket.comment_added"]
    assert {p["subject"] for p in payloads} == {f"zen:ticket:{ticket['id']}"}
    assert {p["detail"]["id"] for p in payloads} == {str(ticket["id"])}
    assert payloads[1]["event"]["current"] == "open" and payloads[1]["event"]["previous"] == "new"
    assert payloads[3]["event"]["comment"]["is_public"] is False
    assert payloads[3]["detail"]["priority"] == "HIGH"
    assert len({p["id"] for p in payloads}) == 4, "each event has its own id (the receiver's delivery id)"
    for delivery in deliveries:
        assert delivery.headers["X-Zendesk-Webhook-Signature-Timestamp"].endswith("Z")
        assert delivery.headers["X-Zendesk-Webhook-Id"] == zendesk.webhook_id
    assert [d.status for d in deliveries] == [202] * 4


def test_jira_sends_created_updated_and_comment_events_in_clouds_shape(hooks: Hooks) -> None:
    with JiraEmulator(webhook_url=hooks.url("jira"), webhook_secret=SECRETS["jira"]) as jira:
        issue = jira.create_issue(summary="Checkout is slow")
        jira.transition(issue["key"], "In Progress")
        jira.edit(issue["key"], summary="Checkout is very slow")
        jira.add_comment(issue["key"], "Looking into it")
        assert jira.wait_for_deliveries(10)
        deliveries = jira.deliveries
    payloads = [d.payload for d in deliveries]
    assert [(p["webhookEvent"], p.get("issue_event_type_name")) for p in payloads] == [
        ("jira:issue_created", "issue_created"), ("jira:issue_updated", "issue_generic"),
        ("jira:issue_updated", "issue_generic"), ("comment_created", None),
        ("jira:issue_updated", "issue_commented")]
    assert {(p["issue"]["id"], p["issue"]["key"]) for p in payloads} == {(issue["id"], issue["key"])}
    status_change = {item["field"]: item for item in payloads[1]["changelog"]["items"]}["status"]
    assert (status_change["fromString"], status_change["toString"]) == ("To Do", "In Progress")
    summary_change = payloads[2]["changelog"]["items"]
    assert [(i["field"], i["toString"]) for i in summary_change] == [("summary", "Checkout is very slow")]
    assert payloads[3]["comment"]["body"] == "Looking into it"  # v2 rendering: plain text, as Cloud sends
    assert "user" not in payloads[3]
    ids = [d.headers["X-Atlassian-Webhook-Identifier"] for d in deliveries]
    assert len(set(ids)) == 5 and [d.status for d in deliveries] == [202] * 5


def test_jira_retries_a_failed_delivery_with_the_same_identifier(hooks: Hooks) -> None:
    with JiraEmulator(webhook_url=hooks.url("nowhere"), webhook_secret=SECRETS["jira"],
                      webhook_faults=WebhookFaults(retry_delay=0.01)) as jira:
        jira.create_issue(summary="No route")
        assert jira.wait_for_deliveries(10)
        (delivery,) = jira.deliveries
    # The receiver has no such path (404): not a status Jira retries.
    assert (delivery.status, delivery.attempts) == (404, 1)
    with JiraEmulator(webhook_url="http://127.0.0.1:9/hooks/jira", webhook_secret=SECRETS["jira"],
                      webhook_faults=WebhookFaults(retry_delay=0.01)) as jira:
        jira.create_issue(summary="Nobody listens")
        assert jira.wait_for_deliveries(10)
        (delivery,) = jira.deliveries
    assert delivery.status is None and delivery.error and delivery.attempts == 4
    assert delivery.headers["X-Atlassian-Webhook-Retry"] == "3"


def test_reset_discards_queued_events_and_records(hooks: Hooks) -> None:
    with JiraEmulator(webhook_url=hooks.url("jira"), webhook_secret=SECRETS["jira"],
                      webhook_faults=WebhookFaults(delay=0.2)) as jira:
        for n in range(3):
            jira.create_issue(summary=f"queued {n}")
        jira.reset()
        assert jira.wait_for_deliveries(10)
        assert jira.deliveries == [] and jira.dropped_deliveries == []
    assert len(hooks.drain()) <= 1  # at most the one already on its way when reset came


def test_the_sandbox_points_every_emulator_at_one_receiver(hooks: Hooks, tmp_path: Path) -> None:
    with Sandbox(port=0) as sandbox:
        sandbox.send_webhooks_to(hooks.server.url, SECRETS, faults=WebhookFaults(duplicate_rate=1.0, seed=1))
        assert {name: s.url for name, s in sandbox.webhook_senders.items()} == {
            name: f"{hooks.server.url}/hooks/{name}" for name in SECRETS}
        faults = [s.faults for s in sandbox.webhook_senders.values()]
        assert len({id(f) for f in faults}) == 4, "each emulator rolls its own dice"
        expected = {(name, CHANGES[name](emulator)) for name, emulator in sandbox.emulators.items()
                    if name in CHANGES}
        assert sandbox.wait_for_webhooks(10)
        statuses = [d.status for s in sandbox.webhook_senders.values() for d in s.deliveries]
        sandbox.send_webhooks_to(hooks.server.url, {"jira": SECRETS["jira"]}, paths={"jira": "/elsewhere"})
        assert sandbox.jira.webhooks.url == f"{hooks.server.url}/elsewhere"
        assert sandbox.zendesk.webhooks.url is None
    assert set(hooks.drain()) == expected
    assert statuses.count(202) == statuses.count(200) > 0


def test_write_config_adds_the_webhooks_section_the_receiver_reads(tmp_path: Path) -> None:
    with Sandbox(port=0) as sandbox:
        path = sandbox.write_config(tmp_path / "config.yaml", store_url=f"sqlite:///{tmp_path / 'tb.db'}",
                                    mapping=REPO / "mappings" / "zendesk-jira.yaml",
                                    webhooks={"zendesk": "ZD_HOOK", "jira": "JIRA_HOOK"},
                                    webhooks_listen="127.0.0.1:0")
        config = load_config(path, env={**sandbox.credentials(), "ZD_HOOK": "a", "JIRA_HOOK": "b"})
        assert config.webhooks is not None and (config.webhooks.host, config.webhooks.port) == ("127.0.0.1", 0)
        assert [(r.tracker, r.type, r.path, r.secret_env) for r in config.webhooks.routes] == [
            ("zendesk", "zendesk", "/hooks/zendesk", "ZD_HOOK"), ("jira", "jira", "/hooks/jira", "JIRA_HOOK")]
        plain = sandbox.write_config(tmp_path / "plain.yaml", store_url=f"sqlite:///{tmp_path / 'tb.db'}",
                                     mapping=REPO / "mappings" / "zendesk-jira.yaml")
        assert "webhooks:" not in plain.read_text()


def test_payload_bodies_are_json_objects_the_receiver_can_read(hooks: Hooks) -> None:
    # Compact JSON: the signature covers these exact bytes.
    with ZendeskEmulator(webhook_url=hooks.url("zendesk"), webhook_secret=SECRETS["zendesk"]) as zendesk:
        zendesk.add_ticket(subject="x")
        assert zendesk.wait_for_deliveries(10)
        (delivery,) = zendesk.deliveries
    assert json.loads(delivery.body) == delivery.payload and b", " not in delivery.body


# -- the 429 storm switch (emulator_kit.EmulatorServer.rate_limit_storm) -----------------------------
def _authorised(emulator: EmulatorServer) -> tuple[str, dict[str, str]]:
    """A cheap authenticated GET of each tracker's API, with its credentials."""
    def basic(user: str, password: str) -> str:
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    if isinstance(emulator, ZendeskEmulator):
        return "/api/v2/users/me", {"Authorization": basic(f"{emulator.email}/token", emulator.token)}
    if isinstance(emulator, JiraEmulator):
        return "/rest/api/3/myself", {"Authorization": basic(emulator.email, emulator.token)}
    if isinstance(emulator, GitHubEmulator):
        return "/repos/acme/app/issues", {"Authorization": f"Bearer {emulator.token}", "User-Agent": "tests"}
    assert isinstance(emulator, ClickUpEmulator)
    return "/api/v2/user", {"Authorization": emulator.token}


def _get(url: str, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return int(answer.status), {k.lower(): v for k, v in answer.headers.items()}
    except urllib.error.HTTPError as error:
        return int(error.code), {k.lower(): v for k, v in error.headers.items()}


@pytest.mark.parametrize("tracker", list(EMULATORS))
def test_a_429_storm_answers_every_request_with_retry_after_until_it_ends(tracker: str) -> None:
    with EMULATORS[tracker]() as emulator:
        path, headers = _authorised(emulator)
        assert _get(emulator.base_url + path, headers)[0] == 200
        emulator.rate_limit_storm(60, retry_after=2)
        answers = [_get(emulator.base_url + path, headers) for _ in range(3)]
        assert [status for status, _ in answers] == [429] * 3
        for _, answer_headers in answers:
            if tracker == "clickup":  # ClickUp says when, as a unix time, not how long
                assert int(answer_headers["x-ratelimit-reset"]) >= time.time() + 1
            else:
                assert int(answer_headers["retry-after"]) >= 2, answer_headers
        emulator.rate_limit_storm(0)
        assert _get(emulator.base_url + path, headers)[0] == 200
