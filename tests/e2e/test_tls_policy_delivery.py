"""The daemon end to end: a may destination whose TLS handshake fails gets the mail
deferred once, then in plaintext once it has waited minimal_backoff_time (Postfix's
rule); an encrypt destination never gets it in plaintext, not even on a
connection cached before a reload made it one."""

from __future__ import annotations

import asyncio
import signal
import smtplib
from pathlib import Path

from tests.fakes.certs import handshake_failing_context
from tests.fakes.smtp_peer import ScriptedPeer
from tests.helpers import DaemonFactory, until


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


async def test_reload_closes_cached_connections_and_applies_the_new_level(
        daemon_factory: DaemonFactory) -> None:
    """A SIGHUP that raises the destination from may to encrypt QUITs the
    plaintext connection kept in the cache at once (not after the idle limit),
    and the next message is not sent in plaintext: the server offers no
    STARTTLS, so it is deferred with 4.7.4."""
    async with ScriptedPeer(hostname="localhost") as peer:  # no STARTTLS offered
        daemon = daemon_factory("default_transport = smtp\n"
                                f"relayhost = [127.0.0.1]:{peer.port}\n"
                                "smtp_host_lookup = native\n"
                                "smtp_tls_security_level = may\n"
                                "smtp_connection_cache_time_limit = 120s\n")
        await asyncio.to_thread(daemon.start)
        await asyncio.to_thread(send, daemon.smtp_port)
        await asyncio.to_thread(daemon.wait_log, r"tls=may:none, dsn=2\.0\.0, status=sent")
        assert len(peer.connections) == 1
        assert "QUIT" not in peer.connections[0].commands  # kept in the cache
        daemon.config.write_text(daemon.config.read_text()
                                 + "smtp_tls_security_level = encrypt\n")
        assert daemon.process is not None
        daemon.process.send_signal(signal.SIGHUP)
        await asyncio.to_thread(daemon.wait_log, r"postern/master\[\d+\]: reload -- configuration")
        await until(lambda: peer.connections[0].commands[-1:] == ["QUIT"], timeout=10)
        await asyncio.to_thread(send, daemon.smtp_port)
        await asyncio.to_thread(
            daemon.wait_log, r"tls=!encrypt, dsn=4\.7\.4, status=deferred \(TLS is required, "
            r"but was not offered by host 127\.0\.0\.1\[127\.0\.0\.1\]\)")
        await asyncio.to_thread(daemon.stop)
    assert len(peer.messages) == 1
    assert sum(c.startswith("MAIL") for c in peer.commands) == 1  # the first message only
