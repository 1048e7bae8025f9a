"""Server settings: command-line flags override ``DEV8_*`` environment variables,
which override the embedded defaults (SQLite and a keyring in the data dir, local Docker)."""
from __future__ import annotations

from pathlib import Path

from pydantic import field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


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
    database_url: str | None = None
    public_url: str | None = None
    runtime: str = "docker"
    default_image: str = "dev8/fullstack:latest"
    default_cpus: float = 2.0
    default_memory: str = "4g"
    reconcile_interval: float = 10.0
    max_body_bytes: int = 256 * 1024
    max_secret_bytes: int = 64 * 1024
    # Extra CA certificates environments trust (mounted read-only; SSL_CERT_FILE & co.).
    env_ca_bundle: Path | None = None
    # How long a browser terminal's shell outlives its last browser tab (seconds).
    terminal_keep_detached: float = 300.0
    # Docker network environments join (e.g. to reach internal git hosts); default bridge.
    docker_network: str | None = None

    @field_validator("http_addr", "ssh_addr")
    @classmethod
    def _check_addr(cls, v: str) -> str:
        parse_addr(v)
        return v

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'dev8.db'}"

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host, port = parse_addr(self.http_addr)
        return f"http://{host}:{port}"
