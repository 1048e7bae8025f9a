"""The fair floor dev8's starts are measured against, and what a start costs.

The floor is the container dev8 would create for an environment, made by the Docker runtime's
own builder (``container_kwargs``: CPU and memory limits, home volume, tmpfs, ``--init``,
restart policy, a loopback port, dev8's bridge with inter-container traffic off) and started
with plain ``docker run``, clocked until its sshd shows its banner (the banner floor) and until
it accepts a key login (the key-login floor). ``same_options`` is asserted between a floor
container and one of dev8's, so the two cannot drift apart.

CPU per start is counted where it is spent: the dev8 server process, the engine (dockerd,
containerd and the per-container shims, whose ``runc`` children are reaped into them) and
inside each container (its cgroup's CPU accounting).
"""
from __future__ import annotations

import asyncio
import os
import socket
import statistics
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh
import docker

from dev8.core import envssh
from dev8.runtimes.base import EnvSpec
from dev8.runtimes.docker import DockerRuntime, container_kwargs

FLOOR_LABEL = "dev8.bench-floor"


def proc_cpu(pid: int, children: bool = False) -> float:
    """CPU seconds of a process (and, with ``children``, of its reaped children)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if children else 0)
    return ticks / os.sysconf("SC_CLK_TCK")


def engine_pids() -> list[int]:
    """dockerd, containerd and every containerd shim running now."""
    out = subprocess.run(["pgrep", "-f", "^(/usr/bin/|/usr/local/bin/)?(dockerd|containerd)( |$)|containerd-shim"],
                         capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def engine_cpu() -> dict[int, float]:
    return {pid: proc_cpu(pid, children=True) for pid in engine_pids()}


def engine_delta(before: dict[int, float]) -> float:
    """The engine's CPU since ``before`` (a shim started since counts whole; read it before
    its container is removed, which ends it)."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in engine_cpu().items())


def container_cpu(attrs: dict) -> float:
    """CPU seconds used inside a running container (its cgroup, v1 or v2)."""
    pid = attrs["State"]["Pid"]
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # cgroup v2
            for row in Path(f"/sys/fs/cgroup{path}/cpu.stat").read_text().splitlines():
                if row.startswith("usage_usec "):
                    return int(row.split()[1]) / 1e6
        if "cpuacct" in controllers.split(","):
            return int(Path(f"/sys/fs/cgroup/{controllers}{path}/cpuacct.usage").read_text()) / 1e9
    raise RuntimeError(f"no CPU accounting found for container pid {pid}")


def processes_started(container) -> int:  # type: ignore[no-untyped-def]
    """Processes started in the container so far (its PID namespace hands out PIDs in order;
    the reading process itself is not counted)."""
    out = container.exec_run(["cat", "/proc/sys/kernel/ns_last_pid"]).output.decode().strip()
    return int(out) - 1


def ssh_logins(container) -> int:  # type: ignore[no-untyped-def]
    """Logins its sshd accepted (sshd -e logs them to the container's log)."""
    return container.logs(stdout=True, stderr=True).decode(errors="replace").count("Accepted publickey")


def same_options(attrs: dict) -> dict:
    """What must be equal between a floor container and dev8's (names and labels aside)."""
    host, config = attrs["HostConfig"], attrs["Config"]
    return {"image": attrs["Image"], "cpus": host.get("NanoCpus"), "memory": host.get("Memory"),
            "tmpfs": host.get("Tmpfs"), "init": host.get("Init"), "restart": host.get("RestartPolicy"),
            "ports": {k: [{"HostIp": b.get("HostIp")} for b in v] for k, v in (host.get("PortBindings") or {}).items()},
            "network": host.get("NetworkMode"), "env": sorted(e.split("=", 1)[0] for e in config.get("Env") or []),
            "mounts": sorted((m["Type"], m["Destination"]) for m in attrs.get("Mounts") or []),
            "entrypoint": config.get("Entrypoint"), "cmd": config.get("Cmd"), "user": config.get("User")}


@dataclass
class FloorBatch:
    banner: list[float] = field(default_factory=list)  # seconds from the batch's start, in order
    login: list[float] = field(default_factory=list)
    engine_cpu: float = 0.0
    inside_cpu: float = 0.0
    processes: list[int] = field(default_factory=list)
    options: dict = field(default_factory=dict)

    def cpu_per_start(self) -> float:
        return (self.engine_cpu + self.inside_cpu) / len(self.banner)


def _wait_banner(port: int, deadline: float) -> None:
    """Until the sshd behind ``port`` sends its banner (the engine's proxy accepts and
    closes connections before sshd listens)."""
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.settimeout(5)
                if s.recv(64).startswith(b"SSH-"):
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"no SSH banner on port {port}")
        time.sleep(0.02)


async def _wait_login(port: int, key: asyncssh.SSHKey, deadline: float) -> None:
    while True:
        try:
            conn = await asyncio.wait_for(asyncssh.connect(
                "127.0.0.1", port, username="dev", client_keys=[key], known_hosts=None, agent_path=None,
                config=[], encryption_algs=envssh.CIPHERS), 10)
            conn.close()
            return
        except (TimeoutError, OSError, asyncssh.Error):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


def floor_batch(dc: docker.DockerClient, n: int, image: str, cpus: float, memory_bytes: int) -> FloorBatch:
    """``n`` floor containers started at once; each clocked to its banner, then to a key
    login; their CPU read while they run; then removed with their volumes."""
    network = DockerRuntime().env_network()
    stamp = f"{os.getpid()}x{time.monotonic_ns()}"
    keys = [asyncssh.generate_private_key("ssh-ed25519") for _ in range(n)]
    specs = [EnvSpec(env_id=f"floor{i}", owner_id=0, name=f"floor{i}", image=image, cpus=cpus,
                     memory_bytes=memory_bytes, control_public_key=keys[i].export_public_key().decode().strip(),
                     installation=f"floor{stamp}") for i in range(n)]
    batch = FloorBatch()
    containers: list = [None] * n
    engine_before = engine_cpu()
    t0 = time.monotonic()

    def one(i: int) -> tuple[float, float]:
        spec = specs[i]
        kwargs = {**container_kwargs(spec, network), "labels": {FLOOR_LABEL: stamp}}  # not dev8's to manage
        c = containers[i] = dc.containers.run(**kwargs)
        c.reload()
        port = int(c.attrs["NetworkSettings"]["Ports"]["22/tcp"][0]["HostPort"])
        deadline = time.monotonic() + 120
        _wait_banner(port, deadline)
        banner = time.monotonic() - t0
        asyncio.run(_wait_login(port, keys[i], deadline))
        return banner, time.monotonic() - t0

    try:
        with ThreadPoolExecutor(n) as pool:
            times = list(pool.map(one, range(n)))
        batch.banner = sorted(t[0] for t in times)
        batch.login = sorted(t[1] for t in times)
        for c in containers:
            c.reload()
        batch.inside_cpu = sum(container_cpu(c.attrs) for c in containers)
        batch.engine_cpu = engine_delta(engine_before)
        batch.processes = [processes_started(c) for c in containers]
        batch.options = same_options(containers[0].attrs)
    finally:
        remove_floor(dc, stamp)
    return batch


def remove_floor(dc: docker.DockerClient, stamp: str = "") -> None:
    """Floor containers and their home volumes (all of them without ``stamp``)."""
    label = f"{FLOOR_LABEL}={stamp}" if stamp else FLOOR_LABEL
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda c: c.remove(force=True), dc.containers.list(all=True, filters={"label": label})))
        list(pool.map(lambda v: v.remove(force=True), dc.volumes.list(filters={"name": f"dev8-floor{stamp}"})))


def kth(times: list[float], k: int) -> float:
    """When the k-th (1-based) of a batch was ready."""
    return sorted(times)[k - 1]


def mean(xs: list[float]) -> float:
    return statistics.fmean(xs)
