"""Your account on a dev8 server: `login`, SSH `keys`, `secrets`, `dotfiles`, `quota`."""
from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from dev8.cli.client import Client
from dev8.cli.common import api, call, fail, out, read_small, stdin_text, write_known_hosts
from dev8.cli.config import ClientConfig

app = typer.Typer()
keys_app = typer.Typer(help="Manage the SSH public keys that may log in through the gateway.", no_args_is_help=True)
secrets_app = typer.Typer(help="Manage secrets (write-only: values are never shown back).", no_args_is_help=True)
dotfiles_app = typer.Typer(help="Your dotfiles repository, installed into each new environment: cloned into "
                                "~/.dotfiles with the environment's git logins, then its install script run "
                                "(install.sh, bootstrap.sh, setup.sh, …), else its dotfiles linked into the home.",
                           no_args_is_help=True)


@app.command()
def login(url: str,
          token: Annotated[str | None, typer.Option(help="API token (or DEV8_TOKEN, or prompt)")] = None) -> None:
    """Log in to a dev8 server with an API token; saved with 0600 permissions."""
    token = token or os.environ.get("DEV8_TOKEN") or getpass.getpass("API token: ")
    client = Client(url, token.strip())
    me = call(client.get, "/me")
    info = call(client.get, "/ssh-info")
    path = ClientConfig(url=url.rstrip("/"), token=token.strip()).save()
    write_known_hosts(info)
    out.print(f"logged in to {url} as {me['email']} (saved in {path})")


@keys_app.command("add")
def keys_add(path: Path, name: Annotated[str | None, typer.Option(help="Label (default: key comment)")] = None) -> None:
    """Register an SSH public key (e.g. ~/.ssh/id_ed25519.pub; '-' reads stdin)."""
    text = stdin_text("the public key") if str(path) == "-" else read_small(path)
    key = call(api().post, "/keys", json={"public_key": text, "name": name})
    out.print(f"added key {key['name']} SHA256:{key['fingerprint']}")


def secret_name(name: str) -> str:
    from dev8.names import check_secret_name
    try:
        check_secret_name(name)
    except ValueError as exc:
        fail(str(exc))
    return name


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
    secret_name(name)
    value = getpass.getpass(f"Value for {name}: ") if sys.stdin.isatty() else stdin_text(f"the value of {name}")
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
    call(api().request, "DELETE", f"/secrets/{secret_name(name)}")
    out.print(f"secret {name} deleted")


@dotfiles_app.command("set")
def dotfiles_set(url: str, branch: Annotated[str | None, typer.Option(help="Branch to clone")] = None) -> None:
    """Use URL (https://host/owner/dotfiles.git) for environments created from now on."""
    d = call(api().request, "PUT", "/dotfiles", json={"url": url, "branch": branch})
    out.print(f"dotfiles: {d['url']}" + (f" ({d['branch']})" if d["branch"] else "")
              + "  (environments created from now on; `dev8 dotfiles apply NAME` for an existing one; the git "
                "host needs a --git login in them unless it is public)", highlight=False)


@dotfiles_app.command("apply")
def dotfiles_apply(name: str) -> None:
    """Install your dotfiles repository into an existing environment (new environments get it
    when they are created): at once when it runs, else at its next start. A home that has
    ~/.dotfiles already keeps it."""
    from dev8.cli.environments import run_action
    env = call(api().get, f"/environments/{name}")
    if env["desired_state"] == "running":
        run_action(name, "dotfiles", {"ready"})
    else:
        call(api().post, f"/environments/{name}/dotfiles")
        out.print(f"{name} is {env['state']}: its dotfiles are installed at its next start", highlight=False)


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
            ("memory", f"{used['memory']} of {q['memory']}" if q["memory"] not in ("", "0")
                       else f"{used['memory']} (no cap)")]
    for k, v in rows:
        out.print(f"[bold]{k:>12}[/bold]  {v}", highlight=False)
