"""The Jira connector: normalization (recorded and own payloads), error handling with `responses`
mocks, and end to end against the Jira emulator through the `jira` package."""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
from responses import matchers

from ticketbridge.connectors.emulator_kit import RateBudget
from ticketbridge.connectors.errors import AuthError, NotFound, Permanent, RateLimited, Retryable, Unsure
from ticketbridge.connectors.http import RetryPolicy
from ticketbridge.connectors.jira.adf import text_to_adf
from ticketbridge.connectors.jira.connector import JiraConnector, marker_from_label, marker_label
from ticketbridge.connectors.jira.emulator import DEFAULT_WORKFLOW, JiraEmulator
from ticketbridge.sync.model import AddComment, Create, Transition, Update, with_comment_marker

from ..clock import FakeClock

BASE = "https://acme.atlassian.net"
API = f"{BASE}/rest/api/3"
EMAIL, TOKEN = "engineer@example.com", "jira-sandbox-token"
SECRET = "s3cret-jira-token-value"
DATA = Path(__file__).resolve().parent / "data" / "jira"
SHARED_FIXTURES = Path(os.environ.get("TICKETBRIDGE_SHARED")
                       or Path(__file__).resolve().parents[2].parent / "shared") / "reference" / "fixtures"
RECORDED = SHARED_FIXTURES / "jira"
FIELDS = [
    {"id": "summary", "name": "Summary", "custom": False, "schema": {"type": "string"}},
    {"id": "customfield_10043", "name": "Severity", "custom": True,
     "schema": {"type": "option", "custom": "com.atlassian.jira.plugin.system.customfieldtypes:select"}},
    {"id": "customfield_10050", "name": "Components", "custom": True,
     "schema": {"type": "array", "items": "option",
                "custom": "com.atlassian.jira.plugin.system.customfieldtypes:multiselect"}},
    {"id": "customfield_10052", "name": "Notes", "custom": True,
     "schema": {"type": "string", "custom": "com.atlassian.jira.plugin.system.customfieldtypes:textarea"}},
]


class NoJitter(random.Random):
    """Makes RetryPolicy wait exactly what the tracker asked for, so tests can compare."""

    def uniform(self, a: float, b: float) -> float:
        return a


def policy(waits: list[float] | None = None, attempts: int = 8) -> RetryPolicy:
    record = waits if waits is not None else []
    return RetryPolicy(attempts=attempts, sleep=record.append, rng=NoJitter())


def mocked(**kwargs: Any) -> JiraConnector:
    return JiraConnector("jira", BASE, "bot@acme.example", SECRET, retry=kwargs.pop("retry", policy()), **kwargs)


def recorded(name: str) -> Any:
    if not RECORDED.is_dir():
        pytest.skip(f"recorded Jira payloads not available: {RECORDED} is absent "
                    "(set TICKETBRIDGE_SHARED to the shared directory)")
    return json.loads((RECORDED / name).read_text(encoding="utf-8"))


def sent_body() -> Any:
    body = responses.calls[-1].request.body
    assert body is not None
    return json.loads(body)


def own(name: str) -> Any:
    return json.loads((DATA / name).read_text(encoding="utf-8"))


# -- normalization: recorded real payloads --------------------------------------------------------

def test_recorded_cloud_webhook_issue_normalizes() -> None:
    issue = recorded("webhook_cloud_issue_created.json")["issue"]
    item = mocked().normalize(issue, with_comments=True)
    assert (item.tracker, item.id, item.key) == ("jira", "10040", "TES-41")
    assert item.url == f"{BASE}/browse/TES-41"
    assert item.updated_at == datetime(2019, 2, 16, 3, 1, 52, 971000, tzinfo=UTC)
    assert item.version == "2019-02-15T19:01:52.971-0800"
    f = item.fields
    assert (f["summary"], f["status"], f["priority"], f["issuetype"]) == (
        "Unit test summary", "To Do", "High", "Story")
    assert f["description"] == "Unit test description, not that long"  # v2 shape: a plain string
    assert f["labels"] == ("test-label",)
    assert f["assignee"] is None and f["resolution"] is None
    assert f["project"] == "TES"
    assert f["customfield_10022"] == "0|i00067:"
    assert f["customfield_10024"] == ()
    assert f["customfield_10030"] is None
    assert "customfield_10018" not in f  # an object without a display value cannot be synced
    assert item.comments is None  # webhooks do not embed comments: not loaded
    assert item.marker is None


def test_recorded_server_v2_issue_normalizes() -> None:
    issue = recorded("rest_issue_get_200.json")
    item = mocked().normalize(issue, with_comments=True)
    assert (item.id, item.key) == ("10002", "SAMPLEPROJECT-1")
    assert item.updated_at == datetime(2011, 12, 13, 21, 26, 6, 30000, tzinfo=UTC)
    assert item.fields["summary"] == "Sample Issue"
    assert item.fields["description"] is None
    assert item.fields["priority"] == "Major"
    assert item.fields["assignee"] == "admin"  # Server identifies users by name
    assert item.fields["labels"] == ()
    assert item.comments == ()


def test_recorded_comment_page_normalizes() -> None:
    page = recorded("rest_issue_comments_page.json")
    comments = mocked()._comments("10002", page)
    assert comments is not None and len(comments) == len(page["comments"])
    first = comments[0]
    assert first.id == str(page["comments"][0]["id"])
    assert first.body == page["comments"][0]["body"]
    assert first.author == page["comments"][0]["author"]["displayName"]


# -- normalization: own v3 payloads ---------------------------------------------------------------

@responses.activate
def test_v3_issue_normalizes_custom_fields_marker_and_all_comments() -> None:
    issue = own("issue_v3_custom_fields.json")
    third = {"id": "20003", "author": {"displayName": "Cy"}, "created": "2026-01-31T13:02:00.000+0000",
             "body": text_to_adf("late comment")}
    responses.get(f"{API}/issue/10577/comment", json={"comments": [third], "startAt": 2, "total": 3},
                  match=[matchers.query_param_matcher({"startAt": "2", "maxResults": "100",
                                                       "orderBy": "created"})])
    item = mocked().normalize(issue, with_comments=True)
    f = item.fields
    assert item.id == "10577" and item.key == "ENG-77"
    assert item.updated_at == datetime(2026, 1, 31, 13, 5, 42, 123000, tzinfo=UTC)
    assert item.version == "2026-01-31T14:05:42.123+0100"
    assert f["description"] == "Steps:\nopen cart\n\n- EU only\n- @Ana saw it 🔥"
    assert f["labels"] == ("eu", "payments")  # the marker label is hidden
    assert item.marker == "zendesk:4711"
    assert f["assignee"] == "5b10ac8d82e05b22cc7d4ef5"
    assert f["customfield_10042"] == "4711"
    assert f["customfield_10043"] == "Sev2"
    assert f["customfield_10050"] == ("API", "Web")
    assert f["customfield_10044"] == "2026-02-01T10:00:00.000+0000"
    assert f["customfield_10051"] == "2026-02-03"
    assert f["customfield_10052"] == "multi-line text"
    assert "customfield_10053" not in f
    assert f["customfield_10054"] is None
    assert item.comments is not None
    assert [c.id for c in item.comments] == ["20001", "20002", "20003"]
    mirrored, internal, late = item.comments
    assert (mirrored.body, mirrored.mirrored_from, mirrored.public) == ("Customer says hi", "zendesk:9001", True)
    assert (internal.public, internal.author, internal.mirrored_from) == (False, "Bo", None)
    assert late.body == "late comment"


def test_a_comment_is_normalized_anew_when_edited_and_reused_while_not(monkeypatch: pytest.MonkeyPatch) -> None:
    connector = mocked()
    raw = {"id": "7", "author": {"displayName": "Bo"}, "created": "2026-01-31T13:02:00.000+0000",
           "updated": "2026-01-31T13:02:00.000+0000", "body": text_to_adf("first words")}
    [first] = connector._comments("10", {"comments": [raw], "total": 1}) or ()
    [again] = connector._comments("10", {"comments": [dict(raw)], "total": 1}) or ()
    assert again is first  # the same version of the comment: not converted again
    edited = {**raw, "updated": "2026-01-31T14:00:00.000+0000", "body": text_to_adf("second words")}
    hidden = {**edited, "visibility": {"type": "role", "value": "Developers"}}
    [after_edit] = connector._comments("10", {"comments": [edited], "total": 1}) or ()
    [after_hiding] = connector._comments("10", {"comments": [hidden], "total": 1}) or ()
    assert (first.body, after_edit.body, after_edit.public, after_hiding.public) == (
        "first words", "second words", True, False)

    monkeypatch.setattr("ticketbridge.connectors.jira.connector._SEEN_COMMENTS", 20)
    for n in range(100):
        connector._comments("10", {"comments": [{**raw, "id": str(n)}], "total": 1})
    assert len(connector._seen_comments) <= 20  # bounded: the oldest go


@pytest.mark.parametrize("label", ["tb-", "tb-Zendesk-1", "tb-zendesk", "zendesk-1", "tb-zendesk-"])
def test_labels_that_are_not_our_marker_give_no_marker(label: str) -> None:
    assert marker_from_label(label) is None


def test_marker_label_round_trips_and_allows_dashes_in_the_id() -> None:
    assert marker_label("zendesk:123") == "tb-zendesk-123"
    assert marker_from_label(marker_label("git_hub:acme-web-42")) == "git_hub:acme-web-42"
    with pytest.raises(ValueError):
        marker_label("zendesk:has space")


# -- HTTP errors and retries (responses mocks) ----------------------------------------------------

@responses.activate
def test_401_is_auth_error_without_credentials_in_message() -> None:
    responses.get(f"{API}/myself", status=401,
                  json={"errorMessages": ["Client must be authenticated to access this resource."]})
    with pytest.raises(AuthError) as caught:
        mocked().check()
    assert "Client must be authenticated" in str(caught.value)
    assert SECRET not in str(caught.value) and "Basic" not in str(caught.value)


@responses.activate
def test_404_is_not_found_with_jira_message() -> None:
    responses.get(f"{API}/field", json=FIELDS)
    responses.get(f"{API}/issue/999", status=404,
                  json={"errorMessages": ["Issue does not exist or you do not have permission to see it."],
                        "errors": {}})
    with pytest.raises(NotFound, match="Issue does not exist"):
        mocked().fetch("999")


@responses.activate
def test_429_waits_exactly_retry_after_then_succeeds() -> None:
    responses.get(f"{API}/myself", status=429, json={"errorMessages": ["Rate limit exceeded."]},
                  headers={"Retry-After": "7", "RateLimit-Reason": "jira-burst-based"})
    responses.get(f"{API}/myself", json={"accountId": "x", "timeZone": "UTC"})
    waits: list[float] = []
    connector = mocked(retry=policy(waits))
    connector.check()
    assert waits == [7.0]
    assert connector.requests_made == 2


@responses.activate
def test_429_that_never_ends_raises_rate_limited() -> None:
    responses.get(f"{API}/myself", status=429, json={"errorMessages": ["Rate limit exceeded."]},
                  headers={"Retry-After": "3"})
    waits: list[float] = []
    with pytest.raises(RateLimited) as caught:
        mocked(retry=policy(waits, attempts=3)).check()
    assert caught.value.retry_after == 3.0 and waits == [3.0, 3.0]


@pytest.mark.parametrize("status, body, message", [
    (400, {"errorMessages": [], "errors": {"customfield_10043": "Specify a valid value for Severity"}},
     "customfield_10043: Specify a valid value for Severity"),
    (400, {"errorMessages": ["one of 'fields' or 'update' required"], "errors": {}},
     "one of 'fields' or 'update' required"),
    (422, {"errorMessages": ["Workflow configuration problem"], "errors": {}}, "Workflow configuration problem"),
])
@responses.activate
def test_client_errors_are_permanent_with_jira_message(status: int, body: Any, message: str) -> None:
    responses.get(f"{API}/field", json=FIELDS)
    responses.put(f"{API}/issue/10001", status=status, json=body)
    connector = mocked()
    with pytest.raises(Permanent) as caught:
        connector.push("10001", [Update({"customfield_10043": "Sev9"})])
    assert message in caught.value.message
    assert caught.value.status == status
    assert len([c for c in responses.calls if c.request.method == "PUT"]) == 1  # never retried


@responses.activate
def test_5xx_on_a_read_is_retried_with_backoff() -> None:
    responses.get(f"{API}/myself", status=503, json={"errorMessages": ["Service unavailable"]})
    responses.get(f"{API}/myself", json={"accountId": "x", "timeZone": "UTC"})
    waits: list[float] = []
    mocked(retry=policy(waits)).check()
    assert len(waits) == 1


@responses.activate
def test_create_5xx_is_unsure_and_not_retried() -> None:
    responses.get(f"{API}/field", json=FIELDS)
    responses.post(f"{API}/issue", status=503, json={"errorMessages": ["Service unavailable"]})
    with pytest.raises(Unsure):
        mocked().push(None, [Create({"project": "ENG", "issuetype": "Bug", "summary": "x"}, "zendesk:1")])
    assert len([c for c in responses.calls if c.request.method == "POST"]) == 1


@responses.activate
def test_comment_timeout_is_unsure_and_not_retried() -> None:
    responses.post(f"{API}/issue/10001/comment", body=requests.ReadTimeout("read timed out"))
    connector = mocked()
    connector._known["10001"] = ("ENG-1", ())
    with pytest.raises(Unsure):
        connector.push("10001", [AddComment("hi", True, "zendesk:5")])
    assert len(responses.calls) == 1


@responses.activate
def test_create_connection_refused_is_retried_because_jira_never_saw_it() -> None:
    responses.get(f"{API}/field", json=FIELDS)
    responses.post(f"{API}/issue", body=requests.ConnectionError("connection refused"))
    responses.post(f"{API}/issue", status=201, json={"id": "10010", "key": "ENG-10", "self": "x"})
    result = mocked().push(None, [Create({"project": "ENG", "issuetype": "Bug", "summary": "x"}, "zendesk:1")])
    assert (result.item_id, result.item_key, result.created) == ("10010", "ENG-10", True)


@responses.activate
def test_read_timeouts_are_retryable_then_give_up() -> None:
    responses.get(f"{API}/myself", body=requests.ReadTimeout("read timed out"))
    with pytest.raises(Retryable, match="timed out"):
        mocked(retry=policy(attempts=2)).check()


@responses.activate
def test_create_sends_jira_shapes_marker_label_and_property() -> None:
    responses.get(f"{API}/field", json=FIELDS)
    responses.post(f"{API}/issue", status=201, json={"id": "10010", "key": "ENG-10", "self": "x"})
    mocked().push(None, [Create({
        "project": "ENG", "issuetype": "Bug", "summary": "Broken", "priority": "High",
        "description": "line 1\nline 2", "labels": ("b", "a"), "assignee": "acc-1",
        "customfield_10043": "Sev2", "customfield_10050": ("Web", "API"), "customfield_10052": "note",
        "customfield_10042": "4711"}, "zendesk:4711")])
    sent = sent_body()
    fields = sent["fields"]
    assert fields["project"] == {"key": "ENG"} and fields["issuetype"] == {"name": "Bug"}
    assert fields["priority"] == {"name": "High"} and fields["assignee"] == {"accountId": "acc-1"}
    assert fields["description"] == text_to_adf("line 1\nline 2")
    assert fields["labels"] == ["a", "b", "tb-zendesk-4711"]
    assert fields["customfield_10043"] == {"value": "Sev2"}
    assert fields["customfield_10050"] == [{"value": "Web"}, {"value": "API"}]
    assert fields["customfield_10052"] == text_to_adf("note")
    assert fields["customfield_10042"] == "4711"
    assert sent["properties"] == [{"key": "ticketbridge", "value": {"source": "zendesk:4711"}}]


@responses.activate
def test_poll_writes_the_cursor_minus_lookback_in_the_users_time_zone() -> None:
    responses.get(f"{API}/field", json=FIELDS)
    responses.get(f"{API}/myself", json={"accountId": "x", "timeZone": "America/Los_Angeles"})
    responses.post(f"{API}/search/jql", json={"issues": [], "isLast": True})
    pages = list(mocked(lookback_seconds=120).poll("2026-01-31T13:05:42.123+0000", {"jql": "project = ENG"}))
    sent = sent_body()
    # 13:05:42 UTC - 2 min = 13:03:42 UTC = 05:03 in Los Angeles (PST), floored to the minute.
    assert sent["jql"] == '(project = ENG) AND updated >= "2026-01-31 05:03" ORDER BY updated ASC, key ASC'
    assert "comment" in sent["fields"] and "customfield_10043" in sent["fields"]
    assert [p.cursor for p in pages] == ["2026-01-31T13:05:42.123+0000"]  # nothing new: cursor kept


@responses.activate
def test_first_poll_without_jql_is_bounded() -> None:
    responses.get(f"{API}/field", json=FIELDS)
    responses.post(f"{API}/search/jql", json={"issues": []})
    list(mocked().poll(None, {}))
    assert sent_body()["jql"] == (
        'updated >= "1970-01-01 00:00" ORDER BY updated ASC, key ASC')


def test_building_a_connector_does_no_io() -> None:
    connector = JiraConnector("jira", "http://127.0.0.1:9", EMAIL, TOKEN)
    assert connector.requests_made == 0 and connector.client._jira is None


# -- end to end against the emulator --------------------------------------------------------------

START = datetime(2026, 1, 31, 13, 0, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture(scope="module")
def server(clock: FakeClock) -> Iterator[JiraEmulator]:
    with JiraEmulator(clock=clock) as emulator:
        yield emulator


@pytest.fixture()
def emu(server: JiraEmulator, clock: FakeClock) -> JiraEmulator:
    server.reset()
    clock.now = datetime(2026, 1, 31, 13, 0, 0, tzinfo=UTC)
    return server


def connect(emu: JiraEmulator, **kwargs: Any) -> JiraConnector:
    return JiraConnector("jira", emu.base_url, EMAIL, TOKEN, retry=kwargs.pop("retry", policy()), **kwargs)


def test_poll_follows_pages_then_resumes_from_cursor(emu: JiraEmulator, clock: FakeClock) -> None:
    for n in range(5):
        emu.create_issue(summary=f"issue {n}")
        clock.advance(minutes=5)
    connector = connect(emu, page_size=2)
    pages = list(connector.poll(None, {"jql": "project = ENG"}))
    assert [len(p.items) for p in pages] == [2, 2, 1]
    assert [i.key for p in pages for i in p.items] == ["ENG-1", "ENG-2", "ENG-3", "ENG-4", "ENG-5"]
    assert [p.cursor for p in pages] == ["2026-01-31T13:05:00.000+0000", "2026-01-31T13:15:00.000+0000",
                                         "2026-01-31T13:20:00.000+0000"]  # max seen so far
    versions = {(i.id, i.version) for p in pages for i in p.items}

    clock.advance(minutes=30)
    emu.edit("ENG-2", summary="changed")
    again = list(connector.poll(pages[-1].cursor, {"jql": "project = ENG"}))
    # ENG-5 comes back through the look-back (same version: the engine drops it); ENG-2 is new.
    assert [i.key for p in again for i in p.items] == ["ENG-5", "ENG-2"]
    fresh = [i for p in again for i in p.items if (i.id, i.version) not in versions]
    assert [(i.key, i.fields["summary"]) for i in fresh] == [("ENG-2", "changed")]
    assert again[-1].cursor == "2026-01-31T13:55:00.000+0000"


def test_lookback_redelivers_a_recent_issue_with_the_same_version(emu: JiraEmulator, clock: FakeClock) -> None:
    emu.create_issue(summary="older")
    clock.advance(minutes=10)
    emu.create_issue(summary="recent")
    connector = connect(emu, lookback_seconds=120)
    first = [i for p in connector.poll(None, {"jql": "project = ENG"}) for i in p.items]
    cursor = "2026-01-31T13:10:00.000+0000"
    clock.advance(seconds=30)
    second = [i for p in connector.poll(cursor, {"jql": "project = ENG"}) for i in p.items]
    # The issue updated within the look-back comes again, unchanged, so id+version de-duplicates it;
    # the one 10 minutes older does not.
    assert [i.fields["summary"] for i in second] == ["recent"]
    assert second[0].version == first[1].version and connector.dedupe_versions


def test_normalization_from_emulator_hides_marker_label(emu: JiraEmulator) -> None:
    connector = connect(emu)
    result = connector.push(None, [Create({"project": "ENG", "issuetype": "Bug", "summary": "Printer on fire",
                                           "description": "It burns.\n\nSend help.", "priority": "High",
                                           "labels": ("printer",), "customfield_10043": "Sev1"},
                                          "zendesk:77")])
    raw = emu.issue(result.item_id)
    assert "tb-zendesk-77" in raw["fields"]["labels"]
    item = connector.fetch(result.item_id)
    assert item.id == result.item_id and item.key == "ENG-1" == result.item_key
    assert item.fields["labels"] == ("printer",)
    assert item.marker == "zendesk:77"
    assert item.fields["description"] == "It burns.\n\nSend help."
    assert (item.fields["status"], item.fields["priority"], item.fields["issuetype"]) == ("To Do", "High", "Bug")
    assert item.fields["customfield_10043"] == "Sev1"
    assert item.comments == ()
    assert item.url == f"{emu.base_url}/browse/ENG-1"


def test_create_with_marker_then_find_by_marker(emu: JiraEmulator) -> None:
    connector = connect(emu)
    assert connector.find_by_marker("zendesk:501") is None
    before = connector.requests_made
    result = connector.push(None, [Create({"project": "ENG", "issuetype": "Task", "summary": "from zd"},
                                          "zendesk:501")])
    assert connector.requests_made - before == 1  # one POST, no re-fetch
    assert result.created
    found = connector.find_by_marker("zendesk:501")
    assert found is not None and found.id == result.item_id and found.marker == "zendesk:501"
    assert connector.find_by_marker("zendesk:502") is None
    assert emu.issue(result.item_id)["id"] == result.item_id


def test_update_fields_including_custom_option_keeps_marker_label(emu: JiraEmulator) -> None:
    connector = connect(emu)
    created = connector.push(None, [Create({"project": "ENG", "issuetype": "Bug", "summary": "s",
                                            "labels": ("old",)}, "zendesk:9")])
    fresh = connect(emu)  # knows nothing about the issue: must still keep the marker label
    fresh.push(created.item_id, [Update({"summary": "new summary", "customfield_10043": "Sev3",
                                         "customfield_10046": "on track", "labels": ("new", "x"),
                                         "description": "a\nb"})])
    item = fresh.fetch(created.item_id)
    assert item.fields["summary"] == "new summary"
    assert item.fields["customfield_10043"] == "Sev3"
    assert item.fields["customfield_10046"] == "on track"
    assert item.fields["labels"] == ("new", "x")
    assert item.fields["description"] == "a\nb"
    assert item.marker == "zendesk:9"
    assert "tb-zendesk-9" in emu.issue(created.item_id)["fields"]["labels"]


def test_update_with_bad_option_is_permanent_with_jiras_message(emu: JiraEmulator) -> None:
    connector = connect(emu)
    created = connector.push(None, [Create({"project": "ENG", "issuetype": "Bug", "summary": "s"}, "zendesk:1")])
    with pytest.raises(Permanent, match="Specify a valid value for Severity"):
        connector.push(created.item_id, [Update({"customfield_10043": "Sev9"})])


def test_create_missing_summary_is_permanent_with_jiras_message(emu: JiraEmulator) -> None:
    with pytest.raises(Permanent, match="You must specify a summary of the issue"):
        connect(emu).push(None, [Create({"project": "ENG", "issuetype": "Bug"}, "zendesk:1")])


def test_transition_direct_costs_two_requests(emu: JiraEmulator) -> None:
    connector = connect(emu)
    issue = emu.create_issue(summary="t")
    connector.fetch(issue["id"])
    before = connector.requests_made
    result = connector.push(issue["id"], [Transition("in progress")])
    assert connector.requests_made - before == 2
    assert result.item_key == issue["key"]
    assert emu.issue(issue["id"])["fields"]["status"]["name"] == "In Progress"


def test_new_issues_of_a_kind_learn_their_start_once_then_transition_without_reads(emu: JiraEmulator) -> None:
    connector = connect(emu)

    def create(number: int, status: str, issuetype: str = "Bug") -> int:
        before = connector.requests_made
        result = connector.push(None, [Create({"project": "ENG", "issuetype": issuetype, "summary": f"s{number}"},
                                              f"zendesk:{number}"), Transition(status)])
        assert emu.issue(result.item_id)["fields"]["status"]["name"] == status
        return connector.requests_made - before

    assert create(1, "In Progress") == 4  # POST issue, GET its status, GET transitions, POST transition
    assert create(2, "In Progress") == 2  # POST issue, POST transition: the start is known
    assert create(3, "Done") == 2
    assert create(4, "To Do") == 1  # already where it starts
    assert create(5, "In Progress", "Task") == 4  # another kind learns its own start


def test_a_learned_transition_a_new_issue_refuses_is_forgotten_and_the_workflow_walked(emu: JiraEmulator) -> None:
    connector = connect(emu)
    connector.push(None, [Create({"project": "ENG", "issuetype": "Bug", "summary": "a"}, "zendesk:1"),
                          Transition("In Progress")])
    # The workflow changed since (an admin edited it): the learned transition id is no longer valid.
    (kind, (start, _)), = connector._starts.items()
    connector._starts[kind] = (start, [{"id": "999", "name": "Gone", "to": {"name": "In Progress"}}])
    result = connector.push(None, [Create({"project": "ENG", "issuetype": "Bug", "summary": "b"}, "zendesk:2"),
                                   Transition("In Progress")])
    assert emu.issue(result.item_id)["fields"]["status"]["name"] == "In Progress"
    assert kind not in connector._starts  # learned afresh by the next creation of the kind


def test_transition_walks_a_multi_step_path(emu: JiraEmulator) -> None:
    connector = connect(emu)
    issue = emu.create_issue(summary="t")
    connector.push(issue["id"], [Transition("In Review")])  # To Do -> In Progress -> In Review
    assert emu.issue(issue["id"])["fields"]["status"]["name"] == "In Review"
    connector.push(issue["id"], [Transition("To Do")])  # In Review -> In Progress -> To Do
    assert emu.issue(issue["id"])["fields"]["status"]["name"] == "To Do"


def test_transition_to_done_through_a_workflow_without_a_shortcut() -> None:
    workflow = {"statuses": DEFAULT_WORKFLOW["statuses"],
                "transitions": [t for t in DEFAULT_WORKFLOW["transitions"] if t["name"] != "Close as won't do"]}
    with JiraEmulator(workflow=workflow) as emu:
        connector = connect(emu)
        issue = emu.create_issue(summary="t")
        connector.push(issue["id"], [Transition("Done")])
        fields = emu.issue(issue["id"])["fields"]
        assert fields["status"]["name"] == "Done" and fields["resolution"]["name"] == "Done"
        assert connector.fetch(issue["id"]).fields["resolution"] == "Done"


def test_transition_unreachable_is_permanent(emu: JiraEmulator) -> None:
    connector = connect(emu)
    issue = emu.create_issue(summary="t")
    with pytest.raises(Permanent, match="no workflow path from 'To Do' to 'Blocked'; available: "):
        connector.push(issue["id"], [Transition("Blocked")])
    assert emu.issue(issue["id"])["fields"]["status"]["name"] == "To Do"  # nothing moved


def test_transition_with_dead_end_status_is_permanent() -> None:
    workflow = {"statuses": DEFAULT_WORKFLOW["statuses"],
                "transitions": [{"name": "Finish", "from": "To Do", "to": "Done"}]}
    with JiraEmulator(workflow=workflow) as emu:
        connector = connect(emu)
        issue = emu.create_issue(summary="t")
        connector.push(issue["id"], [Transition("Done")])
        with pytest.raises(Permanent, match="no workflow path from 'Done' to 'In Progress'; available: none"):
            connector.push(issue["id"], [Transition("In Progress")])


def test_add_comment_returns_ids_and_marker_round_trips(emu: JiraEmulator) -> None:
    connector = connect(emu, internal_visibility={"type": "role", "value": "Developers"})
    created = connector.push(None, [
        Create({"project": "ENG", "issuetype": "Bug", "summary": "c"}, "zendesk:3"),
        AddComment(with_comment_marker("Hello from support\nline two", "zendesk:301"), True, "zendesk:301"),
        AddComment(with_comment_marker("agents only", "zendesk:302"), False, "zendesk:302"),
    ])
    assert set(created.comment_ids) == {"zendesk:301", "zendesk:302"}
    item = connector.fetch(created.item_id)
    assert item.comments is not None
    by_id = {c.id: c for c in item.comments}
    public = by_id[created.comment_ids["zendesk:301"]]
    internal = by_id[created.comment_ids["zendesk:302"]]
    assert (public.body, public.mirrored_from, public.public) == ("Hello from support\nline two",
                                                                  "zendesk:301", True)
    assert (internal.body, internal.mirrored_from, internal.public) == ("agents only", "zendesk:302", False)
    assert connector.with_comments(item) is item


def test_poll_loads_comments_beyond_the_embedded_page(emu: JiraEmulator) -> None:
    issue = emu.create_issue(summary="busy")
    for n in range(3):
        emu.add_comment(issue["id"], f"comment {n}", author="Ana")
    connector = connect(emu)
    (item,) = [i for p in connector.poll(None, {"jql": "project = ENG"}) for i in p.items]
    assert item.comments is not None
    assert [c.body for c in item.comments] == ["comment 0", "comment 1", "comment 2"]
    assert {c.author for c in item.comments} == {"Ana"}


def test_429_storm_waits_what_jira_asked(emu: JiraEmulator) -> None:
    ticks = [0.0]
    saved = emu.budget
    emu.budget = RateBudget(3, clock=lambda: ticks[0])
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        ticks[0] += seconds

    try:
        connector = connect(emu, retry=RetryPolicy(attempts=10, sleep=sleep, rng=NoJitter()))
        asked: list[float] = []
        connector.client.jira._session.hooks["response"].append(
            lambda r, *a, **k: asked.append(float(r.headers["Retry-After"])) if r.status_code == 429 else None)
        for n in range(4):
            emu.create_issue(summary=f"n{n}")
        pages = list(connector.poll(None, {"jql": "project = ENG"}))
        connector.push(pages[0].items[0].id, [Update({"summary": "after storm"})])
        connector.push(pages[0].items[0].id, [Transition("In Progress")])
    finally:
        emu.budget = saved
    assert sleeps and sleeps == asked
    assert connector.client.retry.rate_limit_waits == len(asked)
    assert emu.issue(pages[0].items[0].id)["fields"]["summary"] == "after storm"


def test_wrong_token_is_auth_error(emu: JiraEmulator) -> None:
    connector = JiraConnector("jira", emu.base_url, EMAIL, "wrong-token", retry=policy())
    with pytest.raises(AuthError) as caught:
        connector.check()
    assert "wrong-token" not in str(caught.value)
    assert connector.requests_made == 1


def test_missing_issue_is_not_found(emu: JiraEmulator) -> None:
    with pytest.raises(NotFound, match="Issue does not exist"):
        connect(emu).fetch("99999")


def test_requests_per_operation(emu: JiraEmulator) -> None:
    connector = connect(emu)
    connector.check()
    list(connector.poll(None, {"jql": "project = ENG"}))  # warms the field cache

    def cost(*ops: Any, item_id: str | None = None) -> int:
        before = connector.requests_made
        connector.push(item_id, list(ops))
        return connector.requests_made - before

    assert cost(Create({"project": "ENG", "issuetype": "Bug", "summary": "x"}, "zendesk:1")) == 1
    issue_id = emu.issues()[0]["id"]
    assert cost(Update({"summary": "y"}), item_id=issue_id) == 1
    assert cost(Transition("In Progress"), item_id=issue_id) == 2
    assert cost(AddComment("hi", True, "zendesk:c"), item_id=issue_id) == 1
    before = connector.requests_made
    list(connector.poll(None, {"jql": "project = ENG"}))
    assert connector.requests_made - before == 1


def test_fetch_selected_reads_an_issue_within_the_jql_with_one_search(emu: JiraEmulator) -> None:
    shared = emu.create_issue(summary="shared", labels=["planning"])
    private = emu.create_issue(summary="private", labels=["backend"])
    connector = connect(emu)
    select = {"jql": "project = ENG AND labels = planning"}
    connector.fetch(shared["id"])  # the field metadata is read once and cached
    before = connector.requests_made
    item, matches = connector.fetch_selected(shared["id"], select)
    assert matches and item.key == shared["key"] and item.comments == ()
    assert connector.requests_made - before == 1
    item, matches = connector.fetch_selected(private["id"], select)
    assert not matches and item.key == private["key"]  # read all the same, so the engine can name it
    assert connector.fetch_selected(private["id"], {})[1]  # no JQL: everything matches
    with pytest.raises(NotFound):
        connector.fetch_selected("99999", select)
