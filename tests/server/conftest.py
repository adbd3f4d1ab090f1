"""A real server app on each back end, with one organization and an admin token."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from worklens.server.app import create_app
from worklens.server.services import Services
from worklens.server.settings import ServerSettings
from worklens.server.store import orgs


@dataclass
class Server:
    client: TestClient
    services: Services
    org: str
    enroll_secret: str
    admin_token: str

    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}

    def enroll(self, hardware_uuid: str | None = None, hostname: str = "pc-1") -> tuple[int, str]:
        r = self.client.post(
            "/api/v1/enroll",
            json={
                "enroll_secret": self.enroll_secret,
                "hardware_uuid": hardware_uuid or str(uuid.uuid4()),
                "hostname": hostname,
                "os_user": "alice",
            },
        )
        assert r.status_code == 201, r.text
        body = r.json()
        return body["device_id"], body["token"]

    def new_org(self, name: str) -> tuple[str, str]:
        with self.services.db.write() as conn:
            org, secret = orgs.create_org(conn, name, int(time.time() * 1000))
            token = orgs.create_token(conn, org, "admin", int(time.time() * 1000))
        return secret, token


@pytest.fixture
def server(db_url: str) -> Iterator[Server]:
    app = create_app(ServerSettings(database_url=db_url, rate_per_second=1000, rate_burst=1000))
    services: Services = app.state.services
    with services.db.write() as conn:
        org, secret = orgs.create_org(conn, "acme", int(time.time() * 1000))
        token = orgs.create_token(conn, org, "admin", int(time.time() * 1000))
    with TestClient(app) as client:
        yield Server(client, services, "acme", secret, token)


T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def ev(kind: str, start: datetime, duration: float, **data: Any) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "kind": kind,
        "start": start.isoformat(),
        "duration": duration,
        "data": data,
    }


def focus(start: datetime, duration: float, app: str, title: str = "") -> dict[str, Any]:
    return ev("focus", start, duration, app=app, title=title)


def afk(start: datetime, duration: float, status: str) -> dict[str, Any]:
    return ev("afk", start, duration, status=status)


def batch(*events: dict[str, Any]) -> dict[str, Any]:
    return {"v": 1, "batch_id": str(uuid.uuid4()), "events": list(events)}


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)
