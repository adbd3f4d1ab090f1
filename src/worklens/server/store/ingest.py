"""Writing batches of events: idempotent, whole batch in one transaction."""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Connection, bindparam, case, select, update

from worklens.protocol.messages import (
    AfkEvent,
    Batch,
    FocusEvent,
    HeartbeatEvent,
    HostEvent,
    IngestResult,
)
from worklens.server.store import devices as devices_store
from worklens.server.store.buckets import KIND_BUCKETS, bucket_name
from worklens.server.store.db import Database
from worklens.server.store.devices import DeviceAuth
from worklens.server.store.schema import (
    buckets,
    event_data,
    events,
    host_samples,
    ingest_batches,
    rollup_dirty,
)

HOUR_MS = 3_600_000
_CACHE_LIMIT = 200_000


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


class EventWriter:
    """Stores batches. Holds per-process caches of ids that only ever get added
    (bucket and payload ids), filled after commit so a rolled-back transaction
    never leaves a dangling id behind."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._lock = threading.Lock()
        self._buckets: dict[tuple[int, str], tuple[int, int]] = {}  # -> (id, max_duration_ms)
        self._data_ids: dict[object, int] = {}

    def forget_device(self, device_id: int) -> None:
        with self._lock:
            for key in [k for k in self._buckets if k[0] == device_id]:
                del self._buckets[key]

    def ingest(self, device: DeviceAuth, batch: Batch, now_ms: int) -> IngestResult:
        new_buckets: dict[tuple[int, str], tuple[int, int]] = {}
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
            result = self._write(conn, device, batch, now_ms, new_buckets, new_data)
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

    def _write(
        self,
        conn: Connection,
        device: DeviceAuth,
        batch: Batch,
        now_ms: int,
        new_buckets: dict[tuple[int, str], tuple[int, int]],
        new_data: dict[object, int],
    ) -> IngestResult:
        streams: dict[str, list[FocusEvent | AfkEvent]] = {}
        hosts: list[HostEvent] = []
        beats: list[HeartbeatEvent] = []
        for e in batch.events:
            if isinstance(e, FocusEvent | AfkEvent):
                streams.setdefault(e.kind, []).append(e)
            elif isinstance(e, HostEvent):
                hosts.append(e)
            else:
                beats.append(e)

        accepted = duplicates = updated = 0
        dirty: set[int] = set()
        for kind, evs in streams.items():
            bucket_id = self._bucket(conn, device, kind, now_ms, new_buckets)
            data_ids = self._data_ids_for(conn, [e.data for e in evs], new_data)
            a, d, u = self._store_stream(
                conn, device.id, kind, bucket_id, evs, data_ids, dirty, new_buckets
            )
            accepted, duplicates, updated = accepted + a, duplicates + d, updated + u
        if hosts:
            a, d = self._store_hosts(conn, device.id, hosts)
            accepted, duplicates = accepted + a, duplicates + d
        if dirty:
            self._mark_dirty(conn, device.id, dirty)
        last = beats[-1].data if beats else None
        devices_store.touch(
            conn,
            device.id,
            now_ms,
            agent_version=last.agent_version if last else None,
            spool_depth=last.spool_depth if last else None,
            dropped=last.dropped if last else None,
        )
        # Heartbeats are liveness, not history: applied, counted, not stored.
        accepted += len(beats)
        return IngestResult(accepted=accepted, duplicates=duplicates, updated=updated)

    def _bucket(
        self,
        conn: Connection,
        device: DeviceAuth,
        kind: str,
        now_ms: int,
        new_buckets: dict[tuple[int, str], tuple[int, int]],
    ) -> int:
        key = (device.id, kind)
        cached = new_buckets.get(key) or self._buckets.get(key)
        if cached is not None:
            return cached[0]
        btype = KIND_BUCKETS[kind][1]
        name = bucket_name(kind, device.hostname)
        self.db.insert_ignore(
            conn,
            buckets,
            [
                {
                    "device_id": device.id,
                    "name": name,
                    "type": btype,
                    "client": "worklens-agent",
                    "created_ms": now_ms,
                }
            ],
        )
        row = conn.execute(
            select(buckets.c.id, buckets.c.max_duration_ms).where(
                buckets.c.device_id == device.id, buckets.c.name == name
            )
        ).one()
        new_buckets[key] = (row.id, row.max_duration_ms)
        return int(row.id)

    def _data_ids_for(
        self, conn: Connection, payloads: list[BaseModel], new_data: dict[object, int]
    ) -> list[int]:
        """Row id of each payload, inserting the ones never seen before."""
        out: list[int | None] = []
        keys: list[tuple[object, ...]] = []
        missing: dict[bytes, tuple[str, list[int]]] = {}
        for i, p in enumerate(payloads):
            # A plain tuple: hashing and comparing it is several times cheaper
            # than a pydantic model's __hash__/__eq__, and this runs per event.
            key = (type(p), *p.__dict__.values())
            keys.append(key)
            known = new_data.get(key) or self._data_ids.get(key)
            out.append(known)
            if known is None:
                text = canonical_json(p.model_dump())
                missing.setdefault(data_hash(text), (text, []))[1].append(i)
        if missing:
            # Sorted: concurrent batches then lock new rows in the same order, so
            # PostgreSQL never sees two of them wait on each other (deadlock).
            hashes = sorted(missing)
            self.db.insert_ignore(
                conn, event_data, [{"hash": h, "data": missing[h][0]} for h in hashes]
            )
            for start in range(0, len(hashes), 500):
                chunk = hashes[start : start + 500]
                for row in conn.execute(
                    select(event_data.c.id, event_data.c.hash).where(event_data.c.hash.in_(chunk))
                ):
                    for i in missing[bytes(row.hash)][1]:
                        out[i] = row.id
                        new_data[keys[i]] = row.id
        ids = [x for x in out if x is not None]
        if len(ids) != len(out):
            raise RuntimeError("an event payload row vanished during ingest")
        return ids

    def _store_stream(
        self,
        conn: Connection,
        device_id: int,
        kind: str,
        bucket_id: int,
        evs: list[FocusEvent | AfkEvent],
        data_ids: list[int],
        dirty: set[int],
        new_buckets: dict[tuple[int, str], tuple[int, int]],
    ) -> tuple[int, int, int]:
        # Within one batch the same event may appear twice (a merge re-sent before
        # the first send was acknowledged): the longest copy wins.
        rows: dict[bytes, dict[str, Any]] = {}
        for e, data_id in zip(evs, data_ids, strict=True):
            uid = e.id.bytes
            dur = to_ms(e.duration)
            prev = rows.get(uid)
            if prev is None or dur > prev["duration_ms"]:
                start_ms = prev["start_ms"] if prev else round(e.start.timestamp() * 1000)
                rows[uid] = {
                    "bucket_id": bucket_id,
                    "start_ms": start_ms,
                    "uid": uid,
                    "duration_ms": dur,
                    "data_id": data_id,
                }
        duplicates = len(evs) - len(rows)
        existing = self._existing(
            conn, bucket_id, [(r["start_ms"], uid) for uid, r in rows.items()]
        )
        fresh: list[dict[str, Any]] = []
        longer: list[dict[str, Any]] = []
        for uid, r in rows.items():
            old = existing.get((r["start_ms"], uid))
            if old is None:
                fresh.append(r)
                dirty.update(hours_between(r["start_ms"], r["start_ms"] + r["duration_ms"]))
            elif r["duration_ms"] > old:
                longer.append(r)
                dirty.update(hours_between(r["start_ms"] + old, r["start_ms"] + r["duration_ms"]))
            else:
                duplicates += 1
        if fresh:
            self.db.bulk_insert(
                conn,
                events,
                ("bucket_id", "start_ms", "uid", "duration_ms", "data_id"),
                [
                    (bucket_id, r["start_ms"], r["uid"], r["duration_ms"], r["data_id"])
                    for r in fresh
                ],
            )
        if longer:
            conn.execute(
                update(events)
                .where(
                    events.c.bucket_id == bucket_id,
                    events.c.start_ms == bindparam("b_start"),
                    events.c.uid == bindparam("b_uid"),
                )
                .values(duration_ms=bindparam("b_dur")),
                [
                    {"b_start": r["start_ms"], "b_uid": r["uid"], "b_dur": r["duration_ms"]}
                    for r in longer
                ],
            )
        longest = max((r["duration_ms"] for r in (*fresh, *longer)), default=0)
        key = (device_id, kind)
        known = new_buckets.get(key) or self._buckets.get(key) or (bucket_id, 0)
        if longest > known[1]:
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
            new_buckets[key] = (bucket_id, longest)
        return len(fresh), duplicates, len(longer)

    @staticmethod
    def _existing(
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

    def _store_hosts(
        self, conn: Connection, device_id: int, hosts: list[HostEvent]
    ) -> tuple[int, int]:
        rows: dict[int, dict[str, Any]] = {}
        for e in hosts:
            ts = round(e.start.timestamp() * 1000)
            rows[ts] = {"device_id": device_id, "ts_ms": ts, **e.data.model_dump()}
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
        fresh = [r for ts, r in rows.items() if ts not in existing]
        if fresh:
            columns = tuple(fresh[0])
            self.db.bulk_insert(conn, host_samples, columns, [tuple(r.values()) for r in fresh])
        return len(fresh), len(hosts) - len(fresh)

    def _mark_dirty(self, conn: Connection, device_id: int, hours: Iterable[int]) -> None:
        # A fresh random gen, not a counter: a counter restarts when a refresh
        # deletes the mark, and a refresh that read the old mark would then
        # mistake the new one for it (see Rollups._store).
        gen = secrets.randbits(62)
        stmt: Any = self.db.insert(rollup_dirty)
        stmt = stmt.on_conflict_do_update(
            index_elements=[rollup_dirty.c.device_id, rollup_dirty.c.hour_s],
            set_={"gen": stmt.excluded.gen},
        )
        conn.execute(
            stmt, [{"device_id": device_id, "hour_s": h, "gen": gen} for h in sorted(hours)]
        )


def _clusters(sorted_values: list[int], gap: int) -> list[tuple[int, int]]:
    """[lo, hi] ranges covering the values, split where two neighbours are > gap apart."""
    out: list[tuple[int, int]] = []
    for v in sorted_values:
        if out and v - out[-1][1] <= gap:
            out[-1] = (out[-1][0], v)
        else:
            out.append((v, v))
    return out
