"""The store skips alembic for a database at the newest migration: that newest revision,
read from the migration files' names, must be alembic's own head."""
from __future__ import annotations

from pathlib import Path

from alembic.script import ScriptDirectory

from dev8.store.db import Database, alembic_config, newest_revision


def test_the_newest_migration_file_is_alembics_head() -> None:
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head == newest_revision()


def test_a_database_at_the_newest_revision_is_left_alone_and_a_new_one_migrated(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'dev8.db'}")
    assert db.current_revision() is None  # a new database: no version table yet
    db.upgrade()
    assert db.current_revision() == newest_revision()
    db.upgrade()  # at head: nothing to do (and no alembic loaded for it)
    assert db.current_revision() == newest_revision()
    db.engine.dispose()
