"""Report latency over a big dataset: 90 days x 50 devices (~10 million events).

Run by hand (pytest never collects it):

    /work/venv/bin/python benchmarks/bench_report.py                  # SQLite, cached build
    /work/venv/bin/python benchmarks/bench_report.py --rebuild        # rebuild the cache
    /work/venv/bin/python benchmarks/bench_report.py --backend postgresql   # always builds

The dataset goes straight into the database through the server's own
``EventWriter.ingest`` (the code behind POST /api/v1/ingest, minus HTTP), one
Batch per device-day: each device wakes around 08:00 (+-1 h), is present ~8 h
with afk breaks (lunch included), focus events over ~30 apps and ~290 titles
with lognormal lengths (median 5 s, long tail), and at night either sleeps (no
events) or, for a third of the devices, stays on: one long afk event and one
long focus event until morning.

Then it times ``Rollups.refresh()`` over everything the build marked dirty, and
``time_report`` (the function behind GET /api/v1/reports/time) over 90 days:
all devices by app, by device and by title, and one device by app; "cold" is
the first call in a fresh Database/Rollups (empty payload and key caches; the
connection is opened before the clock starts; the OS page cache is dropped too
when /proc/sys/vm/drop_caches is writable, but PostgreSQL's shared_buffers stay
warm), "warm" the median of 5 more calls.

The SQLite database is cached in benchmarks/out/ (git-ignored) with a small
JSON file describing it; re-runs skip the build unless --rebuild.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib
from sqlalchemy import func, select

from worklens.protocol.messages import Batch, SystemIdentity
from worklens.server.analytics.time_report import time_report
from worklens.server.store import devices as devices_store
from worklens.server.store import migrate, orgs
from worklens.server.store.classifiers import Classifiers
from worklens.server.store.db import Database
from worklens.server.store.devices import DeviceAuth
from worklens.server.store.ingest import EventWriter
from worklens.server.store.rollups import Rollups
from worklens.server.store.schema import rollup_dirty

DAY_MS = 86_400_000


def build(url: str, n_devices: int, n_days: int, end_day: datetime) -> dict[str, Any]:
    """Fill the database; returns the metadata the report phase needs."""
    db = Database(url)
    migrate.upgrade(db)
    now_ms = int(time.time() * 1000)
    with db.write() as conn:
        org, _ = orgs.create_org(conn, "bench", now_ms)
        auths = []
        for i in range(n_devices):
            ident = SystemIdentity(
                hardware_uuid=f"hw-{i:04d}", hostname=f"pc-{i:03d}", os_user=f"user{i}"
            )
            device_id, _ = devices_store.enroll(conn, org, ident, now_ms)
            auths.append(DeviceAuth(device_id, org.id, ident.hostname, False))
    writer = EventWriter(db)
    timelines = [
        benchlib.DeviceTimeline(seed=1000 + i, t_ms=0, focus_median_ms=5_000)
        for i in range(n_devices)
    ]
    first_day_ms = int(end_day.timestamp() * 1000) - n_days * DAY_MS
    gen_s = validate_s = write_s = 0.0
    events = 0
    t_start = time.perf_counter()
    for d in range(n_days):
        day_ms = first_day_ms + d * DAY_MS
        for i, auth in enumerate(auths):
            t0 = time.perf_counter()
            evs = timelines[i].workday(day_ms, stays_on=i % 3 == 0)
            t1 = time.perf_counter()
            batch = Batch.model_validate(benchlib.batch(evs))
            t2 = time.perf_counter()
            res = writer.ingest(auth, batch, now_ms)
            t3 = time.perf_counter()
            assert res.accepted == len(evs), res
            gen_s, validate_s, write_s = gen_s + t1 - t0, validate_s + t2 - t1, write_s + t3 - t2
            events += len(evs)
        if d % 10 == 9 or d == n_days - 1:
            el = time.perf_counter() - t_start
            print(
                f"  day {d + 1}/{n_days}: {events:,} events, {el:.0f}s "
                f"(generate {gen_s:.0f}s, validate {validate_s:.0f}s,"
                f" EventWriter.ingest {write_s:.0f}s"
                f" = {events / write_s:,.0f} events/s)",
                flush=True,
            )
    build_s = time.perf_counter() - t_start
    with db.read() as conn:
        pending = conn.execute(select(func.count()).select_from(rollup_dirty)).scalar_one()
    db.dispose()
    return {
        "code": benchlib.git_state(),
        "url": url,
        "org_id": org.id,
        "device_ids": [a.id for a in auths],
        "devices": n_devices,
        "days": n_days,
        "start_ms": first_day_ms,
        "end_ms": int(end_day.timestamp() * 1000),
        "events_sent": events,
        "build_s": build_s,
        "generate_s": gen_s,
        "validate_s": validate_s,
        "write_s": write_s,
        "dirty_hours": pending,
    }


def refresh(url: str) -> float:
    db = Database(url)
    t = time.perf_counter()
    n = Rollups(db).refresh()
    dt = time.perf_counter() - t
    db.dispose()
    print(f"  Rollups.refresh(): {n:,} dirty hours in {dt:.1f}s")
    return dt


def rule_change(url: str, meta: dict[str, Any]) -> None:
    """A change of the organization's rules: the category report right after it
    (out-of-date category rows, so payload rows are classified per report), the
    background rebuild of the category rows, the report after it; then the
    rules are put back (and rebuilt again) so the cached database is unchanged."""
    from worklens.categories import load_default_ruleset
    from worklens.server.store import category_rules
    from worklens.server.store.schema import category_rules as rules_table

    end = meta["end_ms"]
    span = (end - 90 * DAY_MS, end)
    data = load_default_ruleset().to_data()
    data["categories"].append(
        {"path": ["Work", "Secrets"], "rule": {"type": "regex", "regex": "kdbx", "keys": ["title"]}}
    )
    db = Database(url)
    rollups = Rollups(db)
    try:
        with db.write() as conn:
            category_rules.set_org_rules(conn, meta["org_id"], data, int(time.time() * 1000))
        for label in ("before the rebuild", "before the rebuild, again"):
            t = time.perf_counter()
            time_report(db, rollups, meta["org_id"], "category", *span)
            print(f"  category report {label}: {(time.perf_counter() - t) * 1000:.1f} ms")
        t = time.perf_counter()
        n = rollups.rebuild_categories()
        print(f"  Rollups.rebuild_categories(): {n:,} rows in {time.perf_counter() - t:.1f}s")
        t = time.perf_counter()
        rows = time_report(db, rollups, meta["org_id"], "category", *span)
        print(
            f"  category report after it: {(time.perf_counter() - t) * 1000:.1f} ms"
            f" ({', '.join(f'{r.key} {r.seconds / 3600:,.0f} h' for r in rows[:3])})"
        )
    finally:
        with db.write() as conn:
            conn.execute(rules_table.delete().where(rules_table.c.org_id == meta["org_id"]))
        rollups.rebuild_categories()
        db.dispose()


def drop_os_cache() -> bool:
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def time_reports(url: str, meta: dict[str, Any], repeats: int) -> list[dict[str, Any]]:
    end = meta["end_ms"]
    aligned = (end - 90 * DAY_MS, end)
    # "The last 90 days" asked at 15:37:12: partial hours at both edges come from raw events.
    ragged_end = end - DAY_MS + (15 * 3600 + 37 * 60 + 12) * 1000
    ragged = (ragged_end - 90 * DAY_MS, ragged_end)
    one = meta["device_ids"][0]
    cases = [
        ("90 d, all devices, by app", "app", aligned, None),
        ("90 d, all devices, by app, ragged edges", "app", ragged, None),
        ("90 d, all devices, by device", "device", aligned, None),
        ("90 d, all devices, by title", "title", aligned, None),
        ("90 d, all devices, by category", "category", aligned, None),
        ("90 d, all devices, by category, ragged edges", "category", ragged, None),
        ("90 d, all devices, by productivity", "productivity", aligned, None),
        ("90 d, one device, by app", "app", aligned, one),
        ("90 d, one device, by app, ragged edges", "app", ragged, one),
    ]
    out = []
    for name, group_by, (a, b), device in cases:
        dropped = drop_os_cache()
        db = Database(url)
        rollups = Rollups(db)
        classifiers = Classifiers()  # fresh: the cold call classifies every payload
        with db.read() as conn:  # connect first: "cold" is about caches, not the TCP/auth handshake
            conn.exec_driver_sql("SELECT 1")
        t = time.perf_counter()
        rows = time_report(
            db, rollups, meta["org_id"], group_by, a, b, device, classifiers=classifiers
        )
        cold = time.perf_counter() - t
        warm = []
        for _ in range(repeats):
            t = time.perf_counter()
            again = time_report(
                db, rollups, meta["org_id"], group_by, a, b, device, classifiers=classifiers
            )
            warm.append(time.perf_counter() - t)
        db.dispose()
        assert again == rows
        total_h = sum(r.seconds for r in rows) / 3600
        r = {
            "case": name,
            "cold_ms": cold * 1000,
            "warm_ms": statistics.median(warm) * 1000,
            "rows": len(rows),
            "hours": total_h,
            "os_cache_dropped": dropped,
        }
        print(
            f"  {name:<42} cold {r['cold_ms']:8.1f} ms{'*' if dropped else ' '}"
            f"  warm {r['warm_ms']:8.1f} ms"
            f"  ({len(rows)} rows, {total_h:,.0f} active h; top: {rows[0].key if rows else '-'})",
            flush=True,
        )
        out.append(r)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    ap.add_argument("--devices", type=int, default=50)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--rebuild", action="store_true", help="SQLite: rebuild the cached database")
    ap.add_argument("--repeats", type=int, default=5, help="warm calls per report (median)")
    ap.add_argument("--pg-fast", action="store_true", help="PostgreSQL with fsync=off")
    ap.add_argument(
        "--rule-change",
        action="store_true",
        help="also time a change of category rules: reports before and after the rebuild",
    )
    ap.add_argument(
        "--compact",
        action="store_true",
        help="pack every day's raw events into chunks first (as the server does after 2 days)",
    )
    args = ap.parse_args()
    # The dataset ends at the last UTC midnight of a fixed date, so cached builds compare.
    end_day = datetime(2026, 11, 1, tzinfo=UTC)
    assert end_day < datetime.now(UTC) - timedelta(minutes=5)
    print(f"code: {benchlib.git_state()}; machine: {benchlib.machine()}")
    pg: benchlib.PgServer | None = None
    try:
        if args.backend == "sqlite":
            benchlib.OUT.mkdir(exist_ok=True)
            path = benchlib.OUT / f"report-{args.devices}x{args.days}.db"
            meta_path = path.with_suffix(".json")
            url = f"sqlite:///{path}"
            if args.rebuild or not meta_path.exists():
                for p in path.parent.glob(path.name + "*"):
                    p.unlink()
                meta_path.unlink(missing_ok=True)
                print(f"building {path} ...", flush=True)
                meta = build(url, args.devices, args.days, end_day)
                meta["refresh_s"] = refresh(url)
                meta_path.write_text(json.dumps(meta, indent=1))
            else:
                meta = json.loads(meta_path.read_text())
                print(
                    f"using cached {path} (built in {meta['build_s']:.0f}s with code"
                    f" {meta.get('code', '?')}; --rebuild to redo)"
                )
        else:
            pg = benchlib.PgServer(durable=not args.pg_fast)
            url = pg.start()
            print("building in a throwaway PostgreSQL ...", flush=True)
            meta = build(url, args.devices, args.days, end_day)
            meta["refresh_s"] = refresh(url)
        if args.compact:
            from worklens.server.store.compaction import compact

            db = Database(url)
            t = time.perf_counter()
            done = compact(db, int(time.time() * 1000))
            db.dispose()
            print(f"compaction: {done} in {time.perf_counter() - t:.1f}s", flush=True)
        # Category rows for the rules in force (on a cached build made before
        # they existed, or after a change of rules: the background job's work).
        db = Database(url)
        t = time.perf_counter()
        cat_rows = Rollups(db).rebuild_categories()
        db.dispose()
        print(
            f"Rollups.rebuild_categories(): {cat_rows:,} category rows"
            f" in {time.perf_counter() - t:.1f}s",
            flush=True,
        )
        counts = benchlib.row_counts(
            url, ["events", "event_chunks", "event_data", "rollups", "rollup_keys", "rollup_dirty"]
        )
        total, per = benchlib.db_bytes(url)
        print(
            f"dataset: {args.devices} devices x {args.days} days = {meta['events_sent']:,} events"
            f" ({counts['events']:,} as rows, {counts['event_chunks']:,} chunks)"
            f" ({counts['event_data']:,} payloads, {counts['rollups']:,} rollup rows,"
            f" {counts['rollup_keys']:,} keys, {counts['rollup_dirty']} dirty hours left)"
        )
        print(
            f"build: {meta['build_s']:.0f}s"
            f" ({meta['events_sent'] / meta['build_s']:,.0f} events/s overall;"
            f" EventWriter.ingest alone {meta['events_sent'] / meta['write_s']:,.0f} events/s,"
            f" Batch validation {meta['events_sent'] / meta['validate_s']:,.0f} events/s);"
            f" rollup refresh of {meta['dirty_hours']:,} hours: {meta['refresh_s']:.1f}s"
        )
        tables = ", ".join(
            f"{k} {v / meta['events_sent']:.1f}"
            for k, v in sorted(benchlib.by_table(per).items(), key=lambda kv: -kv[1])
            if v / meta["events_sent"] >= 0.1
        )
        per_event = total / meta["events_sent"]
        print(f"database: {benchlib.mib(total)} = {per_event:.1f} B/event ({tables})")
        print(f"time_report ({args.backend}; * = OS page cache dropped before the cold call):")
        time_reports(url, meta, args.repeats)
        if args.rule_change:
            print("after a change of the organization's category rules:")
            rule_change(url, meta)
    finally:
        if pg is not None:
            pg.stop()


if __name__ == "__main__":
    main()
