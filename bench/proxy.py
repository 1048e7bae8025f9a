"""dev8's browser proxy vs straight over an SSH tunnel (OpenSSH `ssh -L` to the
environment's published sshd) vs the container's port directly (where the service listens
on more than loopback): the VS Code workbench page with its static assets, a 10 MB file,
and WebSocket echo round trips. Prints medians and ratios. Usage:
    python -m bench.proxy [--runs 20] [--echoes 1000]
"""
from __future__ import annotations

import argparse
import asyncio
import re
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import docker
import httpx
import websockets

from bench.common import SSH_OPTS, control_key_file, dev8_server, median, published_ssh_port, report
from tests.support import FULLSTACK, free_port, start_envapps, wait_until

VSCODE, FILES, ECHO = 13337, 8200, 8101
FILE_MB = 10


@contextmanager
def tunnel(ssh_port: int, keyfile: Path, remote: int) -> Iterator[int]:
    local = free_port()
    proc = subprocess.Popen(["ssh", *SSH_OPTS, "-i", str(keyfile), "-p", str(ssh_port), "-N",
                             "-L", f"127.0.0.1:{local}:127.0.0.1:{remote}", "dev@127.0.0.1"])
    try:
        wait_until(lambda: socket.create_connection(("127.0.0.1", local), timeout=2).close() is None, timeout=30,
                   what="ssh tunnel")
        yield local
    finally:
        proc.terminate()
        proc.wait(10)


def workbench_seconds(client: httpx.Client, base: str, runs: int) -> tuple[list[float], int]:
    page = client.get(base)
    page.raise_for_status()
    assets = sorted(set(re.findall(r'(?:src|href)="((?!https?:|/)[^"]+\.(?:js|css|png|svg|ico|json))"', page.text)))
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        client.get(base).raise_for_status()
        for a in assets:
            client.get(str(page.url.join(a))).raise_for_status()
        out.append(time.perf_counter() - t0)
    return out, len(assets)


def file_seconds(client: httpx.Client, url: str, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        r = client.get(url)
        assert r.status_code == 200 and len(r.content) == FILE_MB << 20, r.status_code
        out.append(time.perf_counter() - t0)
    return out


async def echo_rtts(url: str, headers: dict, origin: str | None, count: int) -> list[float]:
    async with websockets.connect(url, additional_headers=headers, origin=origin) as ws:
        out = []
        for i in range(count + 20):
            t0 = time.perf_counter()
            await ws.send(f"m{i}")
            await ws.recv()
            if i >= 20:  # warm-up
                out.append(time.perf_counter() - t0)
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--echoes", type=int, default=1000)
    args = ap.parse_args()
    rows: dict[str, float] = {}
    with dev8_server() as (server, user), tempfile.TemporaryDirectory() as tmp:
        user.cli("create", "px", "--image", FULLSTACK)
        start_envapps(user, "px")
        user.ssh("px", f"mkdir -p ~/files && head -c {FILE_MB}M /dev/urandom > ~/files/big.bin && "
                       f"(nohup python3 -m http.server {FILES} --bind 0.0.0.0 -d ~/files >/dev/null 2>&1 &)")
        # the path form with a token: the same relay a browser gets on the app's own host
        web = user.script()
        web.timeout, web.follow_redirects = httpx.Timeout(60), True
        bearer = {"authorization": f"Bearer {user.token}"}
        keyfile, ssh_port = control_key_file(server, "px", Path(tmp)), published_ssh_port(server, "px")
        [c] = [c for c in docker.from_env().containers.list() if c.name.endswith("-px")]
        container_ip = next(iter(c.attrs["NetworkSettings"]["Networks"].values()))["IPAddress"]
        prefix = f"/@{user.username}/px"
        wait_until(lambda: web.get(f"{prefix}/apps/vscode/").status_code == 200, timeout=60, what="code-server")
        direct = httpx.Client(timeout=60, follow_redirects=True)
        with tunnel(ssh_port, keyfile, VSCODE) as vs_port, tunnel(ssh_port, keyfile, FILES) as f_port, \
                tunnel(ssh_port, keyfile, ECHO) as e_port:
            for label, client, base in (("proxy", web, f"{server.url}{prefix}/apps/vscode/"),
                                        ("tunnel", direct, f"http://127.0.0.1:{vs_port}/")):
                secs, n_assets = workbench_seconds(client, base, args.runs)
                rows[f"workbench {label}"] = median(secs)
            for label, client, url in (("proxy", web, f"{server.url}{prefix}/ports/{FILES}/big.bin"),
                                       ("tunnel", direct, f"http://127.0.0.1:{f_port}/big.bin"),
                                       ("direct", direct, f"http://{container_ip}:{FILES}/big.bin")):
                rows[f"file {label}"] = median(file_seconds(client, url, max(5, args.runs // 2)))
            ws_base = server.url.replace("http://", "ws://")
            rows["echo proxy"] = median(asyncio.run(echo_rtts(f"{ws_base}{prefix}/ports/{ECHO}/", bearer, None,
                                                              args.echoes)))
            rows["echo tunnel"] = median(asyncio.run(echo_rtts(f"ws://127.0.0.1:{e_port}/", {}, None, args.echoes)))
    report(f"browser proxy: workbench page + {n_assets} assets x{args.runs}, {FILE_MB} MB file, "
           f"{args.echoes} WebSocket echoes (medians)", [
        ("workbench + assets, ssh tunnel", rows["workbench tunnel"] * 1000, "ms"),
        ("workbench + assets, dev8 proxy", rows["workbench proxy"] * 1000, "ms"),
        ("ratio proxy / tunnel", rows["workbench proxy"] / rows["workbench tunnel"], "x"),
        (f"{FILE_MB} MB file, container port directly", rows["file direct"] * 1000, "ms"),
        (f"{FILE_MB} MB file, ssh tunnel", rows["file tunnel"] * 1000, "ms"),
        (f"{FILE_MB} MB file, dev8 proxy", rows["file proxy"] * 1000, "ms"),
        ("ratio proxy / tunnel", rows["file proxy"] / rows["file tunnel"], "x"),
        ("WebSocket echo, ssh tunnel", rows["echo tunnel"] * 1000, "ms"),
        ("WebSocket echo, dev8 proxy", rows["echo proxy"] * 1000, "ms"),
        ("added per round trip", (rows["echo proxy"] - rows["echo tunnel"]) * 1000, "ms"),
    ])


if __name__ == "__main__":
    main()
