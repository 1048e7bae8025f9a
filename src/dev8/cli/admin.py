"""Server-side commands: `dev8 server` runs dev8, `dev8 admin …` works on its data dir and
database directly (no API, no login), on the server's host."""
from __future__ import annotations

import getpass
import sys
from pathlib import Path
from typing import Annotated

import typer

from dev8.cli.common import DataDir, DbUrl, fail, load_settings, open_data, out

app = typer.Typer()
admin_app = typer.Typer(help="Server-side administration (works on the data dir / database directly).",
                        no_args_is_help=True)


@app.command()
def server(
    data_dir: DataDir = None, database_url: DbUrl = None,
    http_addr: Annotated[str | None, typer.Option(
        help="HTTP listen address [env DEV8_HTTP_ADDR, default 127.0.0.1:7080]")] = None,
    ssh_addr: Annotated[str | None, typer.Option(
        help="SSH gateway address [env DEV8_SSH_ADDR, default 127.0.0.1:2222]")] = None,
    replica_id: Annotated[str | None, typer.Option(
        help="This server's name among several sharing one PostgreSQL database [env DEV8_REPLICA_ID, "
             "default: the host name and a random suffix]")] = None,
) -> None:
    """Run the dev8 server: REST API, SSH gateway and reconciler (SQLite + local Docker by default).

    Where environments run is DEV8_RUNTIME: docker (default; DEV8_RUNTIME_BASE_URL,
    _NETWORK, _PREBUILD_HOMES=overlay|copy, _BOOT_SLOTS), aci (Azure Container Instances: DEV8_RUNTIME_SUBSCRIPTION_ID,
    _RESOURCE_GROUP, _LOCATION, _STORAGE_ACCOUNT, optional _NETWORK=private with _SUBNET_ID,
    _DNS_LABEL=false (the IP as endpoint, not the FQDN), _DNS_LABEL_SCOPE, _DNS_TIMEOUT,
    _REGISTRY_SERVER with _REGISTRY_USERNAME/_PASSWORD or _REGISTRY_IDENTITY,
    _SHARE_QUOTA_GB, _SAVE_EVERY; Azure credentials from azure-identity: AZURE_* variables,
    managed identity or `az login`), kubernetes (a pod and a claim per environment:
    DEV8_RUNTIME_NAMESPACE, _KUBECONFIG, _CONTEXT, _STORAGE_CLASS, _STORAGE_SIZE,
    _IMAGE_PULL_SECRETS, _NODE_SELECTOR, _TOLERATIONS, _ALLOW_PRIVILEGE_ESCALATION; in a
    cluster its service account, else a kubeconfig) or fake (tests). Several servers may
    share one PostgreSQL database (DEV8_DATABASE_URL) and one keyring behind a load
    balancer; a SQLite database serves one. Where the key that
    encrypts secrets lives is DEV8_KEYRING_PROVIDER: local (keyring.json in the data dir,
    default) or azure-keyvault (DEV8_KEYVAULT_URL, DEV8_KEYVAULT_KEY). Every setting: the
    README's table."""
    from dev8.server.main import StartupError, run
    settings = load_settings(data_dir=data_dir, database_url=database_url, http_addr=http_addr, ssh_addr=ssh_addr,
                             replica_id=replica_id)
    try:
        run(settings)
    except StartupError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot start: {exc}")


CLI_ACTOR = "dev8 admin (server host)"  # the audit log's actor for the commands below


@admin_app.command("create-user")
def create_user(
    email: str, admin: Annotated[bool, typer.Option("--admin", help="Make the user an administrator")] = False,
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from stdin")] = False,
    data_dir: DataDir = None, database_url: DbUrl = None,
) -> None:
    """Create a user. Without a TTY and without --password-stdin the user logs in with tokens only."""
    from dev8.core import audit, auth
    from dev8.core.errors import Dev8Error
    password = None
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    elif sys.stdin.isatty():
        password = getpass.getpass("Password (empty for token-only): ") or None
    if password is not None:
        try:
            auth.check_password(password)  # before the store is opened
        except Dev8Error as exc:
            fail(str(exc))
    db, _ = open_data(data_dir, database_url)
    try:
        with db.session() as s:
            user = auth.create_user(s, email=email, password=password, is_admin=admin)
            audit.record(s, None, "admin.user.create", user.email, "admin" if admin else "", actor_label=CLI_ACTOR)
            out.print(f"created user {user.email} ({user.username}){' [admin]' if admin else ''}")
    except Dev8Error as exc:
        fail(str(exc))


@admin_app.command("set-password")
def set_password(
    email: str,
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from stdin")] = False,
    data_dir: DataDir = None, database_url: DbUrl = None,
) -> None:
    """Set (or reset) a user's password for the browser login."""
    from dev8.core import audit, auth
    from dev8.core.errors import Dev8Error
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    elif sys.stdin.isatty():
        password = getpass.getpass("New password: ")
    else:
        fail("no TTY: pass --password-stdin")
    db, _ = open_data(data_dir, database_url)
    try:
        with db.session() as s:
            auth.set_password(s, auth.get_user_by_email(s, email), password)
            audit.record(s, None, "admin.user.set_password", email.strip().lower(), actor_label=CLI_ACTOR)
    except Dev8Error as exc:
        fail(str(exc))
    out.print(f"password set for {email}")


@admin_app.command("set-quota")
def set_quota(
    email: str,
    running: Annotated[str | None, typer.Option(help="Environments running at once (0: no cap; default: the "
                                                        "server's DEV8_QUOTA_RUNNING)")] = None,
    environments: Annotated[str | None, typer.Option(help="Environments in all (0: no cap; default)")] = None,
    cpus: Annotated[str | None, typer.Option(help="CPUs of the running ones together (0: no cap; default)")] = None,
    memory: Annotated[str | None, typer.Option(help="Memory of the running ones together, e.g. 64g "
                                                       "(0: no cap; default)")] = None,
    data_dir: DataDir = None, database_url: DbUrl = None,
) -> None:
    """Set a user's own caps; the ones not given stay as they are."""
    from dev8.core import admin, auth
    from dev8.core.errors import Dev8Error
    from dev8.core.quotas import describe
    given = {k: v for k, v in (("running", running), ("environments", environments), ("cpus", cpus),
                               ("memory", memory)) if v is not None}
    if not given:
        fail("give at least one of --running, --environments, --cpus, --memory (a number, or default)")
    try:
        caps: dict[str, object] = {}
        for k, v in given.items():
            caps[k] = None if v == "default" else (v if k == "memory" else (float(v) if k == "cpus" else int(v)))
    except ValueError:
        fail(f"--{k} must be a number or default (got {given[k]!r})")
    from dev8.core.quotas import default_quota
    settings = load_settings(data_dir=data_dir, database_url=database_url)
    db, _ = open_data(data_dir, database_url)
    default = default_quota(settings)
    try:
        with db.session() as s:
            now = admin.set_quota(s, None, auth.get_user_by_email(s, email), caps, default, actor_label=CLI_ACTOR)
            s.commit()
    except Dev8Error as exc:
        fail(str(exc))
    out.print(f"{email}: {describe(now)}")


@admin_app.command("create-token")
def create_token(
    email: str, name: Annotated[str, typer.Option(help="A name to recognise the token by")] = "cli",
    expires: Annotated[str | None, typer.Option(help="Lifetime, e.g. 12h, 30d (default: no expiry)")] = None,
    data_dir: DataDir = None, database_url: DbUrl = None,
) -> None:
    """Create an API token for a user and print only the token."""
    from dev8.core import audit, auth
    from dev8.core.errors import Dev8Error
    db, _ = open_data(data_dir, database_url)
    try:
        lifetime = auth.parse_duration(expires) if expires else None
        with db.session() as s:
            token = auth.create_token(s, auth.get_user_by_email(s, email), name=name, expires_in=lifetime)
            audit.record(s, None, "admin.token.create", email.strip().lower(), name, actor_label=CLI_ACTOR)
    except Dev8Error as exc:
        fail(str(exc))
    print(token)


@admin_app.command("rotate-keys")
def rotate_keys(
    rewrap_only: Annotated[bool, typer.Option(
        "--rewrap-only", help="Make no new key: take up the vault's newest version (rotated there) and "
                              "rewrap every data key under it")] = False,
    data_dir: DataDir = None, database_url: DbUrl = None,
) -> None:
    """Make a new key-encryption key active (a new key version with Azure Key Vault) and
    rewrap every data key with it, while the server runs; no environment is restarted.
    Old keys stay usable until `dev8 admin keyring status` shows nothing refers to them."""
    from dev8.core.crypto import DecryptionError, KeyringError, KeyServiceUnavailable
    from dev8.core.secrets import rotate_keys as rotate
    db, keyring = open_data(data_dir, database_url)
    try:
        count = rotate(db, keyring, new_key=not rewrap_only)
    except (KeyringError, KeyServiceUnavailable) as exc:
        fail(str(exc))
    except DecryptionError as exc:
        fail(f"a stored value cannot be rewrapped ({exc}); the new key is saved and active, the rest is "
             "unchanged: restore the key that value was sealed with and run rotate-keys again")
    out.print(f"rewrapped {count} data key(s); active key is now {keyring.active}")


@admin_app.command("migrate-keyring")
def migrate_keyring(
    to: Annotated[str, typer.Option("--to", metavar="PROVIDER", help="local (keyring.json in the data dir) or "
                                    "azure-keyvault (DEV8_KEYVAULT_URL and DEV8_KEYVAULT_KEY)")],
    data_dir: DataDir = None, database_url: DbUrl = None,
) -> None:
    """Rewrap every data key with the other key provider, in one transaction (a failure
    leaves everything as it was). Then set DEV8_KEYRING_PROVIDER on every dev8 server and
    restart it; keep the old keyring until `dev8 admin keyring status` shows nothing needs it."""
    from dev8.core.crypto import DecryptionError, KeyProvider, KeyringError, KeyServiceUnavailable, LocalKeyring
    from dev8.core.secrets import migrate_keyring as migrate
    from dev8.store.opening import vault_of
    if to not in ("local", "azure-keyvault"):
        fail(f"--to is local or azure-keyvault, not {to!r}")
    settings = load_settings(data_dir=data_dir, database_url=database_url)
    db, keyring = open_data(data_dir, database_url)
    target: KeyProvider | None
    try:
        if to == "local":
            target = next((p for p in keyring.providers if p.name == "local"), None) \
                or LocalKeyring.load_or_create(settings.data_dir)
        else:
            target = vault_of(settings)
            if target is None:
                fail("set DEV8_KEYVAULT_URL (and DEV8_KEYVAULT_KEY, default dev8-kek) to the vault to move to")
            if target.ensure_key():  # type: ignore[attr-defined]
                out.print(f"created the key in {target.describe()}")
        count = migrate(db, keyring, target)
    except (KeyringError, KeyServiceUnavailable, DecryptionError) as exc:
        fail(f"nothing was changed: {exc}")
    out.print(f"rewrapped {count} data key(s) with {target.describe()}; now set DEV8_KEYRING_PROVIDER={to} on "
              "every dev8 server and restart it (until then a server opens both, if it has DEV8_KEYVAULT_URL)")


keyring_app = typer.Typer(help="Where the key-encryption keys are and which of them values still need.",
                          no_args_is_help=True)
admin_app.add_typer(keyring_app, name="keyring")


@keyring_app.command("status")
def keyring_status(data_dir: DataDir = None, database_url: DbUrl = None) -> None:
    """The key provider in use, its active key, and every key (version) stored values are
    sealed with, with how many; with Azure Key Vault also the key's versions nothing needs."""
    from dev8.core.crypto import KeyServiceUnavailable
    from dev8.core.secrets import sealed_key_ids
    db, keyring = open_data(data_dir, database_url)
    with db.session() as s:
        used = sealed_key_ids(s)
    out.print(f"provider: {keyring.provider.name} ({keyring.provider.describe()})")
    try:
        active: str | None = keyring.active
    except KeyServiceUnavailable as exc:
        active = None
        out.print(f"active key: unknown ({exc})")
    else:
        out.print(f"active key: {active}")
    if not used:
        out.print("no encrypted values are stored yet")
    for kid, count in sorted(used.items(), key=lambda item: item[0] != active):
        try:
            where = keyring.provider_for(kid).name
        except Exception:  # noqa: BLE001 — the message below says it
            where = "no provider this server has"
        mark = "active" if kid == active else "still needed"
        out.print(f"  {kid}  {count} value(s)  [{where}, {mark}]", markup=False)
    for p in keyring.providers:
        versions = getattr(p, "versions", None)
        if versions is None:
            continue
        try:
            unused = [v for v in versions() if v.key_id not in used]
        except KeyServiceUnavailable as exc:
            out.print(f"the vault's versions cannot be listed: {exc}")
            continue
        for v in unused:
            state = "enabled" if v.enabled else "disabled"
            out.print(f"  {v.key_id}  no values  [{p.name}, {state}; not needed]", markup=False)


@admin_app.command("replicas")
def replicas(data_dir: DataDir = None, database_url: DbUrl = None) -> None:
    """The dev8 servers serving this database now (their heartbeat is recent), oldest first
    (it runs the periodic pass), each with the environments it is working on at this moment
    (an environment at rest is held by none)."""
    from dev8.core.leases import live_replicas
    from dev8.store.serverlock import sqlite_server_pid
    db, _ = open_data(data_dir, database_url)
    if db.engine.dialect.name == "sqlite":  # one server at most: the one holding the file's lock
        live = live_replicas(db, alone_alive=True) if sqlite_server_pid(db.url) is not None else []
    else:
        live = live_replicas(db)
    if not live:
        out.print("no server is running on this database")
    for i, (row, held) in enumerate(live):
        work = ", ".join(held) if held else "no environment right now"
        role = "  (runs the periodic pass)" if i == 0 else ""
        out.print(f"{row.id}{role}  http {row.http_addr or '?'}  pid {row.pid} on {row.host}  since "
                  f"{row.started_at:%Y-%m-%d %H:%M:%S} UTC  working on: {work}", markup=False)


@admin_app.command("backup")
def backup(
    target: Annotated[Path, typer.Argument(help="The backup file to write, e.g. dev8-$(date +%F).tar.gz")],
    data_dir: DataDir = None, database_url: DbUrl = None,
) -> None:
    """Back up the database (a consistent copy, also while the server runs), the keyring
    and the gateway's host key into one file (0600). It holds the keys to every secret:
    keep it as safe as the server itself."""
    from dev8.store.backup import BackupError, write_backup
    db, _ = open_data(data_dir, database_url)
    settings = load_settings(data_dir=data_dir, database_url=database_url)
    try:
        manifest = write_backup(db, settings.data_dir, target)
    except (BackupError, OSError) as exc:
        fail(f"backup failed: {exc}")
    rows = sum(manifest["rows"].values())
    out.print(f"wrote {target}: {rows} rows of {len(manifest['rows'])} tables ({manifest['database']}, "
              f"schema {manifest['revision']}), {', '.join(manifest['files']) or 'no files'}")
    if manifest.get("vault_keys"):
        out.print(vault_note(manifest["vault_keys"]), markup=False)


def vault_note(kids: list[str]) -> str:
    """What a backup with values sealed in Azure Key Vault needs to be restored."""
    return (f"its secrets are wrapped by Azure Key Vault and in it only wrapped: without access to that vault "
            f"this backup cannot be restored. Keep the vault, the key and these {len(kids)} version(s) (do not "
            f"purge them) and the Azure identity that may unwrap with them: {', '.join(kids)}")


@admin_app.command("restore")
def restore(
    source: Annotated[Path, typer.Argument(help="A file written by `dev8 admin backup`")],
    replace: Annotated[bool, typer.Option("--replace", help="Drop whatever the target database holds first")] = False,
    data_dir: DataDir = None, database_url: DbUrl = None,
) -> None:
    """Restore a backup into the data dir and database (SQLite or PostgreSQL, either way
    round). Stop every dev8 server on that database first."""
    from dev8.store.backup import BackupError, restore_backup
    from dev8.store.db import Database
    settings = load_settings(data_dir=data_dir, database_url=database_url)
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    db = Database(settings.db_url)
    try:
        manifest = restore_backup(db, settings.data_dir, source, replace=replace)
    except BackupError as exc:
        fail(str(exc))
    except Exception as exc:  # noqa: BLE001 - a half-loaded database must be said plainly
        fail(f"restore failed part way ({exc.__class__.__name__}: {str(exc)[:300]}); the target database is "
             "incomplete: run the restore again with --replace")
    finally:
        db.dispose()
    out.print(f"restored {sum(manifest['rows'].values())} rows from {manifest['created_at']} "
              f"({manifest['database']} → {db.engine.dialect.name}) and {', '.join(manifest['files']) or 'no files'}"
              f" into {settings.data_dir}")
    if manifest.get("vault_keys"):
        out.print(f"set DEV8_KEYRING_PROVIDER=azure-keyvault with DEV8_KEYVAULT_URL and DEV8_KEYVAULT_KEY naming "
                  f"the vault and key of: {', '.join(manifest['vault_keys'])}", markup=False)
