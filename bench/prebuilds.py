"""create→ready for a repository whose devcontainer.json's onCreateCommand takes its time and
writes many files (as an `npm ci` does), with and without a prebuild, beside an empty
environment's create→ready in the same run (the goal: with a prebuild, at most 1.5× the empty
one, whatever onCreateCommand costs). The repository comes over HTTPS with a token from the
test git server (tests/gitserver.py in a container). Usage:
    python -m bench.prebuilds [--runs 3] [--files 20000] [--seconds 30] [--image dev8/base:latest]
"""
from __future__ import annotations

import argparse
import json
import time

import docker
import httpx

from bench.common import dev8_server, median, report, wait_ready
from bench.lifecycle import TOKEN, git_server
from tests.support import publish_to_git_server, wait_until


def timed_create(client: httpx.Client, name: str, body: dict) -> float:
    t0 = time.perf_counter()
    client.post("/environments", json={"name": name, **body}).raise_for_status()
    wait_ready(client, name)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--files", type=int, default=20000, help="files onCreateCommand writes")
    ap.add_argument("--seconds", type=float, default=30, help="how long onCreateCommand works besides")
    ap.add_argument("--image", default="dev8/base:latest")
    args = ap.parse_args()
    dc = docker.from_env()
    on_create = (f"python3 -c \"import os; os.makedirs('node_modules', exist_ok=True); "
                 f"[open(f'node_modules/m{{i}}', 'w').write(str(i)) for i in range({args.files})]\" "
                 f"&& sleep {args.seconds}")
    with git_server(dc) as repo:
        [container] = [c for c in dc.containers.list() if c.attrs["Config"]["Cmd"][-1:] == ["/srv/gitserver.py"]]
        publish_to_git_server(container, {".devcontainer/devcontainer.json": json.dumps({
            "onCreateCommand": on_create, "postCreateCommand": "echo ready > ~/post-created"})})
        server_env = repo.pop("server_env")
        with dev8_server(server_env) as (server, user):
            client = user.http()
            client.put("/secrets/GIT_TOKEN", json={"value": TOKEN}).raise_for_status()
            body = {"image": args.image, "repo": repo["repo"], "git": repo["git"]}
            timed_create(client, "warmup", {"image": args.image})
            made = client.put("/prebuilds", json={"repo": repo["repo"], "image": args.image, "git": repo["git"]})
            made.raise_for_status()
            config = made.json()
            t0 = time.perf_counter()
            client.post(f"/prebuilds/{config['id']}/runs").raise_for_status()

            def state() -> str:
                return client.get(f"/prebuilds/{config['id']}").json()["runs"][0]["state"]
            wait_until(lambda: state() in ("ready", "failed"), timeout=1800, interval=0.5, what="the prebuild")
            if state() != "ready":
                raise RuntimeError(client.get(f"/prebuilds/{config['id']}").json()["runs"][0]["message"])
            prebuild_run = time.perf_counter() - t0
            empty, plain, prebuilt = [], [], []
            for i in range(args.runs):
                empty.append(timed_create(client, f"empty{i}", {"image": args.image}))
                prebuilt.append(timed_create(client, f"pre{i}", body))
                plain.append(timed_create(client, f"plain{i}", {**body, "prebuild": False}))
                assert client.get(f"/environments/pre{i}").json()["prebuild"], "the create did not use the prebuild"
            steps = timeline(client, f"pre{args.runs - 1}")
    report(f"prebuilds, {args.files} files and {args.seconds:g} s in onCreateCommand, image {args.image}, "
           f"{args.runs} runs (medians)", [
               ("the prebuild run (once)", prebuild_run, "s"),
               ("empty environment create → ready", median(empty), "s"),
               ("repository create → ready, no prebuild", median(plain), "s"),
               ("repository create → ready, from the prebuild", median(prebuilt), "s"),
               ("ratio from the prebuild / empty", median(prebuilt) / median(empty), "x"),
               ("ratio no prebuild / from the prebuild", median(plain) / median(prebuilt), "x"),
           ])
    report("where the last create from the prebuild spent its time (each step, running → ok)", steps)


def timeline(client: httpx.Client, name: str) -> list[tuple[str, float, str]]:
    """Seconds from each step's start to the next step's start, from its events."""
    from datetime import datetime
    events = client.get(f"/environments/{name}/events", params={"follow": "false"}).json()
    starts: dict[str, datetime] = {}
    for ev in events:
        starts.setdefault(ev["step"], datetime.fromisoformat(ev["ts"]))
    ordered = sorted(starts.items(), key=lambda kv: kv[1])
    return [(step, (later - at).total_seconds(), "s")
            for (step, at), (_, later) in zip(ordered, ordered[1:], strict=False)]


if __name__ == "__main__":
    main()
