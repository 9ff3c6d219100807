"""The daemon and its certificates: encrypted keys opened with
tls_key_password_file (or the start stops, naming the key file), the expiry
warning in the maillog, the expiry metric, and both again on SIGHUP."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest

from mta.tls.pemfiles import write_private
from tests.fakes.certs import self_signed
from tests.helpers import Daemon, DaemonFactory, wait_for

TLS = """\
smtpd_tls_cert_file = tls/server.pem
smtpd_tls_key_file = tls/server.key
tls_key_password_file = tls/keypass
"""
DAY = 86400


def make_certificate(root: Path, days: int, passphrase: bytes = b"open sesame") -> None:
    self_signed("mx.example.test", days=days).write(root / "tls", "server", password=passphrase)


def set_passphrase(root: Path, text: str) -> None:
    write_private(root / "tls" / "keypass", text.encode() + b"\n")


def expiry_metric(daemon: Daemon, role: str = "smtpd") -> float | None:
    text = daemon.metrics()
    match = re.search(rf'^mta_tls_certificate_expiry_seconds\{{role="{role}"\}} (\S+)$',
                      text, re.M)
    return float(match.group(1)) if match else None


def exits_with(daemon: Daemon) -> tuple[int, str]:
    daemon.start(wait=False)
    assert daemon.process is not None
    code = daemon.process.wait(timeout=30)
    daemon.stop()
    return code, daemon.stderr_path.read_text()


def test_encrypted_key_expiry_warning_and_metric(daemon_factory: DaemonFactory) -> None:
    daemon = daemon_factory(TLS)
    make_certificate(daemon.root, days=10)
    set_passphrase(daemon.root, "open sesame")
    daemon.start()
    [line] = daemon.wait_log(r"warning: certificate tls/server.pem")
    assert re.search(r" postern/master\[\d+\]: warning: certificate tls/server.pem "
                     r"\(smtpd_tls_cert_file\) for CN=mx.example.test expires in 9 days, on "
                     r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$", line), line
    seconds = expiry_metric(daemon)
    assert seconds is not None and 10 * DAY - 300 < seconds <= 10 * DAY
    assert expiry_metric(daemon, "smtp_client") is None


def test_wrong_passphrase_stops_the_start(daemon_factory: DaemonFactory) -> None:
    daemon = daemon_factory(TLS)
    make_certificate(daemon.root, days=100)
    set_passphrase(daemon.root, "not it")
    code, stderr = exits_with(daemon)
    root = daemon.root.resolve()
    message = (f"{root}/tls/server.key: cannot decrypt the private key with the passphrase "
               f"from tls_key_password_file = {root}/tls/keypass: wrong passphrase?")
    assert code == 1
    assert f"mta: fatal: {message}" in stderr
    assert re.search(rf"postern/master\[\d+\]: fatal: {re.escape(message)}$", daemon.log_text(),
                     re.M)
    assert "daemon started" not in daemon.log_text()


def test_missing_passphrase_stops_the_start(daemon_factory: DaemonFactory) -> None:
    daemon = daemon_factory(TLS.replace("tls_key_password_file = tls/keypass\n", ""))
    make_certificate(daemon.root, days=100)
    code, stderr = exits_with(daemon)
    assert code == 1
    assert (f"mta: fatal: {daemon.root.resolve()}/tls/server.key: the private key is "
            f"encrypted, but no passphrase was given (tls_key_password_file is not set in "
            f"{daemon.config})") in stderr


def test_sighup_rereads_certificates_and_refuses_a_bad_passphrase(
        daemon_factory: DaemonFactory) -> None:
    daemon = daemon_factory(TLS)
    make_certificate(daemon.root, days=10)
    set_passphrase(daemon.root, "open sesame")
    daemon.start()
    assert daemon.process is not None
    make_certificate(daemon.root, days=100)  # renewed in place
    daemon.process.send_signal(signal.SIGHUP)
    daemon.wait_log(r"reload -- configuration")
    seconds = wait_for(lambda: (s if (s := expiry_metric(daemon) or 0) > 50 * DAY else None),
                       message="the metric to follow the renewed certificate")
    assert 100 * DAY - 300 < seconds <= 100 * DAY

    set_passphrase(daemon.root, "changed")
    daemon.process.send_signal(signal.SIGHUP)
    daemon.wait_log(r"warning: reload failed, keeping the running configuration: .*"
                    r"tls/server.key: cannot decrypt the private key")
    assert daemon.process.poll() is None
    assert 100 * DAY - 300 < (expiry_metric(daemon) or 0) <= 100 * DAY
    assert daemon.stop() == 0


@pytest.mark.parametrize("key_line", ["", "smtpd_tls_key_file = tls/server.key\n"])
def test_first_start_self_signed_is_watched(daemon_factory: DaemonFactory, key_line: str) -> None:
    """The embedded default's certificate, with the key in its own file or, when
    smtpd_tls_key_file is not set, in the certificate file (Postfix's default)."""
    daemon = daemon_factory("smtpd_tls_cert_file = tls/server.pem\n" + key_line +
                            "tls_self_signed_on_first_start = yes\n")
    daemon.start()
    daemon.wait_log(r"created a self-signed certificate for mx.example.test")
    seconds = expiry_metric(daemon)
    assert seconds is not None and seconds > 800 * DAY
    pem = (daemon.root / "tls" / "server.pem").read_bytes()
    assert (b"PRIVATE KEY" in pem) == (not key_line)
