"""App subdomains: ``vscode--<env>--<user>.<wildcard>`` and ``<port>--<env>--<user>.<wildcard>``.

Each app gets an origin of its own, so a preview's scripts can read neither dev8's cookies
nor another app's pages. dev8's session cookie is host-only on dev8's own host and never
reaches these hosts; instead, the first visit goes to ``/app-auth`` on dev8's host, which
(for a logged-in user allowed to open the app) hands out a one-time ticket by redirect,
and the app host trades it for a host-only ``dev8_app`` cookie. Ports shared as
``authenticated`` open for any dev8 user that way, ``public`` ones for anyone.

Tickets and app sessions: sessions.py.
"""
from __future__ import annotations

import asyncio
from urllib.parse import quote, urlencode, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketClose

from dev8.apphosts import AppHost, parse_app_host
from dev8.core import sharing
from dev8.core.auth import hash_token
from dev8.core.errors import Unauthorized
from dev8.server.apps.auth import (
    APP_COOKIE,
    SAFE_METHODS,
    SESSION_COOKIE,
    NotVisible,
    from_own_page,
    login_required,
    not_found_for,
    not_found_page,
    safe_next,
    session_user,
)
from dev8.server.apps.proxy import METHODS, forward_http, forward_ws
from dev8.server.apps.sessions import SESSION_SECONDS
from dev8.server.context import ServerContext
from dev8.server.live import watching
from dev8.server.pages import wants_page
from dev8.store.models import Environment, User, note_use

AUTH_PATH = "/.dev8/auth"  # on every app host; shadows that path of the app


def authorize(ctx: ServerContext, target: AppHost, viewer_id: int | None) -> Environment:
    """The environment ``target`` names if ``viewer_id`` (None: anonymous) may open it.
    Unauthorized when logging in might help; NotVisible otherwise (also for names that do
    not exist, or read two ways)."""
    with ctx.db.session() as s:
        viewer = s.get(User, viewer_id) if viewer_id is not None else None
        viewer = None if viewer is None or viewer.disabled else viewer
        found: list[Environment] = []
        for env_name, username in target.candidates:
            owner = s.scalar(select(User).where(User.username == username))
            env = owner and s.scalar(select(Environment).where(Environment.owner_id == owner.id,
                                                               Environment.name == env_name))
            if isinstance(env, Environment) and owner is not None and not owner.disabled \
                    and env.desired_state != "deleted":
                found.append(env)
        if len(found) == 1:
            env = found[0]
            level = sharing.share_level(s, env.id, target.port) if target.is_port else "private"
            if sharing.may_open(level, viewer, env.owner_id):
                if viewer is not None and viewer.id == env.owner_id:
                    note_use(env)
                return env
        if viewer is None:
            raise Unauthorized("login required")
        raise NotVisible


def _app_origin(scheme: str, host: str) -> str:
    return f"{'https' if scheme in ('https', 'wss') else 'http'}://{host}"


async def app_http(request: Request) -> Response:
    ctx: ServerContext = request.app.state.ctx
    target: AppHost = request.scope["dev8.app"]
    # A state-changing request from elsewhere (a sibling app's form) is anonymous: it opens a
    # public preview as it would for anyone, and a private one not at all.
    own = _app_origin(request.url.scheme, target.host)
    trusted = request.method in SAFE_METHODS or from_own_page(request.headers, lambda origin: origin == own)
    viewer: int | None = None

    def look() -> Environment:
        nonlocal viewer
        if trusted:
            found = ctx.app_sessions.viewer(request.cookies.get(APP_COOKIE), target.host)
            viewer = found[0] if found else None
        return authorize(ctx, target, viewer)
    try:
        env = await asyncio.to_thread(look)
    except Unauthorized:
        if request.method == "GET" and wants_page(request):
            back = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"{ctx.settings.base_url}/app-auth?" + urlencode(
                {"host": target.host, "next": back}), status_code=303)
        return JSONResponse({"detail": "login required"}, status_code=401)
    except NotVisible:
        return not_found_for(request, ctx.settings.base_url + "/")
    return await forward_http(ctx, request, env, target.port, request.url.path.lstrip("/"),
                              owner_opening=viewer is not None and viewer == env.owner_id)


async def redeem_ticket(request: Request) -> Response:
    ctx: ServerContext = request.app.state.ctx
    target: AppHost = request.scope["dev8.app"]
    session = await asyncio.to_thread(ctx.app_sessions.redeem, request.query_params.get("ticket", ""), target.host)
    if session is None:
        return HTMLResponse("<!doctype html><title>link expired</title><p>This sign-in link has expired. "
                            "Open the app again from dev8.</p>", status_code=403,
                            headers={"Content-Security-Policy": "default-src 'none'"})
    response = RedirectResponse(safe_next(request.query_params.get("next")), status_code=303,
                                headers={"Referrer-Policy": "no-referrer"})
    response.set_cookie(APP_COOKIE, session, max_age=SESSION_SECONDS, httponly=True, samesite="lax",
                        secure=request.url.scheme == "https", path="/")
    return response


async def app_ws(websocket: WebSocket) -> None:
    ctx: ServerContext = websocket.app.state.ctx
    target: AppHost = websocket.scope["dev8.app"]
    # The app cookie counts only on upgrades from the app's own origin; a sibling app (same
    # site, so the cookie is sent) or any other page is treated as anonymous.
    # browsers always send an Origin on a WebSocket upgrade
    from_self = websocket.headers.get("origin") == _app_origin(websocket.url.scheme, target.host)
    found: tuple[int, str] | None = None

    def look() -> Environment:
        nonlocal found
        if from_self:
            found = ctx.app_sessions.viewer(websocket.cookies.get(APP_COOKIE), target.host)
        return authorize(ctx, target, found[0] if found else None)
    try:
        env = await asyncio.to_thread(look)
    except (Unauthorized, NotVisible):
        await websocket.close(code=1008)
        return
    viewer, minted_by = found or (None, None)
    with watching(ctx.live, websocket, viewer, minted_by, "websocket"):
        await forward_ws(ctx, websocket, env, target.port, websocket.url.path.lstrip("/"))


class AppSubdomains:
    """ASGI middleware: requests whose Host is an app subdomain go to that app; the rest
    to dev8 itself."""

    def __init__(self, app: ASGIApp, ctx: ServerContext) -> None:
        self.app, self.ctx = app, ctx
        self.apps = Starlette(routes=[Route(AUTH_PATH, redeem_ticket, methods=["GET"]),
                                      Route("/{path:path}", app_http, methods=METHODS),
                                      WebSocketRoute("/{path:path}", app_ws)])
        self.apps.state.ctx = ctx

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        domain = self.ctx.settings.app_domain
        if scope["type"] in ("http", "websocket") and domain:
            host = Headers(scope=scope).get("host", "").strip().lower()
            target = parse_app_host(host, domain)
            if target is not None:
                return await self.apps({**scope, "dev8.app": target}, receive, send)
            if host.endswith("." + domain):  # under the app domain but no app: never dev8's own pages
                return await (not_found_for(Request(scope), self.ctx.settings.base_url + "/") if scope["type"] == "http"
                              else WebSocketClose(code=1008))(scope, receive, send)
        await self.app(scope, receive, send)


router = APIRouter(include_in_schema=False)


@router.get("/app-auth")
async def app_auth(request: Request, host: str = "", next: str = "/") -> Response:
    """On dev8's own host: send a logged-in user to an app host with a one-time ticket."""
    ctx: ServerContext = request.app.state.ctx
    target = parse_app_host(host, ctx.settings.app_domain)
    if target is None:
        return JSONResponse({"detail": "not an app host of this dev8"}, status_code=404)

    def check() -> str:
        user_id = session_user(ctx, request).id
        authorize(ctx, target, user_id)
        return ctx.app_sessions.issue_ticket(user_id, target.host, hash_token(request.cookies.get(SESSION_COOKIE, "")))
    try:
        ticket = await asyncio.to_thread(check)
    except Unauthorized:
        return login_required(request)
    except NotVisible:
        return not_found_page()
    scheme = urlsplit(ctx.settings.base_url).scheme if ctx.settings.public_url else request.url.scheme
    url = f"{_app_origin(scheme, target.host)}{AUTH_PATH}?ticket={ticket}&next={quote(next, safe='')}"
    return RedirectResponse(url, status_code=303,
                            headers={"Referrer-Policy": "no-referrer", "Cache-Control": "no-store"})
