"""Delivery status notifications (RFC 3464) in Postfix's layout, as bytes to queue.

A notification is ``multipart/report; report-type=delivery-status`` with
three parts (bounce_notify_util.c): a human-readable notice, the
``message/delivery-status`` report (per-message fields, then one block per
recipient), and the original message (``message/rfc822``) or only its
header (``text/rfc822-headers``) when it is larger than bounce_size_limit
or when the notice is only a delay warning.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime

from mta.cleanup import mail_date

NON_DELIVERY = "non-delivery"
DELAY = "delay"


@dataclass(frozen=True, slots=True)
class RecipientReport:
    """One recipient's block of the report (RFC 3464 §2.3)."""

    address: str
    action: str  # failed | delayed
    status: str  # the enhanced status code, e.g. 5.1.1
    text: str  # the maillog reason, for the human-readable part
    remote_mta: str | None = None
    diagnostic: str | None = None  # the remote reply, when there was one
    last_attempt: float | None = None
    will_retry_until: float | None = None


@dataclass(frozen=True, slots=True)
class Notice:
    kind: str  # NON_DELIVERY | DELAY
    qid: str  # the original message's queue id
    new_qid: str
    sender: str  # the original envelope sender
    to: str  # who gets the notice
    arrival: float
    reporting_mta: str  # myhostname
    recipients: tuple[RecipientReport, ...]
    postmaster_copy: bool = False
    delay_hours: float = 0.0
    lifetime_days: float = 0.0


def _rfc_date(when: float) -> str:
    return format_datetime(datetime.fromtimestamp(when).astimezone())


_FAILURE_TEXT = """\
This is the mail system at host {host}.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients. It's attached below.

For further assistance, please send mail to postmaster.

If you do so, please include this problem report. You can
delete your own text from the attached returned message.

                   The mail system
"""

_POSTMASTER_TEXT = """\
This is the mail system at host {host}.

Enclosed is the mail delivery report that you requested.

                   The mail system
"""

_DELAY_TEXT = """\
This is the mail system at host {host}.

####################################################################
# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #
####################################################################

Your message could not be delivered for more than {hours:g} hour(s).
It will be retried until it is {days:g} day(s) old.

For further assistance, please send mail to postmaster.

If you do so, please include this problem report. You can
delete your own text from the attached returned message.

                   The mail system
"""


def _diagnostic(report: RecipientReport) -> str:
    # RFC 3464 §2.3.6: diagnostic-type "smtp" for an SMTP reply; for our own
    # reasons a vendor type, as Postfix uses X-Postfix.
    if report.diagnostic:
        return f"smtp; {report.diagnostic}"
    return f"X-Postern; {report.text}"


def build(notice: Notice, original: bytes, *, size_limit: int) -> bytes:
    """The whole notice message with CRLF line endings, ready for the queue."""
    host = notice.reporting_mta
    boundary = f"{notice.qid}.{int(time.time())}/{host}"
    if notice.kind == DELAY:
        subject = "Delayed Mail (still being retried)"
        text = _DELAY_TEXT.format(host=host, hours=notice.delay_hours,
                                  days=notice.lifetime_days)
    elif notice.postmaster_copy:
        subject = "Postmaster Copy: Undelivered Mail"
        text = _POSTMASTER_TEXT.format(host=host)
    else:
        subject = "Undelivered Mail Returned to Sender"
        text = _FAILURE_TEXT.format(host=host)
    head = [
        f"Date: {mail_date()}",
        f"From: MAILER-DAEMON@{host} (Mail Delivery System)",
        f"Subject: {subject}",
        f"To: {notice.to}",
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        "Content-Type: multipart/report; report-type=delivery-status;",
        f'\tboundary="{boundary}"',
        "Content-Transfer-Encoding: 8bit",
        f"Message-Id: <{time.strftime('%Y%m%d%H%M%S', time.gmtime())}.{notice.new_qid}@{host}>",
        "",
        "This is a MIME-encapsulated message.",
        "",
        f"--{boundary}",
        "Content-Description: Notification",
        "Content-Type: text/plain; charset=utf-8",
        "",
        text,
    ]
    for report in notice.recipients:
        head.append(f"<{report.address}>: {report.text}")
        head.append("")
    head += [
        f"--{boundary}",
        "Content-Description: Delivery report",
        "Content-Type: message/delivery-status",
        "",
        f"Reporting-MTA: dns; {host}",
        f"X-Postern-Queue-ID: {notice.qid}",
        f"X-Postern-Sender: rfc822; {notice.sender}",
        f"Arrival-Date: {_rfc_date(notice.arrival)}",
    ]
    for report in notice.recipients:
        head += ["", f"Final-Recipient: rfc822; {report.address}",
                 f"Action: {report.action}", f"Status: {report.status}"]
        if report.remote_mta:
            head.append(f"Remote-MTA: dns; {report.remote_mta}")
        head.append(f"Diagnostic-Code: {_diagnostic(report)}")
        if report.last_attempt:
            head.append(f"Last-Attempt-Date: {_rfc_date(report.last_attempt)}")
        if report.will_retry_until:
            head.append(f"Will-Retry-Until: {_rfc_date(report.will_retry_until)}")
    head.append("")
    headers_only = notice.kind == DELAY or notice.postmaster_copy or len(original) > size_limit
    if headers_only:
        end = original.find(b"\r\n\r\n")
        body = original[:end + 2] if end != -1 else original
        head += [f"--{boundary}", "Content-Description: Undelivered Message Headers",
                 "Content-Type: text/rfc822-headers", "Content-Transfer-Encoding: 8bit", ""]
    else:
        body = original
        head += [f"--{boundary}", "Content-Description: Undelivered Message",
                 "Content-Type: message/rfc822", "Content-Transfer-Encoding: 8bit", ""]
    text_part = "\r\n".join(line.replace("\n", "\r\n") for line in head) + "\r\n"
    if body and not body.endswith(b"\r\n"):
        body += b"\r\n"
    tail = f"\r\n--{boundary}--\r\n".encode()
    return text_part.encode("utf-8", "surrogateescape") + body + tail
