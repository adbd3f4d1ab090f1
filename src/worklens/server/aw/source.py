"""The query2 event source over one organization, with the rollup hook.

**The hook** (``answer_plan``) answers the canonical "time per key" pipeline
(:func:`worklens.query2.match_time_per_keys`) from rollups, through
``analytics.time_report`` (day and hour rollups plus raw edges: the same
"focus ∩ not-afk, latest start wins" that the served streams follow), when all
of this holds, and otherwise returns None so query2 evaluates generically:

* the pipeline ends in ``sort_by_duration`` (an unsorted merge lists groups in
  order of first appearance, which rollups do not know);
* the keys are ``["app"]`` or ``["title"]`` (what time_report groups by);
* the window and afk buckets are the ``currentwindow`` and the ``afkstatus``
  bucket of one device, and that device has no other bucket of either type
  (reports merge all of a device's buckets of a type);
* the period is whole milliseconds (storage resolution) after 1970, at most
  ``MAX_RANGE_DAYS`` long.

Each answer event has ``data`` ``{key: value}`` and the summed duration, exact
to the millisecond. Differences from the generic evaluation, by design:

* **timestamp**: the period's start (AW gives the first merged event's start;
  finding it would mean reading raw events, which the hook exists to avoid);
* equal durations are ordered by key (AW: by first appearance);
* a payload without the key counts as ``""`` (AW groups it apart, without the
  key), a value that is not a string as its ``str()``;
* **flood** is not applied: WorkLens's active time does not fill gaps. When
  the window or afk stream has a gap of at most the pulse time (5 s) inside the
  period, the generic ``flood`` would add that gap to a neighbour and the
  hook's total is smaller by it (and AW's flood grows the event after a
  zero-length one lying inside another back over the latter, counting that
  time twice). Streams from the WorkLens agent are contiguous (a new event
  starts where the last one ended) except while no window has focus or the
  agent is down. Tests prove equality on random data without such gaps, and
  on any data for the same pipeline without flood.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from itertools import islice

from worklens.query2 import BucketInfo, Event, Limits, Plan, match_time_per_keys
from worklens.query2.events import datetime_to_us
from worklens.server.analytics.time_report import MAX_RANGE_DAYS, time_report
from worklens.server.aw.buckets import AwBucket, extents, org_buckets
from worklens.server.aw.events import iter_events
from worklens.server.store.buckets import AFK_TYPE, FOCUS_TYPE
from worklens.server.store.db import Database
from worklens.server.store.rollups import Rollups

# query2's own guard, a little tighter on time and memory than its defaults:
# a query runs in a request thread and its events live in memory.
QUERY_LIMITS = Limits(max_seconds=30.0, max_events=5_000_000)
_KEYS = {("app",): "app", ("title",): "title"}
_MAX_RANGE_US = MAX_RANGE_DAYS * 86_400 * 1_000_000


class OrgSource:
    """query2's EventSource over the buckets of one organization; with
    ``device_ids``, only over those devices' buckets (what the caller may see;
    the others do not exist for the query)."""

    def __init__(
        self,
        db: Database,
        rollups: Rollups,
        org_id: int,
        device_ids: frozenset[int] | None = None,
    ) -> None:
        self.db = db
        self.rollups = rollups
        self.org_id = org_id
        self.device_ids = device_ids
        self._buckets: dict[str, AwBucket] | None = None
        self.answered = 0  # plans answered from rollups (for tests and logs)

    def aw_buckets(self) -> dict[str, AwBucket]:
        if self._buckets is None:
            with self.db.read() as conn:
                found = org_buckets(conn, self.org_id)
            # Ids are given over all the organization's buckets, then filtered:
            # a bucket has the same id for every caller who sees it.
            self._buckets = {
                k: b
                for k, b in found.items()
                if self.device_ids is None or b.device_id in self.device_ids
            }
        return self._buckets

    def buckets(self) -> Mapping[str, BucketInfo]:
        return {k: b.info() for k, b in self.aw_buckets().items()}

    def events(
        self, bucket_id: str, start: datetime, end: datetime, limit: int | None
    ) -> Sequence[Event]:
        bucket = self.aw_buckets()[bucket_id]
        with self.db.read() as conn:
            extent = extents(conn, [bucket.pk]).get(bucket.pk)
        if extent is None:
            return []
        # Cut to where the bucket has events: a period of years reads only those.
        lo = max(datetime_to_us(start) // 1000, extent[0])
        hi = min(-(-datetime_to_us(end) // 1000), extent[1] + 1)
        found = iter_events(self.db, bucket, lo, hi, newest_first=False)
        return list(found if limit is None else islice(found, limit))

    def answer_plan(self, plan: Plan) -> list[Event] | None:
        """The rollup hook: see the module docstring for when it answers."""
        m = match_time_per_keys(plan)
        if m is None or not m.sorted_by_duration or m.keys not in _KEYS:
            return None
        aw = self.aw_buckets()
        window, afk = aw.get(m.window_bucket), aw.get(m.afk_bucket)
        if window is None or afk is None or window.device_id != afk.device_id:
            return None
        if (window.type, afk.type) != (FOCUS_TYPE, AFK_TYPE):
            return None
        same_kind = [
            b
            for b in aw.values()
            if b.device_id == window.device_id and b.type in (FOCUS_TYPE, AFK_TYPE)
        ]
        if len(same_kind) != 2:
            return None
        start_us, end_us = datetime_to_us(m.start), datetime_to_us(m.end)
        if start_us < 0 or start_us % 1000 or end_us % 1000 or end_us - start_us > _MAX_RANGE_US:
            return None
        self.answered += 1
        if end_us == start_us:
            return []
        rows = time_report(
            self.db,
            self.rollups,
            self.org_id,
            _KEYS[m.keys],
            start_us // 1000,
            end_us // 1000,
            window.device_id,
        )
        key = m.keys[0]
        return [
            Event.from_us(start_us, start_us + round(r.seconds * 1000) * 1000, {key: r.key})
            for r in rows
        ]
