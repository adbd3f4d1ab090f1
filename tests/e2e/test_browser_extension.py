"""The browser extension in a real Chromium reports the tab in front, through a
real agent's ActivityWatch API or straight to a real server with a device token,
and the server's reports split the browser's focus time by URL and domain.

Pages come from a small HTTP server of the test on loopback; the extension is
built by ``worklens extension build`` into a temporary directory and loaded
unpacked into headless Chromium.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import select

from tests.browser import chromium_context, require_browser
from tests.e2e.harness import AgentProcess, ServerProcess, prepare_org
from worklens.cli import main as cli
from worklens.extension import build
from worklens.server.store.db import Database
from worklens.server.store.schema import buckets, event_data, events

BUCKET = "aw-watcher-web-chrome"


class _Pages(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        name = self.path.strip("/").split("?")[0] or "index"
        body = f"<!doctype html><title>Page {name}</title><h1>{name}</h1>".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def pages() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Pages)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def extension_dir(tmp_path: Path) -> Path:
    out = tmp_path / "extension"
    result = CliRunner().invoke(cli, ["extension", "build", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def tab_events(db_url: str) -> list[tuple[int, int, dict[str, Any]]]:
    """(start ms, duration ms, data) of the stored events of the extension's bucket."""
    db = Database(db_url)
    try:
        with db.read() as conn:
            rows = conn.execute(
                select(events.c.start_ms, events.c.duration_ms, event_data.c.data, buckets.c.type)
                .select_from(
                    events.join(buckets, buckets.c.id == events.c.bucket_id).join(
                        event_data, event_data.c.id == events.c.data_id
                    )
                )
                .where(buckets.c.name.like(f"{BUCKET}%"))
                .order_by(events.c.start_ms)
            ).all()
    finally:
        db.dispose()
    assert all(r.type == "web.tab.current" for r in rows)
    return [(int(r.start_ms), int(r.duration_ms), json.loads(r.data)) for r in rows]


def wait_for(check: Callable[[], Any], timeout: float = 45) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got or time.monotonic() > deadline:
            return got
        time.sleep(0.3)


def urls_of(db_url: str) -> set[str]:
    return {data["url"] for _, _, data in tab_events(db_url)}


def post_browser_focus(server: str, token: str, start: datetime, seconds: float) -> None:
    """The focus and presence the agent's X11 collectors would report while
    Chromium was in front (headless Chromium has no window to focus)."""
    body = {
        "v": 1,
        "batch_id": str(uuid.uuid4()),
        "events": [
            {
                "kind": "focus",
                "id": str(uuid.uuid4()),
                "start": start.isoformat(),
                "duration": seconds,
                "data": {"app": "Chromium", "title": "some page"},
            },
            {
                "kind": "afk",
                "id": str(uuid.uuid4()),
                "start": start.isoformat(),
                "duration": seconds,
                "data": {"status": "active"},
            },
        ],
    }
    r = httpx.post(
        f"{server}/api/v1/ingest",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert r.status_code == 200, r.text


def report(server: str, admin: str, group_by: str, start: datetime, end: datetime) -> dict:
    r = httpx.get(
        f"{server}/api/v1/reports/time",
        params={"group_by": group_by, "start": start.isoformat(), "end": end.isoformat()},
        headers={"Authorization": f"Bearer {admin}"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    return {row["key"]: row["seconds"] for row in r.json()["rows"]}


def enroll(server: str, secret: str) -> str:
    r = httpx.post(
        f"{server}/api/v1/enroll",
        json={
            "enroll_secret": secret,
            "hardware_uuid": str(uuid.uuid4()),
            "hostname": "browser-host",
            "os_user": "pat",
            "os": "Linux",
        },
        timeout=30,
    )
    assert r.status_code == 201, r.text
    return str(r.json()["token"])


@pytest.mark.real
def test_extension_reports_tabs_through_the_agent(
    db_url: str, tmp_path: Path, pages: str, extension_dir: Path
) -> None:
    require_browser()
    secret, admin = prepare_org(db_url)
    server = ServerProcess(db_url, tmp_path / "server.log")
    server.start()
    agent = AgentProcess(
        server.url, secret, tmp_path / "agent", tmp_path / "agent.log",
        collectors="", send_interval_s=0.2,
    )
    agent.start()
    try:
        assert wait_for(lambda: _agent_up(agent.aw_port)), "the agent's AW API did not start"
        began = datetime.now(UTC)
        with chromium_context(tmp_path / "profile", extension=extension_dir) as ctx:
            worker = ctx.service_workers[0] if ctx.service_workers else ctx.wait_for_event(
                "serviceworker"
            )
            worker.evaluate(
                "cfg => chrome.storage.local.set(cfg)",
                {"mode": "agent", "agentUrl": f"http://127.0.0.1:{agent.aw_port}"},
            )
            first = ctx.new_page()
            first.goto(f"{pages}/alpha")
            assert wait_for(lambda: f"{pages}/alpha" in urls_of(db_url))
            second = ctx.new_page()  # a new tab in front
            second.goto(f"{pages}/beta")
            assert wait_for(lambda: f"{pages}/beta" in urls_of(db_url))
            first.bring_to_front()  # back to the first tab
            assert wait_for(lambda: len(tab_events(db_url)) >= 3)
            status = worker.evaluate("chrome.storage.local.get('lastStatus')")
            assert status["lastStatus"]["ok"] is True, status
        stored = tab_events(db_url)
        by_url = [data["url"] for _, _, data in stored]
        # alpha, beta, alpha again: a tab switch is a new event each time
        assert by_url[:3] == [f"{pages}/alpha", f"{pages}/beta", f"{pages}/alpha"], by_url
        titles = {data["url"]: data["title"] for _, _, data in stored}
        assert titles[f"{pages}/beta"] == "Page beta"
        assert all(data["audible"] is False and data["incognito"] is False for *_, data in stored)

        # The server counts tab time inside browser focus time.
        token = json.loads((tmp_path / "agent" / "token.json").read_text())["token"]
        post_browser_focus(server.url, token, began - timedelta(seconds=5), 600)
        end = datetime.now(UTC) + timedelta(minutes=15)
        domains = report(server.url, admin, "domain", began - timedelta(minutes=1), end)
        assert domains.get("127.0.0.1", 0) > 0, domains
        per_url = report(server.url, admin, "url", began - timedelta(minutes=1), end)
        assert per_url.get(f"{pages}/alpha", 0) > 0 and per_url.get(f"{pages}/beta", 0) > 0, per_url
    finally:
        agent.kill()
        server.stop()


def _agent_up(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/api/0/info", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.real
def test_extension_reports_straight_to_the_server_with_a_device_token(
    db_url: str, tmp_path: Path, pages: str, extension_dir: Path
) -> None:
    require_browser()
    secret, _ = prepare_org(db_url)
    server = ServerProcess(db_url, tmp_path / "server.log")
    server.start()
    try:
        token = enroll(server.url, secret)
        with chromium_context(tmp_path / "profile", extension=extension_dir) as ctx:
            worker = ctx.service_workers[0] if ctx.service_workers else ctx.wait_for_event(
                "serviceworker"
            )
            ext_id = worker.url.split("/")[2]
            options = ctx.new_page()
            options.goto(f"chrome-extension://{ext_id}/options.html")
            options.wait_for_selector("body[data-loaded=yes]")
            assert options.input_value("#intervalSeconds") == "30"
            # A bad value is refused with a message naming it, and nothing is saved.
            options.check("input[name=mode][value=server]")
            options.fill("#serverUrl", "ftp://nope")
            options.fill("#deviceToken", token)
            options.click("#save")
            options.wait_for_selector("#status.bad")
            assert "ftp://nope" in options.text_content("#status")
            assert worker.evaluate("chrome.storage.local.get('mode')") == {}
            options.fill("#serverUrl", server.url)
            options.click("#save")
            options.wait_for_selector("#status.good")

            page = ctx.new_page()
            page.goto(f"{pages}/gamma")
            assert wait_for(lambda: f"{pages}/gamma" in urls_of(db_url))
            # An unchanged tab is one event, extended by later reports.
            def gamma_events() -> list[tuple[int, int, dict[str, Any]]]:
                return [e for e in tab_events(db_url) if e[2]["url"] == f"{pages}/gamma"]

            before = gamma_events()
            time.sleep(1.5)
            worker.evaluate("self.WorkLensTabs.reportNow()")
            assert wait_for(lambda: gamma_events()[0][1] > before[0][1]), tab_events(db_url)
            gamma = gamma_events()
            assert len(gamma) == 1, gamma
            assert gamma[0][2]["title"] == "Page gamma"
    finally:
        server.stop()


@pytest.mark.real
def test_extension_merge_and_privacy_rules_in_the_browser(
    tmp_path: Path, extension_dir: Path
) -> None:
    """The pure rules of background.js, run by Chromium itself."""
    require_browser()
    with chromium_context(tmp_path / "profile", extension=extension_dir) as ctx:
        worker = ctx.service_workers[0] if ctx.service_workers else ctx.wait_for_event(
            "serviceworker"
        )
        got = worker.evaluate(
            """() => {
              const T = self.WorkLensTabs;
              const tab = {url: "https://example.com/a", title: "A", audible: true};
              const d = T.tabData(tab, 3);
              let n = 0; const id = () => "id" + (++n);
              const e1 = T.merge(null, d, 1000, 45000, id);
              const e2 = T.merge(e1, T.tabData(tab, 4), 31000, 45000, id);
              const e3 = T.merge(e2, T.tabData({...tab, title: "B"}, 4), 32000, 45000, id);
              const e4 = T.merge(e3, T.tabData({...tab, title: "B"}, 4), 200000, 45000, id);
              return {
                d, e1, e2, e3, e4,
                incognito: T.tabData({...tab, incognito: true}, 1),
                internal: T.tabData({url: "chrome://settings", title: "S"}, 1),
                none: T.tabData(undefined, 0),
                wire: T.wireEvent(e2, "b"),
              };
            }"""
        )
    assert got["d"] == {
        "url": "https://example.com/a", "title": "A", "audible": True,
        "incognito": False, "tabCount": 3,
    }
    assert got["e1"]["id"] == "id1" and got["e1"]["durationMs"] == 0
    assert got["e2"]["id"] == "id1" and got["e2"]["durationMs"] == 30000  # extended
    assert got["e3"]["id"] == "id2"  # another title: a new event
    assert got["e4"]["id"] == "id3"  # same data, but past the pulse time
    assert got["incognito"] is None and got["internal"] is None and got["none"] is None
    wire = got["wire"]
    assert wire["kind"] == "aw" and wire["bucket_type"] == "web.tab.current"
    assert wire["duration"] == 30.0 and wire["start"] == "1970-01-01T00:00:01.000Z"


def test_build_writes_a_manifest_per_browser(tmp_path: Path) -> None:
    chromium = build.build("chromium", tmp_path / "c")
    firefox = build.build("firefox", tmp_path / "f")
    c = json.loads((chromium / "manifest.json").read_text())
    f = json.loads((firefox / "manifest.json").read_text())
    assert c["manifest_version"] == f["manifest_version"] == 3
    assert c["background"] == {"service_worker": "background.js"}
    assert f["background"] == {"scripts": ["background.js"]}
    assert f["browser_specific_settings"]["gecko"]["id"] == build.GECKO_ID
    for out in (chromium, firefox):
        assert sorted(p.name for p in out.iterdir()) == sorted([*build.FILES, "manifest.json"])
    with pytest.raises(FileExistsError):
        build.build("chromium", tmp_path / "c")
    with pytest.raises(ValueError, match="'safari'"):
        build.manifest("safari")
    result = CliRunner().invoke(cli, ["extension", "build", "--out", str(tmp_path / "c")])
    assert result.exit_code == 2 and "not empty" in result.output
