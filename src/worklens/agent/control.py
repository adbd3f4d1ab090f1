"""The settings the server pushes to the agent, applied live.

The server may set four settings for all agents of its organization
(``wire.PUSHED_SETTINGS``: ``idle_threshold_s``, ``poll_interval_s``,
``host_interval_s``, ``send_interval_s``; ``PUT /api/v1/settings/agent``). It
sends them with the answer to a batch or heartbeat when the version the agent
reports (with every batch) is not the current one.

Precedence, for these four settings only: a value pushed by the server wins
over the local configuration (flags > environment > config file > defaults);
a setting the server leaves unset, or sets back to null, takes the local value
again. Every other setting comes from the local configuration alone.

The threads read :attr:`PushedSettings.current` at every round, so a change
applies without a restart; it is logged. The last settings received are kept
in ``settings.json`` in the state directory (0600, written atomically), so an
agent that restarts while the server is out of reach still uses them.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, NamedTuple

from worklens.agent.config import AgentConfig
from worklens.protocol import wire
from worklens.protocol.wire import PUSHED_SETTINGS

log = logging.getLogger("worklens.agent")


class Effective(NamedTuple):
    """The values in force (same order as ``wire.PUSHED_SETTINGS``)."""

    idle_threshold_s: float
    poll_interval_s: float
    host_interval_s: float
    send_interval_s: float


assert Effective._fields == tuple(PUSHED_SETTINGS)


def _valid(name: str, value: object) -> bool:
    low, high = PUSHED_SETTINGS[name]
    return (type(value) is float or type(value) is int) and low <= value <= high


class PushedSettings:
    """The local values, what the server pushed over them, and the result."""

    def __init__(self, config: AgentConfig) -> None:
        self.local = Effective(*(float(getattr(config, name)) for name in PUSHED_SETTINGS))
        self.path: Path = config.state_dir / "settings.json"
        self.server = config.server
        self.version = 0  # of the settings applied; 0: none from the server
        self.pushed: dict[str, float] = {}
        # Replaced as a whole (never changed in place): threads read it without a lock.
        self.current = self.local

    def load(self) -> None:
        """Apply the settings saved from an earlier run, if they are this server's."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.warning("ignoring %s: %s", self.path, exc)
            return
        if not isinstance(data, dict) or data.get("server") != self.server:
            return
        version, values = data.get("version"), data.get("values")
        if type(version) is not int or version < 0 or not isinstance(values, dict):
            log.warning("ignoring %s: not the settings this agent writes", self.path)
            return
        pushed = {k: float(v) for k, v in values.items() if k in PUSHED_SETTINGS and _valid(k, v)}
        self._set(version, pushed, "saved")

    def apply(self, settings: wire.AgentSettings) -> None:
        """Apply settings from the server, save them, log what changed."""
        given: dict[str, Any] = settings._asdict()
        pushed = {name: float(given[name]) for name in PUSHED_SETTINGS if given[name] is not None}
        self._set(settings.version, pushed, "server")
        self._save()

    def forget(self) -> None:
        """Back to the local values (the agent enrolls anew: its server may differ)."""
        self._set(0, {}, "reset")
        self.path.unlink(missing_ok=True)

    def _set(self, version: int, pushed: dict[str, float], source: str) -> None:
        before = self.current
        after = Effective(
            *(pushed.get(name, getattr(self.local, name)) for name in PUSHED_SETTINGS)
        )
        self.version, self.pushed, self.current = version, pushed, after
        changed = [
            f"{name} {old:g} -> {new:g}" + (" (server)" if name in pushed else " (local config)")
            for name, old, new in zip(PUSHED_SETTINGS, before, after, strict=True)
            if old != new
        ]
        log.info(
            "agent settings v%d (%s): %s", version, source, ", ".join(changed) or "nothing changed"
        )

    def _save(self) -> None:
        body = {"server": self.server, "version": self.version, "values": self.pushed}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = self.path.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(body, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:  # they still apply; only a restart would forget them
            log.warning("cannot save the server's settings to %s: %s", self.path, exc)
