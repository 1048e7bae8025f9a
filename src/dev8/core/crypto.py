"""Envelope encryption of secrets at rest (AES-256-GCM, ``cryptography``).

Each value gets a fresh 256-bit data key. The data key is wrapped by a key-encryption key
(KEK) that a *key provider* holds; stored are the KEK's id, the wrapped key, the nonce and
the ciphertext. The associated data binds a ciphertext to its owner and name, so a row
copied to another owner or renamed does not decrypt.

Providers (``KeyProvider``): the local keyring (``LocalKeyring``, the default: a JSON file
in the data dir, mode 0600, or the ``DEV8_KEYRING`` variable:
``{"active": "<id>", "keys": {"<id>": "<base64 32 bytes>"}}``; its ids are ``k`` + hex) and
Azure Key Vault (``core/keyvault.py``; its ids are the vault's key identifiers with their
version, ``https://…/keys/NAME/VERSION``). ``Keyring`` seals with one provider and opens
with whichever provider owns a value's key id, so an installation moving from one to the
other reads both meanwhile.

Data keys a remote provider unwrapped are kept in memory (``DataKeyCache``: bounded in
count and age), so a reconnect or a new environment does not call the vault for a value
it opened a moment ago; nothing unwrapped is written anywhere.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEYRING_ENV = "DEV8_KEYRING"
_WRAP_AAD = b"dev8-kek-wrap:"


class KeyringError(Exception):
    """The keyring cannot be read or is not a keyring; the message says which file and why."""


class DecryptionError(Exception):
    """The value cannot be decrypted: wrong key, wrong owner/name binding, or tampering."""


class KeyServiceUnavailable(Exception):
    """The service that holds the key-encryption key cannot be used now (unreachable,
    refusing dev8's credentials, throttling, the key disabled or deleted); the message says
    which and why. What needs a secret answers 503 and is tried again later; nothing is
    changed."""


@dataclass(frozen=True)
class Sealed:
    key_id: str
    wrapped_key: bytes
    nonce: bytes
    ciphertext: bytes


class KeyProvider(Protocol):
    """Where key-encryption keys live. It wraps and unwraps 32-byte data keys; a KEK never
    leaves it through this interface."""

    name: str      # as DEV8_KEYRING_PROVIDER names it: "local", "azure-keyvault"
    remote: bool   # unwrapping calls another system (worth caching the data keys)

    def active_id(self) -> str:
        """The id of the key new values are wrapped with."""

    def wrap(self, data_key: bytes) -> tuple[str, bytes]:
        """``(key id, wrapped key)`` under the active key."""

    def unwrap(self, key_id: str, wrapped: bytes) -> bytes:
        """The data key; DecryptionError or KeyServiceUnavailable otherwise."""

    def owns(self, key_id: str) -> bool:
        """Whether ``key_id`` names one of this provider's keys (by its form)."""

    def rotate(self) -> str:
        """Make a new key (version) the active one; its id."""

    def refresh(self) -> None:
        """Take up a key rotated elsewhere (another process, the vault's own rotation)."""

    def describe(self) -> str:
        """Where its keys are, in words."""


class LocalKeyring:
    """Key-encryption keys in a JSON file (or ``DEV8_KEYRING``), wrapped with AES-GCM."""

    name = "local"
    remote = False

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
    def load(cls, data_dir: Path) -> LocalKeyring | None:
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
    def load_or_create(cls, data_dir: Path) -> LocalKeyring:
        return cls.load(data_dir) or cls.create(data_dir)

    @classmethod
    def create(cls, data_dir: Path) -> LocalKeyring:
        kid = _new_key_id()
        ring = cls({kid: AESGCM.generate_key(256)}, kid, data_dir / "keyring.json")
        ring.save()
        return ring

    @classmethod
    def _from_json(cls, text: str, path: Path | None) -> LocalKeyring:
        where = str(path) if path else f"${KEYRING_ENV}"
        try:
            doc = json.loads(text)
            keys = {str(kid): base64.b64decode(v, validate=True) for kid, v in doc["keys"].items()}
            return cls(keys, doc["active"], path)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise KeyringError(f"{where} is not a valid dev8 keyring ({exc.__class__.__name__}: {exc})") from None

    def describe(self) -> str:
        return f"the local keyring {self.path or '$' + KEYRING_ENV}"

    def owns(self, key_id: str) -> bool:
        return is_local_key_id(key_id)

    def active_id(self) -> str:
        self.refresh()
        return self.active

    def refresh(self) -> None:
        """Take up the keyring file's new content if it was replaced since it was read
        (a key rotation by ``dev8 admin rotate-keys`` while this server runs). A file that
        is gone or unreadable leaves the keys in memory as they are."""
        stamp = _stamp(self.path)
        if stamp is None or stamp == self._stamp:
            return
        try:
            ring = LocalKeyring._from_json(self.path.read_text(), self.path)  # type: ignore[union-attr]
        except (OSError, KeyringError):
            return
        self.keys, self.active, self._stamp = ring.keys, ring.active, stamp

    def save(self) -> None:
        if self.path is None:
            raise KeyringError(f"the keyring comes from ${KEYRING_ENV}: add a key to that variable's JSON on "
                               "every server instead")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        doc = {"active": self.active, "keys": {k: base64.b64encode(v).decode() for k, v in self.keys.items()}}
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f)
        os.replace(tmp, self.path)
        self._stamp = _stamp(self.path)

    def add_key(self) -> str:
        """Add a fresh KEK and make it active (in memory); returns its id."""
        kid = _new_key_id()
        self.keys[kid] = AESGCM.generate_key(256)
        self.active = kid
        return kid

    def rotate(self) -> str:
        """A fresh KEK, active and saved (old keys stay in the file for what they wrap)."""
        if self.path is None:
            self.save()  # raises: there is no file to keep the new key in
        kid = self.add_key()
        self.save()
        return kid

    def _kek(self, kid: str) -> AESGCM:
        try:
            return AESGCM(self.keys[kid])
        except KeyError:
            raise DecryptionError(f"key {kid!r} is not in the keyring") from None

    def wrap(self, data_key: bytes) -> tuple[str, bytes]:
        self.refresh()
        nonce = os.urandom(12)
        return self.active, nonce + self._kek(self.active).encrypt(nonce, data_key, _WRAP_AAD + self.active.encode())

    def unwrap(self, key_id: str, wrapped: bytes) -> bytes:
        if key_id not in self.keys:
            self.refresh()
        try:
            return self._kek(key_id).decrypt(wrapped[:12], wrapped[12:], _WRAP_AAD + key_id.encode())
        except InvalidTag:
            raise DecryptionError("data key does not unwrap") from None


class DataKeyCache:
    """Unwrapped data keys by (key id, wrapped key), at most ``size`` of them, each for at
    most ``ttl`` seconds (0: nothing is kept). Least recently used go first. They live only
    in this process's memory (Python cannot wipe bytes; they go with the process)."""

    def __init__(self, size: int = 4096, ttl: float = 3600.0) -> None:
        self.size, self.ttl = size, ttl
        self._items: OrderedDict[bytes, tuple[bytes, float]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _slot(key_id: str, wrapped: bytes) -> bytes:
        return hashlib.sha256(key_id.encode() + b"\0" + wrapped).digest()

    def get(self, key_id: str, wrapped: bytes) -> bytes | None:
        slot = self._slot(key_id, wrapped)
        with self._lock:
            item = self._items.get(slot)
            if item is None:
                return None
            if item[1] <= time.monotonic():
                del self._items[slot]
                return None
            self._items.move_to_end(slot)
            return item[0]

    def put(self, key_id: str, wrapped: bytes, data_key: bytes) -> None:
        if self.size <= 0 or self.ttl <= 0:
            return
        slot = self._slot(key_id, wrapped)
        with self._lock:
            self._items[slot] = (data_key, time.monotonic() + self.ttl)
            self._items.move_to_end(slot)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


class Keyring:
    """Seals with ``provider`` and opens with whichever of ``provider`` and ``others``
    owns a value's key id. What the core holds; it knows no provider's details."""

    def __init__(self, provider: KeyProvider, others: Iterable[KeyProvider] = (),
                 cache: DataKeyCache | None = None) -> None:
        self.provider = provider
        self.others = [p for p in others if p is not provider]
        self.cache = cache if cache is not None else DataKeyCache()

    @classmethod
    def load_or_create(cls, data_dir: Path) -> Keyring:
        """The local keyring of a data dir, made if missing (a new data dir, and tests);
        the server opens its keyring with ``store.opening.open_store``."""
        return cls(LocalKeyring.load_or_create(data_dir))

    @property
    def providers(self) -> list[KeyProvider]:
        return [self.provider, *self.others]

    @property
    def active(self) -> str:
        return self.provider.active_id()

    def provider_for(self, key_id: str) -> KeyProvider:
        for p in self.providers:
            if p.owns(key_id):
                return p
        raise DecryptionError(f"key {key_id} belongs to none of this server's key providers "
                              f"({'; '.join(p.describe() for p in self.providers)})")

    def _data_key(self, sealed: Sealed) -> bytes:
        p = self.provider_for(sealed.key_id)
        if not p.remote:
            return p.unwrap(sealed.key_id, sealed.wrapped_key)
        data_key = self.cache.get(sealed.key_id, sealed.wrapped_key)
        if data_key is None:
            data_key = p.unwrap(sealed.key_id, sealed.wrapped_key)
            self.cache.put(sealed.key_id, sealed.wrapped_key, data_key)
        return data_key

    def _wrap(self, data_key: bytes, to: KeyProvider) -> tuple[str, bytes]:
        kid, wrapped = to.wrap(data_key)
        if to.remote:  # what was just sealed opens without a call to the vault
            self.cache.put(kid, wrapped, data_key)
        return kid, wrapped

    def seal(self, plaintext: bytes, aad: bytes) -> Sealed:
        data_key = AESGCM.generate_key(256)
        nonce = os.urandom(12)
        ciphertext = AESGCM(data_key).encrypt(nonce, plaintext, aad)
        kid, wrapped = self._wrap(data_key, self.provider)
        return Sealed(kid, wrapped, nonce, ciphertext)

    def open(self, sealed: Sealed, aad: bytes) -> bytes:
        data_key = self._data_key(sealed)
        try:
            return AESGCM(data_key).decrypt(sealed.nonce, sealed.ciphertext, aad)
        except InvalidTag:
            raise DecryptionError("ciphertext does not decrypt for this owner and name") from None

    def rewrap(self, sealed: Sealed, to: KeyProvider | None = None) -> Sealed:
        """The data key wrapped again by ``to`` (default: the sealing provider's active
        key); the ciphertext is untouched."""
        kid, wrapped = self._wrap(self._data_key(sealed), to or self.provider)
        return Sealed(kid, wrapped, sealed.nonce, sealed.ciphertext)


def _stamp(path: Path | None) -> tuple[int, int, int] | None:
    try:
        st = path.stat() if path else None
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size) if st else None


def is_local_key_id(key_id: str) -> bool:
    """A local keyring's id (``k`` + hex), not a key service's identifier (a URL)."""
    return not key_id.startswith("https://")


def _new_key_id() -> str:
    return "k" + secrets.token_hex(6)


def secret_aad(owner_id: int, name: str) -> bytes:
    return f"dev8-secret\x00{owner_id}\x00{name}".encode()


def env_key_aad(env_id: str) -> bytes:
    return f"dev8-env-key\x00{env_id}".encode()


def prebuild_hook_aad(config_id: str) -> bytes:
    return f"dev8-prebuild-hook\x00{config_id}".encode()


GATEWAY_KEY_AAD = b"dev8-gateway-host-key"
