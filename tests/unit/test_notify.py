import asyncio

from dev8.core.notify import EventNotifier


def test_an_event_wakes_only_the_streams_of_its_environment():
    async def go() -> tuple[bool, bool]:
        notifier = EventNotifier(asyncio.get_running_loop())
        a = asyncio.create_task(notifier.wait(notifier.arm("env-a"), 5))
        b = asyncio.create_task(notifier.wait(notifier.arm("env-b"), 5))
        await asyncio.sleep(0.05)
        await asyncio.to_thread(notifier.notify, "env-a")  # from a worker thread, as the reconciler does
        await asyncio.sleep(0.05)
        woken = (a.done(), b.done())
        b.cancel()
        return woken
    assert asyncio.run(go()) == (True, False)


def test_an_event_written_while_a_reader_looks_in_the_store_wakes_it_at_once():
    """The reader arms its wake-up before it looks; a notify that comes while it looks (it
    read the store just before the event was written) ends its wait at once, where it would
    otherwise wait out the poll interval (15 s with a feed) with the event unread."""
    async def go() -> bool:
        notifier = EventNotifier(asyncio.get_running_loop())
        armed = notifier.arm("env-a")
        # ... the reader looks in the store; meanwhile a worker thread writes an event:
        await asyncio.to_thread(notifier.notify, "env-a")
        await asyncio.sleep(0.05)
        waiting = asyncio.create_task(notifier.wait(armed, 5))
        await asyncio.sleep(0.05)
        woken = waiting.done()
        waiting.cancel()
        return woken
    assert asyncio.run(go())
