"""Many-to-many links: roles and the uniqueness rules, on SQLite and PostgreSQL (see conftest.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.exc import IntegrityError

from ticketbridge.sync import store as store_mod
from ticketbridge.sync.store import FOLLOWER, PRIMARY, ItemCommit, LinkConflict, Store, links_t

FLOW = "zendesk-github"


def commit(left: str, right: str, role: str | None = None, **overrides: Any) -> ItemCommit:
    values: dict[str, Any] = {"flow": FLOW, "left_id": left, "left_key": f"#{left}", "right_id": right,
                              "right_key": right, "snapshot": {"status": ["open", "open"]}, "role": role}
    values.update(overrides)
    return ItemCommit(**values)


def test_an_issue_links_one_primary_ticket_and_many_followers(store: Store) -> None:
    primary = store.commit_item(commit("1", "acme/app#12"))
    first = store.commit_item(commit("2", "acme/app#12", FOLLOWER))
    second = store.commit_item(commit("3", "acme/app#12", FOLLOWER))
    assert primary.role == PRIMARY and primary.primary
    assert (first.role, second.role) == (FOLLOWER, FOLLOWER)
    assert [link.left_id for link in store.links_for(FLOW, "right", "acme/app#12")] == ["1", "2", "3"]
    assert store.link_for(FLOW, "right", "acme/app#12") == primary
    # A follower ticket has no primary link: link_for keeps meaning "the counterpart".
    assert store.link_for(FLOW, "left", "2") is None
    assert store.links_for(FLOW, "left", "2") == [first]
    assert store.count_links(FLOW) == 3


def test_a_ticket_may_follow_several_issues_besides_its_primary(store: Store) -> None:
    store.commit_item(commit("1", "acme/app#1", FOLLOWER))
    store.commit_item(commit("1", "acme/app#2"))
    store.commit_item(commit("1", "acme/app#3", FOLLOWER))
    links = store.links_for(FLOW, "left", "1")
    assert [(link.right_id, link.role) for link in links] == [
        ("acme/app#2", PRIMARY), ("acme/app#1", FOLLOWER), ("acme/app#3", FOLLOWER)]


def test_second_primary_on_either_side_is_a_link_conflict(store: Store) -> None:
    store.commit_item(commit("1", "acme/app#12"))
    with pytest.raises(LinkConflict, match="right acme/app#12 is linked to left 1"):
        store.commit_item(commit("2", "acme/app#12", PRIMARY))
    with pytest.raises(LinkConflict, match="left 1 is linked to right acme/app#12"):
        store.commit_item(commit("1", "acme/app#13"))
    assert store.count_links(FLOW) == 1


def test_recommitting_a_pair_updates_it_and_keeps_its_role(store: Store) -> None:
    follower = store.commit_item(commit("2", "acme/app#12", FOLLOWER))
    again = store.commit_item(commit("2", "acme/app#12", snapshot={"status": ["solved", "closed"]}))
    assert again.id == follower.id and again.role == FOLLOWER
    assert again.snapshot == {"status": ["solved", "closed"]}
    assert store.link_between(FLOW, "2", "acme/app#12") == again
    with pytest.raises(ValueError, match="role"):
        store.commit_item(commit("2", "acme/app#12", "owner"))


def test_one_comment_mirrors_onto_every_linked_ticket(store: Store) -> None:
    a = store.commit_item(commit("1", "acme/app#12", comment_links=[("github:55", "zendesk:901")]))
    b = store.commit_item(commit("2", "acme/app#12", FOLLOWER, comment_links=[("github:55", "zendesk:902")]))
    assert store.mirrored_refs(FLOW, a.id) == {"github:55", "zendesk:901"}
    assert store.mirrored_refs(FLOW, b.id) == {"github:55", "zendesk:902"}
    # Replaying a commit is harmless: the first mapping per link wins.
    store.commit_item(commit("2", "acme/app#12", comment_links=[("github:55", "zendesk:999")]))
    assert store.mirrored_refs(FLOW, b.id) == {"github:55", "zendesk:902"}


def test_an_items_links_come_with_their_comment_refs_in_one_read(store: Store) -> None:
    a = store.commit_item(commit("1", "acme/app#12", comment_links=[("github:55", "zendesk:901"),
                                                                    ("zendesk:7", "github:56")]))
    b = store.commit_item(commit("2", "acme/app#12", FOLLOWER, comment_links=[("github:55", "zendesk:902")]))
    store.commit_item(commit("3", "acme/app#14"))
    links, refs = store.links_and_refs(FLOW, "right", "acme/app#12")
    assert links == store.links_for(FLOW, "right", "acme/app#12") == [a, b]
    assert refs == {a.id: store.mirrored_refs(FLOW, a.id), b.id: store.mirrored_refs(FLOW, b.id)}
    assert refs[a.id] == {"github:55", "zendesk:901", "zendesk:7", "github:56"}
    assert store.links_and_refs(FLOW, "left", "3")[1] == {store.links_for(FLOW, "left", "3")[0].id: set()}
    assert store.links_and_refs(FLOW, "left", "4") == ([], {})
    assert store.links_for_many(FLOW, "right", ["acme/app#12", "acme/app#14", "acme/app#15"]) == {
        "acme/app#12": [a, b], "acme/app#14": store.links_for(FLOW, "right", "acme/app#14"), "acme/app#15": []}


def test_database_enforces_pair_and_primary_uniqueness(store: Store, db_url: str) -> None:
    store.commit_item(commit("1", "acme/app#12"))
    store.commit_item(commit("2", "acme/app#12", FOLLOWER))
    now = datetime.now(UTC)
    row = {"flow": FLOW, "left_id": "3", "left_key": "#3", "right_id": "acme/app#12", "right_key": "x",
           "snapshot": {}, "created_at": now, "updated_at": now}
    engine = sa.create_engine(db_url)
    try:
        with pytest.raises(IntegrityError), engine.begin() as conn:  # a second primary of the issue
            conn.execute(sa.insert(links_t).values(**row, role=PRIMARY))
        with pytest.raises(IntegrityError), engine.begin() as conn:  # the same pair twice
            conn.execute(sa.insert(links_t).values(**{**row, "left_id": "2"}, role=FOLLOWER))
        with pytest.raises(IntegrityError), engine.begin() as conn:  # a second primary of ticket 1
            conn.execute(sa.insert(links_t).values(**{**row, "left_id": "1", "right_id": "acme/app#13"},
                                                   role=PRIMARY))
        with engine.begin() as conn:  # a third follower is fine
            conn.execute(sa.insert(links_t).values(**row, role=FOLLOWER))
    finally:
        engine.dispose()


def test_upgrade_from_0002_keeps_links_and_comment_mirrors(db_url: str) -> None:
    """A store created before link roles: its links become primary, nothing is lost."""
    cfg = store_mod._alembic_config()
    engine = store_mod._create_engine(db_url)
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0002")
        now = datetime.now(UTC)
        with engine.begin() as conn:
            conn.execute(sa.text(
                "INSERT INTO links (flow, left_id, left_key, right_id, right_key, snapshot, created_at, updated_at) "
                "VALUES ('zendesk-jira', '7', '#7', '10007', 'ENG-7', '{}', :now, :now)"), {"now": now})
            link_id = conn.execute(sa.text("SELECT id FROM links")).scalar_one()
            conn.execute(sa.text(
                "INSERT INTO comment_links (link_id, flow, source_ref, target_ref, created_at) "
                "VALUES (:id, 'zendesk-jira', 'zendesk:1', 'jira:2', :now)"), {"id": link_id, "now": now})
    finally:
        engine.dispose()
    upgraded = Store.open(db_url)
    try:
        link = upgraded.link_for("zendesk-jira", "left", "7")
        assert link is not None and link.role == PRIMARY and link.right_key == "ENG-7"
        assert upgraded.mirrored_refs("zendesk-jira", link.id) == {"zendesk:1", "jira:2"}
        upgraded.commit_item(ItemCommit(flow="zendesk-jira", left_id="8", left_key="#8", right_id="10007",
                                        right_key="ENG-7", snapshot={}, role=FOLLOWER))
        assert len(upgraded.links_for("zendesk-jira", "right", "10007")) == 2
    finally:
        upgraded.close()


def test_downgrade_to_0002_keeps_primary_links_and_drops_followers(db_url: str) -> None:
    s = Store.open(db_url)
    try:
        a = s.commit_item(commit("1", "acme/app#12", comment_links=[("github:55", "zendesk:901")]))
        s.commit_item(commit("2", "acme/app#12", FOLLOWER, comment_links=[("github:55", "zendesk:902")]))
    finally:
        s.close()
    cfg = store_mod._alembic_config()
    engine = store_mod._create_engine(db_url)
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0002")
        with engine.begin() as conn:
            assert conn.execute(sa.text("SELECT left_id FROM links")).scalars().all() == ["1"]
            assert conn.execute(sa.text("SELECT link_id, target_ref FROM comment_links")).all() == [
                (a.id, "zendesk:901")]
    finally:
        engine.dispose()
    again = Store.open(db_url)  # and up again
    try:
        assert again.link_for(FLOW, "left", "1") is not None
    finally:
        again.close()


def test_a_follower_becomes_primary_only_when_nothing_clashes(store: Store) -> None:
    store.commit_item(commit("1", "acme/app#12"))
    follower = store.commit_item(commit("2", "acme/app#12", FOLLOWER))
    # The issue has a primary ticket already: the promotion is refused and nothing changes.
    with pytest.raises(LinkConflict, match="right acme/app#12 is linked to left 1"):
        store.commit_item(commit("2", "acme/app#12", PRIMARY, snapshot={"status": ["solved", "Done"]}))
    assert store.link_between(FLOW, "2", "acme/app#12") == follower
    # Without a clash it is promoted, and the returned link is the row as stored.
    alone = store.commit_item(commit("5", "acme/app#50", FOLLOWER))
    promoted = store.commit_item(commit("5", "acme/app#50", PRIMARY))
    assert promoted.id == alone.id and promoted.role == PRIMARY
    assert store.link_between(FLOW, "5", "acme/app#50") == promoted
    # And back: a primary demoted to follower keeps its id; None keeps the role as it is.
    demoted = store.commit_item(commit("5", "acme/app#50", FOLLOWER))
    kept = store.commit_item(commit("5", "acme/app#50"))
    assert (demoted.role, kept.role, kept.id) == (FOLLOWER, FOLLOWER, alone.id)
    assert store.link_between(FLOW, "5", "acme/app#50") == kept
