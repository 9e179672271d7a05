"""SLA clocks end to end: due dates in both trackers, warnings and breaches once, the timer."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ticketbridge.cli import main
from ticketbridge.sandbox import Sandbox

from .conftest import POLICY, Bridge, make_bridge, writes

# Field ids named in mappings/policy.yaml `sla_fields`.
ZD_FIRST_DUE, ZD_RESOLUTION_DUE, ZD_STATE, ZD_SEVERITY = 360100, 360101, 360102, 360103
JIRA_FIRST_DUE, JIRA_STATE = "customfield_10044", "customfield_10046"


class FastClock:
    """The SLA service's clock, wound forward by the test (the trackers keep real time)."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


@pytest.fixture
def clock() -> FastClock:
    return FastClock()


@pytest.fixture
def sla_bridge(tmp_path: Path, sandbox: Sandbox, clock: FastClock) -> Iterator[Bridge]:
    made = make_bridge(tmp_path, sandbox, policy=POLICY, now=clock)
    yield made
    made.store.close()


def zd_field(bridge: Bridge, ticket_id: int, field_id: int) -> object:
    ticket = bridge.sandbox.zendesk.ticket(ticket_id)
    return next(f["value"] for f in ticket["custom_fields"] if f["id"] == field_id)


def jira_fields(bridge: Bridge, ticket_id: int) -> dict[str, object]:
    link = bridge.store.link_for("zendesk-jira", "left", str(ticket_id))
    assert link is not None
    return dict(bridge.sandbox.jira.issue(link.right_id)["fields"])


def instant(text: object) -> datetime:
    return datetime.fromisoformat(str(text).replace("Z", "+00:00")).astimezone(UTC)


def outage(bridge: Bridge) -> tuple[int, datetime]:
    customer = bridge.sandbox.zendesk.add_user("Erika Kunde", "erika@example.com")
    ticket = bridge.sandbox.zendesk.add_ticket(subject="Checkout down for all EU customers",
                                               comment={"body": "Nobody can pay.", "author_id": customer["id"]},
                                               requester_id=customer["id"], priority="urgent")
    return int(ticket["id"]), instant(ticket["created_at"])


def test_due_dates_appear_on_both_sides_and_the_next_pass_writes_nothing(sla_bridge: Bridge) -> None:
    ticket_id, created = outage(sla_bridge)
    stats = sla_bridge.sync()
    assert stats.sla.fields_written > 0
    due = created + timedelta(minutes=15)  # sev1 first response: 15 min of calendar time
    assert instant(zd_field(sla_bridge, ticket_id, ZD_FIRST_DUE)) == due
    assert instant(zd_field(sla_bridge, ticket_id, ZD_RESOLUTION_DUE)) == created + timedelta(hours=2)
    assert zd_field(sla_bridge, ticket_id, ZD_SEVERITY) == "sev1"
    assert zd_field(sla_bridge, ticket_id, ZD_STATE) == "running"
    issue = jira_fields(sla_bridge, ticket_id)
    assert instant(issue[JIRA_FIRST_DUE]) == due and issue[JIRA_STATE] == "running"

    before = writes(sla_bridge.sandbox)
    again = sla_bridge.sync()
    assert again.sla.fields_written == 0 and again.writes == 0
    assert writes(sla_bridge.sandbox) == before, "an unchanged SLA is never rewritten"


def test_only_a_human_agents_public_reply_fulfils_first_response(sla_bridge: Bridge) -> None:
    ticket_id, _ = outage(sla_bridge)
    sla_bridge.sync_until_quiet()
    customer = sla_bridge.sandbox.zendesk.ticket(ticket_id)["requester_id"]
    zendesk = sla_bridge.sandbox.zendesk
    zendesk.add_comment(ticket_id, "Any news? We are losing orders.", public=True, author_id=customer)
    zendesk.add_comment(ticket_id, "Internal: paging payments on-call", public=False)
    link = sla_bridge.store.link_for("zendesk-jira", "left", str(ticket_id))
    assert link is not None
    sla_bridge.sandbox.jira.add_comment(link.right_key, "Looking at the gateway logs.", author="Dev One")
    sla_bridge.sync_until_quiet()  # the Jira comment arrives on Zendesk as a note written by the bridge
    assert zd_field(sla_bridge, ticket_id, ZD_FIRST_DUE), "customer, internal and bridge comments do not count"

    zendesk.add_comment(ticket_id, "We are on it; next update in 15 minutes.", public=True)
    sla_bridge.sync_until_quiet()
    assert zd_field(sla_bridge, ticket_id, ZD_FIRST_DUE) is None
    assert jira_fields(sla_bridge, ticket_id)[JIRA_FIRST_DUE] is None
    assert zd_field(sla_bridge, ticket_id, ZD_RESOLUTION_DUE), "resolution keeps running"


def test_warnings_and_the_breach_fire_once_and_survive_a_restart(
        tmp_path: Path, sandbox: Sandbox, sla_bridge: Bridge, clock: FastClock) -> None:
    ticket_id, created = outage(sla_bridge)
    sla_bridge.sync()
    wait = sla_bridge.engine.seconds_to_next_timer()
    assert wait is not None
    # The engine sleeps until the first warning (50% of 15 min), not a fixed tick.
    assert abs((datetime.now(UTC) + timedelta(seconds=wait)) - (created + timedelta(minutes=7, seconds=30))) \
        < timedelta(seconds=5)

    clock.offset = created + timedelta(minutes=12, seconds=30) - datetime.now(UTC)
    warned = sla_bridge.sync()
    assert [w.split()[1:4] for w in warned.sla.warnings] == [["first_response", "warning", "50%"],
                                                           ["first_response", "warning", "80%"]]
    assert not warned.sla.breaches
    assert zd_field(sla_bridge, ticket_id, ZD_STATE) == "warning"
    assert "sla_warning" in sandbox.zendesk.ticket(ticket_id)["tags"]

    clock.offset = created + timedelta(minutes=16) - datetime.now(UTC)
    breached = sla_bridge.sync()
    assert [b.split()[1:3] for b in breached.sla.breaches] == [["first_response", "breach"]]
    tags = sandbox.zendesk.ticket(ticket_id)["tags"]
    assert "sla_breached" in tags and "sla_warning" not in tags
    assert jira_fields(sla_bridge, ticket_id)[JIRA_STATE] == "breached"

    # A new process on the same store emits nothing again.
    restarted = make_bridge(tmp_path, sandbox, policy=POLICY, now=clock)
    later = restarted.sync()
    assert not later.sla.warnings and not later.sla.breaches
    kinds = [(e.metric, e.kind) for e in restarted.store.sla_events("zendesk", str(ticket_id))]
    assert kinds.count(("first_response", "breach")) == 1 and kinds.count(("first_response", "warning")) == 2
    breach = next(e for e in restarted.store.sla_events("zendesk", str(ticket_id)) if e.kind == "breach")
    assert breach.nominal_at == created + timedelta(minutes=15) and breach.recorded_at >= breach.nominal_at
    restarted.store.close()


def test_pending_pauses_resolution_and_clears_its_due_date(sla_bridge: Bridge) -> None:
    ticket_id, _ = outage(sla_bridge)
    sla_bridge.sync_until_quiet()
    sla_bridge.sandbox.zendesk.update_ticket(ticket_id, status="pending",
                                             comment={"body": "Can you send a HAR file?", "public": True})
    sla_bridge.sync_until_quiet()
    assert zd_field(sla_bridge, ticket_id, ZD_RESOLUTION_DUE) is None
    assert zd_field(sla_bridge, ticket_id, ZD_STATE) == "paused"
    assert "sla_paused" in sla_bridge.sandbox.zendesk.ticket(ticket_id)["tags"]


def test_sla_explain_and_report_read_the_store(sla_bridge: Bridge, capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    ticket_id, _ = outage(sla_bridge)
    sla_bridge.sync_until_quiet()
    sla_bridge.sandbox.zendesk.add_comment(ticket_id, "Mitigation deployed.", public=True)
    sla_bridge.sync_until_quiet()
    for key, value in sla_bridge.env.items():
        monkeypatch.setenv(key, value)
    config = str(sla_bridge.config_path)
    assert main(["sla", "explain", f"zendesk:{ticket_id}", "--config", config]) == 0
    out = capsys.readouterr().out
    assert "severity sev1" in out and "first_response (cycle 1): stopped" in out and "outcome met" in out
    assert "resolution (cycle 1): running" in out and "due" in out

    assert main(["sla", "report", "--config", config, "--format", "json"]) == 0
    rows = {(r["severity"], r["metric"]): r for r in json.loads(capsys.readouterr().out)}
    first = rows[("sev1", "first_response")]
    assert first["count"] == 1 and first["met_pct"] == 100.0 and first["breached"] == 0
    assert rows[("sev1", "resolution")]["running"] == 1

    assert main(["sla", "explain", "zendesk:999999", "--config", config]) == 2
    assert "no SLA history" in capsys.readouterr().err


def test_a_policy_change_recomputes_running_clocks_at_restart(tmp_path: Path, sandbox: Sandbox,
                                                              sla_bridge: Bridge) -> None:
    ticket_id, created = outage(sla_bridge)
    sla_bridge.sync_until_quiet()
    assert instant(zd_field(sla_bridge, ticket_id, ZD_FIRST_DUE)) == created + timedelta(minutes=15)
    edited = tmp_path / "policy.yaml"
    edited.write_text(POLICY.read_text().replace("sev1: {calendar: 15m}", "sev1: {calendar: 30m}"))
    restarted = make_bridge(tmp_path, sandbox, policy=edited)
    restarted.sync()  # nothing changed on the ticket; the new policy version alone recomputes it
    assert instant(zd_field(restarted, ticket_id, ZD_FIRST_DUE)) == created + timedelta(minutes=30)
    assert instant(jira_fields(restarted, ticket_id)[JIRA_FIRST_DUE]) == created + timedelta(minutes=30)
    restarted.store.close()
