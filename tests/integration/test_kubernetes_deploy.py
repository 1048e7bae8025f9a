"""dev8 itself on the (test) cluster, installed from deploy/kubernetes as the README says:
its server image (scripts/server-image.sh) pulled from the local registry, the Deployment's
two replicas made by the real controller manager, on PostgreSQL and the keyring from the
Secret, the service account's token added by the API server's admission and used in-cluster
under the shipped Role, the NetworkPolicy letting only dev8's pods reach environments'
port 22 (the test kubelet enforces it). No kube-proxy runs here: users reach the replicas
through balancers that stand for the two Services. One thing is added to the manifests: the
local registry is on this machine's loopback, which the node (Docker) pulls from but a pod
cannot reach, so a sidecar forwards the pod's own loopback port to it; in a cluster dev8 and
the nodes reach the registry under one name."""
from __future__ import annotations

import base64
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, utils

from tests.kube.cluster import DEPLOY
from tests.support import Balancer, Dev8Server, Postgres, User, unique, wait_until

REPO = Path(__file__).resolve().parents[2]
SELECTOR = "app.kubernetes.io/name=dev8"
# The sidecar's forwarder: python -c FORWARD LISTEN_HOST LISTEN_PORT TO_HOST TO_PORT
FORWARD = """
import asyncio, sys

async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()

async def serve(reader, writer):
    up_reader, up_writer = await asyncio.open_connection(sys.argv[3], int(sys.argv[4]))
    await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer), return_exceptions=True)

async def main():
    server = await asyncio.start_server(serve, sys.argv[1], int(sys.argv[2]))
    await server.serve_forever()

asyncio.run(main())
"""


@pytest.fixture(scope="module")
def server_image(registry, docker_client) -> str:  # type: ignore[no-untyped-def]
    """dev8's server image, built from this checkout the README's way and pushed."""
    from dev8.runtimes.image_push import push
    built = subprocess.run([str(REPO / "scripts" / "server-image.sh"), "dev8/server:test"], capture_output=True,
                           text=True, timeout=1200)
    assert built.returncode == 0, built.stderr[-3000:]
    return push(docker_client, built.stdout.split()[-1], registry.host, lambda _m: None)


def manifests(image: str, settings: dict[str, str], sidecar: dict[str, Any]) -> list[dict[str, Any]]:
    """deploy/kubernetes as `kubectl apply -k` sends it, with this test's image (the
    kustomization's images: rule), settings (the README's edit of settings.yaml) and sidecar."""
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    docs = [d for name in kustomization["resources"] for d in yaml.safe_load_all((DEPLOY / name).read_text()) if d]
    for doc in docs:
        if doc["kind"] == "Deployment":
            for c in doc["spec"]["template"]["spec"]["containers"]:
                assert c["image"].startswith(kustomization["images"][0]["name"] + ":")
                c["image"] = image
            doc["spec"]["template"]["spec"]["containers"].append(sidecar)
        if doc["kind"] == "ConfigMap":
            doc["data"] = settings
    return docs


@pytest.fixture(scope="module")
def deployed(kube_cluster, kubelet, registry, server_image: str, registry_base_image: str,  # type: ignore[no-untyped-def]
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Dev8Server, list[Any]]]:
    """dev8 applied from the manifests; a server object for the test helpers whose URL and
    SSH address are the balancers' (the admin CLI runs here, on the same database)."""
    root = tmp_path_factory.mktemp("kube-deploy")
    pg = Postgres(trust_from=kubelet.subnet)
    pg.start()
    database = pg.create_database()
    kid = "k" + os.urandom(8).hex()
    keyring = json.dumps({"active": kid, "keys": {kid: base64.b64encode(os.urandom(32)).decode()}})
    web, ssh = Balancer(), Balancer()
    settings = yaml.safe_load((DEPLOY / "settings.yaml").read_text())["data"]
    settings.pop("DEV8_WILDCARD_DOMAIN")  # no wildcard DNS here: apps by path
    settings.update(DEV8_DEFAULT_IMAGE=registry_base_image, DEV8_PUBLIC_URL=web.url,
                    DEV8_SSH_PUBLIC_ADDR=f"127.0.0.1:{ssh.port}")
    registry_host, registry_port = registry.host.rsplit(":", 1)
    to_registry = Balancer((registry_host, int(registry_port)), bind=kubelet.gateway)
    sidecar = {"name": "registry", "image": server_image,
               "command": ["/opt/dev8/bin/python", "-c", FORWARD, "0.0.0.0", registry_port, kubelet.gateway,
                           str(to_registry.port)],
               "readinessProbe": {"tcpSocket": {"port": int(registry_port)}},
               "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "64Mi"}},
               "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                   "capabilities": {"drop": ["ALL"]}}}
    api = kube_cluster.admin()
    core = client.CoreV1Api(api)
    made: list[dict[str, Any]] = []
    to_registry.start()
    try:
        for doc in manifests(server_image, settings, sidecar):
            if doc["kind"] == "Namespace" and _namespace(core, doc["metadata"]["name"]):
                core.patch_namespace(doc["metadata"]["name"], {"metadata": {"labels": doc["metadata"]["labels"]}})
                continue
            try:
                utils.create_from_dict(api, doc)
                made.append(doc)
            except utils.FailToCreateError as exc:  # the Role and its binding the kubelet fixture made from rbac.yaml
                if {e.status for e in exc.api_exceptions} != {409} or doc["kind"] not in ("Role", "RoleBinding"):
                    raise
            if doc["kind"] == "Namespace" and doc["metadata"]["name"] == "dev8":
                core.create_namespaced_secret("dev8", {"metadata": {"name": "dev8"}, "stringData": {
                    "database-url": database.replace("127.0.0.1", kubelet.gateway), "keyring.json": keyring}})

        def replicas_ready() -> list[Any] | None:
            pods = [p for p in core.list_namespaced_pod("dev8", label_selector=SELECTOR).items
                    if p.metadata.deletion_timestamp is None and any(
                        c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])]
            return pods if len(pods) == 2 else None
        try:
            wait_until(replicas_ready, timeout=240, interval=1, what="dev8's two replicas ready")
        except AssertionError:
            raise AssertionError(f"{kubelet.errors}\n{_logs(core)}\n{kube_cluster.log_tail()}") from None
        pods = sorted(replicas_ready() or [], key=lambda p: p.metadata.name)
        a, b = (p.status.pod_ip for p in pods)
        web.backends, ssh.backends = [(a, 7080), (b, 7080)], [(b, 2222), (a, 2222)]  # HTTP to one, SSH to the other
        web.start()
        ssh.start()
        users_view = Dev8Server(root / "cli", database_url=database, extra_env={"DEV8_KEYRING": keyring})
        users_view.url, users_view.ssh_port = web.url, ssh.port
        yield users_view, pods
        assert not kubelet.errors, kubelet.errors
    finally:
        web.stop()
        ssh.stop()
        to_registry.stop()
        for doc in reversed(made):
            if doc["kind"] != "Namespace":  # no namespace controller runs to empty one
                _delete(api, doc)
        wait_until(lambda: not core.list_namespaced_pod("dev8", label_selector=SELECTOR).items, timeout=60,
                   what="dev8's pods gone with their Deployment")
        pg.stop()


def _namespace(core: client.CoreV1Api, name: str) -> bool:
    try:
        core.read_namespace(name)
        return True
    except client.ApiException as exc:
        if exc.status == 404:
            return False
        raise


def _delete(api: client.ApiClient, doc: dict[str, Any]) -> None:
    kind, meta = doc["kind"], doc["metadata"]
    group = {"Deployment": client.AppsV1Api, "NetworkPolicy": client.NetworkingV1Api,
             "Role": client.RbacAuthorizationV1Api, "RoleBinding": client.RbacAuthorizationV1Api}.get(kind, client.CoreV1Api)
    snake = "".join(f"_{ch.lower()}" if ch.isupper() else ch for ch in kind).lstrip("_")
    try:  # the Deployment's replica set and pods go with it (the garbage collector, foreground)
        getattr(group(api), f"delete_namespaced_{snake}")(meta["name"], meta["namespace"],
                                                          propagation_policy="Foreground",
                                                          _preload_content=False)  # a Service answers a Status the client cannot parse
    except client.ApiException as exc:
        if exc.status != 404:
            raise


def _logs(core: client.CoreV1Api) -> str:
    out = []
    for pod in core.list_namespaced_pod("dev8", label_selector=SELECTOR).items:
        try:
            out.append(core.read_namespaced_pod_log(pod.metadata.name, "dev8", container="dev8", tail_lines=40))
        except client.ApiException as exc:
            out.append(f"{pod.metadata.name}: {exc.reason} {pod.status}")
    return "\n".join(out)


def test_dev8_installed_from_its_manifests_runs_environments_on_the_cluster(  # type: ignore[no-untyped-def]
        deployed, kube_cluster, tmp_path: Path) -> None:
    server, replicas = deployed
    core = client.CoreV1Api(kube_cluster.admin())
    # each replica (non-root, read-only root) has its service account's token, mounted by admission,
    # and read the settings: the first admin's setup link is in its log (README: kubectl logs deploy/dev8)
    for pod in replicas:
        assert "/var/run/secrets/kubernetes.io/serviceaccount" in {m.mount_path for m in pod.spec.containers[0].volume_mounts}
        assert f"Create the first admin at {server.url}/setup?token=" in core.read_namespaced_pod_log(pod.metadata.name, "dev8", container="dev8")

    alice = User(server, f"{unique('alice')}@example.com", tmp_path / "alice")
    first, second = unique("k"), unique("k")
    for name in (first, second):  # through the HTTP balancer: the first replica
        created = alice.cli("create", name, "--cpus", "0.5", "--memory", "1g")  # the node holds dev8's replicas too
        assert f"{name} is ready" in created.stdout, created.stdout
    env_ids = {name: alice.http().get(f"/environments/{name}").json()["id"] for name in (first, second)}
    pods = {name: core.list_namespaced_pod("dev8-environments", label_selector=f"dev8.env-id={env_id}").items
            for name, env_id in env_ids.items()}
    assert all(len(p) == 1 for p in pods.values())
    # SSH through the other replica's gateway (the SSH balancer): the NetworkPolicy lets dev8's pods in
    r = alice.ssh(first, "echo kept > ~/workspace/k.txt && hostname")
    pod = pods[first][0]
    assert r.returncode == 0 and r.stdout.strip() == (pod.spec.hostname or pod.metadata.name), r.stderr
    # ...and nothing else: one environment cannot reach another's sshd
    probe = (f"python3 -c 'import socket; socket.create_connection((\"{pods[second][0].status.pod_ip}\", 22), timeout=3)' "
             "2>/dev/null && echo reached || echo refused")
    assert alice.ssh(first, probe).stdout.strip() == "refused"

    alice.cli("stop", first)
    alice.cli("start", first)
    again = core.list_namespaced_pod("dev8-environments", label_selector=f"dev8.env-id={env_ids[first]}").items
    assert len(again) == 1 and again[0].metadata.uid != pod.metadata.uid
    assert alice.ssh(first, "cat ~/workspace/k.txt").stdout.strip() == "kept"
    for name in (first, second):
        alice.cli("delete", name, "--yes")
