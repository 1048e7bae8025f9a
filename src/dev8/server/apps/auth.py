"""Who is asking, from a browser or the CLI, for an environment's app, port or terminal.

The browser sends dev8's session cookie (set by /login); the CLI sends a bearer token.
Everyone but the owner gets the same answer as for an environment that does not exist.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections.abc import Callable
from urllib.parse import quote, urlsplit

from fastapi.responses import JSONResponse, RedirectResponse, Response
from sqlalchemy import select
from starlette.datastructures import Headers
from starlette.requests import HTTPConnection
from starlette.websockets import WebSocket

from dev8.core import auth
from dev8.core.errors import Unauthorized
from dev8.server.context import ServerContext
from dev8.server.pages import message_page, wants_page
from dev8.store.models import Environment, User, note_use

SESSION_COOKIE = "dev8_session"
APP_COOKIE = "dev8_app"  # host-only, on an app subdomain (hosts.py)
DEV8_COOKIES = {SESSION_COOKIE, APP_COOKIE}


def csrf_token(session_token: str) -> str:
    """The CSRF token for a browser session: derived from the HttpOnly session cookie, which
    another site's page can neither read nor guess, so it cannot compute this either."""
    return hmac.new(session_token.encode(), b"dev8-csrf", hashlib.sha256).hexdigest()


def csrf_ok(session_token: str, given: str) -> bool:
    return hmac.compare_digest(csrf_token(session_token), given)


class NotVisible(Exception):
    """Not found, or not this user's: answered the same way."""


class LoginRequired(Exception):
    """A page needs a logged-in browser; the app answers with ``login_required``."""


def request_token(conn: HTTPConnection) -> tuple[str | None, bool]:
    """The caller's token and whether it came from the session cookie."""
    scheme, _, value = conn.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip(), False
    return conn.cookies.get(SESSION_COOKIE), True


def session_user(ctx: ServerContext, conn: HTTPConnection) -> User:
    """The user of the browser session cookie (blocking: call in a thread); Unauthorized
    without a valid one."""
    token = conn.cookies.get(SESSION_COOKIE)
    if not token:
        raise Unauthorized("login required")
    with ctx.db.session() as s:
        return auth.user_for_token(s, token)


# A page load is a burst of requests with the same cookie: the answer is remembered this
# long (a revoked token or a stopped environment is noticed at most this late).
RECENT_SECONDS = 2.0


def resolve_env(ctx: ServerContext, token: str | None, owner: str, name: str) -> tuple[User, Environment]:
    """The caller and ``owner``'s environment ``name``; Unauthorized without a valid token,
    NotVisible when it does not exist or is not the caller's."""
    if not token:
        raise Unauthorized("login required")
    key = (auth.hash_token(token), owner, name)
    recent = ctx.recent_auth.get(key)
    if recent is not None and recent[0] > time.monotonic():
        return recent[1], recent[2]
    user, env = _lookup(ctx, token, owner, name)
    if len(ctx.recent_auth) > 10_000:
        ctx.recent_auth.clear()
    ctx.recent_auth[key] = (time.monotonic() + RECENT_SECONDS, user, env)
    return user, env


def _lookup(ctx: ServerContext, token: str, owner: str, name: str) -> tuple[User, Environment]:
    with ctx.db.session() as s:
        user = auth.user_for_token(s, token)
        env = s.scalar(select(Environment).where(Environment.owner_id == user.id, Environment.name == name))
        if user.username != owner or env is None or env.desired_state == "deleted":
            raise NotVisible
        note_use(env)  # the owner opened an app or the terminal
        return user, env


def same_origin(ctx: ServerContext, headers: Headers) -> bool:
    """A cookie-authenticated WebSocket upgrade must come from dev8's own origin (cross-site
    WebSocket hijacking); a bearer token cannot be sent by another site's page."""
    origin, host = headers.get("origin"), headers.get("host")
    if not origin or origin == "null":
        return False
    allowed = urlsplit(ctx.settings.base_url)
    got = urlsplit(origin)
    return (got.scheme, got.netloc) == (allowed.scheme, allowed.netloc) or (
        ctx.settings.public_url is None and host is not None and got.netloc == host and got.scheme in {"http", "https"})


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})  # the methods that change nothing


def from_own_page(headers: Headers, own_origin: Callable[[str], bool]) -> bool:
    """Whether a browser request comes from the target origin's own pages, or from no page
    at all (a typed URL, a bookmark). Browsers say where a request comes from
    (``Sec-Fetch-Site``, decisive where sent: Origin may be "null" on a no-referrer page),
    else ``Origin``. Clients that send neither (curl, scripts) are not browsers another
    site can drive. State-changing requests that ride on a cookie must pass this: a
    sibling app host is the same *site*, so its forms carry the cookie."""
    fetch_site = headers.get("sec-fetch-site")
    if fetch_site is not None:
        return fetch_site in ("same-origin", "none")
    origin = headers.get("origin")
    return origin is None or own_origin(origin)


def from_dev8_page(ctx: ServerContext, headers: Headers) -> bool:
    """``from_own_page`` for dev8's own origin (its login form, path-mode apps)."""
    return from_own_page(headers, lambda _origin: same_origin(ctx, headers))


async def authorize_ws(websocket: WebSocket, owner: str, name: str) -> tuple[User, Environment] | None:
    """The caller and the environment for a WebSocket on dev8's own host, or None after
    refusing the upgrade (403): a foreign Origin with the cookie, no or bad credentials,
    not the caller's."""
    ctx: ServerContext = websocket.app.state.ctx
    token, from_cookie = request_token(websocket)
    if from_cookie and not same_origin(ctx, websocket.headers):
        await websocket.close(code=1008)
        return None
    try:
        return await asyncio.to_thread(resolve_env, ctx, token, owner, name)
    except (Unauthorized, NotVisible):
        await websocket.close(code=1008)
        return None


def login_required(conn: HTTPConnection) -> Response:
    """HTML clients go to the login page (and come back); others get 401."""
    if wants_page(conn):
        target = conn.url.path + (f"?{conn.url.query}" if conn.url.query else "")
        return RedirectResponse("/login?next=" + quote(target, safe=""), status_code=303)
    return JSONResponse({"detail": "login required"}, status_code=401)


def not_found() -> Response:
    return JSONResponse({"detail": "not found"}, status_code=404)


def not_found_page(home: str = "/") -> Response:
    """For a browser: nothing here (or not yours: the same answer), and the way back."""
    return message_page(404, "Not found", ["There is no such environment, app or page here, or it is not yours "
                                           "to open."], link=(home, "Back to your environments"))


def not_found_for(conn: HTTPConnection, home: str = "/") -> Response:
    """404: the page for a browser opening a page, JSON for everything else."""
    return not_found_page(home) if wants_page(conn) else not_found()


def safe_next(target: str | None) -> str:
    """Only same-origin relative paths: no scheme, no host, no protocol-relative `//`."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target \
            or any(c in target for c in "\r\n\t"):
        return "/"
    return target

