"""Benchmark: core throughput (item changes/s through normalize -> map -> decide -> commit, no HTTP)
and the peak RSS of a process whose store holds 100,000 links (issue 8, fourth figure).

    .venv/bin/python bench/core.py [--quick] [--json PATH] [--changes N] [--links N] [--rss-links N]

What runs: the real `Engine.sync_once` (its `_FlowPass`) over the shipped zendesk-jira mapping
(mappings/zendesk-jira.yaml, with its redaction: the shipped policy's `redaction:` rules) and the
real `Store`, between two in-memory trackers (`MemoryZendesk`, `MemoryJira`) that implement the
Connector protocol without I/O. They hold raw JSON in the trackers' REST shapes (Zendesk's
incremental export with side-loaded users, comment lists; Jira Cloud v3 search/jql issues with ADF
bodies and embedded comment pages, as the emulators and /work/shared/reference/fixtures send them)
and turn it into Items with the REAL `ZendeskConnector.normalize` / `normalize_comment` and
`JiraConnector.normalize`; a push applies the operations to that JSON at once (the tracker's
version moves, so our own writes come back on the next poll as echoes, as they do for real).

Setup (not timed): N linked pairs. Issue n is what the real `decide_create` makes from ticket n
and the link's snapshot is the one it gives (generated from the ticket number, and checked against
decide_create on sample tickets before anything runs), with the ticket's reply mirrored; links and
comment mirrors are inserted in batches of 1,000 rows (executemany through SQLAlchemy Core on the
store's own engine and table definitions: 100,000 `commit_item` transactions would take minutes).
Cursors are set past the setup, so the first poll sees only changes.

Timed: passes of `Engine.sync_once`. Before each pass (not timed) a seeded random batch of pairs
changes on one side: 35% a Zendesk field (status, priority or subject), 20% a Zendesk public reply
(a quarter of them quote an email address, which redaction removes), 30% a Jira field (status or
priority), 15% a Jira comment. Each write the engine makes comes back on the next pass as an echo
that the engine decides is a no-op and commits. A "change" is one changed item the engine processed
and committed (PassStats.items_seen): field updates, mirrored comments and no-op echoes (the mix is
printed). The first pass warms caches and is not counted. The process is pinned to CPU 0
(`os.sched_setaffinity`); wall and process CPU time are both reported (on PostgreSQL the server's
own CPU time is not in the process figure: it runs on any core). SLA clocks and escalations are off:
this measures the sync core. Each store is measured three times (`--repeat`; once with --quick), each
time on a fresh store, and the median run is the figure: on a shared VM a single run moves by 10-20%
from one minute to the next (every run's figure is printed too).

Stores: SQLite (a file in a temp dir, as `ticketbridge` runs by default) and PostgreSQL (a fresh
schema on $TICKETBRIDGE_TEST_PG_URL, default the local test server; skipped with the reason when
unreachable). Peak RSS: a separate subprocess (so the throughput runs do not inflate it) sets up a
SQLite store with 100,000 links (10,000 with --quick) and syncs changes on them; its peak RSS
(VmHWM) is the figure, the trackers' in-memory state included (generated on demand from the item
id, so it stays small).

Targets (issue 8): >= 2,000 changes/s on one core; peak RSS < 200 MB with 100,000 links.
`--profile` prints a pyinstrument profile of the timed passes of each store (dev dependency).
"""

from __future__ import annotations

import bisect
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import common
import structlog

sys.path.insert(0, str(common.REPO))  # tests.pg: the fresh PostgreSQL schema helper

from ticketbridge.connectors.base import Page
from ticketbridge.connectors.errors import NotFound
from ticketbridge.connectors.jira.adf import text_to_adf
from ticketbridge.connectors.jira.connector import JiraConnector, marker_label
from ticketbridge.connectors.zendesk.connector import ZendeskConnector, _by_id
from ticketbridge.logs import configure
from ticketbridge.sync.decide import decide_create
from ticketbridge.sync.engine import Engine, Flow
from ticketbridge.sync.mapping import FlowMapping, load_mapping
from ticketbridge.sync.model import AddComment, Create, Item, Operation, PushResult, Transition, Update
from ticketbridge.sync.policy.policy import load_policy
from ticketbridge.sync.scrubbing import Scrubber
from ticketbridge.sync.store import Store, comment_links_t, links_t

MAPPING = common.REPO / "mappings" / "zendesk-jira.yaml"
POLICY = common.REPO / "mappings" / "policy.yaml"
ZD_URL, JIRA_URL = "https://acme.zendesk.example", "https://acme.atlassian.example"
SEED = 20261202
T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)  # when every base item was last updated
BRIDGE_USER = 900_000_001  # the Zendesk agent ticketbridge writes as
WORDS = ("login", "export", "invoice", "timeout", "crash", "sync", "report", "upload", "search", "billing",
         "mobile", "dashboard", "webhook", "password", "latency", "import", "printer", "calendar")
ZD_STATUSES = ("new", "open", "pending", "hold", "solved")
ZD_PRIORITIES = ("urgent", "high", "normal", "low")
JIRA_STATUSES = ("To Do", "In Progress", "In Review", "Done")
JIRA_PRIORITIES = ("Highest", "High", "Medium", "Low", "Lowest")
# The mix of changes made between passes: (kind, share).
MIX = (("zendesk_field", 0.35), ("zendesk_reply", 0.20), ("jira_field", 0.30), ("jira_comment", 0.15))


def zd_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def jira_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


class Clock:
    """The trackers' shared clock: every write moves it 1 ms, so versions are unique and ordered."""

    def __init__(self) -> None:
        self.now = T0 + timedelta(hours=1)

    def tick(self) -> datetime:
        self.now += timedelta(milliseconds=1)
        return self.now


# -- the base items, generated on demand from the ticket number ------------------------------------


T0_ZD, T0_JIRA = T0.strftime("%Y-%m-%dT%H:%M:%SZ"), T0.strftime("%Y-%m-%dT%H:%M:%S.000+0000")
TAGS = ("vip", "billing", "mobile", "web", "api")


def base_ticket(number: int) -> dict[str, Any]:
    """Ticket `number` as Zendesk's export returns it (the fields the connector reads, and some).
    Words and tags follow from the number by arithmetic: generating a ticket is part of the timed
    passes (a fetch), so it must cost next to nothing."""
    words = WORDS[number % 18], WORDS[(number * 7 + 3) % 18], WORDS[(number * 13 + 5) % 18]
    subject = f"{words[0].title()} {words[1]} fails after {words[2]}"
    return {
        "url": f"{ZD_URL}/api/v2/tickets/{number}.json", "id": number, "external_id": None,
        "via": {"channel": "web", "source": {"from": {}, "to": {}, "rel": None}},
        "created_at": T0_ZD, "updated_at": T0_ZD, "type": "problem", "subject": subject, "raw_subject": subject,
        "description": f"Since this morning {words[1]} fails when I use {words[2]}. Steps: open {words[0]}, "
                       f"click {words[1]}, wait. Ticket {number}.",
        "priority": ZD_PRIORITIES[number % 4], "status": ZD_STATUSES[number % 4],  # no 'solved' yet
        "recipient": None, "requester_id": 100_000_000 + number, "submitter_id": 100_000_000 + number,
        "assignee_id": 900_000_100 + number % 7, "organization_id": 500_000 + number % 50, "group_id": 360_001,
        "collaborator_ids": [], "follower_ids": [], "email_cc_ids": [], "forum_topic_id": None,
        "problem_id": None, "has_incidents": False, "is_public": True, "due_at": None,
        "tags": sorted({TAGS[number % 5], TAGS[(number // 5) % 5]}), "custom_fields": [],
        "satisfaction_rating": None, "sharing_agreement_ids": [], "fields": [], "followup_ids": [],
        "ticket_form_id": 360_000_001, "brand_id": 360_000_002, "allow_channelback": False,
        "allow_attachments": True, "from_messaging_channel": False,
    }


def requester(number: int) -> dict[str, Any]:
    return {"id": 100_000_000 + number, "name": f"Customer {number}", "email": f"customer{number}@client.example",
            "phone": None, "role": "end-user", "organization_id": 500_000 + number % 50}


def organization(org_id: int) -> dict[str, Any]:
    return {"id": org_id, "name": f"Client {org_id} Ltd"}


def base_ticket_comments(number: int) -> list[dict[str, Any]]:
    """The description (Zendesk's first comment) and one public reply by the requester."""
    ticket = base_ticket(number)
    return [zd_comment(number * 10, ticket["description"], 100_000_000 + number, T0_ZD),
            zd_comment(number * 10 + 1, f"Any news on {ticket['subject'].lower()}? It blocks our team.",
                       100_000_000 + number, T0_ZD)]


def zd_comment(comment_id: int, body: str, author: int, at: str, public: bool = True) -> dict[str, Any]:
    return {"id": comment_id, "type": "Comment", "author_id": author, "body": body,
            "html_body": f"<div class=\"zd-comment\"><p>{body}</p></div>", "plain_body": body, "public": public,
            "attachments": [], "audit_id": comment_id + 1, "created_at": at,
            "via": {"channel": "web", "source": {"from": {}, "to": {}, "rel": None}}}


def jira_comment(comment_id: int, body: str, author: str, at: str) -> dict[str, Any]:
    return {"self": f"{JIRA_URL}/rest/api/3/issue/comment/{comment_id}", "id": str(comment_id),
            "author": {"accountId": f"acc-{author}", "displayName": author, "active": True},
            "body": text_to_adf(body), "created": at, "updated": at, "jsdPublic": True}


# -- the in-memory trackers ---------------------------------------------------------------------------


@dataclass
class Writes:
    """What the engine wrote through one connector (to tell field updates, comments and no-ops apart)."""

    pushes: int = 0
    updates: int = 0
    transitions: int = 0
    comments: int = 0
    creates: int = 0
    items: set[str] = field(default_factory=set)

    def count(self, item_id: str, ops: Sequence[Operation]) -> None:
        self.pushes += 1
        self.items.add(item_id)
        for op in ops:
            if isinstance(op, Update):
                self.updates += 1
            elif isinstance(op, Transition):
                self.transitions += 1
            elif isinstance(op, AddComment):
                self.comments += 1
            elif isinstance(op, Create):
                self.creates += 1


class MemoryZendesk:
    """Zendesk without HTTP: tickets 1..N are generated from their number until first changed."""

    name = "zendesk"
    type = "zendesk"
    transition_field: str | None = None
    dedupe_versions = False
    requests_made = 0

    def __init__(self, clock: Clock, tickets: int) -> None:
        self.real = ZendeskConnector(self.name, ZD_URL, "bench@acme.example", "bench-token")
        self.clock = clock
        self.count = tickets
        self.changed: dict[int, dict[str, Any]] = {}  # number -> the ticket JSON once it changed
        self.comments: dict[int, list[dict[str, Any]]] = {}
        self.log: list[tuple[int, int]] = []  # (sequence, number) of every change, in order
        self.seq = 0
        self.next_comment = 10 ** 12
        self.writes = Writes()

    def check(self) -> None:
        pass

    def ticket(self, number: int) -> dict[str, Any]:
        found = self.changed.get(number)
        return found if found is not None else base_ticket(number)

    def ticket_comments(self, number: int) -> list[dict[str, Any]]:
        found = self.comments.get(number)
        return found if found is not None else base_ticket_comments(number)

    def touch(self, number: int) -> dict[str, Any]:
        """The ticket, made mutable, with a new updated_at and a place in the export."""
        ticket = self.changed.get(number)
        if ticket is None:
            ticket = self.changed[number] = base_ticket(number)
        ticket["updated_at"] = zd_time(self.clock.tick())
        self.seq += 1
        self.log.append((self.seq, number))
        return ticket

    def add_comment(self, number: int, body: str, author: int, public: bool) -> str:
        comments = self.comments.get(number)
        if comments is None:
            comments = self.comments[number] = base_ticket_comments(number)
        self.next_comment += 1
        comments.append(zd_comment(self.next_comment, body, author, zd_time(self.clock.now), public))
        return str(self.next_comment)

    def _body(self, tickets: list[dict[str, Any]]) -> dict[str, Any]:
        """An export page as the API sends it: tickets with their requesters and organizations."""
        return {"tickets": tickets,
                "users": [requester(t["id"]) for t in tickets],
                "organizations": [organization(t["organization_id"]) for t in tickets]}

    def _normalize(self, body: dict[str, Any]) -> list[Item]:
        users, organizations = _by_id(body, "users"), _by_id(body, "organizations")
        return [self.real.normalize(ticket, users, organizations) for ticket in body["tickets"]]

    def poll(self, cursor: str | None, select: Mapping[str, Any]) -> Iterator[Page]:
        start = int(cursor or 0)
        index = bisect.bisect_right(self.log, (start, 1 << 62))
        latest: dict[int, int] = {}
        for seq, number in self.log[index:]:
            latest[number] = seq  # the export lists a ticket once, at its latest change
        order = sorted(latest, key=latest.__getitem__)
        for at in range(0, len(order), 1000):
            chunk = order[at:at + 1000]
            items = self._normalize(self._body([self.ticket(n) for n in chunk]))
            yield Page(items=items, cursor=str(latest[chunk[-1]]))

    def mark(self) -> str:
        return str(self.seq)

    def selected(self, item: Item, select: Mapping[str, Any]) -> bool:
        return self.real.selected(item, select)

    def _roles(self, comments: list[dict[str, Any]]) -> dict[Any, str]:
        return {c["author_id"]: "agent" if c["author_id"] >= 900_000_000 else "end-user" for c in comments}

    def with_comments(self, item: Item) -> Item:
        if item.comments is not None:
            return item
        raw = self.ticket_comments(int(item.id))
        roles = self._roles(raw)
        return replace(item, comments=tuple(self.real.normalize_comment(c, roles.get(c["author_id"]))
                                            for c in raw[1:]))

    def fetch(self, item_id: str) -> Item:
        number = int(item_id)
        if not 1 <= number <= self.count:
            raise NotFound(self.name, f"ticket {item_id}")
        return self.with_comments(self._normalize(self._body([self.ticket(number)]))[0])

    def find_by_marker(self, marker: str) -> Item | None:
        return None  # the bench never creates tickets

    def push(self, item_id: str | None, ops: Sequence[Operation]) -> PushResult:
        assert item_id is not None, "the zendesk-jira flow never creates tickets"
        self.writes.count(item_id, ops)
        number = int(item_id)
        ticket = self.touch(number)
        comment_ids: dict[str, str] = {}
        for op in ops:
            if isinstance(op, Update):
                for name, value in op.fields.items():
                    if name == "tags":
                        ticket["tags"] = sorted(value or [])
                    elif name != "description":
                        ticket[name] = value
            elif isinstance(op, AddComment):
                comment_ids[op.source_id] = self.add_comment(number, op.body, BRIDGE_USER, op.public)
        item = self._normalize(self._body([ticket]))[0]
        return PushResult(item_id=item_id, item_key=f"#{item_id}", comment_ids=comment_ids, item=item)


def issue_description(ticket: dict[str, Any]) -> str:
    return f"{ticket['description']}\n\n---\nZendesk ticket #{ticket['id']}: {ZD_URL}/agent/tickets/{ticket['id']}"


class MemoryJira:
    """Jira without HTTP: issue 10000+n is the one created from ticket n, generated on demand
    (checked against the real decide_create at setup) until first changed."""

    name = "jira"
    type = "jira"
    transition_field: str | None = "status"
    dedupe_versions = True
    requests_made = 0

    def __init__(self, clock: Clock, mapping: FlowMapping) -> None:
        self.real = JiraConnector(self.name, JIRA_URL, "bench@acme.example", "bench-token")
        self.clock = clock
        self.mapping = mapping
        tables = {pair.name: pair.values for pair in mapping.fields if pair.values is not None}
        self.status, self.priority = tables["status"].left_to_right, tables["priority"].left_to_right
        self.changed: dict[int, dict[str, Any]] = {}
        self.log: list[tuple[str, int]] = []  # (updated, number) in clock order
        self.next_comment = 50_000_000
        self.writes = Writes()

    def check(self) -> None:
        pass

    def issue(self, number: int) -> dict[str, Any]:
        found = self.changed.get(number)
        return found if found is not None else self.base_issue(number)

    def base_issue(self, number: int) -> dict[str, Any]:
        """The issue decide_create made from ticket `number`: summary and description templated,
        priority and status through the value tables, the ticket's reply mirrored."""
        ticket = base_ticket(number)
        issue_id, key = str(10_000 + number), f"ENG-{number}"
        reply = base_ticket_comments(number)[1]
        mirror = (f"Zendesk #{number} · reply by {reply['author_id']}\n\n{reply['body']}"
                  f"\n\n[tb:zendesk:{reply['id']}]")
        return {
            "expand": "renderedFields,names,schema,operations,editmeta,changelog,versionedRepresentations",
            "id": issue_id, "self": f"{JIRA_URL}/rest/api/3/issue/{issue_id}", "key": key,
            "fields": {
                "summary": f"[ZD #{number}] {ticket['subject']}",
                "description": text_to_adf(issue_description(ticket)),
                "status": {"self": f"{JIRA_URL}/rest/api/3/status/1", "name": self.status[ticket["status"]],
                           "id": "1", "statusCategory": {"key": "new"}},
                "priority": {"self": f"{JIRA_URL}/rest/api/3/priority/3",
                             "name": self.priority[ticket["priority"]], "id": "3"},
                "labels": sorted(["support", marker_label(f"zendesk:{number}")]),
                "issuetype": {"id": "10004", "name": "Bug", "subtask": False},
                "assignee": None, "resolution": None,
                "project": {"id": "10000", "key": "ENG", "name": "Engineering"},
                "created": T0_JIRA, "updated": T0_JIRA,
                "comment": {"comments": [jira_comment(50_000_000 - number, mirror, "ticketbridge", T0_JIRA)],
                            "maxResults": 1, "total": 1, "startAt": 0},
            },
        }

    def snapshot(self, number: int) -> dict[str, Any]:
        """The link's snapshot after the creation of issue `number` (what decide_create gives)."""
        ticket = base_ticket(number)
        return {"title": [ticket["subject"], f"[ZD #{number}] {ticket['subject']}"],
                "description": [ticket["description"], issue_description(ticket)],
                "priority": [ticket["priority"], self.priority[ticket["priority"]]],
                "status": [ticket["status"], self.status[ticket["status"]]]}

    def touch(self, number: int) -> dict[str, Any]:
        issue = self.changed.get(number)
        if issue is None:
            issue = self.changed[number] = self.base_issue(number)
        issue["fields"]["updated"] = updated = jira_time(self.clock.tick())
        self.log.append((updated, number))
        return issue

    def add_comment(self, number: int, body: str, author: str) -> str:
        page = self.touch(number)["fields"]["comment"]
        self.next_comment += 1
        page["comments"].append(jira_comment(self.next_comment, body, author, jira_time(self.clock.now)))
        page["total"] = page["maxResults"] = len(page["comments"])
        return str(self.next_comment)

    def mark(self) -> str:
        return jira_time(self.clock.now)

    def poll(self, cursor: str | None, select: Mapping[str, Any]) -> Iterator[Page]:
        # No look-back here: the engine's id+version de-duplication is what a look-back costs.
        index = bisect.bisect_right(self.log, (cursor or "", 1 << 62))
        latest: dict[int, str] = {}
        for updated, number in self.log[index:]:
            latest[number] = updated
        order = sorted(latest, key=latest.__getitem__)
        for at in range(0, len(order), 100):  # the connector's page size
            chunk = order[at:at + 100]
            items = [self.real.normalize(self.issue(n), with_comments=True) for n in chunk]
            yield Page(items, latest[chunk[-1]])

    def selected(self, item: Item, select: Mapping[str, Any]) -> bool:
        return True  # the JQL is the search's business (see fetch_selected)

    def fetch(self, item_id: str) -> Item:
        number = int(item_id) - 10_000
        if number < 1:
            raise NotFound(self.name, f"issue {item_id}")
        return self.real.normalize(self.issue(number), with_comments=True)

    def fetch_selected(self, item_id: str, select: Mapping[str, Any]) -> tuple[Item, bool]:
        return self.fetch(item_id), True  # every bench issue is in project ENG

    def with_comments(self, item: Item) -> Item:
        return item if item.comments is not None else self.fetch(item.id)

    def find_by_marker(self, marker: str) -> Item | None:
        return None

    def push(self, item_id: str | None, ops: Sequence[Operation]) -> PushResult:
        assert item_id is not None, "setup creates the issues; the timed passes only update"
        self.writes.count(item_id, ops)
        number = int(item_id) - 10_000
        raw = self.touch(number)["fields"]
        comment_ids: dict[str, str] = {}
        for op in ops:
            if isinstance(op, Update):
                for name, value in op.fields.items():
                    if name == "description":
                        raw[name] = text_to_adf(value) if value else None
                    elif name == "priority":
                        raw[name] = {"name": value}
                    elif name == "labels":
                        raw[name] = sorted({*value, *(x for x in raw["labels"] if x.startswith("tb-"))})
                    else:
                        raw[name] = value
            elif isinstance(op, Transition):
                raw["status"] = {"name": op.status, "statusCategory": {"key": "indeterminate"}}
            elif isinstance(op, AddComment):
                comment_ids[op.source_id] = self.add_comment(number, op.body, "ticketbridge")
        return PushResult(item_id=item_id, item_key=f"ENG-{number}", comment_ids=comment_ids)


# -- setup ---------------------------------------------------------------------------------------


def check_base_issue(mapping: FlowMapping, zendesk: MemoryZendesk, jira: MemoryJira, scrub: Scrubber) -> None:
    """The generated issues must be what the real decide_create makes, or the bench measures a lie."""
    for number in (1, 2, 3, 4, 77):
        ticket = zendesk.fetch(str(number))
        decision = decide_create(mapping, ticket, "left", "status", scrub.for_item(ticket))
        create = decision.ops["right"][0]
        assert isinstance(create, Create)
        issue = jira.real.normalize(jira.base_issue(number), with_comments=True)
        for name, value in create.fields.items():
            if name not in ("project", "issuetype"):
                got, want = issue.fields.get(name), value
                if isinstance(want, list | tuple):
                    got, want = tuple(got or ()), tuple(want)
                assert got == want, (name, got, want)
        transition = decision.ops["right"][1]
        assert isinstance(transition, Transition) and transition.status == issue.fields["status"]
        assert decision.snapshot == jira.snapshot(number), (decision.snapshot, jira.snapshot(number))


def insert_links(store: Store, mapping: FlowMapping, jira: MemoryJira, count: int, batch: int = 1000) -> None:
    """`count` links, each with the snapshot decide_create gives (see check_base_issue), and the
    mirror of the ticket's reply."""
    now = datetime.now(UTC)
    engine = store.sa_engine
    for start in range(1, count + 1, batch):
        links, mirrors = [], []
        for number in range(start, min(start + batch, count + 1)):
            links.append({"id": number, "flow": mapping.name, "left_id": str(number), "left_key": f"#{number}",
                          "right_id": str(10_000 + number), "right_key": f"ENG-{number}",
                          "snapshot": jira.snapshot(number), "left_version": T0_ZD,
                          "right_version": T0_JIRA, "created_at": now, "updated_at": now, "role": "primary"})
            mirrors.append({"link_id": number, "flow": mapping.name, "source_ref": f"zendesk:{number * 10 + 1}",
                            "target_ref": f"jira:{50_000_000 - number}", "created_at": now})
        with engine.begin() as conn:
            conn.execute(links_t.insert(), links)
            conn.execute(comment_links_t.insert(), mirrors)
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:  # explicit ids: move the sequence past them
            conn.exec_driver_sql("SELECT setval(pg_get_serial_sequence('links', 'id'), (SELECT max(id) FROM links))")
        # The planner's statistics, which autovacuum gathers on a live database within a minute of
        # such an insert. Without them PostgreSQL takes the fresh tables for nearly empty and reads a
        # page's links by scanning every link of the flow (10x slower at 20,000 links).
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("ANALYZE links, comment_links")


@dataclass
class World:
    store: Store
    engine: Engine
    zendesk: MemoryZendesk
    jira: MemoryJira
    rng: random.Random
    links: int

    def change(self, count: int) -> None:
        """`count` changes on random pairs, in the MIX proportions (the trackers' side: not timed)."""
        kinds = [kind for kind, _ in MIX]
        weights = [share for _, share in MIX]
        for number in self.rng.sample(range(1, self.links + 1), count):
            kind = self.rng.choices(kinds, weights)[0]
            if kind == "zendesk_field":
                ticket = self.zendesk.touch(number)
                which = self.rng.choice(("status", "priority", "subject"))
                if which == "subject":
                    ticket["subject"] = f"{ticket['subject'].split(' (')[0]} ({self.rng.randint(1, 10**6)})"
                else:
                    values = ZD_STATUSES if which == "status" else ZD_PRIORITIES
                    ticket[which] = self.rng.choice([v for v in values if v != ticket[which]])
            elif kind == "zendesk_reply":
                pii = " Reach me at jane.doe@client.example." if self.rng.random() < 0.25 else ""
                self.zendesk.add_comment(number, f"Still failing for us today.{pii}", 100_000_000 + number, True)
                self.zendesk.touch(number)
            elif kind == "jira_field":
                raw = self.jira.touch(number)["fields"]
                if self.rng.random() < 0.6:
                    raw["status"] = {"name": self.rng.choice([s for s in JIRA_STATUSES
                                                              if s != (raw["status"] or {}).get("name")])}
                else:
                    raw["priority"] = {"name": self.rng.choice([p for p in JIRA_PRIORITIES
                                                                if p != (raw["priority"] or {}).get("name")])}
            else:
                self.jira.add_comment(number, f"Reproduced on build {self.rng.randint(100, 999)}; fix in review.",
                                      "Dev One")


def build(url: str, links: int) -> World:
    mapping = load_mapping(MAPPING)
    policy = load_policy(POLICY)
    scrub = Scrubber.from_policy(policy.redaction, {})
    clock = Clock()
    zendesk, jira = MemoryZendesk(clock, links), MemoryJira(clock, mapping)
    check_base_issue(mapping, zendesk, jira, scrub)
    store = Store.open(url)
    insert_links(store, mapping, jira, links)
    store.set_cursor(zendesk.name, mapping.name, zendesk.mark())
    store.set_cursor(jira.name, mapping.name, jira.mark())
    engine = Engine(store, [Flow(mapping, zendesk, jira, scrub)])  # type: ignore[arg-type]
    return World(store, engine, zendesk, jira, random.Random(SEED), links)


@dataclass
class Run:
    changes: int = 0
    passes: int = 0
    wall: float = 0.0
    cpu: float = 0.0
    field_writes: int = 0
    comments: int = 0
    noop: int = 0
    conflicts: int = 0
    failures: int = 0

    @property
    def per_second(self) -> float:
        return self.changes / self.wall if self.wall else 0.0

    @property
    def per_cpu_second(self) -> float:
        return self.changes / self.cpu if self.cpu else 0.0


def sync(world: World, changes: int, batch: int, profiler: Any = None) -> Run:
    """Warm up with one pass, then run passes until `changes` changed items were processed."""
    world.change(batch)
    world.engine.sync_once()
    run = Run()
    while run.changes < changes:
        world.change(min(batch, changes - run.changes))
        world.zendesk.writes, world.jira.writes = Writes(), Writes()
        if profiler is not None:
            profiler.start()
        wall, cpu = time.perf_counter(), time.process_time()
        stats = world.engine.sync_once()
        run.wall += time.perf_counter() - wall
        run.cpu += time.process_time() - cpu
        if profiler is not None:
            profiler.stop()
        run.passes += 1
        run.changes += stats.items_seen
        run.field_writes += sum(stats.fields_pushed.values())
        run.comments += sum(stats.comments_mirrored.values())
        run.noop += stats.items_seen - len(world.zendesk.writes.items) - len(world.jira.writes.items)
        run.conflicts += len(stats.conflicts)
        run.failures += len(stats.failures) + len(stats.halts)
    return run


# -- the three measurements --------------------------------------------------------------------------


def throughput(url: str, links: int, changes: int, batch: int, profile: bool = False) -> Run:
    world = build(url, links)
    try:
        profiler = None
        if profile:
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.0005)
        run = sync(world, changes, batch, profiler)
        if profiler is not None:
            print(profiler.output_text(unicode=True, color=False, show_all=False))
        return run
    finally:
        world.store.close()


def high_water_mb() -> float:
    """This process's peak RSS (VmHWM), in MiB. Not ru_maxrss: Linux carries that across exec from
    the parent that forked us, so the child would report the parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return common.peak_rss_mb()


def deep_mb(*roots: Any) -> float:
    """The memory of plain JSON-like data (dicts, lists, strings, numbers), each object once, in MiB."""
    seen: set[int] = set()
    total, todo = 0, list(roots)
    while todo:
        obj = todo.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        if isinstance(obj, dict):
            todo.extend(obj.keys())
            todo.extend(obj.values())
        elif isinstance(obj, list | tuple | set):
            todo.extend(obj)
    return total / 2**20


def rss_child(links: int, changes: int, batch: int) -> None:
    """The RSS subprocess: a store with `links` links, syncing changes on them; prints JSON."""
    os.sched_setaffinity(0, {0})
    configure("json", "WARNING")
    before = high_water_mb()
    with tempfile.TemporaryDirectory(prefix="tb-bench-core-") as tmp:
        started = time.perf_counter()
        world = build(f"sqlite:///{tmp}/store.db", links)
        setup = time.perf_counter() - started
        after_setup = high_water_mb()
        run = sync(world, changes, batch)
        count = world.store.count_links()
        peak = high_water_mb()  # before the walk below, which takes memory of its own
        # The stand-ins for the remote trackers keep every item they changed in this process; a real
        # bridge holds none of it. Counted apart, so the bridge's own figure can be told.
        trackers = deep_mb(world.zendesk.changed, world.jira.changed)
        world.store.close()
    print(json.dumps({"links": count, "rss_start_mb": before, "rss_after_setup_mb": after_setup,
                      "rss_peak_mb": peak, "trackers_mb": trackers, "setup_s": setup,
                      "changes": run.changes, "per_second": run.per_second}))


def measure_rss(links: int, changes: int, batch: int) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, "--rss-child", str(links), "--changes", str(changes),
                          "--batch", str(batch)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@contextmanager
def sqlite_store() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="tb-bench-core-") as tmp:
        yield f"sqlite:///{tmp}/store.db"


def describe(run: Run) -> str:
    return (f"{run.per_second:,.0f}/s wall, {run.per_cpu_second:,.0f}/s CPU "
            f"({run.changes:,} changes in {run.passes} passes, {run.wall:.2f} s wall, {run.cpu:.2f} s CPU)")


def main() -> int:
    cli = common.parser(__doc__)
    cli.add_argument("--changes", type=int, help="changed items to sync per store (default 20,000; quick 800)")
    cli.add_argument("--links", type=int, help="linked pairs for the throughput runs (default 20,000; quick 1,000)")
    cli.add_argument("--rss-links", type=int, help="links in the RSS run (default 100,000; quick 10,000)")
    cli.add_argument("--batch", type=int, help="changes made between two passes (default 500; quick 200)")
    cli.add_argument("--no-pg", action="store_true", help="skip PostgreSQL")
    cli.add_argument("--only", choices=("sqlite", "pg", "rss"), help="run one measurement")
    cli.add_argument("--repeat", type=int, help="throughput runs per store, the median reported (default 3; quick "
                     "and --profile 1)")
    cli.add_argument("--profile", action="store_true", help="print a pyinstrument profile of the timed passes")
    cli.add_argument("--rss-child", type=int, help=__import__("argparse").SUPPRESS)
    args = cli.parse_args()
    changes = args.changes or (800 if args.quick else 20_000)
    args.batch = args.batch or (200 if args.quick else 500)
    if args.rss_child is not None:
        rss_child(args.rss_child, changes, args.batch)
        return 0
    links = args.links or (1_000 if args.quick else 20_000)
    rss_links = args.rss_links or (10_000 if args.quick else 100_000)
    os.sched_setaffinity(0, {0})  # one core: the figure is per core
    # As the service logs by default: JSON lines at INFO, here to a sink (writing them to a terminal
    # would measure the terminal). Every item_synced line is rendered, as in production.
    configure("json", "INFO", stream=open(os.devnull, "w"))  # noqa: SIM115 (lives as long as the process)
    structlog.get_logger("bench").info("bench.core.start")

    result = common.Result(name="core", title="Core throughput and peak RSS (no HTTP)",
                           command=common.command_line(), quick=args.quick)
    repeat = args.repeat or (1 if args.quick or args.profile else 3)
    stores: dict[str, Callable[[], AbstractContextManager[str]]] = {}
    if args.only in (None, "sqlite"):
        stores["SQLite"] = sqlite_store
    if args.only in (None, "pg"):
        from tests.pg import fresh_schema, pg_unreachable

        reason = "--no-pg" if args.no_pg else pg_unreachable()
        if reason:
            result.notes.append(f"PostgreSQL skipped: {reason}")
        else:
            stores["PostgreSQL"] = fresh_schema
    rows = []
    for store, fresh in stores.items():
        # Each run on a fresh store; the median run is the figure (the VM's neighbours move single runs).
        runs = []
        for _ in range(repeat):
            with fresh() as url:
                runs.append(throughput(url, links, changes, args.batch, args.profile))
        run = sorted(runs, key=lambda r: r.per_second)[len(runs) // 2]
        print(f"{store}: {describe(run)}" + (f" (the median of {len(runs)} runs)" if len(runs) > 1 else ""))
        result.figures[f"{store}: changes/s (wall, one core)"] = round(run.per_second)
        result.figures[f"{store}: changes/s (process CPU)"] = round(run.per_cpu_second)
        if len(runs) > 1:
            result.figures[f"{store}: each run's changes/s (wall)"] = " / ".join(f"{r.per_second:,.0f}" for r in runs)
        rows += [{"store": store, "run": n, "changes": r.changes, "passes": r.passes, "wall_s": round(r.wall, 2),
                  "cpu_s": round(r.cpu, 2), "changes_per_s": round(r.per_second),
                  "field_writes": r.field_writes, "comments_mirrored": r.comments, "no_op_items": r.noop,
                  "conflicts": r.conflicts, "failures": r.failures} for n, r in enumerate(runs, 1)]
        result.targets.append(common.Target(f"{store} changes/s on one core (median of {len(runs)})",
                                            round(run.per_second), ">=", 2000, "/s"))
    if rows:
        result.tables["throughput"] = rows
    if args.only in (None, "rss"):
        rss = measure_rss(rss_links, changes, args.batch)
        result.figures["RSS run: links in the store"] = rss["links"]
        result.figures["RSS run: setup (bulk insert) s"] = round(rss["setup_s"], 1)
        result.figures["RSS run: RSS after imports (MB)"] = round(rss["rss_start_mb"], 1)
        result.figures["RSS run: RSS after setup (MB)"] = round(rss["rss_after_setup_mb"], 1)
        result.figures["RSS run: peak RSS while syncing (MB)"] = round(rss["rss_peak_mb"], 1)
        result.figures["RSS run: changes synced (changes/s)"] = f"{rss['changes']:,} ({rss['per_second']:,.0f}/s)"
        result.figures["RSS run: the in-memory trackers' items (MB)"] = round(rss["trackers_mb"], 1)
        bridge = rss["rss_peak_mb"] - rss["trackers_mb"]
        result.figures["RSS run: peak RSS less the trackers' items (MB)"] = round(bridge, 1)
        result.targets.append(common.Target(f"peak RSS with {rss['links']:,} links (the trackers' items apart)",
                                            round(bridge, 1), "<", 200, " MB"))
        result.notes.append("The RSS target is the bridge's: the peak RSS less what the in-memory stand-ins for "
                            "the trackers hold (every item they changed, as JSON; a real tracker keeps it on its "
                            "own servers), measured by walking their data after the run. Both figures are shown.")
    result.notes.append(
        f"{links:,} linked pairs per throughput run; {changes:,} counted changes after one warm-up pass, "
        f"{args.batch} tracker-side changes between passes (mix: "
        + ", ".join(f"{int(share * 100)}% {kind.replace('_', ' ')}" for kind, share in MIX)
        + "); echoes of the engine's own writes come back and count as no-op changes.")
    result.notes.append("Process pinned to CPU 0; wall time is the figure. On PostgreSQL the server's CPU is "
                        "outside the process CPU figure (it runs on the other core).")
    result.notes.append("Setup (not timed) inserts links with SQLAlchemy Core executemany on the store's engine and "
                        "tables, 1,000 rows a batch, then (PostgreSQL) runs ANALYZE as autovacuum would; snapshots "
                        "and issues are generated and checked against the real decide_create on sample tickets.")
    return common.emit(result, args.json)


if __name__ == "__main__":
    sys.exit(main())
