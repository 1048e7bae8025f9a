"""Access to environment apps (VS Code, any listening port), HTTP and WebSocket, proxied
over the environment's SSH transport (see tunnels.py).

Paths: ``/@<user>/<env>/apps/vscode/…`` and ``/@<user>/<env>/ports/<port>/…``, on dev8's
own origin, for scripts and tools with a bearer token: only the owner gets through,
everyone else gets 404 on every path. A browser never gets an app here: a page served on
dev8's origin could read dev8's pages and act as the user (create tokens, read secrets),
and a preview or a VS Code extension is code from a repository or a dependency. Browsers
(the session cookie, or no credentials at all) are sent to the app's own host (hosts.py)
with the same path, or, where dev8 has no app domain, told why not. forward_http and
forward_ws serve both. dev8's cookies and the Authorization header never reach an environment.
"""
from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from urllib.parse import quote

import httpx
import websockets
from fastapi import APIRouter, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.background import BackgroundTask
from starlette.websockets import WebSocketState

from dev8.apphosts import APPS, NAME_RE, app_url, parse_port
from dev8.core import environments as envs
from dev8.core.activity import counts
from dev8.core.auth import hash_token
from dev8.core.connections import Unreachable
from dev8.core.errors import Dev8Error, Unauthorized
from dev8.core.states import State
from dev8.server.apps.auth import (
    DEV8_COOKIES,
    NotVisible,
    authorize_ws,
    not_found,
    not_found_for,
    request_token,
    resolve_env,
)
from dev8.server.context import ServerContext
from dev8.server.live import watching
from dev8.server.pages import home_link, message_page, page_or_json, wants_page
from dev8.store.models import Environment

router = APIRouter(include_in_schema=False)
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
              "transfer-encoding", "upgrade", "host", "authorization", "cookie", "content-length"}
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def strip_session_cookie(cookie_header: str) -> str:
    """The Cookie header without dev8's own cookies (the app's cookies pass)."""
    parts = [p.strip() for p in cookie_header.split(";") if p.strip()]
    return "; ".join(p for p in parts if p.split("=", 1)[0].strip() not in DEV8_COOKIES)


def _target(kind: str, target: str) -> int | None:
    return APPS.get(target) if kind == "apps" else parse_port(target)


@router.api_route("/@{owner}/{name}/{kind}/{target}", methods=METHODS)
async def add_slash(request: Request, owner: str, name: str, kind: str, target: str) -> Response:
    if kind not in {"apps", "ports"}:
        return not_found()
    return RedirectResponse(quote(f"/@{owner}/{name}/{kind}/{target}/") +
                            (f"?{request.url.query}" if request.url.query else ""), status_code=308)


@router.api_route("/@{owner}/{name}/{kind}/{target}/{path:path}", methods=METHODS)
async def proxy_http(request: Request, owner: str, name: str, kind: str, target: str, path: str) -> Response:
    ctx: ServerContext = request.app.state.ctx
    port = _target(kind, target) if kind in {"apps", "ports"} else None
    if port is None:
        if kind == "ports":
            return page_or_json(request, 400, "Not a port", f"{target!r} is not a port: ports are whole numbers "
                                "1-65535 in decimal, e.g. /ports/3000/")
        return not_found_for(request, home_link(request)[0])
    token, from_browser = request_token(request)
    if from_browser:
        return to_app_host(ctx, request, owner, name, target if kind == "apps" else port, path)
    try:
        _user, env = await asyncio.to_thread(resolve_env, ctx, token, owner, name)
    except Unauthorized:
        return JSONResponse({"detail": "login required"}, status_code=401, headers={"WWW-Authenticate": "Bearer"})
    except NotVisible:
        return not_found()
    return await forward_http(ctx, request, env, port, path)


def to_app_host(ctx: ServerContext, request: Request, owner: str, name: str, app: str | int, path: str) -> Response:
    """A browser asking for an app on dev8's origin: the same path on the app's own host
    (307 keeps method and body; the app host decides who may open it, as for any visit),
    or, without an app domain, a page saying why not and what works instead."""
    domain = ctx.settings.app_domain
    if not (NAME_RE.fullmatch(owner) and NAME_RE.fullmatch(name)):
        return not_found_for(request)  # no such environment; and never a redirect to a host built from junk
    if domain is None:
        return no_app_domain(request, name, app)
    rest = quote(path, safe="/:@!$&'()*+,;=~") + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(app_url(ctx.settings.base_url, domain, app, name, owner) + rest, status_code=307,
                            headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})


def no_app_domain(request: Request, name: str, app: str | int) -> Response:
    what = "VS Code" if app == "vscode" else f"port {app}"
    reason = (f"{what} of {name} opens on a web address of its own, so that code running in it (a dev server, "
              f"a dependency, an extension) cannot act as you on dev8; this dev8 has no such address: its admin "
              f"sets DEV8_WILDCARD_DOMAIN (see the README, App addresses)")
    instead = (f"dev8 port-forward {name} {app}:{app}" if app != "vscode"
               else f"dev8 config-ssh, then VS Code Desktop's Remote-SSH to dev8.{name}")
    return page_or_json(request, 403, f"{what} cannot open here", f"{reason}; meanwhile, from your computer: {instead}")


RETRY_SECONDS = 1
# A preview that has answered nothing for this long stops reloading and says what to check.
GIVE_UP_AFTER = 60.0
_silent_since: dict[tuple[str, int], float] = {}  # (env id, port) → first failed try of the current streak
# A browser opening an app dev8 starts itself (VS Code) right after `ready` finds it still
# starting; the request waits up to this long for it to answer rather than get the
# "Starting…" page, whose whole-second reloads would add up to a second to the first load.
APP_START_WAIT = 8.0
APP_PORTS = frozenset(APPS.values())


def no_such_app(request: Request, env: Environment) -> Response:
    """VS Code asked of an environment whose image has none (dev8/base): say so, for good,
    instead of a Starting page that never turns into VS Code."""
    message = (f"{env.name} runs {env.image}, which has no VS Code: use its terminal, `dev8 ssh {env.name}`, "
               f"or VS Code Desktop over Remote-SSH; an image with VS Code (dev8/fullstack) has it in the browser")
    return page_or_json(request, 404, f"No VS Code in {env.name}", message)


def _start_on_open(ctx: ServerContext, env_id: str, how: str) -> bool:
    with ctx.db.session() as s:
        env = s.get(Environment, env_id)
        started = env is not None and envs.start_on_connect(s, env, how, ctx.limits)
        s.commit()
        return started


def every(seconds: int) -> str:
    return "every second" if seconds == 1 else f"every {seconds} seconds"


def unavailable(request: Request, status: int, message: str) -> Response:
    """The app is not there (yet): JSON for scripts; for a browser opening a page, one that
    says so and reloads itself, so "Open VS Code" right after `ready` (code-server still
    starting) or a preview of a server being started turns into the app by itself."""
    if request.method != "GET" or not wants_page(request):
        return JSONResponse({"detail": message}, status_code=status)
    return message_page(status, "Starting…", [f"{message}.", f"This page tries again {every(RETRY_SECONDS)}."],
                        refresh=RETRY_SECONDS, framed_by_self=True, link=home_link(request))


def nothing_answers(request: Request, env: Environment, port: int) -> Response:
    """Nothing listens on ``port``: a page that tries again, for a minute; then one that
    stops and says what to check (a script gets the 502 at once)."""
    key = (env.id, port)
    now = time.monotonic()
    since = _silent_since.setdefault(key, now)
    if len(_silent_since) > 10_000:  # bounded: forget the oldest streaks
        for old in sorted(_silent_since, key=_silent_since.__getitem__)[:5_000]:
            _silent_since.pop(old, None)
    what = "VS Code" if port in APP_PORTS else f"port {port}"
    if now - since < GIVE_UP_AFTER or request.method != "GET" or not wants_page(request):
        return unavailable(request, 502, f"nothing answers on {what} in {env.name} yet")
    return message_page(502, f"Nothing on {what}", [
        f"Nothing has answered on {what} in {env.name} for {int(now - since) // 60 or 1} min.",
        f"Is anything listening on port {port} inside the environment? `dev8 ports {env.name}` lists what is "
        "(a server must listen on 127.0.0.1 or on all addresses). Reload this page to try again."],
        link=home_link(request), framed_by_self=True)


async def forward_http(ctx: ServerContext, request: Request, env: Environment, port: int, path: str,
                       *, owner_opening: bool = False) -> Response:
    """Relay ``request`` to 127.0.0.1:``port`` inside ``env`` (the caller has authorized it).
    ``owner_opening``: its owner's browser opens a page, which starts it when stopped."""
    ctx.activity.touch(env.id)  # a page, a preview's request, VS Code's assets: use
    opening_page = request.method == "GET" and wants_page(request)
    offered = (env.options or {}).get("apps")
    if port in APP_PORTS and offered is not None and not any(APPS[a] == port for a in offered if a in APPS):
        return no_such_app(request, env)
    if env.observed_state != State.RUNNING:
        if owner_opening and opening_page:
            try:
                what = "VS Code" if port in APP_PORTS else "a preview"
                if await asyncio.to_thread(_start_on_open, ctx, env.id, what):
                    ctx.reconciler.wake(env.id)
                    return unavailable(request, 503, f"starting {env.name}")
            except Dev8Error as exc:  # a start refused (a quota): say why, no retrying
                return JSONResponse({"detail": str(exc)}, status_code=409)
        if env.desired_state == "running":
            return unavailable(request, 503, f"{env.name} is starting ({env.observed_state})")
        return unavailable(request, 503, f"environment {env.name} is {env.observed_state}")
    try:
        client = await ctx.tunnels.http_client(env, port)
    except Unreachable as exc:
        return unavailable(request, 502, f"environment {env.name} is not reachable: {exc}")
    headers = [(k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP]
    if request.headers.get("cookie"):
        rest = strip_session_cookie(request.headers["cookie"])
        if rest:
            headers.append(("cookie", rest))
    headers.append(("host", request.headers.get("host", "localhost")))
    if request.headers.get("content-length", "").isdigit():
        headers.append(("content-length", request.headers["content-length"]))
    upstream_url = "http://localhost/" + path + (f"?{request.url.query}" if request.url.query else "")
    # Streamed both ways: an upload through VS Code or a preview is never held in memory.
    body = request.stream() if request.method not in {"GET", "HEAD", "OPTIONS"} else None
    opening_app = port in APP_PORTS and opening_page
    loop = asyncio.get_running_loop()
    deadline = loop.time() + (APP_START_WAIT if opening_app else 0)
    while True:
        try:
            upstream = await client.send(client.build_request(request.method, upstream_url, headers=headers,
                                                              content=body), stream=True, follow_redirects=False)
            break
        except httpx.HTTPError as exc:
            if isinstance(exc, httpx.TransportError) and loop.time() < deadline:  # a GET: safe to repeat
                await asyncio.sleep(0.1)
                continue
            return nothing_answers(request, env, port)
    _silent_since.pop((env.id, port), None)
    out_headers = [(k, v) for k, v in upstream.headers.multi_items()
                   if k.lower() not in HOP_BY_HOP - {"content-length"}]
    # Added to whatever the app sends (policies intersect): only its own origin may frame it
    # (VS Code frames its webviews), no other site.
    out_headers.append(("content-security-policy", "frame-ancestors 'self'"))

    async def relay() -> AsyncIterator[bytes]:
        async for chunk in upstream.aiter_raw():
            yield chunk

    response = StreamingResponse(relay(), status_code=upstream.status_code, background=BackgroundTask(upstream.aclose))
    response.raw_headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in out_headers]
    return response


@router.websocket("/@{owner}/{name}/{kind}/{target}/{path:path}")
async def proxy_ws(websocket: WebSocket, owner: str, name: str, kind: str, target: str, path: str) -> None:
    port = _target(kind, target) if kind in {"apps", "ports"} else None
    if port is None:
        await websocket.close(code=1008)
        return
    token, from_browser = request_token(websocket)
    if from_browser:  # a browser's app runs on its own host (to_app_host), never on dev8's origin
        await websocket.close(code=1008)
        return
    allowed = await authorize_ws(websocket, owner, name)
    if allowed is None:
        return
    ctx: ServerContext = websocket.app.state.ctx
    with watching(ctx.live, websocket, allowed[0].id, hash_token(token or ""), "websocket"):
        await forward_ws(ctx, websocket, allowed[1], port, path)


async def forward_ws(ctx: ServerContext, websocket: WebSocket, env: Environment, port: int, path: str) -> None:
    """Relay a WebSocket to 127.0.0.1:``port`` inside ``env`` (the caller has authorized it,
    Origin included); accepted only once the environment's side accepted."""
    if env.observed_state != State.RUNNING:
        await websocket.close(code=1013)
        return
    try:
        sock = await ctx.tunnels.socket_for(env, port)
    except Unreachable:
        await websocket.close(code=1013)
        return
    query = websocket.url.query
    host = websocket.headers.get("host", "localhost")
    headers = [(k, v) for k, v in websocket.headers.items()
               if k.lower() not in HOP_BY_HOP | {"origin", "sec-websocket-key", "sec-websocket-version",
                                                  "sec-websocket-extensions", "sec-websocket-protocol"}]
    cookie = strip_session_cookie(websocket.headers.get("cookie", ""))
    if cookie:
        headers.append(("cookie", cookie))
    protocols = [p.strip() for p in websocket.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
    try:
        upstream = await websockets.unix_connect(
            sock, f"ws://{host}/{path}" + (f"?{query}" if query else ""), additional_headers=headers,
            origin=websocket.headers.get("origin"), subprotocols=protocols or None,
            max_size=None, compression=None, open_timeout=30)
    except (OSError, websockets.WebSocketException):
        await websocket.close(code=1011)
        return
    await websocket.accept(subprotocol=upstream.subprotocol)

    # Frames either way are use of the environment, keep-alives and acks aside (core.activity).
    touch = ctx.activity.touch

    async def down() -> None:
        async for message in upstream:
            if counts(len(message)):
                touch(env.id)
            if isinstance(message, bytes):
                await websocket.send_bytes(message)
            else:
                await websocket.send_text(message)

    async def up() -> None:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("bytes")
            if data is None:
                data = message.get("text")
            if data is not None:
                if counts(len(data)):
                    touch(env.id)
                await upstream.send(data)

    tasks = [asyncio.create_task(down()), asyncio.create_task(up())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
        # Either side going away ends the relay; that is how WebSockets end, not an error.
        await asyncio.gather(*tasks, return_exceptions=True)
        await upstream.close()
        if websocket.client_state == WebSocketState.CONNECTED:
            with contextlib.suppress(RuntimeError, WebSocketDisconnect):
                await websocket.close()
