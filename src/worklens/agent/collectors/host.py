"""Host health: CPU, memory, swap, disk, load, uptime and temperature, via psutil.

Every reading is measured on the machine; one the platform cannot provide is
None, never a made-up number.
"""

from __future__ import annotations

import math
import os
import sys
import time

import psutil

from worklens.agent.collectors.base import Collector
from worklens.protocol.wire import HostData


def root_filesystem() -> str:
    """The filesystem whose fullness matters most: "/" or the Windows system drive."""
    if sys.platform == "win32":
        return os.environ.get("SYSTEMDRIVE", "C:") + "\\"
    return "/"


def _percent(value: float) -> float:
    # psutil computes these as ratios; float rounding can step a hair outside 0..100.
    return min(100.0, max(0.0, float(value)))


def highest_temperature() -> float | None:
    """The hottest current sensor reading in °C, or None when there is no sensor.

    psutil only has ``sensors_temperatures`` on Linux and FreeBSD, and virtual
    machines usually expose no sensors at all.
    """
    read = getattr(psutil, "sensors_temperatures", None)
    if read is None:
        return None
    try:
        sensors = read()
    except (OSError, RuntimeError):
        return None
    readings = [
        float(entry.current)
        for entries in sensors.values()
        for entry in entries
        if entry.current is not None and math.isfinite(entry.current)
    ]
    return max(readings) if readings else None


def load_average() -> tuple[float, float, float] | None:
    try:
        one, five, fifteen = psutil.getloadavg()
    except (AttributeError, OSError):
        return None
    return max(0.0, one), max(0.0, five), max(0.0, fifteen)


class HostCollector(Collector[HostData]):
    name = "host"

    def __init__(self, disk_path: str | None = None) -> None:
        self.disk_path = disk_path or root_filesystem()
        self._primed = False

    def open(self) -> None:
        # cpu_percent(interval=None) reports usage since the previous call; the
        # first call has nothing to compare with and returns a meaningless 0.0.
        psutil.cpu_percent(interval=None)
        # On Windows psutil emulates the load average with a sampling thread that
        # starts on the first call; start it now so the first poll is not zeros.
        load_average()
        self._primed = True

    def poll(self) -> HostData:
        if self._primed:
            cpu = psutil.cpu_percent(interval=None)
        else:
            # Polled without open(): measure over a short window instead of
            # reporting the bogus first value.
            cpu = psutil.cpu_percent(interval=0.1)
            self._primed = True

        swap = psutil.swap_memory()
        try:
            disk: float | None = _percent(psutil.disk_usage(self.disk_path).percent)
        except OSError:
            disk = None
        load = load_average()
        uptime = max(0.0, time.time() - psutil.boot_time())

        return HostData(
            cpu_percent=_percent(cpu),
            mem_percent=_percent(psutil.virtual_memory().percent),
            # Without any swap configured a percentage means nothing.
            swap_percent=_percent(swap.percent) if swap.total > 0 else None,
            disk_percent=disk,
            load1=load[0] if load else None,
            load5=load[1] if load else None,
            load15=load[2] if load else None,
            uptime_s=uptime,
            temperature_c=highest_temperature(),
        )
