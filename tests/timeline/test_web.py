"""Which apps are browsers, and which tab events are joined to focus."""

from __future__ import annotations

import pytest

from worklens.timeline.web import is_browser, tab_of, with_tab


@pytest.mark.parametrize(
    "app",
    [
        "chromium",
        "Chromium-browser",
        "Google-chrome",
        "chrome.exe",
        "firefox",
        "Navigator",
        "firefox-esr",
        "Microsoft Edge",
        "msedge.exe",
        "Brave-browser",
        "Vivaldi-stable",
        "Safari",
        "org.gnome.Epiphany",
    ],
)
def test_browsers_are_recognised(app: str) -> None:
    assert is_browser(app)


@pytest.mark.parametrize(
    "app",
    ["code", "gnome-terminal-server", "Search", "thunderbird", "chromebook-tool", "", "zenity"],
)
def test_other_apps_are_not_browsers(app: str) -> None:
    # Whole words only: "search" contains "arc", "zenity" starts with "zen",
    # "chromebook" with "chrome".
    assert not is_browser(app)


def test_tabs_without_url_or_in_private_windows_are_not_joined() -> None:
    assert tab_of({"url": "https://example.org/", "title": "x"}) == "https://example.org/"
    assert tab_of({"url": "https://example.org/", "incognito": False}) == "https://example.org/"
    assert tab_of({"url": "https://example.org/", "incognito": True}) is None
    assert tab_of({"url": "  "}) is None
    assert tab_of({"url": 3}) is None
    assert tab_of({}) is None


def test_a_joined_payload_keeps_the_window_and_adds_the_url() -> None:
    focus = {"app": "firefox", "title": "Docs — Mozilla Firefox"}
    tab = {"url": "https://docs.python.org/3/", "title": "Docs", "audible": False}
    assert with_tab(focus, tab) == {**focus, "url": "https://docs.python.org/3/"}
    assert focus == {"app": "firefox", "title": "Docs — Mozilla Firefox"}  # not changed
