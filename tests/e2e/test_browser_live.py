"""The live fleet page in a real browser, fed by a real agent on a real X server.

Debian's Chromium (Playwright) logs in to a `worklens server` process and
keeps the fleet page open; an agent process starts on Xvfb: its device appears
online without a reload, its current app follows the focus from one window to
another, and it turns offline when the agent stops.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

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
