"""POST /api/0/query/ "time per app" over 90 days of one device, through the HTTP API.

Run by hand (pytest never collects it):

    /work/venv/bin/python benchmarks/bench_aw_query.py              # bench_report.py's data
    /work/venv/bin/python benchmarks/bench_aw_query.py --fresh      # copy it again
    /work/venv/bin/python benchmarks/bench_aw_query.py --generic 0  # skip the slow generic path

The data is bench_report.py's cached SQLite database (benchmarks/out/report-50x90.db:
50 devices x 90 days, ~10 M events, the older days compacted or not as it was left).
It is copied (SQLite's backup API) to benchmarks/out/aw-query.db and migrated there,
so the cached original is never changed; an admin token is added to the copy.
Without the original, a 1-device x 90-day dataset is built with bench_report.build.

The server is ``create_app`` in-process behind Starlette's TestClient (real
routing, auth, JSON; no socket), background jobs off. The query is the AW web
UI's time-per-app pipeline over the first device's window and afk buckets:

    events  = flood(query_bucket("worklens-focus_pc-000"));
    not_afk = flood(query_bucket("worklens-afk_pc-000"));
    not_afk = filter_keyvals(not_afk, "status", ["not-afk"]);
    events  = filter_period_intersect(events, not_afk);
    RETURN  = sort_by_duration(merge_events_by_keys(events, ["app"]));

for the 90 days ending at the dataset's end (midnight) and for "the last 90
days" asked at 15:37:12 (partial hours at both edges come from raw events).
"first" is the first request after the app started (empty caches); "warm" the
median of --repeats more. Then the same requests through the generic path (the
rollup hook switched off), and whether both give the same seconds per app.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_report
import benchlib
from fastapi.testclient import TestClient

from worklens.server.app import create_app
from worklens.server.aw.source import OrgSource
from worklens.server.settings import ServerSettings
from worklens.server.store import migrate, orgs
from worklens.server.store.db import Database
from worklens.server.store.schema import orgs as orgs_table

DAY_MS = 86_400_000
ORIGINAL = benchlib.OUT / "report-50x90.db"
COPY = benchlib.OUT / "aw-query.db"


def prepare(fresh: bool) -> dict[str, Any]:
    """The copy to query, migrated, with an admin token; returns its metadata."""
    meta_path = COPY.with_suffix(".json")
    if not fresh and meta_path.exists():
        return dict(json.loads(meta_path.read_text()))
    for p in COPY.parent.glob(COPY.name + "*"):
        p.unlink()
    if ORIGINAL.exists():
        meta = json.loads(ORIGINAL.with_suffix(".json").read_text())
        print(f"copying {ORIGINAL} ({benchlib.mib(ORIGINAL.stat().st_size)}) ...", flush=True)
        src = sqlite3.connect(f"file:{ORIGINAL}?mode=ro", uri=True)
        dst = sqlite3.connect(COPY)
        src.backup(dst)
        src.close()
        dst.close()
    else:
        print(f"{ORIGINAL} not found: building 1 device x 90 days into {COPY} ...", flush=True)
        end_day = datetime(2026, 11, 1, tzinfo=UTC)
        meta = bench_report.build(f"sqlite:///{COPY}", 1, 90, end_day)
        bench_report.refresh(f"sqlite:///{COPY}")
    db = Database(f"sqlite:///{COPY}")
    migrate.upgrade(db)
    with db.write() as conn:
        name = conn.execute(orgs_table.select().where(orgs_table.c.id == meta["org_id"])).one().name
        org = orgs.get_org(conn, name)
        meta["token"] = orgs.create_token(conn, org, "admin", int(time.time() * 1000), "bench")
    db.dispose()
    meta_path.write_text(json.dumps(meta, indent=1))
    return dict(meta)


def query(window: str, afk: str) -> list[str]:
    return [
        f'events = flood(query_bucket("{window}"));',
        f'not_afk = flood(query_bucket("{afk}"));',
        'not_afk = filter_keyvals(not_afk, "status", ["not-afk"]);',
        "events = filter_period_intersect(events, not_afk);",
        'RETURN = sort_by_duration(merge_events_by_keys(events, ["app"]));',
    ]


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--fresh", action="store_true", help="copy the original database again")
    ap.add_argument("--repeats", type=int, default=9, help="warm requests (median)")
    ap.add_argument("--generic", type=int, default=2, help="generic-path requests per case")
    args = ap.parse_args()
    print(f"code: {benchlib.git_state()}; machine: {benchlib.machine()}")
    benchlib.OUT.mkdir(exist_ok=True)
    meta = prepare(args.fresh)
    end = meta["end_ms"]
    ragged_end = end - DAY_MS + (15 * 3600 + 37 * 60 + 12) * 1000
    cases = [
        ("90 d, day boundaries", (end - 90 * DAY_MS, end)),
        ("90 d, ragged edges (15:37:12)", (ragged_end - 90 * DAY_MS, ragged_end)),
    ]
    settings = ServerSettings(
        database_url=f"sqlite:///{COPY}",
        rate_per_second=1e6,
        rate_burst=1_000_000,
        rollup_interval_s=1e9,  # no background work while timing
        compact_interval_s=1e9,
    )
    app = create_app(settings)
    headers = {"Authorization": f"Bearer {meta['token']}"}
    with TestClient(app) as client:
        host = "pc-000"  # bench_report's first device
        q = query(f"worklens-focus_{host}", f"worklens-afk_{host}")

        def post(a: int, b: int) -> tuple[float, list[dict[str, Any]]]:
            body = {"timeperiods": [f"{iso(a)}/{iso(b)}"], "query": q}
            t = time.perf_counter()
            r = client.post("/api/0/query/", json=body, headers=headers)
            dt = time.perf_counter() - t
            assert r.status_code == 200, r.text
            return dt, r.json()[0]

        answers: dict[str, list[dict[str, Any]]] = {}
        dropped = bench_report.drop_os_cache()
        print("rollup hook (POST /api/0/query/; * = OS page cache dropped before the first):")
        for name, (a, b) in cases:
            first, answers[name] = post(a, b)
            dropped = False
            warm = statistics.median(post(a, b)[0] for _ in range(args.repeats))
            hours = sum(e["duration"] for e in answers[name]) / 3600
            print(
                f"  {name:<32} first {first * 1000:7.1f} ms{'*' if dropped else ' '}"
                f"  warm {warm * 1000:7.1f} ms"
                f"  ({len(answers[name])} apps, {hours:,.1f} active h)",
                flush=True,
            )
        n_events = sum(
            client.get(f"/api/0/buckets/{b}/events/count", headers=headers).json()
            for b in (f"worklens-focus_{host}", f"worklens-afk_{host}")
        )
        print(f"  (device {host}: {n_events:,} window + afk events over {meta['days']} days)")
        if args.generic:
            print("generic path (hook off):")
            hook = OrgSource.answer_plan
            OrgSource.answer_plan = None  # type: ignore[assignment,method-assign]
            try:
                for name, (a, b) in cases:
                    runs = [post(a, b) for _ in range(args.generic)]
                    got = {e["data"]["app"]: e["duration"] for e in runs[0][1]}
                    want = {e["data"]["app"]: e["duration"] for e in answers[name]}
                    diff = max(abs(got.get(k, 0) - want.get(k, 0)) for k in got.keys() | want)
                    print(
                        f"  {name:<32} {statistics.median(r[0] for r in runs) * 1000:9.1f} ms"
                        f"  (same seconds per app as the hook: "
                        f"{'yes' if diff == 0 else f'no, max difference {diff:.3f} s'})",
                        flush=True,
                    )
            finally:
                OrgSource.answer_plan = hook  # type: ignore[method-assign]


if __name__ == "__main__":
    main()
