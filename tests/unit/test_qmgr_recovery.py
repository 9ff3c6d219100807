"""Each message once: the queue manager takes a queue file once however many
paths find it, and a Maildir copy made before a crash is not made again."""

from __future__ import annotations

import asyncio
import errno
import os
import time
from pathlib import Path
from typing import Any

import pytest

from mta import log as maillog
from mta.config import from_text
from mta.delivery import DeliveryRequest, DeliveryResult
from mta.local import LocalDelivery, copy_name, deliver_to_maildir
from mta.mailboxes import Mailboxes
from mta.qmgr import QueueManager
from mta.queuefile import Envelope
from mta.routing import Router
from mta.spool import Spool
from tests.fakes.agent import HoldingAgent
from tests.helpers import until


class _LateActiveScan(Spool):
    """A scan of active/ that runs after the incoming path has activated qid:
    the moment of a restart when both paths see the same file."""

    watch = ""

    def scan(self, queue: str) -> Any:
        if queue == "active" and self.watch:
            target = self.file("active", self.watch)
            deadline = time.monotonic() + 5
            while not os.path.exists(target) and time.monotonic() < deadline:
                time.sleep(0.005)  # a disk thread, polling for the other path's rename
        return super().scan(queue)


async def test_a_file_found_by_the_active_scan_and_the_incoming_queue_is_delivered_once(
        tmp_path: Path) -> None:
    config = from_text("""
myhostname = mx.test
mydestination = mx.test
""")
    spool = _LateActiveScan(tmp_path / "queue", lane=0, fsync=False)
    spool.create()
    envelope = Envelope(qid=spool.new_qid(), arrival=0, sender="s@mx.test",
                        recipients=["r@remote.test"])
    writer = spool.writer(envelope)
    await writer.write(b"Subject: x\r\n\r\nbody\r\n")
    await writer.commit()
    spool.watch = envelope.qid
    agent = HoldingAgent()
    qmgr = QueueManager(config, spool, Router(config, Mailboxes.from_config(config)),
                        {"smtp": agent})
    qmgr.queued(envelope.qid)  # a receiver's notice, before the start's scans
    await qmgr.start()
    try:
        # A second start of the same file would reach the agent right after
        # the first: give it half a second to show (it never should).
        deadline = time.monotonic() + 0.5
        while len(agent.requests) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        agent.release.set()
        await asyncio.wait_for(qmgr.idle.wait(), 5)
        assert [request.qid for request in agent.requests] == [envelope.qid]
        assert not os.path.exists(spool.file("active", envelope.qid))
    finally:
        await qmgr.stop(grace=0)
        spool.close()


def test_a_second_attempt_finds_the_first_copy_and_stores_nothing(tmp_path: Path) -> None:
    maildir = tmp_path / "alice"
    name = copy_name("2K0QCETA6J01", 0, 1795351780.5, "0000abcd")
    first, created = deliver_to_maildir(maildir, b"one\n", name, fsync=True)
    assert created and first == maildir / "new" / name
    again, created = deliver_to_maildir(maildir, b"two\n", name, fsync=True)
    assert not created and again == first
    assert first.read_bytes() == b"one\n"  # never replaced
    assert [p.name for p in (maildir / "new").iterdir()] == [name]
    assert list((maildir / "tmp").iterdir()) == []
    # Another recipient of the same message is another copy.
    other, created = deliver_to_maildir(
        maildir, b"x\n", copy_name("2K0QCETA6J01", 1, 1795351780.5, "0000abcd"), fsync=False)
    assert created and other != first


def test_without_hard_links_a_copy_gets_a_unique_name(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def no_links(source: object, target: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    maildir = tmp_path / "alice"
    path, created = deliver_to_maildir(maildir, b"one\n", "fixed.name.host", fsync=False)
    assert created and path.parent == maildir / "new" and path.name != "fixed.name.host"
    assert list((maildir / "tmp").iterdir()) == []


async def _recover(tmp_path: Path, *, copy_before_crash: bool) -> list[Path]:
    """A message left in active/ by a crash, delivered by a fresh queue manager."""
    config = from_text(f"""
myhostname = mx.test
mydestination = mx.test
mail_spool_directory = {tmp_path}/mail
local_recipient_maps = inline:{{ alice@mx.test=alice }}
""")
    spool = Spool(tmp_path / "queue", lane=0, fsync=False)
    spool.create()
    envelope = Envelope(qid=spool.new_qid(), arrival=time.time(), sender="s@mx.test",
                        recipients=["alice@mx.test"])
    writer = spool.writer(envelope)
    await writer.write(b"Subject: x\r\n\r\nbody\r\n")
    await writer.commit()
    spool.move(envelope.qid, "incoming", "active")  # taken, then the crash
    maildir = tmp_path / "mail" / "alice"
    mailboxes = Mailboxes.from_config(config)
    local = LocalDelivery(mailboxes, spool)
    if copy_before_crash:  # delivered, but the queue file never heard of it
        deliver_to_maildir(maildir, b"Subject: x\n\nbody\n",
                           copy_name(envelope.qid, 0, envelope.arrival, local.instance),
                           fsync=False)
    qmgr = QueueManager(config, spool, Router(config, mailboxes), {"local": local})
    await qmgr.start()
    try:
        deadline = time.monotonic() + 5
        while os.path.exists(spool.file("active", envelope.qid)):
            assert time.monotonic() < deadline, "the recovered message was not finished"
            await asyncio.sleep(0.01)
    finally:
        await qmgr.stop(grace=5)
        spool.close()
    return sorted((maildir / "new").iterdir())


async def test_a_recovered_message_already_in_the_maildir_is_not_delivered_again(
        tmp_path: Path) -> None:
    assert len(await _recover(tmp_path, copy_before_crash=True)) == 1


async def test_a_recovered_message_not_yet_in_the_maildir_is_delivered(
        tmp_path: Path) -> None:
    (copy,) = await _recover(tmp_path, copy_before_crash=False)
    assert b"body" in copy.read_bytes()


async def test_a_torn_status_record_is_skipped_with_a_warning_not_set_aside(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An append cut short (a crash, a full disk) and one made after it: the
    message is still delivered, and the maillog says what was skipped."""
    config = from_text("""
myhostname = mx.test
mydestination = mx.test
""")
    lines: list[str] = []
    monkeypatch.setattr(maillog, "emit", lambda program, text, level=0: lines.append(
        f"{program}: {text}"))
    spool = Spool(tmp_path / "queue", lane=0, fsync=False)
    spool.create()
    envelope = Envelope(qid=spool.new_qid(), arrival=time.time(), sender="s@mx.test",
                        recipients=["r@remote.test", "q@remote.test"])
    writer = spool.writer(envelope)
    await writer.write(b"Subject: x\r\n\r\nbody\r\n")
    await writer.commit()
    spool.move(envelope.qid, "incoming", "active")
    path = spool.file("active", envelope.qid)
    torn_at = os.path.getsize(path)
    with open(path, "ab") as stream:
        stream.write(b'R {"r":0,"s":"se')
    spool.append("active", envelope.qid, [{"r": 1, "s": "sent", "dsn": "2.0.0", "t": 1.0,
                                           "text": "250 ok"}])
    agent = HoldingAgent()
    agent.release.set()
    qmgr = QueueManager(config, spool, Router(config, Mailboxes.from_config(config)),
                        {"smtp": agent})
    await qmgr.start()
    try:
        deadline = time.monotonic() + 5
        while os.path.exists(path):
            assert time.monotonic() < deadline, "the message was not finished"
            await asyncio.sleep(0.01)
        await asyncio.wait_for(qmgr.idle.wait(), 5)
    finally:
        await qmgr.stop(grace=0)
        spool.close()
    assert [[r.address for r in request.recipients] for request in agent.requests] == [
        ["r@remote.test"]]
    assert os.listdir(tmp_path / "queue" / "corrupt") == []
    assert (f"qmgr: warning: active/{envelope.qid}: skipped a torn or unreadable status "
            f"record at byte {torn_at}: b'R {{\"r\":0,\"s\":\"se'") in lines


class _Deferring:
    """Defers every recipient (the next hop is down), counting the attempts."""

    name = "smtp"

    def __init__(self) -> None:
        self.attempts = 0

    async def deliver(self, request: DeliveryRequest) -> list[DeliveryResult]:
        self.attempts += 1
        return [DeliveryResult(r.index, "deferred", "4.4.1", "connect to x: refused")
                for r in request.recipients]


async def test_a_torn_status_record_is_warned_of_once_per_run(
        tmp_path: Path, maillog_lines: list[str]) -> None:
    """The torn line stays in the file (queue files are never rewritten); the
    warning is said at the first attempt of this run, not at every one."""
    config = from_text("myhostname = mx.test\nmydestination = mx.test\n")
    spool = Spool(tmp_path / "queue", lane=0, fsync=False)
    spool.create()
    envelope = Envelope(qid=spool.new_qid(), arrival=time.time(), sender="s@mx.test",
                        recipients=["r@remote.test"])
    writer = spool.writer(envelope)
    await writer.write(b"Subject: x\r\n\r\nbody\r\n")
    await writer.commit()
    with open(spool.file("incoming", envelope.qid), "ab") as stream:
        stream.write(b'R {"r":0,"s":"se')
    agent = _Deferring()
    qmgr = QueueManager(config, spool, Router(config, Mailboxes.from_config(config)),
                        {"smtp": agent})
    await qmgr.start()
    try:
        for attempt in (1, 2, 3):
            if attempt > 1:
                qmgr.wake(flush=True)
            await until(lambda: agent.attempts == attempt  # noqa: B023 (polled at once)
                        and spool.find(envelope.qid) == "deferred" and qmgr.idle.is_set())
    finally:
        await qmgr.stop(grace=0)
        spool.close()
    warnings = [line for line in maillog_lines if "skipped a torn" in line]
    assert len(warnings) == 1, warnings
