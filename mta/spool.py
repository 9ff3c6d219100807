"""The on-disk queue: state directories, crash-safe commits, moves and scans.

The spool is the only coupling between receiving and delivering. Its rule is
Postfix's: a message exists once its queue file is complete and durable, and
only then may smtpd answer 250. A commit therefore is

  1. write envelope, content and END record to ``incoming/.QID`` (a dot name:
     scanners skip it, startup removes it);
  2. fsync the file, so its data is on disk;
  3. rename it to ``incoming/QID`` (atomic: the file is whole or absent);
  4. fsync ``incoming/``, so the rename itself survives a crash.

Step 4 is shared between concurrent commits (group commit): one directory
fsync covers every rename made before it started. If it fails, every commit
it covered fails and unlinks its file (the client gets 4xx and keeps the
mail). Blocking calls run in a thread pool; the event loop never waits on
the disk.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import io
import logging
import os
import socket
import stat
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from mta import queuefile, queueid
from mta.diskio import DiskThreads
from mta.errors import CorruptQueueFile, SpoolError
from mta.queuefile import Envelope, QueueFile

log = logging.getLogger(__name__)

QUEUES = ("incoming", "active", "deferred", "hold", "corrupt")
WAKEUP_SOCKET = "public/qmgr"
# The mark of a deferred file that `mta queue flush QID|--site` asked for
# (Postfix's MAIL_QUEUE_STAT_UNTHROTTLE, a mode bit too): it travels with
# the file, so whichever scan starts the message delivers it as a flush
# does, and a lost wake-up loses nothing but time.
FLUSH_MARK = stat.S_IXGRP
_BUFFER_LIMIT = 256 * 1024
_READ_WHOLE = 64 * 1024  # queue files up to this size are read in one piece
_THREADS = 8  # concurrent fsyncs share journal commits
# Status records are appended; read-write for the look at the last byte.
_FOR_RECORDS = os.O_RDWR | os.O_APPEND | os.O_CLOEXEC
# How a delivery attempt left its queue file (Spool.finish_removed and
# finish_deferred): held, moved (held and released again) and deleted mean mta queue
# acted on it meanwhile.
Ending = Literal["removed", "deferred", "held", "moved", "deleted"]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Entry:
    """One queue file seen by a directory scan."""

    queue: str
    qid: str
    mtime: float
    size: int


class _Batch:
    """The renames that one directory fsync covers, and how that fsync ended."""

    __slots__ = ("done", "error")

    def __init__(self) -> None:
        self.done = False
        self.error: BaseException | None = None


class _DirSyncer:
    """Coalesces fsyncs of one directory across threads (group commit).

    A caller joins the batch that the next fsync will cover; one fsync covers
    every caller that joined before it started (their renames came before
    it). Callers that arrive while it runs join the next batch: their renames
    may have missed it. When an fsync fails, every caller in its batch gets
    the error (its session answers 4xx, never 250), and none of them counts
    on a later fsync instead: after a failed one, Linux can drop what it
    could not write and report the next fsync as a success.

    The directory stays open between syncs: an open and a close per commit
    would be two more system calls, and each call a disk thread makes costs
    a GIL hand-off with the busy event loop (docs/performance.md).
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._cond = threading.Condition()
        self._next = _Batch()  # the batch that callers join now
        self._running = False
        self._fd: int | None = None

    def sync(self) -> None:
        with self._cond:
            batch = self._next
            while not batch.done and self._running:
                self._cond.wait()
            if batch.done:
                if batch.error is None:
                    return
                raise _batch_error(batch.error)
            # No fsync runs and ours has not run: this thread runs it, for
            # everyone in the batch; later callers start the next one.
            self._running = True
            self._next = _Batch()
        error: BaseException | None = None
        try:
            if self._fd is None:  # only the running syncer touches it
                self._fd = os.open(self._path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            os.fsync(self._fd)
        except BaseException as failure:
            error = failure
            raise
        finally:
            with self._cond:
                self._running = False
                batch.done = True
                batch.error = error
                self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def _batch_error(error: BaseException) -> OSError:
    """The error of a batch's failed fsync for one more of its callers: a
    copy, as each thread raising the one object would rewrite its traceback."""
    if isinstance(error, OSError):
        return OSError(error.errno, error.strerror, error.filename)
    return OSError(errno.EIO, f"directory fsync failed: {error!r}")


def _read_small(fd: int, limit: int) -> bytes | None:
    """The rest of the file when it is at most limit bytes long, else None."""
    chunks: list[bytes] = []
    total = 0
    while chunk := os.read(fd, limit + 1 - total):
        chunks.append(chunk)
        total += len(chunk)
        if total > limit:
            return None
    return b"".join(chunks)


def _write_all(fd: int, data: bytes, offset: int | None = None) -> None:
    """Write every byte of data (at offset with pwrite), or raise OSError.

    write(2) to a regular file may take fewer bytes than asked when the disk
    fills up (the next call then fails with ENOSPC): a caller that ignored
    the count would report a torn record as written.
    """
    view = memoryview(data)
    while view:
        if offset is None:
            written = os.write(fd, view)
        else:
            written = os.pwrite(fd, view, offset)
            offset += written
        if written <= 0:  # no error and no progress: do not loop for ever
            raise OSError(errno.EIO, "write(2) wrote nothing")
        view = view[written:]


def _deleted(fd: int) -> bool:
    """Whether the file open on fd has lost its last name (unlinked)."""
    return os.fstat(fd).st_nlink == 0


def fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    """A queue directory tree and the operations on it."""

    def __init__(self, root: str | os.PathLike[str], *, lane: int | None = None,
                 fsync: bool = True) -> None:
        self.root = Path(root)
        self._root = str(self.root)
        self.ids = queueid.QueueIdGenerator(lane)
        self._threads = DiskThreads(_THREADS)
        self.fsync = fsync
        self._dirsync = {name: _DirSyncer(self.root / name) for name in QUEUES}

    # -- setup --------------------------------------------------------------------
    def create(self) -> None:
        """Make the queue directories (mode 0700: mail is private)."""
        for name in (*QUEUES, "public"):
            (self.root / name).mkdir(parents=True, exist_ok=True, mode=0o700)

    def exists(self) -> bool:
        return all((self.root / name).is_dir() for name in QUEUES)

    def remove_stale_temporaries(self) -> list[str]:
        """Delete half-written files left by a crash. None was ever acknowledged
        with 250 (that happens only after the rename), so nothing is lost."""
        removed = []
        for name in QUEUES:
            with os.scandir(self.root / name) as entries:
                for entry in entries:
                    if entry.name.startswith("."):
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(entry.path)
                        removed.append(f"{name}/{entry.name}")
        return removed

    def close(self) -> None:
        """Finish queued operations and stop the disk threads (they start
        again if the spool is used after this)."""
        self._threads.close()
        self._threads = DiskThreads(_THREADS)
        for syncer in self._dirsync.values():
            syncer.close()

    async def run(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking spool operation off the event loop."""
        if kwargs:
            function = functools.partial(function, **kwargs)
        return await self._threads.call(function, *args)

    # -- names --------------------------------------------------------------------
    def path(self, queue: str, qid: str) -> Path:
        return self.root / queue / qid

    def file(self, queue: str, qid: str) -> str:
        """path() as a plain string: pathlib costs too much on the hot path."""
        return f"{self._root}/{queue}/{qid}"

    def new_qid(self) -> str:
        return self.ids.next()

    # -- writing ------------------------------------------------------------------
    def writer(self, envelope: Envelope) -> QueueFileWriter:
        return QueueFileWriter(self, envelope)

    def _commit_sync(self, temp: str, final: str, queue: str) -> None:
        if os.path.exists(final):
            raise SpoolError(f"queue id collision: {os.path.basename(final)}")
        os.rename(temp, final)
        if self.fsync:
            try:
                self._dirsync[queue].sync()
            except BaseException:
                # The rename is not known to be durable and the client will be
                # told 4xx, so it keeps the message and sends it again: take
                # this copy back, or the queue manager would deliver it too.
                with contextlib.suppress(OSError):
                    os.unlink(final)
                raise

    # -- reading ------------------------------------------------------------------
    def read(self, queue: str, qid: str, *, verify: bool = True, keep: int = 0) -> QueueFile:
        """Parse a queue file (CorruptQueueFile when torn, FileNotFoundError if gone).

        A small file is read whole with os.read and parsed from memory: four
        system calls where a buffered file object makes eight (fstat, isatty,
        two lseeks), each a GIL hand-off for the disk thread.
        """
        name = f"{queue}/{qid}"
        fd = os.open(self.file(queue, qid), os.O_RDONLY | os.O_CLOEXEC)
        try:
            data = _read_small(fd, _READ_WHOLE)
            if data is not None:
                return queuefile.parse(io.BytesIO(data), name, verify=verify, keep=keep)
            os.lseek(fd, 0, os.SEEK_SET)
            with open(fd, "rb", closefd=False) as stream:
                return queuefile.parse(stream, name, verify=verify, keep=keep)
        finally:
            os.close(fd)

    def activate(self, qid: str, source: str, keep: int = 0) -> tuple[QueueFile, bool]:
        """Move a message into active/ (unless it is there) and read it: one
        trip to the thread pool for what the queue manager does first. True
        with it when a flush marked it (FLUSH_MARK, then cleared): a deferred
        file, or one left in active/ by a crash before its mark was cleared
        (recovery); new mail from incoming/ cannot carry it and pays no
        extra call."""
        if source != "active":
            self.move(qid, source, "active")
        flushed = False
        if source != "incoming":
            path = self.file("active", qid)
            mode = os.stat(path).st_mode
            if mode & FLUSH_MARK:
                os.chmod(path, stat.S_IMODE(mode) & ~FLUSH_MARK)
                flushed = True
        return self.read("active", qid, keep=keep), flushed

    def read_content(self, queue: str, qid: str, queue_file: QueueFile) -> bytes:
        with open(self.file(queue, qid), "rb") as stream:
            stream.seek(queue_file.content_offset)
            return stream.read(queue_file.envelope.size)

    def open_content(self, queue: str, qid: str, queue_file: QueueFile) -> Iterator[bytes]:
        """The message content in chunks, for large messages."""
        with open(self.file(queue, qid), "rb") as stream:
            stream.seek(queue_file.content_offset)
            remaining = queue_file.envelope.size
            while remaining:
                chunk = stream.read(min(remaining, 1 << 20))
                if not chunk:
                    raise CorruptQueueFile(f"{queue}/{qid}: truncated content")
                remaining -= len(chunk)
                yield chunk

    def scan(self, queue: str) -> list[Entry]:
        """Queue files in one queue directory, oldest id first."""
        entries = []
        try:
            with os.scandir(self.root / queue) as it:
                for entry in it:
                    if entry.name.startswith("."):
                        continue
                    try:
                        stat = entry.stat()
                    except FileNotFoundError:
                        continue
                    entries.append(Entry(queue, entry.name, stat.st_mtime, stat.st_size))
        except FileNotFoundError:
            return []
        entries.sort(key=lambda e: e.qid)
        return entries

    def find(self, qid: str) -> str | None:
        """The queue a message is in, or None."""
        for queue in QUEUES:
            if os.path.exists(self.file(queue, qid)):
                return queue
        return None

    # -- state changes --------------------------------------------------------------
    def move(self, qid: str, source: str, target: str, *, mtime: float | None = None) -> None:
        """Move a queue file between queues; with mtime, set its next-attempt time.

        The mtime is set before the rename so that a scanner never sees a
        deferred file with the wrong time.
        """
        path = self.file(source, qid)
        if mtime is not None:
            os.utime(path, (mtime, mtime))
        os.rename(path, self.file(target, qid))

    def append(self, queue: str, qid: str, records: list[dict[str, Any]]) -> None:
        """Append status records to queue/QID (see record)."""
        fd = os.open(self.file(queue, qid), _FOR_RECORDS)
        try:
            self.record(fd, records)
        finally:
            os.close(fd)

    def record(self, fd: int, records: list[dict[str, Any]]) -> None:
        """Append status records and make them durable before anything acts on them.

        Every byte is written and fsynced, or OSError is raised (the queue
        manager then keeps the message in active/ and tries again): a full
        disk can leave part of a record behind, which queuefile.parse skips.
        """
        data = b"".join(queuefile.status_record(record) for record in records)
        end = os.fstat(fd).st_size
        if end and os.pread(fd, 1, end - 1) != b"\n":
            # An earlier append was cut short (a crash, a full disk). End
            # its torn line first: a record glued to it would not parse
            # and would be skipped with it.
            data = b"\n" + data
        _write_all(fd, data)
        if self.fsync:
            os.fsync(fd)

    # -- the end of a delivery attempt ------------------------------------------------
    # `mta queue hold` and `delete` act on a message while the queue manager
    # delivers it, as postsuper does. Its results must still reach the file
    # wherever the file went, or a release delivers to the same recipients
    # again. So the queue manager writes an attempt's records through one
    # descriptor, opened when the first of them is written (as Postfix's
    # delivery agents mark recipients done through the queue file they hold
    # open): rename(2) does not invalidate it, so records written after a
    # hold still land in the held file, and st_nlink tells a deletion. It is
    # opened only then, not when the message becomes active: up to
    # qmgr_message_active_limit (20,000) messages wait for delivery slots, one
    # descriptor each would exhaust the process's limit.

    def open_records(self, qid: str) -> int | None:
        """The queue file of a message under delivery, opened for its status
        records: in active/, or wherever mta queue moved it meanwhile (hold/,
        or deferred/ when it was held and released during the attempt); None
        when it was deleted. The queue manager does not start a message that
        is under delivery, so no other attempt writes to it meanwhile. (Moved
        between two of these looks it would be missed: two operator commands
        within microseconds.)"""
        for queue in ("active", "hold", "deferred", "incoming"):
            with contextlib.suppress(FileNotFoundError):
                return os.open(self.file(queue, qid), _FOR_RECORDS)
        return None

    def _moved_ending(self, qid: str) -> Ending:
        """How to report a file mta queue moved during its attempt: held, or
        moved (released from hold again, now in deferred/)."""
        return "held" if self.find(qid) == "hold" else "moved"

    def open_and_record(self, qid: str, records: list[dict[str, Any]]) -> int | None:
        """open_records, then record: one trip to a disk thread. The caller
        owns the descriptor and hands it to finish_removed or finish_deferred."""
        fd = self.open_records(qid)
        if fd is not None:
            try:
                self.record(fd, records)
            except BaseException:
                os.close(fd)
                raise
        return fd

    def finish_removed(self, qid: str, fd: int | None,
                       records: list[dict[str, Any]] | Callable[[], list[dict[str, Any]]]
                       ) -> Ending:
        """The last recipient is done: remove active/QID ("removed"). If the
        file left active/ during the attempt, the records go into it where it
        is ("held"), unless it was deleted. Closes fd. records may be a
        function that makes them: they are needed only in that rare case, and
        this runs once per delivered message."""
        try:
            try:
                os.unlink(self.file("active", qid))
                return "removed"
            except FileNotFoundError:
                pass
            if fd is None:
                fd = self.open_records(qid)
                if fd is None:
                    return "deleted"
            if _deleted(fd):
                return "deleted"
            self.record(fd, records() if callable(records) else records)
            return self._moved_ending(qid)
        finally:
            if fd is not None:
                os.close(fd)

    def finish_deferred(self, qid: str, fd: int | None, records: list[dict[str, Any]],
                        when: float) -> Ending:
        """Record the attempt's results, then move active/QID to deferred/ due
        at when ("deferred"); "held" or "deleted" when it left active/ during
        the attempt (then the records are in it, wherever it is). Closes fd."""
        try:
            if fd is None:
                fd = self.open_records(qid)
                if fd is None:
                    return "deleted"
            self.record(fd, records)
            # The mtime is set before the rename, so that a scanner never sees
            # a deferred file with the wrong time.
            os.utime(fd, (when, when))
            try:
                os.rename(self.file("active", qid), self.file("deferred", qid))
            except FileNotFoundError:
                return "deleted" if _deleted(fd) else self._moved_ending(qid)
            return "deferred"
        finally:
            if fd is not None:
                os.close(fd)

    def remove(self, queue: str, qid: str) -> bool:
        try:
            os.unlink(self.file(queue, qid))
            return True
        except FileNotFoundError:
            return False

    def save_corrupt(self, queue: str, qid: str) -> None:
        """Set a torn or unreadable file aside; the daemon goes on with the rest."""
        with contextlib.suppress(FileNotFoundError):
            os.rename(self.file(queue, qid), self.file("corrupt", qid))

    def set_next_attempt(self, queue: str, qid: str, when: float) -> None:
        os.utime(self.file(queue, qid), (when, when))

    def mark_flush(self, queue: str, qid: str, when: float) -> None:
        """Due at when, and marked for a flush (FLUSH_MARK): the queue manager
        delivers it past defer_transports and its destination's suspension."""
        path = self.file(queue, qid)
        os.chmod(path, stat.S_IMODE(os.stat(path).st_mode) | FLUSH_MARK)
        self.set_next_attempt(queue, qid, when)

    # -- wake-up ------------------------------------------------------------------------
    @property
    def wakeup_path(self) -> Path:
        return self.root / WAKEUP_SOCKET

    def bind_wakeup(self) -> socket.socket:
        """The daemon's end of public/qmgr, bound in place of a stale one.

        Mode 0622: any local user's sendmail may wake the daemon (as Postfix's
        public/qmgr FIFO), only the daemon's user reads it.
        """
        path = str(self.wakeup_path)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # left by a daemon that did not stop cleanly
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.bind(path)
            os.chmod(path, 0o622)
        except BaseException:
            sock.close()
            raise
        return sock

    def unbind_wakeup(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.wakeup_path)

    def wake(self, message: bytes = b"W") -> bool:
        """Tell a running queue manager to look (W: new mail, F: flush deferred).

        Like Postfix's public/qmgr FIFO; a daemon that is not running simply
        finds the mail when it starts.
        """
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.setblocking(False)
                sock.sendto(message, str(self.wakeup_path))
            return True
        except OSError as error:
            if error.errno not in (errno.ENOENT, errno.ECONNREFUSED, errno.EAGAIN,
                                   errno.ENOTSOCK):
                log.debug("wake-up failed: %s", error)
            return False


class QueueFileWriter:
    """Writes one queue file: header now, content streamed, commit at the end.

    Content is buffered in memory up to 256 KiB and only then written (in the
    thread pool), so a small message costs one thread hop: create, write,
    fsync, rename and directory fsync together.

    The disk steps (flush, commit, abort) hold a lock. A client that goes away
    during the commit has its session cancelled, and the session's abort then
    runs in another disk thread while the commit may still be in fsync on the
    writer's descriptor: without the lock the abort closed the descriptor
    under it (with its number reused, another session's file could be hit).
    With it, the abort waits (a disk thread blocked for one fsync at most)
    and finds the message committed -- it stays queued: the client never saw
    the 250 and may send it again, a duplicate at worst -- or not, and
    removes the temporary file. A flush or commit whose job runs after the
    abort's fails with SpoolError instead of starting a new file.
    """

    def __init__(self, spool: Spool, envelope: Envelope) -> None:
        self.spool = spool
        self.envelope = envelope
        self.qid = envelope.qid
        self._header = queuefile.encode_header(envelope)
        self._buffer: list[bytes] = [self._header]
        self._buffered = len(self._header)
        self._size = 0
        self._crc = 0
        self._lock = threading.Lock()
        # The file's state, changed in disk threads under the lock: "open",
        # then "committed" or "aborted". While open, _fd is None exactly when
        # nothing has been written yet.
        self._state = "open"
        self._fd: int | None = None
        self._temp = spool.file("incoming", "." + self.qid)
        self._final = spool.file("incoming", self.qid)
        self.committed = False

    @property
    def size(self) -> int:
        return self._size

    async def write(self, data: bytes) -> None:
        if not data:
            return
        self._crc = zlib.crc32(data, self._crc)
        self._size += len(data)
        self._buffer.append(data)
        self._buffered += len(data)
        if self._buffered >= _BUFFER_LIMIT:
            chunks, self._buffer, self._buffered = self._buffer, [], 0
            await self.spool.run(self._flush_sync, chunks)

    def _flush_sync(self, chunks: list[bytes]) -> None:
        with self._lock:
            self._check_open()
            try:
                self._write_sync(chunks)
            except BaseException:
                # The chunks are gone from memory: what is on disk can never
                # be completed, so only an abort may follow.
                self._discard()
                raise

    def _check_open(self) -> None:
        if self._state != "open":
            raise SpoolError(f"{self.qid}: queue file already {self._state}")

    def _write_sync(self, chunks: list[bytes]) -> None:
        """Write chunks to the temporary file, creating it; the lock is held."""
        if self._fd is None:
            self._fd = os.open(self._temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                               0o600)
        _write_all(self._fd, b"".join(chunks))

    async def commit(self) -> None:
        """Make the message durable; after this returns smtpd may answer 250."""
        chunks, self._buffer = self._buffer, []
        chunks.append(queuefile.end_record(self._crc))
        await self.spool.run(self._commit_sync, chunks)
        self.committed = True
        self.envelope.size = self._size

    def _commit_sync(self, chunks: list[bytes]) -> None:
        with self._lock:
            self._check_open()
            try:
                size = queuefile.encode_size(self._size)
                offset = queuefile.size_field_offset(self._header)
                if self._fd is None:
                    # Nothing written yet (a message under _BUFFER_LIMIT): the
                    # header goes out with its final size, one pwrite fewer.
                    header = self._header  # chunks[0] until the first flush
                    chunks[0] = header[:offset] + size + header[offset + len(size):]
                    self._write_sync(chunks)
                else:
                    self._write_sync(chunks)
                    _write_all(self._fd, size, offset)
                fd, self._fd = self._fd, None
                assert fd is not None
                try:
                    if self.spool.fsync:
                        os.fsync(fd)
                finally:
                    os.close(fd)  # once: _fd is None already, _discard leaves it
                self.spool._commit_sync(self._temp, self._final, "incoming")
            except BaseException:
                self._discard()
                raise
            self._state = "committed"

    async def abort(self) -> None:
        if not self.committed:
            await self.spool.run(self._abort_sync)

    def _abort_sync(self) -> None:
        with self._lock:
            if self._state == "committed":
                return  # the commit got there first: the message is queued
            self._discard()

    def _discard(self) -> None:
        """Close and remove the temporary file for good; the lock is held."""
        self._state = "aborted"
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._temp)
