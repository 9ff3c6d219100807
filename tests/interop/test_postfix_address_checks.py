"""Address restrictions: Postfix's smtpd and ours, the same lists, the same answers.

reject_non_fqdn_sender and reject_non_fqdn_recipient (an address without a
domain, or whose domain is not a hostname with a dot; an address literal and
the null sender pass), ``defer`` and ``reject`` with their codes, and the
addresses as the client sent them: an unqualified address is looked up as
user@$myorigin, but replies and reject lines name it as sent, as Postfix's
do. Both servers see a client they name unknown[127.0.0.1], in mynetworks.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import IN_PROCESS_CF, in_process_smtpd
from tests.interop.postfix import PostfixFactory
from tests.interop.test_postfix_access import ELSEWHERE, rejects, replies

pytestmark = pytest.mark.interop

ORIGIN = "myorigin = origin.test\n"
FQDN = ("smtpd_recipient_restrictions = reject_non_fqdn_sender, reject_non_fqdn_recipient, "
        "check_sender_access texthash:{dir}/senders, "
        "check_recipient_access texthash:{dir}/recipients\n")
TABLES = {"senders": "listed@origin.test   REJECT unqualified sender listed\n",
          "recipients": "listed@origin.test   REJECT unqualified recipient listed\n"}
CASES = [  # (HELO name, sender, recipient)
    ("c.test", "user", ELSEWHERE),
    ("c.test", "user@host", ELSEWHERE),
    ("c.test", "user@b.test.", ELSEWHERE),
    ("c.test", "user@[127.0.0.1]", ELSEWHERE),
    ("c.test", "", ELSEWHERE),
    ("c.test", '"user@b.test"', ELSEWHERE),  # judged unquoted: user@b.test
    ("c.test", "a@b.test", "user"),
    ("c.test", "a@b.test", "user@host"),
    ("c.test", "a@b.test", "user@r.test."),
    ("c.test", "a@b.test", "user@[192.0.2.1]"),  # not ours: Postfix would ask its tables
    ("c.test", "a@b.test", "user@under_score.test"),
]


async def test_non_fqdn_addresses_are_refused_as_postfix_refuses_them(
        postfix_factory: PostfixFactory, tmp_path: Path, maillog_lines: list[str]) -> None:
    postfix = postfix_factory(main_cf="smtpd_peername_lookup = no\n" + ORIGIN
                              + FQDN.format(dir="$config_directory"))
    for name, text in TABLES.items():
        (postfix.conf / name).write_text(text)
        (tmp_path / name).write_text(text)
    postfix.start()
    async with in_process_smtpd(tmp_path, IN_PROCESS_CF + ORIGIN + FQDN.format(dir=tmp_path)) \
            as smtpd:
        ours = await replies(smtpd.port, CASES)
    theirs = await replies(postfix.port, CASES)
    assert ours == theirs
    assert ["250 2.1.0 Ok", "504 5.5.2 <user>: Sender address rejected: need fully-qualified "
                            "address"] in ours
    assert ["250 2.1.0 Ok", "504 5.5.2 <user@host>: Recipient address rejected: need "
                            "fully-qualified address"] in ours
    assert ["250 2.1.0 Ok", "250 2.1.5 Ok"] in ours
    refusals = [reply for _, reply in ours if reply[0] in "45"]
    postfix.wait_log(r"NOQUEUE: reject: .*", count=len(refusals))
    assert rejects(maillog_lines) == rejects(postfix.log_text().splitlines())
    assert "reject: RCPT from unknown[127.0.0.1]: 504 5.5.2 <user>: Sender address rejected: " \
        "need fully-qualified address; from=<user> to=<x@elsewhere.test> proto=ESMTP " \
        "helo=<c.test>" in rejects(maillog_lines)


LISTED = [("c.test", "listed", ELSEWHERE), ("c.test", "a@b.test", "listed")]
LOOKED_UP = ("smtpd_recipient_restrictions = check_sender_access texthash:{dir}/senders, "
             "check_recipient_access texthash:{dir}/recipients\n")


async def test_unqualified_addresses_are_looked_up_qualified_and_named_as_sent(
        postfix_factory: PostfixFactory, tmp_path: Path, maillog_lines: list[str]) -> None:
    postfix = postfix_factory(main_cf="smtpd_peername_lookup = no\n" + ORIGIN
                              + LOOKED_UP.format(dir="$config_directory"))
    for name, text in TABLES.items():
        (postfix.conf / name).write_text(text)
        (tmp_path / name).write_text(text)
    postfix.start()
    async with in_process_smtpd(tmp_path, IN_PROCESS_CF + ORIGIN
                                + LOOKED_UP.format(dir=tmp_path)) as smtpd:
        ours = await replies(smtpd.port, LISTED)
    theirs = await replies(postfix.port, LISTED)
    assert ours == theirs == [
        ["250 2.1.0 Ok", "554 5.7.1 <listed>: Sender address rejected: unqualified sender "
                         "listed"],
        ["250 2.1.0 Ok", "554 5.7.1 <listed>: Recipient address rejected: unqualified "
                         "recipient listed"]]
    postfix.wait_log(r"NOQUEUE: reject: .*", count=2)
    assert rejects(maillog_lines) == rejects(postfix.log_text().splitlines())
    assert rejects(maillog_lines)[1].endswith("from=<a@b.test> to=<listed> proto=ESMTP "
                                              "helo=<c.test>")


CODES = ("non_fqdn_reject_code = 550\ndefer_code = 451\n"
         "smtpd_sender_restrictions = reject_non_fqdn_sender, defer\n")
CODED_CASES = [("c.test", "user", ELSEWHERE), ("c.test", "a@b.test", ELSEWHERE),
               ("c.test", "", ELSEWHERE)]


async def test_defer_and_the_reply_codes_as_postfix_has_them(
        postfix_factory: PostfixFactory, tmp_path: Path, maillog_lines: list[str]) -> None:
    """defer, with defer_code; non_fqdn_reject_code; the null sender deferred too."""
    postfix = postfix_factory(main_cf="smtpd_peername_lookup = no\n" + CODES).start()
    async with in_process_smtpd(tmp_path, IN_PROCESS_CF + CODES) as smtpd:
        ours = await replies(smtpd.port, CODED_CASES)
    theirs = await replies(postfix.port, CODED_CASES)
    assert ours == theirs == [
        ["250 2.1.0 Ok", "550 5.5.2 <user>: Sender address rejected: need fully-qualified "
                         "address"],
        ["250 2.1.0 Ok", "451 4.3.2 <a@b.test>: Sender address rejected: Try again later"],
        ["250 2.1.0 Ok", "451 4.3.2 <>: Sender address rejected: Try again later"]]
    postfix.wait_log(r"NOQUEUE: reject: .*", count=3)
    assert rejects(maillog_lines) == rejects(postfix.log_text().splitlines())


REJECT_CODE = ("reject_code = 553\n"
               "smtpd_helo_restrictions = reject\n")


async def test_reject_takes_reject_code_as_postfix_does(
        postfix_factory: PostfixFactory, tmp_path: Path, maillog_lines: list[str]) -> None:
    postfix = postfix_factory(main_cf="smtpd_peername_lookup = no\n" + REJECT_CODE).start()
    cases = [("c.test", "a@b.test", ELSEWHERE)]
    async with in_process_smtpd(tmp_path, IN_PROCESS_CF + REJECT_CODE) as smtpd:
        ours = await replies(smtpd.port, cases)
    theirs = await replies(postfix.port, cases)
    assert ours == theirs == [
        ["250 2.1.0 Ok", "553 5.7.1 <c.test>: Helo command rejected: Access denied"]]
    postfix.wait_log(r"NOQUEUE: reject: .*")
    assert rejects(maillog_lines) == rejects(postfix.log_text().splitlines())


OUTSIDE = "mynetworks = 192.0.2.0/24\nmyorigin = hosted-elsewhere.test\n"
OUTSIDE_CASES = [("c.test", "a@b.test", "user"), ("c.test", "a@b.test", "user@origin.test")]


async def test_an_unqualified_recipient_is_no_way_around_the_relay_control(
        postfix_factory: PostfixFactory, tmp_path: Path, maillog_lines: list[str]) -> None:
    """For a client outside mynetworks, user is user@$myorigin, not ours
    here: both refuse to relay it, naming it as sent."""
    postfix = postfix_factory(main_cf="smtpd_peername_lookup = no\n" + OUTSIDE).start()
    async with in_process_smtpd(tmp_path, IN_PROCESS_CF + OUTSIDE) as smtpd:
        ours = await replies(smtpd.port, OUTSIDE_CASES)
    theirs = await replies(postfix.port, OUTSIDE_CASES)
    assert ours == theirs == [
        ["250 2.1.0 Ok", "554 5.7.1 <user>: Relay access denied"],
        ["250 2.1.0 Ok", "554 5.7.1 <user@origin.test>: Relay access denied"]]
    postfix.wait_log(r"NOQUEUE: reject: .*", count=2)
    assert rejects(maillog_lines) == rejects(postfix.log_text().splitlines())


ROUTED = "mynetworks = 192.0.2.0/24\nrelay_domains = relayed.test\n"
ROUTED_CASES = [("c.test", "a@b.test", recipient) for recipient in (
    "x%victim.example@relayed.test", "victim.example!x@relayed.test", "x@relayed.test")]


async def test_a_routed_address_is_no_way_around_the_relay_control(
        postfix_factory: PostfixFactory, tmp_path: Path, maillog_lines: list[str]) -> None:
    """allow_untrusted_routing = no (both defaults): a relay domain's address
    with a route is refused to a client outside mynetworks."""
    postfix = postfix_factory(main_cf="smtpd_peername_lookup = no\n" + ROUTED).start()
    async with in_process_smtpd(tmp_path, IN_PROCESS_CF + ROUTED) as smtpd:
        ours = await replies(smtpd.port, ROUTED_CASES)
    theirs = await replies(postfix.port, ROUTED_CASES)
    assert ours == theirs == [
        ["250 2.1.0 Ok", "554 5.7.1 <x%victim.example@relayed.test>: Relay access denied"],
        ["250 2.1.0 Ok", "554 5.7.1 <victim.example!x@relayed.test>: Relay access denied"],
        ["250 2.1.0 Ok", "250 2.1.5 Ok"]]
    postfix.wait_log(r"NOQUEUE: reject: .*", count=2)
    assert rejects(maillog_lines) == rejects(postfix.log_text().splitlines())
