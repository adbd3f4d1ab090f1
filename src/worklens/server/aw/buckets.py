"""The organization's buckets as ActivityWatch names and describes them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, select

from worklens.query2 import BucketInfo
from worklens.server.store.buckets import BucketRef
from worklens.server.store.schema import buckets, devices, event_chunks, events

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class AwBucket:
    """One bucket of the organization, with its AW id."""

    id: str
    pk: int  # buckets.id
    device_id: int
    name: str
    type: str
    client: str
    hostname: str
    created_ms: int
    max_duration_ms: int

    @property
    def ref(self) -> BucketRef:
        return BucketRef(self.pk, self.type, self.max_duration_ms)

    def info(self) -> BucketInfo:
        return BucketInfo(self.id, self.type, self.client, self.hostname, self.name)


def org_buckets(conn: Connection, org_id: int) -> dict[str, AwBucket]:
    """Every bucket of the organization by AW id, in id order (find_bucket's order)."""
    rows = conn.execute(
        select(
            buckets.c.id,
            buckets.c.device_id,
            buckets.c.name,
            buckets.c.type,
            buckets.c.client,
            buckets.c.created_ms,
            buckets.c.max_duration_ms,
            devices.c.hostname,
        )
        .select_from(buckets.join(devices, devices.c.id == buckets.c.device_id))
        .where(devices.c.org_id == org_id)
        .order_by(buckets.c.name, buckets.c.id)
    ).all()
    plain = {r.name for r in rows}
    out: dict[str, AwBucket] = {}
    previous = None
    for r in rows:
        aw_id = r.name
        if r.name == previous:  # a later bucket of the same name, on another device
            aw_id = f"{r.name}@{r.device_id}"
            if aw_id in plain:
                aw_id = f"{aw_id}.{r.id}"
        previous = r.name
        out[aw_id] = AwBucket(
            aw_id,
            r.id,
            r.device_id,
            r.name,
            r.type,
            r.client,
            r.hostname,
            r.created_ms,
            r.max_duration_ms,
        )
    return dict(sorted(out.items()))


def extents(conn: Connection, pks: list[int]) -> dict[int, tuple[int, int]]:
    """(first start, last end) in ms of each bucket that has events, from rows and
    chunks alike: index probes per bucket, never a scan of its events."""
    e = events.alias("e")
    last = events.alias("last")
    # Every subquery correlates explicitly with the outer bucket row (the nested
    # one too, where automatic correlation would look at its parent only).
    first_row = (
        select(func.min(e.c.start_ms)).where(e.c.bucket_id == buckets.c.id).correlate(buckets)
    )
    last_start = (
        select(func.max(last.c.start_ms)).where(last.c.bucket_id == buckets.c.id).correlate(buckets)
    )
    # The last end: among the events that start within the longest event's
    # length of the last start, the one that ends last.
    tail = events.alias("tail")
    last_end = (
        select(func.max(tail.c.start_ms + tail.c.duration_ms))
        .where(
            tail.c.bucket_id == buckets.c.id,
            tail.c.start_ms >= last_start.scalar_subquery() - buckets.c.max_duration_ms,
        )
        .correlate(buckets)
    )
    chunk_first = (
        select(func.min(event_chunks.c.min_start_ms))
        .where(event_chunks.c.bucket_id == buckets.c.id)
        .correlate(buckets)
    )
    chunk_last = (
        select(func.max(event_chunks.c.max_end_ms))
        .where(event_chunks.c.bucket_id == buckets.c.id)
        .correlate(buckets)
    )
    out: dict[int, tuple[int, int]] = {}
    for at in range(0, len(pks), 500):
        for pk, a, b, c, d in conn.execute(
            select(
                buckets.c.id,
                first_row.scalar_subquery(),
                last_end.scalar_subquery(),
                chunk_first.scalar_subquery(),
                chunk_last.scalar_subquery(),
            ).where(buckets.c.id.in_(pks[at : at + 500]))
        ):
            starts = [v for v in (a, c) if v is not None]
            ends = [v for v in (b, d) if v is not None]
            if starts:
                out[pk] = (int(min(starts)), int(max(ends)))
    return out


def iso(ms: int) -> str:
    return (EPOCH + timedelta(milliseconds=ms)).isoformat()


def bucket_json(bucket: AwBucket, extent: tuple[int, int] | None) -> dict[str, Any]:
    """AW's bucket object. ``last_updated`` is the end of its last event (the
    creation time while empty); ``metadata`` has the first start and last end."""
    meta: dict[str, Any] = {"start": None, "end": None}
    if extent is not None:
        meta = {"start": iso(extent[0]), "end": iso(extent[1])}
    return {
        "id": bucket.id,
        "name": bucket.name,
        "type": bucket.type,
        "client": bucket.client,
        "hostname": bucket.hostname,
        "created": iso(bucket.created_ms),
        "last_updated": iso(extent[1] if extent is not None else bucket.created_ms),
        "data": {},
        "metadata": meta,
    }
