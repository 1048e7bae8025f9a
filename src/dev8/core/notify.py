"""Wake-ups for event-stream readers in this process when a lifecycle event is written.

Readers still poll the store (other replicas write events too); this only cuts the wait
when the writer is local.
"""
from __future__ import annotations

import asyncio


class EventNotifier:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._event = asyncio.Event()

    def notify(self) -> None:
        """Thread-safe: may be called from worker threads."""
        self._loop.call_soon_threadsafe(self._fire)

    def _fire(self) -> None:
        event, self._event = self._event, asyncio.Event()
        event.set()

    async def wait(self, timeout: float) -> None:
        """Until the next notify() or ``timeout`` seconds, whichever comes first."""
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except asyncio.TimeoutError:
            pass
