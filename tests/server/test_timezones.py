"""The organization's time zone: local-day rollups, zones whose days start
mid-hour, daylight-saving days, and changing the zone with data stored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from tests.server.conftest import T0, Server, afk, batch, focus
from tests.server.test_report_reference import (
    DAY,
    HOUR,
    LO,
    SETTINGS,
    History,
    Reference,
    check,
    enroll,
    post,
    report,
    scenarios,
    send,
)
from worklens.server.store.rollups import RES_DAY
from worklens.server.store.schema import rollups
from worklens.timeline.periods import day_of, zone


def set_zone(server: Server, name: str) -> dict[str, str]:
    r = server.client.patch("/api/v1/org", json={"timezone": name}, headers=server.admin())
    assert r.status_code == 200, r.text
    return dict(r.json())


def local_midnights(name: str) -> list[int]:
    """Offsets from T0 (s) of the local midnights around T0."""
    t0 = round(T0.timestamp() * 1000)
    first = day_of(zone(name), t0 - 3 * DAY * 1000)[0]
    out = [first]
    for _ in range(6):
        out.append(day_of(zone(name), out[-1])[1])
    return [(m - t0) // 1000 for m in out]


def day_periods(server: Server, device: int) -> list[int]:
    with server.services.db.read() as conn:
        return list(
            conn.execute(
                select(rollups.c.period_s)
                .where(rollups.c.device_id == device, rollups.c.res == RES_DAY)
                .distinct()
                .order_by(rollups.c.period_s)
            ).scalars()
        )


def test_the_zone_is_validated_and_readable(server: Server) -> None:
    r = server.client.get("/api/v1/org", headers=server.admin())
    assert r.json() == {"name": "acme", "timezone": "UTC"}
    bad = server.client.patch(
        "/api/v1/org", json={"timezone": "Mars/Olympus"}, headers=server.admin()
    )
    assert bad.status_code == 422
    assert "Mars/Olympus" in bad.json()["error"]
    extra = server.client.patch("/api/v1/org", json={"tz": "UTC"}, headers=server.admin())
    assert extra.status_code == 422
    assert server.client.get("/api/v1/org", headers=server.admin()).json()["timezone"] == "UTC"
    assert set_zone(server, "Asia/Kathmandu") == {"name": "acme", "timezone": "Asia/Kathmandu"}


# Whole-hour, quarter-hour and half-hour offsets, and a zone with DST.
ZONES = ["Asia/Kathmandu", "America/St_Johns", "Europe/Berlin"]


@SETTINGS
@given(scenario=scenarios(2, 3), name=st.sampled_from(ZONES), days=st.integers(1, 2))
def test_reports_match_the_reference_in_local_days(
    server: Server, scenario: tuple[History, list[tuple[int, int]]], name: str, days: int
) -> None:
    set_zone(server, name)
    h, rs = scenario
    device, token, hostname = enroll(server)
    send(server, token, h, h.batches)
    mids = [m for m in local_midnights(name) if m >= LO]
    local = [(mids[i], mids[i + days]) for i in range(len(mids) - days)]
    # Whole local days (day rows), and local days with ragged ends.
    ranges = [*local, *((a + 600, b - 900) for a, b in local), *rs]
    check(server, device, hostname, Reference(h.events, h.sends()), ranges)
    tz = zone(name)
    for period in day_periods(server, device):
        assert day_of(tz, period * 1000)[0] == period * 1000  # rows start at local midnight


def test_changing_the_zone_rebuilds_day_rows_and_keeps_reports_exact(server: Server) -> None:
    device, token, hostname = enroll(server)
    # 30 hours of focus, all active, across two UTC days.
    post(
        server,
        token,
        batch(
            focus(T0 - timedelta(hours=12), 10 * HOUR, "code"),
            focus(T0 - timedelta(hours=2), 20 * HOUR, "mail"),
            afk(T0 - timedelta(hours=12), 30 * HOUR, "active"),
        ),
    )
    whole = (-12 * HOUR, 18 * HOUR)
    ref = {"code": 36000.0, "mail": 72000.0}
    assert report(server, device, "app", *whole) == ref
    utc_days = day_periods(server, device)
    assert all(p % DAY == 0 for p in utc_days)

    set_zone(server, "Asia/Kolkata")  # +05:30: local midnight is 18:30 UTC
    assert day_periods(server, device) == []  # old days dropped at once
    server.services.rollups.refresh()
    kolkata = day_periods(server, device)
    assert kolkata and all(p % DAY == 18 * HOUR + 1800 for p in kolkata)
    # A whole Kolkata day, read from one day row per device.
    day0 = datetime(2026, 11, 2, tzinfo=zone("Asia/Kolkata")).astimezone(UTC)
    start = round((day0 - T0).total_seconds())
    code_ms = max(0, min(start + DAY, -2 * HOUR) - max(start, -12 * HOUR))
    mail_ms = max(0, min(start + DAY, 18 * HOUR) - max(start, -2 * HOUR))
    want = {k: float(v) for k, v in (("code", code_ms), ("mail", mail_ms)) if v}
    assert report(server, device, "app", start, start + DAY) == want
    assert report(server, device, "app", *whole) == ref
    assert report(server, device, "device", *whole) == {f"{hostname} (#{device})": 108000.0}
