"""The Connector protocol: what the engine asks of every tracker.

A connector is thin: it translates between the tracker's REST API and `sync.model` values.
It makes no decisions; the engine and `sync.decide` do.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..sync.model import Item, Operation, PushResult


@dataclass(frozen=True)
class Page:
    """One page of changed items and the cursor to store once they are all committed."""

    items: Sequence[Item]
    cursor: str | None


class Connector(Protocol):
    name: str  # the tracker's name in config.yaml
    type: str  # "zendesk" | "jira" | ...
    # The field that changes through workflow transitions instead of a plain write ("status" on
    # Jira), or None when every field is written directly.
    transition_field: str | None

    def check(self) -> None:
        """Reach the tracker and authenticate; raise AuthError / Retryable otherwise."""

    def poll(self, cursor: str | None, select: Mapping[str, Any]) -> Iterator[Page]:
        """Items changed since `cursor` (None: everything), oldest first, page by page.

        `select` is the flow's selection for this side; a connector may use it to narrow the
        query (Jira JQL). A connector that does not must still return items that no longer match,
        and the engine filters them (see `selected`). A connector whose query applies `select`
        (so that `selected` cannot tell) also offers `fetch_selected(item_id, select) ->
        (Item, matches)`, with which the engine checks linked items the poll did not return.
        """
        ...

    def selected(self, item: Item, select: Mapping[str, Any]) -> bool:
        """Whether the item matches the flow's selection, as far as its own fields tell. An
        unlinked item that does not is never created from; a linked pair with a side that does
        not is paused (neither side is written) until it matches again."""
        ...

    def fetch(self, item_id: str) -> Item:
        """One item by immutable id, comments included. Raises NotFound."""
        ...

    def with_comments(self, item: Item) -> Item:
        """The item with its comments loaded (a no-op when they already are)."""
        ...

    def find_by_marker(self, marker: str) -> Item | None:
        """The item created by ticketbridge from `marker` ("zendesk:123"), if any."""
        ...

    def push(self, item_id: str | None, ops: Sequence[Operation]) -> PushResult:
        """Apply operations to one item (`item_id` None with a Create first). Raises TrackerError."""
        ...

    @property
    def requests_made(self) -> int: ...
