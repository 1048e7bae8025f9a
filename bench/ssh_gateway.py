"""SSH through dev8's gateway vs straight to the environment's published sshd:
copy throughput (OpenSSH, `cat > /dev/null` of a file), per-command latency (many exec
channels on one connection, asyncssh) and new logins per second (``--logins`` new
connections, 30 at a time, each running one command, as git, scp and VS Code Remote-SSH
open them). Prints medians and ratios. Usage:
    python bench/ssh_gateway.py [--mb 256] [--commands 1000] [--runs 3] [--logins 300]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import tempfile
import time
from pathlib import Path

import asyncssh

from bench.common import SSH_OPTS, control_key_file, dev8_server, median, published_ssh_port, report


def copy_seconds(argv: list[str], payload: Path) -> float:
    with payload.open("rb") as f:
        t0 = time.perf_counter()
        subprocess.run([*argv, "cat > /dev/null"], stdin=f, check=True, capture_output=True)
        return time.perf_counter() - t0


async def command_latencies(port: int, username: str, key: asyncssh.SSHKey, count: int) -> list[float]:
    async with asyncssh.connect("127.0.0.1", port, username=username, client_keys=[key], known_hosts=None,
                                agent_path=None, config=[]) as conn:
        await conn.run("true", check=True)
        out = []
        for _ in range(count):
            t0 = time.perf_counter()
            await conn.run("true", check=True)
            out.append(time.perf_counter() - t0)
        return out


async def login_rate(port: int, username: str, key: asyncssh.SSHKey, total: int,
                     parallel: int = 30) -> tuple[float, int]:
    """New connections per second (login + one command each) and how many failed."""
    failed = 0

    async def worker(n: int) -> None:
        nonlocal failed
        for _ in range(n):
            try:
                async with asyncssh.connect("127.0.0.1", port, username=username, client_keys=[key],
                                            known_hosts=None, agent_path=None, config=[]) as conn:
                    await conn.run("true", check=True)
            except (OSError, asyncssh.Error):
                failed += 1
    t0 = time.perf_counter()
    await asyncio.gather(*(worker(total // parallel) for _ in range(parallel)))
    return (total - failed) / (time.perf_counter() - t0), failed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--mb", type=int, default=256)
    ap.add_argument("--commands", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--logins", type=int, default=300)
    args = ap.parse_args()
    with dev8_server() as (server, user), tempfile.TemporaryDirectory() as tmp:
        user.cli("create", "gw")
        direct_port = published_ssh_port(server, "gw")
        keyfile = control_key_file(server, "gw", Path(tmp))
        payload = Path(tmp) / "payload"
        with payload.open("wb") as f:
            for _ in range(args.mb):
                f.write(os.urandom(1 << 20))
        via_gateway = ["ssh", *SSH_OPTS, "-i", str(user.key), "-p", str(server.ssh_port), "gw@127.0.0.1"]
        direct = ["ssh", *SSH_OPTS, "-i", str(keyfile), "-p", str(direct_port), "dev@127.0.0.1"]
        gw_t = [copy_seconds(via_gateway, payload) for _ in range(args.runs)]
        dir_t = [copy_seconds(direct, payload) for _ in range(args.runs)]
        user_key = asyncssh.read_private_key(str(user.key))
        cp_key = asyncssh.import_private_key(keyfile.read_bytes())
        gw_lat = asyncio.run(command_latencies(server.ssh_port, "gw", user_key, args.commands))
        dir_lat = asyncio.run(command_latencies(direct_port, "dev", cp_key, args.commands))
        gw_rate, gw_failed = asyncio.run(login_rate(server.ssh_port, "gw", user_key, args.logins))
        dir_rate, dir_failed = asyncio.run(login_rate(direct_port, "dev", cp_key, args.logins))
    gw_mbs, dir_mbs = args.mb / median(gw_t), args.mb / median(dir_t)
    report(f"ssh gateway vs direct sshd: {args.mb} MB copy x{args.runs}, {args.commands} commands (medians)", [
        ("copy throughput direct", dir_mbs, "MB/s"),
        ("copy throughput via gateway", gw_mbs, "MB/s"),
        ("throughput ratio gateway / direct", gw_mbs / dir_mbs, "x"),
        ("command latency direct", median(dir_lat) * 1000, "ms"),
        ("command latency via gateway", median(gw_lat) * 1000, "ms"),
        ("added per command", (median(gw_lat) - median(dir_lat)) * 1000, "ms"),
        ("new logins direct (30 parallel)", dir_rate, "/s"),
        ("new logins via gateway (30 parallel)", gw_rate, "/s"),
        ("failed logins direct / via gateway", float(dir_failed), f"/ {gw_failed}"),
    ])


if __name__ == "__main__":
    main()
