"""How samples become events: merging, switching, afk dating, gaps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from worklens.agent.tracker import ActivityTracker
from worklens.protocol.wire import FocusData

T = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
CODE = FocusData(app="code", title="main.py")
WEB = FocusData(app="chromium", title="docs")


def s(n: float) -> datetime:
    return T + timedelta(seconds=n)


def test_steady_focus_is_one_growing_event() -> None:
    tr = ActivityTracker(idle_threshold_s=300, pulsetime_s=2)
    ids = set()
    last = None
    for i in range(0, 3600):
        for e in tr.focus(s(i), CODE):
            ids.add(e.id)
            last = e
    assert len(ids) == 1
    assert last is not None and last.start == T and last.duration == 3599


def test_switching_closes_the_old_event_at_the_switch() -> None:
    tr = ActivityTracker(300, 2)
    tr.focus(s(0), CODE)
    tr.focus(s(1), CODE)
    out = tr.focus(s(2), WEB)
    assert [(e.data.app, e.start, e.duration) for e in out] == [
        ("code", T, 2.0),
        ("chromium", s(2), 0.0),
    ]


def test_no_focused_window_ends_the_event() -> None:
    tr = ActivityTracker(300, 2)
    tr.focus(s(0), CODE)
    out = tr.focus(s(1), None)
    assert [(e.data.app, e.duration) for e in out] == [("code", 1.0)]
    assert tr.focus(s(2), None) == []
    (new,) = tr.focus(s(3), CODE)
    assert new.start == s(3) and new.duration == 0


def test_a_gap_longer_than_pulsetime_is_not_counted() -> None:
    tr = ActivityTracker(300, 2)
    (first,) = tr.focus(s(0), CODE)
    tr.focus(s(1), CODE)
    # The machine slept for an hour: the same window, but a new event.
    (after,) = tr.focus(s(3601), CODE)
    assert after.id != first.id and after.start == s(3601)


def test_going_afk_is_dated_back_to_the_last_input() -> None:
    tr = ActivityTracker(idle_threshold_s=300, pulsetime_s=2)
    events = {}
    for i in range(0, 400):  # input until second 10, then none
        for e in tr.idle(s(i), max(0, i - 10)):
            events[e.id] = e
    active = [e for e in events.values() if e.data.status == "active"]
    afk = [e for e in events.values() if e.data.status == "afk"]
    assert len(active) == 1 and active[0].start == s(0)
    # Idle crossed 300 s at second 310; the afk event still starts at the last input.
    assert len(afk) == 1 and afk[0].start == s(10)
    assert afk[0].start + timedelta(seconds=afk[0].duration) == s(399)


def test_coming_back_starts_active_at_the_input() -> None:
    tr = ActivityTracker(300, 2)
    events = {}
    for i in range(0, 600):
        for e in tr.idle(s(i), i):  # no input since second 0
            events[e.id] = e
    for e in tr.idle(s(600), 0.5):
        events[e.id] = e
    active = sorted(
        (e for e in events.values() if e.data.status == "active"), key=lambda e: e.start
    )
    assert active[-1].start == s(599.5)
    (afk,) = [e for e in events.values() if e.data.status == "afk"]
    assert afk.start == s(0) + timedelta(milliseconds=1)


def test_close_extends_open_events_to_now() -> None:
    tr = ActivityTracker(300, 2)
    tr.focus(s(0), CODE)
    tr.idle(s(0), 0)
    out = tr.close(s(1.5))
    assert sorted(e.duration for e in out) == [1.5, 1.5]
    assert tr.close(s(3)) == []
