"""Where category rules live: the organization's rule set and its teams'
overrides, stored as validated JSON. Classification itself is the pure
``worklens.categories`` package; nothing here rewrites events, so a change of
rules applies to all stored history at the next report."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, select, update

from worklens.categories import (
    RuleSet,
    TeamOverrides,
    default_ruleset_text,
    load_default_ruleset,
    merge,
)
from worklens.server.store import people as people_store
from worklens.server.store.classifiers import Classifiers, org_body
from worklens.server.store.schema import category_rules, teams

__all__ = ["Classifiers", "org_rules", "set_org_rules", "set_team_overrides", "team_overrides"]


def org_rules(conn: Connection, org_id: int) -> RuleSet:
    body = org_body(conn, org_id)
    return load_default_ruleset() if body is None else RuleSet.parse(json.loads(body), trusted=True)


def set_org_rules(conn: Connection, org_id: int, data: Any, now_ms: int) -> RuleSet:
    """Validate (every regex compiled and timed) and store; raises ``RuleError``."""
    rules = RuleSet.parse(data)
    body = json.dumps(rules.to_data(), sort_keys=True)
    if org_body(conn, org_id) is None:
        conn.execute(category_rules.insert().values(org_id=org_id, body=body, updated_ms=now_ms))
    else:
        conn.execute(
            update(category_rules)
            .where(category_rules.c.org_id == org_id)
            .values(body=body, updated_ms=now_ms)
        )
    return rules


def team_overrides(conn: Connection, org_id: int, team_id: int) -> TeamOverrides:
    people_store.check_team(conn, org_id, team_id)
    body = conn.execute(
        select(teams.c.category_overrides).where(teams.c.id == team_id)
    ).scalar_one()
    return TeamOverrides() if body is None else TeamOverrides.parse(json.loads(body), trusted=True)


def set_team_overrides(conn: Connection, org_id: int, team_id: int, data: Any) -> TeamOverrides:
    """Validate against the organization's current rules (strictly: every
    replaced or disabled path must exist) and store; raises ``RuleError``."""
    people_store.check_team(conn, org_id, team_id)
    overrides = TeamOverrides.parse(data)
    merge(org_rules(conn, org_id), overrides, strict=True)
    body = json.dumps(overrides.model_dump(mode="json"), sort_keys=True) if overrides else None
    conn.execute(update(teams).where(teams.c.id == team_id).values(category_overrides=body))
    return overrides


def default_rules_text() -> str:
    """The shipped defaults, as TOML (for `worklens categories show --defaults`)."""
    return default_ruleset_text()
