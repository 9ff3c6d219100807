"""The connection cache and the TLS policy: a cached session carries the next
message only if it meets that message's TLS plan.

Postfix keys its cached endpoints by the requested TLS level
(smtp.h SMTP_KEY_MASK_SCACHE_ENDP_LABEL: SMTP_KEY_FLAG_TLS_LEVEL), so a
session opened under one policy never carries mail that needs another; and
the plaintext retry after a failed handshake is for mail queued at least
minimal_backoff_time only (PLAINTEXT_FALLBACK_OK_AFTER_STARTTLS_FAILURE).
These tests run the real agent against the matrix's peers (a recording proxy
in front of a scripted server), so "no plaintext" is checked on the wire.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mta.config import from_text
from mta.delivery import Route
from mta.smtp.agent import SmtpDelivery
from mta.smtp.tlshook import NoTlsPolicy, SessionTls
from mta.tls.client_plan import PolicyTls
from mta.tls.levels import TlsLevel
from mta.tls.summary import VERIFIED
from tests.fakes.certs import TestCA
from tests.fakes.smtp_peer import ScriptedPeer
from tests.helpers import until
from tests.unit.smtp_helpers import BASE_CF, agent, request
from tests.unit.tls.test_outbound_matrix import CA, NEXTHOP, peer_as_mx

CACHE = "smtp_connection_cache_time_limit = 30s\n"  # far longer than any test
HANDSHAKE = ("deferred", "4.7.5", "Cannot start TLS: handshake failure")
OTHER_CA = TestCA("Postern Other CA", org="Postern Tests")


def policy(tmp: Path, extra: str) -> PolicyTls:
    return PolicyTls.from_config(from_text(BASE_CF + CACHE + extra, str(tmp / "main.cf")))


def quits(connection_commands: list[str]) -> bool:
    return connection_commands[-1:] == ["QUIT"]


async def send(smtp: SmtpDelivery, qid: str, queued_for: float) -> tuple[str, str, str, str | None,
                                                                          int | None]:
    """One message for NEXTHOP that has waited queued_for seconds before this attempt."""
    req = request([f"{qid.lower()}@example.test"], NEXTHOP, qid=qid)
    req.attempt_started = queued_for  # the envelope arrived at 0.0
    [result] = await smtp.deliver(req)
    return result.status, result.dsn, result.text, result.tls, result.conn_use


async def test_reload_from_may_to_encrypt_never_sends_on_the_cached_plaintext_session(
        tmp_path: Path) -> None:
    """The audit's scenario: a may destination whose
    handshake fails got an old message in plaintext; a reload raises it to
    encrypt; the next message must not go on the cached plaintext session."""
    may = "smtp_tls_security_level = may\n"
    async with peer_as_mx("handshake_fails", tmp_path) as (peer, dns, connect):
        smtp = agent(CACHE + may, dns=dns, connector=connect, tls_policy=policy(tmp_path, may))
        first = await send(smtp, "0QUEUEID0001", queued_for=600.0)
        assert first[:2] == ("sent", "2.0.0") and first[3] == "may:none"
        assert len(smtp.cache) == 1
        # What master.reload() does on SIGHUP.
        smtp.tls_policy = policy(tmp_path, "smtp_tls_security_level = encrypt\n")
        second = await send(smtp, "0QUEUEID0002", queued_for=600.0)
        await smtp.close()
        connections = peer.peer.connections
        wire = bytes(peer.proxy.client_bytes)
    assert second[:3] == HANDSHAKE and second[3] == "!encrypt"
    assert len(peer.peer.messages) == 1  # only the first message, sent under may
    assert wire.count(b"MAIL FROM") == 1
    # The plaintext session was QUIT, and the second message tried TLS afresh.
    assert len(connections) == 3
    assert any(c.startswith("MAIL") for c in connections[1].commands)  # the first message
    assert quits(connections[1].commands)
    assert connections[2].commands[-1] == "STARTTLS"


async def test_plaintext_fallback_session_is_not_reused_for_a_fresh_message(
        tmp_path: Path) -> None:
    """The plaintext retry after a failed handshake is for mail that waited
    minimal_backoff_time; a fresh message must not inherit it from the cache
    but gets the deferral a fresh connection would give it."""
    may = "smtp_tls_security_level = may\n"
    async with peer_as_mx("handshake_fails", tmp_path) as (peer, dns, connect):
        smtp = agent(CACHE + may, dns=dns, connector=connect, tls_policy=policy(tmp_path, may))
        old = await send(smtp, "0QUEUEID0001", queued_for=600.0)
        fresh = await send(smtp, "0QUEUEID0002", queued_for=5.0)
        await smtp.close()
        connections = peer.peer.connections
    assert old[:2] == ("sent", "2.0.0") and old[3] == "may:none"
    assert fresh[:3] == HANDSHAKE and fresh[3] == "!may"
    assert len(peer.peer.messages) == 1
    assert [m.recipients for m in peer.peer.messages] == [["0queueid0001@example.test"]]
    assert quits(connections[1].commands)  # the fallback session, closed unused
    assert not any(c.startswith("RSET") for c in connections[1].commands)


async def test_plaintext_fallback_session_is_reused_for_mail_that_may_fall_back(
        tmp_path: Path) -> None:
    """The same session does carry the next message that has also waited
    minimal_backoff_time: that one would be retried in plaintext anyway."""
    may = "smtp_tls_security_level = may\n"
    async with peer_as_mx("handshake_fails", tmp_path) as (peer, dns, connect):
        smtp = agent(CACHE + may, dns=dns, connector=connect, tls_policy=policy(tmp_path, may))
        first = await send(smtp, "0QUEUEID0001", queued_for=600.0)
        second = await send(smtp, "0QUEUEID0002", queued_for=900.0)
        await smtp.close()
    assert first == ("sent", "2.0.0", first[2], "may:none", 1)
    assert second == ("sent", "2.0.0", second[2], "may:none", 2)
    assert len(peer.peer.connections) == 2  # the failed handshake and the plaintext retry


async def test_cached_tls_session_is_reused_while_the_policy_is_unchanged(
        tmp_path: Path) -> None:
    """The fast path: one verified TLS session carries message after message."""
    CA.write(tmp_path / "ca.pem")
    verify = "smtp_tls_security_level = verify\nsmtp_tls_CAfile = ca.pem\n"
    async with peer_as_mx("valid", tmp_path) as (peer, dns, connect):
        smtp = agent(CACHE + verify, dns=dns, connector=connect,
                     tls_policy=policy(tmp_path, verify))
        results = [await send(smtp, f"0QUEUEID000{i}", queued_for=0.0) for i in range(3)]
        await smtp.close()
        connections = peer.peer.connections
        wire = bytes(peer.proxy.client_bytes)
    assert [(r[0], r[3], r[4]) for r in results] == [("sent", "verify", 1),
                                                     ("sent", "verify", 2),
                                                     ("sent", "verify", 3)]
    assert len(connections) == 1 and connections[0].tls
    assert len(peer.peer.messages) == 3
    assert b"MAIL FROM" not in wire  # all three inside the one TLS session
    assert [c.split()[0] for c in connections[0].commands].count("RSET") == 2


async def test_replacing_the_tls_policy_empties_the_cache() -> None:
    """On reload the idle sessions opened under the old policy are closed at
    once (QUIT), not left until the idle limit."""
    async with ScriptedPeer() as peer:
        smtp = agent(CACHE)
        nexthop = f"[127.0.0.1]:{peer.port}"
        [result] = await smtp.deliver(request(["a@x.test"], nexthop))
        assert result.status == "sent" and len(smtp.cache) == 1
        smtp.tls_policy = PolicyTls.from_config(from_text(BASE_CF + CACHE))
        assert len(smtp.cache) == 0
        await until(lambda: quits(peer.connections[0].commands), timeout=2.0)
        [result] = await smtp.deliver(request(["b@x.test"], nexthop, qid="0QUEUEID0002"))
        await smtp.close()
    assert result.status == "sent" and result.conn_use == 1
    assert len(peer.connections) == 2


async def test_a_session_released_after_the_reload_is_not_reused(tmp_path: Path) -> None:
    """A delivery still running when the policy is replaced puts its session
    back into the (emptied) cache afterwards; the next message's plan, made
    under the new policy, refuses it even at the same level: here the reload
    changed smtp_tls_CAfile, and the server's certificate is not trusted now."""
    CA.write(tmp_path / "ca.pem")
    OTHER_CA.write(tmp_path / "other-ca.pem")
    verify = "smtp_tls_security_level = verify\nsmtp_tls_CAfile = ca.pem\n"
    async with peer_as_mx("valid", tmp_path) as (peer, dns, connect):
        smtp = agent(CACHE + verify, dns=dns, connector=connect,
                     tls_policy=policy(tmp_path, verify))
        first = await send(smtp, "0QUEUEID0001", queued_for=0.0)
        assert first[:2] == ("sent", "2.0.0") and first[3] == "verify"
        key = ("smtp", NEXTHOP)
        in_flight = smtp.cache.take(key)  # as if still in its transaction ...
        assert in_flight is not None
        smtp.tls_policy = policy(tmp_path, "smtp_tls_security_level = verify\n"
                                           "smtp_tls_CAfile = other-ca.pem\n")
        assert smtp.cache.put(key, in_flight.session, in_flight.tls)  # ... and done now
        second = await send(smtp, "0QUEUEID0002", queued_for=0.0)
        await smtp.close()
        connections = peer.peer.connections
    assert second[:3] == ("deferred", "4.7.5", "Server certificate not trusted")
    assert second[3] == "!verify"
    assert len(peer.peer.messages) == 1
    assert len(connections) == 2 and quits(connections[0].commands)
    assert not any(c.startswith("RSET") for c in connections[0].commands)


# -- the decision itself: PolicyPlan.admits over what a cached session is ----------------------
TABLE = """\
none.test       none
may.test        may
strict.test     may protocols=>=TLSv1.3
encrypt.test    encrypt
encrypt2.test   encrypt
verify.test     verify
secure.test     secure
"""


def table_policy(tmp: Path) -> PolicyTls:
    (tmp / "tls_policy").write_text(TABLE)
    return PolicyTls.from_config(from_text(
        BASE_CF + "smtp_tls_policy_maps = texthash:tls_policy\n", str(tmp / "main.cf")))


def opened(tls: PolicyTls, nexthop: str, encrypted: bool, *, verified: bool = False,
           fallback: bool = False) -> SessionTls:
    """What a session to nexthop opened under tls's entry for it looks like in the cache."""
    plan = tls.plan(Route("smtp", nexthop), MX_NAME, queued_for=0.0)
    plan.trust = VERIFIED if verified else None
    return plan.opened(encrypted, fallback)


MX_NAME = "mx.example.test"
PLAIN, PLAIN_FALLBACK, TLS, TLS_VERIFIED = "plain", "plain_fallback", "tls", "tls_verified"


@pytest.mark.parametrize(("opened_at", "session", "message_at", "queued_for", "admitted"), [
    # Plaintext carries mail only where a new connection would go plaintext too.
    ("may.test", PLAIN, "may.test", 0.0, "may:none"),  # STARTTLS not offered (or refused)
    ("may.test", PLAIN_FALLBACK, "may.test", 5.0, None),  # fresh: deferred once, not plaintext
    ("may.test", PLAIN_FALLBACK, "may.test", 600.0, "may:none"),  # waited minimal_backoff_time
    ("strict.test", PLAIN_FALLBACK, "may.test", 600.0, None),  # failed under other settings
    ("none.test", PLAIN, "may.test", 0.0, None),  # never tried STARTTLS
    ("none.test", PLAIN, "none.test", 0.0, "none"),
    ("may.test", PLAIN, "none.test", 0.0, "none"),
    ("may.test", PLAIN, "encrypt.test", 600.0, None),  # never a byte in plaintext
    ("may.test", PLAIN_FALLBACK, "verify.test", 600.0, None),
    # TLS: the same entry, or a level that asks no more than the session is.
    ("verify.test", TLS_VERIFIED, "verify.test", 0.0, "verify"),
    ("encrypt.test", TLS, "encrypt2.test", 0.0, "encrypt"),  # same settings, other entry
    ("encrypt.test", TLS, "may.test", 0.0, "may"),
    ("verify.test", TLS_VERIFIED, "may.test", 0.0, "may"),
    ("may.test", TLS, "encrypt.test", 0.0, None),  # may's protocols and ciphers, not encrypt's
    ("encrypt.test", TLS, "verify.test", 0.0, None),  # never checked the certificate
    ("verify.test", TLS_VERIFIED, "secure.test", 0.0, None),  # another name check
    # A verify entry negotiates without anonymous suites at OpenSSL security
    # level 1, encrypt at 0: not the same settings, so not reused (a new
    # connection costs nothing in safety).
    ("verify.test", TLS_VERIFIED, "encrypt.test", 0.0, None),
    ("may.test", TLS, "none.test", 0.0, None),  # none means no TLS
])
def test_admits(tmp_path: Path, opened_at: str, session: str, message_at: str,
                queued_for: float, admitted: str | None) -> None:
    tls = table_policy(tmp_path)
    cached = opened(tls, opened_at, session.startswith("tls"), verified=session == TLS_VERIFIED,
                    fallback=session == PLAIN_FALLBACK)
    plan = tls.plan(Route("smtp", message_at), MX_NAME, queued_for=queued_for)
    assert plan.admits(cached) is (admitted is not None)
    assert plan.log_field() == admitted  # the tls= field of the reused delivery


def test_admits_nothing_from_a_replaced_policy(tmp_path: Path) -> None:
    """A session that finished a transaction after a reload goes back into the
    cache with the old policy's judgement; the new policy's plans refuse it
    even where the entry reads the same (the CA file may have changed)."""
    old, new = table_policy(tmp_path), table_policy(tmp_path)
    for nexthop in ("may.test", "verify.test"):
        cached = opened(old, nexthop, True, verified=True)
        assert old.plan(Route("smtp", nexthop), MX_NAME).admits(cached)
        assert not new.plan(Route("smtp", nexthop), MX_NAME).admits(cached)


def test_no_tls_plan_admits_plaintext_only() -> None:
    plan = NoTlsPolicy().plan(Route("smtp", "x.test"), MX_NAME)
    assert plan.admits(plan.opened(False, fallback=False))
    assert not plan.admits(SessionTls(TlsLevel.VERIFY, True, True, False))
