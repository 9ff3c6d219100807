"""Submission users may relay, but not as someone else: smtpd_sender_restrictions
set for the submission listener only, as an operator writes master.cf's -o."""

from __future__ import annotations

import re

import pytest

from tests.e2e.secure_env import REMOTE, USERS, SecureSite, SecureSiteFactory

ALICE = "alice@example.test"


@pytest.fixture
def site(secure_site_factory: SecureSiteFactory) -> SecureSite:
    site = secure_site_factory(
        "submission/inet/smtpd_sender_restrictions = reject_sender_login_mismatch\n")
    (site.daemon.root / "sender_login").write_text(
        f"{ALICE} {ALICE}\n"
        "bob@example.test bob\n")
    with site.daemon.config.open("a") as main_cf:
        main_cf.write("smtpd_sender_login_maps = texthash:sender_login\n")
    return site.start()


def rcpt_reply(site: SecureSite, sender: str, login: str | None) -> tuple[int, bytes]:
    """The reply to RCPT on the submission port (STARTTLS, AUTH as login)."""
    session = site.starttls(site.submission_port)
    if login is not None:
        session.login(login, USERS[login])
    assert session.docmd(f"MAIL FROM:<{sender}>") == (250, b"2.1.0 Ok")
    reply = session.docmd(f"RCPT TO:<{REMOTE}>")
    session.quit()
    return reply


def test_bob_may_send_as_himself_only(site: SecureSite) -> None:
    assert rcpt_reply(site, "bob@example.test", "bob") == (250, b"2.1.5 Ok")
    assert rcpt_reply(site, ALICE, "bob") == (
        553, f"5.7.1 <{ALICE}>: Sender address rejected: not owned by user bob".encode())
    site.daemon.wait_log(
        r"NOQUEUE: reject: RCPT from localhost\[127\.0\.0\.1\]: 553 5\.7\.1 "
        rf"<{re.escape(ALICE)}>: Sender address rejected: not owned by user bob; "
        rf"from=<{re.escape(ALICE)}> to=<{REMOTE}> proto=ESMTP helo=<laptop\.example>$")


def test_a_client_certificate_is_no_login(site: SecureSite) -> None:
    """The laptop's certificate lets it relay, but alice's address has an
    owner and the laptop did not log in."""
    session = site.starttls(site.submission_port, site.laptop)
    assert session.docmd(f"MAIL FROM:<{ALICE}>") == (250, b"2.1.0 Ok")
    assert session.docmd(f"RCPT TO:<{REMOTE}>") == (
        553, f"5.7.1 <{ALICE}>: Sender address rejected: not logged in".encode())
    session.quit()


def test_the_other_listeners_are_not_affected(site: SecureSite) -> None:
    """Only submission has the override: port 465 lets bob send as alice."""
    session = site.implicit()
    session.login("bob", USERS["bob"])
    assert session.docmd(f"MAIL FROM:<{ALICE}>") == (250, b"2.1.0 Ok")
    assert session.docmd(f"RCPT TO:<{REMOTE}>") == (250, b"2.1.5 Ok")
    session.quit()
