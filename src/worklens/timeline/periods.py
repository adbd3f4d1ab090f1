"""Calendar periods in a time zone, and how rollups cover a time range.

Rollups exist for whole UTC hours and for whole *local* days of the
organization's time zone (a day is local midnight to the next local midnight:
23 or 25 hours on daylight-saving days). A range is covered by whole days, then
whole hours, then raw events for what is left at the edges. A zone whose offset
is not a whole number of hours (India, Nepal, Newfoundland...) has days that
start mid-hour; the pieces of hours at the ends of such a day come from raw
events, both when a day row is built and when a report reads around it.

All instants are integer milliseconds since the epoch, UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

HOUR_MS = 3_600_000


class UnknownTimeZone(ValueError):
    """Not an IANA time zone name."""


def zone(name: str) -> ZoneInfo:
    """The IANA zone called ``name``; a clear error otherwise."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise UnknownTimeZone(
            f"unknown time zone {name!r}; use an IANA name such as 'Europe/Berlin' or 'UTC'"
        ) from exc


def midnight(tz: ZoneInfo, day: date) -> int:
    """The instant ``day`` starts in ``tz``. Where clocks jump over midnight,
    the pre-jump offset is used (PEP 495), so consecutive days still tile time."""
    return round(datetime.combine(day, time(0), tzinfo=tz).timestamp() * 1000)


def local_date(tz: ZoneInfo, t_ms: int) -> date:
    return datetime.fromtimestamp(t_ms / 1000, tz).date()


def day_of(tz: ZoneInfo, t_ms: int) -> tuple[int, int]:
    """``[start, end)`` of the local day containing ``t_ms``."""
    d = local_date(tz, t_ms)
    start, end = midnight(tz, d), midnight(tz, d + timedelta(days=1))
    if t_ms < start:  # only around a jump over midnight
        return midnight(tz, d - timedelta(days=1)), start
    return start, end


def days(tz: ZoneInfo, start_ms: int, end_ms: int) -> list[tuple[int, int]]:
    """The local days overlapping ``[start_ms, end_ms)``, each as [start, end)."""
    out: list[tuple[int, int]] = []
    if end_ms <= start_ms:
        return out
    d0, d1 = day_of(tz, start_ms)
    out.append((d0, d1))
    while d1 < end_ms:
        d0, d1 = d1, day_of(tz, d1)[1]
        out.append((d0, d1))
    return out


def whole_days(tz: ZoneInfo, start_ms: int, end_ms: int) -> tuple[int, int] | None:
    """The longest run ``[a, b)`` of whole local days inside the range, if any."""
    first = day_of(tz, start_ms)
    a = first[0] if first[0] == start_ms else first[1]
    b = day_of(tz, end_ms)[0] if end_ms > a else a
    return (a, b) if a < b else None


def hour_edges(day_start_ms: int, day_end_ms: int) -> list[tuple[int, int]]:
    """The parts of a day outside its whole UTC hours (empty for whole-hour zones)."""
    h0 = -(-day_start_ms // HOUR_MS) * HOUR_MS
    h1 = day_end_ms // HOUR_MS * HOUR_MS
    if h0 >= h1:
        return [(day_start_ms, day_end_ms)]
    return [(a, b) for a, b in ((day_start_ms, h0), (h1, day_end_ms)) if b > a]


@dataclass(frozen=True, slots=True)
class Plan:
    """How a range is read: raw events (ms), hour rollups and day rollups
    (periods starting in the given ranges, in seconds)."""

    raw: list[tuple[int, int]]
    hours: list[tuple[int, int]]
    days: list[tuple[int, int]]


def plan(start_ms: int, end_ms: int, tz: ZoneInfo) -> Plan:
    raw: list[tuple[int, int]] = []
    hours: list[tuple[int, int]] = []
    run = whole_days(tz, start_ms, end_ms)
    rest = [(start_ms, end_ms)] if run is None else [(start_ms, run[0]), (run[1], end_ms)]
    for a, b in rest:
        if b <= a:
            continue
        h0 = -(-a // HOUR_MS) * HOUR_MS
        h1 = b // HOUR_MS * HOUR_MS
        if h0 >= h1:
            raw.append((a, b))
            continue
        hours.append((h0 // 1000, h1 // 1000))
        raw.extend((x, y) for x, y in ((a, h0), (h1, b)) if y > x)
    day_ranges = [] if run is None else [(run[0] // 1000, run[1] // 1000)]
    return Plan(raw, hours, day_ranges)
