"""Ingest of ActivityWatch bucket events (kind "aw"), on SQLite and PostgreSQL.

The agent's AW API sends what ActivityWatch watchers report as "aw" events; the
server keeps them in one bucket per (device, AW bucket id) with the bucket's type
and client, through the same path as the agent's own focus/afk streams.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from tests.server.conftest import Server, at, batch, focus
from tests.server.test_compaction import FAR_FUTURE_MS, stored
from tests.server.test_ingest_and_report import post, report
from worklens.protocol import wire
from worklens.server.store.buckets import AFK_TYPE, FOCUS_TYPE
from worklens.server.store.compaction import compact
from worklens.server.store.schema import buckets, event_data, events, rollup_dirty


def aw(
    bucket: str,
    btype: str,
    start: datetime,
    duration: float,
    client: str = "aw-watcher",
    **data: Any,
) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "kind": "aw",
        "start": start.isoformat(),
        "duration": duration,
        "bucket": bucket,
        "bucket_type": btype,
        "client": client,
        "data": data,
    }


def window(start: datetime, duration: float, app: str, title: str = "") -> dict[str, Any]:
    return aw(
        "aw-watcher-window_pc-1",
        "currentwindow",
        start,
        duration,
        client="aw-watcher-window",
        app=app,
        title=title,
    )


def presence(start: datetime, duration: float, status: str) -> dict[str, Any]:
    return aw(
        "aw-watcher-afk_pc-1", "afkstatus", start, duration, client="aw-watcher-afk", status=status
    )


def bucket_rows(server: Server, device_id: int) -> dict[str, tuple[str, str]]:
    with server.services.db.read() as conn:
        return {
            r.name: (r.type, r.client)
            for r in conn.execute(
                select(buckets.c.name, buckets.c.type, buckets.c.client).where(
                    buckets.c.device_id == device_id
                )
            )
        }


def dirty(server: Server) -> int:
    with server.services.db.read() as conn:
        return int(conn.execute(select(func.count()).select_from(rollup_dirty)).scalar_one())


def ingest(server: Server, token: str, body: dict[str, Any]) -> Any:
    return server.client.post(
        "/api/v1/ingest", json=body, headers={"Authorization": f"Bearer {token}"}
    )


def test_the_protocol_checks_the_bucket_types_reports_read() -> None:
    assert (wire.AW_WINDOW_TYPE, wire.AW_AFK_TYPE) == (FOCUS_TYPE, AFK_TYPE)


def test_aw_window_and_afk_buckets_count_in_reports(server: Server) -> None:
    device_id, token = server.enroll()
    result = post(
        server,
        token,
        batch(
            window(at(0), 600, "code", "main.py"),
            window(at(10), 300, "firefox", "docs"),
            presence(at(0), 780, "not-afk"),
            presence(at(13), 600, "afk"),
        ),
    )
    assert result == {"accepted": 4, "duplicates": 0, "updated": 0}
    assert bucket_rows(server, device_id) == {
        "aw-watcher-window_pc-1": ("currentwindow", "aw-watcher-window"),
        "aw-watcher-afk_pc-1": ("afkstatus", "aw-watcher-afk"),
    }
    # AW's "not-afk" is stored as WorkLens's "active", so it counts as presence.
    with server.services.db.read() as conn:
        texts = set(conn.execute(select(event_data.c.data)).scalars())
    assert '{"status":"active"}' in texts and '{"status":"not-afk"}' not in texts
    assert report(server) == {"code": 600.0, "firefox": 180.0}
    assert report(server, "title") == {"main.py": 600.0, "docs": 180.0}


def test_aw_buckets_and_the_agents_own_buckets_combine(server: Server) -> None:
    """An AW window watcher next to the agent's focus collector: overlaps count once
    ("latest start wins" over all focus-type buckets of the device)."""
    _, token = server.enroll()
    post(
        server,
        token,
        batch(
            focus(at(0), 600, "code", "a"),
            window(at(5), 600, "code", "a"),
            presence(at(0), 3600, "not-afk"),
        ),
    )
    assert report(server) == {"code": 900.0}


def test_other_bucket_types_are_stored_but_mark_nothing_for_reports(server: Server) -> None:
    device_id, token = server.enroll()
    editor = aw(
        "aw-watcher-vim_pc-1",
        "app.editor.activity",
        at(0),
        120,
        client="aw-watcher-vim",
        file="main.py",
        project="/src",
        language="python",
        nested={"a": [1, 2.5, None, True, {"b": "c"}]},
    )
    assert post(server, token, batch(editor))["accepted"] == 1
    assert dirty(server) == 0
    assert bucket_rows(server, device_id) == {
        "aw-watcher-vim_pc-1": ("app.editor.activity", "aw-watcher-vim")
    }
    with server.services.db.read() as conn:
        (text,) = conn.execute(select(event_data.c.data)).scalars()
    assert text == (
        '{"file":"main.py","language":"python","nested":{"a":[1,2.5,null,true,{"b":"c"}]},'
        '"project":"/src"}'
    )
    assert report(server) == {}


def test_aw_events_are_idempotent_and_a_longer_resend_extends_them(server: Server) -> None:
    _, token = server.enroll()
    w = window(at(0), 60, "code", "a")
    body = batch(w, presence(at(0), 7200, "not-afk"))
    assert post(server, token, body) == {"accepted": 2, "duplicates": 0, "updated": 0}
    assert post(server, token, {**body, "batch_id": str(uuid.uuid4())})["duplicates"] == 2
    # The heartbeat merge on the agent re-sends the event longer: it grows.
    assert post(server, token, batch({**w, "duration": 900}))["updated"] == 1
    # Within one batch, the longest copy of an event wins.
    assert post(server, token, batch({**w, "duration": 1000}, {**w, "duration": 950})) == {
        "accepted": 0,
        "duplicates": 1,
        "updated": 1,
    }
    assert post(server, token, batch({**w, "duration": 30}))["duplicates"] == 1
    assert report(server) == {"code": 1000.0}
    # Equal data shares one payload row, whichever bucket or kind it came from.
    post(server, token, batch(window(at(30), 60, "code", "a")))
    with server.services.db.read() as conn:
        assert conn.execute(select(func.count()).select_from(event_data)).scalar_one() == 2
        assert conn.execute(select(func.count()).select_from(events)).scalar_one() == 3


def test_aw_events_into_compacted_days(server: Server) -> None:
    _, token = server.enroll()
    w = window(at(0), 60, "code", "a")
    post(server, token, batch(w, presence(at(0), 7200, "not-afk")))
    compact(server.services.db, FAR_FUTURE_MS)
    assert stored(server.services.db) == (0, 2)
    assert post(server, token, batch({**w, "duration": 600}))["updated"] == 1
    assert post(server, token, batch(window(at(20), 60, "vim", "b")))["accepted"] == 1
    assert report(server) == {"code": 600.0, "vim": 60.0}
    compact(server.services.db, FAR_FUTURE_MS)
    assert post(server, token, batch({**w, "duration": 600}))["duplicates"] == 1
    assert sum(stored(server.services.db)) == 3
    assert report(server) == {"code": 600.0, "vim": 60.0}


def test_window_data_without_app_and_title_strings_is_refused_naming_the_event(
    server: Server,
) -> None:
    _, token = server.enroll()
    good = window(at(0), 60, "code", "a")
    for data in ({"app": "code"}, {"app": "code", "title": 5}, {"title": "x", "app": None}):
        bad = {**window(at(1), 60, "x"), "data": data}
        r = ingest(server, token, batch(good, bad))
        assert r.status_code == 422, r.text
        (detail,) = r.json()["detail"]
        assert detail["loc"][:3] == ["events", 1, "aw"]
        assert bad["id"] in detail["msg"] and "'app' and 'title'" in detail["msg"]
    bad_afk = {**presence(at(0), 60, "afk"), "data": {"status": 1}}
    r = ingest(server, token, batch(bad_afk))
    assert r.status_code == 422 and bad_afk["id"] in r.json()["detail"][0]["msg"]
    assert report(server) == {}
    with server.services.db.read() as conn:
        assert conn.execute(select(func.count()).select_from(events)).scalar_one() == 0


def test_aw_data_limits(server: Server) -> None:
    _, token = server.enroll()
    big = aw("b", "x", at(0), 1, blob="x" * wire.MAX_AW_DATA_BYTES)
    deep: Any = 1
    for _ in range(wire.MAX_AW_DEPTH):
        deep = [deep]
    too_deep = aw("b", "x", at(0), 1, deep=deep)
    long_name = aw("b" * (wire.MAX_AW_BUCKET + 1), "x", at(0), 1)
    no_type = aw("b", "", at(0), 1)
    for e in (big, too_deep, long_name, no_type):
        assert ingest(server, token, batch(e)).status_code == 422
    ok: Any = 1
    for _ in range(wire.MAX_AW_DEPTH - 1):
        ok = [ok]
    assert post(server, token, batch(aw("b", "x", at(0), 1, deep=ok)))["accepted"] == 1


def test_a_bucket_keeps_its_type(server: Server) -> None:
    device_id, token = server.enroll()
    post(server, token, batch(aw("mine", "app.editor.activity", at(0), 60, file="a")))
    other = aw("mine", "web.tab.current", at(2), 60, url="x")
    r = ingest(server, token, batch(other))
    assert r.status_code == 422, r.text
    (detail,) = r.json()["detail"]
    assert detail["type"] == "bucket_type_conflict" and other["id"] in detail["msg"]
    # Also within one batch, and also when this process has the bucket cached.
    first = aw("new", "a", at(0), 1)
    r = ingest(server, token, batch(first, {**aw("new", "b", at(1), 1)}))
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == [
        "events",
        1,
        "aw",
        "bucket_type",
    ]
    assert bucket_rows(server, device_id) == {"mine": ("app.editor.activity", "aw-watcher")}
    # The same AW id on two devices: two buckets, each with its own type.
    _, token2 = server.enroll(hostname="pc-2")
    assert post(server, token2, batch(other))["accepted"] == 1


def test_aw_and_native_events_in_one_batch_and_many_buckets(server: Server) -> None:
    _, token = server.enroll()
    evs = [window(at(i), 30, f"app{i % 3}", "t") for i in range(20)]
    evs += [aw(f"bucket-{i}", "x", at(i), 1, i=i) for i in range(30)]
    evs += [presence(at(0), 3600, "not-afk"), focus(at(30), 60, "native")]
    assert post(server, token, batch(*evs)) == {"accepted": 52, "duplicates": 0, "updated": 0}
    assert report(server) == {"app0": 210.0, "app1": 210.0, "app2": 180.0, "native": 60.0}
    later = at(0) + timedelta(hours=5)
    assert post(server, token, batch(aw("bucket-3", "x", later, 1, i=3)))["accepted"] == 1
