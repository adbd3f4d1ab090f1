"""The agent's local copy of the ActivityWatch buckets its AW API received.

ActivityWatch clients read back what they wrote (events, counts, the last event
a heartbeat merges into), so the agent keeps the events of the last
``retention`` seconds in a small SQLite file (WAL) next to the spool. It is a
working copy, not the record: every new or extended event is also put into the
spool and delivered to the server, which keeps the history. So the file uses
``synchronous=NORMAL`` (a power cut may lose its last commits, never the spool's).

Times are integer microseconds since the epoch (no float rounding in merges);
each event has AW's integer id (never reused: AUTOINCREMENT) and the WorkLens
event id it is sent under (``uid``), which stays the same while a heartbeat
extends the event, so the spool replaces the queued copy and the server updates
its duration.

Thread-safe: one connection under one lock, as the spool.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from worklens.agent.sqlite_file import open_private
from worklens.timeline.heartbeat import Beat, merge

__all__ = ["AwBucket", "AwEvent", "AwStore", "NoSuchBucket", "from_us", "to_us"]

SCHEMA_VERSION = 1
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS buckets (
    name     TEXT PRIMARY KEY,
    type     TEXT NOT NULL,
    client   TEXT NOT NULL,
    hostname TEXT NOT NULL,
    created  TEXT NOT NULL,
    data     TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    bucket   TEXT NOT NULL,
    start_us INTEGER NOT NULL,
    end_us   INTEGER NOT NULL,
    data     TEXT NOT NULL,
    uid      BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_start ON events (bucket, start_us);
CREATE INDEX IF NOT EXISTS events_by_end ON events (bucket, end_us);
CREATE TABLE IF NOT EXISTS meta (
    k TEXT PRIMARY KEY,
    v
) WITHOUT ROWID;
"""


def to_us(dt: datetime) -> int:
    """An aware datetime as integer microseconds since the epoch (exact)."""
    return (dt - EPOCH) // _US


def from_us(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def _nothing(events: list[AwEvent]) -> None:
    pass


def _dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class AwBucket:
    id: str
    type: str
    client: str
    hostname: str
    created: str  # ISO 8601, as given or when created
    data: dict[str, Any]
    start_us: int | None = None  # of its first event, if any
    end_us: int | None = None  # of its last event


@dataclass(frozen=True, slots=True)
class AwEvent:
    id: int  # ActivityWatch's event id
    start_us: int
    end_us: int
    data: dict[str, Any]
    uid: uuid.UUID  # the WorkLens event id it is delivered under

    @property
    def duration_s(self) -> float:
        return (self.end_us - self.start_us) / 1e6


Publish = Callable[[list[AwEvent]], None]


class AwStore:
    def __init__(
        self,
        path: Path,
        *,
        retention_s: float = 7 * 86400,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self.retention_s = retention_s
        self._clock = clock
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = self._open()

    # --- opening ------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        def init(db: sqlite3.Connection) -> None:
            if db.execute("SELECT v FROM meta WHERE k = 'device_id'").fetchone() is None:
                db.execute("INSERT INTO meta (k, v) VALUES ('device_id', ?)", (str(uuid.uuid4()),))

        # NORMAL: the spool (FULL) holds what must survive a power cut; this is
        # a local copy for the watchers' reads.
        return open_private(self.path, _SCHEMA, SCHEMA_VERSION, synchronous="NORMAL", init=init)

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("AW store is closed")
        return self._db

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction under the lock."""
        with self._lock:
            db = self._conn()
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            yield self._conn()

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    # --- buckets --------------------------------------------------------------------

    def device_id(self) -> str:
        with self._read() as db:
            return str(db.execute("SELECT v FROM meta WHERE k = 'device_id'").fetchone()[0])

    def create_bucket(
        self,
        bucket_id: str,
        btype: str,
        client: str,
        hostname: str,
        created: str,
        data: dict[str, Any],
    ) -> bool:
        """Create the bucket; False (and nothing changes) if it exists."""
        with self._tx() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO buckets (name, type, client, hostname, created, data)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (bucket_id, btype, client, hostname, created, _dumps(data)),
            )
            return cur.rowcount == 1

    def bucket(self, bucket_id: str, extent: bool = False) -> AwBucket | None:
        """The bucket; with ``extent``, also the start and end of its events."""
        found = self._buckets(bucket_id, extent)
        return found[0] if found else None

    def buckets(self) -> list[AwBucket]:
        return self._buckets(None, True)

    def _buckets(self, name: str | None, extent: bool) -> list[AwBucket]:
        # Both extents are one index lookup: (bucket, start_us) and (bucket, end_us).
        query = "SELECT b.name, b.type, b.client, b.hostname, b.created, b.data, " + (
            "(SELECT min(start_us) FROM events WHERE bucket = b.name),"
            " (SELECT max(end_us) FROM events WHERE bucket = b.name)"
            if extent
            else "NULL, NULL"
        )
        query += " FROM buckets b"
        with self._read() as db:
            if name is None:
                rows = db.execute(query + " ORDER BY b.name").fetchall()
            else:
                rows = db.execute(query + " WHERE b.name = ?", (name,)).fetchall()
        return [AwBucket(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6], r[7]) for r in rows]

    def delete_bucket(self, bucket_id: str) -> bool:
        """Delete the bucket and its events; False if there is no such bucket."""
        with self._tx() as db:
            if db.execute("DELETE FROM buckets WHERE name = ?", (bucket_id,)).rowcount == 0:
                return False
            db.execute("DELETE FROM events WHERE bucket = ?", (bucket_id,))
            return True

    # --- events -------------------------------------------------------------------

    def events(
        self,
        bucket_id: str,
        start_us: int | None = None,
        end_us: int | None = None,
        limit: int | None = None,
    ) -> list[AwEvent]:
        """Events overlapping ``[start_us, end_us]``, cut to it, newest first (as
        aw-server-rust answers: an event touching the range counts)."""
        lo = -(2**63) if start_us is None else start_us
        hi = 2**63 - 1 if end_us is None else end_us
        if lo > hi:
            return []
        with self._read() as db:
            rows = db.execute(
                "SELECT id, start_us, end_us, data, uid FROM events"
                " WHERE bucket = ? AND end_us >= ? AND start_us <= ?"
                " ORDER BY start_us DESC, id DESC LIMIT ?",
                (bucket_id, lo, hi, -1 if limit is None else limit),
            ).fetchall()
        return [
            AwEvent(i, max(s, lo), min(e, hi), json.loads(d), uuid.UUID(bytes=u))
            for i, s, e, d, u in rows
        ]

    def count(self, bucket_id: str, start_us: int | None = None, end_us: int | None = None) -> int:
        lo = -(2**63) if start_us is None else start_us
        hi = 2**63 - 1 if end_us is None else end_us
        with self._read() as db:
            return int(
                db.execute(
                    "SELECT count(*) FROM events"
                    " WHERE bucket = ? AND end_us >= ? AND start_us <= ?",
                    (bucket_id, lo, hi),
                ).fetchone()[0]
            )

    def event(self, bucket_id: str, event_id: int) -> AwEvent | None:
        with self._read() as db:
            row = db.execute(
                "SELECT id, start_us, end_us, data, uid FROM events WHERE bucket = ? AND id = ?",
                (bucket_id, event_id),
            ).fetchone()
        return None if row is None else _event(row)

    def delete_event(self, bucket_id: str, event_id: int) -> bool:
        with self._tx() as db:
            cur = db.execute(
                "DELETE FROM events WHERE bucket = ? AND id = ?", (bucket_id, event_id)
            )
            return cur.rowcount == 1

    def insert(
        self,
        bucket_id: str,
        new: list[tuple[int | None, int, int, dict[str, Any]]],
        publish: Publish = _nothing,
    ) -> list[AwEvent]:
        """Store events (AW id or None, start, end, data); returns them with their
        ids. ``publish`` gets those to be sent (new or changed) before the
        transaction commits: if it raises, nothing is stored. Raises
        :class:`NoSuchBucket` if the bucket does not exist.

        An AW id of an event of this bucket replaces that event, as in
        aw-server-rust. It keeps its WorkLens id only if it keeps its start and
        data and does not get shorter (the server can only extend an event);
        otherwise it is sent as a new event, and the server keeps the old one too.
        A replacement identical to the stored event is not sent again. An id this
        bucket does not have is ignored: the event gets a new one.
        """
        out: list[AwEvent] = []
        changed: list[AwEvent] = []
        with self._tx() as db:
            _must_exist(db, bucket_id)
            for aw_id, start, end, data in new:
                old = None
                if aw_id is not None:
                    row = db.execute(
                        "SELECT id, start_us, end_us, data, uid FROM events"
                        " WHERE bucket = ? AND id = ?",
                        (bucket_id, aw_id),
                    ).fetchone()
                    old = None if row is None else _event(row)
                if old is None:
                    e = self._add(db, bucket_id, start, end, data)
                    out.append(e)
                    changed.append(e)
                    continue
                if old.start_us == start and old.data == data and end >= old.end_us:
                    uid, send = old.uid, end > old.end_us
                else:
                    uid, send = uuid.uuid4(), True
                db.execute(
                    "UPDATE events SET start_us = ?, end_us = ?, data = ?, uid = ? WHERE id = ?",
                    (start, end, _dumps(data), uid.bytes, old.id),
                )
                e = AwEvent(old.id, start, end, data, uid)
                out.append(e)
                if send:
                    changed.append(e)
            if changed:
                publish(changed)
        return out

    def heartbeat(
        self,
        bucket_id: str,
        start_us: int,
        end_us: int,
        data: dict[str, Any],
        pulsetime_s: float,
        max_duration_us: int,
        publish: Publish = _nothing,
    ) -> AwEvent:
        """Merge a heartbeat into the bucket's last event (the latest start), with
        ActivityWatch's rule (``timeline.heartbeat.merge``): same data, and the beat
        starts no earlier than that event and at most ``pulsetime_s`` after its
        end; the event then reaches the later of the two ends. Otherwise the beat
        is a new event. A merge that would make the event longer than
        ``max_duration_us`` starts a new event instead.

        Returns the resulting event; ``publish`` gets it, if new or longer,
        before the transaction commits (if it raises, nothing is stored).
        Raises :class:`NoSuchBucket` if the bucket does not exist.
        """
        with self._tx() as db:
            _must_exist(db, bucket_id)
            row = db.execute(
                "SELECT id, start_us, end_us, data, uid FROM events WHERE bucket = ?"
                " ORDER BY start_us DESC, id DESC LIMIT 1",
                (bucket_id,),
            ).fetchone()
            if row is not None:
                last = _event(row)
                merged, new = merge(
                    Beat(from_us(last.start_us), last.duration_s, last.data),
                    Beat(from_us(start_us), (end_us - start_us) / 1e6, data),
                    pulsetime_s,
                )
                if not new:
                    end = max(last.end_us, to_us(merged.end))
                    if end - last.start_us <= max_duration_us:
                        if end == last.end_us:
                            return last
                        db.execute("UPDATE events SET end_us = ? WHERE id = ?", (end, last.id))
                        extended = AwEvent(last.id, last.start_us, end, last.data, last.uid)
                        publish([extended])
                        return extended
            e = self._add(db, bucket_id, start_us, end_us, data)
            publish([e])
            return e

    def _add(
        self, db: sqlite3.Connection, bucket_id: str, start: int, end: int, data: dict[str, Any]
    ) -> AwEvent:
        uid = uuid.uuid4()
        cur = db.execute(
            "INSERT INTO events (bucket, start_us, end_us, data, uid) VALUES (?, ?, ?, ?, ?)",
            (bucket_id, start, end, _dumps(data), uid.bytes),
        )
        assert cur.lastrowid is not None
        return AwEvent(cur.lastrowid, start, end, data, uid)

    # --- retention --------------------------------------------------------------------

    def prune(self) -> int:
        """Forget events that ended more than ``retention_s`` ago; how many."""
        cutoff = round((self._clock() - self.retention_s) * 1e6)
        with self._tx() as db:
            n = db.execute("DELETE FROM events WHERE end_us < ?", (cutoff,)).rowcount
        if n:
            with self._lock:
                self._conn().execute("PRAGMA incremental_vacuum")
        return int(n)


class NoSuchBucket(KeyError):
    pass


def _must_exist(db: sqlite3.Connection, bucket_id: str) -> None:
    """In the writing transaction: a bucket deleted meanwhile gets no events."""
    if db.execute("SELECT 1 FROM buckets WHERE name = ?", (bucket_id,)).fetchone() is None:
        raise NoSuchBucket(bucket_id)


def _event(row: tuple[Any, ...]) -> AwEvent:
    i, s, e, d, u = row
    return AwEvent(i, s, e, json.loads(d), uuid.UUID(bytes=u))
