"""Fixtures of the unit tests that need a store."""
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from dev8.store.db import Database


@pytest.fixture
def s(tmp_path: Path) -> Iterator[Session]:
    """A session on a migrated SQLite file of the test's own."""
    db = Database(f"sqlite:///{tmp_path / 'dev8.db'}")
    db.upgrade()
    with db.session() as session:
        yield session
    db.dispose()
