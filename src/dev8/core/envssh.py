"""SSH connections from the control plane into an environment (its one transport)."""
from __future__ import annotations

import asyncio
import json

import asyncssh

ENV_USER = "dev"
# Cheapest for asyncssh (one OpenSSL AEAD call per packet); every OpenSSH has them.
CIPHERS = ["aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "aes128-ctr"]


async def connect(host: str, port: int, private_key_pem: bytes, *, timeout: float = 10) -> asyncssh.SSHClientConnection:
    # The sshd is a container this control plane created, reached on loopback at the
    # port the runtime reported; its host key is generated inside the container.
    return await asyncio.wait_for(
        asyncssh.connect(host, port, username=ENV_USER, client_keys=[asyncssh.import_private_key(private_key_pem)],
                         known_hosts=None, agent_path=None, config=[], keepalive_interval=30,
                         encryption_algs=CIPHERS, window=8 * 1024 * 1024),
        timeout,
    )


async def wait_for_sshd(host: str, port: int, private_key_pem: bytes, *,
                        deadline: float) -> asyncssh.SSHClientConnection:
    """Until an SSH login succeeds (not just the TCP port): sshd is up and has our key.
    Returns that connection; the caller closes it."""
    loop = asyncio.get_running_loop()
    last: Exception | None = None
    while loop.time() < deadline:
        try:
            return await connect(host, port, private_key_pem, timeout=max(0.5, deadline - loop.time()))
        except (OSError, asyncssh.Error, asyncio.TimeoutError) as exc:
            last = exc
            await asyncio.sleep(0.05)
    raise TimeoutError(f"sshd did not accept the control key in time ({last})")


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
