"""The one interface every collector implements.

A collector reads one source on the machine (focused window, input idle time,
host health, ...). The agent opens each collector once; a collector that cannot
run here raises :class:`CollectorUnavailable` from ``open`` with a reason a
person can act on, the agent logs that in one line, and the others go on.
A collector that fails while polling raises any exception; the agent logs it,
skips that sample and polls again next interval.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Generic, TypeVar

T = TypeVar("T")


class CollectorUnavailable(Exception):
    """This collector cannot run on this machine (no display, missing extension, ...)."""


class Collector(ABC, Generic[T]):
    #: Short stable name used in config, logs and the status API.
    name: ClassVar[str]

    def open(self) -> None:
        """Acquire resources; raise CollectorUnavailable if this source is absent."""

    @abstractmethod
    def poll(self) -> T:
        """Read the source once. Must be quick: it runs on the collector's thread."""

    def close(self) -> None:
        """Release resources. Safe to call more than once."""


@dataclass(frozen=True, slots=True)
class FocusSample:
    """The focused window as read from the desktop."""

    app: str
    title: str
    process: str | None = None
    pid: int | None = None
