"""The dashboard's report pages over HTTP: people, a person's day, a device
(inventory, host series for the charts, timeline, admin actions), teams and
their report, settings. Who sees what (roles, other organizations: 404),
what empty pages say, and that data is always shown as text.
Runs on SQLite and PostgreSQL (the ``server`` fixture)."""

from __future__ import annotations

import html
import re
from datetime import timedelta
from typing import Any

import httpx
import pytest

from tests.server.conftest import T0, Server, afk, at, batch, ev, focus
from tests.server.test_ingest_and_report import post
from tests.server.test_users_and_access import Browser, World, add_user, world
from worklens.server.api.host import MAX_POINTS
from worklens.server.store import orgs
from worklens.server.store import people as people_store
from worklens.server.web import dash

DAY = T0.date().isoformat()  # 2026-11-02; the organization's zone is UTC
XSS_TITLE = "<img src=x onerror=alert(1)>"
XSS_APP = "<script>alert(1)</script>"
EN = "\u2013"  # the dash between two times


def browser(server: Server, login: str, role: str, **kwargs: Any) -> Browser:
    add_user(server, login, role, **kwargs)
    return Browser(server).logged_in(login)


def ok(r: httpx.Response) -> str:
    assert r.status_code == 200, (r.status_code, r.text[:500])
    assert r.headers["content-type"].startswith("text/html")
    return r.text


def pages_of(w: World) -> dict[str, str]:
    return {
        "person": f"/people/{w.ada}?date={DAY}",
        "device": f"/devices/{w.ada_pc}?date={DAY}",
        "team": f"/teams/{w.red}/report?start={DAY}&end={DAY}",
        "team-categories": f"/teams/{w.red}/report?start={DAY}&end={DAY}&by=category",
    }


# --- sessions -------------------------------------------------------------------------


def test_pages_send_visitors_without_a_session_to_the_login(server: Server) -> None:
    w = world(server)
    for path in (*pages_of(w).values(), "/people", "/teams", "/settings"):
        r = server.client.get(path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/login", path
    # The JSON endpoint of the charts answers like the rest of the API.
    assert server.client.get(f"/api/v1/devices/{w.ada_pc}/host").status_code == 401


# --- the pages, as an admin -----------------------------------------------------------------


def test_person_page_shows_the_day_across_devices_with_live_badges(server: Server) -> None:
    w = world(server)
    # A second device of Ada's: her time adds up across both.
    second, token = server.enroll(hostname="ada-laptop-zq")
    post(server, token, batch(afk(at(30), 1800, "active"), focus(at(30), 1800, "Code", "x.py")))
    post(server, token, batch(afk(at(60), 600, "afk")))
    with server.services.db.write() as conn:
        people_store.assign_device(conn, orgs.get_org(conn, "acme").id, second, w.ada)
    web = browser(server, "boss@acme.example", "admin")
    page = ok(web.client.get(f"/people/{w.ada}?date={DAY}"))
    assert 'hx-ext="ws"' in page and 'ws-connect="/live/ws?parts=' in page
    for device in (w.ada_pc, second):
        assert f'id="device-now-{device}"' in page  # the live socket swaps these by id
        assert f'href="/devices/{device}"' in page
    assert "ada-laptop-zq" in page and "ada-pc-zq" in page
    # Times per app across both devices, and per title and category.
    assert re.search(r"<td>adaapp-zq</td><td class=\"num\"[^>]*>10 min</td>", page)
    assert re.search(r"<td>Code</td><td class=\"num\"[^>]*>30 min</td>", page)
    assert "adaapp-zq title" in page and "x.py" in page
    assert "Work &gt; Programming &gt; Editors" in page
    assert "Active 40 min in total." in page
    # Timelines: active bars per device, and the idle ten minutes of the laptop.
    assert page.count('class="tl-bar"') == 2
    assert page.count('class="tl-bar idle"') == 1
    assert f'title="09:30{EN}10:00 · Code — x.py"' in page
    assert f'title="09:00{EN}09:10 · adaapp-zq — adaapp-zq title"' in page
    assert f'title="idle 10:00{EN}10:10"' in page
    # Another day: nothing recorded, and the page says what to do.
    empty = ok(web.client.get(f"/people/{w.ada}?date=2026-10-01"))
    assert 'id="report-empty"' in empty and "check that the agents" in empty
    assert "Nothing recorded on this day" in empty
    # A bad date is a clear 400.
    r = web.client.get(f"/people/{w.ada}?date=yesterday")
    assert r.status_code == 400 and "2026-11-02" in r.text


def test_person_without_devices_and_org_without_people_say_what_to_do(server: Server) -> None:
    web = browser(server, "boss@acme.example", "admin")
    assert 'id="people-empty"' in ok(web.client.get("/people"))
    assert "worklens person create" in ok(web.client.get("/people"))
    assert 'id="teams-empty"' in ok(web.client.get("/teams"))
    h = server.admin()
    team = server.client.post("/api/v1/teams", json={"name": "Empty"}, headers=h).json()["id"]
    page = ok(web.client.get(f"/teams/{team}/report"))
    assert 'id="team-empty"' in page and "worklens person create" in page
    person = server.client.post(
        "/api/v1/people", json={"name": "Newbie", "team_id": team}, headers=h
    ).json()["id"]
    page = ok(web.client.get(f"/people/{person}"))
    assert 'id="devices-empty"' in page and f"worklens person assign {person} DEVICE" in page
    page = ok(web.client.get(f"/teams/{team}/report"))
    assert 'id="report-empty"' in page and "pick another range" in page
    assert f"worklens person assign {person} DEVICE" in page
    people_list = ok(web.client.get("/people"))
    assert "Newbie" in people_list and "none assigned" in people_list


def test_device_page_shows_inventory_charts_timeline_and_admin_actions(server: Server) -> None:
    w = world(server)
    web = browser(server, "boss@acme.example", "admin")
    page = ok(web.client.get(f"/devices/{w.ada_pc}?date={DAY}"))
    assert "<dt>Host name</dt><dd>ada-pc-zq</dd>" in page
    assert "<dt>OS user</dt><dd>alice</dd>" in page
    assert 'data-enrolled="yes"' in page and 'data-blocked="no"' in page
    assert "<td>hardware_uuid</td>" in page  # identity fields as a table
    assert f'data-url="/api/v1/devices/{w.ada_pc}/host"' in page
    assert "/static/vendor/uPlot.iife.min.js" in page and 'data-chart="cpu"' in page
    assert f'id="device-now-{w.ada_pc}"' in page and 'ws-connect="/live/ws?parts=' in page
    assert page.count('class="tl-bar"') == 1
    # Management: every action through the API, with the session's CSRF token.
    csrf = web.csrf
    headers = re.search(r"hx-headers='([^']*)'", page)
    assert headers is not None and html.unescape(headers[1]) == f'{{"X-CSRF-Token": "{csrf}"}}'
    for action in ("block", "revoke", "rotate"):
        assert f'hx-post="/api/v1/devices/{w.ada_pc}/{action}"' in page
    assert f'hx-delete="/api/v1/devices/{w.ada_pc}"' in page and 'hx-ext="json-body"' in page
    assert "<code>ada-pc-zq</code> to confirm" in page
    # What the block button sends works, and the page then offers to unblock.
    assert web.send("POST", f"/api/v1/devices/{w.ada_pc}/block").status_code == 204
    page = ok(web.client.get(f"/devices/{w.ada_pc}"))
    assert 'data-blocked="yes"' in page and f'/api/v1/devices/{w.ada_pc}/unblock"' in page
    # Without the token the same request is refused.
    r = web.client.post(f"/api/v1/devices/{w.ada_pc}/unblock")
    assert r.status_code == 403 and "CSRF" in r.text
    # Another day of the device: the timeline says what to do.
    assert "Nothing recorded on this day" in ok(web.client.get(f"/devices/{w.ada_pc}"))
    # Rotate: the API the button calls answers, and says when it was asked.
    r = web.send("POST", f"/api/v1/devices/{w.ada_pc}/rotate")
    assert r.status_code == 202 and r.json()["already_pending"] is False
    # Delete: the form's body ({"confirm": host name}, as json-body sends it).
    url = f"/api/v1/devices/{w.ada_pc}"
    r = web.send("DELETE", url, json={"confirm": "ada-pc"})
    assert r.status_code == 400 and "nothing was deleted" in r.text
    ok(web.client.get(f"/devices/{w.ada_pc}"))
    assert web.send("DELETE", url, json={"confirm": "ada-pc-zq"}).status_code == 200
    assert web.client.get(f"/devices/{w.ada_pc}").status_code == 404
    assert 'id="devices-empty"' in ok(web.client.get(f"/people/{w.ada}"))


def test_host_series_for_the_charts_is_downsampled_and_scoped(server: Server) -> None:
    w = world(server)
    samples = [
        ev(
            "host",
            T0 + timedelta(seconds=10 * i),
            0,
            cpu_percent=float(i % 100),
            mem_percent=50.0,
            disk_percent=70.0,
            load1=1.0,
            load5=0.5,
            load15=0.25,
        )
        for i in range(2500)
    ]
    device, token = server.enroll(hostname="busy-host")
    for start in range(0, len(samples), 500):
        post(server, token, batch(*samples[start : start + 500]))
    web = browser(server, "boss@acme.example", "admin")
    url = f"/api/v1/devices/{device}/host"
    span = {"start": T0.isoformat(), "end": (T0 + timedelta(hours=2)).isoformat()}
    body = web.client.get(url, params=span).json()
    assert body["step_s"] is None and len(body["t"]) == 720  # raw samples
    assert body["t"][0] == T0.timestamp() and body["cpu_percent"][:3] == [0.0, 1.0, 2.0]
    assert body["swap_percent"][0] is None and body["load15"][0] == 0.25
    day = {"start": T0.isoformat(), "end": (T0 + timedelta(days=1)).isoformat()}
    body = web.client.get(url, params=day).json()
    assert 0 < len(body["t"]) <= MAX_POINTS and body["step_s"] == 87.0
    assert all(len(body[k]) == len(body["t"]) for k in ("cpu_percent", "load1", "mem_percent"))
    assert body["mem_percent"] == [50.0] * len(body["t"])
    assert body["t"] == sorted(body["t"]) and body["t"][0] == T0.timestamp()
    # Averages: the mean CPU over all points is the mean of the samples.
    assert abs(sum(body["cpu_percent"]) / len(body["t"]) - 49.5) < 2
    empty = web.client.get(url, params={"start": "2026-10-01T00:00:00Z", "end": T0.isoformat()})
    assert empty.status_code == 200 and empty.json()["t"] == []
    bad = web.client.get(url, params={"start": T0.isoformat(), "end": T0.isoformat()})
    assert bad.status_code == 400
    assert web.client.get(url).status_code == 200  # default: the last 24 hours
    # Who may not see the device gets 404: a manager of another team, another org.
    manager = browser(server, "red@acme.example", "manager", team_ids=(w.red,))
    assert manager.client.get(url, params=span).status_code == 404
    assert manager.client.get(f"/api/v1/devices/{w.ada_pc}/host").status_code == 200
    _, other = server.new_org("globex")
    r = server.client.get(url, params=span, headers={"Authorization": f"Bearer {other}"})
    assert r.status_code == 404


def test_team_report_shows_each_person_per_app_readably(server: Server) -> None:
    h = server.admin()
    team = server.client.post("/api/v1/teams", json={"name": "Lab"}, headers=h).json()["id"]
    hours = 3600
    spec = [
        ("Yara", [("chromium", "Cats - YouTube — Chromium", 6 * hours)]),
        ("Zed", [("code", "main.py - VS Code", 10 * hours), ("chromium", "Docs", 1 * hours)]),
    ]
    ids = {}
    for name, uses in spec:
        person = server.client.post(
            "/api/v1/people", json={"name": name, "team_id": team}, headers=h
        ).json()["id"]
        ids[name] = person
        device, token = server.enroll(hostname=f"{name.lower()}-pc")
        start = T0 - timedelta(hours=8)
        events = []
        for app, title, seconds in uses:
            events.append(focus(start, seconds, app, title))
            start += timedelta(seconds=seconds)
        total = sum(s for _, _, s in uses)
        post(server, token, batch(afk(T0 - timedelta(hours=8), total, "active"), *events))
        r = server.client.put(
            f"/api/v1/devices/{device}/person", json={"person_id": person}, headers=h
        )
        assert r.status_code == 204
    web = browser(server, "boss@acme.example", "admin")
    page = ok(web.client.get(f"/teams/{team}/report?start={DAY}&end={DAY}"))
    rows = re.findall(r'<tr data-person="(\d+)" data-seconds="([\d.]+)">', page)
    # The busiest first; totals in seconds for scripts, and readable for people.
    assert rows == [(str(ids["Zed"]), "39600.0"), (str(ids["Yara"]), "21600.0")]
    assert '<td class="num total">11 h 00 min</td>' in page
    assert '<td class="num total">6 h 00 min</td>' in page
    assert '<span class="key">chromium</span> <span class="num">6 h 00 min</span>' in page  # Yara
    assert '<span class="key">code</span> <span class="num">10 h 00 min</span>' in page
    # One scale for all bars: Zed's fills the width, Yara's is 6/11 of it.
    assert re.search(r'style="width:90.909%;background:#1f77b4"[^>]*data-key="code"', page)
    assert re.search(r'style="width:54.545%;background:#ff7f0e"[^>]*data-key="chromium"', page)
    assert 'id="legend"' in page
    # The same days by category.
    page = ok(web.client.get(f"/teams/{team}/report?start={DAY}&end={DAY}&by=category"))
    assert "Media &gt; Video" in page and "Work &gt; Programming" in page
    # A range of days holds the same; a range without data says what to do.
    page = ok(web.client.get(f"/teams/{team}/report?start=2026-10-30&end={DAY}"))
    assert '<td class="num total">11 h 00 min</td>' in page
    page = ok(web.client.get(f"/teams/{team}/report?start=2026-10-01&end=2026-10-02"))
    assert 'id="report-empty"' in page
    teams = ok(web.client.get("/teams"))
    assert f'href="/teams/{team}/report"' in teams and "Lab" in teams
    # Bad ranges are clear 400s.
    assert web.client.get(f"/teams/{team}/report?start={DAY}&end=2026-11-01").status_code == 400
    assert web.client.get(f"/teams/{team}/report?start=2020-01-01&end={DAY}").status_code == 400


def test_settings_page_for_admins_shows_agent_form_and_rules(server: Server) -> None:
    web = browser(server, "boss@acme.example", "admin")
    page = ok(web.client.get("/settings"))
    assert 'hx-put="/api/v1/settings/agent"' in page and 'name="idle_threshold_s"' in page
    assert "Work &gt; Programming &gt; Editors" in page  # the default rules, read-only
    assert "time zone <b>UTC</b>" in page
    assert "Never set." in page and 'placeholder="agent\'s own (default 300)"' in page
    # What the form sends (json-body: numbers, empty fields as null) is saved,
    # and the page shows it.
    r = web.send(
        "PUT", "/api/v1/settings/agent", json={"idle_threshold_s": 120, "poll_interval_s": None}
    )
    assert r.status_code == 200, r.text
    page = ok(web.client.get("/settings"))
    assert re.search(r'name="idle_threshold_s"[^>]*\s+value="120"', page)
    assert re.search(r'name="poll_interval_s"[^>]*\s+value=""', page)
    assert "Version 1, changed" in page


# --- roles and organizations ----------------------------------------------------------------


def test_roles_see_only_their_people_devices_and_teams(server: Server) -> None:
    w = world(server)
    viewer = browser(server, "view@acme.example", "viewer")
    manager = browser(server, "red@acme.example", "manager", team_ids=(w.red,))
    own = browser(server, "ada@acme.example", "self", person=w.ada)
    admin = browser(server, "boss@acme.example", "admin")
    red = pages_of(w)
    bob = {
        "person": f"/people/{w.bob}",
        "device": f"/devices/{w.bob_pc}",
        "team": f"/teams/{w.blue}/report",
    }
    kiosk = f"/devices/{w.kiosk}"
    for who in (admin, viewer):
        for path in (*red.values(), *bob.values(), kiosk):
            ok(who.client.get(path))
    for path in red.values():
        ok(manager.client.get(path))
    for path in (*bob.values(), kiosk):
        assert manager.client.get(path).status_code == 404, path
    ok(own.client.get(red["person"]))
    ok(own.client.get(red["device"]))
    for path in (red["team"], *bob.values(), kiosk):
        assert own.client.get(path).status_code == 404, path
    # Lists show what each sees.
    assert "Bob zq" not in ok(manager.client.get("/people"))
    assert "Ada zq" in ok(manager.client.get("/people"))
    assert "Blue zq" not in ok(manager.client.get("/teams"))
    assert "Red zq" in ok(manager.client.get("/teams"))
    assert "Bob zq" not in ok(own.client.get("/people"))
    assert 'id="teams-empty"' in ok(own.client.get("/teams"))
    # Management actions and settings are for admins only.
    for who in (viewer, manager, own):
        page = ok(who.client.get(red["device"]))
        assert 'id="manage"' not in page and "hx-post" not in page
        assert who.client.get("/settings").status_code == 403
    assert 'id="manage"' in ok(admin.client.get(red["device"]))
    # Nav links are there for everyone; settings for admins.
    assert 'href="/settings"' in ok(admin.client.get("/people"))
    assert 'href="/settings"' not in ok(viewer.client.get("/people"))


def test_another_organization_gets_404_for_every_page_of_ours(server: Server) -> None:
    w = world(server)
    server.new_org("globex")
    add_user(server, "boss@globex.example", "admin", org="globex")
    other = Browser(server).logged_in("boss@globex.example")
    for path in (*pages_of(w).values(), f"/devices/{w.kiosk}", f"/people/{w.bob}"):
        r = other.client.get(path)
        assert r.status_code == 404 and "zq" not in r.text, path
    for path in ("/people", "/teams", "/settings"):
        # Without the page's random secrets (CSRF tokens), which may spell "zq".
        page = re.sub(r"[A-Za-z0-9_-]{32,}", "", ok(other.client.get(path)))
        assert "zq" not in page, path
    assert other.client.get(f"/api/v1/devices/{w.ada_pc}/host").status_code == 404


# --- escaping ------------------------------------------------------------------------------


@pytest.mark.parametrize("by_category", [False, True])
def test_titles_and_apps_are_shown_as_text_on_every_page(server: Server, by_category: bool) -> None:
    w = world(server)
    device, token = server.enroll(hostname="evil-<b>host</b>")
    post(
        server,
        token,
        batch(afk(at(20), 600, "active"), focus(at(20), 600, XSS_APP, XSS_TITLE)),
    )
    with server.services.db.write() as conn:
        people_store.assign_device(conn, orgs.get_org(conn, "acme").id, device, w.ada)
    web = browser(server, "boss@acme.example", "admin")
    paths = [
        "/",
        "/people",
        f"/people/{w.ada}?date={DAY}",
        f"/devices/{device}?date={DAY}",
        f"/teams/{w.red}/report?start={DAY}&end={DAY}" + ("&by=category" if by_category else ""),
    ]
    for path in paths:
        page = ok(web.client.get(path))
        for raw in (XSS_APP, XSS_TITLE, "<b>host</b>"):
            assert raw not in page, (path, raw)
        assert re.search(r"<script>alert|<img src=x", page) is None, path
    # The names are there, as text.
    person = ok(web.client.get(f"/people/{w.ada}?date={DAY}"))
    assert html.escape(XSS_APP, quote=False) in person
    assert html.escape(XSS_TITLE, quote=False) in person
    device_page = ok(web.client.get(f"/devices/{device}?date={DAY}"))
    assert "evil-&lt;b&gt;host&lt;/b&gt;" in device_page


def test_durations_read_like_people_write_them() -> None:
    assert dash.fmt_duration(0) == "0 s"
    assert dash.fmt_duration(59.4) == "59 s"
    assert dash.fmt_duration(600) == "10 min"
    assert dash.fmt_duration(6 * 3600) == "6 h 00 min"
    assert dash.fmt_duration(10 * 3600 + 5 * 60 + 20) == "10 h 05 min"
    assert [dash.fmt_number(v) for v in (None, 120.0, 0.05, 86400)] == ["", "120", "0.05", "86400"]
