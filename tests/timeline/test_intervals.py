"""The interval algebra and the heartbeat merge, checked against brute force.

Every function in :mod:`worklens.timeline.intervals` is compared with a
reference that works one integer instant at a time on a small range (spans
live in 0..200), which is slow but obviously right. The rule everywhere is
*latest start wins*: at instant ``t`` the value is that of the covering span
``[s, e)`` (``s <= t < e``) with the greatest start, ties going to the span
that comes later in the input; where nothing covers ``t`` there is no value.

The example tests at the top spell the rules out on small cases.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st

from worklens.timeline.heartbeat import Beat, merge
from worklens.timeline.intervals import (
    active_spans,
    clip,
    flatten,
    intersect,
    overlay,
    spans_where,
    split_by_period,
    totals,
)

LO, HI = 0, 200  # spans start and end in this range
PROBE = range(LO - 5, HI + 5)  # instants the reference looks at (a margin on each side)
VALUES = "abc"

# ---------------------------------------------------------------- strategies

ends = st.integers(LO, HI)
# Any span, including empty (s == e) and backwards (e < s) ones.
raw_span = st.tuples(ends, ends, st.sampled_from(VALUES))
raw_spans = st.lists(raw_span, max_size=12)
# Spans more likely to overlap: short, clustered.
short_span = st.builds(
    lambda s, n, v: (s, s + n, v),
    st.integers(LO, HI - 30),
    st.integers(0, 30),
    st.sampled_from(VALUES),
)
# Tiny spans crowded into a few units: touching, one-unit gaps, equal starts.
tiny_span = st.builds(
    lambda s, n, v: (s, s + n, v),
    st.integers(LO, LO + 20),
    st.integers(0, 4),
    st.sampled_from(VALUES),
)
some_spans = st.one_of(
    raw_spans, st.lists(short_span, max_size=12), st.lists(tiny_span, max_size=12)
)
afk_spans = st.lists(
    st.builds(
        lambda s, n, v: (s, s + n, v),
        st.integers(LO, HI - 40),
        st.integers(0, 40),
        st.sampled_from(["active", "afk"]),
    ),
    max_size=8,
)
window = st.tuples(st.integers(LO - 10, HI + 10), st.integers(LO - 10, HI + 10)).map(sorted)


@st.composite
def masks(draw: st.DrawFn) -> list[tuple[int, int]]:
    """Sorted, non-overlapping ``[s, e)`` pairs; neighbours may touch."""
    cuts = sorted(draw(st.sets(st.integers(LO, HI), max_size=14)))
    pairs = list(zip(cuts[::2], cuts[1::2], strict=False))
    if draw(st.booleans()) and len(pairs) >= 2:
        # Make some neighbours touch: move a start back to the previous end.
        k = draw(st.integers(1, len(pairs) - 1))
        pairs[k] = (pairs[k - 1][1], pairs[k][1])
    return pairs


# ---------------------------------------------------------------- reference


def value_at(spans: Sequence[tuple[int, int, object]], t: int) -> object | None:
    """Latest start wins at instant ``t``; ties: later in the input. Brute force."""
    best: tuple[int, int] | None = None
    value = None
    for i, (s, e, v) in enumerate(spans):
        if s <= t < e and (best is None or (s, i) > best):
            best, value = (s, i), v
    return value


def unit_values(spans: Sequence[tuple[int, int, object]]) -> dict[int, object]:
    """{instant: value} of a *non-overlapping* result, checking it is non-overlapping."""
    out: dict[int, object] = {}
    for s, e, v in spans:
        for t in range(s, e):
            assert t not in out, f"instant {t} covered twice in {spans}"
            out[t] = v
    return out


def reference(spans: Sequence[tuple[int, int, object]]) -> dict[int, object]:
    out = {t: value_at(spans, t) for t in PROBE}
    return {t: v for t, v in out.items() if v is not None}


def assert_well_formed(spans: Sequence[tuple[int, ...]], joined: bool) -> None:
    """Sorted, non-overlapping, no empty pieces; with ``joined``, touching equals merged."""
    for span in spans:
        assert span[0] < span[1], f"empty or backwards piece {span} in {spans}"
    for a, b in pairwise(spans):
        assert a[1] <= b[0], f"{a} and {b} overlap or are out of order in {spans}"
        if joined:
            assert not (a[1] == b[0] and a[2:] == b[2:]), f"{a} and {b} should be one span"


# ---------------------------------------------------------------- examples


def test_example_latest_start_wins() -> None:
    # "a" covers 0..10, "b" starts later at 4 and wins 4..6; "a" comes back after.
    assert flatten([(0, 10, "a"), (4, 6, "b")]) == [(0, 4, "a"), (4, 6, "b"), (6, 10, "a")]
    # Input order does not matter when starts differ.
    assert flatten([(4, 6, "b"), (0, 10, "a")]) == [(0, 4, "a"), (4, 6, "b"), (6, 10, "a")]


def test_example_ties_go_to_the_later_input() -> None:
    assert flatten([(0, 10, "a"), (0, 5, "b")]) == [(0, 5, "b"), (5, 10, "a")]
    assert flatten([(0, 5, "b"), (0, 10, "a")]) == [(0, 10, "a")]


def test_example_touching_equal_values_join_and_empty_spans_vanish() -> None:
    assert flatten([(0, 5, "a"), (5, 9, "a"), (9, 9, "b"), (12, 3, "c")]) == [(0, 9, "a")]
    # A later start with the same value splits nothing.
    assert flatten([(0, 10, "a"), (3, 4, "a")]) == [(0, 10, "a")]


def test_example_active_time_is_focus_where_afk_says_active() -> None:
    focus = [(0, 60, "code"), (30, 90, "chat")]
    afk = [(0, 40, "active"), (40, 50, "afk"), (50, 100, "active")]
    # Unknown presence (no afk data after 100) does not count.
    assert active_spans(focus, afk, 0, 120) == [(0, 30, "code"), (30, 40, "chat"), (50, 90, "chat")]
    # Clipped to the window.
    assert active_spans(focus, afk, 35, 55) == [(35, 40, "chat"), (50, 55, "chat")]


def test_example_spans_where_keeps_gaps_and_joins_touching_pieces() -> None:
    spans = [(0, 3, "a"), (3, 4, "b"), (4, 6, "a"), (6, 8, "a"), (9, 10, "a")]
    assert spans_where(spans, "a") == [(0, 3), (4, 8), (9, 10)]
    assert spans_where(spans, "b") == [(3, 4)]
    assert spans_where(spans, "c") == []


def test_example_split_by_period_cuts_at_multiples() -> None:
    assert split_by_period([(50, 130, "a"), (130, 140, "b")], 60) == {
        (0, "a"): 10,
        (60, "a"): 60,
        (120, "a"): 10,
        (120, "b"): 10,
    }
    assert totals([(50, 130, "a"), (130, 140, "b"), (200, 205, "a")]) == {"a": 85, "b": 10}


def test_example_heartbeat_merge() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    last = Beat(t0, 10.0, "code")
    # Same data, 3 s after the end, pulsetime 5: extends to 15 s.
    merged, new = merge(last, Beat(t0 + timedelta(seconds=13), 2.0, "code"), pulsetime=5)
    assert not new and merged == Beat(t0, 15.0, "code")
    # Same data but 6 s after the end: a new event.
    beat = Beat(t0 + timedelta(seconds=16), 2.0, "code")
    assert merge(last, beat, pulsetime=5) == (beat, True)
    # Other data: a new event even when it overlaps.
    beat = Beat(t0 + timedelta(seconds=5), 2.0, "chat")
    assert merge(last, beat, pulsetime=5) == (beat, True)
    # An old beat inside the event changes nothing and never shortens it.
    assert merge(last, Beat(t0 + timedelta(seconds=2), 1.0, "code"), 5) == (last, False)


# ---------------------------------------------------------------- flatten


@given(some_spans)
def test_flatten_matches_brute_force(spans: list[tuple[int, int, str]]) -> None:
    out = flatten(spans)
    assert_well_formed(out, joined=True)
    assert unit_values(out) == reference(spans)


@given(some_spans)
def test_flatten_is_idempotent(spans: list[tuple[int, int, str]]) -> None:
    once = flatten(spans)
    assert flatten(once) == once


@given(some_spans, short_span)
def test_adding_a_span_changes_only_the_instants_inside_it(
    spans: list[tuple[int, int, str]], extra: tuple[int, int, str]
) -> None:
    """Locality, which lets rollups refresh only the hours a new event touches."""
    before = unit_values(flatten(spans))
    after = unit_values(flatten([*spans, extra]))
    s, e, _ = extra
    for t in PROBE:
        if s <= t < e:
            assert after.get(t) == value_at([*spans, extra], t)
        else:
            assert after.get(t) == before.get(t), t


@given(some_spans, st.randoms(use_true_random=False))
def test_flatten_ignores_input_order_when_starts_are_distinct(
    spans: list[tuple[int, int, str]], rnd: random.Random
) -> None:
    distinct = list({s: (s, e, v) for s, e, v in spans}.values())
    shuffled = distinct[:]
    rnd.shuffle(shuffled)
    assert flatten(shuffled) == flatten(distinct)


# ---------------------------------------------------------------- clip


@given(some_spans, window)
def test_clip_matches_brute_force(spans: list[tuple[int, int, str]], win: list[int]) -> None:
    start, end = win
    flat = flatten(spans)
    out = clip(flat, start, end)
    assert_well_formed(out, joined=True)
    want = {t: v for t, v in reference(spans).items() if start <= t < end}
    assert unit_values(out) == want


@given(raw_spans, window)
def test_clip_cuts_each_span_in_place(spans: list[tuple[int, int, str]], win: list[int]) -> None:
    # On any input (unsorted, overlapping) clip is a piecewise cut that keeps order.
    start, end = win
    want = [(max(s, start), min(e, end), v) for s, e, v in spans if min(e, end) > max(s, start)]
    assert clip(spans, start, end) == want


# ---------------------------------------------------------------- intersect


@given(some_spans, masks())
def test_intersect_matches_brute_force(
    spans: list[tuple[int, int, str]], mask: list[tuple[int, int]]
) -> None:
    flat = flatten(spans)
    out = intersect(flat, mask)
    assert_well_formed(out, joined=False)
    inside = {t for s, e in mask for t in range(s, e)}
    want = {t: v for t, v in reference(spans).items() if t in inside}
    assert unit_values(out) == want
    # Every piece lies in one input span and one mask interval.
    for s, e, v in out:
        assert any(a <= s and e <= b and v == w for a, b, w in flat)
        assert any(a <= s and e <= b for a, b in mask)


# ---------------------------------------------------------------- spans_where


@given(some_spans)
def test_spans_where_matches_brute_force(spans: list[tuple[int, int, str]]) -> None:
    flat, want = flatten(spans), reference(spans)
    for value in VALUES:
        out = spans_where(flat, value)
        for a, b in pairwise(out):
            assert a[1] < b[0], f"{a} and {b} overlap, touch or are out of order"
        assert all(s < e for s, e in out)
        got = {t for s, e in out for t in range(s, e)}
        assert got == {t for t, v in want.items() if v == value}


@given(some_spans, window, st.sampled_from(VALUES))
def test_spans_where_joins_pieces_cut_by_a_clip_or_mask(
    spans: list[tuple[int, int, str]], win: list[int], value: str
) -> None:
    # Pieces that touch after a cut (e.g. intersect with touching mask parts) are joined.
    flat = clip(flatten(spans), *win)
    halves = [
        p for s, e, v in flat for p in ((s, (s + e) // 2, v), ((s + e) // 2, e, v)) if p[0] < p[1]
    ]
    assert spans_where(halves, value) == spans_where(flat, value)


# ---------------------------------------------------------------- active_spans


@given(some_spans, afk_spans, window)
def test_active_spans_matches_brute_force(
    focus: list[tuple[int, int, str]], afk: list[tuple[int, int, str]], win: list[int]
) -> None:
    start, end = win
    out = active_spans(focus, afk, start, end)
    assert_well_formed(out, joined=False)
    want = {}
    for t in PROBE:
        if start <= t < end and value_at(afk, t) == "active":
            v = value_at(focus, t)
            if v is not None:
                want[t] = v
    assert unit_values(out) == want


# ---------------------------------------------------------------- split_by_period, totals


@given(raw_spans.map(lambda spans: [(s - 50, e - 50, v) for s, e, v in spans]), st.integers(1, 70))
def test_split_by_period_matches_brute_force(
    spans: list[tuple[int, int, str]], period: int
) -> None:
    # Any spans at all (overlapping ones count twice), negative instants included.
    want: Counter[tuple[int, str]] = Counter()
    for s, e, v in spans:
        for t in range(s, e):
            want[(t - t % period, v)] += 1
    got = split_by_period(spans, period)
    assert got == dict(want)
    assert all(p % period == 0 for p, _ in got)
    assert sum(got.values()) == sum(max(0, e - s) for s, e, _ in spans)


@given(some_spans, st.integers(1, 70))
def test_split_by_period_adds_up_to_totals(spans: list[tuple[int, int, str]], period: int) -> None:
    flat = flatten(spans)
    by_value: Counter[str] = Counter()
    for (_, v), n in split_by_period(flat, period).items():
        by_value[v] += n
    assert dict(by_value) == totals(flat)


@given(some_spans)
def test_totals_matches_brute_force(spans: list[tuple[int, int, str]]) -> None:
    assert totals(flatten(spans)) == dict(Counter(reference(spans).values()))


# ---------------------------------------------------------------- heartbeat.merge

T = datetime(2026, 1, 1, tzinfo=UTC)

beats = st.lists(
    st.builds(
        Beat,
        # Mostly in order, sometimes stepping back (late or re-sent beats).
        st.integers(0, 120).map(lambda s: T + timedelta(seconds=s)),
        st.one_of(st.integers(0, 20).map(float), st.floats(0, 20, allow_nan=False)),
        st.sampled_from(["code", "chat"]),
    ),
    max_size=20,
)
pulsetimes = st.one_of(st.integers(0, 10).map(float), st.floats(0, 10, allow_nan=False))


def run(seq: list[Beat[str]], pulsetime: float) -> tuple[list[Beat[str]], list[int]]:
    """What an agent does: merge each beat into the last event. Returns the
    events and, for each beat, the index of the event it ended up in."""
    events: list[Beat[str]] = []
    owner: list[int] = []
    last: Beat[str] | None = None
    for beat in seq:
        last, new = merge(last, beat, pulsetime)
        if new:
            events.append(last)
        else:
            events[-1] = last
        owner.append(len(events) - 1)
    return events, owner


@given(beats, pulsetimes)
def test_merge_step_rules(seq: list[Beat[str]], pulsetime: float) -> None:
    last: Beat[str] | None = None
    for beat in seq:
        result, new = merge(last, beat, pulsetime)
        if last is None or beat.data != last.data:
            # Different data always starts a new event, the beat itself.
            assert new and result == beat
        elif (beat.start - last.end).total_seconds() > pulsetime:
            # A gap larger than pulsetime starts a new event.
            assert new and result == beat
        elif beat.start < last.start:
            # A beat older than the event it would join starts a new one.
            assert new and result == beat
        else:
            assert not new
        if not new:
            assert last is not None
            # Never shortens: same start and data, end is the later of the two.
            assert result.start == last.start and result.data == last.data
            assert result.end >= last.end
            assert result.end == max(last.end, beat.end)
            assert result.start <= beat.start and result.end >= beat.end
        last = result


@given(beats, pulsetimes)
def test_merged_events_cover_every_beat_they_swallowed(
    seq: list[Beat[str]], pulsetime: float
) -> None:
    events, owner = run(seq, pulsetime)
    for beat, i in zip(seq, owner, strict=True):
        ev = events[i]
        assert ev.data == beat.data
        assert ev.start <= beat.start and beat.end <= ev.end, (beat, ev)
    # Nothing was invented: each event starts at a beat and ends at a beat's end.
    for i, ev in enumerate(events):
        mine = [b for b, o in zip(seq, owner, strict=True) if o == i]
        assert ev.start == mine[0].start
        assert ev.end == max(b.end for b in mine)


def test_activitywatch_not_afk_counts_as_active() -> None:
    from worklens.timeline.intervals import active_spans

    focus = [(0, 100, "code")]
    ours = active_spans(focus, [(0, 50, "active"), (50, 100, "afk")], 0, 100)
    theirs = active_spans(focus, [(0, 50, "not-afk"), (50, 100, "afk")], 0, 100)
    assert ours == theirs == [(0, 50, "code")]
    # Touching "active" and "not-afk" are one present span.
    assert active_spans(focus, [(0, 50, "active"), (50, 100, "not-afk")], 0, 100) == focus


# ---------------------------------------------------------------- overlay


@given(some_spans, some_spans, st.sets(st.sampled_from(VALUES)))
def test_overlay_matches_brute_force(
    spans: list[tuple[int, int, str]], layer: list[tuple[int, int, str]], takes: set[str]
) -> None:
    """Where a span whose value ``takes`` the layer meets a layer span, the value
    is the pair of both; everywhere else the span's own value, unchanged."""
    flat, flat_layer = flatten(spans), flatten(layer)
    out = overlay(flat, flat_layer, lambda v: v in takes, lambda v, w: v + w)
    assert_well_formed(out, joined=False)
    under, over = reference(spans), reference(layer)
    want = {t: v + over[t] if v in takes and t in over else v for t, v in under.items()}
    assert unit_values(out) == want
    # Cut only where the layer starts or ends: pieces of a span that keeps its
    # value are never split otherwise.
    cuts = {p for s, e, _ in flat_layer for p in (s, e)}
    for a, b in pairwise(out):
        if a[1] == b[0] and a[2] == b[2]:
            assert a[1] in cuts
