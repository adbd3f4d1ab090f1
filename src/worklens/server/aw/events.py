"""A bucket's events as the AW API serves them, read in time slices.

Reads go through ``store.buckets.read_events`` (rows and chunks alike) one
slice of time at a time, so an export of years holds one slice in memory, not
the bucket. A slice is ``[a, b)``; slices start an hour wide and double up to a
week, so "the newest 10 events" reads little.

For the types WorkLens interprets (:data:`FLATTENED`), the stream is resolved
by "latest start wins" within each slice; that is exact because the winner at
an instant depends only on the events covering it. A piece cut by a slice
boundary is joined with its continuation in the next slice (same stored event,
touching), so slicing never shows in the output. Other types are served as
stored: each event is taken from the slice its start falls in.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

from sqlalchemy import Connection

from worklens.query2 import Event
from worklens.server.aw.buckets import AwBucket
from worklens.server.store.buckets import AFK_TYPE, FOCUS_TYPE, load_data, read_events
from worklens.server.store.chunks import StoredEvent
from worklens.server.store.db import Database
from worklens.timeline.intervals import flatten

FLATTENED = (FOCUS_TYPE, AFK_TYPE)
HOUR_MS = 3_600_000
MAX_STEP_MS = 7 * 24 * HOUR_MS
AW_ACTIVE = "not-afk"
WL_ACTIVE = "active"


class Piece(NamedTuple):
    """A served event: ``[start, end)`` ms of stored event ``src``."""

    start: int
    end: int
    src: StoredEvent


def _order(p: Piece) -> tuple[int, int, int, bytes]:
    # By start; at one instant a zero-length event after the piece that starts
    # there, so a piece cut at a slice boundary is the first item after it.
    return (p.start, int(p.end == p.start), p.end, p.src.uid)


def read_slice(conn: Connection, bucket: AwBucket, a: int, b: int, lo: int, hi: int) -> list[Piece]:
    """Pieces of slice ``[a, b)`` of a read of ``[lo, hi)``, oldest first."""
    # One ms earlier: a read returns events *ending after* its start, which a
    # zero-length event at exactly ``a`` does not.
    stored = read_events(conn, [bucket.ref], a - 1, b).get(bucket.pk, [])
    out: list[Piece] = []
    if bucket.type in FLATTENED:
        spans = ((e.start_ms, e.start_ms + e.duration_ms, i) for i, e in enumerate(stored))
        for s, t, i in flatten(spans):
            s, t = max(s, a), min(t, b)
            if t > s:
                out.append(Piece(s, t, stored[i]))
        out.extend(Piece(e.start_ms, e.start_ms, e) for e in stored if e.duration_ms == 0)
    else:
        for e in stored:
            s, t = e.start_ms, e.start_ms + e.duration_ms
            # Each event from the slice its start is in; the first slice also
            # takes those that started before the range and reach into it.
            if a <= s < b or (a == lo and s < lo < t):
                out.append(Piece(max(s, lo), min(t, hi), e))
    out = [p for p in out if lo <= p.start < hi]
    out.sort(key=_order)
    return out


def iter_pieces(
    db: Database, bucket: AwBucket, lo: int, hi: int, *, newest_first: bool
) -> Iterator[Piece]:
    """Every piece in ``[lo, hi)``, oldest or newest first."""
    step = HOUR_MS
    pending: list[Piece] = []  # not yet safe to emit: the open piece (and what follows it)
    flat = bucket.type in FLATTENED
    a, b = lo, hi
    while a < b:
        s0, s1 = (max(a, b - step), b) if newest_first else (a, min(b, a + step))
        step = min(step * 2, MAX_STEP_MS)
        with db.read() as conn:
            new = read_slice(conn, bucket, s0, s1, lo, hi)
        if newest_first:
            new.reverse()
            b = s0
        else:
            a = s1
        if not flat:
            yield from new
            continue
        if pending:
            new = _join(pending, new, newest_first)
        # The piece that reaches the slice's open edge may go on in the next slice.
        edge = s0 if newest_first else s1
        inside = lo < edge if newest_first else edge < hi
        k = next(
            (
                i
                for i in range(len(new) - 1, -1, -1)
                if new[i].end > new[i].start
                and (new[i].start == edge if newest_first else new[i].end == edge)
            ),
            None,
        )
        if k is None or not inside:
            yield from new
            pending = []
        else:
            yield from new[:k]
            pending = new[k:]
    yield from pending


def _join(pending: list[Piece], new: list[Piece], newest_first: bool) -> list[Piece]:
    """``pending + new`` with the open piece joined to its continuation, if any."""
    open_piece = pending[0]
    key = open_piece.src[:2]  # (start, uid): the stored event
    for j, p in enumerate(new):
        if p.src[:2] == key and p.end > p.start:
            if newest_first and p.end == open_piece.start:
                return [
                    *pending[1:],
                    *new[:j],
                    Piece(p.start, open_piece.end, p.src),
                    *new[j + 1 :],
                ]
            if not newest_first and p.start == open_piece.end:
                return [
                    Piece(open_piece.start, p.end, p.src),
                    *pending[1:],
                    *new[:j],
                    *new[j + 1 :],
                ]
    return pending + new


class Payloads:
    """Payloads by id as AW shows them, loaded as needed (bounded cache)."""

    def __init__(self, bucket_type: str) -> None:
        self.afk = bucket_type == AFK_TYPE
        self._raw: dict[int, dict[str, Any]] = {}
        self._shown: dict[int, Mapping[str, Any]] = {}

    def load(self, conn: Connection, ids: set[int]) -> None:
        if len(self._raw) > 100_000:
            self._raw.clear()
            self._shown.clear()
        load_data(conn, ids, self._raw)

    def __getitem__(self, data_id: int) -> Mapping[str, Any]:
        shown = self._shown.get(data_id)
        if shown is None:
            data = self._raw[data_id]
            if self.afk and data.get("status") == WL_ACTIVE:
                data = {**data, "status": AW_ACTIVE}
            shown = self._shown[data_id] = data
        return shown


def iter_events(
    db: Database, bucket: AwBucket, lo: int, hi: int, *, newest_first: bool
) -> Iterator[Event]:
    """The bucket's events in ``[lo, hi)`` ms, as query2 events with AW ids and data."""
    payloads = Payloads(bucket.type)
    batch: list[Piece] = []
    for piece in iter_pieces(db, bucket, lo, hi, newest_first=newest_first):
        batch.append(piece)
        if len(batch) >= 2000:
            yield from _events(db, batch, payloads)
            batch = []
    yield from _events(db, batch, payloads)


def _events(db: Database, pieces: list[Piece], payloads: Payloads) -> Iterator[Event]:
    if not pieces:
        return
    with db.read() as conn:
        payloads.load(conn, {p.src.data_id for p in pieces})
    for p in pieces:
        yield Event.from_us(p.start * 1000, p.end * 1000, payloads[p.src.data_id], p.src.uid.hex())
