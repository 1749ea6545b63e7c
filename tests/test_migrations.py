"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""
from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import SQLModel

import storage.models  # noqa: F401
from storage import Store


def test_migrations_match_models(db_url):
    store = Store(db_url)
    store.upgrade()
    with store.db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    store.close()
    assert diff == []


def test_upgrade_twice_is_a_no_op(sqlite_url):
    store = Store(sqlite_url)
    store.upgrade()
    store.upgrade()
    from storage.migrate import current

    assert current(store.db) == "0001"
