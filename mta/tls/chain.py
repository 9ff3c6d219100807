"""Does a server's certificate chain lead to a trusted CA? With OpenSSL's answer.

The handshake runs with verification off, so that an opportunistic (may)
session survives an untrusted certificate; the chain the peer sent is then
checked here with OpenSSL's own X509_verify_cert (through pyOpenSSL) against
the configured CA set: smtp_tls_CAfile/smtp_tls_CApath, else the system store.
The result keeps OpenSSL's error code and depth, so the log line reads as
Postfix's tls_log_verify_error() writes it.
"""

from __future__ import annotations

import datetime
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID
from OpenSSL import crypto

from mta.errors import ConfigError

# OpenSSL X509_V_ERR_* codes that Postfix words specially (x509_vfy.h).
ERR_CERT_NOT_YET_VALID = 9
ERR_CERT_HAS_EXPIRED = 10
ERR_ERROR_IN_CERT_NOT_BEFORE_FIELD = 13
ERR_ERROR_IN_CERT_NOT_AFTER_FIELD = 14
ERR_DEPTH_ZERO_SELF_SIGNED_CERT = 18
ERR_SELF_SIGNED_CERT_IN_CHAIN = 19
ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY = 20
ERR_CERT_CHAIN_TOO_LONG = 22
ERR_INVALID_PURPOSE = 26
ERR_CERT_UNTRUSTED = 27

_SHORT_NAMES = {
    NameOID.COUNTRY_NAME: "C", NameOID.STATE_OR_PROVINCE_NAME: "ST",
    NameOID.LOCALITY_NAME: "L", NameOID.ORGANIZATION_NAME: "O",
    NameOID.ORGANIZATIONAL_UNIT_NAME: "OU", NameOID.COMMON_NAME: "CN",
    NameOID.EMAIL_ADDRESS: "emailAddress", NameOID.DOMAIN_COMPONENT: "DC",
    NameOID.SERIAL_NUMBER: "serialNumber",
}


def oneline(name: x509.Name) -> str:
    """A name as OpenSSL's X509_NAME_oneline prints it: /C=DE/O=Example/CN=Mail CA."""
    parts = []
    for attribute in name:
        key = _SHORT_NAMES.get(attribute.oid, attribute.oid.dotted_string)
        value = attribute.value if isinstance(attribute.value, str) else "?"
        parts.append(f"/{key}={_printable(value)}")
    return "".join(parts)


def _printable(text: str) -> str:
    return "".join(ch if 0x20 <= ord(ch) < 0x7F else "?" for ch in text)


@dataclass(frozen=True, slots=True)
class ChainResult:
    """OpenSSL's verdict on a chain: trusted, or the error Postfix would report."""

    trusted: bool
    code: int = 0
    depth: int = 0
    openssl_text: str = ""
    subject: str = ""  # of the certificate the error is about
    issuer: str = ""

    @property
    def kind(self) -> str:
        """A short, stable name for the failure (metrics, tls-check, tests)."""
        if self.trusted:
            return "trusted"
        return {
            ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY: "untrusted_issuer",
            ERR_SELF_SIGNED_CERT_IN_CHAIN: "untrusted_issuer",
            ERR_DEPTH_ZERO_SELF_SIGNED_CERT: "self_signed",
            ERR_CERT_HAS_EXPIRED: "expired",
            ERR_ERROR_IN_CERT_NOT_AFTER_FIELD: "expired",
            ERR_CERT_NOT_YET_VALID: "not_yet_valid",
            ERR_ERROR_IN_CERT_NOT_BEFORE_FIELD: "not_yet_valid",
            ERR_INVALID_PURPOSE: "invalid_purpose",
            ERR_CERT_CHAIN_TOO_LONG: "chain_too_long",
        }.get(self.code, "other")

    def reason(self, namaddr: str) -> str:
        """The line Postfix logs for this failure (tls_verify.c tls_log_verify_error)."""
        purpose = "CA" if self.depth > 0 else "server"
        kind = self.kind
        if kind == "self_signed":
            return f"certificate verification failed for {namaddr}: self-signed certificate"
        if kind == "untrusted_issuer":
            return (f"certificate verification failed for {namaddr}: "
                    f"untrusted issuer {self.issuer}")
        if kind == "not_yet_valid":
            return (f"{purpose} certificate verification failed for {namaddr}: "
                    "certificate not yet valid")
        if kind == "expired":
            return (f"{purpose} certificate verification failed for {namaddr}: "
                    "certificate has expired")
        if kind == "invalid_purpose":
            return (f"certificate verification failed for {namaddr}: not designated for "
                    f"use as a {purpose} certificate")
        if kind == "chain_too_long":
            return (f"certificate verification failed for {namaddr}: certificate chain "
                    f"longer than limit({self.depth - 1})")
        return (f"{purpose} certificate verification failed for {namaddr}: "
                f"num={self.code}:{self.openssl_text}")


TRUSTED = ChainResult(True)


class TrustStore:
    """The CA certificates a server chain must lead to; built once, used per session."""

    def __init__(self, cafile: str | None = None, capath: str | None = None,
                 certificates: Sequence[x509.Certificate] = ()) -> None:
        self.description = ", ".join(p for p in (cafile, capath) if p) or "system store"
        self._store = crypto.X509Store()
        if not (cafile or capath or certificates):
            # The system store. Read the bundle file once now (not the hashed
            # directory, which OpenSSL would read lazily from disk during a
            # verification on the event loop).
            paths = ssl.get_default_verify_paths()
            cafile = paths.cafile or paths.openssl_cafile
            if not (cafile and Path(cafile).exists()):
                cafile, capath = None, paths.capath or paths.openssl_capath
        for cert in certificates:
            self._store.add_cert(crypto.X509.from_cryptography(cert))
        if cafile or capath:
            try:
                self._store.load_locations(cafile, capath)
            except crypto.Error as error:
                raise ConfigError(f"cannot load trusted CA certificates from "
                                  f"{cafile or capath}: {error}") from None
        # OpenSSL checks the purpose during a real handshake (X509_PURPOSE_SSL_SERVER);
        # do the same here, so a client-only certificate is not taken for a server's.
        _set_server_purpose(self._store)

    def verify(self, chain: Sequence[x509.Certificate]) -> ChainResult:
        """Verify chain[0] (the server's certificate) using chain[1:] as intermediates."""
        if not chain:
            return ChainResult(False, ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY, 0,
                               "no certificate")
        leaf = crypto.X509.from_cryptography(chain[0])
        intermediates = [crypto.X509.from_cryptography(c) for c in chain[1:]]
        context = crypto.X509StoreContext(self._store, leaf, intermediates)
        try:
            context.verify_certificate()
        except crypto.X509StoreContextError as error:
            code, depth, text = error.errors[0], error.errors[1], error.errors[2]
            bad = error.certificate.to_cryptography() if error.certificate else chain[0]
            result = ChainResult(False, code, depth, text, oneline(bad.subject),
                                 oneline(bad.issuer))
            return _prefer_leaf_time_error(result, chain[0])
        return TRUSTED


def _prefer_leaf_time_error(result: ChainResult, leaf: x509.Certificate) -> ChainResult:
    # OpenSSL stops at its first error; Postfix's callback lets it continue and
    # reports the error nearest the leaf. The common case that differs is an
    # expired server certificate under a missing intermediate: report the expiry.
    if result.depth == 0:
        return result
    moment = datetime.datetime.now(datetime.UTC)
    if leaf.not_valid_after_utc < moment:
        return ChainResult(False, ERR_CERT_HAS_EXPIRED, 0, "certificate has expired",
                           oneline(leaf.subject), oneline(leaf.issuer))
    if leaf.not_valid_before_utc > moment:
        return ChainResult(False, ERR_CERT_NOT_YET_VALID, 0, "certificate is not yet valid",
                           oneline(leaf.subject), oneline(leaf.issuer))
    return result


def _set_server_purpose(store: crypto.X509Store) -> None:
    try:
        from OpenSSL._util import lib  # pyOpenSSL's binding; not a public API

        lib.X509_STORE_set_purpose(store._store, lib.X509_PURPOSE_SSL_SERVER)
    except (ImportError, AttributeError):  # pragma: no cover - older/newer bindings
        pass
