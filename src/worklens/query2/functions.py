"""The query2 function table: names, parameters, argument kinds and the pure
implementations.

The parser uses it to reject unknown functions and wrong argument counts
before anything runs; the interpreter uses it to check argument types and to
call the implementations. Functions that read the event source
(``query_bucket`` ...) have no implementation here: the interpreter runs them.

Names, argument orders and meanings are ActivityWatch's (aw-core's
``aw_query/functions.py`` and aw-server-rust's ``aw-query``); the union of both
servers' functions is offered, minus ``print`` and ``nop`` (no I/O, no tests
hooks). Two additions: ``flood`` takes an optional pulse time in seconds
(``aw_transform.flood`` has the parameter, the query function does not expose
it), and ``concat`` takes any number of lists (as aw-server-rust).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Literal

from . import transforms as t


class ArgKind(Enum):
    """What an argument must be; the value is how error messages name it."""

    EVENTS = "a list of events"
    STRING = "a string"
    OPTIONAL_STRING = "a string or none"
    STRINGS = "a list of strings"
    LIST = "a list"
    COUNT = "a non-negative integer"
    SECONDS = "a non-negative number of seconds"
    REGEX = "a regular expression (string)"
    CATEGORY_RULES = "a list of [category, rule] pairs"
    TAG_RULES = "a list of [tag, rule] pairs"
    CONTAINER = "a list or a dict"
    ANY = "any value"


@dataclass(frozen=True)
class Param:
    name: str
    kind: ArgKind
    optional: bool = False


ResultKind = Literal["events", "number", "value"]


@dataclass(frozen=True)
class FunctionSpec:
    """One query2 function.

    ``lazy`` functions are pure transforms over event lists: called with a
    not-yet-evaluated list (a plan node, see :mod:`worklens.query2.plan`) they
    return a new plan node instead of running. ``source`` functions read the
    event source and are run by the interpreter (``impl`` is None).
    """

    name: str
    params: tuple[Param, ...]
    result: ResultKind
    doc: str
    impl: Callable[[list[Any]], Any] | None = None
    variadic: ArgKind | None = None
    lazy: bool = False
    source: bool = False

    @property
    def min_args(self) -> int:
        return sum(1 for p in self.params if not p.optional)

    @property
    def max_args(self) -> int | None:
        return None if self.variadic is not None else len(self.params)

    def kind_of(self, index: int) -> ArgKind:
        if index < len(self.params):
            return self.params[index].kind
        assert self.variadic is not None
        return self.variadic

    def param_name(self, index: int) -> str:
        if index < len(self.params):
            return self.params[index].name
        return f"events{index + 1}"

    def params_text(self) -> str:
        """``events, pulsetime?`` (``?`` marks an optional parameter)."""
        parts = [f"{p.name}?" if p.optional else p.name for p in self.params]
        if self.variadic is not None:
            parts.append("...")
        return ", ".join(parts)

    def signature(self) -> str:
        return f"{self.name}({self.params_text()})"

    def arity_text(self) -> str:
        lo, hi = self.min_args, self.max_args
        if hi is None:
            return f"at least {lo} argument{'s' if lo != 1 else ''}"
        if lo == hi:
            return f"{lo} argument{'s' if lo != 1 else ''}"
        return f"{lo} to {hi} arguments"


def category_rules(value: list[Any]) -> list[tuple[list[str], t.Rule]]:
    """``[[["Work", "Email"], {rule}], ...]`` as (category, Rule) pairs. ValueError if malformed."""
    out: list[tuple[list[str], t.Rule]] = []
    for i, entry in enumerate(value):
        if not isinstance(entry, list) or len(entry) != 2:
            raise ValueError(f"entry {i + 1} is not a [category, rule] pair")
        category, rule = entry
        if not isinstance(category, list) or not all(isinstance(c, str) for c in category):
            raise ValueError(f"entry {i + 1}: the category must be a list of strings")
        try:
            out.append((category, t.Rule(rule)))
        except ValueError as exc:
            raise ValueError(f"entry {i + 1}: {exc}") from None
    return out


def tag_rules(value: list[Any]) -> list[tuple[str, t.Rule]]:
    """``[["tag", {rule}], ...]`` as (tag, Rule) pairs. ValueError if malformed."""
    out: list[tuple[str, t.Rule]] = []
    for i, entry in enumerate(value):
        if not isinstance(entry, list) or len(entry) != 2:
            raise ValueError(f"entry {i + 1} is not a [tag, rule] pair")
        name, rule = entry
        if not isinstance(name, str):
            raise ValueError(f"entry {i + 1}: the tag must be a string")
        try:
            out.append((name, t.Rule(rule)))
        except ValueError as exc:
            raise ValueError(f"entry {i + 1}: {exc}") from None
    return out


def _flood(a: list[Any]) -> Any:
    return t.flood(a[0], a[1] if len(a) > 1 else t.PULSETIME_DEFAULT)


def _contains(a: list[Any]) -> bool:
    container, value = a
    if isinstance(container, dict):
        if not isinstance(value, str):
            raise ValueError("contains() on a dict needs a string key")
        return value in container
    return any(t.json_equal(x, value) for x in container)


_E = ArgKind.EVENTS
_S = ArgKind.STRING


def _spec(
    name: str,
    params: Sequence[tuple[str, ArgKind] | tuple[str, ArgKind, bool]],
    result: ResultKind,
    doc: str,
    impl: Callable[[list[Any]], Any] | None = None,
    *,
    variadic: ArgKind | None = None,
    lazy: bool = False,
    source: bool = False,
) -> FunctionSpec:
    ps = tuple(Param(p[0], p[1], len(p) > 2 and bool(p[2])) for p in params)
    return FunctionSpec(name, ps, result, doc, impl, variadic, lazy, source)


_SPECS = [
    # --- reading the source
    _spec("query_bucket", [("bucket_id", _S)], "events",
          "The bucket's events in the time period, cut to it, newest first.", source=True),
    _spec("query_bucket_eventcount", [("bucket_id", _S)], "number",
          "How many of the bucket's events overlap the time period.", source=True),
    _spec("query_bucket_names", [], "value", "The ids of all buckets.", source=True),
    _spec("find_bucket", [("filter_str", _S), ("hostname", ArgKind.OPTIONAL_STRING, True)],
          "value", "The id of the bucket whose id contains filter_str (an exact match first), "
          "optionally only among buckets of that hostname.", source=True),
    # --- filters
    _spec("filter_keyvals", [("events", _E), ("key", _S), ("vals", ArgKind.LIST)], "events",
          t.filter_keyvals.__doc__ or "", lambda a: t.filter_keyvals(a[0], a[1], a[2]), lazy=True),
    _spec("exclude_keyvals", [("events", _E), ("key", _S), ("vals", ArgKind.LIST)], "events",
          t.exclude_keyvals.__doc__ or "", lambda a: t.exclude_keyvals(a[0], a[1], a[2]),
          lazy=True),
    _spec("filter_keyvals_regex", [("events", _E), ("key", _S), ("regex", ArgKind.REGEX)],
          "events", t.filter_keyvals_regex.__doc__ or "",
          lambda a: t.filter_keyvals_regex(a[0], a[1], a[2]), lazy=True),
    _spec("filter_period_intersect", [("events", _E), ("filterevents", _E)], "events",
          t.filter_period_intersect.__doc__ or "",
          lambda a: t.filter_period_intersect(a[0], a[1]), lazy=True),
    _spec("period_union", [("events1", _E), ("events2", _E)], "events",
          t.period_union.__doc__ or "", lambda a: t.period_union(a[0], a[1]), lazy=True),
    _spec("union_no_overlap", [("events1", _E), ("events2", _E)], "events",
          t.union_no_overlap.__doc__ or "", lambda a: t.union_no_overlap(a[0], a[1]), lazy=True),
    _spec("limit_events", [("events", _E), ("count", ArgKind.COUNT)], "events",
          t.limit_events.__doc__ or "", lambda a: t.limit_events(a[0], a[1]), lazy=True),
    # --- merging
    _spec("flood", [("events", _E), ("pulsetime", ArgKind.SECONDS, True)], "events",
          t.flood.__doc__ or "", _flood, lazy=True),
    _spec("merge_events_by_keys", [("events", _E), ("keys", ArgKind.STRINGS)], "events",
          t.merge_events_by_keys.__doc__ or "",
          lambda a: t.merge_events_by_keys(a[0], a[1]), lazy=True),
    _spec("chunk_events_by_key", [("events", _E), ("key", _S)], "events",
          t.chunk_events_by_key.__doc__ or "",
          lambda a: t.chunk_events_by_key(a[0], a[1]), lazy=True),
    _spec("concat", [], "events", t.concat.__doc__ or "", lambda a: t.concat(*a),
          variadic=_E, lazy=True),
    # --- sorting and summing
    _spec("sort_by_timestamp", [("events", _E)], "events", t.sort_by_timestamp.__doc__ or "",
          lambda a: t.sort_by_timestamp(a[0]), lazy=True),
    _spec("sort_by_duration", [("events", _E)], "events", t.sort_by_duration.__doc__ or "",
          lambda a: t.sort_by_duration(a[0]), lazy=True),
    _spec("sum_durations", [("events", _E)], "number", t.sum_durations.__doc__ or "",
          lambda a: t.sum_durations(a[0]), lazy=True),
    # --- enrichment
    _spec("split_url_events", [("events", _E)], "events", t.split_url_events.__doc__ or "",
          lambda a: t.split_url_events(a[0]), lazy=True),
    _spec("simplify_window_titles", [("events", _E), ("key", _S)], "events",
          t.simplify_string.__doc__ or "", lambda a: t.simplify_string(a[0], a[1]), lazy=True),
    _spec("categorize", [("events", _E), ("classes", ArgKind.CATEGORY_RULES)], "events",
          t.categorize.__doc__ or "", lambda a: t.categorize(a[0], category_rules(a[1])),
          lazy=True),
    _spec("tag", [("events", _E), ("classes", ArgKind.TAG_RULES)], "events",
          t.tag.__doc__ or "", lambda a: t.tag(a[0], tag_rules(a[1])), lazy=True),
    # --- plain values
    _spec("contains", [("container", ArgKind.CONTAINER), ("value", ArgKind.ANY)], "value",
          "Whether a list holds the value (JSON equality), or a dict has the key.", _contains),
]

FUNCTIONS: dict[str, FunctionSpec] = {s.name: s for s in _SPECS}
"""Every query2 function by name."""
