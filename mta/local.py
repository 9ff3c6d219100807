"""local: delivery into Maildirs, one per recipient.

Maildir delivery is crash-safe by construction (maildir(5)): write a unique
file in tmp/, fsync it, rename it into new/, fsync new/. Only then is the
recipient "sent". Like Postfix's local(8) we prepend Return-Path and
Delivered-To, and we store LF line endings, as mail readers expect.
"""

from __future__ import annotations

import errno
import itertools
import os
import socket
import time
from pathlib import Path

from mta.delivery import DeliveryRequest, DeliveryResult
from mta.mailboxes import Mailboxes
from mta.spool import Spool, fsync_directory

_counter = itertools.count(1)
_HOST = socket.gethostname().replace("/", "\\057").replace(":", "\\072")


def unique_name() -> str:
    """A Maildir file name: time, microseconds, pid, a counter, the host."""
    now = time.time()
    return f"{int(now)}.M{int(now % 1 * 1e6)}P{os.getpid()}Q{next(_counter)}.{_HOST}"


def ensure_maildir(path: Path) -> None:
    for sub in ("tmp", "new", "cur"):
        (path / sub).mkdir(parents=True, exist_ok=True, mode=0o700)


def deliver_to_maildir(maildir: Path, data: bytes, *, fsync: bool = True) -> Path:
    """Store one message in a Maildir; returns its path in new/."""
    ensure_maildir(maildir)
    name = unique_name()
    temp = maildir / "tmp" / name
    final = maildir / "new" / name
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if fsync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(temp)
        raise
    os.close(fd)
    os.rename(temp, final)
    if fsync:
        fsync_directory(maildir / "new")
    return final


class LocalDelivery:
    """The ``local`` transport."""

    name = "local"

    def __init__(self, mailboxes: Mailboxes, spool: Spool) -> None:
        self.mailboxes = mailboxes
        self.spool = spool

    async def deliver(self, request: DeliveryRequest) -> list[DeliveryResult]:
        started = time.monotonic()
        content = await request.content.read_all()
        # Maildir files use the local newline convention (maildir(5)).
        body = content.replace(b"\r\n", b"\n")
        results = []
        for recipient in request.recipients:
            maildir = self.mailboxes.maildir(recipient.address)
            if maildir is None:
                results.append(DeliveryResult(
                    recipient.index, "bounced", "5.1.1",
                    f"unknown user: \"{recipient.address.partition('@')[0].lower()}\"",
                    relay="local"))
                continue
            headers = (f"Return-Path: <{request.envelope.sender}>\n"
                       f"Delivered-To: {recipient.address}\n").encode("utf-8",
                                                                      "surrogateescape")
            try:
                await self.spool.run(deliver_to_maildir, maildir, headers + body,
                                     fsync=self.spool.fsync)
            except OSError as error:
                results.append(self._failure(recipient.index, maildir, error))
                continue
            results.append(DeliveryResult(recipient.index, "sent", "2.0.0",
                                          "delivered to maildir", relay="local"))
        elapsed = time.monotonic() - started
        for result in results:
            result.transfer_time = elapsed
        return results

    @staticmethod
    def _failure(index: int, maildir: Path, error: OSError) -> DeliveryResult:
        text = f"maildir delivery failed: create maildir file {maildir}/tmp: {error.strerror}"
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            return DeliveryResult(index, "deferred", "4.2.2", text, relay="local")
        return DeliveryResult(index, "deferred", "4.2.0", text, relay="local")
