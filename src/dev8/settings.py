"""Server settings: command-line flags override ``DEV8_*`` environment variables,
which override the embedded defaults (SQLite and a keyring in the data dir, local Docker)."""
from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from dev8.apphosts import loopback_app_domain
from dev8.durations import IDLE_TIMEOUT_RULE, idle_timeout_ok


def default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "dev8"


def parse_addr(addr: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` too) to a tuple; raises ValueError with the reason."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT, got {addr!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DEV8_", extra="ignore")

    data_dir: Path = default_data_dir()
    http_addr: str = "127.0.0.1:7080"
    ssh_addr: str = "127.0.0.1:2222"
    # Seconds an idle HTTP keep-alive connection stays open. Longer than the idle timeout of
    # the proxies put in front (nginx's upstream keep-alive and most cloud balancers: 60 s):
    # a server that closes first races the proxy reusing the connection, and the request the
    # proxy sends into the closing connection fails (a 502 for the user).
    http_keep_alive: int = Field(default=75, ge=1, le=3600)
    # Where users' ssh reaches the gateway (a load balancer in front of several servers, a
    # NAT, a DNS name); shown in ssh commands, ssh-info and known_hosts. Unset: the ssh
    # address, with the public URL's host in place of a wildcard listen address.
    ssh_public_addr: str | None = None
    database_url: str | None = None
    public_url: str | None = None
    # Which runtime runs environments (an entry point of group dev8.runtimes: docker, fake).
    # Its own options are DEV8_RUNTIME_* variables, read by the runtime (see its module).
    runtime: str = "docker"
    default_image: str = "dev8/fullstack:latest"
    default_cpus: float = 2.0
    default_memory: str = "4g"
    reconcile_interval: float = 10.0
    # This server's name among several on one PostgreSQL database (core.leases): shown in
    # /healthz, the log and `dev8 admin replicas`; made from the host name when unset.
    replica_id: str | None = Field(default=None, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    max_body_bytes: int = 256 * 1024
    max_secret_bytes: int = 64 * 1024
    # Extra CA certificates environments trust (sent over SSH with the configuration, added
    # to the bundle SSL_CERT_FILE & co. name).
    env_ca_bundle: Path | None = None
    # How long a browser terminal's shell outlives its last browser tab (seconds).
    terminal_keep_detached: float = 300.0
    # Prebuild runs at once on this server (more wait in a queue, core.prebuilds).
    prebuild_concurrency: int = Field(default=2, ge=1, le=64)
    # Caps per user (an admin sets a user's own with `dev8 admin set-quota`); 0 or "": none.
    # Running (and starting) environments at once, environments in all, and the CPUs and
    # memory of the running ones together.
    quota_running: int = 0
    quota_environments: int = 0
    quota_cpus: float = 0
    quota_memory: str = ""
    # Idle auto-stop: a running environment nobody used for this many seconds (traffic
    # through SSH, the browser terminal, VS Code, previews, port-forwards) is stopped, with a
    # warning shortly before; an environment's own idle timeout overrides it; 0: never.
    idle_timeout: int = 1800
    # Stop an environment this many seconds after it started, however busy; 0: no limit.
    max_session: int = 0
    # How often running environments are checked against those limits (seconds).
    idle_check_interval: float = 30.0
    # Log a warning (with where the loop was) when the event loop is blocked this long;
    # 0 turns the watchdog off. The tests run with 100.
    loop_watchdog_ms: int = 500
    # Threads for blocking work (database, runtime calls) handed off the event loop, and
    # as many database connections as those threads can use at once (two pools of this
    # size); only a few stay open while idle.
    worker_threads: int = 32

    # Where the key-encryption key lives: "local" (keyring.json in the data dir, or
    # DEV8_KEYRING) or "azure-keyvault" (an RSA key in Azure Key Vault that never leaves it;
    # core/keyvault.py). With a vault URL set, values sealed by either are opened, so an
    # installation can move from one to the other (`dev8 admin migrate-keyring`).
    keyring_provider: str = "local"
    keyvault_url: str | None = None
    keyvault_key: str = "dev8-kek"
    keyvault_ca_bundle: Path | None = None
    keyvault_instance_discovery: bool = True
    # The SDK checks that the vault's challenge names a resource under the vault's own
    # domain; off only for a vault behind a name of another domain.
    keyvault_verify_challenge_resource: bool = True
    keyvault_timeout: float = 10.0       # seconds per call to the vault
    keyvault_refresh: float = 300.0      # seconds between lookups of the key's newest version
    # Data keys unwrapped by the vault, kept in memory: at most this many, each this long
    # (seconds); 0 keeps none (every open calls the vault).
    keyring_cache_size: int = 4096
    keyring_cache_seconds: float = 3600.0

    @field_validator("keyring_provider")
    @classmethod
    def _check_keyring_provider(cls, v: str) -> str:
        v = v.strip().lower()
        if v not in ("local", "azure-keyvault"):
            raise ValueError(f"expected local or azure-keyvault, got {v!r}")
        return v

    @field_validator("keyvault_url")
    @classmethod
    def _check_keyvault_url(cls, v: str | None) -> str | None:
        if not v:
            return None
        if not re.fullmatch(r"https://[A-Za-z0-9.-]+(:\d{1,5})?/?", v.strip()):
            raise ValueError(f"expected the vault's URL, e.g. https://myvault.vault.azure.net, got {v!r}")
        return v.strip().rstrip("/")

    @field_validator("keyvault_key")
    @classmethod
    def _check_keyvault_key(cls, v: str) -> str:
        if not re.fullmatch(r"[0-9a-zA-Z-]{1,127}", v):  # the vault's rule for key names
            raise ValueError(f"a Key Vault key name is letters, digits and '-', got {v!r}")
        return v

    # App subdomains (e.g. "dev8.example.com"): VS Code at vscode--ENV--USER.<domain>, ports
    # at PORT--ENV--USER.<domain>; needs a wildcard DNS name. Unset: "localhost:<port>" when
    # dev8's URL is on this machine (browsers resolve *.localhost themselves), else none,
    # and browsers cannot open apps (see app_domain).
    wildcard_domain: str | None = None
    # Reverse proxies (comma-separated IPs or CIDRs) whose X-Forwarded-Host/-Proto/-For are
    # believed; from anyone else those headers are dropped.
    trusted_proxies: str = ""

    # The VS Code marketplace environments' code-server uses, in code-server's
    # EXTENSIONS_GALLERY form: {"serviceUrl": "https://…/gallery", "itemUrl": …}. Unset:
    # code-server's default (Open VSX).
    extensions_gallery: str | None = None

    @field_validator("extensions_gallery")
    @classmethod
    def _check_gallery(cls, v: str | None) -> str | None:
        if not v:
            return None
        try:
            doc = json.loads(v)
        except ValueError:
            raise ValueError("expected JSON like {\"serviceUrl\": \"https://open-vsx.org/vscode/gallery\"}") from None
        if not isinstance(doc, dict) or not str(doc.get("serviceUrl", "")).startswith(("http://", "https://")):
            raise ValueError("needs a serviceUrl starting with http:// or https://")
        return json.dumps(doc)

    @field_validator("wildcard_domain")
    @classmethod
    def _check_wildcard(cls, v: str | None) -> str | None:
        if v is None or v == "":
            return None
        v = v.strip().lower().removeprefix("*.")
        if not re.fullmatch(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:\d{1,5})?", v):
            raise ValueError(f"expected a domain like dev8.example.com or dev8.localhost:7080, got {v!r}")
        return v

    @field_validator("quota_memory")
    @classmethod
    def _check_quota_memory(cls, v: str) -> str:
        v = v.strip().lower()
        if v not in ("", "0") and not re.fullmatch(r"\d{1,6}[mg]", v):
            raise ValueError(f"expected e.g. 64g, or empty for no cap, got {v!r}")
        return v

    @field_validator("idle_timeout")
    @classmethod
    def _check_idle_timeout(cls, v: int) -> int:
        if not idle_timeout_ok(v):
            raise ValueError(f"must be {IDLE_TIMEOUT_RULE}, in seconds")
        return v

    @field_validator("max_session", "quota_running", "quota_environments", "quota_cpus")
    @classmethod
    def _check_limit(cls, v: int) -> int:
        if v < 0:
            raise ValueError("must be 0 (no limit) or more")
        return v

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, v: str) -> str:
        for part in filter(None, (p.strip() for p in v.split(","))):
            ipaddress.ip_network(part, strict=False)  # ValueError names the bad entry
        return v

    @property
    def trusted_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [ipaddress.ip_network(p.strip(), strict=False) for p in self.trusted_proxies.split(",") if p.strip()]

    @field_validator("http_addr", "ssh_addr", "ssh_public_addr")
    @classmethod
    def _check_addr(cls, v: str | None) -> str | None:
        if v is not None:
            parse_addr(v)
        return v

    @property
    def ssh_endpoint(self) -> tuple[str, int]:
        """The host and port users' ssh connects to (see ``ssh_public_addr``)."""
        if self.ssh_public_addr:
            return parse_addr(self.ssh_public_addr)
        host, port = parse_addr(self.ssh_addr)
        if host in ("0.0.0.0", "::"):
            host = urlsplit(self.base_url).hostname or "127.0.0.1"
        return host, port

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'dev8.db'}"

    @property
    def app_domain(self) -> str | None:
        """The domain app hosts live under: the configured wildcard domain, else
        ``localhost:<port>`` for a dev8 reached on loopback, else None. Apps never run on
        dev8's own origin in a browser, where their scripts could act as the user."""
        return self.wildcard_domain or loopback_app_domain(self.base_url)

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host, port = parse_addr(self.http_addr)
        return f"http://{host}:{port}"
