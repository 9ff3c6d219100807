"""mta sendmail's -f and recipient arguments are parsed as addresses, as
Postfix's sendmail parses them (RFC 822), then qualified with $myorigin; a
message with too many hops is bounced to its sender, as Postfix's cleanup
bounces local mail."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from mta.config import from_text
from mta.pickup import submit
from mta.queuefile import Envelope, QueueFile
from mta.spool import QueueFileWriter, Spool

CONFIG = "myhostname = mx.test\nmydomain = mx.test\nmydestination = mx.test\n"


async def _submit(tmp_path: Path, sender: str, recipients: list[str],
                  data: bytes = b"Subject: x\n\nbody\n") -> QueueFile:
    spool = Spool(tmp_path / "queue", lane=0, fsync=False)
    spool.create()
    try:
        qid = await submit(from_text(CONFIG), spool, sender=sender, recipients=recipients,
                           data=data, uid=1000)
        return spool.read("incoming", qid)
    finally:
        spool.close()


@pytest.mark.parametrize(("argument", "sender"), [
    ("<>", ""),
    ("<bob@example.org>", "bob@example.org"),
    ("Bob Smith <bob@example.org>", "bob@example.org"),
    ("<bob>", "bob@mx.test"),
])
async def test_the_sender_is_parsed_as_an_address(tmp_path: Path, argument: str,
                                                  sender: str) -> None:
    queue_file = await _submit(tmp_path, argument, ["a@remote.test"])
    assert queue_file.envelope.sender == sender


async def test_a_null_sender_without_a_from_header_shows_mailer_daemon(tmp_path: Path) -> None:
    queue_file = await _submit(tmp_path, "<>", ["a@remote.test"])
    spool = Spool(tmp_path / "queue", lane=0, fsync=False)
    content = spool.read_content("incoming", queue_file.qid, queue_file)
    assert b"\r\nFrom: MAILER-DAEMON@mx.test\r\n" in content


async def test_a_malformed_sender_is_refused_not_made_null(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="malformed sender address"):
        await _submit(tmp_path, "<<@>>", ["a@remote.test"])


async def test_each_recipient_argument_is_an_address_list(tmp_path: Path) -> None:
    queue_file = await _submit(tmp_path, "bob", ["a@remote.test, b@remote.test",
                                                 "Carol <c@remote.test>", "<d@remote.test>",
                                                 "erin"])
    assert queue_file.envelope.recipients == ["a@remote.test", "b@remote.test",
                                              "c@remote.test", "d@remote.test",
                                              "erin@mx.test"]


def _hops(count: int) -> bytes:
    return b"".join(b"Received: from hop%d.example by x.example; "
                    b"Thu, 1 Jan 2026 00:00:00 +0000\n" % n for n in range(count))


async def _submit_hops(tmp_path: Path, sender: str, hops: int) -> tuple[Spool, str]:
    spool = Spool(tmp_path / "queue", lane=0, fsync=False)
    spool.create()
    config = from_text(CONFIG + "hopcount_limit = 5\n")
    try:
        qid = await submit(config, spool, sender=sender,
                           recipients=["a@remote.test", "b@remote.test"],
                           data=_hops(hops) + b"Subject: loop?\n\nbody\n", uid=1000)
    finally:
        spool.close()
    return spool, qid


async def test_too_many_hops_bounces_to_the_sender_without_queueing(
        tmp_path: Path, maillog_lines: list[str]) -> None:
    """Postfix's cleanup for local mail: with ours, 5 Received headers reach
    hopcount_limit = 5; every recipient is bounced with 5.4.0 "too many
    hops", the notice is queued, the original is not."""
    spool, qid = await _submit_hops(tmp_path, "bob", 4)
    [notice] = spool.scan("incoming")
    assert notice.qid != qid and spool.find(qid) is None
    queue_file = spool.read("incoming", notice.qid)
    assert (queue_file.envelope.sender, queue_file.envelope.recipients) == ("", ["bob@mx.test"])
    text = spool.read_content("incoming", notice.qid, queue_file).decode()
    assert "Subject: Undelivered Mail Returned to Sender" in text
    assert "Status: 5.4.0" in text and "too many hops" in text
    assert "Subject: loop?" in text  # the original is returned
    bounced = [line for line in maillog_lines if "status=bounced" in line]
    assert [line.split(", relay=")[0] for line in bounced] == [
        f"cleanup: {qid}: to=<a@remote.test>", f"cleanup: {qid}: to=<b@remote.test>"]
    assert all(line.endswith("dsn=5.4.0, status=bounced (too many hops)") for line in bounced)
    assert f"bounce: {qid}: sender non-delivery notification: {notice.qid}" in maillog_lines
    assert maillog_lines[0] == f"pickup: {qid}: uid=1000 from=<bob@mx.test>"


async def test_one_hop_fewer_is_queued(tmp_path: Path, maillog_lines: list[str]) -> None:
    spool, qid = await _submit_hops(tmp_path, "bob", 3)
    assert [entry.qid for entry in spool.scan("incoming")] == [qid]
    assert not any("status=bounced" in line for line in maillog_lines)


async def test_too_many_hops_from_the_null_sender_is_not_bounced(
        tmp_path: Path, maillog_lines: list[str]) -> None:
    """A bounce is never bounced (RFC 5321 §4.5.5): the notice is discarded,
    as for any undeliverable mail from <>."""
    spool, qid = await _submit_hops(tmp_path, "<>", 4)
    assert spool.scan("incoming") == []
    assert any(f"{qid}: undeliverable bounce discarded" in line for line in maillog_lines)


async def test_a_bounce_that_cannot_be_queued_fails_the_submission(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, maillog_lines: list[str]) -> None:
    """sendmail then exits 75 and the user still has the message: nothing
    was queued, neither the original nor the notice."""
    def full(self: Spool, envelope: Envelope) -> QueueFileWriter:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Spool, "writer", full)
    with pytest.raises(OSError, match="No space left"):
        await _submit_hops(tmp_path, "bob", 4)
    assert Spool(tmp_path / "queue").scan("incoming") == []
    assert maillog_lines[-1].endswith(": bounce message failure")
