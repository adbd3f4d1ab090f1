"""Hourly and daily rollups of active time, refreshed from raw events.

Ingest only marks the hours an event touched as dirty (cheap, inside the
ingest transaction). ``refresh`` recomputes those hours from raw events with
the same pure function reports use for partial hours, so rollups can never
disagree with the raw data; late, re-sent and merged events are all just
"this hour changed". Day rows are sums of their hour rows.

Category rows (``DIM_CATEGORY``) are the payload rows of the same period,
classified by the subject's category rules when written; each carries the
rules' version, so a report uses only rows made with the rules now in force
and classifies the payload rows of the others itself. After a change of rules
``rebuild_categories`` (a background job) rewrites the rows it affected, from
the payload rows alone: no raw event is read again.
"""

from __future__ import annotations

import itertools
import json
import secrets
import threading
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import msgpack
from sqlalchemy import Column, Connection, Table, and_, delete, select, text, tuple_
from sqlalchemy.dialects import postgresql, sqlite

from worklens.categories import Classifier
from worklens.server.store.buckets import (
    AFK_TYPE,
    FOCUS_TYPE,
    WEB_TAB_TYPE,
    BucketRef,
    device_buckets,
    load_data,
    spans,
)
from worklens.server.store.classifiers import Classifiers
from worklens.server.store.db import Database
from worklens.server.store.schema import (
    device_people,
    devices,
    orgs,
    people,
    person_dirty,
    person_rollups,
    rollup_dirty,
    rollup_keys,
    rollups,
)
from worklens.timeline import periods
from worklens.timeline.intervals import (
    active_spans,
    clip,
    flatten,
    overlay,
    split_by_period,
    totals,
)
from worklens.timeline.periods import zone
from worklens.timeline.web import is_browser, tab_of, with_tab

HOUR_S = 3600
DAY_S = 86400
RES_HOUR = 0
RES_DAY = 1
# One row per subject: the rules version its category rows were last all
# rebuilt with (see ``rebuild_categories``).
RES_STATE = 9
DIM_APP = 0  # keys: rollup_keys ids of app names
DIM_PAYLOAD = 1  # keys: payload keys (see ``tab_key``) of whole focus payloads
DIM_CATEGORY = 2  # keys: rollup_keys ids of category paths (JSON lists); body has a version
DIMS = (DIM_APP, DIM_PAYLOAD, DIM_CATEGORY)
# Active time in a browser is valued by the focus payload *and* the tab in
# front, as one integer: the tab's event_data id above these bits, the focus
# payload's below. No row is needed for the pair, so reading it stays pure.
_TAB_SHIFT = 32
_FOCUS_MASK = (1 << _TAB_SHIFT) - 1


def tab_key(focus_id: int, tab_id: int) -> int:
    """The payload key of a focus payload seen with a browser tab."""
    if focus_id > _FOCUS_MASK:
        raise OverflowError("event_data ids beyond 2**32 cannot be paired with a tab")
    return tab_id << _TAB_SHIFT | focus_id


def key_parts(key: int) -> tuple[int, int]:
    """(focus payload id, tab payload id or 0) of a payload key."""
    return key & _FOCUS_MASK, key >> _TAB_SHIFT


class Payloads(dict[int, dict[str, Any]]):
    """Payloads by key: event_data ids as loaded, and pairs of a focus payload
    and a tab (see ``tab_key``) made up from their two parts when asked for."""

    def __missing__(self, key: int) -> dict[str, Any]:
        focus_id, tab_id = key_parts(key)
        if not tab_id:
            raise KeyError(key)
        value = with_tab(self[focus_id], self[tab_id])
        self[key] = value
        return value


class Streams(NamedTuple):
    """One device's raw spans around a window: focus (valued by payload id),
    afk (valued by status) and browser tabs (valued by payload id)."""

    focus: list[tuple[int, int, int]]
    afk: list[tuple[int, int, str]]
    tabs: list[tuple[int, int, int]]


def active_of(
    st: Streams, data: dict[int, dict[str, Any]], start_ms: int, end_ms: int
) -> list[tuple[int, int, int]]:
    """Active spans (focus while not afk) within the window, valued by payload
    key: while a browser is focused, the tab in front is part of the value."""
    active = active_spans(st.focus, st.afk, start_ms, end_ms)
    if not st.tabs or not active:
        return active
    # Latest start wins among all tabs, private ones included, before dropping
    # those: a private tab in front hides the tab that was in front before it.
    layer = [sp for sp in clip(flatten(st.tabs), start_ms, end_ms) if tab_of(data[sp[2]])]
    return overlay(active, layer, lambda d: is_browser(app_of(data[d])), tab_key)


class Kind(NamedTuple):
    """Whose rollups: a device's, or a person's (all their devices merged)."""

    name: str
    rollups: Table
    subject: Column[Any]  # the subject id column of ``rollups``
    dirty: Table
    dirty_subject: Column[Any]
    lock_space: int  # PostgreSQL advisory lock namespace (two-key form)


DEVICE = Kind("device", rollups, rollups.c.device_id, rollup_dirty, rollup_dirty.c.device_id, 1)
PERSON = Kind(
    "person",
    person_rollups,
    person_rollups.c.person_id,
    person_dirty,
    person_dirty.c.person_id,
    2,
)


def app_of(data: dict[str, Any]) -> str:
    """The app of a focus payload, as rolled up and reported."""
    return str(data.get("app", ""))


def pack(totals: dict[int, int], version: int | None = None) -> bytes:
    """One period's active ms per key, as the ``body`` of a rollup row; category
    rows add the version of the rules that classified them."""
    keys = sorted(totals)
    body: list[Any] = [keys, [totals[k] for k in keys]]
    if version is not None:
        body.append(version)
    return bytes(msgpack.packb(body))


def rules_version(classifier: Classifier) -> int:
    """What category rows record: the version of what classification depends on."""
    return int(classifier.version, 16)


def add_packed(acc: dict[int, int], body: bytes) -> None:
    """Add a packed body's ms per key into ``acc``."""
    keys, values, *_ = msgpack.unpackb(body)
    get = acc.get
    for k, v in zip(keys, values, strict=True):
        acc[k] = get(k, 0) + v


class Rollups:
    def __init__(self, db: Database, classifiers: Classifiers | None = None) -> None:
        self.db = db
        self.classifiers = classifiers or Classifiers()
        self._lock = threading.Lock()
        self._key_ids: dict[tuple[str, str], int] = {}
        self._data: dict[int, dict[str, Any]] = {}

    def refresh(
        self,
        device_ids: Sequence[int] | None = None,
        start_s: int | None = None,
        end_s: int | None = None,
        limit: int = 20_000,
        person_ids: Sequence[int] | None = None,
    ) -> int:
        """Recompute dirty hours of devices and then of people (optionally only
        some of each, and some hours); returns how many were brought up to date.
        Devices first: refreshing a device is what people's marks never need,
        but a report by person right after ingest finds both up to date."""
        done = 0
        for kind, ids in ((DEVICE, device_ids), (PERSON, person_ids)):
            if kind is PERSON and device_ids is not None and person_ids is None:
                continue  # a device-only refresh (a report filtered by device)
            done += self._refresh_kind(kind, ids, start_s, end_s, limit)
        return done

    def _refresh_kind(
        self,
        kind: Kind,
        subject_ids: Sequence[int] | None,
        start_s: int | None,
        end_s: int | None,
        limit: int,
    ) -> int:
        done = 0
        d = kind.dirty.c
        while True:
            with self.db.read() as conn:
                q = select(kind.dirty_subject, d.hour_s, d.gen)
                if subject_ids is not None:
                    q = q.where(kind.dirty_subject.in_(list(subject_ids)))
                if start_s is not None:
                    q = q.where(d.hour_s >= start_s)
                if end_s is not None:
                    q = q.where(d.hour_s < end_s)
                rows = conn.execute(q.order_by(kind.dirty_subject, d.hour_s).limit(limit)).all()
            if not rows:
                return done
            for subject_id, group in itertools.groupby(rows, key=lambda r: r[0]):
                marks = {r.hour_s: r.gen for r in group}
                # The expensive part (reading events, the interval algebra) runs in
                # a read transaction, so ingest keeps writing meanwhile; only the
                # short replacement of rows below holds the write lock.
                with self.db.read() as conn:
                    totals = self._compute(conn, subject_id, list(marks), kind)
                new_keys: dict[tuple[str, str], int] = {}
                with self.db.write() as conn:
                    done += self._store(conn, subject_id, marks, totals, new_keys, kind)
                with self._lock:
                    self._key_ids.update(new_keys)
            if len(rows) < limit:
                return done

    def _compute(
        self, conn: Connection, subject_id: int, hours: list[int], kind: Kind = DEVICE
    ) -> _Computed:
        """Active ms per (hour, dim) and key of those hours, from raw events, and
        the raw parts of the local days they touch that are not whole hours.
        App keys are still names here: ids are given out in the write transaction."""
        refs = subject_buckets(conn, kind, subject_id)
        tz_name = subject_timezone(conn, kind, subject_id)
        tz = zone(tz_name)
        out = _Computed(
            tz_name, sorted(refs), {}, [], {}, self.rules_of(conn, kind, subject_id)
        )
        for run_start, run_end in _runs(hours):
            active, data = self.merged(conn, refs, run_start * 1000, run_end * 1000)
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
                active, data = self.merged(conn, refs, a, b)
                for data_id, ms in totals(active).items():
                    _add_keys(out.edges, d0 // 1000, data[data_id], data_id, ms)
        return out

    def _store(
        self,
        conn: Connection,
        subject_id: int,
        marks: dict[int, int],
        computed: _Computed,
        new_keys: dict[tuple[str, str], int],
        kind: Kind = DEVICE,
    ) -> int:
        """Replace the rollup rows of the hours still marked as they were when read.

        An hour re-marked since (new events arrived) or already cleared (another
        refresh got there first, possibly with newer data) is left alone: the
        mark, if any, brings it back. Checked and written in one transaction, so
        a slow refresh can never overwrite a newer one's rows.
        """
        _lock_subject(conn, kind, subject_id)
        table, d = kind.rollups, kind.dirty.c
        current: dict[int, int] = {}
        for chunk in _chunks(sorted(marks), 500):
            current.update(
                conn.execute(
                    select(d.hour_s, d.gen).where(
                        kind.dirty_subject == subject_id, d.hour_s.in_(chunk)
                    )
                ).all()
            )
        hours = sorted(h for h, gen in marks.items() if current.get(h) == gen)
        if (
            not hours
            or subject_timezone(conn, kind, subject_id) != computed.tz
            or sorted(subject_buckets(conn, kind, subject_id)) != computed.devices
        ):
            # Nothing left to do, or the time zone or a person's devices changed
            # under us (such changes re-mark the hours; the next refresh redoes them).
            return 0
        valid = set(hours)
        classifier = computed.classifier
        version = rules_version(classifier)
        rows = []
        for (h, dim), sums in computed.hours.items():
            if h in valid:
                rows.append(
                    (subject_id, RES_HOUR, dim, h, pack(self._ids(conn, dim, sums, new_keys)))
                )
                if dim == DIM_PAYLOAD:
                    cats = self._categorize(conn, classifier, sums, new_keys)
                    rows.append((subject_id, RES_HOUR, DIM_CATEGORY, h, pack(cats, version)))
        columns = (kind.subject.name, "res", "dim", "period_s", "body")
        _delete_periods(conn, kind, subject_id, RES_HOUR, hours)
        self.db.bulk_insert(conn, table, columns, rows)
        # A day row is the sum of the day's hour rows, plus (in zones whose days
        # do not start on a whole UTC hour) the raw parts at its two ends.
        day_rows = []
        for d0, d1 in computed.days:
            day_s = d0 // 1000
            sums_by_dim: dict[int, dict[int, int]] = {dim: {} for dim in _SUMMED}
            for dim, body in conn.execute(
                select(table.c.dim, table.c.body).where(
                    kind.subject == subject_id,
                    table.c.res == RES_HOUR,
                    table.c.dim.in_(_SUMMED),
                    table.c.period_s >= -(-d0 // (HOUR_S * 1000)) * HOUR_S,
                    table.c.period_s < d1 // (HOUR_S * 1000) * HOUR_S,
                )
            ):
                add_packed(sums_by_dim[dim], body)
            for dim in _SUMMED:
                edge = computed.edges.get((day_s, dim))
                if edge:
                    for k, ms in self._ids(conn, dim, edge, new_keys).items():
                        sums_by_dim[dim][k] = sums_by_dim[dim].get(k, 0) + ms
                if sums_by_dim[dim]:  # a day without activity needs no row
                    day_rows.append((subject_id, RES_DAY, dim, day_s, pack(sums_by_dim[dim])))
            if sums_by_dim[DIM_PAYLOAD]:
                cats = self._categorize(conn, classifier, sums_by_dim[DIM_PAYLOAD], new_keys)
                day_rows.append((subject_id, RES_DAY, DIM_CATEGORY, day_s, pack(cats, version)))
        _delete_periods(conn, kind, subject_id, RES_DAY, [d0 // 1000 for d0, _ in computed.days])
        self.db.bulk_insert(conn, table, columns, day_rows)
        # The gen condition matters on PostgreSQL, where ingest may re-mark an
        # hour between the check above and here (it does not take the lock).
        for chunk in _chunks([(h, marks[h]) for h in hours], 400):
            conn.execute(
                delete(kind.dirty).where(
                    kind.dirty_subject == subject_id, tuple_(d.hour_s, d.gen).in_(chunk)
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
        kind: Kind = DEVICE,
    ) -> dict[int, dict[int, int]]:
        """Active ms per key of each subject (devices, or people with ``PERSON``)
        over the periods starting in ``[start_s, end_s)`` of one resolution and
        dimension."""
        table = kind.rollups
        out: dict[int, dict[int, int]] = {}
        for chunk in _chunks(sorted(device_ids), 500):
            for subject_id, body in conn.execute(
                select(kind.subject, table.c.body).where(
                    kind.subject.in_(chunk),
                    table.c.res == res,
                    table.c.dim == dim,
                    table.c.period_s >= start_s,
                    table.c.period_s < end_s,
                )
            ):
                add_packed(out.setdefault(subject_id, {}), body)
        return out

    def hour_totals(
        self,
        conn: Connection,
        subject_ids: Sequence[int],
        dim: int,
        start_s: int,
        end_s: int,
        kind: Kind = DEVICE,
    ) -> list[tuple[int, int]]:
        """(hour start, active ms summed over keys) of each subject's hour rows."""
        table = kind.rollups
        out = []
        for chunk in _chunks(sorted(subject_ids), 500):
            for period_s, body in conn.execute(
                select(table.c.period_s, table.c.body).where(
                    kind.subject.in_(chunk),
                    table.c.res == RES_HOUR,
                    table.c.dim == dim,
                    table.c.period_s >= start_s,
                    table.c.period_s < end_s,
                )
            ):
                out.append((int(period_s), sum(msgpack.unpackb(body)[1])))
        return out

    def _categorize(
        self,
        conn: Connection,
        classifier: Classifier,
        payload_sums: dict[int, int],
        new_keys: dict[tuple[str, str], int],
    ) -> dict[int, int]:
        """Payload sums of one period as sums per category key id."""
        data = self.data(conn, set(payload_sums))
        by_path: dict[tuple[str, ...], int] = {}
        for k, ms in payload_sums.items():
            path = classifier.classify(data[k])
            by_path[path] = by_path.get(path, 0) + ms
        return {
            self._key_id(conn, "category", json.dumps(list(p), ensure_ascii=False), new_keys): ms
            for p, ms in by_path.items()
        }

    def rules_of(self, conn: Connection, kind: Kind, subject_id: int) -> Classifier:
        """The category rules of a subject: its organization's, with the
        overrides of the team of its person (a device's owner, or the person)."""
        return self.rules_of_all(conn, kind, subject_id)[subject_id]

    def rules_of_all(
        self, conn: Connection, kind: Kind, subject_id: int | None = None
    ) -> dict[int, Classifier]:
        """:meth:`rules_of` for every subject of a kind (or one), with one query."""
        if kind is DEVICE:
            q = select(devices.c.id, devices.c.org_id, people.c.team_id).select_from(
                devices.outerjoin(
                    device_people, device_people.c.device_id == devices.c.id
                ).outerjoin(people, people.c.id == device_people.c.person_id)
            )
            if subject_id is not None:
                q = q.where(devices.c.id == subject_id)
        else:
            q = select(people.c.id, people.c.org_id, people.c.team_id)
            if subject_id is not None:
                q = q.where(people.c.id == subject_id)
        teams_by_org: dict[int, dict[int, int | None]] = {}
        for sid, org_id, team_id in conn.execute(q):
            teams_by_org.setdefault(int(org_id), {})[int(sid)] = team_id
        out: dict[int, Classifier] = {}
        for org_id, team_of in teams_by_org.items():
            out.update(self.classifiers.for_teams(conn, org_id, team_of))
        return out

    def category_sums(
        self,
        conn: Connection,
        subject_ids: Sequence[int],
        res: int,
        start_s: int,
        end_s: int,
        kind: Kind,
        versions: dict[int, int],
    ) -> tuple[dict[int, dict[int, int]], dict[int, list[int]]]:
        """Active ms per category key of each subject over the periods starting
        in ``[start_s, end_s)``, from the category rows made with the rules
        version the caller gives for that subject; and, per subject, the periods
        with activity but no such row, whose payload rows the caller must
        classify itself (see ``sums_at``)."""
        table = kind.rollups
        out: dict[int, dict[int, int]] = {}
        good: set[tuple[int, int]] = set()
        stale: dict[int, list[int]] = {}
        for chunk in _chunks(sorted(subject_ids), 500):
            in_range = (
                kind.subject.in_(chunk),
                table.c.res == res,
                table.c.period_s >= start_s,
                table.c.period_s < end_s,
            )
            for subject_id, period_s, body in conn.execute(
                select(kind.subject, table.c.period_s, table.c.body).where(
                    *in_range, table.c.dim == DIM_CATEGORY
                )
            ):
                keys, values, version = msgpack.unpackb(body)
                if version != versions[subject_id]:
                    continue
                good.add((subject_id, period_s))
                acc = out.setdefault(subject_id, {})
                for k, v in zip(keys, values, strict=True):
                    acc[k] = acc.get(k, 0) + v
            for subject_id, period_s in conn.execute(
                select(kind.subject, table.c.period_s).where(*in_range, table.c.dim == DIM_PAYLOAD)
            ):
                if (subject_id, period_s) not in good:
                    stale.setdefault(subject_id, []).append(period_s)
        return out, stale

    def sums_at(
        self, conn: Connection, kind: Kind, subject_id: int, res: int, dim: int, at: Sequence[int]
    ) -> dict[int, int]:
        """Active ms per key of one subject over the given periods of a resolution."""
        table = kind.rollups
        out: dict[int, int] = {}
        for chunk in _chunks(sorted(at), 500):
            for (body,) in conn.execute(
                select(table.c.body).where(
                    kind.subject == subject_id,
                    table.c.res == res,
                    table.c.dim == dim,
                    table.c.period_s.in_(chunk),
                )
            ):
                add_packed(out, body)
        return out

    def rebuild_categories(self, batch: int = 400) -> int:
        """Rewrite the category rows of every subject whose rules changed since
        they were written (or that never had any), from its payload rows; returns
        how many rows were written. Each batch of periods is read and written in
        one write transaction under the subject's lock, so a refresh storing new
        payload rows meanwhile is never overwritten with older ones."""
        written = 0
        for kind in (DEVICE, PERSON):
            table = kind.rollups
            with self.db.read() as conn:
                built = {
                    int(sid): msgpack.unpackb(body)
                    for sid, body in conn.execute(
                        select(kind.subject, table.c.body).where(table.c.res == RES_STATE)
                    )
                }
                wanted = {sid: rules_version(c) for sid, c in self.rules_of_all(conn, kind).items()}
            for sid, version in sorted(wanted.items()):
                if built.get(sid) != version:
                    written += self._rebuild_subject(kind, sid, version, batch)
        return written

    def _rebuild_subject(self, kind: Kind, subject_id: int, version: int, batch: int) -> int:
        table = kind.rollups
        with self.db.read() as conn:
            # Only the periods whose category row is missing or of other rules:
            # after a refresh most rows are already of the rules in force.
            done = {
                (res, period_s)
                for res, period_s, body in conn.execute(
                    select(table.c.res, table.c.period_s, table.c.body).where(
                        kind.subject == subject_id,
                        table.c.res.in_((RES_HOUR, RES_DAY)),
                        table.c.dim == DIM_CATEGORY,
                    )
                )
                if msgpack.unpackb(body)[2] == version
            }
            periods = [
                (res, period_s)
                for res, period_s in conn.execute(
                    select(table.c.res, table.c.period_s)
                    .where(
                        kind.subject == subject_id,
                        table.c.res.in_((RES_HOUR, RES_DAY)),
                        table.c.dim == DIM_PAYLOAD,
                    )
                    .order_by(table.c.res, table.c.period_s)
                )
                if (res, period_s) not in done
            ]
        written = 0
        columns = (kind.subject.name, "res", "dim", "period_s", "body")
        for chunk in _chunks(periods, batch):
            new_keys: dict[tuple[str, str], int] = {}
            with self.db.write() as conn:
                _lock_subject(conn, kind, subject_id)
                classifier = self.rules_of(conn, kind, subject_id)
                if rules_version(classifier) != version:
                    return written  # the rules changed again: the next round redoes it
                rows = []
                for res, group in itertools.groupby(chunk, key=lambda r: r[0]):
                    at = [p for _, p in group]
                    for period_s, body in conn.execute(
                        select(table.c.period_s, table.c.body).where(
                            kind.subject == subject_id,
                            table.c.res == res,
                            table.c.dim == DIM_PAYLOAD,
                            table.c.period_s.in_(at),
                        )
                    ):
                        sums: dict[int, int] = {}
                        add_packed(sums, body)
                        cats = self._categorize(conn, classifier, sums, new_keys)
                        rows.append((subject_id, res, DIM_CATEGORY, period_s, pack(cats, version)))
                    conn.execute(
                        delete(table).where(
                            kind.subject == subject_id,
                            table.c.res == res,
                            table.c.dim == DIM_CATEGORY,
                            table.c.period_s.in_(at),
                        )
                    )
                self.db.bulk_insert(conn, table, columns, rows)
                written += len(rows)
            with self._lock:
                self._key_ids.update(new_keys)
        with self.db.write() as conn:
            _lock_subject(conn, kind, subject_id)
            if rules_version(self.rules_of(conn, kind, subject_id)) == version:
                conn.execute(
                    delete(table).where(kind.subject == subject_id, table.c.res == RES_STATE)
                )
                self.db.bulk_insert(
                    conn,
                    table,
                    columns,
                    [(subject_id, RES_STATE, DIM_CATEGORY, 0, msgpack.packb(version))],
                )
        return written

    def _ids(
        self, conn: Connection, dim: int, sums: dict[Any, int], new_keys: dict[tuple[str, str], int]
    ) -> dict[int, int]:
        if dim != DIM_APP:
            return sums
        return {self._key_id(conn, "app", k, new_keys): ms for k, ms in sums.items()}

    def retime(self, conn: Connection, org_id: int) -> int:
        """After the organization's time zone changed (in this transaction): drop
        its devices' and people's day rows and mark one hour of every new local
        day that has data, so refreshes rebuild the days in the new zone.
        Returns the number of marks."""
        tz = zone(conn.execute(select(orgs.c.timezone).where(orgs.c.id == org_id)).scalar_one())
        marked = 0
        for kind, owner in ((DEVICE, devices), (PERSON, people)):
            subject_ids = conn.execute(select(owner.c.id).where(owner.c.org_id == org_id))
            table = kind.rollups
            for subject_id in subject_ids.scalars().all():
                _lock_subject(conn, kind, subject_id)
                conn.execute(
                    delete(table).where(kind.subject == subject_id, table.c.res == RES_DAY)
                )
                first_hour: dict[int, int] = {}
                for (h,) in conn.execute(
                    select(table.c.period_s).where(
                        kind.subject == subject_id,
                        table.c.res == RES_HOUR,
                        table.c.dim == DIM_APP,
                    )
                ):
                    first_hour.setdefault(periods.day_of(tz, h * 1000)[0], h)
                _mark(conn, kind, subject_id, sorted(first_hour.values()))
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
    ) -> tuple[list[tuple[int, int, int]], Payloads]:
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
    ) -> dict[int, tuple[list[tuple[int, int, int]], Payloads]]:
        """:meth:`active` for many devices with one read of their events."""
        streams, data = self.streams(conn, refs, start_ms, end_ms)
        return {
            device: (active_of(st, data, start_ms, end_ms), data) for device, st in streams.items()
        }

    def streams(
        self, conn: Connection, refs: dict[int, list[BucketRef]], start_ms: int, end_ms: int
    ) -> tuple[dict[int, Streams], Payloads]:
        """Each device's raw streams around the window, with one read; and the payloads."""
        by_bucket = spans(conn, [r for rs in refs.values() for r in rs], start_ms, end_ms)
        data = self.data(conn, {d for ss in by_bucket.values() for *_, d in ss})
        out = {}
        for device, device_refs in refs.items():

            def of(btype: str, device_refs: list[BucketRef] = device_refs) -> list[Any]:
                return [sp for r in device_refs if r.type == btype for sp in by_bucket[r.id]]

            afk = [(s, e, str(data[d].get("status"))) for s, e, d in of(AFK_TYPE)]
            out[device] = Streams(of(FOCUS_TYPE), afk, of(WEB_TAB_TYPE))
        return out, data

    def merged(
        self, conn: Connection, refs: dict[int, list[BucketRef]], start_ms: int, end_ms: int
    ) -> tuple[list[tuple[int, int, int]], Payloads]:
        """Active spans of one subject: one device's, or a person's devices merged.
        Where two devices were active at once the time counts once, for the
        activity that started most recently ("latest start wins", as within one
        stream)."""
        streams, data = self.streams(conn, refs, start_ms, end_ms)
        per_device = [active_of(st, data, start_ms, end_ms) for st in streams.values()]
        if len(per_device) == 1:
            return per_device[0], data
        return flatten(sp for spans_ in per_device for sp in spans_), data

    def active_by_subject(
        self, conn: Connection, kind: Kind, subject_ids: Sequence[int], start_ms: int, end_ms: int
    ) -> dict[int, tuple[list[tuple[int, int, int]], Payloads]]:
        """:meth:`merged` for several subjects."""
        out = {}
        for subject_id in subject_ids:
            refs = subject_buckets(conn, kind, subject_id)
            if refs:
                out[subject_id] = self.merged(conn, refs, start_ms, end_ms)
        return out

    def data(self, conn: Connection, keys: set[int]) -> Payloads:
        """Payloads by key (see ``tab_key``), through a bounded cache shared by
        reports and refreshes."""
        ids = {part for k in keys for part in key_parts(k) if part}
        with self._lock:
            if len(self._data) > 200_000:
                self._data.clear()
            load_data(conn, ids, self._data)
            out = Payloads((i, self._data[i]) for i in ids)
        for k in keys:
            _ = out[k]  # pairs are made here, so that a missing part fails now
        return out


# The dimensions whose day rows are sums of hour rows (category rows are
# classified from the payload rows instead).
_SUMMED = (DIM_APP, DIM_PAYLOAD)


class _Computed(NamedTuple):
    tz: str
    devices: list[int]  # the subject's devices when computed
    hours: dict[tuple[int, int], dict[Any, int]]  # (hour_s, dim) -> key -> ms
    days: list[tuple[int, int]]  # local days touched, [start_ms, end_ms)
    edges: dict[tuple[int, int], dict[Any, int]]  # (day_s, dim) -> key -> ms
    # The subject's category rules when computed: looked up here, in the read
    # transaction, not under the write lock; rows are stamped with its version,
    # so a rule change meanwhile only makes them out of date, never wrong.
    classifier: Classifier


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


def subject_buckets(conn: Connection, kind: Kind, subject_id: int) -> dict[int, list[BucketRef]]:
    """The buckets of a device, or of each device of a person."""
    if kind is DEVICE:
        return {subject_id: device_buckets(conn, subject_id)}
    device_ids = conn.execute(
        select(device_people.c.device_id)
        .where(device_people.c.person_id == subject_id)
        .order_by(device_people.c.device_id)
    ).scalars()
    return {d: device_buckets(conn, d) for d in device_ids}


def subject_timezone(conn: Connection, kind: Kind, subject_id: int) -> str:
    if kind is DEVICE:
        return device_timezone(conn, subject_id)
    return str(
        conn.execute(
            select(orgs.c.timezone)
            .select_from(people.join(orgs, orgs.c.id == people.c.org_id))
            .where(people.c.id == subject_id)
        ).scalar_one()
    )


def _lock_subject(conn: Connection, kind: Kind, subject_id: int) -> None:
    if conn.dialect.name == "postgresql":
        # Serialise refreshes of one subject (background, reports, other server
        # processes); SQLite's write transactions are serial already.
        conn.execute(
            text("SELECT pg_advisory_xact_lock(:space, :k)"),
            {"space": kind.lock_space, "k": subject_id},
        )


def device_timezone(conn: Connection, device_id: int) -> str:
    return str(
        conn.execute(
            select(orgs.c.timezone)
            .select_from(devices.join(orgs, orgs.c.id == devices.c.org_id))
            .where(devices.c.id == device_id)
        ).scalar_one()
    )


def mark_dirty(db: Database, conn: Connection, device_id: int, hours: Iterable[int]) -> None:
    """Mark a device's hours, and the same hours of the person using it, for
    recomputation."""
    del db  # kept for the callers' convenience; the connection knows its dialect
    hour_list = sorted(hours)
    _mark(conn, DEVICE, device_id, hour_list)
    person_id = conn.execute(
        select(device_people.c.person_id).where(device_people.c.device_id == device_id)
    ).scalar()
    if person_id is not None:
        _mark(conn, PERSON, int(person_id), hour_list)


def mark_person_hours_of(conn: Connection, person_id: int, device_id: int) -> int:
    """A person gained or lost a device: mark the hours that device has data in,
    rolled up or still waiting to be (its own marks)."""
    rolled = conn.execute(
        select(rollups.c.period_s).where(
            rollups.c.device_id == device_id, rollups.c.res == RES_HOUR, rollups.c.dim == DIM_APP
        )
    ).scalars()
    waiting = conn.execute(
        select(rollup_dirty.c.hour_s).where(rollup_dirty.c.device_id == device_id)
    ).scalars()
    hour_list = sorted({int(h) for h in rolled} | {int(h) for h in waiting})
    _mark(conn, PERSON, person_id, hour_list)
    return len(hour_list)


def _mark(conn: Connection, kind: Kind, subject_id: int, hours: list[int]) -> None:
    # A fresh random gen, not a counter: a counter restarts when a refresh
    # deletes the mark, and a refresh that read the old mark would then
    # mistake the new one for it (see ``Rollups._store``).
    gen = secrets.randbits(62)
    dialect: Any = sqlite if conn.dialect.name == "sqlite" else postgresql
    stmt: Any = dialect.insert(kind.dirty)
    stmt = stmt.on_conflict_do_update(
        index_elements=[kind.dirty_subject, kind.dirty.c.hour_s],
        set_={"gen": stmt.excluded.gen},
    )
    name = kind.dirty_subject.name
    rows = [{name: subject_id, "hour_s": h, "gen": gen} for h in hours]
    for chunk in _chunks(rows, 5000):
        conn.execute(stmt, list(chunk))


def _runs(hours: Iterable[int]) -> list[tuple[int, int]]:
    """Contiguous runs of hour starts, as [start, end) in seconds."""
    runs: list[tuple[int, int]] = []
    for h in sorted(hours):
        if runs and runs[-1][1] == h:
            runs[-1] = (runs[-1][0], h + HOUR_S)
        else:
            runs.append((h, h + HOUR_S))
    return runs


def _delete_periods(
    conn: Connection, kind: Kind, subject_id: int, res: int, periods: Sequence[int]
) -> None:
    table = kind.rollups
    for chunk in _chunks(periods, 500):
        conn.execute(
            delete(table).where(
                kind.subject == subject_id,
                table.c.res == res,
                # Every dim named, so the primary key serves the lookup.
                table.c.dim.in_(DIMS),
                table.c.period_s.in_(chunk),
            )
        )


def _chunks(seq: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for i in range(0, len(seq), size):
        yield seq[i : i + size]
