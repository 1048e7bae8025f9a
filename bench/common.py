"""Shared set-up for the benchmarks: a real dev8 server and user (same helpers as the tests)."""
from __future__ import annotations

import statistics
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from collections.abc import Iterator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support import Dev8Server, User  # noqa: E402


@contextmanager
def dev8_server(extra_env: dict[str, str] | None = None) -> Iterator[tuple[Dev8Server, User]]:
    with tempfile.TemporaryDirectory(prefix="dev8-bench-") as root:
        server = Dev8Server(Path(root) / "server", extra_env=extra_env).start()
        try:
            yield server, User(server, "bench@example.com", Path(root) / "user")
        finally:
            server.kill()
            server.cleanup_docker()


def control_key(server: Dev8Server, env_name: str) -> bytes:
    """The environment's control-plane private key, read from the store as an operator can."""
    from sqlalchemy import select

    from dev8.core.crypto import Keyring
    from dev8.core.secrets import open_env_key
    from dev8.store.db import Database
    from dev8.store.models import Environment
    db = Database(server.database_url or f"sqlite:///{server.data_dir / 'dev8.db'}")
    with db.session() as s:
        env = s.scalar(select(Environment).where(Environment.name == env_name))
        key = open_env_key(s, Keyring.load_or_create(server.data_dir), env.id)
    db.dispose()
    return key


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def report(title: str, rows: list[tuple[str, float, str]]) -> None:
    print(f"\n{title}")
    for label, value, unit in rows:
        print(f"  {label:<44} {value:10.3f} {unit}")
