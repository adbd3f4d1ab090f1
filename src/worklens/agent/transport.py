"""Sending batches: a WebSocket with acknowledged sequence numbers, or HTTP.

Both transports take a batch as the wire dict and return the server's answer
(``wire.Reply``: the IngestResult and what the server tells the agent), or
raise a TransportError that says whether retrying can help.
"""

from __future__ import annotations

import contextlib
import itertools
from abc import ABC, abstractmethod
from typing import Any

from websockets.exceptions import InvalidStatus, WebSocketException
from websockets.sync.client import ClientConnection, connect

from worklens.protocol import codec, wire
from worklens.protocol.wire import AckFrame, Reply


class TransportError(Exception):
    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status

    @property
    def unauthorized(self) -> bool:
        """The token is no longer valid: enroll again."""
        return self.status == 401

    @property
    def rejected(self) -> bool:
        """The server refused this batch itself; sending it again will not help soon."""
        return (
            self.status is not None
            and 400 <= self.status < 500
            and self.status not in (401, 408, 429)
        )


class Transport(ABC):
    name: str

    @abstractmethod
    def send(self, batch: dict[str, Any]) -> Reply: ...

    @abstractmethod
    def set_token(self, token: str) -> None:
        """Use this token from the next request on (a rotated token)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        pass


def _ws_url(server: str) -> str:
    scheme, rest = server.split("://", 1)
    return ("wss" if scheme == "https" else "ws") + "://" + rest + "/api/v1/agent/ws"


class WebSocketTransport(Transport):
    name = "websocket"

    def __init__(self, server: str, token: str, timeout: float = 30.0) -> None:
        self.url = _ws_url(server)
        self.token = token
        self.timeout = timeout
        self._conn: ClientConnection | None = None
        self._seq = itertools.count()

    def _connect(self) -> ClientConnection:
        if self._conn is None:
            try:
                self._conn = connect(
                    self.url,
                    additional_headers={"Authorization": f"Bearer {self.token}"},
                    open_timeout=self.timeout,
                    max_size=None,
                )
            except InvalidStatus as exc:
                raise TransportError(f"websocket refused: {exc}", exc.response.status_code) from exc
            except (OSError, WebSocketException, TimeoutError) as exc:
                raise TransportError(f"cannot connect to {self.url}: {exc}") from exc
        return self._conn

    def set_token(self, token: str) -> None:
        # The socket was authenticated with the old token: the next send opens
        # a new one, and that first use of the new token retires the old.
        self.token = token
        self.close()

    def send(self, batch: dict[str, Any]) -> Reply:
        conn = self._connect()
        seq = next(self._seq)
        try:
            conn.send(codec.pack(wire.batch_frame(seq, batch)))
            while True:
                raw = conn.recv(timeout=self.timeout)
                obj = codec.unpack(raw) if isinstance(raw, bytes) else codec.from_json(raw.encode())
                frame = wire.server_frame(obj)
                if frame.seq is not None and frame.seq != seq:
                    continue  # an answer to an earlier, abandoned send
                if isinstance(frame, AckFrame):
                    return Reply(frame.result, frame.control)
                if frame.status in (401, 403):
                    self.close()
                raise TransportError(f"server refused batch: {frame.error}", frame.status)
        except (OSError, WebSocketException, TimeoutError, codec.DecodeError, ValueError) as exc:
            self.close()
            raise TransportError(f"websocket send failed: {exc}") from exc

    def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(OSError, WebSocketException):
                conn.close()


class HttpTransport(Transport):
    name = "http"

    def __init__(self, server: str, token: str, timeout: float = 30.0) -> None:
        # httpx is imported only when HTTP is really used: the WebSocket path
        # never needs it, and it would cost the agent several MB of memory.
        import httpx

        self._http_error = httpx.HTTPError
        self.url = f"{server}/api/v1/ingest"
        self.client = httpx.Client(
            timeout=timeout,
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": codec.MSGPACK_TYPE,
                "Content-Encoding": codec.ZSTD_ENCODING,
            },
        )

    def set_token(self, token: str) -> None:
        self.client.headers["Authorization"] = f"Bearer {token}"

    def send(self, batch: dict[str, Any]) -> Reply:
        try:
            r = self.client.post(self.url, content=codec.pack(batch))
        except self._http_error as exc:
            raise TransportError(f"cannot reach {self.url}: {exc}") from exc
        if r.status_code == 200:
            try:
                return wire.ingest_reply(r.json())
            except ValueError as exc:  # not JSON, or not an answer this agent reads
                raise TransportError(f"unreadable answer from {self.url}: {exc}") from exc
        try:
            reason = r.json().get("error", "")
        except ValueError:
            reason = r.text[:200]
        raise TransportError(f"server answered {r.status_code}: {reason}", r.status_code)

    def close(self) -> None:
        self.client.close()


class AutoTransport(Transport):
    """WebSocket first; HTTP when the socket cannot be opened (a proxy that
    strips upgrades, say). Retries the socket on the next connection cycle."""

    name = "auto"

    def __init__(self, server: str, token: str) -> None:
        self.server = server
        self.token = token
        self.ws = WebSocketTransport(server, token)
        self._http: HttpTransport | None = None
        self.last_used = ""

    @property
    def http(self) -> HttpTransport:
        if self._http is None:
            self._http = HttpTransport(self.server, self.token)
        return self._http

    def set_token(self, token: str) -> None:
        self.token = token
        self.ws.set_token(token)
        if self._http is not None:
            self._http.set_token(token)

    def send(self, batch: dict[str, Any]) -> Reply:
        try:
            result = self.ws.send(batch)
            self.last_used = self.ws.name
            return result
        except TransportError as exc:
            if exc.status is not None:
                raise  # the server answered: HTTP would get the same answer
        result = self.http.send(batch)
        self.last_used = self.http.name
        return result

    def close(self) -> None:
        self.ws.close()
        if self._http is not None:
            self._http.close()


def make_transport(kind: str, server: str, token: str) -> Transport:
    if kind == "websocket":
        return WebSocketTransport(server, token)
    if kind == "http":
        return HttpTransport(server, token)
    return AutoTransport(server, token)
