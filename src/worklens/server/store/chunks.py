"""Raw events packed into one ``event_chunks`` row per bucket and UTC day.

A PostgreSQL row costs ~28 bytes of header and line pointer plus a primary-key
entry, more than an event's own data, so days that no longer change
(``compaction``) are stored as one row holding the day's events as columns.

``body`` layout (little-endian)::

    u8   format (1)
    u32  n          events
    u32  z          length of the zstd frame that follows
    z bytes         zstd( u32 m, then four columns: start deltas (n), durations (n),
                          distinct data ids (m), index into those ids (n) )
    16*n bytes      event ids (uids), raw: random, so not worth compressing

Events are in (start, uid) order, the order every reader uses. Start deltas are
from the previous start (the first from midnight UTC of the day), so they are
small and never negative. A column is ``u8 width`` (1, 2, 4 or 8 bytes, bit 7 set
when zigzag-encoded for negative values) followed by its values as byte planes
(all low bytes, then all second bytes, ...): high planes are mostly zero and zstd
squeezes them to almost nothing, and splitting or joining planes is done by
slicing, in C, with no per-value Python work.

Writers take :func:`lock_buckets` so that compaction and ingest of one bucket do
not interleave on PostgreSQL (SQLite has one writer at a time anyway).
"""

from __future__ import annotations

import struct
import sys
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from itertools import accumulate
from typing import NamedTuple

import zstandard
from sqlalchemy import Connection, TextClause, bindparam, delete, text

from worklens.server.store.db import Database
from worklens.server.store.schema import event_chunks, events

DAY_MS = 86_400_000
DAY_S = 86_400
FORMAT = 1
UID_BYTES = 16
ZSTD_LEVEL = 3  # higher levels gain < 0.1 byte per event here: the ids dominate
# Advisory locks of the two-int4 form live in a key space of their own, apart from
# the one-bigint locks (Database.exclusive, the rollup refresh's per-device lock).
LOCK_CLASS = 0x574C4348  # "WLCH"
EVENT_COLUMNS = ("bucket_id", "start_ms", "uid", "duration_ms", "data_id")

_HEAD = struct.Struct("<BII")
_U32 = struct.Struct("<I")
_BIG_ENDIAN = sys.byteorder == "big"
# array typecode per item size (C sizes vary by platform; pick by measured size).
_CODES: dict[int, str] = {}
for _code in "BHILQ":
    _CODES.setdefault(array(_code).itemsize, _code)


class StoredEvent(NamedTuple):
    """One stored event, wherever it lives. Tuples order as readers do: (start, uid)."""

    start_ms: int
    uid: bytes
    duration_ms: int
    data_id: int


class ChunkError(ValueError):
    """A chunk body is malformed (or of a format this code does not know)."""


def day_of(start_ms: int) -> int:
    """Start of the UTC day (in seconds) that an event starting at ``start_ms`` belongs to."""
    return start_ms // DAY_MS * DAY_S


# --- encoding ----------------------------------------------------------------------


def encode(day_s: int, evs: Sequence[StoredEvent]) -> bytes:
    """Body of the chunk of day ``day_s``; ``evs`` sorted by (start, uid), all in that day."""
    n = len(evs)
    prev = day_s * 1000
    end = prev + DAY_MS
    deltas: list[int] = []
    uids: list[bytes] = []
    ids: dict[int, int] = {}
    index: list[int] = []
    last: tuple[int, bytes] | None = None
    for e in evs:
        key = (e.start_ms, e.uid)
        if last is not None and key <= last:
            raise ValueError("chunk events must be sorted by (start, uid) without repeats")
        if not prev <= e.start_ms < end:
            raise ValueError(f"event at {e.start_ms} is not in the day starting {day_s}")
        if len(e.uid) != UID_BYTES:
            raise ValueError("an event id must be 16 bytes")
        last = key
        deltas.append(e.start_ms - prev)
        prev = e.start_ms
        uids.append(e.uid)
        index.append(ids.setdefault(e.data_id, len(ids)))
    columns = b"".join(
        (
            _U32.pack(len(ids)),
            _pack_column(deltas),
            _pack_column([e.duration_ms for e in evs]),
            _pack_column(list(ids)),
            _pack_column(index),
        )
    )
    z = zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(columns)
    return b"".join((_HEAD.pack(FORMAT, n, len(z)), z, *uids))


def decode(
    day_s: int, body: bytes, lo_ms: int | None = None, hi_ms: int | None = None
) -> list[StoredEvent]:
    """The events of a chunk whose start is in ``[lo_ms, hi_ms)`` (default: all), in order."""
    body = bytes(body)
    if len(body) < _HEAD.size:
        raise ChunkError("chunk body too short")
    fmt, n, zlen = _HEAD.unpack_from(body)
    if fmt != FORMAT:
        raise ChunkError(f"unknown chunk format {fmt}")
    uid_at = _HEAD.size + zlen
    if len(body) != uid_at + UID_BYTES * n:
        raise ChunkError("chunk body length does not match its event count")
    try:
        columns = zstandard.ZstdDecompressor().decompress(body[_HEAD.size : uid_at])
    except zstandard.ZstdError as exc:
        raise ChunkError(f"chunk body does not decompress: {exc}") from None
    if len(columns) < _U32.size:
        raise ChunkError("chunk columns too short")
    (m,) = _U32.unpack_from(columns)
    deltas, pos = _unpack_column(columns, _U32.size, n)
    durations, pos = _unpack_column(columns, pos, n)
    ids, pos = _unpack_column(columns, pos, m)
    index, pos = _unpack_column(columns, pos, n)
    if pos != len(columns):
        raise ChunkError("chunk columns have trailing bytes")
    starts = list(accumulate(deltas, initial=day_s * 1000))
    del starts[0]
    i0 = 0 if lo_ms is None else bisect_left(starts, lo_ms)
    i1 = n if hi_ms is None else bisect_left(starts, hi_ms)
    try:
        return [
            StoredEvent(
                starts[i],
                body[uid_at + UID_BYTES * i : uid_at + UID_BYTES * (i + 1)],
                durations[i],
                ids[index[i]],
            )
            for i in range(i0, i1)
        ]
    except IndexError:
        raise ChunkError("chunk data index out of range") from None


def _pack_column(values: list[int]) -> bytes:
    flag = 0
    if values and min(values) < 0:
        values = [(v << 1) ^ (v >> 63) for v in values]  # zigzag: small |v| stays small
        flag = 0x80
    top = max(values, default=0)
    if top >= 1 << 64:
        raise ValueError("a chunk value does not fit in 64 bits")
    width = 1 if top < 1 << 8 else 2 if top < 1 << 16 else 4 if top < 1 << 32 else 8
    raw = array(_CODES[width], values)
    if _BIG_ENDIAN:
        raw.byteswap()
    data = raw.tobytes()
    planes = data if width == 1 else b"".join(data[i::width] for i in range(width))
    return bytes((width | flag,)) + planes


def _unpack_column(buf: bytes, pos: int, n: int) -> tuple[Sequence[int], int]:
    if pos >= len(buf):
        raise ChunkError("chunk column missing")
    flag = buf[pos]
    width = flag & 0x7F
    if width not in (1, 2, 4, 8):
        raise ChunkError(f"bad chunk column width {width}")
    size = n * width
    planes = buf[pos + 1 : pos + 1 + size]
    if len(planes) != size:
        raise ChunkError("chunk column truncated")
    if width == 1:
        data = planes
    else:
        joined = bytearray(size)
        for i in range(width):
            joined[i::width] = planes[i * n : (i + 1) * n]
        data = bytes(joined)
    values = array(_CODES[width])
    values.frombytes(data)
    if _BIG_ENDIAN:
        values.byteswap()
    if flag & 0x80:
        return [(u >> 1) ^ -(u & 1) for u in values], pos + 1 + size
    return values, pos + 1 + size


# --- storage -----------------------------------------------------------------------


def lock_buckets(conn: Connection, bucket_ids: Sequence[int], *, shared: bool) -> None:
    """Order compaction against ingest of these buckets, for the rest of the transaction.

    Ingest takes the locks shared (ingests never wait on each other), compaction
    exclusive, one bucket at a time (so no two holders can wait on each other in
    a cycle). On PostgreSQL a compaction therefore never runs between an
    ingest's reads and its writes: every statement the ingest runs after the
    lock sees the day either all in ``events`` or all in a chunk. A no-op on
    SQLite, where ``Database.write`` lets one writer in at a time.
    """
    if conn.dialect.name != "postgresql" or not bucket_ids:
        return
    fn = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
    key = (fn, len(bucket_ids))
    stmt = _LOCKS.get(key)
    if stmt is None:
        calls = ", ".join(f"{fn}(:c, :b{i})" for i in range(len(bucket_ids)))
        stmt = _LOCKS[key] = text(f"SELECT {calls}")
    params = {f"b{i}": b & 0x7FFFFFFF for i, b in enumerate(bucket_ids)}
    conn.execute(stmt, {"c": LOCK_CLASS, **params})


_LOCKS: dict[tuple[str, int], TextClause] = {}

# Built once: this runs for every ingested batch, and building and compiling a
# statement each time would cost more than running it.
_TAKE_CHUNKS = (
    delete(event_chunks)
    .where(
        event_chunks.c.bucket_id.in_(bindparam("buckets", expanding=True)),
        event_chunks.c.day_s.in_(bindparam("days", expanding=True)),
    )
    .returning(
        event_chunks.c.bucket_id, event_chunks.c.day_s, event_chunks.c.n, event_chunks.c.body
    )
)


def unpack(db: Database, conn: Connection, bucket_ids: Sequence[int], days_s: Iterable[int]) -> int:
    """Move the chunks of those buckets and days (any that exist) back into
    ``events`` rows, in the caller's transaction; returns how many events that
    restored.

    Logically nothing changes (the same events, only stored as rows), so no
    rollup hour is marked, and unpacking more days than needed is harmless.
    Callers hold :func:`lock_buckets` (shared is enough: of two ingests
    unpacking the same day, the second's DELETE finds the row gone once the
    first commits, returns nothing, and its later reads see the rows).
    """
    days = sorted(set(days_s))
    restored = 0
    for at in range(0, len(days), 500):
        found = conn.execute(
            _TAKE_CHUNKS, {"buckets": list(bucket_ids), "days": days[at : at + 500]}
        ).all()
        for bucket_id, day_s, n, body in sorted(found, key=lambda r: (int(r[0]), int(r[1]))):
            evs = decode(day_s, body)
            if len(evs) != n:
                raise ChunkError(f"chunk of bucket {bucket_id}, day {day_s}: {len(evs)} != {n}")
            db.bulk_insert(
                conn,
                events,
                EVENT_COLUMNS,
                [(bucket_id, e.start_ms, e.uid, e.duration_ms, e.data_id) for e in evs],
            )
            restored += n
    return restored
