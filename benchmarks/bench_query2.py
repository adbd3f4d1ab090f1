"""query2 generic evaluation: the canonical "time per app" query over 90 days of one device.

Run by hand (pytest never collects it):

    /work/venv/bin/python benchmarks/bench_query2.py
    /work/venv/bin/python benchmarks/bench_query2.py --days 30 --repeats 3 --profile

Builds, in memory, 90 workdays of one device with the same generator as
bench_report.py (``benchlib.DeviceTimeline``: ~8 h of presence a day, afk
breaks, lognormal focus lengths, ~300 titles over ~15 apps), tuned to about
150k window events, plus the afk events (status "not-afk"/"afk", AW's names).
The source is an in-memory ``EventSource`` (events sorted by start, range by
bisect), so the figure is the interpreter and transforms, not storage.

Times ``run_query`` (parse + evaluate + JSON conversion) of the query the AW
web UI's time-per-app view boils down to:

    events  = flood(query_bucket(find_bucket("aw-watcher-window_")));
    not_afk = flood(query_bucket(find_bucket("aw-watcher-afk_")));
    not_afk = filter_keyvals(not_afk, "status", ["not-afk"]);
    events  = filter_period_intersect(events, not_afk);
    RETURN  = sort_by_duration(merge_events_by_keys(events, ["app"]));

once for one 90-day period and once for 90 one-day periods, through the
generic path (the source has no ``answer_plan``). The target for this query is
< 100 ms, to be met by a rollup-backed ``answer_plan``; this script reports
what the generic path costs.
"""

from __future__ import annotations

import argparse
import bisect
import cProfile
import pstats
import statistics
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from benchlib import DeviceTimeline

from worklens.query2 import BucketInfo, Event, run_query
from worklens.query2.events import datetime_to_us

QUERY = [
    'events = flood(query_bucket(find_bucket("aw-watcher-window_")));',
    'not_afk = flood(query_bucket(find_bucket("aw-watcher-afk_")));',
    'not_afk = filter_keyvals(not_afk, "status", ["not-afk"]);',
    "events = filter_period_intersect(events, not_afk);",
    'RETURN = sort_by_duration(merge_events_by_keys(events, ["app"]));',
]

WINDOW = "aw-watcher-window_bench-host"
AFK = "aw-watcher-afk_bench-host"


class MemorySource:
    """Events per bucket, sorted by start; a range read is a bisect plus a scan."""

    def __init__(self, buckets: dict[str, list[Event]]) -> None:
        self._events = {b: sorted(evs, key=lambda e: e.start_us) for b, evs in buckets.items()}
        self._starts = {b: [e.start_us for e in evs] for b, evs in self._events.items()}
        self._max_len = {b: max((e.duration_us for e in evs), default=0)
                         for b, evs in self._events.items()}
        self._info = {b: BucketInfo(b, hostname="bench-host") for b in buckets}

    def buckets(self) -> Mapping[str, BucketInfo]:
        return self._info

    def events(
        self, bucket_id: str, start: datetime, end: datetime, limit: int | None
    ) -> Sequence[Event]:
        s, e = datetime_to_us(start), datetime_to_us(end)
        starts = self._starts[bucket_id]
        lo = bisect.bisect_left(starts, s - self._max_len[bucket_id])
        hi = bisect.bisect_left(starts, e)
        out = [ev for ev in self._events[bucket_id][lo:hi] if ev.end_us > s]
        return out if limit is None else out[:limit]


def build(days: int, first_day: datetime) -> dict[str, list[Event]]:
    tl = DeviceTimeline(seed=7, t_ms=0, focus_median_ms=7_000)
    window: list[Event] = []
    afk: list[Event] = []
    day0_ms = int(first_day.timestamp() * 1000)
    for d in range(days):
        for wire in tl.workday(day0_ms + d * 86_400_000, stays_on=(d % 3 == 0)):
            ts = datetime.fromisoformat(wire["start"])
            if wire["kind"] == "focus":
                window.append(Event(ts, wire["duration"], wire["data"]))
            elif wire["kind"] == "afk":
                status = "not-afk" if wire["data"]["status"] == "active" else "afk"
                afk.append(Event(ts, wire["duration"], {"status": status}))
    return {WINDOW: window, AFK: afk}


def timed(fn: object, repeats: int) -> tuple[float, list[float]]:
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples), samples


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--profile", action="store_true", help="cProfile one 90-day run")
    args = ap.parse_args()

    first = datetime(2025, 1, 6, tzinfo=UTC)
    t0 = time.perf_counter()
    data = build(args.days, first)
    print(f"built {len(data[WINDOW])} window events, {len(data[AFK])} afk events "
          f"over {args.days} days in {time.perf_counter() - t0:.1f} s")
    source = MemorySource(data)
    whole = [(first, first + timedelta(days=args.days))]
    daily = [(first + timedelta(days=d), first + timedelta(days=d + 1)) for d in range(args.days)]

    result = run_query(QUERY, whole, source)[0]
    total = sum(e["duration"] for e in result)
    print(f"result: {len(result)} apps, {total / 3600:.1f} h active; top: "
          + ", ".join(f"{e['data']['app']} {e['duration'] / 3600:.1f} h" for e in result[:3]))

    med, samples = timed(lambda: run_query(QUERY, whole, source), args.repeats)
    print(f"generic path, one {args.days}-day period: median {med * 1000:.0f} ms, "
          f"best {min(samples) * 1000:.0f} ms "
          f"(runs: {', '.join(f'{s * 1000:.0f}' for s in samples)} ms)")
    med_d, samples_d = timed(lambda: run_query(QUERY, daily, source), args.repeats)
    print(f"generic path, {args.days} one-day periods: median {med_d * 1000:.0f} ms, "
          f"best {min(samples_d) * 1000:.0f} ms "
          f"(runs: {', '.join(f'{s * 1000:.0f}' for s in samples_d)} ms)")

    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        run_query(QUERY, whole, source)
        prof.disable()
        pstats.Stats(prof).sort_stats("cumulative").print_stats(18)


if __name__ == "__main__":
    main()
