"""Devices of the caller's organization (those the caller may see)."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from worklens.server.access import Access
from worklens.server.deps import AdminDep, ServicesDep, UserDep
from worklens.server.errors import ApiError
from worklens.server.services import Services
from worklens.server.store import audit
from worklens.server.store import devices as devices_store
from worklens.server.store import people as people_store

router = APIRouter(prefix="/api/v1/devices", tags=["devices"])


def device_list(services: Services, access: Access) -> list[dict[str, Any]]:
    """Devices with their live state: online = connected now or heard from recently."""
    with services.db.read() as conn:
        rows = devices_store.list_devices(conn, access.org_id)
        visible = people_store.visible_devices(conn, access)
    if visible is not None:
        rows = [r for r in rows if r["id"] in visible]
    now = int(time.time() * 1000)
    offline_ms = services.settings.offline_after_s * 1000
    for r in rows:
        r["connected"] = services.hub.is_connected(r["id"])  # to this server process
        r["online"] = devices_store.is_online(r, now, offline_ms)
        r["blocked"] = bool(r["blocked"])
        r["enrolled"] = bool(r["enrolled"])
    return rows


@router.get("")
async def list_devices(services: ServicesDep, user: UserDep) -> list[dict[str, Any]]:
    """The devices the caller may see, with online state and last-seen time."""
    return await run_in_threadpool(device_list, services, user)


def _change(services: Services, admin: Access, device_id: int, action: str) -> None:
    with services.db.write() as conn:
        if action == "revoke":
            ok = devices_store.revoke(conn, admin.org_id, device_id)
        else:
            ok = devices_store.set_blocked(conn, admin.org_id, device_id, action == "block")
        if not ok:
            raise ApiError(404, f"no device {device_id} in this organization")
        audit.by(conn, admin, f"device.{action}", f"device {device_id}")
    services.live.publish(admin.org_id, [device_id])  # open pages show the new state


@router.post("/{device_id}/{action}", status_code=204)
async def change_device(
    device_id: int, action: str, services: ServicesDep, admin: AdminDep
) -> None:
    """Revoke a device's token, or block / unblock it."""
    if action not in ("revoke", "block", "unblock"):
        raise ApiError(404, f"unknown action {action!r}; use revoke, block or unblock")
    await run_in_threadpool(_change, services, admin, device_id, action)
