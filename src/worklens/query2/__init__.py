"""ActivityWatch's query2 language, as a pure package (no I/O, no database).

``POST /api/0/query/`` takes ``{"timeperiods": ["<start>/<end>", ...],
"query": ["line", ...]}`` and answers one result per period::

    periods = [parse_timeperiod(p) for p in body["timeperiods"]]
    results = run_query(body["query"], periods, source)   # JSON-ready

``source`` implements :class:`EventSource` (bucket list + events in a range),
and may implement the rollup hook ``answer_plan`` (see :mod:`.plan`).

Compatibility. The reference is aw-core (Python); the language is the union of
aw-core's and aw-server-rust's (functions of both, ``#`` comments, ``if``/
``elif``/``else``, ``+ - * / % ==``, ``return``). Where they differ or are
accidental, the choice made here:

* lines are joined with newlines (aw-server-rust); ``;`` separates statements
  and is optional after the last one (aw-core);
* ``NAME``, ``STARTTIME``, ``ENDTIME`` (aw-core) and ``TIMEINTERVAL``
  (aw-server-rust) are predefined and read-only: query_bucket always reads the
  request's period;
* query_bucket cuts events to the period (aw-server-rust) and returns them
  newest first (both);
* operators have the usual precedence (aw-server-rust has one level);
  ``none == none`` is true; comparing different types is an error (rust);
* ``true`` never equals ``1`` (JSON equality) in filter_keyvals, contains, ==;
* find_bucket prefers an exact id over a containing one;
* filter_period_intersect intersects with the union of the filter events
  (no double counting when they overlap); merge_events_by_keys keeps events
  lacking a key (aw-core); chunk_events_by_key skips them (aw-server-rust);
* flood: ties in start order put the shorter event first, and an event that
  a merge emptied is never re-grown over time already counted (see
  :func:`.transforms.flood`);
* categorize rules: ``type`` optional (aw-core), ``"none"`` never matches,
  unknown types are an error (aw-server-rust);
* flood takes an optional pulse time; concat takes any number of lists.

Modules: :mod:`.events` (the immutable Event and its AW JSON form),
:mod:`.transforms` (the pure transforms and their rules), :mod:`.functions`
(the function table), :mod:`.parser` (tokenizer, parser, AST), :mod:`.plan`
(deferred pipelines and the hook), :mod:`.interpreter` (evaluation, limits).
"""

from .errors import QueryError
from .events import Event
from .functions import FUNCTIONS
from .interpreter import (
    DEFAULT_LIMITS,
    BucketInfo,
    EventCounter,
    EventSource,
    Limits,
    PlanAnswerer,
    evaluate,
    parse_timeperiod,
    run_query,
)
from .parser import Program, parse
from .plan import BucketQuery, Plan, TimePerKeys, Transform, describe, match_time_per_keys

__all__ = [
    "DEFAULT_LIMITS",
    "FUNCTIONS",
    "BucketInfo",
    "BucketQuery",
    "Event",
    "EventCounter",
    "EventSource",
    "Limits",
    "Plan",
    "PlanAnswerer",
    "Program",
    "QueryError",
    "TimePerKeys",
    "Transform",
    "describe",
    "evaluate",
    "match_time_per_keys",
    "parse",
    "parse_timeperiod",
    "run_query",
]
