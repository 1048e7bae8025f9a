"""The SSH gateway's host key: one per installation, the same on every replica, so a user's
``known_hosts`` holds whichever replica a load balancer picks.

The key lives in the database, its private half sealed under the keyring like a secret. The
first server to start with none there stores its own: the data dir's key of an installation
from before (users' ``known_hosts`` stay valid) or a new one. Each server keeps a copy in
its data dir; a copy that is the database's key is used without unsealing, so a server
starts while Azure Key Vault is down (README: Several servers).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import asyncssh
from sqlalchemy.exc import IntegrityError

from dev8.core.crypto import GATEWAY_KEY_AAD, Keyring, KeyServiceUnavailable
from dev8.core.secrets import sealed_of, store_sealed
from dev8.store.db import Database
from dev8.store.models import GatewayKey
from dev8.store.opening import StartupError

log = logging.getLogger("dev8.sshgateway")
FILE = "ssh_host_ed25519_key"


def _public(key: asyncssh.SSHKey) -> str:
    return key.export_public_key("openssh").decode().split()[1]


def _keep_copy(path: Path, key: asyncssh.SSHKey) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.export_private_key("openssh"))
    tmp.replace(path)


def load_host_key(db: Database, keyring: Keyring, data_dir: Path) -> asyncssh.SSHKey:
    """The installation's gateway host key (blocking: database, keyring, files)."""
    path = data_dir / FILE
    copy = asyncssh.read_private_key(str(path)) if path.exists() else None
    with db.session() as s:
        row = s.get(GatewayKey, 1)
    if row is not None:
        if copy is not None and _public(copy) == row.public_key:
            return copy
        try:
            key = asyncssh.import_private_key(keyring.open(sealed_of(row), GATEWAY_KEY_AAD))
        except KeyServiceUnavailable as exc:
            raise StartupError(f"the SSH gateway's host key is sealed in the database and cannot be opened now: "
                               f"{exc}. Start again once the key service answers, or give this server another "
                               f"replica's {FILE} in its data dir") from None
        _keep_copy(path, key)
        return key
    key = copy or asyncssh.generate_private_key("ssh-ed25519")
    try:
        with db.session() as s:
            row = GatewayKey(id=1, public_key=_public(key))
            store_sealed(row, keyring.seal(key.export_private_key("openssh"), GATEWAY_KEY_AAD))
            s.add(row)
    except IntegrityError:  # another replica stored its key first: that one is the installation's
        return load_host_key(db, keyring, data_dir)
    except KeyServiceUnavailable as exc:  # this server's own key serves; shared at a later start
        log.warning("the gateway's host key cannot be stored for other replicas yet: %s", exc)
    if copy is None:
        _keep_copy(path, key)
    return key
