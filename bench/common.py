"""Shared set-up for the benchmarks: a real dev8 server and user (same helpers as the tests)."""
from __future__ import annotations

import json
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support import Dev8Server, User  # noqa: E402


@contextmanager
def dev8_server(extra_env: dict[str, str] | None = None,
                wrap: list[str] | None = None) -> Iterator[tuple[Dev8Server, User]]:
    # `timeout`/`kill` send SIGTERM, whose default skips `finally`: exit through it instead, so
    # a stopped benchmark still takes its server and containers down.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    with tempfile.TemporaryDirectory(prefix="dev8-bench-") as root:
        server = Dev8Server(Path(root) / "server", extra_env=extra_env, wrap=wrap).start()
        try:
            yield server, User(server, "bench@example.com", Path(root) / "user")
        finally:
            server.kill(check_loop=False)  # a benchmark measures load; the tests guard the loop
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


def wait_ready(client: httpx.Client, name: str, after: int = 0) -> None:
    """Follow the environment's event stream (``client``: the user's API client) to `ready`
    after event ``after``; a failed or degraded step stops the benchmark."""
    with client.stream("GET", f"/environments/{name}/events", params={"after": after},
                       timeout=httpx.Timeout(30, read=None)) as resp:
        for line in resp.iter_lines():
            if line.startswith("data:"):
                ev = json.loads(line[5:])
                if ev["status"] in ("error", "warning"):
                    raise RuntimeError(f"{ev['step']}: {ev['message']}")
                if ev["step"] == "ready":
                    return


def create_stop_start(client: httpx.Client, name: str, between: Callable[[], None] = lambda: None
                      ) -> tuple[float, float]:
    """Wall times of create → ready and, after a stop, start → ready, through the API and
    its event stream; ``between`` runs after the create (what the caller reads of it)."""
    t0 = time.perf_counter()
    client.post("/environments", json={"name": name}).raise_for_status()
    wait_ready(client, name)
    created = time.perf_counter() - t0
    between()
    client.post(f"/environments/{name}/stop").raise_for_status()
    while client.get(f"/environments/{name}").json()["state"] != "stopped":
        time.sleep(0.1)
    last = client.get(f"/environments/{name}/events", params={"follow": "false"}).json()[-1]["id"]
    t0 = time.perf_counter()
    client.post(f"/environments/{name}/start").raise_for_status()
    wait_ready(client, name, last)
    return created, time.perf_counter() - t0


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def report(title: str, rows: list[tuple[str, float, str]]) -> None:
    print(f"\n{title}")
    for label, value, unit in rows:
        print(f"  {label:<44} {value:10.3f} {unit}")


SSH_OPTS = ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "IdentitiesOnly=yes"]


def published_ssh_port(server: Dev8Server, env_name: str) -> int:
    """The loopback port the runtime published the environment's sshd on (the baseline
    the benchmarks compare dev8's paths against)."""
    import docker
    containers = docker.from_env().containers.list(filters={"label": f"dev8.installation={server.installation()}"})
    [c] = [c for c in containers if c.name.endswith(f"-{env_name}")]
    return int(c.attrs["NetworkSettings"]["Ports"]["22/tcp"][0]["HostPort"])


def control_key_file(server: Dev8Server, env_name: str, directory: Path) -> Path:
    keyfile = directory / f"{env_name}.key"
    keyfile.touch(mode=0o600)
    keyfile.write_bytes(control_key(server, env_name))
    return keyfile


def pctl(xs: list[float], q: float) -> float:
    return statistics.quantiles(xs, n=100)[int(q) - 1] if len(xs) > 1 else xs[0]
