"""Writing batches of events: idempotent, whole batch in one transaction.

Events of days already compacted (``compaction``) are unpacked back into rows
first, so the duplicate check and the updates below only ever deal with rows.

Focus and afk events go to the device's own buckets (``buckets.KIND_BUCKETS``);
ActivityWatch events (kind ``aw``, from the agent's AW API) to the device's
bucket of that AW id, created with the event's bucket type and client. Both
kinds go through the same path: payloads deduplicated in ``event_data``,
idempotent by event id, a longer re-send extends the stored event. Only the
bucket types reports read (``currentwindow``, ``afkstatus``) mark hours for the
rollups, so an AW window watcher's bucket counts in reports like the agent's
own focus bucket; an AW ``afkstatus`` event's ``"not-afk"`` is stored as
WorkLens's ``"active"`` (as the AW import does).
"""

from __future__ import annotations

import hashlib
import json
import threading
from typing import Any, NamedTuple

from pydantic import BaseModel
from sqlalchemy import Connection, bindparam, case, select, update

from worklens.protocol.messages import (
    AfkEvent,
    AwEvent,
    Batch,
    FocusEvent,
    HeartbeatData,
    HeartbeatEvent,
    HostEvent,
    IngestResult,
)
from worklens.server.errors import ApiError
from worklens.server.store import chunks
from worklens.server.store import devices as devices_store
from worklens.server.store.buckets import (
    AFK_TYPE,
    FOCUS_TYPE,
    KIND_BUCKETS,
    REPORTED_TYPES,
    bucket_name,
)
from worklens.server.store.db import Database
from worklens.server.store.devices import DeviceAuth
from worklens.server.store.rollups import mark_dirty
from worklens.server.store.schema import (
    buckets,
    event_data,
    events,
    host_samples,
    ingest_batches,
)

HOUR_MS = 3_600_000
_CACHE_LIMIT = 200_000
# The bucket types rollups and reports read.
# Presence as ActivityWatch says it, and as WorkLens stores it.
_AW_ACTIVE, _WL_ACTIVE = "not-afk", "active"


def to_ms(seconds: float) -> int:
    return round(seconds * 1000)


def canonical_json(data: dict[str, Any]) -> str:
    """One text per payload, whoever sent it, so equal payloads share one row."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def data_hash(text: str) -> bytes:
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


def hours_between(start_ms: int, end_ms: int) -> range:
    """Start (in seconds) of every hour that ``[start_ms, end_ms)`` touches."""
    if end_ms <= start_ms:
        return range(0)
    first = start_ms // HOUR_MS
    last = (end_ms - 1) // HOUR_MS
    return range(first * 3600, (last + 1) * 3600, 3600)


class _Stream:
    """One bucket's events of a batch, reduced to rows before the transaction."""

    __slots__ = ("client", "count", "first", "name", "payloads", "rows", "type", "unknown")

    def __init__(self, btype: str, first: tuple[int, AwEvent] | None = None) -> None:
        self.type = btype
        # An AW bucket's id and client, from its first event in the batch (index,
        # event: named in errors); None for the agent's own kinds.
        self.first = first
        self.name = first[1].bucket if first else None
        self.client = first[1].client if first else ""
        self.count = 0
        # event id -> [start_ms, duration_ms, payload key]; within one batch the
        # same event may appear twice (a merge re-sent before the first send was
        # acknowledged): the longest copy wins.
        self.rows: dict[bytes, list[Any]] = {}
        # key -> the payload: a model, or an AW event's data as canonical JSON
        self.payloads: dict[object, BaseModel | str] = {}
        self.unknown: dict[object, tuple[bytes, str]] = {}  # key -> (hash, canonical JSON)

    @property
    def reported(self) -> bool:
        return self.type in REPORTED_TYPES

    def add(self, e: FocusEvent | AfkEvent) -> int:
        """Add the event; returns its start (ms), which the caller needs too."""
        # A plain tuple: hashing and comparing it is several times cheaper than
        # a pydantic model's __hash__/__eq__, and this runs per event.
        key = (type(e.data), *e.data.__dict__.values())
        self.payloads.setdefault(key, e.data)
        return self._row(e, key)

    def add_aw(self, e: AwEvent) -> int:
        data = e.data
        if self.type == AFK_TYPE and data.get("status") == _AW_ACTIVE:
            data = {**data, "status": _WL_ACTIVE}
        text = canonical_json(data)
        # Keyed by the hash, which the cache of payload ids then holds instead
        # of texts of up to 16 KiB; the text is known now, so it is never redone.
        key = data_hash(text)
        self.payloads.setdefault(key, text)
        self.unknown.setdefault(key, (key, text))
        return self._row(e, key)

    def _row(self, e: FocusEvent | AfkEvent | AwEvent, key: object) -> int:
        self.count += 1
        start = round(e.start.timestamp() * 1000)
        dur = to_ms(e.duration)
        uid = e.id.bytes
        prev = self.rows.get(uid)
        if prev is None:
            self.rows[uid] = [start, dur, key]
        elif dur > prev[1]:
            prev[1], prev[2] = dur, key
        return start


def _canonical(payload: BaseModel | str) -> str:
    return payload if isinstance(payload, str) else canonical_json(payload.model_dump())


_Cached = tuple[int, int, str]  # a bucket's id, longest event (ms) and type
# (device id, its created_ms, stream key): a deleted device's id may come back
# for a new device (SQLite reuses the largest rowid), and another server process
# may still cache the old device's buckets; the creation time tells them apart.
_Key = tuple[int, int, str]


class _Prepared(NamedTuple):
    streams: dict[str, _Stream]
    days: list[int]  # the UTC days (chunks.day_of) the streams' events start in
    hosts: dict[int, dict[str, Any]]  # ts_ms -> host_samples row without device_id
    host_count: int
    last_beat: HeartbeatData | None
    beat_count: int
    current: devices_store.Current  # the newest focus and afk state in the batch


class EventWriter:
    """Stores batches. Holds per-process caches of ids that only ever get added
    (bucket and payload ids), filled after commit so a rolled-back transaction
    never leaves a dangling id behind."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._lock = threading.Lock()
        # (device, created, stream key) -> (bucket id, max_duration_ms, type); the
        # stream key is the kind for the agent's own buckets, "aw:" + the AW id for
        # AW buckets
        self._buckets: dict[_Key, _Cached] = {}
        self._data_ids: dict[object, int] = {}

    def forget_device(self, device_id: int) -> None:
        with self._lock:
            for key in [k for k in self._buckets if k[0] == device_id]:
                del self._buckets[key]

    def ingest(self, device: DeviceAuth, batch: Batch, now_ms: int) -> IngestResult:
        # Everything that needs no database is done before the transaction: with
        # SQLite every writer of every server process queues for that lock.
        prepared = self._prepare(batch)
        new_buckets: dict[_Key, _Cached] = {}
        new_data: dict[object, int] = {}
        with self.db.write() as conn:
            seen = conn.execute(
                select(ingest_batches.c.accepted).where(
                    ingest_batches.c.device_id == device.id,
                    ingest_batches.c.batch_id == batch.batch_id.bytes,
                )
            ).first()
            if seen is not None:
                return IngestResult(accepted=0, duplicates=len(batch.events))
            result = self._write(conn, device, prepared, now_ms, new_buckets, new_data)
            conn.execute(
                ingest_batches.insert().values(
                    device_id=device.id,
                    batch_id=batch.batch_id.bytes,
                    received_ms=now_ms,
                    accepted=result.accepted,
                    duplicates=result.duplicates,
                )
            )
        with self._lock:
            self._buckets.update(new_buckets)
            if len(self._data_ids) > _CACHE_LIMIT:
                self._data_ids.clear()
            self._data_ids.update(new_data)
        return result

    def _prepare(self, batch: Batch) -> _Prepared:
        streams: dict[str, _Stream] = {}
        hosts: dict[int, dict[str, Any]] = {}
        beats: list[HeartbeatEvent] = []
        host_count = 0
        focus: tuple[int, str, str] | None = None
        afk: tuple[int, str] | None = None
        # The newest focus and afk events (as (start ms, event)): what is current.
        last_focus: tuple[int, FocusEvent] | None = None
        last_afk: tuple[int, AfkEvent] | None = None
        for i, e in enumerate(batch.events):
            if isinstance(e, FocusEvent):
                start = self._stream(streams, e).add(e)
                if last_focus is None or start >= last_focus[0]:
                    last_focus = (start, e)
            elif isinstance(e, AfkEvent):
                start = self._stream(streams, e).add(e)
                if last_afk is None or start >= last_afk[0]:
                    last_afk = (start, e)
            elif isinstance(e, AwEvent):
                skey = "aw:" + e.bucket
                stream = streams.get(skey)
                if stream is None:
                    stream = streams[skey] = _Stream(e.bucket_type, (i, e))
                elif stream.type != e.bucket_type:
                    raise _type_conflict(i, e, stream.type, "an earlier event of this batch")
                start = stream.add_aw(e)
                # ActivityWatch's window and afk watchers say what is current too.
                if e.bucket_type == FOCUS_TYPE and (focus is None or start >= focus[0]):
                    focus = (start, str(e.data.get("app", "")), str(e.data.get("title", "")))
                elif e.bucket_type == AFK_TYPE and (afk is None or start >= afk[0]):
                    status = e.data.get("status")
                    afk = (start, _WL_ACTIVE if status == _AW_ACTIVE else str(status))
            elif isinstance(e, HostEvent):
                host_count += 1
                ts = round(e.start.timestamp() * 1000)
                hosts[ts] = {"ts_ms": ts, **e.data.model_dump()}
            else:
                beats.append(e)
        # The model's fields are read once per batch, not per event.
        if last_focus is not None and (focus is None or last_focus[0] >= focus[0]):
            focus = (last_focus[0], last_focus[1].data.app, last_focus[1].data.title)
        if last_afk is not None and (afk is None or last_afk[0] >= afk[0]):
            afk = (last_afk[0], last_afk[1].data.status)
        for stream in streams.values():
            # Payloads this process has stored before need no JSON and no hash.
            for key, payload in stream.payloads.items():
                if key not in self._data_ids and key not in stream.unknown:
                    text = _canonical(payload)
                    stream.unknown[key] = (data_hash(text), text)
        days = sorted(
            {
                start_ms // chunks.DAY_MS * chunks.DAY_S
                for stream in streams.values()
                for start_ms, _, _ in stream.rows.values()
            }
        )
        return _Prepared(
            streams,
            days,
            hosts,
            host_count,
            beats[-1].data if beats else None,
            len(beats),
            devices_store.Current(focus, afk),
        )

    @staticmethod
    def _stream(streams: dict[str, _Stream], e: FocusEvent | AfkEvent) -> _Stream:
        stream = streams.get(e.kind)
        if stream is None:
            stream = streams[e.kind] = _Stream(KIND_BUCKETS[e.kind][1])
        return stream

    def _write(
        self,
        conn: Connection,
        device: DeviceAuth,
        prepared: _Prepared,
        now_ms: int,
        new_buckets: dict[_Key, _Cached],
        new_data: dict[object, int],
    ) -> IngestResult:
        accepted = duplicates = updated = 0
        dirty: set[int] = set()
        bucket_ids = {
            key: self._bucket(conn, device, key, stream, now_ms, new_buckets)
            for key, stream in prepared.streams.items()
        }
        # Before anything else is written (so this transaction holds no row lock
        # another one could be waiting for): no compaction of these buckets may
        # run between this batch's reads of stored events and its writes. Then
        # days already compacted go back into rows (logically nothing changes,
        # so nothing is marked dirty; the compaction packs them again later).
        if bucket_ids:
            ids = sorted(set(bucket_ids.values()))
            chunks.lock_buckets(conn, ids, shared=True)
            chunks.unpack(self.db, conn, ids, prepared.days)
        for kind, stream in prepared.streams.items():
            bucket_id = bucket_ids[kind]
            data_ids = self._data_ids_for(conn, stream, new_data)
            a, d, u = self._store_stream(
                conn,
                device,
                kind,
                bucket_id,
                stream,
                data_ids,
                dirty if stream.reported else set(),
                new_buckets,
            )
            accepted, duplicates, updated = accepted + a, duplicates + d, updated + u
        if prepared.host_count:
            a, d = self._store_hosts(conn, device.id, prepared.hosts, prepared.host_count)
            accepted, duplicates = accepted + a, duplicates + d
        if dirty:
            mark_dirty(self.db, conn, device.id, dirty)
        devices_store.set_current(conn, device.id, prepared.current)
        last = prepared.last_beat
        devices_store.touch(
            conn,
            device.id,
            now_ms,
            agent_version=last.agent_version if last else None,
            spool_depth=last.spool_depth if last else None,
            dropped=last.dropped if last else None,
        )
        # Heartbeats are liveness, not history: applied, counted, not stored.
        accepted += prepared.beat_count
        return IngestResult(accepted=accepted, duplicates=duplicates, updated=updated)

    def _bucket(
        self,
        conn: Connection,
        device: DeviceAuth,
        stream_key: str,
        stream: _Stream,
        now_ms: int,
        new_buckets: dict[_Key, _Cached],
    ) -> int:
        """The stream's bucket, created if new. Cached only once its type is known
        to be the stream's (a bucket never changes type)."""
        key = (device.id, device.created_ms, stream_key)
        cached = new_buckets.get(key) or self._buckets.get(key)
        if cached is not None and cached[2] == stream.type:
            return cached[0]
        if stream.name is None:  # the agent's own focus or afk bucket
            name, client = bucket_name(stream_key, device.hostname), "worklens-agent"
        else:
            name, client = stream.name, stream.client
        self.db.insert_ignore(
            conn,
            buckets,
            [
                {
                    "device_id": device.id,
                    "name": name,
                    "type": stream.type,
                    "client": client,
                    "created_ms": now_ms,
                }
            ],
        )
        row = conn.execute(
            select(buckets.c.id, buckets.c.type, buckets.c.max_duration_ms).where(
                buckets.c.device_id == device.id, buckets.c.name == name
            )
        ).one()
        if row.type != stream.type and stream.first is not None:
            raise _type_conflict(*stream.first, row.type, "the device's stored bucket")
        new_buckets[key] = (row.id, row.max_duration_ms, row.type)
        return int(row.id)

    def _data_ids_for(
        self, conn: Connection, stream: _Stream, new_data: dict[object, int]
    ) -> dict[object, int]:
        """Row id of each payload of the stream, inserting the ones never seen before."""
        ids: dict[object, int] = {}
        missing: dict[bytes, tuple[str, list[object]]] = {}
        for key in stream.payloads:
            known = new_data.get(key) or self._data_ids.get(key)
            if known is not None:
                ids[key] = known
                continue
            found = stream.unknown.get(key)
            if found is None:  # evicted from the cache since _prepare
                text = _canonical(stream.payloads[key])
                found = (data_hash(text), text)
            missing.setdefault(found[0], (found[1], []))[1].append(key)
        if missing:
            stored = insert_payloads(self.db, conn, {h: text for h, (text, _) in missing.items()})
            for h, (_, keys) in missing.items():
                for key in keys:
                    ids[key] = new_data[key] = stored[h]
        if len(ids) != len(stream.payloads):
            raise RuntimeError("an event payload row vanished during ingest")
        return ids

    def _store_stream(
        self,
        conn: Connection,
        device: DeviceAuth,
        kind: str,
        bucket_id: int,
        stream: _Stream,
        data_ids: dict[object, int],
        dirty: set[int],
        new_buckets: dict[_Key, _Cached],
    ) -> tuple[int, int, int]:
        key = (device.id, device.created_ms, kind)
        known = new_buckets.get(key) or self._buckets.get(key) or (bucket_id, 0, stream.type)
        written = write_rows(
            self.db,
            conn,
            bucket_id,
            [(start, uid, dur, data_ids[k]) for uid, (start, dur, k) in stream.rows.items()],
            known[1],
        )
        dirty.update(written.touched)
        if written.longest > known[1]:
            new_buckets[key] = (bucket_id, written.longest, known[2])
        in_batch = stream.count - len(stream.rows)  # the same event twice in one batch
        return written.fresh, written.duplicates + in_batch, written.updated

    def _store_hosts(
        self, conn: Connection, device_id: int, rows: dict[int, dict[str, Any]], count: int
    ) -> tuple[int, int]:
        existing: set[int] = set()
        stamps = list(rows)
        for start in range(0, len(stamps), 500):
            existing.update(
                r.ts_ms
                for r in conn.execute(
                    select(host_samples.c.ts_ms).where(
                        host_samples.c.device_id == device_id,
                        host_samples.c.ts_ms.in_(stamps[start : start + 500]),
                    )
                )
            )
        fresh = [{"device_id": device_id, **r} for ts, r in rows.items() if ts not in existing]
        if fresh:
            columns = tuple(fresh[0])
            self.db.bulk_insert(conn, host_samples, columns, [tuple(r.values()) for r in fresh])
        return len(fresh), count - len(fresh)


def _type_conflict(index: int, e: AwEvent, existing: str, where: str) -> ApiError:
    """The 422 for an AW event whose bucket has another type: the batch is refused
    (the agent then sends its events one by one, and this one alone fails)."""
    what = f"event {e.id}: bucket {e.bucket!r} has type {e.bucket_type!r}"
    return ApiError(
        422,
        "invalid message",
        [
            {
                "loc": ["events", index, "aw", "bucket_type"],
                "msg": f"{what}, but {where} has type {existing!r}",
                "type": "bucket_type_conflict",
            }
        ],
    )


class Written(NamedTuple):
    fresh: int
    duplicates: int
    updated: int
    touched: set[int]  # starts (s) of the hours whose active time may have changed
    longest: int  # the longest duration (ms) written


def write_rows(
    db: Database,
    conn: Connection,
    bucket_id: int,
    rows: list[tuple[int, bytes, int, int]],
    known_max_ms: int,
) -> Written:
    """Store one bucket's events ``(start_ms, uid, duration_ms, data_id)``, at most
    one per (start, uid): new ones inserted, longer copies of stored ones
    extended (a heartbeat merge sent again), the rest counted as duplicates.
    The bucket's longest duration grows with them (reads look back that far).
    The one write of events, for ingest and for imports alike."""
    existing = existing_durations(conn, bucket_id, [(r[0], r[1]) for r in rows])
    fresh: list[tuple[int, int, bytes, int, int]] = []
    longer: list[dict[str, Any]] = []
    touched: set[int] = set()
    duplicates = longest = 0
    for start_ms, uid, dur, data_id in rows:
        old = existing.get((start_ms, uid))
        if old is None:
            fresh.append((bucket_id, start_ms, uid, dur, data_id))
            touched.update(hours_between(start_ms, start_ms + dur))
        elif dur > old:
            longer.append({"b_start": start_ms, "b_uid": uid, "b_dur": dur})
            touched.update(hours_between(start_ms + old, start_ms + dur))
        else:
            duplicates += 1
            continue
        longest = max(longest, dur)
    db.bulk_insert(conn, events, chunks.EVENT_COLUMNS, fresh)
    if longer:
        conn.execute(
            update(events)
            .where(
                events.c.bucket_id == bucket_id,
                events.c.start_ms == bindparam("b_start"),
                events.c.uid == bindparam("b_uid"),
            )
            .values(duration_ms=bindparam("b_dur")),
            longer,
        )
    if longest > known_max_ms:
        conn.execute(
            update(buckets)
            .where(buckets.c.id == bucket_id)
            .values(
                max_duration_ms=case(
                    (buckets.c.max_duration_ms < longest, longest),
                    else_=buckets.c.max_duration_ms,
                )
            )
        )
    return Written(len(fresh), duplicates, len(longer), touched, longest)


def existing_durations(
    conn: Connection, bucket_id: int, keys: list[tuple[int, bytes]]
) -> dict[tuple[int, bytes], int]:
    """Stored duration of those (start, event id) keys that are stored already.

    Agents send events in time order, so a batch covers a short span: reading
    that span by primary-key range and matching in Python is much cheaper than
    a thousand-term tuple IN. A batch with gaps (a replayed backlog) is read
    as one range per cluster of starts.
    """
    wanted = set(keys)
    found: dict[tuple[int, bytes], int] = {}
    for lo, hi in _clusters(sorted(k[0] for k in keys), gap=HOUR_MS):
        for start_ms, uid, duration_ms in conn.execute(
            select(events.c.start_ms, events.c.uid, events.c.duration_ms).where(
                events.c.bucket_id == bucket_id,
                events.c.start_ms >= lo,
                events.c.start_ms <= hi,
            )
        ):
            key = (start_ms, bytes(uid))
            if key in wanted:
                found[key] = duration_ms
    return found


def insert_payloads(db: Database, conn: Connection, by_hash: dict[bytes, str]) -> dict[bytes, int]:
    """Row id of each payload (by hash of its canonical JSON), inserting new ones.
    Sorted: concurrent writers then lock new rows in the same order, so
    PostgreSQL never sees two of them wait on each other (deadlock)."""
    hashes = sorted(by_hash)
    db.insert_ignore(conn, event_data, [{"hash": h, "data": by_hash[h]} for h in hashes])
    out: dict[bytes, int] = {}
    for start in range(0, len(hashes), 500):
        chunk = hashes[start : start + 500]
        for row in conn.execute(
            select(event_data.c.id, event_data.c.hash).where(event_data.c.hash.in_(chunk))
        ):
            out[bytes(row.hash)] = int(row.id)
    if len(out) != len(by_hash):
        raise RuntimeError("an event payload row vanished while it was being written")
    return out


def _clusters(sorted_values: list[int], gap: int) -> list[tuple[int, int]]:
    """[lo, hi] ranges covering the values, split where two neighbours are > gap apart."""
    out: list[tuple[int, int]] = []
    for v in sorted_values:
        if out and v - out[-1][1] <= gap:
            out[-1] = (out[-1][0], v)
        else:
            out.append((v, v))
    return out
