"""The wire protocol shared by agent and server: messages and their encodings.

The names below are loaded on first use: ``messages`` imports pydantic, which
the agent's steady state does without (see ``wire``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from worklens.protocol.codec import DecodeError, PayloadTooLarge, decode_body, pack, unpack
    from worklens.protocol.messages import (
        PROTOCOL_VERSION,
        AckFrame,
        AfkData,
        AfkEvent,
        AgentControl,
        AgentSettings,
        AwEvent,
        Batch,
        BatchFrame,
        EnrollRequest,
        EnrollResponse,
        ErrorFrame,
        Event,
        FocusData,
        FocusEvent,
        HeartbeatData,
        HeartbeatEvent,
        HeartbeatRequest,
        HostData,
        HostEvent,
        IngestResponse,
        IngestResult,
        SystemIdentity,
    )

_CODEC = frozenset(("DecodeError", "PayloadTooLarge", "decode_body", "pack", "unpack"))

__all__ = [
    "PROTOCOL_VERSION",
    "AckFrame",
    "AfkData",
    "AfkEvent",
    "AgentControl",
    "AgentSettings",
    "AwEvent",
    "Batch",
    "BatchFrame",
    "DecodeError",
    "EnrollRequest",
    "EnrollResponse",
    "ErrorFrame",
    "Event",
    "FocusData",
    "FocusEvent",
    "HeartbeatData",
    "HeartbeatEvent",
    "HeartbeatRequest",
    "HostData",
    "HostEvent",
    "IngestResponse",
    "IngestResult",
    "PayloadTooLarge",
    "SystemIdentity",
    "decode_body",
    "pack",
    "unpack",
]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = "codec" if name in _CODEC else "messages"
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
