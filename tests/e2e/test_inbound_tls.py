"""Inbound TLS end to end with Python's smtplib and raw sockets: STARTTLS,
its injection hazard, the TLS requirement, wrapper mode, and the exact
Received header and maillog formats."""

from __future__ import annotations

import contextlib
import re
import smtplib
import socket
import ssl
import time
from collections.abc import Iterator

import pytest

from tests.e2e.secure_env import SecureSite, SecureSiteFactory, message

DATE = r"\w{3}, [ \d]\d \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4} \(\w+\)"
QID = r"[0-9A-Z]{12}"


def received(text: str) -> str:
    """The first Received header of a message, with its continuation lines."""
    match = re.search(r"^Received:.*\n(?:[ \t].*\n)*", text, re.M)
    assert match, text
    return match.group(0)


def test_starttls_with_smtplib(site: SecureSite) -> None:
    daemon = site.daemon
    session = smtplib.SMTP("127.0.0.1", daemon.smtp_port, local_hostname="client.example")
    session.ehlo()
    assert session.has_extn("starttls") and not session.has_extn("auth")
    code, _ = session.starttls(context=site.context())  # server certificate verified
    assert code == 220
    assert isinstance(session.sock, ssl.SSLSocket)
    version, cipher = session.sock.version(), session.sock.cipher()
    session.ehlo()
    assert not session.has_extn("starttls")
    assert session.docmd("STARTTLS") == (554, b"5.5.1 Error: TLS already active")
    session.sendmail("bob@example.org", ["alice@example.test"], message("over TLS"))
    session.quit()
    assert cipher is not None
    assert (version, cipher[0]) == ("TLSv1.3", "TLS_AES_256_GCM_SHA384")
    header = received(daemon.wait_maildir("alice")[0].read_text())
    assert re.fullmatch(
        r"Received: from client\.example \(localhost \[127\.0\.0\.1\]\)\n"
        r"\t\(using TLSv1\.3 with cipher TLS_AES_256_GCM_SHA384 \(256/256 bits\)\n"
        r"\t key-exchange X25519 server-signature ECDSA \(prime256v1\) server-digest SHA256\)\n"
        r"\t\(No client certificate requested\)\n"
        rf"\tby mx\.example\.test \(Postern\) with ESMTPS id {QID}\n"
        rf"\tfor <alice@example\.test>; {DATE}\n", header), header
    daemon.wait_log(
        r"postern/smtpd\[\d+\]: Anonymous TLS connection established from "
        r"localhost\[127\.0\.0\.1\]: TLSv1\.3 with cipher TLS_AES_256_GCM_SHA384 "
        r"\(256/256 bits\) key-exchange X25519 server-signature ECDSA \(prime256v1\) "
        r"server-digest SHA256$")
    daemon.wait_log(r"disconnect from localhost\[127\.0\.0\.1\] ehlo=2 starttls=1/2 mail=1 "
                    r"rcpt=1 data=1 quit=1 commands=7/8$")


def test_plaintext_pipelined_behind_starttls_is_not_executed(site: SecureSite) -> None:
    """CVE-2011-0411: a command injected behind STARTTLS must not run after TLS."""
    with socket.create_connection(("127.0.0.1", site.daemon.smtp_port), timeout=20) as raw:
        reader = raw.makefile("rb")
        assert reader.readline().startswith(b"220 ")
        raw.sendall(b"EHLO attacker.example\r\n")
        while not reader.readline().startswith(b"250 "):
            pass
        raw.sendall(b"STARTTLS\r\nMAIL FROM:<evil@attacker.example>\r\n")
        assert reader.readline() == b"220 2.0.0 Ready to start TLS\r\n"
        tls = site.context().wrap_socket(raw, server_hostname="mx.example.test")
        tls_reader = tls.makefile("rb")
        tls.sendall(b"RCPT TO:<alice@example.test>\r\n")
        assert tls_reader.readline() == b"503 5.5.1 Error: need MAIL command\r\n"
        tls.sendall(b"QUIT\r\n")
        assert tls_reader.readline() == b"221 2.0.0 Bye\r\n"
        tls_reader.close()
        reader.close()
        tls.close()
    site.daemon.wait_log(r"disconnect from localhost\[127\.0\.0\.1\] ehlo=1 starttls=1 "
                         r"rcpt=0/1 quit=1 commands=3/4$")
    assert "evil@attacker.example" not in site.daemon.log_text()


def test_tls_required_on_submission(site: SecureSite) -> None:
    session = smtplib.SMTP("127.0.0.1", site.submission_port, local_hostname="laptop")
    session.ehlo()
    assert session.has_extn("starttls") and not session.has_extn("auth")
    for command in ("MAIL FROM:<a@example.test>", "RCPT TO:<alice@example.test>", "DATA",
                    "AUTH PLAIN AGFsaWNlAHB3", "VRFY alice"):
        assert session.docmd(command) == (530, b"5.7.0 Must issue a STARTTLS command first")
    assert session.docmd("NOOP")[0] == 250
    assert session.docmd("RSET")[0] == 250
    assert session.docmd("FOO")[0] == 500  # unknown commands: as always
    session.starttls(context=site.context())
    session.ehlo()
    assert session.has_extn("auth") and session.esmtp_features["auth"].split() == ["PLAIN", "LOGIN"]
    session.quit()


def test_implicit_tls_behaves_like_starttls(site: SecureSite) -> None:
    session = site.implicit(site.laptop)
    assert not session.has_extn("starttls")
    assert session.esmtp_features["auth"].split() == ["PLAIN", "LOGIN"]
    session.sendmail("laptop@example.test", ["alice@example.test", "someone@remote.example"],
                     message("implicit"))
    session.quit()
    header = received(site.daemon.wait_maildir("alice")[0].read_text())
    assert re.fullmatch(
        r"Received: from laptop\.example \(localhost \[127\.0\.0\.1\]\)\n"
        r"\t\(using TLSv1\.3 with cipher TLS_AES_256_GCM_SHA384 \(256/256 bits\)\n"
        r"\t key-exchange X25519 server-signature ECDSA \(prime256v1\) server-digest SHA256\n"
        r"\t client-signature ECDSA \(prime256v1\) client-digest SHA256\)\n"
        r"\t\(Client CN \"laptop\.example\", Issuer \"Postern Test CA\" \(verified OK\)\)\n"
        rf"\tby mx\.example\.test \(Postern\) with ESMTPS id {QID};\n"
        rf"\t{DATE}\n", header), header
    site.daemon.wait_log(r"Trusted TLS connection established from localhost\[127\.0\.0\.1\]: "
                         r"TLSv1\.3 with cipher TLS_AES_256_GCM_SHA384 \(256/256 bits\) "
                         r"key-exchange X25519 server-signature ECDSA \(prime256v1\) server-digest "
                         r"SHA256 client-signature ECDSA \(prime256v1\) client-digest SHA256$")
    site.daemon.wait_log(r"disconnect from localhost\[127\.0\.0\.1\] ehlo=1 mail=1 rcpt=2 "
                         r"data=1 quit=1 commands=6$")


@contextlib.contextmanager
def before_the_handshake(port: int) -> Iterator[socket.socket]:
    """A raw session after EHLO, STARTTLS and the 220: the server awaits a handshake.
    Leaving the block closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as raw, \
            raw.makefile("rb") as reader:  # the socket closes only when its file object does
        reader.readline()
        raw.sendall(b"EHLO x\r\n")  # its reply before STARTTLS (RFC 2920 §3.1)
        while not (line := reader.readline()).startswith(b"250 "):
            assert line, "closed before the EHLO reply"
        raw.sendall(b"STARTTLS\r\n")
        assert reader.readline().startswith(b"220 2.0.0")
        yield raw


def wait_lost_after_starttls(site: SecureSite, ssl_error: str) -> None:
    site.daemon.wait_log(rf"SSL_accept error from localhost\[127\.0\.0\.1\]: {ssl_error}")
    site.daemon.wait_log(r"lost connection after STARTTLS from localhost\[127\.0\.0\.1\]$")
    site.daemon.wait_log(r"disconnect from localhost\[127\.0\.0\.1\] ehlo=1 starttls=0/1 "
                         r"commands=1/2$")


def test_handshake_failure_is_logged(site: SecureSite) -> None:
    with before_the_handshake(site.daemon.smtp_port) as raw:
        raw.sendall(b"this is not a TLS record\r\n")
        assert raw.recv(100)[:1] in (b"\x15", b"")  # a TLS alert, then the end
    wait_lost_after_starttls(site, r"\w.*")
    # Wrapper mode: no greeting before the handshake; a failed one ends the session.
    with socket.create_connection(("127.0.0.1", site.submissions_port), timeout=20) as raw:
        raw.sendall(b"EHLO plaintext.example\r\n")
        assert raw.recv(100)[:1] in (b"\x15", b"")
    site.daemon.wait_log(r"lost connection after CONNECT from localhost\[127\.0\.0\.1\]$")


def test_required_client_certificate(secure_site_factory: SecureSiteFactory) -> None:
    site = secure_site_factory("submission/inet/smtpd_tls_req_ccert = yes\n").start()
    session = site.starttls(site.submission_port, site.laptop)
    assert session.docmd("NOOP")[0] == 250
    session.quit()
    session = smtplib.SMTP("127.0.0.1", site.submission_port)
    session.starttls(context=site.context(site.stranger))  # the handshake succeeds
    with pytest.raises(smtplib.SMTPServerDisconnected):
        code = session.ehlo()[0]
        assert code == 421
        session.noop()
    session.close()
    site.daemon.wait_log(r"NOQUEUE: abort: TLS from localhost\[127\.0\.0\.1\]: "
                         r"Client certificate not trusted$")
    session = smtplib.SMTP("127.0.0.1", site.submission_port)
    session.starttls(context=site.context())
    assert session.docmd("EHLO", "x") == (
        421, b"4.7.1 mx.example.test Error: No client certificate presented")
    session.close()
    site.daemon.wait_log(r"NOQUEUE: abort: TLS from localhost\[127\.0\.0\.1\]: "
                         r"No client certificate presented$")


def test_tls_required_per_client_network(secure_site_factory: SecureSiteFactory) -> None:
    site = secure_site_factory("smtpd_tls_policy_maps = cidr:smtpd_tls_policy\n"
                               "smtpd_tls_loglevel = 0\n")
    (site.daemon.root / "smtpd_tls_policy").write_text(
        "# the partner's outbound relays must use TLS\n127.0.0.2/32 musttls\n")
    site.start()
    partner = smtplib.SMTP("127.0.0.1", site.daemon.smtp_port,
                           source_address=("127.0.0.2", 0))
    partner.ehlo("partner.example")
    assert partner.docmd("MAIL FROM:<p@partner.example>") == (
        530, b"5.7.0 Must issue a STARTTLS command first")
    partner.starttls(context=site.context())
    partner.sendmail("p@partner.example", ["alice@example.test"], message("partner"))
    partner.quit()
    stranger = smtplib.SMTP("127.0.0.1", site.daemon.smtp_port)  # 127.0.0.1: plaintext ok
    stranger.sendmail("s@stranger.example", ["alice@example.test"], message("stranger"))
    stranger.quit()
    site.daemon.wait_maildir("alice", 2)
    site.daemon.wait_log(r"disconnect from unknown\[127\.0\.0\.2\] ehlo=2 starttls=1 mail=1/2 ")
    assert "TLS connection established" not in site.daemon.log_text()  # loglevel 0


def test_old_tls_versions_are_refused(site: SecureSite) -> None:
    old = site.context()
    old.set_ciphers("DEFAULT:@SECLEVEL=0")
    with pytest.warns(DeprecationWarning):
        old.minimum_version = ssl.TLSVersion.TLSv1_1
        old.maximum_version = ssl.TLSVersion.TLSv1_1
    session = smtplib.SMTP("127.0.0.1", site.daemon.smtp_port)
    with pytest.raises((ssl.SSLError, smtplib.SMTPServerDisconnected, ConnectionError)):
        session.starttls(context=old)
    site.daemon.wait_log(r"SSL_accept error from localhost\[127\.0\.0\.1\]: "
                         r"unsupported protocol$")


SLOW_HANDSHAKE = "smtpd_timeout = 1s\nsmtpd_starttls_timeout = 3s\n"


def silence_until_closed(raw: socket.socket) -> tuple[bytes, float]:
    """What the server sends a client that goes quiet, and how long it takes
    the server to hang up."""
    start = time.monotonic()
    received = b""
    while chunk := raw.recv(4096):
        received += chunk
    return received, time.monotonic() - start


def test_starttls_timeout_bounds_the_handshake_not_the_idle_timer(
        secure_site_factory: SecureSiteFactory) -> None:
    """Postfix: smtpd_starttls_timeout bounds the handshake, even when
    smtpd_timeout is shorter, and no cleartext reply goes into what the client
    reads as TLS; the server just hangs up."""
    site = secure_site_factory(SLOW_HANDSHAKE).start()
    with before_the_handshake(site.daemon.smtp_port) as raw:
        raw.sendall(b"\x16\x03\x01\x02\x00")  # a ClientHello's record header, then silence
        received, elapsed = silence_until_closed(raw)
    assert received == b""
    assert 2.5 < elapsed < 10, elapsed
    wait_lost_after_starttls(site, "Connection timed out$")
    # Wrapper mode: the same limit, before any greeting.
    with socket.create_connection(("127.0.0.1", site.submissions_port), timeout=20) as raw:
        raw.sendall(b"\x16\x03\x01\x02\x00")
        received, elapsed = silence_until_closed(raw)
    assert received == b""
    assert 2.5 < elapsed < 10, elapsed
    site.daemon.wait_log(r"SSL_accept error from localhost\[127\.0\.0\.1\]: "
                         r"Connection timed out$", count=2)
    site.daemon.wait_log(r"lost connection after CONNECT from localhost\[127\.0\.0\.1\]$")
    assert "timeout after" not in site.daemon.log_text()


def test_idle_timer_restarts_after_the_handshake(secure_site_factory: SecureSiteFactory
                                                 ) -> None:
    """A client slower to start its handshake than smtpd_timeout (but within
    smtpd_starttls_timeout) gets its TLS session; then smtpd_timeout applies
    again, and its 421 is sent over TLS."""
    site = secure_site_factory(SLOW_HANDSHAKE).start()
    context = site.context()
    with socket.create_connection(("127.0.0.1", site.submissions_port), timeout=20) as raw:
        time.sleep(1.5)  # the slow client is the point of the test
        tls = context.wrap_socket(raw, server_hostname="mx.example.test")
        assert tls.recv(4096).startswith(b"220 ")
        received, elapsed = b"", time.monotonic()
        while chunk := tls.recv(4096):
            received += chunk
        elapsed = time.monotonic() - elapsed
    assert received == b"421 4.4.2 mx.example.test Error: timeout exceeded\r\n"
    assert 0.5 < elapsed < 2.5, elapsed  # smtpd_timeout, not smtpd_starttls_timeout
    site.daemon.wait_log(r"timeout after CONNECT from localhost\[127\.0\.0\.1\]$")


def test_client_gone_during_the_handshake(site: SecureSite) -> None:
    with before_the_handshake(site.daemon.smtp_port):
        pass
    wait_lost_after_starttls(site, "lost connection$")


# Each limit of the implicit-TLS listener set to one, and what the refusal logs.
OVER_A_LIMIT = {
    "per client": ("smtpd_client_event_limit_exceptions =\n"
                   "submissions/inet/smtpd_client_connection_count_limit = 1\n",
                   r"warning: Connection concurrency limit exceeded: 2 from "
                   r"localhost\[127\.0\.0\.1\] for service submissions$"),
    "listener total": ("receiver_processes = 0\n"
                       "submissions/inet/smtpd_client_connection_limit = 1\n",
                       r"warning: Connection limit exceeded: 2 for service submissions$"),
}


@pytest.mark.parametrize("limit", sorted(OVER_A_LIMIT))
def test_a_client_over_a_limit_of_the_wrapper_mode_listener_gets_no_cleartext(
        secure_site_factory: SecureSiteFactory, limit: str) -> None:
    """RFC 8314 §3: the client's first bytes are a ClientHello and it reads
    TLS records only, so a cleartext 421 would be garbage to it. We close
    without a byte (docs/smtpd.md, Differences from Postfix)."""
    settings, warning = OVER_A_LIMIT[limit]
    site = secure_site_factory(settings).start()
    first = site.implicit()  # holds the one place
    try:
        with socket.create_connection(("127.0.0.1", site.submissions_port), timeout=20) as raw:
            received, _ = silence_until_closed(raw)
        assert received == b""
        with pytest.raises((ssl.SSLError, smtplib.SMTPServerDisconnected, ConnectionError)):
            site.implicit()  # a real TLS client: its handshake or greeting never comes
        site.daemon.wait_log(warning, count=2)
        assert first.noop()[0] == 250
    finally:
        first.quit()
    site.daemon.wait_log(r"disconnect from localhost\[127\.0\.0\.1\] commands=0/0$", count=2)
    assert "SSL_accept error" not in site.daemon.log_text()  # a refusal, not a TLS failure
    site.implicit().quit()  # the place is free again


def test_a_large_message_over_tls(site: SecureSite) -> None:
    """8 MB through the TLS engine, then another message in the same session."""
    line = b"x" * 76 + b"\r\n"
    body = b"Subject: big\r\n\r\n" + line * (8 * 1024 * 1024 // len(line))
    session = site.starttls(site.daemon.smtp_port)
    session.sendmail("bob@example.org", ["alice@example.test"], body)
    session.sendmail("bob@example.org", ["alice@example.test"], message("after the big one"))
    session.quit()
    files = site.daemon.wait_maildir("alice", 2)
    big = max(files, key=lambda f: f.stat().st_size).read_bytes()
    assert big.count(b"x" * 76 + b"\n") == (len(body) - 16) // len(line)  # Maildir: LF
