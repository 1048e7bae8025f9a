"""A real Kubernetes control plane for the tests: etcd (Debian's etcd-server), the
kube-apiserver and kube-controller-manager that scripts/kube-apiserver.sh builds from
Debian's source (v1.20.2). HTTPS, RBAC on, users from a token file; the API server listens
beyond loopback so pods reach it as ``kubernetes.default.svc`` (its certificate's name). The
controller manager runs the controllers dev8's own Deployment needs (deployments, replica
sets, service accounts and their token secrets, garbage collection); no scheduler runs: the
test kubelet (tests/kube/kubelet.py) plays it, the node and the volume provisioner."""
from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.support import free_port, make_tls_certs, wait_until

VERSION = "v1.20.2"
BINARIES = Path(os.environ.get("DEV8_CACHE", Path.home() / ".cache" / "dev8")) / f"kubernetes-{VERSION}"
APISERVER = BINARIES / "kube-apiserver"
CONTROLLER_MANAGER = BINARIES / "kube-controller-manager"
SERVICE_HOST = "kubernetes.default.svc"  # how pods name the API server (the test kubelet maps it to its gateway)
# What the controller manager runs: the nodes' lifecycle and the volume controllers are left
# out (the test kubelet sends no heartbeats and provisions and binds claims itself).
CONTROLLERS = "deployment,replicaset,serviceaccount,serviceaccount-token,garbagecollector"
DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
# dev8's identity: the name its ServiceAccount has inside a cluster (deploy/kubernetes binds
# its Role to it), here from the token file.
DEV8_USER = "system:serviceaccount:dev8:dev8"


class KubeCluster:
    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="dev8-kube-"))
        self.port = free_port()
        self.server = f"https://127.0.0.1:{self.port}"
        self.procs: list[subprocess.Popen] = []  # type: ignore[type-arg]
        self.admin_token = os.urandom(16).hex()
        self.dev8_token = os.urandom(16).hex()
        self.other_token = os.urandom(16).hex()  # an authenticated user with no rights at all

    def start(self) -> KubeCluster:
        for binary in (APISERVER, CONTROLLER_MANAGER):
            if not binary.exists():
                raise RuntimeError(f"{binary} is missing: scripts/kube-apiserver.sh builds it (the test command runs it)")
        self.ca = make_tls_certs(self.root / "certs", "127.0.0.1", SERVICE_HOST)
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        sa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        (self.root / "sa.key").write_bytes(sa.private_bytes(serialization.Encoding.PEM,
                                                            serialization.PrivateFormat.TraditionalOpenSSL,
                                                            serialization.NoEncryption()))
        (self.root / "sa.pub").write_bytes(sa.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        (self.root / "tokens.csv").write_text(
            f'{self.admin_token},admin,1,"system:masters"\n'
            f'{self.dev8_token},{DEV8_USER},2,"system:serviceaccounts,system:serviceaccounts:dev8"\n'
            f'{self.other_token},someone,3\n')
        etcd_port, peer_port = free_port(), free_port()
        self._spawn("etcd", ["etcd", "--name", "default", "--data-dir", str(self.root / "etcd"),
                             "--listen-client-urls", f"http://127.0.0.1:{etcd_port}",
                             "--advertise-client-urls", f"http://127.0.0.1:{etcd_port}",
                             "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
                             "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
                             "--initial-cluster", f"default=http://127.0.0.1:{peer_port}"])
        certs = self.root / "certs"
        self._spawn("kube-apiserver", [
            str(APISERVER), f"--etcd-servers=http://127.0.0.1:{etcd_port}", "--bind-address=0.0.0.0",
            "--advertise-address=127.0.0.1", f"--secure-port={self.port}", "--insecure-port=0",
            f"--tls-cert-file={certs / 'cert.pem'}", f"--tls-private-key-file={certs / 'key.pem'}",
            f"--token-auth-file={self.root / 'tokens.csv'}", "--authorization-mode=RBAC",
            f"--service-account-key-file={self.root / 'sa.pub'}",
            f"--service-account-signing-key-file={self.root / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc",
            "--api-audiences=https://kubernetes.default.svc", "--service-cluster-ip-range=10.0.0.0/24",
            "--kubelet-preferred-address-types=InternalIP", "--logtostderr=true", "--v=0"])
        wait_until(self._ready, timeout=90, interval=0.5, what="kube-apiserver's /readyz")
        self._spawn("kube-controller-manager", [
            str(CONTROLLER_MANAGER), f"--kubeconfig={self.kubeconfig('admin')}", f"--controllers={CONTROLLERS}",
            f"--service-account-private-key-file={self.root / 'sa.key'}", f"--root-ca-file={self.ca}",
            "--use-service-account-credentials=false", "--leader-elect=false", "--port=0", "--secure-port=0",
            "--logtostderr=true", "--v=0"])
        return self

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = open(self.root / f"{name}.log", "wb")  # noqa: SIM115 — the process's own
        self.procs.append(subprocess.Popen(argv, stdout=log, stderr=log))

    def _ready(self) -> bool:
        for proc in self.procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args[0]} exited: {self.log_tail()}")
        try:
            answer = httpx.get(f"{self.server}/readyz", verify=ssl.create_default_context(cafile=str(self.ca)), timeout=2,
                               headers={"Authorization": f"Bearer {self.admin_token}"})
        except httpx.HTTPError:
            return False
        return answer.status_code == 200

    def log_tail(self) -> str:
        return "\n".join((p.read_text(errors="replace")[-1500:]) for p in sorted(self.root.glob("*.log")))

    def kubeconfig(self, who: str = "dev8") -> Path:
        """A kubeconfig file for ``who`` (admin, dev8 or someone, who may do nothing)."""
        token = {"admin": self.admin_token, "dev8": self.dev8_token, "someone": self.other_token}[who]
        path = self.root / f"kubeconfig-{who}"
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "test",
            "clusters": [{"name": "test", "cluster": {"server": self.server, "certificate-authority": str(self.ca)}}],
            "users": [{"name": who, "user": {"token": token}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": who}}]}))
        return path

    def admin(self) -> Any:
        from kubernetes import client, config
        cfg = client.Configuration()
        config.load_kube_config(config_file=str(self.kubeconfig("admin")), client_configuration=cfg)
        return client.ApiClient(cfg)

    def namespace_for_dev8(self, name: str) -> None:
        """A namespace with its default ServiceAccount (made here, not left to the controller's
        timing: pods are refused until it exists) and dev8's Role and RoleBinding from
        deploy/kubernetes: what dev8 may do there is what the shipped manifests grant."""
        from kubernetes import client, utils
        api = self.admin()
        core = client.CoreV1Api(api)
        core.create_namespace({"metadata": {"name": name}})
        try:
            core.create_namespaced_service_account(name, {"metadata": {"name": "default"}})
        except client.ApiException as exc:
            if exc.status != 409:  # the controller made it first
                raise
        for doc in yaml.safe_load_all((DEPLOY / "rbac.yaml").read_text()):
            if doc and doc["kind"] in ("Role", "RoleBinding"):
                doc["metadata"]["namespace"] = name
                utils.create_from_dict(api, doc, namespace=name)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
            try:
                proc.wait(3)  # etcd and the API server keep nothing worth a graceful stop here
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(self.root, ignore_errors=True)
