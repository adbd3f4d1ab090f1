"""The agent's private SQLite files (the spool, the ActivityWatch store): created
0600 in 0700 directories, WAL, schema versioned with ``user_version``."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

WAL_SIZE_LIMIT = 4 * 1024 * 1024


def open_private(
    path: Path,
    schema: str,
    version: int,
    *,
    synchronous: str,
    init: Callable[[sqlite3.Connection], None] | None = None,
) -> sqlite3.Connection:
    """Open (creating if needed) ``path`` and bring its schema to ``version``.

    ``schema`` is DDL separated by ``;`` that is safe to run again (IF NOT
    EXISTS); ``init`` runs in the same transaction after it. A file written by a
    newer agent is refused rather than misread. The connection is autocommit
    (callers make their own transactions) and may be shared between threads
    under the caller's lock.
    """
    make_private_dirs(path.parent)
    # Create the file ourselves so it is born 0600 (SQLite would use 0644), and
    # tighten a file an older version left readable. SQLite gives the -wal and
    # -shm files the same mode as the database file: they hold titles too.
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.close(fd)
    os.chmod(path, 0o600)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
    try:
        found = db.execute("PRAGMA user_version").fetchone()[0]
        if found > version:
            raise RuntimeError(
                f"{path} was written by a newer agent (schema {found}, this one knows {version})"
            )
        # Must precede the first CREATE TABLE to take effect; lets us give pages
        # back to the filesystem once a big backlog has drained.
        db.execute("PRAGMA auto_vacuum = INCREMENTAL")
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise RuntimeError(f"cannot put {path} in WAL mode (got {mode!r})")
        db.execute(f"PRAGMA synchronous = {synchronous}")
        db.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
        db.execute("BEGIN IMMEDIATE")
        try:
            # Not executescript(): it would COMMIT first; run the DDL one by one.
            for stmt in schema.split(";"):
                if stmt.strip():
                    db.execute(stmt)
            db.execute(f"PRAGMA user_version = {version}")
            if init is not None:
                init(db)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    except BaseException:
        db.close()
        raise
    return db


def make_private_dirs(directory: Path) -> None:
    """Create ``directory`` and any missing parents with mode 0700 (umask-proof).

    Directories that already exist are left alone: the spool may live in a shared
    place such as /var/lib whose mode is not ours to change.
    """
    missing: list[Path] = []
    d = directory
    while not d.exists():
        missing.append(d)
        if d.parent == d:
            break
        d = d.parent
    for d in reversed(missing):
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:
            continue  # created concurrently; keep whatever mode it got
        os.chmod(d, 0o700)  # mkdir's mode is filtered by the umask
    if missing:
        # Make the new directory entries themselves durable.
        fsync_dir(missing[-1].parent)


def fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # e.g. Windows cannot open directories; nothing more we can do
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on a directory
    finally:
        os.close(fd)
