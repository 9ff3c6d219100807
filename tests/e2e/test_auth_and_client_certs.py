"""Mobile users: relaying with AUTH over TLS, or with a client certificate
(from the site's CA, or self-signed and pinned by fingerprint)."""

from __future__ import annotations

import base64
import re
import smtplib
import ssl
import time

import pytest

from tests.e2e.secure_env import REMOTE, USERS, SecureSite, SecureSiteFactory, message
from tests.helpers import wait_for

ALICE = "alice@example.test"
RELAY_DENIED = (554, f"5.7.1 <{REMOTE}>: Relay access denied".encode())


@pytest.fixture
def site(secure_site_factory: SecureSiteFactory) -> SecureSite:
    return secure_site_factory("smtpd_sasl_auth_enable = yes\n"
                               "smtpd_sasl_authenticated_header = yes\n").start()


def plain(user: str, password: str) -> str:
    return base64.b64encode(f"\0{user}\0{password}".encode()).decode()


def wait_authenticated_delivery(site: SecureSite, certificate_clause: str, user: str) -> None:
    """Alice's message says in its Received header what the client's certificate
    was and who logged in, and the maillog names the SASL login."""
    text = site.daemon.wait_maildir("alice")[0].read_text()
    assert re.search(rf"^\t\({re.escape(certificate_clause)}\)\n"
                     rf"\t\(Authenticated sender: {re.escape(user)}\)\n"
                     r"\tby mx\.example\.test \(Postern\) with ESMTPSA id ", text, re.M), text
    site.daemon.wait_log(r"postern/smtpd\[\d+\]: [0-9A-Z]{12}: client=localhost\[127\.0\.0\.1\], "
                         rf"sasl_method=PLAIN, sasl_username={re.escape(user)}$")


def test_auth_refused_before_tls_and_accepted_after(site: SecureSite) -> None:
    # The public port offers AUTH too here (smtpd_sasl_auth_enable = yes), but
    # only under TLS (smtpd_tls_auth_only = yes, our default).
    session = smtplib.SMTP("127.0.0.1", site.daemon.smtp_port)
    session.ehlo("laptop.example")
    assert not session.has_extn("auth")
    assert session.docmd("AUTH", f"PLAIN {plain(ALICE, USERS[ALICE])}") == (
        538, b"5.7.11 Encryption required for requested authentication mechanism")
    session.starttls(context=site.context())
    assert session.docmd("AUTH", f"PLAIN {plain(ALICE, USERS[ALICE])}") == (
        503, b"5.5.1 Error: send HELO/EHLO first")  # EHLO is forgotten after STARTTLS
    session.ehlo("laptop.example")
    assert session.esmtp_features["auth"].split() == ["PLAIN", "LOGIN"]
    assert session.login(ALICE, USERS[ALICE]) == (235, b"2.7.0 Authentication successful")
    assert session.docmd("AUTH", "PLAIN") == (503, b"5.5.1 Error: already authenticated")
    session.sendmail(ALICE, [REMOTE, ALICE], message("authenticated"))
    session.quit()
    wait_authenticated_delivery(site, "No client certificate requested", ALICE)
    site.daemon.wait_log(r"disconnect from localhost\[127\.0\.0\.1\] ehlo=2 starttls=1 "
                         r"auth=1/4 mail=1 rcpt=2 data=1 quit=1 commands=9/12$")


def test_wrong_password_gets_535_and_is_slowed_down(site: SecureSite) -> None:
    session = site.starttls(site.submission_port)
    timings = []
    for _ in range(3):
        start = time.monotonic()
        assert session.docmd("AUTH", f"PLAIN {plain(ALICE, 'wrong')}") == (
            535, b"5.7.8 Error: authentication failed: authentication failure")
        timings.append(time.monotonic() - start)
    # smtpd_sasl_failure_delay = 0.5s: the 2nd waits 0.5s, the 3rd 1s.
    assert timings[0] < 0.5 and 0.5 <= timings[1] < 1.0 and timings[2] >= 1.0, timings
    assert session.docmd("AUTH", f"PLAIN {plain('nobody', 'x')}")[0] == 535
    # LOGIN, step by step, and the client's "*" (RFC 4954 §4).
    assert session.docmd("AUTH", "LOGIN") == (334, b"VXNlcm5hbWU6")
    assert session.docmd(base64.b64encode(b"bob").decode()) == (334, b"UGFzc3dvcmQ6")
    assert session.docmd(base64.b64encode(USERS["bob"].encode()).decode()) == (
        235, b"2.7.0 Authentication successful")
    session.quit()
    session = site.starttls(site.submission_port)
    assert session.docmd("AUTH", "PLAIN") == (334, b"")
    assert session.docmd("*") == (501, b"5.7.0 Authentication aborted")
    assert session.docmd("AUTH", "PLAIN not-base64!") == (
        535, b"5.7.8 Error: authentication failed: Invalid base64 data in initial response")
    assert session.docmd("AUTH", "CRAM-MD5") == (504, b"5.5.4 Unrecognized authentication type")
    assert session.docmd("MAIL FROM:<x@example.test>")[0] == 250
    assert session.docmd("AUTH", "PLAIN") == (503, b"5.5.1 Error: MAIL transaction in progress")
    session.quit()
    # fail2ban's postfix-sasl filter matches this line.
    site.daemon.wait_log(r"warning: localhost\[127\.0\.0\.1\]: SASL PLAIN authentication "
                         r"failed: authentication failure, sasl_username=alice@example\.test$",
                         count=3)
    site.daemon.wait_log(r"warning: localhost\[127\.0\.0\.1\]: SASL PLAIN authentication "
                         r"failed: authentication failure, sasl_username=nobody$")
    site.daemon.wait_log(r"warning: localhost\[127\.0\.0\.1\]: SASL PLAIN authentication "
                         r"aborted$")


def test_a_response_that_is_not_base64_is_a_failure(site: SecureSite) -> None:
    """Answered, logged, counted and slowed down like a wrong password, in the
    words of Postfix with Dovecot SASL, on the AUTH line and after a 334."""
    session = site.starttls(site.submission_port)
    start = time.monotonic()
    assert session.docmd("AUTH", "PLAIN !!!notbase64") == (
        535, b"5.7.8 Error: authentication failed: Invalid base64 data in initial response")
    assert time.monotonic() - start < 0.5  # the first failure is not delayed
    assert session.docmd("AUTH", "LOGIN") == (334, b"VXNlcm5hbWU6")
    assert session.docmd(base64.b64encode(b"bob").decode()) == (334, b"UGFzc3dvcmQ6")
    start = time.monotonic()
    assert session.docmd("not base64!") == (
        535, b"5.7.8 Error: authentication failed: Invalid base64 data in continued response")
    # smtpd_sasl_failure_delay = 0.5s: the second failure waits 0.5s.
    assert time.monotonic() - start >= 0.5
    session.quit()
    site.daemon.wait_log(r"warning: localhost\[127\.0\.0\.1\]: SASL PLAIN authentication "
                         r"failed: Invalid base64 data in initial response, "
                         r"sasl_username=\(unavailable\)$")
    site.daemon.wait_log(r"warning: localhost\[127\.0\.0\.1\]: SASL LOGIN authentication "
                         r"failed: Invalid base64 data in continued response, "
                         r"sasl_username=\(unavailable\)$")
    site.daemon.wait_log(r"disconnect from localhost\[127\.0\.0\.1\] ehlo=2 starttls=1 "
                         r"auth=0/2 quit=1 commands=4/6$")
    lines = [f'mta_smtpd_auth_total{{listener="submission",mechanism="{mechanism}",'
             'result="failure"} 1.0' for mechanism in ("PLAIN", "LOGIN")]

    def counted() -> bool:
        text = site.daemon.metrics()
        return all(line in text for line in lines)

    wait_for(counted, message="the AUTH failures in the metrics")


def test_auth_on_port_465(site: SecureSite) -> None:
    session = site.implicit()
    session.login("bob", USERS["bob"])
    session.sendmail("bob@example.test", [REMOTE, ALICE], message("465"))
    session.quit()
    wait_authenticated_delivery(site, "Client did not present a certificate", "bob")


@pytest.mark.parametrize("implicit", [False, True], ids=["starttls", "implicit"])
def test_mobile_users_with_client_certificates(site: SecureSite, implicit: bool) -> None:
    """CA-issued and pinned certificates relay; no certificate or an unpinned one
    does not; the handshake succeeds every time."""
    cases = [(site.laptop, 250, "Trusted"), (None, 554, "Anonymous"),
             (site.pinned, 250, "Untrusted"), (site.pinned_key, 250, "Untrusted"),
             (site.stranger, 554, "Untrusted")]
    for client, code, trust in cases:
        session = (site.implicit(client) if implicit
                   else site.starttls(site.submission_port, client))
        assert isinstance(session.sock, ssl.SSLSocket)
        assert session.sock.version() == "TLSv1.3"  # handshake done, certificate or not
        assert session.docmd("MAIL FROM:<mobile@example.test>")[0] == 250
        reply = session.docmd(f"RCPT TO:<{REMOTE}>")
        if code == 250:
            assert reply == (250, b"2.1.5 Ok")
        else:
            assert reply == RELAY_DENIED
        session.quit()
        site.daemon.wait_log(rf"{trust} TLS connection established from "
                             r"localhost\[127\.0\.0\.1\]: TLSv1\.3")
    site.daemon.wait_log(r"NOQUEUE: reject: RCPT from localhost\[127\.0\.0\.1\]: 554 5\.7\.1 "
                         rf"<{REMOTE}>: Relay access denied; from=<mobile@example\.test> "
                         rf"to=<{REMOTE}> proto=ESMTP helo=<laptop\.example>$", count=2)


def test_pinned_certificate_in_received_header(site: SecureSite) -> None:
    session = site.starttls(site.submission_port, site.pinned)
    session.sendmail("carol@example.test", [ALICE], message("pinned"))
    session.quit()
    text = site.daemon.wait_maildir("alice")[0].read_text()
    assert "\t(Client CN \"pinned.example\", Issuer \"pinned.example\" (not verified))\n" \
        in text, text


def test_metrics_count_handshakes_certificates_and_auth(site: SecureSite) -> None:

    for client in (site.laptop, site.pinned, site.stranger, None):
        site.starttls(site.submission_port, client).quit()
    session = site.implicit()
    session.docmd("AUTH", f"PLAIN {plain(ALICE, 'wrong')}")
    session.login(ALICE, USERS[ALICE])
    session.quit()
    def metrics() -> str:
        text = site.daemon.metrics()
        return text if 'mta_smtpd_auth_total{listener="submissions",mechanism="PLAIN",' \
                       'result="success"} 1.0' in text else ""

    text = wait_for(metrics, message="metrics")
    for line in (
        'mta_smtpd_tls_handshakes_total{listener="submission",protocol="TLSv1.3",'
        'result="success",trust="trusted"} 1.0',
        'mta_smtpd_tls_handshakes_total{listener="submission",protocol="TLSv1.3",'
        'result="success",trust="untrusted"} 2.0',
        'mta_smtpd_tls_handshakes_total{listener="submissions",protocol="TLSv1.3",'
        'result="success",trust="anonymous"} 1.0',
        'mta_smtpd_tls_client_certificates_total{listener="submission",outcome="pinned"} 1.0',
        'mta_smtpd_tls_client_certificates_total{listener="submission",outcome="untrusted"} '
        '1.0',
        'mta_smtpd_tls_client_certificates_total{listener="submission",outcome="absent"} 1.0',
        'mta_smtpd_auth_total{listener="submissions",mechanism="PLAIN",result="failure"} 1.0',
    ):
        assert line in text, line


def test_a_malformed_response_is_a_failure_and_an_over_long_one_is_500(site: SecureSite) -> None:
    """A PLAIN message without its two NULs, or a name that is not UTF-8, fails
    the login as Dovecot fails it (535, logged, counted, slowed down); a
    response longer than line_length_limit gets RFC 4954 §6's 500 5.5.6 and
    the session goes on."""
    session = site.starttls(site.submission_port)
    no_nuls = base64.b64encode(b"alice-and-her-password").decode()
    assert session.docmd("AUTH", f"PLAIN {no_nuls}") == (
        535, b"5.7.8 Error: authentication failed: malformed PLAIN response")
    assert session.docmd("AUTH", "LOGIN") == (334, b"VXNlcm5hbWU6")
    start = time.monotonic()
    assert session.docmd(base64.b64encode(b"\xff\xfe").decode()) == (
        535, b"5.7.8 Error: authentication failed: response is not UTF-8")
    assert time.monotonic() - start >= 0.5  # the second failure waits (failure_delay 0.5s)
    assert session.docmd("AUTH", "PLAIN") == (334, b"")
    assert session.docmd("A" * 5000) == (500, b"5.5.6 Authentication Exchange line is too long")
    assert session.docmd("NOOP") == (250, b"2.0.0 Ok")  # the line was read to its end
    session.quit()
    site.daemon.wait_log(r"warning: localhost\[127\.0\.0\.1\]: SASL PLAIN authentication "
                         r"failed: malformed PLAIN response, sasl_username=\(unavailable\)$")
    site.daemon.wait_log(r"warning: localhost\[127\.0\.0\.1\]: SASL LOGIN authentication "
                         r"failed: response is not UTF-8, sasl_username=\(unavailable\)$")
