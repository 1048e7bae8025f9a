"""The event-loop watchdog reports code that blocks the loop, with where, and stays quiet
while the loop only waits."""
from __future__ import annotations

import asyncio
import logging
import time

import pytest

from dev8.server.watchdog import MARK, LoopWatchdog


def blocking_handler() -> None:
    time.sleep(0.3)  # what a synchronous database call on the loop does


def computing_handler() -> None:
    end = time.thread_time() + 0.3  # 0.3 s of CPU, however busy the machine
    while time.thread_time() < end:  # pure Python work: it holds the GIL, handing it over every 5 ms
        pass


@pytest.mark.parametrize("handler, line", [(blocking_handler, "time.sleep(0.3)"),
                                           (computing_handler, "while time.thread_time() < end")])
def test_a_call_that_blocks_or_computes_is_reported_with_its_stack(  # type: ignore[no-untyped-def]
        handler, line: str, caplog: pytest.LogCaptureFixture) -> None:
    """Both leave the loop to no one else; one releases the GIL, the other hands it over
    every switch interval (making the watchdog late: not mistaken for the OS not running it)."""
    async def main() -> int:
        dog = LoopWatchdog(asyncio.get_running_loop(), 0.1).start()
        await asyncio.sleep(0.2)
        handler()
        await asyncio.sleep(0.2)
        dog.stop()
        return dog.stalls
    with caplog.at_level(logging.WARNING, logger="dev8.watchdog"):
        assert asyncio.run(main()) == 1
    text = caplog.text
    assert MARK in text and handler.__name__ in text and line in text


def test_an_idle_or_busy_but_yielding_loop_is_not_reported(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> int:
        dog = LoopWatchdog(asyncio.get_running_loop(), 0.1).start()
        await asyncio.sleep(0.4)  # idle: waiting in the selector
        for _ in range(40):       # short callbacks that yield in between
            time.sleep(0.005)
            await asyncio.sleep(0)
        await asyncio.to_thread(time.sleep, 0.3)  # blocking work off the loop
        done = asyncio.Event()
        for i in range(30):  # a busy loop: 300 ms of callbacks in a row, none longer than 10 ms
            asyncio.get_running_loop().call_soon(lambda last=(i == 29): (time.sleep(0.01), last and done.set()))
        await done.wait()
        dog.stop()
        return dog.stalls
    with caplog.at_level(logging.WARNING, logger="dev8.watchdog"):
        assert asyncio.run(main()) == 0
    assert MARK not in caplog.text


STOPPED = """
import asyncio, os, signal, time
from dev8.server.watchdog import LoopWatchdog

def stopped_handler() -> None:
    time.sleep(0.85)  # seen by the watchdog (it looks within 0.7 of its threshold) ...
    os.kill(os.getpid(), signal.SIGSTOP)  # ... then the process is not run until continued ...
    time.sleep(0.05)  # ... and seen again: 0.9 s of its own, under the threshold

async def main() -> None:
    dog = LoopWatchdog(asyncio.get_running_loop(), 1.0).start()
    await asyncio.sleep(0.3)
    stopped_handler()
    await asyncio.sleep(0.3)
    dog.stop()
    print(dog.stalls)

asyncio.run(main())
"""


def test_a_process_the_os_did_not_run_is_not_a_blocked_loop() -> None:
    """What a loaded machine does to a process for a moment, made long and certain: the
    whole process stopped for 1.5 s in the middle of a callback. Neither thread ran, so the
    loop was not blocked by its code (where the kernel keeps no schedstat, as on gVisor, the
    watchdog's own late wake-up tells; a stopped thread is not runnable, so not in schedstat)."""
    import os
    import signal
    import subprocess
    import sys
    child = subprocess.Popen([sys.executable, "-c", STOPPED], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status = os.waitpid(child.pid, os.WUNTRACED)
    assert os.WIFSTOPPED(status)
    time.sleep(1.5)
    os.kill(child.pid, signal.SIGCONT)
    out, err = child.communicate(timeout=30)
    assert out.strip() == "0", (out, err)
    assert MARK not in err
