"""Agent configuration: TOML file, then environment, then command-line flags.

Later sources win. Every bad value is reported with the setting's name, where
it came from and what is wrong, before the agent starts doing anything.
"""

from __future__ import annotations

import os
import sys
import tomllib
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

ENV_PREFIX = "WORKLENS_AGENT_"
COLLECTORS = ("focus", "idle", "host")


def default_state_dir() -> Path:
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "WorkLens" / "agent"
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "worklens-agent"


class ConfigError(ValueError):
    """A setting is wrong; the message names it, its source and the problem."""


class AgentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    server: str = Field(description="Server base URL, e.g. https://worklens.example.com")
    enroll_secret: str | None = Field(default=None, description="Organization enrollment secret")
    state_dir: Path = Field(default_factory=default_state_dir)
    poll_interval_s: float = Field(default=1.0, ge=0.1, le=60)
    idle_threshold_s: float = Field(default=300.0, ge=5, le=86400)
    host_interval_s: float = Field(default=30.0, ge=1, le=86400)
    heartbeat_interval_s: float = Field(default=30.0, ge=1, le=3600)
    send_interval_s: float = Field(default=2.0, ge=0.05, le=3600)
    batch_size: int = Field(default=500, ge=1, le=5000)
    transport: Literal["auto", "websocket", "http"] = "auto"
    collectors: tuple[str, ...] = COLLECTORS
    spool_max_items: int = Field(default=200_000, ge=100)
    max_attempts: int = Field(default=10, ge=1, le=1000)
    shutdown_grace_s: float = Field(default=3.0, ge=0, le=60)
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @field_validator("server")
    @classmethod
    def _url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http:// or https:// URL with a host")
        return v.rstrip("/")

    @field_validator("collectors", mode="before")
    @classmethod
    def _collectors(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = [c.strip() for c in v.split(",") if c.strip()]
        unknown = [c for c in v if c not in COLLECTORS]
        if unknown:
            raise ValueError(f"unknown collector(s) {unknown}; known: {', '.join(COLLECTORS)}")
        return tuple(v)

    @property
    def pulsetime_s(self) -> float:
        """Samples closer than this to the last event's end extend it."""
        return self.poll_interval_s + 1.0

    @property
    def token_path(self) -> Path:
        return self.state_dir / "token.json"

    @property
    def spool_path(self) -> Path:
        return self.state_dir / "spool.db"


FIELDS = tuple(AgentConfig.model_fields)


def _from_file(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} does not exist") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    table = data.get("agent", data)
    if not isinstance(table, dict):
        raise ConfigError(f"config file {path}: [agent] must be a table")
    unknown = sorted(set(table) - set(FIELDS))
    if unknown:
        raise ConfigError(f"config file {path}: unknown setting(s) {', '.join(unknown)}")
    return dict(table)


def _from_env(environ: dict[str, str]) -> dict[str, Any]:
    return {
        name: environ[ENV_PREFIX + name.upper()]
        for name in FIELDS
        if ENV_PREFIX + name.upper() in environ
    }


def load(
    config_file: Path | None = None,
    flags: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> AgentConfig:
    """Merge file < environment < flags and validate, naming the culprit on error."""
    sources: dict[str, str] = {}
    merged: dict[str, Any] = {}
    layers: list[tuple[str, dict[str, Any]]] = []
    if config_file is not None:
        layers.append((f"config file {config_file}", _from_file(config_file)))
    env = _from_env(dict(os.environ if environ is None else environ))
    layers.append(("environment", env))
    layers.append(("command line", {k: v for k, v in (flags or {}).items() if v is not None}))
    for source, values in layers:
        for key, value in values.items():
            merged[key] = value
            sources[key] = (
                f"environment variable {ENV_PREFIX}{key.upper()}"
                if source == "environment"
                else source
            )
    if "server" not in merged:
        raise ConfigError(
            f"no server URL: pass --server, set {ENV_PREFIX}SERVER"
            ' or put server = "..." in the config file'
        )
    try:
        return AgentConfig.model_validate(merged)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else "?"
            value = merged.get(field, "<missing>")
            shown = "<hidden>" if field == "enroll_secret" else repr(value)
            problems.append(
                f"{field} = {shown} (from {sources.get(field, 'defaults')}): {err['msg']}"
            )
        raise ConfigError("invalid agent configuration:\n  " + "\n  ".join(problems)) from None
