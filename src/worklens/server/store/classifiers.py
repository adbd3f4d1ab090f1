"""Classifiers for the category rules in force, shared by reports and rollups.

Built once per distinct rules text (an organization's rules and a team's
overrides) and kept; the rules themselves are stored by ``category_rules``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from typing import TypeVar

from sqlalchemy import Connection, select

from worklens.categories import Classifier, RuleSet, TeamOverrides, load_default_ruleset, merge
from worklens.server.store.schema import category_rules, teams

K = TypeVar("K")


def org_body(conn: Connection, org_id: int) -> str | None:
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

    def for_teams(
        self, conn: Connection, org_id: int, team_of: Mapping[K, int | None]
    ) -> dict[K, Classifier]:
        """A classifier for each key (a device, a person...) given its team."""
        org_text = org_body(conn, org_id)
        bodies: dict[int | None, str | None] = {None: None}
        wanted = sorted({t for t in team_of.values() if t is not None})
        if wanted:
            for team_id, body in conn.execute(
                select(teams.c.id, teams.c.category_overrides).where(teams.c.id.in_(wanted))
            ):
                bodies[team_id] = body
        built = {team: self._get(org_text, body) for team, body in bodies.items()}
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
