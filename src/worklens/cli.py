"""The ``worklens`` command: server, agent, database, organizations, tokens, reports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from worklens import __version__

DB_HELP = "Database URL (default: $WORKLENS_DATABASE_URL, else SQLite in the data directory)."


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _database(db: str | None) -> Any:
    from worklens.server.settings import default_database_url
    from worklens.server.store import migrate
    from worklens.server.store.db import Database

    database = Database(db or os.environ.get("WORKLENS_DATABASE_URL") or default_database_url())
    migrate.upgrade(database)
    return database


def _setup_logging(level: str) -> None:
    from worklens import logs

    logs.setup(level)


def _iso(value: str, name: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not an ISO 8601 date/time", param_hint=name
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="worklens")
def main() -> None:
    """WorkLens: self-hosted activity and endpoint monitoring.

    Start everything on one machine with `worklens up`. For a fleet, run
    `worklens server` centrally, create an organization with `worklens org create`,
    and start `worklens agent` on each machine with the printed enrollment secret.
    """


# --- server ---------------------------------------------------------------------


@main.command()
@click.option("--host", default=None, help="Interface to listen on (default 127.0.0.1).")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="Port (default 8420).")
@click.option("--db", default=None, help=DB_HELP)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Server processes sharing the port; one per core spreads decoding and validation.",
)
@click.option(
    "--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info"
)
def server(
    host: str | None, port: int | None, db: str | None, workers: int, log_level: str
) -> None:
    """Run the server (HTTP API, agent WebSocket, dashboard)."""
    import uvicorn

    from worklens.server.app import create_app
    from worklens.server.settings import ServerSettings
    from worklens.server.store import migrate
    from worklens.server.store.db import Database

    overrides: dict[str, Any] = {}
    if host:
        overrides["host"] = host
    if port:
        overrides["port"] = port
    if db:
        overrides["database_url"] = db
    settings = ServerSettings(**overrides)
    _setup_logging(log_level)
    run: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_level": log_level,
        "proxy_headers": True,
    }
    if workers == 1:
        uvicorn.run(create_app(settings), **run)
        return
    # Several processes: migrate once here, and hand the settings to the
    # workers through the environment, where ServerSettings reads them.
    database = Database(settings.database_url)
    migrate.upgrade(database)
    database.dispose()
    os.environ["WORKLENS_DATABASE_URL"] = settings.database_url
    uvicorn.run("worklens.server.app:create_worker_app", factory=True, workers=workers, **run)


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.option("--db", "db_url", default=None, help=DB_HELP)
def db_upgrade(db_url: str | None) -> None:
    """Create or migrate the schema to the latest version."""
    from worklens.server.store import migrate

    database = _database(db_url)
    click.echo(f"database at revision {migrate.current(database)}")


# --- organizations and tokens ---------------------------------------------------


@main.group()
def org() -> None:
    """Organizations (tenants)."""


@org.command("create")
@click.argument("name")
@click.option("--db", default=None, help=DB_HELP)
def org_create(name: str, db: str | None) -> None:
    """Create organization NAME and print its enrollment secret (shown once)."""
    from worklens.server.store import orgs

    if not name.strip() or len(name) > 128:
        raise click.BadParameter("must be 1 to 128 characters", param_hint="NAME")
    database = _database(db)
    try:
        with database.write() as conn:
            _, secret = orgs.create_org(conn, name, _now_ms())
    except orgs.OrgExists as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"created organization {name!r}; agents enroll with this secret:", err=True)
    click.echo(secret)


@main.group()
def token() -> None:
    """API tokens for people and scripts."""


@token.command("create")
@click.option("--org", "org_name", required=True, help="Organization name.")
@click.option(
    "--role", type=click.Choice(["admin", "manager", "viewer"]), default="admin", show_default=True
)
@click.option("--name", default="", help="A label to recognise the token by.")
@click.option("--db", default=None, help=DB_HELP)
def token_create(org_name: str, role: str, name: str, db: str | None) -> None:
    """Create an API token and print it (shown once)."""
    from worklens.server.store import orgs

    database = _database(db)
    try:
        with database.write() as conn:
            tok = orgs.create_token(conn, orgs.get_org(conn, org_name), role, _now_ms(), name)
    except orgs.UnknownOrg as exc:
        raise click.BadParameter(str(exc), param_hint="--org") from None
    click.echo(f"{role} token for {org_name!r} (store it now; it is not shown again):", err=True)
    click.echo(tok)


# --- reports --------------------------------------------------------------------


@main.group()
def report() -> None:
    """Reports from the database."""


@report.command("time")
@click.option(
    "--group-by", type=click.Choice(["app", "title", "device"]), default="app", show_default=True
)
@click.option("--device", type=int, default=None, help="Only this device id.")
@click.option("--org", "org_name", default=None, help="Organization (default: the only one).")
@click.option("--start", required=True, help="ISO 8601 start, e.g. 2026-11-02T00:00:00Z.")
@click.option("--end", required=True, help="ISO 8601 end (exclusive).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--db", default=None, help=DB_HELP)
def report_time(
    group_by: str,
    device: int | None,
    org_name: str | None,
    start: str,
    end: str,
    as_json: bool,
    db: str | None,
) -> None:
    """Active time (focus while not afk) per app, title or device."""
    from sqlalchemy import select

    from worklens.server.analytics.time_report import ReportError, time_report
    from worklens.server.store import orgs
    from worklens.server.store.rollups import Rollups
    from worklens.server.store.schema import orgs as orgs_table

    t0, t1 = _iso(start, "--start"), _iso(end, "--end")
    database = _database(db)
    with database.read() as conn:
        if org_name:
            try:
                org_id = orgs.get_org(conn, org_name).id
            except orgs.UnknownOrg as exc:
                raise click.BadParameter(str(exc), param_hint="--org") from None
        else:
            ids = [r.id for r in conn.execute(select(orgs_table.c.id))]
            if len(ids) != 1:
                raise click.BadParameter(
                    f"{len(ids)} organizations exist: name one", param_hint="--org"
                )
            org_id = ids[0]
    try:
        rows = time_report(
            database,
            Rollups(database),
            org_id,
            group_by,
            round(t0.timestamp() * 1000),
            round(t1.timestamp() * 1000),
            device,
        )
    except ReportError as exc:
        raise click.UsageError(str(exc)) from None
    if as_json:
        click.echo(
            json.dumps(
                {
                    "group_by": group_by,
                    "start": t0.isoformat(),
                    "end": t1.isoformat(),
                    "rows": [{"key": r.key, "seconds": r.seconds} for r in rows],
                },
                indent=2,
            )
        )
        return
    if not rows:
        click.echo("no active time in this range")
        return
    width = max(len(r.key) for r in rows)
    for r in rows:
        h, rem = divmod(int(r.seconds), 3600)
        click.echo(
            f"{r.key:<{width}}  {h:>4}h {rem // 60:02d}m {rem % 60:02d}s  ({r.seconds:.0f} s)"
        )


# --- agent ----------------------------------------------------------------------


@main.command()
@click.option(
    "--server", "server_url", default=None, help="Server URL, e.g. http://127.0.0.1:8420."
)
@click.option("--enroll-secret", default=None, help="Organization enrollment secret (first run).")
@click.option(
    "--state-dir", type=click.Path(path_type=Path), default=None, help="Where token and spool live."
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path),
    default=None,
    help="TOML config file.",
)
@click.option(
    "--poll-interval", "poll_interval_s", type=float, default=None, help="Focus poll, seconds."
)
@click.option(
    "--idle-threshold",
    "idle_threshold_s",
    type=float,
    default=None,
    help="Seconds without input = afk.",
)
@click.option("--transport", type=click.Choice(["auto", "websocket", "http"]), default=None)
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default=None)
def agent(config_file: Path | None, server_url: str | None, **flags: Any) -> None:
    """Run the agent: collect activity and host health, spool, send."""
    from worklens.agent.config import ConfigError, load
    from worklens.agent.runtime import Agent

    try:
        cfg = load(config_file, {"server": server_url, **flags})
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    _setup_logging(cfg.log_level)
    sys.exit(Agent(cfg).run())


# --- all in one -----------------------------------------------------------------


@main.command()
@click.option("--port", type=click.IntRange(1, 65535), default=8420, show_default=True)
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Default: ~/.local/share/worklens.",
)
@click.option("--no-agent", is_flag=True, help="Run only the server.")
def up(port: int, data_dir: Path | None, no_agent: bool) -> None:
    """Server on SQLite plus a local agent: the quickest way to see WorkLens work."""
    import uvicorn

    from worklens.server.app import create_app
    from worklens.server.settings import ServerSettings, default_data_dir
    from worklens.server.store import orgs

    data = data_dir or default_data_dir()
    data.mkdir(parents=True, exist_ok=True, mode=0o700)
    url = f"sqlite:///{data / 'worklens.db'}"
    database = _database(url)
    secrets_file = data / "local-secrets.json"
    local = json.loads(secrets_file.read_text()) if secrets_file.exists() else {}
    with database.write() as conn:
        try:
            org_ref = orgs.get_org(conn, "default")
        except orgs.UnknownOrg:
            org_ref, local["enroll_secret"] = orgs.create_org(conn, "default", _now_ms())
        if (
            not local.get("admin_token")
            or orgs.authenticate_token(conn, local["admin_token"]) is None
        ):
            local["admin_token"] = orgs.create_token(
                conn, org_ref, "admin", _now_ms(), "worklens up"
            )
        if not local.get("enroll_secret"):
            local["enroll_secret"] = orgs.rotate_enroll_secret(conn, org_ref)
    # The embedded set-up keeps its own secrets beside its database, readable by this user only.
    fd = os.open(secrets_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(local, f)
    database.dispose()

    base = f"http://127.0.0.1:{port}"
    agent_proc = None
    if not no_agent:
        env = {**os.environ, "WORKLENS_AGENT_ENROLL_SECRET": local["enroll_secret"]}
        agent_proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "worklens",
                "agent",
                "--server",
                base,
                "--state-dir",
                str(data / "agent"),
            ],
            env=env,
        )
    click.echo(f"WorkLens {__version__} — dashboard: {base}/")
    click.echo(f"log in with the admin token: {local['admin_token']}")
    secret = local["enroll_secret"]
    click.echo(f"enroll more agents with: worklens agent --server {base} --enroll-secret {secret}")
    try:
        app = create_app(ServerSettings(database_url=url, port=port), migrate_db=False)
        uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
    finally:
        if agent_proc is not None:
            agent_proc.terminate()
            try:
                agent_proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                agent_proc.kill()


if __name__ == "__main__":
    main()
