"""smtpd_client_restrictions and their two moments, against Postfix's smtpd_check.c and smtpd.c.

The decisions are tested through Restrictions, as the receiver builds them;
the sessions run an in-process receiver on 127.0.0.1 with its own main.cf.
With smtpd_delay_reject = yes the client is judged at RCPT and VRFY, before
the HELO name; with no, once at connect, and Postfix 3.7 then sends the
refusal instead of the greeting and answers every command but QUIT with 503
(tests/interop/test_postfix_client_restrictions.py shows the same on the
wire and in the log of a real Postfix).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from mta.config import from_text
from mta.errors import ConfigError
from mta.mailboxes import Mailboxes
from mta.master import build_parts
from mta.metrics import REGISTRY
from mta.smtpd import replies
from mta.smtpd.checks import ClientFacts, Restrictions
from tests.helpers import (
    IN_PROCESS_CF,
    in_process_smtpd,
    in_process_tls_cf,
    one_at_a_time,
    until,
)
from tests.unit.test_smtpd_pipelining import SpokenTo

OUTSIDE = ClientFacts(address="192.0.2.7", hostname="mail.example.org")
INSIDE = ClientFacts(address="127.0.0.1")
OUTSIDE_DENIED = "554 5.7.1 <mail.example.org[192.0.2.7]>: Client host rejected: Access denied"
DENIED = "554 5.7.1 <unknown[127.0.0.1]>: Client host rejected: Access denied"
SESSION_DENIED = "503 5.7.0 Error: access denied for unknown[127.0.0.1]"
OUTSIDE_CF = "mynetworks = 192.0.2.128/25\n"  # 127.0.0.1 and 192.0.2.7 are outside
PINNED = "AA:BB"  # a relay_clientcerts fingerprint


def restrictions(extra: str) -> Restrictions:
    config = from_text(IN_PROCESS_CF + extra)
    return Restrictions(config, Mailboxes.from_config(config),
                        relay_clientcerts=lambda fingerprints: PINNED in fingerprints)


# -- the decisions -----------------------------------------------------------------------
def test_the_empty_default_judges_nothing_anywhere() -> None:
    """Postfix's default; both moments off, so each RCPT costs one attribute
    test and a session none."""
    judged = restrictions("")
    assert judged.client == []
    assert not judged.client_at_connect and not judged.client_at_rcpt
    assert judged.check_client(OUTSIDE) is None


@pytest.mark.parametrize(("delay", "at_connect", "at_rcpt"), [
    ("yes", False, True), ("no", True, False)])
def test_smtpd_delay_reject_chooses_the_moment(delay: str, at_connect: bool,
                                               at_rcpt: bool) -> None:
    judged = restrictions(f"smtpd_client_restrictions = reject\nsmtpd_delay_reject = {delay}\n")
    assert (judged.client_at_connect, judged.client_at_rcpt) == (at_connect, at_rcpt)
    # At RCPT only when delayed: with no, the connect judged it already.
    refusal = judged.check_recipient(OUTSIDE, "a@client.test", "b@mx.test", "c.test")
    assert refusal == (OUTSIDE_DENIED if at_rcpt else
                       "550 5.1.1 <b@mx.test>: Recipient address rejected: User unknown in "
                       "local recipient table")


def facts(**changes: object) -> ClientFacts:
    client = ClientFacts(address="192.0.2.7", hostname="mail.example.org")
    for name, value in changes.items():
        setattr(client, name, value)
    return client


@pytest.mark.parametrize(("item", "passes", "refused"), [
    ("permit_mynetworks", INSIDE, OUTSIDE),
    ("permit_sasl_authenticated", facts(sasl_username="bob"), OUTSIDE),
    ("permit_tls_all_clientcerts", facts(tls=True, ccert_trusted=True), facts(tls=True)),
    ("permit_tls_clientcerts", facts(tls=True, ccert_fingerprints=(PINNED,)),
     facts(tls=True, ccert_fingerprints=("CC:DD",))),
    ("permit", OUTSIDE, None),
    ("check_client_access inline:{ example.org=OK }", OUTSIDE, facts(hostname="unknown")),
    ("check_client_access inline:{ 192.0.2=OK }", OUTSIDE, INSIDE),
])
def test_each_permit_ends_the_list_before_reject(item: str, passes: ClientFacts,
                                                 refused: ClientFacts | None) -> None:
    judged = restrictions(f"smtpd_client_restrictions = {item}, reject\n")
    assert judged.check_client(passes) is None
    if refused is not None:
        assert judged.check_client(refused) == \
            f"554 5.7.1 <{refused.peer}>: Client host rejected: Access denied"


def test_reject_and_an_access_map_name_the_client_as_host_and_address() -> None:
    judged = restrictions("smtpd_client_restrictions = check_client_access "
                          "inline:{ 192.0.2=REJECT go away, example.org=DEFER }\n")
    assert judged.check_client(OUTSIDE) == \
        "450 4.7.1 <mail.example.org[192.0.2.7]>: Client host rejected: Access denied"
    assert judged.check_client(facts(hostname="unknown")) == \
        "554 5.7.1 <unknown[192.0.2.7]>: Client host rejected: go away"
    assert judged.check_client(INSIDE) is None  # not listed: dunno, the end of the list


def test_a_permit_ends_only_the_client_list() -> None:
    """As Postfix's smtpd_check_rcpt: client, HELO, sender, then the
    recipient lists, each list's permit ending that list alone."""
    judged = restrictions("smtpd_client_restrictions = permit_mynetworks, reject\n"
                          "smtpd_helo_restrictions = reject\n")
    assert judged.check_recipient(INSIDE, "a@client.test", "b@relay.test", "c.test") == \
        "554 5.7.1 <c.test>: Helo command rejected: Access denied"
    assert judged.check_recipient(OUTSIDE, "a@client.test", "b@relay.test", "c.test") == \
        OUTSIDE_DENIED


def test_the_client_is_judged_before_the_helo_name_and_the_sender() -> None:
    judged = restrictions("smtpd_client_restrictions = reject\n"
                          "smtpd_helo_restrictions = reject\n"
                          "smtpd_sender_restrictions = reject\n")
    assert judged.check_recipient(OUTSIDE, "a@client.test", "b@relay.test", "c.test") == \
        OUTSIDE_DENIED
    # VRFY (no sender) and a client without HELO are judged too.
    assert judged.check_recipient(OUTSIDE, None, "b@relay.test", None) == OUTSIDE_DENIED


@pytest.mark.parametrize(("item", "message"), [
    ("reject_unauth_destination", "reject_unauth_destination judges no recipient address "
                                  "here"),
    ("reject_invalid_helo_hostname", "reject_invalid_helo_hostname judges no helo command "
                                     "here"),
    ("permit_auth_destination", "permit_auth_destination judges no recipient address here"),
    ("reject_no_such_thing", "unknown restriction 'reject_no_such_thing'"),
    ("check_helo_access inline:{ a=OK }", "check_helo_access judges no helo command here"),
    ("check_sender_access inline:{ a=OK }",
     "check_sender_access judges no sender address here"),
    ("check_client_access", "without a table"),
    ("check_client_access reject", "need type:name"),
])
def test_anything_else_stops_start_and_reload(item: str, message: str) -> None:
    """build_parts is what start and reload run (a reload that raises
    keeps the running configuration)."""
    config = from_text(IN_PROCESS_CF + f"smtpd_client_restrictions = permit_mynetworks, {item}\n")
    with pytest.raises(ConfigError, match=f"smtpd_client_restrictions: .*{message}"):
        build_parts(config)


# -- sessions ----------------------------------------------------------------------------
Converse = Callable[[list[str]], Awaitable[list[str]]]
TRANSACTION = ["MAIL FROM:<a@client.test>", "RCPT TO:<b@relay.test>"]


@asynccontextmanager
async def receiver(tmp_path: Path, extra: str) -> AsyncIterator[Converse]:
    """An in-process receiver with IN_PROCESS_CF plus extra; yields a function
    that sends commands one at a time and returns the last line of each reply."""
    async with in_process_smtpd(tmp_path, IN_PROCESS_CF + extra) as smtpd:
        yield functools.partial(one_at_a_time, smtpd.port)


@asynccontextmanager
async def raw_receiver(tmp_path: Path, extra: str) -> AsyncIterator[int]:
    async with in_process_smtpd(tmp_path, IN_PROCESS_CF + extra) as smtpd:
        yield smtpd.port


async def exchange(port: int, *writes: bytes) -> list[str]:
    """The last line of each reply of a session: the greeting, then for
    each write a reply per line in it, or "closed" once the server hung up."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    lines: list[str] = []
    try:
        lines.append(await _line(reader))
        for data in writes:
            writer.write(data)
            for _ in range(data.count(b"\n")):
                line = await _line(reader)
                lines.append(line)
                if line == "closed":
                    return lines
        return lines
    finally:
        writer.close()


async def _line(reader: asyncio.StreamReader) -> str:
    while True:
        try:
            line = await asyncio.wait_for(reader.readline(), 10)
        except ConnectionResetError:  # we wrote after the server closed
            line = b""
        if not line:
            return "closed"
        if line[3:4] != b"-":
            return line.decode().rstrip("\r\n")


REJECT = "smtpd_client_restrictions = reject\n" + OUTSIDE_CF
UNDELAYED = REJECT + "smtpd_delay_reject = no\n"


async def test_by_default_every_client_is_greeted(tmp_path: Path) -> None:
    assert from_text(IN_PROCESS_CF).get("smtpd_client_restrictions") == ()  # Postfix's default
    async with raw_receiver(tmp_path, OUTSIDE_CF) as port:
        assert await exchange(port, b"QUIT\r\n") == ["220 mx.test ESMTP Postern",
                                                     "221 2.0.0 Bye"]


async def test_delayed_refusal_is_the_rcpt_and_vrfy_reply(
        tmp_path: Path, maillog_lines: list[str]) -> None:
    """smtpd_delay_reject = yes (the default): greeted, EHLO and MAIL
    accepted, RCPT and VRFY refused and logged with the envelope; the bare
    postmaster is still accepted, as Postfix accepts it before any check."""
    async with receiver(tmp_path, REJECT) as converse:
        assert await converse(["EHLO c.test", *TRANSACTION, "RCPT TO:<postmaster>",
                               "RSET", "VRFY b@relay.test"]) == [
            "250 8BITMIME", "250 2.1.0 Ok", DENIED, "250 2.1.5 Ok", "250 2.0.0 Ok", DENIED]
    assert ("smtpd: NOQUEUE: reject: RCPT from unknown[127.0.0.1]: " + DENIED +
            "; from=<a@client.test> to=<b@relay.test> proto=ESMTP helo=<c.test>") \
        in maillog_lines
    assert ("smtpd: NOQUEUE: reject: VRFY from unknown[127.0.0.1]: " + DENIED +
            "; to=<b@relay.test> proto=ESMTP helo=<c.test>") in maillog_lines


async def test_delayed_client_refusal_comes_before_the_helo_refusal(tmp_path: Path) -> None:
    async with receiver(tmp_path, REJECT + "smtpd_helo_restrictions = reject\n") as converse:
        assert (await converse(["EHLO c.test", *TRANSACTION]))[2] == DENIED
    extra = "smtpd_client_restrictions = permit\nsmtpd_helo_restrictions = reject\n"
    async with receiver(tmp_path, extra) as converse:
        assert (await converse(["EHLO c.test", *TRANSACTION]))[2] == \
            "554 5.7.1 <c.test>: Helo command rejected: Access denied"


async def test_undelayed_refusal_replaces_the_greeting(
        tmp_path: Path, maillog_lines: list[str]) -> None:
    """smtpd_delay_reject = no: the refusal instead of the 220, logged as a
    reject of CONNECT; then 503 for every command but QUIT (unknown ones
    too), none of them run, each counted as failed in the disconnect line."""
    async with raw_receiver(tmp_path, UNDELAYED) as port:
        assert await exchange(
            port, b"EHLO c.test\r\n", b"HELO c.test\r\n", b"MAIL FROM:<a@client.test>\r\n",
            b"RCPT TO:<b@relay.test>\r\n", b"DATA\r\n", b"RSET\r\n", b"NOOP\r\n",
            b"VRFY b@relay.test\r\n", b"STARTTLS\r\n", b"AUTH PLAIN\r\n", b"FOO\r\n",
            b"QUIT\r\n") == [DENIED, *[SESSION_DENIED] * 11, "221 2.0.0 Bye"]
    assert maillog_lines == [
        "smtpd: connect from unknown[127.0.0.1]",
        "smtpd: NOQUEUE: reject: CONNECT from unknown[127.0.0.1]: " + DENIED + "; proto=SMTP",
        "smtpd: disconnect from unknown[127.0.0.1] helo=0/1 ehlo=0/1 starttls=0/1 auth=0/1 "
        "mail=0/1 rcpt=0/1 data=0/1 rset=0/1 noop=0/1 vrfy=0/1 quit=1 unknown=0/1 "
        "commands=1/12"]


async def test_a_permit_at_connect_greets_and_is_not_asked_again(tmp_path: Path) -> None:
    """permit_mynetworks for 127.0.0.1: the 220, and RCPT is not judged by
    the client list again; outside mynetworks the same list refuses."""
    extra = "smtpd_client_restrictions = permit_mynetworks, reject\nsmtpd_delay_reject = no\n"
    async with raw_receiver(tmp_path, extra) as port:
        assert await exchange(port, b"EHLO c.test\r\n", b"MAIL FROM:<a@client.test>\r\n",
                              b"RCPT TO:<b@relay.test>\r\n") == [
            "220 mx.test ESMTP Postern", "250 8BITMIME", "250 2.1.0 Ok", "250 2.1.5 Ok"]
    async with raw_receiver(tmp_path, extra + OUTSIDE_CF) as port:
        assert await exchange(port, b"QUIT\r\n") == [DENIED, "221 2.0.0 Bye"]


async def test_a_refused_client_is_not_held_to_pipelining_rules(
        tmp_path: Path, maillog_lines: list[str]) -> None:
    """Postfix answers access_denied before it looks at pipelining, and looks
    for talk before the greeting only when it greets: no 554 5.5.0 here."""
    async with raw_receiver(tmp_path, UNDELAYED) as port:
        assert await exchange(port, b"NOOP\r\nRSET\r\n", b"QUIT\r\n") == [
            DENIED, SESSION_DENIED, SESSION_DENIED, "221 2.0.0 Bye"]
    async with in_process_smtpd(tmp_path, IN_PROCESS_CF + UNDELAYED, SpokenTo) as smtpd:
        reader, writer = await asyncio.open_connection("127.0.0.1", smtpd.port)
        writer.write(b"EHLO c.test\r\n")  # judged once these bytes are here
        assert [await _line(reader), await _line(reader)] == [DENIED, SESSION_DENIED]
        writer.close()
    assert not [line for line in maillog_lines if "improper command pipelining" in line]


async def test_a_non_smtp_command_still_ends_the_session(
        tmp_path: Path, maillog_lines: list[str]) -> None:
    async with raw_receiver(tmp_path, UNDELAYED) as port:
        assert await exchange(port, b"GET / HTTP/1.0\r\n", b"QUIT\r\n") == [
            DENIED, replies.NON_SMTP_COMMAND, "closed"]
    assert "smtpd: warning: non-SMTP command from unknown[127.0.0.1]: GET / HTTP/1.0" \
        in maillog_lines


async def test_a_client_that_keeps_talking_meets_the_error_limit(
        tmp_path: Path, maillog_lines: list[str]) -> None:
    """The refusal counts as an error and so does each 503: with
    smtpd_hard_error_limit 20 the 421 follows the 19th NOOP, and the stage
    is still CONNECT, as Postfix logs it."""
    async with raw_receiver(tmp_path, UNDELAYED + "smtpd_error_sleep_time = 0\n") as port:
        answers = await exchange(port, *[b"NOOP\r\n"] * 20)
    assert answers == [DENIED, *[SESSION_DENIED] * 19,
                       "421 4.7.0 mx.test Error: too many errors"]
    assert maillog_lines[-2:] == [
        "smtpd: too many errors after CONNECT from unknown[127.0.0.1]",
        "smtpd: disconnect from unknown[127.0.0.1] noop=0/19 commands=0/19"]


async def test_a_lost_connection_is_lost_after_connect(
        tmp_path: Path, maillog_lines: list[str]) -> None:
    async with raw_receiver(tmp_path, UNDELAYED) as port:
        await exchange(port, b"EHLO c.test\r\n")  # and hang up
        await until(lambda: any("disconnect" in line for line in maillog_lines))
    assert "smtpd: lost connection after CONNECT from unknown[127.0.0.1]" in maillog_lines


@pytest.mark.parametrize("delay", ["yes", "no"])
async def test_a_table_421_ends_the_session(tmp_path: Path, delay: str) -> None:
    """Postfix hangs up after any 421 reply: at connect nothing follows the
    refusal; at RCPT the session ends after it."""
    extra = ("smtpd_client_restrictions = check_client_access "
             "inline:{ 127.0.0.1=421 4.7.0 go away }\n" f"smtpd_delay_reject = {delay}\n")
    gone = "421 4.7.0 <unknown[127.0.0.1]>: Client host rejected: go away"
    async with raw_receiver(tmp_path, extra) as port:
        if delay == "no":
            assert await exchange(port, b"EHLO c.test\r\n") == [gone, "closed"]
        else:
            assert await exchange(port, b"EHLO c.test\r\n", b"MAIL FROM:<a@client.test>\r\n",
                                  b"RCPT TO:<b@relay.test>\r\n", b"NOOP\r\n") == [
                "220 mx.test ESMTP Postern", "250 8BITMIME", "250 2.1.0 Ok", gone, "closed"]


async def test_the_503_comes_before_the_tls_requirement(tmp_path: Path) -> None:
    """smtpd_tls_security_level = encrypt: Postfix answers a refused client
    503, not 530 Must issue a STARTTLS command first, STARTTLS included."""
    cf, _ca = in_process_tls_cf(tmp_path, UNDELAYED)
    async with in_process_smtpd(tmp_path, cf.replace("smtpd_tls_security_level = may",
                                                     "smtpd_tls_security_level = encrypt")
                                ) as smtpd:
        assert await exchange(smtpd.port, b"MAIL FROM:<a@client.test>\r\n", b"NOOP\r\n",
                              b"STARTTLS\r\n", b"QUIT\r\n") == [
            DENIED, SESSION_DENIED, SESSION_DENIED, SESSION_DENIED, "221 2.0.0 Bye"]


async def test_in_wrapper_mode_the_client_is_judged_inside_tls(tmp_path: Path) -> None:
    """Port 465: the handshake comes first, so the refusal goes out inside
    TLS and a client certificate can already permit the client, as in
    Postfix (wrapper mode starts TLS before smtpd_check_client)."""
    cf, ca = in_process_tls_cf(
        tmp_path, "smtpd_tls_wrappermode = yes\nsmtpd_tls_ask_ccert = yes\n"
        f"smtpd_tls_CAfile = {tmp_path / 'ca.pem'}\nsmtpd_delay_reject = no\n"
        "smtpd_client_restrictions = permit_tls_all_clientcerts, reject\n")
    async with in_process_smtpd(tmp_path, cf) as smtpd:
        for context, greeting in [(ca.client_context(ca.client("laptop")),
                                   "220 mx.test ESMTP Postern"),
                                  (ca.client_context(), DENIED)]:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", smtpd.port, ssl=context, server_hostname="localhost")
            assert await _line(reader) == greeting
            writer.close()


@pytest.mark.parametrize("delay", ["yes", "no"])
async def test_the_refusal_is_metered_by_command(tmp_path: Path, delay: str) -> None:
    """mta_smtpd_rejects_total: CONNECT (and 503 for each refused command)
    with no, RCPT with yes; never the client's own bytes as a label."""
    def count(command: str, code: str) -> float:
        return REGISTRY.get_sample_value("mta_smtpd_rejects_total", {
            "listener": "smtp", "command": command, "code": code}) or 0.0

    before = {key: count(*key) for key in [("CONNECT", "554"), ("RCPT", "554"),
                                           ("UNKNOWN", "503"), ("NOOP", "503")]}
    async with raw_receiver(tmp_path, REJECT + f"smtpd_delay_reject = {delay}\n") as port:
        if delay == "no":
            await exchange(port, b"NOOP\r\n", b"FOO\r\n", b"QUIT\r\n")
        else:
            # b@mx.test has no mailbox (550) unless the client is refused first.
            assert (await exchange(port, b"MAIL FROM:<a@client.test>\r\n",
                                   b"RCPT TO:<b@mx.test>\r\n"))[2] == DENIED
    after = {key: count(*key) - value for key, value in before.items()}
    expected = ({("CONNECT", "554"): 1, ("RCPT", "554"): 0, ("UNKNOWN", "503"): 1,
                 ("NOOP", "503"): 1} if delay == "no" else
                {("CONNECT", "554"): 0, ("RCPT", "554"): 1, ("UNKNOWN", "503"): 0,
                 ("NOOP", "503"): 0})
    assert after == expected
