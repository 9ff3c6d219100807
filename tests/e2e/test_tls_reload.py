"""Certificates: reloaded on SIGHUP without dropping open sessions; private
keys that others can read stop the start (and a reload)."""

from __future__ import annotations

import hashlib
import os
import signal
import smtplib
import ssl

from tests.e2e.secure_env import SecureSite, SecureSiteFactory, message
from tests.helpers import run_mta, wait_for


def served_certificate(session: smtplib.SMTP) -> str:
    assert isinstance(session.sock, ssl.SSLSocket)
    certificate = session.sock.getpeercert(binary_form=True)
    assert certificate is not None
    return hashlib.sha256(certificate).hexdigest()


def test_sighup_reloads_certificates_and_keeps_sessions(site: SecureSite) -> None:
    daemon = site.daemon
    before = site.starttls(daemon.smtp_port)
    old = served_certificate(before)
    assert before.docmd("MAIL FROM:<early@example.org>")[0] == 250
    # A renewed certificate and key, in the same files.
    site.ca.issue("mx.example.test", "localhost", "127.0.0.1", stem="mx")
    assert daemon.process is not None
    daemon.process.send_signal(signal.SIGHUP)
    daemon.wait_log(r"reload -- configuration ")
    after = site.starttls(daemon.smtp_port)
    new = served_certificate(after)
    assert new != old
    after.sendmail("late@example.org", ["alice@example.test"], message("after reload"))
    after.quit()
    # The session that started before the reload goes on, on its old certificate.
    assert before.docmd("RCPT TO:<alice@example.test>")[0] == 250
    assert before.docmd("DATA")[0] == 354
    before.send(message("before reload") + b".\r\n")
    assert before.getreply()[0] == 250
    before.quit()
    assert len(daemon.wait_maildir("alice", 2)) == 2
    # A key others may read is refused on reload: the old one stays in service.
    os.chmod(site.tls_dir / "mx.key", 0o644)
    daemon.process.send_signal(signal.SIGHUP)
    daemon.wait_log(r"warning: reload failed, keeping the running configuration: "
                    r".*/tls/mx\.key: private key file is accessible by group or others "
                    r"\(mode 0644\); run: chmod 600 .*/tls/mx\.key$")
    again = site.starttls(daemon.smtp_port)
    assert served_certificate(again) == new
    again.quit()


def test_readable_private_key_refuses_to_start(secure_site_factory: SecureSiteFactory) -> None:
    site = secure_site_factory()
    os.chmod(site.tls_dir / "mx.key", 0o640)
    daemon = site.daemon.start(wait=False)
    process = daemon.process
    assert process is not None
    code = wait_for(lambda: process.poll(), message="mta start to exit")
    assert code == 1
    assert "private key file is accessible by group or others (mode 0640)" in \
        daemon.stderr_path.read_text()
    assert "fatal: " in daemon.log_text()
    assert daemon.stop() == 1  # already gone; closes its log file


def test_mta_sasl_command(secure_site_factory: SecureSiteFactory) -> None:
    site = secure_site_factory()
    config = site.daemon.config
    run_mta("sasl", "add", "carol@example.test", config=config, input=b"p4ss word\n")
    listed = run_mta("sasl", "list", config=config).stdout.decode().split()
    assert listed == ["alice@example.test", "bob", "carol@example.test"]
    passwd = site.daemon.root / "sasl_passwd"
    assert oct(passwd.stat().st_mode & 0o777) == "0o600"
    assert "p4ss" not in passwd.read_text()
    assert run_mta("sasl", "check", "carol@example.test", config=config,
                   input=b"p4ss word\n").returncode == 0
    assert run_mta("sasl", "check", "carol@example.test", config=config, input=b"nope\n",
                   check=False).returncode == 1
    run_mta("sasl", "delete", "carol@example.test", config=config)
    result = run_mta("sasl", "delete", "carol@example.test", config=config, check=False)
    assert result.returncode == 1 and b"no such user" in result.stderr
    # A new user can log in at once, without a reload.
    daemon = site.daemon.start()
    run_mta("sasl", "add", "dave", config=config, input=b"dave's secret\n")
    session = site.starttls(site.submission_port)
    assert session.login("dave", "dave's secret")[0] == 235
    session.quit()
    assert daemon.stop() == 0
