"""Improper command pipelining and non-SMTP commands, as Postfix 3.9's smtpd
handles them (smtpd_forbid_unauth_pipelining, smtpd_forbidden_commands).

An in-process receiver on 127.0.0.1. Each case is a conversation: what the
client sends in one write, and the replies it gets; the texts and the log
lines are the ones a real Postfix gives for the same bytes
(tests/interop/test_postfix_pipelining.py sends them to both).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mta.smtpd.secure import SecureSmtpdProtocol
from mta.smtpd.server import SmtpdServer
from tests.helpers import IN_PROCESS_CF, in_process_smtpd, until

SYNC = "554 5.5.0 Error: SMTP protocol synchronization"
GOODBYE = "221 2.7.0 Error: I can break rules, too. Goodbye."


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[SmtpdServer]:
    async with in_process_smtpd(tmp_path, IN_PROCESS_CF) as smtpd:
        yield smtpd


CLOSED = "<closed>"


async def _reply(reader: asyncio.StreamReader) -> str:
    """The last line of the next reply, or CLOSED when the server hung up."""
    while True:
        line = await asyncio.wait_for(reader.readline(), 10)
        if not line:
            return CLOSED
        if line[3:4] != b"-":
            return line.decode().rstrip("\r\n")


async def converse(server: SmtpdServer, *steps: tuple[bytes, list[str]]) -> list[list[str]]:
    """After the greeting, each step's bytes in one write, and as many
    replies as the step expects (CLOSED included); what came back."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        assert (await _reply(reader)).startswith("220 ")
        said = []
        for data, expected in steps:
            writer.write(data)
            said.append([await _reply(reader) for _ in expected])
        return said
    finally:
        writer.close()


EHLO = b"EHLO client.test\r\n"
OK_EHLO = ["250 8BITMIME"]  # the last line of our EHLO reply


@pytest.mark.parametrize(("steps", "logged"), [
    # EHLO must be answered before more is sent: the EHLO is not run.
    ([(EHLO + b"MAIL FROM:<a@b.test>\r\n", [SYNC, CLOSED])],
     "improper command pipelining after EHLO from unknown[127.0.0.1]: "
     "MAIL FROM:<a@b.test>\\r\\n"),
    # Content sent with DATA, before the 354 (an SMTP smuggling shape too).
    ([(EHLO, OK_EHLO),
      (b"MAIL FROM:<a@b.test>\r\nRCPT TO:<b@relay.test>\r\nDATA\r\nSubject: x\r\n\r\n"
       b"body\r\n.\r\nQUIT\r\n", ["250 2.1.0 Ok", "250 2.1.5 Ok", SYNC, CLOSED])],
     "improper command pipelining after DATA from unknown[127.0.0.1]: "
     "Subject: x\\r\\n\\r\\nbody\\r\\n.\\r\\nQUIT\\r\\n"),
    # Without EHLO nothing announced PIPELINING.
    ([(b"HELO client.test\r\n", ["250 mx.test"]),
      (b"MAIL FROM:<a@b.test>\r\nRCPT TO:<b@relay.test>\r\n", [SYNC, CLOSED])],
     "improper command pipelining after MAIL from unknown[127.0.0.1]: "
     "RCPT TO:<b@relay.test>\\r\\n"),
    ([(EHLO, OK_EHLO), (b"NOOP\r\nNOOP\r\n", [SYNC, CLOSED])],
     "improper command pipelining after NOOP from unknown[127.0.0.1]: NOOP\\r\\n"),
    ([(EHLO, OK_EHLO), (b"VRFY postmaster\r\nNOOP\r\n", [SYNC, CLOSED])],
     "improper command pipelining after VRFY from unknown[127.0.0.1]: NOOP\\r\\n"),
    # QUIT is no exception when no EHLO announced PIPELINING (Postfix 3.7.11).
    ([(b"QUIT\r\nNOOP\r\n", [SYNC, CLOSED])],
     "improper command pipelining after QUIT from unknown[127.0.0.1]: NOOP\\r\\n"),
], ids=["ehlo-then-mail", "data-with-content", "after-helo", "noop", "vrfy", "quit-first"])
async def test_improper_pipelining_ends_the_session(
        server: SmtpdServer, maillog_lines: list[str],
        steps: list[tuple[bytes, list[str]]], logged: str) -> None:
    assert await converse(server, *steps) == [expected for _, expected in steps]
    assert f"smtpd: {logged}" in maillog_lines


async def test_what_rfc_2920_allows_goes_through(server: SmtpdServer,
                                                 maillog_lines: list[str]) -> None:
    said = await converse(
        server, (EHLO, OK_EHLO),
        (b"RSET\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<b@relay.test>\r\nDATA\r\n",
         ["250 2.0.0 Ok", "250 2.1.0 Ok", "250 2.1.5 Ok", "354 End data with <CR><LF>.<CR><LF>"]),
        # The content and the next transaction after the dot, QUIT last.
        (b"Subject: x\r\n\r\nbody\r\n.\r\nMAIL FROM:<c@b.test>\r\nRCPT TO:<b@relay.test>\r\n"
         b"QUIT\r\n", ["250 queued", "250 2.1.0 Ok", "250 2.1.5 Ok", "221 2.0.0 Bye", CLOSED]))
    assert said[1] == ["250 2.0.0 Ok", "250 2.1.0 Ok", "250 2.1.5 Ok",
                       "354 End data with <CR><LF>.<CR><LF>"]
    assert said[2][0].startswith("250 2.0.0 Ok: queued as ")
    assert said[2][1:] == ["250 2.1.0 Ok", "250 2.1.5 Ok", "221 2.0.0 Bye", CLOSED]
    assert not [line for line in maillog_lines if "improper" in line]


async def test_quit_after_ehlo_may_be_followed_by_anything(server: SmtpdServer) -> None:
    steps = [(EHLO, OK_EHLO), (b"QUIT\r\nNOOP\r\n", ["221 2.0.0 Bye", CLOSED])]
    assert await converse(server, *steps) == [expected for _, expected in steps]


@pytest.mark.parametrize(("line", "logged"), [
    (b"GET / HTTP/1.0\r\n", "GET / HTTP/1.0"),
    (b"get / HTTP/1.0\r\n", "get / HTTP/1.0"),
    (b"CONNECT mx.test:25 HTTP/1.1\r\n", "CONNECT mx.test:25 HTTP/1.1"),
    (b"Subject: hi\r\n", "Subject: hi"),
    (b"To: x\r\n", "To: x"),
    (b"\x16\x03\x01\x00\x05hello\r\n", "\\026\\003\\001\\000\\005hello"),
    (b"\xc3\xa9HLO x\r\n", "\\303\\251HLO x"),
], ids=["get", "get-lower", "connect", "subject", "to", "clienthello", "8bit"])
async def test_non_smtp_commands_end_the_session(server: SmtpdServer, maillog_lines: list[str],
                                                 line: bytes, logged: str) -> None:
    assert await converse(server, (line, [GOODBYE, CLOSED])) == [[GOODBYE, CLOSED]]
    assert f"smtpd: warning: non-SMTP command from unknown[127.0.0.1]: {logged}" \
        in maillog_lines
    await until(lambda: any("disconnect from" in entry for entry in maillog_lines))
    assert "smtpd: disconnect from unknown[127.0.0.1] unknown=0/1 commands=0/1" \
        in maillog_lines


async def test_leading_blanks_are_skipped_as_postfix_skips_them(server: SmtpdServer) -> None:
    steps = [(EHLO, OK_EHLO), (b" MAIL FROM:<a@b.test>\r\n", ["250 2.1.0 Ok"]),
             (b"   \r\n", ["500 5.5.2 Error: bad syntax"]), (b"\tRSET\r\n", ["250 2.0.0 Ok"]),
             (b" \x00\r\n", ["500 5.5.2 Error: bad syntax"])]
    assert await converse(server, *steps) == [expected for _, expected in steps]


async def test_an_unknown_command_is_still_only_unknown(server: SmtpdServer) -> None:
    steps = [(b"XYZZY\r\n", ["500 5.5.2 Error: command not recognized"]),
             (b"NOOP\r\n", ["250 2.0.0 Ok"])]
    assert await converse(server, *steps) == [expected for _, expected in steps]


class SpokenTo(SecureSmtpdProtocol):
    """Greets only once the client's first bytes are here: a client that
    does not wait for the greeting, made deterministic."""

    async def _session(self) -> None:
        await until(lambda: bool(self._reader._buffer))  # type: ignore[attr-defined]
        await super()._session()


async def test_talking_before_the_greeting(tmp_path: Path, maillog_lines: list[str]) -> None:
    async with in_process_smtpd(tmp_path, IN_PROCESS_CF, SpokenTo) as smtpd:
        reader, writer = await asyncio.open_connection("127.0.0.1", smtpd.port)
        writer.write(EHLO)
        # No greeting: the refusal, and the end.
        assert [await _reply(reader), await _reply(reader)] == [SYNC, CLOSED]
        writer.close()
    assert "smtpd: improper command pipelining after CONNECT from unknown[127.0.0.1]: " \
        "EHLO client.test\\r\\n" in maillog_lines


async def test_with_the_check_off_the_violation_is_only_logged(
        tmp_path: Path, maillog_lines: list[str]) -> None:
    """smtpd_forbid_unauth_pipelining = no (Postfix before 3.9): logged once
    per session, the commands run."""
    cf = IN_PROCESS_CF + "smtpd_forbid_unauth_pipelining = no\n"
    steps = [(EHLO, OK_EHLO), (b"NOOP\r\nNOOP\r\nNOOP\r\n", ["250 2.0.0 Ok"] * 3)]
    async with in_process_smtpd(tmp_path, cf) as smtpd:
        assert await converse(smtpd, *steps) == [expected for _, expected in steps]
    improper = [line for line in maillog_lines if "improper command pipelining" in line]
    assert improper == ["smtpd: improper command pipelining after NOOP from "
                        "unknown[127.0.0.1]: NOOP\\r\\nNOOP\\r\\n"]
