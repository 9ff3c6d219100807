"""The master's signals to its receiver workers (mta/workers.py Supervisor)."""

from __future__ import annotations

import signal
import socket

from mta.config import from_text
from mta.workers import Supervisor, _Worker


class _SignalledProcess:
    returncode = None

    def __init__(self) -> None:
        self.signals: list[int] = []

    def send_signal(self, signum: int) -> None:
        self.signals.append(signum)


async def test_a_rotation_before_a_worker_is_ready_reaches_it_when_it_is() -> None:
    """The master sends no SIGHUP to a worker that has not said "r" (it may
    have no handler yet), but one that came meanwhile is sent on the "r":
    the worker's own reopen may have come before the rotation."""
    supervisor = Supervisor(from_text("smtp/inet = 127.0.0.1:2525\n"), 1, lambda qid: None)
    worker = _Worker(1)
    process = _SignalledProcess()
    worker.process = process  # type: ignore[assignment]
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    mine.setblocking(False)
    worker.channel = mine
    supervisor.workers = [worker]
    try:
        supervisor.signal(signal.SIGHUP)
        assert process.signals == []
        theirs.send(b"r")
        supervisor._readable(worker)
        assert process.signals == [signal.SIGHUP]
        supervisor.signal(signal.SIGHUP)  # ready now: sent at once, no more
        assert process.signals == [signal.SIGHUP] * 2
    finally:
        mine.close()
        theirs.close()
