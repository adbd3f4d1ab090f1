"""The immutable Event and its AW JSON form."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from worklens.query2 import Event

from .helpers import T0


def test_json_round_trip_and_utc_normalisation() -> None:
    # AW's JSON form: {"id", "timestamp" (ISO 8601), "duration" (s), "data"}.
    cet = timezone(timedelta(hours=1))
    e = Event.from_json({"id": 3, "timestamp": "2024-03-04T10:00:00.250+01:00",
                         "duration": 1.5, "data": {"app": "vim"}})
    assert e.timestamp == datetime(2024, 3, 4, 9, 0, 0, 250000, tzinfo=UTC)
    assert e.timestamp.tzinfo is UTC or e.timestamp.utcoffset() == timedelta(0)
    assert e.duration == 1.5 and e.id == 3 and dict(e.data) == {"app": "vim"}
    j = e.to_json()
    assert j == {"id": 3, "timestamp": "2024-03-04T09:00:00.250000+00:00", "duration": 1.5,
                 "data": {"app": "vim"}}
    assert Event.from_json(j) == e
    assert Event(datetime(2024, 3, 4, 10, tzinfo=cet), 1) == Event(T0 + timedelta(hours=0), 1)


def test_from_json_defaults_and_naive_is_utc() -> None:
    # aw-core: duration defaults to 0, data to {}; iso8601 takes naive as UTC.
    e = Event.from_json({"timestamp": "2024-03-04T09:00:00"})
    assert e == Event(T0, 0, {}) and e.id is None


@pytest.mark.parametrize("bad", [
    {},
    {"timestamp": "yesterday"},
    {"timestamp": "2024-03-04T09:00:00Z", "duration": -1},
    {"timestamp": "2024-03-04T09:00:00Z", "duration": "5"},
    {"timestamp": "2024-03-04T09:00:00Z", "duration": float("nan")},
    {"timestamp": "2024-03-04T09:00:00Z", "data": []},
    {"timestamp": "2024-03-04T09:00:00Z", "id": 1.5},
])
def test_from_json_rejects(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Event.from_json(bad)


def test_immutable_and_exact() -> None:
    e = Event(T0, timedelta(seconds=2, microseconds=7), {"a": 1})
    with pytest.raises(AttributeError):
        e.timestamp = T0  # type: ignore[misc]
    with pytest.raises(AttributeError):
        e.duration = 3  # type: ignore[misc]
    assert e.duration_us == 2_000_007
    assert e.end == T0 + timedelta(seconds=2, microseconds=7)
    with pytest.raises(ValueError, match="timezone-aware"):
        Event(datetime(2024, 1, 1), 1)
    data = {"a": 1}
    e2 = Event(T0, 1, data)
    data["a"] = 2
    assert e2.data["a"] == 1  # the constructor copies the payload
