"""Certificate and public-key fingerprints in Postfix's ``AA:BB:...`` form.

The certificate fingerprint is the digest of the certificate's DER encoding;
the public-key fingerprint the digest of its DER SubjectPublicKeyInfo, which
survives a renewal with the same key (Postfix tls_fprint.c). Postern uses
SHA-256, Postfix's default since compatibility level 3.6.
"""

from __future__ import annotations

import hashlib
import re

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from mta.config.types import BadValue

DIGEST_SIZE = 32  # SHA-256


def format_fingerprint(digest: bytes) -> str:
    return ":".join(f"{byte:02X}" for byte in digest)


def cert_digest(cert: x509.Certificate) -> bytes:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest()


def spki_digest(cert: x509.Certificate) -> bytes:
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).digest()


def cert_fingerprint(cert: x509.Certificate) -> str:
    return format_fingerprint(cert_digest(cert))


def spki_fingerprint(cert: x509.Certificate) -> str:
    return format_fingerprint(spki_digest(cert))


_HEX = re.compile(r"[0-9A-Fa-f]{2}(?::?[0-9A-Fa-f]{2})*\Z")


def parse_fingerprint(text: str) -> bytes:
    """A SHA-256 fingerprint, AA:BB:... or plain hex, any case."""
    value = text.strip()
    if not _HEX.match(value):
        raise BadValue(f"fingerprint {value!r} is not hexadecimal (AA:BB:... or AABB...)")
    digest = bytes.fromhex(value.replace(":", ""))
    if len(digest) != DIGEST_SIZE:
        raise BadValue(f"fingerprint {value!r} has {len(digest)} bytes; a SHA-256 "
                       f"fingerprint has {DIGEST_SIZE} (md5 and sha1 fingerprints are not "
                       "accepted)")
    return digest


def parse_fingerprint_list(text: str, separators: str = r"[\s,|]+") -> frozenset[bytes]:
    """Fingerprints separated by commas, whitespace or | (as in match=a|b)."""
    return frozenset(parse_fingerprint(item) for item in re.split(separators, text.strip())
                     if item)
