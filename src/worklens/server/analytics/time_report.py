"""Active time per app, title or device over a time range.

Active time is focus time intersected with not-afk time. A range is cut into
whole UTC days (read from day rollups), whole hours (hour rollups) and the
partial hours at its edges (computed from raw events with the very function
that builds the rollups), so a 90-day report reads a few thousand rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sqlalchemy import select

from worklens.server.store.buckets import buckets_of
from worklens.server.store.db import Database
from worklens.server.store.rollups import (
    DAY_S,
    DIM_APP,
    DIM_PAYLOAD,
    HOUR_S,
    RES_DAY,
    RES_HOUR,
    Rollups,
    app_of,
)
from worklens.server.store.schema import devices
from worklens.timeline.intervals import totals

GroupBy = Literal["app", "title", "device"]
GROUP_BY: tuple[GroupBy, ...] = ("app", "title", "device")
MAX_RANGE_DAYS = 400


class ReportError(ValueError):
    """The report request itself is wrong; the message says how."""


@dataclass(frozen=True, slots=True)
class Row:
    key: str
    seconds: float


@dataclass(frozen=True, slots=True)
class Plan:
    """How a range is covered: raw edges, hour rollups, day rollups (all in ms/s)."""

    raw: list[tuple[int, int]]
    hours: list[tuple[int, int]]
    days: list[tuple[int, int]]


def plan(start_ms: int, end_ms: int) -> Plan:
    h0 = -(-start_ms // (HOUR_S * 1000)) * HOUR_S  # first whole hour (s)
    h1 = end_ms // (HOUR_S * 1000) * HOUR_S
    if h0 >= h1:
        return Plan([(start_ms, end_ms)], [], [])
    raw = [(a, b) for a, b in ((start_ms, h0 * 1000), (h1 * 1000, end_ms)) if b > a]
    d0 = -(-h0 // DAY_S) * DAY_S
    d1 = h1 // DAY_S * DAY_S
    if d0 >= d1:
        return Plan(raw, [(h0, h1)], [])
    hours = [(a, b) for a, b in ((h0, d0), (d1, h1)) if b > a]
    return Plan(raw, hours, [(d0, d1)])


def validate(group_by: str, start_ms: int, end_ms: int) -> GroupBy:
    if group_by not in GROUP_BY:
        raise ReportError(f"unknown group_by {group_by!r}; choose one of {', '.join(GROUP_BY)}")
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
) -> list[Row]:
    gb = validate(group_by, start_ms, end_ms)
    p = plan(start_ms, end_ms)
    with db.read() as conn:
        q = select(devices.c.id, devices.c.hostname).where(devices.c.org_id == org_id)
        if device_id is not None:
            q = q.where(devices.c.id == device_id)
        names = {r.id: r.hostname for r in conn.execute(q)}
    if not names:
        return []
    ids = sorted(names)
    # Bring the rollups this report reads up to date first: a report is never stale.
    rollup_span = [*p.hours, *p.days]
    if rollup_span:
        rollup.refresh(ids, min(a for a, _ in rollup_span), max(b for _, b in rollup_span))

    dim = DIM_PAYLOAD if gb == "title" else DIM_APP
    rolled: dict[int, dict[int, int]] = {}  # device -> rollup key of dim -> ms
    raw: dict[int, dict[int, int]] = {}  # device -> payload id -> ms, at the edges
    with db.read() as conn:
        for res, ranges in ((RES_HOUR, p.hours), (RES_DAY, p.days)):
            for a, b in ranges:
                _merge(rolled, rollup.sums(conn, ids, res, dim, a, b))
        refs = buckets_of(conn, ids) if p.raw else {}
        for a, b in p.raw:
            for dev, (active, _) in rollup.active_by_device(conn, refs, a, b).items():
                _merge(raw, {dev: totals(active)})
        rolled_keys = {k for keyed in rolled.values() for k in keyed}
        payload_ids = {k for keyed in raw.values() for k in keyed}
        payloads = rollup.data(conn, payload_ids | (rolled_keys if dim == DIM_PAYLOAD else set()))
        apps = rollup.key_values(conn, rolled_keys) if dim == DIM_APP else {}

    def payload_label(k: int) -> str:
        data = payloads[k]
        return str(data.get("title", "")) if gb == "title" else app_of(data)

    sums: dict[str, int] = {}
    for part, label in (
        (rolled, apps.__getitem__ if dim == DIM_APP else payload_label),
        (raw, payload_label),
    ):
        for dev, keyed in part.items():
            for k, ms in keyed.items():
                key = _device_key(dev, names) if gb == "device" else label(k)
                sums[key] = sums.get(key, 0) + ms
    rows = [Row(k, ms / 1000) for k, ms in sums.items() if ms > 0]
    rows.sort(key=lambda r: (-r.seconds, r.key))
    return rows


def _merge(into: dict[int, dict[int, int]], part: dict[int, dict[int, int]]) -> None:
    for dev, keyed in part.items():
        acc = into.setdefault(dev, {})
        for k, ms in keyed.items():
            acc[k] = acc.get(k, 0) + ms


def _device_key(device_id: int, names: dict[int, str]) -> str:
    return f"{names[device_id]} (#{device_id})"
