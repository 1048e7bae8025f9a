"""Waiting for an environment a connection started (or found starting): each step told as
it happens, until it is ready; shared by the SSH gateway and the browser terminal, which
both attach once it is."""
from __future__ import annotations

import asyncio
from collections.abc import Callable

from dev8.core import environments as envs
from dev8.server.context import ServerContext
from dev8.store.models import Environment, Event

START_WAIT = 600.0  # seconds a connection waits for the environment it started


class NotReady(Exception):
    """It failed, was stopped or deleted meanwhile, or took longer than the wait: why, in a sentence."""


async def until_ready(ctx: ServerContext, env_id: str, name: str, seen: int, tell: Callable[[str], None],
                      timeout: float = START_WAIT) -> Environment:
    """Tell each step after event ``seen`` (``"step status: message"``) until it is ready;
    NotReady when it will not be."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout

    def look(after: int) -> tuple[Environment | None, list[Event]]:
        with ctx.db.session() as s:
            return s.get(Environment, env_id), envs.events_after(s, env_id, after)
    told_ready = False
    notifier = ctx.reconciler.notifier  # woken by an event of any replica (core.notify)
    while True:
        armed = notifier.arm(env_id) if notifier is not None else None
        env, events = await asyncio.to_thread(look, seen)
        for ev in events:
            tell(f"{ev.step} {ev.status}" + (f": {ev.message}" if ev.message else ""))
            seen, told_ready = ev.id, told_ready or ev.step == "ready"
        problem = f"{name} was deleted" if env is None else envs.ready_or_failed(env)
        if problem == "" and env is not None:
            if not told_ready:  # its `ready` event comes with the state, unless past what one look reads
                tell("ready ok")
            return env
        if problem is not None or loop.time() > deadline:
            raise NotReady(problem or f"{name} did not get ready within {timeout:.0f} s: see `dev8 show {name}`")
        if notifier is not None and armed is not None:
            await notifier.wait(armed, max(0.1, min(notifier.poll, deadline - loop.time())))
        else:
            await asyncio.sleep(0.5)
