"""User secrets: write-only values, envelope-encrypted at rest (see crypto.py)."""
from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dev8.core import audit
from dev8.core.crypto import DecryptionError, KeyProvider, Keyring, Sealed, env_key_aad, secret_aad
from dev8.core.errors import Conflict, Invalid, NotFound
from dev8.names import check_secret_name
from dev8.store.db import Database
from dev8.store.models import EnvironmentKey, GatewayKey, PrebuildHookKey, SealedColumns, Secret, User, utcnow

SEALED_MODELS = (Secret, EnvironmentKey, GatewayKey, PrebuildHookKey)  # every table of sealed values


def sealed_of(row: SealedColumns) -> Sealed:
    return Sealed(row.key_id, row.wrapped_key, row.nonce, row.ciphertext)


def store_sealed(row: SealedColumns, sealed: Sealed) -> None:
    row.key_id, row.wrapped_key, row.nonce, row.ciphertext = (
        sealed.key_id, sealed.wrapped_key, sealed.nonce, sealed.ciphertext)


def set_secret(s: Session, keyring: Keyring, user: User, *, name: str, value: str, max_bytes: int) -> Secret:
    try:
        check_secret_name(name)
    except ValueError as exc:
        raise Invalid(str(exc)) from None
    data = value.encode()
    if not data:
        raise Invalid("secret value is empty")
    if len(data) > max_bytes:
        raise Invalid(f"secret value is larger than {max_bytes} bytes")
    row = s.scalar(select(Secret).where(Secret.owner_id == user.id, Secret.name == name))
    audit.record(s, user, "secret.set", name, "created" if row is None else "replaced")
    if row is None:
        row = Secret(owner_id=user.id, name=name)
        s.add(row)
    row.updated_at = utcnow()
    store_sealed(row, keyring.seal(data, secret_aad(user.id, name)))
    try:
        s.flush()
    except IntegrityError:  # the same new name, set by a concurrent request
        raise Conflict(f"secret {name} was being set by another request at the same moment; set it again",
                       field="name") from None
    return row


def list_secrets(s: Session, user: User) -> list[Secret]:
    return list(s.scalars(select(Secret).where(Secret.owner_id == user.id).order_by(Secret.name)))


def delete_secret(s: Session, user: User, name: str) -> None:
    row = s.scalar(select(Secret).where(Secret.owner_id == user.id, Secret.name == name))
    if row is None:
        raise NotFound(f"no secret {name!r}")
    audit.record(s, user, "secret.delete", name)
    s.delete(row)


def check_secrets_exist(s: Session, user: User, names: list[str]) -> None:
    have = set(s.scalars(select(Secret.name).where(Secret.owner_id == user.id)))
    missing = [n for n in names if n not in have]
    if missing:
        raise Invalid(f"unknown secret(s): {', '.join(missing)} (set them with `dev8 secrets set NAME`)",
                      field="secrets")


def reveal_secrets(s: Session, keyring: Keyring, owner_id: int, names: list[str]) -> dict[str, str]:
    """Plaintext of the named secrets, for pushing into an environment over SSH only."""
    out = {}
    for r in s.scalars(select(Secret).where(Secret.owner_id == owner_id, Secret.name.in_(names))):
        try:
            out[r.name] = keyring.open(sealed_of(r), secret_aad(owner_id, r.name)).decode()
        except DecryptionError as exc:
            raise Invalid(f"secret {r.name} cannot be decrypted ({exc}): restore the keyring it was sealed "
                          f"with, or set it again with `dev8 secrets set {r.name}`", field="secrets") from None
    return out


def seal_env_key(keyring: Keyring, env_id: str, private_key_pem: bytes) -> EnvironmentKey:
    row = EnvironmentKey(env_id=env_id)
    store_sealed(row, keyring.seal(private_key_pem, env_key_aad(env_id)))
    return row


def open_env_key(s: Session, keyring: Keyring, env_id: str) -> bytes:
    row = s.get(EnvironmentKey, env_id)
    if row is None:
        raise NotFound("environment key missing")
    return keyring.open(sealed_of(row), env_key_aad(env_id))


def read_env_key(db: Database, keyring: Keyring, env_id: str) -> bytes:
    """``open_env_key`` in a session of its own (for callers outside a request)."""
    with db.session() as s:
        return open_env_key(s, keyring, env_id)


def sealed_key_ids(s: Session) -> dict[str, int]:
    """How many stored values each key-encryption key wraps."""
    counts: dict[str, int] = {}
    for model in SEALED_MODELS:
        for kid, n in s.execute(select(model.key_id, func.count()).group_by(model.key_id)):
            counts[kid] = counts.get(kid, 0) + n
    return counts


def _sealed_rows(s: Session, not_under: str) -> list[SealedColumns]:
    """Every sealed value whose data key is not wrapped by key ``not_under``."""
    rows: list[SealedColumns] = []
    for model in SEALED_MODELS:
        rows.extend(s.scalars(select(model).where(model.key_id != not_under)))
    return rows


def rotate_keys(db: Database, keyring: Keyring, *, new_key: bool = True) -> int:
    """Make a new key-encryption key (a new version in a vault) active, or with
    ``new_key=False`` take up one rotated elsewhere (the vault's newest version), and
    rewrap every data key not under it; returns how many values were rewrapped.

    The new key is saved first (old keys stay, so a crash at any point never leaves a data
    key wrapped by a key that is not kept); a running server takes it up at its next use
    (a vault's newest version within DEV8_KEYVAULT_REFRESH). Values it wrote meanwhile
    with the old key are rewrapped in further passes until none is left.
    """
    if new_key:
        keyring.provider.rotate()
    else:
        keyring.provider.refresh()
    active = keyring.active
    count = 0
    while True:
        with db.session() as s:
            rows = _sealed_rows(s, active)
            for row in rows:
                store_sealed(row, keyring.rewrap(sealed_of(row)))
        if not rows:
            return count
        count += len(rows)


def migrate_keyring(db: Database, keyring: Keyring, target: KeyProvider) -> int:
    """Rewrap every data key not under ``target``'s active key with it, in one
    transaction: a failure half way leaves every value as it was. ``keyring`` must open
    every value (it holds the provider they are sealed with). Returns how many moved."""
    active = target.active_id()
    with db.session() as s:
        rows = _sealed_rows(s, active)
        for row in rows:
            store_sealed(row, keyring.rewrap(sealed_of(row), to=target))
    return len(rows)
