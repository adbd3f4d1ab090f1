"""Property tests: the time-set transforms against brute force.

Events live on a grid of 100 ms ticks in 0..400 ticks; the reference works one
tick at a time (tick ``k`` is covered by ``[s, e)`` if ``s <= k < e``), which
is slow but obviously right. Every boundary is on the grid, so measuring
covered ticks is exact.
"""

from __future__ import annotations

from collections import Counter
from itertools import pairwise

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from worklens.query2 import Event
from worklens.query2 import transforms as t

TICK = 100_000  # µs
HORIZON = 400

_datas = st.sampled_from([{"k": "a"}, {"k": "b"}, {"k": "c"}, {}])


@st.composite
def events(draw: st.DrawFn, max_size: int = 12, min_len: int = 0) -> list[Event]:
    """Arbitrary events (overlaps allowed)."""
    n = draw(st.integers(0, max_size))
    out = []
    for _ in range(n):
        s = draw(st.integers(0, HORIZON - 1))
        d = draw(st.integers(min_len, 60))
        out.append(Event.from_us(s * TICK, min(HORIZON, s + d) * TICK, draw(_datas)))
    return out


@st.composite
def stream(draw: st.DrawFn, max_size: int = 12) -> list[Event]:
    """Events without overlaps, in random order (one watcher's bucket)."""
    n = draw(st.integers(0, max_size))
    out, pos = [], 0
    for _ in range(n):
        pos += draw(st.integers(0, 20))
        d = draw(st.integers(0, 40))
        out.append(Event.from_us(pos * TICK, (pos + d) * TICK, draw(_datas)))
        pos += d
    return draw(st.permutations(out))


def ticks(e: Event) -> range:
    return range(e.start_us // TICK, e.end_us // TICK)


def covered(evs: list[Event]) -> set[int]:
    return {k for e in evs for k in ticks(e)}


def overlaps(evs: list[Event]) -> bool:
    s = sorted(evs, key=lambda e: (e.start_us, e.end_us))
    return any(b.start_us < a.end_us for a, b in pairwise(s))


# --- flood ---------------------------------------------------------------------------


@given(stream(), st.integers(0, 80))
def test_flood_on_a_stream(evs: list[Event], pulse_ticks: int) -> None:
    # AW's rule on a bucket without overlaps: the result has none either, it
    # covers the input plus exactly the gaps of at most pulsetime between
    # neighbours (zero-length events count as neighbours), and what is left
    # between its events is a gap > pulsetime. Each output event carries the
    # data of an input event it overlaps or touches.
    pulse = pulse_ticks / 10
    out = t.flood(evs, pulse)
    assert not overlaps(out)
    srt = sorted(evs, key=lambda e: (e.start_us, e.end_us))
    expected = covered(evs)
    for a, b in pairwise(srt):
        if 0 < b.start_us - a.end_us <= pulse_ticks * TICK:
            expected |= set(range(a.end_us // TICK, b.start_us // TICK))
    assert covered(out) == expected
    assert sum(e.duration_us for e in out) == len(expected) * TICK
    for a, b in pairwise(out):
        gap = b.start_us - a.end_us
        assert gap == 0 or gap > pulse_ticks * TICK
    for o in out:
        assert o.duration_us > 0
        assert any(dict(i.data) == dict(o.data) and i.start_us <= o.end_us and
                   o.start_us <= i.end_us for i in evs)


@given(events(), st.integers(0, 80))
def test_flood_keeps_coverage(evs: list[Event], pulse_ticks: int) -> None:
    # On any input, nothing that was covered is lost.
    assert covered(t.flood(evs, pulse_ticks / 10)) >= covered(evs)


def _unsafe_overlap(evs: list[Event]) -> bool:
    """AW's "could NOT be safely merged" case: an event of other data starting
    0.1 s or more before the end of an event that starts no later."""
    return any(
        x is not y and x.start_us <= y.start_us and x.data != y.data
        and y.start_us - x.end_us <= -t.NEGATIVE_GAP_TRIM_US
        for x in evs for y in evs
    )


@given(events(max_size=8), st.integers(0, 80))
def test_flood_overlaps_only_where_aw_leaves_them(evs: list[Event], pulse_ticks: int) -> None:
    # AW's rule: same-data overlaps are merged and overlaps under 0.1 s are
    # trimmed; only an overlap of different data of 0.1 s or more is left
    # alone. So without such a pair in the input, the output never overlaps.
    assume(not _unsafe_overlap(evs))
    out = t.flood(evs, pulse_ticks / 10)
    assert not overlaps(out)
    assert covered(out) >= covered(evs)


@given(events())
def test_flood_same_data_overlaps_are_merged(evs: list[Event]) -> None:
    # One data value only: every overlap has equal data, so AW merges them all.
    same = [Event.from_us(e.start_us, e.end_us, {"k": "a"}) for e in evs]
    out = t.flood(same, 0)
    assert not overlaps(out)
    assert covered(out) == covered(same)


# --- filter_period_intersect --------------------------------------------------------------


@given(events(), events())
def test_filter_period_intersect_reference(evs: list[Event], filt: list[Event]) -> None:
    out = t.filter_period_intersect(evs, filt)
    fcov = covered(filt)
    # Within both inputs: each piece lies in its source event and in the filter.
    for o in out:
        assert set(ticks(o)) <= fcov
        assert any(i.start_us <= o.start_us and o.end_us <= i.end_us and i.data == o.data
                   for i in evs)
    # Total duration equals the brute-force count, event by event.
    expected = sum(len(set(ticks(e)) & fcov) for e in evs)
    assert sum(o.duration_us for o in out) == expected * TICK
    assert out == sorted(out, key=lambda e: e.start_us)


# --- unions ----------------------------------------------------------------------------------


@given(events(), events())
def test_period_union_reference(a: list[Event], b: list[Event]) -> None:
    out = t.period_union(a, b)
    assert covered(out) == covered(a + b)
    for x, y in pairwise(out):
        assert x.end_us < y.start_us  # sorted, apart (touching spans were joined)
    assert all(dict(e.data) == {} for e in out)


@given(stream(), stream())
def test_union_no_overlap_reference(a: list[Event], b: list[Event]) -> None:
    out = t.union_no_overlap(a, b)
    positive = [e for e in out if e.duration_us > 0]
    assert not overlaps(positive)
    assert covered(out) == covered(a + b)
    assert out == sorted(out, key=lambda e: e.start_us)
    rest = list(out)
    for e in a:  # every event of the first list is there, whole
        rest.remove(e)
    acov = covered(a)
    for piece in rest:  # the others are parts of the second list outside the first
        assert not set(ticks(piece)) & acov
        assert any(i.start_us <= piece.start_us and piece.end_us <= i.end_us and
                   i.data == piece.data for i in b)


# --- grouping and summing ---------------------------------------------------------------------


_keyed = st.lists(
    st.tuples(
        st.integers(0, 10_000),
        st.integers(0, 5_000_000),
        st.dictionaries(st.sampled_from(["app", "title", "n"]),
                        st.one_of(st.sampled_from(["x", "y"]), st.booleans(),
                                  st.integers(0, 2), st.none(), st.just(["A", "B"]))),
    ),
    max_size=30,
)


@given(_keyed, st.lists(st.sampled_from(["app", "title", "n"]), min_size=1, max_size=3,
                        unique=True))
def test_merge_events_by_keys_preserves_duration(raw: list[tuple[int, int, dict[str, object]]],
                                                 keys: list[str]) -> None:
    evs = [Event.from_us(s, s + d, data) for s, d, data in raw]
    out = t.merge_events_by_keys(evs, keys)
    assert sum(e.duration_us for e in out) == sum(e.duration_us for e in evs)
    # One group per distinct combination (JSON equality: True is not 1).
    sig = [tuple(t.canonical(e.data[k]) if k in e.data else "<absent>" for k in keys)
           for e in evs]
    assert len(out) == len(set(sig))
    totals: Counter[tuple[object, ...]] = Counter()
    for s, e in zip(sig, evs, strict=True):
        totals[s] += e.duration_us
    for o in out:
        osig = tuple(t.canonical(o.data[k]) if k in o.data else "<absent>" for k in keys)
        assert o.duration_us == totals[osig]


@given(_keyed)
def test_sum_durations_and_chunk_match(raw: list[tuple[int, int, dict[str, object]]]) -> None:
    evs = [Event.from_us(s, s + d, data) for s, d, data in raw]
    total_us = sum(d for _, d, _ in raw)
    assert t.sum_durations(evs) * 1_000_000 == total_us or abs(
        t.sum_durations(evs) - total_us / 1_000_000) < 1e-9
    chunks = t.chunk_events_by_key(evs, "app")
    assert sum(c.duration_us for c in chunks) == sum(e.duration_us for e in evs
                                                      if "app" in e.data)
    assert sum(len(c.data["subevents"]) for c in chunks) == sum(1 for e in evs
                                                                 if "app" in e.data)


@settings(max_examples=50)
@given(st.lists(stream(), min_size=1, max_size=3))
def test_union_no_overlap_folds_like_the_multidevice_query(devices: list[list[Event]]) -> None:
    # aw-webui's multi-device query folds union_no_overlap over the devices,
    # starting from []: the result never overlaps and covers every device.
    acc: list[Event] = []
    for d in devices:
        acc = t.union_no_overlap(acc, d)
    assert not overlaps([e for e in acc if e.duration_us > 0])
    assert covered(acc) == covered([e for d in devices for e in d])
