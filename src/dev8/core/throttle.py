"""Login throttling: after ``per_email`` failed password checks within ``window`` seconds
for one email, or ``per_client`` from one client address (higher: many users may share a
proxy's address), further attempts are refused until the oldest failure leaves the window.
No password is checked meanwhile, so a refusal also saves the argon2 work. The first
refusal of each lockout says so (``TooManyAttempts.first``), so that a lockout is audited
once rather than once per hammered attempt (by each replica that sees it).

Failures are rows in the database, written in the login's own transaction, so they count
across every replica sharing it: five wrong passwords are five however a load balancer
spreads them. Only failures are written (a successful login deletes its email's), and rows
older than the window are swept now and then.
"""
from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from dev8.core.errors import TooManyAttempts
from dev8.store.models import LoginFailure

SWEEP_EVERY = 60.0
KEY_LENGTH = 300


class LoginThrottle:
    def __init__(self, per_email: int = 5, per_client: int = 20, window: float = 300.0,
                 clock: Callable[[], float] = time.time) -> None:
        """``clock``: seconds since the epoch (shared by replicas, unlike a monotonic clock)."""
        self.limits = {"email": per_email, "client": per_client}
        self.window, self.clock = window, clock
        self._lockouts: dict[str, float] = {}  # key -> oldest failure of its last reported lockout
        self._swept = 0.0

    @staticmethod
    def _keys(email: str, client: str) -> list[tuple[str, str]]:
        return [("email", f"email:{email.strip().lower()}"[:KEY_LENGTH]), ("client", f"client:{client}"[:KEY_LENGTH])]

    def check(self, s: Session, email: str, client: str) -> None:
        now = self.clock()
        for kind, key in self._keys(email, client):
            limit = self.limits[kind]
            recent = list(s.scalars(select(LoginFailure.at).where(LoginFailure.key == key,
                                                                  LoginFailure.at > now - self.window)
                                    .order_by(LoginFailure.at.desc()).limit(limit)))
            if len(recent) >= limit:
                oldest = recent[-1]  # of the last ``limit``: when it leaves the window, one more may try
                wait = int(oldest + self.window - now) + 1
                first = self._lockouts.get(key) != oldest
                self._lockouts[key] = oldest
                if len(self._lockouts) > 10_000:  # made-up emails must not grow memory forever
                    self._lockouts = {key: oldest}
                raise TooManyAttempts(f"too many failed logins; try again in {wait} s", retry_after=wait, first=first)

    def failed(self, s: Session, email: str, client: str) -> None:
        now = self.clock()
        s.add_all([LoginFailure(key=key, at=now) for _, key in self._keys(email, client)])
        if now - self._swept >= SWEEP_EVERY:
            self._swept = now
            s.execute(delete(LoginFailure).where(LoginFailure.at <= now - self.window))

    def succeeded(self, s: Session, email: str) -> None:
        s.execute(delete(LoginFailure).where(LoginFailure.key == self._keys(email, "")[0][1]))
