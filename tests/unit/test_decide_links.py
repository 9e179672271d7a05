"""Pure decisions of many-to-many links: followers, status notes, escalation extras, hashed fields."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ticketbridge.sync.decide import STATUS_NOTES, decide_create, decide_follower, decide_pair, status_note_text
from ticketbridge.sync.mapping import FlowMapping, load_mapping
from ticketbridge.sync.model import AddComment, Comment, Create, Item, Update, split_comment_marker
from ticketbridge.sync.policy.redact import RedactionRules, hash_value
from ticketbridge.sync.scrubbing import Scrubber

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
NO_TRANSITIONS = {"left": None, "right": None}


@pytest.fixture(scope="module")
def mapping() -> FlowMapping:
    return load_mapping(ROOT / "mappings" / "zendesk-github.yaml")


@pytest.fixture(scope="module")
def both_ways(tmp_path_factory: pytest.TempPathFactory) -> FlowMapping:
    """zendesk-github with a title syncing both ways and a hashed customer-id field."""
    text = (ROOT / "mappings" / "zendesk-github.yaml").read_text()
    text = text.replace("    direction: left_to_right     # engineers retitle", "    direction: both  # retitle", 1)
    text = text.replace("fields:\n  - name: title", "fields:\n  - name: customer\n    left: custom_fields.360010\n"
                                                    "    right: milestone\n    direction: left_to_right\n"
                                                    "  - name: title", 1)
    path = Path(tmp_path_factory.mktemp("m")) / "zendesk-github.yaml"
    path.write_text(text)
    return load_mapping(path)


def ticket(id: str = "7", comments: tuple[Comment, ...] = (), **fields: Any) -> Item:
    base = {"subject": "Export fails", "description": "It fails.", "status": "open"}
    base.update(fields)
    return Item("zendesk", id, f"#{id}", f"http://zd/agent/tickets/{id}", base, T0, "v1", comments=comments)


def gh_issue(comments: tuple[Comment, ...] = (), **fields: Any) -> Item:
    base = {"title": "Export fails", "body": "It fails.\n\n---\nZendesk #7", "state": "open", "state_reason": None}
    base.update(fields)
    return Item("github", "acme/app#12", "acme/app#12", "https://gh/acme/app/issues/12", base, T0, "v1",
                comments=comments)


def follower_snapshot(mapping: FlowMapping, left: Item, right: Item) -> dict[str, Any]:
    first = decide_follower(mapping, left, right, None, set())
    assert first.snapshot is not None
    return dict(first.snapshot)


def test_follower_takes_the_issue_status_and_never_writes_to_the_issue(mapping: FlowMapping) -> None:
    b = ticket("8", subject="Button does nothing", status="new")
    first = decide_follower(mapping, b, gh_issue(), None, set())
    assert first.ops == {"left": (Update({"status": "open"}),), "right": ()}
    snapshot = follower_snapshot(mapping, replace(b, fields={**b.fields, "status": "open"}), gh_issue())
    # B changes its subject and status: nothing travels anywhere.
    changed = ticket("8", subject="Button does nothing!!", status="pending")
    quiet = decide_follower(mapping, changed, gh_issue(), snapshot, set())
    assert quiet.writes == 0
    # The issue closes: B follows, with one status note.
    closed = gh_issue(state="closed", state_reason="completed")
    decision = decide_follower(mapping, changed, closed, snapshot, set())
    update, note = decision.ops["left"]
    assert update == Update({"status": "solved"})
    assert isinstance(note, AddComment) and not note.public
    text, ref = split_comment_marker(note.body)
    assert text == "GitHub issue acme/app#12 is now closed (completed)"
    assert ref == note.source_id == "github:acme/app#12/status/1"
    assert decision.ops["right"] == ()
    assert decision.snapshot is not None and decision.snapshot[STATUS_NOTES] == 1


def test_follower_gets_issue_comments_but_not_mirrors_of_other_tickets(mapping: FlowMapping) -> None:
    comments = (Comment("501", "Fixed in 2.4.1", True, "dev-one", T0),
                Comment("502", "Zendesk #7 · reply by 1001\n\nSame here", True, "bot", T0, mirrored_from="zendesk:91"))
    decision = decide_follower(mapping, ticket("8"), gh_issue(comments=comments), None, set())
    [comment] = [op for op in decision.ops["left"] if isinstance(op, AddComment)]
    assert comment.source_id == "github:501" and not comment.public
    again = decide_follower(mapping, ticket("8"), gh_issue(comments=comments), decision.snapshot, {"github:501"})
    assert again.writes == 0


def test_follower_with_a_both_way_title_takes_the_issue_title_only_when_it_changes(both_ways: FlowMapping) -> None:
    b = ticket("8", subject="Button does nothing")
    snapshot = follower_snapshot(both_ways, b, gh_issue())
    # Without history the issue's title leads, like every right_to_left value ...
    assert decide_follower(both_ways, b, gh_issue(), None, set()).ops["left"][0] == Update(
        {"subject": "Export fails"})
    # ... afterwards only a change of the issue's title travels.
    assert decide_follower(both_ways, b, gh_issue(), snapshot, set()).writes == 0
    retitled = decide_follower(both_ways, b, gh_issue(title="CSV export fails"), snapshot, set())
    assert retitled.ops["left"] == (Update({"subject": "CSV export fails"}),)


def test_status_note_is_posted_once_across_a_crash_and_counts_changes(mapping: FlowMapping) -> None:
    a = ticket()
    first = decide_pair(mapping, a, gh_issue(), None, set(), NO_TRANSITIONS)
    assert first.snapshot is not None and STATUS_NOTES not in first.snapshot
    closed = gh_issue(state="closed", state_reason="completed")
    decision = decide_pair(mapping, a, closed, first.snapshot, set(), NO_TRANSITIONS)
    note = decision.ops["left"][-1]
    assert isinstance(note, AddComment) and note.source_id == "github:acme/app#12/status/1"
    # Crash after posting, before committing: the snapshot is the old one, the note is on the ticket.
    posted = Comment("9001", "GitHub issue acme/app#12 is now closed (completed)", False, "bridge", T0,
                     mirrored_from=note.source_id)
    replay = decide_pair(mapping, replace(a, comments=(posted,)), closed, first.snapshot, set(), NO_TRANSITIONS)
    assert not [op for op in replay.ops["left"] if isinstance(op, AddComment)]
    assert ("github:acme/app#12/status/1", "zendesk:9001") in replay.adopted_comments
    # Reopened later: a new note with a new ref.
    solved = replace(a, fields={**a.fields, "status": "solved"})
    reopened = decide_pair(mapping, solved, gh_issue(state_reason="reopened"), decision.snapshot, set(),
                           NO_TRANSITIONS)
    notes = [op for op in reopened.ops["left"] if isinstance(op, AddComment)]
    assert [n.source_id for n in notes] == ["github:acme/app#12/status/2"]
    assert split_comment_marker(notes[0].body)[0] == "GitHub issue acme/app#12 is now open (reopened)"


def test_a_status_note_whose_write_failed_after_the_status_landed_comes_on_the_next_pass(
        mapping: FlowMapping) -> None:
    first = decide_pair(mapping, ticket(), gh_issue(), None, set(), NO_TRANSITIONS)
    closed = gh_issue(state="closed", state_reason="completed")
    # The status reached the ticket, the note's write failed, nothing was committed: both sides moved
    # from the snapshot to agreeing values.
    again = decide_pair(mapping, ticket(status="solved"), closed, first.snapshot, set(), NO_TRANSITIONS)
    notes = [op for op in again.ops["left"] if isinstance(op, AddComment)]
    assert [n.source_id for n in notes] == ["github:acme/app#12/status/1"]
    assert not again.ops["right"] and not again.conflicts


def test_no_status_note_without_the_option_or_for_a_desk_status_change(
        mapping: FlowMapping, tmp_path: Path) -> None:
    off = load_mapping(_write(tmp_path, (ROOT / "mappings" / "zendesk-github.yaml").read_text()
                              .replace("status_note: true", "status_note: false")))
    first = decide_pair(off, ticket(), gh_issue(), None, set(), NO_TRANSITIONS)
    closed = decide_pair(off, ticket(), gh_issue(state="closed"), first.snapshot, set(), NO_TRANSITIONS)
    assert closed.ops["left"] == (Update({"status": "solved"}),)
    # The desk solving the ticket closes the issue; that is no news for the ticket.
    first = decide_pair(mapping, ticket(), gh_issue(), None, set(), NO_TRANSITIONS)
    desk = decide_pair(mapping, ticket(status="solved"), gh_issue(), first.snapshot, set(), NO_TRANSITIONS)
    assert desk.ops == {"left": (), "right": (Update({"state": "closed"}),)}


def test_status_note_text_names_tracker_key_value_and_reason(mapping: FlowMapping) -> None:
    assert status_note_text(mapping, gh_issue(state="closed", state_reason="not_planned")) == (
        "GitHub issue acme/app#12 is now closed (not planned)")
    assert status_note_text(mapping, gh_issue()) == "GitHub issue acme/app#12 is now open"


def test_escalation_extras_join_lists_and_go_inside_the_description_template(mapping: FlowMapping) -> None:
    decision = decide_create(mapping, ticket(description="Export fails for jane@example.com"), "left", None,
                             Scrubber(RedactionRules()).for_item(ticket()),
                             extra_fields={"labels": ["severity:sev2", "from-support"]},
                             appendix="Environment: prod, contact ops@example.com")
    [create] = decision.ops["right"]
    assert isinstance(create, Create)
    assert create.fields["labels"] == ["from-support", "severity:sev2"]
    assert create.fields["body"] == ("Export fails for [REDACTED:email]\n\nEnvironment: prod, contact [REDACTED:email]"
                                     "\n\n---\nZendesk #7")
    # The snapshot keeps the ticket's own description, so the next sync sees no change.
    assert decision.snapshot is not None
    assert decision.snapshot["description"][0] == "Export fails for jane@example.com"
    synced = decide_pair(mapping, ticket(description="Export fails for jane@example.com"),
                         gh_issue(body=create.fields["body"]), decision.snapshot, set(), NO_TRANSITIONS)
    assert synced.writes == 0


def test_hashed_customer_id_fields_cross_as_a_keyed_hash(both_ways: FlowMapping) -> None:
    scrubber = Scrubber(RedactionRules(hashed_fields=("custom_fields.360010",)), key=b"k1")
    source = ticket(**{"custom_fields.360010": "CUST-4711"})
    decision = decide_create(both_ways, source, "left", None, scrubber.for_item(source))
    [create] = decision.ops["right"]
    assert isinstance(create, Create)
    assert create.fields["milestone"] == hash_value("CUST-4711", b"k1")
    assert "CUST-4711" not in str(create.fields)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "zendesk-github.yaml"
    path.write_text(text)
    return path
