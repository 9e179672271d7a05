"""Escalations: the outbox of escalation actions and the open PagerDuty pages.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "escalation_actions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("group_key", sa.String(64), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("rule", sa.String(100), nullable=False),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(30), nullable=False),
        sa.Column("tracker", sa.String(100), nullable=False),
        sa.Column("item_id", sa.String(255), nullable=False),
        sa.Column("item_key", sa.String(255), nullable=False),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("context", sa.JSON, nullable=False),
        sa.Column("until", sa.JSON, nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        _ts("due_at"),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("result", sa.JSON, nullable=True),
        _ts("created_at"),
        _ts("updated_at"),
        sa.UniqueConstraint("key", name="uq_escalation_actions_key"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_escalation_actions_state_due", "escalation_actions", ["state", "due_at"])
    op.create_index("ix_escalation_actions_group", "escalation_actions", ["group_key"])
    op.create_table(
        "escalation_pages",
        sa.Column("dedup_key", sa.String(255), primary_key=True),
        sa.Column("tracker", sa.String(100), nullable=False),
        sa.Column("item_id", sa.String(255), nullable=False),
        sa.Column("action_key", sa.String(64), nullable=False),
        sa.Column("metric", sa.String(100), nullable=True),
        sa.Column("cycle", sa.Integer, nullable=False),
        sa.Column("resolve_on", sa.JSON, nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        _ts("triggered_at"),
        _ts("resolved_at", nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
    )
    op.create_index("ix_escalation_pages_state", "escalation_pages", ["state"])


def downgrade() -> None:
    op.drop_index("ix_escalation_pages_state", table_name="escalation_pages")
    op.drop_table("escalation_pages")
    op.drop_index("ix_escalation_actions_group", table_name="escalation_actions")
    op.drop_index("ix_escalation_actions_state_due", table_name="escalation_actions")
    op.drop_table("escalation_actions")
