"""Buckets (one event stream per device and source) and the reads over their events."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select, union_all

from worklens.server.store.schema import buckets, event_data, events

# Native event kinds map onto ActivityWatch's bucket types, so data from
# ActivityWatch watchers and from our agent land in the same kind of stream.
FOCUS_TYPE = "currentwindow"
AFK_TYPE = "afkstatus"
KIND_BUCKETS: dict[str, tuple[str, str]] = {
    "focus": ("worklens-focus", FOCUS_TYPE),
    "afk": ("worklens-afk", AFK_TYPE),
}


@dataclass(frozen=True, slots=True)
class BucketRef:
    id: int
    type: str
    max_duration_ms: int


def bucket_name(kind: str, hostname: str) -> str:
    return f"{KIND_BUCKETS[kind][0]}_{hostname}"


def device_buckets(conn: Connection, device_id: int) -> list[BucketRef]:
    return buckets_of(conn, [device_id]).get(device_id, [])


def buckets_of(conn: Connection, device_ids: list[int]) -> dict[int, list[BucketRef]]:
    """Each device's buckets, in a fixed order (by id): it breaks ties between buckets."""
    out: dict[int, list[BucketRef]] = {}
    for chunk_start in range(0, len(device_ids), 500):
        rows = conn.execute(
            select(buckets.c.device_id, buckets.c.id, buckets.c.type, buckets.c.max_duration_ms)
            .where(buckets.c.device_id.in_(device_ids[chunk_start : chunk_start + 500]))
            .order_by(buckets.c.id)
        )
        for r in rows:
            out.setdefault(r.device_id, []).append(BucketRef(r.id, r.type, r.max_duration_ms))
    return out


def spans(
    conn: Connection, refs: list[BucketRef], start_ms: int, end_ms: int
) -> dict[int, list[tuple[int, int, int]]]:
    """(start, end, data_id) of the events overlapping ``[start_ms, end_ms)``, per bucket.

    The primary key is (bucket, start), so each bucket's search starts at
    ``start_ms`` minus that bucket's longest event: nothing earlier can reach
    the window. All buckets go in one statement (a UNION ALL of range scans),
    so a report over many devices costs one round trip, not one per bucket.
    Rows come in (start, event id) order, so when two events start at the same
    instant the "latest start wins" rule picks the higher id, on every back end
    and in every query plan.
    """
    out: dict[int, list[tuple[int, int, int]]] = {ref.id: [] for ref in refs}
    # SQLite allows at most 500 terms in one compound SELECT.
    for chunk_start in range(0, len(refs), 200):
        parts = [
            select(
                events.c.bucket_id,
                events.c.start_ms,
                events.c.uid,
                events.c.duration_ms,
                events.c.data_id,
            ).where(
                events.c.bucket_id == ref.id,
                events.c.start_ms >= start_ms - ref.max_duration_ms,
                events.c.start_ms < end_ms,
            )
            for ref in refs[chunk_start : chunk_start + 200]
        ]
        if not parts:
            continue
        query = union_all(*parts).subquery()
        rows = conn.execute(
            select(query).order_by(query.c.bucket_id, query.c.start_ms, query.c.uid)
        )
        for b, s, _uid, d, i in rows:
            if s + d > start_ms:
                out[b].append((s, s + d, i))
    return out


def load_data(conn: Connection, ids: set[int], cache: dict[int, dict[str, Any]]) -> None:
    """Fill ``cache`` with the payloads of ``ids`` it does not hold yet."""
    missing = [i for i in ids if i not in cache]
    for chunk_start in range(0, len(missing), 500):
        chunk = missing[chunk_start : chunk_start + 500]
        for row in conn.execute(
            select(event_data.c.id, event_data.c.data).where(event_data.c.id.in_(chunk))
        ):
            cache[row.id] = json.loads(row.data)
