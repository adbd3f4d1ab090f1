"""CPU cost per event of the protocol layer the server runs for every batch:
decode (JSON, or zstd + msgpack) and ``Batch.model_validate``. In-process, no
HTTP, no database; prints microseconds per event (best of --repeat runs).

    /work/venv/bin/python benchmarks/bench_protocol.py [--events 1000] [--repeat 20]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib

from worklens.protocol import codec
from worklens.protocol.messages import Batch


def best(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()
    tl = benchlib.DeviceTimeline(seed=7, t_ms=1_750_000_000_000)
    obj = benchlib.batch(tl.events(args.events))
    n = len(obj["events"])
    js = codec.to_json(obj)
    mp = codec.pack(obj)
    decoded = codec.from_json(js)
    cases: list[tuple[str, Callable[[], Any]]] = [
        ("decode JSON", lambda: codec.decode_body(js, codec.JSON_TYPE, None)),
        ("decode zstd + msgpack", lambda: codec.decode_body(mp, codec.MSGPACK_TYPE, "zstd")),
        ("Batch.model_validate", lambda: Batch.model_validate(decoded)),
        ("Batch.model_validate_json (JSON body)", lambda: Batch.model_validate_json(js)),
    ]
    print(
        f"{n} events per batch; wire: JSON {len(js) / n:.1f} B/event,"
        f" msgpack+zstd {len(mp) / n:.1f} B/event"
    )
    for name, fn in cases:
        dt = best(fn, args.repeat)
        print(f"  {name:<40} {dt / n * 1e6:6.2f} us/event  ({n / dt:>10,.0f} events/s on one core)")


if __name__ == "__main__":
    main()
