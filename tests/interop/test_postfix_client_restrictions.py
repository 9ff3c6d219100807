"""smtpd_client_restrictions: Postfix's smtpd and ours, both timings, the same answers.

The same smtpd_client_restrictions and client table are given to a private
Postfix (smtpd_peername_lookup = no, so the client is unknown[127.0.0.1] to
both; myhostname mx.test and the banner alike, so that greetings and 421s
compare) and to an in-process Postern receiver, with smtpd_delay_reject yes
and no and the table answering DUNNO (on to ``reject``), DEFER or 421. Each
conversation must get the same replies (the first line of each, or
"closed"), and the maillog the same reject, error, lost connection and
disconnect lines. What Postfix 3.7 showed, and Postern now does: with no,
the refusal is the greeting, every command but QUIT gets 503 5.7.0, the
reject is logged as CONNECT, and the stage stays CONNECT; with yes, RCPT and
VRFY are refused; a table's 421 ends the session at either moment.
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
            "mynetworks = 192.0.2.0/24\n"  # 127.0.0.1 is outside: permit_mynetworks is dunno
            "smtpd_banner = $myhostname ESMTP\n"
            "smtpd_error_sleep_time = 0\n"  # no tarpit: the error-limit session is quick
            "smtpd_delay_reject = {delay}\n"
            "smtpd_client_restrictions = permit_mynetworks, "
            "check_client_access texthash:{dir}/clients, reject\n")
SESSIONS = [
    ["HELO c.test", "VRFY x@elsewhere.test", "MAIL FROM:<a@b.test>",
     "RCPT TO:<x@elsewhere.test>", "RCPT TO:<postmaster>", "RSET", "NOOP", "QUIT"],
    ["NOOP"] * 20,  # smtpd_hard_error_limit (20) for a client refused at connect
    ["GET / HTTP/1.0", "QUIT"],  # a non-SMTP command ends even a refused session
    ["EHLO c.test"],  # then hang up: lost connection after the stage
]
# What the two logs must agree on, without the program prefixes and queue ids.
COMPARED = re.compile(r"(?:smtpd: |smtpd\[\d+\]: )((?:NOQUEUE|[0-9A-Z]+): reject: .*|"
                      r"too many errors after .*|lost connection after .*|"
                      r"disconnect from .*|warning: non-SMTP command from .*)$")
QUEUE_ID = re.compile(r"^(?!NOQUEUE)[0-9A-Z]+: ")


def compared(lines: list[str]) -> list[str]:
    return [QUEUE_ID.sub("QID: ", match.group(1)) for line in lines
            if (match := COMPARED.search(line))]


async def _first_line(reader: asyncio.StreamReader) -> str:
    """The first line of the next reply (EHLO's keywords differ, its first
    line does not), or "closed" (a reset too: what we wrote after a 421 may
    reach a socket that was closed)."""
    first = None
    while True:
        try:
            line = await asyncio.wait_for(reader.readline(), 20)
        except ConnectionResetError:
            line = b""
        if not line:
            return first or "closed"
        first = first or line.decode().rstrip("\r\n")
        if line[3:4] != b"-":
            return first


async def conversation(port: int, commands: list[str]) -> list[str]:
    """The greeting, then each command once the previous one is answered,
    until the server hangs up."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        said = [await _first_line(reader)]
        for command in commands:
            if said[-1] == "closed":
                break
            writer.write(command.encode() + b"\r\n")
            said.append(await _first_line(reader))
        return said
    finally:
        # Closed for real before the next step: the wait for Postfix's log
        # blocks the event loop that would close it.
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def conversations(port: int) -> list[list[str]]:
    return [await conversation(port, commands) for commands in SESSIONS]


@pytest.mark.parametrize(("delay", "action"), [
    ("no", "DUNNO"),  # on to `reject`
    ("yes", "DUNNO"),
    ("no", "421 4.7.0 closing"),
    ("yes", "421 4.7.0 closing"),
    ("no", "DEFER"),  # a 450 instead of the greeting, then the 503s as for a 554
], ids=["undelayed-reject", "delayed-reject", "undelayed-421", "delayed-421", "undelayed-defer"])
async def test_postern_judges_the_client_as_postfix_does(
        postfix_factory: PostfixFactory, tmp_path: Path, maillog_lines: list[str],
        delay: str, action: str) -> None:
    table = f"127.0.0.1 {action}\n"
    postfix = postfix_factory(hostname="mx.test", main_cf=SETTINGS.format(
        delay=delay, dir="$config_directory"))
    (postfix.conf / "clients").write_text(table)
    postfix.start()
    (tmp_path / "clients").write_text(table)
    async with in_process_smtpd(tmp_path, IN_PROCESS_CF + SETTINGS.format(
            delay=delay, dir=tmp_path)) as smtpd:
        ours = await conversations(smtpd.port)
        await until(lambda: sum("disconnect from" in line for line in maillog_lines)
                    == len(SESSIONS))
    theirs = await conversations(postfix.port)
    assert ours == theirs
    postfix.wait_log(r"disconnect from", count=len(SESSIONS))
    assert compared(maillog_lines) == compared(postfix.log_text().splitlines())
    # Not a vacuous comparison: what each timing is about is among them.
    greeting = ours[0][0]
    if delay == "no":
        assert greeting[:3] in ("554", "450", "421") and "Client host rejected" in greeting
        assert any("reject: CONNECT from" in line for line in compared(maillog_lines))
        if not greeting.startswith("421"):
            assert ours[0][1:] == ["503 5.7.0 Error: access denied for unknown[127.0.0.1]"] * 7 \
                + ["221 2.0.0 Bye"]
    else:
        assert greeting == "220 mx.test ESMTP"
        assert "Client host rejected" in ours[0][2]  # VRFY
