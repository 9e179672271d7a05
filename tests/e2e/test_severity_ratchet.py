"""sla-semantics E11 end to end: engineering may raise a ticket's severity through the GitHub
label, never lower it. A lowering is refused: the label is set back, one internal note says why,
and the clocks do not change. The whole runtime runs on the emulators: Zendesk, Jira, GitHub."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ticketbridge.cli import Runtime, open_runtime
from ticketbridge.connectors.http import RetryPolicy
from ticketbridge.sandbox import Sandbox
from ticketbridge.sync.config import load_config
from ticketbridge.sync.engine import PassStats

from .conftest import MAPPING, POLICY

GITHUB_MAPPING = MAPPING.with_name("zendesk-github.yaml")
SUPPORT_LEVEL, SEVERITY_FIELD = 360004, 360103  # "Support level", "SLA severity" (written by the SLA service)


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[tuple[Sandbox, Runtime]]:
    with Sandbox(port=0) as sandbox:
        path = sandbox.write_config(tmp_path / "config.yaml", store_url=f"sqlite:///{tmp_path / 'tb.db'}",
                                    mapping=MAPPING, policy=POLICY, escalation_mapping=GITHUB_MAPPING)
        config = load_config(path, env=sandbox.credentials())
        made = open_runtime(config, sandbox.credentials(), retry=RetryPolicy(attempts=4, base_delay=0.01,
                                                                             max_delay=0.1))
        yield sandbox, made
        made.store.close()


def sync_until_quiet(made: Runtime) -> PassStats:
    total = PassStats()
    for _ in range(6):
        stats = made.engine().sync_once()
        total.merge(stats)
        if stats.writes == 0 and not stats.failures and not stats.escalations:
            return total
    raise AssertionError(f"still writing: {total}")


def labels(sandbox: Sandbox, number: int) -> list[str]:
    return [label["name"] for label in sandbox.github.issue(sandbox.github.repo_names[0], number)["labels"]]


def refusals(sandbox: Sandbox, ticket_id: int) -> list[dict[str, Any]]:
    return [c for c in sandbox.zendesk.comments(ticket_id) if "refused" in c["body"]]


def test_engineering_cannot_lower_severity_through_the_github_label(runtime: tuple[Sandbox, Runtime]) -> None:
    sandbox, made = runtime
    ticket = sandbox.zendesk.add_ticket(subject="Checkout down for all EU customers", priority="urgent",
                                        comment={"body": "Nobody can pay."})
    sync_until_quiet(made)
    sandbox.zendesk.update_ticket(ticket["id"], custom_fields=[{"id": SUPPORT_LEVEL, "value": "L2"}])
    sync_until_quiet(made)  # Sev1 is never held back by the template: the GitHub issue exists now
    link = made.store.link_for("zendesk-github", "left", str(ticket["id"]))
    assert link is not None
    number = int(link.right_key.rsplit("#", 1)[1])
    assert "severity:sev1" in labels(sandbox, number)
    before = made.store.sla_ticket("zendesk", str(ticket["id"]))
    assert before is not None and before.summary is not None
    due_before = {c["metric"]: c["due_at"] for c in before.summary["clocks"]}

    others = [label for label in labels(sandbox, number) if not label.startswith("severity:")]
    sandbox.github.edit_issue(sandbox.github.repo_names[0], number, labels=[*others, "severity:sev3"])
    sync_until_quiet(made)

    assert "severity:sev1" in labels(sandbox, number) and "severity:sev3" not in labels(sandbox, number)
    assert set(others) <= set(labels(sandbox, number))  # the engineers' labels stay
    notes = refusals(sandbox, ticket["id"])
    assert len(notes) == 1 and not notes[0]["public"]
    assert "Severity sev3 from github refused" in notes[0]["body"]
    after = made.store.sla_ticket("zendesk", str(ticket["id"]))
    assert after is not None and after.summary is not None and after.summary["severity"] == "sev1"
    assert {c["metric"]: c["due_at"] for c in after.summary["clocks"]} == due_before

    sync_until_quiet(made)  # quiet: no second note, the label stays
    assert len(refusals(sandbox, ticket["id"])) == 1 and "severity:sev1" in labels(sandbox, number)


def test_engineering_may_raise_severity_through_the_github_label(runtime: tuple[Sandbox, Runtime]) -> None:
    sandbox, made = runtime
    ticket = sandbox.zendesk.add_ticket(subject="Report totals are rounded wrongly", priority="normal",
                                        comment={"body": "The totals differ by one cent."})
    sync_until_quiet(made)
    sandbox.zendesk.update_ticket(ticket["id"], custom_fields=[
        {"id": SUPPORT_LEVEL, "value": "L2"}, {"id": 360008, "value": "2026-12-01"},
        {"id": 360009, "value": "Open the monthly report"}, {"id": 360002, "value": "production"},
        {"id": 360011, "value": "Windows 11"}, {"id": 360012, "value": "Edge"}, {"id": 360003, "value": "sev3"}])
    sync_until_quiet(made)
    link = made.store.link_for("zendesk-github", "left", str(ticket["id"]))
    assert link is not None
    number = int(link.right_key.rsplit("#", 1)[1])
    assert "severity:sev3" in labels(sandbox, number)
    others = [label for label in labels(sandbox, number) if not label.startswith("severity:")]
    sandbox.github.edit_issue(sandbox.github.repo_names[0], number, labels=[*others, "severity:sev2"])
    sync_until_quiet(made)

    summary = made.store.sla_ticket("zendesk", str(ticket["id"]))
    assert summary is not None and summary.summary is not None and summary.summary["severity"] == "sev2"
    assert "severity:sev2" in labels(sandbox, number) and not refusals(sandbox, ticket["id"])
    fields = {f["id"]: f["value"] for f in sandbox.zendesk.ticket(ticket["id"])["custom_fields"]}
    assert fields[SEVERITY_FIELD] == "sev2"
