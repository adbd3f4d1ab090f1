"""Devices of the caller's organization (those the caller may see)."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from worklens.server.access import Access
from worklens.server.deps import AdminDep, ServicesDep, UserDep, now_ms
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
        rotating = devices_store.pending_rotations(conn, access.org_id)
    if visible is not None:
        rows = [r for r in rows if r["id"] in visible]
    now = int(time.time() * 1000)
    offline_ms = services.settings.offline_after_s * 1000
    for r in rows:
        r["connected"] = services.hub.is_connected(r["id"])  # to this server process
        r["online"] = devices_store.is_online(r, now, offline_ms)
        r["blocked"] = bool(r["blocked"])
        r["enrolled"] = bool(r["enrolled"])
        r["token_rotation_pending"] = r["id"] in rotating
    return rows


@router.get("")
async def list_devices(services: ServicesDep, user: UserDep) -> list[dict[str, Any]]:
    """The devices the caller may see, with online state and last-seen time."""
    return await run_in_threadpool(device_list, services, user)


class RotateAnswer(BaseModel):
    device_id: int
    requested_ms: int  # when the pending rotation was asked for
    already_pending: bool  # an earlier request is still waiting for the device


def _rotate(services: Services, admin: Access, device_id: int) -> RotateAnswer:
    with services.db.write() as conn:
        now = now_ms()
        try:
            requested = devices_store.request_rotation(conn, admin.org_id, device_id, now)
        except devices_store.NotEnrolled as exc:
            raise ApiError(409, str(exc)) from exc
        if requested is None:
            raise ApiError(404, f"no device {device_id} in this organization")
        answer = RotateAnswer(
            device_id=device_id, requested_ms=requested, already_pending=requested != now
        )
        audit.by(
            conn,
            admin,
            "device.rotate",
            f"device {device_id}",
            {"already_pending": answer.already_pending},
        )
    return answer


@router.post("/{device_id}/rotate", status_code=202, response_model=RotateAnswer)
async def rotate_token(device_id: int, services: ServicesDep, admin: AdminDep) -> RotateAnswer:
    """Give the device a new token without enrolling again and without losing
    anything. The device gets it with the answer to its next batch or heartbeat,
    saves it, and uses it from its next request on; the old token works until
    then, and stops working at that first request with the new one. Asking
    again while a rotation is pending changes nothing (the device may already
    have saved the new token)."""
    return await run_in_threadpool(_rotate, services, admin, device_id)


class DeleteConfirm(BaseModel):
    model_config = ConfigDict(extra="forbid")

    confirm: str = Field(max_length=255, description="the device's host name, exactly")


def _delete(services: Services, admin: Access, device_id: int, confirm: str) -> dict[str, Any]:
    with services.db.write() as conn:
        hostname = devices_store.hostname_of(conn, admin.org_id, device_id)
        if hostname is None:
            raise ApiError(404, f"no device {device_id} in this organization")
        if confirm != hostname:
            msg = "does not match the device's host name (type it as the device list shows it)"
            raise ApiError(
                400,
                f"confirmation {msg}: nothing was deleted",
                [{"loc": ["body", "confirm"], "msg": msg}],
            )
        counts = devices_store.delete_device(conn, device_id)
        audit.by(
            conn, admin, "device.delete", f"device {device_id}", {"hostname": hostname, **counts}
        )
    services.writer.forget_device(device_id)
    services.live.publish(admin.org_id, [device_id])  # open pages drop it
    return {"device_id": device_id, "hostname": hostname, "deleted": counts}


@router.delete("/{device_id}")
async def delete_device(
    device_id: int, body: DeleteConfirm, services: ServicesDep, admin: AdminDep
) -> dict[str, Any]:
    """Delete the device and all its data (events, ActivityWatch buckets, host
    samples, rollups), after a confirmation: ``{"confirm": "<its host name>"}``.
    Its person's reports lose its time; its token stops working at once. An
    agent still running with the enrollment secret would enroll again as a new
    device: block a device to keep it out."""
    return await run_in_threadpool(_delete, services, admin, device_id, body.confirm)


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
