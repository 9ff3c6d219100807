"""A backlog in active/ costs envelopes, not message content, in memory."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from mta import qmgr as qmgr_module
from mta.config import from_text
from mta.mailboxes import Mailboxes
from mta.qmgr import QueueManager
from mta.queuefile import Envelope
from mta.routing import Router
from mta.spool import Spool
from tests.fakes.agent import HoldingAgent


async def test_beyond_the_limit_content_is_read_at_delivery_not_held(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(qmgr_module, "_KEEP_WHILE_ACTIVE", 2)
    config = from_text("myhostname = mx.test\nmydestination = mx.test\n")
    spool = Spool(tmp_path / "queue", lane=0, fsync=False)
    spool.create()
    agent = HoldingAgent()
    qmgr = QueueManager(config, spool, Router(config, Mailboxes.from_config(config)),
                        {"smtp": agent})
    await qmgr.start()
    try:
        for n in range(3):
            envelope = Envelope(qid=spool.new_qid(), arrival=0, sender="s@mx.test",
                                recipients=[f"r{n}@remote{n}.test"])
            writer = spool.writer(envelope)
            await writer.write(f"Subject: {n}\r\n\r\nbody {n}\r\n".encode())
            await writer.commit()
            qmgr.queued(envelope.qid)
            agent.arrived.clear()
            await asyncio.wait_for(agent.arrived.wait(), 5)  # each waits at the agent
        # Deliberately private: whether the queue manager kept the content in memory.
        held = [request.content._file.content for request in agent.requests]  # type: ignore[attr-defined]
        # The first two were among at most two active messages: kept in memory.
        # The third made three: its content stays on disk until it is sent.
        assert held[0] is not None and held[1] is not None and held[2] is None
        assert await agent.requests[2].content.read_all() == b"Subject: 2\r\n\r\nbody 2\r\n"
        agent.release.set()
        await asyncio.wait_for(qmgr.idle.wait(), 5)
    finally:
        await qmgr.stop(grace=5)
        spool.close()
