"""Building dev8's environment images with the local Docker engine.

The Dockerfile lives in ``images/`` (shipped in the wheel as ``dev8/_images``). The build
context is assembled here: that folder plus the ``dev8-env`` helper. When the Debian base
image cannot be pulled (no container registry), one is made from Debian packages with
debootstrap, using the mirror from the host's own apt sources.
"""
from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import docker
import docker.errors

from dev8 import envimage
from dev8.envimage.dev8_env import IMAGE_TARGETS as TARGETS
from dev8.envimage.dev8_env import image_tag

HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
DEFAULT_BASE_IMAGE = "debian:bookworm-slim"
FALLBACK_BASE_IMAGE = "dev8/debian:bookworm-minbase"
Progress = Callable[[str], None]


class ImageBuildError(RuntimeError):
    """An image could not be built; the message says which step failed and why."""


def images_dir() -> Path:
    packaged = Path(__file__).parents[1] / "_images"
    if (packaged / "Dockerfile").is_file():
        return packaged
    return Path(__file__).resolve().parents[3] / "images"


def build_ca_bundle() -> bytes:
    """Extra CA certificates for HTTPS during image builds (a TLS-intercepting proxy):
    ``DEV8_BUILD_CA_BUNDLE``, else the host's bundle. They are used only in a build
    stage, never copied into the final image."""
    path = Path(os.environ.get("DEV8_BUILD_CA_BUNDLE") or HOST_CA_BUNDLE)
    return path.read_bytes() if path.is_file() else b""


def build_context(ca_bundle: bytes = b"") -> bytes:
    """The build context as a tar archive: ``images/``, the dev8-env helper, the CA bundle."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        root = images_dir()
        for path in sorted(root.rglob("*")):
            if path.is_file():
                tar.add(path, arcname=str(path.relative_to(root)))
        tar.add(Path(envimage.__file__).with_name("dev8_env.py"), arcname="dev8-env")
        info = tarfile.TarInfo("fullstack/build-ca.crt")
        info.size = len(ca_bundle)
        tar.addfile(info, io.BytesIO(ca_bundle))
    return buf.getvalue()


def apt_mirror(sources_dir: Path = Path("/etc/apt")) -> str:
    """The Debian archive URL the host uses (deb822 ``.sources`` or one-line format)."""
    texts = []
    for path in [sources_dir / "sources.list", *sorted((sources_dir / "sources.list.d").glob("*"))]:
        if path.is_file():
            texts.append(path.read_text(errors="replace"))
    for text in texts:
        for url in re.findall(r"^\s*(?:URIs:|deb)\s+(?:\[[^\]]*\]\s+)?(\S+)", text, re.M):
            if "security" not in url and url.startswith(("http://", "https://")):
                return url
    return "http://deb.debian.org/debian"


def _debootstrap_image(client: docker.DockerClient, progress: Progress) -> str:
    if shutil.which("debootstrap") is None:
        raise ImageBuildError(
            "cannot pull debian:bookworm-slim and debootstrap is not installed "
            "(apt-get install debootstrap)"
        )
    mirror = apt_mirror()
    progress(f"no registry: making {FALLBACK_BASE_IMAGE} with debootstrap from {mirror}")
    with tempfile.TemporaryDirectory(prefix="dev8-rootfs-") as root:
        proc = subprocess.run(
            ["debootstrap", "--variant=minbase", "bookworm", root, mirror],
            capture_output=True, text=True,
        )
        if proc.returncode != 0:
            raise ImageBuildError(f"debootstrap failed: {proc.stderr.strip()[-500:]}")
        tar = subprocess.Popen(["tar", "-C", root, "-c", "."], stdout=subprocess.PIPE)
        assert tar.stdout is not None
        client.api.import_image_from_stream(tar.stdout, repository="dev8/debian", tag="bookworm-minbase")
        if tar.wait() != 0:
            raise ImageBuildError("packing the debootstrap root file system failed")
    return FALLBACK_BASE_IMAGE


def ensure_base_os(client: docker.DockerClient, progress: Progress) -> str:
    """Return the name of a Debian bookworm image present locally, pulling or making one."""
    for name in (DEFAULT_BASE_IMAGE, FALLBACK_BASE_IMAGE):
        try:
            client.images.get(name)
            return name
        except docker.errors.ImageNotFound:
            pass
    progress(f"pulling {DEFAULT_BASE_IMAGE}")
    try:
        client.images.pull(DEFAULT_BASE_IMAGE)
        return DEFAULT_BASE_IMAGE
    except docker.errors.APIError as exc:
        progress(f"pull failed ({str(exc)[:120]})")
    return _debootstrap_image(client, progress)


def build(client: docker.DockerClient, target: str = "base", progress: Progress = print, *,
          base_image: str | None = None, tag: str | None = None) -> str:
    """Build ``target`` on ``base_image`` (default: Debian, pulled or made) and tag it
    (default ``dev8/<target>:latest``); returns the tag. On another image (a devcontainer's),
    ``base`` adds dev8's layer: sshd, runit, the dev user, dev8-env."""
    if target not in TARGETS:
        raise ImageBuildError(f"unknown image target {target!r} (choose from {', '.join(TARGETS)})")
    base_image = base_image or ensure_base_os(client, progress)
    tag = tag or image_tag(target)
    progress(f"building {tag} from {base_image}")
    _run_build(client, tag, progress, fileobj=io.BytesIO(build_context(build_ca_bundle())), custom_context=True,
               target=target, buildargs={"BASE_IMAGE": base_image})
    return tag


def build_dockerfile(client: docker.DockerClient, context: bytes, dockerfile: str, args: dict[str, str], tag: str,
                     progress: Progress) -> str:
    """Build a repository's Dockerfile (``context``: a tar, ``dockerfile`` a path in it)
    and tag it."""
    progress(f"building {dockerfile} as {tag}")
    _run_build(client, tag, progress, fileobj=io.BytesIO(context), custom_context=True,
               dockerfile=dockerfile, buildargs=args)
    return tag


STEP_RE = re.compile(r"^Step (\d+)/(\d+) : (\S+)")


def step_progress(tag: str, line: str, seconds: float) -> str | None:
    """Docker's ``Step 24/34 : RUN npm …`` as people read progress:
    ``dev8/fullstack:latest: step 24 of 34 (RUN), 3 min 10 s so far``; None for other lines."""
    m = STEP_RE.match(line)
    if m is None:
        return None
    minutes, secs = divmod(int(seconds), 60)
    took = f"{minutes} min {secs} s" if minutes else f"{secs} s"
    return f"{tag}: step {m.group(1)} of {m.group(2)} ({m.group(3)}), {took} so far"


def _run_build(client: docker.DockerClient, tag: str, progress: Progress, **kw: object) -> None:
    last_lines: list[str] = []
    started = time.monotonic()
    for chunk in client.api.build(tag=tag, rm=True, forcerm=True, decode=True, **kw):
        if "error" in chunk:
            raise ImageBuildError(f"building {tag} failed: {chunk['error'].strip()}\n" + "".join(last_lines[-10:]))
        line = chunk.get("stream", "")
        if line.strip():
            last_lines.append(line)
            step = step_progress(tag, line, time.monotonic() - started)
            if step is not None:
                progress(step)
