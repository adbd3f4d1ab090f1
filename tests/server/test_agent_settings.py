"""The agent settings an organization pushes to its agents: the API (validation,
roles, audit) and their delivery with the answers to agents (WebSocket, HTTP
ingest and heartbeat). On SQLite and PostgreSQL (the ``server`` fixture)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from tests.server.conftest import Server, at, focus
from tests.server.test_device_admin import agent_batch, bearer, ingest
from tests.server.test_users_and_access import Browser, add_user, browser, token_sender
from worklens.protocol import codec, wire
from worklens.server.store import orgs
from worklens.server.store.schema import audit_log

URL = "/api/v1/settings/agent"
NAMES = ("idle_threshold_s", "poll_interval_s", "host_interval_s", "send_interval_s")


def get(server: Server, headers: dict[str, str] | None = None) -> dict[str, Any]:
    r = server.client.get(URL, headers=headers or server.admin())
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def put(server: Server, body: Any) -> httpx.Response:
    return server.client.put(URL, json=body, headers=server.admin())


def values(body: dict[str, Any]) -> dict[str, Any]:
    return {name: body[name] for name in ("version", *NAMES)}


def test_nothing_is_set_until_an_admin_sets_it(server: Server) -> None:
    body = get(server)
    assert values(body) == {"version": 0, **dict.fromkeys(NAMES)}
    assert body["updated_ms"] is None
    # The agents' own defaults and the allowed ranges, for forms.
    assert body["defaults"] == {
        "idle_threshold_s": 300.0,
        "poll_interval_s": 1.0,
        "host_interval_s": 30.0,
        "send_interval_s": 2.0,
    }
    assert body["bounds"]["poll_interval_s"] == [0.1, 60.0]


def test_changes_are_versioned_audited_and_partial(server: Server) -> None:
    r = put(server, {"idle_threshold_s": 60, "poll_interval_s": 0.5})
    assert r.status_code == 200, r.text
    assert values(r.json()) == {
        "version": 1,
        "idle_threshold_s": 60.0,
        "poll_interval_s": 0.5,
        "host_interval_s": None,
        "send_interval_s": None,
    }
    assert r.json()["updated_ms"] > 0
    # The same values again: no new version. A setting left out stays as it is;
    # null gives it back to the agents' own configuration.
    assert put(server, {"idle_threshold_s": 60.0}).json()["version"] == 1
    r = put(server, {"poll_interval_s": None, "host_interval_s": 10})
    assert values(r.json()) == {
        "version": 2,
        "idle_threshold_s": 60.0,
        "poll_interval_s": None,
        "host_interval_s": 10.0,
        "send_interval_s": None,
    }
    assert values(get(server)) == values(r.json())
    with server.services.db.read() as conn:
        rows = conn.execute(
            select(audit_log.c.action, audit_log.c.target, audit_log.c.details).order_by(
                audit_log.c.id
            )
        ).all()
    assert [(a, t) for a, t, _ in rows] == [("settings.agent", "agent settings")] * 3
    assert json.loads(rows[-1].details) == {
        "version": 2,
        "from": {"poll_interval_s": 0.5, "host_interval_s": None},
        "to": {"poll_interval_s": None, "host_interval_s": 10.0},
    }


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"poll_interval_s": 0}, "poll_interval_s"),
        ({"poll_interval_s": 61}, "poll_interval_s"),
        ({"idle_threshold_s": "soon"}, "idle_threshold_s"),
        ({"idle_threshold_s": 4.9}, "idle_threshold_s"),
        ({"host_interval_s": 1e12}, "host_interval_s"),
        ({"send_interval_s": -1}, "send_interval_s"),
        ({"idle_threshold_s": 60, "heartbeat_interval_s": 5}, "heartbeat_interval_s"),
        ({"idle_threshold_s": [60]}, "idle_threshold_s"),
    ],
)
def test_bad_values_get_422_naming_the_field_and_change_nothing(
    server: Server, body: dict[str, Any], field: str
) -> None:
    assert put(server, {"idle_threshold_s": 120}).status_code == 200
    before = get(server)
    r = put(server, body)
    assert r.status_code == 422, r.text
    assert field in r.json()["error"] and r.json()["error"].startswith("invalid agent settings")
    assert any(field in d["loc"] for d in r.json()["detail"])
    assert get(server) == before
    assert put(server, [60]).status_code == 422  # not an object at all


def test_every_role_reads_only_admins_change(server: Server) -> None:
    team = server.client.post("/api/v1/teams", json={"name": "T"}, headers=server.admin())
    person = server.client.post(
        "/api/v1/people", json={"name": "P", "team_id": team.json()["id"]}, headers=server.admin()
    )
    with server.services.db.write() as conn:
        org = orgs.get_org(conn, "acme")
        viewer_token = orgs.create_token(conn, org, "viewer", 1)
    add_user(server, "v@acme.example", "viewer")
    callers = [
        ("viewer", Browser(server).logged_in("v@acme.example").send),
        (
            "manager",
            browser(server, "m@acme.example", "manager", team_ids=(team.json()["id"],)).send,
        ),
        ("self", browser(server, "s@acme.example", "self", person=person.json()["id"]).send),
        ("viewer token", token_sender(server, viewer_token)),
    ]
    admin = browser(server, "a@acme.example", "admin")
    assert admin.send("PUT", URL, json={"send_interval_s": 5}).status_code == 200
    before = get(server)
    for who, send in callers:
        r = send("PUT", URL, json={"idle_threshold_s": 60})
        assert r.status_code == 403 and "admin" in r.json()["error"], (who, r.text)
        r = send("GET", URL)
        assert r.status_code == 200 and values(r.json()) == values(before), who
    assert get(server) == before
    # A session needs its CSRF token for a change, as everywhere.
    r = admin.client.put(URL, json={"idle_threshold_s": 60})
    assert r.status_code == 403 and "CSRF" in r.json()["error"]
    assert server.client.get(URL).status_code == 401


def test_agents_get_the_settings_when_their_version_differs(server: Server) -> None:
    device, token = server.enroll(hostname="pc-set")
    # Nothing set: an agent at version 0 is told nothing.
    r = ingest(server, token, agent_batch(focus(at(0), 5, "vim")))
    assert r.json() == {"accepted": 1, "duplicates": 0, "updated": 0}
    assert put(server, {"idle_threshold_s": 60, "poll_interval_s": 0.5}).status_code == 200
    expected = {
        "version": 1,
        "idle_threshold_s": 60.0,
        "poll_interval_s": 0.5,
        "host_interval_s": None,
        "send_interval_s": None,
    }
    # HTTP ingest: the agent reads the answer with its own (pydantic-free) reader.
    r = ingest(server, token, agent_batch(focus(at(1), 5, "vim"), settings_version=0))
    assert r.json()["control"] == {"rotate_token": None, "settings": expected}
    reply = wire.ingest_reply(r.json())
    assert reply.control == wire.Control(None, wire.AgentSettings(1, 60.0, 0.5, None, None))
    # Once applied (reported), nothing more is sent.
    r = ingest(server, token, agent_batch(focus(at(2), 5, "vim"), settings_version=1))
    assert "control" not in r.json()
    # An agent that predates pushed settings (no version in its batches): nothing.
    r = ingest(server, token, {k: v for k, v in agent_batch().items() if k != "settings_version"})
    assert r.status_code == 200 and "control" not in r.json()
    # The heartbeat endpoint answers the same way.
    beat = server.client.post(
        "/api/v1/heartbeat", json={"settings_version": 0}, headers=bearer(token)
    ).json()
    assert beat["control"]["settings"] == expected and beat["device_id"] == device
    beat = server.client.post(
        "/api/v1/heartbeat", json={"settings_version": 1}, headers=bearer(token)
    ).json()
    assert "control" not in beat
    # The WebSocket's ack, binary and text.
    with server.client.websocket_connect("/api/v1/agent/ws", headers=bearer(token)) as ws:
        ws.send_bytes(codec.pack(wire.batch_frame(0, wire.batch([], 0))))
        ack = wire.server_frame(codec.unpack(ws.receive_bytes()))
        assert ack == wire.AckFrame(0, wire.IngestResult(0, 0, 0), reply.control), (
            "settings in the binary ack"
        )
        ws.send_text(json.dumps(wire.batch_frame(1, wire.batch([], 1))))
        raw = json.loads(ws.receive_text())
        assert raw == {
            "t": "ack",
            "seq": 1,
            "result": {"accepted": 0, "duplicates": 0, "updated": 0},
        }
        # A change while connected reaches the agent with its next answer.
        assert put(server, {"poll_interval_s": None}).json()["version"] == 2
        ws.send_bytes(codec.pack(wire.batch_frame(2, wire.batch([], 1))))
        ack = wire.server_frame(codec.unpack(ws.receive_bytes()))
        assert isinstance(ack, wire.AckFrame) and ack.control is not None
        assert ack.control.settings == wire.AgentSettings(2, 60.0, None, None, None)
    # Back to "not set" for everything: version 3 tells agents to use their own.
    r = put(server, dict.fromkeys(NAMES))
    assert values(r.json()) == {"version": 3, **dict.fromkeys(NAMES)}
    r = ingest(server, token, agent_batch(settings_version=2))
    assert r.json()["control"]["settings"] == {"version": 3, **dict.fromkeys(NAMES)}


def test_one_organizations_settings_never_reach_another(server: Server) -> None:
    _, mine = server.enroll(hostname="pc-acme")
    other_secret, other_admin = server.new_org("globex")
    r = server.client.put(URL, json={"idle_threshold_s": 30}, headers=bearer(other_admin))
    assert r.status_code == 200 and r.json()["version"] == 1
    assert values(get(server)) == {"version": 0, **dict.fromkeys(NAMES)}
    r = ingest(server, mine, agent_batch(settings_version=0))
    assert "control" not in r.json()
    r = server.client.post(
        "/api/v1/enroll",
        json={"enroll_secret": other_secret, "hardware_uuid": "hw-g", "hostname": "g"},
    )
    theirs = r.json()["token"]
    r = ingest(server, theirs, agent_batch(settings_version=0))
    assert r.json()["control"]["settings"]["idle_threshold_s"] == 30.0
