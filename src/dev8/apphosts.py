"""App subdomain names: ``<app>--<env>--<user>.<app domain>``, where ``<app>`` is
``vscode`` or a port number. Pure functions (no I/O)."""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from dev8.envimage.dev8_env import VSCODE_PORT

APPS = {"vscode": VSCODE_PORT}  # named apps and the port each listens on inside an environment
PORT_RE = re.compile(r"^[1-9][0-9]{0,4}$")
LABEL_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$")


def parse_port(text: str) -> int | None:
    """A decimal port 1-65535 and nothing else (no ``0x1F90``, ``8080@evil``, hostnames)."""
    if not PORT_RE.fullmatch(text) or int(text) > 65535:
        return None
    return int(text)


@dataclass(frozen=True)
class AppHost:
    host: str                               # as the browser sent it, lowercased
    app: str                                # "vscode" or the port as text
    port: int                               # inside the environment
    candidates: tuple[tuple[str, str], ...]  # (env name, username) readings of the label

    @property
    def is_port(self) -> bool:
        return self.app not in APPS


def parse_app_host(host: str, app_domain: str | None) -> AppHost | None:
    """The app a Host header names under ``app_domain``, or None. Environment and user
    names may contain ``--`` themselves, so every split is a candidate; the store decides."""
    if not app_domain:
        return None
    host = host.strip().lower()
    suffix = "." + app_domain
    if not host.endswith(suffix):
        return None
    label = host[: -len(suffix)]
    if not LABEL_RE.fullmatch(label):
        return None
    app, sep, rest = label.partition("--")
    port = APPS.get(app) if app in APPS else parse_port(app)
    if not sep or port is None:
        return None
    parts = rest.split("--")
    candidates = tuple(("--".join(parts[:i]), "--".join(parts[i:])) for i in range(1, len(parts)))
    candidates = tuple((e, u) for e, u in candidates if NAME_RE.fullmatch(e) and NAME_RE.fullmatch(u))
    return AppHost(host, app, port, candidates) if candidates else None


def app_host(app_domain: str, app: str | int, env: str, user: str) -> str:
    return f"{app}--{env}--{user}.{app_domain}"


def loopback_app_domain(base_url: str) -> str | None:
    """Where app hosts live when no wildcard domain is configured: dev8 reached on this
    machine (``localhost``, ``127.0.0.1``, ``[::1]``, ``dev8.localhost``) puts them under
    that name (``localhost`` for an address) with dev8's port, since browsers resolve every
    ``*.localhost`` name to loopback without DNS.
    None for any other address: there, only a wildcard DNS name gives apps their own."""
    url = urlsplit(base_url)
    host = (url.hostname or "").lower()
    try:
        loopback = host == "localhost" or host.endswith(".localhost") or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        return None
    # Apps sit below dev8's own name (dev8.localhost → *.dev8.localhost), or below localhost
    # for an address: never so that dev8's own host looks like an app host.
    domain = host if host.endswith("localhost") else "localhost"
    return domain if url.port is None else f"{domain}:{url.port}"


def app_url(base_url: str, app_domain: str | None, app: str | int, env: str, user: str) -> str:
    """Where a browser opens ``app`` (``vscode`` or a port): its subdomain when dev8 has an
    app domain, else the path under dev8's own URL (which only scripts with a bearer token
    may use: see server/apps/proxy.py)."""
    if app_domain:
        scheme = base_url.split("://", 1)[0]
        return f"{scheme}://{app_host(app_domain, app, env, user)}/"
    kind = "ports" if str(app) not in APPS else "apps"
    return f"{base_url}/@{user}/{env}/{kind}/{app}/"
