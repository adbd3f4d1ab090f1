"""Live hub latency: event in -> visible on an open dashboard, in a real browser.

A `worklens server` process (one, or several with --workers: the changes then
cross processes through the database), Debian's Chromium (Playwright) logged
in on the fleet page, and a device posting focus events over HTTP. For each
event the clock starts just before the POST and stops when the page's
MutationObserver sees the new app in the device's "now" badge, and again at the
next animation frame (painted). Both clocks are this machine's wall clock.

    /work/venv/bin/python benchmarks/bench_live.py --events 100
    /work/venv/bin/python benchmarks/bench_live.py --events 100 --workers 2
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib
import httpx
from tests.browser import chromium_context
from tests.e2e.harness import ServerProcess, prepare_org
from tests.e2e.test_browser_live import PASSWORD, log_in

from worklens.server.store import orgs, users
from worklens.server.store.db import Database

WATCH = """() => {
  window.__seen = {}; window.__painted = {};
  const note = () => {
    for (const el of document.querySelectorAll('span.now[data-app]')) {
      const app = el.dataset.app;
      if (app && !(app in window.__seen)) {
        window.__seen[app] = Date.now();
        requestAnimationFrame(() => { window.__painted[app] = Date.now(); });
      }
    }
  };
  new MutationObserver(note).observe(document.body,
    {subtree: true, childList: true, attributes: true, characterData: true});
}"""


def event(app: str) -> dict[str, object]:
    return {
        "id": str(uuid.uuid4()),
        "kind": "focus",
        "start": datetime.now(UTC).isoformat(),
        "duration": 0.5,
        "data": {"app": app, "title": f"{app} window"},
    }


def batch(*events: dict[str, object]) -> dict[str, object]:
    return {"v": 1, "batch_id": str(uuid.uuid4()), "events": list(events)}


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--events", type=int, default=100)
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()
    print(f"code: {benchlib.git_state()}; machine: {benchlib.machine()}")
    tmp = Path(tempfile.mkdtemp(prefix="bench-live-"))
    db_url = f"sqlite:///{tmp / 'server.db'}"
    secret, _ = prepare_org(db_url)
    db = Database(db_url)
    with db.write() as conn:
        org = orgs.get_org(conn, "acme")
        users.create_user(conn, org.id, "lead@acme.test", PASSWORD, "admin", 0)
    db.dispose()
    server = ServerProcess(db_url, tmp / "server.log", workers=args.workers)
    server.start()
    url = server.url
    try:
        r = httpx.post(
            f"{url}/api/v1/enroll",
            json={"enroll_secret": secret, "hardware_uuid": "bench", "hostname": "bench-pc"},
        )
        token = r.json()["token"]
        auth = {"Authorization": f"Bearer {token}"}
        client = httpx.Client(base_url=url, headers=auth, timeout=10)
        client.post("/api/v1/ingest", json=batch(event("warm-up"))).raise_for_status()
        dom: list[float] = []
        painted: list[float] = []
        with chromium_context(tmp / "profile") as ctx:
            page = ctx.new_page()
            log_in(page, url, "lead@acme.test")
            page.locator("span.now[data-app='warm-up']").wait_for()
            time.sleep(1.0)  # the page's socket is open
            page.evaluate(WATCH)
            for i in range(args.events):
                app = f"app-{i}"
                t0 = time.time() * 1000
                client.post("/api/v1/ingest", json=batch(event(app))).raise_for_status()
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    got = page.evaluate(f"[window.__seen['{app}'], window.__painted['{app}']]")
                    if got[1] is not None:
                        dom.append(got[0] - t0)
                        painted.append(got[1] - t0)
                        break
                    time.sleep(0.002)
                else:
                    raise RuntimeError(f"{app} never showed on the page")
                time.sleep(random.uniform(0.2, 0.5))
    finally:
        server.stop()
    print(
        f"workers {args.workers} ({'local' if args.workers == 1 else 'db'} bus), {len(dom)} events:"
    )
    for name, values in (("in the DOM", dom), ("painted", painted)):
        print(
            f"  {name:<11} p50 {pct(values, 50):6.1f} ms  p95 {pct(values, 95):6.1f} ms"
            f"  max {max(values):6.1f} ms  mean {statistics.mean(values):6.1f} ms"
        )


if __name__ == "__main__":
    main()
