"""Who may see and do what: the one place roles are defined (pure, no I/O).

Roles of dashboard users:

* ``admin``   — everything in the organization, including every change;
* ``manager`` — reads the people, devices and reports of their teams; changes nothing;
* ``viewer``  — reads everything in the organization; changes nothing;
* ``self``    — reads only their own person's data and devices.

API tokens carry ``admin`` or ``viewer`` (a legacy ``manager`` token, which
could read the whole organization and change nothing, reads as ``viewer``: a
token has no teams to restrict it to).

Routers ask an :class:`Access` (built by ``deps.current_access``) before they
answer; ``analytics.time_report.resolve_scope`` asks it for report scopes.
Whatever a caller may not see is answered like something that does not exist
(404 or left out of a list), so a restricted user learns nothing about it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

Role = Literal["admin", "manager", "viewer", "self"]
ROLES: tuple[Role, ...] = get_args(Role)
TokenRole = Literal["admin", "viewer"]
TOKEN_ROLES: tuple[TokenRole, ...] = get_args(TokenRole)
ActorKind = Literal["user", "token", "cli"]


def check_role(role: str) -> Role:
    """``role`` as a Role, or ValueError naming the choices."""
    for r in ROLES:
        if role == r:
            return r
    raise ValueError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")


def token_access_role(stored: str) -> TokenRole:
    """What a stored API token's role means now (see the module docstring)."""
    return "admin" if stored == "admin" else "viewer"


@dataclass(frozen=True, slots=True)
class Actor:
    """Who did something, as the audit log names them."""

    kind: ActorKind
    id: int | None
    name: str


@dataclass(frozen=True, slots=True)
class Access:
    """An authenticated caller: their organization, role and what they may see."""

    org_id: int
    role: Role
    kind: Literal["user", "token"]
    actor_id: int  # users.id or api_tokens.id, by kind
    name: str
    # Teams whose people (and their devices) the caller sees; None = all of
    # the organization. A manager has theirs, a self user none.
    team_ids: frozenset[int] | None = None
    person_id: int | None = None  # a self user's own person
    ip: str = ""  # where the request came from (audit log)

    @staticmethod
    def for_user(
        org_id: int,
        role: Role,
        user_id: int,
        name: str,
        teams: frozenset[int],
        person_id: int | None,
        ip: str = "",
    ) -> Access:
        """The access of a dashboard user: only managers are limited to teams,
        only self users to a person."""
        return Access(
            org_id=org_id,
            role=role,
            kind="user",
            actor_id=user_id,
            name=name,
            team_ids=teams if role == "manager" else (frozenset() if role == "self" else None),
            person_id=person_id if role == "self" else None,
            ip=ip,
        )

    @staticmethod
    def for_token(org_id: int, stored_role: str, token_id: int, name: str, ip: str = "") -> Access:
        return Access(
            org_id=org_id,
            role=token_access_role(stored_role),
            kind="token",
            actor_id=token_id,
            name=name or f"token #{token_id}",
            ip=ip,
        )

    @property
    def actor(self) -> Actor:
        return Actor(self.kind, self.actor_id, self.name)

    @property
    def can_admin(self) -> bool:
        """May change anything in the organization (users, devices, rules, settings)."""
        return self.role == "admin"

    @property
    def sees_whole_org(self) -> bool:
        """Reads everything: all people, devices nobody is assigned to, AW buckets."""
        return self.role in ("admin", "viewer")

    def may_see_team(self, team_id: int | None) -> bool:
        if self.sees_whole_org:
            return True
        return team_id is not None and self.team_ids is not None and team_id in self.team_ids

    def may_see_person(self, person_id: int, person_team: int | None) -> bool:
        if self.sees_whole_org:
            return True
        if self.role == "self":
            return self.person_id is not None and person_id == self.person_id
        return self.may_see_team(person_team)

    def may_see_device(self, owner: int | None, owner_team: int | None) -> bool:
        """A device is seen through the person who uses it; one nobody is
        assigned to only by those who see the whole organization."""
        if self.sees_whole_org:
            return True
        return owner is not None and self.may_see_person(owner, owner_team)
