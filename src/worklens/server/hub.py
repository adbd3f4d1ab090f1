"""Which agents hold a live connection to this server instance."""

from __future__ import annotations

import threading


class Hub:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._connections: dict[int, int] = {}

    def connected(self, device_id: int) -> None:
        with self._lock:
            self._connections[device_id] = self._connections.get(device_id, 0) + 1

    def disconnected(self, device_id: int) -> None:
        with self._lock:
            left = self._connections.get(device_id, 0) - 1
            if left > 0:
                self._connections[device_id] = left
            else:
                self._connections.pop(device_id, None)

    def is_connected(self, device_id: int) -> bool:
        with self._lock:
            return device_id in self._connections

    def online(self) -> set[int]:
        with self._lock:
            return set(self._connections)
