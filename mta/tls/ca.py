"""A private certificate authority for client certificates: making the CA and
issuing a mobile user's certificate with it.

smtpd trusts the CA through smtpd_tls_CAfile, so every certificate it issues
relays under permit_tls_all_clientcerts; a single certificate can instead be
pinned by its fingerprint in relay_clientcerts (permit_tls_clientcerts).
Postfix's advice holds: use a CA of your own for this, never a public one,
since permit_tls_all_clientcerts trusts everything the CA file's CAs sign.
"""

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
)
from cryptography.x509.oid import ExtendedKeyUsageOID

from mta.tls import keys
from mta.tls.certs import (
    certificate_builder,
    end_entity_key_usage,
    signature_hash,
    subject_name,
)

DEFAULT_CA_DAYS = 3650
DEFAULT_CLIENT_DAYS = 365


def ca_certificate(key: CertificateIssuerPrivateKeyTypes, name: str,
                   days: int = DEFAULT_CA_DAYS, *, organization: str | None = None,
                   now: datetime.datetime | None = None) -> x509.Certificate:
    """A self-signed CA certificate that may sign end-entity certificates only.

    pathLenConstraint 0 (RFC 5280 §4.2.1.9): a stolen client key cannot act as
    a sub-CA, and the CA cannot be used to mint intermediates by mistake.
    """
    now = now or datetime.datetime.now(datetime.UTC)
    subject = subject_name(name, organization)
    builder = (certificate_builder(subject, subject, key.public_key(),
                                   now + datetime.timedelta(days=days), now=now)
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .add_extension(x509.KeyUsage(
                   digital_signature=True, key_cert_sign=True, crl_sign=True,
                   content_commitment=False, key_encipherment=False, data_encipherment=False,
                   key_agreement=False, encipher_only=False, decipher_only=False),
                   critical=True))
    return builder.sign(key, signature_hash(key))


def client_certificate(public_key: CertificatePublicKeyTypes, user: str,
                       ca_cert: x509.Certificate, ca_key: CertificateIssuerPrivateKeyTypes,
                       days: int = DEFAULT_CLIENT_DAYS, *,
                       now: datetime.datetime | None = None) -> x509.Certificate:
    """A TLS client certificate for user (USER@DOMAIN), signed by the CA.

    The address is the CN (what Postfix logs as ``Client CN``) and an
    rfc822Name SAN; the extended key usage is clientAuth only, so the
    certificate cannot pose as a server.
    """
    if not is_ca_for(ca_cert, ca_key):
        raise ValueError("the CA key does not belong to the CA certificate")
    now = now or datetime.datetime.now(datetime.UTC)
    not_after = now + datetime.timedelta(days=days)
    if not_after > ca_cert.not_valid_after_utc:
        # A certificate outliving its CA fails verification from that day on.
        not_after = ca_cert.not_valid_after_utc
    builder = (certificate_builder(subject_name(user), ca_cert.subject, public_key, not_after,
                                   now=now, issuer_key=ca_key)
               .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(user)]),
                              critical=False)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(end_entity_key_usage(public_key), critical=True)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                              critical=False))
    return builder.sign(ca_key, signature_hash(ca_key))


def is_ca_for(ca_cert: x509.Certificate, ca_key: CertificateIssuerPrivateKeyTypes) -> bool:
    return keys.is_key_of(ca_key, ca_cert)
