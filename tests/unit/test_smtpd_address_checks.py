"""reject_non_fqdn_sender, reject_non_fqdn_recipient, reject, defer and their
codes, and addresses judged and named as the client sent them.

Against Postfix's smtpd_check.c (reject_non_fqdn_address, generic_checks,
smtpd_check_reject); the replies and reject lines were compared with
Postfix 3.7 in tests/interop/test_postfix_address_checks.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mta.config import from_text
from mta.errors import ConfigError
from mta.master import build_parts
from mta.queuefile import Envelope
from mta.smtpd.checks import ClientFacts, Restrictions
from mta.smtpd.hostnames import non_fqdn_address
from tests.helpers import IN_PROCESS_CF, in_process_smtpd, one_at_a_time

OUTSIDE = ClientFacts(address="192.0.2.7")
INSIDE = ClientFacts(address="127.0.0.1")  # in mynetworks
RELAY_DOMAINS = "relay_domains = relay.test\nmyorigin = origin.test\n"
SENDER_NOT_FQDN = "504 5.5.2 <{}>: Sender address rejected: need fully-qualified address"
RECIPIENT_NOT_FQDN = "504 5.5.2 <{}>: Recipient address rejected: need fully-qualified address"


def restrictions(extra: str) -> Restrictions:
    return build_parts(from_text(IN_PROCESS_CF + RELAY_DOMAINS + extra)).restrictions


@pytest.mark.parametrize(("address", "refused"), [
    ("user", True),  # no domain at all
    ("user@host", True),  # no dot
    ("user@b.test", False),
    ("user@b.test.", False),  # one root dot is taken off
    ("user@b.test..", True),
    ("user@.", True),
    ("user@", True),
    ("user@under_score.test", False),  # Postfix's valid_hostname allows '_'
    ("user@-dash.test", True),
    ("user@1.2.3.4", True),  # all numeric: not a hostname
    ("user@[192.0.2.1]", False),  # an address literal is not judged
    ("user@[anything]", False),
    ('"a@b"@host', True),  # the last "@" starts the domain
    ('"a@host"@b.test', False),
    # Judged unquoted, as Postfix judges its internal form: "a@b.test" is
    # a@b.test there (the review of the change found us refusing it).
    ('"a@b.test"', False),
    ('"a@host"', True),
    ('"a\\"@b.test"', False),
])
def test_which_addresses_are_not_fully_qualified(address: str, refused: bool) -> None:
    assert non_fqdn_address(address) is refused


def test_non_fqdn_sender_and_recipient_in_the_recipient_list() -> None:
    judged = restrictions("smtpd_recipient_restrictions = reject_non_fqdn_sender, "
                          "reject_non_fqdn_recipient\n")
    assert judged.check_recipient(INSIDE, "user", "x@b.test") == SENDER_NOT_FQDN.format("user")
    assert judged.check_recipient(INSIDE, "a@b.test", "x@host") == \
        RECIPIENT_NOT_FQDN.format("x@host")
    assert judged.check_recipient(INSIDE, "a@b.test", "x") == RECIPIENT_NOT_FQDN.format("x")
    # The null sender and VRFY's missing sender are not judged.
    assert judged.check_recipient(INSIDE, "", "x@b.test") is None
    assert judged.check_recipient(INSIDE, None, "x@b.test") is None
    assert judged.check_recipient(INSIDE, "a@b.test", "x@b.test") is None


def test_non_fqdn_sender_in_the_sender_list_and_its_code() -> None:
    judged = restrictions("smtpd_sender_restrictions = reject_non_fqdn_sender\n"
                          "non_fqdn_reject_code = 550\n")
    assert judged.check_sender(INSIDE, "user@host") == \
        "550 5.5.2 <user@host>: Sender address rejected: need fully-qualified address"
    assert judged.check_sender(INSIDE, "") is None
    # The same code for the HELO name (Postfix's var_non_fqdn_code).
    helo = restrictions("smtpd_helo_restrictions = reject_non_fqdn_helo_hostname\n"
                        "non_fqdn_reject_code = 450\n")
    assert helo.check_helo(INSIDE, "localhost") == \
        "450 4.5.2 <localhost>: Helo command rejected: need fully-qualified hostname"


def test_the_helo_restrictions_in_the_recipient_list() -> None:
    """As in Postfix, where they are often placed there; no HELO, no verdict."""
    judged = restrictions("smtpd_recipient_restrictions = reject_invalid_helo_hostname, "
                          "reject_non_fqdn_helo_hostname\n"
                          "invalid_hostname_reject_code = 550\n")
    assert judged.check_recipient(INSIDE, "a@b.test", "x@b.test", "bad name") == \
        "550 5.5.2 <bad name>: Helo command rejected: Invalid name"
    assert judged.check_recipient(INSIDE, "a@b.test", "x@b.test", "localhost") == \
        "504 5.5.2 <localhost>: Helo command rejected: need fully-qualified hostname"
    assert judged.check_recipient(INSIDE, "a@b.test", "x@b.test", "[192.0.2]") == \
        "550 5.5.2 <[192.0.2]>: Helo command rejected: invalid ip address"
    assert judged.check_recipient(INSIDE, "a@b.test", "x@b.test", None) is None
    assert judged.check_recipient(INSIDE, "a@b.test", "x@b.test", "mail.b.test") is None


@pytest.mark.parametrize(("lists", "reply"), [
    ("smtpd_client_restrictions = defer\n",
     "451 4.3.2 <unknown[192.0.2.7]>: Client host rejected: Try again later"),
    ("smtpd_helo_restrictions = defer\n",
     "451 4.3.2 <c.test>: Helo command rejected: Try again later"),
    ("smtpd_sender_restrictions = defer\n",
     "451 4.3.2 <a@b.test>: Sender address rejected: Try again later"),
    ("smtpd_recipient_restrictions = defer\n",
     "451 4.3.2 <x@relay.test>: Recipient address rejected: Try again later"),
    ("smtpd_client_restrictions = reject\n",
     "553 5.7.1 <unknown[192.0.2.7]>: Client host rejected: Access denied"),
    ("smtpd_sender_restrictions = reject\n",
     "553 5.7.1 <a@b.test>: Sender address rejected: Access denied"),
    ("smtpd_recipient_restrictions = reject\n",
     "553 5.7.1 <x@relay.test>: Recipient address rejected: Access denied"),
    # A 4xx reject_code makes the enhanced code 4.7.1.
    ("smtpd_recipient_restrictions = reject\nreject_code = 450\n",
     "450 4.7.1 <x@relay.test>: Recipient address rejected: Access denied"),
])
def test_defer_and_reject_in_every_list_with_their_codes(lists: str, reply: str) -> None:
    judged = restrictions("defer_code = 451\nreject_code = 553\n" + lists)
    assert judged.check_recipient(OUTSIDE, "a@b.test", "x@relay.test", "c.test") == reply


def test_defer_is_a_relay_control() -> None:
    """Postfix counts defer among the restrictions that keep a server from
    relaying for anyone; a list with nothing of the kind stops start."""
    judged = restrictions("smtpd_relay_restrictions = permit_mynetworks, defer\n")
    assert judged.check_recipient(INSIDE, "a@b.test", "x@far.test") is None
    assert judged.check_recipient(OUTSIDE, "a@b.test", "x@far.test") == \
        "450 4.3.2 <x@far.test>: Recipient address rejected: Try again later"
    with pytest.raises(ConfigError, match="specify at least one working instance"):
        restrictions("smtpd_relay_restrictions = permit_mynetworks\n")


@pytest.mark.parametrize(("setting", "message"), [
    ("smtpd_client_restrictions = reject_non_fqdn_sender",
     "reject_non_fqdn_sender judges no sender address here: it works in "
     "smtpd_relay_restrictions, smtpd_recipient_restrictions, smtpd_sender_restrictions"),
    ("smtpd_sender_restrictions = reject_non_fqdn_recipient",
     "reject_non_fqdn_recipient judges no recipient address here: it works in "
     "smtpd_relay_restrictions, smtpd_recipient_restrictions"),
    ("smtpd_sender_restrictions = reject_non_fqdn_helo_hostname",
     "reject_non_fqdn_helo_hostname judges no helo command here"),
    ("smtpd_helo_restrictions = reject_unauth_destination",
     "reject_unauth_destination judges no recipient address here"),
    ("smtpd_recipient_restrictions = reject_no_such_thing",
     "unknown restriction 'reject_no_such_thing'"),
])
def test_a_restriction_in_a_list_that_cannot_judge_it_stops_start(
        setting: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        restrictions(setting + "\n")


def test_unqualified_addresses_are_looked_up_qualified_and_named_as_sent() -> None:
    judged = restrictions(
        "smtpd_recipient_restrictions = check_sender_access inline:{ "
        "s@origin.test=REJECT }, check_recipient_access inline:{ r@origin.test=REJECT }\n")
    assert judged.check_recipient(INSIDE, "s", "x@b.test") == \
        "554 5.7.1 <s>: Sender address rejected: Access denied"
    assert judged.check_recipient(INSIDE, "a@b.test", "r") == \
        "554 5.7.1 <r>: Recipient address rejected: Access denied"


def test_an_unqualified_local_recipient_is_judged_at_myorigin() -> None:
    """reject_unlisted_recipient looks up user@$myorigin (a local domain
    here), and names the recipient as sent."""
    judged = build_parts(from_text(IN_PROCESS_CF + "myorigin = mx.test\n")).restrictions
    assert judged.check_recipient(INSIDE, "a@b.test", "nobody") == \
        "550 5.1.1 <nobody>: Recipient address rejected: User unknown in local recipient table"


async def test_a_session_names_addresses_as_sent_and_queues_them_qualified(
        tmp_path: Path, maillog_lines: list[str]) -> None:
    queued: list[Envelope] = []
    cf = (IN_PROCESS_CF + "myorigin = origin.test\n"
          "smtpd_recipient_restrictions = check_recipient_access inline:{ "
          "no@origin.test=REJECT }\n")
    async with in_process_smtpd(tmp_path, cf, on_queued=queued.append) as smtpd:
        replies = await one_at_a_time(smtpd.port, [
            "EHLO c.test", "MAIL FROM:<me>", "RCPT TO:<no>", "RCPT TO:<you>",
            "RCPT TO:<you@origin.test>", "DATA", "Subject: x\r\n\r\nbody\r\n.", "QUIT"])
    assert replies[1:5] == ["250 2.1.0 Ok",
                            "554 5.7.1 <no>: Recipient address rejected: Access denied",
                            "250 2.1.5 Ok", "250 2.1.5 Ok"]
    assert replies[6].startswith("250 2.0.0 Ok: queued as ")
    assert [(envelope.sender, envelope.recipients) for envelope in queued] == [
        ("me@origin.test", ["you@origin.test"])]  # one recipient: the same once qualified
    assert any(line.endswith("reject: RCPT from unknown[127.0.0.1]: 554 5.7.1 <no>: Recipient "
                             "address rejected: Access denied; from=<me> to=<no> proto=ESMTP "
                             "helo=<c.test>") for line in maillog_lines)


def test_an_unqualified_recipient_is_relayed_only_where_myorigin_is_ours() -> None:
    """user is user@$myorigin, and $myorigin need not be ours (a relay whose
    domain is hosted elsewhere): an outside client may not relay to it, as
    Postfix judges the address after rewriting it. The review of the change
    that passed addresses as sent found it relayed."""
    judged = restrictions("myorigin = hosted-elsewhere.test\n")
    assert judged.check_recipient(OUTSIDE, "a@b.test", "user") == \
        "554 5.7.1 <user>: Relay access denied"
    assert judged.check_recipient(INSIDE, "a@b.test", "user") is None
    ours = restrictions("myorigin = relay.test\n")  # in relay_domains
    assert ours.check_recipient(OUTSIDE, "a@b.test", "user") is None
    permitted = restrictions("myorigin = hosted-elsewhere.test\nsmtpd_relay_restrictions = "
                             "permit_auth_destination, reject\n")
    assert permitted.check_recipient(OUTSIDE, "a@b.test", "user") == \
        "554 5.7.1 <user>: Recipient address rejected: Access denied"


async def test_received_names_the_one_recipient_as_sent(tmp_path: Path) -> None:
    """Postfix's smtpd writes "for <…>" with the recipient as the client sent
    it, and only when it accepted one RCPT (two that are one once
    qualified are two RCPTs)."""
    cf = IN_PROCESS_CF + "myorigin = origin.test\n"
    async with in_process_smtpd(tmp_path, cf) as smtpd:
        for recipients in (["you"], ["you", "you@origin.test"]):
            replies = await one_at_a_time(smtpd.port, [
                "EHLO c.test", "MAIL FROM:<me>", *[f"RCPT TO:<{r}>" for r in recipients],
                "DATA", "Subject: x\r\n\r\nbody\r\n.", "QUIT"])
            assert replies[-2].startswith("250 2.0.0 Ok: queued as ")
    texts = [path.read_bytes() for path in (tmp_path / "queue").rglob("*")
             if path.is_file() and b"Received: " in path.read_bytes()]
    assert len(texts) == 2
    assert sum(b"\tfor <you>; " in text for text in texts) == 1
    assert not any(b"for <you@origin.test>" in text for text in texts)


@pytest.mark.parametrize("recipient", [
    "x%victim.example@relay.test", '"x@victim.example"@relay.test',
    "victim.example!x@relay.test", "x%victim.example@sub.relay.test"])
def test_a_routed_address_in_a_relay_domain_is_not_ours(recipient: str) -> None:
    """Postfix's allow_untrusted_routing = no: the next hop may honour the
    route (the percent hack) and deliver to victim.example, so an outside
    client may not send it there. A review found us relaying these."""
    judged = restrictions("")
    assert judged.check_recipient(OUTSIDE, "a@b.test", recipient) == \
        f"554 5.7.1 <{recipient.replace(chr(34), '')}>: Relay access denied"
    assert judged.check_recipient(INSIDE, "a@b.test", recipient) is None  # mynetworks
    assert judged.check_recipient(OUTSIDE, "a@b.test", "x@relay.test") is None
    allowed = restrictions("allow_untrusted_routing = yes\n")
    assert allowed.check_recipient(OUTSIDE, "a@b.test", recipient) is None


@pytest.mark.parametrize("recipient", ["x%victim.example@mx.test", "victim.example!x@mx.test",
                                       '"x@victim.example"@mx.test', "x%victim.example"])
def test_a_routed_address_in_a_local_domain_is_not_ours_either(recipient: str) -> None:
    """Postfix resolves the route of a local address to elsewhere (the
    percent hack), so it is foreign to an outside client: Relay access
    denied, not User unknown (and permit_auth_destination does not permit
    it). Found by a review; compared with Postfix by the reviewer."""
    judged = build_parts(from_text(IN_PROCESS_CF + "myorigin = mx.test\n")).restrictions
    assert judged.check_recipient(OUTSIDE, "a@b.test", recipient) == \
        f"554 5.7.1 <{recipient.replace(chr(34), '')}>: Relay access denied"
