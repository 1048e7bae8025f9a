"""A test kubelet (ours, for the tests only): it plays the node, the scheduler and a volume
provisioner against the real API server, and runs each pod on the local Docker engine.

- Registers a Node (its capacity settable, so a pod can be too big for it) whose kubelet
  endpoint serves container logs over HTTPS, so ``pods/log`` goes through the API server
  as in a cluster.
- Binds pending pods (``pods/binding``) when their requests fit and their claims are bound,
  else marks them Unschedulable with the scheduler's wording.
- Provisions claims of its storage class (a Docker volume per claim uid, Bound; one whose
  ``dataSource`` names another claim is a copy of its volume, bound once copied, as a CSI
  driver that clones does) and, as the pvc-protection controller, lets a deleted claim go
  once no pod uses it.
- Runs a bound pod: pulls its image (a real local registry), a container with the pod's
  command, environment (values, ConfigMap and Secret keys), user, read-only root, limits,
  capabilities, no-new-privileges, the claim as a volume, emptyDirs as tmpfs (owned by the
  pod's user and fsGroup), Secret volumes (the service-account token the API server's
  admission adds) as read-only files, on a bridge of its own, with ``KUBERNETES_SERVICE_HOST``
  naming the API server as it is reached from there; reports Running with the container's
  address as the pod IP, Ready by its readiness probe (TCP or HTTP GET), ErrImagePull and
  ImagePullBackOff for an image the registry lacks, restarts; deletes pods whose deletion
  started once their container is gone.
- Enforces NetworkPolicies' ingress rules on that bridge with iptables: pods reach one another
  only where a policy allows it (pod and namespace selectors by labels, TCP ports); the
  bridge keeps inter-container traffic off otherwise, stricter than a cluster with no policy.
Not a kubelet: probes are readiness only, no CNI (the policy rules are ours), no eviction."""
from __future__ import annotations

import base64
import contextlib
import http.server
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

import docker
import httpx
from kubernetes import client, watch

from tests.support import free_port

STORAGE_CLASS = "dev8-test"
LABEL = "dev8-test-kubelet"


def quantity(value: str) -> float:
    units = {"m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30,
             "Ti": 1 << 40}
    for suffix in sorted(units, key=len, reverse=True):
        if value.endswith(suffix):
            return float(value[:-len(suffix)]) * units[suffix]
    return float(value)


class TestKubelet:
    def __init__(self, api: client.ApiClient, docker_client: docker.DockerClient, cert_dir: Path,
                 cpu: str = "4", memory: str = "8Gi", api_server: tuple[str, int] | None = None) -> None:
        self.core = client.CoreV1Api(api)
        self.storage = client.StorageV1Api(api)
        self.networking = client.NetworkingV1Api(api)
        self.api_server = api_server  # (name in the API server's certificate, port): reached at the bridge's gateway
        self.files = Path(tempfile.mkdtemp(prefix="dev8-kubelet-"))  # Secret volumes' files
        self.docker = docker_client
        self.cert_dir = cert_dir
        self.id = uuid.uuid4().hex[:8]
        self.node = f"dev8-test-node-{self.id}"
        self.network = f"dev8-kube-{self.id}"
        self.capacity = {"cpu": cpu, "memory": memory, "pods": "110"}
        self.pods: dict[str, dict[str, Any]] = {}  # uid → the pod as last seen
        self.workers: dict[str, threading.Thread] = {}
        self.claims: dict[str, dict[str, Any]] = {}  # namespace/name → claim as last seen
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.pod_started_at: dict[str, float] = {}  # uid → when the API had it (for the benchmark)
        self.pod_ready_at: dict[str, float] = {}  # uid → when its sshd answered
        self.errors: list[str] = []
        self.extra_networks: list[str] = []  # pods made meanwhile join these too (a test's git server)

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> TestKubelet:
        self.bridge = f"k8s{self.id}"
        network = self.docker.networks.create(self.network, driver="bridge", labels={LABEL: self.id}, options={
            "com.docker.network.bridge.enable_icc": "false", "com.docker.network.bridge.name": self.bridge})
        ipam = network.attrs["IPAM"]["Config"][0]
        self.subnet, self.gateway = ipam["Subnet"], ipam["Gateway"]
        self.chain = f"DEV8-NP-{self.id}"
        self._iptables("-N", self.chain)
        self._iptables("-I", "DOCKER-USER", "-i", self.bridge, "-o", self.bridge, "-j", self.chain)
        self.logs_port = free_port()
        self._serve_logs()
        with contextlib.suppress(client.ApiException):
            self.storage.create_storage_class({
                "metadata": {"name": STORAGE_CLASS,
                             "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
                "provisioner": "dev8.test/docker-volume", "volumeBindingMode": "Immediate"})
        self.core.create_node({"metadata": {"name": self.node, "labels": {"kubernetes.io/hostname": self.node}}})
        self._node_status()
        for target in (self._watch_pods, self._watch_claims, self._claims_loop, self._policies_loop):
            threading.Thread(target=target, daemon=True).start()
        return self

    def set_capacity(self, **capacity: str) -> None:
        self.capacity.update(capacity)
        self._node_status()

    def _node_status(self) -> None:
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.core.patch_node_status(self.node, {"status": {
            "capacity": self.capacity, "allocatable": self.capacity,
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.logs_port}},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "test kubelet",
                            "lastHeartbeatTime": now, "lastTransitionTime": now}]}})

    def stop(self) -> None:
        self.stopping.set()
        self.httpd.shutdown()
        for c in self.docker.containers.list(all=True, filters={"label": f"{LABEL}={self.id}"}):
            c.remove(force=True)
        for v in self.docker.volumes.list(filters={"label": f"{LABEL}={self.id}"}):
            with contextlib.suppress(docker.errors.APIError):
                v.remove(force=True)
        with contextlib.suppress(docker.errors.NotFound):
            self.docker.networks.get(self.network).remove()
        with contextlib.suppress(subprocess.CalledProcessError):
            self._iptables("-D", "DOCKER-USER", "-i", self.bridge, "-o", self.bridge, "-j", self.chain)
            self._iptables("-F", self.chain)
            self._iptables("-X", self.chain)
        shutil.rmtree(self.files, ignore_errors=True)

    # --- the kubelet API: container logs, as the API server asks for them -----------------------

    def _serve_logs(self) -> None:
        kubelet = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 — the stdlib's name
                url = urllib.parse.urlsplit(self.path)
                parts = url.path.strip("/").split("/")
                if len(parts) != 4 or parts[0] != "containerLogs":
                    self.send_error(404)
                    return
                _, namespace, pod, name = parts
                tail = urllib.parse.parse_qs(url.query).get("tailLines", ["all"])[0]
                found = kubelet.docker.containers.list(all=True, filters={"label": [
                    f"{LABEL}={kubelet.id}", f"pod={namespace}.{pod}", f"container={name}"]})
                if not found:
                    self.send_error(404)
                    return
                body = found[0].logs(tail=int(tail) if tail.isdigit() else "all")
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.logs_port), Handler)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert_dir / "cert.pem", self.cert_dir / "key.pem")
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    # --- watches ------------------------------------------------------------------------------

    def _watch_forever(self, listing: Any, seen: Any) -> None:
        while not self.stopping.is_set():
            try:
                for event in watch.Watch().stream(listing, timeout_seconds=30):
                    seen(event["type"], event["raw_object"])
                    if self.stopping.is_set():
                        return
            except Exception:  # noqa: BLE001 — the API server restarting, a dropped watch: watch again
                time.sleep(0.5)

    def _watch_pods(self) -> None:
        def seen(kind: str, pod: dict[str, Any]) -> None:
            uid = pod["metadata"]["uid"]
            with self.lock:
                if kind == "DELETED":
                    self.pods.pop(uid, None)
                    return
                self.pods[uid] = pod
                self.pod_started_at.setdefault(uid, time.monotonic())
                if uid not in self.workers:
                    self.workers[uid] = threading.Thread(target=self._run_pod, args=(uid,), daemon=True)
                    self.workers[uid].start()
        self._watch_forever(self.core.list_pod_for_all_namespaces, seen)

    def _watch_claims(self) -> None:
        def seen(kind: str, claim: dict[str, Any]) -> None:
            key = f"{claim['metadata']['namespace']}/{claim['metadata']['name']}"
            with self.lock:
                if kind == "DELETED":
                    self.claims.pop(key, None)
                else:
                    self.claims[key] = claim
        self._watch_forever(self.core.list_persistent_volume_claim_for_all_namespaces, seen)

    def _claims_loop(self) -> None:
        """Provision claims of our class; let a deleted one go once no pod mounts it."""
        while not self.stopping.wait(0.2):
            with self.lock:
                claims = list(self.claims.values())
                pods = list(self.pods.values())
            for claim in claims:
                meta, spec = claim["metadata"], claim["spec"]
                try:
                    if meta.get("deletionTimestamp"):
                        used = any(v.get("persistentVolumeClaim", {}).get("claimName") == meta["name"]
                                   for p in pods if p["metadata"]["namespace"] == meta["namespace"]
                                   for v in p["spec"].get("volumes", []))
                        if not used and meta.get("finalizers"):
                            try:
                                self.docker.volumes.get(f"kube-pvc-{meta['uid']}").remove(force=True)
                            except docker.errors.NotFound:
                                pass
                            except docker.errors.APIError:
                                continue  # a container being removed still holds it: the next round
                            self.core.patch_namespaced_persistent_volume_claim(
                                meta["name"], meta["namespace"], {"metadata": {"finalizers": None}})
                    elif (claim.get("status") or {}).get("phase") != "Bound" and \
                            spec.get("storageClassName") == STORAGE_CLASS:
                        if spec.get("dataSource") and not self._clone(claim, {c["metadata"]["name"]: c for c in claims
                                                                               if c["metadata"]["namespace"]
                                                                               == meta["namespace"]}):
                            continue  # its source is not bound yet: the next round
                        self.core.patch_namespaced_persistent_volume_claim_status(
                            meta["name"], meta["namespace"], {"status": {
                                "phase": "Bound", "accessModes": spec["accessModes"],
                                "capacity": {"storage": spec["resources"]["requests"]["storage"]}}})
                except client.ApiException:
                    pass  # changed meanwhile: the next round sees the new state

    def _clone(self, claim: dict[str, Any], claims: dict[str, dict[str, Any]]) -> bool:
        """As a CSI driver that clones does: the new claim's volume made a copy of its
        ``dataSource`` claim's, before the claim is bound; False while the source is not bound."""
        source = claims.get(claim["spec"]["dataSource"]["name"])
        if claim["spec"]["dataSource"].get("kind") != "PersistentVolumeClaim" or source is None or \
                (source.get("status") or {}).get("phase") != "Bound":
            return False
        into = f"kube-pvc-{claim['metadata']['uid']}"
        self.docker.volumes.create(into, labels={LABEL: self.id})
        source_volume = f"kube-pvc-{source['metadata']['uid']}"
        with contextlib.suppress(docker.errors.APIError):  # never mounted: an empty source, an empty copy
            self.docker.volumes.create(source_volume, labels={LABEL: self.id})
        self.docker.containers.run("dev8/base:latest", ["cp", "-a", "/from/.", "/to/"], entrypoint=[], user="0",
                                   remove=True, network_disabled=True, labels={LABEL: self.id},
                                   volumes={source_volume: {"bind": "/from", "mode": "ro"},
                                            into: {"bind": "/to", "mode": "rw"}})
        return True

    # --- NetworkPolicies: ingress rules as iptables rules on the pods' bridge ---------------------

    @staticmethod
    def _iptables(*args: str) -> None:
        subprocess.run(["iptables", "-w", *args], check=True, capture_output=True, timeout=30)

    def _policies_loop(self) -> None:
        applied: list[tuple[str, str, int | None]] | None = None
        while not self.stopping.wait(0.5):
            try:
                policies = self.networking.list_network_policy_for_all_namespaces().items
                namespaces = {n.metadata.name: n.metadata.labels or {} for n in self.core.list_namespace().items}
            except Exception:  # noqa: BLE001 — the API server restarting: the next round
                continue
            with self.lock:
                pods = [p for p in self.pods.values() if (p.get("status") or {}).get("podIP")
                        and not p["metadata"].get("deletionTimestamp")]
            allowed = sorted(set(self.allowed_flows(policies, namespaces, pods)), key=str)
            if allowed != applied:
                self._iptables("-F", self.chain)
                for source, target, port in allowed:
                    forth = ["-s", source, "-d", target, "-p", "tcp"] + (["--dport", str(port)] if port else [])
                    back = ["-s", target, "-d", source, "-p", "tcp"] + (["--sport", str(port)] if port else [])
                    self._iptables("-A", self.chain, *forth, "-j", "ACCEPT")
                    self._iptables("-A", self.chain, *back, "-j", "ACCEPT")
                applied = allowed

    def allowed_flows(self, policies: list[Any], namespaces: dict[str, dict[str, str]],
                      pods: list[dict[str, Any]]) -> list[tuple[str, str, int | None]]:
        """(source IP, target IP, TCP port or None for any) for every ingress rule of every
        policy; only matchLabels selectors and numeric ports (what we use: said otherwise)."""
        def matches(selector: Any, labels: dict[str, str]) -> bool:
            if selector is None:
                return True
            if selector.match_expressions:
                raise ValueError("the test kubelet's policies take matchLabels only")
            return (selector.match_labels or {}).items() <= labels.items()

        def pods_in(namespace_ok: Any, pod_selector: Any) -> list[str]:
            return [p["status"]["podIP"] for p in pods if namespace_ok(p["metadata"]["namespace"])
                    and matches(pod_selector, p["metadata"].get("labels") or {})]
        flows = []
        for policy in policies:
            if "Ingress" not in (policy.spec.policy_types or ["Ingress"]):
                continue
            namespace = policy.metadata.namespace
            targets = pods_in(lambda n, ns=namespace: n == ns, policy.spec.pod_selector)
            for rule in policy.spec.ingress or []:
                sources: list[str] = []
                for peer in rule._from or [None]:
                    if peer is None:  # no `from`: every pod
                        sources += pods_in(lambda _n: True, None)
                    elif peer.ip_block is not None:
                        raise ValueError("the test kubelet's policies take no ipBlock")
                    elif peer.namespace_selector is None:  # the policy's own namespace
                        sources += pods_in(lambda n, ns=namespace: n == ns, peer.pod_selector)
                    else:
                        sources += pods_in(lambda n, sel=peer.namespace_selector: matches(sel, namespaces.get(n, {})),
                                           peer.pod_selector)
                ports: list[int | None] = []
                for port in rule.ports or [None]:
                    if port is not None and (port.protocol or "TCP") != "TCP" or \
                            port is not None and not isinstance(port.port, int):
                        raise ValueError("the test kubelet's policies take numeric TCP ports only")
                    ports.append(port.port if port is not None else None)
                flows += [(src, dst, n) for src in sources for dst in targets for n in ports if src != dst]
        return flows

    # --- one pod ------------------------------------------------------------------------------

    def _pod(self, uid: str) -> dict[str, Any] | None:
        with self.lock:
            return self.pods.get(uid)

    def _status(self, pod: dict[str, Any], **status: Any) -> None:
        with contextlib.suppress(client.ApiException):
            self.core.patch_namespaced_pod_status(pod["metadata"]["name"], pod["metadata"]["namespace"],
                                                  {"status": status})

    def _run_pod(self, uid: str) -> None:
        try:
            self._lifecycle(uid)
        except Exception:  # a test kubelet's bug: said, not swallowed
            import traceback
            self.errors.append(traceback.format_exc())
            print(f"test kubelet: pod {uid} failed:\n{self.errors[-1]}", flush=True)
        finally:
            with self.lock:
                self.workers.pop(uid, None)

    def _lifecycle(self, uid: str) -> None:
        container = None
        pulled = False
        restarts = -1
        ready = False
        while not self.stopping.is_set():
            pod = self._pod(uid)
            if pod is None:  # force-deleted (grace 0): its container goes too, as a kubelet's would
                self._remove_sidecars(uid)
                if container is not None:
                    with contextlib.suppress(docker.errors.APIError):
                        container.remove(force=True)
                break
            meta, spec = pod["metadata"], pod["spec"]
            if meta.get("deletionTimestamp"):
                self._remove_sidecars(uid)
                if container is not None:
                    grace = min(int(meta.get("deletionGracePeriodSeconds") or 0), 10)
                    with contextlib.suppress(docker.errors.APIError):
                        container.stop(timeout=grace)
                        container.remove(force=True)
                with contextlib.suppress(client.ApiException):  # gone already
                    # (with a body the API server reads the options from it alone, not the query)
                    self.core.delete_namespaced_pod(meta["name"], meta["namespace"], body={
                        "gracePeriodSeconds": 0, "preconditions": {"uid": uid}})
                break
            if not spec.get("nodeName"):
                self._schedule(pod)
            elif spec["nodeName"] != self.node:
                break
            elif container is None:
                if not pulled:
                    pulled = self._pull(pod)
                if pulled:
                    container = self._create(pod)
            else:
                restarts, ready = self._report(pod, container, restarts, ready)
            time.sleep(0.1)

    def _schedule(self, pod: dict[str, Any]) -> None:
        meta, spec = pod["metadata"], pod["spec"]
        why = None
        with self.lock:
            others = [p for p in self.pods.values() if p["spec"].get("nodeName") == self.node]
            claims = dict(self.claims)
        for resource in ("cpu", "memory"):
            used = sum(quantity(c.get("resources", {}).get("requests", {}).get(resource, "0"))
                       for p in others for c in p["spec"]["containers"])
            asked = sum(quantity(c.get("resources", {}).get("requests", {}).get(resource, "0"))
                        for c in spec["containers"])
            if used + asked > quantity(self.capacity[resource]):
                why = f"0/1 nodes are available: 1 Insufficient {resource}."
        for volume in spec.get("volumes", []):
            name = volume.get("persistentVolumeClaim", {}).get("claimName")
            if name and (claims.get(f"{meta['namespace']}/{name}", {}).get("status") or {}).get("phase") != "Bound":
                why = "0/1 nodes are available: 1 pod has unbound immediate PersistentVolumeClaims."
        if why:
            conditions = (pod.get("status") or {}).get("conditions") or []
            if not any(c.get("type") == "PodScheduled" and c.get("message") == why for c in conditions):
                self._status(pod, phase="Pending", conditions=[{"type": "PodScheduled", "status": "False",
                                                                "reason": "Unschedulable", "message": why}])
            time.sleep(0.2)
            return
        with contextlib.suppress(client.ApiException):
            self.core.create_namespaced_pod_binding(meta["name"], meta["namespace"], {
                "metadata": {"name": meta["name"]}, "target": {"kind": "Node", "name": self.node}},
                _preload_content=False)  # the client cannot parse the Status it answers

    def _pull(self, pod: dict[str, Any]) -> bool:
        image = pod["spec"]["containers"][0]["image"]
        try:
            self.docker.images.get(image)
            return True
        except docker.errors.ImageNotFound:
            pass
        try:
            self.docker.images.pull(image)
            return True
        except docker.errors.APIError as exc:
            message = f'Failed to pull image "{image}": {exc.explanation or exc}'
            self._waiting(pod, "ErrImagePull", message)
            time.sleep(0.5)
            self._waiting(pod, "ImagePullBackOff", f'Back-off pulling image "{image}"')
            time.sleep(2)
            return False

    def _pull_now(self, image: str) -> None:
        try:
            self.docker.images.get(image)
        except docker.errors.ImageNotFound:
            self.docker.images.pull(image)

    def _waiting(self, pod: dict[str, Any], reason: str, message: str) -> None:
        c = pod["spec"]["containers"][0]
        self._status(pod, phase="Pending", conditions=[
            {"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "False"}],
            containerStatuses=[{"name": c["name"], "image": c["image"], "imageID": "", "ready": False,
                                "restartCount": 0, "state": {"waiting": {"reason": reason, "message": message}}}])

    def _create(self, pod: dict[str, Any]) -> Any:
        """The pod's first container, started, then the others in its network namespace (as a
        pod's containers share one); None (said in the pod's status) while a ConfigMap or
        Secret it names is missing, as a kubelet waits for one."""
        first = None
        for c in pod["spec"]["containers"]:
            made = self._container(pod, c, first)
            if made is None:
                self._remove_sidecars(pod["metadata"]["uid"])
                if first is not None:
                    first.remove(force=True)
                return None
            first = first or made
        return first

    def _remove_sidecars(self, uid: str) -> None:
        for c in self.docker.containers.list(all=True, filters={"label": [f"{LABEL}={self.id}", f"pod-uid={uid}",
                                                                         "sidecar=yes"]}):
            with contextlib.suppress(docker.errors.APIError):
                c.remove(force=True)

    def _container(self, pod: dict[str, Any], c: dict[str, Any], first: Any) -> Any:
        meta, spec = pod["metadata"], pod["spec"]
        security = {**(spec.get("securityContext") or {}), **(c.get("securityContext") or {})}
        owner = f"uid={security.get('runAsUser', 0)},gid={spec.get('securityContext', {}).get('fsGroup', security.get('runAsGroup', 0))}"
        volumes: dict[str, dict[str, str]] = {}
        tmpfs: dict[str, str] = {}
        try:
            environment = self._environment(meta["namespace"], c)
            for mount in c.get("volumeMounts", []):
                volume = next(v for v in spec.get("volumes", []) if v["name"] == mount["name"])
                mode = "ro" if mount.get("readOnly") else "rw"
                if "persistentVolumeClaim" in volume:
                    with self.lock:
                        claim = self.claims[f"{meta['namespace']}/{volume['persistentVolumeClaim']['claimName']}"]
                    name = f"kube-pvc-{claim['metadata']['uid']}"
                    with contextlib.suppress(docker.errors.APIError):
                        self.docker.volumes.create(name, labels={LABEL: self.id})
                    volumes[name] = {"bind": mount["mountPath"], "mode": mode}
                elif "emptyDir" in volume:  # in memory either way here: gone with the pod, as an emptyDir is
                    size = int(quantity(volume["emptyDir"].get("sizeLimit", "64Mi")))
                    tmpfs[mount["mountPath"]] = f"size={size},{owner}"
                elif "secret" in volume:
                    folder = self._secret_files(meta, volume)
                    volumes[str(folder)] = {"bind": mount["mountPath"], "mode": "ro"}
                else:
                    raise ValueError(f"the test kubelet mounts no {sorted(volume)} volume")
        except client.ApiException as exc:
            if exc.status != 404:
                raise
            self._waiting(pod, "CreateContainerConfigError", f"{exc.reason}: {exc.body}"[:300])
            time.sleep(0.5)
            return None
        caps = security.get("capabilities") or {}
        limits = c.get("resources", {}).get("limits", {})
        extra_hosts = {}
        if self.api_server is not None:  # in-cluster clients find the API server by these
            environment.setdefault("KUBERNETES_SERVICE_HOST", self.api_server[0])
            environment.setdefault("KUBERNETES_SERVICE_PORT", str(self.api_server[1]))
            extra_hosts[self.api_server[0]] = self.gateway
        if first is not None:  # a later container: the first one's network, address and names
            self._pull_now(c["image"])
        network: dict[str, Any] = {"network": self.network, "extra_hosts": extra_hosts,
                                   "hostname": spec.get("hostname") or meta["name"]} if first is None \
            else {"network_mode": f"container:{first.id}"}
        container = self.docker.containers.create(
            c["image"], name=f"k8s-{meta['namespace']}-{meta['name']}-{meta['uid'][:8]}-{c['name']}",
            entrypoint=c.get("command"), command=c.get("args"),
            labels={LABEL: self.id, "pod": f"{meta['namespace']}.{meta['name']}", "pod-uid": meta["uid"],
                    "container": c["name"], "sidecar": "no" if first is None else "yes"},
            environment=environment, volumes=volumes, tmpfs=tmpfs, **network,
            user=f"{security['runAsUser']}:{security.get('runAsGroup', security['runAsUser'])}"
            if "runAsUser" in security else None,
            read_only=bool(security.get("readOnlyRootFilesystem")),
            cap_drop=caps.get("drop"), cap_add=caps.get("add"),
            security_opt=["no-new-privileges"] if security.get("allowPrivilegeEscalation") is False else None,
            nano_cpus=int(quantity(limits["cpu"]) * 1e9) if "cpu" in limits else None,
            mem_limit=int(quantity(limits["memory"])) if "memory" in limits else None,
            restart_policy={"Name": "always"})
        if first is None:
            for extra in self.extra_networks:
                self.docker.networks.get(extra).connect(container)
        container.start()
        return container

    def _environment(self, namespace: str, c: dict[str, Any]) -> dict[str, str]:
        """The container's variables: ``envFrom`` ConfigMaps and Secrets, then ``env``
        (values and keys of either); a missing object raises the API's 404."""
        def data(kind: str, name: str) -> dict[str, str]:
            if kind == "configMap":
                return self.core.read_namespaced_config_map(name, namespace).data or {}
            encoded = self.core.read_namespaced_secret(name, namespace).data or {}
            return {k: base64.b64decode(v).decode() for k, v in encoded.items()}
        environment: dict[str, str] = {}
        for source in c.get("envFrom", []):
            kind = "configMap" if "configMapRef" in source else "secret"
            environment.update(data(kind, source[f"{kind}Ref"]["name"]))
        for e in c.get("env", []):
            ref = e.get("valueFrom") or {}
            if "configMapKeyRef" in ref or "secretKeyRef" in ref:
                kind = "configMap" if "configMapKeyRef" in ref else "secret"
                key = ref[f"{kind}KeyRef"]
                environment[e["name"]] = data(kind, key["name"])[key["key"]]
            elif ref:
                raise ValueError(f"the test kubelet takes no {sorted(ref)} variable")
            else:
                environment[e["name"]] = e.get("value", "")
        return environment

    def _secret_files(self, meta: dict[str, Any], volume: dict[str, Any]) -> Path:
        """A Secret volume's keys as files in a folder of ours (mounted read-only)."""
        secret = self.core.read_namespaced_secret(volume["secret"]["secretName"], meta["namespace"])
        folder = self.files / meta["uid"] / volume["name"]
        folder.mkdir(parents=True, exist_ok=True)
        mode = volume["secret"].get("defaultMode", 0o644)
        for key, value in (secret.data or {}).items():
            (folder / key).write_bytes(base64.b64decode(value))
            (folder / key).chmod(mode)
        return folder

    @staticmethod
    def _ready(ip: str, c: dict[str, Any]) -> bool:
        """The container's readiness probe (TCP or HTTP GET), once; no probe: ready."""
        probe = c.get("readinessProbe")
        if not probe:
            return True
        action = probe.get("httpGet") or probe.get("tcpSocket") or {}
        port = action.get("port")
        if isinstance(port, str):
            port = next(p["containerPort"] for p in c.get("ports", []) if p.get("name") == port)
        try:
            if "httpGet" in probe:
                return 200 <= httpx.get(f"http://{ip}:{port}{action.get('path', '/')}", timeout=1).status_code < 400
            with socket.create_connection((ip, port), timeout=0.5):
                return True
        except (OSError, httpx.HTTPError):
            return False

    def _report(self, pod: dict[str, Any], container: Any, restarts: int, ready: bool) -> tuple[int, bool]:
        container.reload()
        count = container.attrs.get("RestartCount", 0)
        running = container.status == "running"
        ip = container.attrs["NetworkSettings"]["Networks"].get(self.network, {}).get("IPAddress") or None
        answers = bool(running and ip) and all(self._ready(ip, c) for c in pod["spec"]["containers"])
        if count == restarts and answers == ready:
            return restarts, ready
        uid = pod["metadata"]["uid"]
        if answers:
            self.pod_ready_at.setdefault(uid, time.monotonic())
        c = pod["spec"]["containers"][0]
        started = container.attrs["State"].get("StartedAt")
        state = {"running": {"startedAt": started[:19] + "Z"}} if running else {"waiting": {"reason": "CrashLoopBackOff"}}
        self._status(pod, phase="Running", podIP=ip, podIPs=[{"ip": ip}] if ip else None, hostIP="127.0.0.1",
                     conditions=[{"type": "PodScheduled", "status": "True"},
                                 {"type": "Ready", "status": "True" if answers else "False"},
                                 {"type": "ContainersReady", "status": "True" if answers else "False"}],
                     containerStatuses=[{"name": c["name"], "image": c["image"], "imageID": container.image.id,
                                         "containerID": f"docker://{container.id}", "ready": answers,
                                         "restartCount": count, "started": running, "state": state}])
        return count, answers
