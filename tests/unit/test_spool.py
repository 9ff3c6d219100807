"""The spool: commits are atomic and durable, torn files go to corrupt/."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from mta import queuefile, queueid
from mta import spool as spool_module
from mta.errors import CorruptQueueFile
from mta.queuefile import Envelope
from mta.spool import Spool


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    spool = Spool(tmp_path / "queue", lane=3)
    spool.create()
    yield spool
    spool.close()


async def commit(spool: Spool, content: bytes, recipients: list[str] | None = None) -> str:
    qid = spool.new_qid()
    envelope = Envelope(qid=qid, arrival=1795330516.5, sender="bob@example.org",
                        recipients=recipients or ["alice@example.test"],
                        client="localhost[127.0.0.1]", helo="client.example", proto="ESMTP")
    writer = spool.writer(envelope)
    await writer.write(content)
    await writer.commit()
    return qid


async def test_commit_then_read_back(spool: Spool) -> None:
    content = b"Subject: x\r\n\r\n" + b"y" * 300_000 + b"\r\n"  # crosses the buffer limit
    qid = await commit(spool, content, ["alice@example.test", "bob@example.test"])
    assert [e.qid for e in spool.scan("incoming")] == [qid]
    assert not [n for n in os.listdir(spool.root / "incoming") if n.startswith(".")]
    queue_file = spool.read("incoming", qid)
    assert queue_file.envelope.size == len(content)
    assert queue_file.envelope.recipients == ["alice@example.test", "bob@example.test"]
    assert queue_file.envelope.helo == "client.example"
    assert spool.read_content("incoming", qid, queue_file) == content
    assert b"".join(spool.open_content("incoming", qid, queue_file)) == content
    assert queue_file.pending() == [0, 1]


@pytest.mark.parametrize("slack", [-1, 0, 1])
async def test_files_around_the_whole_read_limit_read_back(spool: Spool, slack: int) -> None:
    """Small files are read whole, larger ones streamed: the same result either
    side of the limit, status records after the END record included."""
    qid = spool.new_qid()
    envelope = Envelope(qid=qid, arrival=1.0, sender="", recipients=["a@b.test"])
    writer = spool.writer(envelope)
    header = len(queuefile.encode_header(envelope))
    record = queuefile.status_record({"r": 0, "s": "deferred", "dsn": "4.4.1", "t": 1.0,
                                      "text": "down", "next": 5.0})
    end = len(queuefile.end_record(0))
    content = b"x" * (spool_module._READ_WHOLE + slack - header - end - len(record))
    await writer.write(content)
    await writer.commit()
    spool.append("incoming", qid, [{"r": 0, "s": "deferred", "dsn": "4.4.1", "t": 1.0,
                                    "text": "down", "next": 5.0}])
    assert os.path.getsize(spool.path("incoming", qid)) == spool_module._READ_WHOLE + slack
    queue_file = spool.read("incoming", qid, keep=1 << 20)
    assert queue_file.content == content
    assert queue_file.statuses[0].text == "down"


async def test_the_envelope_is_readable_text(spool: Spool) -> None:
    qid = await commit(spool, b"Subject: x\r\n\r\nhello\r\n")
    head = (spool.root / "incoming" / qid).read_bytes().split(b"\n\n")[0].decode()
    assert head.splitlines() == [
        "POSTERN 1", f"id: {qid}", "arrival: 1795330516.500000",
        "size: 0000000000000021", "sender: bob@example.org", "client: localhost[127.0.0.1]",
        "helo: client.example", "proto: ESMTP", "rcpt: alice@example.test"]


async def test_status_records_append_and_the_latest_wins(spool: Spool) -> None:
    qid = await commit(spool, b"x\r\n", ["a@example.test", "b@example.test"])
    spool.append("incoming", qid, [
        {"r": 0, "s": "deferred", "dsn": "4.4.1", "t": 1.0, "text": "down", "next": 5.0},
        {"r": 1, "s": "sent", "dsn": "2.0.0", "t": 1.0, "text": "ok"}])
    spool.append("incoming", qid, [{"r": 0, "s": "sent", "dsn": "2.0.0", "t": 2.0,
                                    "text": "ok"}])
    queue_file = spool.read("incoming", qid)
    assert queue_file.pending() == []
    assert queue_file.statuses[0].text == "ok"


async def test_a_torn_status_record_is_ignored(spool: Spool) -> None:
    qid = await commit(spool, b"x\r\n", ["a@example.test"])
    with open(spool.path("incoming", qid), "ab") as stream:
        stream.write(b'R {"r":0,"s":"se')  # the crash came in the middle of an append
    assert spool.read("incoming", qid).pending() == [0]


@pytest.mark.parametrize("damage", ["truncate_content", "truncate_end", "flip_byte",
                                    "no_magic", "half_envelope"])
async def test_torn_or_damaged_files_are_corrupt(spool: Spool, damage: str) -> None:
    qid = await commit(spool, b"Subject: x\r\n\r\n" + b"z" * 1000 + b"\r\n")
    path = spool.path("incoming", qid)
    data = path.read_bytes()
    body_start = data.index(b"\n\n") + 2
    damaged = {
        "truncate_content": data[:body_start + 500],
        "truncate_end": data[:-5],
        "flip_byte": data[:body_start + 10] + b"Q" + data[body_start + 11:],
        "no_magic": b"XXXXXXX 1\n" + data[10:],
        "half_envelope": data[:40],
    }[damage]
    path.write_bytes(damaged)
    with pytest.raises(CorruptQueueFile):
        spool.read("incoming", qid)
    spool.save_corrupt("incoming", qid)
    assert spool.scan("corrupt")[0].qid == qid


async def test_aborted_writes_leave_nothing(spool: Spool) -> None:
    envelope = Envelope(qid=spool.new_qid(), arrival=1.0, sender="", recipients=["a@b.test"])
    writer = spool.writer(envelope)
    await writer.write(b"x" * 600_000)  # flushed to a temporary file
    assert any(n.startswith(".") for n in os.listdir(spool.root / "incoming"))
    await writer.abort()
    assert os.listdir(spool.root / "incoming") == []


async def test_stale_temporaries_are_removed_at_start(spool: Spool) -> None:
    (spool.root / "incoming" / ".2K04EZMPDJ00").write_bytes(b"POSTERN 1\nid: half")
    assert spool.remove_stale_temporaries() == ["incoming/.2K04EZMPDJ00"]
    assert os.listdir(spool.root / "incoming") == []


async def test_moves_set_the_next_attempt_time(spool: Spool) -> None:
    qid = await commit(spool, b"x\r\n")
    spool.move(qid, "incoming", "deferred", mtime=2_000_000_000.0)
    entry = spool.scan("deferred")[0]
    assert (entry.qid, entry.mtime) == (qid, 2_000_000_000.0)
    assert spool.find(qid) == "deferred"


def test_queue_ids_are_unique_sorted_and_readable() -> None:
    generator = queueid.QueueIdGenerator(lane=7)
    ids = [generator.next() for _ in range(10_000)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(queueid.is_valid(q) and len(q) == 12 for q in ids)
    assert not set("ILOU") & set("".join(ids))
    other = queueid.QueueIdGenerator(lane=8).next()
    assert other[-2:] != ids[0][-2:]
    assert abs(queueid.arrival_of(ids[-1]) - __import__("time").time()) < 5
