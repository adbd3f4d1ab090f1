"""``/static``: the package's static folder, vendor assets included.

The vendor files (htmx, its WebSocket extension, uPlot) are not in git: setup
fetches them (see :mod:`worklens.server.web.assets`). Without them the server
still starts, logs one warning naming the command that fetches them, and
``/static/vendor/...`` answers 404.
"""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import FastAPI
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from worklens.server.web import assets

log = logging.getLogger(__name__)

#: Vendor file names are not versioned, so a day rather than a year: a pin bump
#: reaches browsers within a day, and ETag revalidation is cheap after that.
VENDOR_CACHE_CONTROL = "public, max-age=86400"


class CachedStaticFiles(StaticFiles):
    """StaticFiles that lets browsers keep the vendor files for a while."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        if response.status_code in (200, 304) and path.replace("\\", "/").startswith("vendor/"):
            response.headers["Cache-Control"] = VENDOR_CACHE_CONTROL
        return response


def mount_static(app: FastAPI, static_dir: Path | None = None) -> None:
    """Serve ``static_dir`` (the package's) at /static; warn once if vendor/ is not fetched."""
    static_dir = static_dir or assets.STATIC_DIR
    vendor = static_dir / assets.VENDOR_DIR.name
    problems = assets.check(vendor)
    if problems:
        log.warning(
            "front-end assets missing or outdated in %s (%s): run `%s` to fetch them, "
            "then restart the server",
            vendor,
            "; ".join(problems),
            assets.FETCH_COMMAND,
        )
    if static_dir.is_dir():
        app.mount("/static", CachedStaticFiles(directory=static_dir, check_dir=True), name="static")
