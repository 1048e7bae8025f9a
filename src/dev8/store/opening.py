"""Opening a data dir as the server and the server-side commands do: the database migrated
to this version, and the keyring its values are sealed with, checked against it. Apart from
the server so that `dev8 admin …` loads only the store, not the web stack."""
from __future__ import annotations

from dev8.core.crypto import Keyring, KeyringError
from dev8.core.secrets import sealed_key_ids
from dev8.settings import Settings
from dev8.store.db import Database


class StartupError(Exception):
    """A one-line reason the server cannot start, with how to fix it."""


RESTORE = "restore it from your backup (`dev8 admin restore`, README: Operating it)"


def open_store(settings: Settings) -> tuple[Database, Keyring]:
    """The database (upgraded) and the keyring its values are encrypted with. Refuses a
    missing, unreadable or foreign keyring while the database holds encrypted values: a
    new keyring would silently make every secret and environment key unreadable."""
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    db = Database(settings.db_url, threads=2 * settings.worker_threads)
    db.upgrade()
    try:
        keyring = Keyring.load(settings.data_dir)
    except (KeyringError, OSError) as exc:
        raise StartupError(f"{exc}; {RESTORE}") from None
    with db.session() as s:
        used = sealed_key_ids(s)
    total = sum(used.values())
    if keyring is None:
        if total:
            raise StartupError(f"{settings.data_dir / 'keyring.json'} is missing, but the database holds {total} "
                               f"encrypted value(s) sealed with it; {RESTORE}, or set DEV8_KEYRING")
        keyring = Keyring.create(settings.data_dir)
    missing = sorted(set(used) - set(keyring.keys))
    if missing:
        where = keyring.path or "$DEV8_KEYRING"
        raise StartupError(f"the keyring {where} lacks key(s) {', '.join(missing)} that "
                           f"{sum(used[k] for k in missing)} encrypted value(s) in the database are sealed with "
                           f"(another installation's keyring, or an older copy); {RESTORE}")
    return db, keyring
