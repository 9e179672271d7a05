"""Zendesk -> GitHub escalation end to end on the emulators: redaction (E9), idempotent creation
(E10), the post-scan tripwire, follower links and back-propagation to every linked ticket."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ticketbridge.cli import open_runtime
from ticketbridge.connectors.errors import Unsure
from ticketbridge.connectors.http import RetryPolicy
from ticketbridge.sandbox import Sandbox
from ticketbridge.sync.config import load_config, validate
from ticketbridge.sync.engine import Engine, Flow, PassStats
from ticketbridge.sync.policy.redact import KINDS, RedactionRules
from ticketbridge.sync.scrubbing import Scrubber
from ticketbridge.sync.store import FOLLOWER, PRIMARY, Store

from .conftest import writes

REPO = Path(__file__).resolve().parents[2]
MAPPING = REPO / "mappings" / "zendesk-github.yaml"
FLOW = "zendesk-github"
GH_REPO = "acme/app"
APP = "app"  # the emulator's helpers name the repo without its owner

CONFIG = """\
store:
  url: {store_url}
trackers:
  zendesk:
    type: zendesk
    base_url: {zendesk}
    auth: {{email_env: ZENDESK_EMAIL, token_env: ZENDESK_API_TOKEN}}
    poll_interval: 5s
  github:
    type: github
    base_url: {github}
    auth: {{token_env: GITHUB_TOKEN}}
    repos: [{repo}]
    poll_interval: 5s
flows:
  - name: {flow}
    mapping: {mapping}
"""


@dataclass
class Escalation:
    sandbox: Sandbox
    store: Store
    flow: Flow

    @property
    def engine(self) -> Engine:
        # Timed-out writes are retried at the next pass here (the emulators answer at once; in
        # production an unsure write waits UNSURE_GRACE, see tests/reliability/test_faults.py).
        return Engine(self.store, [self.flow], unsure_grace=0)

    def sync(self) -> PassStats:
        return self.engine.sync_once()

    def issues(self) -> list[dict[str, Any]]:
        return [i for i in self.sandbox.github.issues(APP) if "pull_request" not in i]

    def notes(self, ticket_id: int) -> list[dict[str, Any]]:
        """The ticket's comments after its description."""
        return self.sandbox.zendesk.comments(ticket_id)[1:]


def write_config(tmp_path: Path, sandbox: Sandbox) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG.format(store_url=f"sqlite:///{tmp_path / 'tb.db'}", zendesk=sandbox.zendesk.base_url,
                                  github=sandbox.github.base_url, repo=GH_REPO, flow=FLOW, mapping=MAPPING))
    return path


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(port=0) as running:
        yield running


@pytest.fixture
def esc(tmp_path: Path, sandbox: Sandbox) -> Iterator[Escalation]:
    config = load_config(write_config(tmp_path, sandbox), env=sandbox.credentials())
    runtime = open_runtime(config, sandbox.credentials(), retry=RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.1))
    yield Escalation(sandbox, runtime.store, runtime.flows[0])
    runtime.store.close()


def jane_doe_ticket(sandbox: Sandbox, text: str) -> int:
    """A ticket from Jane Doe of ACME GmbH (her phone and email on her profile)."""
    org = sandbox.zendesk.add_organization("ACME GmbH")
    jane = sandbox.zendesk.add_user("Jane Doe", "jane.doe@example.com", phone="+49 30 1234567",
                                    organization_id=org["id"])
    ticket = sandbox.zendesk.add_ticket(subject="CSV export fails", comment={"body": text, "public": True},
                                        requester_id=jane["id"])
    return int(ticket["id"])


def test_shipped_mapping_validates_with_a_config_naming_it(tmp_path: Path, sandbox: Sandbox) -> None:
    assert validate(write_config(tmp_path, sandbox)) == []


def test_e9_pii_is_redacted_and_the_back_link_names_the_ticket_only(esc: Escalation) -> None:
    ticket = jane_doe_ticket(esc.sandbox, "call +49 30 1234567 or jane.doe@example.com (Jane Doe, ACME GmbH)")
    outcome = esc.engine.escalate(FLOW, str(ticket))
    assert outcome.created and outcome.blocked is None and outcome.link is not None
    [issue] = esc.issues()
    assert issue["body"] == (
        "call [REDACTED:phone] or [REDACTED:email] ([REDACTED:requester_identity], [REDACTED:requester_identity])"
        f"\n\n---\nZendesk #{ticket}\n\n<!-- ticketbridge: zendesk:{ticket} -->")
    assert issue["title"] == "CSV export fails"
    assert [label["name"] for label in issue["labels"]] == ["from-support"]
    # No link to the desk other than the ticket number: no URL, no attachment.
    assert esc.sandbox.zendesk.base_url not in issue["body"] and "http" not in issue["body"]
    assert esc.sandbox.github.comments(APP, issue["number"]) == []
    assert outcome.link.role == PRIMARY and outcome.link.right_id == f"{GH_REPO}#{issue['number']}"


def test_the_pass_never_creates_in_an_on_escalation_flow(esc: Escalation) -> None:
    jane_doe_ticket(esc.sandbox, "The export is broken.")
    stats = esc.sync()
    assert stats.created == {} and esc.issues() == []
    assert esc.store.count_links(FLOW) == 0


def test_e10_escalating_twice_makes_one_issue(esc: Escalation) -> None:
    ticket = jane_doe_ticket(esc.sandbox, "The export is broken.")
    first = esc.engine.escalate(FLOW, str(ticket), extra_fields={"labels": ["severity:sev2"]},
                                appendix="Steps to reproduce: open Reports, click Export")
    second = esc.engine.escalate(FLOW, str(ticket), extra_fields={"labels": ["severity:sev2"]})
    assert first.created and not second.created
    assert second.link == first.link or (second.link and second.link.id == first.link.id)  # type: ignore[union-attr]
    [issue] = esc.issues()
    assert sorted(label["name"] for label in issue["labels"]) == ["from-support", "severity:sev2"]
    assert issue["body"].startswith("The export is broken.\n\nSteps to reproduce: open Reports, click Export\n\n---\n")
    assert esc.sync().writes == 0


def test_e10_a_github_timeout_after_the_create_is_adopted_on_retry(esc: Escalation) -> None:
    ticket = jane_doe_ticket(esc.sandbox, "The export is broken.")
    esc.sandbox.github.faults.timeout_seconds = 1.5
    esc.flow.right.client.http.timeout = (2.0, 0.4)  # type: ignore[attr-defined]
    esc.sandbox.github.answer_late(1)
    with pytest.raises(Unsure):
        esc.engine.escalate(FLOW, str(ticket))
    assert len(esc.issues()) == 1, "GitHub created the issue although its answer was lost"
    failure = esc.store.open_failure(FLOW, "zendesk", str(ticket))
    assert failure is not None and failure.reason == "unsure"

    retried = esc.engine.escalate(FLOW, str(ticket))
    assert retried.link is not None and not retried.created
    assert len(esc.issues()) == 1
    assert esc.store.pending_intents(FLOW) == []
    assert esc.store.open_failure(FLOW, "zendesk", str(ticket)) is None
    assert esc.sync().writes == 0


def test_e10_the_pass_adopts_an_interrupted_escalation_without_creating(esc: Escalation) -> None:
    ticket = jane_doe_ticket(esc.sandbox, "The export is broken.")
    esc.sandbox.github.faults.timeout_seconds = 1.5
    esc.flow.right.client.http.timeout = (2.0, 0.4)  # type: ignore[attr-defined]
    esc.sandbox.github.answer_late(1)
    with pytest.raises(Unsure):
        esc.engine.escalate(FLOW, str(ticket))
    esc.sync()  # recovery: the failed ticket is fetched again and its issue found by the marker
    assert len(esc.issues()) == 1
    assert esc.store.link_for(FLOW, "left", str(ticket)) is not None


def test_post_scan_blocks_pii_the_rules_do_not_scrub(esc: Escalation) -> None:
    # A policy written before url_query_tokens existed (or trimmed by an admin) does not scrub
    # secrets in URLs. A customer pastes the magic link from their export email, session token
    # included: the scrubber leaves it, and the post-scan, which looks for every kind, must stop
    # it before it reaches a GitHub issue anyone may read.
    esc.flow.scrub = Scrubber(RedactionRules(scrub=tuple(k for k in KINDS if k != "url_query_tokens")))
    ticket = jane_doe_ticket(esc.sandbox, "The export link fails: "
                                          "https://app.example.com/export/77?session=9f8e7d6c5b4a39281706 gives 500")
    outcome = esc.engine.escalate(FLOW, str(ticket))
    assert outcome == type(outcome)(link=None, created=False, blocked="pii_detected: url_query_tokens")
    assert esc.issues() == []
    assert esc.store.pending_intents(FLOW) == [], "nothing was about to be created"
    failure = esc.store.open_failure(FLOW, "zendesk", str(ticket))
    assert failure is not None and (failure.kind, failure.reason) == ("halt", "pii_detected")
    assert failure.message == "pii_detected: url_query_tokens"  # the kind, never the value
    [note] = esc.notes(ticket)
    assert note["public"] is False and "personal data (url_query_tokens)" in note["body"]
    assert "9f8e7d6c" not in note["body"]

    # Asking again, or a pass seeing the ticket (it changed: the note), adds no second note.
    assert esc.engine.escalate(FLOW, str(ticket)).blocked == "pii_detected: url_query_tokens"
    esc.sync()
    assert len(esc.notes(ticket)) == 1 and esc.issues() == []


def test_follower_tickets_get_engineering_updates_and_never_write_to_the_issue(esc: Escalation) -> None:
    zendesk, github = esc.sandbox.zendesk, esc.sandbox.github
    a = jane_doe_ticket(esc.sandbox, "The export is broken for us.")
    b = int(zendesk.add_ticket(subject="Export button does nothing", comment={"body": "Same here."},
                               status="open")["id"])
    escalated = esc.engine.escalate(FLOW, str(a))
    assert escalated.link is not None
    issue_key = escalated.link.right_key
    number = int(issue_key.split("#")[1])
    attached = esc.engine.attach(FLOW, str(b), issue_key)
    assert attached.role == FOLLOWER and attached.right_id == escalated.link.right_id
    assert esc.engine.attach(FLOW, str(b), issue_key).id == attached.id  # idempotent
    assert [link.left_id for link in esc.store.links_for(FLOW, "right", issue_key)] == [str(a), str(b)]
    esc.sync()
    before = github.issue(APP, number)

    # B's subject changes: nothing reaches the issue.
    zendesk.update_ticket(b, subject="Export button does nothing (urgent)")
    esc.sync()
    assert github.issue(APP, number)["title"] == before["title"] == "CSV export fails"

    # Engineering comments and closes the issue: both tickets get it.
    github.add_comment(APP, number, "Fixed in 2.4.1, rolling out now.", user="dev-one")
    github.close(APP, number, state_reason="completed")
    # A changes in the same pass (an agent's note): A is synced first, from the desk side, and the
    # issue must still reach B in this same pass.
    zendesk.add_comment(a, "Customer asks for an ETA.", public=False)
    notes_before = {t: len(esc.notes(t)) for t in (a, b)}
    esc.sync()
    for ticket in (a, b):
        assert zendesk.ticket(ticket)["status"] == "solved"
        new = esc.notes(ticket)[notes_before[ticket]:]
        status_notes = [n for n in new if f"GitHub issue {issue_key} is now closed (completed)" in n["body"]]
        mirrors = [n for n in new if "Fixed in 2.4.1" in n["body"]]
        assert len(status_notes) == 1 and len(mirrors) == 1, new
        assert all(n["public"] is False for n in new)
    # Nothing went back to GitHub: no mirror of a note, no title or state fight.
    assert [c["body"] for c in github.comments(APP, number)] == ["Fixed in 2.4.1, rolling out now."]
    assert github.issue(APP, number)["title"] == "CSV export fails"

    # Quiet now: a second pass writes nothing anywhere, and no note is posted twice.
    before_writes = writes(esc.sandbox)
    assert esc.sync().writes == 0
    assert writes(esc.sandbox) == before_writes
    assert [len(esc.notes(t)) for t in (a, b)] == [notes_before[a] + 2, notes_before[b] + 2]


def test_status_notes_are_never_agent_replies_and_never_mirrored_back(esc: Escalation) -> None:
    ticket = jane_doe_ticket(esc.sandbox, "The export is broken.")
    link = esc.engine.escalate(FLOW, str(ticket)).link
    assert link is not None
    number = int(link.right_key.split("#")[1])
    esc.sandbox.github.close(APP, number)
    esc.sync()
    esc.sandbox.github.reopen(APP, number)
    esc.sync()
    esc.sync()
    notes = [n["body"] for n in esc.notes(ticket)]
    assert [n.split("\n")[0] for n in notes] == [f"GitHub issue {link.right_key} is now closed (completed)",
                                                 f"GitHub issue {link.right_key} is now open (reopened)"]
    assert esc.sandbox.zendesk.ticket(ticket)["status"] == "open"
    item = esc.flow.left.fetch(str(ticket))
    assert item.comments and all(c.mirrored_from and not c.by_agent for c in item.comments)
    assert esc.sandbox.github.comments(APP, number) == []


class FakeRunner:
    """Stands in for the escalation service: escalates every ticket it is given, once."""

    def __init__(self, tickets: list[str], wake: datetime | None = None, stop: threading.Event | None = None) -> None:
        self.tickets, self.wake, self.stop = tickets, wake, stop
        self.calls = 0

    def run(self, engine: Engine) -> list[str]:
        self.calls += 1
        lines = []
        while self.tickets:
            outcome = engine.escalate(FLOW, self.tickets.pop(0))
            lines.append(f"escalated #{outcome.link.left_id if outcome.link else '?'} -> "
                         f"{outcome.link.right_key if outcome.link else outcome.blocked}")
        if self.stop is not None:
            self.stop.set()
        return lines

    def next_wake(self) -> datetime | None:
        return self.wake


def test_sync_once_runs_the_escalation_hook_after_the_pass(esc: Escalation) -> None:
    ticket = jane_doe_ticket(esc.sandbox, "The export is broken.")
    runner = FakeRunner([str(ticket)])
    stats = Engine(esc.store, [esc.flow], escalation=runner).sync_once()
    assert stats.escalations == [f"escalated #{ticket} -> {GH_REPO}#1"]
    assert runner.calls == 1 and len(esc.issues()) == 1
    merged = PassStats()
    merged.merge(stats)
    assert merged.escalations == stats.escalations


def test_dry_run_skips_the_escalation_hook(esc: Escalation) -> None:
    ticket = jane_doe_ticket(esc.sandbox, "The export is broken.")
    runner = FakeRunner([str(ticket)])
    stats = Engine(esc.store, [esc.flow], dry_run=True, escalation=runner).sync_once()
    assert runner.calls == 0 and stats.escalations == [] and esc.issues() == []


def test_run_forever_runs_the_hook_and_wakes_for_its_next_step(esc: Escalation) -> None:
    ticket = jane_doe_ticket(esc.sandbox, "The export is broken.")
    stop = threading.Event()
    wake = datetime.now(UTC) + timedelta(seconds=42)
    runner = FakeRunner([str(ticket)], wake=wake, stop=stop)
    engine = Engine(esc.store, [esc.flow], escalation=runner)
    timer = engine.seconds_to_next_timer()
    assert timer is not None and 40 < timer <= 42
    seen: list[PassStats] = []
    engine.run_forever(stop, {"zendesk": 600, "github": 600}, on_pass=seen.append)
    assert runner.calls == 1 and len(esc.issues()) == 1
    assert [s.escalations for s in seen if s.escalations] == [[f"escalated #{ticket} -> {GH_REPO}#1"]]
