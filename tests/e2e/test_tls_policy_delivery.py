"""The daemon end to end: a may destination whose TLS handshake fails gets the mail
deferred once, then in plaintext once it has waited minimal_backoff_time (Postfix's
rule); an encrypt destination never gets it in plaintext."""

from __future__ import annotations

import asyncio
import smtplib
from pathlib import Path

from tests.fakes.certs import handshake_failing_context
from tests.fakes.smtp_peer import ScriptedPeer
from tests.helpers import DaemonFactory


def send(port: int) -> None:
    with smtplib.SMTP("127.0.0.1", port) as client:
        client.sendmail("bob@example.test", ["carol@remote.test"],
                        b"Subject: hello\r\n\r\nbody\r\n")


async def test_may_defers_once_then_plaintext(daemon_factory: DaemonFactory,
                                              tmp_path: Path) -> None:
    async with ScriptedPeer(tls=handshake_failing_context(tmp_path), hostname="localhost") as peer:
        daemon = daemon_factory("default_transport = smtp\n"
                                f"relayhost = [127.0.0.1]:{peer.port}\n"
                                "smtp_host_lookup = native\n")
        await asyncio.to_thread(daemon.start)
        await asyncio.to_thread(send, daemon.smtp_port)
        relay = rf"127\.0\.0\.1\[127\.0\.0\.1\]:{peer.port}"
        await asyncio.to_thread(
            daemon.wait_log, rf"to=<carol@remote\.test>, relay={relay}, .*tls=!may, "
            r"dsn=4\.7\.5, status=deferred \(Cannot start TLS: handshake failure\)")
        await asyncio.to_thread(
            daemon.wait_log, rf"to=<carol@remote\.test>, relay={relay}, .*tls=may:none, "
            r"dsn=2\.0\.0, status=sent", 1, 30)
        await asyncio.to_thread(daemon.stop)
    assert len(peer.messages) == 1
    assert not any(c.tls for c in peer.connections)
    assert f"SSL_connect error to 127.0.0.1[127.0.0.1]:{peer.port}: " in daemon.log_text()


async def test_encrypt_never_falls_back(daemon_factory: DaemonFactory, tmp_path: Path) -> None:
    async with ScriptedPeer(tls=handshake_failing_context(tmp_path), hostname="localhost") as peer:
        daemon = daemon_factory("default_transport = smtp\n"
                                f"relayhost = [127.0.0.1]:{peer.port}\n"
                                "smtp_host_lookup = native\n"
                                "smtp_tls_security_level = encrypt\n")
        await asyncio.to_thread(daemon.start)
        await asyncio.to_thread(send, daemon.smtp_port)
        await asyncio.to_thread(daemon.wait_log, r"tls=!encrypt, dsn=4\.7\.5, status=deferred "
                                r"\(Cannot start TLS: handshake failure\)", 3, 30)
        await asyncio.to_thread(daemon.stop)
    assert peer.messages == []
    assert not any("MAIL FROM" in c for c in peer.commands)
