"""PostgreSQL for tests: reachable or not (and why), and a fresh schema per test.

PostgreSQL comes from $TICKETBRIDGE_TEST_PG_URL (default: the local server, database `test`).
Each use gets its own schema, selected via search_path in the URL, so parallel pytest-xdist
workers and subprocesses sharing a URL never see each other's tables.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

PG_URL = os.environ.get("TICKETBRIDGE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@cache
def pg_unreachable() -> str | None:
    """None when PostgreSQL answers, else why not (checked once per process)."""
    engine = sa.create_engine(make_url(PG_URL).update_query_dict({"connect_timeout": "3"}))
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"PostgreSQL not reachable at {make_url(PG_URL).render_as_string()}: {first_line}"
    finally:
        engine.dispose()
    return None


def skip_without_pg() -> None:
    reason = pg_unreachable()
    if reason:
        pytest.skip(reason)


@contextmanager
def fresh_schema() -> Iterator[str]:
    """A URL to an empty PostgreSQL schema, dropped afterwards. Skips the test when PostgreSQL is
    not reachable."""
    skip_without_pg()
    schema = f"tb_test_{uuid.uuid4().hex[:16]}"
    admin = sa.create_engine(PG_URL)
    try:
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        url = make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()
