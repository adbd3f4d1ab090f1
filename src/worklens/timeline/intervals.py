"""Interval algebra over half-open integer spans ``[start, end)`` in milliseconds.

Integer milliseconds keep sums exact: a report must add up to the second no
matter how many pieces it was summed from.

A stream of events from one source (say, the focused window) should never
overlap, but imported or late data can. The rule used everywhere is *latest
start wins*: at any instant the value is that of the covering event that
started most recently. Adding an event therefore only changes the instants
inside that event, which is what lets rollups be refreshed locally.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import TypeVar

V = TypeVar("V", bound=Hashable)
W = TypeVar("W")

# Afk statuses that mean someone is at the machine.
PRESENT = frozenset({"active", "not-afk"})

Span = tuple[int, int, V]  # (start, end, value)


def flatten(spans: Iterable[tuple[int, int, V]]) -> list[tuple[int, int, V]]:
    """Resolve overlaps by *latest start wins* (ties: later input wins).

    Returns sorted, non-overlapping spans; touching spans with equal values are
    joined. Empty or negative spans are ignored.
    """
    items = sorted(
        ((s, e, i, v) for i, (s, e, v) in enumerate(spans) if e > s), key=lambda t: (t[0], t[2])
    )
    if not items:
        return []
    if all(a[1] <= b[0] for a, b in itertools.pairwise(items)):
        # The usual case (one well-behaved stream): nothing overlaps, only join.
        out: list[tuple[int, int, V]] = []
        for s, e, _, v in items:
            if out and out[-1][1] == s and out[-1][2] == v:
                out[-1] = (out[-1][0], e, v)
            else:
                out.append((s, e, v))
        return out
    points = sorted({p for s, e, _, _ in items for p in (s, e)})
    heap: list[tuple[int, int, int, V]] = []  # (-start, -index, end, value)
    out = []
    j = 0
    for p, q in itertools.pairwise(points):
        while j < len(items) and items[j][0] <= p:
            s, e, i, v = items[j]
            heapq.heappush(heap, (-s, -i, e, v))
            j += 1
        while heap and heap[0][2] <= p:
            heapq.heappop(heap)
        if not heap:
            continue
        # The top can end before q only if q is its end, since ends are boundary points.
        v = heap[0][3]
        if out and out[-1][1] == p and out[-1][2] == v:
            out[-1] = (out[-1][0], q, v)
        else:
            out.append((p, q, v))
    return out


def clip(spans: Sequence[tuple[int, int, V]], start: int, end: int) -> list[tuple[int, int, V]]:
    """Cut sorted spans to the window ``[start, end)``."""
    out = []
    for s, e, v in spans:
        s2, e2 = max(s, start), min(e, end)
        if e2 > s2:
            out.append((s2, e2, v))
    return out


def intersect(
    spans: Sequence[tuple[int, int, V]], mask: Sequence[tuple[int, int]]
) -> list[tuple[int, int, V]]:
    """The parts of ``spans`` that lie inside ``mask``; both sorted and non-overlapping."""
    out: list[tuple[int, int, V]] = []
    i = j = 0
    while i < len(spans) and j < len(mask):
        s, e, v = spans[i]
        ms, me = mask[j]
        lo, hi = max(s, ms), min(e, me)
        if hi > lo:
            out.append((lo, hi, v))
        if e <= me:
            i += 1
        else:
            j += 1
    return out


def spans_where(spans: Iterable[tuple[int, int, V]], value: V) -> list[tuple[int, int]]:
    """Start/end of the flattened spans whose value equals ``value`` (touching ones joined)."""
    out: list[tuple[int, int]] = []
    for s, e, v in spans:
        if v != value:
            continue
        if out and out[-1][1] == s:
            out[-1] = (out[-1][0], e)
        else:
            out.append((s, e))
    return out


def active_spans(
    focus: Iterable[tuple[int, int, V]],
    afk: Iterable[tuple[int, int, str]],
    start: int,
    end: int,
) -> list[tuple[int, int, V]]:
    """Focus time intersected with not-afk time, clipped to ``[start, end)``.

    Not-afk means covered by an afk event saying ``"active"`` (ours) or
    ``"not-afk"`` (ActivityWatch's afk watcher, reporting through the agent):
    where no afk data exists the machine's presence is unknown and the time
    does not count, as in ActivityWatch's ``filter_period_intersect`` over
    not-afk events.
    """
    status = [(s, e, "active" if v in PRESENT else v) for s, e, v in afk]
    present = spans_where(clip(flatten(status), start, end), "active")
    return intersect(clip(flatten(focus), start, end), present)


def split_by_period(spans: Iterable[tuple[int, int, V]], period: int) -> dict[tuple[int, V], int]:
    """Total length per (period start, value), cutting spans at multiples of ``period``."""
    totals: dict[tuple[int, V], int] = {}
    for s, e, v in spans:
        cur = s
        while cur < e:
            p = cur - cur % period
            nxt = min(e, p + period)
            totals[(p, v)] = totals.get((p, v), 0) + (nxt - cur)
            cur = nxt
    return totals


def totals(spans: Iterable[tuple[int, int, V]]) -> dict[V, int]:
    """Total length per value."""
    out: dict[V, int] = {}
    for s, e, v in spans:
        out[v] = out.get(v, 0) + (e - s)
    return out


def overlay(
    spans: Sequence[tuple[int, int, V]],
    layer: Sequence[tuple[int, int, W]],
    applies: Callable[[V], bool],
    combine: Callable[[V, W], V],
) -> list[tuple[int, int, V]]:
    """``spans`` with ``layer`` laid over the spans that ``applies`` accepts: where
    a layer span covers one, that part's value becomes ``combine(value, layer
    value)``; everything else is kept as it is. Both sorted and non-overlapping
    (flattened); the result covers exactly what ``spans`` covers."""
    out: list[tuple[int, int, V]] = []
    j = 0
    for s, e, v in spans:
        if not applies(v):
            out.append((s, e, v))
            continue
        while j < len(layer) and layer[j][1] <= s:
            j += 1
        t = s
        k = j
        while t < e:
            if k < len(layer) and layer[k][0] < e:
                ls, le, w = layer[k]
                if ls > t:
                    out.append((t, ls, v))
                    t = ls
                hi = min(le, e)
                out.append((t, hi, combine(v, w)))
                t = hi
                if le <= e:
                    k += 1
                else:
                    break
            else:
                out.append((t, e, v))
                t = e
    return out
