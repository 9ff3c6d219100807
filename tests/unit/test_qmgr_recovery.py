"""The queue manager takes each queue file once, however many paths find it."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from mta.config import from_text
from mta.delivery import DeliveryRequest, DeliveryResult
from mta.local import LocalDelivery, deliver_to_maildir, delivered_before, delivery_marker
from mta.mailboxes import Mailboxes
from mta.qmgr import QueueManager
from mta.queuefile import Envelope
from mta.routing import Router
from mta.spool import Spool


class _SlowAgent:
    """Delivers when told to, and counts what it was asked to deliver."""

    name = "smtp"

    def __init__(self) -> None:
        self.deliveries: list[str] = []
        self.release = asyncio.Event()

    async def deliver(self, request: DeliveryRequest) -> list[DeliveryResult]:
        self.deliveries.append(request.qid)
        await self.release.wait()
        return [DeliveryResult(r.index, "sent", "2.0.0", "250 ok") for r in request.recipients]


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
    agent = _SlowAgent()
    qmgr = QueueManager(config, spool, Router(config, Mailboxes.from_config(config)),
                        {"smtp": agent})
    qmgr.queued(envelope.qid)  # a receiver's notice, before the start's scans
    await qmgr.start()
    try:
        # A second start of the same file would reach the agent right after
        # the first: give it half a second to show (it never should).
        deadline = time.monotonic() + 0.5
        while len(agent.deliveries) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        agent.release.set()
        await asyncio.wait_for(qmgr.idle.wait(), 5)
        assert agent.deliveries == [envelope.qid]
        assert not os.path.exists(spool.file("active", envelope.qid))
    finally:
        await qmgr.stop(grace=0)
        spool.close()


def test_delivered_before_matches_only_its_own_recipient(tmp_path: Path) -> None:
    maildir = tmp_path / "alice"
    deliver_to_maildir(maildir, b"x\n", fsync=False, marker=delivery_marker("2K0QCETA6J01", 10))
    assert delivered_before(maildir, delivery_marker("2K0QCETA6J01", 10))
    assert not delivered_before(maildir, delivery_marker("2K0QCETA6J01", 1))
    assert not delivered_before(maildir, delivery_marker("2K0QCETA6J02", 10))
    # A reader that has seen it moves it to cur/ and adds flags.
    (path,) = (maildir / "new").iterdir()
    path.rename(maildir / "cur" / (path.name + ":2,S"))
    assert delivered_before(maildir, delivery_marker("2K0QCETA6J01", 10))
    assert not delivered_before(tmp_path / "nobody", delivery_marker("2K0QCETA6J01", 10))


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
    envelope = Envelope(qid=spool.new_qid(), arrival=0, sender="s@mx.test",
                        recipients=["alice@mx.test"])
    writer = spool.writer(envelope)
    await writer.write(b"Subject: x\r\n\r\nbody\r\n")
    await writer.commit()
    spool.move(envelope.qid, "incoming", "active")  # taken, then the crash
    maildir = tmp_path / "mail" / "alice"
    if copy_before_crash:  # delivered, but the queue file never heard of it
        deliver_to_maildir(maildir, b"Subject: x\n\nbody\n", fsync=False,
                           marker=delivery_marker(envelope.qid, 0))
    mailboxes = Mailboxes.from_config(config)
    qmgr = QueueManager(config, spool, Router(config, mailboxes),
                        {"local": LocalDelivery(mailboxes, spool)})
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
