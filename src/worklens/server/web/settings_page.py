"""Settings (admins): the agent settings pushed to every agent (idle
threshold, intervals), sent from a form to ``PUT /api/v1/settings/agent`` with
the session's CSRF token; the organization's time zone and its category
rules (read-only here; ``worklens categories set`` or the API change them)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from worklens.agent.config import AgentConfig
from worklens.categories import format_path
from worklens.protocol.wire import PUSHED_SETTINGS
from worklens.server.access import Access
from worklens.server.deps import ServicesDep
from worklens.server.errors import ApiError
from worklens.server.services import Services
from worklens.server.store import agent_settings, category_rules
from worklens.server.store import orgs as orgs_store
from worklens.server.web import dash, fleet

router = APIRouter(include_in_schema=False)

# What the form says about each pushed setting (``wire.PUSHED_SETTINGS``
# holds their names and bounds); one unknown here is shown by its name.
LABELS: dict[str, tuple[str, str]] = {
    "idle_threshold_s": ("Idle threshold (s)", "no keyboard or mouse input for this long is idle"),
    "poll_interval_s": (
        "Focus and idle poll interval (s)",
        "how often the window in front is read",
    ),
    "host_interval_s": ("Host sample interval (s)", "CPU, memory, disk and load"),
    "send_interval_s": ("Send interval (s)", "how often queued events are sent"),
}


AGENT_DEFAULTS = AgentConfig(server="http://localhost")  # what an agent uses by itself


def _agent_fields(services: Services, access: Access) -> dict[str, Any]:
    with services.db.read() as conn:
        current = agent_settings.get(conn, access.org_id)
    fields = [
        {
            "name": name,
            "label": LABELS.get(name, (name, ""))[0],
            "help": LABELS.get(name, (name, ""))[1],
            "min": low,
            "max": high,
            "value": current.values.get(name),
            "default": getattr(AGENT_DEFAULTS, name, None),
        }
        for name, (low, high) in PUSHED_SETTINGS.items()
    ]
    return {
        "agent_fields": fields,
        "agent_version": current.version,
        "agent_updated": fleet.when(current.updated_ms),
    }


def _rules(services: Services, access: Access) -> dict[str, Any]:
    with services.db.read() as conn:
        rules = category_rules.org_rules(conn, access.org_id)
        org = orgs_store.org_settings(conn, access.org_id)
    rows = []
    for c in rules.categories:
        rule = c.rule
        rows.append(
            {
                "path": format_path(c.path),
                "depth": len(c.path),
                "regex": getattr(rule, "regex", ""),
                "fields": ", ".join(getattr(rule, "keys", ())),
                "ignore_case": bool(getattr(rule, "ignore_case", False)),
                "productivity": c.productivity or "",
                "color": c.color or "",
            }
        )
    return {"rules": rows, "rules_version": rules.version, "org": org}


@router.get("/settings", response_class=HTMLResponse)
async def settings_page(request: Request, services: ServicesDep) -> Response:
    access = await dash.viewer(request, services)
    if access is None:
        return dash.to_login()
    if not access.can_admin:
        raise ApiError(403, "settings are for admins")
    rules = await run_in_threadpool(_rules, services, access)
    agent = await run_in_threadpool(_agent_fields, services, access)
    return dash.render(request, "settings.html", {**dash.chrome(request, access), **rules, **agent})
