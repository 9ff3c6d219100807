"""Relay control and limits: each gets its reply, and the server stays healthy."""

from __future__ import annotations

import smtplib
import socket
import time

import pytest

from tests.helpers import Daemon, DaemonFactory, RawSmtp, run_mta, wait_for

LIMITS = """\
message_size_limit = 2000
smtpd_recipient_limit = 3
smtpd_client_connection_count_limit = 2
smtpd_client_event_limit_exceptions =
"""


@pytest.fixture
def limited(daemon_factory: DaemonFactory) -> Daemon:
    return daemon_factory(LIMITS).start()


def start_data(smtp: RawSmtp) -> None:
    """Greeting, EHLO, MAIL, RCPT and DATA: the session is ready for content."""
    smtp.reply()
    for command in ("EHLO client.example", "MAIL FROM:<bob@example.org>",
                    "RCPT TO:<alice@example.test>", "DATA"):
        assert smtp.command(command)[:1] in "23"


def still_works(daemon: Daemon) -> None:
    """A fresh session on the same server delivers."""
    with smtplib.SMTP("127.0.0.1", daemon.smtp_port) as client:
        assert client.sendmail("bob@example.org", ["alice@example.test"],
                               b"Subject: ok\r\n\r\nstill fine\r\n") == {}


def test_relay_denied_outside_mynetworks(daemon_factory: DaemonFactory) -> None:
    daemon = daemon_factory("mynetworks = 192.0.2.0/24\n").start()
    with RawSmtp(daemon.smtp_port) as smtp:
        smtp.reply()
        smtp.command("EHLO client.example")
        smtp.command("MAIL FROM:<bob@example.org>")
        assert smtp.command("RCPT TO:<x@remote.test>") == \
            "554 5.7.1 <x@remote.test>: Relay access denied"
        # Mail for our own domains is still taken from anyone.
        assert smtp.command("RCPT TO:<alice@example.test>") == "250 2.1.5 Ok"
    daemon.wait_log(r"NOQUEUE: reject: RCPT from localhost\[127\.0\.0\.1\]: 554 5\.7\.1 "
                    r"<x@remote\.test>: Relay access denied; from=<bob@example\.org> "
                    r"to=<x@remote\.test> proto=ESMTP helo=<client\.example>")


def test_relay_allowed_for_mynetworks_and_relay_domains(daemon_factory: DaemonFactory) -> None:
    daemon = daemon_factory("mynetworks = 192.0.2.0/24\nrelay_domains = partner.test\n").start()
    with RawSmtp(daemon.smtp_port) as smtp:
        smtp.reply()
        smtp.command("EHLO client.example")
        smtp.command("MAIL FROM:<bob@example.org>")
        assert smtp.command("RCPT TO:<x@partner.test>") == "250 2.1.5 Ok"
        assert smtp.command("RCPT TO:<x@sub.partner.test>") == "250 2.1.5 Ok"


def test_message_size_limit(limited: Daemon) -> None:
    with RawSmtp(limited.smtp_port) as smtp:
        smtp.reply()
        assert "250-SIZE 2000" in smtp.command("EHLO client.example")
        assert smtp.command("MAIL FROM:<bob@example.org> SIZE=5000") == \
            "552 5.3.4 Message size exceeds fixed limit"
        assert smtp.command("MAIL FROM:<bob@example.org> SIZE=100") == "250 2.1.0 Ok"
        smtp.command("RCPT TO:<alice@example.test>")
        assert smtp.command("DATA").startswith("354")
        smtp.send(b"Subject: big\r\n\r\n" + b"x" * 998 + b"\r\n" * 3)
        smtp.send(b"y" * 5000 + b"\r\n.\r\n")
        assert smtp.reply() == "552 5.3.4 Error: message file too big"
        # The session is in step and usable after the refusal.
        assert smtp.command("NOOP") == "250 2.0.0 Ok"
    assert not list((limited.queue / "incoming").iterdir())
    still_works(limited)


def test_recipient_limit(limited: Daemon) -> None:
    with RawSmtp(limited.smtp_port) as smtp:
        smtp.reply()
        smtp.command("EHLO client.example")
        smtp.command("MAIL FROM:<bob@example.org>")
        for user in ("alice", "bob", "postmaster"):
            assert smtp.command(f"RCPT TO:<{user}@example.test>") == "250 2.1.5 Ok"
        assert smtp.command("RCPT TO:<alice+4@example.test>") == \
            "452 4.5.3 Error: too many recipients"
        smtp.command("DATA")
        assert smtp.command("Subject: x\r\n\r\nx\r\n.").startswith("250 2.0.0 Ok: queued as")
    still_works(limited)


def test_too_many_connections_from_one_client(limited: Daemon) -> None:
    first, second = RawSmtp(limited.smtp_port), RawSmtp(limited.smtp_port)
    try:
        first.reply()
        second.reply()
        with RawSmtp(limited.smtp_port) as third:
            assert third.reply() == \
                "421 4.7.0 mx.example.test Error: too many connections from 127.0.0.1"
            assert wait_for(third.closed)
        limited.wait_log(r"warning: Connection concurrency limit exceeded: 3 from "
                         r"localhost\[127\.0\.0\.1\] for service smtp")
    finally:
        first.command("QUIT")
        second.close()
    limited.wait_log(r"disconnect from localhost\[127\.0\.0\.1\].*", count=3)
    still_works(limited)


def test_too_many_connections_to_one_listener(daemon_factory: DaemonFactory) -> None:
    """smtpd_client_connection_limit counts every client, exempt ones too (in
    one process; tests/e2e/test_workers.py has it across workers)."""
    daemon = daemon_factory("receiver_processes = 0\n"
                            "smtpd_client_connection_limit = 2\n").start()
    first, second = RawSmtp(daemon.smtp_port), RawSmtp(daemon.smtp_port)
    try:
        assert first.reply().startswith("220 ") and second.reply().startswith("220 ")
        with RawSmtp(daemon.smtp_port) as third:
            assert third.reply() == "421 4.7.0 mx.example.test Error: too many connections"
        daemon.wait_log(r"warning: Connection limit exceeded: 3 for service smtp")
    finally:
        first.close()
        second.close()
    daemon.wait_log(r"disconnect from", count=3)
    still_works(daemon)


def test_overlong_command_lines(limited: Daemon) -> None:
    with RawSmtp(limited.smtp_port) as smtp:
        smtp.reply()
        smtp.command("EHLO client.example")
        assert smtp.command("NOOP " + "x" * 5000) == "500 5.5.2 Error: command line too long"
        assert smtp.command("NOOP") == "250 2.0.0 Ok"
    still_works(limited)


def test_long_data_lines_are_kept(limited: Daemon) -> None:
    line = b"z" * 1500
    with RawSmtp(limited.smtp_port) as smtp:
        smtp.reply()
        smtp.command("EHLO client.example")
        smtp.command("MAIL FROM:<bob@example.org>")
        smtp.command("RCPT TO:<alice@example.test>")
        smtp.command("DATA")
        assert smtp.command("Subject: long\r\n\r\n" + line.decode() + "\r\n.").startswith("250")
    assert line in limited.wait_maildir("alice")[0].read_bytes()


def test_bare_lf_commands_are_normalised_and_noted(limited: Daemon) -> None:
    with RawSmtp(limited.smtp_port) as smtp:
        smtp.reply()
        smtp.send("EHLO client.example\n")
        assert smtp.reply().startswith("250-mx.example.test")
        smtp.send("NOOP\n")
        assert smtp.reply() == "250 2.0.0 Ok"
        smtp.send("NO\rOP\r\n")
        assert smtp.reply() == "500 5.5.2 Error: bad syntax"
        assert smtp.command("QUIT") == "221 2.0.0 Bye"
    limited.wait_log(r"disconnect from localhost\[127\.0\.0\.1\] ehlo=1 noop=1 quit=1 "
                     r"unknown=0/1 commands=3/4 notes=bare_lf")


def test_bare_lf_rejected_when_configured(daemon_factory: DaemonFactory) -> None:
    daemon = daemon_factory("smtpd_forbid_bare_newline = reject\n").start()
    with RawSmtp(daemon.smtp_port) as smtp:
        smtp.reply()
        smtp.send("EHLO client.example\n")
        assert smtp.reply() == "521 5.5.2 mx.example.test Error: bare <LF> received"
        assert wait_for(smtp.closed)
    still_works(daemon)


@pytest.mark.parametrize(("body", "what"), [
    ("Subject: t\r\n\r\nhello\nworld\r\n", "<LF>"),
    ("Subject: t\r\n\r\nhello\rworld\r\n", "<CR>"),
])
def test_bare_newline_in_data_rejected_when_configured(daemon_factory: DaemonFactory,
                                                       body: str, what: str) -> None:
    """reject covers message content as it covers commands: the message is
    not queued, the session ends, and the reject is logged like any other."""
    daemon = daemon_factory("smtpd_forbid_bare_newline = reject\n").start()
    with RawSmtp(daemon.smtp_port) as smtp:
        smtp.reply()
        smtp.command("EHLO client.example")
        smtp.command("MAIL FROM:<bob@example.org>")
        smtp.command("RCPT TO:<alice@example.test>")
        assert smtp.command("DATA").startswith("354")
        smtp.send(body + ".\r\n")
        assert smtp.reply() == f"521 5.5.2 mx.example.test Error: bare {what} received"
        assert wait_for(smtp.closed)
    daemon.wait_log(rf"reject: END-OF-MESSAGE from localhost\[127\.0\.0\.1\]: 521 5\.5\.2 "
                    rf"mx\.example\.test Error: bare {what} received; from=<bob@example\.org>")
    still_works(daemon)
    # Only still_works' message arrives; the rejected one left nothing behind.
    delivered = daemon.wait_maildir("alice")
    assert [path.read_bytes().count(b"still fine") for path in delivered] == [1]
    assert wait_for(lambda: not [f for q in ("incoming", "active", "deferred")
                                 for f in (daemon.root / "queue" / q).glob("*")
                                 if f.is_file()])


def test_refusals_by_limits_are_counted(daemon_factory: DaemonFactory) -> None:
    """mta_smtpd_rejects_total counts the limits' refusals too, not only the
    restrictions' (docs/metrics.md), with bounded labels."""
    daemon = daemon_factory("smtpd_recipient_limit = 1\n"
                            "smtpd_forbid_bare_newline = reject\n").start()
    with RawSmtp(daemon.smtp_port) as smtp:
        smtp.reply()
        smtp.command("EHLO client.example")
        smtp.command("MAIL FROM:<bob@example.org>")
        assert smtp.command("RCPT TO:<alice@example.test>").startswith("250")
        assert smtp.command("RCPT TO:<carol@example.test>") == \
            "452 4.5.3 Error: too many recipients"
        smtp.send("RSET\n")
        assert smtp.reply().startswith("521 5.5.2")
    with RawSmtp(daemon.smtp_port) as smtp:
        smtp.reply()
        smtp.send("\x00garbage\n")
        assert smtp.reply().startswith("521 5.5.2")
    expected = ('mta_smtpd_rejects_total{code="452",command="RCPT",listener="smtp"} 1.0',
                'mta_smtpd_rejects_total{code="521",command="RSET",listener="smtp"} 1.0',
                'mta_smtpd_rejects_total{code="521",command="UNKNOWN",listener="smtp"} 1.0')

    def metrics() -> str:
        text = daemon.metrics()
        return text if all(line in text for line in expected) else ""

    text = wait_for(metrics, message="the rejects counted")
    assert "garbage" not in text


def test_mail_refused_when_the_spool_lacks_queue_minfree(
        daemon_factory: DaemonFactory) -> None:
    """Postfix's queue_minfree, checked at MAIL against the spool's free
    space (measured off the event loop before the listener opens)."""
    daemon = daemon_factory(f"queue_minfree = {1 << 60}\n").start()
    with RawSmtp(daemon.smtp_port) as smtp:
        smtp.reply()
        smtp.command("EHLO client.example")
        assert smtp.command("MAIL FROM:<bob@example.org>") == \
            "452 4.3.1 Insufficient system storage"
    daemon.wait_log(r"warning: not enough free space in mail queue: \d+ bytes < "
                    rf"{1 << 60} bytes needed")


def test_too_many_hops_is_refused_and_the_session_goes_on(
        daemon_factory: DaemonFactory) -> None:
    """hopcount_limit (Postfix's cleanup): with ours, 5 Received headers
    reach the limit of 5; the message is not queued, and a loop ends there."""
    daemon = daemon_factory("hopcount_limit = 5\n").start()

    def send(hops: int) -> str:
        smtp.command("MAIL FROM:<bob@example.org>")
        smtp.command("RCPT TO:<alice@example.test>")
        smtp.command("DATA")
        received = "".join(f"Received: from hop{n}.example by x.example; "
                           "Thu, 1 Jan 2026 00:00:00 +0000\r\n" for n in range(hops))
        smtp.send(received + f"Subject: hops {hops}\r\n\r\nloop?\r\n.\r\n")
        return smtp.reply()

    with RawSmtp(daemon.smtp_port) as smtp:
        smtp.reply()
        smtp.command("EHLO client.example")
        assert send(4) == "554 5.4.0 Error: too many hops"
        assert smtp.command("NOOP") == "250 2.0.0 Ok"
        assert send(3).startswith("250 2.0.0 Ok: queued as ")
    daemon.wait_log(r"reject: END-OF-MESSAGE from localhost\[127\.0\.0\.1\]: "
                    r"554 5\.4\.0 Error: too many hops; from=<bob@example\.org>")
    delivered = daemon.wait_maildir("alice")
    assert [b"Subject: hops 3" in path.read_bytes() for path in delivered] == [True]


def test_too_many_hops_from_sendmail_is_bounced_to_the_sender(
        daemon_factory: DaemonFactory) -> None:
    """Local mail cannot be refused like an SMTP client: as Postfix's cleanup,
    pickup bounces it (5.4.0 too many hops), sendmail succeeds, and the
    notice reaches the sender; the original is never queued."""
    daemon = daemon_factory("hopcount_limit = 5\n").start()
    received = b"".join(b"Received: from hop%d.example by x.example; "
                        b"Thu, 1 Jan 2026 00:00:00 +0000\n" % n for n in range(4))
    result = run_mta("sendmail", "-f", "alice@example.test", "bob@example.test",
                     config=daemon.config, input=received + b"Subject: loop?\n\nbody\n")
    assert result.returncode == 0
    daemon.wait_log(r"cleanup\[\d+\]: \w+: to=<bob@example\.test>, relay=none, .*"
                    r"dsn=5\.4\.0, status=bounced \(too many hops\)")
    [notice] = daemon.wait_maildir("alice")
    assert b"Subject: Undelivered Mail Returned to Sender" in notice.read_bytes()
    assert daemon.maildir("bob") == []


def test_idle_timeout(daemon_factory: DaemonFactory) -> None:
    daemon = daemon_factory("smtpd_timeout = 1s\n").start()
    with RawSmtp(daemon.smtp_port) as smtp:
        smtp.reply()
        smtp.command("EHLO client.example")
        smtp.sock.settimeout(10)
        assert smtp.reply() == "421 4.4.2 mx.example.test Error: timeout exceeded"
        assert wait_for(smtp.closed)
    daemon.wait_log(r"timeout after EHLO from localhost\[127\.0\.0\.1\]")
    still_works(daemon)


def test_the_timeout_limits_each_read_of_data_not_the_whole_transfer(
        daemon_factory: DaemonFactory) -> None:
    """Postfix's smtpd_timeout is per read: a message that takes longer than
    the timeout to arrive, but never pauses that long, is accepted; the idle
    timer still fires once the client stops."""
    daemon = daemon_factory("smtpd_timeout = 1s\n").start()
    with RawSmtp(daemon.smtp_port) as smtp:
        start_data(smtp)
        smtp.send("Subject: slow\r\n\r\n")
        for n in range(8):  # 2.4 s in all, 0.3 s between reads
            time.sleep(0.3)  # the slow client is the point of the test
            smtp.send(f"line {n}\r\n")
        assert smtp.command(".").startswith("250 2.0.0 Ok: queued as ")
        smtp.sock.settimeout(10)
        assert smtp.reply() == "421 4.4.2 mx.example.test Error: timeout exceeded"
    daemon.wait_maildir("alice")
    # Postfix's stage from the final dot until the next command.
    daemon.wait_log(r"timeout after END-OF-MESSAGE from localhost\[127\.0\.0\.1\]$")


def test_timeout_mid_data_logs_the_bytes_received(daemon_factory: DaemonFactory) -> None:
    daemon = daemon_factory("smtpd_timeout = 1s\n").start()
    with RawSmtp(daemon.smtp_port) as smtp:
        start_data(smtp)
        smtp.send(b"Subject: cut\r\n\r\npartial")  # 23 bytes, then silence
        smtp.sock.settimeout(10)
        assert smtp.reply() == "421 4.4.2 mx.example.test Error: timeout exceeded"
    daemon.wait_log(r"timeout after DATA \(23 bytes\) from localhost\[127\.0\.0\.1\]$")


def test_client_vanishing_mid_data_leaves_no_file(limited: Daemon) -> None:
    smtp = RawSmtp(limited.smtp_port)
    smtp.reply()
    smtp.command("EHLO client.example")
    smtp.command("MAIL FROM:<bob@example.org>")
    smtp.command("RCPT TO:<alice@example.test>")
    smtp.command("DATA")
    smtp.send(b"Subject: cut\r\n\r\npartial")
    smtp.sock.shutdown(socket.SHUT_RDWR)
    smtp.close()
    # Postfix's line while it reads the content: the bytes received so far.
    limited.wait_log(r"lost connection after DATA \(23 bytes\) from localhost\[127\.0\.0\.1\]$")
    assert wait_for(lambda: not list((limited.queue / "incoming").iterdir()))
    still_works(limited)


def test_hanging_up_after_the_queued_reply_is_not_a_lost_connection(
        daemon: Daemon) -> None:
    """Postfix's END-OF-MESSAGE stage: a client that drops the connection once
    its message is queued, without QUIT, lost nothing, and smtpd logs no
    "lost connection" line (smtpd.c), only the disconnect line."""
    with RawSmtp(daemon.smtp_port) as smtp:
        start_data(smtp)
        assert smtp.command("Subject: bye\r\n\r\nbody\r\n.").startswith("250 2.0.0 Ok")
    daemon.wait_log(r"disconnect from localhost\[127\.0\.0\.1\] ehlo=1 mail=1 rcpt=1 "
                    r"data=1 commands=4$")
    assert "lost connection" not in daemon.log_text()


def test_a_queued_message_forgives_earlier_errors(daemon_factory: DaemonFactory) -> None:
    """Postfix's data_cmd resets the error count when it queues a message, so
    a client whose every message has one unknown recipient is not cut off by
    smtpd_hard_error_limit."""
    daemon = daemon_factory("smtpd_hard_error_limit = 2\n").start()
    with RawSmtp(daemon.smtp_port) as smtp:
        smtp.reply()
        smtp.command("EHLO client.example")
        for n in range(3):
            assert smtp.command("MAIL FROM:<bob@example.org>") == "250 2.1.0 Ok"
            assert smtp.command("RCPT TO:<nobody@example.test>").startswith("550 5.1.1")
            assert smtp.command("RCPT TO:<alice@example.test>") == "250 2.1.5 Ok"
            assert smtp.command("DATA").startswith("354")
            assert smtp.command(f"Subject: {n}\r\n\r\nbody\r\n.").startswith(
                "250 2.0.0 Ok: queued as ")
        assert smtp.command("QUIT") == "221 2.0.0 Bye"
    daemon.wait_maildir("alice", 3)


def test_hard_error_limit(daemon_factory: DaemonFactory) -> None:
    daemon = daemon_factory("smtpd_hard_error_limit = 3\n").start()
    with RawSmtp(daemon.smtp_port) as smtp:
        smtp.reply()
        assert smtp.command("BOGUS1").startswith("500")
        assert smtp.command("BOGUS2").startswith("500")
        assert smtp.command("BOGUS3") == "500 5.5.2 Error: command not recognized"
        assert smtp.reply() == "421 4.7.0 mx.example.test Error: too many errors"
        assert wait_for(smtp.closed)
    daemon.wait_log(r"too many errors after UNKNOWN from localhost\[127\.0\.0\.1\]")
    still_works(daemon)


JUNK = "smtpd_junk_command_limit = 3\nsmtpd_hard_error_limit = 2\n"


def test_junk_commands_past_the_limit_count_as_errors(daemon_factory: DaemonFactory) -> None:
    """Postfix's smtpd_junk_command_limit: a client that only repeats HELO,
    EHLO, NOOP, RSET or VRFY is cut off by smtpd_hard_error_limit instead of
    holding its session for ever. As in smtpd.c, a junk command counts once
    more than the limit came before it: with 3, the 5th and 6th are the two
    errors, each still answered, then 421."""
    daemon = daemon_factory(JUNK).start()
    with RawSmtp(daemon.smtp_port) as smtp:
        smtp.reply()
        assert smtp.command("EHLO client.example").startswith("250-")
        assert smtp.command("NOOP") == "250 2.0.0 Ok"
        assert smtp.command("VRFY alice@example.test") == "252 2.0.0 alice@example.test"
        assert smtp.command("HELO client.example") == "250 mx.example.test"
        assert smtp.command("RSET") == "250 2.0.0 Ok"  # the 5th: an error, answered
        assert smtp.command("NOOP") == "250 2.0.0 Ok"  # the 6th: the second error
        assert smtp.reply() == "421 4.7.0 mx.example.test Error: too many errors"
        assert wait_for(smtp.closed)
    daemon.wait_log(r"too many errors after NOOP from localhost\[127\.0\.0\.1\]$")
    daemon.wait_log(r"disconnect from localhost\[127\.0\.0\.1\] helo=1 ehlo=1 rset=1 noop=2 "
                    r"vrfy=1 commands=6$")


def test_a_queued_message_resets_the_junk_command_count(daemon_factory: DaemonFactory) -> None:
    """Postfix's data_cmd resets the junk count with the error count: a client
    that delivers mail may NOOP between its messages."""
    daemon = daemon_factory(JUNK).start()
    with RawSmtp(daemon.smtp_port) as smtp:
        smtp.reply()
        smtp.command("EHLO client.example")
        for n in range(3):
            for _ in range(3):
                assert smtp.command("NOOP") == "250 2.0.0 Ok"
            assert smtp.command("MAIL FROM:<bob@example.org>") == "250 2.1.0 Ok"
            assert smtp.command("RCPT TO:<alice@example.test>") == "250 2.1.5 Ok"
            assert smtp.command("DATA").startswith("354")
            assert smtp.command(f"Subject: {n}\r\n\r\nbody\r\n.").startswith(
                "250 2.0.0 Ok: queued as ")
        assert smtp.command("QUIT") == "221 2.0.0 Bye"
    daemon.wait_maildir("alice", 3)
