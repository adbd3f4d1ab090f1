"""The agent's settings as a pydantic model, built from the definitions in ``config``.

:mod:`worklens.agent.config` accepts the ordinary values itself so that the agent
runs without pydantic; everything else comes here for the verdict and the error
message. The fields, types and defaults are those of ``config.AgentConfig``, the
bounds those of ``config.BOUNDS``, the checks ``config.server_url``,
``config.loopback_host`` and ``config.collector_names``: nothing is defined twice.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from pydantic import ConfigDict, Field, create_model, field_validator

from worklens.agent.config import (
    BOUNDS,
    AgentConfig,
    collector_names,
    loopback_host,
    server_url,
)


def _field(f: dataclasses.Field[Any]) -> Any:
    low, high = BOUNDS.get(f.name, (None, None))
    if f.default is not dataclasses.MISSING:
        return Field(default=f.default, ge=low, le=high)
    if f.default_factory is not dataclasses.MISSING:
        return Field(default_factory=f.default_factory, ge=low, le=high)
    return Field(ge=low, le=high)


_hints = typing.get_type_hints(AgentConfig)

AgentConfigModel: Any = create_model(  # type: ignore[call-overload]
    "AgentConfig",
    __config__=ConfigDict(extra="forbid", frozen=True),
    __validators__={
        "_url": field_validator("server")(classmethod(lambda cls, v: server_url(v))),
        "_aw_host": field_validator("aw_host")(classmethod(lambda cls, v: loopback_host(v))),
        "_collectors": field_validator("collectors", mode="before")(
            classmethod(lambda cls, v: collector_names(v))
        ),
    },
    **{f.name: (_hints[f.name], _field(f)) for f in dataclasses.fields(AgentConfig)},
)
