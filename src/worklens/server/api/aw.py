"""ActivityWatch's REST API (``/api/0``) over the caller's organization: info,
buckets, events, query2, export and import. Reads show the buckets of the
devices the caller may see (server/access.py); import needs the admin role.
How WorkLens data maps onto AW's model is described in :mod:`worklens.server.aw`."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool

from worklens import __version__
from worklens.protocol.codec import DecodeError, decode_body
from worklens.query2 import QueryError, parse_timeperiod, run_query
from worklens.query2.events import datetime_to_us
from worklens.server.access import Access
from worklens.server.api.ingest import read_body
from worklens.server.aw import (
    QUERY_LIMITS,
    AwBucket,
    BadImport,
    OrgSource,
    bucket_json,
    export_chunks,
    extents,
    import_buckets,
    iter_events,
    org_buckets,
)
from worklens.server.deps import AdminDep, ServicesDep, UserDep, now_ms
from worklens.server.errors import ApiError, error_for
from worklens.server.services import Services
from worklens.server.store import audit
from worklens.server.store import people as people_store

router = APIRouter(prefix="/api/0", tags=["activitywatch"])

MAX_IMPORT_BYTES = 256 * 1024 * 1024
# query2 checks its own deadline between steps; this catches what it cannot
# interrupt (a pathological regular expression). The thread runs on regardless.
QUERY_TIMEOUT_S = QUERY_LIMITS.max_seconds + 10
Instant = Annotated[str | None, Query(description="ISO 8601; without an offset, UTC")]


class QueryBody(BaseModel):
    timeperiods: list[str]
    query: list[str] | str


def _ms(value: str | None, name: str, *, up: bool) -> int | None:
    """An ISO 8601 parameter as ms (rounded down, or up for range ends)."""
    if value is None:
        return None
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise ApiError(400, f"{name} must be an ISO 8601 timestamp, got {value!r}") from None
    us = datetime_to_us(dt if dt.tzinfo else dt.replace(tzinfo=UTC))
    return -(-us // 1000) if up else us // 1000


def _visible_buckets(conn: Connection, access: Access) -> dict[str, AwBucket]:
    """The organization's buckets on the devices the caller may see."""
    found = org_buckets(conn, access.org_id)
    visible = people_store.visible_devices(conn, access)
    if visible is None:
        return found
    return {k: b for k, b in found.items() if b.device_id in visible}


def _lookup(
    services: Services, access: Access, bucket_id: str
) -> tuple[AwBucket, tuple[int, int] | None]:
    with services.db.read() as conn:
        bucket = _visible_buckets(conn, access).get(bucket_id)
        if bucket is None:
            raise ApiError(404, f"there is no bucket {bucket_id!r}")
        return bucket, extents(conn, [bucket.pk]).get(bucket.pk)


def _all(services: Services, access: Access) -> tuple[list[AwBucket], dict[int, tuple[int, int]]]:
    with services.db.read() as conn:
        found = list(_visible_buckets(conn, access).values())
        return found, extents(conn, [b.pk for b in found])


def _range(
    extent: tuple[int, int] | None, start: str | None, end: str | None
) -> tuple[int, int] | None:
    """``[lo, hi)`` ms to read: the parameters, else the bucket's own extent."""
    lo, hi = _ms(start, "start", up=False), _ms(end, "end", up=True)
    if extent is None:
        return None
    # Nothing lies outside the bucket's extent: no need to walk years of nothing.
    lo = extent[0] if lo is None else max(lo, extent[0])
    hi = extent[1] + 1 if hi is None else min(hi, extent[1] + 1)  # + 1: a zero-length last event
    return (lo, hi) if hi > lo else None


@router.get("/info")
async def info(user: UserDep) -> dict[str, Any]:
    """The server, as AW describes itself; ``device_id`` is stable per organization."""
    return {
        "hostname": socket.gethostname(),
        "version": f"v{__version__} (worklens)",
        "testing": False,
        "device_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"worklens:org:{user.org_id}")),
    }


@router.get("/buckets/")
async def list_buckets(services: ServicesDep, user: UserDep) -> dict[str, Any]:
    """Every bucket of the organization the caller may see, keyed by AW id."""
    found, spans = await run_in_threadpool(_all, services, user)
    return {b.id: bucket_json(b, spans.get(b.pk)) for b in found}


@router.get("/buckets/{bucket_id}")
async def get_bucket(bucket_id: str, services: ServicesDep, user: UserDep) -> dict[str, Any]:
    """One bucket's metadata."""
    bucket, extent = await run_in_threadpool(_lookup, services, user, bucket_id)
    return bucket_json(bucket, extent)


def _json_array(items: Iterator[Any]) -> Iterator[bytes]:
    yield b"["
    first = True
    for item in items:
        yield (b"" if first else b",") + json.dumps(item, ensure_ascii=False).encode()
        first = False
    yield b"]"


@router.get("/buckets/{bucket_id}/events")
async def get_events(
    bucket_id: str,
    services: ServicesDep,
    user: UserDep,
    start: Instant = None,
    end: Instant = None,
    limit: int = -1,
) -> StreamingResponse:
    """Events newest first, cut to ``[start, end)``; ``limit`` -1 means all."""
    if limit < -1:
        raise ApiError(400, "limit must be -1 (all) or a count")
    bucket, extent = await run_in_threadpool(_lookup, services, user, bucket_id)
    span = _range(extent, start, end)

    def found() -> Iterator[Any]:
        if span is None or limit == 0:
            return
        for n, event in enumerate(
            iter_events(services.db, bucket, *span, newest_first=True), start=1
        ):
            yield event.to_json()
            if n == limit:
                return

    return StreamingResponse(_json_array(found()), media_type="application/json")


def _count(services: Services, bucket: AwBucket, span: tuple[int, int] | None) -> int:
    if span is None:
        return 0
    return sum(1 for _ in iter_events(services.db, bucket, *span, newest_first=False))


@router.get("/buckets/{bucket_id}/events/count")
async def count_events(
    bucket_id: str,
    services: ServicesDep,
    user: UserDep,
    start: Instant = None,
    end: Instant = None,
) -> int:
    """How many events ``GET .../events`` would return for the range."""
    bucket, extent = await run_in_threadpool(_lookup, services, user, bucket_id)
    span = _range(extent, start, end)
    return await run_in_threadpool(_count, services, bucket, span)


def _export(
    services: Services, chosen: list[AwBucket], spans: dict[int, tuple[int, int]]
) -> StreamingResponse:
    return StreamingResponse(
        export_chunks(services.db, chosen, spans),
        media_type="application/json",
        headers={"Content-Disposition": 'attachment; filename="aw-buckets-export.json"'},
    )


@router.get("/export")
async def export_all(services: ServicesDep, user: UserDep) -> StreamingResponse:
    """Every bucket the caller may see with all its events, in AW's export format."""
    found, spans = await run_in_threadpool(_all, services, user)
    return _export(services, found, spans)


@router.get("/buckets/{bucket_id}/export")
async def export_bucket(bucket_id: str, services: ServicesDep, user: UserDep) -> StreamingResponse:
    """One bucket with all its events, in AW's export format."""
    bucket, extent = await run_in_threadpool(_lookup, services, user, bucket_id)
    return _export(services, [bucket], {bucket.pk: extent} if extent else {})


def _import(
    services: Services, admin: Access, device: int, body: bytes, request: Request
) -> dict[str, int]:
    try:
        obj = decode_body(
            body,
            request.headers.get("content-type"),
            request.headers.get("content-encoding"),
            MAX_IMPORT_BYTES,
        )
        totals = import_buckets(services.db, admin.org_id, device, obj, now_ms())
        # After the import's own transaction: an import is all or nothing by
        # itself, and one that failed has nothing to log.
        with services.db.write() as conn:
            audit.by(conn, admin, "aw.import", f"device {device}", dict(totals))
        return totals
    except DecodeError as exc:
        raise error_for(exc) from exc
    except BadImport as exc:
        raise ApiError(exc.status, str(exc)) from exc


@router.post("/import")
async def import_file(
    request: Request,
    services: ServicesDep,
    admin: AdminDep,
    device: Annotated[int, Query(description="the device that receives the buckets")],
) -> dict[str, int]:
    """Store an AW export into one device of the organization (all or nothing;
    importing the same file again changes nothing)."""
    body = await read_body(request, MAX_IMPORT_BYTES)
    return await run_in_threadpool(_import, services, admin, device, body, request)


def _query(services: Services, access: Access, body: QueryBody, name: str) -> list[Any]:
    lines = body.query.split("\n") if isinstance(body.query, str) else body.query
    periods = [parse_timeperiod(p) for p in body.timeperiods]
    with services.db.read() as conn:
        visible = people_store.visible_devices(conn, access)
    source = OrgSource(services.db, services.rollups, access.org_id, visible)
    return run_query(lines, periods, source, name=name, limits=QUERY_LIMITS)


@router.post("/query/")
async def query(
    body: QueryBody, services: ServicesDep, user: UserDep, name: str = ""
) -> JSONResponse:
    """Run a query2 program once per time period; an invalid one is a 400 naming the line."""
    try:
        result = await asyncio.wait_for(
            run_in_threadpool(_query, services, user, body, name), QUERY_TIMEOUT_S
        )
    except QueryError as exc:
        raise ApiError(400, str(exc)) from exc
    except TimeoutError:
        raise ApiError(400, f"query too expensive: not done after {QUERY_TIMEOUT_S:g} s") from None
    return JSONResponse(result)
