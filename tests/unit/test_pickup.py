"""mta sendmail's -f and recipient arguments are parsed as addresses, as
Postfix's sendmail parses them (RFC 822), then qualified with $myorigin."""

from __future__ import annotations

from pathlib import Path

import pytest

from mta.config import from_text
from mta.pickup import submit
from mta.queuefile import QueueFile
from mta.spool import Spool

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
