"""Idle SMTP connections kept for the next message to the same destination.

Postfix's scache in-process: after a delivery the session stays open for
smtp_connection_cache_time_limit; the next delivery to the same destination
(transport and next hop) takes it, sends RSET (the agent does) and goes on,
logged as ``conn_use=N``. A connection older than
smtp_connection_reuse_time_limit is closed instead of reused. No reuse-count
limit: Postfix warns that one turns a good server into a "fatal attractor".

Each session is kept with its ``SessionTls`` (the TLS policy it was opened
under and what its TLS turned out to be); the agent reuses it only when the
next message's TLS plan admits that (mta/smtp/tlshook.py), and ``clear()``
closes every idle session when the TLS policy is replaced.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

from prometheus_client import Gauge

from mta.metrics import REGISTRY
from mta.smtp.client import SmtpSession
from mta.smtp.tlshook import SessionTls

CACHED = Gauge("mta_smtp_cached_connections", "Idle outbound connections kept for reuse.",
               registry=REGISTRY)


@dataclass
class Cached:
    session: SmtpSession
    tls: SessionTls  # what the session was opened under, and its TLS
    timer: asyncio.TimerHandle | None = field(default=None, repr=False)


class ConnectionCache:
    def __init__(self, idle_limit: float, reuse_limit: float) -> None:
        self.idle_limit = idle_limit
        self.reuse_limit = reuse_limit
        self._idle: dict[tuple[str, str], list[Cached]] = {}
        self._closing: set[asyncio.Task[None]] = set()

    def put(self, key: tuple[str, str], session: SmtpSession, tls: SessionTls) -> bool:
        """Keep an idle session; False (the caller QUITs) when it may not be kept."""
        if self.idle_limit <= 0 or session.broken or session.age >= self.reuse_limit:
            return False
        entry = Cached(session, tls)
        entry.timer = asyncio.get_running_loop().call_later(self.idle_limit, self._expire,
                                                            key, entry)
        self._idle.setdefault(key, []).append(entry)
        CACHED.inc()
        return True

    def take(self, key: tuple[str, str]) -> Cached | None:
        """The most recently used live session for key, or None."""
        entries = self._idle.get(key)
        while entries:
            entry = entries.pop()
            self._forget(entry)
            if entry.session.broken or entry.session.age >= self.reuse_limit:
                self._quit(entry.session)
                continue
            return entry
        self._idle.pop(key, None)
        return None

    def _forget(self, entry: Cached) -> None:
        if entry.timer is not None:
            entry.timer.cancel()
            entry.timer = None
        CACHED.dec()

    def _expire(self, key: tuple[str, str], entry: Cached) -> None:
        entries = self._idle.get(key, [])
        if entry in entries:
            entries.remove(entry)
            entry.timer = None
            CACHED.dec()
            self._quit(entry.session)
        if not entries:
            self._idle.pop(key, None)

    def discard(self, session: SmtpSession) -> None:
        """QUIT a session taken from the cache and not used after all."""
        self._quit(session)

    def _quit(self, session: SmtpSession) -> None:
        task = asyncio.get_running_loop().create_task(session.quit())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def __len__(self) -> int:
        return sum(len(entries) for entries in self._idle.values())

    def clear(self) -> None:
        """QUIT every idle session now (the QUITs finish in the background)."""
        for key in list(self._idle):
            for entry in self._idle.pop(key):
                self._forget(entry)
                self._quit(entry.session)

    async def close(self) -> None:
        """QUIT every idle session and wait for the QUITs (at shutdown)."""
        self.clear()
        if self._closing:
            with contextlib.suppress(Exception):
                await asyncio.wait(list(self._closing), timeout=5)
