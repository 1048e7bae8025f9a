"""Pushing an image from the local Docker engine to a registry (``dev8 image push``), so a
runtime that pulls by itself (ACI, Kubernetes) finds dev8's images there.

The engine does the push with its own credentials (``docker login REGISTRY``) unless a
username and password (an ACR token, say) are given; progress is reported per layer as the
engine streams it.
"""
from __future__ import annotations

from collections.abc import Callable

import docker
import docker.errors

from dev8.runtimes.registry import parse_ref

Progress = Callable[[str], None]
# Layer states worth a line each; "Pushing" is reported as a percentage at most every 25 %.
_STATES = ("Preparing", "Waiting", "Layer already exists", "Pushed", "Mounted from")


class PushError(RuntimeError):
    """The push failed; the message says where and why."""


def local_engine() -> docker.DockerClient:
    """This machine's Docker engine (``DOCKER_HOST`` or the local socket), answering."""
    try:
        client = docker.from_env(timeout=60)
        client.ping()
    except docker.errors.DockerException as exc:
        raise PushError(f"this machine's Docker engine is unreachable ({exc}): push from a machine that has the "
                        "image, with `dev8 image push`") from None
    return client


def target_name(image: str, registry: str) -> str:
    """``image``'s name in ``registry`` (``HOST[/PREFIX]``): its repository path and tag kept,
    e.g. ``dev8/base:latest`` to ``myacr.azurecr.io/team/dev8/base:latest``."""
    registry = registry.strip().rstrip("/")
    host = registry.split("/", 1)[0]
    if not registry or "://" in registry or not host or " " in registry:
        raise ValueError(f"invalid registry {registry!r}: expected HOST[:PORT][/PREFIX]")
    ref = parse_ref(image)
    repository = ref.repository.removeprefix("library/") if ref.registry == "registry-1.docker.io" else ref.repository
    sep = "@" if ref.reference.startswith("sha256:") else ":"
    if sep == "@":
        raise ValueError(f"push a tag, not a digest ({image})")
    target = f"{registry}/{repository}{sep}{ref.reference}"
    parse_ref(target)  # the result must itself be a valid name
    return target


def push(client: docker.DockerClient, image: str, registry: str, progress: Progress,
         auth: tuple[str, str] | None = None) -> str:
    """Tag the local ``image`` for ``registry`` and push it; the pushed name."""
    target = target_name(image, registry)
    repository, _, tag = target.rpartition(":")
    try:
        client.images.get(image).tag(repository, tag)
    except docker.errors.ImageNotFound:
        raise PushError(f"image {image} is not on this machine: build it first (dev8 image build)") from None
    shown: dict[str, str] = {}
    auth_config = {"username": auth[0], "password": auth[1]} if auth else None
    try:
        stream = client.api.push(repository, tag=tag, stream=True, decode=True, auth_config=auth_config)
    except docker.errors.APIError as exc:
        raise PushError(f"pushing {target} failed: {exc.explanation or exc}") from None
    for chunk in stream:
        if "error" in chunk:
            raise PushError(f"pushing {target} failed: {chunk['error'].strip()}")
        layer, status = chunk.get("id", ""), chunk.get("status", "")
        if not layer or layer == tag:
            continue
        line = _layer_line(status, chunk.get("progressDetail") or {})
        if line and shown.get(layer) != line:
            shown[layer] = line
            progress(f"{layer}: {line}")
    return target


def _layer_line(status: str, detail: dict) -> str | None:
    if status.startswith(_STATES):
        return status
    if status == "Pushing" and detail.get("total"):
        quarter = min(100, int(detail.get("current", 0) * 4 // detail["total"]) * 25)
        return f"pushing {quarter}%"
    return None
