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


def test_a_blocking_call_is_reported_with_its_stack(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> int:
        dog = LoopWatchdog(asyncio.get_running_loop(), 0.1).start()
        await asyncio.sleep(0.2)
        blocking_handler()
        await asyncio.sleep(0.2)
        dog.stop()
        return dog.stalls
    with caplog.at_level(logging.WARNING, logger="dev8.watchdog"):
        assert asyncio.run(main()) == 1
    text = caplog.text
    assert MARK in text and "blocking_handler" in text and "time.sleep(0.3)" in text


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
