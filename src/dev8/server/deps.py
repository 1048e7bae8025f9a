"""FastAPI dependencies: the store session and the authenticated user."""
from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from typing import Annotated, Any

from fastapi import Depends, Path, Request
from fastapi.routing import APIRoute
from sqlalchemy.orm import Session

from dev8.core import auth
from dev8.core.errors import Forbidden, Unauthorized
from dev8.server.apps.auth import SAFE_METHODS, SESSION_COOKIE, csrf_ok
from dev8.server.context import ServerContext
from dev8.server.schemas import MAX_ROW_ID
from dev8.store.models import User


def get_ctx(request: Request) -> ServerContext:
    return request.app.state.ctx


Ctx = Annotated[ServerContext, Depends(get_ctx)]


def get_session(ctx: Ctx) -> Iterator[Session]:
    with ctx.db.session() as s:
        yield s


# "function" scope: commit when the handler returns, before the response is sent. FastAPI's
# default ("request") commits after sending, so a client re-reading at once could miss the
# change, and a commit that fails would already have been answered with success.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


def _commit_when_done(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(endpoint)
    def run(*args: Any, **kwargs: Any) -> Any:
        result = endpoint(*args, **kwargs)
        for value in kwargs.values():
            if isinstance(value, Session):
                value.commit()
        return result
    return run


class StoreRoute(APIRoute):
    """A route whose synchronous handler commits its session in its own worker thread, as
    it returns. Otherwise the session keeps its database connection until FastAPI's next
    hops (checking the response in another worker thread, then the session's exit): under
    load every worker thread can end up waiting for a connection held by a request that
    waits for a worker thread, until the pool times out."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        if not inspect.iscoroutinefunction(endpoint):
            endpoint = _commit_when_done(endpoint)
        super().__init__(path, endpoint, **kwargs)


# A row id in a path: larger numbers cannot be in the database (and crash its driver).
RowId = Annotated[int, Path(ge=1, le=MAX_ROW_ID)]



def current_user(request: Request, s: SessionDep) -> User:
    """The caller by bearer token (CLI, scripts) or by the browser's session cookie (the
    dashboard); with the cookie, a state-changing request must carry the session's CSRF
    token in X-CSRF-Token."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip() if scheme.lower() == "bearer" else ""
    if not token:
        token = request.cookies.get(SESSION_COOKIE, "")
        if not token:
            raise Unauthorized("missing bearer token (run `dev8 login`)")
        if request.method not in SAFE_METHODS and not csrf_ok(token, request.headers.get("x-csrf-token", "")):
            raise Forbidden("missing or wrong CSRF token (X-CSRF-Token)")
    user = auth.user_for_token(s, token)
    s.commit()  # records last_used_at even if the request later fails
    return user


CurrentUser = Annotated[User, Depends(current_user)]
