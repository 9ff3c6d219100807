"""Certificates for TLS tests, made on the fly: a test CA, intermediates, server and
client certificates with chosen names, validity and key usage, self-signed ones."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

Key = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
NOW = datetime.datetime.now(datetime.UTC)
DAY = datetime.timedelta(days=1)


def _key(kind: str) -> Key:
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def _name(cn: str | None, org: str | None = None) -> x509.Name:
    attributes = []
    if org:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    if cn:
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attributes)


@dataclass
class Issued:
    """A certificate, its key and the chain above it (intermediates, not the root)."""

    cert: x509.Certificate
    key: Key
    chain: tuple[x509.Certificate, ...] = ()

    def cert_pem(self, with_chain: bool = True) -> bytes:
        certs = [self.cert, *(self.chain if with_chain else ())]
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())

    def write(self, directory: Path, name: str, with_chain: bool = True) -> tuple[Path, Path]:
        directory.mkdir(parents=True, exist_ok=True)
        cert, key = directory / f"{name}.pem", directory / f"{name}.key"
        cert.write_bytes(self.cert_pem(with_chain))
        key.write_bytes(self.key_pem())
        key.chmod(0o600)
        return cert, key

    @property
    def chain_with_leaf(self) -> list[x509.Certificate]:
        return [self.cert, *self.chain]


class TestCA:
    """A CA that issues certificates for tests (root, or an intermediate of one)."""

    __test__ = False  # not a pytest class

    def __init__(self, name: str = "Postern Test CA", parent: TestCA | None = None,
                 org: str | None = "Postern Tests", kind: str = "ec",
                 expired: bool = False) -> None:
        self.key = _key(kind)
        self.parent = parent
        subject = _name(name, org)
        not_after = NOW - DAY if expired else NOW + 3650 * DAY
        builder = (x509.CertificateBuilder().subject_name(subject)
                   .issuer_name(parent.cert.subject if parent else subject)
                   .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(NOW - 30 * DAY).not_valid_after(not_after)
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
                   .add_extension(x509.KeyUsage(False, False, False, False, False, True, True,
                                                False, False), True)
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(
                       self.key.public_key()), False))
        if parent:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(parent.key.public_key()),
                False)
        self.cert = builder.sign(parent.key if parent else self.key, hashes.SHA256())

    @property
    def chain(self) -> tuple[x509.Certificate, ...]:
        """This CA and its parents below the root (what a server sends after its leaf)."""
        if self.parent is None:
            return ()
        return (self.cert, *self.parent.chain)

    def intermediate(self, name: str = "Postern Test Intermediate") -> TestCA:
        return TestCA(name, parent=self)

    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def write(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.pem())
        return path

    def issue(self, *names: str, cn: str | None = "", kind: str = "ec",
              expired: bool = False, not_yet_valid: bool = False,
              usage: tuple[str, ...] = ("server", "client"), san: bool = True) -> Issued:
        """A leaf for names (DNS SANs); cn defaults to the first name, None for no CN."""
        key = _key(kind)
        common = (names[0] if names else None) if cn == "" else cn
        if expired:
            not_before, not_after = NOW - 60 * DAY, NOW - DAY
        elif not_yet_valid:
            not_before, not_after = NOW + DAY, NOW + 60 * DAY
        else:
            not_before, not_after = NOW - DAY, NOW + 90 * DAY
        ekus = {"server": ExtendedKeyUsageOID.SERVER_AUTH,
                "client": ExtendedKeyUsageOID.CLIENT_AUTH}
        builder = (x509.CertificateBuilder().subject_name(_name(common))
                   .issuer_name(self.cert.subject).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(not_before).not_valid_after(not_after)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
                   .add_extension(x509.ExtendedKeyUsage([ekus[u] for u in usage]), False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                       self.key.public_key()), False))
        if san and names:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
        return Issued(builder.sign(self.key, hashes.SHA256()), key, self.chain)


def self_signed(*names: str, expired: bool = False, kind: str = "ec") -> Issued:
    """A self-signed server certificate (its own issuer, not a CA)."""
    key = _key(kind)
    subject = _name(names[0] if names else "self-signed.test")
    not_after = NOW - DAY if expired else NOW + 90 * DAY
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(NOW - 60 * DAY).not_valid_after(not_after)
               .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]),
                              False))
    return Issued(builder.sign(key, hashes.SHA256()), key)
