"""Enrollment, idempotent ingest and the time report, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import timedelta

import zstandard

from tests.server.conftest import T0, Server, afk, at, batch, ev, focus
from worklens.protocol import codec


def report(server: Server, group_by: str = "app", **params: object) -> dict[str, float]:
    q = {"group_by": group_by, "start": T0.isoformat(), "end": (T0 + timedelta(days=1)).isoformat()}
    q.update({k: str(v) for k, v in params.items()})
    r = server.client.get("/api/v1/reports/time", params=q, headers=server.admin())
    assert r.status_code == 200, r.text
    return {row["key"]: row["seconds"] for row in r.json()["rows"]}


def post(server: Server, token: str, body: dict[str, object]) -> dict[str, int]:
    r = server.client.post(
        "/api/v1/ingest", json=body, headers={"Authorization": f"Bearer {token}"}
    )
    assert r.status_code == 200, r.text
    return r.json()


def test_enroll_gives_a_token_that_works_and_a_wrong_secret_gets_401(server: Server) -> None:
    device_id, token = server.enroll()
    assert token.startswith("wld_") and device_id > 0
    r = server.client.post(
        "/api/v1/enroll",
        json={"enroll_secret": "wle_wrong", "hardware_uuid": "x", "hostname": "h"},
    )
    assert r.status_code == 401 and r.json()["error"] == "invalid enrollment secret"
    r = server.client.post(
        "/api/v1/heartbeat", json={}, headers={"Authorization": f"Bearer {token}"}
    )
    assert r.status_code == 200 and r.json()["device_id"] == device_id


def test_reenrolling_keeps_the_device_and_kills_the_old_token(server: Server) -> None:
    first_id, old = server.enroll(hardware_uuid="hw-1")
    second_id, new = server.enroll(hardware_uuid="hw-1")
    assert first_id == second_id and old != new
    assert (
        server.client.post(
            "/api/v1/heartbeat", json={}, headers={"Authorization": f"Bearer {old}"}
        ).status_code
        == 401
    )
    assert (
        server.client.post(
            "/api/v1/heartbeat", json={}, headers={"Authorization": f"Bearer {new}"}
        ).status_code
        == 200
    )


def test_active_time_is_focus_intersected_with_not_afk(server: Server) -> None:
    _, token = server.enroll()
    post(
        server,
        token,
        batch(
            focus(at(0), 600, "code", "main.py"),
            focus(at(10), 300, "chromium", "docs"),
            focus(at(15), 900, "code", "test.py"),
            afk(at(0), 1200, "active"),
            afk(at(20), 600, "afk"),
            afk(at(30), 3600, "active"),
        ),
    )
    # code: 0-10 (600) + 15-20 (300) + 30-45? No: test.py runs 15..30, afk 20..30 -> 300
    assert report(server) == {"code": 900.0, "chromium": 300.0}
    assert report(server, "title") == {"main.py": 600.0, "docs": 300.0, "test.py": 300.0}


def test_resent_batch_and_resent_events_are_stored_once(server: Server) -> None:
    _, token = server.enroll()
    body = batch(focus(at(0), 60, "code", "a"), afk(at(0), 60, "active"))
    assert post(server, token, body) == {"accepted": 2, "duplicates": 0, "updated": 0}
    assert post(server, token, body) == {"accepted": 0, "duplicates": 2, "updated": 0}
    # The same events in a new batch: event ids catch them.
    again = {**body, "batch_id": str(uuid.uuid4())}
    assert post(server, token, again) == {"accepted": 0, "duplicates": 2, "updated": 0}
    assert report(server) == {"code": 60.0}


def test_a_merged_event_sent_again_longer_extends_it(server: Server) -> None:
    _, token = server.enroll()
    e = focus(at(0), 60, "code", "a")
    post(server, token, batch(e, afk(at(0), 7200, "active")))
    assert report(server) == {"code": 60.0}
    longer = {**e, "duration": 5400}
    assert post(server, token, batch(longer))["updated"] == 1
    shorter = {**e, "duration": 30}
    assert post(server, token, batch(shorter))["duplicates"] == 1
    assert report(server) == {"code": 5400.0}


def test_report_clips_to_the_range_and_spans_hours_and_days(server: Server) -> None:
    _, token = server.enroll()
    start = T0 - timedelta(days=2, minutes=30)
    post(
        server,
        token,
        batch(focus(start, 3 * 86400, "code", "x"), afk(start, 3 * 86400, "active")),
    )
    q = {
        "group_by": "app",
        "start": (T0 - timedelta(days=1, minutes=17)).isoformat(),
        "end": (T0 + timedelta(hours=5, minutes=3, seconds=7)).isoformat(),
    }
    r = server.client.get("/api/v1/reports/time", params=q, headers=server.admin())
    assert r.status_code == 200
    expected = timedelta(days=1, minutes=17, hours=5, seconds=3 * 60 + 7).total_seconds()
    assert r.json()["rows"] == [{"key": "code", "seconds": expected}]


def test_group_by_device_and_device_filter(server: Server) -> None:
    d1, t1 = server.enroll(hostname="alpha")
    d2, t2 = server.enroll(hostname="beta")
    post(server, t1, batch(focus(at(0), 100, "code"), afk(at(0), 100, "active")))
    post(server, t2, batch(focus(at(0), 40, "vlc"), afk(at(0), 100, "active")))
    assert report(server, "device") == {f"alpha (#{d1})": 100.0, f"beta (#{d2})": 40.0}
    assert report(server, "app", device=d2) == {"vlc": 40.0}


def test_msgpack_zstd_body_is_accepted(server: Server) -> None:
    _, token = server.enroll()
    body = codec.pack(batch(focus(at(0), 10, "code"), afk(at(0), 10, "active")))
    r = server.client.post(
        "/api/v1/ingest",
        content=body,
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/x-msgpack",
            "Content-Encoding": "zstd",
        },
    )
    assert r.status_code == 200 and r.json()["accepted"] == 2
    assert report(server) == {"code": 10.0}


def test_host_and_heartbeat_events(server: Server) -> None:
    device_id, token = server.enroll()
    res = post(
        server,
        token,
        batch(
            ev("host", at(0), 0, cpu_percent=12.5, mem_percent=40.0, load1=0.5),
            ev("heartbeat", at(0), 0, agent_version="9.9", spool_depth=7),
        ),
    )
    assert res["accepted"] == 2
    devices = server.client.get("/api/v1/devices", headers=server.admin()).json()
    (me,) = [d for d in devices if d["id"] == device_id]
    assert me["agent_version"] == "9.9" and me["spool_depth"] == 7 and me["online"] is True


def test_bad_inputs_get_clear_4xx_and_change_nothing(server: Server) -> None:
    _, token = server.enroll()
    auth = {"Authorization": f"Bearer {token}"}
    good = focus(at(0), 10, "code")
    cases = [
        (b"{not json", {"Content-Type": "application/json"}, 400),
        (b"\xc1\xc1", {"Content-Type": "application/x-msgpack"}, 400),
        (b"garbage", {"Content-Type": "application/x-msgpack", "Content-Encoding": "zstd"}, 400),
        (b"{}", {"Content-Type": "text/plain"}, 400),
        (codec.to_json(batch({**good, "kind": "keystrokes"})), {}, 422),
        (codec.to_json(batch({**good, "duration": -1})), {}, 422),
        (codec.to_json(batch({**good, "duration": "long"})), {}, 422),
        (codec.to_json(batch({**good, "start": "2026-11-02T09:00:00"})), {}, 422),
        (codec.to_json(batch(focus(at(0) + timedelta(days=3650), 1, "x"))), {}, 422),
        (codec.to_json({"batch_id": "nope", "events": []}), {}, 422),
        (codec.to_json({**batch(good), "v": 99}), {}, 422),
        (codec.to_json(batch(good, {"kind": "focus"})), {}, 422),
    ]
    for body, headers, status in cases:
        r = server.client.post("/api/v1/ingest", content=body, headers={**auth, **headers})
        assert r.status_code == status, (body[:60], r.text)
        assert isinstance(r.json()["error"], str) and r.json()["error"]
    # A batch with one bad event stores none of its good ones.
    r = server.client.post("/api/v1/ingest", json=batch(good, {**good, "id": "x"}), headers=auth)
    assert r.status_code == 422
    assert report(server) == {}
    assert server.client.post("/api/v1/ingest", json=batch(good)).status_code == 401
    bad = {"Authorization": "Bearer wld_nope"}
    assert server.client.post("/api/v1/ingest", json=batch(good), headers=bad).status_code == 401


def test_oversized_and_bomb_bodies_are_refused(server: Server) -> None:
    _, token = server.enroll()
    limit = server.services.settings.max_body_bytes
    bomb = zstandard.ZstdCompressor(level=19).compress(b"\x00" * (limit * 8))
    assert len(bomb) < 100_000
    r = server.client.post(
        "/api/v1/ingest",
        content=bomb,
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/x-msgpack",
            "Content-Encoding": "zstd",
        },
    )
    assert r.status_code == 413 and "exceeds" in r.json()["error"]
    r = server.client.post(
        "/api/v1/ingest",
        content=b"x" * (limit + 1),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    assert r.status_code == 413


def test_revoked_and_blocked_devices_are_refused(server: Server) -> None:
    device_id, token = server.enroll()
    auth = {"Authorization": f"Bearer {token}"}
    body = batch(focus(at(0), 10, "code"))
    r = server.client.post(f"/api/v1/devices/{device_id}/block", headers=server.admin())
    assert r.status_code == 204
    assert server.client.post("/api/v1/ingest", json=body, headers=auth).status_code == 403
    server.client.post(f"/api/v1/devices/{device_id}/unblock", headers=server.admin())
    assert server.client.post("/api/v1/ingest", json=body, headers=auth).status_code == 200
    server.client.post(f"/api/v1/devices/{device_id}/revoke", headers=server.admin())
    assert server.client.post("/api/v1/ingest", json=body, headers=auth).status_code == 401


def test_report_request_errors(server: Server) -> None:
    base = {"start": T0.isoformat(), "end": (T0 + timedelta(hours=1)).isoformat()}
    cases = [
        ({**base, "group_by": "colour"}, 400),
        ({"group_by": "app", "start": base["end"], "end": base["start"]}, 400),
        ({**base, "start": "yesterday"}, 422),
        (
            {
                "group_by": "app",
                "start": T0.isoformat(),
                "end": (T0 + timedelta(days=4000)).isoformat(),
            },
            400,
        ),
    ]
    for params, status in cases:
        r = server.client.get("/api/v1/reports/time", params=params, headers=server.admin())
        assert r.status_code == status, r.text
        assert r.json()["error"]
    r = server.client.get("/api/v1/reports/time", params={**base, "group_by": "app"})
    assert r.status_code == 401


def test_one_organization_never_sees_another(server: Server) -> None:
    _, token = server.enroll()
    post(server, token, batch(focus(at(0), 50, "code"), afk(at(0), 50, "active")))
    _, other_admin = server.new_org("globex")
    headers = {"Authorization": f"Bearer {other_admin}"}
    q = {"group_by": "app", "start": T0.isoformat(), "end": (T0 + timedelta(days=1)).isoformat()}
    r = server.client.get("/api/v1/reports/time", params=q, headers=headers)
    assert r.status_code == 200 and r.json()["rows"] == []
    assert server.client.get("/api/v1/devices", headers=headers).json() == []
    device_id = server.client.get("/api/v1/devices", headers=server.admin()).json()[0]["id"]
    assert (
        server.client.post(f"/api/v1/devices/{device_id}/block", headers=headers).status_code == 404
    )
    r = server.client.get(
        "/api/v1/reports/time", params={**q, "device": device_id}, headers=headers
    )
    assert r.status_code == 404  # another organization's device does not exist for it
