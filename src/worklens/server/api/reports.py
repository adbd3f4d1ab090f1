"""Reports: active time per app, title, URL, domain, category, productivity
class, person or device;
per day or week; the hour-of-week heatmap; a device's timeline. Every table
report is JSON by default and CSV with ``format=csv``."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import AwareDatetime, BaseModel
from starlette.concurrency import run_in_threadpool

from worklens.server.access import Access
from worklens.server.analytics import activity
from worklens.server.analytics.csvout import write_csv
from worklens.server.analytics.time_report import ReportError, time_report, time_series
from worklens.server.deps import ServicesDep, UserDep
from worklens.server.errors import ApiError
from worklens.server.services import Services
from worklens.server.store import people as people_store

router = APIRouter(prefix="/api/v1/reports", tags=["reports"])

T = TypeVar("T")
Start = Annotated[AwareDatetime, Query(description="ISO 8601 with time zone")]
End = Annotated[AwareDatetime, Query(description="ISO 8601 with time zone (exclusive)")]
GroupBy = Annotated[
    str,
    Query(description="app, title, url, domain, category, productivity, person or device"),
]
Person = Annotated[int | None, Query(description="one person: their devices merged")]
Team = Annotated[int | None, Query(description="the people of one team")]
Depth = Annotated[int | None, Query(description="category levels to keep")]
Format = Annotated[Literal["json", "csv"], Query()]


class TimeRow(BaseModel):
    key: str
    seconds: float


class TimeReport(BaseModel):
    group_by: str
    start: datetime
    end: datetime
    device: int | None
    total_seconds: float
    rows: list[TimeRow]


class Period(BaseModel):
    start: datetime
    total_seconds: float
    rows: list[TimeRow]


class TimeSeries(BaseModel):
    group_by: str
    interval: str
    start: datetime
    end: datetime
    device: int | None
    periods: list[Period]


class HeatmapReport(BaseModel):
    start: datetime
    end: datetime
    device: int | None
    timezone: str
    # seconds[weekday][hour]; weekday 0 = Monday; local wall-clock hours.
    seconds: list[list[float]]


class Span(BaseModel):
    start: datetime
    end: datetime
    app: str
    title: str
    url: str = ""


class AfkSpan(BaseModel):
    start: datetime
    end: datetime
    status: str


class TimelineReport(BaseModel):
    device: int
    start: datetime
    end: datetime
    focus: list[Span]
    afk: list[AfkSpan]
    active: list[Span]


def _ms(t: datetime) -> int:
    return round(t.timestamp() * 1000)


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


async def _run(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    try:
        return await run_in_threadpool(fn, *args, **kwargs)
    except ReportError as exc:
        raise ApiError(400, str(exc)) from exc
    except LookupError as exc:
        raise ApiError(404, str(exc)) from exc


def _check_device(services: Services, access: Access, device_id: int) -> None:
    """A device the caller may not see does not exist for them."""
    if not access.sees_whole_org:
        with services.db.read() as conn:
            people_store.check_device_visible(conn, access, device_id)


def _csv(header: list[str], rows: list[list[Any]], name: str) -> Response:
    out = io.StringIO()
    write_csv(out, header, rows)
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )


@router.get("/time", response_model=TimeReport)
async def report_time(
    services: ServicesDep,
    user: UserDep,
    start: Start,
    end: End,
    group_by: GroupBy = "app",
    device: Annotated[int | None, Query()] = None,
    person: Person = None,
    team: Team = None,
    depth: Depth = None,
    format: Format = "json",
) -> Any:
    """Active seconds (focus time while not afk) per key, clipped to [start, end).
    A person's devices are merged: time when two were active at once counts once."""
    rows = await _run(
        time_report,
        services.db,
        services.rollups,
        user.org_id,
        group_by,
        _ms(start),
        _ms(end),
        device,
        person_id=person,
        team_id=team,
        depth=depth,
        classifiers=services.classifiers,
        max_days=services.settings.max_report_days,
        access=user,
    )
    if format == "csv":
        return _csv([group_by, "seconds"], [[r.key, r.seconds] for r in rows], "time")
    return TimeReport(
        group_by=group_by,
        start=start,
        end=end,
        device=device,
        total_seconds=round(sum(r.seconds for r in rows), 3),
        rows=[TimeRow(key=r.key, seconds=r.seconds) for r in rows],
    )


@router.get("/series", response_model=TimeSeries)
async def report_series(
    services: ServicesDep,
    user: UserDep,
    start: Start,
    end: End,
    interval: Annotated[str, Query(description="day or week (local, weeks from Monday)")] = "day",
    group_by: GroupBy = "app",
    device: Annotated[int | None, Query()] = None,
    person: Person = None,
    team: Team = None,
    depth: Depth = None,
    format: Format = "json",
) -> Any:
    """The time report for each day or week of the organization's time zone."""
    if interval not in ("day", "week"):
        raise ApiError(400, f"unknown interval {interval!r}; choose day or week")
    series = await _run(
        time_series,
        services.db,
        services.rollups,
        user.org_id,
        group_by,
        _ms(start),
        _ms(end),
        device,
        person_id=person,
        team_id=team,
        interval=interval,
        depth=depth,
        classifiers=services.classifiers,
        max_days=services.settings.max_report_days,
        access=user,
    )
    if format == "csv":
        table = [[_dt(a).isoformat(), r.key, r.seconds] for a, rows in series for r in rows]
        return _csv(["period_start", group_by, "seconds"], table, f"time-by-{interval}")
    return TimeSeries(
        group_by=group_by,
        interval=interval,
        start=start,
        end=end,
        device=device,
        periods=[
            Period(
                start=_dt(a),
                total_seconds=round(sum(r.seconds for r in rows), 3),
                rows=[TimeRow(key=r.key, seconds=r.seconds) for r in rows],
            )
            for a, rows in series
        ],
    )


@router.get("/heatmap", response_model=HeatmapReport)
async def report_heatmap(
    services: ServicesDep,
    user: UserDep,
    start: Start,
    end: End,
    device: Annotated[int | None, Query()] = None,
    person: Person = None,
    team: Team = None,
    format: Format = "json",
) -> Any:
    """Active seconds per hour of the week (local time of the organization)."""
    hm = await _run(
        activity.heatmap,
        services.db,
        services.rollups,
        user.org_id,
        _ms(start),
        _ms(end),
        device,
        person_id=person,
        team_id=team,
        max_days=services.settings.max_report_days,
        access=user,
    )
    if format == "csv":
        table = [[day, hour, hm.seconds[day][hour]] for day in range(7) for hour in range(24)]
        return _csv(["weekday", "hour", "seconds"], table, "heatmap")
    return HeatmapReport(
        start=start, end=end, device=device, timezone=hm.timezone, seconds=hm.seconds
    )


@router.get("/timeline", response_model=TimelineReport)
async def report_timeline(
    services: ServicesDep,
    user: UserDep,
    device: int,
    start: Start,
    end: End,
    format: Format = "json",
) -> Any:
    """A device's focus, afk and active spans (at most a week)."""
    await _run(_check_device, services, user, device)
    tl = await _run(
        activity.timeline, services.db, services.rollups, user.org_id, device, _ms(start), _ms(end)
    )
    if format == "csv":
        table = [
            [kind, _dt(s.start_ms).isoformat(), _dt(s.end_ms).isoformat(), s.app, s.title, s.url]
            for kind, spans in (("focus", tl.focus), ("active", tl.active))
            for s in spans
        ] + [
            ["afk", _dt(s).isoformat(), _dt(e).isoformat(), status, "", ""]
            for s, e, status in tl.afk
        ]
        return _csv(["kind", "start", "end", "app_or_status", "title", "url"], table, "timeline")
    return TimelineReport(
        device=device,
        start=start,
        end=end,
        focus=[
            Span(start=_dt(s.start_ms), end=_dt(s.end_ms), app=s.app, title=s.title)
            for s in tl.focus
        ],
        afk=[AfkSpan(start=_dt(s), end=_dt(e), status=st) for s, e, st in tl.afk],
        active=[
            Span(start=_dt(s.start_ms), end=_dt(s.end_ms), app=s.app, title=s.title, url=s.url)
            for s in tl.active
        ],
    )
