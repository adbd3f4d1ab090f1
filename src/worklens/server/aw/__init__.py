"""ActivityWatch's REST API over an organization's data: the read side, query2,
export and import. ``server/api/aw.py`` is the router; this package is the
mapping between the two data models, without HTTP.

How WorkLens data looks through the AW API (decisions, in one place):

* **Bucket ids.** A bucket's AW id is its name (unique per device). Where
  several devices of the organization have a bucket of the same name, the
  bucket created first keeps the plain name and the later ones are
  ``"<name>@<device id>"`` (plus ``".<bucket row id>"`` in the freak case that
  this is already another bucket's name), so a new device or import never
  renames an existing id (deleting the first one does). Another organization's
  buckets do not exist for the caller. ``hostname`` is the device's hostname.
* **Event ids** are the stored event id (16 bytes) as 32 hex digits.
* **Streams WorkLens interprets** (types ``currentwindow`` and ``afkstatus``,
  the ones reports read) are served as WorkLens reads them: overlaps resolved
  by "latest start wins" (``timeline.intervals.flatten``), so an event partly
  overridden by a later one is served as its visible piece(s), each with the
  event's id. The agent's afk events overlap by design (going afk is dated back
  to the last input); served raw, AW clients would count that overlap as
  active. Zero-length events are served as they are. Buckets of other types
  are served as stored (AW allows overlaps there).
* **Presence vocabulary.** WorkLens stores ``{"status": "active"}`` where AW
  says ``"not-afk"``: afk buckets are served with ``"not-afk"``, and imports
  store ``"not-afk"`` as ``"active"``, so imported AW data counts in reports.
* **Ranges.** ``start``/``end`` cut events to the range (as aw-server-rust's
  event reads and query2's ``query_bucket`` do); newest first.
* **Rollup hook.** The canonical "time per app" (or per title) query over one
  device's only window and afk buckets is answered from rollups through
  ``analytics.time_report`` (see :mod:`.source` for exactly when, and for the
  timestamp of merged events).
"""

from worklens.server.aw.buckets import AwBucket, bucket_json, extents, org_buckets
from worklens.server.aw.events import iter_events
from worklens.server.aw.source import QUERY_LIMITS, OrgSource
from worklens.server.aw.transfer import BadImport, export_chunks, import_buckets

__all__ = [
    "QUERY_LIMITS",
    "AwBucket",
    "BadImport",
    "OrgSource",
    "bucket_json",
    "export_chunks",
    "extents",
    "import_buckets",
    "iter_events",
    "org_buckets",
]
