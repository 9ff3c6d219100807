"""The Postfix fixture itself works: Postfix accepts and delivers on loopback."""

from __future__ import annotations

import smtplib

from tests.interop.postfix import PostfixFactory


def test_private_postfix_delivers_to_maildir(postfix_factory: PostfixFactory) -> None:
    postfix = postfix_factory().start()
    with smtplib.SMTP("127.0.0.1", postfix.port) as client:
        client.sendmail("a@example.org", ["alice@postfix.test"], b"Subject: x\r\n\r\nbody\r\n")
    files = postfix.wait_maildir("alice")
    assert b"body" in files[0].read_bytes()
    postfix.wait_log(r"postfix/virtual\[\d+\]: \w+: to=<alice@postfix.test>.*status=sent")
