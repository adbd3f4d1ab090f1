"""Time per URL and domain: the browser tab in front, joined to focus.

Tab events come from ActivityWatch's web watcher (through the agent's AW API,
kind "aw", bucket type ``web.tab.current``). Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from tests.server.conftest import T0, Server, afk, at, batch, focus
from tests.server.test_ingest_and_report import post, report


def tab(start: datetime, duration: float, url: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "kind": "aw",
        "start": start.isoformat(),
        "duration": duration,
        "bucket": "aw-watcher-web-firefox",
        "bucket_type": "web.tab.current",
        "client": "aw-client-web",
        "data": {"url": url, "title": "t", "audible": False, "incognito": False, **extra},
    }


def history(server: Server) -> int:
    """09:00-10:00 active: 20 min in an editor, then 40 min in Firefox, where
    the tabs are YouTube (10 min), GitHub (10), a private window (10), and a
    tab the watcher reported before Firefox got focus, still in front (10)."""
    device, token = server.enroll()
    post(
        server,
        token,
        batch(
            afk(at(0), 3600, "active"),
            focus(at(0), 1200, "code", "main.py"),
            focus(at(20), 2400, "firefox", "Mozilla Firefox"),
            # In front since 09:05 but only counted from 09:20, when Firefox is focused.
            tab(at(5), 1500, "https://www.youtube.com/watch?v=abc"),
            tab(at(30), 600, "https://github.com/acme/app/pull/7"),
            tab(at(40), 600, "https://bank.example/secret", incognito=True),
            tab(at(50), 600, "https://news.ycombinator.com/"),
        ),
    )
    return device


def test_reports_by_url_and_domain_count_browser_time_with_a_tab(server: Server) -> None:
    device = history(server)
    assert report(server, "url", device=device) == {
        "https://www.youtube.com/watch?v=abc": 600.0,
        "https://github.com/acme/app/pull/7": 600.0,
        "https://news.ycombinator.com/": 600.0,
    }
    assert report(server, "domain", device=device) == {
        "youtube.com": 600.0,
        "github.com": 600.0,
        "news.ycombinator.com": 600.0,
    }
    # The private window's time is still Firefox's time; only its URL is hidden.
    assert report(server, "app", device=device) == {"code": 1200.0, "firefox": 2400.0}


def test_category_rules_on_domains_apply_to_browser_time(server: Server) -> None:
    device = history(server)
    got = report(server, "category", device=device)
    assert got["Media > Video"] == 600.0  # youtube.com
    assert got["Work > Programming > Developer sites"] == 600.0  # github.com
    assert got["Work > Programming > Editors"] == 1200.0
    assert sum(got.values()) == 3600.0


def test_timeline_and_csv_show_the_url(server: Server) -> None:
    device = history(server)
    q = {
        "device": str(device),
        "start": T0.isoformat(),
        "end": (T0 + timedelta(hours=1)).isoformat(),
    }
    r = server.client.get("/api/v1/reports/timeline", params=q, headers=server.admin())
    assert r.status_code == 200, r.text
    urls = [(s["app"], s["url"]) for s in r.json()["active"]]
    assert urls == [
        ("code", ""),
        ("firefox", "https://www.youtube.com/watch?v=abc"),
        ("firefox", "https://github.com/acme/app/pull/7"),
        ("firefox", ""),
        ("firefox", "https://news.ycombinator.com/"),
    ]
    r = server.client.get(
        "/api/v1/reports/time",
        params={**q, "group_by": "domain", "format": "csv"},
        headers=server.admin(),
    )
    assert r.status_code == 200 and "youtube.com" in r.text and "bank.example" not in r.text


def test_a_tab_event_without_url_is_refused(server: Server) -> None:
    _, token = server.enroll()
    bad = tab(at(0), 60, "x")
    del bad["data"]["url"]
    r = server.client.post(
        "/api/v1/ingest", json=batch(bad), headers={"Authorization": f"Bearer {token}"}
    )
    assert r.status_code == 422 and "'url' as a string" in r.json()["detail"][0]["msg"]
