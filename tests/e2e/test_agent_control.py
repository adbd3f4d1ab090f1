"""Real agent and server processes: a token rotated while the agent delivers
(and is killed), and settings pushed from the server that change what a
running agent does (host sample cadence; the idle threshold on a real X server)."""

from __future__ import annotations

import itertools
import json
import random
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from sqlalchemy import select

from tests.e2e.harness import AgentProcess, ServerProcess, prepare_org
from tests.e2e.test_delivery import fill_spool, stored
from tests.xserver import XServer
from worklens.server.store.db import Database
from worklens.server.store.schema import host_samples

T = TypeVar("T")
N = 6000


def wait_for(check: Callable[[], T | None], what: str, timeout: float, log: Path) -> T:
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got is not None and got is not False:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)


def token_of(state: Path) -> str | None:
    try:
        token: str = json.loads((state / "token.json").read_text())["token"]
    except (FileNotFoundError, ValueError, KeyError):
        return None
    return token


def log_messages(log: Path) -> list[str]:
    out = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            out.append(json.loads(line)["msg"])
        except (ValueError, KeyError, TypeError):
            continue
    return out


@pytest.fixture
def server(db_url: str, tmp_path: Path) -> Iterator[tuple[ServerProcess, str, str]]:
    secret, admin = prepare_org(db_url)
    proc = ServerProcess(db_url, tmp_path / "server.log")
    proc.start()
    try:
        yield proc, secret, admin
    finally:
        proc.stop()


def api(server: ServerProcess, admin: str, method: str, path: str, **kw: Any) -> httpx.Response:
    return httpx.request(
        method,
        f"{server.url}{path}",
        headers={"Authorization": f"Bearer {admin}"},
        timeout=30,
        **kw,
    )


# --- token rotation -----------------------------------------------------------------


@pytest.mark.real
def test_the_agent_picks_up_a_rotated_token_and_loses_nothing(
    db_url: str, server: tuple[ServerProcess, str, str], tmp_path: Path
) -> None:
    proc, secret, admin = server
    state = tmp_path / "agent"
    total_ms = fill_spool(state, N)
    log = tmp_path / "agent.log"
    agent = AgentProcess(
        proc.url, secret, state, log, collectors="", batch_size=20, send_interval_s=0.05
    )
    agent.start()
    try:
        old = wait_for(lambda: token_of(state), "enrollment", 30, log)
        wait_for(lambda: stored(db_url)[0] > 0, "first events", 30, log)
        devices = api(proc, admin, "GET", "/api/v1/devices").json()
        assert len(devices) == 1
        device = devices[0]["id"]
        r = api(proc, admin, "POST", f"/api/v1/devices/{device}/rotate")
        assert r.status_code == 202, r.text
        in_flight = stored(db_url)[0]
        assert in_flight < N, "the spool was sent before the rotation; raise N"
        new = wait_for(lambda: (t := token_of(state)) != old and t, "the new token", 30, log)
        # Killed at random moments while (and after) it switches tokens.
        rng = random.Random(5)
        for _ in range(4):
            time.sleep(rng.uniform(0.2, 0.8))
            agent.kill()
            agent.start()
        got = wait_for(
            lambda: (s := stored(db_url))[0] >= N and s, "every event on the server", 120, log
        )
        assert got == (N, N, total_ms)
        assert token_of(state) == new
        beat = {"agent_version": "test"}
        url = f"{proc.url}/api/v1/heartbeat"
        assert (
            httpx.post(url, json=beat, headers={"Authorization": f"Bearer {old}"}).status_code
            == 401
        )
        assert (
            httpx.post(url, json=beat, headers={"Authorization": f"Bearer {new}"}).status_code
            == 200
        )
    finally:
        agent.kill()
    devices = api(proc, admin, "GET", "/api/v1/devices").json()
    assert [(d["id"], d["token_rotation_pending"]) for d in devices] == [(device, False)]
    messages = log_messages(log)
    assert sum(m.startswith("enrolled as device") for m in messages) == 1  # never again
    assert not any("refused our token" in m for m in messages)
    assert any(m.startswith("token rotated by the server") for m in messages)


# --- settings pushed to a running agent -----------------------------------------------


def host_times(db_url: str) -> list[float]:
    db = Database(db_url)
    try:
        with db.read() as conn:
            rows = conn.execute(select(host_samples.c.ts_ms).order_by(host_samples.c.ts_ms))
            return [int(t) / 1000 for t in rows.scalars()]
    finally:
        db.dispose()


def applied_at(log: Path, version: int) -> bool:
    return any(m.startswith(f"agent settings v{version} (server)") for m in log_messages(log))


@pytest.mark.real
def test_new_intervals_reach_a_running_agent_within_a_send_cycle(
    db_url: str, server: tuple[ServerProcess, str, str], tmp_path: Path
) -> None:
    proc, secret, admin = server
    state = tmp_path / "agent"
    log = tmp_path / "agent.log"
    agent = AgentProcess(
        proc.url,
        secret,
        state,
        log,
        collectors="host",
        host_interval_s=30,  # locally: one sample at start, then none for 30 s
        send_interval_s=0.2,
        heartbeat_interval_s=1,
    )
    agent.start()
    try:
        wait_for(lambda: len(host_times(db_url)) == 1, "the first host sample", 30, log)
        time.sleep(1.5)  # the agent is in its steady state: a heartbeat a second
        assert len(host_times(db_url)) == 1
        r = api(proc, admin, "PUT", "/api/v1/settings/agent", json={"host_interval_s": 1})
        assert r.status_code == 200 and r.json()["version"] == 1, r.text
        changed = time.time()
        # Applied with the answer to the next batch (heartbeats go every second).
        wait_for(lambda: applied_at(log, 1), "the agent to apply v1", 3, log)
        time.sleep(4.5)
        samples = [t for t in host_times(db_url) if t > changed]
        assert 4 <= len(samples) <= 7, samples  # one a second now
        assert samples[0] - changed < 2.5, "the new interval applied at once"
        gaps = [b - a for a, b in itertools.pairwise(samples)]
        assert all(0.7 < g < 1.3 for g in gaps), gaps
        saved = json.loads((state / "settings.json").read_text())
        assert saved["version"] == 1 and saved["values"] == {"host_interval_s": 1.0}

        # Back to the agent's own 30 s: the samples stop.
        r = api(proc, admin, "PUT", "/api/v1/settings/agent", json={"host_interval_s": None})
        assert r.json()["version"] == 2
        wait_for(lambda: applied_at(log, 2), "the agent to apply v2", 3, log)
        time.sleep(1.5)
        quiet_from = time.time()
        time.sleep(4)
        assert [t for t in host_times(db_url) if t > quiet_from] == []
    finally:
        agent.kill()
    messages = log_messages(log)
    assert any(
        re.fullmatch(r"agent settings v1 \(server\): host_interval_s 30 -> 1 \(server\)", m)
        for m in messages
    ), messages
    assert any("host_interval_s 1 -> 30 (local config)" in m for m in messages)


@pytest.mark.real
def test_a_pushed_idle_threshold_changes_when_a_real_agent_goes_afk(
    xdisplay: XServer, server: tuple[ServerProcess, str, str], tmp_path: Path
) -> None:
    proc, secret, admin = server
    term = xdisplay.open_window("shell", ("xterm", "XTerm"))
    xdisplay.focus(term)
    xdisplay.input()
    log = tmp_path / "agent.log"
    agent = AgentProcess(
        proc.url,
        secret,
        tmp_path / "agent",
        log,
        env=xdisplay.env,
        collectors="focus,idle",
        poll_interval_s=0.2,
        send_interval_s=0.2,
        idle_threshold_s=600,  # locally: away only after 10 minutes without input
    )

    def afk_status() -> str | None:
        devices = api(proc, admin, "GET", "/api/v1/devices").json()
        return devices[0]["afk_status"] if devices else None

    agent.start()
    try:
        wait_for(lambda: afk_status() == "active", "the agent to report activity", 30, log)
        # Without input for 7 s the agent's own threshold keeps it active.
        time.sleep(7)
        assert afk_status() == "active"
        xdisplay.input()
        r = api(proc, admin, "PUT", "/api/v1/settings/agent", json={"idle_threshold_s": 5})
        assert r.status_code == 200, r.text
        wait_for(lambda: applied_at(log, 1), "the agent to apply v1", 3, log)
        xdisplay.input()
        last_input = time.time()
        wait_for(lambda: afk_status() == "afk", "afk after 5 s without input", 15, log)
        went_afk = time.time()
        assert 5 <= went_afk - last_input < 8
        # Dated back to the last input, as with a local threshold.
        devices = api(proc, admin, "GET", "/api/v1/devices").json()
        assert abs(devices[0]["afk_since_ms"] / 1000 - last_input) < 1.0
    finally:
        agent.kill()
        term.close()
    assert any("idle_threshold_s 600 -> 5 (server)" in m for m in log_messages(log))
