"""With many environments and a burst of concurrent lifecycle requests, the reconciler
reconciles what changed and then goes quiet (it once fell into a loop of full passes that
kept the server at 100 % CPU). The fake runtime keeps this test free of Docker."""
from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.support import Dev8Server, User, kill_fake_environments, unique, wait_until

ENVIRONMENTS = 60


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def test_sixty_environments_and_a_burst_of_restarts_settle_to_an_idle_server(tmp_path: Path) -> None:
    root = tmp_path
    # 60 SSH handshakes and configures at once on 2 cores: the loop's thread waits for the GIL
    # behind busy worker threads for a few hundred ms at a time, which the watchdog cannot
    # tell from a blocking call; here it guards against gross blocking only.
    server = Dev8Server(root / "server", extra_env={"DEV8_RUNTIME": "fake", "DEV8_RUNTIME_ROOT": str(root / "rt"),
                                                    "DEV8_RECONCILE_INTERVAL": "10", "DEV8_LOOP_WATCHDOG_MS": "1000"}).start()
    try:
        user = User(server, "many@example.com", root / "u")
        api = httpx.Client(base_url=server.url + "/api/v1", headers={"authorization": f"Bearer {user.token}"},
                           timeout=60)
        names = [unique("m") for _ in range(ENVIRONMENTS)]
        with ThreadPoolExecutor(16) as pool:
            assert all(r.status_code == 202 for r in pool.map(
                lambda n: api.post("/environments", json={"name": n}), names))

        def all_running() -> bool:
            return sum(e["state"] == "running" for e in api.get("/environments").json()) == ENVIRONMENTS
        wait_until(all_running, timeout=300, interval=0.5, what="all environments running")
        with ThreadPoolExecutor(16) as pool:  # two concurrent restarts of each, as clicked twice
            assert all(r.status_code == 202 for r in pool.map(
                lambda n: api.post(f"/environments/{n}/restart"), names + names))
        time.sleep(1)
        wait_until(all_running, timeout=300, interval=0.5, what="all environments running again")
        assert server.proc is not None
        time.sleep(2)  # the last events and streams finish
        before, started = cpu_seconds(server.proc.pid), time.monotonic()
        time.sleep(5)
        share = (cpu_seconds(server.proc.pid) - before) / (time.monotonic() - started)
        print(f"\nidle server CPU with {ENVIRONMENTS} running environments: {share:.1%}")
        assert share <= 0.02, f"the idle server still uses {share:.1%} of a CPU"
    finally:
        try:
            server.kill()
        finally:
            kill_fake_environments(root / "rt")
