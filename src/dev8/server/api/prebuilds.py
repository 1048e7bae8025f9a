"""Prebuilds (core.prebuilds): a user's configurations and their runs."""
from __future__ import annotations

import asyncio
from typing import Literal

from fastapi import APIRouter, Request, Response, status
from sqlalchemy.orm import Session

from dev8.core import prebuild_hooks, prebuilds
from dev8.core.errors import Conflict, Invalid
from dev8.server.deps import Ctx, CurrentUser, SessionDep, StoreRoute
from dev8.server.schemas import ERROR_RESPONSES, HookOut, PrebuildIn, PrebuildOut, PrebuildRunOut
from dev8.store.models import Prebuild, PrebuildConfig

router = APIRouter(prefix="/api/v1/prebuilds", tags=["prebuilds"], responses=ERROR_RESPONSES, route_class=StoreRoute)


def run_out(run: Prebuild) -> PrebuildRunOut:
    return PrebuildRunOut(id=run.id, state=run.state, commit=run.commit, message=run.message, log=run.log,
                          environment=run.env_name, created_at=run.created_at, finished_at=run.finished_at)


def prebuild_out(s: Session, config: PrebuildConfig) -> PrebuildOut:
    providers = (config.options or {}).get("git", {}).get("providers", [])
    return PrebuildOut(id=config.id, repo=config.repo_url, branch=config.branch or None, image=config.image,
                       cpus=config.cpus, memory=config.memory, git_hosts=[p["host"] for p in providers],
                       secrets=list(config.secret_names or []), keep=config.keep, every=config.every,
                       created_at=config.created_at,
                       runs=[run_out(r) for r in prebuilds.runs(s, config, limit=5)])


def _copies(ctx: Ctx) -> None:
    if not ctx.runtime.copies_storage:
        raise Conflict(f"prebuilds need a runtime that copies homes; this server's, {ctx.runtime.name}, does not")


@router.get("", response_model=list[PrebuildOut], summary="Your prebuild configurations and their latest runs")
def list_prebuilds(user: CurrentUser, s: SessionDep) -> list[PrebuildOut]:
    return [prebuild_out(s, c) for c in prebuilds.list_configs(s, user)]


@router.put("", response_model=PrebuildOut, summary="Set the prebuild of a repository and branch (made or replaced)",
            responses={201: {"model": PrebuildOut, "description": "made, with its webhook secret (shown once)"}})
def set_prebuild(body: PrebuildIn, ctx: Ctx, user: CurrentUser, s: SessionDep, response: Response) -> PrebuildOut:
    _copies(ctx)
    config, secret = prebuilds.set_config(s, ctx.keyring, user, ctx.limits, repo=body.repo, branch=body.branch,
                                          image=body.image, cpus=body.cpus, memory=body.memory, keep=body.keep,
                                          every=body.every,
                                          secret_names=body.secrets, git=[g.model_dump() for g in body.git])
    out = prebuild_out(s, config)
    if secret is not None:
        response.status_code = status.HTTP_201_CREATED
        out.webhook_secret = secret
    return out


@router.post("/{config_id}/webhook-secret", response_model=PrebuildOut,
             summary="A new webhook secret (shown once; the old one stops working)")
def new_webhook_secret(config_id: str, ctx: Ctx, user: CurrentUser, s: SessionDep) -> PrebuildOut:
    config = prebuilds.get_config(s, user, config_id)
    out = prebuild_out(s, config)
    out.webhook_secret = prebuilds.new_hook_secret(s, ctx.keyring, config)
    return out


@router.post("/hooks/{provider}", response_model=HookOut, status_code=status.HTTP_202_ACCEPTED,
             summary="A push webhook of GitHub, GitLab or Bitbucket (no token: the hook's signature or GitLab "
                     "token proves it); runs the pushed branch's prebuilds")
async def push_hook(provider: Literal["github", "gitlab", "bitbucket"], request: Request, ctx: Ctx) -> HookOut:
    body = await request.body()
    headers = {k.lower(): v for k, v in request.headers.items()}
    if prebuild_hooks.is_ping(provider, headers):
        return HookOut(runs=[])

    def handle() -> tuple[list[str], list[str]]:
        with ctx.db.session() as s:
            try:
                runs = prebuilds.hook(s, ctx.keyring, provider, headers, body)
            except prebuild_hooks.HookRefused as exc:
                raise Invalid(str(exc)) from None
            started = prebuilds.dispatch(s, ctx.keyring, ctx.settings.prebuild_concurrency)
            return [r.id for r in runs], started
    runs, started = await asyncio.to_thread(handle)
    for env_id in started:
        ctx.reconciler.wake(env_id)
    return HookOut(runs=runs)


@router.get("/{config_id}", response_model=PrebuildOut)
def get_prebuild(config_id: str, user: CurrentUser, s: SessionDep) -> PrebuildOut:
    return prebuild_out(s, prebuilds.get_config(s, user, config_id))


@router.post("/{config_id}/runs", response_model=PrebuildRunOut, status_code=status.HTTP_202_ACCEPTED,
             summary="Run it now (queued behind the server's runs in progress); follow its environment's events")
async def run_prebuild(config_id: str, ctx: Ctx, user: CurrentUser) -> PrebuildRunOut:
    _copies(ctx)

    def queue() -> tuple[PrebuildRunOut, list[str]]:
        with ctx.db.session() as s:
            run = prebuilds.request_run(s, user, prebuilds.get_config(s, user, config_id))
            started = prebuilds.dispatch(s, ctx.keyring, ctx.settings.prebuild_concurrency)
            return run_out(run), started
    run, started = await asyncio.to_thread(queue)
    for env_id in started:
        ctx.reconciler.wake(env_id)
    return run


@router.delete("/{config_id}", status_code=status.HTTP_204_NO_CONTENT,
               summary="Delete it and its prebuilds (environments made from them keep their homes)")
async def delete_prebuild(config_id: str, ctx: Ctx, user: CurrentUser) -> None:
    def delete() -> list[prebuilds.Storage]:
        with ctx.db.session() as s:
            return prebuilds.delete_config(s, user, prebuilds.get_config(s, user, config_id))
    gone = await asyncio.to_thread(delete)
    await ctx.reconciler.prebuild_ended(prebuilds.RunEnded([], gone))

