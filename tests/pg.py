"""A real, throwaway PostgreSQL server for the test session.

``postgres_url`` runs ``initdb`` + ``pg_ctl start`` in a temporary directory,
listening on 127.0.0.1 on a free port, and yields a SQLAlchemy URL for a
password-protected role. ``fresh_pg_database`` gives each test its own
database on that server so schemas never leak between tests.

PostgreSQL refuses to run as root, so when the tests run as root the server
runs as the ``postgres`` system user (created by the Debian package) through
``runuser``; otherwise it runs as the current user.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROLE = "worklens"
DATABASE = "worklens_test"
SUPERUSER = "postgres"
# The system user PostgreSQL runs as when the tests run as root (Debian creates it).
SERVER_USER = "postgres"
INSTALL_HINT = "PostgreSQL not installed: apt-get install postgresql"
START_TIMEOUT_S = 60
#: How long the last server took from initdb to accepting the test role (reported in -v runs).
startup_seconds: float | None = None


def find_pg_bindir() -> Path | None:
    """The newest PostgreSQL server bin directory, or None when there is none.

    Debian installs each major version side by side under /usr/lib/postgresql/<N>/
    and keeps only client wrappers on PATH, so look there first.
    """
    candidates: list[tuple[int, Path]] = []
    root = Path("/usr/lib/postgresql")
    if root.is_dir():
        for entry in root.iterdir():
            bindir = entry / "bin"
            if entry.name.isdigit() and (bindir / "initdb").is_file():
                candidates.append((int(entry.name), bindir))
    if candidates:
        return max(candidates)[1]
    # Other distributions (and Homebrew) put the server binaries on PATH.
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(initdb).resolve().parent
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class PgUnavailable(RuntimeError):
    """PostgreSQL cannot be run here; the message says what is missing."""


class PgCluster:
    """One PostgreSQL cluster in its own directory, run as an unprivileged user.

    ``durable=False`` (tests) turns fsync and full page writes off: the data is
    thrown away. The benchmarks use ``durable=True``, which keeps them on and
    only sets ``synchronous_commit = off``, the same promise as SQLite's WAL +
    NORMAL: a crash may lose the last commits, never consistency.
    """

    def __init__(self, bindir: Path, *, durable: bool = False, extra_conf: str = "") -> None:
        self.bindir = bindir
        self.durable = durable
        self.extra_conf = extra_conf
        # (uid, gid) of the user the server runs as when we are root; None: as us.
        self.owner: tuple[int, int] | None = None
        base = tempfile.gettempdir()
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            import pwd  # POSIX only, and only needed as root

            try:
                entry = pwd.getpwnam(SERVER_USER)
            except KeyError:
                raise PgUnavailable(
                    f"running as root and there is no {SERVER_USER!r} user to run PostgreSQL"
                ) from None
            if shutil.which("runuser") is None:
                raise PgUnavailable("running as root and runuser (util-linux) is missing")
            self.owner = (entry.pw_uid, entry.pw_gid)
            # TMPDIR may point into /root, which the postgres user cannot enter.
            base = "/tmp"
        self.dir = Path(tempfile.mkdtemp(prefix="worklens-pg-", dir=base))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self.port = 0
        self.superuser_password = secrets.token_hex(16)
        self.password = secrets.token_hex(16)
        self._give(self.dir)

    def _give(self, path: Path) -> None:
        """Hand a path we created to the server's user."""
        if self.owner is not None:
            os.chown(path, *self.owner)

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self.owner is not None:
            cmd = ["runuser", "-u", SERVER_USER, "--", *cmd]
        # cwd inside the temp dir: the server user may not be able to enter ours.
        result = subprocess.run(
            cmd, cwd=self.dir, capture_output=True, text=True, timeout=120, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}{result.stderr}"
                f"{self._log_tail()}"
            )
        return result

    def _log_tail(self) -> str:
        try:
            return "\n--- server log ---\n" + self.log.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def init(self) -> None:
        pwfile = self.dir / "pwfile"
        pwfile.touch(mode=0o600)
        pwfile.write_text(self.superuser_password + "\n")
        self._give(pwfile)
        # --no-locale: the C locale exists everywhere; a missing LANG locale would
        # make initdb fail on minimal machines.
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            SUPERUSER,
            f"--pwfile={pwfile}",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--no-locale",
            "--encoding=UTF8",
            "--no-sync",
        )
        pwfile.unlink()

    def start(self) -> None:
        sockdir = self.dir / "sock"
        sockdir.mkdir()
        self._give(sockdir)
        # A free port can be taken between probing and binding; retry a few times.
        for attempt in range(5):
            self.port = _free_port()
            # Settings go into postgresql.auto.conf rather than `pg_ctl -o`, which
            # pg_ctl hands to a shell, so paths with spaces would need quoting.
            conf = self.data / "postgresql.auto.conf"
            conf.write_text(
                f"port = {self.port}\n"
                "listen_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{sockdir}'\n"
                "synchronous_commit = off\n"
                "max_connections = 200\n"
                # Durability is pointless for a server deleted after the session.
                + ("" if self.durable else "fsync = off\nfull_page_writes = off\n")
                + self.extra_conf
            )
            self._give(conf)
            try:
                self._run(
                    "pg_ctl",
                    "-D",
                    str(self.data),
                    "-l",
                    str(self.log),
                    "-w",
                    "-t",
                    str(START_TIMEOUT_S),
                    "start",
                )
                return
            except RuntimeError:
                if attempt == 4 or "could not bind" not in self._log_tail():
                    raise

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            # The data is thrown away, so there is nothing to flush: -m immediate.
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def url(self, user: str, password: str, database: str) -> str:
        return f"postgresql+psycopg://{user}:{password}@127.0.0.1:{self.port}/{database}"

    def admin(self, *statements: str) -> None:
        """Run statements as the superuser, outside a transaction."""
        _admin_execute(self.url(SUPERUSER, self.superuser_password, "postgres"), *statements)

    def create_app_database(self) -> str:
        """Create the test role and database; returns their SQLAlchemy URL."""
        self.admin(
            f"CREATE ROLE {ROLE} LOGIN CREATEDB PASSWORD '{self.password}'",
            f"CREATE DATABASE {DATABASE} OWNER {ROLE}",
        )
        return self.url(ROLE, self.password, DATABASE)


def _admin_execute(url: str, *statements: str) -> None:
    """Run statements that must not be inside a transaction (CREATE DATABASE)."""
    sqlalchemy = pytest.importorskip("sqlalchemy")
    engine = sqlalchemy.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            for statement in statements:
                conn.execute(sqlalchemy.text(statement))
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """SQLAlchemy URL of database ``worklens_test`` on a private PostgreSQL server."""
    bindir = find_pg_bindir()
    if bindir is None:
        pytest.skip(INSTALL_HINT)
    try:
        server = PgCluster(bindir)
    except PgUnavailable as exc:
        pytest.skip(str(exc))
    try:
        started = time.monotonic()
        server.init()
        server.start()
        url = server.create_app_database()
        global startup_seconds
        startup_seconds = time.monotonic() - started
        yield url
    finally:
        try:
            server.stop()
        finally:
            server.remove()


def fresh_pg_database(postgres_url: str) -> str:
    """Create a new, empty, uniquely named database and return its URL.

    Each test gets its own schema this way; the databases vanish with the
    server at the end of the session.
    """
    sqlalchemy = pytest.importorskip("sqlalchemy")
    name = f"wl_{uuid.uuid4().hex[:16]}"
    _admin_execute(postgres_url, f"CREATE DATABASE {name}")
    url = sqlalchemy.engine.make_url(postgres_url).set(database=name)
    rendered: str = url.render_as_string(hide_password=False)
    return rendered


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if startup_seconds is not None and terminalreporter.config.get_verbosity() > 0:
        terminalreporter.write_line(
            f"PostgreSQL test server ready in {startup_seconds:.2f}s (initdb, start, role, db)"
        )
