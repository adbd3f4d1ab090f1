"""The agent settings an organization pushes to its agents (``wire.PUSHED_SETTINGS``:
idle threshold and intervals), with a version that goes up at every change.

Agents report the version they apply with every batch; an answer carries the
settings when the versions differ (``server/control.py``). A setting without a
value leaves each agent its own (config file, environment, flags)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, select, update

from worklens.protocol.wire import PUSHED_SETTINGS
from worklens.server.store.schema import agent_settings, orgs

NAMES = tuple(PUSHED_SETTINGS)


@dataclass(frozen=True, slots=True)
class AgentSettings:
    version: int = 0  # 0: never set
    values: dict[str, float] = field(default_factory=dict)  # only the names set
    updated_ms: int | None = None

    def public(self) -> dict[str, Any]:
        """Every setting by name (None: the agent's own), the version, when changed."""
        return {
            "version": self.version,
            **{name: self.values.get(name) for name in NAMES},
            "updated_ms": self.updated_ms,
        }


def get(conn: Connection, org_id: int) -> AgentSettings:
    row = conn.execute(
        select(agent_settings.c.version, agent_settings.c.body, agent_settings.c.updated_ms).where(
            agent_settings.c.org_id == org_id
        )
    ).first()
    if row is None:
        return AgentSettings()
    stored = json.loads(row.body)
    values = {k: float(v) for k, v in stored.items() if k in PUSHED_SETTINGS and v is not None}
    return AgentSettings(int(row.version), values, int(row.updated_ms))


def change(
    conn: Connection, org_id: int, changes: dict[str, float | None], now_ms: int
) -> tuple[AgentSettings, AgentSettings]:
    """Set (a number) or clear (None) the named settings; the others stay. Returns
    (before, after); the version goes up only if a value really changed. The
    caller has validated the values (names of ``PUSHED_SETTINGS``, within bounds)."""
    if conn.dialect.name == "postgresql":
        # One change of the organization's settings at a time (there may be no
        # row to lock yet); SQLite's write transactions are one at a time anyway.
        conn.execute(select(orgs.c.id).where(orgs.c.id == org_id).with_for_update())
    before = get(conn, org_id)
    values = dict(before.values)
    for name, value in changes.items():
        if name not in PUSHED_SETTINGS:
            raise KeyError(name)
        if value is None:
            values.pop(name, None)
        else:
            values[name] = float(value)
    if values == before.values:
        return before, before
    after = AgentSettings(before.version + 1, values, now_ms)
    body = json.dumps(dict(sorted(values.items())))
    if before.version:
        conn.execute(
            update(agent_settings)
            .where(agent_settings.c.org_id == org_id)
            .values(version=after.version, body=body, updated_ms=now_ms)
        )
    else:
        conn.execute(
            agent_settings.insert().values(
                org_id=org_id, version=after.version, body=body, updated_ms=now_ms
            )
        )
    return before, after
