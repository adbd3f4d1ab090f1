"""AW's export format out of, and into, an organization.

Export streams ``{"buckets": {id: {<bucket>, "events": [...]}}}`` bucket by
bucket and slice by slice (events newest first, as AW exports them), so its
memory does not grow with the data.

Import stores each bucket of the file as a bucket of one device (created if
missing, with the file's type and client; its hostname is the device's), in
one transaction: everything or nothing. Events follow the ingest rules of
``store.ingest``: an event is keyed by (start, event id); stored again it is a
duplicate, unless longer, then its duration grows; payloads are deduplicated
in ``event_data``; days already compacted are unpacked first; the hours that
change are marked for the rollups. The event id is the file's id when it is 32
hex digits (a WorkLens export), else derived from the bucket and the file's id
(or, without one, from start and payload), so importing a file twice changes
nothing the second time. Times are stored in whole ms (start and end rounded
down, so touching events still touch).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.exc import IntegrityError

from worklens.query2 import Event
from worklens.server.aw.buckets import AwBucket, bucket_json
from worklens.server.aw.events import AW_ACTIVE, WL_ACTIVE, iter_events
from worklens.server.store import chunks
from worklens.server.store.buckets import AFK_TYPE, REPORTED_TYPES
from worklens.server.store.db import Database
from worklens.server.store.ingest import canonical_json, data_hash, insert_payloads, write_rows
from worklens.server.store.rollups import mark_dirty
from worklens.server.store.schema import buckets, devices

MAX_EVENT_MS = 366 * 86_400_000
MAX_PAYLOAD_CHARS = 64 * 1024
HOUR_MS = 3_600_000
FORMAT_HINT = 'AW\'s export format: {"buckets": {"<id>": {"type": ..., "events": [...]}}}'


class BadImport(ValueError):
    """An import refused as a whole; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# --- export ---------------------------------------------------------------------------


def export_chunks(
    db: Database, chosen: list[AwBucket], spans: dict[int, tuple[int, int]]
) -> Iterator[bytes]:
    """The export document of ``chosen`` buckets, as chunks of UTF-8 JSON."""
    yield b'{"buckets":{'
    for i, bucket in enumerate(chosen):
        extent = spans.get(bucket.pk)
        head = _dumps(bucket_json(bucket, extent))[:-1]  # reopened for "events"
        yield f'{"," if i else ""}{_dumps(bucket.id)}:{head},"events":['.encode()
        if extent is not None:
            first = True
            batch: list[str] = []
            found = iter_events(db, bucket, extent[0], extent[1] + 1, newest_first=True)
            for event in found:
                batch.append(_dumps(event.to_json()))
                if len(batch) == 1000:
                    yield (("" if first else ",") + ",".join(batch)).encode()
                    first, batch = False, []
            if batch:
                yield (("" if first else ",") + ",".join(batch)).encode()
        yield b"]}"
    yield b"}}"


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


# --- import: validation ------------------------------------------------------------------


@dataclass
class _Bucket:
    name: str
    type: str
    client: str
    created_ms: int | None
    # (start_ms, uid) -> [duration_ms, canonical payload JSON]; the longest copy wins
    rows: dict[tuple[int, bytes], list[Any]] = field(default_factory=dict)


def parse(obj: Any) -> list[_Bucket]:
    """The file's buckets, fully validated; BadImport (400) naming what is wrong."""
    if not isinstance(obj, dict) or not isinstance(obj.get("buckets"), dict):
        raise BadImport(400, f"expected {FORMAT_HINT}")
    out = []
    for key, raw in obj["buckets"].items():
        where = f"bucket {key!r}"
        if not isinstance(raw, dict):
            raise BadImport(400, f"{where}: must be an object")
        if raw.get("id") not in (None, key):
            raise BadImport(400, f"{where}: its 'id' {raw['id']!r} differs from its key")
        if not 0 < len(key) <= 255:
            raise BadImport(400, f"{where}: an id must have 1 to 255 characters")
        btype, client = raw.get("type"), raw.get("client", "")
        if not isinstance(btype, str) or not 0 < len(btype) <= 64:
            raise BadImport(400, f"{where}: 'type' must be a string of 1 to 64 characters")
        if not isinstance(client, str) or len(client) > 128:
            raise BadImport(400, f"{where}: 'client' must be a string of at most 128 characters")
        bucket = _Bucket(key, btype, client, _created_ms(raw.get("created"), where))
        evs = raw.get("events")
        if not isinstance(evs, list):
            raise BadImport(400, f"{where}: 'events' must be a list")
        for i, item in enumerate(evs):
            try:
                _add(bucket, item)
            except ValueError as exc:
                raise BadImport(400, f"{where}, event {i}: {exc}") from None
        out.append(bucket)
    return out


def _created_ms(value: Any, where: str) -> int | None:
    if value is None:
        return None
    try:
        dt = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        dt = None
    if dt is None:
        raise BadImport(400, f"{where}: 'created' must be an ISO 8601 timestamp")
    return round((dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp() * 1000)


def _add(bucket: _Bucket, item: Any) -> None:
    event = Event.from_json(item)  # ValueError with the reason
    start, end = event.start_us // 1000, event.end_us // 1000
    if start < 0:
        raise ValueError("timestamp before 1970")
    if end - start > MAX_EVENT_MS:
        raise ValueError("duration longer than 366 days")
    data = dict(event.data)
    if bucket.type == AFK_TYPE and data.get("status") == AW_ACTIVE:
        data["status"] = WL_ACTIVE
    try:
        text = canonical_json(data)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"'data' is not JSON: {exc}") from None
    if len(text) > MAX_PAYLOAD_CHARS:
        raise ValueError(f"'data' is longer than {MAX_PAYLOAD_CHARS} characters as JSON")
    uid = _uid(bucket.name, event.id, start, text)
    prev = bucket.rows.get((start, uid))
    if prev is None or end - start > prev[0]:
        bucket.rows[(start, uid)] = [end - start, text]


def _uid(bucket: str, ident: int | str | None, start_ms: int, text: str) -> bytes:
    if isinstance(ident, str) and len(ident) == 32:
        try:
            return bytes.fromhex(ident)
        except ValueError:
            pass
    seed = f"aw-import\0{bucket}\0" + (
        json.dumps(ident) if ident is not None else f"{start_ms}\0{text}"
    )
    return hashlib.blake2b(seed.encode(), digest_size=16).digest()


# --- import: storing ------------------------------------------------------------------------


def import_buckets(
    db: Database, org_id: int, device_id: int, obj: Any, now_ms: int
) -> dict[str, int]:
    """Validate ``obj`` (AW's export format) and store it into the device, all or nothing."""
    parsed = parse(obj)
    try:
        with db.write() as conn:
            found = conn.execute(
                select(devices.c.id).where(devices.c.id == device_id, devices.c.org_id == org_id)
            ).first()
            if found is None:
                raise BadImport(404, f"no device {device_id} in this organization")
            return _store(db, conn, device_id, parsed, now_ms)
    except IntegrityError:
        raise BadImport(409, "the bucket changed while importing; try again") from None


def _store(
    db: Database, conn: Connection, device_id: int, parsed: list[_Bucket], now_ms: int
) -> dict[str, int]:
    pks: dict[str, tuple[int, int]] = {}  # name -> (bucket id, max duration)
    for b in parsed:
        db.insert_ignore(
            conn,
            buckets,
            [
                {
                    "device_id": device_id,
                    "name": b.name,
                    "type": b.type,
                    "client": b.client,
                    "created_ms": b.created_ms if b.created_ms is not None else now_ms,
                }
            ],
        )
        row = conn.execute(
            select(buckets.c.id, buckets.c.type, buckets.c.max_duration_ms).where(
                buckets.c.device_id == device_id, buckets.c.name == b.name
            )
        ).one()
        if row.type != b.type:
            raise BadImport(
                409,
                f"bucket {b.name!r}: device {device_id} has it with type {row.type!r}, "
                f"not {b.type!r}",
            )
        pks[b.name] = (int(row.id), int(row.max_duration_ms))
    ids = sorted(pk for pk, _ in pks.values())
    days = {chunks.day_of(start) for b in parsed for start, _ in b.rows}
    chunks.lock_buckets(conn, ids, shared=True)  # as ingest: no compaction meanwhile
    chunks.unpack(db, conn, ids, days)
    texts = {text for b in parsed for _, text in b.rows.values()}
    stored = insert_payloads(db, conn, {data_hash(t): t for t in texts})
    data_ids = {t: stored[data_hash(t)] for t in texts}
    totals = {"buckets": len(parsed), "accepted": 0, "duplicates": 0, "updated": 0}
    dirty: set[int] = set()
    for b in parsed:
        pk, known_max = pks[b.name]
        rows = [(start, uid, dur, data_ids[text]) for (start, uid), (dur, text) in b.rows.items()]
        written = write_rows(db, conn, pk, rows, known_max)
        if b.type in REPORTED_TYPES:
            dirty.update(written.touched)
        totals["accepted"] += written.fresh
        totals["duplicates"] += written.duplicates
        totals["updated"] += written.updated
    mark_dirty(db, conn, device_id, dirty)
    return totals
