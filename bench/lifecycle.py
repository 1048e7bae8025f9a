"""create→ready and stop→start→ready through dev8, against the floor: `docker run` of the
same image until its sshd accepts a key. Prints medians and the ratio. With --clone, every
environment also clones a repository over HTTPS with a token from the test git server
(tests/gitserver.py in a container on a network the benchmark creates). Usage:
    python bench/lifecycle.py [--runs 5] [--image dev8/fullstack:latest] [--clone]
"""
from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import asyncssh
import docker
import httpx

from bench.common import dev8_server, median, report, wait_ready
from dev8.core import envssh
from tests.support import GIT_HOST, make_tls_certs, start_git_server


def last_event(client: httpx.Client, name: str) -> int:
    events = client.get(f"/environments/{name}/events", params={"follow": "false"}).json()
    return events[-1]["id"] if events else 0


def floor_once(dc: docker.DockerClient, image: str) -> float:
    key = asyncssh.generate_private_key("ssh-ed25519")
    pem = key.export_private_key("openssh")
    t0 = time.perf_counter()
    c = dc.containers.run(image, detach=True, environment={"DEV8_CONTROL_KEY": key.export_public_key().decode()},
                          ports={"22/tcp": ("127.0.0.1", None)})
    try:
        c.reload()
        port = int(c.attrs["NetworkSettings"]["Ports"]["22/tcp"][0]["HostPort"])
        asyncio.run(_wait(port, pem))
        return time.perf_counter() - t0
    finally:
        c.remove(force=True, v=True)


async def _wait(port: int, pem: bytes) -> None:
    """Until a login with the control key succeeds (the floor has no pinned host key to check)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while True:
        try:
            conn = await asyncio.wait_for(asyncssh.connect(
                "127.0.0.1", port, username="dev", client_keys=[asyncssh.import_private_key(pem)],
                known_hosts=None, agent_path=None, config=[], encryption_algs=envssh.CIPHERS), 10)
            conn.close()
            return
        except (TimeoutError, OSError, asyncssh.Error):
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.05)


TOKEN = "bench-token-0123456789"


@contextmanager
def git_server(dc: docker.DockerClient) -> Iterator[dict]:
    """A test git server on its own network; yields the create body (repo, git provider)
    with the server settings under "server_env"."""
    with tempfile.TemporaryDirectory(prefix="dev8-bench-git-") as root:
        ca = make_tls_certs(Path(root), GIT_HOST)
        net = dc.networks.create(f"dev8-bench-{int(time.time())}")
        container = start_git_server(dc, net.name, Path(root), {"x-access-token": TOKEN})
        try:
            yield {"repo": f"https://{GIT_HOST}:8443/org/app.git", "server_env": {
                       "DEV8_RUNTIME_NETWORK": net.name, "DEV8_ENV_CA_BUNDLE": str(ca)},
                   "git": [{"kind": "github", "host": f"{GIT_HOST}:8443", "secret": "GIT_TOKEN"}]}
        finally:
            container.remove(force=True)
            net.reload()
            for c in net.containers:
                net.disconnect(c, force=True)
            net.remove()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--image", default="dev8/base:latest")
    ap.add_argument("--clone", action="store_true", help="clone a repository from a test git server at create")
    args = ap.parse_args()
    dc = docker.from_env()
    create, restart, floor = [], [], []
    with ExitStack() as stack:
        body: dict = {"image": args.image}
        env: dict[str, str] = {}
        if args.clone:
            repo = stack.enter_context(git_server(dc))
            env = repo.pop("server_env")
            body.update(repo)
        server, user = stack.enter_context(dev8_server(env))
        client = user.http()
        if args.clone:
            client.put("/secrets/GIT_TOKEN", json={"value": TOKEN}).raise_for_status()
        client.post("/environments", json={"name": "warmup", **body})
        wait_ready(client, "warmup")
        for i in range(args.runs):
            floor.append(floor_once(dc, args.image))
            name = f"bench{i}"
            t0 = time.perf_counter()
            r = client.post("/environments", json={"name": name, **body})
            r.raise_for_status()
            wait_ready(client, name)
            create.append(time.perf_counter() - t0)
            client.post(f"/environments/{name}/stop").raise_for_status()
            while client.get(f"/environments/{name}").json()["state"] != "stopped":
                time.sleep(0.05)
            after = last_event(client, name)
            t0 = time.perf_counter()
            client.post(f"/environments/{name}/start").raise_for_status()
            wait_ready(client, name, after)
            restart.append(time.perf_counter() - t0)
    clone = ", with a clone over HTTPS" if args.clone else ""
    report(f"lifecycle, image {args.image}{clone}, {args.runs} runs (medians)", [
        ("floor: docker run until sshd accepts the key", median(floor), "s"),
        ("dev8 create → ready", median(create), "s"),
        ("dev8 stop → start → ready (start part)", median(restart), "s"),
        ("ratio create / floor", median(create) / median(floor), "x"),
        ("ratio start / floor", median(restart) / median(floor), "x"),
    ])


if __name__ == "__main__":
    main()
