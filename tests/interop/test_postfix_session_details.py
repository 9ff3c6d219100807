"""Session details Postfix's smtpd and ours must agree on: the same
commands, the same replies, the same reject and disconnect lines.

Each session goes to a private Postfix and to an in-process Postern
receiver with the same settings (127.0.0.1 outside mynetworks, so that a
foreign recipient is refused; no peer name lookup; the same banner). What
Postfix 3.7.11 showed, and Postern now does: a HELO after an EHLO keeps the
session ESMTP (proto=ESMTP, PIPELINING still allowed); MAIL parameters are
taken after HELO; an empty line is refused but not counted in the
disconnect line; a VRFY refused inside a transaction is logged with the
transaction's sender.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from pathlib import Path

import pytest

from tests.helpers import IN_PROCESS_CF, in_process_smtpd, until
from tests.interop.postfix import PostfixFactory

pytestmark = pytest.mark.interop

SETTINGS = ("smtpd_peername_lookup = no\n"
            "mynetworks = 192.0.2.0/24\n"
            "smtpd_banner = $myhostname ESMTP\n"
            "smtpd_forbid_unauth_pipelining = yes\n")
# A step is one command, or several sent in one write (pipelined).
SESSIONS: list[list[str | tuple[str, ...]]] = [
    ["EHLO a.test", "HELO b.test", "MAIL FROM:<a@b.test>", "RCPT TO:<x@elsewhere.test>",
     "QUIT"],
    ["EHLO a.test", "HELO b.test", ("MAIL FROM:<a@b.test>", "RCPT TO:<x@elsewhere.test>"),
     "QUIT"],
    ["HELO b.test", "MAIL FROM:<a@b.test> SIZE=100", "RSET",
     "MAIL FROM:<a@b.test> BODY=8BITMIME", "QUIT"],
    ["", "NOOP", "  ", "QUIT"],
    ["EHLO a.test", "MAIL FROM:<a@b.test>", "VRFY x@elsewhere.test", "RSET",
     "VRFY x@elsewhere.test", "QUIT"],
]
COMPARED = re.compile(r"(?:smtpd: |smtpd\[\d+\]: )((?:NOQUEUE|[0-9A-Z]+): reject: .*|"
                      r"improper command pipelining .*|disconnect from .*)$")


def compared(lines: list[str]) -> list[str]:
    return [match.group(1) for line in lines if (match := COMPARED.search(line))]


async def _first_line(reader: asyncio.StreamReader) -> str:
    """The first line of the next reply, or "closed"."""
    first = None
    while True:
        line = await asyncio.wait_for(reader.readline(), 20)
        if not line:
            return first or "closed"
        first = first or line.decode().rstrip("\r\n")
        if line[3:4] != b"-":
            return first


async def conversation(port: int, steps: list[str | tuple[str, ...]]) -> list[str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        said = [await _first_line(reader)]
        for step in steps:
            commands = (step,) if isinstance(step, str) else step
            writer.write(b"".join(command.encode() + b"\r\n" for command in commands))
            said += [await _first_line(reader) for _ in commands]
        return said
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def test_session_details_as_postfix_has_them(
        postfix_factory: PostfixFactory, tmp_path: Path, maillog_lines: list[str]) -> None:
    postfix = postfix_factory(hostname="mx.test", main_cf=SETTINGS).start()
    async with in_process_smtpd(tmp_path, IN_PROCESS_CF + SETTINGS) as smtpd:
        ours = [await conversation(smtpd.port, steps) for steps in SESSIONS]
        await until(lambda: sum("disconnect from" in line for line in maillog_lines)
                    == len(SESSIONS))
    theirs = [await conversation(postfix.port, steps) for steps in SESSIONS]
    assert ours == theirs
    postfix.wait_log(r"disconnect from", count=len(SESSIONS))
    assert compared(maillog_lines) == compared(postfix.log_text().splitlines())
    # What each session is about is among what was compared.
    logged = compared(maillog_lines)
    assert "proto=ESMTP helo=<b.test>" in logged[0]
    assert ours[1][3:5] == ["250 2.1.0 Ok", "554 5.7.1 <x@elsewhere.test>: Relay access denied"]
    assert ours[2][2:5] == ["250 2.1.0 Ok", "250 2.0.0 Ok", "250 2.1.0 Ok"]
    assert any(line.endswith("noop=1 quit=1 commands=2") for line in logged)
    assert "NOQUEUE: reject: VRFY from unknown[127.0.0.1]: 554 5.7.1 <x@elsewhere.test>: " \
        "Relay access denied; from=<a@b.test> to=<x@elsewhere.test> proto=ESMTP " \
        "helo=<a.test>" in logged
