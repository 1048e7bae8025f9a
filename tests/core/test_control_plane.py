"""The control plane under load, races, bad input and key/data faults (issue #11), on the
``fake`` runtime: a real dev8 server, real HTTP and SSH clients, no Docker engine. Every
server here runs with the event-loop watchdog at 100 ms; stopping it fails the test when
the loop was ever blocked (tests.support.Dev8Server.kill)."""
from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.support import Dev8Server, User, kill_fake_environments, unique, wait_until


@pytest.fixture(scope="module")
def ctl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dev8Server]:
    root = tmp_path_factory.mktemp("control-plane")
    srv = Dev8Server(root / "server", extra_env={"DEV8_RUNTIME": "fake",
                                                 "DEV8_RUNTIME_ROOT": str(root / "runtime")}).start()
    srv.runtime_root = root / "runtime"  # type: ignore[attr-defined]
    yield srv
    try:
        srv.kill()
    finally:
        kill_fake_environments(root / "runtime")


@pytest.fixture(scope="module")
def dana(ctl: Dev8Server, tmp_path_factory: pytest.TempPathFactory) -> User:
    return User(ctl, "dana@example.com", tmp_path_factory.mktemp("dana"))


def ssh_banner(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.settimeout(10)
        return s.recv(64)


def test_fifty_concurrent_clients_with_event_streams_leave_the_server_responsive(ctl: Dev8Server, dana: User) -> None:
    """Before: 20 or more concurrent requests including event streams froze the whole server
    (synchronous database calls on the event loop waited for a pool that only the loop
    could refill). Now: streams, lists and gets in parallel, /healthz and the SSH gateway
    keep answering, and the watchdog sees no blocked loop."""
    names = [unique("l") for _ in range(3)]
    for name in names:
        dana.cli("create", name)
    stop = threading.Event()
    errors: list[str] = []
    streams_open = threading.Semaphore(0)
    auth = {"Authorization": f"Bearer {dana.token}"}

    def stream(i: int) -> int:
        got = 0
        with httpx.Client(base_url=ctl.url + "/api/v1", headers=auth, timeout=30) as c:
            with c.stream("GET", f"/environments/{names[i % 3]}/events") as r:
                if r.status_code != 200:
                    errors.append(f"events {r.status_code}")
                    return 0
                streams_open.release()
                for line in r.iter_lines():
                    got += line.startswith("data:")
                    if stop.is_set() and got:
                        break
        return got

    def poll(i: int) -> int:
        n = 0
        with httpx.Client(base_url=ctl.url + "/api/v1", headers=auth, timeout=30) as c:
            while not stop.is_set():
                r = c.get("/environments") if i % 2 else c.get(f"/environments/{names[i % 3]}")
                if r.status_code != 200:
                    errors.append(f"poll {r.status_code}")
                n += 1
        return n

    with ThreadPoolExecutor(60) as pool:
        streams = [pool.submit(stream, i) for i in range(30)]
        polls = [pool.submit(poll, i) for i in range(20)]
        for _ in range(30):
            assert streams_open.acquire(timeout=60), f"an event stream did not open; errors: {errors}"
        healthz = []
        for _ in range(15):  # the server stays live while all fifty are busy
            healthz.append(httpx.get(ctl.url + "/healthz", timeout=10).status_code)
            assert ssh_banner(ctl.ssh_port).startswith(b"SSH-2.0-")
            time.sleep(0.1)
        stop.set()
        for name in names:  # an event on every stream lets each reader see the stop
            dana.http().post(f"/environments/{name}/reconfigure")
        received = [f.result(timeout=60) for f in streams]
        polled = [f.result(timeout=60) for f in polls]
    assert healthz == [200] * 15
    assert not errors, errors[:5]
    assert all(received) and sum(polled) >= 20, (received, polled)
    ctl.assert_loop_never_blocked()


def state(user: User, name: str) -> str:
    return user.http().get(f"/environments/{name}").json()["state"]


def test_a_backend_that_never_answers_is_503_within_seconds_marks_unreachable_and_recovers(
        ctl: Dev8Server, dana: User) -> None:
    name = unique("h")
    dana.cli("create", name)
    hung = ctl.runtime_root / "HUNG"  # type: ignore[attr-defined]
    hung.touch()
    try:
        with httpx.Client(base_url=ctl.url, headers={"Authorization": f"Bearer {dana.token}"}, timeout=15) as c:
            for r in (c.post("/api/v1/environments", json={"name": unique("x")}),
                      c.post(f"/api/v1/environments/{name}/stop"),
                      c.get(f"/api/v1/environments/{name}/logs")):
                assert r.status_code == 503 and "fake runtime has not answered" in r.json()["detail"], r.text
            assert [e["name"] for e in c.get("/api/v1/environments").json()].count(name) == 1
            health = c.get("/healthz")
            assert health.status_code == 200 and "has not answered" in health.json()["runtime"], health.text
            c.post(f"/api/v1/environments/{name}/restart")  # asked while wedged: 503, nothing recorded
            assert c.get(f"/api/v1/environments/{name}").json()["desired_state"] == "running"
        # its next reconcile finds the backend wedged
        ctl.cli("admin", "create-user", "eve@example.com", input="")  # the server keeps serving meanwhile
        wait_until(lambda: state(dana, name) == "unreachable", timeout=30, what="unreachable")
    finally:
        hung.unlink()
    wait_until(lambda: state(dana, name) == "running", timeout=60, what="recovery")
    assert dana.ssh(name, "echo back").stdout.strip() == "back"
