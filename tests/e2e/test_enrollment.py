"""Enrollment runs in a child process against a real server: the token file,
the errors the agent logs, and that the agent itself never loads pydantic."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.harness import ServerProcess, free_port, prepare_org
from worklens.agent.enrollment import EnrollmentError, enroll_in_child, load_token


def test_enroll_in_child_saves_a_private_token_and_reports_refusals(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'server.db'}"
    secret, _ = prepare_org(db_url)
    server = ServerProcess(db_url, tmp_path / "server.log")
    server.start()
    try:
        token_path = tmp_path / "state" / "token.json"
        with pytest.raises(EnrollmentError, match=r"refused by .* \(401\)"):
            enroll_in_child(server.url, "wle_wrong", token_path)
        assert not token_path.exists()

        creds = enroll_in_child(server.url, secret, token_path)
        assert creds.device_id > 0 and creds.token.startswith("wld_")
        assert load_token(token_path, server.url) == creds
        assert stat.S_IMODE(os.stat(token_path).st_mode) == 0o600
    finally:
        server.stop()
    down = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(EnrollmentError, match="cannot reach"):
        enroll_in_child(down, secret, tmp_path / "other.json")


def test_the_running_agent_does_not_load_enrollment_dependencies(tmp_path: Path) -> None:
    """What the sender thread imports to enroll: nothing heavy in this process."""
    code = (
        "import sys\n"
        "from worklens.agent import enrollment, runtime\n"
        "heavy = sorted(m for m in ('pydantic', 'httpx') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""
