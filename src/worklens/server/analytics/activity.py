"""When people were active: the hour-of-week heatmap and the timeline of a
device's day, in the organization's time zone."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select

from worklens.server.access import Access
from worklens.server.analytics.time_report import ReportError, resolve_scope
from worklens.server.store.buckets import buckets_of
from worklens.server.store.db import Database
from worklens.server.store.rollups import (
    DAY_S,
    DEVICE,
    DIM_APP,
    PERSON,
    Kind,
    Rollups,
    Streams,
    active_of,
    app_of,
)
from worklens.server.store.schema import devices, orgs
from worklens.timeline.intervals import clip, flatten
from worklens.timeline.periods import HOUR_MS, days, zone

MAX_TIMELINE_DAYS = 7


@dataclass(frozen=True, slots=True)
class Heatmap:
    timezone: str
    # seconds[weekday][hour]: weekday 0 = Monday, hours of local wall-clock time.
    seconds: list[list[float]]


def heatmap(
    db: Database,
    rollup: Rollups,
    org_id: int,
    start_ms: int,
    end_ms: int,
    device_id: int | None = None,
    max_days: int = 400,
    *,
    person_id: int | None = None,
    team_id: int | None = None,
    access: Access | None = None,
) -> Heatmap:
    """Active seconds per local hour of the week over the range, for the same
    scope as the time report (a person's devices merged). Whole UTC hours come
    from hour rollups when every local hour is a whole UTC hour (zones with
    whole-hour offsets); otherwise, and at the edges, from raw events."""
    if end_ms <= start_ms:
        raise ReportError("start must be before end")
    if end_ms - start_ms > max_days * DAY_S * 1000:
        raise ReportError(f"range is longer than the maximum of {max_days} days")
    with db.read() as conn:
        tz_name = str(conn.execute(select(orgs.c.timezone).where(orgs.c.id == org_id)).scalar_one())
        scope = resolve_scope(
            conn, org_id, device_id, person_id, team_id, by_device=False, access=access
        )
    tz = zone(tz_name)
    grid = [[0] * 24 for _ in range(7)]

    def add(at_ms: int, ms: int) -> None:
        local = datetime.fromtimestamp(at_ms / 1000, tz)
        grid[local.weekday()][local.hour] += ms

    by_kind: dict[Kind, list[int]] = {}
    for kind, sid in scope.subjects:
        by_kind.setdefault(kind, []).append(sid)
    whole_hours = all(d0 % HOUR_MS == 0 for d0, _ in days(tz, start_ms, end_ms))
    h0 = -(-start_ms // HOUR_MS) * HOUR_MS
    h1 = end_ms // HOUR_MS * HOUR_MS
    raw: list[tuple[int, int]] = [(start_ms, end_ms)]
    if whole_hours and h0 < h1 and by_kind:
        raw = [(a, b) for a, b in ((start_ms, h0), (h1, end_ms)) if b > a]
        rollup.refresh(
            by_kind.get(DEVICE, []), h0 // 1000, h1 // 1000, person_ids=by_kind.get(PERSON, [])
        )
        with db.read() as conn:
            for kind, ids in by_kind.items():
                hours = rollup.hour_totals(conn, ids, DIM_APP, h0 // 1000, h1 // 1000, kind)
                for period_s, ms in hours:
                    add(period_s * 1000, ms)
    with db.read() as conn:
        for kind, ids in by_kind.items():
            for a, b in raw:
                for _sid, (active, _) in rollup.active_by_subject(conn, kind, ids, a, b).items():
                    for s, e, _v in active:
                        # Cut at local hour boundaries: each piece lands in its own cell.
                        cur = s
                        while cur < e:
                            nxt = min(e, _next_local_hour(tz, cur))
                            add(cur, nxt - cur)
                            cur = nxt
    return Heatmap(tz_name, [[ms / 1000 for ms in row] for row in grid])


def _org_devices(db: Database, org_id: int, device_id: int | None) -> tuple[str, list[int]]:
    with db.read() as conn:
        tz_name = conn.execute(select(orgs.c.timezone).where(orgs.c.id == org_id)).scalar_one()
        q = select(devices.c.id).where(devices.c.org_id == org_id)
        if device_id is not None:
            q = q.where(devices.c.id == device_id)
        return str(tz_name), sorted(conn.execute(q).scalars())


def _next_local_hour(tz: ZoneInfo, t_ms: int) -> int:
    """The next instant after ``t_ms`` where the local clock shows a whole hour."""
    local = datetime.fromtimestamp(t_ms / 1000, tz)
    left_in_hour = (60 - local.minute) * 60_000 - local.second * 1000 - local.microsecond // 1000
    candidate = t_ms + left_in_hour
    # Around a DST change the wall clock may jump; never return a point behind t.
    return candidate if candidate > t_ms else t_ms + HOUR_MS


@dataclass(frozen=True, slots=True)
class Span:
    start_ms: int
    end_ms: int
    app: str
    title: str
    url: str = ""  # the browser tab in front, where known


@dataclass(frozen=True, slots=True)
class Timeline:
    focus: list[Span]  # what was in front, active or not
    afk: list[tuple[int, int, str]]  # (start, end, "afk" | "active")
    active: list[Span]  # focus while not afk: what reports count


def timeline(
    db: Database, rollup: Rollups, org_id: int, device_id: int, start_ms: int, end_ms: int
) -> Timeline:
    """A device's focus, afk and active spans over a range of at most a week."""
    if end_ms <= start_ms:
        raise ReportError("start must be before end")
    if end_ms - start_ms > MAX_TIMELINE_DAYS * DAY_S * 1000:
        raise ReportError(f"a timeline covers at most {MAX_TIMELINE_DAYS} days")
    _, ids = _org_devices(db, org_id, device_id)
    if not ids:
        raise LookupError(f"no device {device_id} in this organization")
    with db.read() as conn:
        streams, data = rollup.streams(conn, buckets_of(conn, ids), start_ms, end_ms)
    st = streams.get(device_id) or Streams([], [], [])  # a device with no events yet

    def as_spans(items: list[tuple[int, int, int]]) -> list[Span]:
        return [
            Span(s, e, app_of(data[d]), str(data[d].get("title", "")), str(data[d].get("url", "")))
            for s, e, d in items
        ]

    return Timeline(
        focus=as_spans(clip(flatten(st.focus), start_ms, end_ms)),
        afk=clip(flatten(st.afk), start_ms, end_ms),
        active=as_spans(active_of(st, data, start_ms, end_ms)),
    )
