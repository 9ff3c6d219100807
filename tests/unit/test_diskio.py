"""DiskThreads: blocking calls off the loop, results and errors back in batches."""

from __future__ import annotations

import asyncio
import threading

import pytest

from mta.diskio import DiskThreads


async def test_results_errors_and_the_calling_thread() -> None:
    threads = DiskThreads(2, name="t")
    try:
        assert await threads.call(pow, 2, 10) == 1024
        name = await threads.call(lambda: threading.current_thread().name)
        assert name.startswith("t_") and name != threading.current_thread().name
        with pytest.raises(ZeroDivisionError):
            await threads.call(divmod, 1, 0)
    finally:
        threads.close()


async def test_many_calls_finish_with_few_wakeups_of_the_loop() -> None:
    threads = DiskThreads(4)
    gate = threading.Event()
    wakeups = 0
    resolve = threads._resolve

    def counting(loop: asyncio.AbstractEventLoop) -> None:
        nonlocal wakeups
        wakeups += 1
        resolve(loop)

    # Deliberately private: count the wake-ups of the event loop.
    threads._resolve = counting  # type: ignore[method-assign]
    try:
        futures = [threads.call(lambda n=n: (gate.wait(5), n)[1]) for n in range(200)]
        gate.set()
        assert await asyncio.gather(*futures) == list(range(200))
        assert 1 <= wakeups < 200
    finally:
        threads.close()


async def test_a_cancelled_wait_does_not_break_the_others() -> None:
    threads = DiskThreads(1)
    gate = threading.Event()
    try:
        slow = threads.call(gate.wait, 5)
        after = threads.call(int, "7")
        slow.cancel()
        gate.set()
        assert await after == 7
    finally:
        threads.close()


async def test_calls_after_close_are_refused() -> None:
    threads = DiskThreads(1)
    assert await threads.call(len, "abc") == 3
    threads.close()
    with pytest.raises(RuntimeError):
        threads.call(len, "abc")
