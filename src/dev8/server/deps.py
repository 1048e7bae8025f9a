"""FastAPI dependencies: the store session and the authenticated user."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from dev8.core import auth
from dev8.core.errors import Unauthorized
from dev8.server.context import ServerContext
from dev8.store.models import User


def get_ctx(request: Request) -> ServerContext:
    return request.app.state.ctx


Ctx = Annotated[ServerContext, Depends(get_ctx)]


def get_session(ctx: Ctx) -> Iterator[Session]:
    with ctx.db.session() as s:
        yield s


SessionDep = Annotated[Session, Depends(get_session)]


def current_user(request: Request, s: SessionDep) -> User:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing bearer token (run `dev8 login`)")
    user = auth.user_for_token(s, token.strip())
    s.commit()  # records last_used_at even if the request later fails
    return user


CurrentUser = Annotated[User, Depends(current_user)]
