"""Event batches and heartbeats from agents over HTTP (the WebSocket's fallback)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from worklens.protocol.codec import DecodeError, decode_body
from worklens.protocol.messages import (
    AgentControl,
    Batch,
    HeartbeatRequest,
    HeartbeatResponse,
    IngestResponse,
    IngestResult,
    future_events,
)
from worklens.server.control import control_for
from worklens.server.deps import DeviceDep, ServicesDep, bearer, now_ms
from worklens.server.errors import ApiError, error_for
from worklens.server.services import Services
from worklens.server.store import devices as devices_store
from worklens.server.store.devices import DeviceAuth

router = APIRouter(prefix="/api/v1", tags=["ingest"])


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The raw body, refused as soon as it grows past ``max_bytes``."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise ApiError(413, f"body exceeds {max_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise ApiError(413, f"body exceeds {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def decode(services: Services, body: bytes, ctype: str | None, cenc: str | None) -> Any:
    try:
        return decode_body(body, ctype, cenc, services.settings.max_body_bytes)
    except DecodeError as exc:
        raise error_for(exc) from exc


def accept_batch(
    services: Services, device: DeviceAuth, obj: Any, token: str | None = None
) -> tuple[IngestResult, AgentControl | None]:
    """Validate a decoded batch and store it (sync: runs in a worker thread).
    With the ``token`` the agent called with: also what to tell it (``control``)."""
    try:
        batch = Batch.model_validate(obj)
    except ValidationError as exc:
        raise error_for(exc) from exc
    late = future_events(batch, datetime.now(UTC))
    if late:
        raise ApiError(
            422,
            "events start in the future (check the device clock)",
            [
                {"loc": ["events", i, "start"], "msg": "more than 5 minutes ahead"}
                for i in late[:50]
            ],
        )
    result = services.writer.ingest(device, batch, now_ms())
    services.live.publish(device.org_id, [device.id])
    if token is None:
        return result, None
    return result, control_for(services, device, token, batch.settings_version)


# Fields left unset (``control`` when there is nothing to say) are left out of the
# answer: agents that predate them read the answer as before.
@router.post("/ingest", response_model=IngestResponse, response_model_exclude_unset=True)
async def ingest(request: Request, services: ServicesDep, device: DeviceDep) -> IngestResponse:
    """Store a batch of events (JSON, or msgpack with optional zstd); the answer
    may tell the agent its new token or the organization's agent settings."""
    body = await read_body(request, services.settings.max_body_bytes)
    obj = await run_in_threadpool(
        decode,
        services,
        body,
        request.headers.get("content-type"),
        request.headers.get("content-encoding"),
    )
    token = bearer(request.headers.get("authorization"))
    result, control = await run_in_threadpool(accept_batch, services, device, obj, token)
    return IngestResponse(
        accepted=result.accepted,
        duplicates=result.duplicates,
        updated=result.updated,
        **({"control": control} if control is not None else {}),
    )


@router.post("/heartbeat", response_model=HeartbeatResponse, response_model_exclude_unset=True)
async def heartbeat(
    beat: HeartbeatRequest, request: Request, services: ServicesDep, device: DeviceDep
) -> HeartbeatResponse:
    """Mark the device as alive now; the answer may carry control, as ingest's."""
    token = bearer(request.headers.get("authorization"))

    def write() -> AgentControl | None:
        with services.db.write() as conn:
            devices_store.touch(
                conn,
                device.id,
                now_ms(),
                agent_version=beat.agent_version,
                spool_depth=beat.spool_depth,
                dropped=beat.dropped,
            )
        services.live.publish(device.org_id, [device.id])
        return control_for(services, device, token, beat.settings_version)

    control = await run_in_threadpool(write)
    return HeartbeatResponse(
        device_id=device.id,
        server_time=datetime.now(UTC),
        **({"control": control} if control is not None else {}),
    )
