"""The process behind one environment of the ``fake`` runtime: an asyncssh server.

Run as ``python -m dev8.runtimes.fake_sshd DIR``. It plays the environment image's part
for the core's tests: key-only login as the environment's user with the control key in
``DIR/authorized_keys``, a host key kept in the storage (``DIR/home/.dev8/hostkeys``, as the
image keeps it in the home volume), exec and shell sessions run by ``/bin/sh`` with
``HOME`` = the storage and ``DEV8_RUN_DIR`` = the instance's scratch dir (the image's
tmpfs), ``dev8-env`` on ``PATH``, and ``direct-tcpip`` forwards. Once listening it writes
its port to ``DIR/port``.
"""
from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import asyncssh

from dev8.envimage import dev8_env


def _environment(root: Path) -> dict[str, str]:
    bin_dir = root / "bin"
    return {**{k: v for k, v in os.environ.items() if not k.startswith("DEV8_")},
            "HOME": str(root / "home"), "DEV8_RUN_DIR": str(root / "run"),
            "DEV8_WORKSPACE": str(root / "home" / "workspace"), "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}"}


class _Server(asyncssh.SSHServer):
    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return False

    def connection_requested(self, dest_host: str, dest_port: int, orig_host: str, orig_port: int) -> bool:
        return True  # asyncssh opens the TCP connection itself


async def _run(process: asyncssh.SSHServerProcess, root: Path) -> None:
    command = process.command or "exec /bin/sh -i"
    proc = await asyncio.create_subprocess_exec(
        "/bin/sh", "-c", command, cwd=root / "home", env=_environment(root),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stdin and proc.stdout and proc.stderr
    stdin = proc.stdin

    async def feed() -> None:
        try:
            while True:
                try:
                    data = await process.stdin.read(65536)
                except (asyncssh.TerminalSizeChanged, asyncssh.BreakReceived, asyncssh.SignalReceived):
                    continue  # asyncssh raises these from read(); the shell's input goes on
                if not data:
                    break
                stdin.write(data)
                await stdin.drain()
        except (asyncssh.Error, OSError):
            pass
        finally:
            stdin.close()

    async def pump(source: asyncio.StreamReader, sink: asyncssh.SSHWriter) -> None:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    feeding = asyncio.ensure_future(feed())
    await asyncio.gather(pump(proc.stdout, process.stdout), pump(proc.stderr, process.stderr))
    feeding.cancel()
    process.exit(await proc.wait())


def _host_key(root: Path) -> asyncssh.SSHKey:
    keys = root / "home" / ".dev8" / "hostkeys"
    path = keys / "ssh_host_ed25519_key"
    if not path.exists():
        keys.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = asyncssh.generate_private_key("ssh-ed25519")
        tmp = path.with_suffix(".tmp")
        tmp.touch(mode=0o600)
        tmp.write_bytes(key.export_private_key("openssh"))
        path.with_suffix(".pub").write_bytes(key.export_public_key("openssh"))
        tmp.replace(path)
    return asyncssh.read_private_key(str(path))


async def serve(root: Path) -> None:
    (root / "run").mkdir(mode=0o700, exist_ok=True)
    (root / "home" / "workspace").mkdir(parents=True, exist_ok=True)
    bin_dir = root / "bin"
    bin_dir.mkdir(exist_ok=True)
    helper = bin_dir / "dev8-env"
    helper.write_text(f"#!/bin/sh\nexec {sys.executable} {dev8_env.__file__} \"$@\"\n")
    helper.chmod(0o755)
    server = await asyncssh.create_server(
        _Server, "127.0.0.1", 0, server_host_keys=[_host_key(root)],
        authorized_client_keys=str(root / "authorized_keys"),
        process_factory=lambda p: _run(p, root), encoding=None, allow_scp=False, agent_forwarding=False,
        x11_forwarding=False, line_editor=False)
    port = server.sockets[0].getsockname()[1]
    meta = root / "meta"
    if meta.exists() and '"image": "nosshd/' in meta.read_text():  # an image whose sshd exits at once
        server.close()  # the port stays recorded; nothing answers on it (as a container whose sshd died)
        print("sshd: no hostkeys available -- exiting.", flush=True)
    tmp = root / "port.tmp"
    tmp.write_text(str(port))
    tmp.replace(root / "port")
    if server.is_serving():
        print(f"fake sshd listening on 127.0.0.1:{port}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(serve(Path(sys.argv[1])))
