"""Measure the agent spool: put() throughput, put_many() throughput, drain speed,
and on-disk bytes per queued focus event. Prints figures; run by hand:

    /work/venv/bin/python benchmarks/bench_spool.py [--dir DIR] [--events N]

DIR should be on the disk the agent will use (fsync cost is what matters).
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgpack

from worklens.agent.spool import Spool
from worklens.protocol.codec import to_json
from worklens.protocol.messages import FocusData, FocusEvent


def focus_payload() -> tuple[str, dict[str, Any]]:
    ev = FocusEvent(
        id=uuid.uuid4(),
        start=datetime.now(UTC),
        duration=37.5,
        data=FocusData(app="code", title="spool.py - worklens - Visual Studio Code"),
    )
    return str(ev.id), ev.model_dump(mode="json")


def disk_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", type=Path, default=None)
    ap.add_argument("--singles", type=int, default=2000, help="single put() calls")
    ap.add_argument("--events", type=int, default=100_000, help="events for put_many/size")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)

        _, sample = focus_payload()
        print(f"sample event: {to_json(sample).decode()}")
        print(f"payload: {len(msgpack.packb(sample))} B msgpack, {len(to_json(sample))} B JSON")

        path = root / "single" / "spool.db"
        events = [focus_payload() for _ in range(args.singles)]
        with Spool(path) as sp:
            t0 = time.perf_counter()
            for k, p in events:
                sp.put(k, p)
            dt = time.perf_counter() - t0
        print(
            f"put():          {args.singles / dt:10.0f} events/s "
            f"({dt / args.singles * 1e3:.2f} ms each, one fsync'ed transaction per call)"
        )

        path = root / "batch" / "spool.db"
        events = [focus_payload() for _ in range(args.events)]
        with Spool(path) as sp:
            t0 = time.perf_counter()
            for i in range(0, len(events), 500):
                sp.put_many(events[i : i + 500])
            dt = time.perf_counter() - t0
            print(f"put_many(500):  {args.events / dt:10.0f} events/s")
            held = disk_bytes(path)
        after_close = disk_bytes(path)
        print(
            f"on disk:        {after_close / args.events:10.1f} B/event after close "
            f"({after_close / 1e6:.1f} MB for {args.events}); "
            f"{held / args.events:.1f} B/event while open (WAL included)"
        )

        with Spool(path) as sp:
            t0 = time.perf_counter()
            n = 0
            while items := sp.lease(500):
                n += sp.ack(items)
            dt = time.perf_counter() - t0
            print(f"drain lease(500)+ack: {n / dt:10.0f} events/s ({n} events)")
        print(f"on disk after drain: {disk_bytes(path) / 1e6:.2f} MB")

        # Heartbeat merge: the same key re-put (a growing focus event).
        path = root / "merge" / "spool.db"
        with Spool(path) as sp:
            k, p = focus_payload()
            t0 = time.perf_counter()
            for i in range(1000):
                p = dict(p, duration=float(i))
                sp.put(k, p)
            dt = time.perf_counter() - t0
        print(f"re-put same key: {1000 / dt:10.0f} puts/s")


if __name__ == "__main__":
    main()
