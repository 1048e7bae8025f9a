"""Login throttling: after ``per_email`` failed password checks within ``window`` seconds
for one email, or ``per_client`` from one client address (higher: many users may share a
proxy's address), further attempts are refused until the oldest failure leaves the window.
No password is checked meanwhile, so a refusal also saves the argon2 work. The first
refusal of each lockout says so (``TooManyAttempts.first``), so that a lockout is audited
once rather than once per hammered attempt."""
from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from dev8.core.errors import TooManyAttempts


class LoginThrottle:
    def __init__(self, per_email: int = 5, per_client: int = 20, window: float = 300.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = {"email": per_email, "client": per_client}
        self.window, self.clock = window, clock
        self._failures: dict[tuple[str, str], deque[float]] = {}
        self._lockouts: dict[tuple[str, str], float] = {}  # key -> oldest failure of its last reported lockout

    def check(self, email: str, client: str) -> None:
        now = self.clock()
        for key in (("email", email.strip().lower()), ("client", client)):
            recent = self._recent(key, now)
            if len(recent) >= self.limits[key[0]]:
                wait = int(recent[0] + self.window - now) + 1
                first = self._lockouts.get(key) != recent[0]
                self._lockouts[key] = recent[0]
                raise TooManyAttempts(f"too many failed logins; try again in {wait} s", retry_after=wait, first=first)

    def failed(self, email: str, client: str) -> None:
        now = self.clock()
        for key in (("email", email.strip().lower()), ("client", client)):
            self._recent(key, now).append(now)
        if len(self._failures) > 100_000:  # a flood of made-up emails must not grow memory forever
            self._failures = {k: v for k, v in self._failures.items() if v and v[-1] > now - self.window}
            self._lockouts = {k: v for k, v in self._lockouts.items() if k in self._failures}

    def succeeded(self, email: str) -> None:
        self._failures.pop(("email", email.strip().lower()), None)

    def _recent(self, key: tuple[str, str], now: float) -> deque[float]:
        recent = self._failures.setdefault(key, deque())
        while recent and recent[0] <= now - self.window:
            recent.popleft()
        return recent
