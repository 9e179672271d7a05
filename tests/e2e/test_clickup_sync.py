"""Jira -> ClickUp end to end on the sandbox, through mappings/jira-clickup.yaml, the real connectors,
open_runtime and the store."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from ticketbridge.cli import open_runtime
from ticketbridge.connectors.http import RetryPolicy
from ticketbridge.sandbox import Sandbox
from ticketbridge.sync.config import load_config
from ticketbridge.sync.engine import Engine, Flow, PassStats
from ticketbridge.sync.store import Store

from .conftest import MAPPING, REPO, writes

CLICKUP_MAPPING = REPO / "mappings" / "jira-clickup.yaml"


@dataclass
class Planning:
    sandbox: Sandbox
    store: Store
    flow: Flow

    def sync(self) -> PassStats:
        return Engine(self.store, [self.flow]).sync_once()

    def sync_until_quiet(self, limit: int = 6) -> PassStats:
        total = PassStats()
        for _ in range(limit):
            stats = self.sync()
            total.merge(stats)
            assert not stats.failures and not stats.halts, (stats.failures, stats.halts)
            if stats.writes == 0:
                return total
        raise AssertionError(f"still writing after {limit} passes: {total}")

    def task_of(self, issue: dict[str, Any]) -> dict[str, Any]:
        link = self.store.link_for("jira-clickup", "left", str(issue["id"]))
        assert link is not None, f"{issue['key']} is not linked"
        return self.sandbox.clickup.task(link.right_id)

    def assert_second_pass_writes_nothing(self) -> None:
        before = writes(self.sandbox)
        stats = self.sync()
        assert stats.writes == 0 and not stats.failures
        assert writes(self.sandbox) == before, "a pass after quiet wrote to a tracker"


@pytest.fixture
def planning(tmp_path: Path) -> Iterator[Planning]:
    with Sandbox(port=0) as sandbox:
        config_path = sandbox.write_config(tmp_path / "config.yaml", store_url=f"sqlite:///{tmp_path / 'tb.db'}",
                                           mapping=MAPPING, clickup_mapping=CLICKUP_MAPPING)
        config = load_config(config_path, env=sandbox.credentials())
        runtime = open_runtime(config, sandbox.credentials(),
                               retry=RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.1))
        flow = next(f for f in runtime.flows if f.name == "jira-clickup")
        yield Planning(sandbox, runtime.store, flow)
        runtime.store.close()


def new_issue(sandbox: Sandbox, summary: str, **fields: Any) -> dict[str, Any]:
    fields.setdefault("labels", ["planning"])
    return sandbox.jira.create_issue(summary=summary, **fields)


def test_a_jira_issue_becomes_one_clickup_task_and_a_second_pass_writes_nothing(planning: Planning) -> None:
    jira, clickup = planning.sandbox.jira, planning.sandbox.clickup
    issue = new_issue(planning.sandbox, "Plan the EU billing rework", description="Scope the VAT changes.",
                      priority="Highest")
    new_issue(planning.sandbox, "Not for planning", labels=[])  # outside the flow's JQL
    jira.add_comment(issue["key"], "Kick-off on Monday.", author="Dev One")
    stats = planning.sync_until_quiet()
    assert stats.created == {"left_to_right": 1}
    assert len(clickup.tasks()) == 1
    task = planning.task_of(issue)
    assert task["name"] == "Plan the EU billing rework"
    assert task["markdown_description"] == "Scope the VAT changes."
    assert task["status"]["status"] == "to do" and task["priority"]["priority"] == "urgent"
    assert [t["name"] for t in task["tags"]] == ["jira"]
    origin = {f["name"]: f.get("value") for f in task["custom_fields"]}["Origin"]
    assert origin == f"jira:{issue['id']}"  # the marker, in the list's Origin field
    comments = [c["comment_text"] for c in clickup.comments(task["id"])]
    assert len(comments) == 1 and "Kick-off on Monday." in comments[0]
    assert comments[0].endswith(f"[tb:jira:{jira.issue(issue['id'])['fields']['comment']['comments'][0]['id']}]")
    planning.assert_second_pass_writes_nothing()
    assert len(clickup.tasks()) == 1 and len(clickup.comments(task["id"])) == 1


def test_jira_status_and_priority_changes_reach_clickup(planning: Planning) -> None:
    issue = new_issue(planning.sandbox, "Export order history", priority="Medium")
    planning.sync_until_quiet()
    planning.sandbox.jira.transition(issue["key"], "In Progress")
    planning.sandbox.jira.edit(issue["key"], priority={"name": "Low"})
    before = writes(planning.sandbox)
    planning.sync_until_quiet()
    assert writes(planning.sandbox) - before == 1  # one PUT carries both fields
    task = planning.task_of(issue)
    assert task["status"]["status"] == "in progress" and task["priority"]["priority"] == "low"
    planning.sandbox.jira.transition(issue["key"], "Done")
    planning.sync_until_quiet()
    assert planning.task_of(issue)["status"]["status"] == "complete"
    planning.assert_second_pass_writes_nothing()


def test_clickup_status_and_comment_reach_jira_once(planning: Planning) -> None:
    jira, clickup = planning.sandbox.jira, planning.sandbox.clickup
    issue = new_issue(planning.sandbox, "Retire the legacy pricing page")
    planning.sync_until_quiet()
    task = planning.task_of(issue)
    clickup.set_status(task["id"], "in review")
    clickup.add_comment(task["id"], "Planned for sprint 12.")
    stats = planning.sync_until_quiet()
    assert stats.fields_pushed["right_to_left"] == 1 and stats.comments_mirrored["right_to_left"] == 1
    assert jira.issue(issue["id"])["fields"]["status"]["name"] == "In Review"
    bodies = [str(c["body"]) for c in jira.issue(issue["id"])["fields"]["comment"]["comments"]]
    assert len(bodies) == 1 and "Planned for sprint 12." in bodies[0] and "tb:clickup:" in bodies[0]
    clickup.set_status(task["id"], "complete")
    planning.sync_until_quiet()
    assert jira.issue(issue["id"])["fields"]["status"]["name"] == "Done"
    planning.assert_second_pass_writes_nothing()
    # The mirrored comment never came back to ClickUp.
    assert [c["comment_text"] for c in clickup.comments(task["id"])] == ["Planned for sprint 12."]


def test_clickup_change_to_the_newest_jira_issue_syncs_in_the_next_pass(planning: Planning) -> None:
    """Jira's look-back always re-delivers its newest issue unchanged; the ClickUp side of that
    very pair must still be synced in the same pass."""
    issue = new_issue(planning.sandbox, "Newest issue")
    planning.sync_until_quiet()
    planning.sandbox.clickup.set_status(planning.task_of(issue)["id"], "in progress")
    planning.sync_until_quiet()
    assert planning.sandbox.jira.issue(issue["id"])["fields"]["status"]["name"] == "In Progress"


def test_an_issue_taken_out_of_planning_stops_syncing_both_ways_and_resumes_without_echo(
        planning: Planning) -> None:
    jira, clickup = planning.sandbox.jira, planning.sandbox.clickup
    issue = new_issue(planning.sandbox, "Rework the invoice export", labels=["planning", "billing"])
    planning.sync_until_quiet()
    task = planning.task_of(issue)
    jira.edit(issue["key"], labels=["billing"])  # an engineer takes it out of planning
    planning.sync_until_quiet()
    # Out of the JQL: the task's changes stay in ClickUp, the issue's stay in Jira.
    clickup.set_status(task["id"], "complete")
    clickup.add_comment(task["id"], "Moved to next quarter.")
    jira.edit(issue["key"], summary="Rework the invoice export (v2)")
    jira.add_comment(issue["key"], "Needs the new tax tables.", author="Dev One")
    before, searches = writes(planning.sandbox), jira.count("POST", "/rest/api/3/search/jql")
    stats = planning.sync()
    assert not stats.failures and writes(planning.sandbox) == before
    # The poll's search, and one more to read the issue within the JQL (plus a plain read, as it missed).
    assert jira.count("POST", "/rest/api/3/search/jql") - searches == 2
    assert jira.issue(issue["id"])["fields"]["status"]["name"] == "To Do"
    assert len(jira.issue(issue["id"])["fields"]["comment"]["comments"]) == 1
    assert planning.task_of(issue)["name"] == "Rework the invoice export"
    assert [c["comment_text"] for c in clickup.comments(task["id"])] == ["Moved to next quarter."]
    assert planning.store.link_for("jira-clickup", "left", str(issue["id"])) is not None  # paused, not unlinked
    # Back in planning: both sides' changes made meanwhile sync once, and nothing echoes.
    jira.edit(issue["key"], labels=["billing", "planning"])
    planning.sync_until_quiet()
    assert jira.issue(issue["id"])["fields"]["status"]["name"] == "Done"
    task = planning.task_of(issue)
    assert task["name"] == "Rework the invoice export (v2)" and task["status"]["status"] == "complete"
    assert len(jira.issue(issue["id"])["fields"]["comment"]["comments"]) == 2
    assert len(clickup.comments(task["id"])) == 2
    planning.assert_second_pass_writes_nothing()


def test_a_task_change_reads_an_issue_outside_the_poll_with_one_search(planning: Planning) -> None:
    """The JQL membership check of an issue the poll did not return replaces its plain read: a
    pair in planning costs no request more than before."""
    jira, clickup = planning.sandbox.jira, planning.sandbox.clickup
    real_clock = jira.clock
    jira.clock = lambda: real_clock() - timedelta(hours=1)  # older than the poll's look-back
    issue = new_issue(planning.sandbox, "Old planning issue")
    planning.sync_until_quiet()
    jira.clock = real_clock
    new_issue(planning.sandbox, "New planning issue")
    planning.sync_until_quiet()
    clickup.set_status(planning.task_of(issue)["id"], "in progress")
    searches = jira.count("POST", "/rest/api/3/search/jql")
    path = f"/rest/api/3/issue/{issue['id']}"
    reads = sum(1 for method, seen, _ in jira.request_log if (method, seen) == ("GET", path))
    planning.sync()
    assert jira.issue(issue["id"])["fields"]["status"]["name"] == "In Progress"
    assert jira.count("POST", "/rest/api/3/search/jql") - searches == 2  # the poll, the issue in its JQL
    assert sum(1 for method, seen, _ in jira.request_log if (method, seen) == ("GET", path)) == reads
    planning.assert_second_pass_writes_nothing()


def test_the_sandbox_runs_clickup_next_to_the_others() -> None:
    sandbox = Sandbox(port=0)
    assert sandbox.clickup.port not in {e.port for name, e in sandbox.emulators.items() if name != "clickup"}
    assert sandbox.credentials()["CLICKUP_TOKEN"].startswith("pk_")
    text = sandbox.describe()
    assert f"clickup   {sandbox.clickup.base_url}" in text
    assert f"export CLICKUP_TOKEN={sandbox.clickup.token}" in text
    for emulator in sandbox.emulators.values():  # never started: close the sockets
        emulator._httpd.server_close()
