"""One environment that hangs never delays another: the control plane connects to each
environment under a lock of that environment's own (core.connections), and gives up on a
hung one in bounded time."""
from __future__ import annotations

import threading
import time

import docker
import httpx

from tests.support import Dev8Server, User, start_envapps, unique


def _while_one_hangs(url: str, hung: str, healthy: str, auth: dict) -> tuple[dict, float]:
    """Open the hung environment's preview in a thread and, meanwhile, the healthy one's."""
    hung_result: dict = {}

    def open_hung() -> None:
        started = time.monotonic()
        r = httpx.get(url.format(hung), headers=auth, timeout=90)
        hung_result.update(status=r.status_code, text=r.text, seconds=time.monotonic() - started)
    waiting = threading.Thread(target=open_hung)
    waiting.start()
    time.sleep(0.5)  # let it reach the paused environment
    started = time.monotonic()
    r = httpx.get(url.format(healthy), headers=auth, timeout=60)
    healthy_seconds = time.monotonic() - started
    assert r.status_code == 200 and r.json()["path"] == "/"
    assert waiting.is_alive(), f"the paused environment answered first: {hung_result}"
    waiting.join(90)
    assert not waiting.is_alive()
    return hung_result, healthy_seconds


def test_a_paused_environment_does_not_stall_browser_access_to_another(
        server: Dev8Server, alice: User, docker_client: docker.DockerClient) -> None:
    hung, healthy = unique("h"), unique("ok")
    for name in (hung, healthy):
        alice.cli("create", name)
        start_envapps(alice, name)
    auth = {"authorization": f"Bearer {alice.token}"}
    url = f"{server.url}/@{alice.username}/{{}}/ports/8100/"
    assert httpx.get(url.format(hung), headers=auth).status_code == 200
    [container] = docker_client.containers.list(filters={"label": f"dev8.installation={server.installation()}",
                                                         "name": hung})
    container.pause()  # sshd accepts TCP (the kernel still answers) but never speaks
    try:
        # 1. over the pooled connection: it is given up (keepalive), the request fails
        result, healthy_seconds = _while_one_hangs(url, hung, healthy, auth)
        assert result["status"] == 502, result
        print(f"\npooled: healthy answered in {healthy_seconds * 1000:.0f} ms; the paused one "
              f"failed after {result['seconds']:.1f} s")
        # 2. no connection yet (a restarted server): connecting to it waits on its own lock only
        server.kill()
        server.start()
        result, healthy_seconds = _while_one_hangs(url, hung, healthy, auth)
        assert result["status"] == 502 and "not reachable" in result["text"], result
        health = alice.http().get(f"/environments/{healthy}/health", timeout=60).json()
        assert "error" not in health, health
        print(f"connecting: healthy answered in {healthy_seconds * 1000:.0f} ms; the paused one "
              f"failed after {result['seconds']:.1f} s")
    finally:
        container.unpause()
    assert httpx.get(url.format(hung), headers=auth, timeout=60).status_code == 200  # back once unpaused
