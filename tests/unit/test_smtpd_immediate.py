"""Commands answered in the protocol callback (SmtpdProtocol._answer_at_once).

An in-process receiver on 127.0.0.1 whose sessions record which command
lines reached the session task: commands that await nothing must be answered
without it, everything else (DATA, STARTTLS, odd lines) must still go to it,
in order, with the same replies and counts.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mta.smtpd.secure import SecureSmtpdProtocol
from mta.smtpd.server import SmtpdContext, SmtpdServer
from tests.helpers import IN_PROCESS_CF, in_process_smtpd, until

# These tests pipeline freely (NOOP, VRFY and EHLO followed by more) to see
# which path answers what; the pipelining rules themselves are
# test_smtpd_pipelining.py's.
CF = IN_PROCESS_CF + "smtpd_forbid_unauth_pipelining = no\n"


class RecordingSession(SecureSmtpdProtocol):
    """Notes every command line the session task dispatches."""

    sessions: list[RecordingSession] = []

    def __init__(self, ctx: SmtpdContext) -> None:
        super().__init__(ctx)
        self.task_lines: list[bytes] = []
        RecordingSession.sessions.append(self)

    async def _dispatch(self, line: bytes) -> None:
        self.task_lines.append(line.split(b" ")[0].upper())
        await super()._dispatch(line)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[SmtpdServer]:
    queued: list[str] = []
    RecordingSession.sessions = []
    async with in_process_smtpd(tmp_path, CF, RecordingSession,
                                on_queued=lambda envelope: queued.append(envelope.qid)) as smtpd:
        yield smtpd


async def _replies(reader: asyncio.StreamReader, count: int) -> list[bytes]:
    """count complete replies (multiline ones as one), their first lines' codes."""
    codes: list[bytes] = []
    while len(codes) < count:
        line = await asyncio.wait_for(reader.readline(), 10)
        assert line, f"connection closed after {codes}"
        if line[3:4] != b"-":
            codes.append(line[:3])
    return codes


async def _session(server: SmtpdServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    assert await _replies(reader, 1) == [b"220"]
    return reader, writer


async def test_simple_commands_never_wake_the_session_task(server: SmtpdServer) -> None:
    reader, writer = await _session(server)
    writer.write(b"EHLO client.test\r\n")
    assert await _replies(reader, 1) == [b"250"]
    # A pipelined group (RFC 2920): MAIL and RCPT answered at once, DATA by the task.
    writer.write(b"MAIL FROM:<a@client.test>\r\nRCPT TO:<b@relay.test>\r\nDATA\r\n")
    assert await _replies(reader, 3) == [b"250", b"250", b"354"]
    writer.write(b"Subject: x\r\n\r\nbody\r\n.\r\n")
    assert await _replies(reader, 1) == [b"250"]
    writer.write(b"RSET\r\nNOOP\r\nVRFY b@relay.test\r\nQUIT\r\n")
    assert await _replies(reader, 4) == [b"250", b"250", b"252", b"221"]
    assert await reader.read() == b""
    session = RecordingSession.sessions[0]
    assert session.task_lines == [b"DATA"]
    await _wait_closed(session)
    assert session.counts == {"ehlo": [1, 1], "mail": [1, 1], "rcpt": [1, 1],
                              "data": [1, 1], "rset": [1, 1], "noop": [1, 1],
                              "vrfy": [1, 1], "quit": [1, 1]}
    writer.close()


async def test_odd_lines_and_what_follows_them_go_to_the_task(server: SmtpdServer) -> None:
    reader, writer = await _session(server)
    # A bare LF line, then a line with a NUL, then an unknown verb: each is the
    # reader's case, and so is everything after the first of them, in order.
    writer.write(b"EHLO client.test\r\nNOOP\nNOOP\r\nNO\0OP\r\nXYZZY\r\nNOOP\r\n")
    assert await _replies(reader, 6) == [b"250", b"250", b"250", b"500", b"500", b"250"]
    session = RecordingSession.sessions[0]
    # (the NUL line is answered inside the reader and never dispatched)
    assert session.task_lines == [b"NOOP", b"NOOP", b"XYZZY", b"NOOP"]
    assert "bare_lf" in session.notes
    # A command split across two writes completes in the reader, then the
    # session waits for a command again and answers at once.
    writer.write(b"NO")
    await writer.drain()
    # Deliberately private: the bytes that StreamReader holds before a whole line.
    await until(lambda: bytes(session._reader._buffer) == b"NO")  # type: ignore[attr-defined]
    writer.write(b"OP\r\n")
    assert await _replies(reader, 1) == [b"250"]
    writer.write(b"NOOP\r\n")
    assert await _replies(reader, 1) == [b"250"]
    assert session.task_lines[4:] == [b"NOOP"]
    writer.write(b"QUIT\r\n")
    assert await _replies(reader, 1) == [b"221"]
    writer.close()


async def test_the_hard_error_limit_hangs_up_from_the_callback(server: SmtpdServer) -> None:
    reader, writer = await _session(server)
    # MAIL before HELO is fine; RCPT without MAIL is an error Postfix counts.
    writer.write(b"EHLO client.test\r\n" + b"RCPT TO:<b@relay.test>\r\n" * 25)
    codes = []
    while line := await asyncio.wait_for(reader.readline(), 10):
        if line[3:4] != b"-":
            codes.append(line[:3])
    assert codes[0] == b"250"
    assert codes[-1] == b"421"
    assert codes[1:-1] == [b"503"] * 20  # smtpd_hard_error_limit = 20
    # The first 10 errors are answered here; from smtpd_soft_error_limit (10)
    # on, the tarpit's replies wait in the session task (its flush sleeps).
    assert RecordingSession.sessions[0].task_lines == [b"RCPT"] * 10
    writer.close()


async def test_a_noop_flood_is_cut_off_by_the_junk_command_limit(server: SmtpdServer) -> None:
    """The defaults, smtpd_junk_command_limit = 100 and smtpd_hard_error_limit
    = 20: EHLO is the first junk command, a junk command is an error once
    more than 100 came before it, so the 121st is the 20th error."""
    reader, writer = await _session(server)
    writer.write(b"EHLO client.test\r\n" + b"NOOP\r\n" * 200)
    codes = []
    while line := await asyncio.wait_for(reader.readline(), 10):
        if line[3:4] != b"-":
            codes.append(line[:3])
    assert codes == [b"250"] * 121 + [b"421"]
    # The 111th junk command is the 10th error (smtpd_soft_error_limit): the
    # ten after it are the tarpit's, answered by the session task.
    assert RecordingSession.sessions[0].task_lines == [b"NOOP"] * 10
    writer.close()


async def _wait_closed(session: RecordingSession) -> None:
    await until(lambda: session.transport is None)
