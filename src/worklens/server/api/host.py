"""A device's host health samples over a range, for charts: columns of times
and values, averaged over equal steps when there are more than ``MAX_POINTS``."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import AwareDatetime, BaseModel
from sqlalchemy import Connection, func, select
from starlette.concurrency import run_in_threadpool

from worklens.server.access import Access
from worklens.server.deps import ServicesDep, UserDep
from worklens.server.errors import ApiError
from worklens.server.services import Services
from worklens.server.store import people as people_store
from worklens.server.store.schema import host_samples

router = APIRouter(prefix="/api/v1/devices", tags=["devices"])

MAX_POINTS = 1000  # per series
METRICS = (
    "cpu_percent",
    "mem_percent",
    "swap_percent",
    "disk_percent",
    "load1",
    "load5",
    "load15",
    "uptime_s",
    "temperature_c",
)


class HostSeries(BaseModel):
    """Columns of equal length: ``t`` (seconds since the epoch) and one list per
    metric (null where the host could not measure it)."""

    device: int
    start: datetime
    end: datetime
    step_s: float | None  # averaged over steps of this length; None: raw samples
    t: list[float]
    cpu_percent: list[float | None]
    mem_percent: list[float | None]
    swap_percent: list[float | None]
    disk_percent: list[float | None]
    load1: list[float | None]
    load5: list[float | None]
    load15: list[float | None]
    uptime_s: list[float | None]
    temperature_c: list[float | None]


def _round(v: Any) -> float | None:
    return None if v is None else round(float(v), 3)


def series(
    conn: Connection, device_id: int, start_ms: int, end_ms: int, max_points: int = MAX_POINTS
) -> tuple[float | None, dict[str, list[Any]]]:
    """The samples in ``[start_ms, end_ms)``, at most ``max_points`` per column:
    beyond that, the averages of equal steps (whole seconds) from ``start_ms``."""
    where = (
        host_samples.c.device_id == device_id,
        host_samples.c.ts_ms >= start_ms,
        host_samples.c.ts_ms < end_ms,
    )
    count = conn.execute(select(func.count()).select_from(host_samples).where(*where)).scalar_one()
    columns = [host_samples.c[m] for m in METRICS]
    out: dict[str, list[Any]] = {"t": [], **{m: [] for m in METRICS}}
    step_ms: int | None = None
    if count <= max_points:
        rows = conn.execute(
            select(host_samples.c.ts_ms, *columns).where(*where).order_by(host_samples.c.ts_ms)
        ).all()
    else:
        step_ms = math.ceil((end_ms - start_ms) / max_points / 1000) * 1000
        first = func.min(host_samples.c.ts_ms)
        rows = conn.execute(
            select(first, *(func.avg(c) for c in columns))
            .where(*where)
            .group_by((host_samples.c.ts_ms - start_ms) // step_ms)
            .order_by(first)
        ).all()
    for row in rows:
        out["t"].append(int(row[0]) / 1000)
        for i, m in enumerate(METRICS, start=1):
            out[m].append(_round(row[i]))
    return (step_ms / 1000 if step_ms else None), out


def _read(
    services: Services, access: Access, device_id: int, start_ms: int, end_ms: int
) -> tuple[float | None, dict[str, list[Any]]]:
    with services.db.read() as conn:
        try:
            people_store.check_device_visible(conn, access, device_id)
        except people_store.NotFound as exc:
            raise ApiError(404, str(exc)) from exc
        return series(conn, device_id, start_ms, end_ms)


@router.get("/{device_id}/host", response_model=HostSeries)
async def host_series(
    device_id: int,
    services: ServicesDep,
    user: UserDep,
    start: Annotated[AwareDatetime | None, Query(description="default: 24 h before end")] = None,
    end: Annotated[AwareDatetime | None, Query(description="default: now (exclusive)")] = None,
) -> HostSeries:
    """CPU, memory, swap, disk, load, uptime and temperature of one device over
    ``[start, end)``: raw samples, or averages of equal steps when there would
    be more than 1000 points."""
    end = end or datetime.fromtimestamp(time.time(), UTC)
    start = start or end - timedelta(days=1)
    if end <= start:
        raise ApiError(400, "start must be before end")
    days = services.settings.max_report_days
    if end - start > timedelta(days=days):
        raise ApiError(400, f"range is longer than the maximum of {days} days")
    start_ms, end_ms = round(start.timestamp() * 1000), round(end.timestamp() * 1000)
    step_s, cols = await run_in_threadpool(_read, services, user, device_id, start_ms, end_ms)
    return HostSeries(device=device_id, start=start, end=end, step_s=step_s, **cols)
