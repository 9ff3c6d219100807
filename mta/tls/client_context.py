"""SSL contexts for the SMTP client, and the server chain read back after a handshake.

Contexts verify nothing during the handshake (CERT_NONE, no hostname check):
an opportunistic session must survive an untrusted certificate so that the
maillog can say Untrusted rather than lose the TLS session, and mandatory
levels refuse a server only after the handshake, in decision.py, with
Postfix's reasons. This is Postfix's own design (tls_client.c sets
SSL_VERIFY_NONE with a callback that records and never aborts).

One context per distinct (protocols, ciphers) pair, all presenting
smtp_tls_cert_file when a server asks for a client certificate.
"""

from __future__ import annotations

import ssl
import warnings
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509

from mta.config import Config
from mta.errors import ConfigError
from mta.tls import keys
from mta.tls.chain import TrustStore
from mta.tls.policy_table import ClientPolicy
from mta.tls.protocols import ProtocolRange


class ClientContexts:
    """Builds and caches the client SSL contexts; construct at start, not per session."""

    def __init__(self, cert_file: Path | None = None, key_file: Path | None = None,
                 config: Config | None = None) -> None:
        self.cert_file = cert_file
        self.key_file = key_file
        self.config = config  # for an encrypted key's passphrase (tls_key_password_file)
        self._cache: dict[tuple[ProtocolRange | None, str], ssl.SSLContext] = {}

    @classmethod
    def from_config(cls, config: Config, policies: Iterable[ClientPolicy] = ()) -> ClientContexts:
        cert = config.smtp_tls_cert_file
        key = config.smtp_tls_key_file or cert
        contexts = cls(config.path_of(cert) if cert else None,
                       config.path_of(key) if cert else None, config)
        for policy in policies:  # build them now: a bad file stops the start
            contexts.for_policy(policy)
        return contexts

    def for_policy(self, policy: ClientPolicy) -> ssl.SSLContext:
        key = policy.settings
        context = self._cache.get(key)
        if context is None:
            context = self._build(policy.protocols, policy.ciphers)
            self._cache[key] = context
        return context

    def _build(self, protocols: ProtocolRange | None, ciphers: str) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        if protocols is not None:
            with warnings.catch_warnings():
                # Python deprecates naming TLSv1/TLSv1.1; Postfix's may default
                # still allows them (any encryption beats none), so do we.
                warnings.simplefilter("ignore", DeprecationWarning)
                context.minimum_version = protocols.minimum
                context.maximum_version = protocols.maximum
        if ciphers:
            context.set_ciphers(ciphers)
        if self.cert_file is not None:
            key_file = self.key_file or self.cert_file
            try:
                if self.config is not None:
                    # Passphrase, key/certificate match and clear errors: mta/tls/keys.py.
                    keys.load_cert_chain(context, self.cert_file, key_file, self.config)
                else:
                    context.load_cert_chain(self.cert_file, key_file)
            except ConfigError as error:
                raise ConfigError(f"smtp_tls_cert_file: {error}") from None
            except (OSError, ssl.SSLError) as error:
                raise ConfigError(f"smtp_tls_cert_file {self.cert_file} / smtp_tls_key_file "
                                  f"{self.key_file}: cannot load: {error}") from None
        return context


def trust_store(config: Config) -> TrustStore:
    """smtp_tls_CAfile and smtp_tls_CApath, else the system store."""
    cafile = config.smtp_tls_CAfile
    capath = config.smtp_tls_CApath
    return TrustStore(str(config.path_of(cafile)) if cafile else None,
                      str(config.path_of(capath)) if capath else None)


def peer_chain(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> list[x509.Certificate]:
    """The certificates the server sent, its own first, as sent (unverified).

    Python 3.13 has SSLObject.get_unverified_chain(); 3.11 and 3.12 have it
    on the underlying _ssl object only. Without it, the server's certificate
    alone (intermediates then have to be in the CA file).
    """
    getter = getattr(ssl_object, "get_unverified_chain", None)
    if getter is None:
        inner = getattr(ssl_object, "_sslobj", None)
        getter = getattr(inner, "get_unverified_chain", None)
    if getter is not None:
        chain = getter() or []
        return [x509.load_der_x509_certificate(_der(cert)) for cert in chain]
    der = ssl_object.getpeercert(binary_form=True)
    return [x509.load_der_x509_certificate(der)] if der else []


def _der(cert: object) -> bytes:
    if isinstance(cert, bytes):
        return cert
    return cert.public_bytes(ssl._ssl.ENCODING_DER)  # type: ignore[attr-defined]
