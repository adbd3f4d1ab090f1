"""Dashboard users: passwords, login and its throttle, sessions, CSRF, roles,
tenant isolation through every route, and the audit log. Runs on SQLite and
PostgreSQL (the ``server`` fixture)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI
from fastapi.routing import APIRoute, APIWebSocketRoute
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from starlette.routing import BaseRoute, Mount, Route

from tests.server.conftest import T0, Server, afk, at, batch, focus
from tests.server.test_ingest_and_report import post
from worklens.server.access import Access
from worklens.server.app import create_app
from worklens.server.settings import ServerSettings
from worklens.server.store import orgs, sessions, users
from worklens.server.store import people as people_store
from worklens.server.store.schema import (
    audit_log,
    buckets,
    category_rules,
    device_people,
    devices,
    events,
    login_failures,
    people,
    teams,
    user_teams,
)
from worklens.server.store.schema import orgs as orgs_table
from worklens.server.store.schema import sessions as sessions_table
from worklens.server.store.schema import users as users_table

PASSWORD = "correct horse battery"
DAY = {"start": T0.isoformat(), "end": (T0 + timedelta(days=1)).isoformat()}


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def add_user(
    server: Server,
    login: str,
    role: str,
    *,
    org: str = "acme",
    person: int | None = None,
    team_ids: tuple[int, ...] = (),
    password: str = PASSWORD,
) -> int:
    with server.services.db.write() as conn:
        org_id = orgs.get_org(conn, org).id
        created = users.create_user(
            conn, org_id, login, password, role, now_ms(), person_id=person, team_ids=team_ids
        )
    return created.id


class Browser:
    """One browser: its own cookie jar, logging in through the login form."""

    def __init__(self, server: Server, base_url: str = "http://testserver") -> None:
        self.client = TestClient(server.client.app, base_url=base_url)

    def login(self, login: str, password: str = PASSWORD, org: str = "") -> httpx.Response:
        form = self.client.get("/login")
        assert form.status_code == 200, form.text
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert token is not None
        return self.client.post(
            "/login",
            data={"email": login, "password": password, "org": org, "csrf_token": token[1]},
            follow_redirects=False,
        )

    def logged_in(self, login: str) -> Browser:
        r = self.login(login)
        assert r.status_code == 303, r.text
        return self

    @property
    def csrf(self) -> str:
        token: str = self.client.get("/api/v1/me").json()["csrf_token"]
        return token

    def send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A change with the session's CSRF token, as the dashboard's scripts send it."""
        headers = {"X-CSRF-Token": self.csrf, **kwargs.pop("headers", {})}
        return self.client.request(method, path, headers=headers, **kwargs)


def browser(server: Server, login: str, role: str, **kwargs: Any) -> Browser:
    add_user(server, login, role, **kwargs)
    return Browser(server).logged_in(login)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def token_sender(server: Server, token: str) -> Callable[..., httpx.Response]:
    """Like Browser.send, for a script with an API token (no CSRF token)."""

    def send(method: str, path: str, **kwargs: Any) -> httpx.Response:
        return server.client.request(method, path, headers=bearer(token), **kwargs)

    return send


@dataclass
class World:
    """Team Red (Ada, her laptop), team Blue (Bob, his desktop), and a kiosk
    nobody is assigned to; each device was used for 10 minutes on its own app.
    Every name carries "zq", so a response can be searched for any of it."""

    red: int
    blue: int
    ada: int
    bob: int
    ada_pc: int
    bob_pc: int
    kiosk: int


def world(server: Server) -> World:
    h = server.admin()
    red = server.client.post("/api/v1/teams", json={"name": "Red zq"}, headers=h).json()["id"]
    blue = server.client.post("/api/v1/teams", json={"name": "Blue zq"}, headers=h).json()["id"]
    ids = []
    for name, team in (("Ada zq", red), ("Bob zq", blue)):
        r = server.client.post("/api/v1/people", json={"name": name, "team_id": team}, headers=h)
        ids.append(r.json()["id"])
    ada, bob = ids
    devs = []
    for host, app in (
        ("ada-pc-zq", "adaapp-zq"),
        ("bob-pc-zq", "bobapp-zq"),
        ("kiosk-zq", "kiosk-app-zq"),
    ):
        device, token = server.enroll(hostname=host)
        post(
            server, token, batch(afk(at(0), 600, "active"), focus(at(0), 600, app, f"{app} title"))
        )
        devs.append(device)
    for device, person in ((devs[0], ada), (devs[1], bob)):
        r = server.client.put(
            f"/api/v1/devices/{device}/person", json={"person_id": person}, headers=h
        )
        assert r.status_code == 204
    return World(red, blue, ada, bob, *devs)


def time_report(
    client: TestClient, headers: dict[str, str] | None = None, /, **params: Any
) -> httpx.Response:
    q = {"group_by": "app", **DAY, **{k: str(v) for k, v in params.items()}}
    return client.get("/api/v1/reports/time", params=q, headers=headers or {})


def apps(r: httpx.Response) -> dict[str, float]:
    assert r.status_code == 200, r.text
    return {row["key"]: row["seconds"] for row in r.json()["rows"]}


# --- passwords and login ----------------------------------------------------------


def test_passwords_are_stored_as_argon2id_hashes_only(server: Server) -> None:
    r = server.client.post(
        "/api/v1/users",
        json={"email": "Boss@Acme.example", "password": PASSWORD, "role": "admin", "name": "B"},
        headers=server.admin(),
    )
    assert r.status_code == 201, r.text
    assert r.json()["email"] == "boss@acme.example" and "password" not in str(r.json())
    with server.services.db.read() as conn:
        stored = conn.execute(select(users_table.c.password_hash)).scalar_one()
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    assert PasswordHasher().verify(stored, PASSWORD)
    listed = server.client.get("/api/v1/users", headers=server.admin()).json()
    assert "argon2" not in str(listed) and listed[0]["role"] == "admin"


def test_login_succeeds_with_the_password_and_fails_alike_for_a_wrong_one_or_login(
    server: Server,
) -> None:
    add_user(server, "boss@acme.example", "admin")
    web = Browser(server)
    assert web.client.get("/", follow_redirects=False).headers["location"] == "/login"
    wrong = web.login("boss@acme.example", "not the password")
    unknown = web.login("nobody@acme.example", "not the password")
    for r in (wrong, unknown):
        assert r.status_code == 401 and "Wrong login or password." in r.text
        assert "wl_session" not in r.headers.get("set-cookie", "")
    # Upper case and spaces around the login do not matter.
    r = web.login("  BOSS@acme.example ")
    assert r.status_code == 303 and r.headers["location"] == "/"
    page = web.client.get("/")
    assert page.status_code == 200 and "Devices" in page.text
    me = web.client.get("/api/v1/me").json()
    assert me["role"] == "admin" and me["kind"] == "user" and me["csrf_token"]
    # Logged in, the login page sends the browser on to the dashboard.
    assert web.client.get("/login", follow_redirects=False).status_code == 303


def test_a_login_in_two_organizations_needs_the_organization(server: Server) -> None:
    server.new_org("globex")
    add_user(server, "sam@example.com", "viewer")
    add_user(server, "sam@example.com", "admin", org="globex", password="another password!")
    web = Browser(server)
    assert web.login("sam@example.com").status_code == 401
    assert web.login("sam@example.com", org="acme").status_code == 303
    assert web.client.get("/api/v1/me").json()["role"] == "viewer"


def test_five_failures_lock_the_login_for_15_minutes_with_429(server: Server) -> None:
    add_user(server, "boss@acme.example", "admin")
    add_user(server, "other@acme.example", "viewer")
    web = Browser(server)
    for _ in range(5):
        assert web.login("boss@acme.example", "guess guess guess").status_code == 401
    # Locked: even the right password is refused, with the reason and when to retry.
    r = web.login("boss@acme.example")
    assert r.status_code == 429
    assert "Too many failed logins. Try again in 15 minutes." in r.text
    assert 14 * 60 < int(r.headers["retry-after"]) <= 15 * 60
    # Another server process (same database) refuses it too.
    other_process = create_app(
        ServerSettings(database_url=str(server.services.db.url.render_as_string(False))),
        migrate_db=False,
    )
    try:
        second = Browser(server)
        second.client = TestClient(other_process)
        assert second.login("boss@acme.example").status_code == 429
    finally:
        other_process.state.services.db.dispose()
    # Other logins from the same address still work (below the address limit).
    assert web.login("other@acme.example").status_code == 303
    # 15 minutes later the lock is over: move the failures back in time.
    with server.services.db.write() as conn:
        conn.execute(update(login_failures).values(at_ms=login_failures.c.at_ms - 15 * 60_000))
    assert Browser(server).login("boss@acme.example").status_code == 303
    with server.services.db.read() as conn:  # success forgets that login's failures
        left = conn.execute(
            select(func.count()).where(login_failures.c.login == "boss@acme.example")
        ).scalar_one()
    assert left == 0


def test_twenty_failures_from_one_address_lock_every_login_from_it(server: Server) -> None:
    add_user(server, "boss@acme.example", "admin")
    now = now_ms()
    with server.services.db.write() as conn:
        for i in range(19):  # earlier failures, each for another login
            sessions.record_failure(conn, f"guess{i}@acme.example", "testclient", now - 60_000)
    web = Browser(server)
    assert web.login("guess@acme.example", "wrong password").status_code == 401
    r = web.login("boss@acme.example")
    assert r.status_code == 429 and "Too many failed logins" in r.text


def test_lock_arithmetic() -> None:
    minute = 60_000
    assert sessions.locked_until([], 5) is None
    assert sessions.locked_until([0, 1, 2, 3], 5) is None
    assert sessions.locked_until([0, 1, 2, 3, 4], 5) == 4 + 15 * minute
    # Five failures spread over more than 15 minutes never lock.
    spread = [0, 4 * minute, 8 * minute, 12 * minute, 16 * minute]
    assert sessions.locked_until(spread, 5) is None


def test_an_outdated_hash_is_replaced_at_login(server: Server) -> None:
    user_id = add_user(server, "boss@acme.example", "admin")
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PASSWORD)
    with server.services.db.write() as conn:
        conn.execute(update(users_table).values(password_hash=weak))
    Browser(server).logged_in("boss@acme.example")
    with server.services.db.read() as conn:
        stored = conn.execute(
            select(users_table.c.password_hash).where(users_table.c.id == user_id)
        ).scalar_one()
    assert stored != weak and not PasswordHasher().check_needs_rehash(stored)


def test_a_disabled_user_cannot_log_in_and_loses_their_sessions(server: Server) -> None:
    user_id = add_user(server, "sam@acme.example", "viewer")
    web = Browser(server).logged_in("sam@acme.example")
    r = server.client.patch(
        f"/api/v1/users/{user_id}", json={"disabled": True}, headers=server.admin()
    )
    assert r.status_code == 200 and r.json()["disabled"] is True
    assert web.client.get("/api/v1/me").status_code == 401
    r = Browser(server).login("sam@acme.example")
    assert r.status_code == 401 and "Wrong login or password." in r.text


# --- sessions and cookies ---------------------------------------------------------------


def _cookie(r: httpx.Response, name: str) -> str:
    found = [c for c in r.headers.get_list("set-cookie") if c.startswith(f"{name}=")]
    assert found, r.headers
    return found[0].lower()


def test_session_cookie_is_httponly_lax_and_secure_over_https(server: Server) -> None:
    add_user(server, "boss@acme.example", "admin")
    plain = _cookie(Browser(server).login("boss@acme.example"), "wl_session")
    assert "httponly" in plain and "samesite=lax" in plain and "path=/" in plain
    assert "secure" not in plain
    tls = _cookie(Browser(server, "https://testserver").login("boss@acme.example"), "wl_session")
    assert "secure" in tls and "httponly" in tls
    # Behind a TLS proxy that does not say so: WORKLENS_SECURE_COOKIES.
    # (The proxy speaks TLS to the browser, which hence sends Secure cookies back.)
    server.services.settings.secure_cookies = True
    behind_proxy = TestClient(server.client.app)
    form = behind_proxy.get("/login")
    assert "secure" in _cookie(form, "wl_login_csrf")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert token is not None
    r = behind_proxy.post(
        "/login",
        data={"email": "boss@acme.example", "password": PASSWORD, "csrf_token": token[1]},
        headers={"Cookie": f"wl_login_csrf={token[1]}"},
        follow_redirects=False,
    )
    assert "secure" in _cookie(r, "wl_session")
    server.services.settings.secure_cookies = False
    # The session id is random and only its hash is stored.
    web = Browser(server).logged_in("boss@acme.example")
    session_id = web.client.cookies["wl_session"]
    with server.services.db.read() as conn:
        stored = conn.execute(select(sessions_table.c.id_hash)).scalars().all()
    assert len(session_id) >= 43 and session_id not in stored


def test_logout_ends_the_session_on_the_server(server: Server) -> None:
    add_user(server, "boss@acme.example", "admin")
    web = Browser(server).logged_in("boss@acme.example")
    session_id = web.client.cookies["wl_session"]
    csrf = web.csrf
    # Without the CSRF token: refused, still logged in.
    r = web.client.post("/logout", data={"csrf_token": "forged"})
    assert r.status_code == 403 and "CSRF" in r.text and "<html" in r.text
    assert web.client.get("/api/v1/me").status_code == 200
    r = web.client.post("/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    # The old cookie value, replayed from elsewhere, no longer works.
    replay = TestClient(server.client.app, cookies={"wl_session": session_id})
    assert replay.get("/api/v1/me").status_code == 401
    assert replay.get("/", follow_redirects=False).headers["location"] == "/login"
    with server.services.db.read() as conn:
        assert conn.execute(select(func.count()).select_from(sessions_table)).scalar_one() == 0


def test_sessions_end_after_12_idle_hours_or_7_days(server: Server) -> None:
    add_user(server, "boss@acme.example", "admin")
    web = Browser(server).logged_in("boss@acme.example")
    hour = 3_600_000
    with server.services.db.write() as conn:
        conn.execute(update(sessions_table).values(last_seen_ms=now_ms() - 11 * hour))
    assert web.client.get("/api/v1/me").status_code == 200  # and that moves last_seen on
    with server.services.db.write() as conn:
        conn.execute(update(sessions_table).values(last_seen_ms=now_ms() - 12 * hour - 1000))
    assert web.client.get("/api/v1/me").status_code == 401
    web = Browser(server).logged_in("boss@acme.example")
    with server.services.db.write() as conn:
        conn.execute(update(sessions_table).values(expires_ms=now_ms() - 1))
    assert web.client.get("/api/v1/me").status_code == 401


# --- CSRF ------------------------------------------------------------------------------


def _team_names(server: Server) -> list[str]:
    with server.services.db.read() as conn:
        return sorted(conn.execute(select(teams.c.name)).scalars())


def test_changes_with_a_session_need_the_csrf_token_and_bearer_tokens_do_not(
    server: Server,
) -> None:
    web = browser(server, "boss@acme.example", "admin")
    for headers in ({}, {"X-CSRF-Token": "wrong"}, {"X-CSRF-Token": ""}):
        r = web.client.post("/api/v1/teams", json={"name": "Red"}, headers=headers)
        assert r.status_code == 403 and "CSRF" in r.json()["error"]
    # A form post without the field, or with another session's token, too.
    r = web.client.post("/api/v1/teams", data={"name": "Red", "csrf_token": "nope"})
    assert r.status_code == 403
    other = browser(server, "other@acme.example", "admin")
    r = web.client.post("/api/v1/teams", json={"name": "Red"}, headers={"X-CSRF-Token": other.csrf})
    assert r.status_code == 403
    assert _team_names(server) == []
    r = web.send("POST", "/api/v1/teams", json={"name": "Red"})
    assert r.status_code == 201
    r = server.client.post("/api/v1/teams", json={"name": "Blue"}, headers=server.admin())
    assert r.status_code == 201
    assert _team_names(server) == ["Blue", "Red"]


def test_the_login_form_has_its_own_csrf_token(server: Server) -> None:
    add_user(server, "boss@acme.example", "admin")
    web = Browser(server)
    web.client.get("/login")
    data = {"email": "boss@acme.example", "password": PASSWORD}
    for token in ("", "forged"):
        r = web.client.post("/login", data={**data, "csrf_token": token}, follow_redirects=False)
        assert r.status_code == 403 and "wl_session" not in r.headers.get("set-cookie", "")
    # A forged cross-site post has no cookie at all.
    bare = TestClient(server.client.app)
    r = bare.post("/login", data={**data, "csrf_token": "x"}, follow_redirects=False)
    assert r.status_code == 403


# --- roles -----------------------------------------------------------------------------


def _snapshot(server: Server, org: str = "acme") -> dict[str, Any]:
    """Everything of the organization a change through the API could touch."""
    with server.services.db.read() as conn:
        org_id = orgs.get_org(conn, org).id
        its_devices = select(devices.c.id).where(devices.c.org_id == org_id)
        its_users = select(users_table.c.id).where(users_table.c.org_id == org_id)
        queries = {
            "orgs": select(orgs_table).where(orgs_table.c.id == org_id),
            "devices": select(devices).where(devices.c.org_id == org_id),
            "teams": select(teams).where(teams.c.org_id == org_id),
            "people": select(people).where(people.c.org_id == org_id),
            "device_people": select(device_people).where(
                device_people.c.device_id.in_(its_devices)
            ),
            "category_rules": select(category_rules).where(category_rules.c.org_id == org_id),
            "users": select(users_table).where(users_table.c.org_id == org_id),
            "user_teams": select(user_teams).where(user_teams.c.user_id.in_(its_users)),
            "events": select(func.count())
            .select_from(events.join(buckets, buckets.c.id == events.c.bucket_id))
            .where(buckets.c.device_id.in_(its_devices)),
        }
        return {
            name: sorted((tuple(row) for row in conn.execute(q)), key=repr)
            for name, q in queries.items()
        }


CHANGES: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/api/v1/teams", {"json": {"name": "Green"}}),
    ("POST", "/api/v1/people", {"json": {"name": "Eve"}}),
    ("PUT", "/api/v1/devices/{device}/person", {"json": {"person_id": None}}),
    ("POST", "/api/v1/devices/{device}/block", {}),
    ("POST", "/api/v1/devices/{device}/revoke", {}),
    ("POST", "/api/v1/devices/{device}/rotate", {}),
    ("DELETE", "/api/v1/devices/{device}", {"json": {"confirm": "ada-pc-zq"}}),
    ("PUT", "/api/v1/settings/agent", {"json": {"idle_threshold_s": 60}}),
    ("PUT", "/api/v1/categories", {"json": {"categories": []}}),
    ("PUT", "/api/v1/teams/{team}/categories", {"json": {"add": []}}),
    ("PATCH", "/api/v1/org", {"json": {"timezone": "Europe/Berlin"}}),
    ("POST", "/api/v1/users", {"json": {"email": "x@y.z", "password": PASSWORD, "role": "admin"}}),
    ("PATCH", "/api/v1/users/{user}", {"json": {"role": "admin"}}),
    ("POST", "/api/0/import?device={device}", {"json": {"buckets": {}}}),
]


def test_viewers_and_managers_cannot_change_anything(server: Server) -> None:
    w = world(server)
    viewer_id = add_user(server, "viewer@acme.example", "viewer")
    with server.services.db.write() as conn:
        viewer_token = orgs.create_token(conn, orgs.get_org(conn, "acme"), "viewer", now_ms())
    callers: list[tuple[str, Any]] = [
        ("viewer", Browser(server).logged_in("viewer@acme.example").send),
        ("manager", browser(server, "m@acme.example", "manager", team_ids=(w.red,)).send),
        ("self", browser(server, "s@acme.example", "self", person=w.ada).send),
        ("viewer token", token_sender(server, viewer_token)),
    ]
    before = _snapshot(server)
    for who, send in callers:
        for method, path, kwargs in CHANGES:
            url = path.format(device=w.ada_pc, team=w.red, user=viewer_id)
            r = send(method, url, **kwargs)
            assert r.status_code == 403, (who, method, url, r.text)
            assert "admin" in r.json()["error"]
    assert _snapshot(server) == before
    # Reading is fine.
    r = time_report(server.client, bearer(viewer_token))
    assert apps(r) == {"adaapp-zq": 600.0, "bobapp-zq": 600.0, "kiosk-app-zq": 600.0}


def test_a_manager_sees_only_their_teams(server: Server) -> None:
    w = world(server)
    web = browser(server, "lead@acme.example", "manager", team_ids=(w.red,))
    get = web.client.get
    assert apps(time_report(web.client)) == {"adaapp-zq": 600.0}
    assert apps(time_report(web.client, group_by="person")) == {f"Ada zq (#{w.ada})": 600.0}
    assert apps(time_report(web.client, group_by="device")) == {f"ada-pc-zq (#{w.ada_pc})": 600.0}
    assert apps(time_report(web.client, person=w.ada)) == {"adaapp-zq": 600.0}
    assert apps(time_report(web.client, team=w.red)) == {"adaapp-zq": 600.0}
    # Another team's person, team or device, or the kiosk: as if they did not exist.
    for params in ({"person": w.bob}, {"team": w.blue}, {"device": w.bob_pc}, {"device": w.kiosk}):
        assert time_report(web.client, **params).status_code == 404, params
    r = get("/api/v1/reports/timeline", params={"device": w.bob_pc, **DAY})
    assert r.status_code == 404
    r = get("/api/v1/reports/timeline", params={"device": w.ada_pc, **DAY})
    assert r.status_code == 200 and r.json()["active"][0]["app"] == "adaapp-zq"
    hm = get("/api/v1/reports/heatmap", params=DAY).json()
    assert sum(map(sum, hm["seconds"])) == 600.0
    series = get("/api/v1/reports/series", params=DAY).json()
    assert [row["key"] for p in series["periods"] for row in p["rows"]] == ["adaapp-zq"]
    assert [d["id"] for d in get("/api/v1/devices").json()] == [w.ada_pc]
    assert [p["id"] for p in get("/api/v1/people").json()] == [w.ada]
    assert [t["id"] for t in get("/api/v1/teams").json()] == [w.red]
    assert get(f"/api/v1/teams/{w.red}/categories").status_code == 200
    assert get(f"/api/v1/teams/{w.blue}/categories").status_code == 404
    # The ActivityWatch API shows the same devices.
    buckets = get("/api/0/buckets/").json()
    assert {b["hostname"] for b in buckets.values()} == {"ada-pc-zq"}
    assert get("/api/0/buckets/worklens-focus_bob-pc-zq/events").status_code == 404
    assert "bob" not in get("/api/0/export").text
    r = web.send(
        "POST",
        "/api/0/query/",
        json={
            "timeperiods": [f"{DAY['start']}/{DAY['end']}"],
            "query": ['RETURN = query_bucket("worklens-focus_bob-pc-zq");'],
        },
    )
    assert r.status_code == 400 and "no bucket" in r.json()["error"]
    assert get("/api/v1/users").status_code == 403
    assert get("/api/v1/audit").status_code == 403
    page = get("/")
    assert "ada-pc-zq" in page.text and "bob-pc-zq" not in page.text and "kiosk" not in page.text


def test_a_self_user_sees_only_their_own_data(server: Server) -> None:
    w = world(server)
    web = browser(server, "bob@acme.example", "self", person=w.bob)
    get = web.client.get
    assert apps(time_report(web.client)) == {"bobapp-zq": 600.0}
    assert apps(time_report(web.client, person=w.bob)) == {"bobapp-zq": 600.0}
    for params in ({"person": w.ada}, {"team": w.blue}, {"device": w.ada_pc}, {"device": w.kiosk}):
        assert time_report(web.client, **params).status_code == 404, params
    assert get("/api/v1/reports/timeline", params={"device": w.ada_pc, **DAY}).status_code == 404
    assert get("/api/v1/reports/timeline", params={"device": w.bob_pc, **DAY}).status_code == 200
    assert [d["id"] for d in get("/api/v1/devices").json()] == [w.bob_pc]
    assert [p["id"] for p in get("/api/v1/people").json()] == [w.bob]
    assert get("/api/v1/teams").json() == []
    assert {b["hostname"] for b in get("/api/0/buckets/").json().values()} == {"bob-pc-zq"}
    me = get("/api/v1/me").json()
    assert me["role"] == "self" and me["person_id"] == w.bob and me["team_ids"] == []


def test_access_rules() -> None:
    admin = Access(1, "admin", "user", 1, "a")
    manager = Access.for_user(1, "manager", 2, "m", frozenset({7}), None)
    own = Access.for_user(1, "self", 3, "s", frozenset({7}), 42)
    assert admin.can_admin and admin.sees_whole_org and admin.may_see_device(None, None)
    assert not manager.can_admin and manager.may_see_person(1, 7)
    assert not manager.may_see_person(1, 8) and not manager.may_see_person(1, None)
    assert not manager.may_see_device(None, None)  # nobody's device: whole-org roles only
    assert own.team_ids == frozenset() and not own.may_see_team(7)  # teams are a manager's
    assert own.may_see_person(42, 7) and not own.may_see_person(43, 7)
    token = Access.for_token(1, "manager", 5, "")
    assert token.role == "viewer" and token.name == "token #5"  # legacy manager token


# --- users API -----------------------------------------------------------------------------


def test_users_api_checks_every_value_and_names_it(server: Server) -> None:
    w = world(server)
    _, other_admin = server.new_org("globex")
    h = server.admin()
    base = {"email": "new@acme.example", "password": PASSWORD}

    def create(**body: Any) -> httpx.Response:
        return server.client.post("/api/v1/users", json={**base, **body}, headers=h)

    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"role": "boss"}, 422, "role"),
        ({"role": "self"}, 422, "person_id"),
        ({"role": "self", "person_id": 999}, 422, "person_id"),
        ({"role": "manager", "team_ids": [999]}, 422, "team_ids"),
        ({"role": "viewer", "team_ids": [w.red]}, 422, "team_ids"),
        ({"role": "admin", "password": "short"}, 422, "password"),
        ({"role": "admin", "email": "two words"}, 422, "email"),
    ]
    for body, status, field in cases:
        r = create(**body)
        assert r.status_code == status and r.json()["detail"][0]["loc"] == [field], (body, r.text)
    assert create(role="manager", team_ids=[w.red]).status_code == 201
    assert create(role="viewer").status_code == 409  # the login is taken
    user_id = next(u["id"] for u in server.client.get("/api/v1/users", headers=h).json())
    r = server.client.patch(
        f"/api/v1/users/{user_id}", json={"role": "self", "person_id": w.ada}, headers=h
    )
    assert r.status_code == 200 and r.json()["team_ids"] == [] and r.json()["person_id"] == w.ada
    # Another organization's admin does not see the user.
    r = server.client.patch(
        f"/api/v1/users/{user_id}", json={"disabled": True}, headers=bearer(other_admin)
    )
    assert r.status_code == 404


def test_an_admin_cannot_lock_themselves_out(server: Server) -> None:
    user_id = add_user(server, "boss@acme.example", "admin")
    web = Browser(server).logged_in("boss@acme.example")
    for change in ({"disabled": True}, {"role": "viewer"}):
        r = web.send("PATCH", f"/api/v1/users/{user_id}", json=change)
        assert r.status_code == 409, r.text
    assert web.client.get("/api/v1/me").json()["role"] == "admin"


# --- the audit log -------------------------------------------------------------------------


def test_admin_actions_are_audited_with_actor_and_target(server: Server) -> None:
    w = world(server)  # as the admin token
    web = browser(server, "boss@acme.example", "admin")
    user_id = web.send(
        "POST",
        "/api/v1/users",
        json={"email": "v@acme.example", "password": PASSWORD, "role": "viewer"},
    ).json()["id"]
    assert web.send("PATCH", f"/api/v1/users/{user_id}", json={"disabled": True}).status_code == 200
    for action in ("block", "unblock", "revoke"):
        assert web.send("POST", f"/api/v1/devices/{w.kiosk}/{action}").status_code == 204
    assert web.send("PATCH", "/api/v1/org", json={"timezone": "Europe/Berlin"}).status_code == 200
    rules = web.client.get("/api/v1/categories").json()
    assert (
        web.send("PUT", "/api/v1/categories", json={"categories": rules["categories"]}).status_code
        == 200
    )
    # A refused change leaves no entry (same transaction).
    assert web.send("POST", "/api/v1/teams", json={"name": "Red zq"}).status_code == 409
    entries = web.client.get("/api/v1/audit").json()["entries"]
    got = [(e["action"], e["target"], e["actor_kind"]) for e in entries]
    assert got[:7] == [
        ("categories.set", "organization", "user"),
        ("org.timezone", "organization", "user"),
        ("device.revoke", f"device {w.kiosk}", "user"),
        ("device.unblock", f"device {w.kiosk}", "user"),
        ("device.block", f"device {w.kiosk}", "user"),
        ("user.update", f"user {user_id}", "user"),
        ("user.create", f"user {user_id}", "user"),
    ]
    assert entries[0]["actor_name"] == "boss@acme.example" and entries[0]["ip"] == "testclient"
    assert entries[1]["details"] == {"from": "UTC", "to": "Europe/Berlin"}
    assert entries[5]["details"] == {"disabled": True}
    # The world was built with the admin token: it is named as the actor.
    token_rows = [e for e in entries if e["actor_kind"] == "token"]
    assert [e["action"] for e in token_rows] == [
        *["device.assign"] * 2,
        *["person.create"] * 2,
        *["team.create"] * 2,
    ]
    assert token_rows[-1]["details"] == {"name": "Red zq"}
    # Paging: newest first, stable.
    first = web.client.get("/api/v1/audit", params={"limit": 2}).json()
    second = web.client.get(
        "/api/v1/audit", params={"limit": 2, "before": first["next_before"]}
    ).json()
    assert [e["id"] for e in first["entries"] + second["entries"]] == [e["id"] for e in entries[:4]]
    # The page shows it, escaped.
    server.client.post(
        "/api/v1/teams", json={"name": "<img src=x onerror=alert(1)>"}, headers=server.admin()
    )
    page = web.client.get("/audit")
    assert page.status_code == 200 and "device.block" in page.text
    assert "<img src=x" not in page.text and "&lt;img src=x onerror=alert(1)&gt;" in page.text
    assert page.headers["x-frame-options"] == "DENY"


def test_the_audit_log_is_for_admins(server: Server) -> None:
    web = browser(server, "v@acme.example", "viewer")
    assert web.client.get("/api/v1/audit").status_code == 403
    page = web.client.get("/audit")
    assert page.status_code == 403 and "admins" in page.text
    assert "/audit" not in web.client.get("/").text  # no link to it either


def test_pages_escape_what_agents_report(server: Server) -> None:
    server.enroll(hostname="<script>alert(1)</script>")
    web = browser(server, "boss@acme.example", "admin")
    page = web.client.get("/").text
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page


# --- one organization never sees another, through every route --------------------------


def _routes(app: FastAPI) -> Iterator[BaseRoute]:
    """Every route of the app, with included routers flattened."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # FastAPI before lazy router inclusion: app.routes is flat
        yield from app.routes
        return
    for ctx in iter_route_contexts(app.routes):
        yield ctx.route


# Routes that serve no organization's data, or are authenticated by a device
# token or the enrollment secret (their isolation is tested with ingest).
PUBLIC = {
    "/api/openapi.json",
    "/api/docs",
    "/docs/oauth2-redirect",
    "/api/v1/health",
    "/api/v1/enroll",
    "/login",
    "/logout",
}
DEVICE_AUTH = {"current_device"}
USER_AUTH = {"current_access", "require_admin"}


def _deps(route: APIRoute) -> set[str]:
    return {getattr(d.call, "__name__", "") for d in route.dependant.dependencies}


@dataclass
class Target:
    """Organization A's ids, and the marker all its names carry."""

    path: dict[str, str]
    query: dict[str, str]


def _org_a(server: Server) -> Target:
    w = world(server)
    boss = add_user(server, "boss-zq@acme.example", "admin")
    web = Browser(server).logged_in("boss-zq@acme.example")  # A's audit log gets a login
    assert web.client.get("/api/v1/me").status_code == 200
    return Target(
        path={
            "device_id": str(w.ada_pc),
            "team_id": str(w.red),
            "person_id": str(w.ada),
            "user_id": str(boss),
            "bucket_id": "worklens-focus_ada-pc-zq",
            "action": "block",
        },
        query={
            **DAY,
            "device": str(w.ada_pc),
            "person": str(w.ada),
            "team": str(w.red),
        },
    )


BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/api/v1/devices/{device_id}/{action}"): {},
    ("POST", "/api/v1/devices/{device_id}/rotate"): {},
    ("DELETE", "/api/v1/devices/{device_id}"): {"json": {"confirm": "ada-pc-zq"}},
    ("PUT", "/api/v1/devices/{device_id}/person"): {"json": {"person_id": None}},
    ("PUT", "/api/v1/teams/{team_id}/categories"): {"json": {"add": []}},
    ("PATCH", "/api/v1/users/{user_id}"): {"json": {"disabled": True}},
    ("POST", "/api/0/import"): {"json": {"buckets": {}}},
    ("POST", "/api/0/query/"): {
        "json": {
            "timeperiods": [f"{DAY['start']}/{DAY['end']}"],
            "query": ['RETURN = query_bucket("worklens-focus_ada-pc-zq");'],
        }
    },
    # These act on the caller's own organization; the ids in them are A's.
    ("POST", "/api/v1/teams"): {"json": {"name": "B team"}},
    ("POST", "/api/v1/people"): {"json": {"name": "B person", "team_id": "{team_id}"}},
    ("POST", "/api/v1/users"): {
        "json": {
            "email": "b@b.example",
            "password": PASSWORD,
            "role": "self",
            "person_id": "{person}",
        }
    },
    ("PUT", "/api/v1/categories"): {"json": {"categories": []}},
    ("PATCH", "/api/v1/org"): {"json": {"timezone": "Asia/Tokyo"}},
    ("PUT", "/api/v1/settings/agent"): {"json": {"idle_threshold_s": 60}},
}


def _fill(value: Any, target: Target) -> Any:
    if isinstance(value, dict):
        return {k: _fill(v, target) for k, v in value.items()}
    if isinstance(value, str) and value.startswith("{") and value.endswith("}"):
        key = value[1:-1]
        return int(target.path.get(key) or target.query[key])
    return value


def _requests(route: APIRoute, target: Target) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """The requests that aim at A's data through this route: its path ids,
    its required parameters, and each id filter it takes, one at a time."""
    names = {f.name for f in route.dependant.path_params}
    unknown = names - set(target.path)
    assert not unknown, f"{route.path}: add a value for {unknown} to the isolation test"
    path = route.path.format(**{n: target.path[n] for n in names})
    required: dict[str, str] = {}
    filters = []
    for f in route.dependant.query_params:
        if f.field_info.is_required():
            assert f.name in target.query, f"{route.path}: add a value for ?{f.name}"
            required[f.name] = target.query[f.name]
        elif f.name in ("device", "person", "team"):
            filters.append(f.name)
    for method in sorted(route.methods or ()):
        if method == "HEAD":
            continue
        extra: dict[str, Any] = {}
        if method != "GET":
            key = (method, route.path)
            assert key in BODIES, f"{method} {route.path}: add it to BODIES of the isolation test"
            extra = _fill(BODIES[key], target)
        yield method, path, {"params": required, **extra}
        for name in filters:
            yield method, path, {"params": {**required, name: target.query[name]}, **extra}


def test_one_organization_never_sees_or_changes_another_through_any_route(
    server: Server,
) -> None:
    target = _org_a(server)
    before = _snapshot(server)
    _, b_token = server.new_org("globex")
    add_user(server, "boss@globex.example", "admin", org="globex")
    b_user = Browser(server).logged_in("boss@globex.example")
    callers = [
        ("B admin token", token_sender(server, b_token)),
        ("B admin user", b_user.send),
    ]
    app = server.client.app
    assert isinstance(app, FastAPI)
    checked: set[str] = set()
    for route in _routes(app):
        if isinstance(route, Mount) or route.path in PUBLIC:  # type: ignore[attr-defined]
            continue
        if isinstance(route, APIWebSocketRoute):
            continue  # the agents' socket: device tokens only
        if isinstance(route, Route) and not isinstance(route, APIRoute):
            continue
        assert isinstance(route, APIRoute), route
        deps = _deps(route)
        if deps & DEVICE_AUTH:
            continue
        # A page does its own auth (it redirects instead of answering 401);
        # every API route must declare who may call it.
        if route.path.startswith("/api/"):
            assert deps & USER_AUTH, f"{route.path} has no auth dependency"
        for method, path, kwargs in _requests(route, target):
            for who, send in callers:
                r = send(method, path, **kwargs)
                assert r.status_code < 500, (who, method, path, r.text)
                # An error may name the bucket asked for; nothing else of A may show.
                shown = r.text.replace(target.path["bucket_id"], "")
                # Random secrets (CSRF tokens, secrets in forms) may spell "zq" by chance.
                shown = re.sub(r"[A-Za-z0-9_-]{32,}", "", shown)
                assert "zq" not in shown, (who, method, path, kwargs, r.text)
                if method == "GET":
                    assert r.status_code in (200, 404), (who, method, path, r.status_code, r.text)
                    if route.path.startswith("/api/"):
                        anon = server.client.get(path, params=kwargs["params"])
                        assert anon.status_code == 401, (method, path)
                elif route.path in (
                    "/api/v1/devices/{device_id}/{action}",
                    "/api/v1/devices/{device_id}/rotate",
                    "/api/v1/devices/{device_id}",
                    "/api/v1/devices/{device_id}/person",
                    "/api/v1/teams/{team_id}/categories",
                    "/api/v1/users/{user_id}",
                    "/api/0/import",
                    "/api/v1/people",
                    "/api/v1/users",
                ):
                    # It names A's device, team, person or user: none exists for B.
                    assert r.status_code in (404, 422), (who, method, path, r.text)
            checked.add(f"{method} {route.path}")
    assert _snapshot(server) == before  # nothing of A changed
    for expected in (
        "GET /api/v1/reports/time",
        "GET /api/v1/reports/timeline",
        "GET /api/v1/audit",
        "GET /api/v1/users",
        "GET /api/0/buckets/{bucket_id}/events",
        "GET /api/0/export",
        "POST /api/0/query/",
        "GET /",
        "GET /audit",
        "GET /people/{person_id}",
        "GET /devices/{device_id}",
        "GET /teams/{team_id}/report",
        "GET /api/v1/devices/{device_id}/host",
    ):
        assert expected in checked, expected
    # The same requests do show A's data to A: the markers are real.
    a = bearer(server.admin_token)
    assert "zq" in server.client.get("/api/0/export", headers=a).text
    assert "zq" in time_report(server.client, a, device=target.query["device"]).text
    with server.services.db.read() as conn:
        a_org = orgs.get_org(conn, "acme").id
        a_audit = conn.execute(
            select(func.count()).where(
                audit_log.c.org_id == a_org, audit_log.c.actor_name.like("%globex%")
            )
        ).scalar_one()
    assert a_audit == 0


@pytest.mark.parametrize("role", ["manager", "self"])
def test_restricted_roles_get_nothing_of_another_organization_either(
    server: Server, role: str
) -> None:
    target = _org_a(server)
    server.new_org("globex")
    with server.services.db.write() as conn:
        org_id = orgs.get_org(conn, "globex").id
        team = people_store.create_team(conn, org_id, "G", now_ms())
        person = people_store.create_person(conn, org_id, "Gus", now_ms(), team)
    kwargs: dict[str, Any] = {"team_ids": (team,)} if role == "manager" else {"person": person}
    web = browser(server, "g@globex.example", role, org="globex", **kwargs)
    for what in ("device", "person", "team"):
        r = time_report(web.client, **{what: target.query[what]})
        assert r.status_code == 404 and "zq" not in r.text
    assert "zq" not in web.client.get("/api/0/export").text
    assert web.client.get("/api/v1/devices").json() == []
