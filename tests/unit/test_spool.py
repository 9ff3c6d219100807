"""The spool: commits are atomic and durable, torn files go to corrupt/."""

from __future__ import annotations

import asyncio
import errno
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from mta import queuefile, queueid
from mta import spool as spool_module
from mta.errors import CorruptQueueFile, SpoolError
from mta.queuefile import Envelope
from mta.spool import Spool


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    spool = Spool(tmp_path / "queue", lane=3)
    spool.create()
    yield spool
    spool.close()


async def commit(spool: Spool, content: bytes, recipients: list[str] | None = None) -> str:
    qid = spool.new_qid()
    envelope = Envelope(qid=qid, arrival=1795330516.5, sender="bob@example.org",
                        recipients=recipients or ["alice@example.test"],
                        client="localhost[127.0.0.1]", helo="client.example", proto="ESMTP")
    writer = spool.writer(envelope)
    await writer.write(content)
    await writer.commit()
    return qid


async def test_commit_then_read_back(spool: Spool) -> None:
    content = b"Subject: x\r\n\r\n" + b"y" * 300_000 + b"\r\n"  # crosses the buffer limit
    qid = await commit(spool, content, ["alice@example.test", "bob@example.test"])
    assert [e.qid for e in spool.scan("incoming")] == [qid]
    assert not [n for n in os.listdir(spool.root / "incoming") if n.startswith(".")]
    queue_file = spool.read("incoming", qid)
    assert queue_file.envelope.size == len(content)
    assert queue_file.envelope.recipients == ["alice@example.test", "bob@example.test"]
    assert queue_file.envelope.helo == "client.example"
    assert spool.read_content("incoming", qid, queue_file) == content
    assert b"".join(spool.open_content("incoming", qid, queue_file)) == content
    assert queue_file.pending() == [0, 1]


@pytest.mark.parametrize("slack", [-1, 0, 1])
async def test_files_around_the_whole_read_limit_read_back(spool: Spool, slack: int) -> None:
    """Small files are read whole, larger ones streamed: the same result either
    side of the limit, status records after the END record included."""
    qid = spool.new_qid()
    envelope = Envelope(qid=qid, arrival=1.0, sender="", recipients=["a@b.test"])
    writer = spool.writer(envelope)
    header = len(queuefile.encode_header(envelope))
    record = queuefile.status_record({"r": 0, "s": "deferred", "dsn": "4.4.1", "t": 1.0,
                                      "text": "down", "next": 5.0})
    end = len(queuefile.end_record(0))
    content = b"x" * (spool_module._READ_WHOLE + slack - header - end - len(record))
    await writer.write(content)
    await writer.commit()
    spool.append("incoming", qid, [{"r": 0, "s": "deferred", "dsn": "4.4.1", "t": 1.0,
                                    "text": "down", "next": 5.0}])
    assert os.path.getsize(spool.path("incoming", qid)) == spool_module._READ_WHOLE + slack
    queue_file = spool.read("incoming", qid, keep=1 << 20)
    assert queue_file.content == content
    assert queue_file.statuses[0].text == "down"


async def test_the_envelope_is_readable_text(spool: Spool) -> None:
    qid = await commit(spool, b"Subject: x\r\n\r\nhello\r\n")
    head = (spool.root / "incoming" / qid).read_bytes().split(b"\n\n")[0].decode()
    assert head.splitlines() == [
        "POSTERN 1", f"id: {qid}", "arrival: 1795330516.500000",
        "size: 0000000000000021", "sender: bob@example.org", "client: localhost[127.0.0.1]",
        "helo: client.example", "proto: ESMTP", "rcpt: alice@example.test"]


async def test_status_records_append_and_the_latest_wins(spool: Spool) -> None:
    qid = await commit(spool, b"x\r\n", ["a@example.test", "b@example.test"])
    spool.append("incoming", qid, [
        {"r": 0, "s": "deferred", "dsn": "4.4.1", "t": 1.0, "text": "down", "next": 5.0},
        {"r": 1, "s": "sent", "dsn": "2.0.0", "t": 1.0, "text": "ok"}])
    spool.append("incoming", qid, [{"r": 0, "s": "sent", "dsn": "2.0.0", "t": 2.0,
                                    "text": "ok"}])
    queue_file = spool.read("incoming", qid)
    assert queue_file.pending() == []
    assert queue_file.statuses[0].text == "ok"


async def test_a_torn_status_record_is_ignored(spool: Spool) -> None:
    qid = await commit(spool, b"x\r\n", ["a@example.test", "b@example.test"])
    path = spool.path("incoming", qid)
    with open(path, "ab") as stream:
        stream.write(b'R {"r":0,"s":"se')  # the crash came in the middle of an append
    assert spool.read("incoming", qid).pending() == [0, 1]
    # The next attempt appends after the tear: its record starts a line of
    # its own, and the torn one is skipped, not taken for corruption.
    spool.append("incoming", qid, [{"r": 1, "s": "sent", "dsn": "2.0.0", "t": 2.0,
                                    "text": "ok"}])
    queue_file = spool.read("incoming", qid)
    assert queue_file.pending() == [0]
    assert queue_file.statuses[1].text == "ok"
    assert path.read_bytes().endswith(b'R {"r":0,"s":"se\nR {"r":1,"s":"sent"'
                                      b',"dsn":"2.0.0","t":2.0,"text":"ok"}\n')
    assert len(queue_file.skipped) == 1  # reported, for the queue manager's warning
    offset, sample = queue_file.skipped[0]
    assert path.read_bytes()[offset:].startswith(b'R {"r":0,"s":"se\n')
    assert sample == b'R {"r":0,"s":"se'


@pytest.mark.parametrize("line", [b'R {"r":0,"s":"defR {"r":1,"s":"sent"}',  # glued
                                  b"R 12", b'R {"r":"x","s":"sent"}', b'R {"r":0}',
                                  b"garbage", b""])
async def test_an_unreadable_status_record_anywhere_is_skipped(spool: Spool,
                                                               line: bytes) -> None:
    """END and its CRC protect envelope and content; a bad status line costs
    at most one repeated attempt, so it is skipped, not the file set aside."""
    qid = await commit(spool, b"x\r\n", ["a@example.test", "b@example.test"])
    spool.append("incoming", qid, [{"r": 0, "s": "deferred", "dsn": "4.4.1", "t": 1.0,
                                    "text": "down"}])
    with open(spool.path("incoming", qid), "ab") as stream:
        stream.write(line + b"\n")
    spool.append("incoming", qid, [{"r": 1, "s": "sent", "dsn": "2.0.0", "t": 2.0,
                                    "text": "ok"}])
    for verify in (True, False):
        queue_file = spool.read("incoming", qid, verify=verify)
        assert queue_file.pending() == [0]
        assert queue_file.statuses[0].text == "down"
        assert len(queue_file.records) == 2
        assert [sample for _, sample in queue_file.skipped] == [line[:40]]


real_write = os.write


class _ShortWrites:
    """os.write on a file system that is filling up: each call writes a few
    bytes (fewer than asked, as write(2) may), `room` bytes in all, and a
    call with no room left fails with ENOSPC."""

    def __init__(self, room: int) -> None:
        self.room = room
        self.calls = 0

    def __call__(self, fd: int, data: bytes | memoryview) -> int:
        self.calls += 1
        if self.room <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written = real_write(fd, bytes(data[:min(self.room, 7)]))
        self.room -= written
        return written


async def test_append_writes_every_byte_despite_short_writes(
        spool: Spool, monkeypatch: pytest.MonkeyPatch) -> None:
    qid = await commit(spool, b"x\r\n", ["a@example.test"])
    short = _ShortWrites(room=1 << 20)
    monkeypatch.setattr(os, "write", short)
    spool.append("incoming", qid, [{"r": 0, "s": "sent", "dsn": "2.0.0", "t": 2.0,
                                    "text": "delivered to maildir"}])
    monkeypatch.undo()
    assert short.calls > 1
    assert spool.read("incoming", qid).pending() == []


async def test_append_on_a_full_disk_raises_and_the_next_one_is_read(
        spool: Spool, monkeypatch: pytest.MonkeyPatch) -> None:
    """A record the disk had no room for must not count as written: the
    queue manager keeps the message in active/ and tries again."""
    qid = await commit(spool, b"x\r\n", ["a@example.test", "b@example.test"])
    monkeypatch.setattr(os, "write", _ShortWrites(room=20))
    with pytest.raises(OSError) as raised:
        spool.append("incoming", qid, [{"r": 1, "s": "sent", "dsn": "2.0.0", "t": 2.0,
                                        "text": "delivered to maildir"}])
    assert raised.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert spool.read("incoming", qid).pending() == [0, 1]  # 20 bytes of a torn record
    spool.append("incoming", qid, [{"r": 0, "s": "deferred", "dsn": "4.4.1", "t": 3.0,
                                    "text": "down"}])
    queue_file = spool.read("incoming", qid)
    assert queue_file.statuses[0].text == "down"
    assert queue_file.pending() == [0, 1]
    assert len(queue_file.skipped) == 1


@pytest.mark.parametrize("damage", ["truncate_content", "truncate_end", "flip_byte",
                                    "no_magic", "half_envelope"])
async def test_torn_or_damaged_files_are_corrupt(spool: Spool, damage: str) -> None:
    qid = await commit(spool, b"Subject: x\r\n\r\n" + b"z" * 1000 + b"\r\n")
    path = spool.path("incoming", qid)
    data = path.read_bytes()
    body_start = data.index(b"\n\n") + 2
    damaged = {
        "truncate_content": data[:body_start + 500],
        "truncate_end": data[:-5],
        "flip_byte": data[:body_start + 10] + b"Q" + data[body_start + 11:],
        "no_magic": b"XXXXXXX 1\n" + data[10:],
        "half_envelope": data[:40],
    }[damage]
    path.write_bytes(damaged)
    with pytest.raises(CorruptQueueFile):
        spool.read("incoming", qid)
    spool.save_corrupt("incoming", qid)
    assert spool.scan("corrupt")[0].qid == qid


async def test_aborted_writes_leave_nothing(spool: Spool) -> None:
    envelope = Envelope(qid=spool.new_qid(), arrival=1.0, sender="", recipients=["a@b.test"])
    writer = spool.writer(envelope)
    await writer.write(b"x" * 600_000)  # flushed to a temporary file
    assert any(n.startswith(".") for n in os.listdir(spool.root / "incoming"))
    await writer.abort()
    assert os.listdir(spool.root / "incoming") == []


async def test_stale_temporaries_are_removed_at_start(spool: Spool) -> None:
    (spool.root / "incoming" / ".2K04EZMPDJ00").write_bytes(b"POSTERN 1\nid: half")
    assert spool.remove_stale_temporaries() == ["incoming/.2K04EZMPDJ00"]
    assert os.listdir(spool.root / "incoming") == []


async def test_moves_set_the_next_attempt_time(spool: Spool) -> None:
    qid = await commit(spool, b"x\r\n")
    spool.move(qid, "incoming", "deferred", mtime=2_000_000_000.0)
    entry = spool.scan("deferred")[0]
    assert (entry.qid, entry.mtime) == (qid, 2_000_000_000.0)
    assert spool.find(qid) == "deferred"


_SENT = {"r": 0, "s": "sent", "dsn": "2.0.0", "t": 1.0, "text": "250 ok"}
_LATER = {"r": 1, "s": "deferred", "dsn": "4.4.1", "t": 1.0, "text": "down", "next": 9.0}


@pytest.mark.parametrize("finish", ["removed", "deferred"])
@pytest.mark.parametrize("action", ["none", "hold", "delete"])
async def test_an_attempts_records_follow_its_file_through_one_descriptor(
        spool: Spool, action: str, finish: str) -> None:
    """The descriptor opened for an attempt's first records stays valid when
    mta queue hold renames the file (later records reach hold/), and a
    deletion is told by the file's link count, not by a lookup."""
    qid = await commit(spool, b"Subject: x\r\n\r\nbody\r\n", ["a@x.test", "b@x.test"])
    spool.move(qid, "incoming", "active")
    fd = spool.open_and_record(qid, [_SENT])
    assert fd is not None
    if action == "hold":
        spool.move(qid, "active", "hold")
    elif action == "delete":
        os.unlink(spool.file("active", qid))
    if finish == "removed":
        ending = spool.finish_removed(qid, fd, [_SENT, {**_LATER, "s": "bounced"}])
    else:
        ending = spool.finish_deferred(qid, fd, [_LATER], 9.0)
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(fd)  # closed by the finish, whatever the ending
    expected = {"none": finish, "hold": "held", "delete": "deleted"}[action]
    assert ending == expected
    assert spool.find(qid) == {"removed": None, "deferred": "deferred",
                               "held": "hold", "deleted": None}[ending]
    if ending in ("deferred", "held"):
        statuses = spool.read(spool.find(qid) or "", qid).statuses
        assert statuses[0].status == "sent"
        assert statuses[1].status == ("bounced" if finish == "removed" else "deferred")


async def test_an_attempts_first_record_finds_a_held_or_deleted_file(spool: Spool) -> None:
    qid = await commit(spool, b"Subject: x\r\n\r\nbody\r\n")
    spool.move(qid, "incoming", "hold")  # held before the attempt's first record
    fd = spool.open_and_record(qid, [_SENT])
    assert fd is not None
    assert spool.finish_deferred(qid, fd, [], 9.0) == "held"
    assert spool.read("hold", qid).statuses[0].status == "sent"
    os.unlink(spool.file("hold", qid))
    assert spool.open_and_record(qid, [_SENT]) is None
    assert spool.finish_removed(qid, None, [_SENT]) == "deleted"
    assert spool.finish_deferred(qid, None, [_SENT], 9.0) == "deleted"


def test_queue_ids_are_unique_sorted_and_readable() -> None:
    generator = queueid.QueueIdGenerator(lane=7)
    ids = [generator.next() for _ in range(10_000)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(queueid.is_valid(q) and len(q) == 12 for q in ids)
    assert not set("ILOU") & set("".join(ids))
    other = queueid.QueueIdGenerator(lane=8).next()
    assert other[-2:] != ids[0][-2:]
    assert abs(queueid.arrival_of(ids[-1]) - __import__("time").time()) < 5


class _WatchedCondition(threading.Condition):
    """_DirSyncer's condition, counting the threads that went to wait on it."""

    def __init__(self) -> None:
        super().__init__()
        self.waits = 0
        self.seen = threading.Condition()

    def wait(self, timeout: float | None = None) -> bool:
        with self.seen:
            self.waits += 1
            self.seen.notify_all()
        return super().wait(timeout)


def _start_sync(syncer: spool_module._DirSyncer, name: str,
                outcome: dict[str, str]) -> threading.Thread:
    """A thread named name calling syncer.sync(); its outcome goes to outcome."""

    def sync() -> None:
        try:
            syncer.sync()
            outcome[name] = "durable"
        except OSError as error:
            outcome[name] = errno.errorcode[error.errno or 0]

    thread = threading.Thread(target=sync, name=name)
    thread.start()
    return thread


def _wait_for_waiters(cond: _WatchedCondition, count: int) -> None:
    with cond.seen:
        assert cond.seen.wait_for(lambda: cond.waits >= count, timeout=10)


def _held_first_fsync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, first_fails: bool
                      ) -> tuple[spool_module._DirSyncer, _WatchedCondition, threading.Event,
                                 threading.Event, list[str]]:
    """A directory syncer whose first fsync holds until released (and then
    succeeds or fails with EIO); every later fsync does the opposite. Returns
    the syncer, its watched condition, the first fsync's started and
    may-end events, and the names of the threads that called fsync."""
    syncer = spool_module._DirSyncer(tmp_path)
    cond = _WatchedCondition()
    syncer._cond = cond
    first_started, first_may_end = threading.Event(), threading.Event()
    calls: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        calls.append(threading.current_thread().name)
        fails = first_fails
        if len(calls) == 1:
            first_started.set()
            assert first_may_end.wait(10)
        else:
            fails = not first_fails
        if fails:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return syncer, cond, first_started, first_may_end, calls


def test_a_failed_directory_fsync_fails_every_commit_it_covered(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """B and C renamed while A's fsync ran; one fsync then covers both and
    fails: neither rename is known to be durable, so neither may answer 250."""
    syncer, cond, first_started, first_may_end, calls = _held_first_fsync(
        tmp_path, monkeypatch, first_fails=False)
    outcome: dict[str, str] = {}
    threads = [_start_sync(syncer, "A", outcome)]
    assert first_started.wait(10)
    threads.append(_start_sync(syncer, "B", outcome))
    _wait_for_waiters(cond, 1)
    threads.append(_start_sync(syncer, "C", outcome))
    _wait_for_waiters(cond, 2)
    first_may_end.set()
    for thread in threads:
        thread.join(10)
    syncer.close()
    assert outcome == {"A": "durable", "B": "EIO", "C": "EIO"}
    assert len(calls) == 2  # B and C still share one fsync (group commit)


def test_a_sync_arriving_during_a_failed_one_runs_its_own(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """B's rename may have come after A's fsync started: A's failure is not
    B's, and B's own fsync decides."""
    syncer, cond, first_started, first_may_end, calls = _held_first_fsync(
        tmp_path, monkeypatch, first_fails=True)
    outcome: dict[str, str] = {}
    threads = [_start_sync(syncer, "A", outcome)]
    assert first_started.wait(10)
    threads.append(_start_sync(syncer, "B", outcome))
    _wait_for_waiters(cond, 1)  # B waits for A's fsync to end
    first_may_end.set()
    for thread in threads:
        thread.join(10)
    assert calls == ["A", "B"]
    assert outcome == {"A": "EIO", "B": "durable"}
    syncer.sync()  # and the next one syncs again
    assert calls == ["A", "B", "MainThread"]
    syncer.close()


async def test_a_failed_directory_fsync_fails_the_commit_and_keeps_no_file(
        spool: Spool, monkeypatch: pytest.MonkeyPatch) -> None:
    """The client gets 4xx and keeps the message: a copy left in incoming/
    would be delivered as well (a duplicate)."""
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    writer = spool.writer(Envelope(qid=spool.new_qid(), arrival=1.0, sender="",
                                   recipients=["a@b.test"]))
    await writer.write(b"x\r\n")
    with pytest.raises(OSError) as raised:
        await writer.commit()
    assert raised.value.errno == errno.EIO
    await writer.abort()
    assert os.listdir(spool.root / "incoming") == []


async def test_a_commit_fsyncs_the_file_renames_it_and_fsyncs_the_directory(
        spool: Spool, monkeypatch: pytest.MonkeyPatch) -> None:
    """The order a 250 depends on, each step complete before commit returns."""
    done: list[tuple[str, object]] = []
    real_fsync, real_rename = os.fsync, os.rename

    def fsync(fd: int) -> None:
        info = os.fstat(fd)
        real_fsync(fd)
        kind = "directory fsync" if stat.S_ISDIR(info.st_mode) else "file fsync"
        done.append((kind, (info.st_dev, info.st_ino)))

    def rename(source: str, target: str) -> None:
        real_rename(source, target)
        done.append(("rename", (os.path.basename(source), os.path.basename(target))))

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "rename", rename)
    incoming = os.stat(spool.root / "incoming")
    for size in (100, 600_000):  # written at commit, or mostly flushed before it
        done.clear()
        qid = await commit(spool, b"x" * size)
        returned = list(done)
        final = os.stat(spool.path("incoming", qid))
        assert returned == [("file fsync", (final.st_dev, final.st_ino)),
                            ("rename", ("." + qid, qid)),
                            ("directory fsync", (incoming.st_dev, incoming.st_ino))]


class _SpyLock:
    """Stands in for QueueFileWriter._lock and tells when a thread must wait."""

    def __init__(self, contended: threading.Event) -> None:
        self._lock = threading.Lock()
        self._contended = contended

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if self._lock.locked():
            self._contended.set()
        return self._lock.acquire(blocking, timeout)

    def release(self) -> None:
        self._lock.release()

    def locked(self) -> bool:
        return self._lock.locked()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()


async def test_an_abort_racing_the_commit_waits_for_it(
        spool: Spool, monkeypatch: pytest.MonkeyPatch) -> None:
    """A client goes away while its message is committed: smtpd's session is
    cancelled and aborts the writer in another disk thread while the commit
    is still inside fsync on the writer's descriptor."""
    envelope = Envelope(qid=spool.new_qid(), arrival=1.0, sender="", recipients=["a@b.test"])
    writer = spool.writer(envelope)
    content = b"x" * 300_000
    await writer.write(content)  # over the buffer limit: the file is open
    fd = writer._fd
    assert fd is not None
    in_fsync, may_finish, progress = threading.Event(), threading.Event(), threading.Event()
    busy: set[int] = set()
    closes: list[bool] = []  # of fd: was a fsync on it under way?
    real_fsync, real_close, real_abort = os.fsync, os.close, writer._abort_sync

    def fsync(target: int) -> None:
        if target != fd or in_fsync.is_set():
            return real_fsync(target)
        busy.add(target)
        in_fsync.set()
        try:
            assert may_finish.wait(10)
            real_fsync(target)
        finally:
            busy.discard(target)

    def close(target: int) -> None:
        if target == fd:
            closes.append(target in busy)
        real_close(target)

    def abort_sync() -> None:
        try:
            real_abort()
        finally:
            progress.set()  # (without a lock, the abort is over at once)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "close", close)
    monkeypatch.setattr(writer, "_abort_sync", abort_sync)
    monkeypatch.setattr(writer, "_lock", _SpyLock(progress), raising=False)

    async def session() -> None:  # smtpd's DATA handler (protocol.py)
        try:
            await writer.commit()
        except BaseException:
            await asyncio.shield(writer.abort())
            raise

    task = asyncio.create_task(session())
    assert await asyncio.to_thread(in_fsync.wait, 10)
    task.cancel()  # the client went away
    assert await asyncio.to_thread(progress.wait, 10)  # the abort ran, or waits
    may_finish.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert closes == [False]  # once, and not under the fsync
    # The commit was in its fsync: it finishes and the message is queued. The
    # client never saw the 250 and may send it again (a duplicate at worst).
    assert os.listdir(spool.root / "incoming") == [envelope.qid]
    assert spool.read("incoming", envelope.qid).envelope.size == len(content)


async def test_a_writer_aborted_first_writes_and_commits_nothing(spool: Spool) -> None:
    """The abort's disk job can start before a commit or flush queued ahead
    of it (another thread): they must then fail, not start a new file from
    what is left in memory."""
    writer = spool.writer(Envelope(qid=spool.new_qid(), arrival=1.0, sender="",
                                   recipients=["a@b.test"]))
    await writer.write(b"x" * 300_000)
    await writer.abort()
    with pytest.raises(SpoolError):
        await writer.write(b"y" * 300_000)
    with pytest.raises(SpoolError):
        await writer.commit()
    assert os.listdir(spool.root / "incoming") == []


@pytest.mark.parametrize("then", ["completes", "fails"])
async def test_a_short_write_of_the_size_field_is_completed_or_fails_the_commit(
        spool: Spool, monkeypatch: pytest.MonkeyPatch, then: str) -> None:
    """The size is patched in place after the content; a patch that did not
    land would make a committed file unreadable: its mail lost after a 250."""
    real_pwrite = os.pwrite
    calls: list[int] = []

    def pwrite(fd: int, data: bytes | memoryview, offset: int) -> int:
        calls.append(len(data))
        if len(calls) == 1:
            return real_pwrite(fd, data[:5], offset)  # part of it, as write(2) may
        if then == "fails":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", pwrite)
    qid = spool.new_qid()
    writer = spool.writer(Envelope(qid=qid, arrival=1.0, sender="", recipients=["a@b.test"]))
    await writer.write(b"x" * 300_000)  # flushed: the size is written by pwrite
    if then == "completes":
        await writer.commit()
        assert spool.read("incoming", qid).envelope.size == 300_000
    else:
        with pytest.raises(OSError):
            await writer.commit()
        await writer.abort()
        assert os.listdir(spool.root / "incoming") == []
    assert calls[:2] == [16, 11]
