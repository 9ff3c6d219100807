"""pickup: local submission (``mta sendmail``) straight into the spool.

The message gets the same treatment as mail from smtpd: a Received header
(Postfix's local form), missing From, Date and Message-ID added, CRLF line
endings, a durable commit in incoming/, then a wake-up for the daemon. A
message with hopcount_limit Received headers (ours included) is bounced to
its sender instead, as Postfix's cleanup does with local mail.
"""

from __future__ import annotations

import re
import time
from email.utils import getaddresses, parseaddr

from mta import address as addr
from mta import log as maillog
from mta.bounce import SpoolBouncer
from mta.cleanup import CleanupStream, local_received_header
from mta.config import Config
from mta.delivery import DeliveryResult, Recipient
from mta.newlines import to_crlf
from mta.queuefile import Envelope, QueueFile
from mta.spool import Spool

_RECIPIENT_HEADERS = re.compile(rb"(?im)^(to|cc|bcc):[ \t]*([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)")
_BCC = re.compile(rb"(?im)^bcc:[^\r\n]*(?:\r\n[ \t][^\r\n]*)*\r\n")
_FROM = re.compile(rb"(?im)^from:")


def normalise(raw: bytes) -> bytes:
    """Local input may use any newline; the queue holds CRLF only."""
    data = to_crlf(raw)
    if data and not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data


def split_header(data: bytes) -> tuple[bytes, bytes]:
    end = data.find(b"\r\n\r\n")
    if end == -1:
        return data, b""
    return data[:end + 2], data[end + 2:]


def recipients_from_headers(header: bytes) -> list[str]:
    """sendmail -t: addresses in To, Cc and Bcc."""
    values = [re.sub(rb"\r\n[ \t]", b" ", m.group(2)).decode("utf-8", "replace")
              for m in _RECIPIENT_HEADERS.finditer(header)]
    return [address for _, address in getaddresses(values) if address]


def parse_sender(text: str) -> str:
    """The -f argument as an RFC 822 address, as Postfix's sendmail parses it:
    ``<>`` (or nothing) is the null sender, ``Name <a@b>`` and ``<a@b>`` are
    a@b. Taken verbatim, '<>' became '<>@$myorigin' and '<a@b>' a MAIL FROM
    with two pairs of brackets."""
    if text.strip() in ("", "<>"):
        return ""
    address = parseaddr(text)[1]
    if not address:
        # Not the null sender by accident: bounces for it would be discarded.
        raise ValueError(f"malformed sender address: {text!r}")
    return address


def parse_recipients(arguments: list[str]) -> list[str]:
    """Each command-line recipient argument is an address list, as in Postfix's
    sendmail: "a@x, b@y" is two recipients and "Carol <c@x>" is c@x."""
    return [address for _, address in getaddresses(arguments) if address]


class _Collected:
    """The cleaned-up message in memory (local input is in memory already):
    cleanup counts the Received headers before pickup decides what to do."""

    def __init__(self, qid: str) -> None:
        self.qid = qid
        self.parts: list[bytes] = []
        self.size = 0

    async def write(self, data: bytes) -> None:
        self.parts.append(data)
        self.size += len(data)


async def submit(config: Config, spool: Spool, *, sender: str, recipients: list[str],
                 data: bytes, uid: int, extract: bool = False,
                 full_name: str | None = None) -> str:
    """Queue a locally submitted message (or bounce it: too many hops); returns
    its queue id."""
    data = normalise(data)
    header, body = split_header(data)
    recipients = parse_recipients(recipients)
    if extract:
        recipients = recipients + recipients_from_headers(header)
        header = _BCC.sub(b"", header)
    recipients = list(dict.fromkeys(addr.qualify(r, config.myorigin) for r in recipients))
    if not recipients:
        raise ValueError("no recipient addresses found")
    sender = addr.qualify(parse_sender(sender), config.myorigin)
    qid = spool.new_qid()
    envelope = Envelope(qid=qid, arrival=time.time(), sender=sender, recipients=recipients,
                        proto="sendmail", attrs={"uid": str(uid)})
    collected = _Collected(qid)
    cleanup = CleanupStream(
        collected, received=local_received_header(config.myhostname, config.mail_name, uid,
                                                  qid, recipients),
        add_missing=True, myhostname=config.myhostname,
        header_size_limit=config.header_size_limit,
        extra_headers=_missing_from(config, header, sender, full_name))
    await cleanup.feed(header + body if body else header)
    await cleanup.finish()
    if cleanup.hops >= config.hopcount_limit:
        maillog.pickup(qid, uid, sender)
        maillog.message_id(qid, cleanup.message_id or "<>")
        envelope.size = collected.size
        await bounce_too_many_hops(config, spool, envelope, b"".join(collected.parts))
    else:
        await _queue(spool, envelope, collected.parts)
        maillog.pickup(qid, uid, sender)
        maillog.message_id(qid, cleanup.message_id or "<>")
    spool.wake(b"W")
    return qid


def _missing_from(config: Config, header: bytes, sender: str,
                  full_name: str | None) -> list[bytes]:
    if _FROM.search(header):
        return []
    # The null sender (-f '<>') has no address to show: Postfix's cleanup
    # writes MAILER-DAEMON instead, qualified like other local addresses.
    shown = sender or addr.qualify("MAILER-DAEMON", config.myorigin)
    who = f"{full_name} <{shown}>" if full_name else shown
    return [f"From: {who}\r\n".encode("utf-8", "surrogateescape")]


async def _queue(spool: Spool, envelope: Envelope, parts: list[bytes]) -> None:
    writer = spool.writer(envelope)
    try:
        for part in parts:
            await writer.write(part)
        await writer.commit()
    except BaseException:
        await writer.abort()
        raise


async def bounce_too_many_hops(config: Config, spool: Spool, envelope: Envelope,
                               content: bytes) -> None:
    """Return a message with hopcount_limit or more Received headers to its
    sender, every recipient 5.4.0 "too many hops", without queueing it.

    Postfix's cleanup checks the hop count for every source; a local
    submission cannot be refused like an SMTP client, so cleanup bounces it
    at once (cleanup_bounce.c, the error text of cleanup_stat_detail) and the
    original is discarded, and sendmail succeeds. So here: the notice is
    queued (durably, before this returns) through the bounce machinery the
    queue manager uses; if that fails, OSError reaches sendmail, which
    exits 75 and the user still has the message.
    """
    now = time.time()
    failed = [(Recipient(index, address),
               DeliveryResult(index, "bounced", "5.4.0", "too many hops"))
              for index, address in enumerate(envelope.recipients)]
    delay = max(0.0, now - envelope.arrival)
    for recipient, result in failed:
        maillog.delivery("cleanup", envelope.qid, recipient.address, relay=result.relay,
                         delay=delay, delays=(delay, 0.0, 0.0, 0.0), dsn=result.dsn,
                         status=result.status, text=result.text)
    original = QueueFile(envelope, content_offset=0, content=content)
    try:
        await SpoolBouncer(config, spool, lambda _qid: None).bounce(original, failed)
    except OSError:
        maillog.warning("cleanup", f"{envelope.qid}: bounce message failure")  # Postfix's
        raise
