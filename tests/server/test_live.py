"""The live hub: changes pushed to open dashboards over /live/ws.

Through real sockets (Starlette's test client runs the app with its lifespan,
so the hub's background task runs too), on SQLite and PostgreSQL: what a page
receives when an agent sends events, connects or goes; what it must never
receive (other teams' and other organizations' devices); who may not connect;
and, with two app instances on one database, the fan-out between processes.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from tests.server.conftest import Server, afk, at, batch, focus
from tests.server.test_ingest_and_report import post
from tests.server.test_users_and_access import PASSWORD, Browser, browser, world
from worklens.server.app import create_app
from worklens.server.services import Services
from worklens.server.settings import ServerSettings
from worklens.server.store import orgs, users

WAIT_S = 10.0


class Page:
    """An open dashboard socket, read with a timeout (the test client's own
    reads block for ever)."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.inbox: queue.Queue[str | BaseException] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            while True:
                self.inbox.put(self.ws.receive_text())
        except BaseException as exc:  # the socket closed: hand it to the test
            self.inbox.put(exc)

    def next(self, containing: str = "", within: float = WAIT_S) -> str:
        """The next message (that contains ``containing``), or fail."""
        deadline = time.monotonic() + within
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no live message containing {containing!r} in {within} s")
            try:
                item = self.inbox.get(timeout=left)
            except queue.Empty:
                continue
            if isinstance(item, BaseException):
                raise item
            if containing in item:
                return item


@contextmanager
def live_page(b: Browser, origin: str = "http://testserver") -> Iterator[Page]:
    cookie = f"wl_session={b.client.cookies.get('wl_session')}"
    with b.client.websocket_connect("/live/ws", headers={"origin": origin, "cookie": cookie}) as ws:
        yield Page(ws)


def test_what_an_agent_sends_is_pushed_to_the_open_page_escaped(server: Server) -> None:
    admin = browser(server, "ada@acme.test", "admin")
    device, token = server.enroll(hostname="pc-live")
    with live_page(admin) as page:
        title = "<img src=x onerror=alert(1)>"
        post(server, token, batch(afk(at(0), 60, "active"), focus(at(0), 60, "vim", title)))
        row = page.next(f'id="device-row-{device}"')
        now = page.next(f'<span id="device-now-{device}"')
    # Rows and badges come in separate messages (htmx parses table rows apart).
    assert row.startswith(f'<tr id="device-row-{device}" hx-swap-oob="true"')
    assert "<span" not in row.split("</tr>")[-1]
    for text in (row, now):
        assert "vim" in text and 'data-status="online"' in text
        assert "&lt;img src=x onerror=alert(1)&gt;" in text and "<img src=x" not in text


def test_a_new_device_appears_on_an_open_fleet_page(server: Server) -> None:
    admin = browser(server, "ada@acme.test", "admin")
    page_html = admin.client.get("/").text
    assert 'id="fleet-empty"' in page_html and 'ws-connect="/live/ws?parts=row"' in page_html
    with live_page(admin) as page:
        device, _ = server.enroll(hostname="brand-new-pc")
        rows = page.next("brand-new-pc")
        rest = page.next("fleet-empty")
    assert rows.startswith('<tbody id="fleet-rows" hx-swap-oob="true">')
    assert f'id="device-row-{device}"' in rows
    assert rest.startswith('<div id="fleet-empty" hx-swap-oob="true" hidden></div>')


def test_online_when_the_agent_connects_and_offline_when_it_goes(server: Server) -> None:
    admin = browser(server, "ada@acme.test", "admin")
    device, token = server.enroll(hostname="pc-ws")
    with live_page(admin) as page:
        with server.client.websocket_connect(
            "/api/v1/agent/ws", headers={"authorization": f"Bearer {token}"}
        ):
            page.next(f'<tr id="device-row-{device}" hx-swap-oob="true" data-status="online">')
        page.next(f'<tr id="device-row-{device}" hx-swap-oob="true" data-status="offline">')
    r = server.client.get("/api/v1/devices", headers=server.admin())
    assert [d["online"] for d in r.json() if d["id"] == device] == [False]


def test_a_page_gets_only_the_devices_its_user_may_see(server: Server) -> None:
    w = world(server)
    manager = browser(server, "mia@acme.test", "manager", team_ids=(w.red,))
    other_secret, _ = server.new_org("globex")
    r = server.client.post(
        "/api/v1/enroll",
        json={"enroll_secret": other_secret, "hardware_uuid": "hw-g", "hostname": "globex-pc-zq"},
    )
    other_org_device, other_token = r.json()["device_id"], r.json()["token"]
    with server.services.db.read() as conn:
        acme = orgs.get_org(conn, "acme").id
    with live_page(manager) as page:
        # Another organization's agent sends; another team's device and the
        # kiosk change; then Ada's laptop (team Red, the manager's).
        post(server, other_token, batch(focus(at(5), 60, "elsewhere-zq")))
        server.services.live.publish(acme, [w.bob_pc, w.kiosk, other_org_device])
        server.services.live.publish(acme, [w.ada_pc])
        text = page.next()
    assert f'id="device-row-{w.ada_pc}"' in text
    for leak in ("globex", "elsewhere-zq", "bob-pc-zq", "kiosk-zq", f"device-row-{w.bob_pc}"):
        assert leak not in text


@pytest.mark.parametrize("origin", ["http://evil.example", None])
def test_other_sites_and_visitors_without_a_session_cannot_connect(
    server: Server, origin: str | None
) -> None:
    admin = browser(server, "ada@acme.test", "admin")
    headers = {"cookie": f"wl_session={admin.client.cookies.get('wl_session')}"}
    if origin:
        headers["origin"] = origin
    with (
        pytest.raises(WebSocketDisconnect) as exc,
        admin.client.websocket_connect("/live/ws", headers=headers) as ws,
    ):
        ws.receive_text()
    assert exc.value.code == 1008
    with (
        pytest.raises(WebSocketDisconnect) as exc,
        server.client.websocket_connect("/live/ws", headers={"origin": "http://testserver"}) as ws,
    ):
        ws.receive_text()
    assert exc.value.code == 1008


@pytest.mark.parametrize("bus", ["db", pytest.param("redis", marks=pytest.mark.real)])
def test_changes_cross_server_processes(
    db_url: str, bus: str, request: pytest.FixtureRequest
) -> None:
    """Two app instances on one database, as `worklens server --workers 2` runs
    them (bus "db"), or as two server instances sharing a Redis server: the
    page is connected to one, the agent sends to the other."""
    redis_url = request.getfixturevalue("redis_url") if bus == "redis" else None

    def app() -> Any:
        settings = ServerSettings(
            database_url=db_url, offline_after_s=2.0, rate_per_second=1000, redis_url=redis_url
        )
        if bus == "db":
            settings.live_bus = "db"
        return create_app(settings)

    app_a, app_b = app(), app()
    services: Services = app_a.state.services
    assert services.live.bus == bus  # "auto" picks redis when redis_url is set
    now = int(time.time() * 1000)
    with services.db.write() as conn:
        org, secret = orgs.create_org(conn, "acme", now)
        users.create_user(conn, org.id, "ada@acme.test", PASSWORD, "admin", now)
    with TestClient(app_a) as a, TestClient(app_b) as b:
        r = b.post(
            "/api/v1/enroll",
            json={"enroll_secret": secret, "hardware_uuid": "hw1", "hostname": "far-pc"},
        )
        device, token = r.json()["device_id"], r.json()["token"]
        page_browser = Browser.__new__(Browser)
        page_browser.client = a
        assert page_browser.login("ada@acme.test").status_code == 303
        with live_page(page_browser) as page:
            r = b.post(
                "/api/v1/ingest",
                json=batch(afk(at(0), 60, "active"), focus(at(0), 60, "far-app", "t")),
                headers={"Authorization": f"Bearer {token}"},
            )
            assert r.status_code == 200, r.text
            page.next("far-app")
            # Silent for longer than offline_after_s: the sweep tells the page.
            page.next(f'id="device-row-{device}" hx-swap-oob="true" data-status="offline"')


def test_blocking_a_device_shows_on_open_pages(server: Server) -> None:
    admin = browser(server, "ada@acme.test", "admin")
    device, _ = server.enroll(hostname="pc-blocked")
    with live_page(admin) as page:
        r = admin.send("POST", f"/api/v1/devices/{device}/block")
        assert r.status_code == 204, r.text
        page.next(f'<tr id="device-row-{device}" hx-swap-oob="true" data-status="blocked">')


def test_a_deleted_device_leaves_open_pages(server: Server) -> None:
    admin = browser(server, "ada@acme.test", "admin")
    device, _ = server.enroll(hostname="pc-gone")
    with live_page(admin) as page:
        r = admin.send("DELETE", f"/api/v1/devices/{device}", json={"confirm": "pc-gone"})
        assert r.status_code in (200, 204), r.text
        text = page.next(f'<tr id="device-row-{device}" hx-swap-oob="delete">')
    assert "pc-gone" not in text
