"""Fixtures for end-to-end tests that need a running server."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.harness import ServerProcess, prepare_org


@dataclass(frozen=True)
class LiveServer:
    """A `worklens server` subprocess on loopback with one organization."""

    url: str
    admin_token: str
    enroll_secret: str
    log: Path

    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[LiveServer]:
    """A real server process on a free 127.0.0.1 port and a fresh SQLite database."""
    db_url = f"sqlite:///{tmp_path / 'server.db'}"
    secret, token = prepare_org(db_url)
    server = ServerProcess(db_url, tmp_path / "server.log")
    server.start()
    try:
        yield LiveServer(server.url, token, secret, server.log)
    finally:
        server.stop()
