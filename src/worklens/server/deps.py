"""Request dependencies, declared once: the app's services and who is calling."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from worklens.server.errors import ApiError
from worklens.server.services import Services
from worklens.server.store import devices as devices_store
from worklens.server.store import orgs as orgs_store
from worklens.server.store.devices import DeviceAuth
from worklens.server.store.orgs import TokenAuth


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def bearer(authorization: str | None) -> str:
    if not authorization:
        raise ApiError(401, "missing Authorization header", headers={"WWW-Authenticate": "Bearer"})
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(
            401, "Authorization must be 'Bearer <token>'", headers={"WWW-Authenticate": "Bearer"}
        )
    return token.strip()


def rate_limit(services: Services, key: str, what: str = "rate limit exceeded") -> None:
    """Spend one request from ``key``'s budget or answer 429 with Retry-After."""
    wait = services.limiter.take(key)
    if wait:
        raise ApiError(429, what, headers={"Retry-After": str(max(1, round(wait)))})


def check_device(services: Services, token: str) -> DeviceAuth:
    """Authenticate and rate-limit a device token (sync: call from a thread)."""
    with services.db.read() as conn:
        device = devices_store.authenticate(conn, token)
    if device is None:
        raise ApiError(
            401, "invalid or revoked device token", headers={"WWW-Authenticate": "Bearer"}
        )
    if device.blocked:
        raise ApiError(403, f"device {device.id} is blocked")
    rate_limit(services, f"d{device.id}")
    return device


async def current_device(request: Request, services: ServicesDep) -> DeviceAuth:
    token = bearer(request.headers.get("authorization"))
    return await run_in_threadpool(check_device, services, token)


def check_token(services: Services, token: str) -> TokenAuth:
    with services.db.read() as conn:
        auth = orgs_store.authenticate_token(conn, token)
    if auth is None:
        raise ApiError(401, "invalid or revoked API token", headers={"WWW-Authenticate": "Bearer"})
    rate_limit(services, f"t{auth.token_id}")
    return auth


async def current_user(request: Request, services: ServicesDep) -> TokenAuth:
    """An API token from the Authorization header, or the dashboard's session cookie."""
    header = request.headers.get("authorization")
    token = bearer(header) if header else request.cookies.get("wl_session", "")
    if not token:
        raise ApiError(401, "log in or send 'Authorization: Bearer <token>'")
    return await run_in_threadpool(check_token, services, token)


def require_admin(user: Annotated[TokenAuth, Depends(current_user)]) -> TokenAuth:
    if user.role != "admin":
        raise ApiError(403, "this needs an admin token")
    return user


DeviceDep = Annotated[DeviceAuth, Depends(current_device)]
UserDep = Annotated[TokenAuth, Depends(current_user)]
AdminDep = Annotated[TokenAuth, Depends(require_admin)]
