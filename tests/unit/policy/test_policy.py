"""SLA policy files: the shipped policy, severity rules, matching, and every class of admin mistake."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from ticketbridge.sync.policy.calendar import AlwaysOpen, BusinessCalendar
from ticketbridge.sync.policy.policy import Policy, PolicyInputError, check_policy, load_policy
from ticketbridge.sync.yamlsource import ConfigError, Problem

ROOT = Path(__file__).resolve().parents[3]
SHIPPED = ROOT / "mappings" / "policy.yaml"
TODAY = date(2026, 11, 23)

# A small valid policy (no holiday data, so it loads fast); tests change one line and assert the
# exact position reported.
BASE = """\
version: 1
calendars:
  office:
    timezone: Europe/Berlin
    week: {mon-fri: ["09:00-17:00"]}
    business_day: 8h
  nights:
    timezone: Europe/Berlin
    week: {daily: ["22:00-06:00"]}
default_calendar: office
severity:
  levels: [sev1, sev2, sev3]
  derive:
    - from: priority
      map: {urgent: sev1, normal: sev3}
    - default: sev3
      flags: [needs_triage]
  changes:
    lower: [zendesk_agent]
metrics:
  first_response:
    start: [created]
    stop: [agent_public_comment]
    warn: ["50%", "-30m"]
  resolution:
    start: [created]
    stop: [{status_in: [resolved, closed]}]
    pause: [{status_in: [waiting_customer]}]
    on_reopen: resume
policies:
  - id: vip
    when: {tags_any: [vip]}
    targets:
      first_response:
        sev1: {calendar: 10m}
  - id: sev1_any
    when: {severity_in: [sev1], tags_none: [internal]}
    targets:
      first_response:
        sev1: {calendar: 20m}
  - id: region
    when: {fields: {region: [emea, apac]}}
    targets:
      first_response:
        sev1: {calendar: 25m}
  - id: standard
    when: {}
    calendar: office
    targets:
      first_response:
        sev1: {calendar: 30m}
        sev3: {business: 8h}
      resolution:
        sev3: {business_days: 5}
"""


def write(tmp_path: Path, text: str, name: str = "policy.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def edit(text: str, old: str, new: str) -> str:
    assert old in text, f"test setup: {old!r} not in text"
    return text.replace(old, new, 1)


def line_of(text: str, needle: str) -> int:
    """1-based line of the first occurrence of needle."""
    index = text.index(needle)
    return text.count("\n", 0, index) + 1


def errors(path: Path) -> list[Problem]:
    with pytest.raises(ConfigError) as caught:
        load_policy(path, today=TODAY)
    assert str(caught.value) == "\n".join(str(p) for p in caught.value.problems)
    return caught.value.problems


def only(problems: list[Problem]) -> str:
    assert len(problems) == 1, problems
    return str(problems[0])


# --- the shipped policy ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def shipped() -> Policy:
    return load_policy(SHIPPED, today=TODAY)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Policy:
    return load_policy(write(tmp_path_factory.mktemp("base"), BASE), today=TODAY)


def test_shipped_policy_loads(shipped: Policy) -> None:
    assert shipped.levels == ("sev1", "sev2", "sev3", "sev4")
    assert shipped.default_calendar == "support_berlin"
    assert isinstance(shipped.calendars["support_berlin"], BusinessCalendar)
    assert isinstance(shipped.calendars["calendar"], AlwaysOpen)
    assert shipped.calendars["support_berlin"].business_day == 8 * 3600
    assert [p.id for p in shipped.policies] == ["enterprise", "standard"]
    assert shipped.policies[-1].when.always
    assert shipped.metric_names() == ("first_response", "resolution", "periodic_update", "rca")
    assert shipped.status_categories["zendesk"]["pending"] == "waiting_customer"
    assert shipped.status_categories["jira"]["Done"] == "resolved"
    assert shipped.sla_fields["zendesk"]["first_response_due"] == "custom_fields.360100"
    assert shipped.sla_fields["zendesk"]["tags"] is True
    assert shipped.sla_fields["jira"]["state"] == "customfield_10046"
    # The metrics' fields, plus what the escalation rules and the l2 template read.
    assert set(shipped.watched_fields) == {"incident_active", "incident_mitigated", "rca_url", "support_level",
                                           "custom_fields.360003", "subject", "date_observed", "description",
                                           "steps_to_reproduce", "environment", "device_os", "browser",
                                           "engineering_issue"}
    assert shipped.native_field("incident_active", "zendesk") == "custom_fields.360005"
    assert shipped.lower_sources == ("zendesk_agent",)
    with pytest.raises(TypeError):
        shipped.status_categories["zendesk"]["pending"] = "open"  # type: ignore[index]


def test_shipped_targets_follow_the_seed_documents(shipped: Policy) -> None:
    standard, enterprise = shipped.policies[1], shipped.policies[0]
    fr = {level: (t.kind, t.seconds, t.calendar) for level, t in standard.targets["first_response"].items()}
    assert fr == {"sev1": ("calendar", 900, "calendar"), "sev2": ("business", 8 * 3600, "support_berlin"),
                  "sev3": ("business", 24 * 3600, "support_berlin"),
                  "sev4": ("business_days", 8 * 3600, "support_berlin")}
    res = standard.targets["resolution"]
    assert "sev2" not in res  # Q2: to be decided, so no clock
    assert (res["sev1"].seconds, res["sev3"].seconds, res["sev4"].seconds) == (7200, 120 * 3600, 240 * 3600)
    update = standard.targets["periodic_update"]["sev1"]
    assert (update.seconds, update.grace) == (900, 300)
    assert standard.targets["rca"]["sev1"].seconds == 86400
    assert enterprise.targets["first_response"]["sev2"].seconds < fr["sev2"][1]
    assert enterprise.targets["first_response"]["sev3"].seconds < fr["sev3"][1]
    assert [w.label for w in shipped.metrics["first_response"].warn] == ["50%", "80%", "-30m"]
    assert shipped.metrics["resolution"].on_reopen == "resume"
    assert shipped.metrics["periodic_update"].cycles == "repeat"


def test_shipped_policy_starts_with_the_schema_line() -> None:
    first = SHIPPED.read_text(encoding="utf-8").splitlines()[0]
    assert first == "# yaml-language-server: $schema=./schema/policy.schema.json"


def test_schema_copies_are_identical() -> None:
    packaged = ROOT / "src" / "ticketbridge" / "schema" / "policy.schema.json"
    assert (ROOT / "mappings" / "schema" / "policy.schema.json").read_bytes() == packaged.read_bytes()


def test_version_changes_with_the_rules_not_with_comments(tmp_path: Path, base: Policy) -> None:
    commented = load_policy(write(tmp_path, "# a comment\n" + BASE, "a.yaml"), today=TODAY)
    changed = load_policy(write(tmp_path, edit(BASE, "{calendar: 30m}", "{calendar: 31m}"), "b.yaml"), today=TODAY)
    assert commented.version == base.version
    assert changed.version != base.version


def test_unquoted_dates_are_accepted(tmp_path: Path) -> None:
    text = edit(BASE, "    business_day: 8h\n", "    business_day: 8h\n    holidays: {include_dates: [2026-12-24]}\n")
    policy = load_policy(write(tmp_path, text), today=TODAY)
    office = policy.calendars["office"]
    assert isinstance(office, BusinessCalendar) and date(2026, 12, 24) in office.closed_dates


# --- severity derivation --------------------------------------------------------------------------

@pytest.mark.parametrize(("fields", "text", "level", "flags", "rule"), [
    ({"custom_fields.360003": "Sev2"}, "", "sev2", (), "custom_fields.360003 = Sev2"),
    ({"custom_fields": {"360003": "sev4"}}, "", "sev4", (), "custom_fields.360003 = sev4"),  # nested, any case
    ({"custom_fields.360003": "Sev4", "priority": "urgent"}, "outage", "sev4", (), "custom_fields.360003 = Sev4"),
    ({"priority": "urgent"}, "", "sev1", (), "priority = urgent"),
    ({"priority": "high"}, "", "sev2", (), "priority = high"),
    ({"priority": "normal"}, "", "sev3", (), "priority = normal"),
    ({"priority": "low"}, "outage", "sev4", (), "priority = low"),  # priority beats keywords
    ({"custom_fields.360003": "unknown", "priority": "high"}, "", "sev2", (), "priority = high"),
    ({}, "Total OUTAGE in EU", "sev1", ("needs_triage",), "text contains 'outage'"),
    ({}, "the app is down for all users", "sev1", ("needs_triage",), "text contains 'down for all'"),
    ({"priority": None}, "We Cannot Log In At All", "sev1", ("needs_triage",), "text contains 'cannot log in at all'"),
    ({}, "printer jam", "sev3", ("needs_triage",), "default"),
    ({"priority": ""}, "", "sev3", ("needs_triage",), "default"),
])
def test_severity_derivation(shipped: Policy, fields: dict[str, object], text: str, level: str,
                             flags: tuple[str, ...], rule: str) -> None:
    derived = shipped.derive_severity(fields, text)
    assert (derived.level, derived.flags, derived.rule) == (level, flags, rule)


@pytest.mark.parametrize(("old", "new", "source", "allowed"), [
    ("sev3", "sev1", "github", True),  # anyone may raise
    ("sev3", "sev1", "jira", True),
    ("sev3", "sev3", "github", True),  # confirming is not lowering
    ("sev1", "sev3", "github", False),  # only a Zendesk agent may lower
    ("sev1", "sev2", "jira", False),
    ("sev1", "sev2", "derived", False),
    ("sev1", "sev4", "zendesk_agent", True),
    ("sev1", "sev9", "zendesk_agent", False),  # not a level at all
])
def test_ratchet(shipped: Policy, old: str, new: str, source: str, allowed: bool) -> None:
    assert shipped.may_change(old, new, source) is allowed


# --- matching -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("facts", "policy_id"), [
    ({"tags": ["vip"], "severity": "sev1", "region": "emea"}, "vip"),  # first match wins over later ones
    ({"tags": [], "severity": "sev1", "region": "emea"}, "sev1_any"),
    ({"tags": ["internal"], "severity": "sev1", "region": "emea"}, "region"),  # tags_none excludes
    ({"tags": [], "severity": "sev3", "region": "apac"}, "region"),  # fields: value in list
    ({"tags": [], "severity": "sev3", "region": "amer"}, "standard"),
    ({"tags": [], "severity": "sev3", "region": ["amer", "emea"]}, "region"),  # multi-select field
    ({}, "standard"),
])
def test_first_matching_policy_wins(base: Policy, facts: dict[str, object], policy_id: str) -> None:
    assert base.match(facts).id == policy_id


def test_shipped_enterprise_before_standard(shipped: Policy) -> None:
    assert shipped.match({"tags": ["enterprise", "other"], "severity": "sev2"}).id == "enterprise"
    assert shipped.match({"tags": ["other"], "severity": "sev2"}).id == "standard"


def test_status_categories(shipped: Policy) -> None:
    assert shipped.category("zendesk", "pending") == "waiting_customer"
    assert shipped.category("zendesk", "Solved") == "resolved"  # case is not a different status
    assert shipped.category("jira", "In Review") == "open"
    assert shipped.category("zendesk", "some_custom_status") == "open"  # unknown: keeps clocks running


# --- Policy.due input errors ----------------------------------------------------------------------

START = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"severity": "sev9"}, "unknown severity 'sev9'; use one of: sev1, sev2, sev3, sev4"),
    ({"metric": "nope"}, "unknown metric 'nope'; use one of: first_response, resolution, periodic_update, rca"),
    ({"severity": "sev2", "metric": "resolution"}, "policy 'standard' has no resolution target for sev2"),
    ({"policy_id": "gold"}, "unknown policy 'gold'; use one of: enterprise, standard"),
    ({"start": datetime(2026, 11, 23, 8, 0)}, "start 2026-11-23T08:00:00 has no UTC offset"),
    ({"pauses": [(datetime(2026, 11, 23, 9, 0), datetime(2026, 11, 23, 10, 0, tzinfo=UTC))]}, "has no UTC offset"),
    ({"pauses": [(START.replace(hour=10), START.replace(hour=9))]}, "pause 1 ends at 2026-11-23T09:00:00Z, not after"),
    ({"pauses": [(START.replace(hour=7), START.replace(hour=9))]},
     "pause 1 starts at 2026-11-23T07:00:00Z, before the start"),
    ({"pauses": [(START.replace(hour=9), START.replace(hour=11)), (START.replace(hour=10), START.replace(hour=12))]},
     "pause 2 starts at 2026-11-23T10:00:00Z, before the end of pause 1"),
    ({"pauses": [(START.replace(day=26, hour=16), START.replace(day=27))]},
     "not before the due instant 2026-11-25T16:00:00Z"),
])
def test_due_rejects_bad_questions_with_one_clear_line(shipped: Policy, kwargs: dict[str, object],
                                                       message: str) -> None:
    args: dict[str, object] = {"severity": "sev3", "metric": "first_response", "start": START, **kwargs}
    with pytest.raises(PolicyInputError) as caught:
        shipped.due(**args)  # type: ignore[arg-type]
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_due_by_policy_id_and_pause(shipped: Policy) -> None:
    assert shipped.due("sev3", "first_response", START).due_at == datetime(2026, 11, 25, 16, 0, tzinfo=UTC)
    enterprise = shipped.due("sev3", "first_response", START, policy_id="enterprise")
    assert enterprise.due_at == datetime(2026, 11, 23, 16, 0, tzinfo=UTC)
    assert (enterprise.kind, enterprise.target_seconds, enterprise.calendar.name) == ("business", 28800,
                                                                                      "support_berlin")
    paused = shipped.due("sev3", "first_response", START, [(START.replace(hour=9), START.replace(hour=11))])
    assert paused.due_at == datetime(2026, 11, 26, 10, 0, tzinfo=UTC)  # Thu 11:00 CET: 2 business hours later


# --- admin mistakes: file:line:column, never a traceback ------------------------------------------

def test_the_base_policy_is_valid(tmp_path: Path) -> None:
    assert check_policy(write(tmp_path, BASE), today=TODAY)[1] == []


@pytest.mark.parametrize(("old", "new", "needle", "expected"), [
    pytest.param("  - id: standard\n    when: {}\n    calendar: office",
                 "  - id: standard\n    when: {}\n    calendar: offize", "calendar: offize",
                 "policies[3].calendar: unknown calendar 'offize'; calendars: calendar, nights, office",
                 id="unknown-calendar"),
    pytest.param("default_calendar: office", "default_calendar: ofice", "default_calendar",
                 "default_calendar: unknown calendar 'ofice'", id="unknown-default-calendar"),
    pytest.param("        sev3: {business: 8h}", "        sev5: {business: 8h}", "sev5",
                 "policies[3].targets.first_response.sev5: unknown severity level 'sev5'; levels: sev1, sev2, sev3",
                 id="unknown-level-in-targets"),
    pytest.param("    when: {severity_in: [sev1], tags_none", "    when: {severity_in: [sev0], tags_none",
                 "when: {severity_in: [sev0]", "unknown severity level 'sev0'", id="unknown-level-in-when"),
    pytest.param("      map: {urgent: sev1, normal: sev3}", "      map: {urgent: sev1, normal: sev7}",
                 "map: {urgent", "unknown severity level 'sev7'", id="unknown-level-in-derive"),
    pytest.param("  - id: standard\n    when: {}", "  - id: standard\n    when: {tags_any: [x]}",
                 "when: {tags_any: [x]}", "the last policy must be the catch-all `when: {}`",
                 id="catch-all-missing"),
    pytest.param("    when: {tags_any: [vip]}", "    when: {}", "when: {}",
                 "policy 'vip' matches every ticket (when: {}), so the policies after it never apply",
                 id="catch-all-not-last"),
    pytest.param("{calendar: 30m}", "{calendar: 15x}", "15x",
                 "policies[3].targets.first_response.sev1.calendar: invalid duration '15x'", id="bad-duration"),
    pytest.param("{calendar: 30m}", "{calendar: 30m, grace: soon}", "grace: soon",
                 "invalid duration 'soon'", id="bad-grace"),
    pytest.param("business_day: 8h", "business_day: 8 hours", "business_day: 8 hours",
                 "invalid duration '8 hours'", id="bad-business-day"),
    pytest.param('warn: ["50%", "-30m"]', 'warn: ["50%", "120%"]', 'warn: ["50%", "120%"]',
                 "'120%' is not a warning", id="bad-warning-percent"),
    pytest.param('warn: ["50%", "-30m"]', 'warn: ["50%", "30m"]', 'warn: ["50%", "30m"]',
                 "'30m' is not a warning", id="bad-warning-form"),
    pytest.param("      resolution:\n        sev3", "      resolutoin:\n        sev3", "resolutoin",
                 "unknown metric 'resolutoin'; metrics: first_response, resolution", id="unknown-metric"),
    pytest.param("    when: {tags_any: [vip]}", "    when: {tagz_any: [vip]}", "tagz_any",
                 "unknown key 'tagz_any'; did you mean 'tags_any'?", id="unknown-condition-key"),
    pytest.param("{business_days: 5}", "{business_days: 5, business: 8h}", "{business_days: 5, business",
                 "a target has exactly one of calendar: DURATION (24/7), business: DURATION or business_days",
                 id="two-target-kinds"),
    pytest.param("  - id: standard\n    when: {}\n    calendar: office",
                 "  - id: standard\n    when: {}\n    calendar: nights", "        sev3: {business_days",
                 "calendar 'nights' has no business_day", id="business-days-without-business-day"),
    pytest.param("    - default: sev3\n      flags: [needs_triage]\n", "", "    - from: priority",
                 "the last derive rule must be a default", id="derive-without-default"),
    pytest.param("    stop: [agent_public_comment]\n    warn", "    stop: [created]\n    warn", "stop: [created]",
                 "created cannot stop a clock", id="created-as-stop"),
    pytest.param("    stop: [{status_in: [resolved, closed]}]", "    stop: [{status_in: [solved]}]",
                 "status_in: [solved]", "'solved' is not one of: open, waiting_customer", id="unknown-category"),
    pytest.param("  - id: sev1_any", "  - id: vip", "id: vip\n    when: {severity_in",
                 "policy id 'vip' is already used", id="duplicate-policy-id"),
    pytest.param('    week: {daily: ["22:00-06:00"]}', '    week: {daily: ["22:00-06:00", "05:00-07:00"]}',
                 "week: {daily", "intervals overlap", id="calendar-overlap"),
    pytest.param("    timezone: Europe/Berlin\n    week: {daily", "    timezone: Europe/Berln\n    week: {daily",
                 "timezone: Europe/Berln", "unknown time zone 'Europe/Berln'", id="unknown-time-zone"),
    pytest.param("    stop: [agent_public_comment]\n    warn", "    stop: [agent_reply]\n    warn",
                 "stop: [agent_reply]", "the events are created and agent_public_comment", id="unknown-event"),
])
def test_bad_policy_points_at_the_line(tmp_path: Path, old: str, new: str, needle: str, expected: str) -> None:
    text = edit(BASE, old, new)
    path = write(tmp_path, text)
    problems = errors(path)
    line = line_of(text, needle) if needle in text else None
    hits = [p for p in problems if expected in p.message]
    assert hits, problems
    assert str(hits[0]).startswith(f"{path}:{line}:"), (str(hits[0]), line)
    assert "Traceback" not in str(hits[0])


def test_yaml_syntax_error_position(tmp_path: Path) -> None:
    text = edit(BASE, "    on_reopen: resume", "    on_reopen: resume\n   bad: : indentation")
    path = write(tmp_path, text)
    message = only(errors(path))
    assert message.startswith(f"{path}:{line_of(text, 'bad: :')}:")
    assert "could not parse YAML" in message


def test_every_problem_is_reported_in_one_pass(tmp_path: Path) -> None:
    text = edit(edit(BASE, "{calendar: 30m}", "{calendar: 30x}"), "default_calendar: office", "default_calendar: x")
    problems = errors(write(tmp_path, text))
    assert {p.line for p in problems} == {line_of(text, "30x"), line_of(text, "default_calendar")}


def test_missing_file_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    assert "cannot read file" in only(errors(tmp_path / "nope.yaml"))


def test_no_line_deletion_of_the_shipped_policy_crashes(tmp_path: Path) -> None:
    # An admin deleting any line gets a valid policy or a ConfigError, never another exception.
    lines = SHIPPED.read_text(encoding="utf-8").splitlines(keepends=True)
    failures = 0
    for index in range(0, len(lines), 5):
        path = write(tmp_path, "".join(lines[:index] + lines[index + 1:]))
        try:
            load_policy(path, today=TODAY)
        except ConfigError as error:
            failures += 1
            assert all(p.file == str(path) and p.line >= 1 for p in error.problems)
    assert failures > 0  # the sample does hit lines that matter
