"""Initial schema: links, intents, comment_links, cursors, failures, audit.

Revision ID: 0001
Revises:
Create Date: 2025-11-23

Written out in full rather than imported from store.py: a migration describes the schema as it
was at this revision, and must not change when the code's tables change later.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "links",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("flow", sa.String(100), nullable=False),
        sa.Column("left_id", sa.String(255), nullable=False),
        sa.Column("left_key", sa.String(255), nullable=False),
        sa.Column("right_id", sa.String(255), nullable=False),
        sa.Column("right_key", sa.String(255), nullable=False),
        sa.Column("snapshot", sa.JSON, nullable=False),
        sa.Column("left_version", sa.String(255), nullable=True),
        sa.Column("right_version", sa.String(255), nullable=True),
        _ts("created_at"),
        _ts("updated_at"),
        sa.UniqueConstraint("flow", "left_id", name="uq_links_flow_left_id"),
        sa.UniqueConstraint("flow", "right_id", name="uq_links_flow_right_id"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "intents",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("flow", sa.String(100), nullable=False),
        sa.Column("source_side", sa.String(5), nullable=False),
        sa.Column("source_id", sa.String(255), nullable=False),
        sa.Column("source_key", sa.String(255), nullable=False),
        _ts("created_at"),
        sa.UniqueConstraint("flow", "source_side", "source_id", name="uq_intents_flow_side_source"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "comment_links",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "link_id", sa.Integer, sa.ForeignKey("links.id", name="fk_comment_links_link_id"), nullable=False
        ),
        sa.Column("flow", sa.String(100), nullable=False),
        sa.Column("source_ref", sa.String(255), nullable=False),
        sa.Column("target_ref", sa.String(255), nullable=False),
        _ts("created_at"),
        sa.UniqueConstraint("flow", "source_ref", name="uq_comment_links_flow_source_ref"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_comment_links_link_id", "comment_links", ["link_id"])
    op.create_table(
        "cursors",
        sa.Column("tracker", sa.String(100), primary_key=True),
        sa.Column("scope", sa.String(255), primary_key=True),
        sa.Column("value", sa.String(1000), nullable=False),
        _ts("updated_at"),
    )
    op.create_table(
        "failures",
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
        _ts("created_at"),
        _ts("updated_at"),
        sa.UniqueConstraint("flow", "tracker", "item_id", name="uq_failures_flow_tracker_item"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_failures_state", "failures", ["state"])
    op.create_table(
        "audit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        _ts("ts"),
        sa.Column("flow", sa.String(100), nullable=False),
        sa.Column("link_id", sa.Integer, nullable=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("side", sa.String(5), nullable=True),
        sa.Column("detail", sa.JSON, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_audit_flow_ts", "audit", ["flow", "ts"])


def downgrade() -> None:
    for table in ("audit", "failures", "cursors", "comment_links", "intents", "links"):
        op.drop_table(table)
