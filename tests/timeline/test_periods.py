"""Local days and range plans: they must tile time exactly, in every zone."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worklens.timeline.periods import (
    HOUR_MS,
    UnknownTimeZone,
    day_of,
    days,
    hour_edges,
    plan,
    zone,
)

ZONES = [
    "UTC",
    "Europe/Berlin",  # DST: 23- and 25-hour days
    "Asia/Kolkata",  # +05:30
    "Asia/Kathmandu",  # +05:45
    "America/St_Johns",  # -03:30 with DST
    "Australia/Lord_Howe",  # DST of 30 minutes
    "America/Santiago",  # DST switching at midnight
    "Pacific/Apia",  # skipped a whole day in 2011
]
T = round(datetime(2011, 1, 1, tzinfo=UTC).timestamp() * 1000)
instants = st.integers(T, T + 16 * 365 * 86_400_000)


@settings(max_examples=300)
@given(name=st.sampled_from(ZONES), a=instants, length=st.integers(1, 100 * 86_400_000))
def test_plan_tiles_the_range_with_local_days_whole_hours_and_raw_edges(
    name: str, a: int, length: int
) -> None:
    tz = zone(name)
    b = a + length
    p = plan(a, b, tz)
    pieces = [*p.raw]
    for h0, h1 in p.hours:
        assert h0 % 3600 == 0 and h1 % 3600 == 0
        pieces.append((h0 * 1000, h1 * 1000))
    for d0, d1 in p.days:
        assert day_of(tz, d0 * 1000)[0] == d0 * 1000  # starts at a local midnight
        assert day_of(tz, d1 * 1000)[0] == d1 * 1000
        pieces.append((d0 * 1000, d1 * 1000))
    pieces.sort()
    assert pieces[0][0] == a and pieces[-1][1] == b
    assert all(x[1] == y[0] for x, y in itertools.pairwise(pieces))
    assert all(y > x for x, y in pieces)
    # Raw is only ever edges: a piece of an hour, or two when no hour is whole.
    assert all(y - x < 2 * HOUR_MS for x, y in p.raw)


@settings(max_examples=200)
@given(name=st.sampled_from(ZONES), a=instants, length=st.integers(0, 40 * 86_400_000))
def test_days_tile_time_and_contain_their_instants(name: str, a: int, length: int) -> None:
    tz = zone(name)
    ds = days(tz, a, a + length)
    assert all(x[1] == y[0] for x, y in itertools.pairwise(ds))
    if length:
        assert ds[0][0] <= a < ds[0][1] and ds[-1][0] < a + length <= ds[-1][1]
    for d0, d1 in ds:
        assert 22 * HOUR_MS <= d1 - d0 <= 26 * HOUR_MS
        assert day_of(tz, d0) == (d0, d1) and day_of(tz, d1 - 1) == (d0, d1)
        edges = hour_edges(d0, d1)
        assert sum(y - x for x, y in edges) < 2 * HOUR_MS


def test_daylight_saving_days_and_offsets() -> None:
    berlin = zone("Europe/Berlin")
    spring = round(datetime(2026, 3, 29, 12, tzinfo=UTC).timestamp() * 1000)
    autumn = round(datetime(2026, 10, 25, 12, tzinfo=UTC).timestamp() * 1000)
    assert (lambda d: d[1] - d[0])(day_of(berlin, spring)) == 23 * HOUR_MS
    assert (lambda d: d[1] - d[0])(day_of(berlin, autumn)) == 25 * HOUR_MS
    kolkata = day_of(zone("Asia/Kolkata"), spring)
    assert datetime.fromtimestamp(kolkata[0] / 1000, UTC).strftime("%H:%M") == "18:30"
    assert hour_edges(*kolkata) == [
        (kolkata[0], kolkata[0] + HOUR_MS // 2),
        (kolkata[1] - HOUR_MS // 2, kolkata[1]),
    ]
    assert hour_edges(*day_of(berlin, spring)) == []


def test_unknown_zone_is_named() -> None:
    with pytest.raises(UnknownTimeZone, match="Mars/Olympus"):
        zone("Mars/Olympus")
    with pytest.raises(UnknownTimeZone, match=r"'\.\./etc'"):
        zone("../etc")
