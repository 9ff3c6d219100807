"""Making server certificates with the cryptography package: self-signed
certificates, PKCS#10 requests for a CA, and renewals with the same names.

The embedded default needs a server certificate on first start
(ensure_self_signed); ``mta cert`` (cli/cert.py) builds on the same functions.
Client certificates and the private CA that signs them live in ca.py; keys in
keys.py.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Keys and their files moved to keys.py; these names stay importable from here.
from mta.tls.keys import PrivateKey, generate_key, key_pem
from mta.tls.pemfiles import write_private, write_public

__all__ = ["PrivateKey", "cert_pem", "ensure_self_signed", "generate_key", "key_pem",
           "reissue", "self_signed", "signing_request", "subject_alternative_names",
           "write_private"]

# Browsers cap public certificates at 398 days; a private self-signed one is
# pinned or trusted by hand, so a longer life spares renewals (Postfix's
# "postfix tls new-server-key" also makes long-lived self-signed certificates).
DEFAULT_SERVER_DAYS = 825
# Start a few minutes in the past so that peers with a slow clock accept it.
BACKDATE = datetime.timedelta(minutes=5)


def signature_hash(key: CertificateIssuerPrivateKeyTypes) -> hashes.SHA256 | None:
    """SHA-256, except for Ed25519/Ed448, which hash internally (RFC 8410)."""
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)):
        return None
    return hashes.SHA256()


def subject_alternative_names(names: Sequence[str]) -> x509.SubjectAlternativeName:
    """DNS names, IP addresses, and (with an @) email addresses."""
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            if "@" in name:
                entries.append(x509.RFC822Name(name))
            else:
                entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def subject_name(common_name: str, organization: str | None = None) -> x509.Name:
    attributes = []
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attributes)


def certificate_builder(subject: x509.Name, issuer: x509.Name,
                        public_key: CertificatePublicKeyTypes, not_after: datetime.datetime, *,
                        now: datetime.datetime,
                        issuer_key: CertificateIssuerPrivateKeyTypes | None = None
                        ) -> x509.CertificateBuilder:
    """What every certificate we make has: a random serial (RFC 5280 §4.1.2.2),
    validity from BACKDATE before now, the subject key identifier, and the
    authority key identifier when another key signs it (§4.2.1.1, §4.2.1.2).
    The callers add what makes it a CA, server or client certificate."""
    builder = (x509.CertificateBuilder()
               .subject_name(subject).issuer_name(issuer)
               .public_key(public_key)
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - BACKDATE)
               .not_valid_after(not_after)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key),
                              critical=False))
    if issuer_key is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False)
    return builder


def end_entity_key_usage(public_key: CertificatePublicKeyTypes) -> x509.KeyUsage:
    """Server and client certificates: signing, and key transport for RSA keys.

    RSA key transport (TLS 1.2 RSA key exchange) needs keyEncipherment; EC keys sign only.
    """
    return x509.KeyUsage(
        digital_signature=True, key_encipherment=isinstance(public_key, rsa.RSAPublicKey),
        content_commitment=False, data_encipherment=False, key_agreement=False,
        key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False)


def self_signed(key: PrivateKey, common_name: str, names: Sequence[str] = (),
                days: int = DEFAULT_SERVER_DAYS, *, organization: str | None = None,
                now: datetime.datetime | None = None) -> x509.Certificate:
    """A self-signed server certificate for common_name and names (SANs).

    The common name is also the first SAN: clients match SANs only when there
    are any (RFC 6125 §6.4.4), so a CN outside the SANs would never match.
    """
    subject = subject_name(common_name, organization)
    now = now or datetime.datetime.now(datetime.UTC)
    sans = list(dict.fromkeys([common_name, *names]))
    public = key.public_key()
    builder = (certificate_builder(subject, subject, public,
                                   now + datetime.timedelta(days=days), now=now)
               .add_extension(subject_alternative_names(sans), critical=False)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(end_entity_key_usage(public), critical=True)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                     ExtendedKeyUsageOID.CLIENT_AUTH]),
                              critical=False))
    return builder.sign(key, signature_hash(key))


def signing_request(key: CertificateIssuerPrivateKeyTypes, common_name: str,
                    names: Sequence[str] = (), *, organization: str | None = None
                    ) -> x509.CertificateSigningRequest:
    """A PKCS#10 request (RFC 2986) for common_name and names, signed by key.

    The CN is repeated as the first SAN, since CAs issue SAN certificates and
    ignore the CN for matching (CA/Browser Forum baseline requirements).
    """
    sans = list(dict.fromkeys([common_name, *names]))
    builder = (x509.CertificateSigningRequestBuilder()
               .subject_name(subject_name(common_name, organization))
               .add_extension(subject_alternative_names(sans), critical=False))
    return builder.sign(key, signature_hash(key))


def request_from(cert: x509.Certificate, key: CertificateIssuerPrivateKeyTypes
                 ) -> x509.CertificateSigningRequest:
    """A request for a certificate like cert: the same subject and SANs."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(cert.subject)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        builder = builder.add_extension(san.value, critical=san.critical)
    except x509.ExtensionNotFound:
        pass
    return builder.sign(key, signature_hash(key))


# Extensions a renewal copies from the old certificate; the key identifiers
# are recomputed, since the key (or the issuer's key) may be new.
_COPIED = (x509.SubjectAlternativeName, x509.BasicConstraints, x509.KeyUsage,
           x509.ExtendedKeyUsage, x509.NameConstraints)


def reissue(old: x509.Certificate, public_key: CertificatePublicKeyTypes,
            issuer: x509.Name, issuer_key: CertificateIssuerPrivateKeyTypes,
            days: int, *, now: datetime.datetime | None = None) -> x509.Certificate:
    """A new certificate with old's subject and extensions, for public_key,
    signed by issuer_key as issuer (old's own key for a self-signed one)."""
    now = now or datetime.datetime.now(datetime.UTC)
    builder = certificate_builder(old.subject, issuer, public_key,
                                  now + datetime.timedelta(days=days), now=now,
                                  issuer_key=issuer_key if issuer != old.subject else None)
    for extension in old.extensions:
        if isinstance(extension.value, _COPIED):
            builder = builder.add_extension(extension.value, critical=extension.critical)
    return builder.sign(issuer_key, signature_hash(issuer_key))


def lifetime_days(cert: x509.Certificate) -> int:
    """The certificate's validity period in whole days (at least one)."""
    span = cert.not_valid_after_utc - cert.not_valid_before_utc
    return max(1, round(span / datetime.timedelta(days=1)))


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def request_pem(request: x509.CertificateSigningRequest) -> bytes:
    return request.public_bytes(serialization.Encoding.PEM)


def ensure_self_signed(cert_path: Path, key_path: Path, hostname: str,
                       names: Sequence[str] = ()) -> bool:
    """Make a self-signed certificate and key when neither exists; True if made."""
    if cert_path.exists() or key_path.exists():
        return False
    key = generate_key()
    cert = self_signed(key, hostname, [*names, "localhost", "127.0.0.1", "::1"])
    if cert_path.resolve() == key_path.resolve():
        # smtpd_tls_key_file defaults to $smtpd_tls_cert_file: one file, key first.
        write_private(key_path, key_pem(key) + cert_pem(cert))
        return True
    write_private(key_path, key_pem(key))
    write_public(cert_path, cert_pem(cert))
    return True
