"""Dashboard users (admin), the caller's own access, and the audit log (admin)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from worklens.server.access import Access
from worklens.server.deps import AdminDep, ServicesDep, UserDep, now_ms
from worklens.server.errors import ApiError
from worklens.server.services import Services
from worklens.server.store import audit
from worklens.server.store import users as users_store
from worklens.server.store.sessions import Session

router = APIRouter(prefix="/api/v1", tags=["users"])


class NewUser(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: str = Field(min_length=1, max_length=users_store.MAX_LOGIN)
    password: str = Field(max_length=users_store.MAX_PASSWORD)
    role: str
    name: str = Field(default="", max_length=255)
    person_id: int | None = None
    team_ids: list[int] = Field(default_factory=list, max_length=1000)


class UserChange(BaseModel):
    """Only the fields sent change; ``person_id: null`` clears the person."""

    model_config = ConfigDict(extra="forbid")
    role: str | None = None
    name: str | None = Field(default=None, max_length=255)
    person_id: int | None = None
    team_ids: list[int] | None = Field(default=None, max_length=1000)
    disabled: bool | None = None
    password: str | None = Field(default=None, max_length=users_store.MAX_PASSWORD)


def _user_error(exc: users_store.UserError) -> ApiError:
    status = 409 if isinstance(exc, users_store.UserExists) else 422
    return ApiError(status, str(exc), [{"loc": [exc.field], "msg": str(exc)}])


def _create(services: Services, admin: Access, body: NewUser) -> dict[str, Any]:
    try:
        with services.db.write() as conn:
            user = users_store.create_user(
                conn,
                admin.org_id,
                body.email,
                body.password,
                body.role,
                now_ms(),
                name=body.name,
                person_id=body.person_id,
                team_ids=body.team_ids,
            )
            details = {k: v for k, v in user.public().items() if k not in ("id", "created_ms")}
            audit.by(conn, admin, "user.create", f"user {user.id}", details)
    except users_store.UserError as exc:
        raise _user_error(exc) from exc
    return user.public()


def _change(services: Services, admin: Access, user_id: int, body: UserChange) -> dict[str, Any]:
    sent = body.model_fields_set
    # An admin cannot lock themselves out; another admin (or the CLI) can.
    demoted = body.disabled or (body.role is not None and body.role != "admin")
    if admin.kind == "user" and admin.actor_id == user_id and demoted:
        raise ApiError(409, "you cannot disable yourself or give up your own admin role")
    try:
        with services.db.write() as conn:
            user, changes = users_store.update_user(
                conn,
                admin.org_id,
                user_id,
                now_ms(),
                role=body.role,
                name=body.name,
                team_ids=body.team_ids,
                disabled=body.disabled,
                person_id=body.person_id if "person_id" in sent else users_store.UNSET,
            )
            if body.password is not None:
                users_store.set_password(conn, admin.org_id, user_id, body.password)
                changes["password"] = "changed"
            if changes:
                audit.by(conn, admin, "user.update", f"user {user_id}", changes)
    except users_store.UnknownUser as exc:
        raise ApiError(404, str(exc)) from exc
    except users_store.UserError as exc:
        raise _user_error(exc) from exc
    return user.public()


def _list(services: Services, org_id: int) -> list[dict[str, Any]]:
    with services.db.read() as conn:
        return [u.public() for u in users_store.list_users(conn, org_id)]


@router.post("/users", status_code=201)
async def create_user(services: ServicesDep, admin: AdminDep, body: NewUser) -> dict[str, Any]:
    """Create a dashboard user: role admin, manager (with ``team_ids``), viewer,
    or self (with the ``person_id`` whose data they see)."""
    return await run_in_threadpool(_create, services, admin, body)


@router.get("/users")
async def list_users(services: ServicesDep, admin: AdminDep) -> list[dict[str, Any]]:
    return await run_in_threadpool(_list, services, admin.org_id)


@router.patch("/users/{user_id}")
async def change_user(
    user_id: int, services: ServicesDep, admin: AdminDep, body: UserChange
) -> dict[str, Any]:
    """Change role, teams, person, name, password or disable a user. Disabling,
    a new role or a new password ends the user's sessions."""
    return await run_in_threadpool(_change, services, admin, user_id, body)


@router.get("/me")
async def me(request: Request, user: UserDep) -> dict[str, Any]:
    """Who the caller is and what they see; for a session also its CSRF token
    (send it as X-CSRF-Token with every change)."""
    session: Session | None = getattr(request.state, "session", None)
    return {
        "kind": user.kind,
        "id": user.actor_id,
        "name": user.name,
        "role": user.role,
        "team_ids": None if user.team_ids is None else sorted(user.team_ids),
        "person_id": user.person_id,
        "csrf_token": session.csrf_token if session else None,
    }


def _audit_page(services: Services, org_id: int, before: int | None, limit: int) -> dict[str, Any]:
    with services.db.read() as conn:
        entries = audit.page(conn, org_id, before_id=before, limit=limit)
    more = len(entries) == limit
    return {"entries": entries, "next_before": entries[-1]["id"] if more else None}


@router.get("/audit")
async def audit_log(
    services: ServicesDep,
    admin: AdminDep,
    before: Annotated[int | None, Query(description="entries older than this id")] = None,
    limit: Annotated[int, Query(ge=1, le=audit.MAX_PAGE)] = 100,
) -> dict[str, Any]:
    """The organization's audit log, newest first; ``next_before`` pages on."""
    return await run_in_threadpool(_audit_page, services, admin.org_id, before, limit)
