"""Active time per app, title, URL, domain, category, productivity class,
person or device over a time range.

Active time is focus time intersected with not-afk time. A range is cut into
whole local days of the organization's time zone (read from day rollups),
whole hours (hour rollups) and what is left at its edges (computed from raw
events with the very function that builds the rollups), so a 90-day report
reads a few thousand rows (see ``timeline.periods.plan``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, select

from worklens.categories import domain_of, format_path
from worklens.server.access import Access
from worklens.server.store.buckets import buckets_of
from worklens.server.store.category_rules import Classifiers
from worklens.server.store.db import Database
from worklens.server.store.rollups import (
    DAY_S,
    DEVICE,
    DIM_APP,
    DIM_CATEGORY,
    DIM_PAYLOAD,
    PERSON,
    RES_DAY,
    RES_HOUR,
    Kind,
    Rollups,
    app_of,
    rules_version,
)
from worklens.server.store.schema import device_people, devices, orgs, people, teams
from worklens.timeline.intervals import totals
from worklens.timeline.periods import days, local_date, plan, zone

GroupBy = Literal["app", "title", "url", "domain", "category", "productivity", "person", "device"]
GROUP_BY: tuple[GroupBy, ...] = (
    "app",
    "title",
    "url",
    "domain",
    "category",
    "productivity",
    "person",
    "device",
)
# What each grouping reads: app names are rolled up on their own (the most
# common report, and the cheapest); everything else derives from whole payloads.
_BY_PAYLOAD = ("title", "url", "domain")
# Categories and productivity read category rows (see store.rollups).
_BY_CATEGORY = ("category", "productivity")
Interval = Literal["none", "day", "week"]
INTERVALS: tuple[Interval, ...] = ("none", "day", "week")
MAX_RANGE_DAYS = 400  # the default of ServerSettings.max_report_days


class ReportError(ValueError):
    """The report request itself is wrong; the message says how."""


@dataclass(frozen=True, slots=True)
class Row:
    key: str
    seconds: float


def validate(
    group_by: str,
    start_ms: int,
    end_ms: int,
    depth: int | None = None,
    max_days: int = MAX_RANGE_DAYS,
) -> GroupBy:
    if group_by not in GROUP_BY:
        raise ReportError(f"unknown group_by {group_by!r}; choose one of {', '.join(GROUP_BY)}")
    if depth is not None and (group_by != "category" or not 1 <= depth <= 16):
        raise ReportError("depth goes with group_by=category and must be between 1 and 16")
    if end_ms <= start_ms:
        raise ReportError("start must be before end")
    if end_ms - start_ms > max_days * DAY_S * 1000:
        raise ReportError(f"range is longer than the maximum of {max_days} days")
    return group_by


def time_report(
    db: Database,
    rollup: Rollups,
    org_id: int,
    group_by: str,
    start_ms: int,
    end_ms: int,
    device_id: int | None = None,
    *,
    person_id: int | None = None,
    team_id: int | None = None,
    depth: int | None = None,
    classifiers: Classifiers | None = None,
    max_days: int = MAX_RANGE_DAYS,
    access: Access | None = None,
) -> list[Row]:
    """Active time per key. ``depth`` cuts category paths (``Work > Programming``
    at depth 2); categories and productivity use each person's rules (their
    team's overrides of the organization's rules), as they are now. URLs and
    domains count only the time a browser was in front with a known tab (see
    ``timeline.web``); the rest of the active time has no URL and is left out."""
    series = time_series(
        db,
        rollup,
        org_id,
        group_by,
        start_ms,
        end_ms,
        device_id,
        person_id=person_id,
        team_id=team_id,
        depth=depth,
        classifiers=classifiers,
        max_days=max_days,
        access=access,
    )
    return series[0][1] if series else []


Subject = tuple[Kind, int]


def time_series(
    db: Database,
    rollup: Rollups,
    org_id: int,
    group_by: str,
    start_ms: int,
    end_ms: int,
    device_id: int | None = None,
    *,
    person_id: int | None = None,
    team_id: int | None = None,
    interval: Interval = "none",
    depth: int | None = None,
    classifiers: Classifiers | None = None,
    max_days: int = MAX_RANGE_DAYS,
    access: Access | None = None,
) -> list[tuple[int, list[Row]]]:
    """:func:`time_report` for each local day or week (Monday to Monday) of the
    organization's time zone that the range touches, clipped to the range:
    ``[(period start ms, rows), ...]``; ``interval="none"``: the whole range.

    Whose time: one device, one person, a team's people, or (no filter) the
    whole organization. A person's devices are merged, so time when two of
    them were active at once counts once; the organization is its people plus
    the devices nobody is assigned to. ``group_by="device"`` is the exception:
    it reports each device of the scope on its own."""
    gb = validate(group_by, start_ms, end_ms, depth, max_days)
    if interval not in INTERVALS:
        raise ReportError(f"unknown interval {interval!r}; choose one of {', '.join(INTERVALS)}")
    with db.read() as conn:
        tz_name = conn.execute(select(orgs.c.timezone).where(orgs.c.id == org_id)).scalar_one()
        scope = resolve_scope(
            conn, org_id, device_id, person_id, team_id, by_device=gb == "device", access=access
        )
    tz = zone(tz_name)
    pieces = _periods(tz, start_ms, end_ms, interval)
    if not scope.subjects:
        return [(a, []) for a, _ in pieces]
    plans = [plan(a, b, tz) for a, b in pieces]
    by_kind: dict[Kind, list[int]] = {}
    for kind, sid in scope.subjects:
        by_kind.setdefault(kind, []).append(sid)
    # Bring the rollups this report reads up to date first: a report is never stale.
    rollup_span = [r for p in plans for r in (*p.hours, *p.days)]
    if rollup_span:
        rollup.refresh(
            by_kind.get(DEVICE, []),
            min(a for a, _ in rollup_span),
            max(b for _, b in rollup_span),
            person_ids=by_kind.get(PERSON, []),
        )

    dim = DIM_CATEGORY if gb in _BY_CATEGORY else DIM_PAYLOAD if gb in _BY_PAYLOAD else DIM_APP
    # Per period: subject -> rollup key of dim -> ms, and subject -> payload key
    # -> ms for the raw edges and for category rows made with other rules than
    # today's (rolled-up keys are app or category ids; raw ones payload keys).
    rolled: list[dict[Subject, dict[int, int]]] = []
    raw: list[dict[Subject, dict[int, int]]] = []
    with db.read() as conn:
        classify = (
            (classifiers or rollup.classifiers).for_teams(conn, org_id, scope.teams)
            if dim == DIM_CATEGORY
            else {}
        )
        refs = buckets_of(conn, by_kind.get(DEVICE, [])) if any(p.raw for p in plans) else {}
        for p in plans:
            r: dict[Subject, dict[int, int]] = {}
            w: dict[Subject, dict[int, int]] = {}
            for kind, ids in by_kind.items():
                versions = (
                    {sid: rules_version(classify[(kind, sid)]) for sid in ids} if classify else {}
                )
                for res, ranges in ((RES_HOUR, p.hours), (RES_DAY, p.days)):
                    for a, b in ranges:
                        if dim != DIM_CATEGORY:
                            part = rollup.sums(conn, ids, res, dim, a, b, kind)
                            _merge(r, {(kind, sid): keyed for sid, keyed in part.items()})
                            continue
                        part, stale = rollup.category_sums(conn, ids, res, a, b, kind, versions)
                        _merge(r, {(kind, sid): keyed for sid, keyed in part.items()})
                        for sid, at in stale.items():
                            keyed = rollup.sums_at(conn, kind, sid, res, DIM_PAYLOAD, at)
                            _merge(w, {(kind, sid): keyed})
                for a, b in p.raw:
                    active = (
                        rollup.active_by_device(conn, refs, a, b)
                        if kind is DEVICE
                        else rollup.active_by_subject(conn, kind, ids, a, b)
                    )
                    _merge(w, {(kind, sid): totals(spans) for sid, (spans, _) in active.items()})
            if dim == DIM_PAYLOAD:
                _merge(r, w)
                w = {}
            rolled.append(r)
            raw.append(w)
        rolled_keys = {k for part in rolled for keyed in part.values() for k in keyed}
        payload_ids = {k for part in raw for keyed in part.values() for k in keyed}
        if dim == DIM_PAYLOAD:
            payload_ids |= rolled_keys
        payloads = rollup.data(conn, payload_ids)
        names = rollup.key_values(conn, rolled_keys) if dim != DIM_PAYLOAD else {}

    def path_label(subject: Subject, path: tuple[str, ...]) -> str:
        if gb == "category":
            return format_path(path[:depth])
        return classify[subject].productivity(path)

    def payload_label(subject: Subject, k: int) -> str | None:
        data = payloads[k]
        if gb == "title":
            return str(data.get("title", ""))
        if gb in ("url", "domain"):
            url = str(data.get("url") or "")
            if not url:
                return None
            return url if gb == "url" else domain_of(url) or url
        if dim == DIM_CATEGORY:
            return path_label(subject, classify[subject].classify(data))
        return app_of(data)

    paths = {k: tuple(json.loads(v)) for k, v in names.items()} if dim == DIM_CATEGORY else {}

    def rolled_label(subject: Subject, k: int) -> str | None:
        if dim == DIM_APP:
            return names[k]
        if dim == DIM_CATEGORY:
            return path_label(subject, paths[k])
        return payload_label(subject, k)

    out = []
    for (a, _), r_part, w_part in zip(pieces, rolled, raw, strict=True):
        sums: dict[str, int] = {}
        for by_subject, label in (
            (r_part, rolled_label),
            (w_part, payload_label),
        ):
            for subject, keyed in by_subject.items():
                for k, ms in keyed.items():
                    key = scope.names[subject] if gb in ("device", "person") else label(subject, k)
                    if key is not None:
                        sums[key] = sums.get(key, 0) + ms
        rows = [Row(k, ms / 1000) for k, ms in sums.items() if ms > 0]
        rows.sort(key=lambda row: (-row.seconds, row.key))
        out.append((a, rows))
    return out


@dataclass(frozen=True, slots=True)
class Scope:
    subjects: list[Subject]
    names: dict[Subject, str]  # how a subject is shown when reports group by it
    teams: dict[Subject, int | None]  # whose category rules apply


def resolve_scope(
    conn: Connection,
    org_id: int,
    device_id: int | None,
    person_id: int | None,
    team_id: int | None,
    by_device: bool,
    *,
    access: Access | None = None,
) -> Scope:
    """The subjects a report reads. ``access`` (None: the whole organization)
    limits it to what the caller may see: without a filter a manager gets
    their teams' people and a self user their own person; a device, person or
    team outside that is answered as if it did not exist (LookupError: 404)."""
    if sum(x is not None for x in (device_id, person_id, team_id)) > 1:
        raise ReportError("filter by one of device, person or team")
    persons = {
        r.id: r
        for r in conn.execute(
            select(people.c.id, people.c.name, people.c.team_id).where(people.c.org_id == org_id)
        )
    }
    owner = {
        int(d): int(p)
        for d, p in conn.execute(
            select(device_people.c.device_id, device_people.c.person_id).where(
                device_people.c.person_id.in_(list(persons) or [-1])
            )
        )
    }
    hosts = {
        r.id: r.hostname
        for r in conn.execute(
            select(devices.c.id, devices.c.hostname).where(devices.c.org_id == org_id)
        )
    }

    def visible(p: int) -> bool:
        return access is None or access.may_see_person(p, persons[p].team_id)

    def device_visible(d: int) -> bool:
        o = owner.get(d)
        return access is None or access.may_see_device(o, None if o is None else persons[o].team_id)

    if person_id is not None and (person_id not in persons or not visible(person_id)):
        raise LookupError(f"no person {person_id} in this organization")
    if device_id is not None and (device_id not in hosts or not device_visible(device_id)):
        raise LookupError(f"no device {device_id} in this organization")
    if team_id is not None and (
        not conn.execute(
            select(teams.c.id).where(teams.c.id == team_id, teams.c.org_id == org_id)
        ).first()
        or (access is not None and not access.may_see_team(team_id))
    ):
        raise LookupError(f"no team {team_id} in this organization")

    def person_in_scope(p: int) -> bool:
        return (
            (person_id is None or p == person_id)
            and (team_id is None or persons[p].team_id == team_id)
            and visible(p)
        )

    # Devices nobody is assigned to belong to the organization as a whole.
    whole_org = person_id is None and team_id is None and (access is None or access.sees_whole_org)
    if device_id is not None:
        scope_devices = [device_id]
    else:
        scope_devices = [
            d
            for d in sorted(hosts)
            if (d in owner and person_in_scope(owner[d])) or (d not in owner and whole_org)
        ]
    subjects: list[Subject] = []
    names: dict[Subject, str] = {}
    team_of: dict[Subject, int | None] = {}
    for d in scope_devices:
        if by_device or device_id is not None or d not in owner:
            subjects.append((DEVICE, d))
            names[(DEVICE, d)] = f"{hosts[d]} (#{d})"
            team_of[(DEVICE, d)] = persons[owner[d]].team_id if d in owner else None
    if not by_device and device_id is None:
        for p in sorted({owner[d] for d in scope_devices if d in owner}):
            subjects.append((PERSON, p))
            names[(PERSON, p)] = f"{persons[p].name} (#{p})"
            team_of[(PERSON, p)] = persons[p].team_id
    return Scope(subjects, names, team_of)


def _periods(tz: ZoneInfo, start_ms: int, end_ms: int, interval: Interval) -> list[tuple[int, int]]:
    if interval == "none":
        return [(start_ms, end_ms)]
    local_days = days(tz, start_ms, end_ms)
    if interval == "week":
        weeks: list[tuple[int, int]] = []
        for d0, d1 in local_days:
            if weeks and local_date(tz, d0).weekday() != 0:
                weeks[-1] = (weeks[-1][0], d1)
            else:
                weeks.append((d0, d1))
        local_days = weeks
    return [(max(a, start_ms), min(b, end_ms)) for a, b in local_days]


def _merge(into: dict[Any, dict[int, int]], part: dict[Any, dict[int, int]]) -> None:
    for dev, keyed in part.items():
        acc = into.setdefault(dev, {})
        for k, ms in keyed.items():
            acc[k] = acc.get(k, 0) + ms
