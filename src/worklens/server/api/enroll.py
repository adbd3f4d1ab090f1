"""Enrollment: an organization's secret in, a device token out."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from worklens.protocol.messages import EnrollRequest, EnrollResponse, SystemIdentity
from worklens.server.deps import ServicesDep, now_ms, rate_limit
from worklens.server.errors import ApiError
from worklens.server.store import devices as devices_store
from worklens.server.store import orgs as orgs_store

router = APIRouter(prefix="/api/v1", tags=["enroll"])


@router.post("/enroll", status_code=201, response_model=EnrollResponse)
async def enroll(req: EnrollRequest, services: ServicesDep) -> EnrollResponse:
    """Register a machine; the token in the answer is shown only this once."""
    rate_limit(services, "enroll", "too many enrollments")

    def work() -> EnrollResponse:
        with services.db.write() as conn:
            org = orgs_store.org_by_enroll_secret(conn, req.enroll_secret)
            if org is None or (req.org is not None and req.org != org.name):
                raise ApiError(401, "invalid enrollment secret")
            ident = SystemIdentity.model_validate(req.model_dump(exclude={"enroll_secret", "org"}))
            try:
                device_id, token = devices_store.enroll(conn, org, ident, now_ms())
            except devices_store.DeviceBlocked as exc:
                raise ApiError(403, str(exc)) from exc
        services.writer.forget_device(device_id)
        services.live.publish(org.id, [device_id])
        return EnrollResponse(device_id=device_id, token=token, org=org.name)

    return await run_in_threadpool(work)
