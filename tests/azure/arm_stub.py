"""A local stand-in for the Azure endpoints the ``aci`` runtime calls, and the environment
behind it run for real on the local Docker engine.

What it speaks, over HTTPS with a test CA: Microsoft Entra's token endpoint (an OpenID
configuration and client-credential tokens, so azure-identity and the SDKs' bearer-token
policy run for real), ARM's Microsoft.ContainerInstance container groups (api-version
2023-05-01: PUT, GET, list, start, stop, restart, DELETE, container logs) and the
Microsoft.Storage calls for the homes' file shares (PUT, GET, DELETE a share; listKeys; a
share's body validated against the published storage specification too).

How it behaves as Azure does: every request needs a token it issued (401 otherwise), every
body is validated strictly against the published specification (400 with the violation),
PUT, start, restart and DELETE are long-running operations polled through
``Azure-AsyncOperation`` (absolute URLs back to the stub), stop answers at once and
deallocates (the container is gone, the IP with it; the next start gets a new one), a
group goes Pending → Running with the instance-view events Pulling, Pulled, Started,
unknown resources answer 404 with ARM's error body, an image the registry does not have is
refused at PUT with ``InaccessibleImage``. Failures are injected on request
(:meth:`ArmStub.inject`): throttling with or without ``Retry-After``, conflicts, server
errors, quota or capacity refusals, a deployment stuck in Pending.

Azure DNS: a group with a DNS name label gets the FQDN ``LABEL.westeurope.azurecontainer.io``,
published in a hosts file of the stand-in's (:attr:`ArmStub.hosts`) once its container runs.
A process started through :meth:`ArmStub.resolving` sees that file as its ``/etc/hosts`` (a
mount namespace of its own), so dev8 resolves the name through the system resolver as it
would Azure's. :attr:`ArmStub.dns_lag` keeps the previous deployment's record (a stale answer:
an address the group no longer has, which Azure may give to another) for that many seconds after a start;
:meth:`ArmStub.lookup` answers as that file does, for a runtime in the test's own process.

The environment: when a group reaches Running the stub pulls its image from the registry
named in it (a real local registry) and runs it on Docker with the group's environment
variables, CPU and memory, no memory-backed run dir (ACI gives none) and the file share
mounted where the group mounts it. A share is emulated with the semantics of ACI's SMB
mount that break a home: bindfs shows it root-owned with mode 0777 and ignores chmod and
chown. (bindfs cannot refuse symlinks, which SMB does: the home design never makes one on
the share, and nothing here proves what a symlink there would do.) The group's IP is the
container's address on a bridge of its own, with inter-container traffic off.
"""
from __future__ import annotations

import contextlib
import ipaddress
import itertools
import json
import re
import secrets
import shutil
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import docker
import docker.errors
import docker.types

from dev8.runtimes.registry import has_manifest, parse_ref
from tests.azure.stubhttp import JsonHandler, Stub
from tests.azure.swagger import SpecViolation, validate

ACI_SPEC = "containerInstance-2023-05-01.json"
ACI_API = "2023-05-01"
STORAGE_API = "2026-09-01"
STORAGE_SPEC = "storage-file-shares-2026-09-01.json"
LABEL = "dev8-aci-stub"  # on everything a stand-in makes, its value the stand-in's own id
RG = r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)"
GROUPS = RG + r"/providers/Microsoft\.ContainerInstance/containerGroups"
SHARES = RG + r"/providers/Microsoft\.Storage/storageAccounts/(?P<account>[^/]+)"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Group:
    name: str
    id: str
    body: dict                      # as PUT, without read-only parts
    state: str = "Pending"          # instance view: Pending, Running, Stopped, Failed
    provisioning: str = "Creating"
    events: list[dict] = field(default_factory=list)
    container_id: str | None = None
    ip: str | None = None
    stuck: bool = False             # an injected deployment that never leaves Pending
    accepted_at: float = 0.0        # monotonic: the PUT or start answered (for bench/aci.py)
    running_at: float = 0.0         # monotonic: its container started
    scratch: list[str] = field(default_factory=list)  # its emptyDir volumes (this deployment's)


class ArmStub(Stub):
    def __init__(self, root: Path, docker_client: docker.DockerClient, cert_dir: Path) -> None:
        super().__init__(cert_dir)
        self.root = root
        self.docker = docker_client
        self.groups: dict[str, Group] = {}
        self.shares: dict[str, Path] = {}
        self.operations: dict[str, dict] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path) of every ARM request, for tests
        self.bodies: list[tuple[str, dict]] = []     # (path, body) of every validated body
        self.storage_key = secrets.token_urlsafe(32)
        self.id = uuid.uuid4().hex[:8]  # several stand-ins (test runs) may share one Docker engine
        self.network = f"dev8-aci-stub-{self.id}"
        self.stuck_images: set[str] = set()  # deployments of these images stay Pending (a stuck pull)
        self.extra_networks: list[str] = []  # more networks each group's container joins
        self.records: dict[str, str] = {}    # FQDN → IP: what Azure DNS answers now
        self.published: list[tuple[str, str, float]] = []  # (FQDN, IP, monotonic time) of every answer set
        self.dns_lag = 0.0                   # seconds a start's new record waits (the old one is answered)
        self.hosts = root / "hosts"
        root.mkdir(parents=True, exist_ok=True)
        self._hosts_base = Path("/etc/hosts").read_text()
        self._write_hosts()
        (root / "shares").mkdir(parents=True, exist_ok=True)
        (root / "mounts").mkdir(parents=True, exist_ok=True)

    # --- the process -------------------------------------------------------------------------

    def start(self) -> ArmStub:
        stub = self

        class Handler(_Handler):
            arm = stub
        Handler.stub = stub
        self.serve(Handler)
        self._network()
        return self

    def _network(self) -> None:
        """A bridge with a subnet of its own (so each start can be given a new address, as
        ACI gives a new IP), inter-container traffic off. The engine picks a free subnet."""
        probe = self.docker.networks.create(self.network, driver="bridge")
        probe.reload()
        subnet = probe.attrs["IPAM"]["Config"][0]["Subnet"]
        probe.remove()
        pool = docker.types.IPAMPool(subnet=subnet)
        self.docker.networks.create(self.network, driver="bridge", labels={LABEL: self.id},
                                    ipam=docker.types.IPAMConfig(pool_configs=[pool]),
                                    options={"com.docker.network.bridge.enable_icc": "false"})
        self.addresses = itertools.cycle(list(ipaddress.ip_network(subnet).hosts())[10:250])

    # --- Azure DNS --------------------------------------------------------------------------

    @staticmethod
    def fqdn(g: Group) -> str | None:
        label = g.body["properties"]["ipAddress"].get("dnsNameLabel")
        return f"{label}.westeurope.azurecontainer.io" if label else None

    def publish(self, name: str, ip: str | None) -> None:
        """Make ``name`` resolve to ``ip`` (or to nothing)."""
        with self.lock:
            if ip is None:
                self.records.pop(name, None)
            else:
                self.records[name] = ip
                self.published.append((name, ip, time.monotonic()))
            self._write_hosts()

    def _publish_late(self, g: Group, name: str, ip: str) -> None:
        with self.lock:
            if self.groups.get(g.name) is g and g.ip == ip:  # still this deployment's address
                self.publish(name, ip)

    def _write_hosts(self) -> None:
        # written in place, never replaced: a bind mount follows the file, not the name
        text = self._hosts_base + "".join(f"{ip} {name}\n" for name, ip in self.records.items())
        with open(self.hosts, "r+" if self.hosts.exists() else "w") as f:
            f.write(text)
            f.truncate()

    def lookup(self, name: str) -> set[str]:
        """What a process started through :meth:`resolving` resolves ``name`` to now."""
        with self.lock:
            return {self.records[name]} if name in self.records else set()

    def resolving(self) -> list[str]:
        """A command prefix that runs a command with this stand-in's hosts file as its
        ``/etc/hosts``, in a mount namespace of its own (root, or user namespaces, needed)."""
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                'mount --bind "$0" /etc/hosts && exec "$@"', str(self.hosts)]

    def next_ip(self) -> str:
        used = {c.attrs["NetworkSettings"]["Networks"].get(self.network, {}).get("IPAddress")
                for c in self.docker.containers.list(filters={"network": self.network})}
        while True:
            ip = str(next(self.addresses))
            if ip not in used:
                return ip

    def stop(self) -> None:
        self.shutdown()
        for c in self.docker.containers.list(all=True, filters={"label": f"{LABEL}={self.id}"}):
            c.remove(force=True)
        for v in self.docker.volumes.list(filters={"label": f"{LABEL}={self.id}"}):
            v.remove(force=True)
        with contextlib.suppress(docker.errors.NotFound):
            self.docker.networks.get(self.network).remove()
        for mount in (self.root / "mounts").iterdir():
            subprocess.run(["fusermount", "-u", str(mount)], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)

    def env(self) -> dict[str, str]:
        """The settings of a dev8 server (or runtime) that uses this stub."""
        return {"DEV8_RUNTIME_SUBSCRIPTION_ID": "sub-dev8", "DEV8_RUNTIME_RESOURCE_GROUP": "rg-dev8",
                "DEV8_RUNTIME_LOCATION": "westeurope", "DEV8_RUNTIME_STORAGE_ACCOUNT": "dev8homes",
                "DEV8_RUNTIME_ARM_ENDPOINT": self.url, "DEV8_RUNTIME_CA_BUNDLE": str(self.ca),
                "DEV8_RUNTIME_INSTANCE_DISCOVERY": "false", "DEV8_RUNTIME_SAVE_EVERY": "30",
                **self.credential_env()}

    # --- container groups ----------------------------------------------------------------------

    def group_json(self, g: Group) -> dict:
        body = json.loads(json.dumps(g.body))
        props = body["properties"]
        props["provisioningState"] = g.provisioning
        props["instanceView"] = {"state": g.state, "events": g.events}
        if g.ip:
            props["ipAddress"]["ip"] = g.ip
            if (fqdn := self.fqdn(g)) is not None:
                props["ipAddress"]["fqdn"] = fqdn
        for c in props["containers"]:
            c["properties"]["environmentVariables"] = [
                {k: v for k, v in e.items() if k != "secureValue"} for e in c["properties"].get("environmentVariables", [])]
            c["properties"]["instanceView"] = self._container_view(g)
        for v in props.get("volumes", []):
            if "azureFile" in v:
                v["azureFile"].pop("storageAccountKey", None)  # ARM never returns it
        for cred in props.get("imageRegistryCredentials") or []:
            cred.pop("password", None)
        body.update(id=g.id, name=g.name, type="Microsoft.ContainerInstance/containerGroups")
        return body

    def _container_view(self, g: Group) -> dict:
        if g.container_id is None:
            return {"restartCount": 0, "currentState": {"state": "Waiting", "detailStatus": g.state},
                    "events": g.events}
        try:
            attrs = self.docker.api.inspect_container(g.container_id)
        except docker.errors.NotFound:
            return {"restartCount": 0, "currentState": {"state": "Terminated"}}
        st = attrs["State"]
        state = "Running" if st.get("Running") else "Terminated"
        current: dict[str, Any] = {"state": state, "startTime": st["StartedAt"], "detailStatus": ""}
        if state == "Terminated":
            current["exitCode"] = st.get("ExitCode", 0)
        return {"restartCount": attrs.get("RestartCount", 0), "currentState": current, "events": g.events}

    def deploy(self, g: Group, op: str) -> None:
        """Pending → Running: pull the image from its registry, start it on Docker."""
        def event(name: str, message: str) -> None:
            g.events.append({"count": 1, "firstTimestamp": _now(), "lastTimestamp": _now(), "name": name,
                             "message": message, "type": "Normal"})
        try:
            container = g.body["properties"]["containers"][0]["properties"]
            image = container["image"]
            if g.stuck or image in self.stuck_images:
                g.stuck = True
                event("Pulling", f'pulling image "{image}"')
                return  # stays Pending until deleted: the caller's timeout decides
            event("Pulling", f'pulling image "{image}"')
            self.docker.images.pull(image)
            event("Pulled", f'Successfully pulled image "{image}"')
            c = self.docker.containers.create(image, labels={LABEL: self.id, "group": g.id},
                                              name=f"aci-{g.name}-{uuid.uuid4().hex[:6]}", **self._run_kwargs(g))
            network = self.docker.networks.get(self.network)
            network.disconnect(c)
            ip = self.next_ip()  # a new address at every start, as ACI's
            network.connect(c, ipv4_address=ip)
            for extra in self.extra_networks:  # e.g. a test git server's, as a VNet reaches a company's hosts
                self.docker.networks.get(extra).connect(c)
            c.start()
            g.container_id, g.ip, g.running_at = c.id, ip, time.monotonic()
            name = self.fqdn(g)
            if name is not None:
                if self.dns_lag:
                    threading.Timer(self.dns_lag, self._publish_late, (g, name, ip)).start()
                else:
                    self.publish(name, ip)
            event("Started", "Started container")
            g.state, g.provisioning = "Running", "Succeeded"
            self.finish(op, "Succeeded")
        except Exception as exc:  # noqa: BLE001 — what ACI would report as a failed deployment
            g.state, g.provisioning = "Failed", "Failed"
            event("Failed", str(exc)[:300])
            self.finish(op, "Failed", {"code": "DeploymentFailed", "message": str(exc)[:300]})

    def _run_kwargs(self, g: Group) -> dict:
        props = g.body["properties"]
        container = props["containers"][0]["properties"]
        requests = container["resources"]["requests"]
        volumes = {}
        for mount in container.get("volumeMounts", []):
            volume = next(v for v in props.get("volumes", []) if v["name"] == mount["name"])
            read_only = bool(mount.get("readOnly"))
            if "azureFile" in volume:
                source = str(self.mount_share(volume["azureFile"]["shareName"]))
                read_only = read_only or bool(volume["azureFile"].get("readOnly"))
            elif "emptyDir" in volume:  # the host's disk, empty at each deployment
                source = self.docker.volumes.create(f"aci-{g.name}-{uuid.uuid4().hex[:8]}",
                                                    labels={LABEL: self.id}).name
                g.scratch.append(source)
            else:
                raise ValueError(f"the stand-in mounts no {sorted(volume)} volume")
            volumes[source] = {"bind": mount["mountPath"], "mode": "ro" if read_only else "rw"}
        return {"environment": {e["name"]: e.get("value", e.get("secureValue", ""))
                                for e in container.get("environmentVariables", [])},
                "nano_cpus": int(requests["cpu"] * 1e9), "mem_limit": int(requests["memoryInGB"] * (1 << 30)),
                "network": self.network, "volumes": volumes,
                "restart_policy": {"Name": {"Always": "always", "OnFailure": "on-failure"}.get(
                    props.get("restartPolicy", "Always"), "no")}}

    def mount_share(self, share: str) -> Path:
        """The share as ACI's SMB mount shows it: root-owned, 0777, chmod/chown ignored."""
        mount = self.root / "mounts" / share
        mount.mkdir(exist_ok=True)
        if subprocess.run(["mountpoint", "-q", str(mount)]).returncode != 0:
            subprocess.run(["bindfs", "-o", "allow_other", "--force-user=root", "--force-group=root",
                            "--perms=0777", "--chmod-ignore", "--chown-ignore", str(self.shares[share]), str(mount)],
                           check=True, capture_output=True)
        return mount

    def deallocate(self, g: Group) -> None:
        """Gone at once, without a signal it could act on: the worst a stop can do (what ACI
        itself sends on stop is for the live test to show)."""
        if g.container_id:
            try:
                self.docker.containers.get(g.container_id).remove(force=True)
            except docker.errors.NotFound:
                pass
        for volume in g.scratch:
            with contextlib.suppress(docker.errors.NotFound):
                self.docker.volumes.get(volume).remove(force=True)
        g.container_id, g.ip, g.scratch = None, None, []

    # --- long-running operations ------------------------------------------------------------

    def operation(self) -> str:
        op = uuid.uuid4().hex
        self.operations[op] = {"id": op, "status": "InProgress", "startTime": _now()}
        return op

    def finish(self, op: str, status: str, error: dict | None = None) -> None:
        self.operations[op].update(status=status, endTime=_now(), **({"error": error} if error else {}))

    def op_url(self, op: str, sub: str) -> str:
        return (f"{self.url}/subscriptions/{sub}/providers/Microsoft.ContainerInstance/locations/westeurope/"
                f"operations/{op}?api-version={ACI_API}")


class _Handler(JsonHandler):
    arm: ArmStub

    def _route(self, method: str) -> None:
        request = self._request("InvalidRequestContent")
        if request is None:
            return None
        path, query, body = request
        arm = self.arm
        if self._entra(method, path, body):
            return None
        if not self._authorized():
            return self._error(401, "AuthenticationFailed", "missing or invalid bearer token",
                               {"WWW-Authenticate": f'Bearer authorization_uri="{arm.url}/{arm.tenant}"'})
        with arm.lock:
            arm.requests.append((method, path))
        injected = arm.injected(method, path)
        if injected is not None:
            return self._send(injected.status, injected.body, injected.headers)
        api = (query.get("api-version") or [""])[0]
        if "/operations/" in path:
            op = arm.operations.get(path.rsplit("/", 1)[1])
            return self._send(200, op) if op else self._error(404, "NotFound", "no such operation")
        if re.fullmatch(SHARES + r"(/.*)?", path):
            if api != STORAGE_API:
                return self._error(400, "InvalidApiVersionParameter", f"api-version {api!r} is not {STORAGE_API}")
            return self._storage(method, path, body)
        m = re.fullmatch(GROUPS + r"(?:/(?P<name>[^/]+)(?P<rest>/.*)?)?", path)
        if m is None:
            return self._error(404, "InvalidResourceType", f"no such resource type: {path}")
        if api != ACI_API:
            return self._error(400, "InvalidApiVersionParameter", f"api-version {api!r} is not {ACI_API}")
        with arm.lock:
            return self._groups(method, m, body, query)

    def _storage(self, method: str, path: str, body: Any) -> None:
        arm = self.arm
        if method == "POST" and path.endswith("/listKeys"):
            return self._send(200, {"keys": [{"keyName": "key1", "value": arm.storage_key, "permissions": "FULL"}]})
        m = re.fullmatch(SHARES + r"/fileServices/default/shares/(?P<share>[^/]+)", path)
        if m is None:
            return self._error(404, "ResourceNotFound", path)
        share = m["share"]
        answer = {"id": path, "name": share, "type": "Microsoft.Storage/storageAccounts/fileServices/shares",
                  "properties": {"shareQuota": 100}}
        if method == "PUT":
            try:
                validate(STORAGE_SPEC, "FileShare", body)
            except SpecViolation as exc:
                return self._error(400, "InvalidRequestContent", f"file share body: {exc}")
            arm.bodies.append((path, body))
            folder = arm.root / "shares" / share
            folder.mkdir(exist_ok=True)
            arm.shares[share] = folder
            answer["properties"].update(body.get("properties") or {})
            return self._send(201, answer)
        if share not in arm.shares:
            if method == "DELETE":
                return self._send(204)  # the spec's answer for a share that is not there
            return self._error(404, "ShareNotFound", f"The specified share {share} does not exist.")
        if method == "GET":
            return self._send(200, answer)
        if method == "DELETE":
            mount = arm.root / "mounts" / share
            subprocess.run(["fusermount", "-u", str(mount)], capture_output=True)
            shutil.rmtree(arm.shares.pop(share), ignore_errors=True)
            return self._send(200)
        return self._error(405, "MethodNotAllowed", method)

    def _groups(self, method: str, m: re.Match, body: Any, query: dict) -> None:
        arm = self.arm
        name, rest, sub = m["name"], m["rest"] or "", m["sub"]
        if name is None:
            if method != "GET":
                return self._error(405, "MethodNotAllowed", method)
            return self._send(200, {"value": [arm.group_json(g) for g in arm.groups.values()
                                              if g.id.startswith(f"/subscriptions/{sub}/resourceGroups/{m['rg']}/")]})
        gid = (f"/subscriptions/{sub}/resourceGroups/{m['rg']}/providers/Microsoft.ContainerInstance/"
               f"containerGroups/{name}")
        g = arm.groups.get(name)
        if method == "PUT" and not rest:
            return self._put_group(name, gid, sub, body, g)
        if g is None:
            return self._error(404, "ResourceNotFound",
                               f"The Resource 'Microsoft.ContainerInstance/containerGroups/{name}' under resource "
                               f"group '{m['rg']}' was not found.")
        if method == "GET" and not rest:
            return self._send(200, arm.group_json(g))
        if method == "GET" and rest == "/containers/env/logs":
            if g.container_id is None:
                return self._send(200, {"content": ""})
            tail = int((query.get("tail") or ["0"])[0]) or "all"
            logs = arm.docker.api.logs(g.container_id, tail=tail).decode(errors="replace")
            return self._send(200, {"content": logs})
        if method == "POST" and rest == "/stop":
            arm.deallocate(g)
            g.state, g.events = "Stopped", []
            return self._send(204)
        if method == "POST" and rest in ("/start", "/restart"):
            if rest == "/start" and g.state == "Running":
                return self._send(204)
            arm.deallocate(g)
            g.state, g.events, g.accepted_at = "Pending", [], time.monotonic()
            op = arm.operation()
            threading.Thread(target=arm.deploy, args=(g, op), daemon=True).start()
            return self._send(202, None, {"Azure-AsyncOperation": arm.op_url(op, sub), "Retry-After": "1"})
        if method == "DELETE" and not rest:
            arm.deallocate(g)
            del arm.groups[name]
            if (fqdn := arm.fqdn(g)) is not None:
                arm.publish(fqdn, None)
            op = arm.operation()
            arm.finish(op, "Succeeded")
            return self._send(202, None, {"Azure-AsyncOperation": arm.op_url(op, sub), "Retry-After": "1",
                                          "Location": arm.op_url(op, sub)})
        return self._error(404, "NotFound", f"{method} {rest}")

    def _put_group(self, name: str, gid: str, sub: str, body: Any, existing: Group | None) -> None:
        arm = self.arm
        try:
            validate(ACI_SPEC, "ContainerGroup", body)
        except SpecViolation as exc:
            return self._error(400, "InvalidRequestContent", f"The request content was invalid: {exc}")
        arm.bodies.append((gid, body))
        if not re.fullmatch(r"[a-z0-9](?:[a-z0-9]|-(?!-)){0,61}[a-z0-9]", name):
            return self._error(400, "ContainerGroupNameInvalid", f"The container group name '{name}' is invalid.")
        props = body["properties"]
        for volume in props.get("volumes", []):
            share = (volume.get("azureFile") or {}).get("shareName")
            if share and share not in arm.shares:
                return self._error(400, "AzureFileShareNotFound", f"Azure file share '{share}' not found.")
            if share and volume["azureFile"].get("storageAccountKey") != arm.storage_key:
                return self._error(400, "InvalidStorageAccountKey", "The storage account key is invalid.")
        image = props["containers"][0]["properties"]["image"]
        try:
            present = has_manifest(parse_ref(image))
        except Exception:  # noqa: BLE001 — an unreachable registry is an inaccessible image to ACI
            present = False
        if not present:
            return self._error(400, "InaccessibleImage",
                               f"The image '{image}' in container group '{name}' is not accessible. Please check "
                               "the image and registry credential.")
        if existing is not None:
            if existing.state == "Running" and existing.body["properties"]["containers"] != props["containers"]:
                return self._error(409, "ContainerGroupUpdateNotAllowed",
                                   "The updates on container group are not allowed: stop it first.")
            arm.deallocate(existing)
        g = Group(name=name, id=gid, body=body, accepted_at=time.monotonic())
        arm.groups[name] = g
        op = arm.operation()
        threading.Thread(target=arm.deploy, args=(g, op), daemon=True).start()
        self._send(200 if existing else 201, arm.group_json(g),
                   {"Azure-AsyncOperation": arm.op_url(op, sub), "Retry-After": "1"})
