"""Category rules, teams and people through the API, and reports by category
and productivity class that follow rule changes back through history."""

from __future__ import annotations

import time
from typing import Any

from tests.server.conftest import Server, afk, at, batch, focus
from tests.server.test_ingest_and_report import post, report
from worklens.server.store import orgs

RULES = {
    "categories": [
        {"path": ["Work"], "rule": {"type": "none"}, "productivity": "productive"},
        {"path": ["Work", "Programming"], "rule": {"regex": "^code$", "keys": ["app"]}},
        {
            "path": ["Work", "Programming", "Python"],
            "rule": {"regex": r"\.py\b", "keys": ["title"]},
        },
        {
            "path": ["Media", "Video"],
            "rule": {"regex": "YouTube", "keys": ["title"]},
            "productivity": "unproductive",
            "color": "#ff0000",
        },
    ]
}


def api(server: Server, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token or server.admin_token}"}
    return server.client.request(method, path, json=body, headers=headers)


def history(server: Server) -> tuple[int, str]:
    device, token = server.enroll()
    post(
        server,
        token,
        batch(
            afk(at(0), 3600, "active"),
            focus(at(0), 600, "code", "main.py - Code"),
            focus(at(10), 300, "code", "README.md - Code"),
            focus(at(15), 900, "chromium", "Cats - YouTube"),
            focus(at(30), 1800, "chromium", "Docs"),
        ),
    )
    return device, token


def test_default_rules_are_served_and_bad_rules_refused_without_change(server: Server) -> None:
    r = api(server, "GET", "/api/v1/categories")
    assert r.status_code == 200
    before = r.json()
    assert before["version"] and any(c["path"][0] == "Work" for c in before["categories"])

    bad = {"categories": [{"path": ["Work", "X"], "rule": {"regex": "(unclosed"}}]}
    r = api(server, "PUT", "/api/v1/categories", bad)
    assert r.status_code == 422 and "Work > X" in r.json()["error"]
    slow = {"categories": [{"path": ["Work", "Slow"], "rule": {"regex": "(a+)+$"}}]}
    r = api(server, "PUT", "/api/v1/categories", slow)
    assert r.status_code == 422 and "too slow" in r.json()["error"]
    r = server.client.put(
        "/api/v1/categories",
        content=b"{not json",
        headers={**server.admin(), "Content-Type": "application/json"},
    )
    assert r.status_code == 400
    assert api(server, "GET", "/api/v1/categories").json() == before


def test_reports_by_category_and_productivity_follow_the_rules_back_in_time(
    server: Server,
) -> None:
    history(server)
    default = report(server, "category")
    assert default["Work > Programming > Editors"] == 900.0  # shipped rule for "code"
    assert api(server, "PUT", "/api/v1/categories", RULES).status_code == 200

    # The same stored events, classified by the new rules.
    assert report(server, "category") == {
        "Work > Programming > Python": 600.0,
        "Work > Programming": 300.0,
        "Media > Video": 900.0,
        "Uncategorized": 1800.0,
    }
    assert report(server, "category", depth=1) == {
        "Work": 900.0,
        "Media": 900.0,
        "Uncategorized": 1800.0,
    }
    assert report(server, "productivity") == {
        "productive": 900.0,
        "unproductive": 900.0,
        "neutral": 1800.0,
    }
    r = server.client.get(
        "/api/v1/reports/time",
        params={
            "group_by": "app",
            "depth": 2,
            "start": at(0).isoformat(),
            "end": at(60).isoformat(),
        },
        headers=server.admin(),
    )
    assert r.status_code == 400 and "depth" in r.json()["error"]


def test_team_overrides_apply_to_the_devices_of_the_teams_people(server: Server) -> None:
    assert api(server, "PUT", "/api/v1/categories", RULES).status_code == 200
    device, _ = history(server)
    other, _ = history(server)
    team = api(server, "POST", "/api/v1/teams", {"name": "Research"}).json()["id"]
    assert api(server, "POST", "/api/v1/teams", {"name": "Research"}).status_code == 409
    person = api(server, "POST", "/api/v1/people", {"name": "Ada", "team_id": team}).json()["id"]
    assert (
        api(server, "PUT", f"/api/v1/devices/{device}/person", {"person_id": person}).status_code
        == 204
    )
    people = api(server, "GET", "/api/v1/people").json()
    assert people == [
        {"id": person, "name": "Ada", "email": None, "team_id": team, "devices": [device]}
    ]

    # Research watches talks on YouTube: for them it is work.
    overrides = {
        "replace": [
            {
                "path": ["Media", "Video"],
                "rule": {"regex": "YouTube", "keys": ["title"]},
                "productivity": "productive",
            }
        ]
    }
    bad = {"disable": [["No", "Such"]]}
    r = api(server, "PUT", f"/api/v1/teams/{team}/categories", bad)
    assert r.status_code == 422 and "No > Such" in r.json()["error"]
    assert api(server, "PUT", f"/api/v1/teams/{team}/categories", overrides).status_code == 200
    assert api(server, "GET", f"/api/v1/teams/{team}/categories").json()["replace"][0]["path"] == [
        "Media",
        "Video",
    ]
    assert report(server, "productivity", device=device)["productive"] == 1800.0
    assert report(server, "productivity", device=other)["productive"] == 900.0


def test_only_admins_change_rules_and_organizations_stay_apart(server: Server) -> None:
    with server.services.db.write() as conn:
        acme = orgs.get_org(conn, "acme")
        viewer = orgs.create_token(conn, acme, "viewer", int(time.time() * 1000))
    assert api(server, "GET", "/api/v1/categories", token=viewer).status_code == 200
    assert api(server, "PUT", "/api/v1/categories", RULES, token=viewer).status_code == 403
    assert api(server, "POST", "/api/v1/teams", {"name": "X"}, token=viewer).status_code == 403

    device, _ = history(server)
    team = api(server, "POST", "/api/v1/teams", {"name": "Ops"}).json()["id"]
    _, other_admin = server.new_org("globex")
    assert api(server, "PUT", "/api/v1/categories", RULES, token=other_admin).status_code == 200
    # globex's rules do not touch acme's reports, and acme's objects are not globex's.
    acme_report = report(server, "category")
    assert "Work > Programming > Editors" in acme_report  # still the shipped rules
    assert "Work > Programming > Python" not in acme_report
    assert (
        api(server, "GET", f"/api/v1/teams/{team}/categories", token=other_admin).status_code == 404
    )
    person = api(server, "POST", "/api/v1/people", {"name": "Bob"}, token=other_admin).json()["id"]
    r = api(
        server, "PUT", f"/api/v1/devices/{device}/person", {"person_id": person}, token=other_admin
    )
    assert r.status_code == 404
    r = api(server, "PUT", f"/api/v1/devices/{device}/person", {"person_id": person})
    assert r.status_code == 404  # acme's device, globex's person
    assert api(server, "GET", "/api/v1/teams", token=other_admin).json() == []
