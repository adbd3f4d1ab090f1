"""The real agent on a real X server: what the person did is what the report says."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from tests.e2e.harness import AgentProcess, ServerProcess, prepare_org
from tests.xserver import XServer
from worklens.agent.spool import Spool

# Agent timing for tests: fast polls, a short idle threshold.
AGENT = {
    "poll_interval_s": 0.2,
    "idle_threshold_s": 5,
    "send_interval_s": 0.2,
    "host_interval_s": 1,
}
TOLERANCE = 0.8  # seconds: poll period, process scheduling, xdotool round trips


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


def report(
    server: ServerProcess, admin: str, group_by: str, start: float, end: float
) -> dict[str, float]:
    r = httpx.get(
        f"{server.url}/api/v1/reports/time",
        params={"group_by": group_by, "start": iso(start), "end": iso(end)},
        headers={"Authorization": f"Bearer {admin}"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    return {row["key"]: row["seconds"] for row in r.json()["rows"]}


def busy(x: XServer, seconds: float) -> float:
    """Generate real input for ``seconds``; returns the time of the last input."""
    end = time.time() + seconds
    last = time.time()
    while time.time() < end:
        x.input()
        last = time.time()
        time.sleep(0.4)
    return last


@pytest.fixture
def stack(db_url: str, tmp_path: Path) -> Iterator[tuple[ServerProcess, str, str]]:
    secret, admin = prepare_org(db_url)
    server = ServerProcess(db_url, tmp_path / "server.log")
    server.start()
    try:
        yield server, secret, admin
    finally:
        server.stop()


@pytest.mark.real
def test_report_matches_what_was_done_on_screen(
    xdisplay: XServer, stack: tuple[ServerProcess, str, str], tmp_path: Path
) -> None:
    server, secret, admin = stack
    editor = xdisplay.open_window("main.py — Editor", ("editor", "Editor"))
    browser = xdisplay.open_window("Docs — Browser", ("browser", "Browser"))
    xdisplay.focus(editor)
    xdisplay.input()
    agent = AgentProcess(
        server.url, secret, tmp_path / "agent", tmp_path / "agent.log", env=xdisplay.env, **AGENT
    )
    agent.start()
    try:
        busy(xdisplay, 2.5)  # let the agent start and enroll
        t1 = time.time()
        busy(xdisplay, 3)
        xdisplay.set_title(editor, "test.py — Editor")
        t_title = time.time()
        busy(xdisplay, 3)
        xdisplay.focus(browser)
        t2 = time.time()
        t3 = busy(xdisplay, 4)
        time.sleep(8)  # no input: afk after 5 s, dated back to the last input
        xdisplay.focus(editor)
        xdisplay.input()
        t4 = time.time()
        busy(xdisplay, 3)
        agent.signal(signal.SIGTERM)
        t_stop = time.time()
        assert agent.wait(timeout=20) == 0
    finally:
        agent.kill()
        editor.close()
        browser.close()

    apps = report(server, admin, "app", t1, t_stop + 5)
    assert set(apps) == {"Editor", "Browser"}, apps
    assert apps["Editor"] == pytest.approx((t2 - t1) + (t_stop - t4), abs=2 * TOLERANCE)
    assert apps["Browser"] == pytest.approx(t3 - t2, abs=TOLERANCE)
    titles = report(server, admin, "title", t1, t_stop + 5)
    assert titles["main.py — Editor"] == pytest.approx(t_title - t1, abs=TOLERANCE)
    assert titles["test.py — Editor"] == pytest.approx(
        (t2 - t_title) + (t_stop - t4), abs=2 * TOLERANCE
    )
    # SIGTERM sent everything: nothing is left queued.
    with Spool(tmp_path / "agent" / "spool.db") as spool:
        assert spool.stats().depth == 0
    devices = httpx.get(
        f"{server.url}/api/v1/devices", headers={"Authorization": f"Bearer {admin}"}
    ).json()
    assert len(devices) == 1 and devices[0]["agent_version"]


@pytest.mark.real
def test_events_recorded_while_the_server_is_down_arrive_later(
    xdisplay: XServer, stack: tuple[ServerProcess, str, str], tmp_path: Path
) -> None:
    server, secret, admin = stack
    term = xdisplay.open_window("shell", ("xterm", "XTerm"))
    xdisplay.focus(term)
    agent = AgentProcess(
        server.url, secret, tmp_path / "agent", tmp_path / "agent.log", env=xdisplay.env, **AGENT
    )
    agent.start()
    try:
        busy(xdisplay, 2.5)
        server.kill()
        t1 = time.time()
        busy(xdisplay, 4)
        t2 = time.time()
        agent.signal(signal.SIGTERM)
        assert agent.wait(timeout=20) == 0  # the final send fails within its grace time
        with Spool(tmp_path / "agent" / "spool.db") as spool:
            assert spool.stats().depth > 0
        server.start()
        agent.start()
        deadline = time.time() + 30
        apps: dict[str, float] = {}
        while time.time() < deadline:
            apps = report(server, admin, "app", t1, t2)
            if apps.get("XTerm", 0) >= (t2 - t1) - TOLERANCE:
                break
            time.sleep(0.5)
    finally:
        agent.kill()
        term.close()
    assert apps == {"XTerm": pytest.approx(t2 - t1, abs=TOLERANCE)}
