"""Escalations end to end on the Zendesk and PagerDuty emulators, with a fake engine standing in for
the issue creation (Engine.escalate is idempotent by contract; these tests prove the outbox runs each
action once): one issue per trigger, retries after timeouts, the template note once, pages opened
once per dedup_key and resolved, the Sev1 outage-update reminders."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ticketbridge.connectors.errors import Permanent, TrackerError, Unsure
from ticketbridge.connectors.http import RetryPolicy
from ticketbridge.connectors.jira.connector import JiraConnector
from ticketbridge.connectors.jira.emulator import DEFAULT_CUSTOM_FIELDS as JIRA_FIELDS
from ticketbridge.connectors.jira.emulator import JiraEmulator
from ticketbridge.connectors.pagerduty.client import PagerDutyClient
from ticketbridge.connectors.pagerduty.emulator import PagerDutyEmulator
from ticketbridge.connectors.zendesk.connector import ZendeskConnector
from ticketbridge.connectors.zendesk.emulator import DEFAULT_CUSTOM_FIELDS, ZendeskEmulator
from ticketbridge.sync.engine import Escalated
from ticketbridge.sync.escalation_service import EscalationService
from ticketbridge.sync.model import AddComment
from ticketbridge.sync.outbox import DONE, FAILED, PENDING, WAITING
from ticketbridge.sync.policy.policy import Policy, load_policy
from ticketbridge.sync.sla_service import SlaService
from ticketbridge.sync.store import ItemCommit, Link, Store, TicketEvent

from ..clock import FakeClock

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "mappings" / "policy.yaml"
FLOWS = [("zendesk-jira", "zendesk", "jira"), ("zendesk-github", "zendesk", "github")]
TYPES = {"zendesk": "zendesk", "jira": "jira", "github": "github"}
# The emulator's default fields include those the shipped policy's `fields:` section names.
ZD_FIELDS = DEFAULT_CUSTOM_FIELDS
SUPPORT_LEVEL, INCIDENT_ACTIVE, INCIDENT_MITIGATED, SEVERITY = 360004, 360005, 360006, 360003
FAST = RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.05)


class Clock(FakeClock):
    """One clock for the emulators and the services, wound forward by the tests."""

    def __init__(self) -> None:
        super().__init__(datetime.now(UTC).replace(microsecond=0))


@dataclass
class FakeEngine:
    """Engine.escalate/attach by their contract: one issue per (flow, ticket), whatever the retries."""

    calls: list[tuple[str, str, Mapping[str, Any] | None, str | None]] = field(default_factory=list)
    issues: dict[tuple[str, str], Link] = field(default_factory=dict)
    timeouts_after_create: int = 0  # the issue is created, then the answer is lost
    error: TrackerError | None = None
    blocked: str | None = None  # the post-scan found personal data: nothing is created

    def escalate(self, flow: str, ticket_id: str, *, extra_fields: Mapping[str, Any] | None = None,
                 appendix: str | None = None) -> Escalated:
        self.calls.append((flow, ticket_id, extra_fields, appendix))
        if self.error is not None:
            raise self.error
        if self.blocked is not None:
            return Escalated(None, False, self.blocked)
        created = (flow, ticket_id) not in self.issues
        if created:
            n = len(self.issues) + 1
            self.issues[flow, ticket_id] = Link(id=n, flow=flow, left_id=ticket_id, left_key=f"#{ticket_id}",
                                                right_id=str(10000 + n), right_key=f"ENG-{n}", snapshot={},
                                                left_version=None, right_version=None)
            if self.timeouts_after_create:
                self.timeouts_after_create -= 1
                raise Unsure(flow, "POST /rest/api/3/issue: read timed out")
        return Escalated(self.issues[flow, ticket_id], created)

    def attach(self, flow: str, ticket_id: str, issue_ref: str) -> Link:
        raise AssertionError("not used here")


@dataclass
class Desk:
    zendesk: ZendeskEmulator
    pagerduty: PagerDutyEmulator
    store: Store
    connector: ZendeskConnector
    sla: SlaService
    escalation: EscalationService
    engine: FakeEngine
    clock: Clock

    def ticket(self, priority: str = "urgent", **custom: Any) -> str:
        """A new customer ticket; custom fields by id (as keyword names: **{"360004": "L1"})."""
        fields = [{"id": int(k), "value": v} for k, v in custom.items()]
        return str(self.zendesk.add_ticket(subject="Checkout fails", description="Payment page errors",
                                           priority=priority, status="open", custom_fields=fields)["id"])

    def set(self, ticket_id: str, **changes: Any) -> None:
        self.clock.advance(seconds=1)
        self.zendesk.update_ticket(int(ticket_id), **changes)

    def set_fields(self, ticket_id: str, values: Mapping[int, Any]) -> None:
        self.set(ticket_id, custom_fields=[{"id": k, "value": v} for k, v in values.items()])

    def sync(self, *ticket_ids: str) -> list[str]:
        """What the engine does for these tickets in one pass: observe, settle the clocks, escalate."""
        for ticket_id in ticket_ids:
            self.sla.observe(self.connector.fetch(ticket_id))
        self.sla.settle()
        return self.escalation.run(self.engine)

    def notes(self, ticket_id: str) -> list[dict[str, Any]]:
        """The ticket's comments written by escalations (their marker names them)."""
        return [c for c in self.zendesk.comments(int(ticket_id)) if "[tb:escalation:" in c["body"]]

    def rows(self, ticket_id: str, rule: str | None = None) -> list[Any]:
        return [r for r in self.escalation.outbox.rows(item_id=ticket_id) if rule in (None, r.rule)]


def open_desk(tmp_path: Path, policy: Policy, clock: Clock, zendesk: ZendeskEmulator,
              pagerduty: PagerDutyEmulator) -> Desk:
    store = Store.open(f"sqlite:///{tmp_path / 'tb.db'}")
    connector = ZendeskConnector("zendesk", zendesk.base_url, zendesk.email, zendesk.token, retry=FAST)
    sla = SlaService(store, policy, {"zendesk": connector}, TYPES, FLOWS, now=clock)
    pager = PagerDutyClient(pagerduty.base_url, pagerduty.routing_keys[0], retry=FAST)
    escalation = EscalationService(store, policy, {"zendesk": connector}, TYPES, FLOWS, pager=pager, now=clock)
    return Desk(zendesk, pagerduty, store, connector, sla, escalation, FakeEngine(), clock)


@pytest.fixture(scope="module")
def shipped() -> Policy:
    return load_policy(SHIPPED, flows=[name for name, _, _ in FLOWS])


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def desk(tmp_path: Path, shipped: Policy, clock: Clock) -> Iterator[Desk]:
    with ZendeskEmulator(clock=clock, custom_fields=ZD_FIELDS, export_exclusion_seconds=0) as zendesk, \
            PagerDutyEmulator(clock=clock) as pagerduty:
        made = open_desk(tmp_path, shipped, clock, zendesk, pagerduty)
        yield made
        made.store.close()


# -- Sev1: one incident issue, one page, one note -------------------------------------------------

def test_sev1_escalates_once_even_when_the_trigger_is_seen_twice(desk: Desk) -> None:
    ticket = desk.ticket(priority="urgent")
    lines = desk.sync(ticket)
    assert desk.engine.calls == [("zendesk-jira", ticket, {"issuetype": "Incident", "labels": ["incident"]}, None)]
    assert any("created ENG-1 through zendesk-jira" in line for line in lines)
    notes = desk.notes(ticket)
    assert len(notes) == 1 and not notes[0]["public"]
    assert notes[0]["body"].startswith("Sev1: incident ENG-1 opened for engineering")
    incident = desk.pagerduty.incident(f"zd-{ticket}-sev1-incident")
    assert incident is not None and incident["status"] == "triggered"
    assert incident["summary"] == f"Sev1 #{ticket}: incident ENG-1"

    desk.sync(ticket)
    # A crash after the actions ran but before the cursor moved: the same events are scanned again.
    desk.escalation.outbox.add([], ticket_cursor=0, sla_cursor=0)
    desk.sync(ticket)
    assert len(desk.engine.calls) == 1
    assert len(desk.notes(ticket)) == 1
    assert len(desk.pagerduty.incidents()) == 1 and len(desk.pagerduty.events()) == 1
    assert {r.state for r in desk.rows(ticket)} == {DONE}


def test_the_first_start_acts_on_the_last_day_only(desk: Desk) -> None:
    """A desk's first sync reads its whole past: a Sev1 from two weeks ago is history, one from this
    morning is an incident going on now. Later, nothing is skipped (a restart after downtime)."""
    old = desk.zendesk.add_ticket(subject="Old outage", priority="urgent", status="open",
                                  created_at=desk.clock.now - timedelta(days=14))
    today = desk.zendesk.add_ticket(subject="Outage now", priority="urgent", status="open",
                                    created_at=desk.clock.now - timedelta(hours=3))
    desk.sync(str(old["id"]), str(today["id"]))
    assert [call[1] for call in desk.engine.calls] == [str(today["id"])]
    desk.clock.advance(days=3)  # the bridge was down; a ticket escalated meanwhile still counts
    late = desk.zendesk.add_ticket(subject="Outage during downtime", priority="urgent", status="open",
                                   created_at=desk.clock.now - timedelta(days=2))
    desk.sync(str(late["id"]))
    assert [call[1] for call in desk.engine.calls] == [str(today["id"]), str(late["id"])]


def test_an_escalation_blocked_for_personal_data_waits_for_an_edit(desk: Desk) -> None:
    desk.engine.blocked = "pii_detected: url_query_tokens"
    ticket = desk.ticket(priority="urgent")
    lines = desk.sync(ticket)
    create = desk.rows(ticket, "sev1-incident")[0]
    assert create.state == WAITING and any("blocked (pii_detected: url_query_tokens)" in line for line in lines)
    desk.clock.advance(minutes=5)
    desk.sync(ticket)
    assert len(desk.engine.calls) == 1  # unchanged ticket: the same text would be blocked again
    desk.engine.blocked = None  # the agent removes the link with the token from the description
    desk.set(ticket, subject="Checkout fails (link removed)")
    desk.sync(ticket)
    assert len(desk.engine.calls) == 2 and desk.rows(ticket, "sev1-incident")[0].state == DONE


def test_escalation_notes_do_not_count_as_a_reply(desk: Desk) -> None:
    ticket = desk.ticket(priority="urgent")
    desk.sync(ticket)
    assert len(desk.notes(ticket)) == 1
    desk.clock.advance(seconds=5)
    desk.sync(ticket)
    summary = desk.store.sla_ticket("zendesk", ticket)
    assert summary is not None and summary.summary is not None
    first = [c for c in summary.summary["clocks"] if c["metric"] == "first_response"]
    assert first[-1]["status"] == "running"


def test_a_timeout_after_creation_is_retried_into_the_same_issue(desk: Desk) -> None:
    desk.engine.timeouts_after_create = 1
    ticket = desk.ticket(priority="urgent")
    lines = desk.sync(ticket)
    create = desk.rows(ticket, "sev1-incident")[0]
    assert create.state == PENDING and create.attempts == 1
    assert "read timed out" in (create.last_error or "")
    assert any("will be retried" in line for line in lines)
    assert desk.notes(ticket) == []  # the note naming the issue waits for it

    desk.sync(ticket)  # not due yet: nothing is retried early
    assert len(desk.engine.calls) == 1
    desk.clock.advance(seconds=31)
    desk.sync(ticket)
    assert len(desk.engine.calls) == 2 and len(desk.engine.issues) == 1
    create = desk.rows(ticket, "sev1-incident")[0]
    assert create.state == DONE and create.result is not None and create.result["key"] == "ENG-1"
    assert create.result["created"] is False  # found the issue the lost answer had created
    assert [n["body"].split(" (")[0] for n in desk.notes(ticket)] == ["Sev1: incident ENG-1 opened for engineering"]


def test_a_failing_action_keeps_the_trackers_message_and_the_others_still_run(desk: Desk) -> None:
    desk.engine.error = Permanent("jira", "HTTP 400: issuetype: The issue type selected is invalid.")
    ticket = desk.ticket(priority="urgent")
    desk.sync(ticket)
    create, page, note = desk.rows(ticket, "sev1-incident")
    assert create.state == FAILED and "The issue type selected is invalid." in (create.last_error or "")
    assert page.state == DONE and desk.pagerduty.incident(f"zd-{ticket}-sev1-incident") is not None
    assert note.state == DONE
    assert desk.notes(ticket)[0]["body"].startswith("Sev1: incident (not created) opened")


def test_a_comment_whose_answer_was_lost_is_not_posted_twice(desk: Desk) -> None:
    ticket = desk.ticket(priority="urgent")
    desk.sla.observe(desk.connector.fetch(ticket))
    desk.escalation.scan()  # planned, not run
    note = desk.rows(ticket, "sev1-incident")[2]
    # The first attempt posted the note, then failed (a timeout as far as we know).
    desk.escalation.outbox.update(note.id, attempts=1, last_error="zendesk: read timed out")
    desk.connector.push(ticket, [AddComment("Sev1: incident ENG-1 opened\n\n[tb:escalation:" + note.key[:24] + "]",
                                            False, "escalation:" + note.key[:24])])
    desk.sync(ticket)
    assert desk.rows(ticket, "sev1-incident")[2].state == DONE
    assert len(desk.notes(ticket)) == 1


# -- the L2 template ------------------------------------------------------------------------------

COMPLETE = {SEVERITY: "sev3", 360008: "2026-11-20", 360009: "1. open checkout 2. pay", 360002: "production",
            360011: "Windows 11", 360012: "Firefox 133"}


def test_an_incomplete_l2_ticket_gets_one_note_and_goes_on_once_filled_in(desk: Desk) -> None:
    ticket = desk.ticket(priority="normal", **{str(SUPPORT_LEVEL): "L1"})
    desk.sync(ticket)
    desk.set_fields(ticket, {SUPPORT_LEVEL: "L2", 360012: "Firefox 133"})
    desk.sync(ticket)
    desk.sync(ticket)
    desk.clock.advance(minutes=5)
    desk.sync(ticket)
    assert desk.engine.calls == []
    create = desk.rows(ticket, "l2-to-github")[0]
    assert create.state == WAITING
    notes = desk.notes(ticket)
    assert len(notes) == 1 and not notes[0]["public"]
    assert ("missing Severity, Date observed, Steps to reproduce, Environment, Device/OS. "
            in notes[0]["body"])

    desk.set_fields(ticket, COMPLETE)
    desk.sync(ticket)
    assert len(desk.engine.calls) == 1
    flow, _, extra, appendix = desk.engine.calls[0]
    assert flow == "zendesk-github" and extra == {"labels": ["from-support"]}
    # Subject and description are the issue's title and body already.
    assert appendix == ("Severity: sev3\nDate observed: 2026-11-20\n"
                        "Steps to reproduce: 1. open checkout 2. pay\n"
                        "Environment: production\nDevice/OS: Windows 11\nBrowser: Firefox 133")
    assert [n["body"].split("\n")[0] for n in desk.notes(ticket)][1] == "Escalated to engineering as ENG-1:"
    assert len(desk.notes(ticket)) == 2


def test_sev2_is_never_held_back_by_the_template(desk: Desk) -> None:
    ticket = desk.ticket(priority="high", **{str(SUPPORT_LEVEL): "L1"})
    desk.sync(ticket)
    desk.set_fields(ticket, {SUPPORT_LEVEL: "L2"})
    desk.sync(ticket)
    assert len(desk.engine.calls) == 1
    appendix = desk.engine.calls[0][3] or ""
    assert "Date observed: not provided" in appendix and "Browser: not provided" in appendix
    assert all("waiting for the ticket template" not in n["body"] for n in desk.notes(ticket))


def test_a_waiting_escalation_goes_on_when_the_ticket_becomes_sev1(desk: Desk) -> None:
    ticket = desk.ticket(priority="normal", **{str(SUPPORT_LEVEL): "L1"})
    desk.sync(ticket)
    desk.set_fields(ticket, {SUPPORT_LEVEL: "L2"})
    desk.sync(ticket)
    assert desk.engine.calls == []
    desk.set(ticket, priority="urgent")
    desk.sync(ticket)
    assert ("zendesk-github", ticket) in {(f, t) for f, t, _, _ in desk.engine.calls}


# -- paging -------------------------------------------------------------------------------------

def test_a_page_is_triggered_once_and_resolved_when_the_ticket_is_solved(desk: Desk) -> None:
    ticket = desk.ticket(priority="urgent")
    desk.sync(ticket)
    desk.sync(ticket)
    key = f"zd-{ticket}-sev1-incident"
    assert [e["event_action"] for e in desk.pagerduty.events()] == ["trigger"]
    assert [p.dedup_key for p in desk.escalation.outbox.pages("open")] == [key]

    desk.set(ticket, status="solved")
    lines = desk.sync(ticket)
    assert f"#{ticket}: page {key} resolved (ticket_solved)" in lines
    incident = desk.pagerduty.incident(key)
    assert incident is not None and incident["status"] == "resolved"
    assert desk.escalation.outbox.pages("open") == []
    desk.sync(ticket)
    assert [e["event_action"] for e in desk.pagerduty.events()] == ["trigger", "resolve"]


def test_a_page_retried_after_lost_answers_is_still_one_incident(desk: Desk) -> None:
    desk.pagerduty.fail_next(2, status=502, processed=True)  # ingested, but both answers lost
    ticket = desk.ticket(priority="urgent")
    desk.sync(ticket)
    page = desk.rows(ticket, "sev1-incident")[1]
    assert page.state == PENDING and page.attempts == 1 and "502" in (page.last_error or "")
    desk.clock.advance(seconds=31)
    desk.sync(ticket)
    assert desk.rows(ticket, "sev1-incident")[1].state == DONE
    assert len(desk.pagerduty.incidents()) == 1
    assert {e["outcome"] for e in desk.pagerduty.events()} == {"created", "deduplicated"}


def test_outage_updates_remind_then_page_and_the_update_resolves_the_page(desk: Desk) -> None:
    ticket = desk.ticket(priority="urgent", **{str(INCIDENT_ACTIVE): True})
    desk.sync(ticket)
    desk.clock.advance(minutes=12, seconds=5)  # 80% of the 15-minute update cycle
    desk.sync()
    reminders = [n for n in desk.notes(ticket) if n["body"].startswith("Reminder")]
    assert len(reminders) == 1 and not reminders[0]["public"]
    key = f"zd-{ticket}-update-c1"
    assert desk.pagerduty.incident(key) is None

    desk.clock.advance(minutes=8)  # 15 minutes + 5 minutes grace: overdue
    desk.sync()
    desk.sync()
    assert len([n for n in desk.notes(ticket) if "overdue" in n["body"]]) == 1
    incident = desk.pagerduty.incident(key)
    assert incident is not None and incident["status"] == "triggered" and incident["severity"] == "error"

    # The agent posts the public update: the cycle stops, so its page is resolved.
    desk.clock.advance(minutes=1)
    desk.connector.push(ticket, [AddComment("Update: we are still working on it.", True, "agent")])
    desk.sync(ticket)
    incident = desk.pagerduty.incident(key)
    assert incident is not None and incident["status"] == "resolved"
    assert desk.pagerduty.incident(f"zd-{ticket}-sev1-incident")["status"] == "triggered"  # type: ignore[index]


def test_without_paging_configured_a_page_fails_with_a_clear_message(tmp_path: Path, shipped: Policy,
                                                                      clock: Clock) -> None:
    with ZendeskEmulator(clock=clock, custom_fields=ZD_FIELDS) as zendesk, PagerDutyEmulator(clock=clock) as pd:
        desk = open_desk(tmp_path, shipped, clock, zendesk, pd)
        desk.escalation.pager = None
        ticket = desk.ticket(priority="urgent")
        desk.sync(ticket)
        page = desk.rows(ticket, "sev1-incident")[1]
        assert page.state == FAILED and "add a paging: section to config.yaml" in (page.last_error or "")
        assert desk.rows(ticket, "sev1-incident")[2].state == DONE
        desk.store.close()


# -- raise priority: a ratchet ----------------------------------------------------------------------

RAISE_POLICY = """\
version: 1
default_calendar: calendar
severity:
  levels: [sev1, sev2, sev3, sev4]
  derive:
    - from: custom_fields.360003
      map: {sev1: sev1, sev2: sev2, sev3: sev3, sev4: sev4}
    - from: priority
      map: {urgent: sev1, high: sev2, normal: sev3, low: sev4}
    - default: sev3
  changes:
    lower: [zendesk_agent]
metrics:
  resolution:
    start: [created]
    stop: [{status_in: [resolved, closed]}]
policies:
  - id: standard
    when: {}
    targets:
      resolution: {sev1: {calendar: 1h}, sev3: {calendar: 1h}}
escalations:
  - id: resolution-breach-raise
    on: {sla: resolution, event: breach}
    do:
      - raise_priority: {to: sev2}
"""


def test_a_resolution_breach_raises_sev3_to_sev2_and_never_lowers_sev1(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(RAISE_POLICY)
    policy = load_policy(path)
    with ZendeskEmulator(clock=clock, custom_fields=ZD_FIELDS) as zendesk, PagerDutyEmulator(clock=clock) as pd:
        desk = open_desk(tmp_path, policy, clock, zendesk, pd)
        minor, major = desk.ticket(priority="normal"), desk.ticket(priority="urgent")
        desk.sync(minor, major)
        clock.advance(hours=1, seconds=1)
        lines = desk.sync()
        assert f"#{minor} resolution-breach-raise: severity raised sev3 -> sev2" in lines
        assert f"#{major} resolution-breach-raise: already sev1" in lines
        fields = {f["id"]: f["value"] for f in zendesk.ticket(int(minor))["custom_fields"]}
        assert fields[SEVERITY] == "sev2"
        assert {f["id"]: f["value"] for f in zendesk.ticket(int(major))["custom_fields"]}[SEVERITY] is None
        desk.sync(minor)
        state = desk.store.sla_ticket("zendesk", minor)
        assert state is not None and state.summary is not None and state.summary["severity"] == "sev2"
        desk.store.close()


# -- the RCA due time reaches the engineering issue --------------------------------------------------

def test_the_rca_due_time_is_written_to_the_jira_issue(tmp_path: Path, shipped: Policy, clock: Clock) -> None:
    jira_fields = {**JIRA_FIELDS, "customfield_10047": {"name": "RCA due", "type": "datetime"}}
    with ZendeskEmulator(clock=clock, custom_fields=ZD_FIELDS) as zendesk, \
            JiraEmulator(clock=clock, custom_fields=jira_fields) as jira:
        store = Store.open(f"sqlite:///{tmp_path / 'tb.db'}")
        zd = ZendeskConnector("zendesk", zendesk.base_url, zendesk.email, zendesk.token, retry=FAST)
        jc = JiraConnector("jira", jira.base_url, jira.email, jira.token, retry=FAST)
        sla = SlaService(store, shipped, {"zendesk": zd, "jira": jc}, TYPES, FLOWS[:1], now=clock)
        ticket = str(zendesk.add_ticket(subject="Outage", priority="urgent", status="open")["id"])
        issue = jira.create_issue(summary="Outage", issuetype="Incident")
        store.commit_item(ItemCommit(flow="zendesk-jira", left_id=ticket, left_key=f"#{ticket}",
                                     right_id=str(issue["id"]), right_key=str(issue["key"]), snapshot={}))
        sla.observe(zd.fetch(ticket))
        sla.settle()
        assert jira.issue(str(issue["id"]))["fields"].get("customfield_10047") is None
        clock.advance(minutes=30)
        zendesk.update_ticket(int(ticket), custom_fields=[{"id": INCIDENT_MITIGATED, "value": True}])
        sla.observe(zd.fetch(ticket))
        sla.settle()
        due = jira.issue(str(issue["id"]))["fields"].get("customfield_10047")
        assert due is not None
        written = datetime.fromisoformat(str(due).replace("Z", "+00:00"))
        assert abs(written - (clock.now + timedelta(hours=24))) < timedelta(seconds=2)
        store.close()


# -- the trigger scan -------------------------------------------------------------------------------

def test_the_scan_reads_a_backlog_in_batches(desk: Desk, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("ticketbridge.sync.escalation_service.SCAN_BATCH", 2)
    tickets = [desk.ticket(priority="urgent") for _ in range(3)]
    desk.sync(*tickets)
    assert sorted(t for _, t, _, _ in desk.engine.calls) == sorted(tickets)


def test_a_lowering_the_ratchet_refused_is_not_a_severity_change(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(RAISE_POLICY + """\
  - id: became-sev3
    on: {severity_became: sev3}
    do:
      - comment: {body: "now sev3"}
""")
    policy = load_policy(path)
    store = Store.open(f"sqlite:///{tmp_path / 'tb.db'}")
    service = EscalationService(store, policy, {}, TYPES, FLOWS, now=clock)
    at = clock.now

    def severity(ref: str, level: str, source: str, minutes: int) -> TicketEvent:
        return TicketEvent(ref=ref, at=at + timedelta(minutes=minutes), kind="severity",
                           value={"level": level, "flags": []}, source=source)

    store.record_observation("zendesk", "7", "#7", {"status": "open", "severity": "sev1", "tags": [], "fields": {}},
                             [severity("s1", "sev1", "derived", 0), severity("s2", "sev3", "bridge", 1)])
    store.record_observation("zendesk", "8", "#8", {"status": "open", "severity": "sev1", "tags": [], "fields": {}},
                             [severity("s1", "sev1", "derived", 0), severity("s2", "sev3", "zendesk_agent", 1)])
    service.scan()
    assert [(r.item_id, r.rule) for r in service.outbox.rows()] == [("8", "became-sev3")]
    store.close()
