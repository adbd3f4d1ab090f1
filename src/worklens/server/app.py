"""The FastAPI application: routers, error handlers and background jobs (rollup
refresh, event compaction)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from worklens import __version__
from worklens.server import errors
from worklens.server.api import (
    agent_settings,
    agent_ws,
    aw,
    categories,
    devices,
    enroll,
    health,
    host,
    ingest,
    org,
    people,
    reports,
    users,
)
from worklens.server.services import Services
from worklens.server.settings import ServerSettings
from worklens.server.store import compaction
from worklens.server.web import (
    device_page,
    live_ws,
    pages,
    person_page,
    settings_page,
    staticfiles,
    team_page,
)

log = logging.getLogger(__name__)


def _refresh_if_first(services: Services) -> None:
    # With several server processes only one refreshes at a time: the others
    # would only compute the same hours again and throw the work away.
    with services.db.exclusive("rollup-refresh") as got:
        if got:
            services.rollups.refresh()
            # After a change of category rules: rewrite the category rows it
            # affected (reports stay right meanwhile, only slower).
            rows = services.rollups.rebuild_categories()
            if rows:
                log.info("rebuilt %d category rollup rows for new rules", rows)


async def _refresh_rollups(services: Services) -> None:
    """Keep rollups close to live so reports rarely have to catch up themselves."""
    while True:
        await asyncio.sleep(services.settings.rollup_interval_s)
        try:
            await run_in_threadpool(_refresh_if_first, services)
        except Exception:  # keep the loop alive; the next round retries
            log.exception("rollup refresh failed")


def _compact_if_first(services: Services) -> None:
    # One compactor across all server processes; each group is its own short
    # write transaction, so ingest interleaves with a long first run.
    with services.db.exclusive("compaction") as got:
        if not got:
            return
        cutoff = compaction.default_cutoff_ms(
            time.time_ns() // 1_000_000, services.settings.compact_after_days
        )
        result = compaction.compact(services.db, cutoff)
        if result.groups:
            log.info(
                "compacted %d bucket-days (%d events) in %.1f s",
                result.groups,
                result.events,
                result.seconds,
            )


async def _compact_events(services: Services) -> None:
    """Pack old days of raw events into chunks, at a slow pace."""
    while True:
        await asyncio.sleep(services.settings.compact_interval_s)
        try:
            await run_in_threadpool(_compact_if_first, services)
        except Exception:  # keep the loop alive; the next round retries
            log.exception("event compaction failed")


def _freeze_startup_objects() -> None:
    """Move everything alive after start-up (modules, routes, models, templates)
    out of the garbage collector's reach. Ingest allocates enough to set off a
    full collection about every ten batches, and each one walked these ~130k
    objects again: 28 % of ingest CPU (measured in-process; docs/benchmarks.md).
    They live as long as the process, so nothing is lost by never scanning them."""
    gc.collect()
    gc.freeze()


def create_app(settings: ServerSettings | None = None, *, migrate_db: bool = True) -> FastAPI:
    settings = settings or ServerSettings()
    services = Services.create(settings)
    if migrate_db:
        # Imported here: Alembic (and Mako) cost each process ~10 MB, and the
        # workers of `worklens server --workers N` never migrate.
        from worklens.server.store import migrate

        migrate.upgrade(services.db)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tasks = [
            asyncio.create_task(_refresh_rollups(services)),
            asyncio.create_task(_compact_events(services)),
            asyncio.create_task(services.live.run()),
        ]
        _freeze_startup_objects()
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            services.db.dispose()

    app = FastAPI(
        title="WorkLens",
        version=__version__,
        lifespan=lifespan,
        debug=False,
        docs_url="/api/docs",
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    app.state.services = services
    errors.install(app)
    for module in (
        health,
        enroll,
        ingest,
        agent_ws,
        reports,
        devices,
        org,
        agent_settings,
        people,
        categories,
        users,
        aw,
        pages,
        person_page,
        device_page,
        team_page,
        settings_page,
        host,
        live_ws,
    ):
        app.include_router(module.router)
    staticfiles.mount_static(app)  # /static; warns when vendor assets are not fetched
    return app


def create_worker_app() -> FastAPI:
    """Entry point for each process of `worklens server --workers N` (the parent migrated)."""
    return create_app(ServerSettings(), migrate_db=False)
