"""smtpd_helo_restrictions and smtpd_delay_reject, against Postfix's smtpd_check.c.

The name tables are Postfix's valid_hostname/valid_hostaddr verdicts; the
sessions run an in-process receiver on 127.0.0.1 with its own main.cf.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from mta.config import from_text
from mta.errors import ConfigError
from mta.master import build_parts
from mta.smtpd import replies
from mta.smtpd.checks import (
    ClientFacts,
    reject_invalid_helo_hostname,
    reject_non_fqdn_helo_hostname,
)
from tests.helpers import IN_PROCESS_CF, in_process_smtpd, one_at_a_time

CLIENT = ClientFacts(address="192.0.2.1")
STRICT = "smtpd_helo_restrictions = reject_invalid_helo_hostname, " \
         "reject_non_fqdn_helo_hostname\n"
NOT_FQDN = "504 5.5.2 <{}>: Helo command rejected: need fully-qualified hostname"
INVALID = "501 5.5.2 <{}>: Helo command rejected: Invalid name"


@pytest.mark.parametrize(("name", "invalid", "non_fqdn"), [
    ("mail.example.com", None, None),
    ("mail.example.com.", None, None),  # one root dot is taken off first
    ("under_score.example", None, None),  # Postfix allows '_' ("grr..")
    ("xn--bcher-kva.example", None, None),
    ("localhost", None, NOT_FQDN),
    ("192.0.2.1", None, NOT_FQDN),  # a bare address: valid, but no hostname
    ("2001:db8::1", None, NOT_FQDN),
    ("1.2.3", INVALID, NOT_FQDN),  # all digits: not a hostname, not an address
    ("-mail.example", INVALID, NOT_FQDN),
    ("mail-.example", INVALID, NOT_FQDN),
    ("mail..example", INVALID, NOT_FQDN),
    ("mail.example..", INVALID, NOT_FQDN),
    ("mail?example?com", INVALID, NOT_FQDN),
    ("mail example com", INVALID, NOT_FQDN),
    ("bücher.example", INVALID, NOT_FQDN),  # no SMTPUTF8 offered
    ("a" * 64 + ".example", INVALID, NOT_FQDN),
    ("a." * 127 + "ab", INVALID, NOT_FQDN),  # 256 octets
])
def test_helo_name_verdicts(name: str, invalid: str | None, non_fqdn: str | None) -> None:
    assert reject_invalid_helo_hostname(CLIENT, name) == (invalid and invalid.format(name))
    assert reject_non_fqdn_helo_hostname(CLIENT, name) == (non_fqdn and non_fqdn.format(name))


@pytest.mark.parametrize(("literal", "valid"), [
    ("[192.0.2.1]", True),
    ("[IPv6:2001:db8::1]", True),
    ("[ipv6:::ffff:192.0.2.1]", True),
    ("[2001:db8::1]", False),  # RFC 5321 §4.1.3: an IPv6 literal needs its tag
    ("[192.0.2]", False),
    ("[256.0.2.1]", False),
    ("[0.1.2.3]", False),
    ("[192.0.2.1", False),
    ("[mail.example]", False),
])
def test_address_literals_are_judged_as_addresses(literal: str, valid: bool) -> None:
    """Both restrictions judge "[...]" with reject_invalid_hostaddr."""
    expected = None if valid else replies.HELO_INVALID_ADDRESS.format(
        code=501, code_class="5", name=literal)
    assert reject_invalid_helo_hostname(CLIENT, literal) == expected
    assert reject_non_fqdn_helo_hostname(CLIENT, literal) == expected


@pytest.mark.parametrize("item", ["reject_unknown_helo_hostname", "check_helo_access"])
def test_an_unknown_helo_restriction_is_a_config_error(item: str) -> None:
    config = from_text(IN_PROCESS_CF + f"smtpd_helo_restrictions = permit_mynetworks, {item}\n")
    with pytest.raises(ConfigError, match=f"smtpd_helo_restrictions: unknown restriction "
                                          f"'{item}'"):
        build_parts(config)


Converse = Callable[[list[str]], Awaitable[list[str]]]


@asynccontextmanager
async def receiver(tmp_path: Path, extra: str) -> AsyncIterator[Converse]:
    """An in-process receiver with IN_PROCESS_CF plus extra; yields a function
    that sends commands one at a time and returns the last line of each reply."""
    async with in_process_smtpd(tmp_path, IN_PROCESS_CF + extra) as smtpd:
        yield functools.partial(one_at_a_time, smtpd.port)


TRANSACTION = ["MAIL FROM:<a@client.test>", "RCPT TO:<b@relay.test>"]


async def test_by_default_any_helo_name_is_taken(tmp_path: Path) -> None:
    async with receiver(tmp_path, "") as converse:
        assert await converse(["EHLO localhost", *TRANSACTION]) == \
            ["250 8BITMIME", "250 2.1.0 Ok", "250 2.1.5 Ok"]


async def test_delayed_helo_refusal_is_the_rcpt_reply(
        tmp_path: Path, maillog_lines: list[str]) -> None:
    """smtpd_delay_reject = yes (the default): EHLO and MAIL are accepted, the
    refusal answers RCPT and is logged with sender and recipient; a VRFY in
    the transaction is logged with its sender too, as Postfix's is."""
    async with receiver(tmp_path, STRICT) as converse:
        assert await converse(["EHLO localhost", *TRANSACTION, "VRFY b@relay.test"]) == [
            "250 8BITMIME", "250 2.1.0 Ok", NOT_FQDN.format("localhost"),
            NOT_FQDN.format("localhost")]
    assert ("smtpd: NOQUEUE: reject: RCPT from unknown[127.0.0.1]: 504 5.5.2 <localhost>: "
            "Helo command rejected: need fully-qualified hostname; from=<a@client.test> "
            "to=<b@relay.test> proto=ESMTP helo=<localhost>") in maillog_lines
    assert ("smtpd: NOQUEUE: reject: VRFY from unknown[127.0.0.1]: 504 5.5.2 <localhost>: "
            "Helo command rejected: need fully-qualified hostname; from=<a@client.test> "
            "to=<b@relay.test> proto=ESMTP helo=<localhost>") in maillog_lines


async def test_delayed_restrictions_judge_the_name_as_kept(tmp_path: Path) -> None:
    """At RCPT Postfix judges state->helo_name, the copy with its spaces and
    NEUTER_CHARACTERS turned into '?'."""
    async with receiver(tmp_path, STRICT) as converse:
        replies_ = await converse(["HELO mail example com", *TRANSACTION])
    assert replies_[2] == INVALID.format("mail?example?com")


async def test_without_helo_the_helo_restrictions_are_skipped(tmp_path: Path) -> None:
    async with receiver(tmp_path, STRICT) as converse:
        assert await converse(TRANSACTION) == ["250 2.1.0 Ok", "250 2.1.5 Ok"]


async def test_the_bare_postmaster_skips_the_helo_restrictions(tmp_path: Path) -> None:
    async with receiver(tmp_path, STRICT) as converse:
        assert await converse(["HELO localhost", "MAIL FROM:<>", "RCPT TO:<postmaster>"]) \
            == ["250 mx.test", "250 2.1.0 Ok", "250 2.1.5 Ok"]


async def test_a_permit_before_them_lets_the_name_pass(tmp_path: Path) -> None:
    """permit_mynetworks (127.0.0.0/8 here) ends the HELO list; the relay
    restrictions then judge the recipient as usual."""
    extra = "smtpd_helo_restrictions = permit_mynetworks, reject\n"
    async with receiver(tmp_path, extra) as converse:
        assert await converse(["EHLO localhost", *TRANSACTION]) == \
            ["250 8BITMIME", "250 2.1.0 Ok", "250 2.1.5 Ok"]
    outside = extra + "mynetworks = 192.0.2.0/24\n"
    async with receiver(tmp_path, outside) as converse:
        assert (await converse(["EHLO localhost", *TRANSACTION]))[2] == \
            "554 5.7.1 <localhost>: Helo command rejected: Access denied"


async def test_undelayed_helo_refusal_is_the_helo_reply(
        tmp_path: Path, maillog_lines: list[str]) -> None:
    """smtpd_delay_reject = no: HELO/EHLO itself is refused, logged with the
    protocol so far (SMTP before a first EHLO) and the name as sent."""
    async with receiver(tmp_path, STRICT + "smtpd_delay_reject = no\n") as converse:
        assert await converse(["EHLO localhost", "HELO mail example com",
                               "EHLO [IPv6:::1]", *TRANSACTION]) == [
            NOT_FQDN.format("localhost"), INVALID.format("mail example com"),
            "250 8BITMIME", "250 2.1.0 Ok", "250 2.1.5 Ok"]
    assert ("smtpd: NOQUEUE: reject: EHLO from unknown[127.0.0.1]: 504 5.5.2 <localhost>: "
            "Helo command rejected: need fully-qualified hostname; proto=SMTP "
            "helo=<localhost>") in maillog_lines
    assert ("smtpd: NOQUEUE: reject: HELO from unknown[127.0.0.1]: 501 5.5.2 "
            "<mail example com>: Helo command rejected: Invalid name; proto=SMTP "
            "helo=<mail example com>") in maillog_lines


async def test_an_undelayed_refusal_leaves_the_session_as_it_was(
        tmp_path: Path, maillog_lines: list[str]) -> None:
    """As Postfix's ehlo_cmd returns before it resets anything: the earlier
    EHLO (ESMTP, its name) and the open transaction stand."""
    async with receiver(tmp_path, STRICT + "smtpd_delay_reject = no\n") as converse:
        assert await converse(["EHLO mail.client.test", "MAIL FROM:<a@client.test>",
                               "HELO localhost", "RCPT TO:<b@relay.test>"]) == [
            "250 8BITMIME", "250 2.1.0 Ok", NOT_FQDN.format("localhost"), "250 2.1.5 Ok"]
    assert ("smtpd: NOQUEUE: reject: HELO from unknown[127.0.0.1]: 504 5.5.2 <localhost>: "
            "Helo command rejected: need fully-qualified hostname; from=<a@client.test> "
            "proto=ESMTP helo=<localhost>") in maillog_lines


def test_reject_names_its_reply_class() -> None:
    """`reject` shares Postfix's "<%s>: %s rejected: Access denied" between
    the lists; the class is "Helo command" or "Recipient address"."""
    restrictions = build_parts(from_text(
        IN_PROCESS_CF + "smtpd_helo_restrictions = reject\n"
        "smtpd_recipient_restrictions = reject\n")).restrictions
    assert restrictions.check_helo(CLIENT, "mail.example") == \
        "554 5.7.1 <mail.example>: Helo command rejected: Access denied"
    assert restrictions.check_recipient(CLIENT, "a@client.test", "b@mx.test") == \
        "554 5.7.1 <b@mx.test>: Recipient address rejected: Access denied"
