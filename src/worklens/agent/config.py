"""Agent configuration: TOML file, then environment, then command-line flags.

Later sources win. Every bad value is reported with the setting's name, where
it came from and what is wrong, before the agent starts doing anything.

Four settings can also come from the server (``wire.PUSHED_SETTINGS``:
``idle_threshold_s``, ``poll_interval_s``, ``host_interval_s``,
``send_interval_s``; ``PUT /api/v1/settings/agent``). A value the server pushes
overrides all three local sources for that setting, live (``agent/control.py``);
a setting the server leaves unset, or sets back to null, keeps the local value.

The settings are checked here without pydantic, which the agent's steady state
does without (it would cost a tenth of its memory): the ordinary values (the
right type, or a plain number written as text, within bounds) are accepted
directly. Anything else goes to the pydantic model built from the same
definitions (:mod:`worklens.agent.config_model`, imported only then), which
gives the verdict and the error message. ``tests/agent/test_config.py`` proves
that whatever the direct check accepts, the model accepts with the same values.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from worklens.protocol.wire import PUSHED_SETTINGS

ENV_PREFIX = "WORKLENS_AGENT_"
COLLECTORS = ("focus", "idle", "host")
TRANSPORTS = ("auto", "websocket", "http")
LOG_LEVELS = ("debug", "info", "warning", "error")


def default_state_dir() -> Path:
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "WorkLens" / "agent"
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "worklens-agent"


class ConfigError(ValueError):
    """A setting is wrong; the message names it, its source and the problem."""


@dataclass(frozen=True, slots=True)
class AgentConfig:
    server: str  # server base URL, e.g. https://worklens.example.com
    enroll_secret: str | None = None  # organization enrollment secret
    state_dir: Path = field(default_factory=default_state_dir)
    poll_interval_s: float = 1.0
    idle_threshold_s: float = 300.0
    host_interval_s: float = 30.0
    heartbeat_interval_s: float = 30.0
    send_interval_s: float = 2.0
    batch_size: int = 500
    transport: Literal["auto", "websocket", "http"] = "auto"
    collectors: tuple[str, ...] = COLLECTORS
    spool_max_items: int = 200_000
    max_attempts: int = 10
    shutdown_grace_s: float = 3.0
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # ActivityWatch's REST API for AW watchers and plugins (agent/aw_api.py):
    # port (0 = off), loopback address, days of AW events kept for its reads.
    aw_port: int = 5600
    aw_host: str = "127.0.0.1"
    aw_retention_days: float = 7.0

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

    @property
    def aw_store_path(self) -> Path:
        return self.state_dir / "aw.db"


FIELDS = tuple(f.name for f in dataclasses.fields(AgentConfig))

#: Bounds of the numeric settings: name -> (lowest, highest or None). Those the
#: server may push (``wire.PUSHED_SETTINGS``) are defined with the protocol.
BOUNDS: dict[str, tuple[float, float | None]] = {
    **PUSHED_SETTINGS,
    "heartbeat_interval_s": (1, 3600),
    "batch_size": (1, 5000),
    "spool_max_items": (100, None),
    "max_attempts": (1, 1000),
    "shutdown_grace_s": (0, 60),
    "aw_port": (0, 65535),
    "aw_retention_days": (1, 3650),
}
_INTS = frozenset(("batch_size", "spool_max_items", "max_attempts", "aw_port"))


def server_url(v: str) -> str:
    """The server URL as kept: ValueError unless it is http(s) with a host."""
    parts = urlsplit(v)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an http:// or https:// URL with a host")
    return v.rstrip("/")


def loopback_host(v: str) -> str:
    """The AW API's bind address: ValueError unless it is a loopback IP address.

    The API has no authentication (as ActivityWatch's own server), so it must
    never be reachable from another machine; names are refused too, since what
    they resolve to can change.
    """
    try:
        address = ipaddress.ip_address(v)
    except ValueError:
        raise ValueError(
            "must be a loopback IP address such as 127.0.0.1 (the ActivityWatch API"
            " is for programs on this machine only)"
        ) from None
    if not address.is_loopback:
        raise ValueError(
            f"{v} is not a loopback address: the ActivityWatch API listens on 127.0.0.1"
            " (or another loopback address) only"
        )
    return str(address)


def collector_names(v: Any) -> Any:
    """A comma-separated string becomes a list; unknown names are refused."""
    if isinstance(v, str):
        v = [c.strip() for c in v.split(",") if c.strip()]
    unknown = [c for c in v if c not in COLLECTORS]
    if unknown:
        raise ValueError(f"unknown collector(s) {unknown}; known: {', '.join(COLLECTORS)}")
    return tuple(v)


# --- the direct check ----------------------------------------------------------------

# Plain decimal numbers only: no underscores, exponents, spaces or non-ASCII digits,
# whose reading differs between Python and pydantic; those go to the model.
_INT_TEXT = re.compile(r"[+-]?[0-9]{1,18}")
_FLOAT_TEXT = re.compile(r"[+-]?[0-9]{1,18}(?:\.[0-9]{1,18})?")


def _text(v: object) -> bool:
    if type(v) is not str:
        return False
    try:
        v.encode("utf-8")  # environment values can hold lone surrogates
    except UnicodeEncodeError:
        return False
    return True


def _number(name: str, v: object) -> float | int | None:
    if type(v) is str:
        pattern = _INT_TEXT if name in _INTS else _FLOAT_TEXT
        if not pattern.fullmatch(v):
            return None
        n: float | int = int(v) if name in _INTS else float(v)
    elif type(v) is int or (type(v) is float and name not in _INTS):
        n = v
    else:
        return None
    low, high = BOUNDS[name]
    if not (n >= low and (high is None or n <= high)):
        return None
    return n if name in _INTS else float(n)


def _direct(merged: dict[str, Any]) -> AgentConfig | None:
    """The config for values the direct check can judge, else None."""
    if "server" not in merged or not set(merged) <= set(FIELDS):
        return None
    values: dict[str, Any] = {}
    for name, v in merged.items():
        if name == "server":
            if not _text(v):
                return None
            try:
                values[name] = server_url(v)
            except ValueError:
                return None
        elif name == "aw_host":
            if not _text(v):
                return None
            try:
                values[name] = loopback_host(v)
            except ValueError:
                return None
        elif name == "enroll_secret":
            if v is not None and not _text(v):
                return None
            values[name] = v
        elif name == "state_dir":
            if _text(v):
                values[name] = Path(v)
            elif isinstance(v, Path):
                values[name] = v
            else:
                return None
        elif name in BOUNDS:
            n = _number(name, v)
            if n is None:
                return None
            values[name] = n
        elif name in ("transport", "log_level"):
            if type(v) is not str or v not in (TRANSPORTS if name == "transport" else LOG_LEVELS):
                return None
            values[name] = v
        elif name == "collectors":
            if not (_text(v) or (type(v) in (list, tuple) and all(_text(c) for c in v))):
                return None
            try:
                values[name] = collector_names(v)
            except ValueError:
                return None
    return AgentConfig(**values)


def _validated(merged: dict[str, Any], sources: dict[str, str]) -> AgentConfig:
    direct = _direct(merged)
    if direct is not None:
        return direct
    from pydantic import ValidationError

    from worklens.agent.config_model import AgentConfigModel

    try:
        model = AgentConfigModel.model_validate(merged)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = str(err["loc"][0]) if err["loc"] else "?"
            value = merged.get(name, "<missing>")
            shown = "<hidden>" if name == "enroll_secret" else repr(value)
            problems.append(
                f"{name} = {shown} (from {sources.get(name, 'defaults')}): {err['msg']}"
            )
        raise ConfigError("invalid agent configuration:\n  " + "\n  ".join(problems)) from None
    return AgentConfig(**{name: getattr(model, name) for name in FIELDS})


# --- sources ---------------------------------------------------------------------------


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
    return _validated(merged, sources)
