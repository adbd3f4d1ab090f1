"""A real Redis server for tests (Debian's redis-server), one per test session.

Registered as a plugin in tests/conftest.py; ask for ``redis_url``. When the
binary is missing the test skips with the package to install; in CI
(``CI=true``) that skip is a failure (tests/conftest.py).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.e2e.harness import free_port

HINT = "apt-get install redis-server"


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip(f"redis-server not installed: {HINT}")
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    # No persistence: a throwaway server on loopback only.
    cmd = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    with (workdir / "redis.log").open("ab") as log:
        proc = subprocess.Popen([*cmd, "--dir", str(workdir)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"redis-server did not start: {(workdir / 'redis.log').read_text()}"
                )
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
