"""Whether the runtime's backend answers, asked once for everyone.

A wedged backend (a Docker socket that accepts and never answers) must cost one thread,
not one per request and environment: every caller awaits the same ping in flight, each for
at most ``timeout`` from when that ping began, and a result may be reused for ``fresh``
seconds (the reconciler's many environments, /healthz). While a ping that timed out is
still stuck in its thread, no other is started; callers are told the backend has not
answered for so long.
"""
from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from dev8.runtimes.base import Runtime, RuntimeUnavailable

PING_TIMEOUT = 5.0


class RuntimeHealth:
    def __init__(self, runtime: Runtime, *, timeout: float = PING_TIMEOUT, fresh: float = 1.0) -> None:
        self.runtime, self.timeout, self.fresh = runtime, timeout, fresh
        # Its own thread: a ping never queues behind the store's and the runtime's work in
        # the shared pool (a busy server still answers /healthz at once), and one that hangs
        # holds only this thread.
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="dev8-runtime-ping")
        self._inflight: asyncio.Future[None] | None = None
        self._started = 0.0
        self._checked_at: float | None = None
        self._error: RuntimeUnavailable | None = None

    async def check(self, *, reuse: bool = True) -> None:
        """Return when the backend answers; raise :class:`RuntimeUnavailable` (with the
        reason) when it refuses or has not answered within the timeout. ``reuse=False``
        (before a user's write) asks anew unless a ping is in flight."""
        loop = asyncio.get_running_loop()
        if reuse and self._checked_at is not None and loop.time() - self._checked_at < self.fresh:
            if self._error is not None:
                raise self._error
            return
        if self._inflight is None:
            self._inflight = loop.run_in_executor(self._thread, self.runtime.ping)
            self._started = loop.time()
        inflight = self._inflight
        try:
            await asyncio.wait_for(asyncio.shield(inflight), max(0.0, self._started + self.timeout - loop.time()))
            self._error = None
        except TimeoutError:
            self._error = RuntimeUnavailable(f"the {self.runtime.name} runtime has not answered for "
                                             f"{loop.time() - self._started:.0f}s")
        except RuntimeUnavailable as exc:
            self._error = exc
        finally:
            if inflight.done() and self._inflight is inflight:
                self._inflight = None
        self._checked_at = loop.time()
        if self._error is not None:
            raise self._error
