"""Seconds since the last keyboard/mouse input on Linux/X11.

The X server itself counts the time since the last input event for its screen
saver; the MIT-SCREEN-SAVER extension exposes that counter, so one request per
poll gives the idle time without watching input devices ourselves.
"""

from __future__ import annotations

from Xlib.ext import screensaver

from worklens.agent.collectors.base import Collector, CollectorUnavailable
from worklens.agent.collectors.x11 import ReconnectingDisplay, XConnection


class IdleX11Collector(Collector[float]):
    name = "idle"

    def __init__(self, display: str | None = None) -> None:
        self._x = ReconnectingDisplay(
            display,
            on_connect=_require_screensaver,
            extensions=frozenset((screensaver.extname,)),
        )

    def open(self) -> None:
        self._x.connect()

    def poll(self) -> float:
        return self._x.run(_idle_seconds)

    def close(self) -> None:
        self._x.close()


def _require_screensaver(conn: XConnection) -> None:
    if not conn.display.has_extension(screensaver.extname):
        raise CollectorUnavailable(
            f"X display {conn.name} has no {screensaver.extname} extension, "
            "so input idle time cannot be read"
        )


def _idle_seconds(conn: XConnection) -> float:
    return float(conn.root.screensaver_query_info().idle) / 1000.0
