"""The agent process: collector threads feed the spool, one sender drains it.

Threads: one per periodic job (activity = focus + idle, host health), the
sender, and (``aw_port``) the ActivityWatch API's server, whose events go into
the same spool. A collector that cannot run is logged once and left out; one that
fails while polling is logged and polled again next time. Nothing waits on
the network except the sender, so an outage only grows the spool.

The server's answers may carry a new token (saved before it is used) and the
organization's settings for the idle threshold and the intervals, which the
threads pick up at their next round (``agent/control.py``).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import random
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from types import FrameType
from typing import TYPE_CHECKING, Any

from worklens import __version__
from worklens.agent import enrollment
from worklens.agent.collectors.base import Collector, CollectorUnavailable, FocusSample
from worklens.agent.config import AgentConfig
from worklens.agent.control import PushedSettings
from worklens.agent.enrollment import Credentials, EnrollmentError
from worklens.agent.spool import Spool, SpoolItem
from worklens.agent.tracker import ActivityTracker
from worklens.agent.transport import Transport, TransportError, make_transport
from worklens.protocol import wire
from worklens.protocol.wire import Event, FocusData, HeartbeatData, HostData

if TYPE_CHECKING:
    from worklens.agent.aw_api import AwApi

log = logging.getLogger("worklens.agent")


def limit_memory_arenas() -> None:
    """glibc gives each thread its own malloc arena; for a small agent with a
    handful of threads that mostly sleep, two arenas save several MB of RSS."""
    if sys.platform.startswith("linux"):
        # Not glibc (musl, ...): nothing to tune.
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").mallopt(-8, 2)  # M_ARENA_MAX


def utcnow() -> datetime:
    return datetime.now(UTC)


def default_collectors(names: Sequence[str]) -> dict[str, Collector[Any]]:
    """The collectors for this platform, imported lazily so a missing optional
    library only disables its own collector."""
    out: dict[str, Collector[Any]] = {}
    if "focus" in names:
        from worklens.agent.collectors.focus_x11 import FocusX11Collector

        out["focus"] = FocusX11Collector()
    if "idle" in names:
        from worklens.agent.collectors.idle_x11 import IdleX11Collector

        out["idle"] = IdleX11Collector()
    if "host" in names:
        from worklens.agent.collectors.host import HostCollector

        out["host"] = HostCollector()
    return out


class Agent:
    def __init__(
        self,
        config: AgentConfig,
        collectors: dict[str, Collector[Any]] | None = None,
        transport_factory: Callable[[str, str, str], Transport] = make_transport,
    ) -> None:
        self.config = config
        self.spool = Spool(
            config.spool_path, max_items=config.spool_max_items, max_attempts=config.max_attempts
        )
        self.collectors = (
            collectors if collectors is not None else default_collectors(config.collectors)
        )
        self.settings = PushedSettings(config)
        self.tracker = ActivityTracker(config.idle_threshold_s, config.pulsetime_s)
        self._tracker_lock = threading.Lock()
        self._transport_factory = transport_factory
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._tick_wakes: list[threading.Event] = []  # one per periodic thread
        self._threads: list[threading.Thread] = []
        self.active: dict[str, Collector[Any]] = {}
        self.unavailable: dict[str, str] = {}
        self.last_send_ok: datetime | None = None
        self.creds: Credentials | None = None
        self.aw_api: AwApi | None = None

    # --- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        self.settings.load()
        self._retune()
        for name, collector in self.collectors.items():
            try:
                collector.open()
                self.active[name] = collector
            except CollectorUnavailable as exc:
                self.unavailable[name] = str(exc)
                log.warning("collector %s unavailable: %s", name, exc)
        if "focus" in self.active or "idle" in self.active:
            self._spawn(
                "activity", lambda: self.settings.current.poll_interval_s, self._activity_tick
            )
        if "host" in self.active:
            self._spawn("host", lambda: self.settings.current.host_interval_s, self._host_tick)
        if self.config.aw_port:
            self._start_aw_api()
        sender = threading.Thread(target=self._send_loop, name="sender", daemon=True)
        sender.start()
        self._threads.append(sender)
        log.info(
            "agent %s started: collectors %s, server %s",
            __version__,
            ", ".join(self.active) or "none",
            self.config.server,
        )

    def _start_aw_api(self) -> None:
        """ActivityWatch's REST API for AW watchers; the agent runs on without it
        if it cannot (the port is taken, e.g. by ActivityWatch's own server)."""
        from worklens.agent.aw_api import AwApi, AwService
        from worklens.agent.aw_store import AwStore

        try:
            store = AwStore(
                self.config.aw_store_path, retention_s=self.config.aw_retention_days * 86400
            )
        except Exception as exc:
            log.warning("ActivityWatch API off: cannot open %s: %s", self.config.aw_store_path, exc)
            return
        api = AwApi(AwService(store, self.spool), self.config.aw_host, self.config.aw_port)
        try:
            api.start()
        except OSError as exc:
            store.close()
            log.warning(
                "ActivityWatch API off: cannot listen on %s:%d (%s); is ActivityWatch's own"
                " aw-server running? Set aw_port to another port, or 0 to turn the API off",
                self.config.aw_host,
                self.config.aw_port,
                exc,
            )
            return
        self.aw_api = api

    def stop(self) -> None:
        self._stop.set()
        self._wake_all()

    def _wake_all(self) -> None:
        self._wake.set()
        for wake in self._tick_wakes:
            wake.set()

    def run(self) -> int:
        """Run until SIGTERM/SIGINT; then close events, try a last send, exit."""

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            log.info("signal %s: stopping", signal.Signals(signum).name)
            self.stop()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        limit_memory_arenas()
        self.start()
        while not self._stop.wait(1.0):
            pass
        self.shutdown()
        return 0

    def shutdown(self) -> None:
        self._stop.set()
        self._wake_all()
        if self.aw_api is not None:  # no more events into the spool
            self.aw_api.stop()
            self.aw_api.service.store.close()
            self.aw_api = None
        for t in self._threads:
            t.join(timeout=self.config.shutdown_grace_s + 5)
        with self._tracker_lock:
            closing = self.tracker.close(utcnow())
        self._put(closing)
        self._final_flush()
        for collector in self.active.values():
            collector.close()
        stats = self.spool.stats()
        log.info("agent stopped; %d event(s) stay queued for the next start", stats.depth)
        self.spool.close()

    def _spawn(self, name: str, interval: Callable[[], float], tick: Callable[[], None]) -> None:
        """A thread that calls ``tick`` every ``interval()`` seconds, read anew each
        round; woken early when the interval may have become shorter."""
        wake = threading.Event()
        self._tick_wakes.append(wake)

        def loop() -> None:
            next_at = time.monotonic()
            while not self._stop.is_set():
                began = next_at
                try:
                    tick()
                except Exception:  # a failing poll must not end the thread
                    log.exception("%s: poll failed", name)
                next_at = began + interval()
                if next_at < time.monotonic():  # fell behind (suspend, slow poll): no burst
                    next_at = time.monotonic()
                while not self._stop.is_set():
                    delay = next_at - time.monotonic()
                    if delay <= 0:
                        break
                    if wake.wait(delay):  # new settings: a shorter interval applies now
                        wake.clear()
                        next_at = min(next_at, max(began + interval(), time.monotonic()))

        t = threading.Thread(target=loop, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    # --- collection ------------------------------------------------------------

    def _activity_tick(self) -> None:
        events: list[Event[Any]] = []
        focus = self.active.get("focus")
        idle = self.active.get("idle")
        sample: FocusSample | None = focus.poll() if focus else None
        idle_s: float | None = idle.poll() if idle else None
        now = utcnow()
        with self._tracker_lock:
            if focus is not None:
                data = (
                    FocusData(sample.app[: wire.MAX_APP], sample.title[: wire.MAX_TITLE])
                    if sample
                    else None
                )
                events.extend(self.tracker.focus(now, data))
            if idle_s is not None:
                events.extend(self.tracker.idle(now, idle_s))
        self._put(events)

    def _host_tick(self) -> None:
        data: HostData = self.active["host"].poll()
        self._put([Event(uuid.uuid4(), utcnow(), 0.0, data)])

    def _put(self, events: Sequence[Event[Any]]) -> None:
        if events:
            self.spool.put_many((str(e.id), e.to_wire()) for e in events)

    # --- sending ---------------------------------------------------------------

    def _credentials(self) -> Credentials:
        if self.creds is None:
            self.creds = enrollment.load_token(self.config.token_path, self.config.server)
        if self.creds is None:
            if not self.config.enroll_secret:
                raise EnrollmentError(
                    "not enrolled and no enroll secret: pass --enroll-secret or set "
                    "WORKLENS_AGENT_ENROLL_SECRET"
                )
            self.creds = enrollment.enroll_in_child(
                self.config.server, self.config.enroll_secret, self.config.token_path
            )
            log.info("enrolled as device %d", self.creds.device_id)
        return self.creds

    # --- what the server tells us ------------------------------------------------

    def _retune(self) -> None:
        """Give the tracker the settings in force and wake the periodic threads."""
        current = self.settings.current
        with self._tracker_lock:
            self.tracker.idle_threshold_s = current.idle_threshold_s
            self.tracker.pulsetime_s = current.poll_interval_s + 1.0  # as config.pulsetime_s
        self._wake_all()

    def _answered(self, transport: Transport, reply: wire.Reply) -> None:
        control = reply.control
        if control is None:
            return
        if control.settings is not None and control.settings.version != self.settings.version:
            self.settings.apply(control.settings)
            self._retune()
        if control.rotate_token is not None:
            self._rotate(transport, control.rotate_token)

    def _rotate(self, transport: Transport, token: str) -> None:
        """The server gave us a new token: saved first, then used. Until the
        first request made with it the server accepts the old one too, so a
        crash anywhere in between leaves a working token on disk."""
        creds = self.creds
        if creds is None or token == creds.token:
            return
        new = Credentials(creds.server, creds.device_id, token)
        try:
            enrollment.save_token(self.config.token_path, new)
        except OSError as exc:  # the old token still works; the next answer brings it again
            log.error("cannot save the new token to %s: %s", self.config.token_path, exc)
            return
        self.creds = new
        transport.set_token(token)
        log.info(
            "token rotated by the server: saved to %s, in use from now on", self.config.token_path
        )

    # --- sending ---------------------------------------------------------------

    def _send_loop(self) -> None:
        transport: Transport | None = None
        retry = 0
        last_beat = 0.0
        while not self._stop.is_set():
            try:
                if transport is None:
                    creds = self._credentials()
                    transport = self._transport_factory(
                        self.config.transport, creds.server, creds.token
                    )
                sent = self._send_some(transport)
                if time.monotonic() - last_beat >= self.config.heartbeat_interval_s:
                    self._send_heartbeat(transport)
                    last_beat = time.monotonic()
                retry = 0
                if not sent:
                    ready = self.spool.next_ready_in()
                    send_interval = self.settings.current.send_interval_s
                    wait = send_interval if ready is None else max(ready, send_interval)
                    self._wake.wait(min(wait, self.config.heartbeat_interval_s))
                    self._wake.clear()
            except (TransportError, EnrollmentError) as exc:
                if isinstance(exc, TransportError) and exc.unauthorized:
                    log.warning("server refused our token (%s): enrolling again", exc)
                    enrollment.forget_token(self.config.token_path)
                    self.creds = None
                    self.settings.forget()  # the new enrollment's server says again
                    self._retune()
                if transport is not None:
                    transport.close()
                    transport = None
                retry += 1
                delay = min(60.0, 2.0 ** min(retry, 6)) * random.uniform(0.5, 1.0)
                log.warning("send failed (%s); retrying in %.1f s", exc, delay)
                self._stop.wait(delay)
        if transport is not None:
            transport.close()

    def _send_some(self, transport: Transport, deadline: float | None = None) -> int:
        """Send ready spool items until none are ready; returns how many were delivered."""
        total = 0
        while not self._stop.is_set() or deadline is not None:
            if deadline is not None and time.monotonic() > deadline:
                break
            items = self.spool.lease(self.config.batch_size)
            if not items:
                break
            total += self._deliver(transport, items)
        return total

    def _deliver(self, transport: Transport, items: list[SpoolItem]) -> int:
        """Send items; a batch the server rejects is split until the bad event is
        alone, so one poisoned event cannot hold back the good ones."""
        try:
            reply = transport.send(wire.batch([i.payload for i in items], self.settings.version))
        except TransportError as exc:
            if not exc.rejected:
                self.spool.release(items)
                raise
            if len(items) == 1:
                log.error("server rejected event %s: %s", items[0].key, exc)
                self.spool.fail(items, str(exc))
                return 0
            half = len(items) // 2
            return self._deliver(transport, items[:half]) + self._deliver(transport, items[half:])
        self.spool.ack(items)
        self.last_send_ok = utcnow()
        self._answered(transport, reply)
        return len(items)

    def _send_heartbeat(self, transport: Transport) -> None:
        stats = self.spool.stats()
        beat = Event(
            uuid.uuid4(),
            utcnow(),
            0.0,
            HeartbeatData(
                agent_version=__version__, spool_depth=stats.depth, dropped=stats.dropped
            ),
        )
        self._answered(
            transport, transport.send(wire.batch([beat.to_wire()], self.settings.version))
        )

    def _final_flush(self) -> None:
        """On shutdown: a few seconds to send what is queued; the rest stays spooled."""
        if self.config.shutdown_grace_s <= 0:
            return
        deadline = time.monotonic() + self.config.shutdown_grace_s
        try:
            creds = self._credentials()
            transport = self._transport_factory(self.config.transport, creds.server, creds.token)
        except (EnrollmentError, TransportError) as exc:
            log.info("no final send: %s", exc)
            return
        try:
            self._send_some(transport, deadline)
        except TransportError as exc:
            log.info("final send stopped: %s", exc)
        finally:
            transport.close()
