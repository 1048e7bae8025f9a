"""The Docker runtime's own behaviour on the real engine, below the server."""
from __future__ import annotations

import docker
import pytest

from dev8.runtimes import docker as docker_runtime
from dev8.runtimes.base import EnvSpec
from dev8.runtimes.docker import DockerRuntime
from tests.support import unique


def test_the_environments_network_removed_behind_its_back_is_made_again(  # type: ignore[no-untyped-def]
        docker_client: docker.DockerClient, base_image: str, monkeypatch: pytest.MonkeyPatch) -> None:
    network = unique("dev8-envs-test")
    monkeypatch.setattr(docker_runtime, "ENV_NETWORK", network)
    rt, inst = DockerRuntime(), unique("t")
    specs = [EnvSpec(env_id=unique("id"), owner_id=1, name=n, image=base_image, cpus=0.5, memory_bytes=1 << 28,
                     control_public_key="ssh-ed25519 AAAA", installation=inst) for n in ("a", "b")]
    try:
        rt.prepare(specs[0], lambda m: None)
        rt.ensure_running(specs[0])  # makes the network, and remembers it is there
        rt.remove(specs[0], keep_storage=False)
        docker_client.networks.get(network).remove()
        rt.prepare(specs[1], lambda m: None)
        observed = rt.ensure_running(specs[1])
        assert observed.exists
        container = docker_client.containers.get(specs[1].object_name)
        assert list(container.attrs["NetworkSettings"]["Networks"]) == [network]
    finally:
        for spec in specs:
            rt.remove(spec, keep_storage=False)
        for n in docker_client.networks.list(names=[network]):
            n.remove()
