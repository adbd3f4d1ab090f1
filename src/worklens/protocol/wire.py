"""The agent's side of the wire, without pydantic.

The models in :mod:`worklens.protocol.messages` define every message, and the
server validates with them. Importing pydantic and building those models costs
a process about 10 MiB, which is a quarter of the agent's memory, for messages
whose shape the agent decides itself. So the agent builds the wire form
(exactly what ``Model(...).model_dump(mode="json")`` returns) and reads the
server's frames with the plain functions here.

Each function has a fast path for the inputs it can check completely, and hands
anything else to the pydantic model itself (importing it then): the result, or
the ``ValidationError``, is then the model's own. The limits the fast paths
check are defined here once and used by the models too.
``tests/protocol/test_wire.py`` proves that every fast-path output is what the
model gives for the same input.
"""

from __future__ import annotations

import json
import math
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, Literal, NamedTuple, TypeGuard, TypeVar

PROTOCOL_VERSION = 1

# One event may cover at most this long; longer spans are split by the agent.
MAX_EVENT_DURATION_S = 7 * 24 * 3600.0
MAX_BATCH_EVENTS = 5000
# Clock skew tolerated between an agent and the server: events starting further
# ahead are refused.
MAX_FUTURE_SKEW_S = 300.0
# Longest texts, in characters.
MAX_APP = 256
MAX_TITLE = 2048
MAX_AGENT_VERSION = 64
MAX_TOKEN = 256  # a device token (a new one in AgentControl.rotate_token)
# The agent settings the server pushes to its agents (messages.AgentSettings,
# PUT /api/v1/settings/agent), with their bounds: name -> (lowest, highest).
# The agent's own configuration (agent/config.py) has the same bounds.
PUSHED_SETTINGS: dict[str, tuple[float, float]] = {
    "idle_threshold_s": (5.0, 86400.0),
    "poll_interval_s": (0.1, 60.0),
    "host_interval_s": (1.0, 86400.0),
    "send_interval_s": (0.05, 3600.0),
}
# ActivityWatch bucket events ("aw"): the bucket's id, type and client, and the
# event's data, any JSON object up to this size (UTF-8 bytes of compact JSON) and
# nesting depth (the object itself is depth 1).
MAX_AW_BUCKET = 255
MAX_AW_BUCKET_TYPE = 64
MAX_AW_CLIENT = 128
MAX_AW_DATA_BYTES = 16 * 1024
MAX_AW_DEPTH = 8
# The AW bucket types reports read (``server.store.buckets.FOCUS_TYPE``/``AFK_TYPE``);
# their data must have the fields reports use.
AW_WINDOW_TYPE = "currentwindow"
AW_AFK_TYPE = "afkstatus"
AW_WEB_TAB_TYPE = "web.tab.current"  # the tab in front of a browser
_INT64_MIN, _UINT64_MAX = -(2**63), 2**64 - 1  # what msgpack can carry


# --- event payloads (the fields, order and defaults of the models) -------------


class FocusData(NamedTuple):
    app: str
    title: str = ""


class AfkData(NamedTuple):
    status: Literal["afk", "active"]


class HostData(NamedTuple):
    cpu_percent: float
    mem_percent: float
    swap_percent: float | None = None
    disk_percent: float | None = None
    load1: float | None = None
    load5: float | None = None
    load15: float | None = None
    uptime_s: float | None = None
    temperature_c: float | None = None


class HeartbeatData(NamedTuple):
    agent_version: str = ""
    spool_depth: int = 0
    dropped: int = 0


class AwData(NamedTuple):
    """An event of an ActivityWatch bucket: the bucket it belongs to, and its data.

    On the wire ``bucket``, ``bucket_type`` and ``client`` are fields of the event
    next to ``data`` (the AW event's own data).
    """

    bucket: str
    bucket_type: str
    client: str
    data: dict[str, Any]


Payload = FocusData | AfkData | HostData | HeartbeatData | AwData
D = TypeVar("D", FocusData, AfkData, HostData, HeartbeatData, AwData)

# The event kind of each payload type, and the model in messages.py of each kind.
_KIND: dict[type, str] = {
    FocusData: "focus",
    AfkData: "afk",
    HostData: "host",
    HeartbeatData: "heartbeat",
    AwData: "aw",
}
_EVENT_MODEL = {
    "focus": "FocusEvent",
    "afk": "AfkEvent",
    "host": "HostEvent",
    "heartbeat": "HeartbeatEvent",
    "aw": "AwEvent",
}


@dataclass(frozen=True, slots=True)
class Event(Generic[D]):
    """One event as the agent holds it; :meth:`to_wire` gives its wire form."""

    id: uuid.UUID
    start: datetime
    duration: float
    data: D

    @property
    def kind(self) -> str:
        return _KIND[type(self.data)]

    @property
    def end(self) -> datetime:
        return self.start + timedelta(seconds=self.duration)

    def to_wire(self) -> dict[str, Any]:
        return event(self.id, self.start, self.duration, self.data)


def event(id: uuid.UUID, start: datetime, duration: float, data: Payload) -> dict[str, Any]:
    """The wire form of the FocusEvent/AfkEvent/HostEvent/HeartbeatEvent/AwEvent with
    these fields.

    Raises the model's ``ValidationError`` for values the model refuses.
    """
    kind = _KIND.get(type(data))
    if kind is None:
        raise TypeError(f"not an event payload: {type(data).__name__}")
    wire_data = _payload(data)
    if (
        wire_data is not None
        and type(id) is uuid.UUID
        and type(start) is datetime
        and start.utcoffset() is not None
        and _number(duration)
        and 0 <= duration <= MAX_EVENT_DURATION_S
    ):
        out = {
            "id": str(id),
            "start": _utc_iso(start),
            "duration": float(duration),
            "kind": kind,
        }
        if type(data) is AwData:
            out["bucket"], out["bucket_type"], out["client"] = data[:3]
        out["data"] = wire_data
        return out
    return _event_via_model(kind, id, start, duration, data)


def batch(events: list[dict[str, Any]], settings_version: int | None = None) -> dict[str, Any]:
    """A Batch of events already in wire form, with a fresh batch id and the
    version of the server's settings the agent applies (0: none yet)."""
    return {
        "v": PROTOCOL_VERSION,
        "batch_id": str(uuid.uuid4()),
        "events": events,
        "settings_version": settings_version,
    }


def batch_frame(seq: int, batch: dict[str, Any]) -> dict[str, Any]:
    """The BatchFrame that carries ``batch`` over the agent WebSocket."""
    return {"t": "batch", "seq": seq, "batch": batch}


# --- reading the server's answers ------------------------------------------------


class IngestResult(NamedTuple):
    accepted: int
    duplicates: int
    updated: int = 0


class AgentSettings(NamedTuple):
    """The organization's agent settings (``messages.AgentSettings``); None: the
    agent keeps its own value (config file, environment, flags)."""

    version: int
    idle_threshold_s: float | None = None
    poll_interval_s: float | None = None
    host_interval_s: float | None = None
    send_interval_s: float | None = None


class Control(NamedTuple):
    """What the server tells the agent with an answer (``messages.AgentControl``)."""

    rotate_token: str | None = None
    settings: AgentSettings | None = None


class AckFrame(NamedTuple):
    seq: int
    result: IngestResult
    control: Control | None = None


class Reply(NamedTuple):
    """The server's answer to a batch, by either transport: its result, and
    what the server tells the agent (None: nothing)."""

    result: IngestResult
    control: Control | None = None


class ErrorFrame(NamedTuple):
    seq: int | None
    status: int
    error: str
    detail: Any = None


_ACK_KEYS = frozenset(("t", "seq", "result"))
_ACK_CONTROL_KEYS = _ACK_KEYS | {"control"}
_ERROR_KEYS = frozenset(("t", "seq", "status", "error", "detail"))
_RESULT_KEYS = frozenset(("accepted", "duplicates", "updated"))
_REPLY_KEYS = _RESULT_KEYS | {"control"}


def ingest_result(obj: Any) -> IngestResult:
    """An IngestResult (the HTTP ingest answer); ValidationError if it is not one."""
    result = _ingest_result(obj)
    if result is not None:
        return result
    from worklens.protocol.messages import IngestResult as Model

    m = Model.model_validate(obj)
    return IngestResult(m.accepted, m.duplicates, m.updated)


def ingest_reply(obj: Any) -> Reply:
    """The HTTP ingest answer (``messages.IngestResponse``); ValidationError if it is not one."""
    if type(obj) is dict and obj.keys() <= _REPLY_KEYS:
        result = _ingest_result({k: v for k, v in obj.items() if k != "control"})
        control = _control(obj.get("control"))
        if result is not None and not isinstance(control, _Invalid):
            return Reply(result, control)
    from worklens.protocol.messages import IngestResponse as Model

    m = Model.model_validate(obj)
    return Reply(IngestResult(m.accepted, m.duplicates, m.updated), _light_control(m.control))


def server_frame(obj: Any) -> AckFrame | ErrorFrame:
    """An AckFrame or ErrorFrame (``messages.ServerFrame``); ValidationError otherwise."""
    if type(obj) is dict:
        t = obj.get("t")
        if t == "ack" and (obj.keys() == _ACK_KEYS or obj.keys() == _ACK_CONTROL_KEYS):
            seq, result = obj["seq"], _ingest_result(obj["result"])
            control = _control(obj.get("control"))
            if _count(seq) and result is not None and not isinstance(control, _Invalid):
                return AckFrame(seq, result, control)
        elif t == "error" and obj.keys() <= _ERROR_KEYS and "status" in obj and "error" in obj:
            seq, status, error = obj.get("seq"), obj["status"], obj["error"]
            if (seq is None or type(seq) is int) and type(status) is int and _text(error, None):
                return ErrorFrame(seq, status, error, obj.get("detail"))
    from worklens.protocol import messages

    frame = messages.server_frame_adapter.validate_python(obj)
    if isinstance(frame, messages.AckFrame):
        r = frame.result
        return AckFrame(
            frame.seq,
            IngestResult(r.accepted, r.duplicates, r.updated),
            _light_control(frame.control),
        )
    return ErrorFrame(frame.seq, frame.status, frame.error, frame.detail)


def _light_control(m: Any) -> Control | None:
    """A ``messages.AgentControl`` (or None) as the agent's tuple."""
    if m is None:
        return None
    s = m.settings
    settings = (
        None
        if s is None
        else AgentSettings(
            s.version, s.idle_threshold_s, s.poll_interval_s, s.host_interval_s, s.send_interval_s
        )
    )
    return Control(m.rotate_token, settings)


# --- fast-path checks ------------------------------------------------------------------


def _number(v: object) -> TypeGuard[float]:
    """An int or float as such (bool and subclasses go to the model)."""
    return type(v) is float or type(v) is int


def _count(v: object) -> TypeGuard[int]:
    return type(v) is int and v >= 0


def _text(v: object, max_len: int | None) -> bool:
    """A str the model keeps as it is: at most max_len characters, valid Unicode."""
    if type(v) is not str or (max_len is not None and len(v) > max_len):
        return False
    if v.isascii():
        return True
    try:
        v.encode("utf-8")  # a lone surrogate is not a valid string for the model
    except UnicodeEncodeError:
        return False
    return True


def valid_text(v: object, max_len: int | None) -> bool:
    """A str as the models keep it: at most max_len characters, valid Unicode."""
    return _text(v, max_len)


def _percent(v: object) -> bool:
    return _number(v) and 0 <= v <= 100


def _opt_float(v: object, ge: float | None, le: float | None) -> bool:
    if v is None:
        return True
    if not _number(v):
        return False
    return (ge is None or v >= ge) and (le is None or v <= le)


def _payload(data: Payload) -> dict[str, Any] | None:
    """The wire form of a payload, or None if only the model can judge it."""
    if type(data) is FocusData:
        if _text(data.app, MAX_APP) and _text(data.title, MAX_TITLE):
            return {"app": data.app, "title": data.title}
    elif type(data) is AfkData:
        if type(data.status) is str and data.status in ("afk", "active"):
            return {"status": data.status}
    elif type(data) is HostData:
        if (
            _percent(data.cpu_percent)
            and _percent(data.mem_percent)
            and _opt_float(data.swap_percent, 0, 100)
            and _opt_float(data.disk_percent, 0, 100)
            and _opt_float(data.load1, 0, None)
            and _opt_float(data.load5, 0, None)
            and _opt_float(data.load15, 0, None)
            and _opt_float(data.uptime_s, 0, None)
            and _opt_float(data.temperature_c, None, None)
        ):
            return {k: None if v is None else float(v) for k, v in data._asdict().items()}
    elif type(data) is HeartbeatData:
        if (
            _text(data.agent_version, MAX_AGENT_VERSION)
            and _count(data.spool_depth)
            and _count(data.dropped)
        ):
            return data._asdict()
    elif (
        type(data) is AwData
        and _text(data.bucket, MAX_AW_BUCKET)
        and data.bucket
        and _text(data.bucket_type, MAX_AW_BUCKET_TYPE)
        and data.bucket_type
        and _text(data.client, MAX_AW_CLIENT)
        and aw_data_problem(data.bucket_type, data.data) is None
    ):
        return data.data
    return None


def aw_data_problem(bucket_type: str, data: object) -> str | None:
    """What is wrong with ``data`` as the data of an event of an AW bucket of this
    type, or None: the one check, used by the agent (its fast path, its AW API) and
    by the server's model.

    Data is a JSON object of plain JSON values (exactly dict, list, str, int, float,
    bool, None; finite floats, 64-bit integers, valid Unicode), at most
    ``MAX_AW_DEPTH`` deep and ``MAX_AW_DATA_BYTES`` as compact JSON. Buckets whose
    type reports read must carry what reports use: ``currentwindow`` data has
    ``app`` and ``title`` as strings (within the focus event's limits),
    ``afkstatus`` data has ``status`` as a string, ``web.tab.current`` data has
    ``url`` as a string.
    """
    if type(data) is not dict:
        return "data must be a JSON object"
    stack: list[tuple[object, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        t = type(value)
        if t is dict:
            if depth > MAX_AW_DEPTH:
                return f"data is nested deeper than {MAX_AW_DEPTH} levels"
            for k, v in value.items():  # type: ignore[attr-defined]
                if not _text(k, None):
                    return "data has a key that is not a valid string"
                stack.append((v, depth + 1))
        elif t is list:
            if depth > MAX_AW_DEPTH:
                return f"data is nested deeper than {MAX_AW_DEPTH} levels"
            stack.extend((v, depth + 1) for v in value)  # type: ignore[attr-defined]
        elif t is str:
            if not _text(value, None):
                return "data has a string that is not valid Unicode"
        elif t is float:
            if not math.isfinite(value):  # type: ignore[arg-type]
                return "data has a number that is not finite"
        elif t is int:
            if not _INT64_MIN <= value <= _UINT64_MAX:  # type: ignore[operator]
                return "data has an integer outside the 64-bit range"
        elif value is not None and t is not bool:
            return f"data has a value that is not JSON ({t.__name__})"
    size = len(json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode())
    if size > MAX_AW_DATA_BYTES:
        return f"data is {size} bytes as JSON, more than {MAX_AW_DATA_BYTES}"
    if bucket_type == AW_WINDOW_TYPE:
        app, title = data.get("app"), data.get("title")
        if type(app) is not str or type(title) is not str:
            return f"{AW_WINDOW_TYPE} data needs 'app' and 'title' as strings"
        if len(app) > MAX_APP or len(title) > MAX_TITLE:
            return f"{AW_WINDOW_TYPE} data: 'app' > {MAX_APP} or 'title' > {MAX_TITLE} characters"
    elif bucket_type == AW_AFK_TYPE and type(data.get("status")) is not str:
        return f"{AW_AFK_TYPE} data needs 'status' as a string"
    elif bucket_type == AW_WEB_TAB_TYPE and type(data.get("url")) is not str:
        return f"{AW_WEB_TAB_TYPE} data needs 'url' as a string"
    return None


def _utc_iso(start: datetime) -> str:
    """How pydantic writes an aware datetime after the model's conversion to UTC."""
    text = start.astimezone(UTC).isoformat()
    return text[:-6] + "Z"  # "+00:00"


def _event_via_model(
    kind: str, id: Any, start: Any, duration: Any, data: Payload
) -> dict[str, Any]:
    from worklens.protocol import messages

    model = getattr(messages, _EVENT_MODEL[kind])
    fields = data._asdict() if type(data) is AwData else {"data": data._asdict()}
    dumped: dict[str, Any] = model(id=id, start=start, duration=duration, **fields).model_dump(
        mode="json"
    )
    return dumped


class _Invalid:
    """_control's answer for what only the model can judge."""


_INVALID = _Invalid()


def _control(obj: Any) -> Control | _Invalid | None:
    """An AgentControl's wire form (or None) read by the fast path; ``_INVALID``
    when only the model can judge it. Keys the model does not know are ignored,
    as the model ignores them (a newer server may say more)."""
    if obj is None:
        return None
    if type(obj) is not dict:
        return _INVALID
    token, raw = obj.get("rotate_token"), obj.get("settings")
    if token is not None and not (_text(token, MAX_TOKEN) and token):
        return _INVALID
    settings = None
    if raw is not None:
        if type(raw) is not dict or not _count(raw.get("version")):
            return _INVALID
        values: list[float | None] = []
        for name, (low, high) in PUSHED_SETTINGS.items():
            v = raw.get(name)
            if v is not None and not (_number(v) and low <= v <= high):
                return _INVALID
            values.append(None if v is None else float(v))
        settings = AgentSettings(raw["version"], *values)
    return Control(token, settings)


def _ingest_result(obj: Any) -> IngestResult | None:
    if type(obj) is not dict or not obj.keys() <= _RESULT_KEYS:
        return None
    accepted, duplicates, updated = (
        obj.get("accepted"),
        obj.get("duplicates"),
        obj.get("updated", 0),
    )
    if (
        type(accepted) is int
        and type(duplicates) is int
        and type(updated) is int
        and min(accepted, duplicates, updated) >= 0
    ):
        return IngestResult(accepted, duplicates, updated)
    return None
