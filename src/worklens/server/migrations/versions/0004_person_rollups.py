"""person rollups

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 05:22:34.234397
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "person_dirty",
        sa.Column(
            "person_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("hour_s", sa.BigInteger(), nullable=False),
        sa.Column("gen", sa.BigInteger(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["people.id"],
            name=op.f("fk_person_dirty_person_id_people"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("person_id", "hour_s", name=op.f("pk_person_dirty")),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "person_rollups",
        sa.Column(
            "person_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("res", sa.SmallInteger(), nullable=False),
        sa.Column("dim", sa.SmallInteger(), nullable=False),
        sa.Column("period_s", sa.BigInteger(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["people.id"],
            name=op.f("fk_person_rollups_person_id_people"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "person_id", "res", "dim", "period_s", name=op.f("pk_person_rollups")
        ),
        sqlite_with_rowid=False,
    )


def downgrade() -> None:
    op.drop_table("person_rollups")
    op.drop_table("person_dirty")
