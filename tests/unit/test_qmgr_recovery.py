"""The queue manager takes each queue file once, however many paths find it."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from mta.config import from_text
from mta.delivery import DeliveryRequest, DeliveryResult
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
