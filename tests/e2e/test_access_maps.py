"""Access maps in the running daemon: a table file read at start, read again
at reload, and a table that cannot be read keeps the running configuration."""

from __future__ import annotations

import signal

from tests.helpers import Daemon, DaemonFactory, RawSmtp

# One process: the test sends SIGHUP soon after the start, and a receiver
# worker that has not yet set up its SIGHUP handler would die of it (the
# workers' reload is tests/e2e/test_workers.py's).
ACCESS_CF = ("receiver_processes = 0\n"
             "smtpd_recipient_restrictions = check_client_access texthash:clients\n")


def rcpt_reply(daemon: Daemon, recipient: str = "alice@example.test") -> str:
    with RawSmtp(daemon.smtp_port) as smtp:
        smtp.reply()
        smtp.command("EHLO client.example")
        assert smtp.command("MAIL FROM:<sender@example.org>") == "250 2.1.0 Ok"
        reply = smtp.command(f"RCPT TO:<{recipient}>")
        smtp.command("QUIT")
        return reply


def reload(daemon: Daemon, count: int) -> None:
    assert daemon.process is not None
    daemon.process.send_signal(signal.SIGHUP)
    daemon.wait_log(r"reload -- configuration ", count)


def test_a_table_is_read_at_start_and_again_at_reload(daemon_factory: DaemonFactory) -> None:
    daemon = daemon_factory(ACCESS_CF)
    clients = daemon.root / "clients"
    clients.write_text("# the loopback network, by its address prefix\n"
                       "127.0.0   REJECT go away\n")
    daemon.start()
    assert rcpt_reply(daemon) == \
        "554 5.7.1 <localhost[127.0.0.1]>: Client host rejected: go away"
    daemon.wait_log(r"NOQUEUE: reject: RCPT from localhost\[127\.0\.0\.1\]: 554 5\.7\.1 "
                    r"<localhost\[127\.0\.0\.1\]>: Client host rejected: go away; "
                    r"from=<sender@example\.org> to=<alice@example\.test> proto=ESMTP "
                    r"helo=<client\.example>$")

    # The host's own entry comes before its network's: DUNNO lets it pass.
    clients.write_text("localhost DUNNO\n127.0.0 REJECT go away\n")
    reload(daemon, 1)
    assert rcpt_reply(daemon) == "250 2.1.5 Ok"

    # A table that cannot be read is a configuration error at reload, never at
    # a lookup: the running configuration stays.
    clients.unlink()
    assert daemon.process is not None
    daemon.process.send_signal(signal.SIGHUP)
    daemon.wait_log(r"warning: reload failed, keeping the running configuration: .*"
                    r"check_client_access texthash:clients: .*/clients: cannot read table")
    assert rcpt_reply(daemon) == "250 2.1.5 Ok"
