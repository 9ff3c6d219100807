"""mta stop with sessions open: a session waiting for a command gets a 421 at
once; one in the middle of a message finishes it (its 250 is on disk) and then
gets the 421. The daemon does not wait smtpd_timeout for idle clients."""

from __future__ import annotations

import signal
import time

import pytest

from tests.helpers import DaemonFactory, RawSmtp, wait_for

SHUTTING_DOWN = "421 4.3.2 mx.example.test Service shutting down, closing transmission channel"


@pytest.mark.parametrize("workers", [0, 2])
def test_stop_ends_idle_sessions_and_lets_a_message_finish(daemon_factory: DaemonFactory,
                                                          workers: int) -> None:
    daemon = daemon_factory(f"receiver_processes = {workers}\n").start()
    idle = RawSmtp(daemon.smtp_port)
    assert idle.reply().startswith("220 ")
    assert idle.command("EHLO client.example").startswith("250")
    sending = RawSmtp(daemon.smtp_port)
    assert sending.reply().startswith("220 ")
    for line in ("EHLO client.example", "MAIL FROM:<bob@example.org>",
                 "RCPT TO:<alice@example.test>", "DATA"):
        assert sending.command(line)[:1] in "23"
    sending.send("Subject: in flight\r\n\r\nhalf of it")
    assert daemon.process is not None
    started = time.monotonic()
    daemon.process.send_signal(signal.SIGTERM)
    try:
        assert idle.reply() == SHUTTING_DOWN
        wait_for(idle.closed, message="the idle session to be closed")
        sending.send(" and the rest\r\n.\r\n")
        assert sending.reply().startswith("250 2.0.0 Ok: queued as ")
        assert sending.reply() == SHUTTING_DOWN
        wait_for(sending.closed, message="the sending session to be closed")
        assert daemon.process.wait(timeout=30) == 0
    finally:
        idle.close()
        sending.close()
    assert time.monotonic() - started < 20  # not smtpd_timeout (300s)
    assert "lost connection" not in daemon.log_text()
    # The message is safe: delivered before the stop, or in the queue for the next start.
    daemon.start()
    daemon.wait_maildir("alice", 1)
