"""What a server's certificate is, kept apart from whether that is enough.

evaluate() answers only questions about the certificate: does the chain lead
to a trusted CA (and if not, OpenSSL's reason), which names does it carry and
does one of them match the wanted names, what are its fingerprints and do
they match the pinned ones. decision.py decides what that means for a
destination's level.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509

from mta.tls.chain import ChainResult, TrustStore, oneline
from mta.tls.fingerprints import cert_digest, cert_fingerprint, pubkey_digest, pubkey_fingerprint
from mta.tls.names import (
    MatchTarget,
    NameMatch,
    certificate_names,
    common_name,
    match_certificate,
)


@dataclass(frozen=True, slots=True)
class CertSummary:
    """One certificate as tls-check shows it."""

    subject: str
    issuer: str
    common_name: str
    dns_names: tuple[str, ...]
    not_before: datetime.datetime
    not_after: datetime.datetime
    cert_fingerprint: str
    pubkey_fingerprint: str

    @classmethod
    def of(cls, cert: x509.Certificate) -> CertSummary:
        try:
            sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            dns = tuple(sans.get_values_for_type(x509.DNSName))
        except x509.ExtensionNotFound:
            dns = ()
        return cls(oneline(cert.subject), oneline(cert.issuer), common_name(cert), dns,
                   cert.not_valid_before_utc, cert.not_valid_after_utc,
                   cert_fingerprint(cert), pubkey_fingerprint(cert))


@dataclass(frozen=True, slots=True)
class Evaluation:
    """The facts about the certificate a server presented (none: anonymous TLS)."""

    chain: tuple[x509.Certificate, ...]
    trust: ChainResult | None  # None without a certificate
    names: tuple[str, ...] = ()  # the names that count: DNS SANs, else the CN
    name_source: str = ""  # "SAN" or "CN"
    name_match: NameMatch | None = None
    fingerprint_match: str | None = None  # "cert" or "pubkey" when pinned and matched

    @property
    def present(self) -> bool:
        return bool(self.chain)

    @property
    def trusted(self) -> bool:
        return self.trust is not None and self.trust.trusted

    @property
    def leaf(self) -> x509.Certificate | None:
        return self.chain[0] if self.chain else None

    def summaries(self) -> list[CertSummary]:
        return [CertSummary.of(cert) for cert in self.chain]


ANONYMOUS = Evaluation((), None)


def evaluate(chain: Sequence[x509.Certificate], store: TrustStore, *,
             target: MatchTarget | None = None,
             fingerprints: frozenset[bytes] = frozenset(),
             multi_label_wildcard: bool = True) -> Evaluation:
    """Verify the chain against store, match names against target (if any) and
    the leaf's fingerprints against the pinned ones (if any)."""
    if not chain:
        return ANONYMOUS
    leaf = chain[0]
    trust = store.verify(chain)
    names, source = certificate_names(leaf)
    name_match = (match_certificate(names, target, multi_label_wildcard)
                  if target is not None else None)
    pinned = None
    if fingerprints:
        # Postfix (tls_client.c verify_extract_print): the certificate digest or
        # the public-key digest of the server's own certificate, no CA, no expiry.
        if cert_digest(leaf) in fingerprints:
            pinned = "cert"
        elif pubkey_digest(leaf) in fingerprints:
            pinned = "pubkey"
    return Evaluation(tuple(chain), trust, names, source, name_match, pinned)
