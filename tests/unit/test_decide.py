"""The pure decision core: snapshots, conflicts, value tables, templates, comment rules."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ticketbridge.sync.decide import decide_create, decide_pair
from ticketbridge.sync.mapping import FlowMapping, load_mapping
from ticketbridge.sync.model import (
    AddComment,
    Comment,
    Create,
    Decision,
    Item,
    Transition,
    Update,
    with_comment_marker,
)

MAPPING = """\
version: 1
name: zendesk-jira
left: zendesk
right: jira
select:
  left: {statuses: [new, open, pending, hold, solved]}
  right: {jql: "project = ENG"}
create:
  left_to_right: true
  right: {project: ENG, issuetype: Bug}
fields:
  - name: title
    left: subject
    right: summary
    direction: both
    conflict: newest
    template: {right: "[ZD {key}] {value}"}
  - left: priority
    right: priority
    direction: both
    values: priority
    conflict: {owner: left}
  - left: status
    right: status
    direction: both
    values: status
    conflict: {owner: right}
  - left: custom_fields.360001
    right: customfield_10042
    direction: left_to_right
values:
  priority:
    left_to_right: {urgent: Highest, high: High, normal: Medium, low: Low}
    right_to_left: {Highest: urgent, High: high, Medium: normal, Low: low}
    default: {right_to_left: normal}
  status:
    left_to_right: {new: To Do, open: In Progress, pending: In Progress, hold: In Progress, solved: Done,
                    closed: Done}
    right_to_left: {To Do: open, In Progress: open, In Review: open, Done: solved}
comments:
  left_to_right: {public: true, internal: false}
  right_to_left: {enabled: true, as: internal}
"""
T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
TRANSITIONS = {"left": None, "right": "status"}


@pytest.fixture(scope="module")
def mapping(tmp_path_factory: pytest.TempPathFactory) -> FlowMapping:
    path = Path(tmp_path_factory.mktemp("m")) / "zendesk-jira.yaml"
    path.write_text(MAPPING)
    return load_mapping(path)


def ticket(**fields: Any) -> Item:
    base = {"subject": "Checkout fails", "priority": "high", "status": "open", "custom_fields.360001": "billing"}
    base.update(fields)
    return Item("zendesk", "7", "#7", "http://zd/agent/tickets/7", base, T0, "v1", comments=())


def issue(**fields: Any) -> Item:
    base = {"summary": "[ZD #7] Checkout fails", "priority": "High", "status": "In Progress",
            "customfield_10042": "billing"}
    base.update(fields)
    return Item("jira", "10001", "ENG-1", "http://jira/browse/ENG-1", base, T0, "v1", comments=())


def agreed_snapshot(mapping: FlowMapping) -> dict[str, Any]:
    """The snapshot after a clean first sync of ticket() and issue()."""
    decision = decide_pair(mapping, ticket(), issue(), None, set(), TRANSITIONS)
    assert decision.writes == 0
    assert decision.snapshot is not None
    return dict(decision.snapshot)


def test_create_maps_values_applies_templates_and_moves_status_by_transition(mapping: FlowMapping) -> None:
    source = replace(ticket(status="solved"), comments=(
        Comment("91", "Public reply", True, "agent", T0),
        Comment("92", "Internal: VIP customer", False, "agent", T0),
    ))
    decision = decide_create(mapping, source, "left", "status")
    ops = decision.ops["right"]
    create = ops[0]
    assert isinstance(create, Create)
    assert create.marker == "zendesk:7"
    assert create.fields["summary"] == "[ZD #7] Checkout fails"
    assert create.fields["priority"] == "High"
    assert create.fields["project"] == "ENG" and "status" not in create.fields
    assert ops[1] == Transition("Done")
    comments = [op for op in ops if isinstance(op, AddComment)]
    assert [c.source_id for c in comments] == ["zendesk:91"], "internal notes stay on the desk by default"
    assert decision.ops["left"] == ()


def test_unchanged_pair_makes_no_writes(mapping: FlowMapping) -> None:
    snapshot = agreed_snapshot(mapping)
    decision = decide_pair(mapping, ticket(), issue(), snapshot, set(), TRANSITIONS)
    assert decision.writes == 0 and not decision.conflicts


def test_adopted_link_never_clears_a_value_with_an_empty_one(mapping: FlowMapping) -> None:
    # No snapshot: the creating side (Zendesk) leads, except where it holds nothing.
    decision = decide_pair(mapping, ticket(priority=None, subject="New title"), issue(priority="Medium"),
                           None, set(), TRANSITIONS)
    assert decision.ops == {"left": (Update({"priority": "normal"}),),
                            "right": (Update({"summary": "[ZD #7] New title"}),)}


def test_a_value_table_field_emptied_on_one_side_is_not_carried_and_stays_quiet(mapping: FlowMapping) -> None:
    # An agent removes the ticket's priority: Jira cannot hold "no priority" (it answers 400, and
    # the item would wait in failures for ever). The issue keeps its priority; nothing is written.
    snapshot = agreed_snapshot(mapping)
    emptied = decide_pair(mapping, ticket(priority=None), issue(), snapshot, set(), TRANSITIONS)
    assert emptied.writes == 0 and not emptied.conflicts and emptied.halt is None
    assert emptied.snapshot is not None and emptied.snapshot["priority"] == [None, "High"]
    again = decide_pair(mapping, ticket(priority=None), issue(), emptied.snapshot, set(), TRANSITIONS)
    assert again.writes == 0
    # Setting a priority again on either side travels as usual.
    raised = decide_pair(mapping, ticket(priority=None), issue(priority="Highest"), emptied.snapshot, set(),
                         TRANSITIONS)
    assert raised.ops == {"left": (Update({"priority": "urgent"}),), "right": ()}
    set_again = decide_pair(mapping, ticket(priority="low"), issue(), emptied.snapshot, set(), TRANSITIONS)
    assert set_again.ops == {"left": (), "right": (Update({"priority": "Low"}),)}


def test_an_emptied_free_text_field_still_travels(mapping: FlowMapping) -> None:
    snapshot = agreed_snapshot(mapping)
    decision = decide_pair(mapping, ticket(**{"custom_fields.360001": None}), issue(), snapshot, set(), TRANSITIONS)
    assert decision.ops == {"left": (), "right": (Update({"customfield_10042": None}),)}


def test_one_field_edited_on_one_side_makes_exactly_one_write(mapping: FlowMapping) -> None:
    snapshot = agreed_snapshot(mapping)
    decision = decide_pair(mapping, ticket(priority="urgent"), issue(), snapshot, set(), TRANSITIONS)
    assert decision.ops == {"left": (), "right": (Update({"priority": "Highest"}),)}


def test_jira_transition_reaches_zendesk_status_through_the_table(mapping: FlowMapping) -> None:
    snapshot = agreed_snapshot(mapping)
    decision = decide_pair(mapping, ticket(), issue(status="Done"), snapshot, set(), TRANSITIONS)
    assert decision.ops == {"left": (Update({"status": "solved"}),), "right": ()}


def test_our_own_write_coming_back_is_not_echoed(mapping: FlowMapping) -> None:
    snapshot = agreed_snapshot(mapping)
    first = decide_pair(mapping, ticket(priority="urgent"), issue(), snapshot, set(), TRANSITIONS)
    echoed = decide_pair(mapping, ticket(priority="urgent"), issue(priority="Highest"), first.snapshot,
                         set(), TRANSITIONS)
    assert echoed.writes == 0


def test_many_to_one_change_that_maps_to_the_same_value_writes_nothing(mapping: FlowMapping) -> None:
    snapshot = agreed_snapshot(mapping)
    decision = decide_pair(mapping, ticket(status="hold"), issue(), snapshot, set(), TRANSITIONS)
    assert decision.writes == 0
    assert decision.snapshot is not None and decision.snapshot["status"] == ["hold", "In Progress"]


def test_conflict_newest_takes_the_later_tracker_clock(mapping: FlowMapping) -> None:
    snapshot = agreed_snapshot(mapping)
    left = replace(ticket(subject="Desk wording"), updated_at=T0 + timedelta(minutes=5))
    right = replace(issue(summary="[ZD #7] Engineering wording"), updated_at=T0 + timedelta(minutes=1))
    decision = decide_pair(mapping, left, right, snapshot, set(), TRANSITIONS)
    assert decision.ops["right"] == (Update({"summary": "[ZD #7] Desk wording"}),)
    assert [(c.field, c.winner, c.rule) for c in decision.conflicts] == [("title", "left", "newest")]


def test_conflict_owner_rule_ignores_clocks(mapping: FlowMapping) -> None:
    snapshot = agreed_snapshot(mapping)
    left = replace(ticket(status="pending"), updated_at=T0 + timedelta(minutes=9))
    right = issue(status="Done")
    decision = decide_pair(mapping, left, right, snapshot, set(), TRANSITIONS)
    assert decision.ops["left"] == (Update({"status": "solved"}),)
    assert decision.conflicts[0].rule == "owner:right"


def test_template_is_peeled_off_when_carrying_back(mapping: FlowMapping) -> None:
    snapshot = agreed_snapshot(mapping)
    decision = decide_pair(mapping, ticket(), issue(summary="[ZD #7] Checkout fails for EU cards"),
                           snapshot, set(), TRANSITIONS)
    assert decision.ops["left"] == (Update({"subject": "Checkout fails for EU cards"}),)


def test_one_way_field_is_not_carried_back(mapping: FlowMapping) -> None:
    snapshot = agreed_snapshot(mapping)
    decision = decide_pair(mapping, ticket(), issue(customfield_10042="edited in jira"), snapshot, set(),
                           TRANSITIONS)
    assert decision.writes == 0


def test_unmapped_value_halts_the_item_with_a_clear_reason(mapping: FlowMapping) -> None:
    snapshot = agreed_snapshot(mapping)
    decision = decide_pair(mapping, ticket(), issue(status="Blocked"), snapshot, set(), TRANSITIONS)
    assert decision.halt is not None and "Blocked" in decision.halt.reason
    assert decision.writes == 0


def test_unmapped_value_with_default_uses_the_default(mapping: FlowMapping) -> None:
    snapshot = agreed_snapshot(mapping)
    decision = decide_pair(mapping, ticket(), issue(priority="Lowest"), snapshot, set(), TRANSITIONS)
    assert decision.ops["left"] == (Update({"priority": "normal"}),)


def test_comment_rules_internal_notes_and_engineering_comments(mapping: FlowMapping) -> None:
    snapshot = agreed_snapshot(mapping)
    left = replace(ticket(), comments=(Comment("1", "reply", True, "a", T0), Comment("2", "note", False, "a", T0)))
    right = replace(issue(), comments=(Comment("50", "engineering says", True, "dev", T0),))
    decision = decide_pair(mapping, left, right, snapshot, set(), TRANSITIONS)
    to_jira = [op for op in decision.ops["right"] if isinstance(op, AddComment)]
    to_desk = [op for op in decision.ops["left"] if isinstance(op, AddComment)]
    assert [(c.source_id, c.public) for c in to_jira] == [("zendesk:1", True)]
    assert [(c.source_id, c.public) for c in to_desk] == [("jira:50", False)], "back as an internal note"
    assert to_desk[0].body.endswith("[tb:jira:50]")


def test_comment_is_mirrored_once_and_mirrors_are_never_mirrored_back(mapping: FlowMapping) -> None:
    snapshot = agreed_snapshot(mapping)
    left = replace(ticket(), comments=(Comment("1", "reply", True, "a", T0),
                                       Comment("3", "from jira", False, "bot", T0, mirrored_from="jira:50")))
    right = replace(issue(), comments=(Comment("50", "engineering says", True, "dev", T0),
                                       Comment("51", "reply", True, "bot", T0, mirrored_from="zendesk:1")))
    decision = decide_pair(mapping, left, right, snapshot, set(), TRANSITIONS)
    assert decision.writes == 0, "each side already carries the other's mirror"
    assert set(decision.adopted_comments) == {("zendesk:1", "jira:51"), ("jira:50", "zendesk:3")}
    recorded = decide_pair(mapping, left, right, snapshot, {"zendesk:1", "jira:51", "jira:50", "zendesk:3"},
                           TRANSITIONS)
    assert recorded.writes == 0 and recorded.adopted_comments == ()


def test_a_mirror_travels_on_along_a_chain_but_never_back_and_notes_stay(mapping: FlowMapping) -> None:
    """The same zendesk-jira table read as a chain hop: a Jira comment that is itself a mirror of a
    ClickUp comment goes on to Zendesk; a mirror of a Zendesk reply never goes back there; notes
    ticketbridge wrote itself (status, escalation) never travel."""
    snapshot = agreed_snapshot(mapping)
    right = replace(issue(), comments=(
        Comment("60", "from planning", True, "bot", T0, mirrored_from="clickup:abc1"),
        Comment("61", "reply", True, "bot", T0, mirrored_from="zendesk:1"),
        Comment("62", "GitHub issue acme/app#1 is now closed", False, "bot", T0,
                mirrored_from="github:acme/app#1/status/1"),
        Comment("63", "Escalated to engineering", False, "bot", T0, mirrored_from="escalation:k1")))
    left = replace(ticket(), comments=(Comment("1", "reply", True, "a", T0),))
    decision = decide_pair(mapping, left, right, snapshot, {"zendesk:1"}, TRANSITIONS)
    to_desk = [op for op in decision.ops["left"] if isinstance(op, AddComment)]
    assert [op.source_id for op in to_desk] == ["jira:60"]
    assert to_desk[0].body.endswith("[tb:jira:60]")


# -- convergence: a random history of edits on both sides always settles -------------------

def apply(item: Item, ops: tuple[Any, ...], ids: list[int]) -> Item:
    """A toy tracker: writes land as given, comments get fresh ids and keep their marker."""
    fields = dict(item.fields)
    comments = list(item.comments or ())
    for op in ops:
        if isinstance(op, Update):
            fields.update(op.fields)
        elif isinstance(op, Transition):
            fields["status"] = op.status
        elif isinstance(op, AddComment):
            ids[0] += 1
            comments.append(Comment(str(ids[0]), op.body, op.public, "bot", T0, mirrored_from=op.source_id))
    return replace(item, fields=fields, comments=tuple(comments))


LEFT_EDITS = st.one_of(
    st.tuples(st.just("subject"), st.sampled_from(["A", "B", "C"])),
    st.tuples(st.just("priority"), st.sampled_from(["urgent", "high", "normal", "low"])),
    st.tuples(st.just("status"), st.sampled_from(["new", "open", "pending", "hold", "solved"])),
    st.tuples(st.just("comment"), st.booleans()),
)
RIGHT_EDITS = st.one_of(
    st.tuples(st.just("summary"), st.sampled_from(["[ZD #7] X", "[ZD #7] Y", "free text"])),
    st.tuples(st.just("priority"), st.sampled_from(["Highest", "High", "Medium", "Low"])),
    st.tuples(st.just("status"), st.sampled_from(["To Do", "In Progress", "In Review", "Done"])),
    st.tuples(st.just("comment"), st.booleans()),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["left", "right"]), LEFT_EDITS, RIGHT_EDITS), max_size=12))
def test_random_edits_converge_and_then_stay_quiet(mapping: FlowMapping, edits: list[Any]) -> None:
    left, right = ticket(), issue()
    snapshot = agreed_snapshot(mapping)
    mirrored: set[str] = set()
    ids = [1000]
    clock = T0
    for side, left_edit, right_edit in edits:
        clock += timedelta(seconds=1)
        name, value = left_edit if side == "left" else right_edit
        target = left if side == "left" else right
        if name == "comment":
            ids[0] += 1
            target = replace(target, comments=(*(target.comments or ()),
                                               Comment(str(ids[0]), "hello", bool(value), "person", clock)))
        else:
            target = replace(target, fields={**target.fields, name: value})
        target = replace(target, updated_at=clock)
        if side == "left":
            left = target
        else:
            right = target
        decision: Decision = decide_pair(mapping, left, right, snapshot, mirrored, TRANSITIONS)
        assert decision.halt is None
        left, right = apply(left, decision.ops["left"], ids), apply(right, decision.ops["right"], ids)
        for ops in (decision.ops["left"], decision.ops["right"]):
            for op in ops:
                if isinstance(op, AddComment):
                    mirrored.add(op.source_id)
        mirrored |= {c.mirrored_from for c in (*(left.comments or ()), *(right.comments or ())) if c.mirrored_from}
        snapshot = dict(decision.snapshot or {})
        quiet = decide_pair(mapping, left, right, snapshot, mirrored, TRANSITIONS)
        assert quiet.writes == 0, f"a second pass wrote {quiet.ops}"
    # Every public desk comment reached Jira exactly once; no internal note did.
    sources = [c.mirrored_from for c in right.comments or () if c.mirrored_from]
    assert len(sources) == len(set(sources))
    internal = {f"zendesk:{c.id}" for c in left.comments or () if not c.public and not c.mirrored_from}
    assert not internal & set(sources)


def test_marker_helpers_round_trip() -> None:
    from ticketbridge.sync.model import split_comment_marker

    body = with_comment_marker("Line one\n\nLine two", "zendesk:9000000012")
    assert split_comment_marker(body) == ("Line one\n\nLine two", "zendesk:9000000012")
    assert split_comment_marker("no marker [tb: broken") == ("no marker [tb: broken", None)


def test_scrub_applies_to_desk_text_leaving_only(mapping: FlowMapping) -> None:
    def scrub(text: str) -> str:
        return text.replace("555-0100", "[REDACTED:phone]")

    source = replace(ticket(subject="Call 555-0100"), comments=(Comment("91", "Ring 555-0100", True, "agent", T0),))
    created = decide_create(mapping, source, "left", "status", scrub)
    create, comment = created.ops["right"][0], created.ops["right"][-1]
    assert isinstance(create, Create) and create.fields["summary"] == "[ZD #7] Call [REDACTED:phone]"
    assert isinstance(comment, AddComment) and "Ring [REDACTED:phone]" in comment.body
    assert create.fields["priority"] == "High", "value tables are not scrubbed"
    # An engineer's text travelling back to the desk is not touched.
    snapshot = agreed_snapshot(mapping)
    back = decide_pair(mapping, ticket(), issue(summary="[ZD #7] Call 555-0100 back"), snapshot, set(),
                       TRANSITIONS, scrub)
    assert back.ops["left"] == (Update({"subject": "Call 555-0100 back"}),)
