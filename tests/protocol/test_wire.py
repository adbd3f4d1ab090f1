"""The agent's pydantic-free wire builders and readers agree with the protocol models.

For every input, ``wire`` either gives exactly what the pydantic model gives
(compared as msgpack bytes, so an int where the model has a float, a key
order or a NaN would show) or the model's own ValidationError. The fast paths
are also checked alone, on the values the agent really produces, with the
fallback to the model switched off.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from unittest import mock

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from worklens.protocol import codec, messages, wire

EVENT_MODELS: dict[type, type[BaseModel]] = {
    wire.FocusData: messages.FocusEvent,
    wire.AfkData: messages.AfkEvent,
    wire.HostData: messages.HostEvent,
    wire.HeartbeatData: messages.HeartbeatEvent,
    wire.AwData: messages.AwEvent,
}


def packed(obj: Any) -> bytes:
    data: bytes = msgpack.packb(obj, use_bin_type=True)
    return data


def outcome(build: Callable[[], Any]) -> tuple[str, Any]:
    """("ok", msgpack bytes of the result) or ("invalid", None) on a ValidationError."""
    try:
        result = build()
    except ValidationError:
        return ("invalid", None)
    return ("ok", packed(result))


def by_model(ev: wire.Event[Any]) -> dict[str, Any]:
    model = EVENT_MODELS[type(ev.data)]
    fields = ev.data._asdict() if type(ev.data) is wire.AwData else {"data": ev.data._asdict()}
    dumped: dict[str, Any] = model(
        id=ev.id, start=ev.start, duration=ev.duration, **fields
    ).model_dump(mode="json")
    return dumped


# --- strategies: the ordinary values and everything around the models' limits -------

MAX = wire.MAX_EVENT_DURATION_S
floats_near_limits = st.sampled_from(
    [0, 0.0, -0.0, -1e-9, 1e-300, 99.99, 100, 100.0, 100.0000001, MAX, MAX + 1e-6, 1e300]
)
any_number = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(10**6), 10**6),
    floats_near_limits,
)
odd_values = st.sampled_from([None, True, False, "5", "x", b"5", [], {}])
numbers = st.one_of(any_number, any_number, odd_values)
optional_numbers = st.one_of(st.none(), numbers)


def texts_around(limit: int) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.text(max_size=40),
        st.integers(limit - 2, limit + 2).map(lambda n: "é" * n),
        st.sampled_from(["\ud800", "ok\udfffok", "tab\there", "日本語 — Résumé"]),
        odd_values,
    )


timezones = st.one_of(
    st.none(),
    st.just(UTC),
    st.timedeltas(min_value=timedelta(hours=-23), max_value=timedelta(hours=23)).map(timezone),
    st.timezones(),
)
starts = st.one_of(
    st.datetimes(
        min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1), timezones=timezones
    ),
    st.sampled_from(["2026-11-02T09:00:00+01:00", 0, None]),
)
ids = st.one_of(st.uuids(), st.uuids().map(str), st.sampled_from(["nope", 5]))
durations = st.one_of(st.floats(0, MAX), numbers)

# JSON values as AW clients send them, and everything just outside what AW data allows.
json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
odd_leaves = st.sampled_from(
    [
        float("nan"),
        float("inf"),
        2**64,
        -(2**63) - 1,
        "bad\ud800",
        (1, 2),
        b"x",
        {1: "int key"},
        {"k": {"deep": [[[[[[[1]]]]]]]}},
        "x" * (wire.MAX_AW_DATA_BYTES + 1),
        "é" * (wire.MAX_AW_DATA_BYTES // 2 - 4),
        "é" * (wire.MAX_AW_DATA_BYTES // 2 - 8),
    ]
)


def json_trees(leaves: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(
        leaves,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
        max_leaves=8,
    )


aw_other_types = st.sampled_from(["app.editor.activity", "x"])
aw_types = st.one_of(
    st.sampled_from(["currentwindow", "afkstatus", "web.tab.current"]), aw_other_types
)
aw_window_data = st.fixed_dictionaries(
    {"app": st.text(max_size=wire.MAX_APP), "title": st.text(max_size=wire.MAX_TITLE)},
    optional={"url": st.text(max_size=30), "incognito": st.booleans()},
)
aw_afk_data = st.fixed_dictionaries({"status": st.sampled_from(["afk", "not-afk"])})
aw_web_data = st.fixed_dictionaries(
    {"url": st.text(max_size=60)},
    optional={"title": st.text(max_size=30), "audible": st.booleans(), "incognito": st.booleans()},
)
aw_any_data = st.dictionaries(st.text(max_size=10), json_trees(json_leaves), max_size=5)
aw_payloads = st.one_of(
    st.builds(
        wire.AwData,
        st.just("aw-watcher-window_h"),
        st.just("currentwindow"),
        st.just("aw-watcher-window"),
        aw_window_data,
    ),
    st.builds(
        wire.AwData,
        st.just("aw-watcher-afk_h"),
        st.just("afkstatus"),
        st.just("aw-watcher-afk"),
        aw_afk_data,
    ),
    st.builds(
        wire.AwData,
        st.just("aw-watcher-web-chrome"),
        st.just("web.tab.current"),
        st.just("aw-client-web"),
        aw_web_data,
    ),
    st.builds(
        wire.AwData,
        st.text(min_size=1, max_size=40),
        aw_other_types,
        st.text(max_size=20),
        aw_any_data,
    ),
)
odd_aw_payloads = st.builds(
    wire.AwData,
    st.one_of(texts_around(wire.MAX_AW_BUCKET), st.just("")),
    st.one_of(aw_types, texts_around(wire.MAX_AW_BUCKET_TYPE), st.just("")),
    texts_around(wire.MAX_AW_CLIENT),
    st.one_of(
        aw_window_data,
        aw_any_data,
        st.dictionaries(
            st.sampled_from(["app", "title", "status", "url", "x"]),
            json_trees(st.one_of(json_leaves, odd_leaves)),
            max_size=4,
        ),
        st.fixed_dictionaries(
            {"app": texts_around(wire.MAX_APP), "title": texts_around(wire.MAX_TITLE)}
        ),
        odd_values,
    ),
)

payloads = st.one_of(
    aw_payloads,
    odd_aw_payloads,
    st.builds(wire.FocusData, app=texts_around(wire.MAX_APP), title=texts_around(wire.MAX_TITLE)),
    st.builds(wire.AfkData, status=st.sampled_from(["afk", "active", "asleep", "AFK", 1, None])),
    st.builds(
        wire.HostData,
        cpu_percent=numbers,
        mem_percent=numbers,
        swap_percent=optional_numbers,
        disk_percent=optional_numbers,
        load1=optional_numbers,
        load5=optional_numbers,
        load15=optional_numbers,
        uptime_s=optional_numbers,
        temperature_c=optional_numbers,
    ),
    st.builds(
        wire.HeartbeatData,
        agent_version=texts_around(wire.MAX_AGENT_VERSION),
        spool_depth=numbers,
        dropped=numbers,
    ),
)
events = st.builds(wire.Event, id=ids, start=starts, duration=durations, data=payloads)


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events)
def test_every_event_is_what_the_model_gives(ev: wire.Event[Any]) -> None:
    assert outcome(ev.to_wire) == outcome(lambda: by_model(ev))


# --- the fast path alone, on what the agent produces -----------------------------------

real_starts = st.datetimes(
    min_value=datetime(2000, 1, 1),
    max_value=datetime(2100, 1, 1),
    timezones=st.one_of(st.just(UTC), st.timezones()),
)
percent = st.one_of(st.floats(0, 100), st.integers(0, 100))
positive = st.one_of(st.floats(0, 1e12), st.integers(0, 10**9))
real_payloads = st.one_of(
    aw_payloads,
    st.builds(
        wire.FocusData,
        app=st.text(max_size=wire.MAX_APP),
        title=st.text(max_size=wire.MAX_TITLE),
    ),
    st.builds(wire.AfkData, status=st.sampled_from(["afk", "active"])),
    st.builds(
        wire.HostData,
        cpu_percent=percent,
        mem_percent=percent,
        swap_percent=st.none() | percent,
        disk_percent=st.none() | percent,
        load1=st.none() | positive,
        load5=st.none() | positive,
        load15=st.none() | positive,
        uptime_s=st.none() | positive,
        # The collector reports only finite readings (NaN is covered above).
        temperature_c=st.none() | st.floats(-300, 300) | st.integers(-300, 300),
    ),
    st.builds(
        wire.HeartbeatData,
        agent_version=st.text(max_size=wire.MAX_AGENT_VERSION),
        spool_depth=st.integers(0, 10**9),
        dropped=st.integers(0, 10**9),
    ),
)
real_events = st.builds(
    wire.Event,
    id=st.uuids(),
    start=real_starts,
    duration=st.one_of(st.floats(0, MAX), st.integers(0, int(MAX))),
    data=real_payloads,
)


@pytest.fixture
def no_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"fast path not taken for {args}")

    monkeypatch.setattr(wire, "_event_via_model", refuse)


@settings(
    max_examples=2000,
    deadline=None,
    # The patch stays in place for all examples, which is the point.
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(ev=real_events)
def test_the_agents_events_take_the_fast_path_and_round_trip(
    ev: wire.Event[Any], no_fallback: None
) -> None:
    built = ev.to_wire()
    assert packed(built) == packed(by_model(ev))
    # It is a valid event as the server reads it, through either encoding.
    for received in (codec.unpack(codec.pack(built)), codec.from_json(codec.to_json(built))):
        model = messages.event_adapter.validate_python(received)
        assert packed(model.model_dump(mode="json")) == packed(built)


def test_builds_a_batch_and_its_frame() -> None:
    now = datetime(2026, 11, 2, 9, 0, 0, 120, tzinfo=timezone(timedelta(hours=1)))
    evs = [
        wire.Event(uuid.uuid4(), now, 12.5, wire.FocusData("code", "main.py — 日本語")),
        wire.Event(uuid.uuid4(), now, 0, wire.AfkData("afk")),
        wire.Event(uuid.uuid4(), now, 0.0, wire.HostData(5, 10.5, load1=0.25)),
        wire.Event(uuid.uuid4(), now, 0.0, wire.HeartbeatData("0.1.0", 3, 1)),
        wire.Event(
            uuid.uuid4(),
            now,
            3.25,
            wire.AwData(
                "aw-watcher-vim_h",
                "app.editor.activity",
                "aw-watcher-vim",
                {"file": "a.py", "n": [1, 2.5, None, True]},
            ),
        ),
    ]
    for settings_version in (None, 0, 12):
        b = wire.batch([e.to_wire() for e in evs], settings_version)
        model = messages.Batch.model_validate(codec.unpack(codec.pack(b)))
        assert packed(model.model_dump(mode="json")) == packed(b)
        assert model.settings_version == settings_version
        assert b["events"][0]["start"] == "2026-11-02T08:00:00.000120Z"
        frame = wire.batch_frame(7, b)
        parsed = messages.BatchFrame.model_validate(frame)
        assert packed(parsed.model_dump(mode="json")) == packed(frame)
    with pytest.raises(ValidationError):
        messages.Batch.model_validate(wire.batch([], -1))


def test_values_the_model_refuses_raise_its_error() -> None:
    now = datetime.now(UTC)
    with pytest.raises(ValidationError):
        wire.Event(uuid.uuid4(), now, 0.0, wire.HostData(140, 10)).to_wire()
    with pytest.raises(ValidationError):
        wire.Event(uuid.uuid4(), now, MAX + 1, wire.FocusData("a")).to_wire()
    with pytest.raises(ValidationError, match="timezone"):
        wire.Event(uuid.uuid4(), datetime(2026, 1, 1), 0.0, wire.FocusData("a")).to_wire()


# --- reading the server's frames ------------------------------------------------------


def light_control(c: messages.AgentControl | None) -> wire.Control | None:
    """The model's control message as the agent's tuples, field by field."""
    if c is None:
        return None
    s = c.settings
    settings = (
        None
        if s is None
        else wire.AgentSettings(
            s.version, s.idle_threshold_s, s.poll_interval_s, s.host_interval_s, s.send_interval_s
        )
    )
    return wire.Control(c.rotate_token, settings)


def light(frame: messages.AckFrame | messages.ErrorFrame) -> wire.AckFrame | wire.ErrorFrame:
    if isinstance(frame, messages.AckFrame):
        r = frame.result
        return wire.AckFrame(
            frame.seq,
            wire.IngestResult(r.accepted, r.duplicates, r.updated),
            light_control(frame.control),
        )
    return wire.ErrorFrame(frame.seq, frame.status, frame.error, frame.detail)


def read_outcome(read: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return ("ok", read())
    except ValidationError:
        return ("invalid", None)


json_values = st.recursive(
    # Integers in msgpack's range: the server's frames are msgpack too.
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=6,
)
counts = st.one_of(st.integers(0, 10**12), st.integers(-3, 3), json_values)
results = st.one_of(
    st.fixed_dictionaries(
        {"accepted": counts, "duplicates": counts}, optional={"updated": counts, "x": counts}
    ),
    json_values,
)
# Values around the bounds of each pushed setting, and anything else.
setting_values = st.one_of(
    st.none(),
    st.sampled_from(sorted({v for lo, hi in wire.PUSHED_SETTINGS.values() for v in (lo, hi)})),
    st.floats(0, 100_000),
    st.floats(allow_nan=True),
    st.integers(-10, 100_000),
    st.booleans(),
    st.sampled_from(["5", "1e3", ""]),
)
settings_dicts = st.one_of(
    st.fixed_dictionaries(
        {"version": counts},
        optional={**dict.fromkeys(wire.PUSHED_SETTINGS, setting_values), "new": json_values},
    ),
    json_values,
)
controls = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {},
        optional={
            "rotate_token": st.one_of(
                st.none(), st.text(max_size=3), st.text(min_size=255, max_size=258), json_values
            ),
            "settings": st.one_of(st.none(), settings_dicts),
            "later": json_values,
        },
    ),
    json_values,
)
frames = st.one_of(
    st.fixed_dictionaries(
        {"t": st.sampled_from(["ack", "error", "batch", "ACK"]), "seq": counts},
        optional={
            "result": results,
            "status": counts,
            "error": st.one_of(st.text(), st.just("bad\ud800"), json_values),
            "detail": json_values,
            "extra": json_values,
            "control": controls,
        },
    ),
    json_values,
)
replies = st.one_of(
    st.fixed_dictionaries(
        {"accepted": counts, "duplicates": counts},
        optional={"updated": counts, "control": controls, "x": counts},
    ),
    json_values,
)


@settings(max_examples=3000, deadline=None)
@given(frames)
def test_every_server_frame_is_read_as_the_model_reads_it(obj: Any) -> None:
    expected = read_outcome(lambda: light(messages.server_frame_adapter.validate_python(obj)))
    assert read_outcome(lambda: wire.server_frame(obj)) == expected


@settings(max_examples=3000, deadline=None)
@given(replies)
def test_every_ingest_reply_is_read_as_the_model_reads_it(obj: Any) -> None:
    def by_model() -> wire.Reply:
        r = messages.IngestResponse.model_validate(obj)
        return wire.Reply(
            wire.IngestResult(r.accepted, r.duplicates, r.updated), light_control(r.control)
        )

    assert read_outcome(lambda: wire.ingest_reply(obj)) == read_outcome(by_model)


@settings(max_examples=1000, deadline=None)
@given(results)
def test_every_ingest_result_is_read_as_the_model_reads_it(obj: Any) -> None:
    def by_model() -> wire.IngestResult:
        r = messages.IngestResult.model_validate(obj)
        return wire.IngestResult(r.accepted, r.duplicates, r.updated)

    assert read_outcome(lambda: wire.ingest_result(obj)) == read_outcome(by_model)


def pushed(name: str) -> st.SearchStrategy[float | None]:
    low, high = wire.PUSHED_SETTINGS[name]
    return st.none() | st.floats(low, high) | st.sampled_from([low, high])


agent_controls = st.one_of(
    st.none(),
    st.builds(
        messages.AgentControl,
        rotate_token=st.none() | st.text(min_size=1, max_size=wire.MAX_TOKEN),
        settings=st.none()
        | st.builds(
            messages.AgentSettings,
            version=st.integers(0, 2**63),
            **{name: pushed(name) for name in wire.PUSHED_SETTINGS},
        ),
    ),
)
server_frames = st.one_of(
    st.builds(
        messages.AckFrame,
        seq=st.integers(0, 2**63),
        result=st.builds(
            messages.IngestResult,
            accepted=st.integers(0, 5000),
            duplicates=st.integers(0, 5000),
            updated=st.integers(0, 5000),
        ),
        control=agent_controls,
    ),
    st.builds(
        messages.ErrorFrame,
        seq=st.none() | st.integers(0, 2**63),
        status=st.integers(400, 599),
        error=st.text(),
        detail=json_values,
    ),
)


@settings(max_examples=1000, deadline=None)
@given(server_frames)
def test_what_the_server_sends_takes_the_fast_path(
    frame: messages.AckFrame | messages.ErrorFrame,
) -> None:
    for received in (
        codec.unpack(codec.pack(frame.model_dump(mode="json"))),
        json.loads(frame.model_dump_json()),
    ):
        expected = light(messages.server_frame_adapter.validate_python(received))
        # With the model out of reach, only the fast path can answer.
        with mock.patch.object(messages, "server_frame_adapter", None):
            assert wire.server_frame(received) == expected
        if isinstance(frame, messages.AckFrame):
            with mock.patch.object(messages, "IngestResult", None):
                assert wire.ingest_result(received["result"]) == expected.result  # type: ignore[union-attr]
            # The same result and control as an HTTP ingest answer.
            http = {**received["result"], "control": received.get("control")}
            with mock.patch.object(messages, "IngestResponse", None):
                assert wire.ingest_reply(http) == wire.Reply(
                    expected.result,  # type: ignore[union-attr]
                    expected.control,  # type: ignore[union-attr]
                )
    # What the server's endpoints send: the control key only when there is one.
    if isinstance(frame, messages.AckFrame) and frame.control is None:
        quiet = frame.model_dump(mode="json", exclude={"control"})
        with mock.patch.object(messages, "server_frame_adapter", None):
            assert wire.server_frame(quiet) == light(frame)


# --- the agent really runs without pydantic ---------------------------------------------


def test_the_agent_steady_state_never_imports_pydantic(tmp_path: Path) -> None:
    code = """
import sys, uuid
from datetime import UTC, datetime
from worklens import cli
from worklens.agent import config, runtime, transport
from worklens.agent.collectors import focus_x11, host, idle_x11
from worklens.protocol import wire

cfg = config.load(None, {}, {
    "WORKLENS_AGENT_SERVER": "http://127.0.0.1:1",
    "WORKLENS_AGENT_STATE_DIR": sys.argv[1],
    "WORKLENS_AGENT_POLL_INTERVAL_S": "1",
    "WORKLENS_AGENT_COLLECTORS": "focus,idle,host",
})
now = datetime.now(UTC)
sample = host.HostCollector().poll()
aw = wire.AwData("aw-watcher-window_h", "currentwindow", "c", {"app": "a", "title": "b"})
beat = wire.HeartbeatData("1", 2, 3)
for data in (wire.FocusData("a", "b"), wire.AfkData("afk"), sample, beat, aw):
    wire.Event(uuid.uuid4(), now, 1.5, data).to_wire()
wire.server_frame({"t": "ack", "seq": 1, "result": {"accepted": 1, "duplicates": 0, "updated": 0}})
settings = {"version": 2, "idle_threshold_s": 60, "poll_interval_s": 0.5, "host_interval_s": None}
ack = {"t": "ack", "seq": 1, "result": {"accepted": 1, "duplicates": 0, "updated": 0},
       "control": {"rotate_token": "wld_x", "settings": settings}}
assert wire.server_frame(ack).control.settings.poll_interval_s == 0.5
assert wire.ingest_reply({**ack["result"], "control": ack["control"]}).control.rotate_token
from worklens.agent import control
pushed = control.PushedSettings(cfg)
pushed.apply(wire.server_frame(ack).control.settings)
assert pushed.current.idle_threshold_s == 60.0 and pushed.current.send_interval_s == 2.0
wire.server_frame({"t": "error", "seq": 2, "status": 400, "error": "bad", "detail": None})
wire.ingest_result({"accepted": 1, "duplicates": 0, "updated": 0})
# The ActivityWatch API: a bucket and a heartbeat, through to the spool.
from pathlib import Path
from worklens.agent import aw_api, aw_store, spool
state = Path(sys.argv[1])
svc = aw_api.AwService(aw_store.AwStore(state / "aw.db"), spool.Spool(state / "s.db"), "h")
svc.create_bucket("w", {"type": "currentwindow", "client": "c", "hostname": "h"})
hb = {"timestamp": now.isoformat(), "data": {"app": "a", "title": "b", "x": [1.5, None]}}
svc.heartbeat("w", {"pulsetime": "1"}, hb)
svc.post_events("w", [hb, hb])
assert svc.spool.stats().depth == 3
heavy = ("pydantic", "worklens.protocol.messages", "worklens.agent.config_model", "httpx")
print(sorted(m for m in sys.modules if m in heavy or m.startswith("pydantic.")))
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKLENS_")}
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    assert out.stdout.strip() == "[]"
