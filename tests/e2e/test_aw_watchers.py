"""ActivityWatch watchers report through a real agent to a real server.

The real ``aw-client`` from PyPI (what aw-watcher-window, aw-watcher-afk and the
editor plugins use) talks to the agent's ActivityWatch API; the agent's spool
and sender deliver the events with the device's token; the server stores each
(merged) event exactly once and counts the window bucket in its reports.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from aw_client import ActivityWatchClient
from aw_core.models import Event
from sqlalchemy import select

from tests.agent.test_aw_api import aw_client_env
from tests.e2e.harness import AgentProcess, ServerProcess, prepare_org
from worklens.server.store.db import Database
from worklens.server.store.schema import buckets, event_data, events

WINDOW = "aw-watcher-window_e2e"
AFK = "aw-watcher-afk_e2e"
EDITOR = "aw-watcher-vim_e2e"
BASE = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)


# Per bucket name: (start ms, duration ms, data, event id) of its events on the server.
Stored = dict[str, list[tuple[int, int, str, bytes]]]


def at(seconds: float) -> datetime:
    return BASE + timedelta(seconds=seconds)


@dataclass
class Setup:
    server: ServerProcess
    agent: AgentProcess
    admin: str
    db_url: str
    client: ActivityWatchClient


@pytest.fixture
def setup(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Setup]:
    aw_client_env(tmp_path, monkeypatch)
    secret, admin = prepare_org(db_url)
    server = ServerProcess(db_url, tmp_path / "server.log")
    server.start()
    agent = AgentProcess(
        server.url,
        secret,
        tmp_path / "agent",
        tmp_path / "agent.log",
        collectors="",
        send_interval_s=0.1,
    )
    agent.start()
    client = ActivityWatchClient("aw-watcher-e2e", host="127.0.0.1", port=agent.aw_port)
    try:
        client.wait_for_start(timeout=30)
        yield Setup(server, agent, admin, db_url, client)
    finally:
        agent.kill()
        server.stop()


def stored(db_url: str) -> Stored:
    db = Database(db_url)
    try:
        with db.read() as conn:
            rows = conn.execute(
                select(
                    buckets.c.name,
                    events.c.start_ms,
                    events.c.duration_ms,
                    event_data.c.data,
                    events.c.uid,
                )
                .select_from(
                    events.join(buckets, buckets.c.id == events.c.bucket_id).join(
                        event_data, event_data.c.id == events.c.data_id
                    )
                )
                .order_by(buckets.c.name, events.c.start_ms)
            ).all()
            types = dict(conn.execute(select(buckets.c.name, buckets.c.type)).all())
    finally:
        db.dispose()
    out: Stored = {name: [] for name in types}
    for name, start, duration, data, uid in rows:
        out[name].append((start, duration, data, bytes(uid)))
    return out


def wait_until(setup: Setup, check: Callable[[Stored], bool], timeout: float = 60) -> Stored:
    deadline = time.monotonic() + timeout
    while True:
        got = stored(setup.db_url)
        if check(got) or time.monotonic() > deadline:
            return got
        time.sleep(0.2)


def ms(t: datetime) -> int:
    return round(t.timestamp() * 1000)


def report(setup: Setup, group_by: str) -> dict[str, float]:
    r = httpx.get(
        f"{setup.server.url}/api/v1/reports/time",
        params={
            "group_by": group_by,
            "start": at(-60).isoformat(),
            "end": at(3600).isoformat(),
        },
        headers={"Authorization": f"Bearer {setup.admin}"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    return {row["key"]: row["seconds"] for row in r.json()["rows"]}


def durations(got: Stored, name: str) -> list[tuple[int, int]]:
    return [(start - ms(BASE), duration) for start, duration, _, _ in got.get(name, [])]


@pytest.mark.real
def test_watchers_report_through_the_agent_exactly_once(setup: Setup) -> None:
    c = setup.client
    c.create_bucket(WINDOW, "currentwindow")
    c.create_bucket(AFK, "afkstatus")
    c.create_bucket(EDITOR, "app.editor.activity")
    code = {"app": "code", "title": "main.py"}
    vim = {"app": "vim", "title": "notes.md"}
    # Window: 0..5 s merged (pulsetime 2), a gap, 10..12 s, then vim 13..15 s.
    for t in (0, 1, 2, 3.5, 5, 10, 11, 12):
        c.heartbeat(WINDOW, Event(timestamp=at(t), data=code), pulsetime=2)
    for t in (13, 14, 15):
        c.heartbeat(WINDOW, Event(timestamp=at(t), data=vim), pulsetime=2)
    # Present 0..14 s, away from 14 s on.
    for t in range(0, 15, 2):
        c.heartbeat(AFK, Event(timestamp=at(t), data={"status": "not-afk"}), pulsetime=3)
    c.heartbeat(AFK, Event(timestamp=at(14), data={"status": "afk"}), pulsetime=3)
    c.heartbeat(AFK, Event(timestamp=at(20), data={"status": "afk"}), pulsetime=10)
    c.insert_events(
        EDITOR,
        [
            Event(timestamp=at(i), duration=0.5, data={"file": "main.py", "line": i})
            for i in range(3)
        ],
    )

    def delivered(got: Stored) -> bool:
        return (
            durations(got, WINDOW) == [(0, 5000), (10_000, 2000), (13_000, 2000)]
            and durations(got, AFK) == [(0, 14_000), (14_000, 6000)]
            and len(got.get(EDITOR, [])) == 3
        )

    got = wait_until(setup, delivered)
    assert delivered(got), (got, setup.agent.log.read_text()[-3000:])
    # Exactly once: one row per event (the heartbeats extended queued copies or
    # stored rows, under one id each), as AW's own server would hold them.
    assert sum(len(v) for v in got.values()) == 8
    assert len({uid for rows in got.values() for *_, uid in rows}) == 8
    assert got[AFK][0][2] == '{"status":"active"}'  # AW's "not-afk", WorkLens's word
    assert got[EDITOR][1][2] == '{"file":"main.py","line":1}'
    # The AW window bucket counts in reports: focus while not afk.
    assert report(setup, "app") == {"code": 7.0, "vim": 1.0}
    assert report(setup, "title") == {"main.py": 7.0, "notes.md": 1.0}

    # More beats later extend the delivered events: updated, not duplicated.
    for t in (16, 17):
        c.heartbeat(WINDOW, Event(timestamp=at(t), data=vim), pulsetime=2)
    c.heartbeat(AFK, Event(timestamp=at(16), data={"status": "not-afk"}), pulsetime=3)
    c.heartbeat(AFK, Event(timestamp=at(18), data={"status": "not-afk"}), pulsetime=3)

    def extended(got: Stored) -> bool:
        return durations(got, WINDOW)[-1] == (13_000, 4000) and len(got.get(AFK, [])) == 3

    got = wait_until(setup, extended)
    assert extended(got), (got, setup.agent.log.read_text()[-3000:])
    assert len(got[WINDOW]) == 3
    # Latest start wins: the not-afk of 16..18 s overrides the afk stretch there, so
    # vim counts 13..14 s and 16..17 s.
    assert report(setup, "app") == {"code": 7.0, "vim": 2.0}

    # Reads, counts and deletes through the agent; deletes stay local.
    assert c.get_eventcount(WINDOW) == 3
    newest = c.get_events(WINDOW, limit=1)[0]
    assert newest.data == vim and newest.duration.total_seconds() == 4.0
    c.delete_event(WINDOW, newest.id)
    assert c.get_eventcount(WINDOW) == 2
    c.delete_bucket(EDITOR)
    assert EDITOR not in c.get_buckets()
    time.sleep(1)
    after = stored(setup.db_url)
    assert len(after[WINDOW]) == 3 and len(after[EDITOR]) == 3

    # The agent stops cleanly with the API running.
    setup.agent.signal(15)
    assert setup.agent.wait(30) == 0


@pytest.mark.real
def test_an_agent_told_to_listen_beyond_loopback_refuses_to_start(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKLENS_")}
    env.update(
        WORKLENS_AGENT_SERVER="http://127.0.0.1:1",
        WORKLENS_AGENT_STATE_DIR=str(tmp_path / "agent"),
        WORKLENS_AGENT_AW_HOST="0.0.0.0",
    )
    out = subprocess.run(
        [sys.executable, "-m", "worklens", "agent"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert out.returncode != 0
    assert "aw_host = '0.0.0.0' (from environment variable WORKLENS_AGENT_AW_HOST)" in out.stderr
    assert "loopback" in out.stderr
    assert not (tmp_path / "agent" / "aw.db").exists()


@pytest.mark.real
def test_a_taken_port_leaves_the_api_off_and_the_agent_running(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        agent = AgentProcess(
            "http://127.0.0.1:1",
            "wle_none",
            tmp_path / "agent",
            tmp_path / "agent.log",
            collectors="",
            aw_port=port,
        )
        agent.start()
        try:
            deadline = time.monotonic() + 30
            while "ActivityWatch API off" not in agent.log.read_text():
                assert time.monotonic() < deadline, agent.log.read_text()
                assert agent.alive(), agent.log.read_text()
                time.sleep(0.1)
            time.sleep(0.5)
            assert agent.alive()
        finally:
            agent.kill()
