#!/usr/bin/env python3
"""dev8-env: the helper inside every dev8 environment (stdlib only).

The control plane runs it over SSH as user ``dev``:

    dev8-env configure    < JSON   write configuration and secrets to the tmpfs
    dev8-env status                print what is configured (names only) as JSON
    dev8-env version

Secrets arrive on stdin, never on a command line or in the container's environment,
and are written to ``$DEV8_RUN_DIR/secrets/<name>`` (a tmpfs, mode 0600), so they stay
out of ``docker inspect``, image layers and the persistent volume.
"""
from __future__ import annotations

import json
import os
import re
import sys
import tempfile

VERSION = "1"
RUN_DIR = os.environ.get("DEV8_RUN_DIR", "/run/dev8")
NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")


def _write_private(path: str, data: bytes) -> None:
    """Write atomically with 0600 from the first byte (no window with wider permissions)."""
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def configure(doc: dict) -> dict:
    secrets = doc.get("secrets") or {}
    if not isinstance(secrets, dict):
        raise ValueError("secrets must be an object")
    for name, value in secrets.items():
        if not NAME_RE.match(name) or not isinstance(value, str):
            raise ValueError(f"invalid secret entry {name!r}")
    secrets_dir = os.path.join(RUN_DIR, "secrets")
    os.makedirs(secrets_dir, mode=0o700, exist_ok=True)
    os.chmod(secrets_dir, 0o700)
    for name, value in secrets.items():
        _write_private(os.path.join(secrets_dir, name), value.encode())
    for stale in set(os.listdir(secrets_dir)) - set(secrets):
        if not stale.startswith(".tmp-"):
            os.unlink(os.path.join(secrets_dir, stale))
    config = {k: v for k, v in doc.items() if k != "secrets"}
    config["secret_names"] = sorted(secrets)
    _write_private(os.path.join(RUN_DIR, "config.json"), json.dumps(config).encode())
    return {"configured": True, "secrets": sorted(secrets)}


def status() -> dict:
    try:
        with open(os.path.join(RUN_DIR, "config.json"), encoding="utf-8") as f:
            config = json.load(f)
    except FileNotFoundError:
        return {"configured": False}
    return {"configured": True, "secret_names": config.get("secret_names", [])}


def main(argv: list[str]) -> int:
    if not argv or argv[0] in {"-h", "--help"}:
        print(__doc__)
        return 0 if argv else 2
    cmd = argv[0]
    try:
        if cmd == "configure":
            result = configure(json.load(sys.stdin))
        elif cmd == "status":
            result = status()
        elif cmd == "version":
            result = {"version": VERSION}
        else:
            print(f"dev8-env: unknown command {cmd!r}", file=sys.stderr)
            return 2
    except (ValueError, OSError) as exc:
        print(f"dev8-env {cmd}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
