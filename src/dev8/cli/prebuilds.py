"""Prebuilds: a repository's home made ahead of time, so that `dev8 create --repo` of it is
ready as fast as an empty environment."""
from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from dev8.cli.client import ApiError, Client
from dev8.cli.common import api, call, fail, out
from dev8.cli.environments import parse_git_option
from dev8.durations import human, parse_duration

prebuilds_app = typer.Typer(help="Prebuilds: a repository's clone and devcontainer.json's onCreateCommand and "
                                 "updateContentCommand done ahead of time; `dev8 create --repo` of it starts from a "
                                 "copy (only yours; docker, kubernetes and aci copy homes).", no_args_is_help=True)

Branch = Annotated[str | None, typer.Option(help="Branch (default: the repository's default branch)")]


def _find(client: Client, repo: str, branch: str | None) -> dict:
    for config in call(client.get, "/prebuilds"):
        if config["repo"] == repo and config["branch"] == branch:
            return config
    fail(f"no prebuild of {repo}" + (f" at {branch}" if branch else "") + "; see `dev8 prebuilds list`")


def _when(stamp: str | None) -> str:
    if not stamp:
        return "-"
    from datetime import UTC, datetime
    return human(max(0, int((datetime.now(UTC) - datetime.fromisoformat(stamp)).total_seconds()))) + " ago"


@prebuilds_app.command("set")
def prebuilds_set(
    repo: str,
    branch: Branch = None,
    image: Annotated[str | None, typer.Option(help="Image (default: the server's DEV8_DEFAULT_IMAGE)")] = None,
    cpus: Annotated[float | None, typer.Option(help="CPU limit of the run")] = None,
    memory: Annotated[str | None, typer.Option(help="Memory limit of the run, e.g. 4g")] = None,
    git: Annotated[list[str] | None, typer.Option(
        "--git", help="Git login for the clone, as in dev8 create: KIND[@HOST[:PORT]][=SECRET[,USERNAME]] "
                      "(repeatable)")] = None,
    secret: Annotated[list[str] | None, typer.Option("--secret", help="Secret the run may use (repeatable)")] = None,
    keep: Annotated[int, typer.Option(help="Ready prebuilds to keep, newest first")] = 2,
    every: Annotated[str | None, typer.Option(
        help="Also run it on a schedule, e.g. 6h or 1d (1h to 30d); default: on demand and on push")] = None,
    run: Annotated[bool, typer.Option(help="Run it now")] = True,
) -> None:
    """Make (or replace) the prebuild of REPO at a branch, and run it."""
    try:
        providers = [parse_git_option(g) for g in git or []]
        seconds = parse_duration(every) if every else 0
    except ValueError as exc:
        fail(str(exc))
    client = api()
    config = call(client.request, "PUT", "/prebuilds", json={
        "repo": repo, "branch": branch, "image": image, "cpus": cpus, "memory": memory, "git": providers,
        "secrets": secret or [], "keep": keep, "every": seconds})
    out.print(f"prebuild of {repo}{f' at {branch}' if branch else ''} set ({config['image']})")
    if config.get("webhook_secret"):
        _say_webhook(client, config)
    if run:
        _run(client, config)


def _say_webhook(client: Client, config: dict) -> None:
    hooks = f"{str(client.http.base_url).rstrip('/')}/api/v1/prebuilds/hooks"
    out.print(f"to build on every push, add a push webhook to the repository (shown once):\n"
              f"  URL     {hooks}/github | {hooks}/gitlab | {hooks}/bitbucket (content type JSON)\n"
              f"  secret  {config['webhook_secret']}", highlight=False)


@prebuilds_app.command("webhook")
def prebuilds_webhook(repo: str, branch: Branch = None) -> None:
    """A new webhook secret for REPO's prebuild (the old one stops working), and where to send pushes."""
    client = api()
    config = _find(client, repo, branch)
    _say_webhook(client, call(client.post, f"/prebuilds/{config['id']}/webhook-secret"))


@prebuilds_app.command("list")
def prebuilds_list() -> None:
    """Your prebuilds: each repository and branch, and its latest run."""
    table = Table("REPOSITORY", "BRANCH", "IMAGE", "LATEST RUN", "COMMIT", "WHEN")
    for c in call(api().get, "/prebuilds"):
        last = c["runs"][0] if c["runs"] else None
        table.add_row(c["repo"], c["branch"] or "(default)", c["image"], last["state"] if last else "never run",
                      (last["commit"] or "-")[:7] if last else "-",
                      _when(last["finished_at"] or last["created_at"]) if last else "-")
    out.print(table)


@prebuilds_app.command("show")
def prebuilds_show(repo: str, branch: Branch = None,
                   log: Annotated[bool, typer.Option(help="Show the latest run's steps")] = False) -> None:
    """One prebuild's settings and its latest runs."""
    c = _find(api(), repo, branch)
    out.print(f"{c['repo']} at {c['branch'] or '(default branch)'}: {c['image']}, {c['cpus']:g} CPUs, "
              f"{c['memory']}, keeps {c['keep']}" + (f", runs every {human(c['every'])}" if c["every"] else ""),
              highlight=False)
    if c["git_hosts"] or c["secrets"]:
        out.print(f"git logins: {', '.join(c['git_hosts']) or '-'}; secrets: {', '.join(c['secrets']) or '-'}",
                  highlight=False)
    table = Table("RUN", "STATE", "COMMIT", "STARTED", "WHY IT FAILED")
    for r in c["runs"]:
        table.add_row(r["id"][:12], r["state"], (r["commit"] or "-")[:7], _when(r["created_at"]), escape(r["message"]))
    out.print(table)
    if log and c["runs"]:
        out.print(escape(c["runs"][0]["log"] or "(no steps yet)"), highlight=False)


@prebuilds_app.command("run")
def prebuilds_run(repo: str, branch: Branch = None,
                  wait: Annotated[bool, typer.Option(help="Follow the run until it ends")] = True) -> None:
    """Run the prebuild of REPO now (after the runs already going on the server)."""
    client = api()
    _run(client, _find(client, repo, branch), wait=wait)


@prebuilds_app.command("delete")
def prebuilds_delete(repo: str, branch: Branch = None) -> None:
    """Delete the prebuild of REPO and its homes (environments made from them keep theirs)."""
    client = api()
    config = _find(client, repo, branch)
    call(client.request, "DELETE", f"/prebuilds/{config['id']}")
    out.print(f"prebuild of {repo}{f' at {branch}' if branch else ''} deleted")


def _run(client: Client, config: dict, *, wait: bool = True) -> None:
    run = call(client.post, f"/prebuilds/{config['id']}/runs")
    out.print(f"prebuild run {run['id'][:12]} {run['state']}")
    if not wait:
        return
    said_queued = False
    while (run := _state(client, config["id"], run["id"]))["state"] == "queued":
        if not said_queued:
            out.print("[dim]waiting for the server's other prebuild runs[/dim]", highlight=False)
            said_queued = True
        time.sleep(1)
    if run["state"] == "running":
        try:
            for ev in client.events(run["environment"]):
                if ev["kind"] != "progress" or ev["status"] == "progress":
                    continue
                out.print(f"[dim]{ev['step']} {ev['status']}[/dim] {escape(ev.get('message', ''))}", highlight=False)
                if ev["status"] == "error" or (ev["step"] == "prebuild" and ev["status"] == "ok"):
                    break
        except ApiError:
            pass  # its environment is gone already: the run has ended
        deadline = time.monotonic() + 30
        while (run := _state(client, config["id"], run["id"]))["state"] == "running" and time.monotonic() < deadline:
            time.sleep(0.5)
    if run["state"] == "ready":
        out.print(f"[green]✓[/green] prebuild ready at {run['commit'][:7]}: `dev8 create NAME --repo "
                  f"{config['repo']}` starts from it", highlight=False)
    else:
        why = run["message"] or f"see `dev8 prebuilds show {config['repo']} --log`"
        fail(f"prebuild run {run['state']}: {why}")


def _state(client: Client, config_id: str, run_id: str) -> dict:
    runs = call(client.get, f"/prebuilds/{config_id}")["runs"]
    found = next((r for r in runs if r["id"] == run_id), None)
    if found is None:
        fail("the run is no longer listed; see `dev8 prebuilds list`")
    return found
