"""create→ready and stop→start→ready through dev8, against the fair floor (bench/floor.py:
`docker run` with exactly dev8's container options, until its sshd shows its banner and
until it accepts a key). Prints medians and the ratios. With --clone, every
environment also clones a repository over HTTPS with a token from the test git server
(tests/gitserver.py in a container on a network the benchmark creates). Usage:
    python bench/lifecycle.py [--runs 5] [--image dev8/fullstack:latest] [--clone]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import docker
import httpx

from bench.common import dev8_server, median, report, wait_ready
from bench.floor import floor_batch, same_options
from tests.support import GIT_HOST, make_tls_certs, start_git_server


def last_event(client: httpx.Client, name: str) -> int:
    events = client.get(f"/environments/{name}/events", params={"follow": "false"}).json()
    return events[-1]["id"] if events else 0


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
    create, restart, banner, login = [], [], [], []
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
        [warm] = dc.containers.list(filters={"label": f"dev8.installation={server.installation()}"})
        cpus, memory = warm.attrs["HostConfig"]["NanoCpus"] / 1e9, warm.attrs["HostConfig"]["Memory"]
        for i in range(args.runs):
            floor = floor_batch(dc, 1, args.image, cpus, memory)
            assert floor.options == same_options(warm.attrs), "the floor's container differs from dev8's"
            banner.append(floor.banner[0])
            login.append(floor.login[0])
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
        ("floor: docker run until the sshd banner", median(banner), "s"),
        ("floor: docker run until sshd accepts the key", median(login), "s"),
        ("dev8 create → ready", median(create), "s"),
        ("dev8 stop → start → ready (start part)", median(restart), "s"),
        ("ratio create / banner floor", median(create) / median(banner), "x"),
        ("ratio create / key-login floor", median(create) / median(login), "x"),
        ("ratio start / banner floor", median(restart) / median(banner), "x"),
    ])


if __name__ == "__main__":
    main()
