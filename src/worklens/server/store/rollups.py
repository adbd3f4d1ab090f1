"""Hourly and daily rollups of active time, refreshed from raw events.

Ingest only marks the hours an event touched as dirty (cheap, inside the
ingest transaction). ``refresh`` recomputes those hours from raw events with
the same pure function reports use for partial hours, so rollups can never
disagree with the raw data; late, re-sent and merged events are all just
"this hour changed". Day rows are sums of their hour rows.
"""

from __future__ import annotations

import itertools
import secrets
import threading
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import msgpack
from sqlalchemy import Connection, and_, delete, select, text, tuple_

from worklens.server.store.buckets import (
    AFK_TYPE,
    FOCUS_TYPE,
    BucketRef,
    device_buckets,
    load_data,
    spans,
)
from worklens.server.store.db import Database
from worklens.server.store.schema import devices, orgs, rollup_dirty, rollup_keys, rollups
from worklens.timeline import periods
from worklens.timeline.intervals import active_spans, split_by_period, totals
from worklens.timeline.periods import zone

HOUR_S = 3600
DAY_S = 86400
RES_HOUR = 0
RES_DAY = 1
DIM_APP = 0  # keys: rollup_keys ids of app names
DIM_PAYLOAD = 1  # keys: event_data ids of whole focus payloads
DIMS = (DIM_APP, DIM_PAYLOAD)


def app_of(data: dict[str, Any]) -> str:
    """The app of a focus payload, as rolled up and reported."""
    return str(data.get("app", ""))


def pack(totals: dict[int, int]) -> bytes:
    """One period's active ms per key, as the ``body`` of a rollup row."""
    keys = sorted(totals)
    return bytes(msgpack.packb([keys, [totals[k] for k in keys]]))


def add_packed(acc: dict[int, int], body: bytes) -> None:
    """Add a packed body's ms per key into ``acc``."""
    keys, values = msgpack.unpackb(body)
    get = acc.get
    for k, v in zip(keys, values, strict=True):
        acc[k] = get(k, 0) + v


class Rollups:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._lock = threading.Lock()
        self._key_ids: dict[tuple[str, str], int] = {}
        self._data: dict[int, dict[str, Any]] = {}

    def refresh(
        self,
        device_ids: Sequence[int] | None = None,
        start_s: int | None = None,
        end_s: int | None = None,
        limit: int = 20_000,
    ) -> int:
        """Recompute dirty hours (optionally only some devices and hours); returns
        how many were brought up to date."""
        done = 0
        while True:
            with self.db.read() as conn:
                q = select(rollup_dirty.c.device_id, rollup_dirty.c.hour_s, rollup_dirty.c.gen)
                if device_ids is not None:
                    q = q.where(rollup_dirty.c.device_id.in_(list(device_ids)))
                if start_s is not None:
                    q = q.where(rollup_dirty.c.hour_s >= start_s)
                if end_s is not None:
                    q = q.where(rollup_dirty.c.hour_s < end_s)
                rows = conn.execute(
                    q.order_by(rollup_dirty.c.device_id, rollup_dirty.c.hour_s).limit(limit)
                ).all()
            if not rows:
                return done
            for device_id, group in itertools.groupby(rows, key=lambda r: r.device_id):
                marks = {r.hour_s: r.gen for r in group}
                # The expensive part (reading events, the interval algebra) runs in
                # a read transaction, so ingest keeps writing meanwhile; only the
                # short replacement of rows below holds the write lock.
                with self.db.read() as conn:
                    totals = self._compute(conn, device_id, list(marks))
                new_keys: dict[tuple[str, str], int] = {}
                with self.db.write() as conn:
                    done += self._store(conn, device_id, marks, totals, new_keys)
                with self._lock:
                    self._key_ids.update(new_keys)
            if len(rows) < limit:
                return done

    def _compute(self, conn: Connection, device_id: int, hours: list[int]) -> _Computed:
        """Active ms per (hour, dim) and key of those hours, from raw events, and
        the raw parts of the local days they touch that are not whole hours.
        App keys are still names here: ids are given out in the write transaction."""
        refs = device_buckets(conn, device_id)
        tz_name = device_timezone(conn, device_id)
        tz = zone(tz_name)
        out = _Computed(tz_name, {}, [], {})
        for run_start, run_end in _runs(hours):
            active, data = self.active(conn, refs, run_start * 1000, run_end * 1000)
            for (period_ms, data_id), ms in split_by_period(active, HOUR_S * 1000).items():
                _add_keys(out.hours, period_ms // 1000, data[data_id], data_id, ms)
        touched = {d for h in hours for d in periods.days(tz, h * 1000, (h + HOUR_S) * 1000)}
        out.days.extend(sorted(touched))
        for d0, d1 in out.days:
            if d1 - d0 < HOUR_S * 1000:
                continue  # cannot happen in any real zone; keeps hour_edges honest
            for a, b in periods.hour_edges(d0, d1):
                if (a, b) == (d0, d1):
                    continue
                active, data = self.active(conn, refs, a, b)
                for data_id, ms in totals(active).items():
                    _add_keys(out.edges, d0 // 1000, data[data_id], data_id, ms)
        return out

    def _store(
        self,
        conn: Connection,
        device_id: int,
        marks: dict[int, int],
        computed: _Computed,
        new_keys: dict[tuple[str, str], int],
    ) -> int:
        """Replace the rollup rows of the hours still marked as they were when read.

        An hour re-marked since (new events arrived) or already cleared (another
        refresh got there first, possibly with newer data) is left alone: the
        mark, if any, brings it back. Checked and written in one transaction, so
        a slow refresh can never overwrite a newer one's rows.
        """
        if conn.dialect.name == "postgresql":
            # Serialise refreshes of one device (background, reports, other server
            # processes); SQLite's write transactions are serial already.
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": device_id})
        current: dict[int, int] = {}
        for chunk in _chunks(sorted(marks), 500):
            current.update(
                conn.execute(
                    select(rollup_dirty.c.hour_s, rollup_dirty.c.gen).where(
                        rollup_dirty.c.device_id == device_id,
                        rollup_dirty.c.hour_s.in_(chunk),
                    )
                ).all()
            )
        hours = sorted(h for h, gen in marks.items() if current.get(h) == gen)
        if not hours or device_timezone(conn, device_id) != computed.tz:
            # Nothing left to do, or the time zone changed under us (its change
            # re-marked the device's days; the next refresh uses the new zone).
            return 0
        valid = set(hours)
        rows = []
        for (h, dim), sums in computed.hours.items():
            if h in valid:
                rows.append(
                    (device_id, RES_HOUR, dim, h, pack(self._ids(conn, dim, sums, new_keys)))
                )
        _delete_periods(conn, device_id, RES_HOUR, hours)
        self.db.bulk_insert(conn, rollups, ("device_id", "res", "dim", "period_s", "body"), rows)
        # A day row is the sum of the day's hour rows, plus (in zones whose days
        # do not start on a whole UTC hour) the raw parts at its two ends.
        day_rows = []
        for d0, d1 in computed.days:
            day_s = d0 // 1000
            sums_by_dim: dict[int, dict[int, int]] = {dim: {} for dim in DIMS}
            for dim, body in conn.execute(
                select(rollups.c.dim, rollups.c.body).where(
                    rollups.c.device_id == device_id,
                    rollups.c.res == RES_HOUR,
                    rollups.c.dim.in_(DIMS),
                    rollups.c.period_s >= -(-d0 // (HOUR_S * 1000)) * HOUR_S,
                    rollups.c.period_s < d1 // (HOUR_S * 1000) * HOUR_S,
                )
            ):
                add_packed(sums_by_dim[dim], body)
            for dim in DIMS:
                edge = computed.edges.get((day_s, dim))
                if edge:
                    for k, ms in self._ids(conn, dim, edge, new_keys).items():
                        sums_by_dim[dim][k] = sums_by_dim[dim].get(k, 0) + ms
                if sums_by_dim[dim]:  # a day without activity needs no row
                    day_rows.append((device_id, RES_DAY, dim, day_s, pack(sums_by_dim[dim])))
        _delete_periods(conn, device_id, RES_DAY, [d0 // 1000 for d0, _ in computed.days])
        self.db.bulk_insert(
            conn, rollups, ("device_id", "res", "dim", "period_s", "body"), day_rows
        )
        # The gen condition matters on PostgreSQL, where ingest may re-mark an
        # hour between the check above and here (it does not take the lock).
        for chunk in _chunks([(h, marks[h]) for h in hours], 400):
            conn.execute(
                delete(rollup_dirty).where(
                    rollup_dirty.c.device_id == device_id,
                    tuple_(rollup_dirty.c.hour_s, rollup_dirty.c.gen).in_(chunk),
                )
            )
        return len(hours)

    def sums(
        self,
        conn: Connection,
        device_ids: Sequence[int],
        res: int,
        dim: int,
        start_s: int,
        end_s: int,
    ) -> dict[int, dict[int, int]]:
        """Active ms per key of each device over the periods starting in
        ``[start_s, end_s)`` of one resolution and dimension."""
        out: dict[int, dict[int, int]] = {}
        for chunk in _chunks(sorted(device_ids), 500):
            for device_id, body in conn.execute(
                select(rollups.c.device_id, rollups.c.body).where(
                    rollups.c.device_id.in_(chunk),
                    rollups.c.res == res,
                    rollups.c.dim == dim,
                    rollups.c.period_s >= start_s,
                    rollups.c.period_s < end_s,
                )
            ):
                add_packed(out.setdefault(device_id, {}), body)
        return out

    def hour_totals(
        self, conn: Connection, device_ids: Sequence[int], dim: int, start_s: int, end_s: int
    ) -> list[tuple[int, int]]:
        """(hour start, active ms summed over keys) of each device's hour rows."""
        out = []
        for chunk in _chunks(sorted(device_ids), 500):
            for period_s, body in conn.execute(
                select(rollups.c.period_s, rollups.c.body).where(
                    rollups.c.device_id.in_(chunk),
                    rollups.c.res == RES_HOUR,
                    rollups.c.dim == dim,
                    rollups.c.period_s >= start_s,
                    rollups.c.period_s < end_s,
                )
            ):
                out.append((int(period_s), sum(msgpack.unpackb(body)[1])))
        return out

    def _ids(
        self, conn: Connection, dim: int, sums: dict[Any, int], new_keys: dict[tuple[str, str], int]
    ) -> dict[int, int]:
        if dim != DIM_APP:
            return sums
        return {self._key_id(conn, "app", k, new_keys): ms for k, ms in sums.items()}

    def retime(self, conn: Connection, org_id: int) -> int:
        """After the organization's time zone changed (in this transaction): drop
        its devices' day rows and mark one hour of every new local day that has
        data, so refreshes rebuild the days in the new zone. Returns the marks."""
        tz = zone(conn.execute(select(orgs.c.timezone).where(orgs.c.id == org_id)).scalar_one())
        marked = 0
        device_ids = conn.execute(select(devices.c.id).where(devices.c.org_id == org_id)).scalars()
        for device_id in device_ids.all():
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": device_id})
            conn.execute(
                delete(rollups).where(rollups.c.device_id == device_id, rollups.c.res == RES_DAY)
            )
            first_hour: dict[int, int] = {}
            for (h,) in conn.execute(
                select(rollups.c.period_s).where(
                    rollups.c.device_id == device_id,
                    rollups.c.res == RES_HOUR,
                    rollups.c.dim == DIM_APP,
                )
            ):
                first_hour.setdefault(periods.day_of(tz, h * 1000)[0], h)
            mark_dirty(self.db, conn, device_id, first_hour.values())
            marked += len(first_hour)
        return marked

    def _key_id(
        self, conn: Connection, dim: str, value: str, new_keys: dict[tuple[str, str], int]
    ) -> int:
        """Get or create a key's id. New ids join the shared cache only after
        commit, so a rolled-back transaction leaves no dangling id behind."""
        cached = self._key_ids.get((dim, value)) or new_keys.get((dim, value))
        if cached is not None:
            return cached
        self.db.insert_ignore(conn, rollup_keys, [{"dim": dim, "value": value}])
        kid = int(
            conn.execute(
                select(rollup_keys.c.id).where(
                    and_(rollup_keys.c.dim == dim, rollup_keys.c.value == value)
                )
            ).scalar_one()
        )
        new_keys[(dim, value)] = kid
        return kid

    def key_values(self, conn: Connection, ids: set[int]) -> dict[int, str]:
        out: dict[int, str] = {}
        for chunk in _chunks(sorted(ids), 500):
            for row in conn.execute(
                select(rollup_keys.c.id, rollup_keys.c.value).where(rollup_keys.c.id.in_(chunk))
            ):
                out[row.id] = row.value
        return out

    def active(
        self, conn: Connection, refs: list[BucketRef], start_ms: int, end_ms: int
    ) -> tuple[list[tuple[int, int, int]], dict[int, dict[str, Any]]]:
        """Active spans (focus while not afk) of one device's buckets within the
        window, valued by focus payload id, and those payloads. Rollups and the
        partial hours of reports both come from here, so they cannot disagree."""
        per_device = self.active_by_device(conn, {0: refs}, start_ms, end_ms)
        return per_device[0]

    def active_by_device(
        self,
        conn: Connection,
        refs: dict[int, list[BucketRef]],
        start_ms: int,
        end_ms: int,
    ) -> dict[int, tuple[list[tuple[int, int, int]], dict[int, dict[str, Any]]]]:
        """:meth:`active` for many devices with one read of their events."""
        by_bucket = spans(conn, [r for rs in refs.values() for r in rs], start_ms, end_ms)
        data = self.data(conn, {d for ss in by_bucket.values() for *_, d in ss})
        out = {}
        for device, device_refs in refs.items():
            focus = [sp for r in device_refs if r.type == FOCUS_TYPE for sp in by_bucket[r.id]]
            afk = [
                (s, e, str(data[d].get("status")))
                for r in device_refs
                if r.type == AFK_TYPE
                for s, e, d in by_bucket[r.id]
            ]
            out[device] = (active_spans(focus, afk, start_ms, end_ms), data)
        return out

    def data(self, conn: Connection, ids: set[int]) -> dict[int, dict[str, Any]]:
        """Payloads by id, through a bounded cache shared by reports and refreshes."""
        with self._lock:
            if len(self._data) > 200_000:
                self._data.clear()
            load_data(conn, ids, self._data)
            return {i: self._data[i] for i in ids}


class _Computed(NamedTuple):
    tz: str
    hours: dict[tuple[int, int], dict[Any, int]]  # (hour_s, dim) -> key -> ms
    days: list[tuple[int, int]]  # local days touched, [start_ms, end_ms)
    edges: dict[tuple[int, int], dict[Any, int]]  # (day_s, dim) -> key -> ms


def _add_keys(
    into: dict[tuple[int, int], dict[Any, int]],
    period_s: int,
    data: dict[str, Any],
    data_id: int,
    ms: int,
) -> None:
    for dim, key in ((DIM_APP, app_of(data)), (DIM_PAYLOAD, data_id)):
        sums = into.setdefault((period_s, dim), {})
        sums[key] = sums.get(key, 0) + ms


def device_timezone(conn: Connection, device_id: int) -> str:
    return str(
        conn.execute(
            select(orgs.c.timezone)
            .select_from(devices.join(orgs, orgs.c.id == devices.c.org_id))
            .where(devices.c.id == device_id)
        ).scalar_one()
    )


def mark_dirty(db: Database, conn: Connection, device_id: int, hours: Iterable[int]) -> None:
    """Mark hours for recomputation. A fresh random gen, not a counter: a
    counter restarts when a refresh deletes the mark, and a refresh that read
    the old mark would then mistake the new one for it (see ``Rollups._store``)."""
    gen = secrets.randbits(62)
    stmt: Any = db.insert(rollup_dirty)
    stmt = stmt.on_conflict_do_update(
        index_elements=[rollup_dirty.c.device_id, rollup_dirty.c.hour_s],
        set_={"gen": stmt.excluded.gen},
    )
    rows = [{"device_id": device_id, "hour_s": h, "gen": gen} for h in sorted(hours)]
    if rows:
        conn.execute(stmt, rows)


def _runs(hours: Iterable[int]) -> list[tuple[int, int]]:
    """Contiguous runs of hour starts, as [start, end) in seconds."""
    runs: list[tuple[int, int]] = []
    for h in sorted(hours):
        if runs and runs[-1][1] == h:
            runs[-1] = (runs[-1][0], h + HOUR_S)
        else:
            runs.append((h, h + HOUR_S))
    return runs


def _delete_periods(conn: Connection, device_id: int, res: int, periods: Sequence[int]) -> None:
    for chunk in _chunks(periods, 500):
        conn.execute(
            delete(rollups).where(
                rollups.c.device_id == device_id,
                rollups.c.res == res,
                # Every dim named, so the primary key serves the lookup.
                rollups.c.dim.in_(DIMS),
                rollups.c.period_s.in_(chunk),
            )
        )


def _chunks(seq: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for i in range(0, len(seq), size):
        yield seq[i : i + size]
