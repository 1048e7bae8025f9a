"""The aci runtime against the local Azure stand-in (tests/azure/arm_stub.py): dev8's
create → ready and stop → start → ready beside the stand-in's own time from the PUT (or
start) it accepted to the container running (dev8's overhead: credentials, the registry
check, the share, polling, reading the host key, SSH, configure), and the home's save and
restore for a home with a node_modules of ~20k files. Medians of --runs. Usage:
    python -m bench.aci [--runs 5] [--files 20000]
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import tempfile
from pathlib import Path

import docker

from bench.common import create_stop_start, dev8_server, median, report
from tests.azure.arm_stub import ArmStub
from tests.support import Registry, make_tls_certs

# ~20k files the way npm lays them out: many small packages of a few files each
MAKE_NODE_MODULES = """python3 - <<'PY'
import os
for p in range({packages}):
    d = os.path.expanduser(f"~/workspace/app/node_modules/pkg{{p}}/lib")
    os.makedirs(d, exist_ok=True)
    for f in range(9):
        with open(os.path.join(d, f"m{{f}}.js"), "w") as fh:
            fh.write("module.exports = " + repr("x" * (200 + 37 * f)) + ";\\n")
    with open(os.path.join(d, "..", "package.json"), "w") as fh:
        fh.write('{{"name": "pkg{{p}}", "version": "1.0.0"}}')
PY"""


# the entrypoint's restore, timed: into an empty folder, as at a start
TIME_RESTORE = """import shutil, subprocess, tempfile, time
d = tempfile.mkdtemp(dir="/home/dev")  # the home's own disk, where the start restores it
archive = open("/etc/dev8/home-archive").read().strip()
t = time.monotonic()
subprocess.run(["tar", "--numeric-owner", "-xpzf", archive, "-C", d], check=True)
print(time.monotonic() - t)
shutil.rmtree(d)"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--files", type=int, default=20000)
    args = ap.parse_args()
    client = docker.from_env()
    with tempfile.TemporaryDirectory(prefix="dev8-bench-aci-") as tmp:
        root = Path(tmp)
        registry = Registry().start()
        make_tls_certs(root / "certs", "127.0.0.1")
        stub = ArmStub(root / "stub", client, root / "certs").start()
        try:
            from dev8.runtimes.image_push import push
            image = push(client, "dev8/base:latest", registry.host, lambda _m: None)
            env = {"DEV8_RUNTIME": "aci", "DEV8_DEFAULT_IMAGE": image, **stub.env()}
            with dev8_server(env, wrap=stub.resolving()) as (server, user):
                api = user.http()
                creates, starts, stub_creates, stub_starts = [], [], [], []
                for i in range(args.runs):
                    name = f"b{i}"
                    marks: dict[str, float] = {}

                    def group_created(name: str = name, marks: dict[str, float] = marks) -> None:
                        group = next(g for g in stub.groups.values() if g.name.endswith(f"-{name}"))
                        marks["create"] = group.running_at - group.accepted_at
                    created, started = create_stop_start(api, name, group_created)
                    creates.append(created)
                    starts.append(started)
                    stub_creates.append(marks["create"])
                    group = next(g for g in stub.groups.values() if g.name.endswith(f"-{name}"))
                    stub_starts.append(group.running_at - group.accepted_at)
                rows = [("stand-in: PUT accepted → container running", median(stub_creates), "s"),
                        ("dev8 create → ready", median(creates), "s"),
                        ("  ratio", median(creates) / median(stub_creates), "x"),
                        ("stand-in: start accepted → container running", median(stub_starts), "s"),
                        ("dev8 stop → start → ready", median(starts), "s"),
                        ("  ratio", median(starts) / median(stub_starts), "x")]
                # the home's archive with a node_modules of ~args.files files
                packages = max(1, args.files // 10)
                r = user.ssh("b0", MAKE_NODE_MODULES.format(packages=packages), timeout=600)
                assert r.returncode == 0, r.stderr
                count = int(user.ssh("b0", "find ~ -type f | wc -l").stdout)
                saves, restores = [], []
                for _ in range(args.runs):
                    out = user.ssh("b0", "sudo -n dev8-env save-home", timeout=600)
                    assert out.returncode == 0, out.stderr
                    saves.append(json.loads(out.stdout)["seconds"])
                    r = user.ssh("b0", f"sudo -n python3 -c {shlex.quote(TIME_RESTORE)}", timeout=600)
                    assert r.returncode == 0, r.stderr
                    restores.append(float(r.stdout))
                size = json.loads(out.stdout)["bytes"]
                rows += [(f"home: {count} files, archive {size / 1e6:.1f} MB", 0.0, ""),
                         ("  save (tar + gzip -1 to the share)", median(saves), "s"),
                         ("  restore (as at start)", median(restores), "s")]
            report(f"aci on the local Azure stand-in ({args.runs} runs, medians; {os.cpu_count()} cores)", rows)
        finally:
            stub.stop()
            registry.stop()


if __name__ == "__main__":
    main()
