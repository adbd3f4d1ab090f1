"""The wire protocol: one definition, two encodings, strict validation, bounded decoding."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
import zstandard
from pydantic import ValidationError

from worklens.protocol import codec
from worklens.protocol.messages import (
    AwEvent,
    Batch,
    FocusEvent,
    HostData,
    event_adapter,
    future_events,
)


def focus(**over: object) -> dict[str, object]:
    e: dict[str, object] = {
        "id": str(uuid.uuid4()),
        "kind": "focus",
        "start": "2026-11-02T09:00:00+01:00",
        "duration": 12.5,
        "data": {"app": "code", "title": "main.py — Résumé 日本語"},
    }
    e.update(over)
    return e


def test_both_encodings_carry_the_same_batch() -> None:
    b = Batch.model_validate({"batch_id": str(uuid.uuid4()), "events": [focus()]})
    wire = b.model_dump(mode="json")
    via_json = Batch.model_validate(codec.from_json(codec.to_json(wire)))
    via_pack = Batch.model_validate(codec.unpack(codec.pack(wire)))
    assert via_json == via_pack == b
    (e,) = b.events
    assert isinstance(e, FocusEvent)
    assert e.start == datetime(2026, 11, 2, 8, 0, tzinfo=UTC) and e.start.tzinfo == UTC


@pytest.mark.parametrize(
    "bad",
    [
        focus(kind="keylog"),
        focus(duration=-1),
        focus(duration=8 * 86400),
        focus(start="2026-11-02T09:00:00"),  # no time zone
        focus(id="not-a-uuid"),
        focus(data={"app": "x", "title": "y", "extra": 1}),
        focus(data={"title": "y"}),
        {**focus(), "kind": "afk", "data": {"status": "asleep"}},
    ],
)
def test_invalid_events_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        event_adapter.validate_python(bad)


def test_unknown_version_and_oversized_batches_are_refused() -> None:
    with pytest.raises(ValidationError, match="unsupported protocol version"):
        Batch.model_validate({"v": 2, "batch_id": str(uuid.uuid4()), "events": []})
    with pytest.raises(ValidationError):
        Batch.model_validate({"batch_id": str(uuid.uuid4()), "events": [focus()] * 5001})


def test_future_events_are_found() -> None:
    now = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
    soon = (now + timedelta(minutes=4)).isoformat()
    late = (now + timedelta(minutes=6)).isoformat()
    b = Batch.model_validate(
        {"batch_id": str(uuid.uuid4()), "events": [focus(start=soon), focus(start=late)]}
    )
    assert future_events(b, now) == [1]


def test_host_data_refuses_impossible_values() -> None:
    with pytest.raises(ValidationError):
        HostData(cpu_percent=140, mem_percent=10)
    assert HostData(cpu_percent=5, mem_percent=10).temperature_c is None


def test_decompression_is_bounded() -> None:
    bomb = zstandard.ZstdCompressor(level=19).compress(b"\0" * (64 * 1024 * 1024))
    with pytest.raises(codec.PayloadTooLarge):
        codec.inflate(bomb, max_size=1024 * 1024)
    # Frames without a content size (streamed) are bounded too.
    streamed = zstandard.ZstdCompressor(write_content_size=False).compress(
        b"\0" * (4 * 1024 * 1024)
    )
    with pytest.raises(codec.PayloadTooLarge):
        codec.inflate(streamed, max_size=1024)
    assert codec.inflate(zstandard.ZstdCompressor().compress(b"abc"), 3) == b"abc"


@pytest.mark.parametrize(
    ("body", "ctype", "cenc", "message"),
    [
        (b"{", "application/json", None, "invalid JSON"),
        (b"\xc1", "application/x-msgpack", None, "invalid msgpack"),
        (b"xx", "application/x-msgpack", "zstd", "invalid zstd"),
        (b"{}", "application/xml", None, "unsupported Content-Type"),
        (b"{}", "application/json", "gzip", "unsupported Content-Encoding"),
        (b"[" * 100 + b"]" * 100, "application/json", "identity", None),
    ],
)
def test_decode_errors_say_what_is_wrong(
    body: bytes, ctype: str, cenc: str | None, message: str | None
) -> None:
    if message is None:
        assert codec.decode_body(body, ctype, cenc) is not None
        return
    with pytest.raises(codec.DecodeError, match=message):
        codec.decode_body(body, ctype, cenc)


# --- ActivityWatch bucket events -----------------------------------------------------


def aw_event(**over: object) -> dict[str, object]:
    e: dict[str, object] = {
        "id": str(uuid.uuid4()),
        "kind": "aw",
        "start": "2026-11-02T09:00:00.123Z",
        "duration": 3.5,
        "bucket": "aw-watcher-window_pc",
        "bucket_type": "currentwindow",
        "client": "aw-watcher-window",
        "data": {"app": "firefox", "title": "Docs", "url": "https://x", "incognito": False},
    }
    e.update(over)
    return e


def test_aw_events_carry_their_bucket_and_any_json_data() -> None:
    e = event_adapter.validate_python(aw_event())
    assert isinstance(e, AwEvent) and e.bucket == "aw-watcher-window_pc"
    assert e.data["incognito"] is False
    other = aw_event(bucket_type="app.editor.activity", data={"a": [1, {"b": None}], "c": 2.5})
    assert event_adapter.validate_python(other).model_dump(mode="json") == {
        **other,
        "start": "2026-11-02T09:00:00.123000Z",
    }
    assert event_adapter.validate_python(aw_event(client="")).client == ""


@pytest.mark.parametrize(
    ("over", "needle"),
    [
        ({"data": {"app": "firefox"}}, "'app' and 'title'"),
        ({"data": {"app": "x", "title": None}}, "'app' and 'title'"),
        ({"data": {"app": "x" * 257, "title": ""}}, "'app' > 256"),
        ({"bucket_type": "afkstatus", "data": {"status": True}}, "'status'"),
        ({"bucket_type": "x", "data": {"n": float("nan")}}, "not finite"),
        ({"bucket_type": "x", "data": {"n": 2**64}}, "64-bit"),
        ({"bucket_type": "x", "data": {"n": (1, 2)}}, "not JSON (tuple)"),
        ({"bucket_type": "x", "data": {"s": "a\ud800"}}, "not valid Unicode"),
        ({"bucket_type": "x", "data": {"a": [[[[[[[[1]]]]]]]]}}, "deeper than 8"),
        ({"bucket_type": "x", "data": {"a": "é" * 8200}}, "more than 16384"),
        ({"bucket_type": "x", "data": [1]}, "dict"),
        ({"bucket": ""}, "at least 1"),
        ({"bucket": "b" * 256}, "at most 255"),
        ({"bucket_type": ""}, "at least 1"),
        ({"client": "c" * 129}, "at most 128"),
        ({"extra": 1}, "Extra inputs"),
    ],
)
def test_invalid_aw_events_are_refused_naming_the_event(
    over: dict[str, object], needle: str
) -> None:
    bad = aw_event(**over)
    with pytest.raises(ValidationError) as err:
        event_adapter.validate_python(bad)
    assert needle in str(err.value)
    if "data" in over and isinstance(over["data"], dict):
        assert str(bad["id"]) in str(err.value)
