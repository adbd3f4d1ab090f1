"""Teams, people, and who uses which device."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from worklens.server.deps import AdminDep, ServicesDep, UserDep, now_ms
from worklens.server.errors import ApiError
from worklens.server.services import Services
from worklens.server.store import people as people_store

router = APIRouter(prefix="/api/v1", tags=["people"])

Name = Field(min_length=1, max_length=128, pattern=r"\S")


class NewTeam(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Name


class NewPerson(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Name
    team_id: int | None = None
    email: str | None = Field(default=None, max_length=320)


class DevicePerson(BaseModel):
    model_config = ConfigDict(extra="forbid")
    person_id: int | None


def _run(services: Services, write: bool, fn: Any, *args: Any) -> Any:
    """Run a store function in a transaction; its NotFound/Exists become 404/409."""
    try:
        with services.db.write() if write else services.db.read() as conn:
            return fn(conn, *args)
    except people_store.NotFound as exc:
        raise ApiError(404, str(exc)) from exc
    except people_store.Exists as exc:
        raise ApiError(409, str(exc)) from exc


@router.get("/teams")
async def list_teams(services: ServicesDep, user: UserDep) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = await run_in_threadpool(
        _run, services, False, people_store.list_teams, user.org_id
    )
    return rows


@router.post("/teams", status_code=201)
async def create_team(services: ServicesDep, admin: AdminDep, body: NewTeam) -> dict[str, Any]:
    team_id = await run_in_threadpool(
        _run, services, True, people_store.create_team, admin.org_id, body.name.strip(), now_ms()
    )
    return {"id": team_id, "name": body.name.strip()}


@router.get("/people")
async def list_people(services: ServicesDep, user: UserDep) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = await run_in_threadpool(
        _run, services, False, people_store.list_people, user.org_id
    )
    return rows


@router.post("/people", status_code=201)
async def create_person(services: ServicesDep, admin: AdminDep, body: NewPerson) -> dict[str, Any]:
    person_id = await run_in_threadpool(
        _run,
        services,
        True,
        people_store.create_person,
        admin.org_id,
        body.name.strip(),
        now_ms(),
        body.team_id,
        body.email,
    )
    return {"id": person_id, "name": body.name.strip(), "team_id": body.team_id}


@router.put("/devices/{device_id}/person", status_code=204)
async def assign_device(
    device_id: int, services: ServicesDep, admin: AdminDep, body: DevicePerson
) -> None:
    """Say which person uses a device (null: nobody in particular)."""
    await run_in_threadpool(
        _run, services, True, people_store.assign_device, admin.org_id, device_id, body.person_id
    )
