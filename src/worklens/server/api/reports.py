"""Reports: active time per app, title or device."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import AwareDatetime, BaseModel
from starlette.concurrency import run_in_threadpool

from worklens.server.analytics.time_report import ReportError, time_report
from worklens.server.deps import ServicesDep, UserDep
from worklens.server.errors import ApiError

router = APIRouter(prefix="/api/v1/reports", tags=["reports"])


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


@router.get("/time", response_model=TimeReport)
async def report_time(
    services: ServicesDep,
    user: UserDep,
    start: Annotated[AwareDatetime, Query(description="ISO 8601 with time zone")],
    end: Annotated[AwareDatetime, Query(description="ISO 8601 with time zone")],
    group_by: Annotated[str, Query()] = "app",
    device: Annotated[int | None, Query()] = None,
) -> TimeReport:
    """Active seconds (focus time while not afk) per key, clipped to [start, end)."""
    start_ms = round(start.timestamp() * 1000)
    end_ms = round(end.timestamp() * 1000)
    try:
        rows = await run_in_threadpool(
            time_report,
            services.db,
            services.rollups,
            user.org_id,
            group_by,
            start_ms,
            end_ms,
            device,
        )
    except ReportError as exc:
        raise ApiError(400, str(exc)) from exc
    return TimeReport(
        group_by=group_by,
        start=start,
        end=end,
        device=device,
        total_seconds=round(sum(r.seconds for r in rows), 3),
        rows=[TimeRow(key=r.key, seconds=r.seconds) for r in rows],
    )
