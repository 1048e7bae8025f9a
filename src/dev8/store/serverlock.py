"""One server per SQLite database: a second `dev8 server` on the same file is refused.

Several servers share a database only on PostgreSQL (core.leases); two on one SQLite file
would both reconcile every environment. The lock is an advisory ``flock`` on a file beside
the database, held for the server's life and released by the kernel when it exits, however
it exits (a SIGKILL leaves no stale lock).
"""
from __future__ import annotations

import fcntl
import os

from sqlalchemy import make_url

from dev8.store.opening import StartupError

_held: list[int] = []  # the open lock files: closing one would release its lock


def sqlite_server_pid(url: str) -> int | None:
    """The pid of the server holding this SQLite database's lock, or None (none runs)."""
    path = make_url(url).database if url.startswith("sqlite") else None
    if not path or not os.path.exists(f"{path}.server-lock"):
        return None
    fd = os.open(f"{path}.server-lock", os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return None  # free: nobody serves it
    except BlockingIOError:
        try:
            return int(os.pread(fd, 32, 0).decode().strip())
        except ValueError:
            return 0
    finally:
        os.close(fd)


def lock_sqlite(url: str) -> None:
    """Take the SQLite database's server lock, or raise StartupError saying who holds it.
    Does nothing for another database."""
    if not url.startswith("sqlite"):
        return
    path = make_url(url).database
    if not path or path == ":memory:" or path.startswith("file:"):
        return
    lock = f"{path}.server-lock"
    os.makedirs(os.path.dirname(os.path.abspath(lock)), mode=0o700, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            who = f" (pid {int(os.pread(fd, 32, 0).decode().strip())})"
        except (OSError, ValueError):
            who = ""
        os.close(fd)
        raise StartupError(f"another dev8 server{who} is serving the SQLite database {path}: a SQLite database "
                           "serves one server. Stop that one, or run several servers on one PostgreSQL database "
                           "(DEV8_DATABASE_URL; README: Several servers)") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    _held.append(fd)
