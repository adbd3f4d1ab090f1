"""The agent's durable on-disk queue: every event passes through here before it is sent.

Guarantees
----------
* **Durable.** SQLite in WAL mode with ``synchronous=FULL``: when :meth:`Spool.put`
  returns, the event is in the fsync'ed WAL and survives ``kill -9`` and a power cut.
* **At-least-once.** An item leaves the spool only through :meth:`Spool.ack`. A lease
  is kept in memory only, so whatever was leased but never acked (the process died
  mid-send) is simply pending again the next time the spool is opened.
* **Idempotency key.** Each row is keyed by the event id. Putting the same key again
  while it is pending replaces the payload in place (same queue position) and bumps
  ``version``; acking an item leased before that replacement does not delete the row,
  so the newer payload is still delivered. The server de-duplicates by the same key.
* **Retries.** :meth:`Spool.fail` schedules the next attempt with exponential backoff
  and jitter; after ``max_attempts`` the item is dead-lettered: kept on disk, not
  sent, visible in :meth:`Spool.stats` and :meth:`Spool.dead_letters`, and movable
  back with :meth:`Spool.requeue_dead`.
* **Bounded.** When pending + dead would exceed ``max_items`` the oldest rows are
  dropped (dead letters first) and a persisted ``dropped`` counter grows; ``put``
  never blocks waiting for room.

The file holds window titles, so it is created 0600 inside directories created 0700.
One spool file belongs to one agent process: two processes leasing from the same file
would each send every item (still harmless for the server, but wasteful).
"""

from __future__ import annotations

import logging
import random
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import msgpack

from worklens.agent.sqlite_file import open_private

__all__ = ["Spool", "SpoolItem", "SpoolStats"]

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1

_PENDING = 0
_DEAD = 1

# The WAL is cut back to this size after a checkpoint, so a burst (a long outage
# draining) does not leave a huge -wal file behind.
# Errors are stored for an operator to read, not to be parsed; keep them bounded.
_MAX_ERROR_CHARS = 1000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    key      NOT NULL UNIQUE,
    payload  BLOB NOT NULL,
    version  INTEGER NOT NULL DEFAULT 1,
    attempts INTEGER NOT NULL DEFAULT 0,
    state    INTEGER NOT NULL DEFAULT 0,
    next_at  REAL NOT NULL DEFAULT 0,
    created  REAL NOT NULL,
    error    TEXT
);
CREATE INDEX IF NOT EXISTS items_due ON items (state, next_at);
CREATE TABLE IF NOT EXISTS meta (
    k TEXT PRIMARY KEY,
    v
) WITHOUT ROWID;
"""
# Plain SQL only (no STRICT, RETURNING or UPSERT): the agent uses the system's
# SQLite, which is 3.26 on RHEL 8 and 3.34 on Debian 11.
# `key` and `meta.v` have no declared type on purpose: no type affinity, so a key
# "123" stays the text "123" and a UUID key can be stored as a 16-byte BLOB.
# AUTOINCREMENT: a seq is never reused, even after the newest row was acked and the
# process restarted, so an item leased before a restart can never be confused with a
# different row that later got the same seq.


@dataclass(frozen=True, slots=True)
class SpoolItem:
    seq: int  # spool row id; also the queue position (oldest first)
    key: str  # idempotency key: the event id (UUID string)
    payload: dict[str, Any]  # the event, JSON-compatible dict
    version: int  # bumps each time put() replaces the payload of the same key
    attempts: int  # failed delivery attempts so far
    error: str | None = None  # the last failure, for dead letters and operators


@dataclass(frozen=True, slots=True)
class SpoolStats:
    depth: int  # pending items (including leased ones in flight)
    dead: int  # dead-lettered items, kept on disk, not sent
    dropped: int  # items ever dropped by the size bound (persisted)
    oldest_age_s: float | None  # seconds since the oldest pending item was first put
    last_error: str | None  # the last error passed to fail() (persisted)
    last_error_at: float | None  # clock() time of that error
    in_flight: int  # items leased and not yet acked, failed or released


def _encode_key(key: str) -> str | bytes:
    """A canonical UUID string is stored as its 16 bytes (saves ~40 bytes per row in
    the table and as much again in the unique index); anything else as text. The two
    forms never collide: SQLite never considers a BLOB equal to a TEXT."""
    if not isinstance(key, str):
        raise TypeError(f"spool key must be str, not {type(key).__name__}")
    try:
        u = uuid.UUID(key)
    except ValueError:
        return key
    # Only the canonical form round-trips exactly; "{...}" or upper case stay text.
    return u.bytes if str(u) == key else key


def _decode_key(raw: str | bytes) -> str:
    return str(uuid.UUID(bytes=raw)) if isinstance(raw, bytes) else raw


def _pack(payload: dict[str, Any]) -> bytes:
    if not isinstance(payload, dict):
        raise TypeError(f"spool payload must be a dict, not {type(payload).__name__}")
    # msgpack: ~10% smaller than compact JSON for a focus event (168 vs 187 bytes)
    # and faster to decode; it raises TypeError here, before anything is written, for values that
    # are not JSON-compatible (datetime, UUID objects, ...).
    data: bytes = msgpack.packb(payload, use_bin_type=True)
    return data


def _unpack(data: bytes) -> dict[str, Any]:
    # strict_map_key=False: a dict with int keys was accepted by put(), so it must
    # not become a row that can never be read back.
    obj = msgpack.unpackb(data, raw=False, strict_map_key=False)
    if not isinstance(obj, dict):
        raise ValueError(f"payload is a {type(obj).__name__}, not a dict")
    return obj


class Spool:
    """A durable, bounded FIFO of events keyed by event id. Thread-safe.

    Concurrency: one connection shared under a lock (``check_same_thread=False``).
    SQLite allows one writer per file anyway, so a connection per thread would only
    move the contention into SQLite's file lock, with busy-timeouts and retries
    instead of a plain mutex; and the in-memory lease table and row count must
    change atomically with the rows they describe. Every call is short (one
    transaction), so collectors never wait long behind the sender.
    """

    def __init__(
        self,
        path: Path,
        *,
        max_items: int = 200_000,
        max_attempts: int = 10,
        base_backoff: float = 1.0,
        max_backoff: float = 300.0,
        clock: Callable[[], float] = time.time,
        lease_timeout: float = 300.0,
        rng: random.Random | None = None,
    ) -> None:
        if max_items < 1:
            raise ValueError(f"max_items must be at least 1, got {max_items}")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        if not base_backoff > 0:
            raise ValueError(f"base_backoff must be positive, got {base_backoff}")
        if not max_backoff >= base_backoff:
            raise ValueError(
                f"max_backoff ({max_backoff}) must be at least base_backoff ({base_backoff})"
            )
        if not lease_timeout > 0:
            raise ValueError(f"lease_timeout must be positive, got {lease_timeout}")
        self.path = Path(path)
        self.max_items = max_items
        self.max_attempts = max_attempts
        self.base_backoff = base_backoff
        self.max_backoff = max_backoff
        self.lease_timeout = lease_timeout
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()
        self._lock = threading.Lock()
        # seq -> clock() time the lease runs out. In memory only, on purpose: after a
        # crash nothing leased stays hidden, so nothing is lost (at-least-once).
        self._leased: dict[int, float] = {}
        self._db: sqlite3.Connection | None = self._open()
        try:
            self._count, self._dropped, self._last_error, self._last_error_at = self._load()
        except BaseException:
            self._db.close()
            raise

    # --- opening --------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        # FULL: the WAL is fsync'ed at every commit, so a returned put() survives
        # a power cut, not just a crash of this process (NORMAL would not).
        return open_private(self.path, _SCHEMA, SCHEMA_VERSION, synchronous="FULL")

    def _load(self) -> tuple[int, int, str | None, float | None]:
        db = self._conn()
        count = int(db.execute("SELECT COUNT(*) FROM items").fetchone()[0])
        meta = dict(db.execute("SELECT k, v FROM meta").fetchall())
        dropped = int(meta.get("dropped", 0))
        last_error = meta.get("last_error")
        last_error_at = meta.get("last_error_at")
        return (
            count,
            dropped,
            None if last_error is None else str(last_error),
            None if last_error_at is None else float(last_error_at),
        )

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("spool is closed")
        return self._db

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; the caller holds ``self._lock``."""
        db = self._conn()
        # IMMEDIATE takes the write lock up front, so a transaction never fails
        # half-way because another connection started writing first.
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
            db.execute("COMMIT")
        except BaseException:
            # A failed COMMIT (disk full, I/O error) may leave the transaction open;
            # roll back so the next call can start its own.
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    # --- producing ------------------------------------------------------------------

    def put(self, key: str, payload: dict[str, Any]) -> None:
        """Store ``payload`` under ``key``; durable when this returns.

        A pending key gets the new payload in place (same queue position, version + 1);
        a dead-lettered key goes back to pending with the new payload and a fresh
        attempt count; an unknown (or already acked) key becomes a new row at the end.
        Raises ``sqlite3.Error`` only if the disk itself fails (full, read-only).
        """
        self.put_many(((key, payload),))

    def put_many(self, items: Iterable[tuple[str, dict[str, Any]]]) -> None:
        """:meth:`put` for several items in one transaction (one fsync)."""
        # Encode everything first: a bad payload raises before anything is written.
        rows = [(_encode_key(k), _pack(p)) for k, p in items]
        if not rows:
            return
        with self._lock:
            dropped: list[int] = []
            with self._tx() as db:
                now = self._clock()
                inserted = 0
                for key, blob in rows:
                    row = db.execute(
                        "SELECT seq, state FROM items WHERE key = ?", (key,)
                    ).fetchone()
                    if row is None:
                        db.execute(
                            "INSERT INTO items (key, payload, created) VALUES (?, ?, ?)",
                            (key, blob, now),
                        )
                        inserted += 1
                    elif row[1] == _DEAD:
                        # Revived: attempts, schedule and error start afresh because the
                        # payload is new and may well be accepted now.
                        db.execute(
                            "UPDATE items SET payload = ?, version = version + 1, state = 0, "
                            "attempts = 0, next_at = 0, error = NULL WHERE seq = ?",
                            (blob, row[0]),
                        )
                    else:
                        # Replaced in place: same seq (queue position), same schedule.
                        db.execute(
                            "UPDATE items SET payload = ?, version = version + 1 WHERE seq = ?",
                            (blob, row[0]),
                        )
                excess = self._count + inserted - self.max_items
                if excess > 0:
                    dropped = self._trim(db, excess)
            # In-memory state changes only once the transaction committed.
            self._count += inserted - len(dropped)
            self._dropped += len(dropped)
            for seq in dropped:
                self._leased.pop(seq, None)

    def _trim(self, db: sqlite3.Connection, excess: int) -> list[int]:
        """Drop ``excess`` oldest rows, dead letters first, and persist the new
        ``dropped`` total in the same transaction. Returns the dropped seqs."""
        doomed: list[int] = []
        for state in (_DEAD, _PENDING):
            if len(doomed) >= excess:
                break
            doomed += [
                seq
                for (seq,) in db.execute(
                    "SELECT seq FROM items WHERE +state = ? ORDER BY seq LIMIT ?",
                    (state, excess - len(doomed)),
                )
            ]
        db.executemany("DELETE FROM items WHERE seq = ?", [(seq,) for seq in doomed])
        db.execute(
            "INSERT OR REPLACE INTO meta (k, v) VALUES ('dropped', ?)",
            (self._dropped + len(doomed),),
        )
        return doomed

    # --- consuming ------------------------------------------------------------------

    def lease(self, limit: int = 500) -> list[SpoolItem]:
        """Up to ``limit`` pending items whose next attempt time has come, oldest first.

        Leased items are not returned again until they are acked, failed, released,
        or ``lease_timeout`` passes (so a lost batch is eventually re-sent). A key
        re-put while leased waits for that lease to end, so two versions of one event
        are never in flight together and cannot overtake each other.
        """
        if limit <= 0:
            return []
        with self._lock:
            db = self._conn()
            now = self._clock()
            self._expire_leases(now)
            # Ask for enough rows to still have `limit` after skipping leased ones.
            # `+state` keeps the planner off the (state, next_at) index: walking the
            # table in seq order stops after `limit` rows, whereas the index would
            # sort every ready row first (all 200k of them when a backlog drains).
            rows = db.execute(
                "SELECT seq, key, payload, version, attempts, error FROM items "
                "WHERE +state = 0 AND next_at <= ? ORDER BY seq LIMIT ?",
                (now, limit + len(self._leased)),
            ).fetchall()
            out: list[SpoolItem] = []
            poisoned: list[tuple[int, str]] = []
            until = now + self.lease_timeout
            for seq, key, blob, version, attempts, error in rows:
                if seq in self._leased:
                    continue
                try:
                    payload = _unpack(blob)
                except (ValueError, msgpack.UnpackException) as exc:
                    # Unreadable (disk corruption): dead-letter it instead of failing
                    # every lease from now on.
                    poisoned.append((seq, f"undecodable payload: {exc}"))
                    continue
                self._leased[seq] = until
                out.append(SpoolItem(seq, _decode_key(key), payload, version, attempts, error))
                if len(out) == limit:
                    break
            if poisoned:
                with self._tx() as wdb:
                    wdb.executemany(
                        "UPDATE items SET state = 1, error = ? WHERE seq = ?",
                        [(err, seq) for seq, err in poisoned],
                    )
            return out

    def _expire_leases(self, now: float) -> None:
        if self._leased:
            self._leased = {s: t for s, t in self._leased.items() if t > now}

    def ack(self, items: Iterable[SpoolItem]) -> int:
        """Remove delivered items; returns how many rows were removed.

        A row whose payload was replaced after it was leased (higher version) stays:
        the server has the old payload, the new one must still be sent.
        """
        items = list(items)
        if not items:
            return 0
        with self._lock:
            with self._tx() as db:
                cur = db.executemany(
                    "DELETE FROM items WHERE seq = ? AND version = ?",
                    [(it.seq, it.version) for it in items],
                )
                removed = max(cur.rowcount, 0)
            self._count -= removed
            for it in items:
                self._leased.pop(it.seq, None)
            if removed and self._count == 0:
                self._reclaim_space()
        return removed

    def _reclaim_space(self) -> None:
        """Once a backlog has fully drained, give the free pages back to the
        filesystem (the file would otherwise keep its high-water size). Runs after
        the ack committed; the caller holds the lock."""
        db = self._conn()
        (free,) = db.execute("PRAGMA freelist_count").fetchone()
        if free > 256:
            # executescript, not execute: the pragma frees one page per step and
            # execute() steps a statement without result columns only once.
            # (executescript COMMITs first; no transaction is open here.)
            try:
                db.executescript("PRAGMA incremental_vacuum;")
            except sqlite3.Error as exc:
                # Best effort: the ack itself is committed, so don't make it look failed.
                log.warning("spool: could not reclaim free pages: %s", exc)

    def fail(self, items: Iterable[SpoolItem], error: str) -> None:
        """Record a failed delivery: retry later with backoff, or dead-letter.

        The next attempt is due after ``d = min(max_backoff, base_backoff *
        2**(attempts-1))`` times a random factor in [0.5, 1.0]. Keeping at least
        half of ``d`` guarantees the backoff really grows (plain "full jitter",
        [0, d], can retry almost at once), while the other half spreads out a
        fleet of agents that all lost the server at the same moment.

        The attempt count is the row's own, not the item's, and a replaced payload
        does not reset it: the row's delivery is what keeps failing.
        """
        items = list(items)
        if not items:
            return
        error = str(error)[:_MAX_ERROR_CHARS]
        with self._lock:
            for it in items:
                self._leased.pop(it.seq, None)
            now = self._clock()
            with self._tx() as db:
                self._record_failures(db, items, error, now)
            self._last_error, self._last_error_at = error, now

    def _record_failures(
        self, db: sqlite3.Connection, items: list[SpoolItem], error: str, now: float
    ) -> None:
        for it in items:
            row = db.execute(
                "SELECT attempts FROM items WHERE seq = ? AND state = 0", (it.seq,)
            ).fetchone()
            if row is None:
                continue  # acked, dropped or already dead meanwhile
            attempts = int(row[0]) + 1
            if attempts >= self.max_attempts:
                db.execute(
                    "UPDATE items SET state = 1, attempts = ?, next_at = 0, error = ? "
                    "WHERE seq = ?",
                    (attempts, error, it.seq),
                )
            else:
                db.execute(
                    "UPDATE items SET attempts = ?, next_at = ?, error = ? WHERE seq = ?",
                    (attempts, now + self.backoff(attempts), error, it.seq),
                )
        db.executemany(
            "INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?)",
            [("last_error", error), ("last_error_at", now)],
        )

    def backoff(self, attempts: int) -> float:
        """Seconds to wait after the ``attempts``-th failure (jittered; see fail())."""
        # Cap the exponent too: 2**attempts overflows a float near 1024.
        ceiling = min(self.max_backoff, self.base_backoff * 2.0 ** min(attempts - 1, 64))
        return ceiling * self._rng.uniform(0.5, 1.0)

    def release(self, items: Iterable[SpoolItem]) -> None:
        """End the lease of items that were not sent (e.g. the connection closed before
        sending): they are due again at once, and no attempt is counted."""
        with self._lock:
            for it in items:
                self._leased.pop(it.seq, None)

    # --- introspection --------------------------------------------------------------

    def next_ready_in(self) -> float | None:
        """Seconds until :meth:`lease` would return something: 0 if now, None if the
        spool has nothing pending. Leased items count as ready when their lease
        runs out."""
        with self._lock:
            db = self._conn()
            now = self._clock()
            self._expire_leases(now)
            # The earliest-due rows; skip those in flight (at most len(leased)).
            rows = db.execute(
                "SELECT seq, next_at FROM items WHERE state = 0 ORDER BY next_at LIMIT ?",
                (len(self._leased) + 1,),
            ).fetchall()
            due: float | None = None
            for seq, next_at in rows:
                if seq not in self._leased:
                    due = float(next_at)
                    break
            if self._leased:
                earliest_lease_end = min(self._leased.values())
                due = earliest_lease_end if due is None else min(due, earliest_lease_end)
            return None if due is None else max(0.0, due - now)

    def stats(self) -> SpoolStats:
        with self._lock:
            db = self._conn()
            now = self._clock()
            self._expire_leases(now)
            counts = dict(db.execute("SELECT state, COUNT(*) FROM items GROUP BY state"))
            oldest = db.execute(
                "SELECT created FROM items WHERE +state = 0 ORDER BY seq LIMIT 1"
            ).fetchone()
            return SpoolStats(
                depth=int(counts.get(_PENDING, 0)),
                dead=int(counts.get(_DEAD, 0)),
                dropped=self._dropped,
                oldest_age_s=None if oldest is None else max(0.0, now - float(oldest[0])),
                last_error=self._last_error,
                last_error_at=self._last_error_at,
                in_flight=len(self._leased),
            )

    def dead_letters(self, limit: int = 100) -> list[SpoolItem]:
        """Dead-lettered items, oldest first (their payloads are kept as they were)."""
        return self._peek(_DEAD, limit)

    def pending(self, limit: int = 100) -> list[SpoolItem]:
        """Pending items, oldest first, whether leased or waiting for a retry or not.
        Read-only: for the local status page ("what is queued") and for tests."""
        return self._peek(_PENDING, limit)

    def _peek(self, state: int, limit: int) -> list[SpoolItem]:
        with self._lock:
            rows = (
                self._conn()
                .execute(
                    "SELECT seq, key, payload, version, attempts, error FROM items "
                    "WHERE +state = ? ORDER BY seq LIMIT ?",
                    (state, max(limit, 0)),
                )
                .fetchall()
            )
        out = []
        for seq, key, blob, version, attempts, error in rows:
            try:
                payload = _unpack(blob)
            except (ValueError, msgpack.UnpackException):
                payload = {}  # shown as empty; lease() dead-letters it with the reason
            out.append(SpoolItem(seq, _decode_key(key), payload, version, attempts, error))
        return out

    def requeue_dead(self) -> int:
        """Operator action: move every dead letter back to pending, due now, with a
        fresh attempt count. Returns how many were moved."""
        with self._lock, self._tx() as db:
            cur = db.execute(
                "UPDATE items SET state = 0, attempts = 0, next_at = 0 WHERE state = 1"
            )
            return max(cur.rowcount, 0)

    # --- closing --------------------------------------------------------------------

    def close(self) -> None:
        """Close the database (a checkpoint folds the WAL back in). Idempotent."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
            self._leased.clear()

    def __enter__(self) -> Spool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
