"""What runtimes whose backend pulls and runs the image itself (``aci``, ``kubernetes``)
share: object names fit to the backend's rules, the host key the environment's entrypoint
prints into its log (read back through the backend's authenticated log API), and whether
the registry the backend pulls from has an image. Pure except :func:`registry_status`."""
from __future__ import annotations

import hashlib
import re

from dev8.envimage import dev8_env as layout
from dev8.runtimes.base import EnvSpec, NeedsUserAction, Progress
from dev8.runtimes.registry import RegistryError, has_manifest, parse_ref

HOST_KEY_PREFIX = "dev8-host-key: "  # images/base/entrypoint.sh prints the host key after it
LOG_TAIL = 2000  # lines searched for it


def fit_name(name: str, valid: re.Pattern[str], max_len: int = 63) -> str:
    """``name`` where ``valid`` accepts it as it is; otherwise a valid prefix of it with a
    hash of the whole name, so two names never map to one (e.g. ``a--b`` and ``a-b``).
    ``valid`` must accept lowercase letters, digits and single inner hyphens."""
    if valid.fullmatch(name) and len(name) <= max_len:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    stem = re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", name.lower()))[:max_len - 11].strip("-")
    return f"{stem}-{digest}" if stem else f"dev8-{digest}"


def host_key_from_logs(text: str, *, first: bool = False) -> str | None:
    """The host key the entrypoint printed last (the log may hold earlier starts'), or
    ``first``: the first one, for a log that holds only the current start's lines (the
    entrypoint prints it before any other process of the environment runs)."""
    found = None
    for line in text.splitlines():
        if line.startswith(HOST_KEY_PREFIX):
            key = line[len(HOST_KEY_PREFIX):].strip()
            if key.startswith("ssh-"):
                found = key
                if first:
                    break
    return found


def registry_status(image: str, backend: str, creds: tuple[str, str] | None = None,
                    unverifiable_ok: bool = False) -> str:
    """"pullable" when ``image``'s registry has it (a manifest HEAD, with ``creds`` if
    given); NeedsUserAction saying why not. ``unverifiable_ok``: the backend pulls with
    credentials dev8 does not hold (a managed identity, a pull secret), so a registry that
    refuses dev8 is not proof the backend cannot pull."""
    if image in {layout.image_tag(t) for t in layout.IMAGE_TARGETS}:
        raise NeedsUserAction(f"{image} is built on a machine with Docker, and {backend} pulls from a registry: "
                              f"push it (dev8 image push {image} --registry HOST) and name the pushed image, "
                              "or set DEV8_DEFAULT_IMAGE to it")
    try:
        ref = parse_ref(image)
    except ValueError as exc:
        raise NeedsUserAction(str(exc)) from None
    try:
        present = has_manifest(ref, creds)
    except RegistryError as exc:
        if unverifiable_ok:
            return "pullable"
        raise NeedsUserAction(f"image {image} cannot be checked: {exc}") from None
    if not present:
        raise NeedsUserAction(f"image {image} is not in its registry {ref.registry}: push it there "
                              f"(dev8 image push {image} --registry HOST) or choose another image")
    return "pullable"


class PulledImages:
    """The contract's image and host-key methods for a runtime whose backend pulls images
    and prints the environment's log: the runtime gives ``name``, ``logs``, ``image_status``
    and ``pulls`` (when its backend pulls, said to the user)."""
    name: str
    pulls: str

    def logs(self, spec: EnvSpec, tail: int) -> list[str]:
        raise NotImplementedError  # the runtime's own

    def image_status(self, image: str) -> str:
        raise NotImplementedError  # the runtime's own

    def host_key(self, spec: EnvSpec) -> str:
        key = host_key_from_logs("\n".join(self.logs(spec, LOG_TAIL)))
        if key is None:
            raise RuntimeError("the environment has not printed its SSH host key yet")
        return key

    def fetch_image(self, image: str, progress: Progress) -> None:
        self.image_status(image)
        progress(f"{image} is in its registry; {self.pulls}")

    def build_image(self, tag: str, progress: Progress, *, image: str | None = None, context: bytes | None = None,
                    dockerfile: str = "Dockerfile", args: dict[str, str] | None = None) -> str:
        raise NeedsUserAction(f"the {self.name} runtime builds no images: build it with Docker, push it with "
                              "`dev8 image push`, and name the pushed image instead of a Dockerfile")


def first_line(exc: BaseException) -> str:
    """An exception's message (an SDK's ``message`` where it has one), first line, bounded."""
    text = str(getattr(exc, "message", None) or exc).strip()
    return (text.splitlines() or [exc.__class__.__name__])[0][:300]
