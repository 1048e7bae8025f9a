"""The control plane's SSH connections to environments: one place opens, pins and pools them.

Everything the control plane does inside an environment (configure, health, ports, the
SSH gateway's sessions, browser tunnels, terminals) runs over one pooled connection per
environment, made with its control key and checked against its pinned host key. A lock
per environment serializes connecting to *that* environment only, so an environment
whose sshd hangs never delays another.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

import asyncssh

from dev8.core import envssh
from dev8.core.crypto import Keyring, KeyServiceUnavailable
from dev8.core.secrets import read_env_key
from dev8.core.states import State
from dev8.store.db import Database
from dev8.store.models import Environment

log = logging.getLogger("dev8.connections")
CONNECT_TIMEOUT = 10.0
REACHABLE_STATES = (State.RUNNING, State.STARTING, State.ERROR, State.UNREACHABLE)


class Unreachable(Exception):
    """The environment is not running, or its sshd did not let us in; the message says
    which, fit to show its owner."""


class HostKeyMismatch(Unreachable):
    """The endpoint presented a host key other than the pinned one: refused, not retried."""


class KeyUnavailable(Unreachable):
    """dev8's key to the environment cannot be opened now (the key service is down or
    refusing): not the environment's fault, not retried in a tight loop."""

    PREFIX = "dev8 cannot open its key to the environment now"


@dataclass(frozen=True)
class Endpoint:
    """Where one instance of an environment is reached, and the host key pinned for it."""
    env_id: str
    host: str
    port: int
    host_key: str
    instance_id: str

    @classmethod
    def of(cls, env: Environment) -> Endpoint:
        """The endpoint the store records for ``env`` while its instance may run; Unreachable
        otherwise. An environment whose configure failed, that is being reconfigured, or
        whose runtime does not answer stays reachable at its recorded endpoint (its owner can
        still get in to see why); the pinned host key keeps that safe. One whose host key
        was refused is not offered at all."""
        key_refused = env.observed_state == State.ERROR and "host key" in (env.status_message or "").replace("-", " ")
        if (env.observed_state not in REACHABLE_STATES or key_refused or not env.ssh_host or not env.ssh_port
                or not env.host_key or not env.instance_id):
            if env.observed_state == State.ERROR and env.status_message:
                raise Unreachable(f"environment {env.name}: {env.status_message}")
            raise Unreachable(f"environment {env.name} is {env.observed_state}; start it with `dev8 start {env.name}`")
        return cls(env.id, env.ssh_host, env.ssh_port, env.host_key, env.instance_id)


class EnvConnections:
    def __init__(self, db: Database, keyring: Keyring, *, connect_timeout: float = CONNECT_TIMEOUT) -> None:
        self.db, self.keyring, self.connect_timeout = db, keyring, connect_timeout
        self._conns: dict[str, tuple[Endpoint, asyncssh.SSHClientConnection]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._on_drop: list[Callable[[str], None]] = []

    def on_drop(self, callback: Callable[[str], None]) -> None:
        """Call ``callback(env_id)`` whenever an environment's pooled connection goes away
        (so what was built on it, e.g. forwarded sockets, is dropped with it)."""
        self._on_drop.append(callback)

    async def get(self, endpoint: Endpoint, *, timeout: float | None = None) -> asyncssh.SSHClientConnection:
        """The pooled connection to ``endpoint`` (shared: do not close it). A connection to
        another instance, address or host key of the same environment is replaced."""
        if self.is_open(endpoint):
            return self._conns[endpoint.env_id][1]
        lock = self._locks.setdefault(endpoint.env_id, asyncio.Lock())
        async with lock:  # this environment only
            if self.is_open(endpoint):
                return self._conns[endpoint.env_id][1]
            self.drop(endpoint.env_id)
            try:
                key = await asyncio.to_thread(read_env_key, self.db, self.keyring, endpoint.env_id)
            except KeyServiceUnavailable as exc:
                raise KeyUnavailable(f"{KeyUnavailable.PREFIX}: {exc}") from None
            try:
                conn = await envssh.connect(endpoint.host, endpoint.port, key, endpoint.host_key,
                                            timeout=timeout or self.connect_timeout)
            except asyncssh.HostKeyNotVerifiable as exc:
                log.warning("environment %s presented a host key other than the pinned one: %s", endpoint.env_id, exc)
                raise HostKeyMismatch("the environment's SSH host key does not match the pinned one; refused") from None
            except TimeoutError:
                raise Unreachable(f"its sshd at {endpoint.host}:{endpoint.port} did not answer in time") from None
            except (OSError, asyncssh.Error) as exc:
                raise Unreachable(f"cannot connect to its sshd at {endpoint.host}:{endpoint.port}: {exc}") from None
            self._conns[endpoint.env_id] = (endpoint, conn)
            asyncio.ensure_future(conn.wait_closed()).add_done_callback(
                lambda _f: self._forget(endpoint.env_id, conn))
            return conn

    async def wait(self, endpoint: Endpoint, *, deadline: float) -> asyncssh.SSHClientConnection:
        """Until a login succeeds (sshd is up and has our key), retrying until ``deadline``
        (event-loop time). A host key that does not match is refused at once."""
        loop = asyncio.get_running_loop()
        last: Exception | None = None
        while loop.time() < deadline:
            try:
                return await self.get(endpoint, timeout=max(0.5, min(self.connect_timeout, deadline - loop.time())))
            except (HostKeyMismatch, KeyUnavailable):
                raise
            except Unreachable as exc:
                last = exc
                await asyncio.sleep(0.05)
        raise TimeoutError(f"sshd did not accept the control key in time ({last})")

    def is_open(self, endpoint: Endpoint) -> bool:
        """Whether a live pooled connection to exactly ``endpoint`` exists (it closes by
        itself when the instance dies, which makes it the cheapest liveness probe)."""
        cached = self._conns.get(endpoint.env_id)
        return cached is not None and cached[0] == endpoint and not cached[1].is_closed()

    def drop(self, env_id: str) -> None:
        """Close and forget ``env_id``'s connection (stopped, deleted, moved)."""
        cached = self._conns.get(env_id)
        if cached is not None:
            self._forget(env_id, cached[1])

    def _forget(self, env_id: str, conn: asyncssh.SSHClientConnection) -> None:
        cached = self._conns.get(env_id)
        if cached is None or cached[1] is not conn:
            return
        del self._conns[env_id]
        conn.close()
        for callback in self._on_drop:
            callback(env_id)

    def close(self) -> None:
        """At shutdown: close every connection, telling no one (nothing is to follow)."""
        self._on_drop.clear()
        for env_id in list(self._conns):
            self.drop(env_id)
