"""Link roles: a ticket may link several engineering items, an item several tickets.

`links` gets a `role` (primary | follower). Uniqueness moves from one link per item to one link
per (flow, left_id, right_id), with at most one primary link per item and side (partial unique
indexes). `comment_links` becomes unique per link, because one engineering comment is mirrored
onto every ticket linked to its issue.

SQLite cannot drop a table constraint, so both tables are rebuilt there (see `_rebuild`).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PRIMARY = sa.text("role = 'primary'")


def _sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def _comment_links_table(unique_name: str, unique_columns: list[str]) -> None:
    op.create_table(
        "comment_links",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("link_id", sa.Integer, sa.ForeignKey("links.id", name="fk_comment_links_link_id"),
                  nullable=False),
        sa.Column("flow", sa.String(100), nullable=False),
        sa.Column("source_ref", sa.String(255), nullable=False),
        sa.Column("target_ref", sa.String(255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint(*unique_columns, name=unique_name),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_comment_links_link_id", "comment_links", ["link_id"])


def _rebuild(change_links: Callable[[], None], unique_name: str, unique_columns: list[str],
             old_unique_name: str) -> None:
    """Run `change_links`, then give comment_links its new unique constraint.

    SQLite cannot drop a table constraint, so there the tables are rebuilt (batch mode). Dropping
    `links` while comment_links rows point at it would count as foreign-key violations that its
    rebuilt twin does not undo, so comment_links is set aside first and restored afterwards.
    """
    if not _sqlite():
        change_links()
        op.drop_constraint(old_unique_name, "comment_links", type_="unique")
        op.create_unique_constraint(unique_name, "comment_links", unique_columns)
        return
    op.execute("CREATE TEMPORARY TABLE _tb_comment_links AS SELECT * FROM comment_links")
    op.drop_index("ix_comment_links_link_id", table_name="comment_links")
    op.drop_table("comment_links")
    change_links()
    _comment_links_table(unique_name, unique_columns)
    op.execute("INSERT INTO comment_links (id, link_id, flow, source_ref, target_ref, created_at) "
               "SELECT id, link_id, flow, source_ref, target_ref, created_at FROM _tb_comment_links")
    op.execute("DROP TABLE _tb_comment_links")


def upgrade() -> None:
    def change_links() -> None:
        with op.batch_alter_table("links") as batch:
            batch.add_column(sa.Column("role", sa.String(10), nullable=False, server_default="primary"))
            batch.drop_constraint("uq_links_flow_left_id", type_="unique")
            batch.drop_constraint("uq_links_flow_right_id", type_="unique")
            batch.create_unique_constraint("uq_links_flow_left_right", ["flow", "left_id", "right_id"])
        op.create_index("uq_links_primary_left", "links", ["flow", "left_id"], unique=True,
                        sqlite_where=_PRIMARY, postgresql_where=_PRIMARY)
        op.create_index("uq_links_primary_right", "links", ["flow", "right_id"], unique=True,
                        sqlite_where=_PRIMARY, postgresql_where=_PRIMARY)
        op.create_index("ix_links_flow_right_id", "links", ["flow", "right_id"])

    _rebuild(change_links, "uq_comment_links_link_source_ref", ["link_id", "source_ref"],
             "uq_comment_links_flow_source_ref")


def downgrade() -> None:
    # Only possible while every item has one link: follower links (and their mirrors) go first.
    op.execute("DELETE FROM comment_links WHERE link_id IN (SELECT id FROM links WHERE role <> 'primary')")
    op.execute("DELETE FROM links WHERE role <> 'primary'")

    def change_links() -> None:
        op.drop_index("ix_links_flow_right_id", table_name="links")
        op.drop_index("uq_links_primary_right", table_name="links")
        op.drop_index("uq_links_primary_left", table_name="links")
        with op.batch_alter_table("links") as batch:
            batch.drop_constraint("uq_links_flow_left_right", type_="unique")
            batch.create_unique_constraint("uq_links_flow_left_id", ["flow", "left_id"])
            batch.create_unique_constraint("uq_links_flow_right_id", ["flow", "right_id"])
            batch.drop_column("role")

    _rebuild(change_links, "uq_comment_links_flow_source_ref", ["flow", "source_ref"],
             "uq_comment_links_link_source_ref")
