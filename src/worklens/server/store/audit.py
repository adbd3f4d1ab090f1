"""The audit log: one row per admin action, in the action's own transaction,
so an action that is rolled back leaves no entry and a stored one always has it."""

from __future__ import annotations

import json
import time
from typing import Any

from sqlalchemy import Connection, select

from worklens.server.access import Access, Actor
from worklens.server.store.schema import audit_log

MAX_PAGE = 500


def record(
    conn: Connection,
    org_id: int,
    actor: Actor,
    action: str,
    target: str,
    details: dict[str, Any] | None = None,
    ip: str = "",
    *,
    now_ms: int | None = None,
) -> None:
    """Log ``action`` (``"device.block"``, ``"user.create"``, ...) on ``target``
    (``"device 7"``); ``details`` is what changed (never a secret)."""
    conn.execute(
        audit_log.insert().values(
            org_id=org_id,
            at_ms=time.time_ns() // 1_000_000 if now_ms is None else now_ms,
            actor_kind=actor.kind,
            actor_id=actor.id,
            actor_name=actor.name[:320],
            action=action[:64],
            target=target[:255],
            details=json.dumps(details or {}, sort_keys=True, ensure_ascii=False, default=str),
            ip=ip[:64],
        )
    )


def by(
    conn: Connection,
    access: Access,
    action: str,
    target: str,
    details: dict[str, Any] | None = None,
) -> None:
    """:func:`record` for a request's caller, in their organization."""
    record(conn, access.org_id, access.actor, action, target, details, access.ip)


def page(
    conn: Connection, org_id: int, *, before_id: int | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """Entries of the organization, newest first; pass the last id seen as
    ``before_id`` for the next page (stable while new entries arrive)."""
    q = select(audit_log).where(audit_log.c.org_id == org_id)
    if before_id is not None:
        q = q.where(audit_log.c.id < before_id)
    rows = conn.execute(q.order_by(audit_log.c.id.desc()).limit(max(1, min(limit, MAX_PAGE))))
    out = []
    for r in rows:
        entry = dict(r._mapping)
        entry.pop("org_id")
        entry["details"] = json.loads(entry["details"] or "{}")
        out.append(entry)
    return out
