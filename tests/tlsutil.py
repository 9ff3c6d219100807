"""Certificates for TLS tests: a private CA, server and client certificates,
self-signed ones, written as PEM files with the modes a real setup has.

Verification stays on in every test: clients trust the test CA, never
"anything"; smtpd trusts the CA for client certificates.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import warnings
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mta.tls import certs, fingerprints, keys
from mta.tls.engine import TlsEngine, TlsError
from mta.tls.protocols import INBOUND, cipher_string, parse_protocols
from mta.tls.server import ContextSettings, ServerTls, SessionTls, load_identity


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


@dataclass
class Issued:
    """A key and certificate, and the files they were written to."""

    key: object
    cert: x509.Certificate
    cert_file: Path
    key_file: Path

    @property
    def cert_fingerprint(self) -> str:
        return fingerprints.cert_fingerprint(self.cert)

    @property
    def pkey_fingerprint(self) -> str:
        return fingerprints.pubkey_fingerprint(self.cert)


class TestCA:
    """A private certificate authority in a directory."""

    __test__ = False  # not a pytest class

    def __init__(self, directory: Path, name: str = "Postern Test CA") -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (x509.CertificateBuilder()
                     .subject_name(_name(name)).issuer_name(_name(name))
                     .public_key(self.key.public_key())
                     .serial_number(x509.random_serial_number())
                     .not_valid_before(now - datetime.timedelta(minutes=5))
                     .not_valid_after(now + datetime.timedelta(days=30))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None),
                                    critical=True)
                     .add_extension(x509.KeyUsage(
                         digital_signature=True, key_cert_sign=True, crl_sign=True,
                         content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, encipher_only=False,
                         decipher_only=False), critical=True)
                     .sign(self.key, hashes.SHA256()))
        self.cert_file = directory / "ca.pem"
        self.cert_file.write_bytes(certs.cert_pem(self.cert))

    def issue(self, cn: str, *, names: tuple[str, ...] = (), client: bool = False,
              kind: str = "ecdsa", stem: str | None = None,
              expired: bool = False) -> Issued:
        key = (rsa.generate_private_key(65537, 2048) if kind == "rsa"
               else ec.generate_private_key(ec.SECP256R1()))
        now = datetime.datetime.now(datetime.UTC)
        start = now - datetime.timedelta(days=10 if expired else 0, minutes=5)
        end = now - datetime.timedelta(days=1) if expired else now + datetime.timedelta(days=30)
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        builder = (x509.CertificateBuilder()
                   .subject_name(_name(cn)).issuer_name(self.cert.subject)
                   .public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(start).not_valid_after(end)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None),
                                  critical=True)
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
        sans = list(names) or ([] if client else [cn])
        if sans:
            builder = builder.add_extension(_sans(sans), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        return _write(self.directory, stem or cn, key, cert)

    def context(self) -> ssl.SSLContext:
        """A client context that trusts this CA only (verification on)."""
        context = ssl.create_default_context(cafile=str(self.cert_file))
        return context


def self_signed(directory: Path, cn: str, stem: str | None = None) -> Issued:
    """A self-signed certificate (chains to nothing), as mobile users pin them."""
    key = keys.generate_key()
    cert = certs.self_signed(key, cn)
    return _write(directory, stem or cn, key, cert)


def _sans(names: list[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def _write(directory: Path, stem: str, key: object, cert: x509.Certificate) -> Issued:
    directory.mkdir(parents=True, exist_ok=True)
    cert_file = directory / f"{stem}.pem"
    key_file = directory / f"{stem}.key"
    cert_file.write_bytes(certs.cert_pem(cert))
    keys.write_private(key_file, keys.key_pem(key))  # type: ignore[arg-type]
    return Issued(key, cert, cert_file, key_file)


def client_context(ca: TestCA, client: Issued | None = None,
                   maximum: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    """A client context trusting ca, optionally presenting a client certificate."""
    context = ca.context()
    if client is not None:
        context.load_cert_chain(str(client.cert_file), str(client.key_file))
    if maximum is not None:
        # An old client for real: old versions allowed, OpenSSL's own floor off.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
            context.maximum_version = maximum
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
    return context


def memory_handshake(server: ServerTls, client: ssl.SSLContext,
                     server_hostname: str = "localhost"
                     ) -> tuple[TlsEngine, SessionTls, ssl.SSLObject | None, str]:
    """Run a handshake between a Python ssl client and our engine, in memory.

    Returns the engine, its callback state, the client object (None when the
    client gave up) and the client's error text ("" on success).
    """
    connection, state = server.connection()
    engine = TlsEngine(connection)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    peer = client.wrap_bio(incoming, outgoing, server_hostname=server_hostname)
    for _ in range(20):
        try:
            peer.do_handshake()
            if engine.handshake_done:
                return engine, state, peer, ""
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLError as error:
            return engine, state, None, str(error.reason)
        try:
            engine.receive(outgoing.read())
        except TlsError as error:
            incoming.write(engine.outgoing())
            try:
                peer.do_handshake()
            except ssl.SSLError:
                pass
            return engine, state, None, str(error)
        incoming.write(engine.outgoing())
    raise AssertionError("handshake did not finish")


def server_tls(ca: TestCA | None, server: Issued, *, ask_ccert: bool = True,
               protocols: str = ">=TLSv1.2", grade: str = "medium",
               sni: dict[str, Issued] | None = None) -> ServerTls:
    """A ServerTls as smtpd builds it, trusting ca for client certificates."""
    settings = ContextSettings(
        protocols=parse_protocols(protocols, INBOUND),
        ciphers=cipher_string(grade, (), INBOUND), ask_ccert=ask_ccert,
        cafile=str(ca.cert_file) if ca else "", verify_depth=9)
    identities = {name: load_identity([i.key_file, i.cert_file])
                  for name, i in (sni or {}).items()}
    return ServerTls(settings, load_identity([server.key_file, server.cert_file]),
                     identities)
