"""The X11 focus and idle collectors against a real Xvfb + openbox.

``xdisplay`` comes from :mod:`tests.xserver`, registered in tests/conftest.py.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import Xlib.display
import Xlib.error
from Xlib import X, Xatom

from tests.xserver import XServer, Xvfb, XWindow, free_display, require_binaries
from worklens.agent.collectors.base import CollectorUnavailable, FocusSample
from worklens.agent.collectors.focus_x11 import FocusX11Collector
from worklens.agent.collectors.idle_x11 import IdleX11Collector
from worklens.agent.collectors.x11 import decode_compound_text

real = pytest.mark.real


def comm(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text().strip()


@pytest.fixture
def focus(xdisplay: XServer) -> Iterator[FocusX11Collector]:
    collector = FocusX11Collector(xdisplay.display)
    collector.open()
    yield collector
    collector.close()


@pytest.fixture
def idle(xdisplay: XServer) -> Iterator[IdleX11Collector]:
    collector = IdleX11Collector(xdisplay.display)
    collector.open()
    yield collector
    collector.close()


@pytest.fixture
def windows(xdisplay: XServer) -> Iterator[list[XWindow]]:
    """Windows opened by a test, closed at its end even if it fails."""
    opened: list[XWindow] = []
    yield opened
    for handle in opened:
        handle.close()


def open_window(
    xdisplay: XServer, windows: list[XWindow], title: str, wm_class: tuple[str, str], **kw: bool
) -> XWindow:
    handle = xdisplay.open_window(title, wm_class, **kw)
    windows.append(handle)
    return handle


# --- focus ---------------------------------------------------------------


@real
def test_focused_window_app_title_and_process(
    xdisplay: XServer, focus: FocusX11Collector, windows: list[XWindow]
) -> None:
    win = open_window(xdisplay, windows, "Quarterly report.ods", ("soffice", "LibreOffice"))
    xdisplay.focus(win)

    sample = focus.poll()

    assert sample == FocusSample(
        app="LibreOffice", title="Quarterly report.ods", process=comm(win.pid), pid=win.pid
    )


@real
def test_switching_focus_changes_the_sample(
    xdisplay: XServer, focus: FocusX11Collector, windows: list[XWindow]
) -> None:
    editor = open_window(xdisplay, windows, "main.py - Code", ("code", "Code"))
    browser = open_window(xdisplay, windows, "News - Mozilla Firefox", ("Navigator", "firefox"))

    seen = []
    for win in (editor, browser, editor):
        xdisplay.focus(win)
        sample = focus.poll()
        assert sample is not None
        seen.append((sample.app, sample.title, sample.pid))

    assert seen == [
        ("Code", "main.py - Code", editor.pid),
        ("firefox", "News - Mozilla Firefox", browser.pid),
        ("Code", "main.py - Code", editor.pid),
    ]


@real
def test_title_change_is_seen_on_the_next_poll(
    xdisplay: XServer, focus: FocusX11Collector, windows: list[XWindow]
) -> None:
    win = open_window(xdisplay, windows, "Inbox (3)", ("mail", "Thunderbird"))
    xdisplay.focus(win)
    assert focus.poll() == FocusSample("Thunderbird", "Inbox (3)", comm(win.pid), win.pid)

    xdisplay.set_title(win, "Inbox (4)")

    sample = focus.poll()
    assert sample is not None
    assert sample.title == "Inbox (4)"


@real
def test_non_ascii_titles_round_trip(
    xdisplay: XServer, focus: FocusX11Collector, windows: list[XWindow]
) -> None:
    title = "Résumé — 日本語"
    win = open_window(xdisplay, windows, title, ("gedit", "Gedit"))
    xdisplay.focus(win)
    first = focus.poll()

    xdisplay.set_title(win, "Ünïcödé ✓ Привет 🙂")
    second = focus.poll()

    assert first is not None and first.title == title
    assert second is not None and second.title == "Ünïcödé ✓ Привет 🙂"


@real
def test_utf8_bytes_in_a_string_typed_title(
    xdisplay: XServer, focus: FocusX11Collector, windows: list[XWindow]
) -> None:
    # xdotool (like some old toolkits) stores UTF-8 under the STRING type, which
    # ICCCM defines as Latin-1; read strictly it would come out as mojibake.
    win = open_window(xdisplay, windows, "before", ("xterm", "XTerm"))
    xdisplay.focus(win)

    xdisplay.xdotool("set_window", "--name", "Résumé — 日本語", str(win.window_id))

    sample = focus.poll()
    assert sample is not None
    assert sample.title == "Résumé — 日本語"


@real
@pytest.mark.parametrize(
    ("title", "expected_type"),
    [
        ("Résumé", "STRING"),  # Latin-1 bytes, not valid UTF-8
        ("Résumé — 日本語", "COMPOUND_TEXT"),
        ("Привет мир", "COMPOUND_TEXT"),
        ("한국어 中文", "COMPOUND_TEXT"),
    ],
)
def test_legacy_wm_name_without_net_wm_name(
    xdisplay: XServer,
    focus: FocusX11Collector,
    windows: list[XWindow],
    title: str,
    expected_type: str,
) -> None:
    # Old Xlib/Motif/Tk clients set only WM_NAME, encoded by Xlib itself (here via
    # xprop's 8t format: STRING when Latin-1 suffices, else COMPOUND_TEXT).
    if shutil.which("xprop") is None:
        pytest.skip("xprop not installed: apt-get install x11-utils")
    win = open_window(xdisplay, windows, "placeholder", ("xmessage", "Xmessage"))
    xdisplay.focus(win)
    xdisplay.delete_property(win.client_id, "_NET_WM_NAME")
    env = dict(xdisplay.env, LC_ALL="C.UTF-8")
    xprop = ["xprop", "-id", str(win.client_id)]
    subprocess.run([*xprop, "-f", "WM_NAME", "8t", "-set", "WM_NAME", title], env=env, check=True)
    shown = subprocess.run([*xprop, "WM_NAME"], env=env, check=True, capture_output=True)
    assert shown.stdout.startswith(f"WM_NAME({expected_type})".encode())

    sample = focus.poll()

    assert sample is not None
    assert sample.title == title


@real
def test_process_name_comes_from_net_wm_pid(
    xdisplay: XServer, focus: FocusX11Collector, windows: list[XWindow]
) -> None:
    # The pid is taken from the window, not guessed: point it at another live
    # process and the sample follows.
    win = open_window(xdisplay, windows, "t", ("term", "Term"))
    xdisplay.focus(win)
    other = subprocess.Popen(["sleep", "30"])
    try:
        xdisplay.set_property(win.client_id, "_NET_WM_PID", "CARDINAL", [other.pid])
        sample = focus.poll()
    finally:
        other.kill()
        other.wait()

    assert sample is not None
    assert (sample.process, sample.pid) == ("sleep", other.pid)
    assert comm(win.pid) != "sleep"


@real
def test_long_process_name_is_not_cut_at_15_bytes(
    xdisplay: XServer, focus: FocusX11Collector, windows: list[XWindow], tmp_path: Path
) -> None:
    # /proc/<pid>/comm holds only 15 bytes ("gnome-terminal-"); the full name
    # comes from argv[0] when it extends comm.
    sleeper = tmp_path / "long-named-sleeper-process"
    shutil.copy("/bin/sleep", sleeper)
    win = open_window(xdisplay, windows, "t", ("term", "Term"))
    xdisplay.focus(win)
    other = subprocess.Popen([str(sleeper), "30"])
    try:
        xdisplay.set_property(win.client_id, "_NET_WM_PID", "CARDINAL", [other.pid])
        assert comm(other.pid) == "long-named-slee"
        sample = focus.poll()
    finally:
        other.kill()
        other.wait()

    assert sample is not None
    assert sample.process == "long-named-sleeper-process"


@real
def test_dead_pid_gives_no_process_name(
    xdisplay: XServer, focus: FocusX11Collector, windows: list[XWindow]
) -> None:
    win = open_window(xdisplay, windows, "t", ("term", "Term"))
    xdisplay.focus(win)
    gone = subprocess.Popen(["true"])
    gone.wait()
    xdisplay.set_property(win.client_id, "_NET_WM_PID", "CARDINAL", [gone.pid])

    sample = focus.poll()

    assert sample == FocusSample("Term", "t", None, gone.pid)


@real
def test_remote_client_pid_is_not_looked_up_locally(
    xdisplay: XServer, focus: FocusX11Collector, windows: list[XWindow]
) -> None:
    # An ssh -X client's _NET_WM_PID is a pid on its own machine.
    win = open_window(xdisplay, windows, "remote", ("xclock", "XClock"))
    xdisplay.focus(win)
    xdisplay.set_property(win.client_id, "WM_CLIENT_MACHINE", "STRING", b"elsewhere.example")

    sample = focus.poll()

    assert sample == FocusSample("XClock", "remote", None, None)


@real
def test_app_falls_back_to_instance_then_process(
    xdisplay: XServer, focus: FocusX11Collector, windows: list[XWindow]
) -> None:
    win = open_window(xdisplay, windows, "t", ("onlyinstance", ""))
    xdisplay.focus(win)
    by_instance = focus.poll()

    xdisplay.delete_property(win.client_id, "WM_CLASS")
    by_process = focus.poll()

    assert by_instance is not None and by_instance.app == "onlyinstance"
    assert by_process is not None and by_process.app == comm(win.pid)


@real
def test_class_found_on_a_child_of_the_active_window(
    xdisplay: XServer, focus: FocusX11Collector, windows: list[XWindow]
) -> None:
    win = open_window(xdisplay, windows, "Inner title", ("inner", "Inner"), wrapper=True)
    assert win.client_id != win.window_id
    xdisplay.focus(win)

    sample = focus.poll()

    assert sample == FocusSample("Inner", "Inner title", comm(win.pid), win.pid)


@real
def test_focused_window_closing_never_raises(
    xdisplay: XServer, focus: FocusX11Collector, windows: list[XWindow]
) -> None:
    stays = open_window(xdisplay, windows, "stays", ("stay", "Stay"))
    closing = open_window(xdisplay, windows, "closing", ("close", "Close"))
    xdisplay.focus(closing)
    assert focus.poll() == FocusSample("Close", "closing", comm(closing.pid), closing.pid)

    # Poll throughout the close, including the moment the window is destroyed but
    # the WM has not updated _NET_ACTIVE_WINDOW yet.
    os.kill(closing.pid, 9)
    samples = []
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        samples.append(focus.poll())

    assert samples[-1] is None or samples[-1].title != "closing"
    # Every sample describes one window whole: never the title of one with the
    # class of another, read half before and half after the destruction. (The
    # display is shared by the session, so the WM may also focus a window of an
    # earlier test that is still closing: such samples are whole too.)
    classes = {"closing": "Close", "stays": "Stay"}
    for s in samples:
        if s is not None and s.title in classes:
            assert s.app == classes[s.title], samples
    assert stays.window_id  # kept open so the WM has something else to focus


@real
def test_active_window_that_no_longer_exists_reads_as_no_focus(
    xdisplay: XServer, focus: FocusX11Collector
) -> None:
    # Deterministic version of the race above: _NET_ACTIVE_WINDOW names a
    # destroyed window, so every property read hits BadWindow.
    gone = xdisplay.dead_window_id()
    xdisplay.settle()
    previous = xdisplay.active_window()
    xdisplay.set_property(xdisplay.root_id(), "_NET_ACTIVE_WINDOW", "WINDOW", [gone])
    try:
        assert focus.poll() is None
    finally:
        xdisplay.set_property(xdisplay.root_id(), "_NET_ACTIVE_WINDOW", "WINDOW", [previous or 0])


@real
def test_nothing_focused_is_none(xdisplay: XServer, focus: FocusX11Collector) -> None:
    xdisplay.settle()
    previous = xdisplay.active_window()
    xdisplay.set_property(xdisplay.root_id(), "_NET_ACTIVE_WINDOW", "WINDOW", [0])
    try:
        assert focus.poll() is None
    finally:
        xdisplay.set_property(xdisplay.root_id(), "_NET_ACTIVE_WINDOW", "WINDOW", [previous or 0])


@real
def test_window_without_any_description_is_unknown_not_none(
    xdisplay: XServer, focus: FocusX11Collector, windows: list[XWindow]
) -> None:
    # The opposite of a vanished window: it exists, it just says nothing.
    win = open_window(xdisplay, windows, "t", ("bare", "Bare"))
    xdisplay.focus(win)
    for prop in ("WM_CLASS", "_NET_WM_NAME", "WM_NAME", "_NET_WM_PID"):
        xdisplay.delete_property(win.client_id, prop)

    assert focus.poll() == FocusSample("unknown", "", None, None)


def test_no_display_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    for collector in (FocusX11Collector(), IdleX11Collector()):
        with pytest.raises(CollectorUnavailable, match="DISPLAY"):
            collector.open()


def test_unreachable_display_is_unavailable() -> None:
    with pytest.raises(CollectorUnavailable, match="cannot open X display :4242"):
        FocusX11Collector(":4242").open()


def _fake_wm_focus(display: str, title: str) -> Any:
    """Without a WM: create a described window and publish it as active ourselves.

    Returns the connection, which must stay open: the window dies with it.
    """
    d = Xlib.display.Display(display)
    root = d.screen().root
    win = root.create_window(0, 0, 10, 10, 0, X.CopyFromParent)
    win.set_wm_class("probe", "Probe")
    utf8 = d.intern_atom("UTF8_STRING")
    win.change_property(d.intern_atom("_NET_WM_NAME"), utf8, 8, title.encode())
    root.change_property(d.intern_atom("_NET_ACTIVE_WINDOW"), Xatom.WINDOW, 32, [win.id])
    d.sync()
    return d


@real
def test_reconnects_after_the_x_server_restarts(tmp_path: Path) -> None:
    require_binaries("Xvfb")
    server = Xvfb(tmp_path, display=free_display())
    focus = FocusX11Collector(server.display)
    idle = IdleX11Collector(server.display)
    clients = []
    try:
        focus.open()
        idle.open()
        clients.append(_fake_wm_focus(server.display, "first server"))
        assert focus.poll() == FocusSample("Probe", "first server")

        server.stop()
        with pytest.raises(CollectorUnavailable, match="cannot open X display"):
            focus.poll()  # gone and not back: the one reopen fails, loudly

        server = Xvfb(tmp_path, display=server.display)
        clients.append(_fake_wm_focus(server.display, "second server"))
        assert focus.poll() == FocusSample("Probe", "second server")
        assert idle.poll() >= 0.0
    finally:
        focus.close()
        idle.close()
        for client in clients:
            with contextlib.suppress(Xlib.error.ConnectionClosedError, OSError):
                client.close()
        server.stop()


# --- idle ----------------------------------------------------------------


@real
def test_idle_follows_real_input(xdisplay: XServer, idle: IdleX11Collector) -> None:
    xdisplay.input()
    just_after = idle.poll()
    time.sleep(2.0)
    after_sleep = idle.poll()
    xdisplay.input()
    after_input = idle.poll()

    assert just_after < 1.0
    assert 1.5 <= after_sleep < 30.0
    assert after_input < 1.0


@real
def test_idle_needs_the_screensaver_extension(tmp_path: Path) -> None:
    require_binaries("Xvfb")
    server = Xvfb(tmp_path, extra_args=("-extension", "MIT-SCREEN-SAVER"))
    try:
        with pytest.raises(CollectorUnavailable, match="MIT-SCREEN-SAVER"):
            IdleX11Collector(server.display).open()
    finally:
        server.stop()


# --- COMPOUND_TEXT decoding (bytes as produced by Xlib) --------------------


@pytest.mark.parametrize(
    ("data", "text"),
    [
        (b"R\xe9sum\xe9 \x1b%G\xe2\x80\x94\x1b%@ \x1b$(BF|K\\8l", "Résumé — 日本語"),
        (b"\x1b-L\xbf\xe0\xd8\xd2\xd5\xe2", "Привет"),
        (b"\x1b$(CGQ19>n\x1b(B \x1b$(BCfJ8", "한국어 中文"),
        (b"\x1b$)A\xd6\xd0\xce\xc4", "中文"),  # GB 2312 in GR
        (b"\x1b%/1\x80\x8akoi8-r\x02\xf0\xd2\xc9", "При"),  # extended segment
        (b"plain ascii", "plain ascii"),
    ],
)
def test_decode_compound_text(data: bytes, text: str) -> None:
    assert decode_compound_text(data) == text


@pytest.mark.parametrize(
    "data",
    [b"\x1b", b"\x1b$", b"\x1b%G\xff\xfe", b"\x1b$(B\x21", b"\x1b%/1\x80", b"\x9b1", b"\x1b-Z\xe9"],
)
def test_decode_compound_text_never_raises(data: bytes) -> None:
    assert isinstance(decode_compound_text(data), str)
