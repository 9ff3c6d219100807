"""Postfix's client rate limits (smtpd_client_*_rate_limit, anvil_rate_time_unit)
through the daemon: with receiver workers the master counts each client's
events for all of them, so a limit is one limit for the whole listener.

The replies and warnings are Postfix 3.7's (tests/interop/test_postfix_rate_limits.py
compares them with a real Postfix)."""

from __future__ import annotations

import os
import re
import signal
import smtplib
import socket

import pytest

from tests.e2e.secure_env import SecureSite, SecureSiteFactory
from tests.e2e.test_workers import worker_pids
from tests.helpers import Daemon, DaemonFactory, must_search, wait_for

# 127.0.0.1 is in $mynetworks, which smtpd_client_event_limit_exceptions
# exempts by default: the tests limit it by emptying the exceptions.
NOT_EXEMPT = "smtpd_client_event_limit_exceptions =\n"
PEER = "localhost[127.0.0.1]"
PEER_RE = re.escape(PEER)
TOO_MANY_NEW_TLS = f"4.7.0 mx.example.test Error: too many new TLS sessions from {PEER}".encode()


def greeting(port: int) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        return sock.makefile("rb").readline().decode().rstrip()


def test_connection_rate_is_counted_over_all_workers(daemon_factory: DaemonFactory) -> None:
    """Half the connections to each worker (the other one stopped meanwhile,
    so only one can accept): the limit holds for the sum."""
    daemon = daemon_factory(NOT_EXEMPT + "receiver_processes = 2\n"
                            "smtpd_client_connection_rate_limit = 6\n").start()
    first, second = wait_for(lambda: (p if len(p := worker_pids(daemon)) == 2 else []),
                             message="two workers")
    said = []
    for taking, stopped in ((first, second), (second, first)):
        os.kill(stopped, signal.SIGSTOP)
        try:
            said += [greeting(daemon.smtp_port) for _ in range(4)]
        finally:
            os.kill(stopped, signal.SIGCONT)
        lines = daemon.wait_log(r"postern/smtpd\[\d+\]: connect from", len(said))
        assert {int(must_search(r"smtpd\[(\d+)\]", line)[1]) for line in lines[-4:]} \
            == {taking}
    assert [line[:3] for line in said] == ["220"] * 6 + ["421"] * 2
    assert said[6] == "421 4.7.0 mx.example.test Error: too many connections from 127.0.0.1"
    daemon.wait_log(rf"postern/smtpd\[{second}\]: warning: Connection rate limit exceeded: 7 "
                    rf"from {PEER_RE} for service smtp$")

def test_clients_in_the_exceptions_are_not_limited(daemon_factory: DaemonFactory) -> None:
    daemon = daemon_factory("smtpd_client_connection_rate_limit = 1\n"
                            "smtpd_client_message_rate_limit = 1\n").start()
    assert [greeting(daemon.smtp_port)[:3] for _ in range(3)] == ["220"] * 3
    with smtplib.SMTP("127.0.0.1", daemon.smtp_port, timeout=20) as client:
        for _ in range(3):
            assert client.mail("a@example.org")[0] == 250
            client.rset()
    assert "rate limit exceeded" not in daemon.log_text()


def session(daemon: Daemon, commands: list[str]) -> list[str]:
    replies = []
    with smtplib.SMTP("127.0.0.1", daemon.smtp_port, local_hostname="client.example",
                      timeout=20) as client:
        client.ehlo()
        for command in commands:
            code, text = client.docmd(command)
            replies.append(f"{code} {text.decode()}")
    return replies


def test_message_and_recipient_rates(daemon_factory: DaemonFactory) -> None:
    daemon = daemon_factory(NOT_EXEMPT + "smtpd_client_message_rate_limit = 2\n"
                            "smtpd_client_recipient_rate_limit = 3\n").start()
    rcpt = "RCPT TO:<alice@example.test>"
    replies = session(daemon, ["MAIL FROM:<a@example.org>", rcpt, rcpt, "RSET",
                               "MAIL FROM:<a@example.org>", rcpt, rcpt, "RSET",
                               "MAIL FROM:<a@example.org>"])
    assert replies == [
        "250 2.1.0 Ok", "250 2.1.5 Ok", "250 2.1.5 Ok", "250 2.0.0 Ok",
        "250 2.1.0 Ok", "250 2.1.5 Ok", "450 4.7.1 Error: too many recipients from 127.0.0.1",
        "250 2.0.0 Ok", "450 4.7.1 Error: too much mail from 127.0.0.1"]
    daemon.wait_log(rf"warning: Recipient address rate limit exceeded: 4 from {PEER_RE} "
                    r"for service smtp$")
    daemon.wait_log(rf"warning: Message delivery request rate limit exceeded: 3 from {PEER_RE} "
                    r"for service smtp$")
    # The next session, on whichever worker, is still over both limits.
    assert session(daemon, ["MAIL FROM:<a@example.org>"]) == [
        "450 4.7.1 Error: too much mail from 127.0.0.1"]
    daemon.wait_log(r"disconnect from .* ehlo=1 mail=2/3 rcpt=3/4 rset=2 quit=1 "
                    r"commands=9/11$")


def test_a_pipelined_group_under_a_limit_is_answered_in_order(
        daemon_factory: DaemonFactory) -> None:
    """MAIL and RCPT under a limit wait for the master's count: a pipelined
    group still gets its replies in order, one write per group."""
    daemon = daemon_factory(NOT_EXEMPT + "smtpd_client_recipient_rate_limit = 2\n").start()
    with socket.create_connection(("127.0.0.1", daemon.smtp_port), timeout=20) as sock:
        stream = sock.makefile("rb")
        stream.readline()
        sock.sendall(b"EHLO client.example\r\n")
        while stream.readline()[3:4] == b"-":
            pass
        sock.sendall(b"MAIL FROM:<a@example.org>\r\n" + b"RCPT TO:<alice@example.test>\r\n" * 3
                     + b"RSET\r\nQUIT\r\n")
        replies = [stream.readline().decode().rstrip() for _ in range(6)]
    assert replies == ["250 2.1.0 Ok", "250 2.1.5 Ok", "250 2.1.5 Ok",
                       "450 4.7.1 Error: too many recipients from 127.0.0.1",
                       "250 2.0.0 Ok", "221 2.0.0 Bye"]


def test_the_counts_start_over_after_the_time_unit(daemon_factory: DaemonFactory) -> None:
    daemon = daemon_factory(NOT_EXEMPT + "smtpd_client_message_rate_limit = 1\n"
                            "anvil_rate_time_unit = 1s\n").start()
    with smtplib.SMTP("127.0.0.1", daemon.smtp_port, timeout=20) as client:
        client.ehlo("client.example")
        assert client.mail("a@example.org")[0] == 250
        client.rset()
        assert client.mail("a@example.org") == (450, b"4.7.1 Error: too much mail from 127.0.0.1")

        def accepted_again() -> bool:
            # Each try is counted too; the first one after the unit opens a new one.
            code = client.mail("a@example.org")[0]
            client.rset()
            return code == 250

        wait_for(accepted_again, timeout=10, message="MAIL to be accepted in the next unit")


@pytest.fixture
def site(secure_site_factory: SecureSiteFactory) -> SecureSite:
    return secure_site_factory(NOT_EXEMPT + "smtpd_client_new_tls_session_rate_limit = 1\n"
                               "smtpd_client_auth_rate_limit = 2\n").start()


def test_new_tls_sessions(site: SecureSite) -> None:
    daemon = site.daemon
    site.starttls(daemon.smtp_port).quit()
    # The second handshake is made, then refused inside TLS.
    with smtplib.SMTP("127.0.0.1", daemon.smtp_port, timeout=20) as client:
        client.ehlo("laptop.example")
        client.starttls(context=site.context())
        assert client.ehlo("laptop.example") == (421, TOO_MANY_NEW_TLS)
    daemon.wait_log(rf"warning: New TLS session rate limit exceeded: 2 from {PEER_RE} "
                    r"for service smtp$")
    # Now STARTTLS itself is refused, in plaintext, and the session goes on.
    with smtplib.SMTP("127.0.0.1", daemon.smtp_port, timeout=20) as client:
        client.ehlo("laptop.example")
        assert client.docmd("STARTTLS") == (
            454, f"4.7.0 Error: too many new TLS sessions from {PEER}".encode())
        assert client.noop()[0] == 250
    daemon.wait_log(rf"warning: Refusing STARTTLS request from {PEER_RE} for service smtp$")
    daemon.wait_log(r"disconnect from .* ehlo=1 starttls=0/1 noop=1 quit=1 commands=3/4$")
    # Each listener has counts of its own: port 465 made no session yet.
    site.implicit().quit()


def test_new_tls_sessions_in_wrapper_mode(site: SecureSite) -> None:
    site.implicit().quit()
    with pytest.raises(smtplib.SMTPConnectError) as refused:
        site.implicit()  # made, then refused inside TLS instead of the greeting
    assert refused.value.args == (421, TOO_MANY_NEW_TLS)
    site.daemon.wait_log(rf"warning: New TLS session rate limit exceeded: 2 from {PEER_RE} "
                         r"for service submissions$")
    # Over the limit: closed before the handshake, without a byte.
    with socket.create_connection(("127.0.0.1", site.submissions_port), timeout=20) as sock:
        sock.sendall(b"\x16\x03\x01\x00\x05hello")
        assert sock.recv(100) == b""
    site.daemon.wait_log(rf"warning: Refusing TLS service request from {PEER_RE} "
                         r"for service submissions$")


def test_auth_commands(site: SecureSite) -> None:
    client = site.starttls(site.submission_port)
    try:
        for _ in range(2):
            assert client.docmd("AUTH PLAIN", "AHguAHg=")[0] == 535
        assert client.docmd("AUTH PLAIN", "AHguAHg=") == (
            450, b"4.7.1 Error: too many AUTH commands from 127.0.0.1")
    finally:
        client.close()
    site.daemon.wait_log(rf"warning: AUTH command rate limit exceeded: 3 from {PEER_RE} "
                         r"for service submission$")
