"""The web dashboard's pages: server-rendered shells whose scripts use the REST API with
the session cookie and the CSRF token each page carries. Someone else's environment, or
the admin page for a non-admin, answers exactly like a page that does not exist."""
from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from fastapi.templating import Jinja2Templates

from dev8.core import environments as envs
from dev8.core.errors import NotFound, Unauthorized
from dev8.server.api.images import builtin_images
from dev8.server.apps.auth import SESSION_COOKIE, LoginRequired, csrf_token, session_user
from dev8.server.static import WEB_DIR
from dev8.store.models import User

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(WEB_DIR / "templates"))  # autoescapes .html
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin", "Cache-Control": "no-store"}


def _render(request: Request, user: User, template: str, status_code: int = 200, **context: object) -> Response:
    csrf = csrf_token(request.cookies[SESSION_COOKIE])
    return templates.TemplateResponse(request, template, {"user": user, "csrf": csrf, **context},
                                      status_code=status_code, headers=PAGE_HEADERS)


async def page_user(request: Request) -> User:
    """The browser's user; without a session, the login page (which comes back here)."""
    try:
        return await asyncio.to_thread(session_user, request.app.state.ctx, request)
    except Unauthorized:
        raise LoginRequired from None


PageUser = Annotated[User, Depends(page_user)]


def _not_found(request: Request, user: User) -> Response:
    return _render(request, user, "not_found.html", status_code=404)


@router.get("/")
async def environments_page(request: Request, user: PageUser) -> Response:
    return _render(request, user, "environments.html")


@router.get("/new")
async def create_page(request: Request, user: PageUser) -> Response:
    settings = request.app.state.ctx.settings
    return _render(request, user, "create.html", images=builtin_images(settings), default_image=settings.default_image,
                   default_cpus=settings.default_cpus, default_memory=settings.default_memory,
                   default_idle_minutes=settings.idle_timeout // 60)


@router.get("/environments/{name}")
async def environment_page(name: str, request: Request, user: PageUser) -> Response:
    def exists() -> bool:
        with request.app.state.ctx.db.session() as s:
            try:
                envs.get_environment(s, user, name)
            except NotFound:
                return False
            return True
    if not await asyncio.to_thread(exists):
        return _not_found(request, user)
    return _render(request, user, "environment.html", name=name, images=builtin_images(request.app.state.ctx.settings))


@router.get("/prebuilds")
async def prebuilds_page(request: Request, user: PageUser) -> Response:
    return _render(request, user, "prebuilds.html")


@router.get("/settings")
async def settings_page(request: Request, user: PageUser) -> Response:
    return _render(request, user, "settings.html")


@router.get("/admin")
async def admin_page(request: Request, user: PageUser) -> Response:
    return _render(request, user, "admin.html") if user.is_admin else _not_found(request, user)
