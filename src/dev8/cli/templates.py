"""Templates: an admin's starting points for environments."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from dev8.cli.common import api, call, fail, out, read_small

templates_app = typer.Typer(help="Templates: an admin's starting points for environments (dev8 create NAME "
                                 "--template T).", no_args_is_help=True)


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
    text = sys.stdin.read() if str(file) == "-" else read_small(file, "a template", limit=65536)
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
