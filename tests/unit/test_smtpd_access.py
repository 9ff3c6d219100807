"""check_client_access, check_helo_access, check_sender_access and
check_recipient_access, against Postfix's access(5) and smtpd_check.c.

The lookup keys and the meaning of each action are tested as pure functions;
the restrictions through build_parts, as the receiver builds them; and a few
sessions with an in-process receiver show the replies on the wire and the
reject lines. The reply texts were confirmed against Postfix 3.7
(tests/interop/test_postfix_access.py).
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
from mta.smtpd import access
from mta.smtpd.access import (
    DUNNO,
    LOG,
    PERMIT,
    REFUSE,
    UNSUPPORTED,
    address_keys,
    client_keys,
    domain_keys,
    mail_keys,
    parent_domains,
    parse_action,
)
from mta.smtpd.checks import ClientFacts, Restrictions
from tests.helpers import IN_PROCESS_CF, in_process_smtpd, one_at_a_time, until

OUTSIDE = ClientFacts(address="192.0.2.7", hostname="mail.sub.example.org")
NAMELESS = ClientFacts(address="192.0.2.7")  # no reverse name: "unknown"
SERVER_ERROR = "451 4.3.5 Server configuration error"
RELAY_DOMAINS = "relay_domains = relay.test\n"  # x@relay.test: ours to take, no mailbox
FIRST_EXTRA_LINE = (IN_PROCESS_CF + RELAY_DOMAINS).count("\n") + 1


def restrictions(extra: str, tmp_path: Path | None = None) -> Restrictions:
    """The restrictions of IN_PROCESS_CF plus extra (tables relative to tmp_path)."""
    path = str(tmp_path / "main.cf") if tmp_path is not None else "main.cf"
    return build_parts(from_text(IN_PROCESS_CF + RELAY_DOMAINS + extra, path)).restrictions


def keys(found: list[access.Key]) -> list[str]:
    return [key for key, _ in found]


# -- lookup keys ------------------------------------------------------------------------
def test_parent_domains_as_postfix_walks_them() -> None:
    assert parent_domains("mail.sub.example.org") == ["sub.example.org", "example.org", "org"]
    assert parent_domains("example") == []
    assert parent_domains("mail.example.") == ["example."]  # no empty key
    assert parent_domains(".example") == []  # the first dot starts no parent
    assert parent_domains("a..b") == [".b"]


def test_client_keys_name_then_parents_then_address_prefixes() -> None:
    """check_namadr_access: with parent_domain_matches_subdomains (Postfix's
    default) "example.org" is looked up, ".example.org" is not; a cidr:
    table gets only the full address (the other keys are partial)."""
    assert client_keys("mail.sub.example.org", "192.0.2.7") == [
        ("mail.sub.example.org", False), ("sub.example.org", True), ("example.org", True),
        ("org", True), ("192.0.2.7", False), ("192.0.2", True), ("192.0", True),
        ("192", True)]
    assert keys(client_keys("unknown", "192.0.2.7"))[:2] == ["unknown", "192.0.2.7"]
    assert keys(address_keys("2001:db8:1::5")) == [
        "2001:db8:1::5", "2001:db8:1:", "2001:db8:1", "2001:db8", "2001"]


def test_a_numeric_helo_name_has_no_parents() -> None:
    assert domain_keys("192.0.2.1") == [("192.0.2.1", False)]
    assert keys(domain_keys("Mail.Example.COM")) == ["Mail.Example.COM", "Example.COM", "COM"]
    assert domain_keys("") == []


def test_mail_keys_full_address_domain_parents_then_local_part() -> None:
    """mail_addr_find with FULL, NOEXT, DOMAIN, PDMS and LOCALPART_AT."""
    assert keys(mail_keys("bob+news@lists.example.org", "+")) == [
        "bob+news@lists.example.org", "bob@lists.example.org", "lists.example.org",
        "example.org", "org", "bob+news@", "bob@"]
    assert keys(mail_keys("bob+news@example.org", "")) == [
        "bob+news@example.org", "example.org", "org", "bob+news@"]
    assert mail_keys("", "+") == [("<>", False)]  # smtpd_null_access_lookup_key


# -- actions ------------------------------------------------------------------------------
@pytest.mark.parametrize(("value", "verdict", "reply"), [
    ("OK", PERMIT, None),
    ("ok and some text", PERMIT, None),
    ("RELAY", PERMIT, None),
    ("PERMIT", PERMIT, None),
    ("permit, reject", PERMIT, None),  # "permit" ends the list it starts
    ("1700000000", PERMIT, None),  # all-numeric: pop-before-smtp's time stamps
    ("550", PERMIT, None),  # all-numeric too, as in Postfix (start warns)
    ("DUNNO", DUNNO, None),
    ("dunno whatever", DUNNO, None),
    ("REJECT", REFUSE, "554 5.7.1 <x.test>: Helo command rejected: Access denied"),
    ("reject go away", REFUSE, "554 5.7.1 <x.test>: Helo command rejected: go away"),
    ("REJECT 5.7.26 spf", REFUSE, "554 5.7.26 <x.test>: Helo command rejected: spf"),
    ("DEFER", REFUSE, "450 4.7.1 <x.test>: Helo command rejected: Access denied"),
    ("DEFER 4.4.5 later", REFUSE, "450 4.4.5 <x.test>: Helo command rejected: later"),
    ("550 5.7.1", REFUSE, "550 5.7.1 <x.test>: Helo command rejected: Access denied"),
    ("521 no mail here", REFUSE, "521 5.7.1 <x.test>: Helo command rejected: no mail here"),
    ("421 4.7.0 busy", REFUSE, "421 4.7.0 <x.test>: Helo command rejected: busy"),
    # the reply code's class wins over the enhanced code's
    ("450 5.7.2 soft", REFUSE, "450 4.7.2 <x.test>: Helo command rejected: soft"),
    ("REJECT 2.0.0 odd", REFUSE, "554 5.0.0 <x.test>: Helo command rejected: odd"),
    # an address status refusing a HELO name is made X.0.0 (smtpd_dsn_fix)
    ("REJECT 5.1.1 custom", REFUSE, "554 5.0.0 <x.test>: Helo command rejected: custom"),
    ("WARN check this", LOG, None),
    ("INFO", LOG, None),
])
def test_actions(value: str, verdict: str, reply: str | None) -> None:
    action = parse_action(value)
    assert action.verdict == verdict
    if reply is not None:
        assert action.reply("x.test", access.HELO) == reply


@pytest.mark.parametrize("value", [
    "HOLD", "DISCARD spam", "FILTER smtp:[127.0.0.1]:10025", "REDIRECT a@b.test",
    "BCC a@b.test", "PREPEND X-Seen: yes", "defer_if_permit", "HANGUP",
    "FOO", "reject_unauth_destination", "permit_mynetworks, reject", "texthash:/etc/x",
    "399 not a reply code", "5.7.1 no code",
])
def test_what_postern_cannot_do_is_a_server_configuration_error(value: str) -> None:
    """Never a permit, never ignored: 451 4.3.5, as Postfix answers an action
    it does not know, so mail the operator meant to hold, discard, filter or
    refuse waits at the sender until the table is fixed."""
    action = parse_action(value)
    assert action.verdict == UNSUPPORTED
    assert action.reply("x.test", access.HELO) == SERVER_ERROR
    assert action.problem is not None and SERVER_ERROR in action.problem


@pytest.mark.parametrize(("what", "name", "expected"), [
    (access.SENDER, "a@b.test", "554 5.1.7 <a@b.test>: Sender address rejected: custom"),
    (access.RECIPIENT, "a@b.test", "554 5.1.1 <a@b.test>: Recipient address rejected: custom"),
    (access.CLIENT, "unknown[192.0.2.7]",
     "554 5.0.0 <unknown[192.0.2.7]>: Client host rejected: custom"),
])
def test_an_address_status_is_fitted_to_what_is_refused(
        what: str, name: str, expected: str) -> None:
    assert parse_action("REJECT 5.1.1 custom").reply(name, what) == expected
    assert parse_action("REJECT 5.1.7 sender").reply("a@b.test", access.RECIPIENT) == \
        "554 5.1.3 <a@b.test>: Recipient address rejected: sender"


def test_a_reply_is_printable_and_at_most_510_characters() -> None:
    assert parse_action("REJECT a\tb").reply("x.test", access.HELO) == \
        "554 5.7.1 <x.test>: Helo command rejected: a b"
    assert len(parse_action("REJECT " + "x" * 600).reply("x.test", access.HELO)) == 510


# -- the restrictions ---------------------------------------------------------------------
def test_an_ok_for_the_client_relays_and_a_reject_refuses() -> None:
    built = restrictions("smtpd_relay_restrictions = permit_mynetworks, check_client_access "
                         "inline:{ 192.0.2.7=OK, 192.0.2.66=REJECT }, "
                         "reject_unauth_destination\n")
    assert built.check_recipient(NAMELESS, "a@b.test", "x@elsewhere.test") is None
    assert built.check_recipient(ClientFacts(address="192.0.2.66"), "a@b.test",
                                 "x@relay.test") == (
        "554 5.7.1 <unknown[192.0.2.66]>: Client host rejected: Access denied")
    assert built.check_recipient(ClientFacts(address="192.0.2.8"), "a@b.test",
                                 "x@elsewhere.test") == (
        "554 5.7.1 <x@elsewhere.test>: Relay access denied")


def test_the_first_key_found_decides_even_dunno() -> None:
    """check_namadr_access stops at the name's entry: DUNNO for the host
    keeps its network's REJECT from applying; a parent domain matches."""
    built = restrictions(
        "smtpd_recipient_restrictions = check_client_access inline:{ "
        "mail.sub.example.org=DUNNO, example.org=REJECT, 192.0.2=REJECT by network }\n")
    assert built.check_recipient(OUTSIDE, "", "x@relay.test") is None
    other = ClientFacts(address="198.51.100.1", hostname="smtp.example.org")
    assert built.check_recipient(other, "", "x@relay.test") == (
        "554 5.7.1 <smtp.example.org[198.51.100.1]>: Client host rejected: Access denied")
    assert built.check_recipient(NAMELESS, "", "x@relay.test") == (
        "554 5.7.1 <unknown[192.0.2.7]>: Client host rejected: by network")


def test_unknown_is_the_key_of_a_client_without_a_name() -> None:
    """As Postfix looks it up (confirmed against Postfix 3.7)."""
    built = restrictions("smtpd_recipient_restrictions = check_client_access "
                         "inline:{ unknown=REJECT no reverse name }\n")
    assert built.check_recipient(NAMELESS, "", "x@relay.test") == (
        "554 5.7.1 <unknown[192.0.2.7]>: Client host rejected: no reverse name")
    assert built.check_recipient(OUTSIDE, "", "x@relay.test") is None


def test_a_cidr_table_sees_the_client_address(tmp_path: Path) -> None:
    (tmp_path / "clients.cidr").write_text("192.0.2.0/24 REJECT\n[2001:db8::]/32 DEFER\n")
    built = restrictions("smtpd_recipient_restrictions = check_client_access "
                         "cidr:clients.cidr\n", tmp_path)
    assert built.check_recipient(OUTSIDE, "", "x@relay.test") == (
        "554 5.7.1 <mail.sub.example.org[192.0.2.7]>: Client host rejected: Access denied")
    assert built.check_recipient(ClientFacts(address="2001:db8::1"), "", "x@relay.test") == (
        "450 4.7.1 <unknown[2001:db8::1]>: Client host rejected: Access denied")
    assert built.check_recipient(ClientFacts(address="198.51.100.1"), "",
                                 "x@relay.test") is None


def test_sender_access_keys_case_and_the_null_sender(tmp_path: Path) -> None:
    (tmp_path / "senders").write_text("Spammer@Example.ORG  REJECT\n"
                                      "bulk.example.net    550 5.7.1 No bulk mail\n"
                                      "<>                  REJECT no bounces here\n"
                                      "postmaster@         DUNNO\n"
                                      "newsletter@         DEFER try later\n")
    built = restrictions("smtpd_sender_restrictions = check_sender_access texthash:senders\n"
                         "recipient_delimiter = +\n", tmp_path)
    assert built.check_sender(NAMELESS, "spammer@example.org") == (
        "554 5.7.1 <spammer@example.org>: Sender address rejected: Access denied")
    assert built.check_sender(NAMELESS, "SPAMMER+x@EXAMPLE.org") == (
        "554 5.7.1 <SPAMMER+x@EXAMPLE.org>: Sender address rejected: Access denied")
    assert built.check_sender(NAMELESS, "a@mx1.bulk.example.net") == (
        "550 5.7.1 <a@mx1.bulk.example.net>: Sender address rejected: No bulk mail")
    assert built.check_sender(NAMELESS, "") == (
        "554 5.7.1 <>: Sender address rejected: no bounces here")
    assert built.check_sender(NAMELESS, "newsletter@anywhere.test") == (
        "450 4.7.1 <newsletter@anywhere.test>: Sender address rejected: try later")
    assert built.check_sender(NAMELESS, "postmaster@bulk.example.net") == (
        "550 5.7.1 <postmaster@bulk.example.net>: Sender address rejected: No bulk mail")
    assert built.check_sender(NAMELESS, "alice@example.org") is None


def test_an_unqualified_sender_is_looked_up_at_myorigin() -> None:
    built = restrictions("smtpd_sender_restrictions = check_sender_access "
                         "inline:{ root@mx.test=REJECT }\n")
    assert built.check_sender(NAMELESS, "root") == (
        "554 5.7.1 <root>: Sender address rejected: Access denied")


def test_recipient_access_and_helo_and_sender_access_in_the_recipient_list() -> None:
    built = restrictions(
        "smtpd_recipient_restrictions = check_helo_access inline:{ example.com=REJECT "
        "You are not example.com }, check_sender_access inline:{ <>=REJECT }, "
        "check_recipient_access inline:{ x@relay.test=REJECT 5.1.1 moved away }\n")
    # check_helo_access in the recipient list judges the session's HELO name
    assert built.check_recipient(NAMELESS, "a@b.test", "bob@relay.test", "mx.example.com") == (
        "554 5.7.1 <mx.example.com>: Helo command rejected: You are not example.com")
    assert built.check_recipient(NAMELESS, "a@b.test", "bob@relay.test", None) is None
    assert built.check_recipient(NAMELESS, "", "bob@relay.test", "c.test") == (
        "554 5.7.1 <>: Sender address rejected: Access denied")
    # VRFY: no transaction, so no sender to judge
    assert built.check_recipient(NAMELESS, None, "bob@relay.test", "c.test") is None
    assert built.check_recipient(NAMELESS, "a@b.test", "x@relay.test", "c.test") == (
        "554 5.1.1 <x@relay.test>: Recipient address rejected: moved away")


def test_helo_access_in_the_helo_list_and_client_access_too() -> None:
    built = restrictions("smtpd_helo_restrictions = check_client_access "
                         "inline:{ 192.0.2.66=REJECT }, check_helo_access "
                         "inline:{ localhost=REJECT, friend.test=OK }, reject\n")
    assert built.check_helo(NAMELESS, "localhost") == (
        "554 5.7.1 <localhost>: Helo command rejected: Access denied")
    assert built.check_helo(NAMELESS, "mx.friend.test") is None  # OK ends the list
    assert built.check_helo(NAMELESS, "other.test") == (
        "554 5.7.1 <other.test>: Helo command rejected: Access denied")  # the final reject
    assert built.check_helo(ClientFacts(address="192.0.2.66"), "mx.friend.test") == (
        "554 5.7.1 <unknown[192.0.2.66]>: Client host rejected: Access denied")


def test_an_unsupported_action_is_a_451_never_a_permit(maillog_lines: list[str]) -> None:
    built = restrictions("smtpd_relay_restrictions = check_client_access "
                         "inline:{ 192.0.2.7=HOLD }, reject_unauth_destination\n")
    assert any("192.0.2.7: action 'HOLD' is not supported" in warning
               for warning in built.warnings)
    assert built.check_recipient(NAMELESS, "a@b.test", "x@elsewhere.test") == SERVER_ERROR
    assert built.check_recipient(NAMELESS, "a@b.test", "x@relay.test") == SERVER_ERROR
    assert ("smtpd: warning: check_client_access inline:{ 192.0.2.7=HOLD }: 192.0.2.7: "
            "action 'HOLD' is not supported: a match is answered 451 4.3.5 Server "
            "configuration error") in maillog_lines


def test_warn_is_noted_for_the_session_and_goes_on() -> None:
    """The session logs it (tests/interop/test_postfix_access.py: the line
    as Postfix's), with the queue ID, command and protocol only it knows."""
    built = restrictions("smtpd_sender_restrictions = check_sender_access "
                         "inline:{ b.test=WARN watch this one }, reject\n")
    client = ClientFacts("192.0.2.7")
    assert built.check_sender(client, "a@b.test") == (
        "554 5.7.1 <a@b.test>: Sender address rejected: Access denied")
    assert client.whatsup == [("warn", "watch this one")]


def test_start_warns_of_what_a_table_cannot_mean(tmp_path: Path) -> None:
    (tmp_path / "helo").write_text("bad.test 550\nempty.test\nodd.test FOO bar\n")
    built = restrictions("smtpd_helo_restrictions = check_helo_access texthash:helo\n",
                         tmp_path)
    table = tmp_path / "helo"
    assert built.warnings == [
        f"{table}:1: check_helo_access texthash:helo: bad.test: '550' alone is all-numeric, "
        "which means OK (access(5)); write '550 text' to refuse",
        f"{table}:2: texthash:helo: empty.test: expected format: key whitespace value -- "
        "ignoring this entry",
        f"{table}:3: check_helo_access texthash:helo: odd.test: unknown action 'FOO bar': "
        "a match is answered 451 4.3.5 Server configuration error"]
    # the empty entry is no entry: as postmap and Postfix's texthash skip it
    assert built.check_helo(NAMELESS, "empty.test") is None


# -- configuration errors and the open-relay check -------------------------------------
@pytest.mark.parametrize(("setting", "message"), [
    ("smtpd_sender_restrictions = check_sender_access",
     "smtpd_sender_restrictions: unknown restriction 'check_sender_access' without a table"),
    ("smtpd_sender_restrictions = check_sender_access reject",
     "restriction check_sender_access: bad argument 'reject': need type:name"),
    ("smtpd_sender_restrictions = check_sender_access texthash:/nonexistent/senders",
     "check_sender_access texthash:/nonexistent/senders: /nonexistent/senders: cannot read "
     "table"),
    ("smtpd_helo_restrictions = check_recipient_access inline:{ a=REJECT }",
     "check_recipient_access judges no recipient address here: it works in "
     "smtpd_relay_restrictions, smtpd_recipient_restrictions"),
    ("smtpd_sender_restrictions = check_helo_access inline:{ a=REJECT }",
     "check_helo_access judges no helo command here"),
    ("smtpd_recipient_restrictions = check_client_access nosuchtype:x",
     "unsupported table type 'nosuchtype'"),
    ("smtpd_recipient_restrictions = check_etrn_access inline:{ a=REJECT }",
     "unknown restriction 'check_etrn_access'"),
])
def test_a_bad_access_restriction_stops_start_and_reload(setting: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("{", r"\{").replace("}", r"\}")):
        restrictions(setting + "\n")


@pytest.mark.parametrize("relay", [
    "check_client_access inline:{ 192.0.2.7=OK }",
    "check_recipient_access inline:{ elsewhere.test=REJECT }",
    # a table's words are no restrictions, whatever they say
    "check_client_access inline:{ 192.0.2.7=reject }",
    "check_client_access inline:{ reject=reject }",
])
def test_an_access_map_is_no_relay_stopper(relay: str) -> None:
    with pytest.raises(ConfigError, match="specify at least one working instance"):
        restrictions(f"smtpd_relay_restrictions = {relay}\n")


def test_an_ok_for_a_sender_before_the_relay_check_is_warned_of() -> None:
    """The client writes the sender and the HELO name: an OK there relays
    for anyone who writes them (Postfix is silent about it)."""
    built = restrictions("smtpd_relay_restrictions = permit_mynetworks, check_sender_access "
                         "inline:{ boss@mx.test=OK }, reject_unauth_destination\n")
    assert built.warnings == [
        f"main.cf:{FIRST_EXTRA_LINE}: smtpd_relay_restrictions: check_sender_access "
        "inline:{ boss@mx.test=OK } "
        "can answer OK before reject_unauth_destination: any client that sends a listed "
        "sender address may relay; use DUNNO to make an exception, or place it after "
        "reject_unauth_destination"]
    assert built.check_recipient(NAMELESS, "boss@mx.test", "x@elsewhere.test") is None
    after = restrictions("smtpd_relay_restrictions = reject_unauth_destination\n"
                         "smtpd_recipient_restrictions = check_sender_access "
                         "inline:{ boss@mx.test=OK }\n")
    assert after.warnings == []
    assert after.check_recipient(NAMELESS, "boss@mx.test", "x@elsewhere.test") == (
        "554 5.7.1 <x@elsewhere.test>: Relay access denied")


# -- on the wire -------------------------------------------------------------------------
Converse = Callable[[list[str]], Awaitable[list[str]]]


@asynccontextmanager
async def receiver(tmp_path: Path, extra: str) -> AsyncIterator[Converse]:
    async with in_process_smtpd(tmp_path, IN_PROCESS_CF + RELAY_DOMAINS + extra) as smtpd:
        yield functools.partial(one_at_a_time, smtpd.port)


async def test_refusals_on_the_wire_and_in_the_maillog(
        tmp_path: Path, maillog_lines: list[str]) -> None:
    """smtpd_delay_reject = yes: each refusal is the reply to RCPT, logged
    with the sender, the recipient and the HELO name."""
    extra = ("smtpd_recipient_restrictions = check_helo_access inline:{ bad.test=REJECT }, "
             "check_sender_access inline:{ spam.test=DEFER }, "
             "check_recipient_access inline:{ gone@mx.test=550 5.1.1 no longer here }\n")
    async with receiver(tmp_path, extra) as converse:
        assert await converse(["EHLO bad.test", "MAIL FROM:<a@b.test>",
                               "RCPT TO:<x@relay.test>"]) == [
            "250 8BITMIME", "250 2.1.0 Ok",
            "554 5.7.1 <bad.test>: Helo command rejected: Access denied"]
        assert await converse(["EHLO good.test", "MAIL FROM:<x@spam.test>",
                               "RCPT TO:<x@relay.test>", "RSET", "MAIL FROM:<a@b.test>",
                               "RCPT TO:<gone@mx.test>", "RCPT TO:<x@relay.test>"]) == [
            "250 8BITMIME", "250 2.1.0 Ok",
            "450 4.7.1 <x@spam.test>: Sender address rejected: Access denied",
            "250 2.0.0 Ok", "250 2.1.0 Ok",
            "550 5.1.1 <gone@mx.test>: Recipient address rejected: no longer here",
            "250 2.1.5 Ok"]
    assert ("smtpd: NOQUEUE: reject: RCPT from unknown[127.0.0.1]: 554 5.7.1 <bad.test>: "
            "Helo command rejected: Access denied; from=<a@b.test> to=<x@relay.test> "
            "proto=ESMTP helo=<bad.test>") in maillog_lines
    assert ("smtpd: NOQUEUE: reject: RCPT from unknown[127.0.0.1]: 550 5.1.1 <gone@mx.test>: "
            "Recipient address rejected: no longer here; from=<a@b.test> to=<gone@mx.test> "
            "proto=ESMTP helo=<good.test>") in maillog_lines


async def test_without_delay_the_helo_and_mail_replies_refuse(
        tmp_path: Path, maillog_lines: list[str]) -> None:
    extra = ("smtpd_delay_reject = no\n"
             "smtpd_helo_restrictions = check_helo_access inline:{ bad.test=REJECT }\n"
             "smtpd_sender_restrictions = check_client_access inline:{ 127.0.0.2=OK }, "
             "check_sender_access inline:{ <>=REJECT no bounces }\n")
    async with receiver(tmp_path, extra) as converse:
        assert await converse(["EHLO mail.bad.test", "EHLO good.test", "MAIL FROM:<>",
                               "MAIL FROM:<a@b.test>"]) == [
            "554 5.7.1 <mail.bad.test>: Helo command rejected: Access denied",
            "250 8BITMIME", "554 5.7.1 <>: Sender address rejected: no bounces",
            "250 2.1.0 Ok"]
    assert ("smtpd: NOQUEUE: reject: MAIL from unknown[127.0.0.1]: 554 5.7.1 <>: Sender "
            "address rejected: no bounces; from=<> proto=ESMTP helo=<good.test>") \
        in maillog_lines


async def test_a_client_listed_ok_may_relay_on_the_wire(tmp_path: Path) -> None:
    """mynetworks is 127.0.0.0/8 in IN_PROCESS_CF; without permit_mynetworks
    the access map alone lets 127.0.0.1 relay."""
    extra = ("smtpd_relay_restrictions = check_client_access inline:{ 127.0.0.1=OK }, "
             "reject_unauth_destination\n")
    async with receiver(tmp_path, extra) as converse:
        assert await converse(["EHLO c.test", "MAIL FROM:<a@b.test>",
                               "RCPT TO:<x@elsewhere.test>"]) == [
            "250 8BITMIME", "250 2.1.0 Ok", "250 2.1.5 Ok"]
    async with receiver(tmp_path, "smtpd_relay_restrictions = reject_unauth_destination\n") \
            as converse:
        assert (await converse(["EHLO c.test", "MAIL FROM:<a@b.test>",
                                "RCPT TO:<x@elsewhere.test>"]))[-1] == \
            "554 5.7.1 <x@elsewhere.test>: Relay access denied"


def test_a_trailing_dot_is_no_way_around_a_listed_address() -> None:
    """a@bad.example. is a@bad.example (relay control strips the dot too)."""
    assert access.mail_keys("a@bad.example.", "+") == access.mail_keys("a@bad.example", "+")


async def test_warn_lines_name_the_queue_id_command_and_protocol(
        tmp_path: Path, maillog_lines: list[str]) -> None:
    """Postfix's log_whatsup: NOQUEUE before the transaction has a queue ID
    (the first RCPT's check comes before the ID), the ID after; at HELO
    without smtpd_delay_reject, the HELO command and the name judged."""
    cf = ("smtpd_delay_reject = no\n"
          "smtpd_helo_restrictions = check_helo_access inline:{ watched.test=WARN helo }\n"
          "smtpd_recipient_restrictions = check_recipient_access "
          "inline:{ relay.test=WARN rcpt }\n")
    async with in_process_smtpd(tmp_path, IN_PROCESS_CF + cf) as smtpd:
        said = await one_at_a_time(smtpd.port, [
            "HELO watched.test", "MAIL FROM:<a@client.test>", "RCPT TO:<b@relay.test>",
            "RCPT TO:<c@relay.test>", "QUIT"])
        await until(lambda: any("disconnect from" in line for line in maillog_lines))
    assert said[:4] == ["250 mx.test", "250 2.1.0 Ok", "250 2.1.5 Ok", "250 2.1.5 Ok"]
    [qid] = [line.split(":")[1].strip() for line in maillog_lines if ": client=" in line]
    warned = [line for line in maillog_lines if ": warn: " in line]
    assert warned == [
        "smtpd: NOQUEUE: warn: HELO from unknown[127.0.0.1]: helo; proto=SMTP "
        "helo=<watched.test>",
        "smtpd: NOQUEUE: warn: RCPT from unknown[127.0.0.1]: rcpt; from=<a@client.test> "
        "to=<b@relay.test> proto=SMTP helo=<watched.test>",
        f"smtpd: {qid}: warn: RCPT from unknown[127.0.0.1]: rcpt; from=<a@client.test> "
        "to=<c@relay.test> proto=SMTP helo=<watched.test>"]


def test_a_bare_table_is_the_access_restriction_of_its_list() -> None:
    """Postfix's generic_checks: type:table alone means check_client_access
    in smtpd_client_restrictions, check_helo_access in the HELO list,
    check_sender_access in the sender list, check_recipient_access in the
    recipient and relay lists."""
    built = restrictions("smtpd_client_restrictions = inline:{ 192.0.2.7=REJECT c }\n"
                         "smtpd_helo_restrictions = inline:{ h.test=REJECT h }\n"
                         "smtpd_sender_restrictions = inline:{ s.test=REJECT s }\n"
                         "smtpd_relay_restrictions = inline:{ r@relay.test=REJECT r }, "
                         "permit_mynetworks, reject_unauth_destination\n")
    assert built.check_client(NAMELESS) == \
        "554 5.7.1 <unknown[192.0.2.7]>: Client host rejected: c"
    other = ClientFacts("192.0.2.8")
    assert built.check_helo(other, "h.test") == "554 5.7.1 <h.test>: Helo command rejected: h"
    assert built.check_sender(other, "a@s.test") == \
        "554 5.7.1 <a@s.test>: Sender address rejected: s"
    assert built.check_recipient(other, "a@b.test", "r@relay.test") == \
        "554 5.7.1 <r@relay.test>: Recipient address rejected: r"
    assert built.check_recipient(other, "a@b.test", "q@relay.test") is None


def test_a_warned_stopper_does_not_keep_the_server_from_relaying() -> None:
    """warn_if_reject reject_unauth_destination only logs: with nothing
    else that refuses other domains, the configuration is an open relay
    and is refused, as one without the stopper would be."""
    with pytest.raises(ConfigError, match="specify at least one working instance"):
        build_parts(from_text(IN_PROCESS_CF + "smtpd_relay_restrictions = warn_if_reject "
                              "reject_unauth_destination\n"))
    # Last in a list it acts on nothing: ignored, as Postfix ignores it, with a warning.
    built = restrictions("smtpd_helo_restrictions = reject_invalid_helo_hostname, "
                         "warn_if_reject\n")
    assert any("warn_if_reject at the end of the list has no restriction to act on" in w
               for w in built.warnings)


def test_warn_if_reject_notes_the_refusal_and_goes_on() -> None:
    built = restrictions("smtpd_sender_restrictions = warn_if_reject check_sender_access "
                         "inline:{ b.test=REJECT no }, permit\n")
    client = ClientFacts("192.0.2.7")
    assert built.check_sender(client, "a@b.test") is None
    assert client.whatsup == [
        ("reject_warning", "554 5.7.1 <a@b.test>: Sender address rejected: no")]


def test_check_ccert_access_looks_up_the_certificate_then_its_key() -> None:
    """Postfix's order: the certificate's fingerprint, then the public
    key's; any presented certificate (trusted or not); a refusal names the
    certificate's CN. Without a certificate there is nothing to look up."""
    built = restrictions("smtpd_relay_restrictions = check_ccert_access inline:{ "
                         "AA:01=OK, BB:02=REJECT, CC:03=OK }, reject_unauth_destination\n")
    by_cert = ClientFacts("192.0.2.7", ccert_fingerprints=("AA:01", "BB:02"),
                          ccert_name="laptop.test")
    assert built.check_recipient(by_cert, "a@b.test", "x@elsewhere.test") is None
    refused = ClientFacts("192.0.2.7", ccert_fingerprints=("BB:02", "CC:03"),
                          ccert_name="stolen.test")
    assert built.check_recipient(refused, "a@b.test", "x@elsewhere.test") == \
        "554 5.7.1 <stolen.test>: Client certificate rejected: Access denied"
    by_key = ClientFacts("192.0.2.7", ccert_fingerprints=("DD:04", "CC:03"))
    assert built.check_recipient(by_key, "a@b.test", "x@elsewhere.test") is None
    assert built.check_recipient(NAMELESS, "a@b.test", "x@elsewhere.test") == \
        "554 5.7.1 <x@elsewhere.test>: Relay access denied"


def test_warn_if_reject_does_not_turn_a_configuration_error_into_a_pass() -> None:
    """"Configuration errors cannot be converted into warnings" (Postfix's
    smtpd_check_reject): an action Postern cannot carry out still answers
    451 4.3.5, never lets the mail through."""
    built = restrictions("smtpd_recipient_restrictions = warn_if_reject check_recipient_access "
                         "inline:{ relay.test=HOLD }\n")
    client = ClientFacts("192.0.2.7")
    assert built.check_recipient(client, "a@b.test", "x@relay.test") == SERVER_ERROR
    assert client.whatsup == []


def test_reject_plaintext_session_refuses_a_session_without_tls() -> None:
    built = restrictions("smtpd_relay_restrictions = reject_plaintext_session, "
                         "permit_mynetworks, reject_unauth_destination\n"
                         "smtpd_client_restrictions = reject_plaintext_session\n")
    plain, encrypted = ClientFacts("127.0.0.1"), ClientFacts("127.0.0.1", tls=True)
    assert built.check_recipient(plain, "a@b.test", "x@elsewhere.test") == \
        "450 4.7.1 Session encryption is required"
    assert built.check_recipient(encrypted, "a@b.test", "x@elsewhere.test") is None
    assert built.check_client(plain) == "450 4.7.1 Session encryption is required"
    five = restrictions("plaintext_reject_code = 554\n"
                        "smtpd_client_restrictions = reject_plaintext_session\n")
    assert five.check_client(plain) == "554 5.7.1 Session encryption is required"


def test_check_sasl_access_looks_up_the_login_name() -> None:
    """Only for a client that logged in; a refusal names the login, its
    unprintable characters as "_", as Postfix's does."""
    built = restrictions("smtpd_sasl_auth_enable = yes\n"
                         "smtpd_relay_restrictions = check_sasl_access inline:{ "
                         "mallory@example.test=REJECT, carol=OK }, permit_sasl_authenticated, "
                         "reject_unauth_destination\n")
    mallory = ClientFacts("192.0.2.7", sasl_username="mallory@example.test")
    assert built.check_recipient(mallory, "a@b.test", "x@elsewhere.test") == \
        "554 5.7.1 <mallory@example.test>: SASL login name rejected: Access denied"
    alice = ClientFacts("192.0.2.7", sasl_username="alice")
    assert built.check_recipient(alice, "a@b.test", "x@elsewhere.test") is None
    assert built.check_recipient(NAMELESS, "a@b.test", "x@elsewhere.test") == \
        "554 5.7.1 <x@elsewhere.test>: Relay access denied"
    off = restrictions("smtpd_sasl_auth_enable = no\nsmtpd_client_restrictions = "
                       "check_sasl_access inline:{ a=REJECT }\n")
    assert any("restriction 'check_sasl_access' ignored: smtpd_sasl_auth_enable = no" in w
               for w in off.warnings)
