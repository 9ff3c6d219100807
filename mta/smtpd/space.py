"""The spool's free space for the queue_minfree check at MAIL, measured off
the event loop.

Postfix's smtpd calls statvfs(2) at every MAIL; it is a blocking process, so a
slow file system only slows that one session. Here the loop serves every
session, and a statvfs of a spool whose disk hangs would stop them all, so
the figure is measured in a disk thread once a second for as long as the
listener runs, and MAIL reads the last one. A figure at most a second old is
what the check needs: it refuses MAIL while the spool is nearly full and
lets it through again within a second of space returning; the commit itself
still fails safely (452, never 250) if the space runs out in between.
Listeners on the same spool share one measurement (`FreeSpace.of`): the
figure is the file system's, not the listener's.
"""

from __future__ import annotations

import asyncio
import os

from mta.spool import Spool

REFRESH_SECONDS = 1.0


def free_bytes(root: str) -> int | None:
    """Bytes an unprivileged writer may still use on root's file system."""
    try:
        stat = os.statvfs(root)
    except OSError:
        return None  # cannot tell: the commit fails safely if need be
    return stat.f_bavail * stat.f_frsize


class FreeSpace:
    """The last measured free space of one spool, kept fresh in the background
    while at least one listener has started it."""

    _shared: dict[str, FreeSpace] = {}

    @classmethod
    def of(cls, spool: Spool) -> FreeSpace:
        """The one measurement of spool's root, shared by its listeners."""
        root = str(spool.root)
        space = cls._shared.get(root)
        if space is None:
            space = cls._shared[root] = cls(spool)
        return space

    def __init__(self, spool: Spool) -> None:
        self._spool = spool
        self._root = str(spool.root)
        self.bytes: int | None = None
        self._watch: asyncio.Task[None] | None = None
        self._users = 0

    async def measure(self) -> int | None:
        """Measure now (in a disk thread) and keep the figure."""
        self.bytes = await self._spool.run(free_bytes, self._root)
        return self.bytes

    async def start(self) -> None:
        """Measure once, then every REFRESH_SECONDS until every start() has
        had its stop()."""
        self._users += 1
        self._shared.setdefault(self._root, self)
        await self.measure()
        if self._users > 0 and (self._watch is None or self._watch.done()
                                or self._watch.get_loop() is not asyncio.get_running_loop()):
            self._watch = asyncio.ensure_future(self._every_second())

    def stop(self) -> None:
        self._users = max(0, self._users - 1)
        if self._users == 0:
            if self._shared.get(self._root) is self:
                del self._shared[self._root]
            if self._watch is not None:
                self._watch.cancel()
                self._watch = None

    def latest(self) -> int | None:
        """The last figure; None when it could not be measured."""
        return self.bytes

    async def _every_second(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_SECONDS)
            await self.measure()
