"""The agent's ActivityWatch API, driven by the real ``aw-client`` from PyPI.

The API component runs in-process on a free loopback port with a real spool;
what it puts into the spool must be exactly the protocol's ``aw`` events (the
server validates them with ``messages.AwEvent``). The end-to-end path to a real
server is in ``tests/e2e/test_aw_watchers.py``.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from aw_client import ActivityWatchClient
from aw_core.models import Event

from worklens.agent import aw_api
from worklens.agent.aw_api import AwApi, AwService
from worklens.agent.aw_store import AwStore
from worklens.agent.spool import Spool
from worklens.protocol import messages

WINDOW = "aw-watcher-window_testhost"
AFK = "aw-watcher-afk_testhost"


@dataclass
class Api:
    api: AwApi
    store: AwStore
    spool: Spool
    client: ActivityWatchClient

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api.port}/api/0"

    def queued(self) -> dict[str, dict[str, Any]]:
        """The spool's pending items by key, each validated as the server would."""
        items = self.spool.pending(10_000)
        for i in items:
            event = messages.event_adapter.validate_python(i.payload)
            assert isinstance(event, messages.AwEvent) and str(event.id) == i.key
            assert event.model_dump(mode="json") == i.payload
        return {i.key: i.payload for i in items}


def aw_client_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """aw-client keeps a config file, a lock file and a queue under the XDG dirs."""
    for var in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture
def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    aw_client_env(tmp_path, monkeypatch)
    spool = Spool(tmp_path / "state" / "spool.db")
    store = AwStore(tmp_path / "state" / "aw.db")
    server = AwApi(AwService(store, spool, hostname="testhost"), "127.0.0.1", 0)
    server.start()
    client = ActivityWatchClient("aw-watcher-test", host="127.0.0.1", port=server.port)
    try:
        yield Api(server, store, spool, client)
    finally:
        server.stop()
        store.close()
        spool.close()


def ago(seconds: float) -> datetime:
    return BASE + timedelta(seconds=seconds)


BASE = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


def test_info_and_bucket_lifecycle(api: Api) -> None:
    info = api.client.get_info()
    assert info["hostname"] == "testhost" and info["testing"] is False
    assert info["version"].endswith("(worklens-agent)") and len(info["device_id"]) == 36
    api.client.create_bucket(WINDOW, "currentwindow")
    r = requests.post(
        f"{api.url}/buckets/{WINDOW}",
        json={"client": "x", "type": "other", "hostname": "h"},
        timeout=5,
    )
    assert r.status_code == 304  # exists: unchanged, as aw-server answers
    bucket = requests.get(f"{api.url}/buckets/{WINDOW}", timeout=5).json()
    assert bucket["id"] == WINDOW and bucket["type"] == "currentwindow"
    assert bucket["client"] == "aw-watcher-test" and bucket["hostname"] == socket.gethostname()
    assert bucket["metadata"] == {"start": None, "end": None} and bucket["last_updated"] is None
    api.client.heartbeat(WINDOW, Event(timestamp=ago(0), data={"app": "a", "title": "t"}), 5)
    buckets = api.client.get_buckets()
    assert list(buckets) == [WINDOW]
    assert buckets[WINDOW]["metadata"]["start"] == ago(0).isoformat()
    api.client.delete_bucket(WINDOW)
    assert api.client.get_buckets() == {}
    r = requests.get(f"{api.url}/buckets/{WINDOW}", timeout=5)
    assert r.status_code == 404 and WINDOW in r.json()["message"]
    # "!local" is this machine, as in aw-server.
    r = requests.post(
        f"{api.url}/buckets/web", json={"client": "w", "type": "web", "hostname": "!local"}
    )
    assert r.status_code == 200
    web = requests.get(f"{api.url}/buckets/web", timeout=5).json()
    assert web["hostname"] == "testhost" and web["data"]["device_id"] == info["device_id"]


def test_heartbeats_merge_with_pulsetime_and_reach_the_spool_once(api: Api) -> None:
    api.client.create_bucket(WINDOW, "currentwindow")
    code = {"app": "code", "title": "main.py"}
    for t in (0, 1, 2, 3, 4.5):  # within pulsetime 2: one event
        api.client.heartbeat(WINDOW, Event(timestamp=ago(t), data=code), pulsetime=2)
    api.client.heartbeat(WINDOW, Event(timestamp=ago(10), data=code), pulsetime=2)  # too late
    api.client.heartbeat(WINDOW, Event(timestamp=ago(11), data={**code, "title": "b"}), 2)
    api.client.heartbeat(WINDOW, Event(timestamp=ago(12), data={**code, "title": "b"}), 2)
    events = api.client.get_events(WINDOW)
    assert [(e.timestamp, e.duration.total_seconds(), e.data["title"]) for e in events] == [
        (ago(11), 1.0, "b"),
        (ago(10), 0.0, "main.py"),
        (ago(0), 4.5, "main.py"),
    ]
    assert api.client.get_eventcount(WINDOW) == 3
    # Each event is queued once, under one WorkLens id, at its latest length.
    queued = sorted(api.queued().values(), key=lambda p: p["start"])
    assert [(p["duration"], p["data"]["title"]) for p in queued] == [
        (4.5, "main.py"),
        (0.0, "main.py"),
        (1.0, "b"),
    ]
    first = queued[0]
    assert first["kind"] == "aw" and first["bucket"] == WINDOW
    assert first["bucket_type"] == "currentwindow" and first["client"] == "aw-watcher-test"
    assert first["start"] == ago(0).isoformat().replace("+00:00", "Z")
    # The answer is the resulting event, with its id.
    r = requests.post(
        f"{api.url}/buckets/{WINDOW}/heartbeat?pulsetime=2",
        json={"timestamp": ago(13).isoformat(), "duration": 0, "data": {**code, "title": "b"}},
        timeout=5,
    )
    assert r.status_code == 200
    assert r.json()["id"] == events[0].id and r.json()["duration"] == 2.0


def test_queued_heartbeats_as_the_watchers_send_them(api: Api) -> None:
    """aw-watcher-window/-afk use the client's queue: pre-merged heartbeats with a
    duration, sent from a thread, with the bucket created by the queue."""
    api.client.create_bucket(AFK, "afkstatus", queued=True)
    api.client.connect()
    try:
        for t in range(0, 30):
            status = "afk" if 20 <= t < 25 else "not-afk"
            api.client.heartbeat(
                AFK, Event(timestamp=ago(t), data={"status": status}), 1.5, queued=True
            )
        # The afk stretch is sent once the next beat differs; the beats after it
        # stay in the client (they are sent with the next change).
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any(
            e.data["status"] == "afk" for e in api.client.get_events(AFK)
        ):
            time.sleep(0.05)
    finally:
        api.client.disconnect()
    events = api.client.get_events(AFK)
    got = [(e.timestamp, e.duration.total_seconds(), e.data["status"]) for e in events]
    # The client sent 0..10 s, then 10..19 s (at the change to afk; merged here
    # into one event, as aw-server merges it), then the afk stretch 20..24 s.
    assert got == [(ago(20), 4.0, "afk"), (ago(0), 19.0, "not-afk")]
    assert sorted(p["duration"] for p in api.queued().values()) == [4.0, 19.0]


def test_post_get_count_and_delete_events(api: Api) -> None:
    api.client.create_bucket("editor", "app.editor.activity")
    evs = [
        Event(timestamp=ago(i * 60), duration=30, data={"file": f"f{i}.py", "n": [i, 1.5, None]})
        for i in range(5)
    ]
    api.client.insert_events("editor", evs)
    api.client.insert_event("editor", Event(timestamp=ago(400), duration=1, data={"file": "x"}))
    got = api.client.get_events("editor", limit=3)
    assert [e.data["file"] for e in got] == ["x", "f4.py", "f3.py"]  # newest first
    assert got[1].data == {"file": "f4.py", "n": [4, 1.5, None]}
    window = api.client.get_events("editor", start=ago(75), end=ago(135))
    assert [(e.timestamp, e.duration.total_seconds()) for e in window] == [
        (ago(120), 15.0),
        (ago(75), 15.0),
    ]
    assert api.client.get_eventcount("editor") == 6
    assert api.client.get_eventcount("editor", start=ago(100), end=ago(200)) == 2
    one = api.client.get_event("editor", got[0].id)
    assert one is not None and one.data == {"file": "x"}
    api.client.delete_event("editor", got[0].id)
    assert api.client.get_eventcount("editor") == 5
    assert requests.get(f"{api.url}/buckets/editor/events/{got[0].id}").status_code == 404
    # A single event object (not a list) is accepted too; the answer has the ids.
    r = requests.post(
        f"{api.url}/buckets/editor/events",
        json={"timestamp": ago(500).isoformat(), "duration": 2, "data": {"k": "v"}},
        timeout=5,
    )
    assert r.status_code == 200 and r.json()[0]["data"] == {"k": "v"} and r.json()[0]["id"] > 0
    # Everything received went to the spool; the deleted event's copy stays there
    # (deletes are local: the server keeps what it was sent).
    assert len(api.queued()) == 7


def test_bad_requests_get_aw_style_errors_and_store_nothing(api: Api) -> None:
    api.client.create_bucket(WINDOW, "currentwindow")
    hb = f"{api.url}/buckets/{WINDOW}/heartbeat"
    ok = {"timestamp": ago(0).isoformat(), "data": {"app": "a", "title": "t"}}
    cases: list[tuple[str, str, Any, int, str]] = [
        ("POST", hb, ok, 400, "pulsetime"),
        ("POST", hb + "?pulsetime=x", ok, 400, "pulsetime"),
        ("POST", hb + "?pulsetime=-1", ok, 400, "pulsetime"),
        ("POST", hb + "?pulsetime=nan", ok, 400, "pulsetime"),
        ("POST", hb + "?pulsetime=1", {**ok, "data": {"app": "a"}}, 400, "'app' and 'title'"),
        ("POST", hb + "?pulsetime=1", {**ok, "timestamp": "yesterday"}, 400, "ISO 8601"),
        ("POST", hb + "?pulsetime=1", {"data": ok["data"]}, 400, "timestamp"),
        ("POST", hb + "?pulsetime=1", {**ok, "duration": -1}, 400, "duration"),
        ("POST", hb + "?pulsetime=1", {**ok, "duration": "1"}, 400, "duration"),
        ("POST", hb + "?pulsetime=1", [ok], 400, "JSON object"),
        (
            "POST",
            hb + "?pulsetime=1",
            {**ok, "timestamp": (datetime.now(UTC) + timedelta(hours=1)).isoformat()},
            400,
            "future",
        ),
        (
            "POST",
            hb + "?pulsetime=1",
            {**ok, "data": {"app": "a", "title": "x" * 3000}},
            400,
            "title",
        ),
        ("POST", f"{api.url}/buckets/nope/heartbeat?pulsetime=1", ok, 404, "nope"),
        ("POST", f"{api.url}/buckets/nope/events", [ok], 404, "nope"),
        ("GET", f"{api.url}/buckets/nope/events", None, 404, "nope"),
        ("GET", f"{api.url}/buckets/nope/events/count", None, 404, "nope"),
        ("DELETE", f"{api.url}/buckets/nope", None, 404, "nope"),
        ("GET", f"{api.url}/buckets/{WINDOW}/events?limit=x", None, 400, "limit"),
        ("GET", f"{api.url}/buckets/{WINDOW}/events?start=x", None, 400, "start"),
        ("GET", f"{api.url}/buckets/{WINDOW}/events/abc", None, 404, "abc"),
        ("POST", f"{api.url}/buckets/b2", {"type": "x"}, 400, "client"),
        (
            "POST",
            f"{api.url}/buckets/b2",
            {"type": "", "client": "c", "hostname": "h"},
            400,
            "type",
        ),
        ("POST", f"{api.url}/buckets/{'b' * 256}", {"type": "x"}, 400, "bucket id"),
        ("PUT", f"{api.url}/buckets/{WINDOW}", {}, 405, "allowed"),
        ("GET", f"{api.url}/query/", None, 404, "not found"),
        ("GET", "/".join(api.url.split("/")[:3]) + "/", None, 404, "not found"),
    ]
    for method, url, body, status, needle in cases:
        r = requests.request(method, url, json=body, timeout=5)
        assert r.status_code == status, (method, url, body, r.text)
        assert needle in r.json()["message"], (url, r.json())
    # Not JSON, or not said to be JSON; too large.
    r = requests.post(
        hb + "?pulsetime=1", data=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400
    r = requests.post(
        hb + "?pulsetime=1", data=json.dumps(ok), headers={"Content-Type": "text/plain"}
    )
    assert r.status_code == 415
    nan = b'{"timestamp": "2026-01-01T00:00:00Z", "data": {"app": "a", "title": NaN}}'
    r = requests.post(hb + "?pulsetime=1", data=nan, headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    big = b"[" + b",".join([json.dumps(ok).encode()] * 40_000) + b"]"
    r = requests.post(
        f"{api.url}/buckets/{WINDOW}/events",
        data=big,
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 413
    assert api.client.get_eventcount(WINDOW) == 0 and api.queued() == {}
    assert len(api.client.get_buckets()) == 1


def test_web_pages_and_rebound_names_are_refused_extensions_allowed(api: Api) -> None:
    api.client.create_bucket("web", "web.tab.current")
    url = f"{api.url}/buckets/web/heartbeat?pulsetime=1"
    ok = {"timestamp": ago(0).isoformat(), "data": {"url": "https://example.com"}}
    # DNS rebinding: a page of evil.example whose name now points to 127.0.0.1.
    r = requests.post(url, json=ok, headers={"Host": "evil.example:5600"}, timeout=5)
    assert r.status_code == 400 and "host" in r.json()["message"]
    r = requests.get(f"{api.url}/buckets/", headers={"Host": "evil.example"}, timeout=5)
    assert r.status_code == 400
    # A page of another site posting (or reading) across origins.
    r = requests.post(url, json=ok, headers={"Origin": "https://evil.example"}, timeout=5)
    assert r.status_code == 403
    pre = requests.options(url, headers={"Origin": "https://evil.example"}, timeout=5)
    assert "Access-Control-Allow-Origin" not in pre.headers
    # The browser extension aw-watcher-web may.
    ext = "moz-extension://1234-abcd"
    pre = requests.options(url, headers={"Origin": ext}, timeout=5)
    assert pre.status_code == 204 and pre.headers["Access-Control-Allow-Origin"] == ext
    r = requests.post(url, json=ok, headers={"Origin": ext, "Host": "localhost:5600"}, timeout=5)
    assert r.status_code == 200 and r.headers["Access-Control-Allow-Origin"] == ext
    assert api.client.get_eventcount("web") == 1


def test_keep_alive_connections_and_concurrent_heartbeats(api: Api) -> None:
    api.client.create_bucket(WINDOW, "currentwindow")
    session = requests.Session()
    for t in range(5):  # one connection, several requests, errors in between
        r = session.post(
            f"{api.url}/buckets/{WINDOW}/heartbeat?pulsetime=2",
            json={"timestamp": ago(t).isoformat(), "data": {"app": "a", "title": "t"}},
            timeout=5,
        )
        assert r.status_code == 200
        assert session.get(f"{api.url}/buckets/nope", timeout=5).status_code == 404
    errors: list[BaseException] = []

    def hammer(k: int) -> None:
        try:
            with requests.Session() as s:
                for t in range(20):
                    r = s.post(
                        f"{api.url}/buckets/{WINDOW}/heartbeat?pulsetime=100",
                        json={
                            "timestamp": ago(10 + t).isoformat(),
                            "data": {"app": "a", "title": "t"},
                        },
                        timeout=10,
                    )
                    r.raise_for_status()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=hammer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    # All beats had equal data within pulsetime: still one event, 0 .. 29 s.
    (event,) = api.client.get_events(WINDOW)
    assert (event.timestamp, event.duration.total_seconds()) == (ago(0), 29.0)
    (queued,) = api.queued().values()
    assert queued["duration"] == 29.0


def test_a_taken_port_fails_to_start(api: Api) -> None:
    other = AwApi(api.api.service, "127.0.0.1", api.api.port)
    with pytest.raises(OSError):
        other.start()


def test_old_events_are_pruned_by_the_server_loop(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    api.client.create_bucket("old", "x")
    t = datetime.now(UTC) - timedelta(days=9)
    api.client.insert_event("old", Event(timestamp=t, duration=1, data={}))
    api.client.insert_event("old", Event(timestamp=ago(0), duration=1, data={}))
    assert api.client.get_eventcount("old") == 2
    server = api.api._server
    assert server is not None
    monkeypatch.setattr(server, "prune_every_s", 0.05)
    server._next_prune = 0.0
    deadline = time.monotonic() + 5
    while api.client.get_eventcount("old") != 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert api.client.get_eventcount("old") == 1


def test_parse_time_reads_what_aw_clients_send() -> None:
    us = aw_api.parse_time("2026-11-02T09:00:00.123456789Z", "t")
    assert us == aw_api.parse_time("2026-11-02T10:00:00.123456+01:00", "t")
    assert aw_api.parse_time("2026-11-02T09:00:00", "t") == aw_api.parse_time(
        "2026-11-02T09:00:00+00:00", "t"
    )
    with pytest.raises(aw_api.HttpError):
        aw_api.parse_time(5, "t")
