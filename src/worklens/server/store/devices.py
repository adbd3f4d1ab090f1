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


def list_devices(
    conn: Connection, org_id: int, only: list[int] | None = None
) -> list[dict[str, Any]]:
    """The organization's devices (or only some), with their live state."""
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
            *LIVE_COLUMNS,
        )
        .where(devices.c.org_id == org_id, *([devices.c.id.in_(only)] if only is not None else []))
        .order_by(devices.c.hostname, devices.c.id)
    ).all()
    return [dict(r._mapping) for r in rows]


# What a device shows now (see ``set_current``), listed with every device.
LIVE_COLUMNS = (
    devices.c.current_app,
    devices.c.current_title,
    devices.c.current_since_ms,
    devices.c.afk_status,
    devices.c.afk_since_ms,
    devices.c.disconnected_ms,
)


@dataclass(frozen=True, slots=True)
class Current:
    """The newest focus and afk state a batch carried (None: it had none)."""

    focus: tuple[int, str, str] | None = None  # (start ms, app, title)
    afk: tuple[int, str] | None = None  # (start ms, "afk" | "active")


def set_current(conn: Connection, device_id: int, current: Current) -> None:
    """Move the device's current app/title and afk state forward: only an event
    that started at or after the stored one replaces it (batches arrive in any
    order after an agent was offline)."""
    if current.focus is not None:
        start, app, title = current.focus
        conn.execute(
            update(devices)
            .where(
                devices.c.id == device_id,
                (devices.c.current_since_ms.is_(None)) | (devices.c.current_since_ms <= start),
            )
            .values(current_app=app, current_title=title, current_since_ms=start)
        )
    if current.afk is not None:
        start, status = current.afk
        conn.execute(
            update(devices)
            .where(
                devices.c.id == device_id,
                (devices.c.afk_since_ms.is_(None)) | (devices.c.afk_since_ms <= start),
            )
            .values(afk_status=status, afk_since_ms=start)
        )


def set_disconnected(conn: Connection, device_id: int, now_ms: int) -> None:
    """Its live connection closed: offline until it is heard from again."""
    conn.execute(update(devices).where(devices.c.id == device_id).values(disconnected_ms=now_ms))


def is_online(row: dict[str, Any], now_ms: int, offline_after_ms: float) -> bool:
    """Heard from recently, and not since gone (a closed live connection with
    nothing after it)."""
    seen = row.get("last_seen_ms") or 0
    gone = row.get("disconnected_ms") or 0
    return seen >= now_ms - offline_after_ms and seen > gone
