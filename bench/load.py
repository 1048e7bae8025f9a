"""The control plane under a team's load, for a fixed time: 50 API clients (lists, gets and
event streams), 20 SSH sessions through the gateway running commands, and VS Code traffic
through the proxy, all at once against one real server (Docker runtime, a fullstack
environment). Reports requests/s, p50/p99 per kind, errors, the server's peak RSS and
/healthz latency throughout, each beside a baseline: /healthz and SSH commands on the
idle server, SSH commands straight to the environment's sshd.

Two load models: by default each client works at a person's pace (an API call every
0.5 s, an SSH command every 0.1 s, a VS Code page every 2 s: what 50 dashboards and 20
busy terminals send); ``--flood`` sends every request as soon as the last one answered,
which measures the most the server does on this machine (and queueing under overload).
Usage:
    python -m bench.load [--seconds 30] [--api 50] [--ssh 20] [--vscode 4] [--flood]
"""
from __future__ import annotations

import argparse
import asyncio
import random
import re
import time
from collections import defaultdict
from pathlib import Path

import asyncssh
import httpx

from bench.common import control_key, dev8_server, pctl, published_ssh_port
from dev8.envimage.dev8_env import USER

ENV = "load"


WARMUP = 5.0
PACE = {"api": 0.5, "ssh": 0.1, "vscode": 2.0}  # seconds between one client's requests


class Tally:
    def __init__(self, pace: dict[str, float] | None = None, measure_from: float = 0.0) -> None:
        self.latencies: dict[str, list[float]] = defaultdict(list)
        self.errors: dict[str, list[str]] = defaultdict(list)
        self.pace = pace or {}
        self.measure_from = measure_from  # monotonic time: calls started before are warm-up

    async def arrive(self, every: str) -> None:
        """A client joins at a random moment of its first interval, not all at once."""
        await asyncio.sleep(random.uniform(0, self.pace.get(every, 0.0)))

    async def timed(self, kind: str, call, every: str = "") -> None:  # type: ignore[no-untyped-def]
        """Time one call; then wait out the client's pace (``every``: a PACE key)."""
        t0 = time.perf_counter()
        try:
            await call()
        except Exception as exc:  # noqa: BLE001 - every failure is counted and shown
            self.errors[kind].append(f"{exc.__class__.__name__}: {exc}"[:160])
            await asyncio.sleep(0.05)  # a failing call must not spin
            return
        took = time.perf_counter() - t0
        if time.monotonic() - took >= self.measure_from:
            self.latencies[kind].append(took)
        # people are not in step: each wait varies by ±50 %, so requests do not arrive in bursts
        await asyncio.sleep(max(0.0, self.pace.get(every, 0.0) * random.uniform(0.5, 1.5) - took))


async def ok(response: httpx.Response) -> None:
    if response.status_code >= 400:
        raise RuntimeError(f"HTTP {response.status_code}")


async def api_client(i: int, base: str, token: str, tally: Tally, until: float) -> None:
    await tally.arrive("api")
    async with httpx.AsyncClient(base_url=base + "/api/v1", headers={"Authorization": f"Bearer {token}"},
                                 timeout=30) as c:
        if i % 5 == 4:  # every fifth client holds an event stream open and reopens it
            while time.monotonic() < until:
                async def stream() -> None:
                    async with c.stream("GET", f"/environments/{ENV}/events", params={"after": 0}) as r:
                        await ok(r)
                        async for line in r.aiter_lines():
                            if line.startswith("data:"):
                                break  # the first event arrived: that is the latency measured
                await tally.timed("events stream (first event)", stream, "api")
            return
        while time.monotonic() < until:
            if i % 2:
                await tally.timed("GET /environments", lambda: _get(c, "/environments"), "api")
            else:
                await tally.timed(f"GET /environments/{ENV}", lambda: _get(c, f"/environments/{ENV}"), "api")


async def _get(c: httpx.AsyncClient, path: str) -> None:
    await ok(await c.get(path))


async def ssh_session(port: int, key: asyncssh.SSHKey, tally: Tally, until: float, kind: str,
                      username: str = ENV) -> None:
    arrived = False
    while time.monotonic() < until:
        try:
            async with asyncssh.connect("127.0.0.1", port, username=username, client_keys=[key], known_hosts=None,
                                        agent_path=None, config=[], connect_timeout=30) as conn:
                await conn.run("true", check=True, timeout=30)
                if not arrived:
                    await tally.arrive("ssh")
                    arrived = True
                while time.monotonic() < until:
                    await tally.timed(kind, lambda: conn.run("true", check=True, timeout=30), "ssh")
        except (TimeoutError, OSError, asyncssh.Error) as exc:  # a lost session: counted, reconnected
            tally.errors[f"{kind}: connect"].append(f"{exc.__class__.__name__}: {exc}"[:160])
            await asyncio.sleep(1)


async def vscode_client(base: str, owner: str, token: str, tally: Tally, until: float) -> None:
    async with httpx.AsyncClient(base_url=f"{base}/@{owner}/{ENV}/apps/vscode", timeout=30,
                                 headers={"Authorization": f"Bearer {token}"}) as c:
        try:
            page = (await c.get("/", follow_redirects=True)).text
        except httpx.HTTPError:
            page = ""  # counted below, with every later try
        # the workbench's own scripts, as a browser fetches them after the page
        scripts = re.findall(r'src="\./?([^"]+\.js)"', page)[:2]
        await tally.arrive("vscode")
        while time.monotonic() < until:
            for path in scripts:
                await tally.timed("VS Code script", lambda path=path: _get(c, "/" + path))
            await tally.timed("VS Code page", lambda: _get(c, "/?folder=/home/dev/workspace"), "vscode")


async def healthz(base: str, tally: Tally, until: float, kind: str) -> None:
    async with httpx.AsyncClient(timeout=30) as c:
        while time.monotonic() < until:
            await tally.timed(kind, lambda: _get(c, base + "/healthz"))
            await asyncio.sleep(0.1)


async def rss_peak(pid: int, until: float) -> int:
    peak = 0
    while time.monotonic() < until:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                peak = max(peak, int(line.split()[1]))
        await asyncio.sleep(0.5)
    return peak


def table(title: str, tally: Tally, seconds: float) -> None:
    print(f"\n{title}")
    print(f"  {'kind':<34} {'count':>7} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>9} {'errors':>7}")
    for kind in sorted(set(tally.latencies) | set(tally.errors)):
        xs = tally.latencies.get(kind, [])
        p50 = pctl(xs, 50) * 1000 if xs else float("nan")
        p99 = pctl(xs, 99) * 1000 if xs else float("nan")
        print(f"  {kind:<34} {len(xs):>7} {len(xs) / seconds:>8.1f} {p50:>8.1f} {p99:>9.1f} "
              f"{len(tally.errors[kind]):>7}")
    for kind, errs in tally.errors.items():
        if errs:
            print(f"  first error of {kind}: {errs[0]}")


async def main(args: argparse.Namespace) -> None:
    extra_env = dict(e.split("=", 1) for e in args.env)
    with dev8_server({"DEV8_DEFAULT_IMAGE": "dev8/fullstack:latest", **extra_env}) as (server, user):
        user.cli("create", ENV)
        key = asyncssh.import_private_key(Path(user.key).read_bytes())
        direct_key = asyncssh.import_private_key(control_key(server, ENV))
        direct_port = published_ssh_port(server, ENV)
        assert server.proc is not None

        idle = Tally()  # the baseline: the same probes on the idle server, and SSH straight to sshd
        until = time.monotonic() + min(10.0, args.seconds / 3)
        await asyncio.gather(healthz(server.url, idle, until, "/healthz"),
                             ssh_session(server.ssh_port, key, idle, until, "SSH command (gateway)"),
                             ssh_session(direct_port, direct_key, idle, until, "SSH command (direct to sshd)",
                                         username=USER))
        table(f"idle server ({min(10.0, args.seconds / 3):.0f} s, one client of each)", idle,
              min(10.0, args.seconds / 3))

        # the first seconds open 80 connections at once (TCP, SSH, database, threads): warm-up,
        # counted for errors but not for latency
        load = Tally({} if args.flood else PACE, measure_from=time.monotonic() + WARMUP)
        until = time.monotonic() + WARMUP + args.seconds
        tasks = [healthz(server.url, load, until, "/healthz")]
        tasks += [api_client(i, server.url, user.token, load, until) for i in range(args.api)]
        tasks += [ssh_session(server.ssh_port, key, load, until, "SSH command (gateway)") for _ in range(args.ssh)]
        tasks += [vscode_client(server.url, user.username, user.token, load, until) for _ in range(args.vscode)]
        peak = asyncio.ensure_future(rss_peak(server.proc.pid, until))
        await asyncio.gather(*tasks)
        model = "back to back" if args.flood else ", ".join(f"{k} every {v:g} s" for k, v in PACE.items())
        table(f"under load ({args.seconds:.0f} s: {args.api} API clients, {args.ssh} SSH sessions, "
              f"{args.vscode} VS Code clients; {model})", load, args.seconds)
        print(f"\n  server peak RSS {await peak / 1024:.0f} MiB")
        for kind in ("/healthz", "SSH command (gateway)"):
            base, loaded = idle.latencies.get(kind), load.latencies.get(kind)
            if base and loaded:
                print(f"  {kind} p99 under load / idle: {pctl(loaded, 99) / pctl(base, 99):.1f}×")
        log = server.log()
        print(f"  event loop blocked ≥ 100 ms (watchdog): {log.count('event loop blocked')} time(s)")
        if "event loop blocked" in log:
            at = log.index("event loop blocked")
            print(log[at:at + 1500])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--api", type=int, default=50)
    parser.add_argument("--ssh", type=int, default=20)
    parser.add_argument("--vscode", type=int, default=4)
    parser.add_argument("--flood", action="store_true", help="every client sends its next request at once")
    parser.add_argument("--env", action="append", default=[], help="DEV8_X=value for the server (repeatable)")
    asyncio.run(main(parser.parse_args()))
