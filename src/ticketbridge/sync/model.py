"""Value types that flow through the sync: Items in, Operations out.

Connectors normalize raw tracker JSON into `Item`s at the edge; the core never sees raw shapes.
Decisions are lists of `Operation`s, plain values that `plan` prints and tests compare.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

Side = Literal["left", "right"]


def iso_utc(moment: datetime | None) -> str:
    """An instant as the trackers and the store write it: ISO 8601 UTC to the second ("" for none)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else ""


def other(side: Side) -> Side:
    return "right" if side == "left" else "left"


@dataclass(frozen=True)
class Comment:
    id: str
    body: str
    public: bool
    author: str
    created_at: datetime
    # Set when the comment is a mirror written by ticketbridge: "<tracker>:<source comment id>".
    mirrored_from: str | None = None
    # The author's role where the tracker says it ("agent", "admin", "end-user"): SLA clocks
    # count only human agents' public replies.
    author_role: str | None = None

    @property
    def by_agent(self) -> bool:
        """A reply by a person on the support side (a mirror written by ticketbridge never is)."""
        return self.author_role in ("agent", "admin") and self.mirrored_from is None


@dataclass(frozen=True)
class People:
    """Who a ticket is about: the requester (name, email, phone, organization) and the people
    CC'd on it or following it. Used only to remove them from text leaving the desk; never a
    field, so a mapping cannot sync it."""

    names: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()
    phones: tuple[str, ...] = ()
    organizations: tuple[str, ...] = ()


@dataclass(frozen=True)
class Item:
    """One ticket / issue as the core sees it."""

    tracker: str  # tracker name from config, e.g. "zendesk"
    id: str  # immutable native id (Jira issue id, not key)
    key: str  # human key: "#123", "ENG-12"
    url: str  # where a person opens it
    fields: Mapping[str, Any]  # flat native values: status, priority, labels (tuple), customfield_1...
    updated_at: datetime  # the tracker's own clock
    version: str  # changes on every update; de-duplicates polled pages
    comments: tuple[Comment, ...] | None = None  # None: not loaded yet (see Connector.with_comments)
    # The ticketbridge marker found on this item, naming the item it was created from ("zendesk:123").
    marker: str | None = None
    # The people the item is about (desk tickets), for redaction by exact match.
    people: People = field(default_factory=People)


# A mirrored comment ends with a marker naming its source, so that a mirror is never mirrored back
# and a comment posted just before a crash is recognised instead of posted twice.
_COMMENT_MARKER = re.compile(r"\s*\[tb:([a-z][a-z0-9_]*:[^\]\s]+)\]\s*$")


def with_comment_marker(body: str, source_ref: str) -> str:
    return f"{body.rstrip()}\n\n[tb:{source_ref}]"


def is_bridge_note(source_ref: str) -> bool:
    """A note ticketbridge wrote itself (escalation, status, SLA and redaction notes), not a mirror
    of a person's comment: such notes stay where they were written."""
    return source_ref.startswith(("ticketbridge:", "escalation:")) or "/status/" in source_ref


def split_comment_marker(body: str) -> tuple[str, str | None]:
    """(body without the marker, source ref or None)."""
    match = _COMMENT_MARKER.search(body)
    if not match:
        return body, None
    return body[: match.start()], match.group(1)


# -- operations -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Create:
    """Create the counterpart of `source` on the target side."""

    fields: Mapping[str, Any]
    marker: str  # written on the created item, e.g. "zendesk:123"
    kind: Literal["create"] = "create"


@dataclass(frozen=True)
class Update:
    fields: Mapping[str, Any]
    kind: Literal["update"] = "update"


@dataclass(frozen=True)
class Transition:
    """Move through the workflow to `status` (trackers where status is not a plain field)."""

    status: str
    kind: Literal["transition"] = "transition"


@dataclass(frozen=True)
class AddComment:
    body: str
    public: bool
    source_id: str  # "<tracker>:<comment id>" of the comment being mirrored
    kind: Literal["comment"] = "comment"


Operation = Create | Update | Transition | AddComment


@dataclass(frozen=True)
class Conflict:
    field: str  # the pair's name, e.g. "priority"
    left_value: Any
    right_value: Any
    winner: Side
    rule: str  # "owner:left", "owner:right", "newest"


@dataclass(frozen=True)
class Halt:
    """The item cannot be synced until an admin fixes the mapping or the data."""

    reason: str


@dataclass(frozen=True)
class Decision:
    """What one sync of one linked pair (or one unlinked item) must do."""

    ops: Mapping[Side, tuple[Operation, ...]] = field(default_factory=lambda: {"left": (), "right": ()})
    snapshot: Mapping[str, Any] | None = None  # the agreed values to store after the push succeeds
    conflicts: tuple[Conflict, ...] = ()
    halt: Halt | None = None
    # Mirrors found already posted on the other side (a crash came between post and commit):
    # (source ref, target ref) pairs to record without posting again.
    adopted_comments: tuple[tuple[str, str], ...] = ()

    @property
    def writes(self) -> int:
        return sum(len(v) for v in self.ops.values())


@dataclass(frozen=True)
class PushResult:
    """What a connector reports back after applying operations to one item."""

    item_id: str
    item_key: str
    created: bool = False
    # source comment id ("<tracker>:<id>") -> id of the comment written on this side
    comment_ids: Mapping[str, str] = field(default_factory=dict)
    item: Item | None = None  # the item as it is after the write, when the tracker returned it
