"""Server-rendered pages: login and the device list."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from worklens.server.api.devices import device_list
from worklens.server.deps import ServicesDep, check_token
from worklens.server.errors import ApiError

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
SESSION_COOKIE = "wl_session"


def _when(ms: int | None) -> str:
    if not ms:
        return "never"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@router.get("/", response_class=HTMLResponse)
async def devices_page(request: Request, services: ServicesDep) -> Response:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return RedirectResponse("/login", status_code=303)
    try:
        user = await run_in_threadpool(check_token, services, token)
    except ApiError:
        return RedirectResponse("/login", status_code=303)
    rows = await run_in_threadpool(device_list, services, user.org_id)
    for r in rows:
        r["last_seen"] = _when(r["last_seen_ms"])
    return templates.TemplateResponse(request, "devices.html", {"devices": rows})


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request) -> Response:
    return templates.TemplateResponse(request, "login.html", {"error": None})


@router.post("/login")
async def login(
    request: Request, services: ServicesDep, token: Annotated[str, Form(max_length=256)]
) -> Response:
    try:
        await run_in_threadpool(check_token, services, token.strip())
    except ApiError as exc:
        return templates.TemplateResponse(
            request, "login.html", {"error": exc.error}, status_code=401
        )
    resp = RedirectResponse("/", status_code=303)
    resp.set_cookie(
        SESSION_COOKIE,
        token.strip(),
        httponly=True,
        samesite="strict",
        secure=services.settings.secure_cookies or request.url.scheme == "https",
        max_age=12 * 3600,
    )
    return resp


@router.post("/logout")
async def logout() -> Response:
    resp = RedirectResponse("/login", status_code=303)
    resp.delete_cookie(SESSION_COOKIE)
    return resp
