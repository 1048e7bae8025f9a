"""One-time tickets (dev8's host → an app host) and the app-host sessions they become.

In memory: after a restart the next visit to an app just takes the redirect through
/app-auth again (hosts.py). Each ticket and session remembers the dev8 session that
minted it (a hash of its token) and dies with it: logging out of dev8 logs out of its apps.
"""
from __future__ import annotations

import secrets
import time

TICKET_SECONDS = 60
SESSION_SECONDS = 12 * 3600


class AppSessions:
    def __init__(self) -> None:
        self._tickets: dict[str, tuple[int, str, float]] = {}
        self._sessions: dict[str, tuple[int, str, float]] = {}
        self._minted_by: dict[str, str] = {}  # ticket or session → the dev8 session's key

    def issue_ticket(self, user_id: int, host: str, minted_by: str) -> str:
        """A ticket for ``host``; ``minted_by`` names the dev8 session asking for it."""
        self._expire()
        ticket = secrets.token_urlsafe(32)
        self._tickets[ticket] = (user_id, host, time.monotonic() + TICKET_SECONDS)
        self._minted_by[ticket] = minted_by
        return ticket

    def redeem(self, ticket: str, host: str) -> str | None:
        """A new app session id for ``host`` in exchange for a valid ticket (used up either way)."""
        found = self._tickets.pop(ticket, None)
        minted_by = self._minted_by.pop(ticket, None)
        if found is None or minted_by is None or found[1] != host or found[2] < time.monotonic():
            return None
        session = secrets.token_urlsafe(32)
        self._sessions[session] = (found[0], host, time.monotonic() + SESSION_SECONDS)
        self._minted_by[session] = minted_by
        return session

    def end(self, minted_by: str) -> int:
        """End every ticket and app session the dev8 session ``minted_by`` made; how many."""
        gone = [k for k, v in self._minted_by.items() if v == minted_by]
        for key in gone:
            del self._minted_by[key]
            self._tickets.pop(key, None)
            self._sessions.pop(key, None)
        return len(gone)

    def minted_by(self, session: str | None) -> str | None:
        """The dev8 session (its token's hash) an app session came from."""
        return self._minted_by.get(session or "")

    def user_for(self, session: str | None, host: str) -> int | None:
        found = self._sessions.get(session or "")
        if found is None or found[1] != host or found[2] < time.monotonic():
            return None
        return found[0]

    def _expire(self) -> None:
        now = time.monotonic()
        for store in (self._tickets, self._sessions):
            for key in [k for k, v in store.items() if v[2] < now]:
                del store[key]
                self._minted_by.pop(key, None)
