"""The migrations create exactly the schema the code declares, on both back ends."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from worklens.server.store import migrate
from worklens.server.store.db import Database
from worklens.server.store.schema import metadata


def test_migrated_database_matches_schema_and_upgrade_is_idempotent(db_url: str) -> None:
    db = Database(db_url)
    try:
        assert migrate.current(db) is None
        migrate.upgrade(db)
        migrate.upgrade(db)  # a second run is a no-op
        assert migrate.current(db) == migrate.head()
        with db.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
        assert diff == []
    finally:
        db.dispose()
