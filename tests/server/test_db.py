"""The database layer's locks, on both back ends."""

from __future__ import annotations

import multiprocessing as mp
import threading
import time
from pathlib import Path

from worklens.server.store.db import Database


def test_exclusive_lets_one_holder_at_a_time(db_url: str) -> None:
    a, b = Database(db_url), Database(db_url)  # as two server processes would
    try:
        with a.exclusive("job") as first:
            assert first
            with b.exclusive("job") as second:
                assert not second
            with b.exclusive("other-job") as other:
                assert other
        with b.exclusive("job") as again:
            assert again  # released when the holder left
    finally:
        a.dispose()
        b.dispose()


def _hold_write_lock(url: str, entered: mp.Event, release: mp.Event) -> None:  # type: ignore[type-arg]
    db = Database(url)
    with db.write():
        entered.set()
        release.wait(30)
    db.dispose()


def test_sqlite_writers_in_two_processes_queue_and_both_commit(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/w.db"
    db = Database(url)
    with db.write() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
    ctx = mp.get_context("spawn")
    entered, release = ctx.Event(), ctx.Event()
    other = ctx.Process(target=_hold_write_lock, args=(url, entered, release))
    other.start()
    try:
        assert entered.wait(30)
        done = threading.Event()

        def write() -> None:
            with db.write() as conn:
                conn.exec_driver_sql("INSERT INTO t VALUES (1)")
            done.set()

        t = threading.Thread(target=write)
        t.start()
        time.sleep(0.3)
        assert not done.is_set()  # waits for the other process's transaction
        release.set()
        t.join(30)
        assert done.is_set()
    finally:
        release.set()
        other.join(30)
    with db.read() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM t").scalar() == 1
    assert (tmp_path / "w.db-write.lock").exists()
    db.dispose()
