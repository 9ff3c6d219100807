"""The Must-show table: peers x levels on loopback, through the real smtp agent.

Every peer is reached through a recording TCP proxy, so the assertion about
plaintext is made on the bytes that really crossed the wire: at encrypt and
above no MAIL, RCPT or DATA ever crosses in plaintext, whatever the peer does.
One proxy is a man in the middle that strips STARTTLS from the EHLO reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mta.config import from_text
from mta.delivery import DeliveryResult
from mta.smtp.client import Connector
from mta.tls.client_plan import PolicyTls
from mta.tls.fingerprints import pubkey_digest
from tests.fakes.certs import Issued, TestCA, handshake_failing_context, self_signed
from tests.fakes.resolver import FakeDns
from tests.fakes.smtp_peer import ScriptedPeer
from tests.fakes.wire_proxy import WireProxy
from tests.unit.smtp_helpers import BASE_CF, agent, request

NEXTHOP, MX = "example.test", "mx.example.test"
CA = TestCA("Postern Matrix CA", org="Postern Tests")
SELF_SIGNED = self_signed(MX)


@dataclass
class Peer:
    name: str
    peer: ScriptedPeer
    proxy: WireProxy
    port: int = 0


def server_certificate(peer_name: str) -> Issued:
    if peer_name == "self_signed":
        return SELF_SIGNED
    if peer_name == "expired":
        return CA.issue(MX, expired=True)
    if peer_name == "wrong_name":
        return CA.issue("mx.elsewhere.test")
    return CA.issue(MX)  # valid, mitm_strip


async def make_peer(name: str, tmp: Path) -> Peer:
    tls: ssl.SSLContext | None = None
    if name == "handshake_fails":
        tls = handshake_failing_context(tmp)
    elif name != "no_starttls":
        tls = server_certificate(name).write(tmp, name).server_context()
    peer = await ScriptedPeer(tls=tls, hostname=MX).start()
    proxy = await WireProxy(peer.port, strip=(name == "mitm_strip")).start()
    return Peer(name, peer, proxy, proxy.port)


@contextlib.asynccontextmanager
async def peer_as_mx(name: str, tmp: Path) -> AsyncIterator[tuple[Peer, FakeDns, Connector]]:
    """The named peer behind its proxy as NEXTHOP's only MX: the peer, the fake
    DNS that says so and a connector that reaches the proxy; closed at the end."""
    peer = await make_peer(name, tmp)
    try:
        dns = FakeDns(mx_records={NEXTHOP: [(10, MX)]}, a={MX: ["127.0.0.1"]})

        async def connect(address: str, port: int, local: str | None
                          ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
            return await asyncio.open_connection(address, peer.port)

        yield peer, dns, connect
    finally:
        await peer.proxy.close()
        await peer.peer.close()


async def deliver(tmp: Path, peer_name: str, extra: str = "", attempt_started: float = 0.0
                  ) -> tuple[DeliveryResult, Peer]:
    """One message for NEXTHOP through the smtp agent configured with extra,
    the named peer being the MX; attempt_started says how long it has waited."""
    config = from_text(BASE_CF + extra, str(tmp / "main.cf"))
    async with peer_as_mx(peer_name, tmp) as (peer, dns, connect):
        smtp = agent(extra, dns=dns, connector=connect, tls_policy=PolicyTls.from_config(config))
        req = request(["alice@example.test"], NEXTHOP)
        req.attempt_started = attempt_started
        [result] = await smtp.deliver(req)
        await smtp.close()
    return result, peer


SENT_TLS, SENT_PLAIN = ("sent", "tls"), ("sent", "plaintext")
NOT_OFFERED = ("deferred", "4.7.4", f"TLS is required, but was not offered by host {MX}[127.0.0.1]")
HANDSHAKE = ("deferred", "4.7.5", "Cannot start TLS: handshake failure")
NOT_TRUSTED = ("deferred", "4.7.5", "Server certificate not trusted")
NOT_VERIFIED = ("deferred", "4.7.5", "Server certificate not verified")
LEVELS = ("none", "may", "encrypt", "fingerprint", "verify", "secure")
TABLE: dict[str, tuple] = {
    # peer:          none,       may,        encrypt,     fingerprint,  verify,       secure
    "no_starttls":  (SENT_PLAIN, SENT_PLAIN, NOT_OFFERED, NOT_OFFERED, NOT_OFFERED, NOT_OFFERED),
    "handshake_fails": (SENT_PLAIN, SENT_PLAIN, HANDSHAKE, HANDSHAKE, HANDSHAKE, HANDSHAKE),
    "mitm_strip":   (SENT_PLAIN, SENT_PLAIN, NOT_OFFERED, NOT_OFFERED, NOT_OFFERED, NOT_OFFERED),
    "self_signed":  (SENT_PLAIN, SENT_TLS, SENT_TLS, SENT_TLS, NOT_TRUSTED, NOT_TRUSTED),
    "expired":      (SENT_PLAIN, SENT_TLS, SENT_TLS, NOT_VERIFIED, NOT_TRUSTED, NOT_TRUSTED),
    "wrong_name":   (SENT_PLAIN, SENT_TLS, SENT_TLS, NOT_VERIFIED, NOT_VERIFIED, NOT_VERIFIED),
    "valid":        (SENT_PLAIN, SENT_TLS, SENT_TLS, NOT_VERIFIED, SENT_TLS, SENT_TLS),
}
TLS_FIELD = {SENT_PLAIN: "{level}:none", SENT_TLS: "{level}"}


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("peer_name", list(TABLE))
async def test_peer_by_level(tmp_path: Path, peer_name: str, level: str) -> None:
    CA.write(tmp_path / "ca.pem")
    pin = pubkey_digest(SELF_SIGNED.cert).hex()
    extra = (f"smtp_tls_security_level = {level}\nsmtp_tls_CAfile = ca.pem\n"
             f"smtp_tls_fingerprint_cert_match = {pin}\n")
    # Queued for 10 minutes: the may fallback to plaintext applies.
    result, peer = await deliver(tmp_path, peer_name, extra, attempt_started=600.0)
    expected = TABLE[peer_name][LEVELS.index(level)]
    wire = bytes(peer.proxy.client_bytes)
    if expected[0] == "sent":
        assert (result.status, result.dsn) == ("sent", "2.0.0"), result.text
        assert len(peer.peer.messages) == 1
        used_tls = any(c.tls for c in peer.peer.connections if c.messages)
        assert used_tls is (expected == SENT_TLS)
        if level == "none":
            assert result.tls == "none"
        else:
            assert result.tls == TLS_FIELD[expected].format(level=level)
    else:
        status, dsn, text = expected
        assert (result.status, result.dsn, result.text) == (status, dsn, text)
        assert peer.peer.messages == []
        assert result.tls == f"!{level}"
    if level not in ("none", "may"):
        # The wire, as a man in the middle would record it: no envelope, no DATA.
        for verb in (b"MAIL FROM", b"RCPT TO", b"DATA\r\n", b"Subject: test"):
            assert verb not in wire, (verb, wire[:400])
    if expected == SENT_TLS:
        assert b"Subject: test" not in wire  # the message crossed encrypted


async def test_may_handshake_failure_defers_a_fresh_message(tmp_path: Path) -> None:
    """Postfix: the plaintext retry needs the message to have waited
    minimal_backoff_time; a fresh message is deferred once."""
    result, peer = await deliver(tmp_path, "handshake_fails", attempt_started=5.0)  # 5 s ago
    assert (result.status, result.dsn, result.text) == HANDSHAKE
    assert result.tls == "!may"
    assert b"MAIL FROM" not in bytes(peer.proxy.client_bytes)


async def deliver_once(tmp_path: Path, peer_name: str, level: str,
                       loglevel: int = 1) -> tuple[DeliveryResult, str]:
    from mta import log as maillog

    CA.write(tmp_path / "ca.pem")
    extra = (f"smtp_tls_security_level = {level}\nsmtp_tls_CAfile = ca.pem\n"
             f"smtp_tls_loglevel = {loglevel}\n")
    logfile = tmp_path / "maillog"
    maillog.setup(syslog_name="postern", hostname="client.test", maillog_file=str(logfile),
                  stderr=False)
    try:
        result, _ = await deliver(tmp_path, peer_name, extra)
    finally:
        maillog.setup(syslog_name="postern", hostname="client.test", maillog_file=None,
                      stderr=False)
    return result, logfile.read_text() if logfile.exists() else ""


def sample(name: str, **labels: str) -> float:
    from mta.metrics import REGISTRY

    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_log_lines_and_metrics_verified(tmp_path: Path) -> None:
    before = sample("mta_smtp_tls_sessions_total", level="verify", trust="verified",
                    result="tls")
    result, log = await deliver_once(tmp_path, "valid", "verify", loglevel=2)
    assert result.status == "sent"
    assert "postern/smtp[" in log
    assert f"{MX}[127.0.0.1]:25: Matched subjectAltName: {MX}" in log
    # Postfix's line (summary.py, as smtpd's) minus the key exchange, which
    # Python's ssl cannot tell (docs/tls-policy.md).
    assert any(line.endswith(
        f"]: Verified TLS connection established to {MX}[127.0.0.1]:25: TLSv1.3 with cipher "
        "TLS_AES_256_GCM_SHA384 (256/256 bits) server-signature ECDSA (prime256v1) "
        "server-digest SHA256") for line in log.splitlines()), log
    assert sample("mta_smtp_tls_sessions_total", level="verify", trust="verified",
                  result="tls") == before + 1


async def test_log_lines_and_metrics_refused(tmp_path: Path) -> None:
    before = sample("mta_smtp_tls_policy_deferrals_total", level="verify", reason="untrusted")
    refused = sample("mta_smtp_tls_sessions_total", level="verify", trust="untrusted",
                     result="refused")
    result, log = await deliver_once(tmp_path, "expired", "verify")
    assert result.status == "deferred"
    lines = log.splitlines()
    failure = next(i for i, line in enumerate(lines) if "verification failed" in line)
    assert " postern/smtp[" in lines[failure]
    assert lines[failure].endswith(f"]: server certificate verification failed for "
                                   f"{MX}[127.0.0.1]:25: certificate has expired")
    assert f"Untrusted TLS connection established to {MX}[127.0.0.1]:25: " in lines[failure + 1]
    assert sample("mta_smtp_tls_policy_deferrals_total", level="verify",
                  reason="untrusted") == before + 1
    assert sample("mta_smtp_tls_sessions_total", level="verify", trust="untrusted",
                  result="refused") == refused + 1


async def test_may_logs_untrusted_and_delivers(tmp_path: Path) -> None:
    result, log = await deliver_once(tmp_path, "self_signed", "may")
    assert result.status == "sent" and result.tls == "may"
    assert f"Untrusted TLS connection established to {MX}[127.0.0.1]:25" in log
    assert "verification failed" not in log  # may does not care, as Postfix at loglevel 1
