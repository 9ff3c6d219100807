"""smtpd_sender_restrictions and smtpd_sender_login_maps, against Postfix's smtpd_check.c.

An authenticated submission user may relay, but not as someone else. The
sessions run an in-process receiver on 127.0.0.1 that offers AUTH PLAIN
without TLS (smtpd_tls_auth_only = no: the test is about the sender, not
the channel).
"""

from __future__ import annotations

import base64
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from mta import sasl
from mta.config import from_text
from mta.errors import ConfigError
from mta.master import build_parts
from mta.sasl import FailureTracker
from mta.smtpd import replies
from mta.smtpd.checks import ClientFacts
from mta.smtpd.security import build_security
from tests.helpers import IN_PROCESS_CF, in_process_smtpd, one_at_a_time

LOGINS = ("smtpd_sender_login_maps = inline:{ bob@mx.test=bob, "
          "shared@mx.test=alice bob, @partner.test=carol }\n")
STRICT = "smtpd_sender_restrictions = reject_sender_login_mismatch\n" + LOGINS
NOT_OWNED = "553 5.7.1 <{}>: Sender address rejected: not owned by user {}"
NOT_LOGGED_IN = "553 5.7.1 <{}>: Sender address rejected: not logged in"
BOB = "AUTH PLAIN " + base64.b64encode(b"\0bob\0bob-pw").decode()

Converse = Callable[[list[str]], Awaitable[list[str]]]


def auth_cf(tmp_path: Path) -> str:
    """AUTH for bob (password bob-pw) on the in-process listener."""
    passwords = tmp_path / "sasl_passwd"
    sasl.update_password_file(passwords, "bob", sasl.hash_password("bob-pw", ln=4))
    return (IN_PROCESS_CF + "smtpd_sasl_auth_enable = yes\nsmtpd_tls_auth_only = no\n"
            f"smtpd_sasl_password_file = {passwords}\nsmtpd_sasl_failure_delay = 0\n")


@asynccontextmanager
async def receiver(tmp_path: Path, extra: str) -> AsyncIterator[Converse]:
    """An in-process receiver with AUTH plus extra; yields a function that
    sends commands one at a time and returns the last line of each reply."""
    main_cf = auth_cf(tmp_path) + extra
    security, _ = build_security(from_text(main_cf), FailureTracker())
    async with in_process_smtpd(tmp_path, main_cf, security=security) as smtpd:
        yield functools.partial(one_at_a_time, smtpd.port)


def send_as(sender: str) -> list[str]:
    return [f"MAIL FROM:<{sender}>", "RCPT TO:<someone@relay.test>"]


async def test_by_default_bob_may_send_as_anyone(tmp_path: Path) -> None:
    async with receiver(tmp_path, LOGINS) as converse:
        assert await converse(["EHLO client.test", BOB, *send_as("alice@mx.test")]) == [
            "250 8BITMIME", replies.AUTH_OK, "250 2.1.0 Ok", "250 2.1.5 Ok"]


async def test_delayed_mismatch_is_the_rcpt_reply(
        tmp_path: Path, maillog_lines: list[str]) -> None:
    """smtpd_delay_reject = yes: MAIL is accepted, RCPT refused and logged
    with the sender and the recipient, as Postfix logs it."""
    async with receiver(tmp_path, STRICT) as converse:
        assert await converse(["EHLO client.test", BOB, *send_as("bob@mx.test"), "RSET",
                               *send_as("alice@mx.test"), "RSET",
                               *send_as("shared@mx.test")]) == [
            "250 8BITMIME", replies.AUTH_OK, "250 2.1.0 Ok", "250 2.1.5 Ok", "250 2.0.0 Ok",
            "250 2.1.0 Ok", NOT_OWNED.format("alice@mx.test", "bob"), "250 2.0.0 Ok",
            "250 2.1.0 Ok", "250 2.1.5 Ok"]
    assert ("smtpd: NOQUEUE: reject: RCPT from unknown[127.0.0.1]: 553 5.7.1 "
            "<alice@mx.test>: Sender address rejected: not owned by user bob; "
            "from=<alice@mx.test> to=<someone@relay.test> proto=ESMTP "
            "helo=<client.test>") in maillog_lines


async def test_undelayed_mismatch_is_the_mail_reply(
        tmp_path: Path, maillog_lines: list[str]) -> None:
    async with receiver(tmp_path, STRICT + "smtpd_delay_reject = no\n") as converse:
        assert await converse(["EHLO client.test", BOB, "MAIL FROM:<alice@mx.test>",
                               *send_as("bob@mx.test")]) == [
            "250 8BITMIME", replies.AUTH_OK, NOT_OWNED.format("alice@mx.test", "bob"),
            "250 2.1.0 Ok", "250 2.1.5 Ok"]
    assert ("smtpd: NOQUEUE: reject: MAIL from unknown[127.0.0.1]: 553 5.7.1 "
            "<alice@mx.test>: Sender address rejected: not owned by user bob; "
            "from=<alice@mx.test> proto=ESMTP helo=<client.test>") in maillog_lines


@pytest.mark.parametrize("delay", ["yes", "no"])
async def test_a_client_that_did_not_log_in_may_not_use_an_owned_sender(
        tmp_path: Path, delay: str) -> None:
    """reject_unauthenticated_sender_login_mismatch: bob@mx.test has an
    owner; an unlisted sender and the null sender pass."""
    extra = (LOGINS + f"smtpd_delay_reject = {delay}\n"
             "smtpd_sender_restrictions = reject_unauthenticated_sender_login_mismatch\n")
    async with receiver(tmp_path, extra) as converse:
        answers = await converse(["EHLO client.test", *send_as("bob@mx.test"), "RSET",
                                  *send_as("stranger@elsewhere.test"), "RSET",
                                  *send_as("")])
    refused = 1 if delay == "no" else 2
    assert answers[refused] == NOT_LOGGED_IN.format("bob@mx.test")
    assert answers[4:] == ["250 2.1.0 Ok", "250 2.1.5 Ok", "250 2.0.0 Ok",
                           "250 2.1.0 Ok", "250 2.1.5 Ok"]


async def test_authenticated_mismatch_leaves_other_clients_alone(tmp_path: Path) -> None:
    extra = LOGINS + "smtpd_sender_restrictions = reject_authenticated_sender_login_mismatch\n"
    async with receiver(tmp_path, extra) as converse:
        assert await converse(["EHLO client.test", *send_as("bob@mx.test"), "RSET", BOB,
                               *send_as("stranger@elsewhere.test")]) == [
            "250 8BITMIME", "250 2.1.0 Ok", "250 2.1.5 Ok", "250 2.0.0 Ok", replies.AUTH_OK,
            "250 2.1.0 Ok", NOT_OWNED.format("stranger@elsewhere.test", "bob")]


async def test_a_permit_before_the_check_ends_the_sender_list(tmp_path: Path) -> None:
    extra = LOGINS + ("smtpd_sender_restrictions = permit_mynetworks, "
                      "reject_sender_login_mismatch\n")
    async with receiver(tmp_path, extra) as converse:
        assert await converse(["EHLO client.test", BOB, *send_as("alice@mx.test")]) == [
            "250 8BITMIME", replies.AUTH_OK, "250 2.1.0 Ok", "250 2.1.5 Ok"]


def test_lookup_order_and_owner_lists(tmp_path: Path) -> None:
    """Postfix's mail_addr_find(): user+ext@domain, user@domain, the local
    part alone for a local domain only, then @domain; owners are separated
    by commas or spaces and compare case-insensitively."""
    table = tmp_path / "sender_login"
    table.write_text("bob@mx.test bob\n"
                     "bob+lists@mx.test lists-robot\n"
                     "postmaster alice, Bob\n"
                     "@partner.test carol\n")
    parts = build_parts(from_text(auth_cf(tmp_path) + "recipient_delimiter = +\n"
                                  f"smtpd_sender_login_maps = texthash:{table}\n"))
    logins = parts.restrictions.sender_logins
    assert logins.owners("bob@mx.test") == ["bob"]
    assert logins.owners("bob+x@mx.test") == ["bob"]
    assert logins.owners("bob+lists@mx.test") == ["lists-robot"]
    assert logins.owners("postmaster@mx.test") == ["alice", "Bob"]
    assert logins.owners("postmaster@partner.test") == ["carol"]  # not local: no bare part
    assert logins.owners("anyone@elsewhere.test") is None
    assert logins.authenticated_mismatch("BOB", "postmaster@mx.test", "postmaster") is None


def test_reject_and_unqualified_senders(tmp_path: Path) -> None:
    """An unqualified sender is looked up as @$myorigin, and shown as sent."""
    built = build_parts(from_text(auth_cf(tmp_path) + STRICT + "smtpd_sender_restrictions = "
                                  "reject_sender_login_mismatch, reject\n")).restrictions
    client = ClientFacts(address="192.0.2.1", sasl_username="carol")
    assert built.check_sender(client, "bob") == NOT_OWNED.format("bob", "carol")
    assert built.check_sender(client, "x@partner.test") == \
        "554 5.7.1 <x@partner.test>: Sender address rejected: Access denied"
    assert built.check_sender(ClientFacts(address="192.0.2.1"), "") == \
        "554 5.7.1 <>: Sender address rejected: Access denied"


def test_without_auth_on_the_listener_the_login_checks_are_ignored(
        maillog_lines: list[str]) -> None:
    """As Postfix's "restriction ... ignored: no SASL support": nobody can log
    in on port 25, so every owned sender would be "not logged in"."""
    built = build_parts(from_text(IN_PROCESS_CF + STRICT)).restrictions
    assert built.check_sender(ClientFacts(address="192.0.2.1"), "bob@mx.test") is None
    assert any("restriction 'reject_sender_login_mismatch' ignored: smtpd_sasl_auth_enable "
               "= no" in line for line in maillog_lines)


def test_the_empty_default_costs_nothing() -> None:
    built = build_parts(from_text(IN_PROCESS_CF)).restrictions
    assert not built.sender_at_mail and not built.sender_at_rcpt


def test_a_listener_override_applies_to_that_listener_only(tmp_path: Path) -> None:
    config = from_text(auth_cf(tmp_path) + LOGINS + "submission/inet = 127.0.0.1:0\n"
                       "submission/inet/smtpd_sender_restrictions = "
                       "reject_sender_login_mismatch\n")
    bob = ClientFacts(address="192.0.2.1", sasl_username="bob")
    smtp, submission = config.listeners
    assert build_parts(config.for_listener(smtp)).restrictions.check_sender(
        bob, "alice@mx.test") is None
    assert build_parts(config.for_listener(submission)).restrictions.check_sender(
        bob, "alice@mx.test") == NOT_OWNED.format("alice@mx.test", "bob")


@pytest.mark.parametrize(("item", "message"), [
    ("reject_unlisted_sender", "unknown restriction 'reject_unlisted_sender'"),
    ("check_sender_access", "unknown restriction 'check_sender_access' without a table"),
    ("reject_unauth_destination", "reject_unauth_destination judges no recipient address "
                                  "here"),
])
def test_an_unknown_sender_restriction_is_a_config_error(item: str, message: str) -> None:
    config = from_text(IN_PROCESS_CF + f"smtpd_sender_restrictions = permit_mynetworks, {item}\n")
    with pytest.raises(ConfigError, match=f"smtpd_sender_restrictions: {message}"):
        build_parts(config)
