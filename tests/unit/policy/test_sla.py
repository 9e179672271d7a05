"""SLA clocks: the exact instants of sla-semantics §8 and the invariants of §7.4.

T01-T17 go through `Policy.due` (what `ticketbridge sla due` prints); T18-T20 and the E cases go
through `compute_clocks`, the replay of a ticket's history. Cases that need the NYC, NIGHT, BER-SN
or DE calendars use a test-only policy written to a temporary directory.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ticketbridge.sync.policy.calendar import CalendarError, build_calendar
from ticketbridge.sync.policy.policy import Policy, load_policy
from ticketbridge.sync.policy.sla import Clock, HistoryEvent, TicketSla, compute_clocks

ROOT = Path(__file__).resolve().parents[3]
SHIPPED = ROOT / "mappings" / "policy.yaml"
TODAY = date(2026, 11, 23)


def z(text: str) -> datetime:
    """An instant from ISO text; 'Z' or an offset required."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert moment.tzinfo is not None
    return moment.astimezone(UTC)


# --- policies ------------------------------------------------------------------------------------

def _holidays(country: str, subdiv: str | None = None, observed: bool = True,
              include: Sequence[str] = ()) -> dict[str, Any]:
    source: dict[str, Any] = {"provider": "python-holidays", "country": country, "categories": ["public"],
                              "observed": observed}
    if subdiv:
        source["subdiv"] = subdiv
    return {"sources": [source], "include_dates": list(include)}


def _office(tz: str, hours: str, business_day: str, holidays: dict[str, Any] | None) -> dict[str, Any]:
    spec: dict[str, Any] = {"timezone": tz, "week": {"mon-fri": [hours]}, "business_day": business_day}
    if holidays:
        spec["holidays"] = holidays
    return spec


# The §8 fixture calendars. Each gets a policy selected by a tag of the same name; BER is the catch-all.
FIXTURE_CALENDARS = {
    "ber_xmas": _office("Europe/Berlin", "09:00-17:00", "8h", _holidays("DE", "BE", include=["2026-12-24"])),
    "ber_sn": _office("Europe/Berlin", "09:00-17:00", "8h", _holidays("DE", "SN")),
    "de": _office("Europe/Berlin", "09:00-17:00", "8h", _holidays("DE")),
    "nyc": _office("America/New_York", "08:00-18:00", "10h", _holidays("US")),
    "nyc_unobserved": _office("America/New_York", "08:00-18:00", "10h", _holidays("US", observed=False)),
    "night": {"timezone": "Europe/Berlin", "week": {"daily": ["22:00-06:00"]}, "business_day": "8h"},
    "ber": _office("Europe/Berlin", "09:00-17:00", "8h", _holidays("DE", "BE")),
}
FIXTURE_TARGETS = {
    "first_response": {"sev1": {"calendar": "15m"}, "sev3": {"business": "24h"}, "sev4": {"business_days": 1}},
    "resolution": {"sev1": {"calendar": "2h"}, "sev3": {"business_days": 15}, "sev4": {"business_days": 30}},
    # "8 bh" and "24 bh" on any calendar (T13-T17), pausable (E5)
    "work": {"sev3": {"business": "8h"}, "sev2": {"business": "24h"}},
    "handling": {"sev3": {"calendar": "1h"}},
}
FIXTURE = {
    "version": 1,
    "calendars": FIXTURE_CALENDARS,
    "default_calendar": "ber",
    "severity": {"levels": ["sev1", "sev2", "sev3", "sev4"], "derive": [{"default": "sev3"}],
                 "changes": {"lower": ["zendesk_agent"]}},
    "status_categories": {"zendesk": {"new": "open", "open": "open", "pending": "waiting_customer",
                                      "solved": "resolved", "closed": "closed"}},
    "metrics": {
        # §8 T01 names these three warnings
        "first_response": {"start": ["created"], "stop": ["agent_public_comment"], "warn": ["50%", "75%", "-2h"]},
        "resolution": {"start": ["created"], "stop": [{"status_in": ["resolved", "closed"]}],
                       "pause": [{"status_in": ["waiting_customer"]}], "on_reopen": "restart"},
        "work": {"start": ["created"], "stop": [{"status_in": ["resolved", "closed"]}],
                 "pause": [{"status_in": ["waiting_customer"]}]},
        # a new cycle each time the ticket is worked on again
        "handling": {"start": ["created"], "stop": [{"status_in": ["resolved", "closed"]}], "cycles": "repeat"},
    },
    "policies": [{"id": name, "when": {} if name == "ber" else {"tags_any": [name]}, "calendar": name,
                  "targets": FIXTURE_TARGETS} for name in FIXTURE_CALENDARS],
}


@pytest.fixture(scope="module")
def shipped() -> Policy:
    return load_policy(SHIPPED, today=TODAY)


@pytest.fixture(scope="module")
def fixture(tmp_path_factory: pytest.TempPathFactory) -> Policy:
    path = tmp_path_factory.mktemp("policy") / "fixture.yaml"
    path.write_text(yaml.safe_dump(FIXTURE, sort_keys=False), encoding="utf-8")
    return load_policy(path, today=TODAY)


@pytest.fixture(scope="module")
def restart(tmp_path_factory: pytest.TempPathFactory) -> Policy:
    """The shipped policy with on_reopen: restart for resolution (E3)."""
    text = SHIPPED.read_text(encoding="utf-8")
    assert "    on_reopen: resume" in text
    path = tmp_path_factory.mktemp("restart") / "policy.yaml"
    path.write_text(text.replace("    on_reopen: resume", "    on_reopen: restart"), encoding="utf-8")
    return load_policy(path, today=TODAY)


def pick(request: pytest.FixtureRequest, name: str) -> Policy:
    policy = request.getfixturevalue(name)
    assert isinstance(policy, Policy)
    return policy


# --- T01-T17 (and T18/T19 as pauses) through Policy.due ------------------------------------------

DUE_CASES = [
    # id, policy, policy id, severity, metric, start, pauses, expected local (as §8 writes it), expected UTC
    ("T01", "shipped", None, "sev3", "first_response", "2026-11-20T15:30Z", (),
     "2026-11-25T16:30+01:00", "2026-11-25T15:30Z"),
    ("T02", "shipped", None, "sev3", "first_response", "2026-11-24T01:10Z", (),
     "2026-11-26T17:00+01:00", "2026-11-26T16:00Z"),
    ("T03", "shipped", None, "sev4", "first_response", "2026-11-20T16:00Z", (),
     "2026-11-23T17:00+01:00", "2026-11-23T16:00Z"),
    ("T04", "shipped", None, "sev4", "first_response", "2026-11-21T10:00Z", (),
     "2026-11-23T17:00+01:00", "2026-11-23T16:00Z"),
    ("T05", "shipped", None, "sev3", "first_response", "2026-12-23T09:00Z", (),
     "2026-12-29T10:00+01:00", "2026-12-29T09:00Z"),
    ("T05-closure", "fixture", "ber_xmas", "sev3", "first_response", "2026-12-23T09:00Z", (),
     "2026-12-30T10:00+01:00", "2026-12-30T09:00Z"),
    ("T06", "shipped", None, "sev3", "resolution", "2026-04-02T09:00Z", (),
     "2026-04-27T11:00+02:00", "2026-04-27T09:00Z"),
    ("T07", "shipped", None, "sev4", "resolution", "2026-12-14T08:00Z", (),
     "2027-01-26T17:00+01:00", "2027-01-26T16:00Z"),
    ("T08", "shipped", None, "sev4", "first_response", "2027-03-05T15:00Z", (),
     "2027-03-09T16:00+01:00", "2027-03-09T15:00Z"),
    ("T08-DE", "fixture", "de", "sev4", "first_response", "2027-03-05T15:00Z", (),
     "2027-03-08T16:00+01:00", "2027-03-08T15:00Z"),
    ("T09", "shipped", None, "sev4", "first_response", "2027-03-26T09:00Z", (),
     "2027-03-30T17:00+02:00", "2027-03-30T15:00Z"),
    ("T10", "shipped", None, "sev1", "resolution", "2026-03-29T00:30Z", (),
     "2026-03-29T04:30+02:00", "2026-03-29T02:30Z"),
    ("T11", "shipped", None, "sev1", "first_response", "2026-10-25T00:50Z", (),
     "2026-10-25T02:05+01:00", "2026-10-25T01:05Z"),
    ("T12", "shipped", None, "sev1", "rca", "2026-10-24T10:00Z", (),
     "2026-10-25T11:00+01:00", "2026-10-25T10:00Z"),
    ("T13", "fixture", "night", "sev3", "work", "2026-10-24T19:00Z", (),
     "2026-10-25T05:00+01:00", "2026-10-25T04:00Z"),
    ("T14", "fixture", "night", "sev3", "work", "2026-03-28T21:00Z", (),
     "2026-03-29T23:00+02:00", "2026-03-29T21:00Z"),
    ("T15", "fixture", "nyc", "sev3", "work", "2026-03-06T22:00Z", (),
     "2026-03-09T15:00-04:00", "2026-03-09T19:00Z"),
    ("T16", "fixture", "nyc", "sev2", "work", "2026-11-25T20:00Z", (),
     "2026-12-01T09:00-05:00", "2026-12-01T14:00Z"),
    ("T17", "fixture", "nyc", "sev3", "work", "2026-07-02T21:00Z", (),
     "2026-07-06T15:00-04:00", "2026-07-06T19:00Z"),
    ("T17-unobserved", "fixture", "nyc_unobserved", "sev3", "work", "2026-07-02T21:00Z", (),
     "2026-07-03T15:00-04:00", "2026-07-03T19:00Z"),
    ("T18", "shipped", None, "sev3", "resolution", "2026-11-02T08:00Z", (("2026-11-04T12:00Z", "2026-11-09T10:00Z"),),
     "2026-11-25T15:00+01:00", "2026-11-25T14:00Z"),
    ("T18-unpaused", "shipped", None, "sev3", "resolution", "2026-11-02T08:00Z", (),
     "2026-11-20T17:00+01:00", "2026-11-20T16:00Z"),
    ("T18-BER-SN", "fixture", "ber_sn", "sev3", "resolution", "2026-11-02T08:00Z",
     (("2026-11-04T12:00Z", "2026-11-09T10:00Z"),), "2026-11-26T15:00+01:00", "2026-11-26T14:00Z"),
    ("T19", "shipped", None, "sev1", "resolution", "2026-11-23T09:00Z", (("2026-11-23T09:30Z", "2026-11-23T10:15Z"),),
     "2026-11-23T12:45+01:00", "2026-11-23T11:45Z"),
    ("two-pauses", "shipped", None, "sev1", "resolution", "2026-11-23T09:00Z",
     (("2026-11-23T09:30Z", "2026-11-23T10:00Z"), ("2026-11-23T10:30Z", "2026-11-23T11:00Z")),
     "2026-11-23T13:00+01:00", "2026-11-23T12:00Z"),
]


@pytest.mark.parametrize(("name", "policy_id", "severity", "metric", "start", "pauses", "local", "utc"),
                         [pytest.param(*case[1:], id=case[0]) for case in DUE_CASES])
def test_due_instants_of_section_8(request: pytest.FixtureRequest, name: str, policy_id: str | None, severity: str,
                                   metric: str, start: str, pauses: tuple[tuple[str, str], ...], local: str,
                                   utc: str) -> None:
    assert z(local) == z(utc), "the local and UTC forms of the expected instant disagree"
    policy = pick(request, name)
    result = policy.due(severity, metric, z(start), [(z(a), z(b)) for a, b in pauses], policy_id=policy_id)
    assert result.due_at == z(utc)
    assert result.due_at.tzinfo == UTC


# --- history helpers ------------------------------------------------------------------------------

class Ticket:
    """Builds a history: `t.at("2026-11-23T08:00Z").status("pending")` and so on."""

    def __init__(self, created: str, severity: str | None = "sev3", tags: Sequence[str] = (),
                 status: str | None = None) -> None:
        self.events: list[HistoryEvent] = []
        self.now = z(created)
        self.add("created")
        if severity:
            self.add("severity", value=severity, source="derived")
        if tags:
            self.add("tags", value=tuple(tags))
        if status:
            self.add("status", value=status)

    def add(self, kind: str, **kwargs: Any) -> Ticket:
        self.events.append(HistoryEvent(at=self.now, seq=len(self.events), kind=kind, **kwargs))
        return self

    def at(self, when: str) -> Ticket:
        self.now = z(when)
        return self

    def status(self, value: str) -> Ticket:
        return self.add("status", value=value)

    def reply(self, *, public: bool = True, by_agent: bool = True) -> Ticket:
        return self.add("comment", public=public, by_agent=by_agent)

    def severity(self, level: str, source: str = "zendesk_agent") -> Ticket:
        return self.add("severity", value=level, source=source)

    def field(self, name: str, value: Any) -> Ticket:
        return self.add("field", field=name, value=value)

    def tags(self, *tags: str) -> Ticket:
        return self.add("tags", value=tuple(tags))

    def sla(self, policy: Policy, now: str) -> TicketSla:
        return compute_clocks(policy, "zendesk", self.events, z(now))


def clock(sla: TicketSla, metric: str, cycle: int | None = None) -> Clock:
    found = [c for c in sla.clocks if c.metric == metric and (cycle is None or c.cycle == cycle)]
    assert found, f"no {metric} clock (cycle {cycle}) in {[(c.metric, c.cycle) for c in sla.clocks]}"
    return found[-1]


def events(sla: TicketSla, kind: str, metric: str | None = None) -> list[tuple[str, int, str, datetime | None,
                                                                               datetime]]:
    return [(e.metric, e.cycle, e.threshold, e.nominal_at, e.recorded_at) for e in sla.events
            if e.kind == kind and (metric is None or e.metric == metric)]


# --- T01/T02 through the clocks -------------------------------------------------------------------

def test_t01_warnings_of_section_8(fixture: Policy) -> None:
    t = Ticket("2026-11-20T15:30Z")
    fr = clock(t.sla(fixture, "2026-11-20T15:31Z"), "first_response")
    assert [(a.kind, a.threshold, a.at) for a in fr.alarms] == [
        ("warning", "50%", z("2026-11-24T11:30Z")), ("warning", "75%", z("2026-11-25T09:30Z")),
        ("warning", "-2h", z("2026-11-25T13:30Z")), ("breach", "due", z("2026-11-25T15:30Z"))]
    assert fr.due_at == z("2026-11-25T15:30Z")


def test_t01_warnings_of_the_shipped_policy_fire_once_at_their_instants(shipped: Policy) -> None:
    t = Ticket("2026-11-20T15:30Z")
    assert t.sla(shipped, "2026-11-24T11:29:59Z").next_fire_at == z("2026-11-24T11:30Z")
    sla = t.sla(shipped, "2026-11-26T00:00Z")
    assert events(sla, "warning", "first_response") == [
        ("first_response", 1, "50%", z("2026-11-24T11:30Z"), z("2026-11-24T11:30Z")),
        ("first_response", 1, "80%", z("2026-11-25T10:42Z"), z("2026-11-25T10:42Z")),
        ("first_response", 1, "-30m", z("2026-11-25T15:00Z"), z("2026-11-25T15:00Z"))]
    assert events(sla, "breach", "first_response") == [
        ("first_response", 1, "due", z("2026-11-25T15:30Z"), z("2026-11-25T15:30Z"))]
    keys = [e.key for e in sla.events]
    assert len(keys) == len(set(keys))  # once per threshold per cycle


@pytest.mark.parametrize(("reply_at", "outcome", "breached"), [
    ("2026-11-26T16:00:00Z", "met", False),  # exactly at due: met
    ("2026-11-26T16:00:01Z", "breached", True),
])
def test_t02_reply_at_due_is_met(shipped: Policy, reply_at: str, outcome: str, breached: bool) -> None:
    sla = Ticket("2026-11-24T01:10Z").at(reply_at).reply().sla(shipped, "2026-11-27T00:00Z")
    fr = clock(sla, "first_response")
    assert (fr.status, fr.outcome, fr.breached) == ("stopped", outcome, breached)
    assert fr.started_at == z("2026-11-24T01:10Z")
    # Counted from the opening at 09:00. 16:00:01Z is after closing time, so no more business time is
    # consumed, yet the reply came after due: met is decided by stopped_at <= due_at.
    assert fr.consumed == 24 * 3600


@pytest.mark.parametrize(("public", "by_agent", "stops"), [
    pytest.param(True, True, True, id="agent-public-reply"),
    pytest.param(True, False, False, id="end-user-or-bot-or-mirror"),
    pytest.param(False, True, False, id="internal-note"),
])
def test_only_a_human_agents_public_reply_stops_first_response(shipped: Policy, public: bool, by_agent: bool,
                                                               stops: bool) -> None:
    sla = Ticket("2026-11-23T08:00Z").at("2026-11-23T09:00Z").reply(public=public, by_agent=by_agent) \
        .sla(shipped, "2026-11-23T10:00Z")
    assert clock(sla, "first_response").status == ("stopped" if stops else "running")


def test_raise_and_reply_in_one_update_breach_at_the_change(shipped: Policy) -> None:
    # Changes first, then conditions: the reply is judged on the new 15-minute target.
    sla = Ticket("2026-11-23T08:00Z").at("2026-11-23T08:20Z").severity("sev1").reply() \
        .sla(shipped, "2026-11-23T09:00Z")
    fr = clock(sla, "first_response")
    assert (fr.status, fr.outcome, fr.breached) == ("stopped", "breached", True)
    assert (fr.breach_nominal_at, fr.breach_recorded_at) == (z("2026-11-23T08:15Z"), z("2026-11-23T08:20Z"))


def test_raise_and_update_in_one_update_within_grace(shipped: Policy) -> None:
    # sev2 has no periodic_update target: the outage cycle is tracked but not counted until sev1.
    sla = Ticket("2026-11-23T13:55Z", "sev2").at("2026-11-23T14:00Z").field("incident_active", True) \
        .at("2026-11-23T14:17Z").severity("sev1").reply().sla(shipped, "2026-11-23T14:30Z")
    first = clock(sla, "periodic_update", 1)
    assert (first.started_at, first.status, first.outcome, first.breached) == (
        z("2026-11-23T14:00Z"), "stopped", "met_within_grace", False)
    assert [e for e in sla.events if e.metric == "periodic_update" and e.cycle == 1
            and e.kind in ("warning", "breach")] == []


def test_same_update_reply_and_pending_stop_first_response_and_pause_resolution(shipped: Policy) -> None:
    sla = Ticket("2026-11-23T08:00Z").at("2026-11-23T09:00Z").reply().status("pending") \
        .sla(shipped, "2026-11-23T10:00Z")
    fr, res = clock(sla, "first_response"), clock(sla, "resolution")
    assert (fr.status, fr.stopped_at) == ("stopped", z("2026-11-23T09:00Z"))
    assert (res.status, res.segments) == ("paused", ((z("2026-11-23T08:00Z"), z("2026-11-23T09:00Z")),))


# --- T18-T20 --------------------------------------------------------------------------------------

def t18(tags: Sequence[str] = ()) -> Ticket:
    return Ticket("2026-11-02T08:00Z", tags=tags).at("2026-11-04T12:00Z").status("pending") \
        .at("2026-11-09T10:00Z").status("open")


@pytest.mark.parametrize(("policy", "tags", "due"), [
    pytest.param("shipped", (), "2026-11-25T14:00Z", id="T18-BER"),
    pytest.param("fixture", ("ber_sn",), "2026-11-26T14:00Z", id="T18-BER-SN"),
])
def test_t18_pause_and_resume_across_days(request: pytest.FixtureRequest, policy: str, tags: tuple[str, ...],
                                          due: str) -> None:
    chosen = pick(request, policy)
    paused = clock(t18(tags).sla(chosen, "2026-11-05T12:00Z"), "resolution")
    assert (paused.status, paused.due_at) == ("paused", None)
    assert (paused.consumed, paused.remaining) == (20 * 3600, 100 * 3600)
    running = clock(t18(tags).sla(chosen, "2026-11-10T12:00Z"), "resolution")
    assert (running.status, running.due_at, running.started_at) == ("running", z(due), z("2026-11-02T08:00Z"))
    unpaused = clock(Ticket("2026-11-02T08:00Z").sla(pick(request, "shipped"), "2026-11-03T00:00Z"), "resolution")
    assert unpaused.due_at == z("2026-11-20T16:00Z")


def test_t19_pause_on_a_calendar_clock(shipped: Policy) -> None:
    t = Ticket("2026-11-23T09:00Z", "sev1").at("2026-11-23T09:30Z").status("pending")
    paused = clock(t.sla(shipped, "2026-11-23T10:00Z"), "resolution")
    assert (paused.status, paused.due_at, paused.remaining) == ("paused", None, 90 * 60)
    running = clock(t.at("2026-11-23T10:15Z").status("open").sla(shipped, "2026-11-23T10:30Z"), "resolution")
    assert (running.status, running.due_at) == ("running", z("2026-11-23T11:45Z"))


def test_t20_before_reclassification(shipped: Policy) -> None:
    sla = Ticket("2026-11-23T08:00Z").sla(shipped, "2026-11-23T08:05Z")
    assert clock(sla, "first_response").due_at == z("2026-11-25T16:00Z")
    assert clock(sla, "resolution").due_at == z("2026-12-11T16:00Z")


@pytest.mark.parametrize(("raised_at", "fr_due", "fr_breached", "nominal", "recorded"), [
    pytest.param("2026-11-23T08:10Z", "2026-11-23T08:15Z", False, None, None, id="T20a"),
    pytest.param("2026-11-23T08:20Z", None, True, "2026-11-23T08:15Z", "2026-11-23T08:20Z", id="T20b"),
])
def test_t20_reclassification_replays_from_started_at(shipped: Policy, raised_at: str, fr_due: str | None,
                                                      fr_breached: bool, nominal: str | None,
                                                      recorded: str | None) -> None:
    sla = Ticket("2026-11-23T08:00Z").at(raised_at).severity("sev1", "github").sla(shipped, raised_at)
    fr, res = clock(sla, "first_response"), clock(sla, "resolution")
    assert sla.severity == "sev1"
    assert (fr.severity, fr.target_kind, fr.target_seconds, fr.started_at) == (
        "sev1", "calendar", 900, z("2026-11-23T08:00Z"))
    assert res.due_at == z("2026-11-23T10:00Z")
    assert fr.breached is fr_breached
    if fr_due:
        assert fr.due_at == z(fr_due) and fr.remaining == 300
    else:
        # Not back-dated: the breach happens when the reclassification does.
        assert (fr.breach_nominal_at, fr.breach_recorded_at) == (z(nominal or ""), z(recorded or ""))
        assert events(sla, "breach", "first_response") == [
            ("first_response", 1, "due", z(nominal or ""), z(recorded or ""))]
        # The passed warnings are overtaken by the breach raised at the same instant.
        assert events(sla, "warning", "first_response") == []
    assert ("resolution", 1, "sev3->sev1", z("2026-11-23T10:00Z"), z(raised_at)) in events(sla, "deadline_changed")


# --- E cases --------------------------------------------------------------------------------------

def outage(reply_times: Sequence[str] = ("2026-11-23T14:10Z", "2026-11-23T14:24Z")) -> Ticket:
    t = Ticket("2026-11-23T13:55Z", "sev1").at("2026-11-23T14:00Z").field("incident_active", True)
    for when in reply_times:
        t.at(when).reply()
    return t


def test_e1_outage_updates_every_15_minutes_with_grace(shipped: Policy) -> None:
    sla = outage().sla(shipped, "2026-11-23T15:00Z")
    cycles = [c for c in sla.clocks if c.metric == "periodic_update"]
    assert [(c.cycle, c.started_at, c.status, c.outcome) for c in cycles] == [
        (1, z("2026-11-23T14:00Z"), "stopped", "met"), (2, z("2026-11-23T14:10Z"), "stopped", "met"),
        (3, z("2026-11-23T14:24Z"), "running", None)]
    third = cycles[-1]
    assert third.due_at == z("2026-11-23T14:39Z")
    assert [(a.threshold, a.at) for a in third.alarms] == [("80%", z("2026-11-23T14:36Z")),
                                                           ("due", z("2026-11-23T14:44Z"))]
    assert ("periodic_update", 3, "80%", z("2026-11-23T14:36Z"), z("2026-11-23T14:36Z")) in events(sla, "warning")
    assert events(sla, "breach", "periodic_update") == [
        ("periodic_update", 3, "due", z("2026-11-23T14:39Z"), z("2026-11-23T14:44Z"))]
    assert outage().sla(shipped, "2026-11-23T14:40Z").next_fire_at == z("2026-11-23T14:44Z")


def test_e1_update_within_grace(shipped: Policy) -> None:
    sla = outage(("2026-11-23T14:10Z", "2026-11-23T14:24Z", "2026-11-23T14:41Z")).sla(shipped, "2026-11-23T14:50Z")
    third = clock(sla, "periodic_update", 3)
    assert (third.status, third.outcome, third.breached) == ("stopped", "met_within_grace", False)
    assert clock(sla, "periodic_update").cycle == 4
    assert events(sla, "breach", "periodic_update") == []


def test_e1_outage_ends_cancels_the_cycle(shipped: Policy) -> None:
    sla = outage().at("2026-11-23T14:30Z").field("incident_active", False).sla(shipped, "2026-11-23T16:00Z")
    third = clock(sla, "periodic_update", 3)
    assert (third.status, third.outcome, third.breached, third.due_at) == ("cancelled", None, False, None)
    assert events(sla, "breach", "periodic_update") == []
    assert events(sla, "warning", "periodic_update") == [
        ("periodic_update", 2, "80%", z("2026-11-23T14:22Z"), z("2026-11-23T14:22Z"))]


def e2() -> Ticket:
    return Ticket("2026-11-23T10:00Z", "sev1").at("2026-11-23T12:10Z").status("pending")


def test_e2_paused_after_a_breach(shipped: Policy) -> None:
    paused = clock(e2().sla(shipped, "2026-11-23T12:30Z"), "resolution")
    assert (paused.status, paused.breached, paused.due_at) == ("paused", True, None)
    sla = e2().at("2026-11-23T13:00Z").status("open").at("2026-11-23T13:20Z").status("solved") \
        .sla(shipped, "2026-11-23T14:00Z")
    res = clock(sla, "resolution")
    assert (res.status, res.breached, res.outcome) == ("stopped", True, "breached")
    assert res.breach_nominal_at == z("2026-11-23T12:00Z")
    assert (res.consumed, res.remaining) == (150 * 60, -30 * 60)  # late by 30 minutes


@pytest.mark.parametrize(("policy", "cycle", "due"), [
    pytest.param("shipped", 1, "2026-11-23T13:00Z", id="E3-resume"),
    pytest.param("restart", 2, "2026-11-23T14:00Z", id="E3-restart"),
])
def test_e3_reopen(request: pytest.FixtureRequest, policy: str, cycle: int, due: str) -> None:
    t = Ticket("2026-11-23T10:00Z", "sev1").at("2026-11-23T11:00Z").status("solved")
    chosen = pick(request, policy)
    solved = clock(t.sla(chosen, "2026-11-23T11:30Z"), "resolution")
    assert (solved.status, solved.outcome, solved.consumed) == ("stopped", "met", 3600)
    sla = t.at("2026-11-23T12:00Z").status("open").sla(chosen, "2026-11-23T12:30Z")
    reopened = clock(sla, "resolution")
    assert (reopened.cycle, reopened.status, reopened.due_at) == (cycle, "running", z(due))
    if cycle == 2:
        assert clock(sla, "resolution", 1).outcome == "met"


def test_reopen_ignore_stays_stopped(fixture: Policy) -> None:
    t = Ticket("2026-11-23T09:00Z").at("2026-11-23T10:00Z").status("solved").at("2026-11-23T11:00Z").status("open")
    t.at("2026-11-23T12:00Z").status("pending").at("2026-11-23T13:00Z").status("open")
    work = clock(t.sla(fixture, "2026-11-23T14:00Z"), "work")
    assert (work.status, work.cycle, work.outcome, work.stopped_at) == ("stopped", 1, "met", z("2026-11-23T10:00Z"))
    assert sum("reopened" in line for line in work.why) == 1


def test_repeating_clock_waits_while_its_stop_condition_holds(fixture: Policy) -> None:
    t = Ticket("2026-11-23T09:00Z").at("2026-11-23T09:20Z").status("solved").at("2026-11-23T09:40Z").tags("x")
    solved = t.sla(fixture, "2026-11-23T10:00Z")
    assert [(c.cycle, c.status) for c in solved.clocks if c.metric == "handling"] == [(1, "stopped")]
    reopened = t.at("2026-11-23T11:00Z").status("open").sla(fixture, "2026-11-23T11:30Z")
    cycles = [(c.cycle, c.status, c.started_at, c.due_at) for c in reopened.clocks if c.metric == "handling"]
    assert cycles == [(1, "stopped", z("2026-11-23T09:00Z"), None),
                      (2, "running", z("2026-11-23T11:00Z"), z("2026-11-23T12:00Z"))]


def test_e4_created_in_the_pause_state(shipped: Policy) -> None:
    t = Ticket("2026-11-23T10:00Z", "sev1", status="pending")
    paused = clock(t.sla(shipped, "2026-11-23T10:30Z"), "resolution")
    assert (paused.status, paused.started_at, paused.consumed, paused.segments) == (
        "paused", z("2026-11-23T10:00Z"), 0, ())
    running = clock(t.at("2026-11-23T11:00Z").status("open").sla(shipped, "2026-11-23T11:30Z"), "resolution")
    assert running.due_at == z("2026-11-23T13:00Z")


def test_e5_pausable_business_target(fixture: Policy) -> None:
    t = Ticket("2026-11-23T15:00Z").at("2026-11-23T15:30Z").status("pending").at("2026-11-24T09:00Z").status("open")
    work = clock(t.sla(fixture, "2026-11-24T10:00Z"), "work")
    assert (work.status, work.due_at) == ("running", z("2026-11-25T08:30Z"))


def test_e8_first_match_wins_and_rematching(shipped: Policy) -> None:
    t = Ticket("2026-11-23T08:00Z", "sev2", tags=["enterprise"])
    before = t.sla(shipped, "2026-11-23T08:30Z")
    assert before.policy_id == "enterprise"
    assert clock(before, "first_response").due_at == z("2026-11-23T12:00Z")  # 4 business hours
    sla = t.at("2026-11-23T09:00Z").tags("vip").sla(shipped, "2026-11-23T09:30Z")
    fr = clock(sla, "first_response")
    assert (sla.policy_id, fr.policy_id, fr.started_at) == ("standard", "standard", z("2026-11-23T08:00Z"))
    assert fr.due_at == z("2026-11-23T16:00Z")  # 8 business hours from started_at
    assert events(sla, "policy_changed") == [
        ("first_response", 1, "enterprise->standard", z("2026-11-23T16:00Z"), z("2026-11-23T09:00Z"))]


def test_e11_ratchet_refuses_a_lowering_from_github(shipped: Policy) -> None:
    plain = Ticket("2026-11-23T08:00Z", "sev1")
    lowered = Ticket("2026-11-23T08:00Z", "sev1").at("2026-11-23T08:05Z").severity("sev3", "github")
    before, after = plain.sla(shipped, "2026-11-23T08:10Z"), lowered.sla(shipped, "2026-11-23T08:10Z")
    assert after.severity == "sev1"
    assert [(e.value, e.source) for e in after.severity_rejected] == [("sev3", "github")]

    def shape(sla: TicketSla) -> list[tuple[Any, ...]]:
        return [(c.metric, c.cycle, c.status, c.severity, c.target_seconds, c.due_at, c.consumed) for c in sla.clocks]

    assert shape(after) == shape(before)  # the clocks do not change
    assert after.events == before.events
    accepted = Ticket("2026-11-23T08:00Z", "sev1").at("2026-11-23T08:05Z").severity("sev3", "zendesk_agent")
    assert accepted.sla(shipped, "2026-11-23T08:10Z").severity == "sev3"


def test_breach_is_never_erased_by_a_downgrade(shipped: Policy) -> None:
    sla = Ticket("2026-11-23T08:00Z", "sev1").at("2026-11-23T08:30Z").severity("sev3") \
        .sla(shipped, "2026-11-23T09:00Z")
    fr = clock(sla, "first_response")
    assert (fr.severity, fr.breached, fr.breach_nominal_at) == ("sev3", True, z("2026-11-23T08:15Z"))
    assert fr.due_at == z("2026-11-25T16:00Z")  # running on the sev3 target, still breached


def test_derived_flags_and_their_clearing(shipped: Policy) -> None:
    t = Ticket("2026-11-23T08:00Z", None).field("subject", "Total outage")
    assert (t.sla(shipped, "2026-11-23T08:01Z").severity, t.sla(shipped, "2026-11-23T08:01Z").flags) == (
        "sev1", ("needs_triage",))
    confirmed = t.at("2026-11-23T08:02Z").severity("sev1").sla(shipped, "2026-11-23T08:03Z")
    assert (confirmed.severity, confirmed.flags) == ("sev1", ())
    flagged = Ticket("2026-11-23T08:00Z", None)  # the caller derived the level and passes its flags
    flagged.add("severity", value="sev3", source="derived", flags=("needs_triage",))
    assert flagged.sla(shipped, "2026-11-23T08:01Z").flags == ("needs_triage",)


def test_rca_after_mitigation_stopped_by_the_link(shipped: Policy) -> None:
    t = Ticket("2026-11-23T08:00Z", "sev1")
    assert clock(t.sla(shipped, "2026-11-23T09:00Z"), "rca").status == "pending_start"
    t.at("2026-11-23T10:00Z").field("incident_mitigated", True)
    assert clock(t.sla(shipped, "2026-11-23T11:00Z"), "rca").due_at == z("2026-11-24T10:00Z")
    rca = clock(t.at("2026-11-24T09:00Z").field("rca_url", "https://x/rca").sla(shipped, "2026-11-24T12:00Z"), "rca")
    assert (rca.status, rca.outcome) == ("stopped", "met")


@pytest.mark.parametrize(("reply_at", "outcome", "recorded"), [
    pytest.param("2026-11-23T08:15:00Z", "met", None, id="at-due"),
    pytest.param("2026-11-23T08:15:00.5Z", "breached", "2026-11-23T08:15:00Z", id="a-fraction-after-due"),
])
def test_alarm_seconds_against_update_fractions(shipped: Policy, reply_at: str, outcome: str,
                                                recorded: str | None) -> None:
    # Alarms fall on whole seconds: one at 08:15:00 is before an update at 08:15:00.5, not at 08:15:00.
    sla = Ticket("2026-11-23T08:00Z", "sev1").at(reply_at).reply().sla(shipped, "2026-11-23T09:00Z")
    fr = clock(sla, "first_response")
    assert (fr.status, fr.outcome) == ("stopped", outcome)
    assert fr.breach_recorded_at == (z(recorded) if recorded else None)


def test_updates_that_change_nothing_change_no_clock(shipped: Policy) -> None:
    plain = Ticket("2026-11-23T08:00Z", "sev1")
    # A customer's comment exactly at the 80% instant and an internal note exactly at the 50% one.
    noisy = Ticket("2026-11-23T08:00Z", "sev1").at("2026-11-23T08:12Z").reply(by_agent=False) \
        .at("2026-11-23T08:07:30Z").reply(public=False)
    expected = plain.sla(shipped, "2026-11-23T08:13Z")
    assert noisy.sla(shipped, "2026-11-23T08:13Z") == expected
    assert [(e.threshold, e.recorded_at) for e in expected.events] == [
        ("50%", z("2026-11-23T08:07:30Z")), ("80%", z("2026-11-23T08:12Z"))]


def test_a_clock_running_past_the_calendar_years_is_an_error(shipped: Policy) -> None:
    # The business first-response clock is breached and still running when an update comes after
    # 2028 (the last materialised year): measuring it there needs calendar data that is not there,
    # even though a later re-target moves the clock onto the 24/7 calendar.
    t = Ticket("2028-12-27T08:00Z", "sev2").at("2029-01-02T10:00Z").status("hold") \
        .at("2029-01-02T11:00Z").severity("sev1", "github")
    with pytest.raises(CalendarError, match="no data past 2028-12-31"):
        t.sla(shipped, "2029-01-03T00:00Z")


def test_naive_now_is_refused(shipped: Policy) -> None:
    with pytest.raises(ValueError, match="aware"):
        compute_clocks(shipped, "zendesk", Ticket("2026-11-23T08:00Z").events, datetime(2026, 11, 23))


# --- invariants (hypothesis) ----------------------------------------------------------------------

STARTS = st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 6, 30), timezones=st.just(UTC))
TARGETS = st.sampled_from([("sev1", "first_response"), ("sev1", "resolution"), ("sev1", "rca"),
                           ("sev2", "first_response"), ("sev3", "first_response"), ("sev3", "resolution"),
                           ("sev4", "first_response"), ("sev4", "resolution")])
PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@PROPERTY
@given(start=STARTS, target=TARGETS)
def test_due_is_never_before_start(shipped: Policy, start: datetime, target: tuple[str, str]) -> None:
    assert shipped.due(*target, start).due_at >= start


@PROPERTY
@given(start=STARTS, target=TARGETS, where=st.floats(0, 0.999), length=st.integers(1, 30 * 86400))
def test_a_pause_never_makes_due_earlier(shipped: Policy, start: datetime, target: tuple[str, str], where: float,
                                         length: int) -> None:
    plain = shipped.due(*target, start).due_at
    begin = start + timedelta(seconds=int((plain - start).total_seconds() * where))
    paused = shipped.due(*target, start, [(begin, begin + timedelta(seconds=length))]).due_at
    assert paused >= plain


BER_SPEC = {"timezone": "Europe/Berlin", "week": {"mon-fri": ["09:00-17:00"]}, "business_day": "8h"}


@settings(max_examples=40, deadline=None)
@given(start=STARTS, seconds=st.integers(1, 240 * 3600), closed=st.dates(date(2026, 1, 1), date(2027, 12, 31)))
def test_an_added_closure_never_makes_due_earlier(start: datetime, seconds: int, closed: date) -> None:
    open_ = build_calendar("ber", BER_SPEC, today=TODAY)
    shut = build_calendar("ber", {**BER_SPEC, "holidays": {"include_dates": [closed.isoformat()]}}, today=TODAY)
    assert shut.advance(start, seconds) >= open_.advance(start, seconds)


STEP = st.one_of(
    st.tuples(st.just("status"), st.sampled_from(["open", "pending", "hold", "solved"])),
    st.tuples(st.just("comment"), st.booleans()),
    st.tuples(st.just("tags"), st.sampled_from([(), ("enterprise",)])),
    st.tuples(st.just("field"), st.booleans()),
)


@PROPERTY
@given(severity=st.sampled_from(["sev1", "sev2", "sev3", "sev4"]),
       steps=st.lists(st.tuples(st.integers(60, 3 * 86400), STEP), max_size=8),
       probes=st.lists(st.integers(0, 20 * 86400), min_size=2, max_size=5))
def test_consumed_never_decreases_as_now_grows(shipped: Policy, severity: str,
                                               steps: list[tuple[int, tuple[str, Any]]], probes: list[int]) -> None:
    t = Ticket("2026-11-20T15:30Z", severity)
    for gap, (kind, value) in steps:
        t.now += timedelta(seconds=gap)
        if kind == "status":
            t.status(value)
        elif kind == "comment":
            t.reply(by_agent=value)
        elif kind == "tags":
            t.tags(*value)
        else:
            t.field("incident_active", value)
    seen: dict[tuple[str, int], int] = {}
    for offset in sorted(probes):
        now = z("2026-11-20T15:30Z") + timedelta(seconds=offset)
        for c in compute_clocks(shipped, "zendesk", t.events, now).clocks:
            key = (c.metric, c.cycle)
            assert c.consumed >= seen.get(key, 0), (key, now)
            seen[key] = c.consumed
            assert (c.due_at is not None) == (c.status == "running")  # due_at exactly while running


def test_a_reply_in_the_tickets_first_second_answers_it(shipped: Policy) -> None:
    # Trackers stamp whole seconds: the creation and a quick reply can share one timestamp.
    sla = Ticket("2026-11-23T08:00Z", severity="sev1").reply().sla(shipped, "2026-11-23T09:00Z")
    first = sla.clock("first_response")
    assert first is not None and (first.status, first.outcome) == ("stopped", "met")
    assert first.stopped_at == z("2026-11-23T08:00Z")


def test_explain_false_leaves_out_only_the_why_lines(shipped: Policy) -> None:
    ticket = Ticket("2026-11-23T08:00Z", severity="sev3").at("2026-11-23T09:00Z").status("pending")
    full = compute_clocks(shipped, "zendesk", ticket.events, z("2026-11-30T09:00Z"))
    bare = compute_clocks(shipped, "zendesk", ticket.events, z("2026-11-30T09:00Z"), explain=False)
    assert all(c.why for c in full.clocks) and not any(c.why for c in bare.clocks)
    assert [replace(c, why=()) for c in full.clocks] == list(bare.clocks)
    assert (full.events, full.next_fire_at) == (bare.events, bare.next_fire_at)
