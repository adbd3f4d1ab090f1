"""The caller's organization: its settings."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from worklens.server.access import Access
from worklens.server.deps import AdminDep, ServicesDep, UserDep
from worklens.server.errors import ApiError
from worklens.server.services import Services
from worklens.server.store import audit, orgs
from worklens.timeline.periods import UnknownTimeZone

router = APIRouter(prefix="/api/v1/org", tags=["org"])


class OrgSettings(BaseModel):
    name: str
    timezone: str


class OrgChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    timezone: str | None = Field(default=None, max_length=64, description="IANA time zone")


def _read(services: Services, org_id: int) -> OrgSettings:
    with services.db.read() as conn:
        return OrgSettings(**orgs.org_settings(conn, org_id))


def _change(services: Services, admin: Access, change: OrgChange) -> OrgSettings:
    if change.timezone is not None:
        try:
            with services.db.write() as conn:
                before = orgs.org_settings(conn, admin.org_id)["timezone"]
                if orgs.set_timezone(conn, admin.org_id, change.timezone, services.rollups):
                    audit.by(
                        conn,
                        admin,
                        "org.timezone",
                        "organization",
                        {"from": before, "to": change.timezone},
                    )
        except UnknownTimeZone as exc:
            raise ApiError(422, str(exc), [{"loc": ["timezone"], "msg": str(exc)}]) from exc
    return _read(services, admin.org_id)


@router.get("", response_model=OrgSettings)
async def get_org(services: ServicesDep, user: UserDep) -> OrgSettings:
    """The organization's name and time zone (every role: reports need the zone)."""
    return await run_in_threadpool(_read, services, user.org_id)


@router.patch("", response_model=OrgSettings)
async def change_org(services: ServicesDep, admin: AdminDep, change: OrgChange) -> OrgSettings:
    """Change settings. A new time zone splits reports' days at its midnight;
    day rollups are rebuilt for it in the background (reports stay exact meanwhile)."""
    return await run_in_threadpool(_change, services, admin, change)
