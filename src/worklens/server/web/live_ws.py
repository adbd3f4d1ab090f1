"""The dashboards' live socket: htmx's ws extension connects to /live/ws and
swaps in the fragments sent here (out-of-band, by element id) whenever a
device the page may show changes (see server/live.py)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, WebSocket
from starlette.concurrency import run_in_threadpool

from worklens.server.access import Access
from worklens.server.deps import SESSION_COOKIE, check_session
from worklens.server.services import Services
from worklens.server.web import fleet
from worklens.server.web.pages import templates

router = APIRouter(include_in_schema=False)
POLICY_VIOLATION = 1008
RECHECK_S = 60.0  # how often a long-lived socket checks its session is still alive


def same_origin(origin: str | None, host: str | None) -> bool:
    """A browser always sends Origin on a WebSocket: another site's page must not
    ride the user's cookie to read live data (cross-site WebSocket hijacking)."""
    return bool(origin and host) and urlsplit(origin or "").netloc == host


PARTS = ("row", "now", "health")


def fragments(
    views: list[dict[str, Any]],
    new_device: bool,
    all_views: list[dict[str, Any]],
    parts: frozenset[str] = frozenset(PARTS),
) -> list[str]:
    """The out-of-band swaps for changed devices, as messages: their fleet rows,
    their "now" badges (wherever a page shows them), and the whole fleet table
    when a device the page cannot have yet appeared.

    Table rows and other elements go in separate messages: htmx parses a
    message as a template whose first tag sets the parsing mode, and a ``<tr>``
    after a ``<div>`` (or the other way round) would be dropped."""
    get = templates.env.get_template
    out = []
    if "row" in parts:
        if new_device:
            out.append(get("partials/fleet_rows.html").render(devices=all_views, oob=True))
        rows = "".join(get("partials/device_row.html").render(d=d, oob=True) for d in views)
        if rows and not new_device:
            out.append(rows)
    others = ""
    if "now" in parts:
        others += "".join(get("partials/device_now.html").render(d=d, oob=True) for d in views)
    if "health" in parts:
        health = get("partials/device_health.html")
        others += "".join(health.render(d=d, oob=True) for d in views if d["sample"])
    if new_device and "row" in parts:
        others = '<div id="fleet-empty" hx-swap-oob="true" hidden></div>' + others
    if others:
        out.append(others)
    return out


@router.websocket("/live/ws")
async def live_socket(ws: WebSocket) -> None:
    services: Services = ws.app.state.services
    if not same_origin(ws.headers.get("origin"), ws.headers.get("host")):
        await ws.close(code=POLICY_VIOLATION, reason="cross-origin")
        return
    session_id = ws.cookies.get(SESSION_COOKIE, "")
    session = await run_in_threadpool(check_session, services, session_id)
    if session is None:
        await ws.close(code=POLICY_VIOLATION, reason="log in first")
        return
    access = session.user.access(ws.client.host if ws.client else "")
    # What the page shows (fleet rows, "now" badges, host charts): only those
    # fragments are sent, so that htmx finds a target for each.
    asked = ws.query_params.get("parts", "row,now")
    parts = frozenset(p for p in asked.split(",") if p in PARTS) or frozenset(("row", "now"))
    await ws.accept()
    hub = services.live
    sub = hub.subscribe(access.org_id)
    known = {d["id"] for d in await run_in_threadpool(fleet.device_views, services, access)}
    checked = time.monotonic()
    closed = asyncio.create_task(_until_closed(ws))
    try:
        while True:
            changed = asyncio.create_task(sub.changed())
            done, _ = await asyncio.wait({changed, closed}, return_when=asyncio.FIRST_COMPLETED)
            if closed in done:
                changed.cancel()
                return
            if time.monotonic() - checked > RECHECK_S:
                if await run_in_threadpool(check_session, services, session_id) is None:
                    await ws.close(code=POLICY_VIOLATION, reason="session ended")
                    return
                checked = time.monotonic()
            messages = await run_in_threadpool(
                _render, services, access, changed.result(), known, parts
            )
            for text in messages:
                await ws.send_text(text)
    finally:
        hub.unsubscribe(sub)
        closed.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await closed


def _render(
    services: Services,
    access: Access,
    changed: set[int],
    known: set[int],
    parts: frozenset[str],
) -> list[str]:
    views = fleet.device_views(services, access, sorted(changed))
    new = {d["id"] for d in views} - known
    all_views = fleet.device_views(services, access) if new and "row" in parts else []
    known |= new
    out = fragments(views, bool(new), all_views, parts)
    # Deleted, or no longer visible to this user: off the page.
    gone = sorted((changed & known) - {d["id"] for d in views})
    known -= set(gone)
    if gone and "row" in parts:
        out.append("".join(f'<tr id="device-row-{i}" hx-swap-oob="delete"></tr>' for i in gone))
    if gone and "now" in parts:
        out.append("".join(f'<span id="device-now-{i}" hx-swap-oob="delete"></span>' for i in gone))
    return out


async def _until_closed(ws: WebSocket) -> None:
    """Read (and ignore) what the page sends until it goes away."""
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return
