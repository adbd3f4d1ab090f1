"""People: the list of those the caller may see, and one person's day.

``/people/{id}`` shows a local day of the organization's time zone (a date
picker moves it): for each of the person's devices its live "now" badge (the
live socket updates it by id) and its timeline of active focus and idle time;
then the day's active time per app, window title and category across all the
person's devices (merged: time two devices were active at once counts once).
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import Connection, select
from starlette.concurrency import run_in_threadpool

from worklens.server.access import Access
from worklens.server.analytics import activity
from worklens.server.analytics.time_report import Row, time_report
from worklens.server.deps import ServicesDep
from worklens.server.services import Services
from worklens.server.store import people as people_store
from worklens.server.store.schema import people, teams
from worklens.server.web import dash, fleet

router = APIRouter(include_in_schema=False)
TOP = 15  # rows per table; the rest are summed up as "others"


def person_row(conn: Connection, access: Access, person_id: int) -> dict[str, Any]:
    """The person, if ``access`` may see them (404 otherwise, as if there were none)."""
    row = conn.execute(
        select(
            people.c.id,
            people.c.name,
            people.c.email,
            people.c.team_id,
            teams.c.name.label("team"),
        )
        .select_from(people.outerjoin(teams, teams.c.id == people.c.team_id))
        .where(people.c.org_id == access.org_id, people.c.id == person_id)
    ).first()
    if row is None or not access.may_see_person(int(row.id), row.team_id):
        raise dash.not_found(f"person {person_id}")
    return dict(row._mapping)


def top_rows(rows: list[Row], n: int = TOP) -> dict[str, Any]:
    """The first ``n`` rows (with their share of the biggest), and what is left."""
    rows = sorted(rows, key=lambda r: (-r.seconds, r.key))
    biggest = rows[0].seconds if rows else 0.0
    shown = [
        {"key": r.key, "seconds": r.seconds, "share": round(r.seconds * 100 / biggest, 2)}
        for r in rows[:n]
        if biggest
    ]
    rest = rows[n:]
    return {
        "rows": shown,
        "others": len(rest),
        "others_s": sum(r.seconds for r in rest),
        "total_s": sum(r.seconds for r in rows),
    }


def _people_list(services: Services, access: Access) -> list[dict[str, Any]]:
    with services.db.read() as conn:
        everyone = people_store.list_people(conn, access.org_id)
        names = {t["id"]: t["name"] for t in people_store.list_teams(conn, access.org_id)}
    return [
        {**p, "team": names.get(p["team_id"], "")}
        for p in everyone
        if access.may_see_person(p["id"], p["team_id"])
    ]


@router.get("/people", response_class=HTMLResponse)
async def people_page(request: Request, services: ServicesDep) -> Response:
    access = await dash.viewer(request, services)
    if access is None:
        return dash.to_login()
    rows = await run_in_threadpool(_people_list, services, access)
    return dash.render(request, "people.html", {**dash.chrome(request, access), "people": rows})


def person_day(
    services: Services, access: Access, person_id: int, day: str | None
) -> dict[str, Any]:
    """Everything the person page shows (sync: runs in a thread)."""
    with services.db.read() as conn:
        person = person_row(conn, access, person_id)
        device_ids = people_store.devices_of(conn, access.org_id, person_id=person_id)
    tz_name, tz = dash.org_zone(services, access.org_id)
    days = dash.parse_days(tz_name, day, None, 1, int(time.time() * 1000))
    views = fleet.device_views(services, access, device_ids) if device_ids else []
    devices = []
    for v in views:
        tl = activity.timeline(
            services.db, services.rollups, access.org_id, v["id"], days.start_ms, days.end_ms
        )
        devices.append({"d": v, "lanes": dash.timeline_lanes(tl, tz, days.start_ms, days.end_ms)})
    tables = {}
    for group_by in ("app", "title", "category"):
        rows = time_report(
            services.db,
            services.rollups,
            access.org_id,
            group_by,
            days.start_ms,
            days.end_ms,
            person_id=person_id,
            classifiers=services.classifiers,
            max_days=services.settings.max_report_days,
            access=access,
        )
        tables[group_by] = top_rows(rows)
    return {
        "person": person,
        "days": days,
        "prev_day": days.shifted(-1)[0],
        "next_day": days.shifted(1)[0],
        "devices": devices,
        "tables": tables,
    }


@router.get("/people/{person_id}", response_class=HTMLResponse)
async def person_page(
    request: Request,
    services: ServicesDep,
    person_id: int,
    date: Annotated[str | None, Query(max_length=32)] = None,
) -> Response:
    access = await dash.viewer(request, services)
    if access is None:
        return dash.to_login()
    data = await run_in_threadpool(person_day, services, access, person_id, date)
    return dash.render(request, "person.html", {**dash.chrome(request, access), **data})
