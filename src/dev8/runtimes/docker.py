"""Local Docker engine runtime: one container and one named volume per environment.

Options (``DEV8_RUNTIME_*``): ``BASE_URL`` (default: ``DOCKER_HOST`` or the local socket),
``NETWORK`` (a Docker network environments join instead of dev8's own ``dev8-envs``
bridge, where inter-container traffic is off; ``DEV8_DOCKER_NETWORK`` is read too),
``PREBUILD_HOMES`` (how a home is made from a prebuild's volume: ``overlay``, the default, or
``copy``), ``BOOT_SLOTS`` (containers booting at once; twice the CPUs unless set).

A home made from a prebuild is, by default, an overlay volume: the prebuild's volume is its
read-only lower layer and two volumes of its own (``<home>-upper``, ``<home>-work``) take
every change, so it exists at once whatever the prebuild holds. The prebuild's volume is
kept while any home is layered on it (labelled ``dev8.layered-on``): removing it then only
marks it retired (a ``<volume>-retired`` volume), and the last home layered on it to go
removes it.
"""
from __future__ import annotations

import contextlib
import os
import posixpath
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Literal

import docker
import docker.errors
import requests.exceptions
from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from dev8.envimage import dev8_env as layout
from dev8.runtimes import docker_images
from dev8.runtimes.base import (
    DEFAULT_START_TIMEOUT,
    LABEL_ENV_ID,
    LABEL_INSTALLATION,
    LABEL_MANAGED,
    EnvSpec,
    NeedsUserAction,
    Observed,
    Progress,
    RuntimeUnavailable,
    StorageGone,
)
from dev8.runtimes.pulled import host_key_from_logs

API_VERSION = "1.41"
# Environments join this bridge unless the operator names a network: inter-container
# traffic is off on it, so one environment cannot reach another (outbound NAT still works).
ENV_NETWORK = "dev8-envs"
ENV_NETWORK_OPTIONS = {"com.docker.network.bridge.enable_icc": "false"}
# Every call to the engine is bounded (seconds without an answer): a wedged engine must not
# hold a worker thread for long. A ping answers at once on a healthy engine; an image build
# or pull may be silent for minutes (a long RUN step).
API_TIMEOUT = 60
PING_TIMEOUT = 5
IMAGE_TIMEOUT = 1800
SEED_TIMEOUT = 1800  # copying a prebuild's home (a large node_modules)
# Written last by the copy of a prebuild's home: a home without it was cut half way.
SEEDED_MARK = ".local/share/dev8/seeded-from-prebuild"
# Paused is still the same instance (its tmpfs intact), merely frozen: connections to it
# hang until the control plane's timeouts say so; dev8 does not undo an operator's pause.
RUNNING_STATES = ("running", "paused")
# On a home made from a prebuild: the prebuild's volume it was copied from or is layered on.
LABEL_SEED = "dev8.seed"
LABEL_LAYERED_ON = "dev8.layered-on"
LAYER_PARTS = ("upper", "work")  # an overlay home's own volumes: <home>-upper, <home>-work


class DockerOptions(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DEV8_RUNTIME_", extra="ignore")

    base_url: str | None = None
    network: str | None = Field(default=None,
                                validation_alias=AliasChoices("DEV8_RUNTIME_NETWORK", "DEV8_DOCKER_NETWORK"))
    # "copy" where the engine's volumes cannot be overlay mounts (e.g. a rootless engine on
    # an old kernel), or where a home must not depend on its prebuild's volume.
    prebuild_homes: Literal["overlay", "copy"] = "overlay"
    # Environments booting at once (from container start to sshd's banner); the others wait
    # their turn, first come first served. 0: twice this machine's CPUs.
    boot_slots: int = Field(default=0, ge=0)


def overlay_options(lower: str, upper: str, work: str) -> dict[str, str]:
    """Pure builder: the local driver's options for a home layered on the prebuild volume at
    host path ``lower``. ``redirect_dir=on``: a directory of the prebuild can be renamed
    (``mv node_modules old``) instead of failing with EXDEV."""
    return {"type": "overlay", "device": "overlay",
            "o": f"lowerdir={lower},upperdir={upper},workdir={work},redirect_dir=on"}


def container_kwargs(spec: EnvSpec, network: str | None = None) -> dict:
    """Pure builder: the ``containers.create`` arguments for an environment."""
    return {
        "network": network,
        "image": spec.image,
        "name": spec.object_name,
        "hostname": spec.name,
        "labels": spec.labels,
        # A public key is not a secret; secrets go over SSH to the tmpfs after start.
        "environment": {"DEV8_CONTROL_KEY": spec.control_public_key},
        "volumes": {spec.volume_name: {"bind": layout.HOME, "mode": "rw"}},
        "tmpfs": {layout.DEFAULT_RUN_DIR: "size=16m,mode=0700,uid=1000,gid=1000"},
        # Only sshd, only on loopback, on a port the engine picks.
        "ports": {"22/tcp": ("127.0.0.1", None)},
        "nano_cpus": int(spec.cpus * 1e9),
        "mem_limit": spec.memory_bytes,
        "restart_policy": {"Name": "unless-stopped"},
        "init": True,
        "detach": True,
    }


def observed_of(attrs: dict) -> Observed:
    """Pure: what a container's inspect document says. The instance is the container and
    the moment it last started: a restart (ours, the engine's restart policy, a dockerd
    restart) empties its tmpfs, so it is a new instance to configure."""
    state = attrs.get("State") or {}
    status = state.get("Status", "")
    port = None
    for b in (attrs.get("NetworkSettings", {}).get("Ports") or {}).get("22/tcp") or []:
        if b.get("HostPort"):
            port = int(b["HostPort"])
            break
    running = status in RUNNING_STATES
    instance = f"{attrs.get('Id', '')[:12]}@{state.get('StartedAt', '')}" if running else None
    return Observed(exists=True, running=running, host="127.0.0.1" if running and port else None,
                    port=port if running else None, instance_id=instance,
                    state={"container_id": attrs.get("Id")}, detail=status)


def last_exit(attrs: dict) -> float | None:
    """Pure: when the container's previous run ended, as a Unix time; None if it never
    ended. Its log's lines after that are the current run's (the run's start time would
    not do: the engine records it after the process is already running and printing)."""
    text = (attrs.get("State") or {}).get("FinishedAt") or ""
    try:  # RFC 3339 with nanoseconds: Python reads it, keeping microseconds
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return None if moment.year == 1 else moment.timestamp()


def listed_of(row: dict) -> Observed:
    """Pure: what a row of the container listing (one call for all) says; no instance id."""
    running = row.get("State") in RUNNING_STATES
    port = next((p.get("PublicPort") for p in row.get("Ports") or []
                 if p.get("PrivatePort") == 22 and p.get("PublicPort")), None)
    return Observed(exists=True, running=running, host="127.0.0.1" if running and port else None,
                    port=port if running else None, state={"container_id": row.get("Id")},
                    detail=row.get("State", ""))


class DockerRuntime:
    name = "docker"
    before_stop: str | None = None  # its storage is the live home
    start_timeout = DEFAULT_START_TIMEOUT
    copies_storage = True

    def __init__(self, base_url: str | None = None, network: str | None = None,
                 prebuild_homes: Literal["overlay", "copy"] = "overlay", boot_slots: int = 0) -> None:
        self._base_url = base_url
        self.network = network
        self.prebuild_homes = prebuild_homes
        self.boot_slots = boot_slots or 2 * (os.cpu_count() or 1)
        self._network_seen = False
        self._clients: dict[int, docker.DockerClient] = {}  # by timeout

    @classmethod
    def from_settings(cls, data_dir: Path) -> DockerRuntime:
        opts = DockerOptions()
        return cls(base_url=opts.base_url, network=opts.network, prebuild_homes=opts.prebuild_homes,
                   boot_slots=opts.boot_slots)

    @contextlib.contextmanager
    def _api(self, timeout: int = API_TIMEOUT) -> Iterator[docker.DockerClient]:
        try:
            if timeout not in self._clients:
                kwargs = {"version": API_VERSION, "timeout": timeout}
                client = (docker.DockerClient(base_url=self._base_url, **kwargs)
                          if self._base_url else docker.from_env(**kwargs))
                if client.api.base_url.startswith("http+docker://"):  # a local socket: no proxy to look up
                    client.api.trust_env = False  # requests scans the environment for one at every call
                self._clients[timeout] = client
            yield self._clients[timeout]
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout, FileNotFoundError,
                ConnectionError) as exc:
            raise RuntimeUnavailable(self._unreachable(exc)) from None
        except docker.errors.DockerException as exc:
            if isinstance(exc, docker.errors.APIError):
                raise
            raise RuntimeUnavailable(self._unreachable(exc)) from None

    def _unreachable(self, exc: BaseException) -> str:
        where = self._base_url or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        return f"Docker engine unreachable at {where} ({_reason(exc)})"

    def ping(self) -> None:
        with self._api(PING_TIMEOUT) as c:
            c.ping()

    def prepare(self, spec: EnvSpec, progress: Progress) -> None:
        self._ensure_image(spec.image, progress)
        self._ensure_volume(spec, progress)

    def _ensure_image(self, image: str, progress: Progress) -> None:
        with self._api(IMAGE_TIMEOUT) as c:
            try:
                c.images.get(image)
                return
            except docker.errors.ImageNotFound:
                pass
            target = _own_target(image)
            if target is not None:
                progress(f"image {image} not present: building it")
                docker_images.build(c, target, progress)
                return
            self._pull(c, image, progress)

    @staticmethod
    def _pull(c: docker.DockerClient, image: str, progress: Progress) -> None:
        progress(f"pulling {image}")
        try:
            c.images.pull(image)
        except docker.errors.APIError as exc:
            if exc.status_code is not None and 400 <= exc.status_code < 500 or "not found" in str(exc).lower():
                raise NeedsUserAction(f"image {image} is not on this machine and cannot be pulled "
                                      f"({exc.explanation or exc}); choose another image") from None
            raise

    def image_status(self, image: str) -> str:
        with self._api() as c:
            try:
                c.images.get(image)
                return "ready"
            except docker.errors.ImageNotFound:
                pass
            if _own_target(image) is not None:
                return "buildable"
            try:
                c.images.get_registry_data(image)
                return "pullable"
            except docker.errors.APIError as exc:
                reason = (exc.explanation or str(exc)).strip().splitlines()[0][:200]
                where = ("its registry does not have it" if exc.status_code in (401, 403, 404)
                         else "its registry cannot be reached")
                raise NeedsUserAction(f"image {image} is not on this machine and {where} ({reason}): check the "
                                      f"name, or ask your admin to build or load it") from None

    def fetch_image(self, image: str, progress: Progress) -> None:
        target = _own_target(image)
        with self._api(IMAGE_TIMEOUT) as c:
            try:
                if target is not None:
                    docker_images.build(c, target, progress)
                else:
                    self._pull(c, image, progress)
            except docker_images.ImageBuildError as exc:
                raise NeedsUserAction(str(exc)) from None

    def build_image(self, tag: str, progress: Progress, *, image: str | None = None, context: bytes | None = None,
                    dockerfile: str = "Dockerfile", args: dict[str, str] | None = None) -> str:
        with self._api(IMAGE_TIMEOUT) as c:
            try:
                if context is not None:
                    image = docker_images.build_dockerfile(c, context, dockerfile, args or {}, tag + "-app", progress)
                elif image is not None:
                    self._ensure_image(image, progress)
                else:
                    raise NeedsUserAction("a devcontainer image needs an image or a Dockerfile")
                return docker_images.build(c, "base", progress, base_image=image, tag=tag)
            except docker_images.ImageBuildError as exc:
                raise NeedsUserAction(str(exc)) from None

    def _ensure_volume(self, spec: EnvSpec, progress: Progress) -> None:
        with self._api() as c:
            volume = _volume(c, spec.volume_name)
            lower = ((volume.attrs.get("Labels") or {}) if volume else {}).get(LABEL_LAYERED_ON)
            if lower and _volume(c, lower) is None:  # the prebuild volume under it was removed by hand
                if spec.storage_expected:
                    raise StorageGone(f"its home is layered on the prebuild volume {lower}, which is gone")
                progress(f"the home volume {spec.volume_name} was layered on {lower}, which is gone: made anew")
                self._remove_home(c, spec.volume_name)
                volume = None
            if volume is None:
                if spec.storage_expected:
                    raise StorageGone(f"its home volume {spec.volume_name} is gone")
                if spec.seed and self.prebuild_homes == "overlay":
                    self._layer_volume(c, spec, progress)
                    return
                volume = c.volumes.create(spec.volume_name, labels=self._volume_labels(spec))
            labels = volume.attrs.get("Labels") or {}
        if not spec.seed or spec.storage_expected:
            return
        if labels.get(LABEL_SEED) != spec.seed_volume_name:  # not made for this create: a kept home
            progress(f"the kept home volume {spec.volume_name} is this environment's home, not the prebuild's")
        elif LABEL_LAYERED_ON not in labels:  # made to be a copy: copied now, or finished if a copy was cut
            self._seed_volume(spec, progress)

    @staticmethod
    def _volume_labels(spec: EnvSpec, **more: str) -> dict[str, str]:
        labels = {k: v for k, v in spec.labels.items() if k != LABEL_ENV_ID}
        if spec.seed_volume_name:
            labels[LABEL_SEED] = spec.seed_volume_name
        return labels | more

    def _layer_volume(self, c: docker.DockerClient, spec: EnvSpec, progress: Progress) -> None:
        """Make the new home an overlay on the prebuild's volume (``spec.seed``): its own
        upper and work volumes first, the home volume naming them last, so a cut attempt
        leaves no home and is simply made again."""
        seed_volume = spec.seed_volume_name or ""
        lower = _volume(c, seed_volume)
        if lower is None:
            raise StorageGone(f"the prebuild's home volume {seed_volume} is gone")
        parts = [c.volumes.create(f"{spec.volume_name}-{part}", labels=self._volume_labels(spec))
                 for part in LAYER_PARTS]
        progress(f"layering the new home on the prebuild's ({seed_volume}, copy-on-write)")
        c.volumes.create(spec.volume_name, driver="local",
                         driver_opts=overlay_options(lower.attrs["Mountpoint"],
                                                     *(p.attrs["Mountpoint"] for p in parts)),
                         labels=self._volume_labels(spec, **{LABEL_LAYERED_ON: seed_volume}))

    def _seed_volume(self, spec: EnvSpec, progress: Progress) -> None:
        """Fill the new home volume with a copy of the prebuild's (``spec.seed``), in a
        short-lived container of the environment's own image: ``cp -a`` keeps owners, modes,
        links and extended attributes, and clones extents where the filesystem can (reflink).
        The copy marks itself done last; a volume without the mark (a copy cut half way) is
        emptied and copied again, or removed if the prebuild is gone: no home made of nothing."""
        seed_volume = spec.seed_volume_name or ""
        script = (f"[ -e /to/{SEEDED_MARK} ] && exit 0; "
                  "find /to -mindepth 1 -delete && cp -a --reflink=auto /from/. /to/ "
                  f"&& mkdir -p /to/{posixpath.dirname(SEEDED_MARK)} && touch /to/{SEEDED_MARK}")
        with self._api(SEED_TIMEOUT) as c:
            if _volume(c, seed_volume) is None:
                _drop_volume(c, spec.volume_name)
                raise StorageGone(f"the prebuild's home volume {seed_volume} is gone")
            progress(f"copying the prebuild's home ({seed_volume})")
            c.containers.run(spec.image, ["sh", "-c", script], entrypoint=[], user="0", remove=True,
                             network_disabled=True, labels={LABEL_MANAGED: "true"},
                             volumes={seed_volume: {"bind": "/from", "mode": "ro"},
                                      spec.volume_name: {"bind": "/to", "mode": "rw"}})

    def _find(self, c: docker.DockerClient, spec: EnvSpec):  # type: ignore[no-untyped-def]
        try:
            return c.containers.get(spec.object_name)
        except docker.errors.NotFound:
            return None

    def ensure_running(self, spec: EnvSpec) -> Observed:
        with self._api() as c:
            container = self._find(c, spec)
            if container is not None and container.labels.get(LABEL_ENV_ID) != spec.env_id:
                # Left behind by an earlier environment of the same name: its volume is
                # kept, the container is not ours to adopt.
                container.remove(force=True)
                container = None
            if container is not None and container.status not in RUNNING_STATES and self._stale(c, container, spec):
                # A newer image under the same tag, or new limits: re-create; the home volume carries the work.
                container.remove(force=True)
                container = None
            if container is None:
                container = self._create(c, spec)
            if container.status == "paused":
                container.unpause()
            elif container.status != "running":
                try:
                    container.start()
                except docker.errors.NotFound as exc:
                    if self.network or "network" not in str(exc).lower():
                        raise
                    # dev8's network was removed behind its back: made again, the container with it
                    container.remove(force=True)
                    self._network_seen = False
                    container = self._create(c, spec)
                    container.start()
            container.reload()
            return observed_of(container.attrs)

    def _create(self, c: docker.DockerClient, spec: EnvSpec):  # type: ignore[no-untyped-def]
        try:
            return c.containers.create(**container_kwargs(spec, self._network(c)))
        except docker.errors.APIError as exc:
            if exc.status_code != 409:
                raise
            container = self._find(c, spec)  # created concurrently: adopt it
            if container is None:
                raise
            return container

    def env_network(self) -> str:
        """The network environments join (made on first use)."""
        with self._api() as c:
            return self._network(c)

    def _network(self, c: docker.DockerClient) -> str:
        """The operator's network, else dev8's isolating bridge (made on first use)."""
        if self.network:
            return self.network
        if self._network_seen:  # not asked at every start: a burst's starts each asked the engine
            return ENV_NETWORK
        if not c.networks.list(names=[ENV_NETWORK]):
            try:
                c.networks.create(ENV_NETWORK, driver="bridge", options=ENV_NETWORK_OPTIONS, check_duplicate=True,
                                  labels={LABEL_MANAGED: "true"})
            except docker.errors.APIError as exc:
                if exc.status_code != 409:  # made concurrently
                    raise
        self._network_seen = True
        return ENV_NETWORK

    @staticmethod
    def _stale(c: docker.DockerClient, container, spec: EnvSpec) -> bool:  # type: ignore[no-untyped-def]
        """Made for another image, or other CPU and memory limits (an edited environment)."""
        host = container.attrs.get("HostConfig") or {}
        if host.get("NanoCpus") != int(spec.cpus * 1e9) or host.get("Memory") != spec.memory_bytes:
            return True
        try:
            return c.images.get(spec.image).id != container.attrs.get("Image")
        except docker.errors.ImageNotFound:
            return False

    def observe(self, spec: EnvSpec) -> Observed:
        with self._api() as c:
            container = self._find(c, spec)
            if container is None or container.labels.get(LABEL_ENV_ID) != spec.env_id:
                return Observed(exists=False)
            return observed_of(container.attrs)

    def observe_all(self, installation: str) -> dict[str, Observed]:
        with self._api() as c:
            listed = c.api.containers(all=True, filters={"label": f"{LABEL_INSTALLATION}={installation}"})
        return {row["Labels"][LABEL_ENV_ID]: listed_of(row) for row in listed
                if LABEL_ENV_ID in (row.get("Labels") or {})}

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

    def host_key(self, spec: EnvSpec) -> str:
        """What the entrypoint printed first in this run's log (the engine's API is the
        authenticated channel): no process is started in the container for it."""
        with self._api() as c:
            container = self._find(c, spec)
            if container is None or container.labels.get(LABEL_ENV_ID) != spec.env_id:
                raise RuntimeError("no container")
            since = last_exit(container.attrs)
            stream = container.logs(stdout=True, stderr=False, stream=True, follow=False,
                                    **({"since": since} if since else {}))
            key, seen = None, b""
            try:  # read until the key: a long run's log is not read whole
                for chunk in stream:
                    seen += chunk
                    *lines, seen = seen.split(b"\n")
                    key = host_key_from_logs(b"\n".join(lines).decode(errors="replace"), first=True)
                    if key is not None:
                        break
            finally:
                stream.close()
            if key is None:
                raise RuntimeError("the environment has not printed its SSH host key yet")
            return key

    def remove(self, spec: EnvSpec, *, keep_storage: bool) -> None:
        with self._api() as c:
            container = self._find(c, spec)
            if container is not None:
                container.remove(force=True)
            if not keep_storage:
                self._remove_home(c, spec.volume_name)

    def _remove_home(self, c: docker.DockerClient, name: str) -> None:
        """Remove home volume ``name`` and its overlay parts. A prebuild's volume that homes
        are layered on is only marked retired; the last of those homes to go removes it."""
        volume = _volume(c, name)
        if volume is not None and _layered_on(c, name):
            c.volumes.create(f"{name}-retired", labels={LABEL_MANAGED: "true"})
            return
        lower = (volume.attrs.get("Labels") or {}).get(LABEL_LAYERED_ON) if volume is not None else None
        for each in (name, *(f"{name}-{part}" for part in LAYER_PARTS)):
            _drop_volume(c, each)
        if lower and _volume(c, f"{lower}-retired") is not None and not _layered_on(c, lower):
            self._remove_home(c, lower)
            _drop_volume(c, f"{lower}-retired")


def _volume(c: docker.DockerClient, name: str):  # type: ignore[no-untyped-def]
    """Volume ``name``, None when there is none."""
    try:
        return c.volumes.get(name)
    except docker.errors.NotFound:
        return None


def _drop_volume(c: docker.DockerClient, name: str) -> None:
    """Remove volume ``name`` if it is there."""
    with contextlib.suppress(docker.errors.NotFound):
        c.volumes.get(name).remove(force=True)


def _layered_on(c: docker.DockerClient, name: str) -> bool:
    """Whether a home is layered on volume ``name`` (a prebuild's)."""
    return bool(c.volumes.list(filters={"label": f"{LABEL_LAYERED_ON}={name}"}))


def _own_target(image: str) -> str | None:
    """The images/Dockerfile target ``image`` is built from when it is one of dev8's own."""
    return next((t for t in layout.IMAGE_TARGETS if image == layout.image_tag(t)), None)


def _reason(exc: BaseException) -> str:
    text = str(exc)
    for needle, reason in (("No such file", "socket not found"), ("Connection refused", "connection refused"),
                           ("Permission denied", "permission denied on the socket"),
                           ("timed out", "timed out"), ("Connection aborted", "connection lost")):
        if needle in text:
            return reason
    return text[:200]
