"""Shared plumbing for the X11 collectors: one display connection, atoms, property reads.

The collectors poll every second, so everything here is built to be cheap and to
never raise for the ordinary races of a desktop: a window can be destroyed
between the moment we learn its id and the moment we read its properties, and
that must read as "no value", not as an error. Only a broken connection (the X
server went away) is an error, and :class:`XConnection.run` reopens once for it.
"""

from __future__ import annotations

import codecs
import contextlib
import os
from collections.abc import Callable
from typing import Any, TypeVar

import Xlib.display
import Xlib.error
from Xlib import X, Xatom

from worklens.agent.collectors.base import CollectorUnavailable

R = TypeVar("R")

#: Errors meaning the connection itself is gone (server exited or restarted).
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    Xlib.error.ConnectionClosedError,
    OSError,
)

#: Errors from opening a display: bad name, refused, authorization failed.
_OPEN_ERRORS: tuple[type[BaseException], ...] = (
    Xlib.error.DisplayError,
    Xlib.error.XauthError,
    *CONNECTION_ERRORS,
)

#: Atoms the collectors need; interned once per connection, not per poll.
ATOM_NAMES: tuple[str, ...] = (
    "_NET_ACTIVE_WINDOW",
    "_NET_WM_NAME",
    "_NET_WM_PID",
    "UTF8_STRING",
    "COMPOUND_TEXT",
)

#: Longest property value read in one request, in 32-bit units (256 KiB). Titles
#: and class names are far shorter, so one round trip nearly always suffices.
_MAX_PROPERTY_LONGS = 1 << 16


class _Display(Xlib.display.Display):  # type: ignore[misc]
    """A display that sets up only the X extensions named in ``extensions``.

    Xlib.display.Display imports and initialises a module for every extension
    the server has (a dozen on a usual desktop, about 1 MiB of memory); the
    collectors need at most one of them. ``list_extensions`` therefore reports
    only the wanted ones the server has.
    """

    def __init__(self, name: str, extensions: frozenset[str]) -> None:
        self._wanted_extensions = extensions
        super().__init__(name)

    def list_extensions(self) -> list[str]:
        names: list[str] = super().list_extensions()
        return [n for n in names if n in self._wanted_extensions]


def open_display(name: str | None = None, extensions: frozenset[str] = frozenset()) -> Any:
    """Open an Xlib display, by default the one named in $DISPLAY, with those of
    the ``extensions`` the server has."""
    if name is None:
        name = os.environ.get("DISPLAY") or None
    if name is None:
        raise CollectorUnavailable("no X display: DISPLAY is not set")
    try:
        return _Display(name, extensions)
    except _OPEN_ERRORS as exc:
        raise CollectorUnavailable(f"cannot open X display {name}: {exc}") from exc


class XConnection:
    """An open display plus the interned atoms and property readers."""

    def __init__(self, display: Any) -> None:
        self.display = display
        self.root: Any = display.screen().root
        self.name: str = display.get_display_name()
        self.atoms: dict[str, int] = {n: display.intern_atom(n) for n in ATOM_NAMES}

    @classmethod
    def open(cls, name: str | None = None, extensions: frozenset[str] = frozenset()) -> XConnection:
        display = open_display(name, extensions)
        try:
            return cls(display)
        except CONNECTION_ERRORS as exc:
            # The server accepted and then dropped us (e.g. it is shutting down).
            raise CollectorUnavailable(
                f"cannot open X display {display.get_display_name()}: {exc}"
            ) from exc

    def close(self) -> None:
        # Closing a connection whose server is gone raises; there is nothing left
        # to release then, so that is not worth reporting.
        with contextlib.suppress(*CONNECTION_ERRORS):
            self.display.close()

    def window(self, window_id: int) -> Any:
        return self.display.create_resource_object("window", window_id)

    def _raw(self, window_id: int, prop: int) -> tuple[int, int, bytes | list[int]] | None:
        """(type atom, format, value) of a property, or None if absent or the window is gone."""
        win = self.window(window_id)
        try:
            reply = win.get_property(prop, X.AnyPropertyType, 0, _MAX_PROPERTY_LONGS)
            if reply is None:
                return None
            value = reply.value
            if reply.bytes_after:
                rest = win.get_property(
                    prop, X.AnyPropertyType, _MAX_PROPERTY_LONGS, reply.bytes_after // 4 + 1
                )
                if rest is not None:
                    value = value + rest.value
        except Xlib.error.XError:
            # BadWindow and friends: the window vanished under us. Normal on a desktop.
            return None
        return int(reply.property_type), int(reply.format), value

    def get_text(self, window_id: int, prop: int) -> str | None:
        """A text property decoded from whatever type the client chose."""
        raw = self._raw(window_id, prop)
        if raw is None or raw[1] != 8 or not isinstance(raw[2], bytes):
            return None
        return decode_text(raw[2], raw[0], self.atoms)

    def get_strings(self, window_id: int, prop: int) -> list[str] | None:
        """A NUL-separated list of strings (WM_CLASS, WM_COMMAND)."""
        text = self.get_text(window_id, prop)
        if text is None:
            return None
        # The list is NUL-terminated, so the last split element is empty.
        parts = text.split("\0")
        if parts and parts[-1] == "":
            parts.pop()
        return parts

    def get_card32(self, window_id: int, prop: int) -> int | None:
        """The first 32-bit item of a CARDINAL/WINDOW property."""
        raw = self._raw(window_id, prop)
        if raw is None or raw[1] != 32 or isinstance(raw[2], bytes) or len(raw[2]) == 0:
            return None
        return int(raw[2][0])

    def children(self, window_id: int) -> list[int]:
        try:
            tree = self.window(window_id).query_tree()
        except Xlib.error.XError:
            return []
        return [int(child.id) for child in tree.children]

    def exists(self, window_id: int) -> bool:
        try:
            self.window(window_id).get_geometry()
        except Xlib.error.XError:
            return False
        return True


class ReconnectingDisplay:
    """Keeps one connection open across polls and reopens it once if it broke.

    The X server can restart under a running agent (logout/login, a crashed
    session). Opening a connection costs a dozen round trips, so it is done once
    and reused; a poll that finds it broken reopens and retries exactly once, and
    if that fails too the error propagates so the agent logs it for this poll.
    """

    def __init__(
        self,
        name: str | None = None,
        on_connect: Callable[[XConnection], None] | None = None,
        extensions: frozenset[str] = frozenset(),
    ) -> None:
        self._name = name
        #: The X extensions the collector uses (Xlib names, e.g. "MIT-SCREEN-SAVER").
        self._extensions = extensions
        self._conn: XConnection | None = None
        #: Checks a collector needs on every fresh connection (e.g. an extension);
        #: raises CollectorUnavailable.
        self._on_connect = on_connect

    def connect(self) -> XConnection:
        if self._conn is None:
            conn = XConnection.open(self._name, self._extensions)
            if self._on_connect is not None:
                try:
                    self._on_connect(conn)
                except Exception:
                    conn.close()
                    raise
            self._conn = conn
        return self._conn

    def run(self, fn: Callable[[XConnection], R]) -> R:
        conn = self.connect()
        try:
            return fn(conn)
        except CONNECTION_ERRORS:
            self.close()
        return fn(self.connect())

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def decode_text(data: bytes, type_atom: int, atoms: dict[str, int]) -> str:
    """Decode an 8-bit text property of any of the types clients really use."""
    if type_atom == atoms["UTF8_STRING"]:
        return data.decode("utf-8", errors="replace")
    if type_atom == atoms["COMPOUND_TEXT"]:
        return decode_compound_text(data)
    if type_atom == Xatom.STRING:
        # ICCCM says STRING is Latin-1, but several tools (xdotool set_window, some
        # older toolkits) store UTF-8 bytes under that type. Text that is valid
        # UTF-8 and not plain ASCII is almost never intended Latin-1, so try it first.
        return _utf8_or_latin1(data)
    # Unknown type (C_STRING, a private atom, ...): best effort, never raise.
    return _utf8_or_latin1(data)


def _utf8_or_latin1(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


# --- COMPOUND_TEXT ---------------------------------------------------------
#
# Xlib (XmbTextListToTextProperty, hence xprop, Motif, Tk, old GTK/Emacs) writes
# titles that are not pure Latin-1 as COMPOUND_TEXT: ISO 2022 text that switches
# character sets with escape sequences. Python has no codec for it, so this is a
# small decoder for the sets Xlib actually emits. Anything unknown degrades to
# replacement characters instead of raising.

_ESC = 0x1B
_CSI = 0x9B

#: ESC - F: a 96-character set into GR (the right half of an ISO 8859 part).
_GR96_CODECS = {
    ord("A"): "iso8859-1",
    ord("B"): "iso8859-2",
    ord("C"): "iso8859-3",
    ord("D"): "iso8859-4",
    ord("F"): "iso8859-7",
    ord("G"): "iso8859-6",
    ord("H"): "iso8859-8",
    ord("L"): "iso8859-5",
    ord("M"): "iso8859-9",
    ord("T"): "tis-620",
    ord("V"): "iso8859-10",
    ord("Y"): "iso8859-13",
    ord("_"): "iso8859-14",
    ord("b"): "iso8859-15",
    ord("f"): "iso8859-16",
}

#: ESC $ ( F / ESC $ ) F: a 94x94 double-byte set. The EUC codecs decode exactly
#: these sets when the bytes have their high bit set.
_MB94_CODECS = {
    ord("A"): "gb2312",  # GB 2312
    ord("B"): "euc_jp",  # JIS X 0208
    ord("C"): "euc_kr",  # KS C 5601
}


class _CtState:
    def __init__(self) -> None:
        # Initial state defined by the spec: ASCII in GL, Latin-1 right half in GR.
        self.gl_codec = "ascii"
        self.gl_double = False
        self.gr_codec = "iso8859-1"
        self.gr_double = False


def decode_compound_text(data: bytes) -> str:
    out: list[str] = []
    state = _CtState()
    i, n = 0, len(data)
    while i < n:
        b = data[i]
        if b == _ESC:
            i = _ct_escape(data, i, state, out)
        elif b == _CSI:
            # Direction control (CSI 1 ] / CSI 2 ] / CSI ]): no effect on the text.
            end = data.find(b"]", i)
            i = n if end < 0 else end + 1
        else:
            j = i
            while j < n and data[j] not in (_ESC, _CSI) and (data[j] >= 0x80) == (b >= 0x80):
                j += 1
            out.append(_ct_run(data[i:j], state, gr=b >= 0x80))
            i = j
    return "".join(out)


def _ct_run(chunk: bytes, state: _CtState, *, gr: bool) -> str:
    codec = state.gr_codec if gr else state.gl_codec
    double = state.gr_double if gr else state.gl_double
    if double and not gr:
        # A double-byte set designated into GL: shift into GR for the EUC codec.
        chunk = bytes(c | 0x80 if c > 0x20 else c for c in chunk)
    return chunk.decode(codec, errors="replace")


def _ct_escape(data: bytes, i: int, state: _CtState, out: list[str]) -> int:
    """Apply the escape sequence at data[i]; return the index after it."""
    n = len(data)
    # Intermediate bytes are 0x20-0x2F, the final byte 0x30-0x7E.
    j = i + 1
    while j < n and 0x20 <= data[j] <= 0x2F:
        j += 1
    if j >= n:
        return n
    inter, final = data[i + 1 : j], data[j]
    after = j + 1
    if inter == b"%" and final == ord("G"):
        # UTF-8 until ESC % @ (what Xlib emits for characters no legacy set covers).
        end = data.find(b"\x1b%@", after)
        end = n if end < 0 else end
        out.append(data[after:end].decode("utf-8", errors="replace"))
        return min(n, end + 3)
    if inter == b"%/" and after + 2 <= n:
        return _ct_extended_segment(data, after, out)
    if inter == b"(":
        state.gl_codec, state.gl_double = "ascii", False  # ASCII / JIS-Roman: ASCII
    elif inter == b"-":
        state.gr_codec = _GR96_CODECS.get(final, "iso8859-1")
        state.gr_double = False
    elif inter in (b"$(", b"$)"):
        codec = _MB94_CODECS.get(final, "euc_jp")
        if inter == b"$(":
            state.gl_codec, state.gl_double = codec, True
        else:
            state.gr_codec, state.gr_double = codec, True
    return after


def _ct_extended_segment(data: bytes, start: int, out: list[str]) -> int:
    """ESC % / F M L <encoding name> STX <text>: a length-prefixed foreign segment."""
    length = (data[start] - 0x80) * 128 + (data[start + 1] - 0x80)
    body = data[start + 2 : start + 2 + max(length, 0)]
    name, sep, text = body.partition(b"\x02")
    codec = name.decode("ascii", errors="replace").lower() if sep else "latin-1"
    if not sep:
        text = body
    try:
        codecs.lookup(codec)
    except LookupError:
        codec = "latin-1"
    out.append(text.decode(codec, errors="replace"))
    return start + 2 + max(length, 0)
