"""Request dependencies, declared once: the app's services and who is calling
(device token, API token or a dashboard session, with its CSRF check)."""

from __future__ import annotations

import secrets
import time
from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from worklens.server.access import Access
from worklens.server.errors import ApiError
from worklens.server.services import Services
from worklens.server.store import devices as devices_store
from worklens.server.store import orgs as orgs_store
from worklens.server.store import sessions as sessions_store
from worklens.server.store.devices import DeviceAuth
from worklens.server.store.orgs import TokenAuth
from worklens.server.store.sessions import Session

SESSION_COOKIE = "wl_session"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


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
    if device is not None and device.new_token:
        # The first request with a rotated token: from now on only it works.
        with services.db.write() as conn:
            device = device if devices_store.finish_rotation(conn, device.id, token) else None
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


def client_ip(request: Request) -> str:
    """The client's address (behind a proxy: uvicorn's proxy_headers decide)."""
    return request.client.host if request.client else ""


def check_session(services: Services, session_id: str) -> Session | None:
    """The live session with this id (sync: call from a thread); its last-seen
    time is moved forward at most once a minute."""
    now = now_ms()
    with services.db.read() as conn:
        session = sessions_store.lookup_session(conn, session_id, now)
    if session is not None and sessions_store.needs_touch(session, now):
        with services.db.write() as conn:
            sessions_store.touch_session(conn, session.id_hash, now)
    return session


class CsrfError(ApiError):
    def __init__(self) -> None:
        super().__init__(
            403, "missing or wrong CSRF token: reload the page (scripts: use a bearer token)"
        )


async def check_csrf(request: Request, expected: str) -> None:
    """A state-changing request made with a session cookie must carry the
    session's CSRF token: header X-CSRF-Token (htmx, fetch) or form field
    csrf_token. Another site can make the browser send the cookie, never the
    token. Compared in constant time."""
    sent: object = request.headers.get(CSRF_HEADER)
    content_type = request.headers.get("content-type", "")
    if sent is None and content_type.startswith(FORM_TYPES):
        sent = (await request.form()).get(CSRF_FIELD)
    if not isinstance(sent, str) or not secrets.compare_digest(sent.encode(), expected.encode()):
        raise CsrfError()


async def current_access(request: Request, services: ServicesDep) -> Access:
    """Who is calling: an API token (``Authorization: Bearer``; no CSRF token
    needed: a browser never adds that header by itself) or a dashboard user's
    session cookie (CSRF token needed for every state-changing method). The
    session is kept on ``request.state.session`` for pages that render forms."""
    header = request.headers.get("authorization")
    ip = client_ip(request)
    if header:
        auth = await run_in_threadpool(check_token, services, bearer(header))
        return Access.for_token(auth.org_id, auth.role, auth.token_id, auth.name, ip)
    session_id = request.cookies.get(SESSION_COOKIE)
    if not session_id:
        raise ApiError(401, "log in or send 'Authorization: Bearer <token>'")
    session = await run_in_threadpool(check_session, services, session_id)
    if session is None:
        raise ApiError(401, "your session has ended: log in again")
    rate_limit(services, f"u{session.user.id}")
    if request.method not in SAFE_METHODS:
        await check_csrf(request, session.csrf_token)
    request.state.session = session
    return session.user.access(ip)


def require_admin(access: Annotated[Access, Depends(current_access)]) -> Access:
    if not access.can_admin:
        raise ApiError(403, f"this needs the admin role; you are {access.role}")
    return access


DeviceDep = Annotated[DeviceAuth, Depends(current_device)]
# The name stays from when only API tokens existed: every router takes a UserDep.
UserDep = Annotated[Access, Depends(current_access)]
AdminDep = Annotated[Access, Depends(require_admin)]
