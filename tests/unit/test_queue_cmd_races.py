"""mta queue hold/delete against a running queue manager that moves the
message meanwhile (deferred/ to active/ for a retry): the command follows the
file instead of reporting 0 messages (a race CI once hit)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mta.cli.queue_cmd import _chase
from mta.spool import Spool
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
