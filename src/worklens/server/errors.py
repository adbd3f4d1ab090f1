"""Every error answer is JSON: {"error": "...", "detail": ...}."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
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


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(_body(exc.error, exc.detail), exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(_body("invalid request", validation_detail(exc)), 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(_body(str(exc.detail)), exc.status_code, headers=exc.headers)
