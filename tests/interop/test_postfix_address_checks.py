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

from tests.interop.postfix import PostfixFactory
from tests.interop.test_postfix_access import ELSEWHERE, same_rejects, same_replies

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
    ours, postfix = await same_replies(postfix_factory, tmp_path, ORIGIN + FQDN, CASES, TABLES)
    assert ["250 2.1.0 Ok", "504 5.5.2 <user>: Sender address rejected: need fully-qualified "
                            "address"] in ours
    assert ["250 2.1.0 Ok", "504 5.5.2 <user@host>: Recipient address rejected: need "
                            "fully-qualified address"] in ours
    assert ["250 2.1.0 Ok", "250 2.1.5 Ok"] in ours
    refusals = [reply for _, reply in ours if reply[0] in "45"]
    assert "reject: RCPT from unknown[127.0.0.1]: 504 5.5.2 <user>: Sender address rejected: " \
        "need fully-qualified address; from=<user> to=<x@elsewhere.test> proto=ESMTP " \
        "helo=<c.test>" in same_rejects(postfix, maillog_lines, len(refusals))


LISTED = [("c.test", "listed", ELSEWHERE), ("c.test", "a@b.test", "listed")]
LOOKED_UP = ("smtpd_recipient_restrictions = check_sender_access texthash:{dir}/senders, "
             "check_recipient_access texthash:{dir}/recipients\n")


async def test_unqualified_addresses_are_looked_up_qualified_and_named_as_sent(
        postfix_factory: PostfixFactory, tmp_path: Path, maillog_lines: list[str]) -> None:
    ours, postfix = await same_replies(postfix_factory, tmp_path, ORIGIN + LOOKED_UP, LISTED,
                                       TABLES)
    assert ours == [
        ["250 2.1.0 Ok", "554 5.7.1 <listed>: Sender address rejected: unqualified sender "
                         "listed"],
        ["250 2.1.0 Ok", "554 5.7.1 <listed>: Recipient address rejected: unqualified "
                         "recipient listed"]]
    assert same_rejects(postfix, maillog_lines, 2)[1].endswith(
        "from=<a@b.test> to=<listed> proto=ESMTP helo=<c.test>")


CODES = ("non_fqdn_reject_code = 550\ndefer_code = 451\n"
         "smtpd_sender_restrictions = reject_non_fqdn_sender, defer\n")
CODED_CASES = [("c.test", "user", ELSEWHERE), ("c.test", "a@b.test", ELSEWHERE),
               ("c.test", "", ELSEWHERE)]


async def test_defer_and_the_reply_codes_as_postfix_has_them(
        postfix_factory: PostfixFactory, tmp_path: Path, maillog_lines: list[str]) -> None:
    """defer, with defer_code; non_fqdn_reject_code; the null sender deferred too."""
    ours, postfix = await same_replies(postfix_factory, tmp_path, CODES, CODED_CASES)
    assert ours == [
        ["250 2.1.0 Ok", "550 5.5.2 <user>: Sender address rejected: need fully-qualified "
                         "address"],
        ["250 2.1.0 Ok", "451 4.3.2 <a@b.test>: Sender address rejected: Try again later"],
        ["250 2.1.0 Ok", "451 4.3.2 <>: Sender address rejected: Try again later"]]
    same_rejects(postfix, maillog_lines, 3)


async def test_reject_takes_reject_code_as_postfix_does(
        postfix_factory: PostfixFactory, tmp_path: Path, maillog_lines: list[str]) -> None:
    ours, postfix = await same_replies(
        postfix_factory, tmp_path, "reject_code = 553\nsmtpd_helo_restrictions = reject\n",
        [("c.test", "a@b.test", ELSEWHERE)])
    assert ours == [["250 2.1.0 Ok", "553 5.7.1 <c.test>: Helo command rejected: Access denied"]]
    same_rejects(postfix, maillog_lines, 1)


async def test_an_unqualified_recipient_is_no_way_around_the_relay_control(
        postfix_factory: PostfixFactory, tmp_path: Path, maillog_lines: list[str]) -> None:
    """For a client outside mynetworks, user is user@$myorigin, not ours
    here: both refuse to relay it, naming it as sent."""
    ours, postfix = await same_replies(
        postfix_factory, tmp_path,
        "mynetworks = 192.0.2.0/24\nmyorigin = hosted-elsewhere.test\n",
        [("c.test", "a@b.test", "user"), ("c.test", "a@b.test", "user@origin.test")])
    assert ours == [["250 2.1.0 Ok", "554 5.7.1 <user>: Relay access denied"],
                    ["250 2.1.0 Ok", "554 5.7.1 <user@origin.test>: Relay access denied"]]
    same_rejects(postfix, maillog_lines, 2)


async def test_a_routed_address_is_no_way_around_the_relay_control(
        postfix_factory: PostfixFactory, tmp_path: Path, maillog_lines: list[str]) -> None:
    """allow_untrusted_routing = no (both defaults): a relay domain's address
    with a route is refused to a client outside mynetworks."""
    ours, postfix = await same_replies(
        postfix_factory, tmp_path, "mynetworks = 192.0.2.0/24\nrelay_domains = relayed.test\n",
        [("c.test", "a@b.test", recipient) for recipient in (
            "x%victim.example@relayed.test", "victim.example!x@relayed.test",
            '"x@victim.example"@relayed.test', "x@relayed.test")])
    assert ours == [
        ["250 2.1.0 Ok", "554 5.7.1 <x%victim.example@relayed.test>: Relay access denied"],
        ["250 2.1.0 Ok", "554 5.7.1 <victim.example!x@relayed.test>: Relay access denied"],
        # Named unquoted, as Postfix names its internal form.
        ["250 2.1.0 Ok", "554 5.7.1 <x@victim.example@relayed.test>: Relay access denied"],
        ["250 2.1.0 Ok", "250 2.1.5 Ok"]]
    same_rejects(postfix, maillog_lines, 3)
