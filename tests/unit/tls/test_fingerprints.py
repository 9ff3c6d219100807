"""SHA-256 certificate and public-key fingerprints."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives import serialization

from mta.config.types import BadValue
from mta.tls.fingerprints import (
    cert_fingerprint,
    parse_fingerprint,
    parse_fingerprint_list,
    spki_fingerprint,
)
from tests.pki import TestCA


def test_fingerprints_of_a_certificate() -> None:
    cert = TestCA().issue("mx.example.com").cert
    der = cert.public_bytes(serialization.Encoding.DER)
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    text = cert_fingerprint(cert)
    assert text == ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())
    assert len(text) == 95 and text.upper() == text
    assert spki_fingerprint(cert) == ":".join(f"{b:02X}" for b in hashlib.sha256(spki).digest())


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
