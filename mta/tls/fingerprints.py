"""Certificate and public-key fingerprints in Postfix's ``AA:BB:...`` form, for every user.

The certificate fingerprint is the digest of the certificate's DER encoding;
the public-key fingerprint the digest of its DER SubjectPublicKeyInfo, which
survives a renewal with the same key (Postfix tls_fprint.c). Printed as
Postfix prints them: the digest in upper-case hex, bytes joined by colons.
SHA-256 is the default (Postfix's since compatibility level 3.6); smtpd's
``smtpd_tls_fingerprint_digest`` may name another hashlib digest. The same
functions serve relay_clientcerts (smtpd), ``match=`` at the client's
fingerprint level, ``mta cert`` and ``mta tls-check``, so the value one of
them prints is the value another accepts.
"""

from __future__ import annotations

import hashlib
import re

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from mta.errors import BadValue

DIGEST_SIZE = 32  # SHA-256

# What carries a public key: a certificate or a request (PKCS#10).
KeyHolder = x509.Certificate | x509.CertificateSigningRequest


def format_fingerprint(digest: bytes) -> str:
    """``AB:CD:…``: upper-case hex bytes joined by colons (95 characters for SHA-256)."""
    return ":".join(f"{byte:02X}" for byte in digest)


def spki_der(public_key: object) -> bytes:
    """A public key as DER SubjectPublicKeyInfo: what the public-key fingerprint hashes."""
    return public_key.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def cert_digest(cert: x509.Certificate, digest: str = "sha256") -> bytes:
    return hashlib.new(digest, cert.public_bytes(serialization.Encoding.DER)).digest()


def pubkey_digest(holder: KeyHolder, digest: str = "sha256") -> bytes:
    """The digest of the SubjectPublicKeyInfo of a certificate or request."""
    return hashlib.new(digest, spki_der(holder.public_key())).digest()


def cert_fingerprint(cert: x509.Certificate, digest: str = "sha256") -> str:
    return format_fingerprint(cert_digest(cert, digest))


def pubkey_fingerprint(holder: KeyHolder, digest: str = "sha256") -> str:
    return format_fingerprint(pubkey_digest(holder, digest))


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
