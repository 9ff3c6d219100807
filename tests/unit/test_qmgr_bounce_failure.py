"""A notice that cannot be queued (a full disk) loses no recipient and
sends none twice: Postfix's "if a bounce fails, defer instead"."""

from __future__ import annotations

import asyncio
import errno
import time
from pathlib import Path

import pytest

from mta.config import from_text
from mta.delivery import DeliveryRequest, DeliveryResult, Recipient
from mta.mailboxes import Mailboxes
from mta.qmgr import Bouncer, QueueManager
from mta.queuefile import Envelope, QueueFile
from mta.routing import Router
from mta.spool import Spool


class MixedAgent:
    """Sends to good*, bounces bad*, defers slow*."""

    name = "smtp"

    def __init__(self) -> None:
        self.sent_to: list[str] = []
        self.tried: list[str] = []

    async def deliver(self, request: DeliveryRequest) -> list[DeliveryResult]:
        results = []
        for recipient in request.recipients:
            self.tried.append(recipient.address)
            if recipient.address.startswith("good"):
                self.sent_to.append(recipient.address)
                results.append(DeliveryResult(recipient.index, "sent", "2.0.0", "250 ok"))
            elif recipient.address.startswith("bad"):
                results.append(DeliveryResult(recipient.index, "bounced", "5.1.1",
                                              "550 no such user"))
            else:
                results.append(DeliveryResult(recipient.index, "deferred", "4.4.1",
                                              "451 try later"))
        return results


class FullDiskBouncer(Bouncer):
    """The first notice of each kind fails as on a full disk; later ones are queued."""

    def __init__(self) -> None:
        self.bounced: list[list[str]] = []
        self.warned: list[list[str]] = []

    async def bounce(self, queue_file: QueueFile,
                     failed: list[tuple[Recipient, DeliveryResult]]) -> str | None:
        self.bounced.append([r.address for r, _ in failed])
        if len(self.bounced) == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return "NOTICE"

    async def delay_warning(self, queue_file: QueueFile,
                            delayed: list[tuple[Recipient, DeliveryResult]]) -> str | None:
        self.warned.append([r.address for r, _ in delayed])
        if len(self.warned) == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return "NOTICE"


@pytest.fixture
def lines(maillog_lines: list[str]) -> list[str]:
    return maillog_lines


async def _run(tmp_path: Path, recipients: list[str], extra: str = "",
               arrival: float | None = None) -> tuple[Spool, QueueManager, MixedAgent,
                                                      FullDiskBouncer, str]:
    config = from_text("myhostname = mx.test\nmydestination = mx.test\n" + extra)
    spool = Spool(tmp_path / "queue", lane=0, fsync=False)
    spool.create()
    agent = MixedAgent()
    bouncer = FullDiskBouncer()
    qmgr = QueueManager(config, spool, Router(config, Mailboxes.from_config(config)),
                        {"smtp": agent}, bouncer=bouncer)
    envelope = Envelope(qid=spool.new_qid(), arrival=arrival or time.time(),
                        sender="s@mx.test", recipients=recipients)
    writer = spool.writer(envelope)
    await writer.write(b"Subject: x\r\n\r\nbody\r\n")
    await writer.commit()
    await qmgr.start()
    qmgr.queued(envelope.qid)
    await _settle(qmgr, spool, envelope.qid)
    return spool, qmgr, agent, bouncer, envelope.qid


async def _settle(qmgr: QueueManager, spool: Spool, qid: str, tried: int = 2) -> None:
    """Wait until the agent has been asked for tried recipients in all and the
    message has left active/ (deferred or removed)."""
    agent = qmgr.agents["smtp"]
    assert isinstance(agent, MixedAgent)
    for _ in range(500):
        await asyncio.sleep(0.01)
        if (len(agent.tried) >= tried
                and qmgr.idle.is_set() and spool.find(qid) != "active"):
            return
    raise AssertionError(f"{qid} still in {spool.find(qid)}")


async def test_a_failed_bounce_defers_the_bounced_and_never_resends_the_sent(
        tmp_path: Path, lines: list[str]) -> None:
    spool, qmgr, agent, bouncer, qid = await _run(
        tmp_path, ["good@remote.test", "bad@remote.test"])
    try:
        assert spool.find(qid) == "deferred"
        statuses = spool.read("deferred", qid).statuses
        assert statuses[0].status == "sent"
        assert (statuses[1].status, statuses[1].dsn) == ("deferred", "4.3.0")
        assert f"qmgr: warning: {qid}: cannot queue the non-delivery notification: " \
               "[Errno 28] No space left on device" in lines
        [line] = [line for line in lines if line.startswith(f"qmgr: {qid}: to=<bad@")]
        assert line.endswith("dsn=4.3.0, status=deferred (bounce or trace service failure)")
        assert f"qmgr: {qid}: removed" not in lines

        qmgr.wake(flush=True)  # the next attempt: the bounce is queued this time
        await _settle(qmgr, spool, qid, tried=3)
        assert spool.find(qid) is None
        assert agent.sent_to == ["good@remote.test"]
        assert agent.tried == ["good@remote.test", "bad@remote.test", "bad@remote.test"]
        assert bouncer.bounced == [["bad@remote.test"], ["bad@remote.test"]]
    finally:
        await qmgr.stop(grace=0)
        spool.close()


async def test_a_failed_delay_warning_records_the_attempt_and_is_tried_again(
        tmp_path: Path, lines: list[str]) -> None:
    spool, qmgr, agent, bouncer, qid = await _run(
        tmp_path, ["good@remote.test", "slow@remote.test"], "delay_warning_time = 1h\n",
        arrival=time.time() - 7200)
    try:
        assert spool.find(qid) == "deferred"
        queue_file = spool.read("deferred", qid)
        assert queue_file.statuses[0].status == "sent"
        assert queue_file.statuses[1].status == "deferred"
        assert not queue_file.flag("delay_warned")
        assert f"qmgr: warning: {qid}: cannot queue the delay notification: " \
               "[Errno 28] No space left on device" in lines

        qmgr.wake(flush=True)
        await _settle(qmgr, spool, qid, tried=3)
        assert spool.read("deferred", qid).flag("delay_warned")
        assert agent.sent_to == ["good@remote.test"]
        assert bouncer.warned == [["slow@remote.test"], ["slow@remote.test"]]
    finally:
        await qmgr.stop(grace=0)
        spool.close()
