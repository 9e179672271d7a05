"""The Zendesk connector: normalization (recorded and own payloads), HTTP error handling with
`responses` mocks, and end to end against the Zendesk emulator."""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
from responses import matchers

from ticketbridge.connectors.emulator_kit import RateBudget
from ticketbridge.connectors.errors import AuthError, NotFound, Permanent, RateLimited, Unsure
from ticketbridge.connectors.http import RetryPolicy
from ticketbridge.connectors.zendesk.connector import ZendeskConnector
from ticketbridge.connectors.zendesk.emulator import ZendeskEmulator
from ticketbridge.sync.model import AddComment, Create, Item, Transition, Update, with_comment_marker

BASE = "https://acme.zendesk.com"
DATA = Path(__file__).resolve().parent / "data" / "zendesk"
SHARED_FIXTURES = Path(os.environ.get("TICKETBRIDGE_SHARED")
                       or Path(__file__).resolve().parents[2].parent / "shared") / "reference" / "fixtures"
RECORDED = SHARED_FIXTURES / "zendesk"


class NoJitter(random.Random):
    """Makes RetryPolicy wait exactly what the tracker asked for, so tests can compare."""

    def uniform(self, a: float, b: float) -> float:
        return a


def policy(waits: list[float] | None = None, attempts: int = 8) -> RetryPolicy:
    record = waits if waits is not None else []
    return RetryPolicy(attempts=attempts, sleep=record.append, rng=NoJitter())


def mocked(**kwargs: Any) -> ZendeskConnector:
    return ZendeskConnector("zendesk", BASE, "agent@acme.example", "s3cret-token-value",
                            retry=kwargs.pop("retry", policy()), **kwargs)


def recorded(name: str) -> Any:
    path = RECORDED / name
    if not RECORDED.is_dir():
        pytest.skip(f"recorded Zendesk payloads not available: {RECORDED} is absent "
                    "(set TICKETBRIDGE_SHARED to the shared directory)")
    return json.loads(path.read_text(encoding="utf-8"))


def own(name: str) -> Any:
    return json.loads((DATA / name).read_text(encoding="utf-8"))


# -- normalization: recorded real payloads ------------------------------------------------------

def test_recorded_cursor_page_normalizes_every_ticket() -> None:
    body = recorded("rest_incremental_tickets_cursor_page.json")
    item = mocked().normalize(body["tickets"][0])
    assert (item.tracker, item.id, item.key) == ("zendesk", "29", "#29")
    assert item.url == f"{BASE}/agent/tickets/29"
    assert item.updated_at == datetime(2023, 9, 18, 15, 57, 42, tzinfo=UTC)
    assert item.version == "2023-09-18T15:57:42Z"
    assert item.fields["subject"] == "test"
    assert item.fields["description"] == "test"
    assert item.fields["status"] == "new"
    assert item.fields["priority"] is None
    assert item.fields["tags"] == ()
    assert item.fields["requester_id"] == 6130907993114
    assert item.comments is None and item.marker is None


@responses.activate
def test_recorded_export_pages_are_followed_until_end_of_stream() -> None:
    page = recorded("rest_incremental_tickets_cursor_page.json")
    last = recorded("rest_incremental_tickets_cursor_end_of_stream.json")
    url = f"{BASE}/api/v2/incremental/tickets/cursor"
    responses.get(url, json=page, match=[matchers.query_param_matcher(
        {"start_time": "0", "per_page": "1000", "include": "users,organizations"})])
    responses.get(url, json=last, match=[matchers.query_param_matcher(
        {"cursor": page["after_cursor"], "per_page": "1000", "include": "users,organizations"})])
    pages = list(mocked().poll(None, {}))
    assert [p.cursor for p in pages] == [page["after_cursor"], last["after_cursor"]]
    assert [i.id for i in pages[0].items] == ["29"]
    assert [i.id for i in pages[1].items] == [str(t["id"]) for t in last["tickets"]]
    assert len(pages[1].items) == len(last["tickets"]) > 10
    for item in pages[1].items:
        assert item.updated_at.tzinfo is not None
        assert isinstance(item.fields["tags"], tuple)
        assert list(item.fields["tags"]) == sorted(item.fields["tags"])


def test_recorded_comment_normalizes() -> None:
    body = recorded("rest_ticket_comments_list.json")
    comment = mocked().normalize_comment(body["comments"][0])
    assert comment.id == "33144692244499"
    assert comment.body == "Some comment"
    assert comment.public is True
    assert comment.author == "26155588908179"
    assert comment.created_at == datetime(2024, 9, 6, 18, 52, 11, tzinfo=UTC)
    assert comment.mirrored_from is None


@responses.activate
def test_recorded_comments_list_drops_the_description_comment() -> None:
    # Ticket 33's only comment is the one it was created with, i.e. its description.
    responses.get(f"{BASE}/api/v2/tickets/33/comments", json=recorded("rest_ticket_comments_list.json"))
    item = mocked().normalize({"id": 33, "updated_at": "2024-09-06T18:52:11Z", "tags": []})
    assert mocked().with_comments(item).comments == ()


@responses.activate
def test_recorded_create_response_becomes_the_push_result() -> None:
    body = recorded("rest_ticket_create_201.json")
    responses.post(f"{BASE}/api/v2/tickets", json=body, status=201)
    result = mocked().push(None, [Create({"subject": "test"}, marker="jira:1")])
    assert (result.item_id, result.item_key, result.created) == ("4014", "#4014", True)
    assert result.item is not None and result.item.fields["subject"] == "test"
    assert result.item.updated_at == datetime(2023, 9, 18, 23, 25, 58, tzinfo=UTC)
    sent = json.loads(responses.calls[0].request.body or b"{}")["ticket"]
    assert sent["external_id"] == "tb:jira:1"
    assert sent["comment"] == {"body": "test", "public": False}


# -- normalization: own payloads ----------------------------------------------------------------

def test_ticket_with_custom_fields_normalizes_to_flat_native_values() -> None:
    item = mocked().normalize(own("ticket_custom_fields.json")["ticket"])
    assert item.fields == {
        "subject": "Checkout fails for EU customers",
        "description": "Every EU customer gets a 500 at checkout.",
        "status": "open", "priority": "high", "type": "incident",
        "tags": ("checkout", "eu", "outage"),
        "external_id": "tb:jira:10057", "assignee_id": 1000001, "group_id": 360000123,
        "requester_id": 1000002, "due_at": "2025-03-05T17:00:00Z", "created_at": "2025-03-01T09:00:00Z",
        "custom_fields.360001": "payments", "custom_fields.360002": "production",
        "custom_fields.360003": ("android", "ios"), "custom_fields.360004": None,
        "custom_fields.360005": True,
    }
    assert item.marker == "jira:10057"
    assert item.updated_at == datetime(2025, 3, 2, 10, 15, 30, tzinfo=UTC)


@pytest.mark.parametrize("external_id", [None, "", "JIRA-123", "tb:", "tb:jira", "tb:Jira:1", 42])
def test_external_ids_that_are_not_our_marker_give_no_marker(external_id: Any) -> None:
    ticket = {**own("ticket_custom_fields.json")["ticket"], "external_id": external_id}
    assert mocked().normalize(ticket).marker is None


def test_selected_applies_statuses_and_tag_rules() -> None:
    item = mocked().normalize(own("ticket_custom_fields.json")["ticket"])  # open; checkout, eu, outage
    connector = mocked()
    assert connector.selected(item, {})
    assert connector.selected(item, {"statuses": ["new", "open"]})
    assert not connector.selected(item, {"statuses": ["solved"]})
    assert connector.selected(item, {"tags_any": ["eu", "us"]})
    assert not connector.selected(item, {"tags_any": ["us"]})
    assert not connector.selected(item, {"tags_none": ["outage"]})
    assert connector.selected(item, {"statuses": ["open"], "tags_any": ["eu"], "tags_none": ["spam"]})


# -- HTTP errors (responses mocks) --------------------------------------------------------------

@responses.activate
def test_401_is_auth_error_without_credentials_in_message() -> None:
    # Zendesk sends ratelimit-reset on ordinary responses; a 401 carrying it is still no rate limit.
    responses.get(f"{BASE}/api/v2/users/me", status=401, json={"error": "Couldn't authenticate you"},
                  headers={"ratelimit-reset": "42", "X-Rate-Limit-Remaining": "699"})
    with pytest.raises(AuthError) as caught:
        mocked().check()
    assert "Couldn't authenticate you" in str(caught.value)
    assert "s3cret-token-value" not in str(caught.value)
    assert len(responses.calls) == 1  # not retried


@responses.activate
def test_anonymous_user_from_users_me_is_auth_error() -> None:
    responses.get(f"{BASE}/api/v2/users/me", json={"user": {"id": None, "name": "Anonymous user"}})
    with pytest.raises(AuthError):
        mocked().check()


@responses.activate
def test_check_sends_api_token_basic_auth() -> None:
    responses.get(f"{BASE}/api/v2/users/me", json={"user": {"id": 1, "role": "admin"}})
    mocked().check()
    expected = requests.auth._basic_auth_str("agent@acme.example/token", "s3cret-token-value")
    assert responses.calls[0].request.headers["Authorization"] == expected


@responses.activate
def test_404_is_not_found_with_zendesk_message() -> None:
    responses.get(f"{BASE}/api/v2/tickets/77", status=404,
                  json={"error": "RecordNotFound", "description": "Not found"})
    with pytest.raises(NotFound) as caught:
        mocked().fetch("77")
    assert "RecordNotFound: Not found" in caught.value.message


@responses.activate
def test_429_waits_exactly_retry_after_then_succeeds() -> None:
    url = f"{BASE}/api/v2/tickets/5"
    responses.get(url, status=429, headers={"Retry-After": "7"},
                  json={"error": "APIRateLimitExceeded", "description": "Number of allowed API requests"})
    responses.get(url, json=own("ticket_custom_fields.json"))
    responses.get(f"{url}/comments", json={"comments": [], "meta": {"has_more": False}})
    waits: list[float] = []
    item = mocked(retry=policy(waits)).fetch("5")
    assert waits == [7.0]
    assert item.id == "4242"


@responses.activate
def test_429_that_never_ends_raises_rate_limited() -> None:
    responses.get(f"{BASE}/api/v2/users/me", status=429, headers={"Retry-After": "3"}, json={})
    waits: list[float] = []
    with pytest.raises(RateLimited) as caught:
        mocked(retry=policy(waits, attempts=3)).check()
    assert caught.value.retry_after == 3.0
    assert waits == [3.0, 3.0]


@responses.activate
@pytest.mark.parametrize(("status", "body", "message"), [
    (422, {"error": "RecordInvalid", "description": "Record validation errors",
           "details": {"base": [{"description": "Type: is required when solving a ticket",
                                 "ticket_field_id": 1}]}},
     "RecordInvalid: Record validation errors (base: Type: is required when solving a ticket)"),
    (400, {"error": "TooManyValues", "description": "Too many tags"}, "TooManyValues: Too many tags"),
    (403, {"error": {"title": "Forbidden", "message": "You do not have access to this page."}},
     "Forbidden: You do not have access to this page."),
])
def test_client_errors_carry_zendesk_message(status: int, body: Any, message: str) -> None:
    responses.put(f"{BASE}/api/v2/tickets/9", status=status, json=body, headers={"ratelimit-reset": "12"})
    expected = AuthError if status == 403 else Permanent
    with pytest.raises(expected) as caught:
        mocked().push("9", [Update({"status": "solved"})])
    assert caught.value.message.endswith(message)
    assert caught.value.status == status


@responses.activate
def test_create_timeout_is_unsure_and_not_retried() -> None:
    responses.post(f"{BASE}/api/v2/tickets", body=requests.exceptions.ReadTimeout("read timed out"))
    with pytest.raises(Unsure):
        mocked().push(None, [Create({"subject": "x"}, marker="jira:5")])
    assert len(responses.calls) == 1


@responses.activate
def test_comment_put_timeout_is_unsure_and_not_retried() -> None:
    responses.put(f"{BASE}/api/v2/tickets/9", body=requests.exceptions.ReadTimeout("read timed out"))
    with pytest.raises(Unsure):
        mocked().push("9", [AddComment("hi [tb:jira:1]", public=False, source_id="jira:1")])
    assert len(responses.calls) == 1


@responses.activate
def test_field_only_put_timeout_is_retried() -> None:
    url = f"{BASE}/api/v2/tickets/9"
    responses.put(url, body=requests.exceptions.ReadTimeout("read timed out"))
    responses.put(url, json={"ticket": own("ticket_custom_fields.json")["ticket"], "audit": {"events": []}})
    result = mocked().push("9", [Update({"status": "open"})])  # a plain field write is idempotent
    assert result.item is not None and len(responses.calls) == 2


@responses.activate
def test_comment_id_falls_back_to_marker_search_without_audit() -> None:
    ticket = own("ticket_custom_fields.json")["ticket"]
    responses.put(f"{BASE}/api/v2/tickets/4242", json={"ticket": ticket})
    responses.get(f"{BASE}/api/v2/tickets/4242/comments", json={"comments": [
        {"id": 1, "body": "Every EU customer", "public": True, "author_id": 5,
         "created_at": "2025-03-01T09:00:00Z"},
        {"id": 2, "body": "Older note\n\n[tb:jira:3]", "public": False, "author_id": 5,
         "created_at": "2025-03-01T09:00:00Z"},
        {"id": 3, "body": "Engineering says hi\n\n[tb:jira:7]", "public": False, "author_id": 5,
         "created_at": "2025-03-02T10:15:30Z"},
    ], "meta": {"has_more": False}})
    result = mocked().push("4242", [AddComment(with_comment_marker("Engineering says hi", "jira:7"),
                                               public=False, source_id="jira:7")])
    assert result.comment_ids == {"jira:7": "3"}


def test_update_of_read_only_description_sends_nothing() -> None:
    with responses.RequestsMock() as mock:
        result = mocked().push("9", [Update({"description": "new text"})])
    assert len(mock.calls) == 0
    assert (result.item_id, result.comment_ids, result.item) == ("9", {}, None)


def test_transition_is_refused_before_any_request() -> None:
    with responses.RequestsMock() as mock, pytest.raises(Permanent):
        mocked().push("9", [Update({"status": "open"}), Transition("Done")])
    assert len(mock.calls) == 0


# -- end to end against the emulator ------------------------------------------------------------

@pytest.fixture
def emu() -> Iterator[ZendeskEmulator]:
    with ZendeskEmulator(export_exclusion_seconds=0) as emulator:
        yield emulator


def emu_count(emu: ZendeskEmulator, expected: int, method: str, prefix: str = "") -> int:
    """The emulator logs a request just after answering it: give the log a moment to catch up."""
    deadline = time.monotonic() + 2
    while emu.count(method, prefix) < expected and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.02)  # and a moment more, so an extra request would show up too
    return emu.count(method, prefix)


def connect(emu: ZendeskEmulator, **kwargs: Any) -> ZendeskConnector:
    return ZendeskConnector("zendesk", emu.base_url, emu.email, emu.token,
                            retry=kwargs.pop("retry", policy()), **kwargs)


def test_e2e_check_passes_and_wrong_token_is_auth_error(emu: ZendeskEmulator) -> None:
    connect(emu).check()
    wrong = ZendeskConnector("zendesk", emu.base_url, emu.email, "not-the-real-token-42", retry=policy())
    with pytest.raises(AuthError) as caught:
        wrong.check()
    assert "not-the-real-token-42" not in str(caught.value)
    assert "not-the-real-token-42" not in repr(wrong)


def test_e2e_poll_pages_resume_and_end_of_stream(emu: ZendeskEmulator) -> None:
    tickets = [emu.add_ticket(subject=f"Ticket {n}", status="open") for n in range(5)]
    connector = connect(emu, export_page_size=2)
    # select is not applied while polling: the engine filters unlinked items itself.
    pages = list(connector.poll(None, {"statuses": ["solved"]}))
    assert [[i.id for i in p.items] for p in pages] == [
        [str(tickets[0]["id"]), str(tickets[1]["id"])],
        [str(tickets[2]["id"]), str(tickets[3]["id"])],
        [str(tickets[4]["id"])]]
    assert all(i.comments is None for p in pages for i in p.items)
    assert emu_count(emu, 3, "GET", "/api/v2/incremental/tickets/cursor") == 3
    assert connector.requests_made == 3

    # Resuming from the first page's cursor continues right after it.
    resumed = list(connect(emu, export_page_size=2).poll(pages[0].cursor, {}))
    assert [i.fields["subject"] for p in resumed for i in p.items] == ["Ticket 2", "Ticket 3", "Ticket 4"]

    # From the final cursor only what changed since comes back, in one end-of-stream page.
    emu.update_ticket(tickets[1]["id"], priority="urgent")
    changed = list(connector.poll(pages[-1].cursor, {}))
    assert len(changed) == 1
    assert [(i.id, i.fields["priority"]) for i in changed[0].items] == [(str(tickets[1]["id"]), "urgent")]

    # Nothing new: one empty page, and the cursor does not go back to "everything".
    idle = list(connector.poll(changed[-1].cursor, {}))
    assert len(idle) == 1 and idle[0].items == [] and idle[0].cursor is not None


def test_e2e_normalization_of_emulated_ticket(emu: ZendeskEmulator) -> None:
    raw = emu.add_ticket(subject="VAT wrong", comment={"body": "March invoice has 19% VAT."},
                         priority="high", type="incident", tags=["vat", "billing"], status="open",
                         external_id="tb:jira:10001", due_at="2025-04-01T12:00:00Z",
                         custom_fields=[{"id": 360002, "value": "production"}])
    item = connect(emu).fetch(str(raw["id"]))
    assert item.key == f"#{raw['id']}" and item.url == f"{emu.base_url}/agent/tickets/{raw['id']}"
    assert item.fields["description"] == "March invoice has 19% VAT."
    assert item.fields["tags"] == ("billing", "vat")
    assert item.fields["custom_fields.360002"] == "production"
    assert item.fields["custom_fields.360001"] is None
    assert item.fields["due_at"] == "2025-04-01T12:00:00Z"
    assert item.marker == "jira:10001"
    assert item.version == raw["updated_at"]
    assert item.comments == ()  # the description comment is not a comment here


def test_e2e_comments_paginate_exclude_description_and_split_markers(emu: ZendeskEmulator) -> None:
    replies = [{"body": f"reply {n}", "public": n % 2 == 0} for n in range(104)]
    raw = emu.add_ticket(subject="Long thread", comment={"body": "The description"}, comments=replies)
    emu.add_comment(raw["id"], with_comment_marker("Fixed in build 42", "jira:555"), public=False)
    connector = connect(emu)
    polled = next(iter(connector.poll(None, {}))).items[0]
    item = connector.with_comments(polled)
    assert emu_count(emu, 2, "GET", f"/api/v2/tickets/{raw['id']}/comments") == 2  # 106 comments, 100 a page
    assert item.comments is not None and len(item.comments) == 105
    assert [c.body for c in item.comments[:2]] == ["reply 0", "reply 1"]
    assert [c.public for c in item.comments[:2]] == [True, False]
    assert all(c.body != "The description" for c in item.comments)
    mirror = item.comments[-1]
    assert (mirror.body, mirror.mirrored_from, mirror.public) == ("Fixed in build 42", "jira:555", False)
    assert mirror.id == str(emu.comments(raw["id"])[-1]["id"])
    assert connector.with_comments(item) is item  # already loaded: no request
    assert emu_count(emu, 2, "GET", f"/api/v2/tickets/{raw['id']}/comments") == 2


def test_e2e_create_with_marker_then_find_by_marker(emu: ZendeskEmulator) -> None:
    connector = connect(emu)
    result = connector.push(None, [Create({
        "subject": "Crash on photo upload", "description": "Steps: open app, pick photo.",
        "priority": "high", "type": "problem", "status": "open", "tags": ("mobile", "ios"),
        "custom_fields.360002": "staging"}, marker="jira:10001")])
    assert result.created and emu_count(emu, 1, "POST") == 1 and connector.requests_made == 1
    stored = emu.ticket(int(result.item_id))
    assert stored["external_id"] == "tb:jira:10001"
    assert (stored["priority"], stored["type"], stored["status"]) == ("high", "problem", "open")
    assert stored["tags"] == ["ios", "mobile"]
    assert {"id": 360002, "value": "staging"} in stored["custom_fields"]
    [first] = emu.comments(int(result.item_id))
    assert (first["body"], first["public"]) == ("Steps: open app, pick photo.", False)
    assert result.item is not None and result.item.marker == "jira:10001"

    found = connector.find_by_marker("jira:10001")
    assert found is not None and found.id == result.item_id and found.key == result.item_key
    assert connector.find_by_marker("jira:99999") is None


def test_e2e_create_then_fields_and_comments_coalesce(emu: ZendeskEmulator) -> None:
    result = connect(emu).push(None, [
        Create({"subject": "Sync me", "description": "Body"}, marker="github:7"),
        Update({"priority": "low"}),
        AddComment(with_comment_marker("first", "github:c1"), public=False, source_id="github:c1"),
        AddComment(with_comment_marker("second", "github:c2"), public=False, source_id="github:c2"),
    ])
    assert (emu_count(emu, 1, "POST"), emu_count(emu, 2, "PUT")) == (1, 2)
    ticket_id = int(result.item_id)
    assert emu.ticket(ticket_id)["priority"] == "low"
    comments = emu.comments(ticket_id)
    assert result.comment_ids == {"github:c1": str(comments[1]["id"]), "github:c2": str(comments[2]["id"])}


def test_e2e_update_and_two_comments_use_two_puts(emu: ZendeskEmulator) -> None:
    raw = emu.add_ticket(subject="Checkout 500", status="open")
    connector = connect(emu)
    result = connector.push(str(raw["id"]), [
        Update({"status": "pending", "tags": ("eng", "checkout"), "custom_fields.360001": "payments"}),
        AddComment(with_comment_marker("Engineering is on it", "jira:20001"), public=False,
                   source_id="jira:20001"),
        AddComment(with_comment_marker("Fix deployed", "jira:20002"), public=True, source_id="jira:20002"),
    ])
    assert emu_count(emu, 2, "PUT") == 2 and connector.requests_made == 2
    stored = emu.ticket(raw["id"])
    assert stored["status"] == "pending" and stored["tags"] == ["checkout", "eng"]
    assert {"id": 360001, "value": "payments"} in stored["custom_fields"]
    _, internal, public = emu.comments(raw["id"])
    assert result.comment_ids == {"jira:20001": str(internal["id"]), "jira:20002": str(public["id"])}
    assert internal["public"] is False  # an internal note stays internal
    assert public["public"] is True
    assert internal["body"] == "Engineering is on it\n\n[tb:jira:20001]"
    assert result.item is not None and result.item.fields["status"] == "pending"
    assert (result.item_id, result.item_key, result.created) == (str(raw["id"]), f"#{raw['id']}", False)


def test_e2e_internal_note_reads_back_internal_and_mirrored(emu: ZendeskEmulator) -> None:
    raw = emu.add_ticket(subject="Note me")
    connector = connect(emu)
    connector.push(str(raw["id"]), [AddComment(with_comment_marker("Internal only", "jira:1"),
                                               public=False, source_id="jira:1")])
    [note] = connector.fetch(str(raw["id"])).comments or ()
    assert (note.body, note.public, note.mirrored_from) == ("Internal only", False, "jira:1")


def test_e2e_missing_ticket_is_not_found(emu: ZendeskEmulator) -> None:
    connector = connect(emu)
    with pytest.raises(NotFound):
        connector.fetch("99999")
    with pytest.raises(NotFound):
        connector.push("99999", [Update({"status": "open"})])


def test_e2e_closed_ticket_update_is_permanent_with_zendesk_message(emu: ZendeskEmulator) -> None:
    raw = emu.add_ticket(subject="Old", status="solved")
    emu.update_ticket(raw["id"], status="closed")
    with pytest.raises(Permanent) as caught:
        connect(emu).push(str(raw["id"]), [Update({"priority": "high"})])
    assert not isinstance(caught.value, NotFound)
    assert caught.value.status == 422
    assert caught.value.message.endswith(
        "RecordInvalid: Record validation errors (status: Status: closed prevents ticket update)")


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_e2e_429_storm_waits_what_the_emulator_says(emu: ZendeskEmulator) -> None:
    for n in range(4):
        emu.add_ticket(subject=f"T{n}")
    clock = ManualClock()
    emu.budget = RateBudget(1, clock=clock)  # one request a minute, on a clock the test moves

    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        clock.now += seconds

    connector = connect(emu, export_page_size=1, retry=RetryPolicy(sleep=sleep, rng=NoJitter()))
    connector.client.http.gate.clock = clock
    seen: list[Item] = []
    for page in connector.poll(None, {}):
        seen.extend(page.items)
        clock.now += 10  # the engine commits each page before asking for the next
    assert [i.fields["subject"] for i in seen] == ["T0", "T1", "T2", "T3"]
    # Each page left remaining 0 with ratelimit-reset 60: the next waited the reset minus the 10 s spent
    # committing, and was not refused.
    assert waits == [50.0, 50.0, 50.0] and connector.client.http.gate.waits == waits
    emu_count(emu, 4, "GET")
    assert sum(1 for _, _, status in emu.request_log if status == 429) == 0


def test_e2e_429_storm_waits_what_the_emulator_says_when_the_budget_was_spent_elsewhere(
        emu: ZendeskEmulator) -> None:
    for n in range(4):
        emu.add_ticket(subject=f"T{n}")
    clock = ManualClock()
    emu.budget = RateBudget(1, clock=clock)  # one request a minute, on a clock the test moves

    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        clock.now += seconds

    connector = connect(emu, export_page_size=1, retry=RetryPolicy(sleep=sleep, rng=NoJitter()))
    connector.client.http.gate.reserve = -1  # blind to the budget headers, as a client sharing the budget is
    seen: list[Item] = []
    for page in connector.poll(None, {}):
        seen.extend(page.items)
        clock.now += 10  # the engine commits each page before asking for the next
    assert [i.fields["subject"] for i in seen] == ["T0", "T1", "T2", "T3"]
    # Each later page was refused once; Retry-After was 60 s minus the 10 s spent committing.
    assert waits == [50.0, 50.0, 50.0] and connector.client.http.gate.waits == []
    emu_count(emu, 7, "GET")
    assert sum(1 for _, _, status in emu.request_log if status == 429) == 3
