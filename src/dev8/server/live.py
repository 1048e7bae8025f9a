"""Live connections (gateway SSH sessions, browser terminals, proxied WebSockets) and what
each rides on: a user, and for browser ones the dev8 session token. Every couple of seconds
one query checks them all; a connection whose user was disabled (or removed) or whose token
was revoked, expired or ended by a password change is closed, the app-host sessions that
token minted end with it, and the audit log says so. Checking the store (not an in-process
signal) also catches changes made by another replica or by `dev8 admin` on the host.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from sqlalchemy import select
from starlette.websockets import WebSocket

from dev8.core import audit
from dev8.server.apps.sessions import AppSessions
from dev8.store.db import Database
from dev8.store.models import ApiToken, User, as_utc, utcnow

log = logging.getLogger("dev8.live")
CHECK_EVERY = 2.0
SERVICE_RESTART = 1012  # RFC 6455's "service restart": the pages reconnect at once
RESTARTING = "this dev8 server is restarting; reconnect (any other server serves you)"


@dataclass(eq=False)
class Live:
    user_id: int
    token_hash: str | None  # None: an SSH login (by key)
    kind: str               # "ssh", "terminal", "websocket": for the audit log
    close: Callable[[str], None] = field(repr=False)  # ends it, with the reason; called on the loop
    env_id: str | None = None  # the environment it reaches, where one
    # shows a notice to the person at the other end (an idle warning), where it can
    tell: Callable[[str], None] | None = field(default=None, repr=False)
    # ends it because this server stops, so that the other end reconnects (to any replica);
    # None: ``close`` does
    restart: Callable[[str], None] | None = field(default=None, repr=False)


class LiveConnections:
    def __init__(self, db: Database, app_sessions: AppSessions, *, every: float = CHECK_EVERY) -> None:
        self.db, self.app_sessions, self.every = db, app_sessions, every
        self._live: set[Live] = set()

    def add(self, user_id: int, token_hash: str | None, kind: str, close: Callable[[str], None],
            env_id: str | None = None, tell: Callable[[str], None] | None = None,
            restart: Callable[[str], None] | None = None) -> Live:
        live = Live(user_id, token_hash, kind, close, env_id, tell, restart)
        self._live.add(live)
        return live

    async def drain(self, reason: str = RESTARTING, grace: float = 2.0) -> int:
        """This server stops: end every live connection so that its other end reconnects
        (WebSockets with close code 1012, which the pages take as "reconnect now"; SSH with
        ``reason`` shown by the client), then wait up to ``grace`` seconds for them to go.
        How many there were."""
        live = list(self._live)
        for item in live:
            try:
                if item.tell is not None:  # said where a person reads it (a terminal), then ended
                    item.tell(reason)
                (item.restart or item.close)(reason)
            except Exception:  # noqa: BLE001 - already closing
                pass
        deadline = asyncio.get_running_loop().time() + grace
        while self._live & set(live) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        return len(live)

    def tell(self, env_id: str, message: str) -> None:
        """Show ``message`` in every open terminal of ``env_id`` that can show one."""
        for live in list(self._live):
            if live.env_id == env_id and live.tell is not None:
                try:
                    live.tell(message)
                except Exception:  # noqa: BLE001 - closing meanwhile
                    pass

    def remove(self, live: Live | None) -> None:
        if live is not None:
            self._live.discard(live)

    @contextlib.contextmanager
    def watching(self, websocket: WebSocket, user_id: int, token_hash: str | None, kind: str,
                 also: Callable[[], None] | None = None, env_id: str | None = None,
                 tell: Callable[[str], None] | None = None) -> Iterator[None]:
        """While the block runs, a browser WebSocket is live: ending it closes the socket
        (policy violation, with the reason) and runs ``also`` (e.g. ends the shell behind a
        terminal)."""
        def close(reason: str) -> None:
            if also is not None:
                also()
            asyncio.ensure_future(_close(websocket, reason))

        def restart(reason: str) -> None:
            asyncio.ensure_future(_close(websocket, reason, SERVICE_RESTART))
        live = self.add(user_id, token_hash, kind, close, env_id, tell, restart)
        try:
            yield
        finally:
            self.remove(live)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            if not self._live:
                continue
            try:
                ended = await asyncio.to_thread(self._ended, list(self._live))
            except Exception:  # the store may be briefly unavailable: check again next time
                log.exception("checking live connections failed")
                continue
            for live, reason in ended:
                self._live.discard(live)
                try:
                    live.close(reason)
                except Exception:  # noqa: BLE001 - already closing
                    pass

    def _ended(self, snapshot: list[Live]) -> list[tuple[Live, str]]:
        """The connections to close and why; the audit log records them (blocking: a thread)."""
        user_ids = {live.user_id for live in snapshot}
        hashes = {live.token_hash for live in snapshot if live.token_hash}
        with self.db.session() as s:
            users = {u.id: u for u in s.scalars(select(User).where(User.id.in_(user_ids)))}
            now = utcnow()
            valid = {h for h, expires in s.execute(select(ApiToken.token_hash, ApiToken.expires_at)
                                                   .where(ApiToken.token_hash.in_(hashes)))
                     if expires is None or as_utc(expires) > now}
            ended: list[tuple[Live, str]] = []
            for live in snapshot:
                user = users.get(live.user_id)
                if user is None or user.disabled:
                    ended.append((live, "your dev8 account was disabled"))
                elif live.token_hash and live.token_hash not in valid:
                    ended.append((live, "your dev8 session ended (logged out, revoked or password changed)"))
            by_user: dict[int, list[tuple[Live, str]]] = {}
            for live, reason in ended:
                by_user.setdefault(live.user_id, []).append((live, reason))
            for user_id, items in by_user.items():
                kinds = ", ".join(sorted({live.kind for live, _ in items}))
                audit.record(s, None, "connections.ended", users[user_id].email if user_id in users else str(user_id),
                             f"{len(items)} live connection(s) ({kinds}): {items[0][1]}", actor_label="dev8")
        for token_hash in {live.token_hash for live, _ in ended if live.token_hash}:
            self.app_sessions.end(token_hash)  # the app hosts that dev8 session opened end with it
        return ended


async def _close(websocket: WebSocket, reason: str, code: int = 1008) -> None:
    try:
        await websocket.close(code=code, reason=reason[:120])
    except (RuntimeError, OSError):  # already closed
        pass


def watching(live: LiveConnections | None, websocket: WebSocket, user_id: int | None, token_hash: str | None,
             kind: str, also: Callable[[], None] | None = None, env_id: str | None = None,
             tell: Callable[[str], None] | None = None) -> contextlib.AbstractContextManager[None]:
    """``live.watching(...)``, or nothing to watch: no registry (handlers tested without a
    server) or no user (an anonymous visitor of a public preview)."""
    if live is None or user_id is None:
        return contextlib.nullcontext()
    return live.watching(websocket, user_id, token_hash, kind, also, env_id, tell)
