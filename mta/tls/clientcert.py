"""The client certificate a TLS client presented: names, fingerprints and trust.

Verification is recorded, never enforced, during the handshake (see
``VerifyRecord``): asking for a certificate must not make the handshake fail,
because relay permission can come from a pinned fingerprint of a certificate
that chains to nothing (Postfix's permit_tls_clientcerts). What the
certificate is worth is decided later, by the restrictions (smtpd/checks.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

from mta.config import Config
from mta.maps import open_tables
from mta.tls.certinfo import name_attribute
from mta.tls.fingerprints import cert_fingerprint, pubkey_fingerprint

# X509_V_ERR_* texts for the errors a client certificate commonly has
# (OpenSSL's X509_verify_cert_error_string, which pyOpenSSL does not expose).
_VERIFY_ERRORS = {
    2: "unable to get issuer certificate",
    7: "certificate signature failure",
    9: "certificate is not yet valid",
    10: "certificate has expired",
    18: "self-signed certificate",
    19: "self-signed certificate in certificate chain",
    20: "unable to get local issuer certificate",
    21: "unable to verify the first certificate",
    22: "certificate chain too long",
    23: "certificate revoked",
    24: "invalid CA certificate",
    26: "unsupported certificate purpose",
    28: "certificate rejected",
}


def verify_error_text(code: int) -> str:
    return _VERIFY_ERRORS.get(code, f"certificate verification error {code}")


@dataclass
class VerifyRecord:
    """What OpenSSL's chain verification said, collected by the verify callback.

    The callback always answers "continue" so that the handshake completes;
    the first error (closest to the leaf wins, as in Postfix's tls_verify.c)
    is kept for logging and for "not verified" in the Received header.
    """

    called: bool = False
    error: int = 0
    depth: int = -1

    def callback(self, connection: object, certificate: object, error: int, depth: int,
                 ok: int) -> bool:
        self.called = True
        if not ok and error and (self.depth < 0 or depth < self.depth):
            self.error, self.depth = error, depth
        return True

    @property
    def trusted(self) -> bool:
        return self.called and self.error == 0


# Postfix's CCERT_BUFSIZ: a peer name this long or longer is no name.
_NAME_LIMIT = 256


def peer_text_name(value: str) -> str:
    """A peer certificate's CN (or issuer CN) as Postfix's tls_text_name
    takes it: trailing NULs off, then "" for a name of 256 bytes or more,
    one with a NUL inside, or one with a non-printable ASCII character; the
    CN then names nobody in logs, headers and replies, as in Postfix."""
    value = value.rstrip("\0")
    if len(value.encode("utf-8", "surrogatepass")) >= _NAME_LIMIT:
        return ""
    if any(char < " " or char == "\x7f" for char in value):
        return ""  # NUL and the other ASCII controls
    return value


@dataclass(frozen=True)
class PeerCertificate:
    """The facts about a presented certificate that policy, logs and headers use."""

    common_name: str
    issuer_common_name: str
    cert_fingerprint: str
    pkey_fingerprint: str
    trusted: bool
    verify_error: str = ""
    public_key: object = field(default=None, compare=False, repr=False)

    @classmethod
    def from_certificate(cls, cert: x509.Certificate, record: VerifyRecord,
                         digest: str = "sha256") -> PeerCertificate:
        issuer = (peer_text_name(name_attribute(cert.issuer))
                  or peer_text_name(name_attribute(cert.issuer, NameOID.ORGANIZATION_NAME)))
        return cls(common_name=peer_text_name(name_attribute(cert.subject)),
                   issuer_common_name=issuer,
                   cert_fingerprint=cert_fingerprint(cert, digest),
                   pkey_fingerprint=pubkey_fingerprint(cert, digest),
                   trusted=record.trusted,
                   verify_error="" if record.trusted else verify_error_text(record.error),
                   public_key=cert.public_key())

    @property
    def fingerprints(self) -> tuple[str, str]:
        """Certificate then public-key fingerprint: Postfix's lookup order."""
        return (self.cert_fingerprint, self.pkey_fingerprint)


def relay_clientcerts_lookup(config: Config) -> Callable[[tuple[str, ...]], bool]:
    """The relay_clientcerts tables as the question permit_tls_clientcerts asks:
    is any of these fingerprints listed? (Keys compare case-insensitively.)"""
    spec = config.relay_clientcerts
    if not spec:
        return lambda fingerprints: False
    tables = open_tables(spec, Path(config.directory))

    def listed(fingerprints: tuple[str, ...]) -> bool:
        return any(tables.lookup(fp) is not None for fp in fingerprints)

    return listed
