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


def _org_id(database: Any, org_name: str | None) -> int:
    """The named organization, or the only one there is."""
    from sqlalchemy import select

    from worklens.server.store import orgs
    from worklens.server.store.schema import orgs as orgs_table

    with database.read() as conn:
        if org_name:
            try:
                return int(orgs.get_org(conn, org_name).id)
            except orgs.UnknownOrg as exc:
                raise click.BadParameter(str(exc), param_hint="--org") from None
        ids = [r.id for r in conn.execute(select(orgs_table.c.id))]
    if len(ids) != 1:
        raise click.BadParameter(f"{len(ids)} organizations exist: name one", param_hint="--org")
    return int(ids[0])


def _audit(conn: Any, org_id: int, action: str, target: str, details: Any = None) -> None:
    """Log an admin action done on the command line (actor: the OS user)."""
    import getpass

    from worklens.server.access import Actor
    from worklens.server.store import audit

    try:
        who = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (containers)
        who = str(os.getuid()) if hasattr(os, "getuid") else "?"
    audit.record(conn, org_id, Actor("cli", None, f"cli:{who}"), action, target, details)


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

    from worklens.server.settings import ServerSettings

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
        from worklens.server.app import create_app

        uvicorn.run(create_app(settings), **run)
        return
    # Several processes: migrate once, in a child process so that this one (it
    # only watches the workers) never loads the app, SQLAlchemy or Alembic:
    # ~60 MB less. The settings reach the workers through the environment.
    upgrade = [sys.executable, "-m", "worklens", "db", "upgrade", "--db", settings.database_url]
    if subprocess.run(upgrade, stdout=subprocess.DEVNULL).returncode != 0:
        raise click.ClickException("the database upgrade failed (see above)")
    os.environ["WORKLENS_DATABASE_URL"] = settings.database_url
    os.environ["WORKLENS_WORKERS"] = str(workers)  # the live hub then goes through the database
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


@db.command("compact")
@click.option(
    "--older-than-days",
    type=click.FloatRange(min=0),
    default=None,
    help="Pack days that ended more than this many days ago"
    " (default: $WORKLENS_COMPACT_AFTER_DAYS, else 2; 0 = every day that has ended).",
)
@click.option(
    "--limit", type=click.IntRange(min=1), default=None, help="At most this many bucket-days."
)
@click.option("--db", "db_url", default=None, help=DB_HELP)
def db_compact(older_than_days: float | None, limit: int | None, db_url: str | None) -> None:
    """Pack old raw events into one compressed row per stream and day.

    The server does this by itself in the background; this runs it now. Safe
    while servers ingest: a late event for a packed day unpacks it again.
    """
    from worklens.server.settings import ServerSettings
    from worklens.server.store import compaction

    if older_than_days is None:
        older_than_days = ServerSettings().compact_after_days
    database = _database(db_url)
    try:
        cutoff = compaction.default_cutoff_ms(_now_ms(), older_than_days)
        result = compaction.compact(database, cutoff, limit)
    finally:
        database.dispose()
    click.echo(
        f"compacted {result.groups} bucket-days, {result.events} events, in {result.seconds:.1f} s"
    )


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
    "--role",
    type=click.Choice(["admin", "viewer"]),
    default="admin",
    show_default=True,
    help="admin: everything; viewer: reads the whole organization.",
)
@click.option("--name", default="", help="A label to recognise the token by.")
@click.option("--db", default=None, help=DB_HELP)
def token_create(org_name: str, role: str, name: str, db: str | None) -> None:
    """Create an API token for scripts and print it (shown once). People log in
    to the dashboard as users instead (`worklens user create`)."""
    from worklens.server.store import orgs

    database = _database(db)
    try:
        with database.write() as conn:
            org_ref = orgs.get_org(conn, org_name)
            tok = orgs.create_token(conn, org_ref, role, _now_ms(), name)
            _audit(conn, org_ref.id, "token.create", f"token {name!r}", {"role": role})
    except orgs.UnknownOrg as exc:
        raise click.BadParameter(str(exc), param_hint="--org") from None
    click.echo(f"{role} token for {org_name!r} (store it now; it is not shown again):", err=True)
    click.echo(tok)


@org.command("set-timezone")
@click.argument("zone_name", metavar="ZONE")
@click.option("--org", "org_name", default=None, help="Organization (default: the only one).")
@click.option("--db", default=None, help=DB_HELP)
def org_set_timezone(zone_name: str, org_name: str | None, db: str | None) -> None:
    """Split report days at midnight in ZONE (an IANA name such as Europe/Berlin).
    Day rollups are rebuilt for the new zone by the server in the background."""
    from worklens.server.store import orgs
    from worklens.server.store.rollups import Rollups
    from worklens.timeline.periods import UnknownTimeZone

    database = _database(db)
    org_id = _org_id(database, org_name)
    try:
        with database.write() as conn:
            changed = orgs.set_timezone(conn, org_id, zone_name, Rollups(database))
            if changed:
                _audit(conn, org_id, "org.timezone", "organization", {"to": zone_name})
    except UnknownTimeZone as exc:
        raise click.BadParameter(str(exc), param_hint="ZONE") from None
    click.echo(f"time zone {'set to' if changed else 'already'} {zone_name}")


@main.group()
def categories() -> None:
    """Category rules: which apps, titles and sites count as what."""


@categories.command("show")
@click.option("--team", default=None, help="Show this team's overrides instead.")
@click.option("--org", "org_name", default=None, help="Organization (default: the only one).")
@click.option("--db", default=None, help=DB_HELP)
def categories_show(team: str | None, org_name: str | None, db: str | None) -> None:
    """Print the organization's rules (or a team's overrides) as JSON."""
    from worklens.server.store import category_rules
    from worklens.server.store import people as people_store

    database = _database(db)
    org_id = _org_id(database, org_name)
    with database.read() as conn:
        if team is None:
            data = category_rules.org_rules(conn, org_id).to_data()
        else:
            try:
                team_id = people_store.team_id_by_name(conn, org_id, team)
            except people_store.NotFound as exc:
                raise click.BadParameter(str(exc), param_hint="--team") from None
            data = category_rules.team_overrides(conn, org_id, team_id).model_dump(mode="json")
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


@categories.command("set")
@click.argument("file", type=click.File("r", encoding="utf-8"))
@click.option("--team", default=None, help="Set this team's overrides instead.")
@click.option("--org", "org_name", default=None, help="Organization (default: the only one).")
@click.option("--db", default=None, help=DB_HELP)
def categories_set(file: Any, team: str | None, org_name: str | None, db: str | None) -> None:
    """Replace the rules with FILE (JSON as printed by `categories show`; - for
    stdin). Every regex is checked first; nothing changes if one is refused."""
    from worklens.categories import RuleError
    from worklens.server.store import category_rules
    from worklens.server.store import people as people_store

    try:
        data = json.load(file)
    except ValueError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint="FILE") from None
    database = _database(db)
    org_id = _org_id(database, org_name)
    try:
        with database.write() as conn:
            if team is None:
                rules = category_rules.set_org_rules(conn, org_id, data, _now_ms())
                _audit(conn, org_id, "categories.set", "organization", {"version": rules.version})
                click.echo(f"{len(rules)} categories saved (version {rules.version[:12]})")
            else:
                team_id = people_store.team_id_by_name(conn, org_id, team)
                category_rules.set_team_overrides(conn, org_id, team_id, data)
                _audit(conn, org_id, "categories.set_team", f"team {team_id}")
                click.echo(f"overrides of team {team!r} saved")
    except RuleError as exc:
        raise click.BadParameter(str(exc), param_hint="FILE") from None
    except people_store.NotFound as exc:
        raise click.BadParameter(str(exc), param_hint="--team") from None


@main.group()
def team() -> None:
    """Teams of people."""


@team.command("create")
@click.argument("name")
@click.option("--org", "org_name", default=None, help="Organization (default: the only one).")
@click.option("--db", default=None, help=DB_HELP)
def team_create(name: str, org_name: str | None, db: str | None) -> None:
    """Create team NAME."""
    from worklens.server.store import people as people_store

    if not name.strip() or len(name) > 128:
        raise click.BadParameter("must be 1 to 128 characters", param_hint="NAME")
    database = _database(db)
    org_id = _org_id(database, org_name)
    try:
        with database.write() as conn:
            team_id = people_store.create_team(conn, org_id, name.strip(), _now_ms())
            _audit(conn, org_id, "team.create", f"team {team_id}", {"name": name.strip()})
    except people_store.Exists as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"team {name!r} created (id {team_id})")


@main.group()
def person() -> None:
    """People, and the devices they use."""


@person.command("create")
@click.argument("name")
@click.option("--team", default=None, help="The person's team (by name).")
@click.option("--email", default=None)
@click.option("--org", "org_name", default=None, help="Organization (default: the only one).")
@click.option("--db", default=None, help=DB_HELP)
def person_create(
    name: str, team: str | None, email: str | None, org_name: str | None, db: str | None
) -> None:
    """Create person NAME."""
    from worklens.server.store import people as people_store

    if not name.strip() or len(name) > 128:
        raise click.BadParameter("must be 1 to 128 characters", param_hint="NAME")
    database = _database(db)
    org_id = _org_id(database, org_name)
    try:
        with database.write() as conn:
            team_id = None if team is None else people_store.team_id_by_name(conn, org_id, team)
            person_id = people_store.create_person(
                conn, org_id, name.strip(), _now_ms(), team_id, email
            )
            details = {"name": name.strip(), "team_id": team_id}
            _audit(conn, org_id, "person.create", f"person {person_id}", details)
    except people_store.NotFound as exc:
        raise click.BadParameter(str(exc), param_hint="--team") from None
    except people_store.Exists as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"person {name!r} created (id {person_id})")


@person.command("assign")
@click.argument("person_id", type=int)
@click.argument("device_id", type=int)
@click.option("--org", "org_name", default=None, help="Organization (default: the only one).")
@click.option("--db", default=None, help=DB_HELP)
def person_assign(person_id: int, device_id: int, org_name: str | None, db: str | None) -> None:
    """Record that PERSON_ID uses DEVICE_ID (see `worklens report time --group-by device`)."""
    from worklens.server.store import people as people_store

    database = _database(db)
    org_id = _org_id(database, org_name)
    try:
        with database.write() as conn:
            people_store.assign_device(conn, org_id, device_id, person_id)
            _audit(conn, org_id, "device.assign", f"device {device_id}", {"person_id": person_id})
    except people_store.NotFound as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"device {device_id} is used by person {person_id}")


# --- dashboard users ------------------------------------------------------------


def _read_password(from_stdin: bool) -> str:
    """The new password: one line of stdin, or typed twice at a prompt."""
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise click.BadParameter("stdin held no password", param_hint="--password-stdin")
        return password
    first = click.prompt("Password", hide_input=True, show_default=False)
    second = click.prompt("Repeat password", hide_input=True, show_default=False)
    if first != second:
        raise click.UsageError("the two passwords do not match; nothing was changed")
    return str(first)


def _user_or_fail(conn: Any, org_id: int, login: str) -> Any:
    from worklens.server.store import users

    try:
        return users.user_by_login(conn, org_id, login)
    except (users.UnknownUser, users.UserError) as exc:
        raise click.BadParameter(str(exc), param_hint="LOGIN") from None


PASSWORD_STDIN = click.option(
    "--password-stdin", is_flag=True, help="Read the password from the first line of stdin."
)


@main.group()
def user() -> None:
    """Dashboard users: people who log in (admin, manager, viewer, self)."""


@user.command("create")
@click.argument("login", metavar="EMAIL")
@click.option(
    "--role",
    type=click.Choice(["admin", "manager", "viewer", "self"]),
    required=True,
    help="admin: everything; manager: their teams (--team); viewer: reads everything;"
    " self: one person's own data (--person).",
)
@click.option("--name", default="", help="Display name.")
@click.option("--person", "person_id", type=int, default=None, help="Role self: the person id.")
@click.option("--team", "team_names", multiple=True, help="Role manager: a team (repeatable).")
@PASSWORD_STDIN
@click.option("--org", "org_name", default=None, help="Organization (default: the only one).")
@click.option("--db", default=None, help=DB_HELP)
def user_create(
    login: str,
    role: str,
    name: str,
    person_id: int | None,
    team_names: tuple[str, ...],
    password_stdin: bool,
    org_name: str | None,
    db: str | None,
) -> None:
    """Create a user who logs in to the dashboard with EMAIL (any login name
    works) and a password, typed twice or read from stdin."""
    from worklens.server.store import people as people_store
    from worklens.server.store import users

    database = _database(db)
    org_id = _org_id(database, org_name)
    with database.read() as conn:
        try:
            team_ids = [people_store.team_id_by_name(conn, org_id, t) for t in team_names]
        except people_store.NotFound as exc:
            raise click.BadParameter(str(exc), param_hint="--team") from None
    password = _read_password(password_stdin)
    hints = {"email": "EMAIL", "person_id": "--person", "team_ids": "--team", "role": "--role"}
    try:
        with database.write() as conn:
            created = users.create_user(
                conn,
                org_id,
                login,
                password,
                role,
                _now_ms(),
                name=name,
                person_id=person_id,
                team_ids=team_ids,
            )
            details = {"email": created.email, "role": role, "person_id": person_id}
            _audit(conn, org_id, "user.create", f"user {created.id}", details)
    except users.UserExists as exc:
        raise click.ClickException(str(exc)) from None
    except users.UserError as exc:
        raise click.BadParameter(str(exc), param_hint=hints.get(exc.field, exc.field)) from None
    click.echo(f"user {created.email!r} created (id {created.id}, role {role})")


@user.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--org", "org_name", default=None, help="Organization (default: the only one).")
@click.option("--db", default=None, help=DB_HELP)
def user_list(as_json: bool, org_name: str | None, db: str | None) -> None:
    """List the organization's users."""
    from worklens.server.store import users

    database = _database(db)
    org_id = _org_id(database, org_name)
    with database.read() as conn:
        found = users.list_users(conn, org_id)
    if as_json:
        click.echo(json.dumps([u.public() for u in found], indent=2, ensure_ascii=False))
        return
    if not found:
        click.echo("no users yet: worklens user create EMAIL --role admin")
    for u in found:
        scope = (
            f" person {u.person_id}"
            if u.role == "self"
            else (f" teams {sorted(u.team_ids)}" if u.role == "manager" else "")
        )
        state = " (disabled)" if u.disabled_ms is not None else ""
        click.echo(f"{u.id:>4}  {u.email}  {u.role}{scope}{state}  {u.name}")


@user.command("set-password")
@click.argument("login", metavar="EMAIL")
@PASSWORD_STDIN
@click.option("--org", "org_name", default=None, help="Organization (default: the only one).")
@click.option("--db", default=None, help=DB_HELP)
def user_set_password(
    login: str, password_stdin: bool, org_name: str | None, db: str | None
) -> None:
    """Set a user's password; their sessions end."""
    from worklens.server.store import users

    database = _database(db)
    org_id = _org_id(database, org_name)
    with database.read() as conn:
        found = _user_or_fail(conn, org_id, login)
    password = _read_password(password_stdin)
    try:
        with database.write() as conn:
            users.set_password(conn, org_id, found.id, password)
            _audit(conn, org_id, "user.password", f"user {found.id}")
    except users.UserError as exc:
        raise click.BadParameter(str(exc), param_hint="password") from None
    click.echo(f"password of {found.email!r} changed; their sessions ended")


@user.command("disable")
@click.argument("login", metavar="EMAIL")
@click.option("--enable", is_flag=True, help="Enable the user again instead.")
@click.option("--org", "org_name", default=None, help="Organization (default: the only one).")
@click.option("--db", default=None, help=DB_HELP)
def user_disable(login: str, enable: bool, org_name: str | None, db: str | None) -> None:
    """Disable a user (they cannot log in; their sessions end), or --enable them."""
    from worklens.server.store import users

    database = _database(db)
    org_id = _org_id(database, org_name)
    with database.write() as conn:
        found = _user_or_fail(conn, org_id, login)
        _, changes = users.update_user(conn, org_id, found.id, _now_ms(), disabled=not enable)
        if changes:
            _audit(conn, org_id, "user.update", f"user {found.id}", changes)
    click.echo(f"user {found.email!r} {'enabled' if enable else 'disabled'}")


# --- reports --------------------------------------------------------------------


@main.group()
def report() -> None:
    """Reports from the database."""


def _report_options(fn: Any) -> Any:
    """The options every report shares: range, scope, output."""
    for option in reversed(
        [
            click.option(
                "--start", required=True, help="ISO 8601 start, e.g. 2026-11-02T00:00:00Z."
            ),
            click.option("--end", required=True, help="ISO 8601 end (exclusive)."),
            click.option("--device", type=int, default=None, help="Only this device id."),
            click.option(
                "--person", type=int, default=None, help="Only this person (devices merged)."
            ),
            click.option("--team", type=int, default=None, help="Only this team's people."),
            click.option(
                "--org", "org_name", default=None, help="Organization (default: the only one)."
            ),
            click.option("--json", "as_json", is_flag=True, help="Print JSON."),
            click.option("--csv", "as_csv", is_flag=True, help="Print CSV."),
            click.option("--db", default=None, help=DB_HELP),
        ]
    ):
        fn = option(fn)
    return fn


def _run_report(fn: Any, *args: Any, **kwargs: Any) -> Any:
    from worklens.server.analytics.time_report import ReportError

    try:
        return fn(*args, **kwargs)
    except ReportError as exc:
        raise click.UsageError(str(exc)) from None
    except LookupError as exc:
        raise click.BadParameter(str(exc)) from None


def _max_report_days() -> int:
    """The server's bound on report ranges (WORKLENS_MAX_REPORT_DAYS), applied here too."""
    from worklens.server.settings import ServerSettings

    return ServerSettings().max_report_days


def _print_csv(header: list[str], rows: list[list[Any]]) -> None:
    from worklens.server.analytics.csvout import write_csv

    write_csv(sys.stdout, header, rows)


def _duration(seconds: float) -> str:
    h, rem = divmod(int(seconds), 3600)
    return f"{h:>4}h {rem // 60:02d}m {rem % 60:02d}s"


GROUPS = ["app", "title", "url", "domain", "category", "productivity", "person", "device"]


@report.command("time")
@click.option("--group-by", type=click.Choice(GROUPS), default="app", show_default=True)
@click.option("--depth", type=click.IntRange(1, 16), default=None, help="Category levels to keep.")
@click.option(
    "--interval",
    type=click.Choice(["none", "day", "week"]),
    default="none",
    show_default=True,
    help="One table per local day or week.",
)
@_report_options
def report_time(
    group_by: str,
    depth: int | None,
    interval: str,
    start: str,
    end: str,
    device: int | None,
    person: int | None,
    team: int | None,
    org_name: str | None,
    as_json: bool,
    as_csv: bool,
    db: str | None,
) -> None:
    """Active time (focus while not afk) per app, title, URL, domain, category,
    productivity class, person or device. Categories follow the organization's current
    rules; a person's devices are merged (time two were active at once counts once)."""
    from worklens.server.analytics.time_report import time_series
    from worklens.server.store.rollups import Rollups

    t0, t1 = _iso(start, "--start"), _iso(end, "--end")
    database = _database(db)
    org_id = _org_id(database, org_name)
    series = _run_report(
        time_series,
        database,
        Rollups(database),
        org_id,
        group_by,
        round(t0.timestamp() * 1000),
        round(t1.timestamp() * 1000),
        device,
        person_id=person,
        team_id=team,
        interval=interval,
        depth=depth,
        max_days=_max_report_days(),
    )

    def when(ms: int) -> str:
        return datetime.fromtimestamp(ms / 1000, UTC).isoformat()

    if as_csv:
        if interval == "none":
            _print_csv([group_by, "seconds"], [[r.key, r.seconds] for r in series[0][1]])
        else:
            _print_csv(
                ["period_start", group_by, "seconds"],
                [[when(a), r.key, r.seconds] for a, rows in series for r in rows],
            )
        return
    if as_json:
        body: dict[str, Any] = {
            "group_by": group_by,
            "start": t0.isoformat(),
            "end": t1.isoformat(),
        }
        if interval == "none":
            body["rows"] = [{"key": r.key, "seconds": r.seconds} for r in series[0][1]]
        else:
            body["interval"] = interval
            body["periods"] = [
                {"start": when(a), "rows": [{"key": r.key, "seconds": r.seconds} for r in rows]}
                for a, rows in series
            ]
        click.echo(json.dumps(body, indent=2, ensure_ascii=False))
        return
    for a, rows in series:
        if interval != "none":
            click.echo(f"== {when(a)}")
        if not rows and group_by in ("url", "domain"):
            click.echo(
                "no browser time with a known tab in this range (tabs come from the"
                " browser extension or ActivityWatch's web watcher)"
            )
            continue
        if not rows:
            click.echo("no active time in this range")
            continue
        width = max(len(r.key) for r in rows)
        for r in rows:
            click.echo(f"{r.key:<{width}}  {_duration(r.seconds)}  ({r.seconds:.0f} s)")


@report.command("heatmap")
@_report_options
def report_heatmap(
    start: str,
    end: str,
    device: int | None,
    person: int | None,
    team: int | None,
    org_name: str | None,
    as_json: bool,
    as_csv: bool,
    db: str | None,
) -> None:
    """Active time per hour of the week, in the organization's time zone."""
    from worklens.server.analytics.activity import heatmap
    from worklens.server.store.rollups import Rollups

    t0, t1 = _iso(start, "--start"), _iso(end, "--end")
    database = _database(db)
    hm = _run_report(
        heatmap,
        database,
        Rollups(database),
        _org_id(database, org_name),
        round(t0.timestamp() * 1000),
        round(t1.timestamp() * 1000),
        device,
        person_id=person,
        team_id=team,
        max_days=_max_report_days(),
    )
    days = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
    if as_csv:
        _print_csv(
            ["weekday", "hour", "seconds"],
            [[days[d], h, hm.seconds[d][h]] for d in range(7) for h in range(24)],
        )
    elif as_json:
        click.echo(json.dumps({"timezone": hm.timezone, "seconds": hm.seconds}, indent=2))
    else:
        click.echo(f"minutes active per hour ({hm.timezone})")
        click.echo("     " + "".join(f"{h:>4}" for h in range(24)))
        for d in range(7):
            cells = "".join(f"{round(hm.seconds[d][h] / 60):>4}" for h in range(24))
            click.echo(f"{days[d]}  {cells}")


@report.command("timeline")
@_report_options
def report_timeline(
    start: str,
    end: str,
    device: int | None,
    person: int | None,
    team: int | None,
    org_name: str | None,
    as_json: bool,
    as_csv: bool,
    db: str | None,
) -> None:
    """A device's active spans (focus while not afk), at most a week (--device)."""
    from worklens.server.analytics.activity import timeline
    from worklens.server.store.rollups import Rollups

    if device is None or person is not None or team is not None:
        raise click.UsageError("a timeline is of one device: give --device (only)")
    t0, t1 = _iso(start, "--start"), _iso(end, "--end")
    database = _database(db)
    tl = _run_report(
        timeline,
        database,
        Rollups(database),
        _org_id(database, org_name),
        device,
        round(t0.timestamp() * 1000),
        round(t1.timestamp() * 1000),
    )

    def when(ms: int) -> str:
        return datetime.fromtimestamp(ms / 1000, UTC).isoformat()

    spans = [[when(s.start_ms), when(s.end_ms), s.app, s.title] for s in tl.active]
    if as_csv:
        _print_csv(["start", "end", "app", "title"], spans)
    elif as_json:
        keys = ("start", "end", "app", "title")
        click.echo(json.dumps([dict(zip(keys, x, strict=True)) for x in spans], indent=2))
    else:
        for a, b, app, title in spans:
            click.echo(f"{a[11:19]}-{b[11:19]}  {app}  {title}")


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
@click.option(
    "--aw-port",
    "aw_port",
    type=int,
    default=None,
    help="Port of the ActivityWatch API for AW watchers on 127.0.0.1 (default 5600; 0 = off).",
)
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
    """Server on SQLite plus a local agent: the quickest way to see WorkLens work.

    The first start creates the dashboard user `admin` with a generated
    password, printed once (not stored anywhere in clear)."""
    import secrets

    import uvicorn

    from worklens.server.app import create_app
    from worklens.server.settings import ServerSettings, default_data_dir
    from worklens.server.store import orgs
    from worklens.server.store import users as users_store

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
        # A first admin for the dashboard; its password goes to the terminal only.
        first_password = None
        if not users_store.list_users(conn, org_ref.id):
            first_password = secrets.token_urlsafe(15)
            admin = users_store.create_user(
                conn, org_ref.id, "admin", first_password, "admin", _now_ms(), name="Administrator"
            )
            _audit(conn, org_ref.id, "user.create", f"user {admin.id}", {"email": "admin"})
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
    if first_password:
        click.echo(f"log in as: admin  password: {first_password}  (shown only this once)")
    else:
        click.echo("log in with your dashboard user (first start: admin)")
    click.echo(f"forgot it? worklens user set-password admin --db {url}")
    click.echo(f"scripts call the API with the admin token: {local['admin_token']}")
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


@main.group()
def extension() -> None:
    """The browser extension that reports the active tab (Manifest V3)."""


@extension.command("build")
@click.option(
    "--browser",
    type=click.Choice(["chromium", "firefox"]),
    default="chromium",
    show_default=True,
    help="Chromium (Chrome, Edge, Brave...) or Firefox.",
)
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory to write the unpacked extension into (new or empty).",
)
def extension_build(browser: str, out_dir: Path) -> None:
    """Write the extension, ready to load unpacked or to pack and sign."""
    from worklens.extension import build

    try:
        build.build(browser, out_dir)
    except FileExistsError as exc:
        raise click.BadParameter(str(exc), param_hint="--out") from exc
    click.echo(f"extension for {browser} in {out_dir}")


if __name__ == "__main__":
    main()
