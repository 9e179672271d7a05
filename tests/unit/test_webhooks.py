"""The webhook receiver (sync/webhooks.py) through Starlette's TestClient: each tracker's signature
exactly as the tracker signs, the item each event names, the answers for bad input, duplicates,
and a fuzz run that never gets anything but 4xx from a request without the secret."""

from __future__ import annotations

import json
import queue
import string
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from ticketbridge.sync.config import ConfigError, MissingSecret, load_config
from ticketbridge.sync.webhooks import (
    Receiver,
    TrackerRoute,
    clickup_signature,
    github_signature,
    jira_signature,
    zendesk_signature,
)

NOW = datetime(2026, 11, 20, 10, 0, 0, tzinfo=UTC)
SECRETS = {"zendesk": "zd-signing-secret", "jira": "jira-hook-secret", "github": "gh-hook-secret",
           "clickup": "cu-hook-secret"}
PATHS = {name: f"/hooks/{name}" for name in SECRETS}
LIMIT = 64 * 1024
REPO = Path(__file__).resolve().parents[2]


def stamp(when: datetime = NOW) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def nudges() -> queue.Queue[tuple[str, str]]:
    return queue.Queue()


@pytest.fixture
def receiver(nudges: queue.Queue[tuple[str, str]]) -> Receiver:
    routes = [TrackerRoute(name, name, PATHS[name], SECRETS[name]) for name in SECRETS]
    return Receiver(routes, nudges, max_body_bytes=LIMIT, tolerance=300, clock=lambda: NOW)


@pytest.fixture
def client(receiver: Receiver) -> Iterator[TestClient]:
    with TestClient(receiver.app, raise_server_exceptions=True) as test_client:
        yield test_client


def drained(nudges: queue.Queue[tuple[str, str]]) -> list[tuple[str, str]]:
    out = []
    while True:
        try:
            out.append(nudges.get_nowait())
        except queue.Empty:
            return out


# -- signed requests, the way each tracker sends them ----------------------------------------
def zendesk_event(ticket: int = 35436, event_id: str = "2b24ef10-0001", kind: str = "ticket.status_changed") -> bytes:
    return json.dumps({"type": f"zen:event-type:{kind}", "account_id": 12514403, "id": event_id,
                       "time": "2026-11-20T09:59:58Z", "zendesk_event_version": "2022-11-06",
                       "subject": f"zen:ticket:{ticket}", "detail": {"id": str(ticket), "status": "OPEN"},
                       "event": {"current": "OPEN", "previous": "NEW"}}).encode()


def zendesk_headers(body: bytes, *, when: datetime = NOW, secret: str = SECRETS["zendesk"]) -> dict[str, str]:
    ts = stamp(when)
    return {"Content-Type": "application/json", "User-Agent": "Zendesk Webhook",
            "X-Zendesk-Webhook-Id": "01HWEBHOOK", "X-Zendesk-Webhook-Signature-Timestamp": ts,
            "X-Zendesk-Webhook-Signature": zendesk_signature(secret, ts, body)}


def jira_event(issue_id: str = "10002", kind: str = "jira:issue_updated") -> bytes:
    return json.dumps({"timestamp": 1536083559131, "webhookEvent": kind, "issue_event_type_name": "issue_generic",
                       "user": {"accountId": "5b10ac8d82e05b22cc7d4ef5"},
                       "issue": {"id": issue_id, "key": "ENG-7", "self": "https://x/rest/api/3/issue/" + issue_id,
                                 "fields": {"summary": "Printer on fire"}},
                       "changelog": {"id": "1", "items": []}}).encode()


def jira_headers(body: bytes, delivery: str = "d2a1b3c4-jira", secret: str = SECRETS["jira"]) -> dict[str, str]:
    return {"Content-Type": "application/json", "X-Atlassian-Webhook-Identifier": delivery,
            "X-Hub-Signature": jira_signature(secret, body)}


def github_event(number: int = 12, action: str = "opened", *, pull: bool = False) -> bytes:
    issue: dict[str, Any] = {"id": 1_000_012, "number": number, "title": "Crash on export", "state": "open"}
    if pull:
        issue["pull_request"] = {"url": "https://api.github.com/repos/acme/app/pulls/12"}
    return json.dumps({"action": action, "issue": issue, "repository": {"id": 1, "full_name": "acme/app"},
                       "sender": {"login": "octocat"}}, separators=(",", ":")).encode()


def github_headers(body: bytes, event: str = "issues", delivery: str = "72d3162e-cc78-11e3-81ab-4c9367dc0958",
                   secret: str = SECRETS["github"]) -> dict[str, str]:
    return {"Content-Type": "application/json", "User-Agent": "GitHub-Hookshot/abc", "X-GitHub-Event": event,
            "X-GitHub-Delivery": delivery, "X-Hub-Signature-256": github_signature(secret, body)}


def clickup_event(task: str = "1vj37mc", event: str = "taskStatusUpdated", history: str = "2800763136717140857"
                  ) -> bytes:
    return json.dumps({"event": event, "task_id": task, "webhook_id": "7fa3ec74-69a8-4530-a251-8a13730bd204",
                       "history_items": [{"id": history, "type": 1, "date": "1642734631523", "field": "status",
                                          "after": {"status": "to do"}}]}, separators=(",", ":")).encode()


def clickup_headers(body: bytes, secret: str = SECRETS["clickup"]) -> dict[str, str]:
    return {"Content-Type": "application/json", "X-Signature": clickup_signature(secret, body)}


SIGNED = {
    "zendesk": (zendesk_event, zendesk_headers, "35436"),
    "jira": (jira_event, jira_headers, "10002"),
    "github": (github_event, github_headers, "acme/app#12"),
    "clickup": (clickup_event, clickup_headers, "1vj37mc"),
}
SIGNATURE_HEADER = {"zendesk": "X-Zendesk-Webhook-Signature", "jira": "X-Hub-Signature",
                    "github": "X-Hub-Signature-256", "clickup": "X-Signature"}


def sign(tracker: str, body: bytes) -> dict[str, str]:
    return SIGNED[tracker][1](body)  # type: ignore[operator, no-any-return]


# -- the signatures themselves ------------------------------------------------------------------
def test_github_signature_matches_the_documented_test_vector() -> None:
    assert github_signature("It's a Secret to Everybody", b"Hello, World!") == \
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"


def test_zendesk_signature_is_base64_of_timestamp_then_body_without_separator() -> None:
    import base64
    import hashlib
    import hmac

    expected = base64.b64encode(hmac.new(b"s", b"2024-04-17T17:18:10Z" + b'{"a":1}', hashlib.sha256).digest())
    assert zendesk_signature("s", "2024-04-17T17:18:10Z", b'{"a":1}') == expected.decode()


# -- per tracker: accepted, wrong or missing signature, malformed, duplicate ---------------------
@pytest.mark.parametrize("tracker", list(SIGNED))
def test_a_correctly_signed_delivery_is_accepted_and_queues_the_item_it_names(
        tracker: str, client: TestClient, nudges: queue.Queue[tuple[str, str]]) -> None:
    make, headers, item = SIGNED[tracker]
    body = make()  # type: ignore[operator]
    answer = client.post(PATHS[tracker], content=body, headers=headers(body))  # type: ignore[operator]
    assert answer.status_code == 202, answer.text
    assert answer.json() == {"accepted": True, "item": item}
    assert drained(nudges) == [(tracker, item)]


@pytest.mark.parametrize("tracker", list(SIGNED))
def test_a_wrong_signature_is_401_and_queues_nothing(tracker: str, client: TestClient,
                                                     nudges: queue.Queue[tuple[str, str]]) -> None:
    make, headers, _ = SIGNED[tracker]
    body = make()  # type: ignore[operator]
    wrong = headers(body, secret="not-the-secret")  # type: ignore[operator]
    assert client.post(PATHS[tracker], content=body, headers=wrong).status_code == 401
    tampered = headers(body)  # type: ignore[operator]
    assert client.post(PATHS[tracker], content=body + b" ", headers=tampered).status_code == 401
    missing = {k: v for k, v in tampered.items() if k != SIGNATURE_HEADER[tracker]}
    assert client.post(PATHS[tracker], content=body, headers=missing).status_code == 401
    garbage: dict[str, Any] = {**tampered, SIGNATURE_HEADER[tracker]: "sha256=\u00e9\u00e9".encode("latin-1")}
    assert client.post(PATHS[tracker], content=body, headers=garbage).status_code == 401
    assert drained(nudges) == []


def test_a_signature_for_another_tracker_route_is_rejected(client: TestClient) -> None:
    body = github_event()
    assert client.post(PATHS["jira"], content=body, headers=github_headers(body)).status_code == 401


@pytest.mark.parametrize("tracker", list(SIGNED))
@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b"\xff\xfe", b"", b'"text"'])
def test_a_signed_but_malformed_body_is_400(tracker: str, body: bytes, client: TestClient,
                                            nudges: queue.Queue[tuple[str, str]]) -> None:
    answer = client.post(PATHS[tracker], content=body, headers=sign(tracker, body))
    assert answer.status_code == 400, answer.text
    assert drained(nudges) == []


@pytest.mark.parametrize(("tracker", "payload"), [
    ("zendesk", {"type": "zen:event-type:ticket.status_changed", "id": "x", "subject": "zen:user:1"}),
    ("zendesk", {"type": "zen:event-type:ticket.status_changed", "id": "x", "detail": {"id": "12; DROP"}}),
    ("zendesk", {"ticket_id": True}),
    ("jira", {"webhookEvent": "jira:issue_updated"}),
    ("jira", {"webhookEvent": "jira:issue_updated", "issue": {"key": "ENG-1"}}),
    ("github", {"action": "opened", "issue": {"number": "12"}, "repository": {"full_name": "acme/app"}}),
    ("github", {"action": "opened", "issue": {"number": 12}, "repository": {"full_name": "../etc"}}),
    ("clickup", {"event": "taskUpdated"}),
    ("clickup", {"event": "taskUpdated", "task_id": {"id": 1}}),
])
def test_a_signed_event_without_a_usable_item_id_is_400(tracker: str, payload: dict[str, Any],
                                                        client: TestClient) -> None:
    body = json.dumps(payload).encode()
    assert client.post(PATHS[tracker], content=body, headers=sign(tracker, body)).status_code == 400


@pytest.mark.parametrize(("tracker", "body", "extra"), [
    ("zendesk", zendesk_event(kind="user.created").replace(b"zen:ticket:35436", b"zen:user:5"), {}),
    ("zendesk", b'{"note": "a trigger body without a ticket"}', {}),
    ("jira", jira_event(kind="jira:issue_deleted"), {}),
    ("jira", jira_event(kind="worklog_created"), {}),
    ("github", github_event(), {"X-GitHub-Event": "ping"}),
    ("github", github_event(pull=True), {}),
    ("github", github_event(action="deleted"), {}),
    ("clickup", clickup_event(event="listCreated"), {}),
    ("clickup", clickup_event(event="taskDeleted"), {}),
])
def test_an_event_we_do_not_act_on_is_204(tracker: str, body: bytes, extra: dict[str, str], client: TestClient,
                                         nudges: queue.Queue[tuple[str, str]]) -> None:
    headers = {**sign(tracker, body), **extra}
    answer = client.post(PATHS[tracker], content=body, headers=headers)
    assert answer.status_code == 204
    assert answer.content == b""
    assert drained(nudges) == []


@pytest.mark.parametrize("tracker", list(SIGNED))
def test_a_duplicate_delivery_is_answered_200_and_queued_once(tracker: str, client: TestClient,
                                                              receiver: Receiver,
                                                              nudges: queue.Queue[tuple[str, str]]) -> None:
    make, headers, item = SIGNED[tracker]
    body = make()  # type: ignore[operator]
    first = client.post(PATHS[tracker], content=body, headers=headers(body))  # type: ignore[operator]
    again = client.post(PATHS[tracker], content=body, headers=headers(body))  # type: ignore[operator]
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json() == {"duplicate": True, "item": item}
    assert drained(nudges) == [(tracker, item)]
    assert (receiver.counters.accepted, receiver.counters.duplicates) == (1, 1)


def test_deliveries_are_told_apart_by_each_trackers_delivery_id(
        client: TestClient, nudges: queue.Queue[tuple[str, str]]) -> None:
    body = github_event()
    for delivery in ("a", "b", "a"):
        client.post(PATHS["github"], content=body, headers=github_headers(body, delivery=delivery))
    jira = jira_event()
    for delivery in ("j1", "j2", "j1"):
        client.post(PATHS["jira"], content=jira, headers=jira_headers(jira, delivery=delivery))
    for event_id in ("e1", "e2", "e1"):
        zd = zendesk_event(event_id=event_id)
        client.post(PATHS["zendesk"], content=zd, headers=zendesk_headers(zd))
    for history in ("h1", "h2", "h1"):
        cu = clickup_event(history=history)
        client.post(PATHS["clickup"], content=cu, headers=clickup_headers(cu))
    assert sorted(drained(nudges)) == sorted(
        [("github", "acme/app#12")] * 2 + [("jira", "10002")] * 2 + [("zendesk", "35436")] * 2
        + [("clickup", "1vj37mc")] * 2)


def test_the_memory_of_delivery_ids_is_bounded(nudges: queue.Queue[tuple[str, str]]) -> None:
    routes = [TrackerRoute("github", "github", "/gh", SECRETS["github"])]
    small = Receiver(routes, nudges, seen_size=2)
    client = TestClient(small.app)
    body = github_event()
    for delivery in ("a", "b", "c", "a"):  # "a" was forgotten when "c" came
        assert client.post("/gh", content=body, headers=github_headers(body, delivery=delivery)).status_code == 202
    assert client.post("/gh", content=body, headers=github_headers(body, delivery="c")).status_code == 200


# -- Zendesk specifics -------------------------------------------------------------------------
@pytest.mark.parametrize("offset", [timedelta(minutes=-6), timedelta(minutes=6), timedelta(days=-400)])
def test_a_zendesk_signature_outside_the_freshness_window_is_401(offset: timedelta, client: TestClient,
                                                                 nudges: queue.Queue[tuple[str, str]]) -> None:
    body = zendesk_event()
    answer = client.post(PATHS["zendesk"], content=body, headers=zendesk_headers(body, when=NOW + offset))
    assert answer.status_code == 401
    assert "stale" in answer.json()["error"]
    assert drained(nudges) == []


def test_a_zendesk_signature_inside_the_window_is_accepted(client: TestClient) -> None:
    body = zendesk_event()
    answer = client.post(PATHS["zendesk"], content=body, headers=zendesk_headers(body, when=NOW - timedelta(minutes=4)))
    assert answer.status_code == 202


@pytest.mark.parametrize("stamp_value", ["", "yesterday", "1700000000"])
def test_an_unreadable_zendesk_timestamp_is_401(stamp_value: str, client: TestClient) -> None:
    body = zendesk_event()
    headers = {"X-Zendesk-Webhook-Signature-Timestamp": stamp_value,
               "X-Zendesk-Webhook-Signature": zendesk_signature(SECRETS["zendesk"], stamp_value, body)}
    assert client.post(PATHS["zendesk"], content=body, headers=headers).status_code == 401


def test_a_zendesk_trigger_webhook_names_its_ticket_and_retries_are_recognised_by_invocation_id(
        client: TestClient, nudges: queue.Queue[tuple[str, str]]) -> None:
    body = b'{"ticket_id": "81", "updated_at": "2026-11-20T09:59:00Z"}'
    headers = {**zendesk_headers(body), "X-Zendesk-Webhook-Invocation-Id": "inv-1"}
    assert client.post(PATHS["zendesk"], content=body, headers=headers).status_code == 202
    retry = {**zendesk_headers(body, when=NOW + timedelta(seconds=30)), "X-Zendesk-Webhook-Invocation-Id": "inv-1"}
    assert client.post(PATHS["zendesk"], content=body, headers=retry).status_code == 200
    assert drained(nudges) == [("zendesk", "81")]


def test_a_zendesk_ticket_event_without_detail_is_read_from_its_subject(
        client: TestClient, nudges: queue.Queue[tuple[str, str]]) -> None:
    body = json.dumps({"type": "zen:event-type:ticket.comment_added", "id": "e9", "subject": "zen:ticket:7"}).encode()
    assert client.post(PATHS["zendesk"], content=body, headers=zendesk_headers(body)).status_code == 202
    assert drained(nudges) == [("zendesk", "7")]


# -- GitHub specifics --------------------------------------------------------------------------
def test_a_github_comment_names_its_issue_and_a_form_encoded_hook_is_read(
        client: TestClient, nudges: queue.Queue[tuple[str, str]]) -> None:
    from urllib.parse import urlencode

    comment = json.dumps({"action": "created", "issue": {"number": 3}, "comment": {"id": 9, "body": "hi"},
                          "repository": {"full_name": "acme/app"}}).encode()
    headers = github_headers(comment, event="issue_comment", delivery="c1")
    assert client.post(PATHS["github"], content=comment, headers=headers).status_code == 202
    form = urlencode({"payload": github_event(number=4).decode()}).encode()
    headers = {**github_headers(form, delivery="f1"), "Content-Type": "application/x-www-form-urlencoded"}
    assert client.post(PATHS["github"], content=form, headers=headers).status_code == 202
    assert drained(nudges) == [("github", "acme/app#3"), ("github", "acme/app#4")]


def test_a_github_delivery_without_event_header_is_400(client: TestClient) -> None:
    body = github_event()
    headers = {k: v for k, v in github_headers(body).items() if k != "X-GitHub-Event"}
    assert client.post(PATHS["github"], content=body, headers=headers).status_code == 400


def test_a_clickup_signature_in_upper_case_hex_is_accepted(client: TestClient) -> None:
    body = clickup_event()
    headers = {"X-Signature": clickup_signature(SECRETS["clickup"], body).upper()}
    assert client.post(PATHS["clickup"], content=body, headers=headers).status_code == 202


# -- size, method, route -------------------------------------------------------------------------
@pytest.mark.parametrize("tracker", list(SIGNED))
def test_a_body_over_the_limit_is_413_whether_declared_or_streamed(
        tracker: str, client: TestClient, nudges: queue.Queue[tuple[str, str]]) -> None:
    big = b'{"pad": "' + b"x" * LIMIT + b'"}'
    assert client.post(PATHS[tracker], content=big, headers=sign(tracker, big)).status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: read until the limit, then stop
        for _ in range(LIMIT // 1024 + 4):
            yield b"x" * 1024

    answer = client.post(PATHS[tracker], content=chunks(), headers=sign(tracker, b""))
    assert answer.status_code == 413
    assert drained(nudges) == []


def test_a_body_just_under_the_limit_is_read(client: TestClient) -> None:
    body = github_event()
    body = body[:-1] + b',"pad":"' + b"x" * (LIMIT - len(body) - 10) + b'"}'
    assert len(body) <= LIMIT
    assert client.post(PATHS["github"], content=body, headers=github_headers(body)).status_code == 202


def test_other_methods_and_unknown_paths_are_4xx(client: TestClient) -> None:
    assert client.get(PATHS["github"]).status_code == 405
    assert client.post("/hooks/nowhere", content=b"{}").status_code == 404
    assert client.post(PATHS["github"], content=b"{}", headers={"Content-Length": "abc"}).status_code in (400, 401)


def test_secrets_never_appear_in_answers_or_reprs(client: TestClient, receiver: Receiver) -> None:
    body = github_event()
    answers = [client.post(PATHS[t], content=body, headers={}).text for t in SIGNED]
    text = " ".join(answers) + repr(receiver.routes)
    assert not any(secret in text for secret in SECRETS.values())


# -- fuzz --------------------------------------------------------------------------------------
header_names = st.sampled_from(["X-Zendesk-Webhook-Signature", "X-Zendesk-Webhook-Signature-Timestamp",
                                "X-Hub-Signature-256", "X-Hub-Signature", "X-Signature", "X-GitHub-Event",
                                "X-GitHub-Delivery", "X-Atlassian-Webhook-Identifier", "Content-Type",
                                "X-Zendesk-Webhook-Invocation-Id"])
header_values = st.text(alphabet=string.printable.strip("\r\n\x0b\x0c") + "é", max_size=80).map(
    lambda text: text.encode("latin-1"))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=15)
shaped = st.fixed_dictionaries({}, optional={
    "type": st.sampled_from(["zen:event-type:ticket.status_changed", "zen:event-type:user.created", 5]),
    "webhookEvent": st.sampled_from(["jira:issue_updated", "comment_created", "nope", None]),
    "event": st.sampled_from(["taskUpdated", "taskDeleted", "x", 1]),
    "action": st.sampled_from(["opened", "deleted", None]),
    "id": json_values, "subject": st.sampled_from(["zen:ticket:1", "zen:ticket:x", 3]),
    "detail": json_values, "issue": json_values, "task_id": json_values, "ticket_id": json_values,
    "repository": json_values, "history_items": json_values,
})
bodies = st.one_of(st.binary(max_size=300), json_values.map(lambda v: json.dumps(v).encode()),
                   shaped.map(lambda v: json.dumps(v).encode()))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tracker=st.sampled_from(list(SIGNED)), body=bodies,
       headers=st.dictionaries(header_names, header_values, max_size=5))
def test_fuzzed_requests_without_the_secret_get_only_4xx(tracker: str, body: bytes, headers: dict[str, bytes],
                                                         client: TestClient,
                                                         nudges: queue.Queue[tuple[str, str]]) -> None:
    answer = client.post(PATHS[tracker], content=body, headers=headers)
    assert 400 <= answer.status_code < 500, (answer.status_code, answer.text)
    assert nudges.empty()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tracker=st.sampled_from(list(SIGNED)), body=bodies,
       event=st.sampled_from(["issues", "issue_comment", "ping", ""]))
def test_fuzzed_bodies_with_a_valid_signature_never_crash_the_receiver(
        tracker: str, body: bytes, event: str, client: TestClient) -> None:
    headers = {**sign(tracker, body), "X-GitHub-Event": event} if event else sign(tracker, body)
    answer = client.post(PATHS[tracker], content=body, headers=headers)
    assert answer.status_code in (200, 202, 204, 400), (answer.status_code, answer.text)
    assert answer.status_code < 500


def test_the_receiver_keeps_serving_after_the_fuzzing(client: TestClient,
                                                      nudges: queue.Queue[tuple[str, str]]) -> None:
    for tracker in SIGNED:
        client.post(PATHS[tracker], content=b"\x00garbage", headers={"X-Signature": "00"})
    body = github_event(number=99)
    assert client.post(PATHS["github"], content=body, headers=github_headers(body, delivery="z")).status_code == 202
    assert drained(nudges) == [("github", "acme/app#99")]


# -- config ------------------------------------------------------------------------------------
CONFIG = """\
trackers:
  zendesk:
    type: zendesk
    base_url: http://127.0.0.1:1
    auth: {{email_env: ZENDESK_EMAIL, token_env: ZENDESK_API_TOKEN}}
  jira:
    type: jira
    base_url: http://127.0.0.1:2
    auth: {{email_env: JIRA_EMAIL, token_env: JIRA_API_TOKEN}}
flows:
  - mapping: {mapping}
webhooks:
{webhooks}"""


def write(tmp_path: Path, webhooks: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG.format(mapping=REPO / "mappings" / "zendesk-jira.yaml", webhooks=webhooks))
    return path


def test_the_webhooks_section_is_read_with_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "  listen: 0.0.0.0:9100\n  trackers:\n"
                                         "    zendesk: {path: /zd, secret_env: ZENDESK_WEBHOOK_SECRET}\n"
                                         "    jira: {secret_env: JIRA_WEBHOOK_SECRET}\n"))
    hooks = config.webhooks
    assert hooks is not None
    assert (hooks.host, hooks.port, hooks.max_body_bytes, hooks.tolerance) == ("0.0.0.0", 9100, 1024 * 1024, 300.0)
    assert [(r.tracker, r.type, r.path, r.secret_env) for r in hooks.routes] == [
        ("zendesk", "zendesk", "/zd", "ZENDESK_WEBHOOK_SECRET"), ("jira", "jira", "/hooks/jira", "JIRA_WEBHOOK_SECRET")]
    with pytest.raises(MissingSecret, match="JIRA_WEBHOOK_SECRET"):
        Receiver.from_config(hooks, queue.Queue(), {"ZENDESK_WEBHOOK_SECRET": "s"})
    built = Receiver.from_config(hooks, queue.Queue(), {"ZENDESK_WEBHOOK_SECRET": "s", "JIRA_WEBHOOK_SECRET": "t"})
    assert [r.path for r in built.routes] == ["/zd", "/hooks/jira"]


@pytest.mark.parametrize(("section", "message"), [
    ("  trackers:\n    github: {secret_env: GH}\n", "no tracker named 'github'"),
    ("  trackers:\n    zendesk: {path: /h, secret_env: A}\n    jira: {path: /h, secret_env: B}\n", "already the route"),
    ("  trackers:\n    zendesk: {secret_env: A, secret: hunter2}\n", "secret"),
    ("  listen: localhost\n  trackers:\n    zendesk: {secret_env: A}\n", "host:port"),
    ("  listen: 127.0.0.1:99999\n  trackers:\n    zendesk: {secret_env: A}\n", "out of range"),
    ("  trackers:\n    zendesk: {path: hooks, secret_env: A}\n", "URL path"),
    ("  trackers: {}\n", "webhooks"),
])
def test_a_bad_webhooks_section_is_a_config_problem_with_its_line(tmp_path: Path, section: str,
                                                                  message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, section))
    text = str(caught.value)
    assert message in text, text
    assert "config.yaml:1" in text
