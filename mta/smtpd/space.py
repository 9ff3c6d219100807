"""The spool's free space for the queue_minfree check at MAIL, measured off
the event loop.

Postfix's smtpd calls statvfs(2) at every MAIL; it is a blocking process, so a
slow file system only slows that one session. Here the loop serves every
session, and a statvfs of a spool whose disk hangs would stop them all, so
the figure is measured in a disk thread, at most once a second, and MAIL
reads the last one. A second-old figure is what the check needs: it refuses
MAIL when the spool is nearly full; the commit itself still fails safely
(452, never 250) if the space runs out in between.
"""

from __future__ import annotations

import asyncio
import os
import time

from mta.spool import Spool

REFRESH_SECONDS = 1.0
clock = time.monotonic  # a module attribute, so tests can move time for this module only


def free_bytes(root: str) -> int | None:
    """Bytes an unprivileged writer may still use on root's file system."""
    try:
        stat = os.statvfs(root)
    except OSError:
        return None  # cannot tell: the commit fails safely if need be
    return stat.f_bavail * stat.f_frsize


class FreeSpace:
    """The last measured free space of one spool, refreshed in the background."""

    def __init__(self, spool: Spool) -> None:
        self._spool = spool
        self._root = str(spool.root)
        self.bytes: int | None = None
        self._measured = float("-inf")
        self._refreshing: asyncio.Task[None] | None = None

    async def measure(self) -> int | None:
        """Measure now (in a disk thread) and keep the figure."""
        self.bytes = await self._spool.run(free_bytes, self._root)
        self._measured = clock()
        return self.bytes

    def latest(self) -> int | None:
        """The last figure (None before the first), starting a new measurement
        in the background when it is older than REFRESH_SECONDS."""
        if self._refreshing is None and clock() - self._measured >= REFRESH_SECONDS:
            self._refreshing = asyncio.ensure_future(self._refresh())
        return self.bytes

    async def _refresh(self) -> None:
        try:
            await self.measure()
        finally:
            self._refreshing = None
