"""Agent footprint: RSS and CPU of a real agent on a real X display over N minutes.

Starts Xvfb + openbox (the test suite's helper), a real server on SQLite, and
the agent with its default intervals (focus/idle every 1 s, host every 30 s).
A driver switches focus between two windows every 10 s and moves the pointer,
so the agent does the work a person's day gives it.

    python benchmarks/bench_agent.py --seconds 300             # first run: enrolls, then runs
    python benchmarks/bench_agent.py --seconds 300 --enrolled  # a restarted agent
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.e2e.harness import AgentProcess, ServerProcess, prepare_org
from tests.xserver import XServer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=300)
    ap.add_argument(
        "--enrolled", action="store_true", help="measure a restarted, already enrolled agent"
    )
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="wl-bench-agent-"))
    x = XServer(work)
    db_url = f"sqlite:///{work / 'server.db'}"
    secret, _ = prepare_org(db_url)
    server = ServerProcess(db_url, work / "server.log")
    server.start()
    windows = [
        x.open_window("main.py — Editor", ("editor", "Editor")),
        x.open_window("Docs", ("browser", "Browser")),
    ]
    agent = AgentProcess(server.url, secret, work / "agent", work / "agent.log", env=x.env)
    if args.enrolled:
        # Enroll in a first run, then measure a restarted agent: the steady state
        # of a fleet, where enrollment (and its HTTP client) happened long ago.
        agent.start()
        while not (work / "agent" / "token.json").exists():
            time.sleep(0.2)
        agent.kill()
    agent.start()
    assert agent.proc is not None
    proc = psutil.Process(agent.proc.pid)
    try:
        time.sleep(5)  # start-up and enrollment are not the steady state
        cpu0 = proc.cpu_times()
        t0 = time.monotonic()
        rss: list[int] = []
        switch = 0
        while time.monotonic() - t0 < args.seconds:
            x.focus(windows[switch % 2])
            switch += 1
            for _ in range(10):
                x.input()
                rss.append(proc.memory_info().rss)
                time.sleep(1)
        cpu1 = proc.cpu_times()
        wall = time.monotonic() - t0
        used = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
        print(f"agent over {wall:.0f} s with {switch} focus switches:")
        print(f"  CPU: {100 * used / wall:.2f} % of one core ({used:.2f} s CPU)")
        mib = 2**20
        median, peak = statistics.median(rss) / mib, max(rss) / mib
        print(f"  RSS: median {median:.1f} MiB, peak {peak:.1f} MiB")
        print(f"  threads: {proc.num_threads()}")
    finally:
        agent.kill()
        server.stop()
        for w in windows:
            w.close()
        x.stop()


if __name__ == "__main__":
    main()
