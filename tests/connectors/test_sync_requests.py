"""What a zendesk-jira backfill costs in requests, and that the savings change no outcome.

Issue 8's backfill figure (bench/backfill.py) counts requests against a lower bound; these tests pin
the two savings behind it on a small backfill: the pass that reads back the issues we just created
reads no ticket again (`_FlowPass._echo`), and a new issue's transition needs no read once the first
issue of its kind was created (`JiraConnector._transition_new`).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ticketbridge.cli import Runtime, open_runtime
from ticketbridge.connectors.http import RetryPolicy
from ticketbridge.sandbox import Sandbox
from ticketbridge.sync.config import load_config

from ..clock import FakeClock

MAPPING = Path(__file__).resolve().parents[2] / "mappings" / "zendesk-jira.yaml"
STATUSES = ("new", "open", "solved", "pending")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))


@pytest.fixture
def sandbox(clock: FakeClock) -> Iterator[Sandbox]:
    with Sandbox(port=0, clock=clock) as running:
        for number in range(1, 5):
            running.zendesk.add_ticket(
                subject=f"Ticket {number}", comment={"body": f"Description {number}"}, priority="normal",
                status=STATUSES[number - 1],
                comments=[{"body": f"Reply {k} on {number}", "public": True} for k in (1, 2)])
        yield running


@pytest.fixture
def runtime(tmp_path: Path, sandbox: Sandbox) -> Iterator[Runtime]:
    config = load_config(sandbox.write_config(tmp_path / "config.yaml", mapping=MAPPING,
                                              store_url=f"sqlite:///{tmp_path / 'tb.db'}"),
                         env=sandbox.credentials())
    made = open_runtime(config, sandbox.credentials(), retry=RetryPolicy(attempts=3, base_delay=0.01))
    yield made
    made.store.close()


def requests(sandbox: Sandbox) -> dict[str, list[tuple[str, str]]]:
    """The requests since the last call, per tracker (the logs are cleared)."""
    seen = {}
    for name, emulator in (("zendesk", sandbox.zendesk), ("jira", sandbox.jira)):
        seen[name] = [(method, path) for method, path, _ in emulator.request_log]
        emulator.request_log.clear()
    return seen


def test_a_backfill_costs_its_reads_creates_transitions_and_comments_and_the_echo_pass_reads_no_ticket(
        sandbox: Sandbox, runtime: Runtime) -> None:
    engine = runtime.engine()
    requests(sandbox)
    first = engine.sync_once()
    assert sum(first.created.values()) == 4 and not first.failures
    made = requests(sandbox)
    comment_reads = [r for r in made["zendesk"] if r[0] == "GET" and r[1].endswith("/comments")]
    assert len(comment_reads) == 4  # one page per ticket
    jira_writes = [r for r in made["jira"] if r[0] == "POST" and not r[1].endswith("/search/jql")]
    # 4 creates, 8 comments, 3 transitions (one ticket is new: its issue stays in To Do), and one
    # read of the start status and its transitions for the first issue of the kind.
    assert len([r for r in jira_writes if r[1].endswith("/issue")]) == 4
    assert len([r for r in jira_writes if r[1].endswith("/comment")]) == 8
    assert len([r for r in jira_writes if r[1].endswith("/transitions")]) == 3
    assert len([r for r in made["jira"] if r[0] == "GET" and "/issue/" in r[1]]) == 2

    echo = engine.sync_once()  # reads back the issues we created: every one equals its snapshot
    assert echo.writes == 0 and not echo.failures
    made = requests(sandbox)
    assert [path for _, path in made["zendesk"]] == ["/api/v2/incremental/tickets/cursor"]
    assert all(path.endswith("/search/jql") for _, path in made["jira"])

    assert engine.sync_once().writes == 0  # the look-back re-delivers the issues: known versions
    assert not any("/issue/" in path for _, path in requests(sandbox)["jira"])


def test_after_an_echo_pass_changes_on_either_side_still_sync(sandbox: Sandbox, runtime: Runtime,
                                                              clock: FakeClock) -> None:
    engine = runtime.engine()
    engine.sync_once()
    clock.advance(minutes=1)
    assert engine.sync_once().writes == 0
    issues = {issue["fields"]["summary"]: issue for issue in sandbox.jira.issues()}
    clock.advance(minutes=1)
    sandbox.zendesk.update_ticket(1, subject="Ticket 1 renamed")
    sandbox.jira.transition(issues["[ZD #2] Ticket 2"]["id"], "Done")
    sandbox.jira.add_comment(issues["[ZD #3] Ticket 3"]["id"], "An engineer's question")
    for _ in range(4):
        clock.advance(minutes=1)
        if engine.sync_once().writes == 0:
            break
    summaries = {issue["fields"]["summary"] for issue in sandbox.jira.issues()}
    assert "[ZD #1] Ticket 1 renamed" in summaries
    assert sandbox.zendesk.ticket(2)["status"] == "solved"
    assert any("An engineer's question" in c["body"] and not c["public"] for c in sandbox.zendesk.comments(3))


def test_an_issue_changed_while_its_ticket_was_out_of_the_selection_syncs_when_the_ticket_is_back(
        sandbox: Sandbox, runtime: Runtime, clock: FakeClock) -> None:
    """The ticket comes back unchanged in every mapped field (only the tag no_jira went): not an echo
    of our last write, so the issue, changed meanwhile and long out of Jira's look-back, is read."""
    engine = runtime.engine()
    engine.sync_once()
    engine.sync_once()
    issue = next(i for i in sandbox.jira.issues() if i["fields"]["summary"] == "[ZD #2] Ticket 2")
    sandbox.zendesk.update_ticket(2, tags=["no_jira"])
    clock.advance(minutes=5)
    engine.sync_once()  # paused
    sandbox.jira.transition(issue["id"], "Done")
    sandbox.jira.add_comment(issue["id"], "Fixed in the cache layer")
    clock.advance(minutes=5)
    engine.sync_once()  # the issue's change: still paused
    assert sandbox.zendesk.ticket(2)["status"] == "open"
    clock.advance(hours=2)  # another issue changes much later: Jira's cursor moves past the look-back
    other = next(i for i in sandbox.jira.issues() if i["fields"]["summary"] == "[ZD #3] Ticket 3")
    sandbox.jira.add_comment(other["id"], "Unrelated")
    clock.advance(minutes=1)
    engine.sync_once()
    clock.advance(minutes=5)
    sandbox.zendesk.update_ticket(2, tags=[])
    clock.advance(minutes=5)
    for _ in range(4):
        clock.advance(minutes=1)
        if engine.sync_once().writes == 0:
            break
    assert sandbox.zendesk.ticket(2)["status"] == "solved"
    assert any("cache layer" in c["body"] for c in sandbox.zendesk.comments(2))
