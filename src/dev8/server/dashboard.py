"""The web dashboard's pages (server-rendered shells; their scripts use the REST API with
the session cookie and the CSRF token the page carries)."""
from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import Response
from fastapi.templating import Jinja2Templates

from dev8.core.errors import Unauthorized
from dev8.server.browser_auth import SESSION_COOKIE, csrf_token, login_required, session_user
from dev8.server.static import WEB_DIR

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(WEB_DIR / "templates"))  # autoescapes .html
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin", "Cache-Control": "no-store"}


@router.get("/")
async def environments_page(request: Request) -> Response:
    try:
        user = await asyncio.to_thread(session_user, request.app.state.ctx, request)
    except Unauthorized:
        return login_required(request)
    csrf = csrf_token(request.cookies[SESSION_COOKIE])
    return templates.TemplateResponse(request, "environments.html", {"user": user, "csrf": csrf},
                                      headers=PAGE_HEADERS)
