"""create→ready and stop→start→ready through dev8, against the floor: `docker run` of the
same image until its sshd accepts a key. Prints medians and the ratio. Usage:
    python bench/lifecycle.py [--runs 5]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import time

import asyncssh
import docker
import httpx

from bench.common import dev8_server, median, report
from dev8.core import envssh


def wait_ready(client: httpx.Client, name: str, after: int = 0) -> None:
    with client.stream("GET", f"/environments/{name}/events", params={"after": after},
                       timeout=httpx.Timeout(30, read=None)) as resp:
        for line in resp.iter_lines():
            if line.startswith("data:"):
                ev = json.loads(line[5:])
                if ev["status"] == "error":
                    raise RuntimeError(f"{ev['step']}: {ev['message']}")
                if ev["step"] == "ready":
                    return


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
    await envssh.wait_for_sshd("127.0.0.1", port, pem, deadline=asyncio.get_running_loop().time() + 60)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--image", default="dev8/base:latest")
    args = ap.parse_args()
    dc = docker.from_env()
    create, restart, floor = [], [], []
    with dev8_server() as (server, user):
        client = user.http()
        client.post("/environments", json={"name": "warmup", "image": args.image})
        wait_ready(client, "warmup")
        for i in range(args.runs):
            floor.append(floor_once(dc, args.image))
            name = f"bench{i}"
            t0 = time.perf_counter()
            r = client.post("/environments", json={"name": name, "image": args.image})
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
    report(f"lifecycle, image {args.image}, {args.runs} runs (medians)", [
        ("floor: docker run until sshd accepts the key", median(floor), "s"),
        ("dev8 create → ready", median(create), "s"),
        ("dev8 stop → start → ready (start part)", median(restart), "s"),
        ("ratio create / floor", median(create) / median(floor), "x"),
        ("ratio start / floor", median(restart) / median(floor), "x"),
    ])


if __name__ == "__main__":
    main()
