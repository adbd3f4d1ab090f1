"""event chunks: old days of raw events packed one row per bucket and day

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "event_chunks",
        sa.Column(
            "bucket_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("day_s", sa.BigInteger(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("min_start_ms", sa.BigInteger(), nullable=False),
        sa.Column("max_end_ms", sa.BigInteger(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["bucket_id"],
            ["buckets.id"],
            name=op.f("fk_event_chunks_bucket_id_buckets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("bucket_id", "day_s", name=op.f("pk_event_chunks")),
    )


def downgrade() -> None:
    # Put chunked events back into rows first, or they would go with the table.
    from worklens.server.store.chunks import decode

    bind = op.get_bind()
    chunks = sa.table("event_chunks", sa.column("bucket_id"), sa.column("day_s"), sa.column("body"))
    events = sa.table(
        "events",
        sa.column("bucket_id"),
        sa.column("start_ms"),
        sa.column("uid"),
        sa.column("duration_ms"),
        sa.column("data_id"),
    )
    keys = bind.execute(sa.select(chunks.c.bucket_id, chunks.c.day_s)).all()
    for bucket_id, day_s in keys:
        body = bind.execute(
            sa.select(chunks.c.body).where(chunks.c.bucket_id == bucket_id, chunks.c.day_s == day_s)
        ).scalar_one()
        rows = [
            {
                "bucket_id": bucket_id,
                "start_ms": e.start_ms,
                "uid": e.uid,
                "duration_ms": e.duration_ms,
                "data_id": e.data_id,
            }
            for e in decode(day_s, body)
        ]
        if rows:
            bind.execute(events.insert(), rows)
    op.drop_table("event_chunks")
