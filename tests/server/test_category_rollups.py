"""Category rows: classified when rolled up, used only with the rules they were
made with, rebuilt in the background after a change of rules.

Reports must be right at every moment: before the rebuild (classifying the
payload rows of the periods whose category rows are out of date), after it
(reading category rows only), and for each subject with its own team's rules.
Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import msgpack
from sqlalchemy import select

from tests.server.conftest import T0, Server, afk, at, batch, focus
from tests.server.test_categories_and_people import RULES, api
from tests.server.test_ingest_and_report import post
from worklens.server.store.rollups import (
    DEVICE,
    DIM_CATEGORY,
    PERSON,
    RES_DAY,
    RES_HOUR,
    RES_STATE,
    Kind,
    rules_version,
)


def category_report(server: Server, group_by: str = "category", **params: Any) -> dict[str, float]:
    q = {
        "group_by": group_by,
        # Whole days and hours and a ragged edge: day rows, hour rows and raw events.
        "start": (T0 - timedelta(days=1)).isoformat(),
        "end": (T0 + timedelta(days=1, minutes=7)).isoformat(),
        **{k: str(v) for k, v in params.items()},
    }
    r = server.client.get("/api/v1/reports/time", params=q, headers=server.admin())
    assert r.status_code == 200, r.text
    return {row["key"]: row["seconds"] for row in r.json()["rows"]}


def versions(server: Server, kind: Kind, subject_id: int) -> dict[int, set[int]]:
    """The rules versions of a subject's category rows, per resolution."""
    table = kind.rollups
    out: dict[int, set[int]] = {}
    with server.services.db.read() as conn:
        for res, body in conn.execute(
            select(table.c.res, table.c.body).where(
                kind.subject == subject_id, table.c.dim == DIM_CATEGORY
            )
        ):
            value = msgpack.unpackb(body)
            out.setdefault(res, set()).add(value if res == RES_STATE else value[2])
    return out


def current(server: Server, kind: Kind, subject_id: int) -> int:
    with server.services.db.read() as conn:
        return rules_version(server.services.rollups.rules_of(conn, kind, subject_id))


def history(server: Server) -> tuple[int, str]:
    device, token = server.enroll()
    post(
        server,
        token,
        batch(
            afk(at(0), 3 * 3600, "active"),
            focus(at(0), 3600, "code", "main.py"),
            focus(at(60), 1800, "chromium", "Funny cats - YouTube"),
            focus(at(90), 1800, "code", "notes.txt"),
        ),
    )
    return device, token


def test_category_rows_follow_a_change_of_rules_at_once_and_are_rebuilt(server: Server) -> None:
    device, _ = history(server)
    assert server.services.rollups.rebuild_categories() >= 0  # settle the initial state
    before = category_report(server, device=device)
    assert before == {"Work > Programming > Editors": 5400.0, "Media > Video": 1800.0}
    old = current(server, DEVICE, device)
    assert versions(server, DEVICE, device) == {RES_HOUR: {old}, RES_DAY: {old}, RES_STATE: {old}}

    assert api(server, "PUT", "/api/v1/categories", RULES).status_code == 200
    new = current(server, DEVICE, device)
    assert new != old
    # Not rebuilt yet: every category row is out of date, and still the report
    # follows the new rules, from the payload rows.
    assert versions(server, DEVICE, device)[RES_HOUR] == {old}
    want = {
        "Work > Programming > Python": 3600.0,
        "Work > Programming": 1800.0,
        "Media > Video": 1800.0,
    }
    assert category_report(server, device=device) == want
    assert category_report(server, "productivity", device=device) == {
        "productive": 5400.0,
        "unproductive": 1800.0,
    }

    assert server.services.rollups.rebuild_categories() > 0
    assert versions(server, DEVICE, device) == {RES_HOUR: {new}, RES_DAY: {new}, RES_STATE: {new}}
    assert category_report(server, device=device) == want
    assert server.services.rollups.rebuild_categories() == 0  # nothing left to do


def test_new_events_after_a_change_get_rows_of_the_new_rules(server: Server) -> None:
    device, token = history(server)
    category_report(server, device=device)  # rolls up with the default rules
    assert api(server, "PUT", "/api/v1/categories", RULES).status_code == 200
    post(server, token, batch(focus(at(150), 600, "code", "late.py")))
    got = category_report(server, device=device)
    assert got["Work > Programming > Python"] == 3600.0 + 600.0
    # The refresh wrote the touched hour with the new rules; the others wait
    # for the rebuild, and both kinds add up in the one report.
    new = current(server, DEVICE, device)
    assert new in versions(server, DEVICE, device)[RES_HOUR]
    assert len(versions(server, DEVICE, device)[RES_HOUR]) == 2


def test_each_person_gets_their_teams_rules(server: Server) -> None:
    assert api(server, "PUT", "/api/v1/categories", RULES).status_code == 200
    team = api(server, "POST", "/api/v1/teams", {"name": "Video team"}).json()["id"]
    overrides = {
        "replace": [
            {
                "path": ["Media", "Video"],
                "rule": {"regex": "YouTube", "keys": ["title"]},
                "productivity": "productive",
            }
        ]
    }
    r = api(server, "PUT", f"/api/v1/teams/{team}/categories", overrides)
    assert r.status_code == 200, r.text
    devices = []
    for name, team_id in (("Ada", team), ("Bob", None)):
        device, _ = history(server)
        body = {"name": name, **({"team_id": team_id} if team_id else {})}
        person = api(server, "POST", "/api/v1/people", body).json()["id"]
        r = api(server, "PUT", f"/api/v1/devices/{device}/person", {"person_id": person})
        assert r.status_code == 204, r.text
        devices.append((device, person))
    server.services.rollups.rebuild_categories()
    (_, ada), (_, bob) = devices
    # Productivity is looked up when reporting, from the category: a change of
    # productivity alone leaves every category row valid.
    assert current(server, PERSON, ada) == current(server, PERSON, bob)
    assert category_report(server, "productivity", person=ada) == {"productive": 7200.0}
    assert category_report(server, "productivity", person=bob) == {
        "productive": 5400.0,
        "unproductive": 1800.0,
    }
    # The team's rules change what matches: only Ada's rows go out of date.
    overrides["replace"][0]["productivity"] = "neutral"
    overrides["replace"][0]["rule"] = {"regex": "cats", "keys": ["title"]}
    assert api(server, "PUT", f"/api/v1/teams/{team}/categories", overrides).status_code == 200
    assert category_report(server, "productivity", person=ada) == {
        "productive": 5400.0,
        "neutral": 1800.0,
    }
    assert current(server, PERSON, ada) != current(server, PERSON, bob)
    assert {current(server, PERSON, bob)} == versions(server, PERSON, bob)[RES_HOUR]
    assert current(server, PERSON, ada) not in versions(server, PERSON, ada)[RES_HOUR]
    server.services.rollups.rebuild_categories()
    assert {current(server, PERSON, ada)} == versions(server, PERSON, ada)[RES_HOUR]
    assert category_report(server, "productivity", person=ada) == {
        "productive": 5400.0,
        "neutral": 1800.0,
    }
