"""Pure sync decisions: current items + last-synced snapshot -> operations. No I/O, no clock.

The central invariant (DESIGN.md): for every linked pair the snapshot holds, per field pair, the
native values both sides agreed on after the last successful sync. A side whose value still
equals the snapshot did not change; our own writes therefore come back equal to the snapshot and
are dropped, so there is no echo and replaying an event is harmless.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Literal

from .mapping import FieldPair, FlowMapping, UnmappedValue, render_template, strip_template
from .model import (
    AddComment,
    Comment,
    Conflict,
    Create,
    Decision,
    Halt,
    Item,
    Operation,
    Side,
    Transition,
    Update,
    is_bridge_note,
    other,
    with_comment_marker,
)

Direction = Literal["left_to_right", "right_to_left"]
# Removes personal data from text leaving the desk (the left side) when the flow says `redact`.
# The engine passes a `scrubbing.ItemScrub` (bound to the ticket's people, and with a
# `field(name, value)` method that also hashes configured customer-id fields); any plain
# text -> text function works too.
Scrub = Callable[[str], str] | None
SIDES: tuple[Side, Side] = ("left", "right")
TRACKER_TITLES = {"zendesk": "Zendesk", "jira": "Jira", "github": "GitHub", "clickup": "ClickUp"}
# Snapshot key counting the status notes of a link (not a field pair: pair names are plain words).
# It makes each note's source ref unique and stable across a crash and replay.
STATUS_NOTES = "@status_notes"


def direction_from(side: Side) -> Direction:
    return "left_to_right" if side == "left" else "right_to_left"


def canon(value: Any) -> Any:
    """One comparable form per value: trackers disagree on empty vs null, list order, CRLF."""
    # Strings first: most values are (a decision canonicalizes every field of both items).
    if isinstance(value, str):
        return value.replace("\r\n", "\n").rstrip() if value else None
    if isinstance(value, list | tuple):
        return tuple(sorted(canon(v) for v in value)) if value else None
    if isinstance(value, set | frozenset):
        return tuple(sorted(canon(v) for v in value))
    return value


def json_value(value: Any) -> Any:
    """The snapshot's stored form of a canonical value (tuples become lists)."""
    value = canon(value)
    return list(value) if isinstance(value, tuple) else value


class _Halted(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _carry(pair: FieldPair, value: Any, source_side: Side, source: Item, target: Item | None,
           scrub: Scrub = None) -> Any:
    """The value `pair` writes on the other side when `value` comes from `source`.

    Templates decorate the side they write, rendered with the placeholders of the item the value
    came from. Carrying a decorated value back therefore first peels the decoration off, using
    the placeholders of the item on the other side (the one that value originally came from).
    """
    template_in = pair.template_left if source_side == "left" else pair.template_right
    template_out = pair.template_right if source_side == "left" else pair.template_left
    if template_in and target is not None and isinstance(value, str):
        value = strip_template(template_in, value, key=target.key, id=target.id, url=target.url)
    if pair.values is not None:
        try:
            value = pair.values.lookup(value, direction_from(source_side))
        except UnmappedValue as error:
            raise _Halted(str(error)) from error
    elif scrub is not None and source_side == "left":
        by_field = getattr(scrub, "field", None)
        if by_field is not None:
            value = by_field(pair.left, value)  # hashes customer-id fields, scrubs text
        elif isinstance(value, str):
            value = scrub(value)
    if template_out and value is not None:
        value = render_template(template_out, str(value), key=source.key, id=source.id, url=source.url)
    return canon(value)


def _field_ops(fields: Mapping[str, Any], transition_field: str | None) -> list[Operation]:
    ops: list[Operation] = []
    plain = {k: v for k, v in fields.items() if k != transition_field}
    if plain:
        ops.append(Update(plain))
    if transition_field and transition_field in fields and fields[transition_field] is not None:
        ops.append(Transition(str(fields[transition_field])))
    return ops


def _tracker_title(tracker: str) -> str:
    return TRACKER_TITLES.get(tracker, tracker)


def comment_ops(mapping: FlowMapping, source: Item, source_side: Side, target: Item | None,
                mirrored: set[str], scrub: Scrub = None) -> tuple[list[AddComment], list[tuple[str, str]]]:
    """Comments of `source` to mirror onto the other side, and mirrors found already posted.

    A comment is mirrored once: never back to the tracker it was mirrored from (it carries our
    marker naming its origin), never when the store says it was, and never when the target already
    has a comment whose marker names it (a crash came between the post and the commit: adopt it
    instead). A mirror does travel on along a chain (a Zendesk reply mirrored to Jira goes on to
    ClickUp); ticketbridge's own notes never travel.
    """
    rules = mapping.comments
    posted = {c.mirrored_from: c.id for c in (target.comments or ()) if c.mirrored_from} if target else {}
    ops: list[AddComment] = []
    adopted: list[tuple[str, str]] = []
    target_tracker = mapping.right if source_side == "left" else mapping.left
    for comment in source.comments or ():
        ref = f"{source.tracker}:{comment.id}"
        origin = comment.mirrored_from
        if (origin and (origin.split(":", 1)[0] == target_tracker or is_bridge_note(origin))) or ref in mirrored:
            continue
        if ref in posted:
            adopted.append((ref, f"{target_tracker}:{posted[ref]}"))
            continue
        if source_side == "left":
            if not (rules.public_to_right if comment.public else rules.internal_to_right):
                continue
            # An internal note stays internal on the engineering side too.
            public = comment.public
        else:
            if not rules.to_left:
                continue
            # Engineering comments reach the customer only when the flow says so, and a
            # restricted engineering comment never does.
            public = rules.to_left_public and comment.public
        if scrub is not None and source_side == "left":
            comment = replace(comment, body=scrub(comment.body))
        ops.append(AddComment(_mirror_body(source, comment), public, ref))
    return ops, adopted


def _mirror_body(source: Item, comment: Comment) -> str:
    kind = "reply" if comment.public else "internal note"
    header = f"{_tracker_title(source.tracker)} {source.key} · {kind} by {comment.author}"
    return with_comment_marker(f"{header}\n\n{comment.body}", f"{source.tracker}:{comment.id}")


def decide_create(mapping: FlowMapping, source: Item, source_side: Side,
                  target_transition_field: str | None, scrub: Scrub = None, *,
                  extra_fields: Mapping[str, Any] | None = None, appendix: str | None = None) -> Decision:
    """Create the counterpart of an unlinked, selected item.

    An escalation adds `extra_fields` (over the flow's fixed create fields; lists are joined)
    and an `appendix`, a text block appended to the description inside its template.
    """
    target_side = other(source_side)
    direction = direction_from(source_side)
    fixed = mapping.create_right if target_side == "right" else mapping.create_left
    fields: dict[str, Any] = dict(fixed)
    snapshot: dict[str, Any] = {}
    for name, extra in (extra_fields or {}).items():
        fields[name] = _merge_extra(fields.get(name), _scrub_extra(extra, source_side, scrub))
    appendix_pair = None
    if appendix:
        appendix_pair = next((p for p in mapping.fields if p.flows(direction)
                              and (p.left if source_side == "left" else p.right) == "description"), None)
        if appendix_pair is None:
            return Decision(halt=Halt(f"an escalation appendix needs a description field pair flowing "
                                      f"{direction} in {mapping.path or mapping.name}"))
    try:
        for pair in mapping.fields:
            source_field = pair.left if source_side == "left" else pair.right
            target_field = pair.right if source_side == "left" else pair.left
            value = canon(source.fields.get(source_field))
            if not pair.flows(direction):
                continue
            sent = value
            if pair is appendix_pair:
                sent = canon(f"{value}\n\n{appendix}" if value else appendix)
            carried = _carry(pair, sent, source_side, source, None, scrub)
            if carried is not None:
                fields[target_field] = list(carried) if isinstance(carried, tuple) else carried
            sides = {source_side: json_value(value), target_side: json_value(carried)}
            snapshot[pair.name] = [sides["left"], sides["right"]]
    except _Halted as halted:
        return Decision(halt=Halt(halted.reason))
    marker = f"{source.tracker}:{source.id}"
    create_fields = {k: v for k, v in fields.items() if k != target_transition_field}
    ops: list[Operation] = [Create(create_fields, marker)]
    if target_transition_field and fields.get(target_transition_field) is not None:
        ops.append(Transition(str(fields[target_transition_field])))
    comments, _ = comment_ops(mapping, source, source_side, None, set(), scrub)
    ops.extend(comments)
    return Decision(ops={source_side: (), target_side: tuple(ops)}, snapshot=snapshot)


def _scrub_extra(value: Any, source_side: Side, scrub: Scrub) -> Any:
    if scrub is None or source_side != "left":
        return value
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, list | tuple):
        return [scrub(v) if isinstance(v, str) else v for v in value]
    return value


def _merge_extra(fixed: Any, extra: Any) -> Any:
    """An escalation's extra field over the flow's fixed one: lists are joined (labels), anything
    else replaces (issuetype)."""
    if isinstance(fixed, list | tuple) and isinstance(extra, list | tuple):
        return list(dict.fromkeys([*fixed, *extra]))
    return list(extra) if isinstance(extra, tuple) else extra


def decide_pair(mapping: FlowMapping, left: Item, right: Item, snapshot: Mapping[str, Any] | None,
                mirrored: set[str], transition_fields: Mapping[Side, str | None], scrub: Scrub = None) -> Decision:
    """Sync one linked pair: push what changed on one side, resolve what changed on both."""
    items: dict[Side, Item] = {"left": left, "right": right}
    writes: dict[Side, dict[str, Any]] = {"left": {}, "right": {}}
    new_snapshot: dict[str, Any] = {}
    conflicts: list[Conflict] = []
    snapshot = snapshot or {}
    status_changed = False
    try:
        for pair in mapping.fields:
            current = {"left": canon(left.fields.get(pair.left)), "right": canon(right.fields.get(pair.right))}
            if pair.name in snapshot:
                agreed = {"left": canon(snapshot[pair.name][0]), "right": canon(snapshot[pair.name][1])}
                changed = {s: current[s] != agreed[s] for s in ("left", "right")}
            else:
                # A link without history (adopted after a crash): the creating direction leads,
                # but an empty value never clears one the other side holds (a tracker default).
                lead: Side = "left" if pair.flows("left_to_right") else "right"
                if current[lead] is None and current[other(lead)] is not None:
                    lead = other(lead)
                changed = {"left": lead == "left", "right": lead == "right"}
            winner = _winner(pair, changed, current, items, conflicts, scrub)
            new_snapshot[pair.name] = [json_value(current["left"]), json_value(current["right"])]
            if pair.name in snapshot and _is_status(pair) and changed["right"] and (
                    winner == "right" or (winner is None and changed["left"])):
                # The engineering status moved. Also when the desk already agrees: our status write
                # landed but the pass failed before the note (or the commit), so the note is still due.
                status_changed = True
            if winner is None:
                continue
            loser = other(winner)
            carried = _carry(pair, current[winner], winner, items[winner], items[loser], scrub)
            if carried is None and current[loser] is not None and pair.values is not None:
                # A value-table field emptied on one side (a ClickUp task set to "no priority", a
                # ticket's priority removed): "no value" is not a value of the table, and trackers
                # such as Jira cannot hold it. The other side keeps its value; both are agreed as
                # they stand, so nothing travels until one of them is set again.
                continue
            if carried != current[loser]:
                target_field = pair.right if loser == "right" else pair.left
                writes[loser][target_field] = list(carried) if isinstance(carried, tuple) else carried
            agreed_now = {winner: json_value(current[winner]), loser: json_value(carried)}
            new_snapshot[pair.name] = [agreed_now["left"], agreed_now["right"]]
    except _Halted as halted:
        return Decision(halt=Halt(halted.reason))

    ops: dict[Side, list[Operation]] = {"left": _field_ops(writes["left"], transition_fields.get("left")),
                                        "right": _field_ops(writes["right"], transition_fields.get("right"))}
    adopted: list[tuple[str, str]] = []
    for side in SIDES:
        comments, found = comment_ops(mapping, items[side], side, items[other(side)], mirrored, scrub)
        ops[other(side)].extend(comments)
        adopted.extend(found)
    _status_note(mapping, left, right, snapshot, new_snapshot, status_changed, ops["left"], adopted)
    return Decision(ops={s: tuple(v) for s, v in ops.items()}, snapshot=new_snapshot,
                    conflicts=tuple(conflicts), adopted_comments=tuple(adopted))


def decide_follower(mapping: FlowMapping, left: Item, right: Item, snapshot: Mapping[str, Any] | None,
                    mirrored: set[str], left_transition_field: str | None = None) -> Decision:
    """Sync a follower link: a ticket attached to an engineering item it did not create.

    Only engineering -> desk travels: pairs flowing right_to_left (or both) carry the right value
    when it changed since the snapshot (or, without history, whenever it has one), and the right
    item's comments come back as the flow says. Nothing is ever written to the right item, so
    several tickets following one issue never fight over its title or description.
    """
    writes: dict[str, Any] = {}
    new_snapshot: dict[str, Any] = {}
    snapshot = snapshot or {}
    status_changed = False
    try:
        for pair in mapping.fields:
            if not pair.flows("right_to_left"):
                continue
            current_left, current_right = canon(left.fields.get(pair.left)), canon(right.fields.get(pair.right))
            new_snapshot[pair.name] = [json_value(current_left), json_value(current_right)]
            if pair.name in snapshot:
                if current_right == canon(snapshot[pair.name][1]):
                    continue  # the ticket's own value stays: a follower never pushes it anywhere
                status_changed = status_changed or _is_status(pair)
            elif current_right is None:
                continue
            carried = _carry(pair, current_right, "right", right, left)
            if carried != current_left:
                writes[pair.left] = list(carried) if isinstance(carried, tuple) else carried
            new_snapshot[pair.name] = [json_value(carried), json_value(current_right)]
    except _Halted as halted:
        return Decision(halt=Halt(halted.reason))
    ops = _field_ops(writes, left_transition_field)
    comments, adopted = comment_ops(mapping, right, "right", left, mirrored)
    ops.extend(comments)
    adopted_all = list(adopted)
    _status_note(mapping, left, right, snapshot, new_snapshot, status_changed, ops, adopted_all)
    return Decision(ops={"left": tuple(ops), "right": ()}, snapshot=new_snapshot,
                    adopted_comments=tuple(adopted_all))


def _is_status(pair: FieldPair) -> bool:
    """The pair carrying the desk ticket's status (the one status notes are about)."""
    return pair.left == "status"


def status_note_text(mapping: FlowMapping, right: Item) -> str:
    """e.g. "GitHub issue acme/app#12 is now closed (completed)"."""
    pair = next((p for p in mapping.fields if _is_status(p)), None)
    value = right.fields.get(pair.right) if pair else None
    reason = right.fields.get("state_reason")  # GitHub says why an issue closed or reopened
    kind = "issue" if right.tracker != "clickup" else "task"
    text = f"{_tracker_title(right.tracker)} {kind} {right.key} is now {value}"
    return f"{text} ({str(reason).replace('_', ' ')})" if reason else text


def _status_note(mapping: FlowMapping, left: Item, right: Item, snapshot: Mapping[str, Any],
                 new_snapshot: dict[str, Any], changed: bool, left_ops: list[Operation],
                 adopted: list[tuple[str, str]]) -> None:
    """One note on the ticket per status change coming from the right, when the flow asks for it.

    The note's source ref counts the link's notes (kept in the snapshot), so it is the same when a
    crash between posting and committing makes the pass run again: the posted note is then found
    by its marker on the ticket and adopted, never posted twice. The marker also keeps it from
    being mirrored back and from counting as an agent's reply.
    """
    count = int(snapshot.get(STATUS_NOTES, 0) or 0)
    if count:
        new_snapshot[STATUS_NOTES] = count
    if not (changed and mapping.comments.status_note):
        return
    ref = f"{right.tracker}:{right.id}/status/{count + 1}"
    new_snapshot[STATUS_NOTES] = count + 1
    posted = {c.mirrored_from: c.id for c in (left.comments or ()) if c.mirrored_from}
    if ref in posted:
        adopted.append((ref, f"{left.tracker}:{posted[ref]}"))
        return
    body = with_comment_marker(status_note_text(mapping, right), ref)
    left_ops.append(AddComment(body, mapping.comments.to_left_public, ref))


def _winner(pair: FieldPair, changed: Mapping[str, bool], current: Mapping[str, Any],
            items: Mapping[Side, Item], conflicts: list[Conflict], scrub: Scrub) -> Side | None:
    """Which side's value travels for this pair, if any."""
    flows = {"left": pair.flows("left_to_right"), "right": pair.flows("right_to_left")}
    if changed["left"] and changed["right"]:
        if _agree(pair, current, items, scrub):
            return None  # both moved to equivalent values: nothing to resolve
        if flows["left"] and flows["right"]:
            winner = _resolve(pair.conflict, items)
        else:
            winner = "left" if flows["left"] else "right"
        rule = pair.conflict if flows["left"] and flows["right"] else f"direction:{pair.direction}"
        conflicts.append(Conflict(pair.name, current["left"], current["right"], winner, rule))
        return winner
    for side in SIDES:
        if changed[side] and flows[side]:
            return side
    return None


def _agree(pair: FieldPair, current: Mapping[str, Any], items: Mapping[Side, Item], scrub: Scrub) -> bool:
    for side in SIDES:
        if not pair.flows(direction_from(side)):
            continue
        loser = other(side)
        try:
            carried = _carry(pair, current[side], side, items[side], items[loser], scrub)
        except _Halted:
            continue
        if carried == current[loser]:
            return True
    return False


def _resolve(rule: str, items: Mapping[Side, Item]) -> Side:
    if rule == "owner:left":
        return "left"
    if rule == "owner:right":
        return "right"
    # newest: the side whose tracker clock says it changed last; ties go to the left (the desk).
    return "left" if items["left"].updated_at >= items["right"].updated_at else "right"


def field_names(ops: Sequence[Operation]) -> list[str]:
    """The fields an operation list writes (for reports): Update keys and transitioned status."""
    names: list[str] = []
    for op in ops:
        if isinstance(op, Update | Create):
            names.extend(op.fields)
        elif isinstance(op, Transition):
            names.append("status")
    return names
