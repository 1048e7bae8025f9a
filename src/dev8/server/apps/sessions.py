"""One-time tickets (dev8's host → an app host) and the app-host sessions they become.

In the database, so that any replica redeems a ticket another minted, and any serves the
session (README: Several servers). Only a hash of each ticket and session is stored, as for
tokens. Each remembers the dev8 session that minted it (its token's hash) and dies with it:
logging out of dev8, on any replica, logs out of its apps. A replica remembers a session
it checked for a few seconds (``REMEMBER``), so that an app's many requests cost one
query; an ended session is refused everywhere within that time.

Every method blocks on the database: call them in a worker thread.
"""
from __future__ import annotations

import hashlib
import secrets
import threading
import time
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from dev8.store.db import Database
from dev8.store.models import ApiToken, AppGrant, utcnow

TICKET_SECONDS = 60
SESSION_SECONDS = 12 * 3600
REMEMBER = 5.0
REMEMBERED = 10_000  # sessions remembered at most (then forgotten all at once)
SWEEP_EVERY = 60.0  # expired rows are deleted at most this often


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


class AppSessions:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[float, int, str, str]] = {}  # hash → (until, user, host, minted_by)
        self._swept = 0.0

    def issue_ticket(self, user_id: int, host: str, minted_by: str) -> str:
        """A ticket for ``host``; ``minted_by`` names the dev8 session asking for it."""
        ticket = secrets.token_urlsafe(32)
        with self.db.session() as s:
            self._sweep(s)
            s.add(AppGrant(key_hash=_hash(ticket), kind="ticket", user_id=user_id, host=host[:255],
                           minted_by=minted_by, expires_at=utcnow() + timedelta(seconds=TICKET_SECONDS)))
        return ticket

    def redeem(self, ticket: str, host: str) -> str | None:
        """A new app session id for ``host`` in exchange for a valid ticket (used up either
        way: one DELETE takes it, so two replicas never both redeem it)."""
        if not ticket:
            return None
        with self.db.session() as s:
            taken = s.execute(delete(AppGrant).where(AppGrant.key_hash == _hash(ticket), AppGrant.kind == "ticket")
                              .returning(AppGrant.user_id, AppGrant.host, AppGrant.minted_by, AppGrant.expires_at)
                              ).first()
            if taken is None or taken.host != host or taken.expires_at < utcnow():
                return None
            session = secrets.token_urlsafe(32)
            s.add(AppGrant(key_hash=_hash(session), kind="session", user_id=taken.user_id, host=host[:255],
                           minted_by=taken.minted_by, expires_at=utcnow() + timedelta(seconds=SESSION_SECONDS)))
        return session

    def end(self, minted_by: str) -> int:
        """End every ticket and app session the dev8 session ``minted_by`` made; how many."""
        with self.db.session() as s:
            gone = s.execute(delete(AppGrant).where(AppGrant.minted_by == minted_by)
                             .returning(AppGrant.key_hash)).scalars().all()
        with self._lock:
            for key in gone:
                self._seen.pop(key, None)
        return len(gone)

    def viewer(self, session: str | None, host: str) -> tuple[int, str] | None:
        """Who the app session ``session`` on ``host`` belongs to, and the dev8 session (its
        token's hash) it came from; None when it is unknown, expired, for another host, or
        the dev8 session that minted it ended."""
        if not session:
            return None
        key, now = _hash(session), time.monotonic()
        with self._lock:
            seen = self._seen.get(key)
        if seen is None or seen[0] < now:
            with self.db.session() as s:
                row = s.execute(select(AppGrant.user_id, AppGrant.host, AppGrant.minted_by)
                                .join(ApiToken, ApiToken.token_hash == AppGrant.minted_by)
                                .where(AppGrant.key_hash == key, AppGrant.kind == "session",
                                       AppGrant.expires_at > utcnow())
                                .where((ApiToken.expires_at.is_(None)) | (ApiToken.expires_at > utcnow()))).first()
            if row is None:
                return None
            seen = (now + REMEMBER, row.user_id, row.host, row.minted_by)
            with self._lock:
                if len(self._seen) >= REMEMBERED:
                    self._seen.clear()
                self._seen[key] = seen
        return (seen[1], seen[3]) if seen[2] == host else None

    def _sweep(self, s: Session) -> None:
        now = time.monotonic()
        if now - self._swept >= SWEEP_EVERY:
            self._swept = now
            s.execute(delete(AppGrant).where(AppGrant.expires_at < utcnow()))
