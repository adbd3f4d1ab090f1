"""A real Chromium against a real `worklens server`: the login page and the vendor assets."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.e2e.conftest import LiveServer
from worklens.server.web import assets

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _pinned_version(package: str) -> str:
    return next(a.version for a in assets.load_pins() if a.package == package)


@pytest.mark.real
def test_login_page_renders_a_form_and_a_screenshot(
    browser_context: BrowserContext, live_server: LiveServer, tmp_path: Path
) -> None:
    page = browser_context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    response = page.goto(f"{live_server.url}/login")
    assert response is not None and response.status == 200
    assert page.locator("form").count() >= 1

    shot = tmp_path / "login.png"
    page.screenshot(path=str(shot), full_page=True)
    data = shot.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 1000
    assert errors == []


@pytest.mark.real
def test_vendor_assets_load_and_run_in_the_browser(
    browser_context: BrowserContext, live_server: LiveServer
) -> None:
    missing = assets.check()
    if missing:
        pytest.skip(f"run python -m worklens.server.web.assets ({missing[0]})")
    page = browser_context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{live_server.url}/login")
    pinned = _pinned_version("htmx.org")
    if "/static/vendor/htmx.min.js" in page.content():
        # A page that includes htmx gets it from the server, and it runs.
        page.wait_for_function("typeof window.htmx !== 'undefined'")
        assert page.evaluate("htmx.version") == pinned

    # Every vendor file, as a template includes them, in a page of the server's origin.
    vendor = f"{live_server.url}/static/vendor"
    page.set_content(
        "<!doctype html><html><head>"
        f'<link rel="stylesheet" href="{vendor}/uPlot.min.css">'
        f'<script src="{vendor}/htmx.min.js"></script>'
        f'<script src="{vendor}/htmx-ext-ws.min.js"></script>'
        f'<script src="{vendor}/uPlot.iife.min.js"></script>'
        '</head><body><div id="chart"></div></body></html>'
    )
    page.wait_for_function("typeof window.htmx !== 'undefined'")
    assert page.evaluate("typeof htmx.version") == "string"
    assert page.evaluate("htmx.version") == pinned
    # uPlot draws a time series into a canvas, styled by its stylesheet.
    drawn = page.evaluate(
        """() => {
            const el = document.getElementById('chart');
            const t0 = Date.UTC(2026, 0, 1) / 1000;
            const xs = Array.from({length: 60}, (_, i) => t0 + i * 60);
            const ys = xs.map((_, i) => Math.sin(i / 5) * 10 + 20);
            const plot = new uPlot(
                {width: 400, height: 200, series: [{}, {label: 'active', stroke: 'blue'}]},
                [xs, ys], el);
            const css = [...document.styleSheets].find(s => s.href.endsWith('/uPlot.min.css'));
            const styled = css !== undefined && css.cssRules.length > 0
                && getComputedStyle(el.querySelector('.uplot')).boxSizing === 'border-box';
            return el.querySelectorAll('canvas').length > 0 && plot.data[0].length === 60
                && styled;
        }"""
    )
    assert drawn is True
    assert errors == []
