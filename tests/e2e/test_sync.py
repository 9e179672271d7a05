"""Zendesk <-> Jira end to end on the emulators, through the real connectors and the store."""

from __future__ import annotations

import time
from pathlib import Path

from ticketbridge.connectors.http import RetryPolicy
from ticketbridge.sandbox import Sandbox

from .conftest import POLICY, Bridge, make_bridge, writes


def seed(sandbox: Sandbox, count: int) -> list[int]:
    priorities = ["urgent", "high", "normal", "low"]
    statuses = ["new", "open", "pending", "hold"]
    ids = []
    for n in range(count):
        ticket = sandbox.zendesk.add_ticket(
            subject=f"Customer problem {n}", comment={"body": f"It broke in way {n}."},
            priority=priorities[n % 4], status=statuses[n % 4],
            comments=[{"body": f"Public reply {n}", "public": True},
                      {"body": f"Internal note {n}: VIP", "public": False}] if n % 5 == 0 else None)
        ids.append(ticket["id"])
    return ids


def test_200_tickets_become_200_issues_and_a_second_pass_writes_nothing(bridge: Bridge) -> None:
    seed(bridge.sandbox, 200)
    first = bridge.sync()
    assert not first.failures, first.failures
    assert first.created["left_to_right"] == 200
    assert len(bridge.sandbox.jira.issues()) == 200
    assert bridge.store.count_links() == 200
    before = writes(bridge.sandbox)
    second = bridge.sync()
    assert second.writes == 0
    assert writes(bridge.sandbox) == before, "the second pass wrote to a tracker"


def test_one_field_edited_on_one_side_makes_exactly_one_write(bridge: Bridge) -> None:
    ids = seed(bridge.sandbox, 5)
    bridge.sync_until_quiet()
    bridge.sandbox.zendesk.update_ticket(ids[1], priority="urgent" if ids[1] % 4 != 1 else "low")
    before = writes(bridge.sandbox)
    stats = bridge.sync()
    assert writes(bridge.sandbox) - before == 1
    assert stats.fields_pushed == {"left_to_right": 1}
    link = bridge.store.link_for("zendesk-jira", "left", str(ids[1]))
    assert link is not None
    expected = {"urgent": "Highest", "low": "Low"}[bridge.sandbox.zendesk.ticket(ids[1])["priority"]]
    assert bridge.sandbox.jira.issue(link.right_id)["fields"]["priority"]["name"] == expected
    assert bridge.sync().writes == 0


def test_jira_transition_reaches_the_zendesk_status_through_the_mapping(bridge: Bridge) -> None:
    ids = seed(bridge.sandbox, 3)
    bridge.sync_until_quiet()
    link = bridge.store.link_for("zendesk-jira", "left", str(ids[0]))
    assert link is not None
    bridge.sandbox.jira.transition(link.right_key, "Done")
    bridge.sync_until_quiet()
    assert bridge.sandbox.zendesk.ticket(ids[0])["status"] == "solved"
    assert bridge.sandbox.jira.issue(link.right_id)["fields"]["status"]["name"] == "Done"


def test_internal_notes_are_never_public_and_comments_mirror_once(bridge: Bridge) -> None:
    ids = seed(bridge.sandbox, 5)
    bridge.sync_until_quiet()
    zendesk, jira = bridge.sandbox.zendesk, bridge.sandbox.jira
    zendesk.add_comment(ids[2], "Internal: customer card ends 4242", public=False)
    zendesk.add_comment(ids[2], "We are looking into it.", public=True)
    link = bridge.store.link_for("zendesk-jira", "left", str(ids[2]))
    assert link is not None
    jira.add_comment(link.right_key, "Root cause found in the payment adapter.", author="Dev One")
    bridge.sync_until_quiet()
    bridge.sync_until_quiet()

    jira_bodies = [str(c["body"]) for i in jira.issues() for c in i["fields"]["comment"]["comments"]]
    public_desk = [c["body"] for t in zendesk.tickets() for c in zendesk.comments(t["id"]) if c["public"]]
    internal_desk = [c["body"] for t in zendesk.tickets() for c in zendesk.comments(t["id"]) if not c["public"]]
    assert not any("card ends 4242" in body for body in jira_bodies + public_desk)
    assert not any("Internal note 0" in body for body in jira_bodies + public_desk)
    assert sum("We are looking into it." in body for body in jira_bodies) == 1
    # The engineering comment came back once, as an internal note, never as a public reply.
    assert sum("Root cause found" in body for body in internal_desk) == 1
    assert not any("Root cause found" in body for body in public_desk)
    assert sum("Root cause found" in body for body in jira_bodies) == 1, "mirrored back to Jira"


def test_field_edited_on_both_sides_is_a_reported_conflict(bridge: Bridge) -> None:
    ids = seed(bridge.sandbox, 2)
    bridge.sync_until_quiet()
    link = bridge.store.link_for("zendesk-jira", "left", str(ids[0]))
    assert link is not None
    bridge.sandbox.jira.edit(link.right_key, summary="Engineering title")
    time.sleep(1.1)  # Zendesk timestamps are second-granular
    bridge.sandbox.zendesk.update_ticket(ids[0], subject="Desk title")
    stats = bridge.sync_until_quiet()
    assert len(stats.conflicts) == 1 and "newest" in stats.conflicts[0]
    assert bridge.sandbox.zendesk.ticket(ids[0])["subject"] == "Desk title"
    assert bridge.sandbox.jira.issue(link.right_id)["fields"]["summary"].endswith("Desk title")
    assert [e.kind for e in bridge.store.audit(kinds=["conflict"])] == ["conflict"]


def test_one_bad_ticket_goes_to_failures_while_the_rest_flow(bridge: Bridge) -> None:
    ids = seed(bridge.sandbox, 4)
    bridge.sync_until_quiet()
    link = bridge.store.link_for("zendesk-jira", "left", str(ids[1]))
    assert link is not None
    # Zendesk takes a subject of any length; Jira refuses a summary over 255 characters (400).
    summary = bridge.sandbox.jira.issue(link.right_id)["fields"]["summary"]
    bridge.sandbox.zendesk.update_ticket(ids[1], subject="Everything is broken " * 15)
    bridge.sandbox.zendesk.update_ticket(ids[2], priority="low")
    stats = bridge.sync()
    failures = bridge.store.failures()
    assert [f.item_id for f in failures] == [str(ids[1])]
    assert "Summary must be less than 255 characters" in failures[0].message
    assert bridge.sandbox.jira.issue(link.right_id)["fields"]["summary"] == summary
    other = bridge.store.link_for("zendesk-jira", "left", str(ids[2]))
    assert other is not None
    assert bridge.sandbox.jira.issue(other.right_id)["fields"]["priority"]["name"] == "Low"
    assert stats.failures


def test_a_429_storm_slows_the_sync_but_loses_nothing(tmp_path: Path) -> None:
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(seconds)

    with Sandbox(port=0, rate_limit_per_minute=40) as sandbox:
        for emulator in sandbox.emulators.values():
            emulator.budget.window = 1.0  # a 1-second "minute": a storm in a test-sized time
        seed(sandbox, 30)
        bridge = make_bridge(tmp_path, sandbox, RetryPolicy(attempts=20, sleep=sleep))
        bridge.sync_until_quiet()
        assert len(sandbox.jira.issues()) == 30
        assert bridge.store.count_links() == 30
        rejected = sum(1 for e in sandbox.emulators.values() for _, _, status in e.request_log if status == 429)
        # The budget ran out: the clients waited, mostly before sending (their rate-limit gates read the
        # remaining-budget headers), otherwise after a 429.
        assert waits and bridge.retry.rate_limit_waits >= rejected
        # Every wait after a 429 honoured Retry-After, which the emulators send as whole seconds >= 1.
        assert all(wait >= 1.0 for wait in bridge.retry.waits)
        bridge.store.close()


def test_personal_data_never_reaches_jira_and_the_next_pass_writes_nothing(bridge: Bridge) -> None:
    ticket = bridge.sandbox.zendesk.add_ticket(
        subject="Refund for card 4111 1111 1111 1111",
        comment={"body": "Call me on +49 30 1234567 or write to erika.kunde@example.com."}, priority="high",
        comments=[{"body": "Our server 192.168.10.24 logs it; IBAN DE89 3704 0044 0532 0130 00.", "public": True}])
    bridge.sync_until_quiet()
    link = bridge.store.link_for("zendesk-jira", "left", str(ticket["id"]))
    assert link is not None
    fields = bridge.sandbox.jira.issue(link.right_id)["fields"]
    text = " ".join([fields["summary"], str(fields["description"]),
                     *(str(c["body"]) for c in fields["comment"]["comments"])])
    for secret in ("4111", "1234567", "erika.kunde", "192.168.10.24", "DE89"):
        assert secret not in text
    for kind in ("payment_card", "phone", "email", "ipv4", "iban"):
        assert f"[REDACTED:{kind}]" in text
    # The desk keeps the original, and the redacted copy is not mistaken for a change.
    assert "4111 1111 1111 1111" in bridge.sandbox.zendesk.ticket(ticket["id"])["subject"]
    before = writes(bridge.sandbox)
    assert bridge.sync().writes == 0 and writes(bridge.sandbox) == before


def test_a_ticket_tagged_no_jira_stops_syncing_both_ways_and_resumes_without_echo(bridge: Bridge) -> None:
    zendesk, jira = bridge.sandbox.zendesk, bridge.sandbox.jira
    ids = seed(bridge.sandbox, 2)
    bridge.sync_until_quiet()
    link = bridge.store.link_for("zendesk-jira", "left", str(ids[0]))
    assert link is not None
    tags = list(zendesk.ticket(ids[0])["tags"])
    zendesk.update_ticket(ids[0], tags=[*tags, "no_jira"])
    bridge.sync_until_quiet()
    issue_before = jira.issue(link.right_id)["fields"]
    status_before = zendesk.ticket(ids[0])["status"]
    # Out of the selection: the ticket's changes stay in Zendesk, the issue's stay in Jira.
    zendesk.update_ticket(ids[0], priority="low")
    zendesk.add_comment(ids[0], "The customer sees it every morning.", public=True)
    jira.transition(link.right_key, "Done")
    jira.add_comment(link.right_key, "Root cause in the cache layer.", author="Dev One")
    zendesk.update_ticket(ids[1], priority="urgent")  # other pairs keep flowing
    before = writes(bridge.sandbox)
    stats = bridge.sync()
    assert not stats.failures and not bridge.store.failures()
    assert writes(bridge.sandbox) - before == 1 and stats.fields_pushed == {"left_to_right": 1}
    assert jira.issue(link.right_id)["fields"]["priority"] == issue_before["priority"]
    assert len(jira.issue(link.right_id)["fields"]["comment"]["comments"]) == \
        len(issue_before["comment"]["comments"]) + 1
    assert zendesk.ticket(ids[0])["status"] == status_before
    assert bridge.store.link_for("zendesk-jira", "left", str(ids[0])) is not None  # paused, not unlinked
    # Back in: what changed on either side meanwhile syncs, once, and then nothing echoes.
    zendesk.update_ticket(ids[0], tags=tags)
    bridge.sync_until_quiet()
    issue = jira.issue(link.right_id)["fields"]
    assert issue["priority"]["name"] == "Low"
    assert zendesk.ticket(ids[0])["status"] == "solved"
    jira_bodies = [str(c["body"]) for c in issue["comment"]["comments"]]
    assert sum("every morning" in body for body in jira_bodies) == 1
    assert sum("cache layer" in c["body"] for c in zendesk.comments(ids[0])) == 1
    before = writes(bridge.sandbox)
    assert bridge.sync().writes == 0
    assert writes(bridge.sandbox) == before


def test_a_paused_pair_still_stops_the_sla_clocks_of_its_ticket(tmp_path: Path, sandbox: Sandbox) -> None:
    bridge = make_bridge(tmp_path, sandbox, policy=POLICY)
    ticket = sandbox.zendesk.add_ticket(subject="Export broken", priority="normal", status="open",
                                        comment={"body": "The export fails."})
    bridge.sync_until_quiet()
    time.sleep(1.1)  # Zendesk stamps whole seconds: close it clearly after its creation
    sandbox.zendesk.update_ticket(ticket["id"], status="closed")  # straight from open: never solved
    bridge.sync_until_quiet()
    observed = bridge.store.sla_ticket("zendesk", str(ticket["id"]))
    assert observed is not None and observed.summary is not None
    resolution = [c for c in observed.summary["clocks"] if c["metric"] == "resolution"]
    assert resolution and resolution[-1]["status"] == "stopped" and resolution[-1]["outcome"] == "met"
    bridge.store.close()


def test_a_closed_ticket_pauses_its_pair_instead_of_failing(bridge: Bridge) -> None:
    ids = seed(bridge.sandbox, 2)
    bridge.sync_until_quiet()
    link = bridge.store.link_for("zendesk-jira", "left", str(ids[1]))
    assert link is not None
    # Zendesk refuses every update of a closed ticket; the selection (statuses) leaves it out.
    bridge.sandbox.zendesk.update_ticket(ids[1], status="closed")
    bridge.sandbox.jira.transition(link.right_key, "To Do")
    stats = bridge.sync()
    assert not stats.failures and not bridge.store.failures()
    assert bridge.sandbox.zendesk.ticket(ids[1])["status"] == "closed"
    assert bridge.sandbox.jira.issue(link.right_id)["fields"]["status"]["name"] == "To Do"
