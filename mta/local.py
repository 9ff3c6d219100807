"""local: delivery into Maildirs, one per recipient.

Maildir delivery is crash-safe by construction (maildir(5)): write a unique
file in tmp/, fsync it, link it into new/, fsync new/. Only then is the
recipient "sent". Like Postfix's local(8) we prepend Return-Path and
Delivered-To, and we store LF line endings, as mail readers expect.

Unlike Postfix, a crash between the link and the queue file's update does
not deliver the message twice. The name in new/ is the same at every
attempt for one recipient of one queued message (``copy_name``), and
link(2), unlike rename(2), refuses to replace an existing name: when the
link finds the name taken, the copy is already there, from an attempt that
did not live to record it (bench/crash.py: 290 duplicates in 20 kills
before, none after; docs/performance.md).
"""

from __future__ import annotations

import errno
import itertools
import os
import socket
import time
import zlib
from pathlib import Path

from mta import address as addr
from mta.delivery import DeliveryRequest, DeliveryResult
from mta.mailboxes import Mailboxes
from mta.spool import Spool, fsync_directory

_counter = itertools.count(1)
_HOST = socket.gethostname().replace("/", "\\057").replace(":", "\\072")


def unique_name() -> str:
    """A name no other file in tmp/ has: time, microseconds, pid, a counter,
    the host (maildir(5)); the copy's name in new/ is copy_name's."""
    now = time.time()
    return f"{int(now)}.M{int(now % 1 * 1e6)}P{os.getpid()}Q{next(_counter)}.{_HOST}"


def copy_name(qid: str, index: int, arrival: float, instance: str) -> str:
    """The name in new/ of recipient index's copy of queued message qid.

    maildir(5)'s ``time.unique.host``: the arrival time, then the queue id,
    the recipient's index and the instance (a hash of the queue directory,
    so that two instances sharing Maildirs never take each other's names);
    no part depends on the attempt.
    """
    return f"{int(arrival)}.Q{qid}R{index}I{instance}.{_HOST}"


def instance_tag(queue_directory: Path) -> str:
    return f"{zlib.crc32(str(queue_directory.resolve()).encode()):08x}"


def ensure_maildir(path: Path) -> None:
    for sub in ("tmp", "new", "cur"):
        (path / sub).mkdir(parents=True, exist_ok=True, mode=0o700)


_NO_HARD_LINKS = (errno.EPERM, errno.ENOTSUP, errno.EMLINK)


def _link_or_find(temp: Path, final: Path) -> tuple[Path, bool]:
    """Give temp the name final without ever replacing a file: False when
    final exists (an earlier attempt's copy, its data fsynced before its link)."""
    try:
        os.link(temp, final)
    except FileExistsError:
        os.unlink(temp)
        return final, False
    except OSError as error:
        if error.errno not in _NO_HARD_LINKS:
            os.unlink(temp)
            raise
        fallback = final.with_name(temp.name)  # a filesystem without hard links
        os.rename(temp, fallback)
        return fallback, True
    os.unlink(temp)
    return final, True


def deliver_to_maildir(maildir: Path, data: bytes, name: str, *,
                       fsync: bool = True) -> tuple[Path, bool]:
    """Store one message in a Maildir as new/name: its path, and False when
    a copy under that name was there already (nothing new was stored)."""
    ensure_maildir(maildir)
    temp = maildir / "tmp" / unique_name()
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
    final, created = _link_or_find(temp, maildir / "new" / name)
    if fsync:
        # Also when the copy was there already: the attempt that made it may
        # have died before this fsync, and the queue file goes away next.
        fsync_directory(maildir / "new")
    return final, created


class LocalDelivery:
    """The ``local`` transport."""

    name = "local"

    def __init__(self, mailboxes: Mailboxes, spool: Spool) -> None:
        self.mailboxes = mailboxes
        self.spool = spool
        self.instance = instance_tag(spool.root)

    async def deliver(self, request: DeliveryRequest) -> list[DeliveryResult]:
        started = time.monotonic()
        content = await request.content.read_all()
        # Maildir files use the local newline convention (maildir(5)).
        body = content.replace(b"\r\n", b"\n")
        results = []
        for recipient in request.recipients:
            maildir = self.mailboxes.maildir(recipient.address)
            if maildir is None and self._is_postmaster(recipient.address):
                # smtpd must accept the bare postmaster (RFC 5321 §4.5.1), and
                # mail to it is often a bounce, whose own bounce would be
                # discarded: without a mailbox (Postfix's aliases would send it
                # to root; Postern has no aliases) it waits in the queue, never
                # lost, until the operator lists postmaster.
                results.append(DeliveryResult(
                    recipient.index, "deferred", "4.3.0",
                    "no mailbox for postmaster: list postmaster in local_recipient_maps",
                    relay="local"))
                continue
            if maildir is None:
                results.append(DeliveryResult(
                    recipient.index, "bounced", "5.1.1",
                    f"unknown user: \"{recipient.address.partition('@')[0].lower()}\"",
                    relay="local"))
                continue
            headers = (f"Return-Path: <{request.envelope.sender}>\n"
                       f"Delivered-To: {recipient.address}\n").encode("utf-8",
                                                                      "surrogateescape")
            name = copy_name(request.qid, recipient.index, request.envelope.arrival,
                             self.instance)
            try:
                _, created = await self.spool.run(deliver_to_maildir, maildir, headers + body,
                                                  name, fsync=self.spool.fsync)
            except OSError as error:
                results.append(self._failure(recipient.index, maildir, error))
                continue
            text = "delivered to maildir" if created else \
                "delivered to maildir by an earlier attempt"
            results.append(DeliveryResult(recipient.index, "sent", "2.0.0", text,
                                          relay="local"))
        elapsed = time.monotonic() - started
        for result in results:
            result.transfer_time = elapsed
        return results

    def _is_postmaster(self, address: str) -> bool:
        local = addr.split(address)[0]
        return addr.strip_extension(local, self.mailboxes.delimiter).lower() == "postmaster"

    @staticmethod
    def _failure(index: int, maildir: Path, error: OSError) -> DeliveryResult:
        """Postfix's mbox_dsn(): a full file system is the system's trouble and
        passes (4.3.0, deferred); a full mailbox (over quota, file too large)
        is the recipient's and is returned to the sender (5.2.2, bounced), as
        retrying would only fill the queue until maximal_queue_lifetime."""
        text = f"maildir delivery failed: create maildir file {maildir}/tmp: {error.strerror}"
        if error.errno == errno.ENOSPC:
            return DeliveryResult(index, "deferred", "4.3.0", text, relay="local")
        if error.errno in (errno.EDQUOT, errno.EFBIG):
            return DeliveryResult(index, "bounced", "5.2.2", text, relay="local")
        return DeliveryResult(index, "deferred", "4.2.0", text, relay="local")
