"""pickup: local submission (``mta sendmail``) straight into the spool.

The message gets the same treatment as mail from smtpd: a Received header
(Postfix's local form), missing From, Date and Message-ID added, CRLF line
endings, a durable commit in incoming/, then a wake-up for the daemon.
"""

from __future__ import annotations

import re
import time
from email.utils import getaddresses, parseaddr

from mta import address as addr
from mta import log as maillog
from mta.cleanup import CleanupStream, local_received_header
from mta.config import Config
from mta.newlines import to_crlf
from mta.queuefile import Envelope
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


async def submit(config: Config, spool: Spool, *, sender: str, recipients: list[str],
                 data: bytes, uid: int, extract: bool = False,
                 full_name: str | None = None) -> str:
    """Queue a locally submitted message; returns its queue id."""
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
    writer = spool.writer(envelope)
    extra = []
    if not _FROM.search(header):
        # The null sender (-f '<>') has no address to show: Postfix's cleanup
        # writes MAILER-DAEMON instead, qualified like other local addresses.
        shown = sender or addr.qualify("MAILER-DAEMON", config.myorigin)
        who = f"{full_name} <{shown}>" if full_name else shown
        extra.append(f"From: {who}\r\n".encode("utf-8", "surrogateescape"))
    cleanup = CleanupStream(
        writer, received=local_received_header(config.myhostname, config.mail_name, uid, qid,
                                               recipients),
        add_missing=True, myhostname=config.myhostname,
        header_size_limit=config.header_size_limit, extra_headers=extra)
    try:
        await cleanup.feed(header + body if body else header)
        await cleanup.finish()
        await writer.commit()
    except BaseException:
        await writer.abort()
        raise
    maillog.pickup(qid, uid, sender)
    maillog.message_id(qid, cleanup.message_id or "<>")
    spool.wake(b"W")
    return qid
