"""The queue across restarts, crashes and signals: nothing accepted is lost."""

from __future__ import annotations

import asyncio
import re
import signal
import smtplib
from pathlib import Path

from mta.queuefile import Envelope
from mta.spool import Spool
from tests.helpers import Daemon, DaemonFactory, RawSmtp, run_mta, wait_for

QID = r"[0-9A-HJKMNP-TV-Z]{12}"


def seed(queue: Path, recipients: list[str], body: bytes = b"seeded\r\n") -> str:
    """Write a message straight into incoming/ the way smtpd does."""
    spool = Spool(queue, lane=9)
    spool.create()

    async def write() -> str:
        qid = spool.new_qid()
        writer = spool.writer(Envelope(qid=qid, arrival=1795330000.0, sender="seed@example.org",
                                       recipients=recipients))
        await writer.write(b"Subject: seeded\r\n\r\n" + body)
        await writer.commit()
        return qid

    try:
        return asyncio.run(write())
    finally:
        spool.close()


def test_mail_in_the_spool_before_start_is_delivered(daemon_factory: DaemonFactory) -> None:
    daemon = daemon_factory()
    qid = seed(daemon.queue, ["alice@example.test", "bob@example.test"])
    run_mta("sendmail", "-f", "root@example.test", "alice@example.test",
            config=daemon.config, input=b"Subject: via sendmail\n\nhello\n")
    daemon.start()
    daemon.wait_maildir("alice", 2)
    daemon.wait_maildir("bob", 1)
    daemon.wait_log(rf"{qid}: removed")
    daemon.wait_log(rf"postern/pickup\[\d+\]: {QID}: uid=0 from=<root@example\.test>")


def test_kill_9_after_250_then_restart_delivers_exactly_once(daemon_factory: DaemonFactory) -> None:
    # defer_transports holds local delivery back, so the kill surely comes
    # after the 250 and before delivery.
    daemon = daemon_factory("defer_transports = local\n").start()
    with smtplib.SMTP("127.0.0.1", daemon.smtp_port) as client:
        client.ehlo("client.example")
        client.mail("bob@example.org")
        client.rcpt("alice@example.test")
        code, reply = client.data(b"Subject: survive\r\n\r\nsurvive the crash\r\n")
    assert code == 250
    qid = reply.decode().rsplit(" ", 1)[1]
    daemon.kill()
    assert daemon.maildir("alice") == []
    assert Spool(daemon.queue).find(qid) in ("incoming", "active", "deferred")
    daemon.config.write_text(daemon.config.read_text().replace("defer_transports = local", ""))
    daemon.start()
    daemon.wait_log(rf"{qid}: removed")
    files = daemon.wait_maildir("alice")
    assert len(files) == 1 and "survive the crash" in files[0].read_text()
    assert not any(p.name.startswith(".") for p in daemon.queue.rglob("*"))


def test_kill_9_during_a_busy_stream_loses_nothing_acknowledged(
        daemon_factory: DaemonFactory) -> None:
    daemon = daemon_factory().start()
    accepted = []
    client = smtplib.SMTP("127.0.0.1", daemon.smtp_port)
    try:
        for n in range(30):
            client.mail("bob@example.org")
            client.rcpt("alice@example.test")
            code, _ = client.data(f"Subject: n{n}\r\n\r\nnumber {n}\r\n".encode())
            assert code == 250
            accepted.append(n)
        daemon.kill()
    finally:
        client.close()  # no QUIT: the orphaned workers may have said 421 already
    daemon.start()

    def all_arrived() -> bool:
        bodies = [f.read_text() for f in daemon.maildir("alice")]
        # At least once each (a crash may repeat a delivery, never lose one).
        return all(any(f"number {n}\n" in b for b in bodies) for n in accepted)

    wait_for(all_arrived, message="every acknowledged message")


def test_sigterm_drains_and_exits_zero(daemon: Daemon) -> None:
    with RawSmtp(daemon.smtp_port) as smtp:
        smtp.reply()
        smtp.command("EHLO client.example")
        assert smtp.command("MAIL FROM:<bob@example.org>") == "250 2.1.0 Ok"
        assert daemon.process is not None
        daemon.process.send_signal(signal.SIGTERM)
        daemon.wait_log(r"terminating on signal 15")
        # The open session may finish its transaction, then it is told.
        assert smtp.command("RCPT TO:<alice@example.test>") == "250 2.1.5 Ok"
        smtp.command("DATA")
        assert smtp.command("Subject: last\r\n\r\nlast one\r\n.").startswith("250 2.0.0 Ok")
        assert smtp.reply().startswith("421 4.3.2 ")
    assert daemon.stop() == 0
    daemon.start()
    daemon.wait_maildir("alice", 1)


def test_sighup_reloads_the_configuration(daemon: Daemon) -> None:
    with RawSmtp(daemon.smtp_port) as smtp:
        smtp.reply()
        smtp.command("EHLO client.example")
        smtp.command("MAIL FROM:<bob@example.org>")
        assert smtp.command("RCPT TO:<carol@example.test>").startswith("550 5.1.1")
    (daemon.root / "mailboxes").write_text((daemon.root / "mailboxes").read_text()
                                           + "carol carol/\n")
    assert daemon.process is not None
    daemon.process.send_signal(signal.SIGHUP)
    daemon.wait_log(r"postern/master\[\d+\]: reload -- configuration")
    with smtplib.SMTP("127.0.0.1", daemon.smtp_port) as client:
        client.sendmail("bob@example.org", ["carol@example.test"], b"Subject: new\r\n\r\nhi\r\n")
    daemon.wait_maildir("carol")


def test_a_bad_reload_keeps_the_running_configuration(daemon: Daemon) -> None:
    daemon.config.write_text(daemon.config.read_text() + "smtpd_timeout = soon\n")
    assert daemon.process is not None
    daemon.process.send_signal(signal.SIGHUP)
    daemon.wait_log(r"warning: reload failed, keeping the running configuration: "
                    r".*main\.cf:\d+: smtpd_timeout = soon")
    with smtplib.SMTP("127.0.0.1", daemon.smtp_port) as client:
        client.sendmail("bob@example.org", ["alice@example.test"], b"Subject: x\r\n\r\nx\r\n")
    daemon.wait_maildir("alice")


def test_a_bad_configuration_stops_the_start_with_file_and_line(
        daemon_factory: DaemonFactory) -> None:
    daemon = daemon_factory("message_size_limit = lots\n")
    result = run_mta("start", config=daemon.config, check=False, timeout=30)
    assert result.returncode == 1
    assert re.search(rb"mta: fatal: .*main\.cf:\d+: message_size_limit = lots: "
                     rb"expected a whole number", result.stderr), result.stderr


def test_a_corrupt_queue_file_is_set_aside_and_the_daemon_goes_on(daemon: Daemon) -> None:
    torn = daemon.queue / "incoming" / "2K04AAAAAA09"
    torn.write_bytes(b"POSTERN 1\nid: 2K04AAAAAA09\narrival: 1.0\nsize: 0000000000000100\n"
                     b"sender: x@example.org\nrcpt: alice@example.test\n\nshort")
    Spool(daemon.queue).wake()
    wait_for(lambda: (daemon.queue / "corrupt" / "2K04AAAAAA09").exists())
    daemon.wait_log(r"warning: saving corrupt file \"2K04AAAAAA09\"")
    with smtplib.SMTP("127.0.0.1", daemon.smtp_port) as client:
        client.sendmail("bob@example.org", ["alice@example.test"], b"Subject: x\r\n\r\nok\r\n")
    daemon.wait_maildir("alice")


def test_metrics_count_what_happened(daemon: Daemon) -> None:
    with smtplib.SMTP("127.0.0.1", daemon.smtp_port) as client:
        client.sendmail("bob@example.org", ["alice@example.test"], b"Subject: x\r\n\r\nx\r\n")
    daemon.wait_log(rf"{QID}: removed")
    text = daemon.metrics()
    assert 'mta_smtpd_connections_total{listener="smtp"} 1.0' in text
    assert 'mta_smtpd_messages_received_total{listener="smtp"} 1.0' in text
    assert 'mta_deliveries_total{dsn_class="2",status="sent",transport="local"} 1.0' in text
    for stage in ("before_qmgr", "in_qmgr", "connection_setup", "transmission"):
        assert f'mta_delivery_delay_seconds_count{{stage="{stage}"}} 1.0' in text
    assert 'mta_queue_messages{queue="deferred"}' in text


def test_a_port_in_use_stops_the_start_plainly(daemon_factory: DaemonFactory) -> None:
    import socket

    daemon = daemon_factory()
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", daemon.smtp_port))
        taken.listen()
        result = run_mta("start", config=daemon.config, check=False, timeout=60)
    assert result.returncode == 1
    assert re.search(rb"^mta: fatal: cannot start: .*address already in use\n\Z",
                     result.stderr), result.stderr
    assert re.search(r"postern/master\[\d+\]: fatal: cannot start: ", daemon.log_text())
