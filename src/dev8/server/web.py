"""The pages outside the dashboard: first-run setup, login and logout."""
from __future__ import annotations

import asyncio
import html
from datetime import timedelta

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from dev8.core import auth
from dev8.core.errors import TooManyAttempts, Unauthorized
from dev8.server.apps.auth import SESSION_COOKIE, csrf_ok, from_dev8_page, safe_next

router = APIRouter(include_in_schema=False)
SESSION_LIFETIME = timedelta(days=7)
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'unsafe-inline'; "
                               "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}
STYLE = """<style>*{box-sizing:border-box}
body{font:16px system-ui,sans-serif;max-width:28rem;margin:4rem auto;padding:0 1rem}
label,input,button{display:block;width:100%;margin:.4rem 0}input,button{padding:.5rem;font:inherit}
pre{white-space:pre-wrap;word-break:break-all;background:#f3f3f3;padding:.6rem}.err{color:#b00020}</style>"""


def login_page(next_url: str, error: str = "", email: str = "") -> str:
    """The form; after a wrong password the email stays filled in and the password field
    has the focus."""
    err = f'<p class="err" role="alert">{html.escape(error)}</p>' if error else ""
    focus_email, focus_password = ("", " autofocus") if email else (" autofocus", "")
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>dev8 · log in</title>{STYLE}</head>
<body><main><h1>Log in to dev8</h1>{err}<form method="post" action="/login">
<input type="hidden" name="next" value="{html.escape(next_url)}">
<label>Email <input name="email" type="email" required autocomplete="username"
 value="{html.escape(email)}"{focus_email}></label>
<label>Password <input name="password" type="password" required autocomplete="current-password"{focus_password}></label>
<button>Log in</button></form></main></body></html>"""


@router.get("/login", response_class=HTMLResponse)
def login_form(next: str = "/") -> HTMLResponse:
    return HTMLResponse(login_page(safe_next(next)), headers=PAGE_HEADERS)


@router.post("/login")
async def login_submit(request: Request) -> Response:
    ctx = request.app.state.ctx
    if not from_dev8_page(ctx, request.headers):
        # Login CSRF: another site (or an app host, a sibling on the same site) posting its
        # own credentials would log the browser into the attacker's account.
        return HTMLResponse("cross-site login refused", status_code=403, headers=PAGE_HEADERS)
    form = await request.form()
    email, password = str(form.get("email", "")), str(form.get("password", ""))
    target = safe_next(str(form.get("next", "/")))

    def check() -> str:
        with ctx.db.session() as s:
            user = auth.password_login(s, ctx.login_throttle, email=email, password=password,
                                       client=request.client.host if request.client else "")
            return auth.create_token(s, user, name=auth.BROWSER_SESSION, expires_in=SESSION_LIFETIME)
    try:
        token = await asyncio.to_thread(check)
    except Unauthorized:
        return HTMLResponse(login_page(target, "Wrong email or password.", email[:254]), status_code=401,
                            headers=PAGE_HEADERS)
    except TooManyAttempts as exc:
        return HTMLResponse(login_page(target, f"Too many failed logins. Try again in {exc.retry_after} seconds.",
                                       email[:254]),
                            status_code=429, headers={**PAGE_HEADERS, "Retry-After": str(exc.retry_after)})
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(SESSION_COOKIE, token, max_age=int(SESSION_LIFETIME.total_seconds()), httponly=True,
                        samesite="lax", secure=request.url.scheme == "https", path="/")
    return response

@router.post("/logout")
async def logout(request: Request) -> Response:
    """End the browser session (its token is deleted); the form carries the CSRF token."""
    form = await request.form()
    token = request.cookies.get(SESSION_COOKIE, "")
    if token:
        if not csrf_ok(token, str(form.get("csrf", ""))):
            return HTMLResponse("missing or wrong CSRF token", status_code=403, headers=PAGE_HEADERS)
        ctx = request.app.state.ctx

        def revoke() -> None:
            with ctx.db.session() as s:
                auth.revoke_token_value(s, token)
            ctx.app_sessions.end(auth.hash_token(token))  # and the app hosts it opened, on every replica
        await asyncio.to_thread(revoke)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response

SETUP_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>dev8 · first admin</title>
""" + STYLE + """</head>
<body><main><h1>Create the first admin</h1>
<form id="f"><label>Email <input name="email" type="email" required autocomplete="username"></label>
<label>Password (8+ characters) <input name="password" type="password" minlength="8" required
 autocomplete="new-password"></label><button>Create admin</button></form>
<p id="out" role="status"></p></main>
<script src="/static/setup.js"></script>
</body></html>"""


@router.get("/setup", response_class=HTMLResponse)
def setup_page() -> HTMLResponse:
    return HTMLResponse(SETUP_PAGE, headers=PAGE_HEADERS)
