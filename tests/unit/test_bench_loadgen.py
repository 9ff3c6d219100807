"""The load generator's client: it pipelines MAIL, RCPT and DATA only when
asked to and only to a server that offers PIPELINING (RFC 2920 §3.1)."""

from __future__ import annotations

import asyncio

import pytest

from bench.loadgen import SmtpClient, SmtpError, load


class RecordingServer:
    """A scripted SMTP server on 127.0.0.1 that keeps every read it made, so a
    test can see which commands arrived in one write."""

    def __init__(self, *, pipelining: bool, data_reply: bytes = b"354 go ahead") -> None:
        self.pipelining = pipelining
        self.data_reply = data_reply
        self.reads: list[bytes] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> RecordingServer:
        self._server = await asyncio.start_server(self._session, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _session(self, reader: asyncio.StreamReader,
                       writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 test ESMTP\r\n")
        pending = b""
        in_data = False
        try:
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                self.reads.append(chunk)
                pending += chunk
                while b"\n" in pending:
                    line, _, pending = pending.partition(b"\n")
                    if in_data:
                        if line == b".\r":
                            in_data = False
                            writer.write(b"250 2.0.0 Ok: queued\r\n")
                        continue
                    writer.write(self._answer(line.rstrip(b"\r").upper()))
                    in_data = line.upper().startswith(b"DATA") \
                        and self.data_reply.startswith(b"354")
                await writer.drain()
        finally:
            writer.close()

    def _answer(self, command: bytes) -> bytes:
        if command.startswith(b"EHLO"):
            extra = b"250-PIPELINING\r\n" if self.pipelining else b""
            return b"250-test\r\n" + extra + b"250 8BITMIME\r\n"
        if command.startswith(b"DATA"):
            return self.data_reply + b"\r\n"
        if command.startswith(b"QUIT"):
            return b"221 2.0.0 Bye\r\n"
        return b"250 2.1.0 Ok\r\n"


def command_reads(server: RecordingServer) -> list[bytes]:
    """The reads from MAIL up to and including DATA."""
    reads = [read for read in server.reads if not read.startswith(b"EHLO")]
    return reads[:next(i for i, read in enumerate(reads) if b"DATA\r\n" in read) + 1]


@pytest.mark.asyncio
async def test_pipelining_sends_mail_rcpt_and_data_in_one_write() -> None:
    async with RecordingServer(pipelining=True) as server:
        client = await SmtpClient.connect("127.0.0.1", server.port, pipelining=True)
        await client.greet()
        await client.send("a@example.test", "b@example.test", b"Subject: x\r\n\r\nhi\r\n")
        await client.quit()
    assert command_reads(server) == [
        b"MAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n"]


@pytest.mark.asyncio
@pytest.mark.parametrize(("asked", "offered"), [(False, True), (True, False)])
async def test_one_command_at_a_time_unless_asked_and_offered(asked: bool,
                                                             offered: bool) -> None:
    async with RecordingServer(pipelining=offered) as server:
        client = await SmtpClient.connect("127.0.0.1", server.port, pipelining=asked)
        await client.greet()
        await client.send("a@example.test", "b@example.test", b"Subject: x\r\n\r\nhi\r\n")
        await client.quit()
    assert command_reads(server) == [b"MAIL FROM:<a@example.test>\r\n",
                                     b"RCPT TO:<b@example.test>\r\n", b"DATA\r\n"]


@pytest.mark.asyncio
async def test_a_refused_data_in_a_pipelined_group_is_an_error() -> None:
    async with RecordingServer(pipelining=True,
                               data_reply=b"554 5.5.1 Error: no valid recipients") as server:
        client = await SmtpClient.connect("127.0.0.1", server.port, pipelining=True)
        await client.greet()
        with pytest.raises(SmtpError, match=r"554 5\.5\.1"):
            await client.send("a@example.test", "b@example.test", b"x\r\n")
        await client.quit()


@pytest.mark.asyncio
async def test_load_with_pipelining_counts_every_message() -> None:
    async with RecordingServer(pipelining=True) as server:
        result = await load("127.0.0.1", server.port, sessions=3, messages=12, size=200,
                            per_session=1, context=None, server_hostname="localhost",
                            sender="a@example.test", recipient="b@example.test",
                            pipelining=True)
    assert (result.accepted, result.errors) == (12, 0)
    assert len(result.latencies) == 12
