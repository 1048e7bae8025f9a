"""An environment's life: `create`, `list`, `show`, `start`, `stop`, `restart`, `delete`,
`edit`, `env reconfigure`, with the lifecycle events followed until the step asked for."""
from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from dev8.cli.client import ApiError, Client
from dev8.cli.common import api, call, fail, out
from dev8.durations import human, human_size, parse_duration

app = typer.Typer()
env_app = typer.Typer(help="Operations on a running environment.", no_args_is_help=True)


# The steps of stopping and deleting: following a stop or a delete, an error of another step
# is the start it interrupted failing, shown but not this command's failure.
ENDING_STEPS = {"save", "stop", "stopped", "remove", "deleted"}


# How long a command following events tries to get its stream back after it was cut (the
# server restarted, or the replica behind a load balancer went away and another answers).
RESUME_SECONDS = 30.0


def _follow(client: Client, name: str, until: set[str], after: int = 0) -> None:
    """Print lifecycle events until one of ``until`` steps succeeds; exit 1 on an error event.
    A cut stream is opened again from the last event seen, for ``RESUME_SECONDS``."""
    ending = bool(until & {"stopped", "deleted"})
    cut_since: float | None = None
    while True:
        try:
            for ev in client.events(name, after):
                cut_since = None
                after = ev.get("id", after)
                if _show(ev, name, until, ending):
                    return
        except ApiError as exc:
            if exc.status == 404 and "deleted" in until:  # gone before its events could be followed
                out.print(f"{name}: deleted")
                return
            if exc.status not in (0, 502, 503, 504):  # not a server (or the way to one) away
                fail(exc.detail)
        # The server ends a stream only when its environment is gone: this one was cut.
        now = time.monotonic()
        if cut_since is None:
            cut_since = now
            out.print("[dim]the connection to dev8 was cut; reconnecting…[/dim]", highlight=False)
        elif now - cut_since > RESUME_SECONDS:
            fail(f"lost the connection to dev8 before {name} got there; see `dev8 show {name}`")
        time.sleep(1)


def _show(ev: dict, name: str, until: set[str], ending: bool) -> bool:
    """Print one event; whether it is the one waited for (exit 1 if it failed the command)."""
    if ev["kind"] == "deleted":
        if "deleted" in until:
            out.print(f"{name}: deleted")
            return True
        fail(f"{name} was deleted")
    step, status, msg = ev["step"], ev["status"], ev.get("message", "")
    if status == "error" and ending and step not in ENDING_STEPS:
        out.print(f"[yellow]![/yellow] {step} (the start it interrupts): {escape(msg)}", highlight=False)
        return False
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
    return status == "ok" and step in until


def _last_event_id(client: Client, name: str) -> int:
    events = call(client.get, f"/environments/{name}/events", params={"follow": "false", "after": 0})
    return events[-1]["id"] if events else 0


@app.command()
def create(
    name: str,
    image: Annotated[str | None, typer.Option(
        help="Image (default: the server's DEV8_DEFAULT_IMAGE, dev8/fullstack:latest unless its admin changed "
             "it)")] = None,
    cpus: Annotated[float | None, typer.Option(help="CPU limit, e.g. 2")] = None,
    memory: Annotated[str | None, typer.Option(help="Memory limit, e.g. 4g")] = None,
    secret: Annotated[list[str] | None, typer.Option("--secret", help="Secret to provide (repeatable)")] = None,
    repo: Annotated[str | None, typer.Option(help="Repository to clone into ~/workspace on first start")] = None,
    branch: Annotated[str | None, typer.Option(help="Branch to clone")] = None,
    git: Annotated[list[str] | None, typer.Option(
        "--git", help="Git login: KIND (github, gitlab or bitbucket), then @HOST or @HOST:PORT for a "
        "self-hosted one, then =SECRET to name its token's secret (default GITHUB_TOKEN, GITLAB_TOKEN or "
        "BITBUCKET_TOKEN) and ,USER for its username; e.g. gitlab@git.corp:8443=CORP_TOKEN (repeatable)")] = None,
    anthropic_key: Annotated[str | None, typer.Option(help="Secret holding ANTHROPIC_API_KEY (claude)")] = None,
    gemini_key: Annotated[str | None, typer.Option(help="Secret holding GEMINI_API_KEY (gemini)")] = None,
    copilot_token: Annotated[str | None, typer.Option(help="Secret holding a GitHub token for Copilot")] = None,
    extension: Annotated[list[str] | None, typer.Option(
        "--extension",
        help="VS Code extension to install at start: publisher.name or a .vsix path (repeatable)")] = None,
    template: Annotated[str | None, typer.Option(
        help="Start from this template (dev8 templates list): its values are the defaults, and the ones it "
             "locks cannot be given")] = None,
    env_var: Annotated[list[str] | None, typer.Option(
        "--env", help="Environment variable NAME=VALUE in every shell and VS Code, not secret (repeatable)")] = None,
    idle_timeout: Annotated[str | None, typer.Option(
        help="Stop it after this long without use (SSH, terminal, VS Code, previews), e.g. 30m or 2h: "
             "0 (never) or 5s to 30d; default: the server's (DEV8_IDLE_TIMEOUT)")] = None,
    prebuild: Annotated[bool, typer.Option(
        help="Start from your newest ready prebuild of --repo at --branch with this image, if you have one "
             "(dev8 prebuilds)")] = True,
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
            "idle_timeout": idle_seconds, "env": variables, "template": template, "prebuild": prebuild}
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


def run_action(name: str, action: str, until: set[str], **params: object) -> None:
    """POST (or DELETE) an action on an environment and follow its events until ``until``."""
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
    run_action(name, "start", {"ready"}, **({"empty_home": "true"} if empty_home else {}))


@app.command()
def stop(name: str) -> None:
    """Stop an environment (its volume and files stay)."""
    run_action(name, "stop", {"stopped"})


@app.command()
def restart(name: str) -> None:
    """Restart an environment's container and wait until it is ready."""
    run_action(name, "restart", {"ready"})


@app.command()
def delete(name: str,
           keep_volume: Annotated[bool, typer.Option("--keep-volume", help="Keep the home volume")] = False,
           yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask (scripts); without a terminal "
                                             "to ask on, required")] = False) -> None:
    """Delete an environment and its home (unless --keep-volume). On a terminal it asks first,
    saying what would be lost: repositories with changes or commits not pushed."""
    if not yes:
        what = "the environment (its home volume is kept)" if keep_volume else "the environment and its home"
        if not sys.stdin.isatty():
            fail(f"dev8 delete {name} removes {what}: add --yes to delete without being asked "
                 "(there is no terminal to ask on)")
        env = call(api().get, f"/environments/{name}")  # an unknown name fails here, before asking
        if not keep_volume:
            _warn_unpushed(name, env["state"])
        if not typer.confirm(f"Delete {name} and {'keep' if keep_volume else 'remove'} its home?", default=False):
            fail("nothing deleted", 1)
    run_action(name, "delete", {"deleted"}, keep_volume=str(keep_volume).lower())


def _warn_unpushed(name: str, state: str) -> None:
    """What a delete would lose, as far as dev8 can tell."""
    if state != "running":
        out.print(f"{name} is {state}: dev8 cannot check its repositories for work not pushed "
                  f"(start it, or keep its home with --keep-volume)", highlight=False)
        return
    work = call(api().get, f"/environments/{name}/work")
    if work.get("error"):
        out.print(f"dev8 could not check {name}'s repositories: {work['error']}", highlight=False)
    for repo in work.get("repos", []):
        parts = [f"{repo['changes']} changed file{'s' if repo['changes'] != 1 else ''}"] if repo["changes"] else []
        if repo["unpushed"]:
            parts.append(f"{repo['unpushed']} commit{'s' if repo['unpushed'] != 1 else ''} not pushed")
        out.print(f"[bold red]![/] {escape(repo['path'])}: {', '.join(parts)}: lost with the home")


@app.command()
def edit(
    name: str,
    image: Annotated[str | None, typer.Option(help="Another image (from the next start)")] = None,
    cpus: Annotated[float | None, typer.Option(help="CPU limit, e.g. 2 (from the next start)")] = None,
    memory: Annotated[str | None, typer.Option(help="Memory limit, e.g. 4g (from the next start)")] = None,
    idle_timeout: Annotated[str | None, typer.Option(
        help="Stop it after this long without use, e.g. 30m: 0 (never) or 5s to 30d; 'default' for the "
             "server's")] = None,
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
    run_action(name, "reconfigure", {"ready"})


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

    def known(key: str, show: Callable[[Any], str]) -> str:
        return "unknown" if st.get(key) is None else show(st[key])
    memory = known("memory_bytes", human_size) + (f" of {human_size(st['memory_limit_bytes'])}"
                                                  if st.get("memory_limit_bytes") else "")
    return (f"up {known('uptime_seconds', human)} · CPU {known('cpu_percent', lambda p: f'{p:g}%')} · memory {memory}"
            f" · home {known('home_bytes', human_size)} ({known('disk_free_bytes', human_size)} free)")
