"""The `dev8` CLI's own cost: each command's wall time against the same request made
directly to the API (server side) and `docker ps` (a CLI that does next to nothing).
Medians of --runs. Usage:
    python -m bench.cli [--runs 7]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from bench.common import dev8_server, median, report, wait_ready


def wall(argv: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, env=env, check=True, capture_output=True, stdin=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    with dev8_server() as (server, user):
        client = user.http()
        client.post("/environments", json={"name": "web"}).raise_for_status()
        wait_ready(client, "web")
        env = server.env(DEV8_CONFIG_DIR=str(user.config_dir))
        dev8 = [str(Path(sys.executable).with_name("dev8"))]  # the installed command users run
        rows: list[tuple[str, float, str]] = [
            ("dev8 --help (wall)", median([wall([*dev8, "--help"], env) for _ in range(args.runs)]), "s")]
        # show asks for the environment and, running, its services' health and its use (over SSH;
        # the use samples CPU for half a second)
        for label, argv, paths in (("list", ["list"], ["/environments"]),
                                   ("show", ["show", "web"], ["/environments/web", "/environments/web/health",
                                                               "/environments/web/stats"])):
            cli = median([wall([*dev8, *argv], env) for _ in range(args.runs)])
            api = []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                for path in paths:
                    client.get(path).raise_for_status()
                api.append(time.perf_counter() - t0)
            rows += [(f"dev8 {label} (wall)", cli, "s"), ("  the same requests to the API", median(api), "s")]
        # server-side admin commands: the store and keyring opened from the data dir, no HTTP
        rows += [(f"dev8 admin {cmd} (wall)", median([wall([*dev8, "admin", cmd, f"a{i}-{cmd}@example.com", *more], env)
                                                       for i in range(args.runs)]), "s")
                 for cmd, more in (("create-user", []),)]
        rows += [(f"dev8 admin {cmd} (wall)", median([wall([*dev8, "admin", cmd, "a0-create-user@example.com", *more],
                                                           env) for _ in range(args.runs)]), "s")
                 for cmd, more in (("create-token", []), ("set-quota", ["--running", "3"]))]
        creates, direct = [], []
        for i in range(args.runs):
            creates.append(wall([*dev8, "create", f"c{i}"], env))
            t0 = time.perf_counter()
            client.post("/environments", json={"name": f"d{i}"}).raise_for_status()
            wait_ready(client, f"d{i}")
            direct.append(time.perf_counter() - t0)
        rows += [("dev8 create → ready (wall)", median(creates), "s"),
                 ("  API create + event stream → ready", median(direct), "s"),
                 ("  CLI's own cost", median(creates) - median(direct), "s"),
                 ("docker ps (wall)", median([wall(["docker", "ps"], env) for _ in range(args.runs)]), "s")]
    report(f"dev8 CLI vs the API it calls ({args.runs} runs, medians)", rows)


if __name__ == "__main__":
    main()
