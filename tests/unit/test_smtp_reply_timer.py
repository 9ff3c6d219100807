"""The client's reply timer: each reply gets its own stage's limit, though one
loop timer per session serves them all (SmtpSession._reply_time)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from mta.smtp.client import ConversationTimeout, Peer, SmtpSession, Timeouts


@asynccontextmanager
async def server(delays: dict[bytes, float | None]) -> AsyncIterator[int]:
    """Answers 250 to every command after delays[verb] seconds (None: never)."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 peer.test ESMTP\r\n")
        while line := await reader.readline():
            delay = delays.get(line.split()[0].upper(), 0.0)
            if delay is None:
                await asyncio.Event().wait()  # never set: no answer
            else:
                await asyncio.sleep(delay)
            writer.write(b"250 ok\r\n")
        writer.close()

    listener = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield listener.sockets[0].getsockname()[1]
    finally:
        listener.close()


async def session(port: int, timeouts: Timeouts) -> SmtpSession:
    smtp = await SmtpSession.connect(Peer("peer.test", "127.0.0.1", port), timeouts)
    await smtp.read_greeting()
    await smtp.ehlo("client.test")
    return smtp


async def test_a_short_limit_after_a_long_one_still_applies() -> None:
    # The EHLO read leaves the session's timer at +30 s; MAIL's 0.3 s must move it.
    async with server({b"MAIL": None}) as port:
        smtp = await session(port, Timeouts(helo=30.0, mail=0.3))
        started = asyncio.get_running_loop().time()
        with pytest.raises(ConversationTimeout, match="timed out while sending MAIL FROM"):
            await smtp.envelope("a@x.test", ["b@y.test"])
        assert asyncio.get_running_loop().time() - started < 5
        assert smtp.broken


async def test_a_long_limit_after_a_short_one_is_not_cut_short() -> None:
    # The timer made for EHLO's 0.2 s fires while MAIL (1 s) is still being
    # answered: it must move on to MAIL's limit, not end the session.
    async with server({b"MAIL": 0.5, b"RCPT": None}) as port:
        smtp = await session(port, Timeouts(helo=0.2, mail=1.0, rcpt=0.3))
        await smtp._command("MAIL FROM:<a@x.test>", 1.0, "sending MAIL FROM")
        reply = await smtp.read_reply(1.0, "sending MAIL FROM")
        assert reply.code == 250
        started = asyncio.get_running_loop().time()
        await smtp._command("RCPT TO:<b@y.test>", 0.3, "sending RCPT TO")
        with pytest.raises(ConversationTimeout, match="timed out while sending RCPT TO"):
            await smtp.read_reply(0.3, "sending RCPT TO")
        assert 0.25 < asyncio.get_running_loop().time() - started < 5


async def test_a_session_between_replies_does_not_time_out() -> None:
    # Idle between transactions (a cached connection): nothing is being read,
    # so the timer that fires meanwhile does nothing.
    async with server({}) as port:
        smtp = await session(port, Timeouts(helo=0.1, rset=0.1))
        await asyncio.sleep(0.3)
        assert not smtp.broken
        assert (await smtp.rset()).code == 250
        smtp.close()
