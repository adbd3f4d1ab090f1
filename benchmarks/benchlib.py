"""Shared helpers for the hand-run benchmarks (never collected by pytest).

* ``PgServer``: a throwaway PostgreSQL cluster (initdb + pg_ctl) on loopback, run
  as the ``postgres`` system user when we are root. Same recipe as tests/pg.py,
  without pytest.
* ``Workload``: realistic activity for one simulated device: focus events with a
  Zipf mix of ~30 apps and a few hundred titles, lognormal durations, afk
  events alternating active/afk, host health samples.
* ``ServerProcess``: a real uvicorn server in a subprocess, with its peak RSS.
"""

from __future__ import annotations

import math
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"

# --- PostgreSQL ----------------------------------------------------------------

# The throwaway cluster is the test suite's own (tests/pg.py).
sys.path.insert(0, str(HERE.parent))
from tests.pg import ROLE, PgCluster, PgUnavailable, find_pg_bindir  # noqa: E402

PG_ROLE = ROLE  # the role that owns databases in the cluster


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgServer:
    """A private, durable PostgreSQL cluster: the test suite's ``PgCluster`` with
    fsync and full page writes on (see its docstring)."""

    def __init__(self, durable: bool = True, extra_conf: str = "") -> None:
        bindir = find_pg_bindir()
        if bindir is None:
            raise SystemExit("PostgreSQL not installed: apt-get install postgresql")
        try:
            self.cluster = PgCluster(bindir, durable=durable, extra_conf=extra_conf)
        except PgUnavailable as exc:
            raise SystemExit(str(exc)) from None

    def start(self) -> str:
        """initdb, start, create the role and database; returns the SQLAlchemy URL."""
        self.cluster.init()
        self.cluster.start()
        return self.cluster.create_app_database()

    def admin(self, *statements: str) -> None:
        self.cluster.admin(*statements)

    def cpu_seconds(self) -> float:
        """CPU time of the postmaster and all its live children (backends, walwriter...)."""
        import psutil

        pid = int((self.cluster.data / "postmaster.pid").read_text().split()[0])
        root = psutil.Process(pid)
        total = 0.0
        for p in [root, *root.children(recursive=True)]:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.NoSuchProcess:
                pass
        return total

    def stop(self) -> None:
        try:
            self.cluster.stop()
        finally:
            self.cluster.remove()


# --- database sizes --------------------------------------------------------------


def sqlite_path(url: str) -> Path:
    assert url.startswith("sqlite:///"), url
    return Path(url[len("sqlite:///") :])


def sqlite_bytes(url: str) -> tuple[int, dict[str, int]]:
    """Checkpoint the WAL, then: total bytes of db + wal + shm, and bytes per
    object from the dbstat virtual table: "table" for a table's own b-tree,
    "table/index" for each of its indexes (autoindexes of UNIQUE included)."""
    import sqlite3

    path = sqlite_path(url)
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        per: dict[str, int] = {}
        try:
            rows = conn.execute(
                "SELECT s.name, coalesce(m.tbl_name, s.name), sum(s.pgsize) FROM dbstat s "
                "LEFT JOIN sqlite_master m ON m.name = s.name GROUP BY s.name"
            ).fetchall()
            for name, table, size in rows:
                key = table if name == table else f"{table}/{name}"
                per[key] = per.get(key, 0) + int(size)
        except sqlite3.OperationalError:
            pass
    finally:
        conn.close()
    total = sum(p.stat().st_size for p in path.parent.glob(path.name + "*") if p.is_file())
    return total, per


def pg_bytes(url: str) -> tuple[int, dict[str, int]]:
    """Per table: heap + TOAST ("table") and each index ("table/index"); the
    total is the sum of pg_total_relation_size over the tables in public."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as conn:
            tables = conn.execute(
                sqlalchemy.text(
                    "SELECT c.relname, pg_table_size(c.oid), pg_total_relation_size(c.oid)"
                    " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')"
                )
            ).all()
            indexes = conn.execute(
                sqlalchemy.text(
                    "SELECT t.relname, i.relname, pg_relation_size(i.oid) FROM pg_index x "
                    "JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid "
                    "JOIN pg_namespace n ON n.oid = t.relnamespace WHERE n.nspname = 'public'"
                )
            ).all()
    finally:
        engine.dispose()
    per = {name: int(heap) for name, heap, _ in tables}
    per.update({f"{t}/{i}": int(size) for t, i, size in indexes})
    return sum(int(total) for _, _, total in tables), per


def by_table(per: dict[str, int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for key, size in per.items():
        table = key.split("/", 1)[0]
        out[table] = out.get(table, 0) + size
    return out


def db_bytes(url: str) -> tuple[int, dict[str, int]]:
    return sqlite_bytes(url) if url.startswith("sqlite") else pg_bytes(url)


def row_counts(url: str, tables: list[str]) -> dict[str, int]:
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as conn:
            return {
                t: int(conn.execute(sqlalchemy.text(f"SELECT count(*) FROM {t}")).scalar_one())
                for t in tables
            }
    finally:
        engine.dispose()


# --- the server in a subprocess ---------------------------------------------------

LAUNCHER = """
import sys, uvicorn
from worklens.server.app import create_app
from worklens.server.settings import ServerSettings
url, port, rollup_s = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
app = create_app(ServerSettings(database_url=url, rate_per_second=1e9, rate_burst=10**9,
                                rollup_interval_s=rollup_s))
uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
"""


# ``worklens server --workers N``: uvicorn's supervisor and N worker processes,
# each built by create_worker_app() from WORKLENS_* variables (already migrated).
MULTI_LAUNCHER = """
import os, sys, uvicorn
url, port, rollup_s, workers = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
os.environ.update(WORKLENS_DATABASE_URL=url, WORKLENS_RATE_PER_SECOND="1e9",
                  WORKLENS_RATE_BURST=str(10**9), WORKLENS_ROLLUP_INTERVAL_S=rollup_s,
                  WORKLENS_WORKERS=str(workers))
uvicorn.run("worklens.server.app:create_worker_app", factory=True, host="127.0.0.1",
            port=port, workers=workers, log_level="warning")
"""


class ServerProcess:
    """``python -c LAUNCHER`` (one uvicorn worker: the pid we watch *is* the
    server), or with ``workers`` > 1 uvicorn's supervisor and its workers, whose
    CPU and memory are summed."""

    def __init__(
        self,
        url: str,
        rollup_interval_s: float = 5.0,
        launcher: Path | None = None,
        workers: int = 1,
    ) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.workers = workers
        if workers > 1:
            code = ["-c", MULTI_LAUNCHER]
        else:
            code = ["-c", LAUNCHER] if launcher is None else [str(launcher)]
        cmd = [sys.executable, *code, url, str(self.port), str(rollup_interval_s), str(workers)]
        self.proc = subprocess.Popen(cmd)
        self.pid = self.proc.pid
        self._wait_ready()

    def _wait_ready(self, timeout: float = 60) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}")
            try:
                if httpx.get(self.base + "/api/v1/health", timeout=1).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("server did not start")

    def pids(self) -> list[int]:
        import psutil

        root = psutil.Process(self.pid)
        return [self.pid, *(p.pid for p in root.children(recursive=True))]

    def status(self) -> dict[str, int]:
        """VmHWM / VmRSS in bytes: of the server process, or summed over the
        supervisor and its workers (then also the largest single VmHWM)."""
        out: dict[str, int] = {"VmHWM": 0, "VmRSS": 0, "VmHWM_max": 0, "Pss": 0}
        for pid in self.pids():
            # Pss shares each page among the processes mapping it: the sum over
            # the supervisor and its workers is what they really occupy (now).
            try:
                rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
                for line in rollup.splitlines():
                    if line.startswith("Pss:"):
                        out["Pss"] += int(line.split()[1]) * 1024
            except OSError:
                pass
            try:
                text = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            for line in text.splitlines():
                key, _, rest = line.partition(":")
                if key in ("VmHWM", "VmRSS"):
                    value = int(rest.split()[0]) * 1024
                    out[key] += value
                    if key == "VmHWM":
                        out["VmHWM_max"] = max(out["VmHWM_max"], value)
        return out

    def cpu_seconds(self) -> float:
        import psutil

        total = 0.0
        for pid in self.pids():
            try:
                t = psutil.Process(pid).cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += t.user + t.system
        return total

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# --- realistic activity -------------------------------------------------------------

APPS: list[tuple[str, list[str]]] = [
    (
        "code",
        [
            "{f}.py - worklens - Visual Studio Code",
            "{f}.ts - webapp - Visual Studio Code",
            "settings.json - Visual Studio Code",
            "Welcome - Visual Studio Code",
        ],
    ),
    (
        "firefox",
        [
            "{site} — Mozilla Firefox",
            "{issue} · Issue #{n} · acme/{repo} — Mozilla Firefox",
            "Pull request #{n}: {issue} — Mozilla Firefox",
            "Inbox ({n}) - mail — Mozilla Firefox",
        ],
    ),
    (
        "chromium",
        [
            "{site} - Chromium",
            "YouTube - {video} - Chromium",
            "Google Docs - {doc} - Chromium",
            "Jira - ACME-{n} {issue} - Chromium",
        ],
    ),
    ("gnome-terminal-server", ["{user}@{host}: ~/src/{repo}", "vim {f}.py", "htop", "ssh {host}"]),
    ("slack", ["Slack | #{chan} | ACME", "Slack | {user} | ACME"]),
    (
        "thunderbird",
        ["Inbox - {user}@acme.example - Mozilla Thunderbird", "Re: {issue} - Thunderbird"],
    ),
    ("libreoffice", ["{doc}.odt - LibreOffice Writer", "{doc}.ods - LibreOffice Calc"]),
    ("zoom", ["Zoom Meeting", "Zoom - {doc} sync"]),
    ("teams", ["Microsoft Teams - {chan}", "Chat | {user} | Microsoft Teams"]),
    ("jetbrains-idea", ["{repo} – {f}.java", "{repo} – Run {f}"]),  # noqa: RUF001
    ("pycharm", ["{repo} – {f}.py", "{repo} – test_{f}.py"]),  # noqa: RUF001
    ("evince", ["{doc}.pdf"]),
    ("nautilus", ["Home", "Downloads", "{repo}"]),
    ("spotify", ["Spotify Premium", "{video} - Spotify"]),
    (
        "gimp",
        [
            "[{doc}] (imported)-1.0 (RGB color 8-bit gamma integer, GIMP built-in sRGB,"
            " 1 layer) 1920x1080 – GIMP"  # noqa: RUF001
        ],
    ),
    ("inkscape", ["{doc}.svg - Inkscape"]),
    ("obsidian", ["{doc} - vault - Obsidian"]),
    ("keepassxc", ["Passwords.kdbx - KeePassXC"]),
    ("discord", ["#{chan} | ACME - Discord"]),
    ("signal", ["Signal"]),
    ("dbeaver", ["DBeaver 24.1 - <{host}> Script-{n}"]),
    ("postman", ["Postman - {repo} API"]),
    ("gedit", ["{f}.txt (~/notes) - gedit"]),
    ("emacs", ["{f}.org - GNU Emacs"]),
    ("kicad", ["{doc} — PCB Editor"]),
    ("blender", ["Blender [{doc}.blend]"]),
    ("steam", ["Steam"]),
    ("vlc", ["{video} - VLC media player"]),
    ("gnome-control-center", ["Settings"]),
    ("virt-manager", ["{host} on QEMU/KVM"]),
]
WORDS = {
    "f": [
        "main",
        "ingest",
        "rollups",
        "schema",
        "api",
        "models",
        "utils",
        "config",
        "report",
        "cli",
        "spool",
        "codec",
        "views",
        "auth",
        "tasks",
    ],
    "site": [
        "Hacker News",
        "Stack Overflow - How to merge dicts",
        "Wikipedia",
        "GitHub",
        "Google",
        "Python docs - asyncio",
        "MDN Web Docs",
        "Reddit - r/python",
        "LWN.net",
        "Grafana",
    ],
    "issue": [
        "Fix flaky test",
        "Ingest is slow on PostgreSQL",
        "Add dark mode",
        "Crash on startup",
        "Refactor rollups",
        "Update dependencies",
    ],
    "n": [str(i) for i in (12, 87, 101, 230, 451, 999, 1203)],
    "repo": ["worklens", "webapp", "infra", "billing", "mobile"],
    "video": ["Lo-fi beats", "PyCon talk", "Conference keynote", "Tutorial part 3"],
    "doc": ["Q3 plan", "budget", "design review", "roadmap", "notes", "invoice"],
    "user": ["alice", "bob", "carol", "dave"],
    "host": ["build-01", "db-02", "web-03", "laptop"],
    "chan": ["general", "dev", "ops", "random", "support"],
}


def _title_pool(rng: random.Random, per_app: int) -> list[tuple[str, list[str], list[float]]]:
    """For each app: its titles (a few hundred in all) and Zipf weights over them."""
    out = []
    for app, templates in APPS:
        titles: list[str] = []
        for _ in range(per_app * 4):
            t = rng.choice(templates)
            for k, words in WORDS.items():
                while "{" + k + "}" in t:
                    t = t.replace("{" + k + "}", rng.choice(words), 1)
            if t not in titles:
                titles.append(t)
            if len(titles) >= per_app:
                break
        weights = [1 / (i + 1) for i in range(len(titles))]
        out.append((app, titles, weights))
    return out


POOL = _title_pool(random.Random(42), per_app=20)  # ~300 distinct titles
APP_WEIGHTS = [1 / (i + 1) ** 1.1 for i in range(len(POOL))]


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


@dataclass
class DeviceTimeline:
    """One device's activity, generated forward in time, one event at a time.

    Focus events have lognormal durations (median ``focus_median_ms``, long tail);
    presence alternates between active periods (~25 min median) and afk periods
    (~7 min), each one afk event; during an afk period the focused window does
    not change, so it is one long focus event, as the agent's heartbeat merge
    would send it. Host samples every ``host_every_ms`` if enabled.
    """

    seed: int
    t_ms: int  # current time on the device clock
    host_every_ms: int = 300_000
    focus_median_ms: int = 9_000

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        # Each person prefers a different rotation of the app list.
        shift = self.rng.randrange(len(POOL))
        self.apps = POOL[shift:] + POOL[:shift]
        self.next_host = self.t_ms
        self.active_until = self.t_ms  # the first call opens an active period

    def _active_len(self) -> int:
        return int(self.rng.lognormvariate(math.log(25 * 60_000), 0.8))

    def _afk_len(self) -> int:
        return int(self.rng.lognormvariate(math.log(6 * 60_000), 0.9)) + 60_000

    def focus_duration_ms(self) -> int:
        d = int(self.rng.lognormvariate(math.log(self.focus_median_ms), 1.35)) + 500
        return min(d, 3 * 3_600_000)

    def pick(self) -> tuple[str, str]:
        app, titles, weights = self.rng.choices(self.apps, APP_WEIGHTS)[0]
        return app, self.rng.choices(titles, weights)[0]

    def _open_active(self, out: list[dict[str, Any]], max_ms: int | None = None) -> None:
        active = self._active_len()
        if max_ms is not None:
            active = max(60_000, min(active, max_ms))
        out.append(_ev("afk", self.t_ms, active, {"status": "active"}))
        self.active_until = self.t_ms + active

    def _afk_period(self, out: list[dict[str, Any]], afk_ms: int) -> None:
        app, title = self.pick()
        out.append(_ev("afk", self.t_ms, afk_ms, {"status": "afk"}))
        out.append(_ev("focus", self.t_ms, afk_ms, {"app": app, "title": title}))
        self.t_ms += afk_ms

    def _host(self, out: list[dict[str, Any]]) -> None:
        rng, now = self.rng, self.t_ms
        out.append(
            _ev(
                "host",
                now,
                0,
                {
                    "cpu_percent": round(rng.uniform(1, 60), 1),
                    "mem_percent": round(rng.uniform(30, 80), 1),
                    "swap_percent": 0.0,
                    "disk_percent": 61.3,
                    "load1": round(rng.uniform(0, 3), 2),
                    "load5": 0.8,
                    "load15": 0.7,
                    "uptime_s": float(now // 1000 % 1_000_000),
                    "temperature_c": None,
                },
            )
        )
        self.next_host = now + self.host_every_ms

    def _focus(self, out: list[dict[str, Any]], limit_ms: int | None = None) -> None:
        d = self.focus_duration_ms()
        if limit_ms is not None:
            d = max(1, min(d, limit_ms - self.t_ms))
        app, title = self.pick()
        out.append(_ev("focus", self.t_ms, d, {"app": app, "title": title}))
        self.t_ms += d

    def events(self, n: int, host: bool = True) -> list[dict[str, Any]]:
        """The next ``n`` (or a couple more) wire events, in time order."""
        out: list[dict[str, Any]] = []
        while len(out) < n:
            if self.t_ms >= self.active_until:
                if out or self.active_until > 0:
                    self._afk_period(out, self._afk_len())
                self._open_active(out)
                continue
            if host and self.t_ms >= self.next_host:
                self._host(out)
            self._focus(out, self.active_until)
        return out

    def workday(
        self, day_start_ms: int, stays_on: bool, hours: float = 8.0, host: bool = False
    ) -> list[dict[str, Any]]:
        """One day: the machine wakes around 08:00 (±1 h), ``hours`` of presence
        with afk breaks (lunch included) in between, then either sleeps (no events
        until the next morning) or stays on: one afk event and one focus event
        (the last window) over the whole night."""
        rng = self.rng
        out: list[dict[str, Any]] = []
        self.t_ms = day_start_ms + int((8 + rng.uniform(-1, 1)) * 3_600_000)
        self.next_host = self.t_ms
        present_left = int(hours * rng.uniform(0.85, 1.15) * 3_600_000)
        lunch_at = self.t_ms + int(rng.uniform(3.5, 4.5) * 3_600_000)
        lunch_done = False
        while present_left > 0:
            self._open_active(out, max_ms=present_left)
            present_left -= self.active_until - self.t_ms
            while self.t_ms < self.active_until:
                if host and self.t_ms >= self.next_host:
                    self._host(out)
                self._focus(out, self.active_until)
            if present_left <= 0:
                break
            if not lunch_done and self.t_ms >= lunch_at:
                self._afk_period(out, int(rng.uniform(30, 60) * 60_000))
                lunch_done = True
            else:
                self._afk_period(out, self._afk_len())
        if stays_on:
            night = day_start_ms + 86_400_000 + (7 * 3_600_000) - self.t_ms
            if night > 0:
                self._afk_period(out, night)
        return out


def _ev(kind: str, start_ms: int, dur_ms: int, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(uuid.UUID(int=random.getrandbits(128), version=4)),
        "kind": kind,
        "start": iso(start_ms),
        "duration": dur_ms / 1000,
        "data": data,
    }


def batch(events: list[dict[str, Any]]) -> dict[str, Any]:
    return {"v": 1, "batch_id": str(uuid.uuid4()), "events": events}


def git_state() -> str:
    """HEAD and whether src/ has uncommitted changes: the code the figures are for."""
    root = HERE.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        return "unknown"
    return f"{head}{' + uncommitted changes in src/' if dirty else ''}"


def machine() -> str:
    import platform

    import psutil

    load = os.getloadavg()
    return (
        f"{os.cpu_count()} cores ({platform.processor() or platform.machine()}), "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB RAM, load average now "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; Python {platform.python_version()}"
    )


def human(n: float) -> str:
    for unit in ("", "k", "M", "G"):
        if abs(n) < 1000:
            return f"{n:.1f}{unit}" if unit else f"{n:.0f}"
        n /= 1000
    return f"{n:.1f}T"


def mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"
