"""anvil's statistics lines: Postfix's and ours, after the same sessions.

Postfix's anvil logs, every anvil_status_update_time, the highest connection
count and rates of one client since its last report (and the size of its
table); operators read them to choose the smtpd_client_*_limit values. The
same three sessions (two recipients each, from a client outside mynetworks,
so that it is counted) go to a private Postfix and to a Postern daemon, with
one process and with receiver workers, and the last report of each must say
the same: the values, the order, the format. The service part of the client
(master.cf's service name, here a port number for Postfix) and the times
are left out of the comparison.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable

import pytest

from tests.helpers import DaemonFactory, wait_for
from tests.interop.postfix import PostfixFactory

pytestmark = pytest.mark.interop

LIMITS = ("mynetworks = 192.0.2.0/24\n"  # 127.0.0.1 is counted, not exempt
          "smtpd_client_message_rate_limit = 100\n"
          "smtpd_client_recipient_rate_limit = 100\n"
          "anvil_status_update_time = 1s\n")
STATISTICS = re.compile(r"/anvil\[\d+\]: (statistics: .*)$")


def sessions(port: int, domain: str) -> None:
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
            stream = sock.makefile("rb")
            for command in ("", "HELO client.test", "MAIL FROM:<a@b.test>",
                            f"RCPT TO:<alice@{domain}>", f"RCPT TO:<alice@{domain}>", "QUIT"):
                if command:
                    sock.sendall(command.encode() + b"\r\n")
                while (line := stream.readline())[3:4] == b"-":
                    pass
                assert line[:1] in (b"2", b"3"), (command, line)


def last_report(log_text: Callable[[], str], after: int) -> list[str]:
    """The statistics lines of the first whole report logged after offset
    after in the log (a report ends with the cache size), comparable."""
    found: list[str] = []

    def reported() -> bool:
        found[:] = []
        for line in log_text()[after:].splitlines():
            if (match := STATISTICS.search(line)) is not None:
                found.append(match.group(1))
                if " cache size " in line:
                    return True
        return False

    wait_for(reported, timeout=20, message="anvil statistics")
    return [re.sub(r" at \w{3} [ \d]\d \d\d:\d\d:\d\d$", " at TIME",
                   re.sub(r"\((\w+):", "(SERVICE:", line)) for line in found]


@pytest.mark.parametrize("workers", [0, 2])
def test_anvil_statistics_as_postfix_logs_them(postfix_factory: PostfixFactory,
                                               daemon_factory: DaemonFactory,
                                               workers: int) -> None:
    postfix = postfix_factory(main_cf="smtpd_peername_lookup = no\n" + LIMITS).start()
    sessions(postfix.port, "postfix.test")
    postfix.wait_log(r"disconnect from", count=3)
    theirs = last_report(postfix.log_text, len(postfix.log_text()))

    daemon = daemon_factory(f"receiver_processes = {workers}\n" + LIMITS).start()
    sessions(daemon.smtp_port, "example.test")
    daemon.wait_log(r"disconnect from", count=3)
    ours = last_report(daemon.log_text, len(daemon.log_text()))

    assert ours == theirs
    assert ours == [
        "statistics: max connection rate 3/60s for (SERVICE:127.0.0.1) at TIME",
        "statistics: max connection count 1 for (SERVICE:127.0.0.1) at TIME",
        "statistics: max message rate 3/60s for (SERVICE:127.0.0.1) at TIME",
        "statistics: max recipient rate 6/60s for (SERVICE:127.0.0.1) at TIME",
        "statistics: max cache size 1 at TIME"]


def refused_second(port: int) -> None:
    """Two sessions at once from one client with a concurrency limit of 1:
    the second is refused (421), then both end."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as first:
        assert first.makefile("rb").readline()[:3] == b"220"
        with socket.create_connection(("127.0.0.1", port), timeout=20) as second:
            assert second.makefile("rb").readline()[:3] == b"421"
        first.sendall(b"QUIT\r\n")


@pytest.mark.parametrize("workers", [0, 2])
def test_a_refused_connection_is_in_the_count_as_in_postfix(
        postfix_factory: PostfixFactory, daemon_factory: DaemonFactory, workers: int) -> None:
    """anvil counts every connect, the one smtpd then refuses too: the
    report says 2 where the limit is 1."""
    limit = LIMITS + "smtpd_client_connection_count_limit = 1\n"
    postfix = postfix_factory(main_cf="smtpd_peername_lookup = no\n" + limit).start()
    refused_second(postfix.port)
    theirs = last_report(postfix.log_text, len(postfix.log_text()))
    daemon = daemon_factory(f"receiver_processes = {workers}\n" + limit).start()
    refused_second(daemon.smtp_port)
    ours = last_report(daemon.log_text, len(daemon.log_text()))
    assert ours == theirs
    assert "statistics: max connection count 2 for (SERVICE:127.0.0.1) at TIME" in ours
