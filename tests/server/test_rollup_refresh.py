"""Rollup refreshes racing with ingest and with each other never leave stale rows."""

from __future__ import annotations

from sqlalchemy import select

from tests.server.conftest import Server, afk, at, batch, focus
from tests.server.test_ingest_and_report import post, report
from worklens.server.store.rollups import RES_HOUR, Rollups
from worklens.server.store.schema import rollup_dirty, rollups


def marks(server: Server, device_id: int) -> dict[int, int]:
    with server.services.db.read() as conn:
        rows = conn.execute(
            select(rollup_dirty.c.hour_s, rollup_dirty.c.gen).where(
                rollup_dirty.c.device_id == device_id
            )
        ).all()
    return {h: g for h, g in rows}


def hour_rows(server: Server, device_id: int) -> int:
    with server.services.db.read() as conn:
        return len(
            conn.execute(
                select(rollups.c.period_s).where(
                    rollups.c.device_id == device_id, rollups.c.res == RES_HOUR
                )
            ).all()
        )


def test_a_slow_refresh_does_not_overwrite_what_a_newer_one_wrote(server: Server) -> None:
    device_id, token = server.enroll()
    post(server, token, batch(afk(at(0), 3600, "active"), focus(at(0), 600, "code", "a.py")))
    seen = marks(server, device_id)
    assert seen  # the ingest marked the hour dirty

    # A refresh reads the hour as it is now and is slow to store it...
    slow = Rollups(server.services.db)
    with server.services.db.read() as conn:
        stale = slow._compute(conn, device_id, list(seen))
    # ...meanwhile another refresh stores the hour and clears the mark, and new
    # events in the same hour mark it again (a new mark, not the old one).
    assert server.services.rollups.refresh([device_id]) == len(seen)
    post(server, token, batch(focus(at(10), 600, "chromium", "docs")))
    assert set(marks(server, device_id)) == set(seen)
    assert marks(server, device_id) != seen

    with server.services.db.write() as conn:
        stored = slow._store(conn, device_id, seen, stale, {})
    assert stored == 0  # its view was stale: nothing written, the mark stays
    assert set(marks(server, device_id)) == set(seen)

    assert report(server) == {"code": 600.0, "chromium": 600.0}
    assert marks(server, device_id) == {}  # the report brought the hour up to date


def test_a_refresh_of_an_unchanged_hour_stores_it_and_clears_the_mark(server: Server) -> None:
    device_id, token = server.enroll()
    post(server, token, batch(afk(at(0), 7200, "active"), focus(at(50), 1200, "code", "a.py")))
    seen = marks(server, device_id)
    assert len(seen) == 2  # 09:50-10:10 touches two hours
    r = Rollups(server.services.db)
    with server.services.db.read() as conn:
        totals = r._compute(conn, device_id, list(seen))
    with server.services.db.write() as conn:
        assert r._store(conn, device_id, seen, totals, {}) == 2
    assert marks(server, device_id) == {}
    assert hour_rows(server, device_id) == 6  # (app, payload, category) x 2 hours
    assert report(server) == {"code": 1200.0}
