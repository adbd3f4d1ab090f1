"""live state of devices and the live event log

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22 08:05:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("devices") as batch:
        batch.add_column(sa.Column("current_app", sa.Text(), server_default="", nullable=False))
        batch.add_column(sa.Column("current_title", sa.Text(), server_default="", nullable=False))
        batch.add_column(sa.Column("current_since_ms", sa.BigInteger(), nullable=True))
        batch.add_column(
            sa.Column("afk_status", sa.String(length=16), server_default="", nullable=False)
        )
        batch.add_column(sa.Column("afk_since_ms", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("disconnected_ms", sa.BigInteger(), nullable=True))
    op.create_table(
        "live_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("org_id", sa.BigInteger(), nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_live_events")),
    )
    op.create_index(op.f("ix_live_events_at_ms"), "live_events", ["at_ms"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_live_events_at_ms"), table_name="live_events")
    op.drop_table("live_events")
    with op.batch_alter_table("devices") as batch:
        for name in (
            "disconnected_ms",
            "afk_since_ms",
            "afk_status",
            "current_since_ms",
            "current_title",
            "current_app",
        ):
            batch.drop_column(name)
