"""A local stand-in for Azure Key Vault's keys data plane (api-version 2025-07-01, what
azure-keyvault-keys 4.11 sends), with Microsoft Entra's token endpoint beside it.

What it speaks, over HTTPS with a test CA: the challenge flow (a request without a token
is answered 401 with ``WWW-Authenticate: Bearer authorization="…/TENANT",
resource="https://vault.azure.net"``; the client then gets a token from the stub's token
endpoint), GET a key (newest version or a given one), its versions, create (a new version
of an existing name), PATCH (enable or disable a version), DELETE (soft delete; every
version then 404 until recovered), ``wrapkey`` and ``unwrapkey`` with real RSA-OAEP /
RSA-OAEP-256 (``cryptography``). Every request body is validated strictly against the
published keys specification (tests/data/azure, with its source); a violation is a 400.

Failures as the vault answers them: an unknown key or version 404 ``KeyNotFound``, a
disabled version 403 ``Forbidden`` (innererror ``KeyDisabled``), a wrong ciphertext 400
``BadParameter``; injected on request (:meth:`Stub.inject`): 403, 429 with
``Retry-After``, 5xx; ``refuse_tokens`` answers every token it issued with 401, ``delay``
makes every answer slow, ``down()`` stops answering at all.
"""
from __future__ import annotations

import base64
import re
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.azure.stubhttp import JsonHandler, Stub
from tests.azure.swagger import SpecViolation, validate

SPEC = "keyvault-keys-2025-07-01.json"
API = "2025-07-01"
RESOURCE = "https://vault.azure.net"
PADDINGS = {"RSA-OAEP": hashes.SHA1, "RSA-OAEP-256": hashes.SHA256}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _int_bytes(n: int) -> bytes:
    return n.to_bytes((n.bit_length() + 7) // 8, "big")


@dataclass
class Version:
    version: str
    private: rsa.RSAPrivateKey
    ops: list[str]
    enabled: bool = True
    created: int = field(default_factory=lambda: int(time.time()))
    updated: int = field(default_factory=lambda: int(time.time()))


@dataclass
class Key:
    versions: list[Version] = field(default_factory=list)  # oldest first
    deleted: bool = False


class KeyVaultStub(Stub):
    def __init__(self, cert_dir: Path, key_size: int = 2048) -> None:
        super().__init__(cert_dir)
        self.key_size = key_size
        self.keys: dict[str, Key] = {}
        self.calls: list[tuple[str, str]] = []       # (method, path) of every authorized request
        self.unauthenticated: list[str] = []         # paths asked without a valid token (challenges)
        self.bodies: list[tuple[str, Any]] = []      # (definition, body) of every validated body
        self.refuse_tokens = False
        self.delay = 0.0
        self._port = 0

    def _handler(self) -> type[_Handler]:
        stub = self

        class Handler(_Handler):
            vault = stub
        Handler.stub = stub
        return Handler

    def start(self) -> KeyVaultStub:
        self.serve(self._handler())
        return self

    def down(self) -> None:
        """Stop answering: connections are refused, as with a vault out of reach."""
        assert self.server is not None
        self._port = self.server.server_address[1]
        self.shutdown()

    def up(self) -> None:
        """Answer again, on the same port."""
        self.serve(self._handler(), self._port)

    # --- keys, as an operator's portal would change them ---------------------------------------

    def create(self, name: str, ops: list[str] | None = None) -> str:
        """A new version of ``name`` (the key made if new); its version id."""
        with self.lock:
            key = self.keys.setdefault(name, Key())
            v = Version(uuid.uuid4().hex, rsa.generate_private_key(65537, self.key_size),
                        ops or ["wrapKey", "unwrapKey"])
            key.versions.append(v)
            return v.version

    def set_enabled(self, name: str, version: str, enabled: bool) -> None:
        with self.lock:
            self._version(name, version).enabled = enabled

    def delete(self, name: str) -> None:
        with self.lock:
            self.keys[name].deleted = True

    def recover(self, name: str) -> None:
        with self.lock:
            self.keys[name].deleted = False

    def _version(self, name: str, version: str) -> Version:
        key = self.keys[name]
        return next(v for v in key.versions if v.version == version)

    def kid(self, name: str, version: str) -> str:
        return f"{self.url}/keys/{name}/{version}"

    def count(self, method: str, pattern: str) -> int:
        """How many authorized requests matched ``method`` and the path regex ``pattern``."""
        with self.lock:
            return sum(1 for m, p in self.calls if m == method and re.search(pattern, p))

    def settings_env(self, key: str = "dev8-kek") -> dict[str, str]:
        """The settings of a dev8 server that keeps its key in this vault."""
        return {"DEV8_KEYRING_PROVIDER": "azure-keyvault", "DEV8_KEYVAULT_URL": self.url,
                "DEV8_KEYVAULT_KEY": key, "DEV8_KEYVAULT_CA_BUNDLE": str(self.ca),
                "DEV8_KEYVAULT_INSTANCE_DISCOVERY": "false",
                "DEV8_KEYVAULT_VERIFY_CHALLENGE_RESOURCE": "false", **self.credential_env()}

    def bundle(self, name: str, v: Version) -> dict:
        pub = v.private.public_key().public_numbers()
        return {"key": {"kid": self.kid(name, v.version), "kty": "RSA", "key_ops": v.ops,
                        "n": b64url(_int_bytes(pub.n)), "e": b64url(_int_bytes(pub.e))},
                "attributes": {"enabled": v.enabled, "created": v.created, "updated": v.updated,
                               "recoveryLevel": "Recoverable+Purgeable", "recoverableDays": 90},
                "tags": {}}


class _Handler(JsonHandler):
    vault: KeyVaultStub

    def _route(self, method: str) -> None:
        vault = self.vault
        if vault.delay:
            time.sleep(vault.delay)
        request = self._request("BadParameter")
        if request is None:
            return None
        path, query, body = request
        if self._entra(method, path, body):
            return None
        if not self._authorized() or vault.refuse_tokens:
            with vault.lock:
                vault.unauthenticated.append(path)
            return self._error(401, "Unauthorized", "AKV10000: Request is missing a Bearer or PoP token.", {
                "WWW-Authenticate": f'Bearer authorization="{vault.url}/{vault.tenant}", resource="{RESOURCE}"'})
        with vault.lock:
            vault.calls.append((method, path))
        injected = vault.injected(method, path)
        if injected is not None:
            return self._send(injected.status, injected.body, injected.headers)
        api = (query.get("api-version") or [""])[0]
        if api != API:
            return self._error(400, "BadParameter", f"The specified version ({api}) is not recognized. "
                                                    f"Consider using the latest supported version ({API}).")
        m = re.fullmatch(r"/keys/(?P<name>[0-9a-zA-Z-]+)(?:/(?P<rest>.*))?", path)
        if m is None:
            return self._error(404, "NotFound", f"no such path: {path}")
        with vault.lock:
            return self._keys(method, m["name"], (m["rest"] or "").strip("/"), body)

    def _validated(self, definition: str, body: Any) -> bool:
        try:
            validate(SPEC, definition, body)
        except SpecViolation as exc:
            self._error(400, "BadParameter", f"{definition}: {exc}")
            return False
        self.vault.bodies.append((definition, body))
        return True

    def _keys(self, method: str, name: str, rest: str, body: Any) -> None:
        vault = self.vault
        if method == "POST" and rest == "create":
            if not self._validated("KeyCreateParameters", body):
                return None
            if body["kty"] not in ("RSA", "RSA-HSM"):
                return self._error(400, "BadParameter", f"this stand-in makes RSA keys only, not {body['kty']}")
            key = vault.keys.get(name)
            if key is not None and key.deleted:
                return self._error(409, "Conflict", f"Key {name} is currently in a deleted but recoverable state")
            version = vault.create(name, body.get("key_ops"))
            if body.get("attributes", {}).get("enabled") is False:
                vault.set_enabled(name, version, False)
            return self._send(200, vault.bundle(name, vault._version(name, version)))
        key = vault.keys.get(name)
        if key is None or key.deleted or not key.versions:
            return self._error(404, "KeyNotFound", f"A key with (name/id) {name} was not found in this key vault.")
        if method == "GET" and rest == "versions":
            items = [{"kid": vault.kid(name, v.version), **{k: v2 for k, v2 in vault.bundle(name, v).items()
                                                              if k in ("attributes", "tags")}}
                     for v in key.versions]
            return self._send(200, {"value": items, "nextLink": None})
        version_id, _, op = rest.partition("/")
        v = key.versions[-1] if not version_id else next((x for x in key.versions if x.version == version_id), None)
        if v is None:
            return self._error(404, "KeyNotFound", f"A key with (name/id) {name}/{version_id} was not found in "
                                                   "this key vault.")
        if method == "GET" and not op:
            return self._send(200, vault.bundle(name, v))
        if method == "PATCH" and not op and version_id:
            if not self._validated("KeyUpdateParameters", body):
                return None
            if "enabled" in body.get("attributes", {}):
                v.enabled = body["attributes"]["enabled"]
                v.updated = int(time.time())
            return self._send(200, vault.bundle(name, v))
        if method == "POST" and op in ("wrapkey", "unwrapkey") and version_id:
            return self._crypt(name, v, op, body)
        return self._error(405, "MethodNotAllowed", f"{method} {rest or name} is not served here")

    def _crypt(self, name: str, v: Version, op: str, body: Any) -> None:
        if not self._validated("KeyOperationsParameters", body):
            return None
        wanted = "wrapKey" if op == "wrapkey" else "unwrapKey"
        if not v.enabled:
            return self._error(403, "Forbidden", f"Operation {wanted} is not allowed on a disabled key.",
                               inner="KeyDisabled")
        if wanted not in v.ops:
            return self._error(403, "Forbidden", f"Operation {wanted} is not permitted on this key.",
                               inner="KeyOperationForbidden")
        hash_cls = PADDINGS.get(body["alg"])
        if hash_cls is None:
            return self._error(400, "BadParameter", f"algorithm {body['alg']} is not served by this stand-in")
        pad = padding.OAEP(mgf=padding.MGF1(hash_cls()), algorithm=hash_cls(), label=None)
        try:
            value = unb64url(body["value"])
            result = v.private.public_key().encrypt(value, pad) if op == "wrapkey" else v.private.decrypt(value, pad)
        except ValueError:
            return self._error(400, "BadParameter", "The parameter is incorrect.")
        return self._send(200, {"kid": self.vault.kid(name, v.version), "value": b64url(result)})
