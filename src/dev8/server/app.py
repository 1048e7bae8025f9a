"""ASGI application factory."""
from __future__ import annotations

import json

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from sqlalchemy.exc import IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dev8 import __version__
from dev8.core.crypto import KeyServiceUnavailable
from dev8.core.errors import (
    Conflict,
    Dev8Error,
    Forbidden,
    Invalid,
    NotFound,
    RuntimeUnavailable,
    TooManyAttempts,
    Unauthorized,
)
from dev8.server import dashboard, static, web
from dev8.server.api import account, admin, environments, images, prebuilds, templates
from dev8.server.apps import hosts, proxy, terminal
from dev8.server.apps.auth import LoginRequired, login_required, not_found_page
from dev8.server.apps.forwarded import TrustedProxyHeaders
from dev8.server.context import ServerContext
from dev8.server.pages import wants_page

STATUS = {NotFound: 404, Conflict: 409, Invalid: 422, Unauthorized: 401,
          TooManyAttempts: 429, Forbidden: 403}


class BodyLimit:
    """Reject request bodies over ``limit`` bytes with 413, whether or not Content-Length is sent.

    API bodies are small, so the body is read up front (bounded) and replayed to the app;
    that way an oversized chunked body never reaches a handler or the store. Requests for
    an environment's apps and ports (``/@user/env/…``) are not dev8's to judge: the proxy
    streams them through unbuffered.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/@"):
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            return await _too_large(self.limit, send)
        buffered: list[Message] = []
        seen = 0
        while True:
            message = await receive()
            buffered.append(message)
            seen += len(message.get("body", b""))
            if seen > self.limit:
                return await _too_large(self.limit, send)
            if message["type"] != "http.request" or not message.get("more_body"):
                break

        async def replay() -> Message:
            return buffered.pop(0) if buffered else await receive()
        await self.app(scope, replay, send)


async def _too_large(limit: int, send: Send) -> None:
    body = b'{"detail":"request body larger than %d bytes"}' % limit
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def invalid_request_body(errors: list[dict]) -> tuple[int, dict]:
    """Pydantic's issues as the API's one error shape: 400 for a body that is not JSON (or
    none where one is needed), else 422 with the first issue as a sentence, its field, and
    every issue listed."""
    if any(e.get("type") == "json_invalid" for e in errors):
        return 400, {"detail": "the body is not valid JSON"}
    if any(e.get("type") == "missing" and tuple(e.get("loc", ())) == ("body",) for e in errors):
        return 400, {"detail": "the body is empty: send a JSON object"}
    first = errors[0]
    path = [str(p) for p in first.get("loc", ())[1:]] if first.get("loc", ("",))[0] in ("body", "query", "path") \
        else [str(p) for p in first.get("loc", ())]
    field = ".".join(path) or None
    message = str(first.get("msg", "invalid"))
    message = message[:1].lower() + message[1:]
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return 422, {"detail": f"{field}: {message}{more}" if field else f"{message}{more}", "field": field,
                 "issues": errors}


def create_app(ctx: ServerContext) -> FastAPI:
    app = FastAPI(title="dev8", version=__version__, openapi_url="/api/v1/openapi.json",
                  docs_url="/api/v1/docs", redoc_url=None)
    app.state.ctx = ctx

    @app.exception_handler(Dev8Error)
    async def _domain_error(_request: Request, exc: Dev8Error) -> JSONResponse:
        code = next((c for t, c in STATUS.items() if isinstance(exc, t)), 400)
        headers = {"WWW-Authenticate": "Bearer"} if code == 401 else None
        if isinstance(exc, TooManyAttempts):
            headers = {"Retry-After": str(exc.retry_after)}
        body = {"detail": str(exc), **({"field": exc.field} if exc.field else {})}
        return JSONResponse(body, status_code=code, headers=headers)

    @app.exception_handler(RuntimeUnavailable)
    async def _runtime_unavailable(_request: Request, exc: RuntimeUnavailable) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)

    @app.exception_handler(KeyServiceUnavailable)
    async def _key_service_unavailable(_request: Request, exc: KeyServiceUnavailable) -> JSONResponse:
        return JSONResponse({"detail": f"secrets cannot be used now: {exc}"}, status_code=503,
                            headers={"Retry-After": "30"})

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(_request: Request, exc: RequestValidationError) -> Response:
        # FastAPI's own answer echoes each rejected input: that may be a secret's value, and
        # text that is not Unicode (a lone surrogate) cannot even be encoded back. Without it,
        # and ASCII-escaped, every error can be answered.
        errors = [{k: v for k, v in e.items() if k not in ("input", "ctx", "url")} for e in exc.errors()]
        status, body = invalid_request_body(errors)
        return Response(json.dumps(jsonable_encoder(body), ensure_ascii=True), status_code=status,
                        media_type="application/json")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404 and wants_page(request):  # a mistyped address: dev8's page and the way back
            return not_found_page()
        if exc.status_code != 405:
            return await http_exception_handler(request, exc)
        # Starlette names only the first route that matched the path; a path served by
        # several routes (GET and POST) allows all of their methods.
        allowed = sorted({m for route in app.router.routes if isinstance(route, APIRoute)
                          and route.matches(request.scope)[0] != Match.NONE for m in route.methods or ()})
        return JSONResponse({"detail": "Method Not Allowed"}, status_code=405, headers={"Allow": ", ".join(allowed)})

    @app.exception_handler(IntegrityError)
    async def _concurrent_change(_request: Request, _exc: IntegrityError) -> JSONResponse:
        # A uniqueness race the core did not name itself (it names the ones it knows).
        return JSONResponse({"detail": "a concurrent request changed the same thing first; nothing was "
                                       "changed by this one: try again"}, status_code=409)

    @app.exception_handler(LoginRequired)
    async def _login_required(request: Request, _exc: LoginRequired) -> Response:
        return login_required(request)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict:
        try:
            await ctx.reconciler.health.check()
            runtime = "ok"
        except RuntimeUnavailable as exc:
            runtime = str(exc)
        leases, notifier = ctx.reconciler.leases, ctx.reconciler.notifier
        # How other replicas' events reach this one's streams (core.notify).
        feed = "local" if not leases.shared else "notify" if notifier is not None and notifier.fed else "poll"
        return {"status": "ok", "version": __version__, "runtime": runtime, "replica": leases.replica,
                "events": feed}

    app.include_router(web.router)
    app.include_router(static.router)
    app.include_router(dashboard.router)
    app.include_router(hosts.router)
    app.include_router(terminal.router)  # before the proxy's /@user/env/{kind}/… routes
    app.include_router(proxy.router)
    app.include_router(account.router)
    app.include_router(environments.router)
    app.include_router(admin.router)
    app.include_router(templates.router)
    app.include_router(prebuilds.router)
    app.include_router(images.router)
    # Outermost last: forwarded headers settle the Host, which picks app subdomain or dev8;
    # only dev8's own routes get the body limit.
    app.add_middleware(BodyLimit, limit=ctx.settings.max_body_bytes)
    app.add_middleware(hosts.AppSubdomains, ctx=ctx)
    app.add_middleware(TrustedProxyHeaders, trusted=ctx.settings.trusted_networks)
    return app
