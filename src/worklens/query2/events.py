"""The immutable event that query2 values are made of, and its AW JSON form.

An event is a span of time with a payload: ``timestamp`` (aware, UTC),
``duration`` (float seconds, never negative), ``data`` (a JSON object) and an
optional ``id``. Internally the span is kept as integer microseconds since the
Unix epoch (``start_us``/``end_us``), which is the resolution of ``datetime``:
every transform works on those integers, so cutting and summing are exact.

``data`` is handed out as a read-only ``Mapping``; nothing in this package
mutates it (a transform that changes data builds a new dict), so events can be
shared freely between variables, results and cache entries.

The JSON form is ActivityWatch's: ``{"id", "timestamp", "duration", "data"}``
with an ISO 8601 timestamp and the duration in seconds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)

EventId = int | str


def datetime_to_us(value: datetime) -> int:
    """Microseconds since the Unix epoch of an aware datetime (exact)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"timestamp must be timezone-aware, got naive {value.isoformat()}")
    return (value - EPOCH) // _ONE_US


def us_to_datetime(us: int) -> datetime:
    """The aware UTC datetime ``us`` microseconds after the Unix epoch."""
    return EPOCH + timedelta(microseconds=us)


def seconds_to_us(seconds: float | timedelta) -> int:
    """A non-negative duration in seconds (or a timedelta) as whole microseconds."""
    if isinstance(seconds, timedelta):
        us = seconds // _ONE_US
    else:
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise ValueError(f"duration must be a number of seconds, got {seconds!r}")
        if not math.isfinite(seconds):
            raise ValueError(f"duration must be finite, got {seconds!r}")
        us = round(seconds * 1_000_000)
    if us < 0:
        raise ValueError(f"duration must not be negative, got {seconds!r}")
    return us


class Event:
    """One immutable event. Construct with :meth:`__init__` or :meth:`from_json`."""

    __slots__ = ("_data", "_e", "_id", "_s", "_ts")

    _s: int
    _e: int
    _data: Mapping[str, Any]
    _id: EventId | None
    _ts: datetime | None

    def __init__(
        self,
        timestamp: datetime,
        duration: float | timedelta = 0.0,
        data: Mapping[str, Any] | None = None,
        id: EventId | None = None,
    ) -> None:
        start = datetime_to_us(timestamp)
        self._s = start
        self._e = start + seconds_to_us(duration)
        self._data = dict(data) if data is not None else {}
        self._id = id
        self._ts = None

    @classmethod
    def from_us(
        cls,
        start_us: int,
        end_us: int,
        data: Mapping[str, Any],
        id: EventId | None = None,
    ) -> Event:
        """Build from integer microseconds without copying ``data`` (the caller
        hands over a mapping nobody mutates). ``end_us`` must be >= ``start_us``."""
        e = object.__new__(cls)
        e._s = start_us
        e._e = end_us
        e._data = data
        e._id = id
        e._ts = None
        return e

    def with_span(self, start_us: int, end_us: int) -> Event:
        """The same payload and id over another span (``self`` if unchanged)."""
        if start_us == self._s and end_us == self._e:
            return self
        return Event.from_us(start_us, end_us, self._data, self._id)

    def with_data(self, data: Mapping[str, Any]) -> Event:
        """The same span and id with another payload."""
        return Event.from_us(self._s, self._e, data, self._id)

    # --- read-only attributes (the slots are private; there are no setters) -------

    @property
    def start_us(self) -> int:
        """Start, in microseconds since the Unix epoch."""
        return self._s

    @property
    def end_us(self) -> int:
        """End (exclusive), in microseconds since the Unix epoch."""
        return self._e

    @property
    def timestamp(self) -> datetime:
        ts = self._ts
        if ts is None:
            ts = us_to_datetime(self._s)
            self._ts = ts  # a cache of a derived value: the event stays immutable
        return ts

    @property
    def end(self) -> datetime:
        return us_to_datetime(self._e)

    @property
    def duration(self) -> float:
        return (self._e - self._s) / 1_000_000

    @property
    def duration_us(self) -> int:
        return self._e - self._s

    @property
    def data(self) -> Mapping[str, Any]:
        return self._data

    @property
    def id(self) -> EventId | None:
        return self._id

    # --- comparison and display -------------------------------------------------

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Event):
            return NotImplemented
        return (
            self._s == other._s
            and self._e == other._e
            and self._id == other._id
            and self._data == other._data
        )

    __hash__ = None  # type: ignore[assignment]  # data is a dict: not hashable

    def __repr__(self) -> str:
        return (
            f"Event(timestamp={self.timestamp.isoformat()}, duration={self.duration!r}, "
            f"data={dict(self._data)!r}, id={self._id!r})"
        )

    # --- AW JSON ------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """The AW JSON object; events nested in ``data`` (``subevents``) too."""
        return {
            "id": self._id,
            "timestamp": self.timestamp.isoformat(),
            "duration": self.duration,
            "data": to_json_value(self._data),
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Event:
        """Parse the AW JSON object. ``duration`` and ``data`` may be absent (0, {}).
        A timestamp without an offset is taken as UTC, like AW. Raises ValueError."""
        if not isinstance(obj, Mapping):
            raise ValueError(f"an event must be a JSON object, got {type(obj).__name__}")
        raw_ts = obj.get("timestamp")
        if isinstance(raw_ts, datetime):
            ts = raw_ts
        elif isinstance(raw_ts, str):
            try:
                ts = datetime.fromisoformat(raw_ts)
            except ValueError:
                raise ValueError(f"invalid event timestamp {raw_ts!r}") from None
        else:
            raise ValueError("an event needs a 'timestamp' (ISO 8601 string)")
        if ts.tzinfo is None:
            ts = ts.replace(tzinfo=UTC)
        duration = obj.get("duration", 0)
        if duration is None:
            duration = 0
        data = obj.get("data", {})
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise ValueError("an event's 'data' must be a JSON object")
        ident = obj.get("id")
        if ident is not None and (isinstance(ident, bool) or not isinstance(ident, int | str)):
            raise ValueError(f"an event's 'id' must be an integer or a string, got {ident!r}")
        return cls(ts, duration, data, ident)


def to_json_value(value: Any) -> Any:
    """``value`` with every Event (at any depth) replaced by its JSON object."""
    if isinstance(value, Event):
        return value.to_json()
    if isinstance(value, Mapping):
        return {str(k): to_json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json_value(v) for v in value]
    return value
