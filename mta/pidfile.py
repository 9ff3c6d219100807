"""The master's pid file and lock: one daemon per spool.

Two masters on one spool would both recover active/, both scan incoming/ and
deferred/ and deliver the same messages, and the second would take over the
public/qmgr wake-up socket. Postfix's master prevents this with an exclusive
lock on $queue_directory/pid/master.pid ("the Postfix mail system is already
running"); so does ours, taken before anything touches the spool. The lock is
flock(2) on the open file: the kernel drops it when the master exits, however
it exits, so a kill -9 leaves no stale lock (a stale pid number in the file
is harmless: `mta status` trusts the lock, not the number).

The same file answers `mta status`, `mta stop` and `mta reload` (Postfix's
postfix status/stop/reload): the pid in it is signalled only while its
lock is held.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

PID_DIRECTORY = "pid"
PID_FILE = "master.pid"


class AlreadyRunning(Exception):
    """Another master holds the spool's lock."""


def path_of(queue_directory: str | Path) -> Path:
    return Path(queue_directory) / PID_DIRECTORY / PID_FILE


class MasterLock:
    """The running master's hold on its spool; released by release() or exit."""

    def __init__(self, queue_directory: str | Path) -> None:
        self.path = path_of(queue_directory)
        self._fd: int | None = None
        # The last master did not clear its pid (cleared()): it was killed,
        # and its receiver workers may still hold the listening ports for a
        # moment, so the new master waits for them before it gives up a bind.
        self.unclean = False

    def acquire(self) -> None:
        """Lock the pid file and write our pid, as Postfix does (the number
        right-aligned in ten columns); AlreadyRunning if another master has it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            _lock_exclusive(fd)
        except BaseException:
            os.close(fd)
            raise
        self.unclean = bool(os.pread(fd, 32, 0).strip())
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid():>10}\n".encode(), 0)
        self._fd = fd

    def clear(self) -> None:
        """At a clean exit, with the lock still held: an empty pid file tells
        the next master that no worker of ours is left (`mta status` trusts
        the lock, not the number, so nothing else reads it then)."""
        if self._fd is not None:
            os.ftruncate(self._fd, 0)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # the lock goes with the last descriptor
            self._fd = None


def _lock_exclusive(fd: int, attempts: int = 10, pause: float = 0.02) -> None:
    """flock(LOCK_EX) without waiting on a running master; a few short
    retries ride out `mta status`, which holds a shared lock for an instant
    to test whether a master runs."""
    for attempt in range(attempts):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if attempt == attempts - 1:
                raise AlreadyRunning from None
            time.sleep(pause)  # before the event loop exists: nothing else to run


def running_pid(queue_directory: str | Path) -> int | None:
    """The pid of the master that holds the spool's lock; None when no master
    runs (nobody holds the lock, or there is no pid file)."""
    path = path_of(queue_directory)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            pass  # held: a master runs; its pid is in the file
        else:
            return None  # we got it, so no master holds it
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    finally:
        os.close(fd)
    try:
        return int(text)
    except ValueError:
        return None  # locked but not yet written: a master is starting
