"""MAIL, RCPT and VRFY replies, each checked against Postfix's smtpd.c.

An in-process receiver on 127.0.0.1 with no local recipients listed, so
every local address but the postmaster is unknown.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mta.smtpd.server import SmtpdServer
from tests.helpers import IN_PROCESS_CF, in_process_smtpd, read_reply

CF = IN_PROCESS_CF


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[SmtpdServer]:
    async with in_process_smtpd(tmp_path, CF) as smtpd:
        yield smtpd


async def _converse(server: SmtpdServer, commands: list[str]) -> list[str]:
    """The replies to EHLO and then to commands, one at a time."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        assert (await read_reply(reader)).startswith("220 ")
        replies = []
        for command in ["EHLO client.test", *commands]:
            writer.write(command.encode() + b"\r\n")
            replies.append(await read_reply(reader))
        return replies[1:]
    finally:
        writer.close()


@pytest.mark.parametrize(("command", "reply"), [
    # "FROM:" with nothing after it is not the null sender <>.
    ("MAIL FROM:", "501 5.5.4 Syntax: MAIL FROM:<address>"),
    ("MAIL FROM: ", "501 5.5.4 Syntax: MAIL FROM:<address>"),
    ("MAIL FROM:<a@client.test> SIZE=", "501 5.5.4 Bad message size syntax"),
    ("MAIL FROM:<a@client.test> SIZE=1x", "501 5.5.4 Bad message size syntax"),
    # Postfix quotes the whole parameter as the client wrote it.
    ("MAIL FROM:<a@client.test> FOO=bar", "555 5.5.4 Unsupported option: FOO=bar"),
    ("MAIL FROM:<a@client.test> foo", "555 5.5.4 Unsupported option: foo"),
    ("MAIL FROM:<a@client.test> SIZE", "555 5.5.4 Unsupported option: SIZE"),
    ("MAIL FROM:<a@client.test> Body=BinaryMIME",
     "555 5.5.4 Unsupported option: Body=BinaryMIME"),
    ("MAIL FROM:<a@client.test> body=8bitmime SIZE=10", "250 2.1.0 Ok"),
    ("MAIL FROM:<>", "250 2.1.0 Ok"),
])
async def test_mail_replies(server: SmtpdServer, command: str, reply: str) -> None:
    assert await _converse(server, [command]) == [reply]


@pytest.mark.parametrize(("command", "reply"), [
    ("RCPT TO:", "501 5.5.4 Syntax: RCPT TO:<address>"),
    ("RCPT TO:<>", "501 5.1.3 Bad recipient address syntax"),
    ("RCPT TO:<b@relay.test> NOTIFY=NEVER", "555 5.5.4 Unsupported option: NOTIFY=NEVER"),
    # RFC 5321 §4.5.1: the bare postmaster, in any case, although no local
    # recipient is listed; with a domain it is looked up like any address.
    ("RCPT TO:<postmaster>", "250 2.1.5 Ok"),
    ("RCPT TO:<PostMaster>", "250 2.1.5 Ok"),
    ("RCPT TO:postmaster", "250 2.1.5 Ok"),
    ("RCPT TO:<postmaster@mx.test>", "550 5.1.1 <postmaster@mx.test>: Recipient address "
                                     "rejected: User unknown in local recipient table"),
])
async def test_rcpt_replies(server: SmtpdServer, command: str, reply: str) -> None:
    assert await _converse(server, ["MAIL FROM:<a@client.test>", command]) == \
        ["250 2.1.0 Ok", reply]


@pytest.mark.parametrize(("command", "reply"), [
    ("VRFY a b c@@@", "501 5.1.3 Bad recipient address syntax"),
    ("VRFY <>", "501 5.1.3 Bad recipient address syntax"),
    ("VRFY postmaster", "252 2.0.0 postmaster"),
    ("VRFY <Postmaster>", "252 2.0.0 <Postmaster>"),
    # The argument as the client wrote it, brackets and all, not rewritten.
    ("VRFY <b@relay.test>", "252 2.0.0 <b@relay.test>"),
    ("VRFY b@relay.test", "252 2.0.0 b@relay.test"),
    ("VRFY nobody@mx.test", "550 5.1.1 <nobody@mx.test>: Recipient address rejected: "
                            "User unknown in local recipient table"),
])
async def test_vrfy_replies(server: SmtpdServer, command: str, reply: str) -> None:
    assert await _converse(server, [command]) == [reply]


@pytest.mark.parametrize(("command", "reply"), [
    # RFC 2034: no enhanced status code in a reply to HELO or EHLO (Postfix's
    # helo_cmd and ehlo_cmd), and nothing appended to the text.
    ("HELO", "501 Syntax: HELO hostname"),
    ("HELO ", "501 Syntax: HELO hostname"),
    ("EHLO", "501 Syntax: EHLO hostname"),
    ("ehlo  ", "501 Syntax: EHLO hostname"),
    ("HELO client.test", "250 mx.test"),
])
async def test_helo_and_ehlo_replies(server: SmtpdServer, command: str, reply: str) -> None:
    assert await _converse(server, [command]) == [reply]


async def test_a_refused_helo_leaves_the_session_as_it_was(server: SmtpdServer) -> None:
    """The EHLO before it still counts: MAIL is accepted, and ESMTP parameters too."""
    assert await _converse(server, ["EHLO", "MAIL FROM:<a@client.test> SIZE=10"]) == \
        ["501 Syntax: EHLO hostname", "250 2.1.0 Ok"]


async def test_a_message_to_the_bare_postmaster_is_queued(server: SmtpdServer) -> None:
    replies = await _converse(server, ["MAIL FROM:<>", "RCPT TO:<Postmaster>", "DATA",
                                       "Subject: bounce\r\n\r\nx\r\n."])
    assert replies[:3] == ["250 2.1.0 Ok", "250 2.1.5 Ok",
                           "354 End data with <CR><LF>.<CR><LF>"]
    assert replies[3].startswith("250 2.0.0 Ok: queued as ")


async def test_vrfy_runs_the_recipient_restrictions_as_rcpt_does(
        tmp_path: Path, maillog_lines: list[str]) -> None:
    """An outside client (127.0.0.1 not in mynetworks here) learns no more
    from VRFY than from RCPT: a foreign address is Relay access denied,
    logged as Postfix logs a VRFY reject."""
    outside = CF.replace("mynetworks = 127.0.0.0/8", "mynetworks = 192.0.2.0/24")
    async with in_process_smtpd(tmp_path, outside) as smtpd:
        assert await _converse(smtpd, ["VRFY b@relay.test", "VRFY postmaster"]) == [
            "554 5.7.1 <b@relay.test>: Relay access denied", "252 2.0.0 postmaster"]
    assert "smtpd: NOQUEUE: reject: VRFY from unknown[127.0.0.1]: 554 5.7.1 <b@relay.test>: " \
        "Relay access denied; to=<b@relay.test> proto=ESMTP helo=<client.test>" in maillog_lines
