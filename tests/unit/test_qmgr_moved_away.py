"""A message put on hold (or deleted) by `mta queue` while its delivery runs,
as postsuper may do to an active message: the attempt's results follow it
into hold/, so a release does not deliver to the same recipients again, and
no "removed" line is logged for a file the queue manager did not remove."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from mta.bounce import SpoolBouncer
from mta.config import Config, from_text
from mta.delivery import DeliveryRequest, DeliveryResult, Recipient
from mta.mailboxes import Mailboxes
from mta.qmgr import QueueManager
from mta.queuefile import Envelope, QueueFile
from mta.routing import Router
from mta.spool import Spool
from tests.helpers import until

T = TypeVar("T")


class OperatorMidDelivery:
    """Delivers every recipient; while it does, the operator acts on the file."""

    name = "smtp"

    def __init__(self, spool: Spool, action: str, defer_last: bool = False) -> None:
        self.spool = spool
        self.action = action
        self.defer_last = defer_last  # the attempt ends in a deferral, not a removal
        self.requests: list[DeliveryRequest] = []

    async def deliver(self, request: DeliveryRequest) -> list[DeliveryResult]:
        self.requests.append(request)
        qid = request.envelope.qid
        if len(self.requests) > 1:  # the operator acted once; this is the next attempt
            return [DeliveryResult(r.index, "sent", "2.0.0", "250 2.0.0 Ok")
                    for r in request.recipients]
        if self.action == "hold":
            self.spool.move(qid, "active", "hold")  # what mta queue hold does
        elif self.action == "hold-release":
            self.spool.move(qid, "active", "hold")
            self.spool.move(qid, "hold", "deferred", mtime=time.time())  # mta queue release
        else:
            os.unlink(self.spool.file("active", qid))  # mta queue delete
        results = [DeliveryResult(r.index, "sent", "2.0.0", "250 2.0.0 Ok")
                   for r in request.recipients]
        if self.defer_last:
            last = request.recipients[-1].index
            results[-1] = DeliveryResult(last, "deferred", "4.4.1", "try again later")
        return results


@pytest.fixture
def lines(maillog_lines: list[str]) -> list[str]:
    return maillog_lines


async def _queue(spool: Spool, recipients: list[str]) -> str:
    """A small message from s@mx.test committed to incoming/; its queue id."""
    envelope = Envelope(qid=spool.new_qid(), arrival=time.time(), sender="s@mx.test",
                        recipients=recipients)
    writer = spool.writer(envelope)
    await writer.write(b"Subject: x\r\n\r\nbody\r\n")
    await writer.commit()
    return envelope.qid


@pytest.mark.parametrize("defer_last", [False, True], ids=["all-done", "one-deferred"])
@pytest.mark.parametrize("action", ["hold", "hold-release", "delete"])
async def test_a_message_moved_away_during_delivery(tmp_path: Path, lines: list[str],
                                                    action: str, defer_last: bool) -> None:
    config = from_text("myhostname = mx.test\nmydestination = mx.test\n")
    spool = Spool(tmp_path / "queue", lane=0, fsync=False)
    spool.create()
    agent = OperatorMidDelivery(spool, action, defer_last)
    qmgr = QueueManager(config, spool, Router(config, Mailboxes.from_config(config)),
                        {"smtp": agent})
    await qmgr.start()
    try:
        qid = await _queue(spool, ["a@remote.test", "b@remote.test"])
        qmgr.queued(qid)
        await until(lambda: any("warning:" in line for line in lines))
        if action == "hold-release":
            # Released while the attempt ran: its results still reach the file.
            assert f"qmgr: warning: {qid}: held and released during delivery; its " \
                "recipients' results are recorded in the queue file" in lines
            if defer_last:
                # Due when the attempt's deferral says, not at once.
                released = spool.read("deferred", qid)
                assert released.pending() == [1]
                assert os.stat(spool.file("deferred", qid)).st_mtime > time.time() + 60
            else:
                # The release made it due at once: the queue manager looks
                # again after the attempt (the release's wake-up came while
                # it was active), and that pickup, not the first attempt,
                # removes a file with nothing left to deliver.
                await until(lambda: any(line.endswith(f"{qid}: removed") for line in lines))
                pickups = [i for i, line in enumerate(lines) if f"{qid}: from=<" in line]
                [removed] = [i for i, line in enumerate(lines)
                             if line.endswith(f"{qid}: removed")]
                assert len(pickups) == 2 and removed > pickups[1], lines
            assert len(agent.requests) == 1
            return
        assert not any(line.endswith(f"{qid}: removed") for line in lines)
        if action == "hold":
            assert f"qmgr: warning: {qid}: placed on hold during delivery; its recipients' " \
                "results are recorded in the held file" in lines
            # Released, only what was deferred is delivered again.
            assert spool.read("hold", qid).pending() == ([1] if defer_last else [])
        else:
            assert f"qmgr: warning: {qid}: remove {qid} from active: " \
                "No such file or directory" in lines
        assert len(agent.requests) == 1
    finally:
        await qmgr.stop(grace=0)
        spool.close()


class OperatorSpool(Spool):
    """Carries out ``mta queue hold`` (or ``delete``) just before the queue
    manager's first disk call after the delivery, once armed with a queue id:
    the moment it records the sent recipients before queueing the bounce."""

    def __init__(self, root: Path, action: str) -> None:
        super().__init__(root, lane=0, fsync=False)
        self.action = action
        self.armed: str | None = None

    async def run(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        qid, self.armed = self.armed, None
        if qid is not None:
            operate(self, self.action, qid)
        return await super().run(function, *args, **kwargs)


def operate(spool: Spool, action: str, qid: str) -> None:
    if action == "hold":
        spool.move(qid, "active", "hold")  # what mta queue hold does
    else:
        os.unlink(spool.file("active", qid))  # mta queue delete


class SendsAndBounces:
    """Sends to good@, bounces bad@, then arms the operator."""

    name = "smtp"

    def __init__(self, spool: OperatorSpool, arm: bool) -> None:
        self.spool = spool
        self.arm = arm
        self.calls = 0

    async def deliver(self, request: DeliveryRequest) -> list[DeliveryResult]:
        self.calls += 1
        if self.arm:
            self.spool.armed = request.envelope.qid
        return [DeliveryResult(r.index, "sent", "2.0.0", "250 2.0.0 Ok")
                if r.address.startswith("good") else
                DeliveryResult(r.index, "bounced", "5.1.1", "550 5.1.1 no such user")
                for r in request.recipients]


class OperatorDuringBounce(SpoolBouncer):
    """Records where the original was when the bounce was asked for; with an
    action, the operator then acts while the DSN is queued."""

    def __init__(self, config: Config, spool: Spool, action: str | None) -> None:
        self.notices: list[str] = []
        super().__init__(config, spool, self.notices.append)
        self.action = action
        self.original_in: str | None = None

    async def bounce(self, queue_file: QueueFile,
                     failed: list[tuple[Recipient, DeliveryResult]]) -> str | None:
        self.original_in = self.spool.find(queue_file.qid)
        if self.action is not None:
            operate(self.spool, self.action, queue_file.qid)
        return await super().bounce(queue_file, failed)


@pytest.mark.parametrize("moment", ["before-the-first-record", "while-the-bounce-is-queued"])
@pytest.mark.parametrize("action", ["hold", "delete"])
async def test_a_message_moved_away_around_its_bounce(tmp_path: Path, lines: list[str],
                                                      action: str, moment: str) -> None:
    """The sent recipient's record, written before the bounce is queued, and
    the bounced one's after it, reach the held file wherever the hold falls."""
    config = from_text("myhostname = mx.test\nmydestination = mx.test\n")
    spool = OperatorSpool(tmp_path / "queue", action)
    spool.create()
    early = moment == "before-the-first-record"
    agent = SendsAndBounces(spool, arm=early)
    bouncer = OperatorDuringBounce(config, spool, None if early else action)
    qmgr = QueueManager(config, spool, Router(config, Mailboxes.from_config(config)),
                        {"smtp": agent}, bouncer=bouncer)
    await qmgr.start()
    try:
        qid = await _queue(spool, ["good@remote.test", "bad@remote.test"])
        qmgr.queued(qid)
        await until(lambda: any("warning:" in line for line in lines))
        await asyncio.wait_for(qmgr.idle.wait(), 5)
        assert not any("cannot update the queue file" in line for line in lines), lines
        assert not any(line.endswith(f"{qid}: removed") for line in lines)
        if action == "hold":
            assert f"qmgr: warning: {qid}: placed on hold during delivery; its recipients' " \
                "results are recorded in the held file" in lines
            statuses = spool.read("hold", qid).statuses
            assert (statuses[0].status, statuses[1].status) == ("sent", "bounced")
            # The bounce is queued also when the message was held before it.
            assert bouncer.original_in == ("hold" if early else "active")
            [notice] = bouncer.notices
            assert spool.find(notice) == "incoming"
        else:
            assert f"qmgr: warning: {qid}: remove {qid} from active: " \
                "No such file or directory" in lines
            # Deleted before anything was recorded: nothing is bounced either.
            assert len(bouncer.notices) == (0 if early else 1)
        assert agent.calls == 1
    finally:
        await qmgr.stop(grace=0)
        spool.close()


class SlowToOpen(Spool):
    """open_and_record waits, in its disk thread, until the test lets it go."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.entered = threading.Event()
        self.go = threading.Event()
        self.opened: int | None = None

    def open_and_record(self, qid: str, records: list[dict[str, Any]]) -> int | None:
        self.entered.set()
        self.go.wait(10)
        self.opened = super().open_and_record(qid, records)
        return self.opened


def _closed(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return True
    return False


async def test_a_first_record_cancelled_at_stop_leaves_no_descriptor_open(
        tmp_path: Path) -> None:
    config = from_text("myhostname = mx.test\nmydestination = mx.test\n")
    spool = SlowToOpen(tmp_path / "queue", lane=0, fsync=False)
    spool.create()
    qmgr = QueueManager(config, spool, Router(config, Mailboxes.from_config(config)), {})
    try:
        qid = await _queue(spool, ["a@remote.test"])
        spool.move(qid, "incoming", "active")
        opening = asyncio.ensure_future(qmgr._open_and_record(qid, []))
        await until(spool.entered.is_set)
        opening.cancel()  # the queue manager stopped meanwhile
        spool.go.set()
        with pytest.raises(asyncio.CancelledError):
            await opening
        await until(lambda: spool.opened is not None and _closed(spool.opened))
    finally:
        spool.go.set()
        spool.close()
