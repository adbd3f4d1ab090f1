"""The fleet's view-models: one dict per device with what pages show of it
now (online, person, current app and title, idle, health), shared by the
fleet page, the person and device pages and the live socket, which renders
the same partial templates when a device changes."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, func, select

from worklens.server.access import Access
from worklens.server.services import Services
from worklens.server.store import devices as devices_store
from worklens.server.store import people as people_store
from worklens.server.store.schema import device_people, host_samples, people

# Health badges: (field, warning at, critical at), in percent.
BADGES = (("cpu_percent", 80.0, 95.0), ("mem_percent", 85.0, 95.0), ("disk_percent", 85.0, 95.0))


def device_views(
    services: Services, access: Access, only: list[int] | None = None
) -> list[dict[str, Any]]:
    """The devices ``access`` may see (or only some of them), as view-models."""
    with services.db.read() as conn:
        rows = devices_store.list_devices(conn, access.org_id, only)
        visible = people_store.visible_devices(conn, access)
        if visible is not None:
            rows = [r for r in rows if r["id"] in visible]
        ids = [r["id"] for r in rows]
        owners = _owners(conn, ids)
        health = latest_health(conn, ids)
    now = time.time() * 1000
    offline_ms = services.settings.offline_after_s * 1000
    return [_view(r, owners.get(r["id"]), health.get(r["id"]), now, offline_ms) for r in rows]


def _view(
    r: dict[str, Any],
    owner: tuple[int, str] | None,
    health: dict[str, Any] | None,
    now_ms: float,
    offline_ms: float,
) -> dict[str, Any]:
    online = devices_store.is_online(r, int(now_ms), offline_ms)
    status = "blocked" if r["blocked"] else ("online" if online else "offline")
    idle = r["afk_status"] == "afk"
    badges = []
    for key, warn, crit in BADGES:
        value = (health or {}).get(key)
        if value is not None:
            level = "critical" if value >= crit else "warning" if value >= warn else "ok"
            badges.append({"name": key.split("_")[0], "value": round(value), "level": level})
    return {
        **r,
        "status": status,
        "online": online,
        "idle": idle,
        "person_id": owner[0] if owner else None,
        "person": owner[1] if owner else "",
        "last_seen": when(r["last_seen_ms"]),
        "since": when(r["afk_since_ms"] if idle else r["current_since_ms"]),
        "badges": badges,
        "sample": _sample(health),
    }


def _sample(health: dict[str, Any] | None) -> str:
    """The newest host sample as chart JSON (seconds and metrics), or ""."""
    if not health:
        return ""
    values = {k: v for k, v in health.items() if k not in ("device_id", "ts_ms")}
    return json.dumps({"t": health["ts_ms"] / 1000, **values})


def _owners(conn: Connection, ids: list[int]) -> dict[int, tuple[int, str]]:
    out: dict[int, tuple[int, str]] = {}
    for start in range(0, len(ids), 500):
        for device_id, person_id, name in conn.execute(
            select(device_people.c.device_id, people.c.id, people.c.name)
            .join(people, people.c.id == device_people.c.person_id)
            .where(device_people.c.device_id.in_(ids[start : start + 500]))
        ):
            out[int(device_id)] = (int(person_id), str(name))
    return out


def latest_health(conn: Connection, ids: list[int]) -> dict[int, dict[str, Any]]:
    """Each device's newest host sample."""
    out: dict[int, dict[str, Any]] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        newest = (
            select(host_samples.c.device_id, func.max(host_samples.c.ts_ms).label("ts"))
            .where(host_samples.c.device_id.in_(chunk))
            .group_by(host_samples.c.device_id)
            .subquery()
        )
        for row in conn.execute(
            select(host_samples).join(
                newest,
                (newest.c.device_id == host_samples.c.device_id)
                & (newest.c.ts == host_samples.c.ts_ms),
            )
        ):
            out[int(row.device_id)] = dict(row._mapping)
    return out


def when(ms: int | None) -> str:
    if not ms:
        return "never"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
