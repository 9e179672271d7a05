"""The escalation outbox on SQLite and PostgreSQL: one row per idempotency key, cursors committed with
the rows they produced, due rows, open pages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from ticketbridge.sync.outbox import DONE, PENDING, NewAction, Outbox
from ticketbridge.sync.store import Store, TicketEvent, metadata

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def action(key: str = "k1", **overrides: Any) -> NewAction:
    values: dict[str, Any] = {
        "key": key, "group_key": "g1", "position": 0, "rule": "sev1-incident", "step": 0, "kind": "create_issue",
        "tracker": "zendesk", "item_id": "42", "item_key": "#42", "params": {"flow": "zendesk-jira"},
        "context": {"rule": "sev1-incident", "cycle": 1}, "until": ["clock_stopped"], "due_at": T0,
    }
    values.update(overrides)
    return NewAction(**values)


def test_the_outbox_tables_come_from_the_migrations(store: Store, db_url: str) -> None:
    engine = sa.create_engine(db_url)
    try:
        assert {"escalation_actions", "escalation_pages"} <= set(sa.inspect(engine).get_table_names())
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
    finally:
        engine.dispose()
    assert diff == []


def test_the_same_key_twice_is_one_row(store: Store) -> None:
    outbox = Outbox(store)
    assert outbox.add([action("k1"), action("k2", position=1)]) == 2
    assert outbox.add([action("k1"), action("k2", position=1)]) == 0
    rows = outbox.rows()
    assert [(r.key, r.state, r.attempts) for r in rows] == [("k1", PENDING, 0), ("k2", PENDING, 0)]
    assert rows[0].params == {"flow": "zendesk-jira"} and rows[0].until == ["clock_stopped"]


def test_cursors_advance_with_the_rows_or_not_at_all(store: Store) -> None:
    outbox = Outbox(store)
    assert outbox.cursors() == (0, 0)
    outbox.add([action("k1")], ticket_cursor=7, sla_cursor=3)
    assert outbox.cursors() == (7, 3)
    # A row that cannot be stored aborts the whole transaction: the cursor stays, so the events are
    # scanned again (and plan the same keys).
    with pytest.raises(TypeError):
        outbox.add([action("k2"), action("k3", params={"when": T0})], ticket_cursor=9)
    assert outbox.cursors() == (7, 3)
    assert [r.key for r in outbox.rows()] == ["k1"]


def test_the_first_start_skips_history_recorded_before(store: Store) -> None:
    store.record_observation("zendesk", "42", "#42", {"status": "new"}, [
        TicketEvent(ref="created", at=T0, kind="created"),
        TicketEvent(ref="severity:x", at=T0, kind="severity", value={"level": "sev1", "flags": []})])
    outbox = Outbox(store)
    last = outbox.last_ids()
    assert last[0] > 0 and outbox.cursors() == (0, 0)  # reading where history ends writes nothing
    assert outbox.started_at() is None
    outbox.start_cursors_at(*last, T0)
    assert outbox.cursors() == last and outbox.ticket_events_after(last[0]) == []
    outbox.start_cursors_at(0, 0, T0 + timedelta(days=3))  # only the first start sets them
    assert outbox.cursors() == last and outbox.started_at() == T0


def test_scan_reads_events_after_the_cursor_with_their_previous_value(store: Store) -> None:
    store.record_observation("zendesk", "42", "#42", {"status": "new"}, [
        TicketEvent(ref="f1", at=T0, kind="field", field="support_level", value="L1"),
        TicketEvent(ref="f2", at=T0 + timedelta(minutes=5), kind="field", field="support_level", value="L2"),
        TicketEvent(ref="f3", at=T0 + timedelta(minutes=5), kind="field", field="browser", value="Firefox")])
    outbox = Outbox(store)
    events = outbox.ticket_events_after(0)
    assert [e.ref for _, _, e in events] == ["f1", "f2", "f3"]
    assert outbox.previous_value("zendesk", "42", events[1][2]) == "L1"
    assert outbox.previous_value("zendesk", "42", events[0][2]) is None
    assert outbox.previous_value("zendesk", "42", events[2][2]) is None  # another field
    assert [e.ref for _, _, e in outbox.ticket_events_after(events[0][2].seq)] == ["f2", "f3"]


def test_due_rows_and_the_next_wake(store: Store) -> None:
    outbox = Outbox(store)
    outbox.add([action("now"), action("later", due_at=T0 + timedelta(minutes=10))])
    assert [r.key for r in outbox.due(T0)] == ["now"]
    assert outbox.next_due() == T0
    row = outbox.due(T0)[0]
    outbox.update(row.id, state=DONE, attempts=1, result={"key": "ENG-1"})
    done = outbox.get(row.id)
    assert done is not None and done.state == DONE and done.result == {"key": "ENG-1"}
    assert outbox.next_due() == T0 + timedelta(minutes=10)
    assert [r.key for r in outbox.due(T0 + timedelta(minutes=10))] == ["later"]


def test_a_page_stays_open_until_closed(store: Store) -> None:
    outbox = Outbox(store)
    outbox.open_page("zd-42-update-c1", "zendesk", "42", "k1", "periodic_update", 1,
                     ["clock_stopped", "ticket_solved"], T0)
    outbox.open_page("zd-42-update-c1", "zendesk", "42", "k1", "periodic_update", 1,
                     ["clock_stopped", "ticket_solved"], T0)  # the same incident
    pages = outbox.pages("open")
    assert [(p.dedup_key, p.metric, p.cycle, p.resolve_on) for p in pages] == [
        ("zd-42-update-c1", "periodic_update", 1, ["clock_stopped", "ticket_solved"])]
    outbox.page_error("zd-42-update-c1", "pagerduty: 500")
    assert outbox.pages("open")[0].last_error == "pagerduty: 500"
    outbox.close_page("zd-42-update-c1", T0 + timedelta(minutes=3))
    assert outbox.pages("open") == []
    closed = outbox.pages("resolved")[0]
    assert closed.resolved_at == T0 + timedelta(minutes=3) and closed.last_error is None
