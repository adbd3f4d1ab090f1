"""Compaction: old days of raw events move from ``events`` rows into chunks.

One (bucket, UTC day) group at a time, each in its own write transaction that
reads the day's rows, deletes them and writes the chunk, so a crash or a
concurrent ingest can never see half a day moved. A day is compacted once it
ended ``older_than_ms`` ago; a late or re-sent event for it later unpacks the
chunk again (``EventWriter``), and the next run packs it anew. Nothing here
changes what a reader sees, so no rollup hour is marked dirty.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import delete, func, insert, select, update

from worklens.server.store import chunks
from worklens.server.store.chunks import DAY_MS, StoredEvent
from worklens.server.store.db import Database
from worklens.server.store.schema import buckets, event_chunks, events


@dataclass(frozen=True, slots=True)
class CompactResult:
    groups: int  # (bucket, day) groups packed
    events: int  # events moved from rows into chunks
    seconds: float


def default_cutoff_ms(now_ms: int, after_days: float) -> int:
    """Days that ended more than ``after_days`` before ``now_ms`` are compacted."""
    return now_ms - round(after_days * DAY_MS)


def compact(db: Database, older_than_ms: int, limit: int | None = None) -> CompactResult:
    """Pack every (bucket, day) group whose day ended at or before ``older_than_ms``
    and still has rows in ``events``; at most ``limit`` groups when given."""
    t0 = time.perf_counter()
    # Events starting before midnight of this day are in days that have ended by then.
    cut_ms = older_than_ms // DAY_MS * DAY_MS
    groups = moved = 0
    with db.read() as conn:
        bucket_ids = list(conn.execute(select(buckets.c.id).order_by(buckets.c.id)).scalars())
    for bucket_id in bucket_ids:
        after_ms: int | None = None
        while limit is None or groups < limit:
            # Next day with rows, by primary key (an index seek, not a scan);
            # ``after_ms`` keeps the walk moving even if ingest unpacks a day again.
            with db.read() as conn:
                q = select(func.min(events.c.start_ms)).where(
                    events.c.bucket_id == bucket_id, events.c.start_ms < cut_ms
                )
                if after_ms is not None:
                    q = q.where(events.c.start_ms >= after_ms)
                first = conn.execute(q).scalar()
            if first is None:
                break
            day_s = chunks.day_of(first)
            n = compact_day(db, bucket_id, day_s)
            if n:
                groups += 1
                moved += n
            after_ms = day_s * 1000 + DAY_MS
    return CompactResult(groups, moved, time.perf_counter() - t0)


def compact_day(db: Database, bucket_id: int, day_s: int) -> int:
    """Pack one bucket's rows of the day starting ``day_s`` into its chunk (merged
    with the chunk already there, if any); returns how many rows it moved."""
    lo, hi = day_s * 1000, day_s * 1000 + DAY_MS
    with db.write() as conn:
        chunks.lock_buckets(conn, [bucket_id], shared=False)
        in_day = (
            events.c.bucket_id == bucket_id,
            events.c.start_ms >= lo,
            events.c.start_ms < hi,
        )
        rows = [
            StoredEvent(s, bytes(uid), d, i)
            for s, uid, d, i in conn.execute(
                select(events.c.start_ms, events.c.uid, events.c.duration_ms, events.c.data_id)
                .where(*in_day)
                .order_by(events.c.start_ms, events.c.uid)  # the primary key's order
            )
        ]
        if not rows:
            return 0
        old = conn.execute(
            select(event_chunks.c.body).where(
                event_chunks.c.bucket_id == bucket_id, event_chunks.c.day_s == day_s
            )
        ).scalar()
        evs = rows if old is None else _merge(chunks.decode(day_s, old), rows)
        deleted = conn.execute(delete(events).where(*in_day)).rowcount
        if deleted != len(rows):  # cannot happen under the bucket lock; never lose a row
            raise RuntimeError(
                f"bucket {bucket_id}, day {day_s}: read {len(rows)} rows, deleted {deleted}"
            )
        values = {
            "n": len(evs),
            "min_start_ms": evs[0].start_ms,
            "max_end_ms": max(e.start_ms + e.duration_ms for e in evs),
            "body": chunks.encode(day_s, evs),
        }
        if old is None:
            conn.execute(insert(event_chunks).values(bucket_id=bucket_id, day_s=day_s, **values))
        else:
            conn.execute(
                update(event_chunks)
                .where(event_chunks.c.bucket_id == bucket_id, event_chunks.c.day_s == day_s)
                .values(**values)
            )
    return len(rows)


def _merge(packed: list[StoredEvent], rows: list[StoredEvent]) -> list[StoredEvent]:
    """One sorted list of both; an event in both keeps its longer copy, as ingest would."""
    by_key: dict[tuple[int, bytes], StoredEvent] = {(e.start_ms, e.uid): e for e in packed}
    for e in rows:
        prev = by_key.get((e.start_ms, e.uid))
        if prev is None or e.duration_ms > prev.duration_ms:
            by_key[(e.start_ms, e.uid)] = e
    return sorted(by_key.values())
