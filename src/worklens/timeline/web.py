"""Which browser tab was in front: pure rules joining focus with tab events.

The focused window says *which app*; a browser extension (or ActivityWatch's
web watcher) says *which tab* each browser shows. A stretch of active time
belongs to a URL only while the focused app is a browser and a tab event
covers it, as in ActivityWatch's canonical "browser time" query. Tabs of
private windows are never joined: their URLs are not reported.
"""

from __future__ import annotations

import re
from typing import Any

# App names browsers show under (X11 WM_CLASS, Windows executables, macOS
# bundle names), matched as whole words so that "search" is not "arc".
_BROWSER_WORDS = frozenset(
    {
        "arc",
        "brave",
        "chrome",
        "chromium",
        "edge",
        "epiphany",
        "falkon",
        "firefox",
        "floorp",
        "iceweasel",
        "konqueror",
        "librewolf",
        "midori",
        "msedge",
        "navigator",  # Firefox's WM_CLASS instance
        "opera",
        "qutebrowser",
        "safari",
        "seamonkey",
        "thorium",
        "vivaldi",
        "waterfox",
        "yandex",
        "zen",
    }
)
_WORD = re.compile(r"[a-z]+")


def is_browser(app: str) -> bool:
    """``"Google-chrome"``, ``"firefox.exe"``, ``"Microsoft Edge"``: yes; ``"code"``: no."""
    return any(w in _BROWSER_WORDS for w in _WORD.findall(app.lower()))


def tab_of(data: dict[str, Any]) -> str | None:
    """The URL a tab event reports, or None when it must not be joined (no URL,
    or a private window)."""
    url = data.get("url")
    if not isinstance(url, str) or not url.strip() or data.get("incognito") is True:
        return None
    return url


def with_tab(focus: dict[str, Any], tab: dict[str, Any]) -> dict[str, Any]:
    """A focus payload seen together with the browser tab in front: the window's
    app and title, and the tab's URL (from which reports take the domain)."""
    out = dict(focus)
    out["url"] = tab_of(tab) or ""
    return out
