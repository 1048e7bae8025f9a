import asyncio

from dev8.core.notify import EventNotifier


def test_an_event_wakes_only_the_streams_of_its_environment():
    async def go() -> tuple[bool, bool]:
        notifier = EventNotifier(asyncio.get_running_loop())
        a = asyncio.create_task(notifier.wait("env-a", 5))
        b = asyncio.create_task(notifier.wait("env-b", 5))
        await asyncio.sleep(0.05)
        await asyncio.to_thread(notifier.notify, "env-a")  # from a worker thread, as the reconciler does
        await asyncio.sleep(0.05)
        woken = (a.done(), b.done())
        b.cancel()
        return woken
    assert asyncio.run(go()) == (True, False)
