"""Turns samples (focused window, idle seconds) into events, merging as it goes.

Pure logic: the caller passes the time, so every rule here is tested without a
display. Each call returns the events that changed; the agent puts them in
the spool keyed by event id, so an extended event replaces its older copy.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from worklens.protocol.wire import AfkData, Event, FocusData
from worklens.timeline.heartbeat import Beat, merge

_TICK = timedelta(milliseconds=1)


@dataclass
class _Open:
    id: uuid.UUID
    beat: Beat[FocusData] | Beat[AfkData]


class ActivityTracker:
    def __init__(self, idle_threshold_s: float, pulsetime_s: float) -> None:
        self.idle_threshold_s = idle_threshold_s
        self.pulsetime_s = pulsetime_s
        self._focus: _Open | None = None
        self._afk: _Open | None = None

    # --- focus ---------------------------------------------------------------

    def focus(self, now: datetime, data: FocusData | None) -> list[Event[FocusData]]:
        """A focus sample at ``now``; None means no window has focus."""
        out: list[Event[FocusData]] = []
        cur = self._focus
        if cur is not None:
            alive, changed = self._extend(cur, now)
            if changed:
                out.append(self._focus_event(cur))
            if data is None or cur.beat.data != data or not alive:
                self._focus = None
        if data is not None and self._focus is None:
            self._focus = _Open(uuid.uuid4(), Beat(now, 0.0, data))
            out.append(self._focus_event(self._focus))
        return out

    # --- afk -----------------------------------------------------------------

    def idle(self, now: datetime, idle_s: float) -> list[Event[AfkData]]:
        """An idle reading at ``now``: seconds since the last keyboard or mouse input.

        Going afk is dated back to the last input, and so is coming back. The
        new event overlaps the tail of the old one; readers resolve overlaps by
        "latest start wins", so the new status takes over from its start.
        """
        status: Literal["afk", "active"] = "afk" if idle_s >= self.idle_threshold_s else "active"
        last_input = now - timedelta(seconds=max(0.0, idle_s))
        out: list[Event[AfkData]] = []
        cur = self._afk
        if cur is not None:
            alive, changed = self._extend(cur, now)
            if changed:
                out.append(self._afk_event(cur))
            if alive and isinstance(cur.beat.data, AfkData) and cur.beat.data.status == status:
                return out
            start = max(last_input, cur.beat.start + _TICK) if alive else now
        else:
            start = last_input if status == "afk" else now
        self._afk = _Open(
            uuid.uuid4(), Beat(start, (now - start).total_seconds(), AfkData(status=status))
        )
        out.append(self._afk_event(self._afk))
        return out

    # --- shutdown ------------------------------------------------------------

    def close(self, now: datetime) -> list[Event[FocusData] | Event[AfkData]]:
        """Extend the open events to ``now`` one last time and forget them."""
        out: list[Event[FocusData] | Event[AfkData]] = []
        if self._focus is not None and self._extend(self._focus, now)[1]:
            out.append(self._focus_event(self._focus))
        if self._afk is not None and self._extend(self._afk, now)[1]:
            out.append(self._afk_event(self._afk))
        self._focus = self._afk = None
        return out

    # --- helpers -------------------------------------------------------------

    def _extend(self, cur: _Open, now: datetime) -> tuple[bool, bool]:
        """Extend ``cur`` to ``now`` if ``now`` is within pulsetime of its end.

        A longer gap (the machine slept, the agent stalled) is not counted: the
        event stays as it was and is no longer open. Returns (still open, changed).
        """
        beat: Beat[Any] = cur.beat
        merged, new = merge(beat, Beat(now, 0.0, beat.data), self.pulsetime_s)
        if new:
            return False, False
        changed = merged.duration != cur.beat.duration
        cur.beat = merged
        return True, changed

    @staticmethod
    def _focus_event(cur: _Open) -> Event[FocusData]:
        assert type(cur.beat.data) is FocusData
        return Event(cur.id, cur.beat.start, cur.beat.duration, cur.beat.data)

    @staticmethod
    def _afk_event(cur: _Open) -> Event[AfkData]:
        assert type(cur.beat.data) is AfkData
        return Event(cur.id, cur.beat.start, cur.beat.duration, cur.beat.data)
