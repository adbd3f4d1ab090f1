"""Managing devices: rotating a device's token without losing anything, and
deleting a device with all its data after a confirmation. On SQLite and
PostgreSQL (the ``server`` fixture)."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import Table, func, select

from tests.server.conftest import T0, Server, afk, at, batch, ev, focus
from tests.server.test_aw_ingest import window
from tests.server.test_compaction import FAR_FUTURE_MS
from tests.server.test_ingest_and_report import post, report
from worklens.protocol import codec, wire
from worklens.server.app import create_app
from worklens.server.settings import ServerSettings
from worklens.server.store.compaction import compact
from worklens.server.store.schema import (
    audit_log,
    buckets,
    device_token_rotations,
    event_chunks,
    events,
    metadata,
)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def agent_batch(*events: dict[str, Any], settings_version: int | None = 0) -> dict[str, Any]:
    """A batch as today's agent sends it (it reports its settings version)."""
    return {**batch(*events), "settings_version": settings_version}


def ingest(server: Server, token: str, body: dict[str, Any]) -> httpx.Response:
    return server.client.post("/api/v1/ingest", json=body, headers=bearer(token))


def rotate(server: Server, device: int) -> httpx.Response:
    return server.client.post(f"/api/v1/devices/{device}/rotate", headers=server.admin())


def stored_events(server: Server, device: int) -> int:
    with server.services.db.read() as conn:
        rows = conn.execute(
            select(func.count())
            .select_from(events.join(buckets, buckets.c.id == events.c.bucket_id))
            .where(buckets.c.device_id == device)
        ).scalar_one()
        packed = conn.execute(
            select(func.coalesce(func.sum(event_chunks.c.n), 0))
            .select_from(event_chunks.join(buckets, buckets.c.id == event_chunks.c.bucket_id))
            .where(buckets.c.device_id == device)
        ).scalar_one()
    return int(rows) + int(packed)


def audit_entries(server: Server, action: str) -> list[dict[str, Any]]:
    with server.services.db.read() as conn:
        rows = conn.execute(
            select(audit_log.c.target, audit_log.c.details, audit_log.c.actor_kind)
            .where(audit_log.c.action == action)
            .order_by(audit_log.c.id)
        ).all()
    return [{"target": t, "details": json.loads(d), "actor": k} for t, d, k in rows]


def device_row(server: Server, device: int) -> dict[str, Any]:
    listed = server.client.get("/api/v1/devices", headers=server.admin()).json()
    return next(d for d in listed if d["id"] == device)


# --- token rotation ---------------------------------------------------------------


def test_the_old_token_works_until_the_new_one_is_used_then_401(server: Server) -> None:
    device, old = server.enroll(hostname="pc-rot")
    assert ingest(server, old, agent_batch(focus(at(0), 60, "vim"))).json() == {
        "accepted": 1,
        "duplicates": 0,
        "updated": 0,
    }
    r = rotate(server, device)
    assert r.status_code == 202, r.text
    assert r.json()["already_pending"] is False and r.json()["device_id"] == device
    assert device_row(server, device)["token_rotation_pending"] is True

    # Every answer to the old token carries the same new token until it is used,
    # so an agent that died before saving it gets it again.
    first = ingest(server, old, agent_batch(focus(at(1), 60, "vim")))
    assert first.status_code == 200
    new = first.json()["control"]["rotate_token"]
    assert new.startswith("wld_") and new != old and len(new) == len(old)
    again = ingest(server, old, agent_batch(focus(at(2), 60, "vim")))
    assert again.json()["control"] == {"rotate_token": new, "settings": None}
    beat = server.client.post(
        "/api/v1/heartbeat", json={"agent_version": "t", "settings_version": 0}, headers=bearer(old)
    )
    assert beat.json()["control"]["rotate_token"] == new
    # An agent that predates control messages (no settings_version) is told
    # nothing, and its token keeps working.
    legacy = ingest(server, old, batch(focus(at(3), 60, "vim")))
    assert legacy.status_code == 200 and "control" not in legacy.json()
    with server.services.db.read() as conn:
        stored = conn.execute(select(device_token_rotations)).one()
    assert new not in repr(stored) and old not in repr(stored)  # only a nonce and a hash

    # The first request with the new token retires the old one.
    used = ingest(server, new, agent_batch(focus(at(4), 60, "vim")))
    assert used.status_code == 200 and "control" not in used.json()
    refused = ingest(server, old, agent_batch(focus(at(5), 60, "vim")))
    assert refused.status_code == 401
    assert ingest(server, new, agent_batch(focus(at(6), 60, "vim"))).status_code == 200
    assert device_row(server, device)["token_rotation_pending"] is False
    # Same device, nothing lost: every accepted event is there.
    assert stored_events(server, device) == 6
    assert [e["target"] for e in audit_entries(server, "device.rotate")] == [f"device {device}"]

    # A later rotation derives another token from the current one.
    assert rotate(server, device).json()["already_pending"] is False
    newer = ingest(server, new, agent_batch()).json()["control"]["rotate_token"]
    assert newer not in (old, new)


def test_rotation_over_the_agent_websocket(server: Server) -> None:
    device, old = server.enroll(hostname="pc-ws-rot")
    assert rotate(server, device).status_code == 202
    with server.client.websocket_connect("/api/v1/agent/ws", headers=bearer(old)) as ws_old:
        ws_old.send_bytes(codec.pack(wire.batch_frame(1, agent_batch(focus(at(0), 30, "vim")))))
        ack = wire.server_frame(codec.unpack(ws_old.receive_bytes()))
        assert isinstance(ack, wire.AckFrame) and ack.seq == 1
        assert ack.control is not None and ack.control.rotate_token is not None
        new = ack.control.rotate_token
        # The agent reconnects with the new token: from then on only it works.
        with server.client.websocket_connect("/api/v1/agent/ws", headers=bearer(new)) as ws_new:
            ws_new.send_text(
                json.dumps(wire.batch_frame(0, agent_batch(focus(at(1), 30, "vim"))), default=str)
            )
            ack_new = wire.server_frame(json.loads(ws_new.receive_text()))
            assert ack_new == wire.AckFrame(0, wire.IngestResult(1, 0, 0), None)
        ws_old.send_bytes(codec.pack(wire.batch_frame(2, agent_batch(focus(at(2), 30, "vim")))))
        refused = wire.server_frame(codec.unpack(ws_old.receive_bytes()))
        assert isinstance(refused, wire.ErrorFrame) and refused.status == 401
    assert stored_events(server, device) == 2


def test_asking_again_changes_nothing_and_revoking_cancels_the_rotation(server: Server) -> None:
    device, old = server.enroll(hostname="pc-again")
    assert rotate(server, device).json()["already_pending"] is False
    new = ingest(server, old, agent_batch()).json()["control"]["rotate_token"]
    second = rotate(server, device)
    assert second.status_code == 202 and second.json()["already_pending"] is True
    # The device may have saved the first new token already: it stays the one.
    assert ingest(server, old, agent_batch()).json()["control"]["rotate_token"] == new
    assert server.client.post(
        f"/api/v1/devices/{device}/revoke", headers=server.admin()
    ).status_code == (204)
    assert ingest(server, new, agent_batch()).status_code == 401
    assert ingest(server, old, agent_batch()).status_code == 401
    r = rotate(server, device)
    assert r.status_code == 409 and "enrolls" in r.json()["error"]
    # Enrolling again gives a fresh token and no rotation is left pending.
    assert rotate(server, 10**9).status_code == 404
    with server.services.db.read() as conn:
        assert conn.execute(select(func.count()).select_from(device_token_rotations)).scalar() == 0


def test_enrolling_again_drops_a_pending_rotation(server: Server) -> None:
    hw = str(uuid.uuid4())
    device, old = server.enroll(hardware_uuid=hw, hostname="pc-re")
    rotate(server, device)
    new = ingest(server, old, agent_batch()).json()["control"]["rotate_token"]
    again, fresh = server.enroll(hardware_uuid=hw, hostname="pc-re")
    assert again == device
    assert ingest(server, new, agent_batch()).status_code == 401
    r = ingest(server, fresh, agent_batch())
    assert r.status_code == 200 and "control" not in r.json()


def test_another_organization_cannot_rotate_or_delete(server: Server) -> None:
    device, token = server.enroll(hostname="pc-mine")
    _, other_admin = server.new_org("globex")
    r = server.client.post(f"/api/v1/devices/{device}/rotate", headers=bearer(other_admin))
    assert r.status_code == 404
    r = server.client.request(
        "DELETE",
        f"/api/v1/devices/{device}",
        json={"confirm": "pc-mine"},
        headers=bearer(other_admin),
    )
    assert r.status_code == 404 and "pc-mine" not in r.text
    r = ingest(server, token, agent_batch())
    assert r.status_code == 200 and "control" not in r.json()


# --- deleting a device ----------------------------------------------------------------


def _rows_of(server: Server, device_ids: set[int]) -> dict[str, int]:
    """Rows that belong to these devices: theirs in ``devices`` and in every
    table that has a device_id or bucket_id column (found from the schema, so a
    new table is counted too)."""
    out: dict[str, int] = {}
    with server.services.db.read() as conn:
        their_buckets = {
            int(b)
            for b in conn.execute(
                select(buckets.c.id).where(buckets.c.device_id.in_(device_ids))
            ).scalars()
        }
        for table in metadata.sorted_tables:
            assert isinstance(table, Table)
            if table.name == "devices":
                col, ids = table.c.id, device_ids
            elif "device_id" in table.c:
                col, ids = table.c.device_id, device_ids
            elif "bucket_id" in table.c:
                col, ids = table.c.bucket_id, their_buckets
            else:
                continue
            q = select(func.count()).select_from(table).where(col.in_(ids or {-1}))
            out[table.name] = int(conn.execute(q).scalar_one())
    return out


def _delete(server: Server, device: int, confirm: Any) -> httpx.Response:
    return server.client.request(
        "DELETE", f"/api/v1/devices/{device}", json={"confirm": confirm}, headers=server.admin()
    )


def test_deleting_a_device_takes_all_its_data_and_its_persons_time(server: Server) -> None:
    h = server.admin()
    ada = server.client.post("/api/v1/people", json={"name": "Ada"}, headers=h).json()["id"]
    laptop, laptop_token = server.enroll(hostname="ada-laptop")
    desktop, desktop_token = server.enroll(hostname="ada-desktop")
    for device in (laptop, desktop):
        r = server.client.put(
            f"/api/v1/devices/{device}/person", json={"person_id": ada}, headers=h
        )
        assert r.status_code == 204
    host = ev("host", at(1), 0, cpu_percent=10.0, mem_percent=20.0)
    # The laptop: 09:00-09:30 in vim, an ActivityWatch window bucket, host samples;
    # the desktop overlaps it from 09:20 to 10:00 in emacs.
    post(server, laptop_token, agent_batch(afk(at(0), 1800, "active"), focus(at(0), 1800, "vim")))
    post(server, laptop_token, agent_batch(window(at(40), 60, "firefox", "docs"), host))
    post(
        server,
        desktop_token,
        agent_batch(afk(at(20), 2400, "active"), focus(at(20), 2400, "emacs"), host),
    )
    # Yesterday's laptop events go into chunks; today's stay rows.
    yesterday = T0 - timedelta(days=1)
    post(
        server,
        laptop_token,
        agent_batch(afk(yesterday, 600, "active"), focus(yesterday, 600, "vim")),
    )
    assert compact(server.services.db, FAR_FUTURE_MS).events > 0
    # Today's day goes back into rows for this; yesterday's stays a chunk.
    post(server, laptop_token, agent_batch(afk(at(90), 300, "active"), focus(at(90), 300, "vim")))
    rotate(server, laptop)  # pending rotation rows go too
    server.services.rollups.refresh()

    desktop_alone = report(server, device=desktop)
    assert desktop_alone == {"emacs": 2400.0}
    merged = report(server, person=ada)
    assert merged["vim"] == 1500.0 and merged["emacs"] == 2400.0  # the later start wins
    assert report(server, start=yesterday.isoformat(), end=T0.isoformat()) == {"vim": 600.0}
    laptop_events = stored_events(server, laptop)
    laptop_rows = _rows_of(server, {laptop})
    desktop_rows = _rows_of(server, {desktop})
    for name in ("devices", "buckets", "events", "event_chunks", "host_samples", "rollups"):
        assert laptop_rows[name] > 0, name
    assert laptop_rows["device_token_rotations"] == 1

    with server.client.websocket_connect("/api/v1/agent/ws", headers=bearer(laptop_token)) as ws:
        # Wrong confirmations change nothing.
        for wrong in ("ada-desktop", "ADA-LAPTOP", "ada-laptop ", ""):
            r = _delete(server, laptop, wrong)
            assert r.status_code == 400, r.text
            assert "host name" in r.json()["error"] and "nothing was deleted" in r.json()["error"]
        assert _delete(server, laptop, None).status_code == 422
        no_body = server.client.request("DELETE", f"/api/v1/devices/{laptop}", headers=h)
        assert no_body.status_code == 422
        assert _rows_of(server, {laptop}) == laptop_rows

        r = _delete(server, laptop, "ada-laptop")
        assert r.status_code == 200, r.text
        assert r.json()["hostname"] == "ada-laptop"
        deleted = r.json()["deleted"]
        assert deleted["events"] == laptop_events > laptop_rows["events"]  # chunks counted
        assert deleted["host_samples"] == laptop_rows["host_samples"] == 1

        # Its open socket is refused at its next batch, and so is its token anywhere.
        ws.send_bytes(codec.pack(wire.batch_frame(0, agent_batch(focus(at(50), 5, "vim")))))
        refused = wire.server_frame(codec.unpack(ws.receive_bytes()))
        assert isinstance(refused, wire.ErrorFrame) and refused.status == 401
    assert ingest(server, laptop_token, agent_batch()).status_code == 401

    assert all(n == 0 for n in _rows_of(server, {laptop}).values()), _rows_of(server, {laptop})
    assert _rows_of(server, {desktop}) == desktop_rows
    # The person keeps exactly the desktop's time; so does the organization.
    assert report(server, person=ada) == desktop_alone
    assert report(server) == desktop_alone
    assert report(server, start=yesterday.isoformat(), end=T0.isoformat()) == {}
    assert [d["id"] for d in server.client.get("/api/v1/devices", headers=h).json()] == [desktop]
    entries = audit_entries(server, "device.delete")
    assert len(entries) == 1 and entries[0]["target"] == f"device {laptop}"
    assert entries[0]["details"]["hostname"] == "ada-laptop"
    assert entries[0]["details"]["events"] == laptop_events
    assert _delete(server, laptop, "ada-laptop").status_code == 404


def test_a_device_enrolled_after_a_delete_starts_empty(server: Server, db_url: str) -> None:
    """SQLite may give the next device the deleted one's id. Another server
    process (here: a second app on the same database) that cached the deleted
    device's buckets must not put the new device's events into them."""
    other = create_app(
        ServerSettings(database_url=db_url, rate_per_second=1000, rate_burst=1000),
        migrate_db=False,
    )
    with TestClient(other) as second:
        old, old_token = server.enroll(hostname="pc-old")
        r = second.post(
            "/api/v1/ingest",
            json=agent_batch(afk(at(0), 600, "active"), focus(at(0), 600, "vim")),
            headers=bearer(old_token),
        )
        assert r.status_code == 200, r.text
        assert _delete(server, old, "pc-old").status_code == 200
        new, new_token = server.enroll(hostname="pc-new")
        r = second.post(
            "/api/v1/ingest",
            json=agent_batch(afk(at(0), 60, "active"), focus(at(0), 60, "emacs")),
            headers=bearer(new_token),
        )
        assert r.status_code == 200, r.text
    assert report(server) == {"emacs": 60.0}
    assert stored_events(server, new) == 2
    with server.services.db.read() as conn:
        names = conn.execute(select(buckets.c.name).where(buckets.c.device_id == new)).scalars()
        assert sorted(names) == ["worklens-afk_pc-new", "worklens-focus_pc-new"]
