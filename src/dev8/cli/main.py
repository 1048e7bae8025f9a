"""dev8 command line: the typer app assembled from one module per command group.

Server-side admin commands (admin.py) work on the data dir directly; everything else talks
to a dev8 server through its REST API (`dev8 login` first). A group imports what only its
commands need inside them, so `dev8 --help` and `dev8 list` stay quick."""
from __future__ import annotations

import typer

from dev8.cli import account, admin, connecting, environments, images, templates

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

if __name__ == "__main__":
    app()
