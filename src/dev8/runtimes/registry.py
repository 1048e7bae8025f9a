"""Asking an OCI registry whether it has an image: the distribution API's manifest HEAD.

Runtimes whose backend pulls images itself (ACI, Kubernetes) cannot look in a local
engine: they ask the registry the backend will pull from, so a create with an image the
registry does not have is refused before anything is made. Works with any registry that
speaks the OCI distribution API, Azure Container Registry included: anonymous, basic
credentials, or the bearer-token exchange a ``401`` with ``WWW-Authenticate: Bearer`` asks
for (ACR, Docker Hub, GHCR). A registry on loopback is spoken to over plain HTTP, as the
Docker engine does; every other over HTTPS.
"""
from __future__ import annotations

import base64
import ipaddress
import re
from dataclasses import dataclass

import httpx

from dev8.names import IMAGE_REF_RE, check_image_reference

DEFAULT_REGISTRY = "registry-1.docker.io"
# What a manifest HEAD accepts: OCI index and manifest, Docker's v2 list and manifest.
MANIFEST_TYPES = ", ".join((
    "application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json"))
TIMEOUT = 10.0
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


class RegistryError(Exception):
    """The registry cannot be asked (unreachable, refused our credentials); the message says
    which and why, fit to show a user."""


@dataclass(frozen=True)
class ImageRef:
    registry: str      # host[:port]
    repository: str    # path within the registry, e.g. dev8/base
    reference: str     # a tag or a digest (sha256:…)

    def __str__(self) -> str:
        sep = "@" if self.reference.startswith("sha256:") else ":"
        return f"{self.registry}/{self.repository}{sep}{self.reference}"

    @property
    def base_url(self) -> str:
        return f"{'http' if is_loopback(self.registry) else 'https'}://{self.registry}"


def parse_ref(image: str) -> ImageRef:
    """A reference (the grammar of ``names.check_image_reference``) split as Docker splits
    it: the first component is a registry host when it has a dot or a port, or is
    ``localhost``; no host means Docker Hub. ValueError for an invalid reference."""
    check_image_reference(image)
    match = IMAGE_REF_RE.fullmatch(image)
    assert match is not None
    name = match["name"]
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        registry, repository = first, rest
    else:
        registry, repository = DEFAULT_REGISTRY, name if "/" in name else f"library/{name}"
    if repository != repository.lower():  # what looked like a host is the path's first part
        raise ValueError(f"invalid image reference {image!r}: the repository name must be lowercase")
    return ImageRef(registry, repository, match["digest"] or match["tag"] or "latest")


def is_loopback(host_port: str) -> bool:
    if host_port.startswith("["):
        host = host_port[1:].partition("]")[0]
    else:
        host = host_port.rsplit(":", 1)[0] if host_port.count(":") == 1 else host_port
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def has_manifest(ref: ImageRef, credentials: tuple[str, str] | None = None,
                 *, verify: bool | str = True) -> bool:
    """Whether the registry has ``ref``. RegistryError when it cannot be asked."""
    try:
        with httpx.Client(base_url=ref.base_url, timeout=TIMEOUT, verify=verify) as http:
            url = f"/v2/{ref.repository}/manifests/{ref.reference}"
            resp = http.head(url, headers={"Accept": MANIFEST_TYPES})
            if resp.status_code == 401:
                auth = _authorization(http, resp.headers.get("www-authenticate", ""), ref, credentials)
                resp = http.head(url, headers={"Accept": MANIFEST_TYPES, "Authorization": auth})
    except httpx.HTTPError as exc:
        raise RegistryError(f"registry {ref.registry} cannot be reached ({exc.__class__.__name__}: "
                            f"{str(exc)[:200]})") from None
    if resp.status_code == 200:
        return True
    if resp.status_code == 404:
        return False
    if resp.status_code in (401, 403):
        raise RegistryError(f"registry {ref.registry} refused {'our credentials' if credentials else 'anonymous'}"
                            f" access to {ref.repository} (HTTP {resp.status_code})")
    raise RegistryError(f"registry {ref.registry} answered HTTP {resp.status_code} for {ref}")


def _authorization(http: httpx.Client, challenge: str, ref: ImageRef,
                   credentials: tuple[str, str] | None) -> str:
    scheme = challenge.split(" ", 1)[0].lower()
    if scheme == "basic":
        if credentials is None:
            raise RegistryError(f"registry {ref.registry} needs a login to read {ref.repository}")
        return "Basic " + base64.b64encode(":".join(credentials).encode()).decode()
    params = dict(_CHALLENGE_PARAM.findall(challenge))
    if scheme != "bearer" or "realm" not in params:
        raise RegistryError(f"registry {ref.registry} asks for an authentication dev8 does not speak ({scheme})")
    query = {"service": params.get("service", ref.registry), "scope": f"repository:{ref.repository}:pull"}
    resp = http.get(params["realm"], params=query, auth=httpx.BasicAuth(*credentials) if credentials else None)
    if resp.status_code != 200:
        raise RegistryError(f"registry {ref.registry} gave no token to read {ref.repository} "
                            f"(HTTP {resp.status_code} from {params['realm']})")
    body = resp.json()
    token = body.get("token") or body.get("access_token")
    if not token:
        raise RegistryError(f"registry {ref.registry}'s token answer holds no token")
    return f"Bearer {token}"
