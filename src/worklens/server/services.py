"""The long-lived objects one server process shares between requests."""

from __future__ import annotations

from dataclasses import dataclass, field

from worklens.server.hub import Hub
from worklens.server.live import BusKind, LiveHub
from worklens.server.ratelimit import RateLimiter
from worklens.server.settings import ServerSettings
from worklens.server.store.category_rules import Classifiers
from worklens.server.store.db import Database
from worklens.server.store.ingest import EventWriter
from worklens.server.store.rollups import Rollups


def live_bus(settings: ServerSettings) -> BusKind:
    if settings.live_bus != "auto":
        return settings.live_bus
    if settings.redis_url:
        return "redis"
    return "db" if settings.workers > 1 else "local"


@dataclass
class Services:
    settings: ServerSettings
    db: Database
    writer: EventWriter
    rollups: Rollups
    limiter: RateLimiter
    live: LiveHub
    hub: Hub = field(default_factory=lambda: Hub())
    classifiers: Classifiers = field(default_factory=lambda: Classifiers())

    @classmethod
    def create(cls, settings: ServerSettings) -> Services:
        db = Database(settings.database_url)
        classifiers = Classifiers()
        return cls(
            settings=settings,
            db=db,
            writer=EventWriter(db),
            rollups=Rollups(db, classifiers),
            limiter=RateLimiter(settings.rate_per_second, settings.rate_burst),
            live=LiveHub(
                db,
                live_bus(settings),
                settings.live_poll_s,
                settings.offline_after_s,
                settings.redis_url,
            ),
            classifiers=classifiers,
        )
