"""Work items: the queue several workers share on PostgreSQL (see sync/workqueue.py).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "work_items",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("flow", sa.String(100), nullable=False),
        sa.Column("side", sa.String(5), nullable=False),
        sa.Column("item_id", sa.String(255), nullable=False),
        sa.Column("enqueued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("again", sa.Boolean, nullable=False),
        sa.Column("claimed_by", sa.String(255), nullable=True),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.UniqueConstraint("flow", "side", "item_id", name="uq_work_items_item"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_work_items_claimed_until", "work_items", ["claimed_until"])


def downgrade() -> None:
    op.drop_index("ix_work_items_claimed_until", table_name="work_items")
    op.drop_table("work_items")
