"""What the dashboard's report pages share: who is looking, the organization's
local days picked in a form, durations as people read them, and a day's
timeline as bars (positions computed here, so templates only place them).

Everything a template shows of the data (apps, titles, names) stays text:
the environment autoescapes, and the only values written into ``style``
attributes are numbers computed here.
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from worklens.server.analytics.activity import Timeline
from worklens.server.errors import ApiError
from worklens.server.services import Services
from worklens.server.store import orgs as orgs_store
from worklens.server.store.people import NotFound
from worklens.server.web import pages
from worklens.timeline.periods import local_date, midnight, zone

__all__ = [
    "Days",
    "NotFound",
    "chrome",
    "color_of",
    "fmt_duration",
    "not_found",
    "org_zone",
    "parse_days",
    "quick_ranges",
    "render",
    "timeline_lanes",
    "to_login",
    "viewer",
]

viewer = pages._viewer
render = pages._render
chrome = pages._chrome
to_login = pages._to_login

# Distinct colors for the keys a report shows most (by rank), gray for the rest.
PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#bcbd22",
    "#393b79",
)
OTHER_COLOR = "#b0b0b0"


def not_found(what: str) -> ApiError:
    """What a caller who may not see something gets: the same as for nothing."""
    return ApiError(404, f"no {what} in this organization")


def fmt_duration(seconds: float | None) -> str:
    """``6 h 05 min``, ``12 min``, ``40 s``: how long, to the minute above an hour."""
    s = round(seconds or 0)
    if s < 60:
        return f"{s} s"
    minutes = round(s / 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def color_of(key: str) -> str:
    """A stable color for any key (an app seen on several pages keeps its color)."""
    return f"hsl({zlib.crc32(key.encode()) % 360} 60% 45%)"


def org_zone(services: Services, org_id: int) -> tuple[str, ZoneInfo]:
    with services.db.read() as conn:
        name = orgs_store.org_settings(conn, org_id)["timezone"]
    return name, zone(name)


@dataclass(frozen=True, slots=True)
class Days:
    """Whole local days ``first`` to ``last`` (inclusive) of a time zone."""

    first: date
    last: date
    start_ms: int
    end_ms: int
    tz_name: str

    @property
    def single(self) -> bool:
        return self.first == self.last

    @property
    def label(self) -> str:
        if self.single:
            return self.first.isoformat()
        return f"{self.first.isoformat()} to {self.last.isoformat()}"

    def shifted(self, days: int) -> tuple[str, str]:
        """The same number of days, ``days`` later (negative: earlier)."""
        step = timedelta(days=days)
        return (self.first + step).isoformat(), (self.last + step).isoformat()


def _date(text: str | None, name: str, default: date) -> date:
    if not text:
        return default
    try:
        return date.fromisoformat(text.strip())
    except ValueError as exc:
        raise ApiError(400, f"{name} must be a date such as 2026-11-02") from exc


def parse_days(
    tz_name: str, start: str | None, end: str | None, max_days: int, now_ms: int
) -> Days:
    """The local days from ``start`` to ``end`` (ISO dates, both included;
    default: today in the organization's time zone)."""
    tz = zone(tz_name)
    today = local_date(tz, now_ms)
    first = _date(start, "start", today)
    last = _date(end, "end", first)
    if last < first:
        raise ApiError(400, "the end date is before the start date")
    if (last - first).days + 1 > max_days:
        raise ApiError(400, f"pick at most {max_days} days")
    return Days(first, last, midnight(tz, first), midnight(tz, last + timedelta(days=1)), tz_name)


def quick_ranges(tz_name: str) -> list[tuple[str, str, str]]:
    """(label, first day, last day) of the ranges a report offers with one click."""
    today = local_date(zone(tz_name), int(time.time() * 1000))
    return [
        (
            label,
            (today - timedelta(days=back)).isoformat(),
            (today - timedelta(days=end)).isoformat(),
        )
        for label, back, end in (
            ("Today", 0, 0),
            ("Yesterday", 1, 1),
            ("Last 7 days", 6, 0),
            ("Last 30 days", 29, 0),
        )
    ]


# --- a day's timeline as bars ------------------------------------------------------

MERGE_GAP_MS = 60_000  # pieces of one app closer than this draw as one bar
MAX_BARS = 1500  # per lane; beyond it, bars thinner than MIN_WIDTH are left out
MIN_WIDTH = 0.02  # percent of the lane
LEGEND = 8  # apps named under a timeline


def _clock(tz: ZoneInfo, ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz).strftime("%H:%M")


def _bar(tz: ZoneInfo, start: int, end: int, lo: int, span: int) -> dict[str, Any]:
    return {
        "left": round((start - lo) * 100 / span, 3),
        "width": round(max(end - start, 0) * 100 / span, 3),
        "from": _clock(tz, start),
        "to": _clock(tz, end),
        "seconds": (end - start) / 1000,
    }


def _thin(bars: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if len(bars) <= MAX_BARS:
        return bars
    return [b for b in bars if b["width"] >= MIN_WIDTH]


def timeline_lanes(tl: Timeline, tz: ZoneInfo, start_ms: int, end_ms: int) -> dict[str, Any]:
    """A timeline as two lanes of bars over ``[start_ms, end_ms)``: what was
    worked on (active focus, one color per app) and when the person was idle."""
    span = max(end_ms - start_ms, 1)
    merged: list[list[Any]] = []  # [start, end, app, title]
    for s in tl.active:
        last = merged[-1] if merged else None
        if last is not None and last[2] == s.app and s.start_ms - last[1] <= MERGE_GAP_MS:
            last[1] = max(last[1], s.end_ms)
        else:
            merged.append([s.start_ms, s.end_ms, s.app, s.title])
    active = [
        {**_bar(tz, a, b, start_ms, span), "app": app, "title": title, "color": color_of(app)}
        for a, b, app, title in merged
    ]
    idle = [_bar(tz, a, b, start_ms, span) for a, b, status in tl.afk if status == "afk"]
    per_app: dict[str, float] = {}
    for s in tl.active:
        per_app[s.app] = per_app.get(s.app, 0.0) + (s.end_ms - s.start_ms) / 1000
    legend = [
        {"app": app, "seconds": seconds, "color": color_of(app)}
        for app, seconds in sorted(per_app.items(), key=lambda kv: (-kv[1], kv[0]))[:LEGEND]
    ]
    ticks = []
    hours = span / 3_600_000
    step = 3 if hours <= 26 else 24
    t = start_ms
    while t < end_ms:
        ticks.append({"left": round((t - start_ms) * 100 / span, 3), "label": _clock(tz, t)})
        t += step * 3_600_000
    return {
        "active": _thin(active),
        "idle": _thin(idle),
        "ticks": ticks,
        "legend": legend,
        "active_s": sum(s.end_ms - s.start_ms for s in tl.active) / 1000,
        "idle_s": sum(b - a for a, b, st in tl.afk if st == "afk") / 1000,
        "empty": not tl.active and not tl.afk and not tl.focus,
    }


def fmt_number(value: float | None) -> str:
    """``120`` for 120.0, ``0.05`` as it is; empty for None."""
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


pages.templates.env.filters["duration"] = fmt_duration
pages.templates.env.filters["number"] = fmt_number
