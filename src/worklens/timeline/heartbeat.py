"""Heartbeat merge: extend the last event instead of starting a new one.

A sample that carries the same data as the last event and arrives within
``pulsetime`` seconds of that event's end extends it. This is ActivityWatch's
rule, so a steady hour of coding is one event, not 3600.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Generic, TypeVar

D = TypeVar("D")


@dataclass(frozen=True, slots=True)
class Beat(Generic[D]):
    start: datetime
    duration: float  # seconds
    data: D

    @property
    def end(self) -> datetime:
        return self.start + timedelta(seconds=self.duration)


def merge(last: Beat[D] | None, beat: Beat[D], pulsetime: float) -> tuple[Beat[D], bool]:
    """Merge ``beat`` into ``last``. Returns the resulting event and whether it is new.

    When merged, the result keeps ``last``'s start and reaches the later of the
    two ends, so an out-of-order beat never shortens an event.
    """
    if last is not None and last.data == beat.data:
        gap = (beat.start - last.end).total_seconds()
        if beat.start >= last.start and gap <= pulsetime:
            end = max(last.end, beat.end)
            return replace(last, duration=(end - last.start).total_seconds()), False
    return beat, True
