"""A watchdog that reports when the event loop is blocked.

One asyncio process serves HTTP, the SSH gateway, proxies and terminals, so a blocking call
on the loop (a database query, a Docker request, a file read, a lock held across a connect)
stalls every user. A thread posts a no-op to the loop every few milliseconds; when the loop
has not run it within ``threshold`` seconds, the thread records where the loop's thread is
(its Python stack) and logs one warning per stall, with how long it lasted once it ends.

A loop that is merely waiting for the OS to give it a CPU (a machine busy with other
processes) is not blocked by our code: the time the loop's thread spent runnable but not
running (the kernel's schedstat) is taken off a stall before it is judged, and a loop
sampled in its selector's wait is not reported either.
"""
from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
import traceback

log = logging.getLogger("dev8.watchdog")

MARK = "event loop blocked"  # the tests look for this in the server's log


class LoopWatchdog:
    def __init__(self, loop: asyncio.AbstractEventLoop, threshold: float) -> None:
        self.loop, self.threshold = loop, threshold
        self._loop_thread = threading.get_ident()  # built on the loop's thread
        self._schedstat = f"/proc/self/task/{threading.get_native_id()}/schedstat"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="dev8-loop-watchdog", daemon=True)
        self.stalls = 0

    def start(self) -> "LoopWatchdog":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        interval = self.threshold / 2
        while not self._stop.wait(interval):
            answered = threading.Event()
            posted, queued = time.monotonic(), self._runqueue_wait()
            try:
                self.loop.call_soon_threadsafe(answered.set)
            except RuntimeError:  # the loop is closed: the server is stopping
                return
            if answered.wait(self.threshold) or self._stop.is_set():
                continue
            stack = self._loop_stack()
            if stack is None:  # waiting in the selector: not blocked by our code
                answered.wait()
                continue
            answered.wait()
            stalled = time.monotonic() - posted
            starved = self._runqueue_wait() - queued
            if stalled - starved < self.threshold:  # mostly waiting for a CPU: not our code
                continue
            self.stalls += 1
            log.warning("%s for %.0f ms (%.0f ms of it waiting for a CPU; threshold %.0f ms); the loop was "
                        "here:\n%s", MARK, stalled * 1000, starved * 1000, self.threshold * 1000, stack)

    def _runqueue_wait(self) -> float:
        """Seconds the loop's thread has spent runnable but not running (0 where the
        kernel does not tell)."""
        try:
            with open(self._schedstat) as f:
                return int(f.read().split()[1]) / 1e9
        except (OSError, ValueError, IndexError):
            return 0.0

    def _loop_stack(self) -> str | None:
        frame = sys._current_frames().get(self._loop_thread)
        if frame is None:
            return None
        summary = traceback.extract_stack(frame)
        top = summary[-1] if summary else None
        if top is not None and top.filename.endswith("selectors.py") and top.name == "select":
            return None
        return "".join(traceback.format_list(summary[-12:]))
