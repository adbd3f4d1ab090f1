"""The live hub: which devices changed, told to the dashboards that show them.

Ingest, agent connects and disconnects, and the offline sweep *publish* "device
N of organization O changed"; each open dashboard socket *subscribes* for its
organization and re-renders what it shows of the devices that changed (from
the database, so a page never shows a state the database does not have).

Subscribers hold a set of pending device ids, not a queue: a device that
changes ten times while its page is busy is rendered once, and a slow page
can never make the server hold an unbounded backlog.

With several server processes on one database (``worklens server --workers
N``) a change published in one process must reach the pages connected to the
others: the ``db`` bus appends changes to ``live_events`` (batched, every
``live_poll_s``) and every process polls that table for rows of the others.
One process alone uses the ``local`` bus, which touches no table. Several
server instances may instead share a Redis server (``redis`` bus): a change
is published on one channel at once and every instance's listener thread
delivers the others' changes to its own pages.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import delete, select

from worklens.server.store.db import Database
from worklens.server.store.schema import devices, live_events

log = logging.getLogger(__name__)

BusKind = Literal["local", "db", "redis"]
REDIS_CHANNEL = "worklens:live"
KEEP_MS = 60_000  # how long live_events rows stay
LOOKBACK_MS = 5_000  # how far back each poll reads (commits may come late)


@dataclass(eq=False)
class Subscriber:
    """One open dashboard socket of one organization."""

    org_id: int
    loop: asyncio.AbstractEventLoop
    pending: set[int] = field(default_factory=set)
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def _add(self, device_ids: Iterable[int]) -> None:  # on the subscriber's loop
        self.pending.update(device_ids)
        self.wake.set()

    async def changed(self) -> set[int]:
        """Wait for the next changes; returns the devices that changed since the last call."""
        await self.wake.wait()
        self.wake.clear()
        out, self.pending = self.pending, set()
        return out


class LiveHub:
    def __init__(
        self,
        db: Database,
        bus: BusKind,
        poll_s: float,
        offline_after_s: float,
        redis_url: str | None = None,
    ) -> None:
        if bus == "redis" and not redis_url:
            raise ValueError("the redis live bus needs redis_url (WORKLENS_REDIS_URL)")
        self.db = db
        self.bus = bus
        self.redis_url = redis_url
        self._redis: Any = None  # a redis.Redis client, made on first use
        self.poll_s = poll_s
        self.offline_after_ms = offline_after_s * 1000
        self._lock = threading.Lock()
        self._subs: set[Subscriber] = set()
        self._outbox: list[tuple[int, int]] = []  # (org, device) for the db bus
        self._me = secrets.token_hex(8)  # this process, in live_events bodies
        self.published = 0  # for tests and logs

    # --- publishing (any thread) -------------------------------------------------

    def publish(self, org_id: int, device_ids: Iterable[int]) -> None:
        ids = list(device_ids)
        if not ids:
            return
        self._deliver(org_id, ids)
        if self.bus == "db":
            with self._lock:
                self._outbox.extend((org_id, d) for d in ids)
        elif self.bus == "redis":
            body = json.dumps({"p": self._me, "o": org_id, "d": ids})
            try:
                self._client().publish(REDIS_CHANNEL, body)
            except Exception:  # Redis down: pages of other instances miss this change
                log.warning("live hub: could not publish to Redis", exc_info=True)
        self.published += 1

    def _client(self) -> Any:
        if self._redis is None:
            import redis  # only servers configured for Redis need the package

            self._redis = redis.Redis.from_url(
                self.redis_url or "", socket_timeout=2, socket_connect_timeout=2
            )
        return self._redis

    def _deliver(self, org_id: int, ids: list[int]) -> None:
        with self._lock:
            subs = [s for s in self._subs if s.org_id == org_id]
        for s in subs:
            try:
                s.loop.call_soon_threadsafe(s._add, ids)
            except RuntimeError:  # its loop has closed: the socket is gone
                self.unsubscribe(s)

    # --- subscribing (on the event loop) -----------------------------------------

    def subscribe(self, org_id: int) -> Subscriber:
        sub = Subscriber(org_id, asyncio.get_running_loop())
        with self._lock:
            self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        with self._lock:
            self._subs.discard(sub)

    @property
    def subscribers(self) -> int:
        with self._lock:
            return len(self._subs)

    # --- the background task ------------------------------------------------------

    async def run(self) -> None:
        """Poll the bus (db) or listen to it (redis), and sweep for devices that
        fell silent, until cancelled."""
        state = _PollState(swept_ms=time.time() * 1000, cleaned_ms=0.0)
        stop = threading.Event()
        if self.bus == "redis":
            threading.Thread(
                target=self._listen, args=(stop,), name="live-redis", daemon=True
            ).start()
        try:
            await self._loop(state)
        finally:
            stop.set()

    async def _loop(self, state: _PollState) -> None:
        from starlette.concurrency import run_in_threadpool

        while True:
            try:
                await run_in_threadpool(self._round, state)
            except Exception:  # keep the hub alive; the next round retries
                log.exception("live hub round failed")
            await asyncio.sleep(self.poll_s)

    def _listen(self, stop: threading.Event) -> None:
        """Deliver the changes other instances publish on Redis (a thread: the
        client blocks); reconnects with a growing pause while Redis is away."""
        pause = 0.5
        while not stop.is_set():
            try:
                pubsub = self._client().pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(REDIS_CHANNEL)
                pause = 0.5
                while not stop.is_set():
                    message = pubsub.get_message(timeout=0.5)
                    if message is None:
                        continue
                    body = json.loads(message["data"])
                    if body.get("p") != self._me:
                        self._deliver(int(body["o"]), [int(d) for d in body.get("d", [])])
            except Exception:
                log.warning("live hub: Redis subscription lost; retrying", exc_info=True)
                stop.wait(pause)
                pause = min(pause * 2, 10.0)

    def _round(self, state: _PollState) -> None:
        now = time.time() * 1000
        if self.bus == "db":
            self._flush_and_poll(state, now)
        # A device whose last word is now older than the offline threshold went
        # offline without telling (no disconnect seen by any process).
        lo, hi = state.swept_ms - self.offline_after_ms, now - self.offline_after_ms
        if hi > lo:
            with self.db.read() as conn:
                rows = conn.execute(
                    select(devices.c.org_id, devices.c.id).where(
                        devices.c.last_seen_ms > lo, devices.c.last_seen_ms <= hi
                    )
                ).all()
            by_org: dict[int, list[int]] = {}
            for org_id, device_id in rows:
                by_org.setdefault(int(org_id), []).append(int(device_id))
            for org_id, ids in by_org.items():
                self._deliver(org_id, ids)
            state.swept_ms = now

    def _flush_and_poll(self, state: _PollState, now: float) -> None:
        with self._lock:
            out, self._outbox = self._outbox, []
        if out or now - state.cleaned_ms > KEEP_MS / 4:
            with self.db.write() as conn:
                by_org: dict[int, set[int]] = {}
                for org_id, device_id in out:
                    by_org.setdefault(org_id, set()).add(device_id)
                for org_id, ids in by_org.items():
                    body = json.dumps({"p": self._me, "d": sorted(ids)})
                    conn.execute(live_events.insert().values(org_id=org_id, at_ms=now, body=body))
                if now - state.cleaned_ms > KEEP_MS / 4:
                    conn.execute(delete(live_events).where(live_events.c.at_ms < now - KEEP_MS))
                    state.cleaned_ms = now
        # Rows of the last seconds, not "ids after the last one seen": on
        # PostgreSQL ids are drawn before commit, so a smaller id may become
        # visible after a bigger one.
        with self.db.read() as conn:
            rows = conn.execute(
                select(live_events.c.id, live_events.c.org_id, live_events.c.body).where(
                    live_events.c.at_ms > now - LOOKBACK_MS
                )
            ).all()
        for row in rows:
            if row.id in state.seen:
                continue
            state.seen[int(row.id)] = now
            body = json.loads(row.body)
            if body.get("p") != self._me:
                self._deliver(int(row.org_id), [int(d) for d in body.get("d", [])])
        for row_id in [i for i, t in state.seen.items() if t < now - 2 * LOOKBACK_MS]:
            del state.seen[row_id]


@dataclass
class _PollState:
    swept_ms: float
    cleaned_ms: float
    seen: dict[int, float] = field(default_factory=dict)  # live_events id -> when seen
