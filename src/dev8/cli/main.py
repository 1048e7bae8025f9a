"""dev8 command line: the typer app assembled from one module per command group.

Server-side admin commands (admin.py) work on the data dir directly; everything else talks
to a dev8 server through its REST API (`dev8 login` first). A group imports what only its
commands need inside them, so `dev8 --help` and `dev8 list` stay quick."""
from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperArgument, TyperOption

from dev8.cli import account, admin, connecting, environments, images, prebuilds, templates

app = typer.Typer(help="dev8: cloud development environments you host yourself.", no_args_is_help=True,
                  context_settings={"help_option_names": ["-h", "--help"]})
for group in (admin.app, account.app, environments.app, connecting.app):
    app.add_typer(group)  # their commands at the top level: dev8 create, dev8 ssh, …
app.add_typer(admin.admin_app, name="admin")
app.add_typer(account.keys_app, name="keys")
app.add_typer(account.secrets_app, name="secrets")
app.add_typer(images.image_app, name="image")
app.add_typer(environments.env_app, name="env")
app.add_typer(account.dotfiles_app, name="dotfiles")
app.add_typer(templates.templates_app, name="templates")
app.add_typer(prebuilds.prebuilds_app, name="prebuilds")

# What a user types, shown in --help and usage lines instead of Python's type names
# (`<str>`, `<list[str]>`) and `{name}`; a parameter not named here shows its name in
# capitals, a flag shows nothing after it.
PLACEHOLDERS = {
    "anthropic_key": "SECRET", "gemini_key": "SECRET", "copilot_token": "SECRET", "secret": "SECRET",
    "cpus": "N", "running": "N", "environments": "N", "tail": "N", "memory": "SIZE",
    "idle_timeout": "DURATION", "expires": "DURATION", "expires_in": "DURATION",
    "git": "LOGIN", "env_var": "NAME=VALUE", "extension": "EXTENSION", "repo": "URL", "database_url": "URL",
    "data_dir": "DIR", "http_addr": "HOST:PORT", "ssh_addr": "HOST:PORT", "identity": "KEYFILE",
    "ssh_config": "FILE", "registry": "HOST[/PREFIX]", "username": "USER", "spec": "LOCAL:REMOTE",
    "source": "BACKUP",
}


def _placeholders(cmd: Any) -> None:
    # Help texts are plain text: brackets such as HOST[:PORT] are what a user types, not
    # rich markup (as markup, `dev8 image push --help` crashed on [/PREFIX]).
    cmd.rich_markup_mode = None
    for param in cmd.params:
        if param.metavar is None:
            flag = isinstance(param, TyperOption) and param.is_flag
            param.metavar = "" if flag else PLACEHOLDERS.get(param.name or "", (param.name or "").upper())
        if isinstance(param, TyperArgument):
            # typer writes a required argument as {NAME} in the usage line; git, gh and docker
            # write NAME (and [NAME] when optional), as here
            shown = str(param.metavar)
            usage = shown if param.required else f"[{shown}]"
            setattr(param, "make_metavar", lambda ctx, usage=False, u=usage, s=shown: u if usage else s)  # noqa: B010
    help_option = cmd.get_help_option

    def quiet_help(ctx: Any) -> Any:
        option = help_option(ctx)
        if option is not None:
            option.metavar = ""  # a flag: nothing after it
        return option
    cmd.get_help_option = quiet_help
    for sub in getattr(cmd, "commands", {}).values():
        _placeholders(sub)


def command() -> Any:
    """The click command typer builds from ``app``, with users' placeholders."""
    cmd = typer.main.get_command(app)
    _placeholders(cmd)
    return cmd


def main() -> None:
    command()(prog_name="dev8")


if __name__ == "__main__":
    main()
