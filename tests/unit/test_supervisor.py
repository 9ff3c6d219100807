"""The master's side of its receiver workers (mta/workers.py Supervisor):
signals, and messages to a worker whose channel is full."""

from __future__ import annotations

import asyncio
import signal
import socket

import pytest

from mta import workers
from mta.config import from_text
from mta.workers import Supervisor, _Worker


class _SignalledProcess:
    returncode = None

    def __init__(self) -> None:
        self.signals: list[int] = []

    def send_signal(self, signum: int) -> None:
        self.signals.append(signum)


def _one_worker(process: object | None = None
                ) -> tuple[Supervisor, _Worker, socket.socket, socket.socket]:
    """A supervisor with one worker (process: a stand-in for its process)
    and the channel between them: the master's end, and the worker's."""
    supervisor = Supervisor(from_text("smtp/inet = 127.0.0.1:2525\n"), 1, lambda qid: None)
    worker = _Worker(1)
    worker.process = process  # type: ignore[assignment]
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    mine.setblocking(False)
    worker.channel = mine
    worker.outbox = workers.Outbox(mine)
    supervisor.workers = [worker]
    return supervisor, worker, mine, theirs


async def test_a_rotation_before_a_worker_is_ready_reaches_it_when_it_is() -> None:
    """The master sends no SIGHUP to a worker that has not said "r" (it may
    have no handler yet), but one that came meanwhile is sent on the "r":
    the worker's own reopen may have come before the rotation."""
    process = _SignalledProcess()
    supervisor, worker, mine, theirs = _one_worker(process)
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


async def test_messages_to_a_busy_worker_wait_for_it_in_order() -> None:
    """A worker that does not read for a while (a busy loop) fills its
    channel: the master keeps what does not fit and sends it, in order,
    when the worker reads again; no answer or stress change is lost."""
    supervisor, worker, mine, theirs = _one_worker()
    try:
        sent = 0
        while not worker.outbox:
            supervisor._answer(worker, str(sent), "ok", 0)
            sent += 1
        supervisor._relay(None, b"Tsmtp\t1")
        for serial in range(sent, sent + 100):
            supervisor._answer(worker, str(serial), "ok", 0)
        assert len(worker.outbox) == 102
        theirs.setblocking(False)
        got: list[bytes] = []

        async def read_all() -> None:
            while len(got) < sent + 101:
                try:
                    got.append(theirs.recv(100))
                except BlockingIOError:
                    await asyncio.sleep(0)  # the master's loop drains meanwhile

        await asyncio.wait_for(read_all(), 10)
        expected = [f"a{n}\tok\t0".encode() for n in range(sent)] + [b"Tsmtp\t1"] + [
            f"a{n}\tok\t0".encode() for n in range(sent, sent + 100)]
        assert got == expected
        assert not worker.outbox
    finally:
        mine.close()
        theirs.close()


class _KillableProcess(_SignalledProcess):
    pid = 4242

    def __init__(self) -> None:
        super().__init__()
        self.killed = 0

    def kill(self) -> None:
        self.killed += 1


async def test_a_worker_that_reads_nothing_for_too_long_is_killed(
        monkeypatch: pytest.MonkeyPatch, maillog_lines: list[str]) -> None:
    """Its outbox is not left to grow without end: past the limit the
    worker is stuck, and is killed to be restarted (its accepted mail is on
    disk), as Postfix's watchdog ends a stuck process."""
    monkeypatch.setattr(workers, "_OUTBOX_LIMIT", 5)
    process = _KillableProcess()
    supervisor, worker, mine, theirs = _one_worker(process)
    try:
        while not worker.outbox:
            supervisor._answer(worker, "1", "ok", 0)
        for _ in range(5):
            supervisor._answer(worker, "2", "ok", 0)
        assert process.killed == 1 and not worker.outbox
        assert "master: warning: process postern/smtpd pid 4242 reads nothing of 6 " \
            "messages: killing it" in maillog_lines
    finally:
        asyncio.get_running_loop().remove_writer(mine.fileno())
        mine.close()
        theirs.close()
