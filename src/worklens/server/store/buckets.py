"""Buckets (one event stream per device and source) and the reads over their events."""

from __future__ import annotations

import functools
import heapq
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Connection,
    LargeBinary,
    Select,
    bindparam,
    cast,
    null,
    select,
    type_coerce,
    union_all,
)
from sqlalchemy.types import NullType

from worklens.protocol.wire import AW_AFK_TYPE, AW_WEB_TAB_TYPE, AW_WINDOW_TYPE
from worklens.server.store.chunks import StoredEvent, day_of, decode
from worklens.server.store.schema import buckets, event_chunks, event_data, events

# Native event kinds map onto ActivityWatch's bucket types, so data from
# ActivityWatch watchers and from our agent land in the same kind of stream.
FOCUS_TYPE = AW_WINDOW_TYPE
AFK_TYPE = AW_AFK_TYPE
WEB_TAB_TYPE = AW_WEB_TAB_TYPE
# The types reports read: events of these mark their hours for the rollups.
REPORTED_TYPES = frozenset((FOCUS_TYPE, AFK_TYPE, WEB_TAB_TYPE))
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


def read_events(
    conn: Connection, refs: list[BucketRef], start_ms: int, end_ms: int
) -> dict[int, list[StoredEvent]]:
    """The events overlapping ``[start_ms, end_ms)``, per bucket, wherever they are
    stored: rows of ``events`` and old days packed in ``event_chunks``.

    The one read of stored events (:func:`spans`, and so rollups and reports, is
    this without the ids; the ActivityWatch API is to use it too), so an event
    reads the same before and after compaction. The primary keys lead with
    (bucket, start), so each bucket's search starts at ``start_ms`` minus that
    bucket's longest event: nothing earlier can reach the window. All buckets go
    in one statement (a UNION ALL of range scans over both tables), so a report
    over many devices costs one round trip, not one per bucket, and one
    snapshot: a compaction committing meanwhile can neither hide a day nor show
    it twice. Events come in (start, event id) order, so when two events start
    at the same instant the "latest start wins" rule picks the higher id, on
    every back end and in every query plan.
    """
    out: dict[int, list[StoredEvent]] = {}
    for b, (rows, packed) in _scan(conn, refs, start_ms, end_ms).items():
        evs = [StoredEvent(s, bytes(uid), d, i) for s, uid, d, i in rows]
        out[b] = _with_packed(evs, packed, start_ms, end_ms) if packed else evs
    return out


def spans(
    conn: Connection, refs: list[BucketRef], start_ms: int, end_ms: int
) -> dict[int, list[tuple[int, int, int]]]:
    """(start, end, data_id) of the events overlapping ``[start_ms, end_ms)``, per
    bucket, in (start, event id) order: :func:`read_events` without the ids."""
    out: dict[int, list[tuple[int, int, int]]] = {}
    for b, (rows, packed) in _scan(conn, refs, start_ms, end_ms).items():
        if packed:  # the window reaches compacted days: decode, merge
            evs = [StoredEvent(s, bytes(uid), d, i) for s, uid, d, i in rows]
            evs = _with_packed(evs, packed, start_ms, end_ms)
            out[b] = [(e.start_ms, e.start_ms + e.duration_ms, e.data_id) for e in evs]
        else:  # the hot path of rollup refreshes: straight from the rows
            out[b] = [(s, s + d, i) for s, _uid, d, i in rows]
    return out


# (start, uid, duration, data id) of rows; (lookback, day_s, body) of chunks
_Found = tuple[list[tuple[int, bytes, int, int]], list[tuple[int, int, bytes]]]


def _scan(conn: Connection, refs: list[BucketRef], start_ms: int, end_ms: int) -> dict[int, _Found]:
    """Per bucket: the ``events`` rows overlapping the window, in order, and the
    bodies of the chunks that may hold some, read in one statement."""
    out: dict[int, _Found] = {ref.id: ([], []) for ref in refs}
    lookback = {ref.id: start_ms - ref.max_duration_ms for ref in refs}
    # SQLite allows at most 500 terms in one compound SELECT: two per bucket.
    for chunk_start in range(0, len(refs), 200):
        part = refs[chunk_start : chunk_start + 200]
        params: dict[str, int] = {
            "start": start_ms,
            "end": end_ms,
            "end_day": -(-end_ms // 1000),  # chunks of days starting before end_ms
        }
        for k, ref in enumerate(part):
            params[f"b{k}"] = ref.id
            params[f"lo{k}"] = lookback[ref.id]
            params[f"day{k}"] = day_of(lookback[ref.id])
        # Plain tuples, not the Row objects: 30,000 live Rows cost more in
        # garbage-collector passes than reading them did.
        for b, s, uid, d, i, body in conn.execute(_scan_statement(len(part)), params):
            if body is None:
                out[b][0].append((s, uid, d, i))
            else:
                out[b][1].append((lookback[b], s, body))  # s: the day; in day order
    return out


@functools.lru_cache(maxsize=64)
def _scan_statement(n: int) -> Select[Any]:
    """The read of ``n`` buckets, built once per ``n``: building it anew costs
    more than running it for the few hours a rollup refresh reads."""
    no_blob = cast(null(), LargeBinary)
    no_int = cast(null(), BigInteger)
    # Both drivers return bytea/BLOB as bytes already: typed as "raw", the byte
    # columns skip SQLAlchemy's per-row result processing.
    raw = NullType()
    parts: list[Select[Any]] = []
    for k in range(n):
        parts.append(
            select(
                events.c.bucket_id,
                events.c.start_ms,
                type_coerce(events.c.uid, raw).label("uid"),
                events.c.duration_ms,
                events.c.data_id,
                type_coerce(no_blob, raw).label("body"),
            ).where(
                events.c.bucket_id == bindparam(f"b{k}"),
                events.c.start_ms >= bindparam(f"lo{k}"),
                events.c.start_ms < bindparam("end"),
                events.c.start_ms + events.c.duration_ms > bindparam("start"),
            )
        )
        parts.append(
            select(
                event_chunks.c.bucket_id,
                event_chunks.c.day_s,  # in the start_ms column: a chunk row has a body
                no_blob,
                no_int,
                no_int,
                type_coerce(event_chunks.c.body, raw),
            ).where(
                event_chunks.c.bucket_id == bindparam(f"b{k}"),
                event_chunks.c.day_s >= bindparam(f"day{k}"),
                event_chunks.c.day_s < bindparam("end_day"),
                event_chunks.c.min_start_ms < bindparam("end"),
                event_chunks.c.max_end_ms > bindparam("start"),
            )
        )
    query = union_all(*parts).subquery()
    # The order of the primary keys (bucket, start, uid), so each part is read in
    # index order and merged, never sorted.
    return select(query).order_by(query.c.bucket_id, query.c.start_ms, query.c.uid)


def _with_packed(
    evs: list[StoredEvent], packed: list[tuple[int, int, bytes]], start_ms: int, end_ms: int
) -> list[StoredEvent]:
    """``evs`` (from rows, in order) together with the chunks' events in the window."""
    unpacked = [
        e
        for lo, day_s, body in packed  # in day order
        for e in decode(day_s, body, lo, end_ms)
        if e.start_ms + e.duration_ms > start_ms
    ]
    # A day is either in rows or in a chunk; both sorted, so merge them.
    return list(heapq.merge(evs, unpacked)) if evs else unpacked


def load_data(conn: Connection, ids: set[int], cache: dict[int, dict[str, Any]]) -> None:
    """Fill ``cache`` with the payloads of ``ids`` it does not hold yet."""
    missing = [i for i in ids if i not in cache]
    for chunk_start in range(0, len(missing), 500):
        chunk = missing[chunk_start : chunk_start + 500]
        for row in conn.execute(
            select(event_data.c.id, event_data.c.data).where(event_data.c.id.in_(chunk))
        ):
            cache[row.id] = json.loads(row.data)
