"""Category rules: the organization's, and each team's overrides of them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from worklens.categories import RuleError
from worklens.server.access import Access
from worklens.server.deps import AdminDep, ServicesDep, UserDep, now_ms
from worklens.server.errors import ApiError
from worklens.server.services import Services
from worklens.server.store import audit, category_rules
from worklens.server.store import people as people_store

router = APIRouter(prefix="/api/v1", tags=["categories"])


async def _json(request: Request) -> Any:
    try:
        return await request.json()
    except ValueError as exc:
        raise ApiError(400, f"invalid JSON: {exc}") from exc


def _rule_error(exc: RuleError) -> ApiError:
    loc = [
        *(["path", " > ".join(exc.path)] if exc.path else []),
        *([exc.field] if exc.field else []),
    ]
    return ApiError(422, str(exc), [{"loc": loc, "msg": str(exc)}])


def _org_rules(services: Services, org_id: int) -> dict[str, Any]:
    with services.db.read() as conn:
        rules = category_rules.org_rules(conn, org_id)
    return {**rules.to_data(), "version": rules.version}


def _set_org_rules(services: Services, admin: Access, data: Any) -> dict[str, Any]:
    try:
        with services.db.write() as conn:
            rules = category_rules.set_org_rules(conn, admin.org_id, data, now_ms())
            audit.by(conn, admin, "categories.set", "organization", {"version": rules.version})
    except RuleError as exc:
        raise _rule_error(exc) from exc
    return {**rules.to_data(), "version": rules.version}


def _team(services: Services, access: Access, team_id: int, data: Any = None) -> dict[str, Any]:
    org_id = access.org_id
    try:
        if not access.may_see_team(team_id):
            raise people_store.NotFound(f"no team {team_id} in this organization")
        with services.db.write() if data is not None else services.db.read() as conn:
            if data is None:
                overrides = category_rules.team_overrides(conn, org_id, team_id)
            else:
                overrides = category_rules.set_team_overrides(conn, org_id, team_id, data)
                audit.by(conn, access, "categories.set_team", f"team {team_id}")
    except people_store.NotFound as exc:
        raise ApiError(404, str(exc)) from exc
    except RuleError as exc:
        raise _rule_error(exc) from exc
    return dict(overrides.model_dump(mode="json"))


@router.get("/categories")
async def get_rules(services: ServicesDep, user: UserDep) -> dict[str, Any]:
    """The organization's rules (the shipped defaults until changed)."""
    result: dict[str, Any] = await run_in_threadpool(_org_rules, services, user.org_id)
    return result


@router.put("/categories")
async def put_rules(request: Request, services: ServicesDep, admin: AdminDep) -> dict[str, Any]:
    """Replace the organization's rules: ``{"categories": [...]}``. Every regex
    is compiled and timed against hostile inputs first; reports use the new
    rules for all history at once."""
    data = await _json(request)
    result: dict[str, Any] = await run_in_threadpool(_set_org_rules, services, admin, data)
    return result


@router.get("/teams/{team_id}/categories")
async def get_team_rules(team_id: int, services: ServicesDep, user: UserDep) -> dict[str, Any]:
    """A team's overrides (a team the caller does not see does not exist for them)."""
    result: dict[str, Any] = await run_in_threadpool(_team, services, user, team_id)
    return result


@router.put("/teams/{team_id}/categories")
async def put_team_rules(
    team_id: int, request: Request, services: ServicesDep, admin: AdminDep
) -> dict[str, Any]:
    """A team's overrides: ``{"add": [...], "replace": [...], "disable": [...]}``."""
    data = await _json(request)
    result: dict[str, Any] = await run_in_threadpool(_team, services, admin, team_id, data)
    return result
