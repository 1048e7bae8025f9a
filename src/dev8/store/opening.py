"""Opening a data dir as the server and the server-side commands do: the database migrated
to this version, and the keyring its values are sealed with, checked against it. Apart from
the server so that `dev8 admin …` loads only the store, not the web stack."""
from __future__ import annotations

from dev8.core.crypto import DataKeyCache, KeyProvider, Keyring, KeyringError, LocalKeyring, is_local_key_id
from dev8.core.secrets import sealed_key_ids
from dev8.settings import Settings
from dev8.store.db import Database


class StartupError(Exception):
    """A one-line reason the server cannot start, with how to fix it."""


RESTORE = "restore it from your backup (`dev8 admin restore`, README: Operating it)"


def open_store(settings: Settings) -> tuple[Database, Keyring]:
    """The database (upgraded) and the keyring its values are encrypted with."""
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    db = Database(settings.db_url, threads=2 * settings.worker_threads)
    db.upgrade()
    with db.session() as s:
        used = sealed_key_ids(s)
    return db, open_keyring(settings, used)


def vault_of(settings: Settings) -> KeyProvider | None:
    """The Key Vault provider the settings name, or None (DEV8_KEYVAULT_URL unset)."""
    if not settings.keyvault_url:
        return None
    try:
        from dev8.core.keyvault import VaultKeyring
    except ImportError:
        raise StartupError("DEV8_KEYVAULT_URL needs the Azure Key Vault SDK: pip install 'dev8[keyvault]'") from None
    return VaultKeyring.from_settings(settings)


def open_keyring(settings: Settings, used: dict[str, int]) -> Keyring:
    """The providers the settings name, checked against the key ids the database's values
    (``used``: id → count) are sealed with. Refuses a missing, unreadable or foreign local
    keyring while values need it (a new keyring would silently make every secret and
    environment key unreadable), and values sealed in a vault this server is not given.
    Asks the vault nothing: a server starts while the vault is down (what needs a secret
    then answers 503)."""
    try:
        local = LocalKeyring.load(settings.data_dir)
    except (KeyringError, OSError) as exc:
        raise StartupError(f"{exc}; {RESTORE}") from None
    vault = vault_of(settings)
    if settings.keyring_provider == "azure-keyvault" and vault is None:
        raise StartupError("DEV8_KEYRING_PROVIDER=azure-keyvault needs DEV8_KEYVAULT_URL (and DEV8_KEYVAULT_KEY, "
                           "default dev8-kek)")
    local_ids = {kid: n for kid, n in used.items() if is_local_key_id(kid)}
    vault_ids = {kid: n for kid, n in used.items() if kid not in local_ids}
    if local is None:
        if local_ids:
            raise StartupError(f"{settings.data_dir / 'keyring.json'} is missing, but the database holds "
                               f"{sum(local_ids.values())} encrypted value(s) sealed with it; {RESTORE}, "
                               "or set DEV8_KEYRING")
        if settings.keyring_provider == "local":
            local = LocalKeyring.create(settings.data_dir)
    missing = sorted(set(local_ids) - set(local.keys if local else ()))
    if missing:
        where = (local.path if local else None) or "$DEV8_KEYRING"
        raise StartupError(f"the keyring {where} lacks key(s) {', '.join(missing)} that "
                           f"{sum(local_ids[k] for k in missing)} encrypted value(s) in the database are sealed with "
                           f"(another installation's keyring, or an older copy); {RESTORE}")
    foreign = sorted(kid for kid in vault_ids if vault is None or not vault.owns(kid))
    if foreign:
        given = f"this server is given {vault.describe()}" if vault else "DEV8_KEYVAULT_URL is not set"
        raise StartupError(f"{sum(vault_ids[k] for k in foreign)} encrypted value(s) in the database are sealed with "
                           f"Azure Key Vault key {foreign[0]}, but {given}: set DEV8_KEYVAULT_URL and "
                           "DEV8_KEYVAULT_KEY to that vault and key")
    providers: list[KeyProvider] = [p for p in (local, vault) if p is not None]
    main = vault if settings.keyring_provider == "azure-keyvault" else local
    assert main is not None
    return Keyring(main, providers, DataKeyCache(settings.keyring_cache_size, settings.keyring_cache_seconds))
