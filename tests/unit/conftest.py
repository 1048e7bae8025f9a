"""Fixtures of the unit tests that need a store."""
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from dev8.store.db import Database


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    """A migrated SQLite file of the test's own."""
    database = Database(f"sqlite:///{tmp_path / 'dev8.db'}")
    database.upgrade()
    yield database
    database.dispose()


@pytest.fixture
def s(db: Database) -> Iterator[Session]:
    """A session on the test's own store."""
    with db.session() as session:
        yield session
