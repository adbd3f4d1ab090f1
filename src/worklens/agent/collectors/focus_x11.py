"""Focused application and window title on Linux/X11, read through EWMH.

The window manager publishes the focused client window in ``_NET_ACTIVE_WINDOW``
on the root window; the application describes itself on that window with
``WM_CLASS`` (which program), ``_NET_WM_NAME``/``WM_NAME`` (the title) and
``_NET_WM_PID`` (which process). A poll is a handful of property reads on one
connection kept open across polls.
"""

from __future__ import annotations

import socket
from pathlib import Path

from Xlib import Xatom

from worklens.agent.collectors.base import Collector, FocusSample
from worklens.agent.collectors.x11 import ReconnectingDisplay, XConnection

#: The kernel truncates /proc/<pid>/comm to 15 bytes (TASK_COMM_LEN - 1).
_COMM_MAX = 15


class FocusX11Collector(Collector[FocusSample | None]):
    name = "focus"

    def __init__(self, display: str | None = None, proc_root: Path = Path("/proc")) -> None:
        self._x = ReconnectingDisplay(display)
        self._proc = proc_root
        self._hostnames = _local_hostnames()

    def open(self) -> None:
        self._x.connect()

    def poll(self) -> FocusSample | None:
        return self._x.run(self._read)

    def close(self) -> None:
        self._x.close()

    def _read(self, conn: XConnection) -> FocusSample | None:
        active = conn.get_card32(conn.root.id, conn.atoms["_NET_ACTIVE_WINDOW"])
        if not active:
            # 0 means "nothing focused"; no property means no EWMH window manager.
            return None
        return self._sample(conn, active)

    def _sample(self, conn: XConnection, window: int) -> FocusSample | None:
        client, wm_class = _client_and_class(conn, window)
        title = _title(conn, window)
        if title is None and client != window:
            title = _title(conn, client)
        pid = _pid(conn, client, window)
        if not wm_class and title is None and pid is None and not conn.exists(window):
            # Every read came back empty because the window was destroyed between
            # reading _NET_ACTIVE_WINDOW and its properties: nothing is focused.
            return None
        if pid is not None and not self._is_local(conn, client):
            # _NET_WM_PID is relative to WM_CLIENT_MACHINE; a remote (ssh -X)
            # client's pid would name some unrelated local process.
            pid = None
        process = self._process_name(pid) if pid is not None else None
        return FocusSample(_app(wm_class, process), title or "", process, pid)

    def _is_local(self, conn: XConnection, window: int) -> bool:
        machine = conn.get_text(window, Xatom.WM_CLIENT_MACHINE)
        # Unset: EWMH requires it with _NET_WM_PID, but many clients skip it, and
        # such clients are practically always local.
        return not machine or _short_host(machine) in self._hostnames

    def _process_name(self, pid: int) -> str | None:
        base = self._proc / str(pid)
        try:
            comm = (base / "comm").read_text(errors="replace").rstrip("\n")
        except OSError:
            return None  # the process exited, or /proc is not ours to read
        if len(comm.encode()) < _COMM_MAX:
            return comm
        # comm is cut at 15 bytes ("gnome-terminal-"); argv[0] usually has the
        # full name, but only trust it if it really extends comm.
        try:
            argv0 = (base / "cmdline").read_bytes().split(b"\0", 1)[0]
        except OSError:
            return comm
        full = argv0.decode(errors="replace").rsplit("/", 1)[-1]
        return full if full.startswith(comm) else comm


def _title(conn: XConnection, window: int) -> str | None:
    title = conn.get_text(window, conn.atoms["_NET_WM_NAME"])
    if title is None:
        title = conn.get_text(window, Xatom.WM_NAME)
    return title


def _client_and_class(conn: XConnection, window: int) -> tuple[int, list[str] | None]:
    """The window describing the application, and its WM_CLASS.

    Normally that is the active window itself. But some window managers and
    toolkits report a wrapper rather than the client (a WM frame, a Java or Wine
    focus proxy, an embedding container), and the window that carries WM_CLASS
    is then one level down, so look there before giving up on the class.
    """
    wm_class = conn.get_strings(window, Xatom.WM_CLASS)
    if wm_class:
        return window, wm_class
    for child in conn.children(window):
        child_class = conn.get_strings(child, Xatom.WM_CLASS)
        if child_class:
            return child, child_class
    return window, wm_class


def _pid(conn: XConnection, client: int, window: int) -> int | None:
    for candidate in dict.fromkeys((client, window)):
        pid = conn.get_card32(candidate, conn.atoms["_NET_WM_PID"])
        if pid:  # 0 is not a process
            return pid
    return None


def _app(wm_class: list[str] | None, process: str | None) -> str:
    # WM_CLASS is "instance\0class\0"; the class ("Firefox", "Code") names the
    # application, the instance can be per-window or per-invocation.
    instance, klass = [*(wm_class or []), "", ""][:2]
    return klass or instance or process or "unknown"


def _short_host(name: str) -> str:
    return name.lower().split(".", 1)[0]


def _local_hostnames() -> set[str]:
    # Short names only: WM_CLIENT_MACHINE may be short or fully qualified, and a
    # DNS lookup for the FQDN could block the agent's start.
    return {_short_host(socket.gethostname()), "localhost"}
