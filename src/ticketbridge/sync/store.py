"""The sync state: links, snapshots, pending creations, comment mirrors, cursors, failures, audit.

SQLite by default (one process serves a team) and PostgreSQL for scale, with the same code.
The schema is owned by Alembic from the first table on: `Store.open` upgrades the database to
the head revision, so a fresh database is created and an old one is brought up to date.

The engine-facing API uses plain values (frozen dataclasses, str, int, dict); no SQLAlchemy type
leaks out. Everything that must become true together after one item is pushed goes through
`commit_item`, in one transaction (see DESIGN.md, "The central invariant").

JSON values (snapshots, audit details) round-trip through JSON: tuples come back as lists and
dict keys as strings, so the caller normalizes before comparing; datetimes must be stored as ISO
strings by the caller. Anything JSON cannot represent raises TypeError before touching the store.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.pool import StaticPool

from ..logs import scrub_text

if TYPE_CHECKING:
    from .workqueue import Locks

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
SIDES = ("left", "right")
# How long a SQLite writer waits for the write lock (another process's, or another engine
# thread's: every transaction takes it) before failing. Long, as waiting costs less than a
# failure to retry; each holder keeps it for one item's commit.
SQLITE_BUSY_TIMEOUT_MS = 30_000
# Rows fetched per query when iterating links, so a large store is never loaded at once.
_LINK_PAGE = 500
_IN_CHUNK = 500  # ids per IN (...) list: far below every driver's bind-parameter limit


class LinkConflict(ValueError):
    """A commit would give an item a second primary link in the flow (or re-pair a primary)."""


# A link's role. The primary link of a ticket is the pair that was created together (or fully
# synced both ways); a follower link attaches a ticket to an existing engineering item (many
# customers reporting one bug) and only carries engineering -> desk. An item has at most one
# primary link per flow on each side, and any number of follower links.
PRIMARY, FOLLOWER = "primary", "follower"
ROLES = (PRIMARY, FOLLOWER)


# -- value types ------------------------------------------------------------------------------


def _check_side(side: str) -> str:
    if side not in SIDES:
        raise ValueError(f"side must be 'left' or 'right', not {side!r}")
    return side


@dataclass(frozen=True)
class Link:
    id: int
    flow: str
    left_id: str
    left_key: str
    right_id: str
    right_key: str
    snapshot: dict[str, Any]
    left_version: str | None
    right_version: str | None
    role: str = PRIMARY
    # When the row was last written, as a read gives it (None on a link a commit returns): not part
    # of a link's value, only a cheap sign that it changed (see `link_stamps_many`).
    updated_at: datetime | None = field(default=None, compare=False)

    @property
    def primary(self) -> bool:
        return self.role == PRIMARY

    def id_on(self, side: str) -> str:
        return self.left_id if _check_side(side) == "left" else self.right_id

    def key_on(self, side: str) -> str:
        return self.left_key if _check_side(side) == "left" else self.right_key

    def version_on(self, side: str) -> str | None:
        return self.left_version if _check_side(side) == "left" else self.right_version


@dataclass(frozen=True)
class Failure:
    id: int
    flow: str
    tracker: str
    item_id: str
    item_key: str
    kind: str  # 'halt' | 'error'
    reason: str  # short code: "unmapped_value", "http_400"
    message: str  # the tracker's message
    attempts: int
    state: str  # 'open' | 'resolved' | 'dropped'
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class AuditEntry:
    id: int
    ts: datetime
    flow: str
    link_id: int | None
    kind: str
    side: str | None
    detail: dict[str, Any]


@dataclass
class ItemCommit:
    """Everything that becomes true together after one item is pushed."""

    flow: str
    left_id: str
    left_key: str
    right_id: str
    right_key: str
    snapshot: dict[str, Any]
    # Written as given (None included): after a push these are the versions now known.
    left_version: str | None = None
    right_version: str | None = None
    comment_links: list[tuple[str, str]] = field(default_factory=list)  # (source_ref, target_ref)
    audit: list[tuple[str, str | None, dict[str, Any]]] = field(default_factory=list)  # (kind, side, detail)
    resolve_intent: tuple[str, str] | None = None  # (source_side, source_id) to delete
    clear_failures: list[tuple[str, str]] = field(default_factory=list)  # (tracker, item_id) to resolve
    # The link's role: None keeps the role of an existing link (a new link is primary).
    role: str | None = None


@dataclass
class Batch:
    """The writes of many items, held back to be committed in one transaction (`Store.commit_batch`):
    commits of pairs whose link exists, and versions seen with nothing to do. Appends are atomic,
    so the threads syncing a page's items share one (a link's versions come from the one thread
    holding its items' locks)."""

    updates: list[tuple[Link, ItemCommit, str]] = field(default_factory=list)  # with the snapshot's JSON
    # link id -> (left, right): merged as recording them one after the other would leave them.
    versions: dict[int, tuple[str | None, str | None]] = field(default_factory=dict)
    # A failure recorded since (a pair of an item failing after another pair of it was synced) is
    # newer than the commits it would be cleared by: it stays open, as it would after theirs.
    started: datetime = field(default_factory=lambda: _now())

    def update(self, link: Link, c: ItemCommit) -> None:
        """Hold `c`, the commit of `link`'s own pair (role kept), checked as `commit_item` checks it."""
        if (c.flow, c.left_id, c.right_id) != (link.flow, link.left_id, link.right_id) or c.resolve_intent:
            raise ValueError("a batch holds commits of existing links only (no new link, no intent)")
        self.updates.append((link, c, _checked_commit(c)))

    def record_versions(self, link_id: int, left_version: str | None, right_version: str | None) -> None:
        """`Store.record_versions`, held back."""
        if left_version is not None or right_version is not None:
            left, right = self.versions.get(link_id, (None, None))
            self.versions[link_id] = (left if left_version is None else left_version,
                                      right if right_version is None else right_version)

    def __len__(self) -> int:
        return len(self.updates) + len(self.versions)


# -- schema -----------------------------------------------------------------------------------
# The tables as the code uses them. Migrations under migrations/versions/ create them; a test
# compares the two so they cannot drift apart.


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Timezone-aware UTC in and out, also on SQLite (which stores no offset)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the store only accepts timezone-aware values")
        value = value.astimezone(UTC)
        # SQLite would store the offset as part of a string; keep one canonical naive-UTC form so
        # that comparisons in SQL (audit `since`) are correct.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = sa.MetaData()

links_t = sa.Table(
    "links",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("flow", sa.String(100), nullable=False),
    sa.Column("left_id", sa.String(255), nullable=False),
    sa.Column("left_key", sa.String(255), nullable=False),
    sa.Column("right_id", sa.String(255), nullable=False),
    sa.Column("right_key", sa.String(255), nullable=False),
    sa.Column("snapshot", sa.JSON, nullable=False),
    sa.Column("left_version", sa.String(255), nullable=True),
    sa.Column("right_version", sa.String(255), nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("role", sa.String(10), nullable=False, server_default=PRIMARY),
    # One link per pair; a ticket may link several issues and an issue several tickets ...
    sa.UniqueConstraint("flow", "left_id", "right_id", name="uq_links_flow_left_right"),
    # ... but each item has at most one primary link per flow (partial unique indexes, which
    # SQLite and PostgreSQL both support).
    sa.Index("uq_links_primary_left", "flow", "left_id", unique=True,
             sqlite_where=sa.text("role = 'primary'"), postgresql_where=sa.text("role = 'primary'")),
    sa.Index("uq_links_primary_right", "flow", "right_id", unique=True,
             sqlite_where=sa.text("role = 'primary'"), postgresql_where=sa.text("role = 'primary'")),
    sa.Index("ix_links_flow_right_id", "flow", "right_id"),  # links_for(..., "right", ...)
    sqlite_autoincrement=True,
)

intents_t = sa.Table(
    "intents",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("flow", sa.String(100), nullable=False),
    sa.Column("source_side", sa.String(5), nullable=False),
    sa.Column("source_id", sa.String(255), nullable=False),
    sa.Column("source_key", sa.String(255), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("flow", "source_side", "source_id", name="uq_intents_flow_side_source"),
    sqlite_autoincrement=True,
)

comment_links_t = sa.Table(
    "comment_links",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "link_id", sa.Integer, sa.ForeignKey("links.id", name="fk_comment_links_link_id"), nullable=False
    ),
    sa.Column("flow", sa.String(100), nullable=False),
    sa.Column("source_ref", sa.String(255), nullable=False),
    sa.Column("target_ref", sa.String(255), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    # Per link: one engineering comment is mirrored onto every ticket linked to its issue.
    sa.UniqueConstraint("link_id", "source_ref", name="uq_comment_links_link_source_ref"),
    sa.Index("ix_comment_links_link_id", "link_id"),
    sqlite_autoincrement=True,
)

cursors_t = sa.Table(
    "cursors",
    metadata,
    sa.Column("tracker", sa.String(100), primary_key=True),
    sa.Column("scope", sa.String(255), primary_key=True),
    sa.Column("value", sa.String(1000), nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

failures_t = sa.Table(
    "failures",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("flow", sa.String(100), nullable=False),
    sa.Column("tracker", sa.String(100), nullable=False),
    sa.Column("item_id", sa.String(255), nullable=False),
    sa.Column("item_key", sa.String(255), nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("reason", sa.String(100), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("flow", "tracker", "item_id", name="uq_failures_flow_tracker_item"),
    sa.Index("ix_failures_state", "state"),
    sqlite_autoincrement=True,
)

audit_t = sa.Table(
    "audit",
    metadata,
    # AUTOINCREMENT on SQLite: ids are never reused, so "rows after id N" (audit_counts) is sound.
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("ts", UTCDateTime, nullable=False),
    sa.Column("flow", sa.String(100), nullable=False),
    sa.Column("link_id", sa.Integer, nullable=True),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("side", sa.String(5), nullable=True),
    sa.Column("detail", sa.JSON, nullable=False),
    sa.Index("ix_audit_flow_ts", "flow", "ts"),
    sqlite_autoincrement=True,
)


# What the SLA clocks are rebuilt from: every status, severity, field and reply event of a
# ticket, in source-timestamp order. `ref` makes recording an observation twice harmless.
ticket_events_t = sa.Table(
    "ticket_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("tracker", sa.String(100), nullable=False),
    sa.Column("item_id", sa.String(255), nullable=False),
    sa.Column("ref", sa.String(255), nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("field", sa.String(255), nullable=True),
    sa.Column("value", sa.JSON, nullable=True),
    sa.Column("public", sa.Boolean, nullable=False),
    sa.Column("by_agent", sa.Boolean, nullable=False),
    sa.Column("source", sa.String(100), nullable=False),
    sa.UniqueConstraint("tracker", "item_id", "ref", name="uq_ticket_events_ref"),
    sa.Index("ix_ticket_events_item", "tracker", "item_id"),
    sqlite_autoincrement=True,
)

# Per ticket: the last observed values (to turn snapshots into events), the latest SLA summary
# (for the board, explain and report), what was last written to each tracker, and when the
# ticket's next warning or breach falls due (the timer the engine sleeps until).
sla_tickets_t = sa.Table(
    "sla_tickets",
    metadata,
    sa.Column("tracker", sa.String(100), primary_key=True),
    sa.Column("item_id", sa.String(255), primary_key=True),
    sa.Column("item_key", sa.String(255), nullable=False),
    sa.Column("observed", sa.JSON, nullable=False),
    sa.Column("summary", sa.JSON, nullable=True),
    sa.Column("written", sa.JSON, nullable=False),
    sa.Column("next_fire_at", UTCDateTime, nullable=True),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Index("ix_sla_tickets_next_fire_at", "next_fire_at"),
)

# Warnings, breaches and deadline changes, each emitted exactly once.
sla_events_t = sa.Table(
    "sla_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("tracker", sa.String(100), nullable=False),
    sa.Column("item_id", sa.String(255), nullable=False),
    sa.Column("metric", sa.String(100), nullable=False),
    sa.Column("cycle", sa.Integer, nullable=False),
    sa.Column("kind", sa.String(30), nullable=False),
    sa.Column("threshold", sa.String(30), nullable=False),
    sa.Column("nominal_at", UTCDateTime, nullable=True),
    sa.Column("recorded_at", UTCDateTime, nullable=False),
    sa.Column("detail", sa.JSON, nullable=False),
    sa.UniqueConstraint("tracker", "item_id", "metric", "cycle", "kind", "threshold", name="uq_sla_events_once"),
    sqlite_autoincrement=True,
)


# -- engine and migrations --------------------------------------------------------------------


def _alembic_config() -> Config:
    cfg = Config()
    # ConfigParser interpolation: a literal '%' in the path must be doubled.
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None, "no migrations found"
    return head


def _create_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        # pre_ping: a worker survives a PostgreSQL restart instead of failing on a dead pooled connection.
        return sa.create_engine(url, pool_pre_ping=True)

    database = parsed.database or ""
    in_memory = database in ("", ":memory:") or database.startswith("file::memory:")
    if in_memory:
        # One shared connection, or every pooled connection would see its own empty database.
        engine = sa.create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let us issue BEGIN ourselves (below); the driver's implicit BEGIN comes too late.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        if not in_memory:
            cur.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer
            # In WAL mode, NORMAL syncs the log at checkpoints instead of on every commit (FULL):
            # a committed transaction survives a crash of the process (the WAL file is written
            # before COMMIT returns) and the database is never corrupted; only a power loss or OS
            # crash may roll back the last commits, which the engine replays (cursors advance only
            # after their items are committed). SQLite's documented safe setting for WAL, and it
            # removes one fsync per item (bench/core.py: the commit was most of an item's time).
            cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # IMMEDIATE takes the write lock up front, waiting up to busy_timeout. A deferred
        # transaction that reads and then writes can instead fail at once with SQLITE_BUSY when
        # another process committed in between, which busy_timeout does not cover. Sent on the
        # driver's connection: through exec_driver_sql it cost a third of an empty transaction.
        driver = conn.connection.driver_connection
        assert driver is not None
        try:
            driver.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as error:  # as SQLAlchemy would raise it (a timeout: OperationalError)
            raise sa.exc.DBAPIError.instance("BEGIN IMMEDIATE", None, error, sqlite3.Error) from error

    return engine


def _upgrade_engine(engine: Engine) -> None:
    cfg = _alembic_config()
    with engine.begin() as conn:
        # env.py runs the migrations on this connection, inside this transaction.
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def upgrade(url: str) -> None:
    """Create or upgrade the database at `url` to the newest schema."""
    engine = _create_engine(url)
    try:
        _upgrade_engine(engine)
    finally:
        engine.dispose()


def current_revision(url: str) -> str | None:
    """The Alembic revision the database at `url` is at (None: no schema yet). Changes nothing."""
    from alembic.runtime.migration import MigrationContext

    engine = _create_engine(url)
    try:
        with engine.begin() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


# -- helpers ----------------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


def _json_text(value: Any, what: str) -> str:
    """`value` as JSON text; refuses what JSON cannot hold now, rather than fail (or silently
    change) inside a transaction."""

    def refuse(obj: Any) -> Any:
        hint = " (store datetimes as ISO strings)" if isinstance(obj, datetime) else ""
        raise TypeError(f"{what} must be JSON-serializable; got {type(obj).__name__}: {obj!r}{hint}")

    try:
        return json.dumps(value, default=refuse, allow_nan=False)
    except ValueError as exc:  # NaN / Infinity: PostgreSQL rejects them, SQLite would keep them
        raise TypeError(f"{what} must be JSON-serializable: {exc}") from exc


def _json_value(value: Any, what: str) -> Any:
    """`value`, once checked to be JSON-serializable (see `_json_text`)."""
    _json_text(value, what)
    return value


def _insert(conn: Connection, table: sa.Table) -> Any:
    """An INSERT that supports ON CONFLICT on both SQLite and PostgreSQL."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def _checked_commit(c: ItemCommit) -> str:
    """The snapshot's JSON text, once everything `c` would write is checked (before anything is)."""
    snapshot = _json_text(c.snapshot, "snapshot")
    for _kind, side, detail in c.audit:
        if side is not None:
            _check_side(side)
        _json_value(detail, "audit detail")
    if c.resolve_intent is not None:
        _check_side(c.resolve_intent[0])
    if c.role is not None and c.role not in ROLES:
        raise ValueError(f"link role must be one of {', '.join(ROLES)}, not {c.role!r}")
    return snapshot


def _link(row: sa.Row[Any]) -> Link:
    return Link(
        id=row.id,
        flow=row.flow,
        left_id=row.left_id,
        left_key=row.left_key,
        right_id=row.right_id,
        right_key=row.right_key,
        snapshot=dict(row.snapshot),
        left_version=row.left_version,
        right_version=row.right_version,
        role=row.role,
        updated_at=row.updated_at,
    )


# (link id, the item's counterpart, when the link was last written): enough to lock an item's
# counterparts and to tell, once they are locked, whether its links changed meanwhile.
LinkStamp = tuple[int, str, datetime | None]


def link_stamp(link: Link, side: str) -> LinkStamp:
    """The stamp of `link` seen from its item on `side`."""
    return link.id, link.id_on("right" if side == "left" else "left"), link.updated_at


def _failure(row: sa.Row[Any]) -> Failure:
    return Failure(
        id=row.id,
        flow=row.flow,
        tracker=row.tracker,
        item_id=row.item_id,
        item_key=row.item_key,
        kind=row.kind,
        reason=row.reason,
        message=row.message,
        attempts=row.attempts,
        state=row.state,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


@dataclass(frozen=True)
class TicketEvent:
    """One recorded history event of a ticket (see ticket_events_t)."""

    ref: str
    at: datetime
    kind: str
    field: str | None = None
    value: Any = None
    public: bool = False
    by_agent: bool = False
    source: str = ""
    seq: int = 0


@dataclass(frozen=True)
class SlaTicket:
    tracker: str
    item_id: str
    item_key: str
    observed: dict[str, Any]
    summary: dict[str, Any] | None
    written: dict[str, Any]
    next_fire_at: datetime | None


@dataclass(frozen=True)
class SlaEvent:
    tracker: str
    item_id: str
    metric: str
    cycle: int
    kind: str
    threshold: str
    nominal_at: datetime | None
    recorded_at: datetime
    detail: dict[str, Any]


def _sla_ticket(row: sa.Row[Any]) -> SlaTicket:
    return SlaTicket(tracker=row.tracker, item_id=row.item_id, item_key=row.item_key, observed=row.observed,
                     summary=row.summary, written=row.written or {}, next_fire_at=row.next_fire_at)


# -- prepared statements ----------------------------------------------------------------------
# The statements the engine runs for every item, built once with bind parameters. SQLAlchemy
# memoizes a statement object's cache key, so executing one of these skips building the
# expression and its cache key on every call (bench/core.py: that was most of the store's CPU
# time per item, more than SQLite itself).


def _param(name: str, column: sa.Column[Any]) -> sa.BindParameter[Any]:
    return sa.bindparam(name, type_=column.type)


def _links_for_query(side: str, many: str = "", columns: Any = (links_t,)) -> sa.Select[Any]:
    """Every link of an item (`:item_id`), or of several (`many`: `:item_ids`), primary first.
    many="array" (PostgreSQL): the ids as one array, so the statement's text does not change with
    their number and the server prepares it once; "in": an IN (...) list."""
    col = links_t.c.left_id if side == "left" else links_t.c.right_id
    if many == "array":
        match = col == sa.any_(sa.bindparam("item_ids", type_=postgresql.ARRAY(sa.String)))
    else:
        match = col.in_(sa.bindparam("item_ids", expanding=True)) if many else col == sa.bindparam("item_id")
    return (sa.select(*columns).where(links_t.c.flow == sa.bindparam("flow"), match)
            .order_by(sa.case((links_t.c.role == PRIMARY, 0), else_=1), links_t.c.id))


def _clash_query(side: str) -> sa.Select[Any]:
    """The item on the other side that `side`'s item already has a primary link to, if another."""
    other_side = "right" if side == "left" else "left"
    mine, theirs = links_t.c[f"{side}_id"], links_t.c[f"{other_side}_id"]
    return sa.select(theirs).where(links_t.c.flow == sa.bindparam("flow"), mine == sa.bindparam("mine"),
                                   links_t.c.role == PRIMARY, theirs != sa.bindparam("theirs"))


# A link's comment refs folded into one string (refs are tracker names and ids: never these).
_REF_SEP, _PAIR_SEP = "\x1f", "\x1e"


def _links_and_refs_query(side: str, many: str) -> sa.Select[Any]:
    cl = comment_links_t
    refs = (sa.select(sa.func.aggregate_strings(cl.c.source_ref + _REF_SEP + cl.c.target_ref, _PAIR_SEP))
            .where(cl.c.flow == links_t.c.flow, cl.c.link_id == links_t.c.id).scalar_subquery())
    return _links_for_query(side, many).add_columns(refs.label("refs"))


_LINKS_FOR = {side: _links_for_query(side) for side in SIDES}


def _many_reads(build: Callable[[str, str], sa.Select[Any]]) -> dict[tuple[bool, str], sa.Select[Any]]:
    """A read of many items' links, by (PostgreSQL?, side): an id array there, an IN list on SQLite."""
    return {(pg, side): build(side, "array" if pg else "in") for pg in (False, True) for side in SIDES}


_LINKS_AND_REFS = _many_reads(_links_and_refs_query)
_LINKS_FOR_MANY = _many_reads(_links_for_query)
_LINK_STAMPS_MANY = _many_reads(lambda side, many: _links_for_query(side, many, columns=(
    links_t.c.id, links_t.c.left_id, links_t.c.right_id, links_t.c.updated_at)))
_LINK_BY_PAIR = sa.select(links_t.c.id, links_t.c.role).where(
    links_t.c.flow == sa.bindparam("flow"), links_t.c.left_id == sa.bindparam("left_id"),
    links_t.c.right_id == sa.bindparam("right_id"))
_PRIMARY_CLASH = {side: _clash_query(side) for side in SIDES}


def _update_link(snapshot: sa.BindParameter[Any]) -> Any:
    # Bind names differ from column names: SQLAlchemy reserves those for the SET clause.
    return sa.update(links_t).where(links_t.c.id == sa.bindparam("b_link_id")).values(
        left_key=sa.bindparam("b_left_key"), right_key=sa.bindparam("b_right_key"), snapshot=snapshot,
        left_version=sa.bindparam("b_left_version"), right_version=sa.bindparam("b_right_version"),
        role=sa.bindparam("b_role"), updated_at=_param("b_now", links_t.c.updated_at))


_UPDATE_LINK = _update_link(_param("b_snapshot", links_t.c.snapshot))
# The snapshot as JSON text already (a batch's: checked, so serialized, when held), as SQLite holds it.
_UPDATE_LINK_JSON_TEXT = _update_link(sa.bindparam("b_snapshot", type_=sa.Text))


def _update_pair(only_primary: bool) -> Any:
    """Write the pair's existing link in one statement, returning (id, role); no row when there is
    none to write that way (see `_upsert_link`). A None role keeps the link's own."""
    t = links_t
    where = [t.c.flow == sa.bindparam("b_flow"), t.c.left_id == sa.bindparam("b_left_id"),
             t.c.right_id == sa.bindparam("b_right_id")]
    if only_primary:
        where.append(t.c.role == PRIMARY)
    return sa.update(t).where(*where).values(
        left_key=sa.bindparam("b_left_key"), right_key=sa.bindparam("b_right_key"),
        snapshot=_param("b_snapshot", t.c.snapshot), left_version=sa.bindparam("b_left_version"),
        right_version=sa.bindparam("b_right_version"),
        role=sa.func.coalesce(_param("b_role", t.c.role), t.c.role),
        updated_at=_param("b_now", t.c.updated_at)).returning(t.c.id, t.c.role)


_UPDATE_PAIR = {False: _update_pair(False), True: _update_pair(True)}
# None leaves a side's version as it is (see record_versions).
_RECORD_VERSIONS = sa.update(links_t).where(links_t.c.id == sa.bindparam("b_link_id")).values(
    left_version=sa.func.coalesce(_param("b_left_version", links_t.c.left_version), links_t.c.left_version),
    right_version=sa.func.coalesce(_param("b_right_version", links_t.c.right_version), links_t.c.right_version),
    updated_at=_param("b_now", links_t.c.updated_at))
_MIRRORED_REFS = sa.select(comment_links_t.c.source_ref, comment_links_t.c.target_ref).where(
    comment_links_t.c.flow == sa.bindparam("flow"), comment_links_t.c.link_id == sa.bindparam("link_id"))
_HAS_INTENT = sa.select(intents_t.c.id).where(
    intents_t.c.flow == sa.bindparam("flow"), intents_t.c.source_side == sa.bindparam("source_side"),
    intents_t.c.source_id == sa.bindparam("source_id"))
_DELETE_INTENT = sa.delete(intents_t).where(
    intents_t.c.flow == sa.bindparam("flow"), intents_t.c.source_side == sa.bindparam("source_side"),
    intents_t.c.source_id == sa.bindparam("source_id"))
_RESOLVE_FAILURE = sa.update(failures_t).where(
    failures_t.c.flow == sa.bindparam("b_flow"), failures_t.c.tracker == sa.bindparam("b_tracker"),
    failures_t.c.item_id == sa.bindparam("b_item_id"), failures_t.c.state == "open",
).values(state="resolved", updated_at=_param("b_now", failures_t.c.updated_at))
_OPEN_FAILURES = sa.select(
    failures_t.c.flow, failures_t.c.tracker, failures_t.c.item_id, failures_t.c.updated_at,
).where(failures_t.c.state == "open", failures_t.c.flow.in_(sa.bindparam("flows", expanding=True)))
_INSERT_AUDIT = sa.insert(audit_t)

# PostgreSQL: a batch's rows as one statement over a JSON array of them (`json_to_recordset`),
# instead of a round of protocol messages per row (executemany), which cost more than the rest of
# the commit. One JSON text is also far cheaper to send than arrays of strings, which the driver
# escapes element by element. Several rows for one link are merged first (`commit_batch`): an
# UPDATE ... FROM applies only one of them.
_PG_UPDATE_LINKS = sa.text(
    "UPDATE links SET left_key = v.left_key, right_key = v.right_key, snapshot = CAST(v.snapshot AS json),"
    " left_version = v.left_version, right_version = v.right_version, role = v.role, updated_at = :now"
    " FROM json_to_recordset(CAST(:rows AS json)) AS v(id integer, left_key text, right_key text, snapshot text,"
    " left_version text, right_version text, role text) WHERE links.id = v.id")
_PG_RECORD_VERSIONS = sa.text(
    "UPDATE links SET left_version = coalesce(v.left_version, links.left_version),"
    " right_version = coalesce(v.right_version, links.right_version), updated_at = :now"
    " FROM json_to_recordset(CAST(:rows AS json)) AS v(id integer, left_version text, right_version text)"
    " WHERE links.id = v.id")
_PG_INSERT_MIRRORS = sa.text(
    "INSERT INTO comment_links (link_id, flow, source_ref, target_ref, created_at)"
    " SELECT v.link_id, v.flow, v.source_ref, v.target_ref, :now"
    " FROM json_to_recordset(CAST(:rows AS json)) AS v(link_id integer, flow text, source_ref text, target_ref text)"
    " ON CONFLICT (link_id, source_ref) DO NOTHING")
_PG_INSERT_AUDIT = sa.text(
    "INSERT INTO audit (ts, flow, link_id, kind, side, detail) SELECT :now, v.flow, v.link_id, v.kind, v.side, v.detail"
    " FROM ROWS FROM (json_to_recordset(CAST(:rows AS json))"
    " AS (flow text, link_id integer, kind text, side text, detail json)) WITH ORDINALITY"
    " AS v(flow, link_id, kind, side, detail, n) ORDER BY v.n")  # ids in the rows' order
_CURSOR = sa.select(cursors_t.c.value).where(cursors_t.c.tracker == sa.bindparam("tracker"),
                                             cursors_t.c.scope == sa.bindparam("scope"))


def _dialect_statements(dialect: str) -> dict[str, Any]:
    """The prepared statements whose ON CONFLICT clause is the dialect's own."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    comment_links = insert(comment_links_t).on_conflict_do_nothing(index_elements=["link_id", "source_ref"])
    cursor = insert(cursors_t)
    cursor = cursor.on_conflict_do_update(index_elements=["tracker", "scope"],
                                          set_={"value": cursor.excluded.value,
                                                "updated_at": cursor.excluded.updated_at})
    return {"comment_links": comment_links, "set_cursor": cursor}


def _rows_json(names: str, rows: Iterable[Sequence[Any]]) -> str:
    """Rows as the JSON array of objects a `_PG_...` statement reads (`json_to_recordset`)."""
    keys = names.split()
    return json.dumps([dict(zip(keys, row, strict=True)) for row in rows])


# -- the store --------------------------------------------------------------------------------


class Store:
    def __init__(self, url: str, engine: Engine) -> None:
        self._url = url
        self._engine = engine
        self._locks: Locks | None = None
        self._prepared = _dialect_statements(engine.dialect.name)
        self._pg = engine.dialect.name == "postgresql"
        # For the one-statement reads of every item: a statement sees one consistent state by
        # itself, so it needs no transaction around it. On PostgreSQL autocommit saves the BEGIN
        # and COMMIT round trips of each; SQLite keeps its transactions (see _create_engine).
        self._reader = (engine.execution_options(isolation_level="AUTOCOMMIT")
                        if engine.dialect.name == "postgresql" else engine)

    @classmethod
    def open(cls, url: str) -> Store:
        """Connect and migrate to head (creating a fresh database, upgrading an old one)."""
        engine = _create_engine(url)
        try:
            _upgrade_engine(engine)
        except BaseException:
            engine.dispose()
            raise
        return cls(url, engine)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._locks is not None:
            self._locks.close()
        self._engine.dispose()

    @property
    def sa_engine(self) -> Engine:
        """The SQLAlchemy engine, for the modules that keep their tables on this store's metadata
        (outbox, work queue) and the status page's read-only queries. The store's own API hides it."""
        return self._engine

    @property
    def shared(self) -> bool:
        """Whether several processes may share this store (PostgreSQL), each running workers."""
        return self._engine.dialect.name == "postgresql"

    @property
    def locks(self) -> Locks:
        """This process's item locks and leases (workqueue.Locks), opened on first use."""
        if self._locks is None:
            from .workqueue import Locks

            self._locks = Locks(self)
        return self._locks

    @property
    def url(self) -> str:
        """The URL as given, password included: never log it, log `safe_url`."""
        return self._url

    @property
    def safe_url(self) -> str:
        return make_url(self._url).render_as_string(hide_password=True)

    def __repr__(self) -> str:
        return f"Store({self.safe_url!r})"

    # -- links --------------------------------------------------------------------------------

    def link_for(self, flow: str, side: str, item_id: str) -> Link | None:
        """The item's primary link in the flow (follower links: see `links_for`)."""
        col = links_t.c.left_id if _check_side(side) == "left" else links_t.c.right_id
        query = sa.select(links_t).where(links_t.c.flow == flow, col == item_id, links_t.c.role == PRIMARY)
        with self._engine.begin() as conn:
            row = conn.execute(query).first()
        return _link(row) if row else None

    def links_for(self, flow: str, side: str, item_id: str) -> list[Link]:
        """Every link of the item in the flow: the primary first, then followers oldest first."""
        query = _LINKS_FOR[_check_side(side)]
        with self._reader.connect() as conn:
            return [_link(row) for row in conn.execute(query, {"flow": flow, "item_id": item_id})]

    def links_and_refs(self, flow: str, side: str, item_id: str) -> tuple[list[Link], dict[int, set[str]]]:
        """`links_for` and the `mirrored_refs` of each link, in one query (once the item is locked)."""
        return self.links_and_refs_many(flow, side, [item_id])[item_id]

    def links_and_refs_many(self, flow: str, side: str,
                            item_ids: Iterable[str]) -> dict[str, tuple[list[Link], dict[int, set[str]]]]:
        """`links_and_refs` of many items in one query a chunk: {item id: (links, refs)}, every id present."""
        found: dict[str, tuple[list[Link], dict[int, set[str]]]] = {}
        for item_id, rows in self._rows_by_item(_LINKS_AND_REFS[self._pg, _check_side(side)], flow, side, item_ids):
            links = [_link(row) for row in rows]
            found[item_id] = links, {row.id: set(row.refs.replace(_PAIR_SEP, _REF_SEP).split(_REF_SEP))
                                     if row.refs else set() for row in rows}
        return found

    def links_for_many(self, flow: str, side: str, item_ids: Iterable[str]) -> dict[str, list[Link]]:
        """`links_for` of many items in one query a chunk: {item id: its links}, every id present."""
        query = _LINKS_FOR_MANY[self._pg, _check_side(side)]
        return {item_id: [_link(row) for row in rows]
                for item_id, rows in self._rows_by_item(query, flow, side, item_ids)}

    def link_stamps_many(self, flow: str, side: str, item_ids: Iterable[str]) -> dict[str, list[LinkStamp]]:
        """The `link_stamp` of every link of many items, in `links_for` order, without the links'
        snapshots: {item id: its stamps}, every id present."""
        other_id = "right_id" if _check_side(side) == "left" else "left_id"
        return {item_id: [(row.id, row._mapping[other_id], row.updated_at) for row in rows]
                for item_id, rows in self._rows_by_item(_LINK_STAMPS_MANY[self._pg, side], flow, side, item_ids)}

    def _rows_by_item(self, query: sa.Select[Any], flow: str, side: str,
                      item_ids: Iterable[str]) -> Iterator[tuple[str, list[sa.Row[Any]]]]:
        """(item id, its link rows) for every id, from one query a chunk of ids."""
        ids = list(dict.fromkeys(item_ids))
        column = f"{side}_id"
        with self._reader.connect() as conn:
            for start in range(0, len(ids), _IN_CHUNK):
                chunk = ids[start:start + _IN_CHUNK]
                rows: dict[str, list[sa.Row[Any]]] = {item_id: [] for item_id in chunk}
                for row in conn.execute(query, {"flow": flow, "item_ids": chunk}):
                    rows[row._mapping[column]].append(row)
                yield from rows.items()

    def link_between(self, flow: str, left_id: str, right_id: str) -> Link | None:
        t = links_t
        query = sa.select(t).where(t.c.flow == flow, t.c.left_id == left_id, t.c.right_id == right_id)
        with self._engine.begin() as conn:
            row = conn.execute(query).first()
        return _link(row) if row else None

    def links(self, flow: str | None = None) -> Iterator[Link]:
        # Keyset pages in short transactions: no connection is held while the caller works.
        last_id = 0
        while True:
            query = sa.select(links_t).where(links_t.c.id > last_id).order_by(links_t.c.id).limit(_LINK_PAGE)
            if flow is not None:
                query = query.where(links_t.c.flow == flow)
            with self._engine.begin() as conn:
                rows = conn.execute(query).all()
            for row in rows:
                yield _link(row)
            if len(rows) < _LINK_PAGE:
                return
            last_id = rows[-1].id

    def count_links(self, flow: str | None = None) -> int:
        query = sa.select(sa.func.count()).select_from(links_t)
        if flow is not None:
            query = query.where(links_t.c.flow == flow)
        with self._engine.begin() as conn:
            return int(conn.execute(query).scalar_one())

    # -- idempotent creation ------------------------------------------------------------------

    def record_intent(self, flow: str, source_side: str, source_id: str, source_key: str) -> bool:
        """Record that we are about to create the counterpart of an item; commits at once.

        Returns True when the intent already existed: a previous attempt may have created the
        item, so the caller searches for its marker before creating again.
        """
        _check_side(source_side)
        with self._engine.begin() as conn:
            stmt = (
                _insert(conn, intents_t)
                .values(
                    flow=flow,
                    source_side=source_side,
                    source_id=source_id,
                    source_key=source_key,
                    created_at=_now(),
                )
                .on_conflict_do_nothing(index_elements=["flow", "source_side", "source_id"])
                # RETURNING, not rowcount: rowcount after ON CONFLICT is not reliable across drivers.
                .returning(intents_t.c.id)
            )
            inserted = conn.execute(stmt).first()
        return inserted is None

    def has_intent(self, flow: str, source_side: str, source_id: str) -> bool:
        params = {"flow": flow, "source_side": source_side, "source_id": source_id}
        with self._reader.connect() as conn:
            return conn.execute(_HAS_INTENT, params).first() is not None

    def pending_intents(self, flow: str | None = None) -> list[tuple[str, str, str, str]]:
        """(flow, source_side, source_id, source_key) of creations not yet committed, oldest first."""
        t = intents_t
        query = sa.select(t.c.flow, t.c.source_side, t.c.source_id, t.c.source_key).order_by(t.c.id)
        if flow is not None:
            query = query.where(t.c.flow == flow)
        with self._engine.begin() as conn:
            return [(r.flow, r.source_side, r.source_id, r.source_key) for r in conn.execute(query)]

    # -- comments -----------------------------------------------------------------------------

    def mirrored(self, flow: str, source_ref: str) -> str | None:
        """The target_ref of a mirror of `source_ref`, if it was mirrored already (the first one
        when an engineering comment went to several linked tickets)."""
        t = comment_links_t
        query = (sa.select(t.c.target_ref).where(t.c.flow == flow, t.c.source_ref == source_ref)
                 .order_by(t.c.id).limit(1))
        with self._engine.begin() as conn:
            return conn.execute(query).scalar_one_or_none()

    def mirrored_refs(self, flow: str, link_id: int) -> set[str]:
        """Every source_ref and target_ref of the link: originals and mirrors are both done."""
        refs: set[str] = set()
        with self._reader.connect() as conn:
            for source_ref, target_ref in conn.execute(_MIRRORED_REFS, {"flow": flow, "link_id": link_id}):
                refs.add(source_ref)
                refs.add(target_ref)
        return refs

    # -- the one per-item transaction ---------------------------------------------------------

    def commit_item(self, c: ItemCommit) -> Link:
        """Make one pushed item's outcome true at once: link, snapshot, versions, comment
        mirrors, audit, intent removal and failure resolution, in ONE transaction.

        The link is found by (flow, left_id, right_id) and updated; otherwise it is inserted
        (primary unless `c.role` says otherwise). Link ids are immutable identity: a primary link
        for an item that already has a primary link to a different item raises LinkConflict and
        nothing is written.
        """
        # The snapshot as the row will hold it and a read gives it back (JSON turns tuples into
        # lists): the returned Link carries it.
        snapshot = json.loads(_checked_commit(c))
        try:
            with self._engine.begin() as conn:
                return self._apply_commit(conn, c, snapshot)
        except IntegrityError:
            # Another process inserted the same link between our lookup and our insert (the
            # unique constraint made one of us fail). Everything was rolled back; apply again,
            # which now finds that row and updates it. A second failure is a real error.
            with self._engine.begin() as conn:
                return self._apply_commit(conn, c, snapshot)

    def _apply_commit(self, conn: Connection, c: ItemCommit, snapshot: dict[str, Any]) -> Link:
        now = _now()
        link_id, role = self._upsert_link(conn, c, now)
        self._write_item_rows(conn, [(link_id, c)], now)
        if c.resolve_intent is not None:
            source_side, source_id = c.resolve_intent
            conn.execute(_DELETE_INTENT, {"flow": c.flow, "source_side": source_side, "source_id": source_id})
        # The row as just written (no read back: the values are all here).
        return Link(id=link_id, flow=c.flow, left_id=c.left_id, left_key=c.left_key, right_id=c.right_id,
                    right_key=c.right_key, snapshot=snapshot, left_version=c.left_version,
                    right_version=c.right_version, role=role)

    def commit_batch(self, batch: Batch) -> None:
        """Commit what `batch` holds in ONE transaction: each item's outcome as `commit_item` makes
        it (link, snapshot, versions, comment mirrors, audit, failure resolution), then the versions
        seen. A transaction per item costs more than the rest of an item's sync (on PostgreSQL, a
        round trip per statement), so the engine commits a page of items at once, each statement
        executed for all of them. Each item's writes are still all or nothing."""
        if not batch:
            return
        now = _now()
        with self._engine.begin() as conn:
            if batch.updates:
                # By id: the links exist (a link is never deleted) and keep their roles, so there
                # is nothing to insert and no primary that could clash (see `_upsert_link`).
                if self._pg:
                    rows = {link.id: (link.id, c.left_key, c.right_key, snapshot, c.left_version, c.right_version,
                                      link.role) for link, c, snapshot in batch.updates}  # the last one wins
                    conn.execute(_PG_UPDATE_LINKS, {"now": now, "rows": _rows_json(
                        "id left_key right_key snapshot left_version right_version role", rows.values())})
                else:
                    conn.execute(_UPDATE_LINK_JSON_TEXT, [
                        {"b_link_id": link.id, "b_left_key": c.left_key, "b_right_key": c.right_key,
                         "b_snapshot": snapshot, "b_left_version": c.left_version,
                         "b_right_version": c.right_version, "b_role": link.role, "b_now": now}
                        for link, c, snapshot in batch.updates])
                self._write_item_rows(conn, [(link.id, c) for link, c, _snapshot in batch.updates], now,
                                      batch.started)
            if batch.versions and self._pg:
                conn.execute(_PG_RECORD_VERSIONS, {"now": now, "rows": _rows_json(
                    "id left_version right_version", ((i, *pair) for i, pair in batch.versions.items()))})
            elif batch.versions:
                conn.execute(_RECORD_VERSIONS, [
                    {"b_link_id": link_id, "b_left_version": left, "b_right_version": right, "b_now": now}
                    for link_id, (left, right) in batch.versions.items()])

    def _write_item_rows(self, conn: Connection, commits: list[tuple[int, ItemCommit]], now: datetime,
                         failed_before: datetime | None = None) -> None:
        """The comment mirrors, audit rows and resolved failures of commits (link id, commit): one
        statement each for all of them. `failed_before`: only failures last recorded earlier are
        resolved (a batch's, see `Batch.started`)."""
        # A pair already present (replayed event, or a mirror recognised by its marker after a
        # crash) is not an error: the first mapping wins.
        mirrors = [(link_id, c.flow, source, target) for link_id, c in commits for source, target in c.comment_links]
        audit = [(c.flow, link_id, kind, side, detail) for link_id, c in commits for kind, side, detail in c.audit]
        if self._pg:
            if mirrors:
                conn.execute(_PG_INSERT_MIRRORS, {"now": now, "rows": _rows_json("link_id flow source_ref target_ref",
                                                                                  mirrors)})
            if audit:
                conn.execute(_PG_INSERT_AUDIT, {"now": now, "rows": _rows_json("flow link_id kind side detail", audit)})
        else:
            if mirrors:
                conn.execute(self._prepared["comment_links"], [
                    {"link_id": link_id, "flow": flow, "source_ref": source, "target_ref": target, "created_at": now}
                    for link_id, flow, source, target in mirrors])
            if audit:
                conn.execute(_INSERT_AUDIT, [
                    {"ts": now, "flow": flow, "link_id": link_id, "kind": kind, "side": side, "detail": detail}
                    for flow, link_id, kind, side, detail in audit])
        clear = {(c.flow, tracker, item_id) for _link_id, c in commits for tracker, item_id in c.clear_failures}
        if clear and failed_before is not None:
            # Of the many items a batch clears, few (usually none) have a failure: one read finds them.
            flows = list({flow for flow, _tracker, _item_id in clear})
            clear &= {(row.flow, row.tracker, row.item_id) for row in conn.execute(_OPEN_FAILURES, {"flows": flows})
                      if row.updated_at < failed_before}
        if clear:
            conn.execute(_RESOLVE_FAILURE, [{"b_flow": flow, "b_tracker": tracker, "b_item_id": item_id, "b_now": now}
                                            for flow, tracker, item_id in clear])

    def _upsert_link(self, conn: Connection, c: ItemCommit, now: datetime) -> tuple[int, str]:
        """(link id, role) of the link written."""
        t = links_t
        # The common case first, in one statement: the pair's link exists and nothing about it
        # can clash (it stays what it is, or it is primary already: the partial unique indexes
        # guarantee no other primary of either item). A follower becoming primary, or a new
        # link, takes the checks below.
        written = conn.execute(_UPDATE_PAIR[c.role == PRIMARY], {
            "b_flow": c.flow, "b_left_id": c.left_id, "b_right_id": c.right_id,
            "b_left_key": c.left_key,  # keys change (a Jira issue moved project); ids do not
            "b_right_key": c.right_key, "b_snapshot": c.snapshot, "b_left_version": c.left_version,
            "b_right_version": c.right_version, "b_role": c.role, "b_now": now}).first()
        if written is not None:
            return int(written.id), str(written.role)
        existing = conn.execute(_LINK_BY_PAIR, {"flow": c.flow, "left_id": c.left_id, "right_id": c.right_id}
                                ).first()
        role = c.role or (existing.role if existing else PRIMARY)
        if role == PRIMARY and not (existing and existing.role == PRIMARY):
            # At most one primary per item and side; the database enforces it too (partial
            # unique indexes), this says which item is in the way. A pair that is primary
            # already cannot clash (those indexes hold): nothing to look for.
            for side, other_side in (("left", "right"), ("right", "left")):
                mine, theirs = getattr(c, f"{side}_id"), getattr(c, f"{other_side}_id")
                clash = conn.execute(_PRIMARY_CLASH[side], {"flow": c.flow, "mine": mine, "theirs": theirs}).first()
                if clash:
                    raise LinkConflict(f"{c.flow}: {side} {mine} is linked to {other_side} {clash[0]}, not {theirs}")
        if existing:
            conn.execute(_UPDATE_LINK, {
                "b_link_id": existing.id, "b_left_key": c.left_key, "b_right_key": c.right_key,
                "b_snapshot": c.snapshot, "b_left_version": c.left_version,
                "b_right_version": c.right_version, "b_role": role, "b_now": now})
            return int(existing.id), role
        result = conn.execute(
            sa.insert(t).values(flow=c.flow, left_id=c.left_id, right_id=c.right_id, created_at=now,
                                left_key=c.left_key, right_key=c.right_key, snapshot=c.snapshot,
                                left_version=c.left_version, right_version=c.right_version, role=role,
                                updated_at=now)
        )
        assert result.inserted_primary_key is not None
        return int(result.inserted_primary_key[0]), role

    def record_versions(self, link_id: int, left_version: str | None, right_version: str | None) -> None:
        """Remember versions of items seen with nothing to do. None leaves that side's version as is
        (the caller may have seen only one side)."""
        if left_version is None and right_version is None:
            return
        with self._reader.begin() as conn:  # one statement: on PostgreSQL, no BEGIN and COMMIT round trips
            conn.execute(_RECORD_VERSIONS, {"b_link_id": link_id, "b_left_version": left_version,
                                            "b_right_version": right_version, "b_now": _now()})

    # -- cursors ------------------------------------------------------------------------------

    def cursor(self, tracker: str, scope: str) -> str | None:
        with self._reader.connect() as conn:
            return conn.execute(_CURSOR, {"tracker": tracker, "scope": scope}).scalar_one_or_none()

    def set_cursor(self, tracker: str, scope: str, value: str) -> None:
        """Advance a cursor; the engine calls this only after the work it covers is committed."""
        with self._engine.begin() as conn:
            conn.execute(self._prepared["set_cursor"],
                         {"tracker": tracker, "scope": scope, "value": value, "updated_at": _now()})

    # -- failures -----------------------------------------------------------------------------

    def record_failure(
        self, flow: str, tracker: str, item_id: str, item_key: str, kind: str, reason: str, message: str
    ) -> Failure:
        """Insert a failure, or update the item's existing one (attempts + 1, open again). The
        message is scrubbed first: a tracker's error may echo the request, credentials included."""
        if kind not in ("halt", "error"):
            raise ValueError(f"failure kind must be 'halt' or 'error', not {kind!r}")
        message = scrub_text(message)
        now = _now()
        t = failures_t
        with self._engine.begin() as conn:
            # One statement, so two workers failing the same item at once still count twice.
            stmt = _insert(conn, t).values(
                flow=flow,
                tracker=tracker,
                item_id=item_id,
                item_key=item_key,
                kind=kind,
                reason=reason,
                message=message,
                attempts=1,
                state="open",
                created_at=now,
                updated_at=now,
            )
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=["flow", "tracker", "item_id"],
                    set_={
                        "item_key": item_key,
                        "kind": kind,
                        "reason": reason,
                        "message": message,
                        "attempts": t.c.attempts + 1,
                        "state": "open",
                        "updated_at": now,
                    },
                )
            )
            row = conn.execute(
                sa.select(t).where(t.c.flow == flow, t.c.tracker == tracker, t.c.item_id == item_id)
            ).one()
        return _failure(row)

    def failures(self, state: str | None = "open", flow: str | None = None) -> list[Failure]:
        """Failures in `state` (None: every state), oldest first."""
        query = sa.select(failures_t).order_by(failures_t.c.id)
        if state is not None:
            query = query.where(failures_t.c.state == state)
        if flow is not None:
            query = query.where(failures_t.c.flow == flow)
        with self._engine.begin() as conn:
            return [_failure(r) for r in conn.execute(query)]

    def failure(self, failure_id: int) -> Failure | None:
        with self._engine.begin() as conn:
            row = conn.execute(sa.select(failures_t).where(failures_t.c.id == failure_id)).first()
        return _failure(row) if row else None

    def open_failure(self, flow: str, tracker: str, item_id: str) -> Failure | None:
        t = failures_t
        query = sa.select(t).where(
            t.c.flow == flow, t.c.tracker == tracker, t.c.item_id == item_id, t.c.state == "open"
        )
        with self._engine.begin() as conn:
            row = conn.execute(query).first()
        return _failure(row) if row else None

    def resolve_failure(self, failure_id: int) -> None:
        self._set_failure_state(failure_id, "resolved")

    def drop_failure(self, failure_id: int) -> None:
        """An admin gave up on the item: it no longer blocks, and stays listed as dropped."""
        self._set_failure_state(failure_id, "dropped")

    def _set_failure_state(self, failure_id: int, state: str) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                sa.update(failures_t)
                .where(failures_t.c.id == failure_id)
                .values(state=state, updated_at=_now())
            )

    # -- audit / report -----------------------------------------------------------------------

    def audit(
        self, flow: str | None = None, since: datetime | None = None, kinds: Iterable[str] | None = None
    ) -> list[AuditEntry]:
        """Audit rows, oldest first; `since` is inclusive."""
        t = audit_t
        query = sa.select(t).order_by(t.c.id)
        if flow is not None:
            query = query.where(t.c.flow == flow)
        if since is not None:
            query = query.where(t.c.ts >= since)
        if kinds is not None:
            query = query.where(t.c.kind.in_(list(kinds)))
        with self._engine.begin() as conn:
            return [
                AuditEntry(
                    id=r.id,
                    ts=r.ts,
                    flow=r.flow,
                    link_id=r.link_id,
                    kind=r.kind,
                    side=r.side,
                    detail=r.detail,
                )
                for r in conn.execute(query)
            ]

    def add_audit(
        self, flow: str, kind: str, side: str | None, detail: dict[str, Any], link_id: int | None = None
    ) -> None:
        if side is not None:
            _check_side(side)
        _json_value(detail, "audit detail")
        with self._engine.begin() as conn:
            conn.execute(
                sa.insert(audit_t).values(
                    ts=_now(), flow=flow, link_id=link_id, kind=kind, side=side, detail=detail
                )
            )

    def audit_counts(self, since_id: int = 0) -> dict[tuple[str, str | None], int]:
        """(kind, side) -> number of audit rows with id > since_id (see last_audit_id)."""
        t = audit_t
        query = (
            sa.select(t.c.kind, t.c.side, sa.func.count())
            .where(t.c.id > since_id)
            .group_by(t.c.kind, t.c.side)
        )
        with self._engine.begin() as conn:
            return {(kind, side): int(n) for kind, side, n in conn.execute(query)}

    def last_audit_id(self) -> int:
        with self._engine.begin() as conn:
            return int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(audit_t.c.id), 0))).scalar_one())

    # -- SLA ----------------------------------------------------------------------------------

    def record_observation(self, tracker: str, item_id: str, item_key: str, observed: dict[str, Any],
                           events: Iterable[TicketEvent]) -> int:
        """Append new history events (already-recorded refs are skipped) and the observed values,
        together. Returns how many events were new."""
        _json_value(observed, "observed values")
        now, added = _now(), 0
        with self._engine.begin() as conn:
            for e in events:
                stmt = _insert(conn, ticket_events_t).values(
                    tracker=tracker, item_id=item_id, ref=e.ref, at=e.at, kind=e.kind, field=e.field,
                    value=_json_value(e.value, "event value"), public=e.public, by_agent=e.by_agent,
                    source=e.source).on_conflict_do_nothing(index_elements=["tracker", "item_id", "ref"])
                # RETURNING, not rowcount: psycopg reports -1 rows for ON CONFLICT inserts.
                added += conn.execute(stmt.returning(ticket_events_t.c.id)).first() is not None
            stmt = _insert(conn, sla_tickets_t).values(
                tracker=tracker, item_id=item_id, item_key=item_key, observed=observed, written={}, updated_at=now)
            conn.execute(stmt.on_conflict_do_update(
                index_elements=["tracker", "item_id"],
                set_={"observed": observed, "item_key": item_key, "updated_at": now}))
        return added

    def ticket_events(self, tracker: str, item_id: str) -> list[TicketEvent]:
        """A ticket's history in source order (ties keep recording order)."""
        t = ticket_events_t
        query = (sa.select(t).where(t.c.tracker == tracker, t.c.item_id == item_id)
                 .order_by(t.c.at, t.c.id))
        with self._engine.begin() as conn:
            return [TicketEvent(ref=r.ref, at=r.at, kind=r.kind, field=r.field, value=r.value, public=r.public,
                                by_agent=r.by_agent, source=r.source, seq=r.id) for r in conn.execute(query)]

    def sla_ticket(self, tracker: str, item_id: str) -> SlaTicket | None:
        t = sla_tickets_t
        with self._engine.begin() as conn:
            row = conn.execute(sa.select(t).where(t.c.tracker == tracker, t.c.item_id == item_id)).first()
        return _sla_ticket(row) if row else None

    def sla_tickets(self) -> list[SlaTicket]:
        with self._engine.begin() as conn:
            rows = conn.execute(sa.select(sla_tickets_t).order_by(sla_tickets_t.c.tracker, sla_tickets_t.c.item_id))
            return [_sla_ticket(r) for r in rows]

    def save_sla(self, tracker: str, item_id: str, summary: dict[str, Any], next_fire_at: datetime | None) -> None:
        _json_value(summary, "SLA summary")
        t = sla_tickets_t
        with self._engine.begin() as conn:
            conn.execute(sa.update(t).where(t.c.tracker == tracker, t.c.item_id == item_id)
                         .values(summary=summary, next_fire_at=next_fire_at, updated_at=_now()))

    def record_sla_written(self, tracker: str, item_id: str, target: str, values: dict[str, Any]) -> None:
        """Remember what was written to `target` (e.g. "jira:10001") so an unchanged value is never rewritten."""
        _json_value(values, "SLA fields")
        t = sla_tickets_t
        with self._engine.begin() as conn:
            row = conn.execute(sa.select(t.c.written).where(t.c.tracker == tracker, t.c.item_id == item_id)
                               ).scalar_one()
            written = dict(row or {})
            written[target] = {**written.get(target, {}), **values}
            conn.execute(sa.update(t).where(t.c.tracker == tracker, t.c.item_id == item_id).values(written=written))

    def due_sla_tickets(self, now: datetime) -> list[tuple[str, str]]:
        """Tickets whose next warning or breach instant has come."""
        t = sla_tickets_t
        with self._engine.begin() as conn:
            rows = conn.execute(sa.select(t.c.tracker, t.c.item_id).where(t.c.next_fire_at <= now)
                                .order_by(t.c.next_fire_at))
            return [(r.tracker, r.item_id) for r in rows]

    def next_sla_fire_at(self) -> datetime | None:
        with self._engine.begin() as conn:
            # min() keeps the column's type, so the value comes back as an aware UTC datetime.
            value: datetime | None = conn.execute(sa.select(sa.func.min(sla_tickets_t.c.next_fire_at))).scalar_one()
        return value

    def record_sla_event(self, tracker: str, item_id: str, metric: str, cycle: int, kind: str, threshold: str,
                         nominal_at: datetime | None, recorded_at: datetime, detail: dict[str, Any]) -> bool:
        """Record a warning/breach/... once; True when it is new (the caller acts only then)."""
        _json_value(detail, "SLA event detail")
        with self._engine.begin() as conn:
            stmt = _insert(conn, sla_events_t).values(
                tracker=tracker, item_id=item_id, metric=metric, cycle=cycle, kind=kind, threshold=threshold,
                nominal_at=nominal_at, recorded_at=recorded_at, detail=detail,
            ).on_conflict_do_nothing(
                index_elements=["tracker", "item_id", "metric", "cycle", "kind", "threshold"])
            return conn.execute(stmt.returning(sla_events_t.c.id)).first() is not None

    def sla_events(self, tracker: str | None = None, item_id: str | None = None,
                   since: datetime | None = None) -> list[SlaEvent]:
        t = sla_events_t
        query = sa.select(t).order_by(t.c.recorded_at, t.c.id)
        if tracker is not None:
            query = query.where(t.c.tracker == tracker)
        if item_id is not None:
            query = query.where(t.c.item_id == item_id)
        if since is not None:
            query = query.where(t.c.recorded_at >= since)
        with self._engine.begin() as conn:
            return [SlaEvent(tracker=r.tracker, item_id=r.item_id, metric=r.metric, cycle=r.cycle, kind=r.kind,
                             threshold=r.threshold, nominal_at=r.nominal_at, recorded_at=r.recorded_at,
                             detail=r.detail) for r in conn.execute(query)]


# The escalation outbox keeps its tables on this metadata (migration 0004); importing it here puts
# them there whenever the store is used, so schema checks and `metadata` see every table.
from . import outbox as _outbox  # noqa: E402, F401
from . import workqueue as _workqueue  # noqa: E402, F401  (the work queue's table, migration 0005)
