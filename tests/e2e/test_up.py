"""`worklens up`: one command gives a working server, a local agent and a login."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.harness import free_port
from tests.xserver import XServer


@pytest.mark.real
def test_up_runs_server_and_agent_and_prints_a_working_login(
    xdisplay: XServer, tmp_path: Path
) -> None:
    port = free_port()
    out = tmp_path / "up.log"
    with out.open("wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "worklens",
                "up",
                "--port",
                str(port),
                "--data-dir",
                str(tmp_path / "data"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=xdisplay.env,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        devices: list[dict[str, object]] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not devices:
            time.sleep(0.5)
            match = re.search(r"admin token: (wla_\S+)", out.read_text())
            if not match:
                continue
            try:
                r = httpx.get(
                    f"{base}/api/v1/devices", headers={"Authorization": f"Bearer {match[1]}"}
                )
            except httpx.HTTPError:
                continue
            devices = r.json() if r.status_code == 200 else []
        text = out.read_text()
        assert f"dashboard: {base}/" in text
        assert devices and devices[0]["online"] is True, text
        # The first start created the dashboard user "admin" and printed its password once.
        password = re.search(r"log in as: admin  password: (\S+)", text)
        assert password is not None, text
        with httpx.Client(base_url=base) as web:
            assert web.get("/").status_code == 303  # not logged in: to the login page
            form = web.get("/login")
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
            assert csrf is not None
            login = {"email": "admin", "csrf_token": csrf[1]}
            bad = web.post("/login", data={**login, "password": "wrong password"})
            assert bad.status_code == 401 and "Wrong login or password" in bad.text
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', bad.text)
            assert csrf is not None
            r = web.post("/login", data={**login, "csrf_token": csrf[1], "password": password[1]})
            assert r.status_code == 303
            cookie = next(c for c in r.headers.get_list("set-cookie") if "wl_session" in c)
            assert "httponly" in cookie.lower() and "samesite=lax" in cookie.lower()
            page = web.get("/")
            assert page.status_code == 200 and str(devices[0]["hostname"]) in page.text
        assert password[1] not in (tmp_path / "data" / "local-secrets.json").read_text()
        # The data directory's secrets are private.
        assert (tmp_path / "data" / "local-secrets.json").stat().st_mode & 0o777 == 0o600
        assert (tmp_path / "data" / "worklens.db").stat().st_mode & 0o777 == 0o600
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
