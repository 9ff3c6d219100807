"""The error tarpit (Postfix's smtpd_soft_error_limit and
smtpd_error_sleep_time): once a client has made the soft limit's errors,
every reply waits, until it delivers a message.

An in-process receiver on 127.0.0.1 with a low soft limit (3) and a short
sleep (0.3 s); the waits are measured as lower bounds on the loop's clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mta.smtpd.server import SmtpdServer
from tests.helpers import IN_PROCESS_CF, in_process_smtpd

SLEEP = 0.3
CF = IN_PROCESS_CF + f"""\
smtpd_soft_error_limit = 3
smtpd_error_sleep_time = {SLEEP}s
"""


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[SmtpdServer]:
    async with in_process_smtpd(tmp_path, CF) as smtpd:
        yield smtpd


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def reply(self) -> str:
        while True:
            line = await asyncio.wait_for(self.reader.readline(), 10)
            assert line, "connection closed"
            if line[3:4] != b"-":
                return line.decode().rstrip("\r\n")

    async def timed(self, *lines: str) -> tuple[list[str], float]:
        """Send lines in one write (pipelined); their replies and how long they took."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        self.writer.write("".join(line + "\r\n" for line in lines).encode())
        replies = [await self.reply() for _ in lines]
        return replies, loop.time() - start


@pytest.fixture
async def client(server: SmtpdServer) -> AsyncIterator[Client]:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    session = Client(reader, writer)
    assert (await session.reply()).startswith("220 ")
    replies, _ = await session.timed("EHLO client.test")
    assert replies[0].startswith("250 ")
    yield session
    writer.close()


async def test_replies_wait_once_the_soft_limit_is_reached(client: Client) -> None:
    # Three errors, each answered at once: the tarpit starts after them.
    for _ in range(3):
        replies, took = await client.timed("XYZZY")
        assert replies == ["500 5.5.2 Error: command not recognized"]
        assert took < SLEEP
    # Now every reply waits, errors and successes alike.
    replies, took = await client.timed("NOOP")
    assert replies == ["250 2.0.0 Ok"] and took >= SLEEP
    # A pipelined group waits once per reply, as Postfix sleeps before each.
    replies, took = await client.timed("RSET", "RSET", "RSET")
    assert replies == ["250 2.0.0 Ok"] * 3 and took >= 3 * SLEEP


async def test_a_queued_message_ends_the_tarpit(client: Client) -> None:
    for _ in range(3):
        await client.timed("XYZZY")
    replies, took = await client.timed("MAIL FROM:<a@client.test>", "RCPT TO:<b@relay.test>",
                                       "DATA")
    assert [reply[:3] for reply in replies] == ["250", "250", "354"]
    assert took >= 3 * SLEEP
    replies, _ = await client.timed("Subject: x\r\n\r\nbody\r\n.")
    assert replies[0].startswith("250 2.0.0 Ok: queued as ")
    # Postfix's "forgive any previous client errors": no more waiting.
    replies, took = await client.timed("NOOP")
    assert replies == ["250 2.0.0 Ok"] and took < SLEEP


async def test_the_tarpit_is_not_the_clients_silence(tmp_path: Path) -> None:
    """Sleeping for a pipelined group past the soft limit can take longer
    than smtpd_timeout: that is our wait, not the client's idleness."""
    cf = CF.replace("smtpd_soft_error_limit = 3", "smtpd_soft_error_limit = 1") \
        + "smtpd_timeout = 1s\n"
    async with in_process_smtpd(tmp_path, cf) as smtpd:
        reader, writer = await asyncio.open_connection("127.0.0.1", smtpd.port)
        client = Client(reader, writer)
        assert (await client.reply()).startswith("220 ")
        await client.timed("EHLO client.test")
        await client.timed("XYZZY")  # the one error: every reply waits from now on
        replies, took = await client.timed("RSET", "RSET", "RSET", "RSET")  # 4 × 0.3s > 1s
        assert replies == ["250 2.0.0 Ok"] * 4 and took >= 4 * SLEEP
        writer.close()
