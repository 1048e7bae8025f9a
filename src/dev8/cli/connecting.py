"""Reaching an environment: `ssh`, `port-forward` and `config-ssh` through the gateway,
`ports` and `share` for previews, `open` for VS Code or the terminal in a browser."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from dev8.cli import sshconfig
from dev8.cli.common import api, call, err, fail, out, write_known_hosts
from dev8.cli.config import known_hosts_path

app = typer.Typer()


def _ssh_argv(name: str, identity: Path | None, *options: str) -> list[str]:
    """An OpenSSH command line to environment ``name`` through the gateway (host key pinned)."""
    from dev8.names import ENV_NAME_RE
    if not ENV_NAME_RE.fullmatch(name):
        fail(f"invalid environment name {name!r}")
    info = call(api().get, "/ssh-info")
    write_known_hosts(info)
    return ["ssh", "-p", str(info["port"]), "-o", f"UserKnownHostsFile={known_hosts_path()}",
            "-o", "StrictHostKeyChecking=yes",
            *(["-i", str(identity), "-o", "IdentitiesOnly=yes"] if identity else []),
            *options, "-l", name, info["host"]]


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def ssh(ctx: typer.Context, name: str,
        identity: Annotated[Path | None, typer.Option("--identity", "-i", help="Private key file (as ssh -i)")] = None,
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
    identity: Annotated[Path | None, typer.Option("--identity", "-i", help="Private key file (as ssh -i)")] = None,
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
    ssh_config: Annotated[Path, typer.Option(help="File to update")] = Path.home() / ".ssh" / "config",  # noqa: B008 - read once, shown in --help
) -> None:
    """Write `Host dev8.NAME` entries into ~/.ssh/config (a marked block, updated in place)."""
    client = api()
    info = call(client.get, "/ssh-info")
    write_known_hosts(info)
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
