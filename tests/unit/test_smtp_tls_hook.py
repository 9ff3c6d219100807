"""STARTTLS through the policy hook: real handshakes with test certificates, verification on."""

from __future__ import annotations

import ssl
from pathlib import Path

from mta.config import from_text
from mta.delivery import Route
from mta.smtp.client import Peer, SmtpClientError, TlsFacts
from mta.smtp.tlshook import (
    PLAINTEXT,
    STARTTLS,
    SessionTls,
    TlsPolicy,
    TlsRefusal,
    default_policy,
)
from mta.tls.levels import TlsLevel
from tests.fakes.certs import TestCA
from tests.fakes.smtp_peer import ScriptedPeer
from tests.unit.smtp_helpers import BASE_CF, agent, request

CA = TestCA()


def peer_tls(tmp_path: Path, *names: str) -> ssl.SSLContext:
    """The scripted peer's server context: a certificate from CA for names
    (peer.test and 127.0.0.1 unless given)."""
    issued = CA.issue(*(names or ("peer.test", "127.0.0.1")))
    return issued.write(tmp_path, "peer").server_context()


class RecordingPlan:
    """A verify-style plan: TLS required, the test CA trusted, the name checked."""

    def __init__(self, context: ssl.SSLContext, server_hostname: str) -> None:
        self.ssl_context: ssl.SSLContext | None = context
        self.server_hostname: str | None = server_hostname
        self.events: list[str] = []
        self.facts: TlsFacts | None = None
        self.accept = True

    def before_starttls(self, offered: bool, peer: Peer) -> str | TlsRefusal:
        self.events.append(f"before:{offered}")
        if not offered:
            return TlsRefusal("4.7.4", f"TLS is required, but was not offered by host "
                                       f"{peer.name}")
        return STARTTLS

    def after_handshake(self, facts: TlsFacts, peer: Peer) -> TlsRefusal | None:
        self.events.append("after")
        self.facts = facts
        return None if self.accept else TlsRefusal("4.7.5", "Server certificate not verified")

    def after_failure(self, error: SmtpClientError, peer: Peer) -> str | TlsRefusal:
        self.events.append(f"failure:{type(error).__name__}")
        self.reason = getattr(error, "reason", None)
        return TlsRefusal("4.7.5", "Cannot start TLS: handshake failure")

    def log_field(self) -> str | None:
        return "verify"

    def opened(self, encrypted: bool, fallback: bool) -> SessionTls:
        return SessionTls(TlsLevel.VERIFY, encrypted, encrypted and self.accept, fallback)

    def admits(self, session: SessionTls) -> bool:
        self.events.append("admits")
        return session.encrypted and session.verified


class OnePlan:
    def __init__(self, plan: RecordingPlan) -> None:
        self.the_plan = plan
        self.asked: list[tuple[Route, str]] = []

    def plan(self, route: Route, mx_hostname: str, queued_for: float = 0.0) -> RecordingPlan:
        self.asked.append((route, mx_hostname))
        return self.the_plan


async def test_verified_starttls_then_ehlo_again_and_delivery(tmp_path: Path) -> None:
    plan = RecordingPlan(CA.client_context(), "peer.test")
    async with ScriptedPeer(tls=peer_tls(tmp_path)) as peer:
        smtp = agent(tls_policy=OnePlan(plan))
        results = await smtp.deliver(request(["a@x.test"], f"[127.0.0.1]:{peer.port}"))
        await smtp.close()
    assert [r.status for r in results] == ["sent"]
    assert results[0].tls == "verify"
    assert plan.events == ["before:True", "after"]
    assert plan.facts is not None and plan.facts.protocol.startswith("TLSv1.")
    assert plan.facts.peer_certificate  # the leaf, DER, for fingerprint checks
    conn = peer.connections[0]
    assert conn.tls and conn.server_name == "peer.test"
    assert conn.commands[:3] == ["EHLO client.test", "STARTTLS", "EHLO client.test"]
    # Nothing of the transaction crossed the wire before TLS was up.
    plaintext = bytes(conn.raw).split(b"STARTTLS\r\n")[0]
    assert b"MAIL" not in plaintext


async def test_wrong_name_fails_the_handshake_and_no_mail_is_sent(tmp_path: Path) -> None:
    plan = RecordingPlan(CA.client_context(), "peer.test")
    async with ScriptedPeer(tls=peer_tls(tmp_path, "other.test")) as peer:
        results = await agent(tls_policy=OnePlan(plan)).deliver(
            request(["a@x.test"], f"[127.0.0.1]:{peer.port}"))
    assert [(r.status, r.dsn, r.text) for r in results] == [
        ("deferred", "4.7.5", "Cannot start TLS: handshake failure")]
    assert plan.events == ["before:True", "failure:TlsHandshakeFailed"]
    assert plan.reason == "CERTIFICATE_VERIFY_FAILED"  # OpenSSL's, for SSL_connect error
    assert not any(c.startswith("MAIL") for c in peer.commands)


async def test_policy_refuses_the_peer_after_the_handshake(tmp_path: Path) -> None:
    plan = RecordingPlan(CA.client_context(), "peer.test")
    plan.accept = False
    async with ScriptedPeer(tls=peer_tls(tmp_path)) as peer:
        results = await agent(tls_policy=OnePlan(plan)).deliver(
            request(["a@x.test"], f"[127.0.0.1]:{peer.port}"))
    assert [(r.status, r.dsn) for r in results] == [("deferred", "4.7.5")]
    assert results[0].text == "Server certificate not verified"
    assert not any(c.startswith("MAIL") for c in peer.commands)
    assert peer.commands[-1] == "QUIT"


async def test_required_tls_not_offered_defers_with_4_7_4() -> None:
    plan = RecordingPlan(CA.client_context(), "peer.test")
    async with ScriptedPeer() as peer:
        results = await agent(tls_policy=OnePlan(plan)).deliver(
            request(["a@x.test"], f"[127.0.0.1]:{peer.port}"))
    assert [(r.status, r.dsn) for r in results] == [("deferred", "4.7.4")]
    assert results[0].text == "TLS is required, but was not offered by host " \
                              "127.0.0.1[127.0.0.1]"
    assert not any(c.startswith("MAIL") for c in peer.commands)


async def test_plaintext_injected_after_220_is_discarded(tmp_path: Path) -> None:
    # CVE-2011-0411: a man in the middle appends a forged reply to the 220; the
    # client must not read it as the answer to its first command under TLS.
    plan = RecordingPlan(CA.client_context(), "peer.test")
    async with ScriptedPeer(tls=peer_tls(tmp_path),
                            inject_after_starttls=b"250-forged\r\n250 PIPELINING\r\n") as peer:
        results = await agent(tls_policy=OnePlan(plan)).deliver(
            request(["a@x.test"], f"[127.0.0.1]:{peer.port}"))
    # Either the handshake sees garbage and fails, or the forged bytes were
    # dropped and the session goes on; never is the forged reply believed.
    if results[0].status == "sent":
        assert peer.connections[0].commands[2] == "EHLO client.test"
    else:
        assert results[0].dsn == "4.7.5"
    assert not any(c.startswith("MAIL") for c in peer.connections[0].commands[:3])


def may_policy(extra: str = "") -> TlsPolicy:
    """The daemon's policy (mta/tls/client_plan.py) at smtp_tls_security_level = may."""
    return default_policy(from_text(BASE_CF + "smtp_tls_security_level = may\n" + extra))


async def test_may_falls_back_to_plaintext_on_the_same_server(tmp_path: Path) -> None:
    server = peer_tls(tmp_path)
    server.maximum_version = ssl.TLSVersion.TLSv1_2
    # A may policy that cannot agree on a protocol with the server: the
    # handshake fails, as any handshake failure would.
    async with ScriptedPeer(tls=server) as peer:
        smtp = agent(tls_policy=may_policy("smtp_tls_protocols = TLSv1.3\n"))
        req = request(["a@x.test"], f"[127.0.0.1]:{peer.port}")
        req.attempt_started = 600.0  # queued for 10 minutes: the plaintext retry applies
        results = await smtp.deliver(req)
        await smtp.close()
    assert [r.status for r in results] == ["sent"]
    assert results[0].tls == "may:none"
    assert len(peer.connections) == 2
    assert "STARTTLS" in peer.connections[0].commands
    assert "STARTTLS" not in peer.connections[1].commands
    assert peer.messages[0].recipients == ["a@x.test"]


async def test_may_uses_tls_when_offered(tmp_path: Path) -> None:
    async with ScriptedPeer(tls=peer_tls(tmp_path)) as peer:
        smtp = agent(tls_policy=may_policy())
        results = await smtp.deliver(request(["a@x.test"], f"[127.0.0.1]:{peer.port}"))
        await smtp.close()
    assert results[0].status == "sent" and results[0].tls == "may"
    assert peer.connections[0].tls
    assert peer.messages[0].recipients == ["a@x.test"]


def test_plaintext_constant_is_distinct() -> None:
    assert PLAINTEXT != STARTTLS
