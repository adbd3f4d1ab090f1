"""Every message that crosses the wire between agent and server, defined once.

The server validates with these models. The wire form is the JSON-compatible
dict from ``model_dump(mode="json")``, sent either as JSON or as msgpack
compressed with zstd (see ``codec``). The agent builds that form for its events
and reads the server's frames through ``wire``, which keeps pydantic out of its
steady state and hands any input its fast paths cannot judge to these models.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    field_validator,
    model_validator,
)

# The limits are defined next to the agent's pydantic-free builders (wire.py).
from worklens.protocol.wire import (
    MAX_AGENT_VERSION,
    MAX_APP,
    MAX_AW_BUCKET,
    MAX_AW_BUCKET_TYPE,
    MAX_AW_CLIENT,
    MAX_FUTURE_SKEW_S,
    MAX_TITLE,
    MAX_TOKEN,
    PUSHED_SETTINGS,
    aw_data_problem,
)
from worklens.protocol.wire import MAX_BATCH_EVENTS as MAX_BATCH_EVENTS
from worklens.protocol.wire import MAX_EVENT_DURATION_S as MAX_EVENT_DURATION_S
from worklens.protocol.wire import PROTOCOL_VERSION as PROTOCOL_VERSION

# Clock skew tolerated between an agent and the server.
MAX_FUTURE_SKEW = timedelta(seconds=MAX_FUTURE_SKEW_S)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- event payloads -----------------------------------------------------------


class FocusData(_Strict):
    """The focused window: application (process name / WM_CLASS) and title."""

    app: str = Field(max_length=MAX_APP)
    title: str = Field(default="", max_length=MAX_TITLE)


class AfkData(_Strict):
    status: Literal["afk", "active"]


class HostData(_Strict):
    """One host health sample. Fields the host cannot measure are None."""

    cpu_percent: float = Field(ge=0, le=100)
    mem_percent: float = Field(ge=0, le=100)
    swap_percent: float | None = Field(default=None, ge=0, le=100)
    disk_percent: float | None = Field(default=None, ge=0, le=100)
    load1: float | None = Field(default=None, ge=0)
    load5: float | None = Field(default=None, ge=0)
    load15: float | None = Field(default=None, ge=0)
    uptime_s: float | None = Field(default=None, ge=0)
    temperature_c: float | None = None


class HeartbeatData(_Strict):
    agent_version: str = Field(default="", max_length=MAX_AGENT_VERSION)
    spool_depth: int = Field(default=0, ge=0)
    dropped: int = Field(default=0, ge=0)


# --- events -------------------------------------------------------------------


class _EventBase(_Strict):
    id: UUID
    start: AwareDatetime
    duration: float = Field(ge=0, le=MAX_EVENT_DURATION_S)

    @field_validator("start")
    @classmethod
    def _to_utc(cls, v: datetime) -> datetime:
        return v.astimezone(UTC)

    @property
    def end(self) -> datetime:
        return self.start + timedelta(seconds=self.duration)


class FocusEvent(_EventBase):
    kind: Literal["focus"] = "focus"
    data: FocusData


class AfkEvent(_EventBase):
    kind: Literal["afk"] = "afk"
    data: AfkData


class HostEvent(_EventBase):
    kind: Literal["host"] = "host"
    data: HostData


class HeartbeatEvent(_EventBase):
    kind: Literal["heartbeat"] = "heartbeat"
    data: HeartbeatData


class AwEvent(_EventBase):
    """An event of an ActivityWatch bucket, received by the agent's AW API.

    ``bucket`` is the AW bucket id (the server keeps one bucket of that name per
    device, with this type and client), ``data`` the AW event's data: any JSON
    object within :func:`wire.aw_data_problem`'s limits; for the bucket types
    reports read (``currentwindow``, ``afkstatus``) with the fields they use.
    """

    kind: Literal["aw"] = "aw"
    bucket: str = Field(min_length=1, max_length=MAX_AW_BUCKET)
    bucket_type: str = Field(min_length=1, max_length=MAX_AW_BUCKET_TYPE)
    client: str = Field(default="", max_length=MAX_AW_CLIENT)
    data: dict[str, Any]

    @model_validator(mode="after")
    def _data_fits(self) -> AwEvent:
        problem = aw_data_problem(self.bucket_type, self.data)
        if problem is not None:
            raise ValueError(f"event {self.id} (bucket {self.bucket!r}): {problem}")
        return self


Event = Annotated[
    FocusEvent | AfkEvent | HostEvent | HeartbeatEvent | AwEvent, Field(discriminator="kind")
]
event_adapter: TypeAdapter[Event] = TypeAdapter(Event)


class Batch(_Strict):
    """A group of events sent together; ``batch_id`` makes a re-send harmless.

    ``settings_version``: the version of the organization's agent settings the
    agent applies (0: none yet); the answer carries the settings when they are
    newer. None (an agent that predates pushed settings): the answer never
    carries an ``AgentControl``."""

    v: int = PROTOCOL_VERSION
    batch_id: UUID
    events: list[Event] = Field(max_length=MAX_BATCH_EVENTS)
    settings_version: int | None = Field(default=None, ge=0)

    @field_validator("v")
    @classmethod
    def _known_version(cls, v: int) -> int:
        if v != PROTOCOL_VERSION:
            raise ValueError(
                f"unsupported protocol version {v}; this server speaks {PROTOCOL_VERSION}"
            )
        return v


def future_events(batch: Batch, now: datetime) -> list[int]:
    """Indexes of events that start further in the future than clock skew allows."""
    limit = now + MAX_FUTURE_SKEW
    return [i for i, e in enumerate(batch.events) if e.start > limit]


class IngestResult(_Strict):
    accepted: int = Field(ge=0)
    duplicates: int = Field(ge=0)
    updated: int = Field(default=0, ge=0)


# --- what the server tells an agent with its answers ----------------------------------


def _pushed(name: str) -> Any:
    low, high = PUSHED_SETTINGS[name]
    return Field(default=None, ge=low, le=high)


class AgentSettings(BaseModel):
    """The organization's agent settings (``PUT /api/v1/settings/agent``), sent to
    an agent whose ``settings_version`` differs. A value overrides the agent's
    own (config file, environment, flags) for that setting; None leaves the
    agent's own. Keys an agent does not know are ignored, so a newer server may
    push more settings to older agents."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    version: int = Field(ge=0)
    idle_threshold_s: float | None = _pushed("idle_threshold_s")
    poll_interval_s: float | None = _pushed("poll_interval_s")
    host_interval_s: float | None = _pushed("host_interval_s")
    send_interval_s: float | None = _pushed("send_interval_s")


class AgentControl(BaseModel):
    """Sent along with an answer to an agent (AckFrame, HTTP ingest and heartbeat
    answers), left out when there is nothing to say.

    ``rotate_token``: the device's next token. The agent saves it (atomically)
    before it uses it; the server accepts the old token until the first request
    made with the new one, and sends the same new token with every answer until
    then. ``settings``: the organization's agent settings, when the agent reported
    another version."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    rotate_token: str | None = Field(default=None, min_length=1, max_length=MAX_TOKEN)
    settings: AgentSettings | None = None


class IngestResponse(IngestResult):
    """The HTTP ingest answer: the result, and what the server tells the agent."""

    control: AgentControl | None = None


# --- enrollment and liveness --------------------------------------------------


class NetworkInterface(_Strict):
    name: str = Field(max_length=64)
    addresses: list[str] = Field(default_factory=list, max_length=32)
    mac: str | None = Field(default=None, max_length=64)


class SystemIdentity(_Strict):
    """What a machine says about itself when it enrolls."""

    hardware_uuid: str = Field(min_length=1, max_length=128)
    hostname: str = Field(min_length=1, max_length=255)
    os_user: str = Field(default="", max_length=255)
    os: str = Field(default="", max_length=255)
    kernel: str = Field(default="", max_length=255)
    cpu: str = Field(default="", max_length=255)
    cpu_cores: int | None = Field(default=None, ge=0)
    memory_bytes: int | None = Field(default=None, ge=0)
    interfaces: list[NetworkInterface] = Field(default_factory=list, max_length=64)
    email: str | None = Field(default=None, max_length=320)
    agent_version: str = Field(default="", max_length=64)


class EnrollRequest(SystemIdentity):
    enroll_secret: str = Field(min_length=1, max_length=256)
    org: str | None = Field(default=None, max_length=128)


class EnrollResponse(_Strict):
    device_id: int
    token: str
    org: str


class HeartbeatRequest(_Strict):
    agent_version: str = Field(default="", max_length=64)
    spool_depth: int = Field(default=0, ge=0)
    dropped: int = Field(default=0, ge=0)
    settings_version: int | None = Field(default=None, ge=0)  # as in Batch


class HeartbeatResponse(_Strict):
    device_id: int
    server_time: datetime
    control: AgentControl | None = None


class ErrorBody(_Strict):
    """Every 4xx/5xx answer from the server has this shape."""

    error: str
    detail: Any = None


# --- WebSocket frames ---------------------------------------------------------
# The agent opens /api/v1/agent/ws with its bearer token, then sends BatchFrames;
# the server answers each with an AckFrame (or an ErrorFrame) carrying its seq.
# An unacknowledged seq is re-sent after a reconnect; batch ids make it harmless.


class BatchFrame(_Strict):
    t: Literal["batch"] = "batch"
    seq: int = Field(ge=0)
    batch: Batch


class AckFrame(_Strict):
    t: Literal["ack"] = "ack"
    seq: int = Field(ge=0)
    result: IngestResult
    control: AgentControl | None = None  # left out of the frame when None


class ErrorFrame(_Strict):
    t: Literal["error"] = "error"
    seq: int | None = None
    status: int
    error: str
    detail: Any = None


ServerFrame = Annotated[AckFrame | ErrorFrame, Field(discriminator="t")]
server_frame_adapter: TypeAdapter[ServerFrame] = TypeAdapter(ServerFrame)
