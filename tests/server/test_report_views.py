"""Per-day series, the hour-of-week heatmap, timelines and CSV, through the API."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from typing import Any

from tests.server.conftest import T0, Server, afk, at, batch, focus
from tests.server.test_ingest_and_report import post

DAY = timedelta(days=1)


def get(server: Server, path: str, token: str | None = None, **params: Any) -> Any:
    q = {k: (v.isoformat() if hasattr(v, "isoformat") else str(v)) for k, v in params.items()}
    headers = {"Authorization": f"Bearer {token or server.admin_token}"}
    return server.client.get(f"/api/v1/reports/{path}", params=q, headers=headers)


def two_days(server: Server) -> int:
    """Monday 2026-11-02 09:00-09:25 UTC and Tuesday 09:00-10:00."""
    device, token = server.enroll()
    post(
        server,
        token,
        batch(
            afk(at(0), 3600, "active"),
            focus(at(0), 600, "code", "main.py"),
            focus(at(10), 900, "chromium", '=HYPERLINK("x") - YouTube'),
            afk(T0 + DAY, 3600, "active"),
            focus(T0 + DAY, 3600, "code", "main.py"),
        ),
    )
    return device


def test_series_by_day_and_week_with_csv(server: Server) -> None:
    two_days(server)
    start, end = T0 - timedelta(hours=9), T0 + timedelta(days=6, hours=15)  # Mon..Sun 00:00 UTC
    r = get(server, "series", start=start, end=end, interval="day")
    assert r.status_code == 200, r.text
    periods = r.json()["periods"]
    assert len(periods) == 7
    assert periods[0]["rows"] == [
        {"key": "chromium", "seconds": 900.0},
        {"key": "code", "seconds": 600.0},
    ]
    assert periods[1]["rows"] == [{"key": "code", "seconds": 3600.0}]
    assert all(p["rows"] == [] for p in periods[2:])
    week = get(server, "series", start=start, end=end, interval="week").json()["periods"]
    assert [p["total_seconds"] for p in week] == [5100.0]

    r = get(server, "series", start=start, end=end, interval="day", format="csv")
    assert r.headers["content-type"].startswith("text/csv")
    table = list(csv.reader(io.StringIO(r.text)))
    assert table[0] == ["period_start", "app", "seconds"]
    assert table[1:] == [
        ["2026-11-02T00:00:00+00:00", "chromium", "900.0"],
        ["2026-11-02T00:00:00+00:00", "code", "600.0"],
        ["2026-11-03T00:00:00+00:00", "code", "3600.0"],
    ]
    r = get(server, "time", start=start, end=end, group_by="title", format="csv")
    rows = list(csv.reader(io.StringIO(r.text)))
    # A title that a spreadsheet would run as a formula is quoted.
    assert ['\'=HYPERLINK("x") - YouTube', "900.0"] in rows
    assert get(server, "series", start=start, end=end, interval="month").status_code == 400


def test_heatmap_in_utc_and_in_a_half_hour_zone(server: Server) -> None:
    two_days(server)
    span = {"start": T0 - DAY, "end": T0 + 2 * DAY}
    hm = get(server, "heatmap", **span).json()
    assert hm["timezone"] == "UTC"
    assert hm["seconds"][0][9] == 1500.0  # Monday 09:00-10:00
    assert hm["seconds"][1][9] == 3600.0  # Tuesday
    assert sum(map(sum, hm["seconds"])) == 5100.0

    r = server.client.patch(
        "/api/v1/org", json={"timezone": "Asia/Kolkata"}, headers=server.admin()
    )
    assert r.status_code == 200
    hm = get(server, "heatmap", **span).json()
    # 09:00 UTC is 14:30 in Kolkata: Monday's 25 minutes fall in 14:30-14:55.
    assert hm["seconds"][0][14] == 1500.0
    assert hm["seconds"][1][14] == 1800.0 and hm["seconds"][1][15] == 1800.0
    assert sum(map(sum, hm["seconds"])) == 5100.0
    r = get(server, "heatmap", start=T0, end=T0 - DAY)
    assert r.status_code == 400


def test_timeline_of_a_device(server: Server) -> None:
    device = two_days(server)
    r = get(
        server,
        "timeline",
        device=device,
        start=T0 - timedelta(hours=1),
        end=T0 + timedelta(hours=1),
    )
    assert r.status_code == 200, r.text
    tl = r.json()
    assert [(s["app"], s["start"][11:16], s["end"][11:16]) for s in tl["active"]] == [
        ("code", "09:00", "09:10"),
        ("chromium", "09:10", "09:25"),
    ]
    assert tl["afk"] == [
        {"start": "2026-11-02T09:00:00Z", "end": "2026-11-02T10:00:00Z", "status": "active"}
    ]
    assert get(server, "timeline", device=device, start=T0, end=T0 + 8 * DAY).status_code == 400
    assert get(server, "timeline", device=99999, start=T0, end=T0 + DAY).status_code == 404
    _, other = server.new_org("globex")
    r = get(server, "timeline", token=other, device=device, start=T0, end=T0 + DAY)
    assert r.status_code == 404  # another organization's device does not exist for it
    assert (
        sum(map(sum, get(server, "heatmap", token=other, start=T0, end=T0 + DAY).json()["seconds"]))
        == 0
    )


def test_ranges_longer_than_the_configured_maximum_are_refused(server: Server) -> None:
    two_days(server)
    long = {"start": T0, "end": T0 + 401 * DAY}
    for view in ("time", "series", "heatmap"):
        r = get(server, view, **long)
        assert r.status_code == 400 and "maximum of 400 days" in r.json()["error"], view
    settings = server.services.settings
    default = settings.max_report_days
    settings.max_report_days = 30  # WORKLENS_MAX_REPORT_DAYS=30
    try:
        assert get(server, "time", start=T0, end=T0 + 30 * DAY).status_code == 200
        for view in ("time", "series", "heatmap"):
            r = get(server, view, start=T0, end=T0 + 31 * DAY)
            assert r.status_code == 400 and "maximum of 30 days" in r.json()["error"], view
    finally:
        settings.max_report_days = default


def test_timeline_of_a_device_without_events_is_empty(server: Server) -> None:
    device, _ = server.enroll(hostname="new-pc")
    r = get(server, "timeline", device=device, start=T0, end=T0 + DAY)
    assert r.status_code == 200, r.text
    assert (r.json()["focus"], r.json()["afk"], r.json()["active"]) == ([], [], [])
