"""One server with many environments, against a fair floor. For batches of --sizes base
environments, each created at once through the API (each followed on its event stream, as
`dev8 create` does): when the k-th and the last is ready, against the floor (bench/floor.py:
as many containers with exactly dev8's container options started at once with plain `docker
run`, clocked to the sshd banner and to a key login; taken before and after dev8's batch);
CPU per start (server, engine, inside the containers) and processes and SSH logins per start
against the floor's; then with the batch running: server RSS, idle CPU of the server and of
dockerd, API latency (list) p50/p99 and gateway login latency. Each batch is deleted before
the next. Usage:
    python -m bench.scale [--sizes 1,10,40,100]
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import asyncssh
import docker
import httpx

from bench.common import dev8_server, pctl, report, wait_ready
from bench.floor import (
    FloorBatch,
    container_cpu,
    engine_cpu,
    engine_delta,
    floor_batch,
    kth,
    mean,
    proc_cpu,
    processes_started,
    remove_floor,
    same_options,
    ssh_logins,
)

CPUS, MEMORY = 0.5, 256 << 20  # the server's defaults below; the floor gets the same


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def idle_cpu(pids: list[int], seconds: float = 10) -> list[float]:
    before, t0 = [proc_cpu(p) for p in pids], time.monotonic()
    time.sleep(seconds)
    dt = time.monotonic() - t0
    return [(proc_cpu(p) - b) / dt for p, b in zip(pids, before, strict=True)]


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


def ks(n: int) -> list[int]:
    """Which k-th ready times are reported for a batch of n."""
    return sorted({k for k in (10, 20, 40) if k < n} | {n})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", default="1,10,40,100")
    ap.add_argument("--image", default="dev8/base:latest")
    ap.add_argument("--no-idle", action="store_true", help="skip the figures taken with the batch running")
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    dc = docker.from_env()
    remove_floor(dc)  # left by an interrupted run
    dockerd = int(subprocess.run(["pidof", "dockerd"], capture_output=True, text=True).stdout.split()[0])
    with dev8_server({"DEV8_DEFAULT_CPUS": str(CPUS), "DEV8_DEFAULT_MEMORY": f"{MEMORY >> 20}m"}) as (server, user):
        assert server.proc is not None
        api = httpx.Client(base_url=server.url + "/api/v1", headers={"authorization": f"Bearer {user.token}"},
                           timeout=120)
        key = asyncssh.read_private_key(str(user.key))
        inst = server.installation()
        # One create and delete first: a server's first create pays its lazy set-up (its
        # engine client, its network's check, its routes' first use), which a server that
        # has served before does not; the batch of 1 would carry it alone.
        api.post("/environments", json={"name": "warm-up", "image": args.image}).raise_for_status()
        wait_ready(api, "warm-up")
        api.delete("/environments/warm-up").raise_for_status()
        while dc.api.containers(all=True, filters={"label": f"dev8.installation={inst}"}):
            time.sleep(0.2)
        for n in sizes:
            before = floor_batch(dc, n, args.image, CPUS, MEMORY)
            names = [f"s{n}x{i}" for i in range(n)]
            server_cpu0, engine0 = proc_cpu(server.proc.pid), engine_cpu()
            t0 = time.monotonic()

            def create(name: str, t0: float = t0) -> float:
                api.post("/environments", json={"name": name, "image": args.image}).raise_for_status()
                wait_ready(api, name)
                return time.monotonic() - t0
            with ThreadPoolExecutor(n) as pool:
                ready = sorted(pool.map(create, names))
            containers = dc.containers.list(filters={"label": f"dev8.installation={inst}"})
            dev8_cpu = {"server": proc_cpu(server.proc.pid) - server_cpu0, "engine": engine_delta(engine0),
                        "inside": sum(container_cpu(c.attrs) for c in containers)}
            assert same_options(containers[0].attrs) == before.options, \
                f"the floor's containers differ from dev8's: {same_options(containers[0].attrs)} != {before.options}"
            processes = [processes_started(c) for c in containers]
            logins = [ssh_logins(c) for c in containers]
            rows = []
            if not args.no_idle:
                time.sleep(3)  # the last events settle
                server_idle, dockerd_idle = idle_cpu([server.proc.pid, dockerd])
                lat = []
                for _ in range(200):
                    s = time.perf_counter()
                    api.get("/environments").raise_for_status()
                    lat.append(time.perf_counter() - s)
                rows = [("server RSS", rss_mb(server.proc.pid), "MB"),
                        ("idle server CPU", server_idle * 100, "%"), ("idle dockerd CPU", dockerd_idle * 100, "%"),
                        ("API list p50", pctl(lat, 50) * 1000, "ms"), ("API list p99", pctl(lat, 99) * 1000, "ms"),
                        ("gateway login + command (median)", login_latency(server.ssh_port, names[0], key) * 1000,
                         "ms")]
            with ThreadPoolExecutor(min(n, 32)) as pool:
                list(pool.map(lambda name: api.delete(f"/environments/{name}"), names))
            while dc.api.containers(all=True, filters={"label": f"dev8.installation={inst}"}):
                time.sleep(0.2)
            after = floor_batch(dc, n, args.image, CPUS, MEMORY)
            report(f"batch of {n} environments ({args.image}); floor before / after dev8's batch", [
                *floor_rows(before, after, ready),
                ("dev8 CPU per start: server", dev8_cpu["server"] / n, "s"),
                ("dev8 CPU per start: engine", dev8_cpu["engine"] / n, "s"),
                ("dev8 CPU per start: inside the environment", dev8_cpu["inside"] / n, "s"),
                ("floor CPU per start: engine + inside (mean)", mean([b.cpu_per_start() for b in (before, after)]),
                 "s"),
                ("ratio CPU per start dev8 / floor", sum(dev8_cpu.values()) / n
                 / mean([b.cpu_per_start() for b in (before, after)]), "x"),
                ("processes started per start: floor (median)", statistics.median(before.processes), ""),
                ("processes started per start: dev8 (median)", statistics.median(processes), ""),
                ("SSH logins per start: dev8 (median; floor 1)", statistics.median(logins), ""),
                *rows,
            ])


def floor_rows(before: FloorBatch, after: FloorBatch, ready: list[float]) -> list[tuple[str, float, str]]:
    """Ready times of dev8's batch beside both floors (the mean of before and after)."""
    n = len(ready)
    rows: list[tuple[str, float, str]] = []
    for k in ks(n):
        banner = mean([kth(before.banner, k), kth(after.banner, k)])
        login = mean([kth(before.login, k), kth(after.login, k)])
        what = "all" if k == n else f"{k}th"
        rows += [(f"{what} ready: floor banner {kth(before.banner, k):.2f} / {kth(after.banner, k):.2f}", banner, "s"),
                 (f"{what} ready: floor key login {kth(before.login, k):.2f} / {kth(after.login, k):.2f}", login,
                  "s"),
                 (f"{what} ready: dev8", kth(ready, k), "s"),
                 (f"{what} ready: ratio dev8 / banner floor", kth(ready, k) / banner, "x"),
                 (f"{what} ready: ratio dev8 / key-login floor", kth(ready, k) / login, "x")]
    return rows


if __name__ == "__main__":
    main()
