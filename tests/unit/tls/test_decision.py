"""The policy decisions as tables: each level against each kind of server."""

from __future__ import annotations

import pytest

from mta.tls.chain import TrustStore
from mta.tls.decision import (
    Next,
    Outcome,
    after_ehlo,
    after_handshake,
    after_handshake_failure,
    after_starttls_refused,
    plaintext_fallback_ok,
    tls_field,
    trust_label,
)
from mta.tls.evaluation import ANONYMOUS, Evaluation, evaluate
from mta.tls.fingerprints import pubkey_digest
from mta.tls.levels import TlsLevel
from mta.tls.names import MatchTarget
from tests.fakes.certs import TestCA, self_signed

L = TlsLevel
NAMADDR = "mx.example.com[192.0.2.1]"
NAMADDRPORT = NAMADDR + ":25"
NOT_OFFERED = f"TLS is required, but was not offered by host {NAMADDR}"


@pytest.mark.parametrize(("level", "offered", "next_", "text"), [
    (L.NONE, True, Next.PLAINTEXT, None),  # never STARTTLS
    (L.NONE, False, Next.PLAINTEXT, None),
    (L.MAY, True, Next.STARTTLS, None),
    (L.MAY, False, Next.PLAINTEXT, None),
    (L.ENCRYPT, True, Next.STARTTLS, None),
    (L.ENCRYPT, False, Next.FAIL, NOT_OFFERED),
    (L.FINGERPRINT, False, Next.FAIL, NOT_OFFERED),
    (L.VERIFY, False, Next.FAIL, NOT_OFFERED),
    (L.SECURE, False, Next.FAIL, NOT_OFFERED),
    (L.SECURE, True, Next.STARTTLS, None),
])
def test_after_ehlo(level: TlsLevel, offered: bool, next_: Next, text: str | None) -> None:
    decision = after_ehlo(level, offered, NAMADDR)
    assert decision.next is next_
    if text is None:
        assert decision.failure is None
    else:
        assert decision.failure is not None
        assert (decision.failure.dsn, decision.failure.text,
                decision.failure.reason) == ("4.7.4", text, "not_offered")


def test_starttls_refused() -> None:
    assert after_starttls_refused(L.MAY, 454, "4.7.0", "TLS not available", NAMADDR).next \
        is Next.PLAINTEXT
    decision = after_starttls_refused(L.ENCRYPT, 454, "4.7.0",
                                      "454 4.7.0 TLS not available due to local problem",
                                      NAMADDR)
    assert decision.next is Next.FAIL and decision.failure is not None
    assert decision.failure.text == (
        f"TLS is required, but host {NAMADDR} refused to start TLS: "
        "454 4.7.0 TLS not available due to local problem")
    assert (decision.failure.dsn, decision.failure.permanent) == ("4.7.0", False)
    hard = after_starttls_refused(L.VERIFY, 502, None, "502 Error: command not implemented",
                                  NAMADDR).failure
    assert hard is not None and (hard.dsn, hard.permanent) == ("5.7.0", True)


@pytest.mark.parametrize(("level", "queued_for", "sasl", "ok"), [
    (L.MAY, 300, False, True),  # waited minimal_backoff_time: plaintext retry
    (L.MAY, 299, False, False),  # a fresh message is deferred once first
    (L.MAY, 0, False, False),
    (L.MAY, 3600, True, False),  # SASL credentials never cross in plaintext
    (L.ENCRYPT, 3600, False, False),  # mandatory: never
    (L.VERIFY, 3600, False, False),
    (L.NONE, 3600, False, False),
])
def test_plaintext_fallback(level: TlsLevel, queued_for: float, sasl: bool, ok: bool) -> None:
    assert plaintext_fallback_ok(level, queued_for, 300, sasl) is ok
    decision = after_handshake_failure(level, queued_for, 300, sasl)
    if ok:
        assert decision.next is Next.RETRY_PLAINTEXT
    else:
        assert decision.failure is not None
        assert (decision.failure.dsn, decision.failure.text) == (
            "4.7.5", "Cannot start TLS: handshake failure")


# --- after the handshake: levels x peers ---------------------------------------------
CA = TestCA("Postern Test CA")
OTHER_CA = TestCA("Unknown CA")
STORE = TrustStore(certificates=[CA.cert])
HOST, NEXTHOP = "mx1.mail.example.net", "example.com"  # an MX outside the domain
PEERS = {
    "anonymous": [],
    "valid": CA.issue(HOST).chain_with_leaf,
    "valid_nexthop": CA.issue("mail.example.com").chain_with_leaf,  # a subdomain of nexthop
    "wrong_name": CA.issue("mx.elsewhere.test").chain_with_leaf,
    "expired": CA.issue(HOST, expired=True).chain_with_leaf,
    "self_signed": self_signed(HOST).chain_with_leaf,
    "unknown_ca": OTHER_CA.issue(HOST).chain_with_leaf,
}
PINNED = frozenset({pubkey_digest(PEERS["self_signed"][0])})
MATCH = {L.VERIFY: ("hostname",), L.SECURE: ("nexthop", "dot-nexthop")}


def evaluation(level: TlsLevel, peer: str) -> Evaluation:
    chain = PEERS[peer]
    if not chain:
        return ANONYMOUS
    target = MatchTarget(MATCH[level], HOST, NEXTHOP) if level in MATCH else None
    return evaluate(chain, STORE, target=target,
                    fingerprints=PINNED if level == L.FINGERPRINT else frozenset())


NV = ("4.7.5", "Server certificate not verified")
NT = ("4.7.5", "Server certificate not trusted")
ACCEPT = None
TABLE = {
    #  peer:          may, encrypt, fingerprint, verify, secure
    "anonymous":     (ACCEPT, ACCEPT, NV, NV, NV),
    "valid":         (ACCEPT, ACCEPT, NV, ACCEPT, NV),
    "valid_nexthop": (ACCEPT, ACCEPT, NV, NV, ACCEPT),
    "wrong_name":    (ACCEPT, ACCEPT, NV, NV, NV),
    "expired":       (ACCEPT, ACCEPT, NV, NT, NT),
    "self_signed":   (ACCEPT, ACCEPT, ACCEPT, NT, NT),
    "unknown_ca":    (ACCEPT, ACCEPT, NV, NT, NT),
}
LABELS = {
    "anonymous":     ("Anonymous",) * 5,
    "valid":         ("Trusted", "Trusted", "Trusted", "Verified", "Trusted"),
    "valid_nexthop": ("Trusted", "Trusted", "Trusted", "Trusted", "Verified"),
    "wrong_name":    ("Trusted",) * 5,
    "expired":       ("Untrusted",) * 5,
    "self_signed":   ("Untrusted", "Untrusted", "Verified", "Untrusted", "Untrusted"),
    "unknown_ca":    ("Untrusted",) * 5,
}
LEVELS = (L.MAY, L.ENCRYPT, L.FINGERPRINT, L.VERIFY, L.SECURE)


@pytest.mark.parametrize("peer", list(TABLE))
@pytest.mark.parametrize("column", range(5))
def test_after_handshake(peer: str, column: int) -> None:
    level = LEVELS[column]
    ev = evaluation(level, peer)
    decision = after_handshake(level, ev, NAMADDRPORT)
    expected = TABLE[peer][column]
    assert decision.trust == LABELS[peer][column] == trust_label(level, ev)
    if expected is ACCEPT:
        assert decision.next is Next.PROCEED and decision.failure is None
    else:
        assert decision.next is Next.FAIL and decision.failure is not None
        assert (decision.failure.dsn, decision.failure.text) == expected
        assert decision.log, "a refusal always says why in the maillog"


@pytest.mark.parametrize(("level", "peer", "log"), [
    (L.VERIFY, "expired", f"server certificate verification failed for {NAMADDRPORT}: "
                          "certificate has expired"),
    (L.SECURE, "self_signed", f"certificate verification failed for {NAMADDRPORT}: "
                              "self-signed certificate"),
    (L.VERIFY, "unknown_ca", f"certificate verification failed for {NAMADDRPORT}: "
                             "untrusted issuer /CN=Unknown CA"),
    (L.VERIFY, "wrong_name", f"server certificate verification failed for {NAMADDRPORT}: "
                             "num=62:hostname mismatch"),
    (L.FINGERPRINT, "valid", f"certificate verification failed for {NAMADDRPORT}: "
                             "not trusted by local or TLSA policy"),
])
def test_refusal_log_lines(level: TlsLevel, peer: str, log: str) -> None:
    assert after_handshake(level, evaluation(level, peer), NAMADDRPORT).log == log


def test_pubkey_and_cert_fingerprints() -> None:
    leaf = PEERS["valid"][0]
    from mta.tls.fingerprints import cert_digest
    by_cert = evaluate([leaf], STORE, fingerprints=frozenset({cert_digest(leaf)}))
    by_key = evaluate([leaf], STORE, fingerprints=frozenset({pubkey_digest(leaf)}))
    assert (by_cert.fingerprint_match, by_key.fingerprint_match) == ("cert", "pubkey")
    # Fingerprints pin the server's own certificate, not a CA in its chain.
    by_ca = evaluate(PEERS["valid"], STORE, fingerprints=frozenset({pubkey_digest(CA.cert)}))
    assert by_ca.fingerprint_match is None


@pytest.mark.parametrize(("level", "outcome", "field"), [
    (L.MAY, Outcome.TLS, "may"),
    (L.MAY, Outcome.PLAINTEXT, "may:none"),
    (L.NONE, Outcome.PLAINTEXT, "none"),
    (L.ENCRYPT, Outcome.TLS, "encrypt"),
    (L.ENCRYPT, Outcome.VIOLATION, "!encrypt"),
    (L.VERIFY, Outcome.VIOLATION, "!verify"),
    (L.SECURE, Outcome.TLS, "secure"),
])
def test_tls_field(level: TlsLevel, outcome: Outcome, field: str) -> None:
    assert tls_field(level, outcome) == field
