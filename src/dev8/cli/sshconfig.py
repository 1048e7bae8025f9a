"""The marked block ``dev8 config-ssh`` keeps in ``~/.ssh/config`` (a pure builder)."""
from __future__ import annotations

import re

from dev8.names import ENV_NAME_RE

BEGIN = "# --- BEGIN dev8 (managed by `dev8 config-ssh`; edits inside are overwritten) ---"
END = "# --- END dev8 ---"
_SAFE_VALUE = re.compile(r"^[A-Za-z0-9._:/@+=,~-]+$")


def _safe(value: str, what: str) -> str:
    # ssh_config expands %-tokens and splits on whitespace; a newline would start a new
    # directive. Refuse anything but plain characters instead of trying to escape.
    if not _SAFE_VALUE.fullmatch(value):
        raise ValueError(f"refusing unsafe {what} {value!r} in ssh config")
    return value


def build_block(names: list[str], *, host: str, port: int, known_hosts: str) -> str:
    lines = [BEGIN]
    for name in sorted(names):
        if not ENV_NAME_RE.fullmatch(name):
            raise ValueError(f"refusing unsafe environment name {name!r} in ssh config")
        lines += [
            f"Host dev8.{name}",
            f"  HostName {_safe(host, 'host')}",
            f"  Port {int(port)}",
            f"  User {name}",
            f"  UserKnownHostsFile {_safe(known_hosts, 'path')}",
            "  StrictHostKeyChecking yes",
            "",
        ]
    lines.append(END)
    return "\n".join(lines) + "\n"


def replace_block(existing: str, block: str) -> str:
    """Put ``block`` where the old one was (or at the end), keeping everything else."""
    start, end = existing.find(BEGIN), existing.find(END)
    if start != -1 and end != -1 and end > start:
        return existing[:start] + block + existing[end + len(END):].lstrip("\n")
    sep = "" if not existing or existing.endswith("\n\n") else ("\n" if existing.endswith("\n") else "\n\n")
    return existing + sep + block
