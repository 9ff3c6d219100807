"""Postern delivers to Postfix's smtpd over STARTTLS at may, encrypt and verify with a
test CA; both sides log the TLS session. The TLS policy comes from a policy table
keyed [localhost]:port, as Postfix's smtp_tls_policy_maps would be."""

from __future__ import annotations

import smtplib
from pathlib import Path

import pytest

from tests.fakes.certs import TestCA
from tests.helpers import Daemon, DaemonFactory
from tests.interop.postfix import PostfixFactory, PostfixInstance

pytestmark = pytest.mark.interop


def postfix_with_tls(postfix_factory: PostfixFactory, cert_name: str = "localhost",
                     client_ca: TestCA | None = None) -> tuple[PostfixInstance, TestCA]:
    """A running Postfix whose smtpd offers STARTTLS with a certificate for
    cert_name from a new CA; given client_ca, it asks for client certificates
    and trusts the ones client_ca issued."""
    postfix = postfix_factory()
    ca = TestCA("Postern Interop CA")
    server = ca.issue(cert_name).write(postfix.conf, "smtpd")
    settings = (f"smtpd_tls_cert_file = {server.cert_file}\n"
                f"smtpd_tls_key_file = {server.key_file}\n"
                "smtpd_tls_security_level = may\nsmtpd_tls_loglevel = 1\n")
    if client_ca is not None:
        settings += ("smtpd_tls_ask_ccert = yes\n"
                     f"smtpd_tls_CAfile = {client_ca.write(postfix.conf / 'client-ca.pem')}\n"
                     "smtpd_tls_received_header = yes\n")
    with open(postfix.conf / "main.cf", "a") as main_cf:
        main_cf.write(settings)
    return postfix.start(), ca


def postern_relaying_to(postfix: PostfixInstance, ca: TestCA, daemon_factory: DaemonFactory,
                        tmp_path: Path, tls: str) -> Daemon:
    """A running Postern that relays all mail to postfix, trusting ca (smtp_tls_CAfile),
    with the smtp_tls_* settings in tls."""
    ca.write(tmp_path / "mta" / "ca.pem")
    return daemon_factory(f"""
default_transport = smtp
relayhost = [localhost]:{postfix.port}
smtp_host_lookup = native
smtp_tls_CAfile = ca.pem
{tls}""").start()


def send(daemon: Daemon, subject: str, body: str) -> None:
    with smtplib.SMTP("127.0.0.1", daemon.smtp_port) as client:
        client.sendmail("bob@example.org", ["alice@postfix.test"],
                        f"Subject: {subject}\r\n\r\n{body}\r\n".encode())


@pytest.mark.parametrize(("level", "trust"), [
    ("may", "Trusted"), ("musttls", "Trusted"), ("verify", "Verified")])
def test_postern_to_postfix_over_starttls(daemon_factory: DaemonFactory,
                                          postfix_factory: PostfixFactory, tmp_path: Path,
                                          level: str, trust: str) -> None:
    postfix, ca = postfix_with_tls(postfix_factory)
    (tmp_path / "mta").mkdir()
    (tmp_path / "mta" / "tls_policy").write_text(f"[localhost]:{postfix.port}  {level}\n")
    daemon = postern_relaying_to(postfix, ca, daemon_factory, tmp_path,
                                 "smtp_tls_security_level = none\n"
                                 "smtp_tls_policy_maps = texthash:tls_policy\n")
    send(daemon, "over TLS", "secret")
    relay = rf"localhost\[127\.0\.0\.1\]:{postfix.port}"
    daemon.wait_log(rf"postern/smtp\[\d+\]: {trust} TLS connection established to {relay}: "
                    r"TLSv1\.3 with cipher \S+ \(\d+/\d+ bits\)")
    field = "encrypt" if level == "musttls" else level
    daemon.wait_log(rf"to=<alice@postfix.test>, relay={relay}, .*tls={field}, dsn=2\.0\.0, "
                    r"status=sent")
    postfix.wait_log(r"postfix/smtpd\[\d+\]: Anonymous TLS connection established from "
                     r"localhost\[127\.0\.0\.1\]: TLSv1\.3 with cipher")
    assert b"secret" in postfix.wait_maildir("alice")[0].read_bytes()


def test_verify_refuses_postfix_with_the_wrong_name(daemon_factory: DaemonFactory,
                                                    postfix_factory: PostfixFactory,
                                                     tmp_path: Path) -> None:
    postfix, ca = postfix_with_tls(postfix_factory, cert_name="mx.elsewhere.test")
    daemon = postern_relaying_to(postfix, ca, daemon_factory, tmp_path,
                                 "smtp_tls_security_level = verify\n")
    send(daemon, "over TLS", "secret")
    relay = rf"localhost\[127\.0\.0\.1\]:{postfix.port}"
    daemon.wait_log(rf"server certificate verification failed for {relay}: "
                    "num=62:hostname mismatch")
    daemon.wait_log(rf"to=<alice@postfix.test>, relay={relay}, .*tls=!verify, dsn=4\.7\.5, "
                    r"status=deferred \(Server certificate not verified\)")
    postfix.wait_log(r"Anonymous TLS connection established from localhost")
    # Postfix counts the commands it got: no MAIL, RCPT or DATA, before TLS or after.
    # refused right after the handshake, before the second EHLO (as Postfix's client does).
    postfix.wait_log(r"disconnect from localhost\[127\.0\.0\.1\] ehlo=1 starttls=1 quit=1 "
                     r"commands=3$")
    assert postfix.maildir("alice") == []


def test_client_certificate_when_postfix_asks(daemon_factory: DaemonFactory,
                                              postfix_factory: PostfixFactory,
                                              tmp_path: Path) -> None:
    """A smarthost that authenticates senders by certificate: Postfix asks
    (smtpd_tls_ask_ccert), Postern presents smtp_tls_cert_file, Postfix trusts it."""
    client_ca = TestCA("Postern Client CA")
    postfix, server_ca = postfix_with_tls(postfix_factory, client_ca=client_ca)
    client_ca.client("relay.client.test").write(tmp_path / "mta", "client")
    daemon = postern_relaying_to(postfix, server_ca, daemon_factory, tmp_path,
                                 "smtp_tls_security_level = verify\n"
                                 "smtp_tls_cert_file = client.pem\n"
                                 "smtp_tls_key_file = client.key\n")
    send(daemon, "with a certificate", "hello")
    daemon.wait_log(r"to=<alice@postfix.test>, .*tls=verify, dsn=2\.0\.0, status=sent")
    postfix.wait_log(r"postfix/smtpd\[\d+\]: Trusted TLS connection established from "
                     r"localhost\[127\.0\.0\.1\]: TLSv1\.3 with cipher")
    stored = postfix.wait_maildir("alice")[0].read_bytes()
    assert (b'(Client CN "relay.client.test", Issuer "Postern Client CA" (verified OK))'
            in stored), stored[:600]
