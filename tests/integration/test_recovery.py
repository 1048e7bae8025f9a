"""Crash recovery (SIGKILL at the worst moments) and a Docker daemon that goes away."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import httpx
import pytest

from tests.support import Dev8Server, SocketRelay, User, another_replica, trust_gateway_of, unique, wait_until


def state(user: User, name: str) -> str:
    r = user.http().get(f"/environments/{name}")
    return r.json()["state"] if r.status_code == 200 else f"http {r.status_code}"


def objects(docker_client, server: Dev8Server, env_id: str) -> tuple[list, list]:  # type: ignore[no-untyped-def]
    containers = docker_client.containers.list(all=True, filters={"label": f"dev8.env-id={env_id}"})
    volumes = docker_client.volumes.list(filters={"label": f"dev8.installation={server.installation()}"})
    return containers, volumes


@pytest.mark.parametrize("point", ["row", "start"])
def test_sigkill_mid_create_converges_to_one_container_and_one_volume(
        point: str, server: Dev8Server, alice: User, docker_client):  # type: ignore[no-untyped-def]
    name = unique("k")
    server.kill()
    server.start(DEV8_FAULT_KILL_AFTER=point)
    with pytest.raises(httpx.HTTPError) if point == "row" else contextlib.nullcontext():
        alice.http().post("/environments", json={"name": name})
    assert server.wait_exit(120) == -9  # the server really died at the crash point
    containers = docker_client.containers.list(all=True, filters={"label": f"dev8.installation={server.installation()}"})
    if point == "start":  # started, its endpoint not recorded yet
        assert len(containers) == 1 and containers[0].status == "running"
    else:
        assert containers == []
    server.start()
    wait_until(lambda: state(alice, name) == "running", timeout=120, what="convergence after restart")
    env_id = alice.http().get(f"/environments/{name}").json()["id"]
    containers, volumes = objects(docker_client, server, env_id)
    assert len(containers) == 1 and containers[0].status == "running"
    assert len(volumes) == 1
    assert alice.ssh(name, "echo alive").stdout.strip() == "alive"


def test_a_replica_killed_mid_create_is_finished_by_another_with_one_container(
        tmp_path, base_image, postgres, docker_client) -> None:  # type: ignore[no-untyped-def]
    """Two servers on one PostgreSQL database: the one holding the lease dies with the
    container started and its endpoint not recorded; the other finishes the create on that
    container once the lease runs out."""
    survivor = Dev8Server(tmp_path / "b", postgres.create_database(), {"DEV8_REPLICA_ID": "b"}).start()
    doomed = another_replica(survivor, tmp_path / "a", DEV8_REPLICA_ID="a", DEV8_FAULT_KILL_AFTER="start").start()
    try:
        alice = User(doomed, "alice@example.com", tmp_path / "alice")
        name = unique("k")
        with contextlib.suppress(httpx.HTTPError):  # it dies once the container is started
            alice.http().post("/environments", json={"name": name})
        assert doomed.wait_exit(120) == -9
        inst = survivor.installation()
        containers = docker_client.containers.list(all=True, filters={"label": f"dev8.installation={inst}"})
        assert len(containers) == 1 and containers[0].status == "running"
        alice.server = survivor
        wait_until(lambda: state(alice, name) == "running", timeout=120, what="taken over by the other replica")
        env_id = alice.http().get(f"/environments/{name}").json()["id"]
        after, volumes = objects(docker_client, survivor, env_id)
        assert [c.id for c in after] == [containers[0].id] and len(volumes) == 1  # adopted, not made again
        trust_gateway_of(alice, survivor)
        assert alice.ssh(name, "echo finished").stdout.strip() == "finished"
    finally:
        doomed.kill(check_loop=False)
        survivor.shutdown()


@pytest.fixture
def behind_relay(tmp_path, base_image) -> Iterator[tuple[SocketRelay, User, str]]:  # type: ignore[no-untyped-def]
    """A server that reaches the Docker engine through a relay the test can cut or wedge, a
    user of it, and one running environment of theirs."""
    relay = SocketRelay(tmp_path / "docker.sock").start()
    server = Dev8Server(tmp_path / "server", extra_env={"DOCKER_HOST": f"unix://{relay.path}"}).start()
    try:
        alice = User(server, "alice@example.com", tmp_path / "alice")
        name = unique("d")
        alice.cli("create", name)
        yield relay, alice, name
    finally:
        relay.unwedge()
        relay.stop()
        server.shutdown()


def test_docker_daemon_down_gives_503_marks_unreachable_and_recovers(behind_relay) -> None:  # type: ignore[no-untyped-def]
    relay, alice, name = behind_relay
    relay.stop()
    r = alice.http().post("/environments", json={"name": unique("n")})
    assert r.status_code == 503 and "Docker engine unreachable" in r.json()["detail"]
    assert len(alice.http().get("/environments").json()) == 1  # nothing half-created
    wait_until(lambda: state(alice, name) == "unreachable", timeout=30, what="unreachable state")
    shown = alice.cli("show", name).stdout
    assert "unreachable" in shown
    relay.start()
    wait_until(lambda: state(alice, name) == "running", timeout=60, what="recovery")
    assert alice.ssh(name, "echo back").stdout.strip() == "back"


def test_a_wedged_docker_engine_is_503_within_seconds_marks_unreachable_and_recovers(behind_relay) -> None:  # type: ignore[no-untyped-def]
    """The engine's socket accepts and reads, but never answers (not merely refused)."""
    relay, alice, name = behind_relay
    relay.wedge()
    with httpx.Client(base_url=alice.server.url, headers={"Authorization": f"Bearer {alice.token}"}, timeout=20) as c:
        for r in (c.post("/api/v1/environments", json={"name": unique("n")}),
                  c.post(f"/api/v1/environments/{name}/stop")):
            assert r.status_code == 503, r.text
            assert "docker" in r.json()["detail"].lower(), r.text
        health = c.get("/healthz").json()
        assert "Docker engine unreachable" in health["runtime"] or "has not answered" in health["runtime"], health
    wait_until(lambda: state(alice, name) == "unreachable", timeout=60, what="unreachable state")
    relay.unwedge()
    wait_until(lambda: state(alice, name) == "running", timeout=90, what="recovery")
    assert alice.ssh(name, "echo back").stdout.strip() == "back"
