"""Field cycles across flows: a set of flows in which a change could travel from a field, through
other trackers, back into the same field. Pure.

One flow's pair that syncs both ways is not such a cycle: the link's snapshot recognises our own
write coming back. A chain (Zendesk -> Jira -> ClickUp) is not one either: every hop has its own
snapshot, and nothing leads from ClickUp back to Zendesk except through Jira, where the value
already is. But when a third path closes the ring (Zendesk -> ClickUp directly), or two flows
join the same two fields, no snapshot sees the whole way round: two different values can chase
each other around it for ever. `ticketbridge validate` rejects such a set of flows and names the
cycle.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .mapping import FlowMapping

Node = tuple[str, str]  # (tracker name, field)
MAX_REPORTED = 10  # cycles named per validation; fixing those usually breaks the rest


@dataclass(frozen=True)
class Hop:
    flow: str
    pair: str
    source: Node
    target: Node


def field_cycles(flows: Iterable[tuple[str, FlowMapping]]) -> list[list[Hop]]:
    """Each simple cycle of field hops, over (flow name, mapping)s, that goes through three fields
    or more, or uses more than one field pair; in a stable order, at most MAX_REPORTED."""
    hops: dict[Node, list[Hop]] = {}
    for name, flow in flows:
        for pair in flow.fields:
            left, right = (flow.left, pair.left), (flow.right, pair.right)
            if pair.flows("left_to_right"):
                hops.setdefault(left, []).append(Hop(name, pair.name, left, right))
            if pair.flows("right_to_left"):
                hops.setdefault(right, []).append(Hop(name, pair.name, right, left))
    order = {node: i for i, node in enumerate(sorted({h.target for hs in hops.values() for h in hs} | set(hops)))}
    found: list[list[Hop]] = []

    def walk(start: Node, node: Node, path: list[Hop], seen: set[Node]) -> None:
        for hop in hops.get(node, ()):
            if len(found) >= MAX_REPORTED:
                return
            if hop.target == start:
                cycle = [*path, hop]
                if len(cycle) >= 3 or len({(h.flow, h.pair) for h in cycle}) > 1:
                    found.append(cycle)
            elif order[hop.target] > order[start] and hop.target not in seen:  # each cycle once, from its least node
                walk(start, hop.target, [*path, hop], seen | {hop.target})

    for start in sorted(order, key=order.__getitem__):
        walk(start, start, [], {start})
    return found


def describe(cycle: Sequence[Hop]) -> str:
    """zendesk.subject -> github.title (zendesk-github) -> jira.summary (jira-github) -> ..."""
    steps = [f"{cycle[0].source[0]}.{cycle[0].source[1]}"]
    steps += [f"{hop.target[0]}.{hop.target[1]} ({hop.flow})" for hop in cycle]
    return " -> ".join(steps)
