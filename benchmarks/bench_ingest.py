"""Ingest throughput of a real server over HTTP, on SQLite and PostgreSQL.

Run by hand (pytest never collects it):

    /work/venv/bin/python benchmarks/bench_ingest.py                       # both back ends
    /work/venv/bin/python benchmarks/bench_ingest.py --backend sqlite --encoding msgpack
    /work/venv/bin/python benchmarks/bench_ingest.py --profile             # + py-spy of the server
    /work/venv/bin/python benchmarks/bench_ingest.py --compact             # + size after compaction

For each (back end, encoding) it starts a fresh database and a real server
(one uvicorn worker in a subprocess, loopback, rate limit off), enrolls
``--devices`` devices through POST /api/v1/enroll, pre-builds realistic batches
(see benchlib.DeviceTimeline: focus events over ~30 apps and ~290 titles, afk
events, host samples) in ``--clients`` client processes, then releases all
clients at once; each posts its devices' batches in order with httpx.

Prints events/s (wall clock from release to the last answer), server CPU
seconds per 100k events, the server's peak RSS (VmHWM), and the bytes the
database holds per stored event once rollups are refreshed.

Client and server share this machine's cores: the clients' CPU (printed) is CPU
the server did not get, so events/s understates what the server alone can do;
"events per server CPU-second" is the per-core figure.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib

from worklens.protocol import codec

HOUR_MS = 3_600_000


# --- client processes ------------------------------------------------------------


def build_bodies(
    devices: list[tuple[int, str]], batches: int, size: int, encoding: str, start_ms: int
) -> list[tuple[str, bytes, int]]:
    """(token, body, events) in send order: round by round over this client's devices."""
    timelines = {i: benchlib.DeviceTimeline(seed=i, t_ms=start_ms) for i, _ in devices}
    out = []
    for _ in range(batches):
        for i, token in devices:
            evs = timelines[i].events(size)
            obj = benchlib.batch(evs)
            body = codec.to_json(obj) if encoding == "json" else codec.pack(obj)
            out.append((token, body, len(evs)))
    return out


def client(
    base: str,
    devices: list[tuple[int, str]],
    batches: int,
    size: int,
    encoding: str,
    start_ms: int,
    barrier: Any,
    results: Any,
) -> None:
    try:
        _client(base, devices, batches, size, encoding, start_ms, barrier, results)
    except BaseException:
        import traceback

        results.put({"error": traceback.format_exc()})
        raise


def _client(
    base: str,
    devices: list[tuple[int, str]],
    batches: int,
    size: int,
    encoding: str,
    start_ms: int,
    barrier: Any,
    results: Any,
) -> None:
    bodies = build_bodies(devices, batches, size, encoding, start_ms)
    headers = (
        {"Content-Type": codec.JSON_TYPE}
        if encoding == "json"
        else {"Content-Type": codec.MSGPACK_TYPE, "Content-Encoding": codec.ZSTD_ENCODING}
    )
    sent = accepted = errors = retries = 0
    wire = sum(len(b) for _, b, _ in bodies)
    latencies: list[float] = []
    barrier.wait()
    c0 = time.process_time()
    t0 = time.perf_counter()
    http = httpx.Client(base_url=base, timeout=300)
    try:
        for token, body, n in bodies:
            sent += n
            # Like the agent: a 5xx or a dropped connection is retried (batch ids make
            # that harmless); each retry is counted and its first answers printed.
            for _attempt in range(4):
                t = time.perf_counter()
                try:
                    r = http.post(
                        "/api/v1/ingest",
                        content=body,
                        headers={**headers, "Authorization": f"Bearer {token}"},
                    )
                    status, text = r.status_code, r.text
                except httpx.TransportError as exc:
                    status, text = 0, repr(exc)
                    http.close()
                    http = httpx.Client(base_url=base, timeout=300)
                latencies.append(time.perf_counter() - t)
                if status == 200:
                    accepted += r.json()["accepted"]
                    break
                if status and status < 500:
                    errors += 1
                    print(f"  ! {status} {text[:300]}", file=sys.stderr)
                    break
                retries += 1
                if retries <= 3:
                    print(
                        f"  ! retrying after {status or 'transport error'}: {text[:200]}",
                        file=sys.stderr,
                    )
            else:
                errors += 1
    finally:
        http.close()
    results.put(
        {
            "sent": sent,
            "accepted": accepted,
            "errors": errors,
            "retries": retries,
            "elapsed": time.perf_counter() - t0,
            "end": time.time(),
            "cpu": time.process_time() - c0,
            "wire": wire,
            "latencies": latencies,
        }
    )


def collect(procs: list[Any], results: Any) -> list[dict[str, Any]]:
    """One result per client; fail loudly if a client dies without one."""
    import queue

    res: list[dict[str, Any]] = []
    while len(res) < len(procs):
        try:
            r = results.get(timeout=5)
        except queue.Empty:
            dead = [p for p in procs if p.exitcode not in (None, 0)]
            if dead or (all(p.exitcode is not None for p in procs) and results.empty()):
                time.sleep(1)
                if results.empty():
                    raise RuntimeError(
                        f"client(s) died: exit codes {[p.exitcode for p in procs]}"
                    ) from None
            continue
        if "error" in r:
            raise RuntimeError(f"client failed:\n{r['error']}")
        res.append(r)
    return res


# --- one run ---------------------------------------------------------------------


def prepare(url: str) -> str:
    """Migrate, create an organization; returns its enrollment secret."""
    from worklens.server.store import migrate, orgs
    from worklens.server.store.db import Database

    db = Database(url)
    try:
        migrate.upgrade(db)
        with db.write() as conn:
            _, secret = orgs.create_org(conn, "bench", int(time.time() * 1000))
    finally:
        db.dispose()
    return secret


def enroll(base: str, secret: str, n: int) -> list[tuple[int, str]]:
    out = []
    with httpx.Client(base_url=base, timeout=30) as http:
        for i in range(n):
            r = http.post(
                "/api/v1/enroll",
                json={
                    "enroll_secret": secret,
                    "hardware_uuid": str(uuid.uuid4()),
                    "hostname": f"bench-{i:03d}",
                    "os_user": f"user{i}",
                    "os": "Linux",
                },
            )
            r.raise_for_status()
            out.append((i, r.json()["token"]))
    return out


def run_one(
    args: argparse.Namespace, backend: str, encoding: str, url: str, pg: benchlib.PgServer | None
) -> dict[str, Any]:
    secret = prepare(url)
    server = benchlib.ServerProcess(
        url, rollup_interval_s=args.rollup_interval, launcher=args.launcher, workers=args.workers
    )
    spy: subprocess.Popen[bytes] | None = None
    try:
        devices = enroll(server.base, secret, args.devices)
        groups = [devices[k :: args.clients] for k in range(args.clients)]
        ctx = mp.get_context("fork")
        barrier = ctx.Barrier(args.clients + 1)
        results = ctx.Queue()
        # Device clocks start 40 days back so no event is "in the future".
        start_ms = (int(time.time() * 1000) - 40 * 24 * HOUR_MS) // HOUR_MS * HOUR_MS
        procs = [
            ctx.Process(
                target=client,
                args=(
                    server.base,
                    g,
                    args.batches,
                    args.batch_size,
                    encoding,
                    start_ms,
                    barrier,
                    results,
                ),
            )
            for g in groups
        ]
        for p in procs:
            p.start()
        t_build = time.perf_counter()
        barrier.wait(timeout=1800)
        print(f"  batches built by the clients in {time.perf_counter() - t_build:.1f}s; sending")
        if args.profile:
            out = benchlib.OUT / f"pyspy-{backend}-{encoding}.txt"
            benchlib.OUT.mkdir(exist_ok=True)
            spy = subprocess.Popen(
                [
                    str(Path(sys.executable).parent / "py-spy"),
                    "record",
                    "--pid",
                    str(server.pid),
                    "--format",
                    "raw",
                    "--rate",
                    "100",
                    "--threads",
                    "--output",
                    str(out),
                    "--nonblocking",
                    *(["--gil"] if args.profile_gil else []),
                    *(["--subprocesses"] if args.workers > 1 else []),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        cpu0 = server.cpu_seconds()
        pg0 = pg.cpu_seconds() if pg else 0.0
        t0 = time.time()
        res = collect(procs, results)
        wall = max(r["end"] for r in res) - t0
        cpu = server.cpu_seconds() - cpu0
        pg_cpu = pg.cpu_seconds() - pg0 if pg else 0.0
        for p in procs:
            p.join()
        if spy is not None:
            spy.send_signal(2)
            spy.wait(60)
        mem = server.status()
    finally:
        server.stop()

    # Bring rollups up to date (what the server's background job would do next),
    # so the size includes them; time it.
    from sqlalchemy import func, select

    from worklens.server.store.db import Database
    from worklens.server.store.rollups import Rollups
    from worklens.server.store.schema import rollup_dirty

    db = Database(url)
    with db.read() as conn:
        pending = conn.execute(select(func.count()).select_from(rollup_dirty)).scalar_one()
    t = time.perf_counter()
    Rollups(db).refresh()
    refresh_s = time.perf_counter() - t
    db.dispose()

    total, per_table = benchlib.db_bytes(url)
    counts = benchlib.row_counts(
        url, ["events", "host_samples", "event_data", "rollups", "ingest_batches"]
    )
    stored = counts["events"] + counts["host_samples"]
    compacted = compact_all(url) if args.compact else None
    accepted = sum(r["accepted"] for r in res)
    sent = sum(r["sent"] for r in res)
    lat = sorted(x for r in res for x in r["latencies"])
    return {
        "backend": backend,
        "encoding": encoding,
        "sent": sent,
        "accepted": accepted,
        "errors": sum(r["errors"] for r in res),
        "retries": sum(r["retries"] for r in res),
        "wall": wall,
        "eps": accepted / wall,
        "server_cpu": cpu,
        "eps_per_server_cpu": accepted / cpu if cpu else 0.0,
        "client_cpu": sum(r["cpu"] for r in res),
        "pg_cpu": pg_cpu,
        "wire_per_event": sum(r["wire"] for r in res) / sent,
        "p50_ms": statistics.median(lat) * 1000,
        "p95_ms": lat[int(len(lat) * 0.95)] * 1000,
        "hwm": mem.get("VmHWM", 0),
        "hwm_max": mem.get("VmHWM_max", 0),
        "rss_end": mem.get("VmRSS", 0),
        "pss_end": mem.get("Pss", 0),
        "pending_dirty": pending,
        "refresh_s": refresh_s,
        "db_bytes": total,
        "per_table": per_table,
        "counts": counts,
        "bytes_per_event": total / stored if stored else 0.0,
        "compacted": compacted,
    }


def compact_all(url: str) -> dict[str, Any]:
    """--compact: pack every day that has ended (cut-off "now"), timed, then the
    size again. Compaction frees the events table's pages all at once; a server
    that compacts as it goes reuses them for new rows (SQLite's free list,
    PostgreSQL's free space map after autovacuum), so the steady-state size is
    the one without them: the SQLite free list is left out, and PostgreSQL's
    events table is rewritten (VACUUM FULL events, that table only)."""
    import sqlalchemy

    from worklens.server.store.compaction import compact
    from worklens.server.store.db import Database

    db = Database(url)
    try:
        result = compact(db, int(time.time() * 1000))
    finally:
        db.dispose()
    raw_total, _ = benchlib.db_bytes(url)
    free = 0
    if url.startswith("sqlite"):
        import sqlite3

        conn = sqlite3.connect(benchlib.sqlite_path(url))
        try:
            pages = conn.execute("PRAGMA freelist_count").fetchone()[0]
            free = pages * conn.execute("PRAGMA page_size").fetchone()[0]
        finally:
            conn.close()
    else:
        engine = sqlalchemy.create_engine(url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(sqlalchemy.text("VACUUM FULL events"))
        finally:
            engine.dispose()
    total, per_table = benchlib.db_bytes(url)
    counts = benchlib.row_counts(url, ["events", "event_chunks"])
    return {
        "groups": result.groups,
        "events": result.events,
        "seconds": result.seconds,
        "raw_total": raw_total,
        "total": total - free,
        "free": free,
        "per_table": per_table,
        "counts": counts,
    }


def show(r: dict[str, Any], machine_cores: int) -> None:
    print(
        f"  {r['backend']:>10} {r['encoding']:>8}: {r['eps']:>9,.0f} events/s "
        f"({r['accepted']:,} accepted of {r['sent']:,} in {r['wall']:.1f}s,"
        f" {r['errors']} failed batches, {r['retries']} retries)"
    )
    print(
        f"      server CPU {r['server_cpu']:.1f}s ="
        f" {r['eps_per_server_cpu']:,.0f} events per server CPU-second;"
        f" clients CPU {r['client_cpu']:.1f}s"
        + (f"; PostgreSQL CPU {r['pg_cpu']:.1f}s" if r["pg_cpu"] else "")
        + f" (of {machine_cores} cores x {r['wall']:.1f}s)"
    )
    print(
        f"      request latency p50 {r['p50_ms']:.0f} ms, p95 {r['p95_ms']:.0f} ms;"
        f" wire {r['wire_per_event']:.1f} B/event"
    )
    each = f" (largest process {benchlib.mib(r['hwm_max'])})" if r["hwm_max"] != r["hwm"] else ""
    print(
        f"      server peak RSS (VmHWM) {benchlib.mib(r['hwm'])}{each},"
        f" RSS at end {benchlib.mib(r['rss_end'])} (PSS {benchlib.mib(r['pss_end'])})"
    )
    c = r["counts"]
    print(
        f"      stored: {c['events']:,} events + {c['host_samples']:,} host samples,"
        f" {c['event_data']:,} payloads, {c['rollups']:,} rollup rows;"
        f" dirty hours left {r['pending_dirty']:,} (refreshed in {r['refresh_s']:.1f}s)"
    )
    stored = c["events"] + c["host_samples"]
    tables = ", ".join(
        f"{k} {v / stored:.1f}"
        for k, v in sorted(benchlib.by_table(r["per_table"]).items(), key=lambda kv: -kv[1])
        if v / stored >= 0.1
    )
    print(
        f"      database {benchlib.mib(r['db_bytes'])} ="
        f" {r['bytes_per_event']:.1f} B/event ({tables})"
    )
    indexes = ", ".join(
        f"{k} {v / stored:.1f}"
        for k, v in sorted(r["per_table"].items(), key=lambda kv: -kv[1])
        if "/" in k and v / stored >= 0.5
    )
    if indexes:
        print(f"      of which secondary/unique indexes: {indexes}")
    k = r["compacted"]
    if k is not None:
        per_million = k["seconds"] / k["events"] * 1e6 if k["events"] else 0.0
        print(
            f"      compaction: {k['events']:,} events into {k['groups']:,} chunks"
            f" in {k['seconds']:.1f}s ({per_million:.1f} s per million events);"
            f" {k['counts']['events']:,} events left as rows"
        )
        tables = ", ".join(
            f"{name} {v / stored:.1f}"
            for name, v in sorted(benchlib.by_table(k["per_table"]).items(), key=lambda kv: -kv[1])
            if v / stored >= 0.1
        )
        print(
            f"      database after compaction {benchlib.mib(k['total'])} ="
            f" {k['total'] / stored:.1f} B/event ({tables});"
            f" before reclaiming the freed pages {k['raw_total'] / stored:.1f} B/event"
        )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--backend", default="sqlite,postgresql", help="sqlite,postgresql")
    ap.add_argument(
        "--encoding", default="json,msgpack", help="json,msgpack (msgpack = msgpack+zstd)"
    )
    ap.add_argument("--devices", type=int, default=50)
    ap.add_argument("--clients", type=int, default=4, help="client processes")
    ap.add_argument(
        "--workers",
        type=int,
        default=1,
        help="server processes (as `worklens server --workers N`); CPU and RSS are summed",
    )
    ap.add_argument("--batches", type=int, default=8, help="batches per device")
    ap.add_argument("--batch-size", type=int, default=1000, help="events per batch")
    ap.add_argument(
        "--rollup-interval",
        type=float,
        default=5.0,
        help="server's background rollup refresh interval (s), as in production",
    )
    ap.add_argument(
        "--dir", type=Path, default=None, help="where the SQLite file goes (default: a temp dir)"
    )
    ap.add_argument(
        "--pg-fast",
        action="store_true",
        help="PostgreSQL with fsync=off (as the tests run it), not just synchronous_commit=off",
    )
    ap.add_argument(
        "--profile",
        action="store_true",
        help="record the server with py-spy into benchmarks/out/pyspy-*.txt"
        " (summarise with benchmarks/pyspy_summary.py)",
    )
    ap.add_argument(
        "--launcher",
        type=Path,
        default=None,
        help="a Python file to run as the server instead of the built-in launcher"
        " (argv: database URL, port, rollup interval), e.g. to try a patched server",
    )
    ap.add_argument(
        "--compact",
        action="store_true",
        help="after the run, compact every ended day's raw events into chunks (timed)"
        " and measure the size again",
    )
    ap.add_argument(
        "--profile-gil",
        action="store_true",
        help="with --profile: only samples of the thread holding the GIL (CPU, no waits)",
    )
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    print(
        f"{args.devices} devices, {args.clients} client processes, {args.batches} batches x "
        f"{args.batch_size} events per device; {args.workers} server worker(s);"
        f" {cores} cores shared by clients and server"
    )
    print(f"code: {benchlib.git_state()}; machine: {benchlib.machine()}")
    results = []
    pg: benchlib.PgServer | None = None
    tmp = Path(tempfile.mkdtemp(prefix="worklens-bench-", dir=args.dir))
    try:
        for backend in args.backend.split(","):
            for encoding in args.encoding.split(","):
                if backend == "sqlite":
                    url = f"sqlite:///{tmp / f'ingest-{encoding}.db'}"
                else:
                    if pg is None:
                        pg = benchlib.PgServer(durable=not args.pg_fast)
                        base_url = pg.start()
                    name = f"ingest_{encoding}"
                    pg.admin(f"CREATE DATABASE {name} OWNER {benchlib.PG_ROLE}")
                    url = base_url.rsplit("/", 1)[0] + "/" + name
                print(f"- {backend} / {encoding} ...", flush=True)
                r = run_one(args, backend, encoding, url, pg if backend == "postgresql" else None)
                show(r, cores)
                results.append(r)
    finally:
        if pg is not None:
            pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nload average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("summary (events/s | events per server CPU-s | peak RSS | bytes/event):")
    for r in results:
        stored = r["counts"]["events"] + r["counts"]["host_samples"]
        print(
            f"  {r['backend']:>10} {r['encoding']:>8}  {r['eps']:>9,.0f} |"
            f" {r['eps_per_server_cpu']:>9,.0f} |"
            f" {r['hwm'] / 2**20:6.1f} MiB | {r['bytes_per_event']:5.1f} B"
            + (f" -> {r['compacted']['total'] / stored:5.1f} B compacted" if r["compacted"] else "")
        )


if __name__ == "__main__":
    main()
