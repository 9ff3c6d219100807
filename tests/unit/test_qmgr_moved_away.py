"""A message put on hold (or deleted) by `mta queue` while its delivery runs,
as postsuper may do to an active message: the attempt's results follow it
into hold/, so a release does not deliver to the same recipients again, and
no "removed" line is logged for a file the queue manager did not remove."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from mta.config import from_text
from mta.delivery import DeliveryRequest, DeliveryResult
from mta.mailboxes import Mailboxes
from mta.qmgr import QueueManager
from mta.queuefile import Envelope
from mta.routing import Router
from mta.spool import Spool
from tests.helpers import until


class OperatorMidDelivery:
    """Delivers every recipient; while it does, the operator acts on the file."""

    name = "smtp"

    def __init__(self, spool: Spool, action: str, defer_last: bool = False) -> None:
        self.spool = spool
        self.action = action
        self.defer_last = defer_last  # the attempt ends in a deferral, not a removal
        self.calls = 0

    async def deliver(self, request: DeliveryRequest) -> list[DeliveryResult]:
        self.calls += 1
        qid = request.envelope.qid
        if self.action == "hold":
            self.spool.move(qid, "active", "hold")  # what mta queue hold does
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


@pytest.mark.parametrize("defer_last", [False, True], ids=["all-done", "one-deferred"])
@pytest.mark.parametrize("action", ["hold", "delete"])
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
        envelope = Envelope(qid=spool.new_qid(), arrival=time.time(), sender="s@mx.test",
                            recipients=["a@remote.test", "b@remote.test"])
        writer = spool.writer(envelope)
        await writer.write(b"Subject: x\r\n\r\nbody\r\n")
        await writer.commit()
        qid = envelope.qid
        qmgr.queued(qid)
        await until(lambda: any("warning:" in line for line in lines))
        assert not any(line.endswith(f"{qid}: removed") for line in lines)
        if action == "hold":
            assert f"qmgr: warning: {qid}: placed on hold during delivery; its recipients' " \
                "results are recorded in the held file" in lines
            # Released, only what was deferred is delivered again.
            assert spool.read("hold", qid).pending() == ([1] if defer_last else [])
        else:
            assert f"qmgr: warning: {qid}: remove {qid} from active: " \
                "No such file or directory" in lines
        assert agent.calls == 1
    finally:
        await qmgr.stop(grace=0)
        spool.close()
