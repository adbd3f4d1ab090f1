"""The report pages in a real browser (Debian's Chromium through Playwright)
against a real `worklens server` process: the team report's numbers and bars,
a device page's uPlot charts drawn from the host series, its range picker and
admin actions, window titles that stay text (no script runs, no dialog), and
the README's screenshots.

Screenshots go to docs/images/ only with WORKLENS_SCREENSHOTS=1; otherwise to
the test's temporary directory, so a normal run leaves the tree alone.
"""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.e2e.conftest import LiveServer
from tests.server.conftest import afk, batch, ev, focus
from worklens.server.store import orgs, users
from worklens.server.store.db import Database
from worklens.server.store.schema import devices

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Page

PASSWORD = "correct horse battery staple"
ADMIN = "admin@acme.test"
XSS_TITLE = "<img src=x onerror=alert(1)>"
XSS_APP = "<script>alert(1)</script>"
IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
HOUR = 3600


def shots_dir(tmp_path: Path) -> Path:
    """docs/images with WORKLENS_SCREENSHOTS=1 (to refresh the README's), else a temp dir."""
    if os.environ.get("WORKLENS_SCREENSHOTS", "").strip().lower() in {"1", "true", "yes"}:
        IMAGES.mkdir(parents=True, exist_ok=True)
        return IMAGES
    return tmp_path


class Seed:
    """Data put in through the server's own API, as agents and scripts do."""

    def __init__(self, server: LiveServer, tmp_path: Path) -> None:
        self.server = server
        self.db_url = f"sqlite:///{tmp_path / 'server.db'}"  # see the live_server fixture
        self.http = httpx.Client(base_url=server.url, timeout=30)

    def close(self) -> None:
        self.http.close()

    def admin_user(self) -> None:
        db = Database(self.db_url)
        try:
            with db.write() as conn:
                org = orgs.get_org(conn, "acme")
                users.create_user(conn, org.id, ADMIN, PASSWORD, "admin", 0)
        finally:
            db.dispose()

    def enroll(self, hostname: str, os_user: str = "user") -> tuple[int, str]:
        r = self.http.post(
            "/api/v1/enroll",
            json={
                "enroll_secret": self.server.enroll_secret,
                "hardware_uuid": str(uuid.uuid4()),
                "hostname": hostname,
                "os_user": os_user,
                "os": "Debian GNU/Linux 13",
                "kernel": "6.12.0-amd64",
                "cpu": "AMD Ryzen 7 7840U",
                "cpu_cores": 16,
                "memory_bytes": 32 * 2**30,
                "interfaces": [{"name": "eth0", "addresses": ["10.0.0.7"], "mac": None}],
                "agent_version": "0.1.0",
            },
        )
        assert r.status_code == 201, r.text
        body = r.json()
        return int(body["device_id"]), str(body["token"])

    def ingest(self, token: str, *events: dict[str, Any]) -> None:
        for start in range(0, len(events), 500):
            r = self.http.post(
                "/api/v1/ingest",
                json=batch(*events[start : start + 500]),
                headers={"Authorization": f"Bearer {token}"},
            )
            assert r.status_code == 200, r.text

    def team(self, name: str) -> int:
        r = self.http.post("/api/v1/teams", json={"name": name}, headers=self.server.admin())
        assert r.status_code == 201, r.text
        return int(r.json()["id"])

    def person(self, name: str, team: int) -> int:
        r = self.http.post(
            "/api/v1/people", json={"name": name, "team_id": team}, headers=self.server.admin()
        )
        assert r.status_code == 201, r.text
        return int(r.json()["id"])

    def assign(self, device: int, person: int) -> None:
        r = self.http.put(
            f"/api/v1/devices/{device}/person",
            json={"person_id": person},
            headers=self.server.admin(),
        )
        assert r.status_code == 204, r.text

    def day_of_work(self, token: str, start: datetime, uses: list[tuple[str, str, float]]) -> None:
        """Focus events one after the other from ``start``, all of it active."""
        events = []
        at = start
        for app, title, seconds in uses:
            events.append(focus(at, seconds, app, title))
            at += timedelta(seconds=seconds)
        total = sum(s for _, _, s in uses)
        self.ingest(token, afk(start, total, "active"), *events)

    def host_samples(self, token: str, minutes: int, busy: float = 0.0) -> None:
        now = datetime.now(UTC).replace(microsecond=0)
        samples = [
            ev(
                "host",
                now - timedelta(seconds=30 * i),
                0,
                cpu_percent=min(100.0, 12 + busy + 8 * ((i * 7) % 5)),
                mem_percent=min(100.0, 40 + busy / 2 + (i % 10)),
                swap_percent=3.0,
                disk_percent=min(100.0, 61.0 + busy / 4),
                load1=0.6 + (i % 6) / 4,
                load5=0.7,
                load15=0.65,
            )
            for i in range(minutes * 2)
        ]
        self.ingest(token, *samples)

    def set_last_seen(self, device: int, ms: int) -> None:
        db = Database(self.db_url)
        try:
            with db.write() as conn:
                conn.execute(devices.update().where(devices.c.id == device).values(last_seen_ms=ms))
        finally:
            db.dispose()


@pytest.fixture
def seed(live_server: LiveServer, tmp_path: Path) -> Any:
    s = Seed(live_server, tmp_path)
    s.admin_user()
    yield s
    s.close()


def yesterday() -> date:
    return datetime.now(UTC).date() - timedelta(days=1)  # the organization's zone is UTC


def morning(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 8, 0, tzinfo=UTC)


def log_in(page: Page, url: str) -> None:
    page.goto(f"{url}/login")
    page.fill("input[name=email]", ADMIN)
    page.fill("input[name=password]", PASSWORD)
    page.click("form button")
    page.wait_for_url(f"{url}/")


def watch(page: Page) -> tuple[list[str], list[str]]:
    """Script errors and dialogs (alert, confirm...) on the page, as they happen."""
    errors: list[str] = []
    dialogs: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    def on_dialog(dialog: Any) -> None:
        dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.accept()

    page.on("dialog", on_dialog)
    return errors, dialogs


def team_with_two_people(seed: Seed) -> tuple[int, dict[str, int], date]:
    """Yara watched YouTube in Chromium for 6 h; Zed used VS Code for 10 h
    (and read docs in Chromium for 1 h), yesterday."""
    day = yesterday()
    team = seed.team("Research")
    ids = {}
    for name, uses in (
        ("Yara", [("chromium", "Cats compilation - YouTube — Chromium", 6 * HOUR)]),
        (
            "Zed",
            [("code", "main.py — VS Code", 10 * HOUR), ("chromium", "Python docs", 1 * HOUR)],
        ),
    ):
        person = seed.person(name, team)
        device, token = seed.enroll(f"{name.lower()}-laptop", name.lower())
        seed.day_of_work(token, morning(day), uses)
        seed.assign(device, person)
        ids[name] = person
    return team, ids, day


@pytest.mark.real
def test_team_report_shows_who_spent_how_long_on_what(
    browser_context: BrowserContext, live_server: LiveServer, seed: Seed, tmp_path: Path
) -> None:
    team, ids, day = team_with_two_people(seed)
    page = browser_context.new_page()
    errors, dialogs = watch(page)
    log_in(page, live_server.url)
    page.click("nav >> text=Teams")
    page.click("text=Research")
    page.fill("input[name=start]", day.isoformat())
    page.fill("input[name=end]", day.isoformat())
    page.click("form.pickers button")
    page.wait_for_url(f"**/teams/{team}/report?start={day.isoformat()}*")

    def row(name: str) -> Any:
        return page.locator(f"#team-report tr[data-person='{ids[name]}']")

    assert row("Zed").locator("td.total").inner_text() == "11 h 00 min"
    assert row("Yara").locator("td.total").inner_text() == "6 h 00 min"
    assert row("Zed").locator("li[data-key=code]").inner_text() == "code 10 h 00 min"
    assert row("Zed").locator("li[data-key=chromium]").inner_text() == "chromium 1 h 00 min"
    assert row("Yara").locator("li[data-key=chromium]").inner_text() == "chromium 6 h 00 min"
    # The busiest person comes first, and the bars share one scale: Zed's code
    # bar is 10/6 as long as Yara's chromium bar, and says so on it.
    names = page.locator("#team-report tbody tr td:first-child").all_inner_texts()
    assert names == ["Zed", "Yara"]
    zed_code = row("Zed").locator(".seg[data-key=code]").bounding_box()
    yara_chromium = row("Yara").locator(".seg[data-key=chromium]").bounding_box()
    assert zed_code is not None and yara_chromium is not None
    assert abs(zed_code["width"] / yara_chromium["width"] - 10 / 6) < 0.02
    assert row("Zed").locator(".seg[data-key=code]").inner_text() == "code 10 h 00 min"

    # The same days by category, with one click.
    page.click(".switch >> text=Categories")
    page.wait_for_url("**by=category*")
    assert row("Yara").locator("li[data-key='Media > Video']").count() == 1
    assert "Media > Video 6 h 00 min" in row("Yara").inner_text()
    assert "10 h 00 min" in row("Zed").locator("li", has_text="Programming").inner_text()

    # A range with nothing in it says what to do.
    page.goto(f"{live_server.url}/teams/{team}/report?start=2020-01-01&end=2020-01-02")
    assert "pick another range" in page.locator("#report-empty").inner_text()
    assert errors == [] and dialogs == []


def _canvas_drawn(page: Page, selector: str) -> bool:
    """Whether the canvas under ``selector`` has anything painted on it."""
    return bool(
        page.evaluate(
            """(sel) => {
                const c = document.querySelector(sel + ' canvas');
                if (!c || !c.width || !c.height) return false;
                const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                for (let i = 3; i < px.length; i += 4) if (px[i] !== 0) return true;
                return false;
            }""",
            selector,
        )
    )


@pytest.mark.real
def test_device_page_draws_host_charts_and_manages_the_device(
    browser_context: BrowserContext, live_server: LiveServer, seed: Seed
) -> None:
    device, token = seed.enroll("build-box")
    seed.host_samples(token, minutes=90, busy=30)
    now = datetime.now(UTC)
    seed.ingest(
        token,
        afk(now - timedelta(minutes=20), 1200, "active"),
        focus(now - timedelta(minutes=20), 1200, "Gnome-terminal", "make -j16"),
    )
    page = browser_context.new_page()
    errors, dialogs = watch(page)
    log_in(page, live_server.url)
    page.goto(f"{live_server.url}/devices/{device}")
    charts = page.locator("[data-host-charts]")
    page.wait_for_selector("[data-host-charts][data-loaded=true]")
    assert int(charts.get_attribute("data-points") or 0) == 180  # 90 minutes, every 30 s
    for name in ("cpu", "mem", "disk", "load"):
        assert page.locator(f"[data-chart={name}] canvas").count() == 1
        assert _canvas_drawn(page, f"[data-chart={name}]"), name
    assert page.locator("[data-chart=load] .u-legend").inner_text().count("min") == 3
    assert page.locator("dl.inv").inner_text().count("build-box") == 1
    assert "16" in page.locator("table.identity").inner_text()  # cpu_cores
    assert "make -j16" in page.locator(f"#device-now-{device}").inner_text()

    # The range picker reloads the series: the last hour has fewer points.
    page.click("[data-range='3600']")
    page.wait_for_selector("[data-host-charts][data-loaded=true][data-points='120']")
    assert _canvas_drawn(page, "[data-chart=cpu]")
    # A custom range without samples says what to do and hides the charts.
    page.fill("[data-custom] input[name=start]", "2026-01-01T08:00")
    page.fill("[data-custom] input[name=end]", "2026-01-01T09:00")
    page.click("[data-custom] button")
    page.wait_for_selector("[data-host-charts][data-loaded=true][data-points='0']")
    assert "check that the agent is running" in page.locator("[data-chart-status]").inner_text()
    assert page.locator("[data-charts]").is_hidden()

    # Block, then unblock: each button calls the API with the CSRF token.
    page.click("#block")
    page.locator("#manage [data-status]").filter(has_text="Blocked").wait_for()
    page.wait_for_selector("dd[data-blocked=yes]")  # the page reloaded
    page.click("#unblock")
    page.wait_for_selector("dd[data-blocked=no]")
    # Rotate the token: asks first, then the device gets it with its next answer.
    page.click("#rotate")
    page.locator("#manage [data-status]").filter(has_text="Rotation requested").wait_for()
    assert dialogs == ["confirm: Give this device a new token?"]
    # Delete: a wrong host name is refused and nothing is deleted; the right one
    # deletes the device and its data, and the browser goes to the fleet.
    page.fill("#delete input[name=confirm]", "build")
    page.click("#delete button")
    page.locator("#manage [data-status].error").filter(has_text="nothing was deleted").wait_for()
    assert seed.http.get(f"/api/v1/devices/{device}/host", headers=live_server.admin()).is_success
    page.fill("#delete input[name=confirm]", "build-box")
    page.click("#delete button")
    page.wait_for_url(f"{live_server.url}/")
    assert page.locator(f"#device-row-{device}").count() == 0
    r = seed.http.get(f"/api/v1/devices/{device}/host", headers=live_server.admin())
    assert r.status_code == 404
    assert errors == [] and len(dialogs) == 1


@pytest.mark.real
def test_settings_form_changes_what_agents_are_sent(
    browser_context: BrowserContext, live_server: LiveServer, seed: Seed
) -> None:
    page = browser_context.new_page()
    errors, dialogs = watch(page)
    log_in(page, live_server.url)
    page.click("nav >> text=Settings")
    assert page.locator("input[name=idle_threshold_s]").input_value() == ""
    page.fill("input[name=idle_threshold_s]", "120")
    page.fill("input[name=host_interval_s]", "15")
    page.click("#agent-form button")
    page.locator("#agent-form [data-status]").filter(has_text="Saved").wait_for()
    page.wait_for_selector("text=Version 1, changed")  # the page reloaded
    assert page.locator("input[name=idle_threshold_s]").input_value() == "120"
    body = seed.http.get("/api/v1/settings/agent", headers=live_server.admin()).json()
    assert (body["idle_threshold_s"], body["host_interval_s"]) == (120, 15)
    assert body["poll_interval_s"] is None  # left empty: each agent keeps its own
    # Emptied again: given back to the agents; out of range: refused, said why.
    page.fill("input[name=host_interval_s]", "")
    page.click("#agent-form button")
    page.wait_for_selector("text=Version 2, changed")
    body = seed.http.get("/api/v1/settings/agent", headers=live_server.admin()).json()
    assert body["host_interval_s"] is None and body["idle_threshold_s"] == 120
    page.evaluate("document.querySelector('#agent-form').noValidate = true")
    page.fill("input[name=idle_threshold_s]", "1")
    page.click("#agent-form button")
    page.locator("#agent-form [data-status].error").filter(has_text="idle_threshold_s").wait_for()
    assert errors == [] and dialogs == []


@pytest.mark.real
def test_window_titles_and_apps_stay_text_in_the_browser(
    browser_context: BrowserContext, live_server: LiveServer, seed: Seed
) -> None:
    team = seed.team("Red")
    person = seed.person("Mallory", team)
    device, token = seed.enroll("evil-box")
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(minutes=30)
    seed.ingest(token, afk(start, 1200, "active"), focus(start, 1200, XSS_APP, XSS_TITLE))
    seed.assign(device, person)
    page = browser_context.new_page()
    errors, dialogs = watch(page)
    page.add_init_script("window.__xss = 0; window.alert = () => { window.__xss += 1; };")
    log_in(page, live_server.url)
    days = f"start={(now - timedelta(days=1)).date()}&end={now.date()}"
    for path in (
        "/",
        f"/people/{person}",
        f"/devices/{device}",
        f"/teams/{team}/report?{days}",
        f"/teams/{team}/report?{days}&by=category",
    ):
        page.goto(f"{live_server.url}{path}")
        page.wait_for_load_state("networkidle")
        body = page.locator("body").inner_text()
        if not path.endswith("category"):
            assert XSS_APP in body, path  # shown, as text
        assert page.locator("img[src=x]").count() == 0, path
        assert page.locator("script:not([src])").count() == 0, path
        assert page.evaluate("window.__xss") == 0, path
    page.goto(f"{live_server.url}/people/{person}?date={start.date()}")
    assert XSS_TITLE in page.locator("table[data-table=title]").inner_text()
    assert errors == [] and dialogs == []


@pytest.mark.real
def test_readme_screenshots_of_the_fleet_and_the_team_report(
    browser_context: BrowserContext, live_server: LiveServer, seed: Seed, tmp_path: Path
) -> None:
    out = shots_dir(tmp_path)
    day = yesterday()
    team = seed.team("Research")
    now = datetime.now(UTC).replace(microsecond=0)
    people = (
        (
            "Yara Lind",
            "yara-laptop",
            [
                ("chromium", "Cats compilation - YouTube — Chromium", 6 * HOUR),
                ("slack", "Slack", HOUR),
            ],
            ("chromium", "Cats compilation - YouTube — Chromium"),
            10.0,
        ),
        (
            "Zed Okafor",
            "zed-workstation",
            [
                ("code", "main.py — VS Code", 8 * HOUR),
                ("gnome-terminal-server", "pytest — Terminal", 2 * HOUR),
                ("chromium", "Python docs — Chromium", HOUR),
            ],
            ("code", "report.py — worklens — Visual Studio Code"),
            62.0,
        ),
        (
            "Mia Kovacs",
            "mia-desktop",
            [
                ("libreoffice-calc", "Budget 2027.ods", 3 * HOUR),
                ("thunderbird", "Inbox — Thunderbird", 2 * HOUR),
                ("zoom", "Zoom Meeting", HOUR),
            ],
            ("thunderbird", "Inbox — Thunderbird"),
            35.0,
        ),
    )
    for name, host, uses, current, busy in people:
        person = seed.person(name, team)
        device, token = seed.enroll(host, name.split()[0].lower())
        seed.day_of_work(token, morning(day), uses)
        seed.host_samples(token, minutes=10, busy=busy)
        app, title = current
        seed.ingest(
            token,
            afk(now - timedelta(minutes=25), 1500, "active"),
            focus(now - timedelta(minutes=25), 1500, app, title),
        )
        seed.assign(device, person)
    # A build server nobody uses, and a laptop that has been away for a while.
    _, token = seed.enroll("ci-runner-01", "ci")
    seed.host_samples(token, minutes=10, busy=80)
    away, token = seed.enroll("old-laptop", "guest")
    seed.set_last_seen(away, int(time.time() * 1000) - 3 * HOUR * 1000)

    page = browser_context.new_page()
    page.set_viewport_size({"width": 1280, "height": 640})
    errors, _ = watch(page)
    log_in(page, live_server.url)
    page.wait_for_selector("#fleet-rows tr[data-status=online]")
    fleet = out / "fleet.png"
    page.screenshot(path=str(fleet), full_page=True)

    page.goto(f"{live_server.url}/teams/{team}/report?start={day}&end={day}")
    page.wait_for_selector("#team-report .seg")
    report = out / "team-report.png"
    page.screenshot(path=str(report), full_page=True)
    for shot in (fleet, report):
        data = shot.read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000, shot
    assert errors == []
