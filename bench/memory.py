"""Idle memory: RSS of the dev8 server process and memory of one idle environment
(cgroup usage minus page cache, as `docker stats` shows). Usage:
    python bench/memory.py [--image dev8/base:latest] [--settle 10]
"""
from __future__ import annotations

import argparse
import time

import docker

from bench.common import dev8_server, report


def rss_mib(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def container_mib(container) -> float:  # type: ignore[no-untyped-def]
    mem = container.stats(stream=False)["memory_stats"]
    stats = mem.get("stats", {})
    cache = stats.get("total_inactive_file", stats.get("inactive_file", stats.get("cache", 0)))
    return (mem["usage"] - cache) / (1 << 20)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--image", default="dev8/base:latest")
    ap.add_argument("--settle", type=float, default=10)
    args = ap.parse_args()
    with dev8_server() as (server, user):
        assert server.proc is not None
        time.sleep(args.settle)
        idle_empty = rss_mib(server.proc.pid)
        user.cli("create", "mem", "--image", args.image)
        time.sleep(args.settle)
        idle_one = rss_mib(server.proc.pid)
        [c] = docker.from_env().containers.list(filters={"label": f"dev8.installation={server.installation()}"})
        env_mib = container_mib(c)
    report(f"idle memory (image {args.image})", [
        ("dev8 server RSS, no environments", idle_empty, "MiB"),
        ("dev8 server RSS, one running environment", idle_one, "MiB"),
        ("idle environment (container, without cache)", env_mib, "MiB"),
    ])


if __name__ == "__main__":
    main()
