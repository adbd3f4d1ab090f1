"""Devices: enrollment, token checks, liveness and management."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Select, delete, func, select, update

from worklens.protocol.messages import SystemIdentity
from worklens.server.security import (
    DEVICE_TOKEN_PREFIX,
    derived_secret,
    hash_secret,
    new_secret,
    same_hash,
)
from worklens.server.store.orgs import Org
from worklens.server.store.rollups import mark_person_hours_of
from worklens.server.store.schema import (
    agent_settings,
    buckets,
    device_people,
    device_token_rotations,
    devices,
    event_chunks,
    events,
    host_samples,
    ingest_batches,
    rollup_dirty,
    rollups,
)


class DeviceBlocked(PermissionError):
    pass


@dataclass(frozen=True, slots=True)
class DeviceAuth:
    id: int
    org_id: int
    hostname: str
    blocked: bool
    created_ms: int = 0
    # A token rotation is pending (its nonce; see ``rotation_token``) and the
    # hash of the new token once it was sent; ``new_token``: the caller used
    # that new token (``finish_rotation`` makes it the device's token).
    rotation_nonce: str | None = None
    rotation_pending_hash: str | None = None
    new_token: bool = False
    # The version of the organization's agent settings (0: none).
    settings_version: int = 0


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
        # A fresh token: a rotation asked for before is moot.
        conn.execute(
            delete(device_token_rotations).where(device_token_rotations.c.device_id == row.id)
        )
        return int(row.id), token
    pk = conn.execute(
        devices.insert().values(
            org_id=org.id, hardware_uuid=ident.hardware_uuid, created_ms=now_ms, **values
        )
    ).inserted_primary_key
    assert pk is not None
    return int(pk[0]), token


def _auth_query() -> Select[Any]:
    return select(
        devices.c.id,
        devices.c.org_id,
        devices.c.hostname,
        devices.c.blocked,
        devices.c.created_ms,
        devices.c.token_hash,
        device_token_rotations.c.nonce,
        device_token_rotations.c.pending_hash,
        func.coalesce(agent_settings.c.version, 0).label("settings_version"),
    ).select_from(
        devices.outerjoin(
            device_token_rotations, device_token_rotations.c.device_id == devices.c.id
        ).outerjoin(agent_settings, agent_settings.c.org_id == devices.c.org_id)
    )


def authenticate(conn: Connection, token: str) -> DeviceAuth | None:
    """The device whose token this is, or whose pending new token it is
    (``new_token``: call ``finish_rotation``); None for any other token."""
    digest = hash_secret(token)
    row = conn.execute(_auth_query().where(devices.c.token_hash == digest)).first()
    new_token = False
    if row is None or not same_hash(row.token_hash, digest):
        row = conn.execute(
            _auth_query().where(
                device_token_rotations.c.pending_hash == digest, devices.c.token_hash.is_not(None)
            )
        ).first()
        if row is None or not same_hash(row.pending_hash, digest):
            return None
        new_token = True
    return DeviceAuth(
        row.id,
        row.org_id,
        row.hostname,
        bool(row.blocked),
        int(row.created_ms),
        None if new_token else row.nonce,
        None if new_token else row.pending_hash,
        new_token,
        int(row.settings_version),
    )


# --- token rotation ---------------------------------------------------------------
# An admin asks (request_rotation); the device's next request with its token
# gets the new token in the answer (rotation_token, note_rotation_sent), the
# same one for every request made with the old token; the first request made
# with the new token makes it the device's token (finish_rotation), and the old
# one stops working. An agent that dies between receiving and saving the new
# token still has a working token, and one that saved it has the new one.


class NotEnrolled(ValueError):
    """The device has no token (revoked): it gets one when it enrolls again."""


def request_rotation(conn: Connection, org_id: int, device_id: int, now_ms: int) -> int | None:
    """Ask for a new token for the device; returns when the pending rotation
    was asked for (an earlier one stays as it is: its new token may already be
    on the device's disk), None if there is no such device in the organization."""
    row = conn.execute(
        select(devices.c.token_hash, device_token_rotations.c.requested_ms)
        .select_from(
            devices.outerjoin(
                device_token_rotations, device_token_rotations.c.device_id == devices.c.id
            )
        )
        .where(devices.c.id == device_id, devices.c.org_id == org_id)
    ).first()
    if row is None:
        return None
    if row.token_hash is None:
        raise NotEnrolled(f"device {device_id} has no token (revoked); it gets one when it enrolls")
    if row.requested_ms is not None:
        return int(row.requested_ms)
    conn.execute(
        device_token_rotations.insert().values(
            device_id=device_id, nonce=secrets.token_hex(32), requested_ms=now_ms
        )
    )
    return now_ms


def rotation_token(device: DeviceAuth, token: str) -> str | None:
    """The new token of the device's pending rotation, derived from the token it
    called with (so the server keeps neither); None when none is pending."""
    if device.rotation_nonce is None or device.new_token:
        return None
    return derived_secret(DEVICE_TOKEN_PREFIX, token, device.rotation_nonce)


def note_rotation_sent(conn: Connection, device: DeviceAuth, new_token: str) -> None:
    """Remember the new token's hash before it is sent, so it is accepted when used."""
    digest = hash_secret(new_token)
    if device.rotation_pending_hash == digest:
        return
    conn.execute(
        update(device_token_rotations)
        .where(
            device_token_rotations.c.device_id == device.id,
            device_token_rotations.c.nonce == device.rotation_nonce,
        )
        .values(pending_hash=digest)
    )


def finish_rotation(conn: Connection, device_id: int, token: str) -> bool:
    """The device called with its new token: that token becomes its token and
    the old one stops working. False if the rotation is gone meanwhile."""
    digest = hash_secret(token)
    pending = conn.execute(
        select(device_token_rotations.c.pending_hash).where(
            device_token_rotations.c.device_id == device_id
        )
    ).scalar()
    if pending is None or not same_hash(pending, digest):
        return False
    conn.execute(
        delete(device_token_rotations).where(device_token_rotations.c.device_id == device_id)
    )
    res = conn.execute(
        update(devices)
        .where(devices.c.id == device_id, devices.c.token_hash.is_not(None))
        .values(token_hash=digest)
    )
    return res.rowcount > 0


def pending_rotations(conn: Connection, org_id: int) -> dict[int, int]:
    """Devices of the organization with a token rotation pending -> when asked."""
    rows = conn.execute(
        select(device_token_rotations.c.device_id, device_token_rotations.c.requested_ms)
        .join(devices, devices.c.id == device_token_rotations.c.device_id)
        .where(devices.c.org_id == org_id)
    )
    return {int(d): int(t) for d, t in rows}


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
    if res.rowcount > 0:  # and a pending new token must not bring it back
        conn.execute(
            delete(device_token_rotations).where(device_token_rotations.c.device_id == device_id)
        )
    return res.rowcount > 0


def set_blocked(conn: Connection, org_id: int, device_id: int, blocked: bool) -> bool:
    res = conn.execute(
        update(devices)
        .where(devices.c.id == device_id, devices.c.org_id == org_id)
        .values(blocked=blocked)
    )
    return res.rowcount > 0


def hostname_of(conn: Connection, org_id: int, device_id: int) -> str | None:
    """The device's host name; None if there is no such device in the organization."""
    return conn.execute(
        select(devices.c.hostname).where(devices.c.id == device_id, devices.c.org_id == org_id)
    ).scalar()


def delete_device(conn: Connection, device_id: int) -> dict[str, int]:
    """Delete a device with all its data, in the caller's transaction; returns
    how many rows of each kind went (events counts those in chunks too).

    The hours of its person are marked for recomputation first (person rollups
    merge the person's devices, so they lose exactly this device's time at the
    next refresh). Every table that refers to the device is emptied of it here,
    whatever the foreign keys' cascades would do; the token goes with the row,
    so the device's next request gets 401.
    """
    person = conn.execute(
        select(device_people.c.person_id).where(device_people.c.device_id == device_id)
    ).scalar()
    if person is not None:
        mark_person_hours_of(conn, int(person), device_id)
    bucket_ids = select(buckets.c.id).where(buckets.c.device_id == device_id).scalar_subquery()
    in_chunks = conn.execute(
        select(func.coalesce(func.sum(event_chunks.c.n), 0)).where(
            event_chunks.c.bucket_id.in_(bucket_ids)
        )
    ).scalar_one()
    counts = {
        "event_rows": conn.execute(delete(events).where(events.c.bucket_id.in_(bucket_ids))),
        "event_chunks": conn.execute(
            delete(event_chunks).where(event_chunks.c.bucket_id.in_(bucket_ids))
        ),
        "buckets": conn.execute(delete(buckets).where(buckets.c.device_id == device_id)),
        "host_samples": conn.execute(
            delete(host_samples).where(host_samples.c.device_id == device_id)
        ),
        "batches": conn.execute(
            delete(ingest_batches).where(ingest_batches.c.device_id == device_id)
        ),
        "rollups": conn.execute(delete(rollups).where(rollups.c.device_id == device_id)),
    }
    out = {name: int(res.rowcount) for name, res in counts.items()}
    out["events"] = out.pop("event_rows") + int(in_chunks)
    for table in (rollup_dirty, device_people, device_token_rotations):
        conn.execute(delete(table).where(table.c.device_id == device_id))
    conn.execute(delete(devices).where(devices.c.id == device_id))
    return out


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
