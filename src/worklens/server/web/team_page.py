"""Teams: the list a caller may see, and a team's report.

``/teams/{id}/report`` shows, for local days of the organization's time zone
(one day or a range), each person of the team with their active time per app
(or per category) as a table of their top keys and one horizontal stacked bar.
Bars share one scale (the busiest person fills the width) and one color per
key across the team, so "one person watched YouTube in Chromium for 6 h while
another used VS Code for 10 h" reads at a glance.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import Connection, func, select
from starlette.concurrency import run_in_threadpool

from worklens.server.access import Access
from worklens.server.analytics.time_report import time_report
from worklens.server.deps import ServicesDep
from worklens.server.services import Services
from worklens.server.store import people as people_store
from worklens.server.store.schema import people, teams
from worklens.server.web import dash

router = APIRouter(include_in_schema=False)
By = Literal["app", "category"]
TOP_PER_PERSON = 5  # keys listed in each person's row
COLORED = len(dash.PALETTE)  # keys with their own color; the rest are "Other"
MIN_LABEL = 6.0  # percent of the bar a segment needs to carry its label


def team_row(conn: Connection, access: Access, team_id: int) -> dict[str, Any]:
    """The team, if ``access`` may see it (404 otherwise, as if there were none)."""
    row = conn.execute(
        select(teams.c.id, teams.c.name).where(
            teams.c.org_id == access.org_id, teams.c.id == team_id
        )
    ).first()
    if row is None or not access.may_see_team(team_id):
        raise dash.not_found(f"team {team_id}")
    return dict(row._mapping)


def _teams(services: Services, access: Access) -> list[dict[str, Any]]:
    with services.db.read() as conn:
        counts = {
            int(team): int(n)
            for team, n in conn.execute(
                select(people.c.team_id, func.count())
                .where(people.c.org_id == access.org_id, people.c.team_id.is_not(None))
                .group_by(people.c.team_id)
            )
        }
        rows = people_store.list_teams(conn, access.org_id)
    return [{**t, "people": counts.get(t["id"], 0)} for t in rows if access.may_see_team(t["id"])]


@router.get("/teams", response_class=HTMLResponse)
async def teams_page(request: Request, services: ServicesDep) -> Response:
    access = await dash.viewer(request, services)
    if access is None:
        return dash.to_login()
    rows = await run_in_threadpool(_teams, services, access)
    return dash.render(request, "teams.html", {**dash.chrome(request, access), "teams": rows})


def team_report(
    services: Services,
    access: Access,
    team_id: int,
    start: str | None,
    end: str | None,
    by: By,
) -> dict[str, Any]:
    """Everything the team report shows (sync: runs in a thread)."""
    with services.db.read() as conn:
        team = team_row(conn, access, team_id)
        members = [
            p for p in people_store.list_people(conn, access.org_id) if p["team_id"] == team_id
        ]
    tz_name, _ = dash.org_zone(services, access.org_id)
    days = dash.parse_days(
        tz_name, start, end, services.settings.max_report_days, int(time.time() * 1000)
    )
    per_person: list[tuple[dict[str, Any], list[tuple[str, float]]]] = []
    team_totals: dict[str, float] = {}
    for p in members:
        rows = time_report(
            services.db,
            services.rollups,
            access.org_id,
            by,
            days.start_ms,
            days.end_ms,
            person_id=p["id"],
            classifiers=services.classifiers,
            max_days=services.settings.max_report_days,
            access=access,
        )
        keyed = sorted(((r.key, r.seconds) for r in rows), key=lambda kv: (-kv[1], kv[0]))
        per_person.append((p, keyed))
        for key, seconds in keyed:
            team_totals[key] = team_totals.get(key, 0.0) + seconds
    ranked = sorted(team_totals, key=lambda k: (-team_totals[k], k))
    colors = {key: dash.PALETTE[i] for i, key in enumerate(ranked[:COLORED])}
    busiest = max((sum(s for _, s in keyed) for _, keyed in per_person), default=0.0)
    out = []
    for p, keyed in per_person:
        total = sum(s for _, s in keyed)
        segments: list[dict[str, Any]] = []
        other = 0.0
        for key, seconds in keyed:
            if key in colors:
                segments.append({"key": key, "seconds": seconds, "color": colors[key]})
            else:
                other += seconds
        if other:
            segments.append({"key": "Other", "seconds": other, "color": dash.OTHER_COLOR})
        for seg in segments:
            seg["width"] = round(seg["seconds"] * 100 / busiest, 3) if busiest else 0
            seg["labelled"] = seg["width"] >= MIN_LABEL
        out.append(
            {
                **p,
                "total_s": total,
                "top": keyed[:TOP_PER_PERSON],
                "more": len(keyed) - TOP_PER_PERSON if len(keyed) > TOP_PER_PERSON else 0,
                "more_s": sum(s for _, s in keyed[TOP_PER_PERSON:]),
                "segments": segments,
            }
        )
    out.sort(key=lambda r: (-r["total_s"], r["name"]))
    legend = [{"key": k, "color": colors[k], "seconds": team_totals[k]} for k in ranked[:COLORED]]
    if len(ranked) > COLORED:
        rest = sum(team_totals[k] for k in ranked[COLORED:])
        legend.append({"key": "Other", "color": dash.OTHER_COLOR, "seconds": rest})
    return {
        "team": team,
        "days": days,
        "by": by,
        "people": out,
        "legend": legend,
        "total_s": sum(team_totals.values()),
        "earlier": days.shifted(-((days.last - days.first).days + 1)),
        "later": days.shifted((days.last - days.first).days + 1),
        "quick": dash.quick_ranges(tz_name),
    }


@router.get("/teams/{team_id}/report", response_class=HTMLResponse)
async def team_report_page(
    request: Request,
    services: ServicesDep,
    team_id: int,
    start: Annotated[str | None, Query(max_length=32)] = None,
    end: Annotated[str | None, Query(max_length=32)] = None,
    by: Annotated[By, Query()] = "app",
) -> Response:
    access = await dash.viewer(request, services)
    if access is None:
        return dash.to_login()
    data = await run_in_threadpool(team_report, services, access, team_id, start, end, by)
    return dash.render(request, "team_report.html", {**dash.chrome(request, access), **data})
