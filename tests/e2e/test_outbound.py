"""Outbound delivery end to end with the real daemon: deferral, flush, bounce.

The daemon relays to a scripted peer on loopback (relayhost = [127.0.0.1]:P);
the peer runs on the test's event loop while the daemon is a subprocess.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import re
import smtplib

from tests.fakes.smtp_peer import ScriptedPeer
from tests.helpers import (
    Daemon,
    DaemonFactory,
    free_port,
    mime_parts,
    must_search,
    run_mta,
    wait_for,
)

QID = r"[0-9A-Z]{12}"


def outbound_config(port: int) -> str:
    return f"""
default_transport = smtp
relayhost = [127.0.0.1]:{port}
smtp_host_lookup = native
minimal_backoff_time = 300s
maximal_backoff_time = 600s
queue_run_delay = 300s
"""


async def wait_log(daemon: Daemon, pattern: str) -> list[str]:
    """daemon.wait_log off the event loop (the scripted peer runs on it); the
    maillog goes into the failure message."""
    try:
        return await asyncio.to_thread(daemon.wait_log, pattern)
    except AssertionError as error:
        raise AssertionError(f"{error}\nmaillog:\n{daemon.log_text()}") from None


def send(daemon: Daemon, sender: str, recipients: list[str], body: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", daemon.smtp_port) as client:
        client.ehlo("client.example")
        assert client.sendmail(sender, recipients, body) == {}


async def test_deferral_then_flush_delivers_and_the_maillog_tells_the_story(
        daemon_factory: DaemonFactory) -> None:
    port = free_port()
    daemon = daemon_factory(outbound_config(port)).start()
    await asyncio.to_thread(send, daemon, "alice@example.test", ["far@remote.test"],
                            b"Subject: later\r\n\r\nWaiting for the hop\r\n")
    deferred = await wait_log(
        daemon, rf"postern/smtp\[\d+\]: {QID}: to=<far@remote.test>, relay=none, "
        r"delay=[\d.]+, delays=[\d.]+/[\d.]+/[\d.]+/[\d.]+, dsn=4\.4\.1, status=deferred "
        rf"\(connect to 127\.0\.0\.1\[127\.0\.0\.1\]:{port}: Connection refused\)")
    qid = must_search(rf"({QID}): to=", deferred[0]).group(1)
    # The maillog line comes first; the move to deferred/ right after it.
    await asyncio.to_thread(wait_for, (daemon.queue / "deferred" / qid).exists,
                            message="the message in deferred/")

    listing = (await asyncio.to_thread(run_mta, "queue", "list", config=daemon.config)).stdout
    text = listing.decode()
    assert qid in text
    assert f"(connect to 127.0.0.1[127.0.0.1]:{port}: Connection refused)" in text
    assert "far@remote.test" in text
    rows = [json.loads(line) for line in (await asyncio.to_thread(
        run_mta, "queue", "list", "--json", config=daemon.config)).stdout.splitlines()]
    assert rows[0]["queue_name"] == "deferred"
    assert rows[0]["recipients"][0]["delay_reason"].endswith("Connection refused")
    assert rows[0]["next_attempt_time"] > rows[0]["arrival_time"]

    async with ScriptedPeer(port=port) as peer:
        await asyncio.to_thread(run_mta, "queue", "flush", config=daemon.config)
        sent = await wait_log(
            daemon, rf"{qid}: to=<far@remote.test>, relay=127\.0\.0\.1\[127\.0\.0\.1\]"
            rf":{port}, delay=[\d.]+, delays=[\d./]+, (tls=\S+, )?dsn=2\.0\.0, status=sent "
            r"\(250 2\.0\.0 Ok: queued as SCRIPTED\)")
        await wait_log(daemon, rf"{qid}: removed")
    assert sent
    assert peer.messages[0].recipients == ["far@remote.test"]
    assert b"Waiting for the hop\r\n" in peer.messages[0].content
    story = [line for line in daemon.log_text().splitlines() if qid in line or
             "connect to" in line]
    kinds = [next((k for k in ("status=deferred", "status=sent", "client=", "message-id=",
                               "(queue active)", "connect to", "removed") if k in line), "?")
             for line in story]
    assert kinds.index("status=deferred") < kinds.index("status=sent") < kinds.index("removed")
    assert kinds == ["client=", "message-id=", "(queue active)", "connect to", "status=deferred",
                     "(queue active)", "status=sent", "removed"]
    assert not list((daemon.queue / "deferred").iterdir())


async def test_remote_rejection_bounces_to_the_local_sender(daemon_factory: DaemonFactory) -> None:
    replies = {"RCPT": lambda arg: "550 5.1.1 <nobody@remote.test>: Recipient address rejected"
               if "nobody" in arg else "250 2.1.5 Ok"}
    async with ScriptedPeer(replies=replies) as peer:
        daemon = daemon_factory(outbound_config(peer.port)).start()
        await asyncio.to_thread(send, daemon, "alice@example.test",
                                ["nobody@remote.test", "somebody@remote.test"],
                                b"Subject: two\r\n\r\nfor two\r\n")
        lines = await wait_log(
            daemon, rf"postern/bounce\[\d+\]: ({QID}): sender non-delivery "
            rf"notification: ({QID})")
        files = await asyncio.to_thread(daemon.wait_maildir, "alice")
    original, notice = must_search(rf"({QID}): sender non-delivery notification: ({QID})",
                                   lines[0]).groups()
    log = daemon.log_text()
    assert re.search(rf"{original}: to=<nobody@remote.test>, relay=127.0.0.1\[127.0.0.1\]:"
                     rf"{peer.port}, .*dsn=5\.1\.1, status=bounced \(host 127\.0\.0\.1"
                     r"\[127\.0\.0\.1\] said: 550 5\.1\.1 <nobody@remote\.test>: Recipient "
                     r"address rejected \(in reply to RCPT TO command\)\)", log)
    assert re.search(rf"{original}: to=<somebody@remote.test>, .*status=sent", log)
    assert peer.messages[0].recipients == ["somebody@remote.test"]
    message = email.message_from_bytes(files[0].read_bytes(), policy=email.policy.default)
    assert message["Return-Path"] == "<>"
    assert message.get_content_type() == "multipart/report"
    recipient = mime_parts(mime_parts(message)[1])[1]
    assert recipient["Final-Recipient"] == "rfc822; nobody@remote.test"
    assert recipient["Action"] == "failed"
    assert recipient["Status"] == "5.1.1"
    assert recipient["Diagnostic-Code"].startswith("smtp; 550 5.1.1 <nobody@remote.test>")
    await wait_log(daemon, rf"{notice}: removed")


async def test_expired_mail_is_returned_to_the_sender(daemon_factory: DaemonFactory) -> None:
    port = free_port()  # nothing listens: every attempt is deferred
    daemon = daemon_factory(outbound_config(port) + "maximal_queue_lifetime = 0s\n").start()
    await asyncio.to_thread(send, daemon, "alice@example.test", ["far@remote.test"],
                            b"Subject: too late\r\n\r\nnever arrives\r\n")
    expired = await wait_log(daemon, rf"postern/qmgr\[\d+\]: ({QID}): from=<alice@example.test>"
                                     r", status=expired, returned to sender")
    qid = must_search(rf"({QID}): from=", expired[0]).group(1)
    await wait_log(daemon, rf"{qid}: sender non-delivery notification: {QID}")
    await wait_log(daemon, rf"{qid}: removed")
    files = await asyncio.to_thread(daemon.wait_maildir, "alice")
    message = email.message_from_bytes(files[0].read_bytes(), policy=email.policy.default)
    recipient = mime_parts(mime_parts(message)[1])[1]
    assert recipient["Final-Recipient"] == "rfc822; far@remote.test"
    assert recipient["Action"] == "failed"
    assert recipient["Status"] == "4.4.1"  # the last reason, as Postfix reports it
    assert "Connection refused" in recipient["Diagnostic-Code"]


async def test_a_relayhost_that_is_this_daemon_defers_4_3_5_without_connecting(
        daemon_factory: DaemonFactory) -> None:
    # A relayhost at our own listener: Postfix finds itself among the relay's
    # addresses before it connects, warns, and defers (a configuration problem)
    # instead of bouncing every outbound message.
    daemon = daemon_factory()
    with daemon.config.open("a") as main_cf:
        main_cf.write(outbound_config(daemon.smtp_port))
    daemon.start()
    await asyncio.to_thread(send, daemon, "alice@example.test", ["far@remote.test"],
                            b"Subject: round\r\n\r\nand round\r\n")
    deferred = await wait_log(
        daemon, rf"postern/smtp\[\d+\]: {QID}: to=<far@remote.test>, relay=none, "
        r"delay=[\d.]+, delays=[\d./]+, dsn=4\.3\.5, status=deferred "
        r"\(mail for 127\.0\.0\.1 loops back to myself\)")
    log = daemon.log_text()
    assert re.search(r"postern/smtp\[\d+\]: warning: relayhost configuration problem", log)
    # One session only, our submission: the daemon never called itself.
    assert len(re.findall(r"postern/smtpd\[\d+\]: connect from ", log)) == 1
    qid = must_search(rf"({QID}): to=", deferred[0]).group(1)
    await asyncio.to_thread(wait_for, (daemon.queue / "deferred" / qid).exists,
                            message="the message in deferred/")
    assert not daemon.maildir("alice")  # no bounce
