"""Evaluates a parsed query2 program for one time period against an event source.

The source is anything that implements :class:`EventSource` (two methods; no
database is assumed). Two optional methods are used when present:

* ``answer_plan(plan) -> list[Event] | float | None``: the rollup hook; see
  :mod:`worklens.query2.plan`. ``None`` means "evaluate it yourself".
* ``count_events(bucket_id, start, end) -> int`` for ``query_bucket_eventcount``
  (otherwise the events are fetched and counted).

Values are ``None``, booleans, numbers (int or float), strings, lists, dicts
(string keys), :class:`Event` and, while a query runs, unevaluated plans.

Runtime guard (:class:`Limits`): every evaluated expression is a step, every
event a function receives or returns (and every item of a list or character of
a string built by ``+``) counts against an event budget, and a wall-clock
deadline is checked between steps. The budget is for one :func:`run_query`
call, all time periods together. A bucket is read with ``limit`` set to what is
left of the budget plus one, so a hostile query never makes the source
materialise more than the budget. (A pathological regular expression is not
interruptible by these checks: run queries with an outer timeout too.)
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, cast

from . import transforms
from .errors import QueryError
from .events import Event, datetime_to_us, to_json_value
from .functions import FUNCTIONS, ArgKind, FunctionSpec, category_rules, tag_rules
from .parser import (
    Assign,
    BinOp,
    Call,
    DictExpr,
    Expr,
    If,
    ListExpr,
    Literal,
    Neg,
    Program,
    Stmt,
    Var,
    parse,
    suggest,
)
from .plan import BucketQuery, Plan, Transform, is_plan

# --- the data source -----------------------------------------------------------------


@dataclass(frozen=True)
class BucketInfo:
    """What query2 needs to know about a bucket (AW's bucket metadata)."""

    id: str
    type: str = ""
    client: str = ""
    hostname: str = ""
    name: str | None = None


class EventSource(Protocol):
    """Where query_bucket's events come from.

    ``buckets()`` returns the buckets the caller may see, in a stable order
    (find_bucket picks the first match in that order). ``events()`` returns the
    bucket's events that overlap ``[start, end)`` in any order, at most
    ``limit`` of them if ``limit`` is not None; the interpreter cuts them to the
    period and orders them newest first.
    """

    def buckets(self) -> Mapping[str, BucketInfo]: ...

    def events(
        self, bucket_id: str, start: datetime, end: datetime, limit: int | None
    ) -> Sequence[Event]: ...


class PlanAnswerer(Protocol):
    """The optional rollup hook a source may implement (see :mod:`.plan`)."""

    def answer_plan(self, plan: Plan) -> list[Event] | float | None: ...


class EventCounter(Protocol):
    """The optional fast count for query_bucket_eventcount."""

    def count_events(self, bucket_id: str, start: datetime, end: datetime) -> int: ...


@dataclass(frozen=True)
class Limits:
    """Bounds on what one run_query call may cost."""

    max_steps: int = 200_000
    max_events: int = 20_000_000
    max_seconds: float = 60.0
    max_query_chars: int = 1_000_000
    max_nesting: int = 64
    max_plan_depth: int = 48
    """Deeper chains of transforms are evaluated as they are built (recursion bound)."""


DEFAULT_LIMITS = Limits()


# --- run state ------------------------------------------------------------------------


class _Budget:
    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.steps = 0
        self.events = 0
        self.deadline = time.monotonic() + limits.max_seconds

    def step(self, line: int) -> None:
        self.steps += 1
        if self.steps > self.limits.max_steps:
            raise QueryError(
                f"query too expensive: more than {self.limits.max_steps} evaluation steps", line
            )
        if self.steps % 64 == 0:
            self.check_time(line)

    def check_time(self, line: int) -> None:
        if time.monotonic() > self.deadline:
            raise QueryError(
                f"query too expensive: it ran longer than {self.limits.max_seconds:g} s", line
            )

    def charge(self, n: int, line: int) -> None:
        self.events += n
        if self.events > self.limits.max_events:
            raise QueryError(
                f"query too expensive: it handles more than {self.limits.max_events} events",
                line,
            )

    @property
    def remaining(self) -> int:
        return max(0, self.limits.max_events - self.events)


def _type_name(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Event):
        return "an event"
    if is_plan(value):
        return "a number" if cast(Plan, value).kind == "number" else "a list of events"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a dict"
    return type(value).__name__


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class _Evaluator:
    """One time period of one query."""

    def __init__(
        self,
        source: EventSource,
        start: datetime,
        end: datetime,
        name: str,
        budget: _Budget,
        buckets: Callable[[], Mapping[str, BucketInfo]],
    ) -> None:
        self.source = source
        self.start = start
        self.end = end
        self.budget = budget
        self.limits = budget.limits
        self._buckets = buckets
        hook = getattr(source, "answer_plan", None)
        self.hook: Callable[[Plan], Any] | None = hook if callable(hook) else None
        self.cache: dict[int, tuple[Plan, Any]] = {}
        self.env: dict[str, Any] = {
            "NAME": name,
            "STARTTIME": start.isoformat(),
            "ENDTIME": end.isoformat(),
            "TIMEINTERVAL": f"{start.isoformat()}/{end.isoformat()}",
        }

    # --- statements
    def run(self, program: Program) -> Any:
        self.exec_block(program.statements)
        if "RETURN" not in self.env:
            raise QueryError("the query never assigns RETURN (e.g. 'RETURN = events;')",
                             program.line_count)
        return self.force_deep(self.env["RETURN"], program.line_count)

    def exec_block(self, stmts: Sequence[Stmt]) -> None:
        for stmt in stmts:
            self.budget.step(stmt.line)
            if isinstance(stmt, Assign):
                self.env[stmt.name] = self.eval(stmt.value)
            else:
                self.exec_if(stmt)

    def exec_if(self, stmt: If) -> None:
        for cond, body in stmt.branches:
            value = self.force_deep(self.eval(cond), cond.line)
            if not isinstance(value, bool):
                raise QueryError(
                    f"an 'if' condition must be true or false, got {_type_name(value)}", cond.line
                )
            if value:
                self.exec_block(body)
                return
        self.exec_block(stmt.orelse)

    # --- expressions
    def eval(self, node: Expr) -> Any:
        self.budget.step(node.line)
        if isinstance(node, Literal):
            return node.value
        if isinstance(node, Var):
            try:
                return self.env[node.name]
            except KeyError:
                raise QueryError(
                    f"unknown variable '{node.name}'{suggest(node.name, list(self.env))}",
                    node.line,
                ) from None
        if isinstance(node, Call):
            return self.call(node)
        if isinstance(node, ListExpr):
            return [self.eval(item) for item in node.items]
        if isinstance(node, DictExpr):
            return {key: self.eval(value) for key, value in node.items}
        if isinstance(node, BinOp):
            return self.binop(node)
        if isinstance(node, Neg):
            value = self.force_deep(self.eval(node.operand), node.line)
            if not _is_number(value):
                raise QueryError(f"cannot negate {_type_name(value)}", node.line)
            return -value
        raise AssertionError(f"unknown node {node!r}")  # pragma: no cover

    def binop(self, node: BinOp) -> Any:
        a = self.force_deep(self.eval(node.left), node.line)
        b = self.force_deep(self.eval(node.right), node.line)
        op = node.op
        if op == "==":
            ta, tb = _type_name(a), _type_name(b)
            if ta != tb and a is not None and b is not None:
                raise QueryError(f"cannot compare {ta} with {tb}", node.line)
            return transforms.json_equal(a, b)
        if op == "+":
            if isinstance(a, list) and isinstance(b, list):
                self.budget.charge(len(a) + len(b), node.line)
                return a + b
            if isinstance(a, str) and isinstance(b, str):
                self.budget.charge(len(a) + len(b), node.line)
                return a + b
        if _is_number(a) and _is_number(b):
            if op == "+":
                result = a + b
            elif op == "-":
                result = a - b
            elif op == "*":
                result = a * b
            else:
                if b == 0:
                    raise QueryError(f"division by zero ('{op}')", node.line)
                result = a / b if op == "/" else a % b
            if isinstance(result, float) and not math.isfinite(result):
                raise QueryError(f"'{op}' overflowed", node.line)
            return result
        if op == "+":
            raise QueryError(
                f"'+' needs two numbers, two lists or two strings, got {_type_name(a)} "
                f"and {_type_name(b)}", node.line)
        raise QueryError(f"'{op}' needs two numbers, got {_type_name(a)} and {_type_name(b)}",
                         node.line)

    # --- calls
    def call(self, node: Call) -> Any:
        spec = FUNCTIONS[node.name]
        args = [self.eval(arg) for arg in node.args]
        for i, value in enumerate(args):
            args[i] = self.check_arg(spec, i, value, node.args[i].line)
        self.budget.check_time(node.line)
        if spec.source:
            return self.call_source(spec, args, node.line)
        if spec.lazy and any(is_plan(a) for a in args):
            depth = 1 + max((a.depth for a in args if is_plan(a)), default=0)
            plan = Transform(spec.name, tuple(args), node.line,
                             "number" if spec.result == "number" else "events", depth)
            if depth > self.limits.max_plan_depth:
                return self.force(plan)
            return plan
        return self.apply(spec, args, node.line)

    def check_arg(self, spec: FunctionSpec, i: int, value: Any, line: int) -> Any:
        """The argument as the function takes it (plans stay plans for event lists);
        QueryError naming the argument if it has the wrong type."""
        kind = spec.kind_of(i)
        if kind is ArgKind.EVENTS:
            if is_plan(value):
                if cast(Plan, value).kind == "events":
                    return value
            elif isinstance(value, list):
                for item in value:
                    if not isinstance(item, Event):
                        raise self.arg_error(spec, i, kind, f"a list containing {_type_name(item)}",
                                             line)
                return value
            raise self.arg_error(spec, i, kind, _type_name(value), line)
        value = self.force_deep(value, line)
        ok = True
        if kind is ArgKind.STRING:
            ok = isinstance(value, str)
        elif kind is ArgKind.OPTIONAL_STRING:
            ok = value is None or isinstance(value, str)
        elif kind is ArgKind.STRINGS:
            ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        elif kind is ArgKind.LIST:
            ok = isinstance(value, list)
        elif kind is ArgKind.CONTAINER:
            ok = isinstance(value, list | dict)
        elif kind is ArgKind.COUNT:
            ok = _is_number(value) and value >= 0 and float(value).is_integer()
            if ok:
                value = int(value)
        elif kind is ArgKind.SECONDS:
            ok = _is_number(value) and value >= 0 and math.isfinite(value)
        elif kind is ArgKind.REGEX:
            if isinstance(value, str):
                try:
                    re.compile(value)
                except re.error as exc:
                    raise QueryError(f"{spec.name}(): invalid regular expression {value!r}: {exc}",
                                     line) from None
            else:
                ok = False
        elif kind in (ArgKind.CATEGORY_RULES, ArgKind.TAG_RULES):
            if not isinstance(value, list):
                ok = False
            else:
                try:
                    (category_rules if kind is ArgKind.CATEGORY_RULES else tag_rules)(value)
                except ValueError as exc:
                    raise QueryError(f"{spec.name}(): invalid rules: {exc}", line) from None
        if not ok:
            raise self.arg_error(spec, i, kind, _type_name(value), line)
        return value

    @staticmethod
    def arg_error(spec: FunctionSpec, i: int, kind: ArgKind, got: str, line: int) -> QueryError:
        return QueryError(
            f"{spec.name}() argument {i + 1} ('{spec.param_name(i)}') must be {kind.value}, "
            f"got {got}",
            line,
        )

    def apply(self, spec: FunctionSpec, args: list[Any], line: int) -> Any:
        """Run a pure function on concrete arguments."""
        assert spec.impl is not None
        self.budget.charge(sum(len(a) for a in args if isinstance(a, list)), line)
        try:
            result = spec.impl(args)
        except ValueError as exc:
            raise QueryError(f"{spec.name}(): {exc}", line) from None
        if isinstance(result, list):
            self.budget.charge(len(result), line)
        return result

    # --- the source
    def buckets(self) -> Mapping[str, BucketInfo]:
        return self._buckets()

    def call_source(self, spec: FunctionSpec, args: list[Any], line: int) -> Any:
        name = spec.name
        if name == "query_bucket_names":
            return list(self.buckets())
        if name == "find_bucket":
            return self.find_bucket(args[0], args[1] if len(args) > 1 else None, line)
        bucket_id = args[0]
        if bucket_id not in self.buckets():
            raise QueryError(f"there is no bucket named '{bucket_id}'"
                             f"{suggest(bucket_id, list(self.buckets()))}", line)
        if name == "query_bucket":
            return BucketQuery(bucket_id, self.start, self.end, line)
        assert name == "query_bucket_eventcount"
        counter = getattr(self.source, "count_events", None)
        if callable(counter):
            return int(cast(EventCounter, self.source).count_events(bucket_id, self.start,
                                                                     self.end))
        return len(self.read_bucket(BucketQuery(bucket_id, self.start, self.end, line)))

    def find_bucket(self, filter_str: str, hostname: str | None, line: int) -> str:
        """aw-core: the first bucket (in the source's order) whose id contains
        ``filter_str``, only among buckets of ``hostname`` if given. An exact id
        match is preferred over a containing one (aw-server-rust does the same
        for its prefix match), so "host" does not resolve to "host.local"."""
        candidates = [
            b for b in self.buckets().values() if hostname is None or b.hostname == hostname
        ]
        for b in candidates:
            if b.id == filter_str:
                return b.id
        for b in candidates:
            if filter_str in b.id:
                return b.id
        where = f" on hostname '{hostname}'" if hostname is not None else ""
        raise QueryError(f"find_bucket(): no bucket id contains '{filter_str}'{where}", line)

    def read_bucket(self, q: BucketQuery) -> list[Event]:
        room = self.budget.remaining
        raw = self.source.events(q.bucket_id, q.start, q.end, room + 1)
        self.budget.charge(len(raw), q.line)
        return transforms.clip_to_period(raw, datetime_to_us(q.start), datetime_to_us(q.end))

    # --- forcing plans
    def force(self, plan: Plan) -> Any:
        """The value of a plan node: the hook's answer, else generic evaluation."""
        hit = self.cache.get(id(plan))
        if hit is not None:
            return hit[1]
        self.budget.check_time(plan.line)
        result: Any = None
        if self.hook is not None:
            result = self.hook(plan)
            if result is not None:
                result = self._check_answer(plan, result)
                if isinstance(result, list):
                    self.budget.charge(len(result), plan.line)
        if result is None:
            if isinstance(plan, BucketQuery):
                result = self.read_bucket(plan)
            else:
                spec = FUNCTIONS[plan.function]
                args = [self.force(a) if is_plan(a) else a for a in plan.args]
                result = self.apply(spec, args, plan.line)
        self.cache[id(plan)] = (plan, result)
        return result

    @staticmethod
    def _check_answer(plan: Plan, result: Any) -> Any:
        if plan.kind == "number":
            if not _is_number(result):
                raise TypeError(f"answer_plan returned {type(result).__name__} for a number plan")
            return result
        if not isinstance(result, list) or not all(isinstance(e, Event) for e in result):
            raise TypeError("answer_plan must return a list of Event (or None) for an events plan")
        return result

    def force_deep(self, value: Any, line: int) -> Any:
        """``value`` with every plan inside it evaluated."""
        if is_plan(value):
            return self.force(cast(Plan, value))
        if isinstance(value, list):
            if any(is_plan(v) or isinstance(v, list | dict) for v in value):
                return [self.force_deep(v, line) for v in value]
            return value
        if isinstance(value, dict):
            return {k: self.force_deep(v, line) for k, v in value.items()}
        return value


# --- public entry points -------------------------------------------------------------------


def parse_timeperiod(period: str) -> tuple[datetime, datetime]:
    """``"<iso start>/<iso end>"`` as two aware UTC datetimes.

    A time without an offset is UTC (as aw-core's iso8601 parser assumes); a
    bare date is its midnight. QueryError (no line) if malformed or if the end
    is before the start.
    """
    if not isinstance(period, str):
        raise QueryError(f"a time period must be a string, got {type(period).__name__}")
    parts = period.split("/")
    if len(parts) != 2:
        raise QueryError(f"invalid time period {period!r}: expected '<start>/<end>'")
    out: list[datetime] = []
    for part in parts:
        try:
            dt = datetime.fromisoformat(part.strip())
        except ValueError:
            raise QueryError(f"invalid time period {period!r}: {part!r} is not an ISO 8601 "
                             "timestamp") from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        out.append(dt.astimezone(UTC))
    if out[1] < out[0]:
        raise QueryError(f"invalid time period {period!r}: it ends before it starts")
    return out[0], out[1]


def _normalise_period(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    for dt in (start, end):
        if dt.tzinfo is None or dt.utcoffset() is None:
            raise QueryError("time periods must be timezone-aware datetimes")
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    if end < start:
        raise QueryError(f"invalid time period {start.isoformat()}/{end.isoformat()}: "
                         "it ends before it starts")
    return start, end


def evaluate(
    program: Program,
    timeperiods: Sequence[tuple[datetime, datetime]],
    source: EventSource,
    *,
    name: str = "",
    limits: Limits = DEFAULT_LIMITS,
) -> list[Any]:
    """Run a parsed program once per period; the results hold :class:`Event` objects."""
    periods = [_normalise_period(s, e) for s, e in timeperiods]
    budget = _Budget(limits)
    bucket_cache: list[Mapping[str, BucketInfo]] = []

    def buckets() -> Mapping[str, BucketInfo]:
        if not bucket_cache:
            bucket_cache.append(source.buckets())
        return bucket_cache[0]

    results = []
    for start, end in periods:
        ev = _Evaluator(source, start, end, name, budget, buckets)
        results.append(ev.run(program))
    return results


def run_query(
    lines: Sequence[str],
    timeperiods: Sequence[tuple[datetime, datetime]],
    source: EventSource,
    *,
    name: str = "",
    limits: Limits = DEFAULT_LIMITS,
) -> list[Any]:
    """Parse and run a query2 program: one JSON-ready result per time period.

    ``lines`` is the request's ``query`` list, ``timeperiods`` the parsed
    ``timeperiods`` (see :func:`parse_timeperiod`). Events in the results are
    AW JSON objects; sums of durations are seconds. Every failure is a
    :class:`QueryError` whose ``line`` indexes ``lines``.
    """
    program = parse(lines, max_nesting=limits.max_nesting, max_chars=limits.max_query_chars)
    return [to_json_value(r) for r in evaluate(program, timeperiods, source, name=name,
                                               limits=limits)]
