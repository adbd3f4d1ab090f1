"""Server-rendered pages: login/logout, the device list, the audit log.

Pages authenticate with the session cookie (``deps.current_access``); a
visitor without a session is sent to /login. Every form carries the session's
CSRF token; the login form, which comes before any session, carries a token
that must equal a cookie set with the form (double submit). Templates are
autoescaped: a window title is always text, never markup.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import jinja2
from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from worklens.server.access import Access, Actor
from worklens.server.deps import (
    SESSION_COOKIE,
    ServicesDep,
    check_csrf,
    check_session,
    client_ip,
    current_access,
    now_ms,
)
from worklens.server.errors import ApiError
from worklens.server.services import Services
from worklens.server.store import audit
from worklens.server.store import sessions as sessions_store
from worklens.server.store import users as users_store
from worklens.server.store.sessions import Session
from worklens.server.web import fleet

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(
    env=jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"), autoescape=True
    )
)
LOGIN_CSRF_COOKIE = "wl_login_csrf"
# Pages must not be framed by other sites (clickjacking) nor leak URLs.
PAGE_HEADERS = {"X-Frame-Options": "DENY", "Referrer-Policy": "same-origin"}
LOGIN_FAILED = "Wrong login or password."


def _secure(request: Request, services: Services) -> bool:
    return services.settings.secure_cookies or request.url.scheme == "https"


def _render(
    request: Request, name: str, context: dict[str, Any], status: int = 200, **headers: str
) -> Response:
    return templates.TemplateResponse(
        request, name, context, status_code=status, headers={**PAGE_HEADERS, **headers}
    )


async def _viewer(request: Request, services: Services) -> Access | None:
    """The logged-in caller, or None (pages then redirect to the login)."""
    try:
        return await current_access(request, services)
    except ApiError as exc:
        if exc.status == 401:
            return None
        raise


def _chrome(request: Request, access: Access) -> dict[str, Any]:
    """What every logged-in page shows: who is logged in, the logout form's token."""
    session: Session | None = getattr(request.state, "session", None)
    return {
        "me": access,
        "csrf_token": session.csrf_token if session else "",
    }


def _to_login() -> Response:
    return RedirectResponse("/login", status_code=303)


@router.get("/", response_class=HTMLResponse)
async def devices_page(request: Request, services: ServicesDep) -> Response:
    access = await _viewer(request, services)
    if access is None:
        return _to_login()
    rows = await run_in_threadpool(fleet.device_views, services, access)
    return _render(
        request, "devices.html", {**_chrome(request, access), "devices": rows, "oob": False}
    )


@router.get("/audit", response_class=HTMLResponse)
async def audit_page(
    request: Request,
    services: ServicesDep,
    before: Annotated[int | None, Query()] = None,
) -> Response:
    access = await _viewer(request, services)
    if access is None:
        return _to_login()
    if not access.can_admin:
        raise ApiError(403, "the audit log is for admins")

    def read() -> list[dict[str, Any]]:
        with services.db.read() as conn:
            return audit.page(conn, access.org_id, before_id=before, limit=100)

    entries = await run_in_threadpool(read)
    for e in entries:
        e["when"] = fleet.when(e["at_ms"])
    more = entries[-1]["id"] if len(entries) == 100 else None
    return _render(
        request, "audit.html", {**_chrome(request, access), "entries": entries, "more": more}
    )


# --- login and logout ------------------------------------------------------------


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request, services: ServicesDep) -> Response:
    if await _viewer(request, services) is not None:
        return RedirectResponse("/", status_code=303)
    return _login_page(request, services, None)


def _login_page(
    request: Request,
    services: Services,
    error: str | None,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    """The form, with a fresh double-submit token in the field and the cookie."""
    token = secrets.token_urlsafe(32)
    resp = _render(
        request,
        "login.html",
        {"error": error, "csrf_token": token},
        status,
        **(headers or {}),
    )
    resp.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        max_age=3600,
        path="/login",
        httponly=True,
        samesite="strict",
        secure=_secure(request, services),
    )
    return resp


@dataclass(frozen=True, slots=True)
class _Outcome:
    session_id: str | None = None  # set: logged in
    wait_s: int = 0  # set: throttled


def _attempt(
    services: Services, login: str, password: str, org: str, ip: str, user_agent: str
) -> _Outcome:
    """One login attempt (sync: runs in a thread). The slow argon2 check runs
    between transactions, holding neither a connection nor SQLite's write lock."""
    key = users_store.login_key(login)
    now = now_ms()
    with services.db.read() as conn:
        wait = sessions_store.throttle_wait_s(conn, key, ip, now)
        candidate = None if wait else users_store.password_candidate(conn, login, org)
    if wait:
        return _Outcome(wait_s=wait)
    ok, new_hash = users_store.verify_password(candidate, password)
    with services.db.write() as conn:
        if not ok or candidate is None:
            sessions_store.record_failure(conn, key, ip, now)
            return _Outcome()
        if new_hash:
            users_store.replace_hash(conn, candidate.user_id, new_hash)
        sessions_store.forget_failures(conn, key)
        user = users_store.get_user(conn, candidate.org_id, candidate.user_id)
        session_id, _ = sessions_store.create_session(conn, user, now, ip, user_agent)
        actor = Actor("user", user.id, user.name or user.email)
        audit.record(conn, user.org_id, actor, "user.login", f"user {user.id}", ip=ip, now_ms=now)
    return _Outcome(session_id=session_id)


@router.post("/login")
async def login(
    request: Request,
    services: ServicesDep,
    email: Annotated[str, Form(max_length=users_store.MAX_LOGIN)],
    password: Annotated[str, Form(max_length=users_store.MAX_PASSWORD)],
    csrf_token: Annotated[str, Form(max_length=128)] = "",
    org: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not expected or not secrets.compare_digest(csrf_token.encode(), expected.encode()):
        return _login_page(
            request, services, "The login form expired. Please try again.", status=403
        )
    outcome = await run_in_threadpool(
        _attempt,
        services,
        email,
        password,
        org,
        client_ip(request),
        request.headers.get("user-agent", ""),
    )
    if outcome.wait_s:
        minutes = -(-outcome.wait_s // 60)
        message = (
            f"Too many failed logins. Try again in {minutes} minute{'s' if minutes != 1 else ''}."
        )
        return _login_page(
            request, services, message, status=429, headers={"Retry-After": str(outcome.wait_s)}
        )
    if outcome.session_id is None:
        return _login_page(request, services, LOGIN_FAILED, status=401)
    resp = RedirectResponse("/", status_code=303, headers=PAGE_HEADERS)
    resp.set_cookie(
        SESSION_COOKIE,
        outcome.session_id,
        max_age=sessions_store.ABSOLUTE_MS // 1000,
        path="/",
        httponly=True,
        # Lax: a link from elsewhere (an alert e-mail) opens the dashboard
        # logged in; every change needs the CSRF token anyway.
        samesite="lax",
        secure=_secure(request, services),
    )
    resp.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return resp


@router.post("/logout")
async def logout(request: Request, services: ServicesDep) -> Response:
    """End the session on the server (the cookie alone would still work
    elsewhere) and drop the cookie. Needs the session's CSRF token."""
    session_id = request.cookies.get(SESSION_COOKIE, "")
    session = await run_in_threadpool(check_session, services, session_id) if session_id else None
    if session is not None:
        await check_csrf(request, session.csrf_token)

        def end() -> None:
            with services.db.write() as conn:
                sessions_store.delete_session(conn, session_id)

        await run_in_threadpool(end)
    resp = RedirectResponse("/login", status_code=303, headers=PAGE_HEADERS)
    resp.delete_cookie(SESSION_COOKIE, path="/")
    return resp
