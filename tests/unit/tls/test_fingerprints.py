"""Certificate and public-key fingerprints: one function for smtpd, the client and the CLI."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives import serialization

from mta.config.types import BadValue
from mta.tls import certs, keys
from mta.tls.clientcert import PeerCertificate, VerifyRecord, peer_text_name
from mta.tls.evaluation import CertSummary
from mta.tls.fingerprints import (
    cert_fingerprint,
    parse_fingerprint,
    parse_fingerprint_list,
    pubkey_fingerprint,
)
from tests.fakes.certs import TestCA


def test_fingerprints_of_a_certificate() -> None:
    cert = TestCA().issue("mx.example.com").cert
    der = cert.public_bytes(serialization.Encoding.DER)
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    text = cert_fingerprint(cert)
    assert text == ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())
    assert len(text) == 95 and text.upper() == text
    assert pubkey_fingerprint(cert) == ":".join(f"{b:02X}" for b in hashlib.sha256(spki).digest())



def test_one_fingerprint_for_every_user() -> None:
    key = keys.generate_key()
    cert = certs.self_signed(key, "laptop.example")
    request = certs.signing_request(key, "laptop.example")
    # A request and its certificate share the public-key fingerprint (what
    # mta cert show prints for a request is what relay_clientcerts will match).
    assert pubkey_fingerprint(request) == pubkey_fingerprint(cert)
    peer = PeerCertificate.from_certificate(cert, VerifyRecord())
    summary = CertSummary.of(cert)
    assert peer.fingerprints == (summary.cert_fingerprint, summary.pubkey_fingerprint) == (
        cert_fingerprint(cert), pubkey_fingerprint(cert))
    # smtpd_tls_fingerprint_digest may name another digest.
    der = cert.public_bytes(serialization.Encoding.DER)
    md5 = PeerCertificate.from_certificate(cert, VerifyRecord(), "md5")
    assert md5.cert_fingerprint == ":".join(f"{b:02X}" for b in hashlib.md5(der).digest())
    assert len(md5.pkey_fingerprint) == 47


def test_parse() -> None:
    digest = bytes(range(32))
    colon = ":".join(f"{b:02x}" for b in digest)
    assert parse_fingerprint(colon) == digest
    assert parse_fingerprint(colon.upper().replace(":", "")) == digest
    assert parse_fingerprint_list(f"{colon}|{'AB' * 32}, {'cd' * 32}") == {
        digest, bytes([0xAB]) * 32, bytes([0xCD]) * 32}


@pytest.mark.parametrize(("text", "message"), [
    ("AB:CD", "has 2 bytes; a SHA-256 fingerprint has 32"),
    ("D7:04:" * 7 + "80:11:22:33:44:55:66:77:88:99", "md5 and sha1"),
    ("XY" * 32, "not hexadecimal"),
])
def test_bad(text: str, message: str) -> None:
    with pytest.raises(BadValue, match=message):
        parse_fingerprint(text)


def test_a_peer_name_postfix_would_not_take_is_no_name() -> None:
    """Postfix's tls_text_name: a CN with a NUL inside or a control
    character, or of 256 bytes or more, gives "" (the reply of
    check_ccert_access then names <>); trailing NULs are dropped."""
    assert peer_text_name("laptop.test") == "laptop.test"
    assert peer_text_name("laptop.test\0\0") == "laptop.test"
    assert peer_text_name("lap\0top.test") == ""
    assert peer_text_name("lap\ttop.test") == ""
    assert peer_text_name("lap\x7ftop") == ""
    assert peer_text_name("x" * 255) == "x" * 255
    assert peer_text_name("x" * 256) == ""
    assert peer_text_name("é" * 128) == ""  # 256 bytes of UTF-8
    assert peer_text_name("Zoë's phone") == "Zoë's phone"
