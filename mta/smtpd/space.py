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
    """The last measured free space of one spool, kept fresh in the background."""

    def __init__(self, spool: Spool) -> None:
        self._spool = spool
        self._root = str(spool.root)
        self.bytes: int | None = None
        self._watch: asyncio.Task[None] | None = None

    async def measure(self) -> int | None:
        """Measure now (in a disk thread) and keep the figure."""
        self.bytes = await self._spool.run(free_bytes, self._root)
        return self.bytes

    async def start(self) -> None:
        """Measure once, then every REFRESH_SECONDS until stop()."""
        await self.measure()
        if self._watch is None:
            self._watch = asyncio.ensure_future(self._every_second())

    def stop(self) -> None:
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
