"""The live fleet page in a real browser, fed by a real agent on a real X server.

Debian's Chromium (Playwright) logs in to a `worklens server` process and
keeps the fleet page open; an agent process starts on Xvfb: its device appears
online without a reload, its current app follows the focus from one window to
another, and it turns offline when the agent stops.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.e2e.conftest import LiveServer
from tests.e2e.harness import AgentProcess
from tests.e2e.test_agent_x11 import AGENT
from tests.xserver import XServer
from worklens.server.store import orgs, users
from worklens.server.store.db import Database

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Page

PASSWORD = "correct horse battery staple"


def add_admin(tmp_path: Path) -> str:
    """An admin user in the live server's database (see the live_server fixture)."""
    db = Database(f"sqlite:///{tmp_path / 'server.db'}")
    try:
        with db.write() as conn:
            org = orgs.get_org(conn, "acme")
            users.create_user(conn, org.id, "lead@acme.test", PASSWORD, "admin", 0)
    finally:
        db.dispose()
    return "lead@acme.test"


def log_in(page: Page, url: str, login: str) -> None:
    page.goto(f"{url}/login")
    page.fill("input[name=email]", login)
    page.fill("input[name=password]", PASSWORD)
    page.click("form button")
    page.wait_for_url(f"{url}/")


@pytest.mark.real
def test_fleet_page_follows_a_real_agent_live(
    xdisplay: XServer, live_server: LiveServer, browser_context: BrowserContext, tmp_path: Path
) -> None:
    login = add_admin(tmp_path)
    page = browser_context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    log_in(page, live_server.url, login)
    assert page.locator("#fleet-empty").is_visible()
    # The socket is open before anything happens (htmx connects on load).
    page.wait_for_function("() => document.querySelector('[ws-connect]') !== null")
    time.sleep(0.5)

    editor = xdisplay.open_window("main.py — Editor", ("editor", "Editor"))
    other = xdisplay.open_window("Docs — Browser", ("browser", "Browser"))
    xdisplay.focus(editor)
    xdisplay.input()
    agent = AgentProcess(
        live_server.url,
        live_server.enroll_secret,
        tmp_path / "agent",
        tmp_path / "agent.log",
        env=xdisplay.env,
        **AGENT,
    )
    agent.start()
    try:
        # No reload from here on: every change arrives over the page's socket.
        row = page.locator("#fleet-rows tr[data-status=online]")
        row.wait_for(timeout=20_000)
        assert page.locator("#fleet-empty").is_hidden()
        now = page.locator("span.now[data-app=Editor]")
        now.wait_for(timeout=10_000)
        assert "main.py — Editor" in now.inner_text()

        xdisplay.focus(other)
        xdisplay.input()
        page.locator("span.now[data-app=Browser]").wait_for(timeout=10_000)
        assert "Docs — Browser" in page.locator("#fleet-rows").inner_text()

        agent.signal(15)
        assert agent.wait(timeout=20) == 0
        page.locator("#fleet-rows tr[data-status=offline]").wait_for(timeout=10_000)
    finally:
        agent.kill()
        editor.close()
        other.close()
    assert errors == []
    assert page.url == f"{live_server.url}/"  # never reloaded or navigated away


def host_event(at: float, cpu: float) -> dict[str, object]:
    return {
        "id": str(uuid.uuid4()),
        "kind": "host",
        "start": datetime.fromtimestamp(at, UTC).isoformat(),
        "duration": 0.0,
        "data": {"cpu_percent": cpu, "mem_percent": 40.0, "disk_percent": 50.0, "load1": 0.5},
    }


@pytest.mark.real
def test_device_charts_take_new_host_samples_live(
    live_server: LiveServer, browser_context: BrowserContext, tmp_path: Path
) -> None:
    login = add_admin(tmp_path)
    r = httpx.post(
        f"{live_server.url}/api/v1/enroll",
        json={"enroll_secret": live_server.enroll_secret, "hardware_uuid": "h", "hostname": "srv"},
    )
    device, token = r.json()["device_id"], r.json()["token"]

    def send(*events: dict[str, object]) -> None:
        body = {"batch_id": str(uuid.uuid4()), "events": list(events)}
        r = httpx.post(
            f"{live_server.url}/api/v1/ingest",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
        )
        assert r.status_code == 200, r.text

    now = time.time()
    send(*(host_event(now - s, 10.0) for s in (180, 120, 60)))
    page = browser_context.new_page()
    log_in(page, live_server.url, login)
    page.goto(f"{live_server.url}/devices/{device}")
    charts = page.locator("[data-host-charts][data-loaded=true]")
    charts.wait_for(state="attached")
    assert charts.get_attribute("data-points") == "3"
    time.sleep(0.5)  # the page's socket is open
    send(host_event(time.time(), 97.0))
    page.wait_for_function(
        "() => document.querySelector('[data-host-charts]').getAttribute('data-points') === '4'"
    )
    assert page.locator(f"#device-health-{device}").get_attribute("data-sample") is not None
    assert "97" in (page.locator(f"#device-health-{device}").get_attribute("data-sample") or "")
