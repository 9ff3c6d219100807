"""Postern and Debian's Postfix relay to each other on loopback; bodies arrive byte-identical."""

from __future__ import annotations

import smtplib

import pytest

from tests.helpers import DaemonFactory, must_search
from tests.interop.postfix import PostfixFactory

pytestmark = pytest.mark.interop

# Lines that exercise dot-stuffing, long lines, 8-bit text and trailing blanks.
BODY = (b"First line\r\n"
        b".a line that starts with a dot\r\n"
        b"..two dots\r\n"
        b".\r\n"
        b" . not at the start\r\n"
        b"trailing blanks   \r\n"
        b"\r\n"
        + b"x" * 990 + b"\r\n"
        + "Grüße aus Köln\r\n".encode()
        + b"last line\r\n")


def message(to: str, subject: str) -> bytes:
    return (f"From: Bob <bob@example.org>\r\nTo: <{to}>\r\nSubject: {subject}\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: 8bit\r\n\r\n").encode() + BODY


def body_of(stored: bytes) -> bytes:
    """The body of a Maildir file (LF line endings, as both MTAs store)."""
    return stored.split(b"\n\n", 1)[1]


def test_postern_relays_to_postfix(daemon_factory: DaemonFactory,
                                   postfix_factory: PostfixFactory) -> None:
    postfix = postfix_factory().start()
    daemon = daemon_factory(f"""
default_transport = smtp
relayhost = [127.0.0.1]:{postfix.port}
smtp_host_lookup = native
""").start()
    with smtplib.SMTP("127.0.0.1", daemon.smtp_port) as client:
        client.ehlo("client.example")
        assert client.sendmail("bob@example.org", ["alice@postfix.test"],
                               message("alice@postfix.test", "to postfix")) == {}
    sent = daemon.wait_log(rf"postern/smtp\[\d+\]: ([0-9A-Z]{{12}}): to=<alice@postfix.test>, "
                           rf"relay=127\.0\.0\.1\[127\.0\.0\.1\]:{postfix.port}, .*dsn=2\.0\.0, "
                           r"status=sent \(250 2\.0\.0 Ok: queued as \w+\)")
    postfix_qid = must_search(r"queued as (\w+)\)", sent[0]).group(1)
    files = postfix.wait_maildir("alice")
    stored = files[0].read_bytes()
    assert body_of(stored) == BODY.replace(b"\r\n", b"\n")
    assert b"Subject: to postfix\n" in stored
    assert b"\tby mx.example.test (Postern) with ESMTP id " in stored  # our Received
    postfix.wait_log(rf"postfix/smtpd\[\d+\]: {postfix_qid}: client=localhost\[127\.0\.0\.1\]")
    postfix.wait_log(rf"{postfix_qid}: to=<alice@postfix.test>, relay=virtual, .*status=sent")


def test_postfix_relays_to_postern(daemon_factory: DaemonFactory,
                                   postfix_factory: PostfixFactory) -> None:
    daemon = daemon_factory().start()
    postfix = postfix_factory(main_cf=f"relayhost = [127.0.0.1]:{daemon.smtp_port}\n").start()
    with smtplib.SMTP("127.0.0.1", postfix.port) as client:
        client.ehlo("client.example")
        assert client.sendmail("bob@example.org", ["alice@example.test"],
                               message("alice@example.test", "to postern")) == {}
    postfix.wait_log(rf"postfix/smtp\[\d+\]: \w+: to=<alice@example.test>, "
                     rf"relay=127\.0\.0\.1\[127\.0\.0\.1\]:{daemon.smtp_port}, .*dsn=2\.0\.0, "
                     r"status=sent \(250 2\.0\.0 Ok: queued as [0-9A-Z]{12}\)")
    files = daemon.wait_maildir("alice")
    stored = files[0].read_bytes()
    assert body_of(stored) == BODY.replace(b"\r\n", b"\n")
    assert b"Subject: to postern\n" in stored
    assert b"by postfix.test (Postfix)" in stored  # Postfix's own Received came along
    daemon.wait_log(r"postern/local\[\d+\]: [0-9A-Z]{12}: to=<alice@example.test>, "
                    r"relay=local, .*status=sent \(delivered to maildir\)")
