"""Buckets (one event stream per device and source) and the reads over their events."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select

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
    rows = conn.execute(
        select(buckets.c.id, buckets.c.type, buckets.c.max_duration_ms)
        .where(buckets.c.device_id == device_id)
        .order_by(buckets.c.id)  # a fixed order: it breaks ties between buckets
    )
    return [BucketRef(r.id, r.type, r.max_duration_ms) for r in rows]


def spans(
    conn: Connection, refs: list[BucketRef], start_ms: int, end_ms: int
) -> list[tuple[int, int, int]]:
    """(start, end, data_id) of every event in ``refs`` overlapping ``[start_ms, end_ms)``.

    The primary key is (bucket, start), so the search starts at ``start_ms``
    minus the bucket's longest event: nothing earlier can reach the window.
    Rows come in (start, event id) order, so when two events start at the same
    instant the "latest start wins" rule picks the higher id, on every back end
    and in every query plan.
    """
    out: list[tuple[int, int, int]] = []
    for ref in refs:
        rows = conn.execute(
            select(events.c.start_ms, events.c.duration_ms, events.c.data_id)
            .where(
                events.c.bucket_id == ref.id,
                events.c.start_ms >= start_ms - ref.max_duration_ms,
                events.c.start_ms < end_ms,
            )
            .order_by(events.c.start_ms, events.c.uid)
        )
        out.extend((s, s + d, i) for s, d, i in rows if s + d > start_ms)
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
