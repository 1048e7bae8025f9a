"""Pure builders for the ``kubernetes`` runtime: an environment's object names, its pod and
its claim (plain API objects as dicts, exactly what is sent), and what a pod read back says.
No I/O.

Why a bare pod and not a one-replica StatefulSet: dev8's reconciler is already the
controller that holds the desired state (running or stopped, which image, which limits); a
StatefulSet would be a second controller to keep in step (scale to 0 to stop, patch to
change the image, its own rollout rules) and would re-create a pod dev8 meant to stop. The
claim is a separate object dev8 owns, so a deleted pod never takes the home with it."""
from __future__ import annotations

import math
import re
from typing import Any

from dev8.envimage import dev8_env as layout
from dev8.runtimes.base import LABEL_ENV_ID, EnvSpec, Observed
from dev8.runtimes.kube.options import DNS_LABEL, KubernetesOptions
from dev8.runtimes.pulled import fit_name

CONTAINER = "env"  # the one container of an environment's pod
HOME_VOLUME = "home"
RUN_VOLUME = "run"
RUN_SIZE = "16Mi"  # the secrets folder: memory-backed, as the Docker runtime's tmpfs
# What sshd and the entrypoint need once every capability is dropped: chown/chmod of the
# home and run dir, switching to the user (setuid/setgid), sshd's privilege separation
# (sys_chroot), session cleanup (kill) and login records (audit_write); port 22 (net_bind_service).
CAPABILITIES = ["AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "KILL", "NET_BIND_SERVICE", "SETGID",
                "SETUID", "SYS_CHROOT"]
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
APP_LABELS = {"app.kubernetes.io/name": "dev8-environment", "app.kubernetes.io/managed-by": "dev8"}
# What the pod was made for, recorded on it: a pod that differs is made again when not running.
ANNOTATION_MADE_FOR = "dev8.io/made-for"


def pod_name(spec: EnvSpec) -> str:
    return fit_name(spec.object_name, DNS_LABEL)


def claim_name(spec: EnvSpec) -> str:
    return fit_name(spec.volume_name, DNS_LABEL)


def seed_claim_name(spec: EnvSpec) -> str | None:
    """The claim of the prebuild ``spec.seed`` names (``claim_name`` of its environment)."""
    return fit_name(spec.seed_volume_name, DNS_LABEL) if spec.seed_volume_name else None


def labels(spec: EnvSpec) -> dict[str, str]:
    """dev8's labels (installation, environment, owner) and the recommended app labels;
    ValueError for a value Kubernetes would refuse, before anything is sent."""
    found = {**spec.labels, **APP_LABELS}
    for key, value in found.items():
        if len(value) > 63 or not LABEL_VALUE.fullmatch(value):
            raise ValueError(f"label {key}={value!r} is not a Kubernetes label value")
    return found


def cpu_quantity(cpus: float) -> str:
    return f"{max(1, round(cpus * 1000))}m"


def memory_quantity(memory_bytes: int) -> str:
    """In MiB, rounded up: never less than asked."""
    return f"{max(1, math.ceil(memory_bytes / (1 << 20)))}Mi"


def made_for(spec: EnvSpec) -> str:
    return f"{spec.image}|{cpu_quantity(spec.cpus)}|{memory_quantity(spec.memory_bytes)}"


def pod(spec: EnvSpec, opts: KubernetesOptions) -> dict[str, Any]:
    """The pod of ``spec``: the image with only TCP 22, requests equal to limits, no service
    account token, no privilege escalation (unless the operator allows sudo), capabilities
    cut to what sshd needs, the home claim at the home, the secrets folder in memory, ready
    once sshd accepts connections. No secret of the user's is in it: they go over SSH."""
    limits = {"cpu": cpu_quantity(spec.cpus), "memory": memory_quantity(spec.memory_bytes)}
    body: dict[str, Any] = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": pod_name(spec), "namespace": opts.namespace, "labels": labels(spec),
                     "annotations": {ANNOTATION_MADE_FOR: made_for(spec)}},
        "spec": {
            "hostname": spec.name,
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,  # no other services' addresses in its environment
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "containers": [{
                "name": CONTAINER, "image": spec.image, "imagePullPolicy": "IfNotPresent",
                # a public key is not a secret
                "env": [{"name": "DEV8_CONTROL_KEY", "value": spec.control_public_key}],
                "ports": [{"name": "ssh", "containerPort": 22, "protocol": "TCP"}],
                "resources": {"requests": dict(limits), "limits": dict(limits)},
                "readinessProbe": {"tcpSocket": {"port": 22}, "periodSeconds": 2, "failureThreshold": 3},
                "securityContext": {"allowPrivilegeEscalation": opts.allow_privilege_escalation,
                                    "capabilities": {"drop": ["ALL"], "add": list(CAPABILITIES)}},
                "volumeMounts": [{"name": HOME_VOLUME, "mountPath": layout.HOME},
                                 {"name": RUN_VOLUME, "mountPath": layout.DEFAULT_RUN_DIR}],
            }],
            "volumes": [{"name": HOME_VOLUME, "persistentVolumeClaim": {"claimName": claim_name(spec)}},
                        {"name": RUN_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": RUN_SIZE}}],
        },
    }
    if opts.image_pull_secrets:
        body["spec"]["imagePullSecrets"] = [{"name": n} for n in opts.image_pull_secrets]
    if opts.node_selector:
        body["spec"]["nodeSelector"] = dict(opts.node_selector)
    if opts.tolerations:
        body["spec"]["tolerations"] = list(opts.tolerations)
    return body


def claim(spec: EnvSpec, opts: KubernetesOptions) -> dict[str, Any]:
    """The home's claim: one node's read-write volume of the configured size and class."""
    body: dict[str, Any] = {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": claim_name(spec), "namespace": opts.namespace, "labels": labels(spec)},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": opts.storage_size}}},
    }
    if opts.storage_class:
        body["spec"]["storageClassName"] = opts.storage_class
    if spec.seed:  # a clone of the prebuild's claim (CSI volume cloning): bound once the copy is whole
        body["spec"]["dataSource"] = {"kind": "PersistentVolumeClaim", "name": seed_claim_name(spec)}
    return body


def _conditions(pod: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c.get("type", ""): c for c in (pod.get("status") or {}).get("conditions") or []}


def _container_status(pod: dict[str, Any]) -> dict[str, Any]:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return next((s for s in statuses if s.get("name") == CONTAINER), {})


def observed_of(pod: dict[str, Any]) -> Observed:
    """What a pod (as the API serialises it) says. Running means ready (sshd answers) with
    an IP and not being deleted; the instance is the pod and its container's restarts (a
    restarted container is configured again)."""
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    ready = _conditions(pod).get("Ready", {}).get("status") == "True"
    ip = status.get("podIP")
    running = (status.get("phase") == "Running" and ready and bool(ip) and not meta.get("deletionTimestamp"))
    restarts = _container_status(pod).get("restartCount", 0)
    return Observed(exists=True, running=running, host=ip if running else None, port=22 if running else None,
                    instance_id=f"{meta.get('uid')}#{restarts}" if running else None,
                    state={"pod": meta.get("name"), "phase": status.get("phase"), "node": (pod.get("spec") or {})
                           .get("nodeName")},
                    detail=detail_of(pod))


def detail_of(pod: dict[str, Any]) -> str:
    """Why a pod is not running, in the cluster's words: the scheduler's message, the
    container's waiting reason, or its phase."""
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return "stopping"
    scheduled = _conditions(pod).get("PodScheduled", {})
    if scheduled.get("status") == "False":
        return f"{scheduled.get('reason') or 'not scheduled'}: {scheduled.get('message') or ''}".strip(": ")
    state = _container_status(pod).get("state") or {}
    for kind in ("waiting", "terminated"):
        if state.get(kind):
            what = state[kind]
            return f"{what.get('reason') or kind}: {what.get('message') or ''}".strip(": ")
    return str((pod.get("status") or {}).get("phase") or "Pending")


IMAGE_FAILURES = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull")


def image_failure(pod: dict[str, Any]) -> str | None:
    """The kubelet's reason it cannot pull the image, when that is why it is not running."""
    waiting = (_container_status(pod).get("state") or {}).get("waiting") or {}
    if waiting.get("reason") in IMAGE_FAILURES:
        return f"{waiting['reason']}: {waiting.get('message') or ''}".strip(": ")
    return None


def unschedulable(pod: dict[str, Any]) -> str | None:
    scheduled = _conditions(pod).get("PodScheduled", {})
    if scheduled.get("status") == "False" and scheduled.get("reason") == "Unschedulable":
        return str(scheduled.get("message") or "no node can run it")
    return None


def is_ours(obj: dict[str, Any], spec: EnvSpec) -> bool:
    return ((obj.get("metadata") or {}).get("labels") or {}).get(LABEL_ENV_ID) == spec.env_id


def is_made_for(pod: dict[str, Any], spec: EnvSpec) -> bool:
    return ((pod.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_MADE_FOR) == made_for(spec)
