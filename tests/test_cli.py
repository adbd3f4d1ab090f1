"""The `worklens` command as a user types it, in real subprocesses."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from worklens.protocol.messages import Batch, SystemIdentity
from worklens.server.store import migrate, orgs
from worklens.server.store.db import Database
from worklens.server.store.devices import authenticate, enroll
from worklens.server.store.ingest import EventWriter


def wl(
    *args: str, db: str | None = None, env_extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "worklens", *args]
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", **(env_extra or {})}
    if db:
        env["WORKLENS_DATABASE_URL"] = db
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)


def test_org_token_report_round_trip(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'wl.db'}"
    r = wl("org", "create", "acme", db=db)
    assert r.returncode == 0, r.stderr
    secret = r.stdout.strip().splitlines()[-1]
    assert secret.startswith("wle_")
    r = wl("org", "create", "acme", db=db)
    assert r.returncode != 0 and "already exists" in r.stderr
    r = wl("token", "create", "--org", "acme", "--role", "admin", "--db", db)
    assert r.returncode == 0 and r.stdout.strip().splitlines()[-1].startswith("wla_")
    r = wl("token", "create", "--org", "nope", db=db)
    assert r.returncode == 2 and "no organization named 'nope'" in r.stderr

    database = Database(db)
    t0 = datetime(2026, 11, 2, 9, tzinfo=UTC)
    with database.write() as conn:
        org = orgs.get_org(conn, "acme")
        _, token = enroll(conn, org, SystemIdentity(hardware_uuid="hw", hostname="pc"), 0)
        device = authenticate(conn, token)
    assert device is not None
    batch = Batch.model_validate(
        {
            "batch_id": str(uuid.uuid4()),
            "events": [
                {
                    "id": str(uuid.uuid4()),
                    "kind": "focus",
                    "start": t0.isoformat(),
                    "duration": 5400,
                    "data": {"app": "code", "title": "x"},
                },
                {
                    "id": str(uuid.uuid4()),
                    "kind": "afk",
                    "start": t0.isoformat(),
                    "duration": 3600,
                    "data": {"status": "active"},
                },
            ],
        }
    )
    EventWriter(database).ingest(device, batch, 0)
    database.dispose()
    end = (t0 + timedelta(days=1)).isoformat()
    r = wl(
        "report",
        "time",
        "--group-by",
        "app",
        "--start",
        t0.isoformat(),
        "--end",
        end,
        "--json",
        db=db,
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["rows"] == [{"key": "code", "seconds": 3600.0}]
    r = wl("report", "time", "--start", t0.isoformat(), "--end", end, db=db)
    assert "code" in r.stdout and "1h 00m 00s" in r.stdout
    r = wl("report", "time", "--start", "yesterday", "--end", end, db=db)
    assert r.returncode == 2 and "'yesterday' is not an ISO 8601" in r.stderr
    r = wl("report", "time", "--start", end, "--end", t0.isoformat(), db=db)
    assert r.returncode == 2 and "start must be before end" in r.stderr
    r = wl("report", "time", "--group-by", "colour", "--start", end, "--end", end, db=db)
    assert r.returncode == 2 and "colour" in r.stderr
    week = (t0 + timedelta(days=7, hours=1)).isoformat()
    for what in ("time", "heatmap"):
        r = wl(
            "report",
            what,
            "--start",
            t0.isoformat(),
            "--end",
            week,
            db=db,
            env_extra={"WORKLENS_MAX_REPORT_DAYS": "7"},
        )
        assert r.returncode == 2 and "maximum of 7 days" in r.stderr, what
    r = wl("report", "time", "--group-by", "domain", "--start", t0.isoformat(), "--end", end, db=db)
    assert r.returncode == 0 and "no browser time with a known tab" in r.stdout


def test_db_upgrade_and_help(tmp_path: Path) -> None:
    r = wl("db", "upgrade", "--db", f"sqlite:///{tmp_path / 'x.db'}")
    assert r.returncode == 0 and f"revision {migrate.head()}" in r.stdout
    r = wl("--help")
    for command in ("up", "server", "agent", "org", "token", "report", "db"):
        assert command in r.stdout
    r = wl("agent", "--server", "ftp://nowhere", "--state-dir", str(tmp_path))
    assert r.returncode == 1 and "server = 'ftp://nowhere'" in r.stderr


def test_categories_teams_people_and_time_zone(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'wl.db'}"
    assert wl("org", "create", "acme", db=db).returncode == 0
    database = Database(db)
    t0 = datetime(2026, 11, 2, 9, tzinfo=UTC)
    with database.write() as conn:
        org = orgs.get_org(conn, "acme")
        _, token = enroll(conn, org, SystemIdentity(hardware_uuid="hw", hostname="pc"), 0)
        device = authenticate(conn, token)
    assert device is not None

    def event(kind: str, duration: float, **data: str) -> dict[str, object]:
        start = t0.isoformat()
        return {
            "id": str(uuid.uuid4()),
            "kind": kind,
            "start": start,
            "duration": duration,
            "data": data,
        }

    batch = Batch.model_validate(
        {
            "batch_id": str(uuid.uuid4()),
            "events": [
                event("focus", 1800, app="code", title="main.py"),
                event("afk", 1800, status="active"),
            ],
        }
    )
    EventWriter(database).ingest(device, batch, 0)
    database.dispose()
    span = ["--start", t0.isoformat(), "--end", (t0 + timedelta(days=1)).isoformat(), "--json"]

    r = wl("report", "time", "--group-by", "category", *span, db=db)
    assert json.loads(r.stdout)["rows"] == [
        {"key": "Work > Programming > Editors", "seconds": 1800.0}
    ]
    r = wl("categories", "show", db=db)
    assert r.returncode == 0 and json.loads(r.stdout)["categories"]
    rules = tmp_path / "rules.json"
    rules.write_text(
        json.dumps(
            {
                "categories": [
                    {
                        "path": ["Deep work"],
                        "rule": {"regex": "^code$"},
                        "productivity": "productive",
                    }
                ]
            }
        )
    )
    r = wl("categories", "set", str(rules), db=db)
    assert r.returncode == 0, r.stderr
    r = wl("report", "time", "--group-by", "category", "--depth", "1", *span, db=db)
    assert json.loads(r.stdout)["rows"] == [{"key": "Deep work", "seconds": 1800.0}]
    rules.write_text(json.dumps({"categories": [{"path": ["Bad"], "rule": {"regex": "(a+)+$"}}]}))
    r = wl("categories", "set", str(rules), db=db)
    assert r.returncode == 2 and "too slow" in r.stderr
    r = wl("report", "time", "--group-by", "productivity", *span, db=db)
    assert json.loads(r.stdout)["rows"] == [{"key": "productive", "seconds": 1800.0}]

    assert wl("team", "create", "Research", db=db).returncode == 0
    r = wl("person", "create", "Ada", "--team", "Nope", db=db)
    assert r.returncode == 2 and "no team 'Nope'" in r.stderr
    r = wl("person", "create", "Ada", "--team", "Research", db=db)
    assert r.returncode == 0 and "id 1" in r.stdout
    assert wl("person", "assign", "1", str(device.id), db=db).returncode == 0
    assert wl("person", "assign", "1", "999", db=db).returncode == 1
    overrides = tmp_path / "team.json"
    overrides.write_text(
        json.dumps(
            {
                "replace": [
                    {"path": ["Deep work"], "rule": {"regex": "^code$"}, "productivity": "neutral"}
                ]
            }
        )
    )
    assert wl("categories", "set", str(overrides), "--team", "Research", db=db).returncode == 0
    r = wl("report", "time", "--group-by", "productivity", *span, db=db)
    assert json.loads(r.stdout)["rows"] == [{"key": "neutral", "seconds": 1800.0}]

    r = wl("org", "set-timezone", "Mars/Olympus", db=db)
    assert r.returncode == 2 and "Mars/Olympus" in r.stderr
    r = wl("org", "set-timezone", "Asia/Kolkata", db=db)
    assert r.returncode == 0 and "set to Asia/Kolkata" in r.stdout
    r = wl("report", "time", *span, db=db)
    assert json.loads(r.stdout)["rows"] == [{"key": "code", "seconds": 1800.0}]


def test_report_formats_series_heatmap_and_timeline(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'wl.db'}"
    assert wl("org", "create", "acme", db=db).returncode == 0
    database = Database(db)
    t0 = datetime(2026, 11, 2, 9, tzinfo=UTC)  # a Monday
    with database.write() as conn:
        org = orgs.get_org(conn, "acme")
        _, token = enroll(conn, org, SystemIdentity(hardware_uuid="hw", hostname="pc"), 0)
        device = authenticate(conn, token)
    assert device is not None
    events = [
        {"kind": "focus", "start": t0, "duration": 1800, "data": {"app": "code", "title": "=1+1"}},
        {"kind": "afk", "start": t0, "duration": 1800, "data": {"status": "active"}},
        {"kind": "focus", "start": t0 + timedelta(days=1), "duration": 600, "data": {"app": "vim"}},
        {
            "kind": "afk",
            "start": t0 + timedelta(days=1),
            "duration": 600,
            "data": {"status": "active"},
        },
    ]
    batch = Batch.model_validate(
        {
            "batch_id": str(uuid.uuid4()),
            "events": [
                {**e, "id": str(uuid.uuid4()), "start": e["start"].isoformat()}
                for e in events  # type: ignore[attr-defined]
            ],
        }
    )
    EventWriter(database).ingest(device, batch, 0)
    database.dispose()
    span = ["--start", "2026-11-02T00:00:00Z", "--end", "2026-11-04T00:00:00Z"]

    r = wl("report", "time", "--group-by", "title", "--csv", *span, db=db)
    assert r.returncode == 0, r.stderr
    # A title a spreadsheet would run as a formula is quoted, as in the API.
    assert r.stdout.splitlines() == ["title,seconds", "'=1+1,1800.0", ",600.0"]
    r = wl("report", "time", "--interval", "day", "--json", *span, db=db)
    periods = json.loads(r.stdout)["periods"]
    assert [p["rows"] for p in periods] == [
        [{"key": "code", "seconds": 1800.0}],
        [{"key": "vim", "seconds": 600.0}],
    ]
    r = wl("report", "time", "--interval", "day", *span, db=db)
    assert "== 2026-11-03T00:00:00+00:00" in r.stdout and "vim" in r.stdout
    r = wl("report", "heatmap", "--json", *span, db=db)
    seconds = json.loads(r.stdout)["seconds"]
    assert seconds[0][9] == 1800.0 and seconds[1][9] == 600.0
    r = wl("report", "heatmap", *span, db=db)
    assert r.stdout.splitlines()[2].startswith("Mon") and "  30" in r.stdout
    r = wl("report", "timeline", "--device", str(device.id), "--csv", *span, db=db)
    assert r.stdout.splitlines()[1].startswith(
        "2026-11-02T09:00:00+00:00,2026-11-02T09:30:00+00:00,code"
    )
    r = wl("report", "timeline", *span, db=db)
    assert r.returncode == 2 and "--device" in r.stderr
    r = wl("report", "time", "--person", "5", *span, db=db)
    assert r.returncode == 2 and "no person 5" in r.stderr


def wl_typed(*args: str, db: str, typed: str) -> subprocess.CompletedProcess[str]:
    """`worklens` with ``typed`` on stdin and no terminal (a new session has no
    controlling tty), so password prompts read stdin as they would a pipe."""
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "WORKLENS_DATABASE_URL": db}
    return subprocess.run(
        [sys.executable, "-m", "worklens", *args],
        input=typed,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        start_new_session=True,
    )


def test_user_create_list_password_and_disable(tmp_path: Path) -> None:
    from worklens.server.store import audit, users

    db = f"sqlite:///{tmp_path / 'wl.db'}"
    assert wl("org", "create", "acme", db=db).returncode == 0
    assert wl("team", "create", "Red", db=db).returncode == 0
    assert wl("person", "create", "Ada", "--team", "Red", db=db).returncode == 0
    password = "correct horse battery\n"
    r = wl_typed(
        "user",
        "create",
        "Boss@Acme.example",
        "--org",
        "acme",
        "--role",
        "admin",
        "--name",
        "The Boss",
        "--password-stdin",
        db=db,
        typed=password,
    )
    assert r.returncode == 0 and "user 'boss@acme.example' created" in r.stdout, r.stderr
    # Typed twice at the prompt.
    r = wl_typed(
        "user",
        "create",
        "lead@acme.example",
        "--role",
        "manager",
        "--team",
        "Red",
        db=db,
        typed=password * 2,
    )
    assert r.returncode == 0, r.stderr
    r = wl_typed(
        "user",
        "create",
        "ada@acme.example",
        "--role",
        "self",
        "--person",
        "1",
        "--password-stdin",
        db=db,
        typed=password,
    )
    assert r.returncode == 0, r.stderr
    database = Database(db)
    try:
        with database.write() as conn:
            found = users.authenticate_password(conn, "boss@acme.example", password.strip())
            assert found is not None and found.role == "admin" and found.name == "The Boss"
            lead = users.user_by_login(conn, found.org_id, "lead@acme.example")
            assert lead.role == "manager" and len(lead.team_ids) == 1
    finally:
        database.dispose()
    r = wl("user", "list", db=db)
    assert (
        "boss@acme.example  admin" in r.stdout
        and "lead@acme.example  manager teams [1]" in r.stdout
    )
    assert "ada@acme.example  self person 1" in r.stdout
    r = wl("user", "list", "--json", db=db)
    assert [u["email"] for u in json.loads(r.stdout)] == [
        "ada@acme.example",
        "boss@acme.example",
        "lead@acme.example",
    ]

    # Errors name the bad value and change nothing (exit 2).
    def create(*extra: str, typed: str = password) -> subprocess.CompletedProcess[str]:
        return wl_typed("user", "create", "new@acme.example", *extra, db=db, typed=typed)

    r = create("--role", "boss", "--password-stdin")
    assert r.returncode == 2 and "'boss' is not one of" in r.stderr
    r = create("--role", "admin", "--org", "nope", "--password-stdin")
    assert r.returncode == 2 and "no organization named 'nope'" in r.stderr
    r = create("--role", "admin", typed="correct horse battery\ncorrect horse batterY\n")
    assert r.returncode == 2 and "do not match" in r.stderr
    r = create("--role", "admin", "--password-stdin", typed="short\n")
    assert r.returncode == 2 and "at least 10 characters" in r.stderr
    r = create("--role", "manager", "--team", "Blue", "--password-stdin")
    assert r.returncode == 2 and "no team 'Blue'" in r.stderr
    r = create("--role", "self", "--password-stdin")
    assert r.returncode == 2 and "--person" in r.stderr
    r = wl_typed(
        "user",
        "create",
        "boss@acme.example",
        "--role",
        "viewer",
        "--password-stdin",
        db=db,
        typed=password,
    )
    assert r.returncode == 1 and "already exists" in r.stderr
    assert "new@acme.example" not in wl("user", "list", db=db).stdout

    r = wl_typed(
        "user",
        "set-password",
        "boss@acme.example",
        "--password-stdin",
        db=db,
        typed="another good password\n",
    )
    assert r.returncode == 0, r.stderr
    r = wl_typed(
        "user", "set-password", "ghost@acme.example", "--password-stdin", db=db, typed=password
    )
    assert r.returncode == 2 and "ghost@acme.example" in r.stderr
    assert wl("user", "disable", "lead@acme.example", db=db).returncode == 0
    assert "lead@acme.example  manager teams [1] (disabled)" in wl("user", "list", db=db).stdout
    database = Database(db)
    try:
        with database.write() as conn:
            assert users.authenticate_password(conn, "boss@acme.example", password.strip()) is None
            assert users.authenticate_password(conn, "boss@acme.example", "another good password")
            assert users.authenticate_password(conn, "lead@acme.example", password.strip()) is None
            org_id = orgs.get_org(conn, "acme").id
            actions = [e["action"] for e in audit.page(conn, org_id)]
            assert actions[:2] == ["user.update", "user.password"]
            assert actions.count("user.create") == 3 and "person.create" in actions
            assert audit.page(conn, org_id)[0]["actor_kind"] == "cli"
    finally:
        database.dispose()
