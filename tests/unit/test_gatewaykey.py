"""The SSH gateway's host key, one per installation (server.gatewaykey): what the first
server stores, what a second finds, and that a matching copy needs no unsealing."""
from __future__ import annotations

from pathlib import Path

import asyncssh
import pytest

from dev8.core.crypto import Keyring, KeyServiceUnavailable
from dev8.core.secrets import sealed_key_ids
from dev8.server.gatewaykey import FILE, load_host_key
from dev8.store.db import Database
from dev8.store.opening import StartupError


def public(key: asyncssh.SSHKey) -> bytes:
    return key.export_public_key("openssh")


class VaultDown(Keyring):
    def open(self, sealed, aad):  # type: ignore[no-untyped-def]
        raise KeyServiceUnavailable("the key vault did not answer")


def test_every_server_of_an_installation_gets_the_first_ones_key(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'dev8.db'}")
    db.upgrade()
    ring = Keyring.load_or_create(tmp_path / "ring")
    old = asyncssh.generate_private_key("ssh-ed25519")  # an installation from before: its file
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / FILE).write_bytes(old.export_private_key("openssh"))
    first = load_host_key(db, ring, tmp_path / "a")
    assert public(first) == public(old)  # users' known_hosts stay valid
    with db.session() as s:
        assert sum(sealed_key_ids(s).values()) == 1  # sealed: rotations and startup checks count it
    second = load_host_key(db, ring, tmp_path / "b")  # a new replica, nothing in its data dir
    assert public(second) == public(old)
    assert public(asyncssh.read_private_key(str(tmp_path / "b" / FILE))) == public(old)
    assert (tmp_path / "b" / FILE).stat().st_mode & 0o077 == 0
    stale = asyncssh.generate_private_key("ssh-ed25519")  # a copy that is not the installation's
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / FILE).write_bytes(stale.export_private_key("openssh"))
    assert public(load_host_key(db, ring, tmp_path / "c")) == public(old)
    # The key service down: a server with the right copy starts; one without says why.
    down = VaultDown(ring.provider, ring.providers)
    assert public(load_host_key(db, down, tmp_path / "b")) == public(old)
    with pytest.raises(StartupError, match="cannot be opened now: the key vault did not answer"):
        load_host_key(db, down, tmp_path / "d")
