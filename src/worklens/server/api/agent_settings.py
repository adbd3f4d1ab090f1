"""The agent settings the organization pushes to its agents: idle threshold and
intervals (``wire.PUSHED_SETTINGS``). Agents get them with the answer to their
next batch or heartbeat and apply them without a restart."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model
from starlette.concurrency import run_in_threadpool

from worklens.agent.config import AgentConfig
from worklens.protocol.wire import PUSHED_SETTINGS
from worklens.server.access import Access
from worklens.server.deps import AdminDep, ServicesDep, UserDep, now_ms
from worklens.server.errors import ApiError, validation_detail
from worklens.server.services import Services
from worklens.server.store import agent_settings as store
from worklens.server.store import audit

router = APIRouter(prefix="/api/v1/settings", tags=["settings"])

_DEFAULTS = AgentConfig(server="http://localhost")


class AgentSettingsView(BaseModel):
    """The settings (None: each agent keeps its own value), their version (0:
    never set), when they last changed, and for each setting the agent's own
    default and the allowed range."""

    version: int
    idle_threshold_s: float | None
    poll_interval_s: float | None
    host_interval_s: float | None
    send_interval_s: float | None
    updated_ms: int | None
    defaults: dict[str, float]
    bounds: dict[str, tuple[float, float]]


def _field(name: str) -> Any:
    low, high = PUSHED_SETTINGS[name]
    return (float | None, Field(default=None, ge=low, le=high))


# The change: any of the settings; a number sets it, null gives it back to the
# agents' own configuration, a setting left out stays as it is.
AgentSettingsChange: type[BaseModel] = create_model(
    "AgentSettingsChange",
    __config__=ConfigDict(extra="forbid", allow_inf_nan=False),
    **{name: _field(name) for name in PUSHED_SETTINGS},
)


def _view(settings: store.AgentSettings) -> AgentSettingsView:
    return AgentSettingsView(
        **settings.public(),
        defaults={name: float(getattr(_DEFAULTS, name)) for name in PUSHED_SETTINGS},
        bounds=PUSHED_SETTINGS,
    )


def _read(services: Services, org_id: int) -> AgentSettingsView:
    with services.db.read() as conn:
        return _view(store.get(conn, org_id))


def _change(services: Services, admin: Access, changes: dict[str, float | None]) -> Any:
    with services.db.write() as conn:
        before, after = store.change(conn, admin.org_id, changes, now_ms())
        audit.by(
            conn,
            admin,
            "settings.agent",
            "agent settings",
            {
                "version": after.version,
                "from": {k: before.values.get(k) for k in changes},
                "to": {k: after.values.get(k) for k in changes},
            },
        )
    return _view(after)


@router.get("/agent", response_model=AgentSettingsView)
async def get_agent_settings(services: ServicesDep, user: UserDep) -> AgentSettingsView:
    """The organization's agent settings (every role)."""
    return await run_in_threadpool(_read, services, user.org_id)


@router.put("/agent", response_model=AgentSettingsView)
async def put_agent_settings(
    services: ServicesDep,
    admin: AdminDep,
    body: Annotated[
        dict[str, Any], Body(examples=[{"idle_threshold_s": 120, "host_interval_s": 10}])
    ],
) -> AgentSettingsView:
    """Change the agent settings: ``idle_threshold_s`` (no input for this long
    counts as away), ``poll_interval_s`` (focus and idle sampling),
    ``host_interval_s`` (host health samples), ``send_interval_s`` (batching),
    in seconds. A number overrides every agent's own configuration for that
    setting; null gives the setting back to the agents' own configuration; a
    setting left out stays as it is. The version goes up when a value changes,
    and each agent applies the new settings with the answer to its next batch
    or heartbeat."""
    try:
        change = AgentSettingsChange.model_validate(body)
    except ValidationError as exc:
        detail = validation_detail(exc)
        named = "; ".join(
            f"{'.'.join(str(p) for p in d['loc']) or 'body'}: {d['msg']}" for d in detail
        )
        raise ApiError(422, f"invalid agent settings: {named}", detail) from exc
    changes = {name: getattr(change, name) for name in change.model_fields_set}
    result: AgentSettingsView = await run_in_threadpool(_change, services, admin, changes)
    return result
