"""The browser terminal: a page with xterm.js at ``/@<user>/<env>/terminal/`` and its
WebSocket at ``…/terminal/ws`` (sessions in ptysessions.py).

WebSocket protocol: binary frames from the server are terminal output. Text frames are
JSON: from the server ``{"t":"hello","session":ID,"replay":N,"fresh":B}`` (then the replay of
recent output; ``fresh``: this server shows the session from now on, so the page clears its
screen and the shell's holder repaints it),
``{"t":"exit"}``, ``{"t":"error","message":…}`` and ``{"t":"notice","message":…}`` (an idle
warning); from the browser ``{"t":"i","d":TEXT}``
(keystrokes), ``{"t":"r","c":COLS,"r":ROWS}`` (resize) and ``{"t":"a","n":BYTES}`` (bytes
rendered, for flow control).
"""
from __future__ import annotations

import asyncio
import contextlib
import html
import json
from collections.abc import Callable

from fastapi import APIRouter, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from dev8.core import environments as envs
from dev8.core.auth import hash_token
from dev8.core.connections import Endpoint
from dev8.core.errors import Dev8Error, Unauthorized
from dev8.core.states import State
from dev8.server.apps.auth import NotVisible, authorize_ws, login_required, not_found_page, request_token, resolve_env
from dev8.server.apps.ptysessions import PtySession
from dev8.server.context import ServerContext
from dev8.server.live import watching
from dev8.server.starting import NotReady, until_ready
from dev8.store.models import Environment

router = APIRouter(include_in_schema=False)
# xterm.js sizes its rows with inline styles; scripts only from dev8 itself.
TERMINAL_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self'; "
                "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
MAX_INPUT = 64 * 1024


def terminal_page(owner: str, name: str) -> str:
    title = html.escape(f"{name} · terminal · dev8")
    ws = html.escape(f"/@{owner}/{name}/terminal/ws", quote=True)
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title>
<link rel="icon" href="/static/favicon.svg"><link rel="stylesheet" href="/static/xterm.css">
<link rel="stylesheet" href="/static/terminal.css"></head>
<body data-ws="{ws}"><header><a href="/">Environments</a> / <strong>{html.escape(name)}</strong>
<span id="status" role="status">connecting…</span>
</header><main id="terminal" aria-label="terminal"></main>
<script src="/static/xterm.js"></script><script src="/static/addon-fit.js"></script>
<script src="/static/terminal.js"></script></body></html>"""


@router.get("/@{owner}/{name}/terminal")
def terminal_slash(owner: str, name: str) -> Response:
    return RedirectResponse(f"/@{owner}/{name}/terminal/", status_code=308)


@router.get("/@{owner}/{name}/terminal/")
async def terminal(request: Request, owner: str, name: str) -> Response:
    ctx: ServerContext = request.app.state.ctx
    token, _ = request_token(request)
    try:
        await asyncio.to_thread(resolve_env, ctx, token, owner, name)
    except Unauthorized:
        return login_required(request)
    except NotVisible:
        return not_found_page()
    return HTMLResponse(terminal_page(owner, name), headers={
        "Content-Security-Policy": TERMINAL_CSP, "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"})


def _int(value: str | None, default: int) -> int:
    return int(value) if value and value.isdigit() and 0 < int(value) <= 1000 else default


@router.websocket("/@{owner}/{name}/terminal/ws")
async def terminal_ws(websocket: WebSocket, owner: str, name: str) -> None:
    ctx: ServerContext = websocket.app.state.ctx
    allowed = await authorize_ws(websocket, owner, name)
    if allowed is None:
        return
    user, env = allowed
    await websocket.accept()
    if envs.ready_or_failed(env) != "":
        ready = await _until_ready(websocket, ctx, env, name)
        if ready is None:
            return
        env = ready
    q = websocket.query_params
    session = ctx.terminals.find(q.get("session"), env.id, user.id)
    fresh = session is None  # shown by this server from now: the page repaints from scratch
    if session is None:
        try:
            conn = await ctx.connections.get(Endpoint.of(env))
            session = await ctx.terminals.open(conn, env.id, user.id, _int(q.get("cols"), 80), _int(q.get("rows"), 24),
                                               q.get("session"))
        except Exception as exc:  # noqa: BLE001 — shown to the user, the socket stays sane
            await _fail(websocket, f"could not open a shell in {name}: {exc}")
            return
    else:
        session.resize(_int(q.get("cols"), 80), _int(q.get("rows"), 24))

    # Output read while the replay is being sent waits for it, so nothing is lost or reordered.
    replayed = asyncio.Event()

    async def send(chunk: bytes) -> None:
        await replayed.wait()
        await websocket.send_bytes(chunk)
    replay = session.attach(send)
    token, _ = request_token(websocket)

    def tell(message: str) -> None:
        asyncio.ensure_future(websocket.send_text(json.dumps({"t": "notice", "message": message})))
    try:
        with watching(ctx.live, websocket, user.id, hash_token(token or ""), "terminal", also=session.close,
                      env_id=env.id, tell=tell):
            await websocket.send_text(json.dumps({"t": "hello", "session": session.id, "replay": len(replay),
                                                  "fresh": fresh}))
            if replay:
                await websocket.send_bytes(replay)
            replayed.set()
            exited = asyncio.create_task(session.exited.wait())
            inputs = asyncio.create_task(_read_input(websocket, session, lambda: ctx.activity.touch(env.id)))
            done, _ = await asyncio.wait({exited, inputs}, return_when=asyncio.FIRST_COMPLETED)
            for t in (exited, inputs):
                t.cancel()
            if exited in done:
                await websocket.send_text(json.dumps({"t": "exit"}))
                await websocket.close(code=1000)
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        session.detach(send)


async def _read_input(websocket: WebSocket, session: PtySession, typed: Callable[[], None]) -> None:
    """Until the browser goes away (which ends this normally: the shell stays). Keystrokes
    are use of the environment (``typed``); resizes and acknowledgements are not."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        if text is None:
            continue
        if len(text) > MAX_INPUT:
            continue
        try:
            msg = json.loads(text)
        except ValueError:
            continue
        kind = msg.get("t") if isinstance(msg, dict) else None
        if kind == "i" and isinstance(msg.get("d"), str):
            session.write(msg["d"])
            typed()
        elif kind == "r" and isinstance(msg.get("c"), int) and isinstance(msg.get("r"), int):
            session.resize(msg["c"], msg["r"])
        elif kind == "a" and isinstance(msg.get("n"), int):
            session.ack(msg["n"])


async def _until_ready(websocket: WebSocket, ctx: ServerContext, env: Environment, name: str) -> Environment | None:
    """Not ready: a stopped one is started (its owner opened its terminal, as SSH and VS Code
    start it), a starting one is waited for with each step shown in the terminal; one in
    error says why and how to try again. The environment once ready; None when it will not be."""
    def start() -> tuple[bool, int, str | None]:
        with ctx.db.session() as s:
            current = s.get(Environment, env.id)
            if current is None:
                return False, 0, f"{name} was deleted"
            if current.observed_state == State.ERROR and current.desired_state == "running":
                return False, 0, (f"{name} failed to start: {current.status_message}. Retry from its page "
                                  f"(Retry) or with `dev8 restart {name}`, then open the terminal again")
            last = envs.recent_events(s, env.id, 1)
            started = envs.start_on_connect(s, current, "the terminal", ctx.limits)
            s.commit()
            return started, last[-1].id if last else 0, None
    try:
        started, seen, problem = await asyncio.to_thread(start)
    except Dev8Error as exc:  # a start refused (a quota)
        await _fail(websocket, str(exc))
        return None
    if problem:
        await _fail(websocket, problem)
        return None
    if started:
        ctx.reconciler.wake(env.id)
    await _notice(websocket, f"{name} is {'starting' if started else env.observed_state}: connected once it is ready")

    told: list[asyncio.Future[None]] = []

    def tell(line: str) -> None:
        told.append(asyncio.ensure_future(_notice(websocket, line)))
    try:
        ready = await until_ready(ctx, env.id, name, seen, tell)
    except NotReady as exc:
        await asyncio.gather(*told)
        await _fail(websocket, str(exc))
        return None
    await asyncio.gather(*told)  # every step shown before the shell's first bytes
    return ready


async def _notice(websocket: WebSocket, message: str) -> None:
    with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):  # the browser went away meanwhile
        await websocket.send_text(json.dumps({"t": "notice", "message": message}))


async def _fail(websocket: WebSocket, message: str) -> None:
    await websocket.send_text(json.dumps({"t": "error", "message": message}))
    await websocket.close(code=1011)
