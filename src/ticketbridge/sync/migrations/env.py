"""Alembic environment for the ticketbridge store.

Alembic is run programmatically (`ticketbridge.sync.store.upgrade` / `Store.open`), which passes
an open connection in `config.attributes["connection"]`. Run from the alembic command line
instead, it connects to the URL in the `sqlalchemy.url` option or $TICKETBRIDGE_STORE_URL.
"""

from __future__ import annotations

import os

import sqlalchemy as sa
from alembic import context
from sqlalchemy.engine import Connection

from ticketbridge.sync.store import metadata

config = context.config

# Any fixed number works: it only has to be the same for every ticketbridge process.
_MIGRATION_LOCK_KEY = 0x7469636B  # "tick"


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Several workers starting at once against a fresh database: one migrates, the
            # others wait and then find the schema at head. (SQLite: BEGIN IMMEDIATE serializes.)
            connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.get_main_option("sqlalchemy.url") or os.environ["TICKETBRIDGE_STORE_URL"]
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            _run(conn)
            conn.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run against a database")
run_migrations_online()
