"""The one database access layer: engine set-up and transactions for both back ends."""

from __future__ import annotations

import os
import threading
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Table, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.sql.dml import Insert

try:
    import fcntl
except ImportError:  # Windows: SQLite's own busy wait is the only queue there
    fcntl = None  # type: ignore[assignment]


class Database:
    """Owns the engine. ``write()`` for transactions that change data, ``read()`` otherwise."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        self._write_lock = threading.Lock()
        self._lock_dir: Path | None = None
        if self.is_sqlite:
            if self.url.database and self.url.database != ":memory:":
                path = Path(self.url.database)
                _create_private(path)
                self._lock_dir = path.parent
                self._lock_stem = path.name
            self.engine: Engine = create_engine(
                self.url, echo=echo, connect_args={"check_same_thread": False, "timeout": 30}
            )
            _configure_sqlite(self.engine)
        else:
            self.engine = create_engine(self.url, echo=echo, pool_size=10, pool_pre_ping=True)

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A transaction that will write: on SQLite it takes the write lock up front,
        so two writers queue on busy_timeout instead of failing on lock upgrade."""
        if not self.is_sqlite:
            with self.engine.connect() as conn, conn.begin():
                yield conn
            return
        # SQLite has one writer at a time anyway; queueing writers on a lock is
        # much cheaper than SQLite's sleep-and-retry busy wait, which sleeps up
        # to 100 ms after the lock is free. Threads queue on a mutex, processes
        # (`server --workers N`) on an flock, woken by the kernel at once.
        with (
            self._write_lock,
            self._file_lock("write", blocking=True),
            self.engine.connect() as conn,
        ):
            conn = conn.execution_options(sqlite_begin="IMMEDIATE")
            with conn.begin():
                yield conn

    @contextmanager
    def exclusive(self, name: str) -> Iterator[bool]:
        """Try to become the one holder of a named lock across all server
        processes on this database; yields whether it worked (never waits)."""
        if self.is_sqlite:
            with self._file_lock(name, blocking=False) as got:
                yield got
            return
        key = zlib.crc32(name.encode())
        with self.engine.connect() as conn:
            got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar())
            conn.commit()
            try:
                yield got
            finally:
                if got:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                    conn.commit()

    @contextmanager
    def _file_lock(self, name: str, *, blocking: bool) -> Iterator[bool]:
        """An flock on a file next to the database; a no-op (always held) for an
        in-memory database or where flock does not exist."""
        if self._lock_dir is None or fcntl is None:
            yield True
            return
        path = self._lock_dir / f"{self._lock_stem}-{name}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn, conn.begin():
            yield conn

    def insert(self, table: Table) -> Insert:
        """A dialect-specific INSERT that supports ON CONFLICT clauses."""
        if self.is_sqlite:
            return sqlite.insert(table)
        return postgresql.insert(table)

    def insert_ignore(self, conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            stmt: Any = self.insert(table)
            conn.execute(stmt.on_conflict_do_nothing(), list(rows))

    def bulk_insert(
        self, conn: Connection, table: Table, columns: Sequence[str], rows: Sequence[Sequence[Any]]
    ) -> None:
        """Insert many rows the fastest way each back end has: a prepared
        executemany on SQLite, COPY on PostgreSQL. The hot path of ingest; rows
        must not conflict with stored ones (callers filter duplicates first)."""
        if not rows:
            return
        names = ", ".join(columns)
        if self.is_sqlite:
            marks = ", ".join("?" * len(columns))
            conn.exec_driver_sql(f"INSERT INTO {table.name} ({names}) VALUES ({marks})", list(rows))
            return
        cursor: Any = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        with cursor, cursor.copy(f"COPY {table.name} ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)

    def dispose(self) -> None:
        self.engine.dispose()


def _create_private(path: Path) -> None:
    """Create the database file 0600 before SQLite does: it holds window titles."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control from the sqlite3 module so BEGIN is ours to emit.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        # WAL + NORMAL: a committed transaction survives a killed process; readers
        # never block the writer.
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")
