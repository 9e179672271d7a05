"""The ClickUp connector: normalization on recorded payloads, polling, writes, markers, errors and
rate-limit waits, against the ClickUp emulator over loopback HTTP."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from ticketbridge.connectors.clickup.client import authorization, clickup_error_message
from ticketbridge.connectors.clickup.connector import (
    ClickUpConnector,
    parse_webhook,
    split_description_marker,
    to_ms,
    verify_signature,
    with_description_marker,
)
from ticketbridge.connectors.clickup.emulator import (
    DEFAULT_LIST_ID,
    DEFAULT_OAUTH_TOKEN,
    ClickUpEmulator,
    sign,
)
from ticketbridge.connectors.errors import AuthError, NotFound, Permanent
from ticketbridge.connectors.http import RetryPolicy
from ticketbridge.sync.model import AddComment, Create, Transition, Update, with_comment_marker

from ..clock import FakeClock

SHARED = Path(os.environ.get("TICKETBRIDGE_SHARED") or Path(__file__).resolve().parents[2].parent / "shared")
RECORDED = SHARED / "reference" / "fixtures" / "clickup"
SPEC = SHARED / "reference" / "openapi" / "clickup-v2.json"


def recorded(name: str) -> Any:
    path = RECORDED / name
    if not path.exists():
        pytest.skip(f"recorded fixture {path} not found (set TICKETBRIDGE_SHARED to the shared directory)")
    return json.loads(path.read_text(encoding="utf-8"))


START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def shared_clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture(scope="module")
def server(shared_clock: FakeClock) -> Iterator[ClickUpEmulator]:
    with ClickUpEmulator(clock=shared_clock, rate_limit_per_minute=100_000) as started:
        yield started


@pytest.fixture
def clock(shared_clock: FakeClock) -> FakeClock:
    shared_clock.now = START
    return shared_clock


@pytest.fixture
def emu(server: ClickUpEmulator, clock: FakeClock) -> ClickUpEmulator:
    server.reset()
    return server


def policy(waits: list[float] | None = None, attempts: int = 4) -> RetryPolicy:
    sleeps = waits if waits is not None else []
    return RetryPolicy(attempts=attempts, base_delay=0.001, max_delay=0.01, sleep=sleeps.append)


def connector(emu: ClickUpEmulator, **kwargs: Any) -> ClickUpConnector:
    kwargs.setdefault("retry", policy())
    kwargs.setdefault("lists", [DEFAULT_LIST_ID])
    return ClickUpConnector("clickup", emu.base_url, kwargs.pop("token", emu.token), **kwargs)


@pytest.fixture
def cu(emu: ClickUpEmulator) -> ClickUpConnector:
    return connector(emu, marker_field=emu.field_id("Origin"))


def record_urls(made: ClickUpConnector) -> list[str]:
    """Every URL the connector requests from now on."""
    urls: list[str] = []
    made.client.http.session.hooks["response"].append(lambda response, *a, **k: urls.append(response.request.url))
    return urls


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def writes(emu: ClickUpEmulator) -> list[tuple[str, str]]:
    return [(m, p) for m, p, _ in emu.request_log if m in ("POST", "PUT", "DELETE")]


# -- normalization on recorded payloads --------------------------------------------------------------

def test_normalizes_the_recorded_task(emu: ClickUpEmulator) -> None:
    item = connector(emu).normalize(recorded("rest_task_get_200.json"))
    assert (item.id, item.key, item.url) == ("86d3f01jq", "86d3f01jq", "https://app.clickup.com/t/86d3f01jq")
    assert item.fields["name"] == "Optimize image loading in catalog"
    assert item.fields["status"] == "in progress"
    assert item.fields["priority"] is None and item.fields["description"] is None
    assert item.fields["assignees"] == () and item.fields["tags"] == ()
    assert item.fields["list"] == "901615428490" and item.fields["due_date"] is None
    assert item.version == "1782285193253"
    assert item.updated_at == datetime.fromtimestamp(1782285193.253, UTC)
    assert item.marker is None and item.comments is None
    assert not [name for name in item.fields if name.startswith("custom_fields.")]


def test_normalizes_custom_fields_of_each_kind_from_the_spec_example(emu: ClickUpEmulator) -> None:
    if not SPEC.exists():
        pytest.skip(f"{SPEC} not found")
    spec = json.loads(SPEC.read_text(encoding="utf-8"))
    example = spec["paths"]["/v2/task/{task_id}"]["get"]["responses"]["200"]["content"]["application/json"][
        "schema"]["example"]
    task = {**recorded("rest_task_get_200.json"), "custom_fields": example["custom_fields"],
            "priority": {"id": "2", "priority": "high", "color": "#ffcc00", "orderindex": "2"},
            "due_date": "1767603600000", "tags": [{"name": "q3"}, {"name": "backend"}],
            "assignees": [{"id": 183}, {"id": 17}], "markdown_description": "**Bold** text"}
    fields = connector(emu).normalize(task).fields
    assert fields["custom_fields.d2ab17e0-41d3-4d28-bdbb-f3f0f2c62f8b"] == "Fix critical auth issues"  # short_text
    assert fields["custom_fields.1f3cc395-3448-4264-bedd-590a3b3fa178"] == 8  # number, sent as "8"
    assert fields["custom_fields.b2e4be70-c4d3-4726-985b-46ac25375b28"] == "Release Notes Only"  # orderindex 2
    assert fields["custom_fields.f4d2a20d-6759-4420-b897-222dbe2587d4"] is None  # people: not carried
    assert fields["priority"] == "high" and fields["due_date"] == "2026-01-05T09:00:00Z"
    assert fields["tags"] == ("backend", "q3") and fields["assignees"] == ("17", "183")
    assert fields["description"] == "**Bold** text"


def test_recorded_webhooks_parse_and_signatures_verify() -> None:
    for name, event in (("webhook_task_created.json", "taskCreated"), ("webhook_task_updated_status.json",
                                                                        "taskUpdated"),
                        ("webhook_task_updated_comment.json", "taskUpdated"), ("webhook_task_deleted.json",
                                                                               "taskDeleted")):
        body = json.dumps(recorded(name), separators=(",", ":")).encode()
        parsed_event, task_id, history = parse_webhook(body)
        assert parsed_event == event and task_id == recorded(name)["task_id"]
        assert history == tuple(h["id"] for h in recorded(name)["history_items"])
        signature = sign("s3cret", body)
        assert verify_signature("s3cret", body, signature)
        assert not verify_signature("s3cret", body + b" ", signature)
        assert not verify_signature("other", body, signature)
        assert not verify_signature("s3cret", body, None)
    with pytest.raises(ValueError):
        parse_webhook(b'{"event": "taskCreated"}')


def test_recorded_comment_normalizes(emu: ClickUpEmulator) -> None:
    raw = recorded("webhook_task_updated_comment.json")["history_items"][0]["comment"]
    comment = connector(emu).normalize_comment(raw)  # no comment_text here: the parts are joined
    assert (comment.id, comment.body, comment.author, comment.public) == \
        ("648893191", "comment abc1234 56789", "Pieter", True)
    assert comment.created_at == datetime.fromtimestamp(1642737045.116, UTC)


def test_description_marker_line_round_trips() -> None:
    text = with_description_marker("Plan **it**\n", "jira:10001")
    assert text == "Plan **it**\n\n[//]: # (ticketbridge jira:10001)"
    assert split_description_marker(text) == ("Plan **it**", "jira:10001")
    assert split_description_marker(with_description_marker("", "jira:7")) == ("", "jira:7")
    assert split_description_marker("no marker") == ("no marker", None)
    assert with_description_marker(text, None) == "Plan **it**"


def test_small_helpers() -> None:
    assert authorization("pk_1_ABC") == "pk_1_ABC"
    assert authorization("oauth-token") == "Bearer oauth-token"
    assert to_ms("2026-01-05", "d") == to_ms("2026-01-05T00:00:00Z", "d") == 1767571200000
    assert to_ms(1767571200000, "d") == 1767571200000 and to_ms(None, "d") is None
    with pytest.raises(ValueError):
        to_ms("next week", "d")
    response = requests.Response()
    response.status_code = 400
    response._content = b'{"err": "Status does not exist", "ECODE": "CRTSK_001"}'
    assert clickup_error_message(response) == "Status does not exist (CRTSK_001)"


# -- polling -------------------------------------------------------------------------------------------

def test_poll_pages_until_the_list_ends_and_includes_closed_and_subtasks(emu: ClickUpEmulator,
                                                                        cu: ClickUpConnector) -> None:
    parent = emu.add_task("parent")
    emu.add_task("child", parent=parent["id"])
    emu.add_task("closed", status="complete")
    for n in range(200):
        emu.add_task(f"bulk {n}")
    urls = record_urls(cu)
    pages = list(cu.poll(None, {}))
    items = [item for page in pages for item in page.items]
    assert len(items) == 203 and len({i.id for i in items}) == 203
    assert {"child", "closed"} <= {i.fields["name"] for i in items}
    params = [query(url) for url in urls]
    assert [p["page"] for p in params] == ["0", "1", "2"]  # the third says last_page
    assert all(p["include_closed"] == "true" and p["subtasks"] == "true" and p["order_by"] == "created"
               for p in params)
    assert "date_updated_gt" not in params[0]
    assert [page.cursor is None for page in pages] == [True, True, False]  # only the last page carries it
    assert json.loads(pages[-1].cursor or "") == {DEFAULT_LIST_ID: max(i.version for i in items)}


def test_poll_stops_on_an_empty_page_when_last_page_is_missing(emu: ClickUpEmulator,
                                                              cu: ClickUpConnector,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    for n in range(3):
        emu.add_task(f"t{n}")
    original = cu.client.tasks_page
    calls: list[int] = []

    def without_last_page(list_id: str, params: dict[str, Any]) -> dict[str, Any]:
        calls.append(params["page"])
        body = original(list_id, params)
        body.pop("last_page", None)
        return body

    monkeypatch.setattr(cu.client, "tasks_page", without_last_page)
    assert sum(len(page.items) for page in cu.poll(None, {})) == 3
    assert calls == [0, 1]


def test_poll_refuses_a_server_that_ignores_page(emu: ClickUpEmulator, cu: ClickUpConnector,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    emu.add_task("same")
    original = cu.client.tasks_page
    monkeypatch.setattr(cu.client, "tasks_page", lambda list_id, params: {
        "tasks": original(list_id, {**params, "page": 0})["tasks"], "last_page": False})
    with pytest.raises(Permanent, match="like page"):
        list(cu.poll(None, {}))


def test_poll_looks_back_from_the_cursor_and_dedupes(emu: ClickUpEmulator, clock: FakeClock) -> None:
    cu = connector(emu, lookback_seconds=60)
    old = emu.add_task("old")
    clock.advance(minutes=10)
    recent = emu.add_task("recent")
    first = list(cu.poll(None, {}))
    cursor = first[-1].cursor
    assert json.loads(cursor or "") == {DEFAULT_LIST_ID: recent["date_updated"]}
    urls = record_urls(cu)
    again = list(cu.poll(cursor, {}))
    # The look-back window re-delivers the recent task (the engine drops it by version), not the old one.
    assert [i.fields["name"] for p in again for i in p.items] == ["recent"]
    assert query(urls[0])["date_updated_gt"] == str(int(recent["date_updated"]) - 60_000)
    clock.advance(minutes=1)
    emu.update_task(old["id"], name="old, edited")
    third = list(cu.poll(again[-1].cursor, {}))
    assert sorted(i.fields["name"] for p in third for i in p.items) == ["old, edited", "recent"]
    clock.advance(minutes=2)
    emu.update_task(old["id"], name="old, edited twice")
    # The cursor moved to the edit: recent has left the window.
    assert [i.fields["name"] for p in cu.poll(third[-1].cursor, {}) for i in p.items] == ["old, edited twice"]
    # A cursor never moves backwards, and a bare number is read as every list's.
    assert list(cu.poll("0", {}))[-1].cursor is not None
    with pytest.raises(Permanent):
        list(cu.poll("not a cursor", {}))


def test_selection_by_status_and_tags(emu: ClickUpEmulator, cu: ClickUpConnector) -> None:
    item = cu.normalize(emu.add_task("t", tags=["jira"], status="in review"))
    assert cu.selected(item, {}) and cu.selected(item, {"statuses": ["In Review"]})
    assert not cu.selected(item, {"statuses": ["to do"]})
    assert cu.selected(item, {"tags_any": ["jira"]}) and not cu.selected(item, {"tags_none": ["jira"]})
    assert not cu.selected(item, {"lists": ["123"]})


def test_comments_are_read_through_every_page_oldest_first(emu: ClickUpEmulator, cu: ClickUpConnector,
                                                           clock: FakeClock) -> None:
    task = emu.add_task("chatty")
    for n in range(30):
        clock.advance(seconds=1)
        emu.add_comment(task["id"], with_comment_marker(f"mirror {n}", f"jira:{n}") if n == 3 else f"c{n}")
    item = cu.fetch(task["id"])
    assert item.comments is not None and len(item.comments) == 30
    assert [c.body for c in item.comments[:3]] == ["c0", "c1", "c2"]
    assert item.comments[3].mirrored_from == "jira:3" and item.comments[3].body == "mirror 3"
    assert item.comments[0].author == "Ada Planner"


# -- writes and markers ----------------------------------------------------------------------------------

def test_create_writes_everything_in_one_request_with_the_marker_field(emu: ClickUpEmulator,
                                                                      cu: ClickUpConnector) -> None:
    impact = emu.field_id("Customer impact")
    result = cu.push(None, [
        Create({"name": "Plan EU billing", "description": "Scope **VAT**", "status": "In Progress",
                "priority": "high", "tags": ["jira"], "assignees": ["100003"], "due_date": "2026-04-01",
                f"custom_fields.{impact}": "many customers"}, "jira:10001"),
        AddComment("Kick-off Monday", True, "jira:50001")])
    assert result.created and result.item is not None and result.item.marker == "jira:10001"
    task = emu.task(result.item_id)
    assert task["status"]["status"] == "in progress" and task["priority"]["priority"] == "high"
    assert [t["name"] for t in task["tags"]] == ["jira"] and [a["id"] for a in task["assignees"]] == [100003]
    assert task["markdown_description"] == "Scope **VAT**"  # the marker lives in the field, not here
    values = {f["name"]: f.get("value") for f in task["custom_fields"]}
    assert values["Origin"] == "jira:10001" and values["Customer impact"] == 2
    assert int(task["due_date"]) == to_ms("2026-04-01", "d")
    assert [w[0] for w in writes(emu)] == ["POST", "POST"]  # the task, then the comment
    comment = emu.comments(result.item_id)[0]["comment_text"]
    assert comment == "Kick-off Monday\n\n[tb:jira:50001]" and result.comment_ids == {
        "jira:50001": emu.comments(result.item_id)[0]["id"]}
    fetched = cu.fetch(result.item_id)
    assert f"custom_fields.{emu.field_id('Origin')}" not in fetched.fields  # our bookkeeping is hidden
    assert fetched.fields[f"custom_fields.{impact}"] == "many customers"


def test_find_by_marker_recovers_a_created_task(emu: ClickUpEmulator, cu: ClickUpConnector) -> None:
    for n in range(120):
        emu.add_task(f"noise {n}")
    created = cu.push(None, [Create({"name": "lost answer"}, "jira:77")])
    emu.set_status(created.item_id, "complete")  # closed tasks are searched too
    for n in range(5):
        emu.add_task(f"later {n}")
    fresh = connector(emu, marker_field=emu.field_id("Origin"))  # a restarted process knows nothing
    found = fresh.find_by_marker("jira:77")
    assert found is not None and found.id == created.item_id
    assert fresh.find_by_marker("jira:78") is None
    assert fresh.find_by_marker("not a marker") is None


def test_without_marker_field_the_marker_is_a_hidden_description_line(emu: ClickUpEmulator) -> None:
    cu = connector(emu)
    created = cu.push(None, [Create({"name": "x", "description": "Body"}, "jira:5")])
    assert emu.task(created.item_id)["markdown_description"] == "Body\n\n[//]: # (ticketbridge jira:5)"
    item = cu.fetch(created.item_id)
    assert item.marker == "jira:5" and item.fields["description"] == "Body"
    cu.push(created.item_id, [Update({"description": "New body"})])  # the marker survives an edit
    assert emu.task(created.item_id)["markdown_description"] == "New body\n\n[//]: # (ticketbridge jira:5)"
    cu.push(created.item_id, [Update({"description": None})])
    assert connector(emu).find_by_marker("jira:5") is not None


def test_update_fields_status_priority_tags_assignees_and_custom_fields(emu: ClickUpEmulator,
                                                                       cu: ClickUpConnector) -> None:
    task = emu.add_task("before", tags=["old"], assignees=[100002], priority=4)
    notes, target = emu.field_id("Notes"), emu.field_id("Target date")
    emu.request_log.clear()
    result = cu.push(task["id"], [Update({"name": "after", "priority": "urgent", "tags": ["new"],
                                          "assignees": ["100003"], f"custom_fields.{notes}": "hello",
                                          f"custom_fields.{target}": "2026-05-01T12:00:00Z"}),
                                  Transition("complete")])
    assert result.item_id == task["id"] and not result.created
    after = emu.task(task["id"])
    assert after["name"] == "after" and after["priority"]["priority"] == "urgent"
    assert after["status"]["status"] == "complete"  # a Transition is a plain status write
    assert [t["name"] for t in after["tags"]] == ["new"] and [a["id"] for a in after["assignees"]] == [100003]
    values = {f["name"]: f.get("value") for f in after["custom_fields"]}
    assert values["Notes"] == "hello" and values["Target date"] == str(to_ms("2026-05-01T12:00:00Z", "d"))
    assert sorted(writes(emu)) == sorted([
        ("PUT", f"/api/v2/task/{task['id']}"), ("POST", f"/api/v2/task/{task['id']}/tag/new"),
        ("DELETE", f"/api/v2/task/{task['id']}/tag/old"), ("POST", f"/api/v2/task/{task['id']}/field/{notes}"),
        ("POST", f"/api/v2/task/{task['id']}/field/{target}")])
    cu.push(task["id"], [Update({f"custom_fields.{notes}": None, "priority": None})])
    cleared = emu.task(task["id"])
    assert cleared["priority"] is None and "value" not in next(f for f in cleared["custom_fields"]
                                                               if f["name"] == "Notes")


def test_assignee_writes_follow_what_the_last_write_left(emu: ClickUpEmulator, cu: ClickUpConnector) -> None:
    task = emu.add_task("who", assignees=[100002])
    notes = f"custom_fields.{emu.field_id('Notes')}"
    cu.push(task["id"], [Update({"assignees": ["100002", "100003"], "tags": ["a"], notes: "x"})])
    cu.push(task["id"], [Update({"assignees": ["100003"], "tags": []})])
    after = emu.task(task["id"])
    assert [a["id"] for a in after["assignees"]] == [100003] and after["tags"] == []
    assert emu.noop_writes == 0  # nothing was sent twice


@pytest.mark.parametrize("ops", [
    [Update({"status": "Shipped"})],
    [Update({"priority": "blocker"})],
    [Update({"assignees": ["ada"]})],
    [Update({"due_date": "soon"})],
    [Update({"custom_fields.00000000-0000-0000-0000-000000000000": "x"})],
    [Update({"name": "fine"}), Update({"labels": ["jira"]})],
    [AddComment("secret", False, "zendesk:1")],
])
def test_bad_values_are_refused_before_anything_is_written(emu: ClickUpEmulator, cu: ClickUpConnector,
                                                           ops: list[Any]) -> None:
    task = emu.add_task("untouched")
    cu.normalize(emu.task(task["id"]))
    emu.request_log.clear()
    with pytest.raises(Permanent):
        cu.push(task["id"], ops)
    assert writes(emu) == []
    assert emu.task(task["id"])["name"] == "untouched"


def test_dropdown_option_unknown_names_the_options(emu: ClickUpEmulator, cu: ClickUpConnector) -> None:
    task = emu.add_task("t")
    with pytest.raises(Permanent, match="options: none, some customers, many customers"):
        cu.push(task["id"], [Update({f"custom_fields.{emu.field_id('Customer impact')}": "all"})])


# -- errors, auth and rate limits ------------------------------------------------------------------------

def test_errors_are_mapped_through_the_error_table(emu: ClickUpEmulator) -> None:
    with pytest.raises(AuthError) as denied:
        connector(emu, token="pk_1_WRONG").check()
    assert "OAUTH_025" in str(denied.value) and "pk_1_WRONG" not in str(denied.value)
    cu = connector(emu)
    cu.check()
    with pytest.raises(NotFound, match="ITEM_013"):
        cu.fetch("nope")
    with pytest.raises(NotFound):
        connector(emu, lists=["999"]).check()
    task = emu.add_task("t")
    emu.fail_next(1, status=400, err="Task name invalid", ecode="INPUT_005")
    with pytest.raises(Permanent, match="Task name invalid"):
        cu.push(task["id"], [Update({"name": "ok"})])
    waits: list[float] = []
    retrying = connector(emu, retry=policy(waits))
    emu.fail_next(2, status=500)
    assert retrying.fetch(task["id"]).fields["name"] == "t"  # 5xx on a read is retried
    assert len(waits) == 2


def test_oauth_tokens_are_sent_as_bearer(emu: ClickUpEmulator) -> None:
    cu = connector(emu, token=DEFAULT_OAUTH_TOKEN)
    cu.check()
    assert cu.client.http.session.headers["Authorization"] == f"Bearer {DEFAULT_OAUTH_TOKEN}"
    assert "pk_" not in repr(cu) and emu.token not in repr(connector(emu))


def test_a_spent_budget_waits_until_x_ratelimit_reset_without_a_429() -> None:
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(seconds)

    with ClickUpEmulator(rate_limit_per_minute=3, rate_window=1.0) as emu:
        cu = connector(emu, retry=RetryPolicy(attempts=6, sleep=sleep))
        for n in range(3):
            emu.add_task(f"t{n}")
        started = time.monotonic()
        pages = [cu.fetch(t["id"]) for t in emu.tasks()]  # 2 requests each: 6 against a budget of 3
        assert len(pages) == 3
        # X-RateLimit-Remaining 0 closes the client's gate until X-RateLimit-Reset: nothing is sent into a 429.
        assert [status for _, _, status in emu.request_log if status == 429] == []
        assert cu.client.http.gate.waits and cu.client.http.retry.rate_limit_waits == 0
        # The reset header is whole unix seconds: each wait is at most that far, never the 30 s back-off cap.
        assert all(0 <= wait <= 2.1 for wait in waits) and time.monotonic() - started < 10
        assert cu.client.http.rate_limit["X-RateLimit-Limit"] == "3"


def test_a_429_waits_until_x_ratelimit_reset() -> None:
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(seconds)

    with ClickUpEmulator(rate_limit_per_minute=3, rate_window=1.0) as emu:
        task = emu.add_task("t")
        for _ in range(3):  # another client on the same token spends its budget; `cu`'s gate knows nothing
            requests.get(f"{emu.base_url}/api/v2/task/{task['id']}", headers={"Authorization": emu.token}, timeout=5)
        cu = connector(emu, retry=RetryPolicy(attempts=6, sleep=sleep))
        started = time.monotonic()
        assert cu.fetch(task["id"])
        limited = [status for _, _, status in emu.request_log if status == 429]
        assert limited and cu.client.http.retry.rate_limit_waits == len(limited)
        assert all(0 <= wait <= 2.1 for wait in waits) and time.monotonic() - started < 10


# -- configuration and mapping vocabulary ------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
CONFIG = """\
trackers:
  jira:
    type: jira
    base_url: http://127.0.0.1:8802
    auth: {email_env: JIRA_EMAIL, token_env: JIRA_API_TOKEN}
    statuses: [To Do, In Progress, In Review, Done]
    priorities: [Highest, High, Medium, Low, Lowest]
  clickup:
    type: clickup
    base_url: https://api.clickup.com/api/v2
    auth: {token_env: CLICKUP_TOKEN}
    list_id: 901500000301
    statuses: [to do, in progress, in review, complete]
flows:
  - mapping: jira-clickup.yaml
"""


def write_config(tmp_path: Path, text: str, mapping: str | None = None) -> Path:
    (tmp_path / "jira-clickup.yaml").write_text(
        mapping if mapping is not None else (ROOT / "mappings" / "jira-clickup.yaml").read_text(encoding="utf-8"),
        encoding="utf-8")
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_config_reads_a_clickup_tracker_and_the_shipped_mapping(tmp_path: Path) -> None:
    from ticketbridge.connectors import build_connector
    from ticketbridge.sync.config import load_config

    config = load_config(write_config(tmp_path, CONFIG), env={})
    tracker = config.trackers["clickup"]
    assert tracker.lists == ("901500000301",) and tracker.email_env is None  # an unquoted id becomes text
    many = load_config(write_config(tmp_path, CONFIG.replace("list_id: 901500000301",
                                                             'lists: ["1", 2]\n    marker_field: 6d4f640b-8099')),
                       env={}).trackers["clickup"]
    assert many.lists == ("1", "2") and many.marker_field == "6d4f640b-8099"
    built = build_connector(tracker, {"JIRA_EMAIL": "e", "JIRA_API_TOKEN": "t", "CLICKUP_TOKEN": "pk_9_X"})
    assert isinstance(built, ClickUpConnector) and built.lists == ("901500000301",)
    assert built.client.http.base_url == "https://api.clickup.com"  # /api/v2 is added per request


@pytest.mark.parametrize(("old", "new", "message"), [
    ("    list_id: 901500000301\n", "", "needs list_id"),
    ("    list_id: 901500000301\n", "    list_id: 1\n    lists: [\"2\"]\n", "either list_id or lists"),
    ("    list_id: 901500000301\n", "    list_id: li-12\n", "ClickUp list id"),
    ("    statuses: [To Do,", "    list_id: \"1\"\n    statuses: [To Do,", "applies to clickup trackers only"),
])
def test_config_problems_for_clickup_trackers(tmp_path: Path, old: str, new: str, message: str) -> None:
    from ticketbridge.sync.config import validate

    assert old in CONFIG
    problems = validate(write_config(tmp_path, CONFIG.replace(old, new, 1)))
    assert any(message in p.message for p in problems), problems


def test_mapping_vocabulary_checks_clickup_fields_and_tables(tmp_path: Path) -> None:
    from ticketbridge.sync.config import validate

    assert validate(write_config(tmp_path, CONFIG)) == []
    shipped = (ROOT / "mappings" / "jira-clickup.yaml").read_text(encoding="utf-8")
    wrong_field = shipped.replace("    right: name\n", "    right: title\n", 1)
    problems = validate(write_config(tmp_path, CONFIG, wrong_field))
    assert any("title" in p.message and "custom_fields.<field id>" in p.message for p in problems), problems
    missing_status = shipped.replace("      in review: In Review\n", "", 1)
    problems = validate(write_config(tmp_path, CONFIG, missing_status))
    assert any("in review" in p.message for p in problems), problems
    custom = shipped.replace("    right: name\n", "    right: custom_fields.6d4f640b-8099-5370-a46b-39bb80d1adea\n",
                             1)
    assert validate(write_config(tmp_path, CONFIG, custom)) == []
