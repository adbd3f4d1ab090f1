"""Liveness and readiness."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from worklens import __version__
from worklens.protocol.messages import PROTOCOL_VERSION
from worklens.server.deps import ServicesDep
from worklens.server.errors import ApiError

router = APIRouter(prefix="/api/v1", tags=["health"])


@router.get("/health")
async def health(services: ServicesDep) -> dict[str, Any]:
    """The server is up and its database answers."""

    def ping() -> None:
        with services.db.read() as conn:
            conn.execute(text("SELECT 1"))

    try:
        await run_in_threadpool(ping)
    except Exception as exc:  # any database failure means "not ready"
        raise ApiError(503, "database unavailable", str(exc)) from exc
    return {"status": "ok", "version": __version__, "protocol": PROTOCOL_VERSION}
