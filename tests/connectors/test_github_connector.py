"""The GitHub connector: normalization (recorded and own payloads), polling, writes and error handling
with `responses` mocks, and end to end against the GitHub emulator."""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from responses import matchers

from ticketbridge.connectors.errors import AuthError, NotFound, Permanent, RateLimited, Unsure
from ticketbridge.connectors.github.connector import (
    GitHubConnector,
    marker_comment,
    split_body_marker,
    with_body_marker,
)
from ticketbridge.connectors.http import RetryPolicy
from ticketbridge.sync.model import AddComment, Create, Item, Transition, Update, with_comment_marker

from ..clock import FakeClock

API = "https://api.github.com"
TOKEN = "ghp_s3cretTokenValueForTests0000"
DATA = Path(__file__).resolve().parent / "data" / "github"
SHARED_FIXTURES = Path(os.environ.get("TICKETBRIDGE_SHARED")
                       or Path(__file__).resolve().parents[2].parent / "shared") / "reference" / "fixtures"
RECORDED = SHARED_FIXTURES / "github"
ISSUES = f"{API}/repos/acme/app/issues"
MARKED = "Customer reports smoke.\r\n\r\nSteps: turn it on."


class NoJitter(random.Random):
    """Makes RetryPolicy wait exactly what the tracker asked for, so tests can compare."""

    def uniform(self, a: float, b: float) -> float:
        return a


def policy(waits: list[float] | None = None, attempts: int = 4) -> RetryPolicy:
    record = waits if waits is not None else []
    return RetryPolicy(attempts=attempts, sleep=record.append, rng=NoJitter())


def mocked(repos: tuple[str, ...] = ("acme/app",), **kwargs: Any) -> GitHubConnector:
    return GitHubConnector("github", API, TOKEN, repos=repos, retry=kwargs.pop("retry", policy()), **kwargs)


def recorded(name: str) -> Any:
    if not RECORDED.is_dir():
        pytest.skip(f"recorded GitHub payloads not available: {RECORDED} is absent "
                    "(set TICKETBRIDGE_SHARED to the shared directory)")
    return json.loads((RECORDED / name).read_text(encoding="utf-8"))


def recorded_headers(name: str, *keep: str) -> dict[str, str]:
    exchange = recorded(name)
    wanted = {k.lower() for k in keep}
    return {k: v for k, v in exchange["response"]["headers"] if k.lower() in wanted}


def own(name: str) -> Any:
    return json.loads((DATA / name).read_text(encoding="utf-8"))


def issue(number: int, updated: str, *, iid: int | None = None, body: str | None = None, pr: bool = False,
          labels: tuple[str, ...] = (), comments: int = 0, created: str = "2026-01-30T09:00:00Z",
          repo: str = "acme/app", state: str = "open") -> dict[str, Any]:
    raw: dict[str, Any] = {
        "url": f"{API}/repos/{repo}/issues/{number}", "repository_url": f"{API}/repos/{repo}",
        "html_url": f"https://github.com/{repo}/issues/{number}", "id": iid or 3_000_000 + number,
        "number": number, "title": f"issue {number}", "user": {"login": "octocat"},
        "labels": [{"name": name} for name in labels], "state": state, "assignees": [], "milestone": None,
        "comments": comments, "created_at": created, "updated_at": updated, "closed_at": None,
        "body": body, "state_reason": None,
    }
    if pr:
        raw["pull_request"] = {"url": f"{API}/repos/{repo}/pulls/{number}"}
    return raw


def link(url: str) -> dict[str, str]:
    return {"Link": f'<{url}>; rel="next", <{url}>; rel="last"'}


def query(call_index: int) -> dict[str, list[str]]:
    return parse_qs(urlsplit(str(responses.calls[call_index].request.url)).query)


def sent(call_index: int = -1) -> Any:
    body = responses.calls[call_index].request.body
    assert body is not None
    return json.loads(body)


def items_of(pages: Any) -> list[Item]:
    return [item for page in pages for item in page.items]


# -- normalization: recorded real payloads --------------------------------------------------------

def test_recorded_issue_normalizes() -> None:
    raw = recorded("rest_issue_get_200.json")
    item = mocked(repos=("PyGithub/PyGithub",)).normalize(raw)
    assert item.id == item.key == "PyGithub/PyGithub#28"
    assert item.url == "https://github.com/PyGithub/PyGithub/issues/28"
    assert item.fields["title"] == "Issue created by PyGithub"
    assert item.fields["body"] == "Body edited by PyGithub\n"
    assert (item.fields["state"], item.fields["state_reason"]) == ("closed", "completed")
    assert item.fields["labels"] == ("bug", "question")
    assert item.fields["assignees"] == ("jacquev6",)
    assert item.fields["milestone"] == "Version 1.4"
    assert item.fields["user"] == "jacquev6"
    assert item.fields["issue_id"] == 4653757
    assert item.fields["repo"] == "PyGithub/PyGithub"
    assert (item.fields["created_at"], item.fields["closed_at"]) == ("2012-05-19T10:38:23Z", "2012-05-26T14:59:33Z")
    assert item.updated_at == datetime(2025, 8, 15, 19, 35, 40, tzinfo=UTC)
    assert item.version.startswith("2025-08-15T19:35:40Z/")
    assert item.marker is None and item.comments is None


def test_recorded_create_response_with_null_body_normalizes() -> None:
    item = mocked(repos=("bbi-yggy/PyGithub",)).normalize(recorded("rest_issue_create_201.json"))
    assert item.id == "bbi-yggy/PyGithub#1"
    assert item.fields["body"] is None and item.marker is None
    assert (item.fields["labels"], item.fields["assignees"], item.fields["milestone"]) == ((), (), None)
    assert (item.fields["state"], item.fields["state_reason"]) == ("open", None)  # 2018: no state_reason yet


def test_recorded_comments_normalize() -> None:
    connector = mocked()
    comment = connector.normalize_comment(recorded("rest_issue_comment_get_200.json"))
    raw = recorded("rest_issue_comment_get_200.json")
    assert comment.id == str(raw["id"]) and comment.author == raw["user"]["login"]
    assert comment.public is True and comment.mirrored_from is None and comment.author_role is None
    page = [connector.normalize_comment(c) for c in recorded("rest_issue_comments_page2_link.json")]
    assert [c.author for c in page] == [c["user"]["login"] for c in recorded("rest_issue_comments_page2_link.json")]
    assert page[0].created_at == datetime(2024, 3, 20, 15, 24, 15, tzinfo=UTC)


@responses.activate
def test_recorded_list_page_follows_its_link_and_skips_the_pull_request() -> None:
    body = recorded("rest_issues_list_page1_link.json")
    headers = recorded_headers("rest_issues_list_page1_link.http.json", "Link", "ETag")
    next_url = "https://api.github.com/repositories/3544490/issues?per_page=1&page=2"
    responses.get(f"{API}/repos/PyGithub/PyGithub/issues", json=body, headers=headers)
    responses.get(next_url, json=[], match=[matchers.query_string_matcher("per_page=1&page=2")])
    connector = mocked(repos=("PyGithub/PyGithub",))
    pages = list(connector.poll(None, {}))
    assert responses.calls[1].request.url == next_url  # GitHub's own link, not one we built
    assert items_of(pages) == []  # the only entry is a pull request
    assert json.loads(pages[0].cursor or "") == {"PyGithub/PyGithub": "2024-09-16T14:19:35Z"}
    assert pages[-1].cursor == pages[0].cursor


@responses.activate
def test_recorded_401_is_auth_error_without_the_token() -> None:
    responses.get(f"{API}/rate_limit", status=401, json=recorded("rest_error_401_bad_credentials.json"))
    with pytest.raises(AuthError, match="Bad credentials") as caught:
        mocked().check()
    assert TOKEN not in str(caught.value) and len(responses.calls) == 1


@responses.activate
def test_recorded_secondary_rate_limit_waits_retry_after_then_succeeds() -> None:
    headers = recorded_headers("rest_error_403_secondary_rate_limit.http.json", "Retry-After")
    responses.get(ISSUES, status=403, json=recorded("rest_error_403_secondary_rate_limit.json"), headers=headers)
    responses.get(ISSUES, json=[issue(1, "2026-01-31T13:00:00Z")])
    waits: list[float] = []
    connector = mocked(retry=policy(waits))
    assert [i.id for i in items_of(connector.poll(None, {}))] == ["acme/app#1"]
    assert waits == [60.0] and connector.client.http.retry.rate_limit_waits == 1


@responses.activate
def test_recorded_primary_rate_limit_without_reset_header_is_waited_out() -> None:
    headers = recorded_headers("rest_error_403_rate_limit.http.json", "x-ratelimit-remaining", "x-ratelimit-limit")
    responses.get(ISSUES, status=403, json=recorded("rest_error_403_rate_limit.json"), headers=headers)
    responses.get(ISSUES, json=[])
    waits: list[float] = []
    list(mocked(retry=policy(waits)).poll(None, {}))
    assert waits == [60.0]


@responses.activate
def test_recorded_422_is_permanent_with_githubs_details() -> None:
    responses.post(ISSUES, status=422, json=recorded("rest_error_422_validation_errors_array.json"))
    with pytest.raises(Permanent, match=r"Validation Failed \(PublicKey.key: key is invalid") as caught:
        mocked().push(None, [Create({"title": "x"}, "zendesk:1")])
    assert not isinstance(caught.value, NotFound) and len(responses.calls) == 1


@responses.activate
def test_recorded_404_is_not_found() -> None:
    responses.get(f"{ISSUES}/7", status=404, json=recorded("rest_error_404_not_found.json"))
    with pytest.raises(NotFound, match="Branch not found"):
        mocked().fetch("acme/app#7")


# -- normalization: own payloads ------------------------------------------------------------------

def test_issue_with_marker_normalizes() -> None:
    item = mocked().normalize(own("issue_with_marker.json"))
    assert item.id == "acme/app#12" and item.url == "https://github.com/acme/app/issues/12"
    assert item.marker == "zendesk:4711"
    assert item.fields["body"] == MARKED  # the hidden marker and our blank line are gone, the rest is kept
    assert item.fields["labels"] == ("bug", "customer")
    assert item.fields["assignees"] == ("adam", "zoe")
    assert item.fields["milestone"] == "v2.1"
    assert item.fields["issue_id"] == 3000012


def test_configured_repo_spelling_names_the_item() -> None:
    raw = issue(5, "2026-01-31T13:00:00Z", repo="ACME/App")
    assert mocked().normalize(raw).id == "acme/app#5"


def test_version_changes_with_content_even_within_the_same_second() -> None:
    connector = mocked()
    first = connector.normalize(issue(5, "2026-01-31T13:00:00Z", labels=("bug",)))
    again = connector.normalize(issue(5, "2026-01-31T13:00:00Z", labels=("bug",)))
    edited = connector.normalize(issue(5, "2026-01-31T13:00:00Z", labels=("bug", "p1")))
    commented = connector.normalize(issue(5, "2026-01-31T13:00:00Z", labels=("bug",), comments=1))
    assert first.version == again.version
    assert len({first.version, edited.version, commented.version}) == 3


@pytest.mark.parametrize("body", ["", "one line", "text\n", "a\r\n\r\nb\r\n", "ends with blank lines\n\n"])
def test_body_marker_round_trips(body: str) -> None:
    written = with_body_marker(body, "zendesk:77")
    assert written.endswith("<!-- ticketbridge: zendesk:77 -->")
    assert split_body_marker(written) == (body, "zendesk:77")
    assert with_body_marker(written, "zendesk:77") == written  # never doubled


@pytest.mark.parametrize("body, marker", [
    ("<!-- ticketbridge: jira:10042 -->", "jira:10042"),
    ("top\n<!--ticketbridge:github:acme/app#5-->\nmoved by a person", "github:acme/app#5"),
    ("<!-- ticketbridge: Zendesk:1 -->", None),
    ("<!-- other: zendesk:1 -->", None),
    (None, None),
])
def test_body_marker_parsing(body: str | None, marker: str | None) -> None:
    assert split_body_marker(body)[1] == marker


def test_marker_without_a_tracker_is_refused() -> None:
    with pytest.raises(ValueError):
        marker_comment("no tracker")


# -- polling ----------------------------------------------------------------------------------------

@responses.activate
def test_poll_follows_links_skips_pull_requests_and_advances_the_cursor_per_page() -> None:
    page2 = f"{API}/repositories/1/issues?state=all&page=2"
    responses.get(ISSUES, json=own("issues_page_with_pr.json"), headers=link(page2))
    responses.get(page2, json=[issue(20, "2026-01-31T13:09:00Z")])
    pages = list(mocked().poll(None, {}))
    assert [[i.id for i in p.items] for p in pages] == [["acme/app#12", "acme/app#13"], ["acme/app#20"]]
    # The pull request is not an item, but its time still moves the cursor.
    assert [json.loads(p.cursor or "") for p in pages] == [{"acme/app": "2026-01-31T13:07:00Z"},
                                                            {"acme/app": "2026-01-31T13:09:00Z"}]
    first = query(0)
    assert (first["state"], first["sort"], first["direction"], first["per_page"]) == \
        (["all"], ["updated"], ["asc"], ["100"])
    assert "since" not in first  # no cursor: everything
    assert responses.calls[1].request.url == page2


@responses.activate
def test_poll_sends_since_cursor_minus_lookback_and_keeps_other_repos_positions() -> None:
    responses.get(ISSUES, json=[issue(3, "2026-01-31T13:05:00Z")])
    cursor = json.dumps({"acme/app": "2026-01-31T13:04:30Z", "acme/other": "2026-01-01T00:00:00Z"})
    pages = list(mocked(repos=("acme/app", "acme/other"), lookback_seconds=90).poll(cursor, {"repos": ["acme/app"]}))
    assert query(0)["since"] == ["2026-01-31T13:03:00Z"]
    assert json.loads(pages[-1].cursor or "") == {"acme/app": "2026-01-31T13:05:00Z",
                                                   "acme/other": "2026-01-01T00:00:00Z"}
    assert len(responses.calls) == 1  # acme/other is configured but not selected


@responses.activate
def test_poll_never_moves_a_cursor_backwards() -> None:
    responses.get(ISSUES, json=[issue(3, "2026-01-31T12:59:00Z")])  # within the look-back
    pages = list(mocked().poll('{"acme/app": "2026-01-31T13:00:00Z"}', {}))
    assert [i.id for i in items_of(pages)] == ["acme/app#3"]
    assert json.loads(pages[-1].cursor or "") == {"acme/app": "2026-01-31T13:00:00Z"}


@responses.activate
def test_poll_accepts_a_bare_timestamp_for_every_repo_and_refuses_garbage() -> None:
    responses.get(ISSUES, json=[])
    responses.get(f"{API}/repos/acme/other/issues", json=[])
    connector = mocked(repos=("acme/app", "acme/other"), lookback_seconds=0)
    list(connector.poll("2026-01-31T13:00:00Z", {}))
    assert query(0)["since"] == query(1)["since"] == ["2026-01-31T13:00:00Z"]
    with pytest.raises(Permanent, match="not a GitHub cursor"):
        list(connector.poll("garbage", {}))


@responses.activate
def test_poll_of_several_repos_names_items_by_repo() -> None:
    responses.get(ISSUES, json=[issue(1, "2026-01-31T13:00:00Z")])
    responses.get(f"{API}/repos/acme/web/issues", json=[issue(1, "2026-01-31T12:00:00Z", repo="acme/web")])
    pages = list(mocked(repos=("acme/app", "acme/web")).poll(None, {}))
    assert [i.id for i in items_of(pages)] == ["acme/app#1", "acme/web#1"]
    assert json.loads(pages[-1].cursor or "") == {"acme/app": "2026-01-31T13:00:00Z",
                                                   "acme/web": "2026-01-31T12:00:00Z"}


@responses.activate
def test_poll_yields_one_id_and_updated_at_once_per_poll() -> None:
    page2 = f"{API}/repositories/1/issues?page=2"
    responses.get(ISSUES, json=[issue(1, "2026-01-31T13:00:00Z"), issue(2, "2026-01-31T13:01:00Z")],
                  headers=link(page2))
    # The list grew at its start while we read: the last issue of page 1 comes again on page 2.
    responses.get(page2, json=[issue(2, "2026-01-31T13:01:00Z"), issue(4, "2026-01-31T13:02:00Z")])
    ids = [i.id for i in items_of(mocked(per_page=2).poll(None, {}))]
    assert ids == ["acme/app#1", "acme/app#2", "acme/app#4"]


@responses.activate
def test_lookback_redelivers_with_the_same_version_for_the_engine_to_drop() -> None:
    responses.get(ISSUES, json=[issue(1, "2026-01-31T13:00:00Z")])
    connector = mocked()
    first = items_of(connector.poll(None, {}))
    second = items_of(connector.poll('{"acme/app": "2026-01-31T13:00:30Z"}', {}))
    assert [(i.id, i.version) for i in second] == [(i.id, i.version) for i in first]
    assert connector.dedupe_versions is True


@responses.activate
def test_issue_updated_during_the_scan_triggers_a_rescan_from_its_page() -> None:
    page2 = f"{API}/repositories/1/issues?page=2"
    page3 = f"{API}/repositories/1/issues?page=3"
    a, b = issue(1, "2026-01-31T12:00:00Z"), issue(2, "2026-01-31T12:10:00Z")
    c, d = issue(3, "2026-01-31T12:20:00Z"), issue(4, "2026-01-31T12:30:00Z")
    a_again = issue(1, "2026-01-31T13:00:00Z")
    # After page 1 was read, #1 was updated and moved to the end: #3 slid onto page 1 and is skipped.
    responses.get(ISSUES, json=[a, b], headers=link(page2),
                  match=[matchers.query_param_matcher({"state": "all", "sort": "updated", "direction": "asc",
                                                      "per_page": "2"})])
    responses.get(page2, json=[d, a_again], headers=link(page3))
    responses.get(page3, json=[])
    responses.get(ISSUES, json=[b, c, d, a_again],
                  match=[matchers.query_param_matcher({"state": "all", "sort": "updated", "direction": "asc",
                                                      "per_page": "2", "since": "2026-01-31T12:08:00Z"})])
    pages = list(mocked(per_page=2).poll(None, {}))
    assert [(i.id, i.updated_at.hour, i.updated_at.minute) for i in items_of(pages)] == [
        ("acme/app#1", 12, 0), ("acme/app#2", 12, 10), ("acme/app#4", 12, 30), ("acme/app#1", 13, 0),
        ("acme/app#3", 12, 20)]  # the skipped issue, found by the rescan; the rest is not repeated
    assert json.loads(pages[-1].cursor or "") == {"acme/app": "2026-01-31T13:00:00Z"}


@responses.activate
def test_etag_304_replays_the_remembered_page_with_the_same_cursor() -> None:
    cursor = '{"acme/app": "2026-01-31T13:00:00Z"}'
    responses.get(ISSUES, json=[issue(1, "2026-01-31T12:59:00Z")], headers={"ETag": 'W/"abc"'})
    responses.get(ISSUES, status=304, match=[matchers.header_matcher({"If-None-Match": 'W/"abc"'})])
    connector = mocked()
    first = list(connector.poll(cursor, {}))
    assert "If-None-Match" not in responses.calls[0].request.headers
    second = list(connector.poll(cursor, {}))
    assert responses.calls[1].request.headers["If-None-Match"] == 'W/"abc"'
    assert len(responses.calls) == 2
    # Same issues, same versions (the engine drops them), same cursor: nothing changed.
    assert [([(i.id, i.version) for i in p.items], p.cursor) for p in second] == \
        [([(i.id, i.version) for i in p.items], p.cursor) for p in first]
    assert json.loads(first[-1].cursor or "") == json.loads(cursor)


@responses.activate
def test_a_304_still_shows_a_second_flow_what_the_first_flow_saw() -> None:
    # Two flows poll one tracker, each from its own stored cursor (here: the same one).
    cursor = '{"acme/app": "2026-01-31T13:00:00Z"}'
    responses.get(ISSUES, json=[issue(1, "2026-01-31T13:01:00Z")], headers={"ETag": 'W/"new"'})
    responses.get(ISSUES, status=304)
    connector = mocked()
    flow_a = list(connector.poll(cursor, {}))
    flow_b = list(connector.poll(cursor, {}))
    assert [i.id for i in items_of(flow_b)] == [i.id for i in items_of(flow_a)] == ["acme/app#1"]
    assert flow_b[-1].cursor == flow_a[-1].cursor == '{"acme/app":"2026-01-31T13:01:00Z"}'
    assert connector.client.http.stats[304] == 1


@responses.activate
def test_etag_is_sent_only_for_the_same_since_and_a_page_that_was_the_whole_answer() -> None:
    responses.get(ISSUES, json=[issue(1, "2026-01-31T12:59:00Z"), issue(2, "2026-01-31T12:59:30Z")],
                  headers={"ETag": 'W/"full"'})
    connector = mocked(per_page=2)
    list(connector.poll(None, {}))
    list(connector.poll(None, {}))  # a full first page: a change could sit on a page 2 we never read
    assert "If-None-Match" not in responses.calls[1].request.headers
    responses.replace(responses.GET, ISSUES, json=[issue(1, "2026-01-31T12:59:00Z")], headers={"ETag": 'W/"one"'})
    list(connector.poll(None, {}))
    list(connector.poll('{"acme/app": "2026-01-31T13:00:00Z"}', {}))  # another since: another answer
    assert "If-None-Match" not in responses.calls[3].request.headers


@responses.activate
def test_select_repos_outside_the_tracker_is_a_configuration_error() -> None:
    with pytest.raises(Permanent, match="acme/nope"):
        list(mocked().poll(None, {"repos": ["acme/nope"]}))
    assert len(responses.calls) == 0


def test_selected_uses_labels_and_repos() -> None:
    connector = mocked(repos=("acme/app", "acme/web"))
    item = connector.normalize(issue(1, "2026-01-31T13:00:00Z", labels=("bug", "customer")))
    assert connector.selected(item, {})
    assert connector.selected(item, {"labels_any": ["customer", "x"], "labels_none": ["wontfix"]})
    assert not connector.selected(item, {"labels_any": ["feature"]})
    assert not connector.selected(item, {"labels_none": ["bug"]})
    assert connector.selected(item, {"repos": ["ACME/app"]})
    assert not connector.selected(item, {"repos": ["acme/web"]})


# -- fetch and comments -----------------------------------------------------------------------------

@responses.activate
def test_fetch_loads_comments_across_pages_with_markers() -> None:
    responses.get(f"{ISSUES}/12", json=own("issue_with_marker.json"))
    comments_page2 = f"{API}/repositories/1/issues/12/comments?page=2"
    first, second = own("comments.json")
    responses.get(f"{ISSUES}/12/comments", json=[first], headers=link(comments_page2),
                  match=[matchers.query_param_matcher({"per_page": "100"})])
    responses.get(comments_page2, json=[second])
    item = mocked().fetch("acme/app#12")
    assert item.comments is not None
    assert [(c.id, c.author, c.public, c.mirrored_from) for c in item.comments] == [
        ("501", "zoe", True, None), ("502", "ticketbridge-bot", True, "zendesk:9001")]
    assert item.comments[1].body == "Zendesk #4711 · reply by Ana\n\nIt is still smoking."


@responses.activate
def test_with_comments_skips_the_request_when_the_issue_has_none() -> None:
    responses.get(ISSUES, json=[issue(1, "2026-01-31T13:00:00Z"), issue(2, "2026-01-31T13:00:00Z", comments=1)])
    responses.get(f"{ISSUES}/2/comments", json=[{"id": 9, "body": "hi", "user": {"login": "zoe"},
                                                 "created_at": "2026-01-31T13:00:00Z"}])
    connector = mocked()
    one, two = items_of(connector.poll(None, {}))
    assert connector.with_comments(one).comments == ()
    assert [c.body for c in connector.with_comments(two).comments or ()] == ["hi"]
    assert len(responses.calls) == 2
    loaded = connector.with_comments(two)
    assert connector.with_comments(loaded) is loaded


@responses.activate
def test_fetch_of_a_transferred_issue_is_not_found() -> None:
    moved = issue(3, "2026-01-31T13:00:00Z", repo="acme/web")  # GitHub redirected us to its new home
    responses.get(f"{ISSUES}/12", json=moved)
    with pytest.raises(NotFound, match="transferred"):
        mocked().fetch("acme/app#12")


@responses.activate
def test_fetch_of_a_recreated_issue_is_not_found() -> None:
    responses.get(ISSUES, json=[issue(5, "2026-01-31T13:00:00Z", iid=111)])
    responses.get(f"{ISSUES}/5", json=issue(5, "2026-01-31T14:00:00Z", iid=222))
    connector = mocked()
    list(connector.poll(None, {}))
    with pytest.raises(NotFound, match="id 222, was 111"):
        connector.fetch("acme/app#5")


@responses.activate
def test_fetch_of_a_deleted_issue_410_is_not_found_and_a_bad_id_is_permanent() -> None:
    responses.get(f"{ISSUES}/5", status=410, json={"message": "This issue was deleted"})
    with pytest.raises(NotFound, match="deleted"):
        mocked().fetch("acme/app#5")
    with pytest.raises(Permanent, match="owner/repo#number"):
        mocked().fetch("5")


# -- find_by_marker -----------------------------------------------------------------------------------

@responses.activate
def test_find_by_marker_scans_newest_created_first_and_skips_pull_requests() -> None:
    page2 = f"{API}/repositories/1/issues?sort=created&page=2"
    body = with_body_marker("text", "zendesk:77")
    responses.get(ISSUES, json=[issue(9, "2026-01-31T13:00:00Z", pr=True, body=body),
                                issue(8, "2026-01-31T13:00:00Z", body="no marker")], headers=link(page2),
                  match=[matchers.query_param_matcher({"state": "all", "sort": "created", "direction": "desc",
                                                      "per_page": "100"})])
    responses.get(page2, json=[issue(7, "2026-01-31T13:00:00Z", body=body, created="2026-01-30T10:00:00Z"),
                               issue(6, "2026-01-31T13:00:00Z", body=body, created="2026-01-30T09:00:00Z")])
    found = mocked().find_by_marker("zendesk:77")
    assert found is not None and found.id == "acme/app#6"  # the oldest carrying it
    assert found.marker == "zendesk:77" and found.fields["body"] == "text"


@responses.activate
def test_find_by_marker_is_bounded_and_tries_every_repo() -> None:
    page2 = f"{API}/repositories/1/issues?page=2"
    responses.get(ISSUES, json=[issue(2, "2026-01-31T13:00:00Z")], headers=link(page2))
    responses.get(page2, json=[issue(1, "2026-01-31T13:00:00Z", body=with_body_marker("", "zendesk:5"))])
    responses.get(f"{API}/repos/acme/web/issues", json=[issue(1, "2026-01-31T13:00:00Z", repo="acme/web")])
    connector = mocked(repos=("acme/app", "acme/web"), marker_scan_pages=1)
    assert connector.find_by_marker("zendesk:5") is None  # it sits on page 2, beyond the window
    assert [urlsplit(c.request.url).path for c in responses.calls] == ["/repos/acme/app/issues",
                                                                      "/repos/acme/web/issues"]
    assert connector.find_by_marker("not a marker") is None and len(responses.calls) == 2


# -- writes ---------------------------------------------------------------------------------------------

@responses.activate
def test_create_appends_the_marker_and_returns_the_item() -> None:
    created = issue(31, "2026-01-31T13:00:00Z", body=with_body_marker("Body", "zendesk:77"), repo="acme/web")
    responses.post(f"{API}/repos/acme/web/issues", status=201, json=created)
    connector = mocked(repos=("acme/app", "acme/web"))
    result = connector.push(None, [Create({"repo": "ACME/web", "title": "Printer", "body": "Body",
                                           "labels": ("bug", "customer"), "assignees": ("zoe",)}, "zendesk:77")])
    assert sent(0) == {"title": "Printer", "body": "Body\n\n<!-- ticketbridge: zendesk:77 -->",
                       "labels": ["bug", "customer"], "assignees": ["zoe"]}
    assert (result.item_id, result.item_key, result.created) == ("acme/web#31", "acme/web#31", True)
    assert result.item is not None and result.item.marker == "zendesk:77" and result.item.fields["body"] == "Body"


@responses.activate
def test_create_defaults_to_the_first_repo_and_closes_after_when_asked() -> None:
    responses.post(ISSUES, status=201, json=issue(4, "2026-01-31T13:00:00Z", body="<!-- ticketbridge: jira:1 -->"))
    responses.patch(f"{ISSUES}/4", json=issue(4, "2026-01-31T13:00:01Z", state="closed",
                                              body="<!-- ticketbridge: jira:1 -->"))
    result = mocked().push(None, [Create({"title": "Done already", "state": "closed"}, "jira:1"),
                                  Update({"state_reason": "completed"})])
    assert sent(0) == {"title": "Done already", "body": "<!-- ticketbridge: jira:1 -->"}
    assert sent(1) == {"state": "closed", "state_reason": "completed"}
    assert result.item is not None and result.item.fields["state"] == "closed"


@responses.activate
def test_create_timeout_is_unsure_and_not_retried() -> None:
    responses.post(ISSUES, body=requests.ReadTimeout("read timed out"))
    with pytest.raises(Unsure):
        mocked().push(None, [Create({"title": "x"}, "zendesk:1")])
    assert len(responses.calls) == 1


@responses.activate
def test_create_502_is_unsure_and_not_retried() -> None:
    responses.post(ISSUES, status=502, json={"message": "Server Error"})
    with pytest.raises(Unsure):
        mocked().push(None, [Create({"title": "x"}, "zendesk:1")])
    assert len(responses.calls) == 1


@responses.activate
def test_comment_timeout_is_unsure_and_not_retried() -> None:
    responses.post(f"{ISSUES}/4/comments", body=requests.ReadTimeout("read timed out"))
    with pytest.raises(Unsure):
        mocked().push("acme/app#4", [AddComment("hi [tb:zendesk:1]", True, "zendesk:1")])
    assert len(responses.calls) == 1


@responses.activate
def test_bad_op_lists_are_refused_before_any_request() -> None:
    connector = mocked()
    with pytest.raises(Permanent, match="transitions"):
        connector.push("acme/app#1", [Update({"title": "t"}), Transition("Done")])
    with pytest.raises(Permanent, match="priority"):
        connector.push("acme/app#1", [Update({"priority": "high"})])
    with pytest.raises(Permanent, match="state must be one of"):
        connector.push("acme/app#1", [Update({"state": "Closed"})])
    with pytest.raises(Permanent, match="without a title"):
        connector.push(None, [Create({"body": "b"}, "zendesk:1")])
    with pytest.raises(Permanent, match="not among the tracker's repos"):
        connector.push(None, [Create({"title": "t", "repo": "other/repo"}, "zendesk:1")])
    with pytest.raises(Permanent, match="must start with Create"):
        connector.push(None, [Update({"title": "t"})])
    with pytest.raises(Permanent, match="internal note zendesk:9"):
        connector.push("acme/app#1", [Update({"title": "t"}), AddComment("secret", False, "zendesk:9")])
    assert len(responses.calls) == 0


@responses.activate
def test_update_close_and_labels_in_one_patch_read_only_fields_dropped() -> None:
    responses.patch(f"{ISSUES}/4", json=issue(4, "2026-01-31T13:00:00Z", state="closed"))
    result = mocked().push("acme/app#4", [Update({"title": "New", "labels": ("p1", "bug"), "milestone": "v2"}),
                                          Update({"state": "closed", "state_reason": "not_planned",
                                                  "assignees": ()})])
    assert sent(0) == {"title": "New", "labels": ["bug", "p1"], "state": "closed", "state_reason": "not_planned",
                       "assignees": []}
    assert result.item is not None and result.item.fields["state"] == "closed" and not result.created


@responses.activate
def test_body_update_keeps_the_marker_from_the_last_read() -> None:
    responses.get(ISSUES, json=[own("issue_with_marker.json")])
    responses.patch(f"{ISSUES}/12", json=own("issue_with_marker.json"))
    connector = mocked()
    list(connector.poll(None, {}))
    connector.push("acme/app#12", [Update({"body": "Rewritten"})])
    assert sent(-1) == {"body": "Rewritten\n\n<!-- ticketbridge: zendesk:4711 -->"}
    assert len(responses.calls) == 2  # the marker came from the poll: no extra GET


@responses.activate
def test_body_update_of_an_unread_item_reads_its_marker_first() -> None:
    responses.get(f"{ISSUES}/12", json=own("issue_with_marker.json"))
    responses.patch(f"{ISSUES}/12", json=own("issue_with_marker.json"))
    responses.patch(f"{ISSUES}/13", json=issue(13, "2026-01-31T13:00:00Z"))
    responses.get(f"{ISSUES}/13", json=issue(13, "2026-01-31T13:00:00Z", body="plain"))
    connector = mocked()
    connector.push("acme/app#12", [Update({"body": "New\n\n<!-- ticketbridge: zendesk:1 -->"})])
    assert sent(-1) == {"body": "New\n\n<!-- ticketbridge: zendesk:4711 -->"}  # ours, once, at the end
    connector.push("acme/app#13", [Update({"body": "No marker here"})])
    assert sent(-1) == {"body": "No marker here"}


@responses.activate
def test_comments_carry_their_marker_once_and_map_ids() -> None:
    responses.post(f"{ISSUES}/4/comments", status=201, json={"id": 71})
    responses.post(f"{ISSUES}/4/comments", status=201, json={"id": 72})
    result = mocked().push("acme/app#4", [AddComment(with_comment_marker("first", "zendesk:c1"), True, "zendesk:c1"),
                                          AddComment("second", True, "zendesk:c2")])
    assert sent(0) == {"body": "first\n\n[tb:zendesk:c1]"}
    assert sent(1) == {"body": "second\n\n[tb:zendesk:c2]"}
    assert result.comment_ids == {"zendesk:c1": "71", "zendesk:c2": "72"}
    assert result.item is None  # no issue came back


@responses.activate
def test_internal_comments_post_when_allowed() -> None:
    responses.post(f"{ISSUES}/4/comments", status=201, json={"id": 71})
    result = mocked(allow_internal_comments=True).push("acme/app#4", [AddComment("note", False, "zendesk:c1")])
    assert result.comment_ids == {"zendesk:c1": "71"}


# -- headers, rate limits, check --------------------------------------------------------------------------

@responses.activate
def test_requests_carry_githubs_headers_and_the_token_stays_hidden() -> None:
    responses.get(ISSUES, json=[])
    connector = mocked()
    list(connector.poll(None, {}))
    headers = responses.calls[0].request.headers
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    assert headers["Accept"] == "application/vnd.github+json"
    assert headers["X-GitHub-Api-Version"] == "2022-11-28"
    assert headers["User-Agent"]
    assert TOKEN not in repr(connector) and connector.requests_made == 1


@responses.activate
def test_primary_rate_limit_403_waits_until_reset_then_succeeds() -> None:
    reset = int(time.time()) + 40
    responses.get(ISSUES, status=403, json={"message": "API rate limit exceeded for user ID 1."},
                  headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)})
    responses.get(ISSUES, json=[issue(1, "2026-01-31T13:00:00Z")])
    waits: list[float] = []
    connector = mocked(retry=policy(waits))
    assert [i.id for i in items_of(connector.poll(None, {}))] == ["acme/app#1"]
    assert len(waits) == 1 and 35 <= waits[0] <= 41


@responses.activate
def test_secondary_rate_limit_on_a_create_is_waited_out_because_github_did_not_act() -> None:
    responses.post(ISSUES, status=403, headers={"retry-after": "7"},
                   json={"message": "You have exceeded a secondary rate limit."})
    responses.post(ISSUES, status=201, json=issue(4, "2026-01-31T13:00:00Z"))
    waits: list[float] = []
    result = mocked(retry=policy(waits)).push(None, [Create({"title": "x"}, "zendesk:1")])
    assert waits == [7.0] and result.item_id == "acme/app#4" and len(responses.calls) == 2


@responses.activate
def test_rate_limit_that_never_ends_raises_rate_limited() -> None:
    responses.get(ISSUES, status=429, headers={"retry-after": "1"}, json={"message": "slow down"})
    with pytest.raises(RateLimited):
        list(mocked(retry=policy(attempts=3)).poll(None, {}))
    assert len(responses.calls) == 3


@responses.activate
def test_403_without_rate_limit_headers_is_auth_error() -> None:
    responses.get(ISSUES, status=403, json={"message": "Resource not accessible by personal access token"},
                  headers={"x-ratelimit-remaining": "4999"})
    with pytest.raises(AuthError, match="Resource not accessible"):
        list(mocked().poll(None, {}))
    assert len(responses.calls) == 1


@responses.activate
def test_check_reads_rate_limit_then_each_repo() -> None:
    responses.get(f"{API}/rate_limit", json={"resources": {"core": {"remaining": 4999}}})
    responses.get(ISSUES, json=[], match=[matchers.query_param_matcher({"state": "all", "per_page": "1"})])
    responses.get(f"{API}/repos/acme/gone/issues", status=404, json={"message": "Not Found"})
    mocked().check()
    with pytest.raises(Permanent, match="repository 'acme/gone' was not found") as caught:
        mocked(repos=("acme/app", "acme/gone")).check()
    assert not isinstance(caught.value, NotFound)


@responses.activate
def test_check_names_a_repo_with_issues_disabled() -> None:
    responses.get(f"{API}/rate_limit", json={"resources": {"core": {"remaining": 4999}}})
    responses.get(ISSUES, status=410, json={"message": "Issues are disabled for this repo"})
    with pytest.raises(Permanent, match="'acme/app' has issues disabled"):
        mocked().check()


def test_bad_configuration_is_refused_without_io() -> None:
    with pytest.raises(ValueError, match="owner/repo"):
        GitHubConnector("github", API, TOKEN, repos=["just-a-name"])
    with pytest.raises(ValueError, match="non-empty"):
        GitHubConnector("github", API, TOKEN, repos=[])
    with pytest.raises(ValueError, match="non-empty"):
        GitHubConnector("github", API, TOKEN, repos="acme/app")
    assert GitHubConnector("github", API, TOKEN, repos=["acme/app"], per_page=500).per_page == 100


# -- end to end against the emulator ----------------------------------------------------------------------

START = datetime(2026, 1, 31, 13, 0, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture(scope="module")
def server(clock: FakeClock) -> Iterator[Any]:
    emulator = pytest.importorskip("ticketbridge.connectors.github.emulator")
    with emulator.GitHubEmulator(clock=clock, repos=("app", "web"), collaborators=("zoe",)) as running:
        yield running


@pytest.fixture()
def emu(server: Any, clock: FakeClock) -> Any:
    clock.now = datetime(2026, 1, 31, 13, 0, 0, tzinfo=UTC)
    server.reset()
    return server


def connect(emu: Any, **kwargs: Any) -> GitHubConnector:
    return GitHubConnector("github", emu.base_url, emu.token, repos=kwargs.pop("repos", ("acme/app", "acme/web")),
                           retry=kwargs.pop("retry", policy()), **kwargs)


def test_e2e_create_poll_update_comment_find(emu: Any, clock: FakeClock) -> None:
    connector = connect(emu)
    connector.check()
    result = connector.push(None, [Create({"title": "Printer on fire", "body": "It burns.", "labels": ("bug",),
                                           "assignees": ("zoe",)}, "zendesk:77"),
                                   AddComment(with_comment_marker("first", "zendesk:c1"), True, "zendesk:c1")])
    assert result.created and result.item_id == "acme/app#1"
    raw = emu.issue("app", 1)
    assert raw["body"] == "It burns.\n\n<!-- ticketbridge: zendesk:77 -->"
    assert result.comment_ids == {"zendesk:c1": str(emu.comments("app", 1)[0]["id"])}

    clock.advance(minutes=5)
    emu.add_issue("web", "Other repo", "by a person")
    emu.add_pull_request("app", "A pull request")
    pages = list(connector.poll(None, {}))
    polled = {i.id: i for i in items_of(pages)}
    assert set(polled) == {"acme/app#1", "acme/web#1"}
    item = polled["acme/app#1"]
    assert (item.marker, item.fields["body"], item.fields["labels"], item.fields["assignees"]) == \
        ("zendesk:77", "It burns.", ("bug",), ("zoe",))
    loaded = connector.with_comments(item)
    assert [(c.body, c.mirrored_from) for c in loaded.comments or ()] == [("first", "zendesk:c1")]

    clock.advance(minutes=5)
    connector.push("acme/app#1", [Update({"body": "It burns less.", "state": "closed",
                                          "state_reason": "not_planned"})])
    fetched = connector.fetch("acme/app#1")
    assert (fetched.fields["body"], fetched.marker) == ("It burns less.", "zendesk:77")
    assert (fetched.fields["state"], fetched.fields["state_reason"]) == ("closed", "not_planned")
    assert fetched.fields["closed_at"] is not None

    found = connector.find_by_marker("zendesk:77")
    assert found is not None and found.id == "acme/app#1"
    assert connector.find_by_marker("zendesk:78") is None


def test_e2e_poll_resumes_with_lookback_and_pages(emu: Any, clock: FakeClock) -> None:
    for n in range(5):
        emu.add_issue("app", f"issue {n}")
        clock.advance(minutes=5)
    connector = connect(emu, per_page=2, repos=("acme/app",))
    pages = list(connector.poll(None, {}))
    assert [len(p.items) for p in pages] == [2, 2, 1]
    assert [i.id for i in items_of(pages)] == [f"acme/app#{n}" for n in range(1, 6)]
    versions = {(i.id, i.version) for i in items_of(pages)}
    assert json.loads(pages[-1].cursor or "") == {"acme/app": "2026-01-31T13:20:00Z"}

    clock.advance(minutes=30)
    emu.edit_issue("app", 2, title="changed")
    again = items_of(connector.poll(pages[-1].cursor, {}))
    # #5 comes back through the look-back with the same version (the engine drops it); #2 is new.
    assert [i.id for i in again] == ["acme/app#5", "acme/app#2"]
    fresh = [(i.id, i.fields["title"]) for i in again if (i.id, i.version) not in versions]
    assert fresh == [("acme/app#2", "changed")]


def test_e2e_etag_makes_a_quiet_poll_free(emu: Any, clock: FakeClock) -> None:
    emu.add_issue("app", "one")
    connector = connect(emu, repos=("acme/app",))
    cursor = list(connector.poll(None, {}))[-1].cursor
    list(connector.poll(cursor, {}))  # remembers the ETag for this `since`
    before = emu.rate_limit_remaining()
    quiet = list(connector.poll(cursor, {}))
    assert [([i.fields["title"] for i in p.items], p.cursor) for p in quiet] == [(["one"], cursor)]
    assert emu.rate_limit_remaining() == before  # a 304 costs no rate limit
    assert emu.request_log[-1] == ("GET", "/repos/acme/app/issues", 304)
    clock.advance(seconds=10)
    emu.edit_issue("app", 1, title="changed")
    changed = items_of(connector.poll(cursor, {}))
    assert [i.fields["title"] for i in changed] == ["changed"]


def test_e2e_secondary_rate_limit_on_writes_is_waited_out(emu: Any) -> None:
    waits: list[float] = []
    connector = connect(emu, retry=policy(waits))
    emu.trigger_secondary_rate_limit(writes=1, retry_after=30)
    result = connector.push(None, [Create({"title": "x"}, "zendesk:1")])
    assert waits == [30.0]
    assert [i["number"] for i in emu.issues("app")] == [int(result.item_id.split("#")[1])]


def test_e2e_wrong_token_is_auth_error(emu: Any) -> None:
    connector = GitHubConnector("github", emu.base_url, "ghp_wrong", repos=["acme/app"], retry=policy())
    with pytest.raises(AuthError, match="Bad credentials") as caught:
        connector.check()
    assert "ghp_wrong" not in str(caught.value)


def test_e2e_missing_repo_and_issue(emu: Any) -> None:
    with pytest.raises(Permanent, match="'acme/nope'"):
        connect(emu, repos=("acme/app", "acme/nope")).check()
    with pytest.raises(NotFound):
        connect(emu).fetch("acme/app#99")
