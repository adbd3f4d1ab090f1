"""Shared helpers for the query2 tests: compact event builders and an in-memory source."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from worklens.query2 import BucketInfo, Event

T0 = datetime(2024, 3, 4, 9, 0, tzinfo=UTC)
DAY = (T0 - timedelta(hours=9), T0 + timedelta(hours=15))


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def ev(start: float, duration: float, data: Mapping[str, Any] | None = None,
       id: int | None = None) -> Event:
    """An event starting ``start`` seconds after T0."""
    return Event(at(start), duration, data or {}, id)


def spans(events: Sequence[Event]) -> list[tuple[float, float]]:
    """(start, end) in seconds after T0, for compact assertions."""
    return [((e.timestamp - T0).total_seconds(), (e.end - T0).total_seconds()) for e in events]


class MemorySource:
    """An EventSource over lists; records what it was asked."""

    def __init__(self, buckets: Mapping[str, Sequence[Event]],
                 hostnames: Mapping[str, str] | None = None) -> None:
        self.data = {k: list(v) for k, v in buckets.items()}
        self.hostnames = dict(hostnames or {})
        self.reads: list[tuple[str, datetime, datetime, int | None]] = []

    def buckets(self) -> dict[str, BucketInfo]:
        return {b: BucketInfo(b, hostname=self.hostnames.get(b, "host")) for b in self.data}

    def events(self, bucket_id: str, start: datetime, end: datetime,
               limit: int | None) -> list[Event]:
        self.reads.append((bucket_id, start, end, limit))
        out = [e for e in self.data[bucket_id] if e.end >= start and e.timestamp <= end]
        return out if limit is None else out[:limit]
