"""Engine and sessions; schema upgrades with Alembic at start."""
from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import create_engine, event, exc, make_url
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).with_name("migrations")
# The key of the PostgreSQL advisory lock that one migration at a time holds: replicas of a
# Deployment start together, and two upgrades of one fresh database would both create
# alembic_version. Any 64-bit number no other program uses on dev8's database will do.
MIGRATION_LOCK = 0x64657638  # "dev8"


def newest_revision() -> str:
    """The newest migration's revision: migrations are named NNNN_what.py with revision NNNN
    (tests/unit checks this against alembic's own idea of the head)."""
    return max(p.name.split("_", 1)[0] for p in (MIGRATIONS / "versions").glob("[0-9][0-9][0-9][0-9]_*.py"))


def alembic_config(url: str) -> Config:
    from alembic.config import Config
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def _sqlite_pragmas(dbapi_conn: Any, _record: object) -> None:
    """Per connection (cheap, no lock). WAL mode belongs to the file and is set once
    (_private_sqlite_file): asking for it on every new connection takes a lock each time.
    In WAL mode, synchronous=NORMAL is durable across crashes of dev8 (a power cut may
    lose the last commits, never consistency) and spares an fsync per commit."""
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _private_sqlite_file(url: str) -> None:
    """Create (or narrow) a SQLite database file as 0600 before SQLite opens it (SQLite
    gives its -wal and -shm files the database file's mode, so they are private too), in
    WAL mode."""
    path = make_url(url).database if url.startswith("sqlite") else None
    if not path or path == ":memory:" or path.startswith("file:"):
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.close(fd)
    with contextlib.closing(sqlite3.connect(path, timeout=10)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")  # stored in the file: every connection uses it
    for name in (path, f"{path}-wal", f"{path}-shm"):
        with contextlib.suppress(FileNotFoundError):
            if os.stat(name).st_mode & 0o077:
                os.chmod(name, 0o600)


class Database:
    def __init__(self, url: str, *, threads: int = 16) -> None:
        """``threads``: how many threads may use the store at once; each gets a connection
        without waiting (SQLite keeps them all open; a server database keeps ten and closes
        the rest after use), and a thread that still finds none gives up after
        ``pool_timeout`` instead of queueing for long."""
        self.url = url
        _private_sqlite_file(url)
        if url.startswith("sqlite"):
            # A local file: connections are cheap to keep (opening one runs the pragmas
            # below) and never go stale, so no ping before each use.
            kwargs: dict = {"pool_size": threads, "max_overflow": 0, "pool_timeout": 10,
                            "connect_args": {"check_same_thread": False, "timeout": 10}}
        else:
            kwargs = {"pool_pre_ping": True, "pool_size": min(10, threads), "max_overflow": max(0, threads - 10),
                      "pool_timeout": 10}
        self.engine: Engine = create_engine(url, **kwargs)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    def upgrade(self) -> None:
        """To the newest schema; a database already there is left alone without loading
        alembic (a quarter of a second on every `dev8 admin` command)."""
        if self.current_revision() == newest_revision():
            return
        self.migrate("head")

    def current_revision(self) -> str | None:
        try:
            with self.engine.connect() as conn:
                return conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
        except exc.DBAPIError:  # no such table: a new database
            return None

    def migrate(self, revision: str, *, down: bool = False) -> None:
        """Upgrade (or, ``down``, downgrade) the schema to ``revision`` in one transaction.
        On SQLite, altering a column re-creates its table, and dropping the old one would
        delete through ON DELETE CASCADE every row that refers to it (an environment's
        sealed key, its events): foreign keys are off while the migration runs, then checked.
        On PostgreSQL, one server migrates at a time (a transaction-scoped advisory lock;
        this or any lock the migration waits for fails it after two minutes); alembic reads
        the version after the lock, so a replica that waited finds the schema already there
        and does nothing."""
        sqlite = self.url.startswith("sqlite")
        with self.engine.connect() as conn:
            if sqlite:  # a no-op inside a transaction: before it begins
                conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
                conn.commit()
            try:
                with conn.begin():
                    if conn.dialect.name == "postgresql":
                        conn.exec_driver_sql("SET LOCAL lock_timeout = '120s'")
                        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
                    cfg = alembic_config(self.url)
                    cfg.attributes["connection"] = conn
                    from alembic import command
                    (command.downgrade if down else command.upgrade)(cfg, revision)
                    if sqlite:
                        broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                        if broken:
                            raise RuntimeError(f"the migration to {revision} left rows that refer to nothing: "
                                               f"{broken[:5]}")
            finally:
                if sqlite:
                    conn.exec_driver_sql("PRAGMA foreign_keys=ON")
                    conn.commit()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on any exception."""
        with self.sessions() as s:
            try:
                yield s
                s.commit()
            except BaseException:
                s.rollback()
                raise

    def dispose(self) -> None:
        self.engine.dispose()
