"""The kubernetes runtime against the real kube-apiserver and the test kubelet (tests/kube):
dev8's create → ready and stop → start → ready beside the kubelet's own time from first
seeing the pod to its sshd answering (dev8's overhead: the registry check, the claim, the
pod, the watch, the host key from the log through the API, SSH, configure), and what the
reconciler's periodic pass costs at 100 environments (``observe_all``: pods and claims by
label) beside one plain labelled pod listing. Medians of --runs. Usage:
    python -m bench.kube [--runs 5] [--listed 100]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import docker
from kubernetes import client

from bench.common import create_stop_start, dev8_server, median, report
from tests.kube.cluster import KubeCluster
from tests.kube.kubelet import TestKubelet
from tests.support import Registry

NAMESPACE = "dev8-environments"


def pod_uid(core: client.CoreV1Api, env_id: str) -> str:
    while True:
        pods = core.list_namespaced_pod(NAMESPACE, label_selector=f"dev8.env-id={env_id}").items
        live = [p for p in pods if not p.metadata.deletion_timestamp]
        if live:
            return str(live[0].metadata.uid)
        time.sleep(0.05)


def listing(cluster: KubeCluster, count: int, runs: int) -> list[tuple[str, float, str]]:
    """observe_all over ``count`` environments (pods bound to no real node: listed, never run)."""
    import asyncssh

    from dev8.runtimes.base import EnvSpec
    from dev8.runtimes.kube import KubernetesRuntime, builders
    from dev8.runtimes.kube.options import KubernetesOptions
    rt = KubernetesRuntime(KubernetesOptions(kubeconfig=cluster.kubeconfig("dev8")))
    core = client.CoreV1Api(cluster.admin())
    key = asyncssh.generate_private_key("ssh-ed25519").export_public_key("openssh").decode().strip()
    for i in range(count):
        spec = EnvSpec(env_id=f"list{i}", owner_id=1, name=f"l{i}", image="dev8/base:latest", cpus=0.5,
                       memory_bytes=256 << 20, control_public_key=key, installation="benchls")
        core.create_namespaced_persistent_volume_claim(NAMESPACE, builders.claim(spec, rt.opts))
        body = builders.pod(spec, rt.opts)
        body["spec"]["nodeName"] = "nowhere"  # no kubelet runs it
        core.create_namespaced_pod(NAMESPACE, body)
    dev8_times, plain_times = [], []
    for _ in range(runs * 4):
        t0 = time.perf_counter()
        found = rt.observe_all("benchls")
        dev8_times.append(time.perf_counter() - t0)
        assert len(found) == count
        t0 = time.perf_counter()
        answer = core.list_namespaced_pod(NAMESPACE, label_selector="dev8.installation=benchls",
                                          _preload_content=False)
        assert answer.data
        plain_times.append(time.perf_counter() - t0)
    return [(f"observe_all at {count} environments", median(dev8_times) * 1000, "ms"),
            ("  one plain labelled pod listing", median(plain_times) * 1000, "ms"),
            ("  ratio", median(dev8_times) / median(plain_times), "x")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--listed", type=int, default=100)
    args = ap.parse_args()
    docker_client = docker.from_env()
    with tempfile.TemporaryDirectory(prefix="dev8-bench-kube-"):
        registry = Registry().start()
        cluster = KubeCluster().start()
        # a node as big as the runs need: the default environment asks for 2 CPUs and 4 GB
        kubelet = TestKubelet(cluster.admin(), docker_client, cluster.root / "certs", cpu="64", memory="256Gi").start()
        try:
            cluster.namespace_for_dev8(NAMESPACE)
            core = client.CoreV1Api(cluster.admin())
            from dev8.runtimes.image_push import push
            image = push(docker_client, "dev8/base:latest", registry.host, lambda _m: None)
            env = {"DEV8_RUNTIME": "kubernetes", "DEV8_DEFAULT_IMAGE": image,
                   "DEV8_RUNTIME_KUBECONFIG": str(cluster.kubeconfig("dev8"))}
            with dev8_server(env) as (_server, user):
                api = user.http()
                creates, starts, kube_creates, kube_starts = [], [], [], []
                for i in range(args.runs):
                    name = f"b{i}"
                    uids: list[str] = []

                    def first_pod(name: str = name, uids: list[str] = uids) -> None:
                        uids.append(pod_uid(core, api.get(f"/environments/{name}").json()["id"]))
                    created, started = create_stop_start(api, name, first_pod)
                    creates.append(created)
                    starts.append(started)
                    env_id = api.get(f"/environments/{name}").json()["id"]
                    for uid, times in ((uids[0], kube_creates), (pod_uid(core, env_id), kube_starts)):
                        times.append(kubelet.pod_ready_at[uid] - kubelet.pod_started_at[uid])
                rows = [("test kubelet: pod seen → sshd answers", median(kube_creates), "s"),
                        ("dev8 create → ready", median(creates), "s"),
                        ("  ratio", median(creates) / median(kube_creates), "x"),
                        ("test kubelet: new pod seen → sshd answers", median(kube_starts), "s"),
                        ("dev8 stop → start → ready", median(starts), "s"),
                        ("  ratio", median(starts) / median(kube_starts), "x")]
                for i in range(args.runs):
                    api.delete(f"/environments/{f'b{i}'}")
            rows += listing(cluster, args.listed, args.runs)
            report(f"kubernetes on a real kube-apiserver with the test kubelet ({args.runs} runs, medians; "
                   f"{os.cpu_count()} cores)", rows)
        finally:
            kubelet.stop()
            cluster.stop()
            registry.stop()


if __name__ == "__main__":
    main()
