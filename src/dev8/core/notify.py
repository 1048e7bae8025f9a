"""Wake-ups for event-stream readers when a lifecycle event is written, on any replica.

Per environment: an event of one environment wakes only the streams following that one.
A writer in this process wakes them at once (``notify``). On PostgreSQL every event is also
announced on a channel (``announce``, delivered when its transaction commits), and each
replica's ``PgEventFeed`` listens on one connection and wakes its own readers: an event
written by another replica reaches a stream here at once, without streams polling the
store. While the feed is down (at start, or its connection dropped) readers poll; when it
is back every reader looks once (what was announced meanwhile was missed, the rows were not).
"""
from __future__ import annotations

import asyncio
import logging

from sqlalchemy import make_url, text
from sqlalchemy.orm import Session

log = logging.getLogger("dev8.notify")

CHANNEL = "dev8_events"
# How long a reader waits for a wake-up before it looks in the store anyway: often while no
# feed carries other replicas' events, seldom when one does (a safety net, not the path).
POLL_UNFED = 1.0
POLL_FED = 15.0
FEED_RETRY = 2.0
CONNECT_TIMEOUT = 10


def announce(s: Session, env_id: str) -> None:
    """Tell every replica's feed, when ``s`` commits, that ``env_id`` has news (PostgreSQL;
    elsewhere there is one server, and its writers call ``EventNotifier.notify``)."""
    if s.get_bind().dialect.name == "postgresql":
        s.execute(text("SELECT pg_notify(:channel, :env)"), {"channel": CHANNEL, "env": env_id})


class EventNotifier:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._events: dict[str, asyncio.Event] = {}
        self.fed = False  # a feed carries other replicas' events now

    @property
    def poll(self) -> float:
        """How long a reader may wait for a wake-up before looking in the store itself."""
        return POLL_FED if self.fed else POLL_UNFED

    def notify(self, env_id: str) -> None:
        """Thread-safe: may be called from worker threads."""
        self._loop.call_soon_threadsafe(self.wake, env_id)

    def wake(self, env_id: str) -> None:
        """The readers of ``env_id`` look in the store now (on the loop's thread)."""
        event = self._events.pop(env_id, None)
        if event is not None:
            event.set()

    def fire_all(self) -> None:
        """Every reader looks in the store now (announcements may have been missed)."""
        events, self._events = self._events, {}
        for event in events.values():
            event.set()

    def arm(self, env_id: str) -> asyncio.Event:
        """What the next notify(env_id) sets. A reader arms it *before* it looks in the store,
        then waits on it: an event written while it looked sets it, and is not missed (nor
        does the reader look a second time to be sure)."""
        return self._events.setdefault(env_id, asyncio.Event())

    @staticmethod
    async def wait(armed: asyncio.Event, timeout: float) -> None:
        """Until ``armed`` (from ``arm``) is set, or ``timeout`` seconds, whichever comes first."""
        try:
            await asyncio.wait_for(armed.wait(), timeout)
        except TimeoutError:
            pass


class PgEventFeed:
    """LISTEN on the database's channel with one asynchronous connection of its own (no
    worker thread), reconnecting after a failure."""

    def __init__(self, url: str, notifier: EventNotifier) -> None:
        self.conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        self.notifier = notifier

    async def run(self) -> None:
        import psycopg
        while True:
            try:
                # Keepalives: a database host that vanished without closing is noticed in
                # about half a minute, not at the kernel's default of two hours.
                async with await psycopg.AsyncConnection.connect(
                        self.conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT, keepalives=1,
                        keepalives_idle=10, keepalives_interval=5, keepalives_count=3) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self.notifier.fed = True
                    self.notifier.fire_all()  # announced before LISTEN took effect: look once
                    async for note in conn.notifies():
                        self.notifier.wake(note.payload)
            except (psycopg.Error, OSError) as exc:
                if self.notifier.fed:
                    log.warning("event feed lost (%s); streams poll until it is back", str(exc).splitlines()[0])
            finally:
                self.notifier.fed = False
            await asyncio.sleep(FEED_RETRY)
