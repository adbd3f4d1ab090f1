"""`worklens server --workers 2`: the database is migrated by a child process,
both workers serve the same organization, and what one stores the other reports."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from tests.e2e.harness import ServerProcess
from worklens.server.store import migrate, orgs
from worklens.server.store.db import Database


def test_two_workers_on_a_fresh_database(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'fresh.db'}"
    server = ServerProcess(db_url, tmp_path / "server.log", workers=2)
    server.start()
    try:
        db = Database(db_url)
        try:
            assert migrate.current(db) == migrate.head()  # migrated before the workers started
            with db.write() as conn:
                org, secret = orgs.create_org(conn, "acme", 0)
                admin = orgs.create_token(conn, org, "admin", 0)
        finally:
            db.dispose()
        r = httpx.post(
            f"{server.url}/api/v1/enroll",
            json={"enroll_secret": secret, "hardware_uuid": "hw", "hostname": "pc"},
        )
        assert r.status_code == 201, r.text
        token = r.json()["token"]
        t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
        events = [
            {
                "id": str(uuid.uuid4()),
                "kind": kind,
                "start": t0.isoformat(),
                "duration": 600.0,
                "data": data,
            }
            for kind, data in (
                ("focus", {"app": "code", "title": "x"}),
                ("afk", {"status": "active"}),
            )
        ]
        # Several connections, so both workers take some of the requests.
        for _ in range(6):
            with httpx.Client() as client:
                r = client.post(
                    f"{server.url}/api/v1/ingest",
                    json={"batch_id": str(uuid.uuid4()), "events": events},
                    headers={"Authorization": f"Bearer {token}"},
                )
                assert r.status_code == 200, r.text
        for _ in range(4):
            with httpx.Client() as client:
                r = client.get(
                    f"{server.url}/api/v1/reports/time",
                    params={"start": t0.isoformat(), "end": (t0 + timedelta(hours=1)).isoformat()},
                    headers={"Authorization": f"Bearer {admin}"},
                )
                assert r.status_code == 200 and r.json()["rows"] == [
                    {"key": "code", "seconds": 600.0}
                ]
    finally:
        server.stop()
