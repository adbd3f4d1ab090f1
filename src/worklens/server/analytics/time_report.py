"""Active time per app, title or device over a time range.

Active time is focus time intersected with not-afk time. A range is cut into
whole local days of the organization's time zone (read from day rollups),
whole hours (hour rollups) and what is left at its edges (computed from raw
events with the very function that builds the rollups), so a 90-day report
reads a few thousand rows (see ``timeline.periods.plan``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from zoneinfo import ZoneInfo

from sqlalchemy import select

from worklens.categories import format_path
from worklens.server.store.buckets import buckets_of
from worklens.server.store.category_rules import Classifiers
from worklens.server.store.db import Database
from worklens.server.store.rollups import (
    DAY_S,
    DIM_APP,
    DIM_PAYLOAD,
    RES_DAY,
    RES_HOUR,
    Rollups,
    app_of,
)
from worklens.server.store.schema import devices, orgs
from worklens.timeline.intervals import totals
from worklens.timeline.periods import days, local_date, plan, zone

GroupBy = Literal["app", "title", "category", "productivity", "device"]
GROUP_BY: tuple[GroupBy, ...] = ("app", "title", "category", "productivity", "device")
# What each grouping reads: app names are rolled up on their own (the most
# common report, and the cheapest); everything else derives from whole payloads.
_BY_PAYLOAD = ("title", "category", "productivity")
Interval = Literal["none", "day", "week"]
INTERVALS: tuple[Interval, ...] = ("none", "day", "week")
MAX_RANGE_DAYS = 400


class ReportError(ValueError):
    """The report request itself is wrong; the message says how."""


@dataclass(frozen=True, slots=True)
class Row:
    key: str
    seconds: float


def validate(group_by: str, start_ms: int, end_ms: int, depth: int | None = None) -> GroupBy:
    if group_by not in GROUP_BY:
        raise ReportError(f"unknown group_by {group_by!r}; choose one of {', '.join(GROUP_BY)}")
    if depth is not None and (group_by != "category" or not 1 <= depth <= 16):
        raise ReportError("depth goes with group_by=category and must be between 1 and 16")
    if end_ms <= start_ms:
        raise ReportError("start must be before end")
    if end_ms - start_ms > MAX_RANGE_DAYS * DAY_S * 1000:
        raise ReportError(f"range is longer than the maximum of {MAX_RANGE_DAYS} days")
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
    depth: int | None = None,
    classifiers: Classifiers | None = None,
) -> list[Row]:
    """Active time per key. ``depth`` cuts category paths (``Work > Programming``
    at depth 2); categories and productivity use each device's rules (its
    person's team's overrides of the organization's rules), as they are now."""
    series = time_series(
        db,
        rollup,
        org_id,
        group_by,
        start_ms,
        end_ms,
        device_id,
        depth=depth,
        classifiers=classifiers,
    )
    return series[0][1] if series else []


def time_series(
    db: Database,
    rollup: Rollups,
    org_id: int,
    group_by: str,
    start_ms: int,
    end_ms: int,
    device_id: int | None = None,
    *,
    interval: Interval = "none",
    depth: int | None = None,
    classifiers: Classifiers | None = None,
) -> list[tuple[int, list[Row]]]:
    """:func:`time_report` for each local day or week (Monday to Monday) of the
    organization's time zone that the range touches, clipped to the range:
    ``[(period start ms, rows), ...]``; ``interval="none"``: the whole range."""
    gb = validate(group_by, start_ms, end_ms, depth)
    if interval not in INTERVALS:
        raise ReportError(f"unknown interval {interval!r}; choose one of {', '.join(INTERVALS)}")
    with db.read() as conn:
        tz_name = conn.execute(select(orgs.c.timezone).where(orgs.c.id == org_id)).scalar_one()
        q = select(devices.c.id, devices.c.hostname).where(devices.c.org_id == org_id)
        if device_id is not None:
            q = q.where(devices.c.id == device_id)
        names = {r.id: r.hostname for r in conn.execute(q)}
    tz = zone(tz_name)
    pieces = _periods(tz, start_ms, end_ms, interval)
    if not names:
        return [(a, []) for a, _ in pieces]
    ids = sorted(names)
    plans = [plan(a, b, tz) for a, b in pieces]
    # Bring the rollups this report reads up to date first: a report is never stale.
    rollup_span = [r for p in plans for r in (*p.hours, *p.days)]
    if rollup_span:
        rollup.refresh(ids, min(a for a, _ in rollup_span), max(b for _, b in rollup_span))

    dim = DIM_PAYLOAD if gb in _BY_PAYLOAD else DIM_APP
    # Per period: device -> rollup key of dim -> ms, and device -> payload id -> ms
    # for the raw edges (app rollups are keyed by app id, raw time by payload).
    rolled: list[dict[int, dict[int, int]]] = []
    raw: list[dict[int, dict[int, int]]] = []
    with db.read() as conn:
        refs = buckets_of(conn, ids) if any(p.raw for p in plans) else {}
        for p in plans:
            r: dict[int, dict[int, int]] = {}
            w: dict[int, dict[int, int]] = {}
            for res, ranges in ((RES_HOUR, p.hours), (RES_DAY, p.days)):
                for a, b in ranges:
                    _merge(r, rollup.sums(conn, ids, res, dim, a, b))
            for a, b in p.raw:
                for dev, (active, _) in rollup.active_by_device(conn, refs, a, b).items():
                    _merge(w, {dev: totals(active)})
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
        apps = rollup.key_values(conn, rolled_keys) if dim == DIM_APP else {}
        classify = (
            (classifiers or Classifiers()).for_devices(conn, org_id, ids)
            if gb in ("category", "productivity")
            else {}
        )

    def payload_label(dev: int, k: int) -> str:
        data = payloads[k]
        if gb == "title":
            return str(data.get("title", ""))
        if gb == "category":
            return format_path(classify[dev].classify(data)[:depth])
        if gb == "productivity":
            return classify[dev].productivity(classify[dev].classify(data))
        return app_of(data)

    def app_label(dev: int, k: int) -> str:
        return apps[k]

    out = []
    for (a, _), r_part, w_part in zip(pieces, rolled, raw, strict=True):
        sums: dict[str, int] = {}
        for part, label in (
            (r_part, payload_label if dim == DIM_PAYLOAD else app_label),
            (w_part, payload_label),
        ):
            for dev, keyed in part.items():
                for k, ms in keyed.items():
                    key = _device_key(dev, names) if gb == "device" else label(dev, k)
                    sums[key] = sums.get(key, 0) + ms
        rows = [Row(k, ms / 1000) for k, ms in sums.items() if ms > 0]
        rows.sort(key=lambda row: (-row.seconds, row.key))
        out.append((a, rows))
    return out


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


def _merge(into: dict[int, dict[int, int]], part: dict[int, dict[int, int]]) -> None:
    for dev, keyed in part.items():
        acc = into.setdefault(dev, {})
        for k, ms in keyed.items():
            acc[k] = acc.get(k, 0) + ms


def _device_key(device_id: int, names: dict[int, str]) -> str:
    return f"{names[device_id]} (#{device_id})"
