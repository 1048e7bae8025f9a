"""Several servers on one PostgreSQL database: event fan-out latency across replicas and
takeover time after a SIGKILL, each beside the single-server figure, on the fake runtime
(what is measured is the control plane: leases, LISTEN/NOTIFY, the reconciler).

- Fan-out: a request on replica A writes an event; two streams of that environment are
  open, one on A (the writing replica: the single-server figure) and one on B (another
  replica). Both are woken by PostgreSQL's LISTEN/NOTIFY; the question is what crossing to
  another replica adds. Each latency is from just before the request to the event's arrival
  on that stream; p50 and p99 over --events requests.
- Takeover: a replica dies (SIGKILL) right after starting an environment's instance, before
  recording it. With replicas: the time from its death until another shows the
  environment running (its lease runs out first). Single server: the same death, the
  server restarted at once (as a supervisor would), until it shows it running.

Usage: python -m bench.replicas [--events 100] [--runs 3] [--interval 10]
"""
from __future__ import annotations

import argparse
import json
import queue
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx

from bench.common import median, pctl, report
from tests.support import Dev8Server, Postgres, User, another_replica, kill_fake_environments, unique, wait_until


def follow(srv: Dev8Server, token: str, name: str, after: int, out: queue.Queue[tuple[float, dict]]) -> httpx.Client:
    client = srv.api(token)
    response = client.send(client.build_request("GET", f"/environments/{name}/events", params={"after": after}),
                           stream=True)

    def read() -> None:
        with suppress(httpx.HTTPError):
            for line in response.iter_lines():
                if line.startswith("data:"):
                    out.put((time.perf_counter(), json.loads(line[5:])))
    threading.Thread(target=read, daemon=True).start()
    return client


def state(api: httpx.Client, name: str) -> str:
    r = api.get(f"/environments/{name}")
    return r.json()["state"] if r.status_code == 200 else str(r.status_code)


def arrival(q: queue.Queue[tuple[float, dict]], after: int) -> tuple[float, int]:
    """When the next `request` event after id ``after`` arrived, and its id."""
    while True:
        at, ev = q.get(timeout=60)
        if ev["step"] == "request" and ev["id"] > after:
            return at, ev["id"]


def drain_until_ready(q: queue.Queue[tuple[float, dict]]) -> None:
    while q.get(timeout=60)[1]["step"] != "ready":
        pass


def fan_out(a: Dev8Server, b: Dev8Server, user: User, events: int) -> tuple[list[float], list[float]]:
    api = a.api(user.token)
    name = unique("fan")
    api.post("/environments", json={"name": name}).raise_for_status()
    wait_until(lambda: state(api, name) == "running", timeout=60, what="running")
    last = api.get(f"/environments/{name}/events", params={"follow": "false"}).json()[-1]["id"]
    on_a: queue.Queue[tuple[float, dict]] = queue.Queue()
    on_b: queue.Queue[tuple[float, dict]] = queue.Queue()
    clients = [follow(a, user.token, name, last, on_a), follow(b, user.token, name, last, on_b)]
    local, remote = [], []
    time.sleep(1)
    try:
        for _ in range(events):
            t0 = time.perf_counter()
            api.post(f"/environments/{name}/reconfigure").raise_for_status()
            at_a, last_a = arrival(on_a, last)
            at_b, last_b = arrival(on_b, last)
            assert last_a == last_b
            last = last_a
            local.append(at_a - t0)
            remote.append(at_b - t0)
            drain_until_ready(on_a)
            drain_until_ready(on_b)
    finally:
        for c in clients:
            c.close()
    return local, remote


def killed_mid_create(srv: Dev8Server, user: User) -> tuple[str, float]:
    """Create through ``srv`` (started with the crash point); the name and when it died."""
    name = unique("tk")
    with suppress(httpx.HTTPError):
        srv.api(user.token).post("/environments", json={"name": name})
    assert srv.wait_exit(60) == -9
    return name, time.perf_counter()


def takeover(a: Dev8Server, b: Dev8Server, user: User, root: Path, run: int) -> float:
    doomed = another_replica(a, root / f"doomed{run}", DEV8_REPLICA_ID=f"doomed{run}",
                             DEV8_FAULT_KILL_AFTER="start").start()
    name, died = killed_mid_create(doomed, user)
    wait_until(lambda: state(b.api(user.token), name) == "running", timeout=120, interval=0.05,
               what="taken over")
    return time.perf_counter() - died


def restart_alone(root: Path, interval: str, run: int) -> float:
    runtime = root / f"alone-runtime{run}"
    srv = Dev8Server(root / f"alone{run}", extra_env={"DEV8_RUNTIME": "fake", "DEV8_RUNTIME_ROOT": str(runtime),
                                                     "DEV8_RECONCILE_INTERVAL": interval})
    try:
        srv.start(DEV8_FAULT_KILL_AFTER="start")
        user = User(srv, f"alone{run}@example.com", root / f"alone-user{run}")
        name, died = killed_mid_create(srv, user)
        srv.start()
        wait_until(lambda: state(srv.api(user.token), name) == "running", timeout=120, interval=0.05,
                   what="converged after the restart")
        return time.perf_counter() - died
    finally:
        srv.kill(check_loop=False)
        kill_fake_environments(runtime)


@contextmanager
def pair(root: Path, interval: str) -> Iterator[tuple[Dev8Server, Dev8Server]]:
    pg = Postgres()
    pg.start()
    runtime = root / "runtime"
    servers: list[Dev8Server] = []
    try:
        a = Dev8Server(root / "a", pg.create_database(), {"DEV8_RUNTIME": "fake", "DEV8_RUNTIME_ROOT": str(runtime),
                                                           "DEV8_RECONCILE_INTERVAL": interval,
                                                           "DEV8_REPLICA_ID": "a"}).start()
        servers.append(a)
        servers.append(another_replica(a, root / "b", DEV8_REPLICA_ID="b").start())
        yield a, servers[1]
    finally:
        for srv in servers:
            srv.kill(check_loop=False)
        kill_fake_environments(runtime)
        pg.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=100)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--interval", default="10", help="DEV8_RECONCILE_INTERVAL of every server (default: dev8's)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="dev8-bench-replicas-") as tmp:
        root = Path(tmp)
        with pair(root, args.interval) as (a, b):
            user = User(a, "bench@example.com", root / "user")
            local, remote = fan_out(a, b, user, args.events)
            takeovers = [takeover(a, b, user, root, run) for run in range(args.runs)]
        alone = [restart_alone(root, args.interval, run) for run in range(args.runs)]
    report(f"event fan-out, {args.events} events (request on A → event on a stream)", [
        ("stream on the writing replica p50", pctl(local, 50) * 1000, "ms"),
        ("stream on the writing replica p99", pctl(local, 99) * 1000, "ms"),
        ("stream on another replica p50", pctl(remote, 50) * 1000, "ms"),
        ("stream on another replica p99", pctl(remote, 99) * 1000, "ms"),
        ("ratio p50 (other / same)", pctl(remote, 50) / pctl(local, 50), "x")])
    report(f"SIGKILL mid-create → running, {args.runs} runs, reconcile interval {args.interval} s", [
        ("another replica takes over (median)", median(takeovers), "s"),
        ("single server restarted at once (median)", median(alone), "s"),
        ("ratio (takeover / restart)", median(takeovers) / median(alone), "x")])


if __name__ == "__main__":
    main()
