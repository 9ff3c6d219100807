"""Exporting a key and its certificate as PKCS#12 (RFC 7292), the file a mail
client imports to use a client certificate."""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import PrivateFormat, pkcs12

from mta.tls.keys import PrivateKey

# PBKDF2 iterations for the modern profile (OpenSSL 3's default is 2048; more
# costs a phone nothing noticeable once and slows guessing the password).
KDF_ROUNDS = 200_000


def export(key: PrivateKey, cert: x509.Certificate, password: bytes, *,
           ca_certs: list[x509.Certificate] | None = None, friendly_name: str | None = None,
           legacy: bool = False) -> bytes:
    """The PKCS#12 bytes, encrypted with password.

    The default is AES-256-CBC with PBKDF2-SHA256 and a SHA-256 MAC (OpenSSL 3's
    own default). ``legacy`` selects 3DES with a SHA-1 MAC, which older mail
    clients and key stores (iOS before 16, Windows before Server 2019) need to
    import the file at all.
    """
    if not password:
        raise ValueError("a PKCS#12 file for a mail client needs a password")
    builder = PrivateFormat.PKCS12.encryption_builder()
    if legacy:
        builder = (builder.kdf_rounds(50_000)
                   .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
                   .hmac_hash(hashes.SHA1()))
    else:
        builder = (builder.kdf_rounds(KDF_ROUNDS)
                   .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
                   .hmac_hash(hashes.SHA256()))
    name = (friendly_name or "").encode() or None
    return pkcs12.serialize_key_and_certificates(name, key, cert, ca_certs,
                                                 builder.build(password))
