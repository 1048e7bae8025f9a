"""Azure Key Vault as the key provider (``DEV8_KEYRING_PROVIDER=azure-keyvault``).

The key-encryption key is an RSA key in the vault and never leaves it: a data key is
wrapped with RSA-OAEP-256 by the SDK locally with the key's public part (fetched once per
version, looked up again every ``refresh_every`` seconds to take up a rotation) and
unwrapped by the vault (``POST /keys/NAME/VERSION/unwrapkey``). A value records the full
key identifier with its version (``https://VAULT/keys/NAME/VERSION``), so an old version
keeps opening what it wrapped until ``dev8 admin rotate-keys`` has re-wrapped it.

Every call is bounded (``timeout``); the vault's failures become KeyServiceUnavailable in a
sentence (unreachable, credentials refused, forbidden, throttled, key disabled or gone).
A throttling answer that asks for at most a couple of seconds is waited out once; a longer
one is reported, not slept through in a worker thread.
"""
from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.keyvault.keys import KeyClient, KeyVaultKey, KeyVaultKeyIdentifier
from azure.keyvault.keys.crypto import CryptographyClient, KeyWrapAlgorithm

from dev8.core.crypto import DecryptionError, KeyServiceUnavailable
from dev8.runtimes.pulled import first_line

log = logging.getLogger(__name__)
T = TypeVar("T")

ALGORITHM = KeyWrapAlgorithm.rsa_oaep_256
KEY_SIZE = 3072
OPERATIONS = ["wrapKey", "unwrapKey"]
SHORT_THROTTLE = 2.0  # a Retry-After up to this is waited out once


@dataclass(frozen=True)
class KeyVersion:
    key_id: str
    enabled: bool
    created: float | None


class VaultKeyring:
    """One key (all its versions) in one vault."""

    name = "azure-keyvault"
    remote = True

    def __init__(self, vault_url: str, key_name: str, credential: Any = None, *, ca_bundle: Path | None = None,
                 instance_discovery: bool = True, verify_challenge_resource: bool = True,
                 timeout: float = 10.0, refresh_every: float = 300.0) -> None:
        self.vault_url = vault_url.rstrip("/")
        self.key_name = key_name
        self.timeout, self.refresh_every = timeout, refresh_every
        self._credential = credential
        self._ca_bundle, self._instance_discovery = ca_bundle, instance_discovery
        self._verify_challenge_resource = verify_challenge_resource
        self._client: KeyClient | None = None
        self._lock = threading.Lock()
        self._latest: KeyVaultKey | None = None
        self._looked_up = -float("inf")  # monotonic time of the last lookup of the newest version
        self._crypto: dict[str, CryptographyClient] = {}

    @classmethod
    def from_settings(cls, settings: Any) -> VaultKeyring:
        if not settings.keyvault_url:
            raise ValueError("DEV8_KEYVAULT_URL is not set")
        return cls(settings.keyvault_url, settings.keyvault_key, ca_bundle=settings.keyvault_ca_bundle,
                   instance_discovery=settings.keyvault_instance_discovery,
                   verify_challenge_resource=settings.keyvault_verify_challenge_resource,
                   timeout=settings.keyvault_timeout, refresh_every=settings.keyvault_refresh)

    def describe(self) -> str:
        return f"Azure Key Vault {self.vault_url} key {self.key_name}"

    # --- clients ------------------------------------------------------------------------------

    def _cred(self) -> Any:
        if self._credential is None:
            from dev8.azurecred import default_credential
            self._credential = default_credential(self._ca_bundle, self._instance_discovery)
        return self._credential

    def _kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {"retry_total": 0, "connection_timeout": self.timeout, "read_timeout": self.timeout,
                              "verify_challenge_resource": self._verify_challenge_resource}
        if self._ca_bundle:
            kw["connection_verify"] = str(self._ca_bundle)
        return kw

    @property
    def client(self) -> KeyClient:
        if self._client is None:
            self._client = KeyClient(self.vault_url, self._cred(), **self._kwargs())
        return self._client

    def _crypto_for(self, key: KeyVaultKey | str) -> CryptographyClient:
        kid = key if isinstance(key, str) else str(key.id)
        with self._lock:
            client = self._crypto.get(kid)
            if client is None:
                client = self._crypto[kid] = CryptographyClient(key, self._cred(), **self._kwargs())
            return client

    # --- the provider -------------------------------------------------------------------------

    def owns(self, key_id: str) -> bool:
        if not key_id.startswith("https://"):
            return False
        try:
            parsed = KeyVaultKeyIdentifier(key_id)
        except ValueError:
            return False
        return parsed.vault_url.rstrip("/").lower() == self.vault_url.lower() and parsed.name == self.key_name

    def current(self) -> KeyVaultKey:
        """The newest version, looked up again after ``refresh_every`` seconds. While the
        vault cannot be asked, the version known last stays in use (new values remain
        sealable; its public part is all wrapping needs)."""
        with self._lock:
            latest, due = self._latest, self._looked_up + self.refresh_every <= time.monotonic()
        if latest is not None and not due:
            return latest
        try:
            key = self._call("read the key", lambda: self.client.get_key(self.key_name))
        except KeyServiceUnavailable as exc:
            if latest is None:
                raise
            log.warning("keeping key version %s: %s", latest.properties.version, exc)
            with self._lock:
                self._looked_up = time.monotonic()  # not every value sealed meanwhile asks again
            return latest
        with self._lock:
            self._latest, self._looked_up = key, time.monotonic()
        return key

    def active_id(self) -> str:
        return str(self.current().id)

    def refresh(self) -> None:
        with self._lock:
            self._looked_up = -float("inf")
        self.current()

    def wrap(self, data_key: bytes) -> tuple[str, bytes]:
        key = self.current()
        if key.properties.enabled is False:
            raise KeyServiceUnavailable(f"{self.describe()}: its newest version {key.properties.version} is "
                                        "disabled; enable it, or rotate to a new version")
        result = self._call("wrap a data key", lambda: self._crypto_for(key).wrap_key(ALGORITHM, data_key))
        return str(result.key_id or key.id), bytes(result.encrypted_key)

    def unwrap(self, key_id: str, wrapped: bytes) -> bytes:
        if not self.owns(key_id):
            raise DecryptionError(f"key {key_id} is not {self.describe()}")
        result = self._call("unwrap a data key", lambda: self._crypto_for(key_id).unwrap_key(ALGORITHM, wrapped),
                            key_id=key_id)
        return bytes(result.key)

    def rotate(self) -> str:
        """A new version of the key (keys/create permission), active from now on."""
        key = self._call("create a key version", lambda: self.client.create_rsa_key(
            self.key_name, size=KEY_SIZE, key_operations=OPERATIONS))
        with self._lock:
            self._latest, self._looked_up = key, time.monotonic()
        return str(key.id)

    def ensure_key(self) -> bool:
        """Make the key if the vault has none of that name; whether it was made."""
        try:
            self.refresh()
            return False
        except KeyServiceUnavailable as exc:
            if not isinstance(exc.__cause__, ResourceNotFoundError):
                raise
        self.rotate()
        return True

    def versions(self) -> list[KeyVersion]:
        """Every version of the key, newest first."""
        def listing() -> list[KeyVersion]:
            return [KeyVersion(str(p.id), bool(p.enabled), p.created_on.timestamp() if p.created_on else None)
                    for p in self.client.list_properties_of_key_versions(self.key_name)]
        found = self._call("list the key's versions", listing)
        return sorted(found, key=lambda v: v.created or 0, reverse=True)

    # --- failures -----------------------------------------------------------------------------

    def _call(self, what: str, fn: Callable[[], T], *, key_id: str | None = None) -> T:
        for attempt in (1, 2):
            try:
                with self._failures(what, key_id):
                    return fn()
            except _Throttled as exc:
                if attempt == 2 or exc.wait > SHORT_THROTTLE:
                    raise KeyServiceUnavailable(str(exc)) from None
                time.sleep(exc.wait)
        raise AssertionError("unreachable")

    @contextlib.contextmanager
    def _failures(self, what: str, key_id: str | None) -> Iterator[None]:
        where = self.describe()
        version = f" version {key_id.rsplit('/', 1)[-1]}" if key_id else ""
        try:
            yield
        except ServiceResponseError as exc:  # a read timeout, a dropped connection
            raise KeyServiceUnavailable(f"{where} did not answer within {self.timeout:.0f} s "
                                        f"({first_line(exc)})") from None
        except ServiceRequestError as exc:
            raise KeyServiceUnavailable(f"{where} is unreachable ({first_line(exc)})") from None
        except ClientAuthenticationError as exc:
            raise KeyServiceUnavailable(f"{where} refused dev8's Azure credentials ({first_line(exc)})") from None
        except ResourceNotFoundError as exc:
            raise KeyServiceUnavailable(
                f"{where}{version} is not in the vault (deleted? a soft-deleted key can be recovered in the vault; "
                f"`dev8 admin keyring status` lists the versions still needed)") from exc
        except HttpResponseError as exc:
            status, code = exc.status_code, _inner_code(exc)
            if status == 429:
                wait = _retry_after(exc)
                raise _Throttled(f"{where} is throttling dev8 (429; it asks to wait {wait:.0f} s)", wait) from None
            if status == 403 and ("disabled" in first_line(exc).lower() or code == "KeyDisabled"):
                raise KeyServiceUnavailable(f"{where}{version} is disabled: enable it in the vault "
                                            f"({first_line(exc)})") from None
            if status == 403:
                raise KeyServiceUnavailable(
                    f"{where} forbids dev8 to {what} (403: {first_line(exc)}); give dev8's identity the "
                    "'Key Vault Crypto User' role ('Crypto Officer' to let it make key versions), or an access "
                    "policy with keys get, wrapKey, unwrapKey (and create)") from None
            if status == 400 and what.startswith("unwrap"):
                raise DecryptionError(f"{where}{version} cannot unwrap this data key ({first_line(exc)})") from None
            raise KeyServiceUnavailable(f"{where} answered {status} to {what} ({first_line(exc)})") from None
        except AzureError as exc:  # a credential chain that found nothing, and the like
            raise KeyServiceUnavailable(f"{where} cannot be used: {first_line(exc)}") from None


class _Throttled(Exception):
    def __init__(self, message: str, wait: float) -> None:
        super().__init__(message)
        self.wait = wait


def _inner_code(exc: HttpResponseError) -> str:
    error = getattr(exc, "error", None)
    inner = getattr(error, "innererror", None) or {}
    return str(inner.get("code", "")) if isinstance(inner, dict) else ""


def _retry_after(exc: HttpResponseError) -> float:
    headers = getattr(exc.response, "headers", None) or {}
    try:
        return max(0.0, float(headers.get("Retry-After", "")))
    except ValueError:
        return 60.0
