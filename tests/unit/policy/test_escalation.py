"""Escalation rules (pure): triggers, conditions, steps, until, idempotency keys, templates, and every
kind of admin mistake reported as file:line:column."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ticketbridge.sync.model import Comment, Item
from ticketbridge.sync.policy.escalation import (
    PlannedAction,
    TicketState,
    TriggerEvent,
    cancelled_by,
    holds,
    missing_fields,
    plan,
    render,
    template_appendix,
    untils,
)
from ticketbridge.sync.policy.history import history_event, observe
from ticketbridge.sync.policy.policy import Policy, check_policy, load_policy
from ticketbridge.sync.policy.sla import compute_clocks

ROOT = Path(__file__).resolve().parents[3]
SHIPPED = ROOT / "mappings" / "policy.yaml"
TODAY = date(2026, 11, 23)
T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)

POLICY = """\
version: 1
default_calendar: calendar
severity:
  levels: [sev1, sev2, sev3, sev4]
  derive:
    - from: custom_fields.360003
      map: {Sev1: sev1, Sev2: sev2, Sev3: sev3, Sev4: sev4}
    - from: priority
      map: {urgent: sev1, high: sev2, normal: sev3, low: sev4}
    - default: sev3
metrics:
  first_response:
    start: [created]
    stop: [agent_public_comment]
    warn: ["80%"]
  periodic_update:
    applies_when: {fields: {incident_active: true}}
    start: [created]
    stop: [agent_public_comment]
    cycles: repeat
    warn: ["80%"]
policies:
  - id: standard
    when: {}
    targets:
      first_response: {sev1: {calendar: 15m}, sev3: {calendar: 1h}}
      periodic_update: {sev1: {calendar: 15m, grace: 5m}}
fields:
  support_level: {zendesk: custom_fields.360004}
  incident_active: {zendesk: custom_fields.360005}
  date_observed: {zendesk: custom_fields.360008}
templates:
  l2:
    required:
      subject: subject
      date_observed: date_observed
      device_os: custom_fields.360011
escalations:
  - id: sev1-incident
    on: {severity_became: sev1}
    do:
      - create_issue: {flow: zendesk-jira, fields: {issuetype: Incident}}
      - comment: {body: "Incident {created.key} for {ticket.key}"}
  - id: l2
    on: {field_changed: support_level, to: L2}
    if: {tags_none: [no_escalation]}
    do:
      - create_issue: {flow: zendesk-github, template: l2}
  - id: vip
    on: {tag_added: vip}
    do:
      - comment: {body: "VIP: {tag}"}
  - id: update-overdue
    on: {sla: periodic_update, event: breach}
    steps:
      - after: 0m
        do: [{comment: {body: "update {cycle} overdue"}}]
      - after: 10m
        until: clock_stopped
        do: [{page: {dedup_key: "zd-{ticket.id}-update-c{cycle}", resolve_on: [clock_stopped, ticket_solved]}}]
      - after: 30m
        until: {tags_any: [handled]}
        do: [{raise_priority: {by: 1, max: sev2}}]
  - id: first-response-risk
    on: {sla: first_response, event: warning, threshold: "80%"}
    if: {severity_in: [sev1]}
    do:
      - page: {}
"""


@pytest.fixture(scope="module")
def policy(tmp_path_factory: pytest.TempPathFactory) -> Policy:
    path = tmp_path_factory.mktemp("esc") / "policy.yaml"
    path.write_text(POLICY)
    return load_policy(path, today=TODAY, flows=["zendesk-jira", "zendesk-github"])


def ticket(severity: str = "sev3", **facts: Any) -> TicketState:
    return TicketState("zendesk", "42", "#42", facts={"status": "open", "severity": severity, "tags": (), **facts})


def event(kind: str, value: Any = None, previous: Any = None, *, ref: str = "e1", field: str | None = None,
          metric: str | None = None, cycle: int = 0, at: datetime = T0) -> TriggerEvent:
    return TriggerEvent(ref=ref, tracker="zendesk", ticket_id="42", kind=kind, at=at, field=field, value=value,
                        previous=previous, metric=metric, cycle=cycle)


def rules_of(actions: list[PlannedAction]) -> list[tuple[str, int, str]]:
    return [(a.rule, a.step, a.kind) for a in actions]


# -- triggers ---------------------------------------------------------------------------------

def test_severity_became_fires_on_the_change_to_that_level_only(policy: Policy) -> None:
    rules = policy.escalation
    assert rules_of(plan(rules, event("severity", "sev1", "sev3"), ticket("sev1"))) == [
        ("sev1-incident", 0, "create_issue"), ("sev1-incident", 0, "comment")]
    assert plan(rules, event("severity", "sev1", None), ticket("sev1")) != []  # created as Sev1
    assert plan(rules, event("severity", "sev2", "sev3"), ticket("sev2")) == []
    assert plan(rules, event("severity", "sev1", "sev1"), ticket("sev1")) == []


def test_field_changed_fires_when_the_field_takes_the_value(policy: Policy) -> None:
    rules = policy.escalation
    fired = plan(rules, event("field", "L2", "L1", field="support_level"), ticket())
    assert rules_of(fired) == [("l2", 0, "create_issue")]
    assert fired[0].params["template"] == "l2"
    assert plan(rules, event("field", "L2", "L2", field="support_level"), ticket()) == []
    assert plan(rules, event("field", "L1", None, field="support_level"), ticket()) == []
    assert plan(rules, event("field", "L2", "L1", field="other"), ticket()) == []


def test_if_condition_holds_the_rule_back(policy: Policy) -> None:
    fired = plan(policy.escalation, event("field", "L2", "L1", field="support_level"),
                 ticket(tags=("no_escalation",)))
    assert fired == []


def test_tag_added_fires_for_a_new_tag_not_for_one_already_there(policy: Policy) -> None:
    rules = policy.escalation
    fired = plan(rules, event("tags", ["billing", "vip"], ["billing"]), ticket())
    assert rules_of(fired) == [("vip", 0, "comment")]
    assert fired[0].context["tag"] == "vip"
    assert plan(rules, event("tags", ["billing", "vip"], ["vip"]), ticket()) == []


def test_sla_triggers_match_metric_event_and_threshold(policy: Policy) -> None:
    rules = policy.escalation
    breach = plan(rules, event("sla_breach", "due", metric="periodic_update", cycle=3), ticket("sev1"))
    assert [a.rule for a in breach] == ["update-overdue"] * 3
    assert breach[0].context["cycle"] == 3
    warning = plan(rules, event("sla_warning", "80%", metric="first_response", cycle=1), ticket("sev1"))
    assert rules_of(warning) == [("first-response-risk", 0, "page")]
    assert plan(rules, event("sla_warning", "50%", metric="first_response", cycle=1), ticket("sev1")) == []
    assert plan(rules, event("sla_warning", "80%", metric="first_response", cycle=1), ticket("sev3")) == []
    assert plan(rules, event("sla_breach", "due", metric="first_response", cycle=1), ticket("sev1")) == []


# -- steps, until, keys -----------------------------------------------------------------------

def test_steps_are_due_after_their_delay_from_the_trigger(policy: Policy) -> None:
    actions = plan(policy.escalation, event("sla_breach", "due", metric="periodic_update", cycle=1), ticket("sev1"))
    assert [(a.step, a.due_at - T0) for a in actions] == [
        (0, timedelta(0)), (1, timedelta(minutes=10)), (2, timedelta(minutes=30))]
    # A step's until also cancels every later step.
    assert [[str(u) for u in a.until] for a in actions] == [
        [], ["clock_stopped"], ["clock_stopped", "tags_any [handled]"]]


def test_until_comes_true_by_a_later_event(policy: Policy) -> None:
    actions = plan(policy.escalation, event("sla_breach", "due", metric="periodic_update", cycle=2), ticket("sev1"))
    page, raise_ = actions[1], actions[2]
    running = ticket("sev1")
    assert cancelled_by(page.until, running, "periodic_update", 2) is None
    # An agent posted the update: cycle 2 stopped, so the page and the later step are cancelled.
    updated = TicketState("zendesk", "42", "#42", facts=running.facts, clocks={("periodic_update", 2): "stopped"})
    assert str(cancelled_by(page.until, updated, "periodic_update", 2)) == "clock_stopped"
    assert str(cancelled_by(raise_.until, updated, "periodic_update", 2)) == "clock_stopped"
    # Another cycle stopping says nothing about this one.
    other = TicketState("zendesk", "42", "#42", facts=running.facts, clocks={("periodic_update", 1): "stopped"})
    assert cancelled_by(page.until, other, "periodic_update", 2) is None
    # A condition-until cancels its own step (and later), not the earlier ones.
    tagged = ticket("sev1", tags=("handled",))
    assert cancelled_by(page.until, tagged, "periodic_update", 2) is None
    assert cancelled_by(raise_.until, tagged, "periodic_update", 2) is not None


def test_resolve_on_words() -> None:
    solved = ticket("sev1", status="resolved")
    assert holds(untils(["ticket_solved"])[0], solved, None, 0)
    assert not holds(untils(["ticket_solved"])[0], ticket("sev1"), None, 0)
    assert not holds(untils(["clock_stopped"])[0], solved, None, 0)  # no clock triggered it


def test_idempotency_keys_are_stable_across_rescans_and_differ_per_trigger(policy: Policy) -> None:
    first = plan(policy.escalation, event("severity", "sev1", "sev3", ref="severity:a"), ticket("sev1"))
    again = plan(policy.escalation, event("severity", "sev1", "sev3", ref="severity:a"), ticket("sev1"))
    other = plan(policy.escalation, event("severity", "sev1", "sev2", ref="severity:b"), ticket("sev1"))
    assert [a.key for a in first] == [a.key for a in again]
    assert len({a.key for a in first}) == 2 and first[0].group == first[1].group
    assert {a.key for a in first}.isdisjoint(a.key for a in other)
    cycle1 = plan(policy.escalation, event("sla_breach", "due", ref="sla:periodic_update:1:breach:due",
                                           metric="periodic_update", cycle=1), ticket("sev1"))
    cycle2 = plan(policy.escalation, event("sla_breach", "due", ref="sla:periodic_update:2:breach:due",
                                           metric="periodic_update", cycle=2), ticket("sev1"))
    assert {a.key for a in cycle1}.isdisjoint(a.key for a in cycle2)


# -- templates and texts ------------------------------------------------------------------------

def test_template_lists_missing_fields_and_marks_them_not_provided(policy: Policy) -> None:
    template = policy.escalation.templates["l2"]
    fields = {"subject": "Login fails", "date_observed": "", "custom_fields.360011": None}
    assert missing_fields(template, fields) == ["date_observed", "device_os"]
    assert template_appendix(template, fields) == (
        "Date observed: not provided\nDevice/OS: not provided")  # the subject is the title
    complete = {**fields, "date_observed": "2026-11-20", "custom_fields.360011": "macOS 15"}
    assert missing_fields(template, complete) == []
    assert "Device/OS: macOS 15" in template_appendix(template, complete)
    assert template.never_block == ("sev1", "sev2")


def test_render_fills_placeholders() -> None:
    assert render("Incident {created.key} for {ticket.key} ({severity})",
                  {"created.key": "ENG-5", "ticket.key": "#42", "severity": "sev1"}) == "Incident ENG-5 for #42 (sev1)"
    assert render("{created.url}", {}) == ""


# -- field names --------------------------------------------------------------------------------

def zd_item(fields: dict[str, Any], at: datetime = T0, comments: tuple[Comment, ...] = ()) -> Item:
    base = {"status": "open", "created_at": "2026-11-23T10:00:00Z"}
    return Item(tracker="zendesk", id="42", key="#42", url="", fields={**base, **fields}, updated_at=at,
                version=str(at), comments=comments)


def test_history_records_logical_names_read_from_custom_fields(policy: Policy) -> None:
    observed, events = observe(policy, zd_item({"custom_fields.360004": "L2", "custom_fields.360005": True,
                                                "priority": "urgent"}), None)
    assert observed["fields"]["support_level"] == "L2"
    assert observed["fields"]["incident_active"] is True
    assert {(e.field, e.value) for e in events if e.kind == "field"} >= {("support_level", "L2"),
                                                                        ("incident_active", True)}


def test_periodic_update_runs_on_the_zendesk_incident_checkbox(policy: Policy) -> None:
    _, events = observe(policy, zd_item({"custom_fields.360005": True, "priority": "urgent"}), None)
    history = [history_event(e) for e in events]
    sla = compute_clocks(policy, "zendesk", history, T0 + timedelta(minutes=5))
    clock = sla.clock("periodic_update")
    assert clock is not None and clock.status == "running"
    assert clock.due_at == T0 + timedelta(minutes=15)
    _, quiet = observe(policy, zd_item({"custom_fields.360005": False, "priority": "urgent"}), None)
    assert compute_clocks(policy, "zendesk", [history_event(e) for e in quiet], T0).clock("periodic_update") is None


# -- the shipped policy ---------------------------------------------------------------------------

def test_shipped_policy_has_the_sev1_hygiene_rules() -> None:
    shipped, problems = check_policy(SHIPPED, flows=["zendesk-jira", "zendesk-github"])
    assert problems == [] and shipped is not None
    rules = {r.id: r for r in shipped.escalation.rules}
    assert list(rules) == ["sev1-incident", "l2-to-github", "follow-known-bug", "outage-update-reminder",
                           "outage-update-overdue", "resolution-breach-raise"]
    follow = rules["follow-known-bug"]
    assert follow.on.kind == "field_changed" and [a.kind for a in follow.steps[0].actions] == ["attach", "comment"]
    incident = rules["sev1-incident"]
    assert incident.on.kind == "severity_became" and incident.on.values == ("sev1",)
    assert [a.kind for a in incident.steps[0].actions] == ["create_issue", "page", "comment"]
    assert incident.steps[0].actions[0].params == {"flow": "zendesk-jira",
                                                   "fields": {"issuetype": "Incident", "labels": ["incident"]}}
    assert rules["l2-to-github"].steps[0].actions[0].params["template"] == "l2"
    assert rules["outage-update-overdue"].on.event == "breach"
    assert [a.kind for a in rules["outage-update-overdue"].steps[0].actions] == ["comment", "page"]
    assert shipped.sla_fields["jira"]["rca_due"] == "customfield_10047"
    assert list(dict(shipped.escalation.templates["l2"].required)) == [
        "severity", "subject", "date_observed", "description", "steps_to_reproduce", "environment", "device_os",
        "browser"]


def test_shipped_policy_needs_no_github_flow() -> None:
    # The GitHub rule is optional: a deployment without a zendesk-github flow still validates.
    _, problems = check_policy(SHIPPED, flows=["zendesk-jira"])
    assert problems == []


# -- admin mistakes -----------------------------------------------------------------------------

def problems_of(tmp_path: Path, old: str, new: str, flows: list[str] | None = None) -> list[str]:
    assert old in POLICY, old
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY.replace(old, new, 1))
    _, problems = check_policy(path, today=TODAY, flows=flows)
    return [str(p) for p in problems]


@pytest.mark.parametrize(("old", "new", "where", "message"), [
    ("on: {severity_became: sev1}", "on: {severity_became: sev9}", "severity_became: sev9",
     "unknown severity level 'sev9'"),
    ("on: {sla: periodic_update, event: breach}", "on: {sla: periodic_updates, event: breach}",
     "periodic_updates", "unknown metric 'periodic_updates'"),
    ('threshold: "80%"}', 'threshold: "90%"}', '"90%"', "has no warning '90%'"),
    ("template: l2}", "template: l3}", "template: l3", "unknown template 'l3'"),
    ("{body: \"VIP: {tag}\"}", "{body: \"VIP: {ticket.name}\"}", "VIP: {ticket.name}",
     "unknown placeholder {ticket.name}"),
    ("{body: \"update {cycle} overdue\"}", "{body: \"update {created.key}\"}", "update {created.key}",
     "{created.key} needs a create_issue action before this one"),
    ("until: clock_stopped", "until: clock_stoped", "until: clock_stoped", "unknown condition 'clock_stoped'"),
    ("after: 30m", "after: 5m", "after: 5m", "give each step an after: no shorter"),
    ("on: {tag_added: vip}", "on: {tag_added: vip, to: x}", "tag_added: vip, to: x",
     "'to:' does not belong to a tag_added trigger"),
    ("  - id: l2\n", "  - id: vip\n", "id: vip", "escalation id 'vip' is already used"),
    ("if: {tags_none: [no_escalation]}", "if: {severity_in: [sev7]}", "sev7", "unknown severity level 'sev7'"),
    ("raise_priority: {by: 1, max: sev2}", "raise_priority: {max: sev2}", "raise_priority: {max",
     "raise_priority takes to: LEVEL or by: N"),
    ("  date_observed: {zendesk: custom_fields.360008}", "  status: {zendesk: custom_fields.360008}",
     "status: {zendesk", "'status' is a built-in fact of every ticket"),
])
def test_policy_mistakes_are_reported_at_their_line(tmp_path: Path, old: str, new: str, where: str,
                                                    message: str) -> None:
    found = problems_of(tmp_path, old, new)
    assert len(found) == 1, found
    # The last line that shows it: a duplicate is reported where it repeats.
    line = max(i for i, text in enumerate(POLICY.replace(old, new, 1).splitlines(), 1) if where in text)
    assert found[0].startswith(f"{tmp_path / 'policy.yaml'}:{line}:"), found[0]
    assert message in found[0]


def test_clock_stopped_needs_a_clock_trigger(tmp_path: Path) -> None:
    # first-response-risk is triggered by a clock: fine there.
    assert problems_of(tmp_path, "      - page: {}\n", "      - page: {resolve_on: [clock_stopped]}\n") == []
    found = problems_of(tmp_path, "      - comment: {body: \"VIP: {tag}\"}",
                        "      - page: {resolve_on: [clock_stopped]}")
    assert len(found) == 1 and "clock_stopped needs a rule triggered by a clock" in found[0]


def test_unknown_flow_is_reported_where_the_config_is_known(tmp_path: Path) -> None:
    assert problems_of(tmp_path, "flow: zendesk-jira,", "flow: zendesk-jria,") == []  # flows unknown: no check
    found = problems_of(tmp_path, "flow: zendesk-jira,", "flow: zendesk-jria,", flows=["zendesk-jira",
                                                                                      "zendesk-github"])
    assert len(found) == 1 and "unknown flow 'zendesk-jria'; flows in the config: zendesk-jira, zendesk-github" \
        in found[0]
    line = next(i for i, text in enumerate(POLICY.splitlines(), 1) if "flow: zendesk-jira," in text)
    assert found[0].startswith(f"{tmp_path / 'policy.yaml'}:{line}:")


def test_an_action_must_be_one_known_kind(tmp_path: Path) -> None:
    found = problems_of(tmp_path, "      - page: {}\n", "      - pager: {}\n")
    line = next(i for i, text in enumerate(POLICY.splitlines(), 1) if "- page: {}" in text)
    assert len(found) == 1 and found[0].startswith(f"{tmp_path / 'policy.yaml'}:{line}:"), found
    assert "pager" in found[0]


def test_do_and_steps_are_exclusive(tmp_path: Path) -> None:
    found = problems_of(tmp_path, "    on: {sla: periodic_update, event: breach}\n",
                        "    on: {sla: periodic_update, event: breach}\n    do: [{comment: {body: x}}]\n")
    assert len(found) == 1 and "either do: [actions] or steps:" in found[0]
