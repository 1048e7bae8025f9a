"""Walls between tenants on the Docker runtime: one user's environment cannot reach
another's over the container network, nor dev8's own ports on the host."""
from __future__ import annotations

import docker

from dev8.runtimes.docker import ENV_NETWORK
from tests.support import Dev8Server, User, unique

PROBE = ("python3 -c \"import socket,sys; s=socket.socket(); s.settimeout(3); "
         "print('open' if s.connect_ex((sys.argv[1], int(sys.argv[2]))) == 0 else 'closed')\" {} {}")


def test_environments_cannot_reach_each_other_or_dev8s_ports(server: Dev8Server, alice: User, bob: User,
                                                               docker_client: docker.DockerClient) -> None:
    mine, theirs = unique("a"), unique("b")
    alice.cli("create", mine)
    bob.cli("create", theirs)
    # alice serves something on every address of her environment
    alice.ssh(mine, "nohup python3 -m http.server 8002 --bind 0.0.0.0 >/dev/null 2>&1 &")
    [container] = docker_client.containers.list(filters={"label": f"dev8.installation={server.installation()}",
                                                         "name": mine})
    network = container.attrs["NetworkSettings"]["Networks"][ENV_NETWORK]
    alice_ip, gateway = network["IPAddress"], network["Gateway"]
    import time
    deadline = time.monotonic() + 20
    while alice.ssh(mine, PROBE.format(alice_ip, 8002)).stdout.strip() != "open":  # it listens
        assert time.monotonic() < deadline, "alice's server did not start"
        time.sleep(0.2)
    # bob, on the same network, does not get through to it
    assert bob.ssh(theirs, PROBE.format(alice_ip, 8002)).stdout.strip() == "closed"
    # nor to dev8's HTTP port or SSH gateway through the host's side of the bridge
    for port in (server.http_port, server.ssh_port):
        assert bob.ssh(theirs, PROBE.format(gateway, port)).stdout.strip() == "closed", port
    opts = docker_client.networks.get(ENV_NETWORK).attrs["Options"]
    assert opts.get("com.docker.network.bridge.enable_icc") == "false"
