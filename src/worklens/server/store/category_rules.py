"""Where category rules live: the organization's rule set and its teams'
overrides, stored as validated JSON. Classification itself is the pure
``worklens.categories`` package; nothing here rewrites events, so a change of
rules applies to all stored history at the next report."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from typing import Any, TypeVar

from sqlalchemy import Connection, select, update

from worklens.categories import (
    Classifier,
    RuleSet,
    TeamOverrides,
    default_ruleset_text,
    load_default_ruleset,
    merge,
)
from worklens.server.store import people as people_store
from worklens.server.store.schema import category_rules, teams

K = TypeVar("K")


def org_rules(conn: Connection, org_id: int) -> RuleSet:
    body = _org_body(conn, org_id)
    return load_default_ruleset() if body is None else RuleSet.parse(json.loads(body), trusted=True)


def set_org_rules(conn: Connection, org_id: int, data: Any, now_ms: int) -> RuleSet:
    """Validate (every regex compiled and timed) and store; raises ``RuleError``."""
    rules = RuleSet.parse(data)
    body = json.dumps(rules.to_data(), sort_keys=True)
    if _org_body(conn, org_id) is None:
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


def _org_body(conn: Connection, org_id: int) -> str | None:
    body = conn.execute(
        select(category_rules.c.body).where(category_rules.c.org_id == org_id)
    ).scalar()
    return None if body is None else str(body)


class Classifiers:
    """Classifiers for the rule sets in use, built once per distinct rules text
    (organization rules + team overrides) and shared by all reports."""

    def __init__(self, limit: int = 64) -> None:
        self._lock = threading.Lock()
        self._by_text: dict[tuple[str | None, str | None], Classifier] = {}
        self._limit = limit

    def for_devices(
        self, conn: Connection, org_id: int, device_ids: list[int]
    ) -> dict[int, Classifier]:
        return self.for_teams(conn, org_id, people_store.device_teams(conn, device_ids))

    def for_teams(
        self, conn: Connection, org_id: int, team_of: Mapping[K, int | None]
    ) -> dict[K, Classifier]:
        """A classifier for each key (a device, a person...) given its team."""
        org_body = _org_body(conn, org_id)
        bodies: dict[int | None, str | None] = {None: None}
        wanted = sorted({t for t in team_of.values() if t is not None})
        if wanted:
            for team_id, body in conn.execute(
                select(teams.c.id, teams.c.category_overrides).where(teams.c.id.in_(wanted))
            ):
                bodies[team_id] = body
        built = {team: self._get(org_body, body) for team, body in bodies.items()}
        return {key: built[team] for key, team in team_of.items()}

    def _get(self, org_body: str | None, team_body: str | None) -> Classifier:
        key = (org_body, team_body)
        with self._lock:
            found = self._by_text.get(key)
        if found is not None:
            return found
        base = (
            load_default_ruleset()
            if org_body is None
            else RuleSet.parse(json.loads(org_body), trusted=True)
        )
        overrides = (
            None if team_body is None else TeamOverrides.parse(json.loads(team_body), trusted=True)
        )
        classifier = Classifier(merge(base, overrides))
        with self._lock:
            if len(self._by_text) >= self._limit:
                self._by_text.clear()
            self._by_text[key] = classifier
        return classifier


def default_rules_text() -> str:
    """The shipped defaults, as TOML (for `worklens categories show --defaults`)."""
    return default_ruleset_text()
