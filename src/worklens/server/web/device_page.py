"""One device: inventory, live "now" badge, host health charts (uPlot, data
from ``GET /api/v1/devices/{id}/host``), a day's timeline and, for admins, the
management actions (block, unblock, revoke or rotate the token, delete the
device and its data after typing its host name). The actions call the JSON API
from htmx with the session's CSRF token."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from worklens.server.access import Access
from worklens.server.analytics import activity
from worklens.server.deps import ServicesDep
from worklens.server.services import Services
from worklens.server.store import people as people_store
from worklens.server.store.schema import devices
from worklens.server.web import dash, fleet

router = APIRouter(include_in_schema=False)


def _identity_rows(text: str) -> list[tuple[str, str]]:
    """The identity the agent sent at enrollment, as (field, text) rows."""
    try:
        data = json.loads(text or "{}")
    except ValueError:
        return [("identity", text)]
    if not isinstance(data, dict):
        return [("identity", text)]
    rows = []
    for key, value in data.items():
        if key == "interfaces" and isinstance(value, list):
            for nic in value:
                if isinstance(nic, dict):
                    addrs = ", ".join(str(a) for a in nic.get("addresses") or [])
                    mac = f" (MAC {nic['mac']})" if nic.get("mac") else ""
                    rows.append((f"interface {nic.get('name', '')}", f"{addrs}{mac}"))
            continue
        if key == "memory_bytes" and isinstance(value, int):
            rows.append((key, f"{value} ({value / 2**30:.1f} GiB)"))
            continue
        if value is None or value == "":
            text_value = "—"
        elif isinstance(value, (dict, list)):
            text_value = json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
        else:
            text_value = str(value)
        rows.append((key, text_value))
    return rows


def device_detail(
    services: Services, access: Access, device_id: int, day: str | None
) -> dict[str, Any]:
    """Everything the device page shows (sync: runs in a thread)."""
    with services.db.read() as conn:
        try:
            people_store.check_device_visible(conn, access, device_id)
        except people_store.NotFound as exc:
            raise dash.not_found(f"device {device_id}") from exc
        row = conn.execute(
            select(
                devices.c.id,
                devices.c.hostname,
                devices.c.hardware_uuid,
                devices.c.os,
                devices.c.kernel,
                devices.c.os_user,
                devices.c.email,
                devices.c.agent_version,
                devices.c.identity,
                devices.c.blocked,
                devices.c.created_ms,
                devices.c.token_hash.is_not(None).label("enrolled"),
            ).where(devices.c.id == device_id, devices.c.org_id == access.org_id)
        ).one()
    views = fleet.device_views(services, access, [device_id])
    if not views:
        raise dash.not_found(f"device {device_id}")
    tz_name, tz = dash.org_zone(services, access.org_id)
    days = dash.parse_days(tz_name, day, None, 1, int(time.time() * 1000))
    tl = activity.timeline(
        services.db, services.rollups, access.org_id, device_id, days.start_ms, days.end_ms
    )
    return {
        "device": {**row._mapping, "created": fleet.when(row.created_ms)},
        "identity": _identity_rows(row.identity),
        "d": views[0],
        "days": days,
        "prev_day": days.shifted(-1)[0],
        "next_day": days.shifted(1)[0],
        "day_lanes": dash.timeline_lanes(tl, tz, days.start_ms, days.end_ms),
    }


@router.get("/devices/{device_id}", response_class=HTMLResponse)
async def device_page(
    request: Request,
    services: ServicesDep,
    device_id: int,
    date: Annotated[str | None, Query(max_length=32)] = None,
) -> Response:
    access = await dash.viewer(request, services)
    if access is None:
        return dash.to_login()
    data = await run_in_threadpool(device_detail, services, access, device_id, date)
    return dash.render(request, "device.html", {**dash.chrome(request, access), **data})
