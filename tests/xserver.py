"""A real X server for tests: Xvfb, the openbox window manager and helper windows.

tests/conftest.py registers this module as a plugin (``pytest_plugins``), so
any test can ask for the ``xdisplay`` fixture; import only the classes (for type
hints) from here. Importing the fixture itself into a test module would define a
second fixture and start a second X server for that module.

``xdisplay`` is session-scoped: one Xvfb + openbox for the whole run. It skips
when a binary is missing; in CI those are installed, and a skip of a
``@pytest.mark.real`` test counts as a failure there.

Everything runs in its own process group and is killed at teardown. Waits poll
the server instead of sleeping fixed times, and fail with the relevant log after
:data:`TIMEOUT` seconds rather than hanging.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import Xlib.display
import Xlib.error
from Xlib import X, Xatom

T = TypeVar("T")

INSTALL_HINT = "apt-get install xvfb openbox xdotool"
#: Generous: CI machines can be slow, and every wait returns as soon as it can.
TIMEOUT = 15.0


def require_binaries(*names: str) -> None:
    for name in names:
        if shutil.which(name) is None:
            pytest.skip(f"{name} not installed: {INSTALL_HINT}")


def wait_until(
    check: Callable[[], T | None], what: str, timeout: float = TIMEOUT, interval: float = 0.01
) -> T:
    """Poll ``check`` until it returns something other than None/False."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None and result is not False:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def _start(argv: list[str], log: Path, env: dict[str, str], **kw: Any) -> subprocess.Popen[bytes]:
    # A new session per process, so teardown can kill it with all its children.
    with log.open("ab") as out:
        return subprocess.Popen(
            argv, env=env, stdin=subprocess.DEVNULL, stderr=out, start_new_session=True, **kw
        )


def _stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=5)
                break
            except subprocess.TimeoutExpired:
                continue
    proc.wait()


def _read_line(stream: Any, proc: subprocess.Popen[Any], what: str, log: Path) -> str:
    """One line from a child's pipe, failing clearly if it dies or stalls."""
    deadline = time.monotonic() + TIMEOUT
    buf = b""
    fd = stream.fileno()
    while not buf.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"timed out waiting for {what}; log:\n{_tail(log)}")
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            chunk = os.read(fd, 64)
            if not chunk:
                proc.wait(timeout=5)
                raise RuntimeError(
                    f"{what}: process exited with {proc.returncode}; log:\n{_tail(log)}"
                )
            buf += chunk
    return buf.decode().strip()


def _tail(log: Path) -> str:
    try:
        return log.read_text(errors="replace")[-4000:]
    except OSError:
        return "(no log)"


def free_display(start: int = 100, stop: int = 10000) -> str:
    """A display name no server holds, away from the low numbers -displayfd hands out.

    For tests that must restart a server on the same number: -displayfd scans
    from :0 up, so a low number freed by a restart could be taken meanwhile by
    another test run's server.
    """
    candidates = list(range(start, stop))
    random.shuffle(candidates)
    for n in candidates:
        if not Path(f"/tmp/.X{n}-lock").exists() and not Path(f"/tmp/.X11-unix/X{n}").exists():
            return f":{n}"
    raise RuntimeError(f"no free X display number in {start}..{stop}")


class Xvfb:
    """One Xvfb server. Without a display number it picks a free one itself.

    ``-displayfd`` makes Xvfb choose the number (it takes the lock file
    atomically, so parallel test runs cannot collide the way "check
    /tmp/.X11-unix, then start" can) and write it once it accepts connections,
    which doubles as the readiness signal.
    """

    def __init__(
        self, log_dir: Path, display: str | None = None, extra_args: tuple[str, ...] = ()
    ) -> None:
        self.log = log_dir / f"xvfb{display or ''}.log".replace(":", "")
        read_fd, write_fd = os.pipe()
        argv = ["Xvfb", *([display] if display else []), "-displayfd", str(write_fd)]
        argv += ["-screen", "0", "1280x800x24", "-nolisten", "tcp", *extra_args]
        try:
            self.proc = _start(argv, self.log, dict(os.environ), pass_fds=(write_fd,))
        finally:
            os.close(write_fd)
        with os.fdopen(read_fd, "rb", buffering=0) as pipe:
            try:
                number = _read_line(pipe, self.proc, "Xvfb to start", self.log)
            except BaseException:
                _stop(self.proc)
                raise
        self.display = f":{number}"

    def stop(self) -> None:
        _stop(self.proc)


WINDOW_SCRIPT = r"""
import json, os, socket, sys
from Xlib import X, Xatom, Xutil, display

cfg = json.loads(sys.argv[1])
d = display.Display()
screen = d.screen()

def describe(win):
    # What a toolkit sets: UTF-8 _NET_WM_NAME, a Latin-1 WM_NAME for old WMs,
    # WM_CLASS, and _NET_WM_PID with the WM_CLIENT_MACHINE it is relative to.
    title = cfg["title"]
    win.change_property(d.intern_atom("_NET_WM_NAME"), d.intern_atom("UTF8_STRING"), 8,
                        title.encode())
    win.change_property(Xatom.WM_NAME, Xatom.STRING, 8, title.encode("latin-1", "replace"))
    win.set_wm_class(*cfg["wm_class"])
    win.change_property(d.intern_atom("_NET_WM_PID"), Xatom.CARDINAL, 32, [os.getpid()])
    win.change_property(Xatom.WM_CLIENT_MACHINE, Xatom.STRING, 8,
                        socket.gethostname().encode())

def window(parent, pixel, mask=0):
    return parent.create_window(0, 0, 320, 200, 0, screen.root_depth, X.InputOutput,
                                X.CopyFromParent, background_pixel=pixel, event_mask=mask)

top = window(screen.root, screen.white_pixel, X.StructureNotifyMask)
top.set_wm_hints(flags=Xutil.InputHint, input=1)
if cfg["wrapper"]:
    # The client describes itself on a child, not on the top-level window.
    inner = window(top, screen.black_pixel)
    describe(inner)
    inner.map()
    client = inner
else:
    describe(top)
    client = top
top.map()
while True:
    ev = d.next_event()
    if ev.type == X.MapNotify and ev.window.id == top.id:
        break
print(top.id, client.id, flush=True)
while True:
    d.next_event()
"""


class XWindow:
    """A helper process showing one mapped, WM-managed window."""

    def __init__(self, server: XServer, proc: subprocess.Popen[bytes], ids: str) -> None:
        top, client = ids.split()
        self._server = server
        self.proc = proc
        self.pid = proc.pid
        #: The top-level window: what _NET_ACTIVE_WINDOW reports.
        self.window_id = int(top)
        #: The window carrying WM_CLASS/_NET_WM_NAME (a child in wrapper mode).
        self.client_id = int(client)

    def close(self) -> None:
        """Kill the process and wait until the server and the WM are done with it.

        The server destroys the windows when the connection drops; openbox then
        unmanages them and moves the focus on. Waiting for all of it keeps one
        test's teardown from changing _NET_ACTIVE_WINDOW in the middle of the next.
        """
        _stop(self.proc)
        self._server.wait_window_gone(self.window_id)
        self._server.wait_unmanaged(self.window_id)

    def __enter__(self) -> XWindow:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class XServer:
    """Xvfb + openbox; ``display`` is ":N", ``env`` is os.environ with DISPLAY set."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self._procs: list[subprocess.Popen[Any]] = []
        self._xvfb = Xvfb(log_dir)
        self.display = self._xvfb.display
        self.env = dict(os.environ, DISPLAY=self.display)
        try:
            self._conn: Any = Xlib.display.Display(self.display)
            self._root: Any = self._conn.screen().root
            self._start_wm()
        except BaseException:
            self.stop()
            raise

    # --- lifecycle ---------------------------------------------------------

    def _start_wm(self) -> None:
        # Private XDG dirs: the user's openbox config (focus-follows-mouse, ...)
        # must not change behaviour, and openbox must not write into $HOME.
        env = dict(self.env)
        for var in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME"):
            path = self.log_dir / var.lower()
            path.mkdir(exist_ok=True)
            env[var] = str(path)
        log = self.log_dir / "openbox.log"
        wm = _start(["openbox", "--sm-disable"], log, env, stdout=subprocess.DEVNULL)
        self._procs.append(wm)

        def managing() -> bool:
            if wm.poll() is not None:
                raise RuntimeError(f"openbox exited with {wm.returncode}:\n{_tail(log)}")
            return self._card32(self._root.id, "_NET_SUPPORTING_WM_CHECK") is not None

        wait_until(managing, "openbox to manage the screen")

    def stop(self) -> None:
        for proc in reversed(self._procs):
            _stop(proc)
        self._procs.clear()
        conn = getattr(self, "_conn", None)
        if conn is not None:
            # The server may already be gone; nothing left to release then.
            with contextlib.suppress(Xlib.error.ConnectionClosedError, OSError):
                conn.close()
        self._xvfb.stop()

    # --- windows -----------------------------------------------------------

    def open_window(
        self, title: str, wm_class: tuple[str, str], *, wrapper: bool = False
    ) -> XWindow:
        """Start a process showing a window; return once the WM manages it."""
        cfg = json.dumps({"title": title, "wm_class": list(wm_class), "wrapper": wrapper})
        log = self.log_dir / "windows.log"
        proc = _start(
            [sys.executable, "-c", WINDOW_SCRIPT, cfg], log, self.env, stdout=subprocess.PIPE
        )
        self._procs.append(proc)
        assert proc.stdout is not None
        try:
            ids = _read_line(proc.stdout, proc, f"window {title!r} to map", log)
        except BaseException:
            _stop(proc)
            raise
        handle = XWindow(self, proc, ids)
        wait_until(lambda: handle.window_id in self.client_list(), f"openbox to manage {title!r}")
        return handle

    def focus(self, handle: XWindow) -> None:
        """Activate the window and wait until _NET_ACTIVE_WINDOW says so.

        xdotool sends the EWMH activation request as a pager would, which openbox
        honours without focus-stealing checks. The request is repeated if a
        round is ignored (e.g. it raced the window being mapped).
        """
        for _ in range(3):
            self.xdotool("windowactivate", str(handle.window_id))
            try:
                wait_until(
                    lambda: self.active_window() == handle.window_id,
                    f"window {handle.window_id:#x} to become active",
                    timeout=TIMEOUT / 3,
                )
                return
            except TimeoutError:
                continue
        raise TimeoutError(f"openbox never activated window {handle.window_id:#x}")

    def set_title(self, handle: XWindow, title: str) -> None:
        """Change a running window's title the way a toolkit does (UTF-8 + Latin-1)."""
        win = self._conn.create_resource_object("window", handle.client_id)
        utf8 = self._conn.intern_atom("UTF8_STRING")
        win.change_property(self._conn.intern_atom("_NET_WM_NAME"), utf8, 8, title.encode())
        win.change_property(Xatom.WM_NAME, Xatom.STRING, 8, title.encode("latin-1", "replace"))
        # sync: the server has applied it before any other client's next request.
        self._conn.sync()

    def input(self) -> None:
        """Real (XTEST) pointer motion, which resets the server's idle counter.

        Moving there and back keeps the pointer in place, and at least one of the
        two moves is a real motion even at the screen edge.
        """
        self.xdotool("mousemove_relative", "--", "1", "1", "mousemove_relative", "--", "-1", "-1")

    def xdotool(self, *args: str) -> str:
        done = subprocess.run(
            ["xdotool", *args], env=self.env, capture_output=True, text=True, timeout=TIMEOUT
        )
        if done.returncode != 0:
            raise RuntimeError(f"xdotool {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    # --- reading the server ------------------------------------------------

    def active_window(self) -> int | None:
        return self._card32(self._root.id, "_NET_ACTIVE_WINDOW")

    def client_list(self) -> list[int]:
        prop = self._root.get_full_property(
            self._conn.intern_atom("_NET_CLIENT_LIST"), X.AnyPropertyType
        )
        return [] if prop is None else [int(w) for w in prop.value]

    def window_exists(self, window_id: int) -> bool:
        try:
            self._conn.create_resource_object("window", window_id).get_geometry()
        except Xlib.error.XError:
            return False
        return True

    def wait_window_gone(self, window_id: int) -> None:
        wait_until(lambda: not self.window_exists(window_id), f"window {window_id:#x} to go")

    def wait_unmanaged(self, window_id: int) -> None:
        wait_until(
            lambda: window_id not in self.client_list(), f"openbox to unmanage {window_id:#x}"
        )
        # openbox hands the focus to another window right after unmanaging; with
        # no other window it leaves _NET_ACTIVE_WINDOW naming the dead one. Either
        # way the property is final once it stops changing.
        self.settle(quiet=0.1)

    def settle(self, quiet: float = 0.2) -> None:
        """Wait until _NET_ACTIVE_WINDOW has not changed for ``quiet`` seconds.

        For tests that overwrite root properties the WM owns: a focus change still
        in flight would overwrite them back.
        """
        last: list[int | None] = [self.active_window()]
        since = [time.monotonic()]

        def quiet_long_enough() -> bool:
            now = self.active_window()
            if now != last[0]:
                last[0], since[0] = now, time.monotonic()
            return time.monotonic() - since[0] >= quiet

        wait_until(quiet_long_enough, "the window manager to settle")

    def dead_window_id(self) -> int:
        """The id of a window that existed and was destroyed (never seen by the WM)."""
        win = self._root.create_window(0, 0, 1, 1, 0, X.CopyFromParent)
        window_id = int(win.id)
        win.destroy()
        self._conn.sync()
        return window_id

    def set_property(
        self, window_id: int, name: str, prop_type: str, data: bytes | list[int]
    ) -> None:
        """Set any property (bytes: format 8, ints: format 32), applied before returning."""
        win = self._conn.create_resource_object("window", window_id)
        fmt = 8 if isinstance(data, bytes) else 32
        atom, type_atom = self._conn.intern_atom(name), self._conn.intern_atom(prop_type)
        win.change_property(atom, type_atom, fmt, data)
        self._conn.sync()

    def delete_property(self, window_id: int, name: str) -> None:
        win = self._conn.create_resource_object("window", window_id)
        win.delete_property(self._conn.intern_atom(name))
        self._conn.sync()

    def root_id(self) -> int:
        return int(self._root.id)

    def _card32(self, window_id: int, name: str) -> int | None:
        win = self._conn.create_resource_object("window", window_id)
        prop = win.get_full_property(self._conn.intern_atom(name), X.AnyPropertyType)
        if prop is None or len(prop.value) == 0:
            return None
        return int(prop.value[0])


@pytest.fixture(scope="session")
def xdisplay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[XServer]:
    """A running Xvfb + openbox for the whole test session."""
    require_binaries("Xvfb", "openbox", "xdotool")
    server = XServer(tmp_path_factory.mktemp("xserver"))
    try:
        yield server
    finally:
        server.stop()
