"""Disk threads: blocking spool calls off the event loop, cheaply.

The event loop never waits on the disk: every open, write, fsync, rename
and unlink of the spool runs in one of these threads. They replace
``loop.run_in_executor`` with a ThreadPoolExecutor on the hot path, which a
profile of a receiver showed at 11% of its GIL time per message: each call
there builds a concurrent.futures Future (a Condition), a work item, takes a
Semaphore, and wakes the loop once per call through its self-pipe.

Here a call is a tuple on a SimpleQueue (implemented in C), the result comes
back on an asyncio future directly, and completions are handed to the loop
in batches: the first finished call of a batch schedules one callback that
resolves every call finished by the time it runs. Under load, when many
sessions commit at once, that is one wake-up of the loop for many messages.
Several threads keep fsyncs of different files concurrent, so the file
system can fold them into one journal commit, and the spool's directory
fsyncs are still shared between threads (spool._DirSyncer).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from queue import SimpleQueue
from typing import Any, TypeVar

T = TypeVar("T")

_Job = tuple[asyncio.AbstractEventLoop, asyncio.Future[Any], Callable[..., Any], tuple[Any, ...]]
_Done = tuple[asyncio.Future[Any], Any, BaseException | None]


class DiskThreads:
    """A fixed set of threads running blocking calls for asyncio code."""

    def __init__(self, threads: int = 8, name: str = "spool") -> None:
        self.size = threads
        self.name = name
        self._jobs: SimpleQueue[_Job | None] = SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._done: dict[asyncio.AbstractEventLoop, list[_Done]] = {}
        self._closed = False

    def call(self, function: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """function(*args) in a disk thread; await the returned future."""
        if self._closed:
            raise RuntimeError(f"{self.name} threads are closed")
        if not self._threads:
            self._start()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put((loop, future, function, args))
        return future

    def _start(self) -> None:
        with self._lock:
            while len(self._threads) < self.size:
                thread = threading.Thread(target=self._work, daemon=True,
                                          name=f"{self.name}_{len(self._threads)}")
                thread.start()
                self._threads.append(thread)

    def _work(self) -> None:
        jobs, lock, done = self._jobs, self._lock, self._done
        while (job := jobs.get()) is not None:
            loop, future, function, args = job
            try:
                outcome: _Done = (future, function(*args), None)
            except BaseException as error:  # handed to the awaiting coroutine
                outcome = (future, None, error)
            with lock:
                batch = done.get(loop)
                if batch is None:
                    batch = done[loop] = []
                batch.append(outcome)
                first = len(batch) == 1
            if first:
                try:
                    loop.call_soon_threadsafe(self._resolve, loop)
                except RuntimeError:  # the loop is closed: nobody waits any more
                    with lock:
                        done.pop(loop, None)

    def _resolve(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            batch = self._done.pop(loop, [])
        for future, result, error in batch:
            if future.cancelled():
                continue
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)

    def close(self) -> None:
        """Finish the calls already queued, then stop the threads."""
        self._closed = True
        for _ in self._threads:
            self._jobs.put(None)
        for thread in self._threads:
            thread.join()
        self._threads.clear()
