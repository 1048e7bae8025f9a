"""Activity and idle auto-stop.

Whatever carries a user's traffic into an environment (gateway SSH sessions and forwards,
the browser terminal's keystrokes, VS Code's and previews' HTTP and WebSocket traffic)
calls ``Activity.touch``: a dict write, cheap enough per packet. ``IdleStopper`` writes those
marks to ``Environment.last_used_at`` in batches (so other replicas see them), and stops
environments idle for longer than their timeout, or running longer than the admin's
session limit, after a warning event a few minutes before (and a line in open terminals).
An open connection without traffic is not use: a forgotten tab does not keep an
environment running. Keep-alive frames are told apart by size (``counts``).
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

from sqlalchemy import CursorResult, select, update

from dev8.core import audit
from dev8.core.environments import add_event, request_stop
from dev8.core.states import State
from dev8.durations import human
from dev8.store.db import Database
from dev8.store.models import Environment, Event, User, as_utc, utcnow

log = logging.getLogger("dev8.activity")

# VS Code's remote protocol sends a keep-alive, and acknowledges each message it gets, in
# frames of 13 bytes (a header with no body), whether or not anyone works in the tab.
KEEPALIVE_BYTES = 13
WARN_AHEAD = 300.0  # seconds of warning before a stop (a quarter of shorter limits)


def counts(size: int) -> bool:
    """Whether a WebSocket frame of ``size`` bytes is use, not a keep-alive or an ack."""
    return size > KEEPALIVE_BYTES


class Activity:
    """When each environment was last used, noted in memory until the next flush. Used on
    the event loop only (touch and take), so no lock."""

    def __init__(self) -> None:
        self._marks: dict[str, float] = {}

    def touch(self, env_id: str) -> None:
        self._marks[env_id] = time.time()

    def take(self) -> dict[str, datetime]:
        marks, self._marks = self._marks, {}
        return {env_id: datetime.fromtimestamp(ts, UTC) for env_id, ts in marks.items()}


@dataclass(frozen=True)
class Policy:
    idle_timeout: int   # the server's default; an environment's own overrides it; 0: never
    max_session: int    # 0: no limit


@dataclass(frozen=True)
class Due:
    """What is due for a running environment: a warning, or the stop itself."""
    stop: bool
    reason: str        # what the stop is called: "stopped after 30 min idle"
    warning: str       # and the warning before it: "stops in 5 min: 30 min idle unless used"
    seconds_left: float
    basis: datetime    # the use (or start) the deadline counts from: one warning per basis


def due(env: Environment, policy: Policy, now: datetime) -> Due | None:
    """Whether ``env`` is to be warned or stopped now (pure)."""
    if env.desired_state != "running" or env.observed_state != State.RUNNING or env.started_at is None:
        return None
    started = as_utc(env.started_at)
    deadlines: list[tuple[float, int, datetime, str, str]] = []
    timeout = policy.idle_timeout if env.idle_timeout is None else env.idle_timeout
    if timeout > 0:
        last = max(started, as_utc(env.last_used_at)) if env.last_used_at else started
        deadlines.append((timeout - (now - last).total_seconds(), timeout, last,
                          f"stopped after {human(timeout)} idle", f"{human(timeout)} idle, unless it is used"))
    if policy.max_session > 0:
        shown = human(policy.max_session)
        deadlines.append((policy.max_session - (now - started).total_seconds(), policy.max_session, started,
                          f"stopped after {shown} running (this dev8's session limit)",
                          f"{shown} running is this dev8's session limit"))
    if not deadlines:
        return None
    left, limit, basis, reason, why = min(deadlines, key=lambda d: d[0])
    warning = f"{env.name} stops in {human(max(left, 0))}: {why}"
    if left <= 0:
        return Due(True, reason, warning, 0.0, basis)
    if left <= min(WARN_AHEAD, limit / 4):
        return Due(False, reason, warning, left, basis)
    return None


class IdleStopper:
    """Flushes activity and applies the policy every ``interval`` seconds. ``warn`` tells
    the environment's open terminals (env id, message); ``stopped`` wakes the reconciler."""

    def __init__(self, db: Database, activity: Activity, policy: Policy, *, interval: float,
                 warn: Callable[[str, str], None], stopped: Callable[[str], None]) -> None:
        self.db, self.activity, self.policy, self.interval = db, activity, policy, interval
        self.warn, self.stopped = warn, stopped
        self._warned: dict[str, datetime] = {}

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            marks = self.activity.take()  # on the loop, where the marks are written
            try:
                warnings, stops = await asyncio.to_thread(self.check, marks)
            except Exception:  # the store may be briefly unavailable: again next time
                log.exception("idle check failed")
                continue
            for env_id, message in warnings:
                self.warn(env_id, message)
            for env_id in stops:
                self.stopped(env_id)

    def check(self, marks: dict[str, datetime], now: datetime | None = None) -> tuple[list[tuple[str, str]], list[str]]:
        """Write ``marks`` (the activity noted since the last check), then warn and stop what
        is due (blocking: a thread). Returns the warnings (env id, message) and the stopped ids."""
        warnings: list[tuple[str, str]] = []
        stops: list[str] = []
        with self.db.session() as s:
            for env_id, ts in marks.items():
                s.execute(update(Environment).where(Environment.id == env_id)
                          .where((Environment.last_used_at.is_(None)) | (Environment.last_used_at < ts))
                          .values(last_used_at=ts))
            now = now or utcnow()
            running = s.scalars(select(Environment).where(Environment.desired_state == "running",
                                                          Environment.observed_state == State.RUNNING))
            for env in running:
                d = due(env, self.policy, now)
                if d is None:
                    continue
                if d.stop:
                    # Every replica runs this check: the one whose update still finds it
                    # running stops it (another's waits for that commit, then finds nothing).
                    result = s.execute(update(Environment).where(Environment.id == env.id,
                                                                 Environment.desired_state == "running")
                                       .values(desired_state="stopped"))
                    claimed = cast(CursorResult, result).rowcount  # an UPDATE's result has one
                    if not claimed:
                        continue
                    request_stop(s, env, reason=d.reason)
                    owner = s.get(User, env.owner_id)
                    audit.record(s, None, "env.auto_stop", f"{owner.email if owner else env.owner_id}/{env.name}",
                                 d.reason, actor_label="dev8")
                    stops.append(env.id)
                    self._warned.pop(env.id, None)
                elif self._warned.get(env.id) != d.basis:
                    self._warned[env.id] = d.basis
                    warnings.append((env.id, d.warning))  # this replica's open terminals hear it
                    # the event once, whichever replica gets there first: this no-op update
                    # locks the row (PostgreSQL) or the database (SQLite), so another waits
                    # for this commit, then finds the event
                    s.execute(update(Environment).where(Environment.id == env.id)
                              .values(updated_at=Environment.updated_at))
                    why = d.warning.partition(": ")[2]  # the same deadline's warning, whatever time it said was left
                    if not s.scalar(select(Event.id).where(Event.env_id == env.id, Event.step == "idle",
                                                           Event.status == "warning", Event.ts >= d.basis,
                                                           Event.message.endswith(why, autoescape=True))):
                        add_event(s, env.id, "idle", "warning", d.warning)
            s.commit()
        return warnings, stops
