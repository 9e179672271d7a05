"""Store behaviour, run on SQLite and PostgreSQL (see conftest.py)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.exc import IntegrityError

from ticketbridge.logs import register_secret
from ticketbridge.sync import store as store_mod
from ticketbridge.sync.store import (
    ItemCommit,
    LinkConflict,
    Store,
    TicketEvent,
    head_revision,
    links_t,
    metadata,
    upgrade,
)

TABLES = {"links", "intents", "comment_links", "cursors", "failures", "audit", "ticket_events", "sla_tickets",
          "sla_events"}


def commit(**overrides: Any) -> ItemCommit:
    values: dict[str, Any] = {
        "flow": "zendesk-jira",
        "left_id": "123",
        "left_key": "#123",
        "right_id": "10050",
        "right_key": "ENG-7",
        "snapshot": {"status": "open", "priority": "high"},
        "left_version": "v1",
        "right_version": "r1",
    }
    values.update(overrides)
    return ItemCommit(**values)


def engine_for(url: str) -> sa.Engine:
    return sa.create_engine(url)


# -- schema -----------------------------------------------------------------------------------


def test_open_creates_all_tables_at_head_and_reopen_is_harmless(db_url: str) -> None:
    first = Store.open(db_url)
    first.set_cursor("zendesk", "zendesk-jira", "100")
    first.close()
    second = Store.open(db_url)  # already at head: nothing to do, nothing lost
    assert second.cursor("zendesk", "zendesk-jira") == "100"
    second.close()

    engine = engine_for(db_url)
    try:
        assert set(sa.inspect(engine).get_table_names()) >= TABLES
        with engine.connect() as conn:
            versions = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all()
        assert versions == [head_revision()]
    finally:
        engine.dispose()


def test_upgrade_function_creates_schema(db_url: str) -> None:
    upgrade(db_url)
    engine = engine_for(db_url)
    try:
        assert set(sa.inspect(engine).get_table_names()) >= TABLES
    finally:
        engine.dispose()


def test_migrations_match_the_tables_the_code_uses(store: Store, db_url: str) -> None:
    engine = engine_for(db_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
    finally:
        engine.dispose()
    assert diff == []


# -- links ------------------------------------------------------------------------------------


def test_commit_item_creates_then_updates_the_link(store: Store) -> None:
    created = store.commit_item(commit())
    assert created.snapshot == {"status": "open", "priority": "high"}
    assert (created.left_version, created.right_version) == ("v1", "r1")

    snapshot = {"status": "solved", "labels": ["a", "b"], "n": 3, "none": None, "nested": {"x": 1.5}}
    updated = store.commit_item(
        commit(right_key="OPS-7", snapshot=snapshot, left_version="v2", right_version="r2")
    )
    assert updated.id == created.id
    assert updated.right_key == "OPS-7"  # keys change when an issue moves; the link follows
    assert updated.snapshot == snapshot
    assert (updated.left_version, updated.right_version) == ("v2", "r2")
    assert store.count_links() == 1
    assert store.link_for("zendesk-jira", "left", "123") == updated


def test_snapshot_tuples_come_back_as_lists(store: Store) -> None:
    link = store.commit_item(commit(snapshot={"labels": ("a", "b")}))
    assert link.snapshot == {"labels": ["a", "b"]}


@pytest.mark.parametrize("versions", [("v1", "r1"), (None, "r2"), ("v3", None), (None, None)])
def test_commit_item_returns_the_link_as_stored(store: Store, versions: tuple[str | None, str | None]) -> None:
    # commit_item builds the returned Link from what it wrote, without reading it back.
    snapshot = {"labels": ("a", "b"), "n": 3, "nested": {"x": (1, None)}, "none": None}
    first = store.commit_item(commit(snapshot=snapshot, left_version=versions[0], right_version=versions[1]))
    assert store.link_between("zendesk-jira", "123", "10050") == first
    again = store.commit_item(commit(right_key="OPS-1", snapshot={"t": ("x",)}, left_version=versions[1],
                                     right_version=versions[0]))
    assert store.link_between("zendesk-jira", "123", "10050") == again
    assert again.snapshot == {"t": ["x"]} and again.id == first.id


def test_sqlite_syncs_the_log_at_checkpoints_not_every_commit(tmp_path: Any) -> None:
    with Store.open(f"sqlite:///{tmp_path / 'store.db'}") as store, store.sa_engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL


def test_a_sqlite_writer_that_waits_too_long_gets_sqlalchemy_operational_error(tmp_path: Any,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_mod, "SQLITE_BUSY_TIMEOUT_MS", 50)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    # `first` holds the write lock (BEGIN IMMEDIATE); the second writer gives up after the timeout.
    with (Store.open(url) as first, Store.open(url) as second, first.sa_engine.begin(),
          pytest.raises(sa.exc.OperationalError, match="locked")):
        second.set_cursor("zendesk", "flow", "1")


def test_link_for_finds_by_either_side(store: Store) -> None:
    link = store.commit_item(commit())
    assert store.link_for("zendesk-jira", "left", "123") == link
    assert store.link_for("zendesk-jira", "right", "10050") == link
    assert store.link_for("zendesk-jira", "left", "10050") is None
    assert store.link_for("other-flow", "left", "123") is None
    assert (link.id_on("left"), link.key_on("right"), link.version_on("left")) == ("123", "ENG-7", "v1")
    with pytest.raises(ValueError):
        store.link_for("zendesk-jira", "middle", "123")


def test_commit_by_right_id_updates_the_same_link(store: Store) -> None:
    link = store.commit_item(commit())
    again = store.commit_item(commit(snapshot={"status": "pending"}))
    assert again.id == link.id
    assert store.link_for("zendesk-jira", "right", "10050") == again


def test_relinking_an_item_to_another_is_rejected(store: Store) -> None:
    store.commit_item(commit())
    with pytest.raises(LinkConflict):  # same right item, different left item
        store.commit_item(commit(left_id="999", left_key="#999"))
    with pytest.raises(LinkConflict):  # same left item, different right item
        store.commit_item(commit(right_id="20000", right_key="ENG-8"))
    assert store.count_links() == 1
    # The same ids in another flow are a different link.
    store.commit_item(commit(flow="zendesk-github"))
    assert store.count_links() == 2
    assert store.count_links("zendesk-github") == 1


def test_database_enforces_unique_ids_per_flow(store: Store, db_url: str) -> None:
    store.commit_item(commit())
    now = datetime.now(UTC)
    row = {
        "flow": "zendesk-jira",
        "left_id": "other",
        "left_key": "#o",
        "right_id": "10050",
        "right_key": "ENG-7",
        "snapshot": {},
        "created_at": now,
        "updated_at": now,
    }
    engine = engine_for(db_url)
    try:
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(sa.insert(links_t).values(**row))
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(sa.insert(links_t).values(**{**row, "left_id": "123", "right_id": "other"}))
    finally:
        engine.dispose()


def test_links_iterates_all_pages_and_filters_by_flow(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_mod, "_LINK_PAGE", 2)
    for i in range(5):
        store.commit_item(commit(left_id=f"L{i}", right_id=f"R{i}"))
    store.commit_item(commit(flow="zendesk-github", left_id="L0", right_id="R0"))
    assert [link.left_id for link in store.links("zendesk-jira")] == [f"L{i}" for i in range(5)]
    assert len(list(store.links())) == 6


def test_record_versions_leaves_unknown_side_alone(store: Store) -> None:
    link = store.commit_item(commit())
    store.record_versions(link.id, "v9", None)
    again = store.link_for("zendesk-jira", "left", "123")
    assert again is not None
    assert (again.left_version, again.right_version) == ("v9", "r1")
    assert again.snapshot == link.snapshot


def test_non_json_snapshot_is_refused_before_writing(store: Store) -> None:
    with pytest.raises(TypeError, match="ISO"):
        store.commit_item(commit(snapshot={"due": datetime.now(UTC)}))
    with pytest.raises(TypeError):
        store.commit_item(commit(snapshot={"x": float("nan")}))
    assert store.count_links() == 0


# -- the one transaction ----------------------------------------------------------------------


def _prepare_intent_and_failure(store: Store) -> None:
    assert store.record_intent("zendesk-jira", "left", "123", "#123") is False
    store.record_failure("zendesk-jira", "jira", "10050", "ENG-7", "error", "http_400", "bad field")


def _full_commit(**overrides: Any) -> ItemCommit:
    return commit(
        comment_links=[("zendesk:1", "jira:2")],
        audit=[("create", "right", {"key": "ENG-7"})],
        resolve_intent=("left", "123"),
        clear_failures=[("jira", "10050")],
        **overrides,
    )


def _assert_nothing_committed(store: Store) -> None:
    assert store.count_links() == 0
    assert store.has_intent("zendesk-jira", "left", "123")
    assert store.mirrored("zendesk-jira", "zendesk:1") is None
    assert store.audit() == []
    assert store.open_failure("zendesk-jira", "jira", "10050") is not None


def test_commit_item_is_atomic_when_a_step_fails(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    _prepare_intent_and_failure(store)

    def boom(*_args: Any) -> None:
        raise RuntimeError("crash after the link insert")

    monkeypatch.setattr(Store, "_write_item_rows", boom)
    with pytest.raises(RuntimeError):
        store.commit_item(_full_commit())
    _assert_nothing_committed(store)


def test_commit_item_is_atomic_when_the_database_refuses(store: Store) -> None:
    _prepare_intent_and_failure(store)
    bad = _full_commit()
    bad.comment_links.append(("zendesk:3", None))  # type: ignore[arg-type]  # NOT NULL violation
    with pytest.raises(IntegrityError):
        store.commit_item(bad)
    _assert_nothing_committed(store)


def test_commit_item_applies_everything_together(store: Store) -> None:
    _prepare_intent_and_failure(store)
    link = store.commit_item(_full_commit())
    assert not store.has_intent("zendesk-jira", "left", "123")
    assert store.pending_intents() == []
    assert store.mirrored("zendesk-jira", "zendesk:1") == "jira:2"
    [entry] = store.audit()
    assert (entry.link_id, entry.kind, entry.side, entry.detail) == (
        link.id,
        "create",
        "right",
        {"key": "ENG-7"},
    )
    assert store.open_failure("zendesk-jira", "jira", "10050") is None
    assert [f.state for f in store.failures(state=None)] == ["resolved"]


def test_commit_item_recovers_when_another_process_inserted_the_link(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another worker committed the link after our lookup found nothing; our INSERT then hits the
    # unique constraint. commit_item must roll back and re-apply as an update, exactly once.
    store.commit_item(commit(snapshot={"status": "open"}))
    real = Store._upsert_link
    calls: list[int] = []

    def lookup_missed_once(self: Store, conn: sa.Connection, c: ItemCommit, now: datetime) -> int:
        calls.append(1)
        if len(calls) == 1:  # what the losing process does after its stale lookup
            conn.execute(
                sa.insert(links_t).values(
                    flow=c.flow,
                    left_id=c.left_id,
                    left_key=c.left_key,
                    right_id=c.right_id,
                    right_key=c.right_key,
                    snapshot=c.snapshot,
                    created_at=now,
                    updated_at=now,
                )
            )
        return real(self, conn, c, now)

    monkeypatch.setattr(Store, "_upsert_link", lookup_missed_once)
    link = store.commit_item(commit(snapshot={"status": "solved"}, audit=[("update", "right", {})]))
    assert len(calls) == 2
    assert link.snapshot == {"status": "solved"}
    assert store.count_links() == 1
    assert len(store.audit()) == 1  # the failed attempt left nothing behind


def test_concurrent_commits_of_the_same_new_item_make_one_link(db_url: str) -> None:
    # Two workers push the same new item at once. On PostgreSQL both may miss in the lookup and one
    # INSERT fails on the unique constraint; on SQLite BEGIN IMMEDIATE serializes them. Either way:
    # no error, one link per item, every audit row kept.
    stores = [Store.open(db_url), Store.open(db_url)]
    items = 15
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def worker(s: Store) -> None:
        try:
            for i in range(items):
                barrier.wait()
                s.commit_item(commit(left_id=f"L{i}", right_id=f"R{i}", audit=[("update", "right", {})]))
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=worker, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == []
        assert stores[0].count_links() == items
        assert stores[0].audit_counts() == {("update", "right"): 2 * items}
    finally:
        for s in stores:
            s.close()


# -- intents ----------------------------------------------------------------------------------


def test_record_intent_reports_a_previous_attempt(store: Store) -> None:
    assert store.record_intent("zendesk-jira", "left", "123", "#123") is False
    assert store.record_intent("zendesk-jira", "left", "123", "#123") is True
    assert store.has_intent("zendesk-jira", "left", "123")
    assert not store.has_intent("zendesk-jira", "right", "123")
    store.record_intent("zendesk-github", "right", "55", "#55")
    assert store.pending_intents() == [
        ("zendesk-jira", "left", "123", "#123"),
        ("zendesk-github", "right", "55", "#55"),
    ]
    assert store.pending_intents("zendesk-github") == [("zendesk-github", "right", "55", "#55")]
    store.commit_item(commit(resolve_intent=("left", "123")))
    assert not store.has_intent("zendesk-jira", "left", "123")
    assert store.pending_intents("zendesk-jira") == []


# -- comments ---------------------------------------------------------------------------------


def test_comment_mirrors_are_recorded_once_with_both_refs(store: Store) -> None:
    link = store.commit_item(commit(comment_links=[("zendesk:9000000123", "jira:10050")]))
    # Same pair again (a replayed event) plus a new one going the other way: harmless.
    store.commit_item(
        commit(comment_links=[("zendesk:9000000123", "jira:10050"), ("jira:10051", "zendesk:77")])
    )
    assert store.mirrored("zendesk-jira", "zendesk:9000000123") == "jira:10050"
    assert store.mirrored("zendesk-jira", "jira:10050") is None  # a mirror is not itself a source
    assert store.mirrored("other-flow", "zendesk:9000000123") is None
    assert store.mirrored_refs("zendesk-jira", link.id) == {
        "zendesk:9000000123",
        "jira:10050",
        "jira:10051",
        "zendesk:77",
    }
    assert store.mirrored_refs("zendesk-jira", link.id + 1) == set()


# -- cursors ----------------------------------------------------------------------------------


def test_cursors_round_trip_per_tracker_and_scope(store: Store) -> None:
    assert store.cursor("zendesk", "zendesk-jira") is None
    store.set_cursor("zendesk", "zendesk-jira", "1700000000")
    store.set_cursor("zendesk", "zendesk-github", "5")
    store.set_cursor("jira", "zendesk-jira", "2025-01-01T00:00:00Z")
    store.set_cursor("zendesk", "zendesk-jira", "1700000100")
    assert store.cursor("zendesk", "zendesk-jira") == "1700000100"
    assert store.cursor("zendesk", "zendesk-github") == "5"
    assert store.cursor("jira", "zendesk-jira") == "2025-01-01T00:00:00Z"
    assert store.cursor("jira", "zendesk-github") is None


# -- failures ---------------------------------------------------------------------------------


def test_failure_recorded_twice_is_one_row_with_two_attempts(store: Store) -> None:
    first = store.record_failure("zendesk-jira", "jira", "10050", "ENG-7", "error", "http_400", "bad")
    second = store.record_failure(
        "zendesk-jira", "jira", "10050", "ENG-7", "halt", "unmapped_value", "no 'x'"
    )
    assert second.id == first.id
    assert (second.attempts, second.kind, second.reason, second.message) == (
        2,
        "halt",
        "unmapped_value",
        "no 'x'",
    )
    assert second.created_at == first.created_at
    assert second.created_at.tzinfo is not None
    assert len(store.failures(state=None)) == 1
    assert store.failure(first.id) == second
    assert store.failure(first.id + 1000) is None
    assert store.open_failure("zendesk-jira", "jira", "10050") == second


def test_failures_resolve_drop_and_filter(store: Store) -> None:
    a = store.record_failure("zendesk-jira", "jira", "1", "ENG-1", "error", "http_400", "a")
    b = store.record_failure("zendesk-jira", "zendesk", "2", "#2", "error", "http_422", "b")
    c = store.record_failure("zendesk-github", "github", "3", "#3", "halt", "unmapped_value", "c")
    store.resolve_failure(a.id)
    store.drop_failure(b.id)
    assert [f.id for f in store.failures()] == [c.id]
    assert [f.id for f in store.failures("resolved")] == [a.id]
    assert [f.id for f in store.failures("dropped")] == [b.id]
    assert [f.id for f in store.failures(None)] == [a.id, b.id, c.id]
    assert [f.id for f in store.failures(None, flow="zendesk-jira")] == [a.id, b.id]
    assert store.failures(flow="zendesk-jira") == []
    assert store.open_failure("zendesk-jira", "jira", "1") is None
    # Failing again reopens the same row.
    again = store.record_failure("zendesk-jira", "jira", "1", "ENG-1", "error", "http_400", "a")
    assert (again.id, again.state, again.attempts) == (a.id, "open", 2)


# -- audit ------------------------------------------------------------------------------------


def test_audit_counts_filters_and_ids(store: Store) -> None:
    assert store.last_audit_id() == 0
    assert store.audit_counts() == {}
    link = store.commit_item(
        commit(
            audit=[("create", "right", {"key": "ENG-7"}), ("comment", "right", {}), ("comment", "left", {})]
        )
    )
    mark = store.last_audit_id()
    store.add_audit("zendesk-jira", "conflict", None, {"field": "priority"}, link_id=link.id)
    store.add_audit("zendesk-github", "comment", "right", {})

    assert store.audit_counts() == {
        ("create", "right"): 1,
        ("comment", "right"): 2,
        ("comment", "left"): 1,
        ("conflict", None): 1,
    }
    assert store.audit_counts(since_id=mark) == {("conflict", None): 1, ("comment", "right"): 1}
    assert store.last_audit_id() > mark

    assert [e.kind for e in store.audit(flow="zendesk-jira", kinds=["conflict", "create"])] == [
        "create",
        "conflict",
    ]
    entries = store.audit()
    assert all(e.ts.tzinfo is not None and e.ts.utcoffset() == timedelta(0) for e in entries)
    assert store.audit(since=entries[0].ts - timedelta(seconds=1)) == entries
    assert store.audit(since=datetime.now(UTC) + timedelta(hours=1)) == []


# -- misc -------------------------------------------------------------------------------------


def test_safe_url_hides_the_password() -> None:
    url = "postgresql+psycopg://sync:s3cret@db.example:5432/ticketbridge"
    engine = sa.create_engine(url)  # never connects
    s = Store(url, engine)
    try:
        assert "s3cret" not in s.safe_url
        assert s.safe_url == "postgresql+psycopg://sync:***@db.example:5432/ticketbridge"
        assert "s3cret" not in repr(s)
        assert s.url == url
    finally:
        s.close()


# -- SLA history, timers and events ---------------------------------------------------------------

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


def test_observations_append_history_once_in_source_order(store: Store) -> None:
    events = [TicketEvent(ref="comment:2", at=T0 + timedelta(minutes=5), kind="comment", public=True, by_agent=True),
              TicketEvent(ref="created", at=T0, kind="created", value="new"),
              TicketEvent(ref="severity:x", at=T0, kind="severity", value={"level": "sev2", "flags": []})]
    assert store.record_observation("zendesk", "7", "#7", {"status": "open"}, events) == 3
    # The same snapshot again (a replay after a crash) records nothing new but keeps the values.
    assert store.record_observation("zendesk", "7", "#7", {"status": "pending"}, events[:2]) == 0
    history = store.ticket_events("zendesk", "7")
    assert [e.ref for e in history] == ["created", "severity:x", "comment:2"]
    assert history[1].value == {"level": "sev2", "flags": []} and history[2].by_agent is True
    assert history[0].at == T0 and history[0].at.tzinfo is not None
    ticket = store.sla_ticket("zendesk", "7")
    assert ticket is not None and ticket.observed == {"status": "pending"} and ticket.next_fire_at is None
    assert store.ticket_events("zendesk", "8") == []


def test_timers_and_written_values(store: Store) -> None:
    for item in ("1", "2"):
        store.record_observation("zendesk", item, f"#{item}", {}, [])
    store.save_sla("zendesk", "1", {"state": "running"}, T0 + timedelta(minutes=10))
    store.save_sla("zendesk", "2", {"state": "running"}, T0 + timedelta(minutes=5))
    assert store.next_sla_fire_at() == T0 + timedelta(minutes=5)
    assert store.due_sla_tickets(T0 + timedelta(minutes=5)) == [("zendesk", "2")]
    assert store.due_sla_tickets(T0 + timedelta(hours=1)) == [("zendesk", "2"), ("zendesk", "1")]
    store.record_sla_written("zendesk", "1", "jira:10001", {"customfield_10044": "2026-11-23T08:15:00Z"})
    store.record_sla_written("zendesk", "1", "jira:10001", {"customfield_10046": "running"})
    ticket = store.sla_ticket("zendesk", "1")
    assert ticket is not None and ticket.summary == {"state": "running"}
    assert ticket.written == {"jira:10001": {"customfield_10044": "2026-11-23T08:15:00Z",
                                             "customfield_10046": "running"}}


def test_an_sla_event_is_recorded_exactly_once(store: Store) -> None:
    args = ("zendesk", "7", "first_response", 1, "breach", "due", T0, T0 + timedelta(seconds=3), {"severity": "sev1"})
    assert store.record_sla_event(*args) is True
    assert store.record_sla_event(*args) is False
    assert store.record_sla_event("zendesk", "7", "first_response", 2, "breach", "due", T0, T0, {}) is True
    events = store.sla_events("zendesk", "7")
    assert [(e.cycle, e.kind, e.nominal_at) for e in events] == [(2, "breach", T0), (1, "breach", T0)]
    assert store.sla_events(since=T0 + timedelta(seconds=1))[0].detail == {"severity": "sev1"}


def test_a_failure_message_is_stored_without_the_secrets_it_echoes(store: Store) -> None:
    register_secret("tb-echoed-token-42")
    failure = store.record_failure("f", "jira", "1", "ENG-1", "error", "http_500",
                                   "500: {'headers': {'Authorization': 'Bearer tb-echoed-token-42'}}")
    assert "tb-echoed-token-42" not in failure.message and "***" in failure.message
