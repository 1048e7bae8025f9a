"""One server with many environments. For batches of --sizes base environments, each
created at once: time until all are ready against the floor (as many concurrent `docker
run` of the same image until each sshd accepts a key), per-environment create → ready,
then with the batch running: server RSS, idle CPU of the server and of dockerd, API
latency (list) p50/p99 and gateway login latency. Each batch is deleted before the next.
Usage:
    python -m bench.scale [--sizes 1,10,50,100]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import asyncssh
import docker
import httpx

from bench.common import dev8_server, pctl, report
from bench.lifecycle import floor_once


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def idle_cpu(pids: list[int], seconds: float = 10) -> list[float]:
    before, t0 = [cpu_seconds(p) for p in pids], time.monotonic()
    time.sleep(seconds)
    dt = time.monotonic() - t0
    return [(cpu_seconds(p) - b) / dt for p, b in zip(pids, before, strict=True)]


def floor(dc: docker.DockerClient, n: int, image: str) -> float:
    t0 = time.perf_counter()
    with ThreadPoolExecutor(n) as pool:
        list(pool.map(lambda _i: floor_once(dc, image), range(n)))
    return time.perf_counter() - t0


def login_latency(port: int, name: str, key: asyncssh.SSHKey, count: int = 10) -> float:
    async def go() -> list[float]:
        out = []
        for _ in range(count):
            t0 = time.perf_counter()
            async with asyncssh.connect("127.0.0.1", port, username=name, client_keys=[key], known_hosts=None,
                                        agent_path=None, config=[]) as conn:
                await conn.run("true", check=True)
            out.append(time.perf_counter() - t0)
        return out
    return statistics.median(asyncio.run(go()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", default="1,10,50,100")
    ap.add_argument("--image", default="dev8/base:latest")
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    dc = docker.from_env()
    dockerd = int(subprocess.run(["pidof", "dockerd"], capture_output=True, text=True).stdout.split()[0])
    with dev8_server({"DEV8_DEFAULT_CPUS": "0.5", "DEV8_DEFAULT_MEMORY": "256m"}) as (server, user):
        assert server.proc is not None
        api = httpx.Client(base_url=server.url + "/api/v1", headers={"authorization": f"Bearer {user.token}"},
                           timeout=120)
        key = asyncssh.read_private_key(str(user.key))
        for n in sizes:
            floor_s = floor(dc, n, args.image)
            names = [f"s{n}x{i}" for i in range(n)]
            ready_at: dict[str, float] = {}
            t0 = time.perf_counter()
            with ThreadPoolExecutor(min(n, 32)) as pool:
                for r in pool.map(lambda name: api.post("/environments", json={"name": name, "image": args.image}),
                                  names):
                    r.raise_for_status()
            while len(ready_at) < n:
                for e in api.get("/environments").json():
                    if e["name"] in names and e["state"] == "running" and e["name"] not in ready_at:
                        ready_at[e["name"]] = time.perf_counter() - t0
                    if e["state"] == "error":
                        raise RuntimeError(f"{e['name']}: {e['status_message']}")
                time.sleep(0.05)
            batch_s = max(ready_at.values())
            time.sleep(3)  # the last events settle
            server_cpu, dockerd_cpu = idle_cpu([server.proc.pid, dockerd])
            lat = []
            for _ in range(200):
                s = time.perf_counter()
                api.get("/environments").raise_for_status()
                lat.append(time.perf_counter() - s)
            login = login_latency(server.ssh_port, names[0], key)
            report(f"batch of {n} environments ({args.image})", [
                ("floor: concurrent docker run until sshd", floor_s, "s"),
                ("dev8: all ready", batch_s, "s"),
                ("ratio batch / floor", batch_s / floor_s, "x"),
                ("per-environment create → ready p50", statistics.median(ready_at.values()), "s"),
                ("server RSS", rss_mb(server.proc.pid), "MB"),
                ("idle server CPU", server_cpu * 100, "%"),
                ("idle dockerd CPU", dockerd_cpu * 100, "%"),
                ("API list p50", pctl(lat, 50) * 1000, "ms"),
                ("API list p99", pctl(lat, 99) * 1000, "ms"),
                ("gateway login + command (median)", login * 1000, "ms"),
            ])
            with ThreadPoolExecutor(min(n, 32)) as pool:
                list(pool.map(lambda name: api.delete(f"/environments/{name}"), names))
            inst = server.installation()
            while dc.api.containers(all=True, filters={"label": f"dev8.installation={inst}"}):
                time.sleep(0.2)


if __name__ == "__main__":
    main()
