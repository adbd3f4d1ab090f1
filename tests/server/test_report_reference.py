"""Time reports against a second-by-second reference, through the HTTP API.

Random histories of focus and afk events (overlapping, re-sent, re-sent
longer as a heartbeat merge would, split into batches sent in random order)
go in through ``/api/v1/ingest``; reports over random ranges (partial hours,
whole hours, whole days, ranges inside one hour) come out of
``/api/v1/reports/time`` and must equal, to the second, what a plain Python
reference computes one second at a time from the final event set:

* the focus value at second ``t`` is the covering focus event with the latest
  start (generated starts are distinct, so there are no ties);
* ``t`` is active iff the covering afk event with the latest start says
  ``"active"``; where no afk event covers ``t`` it is not active;
* each event's final duration is the longest one sent for its id;
* the URL at ``t`` (reports by URL and domain) is that of the covering browser
  tab event (ActivityWatch's web watcher, kind "aw") with the latest start, if
  the focused app is a browser and that tab is not in a private window.

Runs on SQLite and PostgreSQL (the ``server`` fixture). The fixture is shared
by all examples of a test, so each example enrolls its own device and filters
its reports by it.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from itertools import pairwise
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.server.conftest import T0, Server, afk, batch, focus
from worklens.categories import Classifier, format_path, load_default_ruleset

DEFAULT_RULES = Classifier(load_default_ruleset())

HOUR = 3600
DAY = 86400
# T0 is 09:00 UTC: offsets (seconds from T0) of UTC hour and day boundaries.
DAY0 = -9 * HOUR
SPREAD = 36 * HOUR  # event starts lie in T0 ± 1.5 days, so all events end before HI
MAX_DURATION = 20_000
LO, HI = -2 * DAY, 2 * DAY  # reports ask within T0 ± 2 days; the reference covers it
APPS = ("code", "chromium", "term", "mail", "Firefox")
BROWSERS = ("chromium", "Firefox")
TITLES = ("", "main.py", "docs", "inbox", "YouTube")
DOMAINS = {  # what reports by domain show: no "www.", and the URL itself if no host
    "https://www.youtube.com/watch?v=1": "youtube.com",
    "https://github.com/org/repo": "github.com",
    "https://youtube.com/feed": "youtube.com",
    "about:blank": "about:blank",
}
URLS = (
    "https://www.youtube.com/watch?v=1",
    "https://github.com/org/repo",
    "https://youtube.com/feed",
    "about:blank",
)

SETTINGS = settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# ---------------------------------------------------------------- model


@dataclass
class Event:
    kind: str  # "focus" | "afk" | "web"
    start: int  # seconds from T0
    sends: list[int]  # durations sent for this id, in generation order; the max is final
    data: dict[str, Any]
    id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def wire(self, duration: int) -> dict[str, Any]:
        at = T0 + timedelta(seconds=self.start)
        if self.kind == "focus":
            body = focus(at, float(duration), self.data["app"], self.data["title"])
        elif self.kind == "web":
            return {
                "id": self.id,
                "kind": "aw",
                "start": at.isoformat(),
                "duration": float(duration),
                "bucket": "aw-watcher-web-chrome",
                "bucket_type": "web.tab.current",
                "client": "aw-client-web",
                "data": self.data,
            }
        else:
            body = afk(at, float(duration), self.data["status"])
        return {**body, "id": self.id}


Send = tuple[int, int]  # (index of the event, duration sent)


def durations(final: int) -> st.SearchStrategy[list[int]]:
    """1-3 sends of one event: shorter copies (an earlier state of a heartbeat
    merge) and exact re-sends, in any order, the longest being ``final``."""
    return st.lists(st.integers(0, final), max_size=2).flatmap(
        lambda extra: st.permutations([final, *extra])
    )


@st.composite
def events(
    draw: st.DrawFn, kind: str, anchors: list[int], min_size: int, max_size: int
) -> list[Event]:
    # Starts anywhere in the window or clustered around a few anchors, so that
    # focus and afk events overlap often. Distinct starts within a stream keep
    # "latest start wins" unambiguous.
    near = st.builds(
        lambda a, d: max(-SPREAD, min(SPREAD, a + d)),
        st.sampled_from(anchors),
        st.integers(-2 * HOUR, 2 * HOUR),
    )
    starts = draw(
        st.lists(
            st.one_of(st.integers(-SPREAD, SPREAD), near, near),
            min_size=min_size,
            max_size=max_size,
            unique=True,
        )
    )
    out = []
    for start in starts:
        # Any length, but mostly long ones, so that events overlap.
        final = draw(
            st.one_of(st.integers(0, MAX_DURATION), st.integers(MAX_DURATION // 4, MAX_DURATION))
        )
        data: dict[str, Any]
        if kind == "focus":
            data = {"app": draw(st.sampled_from(APPS)), "title": draw(st.sampled_from(TITLES))}
        elif kind == "web":
            data = {"url": draw(st.sampled_from(URLS)), "title": "tab", "audible": False}
            if draw(st.integers(0, 4)) == 0:
                data["incognito"] = True
        else:
            data = {"status": draw(st.sampled_from(["active", "active", "afk"]))}
        out.append(Event(kind, start, draw(durations(final)), data))
    return out


@dataclass
class History:
    events: list[Event]
    batches: list[list[Send]]  # in the order they are posted

    def sends(self) -> list[Send]:
        return [s for b in self.batches for s in b]


def histories(anchors: list[int]) -> st.SearchStrategy[History]:
    @st.composite
    def build(draw: st.DrawFn) -> History:
        evs = (
            draw(events("focus", anchors, 2, 10))
            + draw(events("afk", anchors, 2, 7))
            + draw(events("web", anchors, 0, 6))
        )
        sends = [(i, d) for i, ev in enumerate(evs) for d in ev.sends]
        sends = draw(st.permutations(sends))
        cuts = sorted(draw(st.lists(st.integers(0, len(sends)), max_size=2)))
        bounds = [0, *cuts, len(sends)]
        return History(evs, [sends[a:b] for a, b in pairwise(bounds)])

    return build()


def ranges(anchors: list[int]) -> st.SearchStrategy[tuple[int, int]]:
    """A report range, as offsets from T0 in whole seconds, often near the events."""
    second = st.one_of(
        st.integers(LO, HI),
        st.builds(lambda a, d: a + d, st.sampled_from(anchors), st.integers(-6 * HOUR, 6 * HOUR)),
    )
    hour = second.map(lambda t: t // HOUR * HOUR)  # T0 (offset 0) is on the hour
    day = second.map(lambda t: DAY0 + (t - DAY0) // DAY * DAY)
    ragged = st.integers(-HOUR, HOUR)
    return st.one_of(
        # Anything: partial hours, and whole hours and days in between.
        st.tuples(second, second).filter(lambda r: r[0] != r[1]).map(lambda r: (min(r), max(r))),
        # Whole hours only.
        st.builds(lambda h, n: (h, h + n * HOUR), hour, st.integers(1, 30)),
        # Whole days only.
        st.builds(lambda d, n: (d, d + n * DAY), day, st.integers(1, 2)),
        # Inside one hour.
        st.builds(
            lambda h, a, n: (h + a, min(h + a + n, h + HOUR)),
            hour,
            st.integers(0, HOUR - 1),
            st.integers(1, HOUR),
        ),
        # About one or two days with ragged edges.
        st.builds(
            lambda d, a, n, b: (d + a, d + n * DAY + b), day, ragged, st.integers(1, 2), ragged
        ),
    )


@st.composite
def scenarios(
    draw: st.DrawFn, min_ranges: int, max_ranges: int
) -> tuple[History, list[tuple[int, int]]]:
    # Where the events cluster: anywhere, or near a UTC midnight, where hour
    # rollups, day rollups and raw edges meet.
    near_midnight = st.builds(
        lambda d, off: d + off,
        st.sampled_from([DAY0 - DAY, DAY0, DAY0 + DAY]),
        st.integers(-HOUR, HOUR),
    )
    anchor = st.one_of(st.integers(-SPREAD, SPREAD), near_midnight, near_midnight)
    anchors = draw(st.lists(anchor, min_size=1, max_size=3))
    rs = draw(st.lists(ranges(anchors), min_size=min_ranges, max_size=max_ranges))
    return draw(histories(anchors)), rs


# ---------------------------------------------------------------- reference


class Reference:
    """Which focus event is active at each second of [LO, HI), by painting the
    events in order of start: a later start paints over an earlier one, so each
    second ends up with the covering event that started last."""

    def __init__(self, evs: list[Event], sends: list[Send]) -> None:
        final: dict[int, int] = {}
        for i, d in sends:
            final[i] = max(final.get(i, 0), d)
        self.events = evs

        def paint(kind: str) -> list[int | None]:
            cells: list[int | None] = [None] * (HI - LO)
            mine = sorted((evs[i].start, i) for i in final if evs[i].kind == kind)
            for start, i in mine:
                for t in range(max(start, LO), min(start + final[i], HI)):
                    cells[t - LO] = i
            return cells

        focus_at, afk_at, web_at = paint("focus"), paint("afk"), paint("web")
        self.active = [
            f if a is not None and evs[a].data["status"] == "active" else None
            for f, a in zip(focus_at, afk_at, strict=True)
        ]
        self.url: list[str | None] = [
            evs[w].data["url"]
            if f is not None
            and w is not None
            and evs[f].data["app"] in BROWSERS
            and not evs[w].data.get("incognito")
            else None
            for f, w in zip(self.active, web_at, strict=True)
        ]

    def report(self, group_by: str, start: int, end: int) -> dict[str, float]:
        # Nothing happens outside [LO, HI): clamp the range to it.
        a, b = min(max(start, LO), HI), min(max(end, LO), HI)
        out: Counter[str] = Counter()
        if group_by in ("url", "domain"):
            for url, n in Counter(self.url[a - LO : b - LO]).items():
                if url is not None:
                    out[url if group_by == "url" else DOMAINS[url]] += n
        elif group_by in ("category", "productivity"):
            # The default rules, on the window and the tab in front.
            seconds = zip(self.active[a - LO : b - LO], self.url[a - LO : b - LO], strict=True)
            for (i, url), n in Counter(seconds).items():
                if i is not None:
                    data = {**self.events[i].data, **({"url": url} if url else {})}
                    path = DEFAULT_RULES.classify(data)
                    key = format_path(path) if group_by == "category" else None
                    out[key or DEFAULT_RULES.productivity(path)] += n
        else:
            for i, n in Counter(self.active[a - LO : b - LO]).items():
                if i is not None:
                    out[self.events[i].data[group_by]] += n
        return {k: float(n) for k, n in out.items()}


# ---------------------------------------------------------------- API helpers


def post(server: Server, token: str, body: dict[str, Any]) -> None:
    r = server.client.post(
        "/api/v1/ingest", json=body, headers={"Authorization": f"Bearer {token}"}
    )
    assert r.status_code == 200, r.text


def send(server: Server, token: str, h: History, batches: list[list[Send]]) -> None:
    for sends in batches:
        post(server, token, batch(*(h.events[i].wire(d) for i, d in sends)))


def report(server: Server, device: int, group_by: str, start: int, end: int) -> dict[str, float]:
    q = {
        "group_by": group_by,
        "start": (T0 + timedelta(seconds=start)).isoformat(),
        "end": (T0 + timedelta(seconds=end)).isoformat(),
        "device": str(device),
    }
    r = server.client.get("/api/v1/reports/time", params=q, headers=server.admin())
    assert r.status_code == 200, r.text
    body = r.json()
    rows = {row["key"]: row["seconds"] for row in body["rows"]}
    assert len(rows) == len(body["rows"]), "a key appears twice"
    assert body["total_seconds"] == sum(rows.values())
    return rows


def check(
    server: Server, device: int, hostname: str, ref: Reference, rs: list[tuple[int, int]]
) -> None:
    for start, end in rs:
        for group_by in ("app", "title", "url", "domain", "category", "productivity"):
            want = ref.report(group_by, start, end)
            got = report(server, device, group_by, start, end)
            assert got == want, (group_by, start, end)
        total = sum(ref.report("app", start, end).values())
        want_dev = {f"{hostname} (#{device})": total} if total else {}
        assert report(server, device, "device", start, end) == want_dev, ("device", start, end)


def enroll(server: Server) -> tuple[int, str, str]:
    hostname = f"pc-{uuid.uuid4().hex[:8]}"
    device, token = server.enroll(hostname=hostname)
    return device, token, hostname


# ---------------------------------------------------------------- tests


@SETTINGS
@given(scenario=scenarios(3, 5), resend_first=st.booleans())
def test_report_matches_second_by_second_reference(
    server: Server, scenario: tuple[History, list[tuple[int, int]]], resend_first: bool
) -> None:
    h, rs = scenario
    device, token, hostname = enroll(server)
    send(server, token, h, h.batches)
    if resend_first and h.batches:
        # The same batch again with a new batch id: every event is a duplicate.
        send(server, token, h, h.batches[:1])
    # The random ranges first: a report must bring its own rollups up to date.
    check(server, device, hostname, Reference(h.events, h.sends()), [*rs, (LO, HI)])


@SETTINGS
@given(scenario=scenarios(2, 4), late_from=st.integers(0, 3), oldest_late=st.booleans())
def test_rollups_stay_right_when_events_arrive_late(
    server: Server,
    scenario: tuple[History, list[tuple[int, int]]],
    late_from: int,
    oldest_late: bool,
) -> None:
    """Reports (which refresh the hour and day rollups) between two waves of
    sends: the second wave brings new events, older ones overlapping hours
    already rolled up among them, and longer copies of events already counted."""
    h, rs = scenario
    device, token, hostname = enroll(server)
    sends = h.sends()
    if oldest_late:
        # The events that started first arrive last (an agent back from offline).
        sends.sort(key=lambda send: -h.events[send[0]].start)
    cut = len(sends) * late_from // 4
    early, late = sends[:cut], sends[cut:]
    # Whole days and whole hours: these ranges are read from rollups.
    rolled = [(DAY0 - DAY, DAY0 + 2 * DAY), (DAY0 + 3 * HOUR, DAY0 + DAY + 5 * HOUR)]
    send(server, token, h, [early])
    check(server, device, hostname, Reference(h.events, early), [*rolled, *rs])
    send(server, token, h, [late])
    check(server, device, hostname, Reference(h.events, sends), [*rs, *rolled, (LO, HI)])


def test_an_old_event_arriving_after_its_hours_were_rolled_up_is_counted(server: Server) -> None:
    """A readable case of the above, at whole hours so every number comes from rollups."""
    device, token, _ = enroll(server)

    def at(hours: float) -> Any:
        return T0 + timedelta(hours=hours)

    code = focus(at(0), 2 * HOUR, "code")  # 09:00-11:00
    post(server, token, batch(code, afk(at(-2), 6 * HOUR, "active")))  # active 07:00-13:00
    whole = (-2 * HOUR, 4 * HOUR)  # 07:00-13:00, six whole hours
    day = (DAY0, DAY0 + DAY)  # the whole UTC day
    for rng in (whole, day):
        assert report(server, device, "app", *rng) == {"code": 7200.0}

    post(
        server,
        token,
        batch(
            # Older than "code" and overlapping it: it only gets 08:00-09:00,
            # because "code" started later and wins from 09:00.
            focus(at(-1), 2 * HOUR, "mail"),
            # The merged "code" event, sent again longer: now 09:00-12:00.
            {**code, "duration": 3.0 * HOUR},
            # Later start than "code": wins 10:00-10:30.
            focus(at(1), HOUR / 2, "chat"),
            # Away 11:30-12:00: nothing counts there.
            afk(at(2.5), HOUR / 2, "afk"),
        ),
    )
    want = {"mail": 3600.0, "code": 3 * 3600.0 - 1800 - 1800, "chat": 1800.0}
    for rng in (whole, day):
        assert report(server, device, "app", *rng) == want
    assert report(server, device, "app", 0, HOUR) == {"code": 3600.0}  # 09:00-10:00
    assert report(server, device, "app", -HOUR, 0) == {"mail": 3600.0}  # 08:00-09:00
