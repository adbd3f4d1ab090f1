"""Organizations and their admin API tokens."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, select, update

from worklens.server.access import TOKEN_ROLES
from worklens.server.security import (
    ADMIN_TOKEN_PREFIX,
    ENROLL_SECRET_PREFIX,
    hash_secret,
    new_secret,
    same_hash,
)
from worklens.server.store.rollups import Rollups
from worklens.server.store.schema import api_tokens, orgs
from worklens.timeline.periods import zone

# Roles a new API token may have (server/access.py says what they mean).
ROLES = TOKEN_ROLES


class OrgExists(ValueError):
    pass


class UnknownOrg(LookupError):
    pass


@dataclass(frozen=True, slots=True)
class Org:
    id: int
    name: str


@dataclass(frozen=True, slots=True)
class TokenAuth:
    token_id: int
    org_id: int
    role: str
    name: str = ""


def create_org(conn: Connection, name: str, now_ms: int) -> tuple[Org, str]:
    """Create an organization; returns it with its enrollment secret (shown once)."""
    if conn.execute(select(orgs.c.id).where(orgs.c.name == name)).first():
        raise OrgExists(f"organization {name!r} already exists")
    secret = new_secret(ENROLL_SECRET_PREFIX)
    org_id = conn.execute(
        orgs.insert().values(name=name, enroll_secret_hash=hash_secret(secret), created_ms=now_ms)
    ).inserted_primary_key
    assert org_id is not None
    return Org(int(org_id[0]), name), secret


def rotate_enroll_secret(conn: Connection, org: Org) -> str:
    secret = new_secret(ENROLL_SECRET_PREFIX)
    conn.execute(
        update(orgs).where(orgs.c.id == org.id).values(enroll_secret_hash=hash_secret(secret))
    )
    return secret


def get_org(conn: Connection, name: str) -> Org:
    row = conn.execute(select(orgs.c.id, orgs.c.name).where(orgs.c.name == name)).first()
    if row is None:
        raise UnknownOrg(f"no organization named {name!r}")
    return Org(row.id, row.name)


def org_by_enroll_secret(conn: Connection, secret: str) -> Org | None:
    digest = hash_secret(secret)
    row = conn.execute(
        select(orgs.c.id, orgs.c.name, orgs.c.enroll_secret_hash).where(
            orgs.c.enroll_secret_hash == digest
        )
    ).first()
    if row is None or not same_hash(row.enroll_secret_hash, digest):
        return None
    return Org(row.id, row.name)


def create_token(conn: Connection, org: Org, role: str, now_ms: int, name: str = "") -> str:
    """Create an API token for scripts; returns it (shown once). People log in
    to the dashboard as users (store/users.py) instead."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
    token = new_secret(ADMIN_TOKEN_PREFIX)
    conn.execute(
        api_tokens.insert().values(
            org_id=org.id, role=role, name=name, token_hash=hash_secret(token), created_ms=now_ms
        )
    )
    return token


def authenticate_token(conn: Connection, token: str) -> TokenAuth | None:
    digest = hash_secret(token)
    row = conn.execute(
        select(
            api_tokens.c.id,
            api_tokens.c.org_id,
            api_tokens.c.role,
            api_tokens.c.name,
            api_tokens.c.token_hash,
        )
        .where(api_tokens.c.token_hash == digest)
        .where(api_tokens.c.revoked_ms.is_(None))
    ).first()
    if row is None or not same_hash(row.token_hash, digest):
        return None
    return TokenAuth(row.id, row.org_id, row.role, row.name)


def org_settings(conn: Connection, org_id: int) -> dict[str, str]:
    row = conn.execute(select(orgs.c.name, orgs.c.timezone).where(orgs.c.id == org_id)).one()
    return {"name": row.name, "timezone": row.timezone}


def set_timezone(conn: Connection, org_id: int, name: str, rollups: Rollups) -> bool:
    """Set the organization's time zone (an IANA name; ``UnknownTimeZone`` names
    a bad one). Its day rollups are rebuilt in the new zone by the refreshes
    that follow. Returns whether anything changed."""
    zone(name)
    current = conn.execute(select(orgs.c.timezone).where(orgs.c.id == org_id)).scalar_one()
    if current == name:
        return False
    conn.execute(update(orgs).where(orgs.c.id == org_id).values(timezone=name))
    rollups.retime(conn, org_id)
    return True
