"""What every command group shares: the consoles, `fail`, the logged-in API client and
`call` around it, the server-side commands' settings and store, and small readers of
stdin and files."""
from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from dev8.cli.client import ApiError, Client
from dev8.cli.config import ClientConfig, known_hosts_path

if TYPE_CHECKING:
    from dev8.core.crypto import Keyring
    from dev8.settings import Settings
    from dev8.store.db import Database

# Piped output is not cut at 80 columns: URLs and commands must survive a pipe whole.
out = Console() if sys.stdout.isatty() else Console(width=200)
err = Console(stderr=True)

DataDir = Annotated[Path | None, typer.Option("--data-dir", help="Data dir [env DEV8_DATA_DIR]")]
DbUrl = Annotated[str | None, typer.Option("--database-url", help="SQLAlchemy URL [env DEV8_DATABASE_URL]")]


def fail(message: str, code: int = 1) -> NoReturn:
    # The message is text, not markup: names, URLs and usage such as HOST[/PREFIX] print as given.
    err.print(f"[red]error:[/red] {escape(message)}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(code)


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment with the options given on the command line over them."""
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


def call(fn: Callable[..., Any], *args: object, **kw: object) -> Any:
    """``fn(*args, **kw)``, an API error said as the command's error."""
    try:
        return fn(*args, **kw)
    except ApiError as exc:
        fail(exc.detail)


def open_data(data_dir: Path | None, database_url: str | None) -> tuple[Database, Keyring]:
    """The store and keyring of a server-side command (migrated, as the server opens them)."""
    from dev8.store.opening import StartupError, open_store
    try:
        return open_store(load_settings(data_dir=data_dir, database_url=database_url))
    except StartupError as exc:
        fail(str(exc))


def write_known_hosts(info: dict) -> None:
    host = info["host"] if info["port"] == 22 else f"[{info['host']}]:{info['port']}"
    path = known_hosts_path()
    path.write_text(f"{host} {info['host_key']}\n")


def stdin_text(what: str) -> str:
    data = sys.stdin.buffer.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        fail(f"{what} on stdin is not UTF-8 text")


def read_small(path: Path, what: str = "a public key", limit: int = 16384) -> str:
    try:
        if path.stat().st_size > limit:
            fail(f"{path} is too large to be {what}")
        return path.read_text()
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}")
    except UnicodeDecodeError:
        fail(f"{path} is not {what} (not text)")
