"""SSH connections from the control plane into an environment (its one transport)."""
from __future__ import annotations

import asyncio
import json

import asyncssh

from dev8.envimage.dev8_env import USER as ENV_USER

# Cheapest for asyncssh (one OpenSSL AEAD call per packet); every OpenSSH has them.
CIPHERS = ["aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "aes128-ctr"]


def pinned(host_key: str) -> tuple[list[asyncssh.SSHKey], list, list]:
    """asyncssh's known_hosts form trusting exactly ``host_key`` (OpenSSH one-line form)."""
    return [asyncssh.import_public_key(host_key)], [], []


async def connect(host: str, port: int, private_key_pem: bytes, host_key: str, *,
                  timeout: float = 10) -> asyncssh.SSHClientConnection:
    """Log in as the environment's user with its control key, trusting only ``host_key``
    (read from the runtime over an authenticated channel; any other key is refused)."""
    return await asyncio.wait_for(
        asyncssh.connect(host, port, username=ENV_USER, client_keys=[asyncssh.import_private_key(private_key_pem)],
                         known_hosts=pinned(host_key), agent_path=None, config=[],
                         # A pooled connection to an environment that hangs (sshd frozen, host
                         # gone) is given up within ~15 s, failing what waits on it, and the
                         # next use connects afresh under the connect timeout.
                         keepalive_interval=5, keepalive_count_max=3,
                         encryption_algs=CIPHERS, window=8 * 1024 * 1024),
        timeout,
    )


async def wait_banner(host: str, port: int, *, deadline: float, every: float = 0.02) -> None:
    """Until an SSH server at ``host:port`` sends its banner (a proxy in front of it, as
    Docker's, accepts and closes connections before sshd listens); TimeoutError at
    ``deadline`` (event-loop time). Costs the backend nothing: no call to its API."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 2)
            try:
                if (await asyncio.wait_for(reader.read(64), 2)).startswith(b"SSH-"):
                    return
            finally:
                writer.close()
        except (OSError, TimeoutError):
            pass
        if loop.time() > deadline:
            raise TimeoutError(f"no SSH banner at {host}:{port}")
        await asyncio.sleep(every)


async def run_json(conn: asyncssh.SSHClientConnection, command: str, *, input: str | None = None,
                   timeout: float = 60) -> dict:
    """Run a ``dev8-env`` command; its JSON output, or RuntimeError with its stderr."""
    result = await conn.run(command, input=input, check=False, timeout=timeout)
    if result.exit_status != 0:
        raise RuntimeError(f"{command} failed: {str(result.stderr).strip()[-500:]}")
    return json.loads(str(result.stdout))


async def configure(conn: asyncssh.SSHClientConnection, document: dict) -> dict:
    """Push configuration and secrets on stdin to ``dev8-env configure``."""
    return await run_json(conn, "dev8-env configure", input=json.dumps(document))
