"""SSH tunnels from the control plane to ports inside environments, for the browser proxy.

One SSH connection per environment (its control-plane key), and per port a local UNIX
socket forwarded over it (``direct-tcpip`` to 127.0.0.1:PORT inside the environment). The
sockets live in a private (0700) temporary directory of this server process (a short path:
UNIX socket paths are limited to ~107 bytes), so only dev8 itself can use them and nothing
is ever exposed on a TCP port of the host.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from pathlib import Path

import asyncssh
import httpx

from dev8.core import envssh
from dev8.core.secrets import read_env_key
from dev8.store.db import Database
from dev8.core.crypto import Keyring
from dev8.store.models import Environment


class Tunnels:
    def __init__(self, db: Database, keyring: Keyring) -> None:
        self.db, self.keyring = db, keyring
        self.run_dir = Path(tempfile.mkdtemp(prefix="dev8-tunnels-"))  # created 0700
        self._conns: dict[str, tuple[int, asyncssh.SSHClientConnection]] = {}
        self._sockets: dict[tuple[str, int], tuple[str, asyncssh.SSHListener]] = {}
        self._http: dict[str, httpx.AsyncClient] = {}
        self._lock = asyncio.Lock()

    async def socket_for(self, env: Environment, port: int) -> str:
        """Path of a UNIX socket that reaches 127.0.0.1:``port`` inside ``env``."""
        async with self._lock:
            cached = self._sockets.get((env.id, port))
            if cached is not None and self._conns.get(env.id, (None,))[0] == env.ssh_port:
                return cached[0]
            conn = await self._connection(env)
            path = str(self.run_dir / f"{env.id[:16]}-{port}.sock")
            if os.path.exists(path):
                os.unlink(path)
            listener = await conn.forward_local_path_to_port(path, "127.0.0.1", port)
            self._sockets[(env.id, port)] = (path, listener)
            return path

    async def http_client(self, env: Environment, port: int) -> httpx.AsyncClient:
        """A pooled HTTP client to 127.0.0.1:``port`` inside ``env`` (kept with its tunnel:
        building a client per request costs far more than the request)."""
        path = await self.socket_for(env, port)
        client = self._http.get(path)
        if client is None:
            client = self._http[path] = httpx.AsyncClient(
                transport=httpx.AsyncHTTPTransport(uds=path), timeout=httpx.Timeout(60, read=None))
        return client

    async def connection(self, env: Environment) -> asyncssh.SSHClientConnection:
        """The control plane's SSH connection to ``env`` (shared; do not close it)."""
        async with self._lock:
            return await self._connection(env)

    async def _connection(self, env: Environment) -> asyncssh.SSHClientConnection:
        cached = self._conns.get(env.id)
        if cached is not None and cached[0] == env.ssh_port:
            return cached[1]
        self._forget(env.id)
        assert env.ssh_port is not None
        key = await asyncio.to_thread(read_env_key, self.db, self.keyring, env.id)
        conn = await envssh.connect("127.0.0.1", env.ssh_port, key)
        self._conns[env.id] = (env.ssh_port, conn)
        asyncio.ensure_future(conn.wait_closed()).add_done_callback(lambda _f: self._forget(env.id, conn))
        return conn

    def _forget(self, env_id: str, conn: asyncssh.SSHClientConnection | None = None) -> None:
        cached = self._conns.get(env_id)
        if cached is None or (conn is not None and cached[1] is not conn):
            return
        del self._conns[env_id]
        cached[1].close()
        for key in [k for k in self._sockets if k[0] == env_id]:
            path, listener = self._sockets.pop(key)
            listener.close()
            client = self._http.pop(path, None)
            if client is not None:
                asyncio.ensure_future(client.aclose())
            if os.path.exists(path):
                os.unlink(path)

    def close(self) -> None:
        for env_id in list(self._conns):
            self._forget(env_id)
        shutil.rmtree(self.run_dir, ignore_errors=True)
