"""The ActivityWatch API (/api/0): buckets, events, query2 with the rollup hook,
export and import, on SQLite and PostgreSQL.

Two kinds of tests: in-process ones through the ``server`` fixture, and ones
where the real ``aw-client`` from PyPI talks HTTP to a real ``worklens server``
process. aw-client has no option for an Authorization header: it sends every
request through ``_get``/``_post``/``_delete``, which call ``requests``'
module-level functions. :class:`TokenClient` overrides those three with a
``requests.Session`` that carries the bearer token; every public helper of the
library (get_buckets, get_events, get_eventcount, query, export_all,
export_bucket, import_bucket) is used unchanged on top of them.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import requests
from aw_client import ActivityWatchClient
from aw_client.client import always_raise_for_request_errors

from tests.e2e.harness import ServerProcess, prepare_org
from tests.server.conftest import T0, Server, afk, at, batch, focus
from worklens.query2 import run_query
from worklens.server.aw import OrgSource
from worklens.server.aw import events as aw_events
from worklens.server.aw.buckets import org_buckets
from worklens.server.store import orgs
from worklens.server.store.compaction import compact
from worklens.server.store.db import Database
from worklens.server.store.schema import rollup_dirty

DAY = 86_400_000
FAR_FUTURE_MS = 4_000_000_000_000


def canonical(window: str, afk_bucket: str, keys: str = '["app"]', flood: bool = True) -> list[str]:
    """The AW web UI's time-per-app query over two named buckets."""
    w = f'query_bucket("{window}")'
    a = f'query_bucket("{afk_bucket}")'
    if flood:
        w, a = f"flood({w})", f"flood({a})"
    return [
        f"events = {w};",
        f"not_afk = {a};",
        'not_afk = filter_keyvals(not_afk, "status", ["not-afk"]);',
        "events = filter_period_intersect(events, not_afk);",
        f"RETURN = sort_by_duration(merge_events_by_keys(events, {keys}));",
    ]


def period(start: datetime, end: datetime) -> str:
    return f"{start.isoformat()}/{end.isoformat()}"


def ms(t: datetime) -> int:
    return round(t.timestamp() * 1000)


def dt(t_ms: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=t_ms)


def ingest(server: Server, token: str, events: list[dict[str, Any]]) -> None:
    for i in range(0, len(events), 2000):
        r = server.client.post(
            "/api/v1/ingest",
            json=batch(*events[i : i + 2000]),
            headers={"Authorization": f"Bearer {token}"},
        )
        assert r.status_code == 200, r.text


def org_id(server: Server) -> int:
    with server.services.db.read() as conn:
        return orgs.get_org(conn, server.org).id


def aw_get(server: Server, path: str, **params: Any) -> Any:
    r = server.client.get(f"/api/0/{path}", params=params, headers=server.admin())
    assert r.status_code == 200, r.text
    return r.json()


def by_key(result: list[dict[str, Any]], key: str = "app") -> dict[Any, float]:
    out = {e["data"].get(key): e["duration"] for e in result}
    assert len(out) == len(result)
    return out


# --- buckets and events -----------------------------------------------------------------


def test_buckets_and_events_as_activitywatch_lists_them(server: Server) -> None:
    device_id, token = server.enroll(hostname="laptop")
    ingest(
        server,
        token,
        [
            focus(at(0), 600, "code", "main.py"),
            focus(at(10), 300, "chromium", "docs"),
            focus(at(15), 0, "term", ""),
            afk(at(0), 1200, "active"),
            afk(at(20), 600, "afk"),
        ],
    )
    buckets = aw_get(server, "buckets/")
    assert sorted(buckets) == ["worklens-afk_laptop", "worklens-focus_laptop"]
    window = buckets["worklens-focus_laptop"]
    assert window | {"created": None} == {
        "id": "worklens-focus_laptop",
        "name": "worklens-focus_laptop",
        "type": "currentwindow",
        "client": "worklens-agent",
        "hostname": "laptop",
        "created": None,
        "last_updated": at(15).isoformat(),
        "data": {},
        "metadata": {"start": at(0).isoformat(), "end": at(15).isoformat()},
    }
    assert aw_get(server, "buckets/worklens-focus_laptop") == window

    evs = aw_get(server, "buckets/worklens-focus_laptop/events")
    assert [(e["timestamp"], e["duration"], e["data"]) for e in evs] == [
        (at(15).isoformat(), 0.0, {"app": "term", "title": ""}),  # newest first
        (at(10).isoformat(), 300.0, {"app": "chromium", "title": "docs"}),
        (at(0).isoformat(), 600.0, {"app": "code", "title": "main.py"}),
    ]
    assert all(len(e["id"]) == 32 for e in evs)
    # A range cuts events to it; limit keeps the newest.
    cut = aw_get(
        server,
        "buckets/worklens-focus_laptop/events",
        start=at(5).isoformat(),
        end=at(12).isoformat(),
    )
    assert [(e["timestamp"], e["duration"]) for e in cut] == [
        (at(10).isoformat(), 120.0),
        (at(5).isoformat(), 300.0),
    ]
    newest = aw_get(server, "buckets/worklens-focus_laptop/events", limit=2)
    assert [e["data"]["app"] for e in newest] == ["term", "chromium"]
    assert aw_get(server, "buckets/worklens-focus_laptop/events/count") == 3
    assert aw_get(server, "buckets/worklens-focus_laptop/events/count", end=at(12).isoformat()) == 2
    # Presence in AW's words.
    statuses = [e["data"] for e in aw_get(server, "buckets/worklens-afk_laptop/events")]
    assert statuses == [{"status": "afk"}, {"status": "not-afk"}]

    r = server.client.get("/api/0/buckets/nope/events", headers=server.admin())
    assert r.status_code == 404 and r.json()["error"] == "there is no bucket 'nope'"
    r = server.client.get(
        "/api/0/buckets/worklens-focus_laptop/events",
        params={"start": "yesterday"},
        headers=server.admin(),
    )
    assert r.status_code == 400 and "ISO 8601" in r.json()["error"]
    info = aw_get(server, "info")
    assert info["testing"] is False and set(info) == {"hostname", "version", "testing", "device_id"}
    assert device_id > 0


def test_overlapping_afk_events_are_served_as_reports_read_them(server: Server) -> None:
    """The agent dates going afk back to the last input, so the new afk event
    overlaps the end of the active one; latest start wins, as in reports."""
    _, token = server.enroll(hostname="laptop")
    ingest(
        server,
        token,
        [
            afk(at(0), 600, "active"),
            afk(at(7), 300, "afk"),  # detected at 10, dated back to 7
            afk(at(12), 60, "active"),
            focus(at(0), 780, "code"),
        ],
    )
    evs = aw_get(server, "buckets/worklens-afk_laptop/events")
    assert [(e["timestamp"], e["duration"], e["data"]["status"]) for e in evs] == [
        (at(12).isoformat(), 60.0, "not-afk"),
        (at(7).isoformat(), 300.0, "afk"),
        (at(0).isoformat(), 420.0, "not-afk"),
    ]
    q = canonical("worklens-focus_laptop", "worklens-afk_laptop")
    r = server.client.post(
        "/api/0/query/",
        json={"timeperiods": [period(T0, T0 + timedelta(hours=1))], "query": q},
        headers=server.admin(),
    )
    assert r.json() == [
        [{"id": None, "timestamp": T0.isoformat(), "duration": 480.0, "data": {"app": "code"}}]
    ]


def test_a_bucket_name_on_two_devices_gets_the_device_id_on_the_later_one(
    server: Server,
) -> None:
    d1, t1 = server.enroll(hostname="same")
    d2, t2 = server.enroll(hostname="same")
    ingest(server, t1, [focus(at(0), 60, "one")])
    ingest(server, t2, [focus(at(0), 60, "two")])
    buckets = aw_get(server, "buckets/")
    assert sorted(buckets) == ["worklens-focus_same", f"worklens-focus_same@{d2}"]
    assert {b["name"] for b in buckets.values()} == {"worklens-focus_same"}
    first = aw_get(server, "buckets/worklens-focus_same/events")
    second = aw_get(server, f"buckets/worklens-focus_same@{d2}/events")
    assert (first[0]["data"]["app"], second[0]["data"]["app"]) == ("one", "two")
    assert d1 < d2


# --- reading in slices ------------------------------------------------------------------------


def random_stream(rng: random.Random, start_ms: int, n: int) -> list[tuple[int, int, str]]:
    """(start ms, duration ms, value): mostly one after the other, some overlaps,
    some gaps (small and large), some events inside others, some zero-length."""
    out = []
    cursor = start_ms
    for _ in range(n):
        roll = rng.random()
        if roll < 0.45:
            s = cursor
        elif roll < 0.6:
            s = cursor - rng.randrange(1, 40_000)  # overlaps the stream's end
        elif roll < 0.7:
            s = cursor + rng.randrange(1, 5_000)  # a gap flood would fill
        elif roll < 0.8:
            s = cursor + rng.randrange(6_000, 600_000)
        else:
            s = cursor - rng.randrange(0, 300_000)  # anywhere in the recent past
        d = 0 if rng.random() < 0.05 else int(rng.lognormvariate(10, 1.5)) + 1
        out.append((max(s, start_ms), d, rng.choice("abcde")))
        cursor = max(cursor, s + d)
    return out


@pytest.mark.parametrize("seed", [1, 2])
def test_reading_in_slices_equals_one_read(
    server: Server, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(seed)
    _, token = server.enroll(hostname="h")
    stream = random_stream(rng, ms(T0), 300)
    ingest(
        server,
        token,
        [focus(dt(s), d / 1000, v) for s, d, v in stream]
        + [afk(dt(s), d / 1000, "active" if v < "c" else "afk") for s, d, v in stream],
    )
    db = server.services.db
    if seed == 2:
        compact(db, FAR_FUTURE_MS)
    with db.read() as conn:
        buckets = list(org_buckets(conn, org_id(server)).values())
    end = max(s + d for s, d, _ in stream) + 1
    # Slices from 2 s to 30 s instead of an hour to a week: many boundaries.
    monkeypatch.setattr(aw_events, "HOUR_MS", 2_000)
    monkeypatch.setattr(aw_events, "MAX_STEP_MS", 30_000)
    for bucket in buckets:
        for lo, hi in [
            (ms(T0) - 1000, end),
            *[sorted(rng.sample(range(ms(T0), end), 2)) for _ in range(3)],
        ]:
            with db.read() as conn:
                whole = aw_events.read_slice(conn, bucket, lo, hi, lo, hi)
            sliced = list(aw_events.iter_pieces(db, bucket, lo, hi, newest_first=False))
            newest = list(aw_events.iter_pieces(db, bucket, lo, hi, newest_first=True))
            assert sliced == whole and newest == whole[::-1], (bucket.name, lo, hi)


# --- query2 and the rollup hook -----------------------------------------------------------------


class GenericSource(OrgSource):
    """The same source without the hook: query2 evaluates everything itself."""

    answer_plan = None


def random_history(
    rng: random.Random, start: datetime, days: int, smooth: bool
) -> list[dict[str, Any]]:
    """Focus and afk streams over ``days`` days: runs of events one after the
    other, overlapping (agent-style and arbitrary), with gaps between runs.
    ``smooth``: no gap of 5 s or less and no zero-length event, so AW's flood
    changes nothing; else anything goes."""
    events: list[dict[str, Any]] = []
    apps = [("code", "a.py"), ("code", "b.py"), ("chromium", "docs"), ("term", ""), ("vlc", "x")]
    for kind in ("focus", "afk"):
        cursor = run = ms(start) + rng.randrange(0, 3_600_000)  # covered: [run, cursor)
        while cursor < ms(start) + days * DAY:
            roll = rng.random()
            if roll < 0.5:
                s = cursor
            elif roll < 0.7:  # overlaps the run (never reaching back over a gap)
                s = max(run, cursor - rng.randrange(1, 120_000))
            elif roll < 0.85 or smooth:
                s = run = cursor + rng.randrange(6_000, 3_600_000)
            else:
                s = run = cursor + rng.randrange(1, 5_000)
            if kind == "focus":
                d = int(rng.lognormvariate(11, 1.3)) + 1
                if not smooth and rng.random() < 0.03:
                    d = 0
                app, title = rng.choice(apps)
                events.append(focus(dt(s), d / 1000, app, title))
            else:
                d = int(rng.lognormvariate(13, 1.0)) + 1
                events.append(afk(dt(s), d / 1000, rng.choice(["active", "active", "afk"])))
            cursor = max(cursor, s + d)
    return events


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_the_hook_answers_what_the_generic_evaluation_gives(server: Server, seed: int) -> None:
    rng = random.Random(seed)
    tz = ["UTC", "Europe/Berlin", "Asia/Kolkata", "America/St_Johns"][seed - 1]
    org = org_id(server)
    with server.services.db.write() as conn:
        orgs.set_timezone(conn, org, tz, server.services.rollups)
    _, token = server.enroll(hostname="host")
    start = T0 - timedelta(days=4)
    smooth = seed % 2 == 1
    ingest(server, token, random_history(rng, start, 4, smooth))
    if seed >= 3:  # the older days as chunks
        compact(server.services.db, ms(T0 - timedelta(days=1)))
    periods = [(start - timedelta(hours=2), T0 + timedelta(days=1))]
    for _ in range(4):
        a = ms(start) + rng.randrange(0, 4 * DAY)
        periods.append((dt(a), dt(a + rng.choice([rng.randrange(1, 3 * DAY), 3_600_000, DAY]))))
    args = (server.services.db, server.services.rollups, org_id(server))
    variants = [("app", False), ("title", False)] + ([("app", True)] if smooth else [])
    for key, flood in variants:
        q = canonical("worklens-focus_host", "worklens-afk_host", f'["{key}"]', flood)
        hooked = OrgSource(*args)
        answered = run_query(q, periods, hooked)
        assert hooked.answered == len(periods)
        generic = run_query(q, periods, GenericSource(*args))
        for p, got, want in zip(periods, answered, generic, strict=True):
            assert by_key(got, key) == by_key(want, key), (key, flood, p)
            assert [e["duration"] for e in got] == [e["duration"] for e in want]
            assert all(e["timestamp"] == p[0].isoformat() for e in got)
        assert any(answered), "the data should give some active time"


def test_flood_over_a_small_gap_is_where_the_hook_differs(server: Server) -> None:
    """Documented: WorkLens does not fill gaps, AW's flood does (up to 5 s)."""
    _, token = server.enroll(hostname="host")
    ingest(
        server,
        token,
        [focus(at(0), 60, "code"), focus(at(1.05), 60, "vlc"), afk(at(0), 600, "active")],
    )
    q = canonical("worklens-focus_host", "worklens-afk_host")
    periods = [(T0, T0 + timedelta(hours=1))]
    args = (server.services.db, server.services.rollups, org_id(server))
    assert by_key(run_query(q, periods, OrgSource(*args))[0]) == {"code": 60.0, "vlc": 60.0}
    assert by_key(run_query(q, periods, GenericSource(*args))[0]) == {"code": 63.0, "vlc": 60.0}
    no_flood = canonical("worklens-focus_host", "worklens-afk_host", flood=False)
    assert by_key(run_query(no_flood, periods, OrgSource(*args))[0]) == by_key(
        run_query(no_flood, periods, GenericSource(*args))[0]
    )


def test_the_hook_declines_what_it_cannot_answer_exactly(server: Server) -> None:
    d1, t1 = server.enroll(hostname="one")
    _, t2 = server.enroll(hostname="two")
    ingest(server, t1, [focus(at(0), 60, "code", "x"), afk(at(0), 60, "active")])
    ingest(server, t2, [focus(at(0), 60, "vlc", "y"), afk(at(0), 60, "active")])
    args = (server.services.db, server.services.rollups, org_id(server))
    hour = [(T0, T0 + timedelta(hours=1))]
    declined = {
        "unsorted": [
            *canonical("worklens-focus_one", "worklens-afk_one")[:-1],
            'RETURN = merge_events_by_keys(events, ["app"]);',
        ],
        "two keys": canonical("worklens-focus_one", "worklens-afk_one", '["app", "title"]'),
        "two devices": canonical("worklens-focus_one", "worklens-afk_two"),
    }
    for name, q in declined.items():
        source = OrgSource(*args)
        assert run_query(q, hour, source) == run_query(q, hour, GenericSource(*args)), name
        assert source.answered == 0, name
    # Sub-millisecond periods are not what rollups store.
    source = OrgSource(*args)
    odd = [(T0 + timedelta(microseconds=1), T0 + timedelta(hours=1))]
    run_query(canonical("worklens-focus_one", "worklens-afk_one"), odd, source)
    assert source.answered == 0
    # A second window bucket on the device: reports merge both, the query reads one.
    export = aw_get(server, "buckets/worklens-focus_two/export")
    r = server.client.post(f"/api/0/import?device={d1}", json=export, headers=server.admin())
    assert r.status_code == 200, r.text
    source = OrgSource(*args)
    run_query(canonical("worklens-focus_one", "worklens-afk_one"), hour, source)
    assert source.answered == 0


def test_query_errors_name_the_line(server: Server) -> None:
    def post(body: dict[str, Any]) -> httpx.Response:
        return server.client.post("/api/0/query/", json=body, headers=server.admin())

    day = [period(T0, T0 + timedelta(days=1))]
    r = post({"timeperiods": day, "query": ["x = 1;", "RETURN = nosuch(x);"]})
    assert r.status_code == 400 and r.json()["error"].startswith("line 2: unknown function")
    r = post({"timeperiods": day, "query": ['RETURN = query_bucket("missing");']})
    assert r.status_code == 400
    assert r.json()["error"] == "line 1: there is no bucket named 'missing'"
    r = post({"timeperiods": ["not a period"], "query": ["RETURN = 1;"]})
    assert r.status_code == 400 and "invalid time period" in r.json()["error"]
    assert post({"timeperiods": day, "query": "RETURN = 1 + 1;"}).json() == [2]
    assert post({"query": ["RETURN = 1;"]}).status_code == 422


# --- import and export ----------------------------------------------------------------------


def aw_file(*buckets: tuple[str, str, list[dict[str, Any]]]) -> dict[str, Any]:
    return {
        "buckets": {
            bid: {
                "id": bid,
                "created": "2026-01-01T00:00:00+00:00",
                "name": None,
                "type": btype,
                "client": "aw-watcher",
                "hostname": "elsewhere",
                "events": evs,
            }
            for bid, btype, evs in buckets
        }
    }


def aw_event(minutes: float, seconds: float, **data: Any) -> dict[str, Any]:
    return {"timestamp": at(minutes).isoformat(), "duration": seconds, "data": data}


def dirty(db: Database, device_id: int) -> int:
    with db.read() as conn:
        rows = conn.execute(rollup_dirty.select().where(rollup_dirty.c.device_id == device_id))
        return len(rows.all())


def test_an_imported_activitywatch_file_counts_in_reports_and_imports_once(server: Server) -> None:
    device_id, _ = server.enroll(hostname="laptop")
    window = [
        {**aw_event(0, 600, app="code", title="a"), "id": 1},
        {**aw_event(10, 300.5, app="chromium", title="b"), "id": 2},
    ]
    presence = [aw_event(0, 720, status="not-afk"), aw_event(12, 600, status="afk")]
    file = aw_file(
        ("aw-watcher-window_laptop", "currentwindow", window),
        ("aw-watcher-afk_laptop", "afkstatus", presence),
        ("aw-watcher-input_laptop", "os.hid.input", [aw_event(1, 5, presses=3)]),
    )
    url = f"/api/0/import?device={device_id}"
    r = server.client.post(url, json=file, headers=server.admin())
    assert r.json() == {"buckets": 3, "accepted": 5, "duplicates": 0, "updated": 0}
    params = {"group_by": "app", "start": T0.isoformat(), "end": at(60).isoformat()}
    rep = server.client.get("/api/v1/reports/time", params=params, headers=server.admin())
    assert {row["key"]: row["seconds"] for row in rep.json()["rows"]} == {
        "code": 600.0,
        "chromium": 120.0,
    }
    # The canonical query over the imported buckets is answered from rollups and agrees.
    q = canonical("aw-watcher-window_laptop", "aw-watcher-afk_laptop")
    got = server.client.post(
        "/api/0/query/",
        json={"timeperiods": [period(T0, at(60))], "query": q},
        headers=server.admin(),
    ).json()
    assert by_key(got[0]) == {"code": 600.0, "chromium": 120.0}

    # Again: nothing changes, nothing is marked for the rollups.
    db = server.services.db
    server.services.rollups.refresh()
    r = server.client.post(url, json=file, headers=server.admin())
    assert r.json() == {"buckets": 3, "accepted": 0, "duplicates": 5, "updated": 0}
    assert dirty(db, device_id) == 0
    # Into compacted days too; a longer copy of an event (same id) extends it.
    compact(db, FAR_FUTURE_MS)
    window[1]["duration"] = 400.5
    r = server.client.post(url, json=file, headers=server.admin())
    assert r.json() == {"buckets": 3, "accepted": 0, "duplicates": 4, "updated": 1}
    assert dirty(db, device_id) > 0
    evs = aw_get(server, "buckets/aw-watcher-window_laptop/events")
    assert [(e["timestamp"], e["duration"]) for e in evs] == [
        (at(10).isoformat(), 400.5),
        (at(0).isoformat(), 600.0),
    ]
    hid = aw_get(server, "buckets/aw-watcher-input_laptop")
    assert (hid["type"], hid["client"], hid["hostname"]) == ("os.hid.input", "aw-watcher", "laptop")


def test_a_bad_import_is_refused_whole_with_a_message_naming_the_culprit(server: Server) -> None:
    device_id, _ = server.enroll(hostname="laptop")
    good = ("aw-watcher-window_x", "currentwindow", [aw_event(0, 60, app="code")])

    def post(body: Any, device: Any = device_id) -> httpx.Response:
        return server.client.post(
            "/api/0/import", params={"device": device}, json=body, headers=server.admin()
        )

    r = post(aw_file(good, ("other", "x", [aw_event(0, 1), {"timestamp": "soon"}])))
    assert r.status_code == 400
    assert r.json()["error"] == "bucket 'other', event 1: invalid event timestamp 'soon'"
    r = post(aw_file(good, ("neg", "x", [aw_event(0, -1)])))
    assert r.status_code == 400 and r.json()["error"].startswith("bucket 'neg', event 0: duration")
    assert post({"no": "buckets"}).status_code == 400
    assert post(aw_file(("t", "", []))).json()["error"].startswith("bucket 't': 'type'")
    assert aw_get(server, "buckets/") == {}  # nothing of any of it was stored

    assert post(aw_file(good)).status_code == 200
    r = post(aw_file(("aw-watcher-window_x", "afkstatus", [])))
    assert r.status_code == 409 and "type 'currentwindow'" in r.json()["error"]
    assert post(aw_file(good), device=device_id + 100).status_code == 404
    assert server.client.post("/api/0/import", json={}, headers=server.admin()).status_code == 422


def test_export_then_import_into_another_device_gives_the_same_events(server: Server) -> None:
    _, token = server.enroll(hostname="src")
    target, _ = server.enroll(hostname="dst")
    rng = random.Random(5)
    ingest(server, token, random_history(rng, T0 - timedelta(days=2), 2, smooth=False))
    compact(server.services.db, ms(T0 - timedelta(days=1)))
    exported = aw_get(server, "export")
    assert sorted(exported["buckets"]) == ["worklens-afk_src", "worklens-focus_src"]
    r = server.client.post(f"/api/0/import?device={target}", json=exported, headers=server.admin())
    assert r.status_code == 200 and r.json()["duplicates"] == 0
    for name in ("worklens-afk_src", "worklens-focus_src"):
        copy = aw_get(server, f"buckets/{name}@{target}/export")["buckets"][f"{name}@{target}"]
        original = exported["buckets"][name]
        assert copy["events"] == original["events"] and len(copy["events"]) > 100
        assert copy["hostname"] == "dst" and copy["type"] == original["type"]


# --- access --------------------------------------------------------------------------------------


def test_reads_need_a_token_of_the_organization_and_import_an_admin(server: Server) -> None:
    device, token = server.enroll(hostname="mine")
    ingest(server, token, [focus(at(0), 60, "code")])
    _, other = server.new_org("globex")
    with server.services.db.write() as conn:
        org = orgs.get_org(conn, server.org)
        viewer = orgs.create_token(conn, org, "viewer", int(time.time() * 1000))
    as_viewer = {"Authorization": f"Bearer {viewer}"}
    for path in ("info", "buckets/", "buckets/worklens-focus_mine/events", "export"):
        assert server.client.get(f"/api/0/{path}").status_code == 401
        # A viewer reads the whole organization, here as in reports (server/access.py).
        assert server.client.get(f"/api/0/{path}", headers=as_viewer).status_code == 200
    r = server.client.post(
        f"/api/0/import?device={device}", json={"buckets": {}}, headers=as_viewer
    )
    assert r.status_code == 403
    theirs = {"Authorization": f"Bearer {other}"}
    assert server.client.get("/api/0/buckets/", headers=theirs).json() == {}
    assert server.client.get("/api/0/export", headers=theirs).json() == {"buckets": {}}
    r = server.client.get("/api/0/buckets/worklens-focus_mine/events", headers=theirs)
    assert r.status_code == 404


# --- the real aw-client against a real server ----------------------------------------------


class TokenClient(ActivityWatchClient):
    """aw-client with a bearer token (see the module docstring)."""

    def __init__(self, base_url: str, token: str) -> None:
        url = urlsplit(base_url)
        super().__init__(
            f"worklens-test-{uuid.uuid4().hex[:8]}",
            host=url.hostname,
            port=url.port,
            protocol=url.scheme,
        )
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    @always_raise_for_request_errors
    def _get(self, endpoint: str, params: dict[str, Any] | None = None) -> requests.Response:
        return self.session.get(self._url(endpoint), params=params)

    @always_raise_for_request_errors
    def _post(
        self, endpoint: str, data: Any, params: dict[str, Any] | None = None
    ) -> requests.Response:
        return self.session.post(
            self._url(endpoint),
            data=json.dumps(data).encode(),
            headers={"Content-Type": "application/json"},
            params=params,
        )

    @always_raise_for_request_errors
    def _delete(self, endpoint: str, data: Any = None) -> requests.Response:
        return self.session.delete(self._url(endpoint), json=data or {})


class Live:
    def __init__(self, proc: ServerProcess, secret: str, token: str) -> None:
        self.proc, self.secret, self.token = proc, secret, token
        self.http = httpx.Client(base_url=proc.url, timeout=30)

    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def client(self, token: str | None = None) -> TokenClient:
        return TokenClient(self.proc.url, token or self.token)

    def device(self, hostname: str, events: list[dict[str, Any]]) -> int:
        r = self.http.post(
            "/api/v1/enroll",
            json={"enroll_secret": self.secret, "hardware_uuid": hostname, "hostname": hostname},
        )
        device_id, token = r.json()["device_id"], r.json()["token"]
        for i in range(0, len(events), 2000):
            r = self.http.post(
                "/api/v1/ingest",
                json=batch(*events[i : i + 2000]),
                headers={"Authorization": f"Bearer {token}"},
            )
            assert r.status_code == 200, r.text
        return int(device_id)


@pytest.fixture
def live(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Live]:
    # aw-client keeps a config file, a lock file and a queue under the XDG dirs.
    for var in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    secret, token = prepare_org(db_url)
    proc = ServerProcess(db_url, tmp_path / "server.log")
    proc.start()
    try:
        yield Live(proc, secret, token)
    finally:
        proc.stop()


def test_aw_client_lists_buckets_reads_and_counts_events(live: Live) -> None:
    live.device(
        "laptop",
        [focus(at(0), 600, "code", "a"), focus(at(10), 60, "vlc", "b"), afk(at(0), 900, "active")],
    )
    client = live.client()
    buckets = client.get_buckets()
    assert sorted(buckets) == ["worklens-afk_laptop", "worklens-focus_laptop"]
    assert buckets["worklens-focus_laptop"]["type"] == "currentwindow"
    events = client.get_events("worklens-focus_laptop")
    assert [(e.data["app"], e.duration.total_seconds(), e.timestamp) for e in events] == [
        ("vlc", 60.0, at(10)),
        ("code", 600.0, at(0)),
    ]
    assert [e.data["app"] for e in client.get_events("worklens-focus_laptop", limit=1)] == ["vlc"]
    part = client.get_events("worklens-focus_laptop", start=at(5), end=at(10.5))
    assert [e.duration.total_seconds() for e in part] == [30.0, 300.0]
    assert client.get_eventcount("worklens-focus_laptop") == 2
    assert client.get_eventcount("worklens-focus_laptop", start=at(10)) == 1
    assert client.get_info()["testing"] is False


def test_aw_client_time_per_app_query_agrees_with_the_time_report(live: Live) -> None:
    rng = random.Random(11)
    device = live.device("laptop", random_history(rng, T0, 3, smooth=True))
    start, end = T0 + timedelta(hours=1, minutes=7), T0 + timedelta(days=2, hours=5)
    client = live.client()
    query = "\n".join(canonical("worklens-focus_laptop", "worklens-afk_laptop"))
    [result] = client.query(query, [(start, end)])
    r = live.http.get(
        "/api/v1/reports/time",
        params={
            "group_by": "app",
            "start": start.isoformat(),
            "end": end.isoformat(),
            "device": device,
        },
        headers=live.admin(),
    )
    report = [(row["key"], row["seconds"]) for row in r.json()["rows"]]
    assert [(e["data"]["app"], e["duration"]) for e in result] == report and report
    with pytest.raises(requests.HTTPError) as err:
        client.query("x = 1;\nRETURN = x +;", [(start, end)])
    assert err.value.response.status_code == 400
    assert err.value.response.json()["error"].startswith("line 2: ")


def test_aw_client_export_and_import_into_another_device(live: Live) -> None:
    rng = random.Random(3)
    live.device("src", random_history(rng, T0, 1, smooth=False))
    target = live.device("dst", [])
    client = live.client()
    everything = client.export_all()
    assert sorted(everything["buckets"]) == ["worklens-afk_src", "worklens-focus_src"]
    # aw-client's import_bucket posts one bucket; the device goes in the query string.
    importer = live.client()
    importer.session.params = {"device": target}
    for bucket in everything["buckets"].values():
        importer.import_bucket(bucket)
    for bucket in everything["buckets"].values():
        importer.import_bucket(bucket)  # again: changes nothing
    for name, original in everything["buckets"].items():
        copy = client.export_bucket(f"{name}@{target}")["buckets"][f"{name}@{target}"]
        assert copy["events"] == original["events"] and copy["events"]
    assert client.get_eventcount(f"worklens-focus_src@{target}") == len(
        everything["buckets"]["worklens-focus_src"]["events"]
    )


def test_aw_client_sees_only_its_organization_and_needs_a_token(live: Live) -> None:
    live.device("laptop", [focus(at(0), 60, "code"), afk(at(0), 60, "active")])
    db = Database(live.proc.db_url)
    try:
        with db.write() as conn:
            other, _ = orgs.create_org(conn, "globex", int(time.time() * 1000))
            theirs = orgs.create_token(conn, other, "admin", int(time.time() * 1000))
            mine = orgs.get_org(conn, "acme")
            viewer = orgs.create_token(conn, mine, "viewer", int(time.time() * 1000))
    finally:
        db.dispose()
    stranger = live.client(theirs)
    assert stranger.get_buckets() == {}
    assert stranger.export_all() == {"buckets": {}}
    with pytest.raises(requests.HTTPError) as err:
        stranger.get_events("worklens-focus_laptop")
    assert err.value.response.status_code == 404
    with pytest.raises(requests.HTTPError) as err:
        stranger.query('RETURN = query_bucket("worklens-focus_laptop");', [(T0, at(60))])
    assert err.value.response.status_code == 400
    # A viewer token reads the organization (server/access.py); import needs an admin.
    assert sorted(live.client(viewer).get_buckets()) == [
        "worklens-afk_laptop",
        "worklens-focus_laptop",
    ]
    with pytest.raises(requests.HTTPError) as err:
        ActivityWatchClient("no-token", host="127.0.0.1", port=live.proc.port).get_buckets()
    assert err.value.response.status_code == 401
    assert sorted(live.client().get_buckets()) == ["worklens-afk_laptop", "worklens-focus_laptop"]
