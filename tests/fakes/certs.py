"""Certificates for tests, all made here: a private CA (and intermediates), server
and client certificates with chosen names, keys and validity, self-signed ones,
their PEM files (keys 0600), the SSL contexts that present or trust them, and a
fixed set whose bytes never change, for golden output.

What Postern itself makes is made here by the same code (mta/tls/certs.py,
ca.py, keys.py, pemfiles.py): keys and their files, self-signed certificates,
client certificates. Built here are only the certificates Postern never
issues: CAs that may sign intermediates, server certificates signed by a CA,
certificates that are expired, not yet valid, or without a CN or SAN, and the
fixed-key, fixed-date set.

Verification stays on in every test: clients trust the test CA, never "anything".
"""

from __future__ import annotations

import datetime
import functools
import ssl
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import overload

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID

from mta.tls import ca as postern_ca
from mta.tls import certs, fingerprints, keys, pemfiles

DAY = datetime.timedelta(days=1)
SERVER_AUTH = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH])
CA_KEY_USAGE = x509.KeyUsage(
    digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
    key_encipherment=False, data_encipherment=False, key_agreement=False,
    encipher_only=False, decipher_only=False)


def _validity(expired: bool = False, not_yet_valid: bool = False, days: int = 90
              ) -> tuple[datetime.datetime, datetime.datetime]:
    """(now, not_after) as mta/tls's builders take them: valid for days from
    now, expired yesterday, or valid from tomorrow."""
    now = datetime.datetime.now(datetime.UTC)
    if expired:
        return now - 60 * DAY, now - DAY
    if not_yet_valid:
        return now + DAY, now + 60 * DAY
    return now, now + days * DAY


@dataclass
class Issued:
    """A certificate, its key, the intermediates above it (not the root), and the
    files it was written to, once written."""

    cert: x509.Certificate
    key: keys.PrivateKey
    chain: tuple[x509.Certificate, ...] = ()
    files: tuple[Path, Path] | None = None

    @property
    def cert_file(self) -> Path:
        return self._written()[0]

    @property
    def key_file(self) -> Path:
        return self._written()[1]

    def _written(self) -> tuple[Path, Path]:
        if self.files is None:
            raise AssertionError("the certificate has no files: write() it first")
        return self.files

    @property
    def chain_with_leaf(self) -> list[x509.Certificate]:
        """What a server sends: the certificate, then its intermediates."""
        return [self.cert, *self.chain]

    @property
    def cert_fingerprint(self) -> str:
        return fingerprints.cert_fingerprint(self.cert)

    @property
    def pkey_fingerprint(self) -> str:
        return fingerprints.pubkey_fingerprint(self.cert)

    def cert_pem(self, with_chain: bool = True) -> bytes:
        return b"".join(map(certs.cert_pem, self.chain_with_leaf if with_chain else [self.cert]))

    def write(self, directory: Path, stem: str, *, with_chain: bool = True,
              password: bytes | None = None) -> Issued:
        """STEM.pem (the certificate, then its chain) and STEM.key (mode 0600,
        encrypted with password if given), as ``mta cert`` writes them."""
        cert_file, key_file = directory / f"{stem}.pem", directory / f"{stem}.key"
        pemfiles.write_public(cert_file, self.cert_pem(with_chain))
        pemfiles.write_private(key_file, keys.key_pem(self.key, password))
        self.files = (cert_file, key_file)
        return self

    def server_context(self) -> ssl.SSLContext:
        """A Python ssl server context presenting this certificate (from its files)."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


class TestCA:
    """A private CA: a root, or an intermediate of another TestCA. Given a
    directory, it writes its certificate there as ca.pem and each certificate
    it issues as STEM.pem and STEM.key."""

    __test__ = False  # not a pytest class
    cert: x509.Certificate

    def __init__(self, name: str = "Postern Test CA", *, directory: Path | None = None,
                 org: str | None = None, kind: str = "ecdsa", expired: bool = False,
                 parent: TestCA | None = None) -> None:
        self.name = name
        self.directory = directory
        self.parent = parent
        self.key = keys.generate_key(kind)
        signer = parent.key if parent else self.key
        subject = certs.subject_name(name, org)
        now, not_after = _validity(expired)
        # Not ca.ca_certificate: its pathLenConstraint 0 forbids the
        # intermediates that chain tests need, and it is never expired.
        builder = (certs.certificate_builder(subject, parent.cert.subject if parent else subject,
                                             self.key.public_key(), not_after, now=now,
                                             issuer_key=parent.key if parent else None)
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None),
                                  critical=True)
                   .add_extension(CA_KEY_USAGE, critical=True))
        self.cert = builder.sign(signer, certs.signature_hash(signer))
        self.cert_file = self.write(directory / "ca.pem") if directory else None

    @property
    def chain(self) -> tuple[x509.Certificate, ...]:
        """This CA and its parents below the root (what a server sends after its leaf)."""
        return () if self.parent is None else (self.cert, *self.parent.chain)

    def intermediate(self, name: str = "Postern Test Intermediate", *,
                     org: str | None = None, directory: Path | None = None) -> TestCA:
        """A CA that this one signed; its leaves carry it as their chain."""
        return TestCA(name, org=org, parent=self, directory=directory)

    def pem(self) -> bytes:
        return certs.cert_pem(self.cert)

    def write(self, path: Path) -> Path:
        pemfiles.write_public(path, self.pem())
        return path

    def issue(self, *names: str, cn: str | None = "", kind: str = "ecdsa",
              expired: bool = False, not_yet_valid: bool = False, san: bool = True,
              stem: str | None = None) -> Issued:
        """A server certificate for names (DNS names or IP addresses, the SANs).

        The CN is the first name unless cn says otherwise (None: no CN at all);
        san=False leaves the names out of the SANs, so that only the CN names it.
        """
        key = keys.generate_key(kind)
        common = (names[0] if names else None) if cn == "" else cn
        subject = certs.subject_name(common) if common else x509.Name([])
        now, not_after = _validity(expired, not_yet_valid)
        builder = (certs.certificate_builder(subject, self.cert.subject, key.public_key(),
                                             not_after, now=now, issuer_key=self.key)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None),
                                  critical=True)
                   .add_extension(certs.end_entity_key_usage(key.public_key()), critical=True)
                   .add_extension(SERVER_AUTH, critical=False))
        if san and names:
            builder = builder.add_extension(certs.subject_alternative_names(names),
                                            critical=False)
        cert = builder.sign(self.key, certs.signature_hash(self.key))
        return self._issued(cert, key, stem or common or "leaf")

    def client(self, name: str, *, kind: str = "ecdsa", expired: bool = False,
               stem: str | None = None) -> Issued:
        """A client certificate for name, as ``mta cert issue-client`` makes it
        (mta/tls/ca.py): name as the CN, clientAuth only."""
        key = keys.generate_key(kind)
        now, not_after = _validity(expired)
        cert = postern_ca.client_certificate(key.public_key(), name, self.cert, self.key,
                                             days=(not_after - now).days, now=now)
        return self._issued(cert, key, stem or name)

    def _issued(self, cert: x509.Certificate, key: keys.PrivateKey, stem: str) -> Issued:
        issued = Issued(cert, key, self.chain)
        return issued.write(self.directory, stem) if self.directory else issued

    def client_context(self, client: Issued | None = None, *,
                       maximum: ssl.TLSVersion | None = None) -> ssl.SSLContext:
        """A client context that trusts this CA only (verification on), presenting
        client's certificate if given; maximum makes an old client for real."""
        context = ssl.create_default_context(cadata=self.pem().decode())
        if client is not None:
            context.load_cert_chain(client.cert_file, client.key_file)
        if maximum is not None:
            # Old versions allowed, and OpenSSL's own floor off.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
                context.maximum_version = maximum
            context.set_ciphers("DEFAULT:@SECLEVEL=0")
        return context


def self_signed(*names: str, kind: str = "ecdsa", days: int = 90, expired: bool = False,
                directory: Path | None = None, stem: str | None = None) -> Issued:
    """A certificate that chains to nothing, as ``mta cert self-signed`` makes it
    (mta/tls/certs.py): a server's, or a mobile user's that is pinned by
    fingerprint; valid for days, or expired yesterday."""
    key = keys.generate_key(kind)
    now, not_after = _validity(expired, days=days)
    cert = certs.self_signed(key, names[0], names[1:], days=(not_after - now).days, now=now)
    issued = Issued(cert, key)
    return issued.write(directory, stem or names[0]) if directory else issued


def handshake_failing_context(directory: Path) -> ssl.SSLContext:
    """A server whose TLS handshake always fails: TLS 1.2 with PSK suites only."""
    context = TestCA().issue("localhost").write(directory, "psk").server_context()
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers("PSK")
    return context


# --- the fixed set ------------------------------------------------------------------
# Fixed keys, serials and dates, so that golden output (fingerprints included)
# is byte-for-byte the same on every run. Keys come from fixed secrets and the
# signatures are deterministic: Ed25519 by design, ECDSA by RFC 6979. Nothing in
# mta/tls makes such certificates (random serials are a must, RFC 5280 §4.1.2.2),
# so they are built here; the encodings are mta/tls's.
def at(text: str) -> datetime.datetime:
    """An ISO date and time, in UTC."""
    return datetime.datetime.fromisoformat(text).replace(tzinfo=datetime.UTC)


def _ec_key(secret: int) -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(secret, ec.SECP256R1())


def _ed_key(seed: int) -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32)


@overload
def _sign_fixed(builder: x509.CertificateBuilder,
                key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
                ) -> x509.Certificate: ...


@overload
def _sign_fixed(builder: x509.CertificateSigningRequestBuilder,
                key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
                ) -> x509.CertificateSigningRequest: ...


def _sign_fixed(builder: x509.CertificateBuilder | x509.CertificateSigningRequestBuilder,
                key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
                ) -> x509.Certificate | x509.CertificateSigningRequest:
    deterministic = True if isinstance(key, ec.EllipticCurvePrivateKey) else None
    return builder.sign(key, certs.signature_hash(key), ecdsa_deterministic=deterministic)


def _fixed_certificate(key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey,
                       cn: str, serial: int, not_before: str, not_after: str, *,
                       names: tuple[str, ...] = (), ca: bool = False,
                       usage: x509.ObjectIdentifier | None = None,
                       issuer_key: ed25519.Ed25519PrivateKey | None = None,
                       issuer: str | None = None) -> x509.Certificate:
    """A certificate for key's public half; self-signed unless issuer_key is given."""
    builder = (x509.CertificateBuilder()
               .subject_name(certs.subject_name(cn))
               .issuer_name(certs.subject_name(issuer or cn))
               .public_key(key.public_key())
               .serial_number(serial)
               .not_valid_before(at(not_before)).not_valid_after(at(not_after))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None),
                              critical=True))
    if names:
        builder = builder.add_extension(certs.subject_alternative_names(names), critical=False)
    if usage:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return _sign_fixed(builder, issuer_key or key)


def write_fixed_set(directory: Path) -> dict[str, Path]:
    """A server certificate (self-signed, ECDSA), a private CA (Ed25519), a
    client certificate and a server chain it signed, a request, and an
    expired certificate with its key in the same file."""
    server_key, ca_key, client_key = _ec_key(0x5EC0DE), _ed_key(7), _ec_key(0xA11CE)
    submit_key, old_key = _ec_key(0x5AB), _ec_key(0x01D)
    server = _fixed_certificate(server_key, "mx.example.test", 0x1001, "2026-01-01", "2027-01-01",
                                names=("mx.example.test", "mail.example.test"),
                                usage=ExtendedKeyUsageOID.SERVER_AUTH)
    ca_cert = _fixed_certificate(ca_key, "Example Mail CA", 0x1, "2026-01-01", "2036-01-01",
                                 ca=True)
    signed_by_ca = functools.partial(_fixed_certificate, issuer_key=ca_key,
                                     issuer="Example Mail CA")
    client = signed_by_ca(client_key, "alice@example.test", 0x2002, "2026-02-01", "2026-08-01",
                          names=("alice@example.test",), usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    submit = signed_by_ca(submit_key, "submit.example.test", 0x4004, "2026-03-01", "2027-06-01",
                          names=("submit.example.test",), usage=ExtendedKeyUsageOID.SERVER_AUTH)
    old = _fixed_certificate(old_key, "old.example.test", 0x3003, "2024-01-01", "2025-01-01",
                             names=("old.example.test",))
    request = _sign_fixed(x509.CertificateSigningRequestBuilder()
                          .subject_name(certs.subject_name("next.example.test"))
                          .add_extension(certs.subject_alternative_names(
                              ["next.example.test", "192.0.2.25"]), critical=False),
                          submit_key)
    public = {
        "server.pem": certs.cert_pem(server), "ca.pem": certs.cert_pem(ca_cert),
        "alice.pem": certs.cert_pem(client),
        "submit-chain.pem": certs.cert_pem(submit) + certs.cert_pem(ca_cert),
        "next.csr": certs.request_pem(request),
    }
    private = {
        "server.key": keys.key_pem(server_key), "ca.key": keys.key_pem(ca_key),
        "alice.key": keys.key_pem(client_key), "submit.key": keys.key_pem(submit_key),
        "old.pem": keys.key_pem(old_key) + certs.cert_pem(old),
    }
    for name, data in public.items():
        pemfiles.write_public(directory / name, data)
    for name, data in private.items():
        pemfiles.write_private(directory / name, data)
    return {name: directory / name for name in (*public, *private)}
