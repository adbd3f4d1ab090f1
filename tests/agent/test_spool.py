"""Specification of the agent's durable spool (worklens.agent.spool)."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from worklens.agent.spool import Spool, SpoolItem
from worklens.protocol.messages import FocusData, FocusEvent


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FixedJitter(random.Random):
    """uniform(a, b) always returns a + fraction * (b - a)."""

    def __init__(self, fraction: float) -> None:
        super().__init__(0)
        self.fraction = fraction

    def uniform(self, a: float, b: float) -> float:
        return a + self.fraction * (b - a)


def key() -> str:
    return str(uuid.uuid4())


def focus(k: str, duration: float = 5.0, title: str = "spool.py - worklens") -> dict[str, Any]:
    ev = FocusEvent(
        id=uuid.UUID(k),
        start=datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
        duration=duration,
        data=FocusData(app="code", title=title),
    )
    return ev.model_dump(mode="json")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "spool.db"


@pytest.fixture
def spool(path: Path, clock: FakeClock) -> Iterator[Spool]:
    sp = Spool(path, clock=clock)
    yield sp
    sp.close()


def all_pending(sp: Spool) -> list[SpoolItem]:
    return sp.pending(1_000_000)


# --- storage ----------------------------------------------------------------------


def test_storage_is_sqlite_in_wal_mode_with_full_sync(spool: Spool, path: Path) -> None:
    spool.put(key(), {"a": 1})
    other = sqlite3.connect(path)
    try:
        # journal_mode=WAL is a property of the file: any connection sees it.
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        other.close()
    # synchronous is per connection: check the spool's own (2 == FULL).
    assert spool._conn().execute("PRAGMA synchronous").fetchone()[0] == 2
    assert path.with_name("spool.db-wal").exists()


def test_creates_private_dirs_and_a_0600_file_whatever_the_umask(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    os.chmod(shared, 0o755)
    path = shared / "a" / "b" / "spool.db"
    old = os.umask(0)  # the loosest umask: modes must still be private
    try:
        with Spool(path) as sp:
            sp.put(key(), {"title": "secret window title"})
            modes = {
                p: stat.S_IMODE(p.stat().st_mode)
                for p in (path.parent.parent, path.parent, path, path.with_name("spool.db-wal"))
            }
    finally:
        os.umask(old)
    assert modes == {
        path.parent.parent: 0o700,
        path.parent: 0o700,
        path: 0o600,
        path.with_name("spool.db-wal"): 0o600,
    }
    # A directory that already existed is not ours to change.
    assert stat.S_IMODE(shared.stat().st_mode) == 0o755


def test_an_existing_readable_spool_file_is_tightened_to_0600(path: Path) -> None:
    Spool(path).close()
    os.chmod(path, 0o644)
    Spool(path).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_put_survives_closing_and_reopening(path: Path) -> None:
    k = key()
    with Spool(path) as sp:
        sp.put(k, focus(k))
    with Spool(path) as sp:
        [item] = sp.lease()
    assert (item.key, item.payload, item.version, item.attempts) == (k, focus(k), 1, 0)


def test_payloads_and_keys_round_trip_exactly(spool: Spool) -> None:
    u = key()
    keys = [u, u.upper(), "{" + u + "}", "123", "", "heartbeat:host-1"]
    payload = {"n": 1.5, "none": None, "list": [1, "two"], "nested": {"é": "ünïcode"}}
    for i, k in enumerate(keys):
        spool.put(k, dict(payload, i=i))
    items = spool.lease()
    # All six are distinct keys (a UUID in another spelling is another key) ...
    assert [it.key for it in items] == keys
    # ... and every payload comes back equal, types included.
    assert [it.payload for it in items] == [dict(payload, i=i) for i in range(len(keys))]
    assert isinstance(items[4].key, str)


def test_a_payload_that_is_not_json_compatible_is_refused_and_nothing_is_stored(
    spool: Spool,
) -> None:
    with pytest.raises(TypeError):
        spool.put(key(), {"start": datetime.now(UTC)})
    with pytest.raises(TypeError):
        spool.put_many([(key(), {"ok": 1}), (key(), {"bad": object()})])
    assert spool.stats().depth == 0


def test_a_spool_written_by_a_newer_schema_is_refused(path: Path) -> None:
    Spool(path).close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 99")
    db.commit()
    db.close()
    with pytest.raises(RuntimeError, match="newer"):
        Spool(path)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_items": 0},
        {"max_attempts": 0},
        {"base_backoff": 0.0},
        {"base_backoff": 10.0, "max_backoff": 5.0},
        {"lease_timeout": 0.0},
    ],
)
def test_bad_settings_are_refused(path: Path, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Spool(path, **kwargs)


def test_a_closed_spool_refuses_work_and_close_is_idempotent(path: Path) -> None:
    sp = Spool(path)
    sp.close()
    sp.close()
    with pytest.raises(RuntimeError, match="closed"):
        sp.put(key(), {})


# --- leasing and acking -------------------------------------------------------------


def test_lease_returns_oldest_first_up_to_the_limit(spool: Spool) -> None:
    keys = [key() for _ in range(5)]
    for k in keys:
        spool.put(k, focus(k))
    first = spool.lease(3)
    second = spool.lease(3)
    assert [it.key for it in first] == keys[:3]
    assert [it.key for it in second] == keys[3:]
    assert spool.lease(3) == []


def test_ack_removes_delivered_items_and_counts_them(spool: Spool) -> None:
    keys = [key() for _ in range(3)]
    spool.put_many((k, focus(k)) for k in keys)
    items = spool.lease()
    assert spool.ack(items[:2]) == 2
    assert spool.ack(items[:2]) == 0  # already gone
    assert [it.key for it in all_pending(spool)] == keys[2:]
    assert spool.stats().depth == 1


def test_a_leased_item_is_not_leased_again_until_acked_failed_released_or_expired(
    path: Path, clock: FakeClock
) -> None:
    with Spool(path, clock=clock, lease_timeout=60.0) as sp:
        k = key()
        sp.put(k, focus(k))
        [item] = sp.lease()
        assert sp.lease() == []
        assert sp.stats().in_flight == 1
        sp.release([item])
        [item] = sp.lease()
        assert item.attempts == 0  # a release is not a failed attempt
        clock.now += 59.0
        assert sp.lease() == []
        clock.now += 2.0  # the lease ran out: the batch was lost somewhere
        [again] = sp.lease()
        assert again.key == k


def test_leased_but_unacked_items_are_pending_again_after_a_restart(path: Path) -> None:
    keys = [key() for _ in range(3)]
    sp = Spool(path)
    sp.put_many((k, focus(k)) for k in keys)
    assert len(sp.lease()) == 3
    sp.close()  # as if the process died mid-send: nothing acked or failed
    with Spool(path) as sp2:
        assert [it.key for it in sp2.lease()] == keys


# --- same key put again (heartbeat merge) ----------------------------------------


def test_putting_a_pending_key_again_replaces_it_in_place_and_bumps_version(
    spool: Spool,
) -> None:
    a, b = key(), key()
    spool.put(a, focus(a, duration=5))
    spool.put(b, focus(b))
    spool.put(a, focus(a, duration=10))
    items = spool.lease()
    assert [it.key for it in items] == [a, b]  # a kept its place in the queue
    assert items[0].payload["duration"] == 10
    assert items[0].version == 2
    assert spool.stats().depth == 2


def test_ack_of_an_item_leased_before_it_was_replaced_keeps_the_newer_payload(
    spool: Spool,
) -> None:
    k = key()
    spool.put(k, focus(k, duration=5))
    [old] = spool.lease()
    spool.put(k, focus(k, duration=30))  # heartbeat merge while old is in flight
    assert spool.lease() == []  # never two versions of one event in flight
    assert spool.ack([old]) == 0
    [new] = spool.lease()
    assert (new.seq, new.version, new.payload["duration"]) == (old.seq, 2, 30)
    assert spool.ack([new]) == 1
    assert spool.stats().depth == 0


def test_putting_a_key_again_after_it_was_acked_creates_a_new_row(spool: Spool) -> None:
    k = key()
    spool.put(k, focus(k, duration=5))
    [first] = spool.lease()
    assert spool.ack([first]) == 1
    spool.put(k, focus(k, duration=40))
    [second] = spool.lease()
    assert second.seq > first.seq
    assert (second.key, second.version, second.payload["duration"]) == (k, 1, 40)


def test_put_many_replaces_duplicates_within_one_batch(spool: Spool) -> None:
    k = key()
    spool.put_many([(k, focus(k, duration=1)), (k, focus(k, duration=2))])
    [item] = spool.lease()
    assert (item.version, item.payload["duration"]) == (2, 2)


def test_put_many_is_one_transaction(spool: Spool) -> None:
    statements: list[str] = []
    spool._conn().set_trace_callback(statements.append)
    spool.put_many((k, focus(k)) for k in [key() for _ in range(500)])
    spool._conn().set_trace_callback(None)
    assert sum(s.startswith("BEGIN") for s in statements) == 1
    assert sum(s.startswith("COMMIT") for s in statements) == 1
    assert spool.stats().depth == 500


def test_put_many_is_all_or_nothing_and_the_spool_stays_usable_after_an_error(
    spool: Spool, path: Path
) -> None:
    # Stand-in for the disk failing half-way through a batch: the third insert aborts.
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TRIGGER boom BEFORE INSERT ON items WHEN (SELECT COUNT(*) FROM items) >= 2 "
        "BEGIN SELECT RAISE(ABORT, 'disk on fire'); END"
    )
    db.commit()
    with pytest.raises(sqlite3.Error, match="disk on fire"):
        spool.put_many((key(), {"i": i}) for i in range(4))
    assert spool.stats().depth == 0
    db.execute("DROP TRIGGER boom")
    db.commit()
    db.close()
    k = key()
    spool.put(k, {"i": 9})
    assert [it.key for it in spool.lease()] == [k]


# --- retries and dead letters ---------------------------------------------------------


@pytest.mark.parametrize(("fraction", "factor"), [(0.0, 0.5), (1.0, 1.0)])
def test_fail_schedules_exponential_backoff_with_jitter_between_half_and_full(
    path: Path, clock: FakeClock, fraction: float, factor: float
) -> None:
    with Spool(
        path,
        clock=clock,
        base_backoff=2.0,
        max_backoff=50.0,
        max_attempts=100,
        rng=FixedJitter(fraction),
    ) as sp:
        k = key()
        sp.put(k, focus(k))
        waits = []
        for attempt in range(1, 8):
            [item] = sp.lease()
            assert item.attempts == attempt - 1
            sp.fail([item], "connection refused")
            wait = sp.next_ready_in()
            assert wait is not None
            waits.append(wait)
            assert sp.lease() == []  # not before its time
            clock.now += wait
        # 2 * 2**(n-1), capped at 50, times the jitter factor.
        assert waits == pytest.approx([factor * d for d in (2, 4, 8, 16, 32, 50, 50)])


def test_real_jitter_stays_within_half_and_full_delay(path: Path) -> None:
    with Spool(path, base_backoff=4.0, max_backoff=300.0) as sp:
        delays = [sp.backoff(3) for _ in range(200)]
    assert all(8.0 <= d <= 16.0 for d in delays)
    assert len(set(delays)) > 100  # actually random, so a fleet spreads out
    with Spool(path, base_backoff=1.0, max_backoff=300.0) as sp:
        assert sp.backoff(10_000) <= 300.0  # no float overflow for huge counts


def test_after_max_attempts_an_item_is_dead_lettered_kept_and_not_sent(
    path: Path, clock: FakeClock
) -> None:
    with Spool(path, clock=clock, max_attempts=3, rng=FixedJitter(1.0)) as sp:
        bad, good = key(), key()
        sp.put(bad, focus(bad))
        sp.put(good, focus(good))
        for n in range(3):
            item = next(it for it in sp.lease() if it.key == bad)
            sp.release([it for it in sp.lease() if it.key != bad])
            sp.fail([item], f"422 invalid event ({n})")
            clock.now += 1000
        stats = sp.stats()
        assert (stats.depth, stats.dead) == (1, 1)
        assert stats.last_error == "422 invalid event (2)"
        assert [it.key for it in sp.lease()] == [good]
        [dead] = sp.dead_letters()
        assert (dead.key, dead.attempts, dead.error) == (bad, 3, "422 invalid event (2)")
        assert dead.payload == focus(bad)
    # Dead letters are on disk: still there after a restart, still not sent.
    with Spool(path, clock=clock) as sp:
        assert [it.key for it in sp.dead_letters()] == [bad]
        assert [it.key for it in sp.lease()] == [good]


def test_requeue_dead_moves_dead_letters_back_to_pending_with_fresh_attempts(
    path: Path, clock: FakeClock
) -> None:
    with Spool(path, clock=clock, max_attempts=1) as sp:
        keys = [key(), key()]
        sp.put_many((k, focus(k)) for k in keys)
        sp.fail(sp.lease(), "server down")
        assert sp.stats().dead == 2
        assert sp.requeue_dead() == 2
        items = sp.lease()
        assert [(it.key, it.attempts) for it in items] == [(k, 0) for k in keys]
        assert sp.stats().dead == 0


def test_putting_a_dead_lettered_key_again_revives_it_with_the_new_payload(
    path: Path, clock: FakeClock
) -> None:
    with Spool(path, clock=clock, max_attempts=1) as sp:
        k = key()
        sp.put(k, focus(k, duration=5))
        sp.fail(sp.lease(), "rejected")
        assert sp.lease() == []
        sp.put(k, focus(k, duration=9))
        [item] = sp.lease()
        assert (item.payload["duration"], item.version, item.attempts) == (9, 2, 0)
        assert sp.stats().dead == 0


def test_an_unreadable_payload_is_dead_lettered_instead_of_blocking_the_queue(
    spool: Spool, path: Path
) -> None:
    bad, good = key(), key()
    spool.put(bad, focus(bad))
    spool.put(good, focus(good))
    db = sqlite3.connect(path)
    db.execute("UPDATE items SET payload = x'c1' WHERE seq = 1")  # 0xc1: never valid
    db.commit()
    db.close()
    assert [it.key for it in spool.lease()] == [good]
    [dead] = spool.dead_letters()
    assert dead.key == bad
    assert dead.error is not None and "undecodable" in dead.error


def test_fail_of_an_item_already_acked_changes_nothing(spool: Spool) -> None:
    k = key()
    spool.put(k, focus(k))
    [item] = spool.lease()
    spool.ack([item])
    spool.fail([item], "late failure")
    assert (spool.stats().depth, spool.stats().dead) == (0, 0)


# --- size bound -------------------------------------------------------------------------


def test_when_full_the_oldest_pending_items_are_dropped_and_counted(path: Path) -> None:
    with Spool(path, max_items=5) as sp:
        keys = [key() for _ in range(8)]
        for k in keys:
            sp.put(k, focus(k))  # never blocks, never raises
        assert [it.key for it in all_pending(sp)] == keys[3:]
        assert (sp.stats().depth, sp.stats().dropped) == (5, 3)
        sp.put_many((k, focus(k)) for k in [key() for _ in range(4)])
        assert (sp.stats().depth, sp.stats().dropped) == (5, 7)


def test_when_full_dead_letters_are_dropped_before_pending_items(
    path: Path, clock: FakeClock
) -> None:
    with Spool(path, clock=clock, max_items=4, max_attempts=1) as sp:
        old = [key() for _ in range(2)]
        sp.put_many((k, focus(k)) for k in old)
        dead = key()
        sp.put(dead, focus(dead))
        sp.fail([it for it in sp.lease() if it.key == dead], "rejected")
        sp.release(sp.lease())
        new = [key() for _ in range(2)]
        sp.put_many((k, focus(k)) for k in new)  # 5 > 4: one must go
        assert sp.dead_letters() == []
        assert [it.key for it in all_pending(sp)] == old + new
        sp.put(key(), {})  # next one out is the oldest pending
        assert old[0] not in [it.key for it in all_pending(sp)]
        assert sp.stats().dropped == 2


def test_dropping_an_item_in_flight_ends_its_lease(path: Path) -> None:
    with Spool(path, max_items=2) as sp:
        sp.put_many((key(), {}) for _ in range(2))
        assert len(sp.lease()) == 2
        sp.put(key(), {})
        assert (sp.stats().in_flight, sp.stats().dropped) == (1, 1)


def test_the_dropped_counter_survives_a_restart(path: Path) -> None:
    with Spool(path, max_items=2) as sp:
        sp.put_many((key(), {}) for _ in range(5))
        assert sp.stats().dropped == 3
    with Spool(path, max_items=2) as sp:
        assert sp.stats().dropped == 3
        sp.put(key(), {})
        assert sp.stats().dropped == 4


def test_a_lower_max_items_applies_at_the_next_put(path: Path) -> None:
    with Spool(path) as sp:
        sp.put_many((key(), {}) for _ in range(10))
    with Spool(path, max_items=3) as sp:
        sp.put(key(), {})
        assert (sp.stats().depth, sp.stats().dropped) == (3, 8)


# --- introspection ------------------------------------------------------------------------


def test_next_ready_in_says_when_lease_will_return_something(path: Path, clock: FakeClock) -> None:
    with Spool(path, clock=clock, lease_timeout=30.0, rng=FixedJitter(1.0)) as sp:
        assert sp.next_ready_in() is None  # empty
        k = key()
        sp.put(k, focus(k))
        assert sp.next_ready_in() == 0.0  # ready now
        [item] = sp.lease()
        assert sp.next_ready_in() == pytest.approx(30.0)  # when the lease runs out
        sp.fail([item], "timeout")
        assert sp.next_ready_in() == pytest.approx(1.0)  # base_backoff
        clock.now += 0.25
        assert sp.next_ready_in() == pytest.approx(0.75)
        clock.now += 5
        assert sp.next_ready_in() == 0.0
        sp.ack(sp.lease())
        assert sp.next_ready_in() is None


def test_stats_report_depth_age_and_the_last_error_across_restarts(
    path: Path, clock: FakeClock
) -> None:
    with Spool(path, clock=clock) as sp:
        s = sp.stats()
        assert (s.depth, s.dead, s.dropped, s.oldest_age_s, s.last_error) == (0, 0, 0, None, None)
        first, second = key(), key()
        sp.put(first, focus(first))
        clock.now += 10
        sp.put(second, focus(second))
        clock.now += 5
        sp.put(first, focus(first, duration=15))  # a merge does not make it younger
        assert sp.stats().oldest_age_s == pytest.approx(15.0)
        sp.fail(sp.lease(1), "HTTP 503")
        failed_at = clock.now
    clock.now += 100
    with Spool(path, clock=clock) as sp:
        s = sp.stats()
        assert (s.depth, s.oldest_age_s) == (2, pytest.approx(115.0))
        assert (s.last_error, s.last_error_at) == ("HTTP 503", failed_at)


def test_free_pages_are_given_back_once_a_backlog_drains(path: Path) -> None:
    with Spool(path) as sp:
        sp.put_many((key(), {"title": "x" * 500}) for _ in range(3000))
        pages_full = sp._conn().execute("PRAGMA page_count").fetchone()[0]
        while items := sp.lease():
            sp.ack(items)
        pages_drained = sp._conn().execute("PRAGMA page_count").fetchone()[0]
    assert pages_full > 300
    assert pages_drained < 20


# --- concurrency ------------------------------------------------------------------


def test_concurrent_producers_and_a_sender_deliver_the_latest_payload_of_every_key(
    path: Path,
) -> None:
    """Collector threads put and re-put (heartbeat merge) while the sender thread
    leases, sometimes fails, and acks. Every key must reach the 'server', and the
    last payload the server saw for a key must be the last one put."""
    sp = Spool(path, base_backoff=0.001, max_backoff=0.005, max_attempts=10_000)
    n_threads, n_keys, n_merges = 4, 60, 3
    last_put: dict[str, int] = {}
    server: dict[str, int] = {}
    producers_done = threading.Event()
    errors: list[BaseException] = []

    def produce(t: int) -> None:
        try:
            rng = random.Random(t)
            for i in range(n_keys):
                k = key()
                for m in range(n_merges):
                    n = (t * 1000 + i) * 10 + m  # increasing per key
                    sp.put(k, {"id": k, "n": n})
                    last_put[k] = n
                    if rng.random() < 0.3:
                        time.sleep(0.0005)
        except BaseException as exc:
            errors.append(exc)

    def send() -> None:
        rng = random.Random(99)
        try:
            while True:
                items = sp.lease(rng.randint(1, 40))
                if not items:
                    if producers_done.is_set() and sp.stats().depth == 0:
                        return
                    time.sleep(0.001)
                    continue
                if rng.random() < 0.2:
                    sp.fail(items, "flaky network")
                    continue
                for it in items:
                    server[it.key] = it.payload["n"]  # the server upserts by id
                sp.ack(items)
        except BaseException as exc:
            errors.append(exc)

    producers = [threading.Thread(target=produce, args=(t,)) for t in range(n_threads)]
    sender = threading.Thread(target=send)
    sender.start()
    for th in producers:
        th.start()
    for th in producers:
        th.join()
    producers_done.set()
    sender.join(timeout=60)
    sp.close()
    assert not errors
    assert not sender.is_alive()
    assert len(last_put) == n_threads * n_keys
    assert server == last_put


# --- crash safety -----------------------------------------------------------------

_CHILD = textwrap.dedent(
    """
    import os, random, sys, uuid
    from pathlib import Path
    from worklens.agent.spool import Spool

    path, log_path, run = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    rng = random.Random(run)
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def note(*lines):
        os.write(fd, "".join(line + "\\n" for line in lines).encode())

    sp = Spool(path, base_backoff=0.005, max_backoff=0.02, max_attempts=4)
    note("S")
    mine = []
    n = run * 10_000_000
    while True:
        r = rng.random()
        if r < 0.45 or not mine:  # a new event
            n += 1
            k = str(uuid.uuid4())
            note(f"p {k} {n}")
            sp.put(k, {"id": k, "n": n})
            note(f"P {k} {n}")
            mine.append(k)
        elif r < 0.65:  # heartbeat merge of an earlier event (maybe already acked)
            n += 1
            k = rng.choice(mine)
            note(f"p {k} {n}")
            sp.put(k, {"id": k, "n": n})
            note(f"P {k} {n}")
        elif r < 0.75:  # a batch
            batch = []
            for _ in range(rng.randint(2, 20)):
                n += 1
                batch.append((str(uuid.uuid4()), n))
            note(*(f"p {k} {m}" for k, m in batch))
            sp.put_many((k, {"id": k, "n": m}) for k, m in batch)
            note(*(f"P {k} {m}" for k, m in batch))
            mine.extend(k for k, _ in batch)
        elif r < 0.8:
            sp.fail(sp.lease(rng.randint(1, 5)), "simulated failure")
        else:
            items = sp.lease(rng.randint(1, 30))
            note(*(f"a {it.key} {it.payload['n']}" for it in items))
            if sp.ack(items) != len(items):
                note("X ack removed fewer rows than leased")
            note(*(f"A {it.key} {it.payload['n']}" for it in items))
    """
)


def test_kill_9_at_random_moments_loses_nothing_and_duplicates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "spool" / "spool.db"
    log_path = tmp_path / "child.log"
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    kills = 25

    def started() -> int:
        return log_path.read_text().count("S\n") if log_path.exists() else 0

    for run in range(1, kills + 1):
        before = started()
        child = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(path), str(log_path), str(run)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        if rng.random() < 0.2:
            time.sleep(rng.uniform(0.0, 0.15))  # sometimes during start-up or open
        else:
            deadline = time.monotonic() + 30
            while started() == before and child.poll() is None:
                assert time.monotonic() < deadline, "child never opened the spool"
                time.sleep(0.002)
            # Kill after a random amount of work (measured in log bytes, so a slow
            # disk gets as much work done per run as a fast one), then a random
            # sub-millisecond-to-5 ms offset so the kill lands anywhere in a call.
            target = log_path.stat().st_size + rng.randint(0, 8000)
            while log_path.stat().st_size < target and time.monotonic() < deadline:
                time.sleep(0.001)
            time.sleep(rng.uniform(0.0, 0.005))
        assert child.poll() is None, child.communicate()[1].decode()
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        assert child.returncode == -signal.SIGKILL
        assert child.stderr is not None
        child.stderr.close()

    started_puts: dict[str, set[int]] = {}
    returned_put: dict[str, int] = {}
    ack_started: dict[str, set[int]] = {}
    ack_returned: set[tuple[str, int]] = set()
    for line in log_path.read_text().splitlines():
        tag, _, rest = line.partition(" ")
        if tag == "X":
            pytest.fail(f"child reported: {rest} (seed {seed})")
        if tag not in ("p", "P", "a", "A"):
            continue
        k, n_text = rest.split()
        n = int(n_text)
        if tag == "p":
            started_puts.setdefault(k, set()).add(n)
        elif tag == "P":
            returned_put[k] = max(returned_put.get(k, n), n)
        elif tag == "a":
            ack_started.setdefault(k, set()).add(n)
        else:
            ack_returned.add((k, n))

    time.sleep(0.05)  # let the children's last retry delays (<= 20 ms) run out
    with Spool(path) as sp:
        leasable = sp.lease(10_000_000)
        # Nothing pending is hidden from the sender by what a dead process left.
        assert leasable == sp.pending(10_000_000)
        remaining = leasable + sp.dead_letters(10_000_000)
        stats = sp.stats()
    keys = [it.key for it in remaining]
    assert len(keys) == len(set(keys)), f"a key is queued twice (seed {seed})"
    assert stats.dropped == 0
    held = {it.key: int(it.payload["n"]) for it in remaining}

    for k, n in held.items():
        assert n in started_puts.get(k, set()), f"{k} holds a payload never put (seed {seed})"
        assert (k, n) not in ack_returned, f"{k}: ack returned but the row is back (seed {seed})"
    for k, last in returned_put.items():
        if k in held:
            assert held[k] >= last, f"{k}: a returned put was lost (seed {seed})"
        else:
            # Gone from the spool: only an ack of this or a newer payload removes it.
            assert max(ack_started.get(k, {-1})) >= last, f"{k} lost (seed {seed})"

    # The test is only meaningful if the children did real work between kills.
    assert len(returned_put) > 200, len(returned_put)
    assert len(ack_returned) > 50, len(ack_returned)
    # ... and if kills landed inside calls (a put or an ack started, not returned).
    runs = log_path.read_text().split("S\n")[1:]
    mid_call = sum(bool(r) and r.splitlines()[-1][:1] in ("p", "a") for r in runs)
    assert mid_call >= 5, f"only {mid_call} of {len(runs)} kills landed inside a call"
