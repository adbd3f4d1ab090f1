"""The agents' primary channel: one WebSocket carrying acknowledged batches.

Frames are binary (msgpack + zstd) or text (JSON); each answer uses the
encoding of the frame it answers. Every BatchFrame gets an AckFrame or an
ErrorFrame with the same ``seq``; the agent drops a batch from its spool only
on the ack, and re-sends anything unacknowledged after a reconnect (batch and
event ids make that harmless).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from worklens.protocol import codec
from worklens.protocol.messages import AckFrame, ErrorFrame
from worklens.server.api.ingest import accept_batch
from worklens.server.deps import bearer, check_device, now_ms
from worklens.server.errors import ApiError, error_for
from worklens.server.services import Services
from worklens.server.store import devices as devices_store
from worklens.server.store.devices import DeviceAuth

router = APIRouter(prefix="/api/v1/agent", tags=["ingest"])
log = logging.getLogger(__name__)

POLICY_VIOLATION = 1008


async def _send(ws: WebSocket, frame: AckFrame | ErrorFrame, binary: bool) -> None:
    # An ack with nothing to tell the agent has no control key (older agents).
    quiet = isinstance(frame, AckFrame) and frame.control is None
    obj = frame.model_dump(mode="json", exclude={"control"} if quiet else None)
    if binary:
        await ws.send_bytes(codec.pack(obj))
    else:
        await ws.send_text(codec.to_json(obj).decode())


def _decode(services: Services, message: Mapping[str, Any]) -> tuple[Any, bool]:
    limit = services.settings.max_body_bytes
    if message.get("bytes") is not None:
        return codec.unpack(message["bytes"], limit), True
    text = message.get("text") or ""
    if len(text) > limit:
        raise codec.PayloadTooLarge(f"frame exceeds {limit} bytes")
    return codec.from_json(text.encode()), False


def _connection_changed(services: Services, device: DeviceAuth, closed: bool) -> None:
    """Online at once when the agent connects, offline at once when it goes;
    open dashboards are told."""
    with services.db.write() as conn:
        if closed:
            devices_store.set_disconnected(conn, device.id, now_ms())
        else:
            devices_store.touch(conn, device.id, now_ms())
    services.live.publish(device.org_id, [device.id])


@router.websocket("/ws")
async def agent_socket(ws: WebSocket) -> None:
    services: Services = ws.app.state.services
    await ws.accept()
    try:
        token = bearer(ws.headers.get("authorization"))
        device = await run_in_threadpool(check_device, services, token)
    except ApiError as exc:
        await _send(ws, ErrorFrame(status=exc.status, error=exc.error), binary=False)
        await ws.close(code=POLICY_VIOLATION, reason=exc.error[:120])
        return
    services.hub.connected(device.id)
    await run_in_threadpool(_connection_changed, services, device, False)
    try:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            binary = message.get("bytes") is not None
            seq: int | None = None
            try:
                obj, binary = _decode(services, message)
                if not isinstance(obj, dict) or obj.get("t") != "batch":
                    raise ApiError(400, "expected a batch frame {t: 'batch', seq, batch}")
                seq = obj.get("seq") if isinstance(obj.get("seq"), int) else None
                if seq is None or seq < 0:
                    raise ApiError(400, "batch frame needs a non-negative integer seq")
                # Re-checked per batch: a revoked or blocked device stops at once.
                device = await run_in_threadpool(check_device, services, token)
                result, control = await run_in_threadpool(
                    accept_batch, services, device, obj.get("batch"), token
                )
                await _send(ws, AckFrame(seq=seq, result=result, control=control), binary)
            except (codec.DecodeError, ValidationError) as exc:
                err = error_for(exc)
                await _send(
                    ws,
                    ErrorFrame(seq=seq, status=err.status, error=err.error, detail=err.detail),
                    binary,
                )
            except ApiError as exc:
                await _send(
                    ws,
                    ErrorFrame(seq=seq, status=exc.status, error=exc.error, detail=exc.detail),
                    binary,
                )
                if exc.status in (401, 403):
                    await ws.close(code=POLICY_VIOLATION, reason=exc.error[:120])
                    return
    except WebSocketDisconnect:
        return
    finally:
        services.hub.disconnected(device.id)
        await run_in_threadpool(_connection_changed, services, device, True)
