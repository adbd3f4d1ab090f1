"""Running queries: the web UI's activity query end to end, the source
functions, type checks, limits, and the rollup hook (answer_plan)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from worklens.query2 import (
    Event,
    Limits,
    Plan,
    QueryError,
    describe,
    match_time_per_keys,
    parse_timeperiod,
    run_query,
)

from .helpers import DAY, T0, MemorySource, at, ev

# --- the AW web UI's activity query ------------------------------------------------------

# Written the way aw-webui's fullDesktopQuery builds it (queries.ts: canonicalEvents
# with filter_afk, one browser bucket with include_audible, categories, no stopwatch):
# one statement per entry, the RETURN dict in a single multi-line entry.
WEBUI_QUERY = [
    'events = flood(query_bucket(find_bucket("aw-watcher-window_")));',
    'not_afk = flood(query_bucket(find_bucket("aw-watcher-afk_")));',
    'not_afk = filter_keyvals(not_afk, "status", ["not-afk"]);',
    "browser_events = [];",
    'events_firefox = flood(query_bucket("aw-watcher-web-firefox"));',
    'window_firefox = filter_keyvals(events, "app", ["Firefox", "firefox"]);',
    'window_firefox_re = filter_keyvals_regex(events, "app", "(?i)(firefox|librewolf)");',
    "window_firefox = sort_by_timestamp(concat(window_firefox, window_firefox_re));",
    "events_firefox = filter_period_intersect(events_firefox, window_firefox);",
    "events_firefox = split_url_events(events_firefox);",
    "browser_events = concat(browser_events, events_firefox);",
    "browser_events = sort_by_timestamp(browser_events);",
    'audible_events = filter_keyvals(browser_events, "audible", [true]);',
    "not_afk = period_union(not_afk, audible_events);",
    "events = filter_period_intersect(events, not_afk);",
    "stopwatch_events = [];",
    r'events = categorize(events, [[["Work"], {"type": "regex", "regex": "worklens|Code"}], '
    r'[["Work", "Programming"], {"type": "regex", "regex": "vim|\.py\b"}], '
    r'[["Media"], {"type": "regex", "regex": "youtube", "ignore_case": true}], '
    r'[["Uncategorized"], {"type": "none"}]]);',
    'title_events = sort_by_duration(merge_events_by_keys(events, ["app", "title"]));',
    'app_events   = sort_by_duration(merge_events_by_keys(title_events, ["app"]));',
    'cat_events   = sort_by_duration(merge_events_by_keys(events, ["$category"]));',
    "app_events  = limit_events(app_events, 100);",
    "title_events  = limit_events(title_events, 100);",
    "duration = sum_durations(events);",
    "browser_events = split_url_events(browser_events);",
    'browser_urls = merge_events_by_keys(browser_events, ["url"]);',
    "browser_urls = sort_by_duration(browser_urls);",
    "browser_urls = limit_events(browser_urls, 100);",
    'browser_domains = merge_events_by_keys(browser_events, ["$domain"]);',
    "browser_domains = sort_by_duration(browser_domains);",
    'browser_titles = sort_by_duration(merge_events_by_keys(browser_events, ["title"]));',
    "browser_duration = sum_durations(browser_events);",
    'stopwatch_events = merge_events_by_keys(stopwatch_events, ["label"]);',
    """RETURN = {
        "window": {
            "app_events": app_events,
            "title_events": title_events,
            "cat_events": cat_events,
            "active_events": not_afk,
            "duration": duration
        },
        "browser": {
            "domains": browser_domains,
            "urls": browser_urls,
            "titles": browser_titles,
            "duration": browser_duration
        },
        "stopwatch": {"stopwatch_events": stopwatch_events}
    };""",
]

YT = "https://www.youtube.com/watch?v=x"
DOCS = "https://docs.example.org/guide#intro"


def activity_source() -> MemorySource:
    """One morning (seconds after 09:00): vim, YouTube in Firefox, VS Code, docs in
    Firefox; not-afk until 1500 s, afk until 2700 s, back at 2702 s; the docs tab
    plays audio from 2650 s (so that counts as active, include_audible)."""
    window = [
        ev(0, 600, {"app": "vim", "title": "main.py - worklens"}),
        ev(603, 300, {"app": "Firefox", "title": "YouTube - Music"}),  # 3 s gap: flooded
        ev(903, 1200, {"app": "Code", "title": "report.md - Visual Studio Code"}),
        ev(2650, 650, {"app": "Firefox", "title": "Docs - worklens"}),
    ]
    afk = [
        ev(0, 1500, {"status": "not-afk"}),
        ev(1500, 1200, {"status": "afk"}),
        ev(2702, 898, {"status": "not-afk"}),
    ]
    web = [
        ev(603, 300, {"url": YT, "title": "YouTube - Music", "audible": True}),
        ev(1600, 400, {"url": YT, "title": "Music 2", "audible": True}),  # Firefox not focused
        ev(2650, 100, {"url": DOCS, "title": "Docs - worklens", "audible": True}),
    ]
    return MemorySource(
        {"aw-watcher-window_laptop": window, "aw-watcher-afk_laptop": afk,
         "aw-watcher-web-firefox": web},
        hostnames={"aw-watcher-web-firefox": "unknown"},
    )


def _pairs(events: list[dict[str, Any]], key: str) -> list[tuple[Any, float]]:
    return [(e["data"][key], e["duration"]) for e in events]


def test_webui_activity_query() -> None:
    source = activity_source()
    [result] = run_query(WEBUI_QUERY, [DAY], source)
    w = result["window"]
    # Active time: [0, 1500] not-afk, [2650, 3600] (audible docs tab joins the
    # not-afk from 2702). vim was flooded to 603 s; Code cut at 1500 s.
    assert _pairs(w["title_events"], "title") == [
        ("Docs - worklens", 650.0), ("main.py - worklens", 603.0),
        ("report.md - Visual Studio Code", 597.0), ("YouTube - Music", 300.0)]
    assert _pairs(w["app_events"], "app") == [("Firefox", 950.0), ("vim", 603.0),
                                              ("Code", 597.0)]
    assert _pairs(w["cat_events"], "$category") == [
        (["Work"], 1247.0), (["Work", "Programming"], 603.0), (["Media"], 300.0)]
    assert w["duration"] == 2150.0
    assert [(e["timestamp"], e["duration"], e["data"]) for e in w["active_events"]] == [
        (at(0).isoformat(), 1500.0, {}), (at(2650).isoformat(), 950.0, {})]
    b = result["browser"]
    assert _pairs(b["urls"], "url") == [(YT, 300.0), (DOCS, 100.0)]
    assert _pairs(b["domains"], "$domain") == [("youtube.com", 300.0), ("docs.example.org", 100.0)]
    assert b["duration"] == 400.0
    assert result["stopwatch"] == {"stopwatch_events": []}
    # JSON-ready: every event is AW's JSON object.
    first = w["app_events"][0]
    assert set(first) == {"id", "timestamp", "duration", "data"}
    assert first["timestamp"] == at(2650).isoformat()
    # Each bucket was read once, although `events` is used four times.
    assert sorted(r[0] for r in source.reads) == [
        "aw-watcher-afk_laptop", "aw-watcher-web-firefox", "aw-watcher-window_laptop"]


def test_webui_query_per_period() -> None:
    # One result per time period, each cut to its period (aw-server-rust clips).
    periods = [(T0, at(1000)), (at(1000), at(3600)), (at(5000), at(6000))]
    results = run_query(WEBUI_QUERY, periods, activity_source())
    assert [r["window"]["duration"] for r in results] == [1000.0, 1150.0, 0.0]
    assert sum(r["window"]["duration"] for r in results) == 2150.0


# --- source functions --------------------------------------------------------------------


def test_find_bucket() -> None:
    # aw-core q2_find_bucket: first bucket whose id contains the string,
    # optionally on a hostname; we prefer an exact id (aw-webui issue 590).
    source = MemorySource({"aw-watcher-window_host.local": [], "aw-watcher-window_host": [],
                           "aw-watcher-afk_other": []},
                          hostnames={"aw-watcher-window_host.local": "host.local",
                                     "aw-watcher-window_host": "host",
                                     "aw-watcher-afk_other": "other"})

    def q(*args: str) -> Any:
        call = ", ".join(f'"{a}"' for a in args)
        return run_query([f"RETURN = find_bucket({call});"], [DAY], source)[0]

    assert q("aw-watcher-window_") == "aw-watcher-window_host.local"
    assert q("aw-watcher-window_host") == "aw-watcher-window_host"
    assert q("aw-watcher-window_", "host") == "aw-watcher-window_host"
    assert q("afk") == "aw-watcher-afk_other"
    with pytest.raises(QueryError, match="no bucket id contains 'afk' on hostname 'host'"):
        q("afk", "host")
    assert run_query(["RETURN = find_bucket('window', none);"], [DAY], source)[0] == (
        "aw-watcher-window_host.local")


def test_query_bucket_order_clipping_and_names() -> None:
    # Both AW servers return a bucket's events newest first; aw-server-rust
    # cuts them to the period.
    source = MemorySource({"b": [ev(-30, 60, {"n": 1}), ev(100, 10, {"n": 2}),
                                 ev(4000, 10, {"n": 3})]})
    [out] = run_query(["RETURN = query_bucket('b');"], [(T0, at(3600))], source)
    assert [(e["data"]["n"], e["timestamp"], e["duration"]) for e in out] == [
        (2, at(100).isoformat(), 10.0), (1, T0.isoformat(), 30.0)]
    assert run_query(["RETURN = query_bucket_names();"], [DAY], source) == [["b"]]
    assert run_query(["RETURN = query_bucket_eventcount('b');"], [(T0, at(3600))],
                     source) == [2]
    with pytest.raises(QueryError, match="there is no bucket named 'c'") as info:
        run_query(["x = 1;", "RETURN = query_bucket('c');"], [DAY], source)
    assert info.value.line == 2


def test_eventcount_uses_count_events_when_present() -> None:
    class Counting(MemorySource):
        def count_events(self, bucket_id: str, start: datetime, end: datetime) -> int:
            return 1234

    src = Counting({"b": [ev(0, 1)]})
    assert run_query(["RETURN = query_bucket_eventcount('b');"], [DAY], src) == [1234]
    assert src.reads == []


def test_predefined_variables() -> None:
    # aw-core: NAME, STARTTIME, ENDTIME (isoformat); aw-server-rust: TIMEINTERVAL.
    [r] = run_query(["RETURN = [NAME, STARTTIME, ENDTIME, TIMEINTERVAL];"],
                    [(T0, at(60))], MemorySource({}), name="q")
    assert r == ["q", T0.isoformat(), at(60).isoformat(), f"{T0.isoformat()}/{at(60).isoformat()}"]


def test_contains_and_conditions_on_data() -> None:
    source = MemorySource({"b": [ev(0, 10, {"app": "x"})]})
    q = ["events = query_bucket('b');",
         "if sum_durations(events) == 10 { RETURN = contains(query_bucket_names(), 'b'); }",
         "else { RETURN = false; }"]
    assert run_query(q, [DAY], source) == [True]
    assert run_query(["RETURN = [contains({'a': 1}, 'a'), contains([true], 1)];"], [DAY],
                     source) == [[True, False]]


# --- runtime errors carry the line -------------------------------------------------------


@pytest.mark.parametrize(
    ("lines", "line", "message"),
    [
        (["events = [];", "RETURN = evnts;"], 2,
         "unknown variable 'evnts' (did you mean 'events'?)"),
        # aw-core test_query2_function_invalid_types
        (["events = [];", "RETURN = filter_keyvals(events, 666, ['invalid_val']);"], 2,
         "filter_keyvals() argument 2 ('key') must be a string, got a number"),
        (["events = [];", 'RETURN = filter_keyvals(events, "2", "invalid_val");'], 2,
         "filter_keyvals() argument 3 ('vals') must be a list, got a string"),
        # aw-core's FIXME: a bare [] as first argument used to drop the next one
        (['RETURN = filter_keyvals([], "2", "invalid_val");'], 1, "argument 3 ('vals')"),
        (["x = 5;", "RETURN = flood(x);"], 2,
         "flood() argument 1 ('events') must be a list of events, got a number"),
        (["RETURN = flood([1, 2]);"], 1,
         "must be a list of events, got a list containing a number"),
        (["RETURN = merge_events_by_keys([], ['a', 1]);"], 1,
         "argument 2 ('keys') must be a list of strings"),
        (["RETURN = limit_events([], 1.5);"], 1, "must be a non-negative integer"),
        (["RETURN = flood([], -1);"], 1, "must be a non-negative number of seconds"),
        (["x = [];", "", "RETURN = filter_keyvals_regex(x, 'k', '(');"], 3,
         "invalid regular expression '('"),
        (["RETURN = categorize([], [['Work', {'regex': 'x'}]]);"], 1,
         "the category must be a list of strings"),
        (["RETURN = categorize([], [[['W'], {'type': 'glob'}]]);"], 1, "unknown rule type 'glob'"),
        (["RETURN = tag([], [[['W'], {'regex': 'x'}]]);"], 1, "the tag must be a string"),
        (["RETURN = contains(1, 2);"], 1, "must be a list or a dict"),
        (["RETURN = 1 / 0;"], 1, "division by zero"),
        (["RETURN = 'a' + 1;"], 1, "'+' needs two numbers, two lists or two strings"),
        (["RETURN = 1 == 'a';"], 1, "cannot compare a number with a string"),
        (["if 'yes' { RETURN = 1; }"], 1, "an 'if' condition must be true or false"),
        (["a = 1;"], 1, "the query never assigns RETURN"),
        (["a = 1;", "b = 2;", "c = 3;"], 3, "the query never assigns RETURN"),
        (["RETURN = query_bucket(find_bucket('nothing'));"], 1,
         "no bucket id contains 'nothing'"),
        (["x = 1;", "RETURN = flood(query_bucket(x));"], 2,
         "argument 1 ('bucket_id') must be a string"),
    ],
)
def test_runtime_errors(lines: list[str], line: int, message: str) -> None:
    with pytest.raises(QueryError) as info:
        run_query(lines, [DAY], MemorySource({"b": []}))
    assert info.value.line == line
    assert message in info.value.message


def test_errors_inside_deferred_transforms_keep_their_line() -> None:
    # Transforms over query_bucket run late (see plan.py), when RETURN is built
    # on line 3; an error while running one still names the line of its call.
    source = MemorySource({"b": [ev(0, 1, {"x": 1})]})
    with pytest.raises(QueryError, match="query too expensive") as info:
        run_query(["e = query_bucket('b');", "f = flood(e);", "RETURN = f;"], [DAY], source,
                  limits=Limits(max_events=1))
    assert info.value.line == 2


# --- limits ------------------------------------------------------------------------------


def test_event_budget_bounds_what_the_source_materialises() -> None:
    source = MemorySource({"b": [ev(i, 1) for i in range(100)]})
    with pytest.raises(QueryError, match="handles more than 50 events") as info:
        run_query(["x = 1;", "RETURN = query_bucket('b');"], [DAY], source,
                  limits=Limits(max_events=50))
    assert info.value.line == 2
    assert source.reads[0][3] == 51  # asked for at most the budget plus one


def test_doubling_is_stopped() -> None:
    # No loops in query2, but every statement may double a value.
    lines = ["a = [1];"] + ["a = a + a;"] * 40 + ["RETURN = a;"]
    with pytest.raises(QueryError, match="too expensive"):
        run_query(lines, [DAY], MemorySource({}), limits=Limits(max_events=100_000))
    source = MemorySource({"b": [ev(0, 1)]})
    lines = ["a = query_bucket('b');"] + ["a = concat(a, a);"] * 40 + ["RETURN = a;"]
    with pytest.raises(QueryError, match="too expensive"):
        run_query(lines, [DAY], source, limits=Limits(max_events=100_000))


def test_steps_and_deadline() -> None:
    with pytest.raises(QueryError, match="evaluation steps"):
        run_query(["a = 1;"] * 500 + ["RETURN = a;"], [DAY], MemorySource({}),
                  limits=Limits(max_steps=100))
    with pytest.raises(QueryError, match="ran longer than"):
        run_query(["a = [1, 2, 3];"] * 200 + ["RETURN = a;"], [DAY], MemorySource({}),
                  limits=Limits(max_seconds=0))


def test_long_transform_chains_do_not_recurse_without_bound() -> None:
    source = MemorySource({"b": [ev(i * 10, 5, {"n": i}) for i in range(10)]})
    lines = ["a = query_bucket('b');"] + ["a = sort_by_timestamp(a);"] * 2000 + ["RETURN = a;"]
    [out] = run_query(lines, [DAY], source)
    assert len(out) == 10


# --- time periods ------------------------------------------------------------------------


def test_parse_timeperiod() -> None:
    cet = "2024-03-04T00:00:00+01:00/2024-03-05T00:00:00+01:00"
    start, end = parse_timeperiod(cet)
    assert start == datetime(2024, 3, 3, 23, tzinfo=UTC) and end - start == timedelta(days=1)
    assert parse_timeperiod("2024-03-04T09:00:00Z/2024-03-04T10:00:00Z")[0] == T0
    assert parse_timeperiod("2024-03-04T09:00:00/2024-03-04T10:00:00")[0] == T0  # naive = UTC
    assert parse_timeperiod("2024-03-04/2024-03-05")[1] == datetime(2024, 3, 5, tzinfo=UTC)
    for bad in ("2024-03-04", "a/b", "2024-03-05/2024-03-04", "1/2/3"):
        with pytest.raises(QueryError) as info:
            parse_timeperiod(bad)
        assert info.value.line is None
    with pytest.raises(QueryError, match="timezone-aware"):
        run_query(["RETURN = 1;"], [(datetime(2024, 1, 1), datetime(2024, 1, 2))],
                  MemorySource({}))


# --- the rollup hook ---------------------------------------------------------------------

TIME_PER_APP = [
    'events = flood(query_bucket(find_bucket("aw-watcher-window_")));',
    'not_afk = flood(query_bucket(find_bucket("aw-watcher-afk_")));',
    'not_afk = filter_keyvals(not_afk, "status", ["not-afk"]);',
    "events = filter_period_intersect(events, not_afk);",
    'RETURN = sort_by_duration(merge_events_by_keys(events, ["app"]));',
]


class HookSource(MemorySource):
    """Records every plan offered; answers the canonical pattern if told to."""

    def __init__(self, answer: bool) -> None:
        base = activity_source()
        super().__init__(base.data, base.hostnames)
        self.answer = answer
        self.offered: list[Any] = []

    def answer_plan(self, plan: Plan) -> list[Event] | float | None:
        self.offered.append(describe(plan))
        pattern = match_time_per_keys(plan)
        if self.answer and pattern is not None:
            return [Event(pattern.start, 42.0, {"app": "from-rollups"})]
        return None


def test_hook_answers_the_canonical_pipeline_without_reading_events() -> None:
    source = HookSource(answer=True)
    [out] = run_query(TIME_PER_APP, [DAY], source)
    assert out == [{"id": None, "timestamp": DAY[0].isoformat(), "duration": 42.0,
                    "data": {"app": "from-rollups"}}]
    assert source.reads == []
    assert source.offered == [(
        "sort_by_duration",
        ("merge_events_by_keys",
         ("filter_period_intersect",
          ("flood", ("query_bucket", "aw-watcher-window_laptop")),
          ("filter_keyvals", ("flood", ("query_bucket", "aw-watcher-afk_laptop")),
           "status", ["not-afk"])),
         ["app"]),
    )]


def test_hook_returning_none_falls_back_to_the_generic_path() -> None:
    answered = run_query(TIME_PER_APP, [DAY], HookSource(answer=False))
    generic = run_query(TIME_PER_APP, [DAY], activity_source())
    assert answered == generic
    # Generic: vim 600 + 3 flooded, Code cut at 1500 (afk), Firefox 300 + the
    # docs tab from 2702 (the afk event was flooded over the 2 s gap) to 3300.
    assert [(e["data"]["app"], e["duration"]) for e in generic[0]] == [
        ("Firefox", 898.0), ("vim", 603.0), ("Code", 597.0)]
    source = HookSource(answer=False)
    run_query(TIME_PER_APP, [DAY], source)
    # Offered top-down, every node once, down to the bucket reads.
    heads = [d[0] if isinstance(d, tuple) else d for d in source.offered]
    assert heads == ["sort_by_duration", "merge_events_by_keys", "filter_period_intersect",
                     "flood", "query_bucket", "filter_keyvals", "flood", "query_bucket"]
    assert len(source.reads) == 2


def test_match_time_per_keys() -> None:
    seen: list[Any] = []

    class Capture(MemorySource):
        def answer_plan(self, plan: Plan) -> list[Event] | float | None:
            seen.append(match_time_per_keys(plan))
            return None

    base = activity_source()
    run_query(TIME_PER_APP, [DAY], Capture(base.data))
    top = seen[0]
    assert top is not None
    assert (top.window_bucket, top.afk_bucket, top.keys) == (
        "aw-watcher-window_laptop", "aw-watcher-afk_laptop", ("app",))
    assert (top.window_pulsetime, top.afk_pulsetime, top.sorted_by_duration) == (5.0, 5.0, True)
    assert (top.start, top.end) == DAY
    assert seen[1] is not None and not seen[1].sorted_by_duration  # the merge node
    assert all(m is None for m in seen[2:])
    # a different pipeline is not mistaken for it
    seen.clear()
    q = list(TIME_PER_APP)
    q[2] = 'not_afk = filter_keyvals(not_afk, "status", ["afk"]);'
    run_query(q, [DAY], Capture(base.data))
    assert all(m is None for m in seen)


def test_hook_answer_for_a_number_plan_and_bad_answers() -> None:
    class Summer(MemorySource):
        def __init__(self, answer: Any) -> None:
            super().__init__(activity_source().data)
            self.answer = answer

        def answer_plan(self, plan: Plan) -> Any:
            return self.answer if plan.kind == "number" else None

    q = ["RETURN = sum_durations(query_bucket('aw-watcher-afk_laptop'));"]
    assert run_query(q, [DAY], Summer(12.5)) == [12.5]
    assert run_query(q, [DAY], Summer(None)) == [3598.0]
    with pytest.raises(TypeError):
        run_query(q, [DAY], Summer("12"))
