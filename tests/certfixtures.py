"""Certificates with fixed keys, serials and dates, byte-for-byte the same on
every run, so that golden output (fingerprints included) can be compared.

Keys come from fixed secrets, and signatures are deterministic: Ed25519 by
design, ECDSA by RFC 6979 (cryptography's ecdsa_deterministic).
"""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

UTC = datetime.UTC


def at(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text).replace(tzinfo=UTC)


def ec_key(secret: int) -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(secret, ec.SECP256R1())


def ed_key(seed: int) -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _sign(builder: x509.CertificateBuilder, key: object) -> x509.Certificate:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return builder.sign(key, hashes.SHA256(), ecdsa_deterministic=True)
    return builder.sign(key, None)  # type: ignore[arg-type]


def certificate(key: object, cn: str, *, issuer_key: object | None = None,
                issuer: str | None = None, serial: int, not_before: str, not_after: str,
                sans: list[x509.GeneralName] | None = None, ca: bool = False,
                usages: list[x509.ObjectIdentifier] | None = None) -> x509.Certificate:
    """A certificate for key's public half; self-signed unless issuer_key is given."""
    builder = (x509.CertificateBuilder()
               .subject_name(_name(cn)).issuer_name(_name(issuer or cn))
               .public_key(key.public_key())  # type: ignore[attr-defined]
               .serial_number(serial)
               .not_valid_before(at(not_before)).not_valid_after(at(not_after))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None),
                              critical=True))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    return _sign(builder, issuer_key or key)


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: object, password: bytes | None = None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password) if password
        else serialization.NoEncryption())
    return key.private_bytes(serialization.Encoding.PEM,  # type: ignore[attr-defined]
                             serialization.PrivateFormat.PKCS8, encryption)


def write_fixed_set(directory: Path) -> dict[str, Path]:
    """A server certificate (self-signed, ECDSA), a private CA (Ed25519), a
    client certificate and a server chain it signed, a request, and an
    expired certificate with its key in the same file."""
    directory.mkdir(parents=True, exist_ok=True)
    server_key = ec_key(0x5EC0DE)
    server = certificate(server_key, "mx.example.test", serial=0x1001,
                         not_before="2026-01-01T00:00:00", not_after="2027-01-01T00:00:00",
                         sans=[x509.DNSName("mx.example.test"), x509.DNSName("mail.example.test")],
                         usages=[ExtendedKeyUsageOID.SERVER_AUTH])
    ca_key = ed_key(7)
    ca_cert = certificate(ca_key, "Example Mail CA", serial=0x1, ca=True,
                          not_before="2026-01-01T00:00:00", not_after="2036-01-01T00:00:00")
    client_key = ec_key(0xA11CE)
    client = certificate(client_key, "alice@example.test", issuer_key=ca_key,
                         issuer="Example Mail CA", serial=0x2002,
                         not_before="2026-02-01T00:00:00", not_after="2026-08-01T00:00:00",
                         sans=[x509.RFC822Name("alice@example.test")],
                         usages=[ExtendedKeyUsageOID.CLIENT_AUTH])
    submit_key = ec_key(0x5AB)
    submit = certificate(submit_key, "submit.example.test", issuer_key=ca_key,
                         issuer="Example Mail CA", serial=0x4004,
                         not_before="2026-03-01T00:00:00", not_after="2027-06-01T00:00:00",
                         sans=[x509.DNSName("submit.example.test")],
                         usages=[ExtendedKeyUsageOID.SERVER_AUTH])
    request = (x509.CertificateSigningRequestBuilder()
               .subject_name(_name("next.example.test"))
               .add_extension(x509.SubjectAlternativeName(
                   [x509.DNSName("next.example.test"), x509.IPAddress(
                       ipaddress.ip_address("192.0.2.25"))]), critical=False)
               .sign(submit_key, hashes.SHA256(), ecdsa_deterministic=True))
    old_key = ec_key(0x01D)
    old = certificate(old_key, "old.example.test", serial=0x3003,
                      not_before="2024-01-01T00:00:00", not_after="2025-01-01T00:00:00",
                      sans=[x509.DNSName("old.example.test")])
    files = {
        "server.pem": pem(server), "server.key": key_pem(server_key),
        "ca.pem": pem(ca_cert), "ca.key": key_pem(ca_key),
        "alice.pem": pem(client), "alice.key": key_pem(client_key),
        "old.pem": key_pem(old_key) + pem(old),
        "submit-chain.pem": pem(submit) + pem(ca_cert), "submit.key": key_pem(submit_key),
        "next.csr": request.public_bytes(serialization.Encoding.PEM),
    }
    paths = {}
    for name, data in files.items():
        path = directory / name
        path.write_bytes(data)
        if name.endswith(".key") or name == "old.pem":
            path.chmod(0o600)
        paths[name] = path
    return paths
