"""The pure event transforms of query2, with ActivityWatch's semantics.

Every function takes and returns plain values (sequences of :class:`Event`,
strings, numbers), never mutates its input and never does I/O. The first line
of each docstring is the rule it applies. The reference is aw-core's
``aw_transform`` (Python); where aw-core and aw-server-rust disagree, or
aw-core has an accident (a crash, a dropped event), the docstring says which
rule was taken.

Spans are half-open ``[start, end)`` in integer microseconds (see
:mod:`worklens.query2.events`), so cutting and summing are exact.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from operator import attrgetter
from typing import Any
from urllib.parse import urlparse

from .events import Event, seconds_to_us

PULSETIME_DEFAULT = 5.0
"""flood's default pulse time, seconds (aw-core and aw-server-rust alike)."""

NEGATIVE_GAP_TRIM_US = 100_000
"""flood trims overlaps shorter than this (0.1 s) between events of different data."""

UNCATEGORIZED: list[str] = ["Uncategorized"]


# --- JSON value equality -------------------------------------------------------

_MISSING = object()


def canonical(value: Any) -> Any:
    """A hashable form of a JSON value in which equal values (by JSON, not by
    Python: ``true`` is not ``1``) have equal forms. Strings stand for themselves."""
    t = type(value)
    if t is str:
        return value
    if t is bool:
        return ("b", value)
    if t is int or t is float:
        return ("n", value)
    if value is None:
        return ("z",)
    if isinstance(value, list | tuple):
        return ("l", tuple(canonical(v) for v in value))
    if isinstance(value, Mapping):
        return ("d", tuple(sorted((str(k), canonical(v)) for k, v in value.items())))
    if isinstance(value, Event):
        return ("e", value.start_us, value.end_us, value.id, canonical(value.data))
    return ("o", repr(value))


def json_equal(a: Any, b: Any) -> bool:
    """JSON equality: like ``==`` but booleans never equal numbers."""
    if type(a) is str or type(b) is str:
        return type(a) is type(b) and bool(a == b)
    return bool(canonical(a) == canonical(b))


# --- ordering, slicing, summing ------------------------------------------------


def sort_by_timestamp(events: Iterable[Event]) -> list[Event]:
    """Ascending by start; events with the same start keep their order (stable)."""
    return sorted(events, key=_start)


def sort_by_duration(events: Iterable[Event]) -> list[Event]:
    """Longest first; equal durations keep their order (stable)."""
    return sorted(events, key=_duration, reverse=True)


def limit_events(events: Sequence[Event], count: int) -> list[Event]:
    """The first ``count`` events (all of them if there are fewer)."""
    return list(events[:count])


def sum_durations(events: Iterable[Event]) -> float:
    """Sum of the durations, in seconds (summed exactly in microseconds)."""
    return sum(e.duration_us for e in events) / 1_000_000


def concat(*lists: Sequence[Event]) -> list[Event]:
    """The lists one after the other, unsorted (aw-server-rust takes any number)."""
    out: list[Event] = []
    for events in lists:
        out.extend(events)
    return out


def clip_to_period(events: Iterable[Event], start_us: int, end_us: int) -> list[Event]:
    """What query_bucket returns: events cut to ``[start, end)``, newest first.

    As aw-server-rust (aw-core returns them unclipped): an event that overlaps
    the period is cut to it; one that only touches it is dropped; a zero-length
    event is kept if it lies in ``[start, end)``. Newest first, as both AW
    servers return events.
    """
    out: list[Event] = []
    for e in events:
        s, t = e._s, e._e
        if start_us <= s and t <= end_us:
            if s < t or s < end_us:
                out.append(e)
        elif s < end_us and t > start_us and s < t:
            out.append(e.with_span(max(s, start_us), min(t, end_us)))
    out.sort(key=_start, reverse=True)
    return out


# --- flood -----------------------------------------------------------------------


def flood(events: Iterable[Event], pulsetime: float = PULSETIME_DEFAULT) -> list[Event]:
    """Fill gaps <= ``pulsetime`` (default 5 s) between neighbours, sorted by start.

    aw-core's rule, applied to each neighbouring pair (a, b) in start order
    (ties: the shorter first, so a zero-length event never sits inside the
    event that starts with it; aw-core leaves ties in input order),
    left to right, each pair seeing the changes made by the previous one:

    * gap 0: nothing;
    * overlap and equal data: a becomes the union of both, b is emptied;
    * overlap of 0.1 s or more with different data: left alone (an overlap
      flood cannot resolve safely);
    * otherwise (a gap up to ``pulsetime``, or an overlap under 0.1 s with
      different data) the longer event floods (a if durations are equal):
      with equal data it swallows the other one, with different data it is
      stretched to meet it (or, for a small overlap, cut back to meet it).

    Emptied and zero-length events are dropped. Events that do not change are
    returned as they were (same id, same data).

    One deviation from aw-core: an event emptied by a merge is parked at the
    merged event's end; when the next event overlaps the merged event with the
    same data, aw-core re-grows the parked event over it and counts that time
    twice; here the next event joins the merged event instead.
    """
    items = sorted(events, key=_span)
    n = len(items)
    if n == 0:
        return []
    pulse = seconds_to_us(pulsetime)
    starts = [e._s for e in items]
    ends = [e._e for e in items]
    # absorbed[j] = the event that swallowed j, where j was emptied at its end.
    absorbed = [-1] * n
    for i in range(n - 1):
        j = i + 1
        gap = starts[j] - ends[i]
        if gap == 0:
            continue
        if gap < 0 and items[i]._data == items[j]._data:
            owner = absorbed[i]
            if owner >= 0:
                # i was emptied into `owner` (same data as j): j overlaps that
                # merged event, so it joins it. aw-core would re-grow the empty
                # i over j and count the overlap twice.
                end = max(ends[owner], ends[j])
                ends[owner] = end
                starts[j] = ends[j] = end
                absorbed[j] = owner
                continue
            end = max(ends[i], ends[j])
            starts[i] = min(starts[i], starts[j])
            ends[i] = end
            starts[j] = ends[j] = end
            absorbed[j] = i
        elif gap < -NEGATIVE_GAP_TRIM_US:
            continue
        elif -NEGATIVE_GAP_TRIM_US < gap <= pulse:
            same = items[i]._data == items[j]._data
            if ends[i] - starts[i] >= ends[j] - starts[j]:
                if same:
                    ends[i] = ends[j]
                    starts[j] = ends[j]
                    absorbed[j] = i
                else:
                    ends[i] = starts[j]
            elif same:
                starts[j] = starts[i]
                ends[i] = starts[i]
            else:
                starts[j] = ends[i]
    return [items[i].with_span(starts[i], ends[i]) for i in range(n) if ends[i] > starts[i]]


# --- filters on data ---------------------------------------------------------------


def filter_keyvals(events: Iterable[Event], key: str, vals: Sequence[Any]) -> list[Event]:
    """Keep events whose ``data[key]`` exists and equals one of ``vals`` (JSON equality)."""
    wanted = {canonical(v) for v in vals}
    out = []
    for e in events:
        d = e.data
        if key in d:
            v = d[key]
            if (v if type(v) is str else canonical(v)) in wanted:
                out.append(e)
    return out


def exclude_keyvals(events: Iterable[Event], key: str, vals: Sequence[Any]) -> list[Event]:
    """Drop events whose ``data[key]`` exists and equals one of ``vals``; keep the rest."""
    wanted = {canonical(v) for v in vals}
    out = []
    for e in events:
        d = e.data
        if key in d:
            v = d[key]
            if (v if type(v) is str else canonical(v)) in wanted:
                continue
        out.append(e)
    return out


def filter_keyvals_regex(
    events: Iterable[Event], key: str, regex: str | re.Pattern[str]
) -> list[Event]:
    """Keep events whose ``data[key]`` is a string in which ``regex`` matches somewhere.

    ``re.search`` semantics (aw-core uses findall, which is the same test). A
    value that is not a string never matches (aw-core would crash on it).
    """
    pattern = re.compile(regex) if isinstance(regex, str) else regex
    search = pattern.search
    out = []
    for e in events:
        v = e.data.get(key, _MISSING)
        if type(v) is str and search(v) is not None:
            out.append(e)
    return out


# --- set operations on time ------------------------------------------------------


def merged_spans(events: Iterable[Event], keep_empty: bool = False) -> list[tuple[int, int]]:
    """The union of the events' spans as sorted disjoint spans; touching spans join.

    Zero-length spans join a neighbour they touch; alone they are kept only
    with ``keep_empty``.
    """
    spans = sorted((e.start_us, e.end_us) for e in events)
    out: list[tuple[int, int]] = []
    for s, t in spans:
        if out and s <= out[-1][1]:
            if t > out[-1][1]:
                out[-1] = (out[-1][0], t)
        else:
            out.append((s, t))
    if not keep_empty:
        out = [(s, t) for s, t in out if t > s]
    return out


def filter_period_intersect(events: Iterable[Event], filterevents: Iterable[Event]) -> list[Event]:
    """Keep the parts of each event that lie inside some filter event, sorted by start.

    The filter events are first joined into their union, so each instant of an
    event is kept once whether one or several (overlapping) filter events cover
    it; aw-core's pairwise walk emits such instants twice and can skip events
    when the first list overlaps itself. The parts keep the event's data and id;
    an event split by a gap in the filter becomes several events. Zero-length
    events never intersect anything (as in AW).
    """
    spans = merged_spans(filterevents)
    if not spans:
        return []
    starts = [s for s, _ in spans]
    ends = [t for _, t in spans]
    n = len(spans)
    out: list[Event] = []
    append = out.append
    for e in sort_by_timestamp(events):
        s, t = e._s, e._e
        if t <= s:
            continue
        i = bisect_right(ends, s)
        if i < n and starts[i] <= s and t <= ends[i]:
            append(e)  # wholly inside one span: the usual case, kept as it is
            continue
        while i < n and starts[i] < t:
            a = s if s > starts[i] else starts[i]
            b = t if t < ends[i] else ends[i]
            if a < b:
                append(e.with_span(a, b))
            i += 1
    out.sort(key=_start)  # pieces of overlapping events can interleave; usually a no-op
    return out


def period_union(events1: Iterable[Event], events2: Iterable[Event]) -> list[Event]:
    """The union of the time covered by both lists, as events with empty data.

    Overlapping or touching spans become one event; the result is sorted and
    has no overlaps. The data is dropped, as in AW (it cannot be kept
    consistent), and so is the id. An isolated zero-length event stays a
    zero-length event, as in aw-core.
    """
    return [Event.from_us(s, t, {}) for s, t in merged_spans([*events1, *events2], keep_empty=True)]


def union_no_overlap(events1: Iterable[Event], events2: Iterable[Event]) -> list[Event]:
    """All of ``events1``, plus the parts of ``events2`` that ``events1`` does not cover.

    ``events1`` has precedence: its events are kept whole; each event of
    ``events2`` loses the time that ``events1`` covers and may be split into
    several events (same data, same id). Sorted by start, ``events1`` first on
    ties. If each list is free of overlaps, so is the result. (aw-core expects
    both lists sorted; here they need not be.)
    """
    first = list(events1)
    spans = merged_spans(first)
    starts = [s for s, _ in spans]
    ends = [t for _, t in spans]
    n = len(spans)
    out = list(first)
    for e in events2:
        s, t = e.start_us, e.end_us
        i = bisect_right(ends, s)
        if s == t:
            if i >= n or starts[i] > s:
                out.append(e)
            continue
        cur = s
        while i < n and starts[i] < t:
            if starts[i] > cur:
                out.append(e.with_span(cur, starts[i]))
            if ends[i] > cur:
                cur = ends[i]
            i += 1
        if cur < t:
            out.append(e.with_span(cur, t))
    out.sort(key=_start)
    return out


# --- grouping ---------------------------------------------------------------------


def merge_events_by_keys(events: Iterable[Event], keys: Sequence[str]) -> list[Event]:
    """One event per distinct combination of ``data[k]`` for ``k`` in keys; durations summed.

    Each merged event starts at the first member's timestamp, lasts the summed
    duration, has only the keys as data (with the first member's values) and
    no id; the groups come in order of first appearance. An event lacking a
    key is grouped with the events lacking it too, and that key is absent from
    the merged data (aw-core keeps such events; aw-server-rust drops them).
    With no keys the events are returned unchanged (aw-core; aw-server-rust
    returns nothing). Values are compared as JSON (lists as categories work).
    """
    keys = list(keys)
    if not keys:
        return list(events)
    groups: dict[Any, list[Any]] = {}
    if len(keys) == 1:
        k = keys[0]
        for e in events:
            v = e._data.get(k, _MISSING)
            ck = v if type(v) is str or v is _MISSING else canonical(v)
            g = groups.get(ck)
            if g is None:
                groups[ck] = [e, e._e - e._s]
            else:
                g[1] += e._e - e._s
    else:
        for e in events:
            d = e.data
            parts = []
            for k in keys:
                v = d.get(k, _MISSING)
                parts.append(v if type(v) is str or v is _MISSING else canonical(v))
            ck = tuple(parts)
            g = groups.get(ck)
            if g is None:
                groups[ck] = [e, e.end_us - e.start_us]
            else:
                g[1] += e.end_us - e.start_us
    out = []
    for first, total in groups.values():
        d = first.data
        data = {k: d[k] for k in keys if k in d}
        out.append(Event.from_us(first.start_us, first.start_us + total, data))
    return out


def chunk_events_by_key(events: Iterable[Event], key: str) -> list[Event]:
    """Join runs of consecutive events with equal ``data[key]`` into one event.

    The chunk starts at the run's first event, lasts the summed duration and
    has data ``{key: value, "subevents": [the events]}`` (aw-core). Events
    without the key are skipped (aw-core stops at the first one, which is an
    accident; aw-server-rust skips). Gaps between the events of a run do not
    split it: aw-core's 5 s gap test compares against the wrong event and in
    effect never fires, and aw-server-rust has none.
    """
    out: list[Event] = []
    cur_value: Any = _MISSING
    cur_start = 0
    cur_total = 0
    cur_subs: list[Event] = []

    def flush() -> None:
        if cur_subs:
            data = {key: cur_value, "subevents": cur_subs}
            out.append(Event.from_us(cur_start, cur_start + cur_total, data))

    for e in events:
        v = e.data.get(key, _MISSING)
        if v is _MISSING:
            continue
        if cur_subs and json_equal(cur_value, v):
            cur_total += e.end_us - e.start_us
            cur_subs.append(e)
        else:
            flush()
            cur_value, cur_start, cur_total, cur_subs = v, e.start_us, e.end_us - e.start_us, [e]
    flush()
    return out


# --- data enrichment -------------------------------------------------------------------


def split_url_events(events: Iterable[Event]) -> list[Event]:
    """Add ``$protocol``, ``$domain`` (no ``www.``), ``$path``, ``$params``, ``$options``
    (the query string) and ``$identifier`` (the fragment) parsed from ``data["url"]``.

    A URL without a host (``file:``, ``about:``) gets its scheme as the domain
    (aw-core). Events without a string ``url``, or with one that cannot be
    parsed, are returned unchanged.
    """
    out = []
    for e in events:
        url = e.data.get("url")
        if type(url) is not str:
            out.append(e)
            continue
        try:
            p = urlparse(url)
        except ValueError:
            out.append(e)
            continue
        if p.netloc:
            domain = p.netloc[4:] if p.netloc.startswith("www.") else p.netloc
        else:
            domain = p.scheme
        data = dict(e.data)
        data["$protocol"] = p.scheme
        data["$domain"] = domain
        data["$path"] = p.path
        data["$params"] = p.params
        data["$options"] = p.query
        data["$identifier"] = p.fragment
        out.append(e.with_data(data))
    return out


_RE_PARENS_PREFIX = re.compile(r"^\([0-9]+\)\s*")
_RE_FPS = re.compile(r"FPS:\s+[0-9\.]+")
_RE_LEADING_DOT = re.compile(r"^(●|\*)\s*")


def simplify_string(events: Iterable[Event], key: str = "title") -> list[Event]:
    """Strip noise from ``data[key]``: a leading "(3) " counter always; for window
    titles (key "title" on events with an "app") also an FPS read-out and a
    leading unsaved-marker "●"/"*". Events whose value is not a string are kept as is."""
    out = []
    for e in events:
        v = e.data.get(key)
        if type(v) is not str:
            out.append(e)
            continue
        new = _RE_PARENS_PREFIX.sub("", v)
        if key == "title" and "app" in e.data:
            new = _RE_FPS.sub("FPS: ...", new)
            new = _RE_LEADING_DOT.sub("", new)
        out.append(e if new == v else e.with_data({**e.data, key: new}))
    return out


# --- classification ---------------------------------------------------------------------


class Rule:
    """A classification rule, as the AW web UI writes them.

    ``{"type": "regex", "regex": "...", "ignore_case": false, "select_keys": [...]}``
    matches an event if the regex is found (``re.search``) in one of its string
    values (only those of ``select_keys`` if given and non-empty). ``type`` may
    be absent (aw-core ignores it); ``"none"`` never matches, nor does an empty
    or absent regex (aw-core). Any other type raises ValueError, as does a
    regex that does not compile.
    """

    __slots__ = ("pattern", "select_keys")

    def __init__(self, spec: Mapping[str, Any]) -> None:
        if not isinstance(spec, Mapping):
            raise ValueError(f"a rule must be a dict, got {type(spec).__name__}")
        rtype = spec.get("type")
        if rtype is not None and rtype not in ("regex", "none"):
            raise ValueError(f"unknown rule type {rtype!r} (expected 'regex' or 'none')")
        regex = spec.get("regex")
        if regex is not None and not isinstance(regex, str):
            raise ValueError("a rule's 'regex' must be a string")
        ignore_case = spec.get("ignore_case", False)
        if not isinstance(ignore_case, bool):
            raise ValueError("a rule's 'ignore_case' must be true or false")
        select_keys = spec.get("select_keys")
        if select_keys is not None and (
            not isinstance(select_keys, list) or not all(isinstance(k, str) for k in select_keys)
        ):
            raise ValueError("a rule's 'select_keys' must be a list of strings")
        self.select_keys: tuple[str, ...] | None = tuple(select_keys) if select_keys else None
        self.pattern: re.Pattern[str] | None = None
        if rtype != "none" and regex:
            try:
                self.pattern = re.compile(regex, re.IGNORECASE if ignore_case else 0)
            except re.error as exc:
                raise ValueError(f"invalid regex {regex!r}: {exc}") from None

    def matches(self, data: Mapping[str, Any]) -> bool:
        pattern = self.pattern
        if pattern is None:
            return False
        if self.select_keys is not None:
            values: Iterable[Any] = (data.get(k) for k in self.select_keys)
        else:
            values = data.values()
        search = pattern.search
        return any(type(v) is str and search(v) is not None for v in values)


def _string_items(data: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    # Rules only look at string values, so these decide the outcome.
    return tuple((k, v) for k, v in data.items() if type(v) is str)


def categorize(events: Iterable[Event], rules: Sequence[tuple[Sequence[str], Rule]]) -> list[Event]:
    """Set ``data["$category"]`` to the deepest category whose rule matches, else
    ["Uncategorized"]; among equally deep matches the later rule wins (aw-core)."""
    cache: dict[tuple[tuple[str, str], ...], list[str]] = {}
    out = []
    for e in events:
        sig = _string_items(e.data)
        cat = cache.get(sig)
        if cat is None:
            cat = UNCATEGORIZED
            for category, rule in rules:
                if len(category) >= len(cat) and rule.matches(e.data):
                    cat = list(category)
            cache[sig] = cat
        out.append(e.with_data({**e.data, "$category": cat}))
    return out


def tag(events: Iterable[Event], rules: Sequence[tuple[str, Rule]]) -> list[Event]:
    """Set ``data["$tags"]`` to the tags of all matching rules, in rule order
    (a tag listed by two matching rules appears twice, as in aw-core)."""
    cache: dict[tuple[tuple[str, str], ...], list[str]] = {}
    out = []
    for e in events:
        sig = _string_items(e.data)
        tags = cache.get(sig)
        if tags is None:
            tags = [t for t, rule in rules if rule.matches(e.data)]
            cache[sig] = tags
        out.append(e.with_data({**e.data, "$tags": tags}))
    return out


# --- helpers ----------------------------------------------------------------------------


# Sort keys read the slots directly: this module is Event's closest collaborator.
_start = attrgetter("_s")
_span = attrgetter("_s", "_e")


def _duration(e: Event) -> int:
    return e._e - e._s
