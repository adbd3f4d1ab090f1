"""The agent's local store of ActivityWatch buckets: heartbeat merges, replacements,
reads, retention."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from worklens.agent.aw_store import AwEvent, AwStore, NoSuchBucket, from_us, to_us

T0 = to_us(datetime(2026, 11, 2, 9, 0, tzinfo=UTC))
S = 1_000_000  # one second in microseconds
WEEK = 7 * 86400 * S
A = {"app": "code", "title": "a"}
B = {"app": "code", "title": "b"}


@pytest.fixture
def store(tmp_path: Path) -> AwStore:
    s = AwStore(tmp_path / "state" / "aw.db")
    assert s.create_bucket("w", "currentwindow", "aw-watcher-window", "h", "2026-11-02", {})
    return s


def beat(
    store: AwStore,
    at_s: float,
    data: dict[str, Any],
    pulsetime: float = 2.0,
    duration_s: float = 0.0,
    sent: list[AwEvent] | None = None,
) -> AwEvent:
    start = T0 + round(at_s * S)
    return store.heartbeat(
        "w",
        start,
        start + round(duration_s * S),
        data,
        pulsetime,
        WEEK,
        (sent if sent is not None else []).extend,
    )


def spans(store: AwStore) -> list[tuple[float, float, str]]:
    """(start, end) in seconds after T0 and the title, oldest first."""
    return [
        ((e.start_us - T0) / S, (e.end_us - T0) / S, e.data["title"])
        for e in reversed(store.events("w"))
    ]


def test_beats_with_equal_data_within_pulsetime_grow_one_event(store: AwStore) -> None:
    sent: list[AwEvent] = []
    first = beat(store, 0, A, sent=sent)
    for t in (1, 2, 3.5, 5.5):  # each within 2 s of the event's end
        e = beat(store, t, A, sent=sent)
        assert (e.id, e.uid) == (first.id, first.uid)
    assert spans(store) == [(0, 5.5, "a")]
    # Published: the new event, then each extension, all under one WorkLens id.
    assert [(e.uid, e.duration_s) for e in sent] == [
        (first.uid, d) for d in (0.0, 1.0, 2.0, 3.5, 5.5)
    ]


def test_the_gap_is_measured_from_the_events_end_and_is_inclusive(store: AwStore) -> None:
    beat(store, 0, A, duration_s=10)
    beat(store, 12, A)  # exactly pulsetime after the end: merged
    assert spans(store) == [(0, 12, "a")]
    beat(store, 14.000001, A)  # a microsecond too late: a new event
    assert spans(store) == [(0, 12, "a"), (14.000001, 14.000001, "a")]


def test_other_data_starts_a_new_event(store: AwStore) -> None:
    beat(store, 0, A)
    beat(store, 1, A)
    beat(store, 2, B)
    beat(store, 3, A)  # A again: its last event is not the bucket's last one
    assert spans(store) == [(0, 1, "a"), (2, 2, "b"), (3, 3, "a")]
    # Data is compared as a whole: an extra key is other data.
    beat(store, 4, {**A, "url": "x"})
    assert len(spans(store)) == 4


def test_zero_pulsetime_merges_only_touching_or_overlapping_beats(store: AwStore) -> None:
    beat(store, 0, A, pulsetime=0, duration_s=5)
    beat(store, 5, A, pulsetime=0, duration_s=1)  # starts at the end: merged
    beat(store, 3, A, pulsetime=0, duration_s=1)  # inside: merged, nothing changes
    assert spans(store) == [(0, 6, "a")]
    beat(store, 6.5, A, pulsetime=0)
    assert spans(store) == [(0, 6, "a"), (6.5, 6.5, "a")]


def test_a_beat_inside_the_event_never_shortens_it_and_publishes_nothing(store: AwStore) -> None:
    beat(store, 0, A, duration_s=60)
    sent: list[AwEvent] = []
    e = beat(store, 10, A, duration_s=5, sent=sent)
    assert (e.start_us, e.end_us) == (T0, T0 + 60 * S) and sent == []
    e = beat(store, 50, A, duration_s=20, sent=sent)  # reaches past the end: longer
    assert e.end_us == T0 + 70 * S and [x.duration_s for x in sent] == [70.0]


def test_a_beat_older_than_the_last_event_is_a_new_event(store: AwStore) -> None:
    """AW's rule: the beat must not start before the last event (latest start)."""
    beat(store, 10, A)
    beat(store, 9, A)
    assert spans(store) == [(9, 9, "a"), (10, 10, "a")]
    # The bucket's last event is the one with the latest start, whatever came last.
    beat(store, 11, A)
    assert spans(store) == [(9, 9, "a"), (10, 11, "a")]


def test_a_merge_beyond_the_longest_event_starts_a_new_one(store: AwStore) -> None:
    beat(store, 0, A, duration_s=7 * 86400 - 1)
    beat(store, 7 * 86400 + 1, A)  # within pulsetime, but the event would exceed a week
    assert len(spans(store)) == 2


def test_a_failing_publish_stores_nothing(store: AwStore) -> None:
    beat(store, 0, A)

    def broken(events: list[AwEvent]) -> None:
        raise OSError("disk full")

    start = T0 + S
    with pytest.raises(OSError):
        store.heartbeat("w", start, start, A, 2.0, WEEK, broken)
    with pytest.raises(OSError):
        store.heartbeat("w", start, start, B, 2.0, WEEK, broken)
    with pytest.raises(OSError):
        store.insert("w", [(None, start, start, B)], broken)
    assert spans(store) == [(0, 0, "a")]


def test_insert_and_replace_by_id(store: AwStore) -> None:
    sent: list[AwEvent] = []
    (e,) = store.insert("w", [(None, T0, T0 + 10 * S, A)], sent.extend)
    # The same start and data, longer: the same WorkLens id, sent again.
    (longer,) = store.insert("w", [(e.id, T0, T0 + 20 * S, A)], sent.extend)
    assert (longer.id, longer.uid) == (e.id, e.uid)
    # Identical: nothing to send.
    store.insert("w", [(e.id, T0, T0 + 20 * S, A)], sent.extend)
    # Other data, another start, or shorter: the server could not update its copy,
    # so it goes as a new event under a new WorkLens id.
    uids = {e.uid}
    for change in [
        (e.id, T0, T0 + 20 * S, B),
        (e.id, T0 + S, T0 + 20 * S, B),
        (e.id, T0 + S, T0 + 5 * S, B),
    ]:
        (r,) = store.insert("w", [change], sent.extend)
        assert r.id == e.id and r.uid not in uids
        uids.add(r.uid)
    assert len(sent) == 5 and store.count("w") == 1
    # An id this bucket does not have is not taken over: a new event.
    (other,) = store.insert("w", [(999, T0, T0, A)], sent.extend)
    assert other.id != 999 and store.count("w") == 2


def test_reads_cut_to_the_range_newest_first_with_limit(store: AwStore) -> None:
    store.insert("w", [(None, T0 + i * 10 * S, T0 + (i * 10 + 5) * S, A) for i in range(5)])
    assert [e.start_us for e in store.events("w")] == [T0 + i * 10 * S for i in (4, 3, 2, 1, 0)]
    assert len(store.events("w", limit=2)) == 2
    cut = store.events("w", T0 + 12 * S, T0 + 32 * S)
    assert [((e.start_us - T0) / S, (e.end_us - T0) / S) for e in cut] == [
        (30, 32),
        (20, 25),
        (12, 15),
    ]
    # An event touching the range at its edge counts (as in aw-server-rust).
    assert store.count("w", T0 + 15 * S, T0 + 20 * S) == 2
    assert store.count("w", T0 + 16 * S, T0 + 19 * S) == 0
    assert store.events("w", T0 + 10 * S, T0) == []
    assert store.count("w") == 5 and store.count("nope") == 0


def test_buckets_are_created_once_and_deleted_with_their_events(store: AwStore) -> None:
    assert not store.create_bucket("w", "other", "c", "h", "2026", {})
    assert store.bucket("w") is not None and store.bucket("w").type == "currentwindow"  # type: ignore[union-attr]
    beat(store, 0, A)
    beat(store, 1, A)
    b = store.bucket("w", extent=True)
    assert b is not None and (b.start_us, b.end_us) == (T0, T0 + S)
    plain = store.bucket("w")
    assert plain is not None and plain.start_us is None  # no extent asked: not read
    assert store.delete_bucket("w") and not store.delete_bucket("w")
    assert store.buckets() == [] and store.count("w") == 0
    with pytest.raises(NoSuchBucket):  # e.g. deleted while a heartbeat was on its way
        beat(store, 3, A)
    with pytest.raises(NoSuchBucket):
        store.insert("w", [(None, T0, T0, A)])
    # Recreated, it starts empty; old AW ids are never given out again.
    store.create_bucket("w", "currentwindow", "c", "h", "2026", {})
    assert beat(store, 5, A).id > 1


def test_retention_forgets_old_events_and_the_file_is_private(tmp_path: Path) -> None:
    now = [datetime(2026, 11, 10, tzinfo=UTC).timestamp()]
    s = AwStore(tmp_path / "aw.db", retention_s=86400, clock=lambda: now[0])
    s.create_bucket("w", "x", "c", "h", "2026", {})
    day = 86400 * S
    t = to_us(datetime(2026, 11, 10, tzinfo=UTC))
    s.insert("w", [(None, t - 3 * day, t - 2 * day, {}), (None, t - 2 * day, t - day + S, {})])
    s.insert("w", [(None, t - day - 5 * S, t - day - S, {})])
    assert s.prune() == 2 and s.count("w") == 1
    assert stat.S_IMODE((tmp_path / "aw.db").stat().st_mode) == 0o600
    device = s.device_id()
    s.close()
    s = AwStore(tmp_path / "aw.db")
    assert s.count("w") == 1 and s.device_id() == device


def test_microseconds_round_trip() -> None:
    t = datetime(2026, 11, 2, 9, 0, 0, 123456, tzinfo=UTC)
    assert from_us(to_us(t)) == t
    assert to_us(t + timedelta(microseconds=1)) == to_us(t) + 1
