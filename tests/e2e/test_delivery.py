"""Nothing lost, nothing stored twice: kill -9 the agent or the server mid-transfer."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.e2e.harness import AgentProcess, ServerProcess, prepare_org
from worklens.agent.spool import Spool
from worklens.protocol.messages import FocusData, FocusEvent
from worklens.server.store.db import Database
from worklens.server.store.schema import events

N = 30_000


def fill_spool(state_dir: Path, n: int) -> int:
    """Queue n focus events as the agent would have; returns their total duration in ms."""
    start = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
    total = 0
    with Spool(state_dir / "spool.db", max_items=10 * n) as spool:
        items = []
        for i in range(n):
            e = FocusEvent(
                id=uuid.uuid4(),
                start=start + timedelta(seconds=2 * i),
                duration=1.5,
                data=FocusData(app=f"app{i % 7}", title=f"title {i % 50}"),
            )
            total += 1500
            items.append((str(e.id), e.model_dump(mode="json")))
        spool.put_many(items)
    return total


def stored(db_url: str) -> tuple[int, int, int]:
    db = Database(db_url)
    try:
        with db.read() as conn:
            row = conn.execute(
                select(
                    func.count(),
                    func.count(func.distinct(events.c.uid)),
                    func.coalesce(func.sum(events.c.duration_ms), 0),
                ).select_from(events)
            ).one()
    finally:
        db.dispose()
    return int(row[0]), int(row[1]), int(row[2])


def wait_for(db_url: str, n: int, timeout: float) -> tuple[int, int, int]:
    deadline = time.monotonic() + timeout
    got = stored(db_url)
    while got[0] < n and time.monotonic() < deadline:
        time.sleep(0.5)
        got = stored(db_url)
    return got


@pytest.fixture
def transfer(db_url: str, tmp_path: Path) -> Iterator[tuple[ServerProcess, AgentProcess, int]]:
    """A running server and a (not yet started) agent whose spool holds N events."""
    secret, _ = prepare_org(db_url)
    server = ServerProcess(db_url, tmp_path / "server.log")
    server.start()
    state = tmp_path / "agent"
    total_ms = fill_spool(state, N)
    agent = AgentProcess(
        server.url,
        secret,
        state,
        tmp_path / "agent.log",
        collectors="",
        batch_size=25,
        send_interval_s=0.05,
    )
    try:
        yield server, agent, total_ms
    finally:
        agent.kill()
        server.stop()


@pytest.mark.real
def test_agent_killed_while_sending_loses_and_duplicates_nothing(
    db_url: str, transfer: tuple[ServerProcess, AgentProcess, int]
) -> None:
    _, agent, total_ms = transfer
    rng = random.Random(7)
    mid_transfer = 0
    for _ in range(12):
        agent.start()
        time.sleep(rng.uniform(0.6, 1.4))
        agent.kill()
        count = stored(db_url)[0]
        mid_transfer += 0 < count < N
        if count == N:
            break
    agent.start()
    got = wait_for(db_url, N, timeout=120)
    assert mid_transfer >= 3, f"only {mid_transfer} kills landed mid-transfer; tune timings"
    assert got == (N, N, total_ms), agent.log.read_text()[-3000:]


@pytest.mark.real
def test_server_killed_while_receiving_loses_and_duplicates_nothing(
    db_url: str, transfer: tuple[ServerProcess, AgentProcess, int]
) -> None:
    server, agent, total_ms = transfer
    rng = random.Random(11)
    mid_transfer = 0
    agent.start()
    time.sleep(2.0)
    for _ in range(5):
        time.sleep(rng.uniform(0.5, 1.5))
        server.kill()
        count = stored(db_url)[0]
        mid_transfer += 0 < count < N
        if count == N:
            break
        time.sleep(rng.uniform(0.2, 1.0))
        server.start()
    if server.proc is None or server.proc.poll() is not None:
        server.start()
    got = wait_for(db_url, N, timeout=180)
    assert mid_transfer >= 2, f"only {mid_transfer} kills landed mid-transfer; tune timings"
    assert got == (N, N, total_ms), agent.log.read_text()[-3000:]
