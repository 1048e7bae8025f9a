"""Envelope encryption of secrets at rest (AES-256-GCM, ``cryptography``).

Each value gets a fresh 256-bit data key. The data key is wrapped with the keyring's
active key-encryption key (KEK); stored are the KEK id, the wrapped key, the nonce and
the ciphertext. The associated data binds a ciphertext to its owner and name, so a row
copied to another owner or renamed does not decrypt.

The keyring is a JSON file in the data dir (mode 0600) or the ``DEV8_KEYRING``
environment variable: ``{"active": "<id>", "keys": {"<id>": "<base64 32 bytes>"}}``.
A running server notices when the file is replaced (``dev8 admin rotate-keys``) and uses
the new keys from its next operation on.
"""
from __future__ import annotations

import base64
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEYRING_ENV = "DEV8_KEYRING"
_WRAP_AAD = b"dev8-kek-wrap:"


class KeyringError(Exception):
    """The keyring cannot be read or is not a keyring; the message says which file and why."""


class DecryptionError(Exception):
    """The value cannot be decrypted: wrong key, wrong owner/name binding, or tampering."""


@dataclass(frozen=True)
class Sealed:
    key_id: str
    wrapped_key: bytes
    nonce: bytes
    ciphertext: bytes


class Keyring:
    def __init__(self, keys: dict[str, bytes], active: str, path: Path | None = None) -> None:
        if active not in keys:
            raise ValueError(f"active key {active!r} is not in the keyring")
        for kid, key in keys.items():
            if len(key) != 32:
                raise ValueError(f"keyring key {kid!r} is not 32 bytes")
        self.keys = dict(keys)
        self.active = active
        self.path = path
        self._stamp = _stamp(path)

    @classmethod
    def load(cls, data_dir: Path) -> Keyring | None:
        """From ``DEV8_KEYRING`` if set, else ``<data_dir>/keyring.json``; None when there
        is no keyring file. Raises KeyringError for one that is unreadable or invalid."""
        if os.environ.get(KEYRING_ENV):
            return cls._from_json(os.environ[KEYRING_ENV], None)
        path = data_dir / "keyring.json"
        if not path.exists():
            return None
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise KeyringError(f"{path} must not be readable by others (mode {mode:o}); chmod 600 it")
        return cls._from_json(path.read_text(), path)

    @classmethod
    def load_or_create(cls, data_dir: Path) -> Keyring:
        """For a new data dir (and tests); the server checks the database first (open_store)."""
        return cls.load(data_dir) or cls.create(data_dir)

    @classmethod
    def create(cls, data_dir: Path) -> Keyring:
        kid = _new_key_id()
        ring = cls({kid: AESGCM.generate_key(256)}, kid, data_dir / "keyring.json")
        ring.save()
        return ring

    @classmethod
    def _from_json(cls, text: str, path: Path | None) -> Keyring:
        where = str(path) if path else f"${KEYRING_ENV}"
        try:
            doc = json.loads(text)
            keys = {str(kid): base64.b64decode(v, validate=True) for kid, v in doc["keys"].items()}
            return cls(keys, doc["active"], path)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise KeyringError(f"{where} is not a valid dev8 keyring ({exc.__class__.__name__}: {exc})") from None

    def refresh(self) -> None:
        """Take up the keyring file's new content if it was replaced since it was read
        (a key rotation by ``dev8 admin rotate-keys`` while this server runs). A file that
        is gone or unreadable leaves the keys in memory as they are."""
        stamp = _stamp(self.path)
        if stamp is None or stamp == self._stamp:
            return
        try:
            ring = Keyring._from_json(self.path.read_text(), self.path)  # type: ignore[union-attr]
        except (OSError, KeyringError):
            return
        self.keys, self.active, self._stamp = ring.keys, ring.active, stamp

    def save(self) -> None:
        if self.path is None:
            raise RuntimeError(f"the keyring comes from ${KEYRING_ENV}; update that variable instead")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        doc = {"active": self.active, "keys": {k: base64.b64encode(v).decode() for k, v in self.keys.items()}}
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f)
        os.replace(tmp, self.path)
        self._stamp = _stamp(self.path)

    def add_key(self) -> str:
        """Add a fresh KEK and make it active; returns its id."""
        kid = _new_key_id()
        self.keys[kid] = AESGCM.generate_key(256)
        self.active = kid
        return kid

    def _kek(self, kid: str) -> AESGCM:
        try:
            return AESGCM(self.keys[kid])
        except KeyError:
            raise DecryptionError(f"key {kid!r} is not in the keyring") from None

    def _wrap(self, data_key: bytes) -> tuple[str, bytes]:
        nonce = os.urandom(12)
        return self.active, nonce + self._kek(self.active).encrypt(nonce, data_key, _WRAP_AAD + self.active.encode())

    def _unwrap(self, kid: str, wrapped: bytes) -> bytes:
        try:
            return self._kek(kid).decrypt(wrapped[:12], wrapped[12:], _WRAP_AAD + kid.encode())
        except InvalidTag:
            raise DecryptionError("data key does not unwrap") from None

    def seal(self, plaintext: bytes, aad: bytes) -> Sealed:
        self.refresh()
        data_key = AESGCM.generate_key(256)
        nonce = os.urandom(12)
        ciphertext = AESGCM(data_key).encrypt(nonce, plaintext, aad)
        kid, wrapped = self._wrap(data_key)
        return Sealed(kid, wrapped, nonce, ciphertext)

    def open(self, sealed: Sealed, aad: bytes) -> bytes:
        self.refresh()
        data_key = self._unwrap(sealed.key_id, sealed.wrapped_key)
        try:
            return AESGCM(data_key).decrypt(sealed.nonce, sealed.ciphertext, aad)
        except InvalidTag:
            raise DecryptionError("ciphertext does not decrypt for this owner and name") from None

    def rewrap(self, sealed: Sealed) -> Sealed:
        """Re-wrap the data key with the active KEK; the ciphertext is untouched."""
        kid, wrapped = self._wrap(self._unwrap(sealed.key_id, sealed.wrapped_key))
        return Sealed(kid, wrapped, sealed.nonce, sealed.ciphertext)


def _stamp(path: Path | None) -> tuple[int, int, int] | None:
    try:
        st = path.stat() if path else None
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size) if st else None


def _new_key_id() -> str:
    return "k" + secrets.token_hex(6)


def secret_aad(owner_id: int, name: str) -> bytes:
    return f"dev8-secret\x00{owner_id}\x00{name}".encode()


def env_key_aad(env_id: str) -> bytes:
    return f"dev8-env-key\x00{env_id}".encode()
