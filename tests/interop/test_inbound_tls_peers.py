"""Inbound TLS against real clients: swaks, openssl s_client, and Postfix as the
sending MTA. Every client verifies our certificate against the test CA."""

from __future__ import annotations

import re
import smtplib
import subprocess

import pytest

from tests.e2e.secure_env import REMOTE, USERS, SecureSite, SecureSiteFactory
from tests.helpers import require_program
from tests.interop.postfix import PostfixFactory

pytestmark = pytest.mark.interop


def swaks(site: SecureSite, port: int, *args: str) -> subprocess.CompletedProcess[str]:
    command = [require_program("swaks"), "--server", f"127.0.0.1:{port}",
               "--tls-verify", "--tls-ca-path", str(site.ca.cert_file),
               "--tls-sni", "mx.example.test", "--ehlo", "laptop.example",
               "--from", "mobile@example.test", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def s_client(site: SecureSite, port: int, *args: str, commands: str = "EHLO me\r\nQUIT\r\n"
             ) -> str:
    command = [require_program("openssl"), "s_client", "-starttls", "smtp",
               "-connect", f"127.0.0.1:{port}", "-CAfile", str(site.ca.cert_file),
               "-verify_return_error", "-crlf", "-ign_eof", *args]
    result = subprocess.run(command, input=commands.replace("\r\n", "\n"),
                            capture_output=True, text=True, timeout=60)
    return result.stdout + result.stderr


def test_swaks_starttls_and_tls_on_connect(site: SecureSite) -> None:
    result = swaks(site, site.daemon.smtp_port, "--tls", "--to", "alice@example.test")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "250 2.0.0 Ok: queued as" in result.stdout
    result = swaks(site, site.submissions_port, "--tls-on-connect", "--to", REMOTE,
                   "--auth", "PLAIN", "--auth-user", "bob", "--auth-password", USERS["bob"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "235 2.7.0 Authentication successful" in result.stdout
    result = swaks(site, site.submissions_port, "--tls-on-connect", "--to", REMOTE,
                   "--auth", "LOGIN", "--auth-user", "bob", "--auth-password", "wrong")
    assert result.returncode != 0
    assert "535 5.7.8 Error: authentication failed: authentication failure" in result.stdout
    text = site.daemon.wait_maildir("alice")[0].read_text()
    assert re.search(r"^\t\(using TLSv1\.3 with cipher \S+ \(\d+/\d+ bits\)\n"
                     r"\t key-exchange \S+ server-signature ECDSA \(prime256v1\) server-digest "
                     r"SHA256\)\n\t\(No client certificate requested\)\n"
                     r"\tby mx\.example\.test \(Postern\) with ESMTPS id ", text, re.M), text
    site.daemon.wait_log(r"sasl_method=PLAIN, sasl_username=bob$")


def test_swaks_with_client_certificates(site: SecureSite) -> None:
    for client, relays in ((site.laptop, True), (site.pinned, True), (site.stranger, False)):
        result = swaks(site, site.submission_port, "--tls", "--to", REMOTE,
                       "--tls-cert", str(client.cert_file), "--tls-key", str(client.key_file))
        output = result.stdout + result.stderr
        assert "=== TLS started with cipher" in output, output  # handshake succeeded
        if relays:
            assert result.returncode == 0, output
        else:
            assert result.returncode == 24, output  # swaks: RCPT refused
            assert f"554 5.7.1 <{REMOTE}>: Relay access denied" in output


def test_openssl_s_client(secure_site_factory: SecureSiteFactory) -> None:
    # s_client sends all of its standard input in one TLS record after the
    # handshake (EHLO, then more without waiting), which Postfix 3.9 and we
    # refuse as improper pipelining; this test is about the TLS facts.
    site = secure_site_factory("smtpd_forbid_unauth_pipelining = no\n").start()
    out = s_client(site, site.submission_port)
    assert "Verification: OK" in out and "Verify return code: 0 (ok)" in out, out
    # After STARTTLS: no STARTTLS offered again, AUTH offered.
    assert "250-AUTH PLAIN LOGIN" in out and "250-STARTTLS" not in out, out
    out = s_client(site, site.submission_port,
                   "-cert", str(site.pinned.cert_file), "-key", str(site.pinned.key_file),
                   "-groups", "P-256", commands=f"EHLO me\r\nMAIL FROM:<c@example.test>\r\n"
                                                f"RCPT TO:<{REMOTE}>\r\nQUIT\r\n")
    assert "250 2.1.5 Ok" in out, out
    assert "Server Temp Key: ECDH, prime256v1, 256 bits" in out, out
    site.daemon.wait_log(r"Untrusted TLS connection established from localhost\[127\.0\.0\.1\]: "
                         r"TLSv1\.3 with cipher TLS_AES_256_GCM_SHA384 \(256/256 bits\) "
                         r"key-exchange ECDHE \(prime256v1\) server-signature ECDSA "
                         r"\(prime256v1\) server-digest SHA256 client-signature ECDSA "
                         r"\(prime256v1\) client-digest SHA256$")


def test_rsa_server_signature_digest_matches_what_clients_see(
        secure_site_factory: SecureSiteFactory) -> None:
    """The summary's server-digest for RSA keys is the digest clients report,
    even when they prefer another (docs/architecture.md, "Inbound TLS")."""
    site = secure_site_factory(server_kind="rsa").start()
    out = s_client(site, site.daemon.smtp_port, "-sigalgs",
                   "rsa_pss_rsae_sha512:rsa_pss_rsae_sha384:rsa_pss_rsae_sha256",
                   "-groups", "X25519")
    assert "Peer signing digest: SHA256" in out and "Peer signature type: RSA-PSS" in out, out
    site.daemon.wait_log(r"Anonymous TLS connection established from localhost\[127\.0\.0\.1\]: "
                         r"TLSv1\.3 with cipher TLS_AES_256_GCM_SHA384 \(256/256 bits\) "
                         r"key-exchange X25519 server-signature RSA-PSS \(2048 bits\) "
                         r"server-digest SHA256$")


def test_sni_selects_another_certificate(secure_site_factory: SecureSiteFactory) -> None:
    site = secure_site_factory("tls_server_sni_maps = texthash:sni\nsmtpd_tls_loglevel = 2\n")
    other = site.ca.issue("mail.other.test", stem="other")
    # Postfix's format: each file a private key followed by its chain.
    assert site.ca.cert_file is not None
    other.key_file.write_bytes(other.key_file.read_bytes() + other.cert_file.read_bytes()
                               + site.ca.cert_file.read_bytes())
    (site.daemon.root / "sni").write_text(f"mail.other.test {other.key_file}\n")
    site.start()
    out = s_client(site, site.daemon.smtp_port, "-servername", "mail.other.test",
                   "-verify_hostname", "mail.other.test")
    assert "subject=CN = mail.other.test" in out and "Verification: OK" in out, out
    site.daemon.wait_log(r"Anonymous TLS connection established from localhost\[127\.0\.0\.1\] "
                         r"to mail\.other\.test: TLSv1\.3")
    out = s_client(site, site.daemon.smtp_port, "-servername", "unknown.example")
    assert "subject=CN = mx.example.test" in out, out
    site.daemon.wait_log(r"TLS SNI unknown\.example from localhost\[127\.0\.0\.1\] not matched, "
                         r"using default chain$")


def test_postfix_relays_to_us_over_tls(secure_site_factory: SecureSiteFactory,
                                       postfix_factory: PostfixFactory) -> None:
    """Postfix with smtp_tls_security_level = encrypt relays to Postern; our
    Received header shows Postfix's TLS session, and both sides log the same
    session details."""
    site = secure_site_factory(server_kind="rsa").start()
    client_cert = site.ca.client("postfix.test", stem="postfix-client")
    postfix = postfix_factory(main_cf=f"""\
relayhost = [127.0.0.1]:{site.submission_port}
smtp_tls_security_level = encrypt
smtp_tls_CAfile = {site.ca.cert_file}
smtp_tls_cert_file = {client_cert.cert_file}
smtp_tls_key_file = {client_cert.key_file}
smtp_tls_loglevel = 1
""")
    postfix.start()
    with smtplib.SMTP("127.0.0.1", postfix.port) as client:
        client.sendmail("someone@postfix.test", ["alice@example.test"],
                        b"Subject: via postfix\r\n\r\nrelayed over TLS\r\n")
    text = site.daemon.wait_maildir("alice", timeout=30)[0].read_text()
    header = re.search(r"^Received:.*\n(?:[ \t].*\n)*", text, re.M)
    assert header, text
    assert re.fullmatch(
        r"Received: from postfix\.test \(localhost \[127\.0\.0\.1\]\)\n"
        r"\t\(using TLSv1\.3 with cipher TLS_AES_256_GCM_SHA384 \(256/256 bits\)\n"
        r"\t key-exchange X25519 server-signature RSA-PSS \(2048 bits\) server-digest SHA256\n"
        r"\t client-signature ECDSA \(prime256v1\) client-digest SHA256\)\n"
        r"\t\(Client CN \"postfix\.test\", Issuer \"Postern Test CA\" \(verified OK\)\)\n"
        r"\tby mx\.example\.test \(Postern\) with ESMTPS id [0-9A-Z]{12}\n"
        r"\tfor <alice@example\.test>; .*\n", header.group(0)), header.group(0)
    ours = site.daemon.wait_log(r"Trusted TLS connection established from ")[0]
    theirs = postfix.wait_log(r"postfix/smtp\[\d+\]: \w+ TLS connection established to "
                              rf"127\.0\.0\.1\[127\.0\.0\.1\]:{site.submission_port}: ")[0]
    assert ours.split("[127.0.0.1]: ", 1)[1] == \
        theirs.split(f"[127.0.0.1]:{site.submission_port}: ", 1)[1], (ours, theirs)
