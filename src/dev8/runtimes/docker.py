"""Local Docker engine runtime: one container and one named volume per environment."""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import docker
import docker.errors
import requests.exceptions

from dev8 import images
from dev8.core.errors import RuntimeUnavailable
from dev8.runtimes.base import LABEL_ENV_ID, EnvSpec, Observed, Progress

HOME = "/home/dev"
RUN_DIR = "/run/dev8"
API_VERSION = "1.41"


def container_kwargs(spec: EnvSpec) -> dict:
    """Pure builder: the ``containers.create`` arguments for an environment."""
    mounts = [docker.types.Mount("/etc/dev8/extra-ca.crt", spec.ca_bundle, type="bind", read_only=True)] \
        if spec.ca_bundle else []
    return {
        "mounts": mounts,
        "network": spec.network,
        "image": spec.image,
        "name": spec.object_name,
        "hostname": spec.name,
        "labels": spec.labels,
        # A public key is not a secret; secrets go over SSH to the tmpfs after start.
        "environment": {"DEV8_CONTROL_KEY": spec.control_public_key},
        "volumes": {spec.volume_name: {"bind": HOME, "mode": "rw"}},
        "tmpfs": {RUN_DIR: "size=16m,mode=0700,uid=1000,gid=1000"},
        # Only sshd, only on loopback, on a port the engine picks.
        "ports": {"22/tcp": ("127.0.0.1", None)},
        "nano_cpus": int(spec.cpus * 1e9),
        "mem_limit": spec.memory,
        "restart_policy": {"Name": "unless-stopped"},
        "init": True,
        "detach": True,
    }


def _observed(container: docker.models.containers.Container) -> Observed:
    port = None
    bindings = (container.attrs.get("NetworkSettings", {}).get("Ports") or {}).get("22/tcp") or []
    for b in bindings:
        if b.get("HostPort"):
            port = int(b["HostPort"])
            break
    running = container.status == "running"
    return Observed(exists=True, running=running, container_id=container.id,
                    ssh_host="127.0.0.1" if port else None, ssh_port=port if running else None,
                    detail=container.status)


class DockerRuntime:
    name = "docker"

    def __init__(self, base_url: str | None = None) -> None:
        self._base_url = base_url
        self._client: docker.DockerClient | None = None

    @contextlib.contextmanager
    def _api(self) -> Iterator[docker.DockerClient]:
        try:
            if self._client is None:
                kwargs = {"version": API_VERSION}
                self._client = (docker.DockerClient(base_url=self._base_url, **kwargs)
                                if self._base_url else docker.from_env(**kwargs))
            yield self._client
        except (requests.exceptions.ConnectionError, FileNotFoundError, ConnectionError) as exc:
            raise RuntimeUnavailable(self._unreachable(exc)) from None
        except docker.errors.DockerException as exc:
            if isinstance(exc, docker.errors.APIError):
                raise
            raise RuntimeUnavailable(self._unreachable(exc)) from None

    def _unreachable(self, exc: BaseException) -> str:
        where = self._base_url or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        return f"Docker engine unreachable at {where} ({_reason(exc)})"

    def ping(self) -> None:
        with self._api() as c:
            c.ping()

    def ensure_image(self, image: str, progress: Progress) -> None:
        with self._api() as c:
            try:
                c.images.get(image)
                return
            except docker.errors.ImageNotFound:
                pass
            target = next((t for t in images.TARGETS if image == images.image_tag(t)), None)
            if target is not None:
                progress(f"image {image} not present: building it")
                images.build(c, target, progress)
                return
            progress(f"pulling {image}")
            c.images.pull(image)

    def ensure_volume(self, spec: EnvSpec) -> None:
        with self._api() as c:
            try:
                c.volumes.get(spec.volume_name)
            except docker.errors.NotFound:
                c.volumes.create(spec.volume_name, labels={k: v for k, v in spec.labels.items()
                                                           if k != LABEL_ENV_ID})

    def _find(self, c: docker.DockerClient, spec: EnvSpec):  # type: ignore[no-untyped-def]
        try:
            return c.containers.get(spec.object_name)
        except docker.errors.NotFound:
            return None

    def ensure_container(self, spec: EnvSpec) -> Observed:
        with self._api() as c:
            container = self._find(c, spec)
            if container is not None and container.labels.get(LABEL_ENV_ID) != spec.env_id:
                # Left behind by an earlier environment of the same name: its volume is
                # kept, the container is not ours to adopt.
                container.remove(force=True)
                container = None
            if container is not None and container.status != "running" and self._stale(c, container, spec):
                # A newer image under the same tag: re-create; the home volume carries the work.
                container.remove(force=True)
                container = None
            if container is None:
                try:
                    container = c.containers.create(**container_kwargs(spec))
                except docker.errors.APIError as exc:
                    if exc.status_code != 409:
                        raise
                    container = self._find(c, spec)  # created concurrently: adopt it
                    if container is None:
                        raise
            return _observed(container)

    @staticmethod
    def _stale(c: docker.DockerClient, container, spec: EnvSpec) -> bool:  # type: ignore[no-untyped-def]
        try:
            return c.images.get(spec.image).id != container.attrs.get("Image")
        except docker.errors.ImageNotFound:
            return False

    def start(self, spec: EnvSpec) -> Observed:
        with self._api() as c:
            container = self._find(c, spec)
            if container is None:
                return Observed(exists=False)
            if container.status != "running":
                container.start()
            container.reload()
            return _observed(container)

    def observe(self, spec: EnvSpec) -> Observed:
        with self._api() as c:
            container = self._find(c, spec)
            if container is None or container.labels.get(LABEL_ENV_ID) != spec.env_id:
                return Observed(exists=False)
            return _observed(container)

    def stop(self, spec: EnvSpec) -> None:
        with self._api() as c:
            container = self._find(c, spec)
            if container is not None and container.status in {"running", "restarting", "paused"}:
                container.stop(timeout=10)

    def logs(self, spec: EnvSpec, tail: int) -> list[str]:
        with self._api() as c:
            container = self._find(c, spec)
            if container is None or container.labels.get(LABEL_ENV_ID) != spec.env_id:
                return []
            return container.logs(tail=tail, timestamps=False).decode(errors="replace").splitlines()

    def remove(self, spec: EnvSpec, *, keep_volume: bool) -> None:
        with self._api() as c:
            container = self._find(c, spec)
            if container is not None:
                container.remove(force=True)
            if not keep_volume:
                with contextlib.suppress(docker.errors.NotFound):
                    c.volumes.get(spec.volume_name).remove(force=True)


def _reason(exc: BaseException) -> str:
    text = str(exc)
    for needle, reason in (("No such file", "socket not found"), ("Connection refused", "connection refused"),
                           ("Permission denied", "permission denied on the socket"),
                           ("timed out", "timed out"), ("Connection aborted", "connection lost")):
        if needle in text:
            return reason
    return text[:200]
