"""The small pages dev8 shows a browser instead of an app (not found, starting, cannot
open here): one look, text only (escaped here), no script, a strict CSP."""
from __future__ import annotations

import html

from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.requests import HTTPConnection


def message_page(status: int, title: str, paragraphs: list[str], *, link: tuple[str, str] | None = None,
                 refresh: int | None = None, framed_by_self: bool = False) -> HTMLResponse:
    """``paragraphs`` are text; ``link`` is (href, text); ``refresh`` reloads the page every
    that many seconds; ``framed_by_self``: the app's own pages may frame it (VS Code)."""
    body = "".join(f"<p>{html.escape(p)}</p>" for p in paragraphs)
    if link is not None:
        body += f'<p><a href="{html.escape(link[0], quote=True)}">{html.escape(link[1])}</a></p>'
    meta = f'<meta http-equiv="refresh" content="{refresh}">' if refresh else ""
    page = (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">{meta}'
            f'<title>{html.escape(title)} · dev8</title></head>'
            f'<body style="font:16px system-ui,sans-serif;margin:4rem auto;max-width:36rem;padding:0 1rem">'
            f'<main><h1>{html.escape(title)}</h1>{body}</main></body></html>')
    frame = "'self'" if framed_by_self else "'none'"
    headers = {"Cache-Control": "no-store",
               "Content-Security-Policy": f"default-src 'none'; style-src 'unsafe-inline'; frame-ancestors {frame}"}
    if refresh:
        headers["Retry-After"] = str(refresh)
    return HTMLResponse(page, status_code=status, headers=headers)


def wants_page(conn: HTTPConnection) -> bool:
    """A browser opening a page (not a script, not a subresource)."""
    return "text/html" in conn.headers.get("accept", "")


def home_link(conn: HTTPConnection) -> tuple[str, str]:
    """The way back to the dashboard, absolute: these pages are also shown on app hosts."""
    ctx = getattr(conn.app.state, "ctx", None)
    base = str(ctx.settings.base_url).rstrip("/") if ctx is not None else ""
    return f"{base}/", "Back to your environments"


def page_or_json(conn: HTTPConnection, status: int, title: str, message: str, **kw: object) -> Response:
    """``message_page`` (with the way back unless ``link`` says otherwise) for a browser
    opening a page, ``{"detail": message}`` for the rest."""
    if not wants_page(conn):
        return JSONResponse({"detail": message}, status_code=status)
    kw.setdefault("link", home_link(conn))
    return message_page(status, title, [message], **kw)  # type: ignore[arg-type]
