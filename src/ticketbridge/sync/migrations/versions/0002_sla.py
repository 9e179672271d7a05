"""SLA clocks: ticket history events, per-ticket SLA state and timers, emitted SLA events.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "ticket_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tracker", sa.String(100), nullable=False),
        sa.Column("item_id", sa.String(255), nullable=False),
        sa.Column("ref", sa.String(255), nullable=False),
        _ts("at"),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("field", sa.String(255), nullable=True),
        sa.Column("value", sa.JSON, nullable=True),
        sa.Column("public", sa.Boolean, nullable=False),
        sa.Column("by_agent", sa.Boolean, nullable=False),
        sa.Column("source", sa.String(100), nullable=False),
        sa.UniqueConstraint("tracker", "item_id", "ref", name="uq_ticket_events_ref"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_ticket_events_item", "ticket_events", ["tracker", "item_id"])
    op.create_table(
        "sla_tickets",
        sa.Column("tracker", sa.String(100), primary_key=True),
        sa.Column("item_id", sa.String(255), primary_key=True),
        sa.Column("item_key", sa.String(255), nullable=False),
        sa.Column("observed", sa.JSON, nullable=False),
        sa.Column("summary", sa.JSON, nullable=True),
        sa.Column("written", sa.JSON, nullable=False),
        _ts("next_fire_at", nullable=True),
        _ts("updated_at"),
    )
    op.create_index("ix_sla_tickets_next_fire_at", "sla_tickets", ["next_fire_at"])
    op.create_table(
        "sla_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tracker", sa.String(100), nullable=False),
        sa.Column("item_id", sa.String(255), nullable=False),
        sa.Column("metric", sa.String(100), nullable=False),
        sa.Column("cycle", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(30), nullable=False),
        sa.Column("threshold", sa.String(30), nullable=False),
        _ts("nominal_at", nullable=True),
        _ts("recorded_at"),
        sa.Column("detail", sa.JSON, nullable=False),
        sa.UniqueConstraint("tracker", "item_id", "metric", "cycle", "kind", "threshold", name="uq_sla_events_once"),
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    op.drop_table("sla_events")
    op.drop_index("ix_sla_tickets_next_fire_at", table_name="sla_tickets")
    op.drop_table("sla_tickets")
    op.drop_index("ix_ticket_events_item", table_name="ticket_events")
    op.drop_table("ticket_events")
