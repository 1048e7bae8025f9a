"""Wake-ups for event-stream readers in this process when a lifecycle event is written.

Per environment: an event of one environment wakes only the streams following that one.
Readers still poll the store now and then (other replicas write events too); this only
cuts the wait when the writer is local.
"""
from __future__ import annotations

import asyncio


class EventNotifier:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._events: dict[str, asyncio.Event] = {}

    def notify(self, env_id: str) -> None:
        """Thread-safe: may be called from worker threads."""
        self._loop.call_soon_threadsafe(self._fire, env_id)

    def _fire(self, env_id: str) -> None:
        event = self._events.pop(env_id, None)
        if event is not None:
            event.set()

    async def wait(self, env_id: str, timeout: float) -> None:
        """Until the next notify(env_id) or ``timeout`` seconds, whichever comes first."""
        event = self._events.setdefault(env_id, asyncio.Event())
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            pass
