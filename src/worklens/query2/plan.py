"""Deferred event lists ("plans"): what lets a source answer a pipeline from rollups.

``query_bucket(...)`` does not fetch anything when it is called: it returns a
:class:`BucketQuery`. A pure transform (``flood``, ``filter_keyvals``,
``merge_events_by_keys`` ... every function marked ``lazy`` in
:mod:`worklens.query2.functions`) called on a plan returns a :class:`Transform`
node over it, also without running. Plans are evaluated ("forced") only when a
concrete value is needed: the query's RETURN value, an ``if`` condition, an
operator, or a non-transform function.

**The hook.** Before evaluating any plan node generically, the interpreter
offers it to the source, if the source has a method

    def answer_plan(self, plan: Plan) -> list[Event] | float | None

It is called top-down: first with the outermost node (say
``sort_by_duration(merge_events_by_keys(filter_period_intersect(...), ["app"]))``),
and, if that returns ``None``, with each of the node's plan arguments in turn,
down to the ``BucketQuery`` leaves, which are then read through
``EventSource.events``. A non-None answer is used as that node's result
(a list of events for an ``"events"`` node, seconds for a ``"number"`` node such
as ``sum_durations``) and must equal what the generic evaluation would give.
Results are memoised per node, so a variable used twice is evaluated once.

:func:`match_time_per_keys` recognises the canonical "time per app" pipeline
(window bucket, optionally flooded, intersected with the ``"not-afk"`` periods
of an optionally flooded AFK bucket, merged by keys, optionally sorted by
duration), which is what a rollup-backed ``answer_plan`` will look for.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from .events import Event
from .transforms import PULSETIME_DEFAULT

PlanKind = Literal["events", "number"]


@dataclass(frozen=True, eq=False)
class BucketQuery:
    """``query_bucket(bucket_id)`` for the period ``[start, end)``: the bucket's
    events overlapping the period, cut to it, newest first."""

    bucket_id: str
    start: datetime
    end: datetime
    line: int

    @property
    def kind(self) -> PlanKind:
        return "events"

    @property
    def depth(self) -> int:
        return 1


@dataclass(frozen=True, eq=False)
class Transform:
    """``function(*args)`` not run yet. Each argument is either a plan node or a
    concrete value (a list of events, a string, a list of keys, rules ...)."""

    function: str
    args: tuple[Any, ...]
    line: int
    kind: PlanKind
    depth: int


Plan = BucketQuery | Transform


def is_plan(value: object) -> bool:
    return isinstance(value, BucketQuery | Transform)


def describe(plan: Any) -> Any:
    """A plain nested-tuple picture of a plan, for logs, tests and pattern matching:
    ``("sort_by_duration", ("merge_events_by_keys", (...), ["app"]))``; a bucket
    is ``("query_bucket", bucket_id)``, a concrete event list ``"<n events>"``."""
    if isinstance(plan, BucketQuery):
        return ("query_bucket", plan.bucket_id)
    if isinstance(plan, Transform):
        return (plan.function, *(describe(a) for a in plan.args))
    if isinstance(plan, list) and plan and all(isinstance(e, Event) for e in plan):
        return f"<{len(plan)} events>"
    return plan


@dataclass(frozen=True)
class TimePerKeys:
    """The canonical "time per app" pipeline, as recognised in a plan::

        w = [flood](query_bucket(window_bucket))
        a = filter_keyvals([flood](query_bucket(afk_bucket)), "status", ["not-afk"])
        RETURN = [sort_by_duration](merge_events_by_keys(filter_period_intersect(w, a), keys))

    ``*_pulsetime`` is None where there is no flood; ``sorted_by_duration`` says
    whether the outer sort is there.
    """

    window_bucket: str
    afk_bucket: str
    start: datetime
    end: datetime
    keys: tuple[str, ...]
    window_pulsetime: float | None
    afk_pulsetime: float | None
    sorted_by_duration: bool


def _strip_flood(node: Any) -> tuple[Any, float | None]:
    if isinstance(node, Transform) and node.function == "flood":
        pulse = node.args[1] if len(node.args) > 1 else PULSETIME_DEFAULT
        return node.args[0], float(pulse)
    return node, None


def match_time_per_keys(plan: Any) -> TimePerKeys | None:
    """The :class:`TimePerKeys` that ``plan`` is, or None if it is anything else."""
    node = plan
    is_sorted = False
    if isinstance(node, Transform) and node.function == "sort_by_duration":
        node, is_sorted = node.args[0], True
    if not (isinstance(node, Transform) and node.function == "merge_events_by_keys"):
        return None
    keys = node.args[1]
    node = node.args[0]
    if not (isinstance(node, Transform) and node.function == "filter_period_intersect"):
        return None
    window, window_pulse = _strip_flood(node.args[0])
    afk = node.args[1]
    if not (
        isinstance(afk, Transform)
        and afk.function == "filter_keyvals"
        and afk.args[1] == "status"
        and afk.args[2] == ["not-afk"]
    ):
        return None
    afk, afk_pulse = _strip_flood(afk.args[0])
    if not (isinstance(window, BucketQuery) and isinstance(afk, BucketQuery)):
        return None
    if (window.start, window.end) != (afk.start, afk.end):
        return None
    return TimePerKeys(
        window_bucket=window.bucket_id,
        afk_bucket=afk.bucket_id,
        start=window.start,
        end=window.end,
        keys=tuple(keys),
        window_pulsetime=window_pulse,
        afk_pulsetime=afk_pulse,
        sorted_by_duration=is_sorted,
    )
