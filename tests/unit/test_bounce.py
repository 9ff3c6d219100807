"""Bounces: an RFC 3464 report that Python's email package reads, queued in the spool."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator
from pathlib import Path

import pytest

from mta import dsn
from mta.bounce import SpoolBouncer
from mta.config import from_text
from mta.delivery import DeliveryResult, Recipient
from mta.queuefile import Envelope, QueueFile
from mta.spool import Spool
from tests.helpers import mime_parts

ORIGINAL = (b"From: bob@client.test\r\nTo: alice@far.test\r\nSubject: hello\r\n"
            b"Message-ID: <orig@client.test>\r\n\r\nBody line\r\n")
CF = "myhostname = mx.client.test\nmyorigin = client.test\nsmtp/inet = 127.0.0.1:0\n"


async def queue_original(spool: Spool, sender: str, recipients: list[str]) -> QueueFile:
    envelope = Envelope(qid=spool.new_qid(), arrival=1795330516.0, sender=sender,
                        recipients=recipients)
    writer = spool.writer(envelope)
    await writer.write(ORIGINAL)
    await writer.commit()
    await spool.run(spool.move, envelope.qid, "incoming", "active")
    return await spool.run(spool.read, "active", envelope.qid)


def failures() -> list[tuple[Recipient, DeliveryResult]]:
    return [
        (Recipient(0, "alice@far.test"), DeliveryResult(
            0, "bounced", "5.1.1",
            "host mx.far.test[192.0.2.1] said: 550 5.1.1 <alice@far.test>: unknown user "
            "(in reply to RCPT TO command)", relay="mx.far.test[192.0.2.1]:25",
            remote_mta="mx.far.test", diagnostic="550 5.1.1 <alice@far.test>: unknown user")),
        (Recipient(1, "carol@gone.test"), DeliveryResult(
            1, "bounced", "5.1.10", "Domain gone.test does not accept mail (nullMX)")),
    ]


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    spool = Spool(tmp_path / "queue", lane=0, fsync=False)
    spool.create()
    yield spool
    spool.close()


async def test_bounce_is_a_multipart_report_python_can_read(
        spool: Spool, caplog: pytest.LogCaptureFixture) -> None:
    queued: list[str] = []
    bouncer = SpoolBouncer(from_text(CF), spool, queued.append)
    original = await queue_original(spool, "bob@client.test", ["alice@far.test",
                                                               "carol@gone.test"])
    new_qid = await bouncer.bounce(original, failures())
    assert new_qid is not None and queued == [new_qid]
    notice = await spool.run(spool.read, "incoming", new_qid)
    assert notice.envelope.sender == ""  # RFC 5321 §4.5.5: bounces have a null sender
    assert notice.envelope.recipients == ["bob@client.test"]
    data = await spool.run(spool.read_content, "incoming", new_qid, notice)
    assert b"\n" not in data.replace(b"\r\n", b"")

    message = email.message_from_bytes(data, policy=email.policy.default)
    assert message.get_content_type() == "multipart/report"
    assert message.get_param("report-type") == "delivery-status"
    assert message["Auto-Submitted"] == "auto-replied"
    assert message["Subject"] == "Undelivered Mail Returned to Sender"
    text, report, returned = mime_parts(message)
    assert text.get_content_type() == "text/plain"
    assert "<alice@far.test>: host mx.far.test[192.0.2.1] said: 550 5.1.1" in text.get_content()
    assert report.get_content_type() == "message/delivery-status"
    per_message, first, second = mime_parts(report)
    assert per_message["Reporting-MTA"] == "dns; mx.client.test"
    assert per_message["X-Postern-Queue-ID"] == original.qid
    assert per_message["X-Postern-Sender"] == "rfc822; bob@client.test"
    assert first["Final-Recipient"] == "rfc822; alice@far.test"
    assert first["Action"] == "failed"
    assert first["Status"] == "5.1.1"
    assert first["Remote-MTA"] == "dns; mx.far.test"
    assert first["Diagnostic-Code"] == "smtp; 550 5.1.1 <alice@far.test>: unknown user"
    assert second["Final-Recipient"] == "rfc822; carol@gone.test"
    assert second["Status"] == "5.1.10"
    assert second["Diagnostic-Code"] == "X-Postern; Domain gone.test does not accept mail " \
                                        "(nullMX)"
    assert returned.get_content_type() == "message/rfc822"
    inner = mime_parts(returned)[0]
    assert inner["Message-ID"] == "<orig@client.test>"
    assert inner.get_content().rstrip("\r\n") == "Body line"


async def test_large_original_returns_headers_only(spool: Spool) -> None:
    bouncer = SpoolBouncer(from_text(CF + "bounce_size_limit = 10\n"), spool, lambda q: None)
    original = await queue_original(spool, "bob@client.test", ["alice@far.test"])
    new_qid = await bouncer.bounce(original, failures()[:1])
    assert new_qid
    notice = await spool.run(spool.read, "incoming", new_qid)
    data = await spool.run(spool.read_content, "incoming", new_qid, notice)
    message = email.message_from_bytes(data, policy=email.policy.default)
    returned = mime_parts(message)[2]
    assert returned.get_content_type() == "text/rfc822-headers"
    assert b"Body line" not in data


async def test_null_sender_is_never_bounced_to(spool: Spool) -> None:
    queued: list[str] = []
    bouncer = SpoolBouncer(from_text(CF), spool, queued.append)
    original = await queue_original(spool, "", ["alice@far.test"])
    assert await bouncer.bounce(original, failures()[:1]) is None
    assert queued == [] and spool.scan("incoming") == []


async def test_double_bounce_goes_to_postmaster_when_configured(spool: Spool) -> None:
    bouncer = SpoolBouncer(from_text(CF + "notify_classes = resource, software, 2bounce\n"),
                           spool, lambda q: None)
    original = await queue_original(spool, "", ["alice@far.test"])
    new_qid = await bouncer.bounce(original, failures()[:1])
    assert new_qid
    notice = await spool.run(spool.read, "incoming", new_qid)
    assert notice.envelope.recipients == ["postmaster@client.test"]
    assert notice.envelope.sender == "double-bounce@client.test"
    # ... and a failed postmaster notice is discarded, never bounced again.
    await spool.run(spool.move, new_qid, "incoming", "active")
    notice = await spool.run(spool.read, "active", new_qid)
    assert await bouncer.bounce(notice, failures()[:1]) is None


async def test_delay_warning(spool: Spool) -> None:
    bouncer = SpoolBouncer(from_text(CF + "delay_warning_time = 4h\n"), spool, lambda q: None)
    original = await queue_original(spool, "bob@client.test", ["alice@far.test"])
    delayed = [(Recipient(0, "alice@far.test"),
                DeliveryResult(0, "deferred", "4.4.1", "connect to mx.far.test[192.0.2.1]:25: "
                               "Connection refused"))]
    new_qid = await bouncer.delay_warning(original, delayed)
    assert new_qid
    notice = await spool.run(spool.read, "incoming", new_qid)
    data = await spool.run(spool.read_content, "incoming", new_qid, notice)
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert message["Subject"] == "Delayed Mail (still being retried)"
    assert "could not be delivered for more than 4 hour(s)" in mime_parts(message)[0] \
        .get_content()
    recipient = mime_parts(mime_parts(message)[1])[1]
    assert recipient["Action"] == "delayed"
    assert recipient["Status"] == "4.4.1"
    assert recipient["Will-Retry-Until"]


def test_dsn_layout_is_stable() -> None:
    notice = dsn.Notice(kind=dsn.NON_DELIVERY, qid="Q1", new_qid="Q2", sender="s@x.test",
                        to="s@x.test", arrival=0.0, reporting_mta="mx.test",
                        recipients=(dsn.RecipientReport("r@y.test", "failed", "5.0.0", "no"),))
    data = dsn.build(notice, b"Subject: a\r\n\r\nb\r\n", size_limit=50000)
    assert data.endswith(b"--\r\n")
    assert b"From: MAILER-DAEMON@mx.test (Mail Delivery System)\r\n" in data
