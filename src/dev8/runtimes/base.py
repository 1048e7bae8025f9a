"""The small interface every runtime implements.

The core owns state, secrets, timeouts, retries and routing; a runtime turns an
:class:`EnvSpec` into containers/volumes and reports what exists. Every method is
idempotent: calling it twice, or after a crash half way, converges on the same objects,
found again by deterministic names and labels. Methods are blocking (the reconciler
calls them in a worker thread) and raise :class:`dev8.core.errors.RuntimeUnavailable`
when the backend cannot be reached.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

LABEL_ENV_ID = "dev8.env-id"
LABEL_OWNER = "dev8.owner"
LABEL_MANAGED = "dev8.managed"
LABEL_INSTALLATION = "dev8.installation"

Progress = Callable[[str], None]


@dataclass(frozen=True)
class EnvSpec:
    env_id: str
    owner_id: int
    name: str
    image: str
    cpus: float
    memory: str
    control_public_key: str
    installation: str
    ca_bundle: str | None = None  # host path of extra CA certificates to trust
    network: str | None = None  # runtime network to attach (default: the runtime's own)

    @property
    def object_name(self) -> str:
        """Deterministic from installation, owner and name, so a re-created environment
        finds its volume and two dev8 installations on one engine never collide."""
        return f"dev8-{self.installation}-u{self.owner_id}-{self.name}"

    @property
    def volume_name(self) -> str:
        return f"{self.object_name}-home"

    @property
    def labels(self) -> dict[str, str]:
        return {LABEL_MANAGED: "true", LABEL_INSTALLATION: self.installation,
                LABEL_ENV_ID: self.env_id, LABEL_OWNER: str(self.owner_id)}


@dataclass(frozen=True)
class Observed:
    exists: bool
    running: bool = False
    container_id: str | None = None
    ssh_host: str | None = None
    ssh_port: int | None = None
    detail: str = ""


class Runtime(Protocol):
    name: str

    def ping(self) -> None: ...
    def ensure_image(self, image: str, progress: Progress) -> None: ...
    def ensure_volume(self, spec: EnvSpec) -> None: ...
    def ensure_container(self, spec: EnvSpec) -> Observed: ...
    def start(self, spec: EnvSpec) -> Observed: ...
    def observe(self, spec: EnvSpec) -> Observed: ...
    def stop(self, spec: EnvSpec) -> None: ...
    def remove(self, spec: EnvSpec, *, keep_volume: bool) -> None: ...
    def logs(self, spec: EnvSpec, tail: int) -> list[str]:
        """The container's last ``tail`` output lines (its services: sshd, code-server);
        empty when there is no container."""
        ...
