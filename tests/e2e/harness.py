"""Real processes for end-to-end tests: a `worklens server` and `worklens agent`."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from worklens.server.store import migrate, orgs
from worklens.server.store.db import Database


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def prepare_org(db_url: str, name: str = "acme") -> tuple[str, str]:
    """Migrate the database and create an organization: (enroll secret, admin token)."""
    db = Database(db_url)
    try:
        migrate.upgrade(db)
        now = int(time.time() * 1000)
        with db.write() as conn:
            org, secret = orgs.create_org(conn, name, now)
            token = orgs.create_token(conn, org, "admin", now)
    finally:
        db.dispose()
    return secret, token


class ServerProcess:
    def __init__(
        self, db_url: str, log: Path, port: int | None = None, workers: int = 1
    ) -> None:
        self.db_url = db_url
        self.port = port or free_port()
        self.workers = workers
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> None:
        env = {**os.environ, "WORKLENS_RATE_PER_SECOND": "100000", "WORKLENS_RATE_BURST": "100000"}
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "worklens",
                    "server",
                    "--port",
                    str(self.port),
                    "--db",
                    self.db_url,
                    "--workers",
                    str(self.workers),
                    "--log-level",
                    "warning",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/api/v1/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("server did not become healthy")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        self.kill(signal.SIGTERM)


class AgentProcess:
    def __init__(
        self,
        server: str,
        secret: str,
        state_dir: Path,
        log: Path,
        env: dict[str, str] | None = None,
        **settings: Any,
    ) -> None:
        self.log = log
        self.env = {**os.environ, **(env or {})}
        self.env["WORKLENS_AGENT_SERVER"] = server
        self.env["WORKLENS_AGENT_ENROLL_SECRET"] = secret
        self.env["WORKLENS_AGENT_STATE_DIR"] = str(state_dir)
        # The ActivityWatch API is on, on a port of its own: several agents (or an
        # ActivityWatch server on this machine) never compete for 5600.
        settings.setdefault("aw_port", free_port())
        self.aw_port = int(settings["aw_port"])
        for key, value in settings.items():
            self.env[f"WORKLENS_AGENT_{key.upper()}"] = str(value)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "worklens", "agent", "--log-level", "debug"],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            assert self.proc is not None
            os.killpg(self.proc.pid, sig)

    def wait(self, timeout: float = 30) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(timeout=30)
