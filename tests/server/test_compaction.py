"""Compaction of raw events into day chunks changes nothing anyone can read, on
SQLite and PostgreSQL: spans, reports, idempotent re-sends, late events, and
ingest running at the same time."""

from __future__ import annotations

import random
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from tests.server.conftest import T0, Server, afk, at, batch, focus
from tests.server.test_ingest_and_report import post, report
from tests.test_cli import wl
from worklens.protocol.messages import Batch, SystemIdentity
from worklens.server import app as server_app
from worklens.server.settings import ServerSettings
from worklens.server.store import migrate, orgs
from worklens.server.store.buckets import device_buckets, load_data, read_events, spans
from worklens.server.store.chunks import (
    DAY_MS,
    DAY_S,
    ChunkError,
    StoredEvent,
    day_of,
    decode,
    encode,
)
from worklens.server.store.compaction import compact, compact_day
from worklens.server.store.db import Database
from worklens.server.store.devices import DeviceAuth, authenticate, enroll
from worklens.server.store.ingest import EventWriter
from worklens.server.store.schema import event_chunks, events, rollup_dirty

FAR_FUTURE_MS = 4_000_000_000_000  # every day has ended by then: compact all


def ms(t: datetime) -> int:
    return round(t.timestamp() * 1000)


def stored(db: Database) -> tuple[int, int]:
    """(events held as rows, events held in chunks)."""
    with db.read() as conn:
        rows = conn.execute(select(func.count()).select_from(events)).scalar_one()
        packed = conn.execute(select(func.coalesce(func.sum(event_chunks.c.n), 0))).scalar_one()
    return int(rows), int(packed)


def chunk_days(db: Database) -> set[tuple[int, int]]:
    with db.read() as conn:
        return {
            (r.bucket_id, r.day_s)
            for r in conn.execute(select(event_chunks.c.bucket_id, event_chunks.c.day_s))
        }


def everything(db: Database, device_id: int) -> dict[int, list[StoredEvent]]:
    with db.read() as conn:
        return read_events(conn, device_buckets(conn, device_id), -(10**15), 10**15)


# --- the encoding alone ------------------------------------------------------------

_DAY = 20_000 * DAY_S


@st.composite
def day_events(draw: st.DrawFn) -> list[StoredEvent]:
    starts = draw(st.lists(st.integers(0, DAY_MS - 1), max_size=300))
    evs = {
        (_DAY * 1000 + s, draw(st.binary(min_size=16, max_size=16))): draw(
            st.tuples(
                st.one_of(st.integers(0, 10**6), st.integers(0, 2**63 - 1)),
                st.integers(1, 2**62),
            )
        )
        for s in starts
    }
    return sorted(StoredEvent(s, u, d, i) for (s, u), (d, i) in evs.items())


@settings(max_examples=200, deadline=None)
@given(day_events(), st.integers(0, DAY_MS), st.integers(0, DAY_MS))
def test_a_chunk_decodes_to_exactly_what_was_encoded(
    evs: list[StoredEvent], lo: int, hi: int
) -> None:
    body = encode(_DAY, evs)
    assert decode(_DAY, body) == evs
    lo_ms, hi_ms = _DAY * 1000 + lo, _DAY * 1000 + hi
    assert decode(_DAY, body, lo_ms, hi_ms) == [e for e in evs if lo_ms <= e.start_ms < hi_ms]


def test_encode_refuses_what_it_could_not_give_back_and_decode_refuses_garbage() -> None:
    e = StoredEvent(_DAY * 1000, b"u" * 16, 5, 1)
    with pytest.raises(ValueError, match="sorted"):
        encode(_DAY, [e, e])
    with pytest.raises(ValueError, match="not in the day"):
        encode(_DAY, [e._replace(start_ms=_DAY * 1000 + DAY_MS)])
    with pytest.raises(ValueError, match="16 bytes"):
        encode(_DAY, [e._replace(uid=b"short")])
    body = encode(_DAY, [e, e._replace(uid=b"v" * 16, duration_ms=-3)])
    assert decode(_DAY, body)[1].duration_ms == -3  # negative values survive (zigzag)
    for bad in (b"", body[:-1], b"\x02" + body[1:], body[:9] + b"\x00" * (len(body) - 9)):
        with pytest.raises(ChunkError):
            decode(_DAY, bad)


# --- reads are the same wherever events live ----------------------------------------


def random_history(rng: random.Random, n: int) -> list[dict[str, Any]]:
    """Focus and afk events over five days ten days back: ties on the same start,
    zero-length events, events running over midnight and for days."""
    base = ms(T0 - timedelta(days=10)) // DAY_MS * DAY_MS
    starts: list[int] = []
    out = []
    for _ in range(n):
        if starts and rng.random() < 0.1:
            start = rng.choice(starts)  # same instant as another event
        else:
            start = base + rng.randrange(5 * DAY_MS)
        starts.append(start)
        dur = rng.choice([0, rng.randrange(1, 600_000), rng.randrange(1, 3 * DAY_MS)])
        t = datetime.fromtimestamp(start / 1000, UTC)
        if rng.random() < 0.8:
            e = focus(t, dur / 1000, rng.choice(["code", "vim", "firefox"]), rng.choice("abcd"))
        else:
            e = afk(t, dur / 1000, rng.choice(["active", "afk"]))
        out.append(e)
    return out


def model(sent: list[dict[str, Any]], start_ms: int, end_ms: int) -> list[tuple[Any, ...]]:
    """What a read of ``[start_ms, end_ms)`` must give: each event once, at its
    longest duration, in (start, id) order, with its payload."""
    best: dict[bytes, dict[str, Any]] = {}
    for e in sent:
        uid = uuid.UUID(e["id"]).bytes
        if uid not in best or e["duration"] > best[uid]["duration"]:
            best[uid] = e
    out = []
    for uid, e in best.items():
        s = ms(datetime.fromisoformat(e["start"]))
        d = round(e["duration"] * 1000)
        if s < end_ms and s + d > start_ms:
            out.append((e["kind"], s, uid, d, e["data"]))
    return sorted(out, key=lambda r: (r[0], r[1], r[2]))


def actual(db: Database, device_id: int, start_ms: int, end_ms: int) -> list[tuple[Any, ...]]:
    kinds = {"currentwindow": "focus", "afkstatus": "afk"}
    with db.read() as conn:
        refs = device_buckets(conn, device_id)
        got = read_events(conn, refs, start_ms, end_ms)
        cache: dict[int, dict[str, Any]] = {}
        load_data(conn, {e.data_id for evs in got.values() for e in evs}, cache)
        via_spans = spans(conn, refs, start_ms, end_ms)
    for ref in refs:  # spans is read_events without the ids
        assert via_spans[ref.id] == [
            (e.start_ms, e.start_ms + e.duration_ms, e.data_id) for e in got[ref.id]
        ]
    out = [
        (kinds[ref.type], e.start_ms, e.uid, e.duration_ms, cache[e.data_id])
        for ref in refs
        for e in got[ref.id]
    ]
    return sorted(out, key=lambda r: (r[0], r[1], r[2]))  # buckets apart, each in its order


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_reads_are_identical_before_and_after_compaction(server: Server, seed: int) -> None:
    rng = random.Random(seed)
    db = server.services.db
    device_id, token = server.enroll()
    sent = random_history(rng, 300)
    # Sent in shuffled batches, with some events sent again (a few of them longer).
    again = [
        {**e, "duration": e["duration"] + rng.choice([0, 0, 1.5])} for e in rng.sample(sent, 40)
    ]
    mixed = sent + again
    rng.shuffle(mixed)
    for i in range(0, len(mixed), 40):
        post(server, token, batch(*mixed[i : i + 40]))
    sent = mixed
    base = ms(T0 - timedelta(days=10)) // DAY_MS * DAY_MS
    windows = [(base - DAY_MS, base + 9 * DAY_MS)]
    for _ in range(25):
        a = base + rng.randrange(-DAY_MS, 6 * DAY_MS)
        windows.append((a, a + rng.choice([1, 60_000, 3_600_000, DAY_MS, 3 * DAY_MS])))
    windows += [(base + k * DAY_MS, base + (k + 1) * DAY_MS) for k in range(6)]

    def check() -> None:
        for w in windows:
            assert actual(db, device_id, *w) == model(sent, *w), w

    check()
    # Part of the history first (days before the third one), then all of it.
    first = compact(db, base + 3 * DAY_MS)
    assert first.groups >= 4 and first.events > 0 and stored(db)[0] > 0
    check()
    rest = compact(db, FAR_FUTURE_MS)
    assert stored(db) == (0, first.events + rest.events)
    check()
    assert compact(db, FAR_FUTURE_MS).groups == 0  # nothing left to do
    # A late event unpacks its day: reads still agree, then it packs again.
    late = focus(datetime.fromtimestamp((base + 2 * DAY_MS + 5000) / 1000, UTC), 42, "late")
    post(server, token, batch(late))
    sent.append(late)
    assert stored(db)[0] > 1  # the whole day came back as rows
    check()
    assert compact(db, FAR_FUTURE_MS).groups == 1
    assert stored(db)[0] == 0
    check()


# --- writes to compacted days -------------------------------------------------------


def dirty_hours(db: Database, device_id: int) -> set[int]:
    with db.read() as conn:
        return set(
            conn.execute(
                select(rollup_dirty.c.hour_s).where(rollup_dirty.c.device_id == device_id)
            ).scalars()
        )


def test_a_resent_event_after_compaction_is_stored_once(server: Server) -> None:
    device_id, token = server.enroll()
    body = batch(focus(at(0), 60, "code", "a"), afk(at(0), 60, "active"))
    post(server, token, body)
    assert report(server) == {"code": 60.0}
    assert dirty_hours(server.services.db, device_id) == set()
    assert compact(server.services.db, FAR_FUTURE_MS).events == 2
    assert stored(server.services.db) == (0, 2)
    before = everything(server.services.db, device_id)
    again = {**body, "batch_id": str(uuid.uuid4())}
    assert post(server, token, again) == {"accepted": 0, "duplicates": 2, "updated": 0}
    assert everything(server.services.db, device_id) == before
    # Packing and unpacking change nothing a rollup sees: no hour was marked.
    assert dirty_hours(server.services.db, device_id) == set()
    assert sum(stored(server.services.db)) == 2
    assert report(server) == {"code": 60.0}
    compact(server.services.db, FAR_FUTURE_MS)
    assert stored(server.services.db) == (0, 2)


def test_a_longer_resend_after_compaction_extends_the_event(server: Server) -> None:
    _, token = server.enroll()
    e = focus(at(0), 60, "code", "a")
    post(server, token, batch(e, afk(at(0), 7200, "active")))
    assert report(server) == {"code": 60.0}
    compact(server.services.db, FAR_FUTURE_MS)
    assert post(server, token, batch({**e, "duration": 5400}))["updated"] == 1
    assert report(server) == {"code": 5400.0}
    compact(server.services.db, FAR_FUTURE_MS)
    assert post(server, token, batch({**e, "duration": 30}))["duplicates"] == 1
    assert sum(stored(server.services.db)) == 2
    assert report(server) == {"code": 5400.0}


def test_a_late_event_into_a_compacted_day_counts(server: Server) -> None:
    _, token = server.enroll()
    post(server, token, batch(focus(at(0), 600, "code", "a"), afk(at(0), 7200, "active")))
    assert report(server) == {"code": 600.0}
    compact(server.services.db, FAR_FUTURE_MS)
    days = chunk_days(server.services.db)
    assert len(days) == 2
    assert post(server, token, batch(focus(at(30), 300, "vim", "b")))["accepted"] == 1
    assert stored(server.services.db) == (2, 1)  # the focus day came back as rows
    assert report(server) == {"code": 600.0, "vim": 300.0}
    compact(server.services.db, FAR_FUTURE_MS)
    assert stored(server.services.db) == (0, 3) and chunk_days(server.services.db) == days
    assert report(server) == {"code": 600.0, "vim": 300.0}


def test_reports_are_the_same_with_and_without_compaction(server: Server) -> None:
    """Two devices with the same history; one is compacted before its rollups
    are computed, so rollups and raw edges both come from chunks."""
    rng = random.Random(7)
    history = random_history(rng, 400)
    (a, token_a), (b, token_b) = server.enroll(hostname="a"), server.enroll(hostname="b")
    for token in (token_a, token_b):  # the same event ids too: they break ties
        for i in range(0, len(history), 100):
            post(server, token, batch(*history[i : i + 100]))
    with server.services.db.read() as conn:
        bucket_ids = [r.id for r in device_buckets(conn, a)]
    for bucket_id in bucket_ids:  # device a only
        for k in range(-1, 8):
            compact_day(server.services.db, bucket_id, day_of(ms(T0) - 10 * DAY_MS) + k * DAY_S)
    assert stored(server.services.db)[1] > 0
    starts = [T0 - timedelta(days=11), T0 - timedelta(days=9, hours=3, minutes=17, seconds=5)]
    ends = [T0 - timedelta(days=4), T0 - timedelta(days=6, minutes=41)]
    for start in starts:
        for end in ends:
            for group_by in ("app", "title"):
                seen = [
                    report(server, group_by, start=start.isoformat(), end=end.isoformat(), device=d)
                    for d in (a, b)
                ]
                assert seen[0] == seen[1] and seen[0], (start, end, group_by)
    total = report(server, "device", start=starts[0].isoformat(), end=ends[0].isoformat())
    assert total[f"a (#{a})"] == total[f"b (#{b})"] > 0


def test_a_day_in_both_places_reads_merged_and_packs_into_one_chunk(server: Server) -> None:
    """Writers never leave a day both in rows and in a chunk, but readers and the
    compactor cope if one ever does: merged in order, the longer copy kept."""
    device_id, token = server.enroll()
    first, second = focus(at(0), 60, "code", "a"), focus(at(5), 60, "vim", "b")
    post(server, token, batch(first, second, afk(at(0), 600, "active")))
    compact(server.services.db, FAR_FUTURE_MS)
    whole = everything(server.services.db, device_id)
    (focus_bucket,) = [b for b, evs in whole.items() if len(evs) == 2]
    a, b = whole[focus_bucket]
    stray = [(a.start_ms + 1000, uuid.uuid4().bytes, 10_000, a.data_id)]
    copies = [(a.start_ms, a.uid, a.duration_ms + 5000, a.data_id)]  # same event, longer
    with server.services.db.write() as conn:
        server.services.db.bulk_insert(
            conn,
            events,
            ("bucket_id", "start_ms", "uid", "duration_ms", "data_id"),
            [(focus_bucket, *r) for r in stray + copies],
        )
    both = everything(server.services.db, device_id)[focus_bucket]
    assert [(e.start_ms, e.uid) for e in both] == sorted(
        [(a.start_ms, a.uid), (a.start_ms, a.uid), (stray[0][0], stray[0][1]), (b.start_ms, b.uid)]
    )
    assert compact(server.services.db, FAR_FUTURE_MS).events == 2
    assert stored(server.services.db) == (0, 4)
    assert everything(server.services.db, device_id)[focus_bucket] == [
        a._replace(duration_ms=a.duration_ms + 5000),
        StoredEvent(*stray[0]),
        b,
    ]


# --- concurrency --------------------------------------------------------------------


def _device(db: Database) -> DeviceAuth:
    with db.write() as conn:
        org, _ = orgs.create_org(conn, f"org-{uuid.uuid4()}", 0)
        _, token = enroll(conn, org, SystemIdentity(hardware_uuid="hw", hostname="pc"), 0)
        device = authenticate(conn, token)
    assert device is not None
    return device


def test_compaction_concurrent_with_ingest_loses_and_doubles_nothing(db_url: str) -> None:
    db = Database(db_url)
    migrate.upgrade(db)
    writer = EventWriter(db)
    device = _device(db)
    base = ms(T0 - timedelta(days=10)) // DAY_MS * DAY_MS
    sent: list[list[dict[str, Any]]] = [[] for _ in range(3)]
    errors: list[BaseException] = []
    stop = threading.Event()

    def ingest(k: int) -> None:
        # Each thread sends its own events (so two threads never insert the same
        # key, which is a plain retry case) into the same bucket and days: new
        # ones, and re-sends of earlier ones, the same or longer.
        rng = random.Random(k)
        mine = sent[k]
        try:
            for _ in range(40):
                evs = []
                for _ in range(rng.randrange(1, 25)):
                    if mine and rng.random() < 0.4:
                        old = rng.choice(mine)
                        e = {**old, "duration": old["duration"] + rng.choice([0, 0.5, 7])}
                    else:
                        start = base + rng.randrange(4 * DAY_MS)
                        t = datetime.fromtimestamp(start / 1000, UTC)
                        e = focus(t, rng.randrange(0, 900_000) / 1000, "app", str(k))
                    evs.append(e)
                writer.ingest(device, Batch.model_validate(batch(*evs)), 0)
                mine.extend(evs)
        except BaseException as exc:
            errors.append(exc)

    def compactor() -> None:
        try:
            while not stop.is_set():
                compact(db, FAR_FUTURE_MS)
        except BaseException as exc:
            errors.append(exc)
            stop.set()

    threads = [threading.Thread(target=ingest, args=(k,)) for k in range(3)]
    packer = threading.Thread(target=compactor)
    packer.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    stop.set()
    packer.join(120)
    assert not errors, errors
    everyone = [e for mine in sent for e in mine]
    window = (base - DAY_MS, base + 6 * DAY_MS)
    expected = model(everyone, *window)
    assert actual(db, device.id, *window) == expected
    assert sum(stored(db)) == len(expected)
    compact(db, FAR_FUTURE_MS)
    assert stored(db) == (0, len(expected))
    assert actual(db, device.id, *window) == expected
    db.dispose()


# --- where it runs: the server's background job and the CLI -------------------------


def test_the_background_job_packs_days_older_than_the_setting(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORKLENS_COMPACT_AFTER_DAYS", "3.5")
    assert ServerSettings().compact_after_days == 3.5
    _, token = server.enroll()
    now = datetime.now(UTC)
    old, recent = now - timedelta(days=4), now - timedelta(hours=1)
    post(server, token, batch(focus(old, 10, "code"), focus(recent, 10, "code")))
    assert server.services.settings.compact_after_days == 2
    server_app._compact_if_first(server.services)
    assert stored(server.services.db) == (1, 1)
    (day,) = chunk_days(server.services.db)
    assert day[1] == day_of(ms(old))
    # Another process holding the job's lock: this one leaves it alone.
    other = Database(str(server.services.db.url.render_as_string(hide_password=False)))
    try:
        with other.exclusive("compaction") as got:
            assert got
            post(server, token, batch(focus(old + timedelta(minutes=1), 10, "code")))
            server_app._compact_if_first(server.services)
            assert stored(server.services.db) == (3, 0)  # the old day came back, stays
    finally:
        other.dispose()


def test_cli_db_compact(db_url: str) -> None:
    db = Database(db_url)
    migrate.upgrade(db)
    device = _device(db)
    now = time.time()
    evs = [
        focus(datetime.fromtimestamp(now - days * 86400, UTC), 60, "code")
        for days in (10, 9, 3, 0.01)
    ]
    EventWriter(db).ingest(device, Batch.model_validate(batch(*evs)), 0)
    before = everything(db, device.id)
    url = db.url.render_as_string(hide_password=False)
    r = wl("db", "compact", "--older-than-days", "5", db=url)
    assert r.returncode == 0, r.stderr
    assert "compacted 2 bucket-days, 2 events" in r.stdout
    assert stored(db) == (2, 2)
    r = wl("db", "compact", "--db", url)  # default: 2 days
    assert r.returncode == 0 and "compacted 1 bucket-days, 1 events" in r.stdout
    r = wl("db", "compact", "--db", url)
    assert r.returncode == 0 and "compacted 0 bucket-days" in r.stdout
    assert everything(db, device.id) == before
    r = wl("db", "compact", "--older-than-days", "-1", "--db", url)
    assert r.returncode == 2
    db.dispose()
