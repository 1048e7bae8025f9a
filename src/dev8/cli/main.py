"""dev8 command line. Server-side admin commands work on the data dir directly;
everything else talks to a dev8 server through its REST API (`dev8 login` first)."""
from __future__ import annotations

import functools
import getpass
import json
import math
import os
import sys
from pathlib import Path
from typing import Annotated, NoReturn, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from dev8.cli import sshconfig
from dev8.cli.client import ApiError, Client
from dev8.cli.config import ClientConfig, known_hosts_path
from dev8.durations import human, human_size, parse_duration

app = typer.Typer(help="dev8: cloud development environments you host yourself.", no_args_is_help=True,
                  context_settings={"help_option_names": ["-h", "--help"]})
admin_app = typer.Typer(help="Server-side administration (works on the data dir / database directly).",
                        no_args_is_help=True)
keys_app = typer.Typer(help="Manage the SSH public keys that may log in through the gateway.", no_args_is_help=True)
secrets_app = typer.Typer(help="Manage secrets (write-only: values are never shown back).", no_args_is_help=True)
image_app = typer.Typer(help="Environment images.", no_args_is_help=True)
env_app = typer.Typer(help="Operations on a running environment.", no_args_is_help=True)
templates_app = typer.Typer(help="Templates: an admin's starting points for environments (dev8 create NAME "
                                 "--template T).", no_args_is_help=True)
dotfiles_app = typer.Typer(help="Your dotfiles repository, installed into each new environment: cloned into "
                                "~/.dotfiles with the environment's git logins, then its install script run "
                                "(install.sh, bootstrap.sh, setup.sh, …), else its dotfiles linked into the home.",
                           no_args_is_help=True)
app.add_typer(admin_app, name="admin")
app.add_typer(keys_app, name="keys")
app.add_typer(secrets_app, name="secrets")
app.add_typer(image_app, name="image")
app.add_typer(env_app, name="env")
app.add_typer(dotfiles_app, name="dotfiles")
app.add_typer(templates_app, name="templates")

# Piped output is not cut at 80 columns: URLs and commands must survive a pipe whole.
out = Console() if sys.stdout.isatty() else Console(width=200)
err = Console(stderr=True)

DataDir = Annotated[Optional[Path], typer.Option("--data-dir", help="Data dir [env DEV8_DATA_DIR]")]
DbUrl = Annotated[Optional[str], typer.Option("--database-url", help="SQLAlchemy URL [env DEV8_DATABASE_URL]")]


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[red]error:[/red] {message}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(code)


def _settings(**overrides: object):  # type: ignore[no-untyped-def]
    from pydantic import ValidationError

    from dev8.settings import Settings
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        fail("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()), 2)


@functools.cache
def api() -> Client:
    """The logged-in API client (one per command: each costs a connection set-up)."""
    cfg = ClientConfig.load()
    if cfg is None:
        fail("not logged in: run `dev8 login URL --token TOKEN`")
    return Client(cfg.url, cfg.token)


def call(fn, *args, **kw):  # type: ignore[no-untyped-def]
    try:
        return fn(*args, **kw)
    except ApiError as exc:
        fail(exc.detail)


# --- server and admin --------------------------------------------------------------------

@app.command()
def server(
    data_dir: DataDir = None, database_url: DbUrl = None,
    http_addr: Annotated[Optional[str], typer.Option(help="HTTP listen address [env DEV8_HTTP_ADDR, default 127.0.0.1:7080]")] = None,
    ssh_addr: Annotated[Optional[str], typer.Option(help="SSH gateway address [env DEV8_SSH_ADDR, default 127.0.0.1:2222]")] = None,
) -> None:
    """Run the dev8 server: REST API, SSH gateway and reconciler (SQLite + local Docker by default)."""
    from dev8.server.main import StartupError, run
    settings = _settings(data_dir=data_dir, database_url=database_url, http_addr=http_addr, ssh_addr=ssh_addr)
    try:
        run(settings)
    except StartupError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot start: {exc}")


def _store(data_dir: Path | None, database_url: str | None):  # type: ignore[no-untyped-def]
    from dev8.server.main import StartupError, open_store
    try:
        return open_store(_settings(data_dir=data_dir, database_url=database_url))
    except StartupError as exc:
        fail(str(exc))


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
    db, _ = _store(data_dir, database_url)
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
    db, _ = _store(data_dir, database_url)
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
    running: Annotated[Optional[str], typer.Option(help="Environments running at once (0: no cap; default: the "
                                                        "server's DEV8_QUOTA_RUNNING)")] = None,
    environments: Annotated[Optional[str], typer.Option(help="Environments in all (0: no cap; default)")] = None,
    cpus: Annotated[Optional[str], typer.Option(help="CPUs of the running ones together (0: no cap; default)")] = None,
    memory: Annotated[Optional[str], typer.Option(help="Memory of the running ones together, e.g. 64g "
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
    settings = _settings(data_dir=data_dir, database_url=database_url)
    db, _ = _store(data_dir, database_url)
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
    expires: Annotated[Optional[str], typer.Option(help="Lifetime, e.g. 12h, 30d (default: no expiry)")] = None,
    data_dir: DataDir = None, database_url: DbUrl = None,
) -> None:
    """Create an API token for a user and print only the token."""
    from dev8.core import audit, auth
    from dev8.core.errors import Dev8Error
    db, _ = _store(data_dir, database_url)
    try:
        lifetime = auth.parse_duration(expires) if expires else None
        with db.session() as s:
            token = auth.create_token(s, auth.get_user_by_email(s, email), name=name, expires_in=lifetime)
            audit.record(s, None, "admin.token.create", email.strip().lower(), name, actor_label=CLI_ACTOR)
    except Dev8Error as exc:
        fail(str(exc))
    print(token)


@admin_app.command("rotate-keys")
def rotate_keys(data_dir: DataDir = None, database_url: DbUrl = None) -> None:
    """Add a new key-encryption key and rewrap every secret's data key with it."""
    from dev8.core.secrets import rotate_keys as rotate
    db, keyring = _store(data_dir, database_url)
    if keyring.path is None:
        fail("the keyring comes from $DEV8_KEYRING: rotate by adding a key to that variable's JSON on every replica")
    from dev8.core.crypto import DecryptionError
    try:
        count = rotate(db, keyring)
    except DecryptionError as exc:
        fail(f"a stored value cannot be rewrapped ({exc}); the new key is saved and active, the rest is "
             "unchanged: restore the keyring that value was sealed with and run rotate-keys again")
    out.print(f"rewrapped {count} data key(s); active key is now {keyring.active}")


@admin_app.command("backup")
def backup(
    target: Annotated[Path, typer.Argument(help="The backup file to write, e.g. dev8-$(date +%F).tar.gz")],
    data_dir: DataDir = None, database_url: DbUrl = None,
) -> None:
    """Back up the database (a consistent copy, also while the server runs), the keyring
    and the gateway's host key into one file (0600). It holds the keys to every secret:
    keep it as safe as the server itself."""
    from dev8.store.backup import BackupError, write_backup
    db, _ = _store(data_dir, database_url)
    settings = _settings(data_dir=data_dir, database_url=database_url)
    try:
        manifest = write_backup(db, settings.data_dir, target)
    except (BackupError, OSError) as exc:
        fail(f"backup failed: {exc}")
    rows = sum(manifest["rows"].values())
    out.print(f"wrote {target}: {rows} rows of {len(manifest['rows'])} tables ({manifest['database']}, "
              f"schema {manifest['revision']}), {', '.join(manifest['files']) or 'no files'}")


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
    settings = _settings(data_dir=data_dir, database_url=database_url)
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


# --- login, keys, secrets ---------------------------------------------------------------------

@app.command()
def login(url: str, token: Annotated[Optional[str], typer.Option(help="API token (or DEV8_TOKEN, or prompt)")] = None) -> None:
    """Log in to a dev8 server with an API token; saved with 0600 permissions."""
    token = token or os.environ.get("DEV8_TOKEN") or getpass.getpass("API token: ")
    client = Client(url, token.strip())
    me = call(client.get, "/me")
    info = call(client.get, "/ssh-info")
    path = ClientConfig(url=url.rstrip("/"), token=token.strip()).save()
    _write_known_hosts(info)
    out.print(f"logged in to {url} as {me['email']} (saved in {path})")


def _write_known_hosts(info: dict) -> None:
    host = info["host"] if info["port"] == 22 else f"[{info['host']}]:{info['port']}"
    path = known_hosts_path()
    path.write_text(f"{host} {info['host_key']}\n")


@keys_app.command("add")
def keys_add(path: Path, name: Annotated[Optional[str], typer.Option(help="Label (default: key comment)")] = None) -> None:
    """Register an SSH public key (e.g. ~/.ssh/id_ed25519.pub; '-' reads stdin)."""
    text = _stdin_text("the public key") if str(path) == "-" else _read_small(path)
    key = call(api().post, "/keys", json={"public_key": text, "name": name})
    out.print(f"added key {key['name']} SHA256:{key['fingerprint']}")


def _stdin_text(what: str) -> str:
    data = sys.stdin.buffer.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        fail(f"{what} on stdin is not UTF-8 text")


def _secret_name(name: str) -> str:
    from dev8.names import check_secret_name
    try:
        check_secret_name(name)
    except ValueError as exc:
        fail(str(exc))
    return name


def _read_small(path: Path, what: str = "a public key", limit: int = 16384) -> str:
    try:
        if path.stat().st_size > limit:
            fail(f"{path} is too large to be {what}")
        return path.read_text()
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}")
    except UnicodeDecodeError:
        fail(f"{path} is not {what} (not text)")


@keys_app.command("list")
def keys_list() -> None:
    """List registered SSH keys."""
    table = Table("ID", "NAME", "FINGERPRINT", "ADDED")
    for k in call(api().get, "/keys"):
        table.add_row(str(k["id"]), k["name"], "SHA256:" + k["fingerprint"], k["created_at"][:19])
    out.print(table)


@keys_app.command("remove")
def keys_remove(key_id: int) -> None:
    """Remove an SSH key by its ID (see `dev8 keys list`)."""
    call(api().request, "DELETE", f"/keys/{key_id}")
    out.print(f"removed key {key_id}")


@secrets_app.command("set")
def secrets_set(name: str) -> None:
    """Set a secret. The value comes from stdin (or a hidden prompt), never from the command line."""
    _secret_name(name)
    value = getpass.getpass(f"Value for {name}: ") if sys.stdin.isatty() else _stdin_text(f"the value of {name}")
    value = value.rstrip("\n")
    call(api().request, "PUT", f"/secrets/{name}", json={"value": value})
    out.print(f"secret {name} saved")


@secrets_app.command("list")
def secrets_list() -> None:
    """List secret names and dates."""
    table = Table("NAME", "CREATED", "UPDATED")
    for s in call(api().get, "/secrets"):
        table.add_row(s["name"], s["created_at"][:19], s["updated_at"][:19])
    out.print(table)


@secrets_app.command("delete")
def secrets_delete(name: str) -> None:
    """Delete a secret."""
    call(api().request, "DELETE", f"/secrets/{_secret_name(name)}")
    out.print(f"secret {name} deleted")


# --- environments ----------------------------------------------------------------------------

def _follow(client: Client, name: str, until: set[str], after: int = 0) -> None:
    """Print lifecycle events until one of ``until`` steps succeeds; exit 1 on an error event."""
    try:
        for ev in client.events(name, after):
            if ev["kind"] == "deleted":
                if "deleted" in until:
                    out.print(f"{name}: deleted")
                    return
                fail(f"{name} was deleted")
            step, status, msg = ev["step"], ev["status"], ev.get("message", "")
            if status == "error":
                fail(f"{name}: step '{step}' failed: {msg}")
            if status == "running":
                out.print(f"[dim]…[/dim] {step}", highlight=False)
            elif status == "progress":
                out.print(f"  [dim]{msg}[/dim]", highlight=False)
            elif status == "warning":
                out.print(f"[yellow]![/yellow] {step}: {msg}", highlight=False)
            elif status == "ok" and step == "request":
                out.print(f"[dim]{msg}[/dim]", highlight=False)
            elif status == "ok":
                out.print(f"[green]✓[/green] {step}{f' ({msg})' if msg else ''}", highlight=False)
            if status == "ok" and step in until:
                return
    except ApiError as exc:
        fail(exc.detail)


def _last_event_id(client: Client, name: str) -> int:
    events = call(client.get, f"/environments/{name}/events", params={"follow": "false", "after": 0})
    return events[-1]["id"] if events else 0


@app.command()
def create(
    name: str,
    image: Annotated[Optional[str], typer.Option(
        help="Image (default: the server's DEV8_DEFAULT_IMAGE, dev8/fullstack:latest unless its admin changed it)")] = None,
    cpus: Annotated[Optional[float], typer.Option(help="CPU limit, e.g. 2")] = None,
    memory: Annotated[Optional[str], typer.Option(help="Memory limit, e.g. 4g")] = None,
    secret: Annotated[Optional[list[str]], typer.Option("--secret", help="Secret to provide (repeatable)")] = None,
    repo: Annotated[Optional[str], typer.Option(help="Repository to clone into ~/workspace on first start")] = None,
    branch: Annotated[Optional[str], typer.Option(help="Branch to clone")] = None,
    git: Annotated[Optional[list[str]], typer.Option(
        "--git", help="Git login KIND[@HOST[:PORT]][=SECRET[,USERNAME]], KIND github|gitlab|bitbucket; "
        "default secret GITHUB_TOKEN/GITLAB_TOKEN/BITBUCKET_TOKEN (repeatable)")] = None,
    anthropic_key: Annotated[Optional[str], typer.Option(help="Secret holding ANTHROPIC_API_KEY (claude)")] = None,
    gemini_key: Annotated[Optional[str], typer.Option(help="Secret holding GEMINI_API_KEY (gemini)")] = None,
    copilot_token: Annotated[Optional[str], typer.Option(help="Secret holding a GitHub token for Copilot")] = None,
    extension: Annotated[Optional[list[str]], typer.Option(
        "--extension", help="VS Code extension to install at start: publisher.name or a .vsix path (repeatable)")] = None,
    template: Annotated[Optional[str], typer.Option(
        help="Start from this template (dev8 templates list): its values are the defaults, and the ones it "
             "locks cannot be given")] = None,
    env_var: Annotated[Optional[list[str]], typer.Option(
        "--env", help="Environment variable NAME=VALUE in every shell and VS Code, not secret (repeatable)")] = None,
    idle_timeout: Annotated[Optional[str], typer.Option(
        help="Stop it after this long without use (SSH, terminal, VS Code, previews), e.g. 30m or 2h; "
             "0 never; default: the server's (DEV8_IDLE_TIMEOUT)")] = None,
    wait: Annotated[bool, typer.Option(help="Follow progress until ready")] = True,
) -> None:
    """Create an environment and show its progress until it is ready."""
    if cpus is not None and not math.isfinite(cpus):
        fail(f"--cpus must be a number of CPUs, e.g. 2 (got {cpus})")
    try:
        idle_seconds = None if idle_timeout is None else parse_duration(idle_timeout)
    except ValueError as exc:
        fail(f"--idle-timeout: {exc}")
    variables = {}
    for item in env_var or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"--env {item!r}: expected NAME=VALUE")
        variables[key] = value
    client = api()
    try:
        providers = [parse_git_option(g) for g in git or []]
    except ValueError as exc:
        fail(str(exc))
    ai = {k: v for k, v in (("anthropic", anthropic_key), ("gemini", gemini_key), ("copilot", copilot_token)) if v}
    body = {"name": name, "image": image, "cpus": cpus, "memory": memory, "secrets": secret or [],
            "repo": repo, "branch": branch, "git": providers, "ai": ai, "extensions": extension or [],
            "idle_timeout": idle_seconds, "env": variables, "template": template}
    env = call(client.post, "/environments", json=body)
    out.print(f"creating {env['name']} ({env['image']})")
    if wait:
        _follow(client, name, {"ready"})
        out.print(f"[bold]{name} is ready[/bold]: dev8 ssh {name}   (or: {env['ssh_command']})", highlight=False)


def parse_git_option(text: str) -> dict:
    """``KIND[@HOST[:PORT]][=SECRET[,USERNAME]]`` to a provider dict (the server validates values)."""
    head, _, rest = text.partition("=")
    kind, _, host = head.partition("@")
    secret, _, username = rest.partition(",")
    if not kind:
        raise ValueError(f"invalid --git {text!r}: expected KIND[@HOST[:PORT]][=SECRET[,USERNAME]]")
    return {"kind": kind, "host": host or None, "secret": secret or None, "username": username or None}


def _action(name: str, action: str, until: set[str], **params: object) -> None:
    client = api()
    after = _last_event_id(client, name)
    if action == "delete":
        call(client.request, "DELETE", f"/environments/{name}", params=params)
    else:
        call(client.post, f"/environments/{name}/{action}", params=params)
    _follow(client, name, until, after)


@app.command()
def start(name: str, empty_home: Annotated[bool, typer.Option(
        "--empty-home", help="Its home volume is gone (dev8 says so): start with an empty home")] = False) -> None:
    """Start a stopped environment and wait until it is ready."""
    _action(name, "start", {"ready"}, **({"empty_home": "true"} if empty_home else {}))


@app.command()
def stop(name: str) -> None:
    """Stop an environment (its volume and files stay)."""
    _action(name, "stop", {"stopped"})


@app.command()
def restart(name: str) -> None:
    """Restart an environment's container and wait until it is ready."""
    _action(name, "restart", {"ready"})


@app.command()
def delete(name: str, keep_volume: Annotated[bool, typer.Option("--keep-volume", help="Keep the home volume")] = False) -> None:
    """Delete an environment (and its volume, unless --keep-volume)."""
    _action(name, "delete", {"deleted"}, keep_volume=str(keep_volume).lower())


@app.command()
def edit(
    name: str,
    image: Annotated[Optional[str], typer.Option(help="Another image (from the next start)")] = None,
    cpus: Annotated[Optional[float], typer.Option(help="CPU limit, e.g. 2 (from the next start)")] = None,
    memory: Annotated[Optional[str], typer.Option(help="Memory limit, e.g. 4g (from the next start)")] = None,
    idle_timeout: Annotated[Optional[str], typer.Option(
        help="Stop it after this long without use, e.g. 30m; 0 never; 'default' for the server's")] = None,
) -> None:
    """Change an environment's image, CPUs or memory while it is stopped or in error (one in
    error is retried on them at once, and this waits until it is ready), or its idle timeout
    any time. Its home is kept."""
    if cpus is not None and not math.isfinite(cpus):
        fail(f"--cpus must be a number of CPUs, e.g. 2 (got {cpus})")
    body: dict[str, object] = {k: v for k, v in (("image", image), ("cpus", cpus), ("memory", memory)) if v is not None}
    if idle_timeout is not None:
        try:
            body["idle_timeout"] = None if idle_timeout == "default" else parse_duration(idle_timeout)
        except ValueError as exc:
            fail(f"--idle-timeout: {exc}")
    if not body:
        fail("nothing to change: give --image, --cpus, --memory or --idle-timeout")
    client = api()
    after = _last_event_id(client, name)
    env = call(client.request, "PATCH", f"/environments/{name}", json=body)
    out.print(f"{name}: image {env['image']}, {env['cpus']:g} CPUs, memory {env['memory']}, idle stop "
              f"{_idle_text(env['idle_timeout'])}", highlight=False)
    if env["desired_state"] == "running" and env["state"] != "running":
        _follow(client, name, {"ready"}, after)


@env_app.command("reconfigure")
def env_reconfigure(name: str) -> None:
    """Push configuration and current secret values into a running environment (no restart)."""
    _action(name, "reconfigure", {"ready"})


@templates_app.command("list")
def templates_list() -> None:
    """The templates you can create from."""
    table = Table("NAME", "DESCRIPTION", "IMAGE", "USERS MAY CHANGE")
    for t in call(api().get, "/templates"):
        table.add_row(t["name"], t["description"], t["image"] or "(server default)", ", ".join(t["editable"]) or "-")
    out.print(table)


@templates_app.command("show")
def templates_show(name: str) -> None:
    """A template's values, as JSON (the form `dev8 templates set` reads)."""
    t = call(api().get, f"/templates/{name}")
    out.print_json(json.dumps({k: v for k, v in t.items() if k != "name" and v not in (None, [], {})}))


@templates_app.command("set")
def templates_set(name: str, file: Annotated[Path, typer.Argument(
        help="JSON: description, image, cpus, memory, idle_timeout, repo, branch, git, extensions, env, editable "
             "(- for stdin)")]) -> None:
    """Create or replace a template (admins)."""
    text = sys.stdin.read() if str(file) == "-" else _read_small(file, "a template", limit=65536)
    try:
        body = json.loads(text)
    except ValueError as exc:
        fail(f"{file}: not JSON ({exc})")
    t = call(api().request, "PUT", f"/templates/{name}", json=body)
    out.print(f"template {t['name']} saved; users may change: {', '.join(t['editable']) or 'nothing it sets'}")


@templates_app.command("delete")
def templates_delete(name: str) -> None:
    """Delete a template (admins); environments created from it keep their values."""
    call(api().request, "DELETE", f"/templates/{name}")
    out.print(f"template {name} deleted")


@dotfiles_app.command("set")
def dotfiles_set(url: str, branch: Annotated[Optional[str], typer.Option(help="Branch to clone")] = None) -> None:
    """Use URL (https://host/owner/dotfiles.git) for environments created from now on."""
    d = call(api().request, "PUT", "/dotfiles", json={"url": url, "branch": branch})
    out.print(f"dotfiles: {d['url']}" + (f" ({d['branch']})" if d["branch"] else "")
              + "  (new environments; the git host needs a --git login in them unless it is public)", highlight=False)


@dotfiles_app.command("show")
def dotfiles_show() -> None:
    """Your dotfiles repository."""
    d = call(api().get, "/dotfiles")
    out.print(d["url"] + (f" ({d['branch']})" if d["branch"] else "") if d["url"] else "no dotfiles repository",
              highlight=False)


@dotfiles_app.command("clear")
def dotfiles_clear() -> None:
    """Stop installing dotfiles into new environments (existing homes keep theirs)."""
    call(api().request, "DELETE", "/dotfiles")
    out.print("no dotfiles repository")


@app.command()
def quota() -> None:
    """Your caps (set by the admin) and what you use of them."""
    q = call(api().get, "/quota")
    used = q["used"]
    rows = [("environments", f"{used['environments']} of {q['environments'] or 'any number'}"),
            ("running", f"{len(used['running'])} of {q['running'] or 'any number'}"
                        + (f"  ({', '.join(used['running'])})" if used["running"] else "")),
            ("cpus", f"{used['cpus']:g} of {q['cpus']:g}" if q["cpus"] else f"{used['cpus']:g} (no cap)"),
            ("memory", f"{used['memory']} of {q['memory']}" if q["memory"] not in ("", "0") else f"{used['memory']} (no cap)")]
    for k, v in rows:
        out.print(f"[bold]{k:>12}[/bold]  {v}", highlight=False)


@app.command("list")
def list_() -> None:
    """List your environments."""
    table = Table("NAME", "STATE", "IMAGE", "CREATED")
    for e in call(api().get, "/environments"):
        state = e["state"] + (f" ({e['stop_reason']})" if e.get("stop_reason") and e["state"] == "stopped" else "")
        table.add_row(e["name"], state, e["image"], e["created_at"][:19])
    out.print(table)


def _idle_text(seconds: int) -> str:
    return f"after {human(seconds)} without use" if seconds else "never"


@app.command()
def show(name: str) -> None:
    """Show an environment: state, image, times, SSH command."""
    e = call(api().get, f"/environments/{name}")
    why = e["status_message"] or (e["stop_reason"] if e["state"] == "stopped" else "")
    rows = [("name", e["name"]), ("state", e["state"] + (f" ({why})" if why else "")),
            ("desired", e["desired_state"]), ("image", e["image"]), ("cpus", str(e["cpus"])),
            ("memory", e["memory"]), ("secrets", ", ".join(e["secrets"]) or "-"),
            ("created", e["created_at"][:19]), ("started", (e["started_at"] or "-")[:19]),
            ("idle stop", _idle_text(e["idle_timeout"])),
            ("ssh", f"dev8 ssh {e['name']}  |  {e['ssh_command']}")]
    if e.get("repo"):
        rows.insert(6, ("repo", e["repo"]))
    if e.get("template"):
        rows.insert(4, ("template", e["template"]))
    if e.get("status_detail"):
        rows.insert(2, ("detail", e["status_detail"]))
    if e.get("env"):
        rows.append(("env", " ".join(f"{k}={v}" for k, v in e["env"].items())))
    if e["state"] == "running":
        h = call(api().get, f"/environments/{name}/health")
        rows.append(("services", ", ".join(f"{k} {v}" for k, v in h.get("services", {}).items())
                     or h.get("error", "-")))
        rows.append(("uses", stats_text(call(api().get, f"/environments/{name}/stats"))))
    for k, v in rows:
        out.print(f"[bold]{k:>8}[/bold]  {escape(v)}", highlight=False)


def stats_text(st: dict) -> str:
    """``dev8-env stats`` in one line: "up 2 h · CPU 3% · memory 512 MiB of 4 GiB · home 1.2 GiB (30 GiB free)"."""
    if st.get("error"):
        return st["error"]

    def known(key: str, show) -> str:  # type: ignore[no-untyped-def]
        return "unknown" if st.get(key) is None else show(st[key])
    memory = known("memory_bytes", human_size) + (f" of {human_size(st['memory_limit_bytes'])}"
                                                  if st.get("memory_limit_bytes") else "")
    return (f"up {known('uptime_seconds', human)} · CPU {known('cpu_percent', lambda p: f'{p:g}%')} · memory {memory}"
            f" · home {known('home_bytes', human_size)} ({known('disk_free_bytes', human_size)} free)")


def _ssh_argv(name: str, identity: Path | None, *options: str) -> list[str]:
    """An OpenSSH command line to environment ``name`` through the gateway (host key pinned)."""
    from dev8.names import ENV_NAME_RE
    if not ENV_NAME_RE.fullmatch(name):
        fail(f"invalid environment name {name!r}")
    info = call(api().get, "/ssh-info")
    _write_known_hosts(info)
    return ["ssh", "-p", str(info["port"]), "-o", f"UserKnownHostsFile={known_hosts_path()}",
            "-o", "StrictHostKeyChecking=yes",
            *(["-i", str(identity), "-o", "IdentitiesOnly=yes"] if identity else []),
            *options, "-l", name, info["host"]]


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def ssh(ctx: typer.Context, name: str,
        identity: Annotated[Optional[Path], typer.Option("--identity", "-i", help="Private key file (as ssh -i)")] = None,
        ) -> None:
    """Open a shell in an environment, or run `dev8 ssh NAME -- COMMAND…`."""
    argv = _ssh_argv(name, identity)
    extra = list(ctx.args)
    if extra and extra[0] == "--":
        extra = extra[1:]
    if extra:
        argv += ["--", *extra]
    elif sys.stdin.isatty():
        argv.insert(1, "-t")
    os.execvp("ssh", argv)


@app.command()
def ports(name: str) -> None:
    """List the TCP ports listening inside an environment, with their browser preview URLs."""
    client = api()
    result = call(client.get, f"/environments/{name}/ports")
    if result.get("error") or result["state"] != "running":
        fail(result.get("error") or f"{name} is {result['state']}")
    table = Table("PORT", "BOUND TO", "SHARED", "PREVIEW")
    for p in result["ports"]:
        table.add_row(str(p["port"]) + (f" ({p['label']})" if p.get("label") else ""), p["bind"], p["share"], p["url"])
    out.print(table)


@app.command()
def share(
    name: str, port: int,
    level: Annotated[str, typer.Argument(help="private (owner only), authenticated (any dev8 user) or public")],
) -> None:
    """Share a port's browser preview. Previews open on app subdomains (DEV8_WILDCARD_DOMAIN,
    or *.localhost for a dev8 on this machine); a server with neither opens none in a browser."""
    result = call(api().request, "PUT", f"/environments/{name}/ports/{port}/share", json={"level": level})
    out.print(f"port {port} of {name}: {result['share']}  {result['url']}")
    if not result["honoured"] and level != "private":
        err.print("note: this server has no app domain (DEV8_WILDCARD_DOMAIN), so browsers open no previews "
                  "until its admin sets one")


@app.command("open")
def open_(
    name: str,
    terminal: Annotated[bool, typer.Option("--terminal", help="the browser terminal instead of VS Code")] = False,
) -> None:
    """Print (and open, where a browser exists) the VS Code (or terminal) URL of an environment."""
    import webbrowser
    env = call(api().get, f"/environments/{name}")
    if not terminal and env.get("apps") is not None and "vscode" not in env["apps"]:
        fail(f"{name} runs {env['image']}, which has no VS Code: `dev8 open {name} --terminal`, `dev8 ssh {name}`, "
             f"or VS Code Desktop over Remote-SSH (`dev8 config-ssh`)")
    url = env["terminal_url" if terminal else "vscode_url"]
    print(url)
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or sys.platform == "darwin":
        webbrowser.open(url)


@app.command("port-forward")
def port_forward(
    name: str, spec: Annotated[str, typer.Argument(help="LOCAL:REMOTE, e.g. 3000:3000")],
    identity: Annotated[Optional[Path], typer.Option("--identity", "-i", help="Private key file (as ssh -i)")] = None,
) -> None:
    """Forward a local port to a port inside the environment, over the SSH gateway."""
    local, _, remote = spec.partition(":")
    if not (local.isdigit() and remote.isdigit() and 0 < int(local) < 65536 and 0 < int(remote) < 65536):
        fail(f"invalid port mapping {spec!r}: use LOCAL:REMOTE with ports 1-65535")
    argv = _ssh_argv(name, identity, "-N", "-o", "ExitOnForwardFailure=yes",
                     "-L", f"127.0.0.1:{int(local)}:127.0.0.1:{int(remote)}")
    err.print(f"forwarding 127.0.0.1:{local} → {name}:{remote} (Ctrl-C to stop)")
    os.execvp("ssh", argv)


@app.command("config-ssh")
def config_ssh(
    ssh_config: Annotated[Path, typer.Option(help="File to update")] = Path.home() / ".ssh" / "config",
) -> None:
    """Write `Host dev8.NAME` entries into ~/.ssh/config (a marked block, updated in place)."""
    client = api()
    info = call(client.get, "/ssh-info")
    _write_known_hosts(info)
    names = [e["name"] for e in call(client.get, "/environments")]
    try:
        block = sshconfig.build_block(names, host=info["host"], port=info["port"], known_hosts=str(known_hosts_path()))
    except ValueError as exc:
        fail(str(exc))
    ssh_config.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    existing = ssh_config.read_text() if ssh_config.exists() else ""
    ssh_config.write_text(sshconfig.replace_block(existing, block))
    os.chmod(ssh_config, 0o600)
    out.print(f"updated {ssh_config}: {len(names)} environment(s); connect with `ssh dev8.NAME`")


@image_app.command("build")
def image_build(target: Annotated[str, typer.Argument(help="Image target: base or fullstack")] = "base") -> None:
    """Build an environment image with the local Docker engine ahead of time."""
    import docker as docker_sdk

    from dev8.runtimes import docker_images as images
    try:
        client = docker_sdk.from_env()
        client.ping()
    except docker_sdk.errors.DockerException as exc:
        fail(f"Docker engine unreachable: {exc}")
    try:
        tag = images.build(client, target, lambda m: out.print(f"  {m}", highlight=False))
    except images.ImageBuildError as exc:
        fail(str(exc))
    out.print(f"built {tag}")


if __name__ == "__main__":
    app()
