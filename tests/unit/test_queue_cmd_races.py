"""mta queue hold/delete/flush against a running queue manager that moves
the message meanwhile (deferred/ to active/ for a retry): the command follows
the file instead of reporting 0 messages (a race CI once hit), within the
queues it was asked to act on."""

from __future__ import annotations

import os
import time
from argparse import Namespace
from collections.abc import Iterator
from pathlib import Path

import pytest

from mta.cli import queue_cmd
from mta.cli.queue_cmd import _chase
from mta.spool import FLUSH_MARK, Spool
from tests.unit.test_spool import commit


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    spool = Spool(tmp_path / "queue", lane=3, fsync=False)
    spool.create()
    yield spool
    spool.close()


@pytest.mark.parametrize("act", ["hold", "delete"])
async def test_a_message_moved_by_the_queue_manager_is_followed(spool: Spool, act: str) -> None:
    qid = await commit(spool, b"Subject: x\r\n\r\nbody\r\n")
    spool.move(qid, "incoming", "deferred")
    tried: list[str] = []

    def hold_or_delete(queue: str, qid: str) -> bool:
        tried.append(queue)
        if len(tried) == 1:
            spool.move(qid, "deferred", "active")  # a retry got there first
        if act == "hold":
            spool.move(qid, queue, "hold")
            return True
        return spool.remove(queue, qid)

    queues = ("incoming", "active", "deferred")
    assert _chase(spool, qid, "deferred", queues, hold_or_delete)
    assert tried == ["deferred", "active"]
    assert spool.find(qid) == ("hold" if act == "hold" else None)


async def test_a_message_gone_for_good_is_not_chased(spool: Spool) -> None:
    qid = await commit(spool, b"Subject: x\r\n\r\nbody\r\n")
    spool.remove("incoming", qid)  # delivered and removed meanwhile
    assert not _chase(spool, qid, "incoming", ("incoming", "active", "deferred"), spool.remove)


@pytest.fixture
def cli(spool: Spool, monkeypatch: pytest.MonkeyPatch, maillog_lines: list[str]) -> list[bytes]:
    """The queue command's actions on spool, in this process; the wake-ups
    they send the queue manager."""
    monkeypatch.setattr(queue_cmd, "_open", lambda args: (None, spool))
    woken: list[bytes] = []

    def wake(message: bytes = b"W") -> bool:
        woken.append(message)
        return True

    monkeypatch.setattr(spool, "wake", wake)
    return woken


async def deferred(spool: Spool, when: float = 2e9) -> str:
    qid = await commit(spool, b"Subject: x\r\n\r\nbody\r\n")
    spool.move(qid, "incoming", "deferred", mtime=when)
    return qid


@pytest.mark.parametrize(("named", "queues", "followed"), [
    (("deferred",), queue_cmd.DELETE_QUEUES, ("active", "deferred")),
    (("incoming",), queue_cmd.DELETE_QUEUES, ("incoming", "active", "deferred")),
    (("hold",), queue_cmd.DELETE_QUEUES, ("hold",)),
    (("corrupt", "active"), queue_cmd.DELETE_QUEUES, ("active", "deferred", "corrupt")),
    (queue_cmd.DELETE_QUEUES, queue_cmd.DELETE_QUEUES, queue_cmd.DELETE_QUEUES),
    (("deferred",), queue_cmd.HOLD_QUEUES, ("active", "deferred")),
    (("hold",), queue_cmd.RELEASE_QUEUES, ("hold",)),
])
def test_all_in_named_queues_follows_only_the_queue_managers_moves(
        named: tuple[str, ...], queues: tuple[str, ...], followed: tuple[str, ...]) -> None:
    assert queue_cmd._followed(named, queues) == followed


async def test_delete_all_deferred_follows_a_retry_into_active(
        spool: Spool, cli: list[bytes], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    qid = await deferred(spool)
    remove = spool.remove

    def racing(queue: str, qid: str) -> bool:
        if queue == "deferred":
            spool.move(qid, "deferred", "active")  # the queue manager got there first
        return remove(queue, qid)

    monkeypatch.setattr(spool, "remove", racing)
    assert queue_cmd.delete(Namespace(qids=["ALL", "deferred"])) == 0
    assert spool.find(qid) is None
    assert capsys.readouterr().err == f"postsuper: {qid}: removed\npostsuper: Deleted: 1 message\n"


async def test_delete_all_hold_does_not_follow_a_release(
        spool: Spool, cli: list[bytes], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    qid = await deferred(spool)
    spool.move(qid, "deferred", "hold")
    remove = spool.remove

    def racing(queue: str, qid: str) -> bool:
        spool.move(qid, "hold", "deferred")  # another operator released it
        return remove(queue, qid)

    monkeypatch.setattr(spool, "remove", racing)
    assert queue_cmd.delete(Namespace(qids=["ALL", "hold"])) == 0
    assert spool.find(qid) == "deferred"
    assert capsys.readouterr().err == "postsuper: Deleted: 0 messages\n"


async def test_flush_by_id_marks_it_due_and_wakes_without_flushing_all(
        spool: Spool, cli: list[bytes]) -> None:
    flushed, other = await deferred(spool), await deferred(spool)
    before = time.time()
    assert queue_cmd.flush_queue(Namespace(qids=[flushed], sites=[])) == 0
    assert before <= spool.scan("deferred")[0].mtime <= time.time()
    assert spool.scan("deferred")[1].mtime == 2e9
    assert [e.qid for e in spool.scan("deferred")] == [flushed, other]
    # The mark is on the file, so any scan delivers it as a flush does (and
    # the activation takes the mark off); the other is not marked.
    assert os.stat(spool.file("deferred", flushed)).st_mode & FLUSH_MARK
    assert not os.stat(spool.file("deferred", other)).st_mode & FLUSH_MARK
    # W: the queue manager takes what is due; F would take every deferred one.
    assert cli == [b"W"]
    _, marked = spool.activate(flushed, "deferred")
    assert marked and not os.stat(spool.file("active", flushed)).st_mode & FLUSH_MARK
    assert spool.activate(other, "deferred")[1] is False


async def test_a_mark_left_in_active_by_a_crash_is_honoured_at_recovery(
        spool: Spool, cli: list[bytes]) -> None:
    """A kill between activate's rename and its chmod leaves the mark on a
    file in active/: the queue manager's recovery (source active) honours
    and clears it, as Postfix's qmgr_active_feed does, so it cannot force
    some later, unrelated retry."""
    qid = await deferred(spool)
    spool.mark_flush("deferred", qid, time.time())
    spool.move(qid, "deferred", "active")  # ... and the process died here
    _, marked = spool.activate(qid, "active")
    assert marked and not os.stat(spool.file("active", qid)).st_mode & FLUSH_MARK


async def test_flush_leaves_a_message_a_retry_took_meanwhile(
        spool: Spool, cli: list[bytes], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    qid = await deferred(spool)
    mark_flush = spool.mark_flush

    def racing(queue: str, qid: str, when: float) -> None:
        spool.move(qid, "deferred", "active")  # under way already
        mark_flush(queue, qid, when)

    monkeypatch.setattr(spool, "mark_flush", racing)
    assert queue_cmd.flush_queue(Namespace(qids=[qid], sites=[])) == 0
    assert spool.find(qid) == "active"
    assert capsys.readouterr().err == ""
    assert cli == []
