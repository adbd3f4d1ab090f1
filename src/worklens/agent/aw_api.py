"""ActivityWatch's REST API inside the agent, so AW watchers report through WorkLens.

The existing ActivityWatch watchers and editor plugins (aw-watcher-window,
aw-watcher-afk, aw-watcher-vim, aw-watcher-web, ...) talk to ``aw-server`` on
127.0.0.1:5600. The agent answers there instead (``aw_port``; ``aw_host`` must
be a loopback address), with the part of aw-server's API they use:

==========================================  ===============================================
``GET  /api/0/info``                        hostname, version, testing, device_id
``GET  /api/0/buckets/``                    ``{id: bucket}``
``GET|POST|DELETE /api/0/buckets/<id>``     POST ``{type, client, hostname}``: 200, or 304
                                            if it exists; DELETE deletes its events too
``GET  /api/0/buckets/<id>/events``         ``?start=&end=&limit=``, newest first, cut to
                                            the range
``POST /api/0/buckets/<id>/events``         one event or a list; an ``id`` of an event of
                                            the bucket replaces it (as aw-server-rust)
``GET  /api/0/buckets/<id>/events/count``   ``?start=&end=``
``GET|DELETE /api/0/buckets/<id>/events/<n>``
``POST /api/0/buckets/<id>/heartbeat``      ``?pulsetime=<s>``: merged into the bucket's
                                            last event if the data is equal and it starts
                                            within pulsetime of its end (AW's rule,
                                            :func:`worklens.timeline.heartbeat.merge`)
==========================================  ===============================================

Errors are ``{"message": ...}`` with 400 (bad input), 404 (no such bucket or
event), 405, 411/413/415 (body), 500. Requests whose ``Host`` is not a loopback
name are refused (400: DNS rebinding), as are browser pages of other sites
(``Origin``; 403) and POSTs that are not ``application/json`` (415), so a web
page cannot write into the API; browser extensions (aw-watcher-web) may.

Events are kept in :class:`~worklens.agent.aw_store.AwStore` (so reads and
heartbeat merges work, for ``aw_retention_days``), and every new or extended
event is put into the spool as an ``aw`` event (protocol ``AwEvent``) under a
stable WorkLens id, so an extended event replaces its queued copy and the
server extends what it stored. The server keeps a bucket per (device, AW id)
with its type and client; ``currentwindow`` and ``afkstatus`` buckets count in
its reports. Data the server would refuse is refused here already (400), with
the protocol's own check (``wire.aw_data_problem``).

Deletes (of an event or a bucket) apply to the agent's copy only: they are not
sent to the server, which keeps what it received (including copies still in
the spool when the delete came). A replaced event whose start or data changed,
or which got shorter, is sent as a new event, and the server keeps both.

Built on the standard library's ``http.server`` (about 1 MiB), a thread per
connection; without pydantic, like the rest of the agent's steady state.
"""

from __future__ import annotations

import json
import logging
import math
import socket
import socketserver
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from worklens import __version__
from worklens.agent.aw_store import AwBucket, AwEvent, AwStore, NoSuchBucket, from_us, to_us
from worklens.agent.spool import Spool
from worklens.protocol import wire

log = logging.getLogger("worklens.agent.aw")

PREFIX = "/api/0/"
MAX_BODY_BYTES = 2 * 1024 * 1024
MAX_EVENTS_PER_POST = 5000
PRUNE_EVERY_S = 3600.0
_LOOPBACK_NAMES = frozenset(("127.0.0.1", "localhost", "::1"))
_EXTENSION_SCHEMES = ("chrome-extension://", "moz-extension://", "safari-web-extension://")


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _bad(message: str) -> HttpError:
    return HttpError(400, message)


# --- parsing what clients send ----------------------------------------------------------


def parse_time(text: object, what: str) -> int:
    """An ISO 8601 time as microseconds since the epoch; without an offset it is UTC
    (as aw-core reads it)."""
    if not isinstance(text, str):
        raise _bad(f"{what} must be an ISO 8601 time string")
    try:
        dt = datetime.fromisoformat(text.strip())
    except ValueError:
        raise _bad(f"{what} is not an ISO 8601 time: {text[:64]!r}") from None
    if dt.utcoffset() is None:
        dt = dt.replace(tzinfo=UTC)
    return to_us(dt)


def parse_event(
    obj: object, btype: str, now_s: float
) -> tuple[int | None, int, int, dict[str, Any]]:
    """(AW id or None, start, end, data) of an AW event as JSON; HttpError(400) if it
    is not one the server would take."""
    if not isinstance(obj, dict):
        raise _bad("an event must be a JSON object")
    aw_id = obj.get("id")
    if aw_id is not None and (type(aw_id) is not int):
        raise _bad("event id must be an integer")
    if "timestamp" not in obj:
        raise _bad("event has no timestamp")
    start = parse_time(obj["timestamp"], "timestamp")
    duration = obj.get("duration", 0)
    if type(duration) not in (int, float) or not math.isfinite(duration):
        raise _bad("duration must be a number of seconds")
    if not 0 <= duration <= wire.MAX_EVENT_DURATION_S:
        raise _bad(f"duration must be between 0 and {wire.MAX_EVENT_DURATION_S:.0f} s")
    data = obj.get("data", {})
    problem = wire.aw_data_problem(btype, data)
    if problem is not None:
        raise _bad(problem)
    if start < 0:
        raise _bad("timestamp is before 1970")
    if start > (now_s + wire.MAX_FUTURE_SKEW_S) * 1e6:  # the server would refuse it
        raise _bad(
            f"timestamp is more than {wire.MAX_FUTURE_SKEW_S:.0f} s in the future (check the clock)"
        )
    return aw_id, start, start + round(duration * 1e6), data


def _iso(us: int | None) -> str | None:
    return None if us is None else from_us(us).isoformat()


def event_json(e: AwEvent) -> dict[str, Any]:
    return {"id": e.id, "timestamp": _iso(e.start_us), "duration": e.duration_s, "data": e.data}


def bucket_json(b: AwBucket) -> dict[str, Any]:
    return {
        "id": b.id,
        "name": b.id,
        "type": b.type,
        "client": b.client,
        "hostname": b.hostname,
        "created": b.created,
        "data": b.data,
        "metadata": {"start": _iso(b.start_us), "end": _iso(b.end_us)},
        "last_updated": _iso(b.end_us),
    }


# --- the API, without HTTP ------------------------------------------------------------------


class AwService:
    """What each endpoint does; :class:`AwApi` puts HTTP around it."""

    def __init__(
        self,
        store: AwStore,
        spool: Spool,
        hostname: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.spool = spool
        self.hostname = hostname or socket.gethostname()
        self.clock = clock

    def _bucket(self, bucket_id: str) -> AwBucket:
        b = self.store.bucket(bucket_id)
        if b is None:
            raise HttpError(404, f"There's no bucket named {bucket_id}")
        return b

    def _publisher(self, b: AwBucket) -> Callable[[list[AwEvent]], None]:
        """Puts events into the spool as the wire events the server stores."""

        def publish(events: list[AwEvent]) -> None:
            self.spool.put_many(
                (
                    str(e.uid),
                    wire.event(
                        e.uid,
                        from_us(e.start_us),
                        e.duration_s,
                        wire.AwData(b.id, b.type, b.client, e.data),
                    ),
                )
                for e in events
            )

        return publish

    def info(self) -> dict[str, Any]:
        return {
            "hostname": self.hostname,
            "version": f"v{__version__} (worklens-agent)",
            "testing": False,
            "device_id": self.store.device_id(),
        }

    def buckets(self) -> dict[str, Any]:
        return {b.id: bucket_json(b) for b in self.store.buckets()}

    def bucket(self, bucket_id: str) -> dict[str, Any]:
        b = self.store.bucket(bucket_id, extent=True)
        if b is None:
            raise HttpError(404, f"There's no bucket named {bucket_id}")
        return bucket_json(b)

    def create_bucket(self, bucket_id: str, body: object) -> bool:
        if not 1 <= len(bucket_id) <= wire.MAX_AW_BUCKET or not wire.valid_text(bucket_id, None):
            raise _bad(f"bucket id must be 1 to {wire.MAX_AW_BUCKET} characters")
        if not isinstance(body, dict):
            raise _bad("expected a JSON object {type, client, hostname}")
        fields: dict[str, str] = {}
        for name, limit in (
            ("type", wire.MAX_AW_BUCKET_TYPE),
            ("client", wire.MAX_AW_CLIENT),
            ("hostname", 255),
        ):
            v = body.get(name)
            if not isinstance(v, str) or len(v) > limit or not wire.valid_text(v, None):
                raise _bad(f"'{name}' must be a string of at most {limit} characters")
            fields[name] = v
        if not fields["type"]:
            raise _bad("'type' must not be empty")
        data = body.get("data") or {}
        if wire.aw_data_problem("", data) is not None:
            raise _bad("'data' must be a small JSON object")
        created = body.get("created")
        if created is None:
            created = datetime.now(UTC).isoformat()
        else:
            created = from_us(parse_time(created, "created")).isoformat()
        if fields["hostname"] == "!local":  # as aw-server: "this machine"
            fields["hostname"] = self.hostname
            data = {**data, "device_id": self.store.device_id()}
        return self.store.create_bucket(
            bucket_id, fields["type"], fields["client"], fields["hostname"], created, data
        )

    def delete_bucket(self, bucket_id: str) -> None:
        if not self.store.delete_bucket(bucket_id):
            raise HttpError(404, f"There's no bucket named {bucket_id}")

    def events(self, bucket_id: str, query: dict[str, str]) -> list[dict[str, Any]]:
        self._bucket(bucket_id)
        start, end = self._range(query)
        limit: int | None = None
        if query.get("limit", "") != "":
            try:
                limit = int(query["limit"])
            except ValueError:
                raise _bad("limit must be an integer") from None
            if limit < 0:
                limit = None  # aw-client sends -1 for "all"
        return [event_json(e) for e in self.store.events(bucket_id, start, end, limit)]

    def count(self, bucket_id: str, query: dict[str, str]) -> int:
        self._bucket(bucket_id)
        return self.store.count(bucket_id, *self._range(query))

    @staticmethod
    def _range(query: dict[str, str]) -> tuple[int | None, int | None]:
        start = parse_time(query["start"], "start") if query.get("start") else None
        end = parse_time(query["end"], "end") if query.get("end") else None
        return start, end

    def event(self, bucket_id: str, event_id: int) -> dict[str, Any]:
        self._bucket(bucket_id)
        e = self.store.event(bucket_id, event_id)
        if e is None:
            raise HttpError(404, f"There's no event {event_id} in bucket {bucket_id}")
        return event_json(e)

    def delete_event(self, bucket_id: str, event_id: int) -> dict[str, Any]:
        self._bucket(bucket_id)
        return {"success": self.store.delete_event(bucket_id, event_id)}

    def post_events(self, bucket_id: str, body: object) -> list[dict[str, Any]]:
        b = self._bucket(bucket_id)
        items = body if isinstance(body, list) else [body]
        if len(items) > MAX_EVENTS_PER_POST:
            raise HttpError(413, f"at most {MAX_EVENTS_PER_POST} events per request")
        now = self.clock()
        new = [parse_event(item, b.type, now) for item in items]
        try:
            stored = self.store.insert(bucket_id, new, self._publisher(b))
        except NoSuchBucket:  # deleted meanwhile
            raise HttpError(404, f"There's no bucket named {bucket_id}") from None
        return [event_json(e) for e in stored]

    def heartbeat(self, bucket_id: str, query: dict[str, str], body: object) -> dict[str, Any]:
        b = self._bucket(bucket_id)
        if "pulsetime" not in query:
            raise _bad("Missing required parameter pulsetime")
        try:
            pulsetime = float(query["pulsetime"])
        except ValueError:
            raise _bad("pulsetime must be a number of seconds") from None
        if not (math.isfinite(pulsetime) and pulsetime >= 0):
            raise _bad("pulsetime must be a number of seconds >= 0")
        _, start, end, data = parse_event(body, b.type, self.clock())
        try:
            e = self.store.heartbeat(
                bucket_id,
                start,
                end,
                data,
                pulsetime,
                round(wire.MAX_EVENT_DURATION_S * 1e6),
                self._publisher(b),
            )
        except NoSuchBucket:  # deleted meanwhile
            raise HttpError(404, f"There's no bucket named {bucket_id}") from None
        return event_json(e)


# --- HTTP --------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # stopping must not wait for idle keep-alive connections
    service: AwService
    prune_every_s = PRUNE_EVERY_S
    _next_prune = 0.0

    def server_bind(self) -> None:
        # HTTPServer.server_bind also looks up the host's FQDN (DNS): not needed.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def service_actions(self) -> None:
        """Called by serve_forever between requests: prune old events now and then."""
        now = time.monotonic()
        if now >= self._next_prune:
            self._next_prune = now + self.prune_every_s
            try:
                n = self.service.store.prune()
            except Exception:
                log.exception("AW API: pruning old events failed")
            else:
                if n:
                    log.info("AW API: forgot %d event(s) older than the retention", n)


class _V6Server(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "worklens-agent"
    sys_version = ""
    timeout = 60  # an idle keep-alive connection gives its thread back after this

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("AW API %s: " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_OPTIONS(self) -> None:
        """CORS preflight: allowed for browser extensions only (see :meth:`_send`)."""
        self._send(204, None, {"Access-Control-Allow-Methods": "GET, POST, DELETE"})

    # --- one request ---------------------------------------------------------

    def _handle(self, method: str) -> None:
        self._body_read = False
        try:
            self._check_host()
            self._check_origin()
            status, body = self._route(method)
        except HttpError as exc:
            status, body = exc.status, {"message": exc.message}
            if not self._body_read:  # what is left of the request would be misread
                self.close_connection = True
        except Exception:
            log.exception("AW API: %s %s failed", method, self.path)
            status, body = 500, {"message": "internal error (see the agent's log)"}
            self.close_connection = True
        self._send(status, body)

    def _check_host(self) -> None:
        host = self.headers.get("Host")
        if host is None:
            return  # HTTP/1.0 without Host: no browser sends that
        name = host.rsplit(":", 1)[0] if not host.startswith("[") else host[1:].split("]")[0]
        if name.lower() not in _LOOPBACK_NAMES and name != self.server.server_name:
            raise HttpError(400, f"host header is invalid (was {host[:100]})")

    def _check_origin(self) -> None:
        origin = self.headers.get("Origin")
        if origin is None or origin.startswith(_EXTENSION_SCHEMES) or origin == "null":
            return
        try:
            name = urlsplit(origin).hostname or ""
        except ValueError:
            name = ""
        if name.lower() not in _LOOPBACK_NAMES:
            raise HttpError(403, "requests from web pages of other sites are not allowed")

    def _route(self, method: str) -> tuple[int, Any]:
        parts = urlsplit(self.path)
        if not parts.path.startswith(PREFIX):
            self._drain()
            raise HttpError(404, "not found")
        segments = [unquote(s) for s in parts.path[len(PREFIX) :].split("/")]
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        svc = self.server.service
        allowed: tuple[str, ...]
        match segments:
            case ["info"]:
                allowed = ("GET",)
                if method == "GET":
                    self._drain()
                    return 200, svc.info()
            case ["buckets"] | ["buckets", ""]:
                allowed = ("GET",)
                if method == "GET":
                    self._drain()
                    return 200, svc.buckets()
            case ["buckets", bucket_id]:
                allowed = ("GET", "POST", "DELETE")
                if method == "GET":
                    self._drain()
                    return 200, svc.bucket(bucket_id)
                if method == "POST":
                    created = svc.create_bucket(bucket_id, self._json())
                    return (200, {}) if created else (304, None)
                if method == "DELETE":
                    self._drain()
                    svc.delete_bucket(bucket_id)
                    return 200, {}
            case ["buckets", bucket_id, "events"]:
                allowed = ("GET", "POST")
                if method == "GET":
                    self._drain()
                    return 200, svc.events(bucket_id, query)
                if method == "POST":
                    return 200, svc.post_events(bucket_id, self._json())
            case ["buckets", bucket_id, "events", "count"]:
                allowed = ("GET",)
                if method == "GET":
                    self._drain()
                    return 200, svc.count(bucket_id, query)
            case ["buckets", bucket_id, "events", event_id]:
                allowed = ("GET", "DELETE")
                if method in allowed:
                    self._drain()
                    if not event_id.isdigit() or len(event_id) > 18:
                        raise HttpError(404, f"There's no event {event_id[:40]}")
                    if method == "GET":
                        return 200, svc.event(bucket_id, int(event_id))
                    return 200, svc.delete_event(bucket_id, int(event_id))
            case ["buckets", bucket_id, "heartbeat"]:
                allowed = ("POST",)
                if method == "POST":
                    return 200, svc.heartbeat(bucket_id, query, self._json())
            case _:
                self._drain()
                raise HttpError(404, "not found")
        self._drain()
        raise HttpError(405, f"{method} is not allowed here (allowed: {', '.join(allowed)})")

    # --- bodies ------------------------------------------------------------------

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self.close_connection = True
            raise HttpError(411, "send a Content-Length, not a chunked body")
        length = self.headers.get("Content-Length", "0").strip() or "0"
        if not length.isdigit():
            self.close_connection = True
            raise _bad("invalid Content-Length")
        n = int(length)
        if n > MAX_BODY_BYTES:
            self.close_connection = True  # the body stays unread
            raise HttpError(413, f"body exceeds {MAX_BODY_BYTES} bytes")
        body = self.rfile.read(n) if n else b""
        self._body_read = True
        return body

    def _drain(self) -> None:
        """Read (and ignore) a body a request carries, so the connection stays usable."""
        self._body()

    def _json(self) -> Any:
        body = self._body()
        ctype = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise HttpError(415, "the body must be JSON (Content-Type: application/json)")
        try:
            return json.loads(body, parse_constant=_no_constant)
        except (ValueError, RecursionError):
            raise _bad("the body is not valid JSON") from None

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        payload = b"" if body is None or status == 304 else json.dumps(body).encode()
        self.send_response(status)
        origin = self.headers.get("Origin")
        if origin is not None and origin.startswith(_EXTENSION_SCHEMES):
            self.send_header("Access-Control-Allow-Origin", origin)
            self.send_header("Access-Control-Allow-Headers", "Content-Type")
            self.send_header("Vary", "Origin")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if status != 304:
            if payload:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if payload and self.command != "HEAD":
            self.wfile.write(payload)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


class AwApi:
    """The HTTP server of :class:`AwService` on a loopback address, in its own thread."""

    def __init__(self, service: AwService, host: str = "127.0.0.1", port: int = 5600) -> None:
        self.service = service
        self.host = host
        self.requested_port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the AW API is not running")
        return self._server.server_port

    def start(self) -> None:
        """Bind (OSError if the port is taken) and serve in a daemon thread."""
        cls = _V6Server if ":" in self.host else _Server
        server = cls((self.host, self.requested_port), _Handler, bind_and_activate=False)
        try:
            server.server_bind()
            server.server_activate()
        except BaseException:
            server.server_close()
            raise
        server.service = self.service
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.5}, name="aw-api", daemon=True
        )
        self._thread.start()
        log.info("ActivityWatch API on http://%s:%d/api/0/", self.host, self.port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
