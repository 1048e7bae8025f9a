"""One-time tickets (dev8's host → an app host) and the app-host sessions they become.

In memory: after a restart the next visit to an app just takes the redirect through
/app-auth again (subdomains.py).
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

    def issue_ticket(self, user_id: int, host: str) -> str:
        self._expire()
        ticket = secrets.token_urlsafe(32)
        self._tickets[ticket] = (user_id, host, time.monotonic() + TICKET_SECONDS)
        return ticket

    def redeem(self, ticket: str, host: str) -> str | None:
        """A new app session id for ``host`` in exchange for a valid ticket (used up either way)."""
        found = self._tickets.pop(ticket, None)
        if found is None or found[1] != host or found[2] < time.monotonic():
            return None
        session = secrets.token_urlsafe(32)
        self._sessions[session] = (found[0], host, time.monotonic() + SESSION_SECONDS)
        return session

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
