"""The CLI's login state: server URL and API token, in a 0600 file."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path


def config_dir() -> Path:
    return Path(os.environ.get("DEV8_CONFIG_DIR") or Path.home() / ".config" / "dev8")


@dataclass
class ClientConfig:
    url: str
    token: str

    @classmethod
    def load(cls) -> ClientConfig | None:
        path = config_dir() / "config.json"
        if not path.exists():
            return None
        doc = json.loads(path.read_text())
        return cls(url=doc["url"], token=doc["token"])

    def save(self) -> Path:
        d = config_dir()
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = d / "config.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # also when the file existed with wider permissions
        with os.fdopen(fd, "w") as f:
            json.dump({"url": self.url, "token": self.token}, f)
        return path


def known_hosts_path() -> Path:
    return config_dir() / "known_hosts"
