"""The small interface every runtime implements.

The core owns state, secrets, timeouts, retries, configuration and routing; a runtime
turns an :class:`EnvSpec` into the backend's objects (containers, volumes, pods…) and
reports where the environment's sshd is reached. Every method is idempotent: calling it
twice, or after a crash half way, converges on the same objects, found again by
deterministic names and labels. Methods are blocking (the core calls them in worker
threads, each under a timeout) and raise :class:`RuntimeUnavailable` when the backend
cannot be reached.

Runtime options (a Docker network, a namespace, a subscription…) are the runtime's own:
they reach its constructor from the ``DEV8_RUNTIME_*`` settings (see :mod:`dev8.runtimes`),
never through the spec.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

LABEL_ENV_ID = "dev8.env-id"
LABEL_OWNER = "dev8.owner"
LABEL_MANAGED = "dev8.managed"
LABEL_INSTALLATION = "dev8.installation"

Progress = Callable[[str], None]


class RuntimeUnavailable(Exception):
    """The runtime's backend (Docker engine, Azure, Kubernetes API) cannot be reached;
    the message says where and why, fit to show a user."""

    field: str | None = None


class NeedsUserAction(Exception):
    """A failure that retrying cannot heal (an image that does not exist, a name the
    backend refuses): the core stops retrying until the user changes or retries something.
    The message is fit to show a user."""


class StorageGone(NeedsUserAction):
    """The environment's storage existed but is gone (removed outside dev8): not replaced
    by an empty one unless the user says so (``EnvSpec.storage_expected`` false)."""


@dataclass(frozen=True)
class EnvSpec:
    """What the core asks a runtime for: only fields every backend understands."""
    env_id: str
    owner_id: int
    name: str
    image: str
    cpus: float
    memory_bytes: int
    control_public_key: str
    installation: str
    # The storage was made before (the environment has run): finding none means it was
    # lost, and prepare raises StorageGone instead of making an empty one.
    storage_expected: bool = False
    # A prebuild's storage (the ``object_name`` of the environment that made it): a new home
    # is made as a copy of it, the environment's own from then on. Only where the runtime
    # ``copies_storage``; ignored once the storage exists.
    seed: str | None = None

    @property
    def object_name(self) -> str:
        """Deterministic from installation, owner and name, so a re-created environment
        finds its storage and two dev8 installations on one backend never collide."""
        return object_name(self.installation, self.owner_id, self.name)

    @property
    def volume_name(self) -> str:
        return f"{self.object_name}-home"

    @property
    def seed_volume_name(self) -> str | None:
        """``volume_name`` of the prebuild ``seed`` names (its environment's), if any."""
        return f"{self.seed}-home" if self.seed else None

    @property
    def labels(self) -> dict[str, str]:
        return {LABEL_MANAGED: "true", LABEL_INSTALLATION: self.installation,
                LABEL_ENV_ID: self.env_id, LABEL_OWNER: str(self.owner_id)}


def object_name(installation: str, owner_id: int, name: str) -> str:
    """The runtime objects' name of environment ``name`` of user ``owner_id`` (EnvSpec.object_name)."""
    return f"dev8-{installation}-u{owner_id}-{name}"


@dataclass(frozen=True)
class Observed:
    """What exists for an environment. ``host``/``port`` is where its sshd answers (only
    when running); ``instance_id`` changes whenever the environment's tmpfs state is lost
    (a re-created or restarted container, a new pod), which tells the core to configure it
    again; ``state`` is opaque runtime data the core stores and never reads."""
    exists: bool
    running: bool = False
    host: str | None = None
    port: int | None = None
    instance_id: str | None = None
    state: dict[str, Any] = field(default_factory=dict)
    detail: str = ""

    @property
    def reachable(self) -> bool:
        return self.running and bool(self.host) and bool(self.port) and bool(self.instance_id)


DEFAULT_START_TIMEOUT = 120.0


class Runtime(Protocol):
    name: str
    # A command the core runs in the environment over SSH before it stops, restarts or
    # removes it keeping its storage (a runtime whose storage is not the live home saves
    # it there); None where the storage is the home itself.
    before_stop: str | None
    # Seconds ``ensure_running`` may take (a cloud deployment takes longer than a container).
    start_timeout: float
    # Whether ``prepare`` makes a new home from ``EnvSpec.seed`` (prebuilds need it). The seed
    # may be removed (``remove``) while homes made from it live: a runtime whose homes still
    # read it (Docker's overlay) keeps it until the last of them goes.
    copies_storage: bool
    # How many instances may boot at once (start to sshd's banner; the others wait, first
    # come first served): instances that share the dev8 machine's CPUs. None: no limit
    # (they boot on a cloud's or a cluster's machines).
    boot_slots: int | None

    def ping(self) -> None:
        """Raise :class:`RuntimeUnavailable` unless the backend answers."""
        ...

    def prepare(self, spec: EnvSpec, progress: Progress) -> None:
        """Make the image and the persistent storage exist (may take minutes: a build or a
        pull). A runtime whose backend pulls by itself only makes the storage. Missing
        storage with ``spec.storage_expected`` raises :class:`StorageGone`, creating nothing.
        New storage with ``spec.seed`` is a copy of that storage, made whole or not at all
        (a copy cut half way is made again); a seed that is gone raises StorageGone."""
        ...

    def ensure_running(self, spec: EnvSpec) -> Observed:
        """Create (or adopt) the environment and start it; where it is reached. A stopped
        one whose image (or whose tag's image), CPUs or memory differ from ``spec`` is re-created on
        the same storage."""
        ...

    def observe(self, spec: EnvSpec) -> Observed: ...

    def observe_all(self, installation: str) -> dict[str, Observed]:
        """Every environment of ``installation`` the backend has, by env id, in one cheap
        call (the reconciler's periodic pass). Listings may not know the instance id
        (``None``); ``observe`` does."""
        ...

    def stop(self, spec: EnvSpec) -> None:
        """Stop it; its storage is kept."""
        ...

    def remove(self, spec: EnvSpec, *, keep_storage: bool) -> None: ...

    def logs(self, spec: EnvSpec, tail: int) -> list[str]:
        """The last ``tail`` lines its services printed; empty when it does not exist."""
        ...

    def image_status(self, image: str) -> str:
        """Whether ``image`` can run here: "ready" (present), "buildable" (one of dev8's
        own, built on first use), "pullable" (the registry has it). NeedsUserAction, saying
        why, when it is none of these: a create with it would only fail later."""
        ...

    def fetch_image(self, image: str, progress: Progress) -> None:
        """Make ``image`` present now, ahead of the environments that will use it: dev8's own
        built (again: a newer dev8's changes are picked up, unchanged steps come from the
        cache), any other pulled. NeedsUserAction, saying why, where it cannot be."""
        ...

    def build_image(self, tag: str, progress: Progress, *, image: str | None = None, context: bytes | None = None,
                    dockerfile: str = "Dockerfile", args: dict[str, str] | None = None) -> str:
        """An image for a devcontainer.json: its ``image``, or its Dockerfile built from
        ``context`` (a tar), with dev8's layer on top (sshd, the dev user,
        dev8-env), tagged ``tag``. NeedsUserAction where this runtime cannot build."""
        ...

    def host_key(self, spec: EnvSpec) -> str:
        """The environment's SSH host public key (OpenSSH one-line form), read over an
        authenticated channel to the backend (never from the SSH connection it will pin).
        Raises RuntimeError when the environment has not made one yet."""
        ...
