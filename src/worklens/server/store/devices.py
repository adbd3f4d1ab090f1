"""Devices: enrollment, token checks, liveness and management."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, select, update

from worklens.protocol.messages import SystemIdentity
from worklens.server.security import DEVICE_TOKEN_PREFIX, hash_secret, new_secret, same_hash
from worklens.server.store.orgs import Org
from worklens.server.store.schema import devices


class DeviceBlocked(PermissionError):
    pass


@dataclass(frozen=True, slots=True)
class DeviceAuth:
    id: int
    org_id: int
    hostname: str
    blocked: bool


def enroll(conn: Connection, org: Org, ident: SystemIdentity, now_ms: int) -> tuple[int, str]:
    """Register a machine (or re-register a known one) and issue a fresh token.

    A machine is known by its hardware UUID within the organization, so
    re-enrolling after a revoked token keeps its history; the old token stops
    working because only the new token's hash is kept.
    """
    token = new_secret(DEVICE_TOKEN_PREFIX)
    values: dict[str, Any] = {
        "hostname": ident.hostname,
        "os_user": ident.os_user,
        "os": ident.os,
        "kernel": ident.kernel,
        "email": ident.email,
        "identity": ident.model_dump_json(),
        "token_hash": hash_secret(token),
        "agent_version": ident.agent_version,
        "last_seen_ms": now_ms,
    }
    row = conn.execute(
        select(devices.c.id, devices.c.blocked).where(
            devices.c.org_id == org.id, devices.c.hardware_uuid == ident.hardware_uuid
        )
    ).first()
    if row is not None:
        if row.blocked:
            raise DeviceBlocked(f"device {row.id} is blocked by an administrator")
        conn.execute(update(devices).where(devices.c.id == row.id).values(**values))
        return int(row.id), token
    pk = conn.execute(
        devices.insert().values(
            org_id=org.id, hardware_uuid=ident.hardware_uuid, created_ms=now_ms, **values
        )
    ).inserted_primary_key
    assert pk is not None
    return int(pk[0]), token


def authenticate(conn: Connection, token: str) -> DeviceAuth | None:
    digest = hash_secret(token)
    row = conn.execute(
        select(
            devices.c.id,
            devices.c.org_id,
            devices.c.hostname,
            devices.c.blocked,
            devices.c.token_hash,
        ).where(devices.c.token_hash == digest)
    ).first()
    if row is None or not same_hash(row.token_hash, digest):
        return None
    return DeviceAuth(row.id, row.org_id, row.hostname, bool(row.blocked))


def touch(
    conn: Connection,
    device_id: int,
    now_ms: int,
    *,
    agent_version: str | None = None,
    spool_depth: int | None = None,
    dropped: int | None = None,
) -> None:
    """Record that the device was heard from (last-seen never moves backwards)."""
    values: dict[str, Any] = {
        "last_seen_ms": func.max(func.coalesce(devices.c.last_seen_ms, 0), now_ms)
    }
    if conn.dialect.name == "postgresql":
        values["last_seen_ms"] = func.greatest(func.coalesce(devices.c.last_seen_ms, 0), now_ms)
    if agent_version:
        values["agent_version"] = agent_version
    if spool_depth is not None:
        values["spool_depth"] = spool_depth
    if dropped is not None:
        values["dropped"] = dropped
    conn.execute(update(devices).where(devices.c.id == device_id).values(**values))


def revoke(conn: Connection, org_id: int, device_id: int) -> bool:
    res = conn.execute(
        update(devices)
        .where(devices.c.id == device_id, devices.c.org_id == org_id)
        .values(token_hash=None)
    )
    return res.rowcount > 0


def set_blocked(conn: Connection, org_id: int, device_id: int, blocked: bool) -> bool:
    res = conn.execute(
        update(devices)
        .where(devices.c.id == device_id, devices.c.org_id == org_id)
        .values(blocked=blocked)
    )
    return res.rowcount > 0


def list_devices(conn: Connection, org_id: int) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(
            devices.c.id,
            devices.c.hostname,
            devices.c.os_user,
            devices.c.os,
            devices.c.last_seen_ms,
            devices.c.blocked,
            devices.c.agent_version,
            devices.c.spool_depth,
            devices.c.dropped,
            (devices.c.token_hash.is_not(None)).label("enrolled"),
        )
        .where(devices.c.org_id == org_id)
        .order_by(devices.c.hostname, devices.c.id)
    ).all()
    return [dict(r._mapping) for r in rows]
