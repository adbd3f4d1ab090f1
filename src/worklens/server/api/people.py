"""Teams, people, and who uses which device."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool

from worklens.server.deps import AdminDep, ServicesDep, UserDep, now_ms
from worklens.server.errors import ApiError
from worklens.server.services import Services
from worklens.server.store import audit
from worklens.server.store import people as people_store

router = APIRouter(prefix="/api/v1", tags=["people"])

Name = Field(min_length=1, max_length=128, pattern=r"\S")
T = TypeVar("T")


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


def _run(services: Services, write: bool, fn: Callable[[Connection], T]) -> T:
    """Run store calls in one transaction; NotFound/Exists become 404/409."""
    try:
        with services.db.write() if write else services.db.read() as conn:
            return fn(conn)
    except people_store.NotFound as exc:
        raise ApiError(404, str(exc)) from exc
    except people_store.Exists as exc:
        raise ApiError(409, str(exc)) from exc


@router.get("/teams")
async def list_teams(services: ServicesDep, user: UserDep) -> list[dict[str, Any]]:
    """The teams the caller sees: all, a manager's own, none for a self user."""

    def read(conn: Connection) -> list[dict[str, Any]]:
        return [t for t in people_store.list_teams(conn, user.org_id) if user.may_see_team(t["id"])]

    return await run_in_threadpool(_run, services, False, read)


@router.post("/teams", status_code=201)
async def create_team(services: ServicesDep, admin: AdminDep, body: NewTeam) -> dict[str, Any]:
    name = body.name.strip()

    def write(conn: Connection) -> int:
        team_id = people_store.create_team(conn, admin.org_id, name, now_ms())
        audit.by(conn, admin, "team.create", f"team {team_id}", {"name": name})
        return team_id

    team_id = await run_in_threadpool(_run, services, True, write)
    return {"id": team_id, "name": name}


@router.get("/people")
async def list_people(services: ServicesDep, user: UserDep) -> list[dict[str, Any]]:
    """The people the caller sees (a self user: only themselves)."""

    def read(conn: Connection) -> list[dict[str, Any]]:
        return [
            p
            for p in people_store.list_people(conn, user.org_id)
            if user.may_see_person(p["id"], p["team_id"])
        ]

    return await run_in_threadpool(_run, services, False, read)


@router.post("/people", status_code=201)
async def create_person(services: ServicesDep, admin: AdminDep, body: NewPerson) -> dict[str, Any]:
    name = body.name.strip()

    def write(conn: Connection) -> int:
        person_id = people_store.create_person(
            conn, admin.org_id, name, now_ms(), body.team_id, body.email
        )
        details = {"name": name, "team_id": body.team_id}
        audit.by(conn, admin, "person.create", f"person {person_id}", details)
        return person_id

    person_id = await run_in_threadpool(_run, services, True, write)
    return {"id": person_id, "name": name, "team_id": body.team_id}


@router.put("/devices/{device_id}/person", status_code=204)
async def assign_device(
    device_id: int, services: ServicesDep, admin: AdminDep, body: DevicePerson
) -> None:
    """Say which person uses a device (null: nobody in particular)."""

    def write(conn: Connection) -> None:
        people_store.assign_device(conn, admin.org_id, device_id, body.person_id)
        audit.by(conn, admin, "device.assign", f"device {device_id}", {"person_id": body.person_id})

    await run_in_threadpool(_run, services, True, write)
