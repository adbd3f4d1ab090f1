"""Reports by person and team: a person's devices merged, time when two of
them were active at once counted once; assignments applied to history."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from tests.server.conftest import T0, Server, afk, at, batch, focus
from tests.server.test_ingest_and_report import post


def api(server: Server, method: str, path: str, body: Any = None) -> Any:
    r = server.client.request(method, path, json=body, headers=server.admin())
    assert r.status_code < 300, r.text
    return r.json() if r.content else None


def report(
    server: Server, group_by: str = "app", start: Any = None, end: Any = None, **params: Any
) -> dict[str, float]:
    q = {
        "group_by": group_by,
        "start": (start or T0 - timedelta(days=1)).isoformat(),
        "end": (end or T0 + timedelta(days=1)).isoformat(),
        **{k: str(v) for k, v in params.items()},
    }
    r = server.client.get("/api/v1/reports/time", params=q, headers=server.admin())
    assert r.status_code == 200, r.text
    return {row["key"]: row["seconds"] for row in r.json()["rows"]}


def laptop_and_desktop(server: Server) -> tuple[int, int]:
    """Laptop: code 09:00-10:00. Desktop: chromium 09:30-10:30. Both active."""
    laptop, t1 = server.enroll(hostname="laptop")
    desktop, t2 = server.enroll(hostname="desktop")
    post(server, t1, batch(afk(at(0), 3600, "active"), focus(at(0), 3600, "code", "a.py")))
    post(server, t2, batch(afk(at(30), 3600, "active"), focus(at(30), 3600, "chromium", "docs")))
    return laptop, desktop


def test_a_persons_devices_are_merged_and_overlap_counts_once(server: Server) -> None:
    laptop, desktop = laptop_and_desktop(server)
    assert report(server) == {"code": 3600.0, "chromium": 3600.0}  # two devices, nobody's

    team = api(server, "POST", "/api/v1/teams", {"name": "Dev"})["id"]
    ada = api(server, "POST", "/api/v1/people", {"name": "Ada", "team_id": team})["id"]
    for device in (laptop, desktop):
        api(server, "PUT", f"/api/v1/devices/{device}/person", {"person_id": ada})

    # 09:30-10:00 both were active: it counts once, for the desktop, whose
    # activity started last.
    merged = {"code": 1800.0, "chromium": 3600.0}
    assert report(server) == merged
    assert report(server, person=ada) == merged
    assert report(server, team=team) == merged
    assert report(server, "person") == {f"Ada (#{ada})": 5400.0}
    # Whole hours and whole days come from the person's rollups, edges from raw.
    whole_hours = {"start": at(0), "end": at(120)}
    assert report(server, **whole_hours, person=ada) == merged
    assert report(server, start=at(15), end=at(45), person=ada) == {
        "code": 900.0,
        "chromium": 900.0,
    }
    # By device: each device on its own, overlap and all.
    assert report(server, "device", person=ada) == {
        f"laptop (#{laptop})": 3600.0,
        f"desktop (#{desktop})": 3600.0,
    }
    assert report(server, device=laptop) == {"code": 3600.0}
    r = server.client.get(
        "/api/v1/reports/heatmap",
        params={"start": at(-60).isoformat(), "end": at(180).isoformat(), "person": str(ada)},
        headers=server.admin(),
    )
    hm = r.json()["seconds"]
    assert hm[0][9] == 3600.0 and hm[0][10] == 1800.0  # Monday 09:00-10:30 once
    assert sum(map(sum, hm)) == 5400.0

    # Moving the desktop to Bob changes history at once.
    bob = api(server, "POST", "/api/v1/people", {"name": "Bob"})["id"]
    api(server, "PUT", f"/api/v1/devices/{desktop}/person", {"person_id": bob})
    assert report(server, person=ada) == {"code": 3600.0}
    assert report(server, person=bob) == {"chromium": 3600.0}
    assert report(server, "person") == {f"Ada (#{ada})": 3600.0, f"Bob (#{bob})": 3600.0}
    assert report(server, team=team) == {"code": 3600.0}


def test_late_events_of_one_device_update_the_persons_rollups(server: Server) -> None:
    laptop, t1 = server.enroll(hostname="laptop")
    desktop, t2 = server.enroll(hostname="desktop")
    ada = api(server, "POST", "/api/v1/people", {"name": "Ada"})["id"]
    for device in (laptop, desktop):
        api(server, "PUT", f"/api/v1/devices/{device}/person", {"person_id": ada})
    post(server, t1, batch(afk(at(0), 7200, "active"), focus(at(0), 7200, "code")))
    day = {"start": T0 - timedelta(hours=9), "end": T0 + timedelta(hours=15)}
    assert report(server, **day, person=ada) == {"code": 7200.0}
    # The desktop's events arrive later (it was offline) and overlap 10:00-11:00.
    post(server, t2, batch(afk(at(60), 3600, "active"), focus(at(60), 3600, "mail")))
    assert report(server, **day, person=ada) == {"code": 3600.0, "mail": 3600.0}
    server.services.rollups.refresh()
    assert report(server, **day, person=ada) == {"code": 3600.0, "mail": 3600.0}


def test_a_device_assigned_before_its_hours_were_rolled_up_counts_for_the_person(
    server: Server,
) -> None:
    # No report (hence no refresh) between ingest and assignment: the device's
    # hours are only marked, not rolled up, when the person gets it.
    laptop, desktop = laptop_and_desktop(server)
    ada = api(server, "POST", "/api/v1/people", {"name": "Ada"})["id"]
    api(server, "PUT", f"/api/v1/devices/{laptop}/person", {"person_id": ada})
    assert report(server, person=ada) == {"code": 3600.0}
    # The desktop, nobody's, counts on its own.
    assert report(server, "person") == {f"Ada (#{ada})": 3600.0, f"desktop (#{desktop})": 3600.0}


def test_filters_are_checked(server: Server) -> None:
    laptop, _ = laptop_and_desktop(server)
    q = {"group_by": "app", "start": at(0).isoformat(), "end": at(60).isoformat()}
    h = server.admin()
    r = server.client.get("/api/v1/reports/time", params={**q, "person": "999"}, headers=h)
    assert r.status_code == 404
    r = server.client.get("/api/v1/reports/time", params={**q, "team": "999"}, headers=h)
    assert r.status_code == 404
    r = server.client.get(
        "/api/v1/reports/time", params={**q, "person": "1", "device": str(laptop)}, headers=h
    )
    assert r.status_code == 400 and "one of device, person or team" in r.json()["error"]
    _, other = server.new_org("globex")
    ada = api(server, "POST", "/api/v1/people", {"name": "Ada"})["id"]
    r = server.client.get(
        "/api/v1/reports/time",
        params={**q, "person": str(ada)},
        headers={"Authorization": f"Bearer {other}"},
    )
    assert r.status_code == 404  # acme's person does not exist for globex
