"""A daemon with the three listeners of a real site, for the inbound TLS tests.

- smtp (the public MX): STARTTLS offered (may), no AUTH, no client certificates;
- submission: STARTTLS required (encrypt), client certificates asked for,
  AUTH; relays for authenticated users and for client certificates that
  chain to the test CA or are pinned in relay_clientcerts;
- submissions: the same over implicit TLS (wrapper mode, port 465's job).

Certificates come from a test CA that the clients trust (verification on).
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from mta import sasl
from tests.fakes.certs import Issued, TestCA, self_signed
from tests.helpers import Daemon, DaemonFactory, free_port

RELAY = ("permit_sasl_authenticated, permit_tls_all_clientcerts, permit_tls_clientcerts, "
         "reject_unauth_destination")
USERS = {"alice@example.test": "correct horse battery staple", "bob": "hunter2"}
REMOTE = "someone@remote.example"


@dataclass
class SecureSite:
    daemon: Daemon
    ca: TestCA
    server: Issued
    laptop: Issued  # issued by the CA
    pinned: Issued  # self-signed, certificate fingerprint in relay_clientcerts
    pinned_key: Issued  # self-signed, public-key fingerprint in relay_clientcerts
    stranger: Issued  # self-signed, not pinned
    submission_port: int
    submissions_port: int

    def start(self, wait: bool = True) -> SecureSite:
        self.daemon.start(wait)
        return self

    @property
    def tls_dir(self) -> Path:
        return self.daemon.root / "tls"

    def context(self, client: Issued | None = None) -> ssl.SSLContext:
        return self.ca.client_context(client)

    def starttls(self, port: int, client: Issued | None = None,
                 ehlo: str = "laptop.example") -> smtplib.SMTP:
        """An SMTP session after STARTTLS (server certificate verified)."""
        session = smtplib.SMTP("127.0.0.1", port, local_hostname=ehlo, timeout=20)
        session.starttls(context=self.context(client))
        session.ehlo(ehlo)
        return session

    def implicit(self, client: Issued | None = None, ehlo: str = "laptop.example"
                 ) -> smtplib.SMTP_SSL:
        session = smtplib.SMTP_SSL("127.0.0.1", self.submissions_port, local_hostname=ehlo,
                                   context=self.context(client), timeout=20)
        session.ehlo(ehlo)
        return session


class SecureSiteFactory(Protocol):
    """The secure_site_factory fixture (tests/conftest.py)."""

    def __call__(self, extra: str = "", server_kind: str = "ecdsa") -> SecureSite: ...


def secure_site(daemon_factory: DaemonFactory, extra: str = "",
                server_kind: str = "ecdsa") -> SecureSite:
    """Make (not start) the daemon and its certificates, users and pins."""
    daemon = daemon_factory("")
    tls = daemon.root / "tls"
    ca = TestCA(directory=tls)
    server = ca.issue("mx.example.test", "localhost", "127.0.0.1", kind=server_kind, stem="mx")
    laptop = ca.client("laptop.example", stem="laptop")
    pinned = self_signed("pinned.example", directory=tls, stem="pinned")
    pinned_key = self_signed("pinned-key.example", directory=tls, stem="pinned-key")
    stranger = self_signed("stranger.example", directory=tls, stem="stranger")
    (daemon.root / "relay_clientcerts").write_text(
        f"{pinned.cert_fingerprint} carol's phone (certificate)\n"
        f"{pinned_key.pkey_fingerprint} dave's laptop (public key)\n")
    for user, password in USERS.items():
        sasl.update_password_file(daemon.root / "sasl_passwd", user,
                                  sasl.hash_password(password))
    submission, submissions = free_port(), free_port()
    with daemon.config.open("a") as main_cf:
        main_cf.write(f"""
smtpd_tls_cert_file = tls/mx.pem
smtpd_tls_key_file = tls/mx.key
smtpd_tls_security_level = may
smtpd_tls_CAfile = tls/ca.pem
relay_clientcerts = texthash:relay_clientcerts
smtpd_sasl_password_file = sasl_passwd
smtpd_sasl_failure_delay = 0.5s
submission/inet = 127.0.0.1:{submission}
submission/inet/smtpd_tls_security_level = encrypt
submission/inet/smtpd_tls_ask_ccert = yes
submission/inet/smtpd_sasl_auth_enable = yes
submission/inet/smtpd_relay_restrictions = {RELAY}
submissions/inet = 127.0.0.1:{submissions}
submissions/inet/smtpd_tls_wrappermode = yes
submissions/inet/smtpd_tls_ask_ccert = yes
submissions/inet/smtpd_sasl_auth_enable = yes
submissions/inet/smtpd_relay_restrictions = {RELAY}
{extra}""")
    return SecureSite(daemon, ca, server, laptop, pinned, pinned_key, stranger, submission,
                      submissions)


def message(subject: str) -> bytes:
    return f"From: a@example.org\r\nSubject: {subject}\r\n\r\nbody of {subject}\r\n".encode()
