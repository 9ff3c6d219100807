"""Local delivery's status codes for storage errors, as Postfix's mbox_dsn()."""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path
from typing import Any

import pytest

from mta import local
from mta.config import from_text
from mta.delivery import DeliveryRequest, Recipient, Route
from mta.local import LocalDelivery
from mta.mailboxes import Mailboxes
from mta.queuefile import Envelope
from mta.spool import Spool


class _Content:
    size = 20

    async def read_all(self) -> bytes:
        return b"Subject: x\r\n\r\nbody\r\n"

    def chunks(self) -> Any:
        return iter((b"Subject: x\r\n\r\nbody\r\n",))


@pytest.mark.parametrize(("error", "status", "dsn"), [
    (errno.ENOSPC, "deferred", "4.3.0"),  # the file system is full: the system's trouble
    (errno.EDQUOT, "bounced", "5.2.2"),  # the mailbox is full: the recipient's
    (errno.EFBIG, "bounced", "5.2.2"),
])
async def test_storage_errors_get_postfix_s_status(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   error: int, status: str, dsn: str) -> None:
    config = from_text(f"""
myhostname = mx.test
mydestination = mx.test
mail_spool_directory = {tmp_path}/mail
local_recipient_maps = inline:{{ alice@mx.test=alice }}
""")
    spool = Spool(tmp_path / "queue", lane=0, fsync=False)
    spool.create()

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(error, os.strerror(error))

    monkeypatch.setattr(local, "deliver_to_maildir", full)
    envelope = Envelope(qid=spool.new_qid(), arrival=time.time(), sender="s@mx.test",
                        recipients=["alice@mx.test"])
    try:
        [result] = await LocalDelivery(Mailboxes.from_config(config), spool).deliver(
            DeliveryRequest(envelope.qid, envelope, [Recipient(0, "alice@mx.test")],
                            Route("local", "mx.test"), _Content()))
    finally:
        spool.close()
    assert (result.status, result.dsn) == (status, dsn)
    assert result.text == (f"maildir delivery failed: create maildir file "
                           f"{tmp_path}/mail/alice/tmp: {os.strerror(error)}")
