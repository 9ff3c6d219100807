"""End to end: a client certificate made by ``mta cert issue-client`` relays
through the submission listener under permit_tls_all_clientcerts, and the
relay_clientcerts line it printed lets it relay under permit_tls_clientcerts.
"""

from __future__ import annotations

import smtplib
import ssl
from pathlib import Path

import pytest

from tests.helpers import Daemon, DaemonFactory, free_port, run_mta

PASSWORD = "mobile-secret"
REMOTE = "friend@elsewhere.example"

CONFIG = """\
smtpd_tls_cert_file = tls/server.pem
smtpd_tls_key_file = tls/server.key
smtpd_tls_CAfile = tls/ca.pem
relay_clientcerts = texthash:relay_clientcerts
submission/inet = 127.0.0.1:{all_port}
submission/inet/smtpd_tls_security_level = encrypt
submission/inet/smtpd_tls_ask_ccert = yes
submission/inet/smtpd_relay_restrictions = permit_tls_all_clientcerts, reject_unauth_destination
pinned/inet = 127.0.0.1:{pinned_port}
pinned/inet/smtpd_tls_security_level = encrypt
pinned/inet/smtpd_tls_ask_ccert = yes
pinned/inet/smtpd_relay_restrictions = permit_tls_clientcerts, reject_unauth_destination
"""


def cert_cmd(daemon: Daemon, *args: str) -> str:
    return run_mta("cert", *args, config=daemon.config).stdout.decode()


@pytest.fixture
def site(daemon_factory: DaemonFactory) -> tuple[Daemon, int, int]:
    all_port, pinned_port = free_port(), free_port()
    daemon = daemon_factory(CONFIG.format(all_port=all_port, pinned_port=pinned_port))
    root = daemon.root
    (root / "pw").write_text(PASSWORD + "\n")
    (root / "tls").mkdir()
    cert_cmd(daemon, "self-signed", "--name", "mx.example.test", "--san", "127.0.0.1",
             "--cert", "tls/server.pem", "--key", "tls/server.key")
    cert_cmd(daemon, "ca", "init", "--name", "Example Mail CA", "--ca-cert", "tls/ca.pem",
             "--ca-key", "tls/ca.key")
    line = cert_cmd(daemon, "issue-client", "alice@example.test", "--password-file", "pw",
                    "--ca-cert", "tls/ca.pem", "--ca-key", "tls/ca.key")
    # bob: same CA, but his line is not in relay_clientcerts
    cert_cmd(daemon, "issue-client", "bob@example.test", "--password-file", "pw",
             "--ca-cert", "tls/ca.pem", "--ca-key", "tls/ca.key")
    # mallory: a CA of her own, which smtpd does not trust
    cert_cmd(daemon, "ca", "init", "--name", "Mallory CA", "--ca-cert", "rogue.pem",
             "--ca-key", "rogue.key")
    cert_cmd(daemon, "issue-client", "mallory@example.test", "--password-file", "pw",
             "--ca-cert", "rogue.pem", "--ca-key", "rogue.key")
    (root / "relay_clientcerts").write_text("# made by mta cert issue-client\n" + line)
    daemon.start()
    return daemon, all_port, pinned_port


def client_context(root: Path, user: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(root / "tls" / "server.pem"))
    if user:
        context.load_cert_chain(str(root / f"{user}.pem"), str(root / f"{user}.key"),
                                password=PASSWORD)
    return context


def relay(root: Path, port: int, user: str | None, recipient: str = REMOTE
          ) -> tuple[int, str]:
    """STARTTLS (with user's certificate), MAIL, RCPT: the RCPT reply; DATA when
    accepted. A refused handshake counts as not relayed."""
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=15) as smtp:
            smtp.ehlo("laptop.example")
            smtp.starttls(context=client_context(root, user))
            smtp.ehlo("laptop.example")
            smtp.mail(user or "nobody@example.test")
            code, text = smtp.rcpt(recipient)
            if code == 250:
                data_code, _ = smtp.data(b"Subject: via client certificate\r\n\r\nhello\r\n")
                assert data_code == 250
            return code, text.decode()
    except (ssl.SSLError, smtplib.SMTPServerDisconnected, ConnectionResetError) as error:
        return 0, f"handshake refused: {error}"


def test_issued_certificate_relays_under_permit_tls_all_clientcerts(
        site: tuple[Daemon, int, int]) -> None:
    daemon, all_port, _ = site
    assert relay(daemon.root, all_port, "alice@example.test")[0] == 250
    assert relay(daemon.root, all_port, "bob@example.test")[0] == 250
    code, text = relay(daemon.root, all_port, None)
    assert (code, text) == (554, f"5.7.1 <{REMOTE}>: Relay access denied")
    assert relay(daemon.root, all_port, "mallory@example.test")[0] != 250


def test_printed_line_relays_under_permit_tls_clientcerts(site: tuple[Daemon, int, int]) -> None:
    daemon, _, pinned_port = site
    assert relay(daemon.root, pinned_port, "alice@example.test")[0] == 250
    # trusted by the CA, but not pinned: permit_tls_clientcerts does not care
    code, text = relay(daemon.root, pinned_port, "bob@example.test")
    assert (code, text) == (554, f"5.7.1 <{REMOTE}>: Relay access denied")


def test_received_header_names_the_verified_client(site: tuple[Daemon, int, int]) -> None:
    daemon, all_port, _ = site
    assert relay(daemon.root, all_port, "alice@example.test", "alice@example.test")[0] == 250
    [message] = daemon.wait_maildir("alice")
    assert '(Client CN "alice@example.test", Issuer "Example Mail CA" (verified OK))' in \
        message.read_text()
