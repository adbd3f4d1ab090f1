"""Every error answer of the API is JSON: {"error": "...", "detail": ...}; the
dashboard's pages (paths outside /api/) get the same message as a small HTML page."""

from __future__ import annotations

import html
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from worklens.protocol.codec import DecodeError, PayloadTooLarge
from worklens.protocol.messages import ErrorBody


class ApiError(Exception):
    def __init__(
        self, status: int, error: str, detail: Any = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.detail = detail
        self.headers = headers


def validation_detail(exc: ValidationError | RequestValidationError) -> list[dict[str, Any]]:
    """Where and what, without echoing possibly huge or private input back."""
    return [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in exc.errors()[:50]
    ]


def error_for(exc: Exception) -> ApiError:
    """Map a decoding/validation failure to the answer the client gets."""
    if isinstance(exc, PayloadTooLarge):
        return ApiError(413, str(exc))
    if isinstance(exc, DecodeError):
        return ApiError(400, str(exc))
    if isinstance(exc, ValidationError):
        return ApiError(422, "invalid message", validation_detail(exc))
    raise exc


def _body(error: str, detail: Any = None) -> dict[str, Any]:
    return ErrorBody(error=error, detail=detail).model_dump(mode="json")


def _is_page(request: Request) -> bool:
    """A dashboard page or form (not the API, not the agent's endpoints)."""
    path = request.url.path
    return not path.startswith("/api/")


def error_page(message: str, status: int, headers: dict[str, str] | None = None) -> HTMLResponse:
    """A minimal page for an error on a dashboard form; the message is escaped."""
    body = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>Error {status} · WorkLens</title></head><body><h1>WorkLens</h1>"
        f'<p class="error">{html.escape(message)}</p><p><a href="/">Back</a></p></body></html>'
    )
    return HTMLResponse(body, status, headers=headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api(request: Request, exc: ApiError) -> Response:
        if _is_page(request):
            return error_page(exc.error, exc.status, exc.headers)
        return JSONResponse(_body(exc.error, exc.detail), exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(_body("invalid request", validation_detail(exc)), 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(_body(str(exc.detail)), exc.status_code, headers=exc.headers)
