"""A watchdog that reports when the event loop is blocked.

One asyncio process serves HTTP, the SSH gateway, proxies and terminals, so a blocking call
on the loop (a database query, a Docker request, a file read, a lock held across a connect)
stalls every user. A thread posts a no-op to the loop every half threshold; while the loop
has not run it, the thread looks at which callback (asyncio Handle) the loop's thread is
running, and when one callback has held the loop for ``threshold`` seconds it logs one
warning with that callback's stack and, once it ends, how long it lasted.

Not a stall: a loop busy with many short callbacks in a row (it yields; that is load, see
bench/load.py), and a loop merely waiting for the OS to give it a CPU (a machine busy with
other processes) or a process the OS did not run at all (stopped, frozen): that time is
taken off before a callback is judged. It is the larger of the time the loop's thread spent
runnable but not running (the kernel's schedstat, where the kernel keeps one: gVisor does
not) and how late the watchdog's own thread woke up, bounded by the callback's time the
loop's thread did not spend on a CPU (its CPU clock): a thread that sleeps 20 ms and wakes
150 ms later was not run either. A callback that blocks in a call releases the GIL and
leaves the watchdog on time; one that computes may make it late (waiting for the GIL) but
spends that time on a CPU: both are judged whole.
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
        try:
            self._cpu_clock: int | None = time.pthread_getcpuclockid(self._loop_thread)
        except (AttributeError, OSError):  # no per-thread CPU clock: no late wake-up is taken off
            self._cpu_clock = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="dev8-loop-watchdog", daemon=True)
        self.stalls = 0

    def start(self) -> LoopWatchdog:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        interval, step = self.threshold / 2, self.threshold / 5
        while not self._stop.wait(interval):
            answered = threading.Event()
            try:
                self.loop.call_soon_threadsafe(answered.set)
            except RuntimeError:  # the loop is closed: the server is stopping
                return
            # While the loop is late, look every fifth of the threshold at which callback it
            # runs: many short callbacks in a row (a busy loop) are not a stall; one that
            # holds the loop for the threshold is, unless that time went waiting for a CPU.
            # Each look is cheap (no source lines read): it holds the GIL the loop wants.
            running, since, queued, used, late, where, found = None, 0.0, 0.0, 0.0, 0.0, None, None
            woke = time.monotonic()
            while not answered.wait(step) and not self._stop.is_set():
                handle, stack = self._running_callback()
                now = time.monotonic()
                lateness, woke = max(0.0, now - woke - step), now
                if handle is not running:
                    running, since, queued, used, late, where = (handle, now, self._runqueue_wait(),
                                                                 self._loop_cpu(), 0.0, stack)
                elif handle is not None and found is None:
                    late += lateness
                    starved = max(self._runqueue_wait() - queued, self._not_run(now - since, used, late))
                    if now - since - starved >= self.threshold:
                        found = (since, starved, where)
            if found is not None:
                since, starved, where = found
                self.stalls += 1
                log.warning("%s for %.0f ms or more by one callback (%.0f ms of it not run by the OS; threshold "
                            "%.0f ms); it was here:\n%s", MARK, (time.monotonic() - since + step) * 1000,
                            starved * 1000, self.threshold * 1000, "".join(where.format()) if where else "?")

    def _running_callback(self) -> tuple[object | None, traceback.StackSummary | None]:
        """The asyncio Handle the loop's thread is running now and its stack, or (None, None)
        while it waits in its selector or between callbacks."""
        frame = sys._current_frames().get(self._loop_thread)
        top = frame
        while frame is not None:
            code = frame.f_code
            if code.co_name == "_run" and code.co_filename.endswith(("asyncio/events.py", "asyncio\\events.py")):
                stack = traceback.StackSummary.extract(traceback.walk_stack(top), limit=14, lookup_lines=False)
                stack.reverse()  # outermost first, as tracebacks read
                return frame.f_locals.get("self"), stack
            frame = frame.f_back
        return None, None

    def _loop_cpu(self) -> float:
        """CPU seconds the loop's thread has used (0 without a per-thread CPU clock)."""
        return time.clock_gettime(self._cpu_clock) if self._cpu_clock is not None else 0.0

    def _not_run(self, held: float, used_before: float, late: float) -> float:
        """Of ``held`` seconds of one callback, how many the OS ran neither the loop's thread
        nor this one: this thread's late wake-ups, at most the time the loop's thread spent off
        a CPU (waiting for the GIL the loop holds makes this thread late too)."""
        if self._cpu_clock is None:
            return 0.0
        return max(0.0, min(late, held - (self._loop_cpu() - used_before)))

    def _runqueue_wait(self) -> float:
        """Seconds the loop's thread has spent runnable but not running (0 where the
        kernel does not tell)."""
        try:
            with open(self._schedstat) as f:
                return int(f.read().split()[1]) / 1e9
        except (OSError, ValueError, IndexError):
            return 0.0
