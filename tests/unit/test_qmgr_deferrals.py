"""Mail the queue manager defers itself: a dead destination's waiting
deliveries and defer_transports, logged from qmgr as in Postfix."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from mta.concurrency import SITE_FAILURE, FeedbackDestination
from mta.config import from_text
from mta.delivery import DeliveryRequest, DeliveryResult
from mta.mailboxes import Mailboxes
from mta.qmgr import QueueManager
from mta.queuefile import Envelope
from mta.routing import Router
from mta.spool import Spool
from tests.helpers import until

REFUSED = "connect to mx.dead.test[192.0.2.1]:25: Connection timed out"


class DeadSiteAgent:
    """Every attempt times out at connect: site failures, fed back to the destination."""

    name = "smtp"

    def __init__(self) -> None:
        self.calls = 0

    async def deliver(self, request: DeliveryRequest) -> list[DeliveryResult]:
        self.calls += 1
        await asyncio.sleep(0.01)  # the connect timeout, while the others wait for a slot
        return [DeliveryResult(r.index, "deferred", "4.4.1", REFUSED,
                               extra={"feedback": SITE_FAILURE}) for r in request.recipients]


@pytest.fixture
def lines(maillog_lines: list[str]) -> list[str]:
    return maillog_lines


async def _queue(spool: Spool, qmgr: QueueManager, recipient: str) -> str:
    envelope = Envelope(qid=spool.new_qid(), arrival=time.time(), sender="s@mx.test",
                        recipients=[recipient])
    writer = spool.writer(envelope)
    await writer.write(b"Subject: x\r\n\r\nbody\r\n")
    await writer.commit()
    qmgr.queued(envelope.qid)
    return envelope.qid


async def _wait_deferred(spool: Spool, count: int) -> None:
    for _ in range(1000):
        if len(spool.scan("deferred")) == count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{len(spool.scan('deferred'))} of {count} deferred")


async def _one_slot_qmgr(tmp_path: Path, agent: DeadSiteAgent) -> tuple[Spool, QueueManager]:
    """A started queue manager whose destinations have one slot and suspend
    for 300s after one failed cohort."""
    config = from_text("myhostname = mx.test\nmydestination = mx.test\n")
    spool = Spool(tmp_path / "queue", lane=0, fsync=False)
    spool.create()
    qmgr = QueueManager(config, spool, Router(config, Mailboxes.from_config(config)),
                        {"smtp": agent},
                        destination_factory=lambda key, limit: FeedbackDestination(
                            key, limit, initial=1, cohort_limit=1, suspend_for=300))
    await qmgr.start()
    return spool, qmgr


async def test_deliveries_waiting_for_a_slot_are_deferred_once_the_destination_is_dead(
        tmp_path: Path, lines: list[str]) -> None:
    agent = DeadSiteAgent()
    # One slot, one failed cohort: the first failure kills the destination
    # while the other nine messages wait for the slot.
    spool, qmgr = await _one_slot_qmgr(tmp_path, agent)
    try:
        for n in range(10):
            await _queue(spool, qmgr, f"r{n}@dead.test")
        await _wait_deferred(spool, 10)
        assert agent.calls == 1
        suspended = [line for line in lines
                     if f"status=deferred (delivery temporarily suspended: {REFUSED})" in line]
        assert len(suspended) == 9
        assert all(line.startswith("qmgr: ") and "dsn=4.4.1" in line for line in suspended)
    finally:
        await qmgr.stop(grace=0)
        spool.close()


async def test_defer_transports_are_logged_from_qmgr(tmp_path: Path, lines: list[str]) -> None:
    config = from_text("myhostname = mx.test\nmydestination = mx.test\n"
                       "defer_transports = smtp\n")
    spool = Spool(tmp_path / "queue", lane=0, fsync=False)
    spool.create()
    agent = DeadSiteAgent()
    qmgr = QueueManager(config, spool, Router(config, Mailboxes.from_config(config)),
                        {"smtp": agent})
    await qmgr.start()
    try:
        qid = await _queue(spool, qmgr, "r@remote.test")
        await _wait_deferred(spool, 1)
        assert agent.calls == 0
        [line] = [line for line in lines if "to=<r@remote.test>" in line]
        assert line.startswith(f"qmgr: {qid}: to=<r@remote.test>, relay=none, ")
        assert line.endswith("dsn=4.3.2, status=deferred (deferred transport)")
    finally:
        await qmgr.stop(grace=0)
        spool.close()


class RevivingAgent(DeadSiteAgent):
    """Dead until revived, then delivers."""

    def __init__(self) -> None:
        super().__init__()
        self.alive = False

    async def deliver(self, request: DeliveryRequest) -> list[DeliveryResult]:
        if not self.alive:
            return await super().deliver(request)
        self.calls += 1
        return [DeliveryResult(r.index, "sent", "2.0.0", "250 2.0.0 Ok")
                for r in request.recipients]


async def test_a_flushed_message_tries_its_suspended_destination_again(
        tmp_path: Path, lines: list[str]) -> None:
    """mta queue flush QID (postqueue -i) marks the file; whichever scan
    takes it, a plain wake-up here, its attempt tries its own destination
    again, as Postfix's qmgr unthrottles the queues of a message the flush
    service marked. Another suspended destination stays suspended (only
    --site, postqueue -s, revives them all), and the other message keeps
    its time."""
    agent = RevivingAgent()
    spool, qmgr = await _one_slot_qmgr(tmp_path, agent)
    try:
        named = await _queue(spool, qmgr, "a@dead.test")
        other = await _queue(spool, qmgr, "b@dead.test")
        elsewhere = await _queue(spool, qmgr, "c@other.test")
        await _wait_deferred(spool, 3)
        assert agent.calls == 2  # one per destination; b was deferred by the suspension
        agent.alive = True
        spool.mark_flush("deferred", named, time.time())
        qmgr.wake()
        await until(lambda: f"qmgr: {named}: removed" in lines)
        assert agent.calls == 3
        assert [entry.qid for entry in spool.scan("deferred")] == [other, elsewhere]
        # other.test is still suspended: new mail for it waits.
        fresh = await _queue(spool, qmgr, "d@other.test")
        await until(lambda: any(f"{fresh}: to=<d@other.test>" in line and
                                "delivery temporarily suspended" in line for line in lines))
        assert agent.calls == 3
        # --site's S revives every destination: the next mail goes.
        qmgr.wake(revive=True)
        await until(lambda: not qmgr._scan_now.is_set())  # the scan began: revived
        last = await _queue(spool, qmgr, "e@other.test")
        await until(lambda: f"qmgr: {last}: removed" in lines)
    finally:
        await qmgr.stop(grace=0)
        spool.close()


async def test_a_plain_flush_revives_a_dead_destination_once(
        tmp_path: Path, lines: list[str]) -> None:
    """mta queue flush (postqueue -f) ends every suspension once, at its
    scan, as Postfix's QMGR_FLUSH_ONCE; only a message a flush marked tries
    its destination again by itself. So the first flushed message tries the
    dead site, and the others, activated one by one after it failed again,
    are deferred by the new suspension without a delivery attempt."""
    agent = DeadSiteAgent()
    spool, qmgr = await _one_slot_qmgr(tmp_path, agent)
    try:
        count = 20
        for n in range(count):
            await _queue(spool, qmgr, f"r{n}@dead.test")
        await _wait_deferred(spool, count)
        assert agent.calls == 1
        activate = spool.activate

        def slow(*args: Any, **kwargs: Any) -> Any:
            time.sleep(0.02)  # a real disk: the attempts start one after another
            return activate(*args, **kwargs)

        spool.activate = slow  # type: ignore[method-assign]
        qmgr.wake(flush=True)
        await until(lambda: sum("status=deferred" in line for line in lines) >= 2 * count)
        assert agent.calls == 2
    finally:
        await qmgr.stop(grace=0)
        spool.close()
