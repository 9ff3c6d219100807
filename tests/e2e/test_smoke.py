"""The spine end to end: smtplib to the daemon, into alice's Maildir."""

from __future__ import annotations

import smtplib

from tests.helpers import Daemon


def test_message_reaches_maildir_with_received_header(daemon: Daemon) -> None:
    with smtplib.SMTP("127.0.0.1", daemon.smtp_port) as client:
        client.ehlo("client.example")
        refused = client.sendmail("bob@example.org", ["alice@example.test"],
                                  b"Subject: hi\r\n\r\nHello Alice\r\n")
    assert refused == {}
    files = daemon.wait_maildir("alice")
    text = files[0].read_text()
    assert "Received: from client.example (localhost [127.0.0.1])\n" \
           "\tby mx.example.test (Postern) with ESMTP id " in text
    assert "Hello Alice\n" in text
    daemon.wait_log(r"postern/qmgr\[\d+\]: [0-9A-Z]{12}: removed")
