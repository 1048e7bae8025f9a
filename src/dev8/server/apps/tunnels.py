"""SSH tunnels from the control plane to ports inside environments, for the browser proxy.

Per port a local UNIX socket forwarded over the environment's pooled connection
(``direct-tcpip`` to 127.0.0.1:PORT inside the environment). The sockets live in a private
(0700) temporary directory of this server process (a short path: UNIX socket paths are
limited to ~107 bytes), so only dev8 itself can use them and nothing is ever exposed on a
TCP port of the host. They go away with the connection they were built on.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import ssl
import tempfile
from pathlib import Path

import asyncssh
import httpx

from dev8.core.connections import Endpoint, EnvConnections
from dev8.store.models import Environment

NO_TLS = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # trusts no one: TLS through a tunnel socket would fail


class Tunnels:
    def __init__(self, connections: EnvConnections) -> None:
        self.connections = connections
        self.run_dir = Path(tempfile.mkdtemp(prefix="dev8-tunnels-"))  # created 0700
        self._sockets: dict[tuple[str, int], tuple[asyncssh.SSHClientConnection, str, asyncssh.SSHListener]] = {}
        self._locks: dict[tuple[str, int], asyncio.Lock] = {}
        self._http: dict[str, httpx.AsyncClient] = {}
        connections.on_drop(self._drop_env)

    async def socket_for(self, env: Environment, port: int) -> str:
        """Path of a UNIX socket that reaches 127.0.0.1:``port`` inside ``env``; raises
        connections.Unreachable when it cannot be reached."""
        conn = await self.connections.get(Endpoint.of(env))
        key = (env.id, port)
        cached = self._sockets.get(key)
        if cached is not None and cached[0] is conn:
            return cached[1]
        async with self._locks.setdefault(key, asyncio.Lock()):  # this port of this environment only
            cached = self._sockets.get(key)
            if cached is not None and cached[0] is conn:
                return cached[1]
            self._drop_socket(key)
            path = str(self.run_dir / f"{env.id[:16]}-{port}.sock")
            if os.path.exists(path):
                os.unlink(path)
            listener = await conn.forward_local_path_to_port(path, "127.0.0.1", port)
            self._sockets[key] = (conn, path, listener)
            return path

    async def http_client(self, env: Environment, port: int) -> httpx.AsyncClient:
        """A pooled HTTP client to 127.0.0.1:``port`` inside ``env`` (kept with its tunnel:
        building a client per request costs far more than the request)."""
        path = await self.socket_for(env, port)
        client = self._http.get(path)
        if client is None:
            # Plain HTTP over the tunnel's socket: no proxy from the environment variables, and
            # an empty TLS context (httpx loads the system CA bundle for a default one, 100 ms
            # and more on the event loop, for a transport that never speaks TLS).
            client = self._http[path] = httpx.AsyncClient(
                transport=httpx.AsyncHTTPTransport(uds=path, verify=NO_TLS), timeout=httpx.Timeout(60, read=None),
                trust_env=False)
        return client

    def _drop_env(self, env_id: str) -> None:
        for key in [k for k in self._sockets if k[0] == env_id]:
            self._drop_socket(key)

    def _drop_socket(self, key: tuple[str, int]) -> None:
        cached = self._sockets.pop(key, None)
        if cached is None:
            return
        _conn, path, listener = cached
        listener.close()
        client = self._http.pop(path, None)
        if client is not None:
            asyncio.ensure_future(client.aclose())
        if os.path.exists(path):
            os.unlink(path)

    def close(self) -> None:
        for key in list(self._sockets):
            self._drop_socket(key)
        shutil.rmtree(self.run_dir, ignore_errors=True)
