"""Environment lifecycle and its event stream."""
from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated
from urllib.parse import urlencode

import asyncssh
from fastapi import APIRouter, Path, Query, Request, status
from fastapi.responses import StreamingResponse

from dev8.apphosts import APPS, app_url
from dev8.core import dotfiles, envssh, sharing, templates
from dev8.core import environments as envs
from dev8.core.connections import Endpoint, Unreachable
from dev8.core.errors import Conflict, Invalid
from dev8.core.faults import crash_point
from dev8.core.notify import POLL_UNFED
from dev8.core.states import State
from dev8.runtimes.base import EnvSpec, NeedsUserAction
from dev8.server.deps import Ctx, CurrentUser, SessionDep, StoreRoute
from dev8.server.schemas import (
    ERROR_RESPONSES,
    MAX_ROW_ID,
    EnvironmentEdit,
    EnvironmentIn,
    EnvironmentOut,
    EventOut,
    ShareIn,
    ValidationOut,
)
from dev8.store.models import Environment, User

router = APIRouter(prefix="/api/v1/environments", tags=["environments"], responses=ERROR_RESPONSES,
                   route_class=StoreRoute)


def environment_out(ctx: Ctx, env: Environment, user: User) -> EnvironmentOut:
    """The API's view of ``env``, owned by ``user``."""
    host, port = ctx.settings.ssh_endpoint
    return EnvironmentOut(
        id=env.id, name=env.name, owner=user.username, state=env.observed_state,
        desired_state=env.desired_state, status_message=env.status_message,
        status_detail=env.status_detail or "", image=env.image,
        cpus=env.cpus, memory=env.memory, secrets=list(env.secret_names or []),
        repo=((env.options or {}).get("repo") or {}).get("url"),
        git_hosts=[p["host"] for p in ((env.options or {}).get("git") or {}).get("providers", [])],
        created_at=env.created_at, started_at=env.started_at, last_used_at=env.last_used_at,
        idle_timeout=ctx.settings.idle_timeout if env.idle_timeout is None else env.idle_timeout,
        stop_reason=env.stop_reason or "",
        template=(env.options or {}).get("template"), env=(env.options or {}).get("env") or {},
        apps=(env.options or {}).get("apps"),
        prebuild=((env.options or {}).get("prebuild") or {}).get("commit"),
        ssh_command=f"ssh -p {port} {env.name}@{host}",
        vscode_url=app_url(ctx.settings.base_url, ctx.settings.app_domain, "vscode", env.name, user.username)
        + "?" + urlencode({"folder": envs.workspace_folder(env)}),
        terminal_url=f"{ctx.settings.base_url}/@{user.username}/{env.name}/terminal/",
    )


async def _require_runtime(ctx: Ctx) -> None:
    """Raise RuntimeUnavailable (503) before any write if the backend is down or wedged."""
    await ctx.reconciler.health.check(reuse=False)


@router.get("", response_model=list[EnvironmentOut])
def list_environments(ctx: Ctx, user: CurrentUser, s: SessionDep) -> list[EnvironmentOut]:
    return [environment_out(ctx, e, user) for e in envs.list_environments(s, user) if e.desired_state != "deleted"]


def _create(ctx: Ctx, user: User, body: EnvironmentIn, *, dry_run: bool) -> EnvironmentOut:
    values: dict = {"image": body.image, "cpus": body.cpus, "memory": body.memory, "idle_timeout": body.idle_timeout,
                    "repo": body.repo, "branch": body.branch, "git": [g.model_dump() for g in body.git],
                    "extensions": body.extensions, "env": body.env}
    with ctx.db.session() as s:
        if body.template:
            values = templates.resolve(s, body.template, values)
        env = envs.create_environment(s, ctx.keyring, user, name=body.name, limits=ctx.limits,
                                      secret_names=body.secrets, ai=body.ai, new_secrets=body.new_secrets,
                                      template=body.template,
                                      from_prebuild=body.prebuild and ctx.runtime.copies_storage, **values)
        out = environment_out(ctx, env, user)
        if dry_run:
            s.rollback()
    return out


@router.post("", response_model=EnvironmentOut, status_code=status.HTTP_202_ACCEPTED,
             summary="Create an environment; follow /events until the `ready` event")
async def create_environment(body: EnvironmentIn, ctx: Ctx, user: CurrentUser) -> EnvironmentOut:
    await _require_runtime(ctx)
    checked = await asyncio.to_thread(_create, ctx, user, body, dry_run=True)
    await image_usable(ctx, checked.image)  # a mistyped image fails here, not minutes later

    def create() -> EnvironmentOut:
        out = _create(ctx, user, body, dry_run=False)
        crash_point("row")
        return out
    out = await asyncio.to_thread(create)
    ctx.reconciler.wake(out.id)
    return out


@router.post("/validate", response_model=ValidationOut,
             summary="Check a create request without creating anything (the dashboard, as you type)")
async def validate_environment(body: EnvironmentIn, ctx: Ctx, user: CurrentUser) -> ValidationOut:
    try:
        checked = await asyncio.to_thread(_create, ctx, user, body, dry_run=True)
        await image_usable(ctx, checked.image)
    except (Invalid, Conflict) as exc:
        return ValidationOut(valid=False, detail=str(exc), field=exc.field)
    return ValidationOut(valid=True)


IMAGE_CHECK_SECONDS = 30.0  # an answer about an image is reused this long (the form asks as you type)


async def image_status(ctx: Ctx, image: str) -> str:
    """The runtime's ``image_status`` (ready, buildable, pullable), remembered briefly;
    NeedsUserAction when the image cannot run here."""
    now = time.monotonic()
    known = ctx.image_checks.get(image)
    if known is None or known[0] < now:
        try:
            answer: str | Exception = await ctx.reconciler.runtime_call(ctx.runtime.image_status, image, timeout=20)
        except NeedsUserAction as exc:
            answer = exc
        if len(ctx.image_checks) > 1000:
            ctx.image_checks.clear()
        known = ctx.image_checks[image] = (now + IMAGE_CHECK_SECONDS, answer)
    if isinstance(known[1], Exception):
        raise known[1]
    return known[1]


async def image_usable(ctx: Ctx, image: str) -> None:
    try:
        await image_status(ctx, image)
    except NeedsUserAction as exc:
        raise Invalid(str(exc), field="image") from None


@router.get("/{name}", response_model=EnvironmentOut)
def get_environment(name: str, ctx: Ctx, user: CurrentUser, s: SessionDep) -> EnvironmentOut:
    return environment_out(ctx, envs.get_environment(s, user, name), user)


async def _transition(ctx: Ctx, user: User, name: str, change: Callable[..., object], **kw: object) -> EnvironmentOut:
    await _require_runtime(ctx)

    def apply() -> EnvironmentOut:
        with ctx.db.session() as s:
            env = envs.get_environment(s, user, name)
            change(s, env, **kw)
            return environment_out(ctx, env, user)
    out = await asyncio.to_thread(apply)
    ctx.reconciler.wake(out.id)
    return out


@router.patch("/{name}", response_model=EnvironmentOut,
              summary="Change its image, CPUs or memory (while stopped or in error; one in error is retried on "
                      "them) or its idle timeout")
async def edit(name: str, body: EnvironmentEdit, ctx: Ctx, user: CurrentUser) -> EnvironmentOut:
    if body.image is not None:
        await image_usable(ctx, envs.check_image(body.image.strip()))
    idle = body.idle_timeout if "idle_timeout" in body.model_fields_set else envs.KEEP
    return await _transition(ctx, user, name, envs.edit_environment, limits=ctx.limits, image=body.image,
                             cpus=body.cpus, memory=body.memory, idle_timeout=idle)


@router.post("/{name}/start", response_model=EnvironmentOut, status_code=status.HTTP_202_ACCEPTED)
async def start(name: str, ctx: Ctx, user: CurrentUser, empty_home: bool = Query(
        False, description="its home storage is gone (an error says so): start with an empty one")) -> EnvironmentOut:
    return await _transition(ctx, user, name, envs.request_start, limits=ctx.limits, empty_home=empty_home)


@router.post("/{name}/stop", response_model=EnvironmentOut, status_code=status.HTTP_202_ACCEPTED)
async def stop(name: str, ctx: Ctx, user: CurrentUser) -> EnvironmentOut:
    return await _transition(ctx, user, name, envs.request_stop)


@router.post("/{name}/restart", response_model=EnvironmentOut, status_code=status.HTTP_202_ACCEPTED)
async def restart(name: str, ctx: Ctx, user: CurrentUser) -> EnvironmentOut:
    return await _transition(ctx, user, name, envs.request_restart, limits=ctx.limits)


@router.post("/{name}/reconfigure", response_model=EnvironmentOut, status_code=status.HTTP_202_ACCEPTED,
             summary="Push configuration and secrets again without a restart")
async def reconfigure(name: str, ctx: Ctx, user: CurrentUser) -> EnvironmentOut:
    return await _transition(ctx, user, name, envs.request_reconfigure)


@router.post("/{name}/dotfiles", response_model=EnvironmentOut, status_code=status.HTTP_202_ACCEPTED,
             summary="Install your dotfiles repository into it (new environments get it at creation): at once "
                     "when it runs, else at its next start")
async def apply_dotfiles(name: str, ctx: Ctx, user: CurrentUser) -> EnvironmentOut:
    return await _transition(ctx, user, name, lambda s, env: dotfiles.apply_dotfiles(s, user, env))


async def _run_in_env(ctx: Ctx, user: User, name: str, command: str) -> dict:
    """Run a ``dev8-env`` query over SSH; the environment's state plus its JSON output."""
    def lookup() -> Environment:
        with ctx.db.session() as s:
            return envs.get_environment(s, user, name)
    env = await asyncio.to_thread(lookup)
    if env.observed_state != State.RUNNING:
        return {"state": env.observed_state}
    try:
        conn = await ctx.connections.get(Endpoint.of(env))  # pooled: no handshake per request
        result = await envssh.run_json(conn, command, timeout=20)
    except (TimeoutError, Unreachable, OSError, RuntimeError, asyncssh.Error) as exc:
        return {"state": env.observed_state, "error": f"{command} failed: {exc}"}
    return {"state": env.observed_state, **result}


@router.get("/{name}/health", summary="Per-service state inside the environment (checked over SSH)")
async def health(name: str, ctx: Ctx, user: CurrentUser) -> dict:
    return {"services": {}, **await _run_in_env(ctx, user, name, "dev8-env health")}


@router.get("/{name}/stats", summary="What it uses: uptime, CPU (100 = one CPU busy), memory, home size and free "
                                     "disk (checked over SSH; null where unknown)")
async def stats(name: str, ctx: Ctx, user: CurrentUser) -> dict:
    return await _run_in_env(ctx, user, name, "dev8-env stats")


@router.get("/{name}/work", summary="Git repositories in its workspace with changes or commits not pushed "
                                   "(checked over SSH; what a delete would lose)")
async def work(name: str, ctx: Ctx, user: CurrentUser) -> dict:
    return {"repos": [], **await _run_in_env(ctx, user, name, "dev8-env work")}


@router.get("/{name}/logs", summary="The last lines the environment's services printed (sshd, code-server)")
async def logs(name: str, ctx: Ctx, user: CurrentUser, tail: int = Query(200, ge=1, le=2000)) -> dict:
    def spec() -> EnvSpec:
        with ctx.db.session() as s:
            return envs.spec_of(envs.get_environment(s, user, name), ctx.reconciler.installation)
    found = await asyncio.to_thread(spec)
    await _require_runtime(ctx)
    return {"lines": await ctx.reconciler.runtime_call(ctx.runtime.logs, found, tail)}


@router.get("/{name}/ports", summary="TCP ports listening inside the environment, with preview URLs "
                                    "and sharing levels")
async def ports(name: str, ctx: Ctx, user: CurrentUser) -> dict:
    result = {"ports": [], **await _run_in_env(ctx, user, name, "dev8-env ports")}

    def shares_and_labels() -> tuple[dict[int, str], dict[str, str]]:
        with ctx.db.session() as s:
            env = envs.get_environment(s, user, name)  # labels: devcontainer.json's portsAttributes
            return sharing.shares(s, env.id), ((env.options or {}).get("devcontainer") or {}).get("ports") or {}
    shared, named = await asyncio.to_thread(shares_and_labels)
    # dev8's own apps (code-server) are opened as apps, not shared as previews
    result["ports"] = [p for p in result["ports"] if p["port"] not in APPS.values()]
    result["previews"] = ctx.settings.app_domain is not None  # browsers open previews (app hosts)
    for p in result["ports"]:
        p["url"] = app_url(ctx.settings.base_url, ctx.settings.app_domain, p["port"], name, user.username)
        p["share"] = shared.get(p["port"], "private")
        p["label"] = named.get(str(p["port"]), "")
    result["shares"] = {str(k): v for k, v in sorted(shared.items())}
    return result


@router.put("/{name}/ports/{port:int}/share", summary="Share a port's preview: private, authenticated (any dev8 "
            "user) or public (anyone); honoured on app subdomains only")
def share_port(name: str, port: Annotated[int, Path(ge=1, le=65535)], body: ShareIn, ctx: Ctx, user: CurrentUser,
               s: SessionDep) -> dict:
    env = envs.get_environment(s, user, name)
    sharing.set_share(s, env, port, body.level)
    s.commit()
    return {"port": port, "share": body.level, "honoured": bool(ctx.settings.app_domain),
            "url": app_url(ctx.settings.base_url, ctx.settings.app_domain, port, name, user.username)}


@router.delete("/{name}", response_model=EnvironmentOut, status_code=status.HTTP_202_ACCEPTED)
async def delete(name: str, ctx: Ctx, user: CurrentUser, keep_volume: bool = False) -> EnvironmentOut:
    return await _transition(ctx, user, name, envs.request_delete, keep_volume=keep_volume)


# A comment line this often keeps proxies from closing a quiet stream.
KEEP_ALIVE = 15.0


@router.get("/{name}/events", summary="Lifecycle events as Server-Sent Events (or JSON with follow=false)",
            response_model=list[EventOut], responses={200: {"content": {"text/event-stream": {"schema": {
                "type": "string", "description": "`event: progress` with an EventOut as `data`, then "
                "`event: deleted` when the environment is gone; `: keep-alive` comments in between"}}}}})
async def events(name: str, request: Request, ctx: Ctx, user: CurrentUser,
                 after: int = Query(0, ge=0, le=MAX_ROW_ID), follow: bool = True,
                 last: int | None = Query(None, ge=1, le=500, description="only the last N (with follow=false)"),
                 ) -> list[EventOut] | StreamingResponse:
    def first_batch() -> tuple[str, list[EventOut]]:
        with ctx.db.session() as s:
            env_id = envs.get_environment(s, user, name, include_deleting=True).id
            if follow:
                return env_id, []
            found = envs.recent_events(s, env_id, last) if last else envs.events_after(s, env_id, after)
            return env_id, [EventOut.model_validate(e, from_attributes=True) for e in found]
    env_id, first = await asyncio.to_thread(first_batch)
    if not follow:
        return first

    def fetch(cursor: int) -> tuple[bool, list[EventOut]]:
        with ctx.db.session() as s2:
            batch = [EventOut.model_validate(e, from_attributes=True) for e in envs.events_after(s2, env_id, cursor)]
            # An environment's events go with it: new ones mean it is there (one query, not two,
            # at each event of every stream following a burst of creates).
            return bool(batch) or s2.get(Environment, env_id) is not None, batch

    # A browser's EventSource that lost its connection (a replica went away) reconnects by
    # itself, naming the last event it got: go on from there, not from the start.
    resumed = request.headers.get("last-event-id", "")
    start = max(after, int(resumed)) if resumed.isdigit() and int(resumed) <= MAX_ROW_ID else after

    async def stream() -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        cursor, said = start, loop.time()
        notifier = ctx.reconciler.notifier  # woken by an event of any replica (core.notify)
        while not await request.is_disconnected():
            armed = notifier.arm(env_id) if notifier is not None else None
            exists, batch = await asyncio.to_thread(fetch, cursor)
            for ev in batch:
                cursor, said = ev.id, loop.time()
                yield f"id: {ev.id}\nevent: progress\ndata: {ev.model_dump_json()}\n\n"
            if not exists:
                yield f"event: deleted\ndata: {json.dumps({'name': name})}\n\n"
                return
            if len(batch) >= envs.EVENTS_BATCH:
                continue  # more were waiting than one look reads
            if loop.time() - said >= KEEP_ALIVE:
                said = loop.time()
                yield ": keep-alive\n\n"
            if notifier is not None and armed is not None:
                await notifier.wait(armed, min(notifier.poll, KEEP_ALIVE))
            else:
                await asyncio.sleep(POLL_UNFED)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
